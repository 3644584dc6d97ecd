-- rerank.fuse and lua/rerank/fusion/*.lua: every method computed by hand on small lists.
local fuse = require "rerank.fuse"
local rerank = require "rerank"
local paths = require "rerank.config.paths"
local R = require "support.fusion_reference"

local HERE = paths.dirname(paths.abs(debug.getinfo(1, "S").source:sub(2)))
local FIX = paths.normalize(HERE .. "/../fixtures/fusion")

local EPS = 1e-12

local function run(lists, opts)
  local res, err = fuse.run(lists, opts)
  assert(res, err and err.message)
  return res
end

local function ids(res)
  local out = {}
  for i, r in ipairs(res) do out[i] = r.id end
  return out
end

local function by_id(res)
  local out = {}
  for _, r in ipairs(res) do out[r.id] = r.score end
  return out
end

local function near(expected, got, what)
  assert(type(got) == "number", (what or "") .. ": no score")
  assert(math.abs(expected - got) <= EPS * math.max(1, math.abs(expected)),
    ("%s: expected %.17g, got %.17g"):format(what or "score", expected, got))
end

local function scores_are(expected, res)
  local got = by_id(res)
  local n = 0
  for id, v in pairs(expected) do
    near(v, got[id], tostring(id))
    n = n + 1
  end
  assert.are.equal(n, #res)
end

local function err_of(lists, opts)
  local res, err = fuse.run(lists, opts)
  assert.is_nil(res)
  return err
end

-- Data set A: a distance list and a similarity list.
--   v (distance): a 0.1, b 0.4, c 0.7   -> similarities 1 - d: a 0.9, b 0.6, c 0.3
--   t:            c 9,   a 6,   d 3
-- Union in order of first appearance: a, b, c, d. Best 0-based positions: a 0, b 1, c 0, d 2.
local function A()
  return {
    { name = "v", kind = "distance",
      items = { { id = "a", score = 0.1 }, { id = "b", score = 0.4 }, { id = "c", score = 0.7 } } },
    { name = "t", items = { { id = "c", score = 9 }, { id = "a", score = 6 }, { id = "d", score = 3 } } },
  }
end

-- Data set B: uneven scores, a 3-item and a 2-item list.
--   x: p 10, q 4, r 1
--   y: r 0.8, s 0.5
local function B()
  return {
    { name = "x", items = { { id = "p", score = 10 }, { id = "q", score = 4 }, { id = "r", score = 1 } } },
    { name = "y", items = { { id = "r", score = 0.8 }, { id = "s", score = 0.5 } } },
  }
end

describe("rrf", function()
  it("sums 1/(k + rank) with k = 60, ranks from 1", function()
    local res = run(A(), { method = "rrf" })
    -- a: 1/61 + 1/62; b: 1/62; c: 1/63 + 1/61; d: 1/63
    scores_are({ a = 1 / 61 + 1 / 62, b = 1 / 62, c = 1 / 63 + 1 / 61, d = 1 / 63 }, res)
    assert.are.same({ "a", "c", "b", "d" }, ids(res))
  end)

  it("is the default method", function()
    assert.are.same(ids(run(A(), { method = "rrf" })), ids(run(A(), {})))
  end)

  it("takes k (any number >= 0) and rank_base 0", function()
    -- k = 0: a 1/1 + 1/2 = 1.5, b 1/2, c 1/3 + 1/1, d 1/3
    scores_are({ a = 1.5, b = 0.5, c = 1 / 3 + 1, d = 1 / 3 }, run(A(), { method = "rrf", k = 0 }))
    -- rank_base 0, k 60: ranks 0,1,2 -> a 1/60 + 1/61, b 1/61, c 1/62 + 1/60, d 1/62
    scores_are({ a = 1 / 60 + 1 / 61, b = 1 / 61, c = 1 / 62 + 1 / 60, d = 1 / 62 },
      run(A(), { method = "rrf", rank_base = 0 }))
    -- k 2.5: a 1/3.5 + 1/4.5
    near(1 / 3.5 + 1 / 4.5, by_id(run(A(), { method = "rrf", k = 2.5 })).a)
  end)

  it("refuses k = 0 with rank_base 0 (1/0)", function()
    local err = err_of(A(), { method = "rrf", k = 0, rank_base = 0 })
    assert.are.equal(422, err.status)
    assert.are.equal("k", err.param)
    assert.truthy(err.message:find("rank_base", 1, true))
  end)

  it("multiplies by weights (array, by name, per list)", function()
    -- weights v 2, t 1: a 2/61 + 1/62, b 2/62, c 2/63 + 1/61, d 1/63
    local want = { a = 2 / 61 + 1 / 62, b = 2 / 62, c = 2 / 63 + 1 / 61, d = 1 / 63 }
    scores_are(want, run(A(), { method = "rrf", weights = { 2, 1 } }))
    scores_are(want, run(A(), { method = "rrf", weights = { v = 2 } }))
    local l = A()
    l[1].weight = 2
    scores_are(want, run(l, { method = "rrf" }))
    -- weight 0 silences a list: a 1/62, c 1/61, d 1/63, b 0 (still returned)
    local res = run(A(), { method = "rrf", weights = { 0, 1 } })
    scores_are({ a = 1 / 62, b = 0, c = 1 / 61, d = 1 / 63 }, res)
    assert.are.same({ "c", "a", "d", "b" }, ids(res))
  end)

  it("uses the list order of a distance list as given", function()
    -- distances out of order on purpose: rank-based methods ignore the values
    local res = run({ { kind = "distance", items = { { id = "far", score = 0.9 }, { id = "near", score = 0.1 } } } },
      { method = "rrf" })
    assert.are.same({ "far", "near" }, ids(res))
  end)

  it("gives nothing for a missing document and handles empty lists", function()
    scores_are({ a = 1 / 61 }, run({ {}, { { id = "a" } } }, { method = "rrf" }))
    assert.are.same({}, run({}, { method = "rrf" }))
    assert.are.same({}, run({ {}, {} }, { method = "rrf" }))
    assert.are.same({}, run({ { items = {} } }, { method = "linear" }))
  end)

  it("breaks exact ties by best rank, then first appearance", function()
    -- x: 1/61 + 1/62, y: 1/62 + 1/61 (equal); both best rank 1 -> x first (first seen)
    local res = run({ { { id = "x" }, { id = "y" } }, { { id = "y" }, { id = "x" } } }, { method = "rrf" })
    assert.are.same({ "x", "y" }, ids(res))
    assert.are.equal(res[1].score, res[2].score)
    -- u only in list 0 at rank 2, w only in list 1 at rank 2: both 1/62; u first seen
    res = run({ { { id = "s" }, { id = "u" } }, { { id = "t" }, { id = "w" } } }, { method = "rrf" })
    assert.are.same({ "s", "t", "u", "w" }, ids(res))
  end)

  it("treats sums equal up to rounding as ties (three lists, ranks permuted)", function()
    -- each of x, y, z has ranks {1, 2, 3}: the sums differ at most in the last bits
    local l = {
      { { id = "x" }, { id = "y" }, { id = "z" } },
      { { id = "y" }, { id = "z" }, { id = "x" } },
      { { id = "z" }, { id = "x" }, { id = "y" } },
    }
    local res = run(l, { method = "rrf" })
    assert.are.same({ "x", "y", "z" }, ids(res))
    near(1 / 61 + 1 / 62 + 1 / 63, res[3].score)
    assert.are.same({ "x" }, ids(run(l, { method = "rrf", top_n = 1 })))
  end)

  it("carries ranks (1-based positions) and the input scores per list", function()
    local res = run(A(), { method = "rrf", rank_base = 0 })
    assert.are.same({ v = 1, t = 2 }, res[1].ranks)    -- a
    assert.are.same({ v = 0.1, t = 6 }, res[1].scores) -- distances as given
    assert.are.same({ t = 3 }, res[4].ranks)           -- d
    -- unnamed lists are named by their 0-based position
    res = run({ { { id = "a", score = 1 } }, { { id = "a" } } }, { method = "rrf" })
    assert.are.same({ ["0"] = 1, ["1"] = 1 }, res[1].ranks)
    assert.are.same({ ["0"] = 1 }, res[1].scores)
  end)

  it("applies top_n after ordering", function()
    assert.are.same({ "a", "c" }, ids(run(A(), { method = "rrf", top_n = 2 })))
    assert.are.same({ "a", "c", "b", "d" }, ids(run(A(), { method = "rrf", top_n = 10 })))
  end)
end)

describe("relative_score", function()
  it("min-max normalises each list, then sums with weights", function()
    -- v sims 0.9, 0.6, 0.3 -> a 1, b 0.5, c 0; t 9, 6, 3 -> c 1, a 0.5, d 0
    -- a 1.5, b 0.5, c 1, d 0
    local res = run(A(), { method = "relative_score" })
    scores_are({ a = 1.5, b = 0.5, c = 1, d = 0 }, res)
    assert.are.same({ "a", "c", "b", "d" }, ids(res))
    -- weights 0.7 / 0.3: a 0.7 + 0.15, b 0.35, c 0.3, d 0
    scores_are({ a = 0.7 * 1 + 0.3 * 0.5, b = 0.7 * 0.5, c = 0.3, d = 0 },
      run(A(), { method = "relative_score", weights = { 0.7, 0.3 } }))
  end)

  it("gives each document of a list whose max == min exactly its weight", function()
    -- one-item list (weight 2) and an all-equal list (weight 0.5)
    local res = run({ { weight = 2, items = { { id = "a", score = 3 } } },
                      { weight = 0.5, items = { { id = "b", score = 7 }, { id = "c", score = 7 } } } },
      { method = "relative_score" })
    scores_are({ a = 2, b = 0.5, c = 0.5 }, res)
    assert.are.same({ "a", "b", "c" }, ids(res))
  end)

  it("needs scores", function()
    local err = err_of({ { { id = "a", score = 1 }, { id = "b" } } }, { method = "relative_score" })
    assert.are.equal(400, err.status)
    assert.are.equal("lists[0].items[1].score", err.param)
  end)
end)

describe("linear", function()
  it("defaults to min_max (same as relative_score)", function()
    scores_are({ a = 1.5, b = 0.5, c = 1, d = 0 }, run(A(), { method = "linear" }))
  end)

  it("normalize = none: weighted sum of similarities (1 - d for distance lists)", function()
    -- a 0.9 + 6, b 0.6, c 0.3 + 9, d 3
    local res = run(A(), { method = "linear", normalize = "none" })
    scores_are({ a = (1 - 0.1) + 6, b = 1 - 0.4, c = (1 - 0.7) + 9, d = 3 }, res)
    assert.are.same({ "c", "a", "d", "b" }, ids(res))
  end)

  it("normalize = min_max: ties by best rank", function()
    -- x: (s - 1) / 9 -> p 1, q 1/3, r 0; y: (s - 0.5) / 0.3 -> r 1, s 0
    -- p 1, q 1/3, r 1, s 0: p and r tie at 1, both best rank 1 -> p (seen first)
    local res = run(B(), { method = "linear", normalize = "min_max" })
    scores_are({ p = 1, q = 1 / 3, r = 1, s = 0 }, res)
    assert.are.same({ "p", "r", "q", "s" }, ids(res))
  end)

  it("normalize = max: s / max", function()
    -- x / 10: p 1, q 0.4, r 0.1; y / 0.8: r 1, s 0.625 -> r 1.1
    local res = run(B(), { method = "linear", normalize = "max" })
    scores_are({ p = 1, q = 0.4, r = 0.1 + 1, s = 0.625 }, res)
    assert.are.same({ "r", "p", "s", "q" }, ids(res))
  end)

  it("normalize = sum: (s - min) / Σ(s - min)", function()
    -- x: 9, 3, 0 over 12 -> p 0.75, q 0.25, r 0; y: 0.3, 0 over 0.3 -> r 1, s 0
    local res = run(B(), { method = "linear", normalize = "sum" })
    scores_are({ p = 0.75, q = 0.25, r = 1, s = 0 }, res)
    assert.are.same({ "r", "p", "q", "s" }, ids(res))
    -- all equal (Σ = 0): 1/n each
    scores_are({ a = 0.5, b = 0.5 }, run({ { { id = "a", score = 2 }, { id = "b", score = 2 } } },
      { method = "linear", normalize = "sum" }))
  end)

  it("normalize = z_score: population std by default", function()
    -- x: mean 5, deviations 5, -1, -4, population variance 42/3 = 14
    -- y: mean 0.65, deviations ±0.15, population variance 0.0225 -> std 0.15 -> r 1, s -1
    local sx = math.sqrt(14)
    local res = run(B(), { method = "linear", normalize = "z_score" })
    scores_are({ p = 5 / sx, q = -1 / sx, r = -4 / sx + 0.15 / 0.15, s = -0.15 / 0.15 }, res)
    assert.are.same({ "p", "r", "q", "s" }, ids(res))
  end)

  it("normalize = z_score, std = sample: n - 1", function()
    -- x: sample variance 42/2 = 21; y: sample variance 0.045
    local sx, sy = math.sqrt(21), math.sqrt(0.045)
    local res = run(B(), { method = "linear", normalize = "z_score", std = "sample" })
    scores_are({ p = 5 / sx, q = -1 / sx, r = -4 / sx + 0.15 / sy, s = -0.15 / sy }, res)
    assert.are.same({ "p", "r", "q", "s" }, ids(res))
  end)

  it("z_score of a single item or an all-equal list is 0", function()
    scores_are({ a = 0, b = 0, c = 0 }, run({ { { id = "a", score = 3 } }, { { id = "b", score = 1 }, { id = "c", score = 1 } } },
      { method = "linear", normalize = "z_score", std = "sample" }))
  end)

  it("z_score on a distance list inverts first; near-zero sums tie by best rank", function()
    -- v sims 0.9, 0.6, 0.3: mean 0.6, pop std sqrt(0.06) -> a +z, b 0, c -z (z = 0.3/sqrt(0.06))
    -- t 9, 6, 3: mean 6, pop std sqrt(6) -> c +z, a 0, d -z (same z = 3/sqrt(6))
    -- a z, b 0, c -z + z (0 up to rounding), d -z: c (best rank 1) before b (best rank 2)
    local z = 3 / math.sqrt(6)
    local res = run(A(), { method = "linear", normalize = "z_score" })
    local s = by_id(res)
    near(z, s.a, "a")
    near(0, s.b, "b")
    near(0, s.c, "c")
    near(-z, s.d, "d")
    assert.are.same({ "a", "c", "b", "d" }, ids(res))
  end)

  it("normalize = rank: 1 - i/n from the list order (no scores needed)", function()
    -- x: 1, 2/3, 1/3; y: 1, 1/2 -> p 1, q 2/3, r 1/3 + 1, s 1/2
    local res = run(B(), { method = "linear", normalize = "rank" })
    scores_are({ p = 1, q = 2 / 3, r = 1 / 3 + 1, s = 0.5 }, res)
    assert.are.same({ "r", "p", "q", "s" }, ids(res))
    res = run({ { "a", "b" }, { "b" } }, { method = "linear", normalize = "rank" })
    scores_are({ a = 1, b = 0.5 + 1 }, res)
  end)

  it("min_max of one item or all-equal scores gives 1.0", function()
    scores_are({ a = 1, b = 1, c = 1 }, run({ { { id = "a", score = 3 } }, { { id = "b", score = 1 }, { id = "c", score = 1 } } },
      { method = "linear", normalize = "min_max" }))
  end)

  it("rejects an unknown normalize with a did-you-mean", function()
    local err = err_of(A(), { method = "linear", normalize = "minmax" })
    assert.are.equal(422, err.status)
    assert.are.equal("normalize", err.param)
    assert.truthy(err.message:find('did you mean "min_max"', 1, true), err.message)
  end)
end)

describe("dbsf", function()
  it("normalises with mean ± 3 sample std, then sums", function()
    -- x: mean 5, sample std sqrt(21): (s - (5 - 3 sqrt21)) / (6 sqrt21)
    -- y: mean 0.65, sample std sqrt(0.045)
    local sx, sy = math.sqrt(21), math.sqrt(0.045)
    local function nx(s) return (s - (5 - 3 * sx)) / ((5 + 3 * sx) - (5 - 3 * sx)) end
    local function ny(s) return (s - (0.65 - 3 * sy)) / ((0.65 + 3 * sy) - (0.65 - 3 * sy)) end
    local res = run(B(), { method = "dbsf" })
    -- p ≈ 0.6818, q ≈ 0.4636, r ≈ 0.3545 + 0.6179 = 0.9724, s ≈ 0.3821
    scores_are({ p = nx(10), q = nx(4), r = nx(1) + ny(0.8), s = ny(0.5) }, res)
    assert.are.same({ "r", "p", "q", "s" }, ids(res))
    near(0.5 + (5 / sx) / 6, by_id(res).p) -- = 0.5 + z/6
  end)

  it("gives 0.5 for a single-item or zero-variance list", function()
    scores_are({ a = 0.5, b = 0.5 + 2 * 0.5, c = 2 * 0.5 },
      run({ { { id = "a", score = 42 } }, { weight = 2, items = { { id = "b", score = 1 }, { id = "c", score = 1 } } },
            { { id = "b", score = 3 } } }, { method = "dbsf" }))
  end)

  it("inverts distances first", function()
    -- v sims 0.9, 0.6, 0.3: a highest
    assert.are.equal("a", run({ A()[1] }, { method = "dbsf" })[1].id)
  end)
end)

describe("comb*", function()
  -- B raw: x p 10, q 4, r 1; y r 0.8, s 0.5; r is in both lists (count 2)
  it("combsum sums raw scores", function()
    scores_are({ p = 10, q = 4, r = 1.8, s = 0.5 }, run(B(), { method = "combsum" }))
  end)
  it("combmnz multiplies the sum by the number of lists holding the document", function()
    scores_are({ p = 10, q = 4, r = 1.8 * 2, s = 0.5 }, run(B(), { method = "combmnz" }))
  end)
  it("combmax / combmin use the lists that hold the document", function()
    scores_are({ p = 10, q = 4, r = 1, s = 0.5 }, run(B(), { method = "combmax" }))
    local res = run(B(), { method = "combmin" })
    scores_are({ p = 10, q = 4, r = 0.8, s = 0.5 }, res)
    assert.are.same({ "p", "q", "r", "s" }, ids(res))
  end)
  it("combmed: median, mean of the two middle values for an even count", function()
    scores_are({ p = 10, q = 4, r = (1 + 0.8) / 2, s = 0.5 }, run(B(), { method = "combmed" }))
    -- a third list z: r 3, p 2 -> r: median of {0.8, 1, 3} = 1; p: (2 + 10) / 2 = 6
    local l = B()
    l[3] = { name = "z", items = { { id = "r", score = 3 }, { id = "p", score = 2 } } }
    scores_are({ p = 6, q = 4, r = 1, s = 0.5 }, run(l, { method = "combmed" }))
  end)
  it("combanz: mean over the lists holding the document", function()
    scores_are({ p = 10, q = 4, r = 0.9, s = 0.5 }, run(B(), { method = "combanz" }))
  end)
  it("weights multiply each list's contribution", function()
    -- weights x 1, y 10: r = 1 + 8 (sum), max(1, 8) = 8, min 1, mnz 18
    scores_are({ p = 10, q = 4, r = 9, s = 5 }, run(B(), { method = "combsum", weights = { 1, 10 } }))
    scores_are({ p = 10, q = 4, r = 8, s = 5 }, run(B(), { method = "combmax", weights = { x = 1, y = 10 } }))
    scores_are({ p = 10, q = 4, r = 18, s = 5 }, run(B(), { method = "combmnz", weights = { 1, 10 } }))
  end)
  it("normalize applies per list first", function()
    -- min_max: x p 1, q 1/3, r 0; y r 1, s 0 -> combsum r 1, combmnz r 2
    scores_are({ p = 1, q = 1 / 3, r = 1, s = 0 }, run(B(), { method = "combsum", normalize = "min_max" }))
    scores_are({ p = 1, q = 1 / 3, r = 2, s = 0 }, run(B(), { method = "combmnz", normalize = "min_max" }))
  end)
  it("turn distances into 1 - d", function()
    -- A: a 0.9 + 6, b 0.6, c 0.3 + 9, d 3
    scores_are({ a = (1 - 0.1) + 6, b = 1 - 0.4, c = (1 - 0.7) + 9, d = 3 }, run(A(), { method = "combsum" }))
    scores_are({ a = 6, b = 1 - 0.4, c = 9, d = 3 }, run(A(), { method = "combmax" }))
  end)
  it("order ties by best rank, then first appearance", function()
    -- l0: a 5, b 3; l1: c 4, b 2 -> a 5, b 5, c 4: a (best rank 1) before b (best rank 2)
    local res = run({ { { id = "a", score = 5 }, { id = "b", score = 3 } },
                      { { id = "c", score = 4 }, { id = "b", score = 2 } } },
      { method = "combsum" })
    assert.are.same({ "a", "b", "c" }, ids(res))
    -- l0: a 1, b 2; l1: c 2 -> b and c tie at 2: c has the better rank (1st vs 2nd), b came first
    res = run({ { { id = "a", score = 1 }, { id = "b", score = 2 } }, { { id = "c", score = 2 } } }, { method = "combsum" })
    assert.are.same({ "c", "b", "a" }, ids(res))
    -- 0.1 + 0.2 (0.30000000000000004) ties with 0.3: b, seen first, stays first
    res = run({ { { id = "b", score = 0.3 } }, { { id = "a", score = 0.1 } }, { { id = "a", score = 0.2 } } },
      { method = "combsum" })
    assert.are.same({ "b", "a" }, ids(res))
    assert.are.equal(0.1 + 0.2, res[2].score)
  end)
end)

describe("isr, borda, mrr", function()
  it("isr: Σ w / rank² × count", function()
    -- a (1/1 + 1/2²) × 2 = 2.5; b 1/4; c (1/3² + 1/1) × 2; d 1/9
    local res = run(A(), { method = "isr" })
    scores_are({ a = 2.5, b = 0.25, c = (1 / 9 + 1) * 2, d = 1 / 9 }, res)
    assert.are.same({ "a", "c", "b", "d" }, ids(res))
    local err = err_of(A(), { method = "isr", rank_base = 0 })
    assert.are.equal("rank_base", err.param)
  end)

  it("borda: n - position points, unranked documents share the rest", function()
    -- n = 4 distinct documents; each list ranks 3 of them: 4, 3, 2 points; the one left out
    -- gets the remaining 1 point. v: a 4, b 3, c 2, d 1; t: c 4, a 3, d 2, b 1
    local res = run(A(), { method = "borda" })
    scores_are({ a = 7, b = 4, c = 6, d = 3 }, res)
    assert.are.same({ "a", "c", "b", "d" }, ids(res))
    -- weights v 2: a 8 + 3, b 6 + 1, c 4 + 4, d 2 + 2
    scores_are({ a = 11, b = 7, c = 8, d = 4 }, run(A(), { method = "borda", weights = { v = 2 } }))
    -- n = 4, a list of 1: a 4 points, the 3 others share 3 + 2 + 1 = 6 -> 2 each;
    -- the full list: b 4, c 3, d 2, a 1
    scores_are({ a = 4 + 1, b = 2 + 4, c = 2 + 3, d = 2 + 2 },
      run({ { "a" }, { "b", "c", "d", "a" } }, { method = "borda" }))
    -- an empty list: n = 2, both share 2 + 1 -> 1.5 each
    scores_are({ a = 2 + 1.5, b = 1 + 1.5 }, run({ { "a", "b" }, {} }, { method = "borda" }))
  end)

  it("mrr: mean of reciprocal ranks over all lists, missing = 0", function()
    -- a (1 + 1/2) / 2, b (1/2) / 2, c (1/3 + 1) / 2, d (1/3) / 2
    local res = run(A(), { method = "mrr" })
    scores_are({ a = 0.75, b = 0.25, c = (1 / 3 + 1) / 2, d = (1 / 3) / 2 }, res)
    -- an empty list still counts: a 1/2
    scores_are({ a = 0.5 }, run({ { "a" }, {} }, { method = "mrr" }))
  end)

  it("single-element lists", function()
    scores_are({ a = 2 / 61 }, run({ { "a" }, { "a" } }, { method = "rrf" }))
    scores_are({ a = 2 * 2 }, run({ { "a" }, { "a" } }, { method = "isr" }))
    scores_are({ a = 2 }, run({ { "a" }, { "a" } }, { method = "borda" }))
    scores_are({ a = 1 }, run({ { "a" }, { "a" } }, { method = "mrr" }))
    scores_are({ a = 2 }, run({ { { id = "a", score = 5 } }, { { id = "a", score = 9 } } }, { method = "relative_score" }))
    scores_are({ a = 1 }, run({ { { id = "a", score = 5 } }, { { id = "a", score = 9 } } }, { method = "dbsf" }))
  end)
end)

describe("input checking", function()
  it("names the offending item with 0-based paths", function()
    local cases = {
      { { { { id = "a" }, { score = 1 } } }, "lists[0].items[1].id", 400 },
      { { {}, { { id = true } } }, "lists[1].items[0].id", 400 },
      { { { items = { { id = "a", score = "x" } } } }, "lists[0].items[0].score", 400 },
      { { { kind = "cosine", items = {} } }, "lists[0].kind", 422 },
      { { { weight = -1, items = {} } }, "lists[0].weight", 422 },
      { { { name = "n", items = {} }, { name = "n", items = {} } }, "lists[1].name", 422 },
      { { { "a", "b", "a" } }, "lists[0].items[2].id", 422 },
      { { 5 }, "lists[0]", 400 },
      { "x", "lists", 400 },
    }
    for _, c in ipairs(cases) do
      local err = err_of(c[1], { method = "rrf" })
      assert.are.equal(c[2], err.param)
      assert.are.equal(c[3], err.status, err.message)
      assert.truthy(err.message:find(c[2], 1, true), err.message)
    end
  end)

  it("checks method and parameters", function()
    local err = err_of(A(), { method = "rff" })
    assert.are.equal("method", err.param)
    assert.truthy(err.message:find('did you mean "rrf"', 1, true))
    err = err_of(A(), { method = "rrf", k = -1 })
    assert.are.equal(422, err.status)
    err = err_of(A(), { method = "rrf", k = "60" })
    assert.are.equal(422, err.status)
    err = err_of(A(), { method = "rrf", rank_base = 2 })
    assert.are.equal("rank_base", err.param)
    err = err_of(A(), { method = "rrf", rank_bsae = 0 })
    assert.truthy(err.message:find('did you mean "rank_base"', 1, true), err.message)
    err = err_of(A(), { method = "rrf", weights = { 1, 2, 3 } })
    assert.truthy(err.message:find("3 entries for 2 lists", 1, true), err.message)
    err = err_of(A(), { method = "rrf", weights = { vector = 1 } })
    assert.are.equal("weights.vector", err.param)
    err = err_of(A(), { method = "linear", std = "unbiased" })
    assert.are.equal("std", err.param)
    -- a built-in's parameter on another built-in is accepted and ignored
    assert.truthy(fuse.run(A(), { method = "borda", k = 10, normalize = "max" }))
  end)
end)

describe("operator fusion files", function()
  it("loads a fusion file and validates its parameters", function()
    local res = run({ { "a", "b" }, { "b", "c" } }, { fusion_file = FIX .. "/my_fusion.lua", boost = 2 })
    -- best reciprocal rank × 2: a 2, b 2 (rank 1 in list 1), c 1
    scores_are({ a = 2, b = 2, c = 1 }, res)
    assert.are.same({ "a", "b", "c" }, ids(res))
    local _, err = fuse.run({ { "a" } }, { fusion_file = FIX .. "/my_fusion.lua", bost = 2 })
    assert.truthy(err.message:find('did you mean "boost"', 1, true), err.message)
    _, err = fuse.run({ { "a" } }, { fusion_file = FIX .. "/not_a_method.lua" })
    assert.truthy(err.message:find("fuse", 1, true))
  end)

  it("can use the documented normalisations (rerank.fusion.normalize)", function()
    local lists = { { { id = "a", score = 3 }, { id = "b", score = 1 } }, { { id = "b", score = 10 }, { id = "c", score = 0 } } }
    local mine = run(lists, { fusion_file = FIX .. "/normalized_sum.lua" })
    local linear = run(lists, { method = "linear" })
    scores_are({ a = 1, b = 1, c = 0 }, mine)
    for i, r in ipairs(linear) do assert.are.equal(r.score, mine[i].score) end
  end)

  it("is available by name to an instance configured with fusion:", function()
    local r = assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } }, fusion = { FIX .. "/my_fusion.lua" } }))
    local res = assert(r:fuse({ { "a", "b" }, { "c" } }, { method = "best_rank" }))
    assert.are.same({ "a", "c", "b" }, ids(res))
    near(0.5, res[3].score)
    -- the library function without a configuration knows the built-ins only
    local _, err = rerank.fuse({ { "a" } }, { method = "best_rank" })
    assert.are.equal("method", err.param)
    assert.are.equal(1 / 61, rerank.fuse({ { "a" } }, { method = "rrf" })[1].score)
  end)
end)

describe("fuse_scores.normalize", function()
  local fs = require "rerank.fusion.normalize"
  local function list(scores, kind)
    local items = {}
    for i, s in ipairs(scores) do items[i] = { id = i, score = s } end
    local P = assert(fuse.check_lists({ { kind = kind, items = items } }))
    return P[1]
  end
  it("every variant on 2, 4, 6", function()
    local l = list({ 2, 4, 6 })
    assert.are.same({ 2, 4, 6 }, fs.normalize(l, "none"))
    assert.are.same({ 0, 0.5, 1 }, fs.normalize(l, "min_max"))
    assert.are.same({ 2 / 6, 4 / 6, 1 }, fs.normalize(l, "max"))
    assert.are.same({ 0, 2 / 6, 4 / 6 }, fs.normalize(l, "sum"))    -- (s - 2) / (0 + 2 + 4)
    local sp = math.sqrt(8 / 3)                                         -- population
    assert.are.same({ -2 / sp, 0, 2 / sp }, fs.normalize(l, "z_score"))
    assert.are.same({ -1, 0, 1 }, fs.normalize(l, "z_score", { std = "sample" })) -- sqrt(8/2) = 2
    assert.are.same({ 1, 1 - 1 / 3, 1 - 2 / 3 }, fs.normalize(l, "rank"))
  end)
  it("distance lists use 1 - d", function()
    local l = list({ 0.25, 0.5 }, "distance")
    assert.are.same({ 0.75, 0.5 }, fs.normalize(l, "none"))
    assert.are.same({ 1, 0 }, fs.normalize(l, "min_max"))
  end)
  it("max of a list whose max is 0 gives 0", function()
    assert.are.same({ 0, 0 }, fs.normalize(list({ 0, -1 }), "max"))
  end)
end)

describe("fusion methods against an independent reference (tests/support/fusion_reference.lua)", function()
  math.randomseed(tonumber(os.getenv("FUSION_SEED") or "") or 6)

  for _, method in ipairs(R.METHODS) do
    it(method .. " (library, random inputs)", function()
      for trial = 1, 300 do
        local lists = R.random_lists()
        local params = R.random_params(lists, method)
        local opts = { method = method }
        for k, v in pairs(params) do opts[k] = v end
        if math.random() < 0.2 then opts.top_n = math.random(1, 5) end
        local exp = R.reference(lists, method, { k = params.k, rank_base = params.rank_base,
          weights = params.weights, normalize = params.normalize, std = params.std, top_n = opts.top_n })
        local got, err = rerank.fuse(R.to_lib(lists), opts)
        assert(got, method .. " trial " .. trial .. ": " .. R.dump(err))
        R.compare(exp, got, method .. " trial " .. trial .. " lists " .. R.dump(lists) .. " opts " .. R.dump(opts))
      end
    end)
  end

  it("all-empty input gives [] and empty lists are allowed", function()
    for _, method in ipairs(R.METHODS) do
      local got = assert(rerank.fuse({}, { method = method }))
      assert.are.equal(0, #got)
      got = assert(rerank.fuse({ { items = {} }, { items = {} } }, { method = method }))
      assert.are.equal(0, #got)
    end
  end)

  it("documents with a fused score of 0 are still returned", function()
    local got = assert(rerank.fuse({ { { id = "a", score = 0 }, { id = "b", score = 0 } } },
      { method = "combsum" }))
    assert.are.equal(2, #got)
    assert.are.equal(0, got[1].score)
    got = assert(rerank.fuse({ { weight = 0, { id = "a" }, { id = "b" } } }, { method = "rrf" }))
    assert.are.equal(2, #got)
  end)

  it("borda: n = distinct documents, top gets n, left-out share (n - m + 1) / 2", function()
    -- l1: a b (m=2), l2: c (m=1); n = 3. l1: a 3, b 2, c 1. l2: c 3, a,b share (2+1)/2 = 1.5
    local got = assert(rerank.fuse({ { { id = "a" }, { id = "b" } }, { { id = "c" } } }, { method = "borda" }))
    local s = {}
    for _, r in ipairs(got) do s[r.id] = r.score end
    assert.are.same({ a = 4.5, b = 3.5, c = 4 }, s)
  end)

  it("rank-based methods take distance lists in the order given", function()
    local got = assert(rerank.fuse({ { kind = "distance", { id = "a", score = 0.9 }, { id = "b", score = 0.1 } } },
      { method = "rrf" }))
    assert.are.equal("a", got[1].id)
  end)
end)
