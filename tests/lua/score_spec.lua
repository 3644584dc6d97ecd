-- lua/rerank/score.lua: calibration specs, the calibrations, kind conversions, Platt fitting;
-- and the score layer through the library (config defaults from a provider, "none").
local score = require "rerank.score"
local rerank = require "rerank"
local paths = require "rerank.config.paths"

local HERE = paths.dirname(paths.abs(debug.getinfo(1, "S").source:sub(2)))
local REPO = paths.normalize(HERE .. "/../..")
local FIXPROV = REPO .. "/tests/fixtures/config/providers"

local function near(a, b, eps) return math.abs(a - b) <= (eps or 1e-12) end
local function sigmoid(x) return 1 / (1 + math.exp(-x)) end

describe("score.check_spec", function()
  it("accepts every documented form", function()
    assert.is_nil(score.check_spec("none"))
    assert.is_nil(score.check_spec(nil))
    assert.are.same({ method = "sigmoid" }, score.check_spec("sigmoid"))
    assert.are.same({ method = "sigmoid", scale = 5 }, score.check_spec({ sigmoid = { scale = 5 } }))
    assert.are.same({ method = "shifted_sigmoid", a = 2, b = 0.5 }, score.check_spec({ shifted_sigmoid = { a = 2, b = 0.5 } }))
    assert.are.same({ method = "platt", a = -1.5, b = 0.25 }, score.check_spec({ platt = { a = -1.5, b = 0.25 } }))
  end)

  it("refuses what cannot be meant, with the reason", function()
    local function err(v, kind) return select(2, score.check_spec(v, kind)) end
    assert.truthy(err("minmax"):find('unknown calibration "minmax"', 1, true))
    assert.truthy(err({ sigmoid = { scale = -1 } }):find("sigmoid.scale must be > 0", 1, true))
    assert.truthy(err({ sigmoid = { temperature = 2 } }):find("unknown parameter temperature", 1, true))
    assert.truthy(err({ shifted_sigmoid = { a = 1 } }):find("shifted_sigmoid.b is required", 1, true))
    assert.truthy(err({ platt = { a = 0, b = 1 } }):find("platt.a must not be 0", 1, true))
    assert.truthy(err({ platt = { a = 1, b = 1 / 0 } }):find("platt.b must be a finite number", 1, true))
    assert.truthy(err({ sigmoid = {}, platt = {} }):find("one of", 1, true))
    -- never a sigmoid over a probability; a fitted Platt map is the user's choice
    assert.truthy(err("sigmoid", "probability"):find("never passed through a sigmoid", 1, true))
    assert.truthy(err({ shifted_sigmoid = { a = 0, b = 1 } }, "probability"))
    assert.is_nil(err({ platt = { a = 4, b = -2 } }, "probability"))
    assert.is_nil(err("sigmoid", "logit"))
  end)
end)

describe("score.apply", function()
  it("computes each calibration", function()
    assert.are.equal(3, score.apply(nil, 3))
    assert.is_true(near(sigmoid(2), score.apply({ method = "sigmoid" }, 2)))
    assert.is_true(near(sigmoid(2 / 5), score.apply({ method = "sigmoid", scale = 5 }, 2)))
    assert.is_true(near(0.5, score.apply({ method = "shifted_sigmoid", a = 3, b = 2 }, 3)))
    assert.is_true(near(sigmoid(1), score.apply({ method = "shifted_sigmoid", a = 3, b = 2 }, 5)))
    assert.is_true(near(sigmoid(2 * 1.5 - 1), score.apply({ method = "platt", a = 2, b = -1 }, 1.5)))
  end)

  it("stays finite and exact at the extremes; a missing score stays missing", function()
    assert.are.equal(0, score.apply({ method = "sigmoid" }, -1000))
    assert.are.equal(1, score.apply({ method = "sigmoid" }, 1000))
    assert.are.equal(-math.huge, score.apply({ method = "sigmoid" }, -math.huge))
  end)
end)

