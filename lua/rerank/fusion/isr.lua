-- Inverse square rank: F(d) = count(d) × Σ_i w_i / rank_i(d)², count(d) = number of lists
-- holding d. Rank-based; rank_base must be 1 (a rank of 0 has no 1/rank²).
local fuse = require "rerank.fuse"

local M = { name = "isr", scores = false, params = {} }

function M.check(p)
  if p.rank_base ~= 1 then return "must be 1 for isr (1/rank² of rank 0 is undefined)", "rank_base" end
end

function M.fuse(lists, params)
  local N = lists.n_docs
  local F = fuse.zeros(N)
  local c = params.rank_base - 1
  for i = 1, #lists do
    local l = lists[i]
    local w, docs = l.w, l.docs
    for j = 1, l.n do
      local d = docs[j]
      local r = c + j
      F[d] = F[d] + w / (r * r)
    end
  end
  local count = lists.count
  for d = 1, N do F[d] = F[d] * count[d] end
  return F
end

return M
