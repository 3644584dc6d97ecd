-- End to end: every client shape on one port, answered in the shape asked (rerankd's own,
-- Cohere v1/v2, Jina, Voyage, TEI), over the mock upstreams and bm25, and the real Cohere
-- TypeScript SDK (npm cohere-ai, installed into tests/e2e/cohere_sdk/node_modules) run by node.
local d = require "support.daemon"
local cjson = require "cjson"
local mock_requests = d.mock_requests

local QUERY = "capital of the united states"
local DOCS = { "Carson City is the capital of Nevada.", "Washington is the capital of the United States.",
               "Paris is in France." }

local function post(srv, path, body, headers)
  return d.request(srv, path, { body = body, headers = headers })
end

describe("client shapes end to end", function()
  local mock, srv

  setup(function()
    mock = d.start_mock()
    local cfg = ([[
server: { auth: none, listen: "127.0.0.1:0", timeout: 20s }
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
  - { name: rerank-v3.5, provider: cohere, api_key: test-key, base_url: "%s/cohere" }
  - { name: jina-reranker-v2-base-multilingual, provider: jina, api_key: test-key, base_url: "%s/jina" }
  - { name: rerank-2, provider: voyage, api_key: test-key, base_url: "%s/voyage" }
  - { name: tei, provider: tei, api_key: test-key, base_url: "%s/tei" }
]]):format(mock.url, mock.url, mock.url, mock.url)
    srv = assert(d.start(cfg, { workers = 1 }))
  end)

  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  it("rerankd's own shape on /v1/rerank (plus Cohere's meta)", function()
    local status, raw, h, j = post(srv, "/v1/rerank", { model = "rerank-v3.5", query = QUERY, top_n = 2,
      documents = { DOCS[1], { id = "w", text = DOCS[2] }, DOCS[3] }, return_documents = true })
    assert.are.equal(200, status, raw)
    assert.truthy(raw:find('^{"id":"rerank%-[^"]+","object":"list","model":"rerank%-v3%.5","results":%['), raw)
    assert.are.equal(2, #j.results)
    assert.are.equal(1, j.results[1].index)
    assert.are.same({ id = "w", text = DOCS[2] }, j.results[1].document)
    assert.are.equal(DOCS[1], j.results[2].document) -- the client's string, as sent
    assert.is_number(j.usage.prompt_tokens)
    assert.are.equal("1", j.meta.api_version.version)
    assert.truthy(h["x-rerankd-cost"])
    assert.truthy(h["x-rerankd-timing"])
  end)

  it("Cohere v1: rank_fields on object documents, documents returned as objects", function()
    local docs = {}
    for i, t in ipairs(DOCS) do docs[i] = { title = "doc " .. i, body = t } end
    local status, raw, _, j = post(srv, "/v1/rerank", { model = "bm25", query = QUERY, documents = docs,
      rank_fields = { "body", "title" }, top_n = 2 })
    assert.are.equal(200, status, raw)
    assert.is_string(j.id)
    assert.are.equal(1, j.results[1].index)
    assert.are.same(docs[2], j.results[1].document)
    assert.are.equal("1", j.meta.api_version.version)
    assert.is_number(j.meta.billed_units.search_units)
    -- Cohere's own upstream gets the flattened "key: value" lines
    status, raw, _, j = post(srv, "/v1/rerank", { model = "rerank-v3.5", query = QUERY, documents = docs,
      rank_fields = { "body" } })
    assert.are.equal(200, status, raw)
    assert.are.equal(1, j.results[1].index)
    local sent = mock_requests(mock)
    assert.are.equal("body: " .. DOCS[2], sent[#sent].json.documents[2])
  end)

  it("Cohere v1 from the SDK (header) gets {text} documents by default", function()
    local status, raw, _, j = post(srv, "/v1/rerank", { model = "bm25", query = QUERY, documents = DOCS },
      { ["X-Fern-SDK-Name"] = "cohere-ai" })
    assert.are.equal(200, status, raw)
    assert.are.same({ text = DOCS[2] }, j.results[1].document)
    assert.is_string(j.id)
    assert.truthy(j.meta)
  end)

  it("Cohere v2 on /v2/rerank: no documents unless asked, Cohere errors", function()
    local status, raw, _, j = post(srv, "/v2/rerank", { model = "rerank-v3.5", query = QUERY, documents = DOCS,
      top_n = 2, max_tokens_per_doc = 4096 })
    assert.are.equal(200, status, raw)
    assert.are.equal(2, #j.results)
    assert.are.equal(1, j.results[1].index)
    assert.is_nil(j.results[1].document)
    assert.are.equal("2", j.meta.api_version.version)
    status, raw, _, j = post(srv, "/v2/rerank", { model = "rerank-v3.5", query = QUERY, documents = DOCS,
      return_documents = true })
    assert.are.equal(200, status, raw)
    assert.are.same({ text = DOCS[2] }, j.results[1].document)
    status, raw, _, j = post(srv, "/v2/rerank", { model = "rerank-v3.5", documents = DOCS })
    assert.are.equal(400, status, raw)
    assert.are.equal("query is required", j.message)
    status, raw, _, j = post(srv, "/v2/rerank", { model = "nope", query = "q", documents = DOCS })
    assert.are.equal(404, status, raw)
    assert.truthy(j.message:find("nope", 1, true))
  end)

  it("Jina: a Jina body on /v1/rerank, and {text} documents on /jina/v1/rerank", function()
    local body = { model = "jina-reranker-v2-base-multilingual", query = QUERY, documents = DOCS, top_n = 2,
                   return_documents = true }
    local status, raw, _, j = post(srv, "/v1/rerank", body)
    assert.are.equal(200, status, raw)
    assert.are.equal(1, j.results[1].index)
    assert.is_number(j.results[1].relevance_score)
    assert.is_number(j.usage.total_tokens)
    status, raw, _, j = post(srv, "/jina/v1/rerank", body)
    assert.are.equal(200, status, raw)
    assert.are.same({ text = DOCS[2] }, j.results[1].document)
    assert.is_number(j.usage.total_tokens)
    status, raw, _, j = post(srv, "/jina/v1/rerank", { query = "q" })
    assert.are.equal(400, status, raw)
    assert.are.equal("documents is required", j.detail)
  end)

  it("Voyage: top_k and truncation select it; the answer is under data", function()
    local status, raw, _, j = post(srv, "/v1/rerank", '{"model":"rerank-2","query":"' .. QUERY .. '","documents":'
      .. cjson.encode(DOCS) .. ',"top_k":null,"truncation":true,"return_documents":true}')
    assert.are.equal(200, status, raw)
    assert.are.equal("list", j.object)
    assert.is_nil(j.results)
    assert.are.equal(3, #j.data)
    assert.are.equal(1, j.data[1].index)
    assert.are.equal(DOCS[2], j.data[1].document)
    assert.is_number(j.usage.total_tokens)
    status, raw, _, j = post(srv, "/v1/rerank", { model = "rerank-2", query = QUERY, documents = DOCS, top_k = 1 })
    assert.are.equal(200, status, raw)
    assert.are.equal(1, #j.data)
    assert.is_nil(j.data[1].document)
    status, raw, _, j = post(srv, "/v1/rerank", { model = "rerank-2", query = QUERY, documents = DOCS, top_k = "x" })
    assert.are.equal(400, status, raw)
    assert.are.equal("top_k must be an integer", j.detail)
  end)

  it("TEI on /rerank: texts in, a bare array out, x-compute-tokens", function()
    local _
    local status, raw, h, j = post(srv, "/rerank", { query = QUERY, texts = DOCS, return_text = true,
      raw_scores = false, truncate = true, truncation_direction = "Right" })
    assert.are.equal(200, status, raw)
    assert.are.equal("[", raw:sub(1, 1))
    assert.are.equal(3, #j)
    assert.are.equal(1, j[1].index)
    assert.is_number(j[1].score)
    assert.are.equal(DOCS[2], j[1].text)
    assert.truthy(tonumber(h["x-compute-tokens"]))
    status, raw, _, j = post(srv, "/rerank", { model = "tei", query = QUERY, texts = DOCS })
    assert.are.equal(200, status, raw)
    assert.is_nil(j[1].text)
    status, raw, _, j = post(srv, "/rerank", { query = QUERY, texts = { 1 } })
    assert.are.equal(400, status, raw)
    assert.is_string(j.error)
    assert.are.equal("Validation", j.error_type)
    -- a Jina-format body on /rerank (vLLM, Infinity, llama.cpp clients) gets rerankd's answer
    status, raw, _, j = post(srv, "/rerank", { query = QUERY, documents = DOCS })
    assert.are.equal(200, status, raw)
    assert.are.equal(1, j.results[1].index)
  end)

  it("takes text_field for object documents without text", function()
    local docs = {}
    for i, t in ipairs(DOCS) do docs[i] = { content = t, n = i } end
    local status, raw, _, j = post(srv, "/v1/rerank", { query = QUERY, documents = docs, text_field = "content",
      return_documents = true })
    assert.are.equal(200, status, raw)
    assert.are.equal(1, j.results[1].index)
    assert.are.same(docs[2], j.results[1].document)
  end)

  it("runs the real Cohere TypeScript SDK (v1 and v2 rerank, v2 priority) against rerankd", function()
    local dir = d.root .. "/tests/e2e/cohere_sdk"
    if not d.readfile(dir .. "/node_modules/cohere-ai/package.json") then
      local out = d.sh(("cd %s && npm install --no-audit --no-fund --no-package-lock --loglevel=error 2>&1; echo rc=$?")
        :format(dir))
      assert.truthy(out:find("rc=0", 1, true), "npm install cohere-ai failed: " .. out)
    end
    local out = d.sh(("cd %s && node run.js %s rerank-v3.5 2>&1; echo rc=$?"):format(dir, srv.url))
    assert.truthy(out:find("rc=0", 1, true), out)
    assert.truthy(out:find("8 passed, 0 failed", 1, true), out)
  end)
end)
