-- Configuration sections for operations (rerank.config.ops through config.from_table): API
-- keys, limits, cache, redis, per-model health.
local config = require "rerank.config.load"

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