describe("score.probability / score.logit", function()
  it("converts by kind and calibration", function()
    assert.are.equal(0.25, score.probability(0.25, "probability"))
    assert.is_true(near(sigmoid(1.5), score.probability(1.5, "logit")))
    assert.is_nil(score.probability(12.5, "bm25"))
    assert.are.equal(1.5, score.logit(1.5, "logit"))
    assert.is_true(near(0, score.logit(0.5, "probability")))
    assert.is_true(near(math.log(3), score.logit(0.75, "probability")))
    assert.is_true(score.logit(1, "probability") > 30) -- clamped: finite
    assert.is_true(score.logit(0, "probability") < -30)
    assert.is_nil(score.logit(3, "fused"))
    -- with a calibration: the calibrated probability and its logit
    local cal = { method = "platt", a = 0.5, b = 0 }
    assert.is_true(near(sigmoid(2), score.probability(4, "logit", cal)))
    assert.is_true(near(2, score.logit(4, "logit", cal), 1e-9))
  end)
end)

describe("score.fit_platt", function()
  -- labels drawn exactly in proportion to sigmoid(a * x + b) on a grid
  local function synthetic(a, b)
    local list = {}
    for x = -4, 4, 0.5 do
      local pos = math.floor(sigmoid(a * x + b) * 200 + 0.5)
      for k = 1, 200 do list[#list + 1] = { x, k <= pos and 1 or 0 } end
    end
    return list
  end

  it("recovers the parameters that generated the labels", function()
    local fit = assert(score.fit_platt(synthetic(0.8, -1)))
    assert.is_true(math.abs(fit.a - 0.8) < 0.02, tostring(fit.a))
    assert.is_true(math.abs(fit.b + 1) < 0.02, tostring(fit.b))
    fit = assert(score.fit_platt(synthetic(-2, 0.5)))
    assert.is_true(math.abs(fit.a + 2) < 0.05, tostring(fit.a))
    -- the result is a valid calibration spec
    assert.are.same({ method = "platt", a = fit.a, b = fit.b }, score.check_spec({ platt = fit }))
  end)

  it("takes {score=, label=} records and booleans", function()
    local fit = assert(score.fit_platt({ { score = 2, label = true }, { score = 1.5, label = true },
                                         { score = -1, label = false }, { score = 0.5, label = false } }))
    assert.is_true(fit.a > 0)
  end)

  it("refuses unusable input", function()
    local _, err = score.fit_platt({ { 1, 1 }, { 2, 1 } })
    assert.truthy(err:find("at least one relevant (1) and one irrelevant (0)", 1, true))
    _, err = score.fit_platt({ { 1, 2 } })
    assert.truthy(err:find("label must be 0 or 1", 1, true))
    _, err = score.fit_platt({ { 0 / 0, 1 } })
    assert.truthy(err:find("no finite score", 1, true))
  end)
end)

describe("the score layer through the library", function()
  local function new(models)
    return assert(rerank.new({ paths = { providers = { FIXPROV, REPO .. "/providers" } }, models = models }))
  end

  it("applies a provider's default calibration, which score.calibrate: none switches off", function()
    local r = new({ { name = "z", provider = "zscaled" },
                    { name = "zraw", provider = "zscaled", score = { calibrate = "none" } } })
    local docs = { "abcde", "abcdefghij", "a" }
    local res = assert(r:rerank({ model = "z", query = "q", documents = docs, return_score = "all" }))
    assert.are.equal(1, res.results[1].index)
    assert.are.equal(10, res.results[1].raw_score)
    assert.is_true(near(sigmoid(10 / 5), res.results[1].relevance_score))
    assert.are.equal("logit", res.results[1].score_kind)
    res = assert(r:rerank({ model = "zraw", query = "q", documents = docs }))
    assert.are.equal(10, res.results[1].relevance_score)
    assert.is_nil(res.results[1].calibrated_score)
  end)

  it("min_score cuts on the calibrated score; the kind in config overrides the provider's", function()
    local r = new({ { name = "z", provider = "zscaled",
                      score = { kind = "unknown", calibrate = { platt = { a = 1, b = -5 } } } } })
    local res = assert(r:rerank({ model = "z", query = "q", documents = { "abcdef", "abcd", "abcdefghij" }, min_score = 0.5 }))
    assert.are.equal(2, #res.results) -- sigmoid(6 - 5) and sigmoid(10 - 5) pass, sigmoid(4 - 5) does not
    assert.are.equal("unknown", res.scoring.kind)
    assert.are.same({ 2, 0 }, { res.results[1].index, res.results[2].index })
  end)
end)
