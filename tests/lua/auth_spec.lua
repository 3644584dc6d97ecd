-- API keys and open paths (rerank.daemon.auth), pure logic.
local auth = require "rerank.daemon.auth"
local metrics = require "rerank.daemon.metrics"

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
