-- lua/rerank/engine/router.lua (aliases, groups, fallbacks, retries, Retry-After, deadlines, circuit
-- breakers, direct provider/model names, local cost), with a fake clock and a scripted score
-- function: no I/O. Document preparation is in documents_spec.lua, batch splitting in upstream_spec.lua.
local router = require "rerank.engine.router"

local ROOT = os.getenv("PWD") or "."

local function model(name, t)
  local m = { name = name, provider = "fake", timeout = 10, retries = 0, fallbacks = {}, price = {} }
  for k, v in pairs(t or {}) do m[k] = v end
  return m
end

local function config(models, extra)
  local cfg = { server = { timeout = 30 }, models = models, model_index = {}, aliases = {}, routing = {},
                paths = { providers = { ROOT .. "/providers" } } }
  for _, m in ipairs(models) do
    cfg.model_index[m.name] = m
    for _, a in ipairs(m.aliases or {}) do
      cfg.aliases[a] = cfg.aliases[a] or {}
      table.insert(cfg.aliases[a], { model = m.name, weight = m.weight or 1 })
    end
  end
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

local function req_of(n, extra)
  local d = {}
  for i = 1, n do d[i] = { index = i - 1, text = "doc " .. i, raw = "doc " .. i } end
  local r = { shape = "rerankd", query = "q", documents = d }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

