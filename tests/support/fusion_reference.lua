-- An independent reference implementation of every fusion method and convention, written
-- from issue 6's wording (not from lua/rerank/fuse.lua), with random inputs and a strict
-- comparison. tests/lua/fusion_spec.lua checks the library against it and
-- tests/e2e/fusion_spec.lua checks POST /v1/fuse on the real binary.
--   R.reference(lists, method, params) -> expected results (id, score, ranks, scores)
--   R.random_lists(opts?), R.random_params(lists, method), R.compare(expected, got, ctx)
--   R.close(a, b, scale?), R.dump(x), R.to_lib(lists), R.METHODS
local cjson = require "cjson"

local REL = 1e-9

---------------------------------------------------------------------------------------------
-- reference

local function weight_of(lists, i, params)
  local l = lists[i]
  if l.weight ~= nil then return l.weight end
  local ws = params.weights
  if ws then
    if ws[1] ~= nil or next(ws) == nil then return ws[i] or 1 end
    return ws[l.name or tostring(i - 1)] or 1
  end
  return 1
end

local function sims(l)
  local out = {}
  for j, it in ipairs(l.items) do
    out[j] = (l.kind == "distance") and (1 - it.score) or it.score
  end
  return out
end

local function normalize(l, how, std)
  local n = #l.items
  local out = {}
  if how == "rank" then
    for j = 1, n do out[j] = 1 - (j - 1) / n end
    return out
  end
  local s = sims(l)
  if how == "none" then return s end
  if n == 0 then return out end
  local mn, mx = math.huge, -math.huge
  for _, x in ipairs(s) do mn = math.min(mn, x); mx = math.max(mx, x) end
  if how == "min_max" then
    for j = 1, n do out[j] = (mx == mn) and 1.0 or (s[j] - mn) / (mx - mn) end
  elseif how == "max" then
    for j = 1, n do out[j] = (mx == 0) and 0 or s[j] / math.abs(mx) end
  elseif how == "sum" then
    local tot = 0
    for j = 1, n do tot = tot + (s[j] - mn) end
    for j = 1, n do out[j] = (tot == 0) and 1 / n or (s[j] - mn) / tot end
  elseif how == "z_score" then
    local mean = 0
    for j = 1, n do mean = mean + s[j] end
    mean = mean / n
    local ss = 0
    for j = 1, n do ss = ss + (s[j] - mean) ^ 2 end
    local sd
    if std == "sample" then sd = (n > 1) and math.sqrt(ss / (n - 1)) or 0
    else sd = math.sqrt(ss / n) end
    for j = 1, n do out[j] = (sd == 0) and 0 or (s[j] - mean) / sd end
  else
    error("normalize " .. how)
  end
  return out
end

local function median(t)
  table.sort(t)
  local m = #t
  if m % 2 == 1 then return t[(m + 1) / 2] end
  return (t[m / 2] + t[m / 2 + 1]) / 2
end

