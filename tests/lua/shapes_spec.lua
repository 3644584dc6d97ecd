-- lua/rerank/shapes: every client shape's request parsing, answer and error rendering, and the
-- detection rules of /v1/rerank (the documented formats: ../shared/reference/provider-apis.md).
local cjson = require "cjson"
local json = require "rerank.json"
local api = require "rerank.shapes.registry"
local shapes = require "rerank.shapes"

local function parse(shape, body, opts)
  if type(body) == "table" then body = cjson.encode(body) end
  return shapes.parse(shape, body, opts)
end

local RESULT = { id = "r1", model = "m", usage = { prompt_tokens = 12, total_tokens = 12, search_units = 1 },
                 results = { { index = 1, relevance_score = 0.9 }, { index = 0, relevance_score = 0.25 } } }

local function render(shape, req, result)
  local body, headers = shapes.render(shape, result or RESULT, req)
  return cjson.decode(body), body, headers
end

describe("shape detection on /v1/rerank", function()
  local cases = {
    { "rerankd's own", { query = "q", documents = { "a" } }, nil, "rerankd_v1" },
    { "Jina (indistinguishable: rerankd_v1 serves both)", { model = "jina-reranker-v2", query = "q",
      documents = { "a" }, top_n = 1, return_documents = true }, nil, "rerankd_v1" },
    { "Voyage top_k", { query = "q", documents = { "a" }, top_k = 1 }, nil, "voyage" },
    { "Voyage SDK nulls", '{"query":"q","documents":["a"],"model":"rerank-2","top_k":null,"truncation":true}', nil,
      "voyage" },
    { "Cohere rank_fields", { query = "q", documents = { { t = "a" } }, rank_fields = { "t" } }, nil, "cohere_v1" },
    { "Cohere max_chunks_per_doc", { query = "q", documents = { "a" }, max_chunks_per_doc = 2 }, nil, "cohere_v1" },
    { "Cohere SDK header", { query = "q", documents = { "a" } }, { ["x-fern-sdk-name"] = "cohere-ai" }, "cohere_v1" },
    { "Cohere python SDK header", { query = "q", documents = { "a" } }, { ["x-fern-sdk-name"] = "cohere" }, "cohere_v1" },
    { "Cohere user agent", { query = "q", documents = { "a" } }, { ["user-agent"] = "cohere-ai/8.1.0" }, "cohere_v1" },
    { "TEI body", { query = "q", texts = { "a" } }, nil, "tei" },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local b = c[2]
      if type(b) == "string" then b = json.decode(b) end
      assert.are.equal(c[4], shapes.detect("v1", b, c[3] or {}))
    end)
  end

  it("routes /v2/rerank to Cohere v2 and /rerank by texts", function()
    assert.are.equal("cohere_v2", shapes.detect("v2", { query = "q", documents = { "a" } }, {}))
    assert.are.equal("tei", shapes.detect("rerank", { query = "q", texts = { "a" } }, {}))
    assert.are.equal("rerankd_v1", shapes.detect("rerank", { query = "q", documents = { "a" } }, {}))
    assert.are.equal("jina", shapes.detect("jina", { query = "q", documents = { "a" } }, {}))
    assert.are.equal("rerankd_v1", shapes.detect("v1", nil, {})) -- bad JSON: rerankd's error
  end)
end)

