-- Reciprocal rank fusion (Cormack et al. 2009): F(d) = Σ_i w_i / (k + rank_i(d)).
-- k >= 0 (default 60); rank = 0-based position + rank_base (default 1); a document missing
-- from a list gets nothing from it. Rank-based: scores are not used, distance lists are taken
-- in the order given.
local fuse = require "rerank.fuse"

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
  local c = params.k + params.rank_base - 1 -- k + rank at position j is c + j
  return fuse.add_reciprocal_ranks(fuse.zeros(lists.n_docs), lists, c)
end

return M
