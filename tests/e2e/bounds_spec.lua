-- End to end: what one request may cost or leave behind (README "Limits"), through the real
-- daemon: fusion caps and cost linear in the items, server.timeout on Lua CPU time, bounded
-- direct-model state and metric labels, finite numbers in and out, memory given back.
local d = require "support.daemon"
local proc = require "support.proc"
local cjson = require "cjson"

local FIX = d.root .. "/tests/fixtures/fusion"

local function one_item_lists(n)
  local parts = {}
  for i = 1, n do parts[i] = ('[{"id":%d,"score":0.5}]'):format(i) end
  return '{"method":"rrf","lists":[' .. table.concat(parts, ",") .. ']}'
end

local function post(dm, path, body, headers)
  return d.request(dm, path, { method = "POST", body = body, headers = headers, timeout = 30 })
end

local function all_numbers(results, field)
  for i, r in ipairs(results) do
    local v = r[field]
    assert(type(v) == "number" and v == v and v > -math.huge and v < math.huge,
      ("results[%d].%s is %s"):format(i - 1, field, tostring(v)))
  end
end

describe("fusion costs are bounded", function()
  local dm
  setup(function()
    dm = assert(d.start(([[
server: { auth: none, listen: "127.0.0.1:0", timeout: 3s, max_fuse_lists: 50000 }
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
fusion: [%s/spin_fusion.lua, %s/spin_pcall_fusion.lua]
]]):format(FIX, FIX)))
  end)
  teardown(function() d.stop(dm) end)

  it("fuses 40,000 one-item lists within server.timeout (it was quadratic: 22 s)", function()
    local status, _, _, j = post(dm, "/v1/fuse", one_item_lists(40000))
    assert.are.equal(200, status)
    assert.are.equal(40000, #j.results)
  end)

  it("stops a fusion script that loops forever at the deadline: 504, and the worker serves on", function()
    for _, m in ipairs({ "spin", "spin_pcall" }) do
      local status, body, _, j = post(dm, "/v1/fuse", { method = m, lists = { { "a", "b" } } })
      assert.are.equal(504, status, body)
      assert.are.equal("timeout_error", j.error.type)
      local s2, b2 = post(dm, "/v1/fuse", { method = "rrf", lists = { { "a", "b" } } })
      assert.are.equal(200, s2, b2)
    end
    assert.are.equal(200, (d.request(dm, "/health")))
    assert.truthy(d.logtext(dm):find("Lua code stopped", 1, true))
  end)

  it("a script looping past an earlier request's deadline is stopped at its own, not before", function()
    -- core/deadline.c leaves the timer armed for the earlier request (server.timeout 3 s
    -- after it began); it fires 1.5 s into the loop, which must then wait for its own deadline
    assert.are.equal(200, (post(dm, "/v1/fuse", { method = "rrf", lists = { { "a" } } })))
    d.sleep(1.5)
    local t0 = d.now()
    local status, body, _, j = post(dm, "/v1/fuse", { method = "spin", lists = { { "a", "b" } } })
    local took = d.now() - t0
    assert.are.equal(504, status, body)
    assert.are.equal("timeout_error", j.error.type)
    assert.truthy(took > 2.5 and took < 10, ("stopped after %.2f s, server.timeout is 3 s"):format(took))
    assert.are.equal(200, (post(dm, "/v1/fuse", { method = "rrf", lists = { { "a" } } })))
  end)
end)

describe("the self-test is bounded too", function()
  it("refuses a fusion script that loops on any input within its CPU budget, naming its line", function()
    local dir = d.tmpname(".spin")
    d.sh("mkdir -p " .. dir)
    d.writefile(dir .. "/always.lua", 'return { name = "always", fuse = function() while true do end end }\n')
    local cfg = d.writefile(dir .. "/c.yaml", "server: { auth: none }\nmodels:\n  - { name: bm25, provider: bm25 }\n"
      .. "fusion: [" .. dir .. "/always.lua]\n")
    local t0 = os.time()
    local out = d.sh(("%s -t -c %s 2>&1; echo rc=$?"):format(d.bin, cfg))
    d.sh("rm -rf " .. dir)
    assert.truthy(out:find("rc=1", 1, true), out)
    -- Lua shortens a long script path to ".../tail" (LUA_IDSIZE), so the line is matched
    -- from the script's file name on: the checkout's path length must not matter
    assert.truthy(out:find("c.yaml:4:10: fusion[0]: fusion method failed its self-test: ", 1, true), out)
    assert.truthy(out:find("/always.lua:1: did not finish within", 1, true), out)
    assert.truthy(os.time() - t0 < 30, "the self-test took too long")
  end)
end)

describe("fusion caps (defaults)", function()
  local dm
  setup(function() dm = assert(d.start(nil)) end)
  teardown(function() d.stop(dm) end)

  it("refuses more lists than server.max_fuse_lists with 422", function()
    local status, body, _, j = post(dm, "/v1/fuse", one_item_lists(1001))
    assert.are.equal(422, status, body)
    assert.are.equal("lists", j.error.param)
    assert.truthy(j.error.message:find("server.max_fuse_lists", 1, true), j.error.message)
  end)

  it("refuses more items than server.max_fuse_items with 422, also in a pipeline", function()
    local ids = {}
    for i = 1, 50001 do ids[i] = i end
    local status, body, _, j = post(dm, "/v1/fuse", { lists = { ids, ids } })
    assert.are.equal(422, status, body)
    assert.truthy(j.error.message:find("server.max_fuse_items", 1, true), j.error.message)
    status, body = post(dm, "/v1/rerank", { query = "q", pipeline = { { fuse = "rrf" } }, lists = { ids, ids } })
    assert.are.equal(422, status, body)
  end)
end)

describe("direct-model state and metric labels are bounded", function()
  local mock, dm
  setup(function()
    mock = d.start_mock()
    dm = assert(d.start(([[
server: { auth: none, listen: "127.0.0.1:0", max_direct_models: 8, max_model_labels: 5 }
default_model: bm25
direct_models:
  cohere: { base_url: "%s/cohere", api_key: test-key }
models:
  - { name: bm25, provider: bm25 }
]]):format(mock.url)))
  end)
  teardown(function() d.stop(dm); d.stop_mock(mock) end)

  it("keeps at most max_direct_models names and max_model_labels label values, then \"other\"", function()
    -- 600 distinct provider/model names in one curl run (parallel, keep-alive)
    local cfg = d.tmpname(".curl")
    local lines = {}
    for i = 1, 600 do
      local data = cjson.encode({ model = "cohere/m" .. i, query = "a b", documents = { "a", "b c" } })
      lines[#lines + 1] = ('url = "%s/v1/rerank"\ndata = %s\nheader = "Content-Type: application/json"\n'
        .. 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n'):format(dm.url, cjson.encode(data))
    end
    d.writefile(cfg, table.concat(lines, "next\n"))
    local codes = d.sh("curl -s --no-progress-meter -Z --parallel-max 8 -K " .. cfg .. " 2>/dev/null")
    local ok = select(2, codes:gsub("200", ""))
    assert.are.equal(600, ok, codes:sub(1, 200))
    local status, text = d.request(dm, "/metrics")
    assert.are.equal(200, status)
    local labels = {}
    for v in text:gmatch('model="(cohere/[^"]*)"') do labels[v] = true end
    local n = 0
    for _ in pairs(labels) do n = n + 1 end
    assert.is_true(n <= 5, ("%d direct names as labels"):format(n))
    assert.truthy(text:find('rerankd_upstream_requests_total{model="other"', 1, true), "no model=\"other\"")
    local cached = tonumber(text:match("\nrerankd_direct_models (%d+)"))
    assert.is_true(cached ~= nil and cached <= 8, "rerankd_direct_models " .. tostring(cached))
    assert.is_true(#text < 64 * 1024, ("/metrics is %d bytes"):format(#text))
    -- the names still resolve after eviction
    status = post(dm, "/v1/rerank", { model = "cohere/m1", query = "a", documents = { "a", "b" } })
    assert.are.equal(200, status)
  end)
end)

describe("numbers are finite everywhere", function()
  local mock, dm
  setup(function()
    mock = d.start_mock()
    local models = {}
    for _, f in ipairs({ "overflow", "dupindex", "badindex", "missing" }) do
      models[#models + 1] = ('  - { name: co_%s, provider: cohere, api_key: test-key, retries: 0, '
        .. 'base_url: "%s/fault/%s/cohere" }'):format(f, mock.url, f)
    end
    dm = assert(d.start(([[
server: { auth: none, listen: "127.0.0.1:0" }
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
%s
]]):format(table.concat(models, "\n"))))
  end)
  teardown(function() d.stop(dm); d.stop_mock(mock) end)

  local DOCS = { "apple pie", "banana split", "apple banana", "cherry" }

  it("refuses an upstream answer that would misplace documents: 502 naming the problem", function()
    for f, words in pairs({ overflow = "not a finite number", dupindex = "twice", badindex = "not a document index" }) do
      local status, body, _, j = post(dm, "/v1/rerank", { model = "co_" .. f, query = "apple banana", documents = DOCS })
      assert.are.equal(502, status, body)
      assert.truthy(j.error.message:find(words, 1, true), j.error.message)
      assert.is_nil(body:find("null,", 1, true))
    end
  end)

  it("answers missing results degraded, unscored documents last with a number, in every shape", function()
    local status, body, h, j = post(dm, "/v1/rerank", { model = "co_missing", query = "apple banana", documents = DOCS })
    assert.are.equal(200, status, body)
    assert.are.equal("true", h["x-rerankd-degraded"])
    assert.is_true(j.degraded)
    assert.are.equal(4, #j.results)
    all_numbers(j.results, "relevance_score")
    assert.are.equal(3, j.results[4].index) -- the mock left out its lowest (cherry): last
    status, body, h, j = post(dm, "/v2/rerank", { model = "co_missing", query = "apple banana", documents = DOCS })
    assert.are.equal("true", h["x-rerankd-degraded"])
    assert.are.equal(200, status, body)
    all_numbers(j.results, "relevance_score")
    status, body, h, j = post(dm, "/rerank", { model = "co_missing", query = "apple banana", texts = DOCS })
    assert.are.equal(200, status, body)
    all_numbers(j, "score")
    assert.are.equal("true", h["x-rerankd-degraded"])
    assert.is_nil(body:find("null", 1, true))
  end)

  it("fuses +-1e308 scores to finite numbers with dbsf, relative_score and normalised combsum", function()
    local lists = { { { id = "a", score = 1e308 }, { id = "b", score = -1e308 }, { id = "c", score = 0 } },
                    { { id = "b", score = 1e308 }, { id = "a", score = 5e307 } } }
    for _, m in ipairs({ { method = "dbsf" }, { method = "relative_score" },
                         { method = "combsum", params = { normalize = "min_max" } },
                         { method = "combsum", params = { normalize = "z_score" } },
                         { method = "linear", params = { normalize = "sum" } }, { method = "combsum" } }) do
      m.lists = lists
      local status, body, _, j = post(dm, "/v1/fuse", m)
      assert.are.equal(200, status, body)
      assert.is_nil(body:find("null", 1, true), body)
      all_numbers(j.results, "score")
    end
  end)

  it("refuses request numbers that are not finite, or not integers where one is expected", function()
    local cases = {
      { "/v1/rerank", '{"query":"q","documents":["a"],"top_n":1e400}', 400, "top_n" },
      { "/v1/rerank", '{"query":"q","documents":[{"text":"a","id":1e400}]}', 422, "documents[0].id" },
      { "/v1/rerank", '{"query":"q","documents":["a"],"timeout":1e400}', 422, "timeout" },
      { "/v2/rerank", '{"model":"bm25","query":"q","documents":["a"],"top_n":-1e400}', 400, "top_n" },
      { "/v1/fuse", '{"lists":[[{"id":1e400}]]}', 422, "lists[0].items[0].id" },
      { "/v1/fuse", '{"lists":[[1e400]]}', 400, "lists[0].items[0]" },
      { "/v1/fuse", '{"lists":[[{"id":"a","score":1e400}]]}', 422, "lists[0].items[0].score" },
      { "/v1/fuse", '{"lists":[["a"]],"params":{"k":1e400}}', 422, "params.k" },
      { "/v1/fuse", '{"lists":[["a"]],"top_n":1e400}', 400, "top_n" },
      { "/v1/rerank", '{"query":"q","lists":[["a"]],"pipeline":[{"fuse":"rrf"},{"threshold":{"min_score":1e400}}]}',
        422, "pipeline[1].threshold.min_score" },
    }
    for _, c in ipairs(cases) do
      local status, body, _, j = post(dm, c[1], c[2])
      assert.are.equal(c[3], status, c[2] .. " -> " .. body)
      assert.are.equal(c[4], j.error.param, body)
    end
    local status, body = post(dm, "/v1/rerank", { query = "q", documents = { "a" } }, { ["x-rerankd-timeout-ms"] = "inf" })
    assert.are.equal(400, status, body)
  end)
end)

describe("memory goes back after large requests", function()
  local dm
  setup(function()
    dm = assert(d.start([[
server: { auth: none, listen: "127.0.0.1:0", max_body: 64m }
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
]]))
  end)
  teardown(function() d.stop(dm) end)

  it("returns RSS near idle within seconds of a burst of 30 MB bodies", function()
    local words = { "alpha", "beta", "gamma", "delta", "rerank", "search" }
    local t, n = {}, 0
    while n < 30e6 do
      local w = words[#t % 6 + 1]
      t[#t + 1] = w
      n = n + #w + 1
    end
    local body = d.writefile(d.tmpname(".json"), cjson.encode({ query = "alpha search", documents = { table.concat(t, " ") } }))
    local idle = proc.rss_kb(dm.pid)
    local codes = d.sh(("for i in 1 2 3; do curl -s -o /dev/null -w '%%{http_code} ' -H 'Content-Type: application/json' "
      .. "--data-binary @%s %s/v1/rerank; done"):format(body, dm.url))
    os.remove(body)
    assert.are.equal("200 200 200 ", codes)
    if os.getenv("RERANKD_SANITIZE") then return end -- ASan's quarantine keeps freed memory
    local rss
    for _ = 1, 40 do -- up to 10 s
      d.sleep(0.25)
      rss = proc.rss_kb(dm.pid)
      if rss < idle + 40 * 1024 then break end
    end
    assert.is_true(rss < idle + 40 * 1024, ("RSS %d kB after, %d kB idle"):format(rss, idle))
  end)
end)
