-- End to end: POST /v1/fuse and pipelines inside /v1/rerank on the real daemon.
local d = require "support.daemon"
local cjson = require "cjson"
local R = require "support.fusion_reference"

local FIX = d.root .. "/tests/fixtures/fusion"

local CONFIG = ([[
server: { auth: none, listen: "127.0.0.1:8080" }
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
  - { name: down, provider_file: %s/failing_provider.lua }
fusion: [%s/my_fusion.lua]
pipelines:
  - name: hybrid
    stages:
      - fuse: { method: rrf, k: 60 }
      - rerank: { model: bm25, candidates: 3 }
  - name: fragile
    stages:
      - fuse: rrf
      - rerank: down
      - threshold: { min_score: 0.5 }
  - name: mine
    stages:
      - fuse: { method: best_rank, boost: 2 }
      - top_n: 2
]]):format(FIX, FIX)

local function near(a, b)
  assert(type(b) == "number" and math.abs(a - b) <= 1e-12, ("expected %.17g, got %s"):format(a, tostring(b)))
end

local function ids(j)
  local out = {}
  for i, r in ipairs(j.results) do out[i] = r.id end
  return out
end

local function lists_body(extra)
  local f = assert(io.open(FIX .. "/hybrid_lists.json", "rb"))
  local b = cjson.decode(f:read("*a"))
  f:close()
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

