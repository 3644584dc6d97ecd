-- The 2026 providers and image documents end to end, against the mock upstreams
-- (tests/mock/mock_upstream.py):
--   * image documents ({"image": URL | data: URL, "text"?}) sent in each multimodal provider's
--     shape (asserted on what the mock received), 422 for text-only models, 413 above
--     documents.max_image_bytes, the score cache keyed on the image;
--   * instruction fields, error bodies and 429s of SGLang, ZeroEntropy, Contextual, DashScope;
--   * Vertex AI ranking (OAuth2 access token, records matched by id, 200 records per call) and
--     IBM watsonx.ai (API key -> IAM bearer token, cached until 80% of its lifetime, forgotten
--     on a 401).
local d = require "support.daemon"
local cjson = require "cjson"

local URL = "https://img.test/red-apple-pie.png"
local DATA = "data:image/png;base64,iVBORw0KGgo="
local DOCS = { "blue sky", { image = URL }, { text = "red car", image = DATA } }
local TEXT_DOCS = { "blue sky", "red apple pie", "apple" }
local QUERY = "red apple pie"

describe("2026 providers and image documents through the daemon", function()
  local mock, srv

  setup(function()
    mock = d.start_mock()
    local function model(s) return "  - " .. s:gsub("{mock}", mock.url) end
    local cfg = table.concat({
      'server: { auth: none, listen: "127.0.0.1:8080", timeout: 30s }',
      "documents: { max_image_bytes: 1k }",
      "cache: { size: 1m, ttl: 10m, models: [jina-m0] }",
      "default_model: bm25",
      "models:",
      model "{ name: bm25, provider: bm25 }",
      model "{ name: cohere, provider: cohere, api_key: test-key, base_url: '{mock}/cohere' }",
      model "{ name: jina-m0, provider: jina, model: jina-reranker-m0, api_key: test-key, base_url: '{mock}/jina' }",
      model "{ name: vllm-vl, provider: vllm, model: Qwen/Qwen3-VL-Reranker-2B, api_key: test-key, base_url: '{mock}/vllm' }",
      model "{ name: vllm-score, provider: vllm, path: /score, api_key: test-key, base_url: '{mock}/vllm' }",
      model "{ name: sglang, provider: sglang, api_key: test-key, base_url: '{mock}/sglang' }",
      model("{ name: dashscope-vl, provider: dashscope, model: qwen3-vl-rerank, api_key: test-key, "
            .. "base_url: '{mock}/dashscope' }"),
      model "{ name: dashscope-compat, provider: dashscope, api: compatible, api_key: test-key, base_url: '{mock}/dashscope' }",
      model "{ name: nim-vl, provider: nvidia_nim_vl, api_key: test-key, base_url: '{mock}/nimvl' }",
      model "{ name: zeroentropy, provider: zeroentropy, api_key: test-key, base_url: '{mock}/zeroentropy' }",
      model "{ name: contextual, provider: contextual, api_key: test-key, base_url: '{mock}/contextual' }",
      model "{ name: ze-small, provider: zeroentropy, max_bytes: 1000, api_key: test-key, base_url: '{mock}/zeroentropy' }",
      model "{ name: sglang-badkey, provider: sglang, api_key: wrong-key, base_url: '{mock}/sglang' }",
      model("{ name: ze-default, provider: zeroentropy, instruction: 'Prefer recipes.', api_key: test-key, "
            .. "base_url: '{mock}/zeroentropy' }"),
      model("{ name: sglang-default, provider: sglang, instruction: 'Prefer recipes.', api_key: test-key, "
            .. "base_url: '{mock}/sglang' }"),
      model "{ name: zeroentropy-429, provider: zeroentropy, api_key: test-key, base_url: '{mock}/fault/429:1/zeroentropy' }",
      model "{ name: dashscope-429, provider: dashscope, api_key: test-key, base_url: '{mock}/fault/429:1/dashscope' }",
      model "{ name: vertex, provider: vertex_ai, project: my-proj, api_key: test-key, base_url: '{mock}/vertex' }",
      model("{ name: vertex-badtoken, provider: vertex_ai, project: my-proj, api_key: ya29.stale-token, "
            .. "base_url: '{mock}/vertex' }"),
      model("{ name: wx, provider: watsonx, project_id: p1, api_key: test-key, base_url: '{mock}/watsonx', "
            .. "iam_url: '{mock}/iam/identity/token' }"),
      model("{ name: wx-short, provider: watsonx, project_id: p1, api_key: test-key, base_url: '{mock}/watsonx', "
            .. "iam_url: '{mock}/iam/expires/1/identity/token' }"),
      model("{ name: wx-revoked, provider: watsonx, space_id: s1, api_key: test-key, base_url: '{mock}/watsonx', "
            .. "iam_url: '{mock}/iam/expires/600/identity/token' }"),
      model("{ name: wx-kind, provider: watsonx, project_id: p1, api_key: test-key, base_url: '{mock}/watsonx', "
            .. "iam_url: '{mock}/iam/expires/900/identity/token' }"),
      model("{ name: wx-badkey, provider: watsonx, project_id: p1, api_key: not-the-key, base_url: '{mock}/watsonx', "
            .. "iam_url: '{mock}/iam/identity/token' }"),
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
    local b = { model = model, query = QUERY, documents = docs or DOCS, return_documents = true }
    for k, v in pairs(extra or {}) do b[k] = v end
    return d.request(srv, "/v1/rerank", { body = b })
  end

  -- what the mock received: the last body and the count; or the requests under a path prefix
  local function last_body()
    local seen = d.mock_requests(mock)
    return seen[#seen] and seen[#seen].json, #seen
  end

  local function seen(prefix)
    local out = {}
    for _, r in ipairs(d.mock_requests(mock)) do
      if r.path:sub(1, #prefix) == prefix then out[#out + 1] = r end
    end
    return out
  end

  -- the image URL's words match the query: the image-only document ranks first
  local function ranks_image_first(raw, j)
    assert.are.equal(1, j.results[1].index, raw)
    assert.are.same({ image = URL }, j.results[1].document, raw)
    assert.are.equal(3, #j.results, raw)
  end

  local SHAPES = {
    ["jina-m0"] = function(b) return b.documents end,
    ["vllm-vl"] = function(b) return b.documents end,
    sglang = function(b) return b.documents end,
    ["dashscope-vl"] = function(b) return b.input.documents end,
  }
  local EXPECT = {
    ["jina-m0"] = { "blue sky", { image = URL }, { text = "red car", image = DATA } },
    ["vllm-vl"] = { "blue sky", { content = { { type = "image_url", image_url = { url = URL } } } },
                    { content = { { type = "text", text = "red car" }, { type = "image_url", image_url = { url = DATA } } } } },
    sglang = { "blue sky", { { type = "image_url", image_url = { url = URL } } },
               { { type = "text", text = "red car" }, { type = "image_url", image_url = { url = DATA } } } },
    ["dashscope-vl"] = { { text = "blue sky" }, { image = URL }, { text = "red car", image = DATA } },
  }
  for _, name in ipairs({ "jina-m0", "vllm-vl", "sglang", "dashscope-vl" }) do
    it(name .. ": image documents reach the upstream in its multimodal shape and come back whole", function()
      local status, raw, _, j = rerank(name)
      assert.are.equal(200, status, raw)
      ranks_image_first(raw, j)
      local body = last_body()
      assert.are.same(EXPECT[name], SHAPES[name](body))
    end)
  end

  it("nim-vl: passages[].image with data: URLs (an image-only passage has no text)", function()
    local docs = { "blue sky", { image = DATA }, { text = "red apple pie", image = DATA } }
    local status, raw, _, j = rerank("nim-vl", docs)
    assert.are.equal(200, status, raw)
    assert.are.equal(2, j.results[1].index, raw)
    assert.are.same({ { text = "blue sky" }, { image = DATA }, { text = "red apple pie", image = DATA } }, last_body().passages)
  end)

  it("nim-vl: an http(s) image URL is a 422 naming the model (NIM takes data: URLs only)", function()
    local status, raw, _, j = rerank("nim-vl")
    assert.are.equal(422, status, raw)
    assert.truthy(j.error.message:find('"nim-vl"', 1, true), raw)
    assert.are.equal("documents[1].image", j.error.param, raw)
    local _, n = last_body()
    assert.are.equal(0, n)
  end)

  for _, name in ipairs({ "cohere", "zeroentropy", "contextual", "dashscope-compat", "vllm-score" }) do
    it(name .. ": a text-only model answers 422 naming it, and calls nothing", function()
      local status, raw, _, j = rerank(name)
      assert.are.equal(422, status, raw)
      assert.truthy(j.error.message:find('"' .. name .. '"', 1, true), raw)
      assert.truthy(j.error.message:find("image", 1, true), raw)
      assert.are.equal("documents[1].image", j.error.param, raw)
      local _, n = last_body()
      assert.are.equal(0, n)
    end)
  end

  it("pipelines: image items of lists reach a multimodal rerank stage; a text-only stage degrades", function()
    local lists = { { name = "vec", items = { { id = "a", score = 3, text = "blue sky" }, { id = "b", score = 2, image = URL },
                                              { id = "c", score = 1, text = "red car", image = DATA } } } }
    local function run(model)
      return d.request(srv, "/v1/rerank", { body = { query = QUERY, lists = lists,
        pipeline = { { fuse = { method = "rrf" } }, { rerank = { model = model } } } } })
    end
    local status, raw, _, j = run("jina-m0")
    assert.are.equal(200, status, raw)
    assert.are.equal("b", j.results[1].id, raw)
    assert.are.same({ "blue sky", { image = URL }, { text = "red car", image = DATA } }, last_body().documents)
    -- a rerank stage that fails does not fail a pipeline: the fused order, marked degraded
    d.mock_reset(mock)
    status, raw, _, j = run("cohere")
    assert.are.equal(200, status, raw)
    assert.is_true(j.degraded, raw)
    assert.are.equal("a", j.results[1].id, raw)
    local _, n = last_body()
    assert.are.equal(0, n)
    lists[1].items[2].image = "ftp://x"
    status, raw, _, j = run("jina-m0")
    assert.are.equal(422, status, raw)
    assert.are.equal("lists[0].items[1].image", j.error.param, raw)
  end)

  it("bm25 scores an image document on its text alone (an image-only one scores 0)", function()
    local status, raw, _, j = rerank("bm25", { "blue sky", { image = URL }, { text = "red apple pie", image = DATA } })
    assert.are.equal(200, status, raw)
    assert.are.equal(2, j.results[1].index, raw)
    for _, r in ipairs(j.results) do
      if r.index == 1 then assert.are.equal(0, r.relevance_score, raw) end
    end
  end)

  it("an image over documents.max_image_bytes is a 413; a bad image value a 422 or 400", function()
    local big = "data:image/png;base64," .. string.rep("A", 1100)
    local status, raw, _, j = rerank("jina-m0", { "a", { image = big } })
    assert.are.equal(413, status, raw)
    assert.are.equal("documents[1].image", j.error.param, raw)
    assert.truthy(j.error.message:find("max_image_bytes", 1, true), raw)
    status, raw, _, j = rerank("jina-m0", { { image = "ftp://img.test/x.png" } })
    assert.are.equal(422, status, raw)
    assert.are.equal("documents[0].image", j.error.param, raw)
    status, raw, _, j = rerank("jina-m0", { { image = 5 } })
    assert.are.equal(400, status, raw)
    assert.are.equal("documents[0].image", j.error.param, raw)
    -- the Jina route parses documents with the shapes' helper: the same rules
    status, raw = d.request(srv, "/jina/v1/rerank",
      { body = { model = "jina-m0", query = QUERY, documents = { { image = big } } } })
    assert.are.equal(413, status, raw)
    status, raw, _, j = d.request(srv, "/jina/v1/rerank", { body = { model = "jina-m0", query = QUERY, documents = DOCS } })
    assert.are.equal(200, status, raw)
    assert.are.equal(1, j.results[1].index, raw)
  end)

  it("the pair cache keys an image document by its image: same text, other image, another call", function()
    local function call(img)
      local status, raw = rerank("jina-m0", { { text = "pie", image = img } })
      assert.are.equal(200, status, raw)
      local _, n = last_body()
      return n
    end
    d.mock_reset(mock)
    assert.are.equal(1, call("https://img.test/one.png"))
    assert.are.equal(1, call("https://img.test/one.png")) -- cached: no new call
    assert.are.equal(2, call("https://img.test/two.png"))
  end)

  -- the instruction reaches each provider where its API documents it
  local PLACES = {
    sglang = function(b) return b.instruct end,
    ["dashscope-vl"] = function(b) return b.parameters.instruct end,
    ["dashscope-compat"] = function(b) return b.instruct end,
    contextual = function(b) return b.instruction end,
    zeroentropy = function(b) return b.query end,
  }
  for _, name in ipairs({ "sglang", "dashscope-vl", "dashscope-compat", "contextual", "zeroentropy" }) do
    it(name .. ": a request instruction reaches its documented place", function()
      local status, raw = rerank(name, { "blue sky", "red apple pie" }, { instruction = "Prefer recipes." })
      assert.are.equal(200, status, raw)
      local want = name == "zeroentropy" and "<query>red apple pie</query>\n<instruction>Prefer recipes.</instruction>"
          or "Prefer recipes."
      assert.are.equal(want, PLACES[name](last_body()))
    end)
  end

  it("zeroentropy: a request over max_bytes (150 + query + document bytes each) goes out in calls that fit", function()
    local docs = {}
    for i = 1, 12 do docs[i] = ("filler document %02d"):format(i) end -- 150 + 13 + 20 bytes each
    docs[8] = "red apple pie tasty" -- index 7
    local status, raw, _, j = rerank("ze-small", docs, { top_n = 2 })
    assert.are.equal(200, status, raw)
    assert.are.equal(7, j.results[1].index, raw)
    local calls = seen("/zeroentropy/")
    local sizes = {}
    for i, c in ipairs(calls) do sizes[i] = #c.json.documents end
    table.sort(sizes)
    assert.are.same({ 2, 5, 5 }, sizes) -- floor(1000 / 183) = 5 per call
  end)

  it("dashscope: qwen3-vl-rerank takes 40 documents per call when images are among them, 100 otherwise", function()
    local docs = {}
    for i = 1, 45 do docs[i] = { image = ("https://img.test/filler-%d.png"):format(i) } end
    docs[44] = { image = URL } -- index 43
    local status, raw, _, j = rerank("dashscope-vl", docs, { top_n = 1 })
    assert.are.equal(200, status, raw)
    assert.are.equal(43, j.results[1].index, raw)
    local sizes = {}
    for i, c in ipairs(seen("/dashscope/")) do sizes[i] = #c.json.input.documents end
    table.sort(sizes)
    assert.are.same({ 5, 40 }, sizes)
    d.mock_reset(mock)
    for i = 1, 45 do docs[i] = "text " .. i end
    assert.are.equal(200, (rerank("dashscope-vl", docs)))
    assert.are.equal(1, #seen("/dashscope/"))
  end)

  it("a model's default instruction reaches its place too, and a request's replaces it", function()
    assert.are.equal(200, (rerank("sglang-default", { "a", "b" })))
    assert.are.equal("Prefer recipes.", last_body().instruct)
    assert.are.equal(200, (rerank("ze-default", { "a", "b" })))
    assert.are.equal("<query>red apple pie</query>\n<instruction>Prefer recipes.</instruction>", last_body().query)
    assert.are.equal(200, (rerank("ze-default", { "a", "b" }, { instruction = "Other." })))
    assert.are.equal("<query>red apple pie</query>\n<instruction>Other.</instruction>", last_body().query)
  end)

  it("each new provider's score kind reaches the score layer (return_score: all)", function()
    local want = { ["nim-vl"] = "logit", ["wx-kind"] = "logit", zeroentropy = "probability", contextual = "probability",
                   ["dashscope-compat"] = "probability", vertex = "probability", sglang = "unknown" }
    for name, kind in pairs(want) do
      local status, raw, _, j = rerank(name, TEXT_DOCS, { return_score = "all" })
      assert.are.equal(200, status, raw)
      assert.are.equal(kind, j.results[1].score_kind, name .. ": " .. raw)
    end
  end)

  it("sglang: a rejected key is a 502 upstream_auth_error with SGLang's message, never the key", function()
    local status, raw, _, j = rerank("sglang-badkey", { "a", "b" })
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_auth_error", j.error.type, raw)
    assert.truthy(j.error.message:find("HTTP 401: Unauthorized", 1, true), raw)
    assert.falsy(raw:find("wrong-key", 1, true), raw)
  end)

  it("sglang: image documents go with return_documents false (SGLang cannot echo them)", function()
    -- the mock fails like SGLang's response validation when asked to echo a part list
    local status, raw = rerank("sglang", { { image = URL } })
    assert.are.equal(200, status, raw)
    assert.are.equal(false, last_body().return_documents)
  end)

  for _, name in ipairs({ "zeroentropy-429", "dashscope-429" }) do
    it(name .. ": an upstream 429 with Retry-After answers 429 (or 502) naming the status", function()
      local status, raw, headers, j = rerank(name, { "a", "b" })
      assert.truthy(status == 429 or status == 502, raw)
      assert.truthy(j.error.message:find("429", 1, true), raw)
      if status == 429 then assert.truthy(headers["retry-after"], raw) end
    end)
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
    local status, raw, _, j = rerank("vertex-badtoken", TEXT_DOCS)
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_auth_error", j.error.type, raw)
    assert.truthy(j.error.message:find("HTTP 401: Request had invalid authentication credentials", 1, true), raw)
    assert.falsy(raw:find("stale-token", 1, true), raw)
  end)

  it("watsonx: the API key is exchanged once at IAM, and the token reused until it ages", function()
    for _ = 1, 3 do
      local status, raw, _, j = rerank("wx", TEXT_DOCS)
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
    assert.are.equal(200, (rerank("wx-short", TEXT_DOCS)))
    assert.are.equal(200, (rerank("wx-short", TEXT_DOCS)))
    assert.are.equal(1, #seen("/iam/"))
    d.sleep(1.0) -- the token lives 1 s: past 0.8 s rerankd asks for a new one
    assert.are.equal(200, (rerank("wx-short", TEXT_DOCS)))
    local iam, wx = seen("/iam/"), seen("/watsonx/")
    assert.are.equal(2, #iam)
    assert.are_not.equal(wx[1].headers.authorization, wx[3].headers.authorization)
  end)

  it("watsonx: a 401 from the API forgets the token; the next request exchanges again", function()
    assert.are.equal(200, (rerank("wx-revoked", TEXT_DOCS)))
    d.sh("curl -s -X POST " .. mock.url .. "/_mock/revoke")
    local status, raw, _, j = rerank("wx-revoked", TEXT_DOCS)
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_auth_error", j.error.type, raw)
    assert.truthy(j.error.message:find("Failed to authenticate", 1, true), raw)
    assert.falsy(raw:find("iam-token", 1, true), raw) -- the bearer token is never echoed
    assert.are.equal(200, (rerank("wx-revoked", TEXT_DOCS)))
    assert.are.equal(2, #seen("/iam/"))
  end)

  it("watsonx: a key IAM rejects is a 502 upstream_auth_error naming the token endpoint, never the key", function()
    local status, raw, _, j = rerank("wx-badkey", TEXT_DOCS)
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_auth_error", j.error.type, raw)
    assert.truthy(j.error.message:find("token endpoint returned HTTP 400: Provided API key could not be found.", 1, true), raw)
    assert.falsy(raw:find("not-the-key", 1, true), raw)
    assert.are.equal(0, #seen("/watsonx/"))
  end)
end)
