-- wrk script for the soak (tests/soak/soak.sh): a weighted cycle of request kinds (bm25,
-- a mock upstream, /v1/fuse, a fusion pipeline, upstream errors with and without fallback,
-- client errors, health), and a count of every status seen. Prints one line per status
-- ("STATUS <code> <count>") at the end.
-- luacheck: globals wrk setup init request response done statuses
local cjson = require "cjson"

local docs = {}
for i = 1, 20 do
  docs[i] = ("document %d about cats and dogs and the number %d in a soak test"):format(i, i * 7)
end

-- wrk adds Host only in wrk.init, after this file ran; HTTP/1.1 requires it
local JSON = { ["Content-Type"] = "application/json", Host = wrk.port and (wrk.host .. ":" .. wrk.port) or wrk.host }

local function rerank(model, extra)
  local b = { model = model, query = "cats and dogs", documents = docs, top_n = 5 }
  for k, v in pairs(extra or {}) do b[k] = v end
  return wrk.format("POST", "/v1/rerank", JSON, cjson.encode(b))
end

local lists = {
  { name = "vec", items = { { id = "a", score = 0.9, text = "cats sleep" }, { id = "b", score = 0.5, text = "dogs bark" },
    { id = "c", score = 0.1, text = "a cat and a dog" } } },
  { name = "fts", items = { { id = "c", score = 7 }, { id = "a", score = 3 }, { id = "d", score = 1, text = "birds" } } },
}

local kinds = {
  { 6, rerank("bm25") },
  { 4, rerank("mock") },
  { 2, wrk.format("POST", "/v1/fuse", JSON,
      cjson.encode({ method = "rrf", top_n = 3, lists = lists })) },
  { 2, wrk.format("POST", "/v1/rerank", JSON,
      cjson.encode({ query = "cats", pipeline = "hybrid", lists = lists })) },
  { 1, rerank("broken") },   -- upstream 500, no fallback: 502
  { 1, rerank("fallback") }, -- upstream 500, falls back to bm25: 200
  { 1, wrk.format("POST", "/v1/rerank", JSON, '{"query": "cats", "documents": [') },
  { 1, rerank("no-such-model") },
  { 1, wrk.format("POST", "/v1/rerank", JSON, '{"query": 5, "documents": "x"}') },
  { 1, wrk.format("GET", "/health", { Host = JSON.Host }) },
  -- issue 14: upstream text that is not UTF-8 (502), a forged x-request-id (replaced)
  { 1, rerank("badutf8") },
  { 1, wrk.format("POST", "/v1/rerank", { ["Content-Type"] = "application/json", Host = JSON.Host,
      ["x-request-id"] = 'soak","key":"admin' }, cjson.encode({ query = "cats", documents = docs })) },
}

local cycle = {}
for _, k in ipairs(kinds) do
  for _ = 1, k[1] do cycle[#cycle + 1] = k[2] end
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end

local i = 0
function init()
  statuses = {} -- a global: done() reads it through thread:get
  i = math.random(#cycle)
end

function request()
  i = i % #cycle + 1
  return cycle[i]
end

function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses") or {}) do total[code] = (total[code] or 0) + n end
  end
  for code, n in pairs(total) do io.write(("STATUS %d %d\n"):format(code, n)) end
  local e = summary.errors
  io.write(("ERRORS connect=%d read=%d write=%d timeout=%d\n"):format(e.connect, e.read, e.write, e.timeout))
  io.write(("REQUESTS %d\n"):format(summary.requests))
end
