-- Production operations end to end: the real daemon, a real redis-server, the mock upstream
-- (tests/mock/mock_upstream.py, which records every request it gets) and curl.
-- API keys, rate limits (local and shared through Redis), the score cache (memory and Redis),
-- GET /metrics through a strict exposition-format parser, GET /health?deep=1, SIGTERM drain.
local d = require "support.daemon"
local prom = require "support.prom"
local cjson = require "cjson"
local mock_requests, mock_reset = d.mock_requests, d.mock_reset

local ROOT = d.root
local SLEEPY = ROOT .. "/tests/fixtures/providers/sleepy.lua"

-- A private redis-server on a free port: no persistence, a temp dir. opts.password.
local function start_redis(opts)
  opts = opts or {}
  local dir = d.tmpname(".redis")
  os.execute("mkdir -p " .. dir)
  for _ = 1, 10 do
    local port = 20000 + math.random(0, 30000)
    local auth = opts.password and (" --requirepass " .. opts.password) or ""
    local pid = tonumber(d.sh(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s%s"
      .. " >%s/redis.log 2>&1 & echo $!"):format(port, dir, auth, dir)))
    local cli = ("redis-cli -p %d%s"):format(port, opts.password and (" --no-auth-warning -a " .. opts.password) or "")
    for _ = 1, 100 do
      if d.sh(cli .. " ping 2>/dev/null"):match("PONG") then
        return { pid = pid, port = port, dir = dir, cli = cli }
      end
      if d.sh("kill -0 " .. pid .. " 2>/dev/null && echo alive") == "" then break end -- port taken: retry
      d.sleep(0.05)
    end
    os.execute("kill " .. pid .. " 2>/dev/null")
  end
  error("redis-server did not start")
end