describe("rerankd fusion and pipelines over HTTP", function()
  local srv
  setup(function() srv = assert(d.start(CONFIG, { workers = 1 })) end)
  teardown(function() d.stop(srv) end)

  it("POST /v1/fuse: the issue's example shape", function()
    local status, raw, h, j = d.request(srv, "/v1/fuse", { body = [[
{"method":"rrf","params":{"k":60},"top_n":10,"lists":[
  {"name":"vector","kind":"distance","items":[{"id":"a","score":0.12},{"id":"b","score":0.3}]},
  {"name":"fts","items":[{"id":"b","score":7.1},{"id":"c","score":2}]}]}]] })
    assert.are.equal(200, status, raw)
    assert.truthy(h["x-rerankd-timing"])
    -- a 1/61; b 1/62 + 1/61; c 1/62
    assert.are.same({ "b", "a", "c" }, ids(j))
    near(1 / 62 + 1 / 61, j.results[1].score)
    assert.are.same({ vector = 2, fts = 1 }, j.results[1].ranks)
    assert.are.same({ vector = 0.3, fts = 7.1 }, j.results[1].scores)
    assert.are.same({ vector = 1 }, j.results[2].ranks)
    assert.truthy(raw:find('^{"results":%[{"id":"b","score":'), raw)
  end)

  it("POST /v1/fuse: methods, numeric ids, top_n, empty input", function()
    local _, raw, _, j = d.request(srv, "/v1/fuse", { body = {
      method = "linear", params = { normalize = "min_max", weights = { 0.7, 0.3 } }, top_n = 2,
      lists = { { items = { { id = 1, score = 10 }, { id = 2, score = 0 } } }, { items = { { id = 2, score = 5 } } } } } })
    -- 1: 0.7 × 1; 2: 0.7 × 0 + 0.3 × 1 (one-item list: min_max 1.0)
    assert.are.same({ 1, 2 }, ids(j), raw)
    near(0.7, j.results[1].score)
    near(0.3, j.results[2].score)
    local status
    status, raw = d.request(srv, "/v1/fuse", { body = '{"lists":[]}' })
    assert.are.equal(200, status)
    assert.are.equal('{"results":[]}', raw)
    status, raw = d.request(srv, "/v1/fuse", { body = '{"method":"borda","lists":[[],[]]}' })
    assert.are.equal(200, status)
    assert.are.equal('{"results":[]}', raw)
    -- the operator's method from fusion:
    _, _, _, j = d.request(srv, "/v1/fuse", { body = { method = "best_rank", lists = { { "x", "y" } } } })
    near(0.5, j.results[2].score)
  end)

  it("POST /v1/fuse: errors name the parameter", function()
    local cases = {
      { { lists = { { items = {} }, { items = { { id = "a" }, { id = "b" }, { id = "c" }, { score = 2 } } } } },
        400, "lists[1].items[3].id" },
      { { lists = { { items = { { id = "a", score = "high" } } } } }, 400, "lists[0].items[0].score" },
      { { method = "rff", lists = {} }, 422, "method" },
      { { method = "rrf", params = { k = -1 }, lists = {} }, 422, "params.k" },
      { { method = "linear", params = { normalize = "l2" }, lists = {} }, 422, "params.normalize" },
      { { method = "linear", lists = { { { id = "a" } } } }, 400, "lists[0].items[0].score" },
      { { params = { fusion_file = "/tmp/x.lua" }, lists = {} }, 422, "params.fusion_file" },
      { { lists = { { kind = "l2", items = {} } } }, 422, "lists[0].kind" },
      { { top_n = 0, lists = {} }, 422, "top_n" },
      { {}, 400, "lists" },
    }
    for _, c in ipairs(cases) do
      local status, raw, _, j = d.request(srv, "/v1/fuse", { body = c[1] })
      assert.are.equal(c[2], status, raw)
      assert.are.equal(c[3], j.error.param, raw)
      assert.are.equal("invalid_request_error", j.error.type)
    end
    local status, _, h = d.request(srv, "/v1/fuse")
    assert.are.equal(405, status)
    assert.are.equal("POST", h.allow)
    status = d.request(srv, "/v1/fuse", { body = "{", headers = { ["Content-Type"] = "application/json" } })
    assert.are.equal(400, status)
  end)

  it("/v1/rerank with a configured pipeline and return_score all", function()
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = lists_body({ pipeline = "hybrid", return_score = "all" }) })
    assert.are.equal(200, status, raw)
    assert.are.equal("hybrid", j.model)
    -- rrf: a, c, b, d; candidates 3 reranked by bm25: a matches, c and b score 0 (fused order)
    assert.are.same({ "a", "c", "b" }, ids(j))
    local a = j.results[1]
    near(0.1, a._distance)
    near(6, a.score)
    near(1 / 61 + 1 / 62, a._fused_score)
    near(a.relevance_score, a._relevance_score)
    assert.are.same({ vector = 1, fts = 2 }, a.ranks)
    assert.is_nil(j.degraded)
  end)

  it("/v1/rerank with an inline pipeline, documents and top_n", function()
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = lists_body({
      pipeline = { { fuse = { method = "relative_score" } }, { threshold = { min_score = 0.75 } } },
      return_documents = true, top_n = 1 }) })
    assert.are.equal(200, status, raw)
    -- relative_score: a 1.5, c 1, b 0.5, d 0; >= 0.75: a, c; top_n 1
    assert.are.same({ "a" }, ids(j))
    near(1.5, j.results[1].relevance_score)
    assert.are.equal("cats sleep most of the day", j.results[1].document.text)
    assert.are.equal(0, j.usage.total_tokens)
  end)

  it("a failing rerank stage: fused order, degraded body and header", function()
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body = lists_body({ pipeline = "fragile" }) })
    assert.are.equal(200, status, raw)
    assert.is_true(j.degraded)
    assert.are.equal("true", h["x-rerankd-degraded"])
    assert.are.same({ "a", "c", "b", "d" }, ids(j))
    near(1 / 61 + 1 / 62, j.results[1].relevance_score)
    assert.truthy(d.logtext(srv):find("degraded", 1, true))
    -- a healthy pipeline has no such header
    local status2, _, h2 = d.request(srv, "/v1/rerank", { body = lists_body({ pipeline = "hybrid" }) })
    assert.are.equal(200, status2)
    assert.is_nil(h2["x-rerankd-degraded"])
  end)

  it("a configured operator method and a model naming a pipeline", function()
    local _, raw, _, j = d.request(srv, "/v1/rerank", { body = lists_body({ model = "mine" }) })
    assert.are.same({ "a", "c" }, ids(j), raw)
    near(2, j.results[1].relevance_score)
  end)

  it("pipeline request errors", function()
    local cases = {
      { lists_body({ pipeline = "nope" }), 404, "pipeline" },
      { lists_body({ pipeline = { { fuse = "rrf" }, { rerank = "nope" } } }), 404, "pipeline[1].rerank.model" },
      { lists_body({ pipeline = { { rerank = "bm25" }, { fuse = "rrf" } } }), 422, "pipeline[1].fuse" },
      { lists_body({ pipeline = "hybrid", lists = { { items = { { id = "a", text = "x" }, { text = "y" } } } } }),
        400, "lists[0].items[1].id" },
      { lists_body({ pipeline = "hybrid", lists = { { items = { { id = "a" } } } } }), 400, "lists[0].items[0].text" },
      { lists_body({ pipeline = "hybrid", return_score = "every" }), 422, "return_score" },
    }
    for _, c in ipairs(cases) do
      local status, raw, _, j = d.request(srv, "/v1/rerank", { body = c[1] })
      assert.are.equal(c[2], status, raw)
      assert.are.equal(c[3], j.error.param, raw)
    end
  end)
end)

