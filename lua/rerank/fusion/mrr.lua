-- Mean reciprocal rank: F(d) = (Σ_i w_i / rank_i(d)) / L over all L lists (including empty
-- ones); a list without d contributes 0. Rank-based; rank_base must be 1.
local fuse = require "rerank.fuse"

local M = { name = "mrr", scores = false, params = {} }

function M.check(p)
  if p.rank_base ~= 1 then return "must be 1 for mrr (1/rank of rank 0 is undefined)", "rank_base" end
end

function M.fuse(lists, params)
  local N = lists.n_docs
  local L = #lists
  local F = fuse.add_reciprocal_ranks(fuse.zeros(N), lists, params.rank_base - 1)
  if L > 0 then
    for d = 1, N do F[d] = F[d] / L end
  end
  return F
end

return M
