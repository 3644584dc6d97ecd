-- The rank-based fusion methods, one small entry each. Scores are not used; distance lists
-- are taken in the order given; rank = 0-based position + rank_base (default 1).
--   rrf    reciprocal rank fusion (Cormack et al. 2009): F(d) = Σ_i w_i / (k + rank_i(d)),
--          k >= 0 (default 60); a document missing from a list gets nothing from it
--   isr    inverse square rank: F(d) = count(d) × Σ_i w_i / rank_i(d)², count(d) = the number
--          of lists holding d; rank_base must be 1 (a rank of 0 has no 1/rank²)
--   mrr    mean reciprocal rank: F(d) = (Σ_i w_i / rank_i(d)) / L over all L lists (including
--          empty ones); a list without d contributes 0; rank_base must be 1
--   borda  Borda count: with n = the number of distinct documents over all lists, the document
--          at 0-based position p of a list gets n - p points; the documents a list leaves out
--          share the points it did not give (n - m, ..., 1 for a list of m) equally:
--          (n - m + 1) / 2 each. F(d) = Σ_i w_i × points_i(d) (positions; rank_base does not apply)
-- The score-based methods are in fusion/score.lua.
local fs = require "rerank.fusion.normalize"       -- the shared per-list arithmetic

local function rank_base_one(method, term) -- term: what a rank of 0 would divide by zero
  return function(p)
    if p.rank_base ~= 1 then
      return ("must be 1 for %s (%s of rank 0 is undefined)"):format(method, term), "rank_base"
    end
  end
end

local function isr(lists, params)
  local N = lists.n_docs
  local F = fs.zeros(N)
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

local function mrr(lists, params)
  local N = lists.n_docs
  local L = #lists
  local F = fs.add_reciprocal_ranks(fs.zeros(N), lists, params.rank_base - 1)
  if L > 0 then
    for d = 1, N do F[d] = F[d] / L end
  end
  return F
end

-- O(items): every document first gets the shares of all short lists, then each list that
-- holds it takes its share back and gives its points instead.
local function borda(lists)
  local N = lists.n_docs
  local shares = 0
  for i = 1, #lists do
    local l = lists[i]
    if l.n < N then shares = shares + l.w * (N - l.n + 1) / 2 end
  end
  local F = fs.zeros(N)
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

return {
  rrf = {
    name = "rrf", scores = false, params = { k = { type = "number", min = 0, default = 60 } },
    check = function(p)
      if p.k + p.rank_base <= 0 then
        return "must be > 0 when rank_base is 0 (the first rank would divide by zero)", "k"
      end
    end,
    fuse = function(lists, params) -- k + rank at position j is c + j
      return fs.add_reciprocal_ranks(fs.zeros(lists.n_docs), lists, params.k + params.rank_base - 1)
    end,
  },
  isr = { name = "isr", scores = false, params = {}, check = rank_base_one("isr", "1/rank²"), fuse = isr },
  mrr = { name = "mrr", scores = false, params = {}, check = rank_base_one("mrr", "1/rank"), fuse = mrr },
  borda = { name = "borda", scores = false, params = {}, fuse = borda },
}