local function stop_redis(r)
  if not r then return end
  os.execute("kill " .. r.pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if d.sh("kill -0 " .. r.pid .. " 2>/dev/null && echo alive") == "" then break end
    d.sleep(0.05)
  end
  os.execute("rm -rf " .. r.dir)
end

local function rerank(srv, body, headers, path)
  return d.request(srv, path or "/v1/rerank", { body = body, headers = headers })
end

local function scrape(srv, headers)
  local status, raw, h = d.request(srv, "/metrics", { headers = headers })
  assert.are.equal(200, status, raw)
  assert.truthy((h["content-type"] or ""):find("text/plain; version=0.0.4", 1, true), h["content-type"])
  local fams, err = prom.parse(raw)
  assert.is_nil(err, err)
  return fams, raw
end

local function sum(fams, name, labels, sample)
  local f = fams[name]
  if not f then return 0 end
  local total = 0
  for _, s in ipairs(f.samples) do
    if s.name == (sample or name) then
      local ok = true
      for k, v in pairs(labels or {}) do
        if s.labels[k] ~= v then ok = false break end
      end
      if ok then total = total + s.value end
    end
  end
  return total
end

local DOCS = { "Paris is the capital of France.", "Berlin is the capital of Germany.", "Bananas are yellow." }

---------------------------------------------------------------------------------------------
describe("API keys", function()
  local srv
  setup(function()
    srv = assert(d.start([[
server:
  api_keys: ["${OPS_TEST_KEY}", { name: team-a, key: "team-a-secret-value" }]
models:
  - { name: bm25, provider: bm25 }
]], { workers = 2, env = "OPS_TEST_KEY=env-secret-value-123" }))
  end)
  teardown(function() d.stop(srv) end)

  it("refuses a missing or wrong key with 401 JSON, accepts configured ones", function()
    local body = { query = "capital of France", documents = DOCS }
    local status, raw, h, j = rerank(srv, body)
    assert.are.equal(401, status, raw)
    assert.are.equal("authentication_error", j.error.type)
    assert.truthy(j.error.message:find("Authorization: Bearer", 1, true))
    assert.truthy(h["www-authenticate"])
    status, raw, h, j = rerank(srv, body, { Authorization = "Bearer env-secret-value-12" })
    assert.are.equal(401, status, raw)
    assert.truthy(h["www-authenticate"])
    assert.are.equal("invalid API key", j.error.message)
    status, raw = rerank(srv, body, { Authorization = "Basic ZW52LXNlY3JldA==" })
    assert.are.equal(401, status, raw)
    status, raw = rerank(srv, body, { Authorization = "Bearer env-secret-value-123" })
    assert.are.equal(200, status, raw)
    status, raw = rerank(srv, body, { Authorization = "Bearer team-a-secret-value" }, "/v2/rerank")
    assert.are.equal(200, status, raw)
    status = d.request(srv, "/v1/models")
    assert.are.equal(401, status)
  end)

  it("leaves /health and /metrics open by default", function()
    assert.are.equal(200, (d.request(srv, "/health")))
    assert.are.equal(200, (d.request(srv, "/metrics")))
  end)

  it("never writes a key to logs or metrics, only its name", function()
    rerank(srv, { query = "q", documents = DOCS }, { Authorization = "Bearer team-a-secret-value" })
    rerank(srv, { query = "q", documents = DOCS }, { Authorization = "Bearer wrong-secret-value" })
    d.sleep(1.2) -- every worker has published
    local _, raw = scrape(srv)
    local log = d.logtext(srv)
    for _, secret in ipairs({ "env-secret-value-123", "team-a-secret-value", "wrong-secret-value" }) do
      assert.is_nil(log:find(secret, 1, true), secret .. " in the log")
      assert.is_nil(raw:find(secret, 1, true), secret .. " in /metrics")
    end
    assert.truthy(log:find('"key":"team-a"', 1, true), log)
    assert.truthy(log:find('"key":"key-1"', 1, true), log)
    local fams = scrape(srv)
    assert.is_true(sum(fams, "rerankd_auth_failures_total", { reason = "invalid" }) >= 2)
  end)
end)

describe("API keys with protected /metrics", function()
  it("asks for a key on /metrics when open_paths leaves it out", function()
    local srv = assert(d.start([[
server: { api_keys: ["k-0123456789"], open_paths: [/health] }
]]))
    finally(function() d.stop(srv) end)
    assert.are.equal(401, (d.request(srv, "/metrics")))
    assert.are.equal(200, (d.request(srv, "/metrics", { headers = { Authorization = "Bearer k-0123456789" } })))
    assert.are.equal(200, (d.request(srv, "/health")))
  end)
end)

---------------------------------------------------------------------------------------------
describe("rate limits (local)", function()
  local srv
  setup(function()
    srv = assert(d.start([[
server: { api_keys: [{ name: a, key: key-a-0123 }, { name: b, key: key-b-0123 }] }
limits:
  per_key: { requests_per_minute: 2 }
  keys: { b: { requests_per_minute: 100, documents_per_minute: 5 } }
  models: { other: { requests_per_minute: 1 } }
models:
  - { name: bm25, provider: bm25 }
  - { name: other, provider: bm25 }
]], { workers = 1 }))
  end)
  teardown(function() d.stop(srv) end)

  local function with(key, body) return rerank(srv, body, { Authorization = "Bearer " .. key }) end

  it("per key requests/min: 429 with Retry-After and a JSON error", function()
    local body = { query = "q", documents = DOCS }
    assert.are.equal(200, (with("key-a-0123", body)))
    assert.are.equal(200, (with("key-a-0123", body)))
    local status, raw, h, j = with("key-a-0123", body)
    assert.are.equal(429, status, raw)
    assert.truthy(h["retry-after"] and h["retry-after"]:match("^%d+$"), raw)
    assert.is_true(tonumber(h["retry-after"]) >= 1 and tonumber(h["retry-after"]) <= 120)
    assert.are.equal("rate_limit_error", j.error.type)
    assert.truthy(j.error.message:find('API key "a"', 1, true), j.error.message)
    -- Cohere-shaped clients get Cohere-shaped errors, still with Retry-After
    status, raw, h = d.request(srv, "/v2/rerank", { body = { model = "bm25", query = "q", documents = DOCS },
      headers = { Authorization = "Bearer key-a-0123" } })
    assert.are.equal(429, status, raw)
    assert.truthy(h["retry-after"])
  end)

  it("per key documents/min, and per model", function()
    assert.are.equal(200, (with("key-b-0123", { query = "q", documents = DOCS })))
    local status, raw, h = with("key-b-0123", { query = "q", documents = DOCS })
    assert.are.equal(429, status, raw) -- 3 + 3 > 5 documents
    assert.truthy(h["retry-after"])
    assert.truthy(raw:find("documents per minute", 1, true), raw)
    assert.are.equal(200, (with("key-b-0123", { model = "other", query = "q", documents = { "x" } })))
    local s2, raw2, h2 = with("key-b-0123", { model = "other", query = "q", documents = { "x" } })
    assert.are.equal(429, s2, raw2)
    assert.truthy(raw2:find([[model \"other\"]], 1, true), raw2)
    assert.truthy(h2["retry-after"])
  end)

  it("counts refusals in /metrics", function()
    local fams = scrape(srv)
    assert.is_true(sum(fams, "rerankd_rate_limited_total", { scope = "key", limit = "requests" }) >= 2)
    assert.is_true(sum(fams, "rerankd_rate_limited_total", { scope = "key", limit = "documents" }) >= 1)
    assert.is_true(sum(fams, "rerankd_requests_total", { route = "/v1/rerank", status = "429" }) >= 2)
  end)
end)

---------------------------------------------------------------------------------------------
describe("rate limits shared through Redis", function()
  local redis, srv1, srv2
  setup(function()
    redis = start_redis({ password = "redis-pass-1" })
    local cfg = ([[
server: { auth: none }
redis: { url: "redis://:redis-pass-1@127.0.0.1:%d/3", prefix: "ops-test:" }
limits:
  per_key: { requests_per_minute: 10 }
models:
  - { name: bm25, provider: bm25 }
]]):format(redis.port)
    srv1 = assert(d.start(cfg, { workers = 3 }))
    srv2 = assert(d.start(cfg, { workers = 2 }))
  end)
  teardown(function()
    d.stop(srv1)
    d.stop(srv2)
    stop_redis(redis)
  end)

  it("one budget for every worker of every instance", function()
    local body = { query = "q", documents = { "a", "b" } }
    local ok, limited = 0, 0
    for i = 1, 16 do
      local status, raw, h = rerank(i % 2 == 0 and srv1 or srv2, body)
      if status == 200 then ok = ok + 1
      elseif status == 429 then
        limited = limited + 1
        assert.truthy(h["retry-after"], raw)
      else error("unexpected " .. tostring(status) .. " " .. raw) end
    end
    assert.are.equal(10, ok)
    assert.are.equal(6, limited)
    local keys = d.sh(redis.cli .. " -n 3 --scan --pattern 'ops-test:rl:*'")
    assert.truthy(keys:find("ops-test:rl:key:anonymous:requests:", 1, true), keys)
    assert.is_nil(d.logtext(srv1):find("redis failed", 1, true), d.logtext(srv1))
  end)
end)

---------------------------------------------------------------------------------------------
describe("score cache", function()
  local mock, srv
  setup(function()
    mock = d.start_mock()
    srv = assert(d.start(([[
server: { auth: none }
cache: { size: 1m, ttl: 10m }
models:
  - { name: cohere, provider: cohere, model: rerank-v3.5, api_key: test-key, base_url: "%s/cohere" }
  - { name: bm25, provider: bm25 }
]]):format(mock.url), { workers = 1 }))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  local function sent_documents()
    local out = {}
    for _, r in ipairs(mock_requests(mock)) do out[#out + 1] = r.json.documents end
    return out
  end

  it("miss, hit, partial (only missing documents go upstream)", function()
    mock_reset(mock)
    local status, raw, h, first = rerank(srv, { model = "cohere", query = "capital of France", documents = DOCS })
    assert.are.equal(200, status, raw)
    assert.are.equal("miss", h["x-rerankd-cache"])
    assert.are.equal(1, #sent_documents())

    local status2, raw2, h2, second = rerank(srv, { model = "cohere", query = "capital of France", documents = DOCS })
    assert.are.equal(200, status2, raw2)
    assert.are.equal("hit", h2["x-rerankd-cache"])
    assert.are.equal(1, #sent_documents()) -- no upstream call
    assert.are.same(first.results, second.results)

    local docs = { DOCS[3], "France borders Spain.", DOCS[1] }
    local status3, raw3, h3, third = rerank(srv, { model = "cohere", query = "capital of France", documents = docs,
      top_n = 2 })
    assert.are.equal(200, status3, raw3)
    assert.are.equal("partial", h3["x-rerankd-cache"])
    local sent = sent_documents()
    assert.are.equal(2, #sent)
    assert.are.same({ "France borders Spain." }, sent[2])
    assert.are.equal(2, #third.results)
    assert.are.equal(2, third.results[1].index) -- Paris, from the cache, ranks first
  end)

  it("does not cache local models (bm25 scores depend on the whole set)", function()
    local _, _, h = rerank(srv, { model = "bm25", query = "capital", documents = DOCS })
    assert.is_nil(h["x-rerankd-cache"])
  end)

  it("counts hits and misses in /metrics", function()
    local fams = scrape(srv)
    assert.are.equal(1, sum(fams, "rerankd_cache_requests_total", { model = "cohere", result = "hit" }))
    assert.are.equal(1, sum(fams, "rerankd_cache_requests_total", { model = "cohere", result = "partial" }))
    assert.are.equal(1, sum(fams, "rerankd_cache_requests_total", { model = "cohere", result = "miss" }))
    assert.are.equal(5, sum(fams, "rerankd_cache_documents_total", { model = "cohere", result = "hit" }))
    assert.are.equal(4, sum(fams, "rerankd_cache_documents_total", { model = "cohere", result = "miss" }))
    assert.is_true(sum(fams, "rerankd_cache_entries") >= 4)
    assert.is_true(sum(fams, "rerankd_cache_bytes") > 0)
  end)
end)

describe("score cache in Redis", function()
  local mock, redis, srv1, srv2
  setup(function()
    mock = d.start_mock()
    redis = start_redis()
    local cfg = ([[
server: { auth: none }
redis: { host: 127.0.0.1, port: %d }
cache: { ttl: 1m }
models:
  - { name: cohere, provider: cohere, model: rerank-v3.5, api_key: test-key, base_url: "%s/cohere" }
]]):format(redis.port, mock.url)
    srv1 = assert(d.start(cfg, { workers = 2 }))
    srv2 = assert(d.start(cfg, { workers = 1 }))
  end)
  teardown(function()
    d.stop(srv1)
    d.stop(srv2)
    stop_redis(redis)
    d.stop_mock(mock)
  end)

  it("is shared by instances, with a TTL", function()
    mock_reset(mock)
    local body = { model = "cohere", query = "capital of Germany", documents = DOCS }
    local _, raw, h = rerank(srv1, body)
    assert.are.equal("miss", h["x-rerankd-cache"], raw)
    _, raw, h = rerank(srv2, body)
    assert.are.equal("hit", h["x-rerankd-cache"], raw)
    assert.are.equal(1, #mock_requests(mock))
    local keys = {}
    for k in d.sh(redis.cli .. " --scan --pattern 'rerankd:c:*'"):gmatch("%S+") do keys[#keys + 1] = k end
    assert.are.equal(3, #keys)
    local ttl = tonumber(d.sh(redis.cli .. " ttl " .. keys[1]))
    assert.is_true(ttl > 0 and ttl <= 60, tostring(ttl))
  end)

  it("keeps answering when Redis goes away (a miss, counted)", function()
    stop_redis(redis)
    redis = nil
    local status, raw, h = rerank(srv2, { model = "cohere", query = "capital of Germany", documents = DOCS })
    assert.are.equal(200, status, raw)
    assert.are.equal("miss", h["x-rerankd-cache"])
    local fams = scrape(srv2)
    assert.is_true(sum(fams, "rerankd_redis_errors_total", { use = "cache" }) >= 1)
  end)
end)

---------------------------------------------------------------------------------------------
describe("GET /metrics", function()
  local mock, srv
  setup(function()
    mock = d.start_mock()
    srv = assert(d.start(([[
server: { auth: none }
models:
  - name: cohere
    provider: cohere
    model: rerank-v3.5
    api_key: test-key
    base_url: "%s/cohere"
    price: { per_search_unit: 0.002 }
  - { name: bm25, provider: bm25 }
]]):format(mock.url), { workers = 3 }))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  it("parses strictly and adds up every worker", function()
    for _ = 1, 12 do assert.are.equal(200, (rerank(srv, { model = "bm25", query = "q", documents = DOCS }))) end
    for _ = 1, 6 do assert.are.equal(200, (rerank(srv, { model = "cohere", query = "capital", documents = DOCS }))) end
    assert.are.equal(404, (rerank(srv, { model = "no-such-model", query = "q", documents = DOCS })))
    d.request(srv, "/nope")
    d.sleep(1.3) -- every worker ticks and publishes
    local fams = scrape(srv)
    assert.are.equal(12, sum(fams, "rerankd_requests_total", { route = "/v1/rerank", model = "bm25", status = "200" }))
    assert.are.equal(6, sum(fams, "rerankd_requests_total", { route = "/v1/rerank", model = "cohere", status = "200" }))
    assert.are.equal(1, sum(fams, "rerankd_requests_total", { route = "/v1/rerank", model = "", status = "404" }))
    assert.are.equal(1, sum(fams, "rerankd_requests_total", { route = "unmatched", status = "404" }))
    assert.are.equal(3, sum(fams, "rerankd_workers"))
    assert.are.equal(1, sum(fams, "rerankd_build_info"))
    -- upstream latency per deployment, stages, documents, tokens, search units, cost
    assert.are.equal(6, sum(fams, "rerankd_upstream_duration_seconds", { model = "cohere" },
      "rerankd_upstream_duration_seconds_count"))
    assert.are.equal(6, sum(fams, "rerankd_upstream_duration_seconds", { model = "cohere", le = "+Inf" },
      "rerankd_upstream_duration_seconds_bucket"))
    assert.are.equal(6, sum(fams, "rerankd_upstream_requests_total", { model = "cohere", outcome = "ok" }))
    assert.are.equal(19, sum(fams, "rerankd_stage_duration_seconds", { stage = "parse" }, -- the 404 parsed too
      "rerankd_stage_duration_seconds_count"))
    for _, stage in ipairs({ "upstream", "sort", "serialize" }) do
      assert.are.equal(18, sum(fams, "rerankd_stage_duration_seconds", { stage = stage },
        "rerankd_stage_duration_seconds_count"), stage)
    end
    assert.are.equal(18, sum(fams, "rerankd_documents_scored_total", { model = "cohere" }))
    assert.are.equal(36, sum(fams, "rerankd_documents_scored_total", { model = "bm25" }))
    assert.is_true(sum(fams, "rerankd_tokens_total", { model = "cohere" }) > 0)
    assert.are.equal(6, sum(fams, "rerankd_search_units_total", { model = "cohere" }))
    assert.is_true(math.abs(sum(fams, "rerankd_cost_usd_total", { model = "cohere" }) - 0.012) < 1e-9)
    assert.are.equal(6, sum(fams, "rerankd_served_total", { model = "cohere" }))
    assert.are.equal(0, sum(fams, "rerankd_upstream_retries_total", { model = "cohere" }))
    assert.truthy(fams.rerankd_breaker_state)
    assert.truthy(fams.rerankd_fallbacks_total)
    assert.is_true(sum(fams, "rerankd_in_flight_requests") >= 1) -- this scrape
    assert.are.equal("histogram", fams.rerankd_request_duration_seconds.type)
  end)

  it("keeps counters across SIGHUP", function()
    local before = sum(scrape(srv), "rerankd_requests_total", { route = "/v1/rerank" })
    os.execute("kill -HUP " .. srv.pid)
    for _ = 1, 50 do
      local _, n = d.logtext(srv):gsub("configuration reloaded", "")
      if n >= 3 then break end
      d.sleep(0.05)
    end
    rerank(srv, { model = "bm25", query = "q", documents = DOCS })
    d.sleep(1.3)
    local after = sum(scrape(srv), "rerankd_requests_total", { route = "/v1/rerank" })
    assert.is_true(after >= before + 1, ("%d then %d"):format(before, after))
  end)
end)

---------------------------------------------------------------------------------------------
describe("server.gc_idle_step", function()
  -- Requests leave garbage; with gc_idle_step the worker collects it once nothing is in flight
  -- (core/server.c calls server.idle()), so the next request does not pay for it. gc_pause 1000
  -- keeps the collector from starting on its own; bodies stay under the 1 MB that makes the
  -- worker collect everything on its next tick.
  local function heap_after_requests(step, strings)
    local srv = assert(d.start(([[
server: { auth: none, gc_pause: 1000, gc_idle_step: %d, max_body: 4m }
models:
  - { name: bm25, provider: bm25 }
]]):format(step)))
    for r = 1, 6 do
      -- new texts each time (equal strings would be shared, not garbage), as objects: a string
      -- document's text stays bytes of the body, outside the Lua heap (docs.lazy, core/body.c)
      local docs = {}
      for i = 1, 300 do
        local text = ("document %d.%d about cats and dogs "):format(r, i) .. string.rep("lorem ipsum ", 60)
        docs[i] = strings and text or { text = text }
      end
      local status, raw = rerank(srv, { query = "cats", documents = docs, top_n = 3 })
      assert.are.equal(200, status, raw)
    end
    d.sleep(0.2) -- the idle hook runs right after the last reply
    local bytes = sum(scrape(srv), "rerankd_lua_memory_bytes")
    d.stop(srv)
    return bytes
  end

  it("collects the requests' garbage between requests; 0 leaves it to the collector's pace", function()
    local kept, collected = heap_after_requests(0), heap_after_requests(65536)
    assert.is_true(kept > 0 and collected > 0, kept .. " " .. collected)
    assert.is_true(collected < kept / 2, ("Lua heap %d bytes with idle steps, %d without"):format(collected, kept))
  end)

  it("string documents and the body stay outside the Lua heap (nothing for the collector)", function()
    local strings, objects = heap_after_requests(0, true), heap_after_requests(0, false)
    assert.is_true(strings < objects / 2, ("Lua heap %d bytes after string documents, %d after objects"):format(strings, objects))
  end)
end)

describe("GET /health?deep=1", function()
  local mock
  setup(function() mock = d.start_mock() end)
  teardown(function() d.stop_mock(mock) end)

  it("200 when every model ranks the relevant document first", function()
    local srv = assert(d.start(([[
server: { auth: none }
models:
  - { name: bm25, provider: bm25 }
  - name: cohere
    provider: cohere
    api_key: test-key
    base_url: "%s/cohere"
    health: { query: "capital of France", relevant: "Paris is the capital of France", irrelevant: "bananas" }
  - { name: skipped, provider: bm25, health: false }
]]):format(mock.url)))
    finally(function() d.stop(srv) end)
    local status, raw, _, j = d.request(srv, "/health?deep=1")
    assert.are.equal(200, status, raw)
    assert.are.equal("ok", j.status)
    local by = {}
    for _, m in ipairs(j.models) do by[m.name] = m end
    assert.is_true(by.bm25.ok)
    assert.is_true(by.cohere.ok)
    assert.is_true(by.cohere.relevant > by.cohere.irrelevant)
    assert.is_number(by.cohere.latency_ms)
    assert.is_true(by.skipped.skipped)
    local seen = mock_requests(mock)
    assert.are.equal("capital of France", seen[#seen].json.query)
    -- the plain health check stays cheap
    mock_reset(mock)
    status = d.request(srv, "/health")
    assert.are.equal(200, status)
    assert.are.equal(0, #mock_requests(mock))
  end)

  it("503 naming the failing model and its last error", function()
    local srv = assert(d.start(([[
server: { auth: none }
models:
  - { name: bm25, provider: bm25 }
  - { name: down, provider: cohere, api_key: test-key, base_url: "http://127.0.0.1:1", timeout: 2s }
  - { name: badkey, provider: cohere, api_key: wrong-key, base_url: "%s/cohere" }
]]):format(mock.url)))
    finally(function() d.stop(srv) end)
    local status, raw, _, j = d.request(srv, "/health?deep=1")
    assert.are.equal(503, status, raw)
    assert.are.equal("failing", j.status)
    local by = {}
    for _, m in ipairs(j.models) do by[m.name] = m end
    assert.is_true(by.bm25.ok)
    assert.is_false(by.down.ok)
    assert.truthy(by.down.error:find("unreachable", 1, true), by.down.error)
    assert.are.equal(by.down.error, by.down.last_error)
    assert.is_number(by.down.last_error_at)
    assert.is_false(by.badkey.ok)
    assert.truthy(by.badkey.error:find("401", 1, true), by.badkey.error)
    assert.is_nil(raw:find("wrong-key", 1, true), "the model's API key leaked: " .. raw)
  end)
end)

---------------------------------------------------------------------------------------------
describe("SIGTERM", function()
  it("drain completes in-flight slow requests, refuses new connections, exits 0", function()
    local cfgpath = d.writefile(d.tmpname(".yaml"), ([[
server: { auth: none, drain_timeout: 10s }
models:
  - { name: slow, provider_file: "%s", seconds: 1.5 }
]]):format(SLEEPY))
    local log, rcfile, pidfile = d.tmpname(".log"), d.tmpname(".rc"), d.tmpname(".pid")
    -- the inner sh execs rerankd (same pid); the subshell records its exit status
    os.execute(("( sh -c 'echo $$ > %s; exec %s/rerankd -c %s -p 0 -w 1' >%s 2>&1; echo $? > %s ) &")
      :format(pidfile, ROOT, cfgpath, log, rcfile))
    local port, pid
    for _ = 1, 100 do
      port = (d.readfile(log) or ""):match("listening on [^\n]-:(%d+) with")
      pid = tonumber(d.readfile(pidfile) or "")
      if port and pid then break end
      d.sleep(0.05)
    end
    assert.truthy(port, d.readfile(log))
    local srv = { url = "http://127.0.0.1:" .. port, pid = pid, log = log }
    local body = d.writefile(d.tmpname(".json"), cjson.encode({ query = "q", documents = { "a", "b" } }))
    local outs = {}
    for i = 1, 3 do
      outs[i] = d.tmpname(".out")
      os.execute(("curl -s -o %s.body -w '%%{http_code}' -H 'Content-Type: application/json' --data-binary @%s "
        .. "%s/v1/rerank > %s 2>/dev/null &"):format(outs[i], body, srv.url, outs[i]))
    end
    d.sleep(0.5)
    local fams = scrape(srv)
    assert.is_true(sum(fams, "rerankd_in_flight_requests") >= 4, "3 slow requests + this scrape")
    os.execute("kill -TERM " .. pid)
    d.sleep(0.3)
    -- no new connections once draining
    local code = d.sh(("curl -s -o /dev/null -w '%%{http_code}' --max-time 2 %s/health"):format(srv.url))
    assert.are.equal("000", code)
    for _ = 1, 100 do
      if d.readfile(rcfile) then break end
      d.sleep(0.05)
    end
    -- each curl writes its status when it exits, which may come a moment after the daemon's
    for _ = 1, 100 do
      local done = 0
      for i = 1, 3 do if (d.readfile(outs[i]) or "") ~= "" then done = done + 1 end end
      if done == 3 then break end
      d.sleep(0.05)
    end
    for i = 1, 3 do
      assert.are.equal("200", d.readfile(outs[i]), "slow request " .. i)
      local j = cjson.decode(d.readfile(outs[i] .. ".body"))
      assert.are.equal(2, #j.results)
    end
    assert.are.equal("0", (d.readfile(rcfile) or ""):match("%d+"), d.readfile(log))
    assert.truthy(d.readfile(log):find("rerankd stopped", 1, true))
  end)
end)

---------------------------------------------------------------------------------------------
describe("examples", function()
  it("examples/config/production.yaml validates with rerankd -t (and needs its API key)", function()
    local cfg = ROOT .. "/examples/config/production.yaml"
    local out = d.sh(("RERANKD_API_KEY=k-0123456789 %s/rerankd -t -c %s 2>&1; echo rc=$?"):format(ROOT, cfg))
    assert.truthy(out:find("is ok", 1, true), out)
    assert.truthy(out:find("rc=0", 1, true), out)
    out = d.sh(("env -u RERANKD_API_KEY %s/rerankd -t -c %s 2>&1; echo rc=$?"):format(ROOT, cfg))
    assert.truthy(out:find("set RERANKD_API_KEY", 1, true), out)
    assert.truthy(out:find("rc=1", 1, true), out)
  end)

  it("examples/systemd/rerankd.service validates before start and reload, and outlasts the drain", function()
    local unit = d.readfile(ROOT .. "/examples/systemd/rerankd.service")
    assert.truthy(unit:find("ExecStartPre=/usr/local/bin/rerankd -t -c /etc/rerankd/config.yaml", 1, true))
    assert.truthy(unit:find("ExecReload=/usr/local/bin/rerankd -t -c", 1, true))
    assert.truthy(unit:find("ExecReload=/bin/kill -HUP $MAINPID", 1, true))
    local stop = tonumber(unit:match("TimeoutStopSec=(%d+)"))
    local drain = tonumber(d.readfile(ROOT .. "/examples/config/production.yaml"):match("drain_timeout: (%d+)s"))
    assert.is_true(stop > drain)
    assert.is_nil(unit:find("\nMemoryDenyWriteExecute=yes", 1, true)) -- LuaJIT's JIT needs W+X pages
  end)
end)
