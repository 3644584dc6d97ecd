-- Rate limits (rerank.daemon.ratelimit): window math, the local backend, and the Redis backend
-- against a double (the real Redis is in tests/e2e/ops_spec.lua).
local ratelimit = require "rerank.daemon.ratelimit"
local metrics = require "rerank.daemon.metrics"
local redis_double = require "support.redis_double"

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
