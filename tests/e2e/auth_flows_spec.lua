-- Providers whose calls need more than a static key, end to end against the mock
-- (tests/mock/mock_upstream.py): Vertex AI ranking (OAuth2 access token, records matched by
-- id, 200 records per call) and IBM watsonx.ai (API key -> IAM bearer token, cached until
-- 80% of its lifetime, forgotten on a 401).
local d = require "support.daemon"
local cjson = require "cjson"

local QUERY = "red apple pie"

describe("vertex_ai and watsonx auth flows through the daemon", function()
  local mock, srv

  setup(function()
    mock = d.start_mock()
    local m = mock.url
    local cfg = table.concat({
      'server: { listen: "127.0.0.1:8080", timeout: 30s }',
      "default_model: bm25",
      "models:",
      "  - { name: bm25, provider: bm25 }",
      "  - { name: vertex, provider: vertex_ai, project: my-proj, api_key: test-key, base_url: '" .. m .. "/vertex' }",
      "  - { name: vertex-badtoken, provider: vertex_ai, project: my-proj, api_key: ya29.stale-token,",
      "      base_url: '" .. m .. "/vertex' }",
      "  - { name: wx, provider: watsonx, project_id: p1, api_key: test-key, base_url: '" .. m .. "/watsonx',",
      "      iam_url: '" .. m .. "/iam/identity/token' }",
      "  - { name: wx-short, provider: watsonx, project_id: p1, api_key: test-key, base_url: '" .. m .. "/watsonx',",
      "      iam_url: '" .. m .. "/iam/expires/1/identity/token' }",
      "  - { name: wx-revoked, provider: watsonx, space_id: s1, api_key: test-key, base_url: '" .. m .. "/watsonx',",
      "      iam_url: '" .. m .. "/iam/expires/600/identity/token' }",
      "  - { name: wx-badkey, provider: watsonx, project_id: p1, api_key: not-the-key, base_url: '" .. m .. "/watsonx',",
      "      iam_url: '" .. m .. "/iam/identity/token' }",
      "",
    }, "\n")
    srv = assert(d.start(cfg, { workers = 1 }))
  end)

  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  before_each(function() d.mock_reset(mock) end)

  local function rerank(model, docs, extra)
    local b = { model = model, query = QUERY, documents = docs or { "blue sky", "red apple pie", "apple" } }
    for k, v in pairs(extra or {}) do b[k] = v end
    return d.request(srv, "/v1/rerank", { body = b })
  end

  local function seen(prefix)
    local out = {}
    for _, r in ipairs(d.mock_requests(mock)) do
      if r.path:sub(1, #prefix) == prefix then out[#out + 1] = r end
    end
    return out
  end

  it("vertex: 450 documents go out as 200 + 200 + 50 records, ids per call, merged by id", function()
    local docs = {}
    for i = 1, 450 do docs[i] = "filler text " .. i end
    docs[251] = "red apple pie" -- index 250
    docs[421] = "apple pie"     -- index 420
    docs[11] = "red"            -- index 10
    local status, raw, _, j = rerank("vertex", docs, { top_n = 3 })
    assert.are.equal(200, status, raw)
    assert.are.same({ 250, 420, 10 }, { j.results[1].index, j.results[2].index, j.results[3].index })
    local calls = seen("/vertex/")
    assert.are.equal(3, #calls)
    local sizes = {}
    for i, c in ipairs(calls) do
      sizes[i] = #c.json.records
      assert.are.equal("0", c.json.records[1].id)
      assert.is_nil(c.json.topN) -- every record of a batch needs a score
      assert.are.equal("Bearer test-key", c.headers.authorization)
    end
    table.sort(sizes)
    assert.are.same({ 50, 200, 200 }, sizes)
  end)

  it("vertex: a rejected access token is a 502 upstream_auth_error with Google's message, never the token", function()
    local status, raw, _, j = rerank("vertex-badtoken")
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_auth_error", j.error.type, raw)
    assert.truthy(j.error.message:find("HTTP 401: Request had invalid authentication credentials", 1, true), raw)
    assert.falsy(raw:find("stale-token", 1, true), raw)
  end)

  it("watsonx: the API key is exchanged once at IAM, and the token reused until it ages", function()
    for _ = 1, 3 do
      local status, raw, _, j = rerank("wx")
      assert.are.equal(200, status, raw)
      assert.are.equal(1, j.results[1].index, raw)
      assert.are.equal(5, j.results[1].relevance_score, raw) -- the mock's logit: 10 * share - 5
    end
    local iam, wx = seen("/iam/"), seen("/watsonx/")
    assert.are.equal(1, #iam, cjson.encode(iam))
    assert.are.equal(3, #wx)
    assert.are.equal("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=test-key", iam[1].body)
    assert.are.equal("application/x-www-form-urlencoded", iam[1].headers["content-type"])
    local tok = wx[1].headers.authorization
    assert.truthy(tok:match("^Bearer iam%-token%-%d+$"), tok)
    for _, c in ipairs(wx) do assert.are.equal(tok, c.headers.authorization) end
    assert.truthy(wx[1].path:find("?version=2026-08-11", 1, true), wx[1].path)
  end)

  it("watsonx: a token past 80% of its lifetime is exchanged again", function()
    assert.are.equal(200, (rerank("wx-short")))
    assert.are.equal(200, (rerank("wx-short")))
    assert.are.equal(1, #seen("/iam/"))
    d.sleep(1.0) -- the token lives 1 s: past 0.8 s rerankd asks for a new one
    assert.are.equal(200, (rerank("wx-short")))
    local iam, wx = seen("/iam/"), seen("/watsonx/")
    assert.are.equal(2, #iam)
    assert.are_not.equal(wx[1].headers.authorization, wx[3].headers.authorization)
  end)

  it("watsonx: a 401 from the API forgets the token; the next request exchanges again", function()
    assert.are.equal(200, (rerank("wx-revoked")))
    d.sh("curl -s -X POST " .. mock.url .. "/_mock/revoke")
    local status, raw, _, j = rerank("wx-revoked")
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_auth_error", j.error.type, raw)
    assert.truthy(j.error.message:find("Failed to authenticate", 1, true), raw)
    assert.falsy(raw:find("iam-token", 1, true), raw) -- the bearer token is never echoed
    assert.are.equal(200, (rerank("wx-revoked")))
    assert.are.equal(2, #seen("/iam/"))
  end)

  it("watsonx: a key IAM rejects is a 502 upstream_auth_error naming the token endpoint, never the key", function()
    local status, raw, _, j = rerank("wx-badkey")
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_auth_error", j.error.type, raw)
    assert.truthy(j.error.message:find("token endpoint returned HTTP 400: Provided API key could not be found.", 1, true), raw)
    assert.falsy(raw:find("not-the-key", 1, true), raw)
    assert.are.equal(0, #seen("/watsonx/"))
  end)
end)
