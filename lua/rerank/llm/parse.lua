-- Reading LLM rerankers' output (llm.lua re-exports all of it as llm.<name>; its header
-- lists the functions): JSON in prose, numbers and scores, list answers matched to their
-- window, permutations (RankGPT), windows, yes/no probabilities from logprobs. Pure functions.
local json = require "rerank.json"
local U = require "rerank.provider_util"

local type, pairs, ipairs, tonumber = type, pairs, ipairs, tonumber
local floor, huge, exp = math.floor, math.huge, math.exp
local sort = table.sort
local byte, sub, find, format, lower = string.byte, string.sub, string.find, string.format, string.lower
local null = json.null

local M = {}

local function val(v)
  if v == null then return nil end
  return v
end

---------------------------------------------------------------------------------------------
-- JSON in model output

-- end position of the balanced {...} or [...] starting at i (strings and escapes respected)
local function balanced_end(s, i)
  local depth, n, in_str = 0, #s, false
  local j = i
  while j <= n do
    local c = byte(s, j)
    if in_str then
      if c == 92 then j = j + 1 -- backslash
      elseif c == 34 then in_str = false end
    elseif c == 34 then
      in_str = true
    elseif c == 123 or c == 91 then
      depth = depth + 1
    elseif c == 125 or c == 93 then
      depth = depth - 1
      if depth == 0 then return j end
    end
    j = j + 1
  end
  return nil
end

local function try_decode(s)
  local v = json.decode(s)
  if v ~= nil then return v end
  -- common slips: trailing commas, Python-style single quotes
  local fixed = s:gsub(",%s*([}%]])", "%1")
  v = json.decode(fixed)
  if v ~= nil then return v end
  if not find(fixed, '"', 1, true) and find(fixed, "'", 1, true) then
    v = json.decode((fixed:gsub("'", '"')))
    if v ~= nil then return v end
  end
  return nil
end

local MAX_STARTS = 64

function M.extract_json(text)
  if type(text) ~= "string" then return nil, "no text" end
  local trimmed = text:match("^%s*(.-)%s*$")
  if trimmed == "" then return nil, "empty answer" end
  local v = try_decode(trimmed)
  if v ~= nil then return v end
  -- ```json ... ``` blocks
  for block in text:gmatch("```[%w_%-]*[ \t]*\r?\n?(.-)```") do
    v = try_decode(block:match("^%s*(.-)%s*$"))
    if type(v) == "table" then return v end
  end
  -- the first balanced object that decodes, else the first array ("[1]" in prose is
  -- likelier a citation than the answer)
  for _, open in ipairs({ "{", "%[" }) do
    local starts, pos = 0, 1
    while starts < MAX_STARTS do
      local i = find(text, open, pos)
      if not i then break end
      starts = starts + 1
      local j = balanced_end(text, i)
      if j then
        v = try_decode(sub(text, i, j))
        if type(v) == "table" then return v end
      end
      pos = i + 1
    end
  end
  return nil, "no JSON found in the answer"
end

---------------------------------------------------------------------------------------------
-- numbers and scores

local function finite(x)
  return type(x) == "number" and x == x and x > -huge and x < huge
end

-- x, coerced (true when v was not already a number) | nil
function M.to_number(v)
  v = val(v)
  if type(v) == "number" then
    if finite(v) then return v, false end
    return nil
  end
  if type(v) == "boolean" then return v and 1 or 0, true end
  if type(v) ~= "string" then return nil end
  local s = v:match("^%s*(.-)%s*$"):gsub("[%.,;]$", "")
  local x = tonumber(s)
  if finite(x) then return x, true end
  local pct = s:match("^([+-]?%d*%.?%d+)%s*%%$")
  if pct then return tonumber(pct) / 100, true end
  local a, b = s:match("^([+-]?%d*%.?%d+)%s*/%s*(%d*%.?%d+)$")
  if a and tonumber(b) and tonumber(b) > 0 then return tonumber(a) / tonumber(b), true end
  return nil
end

function M.clamp(x, lo, hi)
  lo, hi = lo or 0, hi or 1
  if x < lo then return lo, true end
  if x > hi then return hi, true end
  return x, false
end

local SCORE_KEYS = { "relevance_score", "score", "relevance", "rating", "relevancy", "value" }

local function score_key(obj)
  for _, k in ipairs(SCORE_KEYS) do
    local v = val(obj[k])
    if v ~= nil then return v end
  end
  -- case- and separator-insensitive: "Relevance Score", "relevanceScore"
  for k, v in pairs(obj) do
    if type(k) == "string" then
      local nk = lower(k):gsub("[%s_%-]", "")
      if nk == "relevancescore" or nk == "score" or nk == "relevance" then
        v = val(v)
        if v ~= nil then return v end
      end
    end
  end
  return nil
end