-- A router over cfg whose score answers from script[model name]: a list of outcomes consumed
-- in order (the last repeats); an outcome is "ok", an error table, or a function(model, req).
local function harness(cfg, script, opts)
  local h = { t = 1000, calls = {}, sleeps = {}, seen = {} }
  local providers = {}
  for _, m in ipairs(cfg.models) do providers[m.name] = { name = m.provider, limits = m.limits } end
  h.r = router.new(cfg, {
    providers = providers,
    now = function() return h.t end,
    sleep = function(s) h.sleeps[#h.sleeps + 1] = s; h.t = h.t + s end,
    random = opts and opts.random or function() return 0.5 end,
    getenv = opts and opts.getenv or function() return nil end,
    score = function(m, req)
      h.calls[#h.calls + 1] = m.name
      h.seen[#h.seen + 1] = { model = m, req = req }
      local list = script[m.name] or { "ok" }
      local i = math.min(#list, (h.count or {})[m.name] or 1)
      h.count = h.count or {}
      h.count[m.name] = i + 1
      local o = list[i]
      if type(o) == "function" then return o(m, req, h) end
      if o == "ok" then
        local s = {}
        for j = 1, #req.documents do s[j] = 1 / j end
        return s, { prompt_tokens = 7 }, false
      end
      return nil, o
    end,
  })
  return h
end

local E500 = { status = 502, type = "upstream_error", message = "upstream returned HTTP 500", upstream_status = 500 }
local E400 = { status = 502, type = "upstream_error", message = "upstream returned HTTP 400", upstream_status = 400 }
local TIMEOUT = { status = 504, type = "timeout_error", message = "upstream timed out: timeout: 10000 ms" }
local function E429(ra) return { status = 502, type = "upstream_error", message = "HTTP 429", upstream_status = 429,
                                 retry_after = ra } end

describe("router.resolve", function()
  local cfg = config({ model("a", { aliases = { "grp" } }), model("b", { aliases = { "grp" }, weight = 3 }) })
  local h = harness(cfg, {})

  it("resolves a model, an alias group and reports unknown names", function()
    assert.are.equal("a", h.r:resolve("a").members[1].model.name)
    local g = h.r:resolve("grp")
    assert.are.equal(2, #g.members)
    assert.are.equal(3, g.members[2].weight)
    local _, err = h.r:resolve("nope")
    assert.are.equal(404, err.status)
    assert.are.equal("model", err.param)
    _, err = h.r:resolve("cohere/rerank-v3.5")
    assert.truthy(err.message:find("direct_models", 1, true))
  end)
end)

describe("router direct provider/model names", function()
  it("builds a model from the provider's defaults and its env_key", function()
    local cfg = config({ model("a") }, { direct_models = true })
    local h = harness(cfg, {}, { getenv = function(k) return k == "COHERE_API_KEY" and "sk-test" or nil end })
    local g = assert(h.r:resolve("cohere/rerank-v3.5"))
    local m = g.members[1].model
    assert.are.equal("cohere", m.provider)
    assert.are.equal("rerank-v3.5", m.model)
    assert.are.equal("sk-test", m.api_key)
    assert.are.equal("https://api.cohere.com", m.base_url)
    assert.are.equal("cohere", h.r.providers["cohere/rerank-v3.5"].name)
    local scores = assert(h.r:run("cohere/rerank-v3.5", req_of(2)))
    assert.are.equal(2, #scores)
  end)

  it("names a missing key's variable, never a key, and unknown providers", function()
    local cfg = config({ model("a") }, { direct_models = true })
    local h = harness(cfg, {})
    local _, err = h.r:run("voyage/rerank-2", req_of(1))
    assert.are.equal(400, err.status)
    assert.truthy(err.message:find("VOYAGE_API_KEY", 1, true), err.message)
    _, err = h.r:run("nosuch/model-x", req_of(1))
    assert.are.equal(404, err.status)
    assert.truthy(err.message:find('unknown provider "nosuch"', 1, true), err.message)
    _, err = h.r:run("../etc/passwd", req_of(1))
    assert.are.equal(404, err.status)
  end)

  it("needs no key for a local server and applies per-provider settings", function()
    local cfg = config({ model("a") }, { direct_models = { cohere = { base_url = "http://127.0.0.1:9", timeout = 2,
      price = { per_request = 0.5 } } } })
    local h = harness(cfg, {})
    local m = assert(h.r:resolve("cohere/x")).members[1].model
    assert.is_nil(m.api_key)
    assert.are.equal(2, m.timeout)
    local _, _, _, info = assert(h.r:run("cohere/x", req_of(1)))
    assert.are.equal(0.5, info.cost)
  end)
end)

describe("router retries and fallbacks", function()
  it("retries a retryable failure on the same deployment with jittered exponential backoff", function()
    local cfg = config({ model("a", { retries = 3 }) }, { routing = { backoff = 0.1, max_backoff = 5, jitter = 0.2 } })
    local h = harness(cfg, { a = { E500, TIMEOUT, E500, "ok" } })
    local scores, _, _, info = h.r:run("a", req_of(2))
    assert.are.same({ 1, 0.5 }, scores)
    assert.are.same({ "a", "a", "a", "a" }, h.calls)
    assert.are.equal(4, info.attempts)
    assert.are.equal(3, #h.sleeps)
    for i, s in ipairs(h.sleeps) do
      local base = 0.1 * 2 ^ (i - 1)
      assert.is_true(s >= base * 0.8 - 1e-9 and s <= base * 1.2 + 1e-9, tostring(s))
    end
  end)

  it("waits exactly what Retry-After (or retry-after-ms) asks", function()
    local cfg = config({ model("a", { retries = 2 }) })
    local h = harness(cfg, { a = { E429("2"), { status = 502, upstream_status = 503, retry_after_ms = "250" }, "ok" } })
    assert.truthy(h.r:run("a", req_of(1)))
    assert.are.same({ 2, 0.25 }, h.sleeps)
  end)

  it("falls back instead of waiting longer than max_retry_after or the deadline", function()
    local cfg = config({ model("a", { retries = 2, fallbacks = { "b" } }), model("b") },
      { routing = { max_retry_after = 5 } })
    local h = harness(cfg, { a = { E429("60") } })
    local _, _, _, info = assert(h.r:run("a", req_of(1)))
    assert.are.same({ "a", "b" }, h.calls)
    assert.are.same({}, h.sleeps)
    assert.are.equal("b", info.model)
    assert.is_true(info.fallback)
    h = harness(cfg, { a = { E429("3") } })
    assert.truthy(h.r:run("a", req_of(1, { timeout = 2 })))
    assert.are.same({ "a", "b" }, h.calls)
  end)

  it("does not retry a non-retryable upstream error but falls back", function()
    local cfg = config({ model("a", { retries = 5, fallbacks = { "b" } }), model("b") })
    local h = harness(cfg, { a = { E400 } })
    assert.truthy(h.r:run("a", req_of(1)))
    assert.are.same({ "a", "b" }, h.calls)
  end)

  it("returns a local request error at once", function()
    local cfg = config({ model("a", { retries = 5, fallbacks = { "b" } }), model("b") })
    local h = harness(cfg, { a = { { status = 422, type = "invalid_request_error", message = "bad" } } })
    local _, err = h.r:run("a", req_of(1))
    assert.are.equal(422, err.status)
    assert.are.same({ "a" }, h.calls)
  end)

  it("walks the model's fallbacks in order, then reports every failure", function()
    local cfg = config({ model("a", { fallbacks = { "b", "c" } }), model("b"), model("c") })
    local h = harness(cfg, { a = { E500 }, b = { TIMEOUT }, c = { E500 } })
    local _, err = h.r:run("a", req_of(1))
    assert.are.same({ "a", "b", "c" }, h.calls)
    assert.are.equal(502, err.status)
    assert.is_true(err.fallbacks_tried)
    assert.truthy(err.message:find("a: HTTP 500; b: timeout; c: HTTP 500", 1, true), err.message)
  end)

  it("lets the request's fallbacks replace the model's and validates them", function()
    local cfg = config({ model("a", { fallbacks = { "b" } }), model("b"), model("c") })
    local h = harness(cfg, { a = { E500 } })
    local _, _, _, info = assert(h.r:run("a", req_of(1, { fallbacks = { "c" } })))
    assert.are.equal("c", info.model)
    assert.are.same({ "a", "c" }, h.calls)
    local _, err = h.r:run("a", req_of(1, { fallbacks = { "c", "zz" } }))
    assert.are.equal(400, err.status)
    assert.are.equal("fallbacks[1]", err.param)
  end)

  it("turns a final 429 into a 429 with Retry-After", function()
    local cfg = config({ model("a") })
    local h = harness(cfg, { a = { E429("7") } })
    local _, err = h.r:run("a", req_of(1))
    assert.are.equal(429, err.status)
    assert.are.equal("rate_limit_error", err.type)
    assert.are.equal("7", err.retry_after)
  end)

  it("falls back when a provider raises", function()
    local cfg = config({ model("a", { fallbacks = { "b" } }), model("b") })
    local h = harness(cfg, { a = { function() error("boom") end } })
    local _, _, _, info = assert(h.r:run("a", req_of(1)))
    assert.are.equal("b", info.model)
  end)
end)

describe("router deadline", function()
  it("clips each attempt's timeout to the time left and answers 504 past the deadline", function()
    local cfg = config({ model("a", { timeout = 10, retries = 3, fallbacks = { "b" } }), model("b", { timeout = 10 }) })
    local slow = function(m, _, h) h.t = h.t + math.min(0.6, m.timeout); return nil, TIMEOUT end
    local h = harness(cfg, { a = { slow }, b = { slow } })
    local _, err = h.r:run("a", req_of(1, { timeout = 1 }))
    assert.are.equal(504, err.status)
    assert.are.equal("timeout_error", err.type)
    assert.truthy(err.message:find("deadline of 1s", 1, true), err.message)
    assert.are.equal(1, h.seen[1].model.timeout)
    assert.is_true(h.seen[2].model.timeout <= 0.4 + 1e-9, tostring(h.seen[2].model.timeout))
    assert.is_true(h.t - 1000 <= 1 + 1e-9, tostring(h.t - 1000))
    assert.are.same({ "a", "a" }, h.calls) -- no time left for b
  end)

  it("is capped by server.timeout", function()
    local cfg = config({ model("a", { timeout = 10 }) })
    cfg.server.timeout = 2
    local h = harness(cfg, {})
    assert.truthy(h.r:run("a", req_of(1, { timeout = 60 })))
    assert.are.equal(2, h.seen[1].model.timeout)
  end)
end)

describe("router circuit breaker", function()
  it("opens after N failures, skips the deployment, then probes once (half-open)", function()
    local cfg = config({ model("a", { fallbacks = { "b" }, breaker = { failures = 2, cooldown = 10 } }), model("b") })
    local h = harness(cfg, { a = { E500, E500, E500, "ok" } })
    h.r:run("a", req_of(1))
    h.r:run("a", req_of(1))
    assert.are.equal("open", h.r:breaker_state("a"))
    h.calls = {}
    local _, _, _, info = h.r:run("a", req_of(1))
    assert.are.same({ "b" }, h.calls) -- skipped while open
    assert.are.equal("b", info.model)
    h.t = h.t + 11
    assert.are.equal("half_open", h.r:breaker_state("a"))
    h.calls = {}
    h.r:run("a", req_of(1)) -- the probe fails: open again
    assert.are.same({ "a", "b" }, h.calls)
    assert.are.equal("open", h.r:breaker_state("a"))
    h.t = h.t + 11
    h.calls = {}
    _, _, _, info = h.r:run("a", req_of(1)) -- the probe succeeds: closed
    assert.are.equal("a", info.model)
    assert.are.equal("closed", h.r:breaker_state("a"))
    assert.are.equal(1, h.r.stats.a.served)
    assert.are.equal(3, h.r.stats.a.failures)
  end)

  it("answers 503 with Retry-After when every deployment is open", function()
    local cfg = config({ model("a", { breaker = { failures = 1, cooldown = 30 } }) })
    local h = harness(cfg, { a = { E500 } })
    h.r:run("a", req_of(1))
    local _, err = h.r:run("a", req_of(1))
    assert.are.equal(503, err.status)
    assert.are.equal("30", err.retry_after)
  end)

  it("lets a single probe through while half-open", function()
    local cfg = config({ model("a", { breaker = { failures = 1, cooldown = 5 } }) })
    local h = harness(cfg, { a = { E500 } })
    h.r:run("a", req_of(1))
    h.t = h.t + 6
    assert.are.equal("probe", h.r:breaker_allows(cfg.model_index.a, h.t))
    assert.is_false(h.r:breaker_allows(cfg.model_index.a, h.t))
  end)
end)

describe("router groups", function()
  it("tries the least-in-flight deployment first", function()
    local cfg = config({ model("a", { aliases = { "g" } }), model("b", { aliases = { "g" } }) })
    local h = harness(cfg, {})
    local list = h.r:order(cfg.aliases.g and { { model = cfg.model_index.a, weight = 1 },
                                                { model = cfg.model_index.b, weight = 1 } }, h.t)
    assert.are.equal(2, #list)
    -- a has two calls in flight, b none
    h.r.inflight.a = { [{}] = h.t + 100, [{}] = h.t + 100 }
    local g = h.r:resolve("g")
    assert.are.equal("b", h.r:order(g.members, h.t)[1].model.name)
    h.r.inflight.a = { [{}] = h.t - 1 } -- expired entries do not count
    h.r.inflight.b = { [{}] = h.t + 100 }
    assert.are.equal("a", h.r:order(g.members, h.t)[1].model.name)
  end)

  it("draws idle deployments by weight", function()
    local cfg = config({ model("a", { aliases = { "g" }, weight = 1 }), model("b", { aliases = { "g" }, weight = 3 }) })
    math.randomseed(42)
    local h = harness(cfg, {}, { random = math.random })
    local n = { a = 0, b = 0 }
    for _ = 1, 4000 do
      local _, _, _, info = h.r:run("g", req_of(1))
      n[info.model] = n[info.model] + 1
    end
    local share = n.b / 4000
    assert.is_true(share > 0.7 and share < 0.8, tostring(share))
  end)

  it("moves to the next deployment of the group, then to the fallbacks", function()
    local cfg = config({ model("a", { aliases = { "g" }, fallbacks = { "c" } }), model("b", { aliases = { "g" } }),
                         model("c") })
    local h = harness(cfg, { a = { E500 }, b = { E500 } })
    local _, _, _, info = assert(h.r:run("g", req_of(1)))
    assert.are.equal(3, #h.calls)
    assert.are.equal("c", h.calls[3])
    assert.are.equal("c", info.model)
  end)
end)

describe("router documents and cost", function()
  it("chunks long documents and scores each by its best chunk", function()
    local cfg = config({ model("a") }, { documents = { chars_per_token = 1, chunk_tokens = 10 } })
    local scorer = function(_, req)
      local s = {}
      for j, d in ipairs(req.documents) do s[j] = d.text:find("needle", 1, true) and 0.9 or 0.1 * j / 100 end
      return s, {}, false
    end
    local h = harness(cfg, { a = { scorer } })
    local long = ("hay "):rep(10) .. "needle hay"
    local req = { shape = "rerankd", query = "needle", max_chunks_per_doc = 5, top_n = 1,
                  documents = { { index = 0, text = "short hay", raw = "short hay" },
                                { index = 1, text = long, raw = long } } }
    local scores = assert(h.r:run("a", req))
    assert.are.equal(2, #scores)
    assert.are.equal(0.9, scores[2])
    local sent = h.seen[1].req
    assert.is_true(#sent.documents > 2)
    assert.is_nil(sent.top_n) -- every chunk needs a score
  end)

  it("prices locally: search units, tokens, documents and the request", function()
    local cfg = config({ model("a", { price = { per_search_unit = 0.002, per_document = 0.001, per_request = 0.01,
                                                per_1k_tokens = 1 } }) }, { documents = { chars_per_token = 1 } })
    local h = harness(cfg, { a = { function(_, req)
      local s = {}
      for j = 1, #req.documents do s[j] = 0 end
      return s, { search_units = 99, prompt_tokens = 123456 }, false -- what the upstream says is ignored
    end } })
    local req = req_of(150)
    local _, _, _, info = assert(h.r:run("a", req))
    -- 150 documents: 2 search units; tokens = 150 * (1 + 5 or 6 bytes)
    local tokens = 0
    for i = 1, 150 do tokens = tokens + 1 + #("doc " .. i) end
    assert.are.equal(2, info.search_units)
    assert.are.equal(tokens, info.tokens)
    local want = 2 * 0.002 + 150 * 0.001 + 0.01 + tokens / 1000
    assert.is_true(math.abs(info.cost - want) < 1e-9, tostring(info.cost))
  end)
end)

describe("router helpers", function()
  it("parses Retry-After seconds and HTTP dates", function()
    assert.are.equal(3, router.retry_after("3"))
    assert.are.equal(1.5, router.retry_after(" 1.5 "))
    assert.is_nil(router.retry_after("soon"))
    local now = os.time()
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", now + 120)
    local s = router.retry_after(date, now)
    assert.is_true(s >= 119 and s <= 121, tostring(s))
    assert.are.equal(0, router.retry_after(os.date("!%a, %d %b %Y %H:%M:%S GMT", now - 50), now))
  end)

  it("classifies failures", function()
    assert.are.same({ true, true, true }, { router.classify(E500) })
    assert.are.same({ true, true, true }, { router.classify(E429()) })
    assert.are.same({ false, true, false }, { router.classify(E400) })
    assert.are.same({ true, true, true }, { router.classify(TIMEOUT) })
    assert.are.same({ true, true, true }, { router.classify({ status = 502, message = "unreachable" }) })
    assert.are.same({ false, false, false }, { router.classify({ status = 400 }) })
  end)

  it("computes the backoff", function()
    local s = { backoff = 1, max_backoff = 4, jitter = 0 }
    assert.are.same({ 1, 2, 4, 4 }, { router.backoff(1, s), router.backoff(2, s), router.backoff(3, s), router.backoff(4, s) })
  end)
end)

describe("config: routing keys", function()
  local cfgmod = require "rerank.config.load"
  local function load(yaml) return cfgmod.load_string(yaml, "test.yaml") end

  it("groups models sharing an alias, with weights; fallbacks and default_model may name it", function()
    local cfg = assert(load([[
default_model: grp
routing: { retries: 2, backoff: 250ms, max_retry_after: 1m, breaker: { failures: 3, cooldown: 2s } }
documents: { text_field: body, chars_per_token: whitespace, chunk_tokens: 64 }
models:
  - { name: a, provider: bm25, aliases: [grp], weight: 3 }
  - { name: b, provider: bm25, aliases: grp, retries: 0, breaker: { failures: 0 } }
  - { name: c, provider: bm25, fallbacks: [grp] }
]]))
    assert.are.same({ { model = "a", weight = 3 }, { model = "b", weight = 1 } }, cfg.aliases.grp)
    assert.are.equal("grp", cfg.default_model)
    assert.are.equal(0.25, cfg.routing.backoff)
    assert.are.equal(60, cfg.routing.max_retry_after)
    assert.are.same({ failures = 3, cooldown = 2 }, cfg.routing.breaker)
    assert.are.equal(2, cfg.model_index.a.retries) -- routing.retries by default
    assert.are.equal(0, cfg.model_index.b.retries)
    assert.are.equal(0, cfg.model_index.b.breaker.failures)
    assert.are.same({ text_field = "body", chars_per_token = "whitespace", chunk_tokens = 64 }, cfg.documents)
    assert.is_false(cfg.direct_models)
  end)

  it("checks direct_models and provider/model fallbacks", function()
    local cfg = assert(load([[
direct_models: { cohere: { base_url: "http://127.0.0.1:9", timeout: 2s, price: { per_search_unit: 0.002 } } }
models:
  - { name: a, provider: bm25, fallbacks: [cohere/rerank-v3.5] }
]]))
    assert.are.equal(2, cfg.direct_models.cohere.timeout)
    assert.truthy(assert(load("direct_models: true\nmodels: [{ name: a, provider: bm25 }]\n")).direct_models)
  end)

  local bad = {
    { "models: [{ name: a, provider: bm25, aliases: [a] }]", 'models[0].aliases[0]: "a" is already the name of a model' },
    { "models: [{ name: a, provider: bm25, fallbacks: [cohere/x] }]", 'models[0].fallbacks[0]: unknown model "cohere/x"' },
    { "direct_models: true\nmodels: [{ name: a, provider: bm25, fallbacks: [cohre/x] }]",
      'models[0].fallbacks[0]: unknown provider "cohre" (did you mean "cohere"?)' },
    { "direct_models: { cohre: {} }\nmodels: [{ name: a, provider: bm25 }]", 'direct_models.cohre: unknown provider "cohre"' },
    { "direct_models: { cohere: { timout: 1s } }\nmodels: [{ name: a, provider: bm25 }]",
      'direct_models.cohere.timout: unknown key (did you mean "timeout"?)' },
    { "direct_models: { cohere: { price: { per_serch_unit: 1 } } }\nmodels: [{ name: a, provider: bm25 }]",
      'direct_models.cohere.price.per_serch_unit: unknown price key (did you mean "per_search_unit"?)' },
    { "direct_models: yes-please\nmodels: [{ name: a, provider: bm25 }]", "direct_models must be true, false or a mapping" },
    { "routing: { breaker: { failures: -1 } }\nmodels: [{ name: a, provider: bm25 }]", "routing.breaker.failures must be" },
    { "routing: { backof: 1s }\nmodels: [{ name: a, provider: bm25 }]", 'routing.backof: unknown key (did you mean "backoff"?)' },
    { "documents: { chars_per_token: lots }\nmodels: [{ name: a, provider: bm25 }]",
      'documents.chars_per_token must be a positive number or "whitespace"' },
    { "models: [{ name: a, provider: bm25, weight: -1 }]", "models[0].weight must be" },
    { "models: [{ name: a, provider: bm25, breaker: { cooldown: soon } }]", "models[0].breaker.cooldown: invalid duration" },
  }
  for _, c in ipairs(bad) do
    it("rejects: " .. c[2], function()
      local cfg, err = load(c[1] .. "\n")
      assert.is_nil(cfg)
      assert.truthy(err:find(c[2], 1, true), err)
    end)
  end
end)
