-- Semantic health (rerank.daemon.health): per-model probes and their verdicts.
local health = require "rerank.daemon.health"

describe("health", function()
  local function inst(models, scorer)
    return { cfg = { models = models }, score = function(_, model, req, report)
      assert.is_nil(report) -- the provider alone: no cache, no request report
      return scorer(model, req)
    end }
  end

  it("parses deep=1", function()
    assert.is_true(health.wants_deep("deep=1"))
    assert.is_true(health.wants_deep("x=2&deep=true"))
    assert.is_true(health.wants_deep("deep"))
    assert.is_false(health.wants_deep("deep=0"))
    assert.is_false(health.wants_deep(""))
    assert.is_false(health.wants_deep(nil))
    assert.is_false(health.wants_deep("deeper=1"))
  end)

  it("passes when relevant > irrelevant, reports failures and keeps the last error", function()
    local answers = {
      good = function() return { 0.9, 0.1 }, {}, false end,
      flipped = function() return { 0.1, 0.9 }, {}, false end,
      down = function() return nil, { status = 502, message = "upstream unreachable" } end,
      raises = function() error("boom") end,
      degraded = function() return { 0.9, -math.huge }, {}, true end,
    }
    local models = {}
    for _, n in ipairs({ "good", "flipped", "down", "raises", "degraded" }) do
      models[#models + 1] = { name = n, provider = "p" }
    end
    models[#models + 1] = { name = "off", provider = "p", health = false }
    local seen
    local i = inst(models, function(model, req)
      seen = req
      return answers[model.name](model, req)
    end)
    local ok, report = health.deep(i)
    assert.is_false(ok)
    local by = {}
    for _, r in ipairs(report) do by[r.name] = r end
    assert.is_true(by.good.ok)
    assert.are.same({ 0.9, 0.1 }, { by.good.relevant, by.good.irrelevant })
    assert.is_number(by.good.latency_ms)
    assert.is_nil(by.good.error)
    assert.is_false(by.flipped.ok)
    assert.truthy(by.flipped.error:find("did not score higher", 1, true))
    assert.are.equal("upstream unreachable", by.down.error)
    assert.truthy(by.raises.error:find("boom", 1, true))
    assert.truthy(by.degraded.error:find("degraded", 1, true))
    assert.is_true(by.off.skipped)
    assert.are.equal(health.DEFAULT.query, seen.query)
    -- a later pass keeps the last error and when it happened
    answers.down = answers.good
    local _, again = health.deep(i)
    for _, r in ipairs(again) do by[r.name] = r end
    assert.is_true(by.down.ok)
    assert.are.equal("upstream unreachable", by.down.last_error)
    assert.is_number(by.down.last_error_at)
  end)

  it("uses the model's own triple", function()
    local seen
    local i = inst({ { name = "m", provider = "p", health = { query = "qq", relevant = "rr" } } }, function(_, req)
      seen = req
      return { 2, 1 }, {}, false
    end)
    local ok = health.deep(i)
    assert.is_true(ok)
    assert.are.equal("qq", seen.query)
    assert.are.same({ "rr", health.DEFAULT.irrelevant }, { seen.documents[1].text, seen.documents[2].text })
  end)
end)

describe("GET /health?deep=1 rate limit", function()
  it("lets one deep check start per interval", function()
    local t = 1e6
    assert.is_nil(health.admit(t))
    local wait = health.admit(t + 1)
    assert.is_true(wait >= 1 and wait <= health.DEEP_INTERVAL)
    assert.is_nil(health.admit(t + health.DEEP_INTERVAL + 0.1))
  end)
end)
