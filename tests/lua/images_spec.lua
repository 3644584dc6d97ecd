-- Image documents through the library (require "rerank" with an injected transport that
-- records the upstream body): parsing, the multimodal body, the 422 for text-only models,
-- documents.max_image_bytes, and the pair cache key.
local rerank = require "rerank"
local cjson = require "cjson"
local api = require "rerank.shapes.registry"
local cache = require "rerank.engine.cache"

local URL = "https://img.test/red-apple-pie.png"

local function recorder(answer)
  local t = { bodies = {} }
  function t.request(opts)
    t.bodies[#t.bodies + 1] = cjson.decode(opts.body)
    return { status = 200, headers = {}, body = answer }
  end
  function t.request_all(list)
    local out = {}
    for i, o in ipairs(list) do out[i] = t.request(o) end
    return out
  end
  return t
end

describe("image documents (library)", function()
  local answer = '{"results":[{"index":1,"relevance_score":0.9},{"index":0,"relevance_score":0.2}]}'

  local function instance(t, docs_cfg)
    return assert(rerank.new({
      documents = docs_cfg,
      models = {
        { name = "m0", provider = "jina", model = "jina-reranker-m0", api_key = "k", base_url = "http://up" },
        { name = "cohere", provider = "cohere", api_key = "k", base_url = "http://up" },
      },
    }, { transport = t }))
  end

  it("carries image on the internal document; text defaults to empty", function()
    local req = assert(api.parse("rerankd", { query = "q", documents = { "a", { image = URL }, { text = "t", image = URL } } }))
    assert.is_nil(req.documents[1].image)
    assert.are.equal(URL, req.documents[2].image)
    assert.are.equal("", req.documents[2].text)
    assert.are.equal("t", req.documents[3].text)
  end)

  it("sends {image} to Jina m0 and echoes the client's document", function()
    local t = recorder(answer)
    local res = assert(instance(t):rerank({ model = "m0", query = "red apple", documents = { "blue", { image = URL } },
                                            return_documents = true }))
    assert.are.same({ "blue", { image = URL } }, t.bodies[1].documents)
    assert.are.equal(1, res.results[1].index)
    assert.are.same({ image = URL }, res.results[1].document)
  end)

  it("refuses image documents for a text-only model with 422 naming it", function()
    local t = recorder(answer)
    local res, err = instance(t):rerank({ model = "cohere", query = "q", documents = { "blue", { image = URL } } })
    assert.is_nil(res)
    assert.are.equal(422, err.status)
    assert.truthy(err.message:find('model "cohere" does not accept image documents', 1, true), err.message)
    assert.are.equal(0, #t.bodies)
  end)

  it("applies documents.max_image_bytes", function()
    local res, err = instance(recorder(answer), { max_image_bytes = 40 }):rerank({ model = "m0", query = "q",
      documents = { { image = URL .. "?" .. string.rep("x", 40) } } })
    assert.is_nil(res)
    assert.are.equal(413, err.status)
    assert.are.equal("documents[0].image", err.param)
  end)

  it("keys the pair cache on the image: same text, other image, other key", function()
    local c = cache.new({ cache = { size = 1024 * 1024 } })
    local model = { name = "m0", provider = "jina", options = {} }
    local a = assert(api.parse("rerankd", { query = "q", documents = {
      { text = "t", image = URL }, { text = "t", image = URL .. "2" }, { text = "t" }, { text = "t", image = URL } } }))
    local keys = c:keys(model, a)
    assert.are_not.equal(keys[1], keys[2])
    assert.are_not.equal(keys[1], keys[3])
    assert.are.equal(keys[1], keys[4])
  end)
end)
