-- Comparing two rankings of the same documents (shadow traffic, lua/rerank/engine/shadow.lua).
-- A ranking is an array of { index = document, score = number }, best first.
--   compare.kendall_tau_b(a, b) -> tau | nil   over the documents both rank (their scores),
--                                             the first M.MAX_TAU of them in a's order (the
--                                             pair count grows with the square); nil with
--                                             fewer than 2 common documents or when either
--                                             side ties every pair
--   compare.overlap(a, b, k) -> share           |top k of a ∩ top k of b| / |top k of a|: the
--                                             share of a's top k that b also ranks in its top k
--   compare.rbo(a, b, p) -> rbo                 rank-biased overlap (Webber, Moffat, Zobel
--                                             2010), extrapolated RBO_ext of eq. 32 for two
--                                             lists evaluated to the depth of the shorter one
--   compare.top1(a, b) -> 1 | 0                the same document first
--   compare.score_drift(a, b) -> mean |score_b - score_a| over the common documents | nil
local M = { MAX_TAU = 1000 }

local function by_index(list)
  local t = {}
  for _, r in ipairs(list) do t[r.index] = r.score end
  return t
end

function M.kendall_tau_b(a, b)
  local sb = by_index(b)
  local xa, xb = {}, {}
  for _, r in ipairs(a) do
    local s = sb[r.index]
    if s ~= nil then
      xa[#xa + 1], xb[#xb + 1] = r.score, s
      if #xa == M.MAX_TAU then break end
    end
  end
  local n = #xa
  if n < 2 then return nil end
  local conc, disc, tie_a, tie_b = 0, 0, 0, 0
  for i = 1, n - 1 do
    for j = i + 1, n do
      local da, db = xa[i] - xa[j], xb[i] - xb[j]
      if da == 0 and db == 0 then -- tied in both: counts in neither denominator term
        tie_a, tie_b = tie_a + 1, tie_b + 1
      elseif da == 0 then
        tie_a = tie_a + 1
      elseif db == 0 then
        tie_b = tie_b + 1
      elseif (da > 0) == (db > 0) then
        conc = conc + 1
      else
        disc = disc + 1
      end
    end
  end
  local pairs_n = n * (n - 1) / 2
  local denom = math.sqrt((pairs_n - tie_a) * (pairs_n - tie_b))
  if denom == 0 then return nil end
  return (conc - disc) / denom
end

function M.overlap(a, b, k)
  local ka = math.min(k, #a)
  if ka == 0 then return #b == 0 and 1 or 0 end
  local in_b = {}
  for i = 1, math.min(k, #b) do in_b[b[i].index] = true end
  local n = 0
  for i = 1, ka do
    if in_b[a[i].index] then n = n + 1 end
  end
  return n / ka
end

function M.rbo(a, b, p)
  p = p or 0.9
  local k = math.min(#a, #b)
  if k == 0 then return (#a == 0 and #b == 0) and 1 or 0 end
  local seen_a, seen_b, x, sum = {}, {}, 0, 0
  for d = 1, k do
    local ia, ib = a[d].index, b[d].index
    if ia == ib then
      x = x + 1
    else
      if seen_b[ia] then x = x + 1 end
      if seen_a[ib] then x = x + 1 end
    end
    seen_a[ia], seen_b[ib] = true, true
    sum = sum + (x / d) * p ^ d
  end
  -- RBO_ext = X_k/k * p^k + (1 - p)/p * sum_{d=1..k} X_d/d * p^d
  return x / k * p ^ k + (1 - p) / p * sum
end

function M.top1(a, b)
  if #a == 0 or #b == 0 then return (#a == #b) and 1 or 0 end
  return a[1].index == b[1].index and 1 or 0
end

function M.score_drift(a, b)
  local sb = by_index(b)
  local s, n = 0, 0
  for _, r in ipairs(a) do
    local x = sb[r.index]
    if x ~= nil and x == x and r.score == r.score and math.abs(x) ~= math.huge and math.abs(r.score) ~= math.huge then
      s, n = s + math.abs(x - r.score), n + 1
    end
  end
  if n == 0 then return nil end
  return s / n
end

return M
