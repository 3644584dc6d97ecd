-- The score-combining fusion methods, one small entry each (the CombX family of Fox & Shaw
-- and the linear combination). For every Comb method v_i(d) = w_i × score: the score raw
-- (1 - d for distance lists) unless normalize is given (none | min_max | max | sum | z_score |
-- rank, see fuse.normalize; default none), and count(d) = the number of lists holding d.
--   combsum  F(d) = Σ v_i(d)
--   combmnz  F(d) = count(d) × Σ v_i(d)
--   combmax  F(d) = max of v_i(d) over the lists holding d
--   combmin  F(d) = min of v_i(d) over the lists holding d
--   combmed  F(d) = median of v_i(d) over the lists holding d (even count: mean of the two middle)
--   combanz  F(d) = Σ v_i(d) / count(d) (the mean over the lists holding d)
--   linear   F(d) = Σ_i w_i × norm_i(d), normalize = min_max by default; z_score uses the
--            population std unless std = "sample"; rank uses the list order and needs no
--            scores; a list without d contributes 0.
-- lua/rerank/fuse.lua looks built-in names up here before the one-file methods in fusion/.
local fuse = require "rerank.fuse"

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
    fuse = function(lists, p) return fuse.comb(lists, p, how) end,
  }
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
    fuse = function(lists, p) return fuse.sum_normalized(lists, p.normalize, p) end,
  },
}
