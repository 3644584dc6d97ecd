-- Relative score fusion (Weaviate's relativeScoreFusion): each list min-max normalised,
-- then F(d) = Σ_i w_i × (s - min_i) / (max_i - min_i). A list whose max == min (one item, or
-- all equal) gives each of its documents exactly its weight. Distance lists: 1 - d first.
local fuse = require "rerank.fuse"
local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local M = { name = "relative_score", scores = true, params = {} }

function M.fuse(lists)
  local N = lists.n_docs
  local F = table_new(N, 0)
  for d = 1, N do F[d] = 0 end
  for i = 1, #lists do
    local l = lists[i]
    fuse.add_normalized(F, l, "min_max", nil, l.w)
  end
  return F
end

return M