describe("rerankd_v1", function()
  it("is rerankd's answer byte for byte, plus Cohere's meta", function()
    local req = assert(parse("rerankd_v1", { query = "q", documents = { "a", { text = "b", id = 7 } },
                                             return_documents = true }))
    local body = shapes.render("rerankd_v1", RESULT, req)
    local own = api.render("rerankd", RESULT, req)
    assert.are.equal(own:sub(1, -2), body:sub(1, #own - 1))
    local j = cjson.decode(body)
    assert.are.equal("list", j.object)
    assert.are.same({ text = "b", id = 7 }, j.results[1].document)
    assert.are.equal("a", j.results[2].document)
    assert.are.equal("1", j.meta.api_version.version)
    assert.are.equal(1, j.meta.billed_units.search_units)
    assert.are.equal(12, j.usage.total_tokens)
  end)

  it("as parts (the daemon's reply): the same bytes as a list of strings; other shapes a string", function()
    local req = assert(parse("rerankd_v1", { query = "q", documents = { "a", "b" }, return_documents = true }))
    for _, shape in ipairs({ "rerankd_v1", "rerankd" }) do
      local parts = shapes.render(shape, RESULT, req, true)
      assert.is_table(parts, shape)
      assert.is_true(#parts >= 3, shape)
      for _, p in ipairs(parts) do assert.is_string(p) end
      assert.are.equal(shapes.render(shape, RESULT, req), table.concat(parts), shape)
    end
    assert.is_string(shapes.render("cohere_v2", RESULT, req, true))
    assert.is_string(shapes.render("rerankd_v1", RESULT, req)) -- the library's callers: a string
  end)
end)

describe("cohere_v1", function()
  it("parses Cohere v1 fields; documents come back by default, as objects", function()
    local req = assert(parse("cohere_v1", { model = "rerank-v3.5", query = "q", top_n = 1,
      documents = { "plain", { title = "T", body = "B" } }, rank_fields = { "title", "body" }, max_chunks_per_doc = 3,
      max_tokens_per_doc = 50 }))
    assert.are.equal("cohere_v1", req.shape)
    assert.is_true(req.return_documents)
    assert.are.same({ "title", "body" }, req.rank_fields)
    assert.are.equal(3, req.max_chunks_per_doc)
    assert.are.equal(50, req.max_tokens_per_document)
    assert.are.equal("title: T\nbody: B", req.documents[2].text) -- no text field: ranked on rank_fields
    local j = render("cohere_v1", req)
    assert.are.equal("r1", j.id)
    assert.are.same({ title = "T", body = "B" }, j.results[1].document)
    assert.are.same({ text = "plain" }, j.results[2].document)
    assert.are.equal(0.9, j.results[1].relevance_score)
    assert.are.equal("1", j.meta.api_version.version)
    assert.are.equal(1, j.meta.billed_units.search_units)
  end)

  it("reads return_documents and the SDK's passthrough returnDocuments", function()
    assert.is_false(assert(parse("cohere_v1", { query = "q", documents = { "a" }, return_documents = false }))
      .return_documents)
    local req = assert(parse("cohere_v1", { query = "q", documents = { "a" }, returnDocuments = false }))
    assert.is_false(req.return_documents)
    assert.is_nil(render("cohere_v1", req).results[1].document)
  end)

  it("validates with Cohere's error body plus rerankd's", function()
    local _, err = parse("cohere_v1", { query = "q", documents = { { title = "x" } } })
    assert.are.equal(400, err.status)
    assert.are.equal("documents[0].text", err.param)
    local j = cjson.decode(shapes.render_error("cohere_v1", err))
    assert.are.equal("documents[0].text is required", j.message)
    assert.are.equal("invalid_request_error", j.error.type)
    _, err = parse("cohere_v1", { query = "q", documents = { "a" }, rank_fields = { 1 } })
    assert.are.equal("rank_fields[0]", err.param)
  end)
end)

describe("cohere_v2", function()
  it("takes strings and max_tokens_per_doc; no documents unless asked", function()
    local req = assert(parse("cohere_v2", { model = "rerank-v3.5", query = "q", documents = { "a", "b" },
      top_n = 2, max_tokens_per_doc = 512, priority = 1 }))
    assert.is_false(req.return_documents)
    assert.are.equal(512, req.max_tokens_per_document)
    local j = render("cohere_v2", req)
    assert.is_nil(j.results[1].document)
    assert.are.equal(1, j.results[1].index)
    assert.are.equal("2", j.meta.api_version.version)
    req.return_documents = true
    assert.are.same({ text = "b" }, render("cohere_v2", req).results[1].document)
  end)

  it("renders an empty result list as []", function()
    local req = assert(parse("cohere_v2", '{"query":"q","documents":[]}'))
    local _, body = render("cohere_v2", req, { id = "x", results = {}, usage = {} })
    assert.truthy(body:find('"results":[]', 1, true), body)
  end)
end)

describe("jina", function()
  it("returns documents as {text} by default, and usage.total_tokens", function()
    local req = assert(parse("jina", { model = "jina-reranker-v2-base-multilingual", query = "q",
      documents = { "a", { text = "b" } }, top_n = 2 }))
    local j = render("jina", req)
    assert.are.same({ text = "b" }, j.results[1].document)
    assert.are.same({ text = "a" }, j.results[2].document)
    assert.are.equal(12, j.usage.total_tokens)
    assert.are.equal("m", j.model)
    local e = cjson.decode(shapes.render_error("jina", { status = 422, type = "invalid_request_error", message = "x" }))
    assert.are.equal("x", e.detail)
  end)
end)

describe("voyage", function()
  it("maps top_k and truncation, answers under data with string documents", function()
    local req = assert(parse("voyage", '{"model":"rerank-2","query":"q","documents":["a","b"],"top_k":null,'
      .. '"truncation":false,"return_documents":true}'))
    assert.is_nil(req.top_n)
    assert.are.equal("none", req.truncate)
    req = assert(parse("voyage", { query = "q", documents = { "a", "b" }, top_k = 1, truncation = true,
                                   return_documents = true }))
    assert.are.equal(1, req.top_n)
    assert.are.equal("end", req.truncate)
    local j = render("voyage", req)
    assert.are.equal("list", j.object)
    assert.is_nil(j.results)
    assert.are.equal("b", j.data[1].document)
    assert.are.equal(0.9, j.data[1].relevance_score)
    assert.are.equal(12, j.usage.total_tokens)
    local _, err = parse("voyage", { query = "q", documents = { "a" }, top_k = 0 })
    assert.are.equal(422, err.status)
    assert.are.equal("top_k", err.param)
  end)
end)

describe("tei", function()
  it("parses texts, truncate and direction; answers a bare array with x-compute-tokens", function()
    local req = assert(parse("tei", { query = "q", texts = { "a", "b" }, truncate = true, truncation_direction = "left",
                                      raw_scores = false, return_text = true }))
    assert.are.equal("start", req.truncate)
    assert.is_true(req.return_documents)
    local j, body, headers = render("tei", req)
    assert.are.equal("[", body:sub(1, 1))
    assert.are.same({ index = 1, score = 0.9, text = "b" }, j[1])
    assert.are.equal("12", headers["x-compute-tokens"])
    assert.are.equal("none", assert(parse("tei", { query = "q", texts = { "a" }, truncate = false })).truncate)
    assert.are.equal("end", assert(parse("tei", { query = "q", texts = { "a" }, truncate = true })).truncate)
    local _, err = parse("tei", { query = "q", texts = { "a" }, truncation_direction = "Up" })
    assert.are.equal(422, err.status)
    local e = cjson.decode(shapes.render_error("tei", err))
    assert.are.equal("Validation", e.error_type)
    _, err = parse("tei", { query = "q", texts = { { text = "a" } } })
    assert.are.equal("texts[0]", err.param)
    local empty = shapes.render("tei", { results = {} }, assert(parse("tei", '{"query":"q","texts":[]}')))
    assert.are.equal("[]", empty)
  end)
end)

describe("fields every shape accepts", function()
  it("reads timeout (seconds or a duration) and fallbacks", function()
    for _, shape in ipairs({ "rerankd_v1", "cohere_v1", "cohere_v2", "jina", "voyage" }) do
      local req = assert(parse(shape, { query = "q", documents = { "a" }, timeout = 1.5, fallbacks = { "bm25" } }))
      assert.are.equal(1.5, req.timeout)
      assert.are.same({ "bm25" }, req.fallbacks)
    end
    assert.are.equal(0.25, assert(parse("tei", { query = "q", texts = { "a" }, timeout = "250ms" })).timeout)
    local _, err = parse("rerankd_v1", { query = "q", documents = { "a" }, timeout = "soon" })
    assert.are.equal(400, err.status)
    assert.are.equal("timeout", err.param)
    _, err = parse("rerankd_v1", { query = "q", documents = { "a" }, timeout = 0 })
    assert.are.equal(422, err.status)
    _, err = parse("rerankd_v1", { query = "q", documents = { "a" }, fallbacks = { "" } })
    assert.are.equal("fallbacks[0]", err.param)
  end)

  it("takes the text from text_field (LanceDB's column) and echoes the client's documents", function()
    local req = assert(parse("rerankd_v1", { query = "q", text_field = "content", return_documents = true,
                                             documents = { { content = "hello", id = 1 }, "plain" } }))
    assert.are.equal("hello", req.documents[1].text)
    assert.are.same({ content = "hello", id = 1 }, req.documents[1].raw)
    assert.are.equal(1, req.documents[1].id)
    local j = render("rerankd_v1", req, { id = "x", results = { { index = 0, relevance_score = 1 } }, usage = {} })
    assert.are.same({ content = "hello", id = 1 }, j.results[1].document)
    req = assert(parse("rerankd_v1", { query = "q", text_field = "content", documents = { { text = "x" } } }))
    assert.are.equal("x", req.documents[1].text) -- the field absent: text
    local _, err = parse("rerankd_v1", { query = "q", text_field = "content", documents = { { title = "x" } } })
    assert.are.equal("documents[0].content", err.param)
    -- the configured default
    req = assert(parse("jina", { query = "q", documents = { { body = "b" } } }, { text_field = "body" }))
    assert.are.equal("b", req.documents[1].text)
  end)

  it("takes rank_fields and max_chunks_per_doc on rerankd's shape too", function()
    local req = assert(parse("rerankd", { query = "q", documents = { { a = "1", b = "2" } }, rank_fields = { "b", "a" },
                                          max_chunks_per_doc = 4 }))
    assert.are.same({ "b", "a" }, req.rank_fields)
    assert.are.equal(4, req.max_chunks_per_doc)
    assert.are.same({ a = "1", b = "2" }, req.documents[1].raw)
  end)

  it("rejects bodies that are not JSON objects", function()
    local _, err = shapes.parse("cohere_v2", "[1]")
    assert.are.equal(400, err.status)
    _, err = shapes.parse("cohere_v2", "{")
    assert.truthy(err.message:find("invalid JSON body", 1, true))
  end)
end)