describe("POST /v1/fuse against the reference (tests/support/fusion_reference.lua)", function()
  local srv
  setup(function()
    srv = assert(d.start("server: { auth: none }\nmodels:\n  - name: bm25\n    provider: bm25\n"))
  end)
  teardown(function() if srv then d.stop(srv) end end)

  it("every method over random lists", function()
    math.randomseed(66)
    for _, method in ipairs(R.METHODS) do
      for trial = 1, 8 do
        local lists = R.random_lists()
        local params = R.random_params(lists, method)
        local body = { method = method, params = params, lists = {} }
        if next(params) == nil then body.params = nil end
        for i, l in ipairs(lists) do
          local items = {}
          for j, it in ipairs(l.items) do items[j] = it end
          body.lists[i] = { name = l.name, kind = l.kind, weight = l.weight,
                            items = setmetatable(items, cjson.array_mt) }
        end
        setmetatable(body.lists, cjson.array_mt)
        if math.random() < 0.2 then body.top_n = math.random(1, 5) end
        local exp = R.reference(lists, method, { k = params.k, rank_base = params.rank_base,
          weights = params.weights, normalize = params.normalize, std = params.std, top_n = body.top_n })
        local st, raw, _, js = d.request(srv, "/v1/fuse", { body = body })
        assert(st == 200, method .. ": " .. tostring(st) .. " " .. raw .. " for " .. R.dump(body))
        R.compare(exp, js.results, method .. " http trial " .. trial .. " body " .. R.dump(body))
      end
    end
  end)

  it("inline pipelines: fuse -> rerank (candidates) -> threshold -> top_n, return_score all", function()
    math.randomseed(67)
    local WORDS = { "cat", "sleep", "dog", "run", "fish", "swim", "day", "night" }
    local methods = { "rrf", "linear", "combsum", "relative_score", "borda", "dbsf" }
    for trial = 1, 15 do
      local lists = R.random_lists({ nonempty = true })
      local texts = {}
      for _, l in ipairs(lists) do
        for _, it in ipairs(l.items) do
          if not texts[it.id] then
            local w = {}
            for k = 1, math.random(1, 4) do w[k] = WORDS[math.random(#WORDS)] end
            texts[it.id] = table.concat(w, " ")
            it.text = texts[it.id] -- the first occurrence carries the text
          end
        end
      end
      local method = methods[math.random(#methods)]
      local fused = R.reference(lists, method, {})
      local cand = math.random(1, 5)
      local min_score = math.random(0, 3) / 4
      local top = math.random(1, 4)
      local body = { query = "cat sleep night", return_score = "all", lists = {},
        pipeline = { { fuse = { method = method } }, { rerank = { model = "bm25", candidates = cand } },
                     { threshold = { min_score = min_score } }, { top_n = top } } }
      for i, l in ipairs(lists) do
        body.lists[i] = { name = l.name, kind = l.kind, weight = l.weight,
                          items = setmetatable(l.items, cjson.array_mt) }
      end
      -- expected: the plain model over the top `cand` fused documents, in fused order
      local docs, fs = {}, {}
      for t = 1, math.min(cand, #fused) do docs[t] = texts[fused[t].id]; fs[t] = fused[t] end
      local _, raw0, _, plain = d.request(srv, "/v1/rerank", { body = { model = "bm25", query = body.query,
        documents = docs } })
      assert(plain, raw0)
      local exp = {}
      for _, r in ipairs(plain.results) do
        if r.relevance_score >= min_score and #exp < top then
          exp[#exp + 1] = { id = fs[r.index + 1].id, rel = r.relevance_score, fused = fs[r.index + 1] }
        end
      end
      local st, raw, _, js = d.request(srv, "/v1/rerank", { body = body })
      assert(st == 200, raw)
      local ctx = method .. " trial " .. trial .. " " .. R.dump(body) .. "\n" .. raw
      assert(#exp == #js.results, ctx)
      for t, e in ipairs(exp) do
        local g = js.results[t]
        assert(g.id == e.id, ctx)
        assert(g.relevance_score == e.rel and g._relevance_score == e.rel, ctx)
        assert(R.close(g._fused_score, e.fused.score), ctx)
        local dist, sim
        for i, l in ipairs(lists) do
          local sc = e.fused.scores[l.name]
          if sc ~= nil then
            if l.kind == "distance" then dist = dist or sc else sim = sim or sc end
          end
          assert(i)
        end
        assert(R.close(g._distance or -1, dist or -1) and R.close(g.score or -1, sim or -1), ctx)
        assert.are.same(e.fused.ranks, g.ranks)
      end
    end
  end)

  it("all-empty gives {\"results\":[]}", function()
    local st, raw = d.request(srv, "/v1/fuse", { body = '{"method":"borda","lists":[{"items":[]},[]]}' })
    assert.are.equal(200, st)
    assert.are.equal('{"results":[]}', raw)
  end)
end)
