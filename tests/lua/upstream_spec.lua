-- Upstream calls for HTTP providers (rerank.engine.upstream): request encoding, the error mapping
-- (transport failures, HTTP statuses, Retry-After), text made safe (UTF-8, secrets masked),
-- parse results, and batches split by max_documents, over scripted transports.
local core = require "rerank.core"
local cjson = require "cjson"
local upstream = require "rerank.engine.upstream"

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

describe("upstream splitting", function()

  -- a provider over a fake transport: each batch scores its documents by their number
  local function run(comparable, scale)
    local P = { name = "fake", limits = { max_documents = 3 }, comparable_scores = comparable,
      build = function(_, req)
        local texts = {}
        for i, d in ipairs(req.documents) do texts[i] = d.text end
        return { method = "POST", url = "http://x/rerank", body = { texts = texts } }
      end,
      parse = function(_, _, _, _, body) return { scores = cjson.decode(body) } end,
    }
    local batches = {}
    local transport = { request_all = function(list)
      local out = {}
      for i, o in ipairs(list) do
        local texts = cjson.decode(o.body).texts
        batches[i] = #texts
        local s = {}
        for j, t in ipairs(texts) do s[j] = tonumber(t) * (scale[i] or 1) end
        out[i] = { status = 200, headers = {}, body = cjson.encode(s) }
      end
      return out
    end }
    local list = {}
    for i = 1, 7 do list[i] = { index = i - 1, text = tostring(i), raw = tostring(i) } end
    local out = assert(upstream.call(transport, { name = "m", provider = "fake" }, P,
      { query = "q", documents = list, top_n = 2 }))
    return out.scores, batches
  end

  it("calls batches of max_documents and merges the scores by position", function()
    local scores, batches = run(nil, {})
    assert.are.same({ 3, 3, 1 }, batches)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7 }, scores)
  end)

  it("merges by rank within each batch when scores are not comparable", function()
    -- batch 2 scores 100x higher: by position it would win outright
    local scores = run(false, { 1, 100, 1 })
    local want = { 1 - 2 / 3, 1 - 1 / 3, 1, 1 - 2 / 3, 1 - 1 / 3, 1, 1 }
    for i = 1, 7 do assert.is_true(math.abs(want[i] - scores[i]) < 1e-12, i .. ": " .. scores[i]) end
    assert.are.same({ [1] = 1, [3] = 1 - 1 / 3 }, upstream.rank_scores({ 5, nil, 2 }, 3))
  end)
end)

describe("upstream.prepare", function()
  it("encodes a table body as JSON, merges headers (the model's win), defaults method and timeout", function()
    local o = upstream.prepare({ timeout = 7, headers = { ["X-A"] = "model" } },
      { url = "http://h/r", headers = { ["X-A"] = "spec", ["X-B"] = "b" }, body = { q = "x" } })
    assert.are.equal("POST", o.method)
    assert.are.same({ q = "x" }, cjson.decode(o.body))
    assert.are.same({ ["X-A"] = "model", ["X-B"] = "b", ["Content-Type"] = "application/json" }, o.headers)
    assert.are.equal(7, o.timeout)
    o = upstream.prepare({}, { url = "http://h/r" })
    assert.are.equal("GET", o.method)
    assert.are.equal(30, o.timeout)
    o = upstream.prepare({}, { url = "http://h/r", body = "raw", headers = { ["Content-Type"] = "text/plain" },
      method = "PUT", timeout = 2 })
    assert.are.same({ "PUT", "raw", "text/plain", 2 }, { o.method, o.body, o.headers["Content-Type"], o.timeout })
  end)

  it("SigV4: signs the doubly-encoded path and sends the real one as the request target", function()
    local o = upstream.prepare({}, { url = "https://h/model/a%3Ab/invoke?x=1", aws_sigv4 = "aws:amz:r:bedrock",
      body = {} })
    assert.are.equal("https://h/model/a%253Ab/invoke?x=1", o.url)
    assert.are.equal("/model/a%3Ab/invoke?x=1", o.request_target)
    assert.are.equal("aws:amz:r:bedrock", o.aws_sigv4)
    o = upstream.prepare({}, { url = "https://h/plain", aws_sigv4 = "aws:amz:r:s" })
    assert.are.equal("https://h/plain", o.url)
    assert.is_nil(o.request_target)
  end)
end)

