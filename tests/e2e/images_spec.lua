-- Image documents end to end: {"image": URL | data: URL, "text"?} in documents, sent in each
-- multimodal provider's shape (asserted on what the mock received), refused with 422 for
-- text-only models, size-limited by documents.max_image_bytes; and the 2026 providers'
-- instruction fields, error bodies and 429s through the mock (tests/mock/mock_upstream.py).
local d = require "support.daemon"

local URL = "https://img.test/red-apple-pie.png"
local DATA = "data:image/png;base64,iVBORw0KGgo="
local DOCS = { "blue sky", { image = URL }, { text = "red car", image = DATA } }
local QUERY = "red apple pie"

describe("image documents and the 2026 providers through the daemon", function()
  local mock, srv

  setup(function()
    mock = d.start_mock()
    local m = mock.url
    local cfg = table.concat({
      'server: { listen: "127.0.0.1:8080", timeout: 30s }',
      "documents: { max_image_bytes: 1k }",
      "cache: { size: 1m, ttl: 10m, models: [jina-m0] }",
      "default_model: bm25",
      "models:",
      "  - { name: bm25, provider: bm25 }",
      "  - { name: cohere, provider: cohere, api_key: test-key, base_url: '" .. m .. "/cohere' }",
      "  - { name: jina-m0, provider: jina, model: jina-reranker-m0, api_key: test-key, base_url: '" .. m .. "/jina' }",
      "  - { name: vllm-vl, provider: vllm, model: Qwen/Qwen3-VL-Reranker-2B, api_key: test-key, base_url: '" .. m .. "/vllm' }",
      "  - { name: vllm-score, provider: vllm, path: /score, api_key: test-key, base_url: '" .. m .. "/vllm' }",
      "  - { name: sglang, provider: sglang, api_key: test-key, base_url: '" .. m .. "/sglang' }",
      "  - { name: dashscope-vl, provider: dashscope, model: qwen3-vl-rerank, api_key: test-key,",
      "      base_url: '" .. m .. "/dashscope' }",
      "  - { name: dashscope-compat, provider: dashscope, api: compatible, api_key: test-key,",
      "      base_url: '" .. m .. "/dashscope' }",
      "  - { name: nim-vl, provider: nvidia_nim_vl, api_key: test-key, base_url: '" .. m .. "/nimvl' }",
      "  - { name: zeroentropy, provider: zeroentropy, api_key: test-key, base_url: '" .. m .. "/zeroentropy' }",
      "  - { name: contextual, provider: contextual, api_key: test-key, base_url: '" .. m .. "/contextual' }",
      "  - { name: sglang-badkey, provider: sglang, api_key: wrong-key, base_url: '" .. m .. "/sglang' }",
      "  - { name: zeroentropy-429, provider: zeroentropy, api_key: test-key, base_url: '" .. m .. "/fault/429:1/zeroentropy' }",
      "  - { name: dashscope-429, provider: dashscope, api_key: test-key, base_url: '" .. m .. "/fault/429:1/dashscope' }",
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

  local function last_body()
    local seen = d.mock_requests(mock)
    return seen[#seen] and seen[#seen].json, #seen
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
end)
