-- Relative score fusion (Weaviate's relativeScoreFusion): each list min-max normalised,
-- then F(d) = Σ_i w_i × (s - min_i) / (max_i - min_i). A list whose max == min (one item, or
-- all equal) gives each of its documents exactly its weight. Distance lists: 1 - d first.
local fuse = require "rerank.fuse"

local M = { name = "relative_score", scores = true, params = {} }

function M.fuse(lists)
  return fuse.sum_normalized(lists, "min_max", nil)
end

return M