-- -> { {id, score, ranks, scores} } in the expected order
local function reference(lists, method, params)
  params = params or {}
  local order, first, best, count = {}, {}, {}, {}
  for _, l in ipairs(lists) do
    for j, it in ipairs(l.items) do
      if first[it.id] == nil then
        order[#order + 1] = it.id
        first[it.id] = #order
        best[it.id] = j
        count[it.id] = 0
      end
      best[it.id] = math.min(best[it.id], j)
      count[it.id] = count[it.id] + 1
    end
  end
  local N, L = #order, #lists
  local F = {}
  for _, id in ipairs(order) do F[id] = 0 end
  local rb = params.rank_base or 1
  local per = {} -- per[id] = { values of lists holding id }
  for _, id in ipairs(order) do per[id] = {} end
  for i, l in ipairs(lists) do
    local w = weight_of(lists, i, params)
    local n = #l.items
    if method == "rrf" then
      local k = params.k or 60
      for j, it in ipairs(l.items) do F[it.id] = F[it.id] + w / (k + (j - 1) + rb) end
    elseif method == "relative_score" or method == "linear" then
      local how = method == "linear" and (params.normalize or "min_max") or "min_max"
      local v = normalize(l, how, params.std)
      for j, it in ipairs(l.items) do F[it.id] = F[it.id] + w * v[j] end
    elseif method == "dbsf" then
      local s = sims(l)
      local mean = 0
      for j = 1, n do mean = mean + s[j] end
      mean = mean / math.max(n, 1)
      local ss = 0
      for j = 1, n do ss = ss + (s[j] - mean) ^ 2 end
      local sd = n > 1 and math.sqrt(ss / (n - 1)) or 0
      for j, it in ipairs(l.items) do
        local v
        if n < 2 or sd == 0 then v = 0.5
        else v = (s[j] - (mean - 3 * sd)) / ((mean + 3 * sd) - (mean - 3 * sd)) end
        F[it.id] = F[it.id] + w * v
      end
    elseif method:match("^comb") then
      local v = normalize(l, params.normalize or "none", params.std)
      for j, it in ipairs(l.items) do table.insert(per[it.id], w * v[j]) end
    elseif method == "isr" then
      for j, it in ipairs(l.items) do F[it.id] = F[it.id] + w / (j * j) end
    elseif method == "borda" then
      local held = {}
      for j, it in ipairs(l.items) do
        held[it.id] = true
        F[it.id] = F[it.id] + w * (N - (j - 1))
      end
      -- remaining points N-n, ..., 1 shared equally by the N-n documents left out
      local rem = 0
      for p = 1, N - n do rem = rem + p end
      for _, id in ipairs(order) do
        if not held[id] then F[id] = F[id] + w * rem / (N - n) end
      end
    elseif method == "mrr" then
      for j, it in ipairs(l.items) do F[it.id] = F[it.id] + w / j end
    else
      error(method)
    end
  end
  for _, id in ipairs(order) do
    local t = per[id]
    if method == "combsum" then F[id] = 0; for _, x in ipairs(t) do F[id] = F[id] + x end
    elseif method == "combmnz" then
      local s = 0; for _, x in ipairs(t) do s = s + x end
      F[id] = s * #t
    elseif method == "combanz" then
      local s = 0; for _, x in ipairs(t) do s = s + x end
      F[id] = s / #t
    elseif method == "combmax" then F[id] = math.max(unpack(t))
    elseif method == "combmin" then F[id] = math.min(unpack(t))
    elseif method == "combmed" then F[id] = median(t)
    elseif method == "isr" then F[id] = F[id] * count[id]
    elseif method == "mrr" then F[id] = F[id] / L
    end
  end
  local scale = 0
  for _, id in ipairs(order) do scale = math.max(scale, math.abs(F[id])) end
  local sorted = {}
  for i, id in ipairs(order) do sorted[i] = id end
  table.sort(sorted, function(a, b)
    if math.abs(F[a] - F[b]) > REL * scale then return F[a] > F[b] end
    if best[a] ~= best[b] then return best[a] < best[b] end
    return first[a] < first[b]
  end)
  local out = {}
  for t, id in ipairs(sorted) do
    local ranks, scores = {}, {}
    for i, l in ipairs(lists) do
      local name = l.name or tostring(i - 1)
      for j, it in ipairs(l.items) do
        if it.id == id then ranks[name] = j; scores[name] = it.score end
      end
    end
    out[t] = { id = id, score = F[id], ranks = ranks, scores = scores }
  end
  if params.top_n then for t = #out, params.top_n + 1, -1 do out[t] = nil end end
  return out
end

---------------------------------------------------------------------------------------------
-- random inputs

local POOL = { "a", "b", "c", "d", "e", "f", "g", "h" }

local function shuffled(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  for i = #c, 2, -1 do
    local j = math.random(i)
    c[i], c[j] = c[j], c[i]
  end
  return c
end

local function rscore(style)
  if style == 1 then return math.random(0, 4) / 2 end          -- ties
  if style == 2 then return math.floor(math.random() * 1e6) / 1e6 end
  return math.floor((math.random() * 20 - 5) * 1e4) / 1e4       -- negatives too
end

local function random_lists(opts)
  opts = opts or {}
  local nl = math.random(1, 4)
  local lists = {}
  for i = 1, nl do
    local n = math.random(0, 6)
    if opts.nonempty and n == 0 then n = 1 end
    if math.random() < 0.1 then n = 0 end
    local ids = shuffled(POOL)
    local style = math.random(1, 3)
    local kind = (math.random() < 0.4) and "distance" or nil
    local items = {}
    for j = 1, n do
      local s = rscore(style)
      if kind == "distance" then s = math.abs(s) / 10 end
      items[j] = { id = ids[j], score = s }
    end
    -- sorted best first (distance ascending) most of the time; as given otherwise
    if math.random() < 0.8 then
      table.sort(items, function(x, y)
        if kind == "distance" then return x.score < y.score end
        return x.score > y.score
      end)
    end
    lists[i] = { name = "l" .. i, kind = kind, items = items }
    if math.random() < 0.25 then lists[i].weight = math.random(0, 6) / 2 end
  end
  return lists
end

local function random_params(lists, method)
  local p = {}
  local r = math.random()
  if r < 0.3 then
    p.weights = {}
    for i = 1, #lists do p.weights[i] = math.random(0, 8) / 4 end
  elseif r < 0.5 then
    p.weights = {}
    for i = 1, #lists do if math.random() < 0.7 then p.weights[lists[i].name] = math.random(1, 8) / 4 end end
    if next(p.weights) == nil then p.weights = nil end
  end
  if method == "rrf" then
    if math.random() < 0.5 then p.k = math.random(0, 100) / 2 end
    if math.random() < 0.4 then p.rank_base = 0; if p.k == 0 then p.k = 1 end end
  end
  if method == "linear" or method:match("^comb") then
    local norms = { "none", "min_max", "max", "sum", "z_score", "rank" }
    if math.random() < 0.85 then p.normalize = norms[math.random(#norms)] end
    if math.random() < 0.5 then p.std = "sample" end
  end
  return p
end

---------------------------------------------------------------------------------------------
-- comparison

local function close(a, b, scale)
  return math.abs(a - b) <= REL * math.max(1, scale or 0, math.abs(a))
end

local function dump(x) return cjson.encode(x) end

local function compare(expected, got, ctx)
  assert(type(got) == "table", ctx .. ": no result: " .. dump(got))
  assert(#expected == #got, ("%s: %d results expected, got %d\nexp %s\ngot %s"):format(
    ctx, #expected, #got, dump(expected), dump(got)))
  local scale = 0
  for _, r in ipairs(expected) do scale = math.max(scale, math.abs(r.score)) end
  for t, e in ipairs(expected) do
    local g = got[t]
    if g.id ~= e.id then
      assert(false, ("%s: position %d: expected %s, got %s\nexp %s\ngot %s"):format(
        ctx, t, tostring(e.id), tostring(g.id), dump(expected), dump(got)))
    else
      assert(close(e.score, g.score, scale), ("%s: %s score expected %.17g got %.17g\nexp %s\ngot %s"):format(
        ctx, e.id, e.score, g.score, dump(expected), dump(got)))
      for name, rk in pairs(e.ranks) do
        assert(g.ranks[name] == rk, ctx .. ": ranks of " .. e.id .. " " .. dump(g.ranks))
        assert(close(g.scores[name], e.scores[name], 0), ctx .. ": scores of " .. e.id .. " " .. dump(g.scores))
      end
      for name in pairs(g.ranks) do assert(e.ranks[name], ctx .. ": extra rank " .. name) end
    end
  end
end

local METHODS = { "rrf", "relative_score", "linear", "dbsf", "combsum", "combmnz", "combmax",
                  "combmin", "combmed", "combanz", "isr", "borda", "mrr" }

local function to_lib(lists)
  local out = {}
  for i, l in ipairs(lists) do
    out[i] = { name = l.name, kind = l.kind, weight = l.weight, items = l.items }
  end
  return out
end

return { reference = reference, random_lists = random_lists, random_params = random_params,
         compare = compare, close = close, dump = dump, to_lib = to_lib, METHODS = METHODS }
