-- Reciprocal rank fusion (Cormack et al. 2009): F(d) = Σ_i w_i / (k + rank_i(d)).
-- k >= 0 (default 60); rank = 0-based position + rank_base (default 1); a document missing
-- from a list gets nothing from it. Rank-based: scores are not used, distance lists are taken
-- in the order given.
local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local M = {
  name = "rrf",
  scores = false,
  params = { k = { type = "number", min = 0, default = 60 } },
}

function M.check(p)
  if p.k + p.rank_base <= 0 then
    return "must be > 0 when rank_base is 0 (the first rank would divide by zero)", "k"
  end
end

function M.fuse(lists, params)
  local N = lists.n_docs
  local F = table_new(N, 0)
  for d = 1, N do F[d] = 0 end
  local c = params.k + params.rank_base - 1 -- k + rank at position j is c + j
  for i = 1, #lists do
    local l = lists[i]
    local w, docs = l.w, l.docs
    for j = 1, l.n do
      local d = docs[j]
      F[d] = F[d] + w / (c + j)
    end
  end
  return F
end

return M
