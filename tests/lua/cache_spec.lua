-- The score cache (rerank.engine.cache): key hashing, the LRU, and the engine hook, with Redis as a
-- double (the real one is in tests/e2e/ops_spec.lua).
local cache = require "rerank.engine.cache"
local metrics = require "rerank.daemon.metrics"
local redis_double = require "support.redis_double"

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
