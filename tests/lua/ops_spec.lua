-- Operations, pure logic: API keys (auth.lua), rate limits (ratelimit.lua), the score cache
-- (cache.lua), metrics (metrics.lua), semantic health (health.lua) and their config.
-- Redis is a double here (the real one is in tests/e2e/ops_spec.lua).
local auth = require "rerank.auth"
local ratelimit = require "rerank.ratelimit"
local cache = require "rerank.cache"
local metrics = require "rerank.metrics"
local health = require "rerank.health"
local config = require "rerank.config"
local prom = require "support.prom"

---------------------------------------------------------------------------------------------
-- a Redis double: strings with expiry, MGET/SET/GET/INCRBY/PEXPIRE/TIME, pipelines, and
-- SCRIPT LOAD / EVALSHA / EVAL running the script in a sandbox like Redis does
local function redis_double(clock)
  local R = { data = {}, calls = {}, scripts = {}, fail = nil, clock = clock or function() return 1000 end }
  local function cmd(name, ...)
    local a = { ... }
    name = name:upper()
    if name == "GET" then
      local v = R.data[a[1]]
      if v == nil then return false end
      return v
    elseif name == "SET" then
      R.data[a[1]] = tostring(a[2])
      return "OK"
    elseif name == "MGET" then
      local out = {}
      for i = 1, #a do
        local v = R.data[a[i]]
        out[i] = v == nil and false or v
      end
      return out
    elseif name == "INCRBY" then
      local v = (tonumber(R.data[a[1]]) or 0) + tonumber(a[2])
      R.data[a[1]] = tostring(v)
      return v
    elseif name == "PEXPIRE" then
      return 1
    elseif name == "TIME" then
      local t = R.clock()
      local s = math.floor(t)
      return { tostring(s), tostring(math.floor((t - s) * 1e6)) }
    end
    error("redis double: unsupported command " .. name)
  end
  local function run_script(src, nkeys, ...)
    local args = { ... }
    local keys, argv = {}, {}
    for i = 1, nkeys do keys[i] = tostring(args[i]) end
    for i = nkeys + 1, #args do argv[#argv + 1] = tostring(args[i]) end
    local fn = assert(loadstring(src))
    setfenv(fn, { redis = { call = cmd }, KEYS = keys, ARGV = argv, tonumber = tonumber, tostring = tostring,
                  math = math })
    return fn()
  end
  function R.call(opts, name, ...)
    R.calls[#R.calls + 1] = { name, ... }
    R.opts = opts
    if R.fail then return nil, R.fail end
    if name == "SCRIPT" then
      local src = select(2, ...)
      local sha = "sha" .. #src
      R.scripts[sha] = src
      return sha
    elseif name == "EVALSHA" then
      local sha = ...
      if not R.scripts[sha] then return nil, "NOSCRIPT No matching script. Please use EVAL." end
      return run_script(R.scripts[sha], select(2, ...))
    elseif name == "EVAL" then
      local src = ...
      R.scripts["sha" .. #src] = src
      return run_script(src, select(2, ...))
    end
    return cmd(name, ...)
  end
  function R.pipeline(opts, cmds)
    R.calls[#R.calls + 1] = { "PIPELINE", #cmds }
    R.opts = opts
    if R.fail then return nil, R.fail end
    local out = {}
    for i, c in ipairs(cmds) do out[i] = cmd(unpack(c)) end
    return out
  end
  return R
end

---------------------------------------------------------------------------------------------
describe("auth", function()
  local a = auth.new({ keys = { { name = "team-a", key = "secret-a" }, { name = "key-2", key = "s2" } },
                       open_paths = { "/health", "/metrics" } })
  local function ctx(h) return { headers = { authorization = h } } end

  before_each(function() metrics.reset() end)

  it("is off without keys", function()
    assert.is_nil(auth.new({ keys = {} }))
    assert.is_nil(auth.new(nil))
    assert.is_true(auth.check(nil, ctx(nil), "/v1/rerank"))
  end)

  it("accepts a configured key and names it", function()
    assert.are.equal("team-a", auth.check(a, ctx("Bearer secret-a"), "/v1/rerank"))
    assert.are.equal("key-2", auth.check(a, ctx("bearer s2"), "/v1/rerank"))
    assert.are.equal("team-a", auth.check(a, ctx("  Bearer   secret-a  "), "/v1/rerank"))
  end)

  it("refuses missing, malformed and wrong keys", function()
    assert.are.same({ nil, "missing" }, { auth.check(a, ctx(nil), "/v1/rerank") })
    assert.are.same({ nil, "malformed" }, { auth.check(a, ctx("Basic abc"), "/v1/rerank") })
    assert.are.same({ nil, "malformed" }, { auth.check(a, ctx("Bearer"), "/v1/rerank") })
    assert.are.same({ nil, "invalid" }, { auth.check(a, ctx("Bearer secret-b"), "/v1/rerank") })
    assert.are.same({ nil, "invalid" }, { auth.check(a, ctx("Bearer secret-a-longer"), "/v1/rerank") })
    assert.are.same({ nil, "invalid" }, { auth.check(a, ctx("Bearer secret"), "/v1/rerank") })
    assert.are.same({ nil, "invalid" }, { auth.check(a, ctx("Bearer secret-a\0"), "/v1/rerank") })
    assert.are.equal(1, metrics.get("rerankd_auth_failures_total", { reason = "missing" }))
    assert.are.equal(2, metrics.get("rerankd_auth_failures_total", { reason = "malformed" }))
    assert.are.equal(4, metrics.get("rerankd_auth_failures_total", { reason = "invalid" }))
  end)

  it("leaves open paths open", function()
    assert.is_true(auth.check(a, ctx(nil), "/health"))
    assert.is_true(auth.check(a, ctx(nil), "/metrics"))
    local closed = auth.new({ keys = { "k" }, open_paths = {} })
    assert.are.same({ nil, "missing" }, { auth.check(closed, ctx(nil), "/metrics") })
    assert.are.equal("key-1", auth.check(closed, ctx("Bearer k"), "/metrics"))
  end)

  it("compares a fixed length, every byte, with NUL padding", function()
    assert.are.equal(64, a.len)
    assert.is_true(auth.equal("abc", "abc"))
    assert.is_false(auth.equal("abc", "abd"))
    assert.is_false(auth.equal("abc", "abc\0"))
    assert.is_false(auth.equal("", "a"))
    assert.is_true(auth.equal(("x"):rep(100), ("x"):rep(100)))
    local long = auth.new({ keys = { ("k"):rep(300) } })
    assert.are.equal(300, long.len)
    assert.are.equal(300, #long.keys[1].padded)
  end)

  it("answers 401 JSON without echoing the key", function()
    local status, headers, body = auth.reply("invalid")
    assert.are.equal(401, status)
    assert.are.equal('Bearer realm="rerankd"', headers["www-authenticate"])
    -- the error, not a body: server.lua renders it in the client's shape
    assert.are.same({ type = "authentication_error", message = "invalid API key" }, body)
    local _, _, missing = auth.reply("missing")
    assert.truthy(missing.message:find("Authorization: Bearer <key>", 1, true))
  end)
end)

---------------------------------------------------------------------------------------------
describe("ratelimit window math", function()
  it("estimates a sliding window from two fixed ones", function()
    assert.are.equal(10, ratelimit.estimate(0, 10, 0.5))
    assert.are.equal(15, ratelimit.estimate(10, 10, 0.5))
    assert.are.equal(20, ratelimit.estimate(10, 10, 0))
  end)

  it("computes Retry-After", function()
    -- this window is full: the next one, until 3 * (1 - g) + 1 <= 3, g = 1/3 (80 s), but
    -- never more than the window
    assert.are.equal(60, ratelimit.retry_after(0, 3, 1, 3, 0, 60))
    assert.are.equal(60, ratelimit.retry_after(0, 60, 1, 60, 0.005, 60)) -- 60.7 s, not 61
    assert.are.equal(50, ratelimit.retry_after(0, 3, 1, 3, 0.5, 60))
    -- room in this window once the previous one decays: 6 * (1 - f) + 2 <= 4, f = 2/3
    assert.are.equal(25, ratelimit.retry_after(6, 1, 1, 4, 0.25, 60))
    -- never fits: a whole window
    assert.are.equal(60, ratelimit.retry_after(0, 0, 5, 4, 0.3, 60))
    -- at least a second
    assert.are.equal(1, ratelimit.retry_after(0, 0, 1, 1, 0.999, 60))
  end)
end)

describe("ratelimit (local)", function()
  local now
  local function lim(cfg) return ratelimit.new(cfg, { clock = function() return now end }) end
  before_each(function()
    now = 6000 -- the start of a window
    metrics.reset()
  end)

  it("is nil without limits", function()
    assert.is_nil(ratelimit.new(nil))
    assert.is_nil(ratelimit.new({ keys = {}, models = {} }))
  end)

  it("refuses the request over the per-key limit with a Retry-After", function()
    local l = lim({ per_key = { requests_per_minute = 2 }, keys = {}, models = {} })
    assert.is_true(l:admit("k", "m", 1))
    assert.is_true(l:admit("k", "m", 1))
    local ok, d = l:admit("k", "m", 1)
    assert.is_nil(ok)
    assert.are.equal("key", d.scope)
    assert.are.equal("requests", d.limit)
    assert.is_true(d.retry_after >= 1 and d.retry_after <= 120)
    assert.truthy(d.message:find('2 requests per minute for API key "k"', 1, true), d.message)
    assert.is_true(l:admit("other", "m", 1)) -- each key its own budget
    assert.are.equal(1, metrics.get("rerankd_rate_limited_total", { scope = "key", limit = "requests" }))
  end)

  it("slides: the previous window decays", function()
    local l = lim({ per_key = { requests_per_minute = 4 }, keys = {}, models = {} })
    for _ = 1, 4 do assert.is_true(l:admit("k", nil, 1)) end
    assert.is_nil((l:admit("k", nil, 1)))
    now = now + 60       -- next window starts: estimate = 4 * (1 - 0) = 4 -> still full
    assert.is_nil((l:admit("k", nil, 1)))
    now = now + 15       -- a quarter in: 4 * 0.75 = 3 -> one fits
    assert.is_true(l:admit("k", nil, 1))
    assert.is_nil((l:admit("k", nil, 1)))
    now = now + 120      -- two windows later everything is forgotten
    for _ = 1, 4 do assert.is_true(l:admit("k", nil, 1)) end
  end)

  it("Retry-After is when the request fits again", function()
    local l = lim({ per_key = { requests_per_minute = 4 }, keys = {}, models = {} })
    for _ = 1, 4 do assert.is_true(l:admit("k", nil, 1)) end
    now = now + 30
    local _, d = l:admit("k", nil, 1)
    -- this window: cur = 4; next window: prev 4 decays, 4 * (1 - g) + 1 <= 4 -> g = 1/4 -> 30 + 15 s
    assert.are.equal(45, d.retry_after)
    now = now + 45
    assert.is_true(l:admit("k", nil, 1))
  end)

  it("counts documents, and says so when one request alone is too big", function()
    local l = lim({ per_key = { documents_per_minute = 100 }, keys = {}, models = {} })
    assert.is_true(l:admit("k", nil, 60))
    local ok, d = l:admit("k", nil, 50)
    assert.is_nil(ok)
    assert.are.equal("documents", d.limit)
    assert.is_true(l:admit("k", nil, 40))
    local _, big = l:admit("k2", nil, 101)
    assert.are.equal('request has 101 documents, more than the limit of 100 documents per minute for API key "k2"',
      big.message)
    assert.are.equal(60, big.retry_after)
  end)

  it("applies per-model limits to configured names only, and overrides per name", function()
    local l = ratelimit.new({ per_model = { requests_per_minute = 1 }, models = { big = { requests_per_minute = 3 } },
                              keys = {} },
      { clock = function() return now end, known_model = function(n) return n == "m" or n == "big" end })
    assert.is_true(l:admit(nil, "m", 1))
    local ok, d = l:admit(nil, "m", 1)
    assert.is_nil(ok)
    assert.are.same({ "model", "m" }, { d.scope, d.name })
    assert.truthy(d.message:find('for model "m"', 1, true))
    for _ = 1, 3 do assert.is_true(l:admit(nil, "big", 1)) end
    assert.is_nil((l:admit(nil, "big", 1)))
    for _ = 1, 5 do assert.is_true(l:admit(nil, "unknown-model", 1)) end -- 404 later, no bucket
    assert.is_nil(l.buckets["model:unknown-model:requests"])
  end)

  it("a refused request counts against no limit", function()
    local l = lim({ per_key = { requests_per_minute = 10 }, per_model = { documents_per_minute = 5 }, keys = {},
                    models = {} })
    assert.is_true(l:admit("k", "m", 5))
    for _ = 1, 5 do assert.is_nil((l:admit("k", "m", 1))) end
    assert.are.equal(1, l.buckets["key:k:requests"].cur)
  end)

  it("per-key overrides and the anonymous key", function()
    local l = lim({ per_key = { requests_per_minute = 1 }, keys = { vip = { requests_per_minute = 3 } }, models = {} })
    for _ = 1, 3 do assert.is_true(l:admit("vip", nil, 1)) end
    assert.is_nil((l:admit("vip", nil, 1)))
    assert.is_true(l:admit(nil, nil, 1))
    local _, d = l:admit(nil, nil, 1)
    assert.are.equal("anonymous", d.name)
    assert.truthy(d.message:find("for all clients", 1, true))
  end)

  it("replies 429 with Retry-After", function()
    local status, headers, body = ratelimit.reply({ retry_after = 12, message = "slow down" })
    assert.are.equal(429, status)
    assert.are.equal("12", headers["retry-after"])
    assert.are.equal('{"error":{"type":"rate_limit_error","message":"slow down","param":null}}', body)
    assert.are.same({ status = 429, type = "rate_limit_error", message = "m", retry_after = "1" },
      ratelimit.error({ retry_after = 0.2, message = "m" }))
  end)
end)

describe("ratelimit (redis)", function()
  local t
  before_each(function()
    t = 12000
    metrics.reset()
  end)
  local function lim(r, logs)
    return ratelimit.new({ backend = "redis", per_key = { requests_per_minute = 3 }, keys = {}, models = {} },
      { redis = r, redis_opts = { host = "h", port = 1 }, prefix = "p:", clock = function() return t end,
        log = function(level, msg) if logs then logs[#logs + 1] = level .. ": " .. msg end end })
  end

  it("shares one budget across limiters (workers, instances)", function()
    local r = redis_double(function() return t end)
    local a, b = lim(r), lim(r)
    assert.is_true(a:admit("k", nil, 1))
    assert.is_true(b:admit("k", nil, 1))
    assert.is_true(a:admit("k", nil, 1))
    local ok, d = b:admit("k", nil, 1)
    assert.is_nil(ok)
    -- this window full, next window: 3 * (1 - g) + 1 <= 3, g = 1/3 (80 s), capped at the window
    assert.are.equal(60, d.retry_after)
    assert.are.equal("3", r.data["p:rl:key:k:requests:200"])
    assert.are.same({ host = "h", port = 1 }, r.opts)
    t = t + 60 + 20
    assert.is_true(b:admit("k", nil, 1))
  end)

  it("loads the script once and reloads it after NOSCRIPT", function()
    local r = redis_double(function() return t end)
    local a = lim(r)
    assert.is_true(a:admit("k", nil, 1))
    assert.is_true(a:admit("k", nil, 1))
    local loads = 0
    for _, c in ipairs(r.calls) do if c[1] == "SCRIPT" then loads = loads + 1 end end
    assert.are.equal(1, loads)
    r.scripts = {} -- SCRIPT FLUSH
    assert.is_true(a:admit("k", nil, 1))
    assert.are.equal("EVAL", r.calls[#r.calls][1])
    assert.is_nil((a:admit("k", nil, 1)))
  end)

  it("falls back to this worker's counters when redis fails", function()
    local r = redis_double(function() return t end)
    r.fail = "connect: connection refused"
    local logs = {}
    local a = lim(r, logs)
    for _ = 1, 3 do assert.is_true(a:admit("k", nil, 1)) end
    assert.is_nil((a:admit("k", nil, 1)))
    assert.are.equal(4, metrics.get("rerankd_redis_errors_total", { use = "ratelimit" }))
    assert.are.equal(1, #logs) -- logged once, not per request
    assert.truthy(logs[1]:find("connection refused", 1, true))
  end)
end)

---------------------------------------------------------------------------------------------
describe("cache.hash", function()
  it("is 16 hex digits, stable, and sensitive to every byte and the length", function()
    local seen = {}
    local base = "The quick brown fox jumps over the lazy dog"
    for n = 0, #base do
      local h = cache.hash(base:sub(1, n))
      assert.truthy(h:match("^%x+$") and #h == 16, h)
      assert.is_nil(seen[h], "collision at length " .. n)
      seen[h] = true
      assert.are.equal(h, cache.hash(base:sub(1, n)))
    end
    assert.are_not.equal(cache.hash("a\0"), cache.hash("a"))
    assert.are_not.equal(cache.hash("abcdefgh1"), cache.hash("abcdefgh2"))
    assert.are_not.equal(cache.hash("x", 1), cache.hash("x", 2))
    assert.are_not.equal(cache.hash(("a"):rep(64) .. "b"), cache.hash(("a"):rep(64) .. "c"))
  end)

  it("canonicalises tables whatever the insertion order", function()
    local a, b = { x = 1, y = { 2, 3 }, z = "s" }, {}
    b.z, b.y, b.x = "s", { 2, 3 }, 1
    assert.are.equal(cache.canon(a), cache.canon(b))
    assert.are_not.equal(cache.canon({ "ab", "c" }), cache.canon({ "a", "bc" }))
  end)
end)

describe("cache.lru", function()
  local now
  local function lru(max) return cache.lru(max, function() return now end) end
  before_each(function() now = 100 end)

  it("evicts the least recently used entries beyond its byte budget", function()
    local per = cache.ENTRY_OVERHEAD + 2
    local c = lru(per * 3)
    c:set("k1", 1); c:set("k2", 2); c:set("k3", 3)
    assert.are.equal(3, c:entries())
    assert.are.equal(1, c:get("k1")) -- k1 is now the most recent
    c:set("k4", 4)
    assert.are.equal(3, c:entries())
    assert.is_nil(c:get("k2"))
    assert.are.equal(1, c:get("k1"))
    assert.are.equal(4, c:get("k4"))
    assert.are.equal(per * 3, c:bytes())
  end)

  it("expires entries after their ttl", function()
    local c = lru(1e6)
    c:set_many({ "a", "b" }, { 1, 2 }, 10)
    c:set("c", 3, 0) -- no expiry
    now = now + 9
    local vals, hits = c:get_many({ "a", "b", "c", "d" })
    assert.are.same({ 1, 2, 3 }, vals)
    assert.are.equal(3, hits)
    now = now + 2
    vals, hits = c:get_many({ "a", "b", "c" })
    assert.are.same({ [3] = 3 }, vals)
    assert.are.equal(1, hits)
    assert.are.equal(1, c:entries())
  end)

  it("updates in place and refuses entries larger than the budget", function()
    local c = lru(cache.ENTRY_OVERHEAD + 10)
    c:set("k", 1)
    c:set("k", 2)
    assert.are.equal(1, c:entries())
    assert.are.equal(2, c:get("k"))
    c:set(("x"):rep(100), 1)
    assert.are.equal(1, c:entries())
  end)
end)

describe("cache.wrap (what the router calls)", function()
  local model = { name = "m", provider = "http", model = "up-1", options = {}, extra_body = {} }
  local upstream_calls

  -- an instance double: scores are the text length; `degrade` marks answers degraded.
  -- inst:score(model, req, report) is the wrapped call (the router's); report.cache its status.
  local function instance(cfg, opts)
    opts = opts or {}
    local inst = { providers = { m = opts.provider or { build = function() end, parse = function() end } } }
    inst.cache = cache.new(cfg, opts.cache_opts)
    local cached = cache.wrap(inst, function(_, req)
      local texts, scores = {}, {}
      for i, d in ipairs(req.documents) do
        texts[i] = d.text
        scores[i] = #d.text + (opts.bonus or 0)
      end
      upstream_calls[#upstream_calls + 1] = texts
      if opts.fail then return nil, { status = 502, message = "down" } end
      return scores, { prompt_tokens = #texts, search_units = 1 }, opts.degrade or false, opts.out
    end)
    function inst.score(_, mdl, req, report) return cached(mdl, req, report) end
    return inst
  end

  local function req(query, texts, extra)
    local docs = {}
    for i, t in ipairs(texts) do docs[i] = { index = i - 1, text = t, raw = t } end
    local r = { shape = "rerankd", query = query, documents = docs }
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end

  before_each(function()
    upstream_calls = {}
    metrics.reset()
  end)

  it("is off without a cache section, and passes through", function()
    local inst = instance({})
    assert.is_nil(inst.cache)
    local s = inst:score(model, req("q", { "a", "bb" }))
    assert.are.same({ 1, 2 }, s)
    assert.are.equal(1, #upstream_calls)
    assert.are.equal(1, metrics.get("rerankd_upstream_requests_total", { model = "m", provider = "http", outcome = "ok" }))
    assert.are.equal(1, metrics.get("rerankd_upstream_duration_seconds", { model = "m" }).count)
    assert.is_nil(cache.new({ cache = { enabled = false } }))
  end)

  it("miss, hit, partial: the upstream sees only missing documents", function()
    local inst = instance({ cache = { size = 1e6, ttl = 60 } })
    local r1, rep1 = req("q", { "a", "bb", "ccc" }), {}
    local s, u = inst:score(model, r1, rep1)
    assert.are.same({ 1, 2, 3 }, s)
    assert.are.equal(3, u.prompt_tokens)
    assert.are.equal("miss", rep1.cache)

    local r2, rep2 = req("q", { "ccc", "a", "bb" }), {}
    s, u = inst:score(model, r2, rep2)
    assert.are.same({ 3, 1, 2 }, s)
    assert.are.equal("hit", rep2.cache)
    assert.are.equal(0, u.total_tokens)
    assert.are.equal(1, #upstream_calls)

    local r3, rep3 = req("q", { "dddd", "a", "eeeee" }, { top_n = 1 }), {}
    s, u = inst:score(model, r3, rep3)
    assert.are.same({ 4, 1, 5 }, s)
    assert.are.equal("partial", rep3.cache)
    assert.are.same({ "dddd", "eeeee" }, upstream_calls[2])
    assert.are.equal(2, u.prompt_tokens)
    assert.are.equal(1, r3.top_n) -- the caller's request is untouched

    assert.are.equal(1, metrics.get("rerankd_cache_requests_total", { model = "m", result = "hit" }))
    assert.are.equal(1, metrics.get("rerankd_cache_requests_total", { model = "m", result = "partial" }))
    assert.are.equal(1, metrics.get("rerankd_cache_requests_total", { model = "m", result = "miss" }))
    assert.are.equal(4, metrics.get("rerankd_cache_documents_total", { model = "m", result = "hit" }))
    assert.are.equal(5, metrics.get("rerankd_cache_documents_total", { model = "m", result = "miss" }))
  end)

  it("keys on the model, its settings, the query and request options, not on ids", function()
    local inst = instance({ cache = { size = 1e6 } })
    inst:score(model, req("q", { "a" }))
    local function misses(mdl, r)
      local before = #upstream_calls
      inst:score(mdl, r)
      return #upstream_calls - before
    end
    assert.are.equal(1, misses(model, req("other query", { "a" })))
    local m2 = { name = "m", provider = "http", model = "up-2", options = {}, extra_body = {} }
    assert.are.equal(1, misses(m2, req("q", { "a" })))
    local m3 = { name = "m", provider = "http", model = "up-1", instruction = "be strict", options = {}, extra_body = {} }
    assert.are.equal(1, misses(m3, req("q", { "a" })))
    assert.are.equal(1, misses(model, req("q", { "a" }, { instruction = "x" })))
    assert.are.equal(1, misses(model, req("q", { "a" }, { truncate = "start" })))
    -- request-scoped fields do not matter
    assert.are.equal(0, misses(model, req("q", { "a" }, { id = "rerank-1", timeout = 3, top_n = 1, user = "u" })))
    -- object documents: the same text and fields under another id still hit
    local r = req("q", {})
    r.documents = { { index = 0, text = "a", raw = { id = "x1", text = "a" } } }
    assert.are.equal(1, misses(model, r))
    r.documents = { { index = 0, text = "a", raw = { id = "x2", text = "a", metadata = { k = 1 } } } }
    assert.are.equal(0, misses(model, r))
  end)

  it("never stores degraded, ranked or repaired answers", function()
    local inst = instance({ cache = { size = 1e6 } }, { degrade = true })
    inst:score(model, req("q", { "a" }))
    inst:score(model, req("q", { "a" }))
    assert.are.equal(2, #upstream_calls)
    for _, out in ipairs({ { score_kind = "rank" }, { repairs = 1 }, { degraded = true } }) do
      upstream_calls = {}
      local i2 = instance({ cache = { size = 1e6 } }, { out = out })
      i2:score(model, req("q", { "a" }))
      i2:score(model, req("q", { "a" }))
      assert.are.equal(2, #upstream_calls)
    end
    upstream_calls = {}
    local i3 = instance({ cache = { size = 1e6 } }, { out = { repairs = 0 } })
    i3:score(model, req("q", { "a" }))
    i3:score(model, req("q", { "a" }))
    assert.are.equal(1, #upstream_calls)
  end)

  it("does not store failures", function()
    local inst = instance({ cache = { size = 1e6 } }, { fail = true })
    local s, err = inst:score(model, req("q", { "a" }))
    assert.is_nil(s)
    assert.are.equal(502, err.status)
    assert.are.equal(0, inst.cache.store:entries())
    assert.are.equal(1, metrics.get("rerankd_upstream_requests_total", { model = "m", provider = "http", outcome = "error" }))
  end)

  it("skips local providers and cacheable = false, honours cacheable = true and cache.models", function()
    local local_p = instance({ cache = {} }, { provider = { score = function() end } })
    local_p:score(model, req("q", { "a" }))
    local_p:score(model, req("q", { "a" }))
    assert.are.equal(2, #upstream_calls)
    upstream_calls = {}
    local listwise = instance({ cache = {} }, { provider = { plan = function() end, cacheable = false } })
    listwise:score(model, req("q", { "a" }))
    listwise:score(model, req("q", { "a" }))
    assert.are.equal(2, #upstream_calls)
    upstream_calls = {}
    local forced = instance({ cache = {} }, { provider = { score = function() end, cacheable = true } })
    forced:score(model, req("q", { "a" }))
    forced:score(model, req("q", { "a" }))
    assert.are.equal(1, #upstream_calls)
    upstream_calls = {}
    local other = instance({ cache = { models = { "not-m" } } })
    other:score(model, req("q", { "a" }))
    other:score(model, req("q", { "a" }))
    assert.are.equal(2, #upstream_calls)
  end)

  it("reports the status in the caller's report, merged over the calls made with it", function()
    local inst = instance({ cache = { size = 1e6 } })
    local first, merged, none = {}, {}, {}
    inst:score(model, req("q", { "a" }), first)
    inst:score(model, req("q", { "a" }), merged)
    inst:score(model, req("q", { "b" }), merged)
    inst:score(model, req("q", { "c" })) -- no report: nothing to fill in
    assert.are.equal("miss", first.cache)
    assert.are.equal("partial", merged.cache)
    assert.is_nil(none.cache)
    assert.are.equal("partial", cache.merge_status("hit", "miss"))
    assert.are.equal("hit", cache.merge_status(nil, "hit"))
  end)

  it("uses redis when configured: MGET, SET with EX, errors count as misses", function()
    local r = redis_double()
    local cfg = { cache = { backend = "redis", ttl = 120 }, redis = { host = "h", port = 7, prefix = "x:" } }
    local logs = {}
    local quiet = { redis = r, log = function(_, msg) logs[#logs + 1] = msg end }
    local inst = instance(cfg, { cache_opts = quiet })
    assert.are.equal("redis", inst.cache.backend)
    inst:score(model, req("q", { "a", "bb" }))
    assert.are.equal(1, #upstream_calls)
    local n = 0
    for k, v in pairs(r.data) do
      n = n + 1
      assert.truthy(k:match("^x:c:%x+$"), k)
      assert.truthy(v == "1" or v == "2")
    end
    assert.are.equal(2, n)
    local last = r.calls[#r.calls]
    assert.are.same({ "PIPELINE", 2 }, last)
    local r2, rep2 = req("q", { "bb", "a", "ccc" }), {}
    local s = inst:score(model, r2, rep2)
    assert.are.same({ 2, 1, 3 }, s)
    assert.are.equal("partial", rep2.cache)
    assert.are.same({ "ccc" }, upstream_calls[2])
    -- a second instance (another worker) sees the same entries
    local other = instance(cfg, { cache_opts = quiet })
    local rep3 = {}
    other:score(model, req("q", { "a", "bb", "ccc" }), rep3)
    assert.are.equal("hit", rep3.cache)
    r.fail = "timeout: redis did not answer in time"
    local rep4 = {}
    assert.are.same({ 1 }, (other:score(model, req("q", { "a" }), rep4)))
    assert.are.equal("miss", rep4.cache)
    assert.is_true(metrics.get("rerankd_redis_errors_total", { use = "cache" }) >= 1)
    assert.truthy(logs[1]:find("redis did not answer", 1, true))
  end)
end)

describe("Instance:rerank reports upstream and cache status as values", function()
  local rerank = require "rerank"
  local ANSWER = '{"results":[{"index":0,"relevance_score":0.9},{"index":1,"relevance_score":0.1}]}'

  -- a transport whose answers come from a list, one per call ({status, body})
  local function transport(answers)
    local t = { calls = 0 }
    function t.request()
      t.calls = t.calls + 1
      local a = answers[math.min(t.calls, #answers)]
      return { status = a[1], headers = {}, body = a[2] }
    end
    function t.request_all(list)
      local out = {}
      for i = 1, #list do out[i] = t.request() end
      return out
    end
    return t
  end

  local function instance(t, extra)
    local cfg = { models = { { name = "co", provider = "cohere", api_key = "k", base_url = "http://up" } } }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return assert(rerank.new(cfg, { transport = t }))
  end

  before_each(function() metrics.reset() end)

  it("returns the last upstream answer's status and the cache status in the result", function()
    local t = transport({ { 200, ANSWER } })
    local inst = instance(t, { cache = { size = 1e6 } })
    local body = { model = "co", query = "q", documents = { "a", "b" } }
    local res = assert(inst:rerank(body))
    assert.are.equal(200, res.upstream_status)
    assert.are.equal("miss", res.cache)
    res = assert(inst:rerank(body)) -- every pair cached: no upstream call
    assert.is_nil(res.upstream_status)
    assert.are.equal("hit", res.cache)
    assert.are.equal(1, t.calls)
    res = assert(instance(t):rerank(body)) -- no cache configured: not consulted
    assert.is_nil(res.cache)
  end)

  it("returns them in the error, the upstream's own status first", function()
    local inst = instance(transport({ { 503, '{"message":"busy"}' } }), { cache = { size = 1e6 } })
    local _, err = inst:rerank({ model = "co", query = "q", documents = { "a", "b" } })
    assert.are.equal(503, err.upstream_status)
    assert.are.equal("miss", err.cache)
    -- an answer that cannot be read: the error has no HTTP status of its own; the last seen is 200
    inst = instance(transport({ { 200, "not json" } }))
    _, err = inst:rerank({ model = "co", query = "q", documents = { "a", "b" } })
    assert.are.equal(502, err.status)
    assert.are.equal(200, err.upstream_status)
    assert.is_nil(err.cache)
  end)
end)

---------------------------------------------------------------------------------------------
describe("metrics", function()
  before_each(function() metrics.reset() end)

  it("renders valid exposition text (strict parser)", function()
    metrics.inc("rerankd_requests_total", { route = "/v1/rerank", model = "m", status = "200" })
    metrics.inc("rerankd_requests_total", { route = "/v1/rerank", model = 'we"ird\\name\n', status = "200" }, 2)
    metrics.observe("rerankd_upstream_duration_seconds", { model = "m" }, 0.003)
    metrics.observe("rerankd_upstream_duration_seconds", { model = "m" }, 100)
    metrics.set("rerankd_in_flight_requests", nil, 3)
    local text = metrics.render(metrics.merge({ metrics.snapshot(0) }))
    local fams, err = prom.parse(text)
    assert.is_nil(err, err)
    assert.are.equal("counter", fams.rerankd_requests_total.type)
    assert.are.equal(2, prom.value(fams, "rerankd_requests_total", { model = 'we"ird\\name\n' }))
    assert.are.equal(2, prom.value(fams, "rerankd_upstream_duration_seconds", { model = "m", le = "+Inf" },
      "rerankd_upstream_duration_seconds_bucket"))
    assert.are.equal(1, prom.value(fams, "rerankd_upstream_duration_seconds", { model = "m", le = "0.005" },
      "rerankd_upstream_duration_seconds_bucket"))
    assert.are.equal(100.003, prom.value(fams, "rerankd_upstream_duration_seconds", {},
      "rerankd_upstream_duration_seconds_sum"))
    assert.are.equal(3, prom.value(fams, "rerankd_in_flight_requests"))
    assert.truthy(text:find('# TYPE rerankd_upstream_duration_seconds histogram\n', 1, true))
  end)

  it("merges several workers' snapshots", function()
    metrics.inc("rerankd_requests_total", { route = "/r", model = "m", status = "200" }, 3)
    metrics.observe("rerankd_stage_duration_seconds", { stage = "parse" }, 0.0001)
    metrics.set("rerankd_in_flight_requests", nil, 1)
    metrics.set("rerankd_build_info", { version = "1" }, 1)
    local w0 = metrics.snapshot(0)
    metrics.reset()
    metrics.inc("rerankd_requests_total", { route = "/r", model = "m", status = "200" }, 4)
    metrics.inc("rerankd_cost_usd_total", { model = "m" }, 0.1)
    metrics.inc("rerankd_cost_usd_total", { model = "m" }, 0.2)
    metrics.observe("rerankd_stage_duration_seconds", { stage = "parse" }, 2)
    metrics.set("rerankd_in_flight_requests", nil, 2)
    metrics.set("rerankd_build_info", { version = "1" }, 1)
    local w1 = metrics.snapshot(1)
    local merged = metrics.merge({ w0, w1 })
    local fams = assert(prom.parse(metrics.render(merged)))
    assert.are.equal(7, prom.value(fams, "rerankd_requests_total", { route = "/r" }))
    assert.are.equal(3, prom.value(fams, "rerankd_in_flight_requests"))
    assert.are.equal(1, prom.value(fams, "rerankd_build_info"))
    assert.is_true(math.abs(prom.value(fams, "rerankd_cost_usd_total", { model = "m" }) - 0.3) < 1e-12)
    assert.are.equal(2, prom.value(fams, "rerankd_stage_duration_seconds", { stage = "parse" },
      "rerankd_stage_duration_seconds_count"))
    assert.are.equal(1, prom.value(fams, "rerankd_stage_duration_seconds", { stage = "parse", le = "0.0005" },
      "rerankd_stage_duration_seconds_bucket"))
  end)

  it("snapshots round-trip exactly", function()
    metrics.inc("rerankd_cost_usd_total", { model = "a b" }, 0.1 + 0.2)
    metrics.observe("rerankd_request_duration_seconds", { route = "/x" }, 1 / 3)
    local st = metrics.parse_snapshot(metrics.snapshot(7))
    assert.are.equal(7, st.worker)
    assert.are.equal(0.1 + 0.2, st.values.rerankd_cost_usd_total['model="a b"'])
    assert.are.equal(1 / 3, st.values.rerankd_request_duration_seconds['route="/x"'].sum)
  end)

  it("counts a request by route, known model and status, with usage", function()
    local cfg = { model_index = { m = {} }, pipeline_index = {} }
    local ctx = { route = "/v1/rerank", t0_us = require("rerank.core").now_us(),
      info = { model = "m", docs = 3, timing = { parse = 10, upstream = 2000, sort = 5, serialize = 7 },
               usage = { total_tokens = 30, search_units = 1, cost = 0.002 } } }
    metrics.request_start(ctx)
    metrics.request_done(ctx, 200, cfg)
    assert.are.equal(1, metrics.get("rerankd_requests_total", { route = "/v1/rerank", model = "m", status = "200" }))
    assert.are.equal(3, metrics.get("rerankd_documents_scored_total", { model = "m" }))
    assert.are.equal(30, metrics.get("rerankd_tokens_total", { model = "m" }))
    assert.are.equal(1, metrics.get("rerankd_search_units_total", { model = "m" }))
    assert.are.equal(0.002, metrics.get("rerankd_cost_usd_total", { model = "m" }))
    assert.are.equal(1, metrics.get("rerankd_stage_duration_seconds", { stage = "upstream" }).count)
    -- a model name the config does not know is folded (clients cannot grow the label set)
    metrics.request_done({ route = "/v1/rerank", info = { model = "random-123" } }, 404, cfg)
    assert.are.equal(1, metrics.get("rerankd_requests_total", { route = "/v1/rerank", model = "", status = "404" }))
    metrics.request_done({}, 404, cfg)
    assert.are.equal(1, metrics.get("rerankd_requests_total", { route = "unmatched", model = "", status = "404" }))
  end)

  it("reads the router's retries, fallbacks and breaker states at each snapshot", function()
    local router = { stats = { m = { attempts = 5, failures = 2, retries = 2, served = 3, fallbacks = 1 } },
                     breakers = { n = {} } }
    function router.breaker_state(_, name) return name == "n" and "open" or "closed" end
    metrics.watch_router(router)
    metrics.publish()
    assert.are.equal(2, metrics.get("rerankd_upstream_retries_total", { model = "m" }))
    assert.are.equal(1, metrics.get("rerankd_fallbacks_total", { model = "m" }))
    assert.are.equal(2, metrics.get("rerankd_breaker_state", { model = "n", worker = 0 }))
    assert.are.equal(0, metrics.get("rerankd_breaker_state", { model = "m", worker = 0 }))
    metrics.watch_router(nil)
  end)

  it("keeps counters across a reload through the worker's published snapshot", function()
    local slots = {}
    local fake = {
      worker_id = function() return 2 end,
      metrics_publish = function(snap) slots[3] = snap end,
      metrics_collect = function()
        local out = {}
        for i = 1, 4 do if slots[i] then out[#out + 1] = slots[i] end end
        return out
      end,
    }
    slots[1] = "W 0\nc rerankd_requests_total 100 route=\"/r\",model=\"m\",status=\"200\""
    metrics.use_daemon(fake)
    finally(function() metrics.use_daemon(nil); metrics.watch_router(nil) end)
    local router = { stats = { m = { attempts = 5 } }, breakers = {} }
    metrics.watch_router(router)
    metrics.inc("rerankd_requests_total", { route = "/r", model = "m", status = "200" }, 7)
    metrics.set("rerankd_in_flight_requests", nil, 3)
    metrics.publish()
    -- a new Lua state: nothing, until restore() reads this worker's (2) slot, not worker 0's
    metrics.reset()
    router.stats.m.attempts = 1
    assert.is_true(metrics.restore())
    assert.are.equal(7, metrics.get("rerankd_requests_total", { route = "/r", model = "m", status = "200" }))
    assert.is_nil(metrics.get("rerankd_in_flight_requests"))
    metrics.publish()
    assert.are.equal(6, metrics.get("rerankd_upstream_attempts_total", { model = "m" }))
    local fams = assert(prom.parse(metrics.collect_render()))
    assert.are.equal(107, prom.value(fams, "rerankd_requests_total", { route = "/r" }))
    assert.are.equal(1, prom.value(fams, "rerankd_workers"))
  end)

  it("rejects bad declarations", function()
    assert.has_error(function() metrics.define("bad name", "counter", "x") end)
    assert.has_error(function() metrics.define("x_count", "counter", "x") end)
    assert.has_error(function() metrics.inc("rerankd_nope_total") end)
  end)
end)

describe("the strict exposition parser", function()
  it("rejects what Prometheus would", function()
    local bad = {
      "x_total 1\n",                                                   -- no TYPE
      "# TYPE x_total counter\nx_total 1",                             -- no final newline
      "# TYPE x_total counter\nx_total{a=\"b} 1\n",                    -- unterminated
      "# TYPE x_total counter\nx_total{a=\"\\x\"} 1\n",                -- bad escape
      "# TYPE x_total counter\nx_total -1\n",                          -- negative counter
      "# TYPE x counter\nx 1\n",                                       -- counter without _total
      "# TYPE x_total counter\nx_total 1\nx_total 2\n",                -- duplicate
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", -- no +Inf
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
      "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",               -- not contiguous
      "# TYPE a gauge\n\na 1\n",                                       -- blank line
      "# TYPE a gauge\na one\n",                                       -- bad value
    }
    for _, t in ipairs(bad) do assert.is_nil((prom.parse(t)), t) end
    assert.truthy(prom.parse("# HELP a A gauge\n# TYPE a gauge\na{x=\"1\",y=\"\\\"\"} +Inf\n"))
  end)
end)

---------------------------------------------------------------------------------------------
describe("health", function()
  local function inst(models, scorer)
    return { cfg = { models = models }, score = function(_, model, req, report)
      assert.is_nil(report) -- the provider alone: no cache, no request report
      return scorer(model, req)
    end }
  end

  it("parses deep=1", function()
    assert.is_true(health.wants_deep("deep=1"))
    assert.is_true(health.wants_deep("x=2&deep=true"))
    assert.is_true(health.wants_deep("deep"))
    assert.is_false(health.wants_deep("deep=0"))
    assert.is_false(health.wants_deep(""))
    assert.is_false(health.wants_deep(nil))
    assert.is_false(health.wants_deep("deeper=1"))
  end)

  it("passes when relevant > irrelevant, reports failures and keeps the last error", function()
    local answers = {
      good = function() return { 0.9, 0.1 }, {}, false end,
      flipped = function() return { 0.1, 0.9 }, {}, false end,
      down = function() return nil, { status = 502, message = "upstream unreachable" } end,
      raises = function() error("boom") end,
      degraded = function() return { 0.9, -math.huge }, {}, true end,
    }
    local models = {}
    for _, n in ipairs({ "good", "flipped", "down", "raises", "degraded" }) do
      models[#models + 1] = { name = n, provider = "p" }
    end
    models[#models + 1] = { name = "off", provider = "p", health = false }
    local seen
    local i = inst(models, function(model, req)
      seen = req
      return answers[model.name](model, req)
    end)
    local ok, report = health.deep(i)
    assert.is_false(ok)
    local by = {}
    for _, r in ipairs(report) do by[r.name] = r end
    assert.is_true(by.good.ok)
    assert.are.same({ 0.9, 0.1 }, { by.good.relevant, by.good.irrelevant })
    assert.is_number(by.good.latency_ms)
    assert.is_nil(by.good.error)
    assert.is_false(by.flipped.ok)
    assert.truthy(by.flipped.error:find("did not score higher", 1, true))
    assert.are.equal("upstream unreachable", by.down.error)
    assert.truthy(by.raises.error:find("boom", 1, true))
    assert.truthy(by.degraded.error:find("degraded", 1, true))
    assert.is_true(by.off.skipped)
    assert.are.equal(health.DEFAULT.query, seen.query)
    -- a later pass keeps the last error and when it happened
    answers.down = answers.good
    local _, again = health.deep(i)
    for _, r in ipairs(again) do by[r.name] = r end
    assert.is_true(by.down.ok)
    assert.are.equal("upstream unreachable", by.down.last_error)
    assert.is_number(by.down.last_error_at)
  end)

  it("uses the model's own triple", function()
    local seen
    local i = inst({ { name = "m", provider = "p", health = { query = "qq", relevant = "rr" } } }, function(_, req)
      seen = req
      return { 2, 1 }, {}, false
    end)
    local ok = health.deep(i)
    assert.is_true(ok)
    assert.are.equal("qq", seen.query)
    assert.are.same({ "rr", health.DEFAULT.irrelevant }, { seen.documents[1].text, seen.documents[2].text })
  end)
end)

---------------------------------------------------------------------------------------------
describe("ops config", function()
  local function load(t)
    return config.from_table(t)
  end

  it("normalises API keys: strings and {name, key}, empty ones dropped", function()
    local cfg = assert(load({ server = { api_keys = { "a", { name = "team", key = "b" }, "" } } }))
    assert.are.same({ "a", "b" }, cfg.server.api_keys)
    assert.are.same({ { name = "key-1", key = "a" }, { name = "team", key = "b" } }, cfg.auth.keys)
    assert.are.same({ "/health", "/metrics" }, cfg.auth.open_paths)
    assert.is_nil(cfg.server.open_paths)
    local c2 = assert(load({ server = { api_keys = "k", open_paths = {} } }))
    assert.are.same({}, c2.auth.open_paths)
  end)

  it("never echoes a key in a config error", function()
    for _, bad in ipairs({ { 123456789 }, { { name = "n", key = 123456789 } }, { ("9"):rep(2000) } }) do
      local _, err = load({ server = { api_keys = bad } })
      assert.is_string(err)
      assert.is_nil(err:find("123456789", 1, true), err)
      assert.is_nil(err:find("99999", 1, true), err)
    end
  end)

  it("limits: defaults to local, redis when configured", function()
    local cfg = assert(load({ limits = { per_key = { requests_per_minute = 5 } } }))
    assert.are.same({ backend = "local", per_key = { requests_per_minute = 5 }, keys = {}, models = {} }, cfg.limits)
    cfg = assert(load({ redis = { host = "r" }, limits = { per_model = { documents_per_minute = 9 },
      models = { bm25 = { requests_per_minute = 1 } } } }))
    assert.are.equal("redis", cfg.limits.backend)
    assert.are.same({ requests_per_minute = 1 }, cfg.limits.models.bm25)
    assert.is_nil(load({}).limits)
  end)

  it("cache: defaults", function()
    local cfg = assert(load({ cache = {} }))
    assert.are.same({ enabled = true, size = 64 * 1024 * 1024, ttl = 3600 }, cfg.cache)
    cfg = assert(load({ cache = { size = "10m", ttl = "5m", models = { "bm25" } } }))
    assert.are.same({ enabled = true, size = 10 * 1024 * 1024, ttl = 300, models = { "bm25" } }, cfg.cache)
    assert.is_nil(load({}).cache)
  end)

  it("redis: url or fields", function()
    local cfg = assert(load({ redis = { url = "redis://:p%40ss@cache.local:6380/2", prefix = "rr:" } }))
    assert.are.same({ host = "cache.local", port = 6380, password = "p@ss", db = 2, timeout = 0.5, prefix = "rr:" },
      cfg.redis)
    cfg = assert(load({ redis = { url = "redis://localhost" } }))
    assert.are.same({ host = "localhost", port = 6379, db = 0, timeout = 0.5, prefix = "rerankd:" }, cfg.redis)
    cfg = assert(load({ redis = { port = 7000, password = "", timeout = "250ms" } }))
    assert.are.same({ host = "127.0.0.1", port = 7000, db = 0, timeout = 0.25, prefix = "rerankd:" }, cfg.redis)
    cfg = assert(load({ redis = { url = "redis://bob:pw@h" } }))
    assert.are.same({ host = "h", port = 6379, username = "bob", password = "pw", db = 0, timeout = 0.5,
                      prefix = "rerankd:" }, cfg.redis)
    local _, err = load({ redis = { url = "rediss//:hunter2@h" } })
    assert.truthy(err:find('invalid Redis URL "rediss//***@h"', 1, true), err)
    _, err = load({ redis = { url = "redis://:hunter2@" } })
    assert.truthy(err:find('"redis://***@" (no host)', 1, true), err)
  end)

  it("models take health: false or a triple", function()
    local cfg = assert(load({ models = {
      { name = "a", provider = "bm25", health = false },
      { name = "b", provider = "bm25", health = { query = "q" } },
      { name = "c", provider = "bm25", health = { enabled = false } },
      { name = "d", provider = "bm25" } } }))
    assert.is_false(cfg.model_index.a.health)
    assert.are.same({ query = "q" }, cfg.model_index.b.health)
    assert.is_false(cfg.model_index.c.health)
    assert.is_nil(cfg.model_index.d.health)
  end)
end)
