-- Borda count: with n = the number of distinct documents over all lists, the document at
-- 0-based position p of a list gets n - p points; the documents a list leaves out share the
-- points it did not give (n - m, ..., 1 for a list of m) equally: (n - m + 1) / 2 each.
-- F(d) = Σ_i w_i × points_i(d). Rank-based (positions; rank_base does not apply).
local fuse = require "rerank.fuse"

local M = { name = "borda", scores = false, params = {} }

-- O(items): every document first gets the shares of all short lists, then each list that
-- holds it takes its share back and gives its points instead.
function M.fuse(lists)
  local N = lists.n_docs
  local shares = 0
  for i = 1, #lists do
    local l = lists[i]
    if l.n < N then shares = shares + l.w * (N - l.n + 1) / 2 end
  end
  local F = fuse.zeros(N)
  if shares ~= 0 then
    for d = 1, N do F[d] = shares end
  end
  for i = 1, #lists do
    local l = lists[i]
    local w, docs, m = l.w, l.docs, l.n
    local share = m < N and w * (N - m + 1) / 2 or 0
    for j = 1, m do
      local d = docs[j]
      F[d] = F[d] - share + w * (N - (j - 1))
    end
  end
  return F
end

return M
