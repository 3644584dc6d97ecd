-- The engine instance (lua/rerank/engine/instance.lua): Instance:score, the provider call and
-- the check every provider answer passes; what Instance:rerank returns besides results.
local metrics = require "rerank.daemon.metrics"

describe("Instance:rerank reports upstream and cache status as values", function()
  local rerank = require "rerank"
  local ANSWER = '{"results":[{"index":0,"relevance_score":0.9},{"index":1,"relevance_score":0.1}]}'

  -- a transport whose answers come from a list, one per call ({status, body})
  local function transport(answers)
    local t = { calls = 0 }
    function t.request()
      t.calls = t.calls + 1
      local a = answers[math.min(t.calls, #answers)]
      return { status = a[1], headers = {}, body = a[2] }
    end
    function t.request_all(list)
      local out = {}
      for i = 1, #list do out[i] = t.request() end
      return out
    end
    return t
  end

  local function instance(t, extra)
    local cfg = { models = { { name = "co", provider = "cohere", api_key = "k", base_url = "http://up" } } }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return assert(rerank.new(cfg, { transport = t }))
  end

  before_each(function() metrics.reset() end)

  it("returns the last upstream answer's status and the cache status in the result", function()
    local t = transport({ { 200, ANSWER } })
    local inst = instance(t, { cache = { size = 1e6 } })
    local body = { model = "co", query = "q", documents = { "a", "b" } }
    local res = assert(inst:rerank(body))
    assert.are.equal(200, res.upstream_status)
    assert.are.equal("miss", res.cache)
    res = assert(inst:rerank(body)) -- every pair cached: no upstream call
    assert.is_nil(res.upstream_status)
    assert.are.equal("hit", res.cache)
    assert.are.equal(1, t.calls)
    res = assert(instance(t):rerank(body)) -- no cache configured: not consulted
    assert.is_nil(res.cache)
  end)

  it("returns them in the error, the upstream's own status first", function()
    local inst = instance(transport({ { 503, '{"message":"busy"}' } }), { cache = { size = 1e6 } })
    local _, err = inst:rerank({ model = "co", query = "q", documents = { "a", "b" } })
    assert.are.equal(503, err.upstream_status)
    assert.are.equal("miss", err.cache)
    -- an answer that cannot be read: the error has no HTTP status of its own; the last seen is 200
    inst = instance(transport({ { 200, "not json" } }))
    _, err = inst:rerank({ model = "co", query = "q", documents = { "a", "b" } })
    assert.are.equal(502, err.status)
    assert.are.equal(200, err.upstream_status)
    assert.is_nil(err.cache)
  end)
end)

describe("Instance:score checks every provider answer", function()
  local rerank = require "rerank"

  -- an instance whose one model's provider answers `out` (a function of the request)
  local function scoring(answer)
    local inst = assert(rerank.new({ models = { { name = "m", provider = "bm25" } } }))
    inst.providers.m = { name = "fake", score = function(_, req) return answer(req) end }
    return inst, inst.cfg.models[1]
  end
  local function req(n, top_n)
    local docs = {}
    for i = 1, n do docs[i] = { text = "d" .. i } end
    return { query = "q", documents = docs, top_n = top_n }
  end

  it("reads scores or results (index, score or relevance_score) into document order", function()
    local inst, m = scoring(function() return { scores = { 0.5, 0.25 }, usage = { prompt_tokens = 3 } } end)
    local s, u, degraded = inst:score(m, req(2))
    assert.are.same({ 0.5, 0.25 }, s)
    assert.are.same({ prompt_tokens = 3 }, u)
    assert.is_false(degraded)
    inst, m = scoring(function() return { results = { { index = 1, score = 2 }, { index = 0, relevance_score = 1 } } } end)
    s = inst:score(m, req(2))
    assert.are.same({ 1, 2 }, s)
  end)

  it("keeps the provider's score table only when it is exactly n numbers", function()
    local given = { 0.5, 0.25 }
    local inst, m = scoring(function() return { scores = given } end)
    assert.equals(given, (inst:score(m, req(2)))) -- no copy
    given = { 0.5, 0.25, 0.125 } -- one more than the documents: cut to n, a copy
    local s = inst:score(m, req(2))
    assert.are.same({ 0.5, 0.25 }, s)
    assert.are_not.equal(given, s)
    assert.equals(3, #given)
    given = { 0.5, "x" } -- not a number: missing (-inf), in a copy; the provider's table stays
    local s2, _, degraded = inst:score(m, req(2))
    assert.are.same({ 0.5, -math.huge }, s2)
    assert.is_true(degraded)
    assert.are.same({ 0.5, "x" }, given)
  end)

  it("answers nothing for no documents without calling the provider", function()
    local inst, m = scoring(function() error("not called") end)
    local s, u, degraded = inst:score(m, req(0))
    assert.are.same({}, s)
    assert.are.same({}, u)
    assert.is_false(degraded)
  end)

  it("refuses (502) a score that is not finite, an index out of range, an index twice", function()
    local cases = {
      { { scores = { 1, 0 / 0 } }, "the score of document 1 is not a finite number" },
      { { results = { { index = 0, score = math.huge } } }, "the score of document 0 is not a finite number" },
      { { results = { { index = 2, score = 1 } } }, "results[0].index is not a document index (0..1)" },
      { { results = { { index = 0.5, score = 1 } } }, "results[0].index is not a document index (0..1)" },
      { { results = { { index = 1, score = 1 }, { index = 1, score = 2 } } }, "document 1 is scored twice" },
    }
    for _, c in ipairs(cases) do
      local inst, m = scoring(function() return c[1] end)
      local s, err = inst:score(m, req(2))
      assert.is_nil(s)
      assert.are.equal(502, err.status)
      assert.are.equal('provider "bm25": upstream answer refused: ' .. c[2], err.message)
    end
    local inst, m = scoring(function() return { usage = {} } end)
    local _, err = inst:score(m, req(2))
    assert.are.equal(502, err.status)
    assert.matches("neither scores nor results", err.message)
  end)

  it("ranks a missing score last (-inf) and says degraded, unless top_n cut it", function()
    local inst, m = scoring(function() return { results = { { index = 1, score = 0.75 } } } end)
    local s, _, degraded = inst:score(m, req(2))
    assert.are.same({ -math.huge, 0.75 }, s)
    assert.is_true(degraded)
    _, _, degraded = inst:score(m, req(2, 1))
    assert.is_false(degraded)
  end)

  it("a provider that fails is a 502; one that raises a 500", function()
    local inst, m = scoring(function() return nil, "no luck" end)
    local _, err = inst:score(m, req(1))
    assert.are.equal(502, err.status)
    assert.matches("no luck", err.message, 1, true)
    inst, m = scoring(function() error("boom") end)
    _, err = inst:score(m, req(1))
    assert.are.equal(500, err.status)
  end)

  it("Instance:rerank gives a missing score the answer's lowest and marks it degraded", function()
    local inst = scoring(function() return { results = { { index = 1, score = 0.75 }, { index = 2, score = 0.5 } } } end)
    local res = assert(inst:rerank({ model = "m", query = "q", documents = { "a", "b", "c" } }))
    assert.are.same({ 1, 2, 0 }, { res.results[1].index, res.results[2].index, res.results[3].index })
    assert.are.equal(0.5, res.results[3].relevance_score)
    assert.is_true(res.degraded)
  end)
end)
