-- Issue 14's pure pieces: upstream text sanitising, secret masking, Retry-After validation,
-- the deep-health rate limit and the configuration self-test (the daemon-level behaviour is
-- in tests/e2e/hardening_spec.lua).
local core = require "rerank.core"
local upstream = require "rerank.upstream"
local health = require "rerank.health"
local selftest = require "rerank.selftest"
local rerank = require "rerank"
local support_files = require "support.files"

describe("upstream text", function()
  it("replaces bytes that are not UTF-8 with U+FFFD", function()
    assert.are.equal("a\239\191\189b", upstream.clean_utf8("a\255b"))
    assert.are.equal("ok \226\130\172", upstream.clean_utf8("ok \226\130\172"))
    assert.is_nil(core.utf8_check(upstream.clean_utf8("\192\175\237\160\128\226\130")))
  end)

  it("gives a 502 whose message is UTF-8 and drops an invalid Retry-After", function()
    local model = { provider = "cohere", name = "c", api_key = "k-0123" }
    local _, e = upstream.error_for(model, { status = 500, headers = { ["retry-after"] = "abc" },
                                             body = "\255\254<html>broke</html>" })
    assert.is_nil(core.utf8_check(e.message), e.message)
    assert.truthy(e.message:find("broke", 1, true))
    assert.is_nil(e.retry_after)
    _, e = upstream.error_for(model, { status = 429, headers = { ["retry-after"] = " 7 ", ["retry-after-ms"] = "-5" },
                                       body = "" })
    assert.are.equal("7", e.retry_after)
    assert.is_nil(e.retry_after_ms)
  end)

  it("accepts only delta-seconds or an HTTP-date as Retry-After", function()
    assert.are.equal("0", upstream.valid_retry_after("0"))
    assert.are.equal("120", upstream.valid_retry_after("120"))
    assert.are.equal("Wed, 21 Oct 2015 07:28:00 GMT", upstream.valid_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"))
    for _, bad in ipairs({ "abc", "-5", "1e9", "1.5", "", "12345678901", "5\r\nX-Evil: 1" }) do
      assert.is_nil(upstream.valid_retry_after(bad), bad)
    end
    assert.is_nil(upstream.valid_retry_after(-5))
    assert.are.equal("3", upstream.valid_retry_after(3))
  end)
end)

describe("secret masking", function()
  local model = {
    provider = "p", name = "m", api_key = "Sk-Live/Key+42",
    headers = { ["x-token"] = "Bearer hdr-Token-77" },
    base_url = "https://admin:Url-Pass-99@example.com/v1",
    options = { aws_secret_access_key = "aws-Secret-55", region = "us-east-1" },
  }

  it("masks every secret of the model in any case, URL-encoded and JSON-escaped", function()
    local msg = table.concat({
      "key SK-LIVE/KEY+42", "sk-live%2Fkey%2B42", "Sk-Live\\/Key+42", "HDR-TOKEN-77", "Bearer hdr-Token-77",
      "url-pass-99", "admin:Url-Pass-99", "aws-secret-55", "region us-east-1",
    }, " | ")
    local out = upstream.redact(model, msg)
    for _, s in ipairs({ "sk-live", "key%2b42", "hdr-token", "url-pass", "aws-secret" }) do
      assert.is_nil(out:lower():find(s, 1, true), out)
    end
    assert.truthy(out:find("region us-east-1", 1, true), out) -- not a secret
    assert.truthy(out:find("[redacted]", 1, true))
  end)

  it("ignores values too short to mask safely", function()
    assert.are.equal("a b c", upstream.redact({ api_key = "b" }, "a b c"))
  end)
end)

describe("GET /health?deep=1 rate limit", function()
  it("lets one deep check start per interval", function()
    local t = 1e6
    assert.is_nil(health.admit(t))
    local wait = health.admit(t + 1)
    assert.is_true(wait >= 1 and wait <= health.DEEP_INTERVAL)
    assert.is_nil(health.admit(t + health.DEEP_INTERVAL + 0.1))
  end)
end)

describe("configuration self-test", function()
  local dir = os.getenv("PWD") .. "/tests/tmp/hardening_spec"
  os.execute("mkdir -p " .. dir)

  local function instance(provider_src)
    local f = support_files.write(dir .. "/p.lua", provider_src)
    return assert(rerank.new({ models = { { name = "bm25", provider = "bm25" },
      { name = "mine", provider_file = f, base_url = "http://127.0.0.1:1" } } }))
  end

  it("passes the built-in providers", function()
    assert.is_true(selftest.run(assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } } }))))
  end)

  it("refuses a provider whose build() raises, naming it and the script's line", function()
    local ok, err = selftest.run(instance([[
return { name = "mine", build = function() error("no way") end, parse = function() return nil, "x" end }
]]))
    assert.is_nil(ok)
    assert.truthy(err:find('model "mine"', 1, true), err)
    assert.truthy(err:find("build() raised: ", 1, true) and err:find("p.lua:1: no way", 1, true), err)
  end)

  it("refuses a request without a URL and a parse() that raises; accepts a parse() that refuses", function()
    local ok, err = selftest.run(instance([[
return { name = "mine", build = function() return { body = {} } end, parse = function() return {} end }
]]))
    assert.is_nil(ok)
    assert.truthy(err:find("without an absolute url", 1, true), err)
    ok, err = selftest.run(instance([[
return { name = "mine", build = function(m) return { url = m.base_url, body = {} } end,
         parse = function(_, _, _, _, body) return body.nope.nope end }
]]))
    assert.is_nil(ok)
    assert.truthy(err:find("parse() raised on a canned answer", 1, true), err)
    assert.is_true(selftest.run(instance([[
return { name = "mine", build = function(m) return { url = m.base_url, body = {} } end,
         parse = function() return nil, "not my shape" end }
]])))
  end)
end)
