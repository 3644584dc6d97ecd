-- Linear combination: F(d) = Σ_i w_i × norm_i(d) with normalize = min_max (default) | none |
-- max | sum | z_score | rank (see fuse.normalize; z_score uses the population std unless
-- std = "sample"). Distance lists are turned into 1 - d before normalising; rank uses the
-- list order and needs no scores. A list without d contributes 0.
local fuse = require "rerank.fuse"

local M = {
  name = "linear",
  params = {
    normalize = { type = "string", enum = fuse.NORMALIZE, default = "min_max" },
    std = { type = "string", enum = fuse.STD, default = "population" },
  },
}

function M.scores(p) return p.normalize ~= "rank" end

function M.fuse(lists, params)
  return fuse.sum_normalized(lists, params.normalize, params)
end

return M
