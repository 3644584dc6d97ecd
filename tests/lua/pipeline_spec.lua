-- rerank.engine.pipeline through the library: configured and inline pipelines, return_score,
-- degraded rerank stages, request validation, and the config checks for pipelines/fusion.
local rerank = require "rerank"
local api = require "rerank.shapes.registry"
local config = require "rerank.config.load"
local json = require "rerank.json"
local paths = require "rerank.config.paths"

local HERE = paths.dirname(paths.abs(debug.getinfo(1, "S").source:sub(2)))
local REPO = paths.normalize(HERE .. "/../..")
local FIX = REPO .. "/tests/fixtures/fusion"
local TMP = REPO .. "/tests/tmp/pipeline_spec"

local function readfile(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local writefile = require("support.files").write

local function near(a, b, what)
  assert(type(b) == "number" and math.abs(a - b) <= 1e-12 * math.max(1, math.abs(a)),
    ("%s: expected %.17g, got %s"):format(what or "score", a, tostring(b)))
end

local CFG = {
  models = {
    { name = "bm25", provider = "bm25" },
    { name = "down", provider_file = FIX .. "/failing_provider.lua" },
    { name = "down_fb", provider_file = FIX .. "/failing_provider.lua", fallbacks = { "bm25" } },
  },
  fusion = { FIX .. "/my_fusion.lua" },
  pipelines = {
    { name = "hybrid", stages = { { fuse = { method = "rrf", k = 60 } }, { rerank = { model = "bm25", candidates = 3 } },
                                  { threshold = { min_score = 0.0001 } } } },
    { name = "fragile", stages = { { fuse = "rrf" }, { rerank = "down" }, { threshold = 0.5 }, { top_n = 2 } } },
    { name = "saved", stages = { { fuse = "rrf" }, { rerank = "down_fb" } } },
    { name = "fused_only", stages = { { fuse = { method = "relative_score" } }, { top_n = 3 } } },
    { name = "custom", stages = { { fuse = { method = "best_rank", boost = 2 } } } },
    { name = "docs", stages = { { rerank = "bm25" }, { threshold = 0.0001 } } },
  },
}

-- tests/fixtures/fusion/hybrid_lists.json (query "how do cats sleep"):
--   vector (distance): a 0.1, b 0.4, c 0.7;  fts: c 9, a 6, d 3
-- rrf (k 60): a 1/61 + 1/62, c 1/63 + 1/61, b 1/62, d 1/63 -> a, c, b, d
-- bm25 on the query tokens how/do/cats/sleep: a ("cats sleep ...") and d ("sleep ...") match,
-- b ("dogs bark ...") and c ("a cat naps ... sleeps": no exact token) score 0.
local RRF = { a = 1 / 61 + 1 / 62, c = 1 / 63 + 1 / 61, b = 1 / 62, d = 1 / 63 }

local function body(extra)
  local b = json.decode(readfile(FIX .. "/hybrid_lists.json"))
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

local r
setup(function() r = assert(rerank.new(CFG)) end)

local function call(b)
  local req, err = api.parse("rerankd", b)
  if not req then return nil, err end
  local res, rerr = r:rerank(req)
  if not res then return nil, rerr end
  return res, req, json.decode(api.render("rerankd", res, req))
end

local function ids(res)
  local out = {}
  for i, x in ipairs(res.results) do out[i] = x.id end
  return out
end

describe("configured pipelines", function()
  it("fuse -> rerank (top candidates) -> threshold", function()
    local res = assert(call(body({ pipeline = "hybrid" })))
    -- candidates 3: a, c, b; bm25 keeps a > 0 only above min_score
    assert.are.same({ "a" }, ids(res))
    assert.are.equal(0, res.results[1].index) -- documents numbered in order of first appearance
    assert.is_true(res.results[1].relevance_score > 0)
    assert.are.equal("hybrid", res.model)
    assert.is_nil(res.degraded)
    assert.is_true(res.usage.prompt_tokens > 0)
  end)

  it("runs when model names a pipeline", function()
    assert.are.same({ "a" }, ids(assert(call(body({ model = "hybrid" })))))
  end)

  it("fuse-only: relevance_score is the fused score, top_n stage, no query needed", function()
    local b = body({ pipeline = "fused_only" })
    b.query = nil
    local res = assert(call(b))
    -- relative_score: vector sims 0.9/0.6/0.3 -> a 1, b 0.5, c 0; fts -> c 1, a 0.5, d 0
    assert.are.same({ "a", "c", "b" }, ids(res))
    near(1.5, res.results[1].relevance_score)
    near(1, res.results[2].relevance_score)
    near(0.5, res.results[3].relevance_score)
  end)

  it("an operator method from fusion: runs in a stage", function()
    local res = assert(call(body({ pipeline = "custom" })))
    -- best reciprocal rank × 2: a 2 (vector #1), c 2 (fts #1), b 1, d 2/3
    assert.are.same({ "a", "c", "b", "d" }, ids(res))
    near(2 / 3, res.results[4].relevance_score)
  end)

  it("runs over documents as one list (implicit rrf first)", function()
    local res = assert(call({ model = "docs", query = "cats sleep",
      documents = { "dogs bark", { id = "x", text = "cats sleep" }, "sleep" } }))
    assert.are.equal(2, #res.results)
    assert.are.equal(1, res.results[1].index)
    assert.are.equal("x", res.results[1].id)
    assert.are.equal(2, res.results[2].index)
  end)
end)

describe("inline pipelines", function()
  it("runs the stages given in the request; ties keep the fused order", function()
    local res = assert(call(body({ pipeline = { { fuse = { method = "rrf" } },
                                                { rerank = { model = "bm25", candidates = 3 } } } })))
    -- bm25: a > 0; c and b both 0 -> fused order (c before b); d is past the candidates
    assert.are.same({ "a", "c", "b" }, ids(res))
    assert.are.equal(0, res.results[2].relevance_score)
  end)

  it("lists without a pipeline: rrf, then the request's model", function()
    local res = assert(call(body({ model = "bm25" })))
    assert.are.same({ "a", "d", "c", "b" }, ids(res))
  end)

  it("text_field names where the items keep their text", function()
    local res = assert(call({ query = "cats", text_field = "content", pipeline = { { rerank = "bm25" } },
      lists = { { items = { { id = 1, content = "dogs" }, { id = 2, content = "cats" } } } } }))
    assert.are.same({ 2, 1 }, ids(res))
    local _, err = call({ query = "cats", text_field = "content", pipeline = { { rerank = "bm25" } },
      lists = { { items = { { id = 1, text = "dogs" } } } } })
    assert.are.equal("lists[0].items[0].content", err.param)
  end)

  it("threshold and top_n stages, and the request's top_n", function()
    local res = assert(call(body({ top_n = 1, pipeline = { { fuse = "rrf" }, { threshold = 0.02 } } })))
    -- rrf scores above 0.02: a, c (1/62 and 1/63 are below); request top_n 1
    assert.are.same({ "a" }, ids(res))
    res = assert(call(body({ pipeline = { { fuse = { method = "rrf" } }, { top_n = 3 } } })))
    assert.are.same({ "a", "c", "b" }, ids(res))
  end)

  it("fuse parameters inline, flat or under params", function()
    local res = assert(call(body({ pipeline = { { fuse = { method = "linear", normalize = "rank", weights = { fts = 2 } } } } })))
    -- rank: vector a 1, b 2/3, c 1/3; fts ×2: c 2, a 4/3, d 2/3 -> a 7/3, c 7/3, b 2/3, d 2/3
    -- a and c tie (best rank 1 both, a first); b and d tie (b best rank 2, d 3)
    assert.are.same({ "a", "c", "b", "d" }, ids(res))
    near(1 + 4 / 3, res.results[1].relevance_score)
    local res2 = assert(call(body({ pipeline = {
      { fuse = { method = "linear", params = { normalize = "rank", weights = { 1, 2 } } } } } })))
    assert.are.same(ids(res), ids(res2))
  end)
end)

describe("return_score", function()
  it('"all" gives every stage\'s score per result', function()
    local res, req, j = call(body({ pipeline = { { fuse = "rrf" }, { rerank = { model = "bm25" } } },
                                    return_score = "all", return_documents = true }))
    assert(res, req and req.message)
    local top = j.results[1]
    assert.are.equal("a", top.id)
    near(0.1, top._distance, "_distance")
    near(6, top.score, "score")
    near(RRF.a, top._fused_score, "_fused_score")
    near(top.relevance_score, top._relevance_score, "_relevance_score")
    assert.are.same({ vector = 1, fts = 2 }, top.ranks)
    assert.are.same({ vector = 0.1, fts = 6 }, top.scores)
    assert.are.equal("cats sleep most of the day", top.document.text)
    -- b is only in the vector list: no "score", no fts entries
    local b
    for _, x in ipairs(j.results) do if x.id == "b" then b = x end end
    assert.is_nil(b.score)
    near(0.4, b._distance)
    assert.are.same({ vector = 2 }, b.ranks)
  end)

  it('"relevance" (the default) gives relevance_score and id only', function()
    local _, _, j = call(body({ pipeline = "hybrid" }))
    assert.are.same({ "id", "index", "relevance_score" }, (function()
      local k = {}
      for name in pairs(j.results[1]) do k[#k + 1] = name end
      table.sort(k)
      return k
    end)())
  end)

  it('"all" on a plain rerank adds _relevance_score', function()
    local _, _, j = call({ query = "cat", documents = { "a cat", "dog" }, return_score = "all" })
    near(j.results[1].relevance_score, j.results[1]._relevance_score)
  end)

  it("rejects other values", function()
    local _, err = call(body({ pipeline = "hybrid", return_score = "some" }))
    assert.are.equal(422, err.status)
    assert.are.equal("return_score", err.param)
  end)
end)

describe("a failing rerank stage", function()
  it("returns the fused order, degraded, and skips the threshold after it", function()
    local res, req = call(body({ pipeline = "fragile" }))
    assert(res, req and req.message)
    assert.is_true(res.degraded)
    -- threshold 0.5 would drop every rrf score; top_n 2 still applies
    assert.are.same({ "a", "c" }, ids(res))
    near(RRF.a, res.results[1].relevance_score)
    near(RRF.c, res.results[2].relevance_score)
    assert.truthy(api.render("rerankd", res, req):find('"degraded":true', 1, true))
  end)

  it("uses the model's fallbacks first (not degraded when one answers)", function()
    local res = assert(call(body({ pipeline = "saved" })))
    assert.is_nil(res.degraded)
    assert.are.same({ "a", "d", "c", "b" }, ids(res))
  end)

  it("inline: return_score all has no _relevance_score when degraded", function()
    local _, _, j = call(body({ pipeline = { { fuse = "rrf" }, { rerank = "down" } }, return_score = "all" }))
    assert.is_true(j.degraded)
    assert.is_nil(j.results[1]._relevance_score)
    near(RRF.a, j.results[1]._fused_score)
  end)
end)

describe("request validation", function()
  local cases = {
    { "lists[1].items[2].id", 400, { lists = { { items = {} }, { items = { { id = "a" }, { id = "b" }, { score = 1 } } } } } },
    { "lists[0].items[0].text", 400, { lists = { { items = { { id = "a", text = 5 } } } } } },
    { "lists[0].kind", 422, { lists = { { kind = "far", items = {} } } } },
    { "lists", 400, { lists = "x" } },
    { "pipeline[0].fusee", 422, { pipeline = { { fusee = {} } } } },
    { "pipeline[1].fuse", 422, { pipeline = { { rerank = "bm25" }, { fuse = "rrf" } } } },
    { "pipeline[0]", 422, { pipeline = { { fuse = "rrf", rerank = "bm25" } } } },
    { "pipeline[0].rerank.candidates", 422, { pipeline = { { rerank = { candidates = 0 } } } } },
    { "pipeline[0].rerank.candidats", 422, { pipeline = { { rerank = { candidats = 3 } } } } },
    { "pipeline[0].threshold.min_score", 400, { pipeline = { { threshold = { min_score = "x" } } } } },
    { "pipeline[0].top_n", 422, { pipeline = { { top_n = 0 } } } },
    { "pipeline[0].fuse.fusion_file", 422, { pipeline = { { fuse = { fusion_file = "/etc/passwd" } } } } },
    { "pipeline", 400, { pipeline = 5 } },
    { "documents", 422, { pipeline = "hybrid", documents = { "x" } } },
    { "query", 400, { pipeline = "hybrid", query = 5 } },
  }
  for _, c in ipairs(cases) do
    it("names " .. c[1], function()
      local b = body(c[3])
      if c[3].lists == nil and c[1] ~= "documents" then b.lists = body().lists end
      local _, err = call(b)
      assert.are.equal(c[1], err.param, err.message)
      assert.are.equal(c[2], err.status, err.message)
    end)
  end

  it("checks what only the run can know", function()
    local _, err = call(body({ pipeline = "hybird" }))
    assert.are.equal(404, err.status)
    assert.are.equal("pipeline", err.param)
    assert.truthy(err.message:find('did you mean "hybrid"', 1, true), err.message)
    _, err = call(body({ pipeline = { { fuse = "rff" } } }))
    assert.are.equal("pipeline[0].fuse.method", err.param)
    _, err = call(body({ pipeline = { { fuse = { method = "rrf", kk = 1 } } } }))
    assert.are.equal("pipeline[0].fuse.kk", err.param)
    _, err = call(body({ pipeline = { { fuse = { method = "rrf", weights = { 1 } } } } }))
    assert.are.equal("pipeline[0].fuse.weights", err.param)
    _, err = call(body({ pipeline = { { rerank = "nope" } } }))
    assert.are.equal(404, err.status)
    assert.are.equal("pipeline[0].rerank.model", err.param)
    -- d has no text and reaches the rerank stage
    assert.truthy(call(body({ pipeline = { { fuse = "rrf" }, { rerank = "bm25" } } }))) -- every text present
    local b = body({ pipeline = { { rerank = "bm25" } } })
    b.lists[2].items[3].text = nil
    _, err = call(b)
    assert.are.equal("lists[1].items[2].text", err.param)
    b = body({ pipeline = "hybrid" })
    b.query = nil
    _, err = call(b)
    assert.are.equal("query", err.param)
    _, err = call(body({ model = "nope" }))
    assert.are.equal("model", err.param)
    -- score-based fusion over documents (no scores)
    _, err = call({ pipeline = { { fuse = "linear" } }, documents = { "a", "b" } })
    assert.are.equal("documents[0].score", err.param)
  end)

  it("accepts empty lists (no results, no rerank call)", function()
    local res = assert(call({ query = "q", pipeline = "hybrid", lists = { { items = {} }, {} } }))
    assert.are.same({}, res.results)
    local req = assert(api.parse("rerankd", { query = "q", pipeline = "hybrid", lists = {} }))
    res = assert(r:rerank(req))
    assert.truthy(api.render("rerankd", res, req):find('"results":[]', 1, true))
  end)
end)

describe("config: pipelines and fusion", function()
  local function cfg_err(t)
    local c, err = config.from_table(t)
    assert.is_nil(c)
    return err
  end
  local function with(stages, extra)
    local t = { models = { { name = "bm25", provider = "bm25" } }, pipelines = { { name = "p", stages = stages } } }
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end

  it("keeps the stages as written (no defaults added) and accepts top_n stages", function()
    local c = assert(config.from_table(with({ { fuse = { method = "rrf", k = 60 } }, { rerank = { model = "bm25" } },
                                              { threshold = 0.2 }, { top_n = 5 } })))
    assert.are.same({ { fuse = { method = "rrf", k = 60 } }, { rerank = { model = "bm25" } },
                      { threshold = { min_score = 0.2 } }, { top_n = 5 } }, c.pipelines[1].stages)
    assert.are.same({}, c.fusion)
  end)

  it("rejects what would fail at run time", function()
    local cases = {
      { { { fuse = "rff" } }, 'pipelines[0].stages[0].fuse.method: unknown fusion method "rff" (did you mean "rrf"?)' },
      { { { fuse = { method = "linear", normalize = "minmax" } } }, "pipelines[0].stages[0].fuse.normalize: invalid value" },
      { { { fuse = { method = "rrf", kk = 1 } } }, 'pipelines[0].stages[0].fuse.kk: unknown parameter for method "rrf"' },
      { { { fuse = { method = "rrf", k = 0, rank_base = 0 } } }, "pipelines[0].stages[0].fuse.k must be > 0" },
      { { { fuse = { rank_base = 2 } } }, "pipelines[0].stages[0].fuse.rank_base must be an integer between 0 and 1" },
      { { { fuse = { weights = { "x" } } } }, "pipelines[0].stages[0].fuse.weights[0] must be a number" },
      { { { fuse = { method = "isr", rank_base = 0 } } }, "pipelines[0].stages[0].fuse.rank_base must be 1" },
      { { { rerank = "bm25" }, { fuse = "rrf" } }, "pipelines[0].stages[1].fuse: a fuse stage must be the first stage" },
      { { { top_n = 0 } }, "pipelines[0].stages[0].top_n must be an integer >= 1" },
      { { { threshold = {} } }, 'pipelines[0].stages[0].threshold: missing required key "min_score"' },
      { { { fuse = { fusion_file = "nope.lua" } } }, "pipelines[0].stages[0].fuse.fusion_file: fusion file not found" },
      { { { fuse = { fusion_file = FIX .. "/not_a_method.lua" } } }, "must export fuse(lists, params)" },
      { { { fuse = { fusion_file = FIX .. "/my_fusion.lua", method = "other" } } }, 'fuse.method: "other" does not match' },
      { { { fuse = { fusion_file = FIX .. "/my_fusion.lua", bost = 1 } } }, 'did you mean "boost"' },
    }
    for _, c in ipairs(cases) do
      local err = cfg_err(with(c[1]))
      assert.truthy(err:find(c[2], 1, true), err .. "\n  expected: " .. c[2])
    end
  end)

  it("fusion: lists operator methods; names must be new", function()
    local c = assert(config.from_table(with({ { fuse = { method = "best_rank", boost = 3 } } },
      { fusion = FIX .. "/my_fusion.lua" })))
    assert.are.same({ { name = "best_rank", file = FIX .. "/my_fusion.lua" } }, c.fusion)
    assert.are.equal(FIX .. "/my_fusion.lua", c.fusion_index.best_rank)
    local err = cfg_err(with({ { fuse = "best_rank" } }))
    assert.truthy(err:find('unknown fusion method "best_rank"', 1, true), err)
    local shadow = writefile(TMP .. "/rrf_again.lua", 'return { name = "rrf", fuse = function() return {} end }')
    err = cfg_err(with({ { fuse = "rrf" } }, { fusion = { shadow } }))
    assert.truthy(err:find('fusion[0]: fusion method "rrf"', 1, true), err)
    err = cfg_err(with({ { fuse = "rrf" } }, { fusion = { FIX .. "/my_fusion.lua", FIX .. "/my_fusion.lua" } }))
    assert.truthy(err:find("fusion[1]: duplicate fusion method", 1, true), err)
    err = cfg_err(with({ { fuse = "rrf" } }, { fusion = { "missing.lua" } }))
    assert.truthy(err:find("fusion[0]: fusion file not found", 1, true), err)
    -- a stage's own fusion_file cannot take a built-in's or another file's name either
    err = cfg_err(with({ { fuse = { fusion_file = shadow } } }))
    assert.truthy(err:find("fuse.fusion_file: fusion method \"rrf\"", 1, true), err)
    local twin = writefile(TMP .. "/twin.lua", readfile(FIX .. "/my_fusion.lua"))
    err = cfg_err(with({ { fuse = { fusion_file = twin } } }, { fusion = { FIX .. "/my_fusion.lua" } }))
    assert.truthy(err:find('fusion method "best_rank" is also defined by', 1, true), err)
  end)

  it("resolves fusion_file relative to the config file, with file:line:col errors", function()
    writefile(TMP .. "/my_fusion.lua", readfile(FIX .. "/my_fusion.lua"))
    local good = writefile(TMP .. "/good.yaml", [[
models:
  - { name: bm25, provider: bm25 }
pipelines:
  - name: mine
    stages:
      - fuse: { fusion_file: ./my_fusion.lua, boost: 2 }
      - rerank: { model: bm25, candidates: 10 }
      - top_n: 3
]])
    local c = assert(config.load(good))
    assert.are.same({ fusion_file = TMP .. "/my_fusion.lua", boost = 2 }, c.pipelines[1].stages[1].fuse)
    local rr = assert(rerank.new(good))
    local res = assert(rr:rerank({ pipeline = "mine", query = "x",
      lists = { { items = { { id = 1, text = "x" }, { id = 2, text = "y" } } } } }))
    assert.are.equal(2, #res.results)
    local bad = writefile(TMP .. "/bad.yaml", [[
models:
  - { name: bm25, provider: bm25 }
pipelines:
  - name: mine
    stages:
      - fuse: { method: linear, normalize: zscore }
]])
    local _, err = config.load(bad)
    assert.truthy(err:find("bad.yaml:6:%d+: pipelines%[0%]%.stages%[0%]%.fuse%.normalize"), err)
    assert.truthy(err:find('did you mean "z_score"', 1, true), err)
  end)
end)

describe("usage: one search-unit rule, whatever the request form", function()
  -- the same request over `documents` and over `lists` (the implicit fuse → rerank pipeline)
  local DOCS = { "cats sleep all day", "dogs bark at night", "a cat naps in the sun" }
  local function forms(model)
    local items = {}
    for i, t in ipairs(DOCS) do items[i] = { id = "d" .. i, text = t } end
    return { model = model, query = "cats sleep", documents = DOCS },
           { model = model, query = "cats sleep", lists = { { name = "l", items = items } } }
  end
  local function bill(inst, shape, b)
    local shapes = require "rerank.shapes"
    local req = assert(shapes.parse(shape, json.encode(b)))
    local res = assert(shapes.run(shape, inst, req, {}))
    return json.decode(shapes.render(shape, res, req))
  end

  it("bills a local scorer (bm25) none either way", function()
    local d, l = forms("bm25")
    local a, b = bill(r, "rerankd", d), bill(r, "rerankd", l)
    assert.is_nil(a.usage.search_units)
    assert.is_nil(b.usage.search_units)
    assert.are.equal(0, bill(r, "rerankd_v1", d).meta.billed_units.search_units)
    assert.are.equal(0, bill(r, "rerankd_v1", l).meta.billed_units.search_units)
  end)

  it("bills an upstream API's call the same either way (Cohere's counting)", function()
    local t = {}
    function t.request()
      return { status = 200, headers = {}, body = '{"results":[{"index":0,"relevance_score":0.9},'
        .. '{"index":1,"relevance_score":0.1},{"index":2,"relevance_score":0.5}]}' }
    end
    function t.request_all(list)
      local out = {}
      for i = 1, #list do out[i] = t.request() end
      return out
    end
    local inst = assert(rerank.new({ models = { { name = "co", provider = "cohere", api_key = "k",
                                                  base_url = "http://up" } } }, { transport = t }))
    local d, l = forms("co")
    local a, b = bill(inst, "rerankd", d), bill(inst, "rerankd", l)
    assert.are.equal(1, a.usage.search_units)
    assert.are.equal(a.usage.search_units, b.usage.search_units)
    assert.are.equal(a.usage.prompt_tokens, b.usage.prompt_tokens)
    assert.are.equal(1, bill(inst, "rerankd_v1", l).meta.billed_units.search_units)
  end)
end)
