-- CombMIN: F(d) = min of v_i(d) over the lists holding d,
-- with v_i(d) = w_i × score, the score raw (1 - d for distance lists) unless normalize is
-- given (none | min_max | max | sum | z_score | rank, as for linear; default none).
-- count(d) = the number of lists holding d.
local fuse = require "rerank.fuse"

local M = {
  name = "combmin",
  params = {
    normalize = { type = "string", enum = fuse.NORMALIZE, default = "none" },
    std = { type = "string", enum = fuse.STD, default = "population" },
  },
}

function M.scores(p) return p.normalize ~= "rank" end

function M.fuse(lists, params)
  return fuse.comb(lists, params, "min")
end

return M
