-- The per-list score arithmetic of fusion (fuse.lua re-exports all of it as fuse.<name>,
-- which is how the methods in lua/rerank/fusion/ and operators' fusion files reach it):
-- similarities (1 - d for distance lists), the normalisations, the F arrays methods start
-- from, and the comb* family. Lists are fuse's prepared lists P[i] (see fuse.lua).
local pairs, error, tostring = pairs, error, tostring
local huge, abs, sqrt, frexp, ldexp = math.huge, math.abs, math.sqrt, math.frexp, math.ldexp
local sort = table.sort

local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local M = {}

-- Similarity of each position: the score itself, or 1 - d for a distance list.
function M.sims(list)
  if list.sims then return list.sims end
  local s = list.scores
  if list.kind == "distance" then
    local n = list.n
    local out = table_new(n, 0)
    for j = 1, n do out[j] = 1 - s[j] end
    list.sims = out
  else
    list.sims = s
  end
  return list.sims
end

-- The scores scaled by a power of two when their magnitude could overflow the arithmetic of
-- the normalisations (max - min, sums, squares of deviations): every normalisation but
-- "none" is scale-invariant, and scaling by 2^-e is exact, so finite scores up to +-1.8e308
-- give finite results. Ordinary scores (|s| <= 2^500) are returned as they are.
local BIG = ldexp(1, 500)
function M.scaled(s, n)
  local m = 0
  for j = 1, n do
    local x = s[j]
    if x > m then m = x elseif -x > m then m = -x end
  end
  if m <= BIG then return s end
  local _, e = frexp(m)
  local f = ldexp(1, -e)
  local out = table_new(n, 0)
  for j = 1, n do out[j] = s[j] * f end
  return out
end

local function minmax(s, n)
  local mn, mx = huge, -huge
  for j = 1, n do
    local x = s[j]
    if x < mn then mn = x end
    if x > mx then mx = x end
  end
  return mn, mx
end
M.minmax = minmax

-- mean and standard deviation; sample = true divides by n - 1 (n < 2: std 0)
local function mean_std(s, n, sample)
  if n == 0 then return 0, 0 end
  local sum = 0
  for j = 1, n do sum = sum + s[j] end
  local mean = sum / n
  local ss = 0
  for j = 1, n do
    local dlt = s[j] - mean
    ss = ss + dlt * dlt
  end
  local div = sample and (n - 1) or n
  if div <= 0 then return mean, 0 end
  return mean, sqrt(ss / div)
end
M.mean_std = mean_std

-- Normalised values of a list's positions (an array 1..n). how: none | min_max | max | sum |
-- z_score | rank; opts.std = "sample" for z_score. Score-based ones work on similarities.
function M.normalize(list, how, opts)
  local n = list.n
  if how == "rank" then
    local out = table_new(n, 0)
    for j = 1, n do out[j] = 1 - (j - 1) / n end          -- 1 - i/n, i 0-based
    return out
  end
  local s = M.sims(list)
  if how == nil or how == "none" then return s end
  s = M.scaled(s, n)
  local out = table_new(n, 0)
  if n == 0 then return out end
  if how == "min_max" then
    local mn, mx = minmax(s, n)
    if mx == mn then
      for j = 1, n do out[j] = 1.0 end                   -- all equal (or one item): 1.0
    else
      local r = mx - mn
      for j = 1, n do out[j] = (s[j] - mn) / r end
    end
  elseif how == "max" then
    local _, mx = minmax(s, n)
    local m = abs(mx)
    if m == 0 then
      for j = 1, n do out[j] = 0 end
    else
      for j = 1, n do out[j] = s[j] / m end
    end
  elseif how == "sum" then
    local mn = minmax(s, n)
    local tot = 0
    for j = 1, n do tot = tot + (s[j] - mn) end
    if tot == 0 then
      for j = 1, n do out[j] = 1 / n end                 -- all equal: 1/n each
    else
      for j = 1, n do out[j] = (s[j] - mn) / tot end
    end
  elseif how == "z_score" then
    local mean, std = mean_std(s, n, opts and opts.std == "sample")
    if std == 0 then
      for j = 1, n do out[j] = 0 end
    else
      for j = 1, n do out[j] = (s[j] - mean) / std end
    end
  else
    error("fuse.normalize: unknown normalisation " .. tostring(how), 2)
  end
  return out
end

-- F[docs[j]] += w × s[j], j = 1..n
local function add_weighted(F, docs, n, w, s)
  for j = 1, n do
    local d = docs[j]
    F[d] = F[d] + w * s[j]
  end
  return F
end

-- F[docs[j]] += w × ((s[j] - lo) / r), j = 1..n: s scaled into a range of width r from lo
local function add_ranged(F, docs, n, w, s, lo, r)
  for j = 1, n do
    local d = docs[j]
    F[d] = F[d] + w * ((s[j] - lo) / r)
  end
  return F
end
M.add_ranged = add_ranged

-- F[d] += w × normalize(list)(d) for every position, without the intermediate array: the
-- same arithmetic as fuse.normalize (so the same bits), in one loop per variant.
function M.add_normalized(F, list, how, opts, w)
  local n, docs = list.n, list.docs
  if n == 0 then return F end
  if how == "min_max" or how == "none" or how == nil then
    local s = M.sims(list)
    if how ~= "min_max" then return add_weighted(F, docs, n, w, s) end
    s = M.scaled(s, n)
    local mn, mx = minmax(s, n)
    if mx == mn then
      for j = 1, n do
        local d = docs[j]
        F[d] = F[d] + w * 1.0
      end
      return F
    end
    return add_ranged(F, docs, n, w, s, mn, mx - mn)
  end
  return add_weighted(F, docs, n, w, M.normalize(list, how, opts))
end

-- A fresh F with F[d] = 0 for the n documents: where every method starts.
function M.zeros(n)
  local F = table_new(n, 0)
  for d = 1, n do F[d] = 0 end
  return F
end

-- Σ_i w_i × normalize(list_i)(d) over all lists: F for linear, relative_score and combsum.
function M.sum_normalized(lists, how, opts)
  local F = M.zeros(lists.n_docs)
  for i = 1, #lists do
    local l = lists[i]
    M.add_normalized(F, l, how, opts, l.w)
  end
  return F
end

-- F[d] += w_i / (c + j) for d at 1-based position j of list i (rrf, mrr): c + j is the rank
-- (plus k for rrf).
function M.add_reciprocal_ranks(F, lists, c)
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

-- The comb* family (Fox & Shaw): v_i(d) = w_i × normalize(list_i)(d), aggregated over the
-- lists holding d with how = sum | mnz (sum × count) | anz (sum / count) | max | min | med.
function M.comb(lists, params, how)
  local N = lists.n_docs
  local F
  local count = lists.count
  if how == "sum" or how == "mnz" or how == "anz" then
    F = M.sum_normalized(lists, params.normalize, params)
  else
    F = M.zeros(N)
    local seen = table_new(N, 0)
    for d = 1, N do seen[d] = false end
    local vals = (how == "med") and {} or nil
    for i = 1, #lists do
      local l = lists[i]
      local w, docs = l.w, l.docs
      local v = M.normalize(l, params.normalize, params)
      for j = 1, l.n do
        local d = docs[j]
        local x = w * v[j]
        if how == "max" then
          if not seen[d] or x > F[d] then F[d] = x end
        elseif how == "min" then
          if not seen[d] or x < F[d] then F[d] = x end
        elseif count[d] == 1 then -- med
          F[d] = x
        else
          local t = vals[d]
          if not t then t = {}; vals[d] = t end
          t[#t + 1] = x
        end
        seen[d] = true
      end
    end
    if vals then
      for d, t in pairs(vals) do
        sort(t)
        local m = #t
        if m % 2 == 1 then
          F[d] = t[(m + 1) / 2]
        else
          F[d] = (t[m / 2] + t[m / 2 + 1]) / 2
        end
      end
    end
  end
  if how == "mnz" then
    for d = 1, N do F[d] = F[d] * count[d] end
  elseif how == "anz" then
    for d = 1, N do F[d] = F[d] / count[d] end
  end
  return F
end

return M