-- the score in a decoded answer: a number, or a key of an object (one level of nesting)
function M.find_score(v)
  v = val(v)
  if type(v) ~= "table" then return v end
  if v[1] ~= nil then return M.find_score(v[1]) end
  local s = score_key(v)
  if s ~= nil then return s end
  for _, x in pairs(v) do
    x = val(x)
    if type(x) == "table" and x[1] == nil then
      s = score_key(x)
      if s ~= nil then return s end
    end
  end
  return nil
end

-- score in [lo, hi], repairs (0 or 1) | nil when v carries no number
function M.score_of(v, lo, hi)
  local x, coerced = M.to_number(v)
  if not x then return nil end
  local y, changed = M.clamp(x, lo, hi)
  return y, (coerced or changed) and 1 or 0
end

-- a bare number in prose ("Relevance: 0.8", "I'd rate it 7/10")
function M.number_in_text(text)
  if type(text) ~= "string" then return nil end
  local a, b = text:match("([+-]?%d*%.?%d+)%s*/%s*(%d+%.?%d*)")
  if a and tonumber(b) and tonumber(b) > 0 then return tonumber(a) / tonumber(b) end
  local pct = text:match("([+-]?%d*%.?%d+)%s*%%")
  if pct then return tonumber(pct) / 100 end
  local x = text:match("[+-]?%d*%.?%d+")
  return x and tonumber(x) or nil
end

---------------------------------------------------------------------------------------------
-- LanceDB-style answers: items { id?, content, relevance_score } matched back to the window

local function norm_text(s)
  return lower(s):gsub("%s+", " "):match("^%s*(.-)%s*$")
end

-- the items list of an answer: {"documents": [...]}, a bare list, or the first list of
-- objects under any key (a model that renamed the key)
function M.answer_items(j)
  j = val(j)
  if type(j) ~= "table" then return nil end
  if j[1] ~= nil then return j, false end
  local d = val(j.documents)
  if type(d) == "table" and (d[1] ~= nil or next(d) == nil) then return d, false end
  local keys = {}
  for k in pairs(j) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  sort(keys)
  for _, k in ipairs(keys) do
    local v = val(j[k])
    if type(v) == "table" and type(v[1]) == "table" then return v, true end
  end
  return nil
end

local ID_KEYS = { "id", "doc_id", "document_id", "index" }
local CONTENT_KEYS = { "content", "text", "document", "passage" }

local function item_id(item)
  for _, k in ipairs(ID_KEYS) do
    local v = val(item[k])
    if v ~= nil then
      local x = tonumber(type(v) == "string" and v:match("^%s*%[?%s*(%-?%d+)%s*%]?%s*$") or v)
      if x and x == floor(x) then return x end
      return nil
    end
  end
  return nil
end

local function item_content(item)
  for _, k in ipairs(CONTENT_KEYS) do
    local v = val(item[k])
    if type(v) == "string" then return v end
    if type(v) == "table" and type(val(v.text)) == "string" then return v.text end
  end
  return nil
end

