-- Borda count: with n = the number of distinct documents over all lists, the document at
-- 0-based position p of a list gets n - p points; the documents a list leaves out share the
-- points it did not give (n - m, ..., 1 for a list of m) equally: (n - m + 1) / 2 each.
-- F(d) = Σ_i w_i × points_i(d). Rank-based (positions; rank_base does not apply).
local fuse = require "rerank.fuse"

local M = { name = "borda", scores = false, params = {} }

function M.fuse(lists)
  local N = lists.n_docs
  local F = fuse.zeros(N)
  for i = 1, #lists do
    local l = lists[i]
    local w, docs, m = l.w, l.docs, l.n
    if m < N then
      local share = w * (N - m + 1) / 2
      local pos = l.pos
      for d = 1, N do
        if pos[d] then
          F[d] = F[d] + w * (N - (pos[d] - 1))
        else
          F[d] = F[d] + share
        end
      end
    else
      for j = 1, m do
        local d = docs[j]
        F[d] = F[d] + w * (N - (j - 1))
      end
    end
  end
  return F
end

return M
