-- The score-based fusion methods, one small entry each: the CombX family of Fox & Shaw, the
-- linear combination, relative score fusion and distribution-based score fusion.
-- For every Comb method v_i(d) = w_i × score: the score raw (1 - d for distance lists)
-- unless normalize is given (none | min_max | max | sum | z_score | rank, see
-- fs.normalize; default none), and count(d) = the number of lists holding d.
--   combsum  F(d) = Σ v_i(d)
--   combmnz  F(d) = count(d) × Σ v_i(d)
--   combmax  F(d) = max of v_i(d) over the lists holding d
--   combmin  F(d) = min of v_i(d) over the lists holding d
--   combmed  F(d) = median of v_i(d) over the lists holding d (even count: mean of the two middle)
--   combanz  F(d) = Σ v_i(d) / count(d) (the mean over the lists holding d)
--   linear   F(d) = Σ_i w_i × norm_i(d), normalize = min_max by default; z_score uses the
--            population std unless std = "sample"; rank uses the list order and needs no
--            scores; a list without d contributes 0.
--   relative_score  (Weaviate's relativeScoreFusion) each list min-max normalised, then
--            F(d) = Σ_i w_i × (s - min_i) / (max_i - min_i); a list whose max == min (one item,
--            or all equal) gives each of its documents exactly its weight
--   dbsf     (Qdrant's distribution-based score fusion) per list, mean μ and sample standard
--            deviation σ (n - 1); each score becomes (s - (μ - 3σ)) / ((μ + 3σ) - (μ - 3σ)),
--            not clipped; a single-item or zero-variance list gives 0.5; F(d) = Σ_i w_i × norm_i(d)
-- Distance lists: 1 - d first. The rank-based methods are in fusion/rank.lua; lua/rerank/fuse.lua
-- looks built-in names up in these two registries.
local fuse = require "rerank.fuse"            -- NORMALIZE, STD: the accepted values
local fs = require "rerank.fusion.normalize"       -- the shared per-list arithmetic

local function scores_unless_rank(p) return p.normalize ~= "rank" end

local function params(default_normalize)
  return {
    normalize = { type = "string", enum = fuse.NORMALIZE, default = default_normalize },
    std = { type = "string", enum = fuse.STD, default = "population" },
  }
end

local function comb(name, how)
  return {
    name = name, params = params("none"), scores = scores_unless_rank,
    fuse = function(lists, p) return fs.comb(lists, p, how) end,
  }
end

local function dbsf(lists)
  local N = lists.n_docs
  local F = fs.zeros(N)
  for i = 1, #lists do
    local l = lists[i]
    local w, docs, n = l.w, l.docs, l.n
    local s = fs.scaled(l.sims, n) -- +-1e308 stays finite (a power-of-two scale)
    local mean, std = fs.mean_std(s, n, true)
    if n < 2 or std == 0 then
      for j = 1, n do
        local d = docs[j]
        F[d] = F[d] + w * 0.5
      end
    else
      local lo, hi = mean - 3 * std, mean + 3 * std
      fs.add_ranged(F, docs, n, w, s, lo, hi - lo)
    end
  end
  return F
end


return {
  combsum = comb("combsum", "sum"),
  combmnz = comb("combmnz", "mnz"),
  combmax = comb("combmax", "max"),
  combmin = comb("combmin", "min"),
  combmed = comb("combmed", "med"),
  combanz = comb("combanz", "anz"),
  linear = {
    name = "linear", params = params("min_max"), scores = scores_unless_rank,
    fuse = function(lists, p) return fs.sum_normalized(lists, p.normalize, p) end,
  },
  relative_score = {
    name = "relative_score", scores = true, params = {},
    fuse = function(lists) return fs.sum_normalized(lists, "min_max", nil) end,
  },
  dbsf = { name = "dbsf", scores = true, params = {}, fuse = dbsf },
}
