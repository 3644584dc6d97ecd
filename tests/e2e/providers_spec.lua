-- End to end: rerankd against the mock upstreams (tests/mock/mock_upstream.py), one model per
-- provider. The cases are data: tests/fixtures/providers/e2e.json.
local d = require "support.daemon"
local cjson = require "cjson"
local mock_requests, mock_reset = d.mock_requests, d.mock_reset

local CASES = cjson.decode(d.readfile(d.root .. "/tests/fixtures/providers/e2e.json"))
local REQUEST = CASES.request

local function yaml_models(mock)
  local lines = {}
  local function add(t) lines[#lines + 1] = "  - " .. cjson.encode(t) end
  add({ name = "bm25", provider = "bm25" })
  for _, m in ipairs(CASES.models) do
    local c = {}
    for k, v in pairs(m.config) do -- "{mock}" in a value: the mock's URL (token endpoints)
      c[k] = type(v) == "string" and v:gsub("{mock}", mock.url) or v
    end
    c.base_url = mock.url .. "/" .. m.mock
    if c.provider_file then c.provider_file = d.root .. "/" .. c.provider_file end
    if not m.auth_pattern then c.api_key = "test-key" end
    add(c)
  end
  local cohere = function(name, prefix, extra)
    local c = { name = name, provider = "cohere", api_key = "test-key", base_url = mock.url .. prefix .. "/cohere" }
    for k, v in pairs(extra or {}) do c[k] = v end
    add(c)
  end
  cohere("cohere-badkey", "", { api_key = "wrong-secret-key" })
  cohere("cohere-500", "/fault/500", { retries = 0 })
  cohere("cohere-503-header", "", { retries = 0, headers = { ["x-mock-fault"] = "503" } })
  cohere("cohere-429", "/fault/429:1", { retries = 0 })
  cohere("cohere-malformed", "/fault/malformed")
  cohere("cohere-truncated", "/fault/truncated")
  cohere("cohere-reset", "/fault/reset")
  cohere("cohere-flaky", "/fault/flaky:1", { retries = 2 })
  cohere("cohere-timeout", "/fault/slow:2000", { timeout = "500ms", retries = 0 })
  cohere("cohere-slow", "/fault/slow:2000", { timeout = "10s" })
  add({ name = "bedrock-badsecret", provider = "bedrock", base_url = mock.url .. "/bedrock", region = "us-east-1",
        aws_access_key_id = "test-key", aws_secret_access_key = "not-the-secret" })
  return table.concat(lines, "\n")
end

local function rerank(srv, model, body)
  local b = {}
  for k, v in pairs(body or REQUEST) do b[k] = v end
  b.model = model
  return d.request(srv, "/v1/rerank", { body = b })
end

describe("providers end to end through the mock upstreams", function()
  local mock, srv

  setup(function()
    mock = d.start_mock()
    local cfg = ("server: { auth: none, listen: \"127.0.0.1:8080\", timeout: 30s }\ndefault_model: bm25\nmodels:\n%s\n")
      :format(yaml_models(mock))
    srv = assert(d.start(cfg, { workers = 1 }))
  end)

  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  before_each(function() mock_reset(mock) end)

  for _, m in ipairs(CASES.models) do
    local title = ("%s (%s): order, top_n, documents, usage and the exact upstream request")
      :format(m.config.name, m.config.provider or m.config.provider_file)
    it(title, function()
      local status, raw, _, j = rerank(srv, m.config.name)
      assert.are.equal(200, status, raw)
      assert.are.equal(#CASES.order, #j.results, raw)
      for i, idx in ipairs(CASES.order) do
        assert.are.equal(idx, j.results[i].index, raw)
        assert.are.equal(REQUEST.documents[idx + 1], j.results[i].document, raw)
        if m.scores then assert.is_true(math.abs(m.scores[i] - j.results[i].relevance_score) < 1e-9, raw) end
      end
      assert.is_nil(j.degraded, raw)
      if m.tokens ~= cjson.null then assert.are.equal(m.tokens, j.usage.total_tokens, raw) end
      assert.is_true(j.usage.total_tokens > 0, raw)

      local seen = mock_requests(mock)
      local last = seen[#seen]
      assert.truthy(last, "the mock received no request")
      assert.are.equal(m.path, last.path)
      assert.are.same(m.body, last.json)
      for k, v in pairs(m.auth) do assert.are.equal(v, last.headers[k], k) end
      for k, pat in pairs(m.auth_pattern or {}) do
        assert.truthy((last.headers[k] or ""):match(pat), tostring(last.headers[k]))
      end
      assert.are.equal("application/json", last.headers["content-type"])
    end)
  end

  it("cohere_compatible probes /v1/rerank, /rerank, /v2/rerank and then remembers the path", function()
    local function paths()
      local out = {}
      for _, r in ipairs(mock_requests(mock)) do out[#out + 1] = r.path end
      return out
    end
    -- the model may already have probed in the case above (the daemon keeps the winner)
    local status, raw = rerank(srv, "compat")
    assert.are.equal(200, status, raw)
    local p = paths()
    assert.are.equal("/compat/v2/rerank", p[#p])
    for _, path in ipairs(p) do
      assert.truthy(path == "/compat/v1/rerank" or path == "/compat/rerank" or path == "/compat/v2/rerank", path)
    end
    mock_reset(mock)
    status = rerank(srv, "compat")
    assert.are.equal(200, status)
    assert.are.same({ "/compat/v2/rerank" }, paths())
  end)

  it("bedrock: the SigV4 signature covers the body", function()
    assert.are.equal(200, (rerank(srv, "bedrock")))
    local body = {}
    for k, v in pairs(REQUEST) do body[k] = v end
    body.query = "apple"
    assert.are.equal(200, (rerank(srv, "bedrock", body)))
    local seen = mock_requests(mock)
    assert.are.equal(2, #seen)
    local a1, a2 = seen[1].headers.authorization, seen[2].headers.authorization
    local s1, s2 = a1:match("Signature=(%x+)$"), a2:match("Signature=(%x+)$")
    assert.truthy(s1 and s2, a1)
    assert.are_not.equal(s1, s2)
    assert.truthy(seen[1].headers["x-amz-date"])
  end)

  it("bedrock: a wrong secret is a 502 naming the upstream's 403, without the secret", function()
    local status, raw, _, j = rerank(srv, "bedrock-badsecret")
    assert.are.equal(502, status, raw)
    assert.truthy(j.error.message:find("403", 1, true), raw)
    assert.falsy(raw:find("not-the-secret", 1, true), raw)
  end)

  it("maps a rejected key to 502 upstream_auth_error naming the upstream and status, never the key", function()
    local status, raw, _, j = rerank(srv, "cohere-badkey")
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_auth_error", j.error.type, raw)
    assert.truthy(j.error.message:find("cohere", 1, true), raw)
    assert.truthy(j.error.message:find("401", 1, true), raw)
    assert.falsy(raw:find("wrong-secret-key", 1, true), raw)
  end)

  for _, c in ipairs({ { "cohere-500", "500" }, { "cohere-503-header", "503" } }) do
    it(("maps an upstream %s to 502 naming it"):format(c[2]), function()
      local status, raw, _, j = rerank(srv, c[1])
      assert.are.equal(502, status, raw)
      assert.truthy(j.error.message:find(c[2], 1, true), raw)
      assert.falsy(raw:find("test-key", 1, true), raw)
    end)
  end

  it("answers 429 or 502 after an upstream 429 with Retry-After", function()
    local status, raw, _, j = rerank(srv, "cohere-429")
    assert.truthy(status == 429 or status == 502, raw)
    assert.truthy(j.error.message:find("429", 1, true), raw)
  end)

  for _, name in ipairs({ "cohere-malformed", "cohere-truncated", "cohere-reset" }) do
    it(name .. " is a 502 and the worker keeps serving", function()
      local status, raw, _, j = rerank(srv, name)
      assert.are.equal(502, status, raw)
      assert.truthy(j.error.message:find("cohere", 1, true), raw)
      assert.are.equal(200, (rerank(srv, "bm25")))
    end)
  end

  it("an upstream body over 64 KB goes out from its pieces: the client's bytes, whole again after a rewind", function()
    local docs = {} -- ~110 KB; every tenth with escapes (spliced as the client sent them)
    for i = 1, 120 do
      docs[i] = ("doc %d apple "):format(i) .. string.rep("pie ", 220) .. (i % 10 == 0 and ' "quoted" \\ back\n' or "")
    end
    local body = { query = "apple", documents = docs, top_n = 3 }
    mock_reset(mock)
    local status, raw = rerank(srv, "cohere", body)
    assert.are.equal(200, status, raw)
    local seen = mock_requests(mock)
    assert.are.equal("/cohere/v2/rerank", seen[#seen].path)
    assert.are.same(docs, seen[#seen].json.documents)
    assert.are.equal(#seen[#seen].body, tonumber(seen[#seen].headers["content-length"]))
    -- the upstream resets the connection it kept alive: libcurl sends the request again on a
    -- fresh one, rewinding the body (a body it could not rewind would fail before resending)
    mock_reset(mock)
    status, raw = rerank(srv, "cohere-reset", body)
    assert.are.equal(502, status, raw)
    seen = mock_requests(mock)
    assert.are.equal(2, #seen)
    for _, r in ipairs(seen) do assert.are.same(docs, r.json.documents) end
  end)

  it("bedrock invoke: a spliced body over 64 KB is signed whole (SigV4 over the joined pieces)", function()
    local docs = {}
    for i = 1, 120 do docs[i] = ("doc %d apple "):format(i) .. string.rep("pie ", 220) end
    for _, model in ipairs({ "bedrock-invoke", "bedrock-invoke-amazon" }) do
      mock_reset(mock)
      local status, raw = rerank(srv, model, { query = "apple", documents = docs, top_n = 3 })
      assert.are.equal(200, status, raw) -- the mock verifies the signature against the body it got
      local seen = mock_requests(mock)
      assert.are.same(docs, seen[#seen].json.documents)
    end
  end)

  it("retries a 5xx per the model's retries", function()
    local status, raw = rerank(srv, "cohere-flaky")
    assert.are.equal(200, status, raw)
    assert.are.equal(2, #mock_requests(mock))
  end)

  it("a 2 s upstream with a 500ms model timeout gives 504", function()
    local t0 = os.time()
    local status, raw, _, j = rerank(srv, "cohere-timeout")
    assert.are.equal(504, status, raw)
    assert.truthy(j.error.message:find("cohere", 1, true), raw)
    assert.is_true(os.time() - t0 <= 2, "took too long")
  end)

  it("one worker: 50 bm25 requests finish in milliseconds while a 2 s upstream call is in flight", function()
    local slow_body = d.writefile(d.tmpname(".json"), cjson.encode({ model = "cohere-slow", query = REQUEST.query,
                                                                    documents = REQUEST.documents }))
    local fast_body = d.writefile(d.tmpname(".json"), cjson.encode({ model = "bm25", query = REQUEST.query,
                                                                    documents = REQUEST.documents, top_n = 2 }))
    local slow_out, fast_out = d.tmpname(".slow"), d.tmpname(".fast")
    local slow_pid = tonumber(d.sh(("curl -s -o /dev/null -H 'Content-Type: application/json' -w '%%{http_code} %%{time_total}' "
      .. "--data-binary @%s %s/v1/rerank >%s 2>&1 & echo $!"):format(slow_body, srv.url, slow_out)))
    d.sleep(0.3) -- the slow request is now parked on the upstream
    -- the 50 bm25 requests go out together from one curl process (--parallel), each timed by curl
    local cfg = { "silent", "parallel", "parallel-max = 50", "parallel-immediate" }
    for i = 1, 50 do
      if i > 1 then cfg[#cfg + 1] = "next" end
      cfg[#cfg + 1] = ('url = "%s/v1/rerank"\nheader = "Content-Type: application/json"\ndata-binary = "@%s"\n'
        .. 'output = "/dev/null"\nwrite-out = "%%{http_code} %%{time_total}\\n"'):format(srv.url, fast_body)
    end
    d.sh(("curl -s -K %s >%s 2>/dev/null"):format(d.writefile(d.tmpname(".curlrc"), table.concat(cfg, "\n") .. "\n"), fast_out))
    local still_running = d.sh("kill -0 " .. slow_pid .. " 2>/dev/null && echo yes") ~= ""
    local fast = d.readfile(fast_out) or ""
    local n = 0
    for code, t in fast:gmatch("(%d+) ([%d%.]+)") do
      n = n + 1
      assert.are.equal("200", code)
      assert.is_true(tonumber(t) < 0.5, ("bm25 request took %ss while the slow upstream was in flight"):format(t))
    end
    assert.are.equal(50, n, fast)
    assert.is_true(still_running, "the slow request finished before the bm25 ones")
    for _ = 1, 100 do
      if (d.readfile(slow_out) or "") ~= "" then break end
      d.sleep(0.1)
    end
    local code, t = (d.readfile(slow_out) or ""):match("(%d+) ([%d%.]+)")
    assert.are.equal("200", code)
    assert.is_true(tonumber(t) >= 1.9, "the slow upstream answered early: " .. tostring(t))
  end)
end)