-- window: { { id = integer, text = string }, ... } (ids as sent in the prompt).
-- Returns scores {[i] = score in [0,1] | nil for a document the answer left out or gave no
-- usable score}, repairs: each item matched by position only, each extra or duplicate
-- item, each score that was coerced or clamped. (Documents left without a score are the
-- caller's repairs: it fills them in.)
function M.match_items(items, window)
  local n = #window
  local scores, taken, repairs = {}, {}, 0
  local by_id, by_text, by_norm = {}, {}, {}
  for i, d in ipairs(window) do
    if d.id ~= nil then by_id[d.id] = i end
    local t = d.text or ""
    by_text[t] = by_text[t] or {}
    local bt = by_text[t]
    bt[#bt + 1] = i
    local nt = norm_text(t)
    by_norm[nt] = by_norm[nt] or {}
    local bn = by_norm[nt]
    bn[#bn + 1] = i
  end
  local function first_free(list)
    for _, i in ipairs(list or {}) do
      if not taken[i] then return i end
    end
    return nil
  end
  local function by_prefix(c)
    c = norm_text(c)
    if #c < 16 then return nil end
    local found
    for i, d in ipairs(window) do
      if not taken[i] then
        local t = norm_text(d.text or "")
        if sub(t, 1, #c) == c or sub(c, 1, #t) == t and #t >= 16 then
          if found then return nil end -- ambiguous
          found = i
        end
      end
    end
    return found
  end
  local unplaced = {}
  for k, item in ipairs(items) do
    local i
    if type(item) == "table" then
      local id = item_id(item)
      if id ~= nil and by_id[id] and not taken[by_id[id]] then i = by_id[id] end
      local content = i == nil and item_content(item)
      if content then
        i = first_free(by_text[content]) or first_free(by_norm[norm_text(content)]) or by_prefix(content)
      end
      if i then
        taken[i] = true
        local s, r = M.score_of(M.find_score(item), 0, 1)
        scores[i] = s
        repairs = repairs + (r or 0)
      elseif id == nil and not content then
        unplaced[#unplaced + 1] = k -- neither id nor content: LanceDB's positional reading
      else
        repairs = repairs + 1 -- an unknown or duplicate document
      end
    else
      local s = M.to_number(item)
      if s then unplaced[#unplaced + 1] = k else repairs = repairs + 1 end
    end
  end
  for _, k in ipairs(unplaced) do
    local item = items[k]
    if k <= n and not taken[k] then
      taken[k] = true
      local s, r = M.score_of(type(item) == "table" and M.find_score(item) or item, 0, 1)
      scores[k] = s
      repairs = repairs + 1 + (r or 0)
    else
      repairs = repairs + 1
    end
  end
  return scores, repairs
end

---------------------------------------------------------------------------------------------
-- RankGPT permutations

-- ids: 1-based identifiers as the model wrote them. Keeps the first occurrence of each id in
-- 1..n, drops the rest, appends the missing ids in their prior order.
function M.repair_permutation(ids, n)
  local seen, out, repairs = {}, {}, 0
  for _, x in ipairs(ids or {}) do
    x = tonumber(x)
    if x and x == floor(x) and x >= 1 and x <= n and not seen[x] then
      seen[x] = true
      out[#out + 1] = x
    else
      repairs = repairs + 1
    end
  end
  for x = 1, n do
    if not seen[x] then
      out[#out + 1] = x
      repairs = repairs + 1
    end
  end
  return out, repairs
end

-- RankGPT's receive_permutation: the numbers in the answer, in order. When the answer has
-- bracketed identifiers ("[3] > [1]"), only those count, so numbers in surrounding prose
-- ("here are the 3 passages") are not read as ids.
function M.parse_permutation(text, n)
  local ids = {}
  text = type(text) == "string" and text or ""
  for d in text:gmatch("%[%s*(%d+)%s*%]") do ids[#ids + 1] = tonumber(d) end
  if #ids == 0 then
    for d in text:gmatch("%d+") do ids[#ids + 1] = tonumber(d) end
  end
  return M.repair_permutation(ids, n)
end

-- Sliding windows over positions 1..m, back to front: [m-window+1, m], then `step` up, the
-- first window's start clamped to 1 (RankGPT skips a leftover top window; this does not).
function M.windows(m, window, step)
  local out = {}
  if m <= 0 then return out end
  window = math.max(1, window or 20)
  step = math.max(1, step or 10)
  local last = m
  while true do
    local first = math.max(1, last - window + 1)
    out[#out + 1] = { first, last }
    if first == 1 then break end
    last = last - step
  end
  return out
end

---------------------------------------------------------------------------------------------
-- yes/no with logprobs

local function yes_no(token)
  if type(token) ~= "string" then return nil end
  local t = lower(token):gsub("[%s%p]", "")
  if t == "yes" or t == "true" then return "yes" end
  if t == "no" or t == "false" then return "no" end
  return nil
end
M.yes_no = yes_no

-- P(yes) / (P(yes) + P(no)) over the first token's top logprobs (OpenAI chat format
-- logprobs.content[1].top_logprobs, or the completions format logprobs.top_logprobs[1]).
function M.yes_probability(choice)
  local lp = type(choice) == "table" and val(choice.logprobs)
  if type(lp) ~= "table" then return nil end
  local p = { yes = 0, no = 0 }
  local first, found = nil, false
  local content = val(lp.content)
  if type(content) == "table" then
    -- the first token that is not whitespace
    for _, t in ipairs(content) do
      if type(t) == "table" and type(val(t.token)) == "string" and t.token:find("%S") then
        first = t
        break
      end
    end
    if not first then return nil end
    local top = val(first.top_logprobs)
    for _, alt in ipairs(type(top) == "table" and top or {}) do
      local k = type(alt) == "table" and yes_no(val(alt.token))
      local l = k and U.num(alt.logprob)
      if l then p[k] = p[k] + exp(l); found = true end
    end
    if not found then
      local k, l = yes_no(val(first.token)), U.num(first.logprob)
      if k and l then
        local x = tonumber(format("%.12g", exp(l)))
        if k == "yes" then return x end
        return 1 - x
      end
      return nil
    end
  else
    local tops = val(lp.top_logprobs)
    local top = type(tops) == "table" and val(tops[1])
    if type(top) ~= "table" then return nil end
    for tok, l in pairs(top) do
      local k = yes_no(tok)
      l = U.num(l)
      if k and l then p[k] = p[k] + exp(l); found = true end
    end
    if not found then return nil end
  end
  local total = p.yes + p.no
  if total <= 0 then return nil end
  return tonumber(format("%.12g", p.yes / total)) -- exp(log(p)) noise off: 0.95, not 0.9500000000000001
end

return M