describe("upstream.error_for", function()
  local model = { provider = "cohere", name = "c", api_key = "k-secret-1" }

  it("maps transport failures: timeouts to 504, the rest to 502, secrets masked", function()
    local _, e = upstream.error_for(model, nil, "timeout: after 5s")
    assert.are.equal(504, e.status)
    assert.are.equal('upstream "cohere" (model "c") timed out: timeout: after 5s', e.message)
    _, e = upstream.error_for(model, nil, "connect to k-secret-1@h refused")
    assert.are.equal(502, e.status)
    assert.are.equal('upstream "cohere" (model "c") unreachable: connect to [redacted]@h refused', e.message)
  end)

  it("names the upstream's status and message; 401/403 are auth errors", function()
    local _, e = upstream.error_for(model, { status = 401, headers = {}, body = '{"message":"bad key k-secret-1"}' })
    assert.are.same({ 502, "upstream_auth_error", 401 }, { e.status, e.type, e.upstream_status })
    assert.are.equal('upstream "cohere" (model "c") returned HTTP 401: bad key [redacted]', e.message)
    _, e = upstream.error_for(model, { status = 500, body = '{"error":{"message":"overloaded"}}' })
    assert.are.same({ 502, "upstream_error" }, { e.status, e.type })
    assert.truthy(e.message:find("HTTP 500: overloaded", 1, true), e.message)
    _, e = upstream.error_for(model, { status = 503, body = "" })
    assert.are.equal('upstream "cohere" (model "c") returned HTTP 503', e.message)
    _, e = upstream.error_for(model, { status = 400, body = '{"errors":[{"code":"x","message":"watsonx says no"}]}' })
    assert.truthy(e.message:find("watsonx says no", 1, true), e.message)
    _, e = upstream.error_for(model, { status = 422, body = '{"detail":[{"loc":["body"],"msg":"bad"}]}' })
    -- the detail list is re-encoded: its members in any order
    assert.truthy(e.message:find('HTTP 422: [{', 1, true) and e.message:find('"msg":"bad"', 1, true)
      and e.message:find('"loc":["body"]', 1, true), e.message)
  end)

  it("cuts a long upstream message at 300 bytes", function()
    local _, e = upstream.error_for(model, { status = 500, body = ("x"):rep(1000) })
    assert.is_true(#e.message < 400, #e.message)
    assert.truthy(e.message:find(("x"):rep(300) .. "\226\128\166", 1, true))
  end)
end)

describe("upstream.call_one and its report", function()
  local model = { provider = "fake", name = "m" }
  local function transport(res, err) return { request = function() return res, err end } end
  local req = { query = "q", documents = {} }

  it("returns parse's result, and notes the status in the caller's report (the access log's)", function()
    local P = { parse = function(_, _, status, _, body) return { scores = { status, #body } } end }
    local report = {}
    local out = assert(upstream.call_one(transport({ status = 200, headers = {}, body = "abc" }), model, P, req,
      { url = "http://h" }, report))
    assert.are.same({ 200, 3 }, out.scores)
    assert.are.equal(200, report.upstream_status)
    assert(upstream.call_one(transport({ status = 200, headers = {}, body = "" }), model, P, req, { url = "http://h" }))
  end)

  it("an error status goes to error_for: parse never sees HTTP >= 400", function()
    local seen = false
    local P = { parse = function() seen = true; return { scores = {} } end }
    local report = {}
    local out, err = upstream.call_one(transport({ status = 429, headers = { ["retry-after"] = "3" }, body = "" }),
      model, P, req, { url = "http://h" }, report)
    assert.is_nil(out)
    assert.are.same({ 502, 429, "3" }, { err.status, err.upstream_status, err.retry_after })
    assert.are.equal(429, report.upstream_status)
    assert.is_false(seen)
  end)

  it("a parse that refuses is a 502 naming the status; one that raises is the script's 500", function()
    local refuse = { parse = function() return nil, "no scores" end }
    local _, err = upstream.call_one(transport({ status = 200, headers = {}, body = "{}" }), model, refuse, req,
      { url = "http://h" })
    assert.are.equal(502, err.status)
    assert.are.equal('upstream "fake" (model "m") answered HTTP 200: no scores', err.message)
    local raise = { parse = function() error("boom") end }
    _, err = upstream.call_one(transport({ status = 200, headers = {}, body = "{}" }), model, raise, req,
      { url = "http://h" })
    assert.are.equal(500, err.status)
  end)

  it("a transport failure is mapped like error_for's", function()
    local _, err = upstream.call_one(transport(nil, "connect: refused"), model, { parse = error }, req,
      { url = "http://h" })
    assert.are.equal(502, err.status)
    assert.truthy(err.message:find("unreachable: connect: refused", 1, true), err.message)
  end)
end)
