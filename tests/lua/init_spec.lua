-- The engine entry (lua/rerank/init.lua): what Instance:rerank returns besides results.
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
