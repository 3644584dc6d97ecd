-- Mean reciprocal rank: F(d) = (Σ_i w_i / rank_i(d)) / L over all L lists (including empty
-- ones); a list without d contributes 0. Rank-based; rank_base must be 1.
local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local M = { name = "mrr", scores = false, params = {} }

function M.check(p)
  if p.rank_base ~= 1 then return "must be 1 for mrr (1/rank of rank 0 is undefined)", "rank_base" end
end

function M.fuse(lists, params)
  local N = lists.n_docs
  local F = table_new(N, 0)
  for d = 1, N do F[d] = 0 end
  local c = params.rank_base - 1
  local L = #lists
  for i = 1, L do
    local l = lists[i]
    local w, docs = l.w, l.docs
    for j = 1, l.n do
      local d = docs[j]
      F[d] = F[d] + w / (c + j)
    end
  end
  if L > 0 then
    for d = 1, N do F[d] = F[d] / L end
  end
  return F
end

return M
