-- The public library (lua/rerank/init.lua, README "Use as a library"): rerank.new and its
-- misuse, r:rerank on a wire-shaped table (results with the HTTP answer's fields), r:models,
-- r:fuse and rerank.fuse. The engine behind them: instance_spec.lua.
local rerank = require "rerank"

local function bm25(extra)
  local cfg = { models = { { name = "bm25", provider = "bm25" } } }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return assert(rerank.new(cfg))
end

describe("rerank.new", function()
  it("raises on misuse, returns nil, message for a config that does not load", function()
    assert.has_error(function() rerank.new(42) end, "rerank.new: expected a config file path or a config table")
    assert.has_error(function() rerank.new({}, "x") end, "rerank.new: opts must be a table")
    assert.has_error(function() rerank.new({}, { transport = {} }) end,
      "rerank.new: opts.transport must be a table with request(opts) and request_all(list, n)")
    local r, err = rerank.new({ models = { { name = "x", provider = "no_such_provider" } } })
    assert.is_nil(r)
    assert.is_string(err)
    r, err = rerank.new("/nonexistent/config.yaml")
    assert.is_nil(r)
    assert.is_string(err)
  end)

  it("exports the version, the error constructor and the provider loader", function()
    assert.is_string(rerank._VERSION)
    local none, e = rerank.fail(404, "gone", "model")
    assert.is_nil(none)
    assert.are.same({ status = 404, type = e.type, message = "gone", param = "model" }, e)
    assert.is_function(rerank.load_provider)
    assert.is_function(rerank.default_transport)
  end)
end)

describe("r:rerank", function()
  local docs = { "Deploy a model behind an API.", "Billing and usage.", "Deploy it twice." }

  it("raises on a request that is not a table; a bad request is nil, err", function()
    local r = bm25()
    assert.has_error(function() r:rerank("q") end, "rerank: request must be a table")
    local res, err = r:rerank({ model = "bm25", documents = docs })
    assert.is_nil(res)
    assert.are.equal(400, err.status)
  end)

  it("answers the daemon's result with the HTTP answer's fields as Lua values", function()
    local r = bm25()
    local res = assert(r:rerank({ model = "bm25", query = "deploy", documents = docs, top_n = 2,
                                  return_documents = true, return_score = "all" }))
    assert.are.equal("bm25", res.model)
    assert.are.equal(2, #res.results)
    for _, it in ipairs(res.results) do
      assert.are.equal(docs[it.index + 1], it.document)
      assert.is_number(it._relevance_score)
      assert.is_nil(it.extra)
    end
    local plain = assert(r:rerank({ model = "bm25", query = "deploy", documents = docs }))
    assert.is_nil(plain.results[1].document)
    assert.is_nil(plain.results[1]._relevance_score)
  end)
end)

describe("r:models", function()
  it("lists models, then aliases (sorted, with their members) and pipelines", function()
    local r = assert(rerank.new({
      models = { { name = "b1", provider = "bm25", aliases = { "zeta", "alpha" } },
                 { name = "b2", provider = "bm25", aliases = { "alpha" } } },
      pipelines = { { name = "hybrid", stages = { { fuse = { method = "rrf" } }, { rerank = { model = "b1" } } } } },
    }))
    local ids = {}
    for i, m in ipairs(r:models()) do ids[i] = m.id end
    assert.are.same({ "b1", "b2", "alpha", "zeta", "hybrid" }, ids)
    local m = r:models()
    assert.are.same({ id = "b1", provider = "bm25", model = m[1].model }, m[1])
    assert.are.same({ "b1", "b2" }, m[3].alias_of)
    assert.is_true(m[5].pipeline)
  end)
end)

describe("r:fuse and rerank.fuse", function()
  it("fuse lists the same way with the built-in methods; misuse raises", function()
    local r = bm25()
    local lists = { { "a", "b", "c" }, { "c", "a", "d" } }
    local a = assert(r:fuse(lists, { method = "rrf", k = 60 }))
    local b = assert(rerank.fuse(lists, { method = "rrf", k = 60 }))
    assert.are.same(a, b)
    assert.are.equal("a", a[1].id)
    assert.are.equal(1 / 61 + 1 / 62, a[1].score)
    assert.has_error(function() r:fuse("x") end, "fuse: lists must be a table")
    assert.has_error(function() r:fuse({}, 1) end, "fuse: opts must be a table")
  end)
end)
