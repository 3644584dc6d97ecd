-- lua/rerank/engine/compare.lua (shadow traffic's ranking comparisons) against hand-computed values.
local c = require "rerank.engine.compare"

local function L(t)
  local out = {}
  for i, x in ipairs(t) do out[i] = { index = x[1], score = x[2] } end
  return out
end
local function near(want, got) assert(math.abs(want - got) < 1e-12, ("want %.15g, got %s"):format(want, tostring(got))) end

describe("ranking comparison", function()
  it("Kendall tau-b on the common documents, ties as scipy.stats.kendalltau", function()
    -- 4 concordant, 2 discordant pairs
    near(1 / 3, c.kendall_tau_b(L{ { 1, 4 }, { 2, 3 }, { 3, 2 }, { 4, 1 } }, L{ { 2, 3 }, { 3, 2 }, { 1, 1 }, { 4, 0 } }))
    -- x = [1, 1, 0], y = [2, 1, 1]: one concordant pair, one tie in each: 1 / sqrt(2 * 2)
    near(0.5, c.kendall_tau_b(L{ { 1, 1 }, { 2, 1 }, { 3, 0 } }, L{ { 1, 2 }, { 2, 1 }, { 3, 1 } }))
    -- documents only one side ranks are left out; reversed order is -1
    near(-1, c.kendall_tau_b(L{ { 1, 3 }, { 2, 2 }, { 7, 1 } }, L{ { 2, 5 }, { 1, 4 }, { 8, 1 } }))
    assert.is_nil(c.kendall_tau_b(L{ { 1, 3 } }, L{ { 1, 1 } }))
    assert.is_nil(c.kendall_tau_b(L{ { 1, 1 }, { 2, 1 } }, L{ { 1, 2 }, { 2, 1 } })) -- one side all tied
  end)

  it("overlap@k, top-1 agreement, score drift", function()
    local a, b = L{ { 1, 0.9 }, { 2, 0.5 }, { 3, 0.1 } }, L{ { 2, 0.7 }, { 1, 0.6 }, { 4, 0.1 } }
    near(1, c.overlap(a, b, 2))
    near(2 / 3, c.overlap(a, b, 3))
    near(2 / 3, c.overlap(a, b, 10)) -- k cut to a's length
    near(1, c.overlap(L{ { 2, 1 } }, b, 10)) -- a's only document is in b's top k
    near(0, c.overlap(L{ { 3, 1 } }, b, 2))
    near(1, c.overlap({}, {}, 10))
    assert.equal(0, c.top1(a, b))
    assert.equal(1, c.top1(a, L{ { 1, 0 } }))
    near((0.3 + 0.2) / 2, c.score_drift(a, b))
    assert.is_nil(c.score_drift(L{ { 1, 1 } }, L{ { 2, 1 } }))
  end)

  it("rank-biased overlap (RBO_ext, p = 0.9)", function()
    local p = 0.9
    -- agreement at depths 1..3: 0, 1, 2/3
    local want = (2 / 3) * p ^ 3 + (1 - p) / p * (0 * p + 1 * p ^ 2 + (2 / 3) * p ^ 3)
    near(want, c.rbo(L{ { 1, 3 }, { 2, 2 }, { 3, 1 } }, L{ { 2, 3 }, { 1, 2 }, { 4, 1 } }, p))
    near(1, c.rbo(L{ { 1, 3 }, { 2, 2 } }, L{ { 1, 9 }, { 2, 1 } }, p))
    near(0, c.rbo(L{ { 1, 3 }, { 2, 2 } }, L{ { 3, 9 }, { 4, 1 } }, p))
  end)
end)

describe("ranking comparison bounds", function()
  it("Kendall tau-b reads at most MAX_TAU common documents", function()
    local a, b = {}, {}
    for i = 1, 3000 do
      a[i] = { index = i, score = -i }
      -- b agrees on the first 1000 documents and reverses the rest
      b[i] = { index = i, score = i <= 1000 and -i or i }
    end
    assert.equal(1, c.kendall_tau_b(a, b))
  end)
end)
