-- Shared helpers for LLM rerankers (providers/openai_llm.lua, providers/openai_listwise.lua)
-- and prompt templates (lua/rerank/templates/*.lua). Pure functions: no I/O except loading
-- template files and reading OPENAI_API_KEY-style environment variables.
--
-- Templates
--   llm.load_template(file)            -> tpl | nil, err   (loads and checks one file, cached)
--   llm.find_template(name, dirs)      -> file | nil       (name.lua in dirs, or a path)
--   llm.template_names(dirs)           -> sorted names of the templates in dirs
--   llm.template(model, default_name)  -> tpl | nil, err   (model.template_file, else
--                                         model.template or default_name in model.template_paths
--                                         or the built-in lua/rerank/templates)
--   A template file returns { name =, kind = "list"|"pointwise"|"listwise",
--     messages = function(query, doc_or_window, opts) -> chat messages,
--     parse = function(text, ctx) -> result | nil, err, request = { extra chat body fields }? }
--   result: pointwise { score = x, repairs = n } (or a number); list { scores = {[i] = x},
--   repairs = n } aligned with the window; listwise { permutation = {1-based}, repairs = n }.
--
-- Chat requests and answers (OpenAI-compatible /v1/chat/completions)
--   llm.chat_spec(model, p, req, messages, fields) -> call spec (POST, bearer key, JSON body
--                                         with model/messages/fields, extra_body merged)
--   llm.read_answer(res)               -> { text, choice, usage } | nil, err
--   llm.retryable(res)                 -> true for transport errors, 408, 409, 429 and 5xx
--   llm.outcome(model, tpl, res, ctx)  -> "ok", result, usage | "unparseable", msg, usage |
--                                         "failed", err, nil, retryable
--
-- Parsing model output
--   llm.extract_json(text)             -> value | nil, err   (prose, code fences, trailing commas)
--   llm.to_number(v)                   -> x, coerced | nil   ("0.8", "80%", "8/10", true)
--   llm.clamp(x, lo, hi)               -> x', changed
--   llm.find_score(obj)                -> raw score value | nil
--   llm.score_of(v, lo, hi)            -> score, repairs | nil   (coerce + clamp)
--   llm.match_items(items, window)     -> scores {[i]}, repairs  (LanceDB answers: by id, then
--                                         by content, then by position)
--   llm.parse_permutation(text, n)     -> perm, repairs   (RankGPT's receive_permutation)
--   llm.repair_permutation(ids, n)     -> perm, repairs
--   llm.windows(m, window, step)       -> { {first, last}, ... } back to front, start clamped
--   llm.yes_probability(choice)        -> P(yes) from logprobs | nil
--
-- Text
--   llm.py_repr(v)                     -> Python repr of a string, number, list or dict
--   llm.words(s, max)                  -> first max whitespace-separated words, single-spaced
--   llm.doc_text(req, doc)             -> the text sent for a document (max_tokens_per_document)
--   llm.instruction(model, req)        -> req.instruction, else model.instruction, else nil
local json = require "rerank.json"
local paths = require "rerank.paths"
local U = require "rerank.provider_util"
local upstream = require "rerank.upstream"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local floor, huge, exp = math.floor, math.huge, math.exp
local concat, sort = table.concat, table.sort
local byte, char, sub, find, format, lower = string.byte, string.char, string.sub, string.find, string.format,
  string.lower
local null = json.null

local llm = {}

local function val(v)
  if v == null then return nil end
  return v
end

---------------------------------------------------------------------------------------------
-- templates

local cache = {} -- absolute file -> template table

function llm.builtin_templates()
  return paths.join(paths.root(), "lua/rerank/templates")
end

local KINDS = { list = true, pointwise = true, listwise = true }

function llm.load_template(file)
  local t = cache[file]
  if t then return t end
  local chunk, err = loadfile(file)
  if not chunk then return nil, ("template %s failed to load: %s"):format(file, tostring(err)) end
  local ok, tpl = pcall(chunk)
  if not ok then return nil, ("template %s failed to load: %s"):format(file, tostring(tpl)) end
  if type(tpl) ~= "table" then return nil, ("template %s must return a table (got %s)"):format(file, type(tpl)) end
  if type(tpl.messages) ~= "function" or type(tpl.parse) ~= "function" then
    return nil, ("template %s must have messages(query, doc_or_window, opts) and parse(text, ctx)"):format(file)
  end
  if tpl.kind ~= nil and not KINDS[tpl.kind] then
    return nil, ("template %s: kind must be \"list\", \"pointwise\" or \"listwise\" (got %s)"):format(file,
      tostring(tpl.kind))
  end
  if tpl.request ~= nil and type(tpl.request) ~= "table" then
    return nil, ("template %s: request must be a table"):format(file)
  end
  tpl.name = tpl.name or paths.basename(file):gsub("%.lua$", "")
  tpl.kind = tpl.kind or "pointwise"
  tpl.file = file
  cache[file] = tpl
  return tpl
end

function llm.find_template(name, dirs, base)
  if type(name) ~= "string" or name == "" then return nil end
  if find(name, "/", 1, true) or name:match("%.lua$") then
    local f = paths.abs(name, base)
    return paths.exists(f) and f or nil
  end
  for _, dir in ipairs(dirs or {}) do
    local f = paths.join(dir, name .. ".lua")
    if paths.exists(f) then return f end
  end
  return nil
end

function llm.template_names(dirs)
  local ok, core = pcall(require, "rerank.core")
  local names, seen = {}, {}
  for _, dir in ipairs(dirs or {}) do
    local list = ok and core.listdir and core.listdir(dir) or {}
    for _, f in ipairs(list) do
      local n = f:match("^(.+)%.lua$")
      if n and not seen[n] then
        seen[n] = true
        names[#names + 1] = n
      end
    end
  end
  sort(names)
  return names
end

local function template_dirs(model)
  local dirs = model.template_paths
  if type(dirs) == "table" and #dirs > 0 then return dirs end
  return { llm.builtin_templates() }
end
llm.template_dirs = template_dirs

function llm.template(model, default_name)
  local file = model.template_file
  local name = model.template or default_name
  if not file then
    file = llm.find_template(name, template_dirs(model))
    if not file then
      return nil, ("template %q not found in %s"):format(tostring(name), concat(template_dirs(model), ", "))
    end
  end
  return llm.load_template(file)
end

---------------------------------------------------------------------------------------------
-- chat requests and answers

function llm.instruction(model, req)
  local i = req and req.instruction
  if type(i) == "string" and i ~= "" then return i end
  i = model.instruction
  if type(i) == "string" and i ~= "" then return i end
  return nil
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return setmetatable(out, getmetatable(v))
end

-- fields: extra top-level body fields (template request, options); nil values are skipped
function llm.chat_spec(model, p, req, messages, fields)
  local body = { model = U.model_id(model, p), messages = json.array(messages) }
  for k, v in pairs(fields or {}) do
    if v ~= nil and v ~= null then body[k] = copy(v) end
  end
  body.user = body.user or (req and req.user) or nil
  return U.post(model, p, req or {}, body)
end

-- message.content: a string, or a list of parts ({type = "text", text = ...})
local function content_text(c)
  c = val(c)
  if type(c) == "string" then return c end
  if type(c) == "table" then
    local parts = {}
    for _, part in ipairs(c) do
      if type(part) == "string" then
        parts[#parts + 1] = part
      elseif type(part) == "table" and type(val(part.text)) == "string" then
        parts[#parts + 1] = part.text
      end
    end
    if #parts > 0 then return concat(parts) end
  end
  return nil
end

local function usage_of(j)
  local u = type(j) == "table" and val(j.usage)
  if type(u) ~= "table" then return nil end
  local out = {
    prompt_tokens = U.num(u.prompt_tokens) or U.num(u.input_tokens),
    completion_tokens = U.num(u.completion_tokens) or U.num(u.output_tokens),
    total_tokens = U.num(u.total_tokens),
  }
  if not out.total_tokens and (out.prompt_tokens or out.completion_tokens) then
    out.total_tokens = (out.prompt_tokens or 0) + (out.completion_tokens or 0)
  end
  if not next(out) then return nil end
  return out
end
llm.usage_of = usage_of

-- res: the transport's { status, headers, body } (status < 400). The answer's usage is
-- returned even when the content is unusable (the tokens were spent).
function llm.read_answer(res)
  local j, err = U.decode(res.body)
  if type(j) ~= "table" then return nil, "invalid JSON from upstream: " .. tostring(err or type(j)) end
  local usage = usage_of(j)
  local choices = val(j.choices)
  local choice = type(choices) == "table" and val(choices[1])
  if type(choice) ~= "table" then
    local m = U.message(j)
    return nil, "upstream answer has no choices" .. (m and (": " .. m) or ""), usage
  end
  local msg = val(choice.message)
  local text = type(msg) == "table" and content_text(msg.content)
  if text == nil then text = content_text(choice.text) end -- completions-style servers
  if text == nil then
    local refusal = type(msg) == "table" and val(msg.refusal)
    return nil, "upstream answer has no message content" ..
        (type(refusal) == "string" and (": " .. refusal) or ""), usage
  end
  return { text = text, choice = choice, usage = usage }
end

function llm.retryable(res)
  if not res or res.error then return true end
  local s = res.status or 0
  return s == 408 or s == 409 or s == 429 or s >= 500
end

-- One call's result, read with a template:
--   "ok", result, usage            the template parsed the answer
--   "unparseable", message, usage  HTTP 2xx, but no content or nothing the template could read
--   "failed", err, nil, retryable  transport error or HTTP error status (err as upstream.error_for)
-- ctx is passed to tpl.parse with ctx.choice set to the answer's choices[1].
function llm.outcome(model, tpl, res, ctx)
  if type(res) ~= "table" or res.error or (res.status or 0) >= 400 then
    local ok_res = type(res) == "table" and not res.error and res or nil
    local _, e = upstream.error_for(model, ok_res, type(res) == "table" and res.error or "no response")
    return "failed", e, nil, llm.retryable(res)
  end
  local ans, err, usage = llm.read_answer(res)
  if not ans then return "unparseable", err, usage end
  ctx = ctx or {}
  ctx.choice = ans.choice
  local ok, out, perr = pcall(tpl.parse, ans.text, ctx)
  if not ok then return "unparseable", ("template %q raised: %s"):format(tpl.name, tostring(out)), ans.usage end
  if out == nil then return "unparseable", tostring(perr or "no result"), ans.usage end
  return "ok", out, ans.usage
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

function llm.extract_json(text)
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
function llm.to_number(v)
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

function llm.clamp(x, lo, hi)
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
function llm.find_score(v)
  v = val(v)
  if type(v) ~= "table" then return v end
  if v[1] ~= nil then return llm.find_score(v[1]) end
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
function llm.score_of(v, lo, hi)
  local x, coerced = llm.to_number(v)
  if not x then return nil end
  local y, changed = llm.clamp(x, lo, hi)
  return y, (coerced or changed) and 1 or 0
end

-- a bare number in prose ("Relevance: 0.8", "I'd rate it 7/10")
function llm.number_in_text(text)
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
function llm.answer_items(j)
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
function llm.match_items(items, window)
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
        local s, r = llm.score_of(llm.find_score(item), 0, 1)
        scores[i] = s
        repairs = repairs + (r or 0)
      elseif id == nil and not content then
        unplaced[#unplaced + 1] = k -- neither id nor content: LanceDB's positional reading
      else
        repairs = repairs + 1 -- an unknown or duplicate document
      end
    else
      local s = llm.to_number(item)
      if s then unplaced[#unplaced + 1] = k else repairs = repairs + 1 end
    end
  end
  for _, k in ipairs(unplaced) do
    local item = items[k]
    if k <= n and not taken[k] then
      taken[k] = true
      local s, r = llm.score_of(type(item) == "table" and llm.find_score(item) or item, 0, 1)
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
function llm.repair_permutation(ids, n)
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
function llm.parse_permutation(text, n)
  local ids = {}
  text = type(text) == "string" and text or ""
  for d in text:gmatch("%[%s*(%d+)%s*%]") do ids[#ids + 1] = tonumber(d) end
  if #ids == 0 then
    for d in text:gmatch("%d+") do ids[#ids + 1] = tonumber(d) end
  end
  return llm.repair_permutation(ids, n)
end

-- Sliding windows over positions 1..m, back to front: [m-window+1, m], then `step` up, the
-- first window's start clamped to 1 (RankGPT skips a leftover top window; this does not).
function llm.windows(m, window, step)
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
llm.yes_no = yes_no

-- P(yes) / (P(yes) + P(no)) over the first token's top logprobs (OpenAI chat format
-- logprobs.content[1].top_logprobs, or the completions format logprobs.top_logprobs[1]).
function llm.yes_probability(choice)
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

---------------------------------------------------------------------------------------------
-- text

-- Python's str.isprintable() is false for Cc, Cf, Zl, Zp, Zs (but ' '), Co and unassigned
-- code points; this covers all but the unassigned ones.
local NONPRINT = {
  { 0x7F, 0xA0 }, { 0xAD, 0xAD }, { 0x600, 0x605 }, { 0x61C, 0x61C }, { 0x6DD, 0x6DD }, { 0x70F, 0x70F },
  { 0x890, 0x891 }, { 0x8E2, 0x8E2 }, { 0x1680, 0x1680 }, { 0x180E, 0x180E }, { 0x2000, 0x200F },
  { 0x2028, 0x202F }, { 0x205F, 0x2064 }, { 0x2066, 0x206F }, { 0x3000, 0x3000 }, { 0xD800, 0xF8FF },
  { 0xFEFF, 0xFEFF }, { 0xFFF9, 0xFFFB }, { 0xFFFE, 0xFFFF }, { 0x110BD, 0x110BD }, { 0x110CD, 0x110CD },
  { 0x13430, 0x1343F }, { 0x1BCA0, 0x1BCA3 }, { 0x1D173, 0x1D17A }, { 0xE0001, 0xE0001 },
  { 0xE0020, 0xE007F }, { 0xF0000, 0x10FFFF },
}

local function printable(cp)
  if cp < 0x20 then return false end
  if cp < 0x7F then return true end
  for _, r in ipairs(NONPRINT) do
    if cp < r[1] then return true end
    if cp <= r[2] then return false end
  end
  return true
end

local ESC = { [9] = "\\t", [10] = "\\n", [13] = "\\r", [92] = "\\\\" }

-- Python's repr() of a str: single quotes unless the text has ' and no ".
local function py_str(s)
  local q = (find(s, "'", 1, true) and not find(s, '"', 1, true)) and 34 or 39
  local out, i, n = {}, 1, #s
  local plain_from = 1
  local function flush(upto)
    if upto >= plain_from then out[#out + 1] = sub(s, plain_from, upto) end
  end
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      local e = ESC[c]
      if c == q then e = "\\" .. char(q) end
      if not e and (c < 0x20 or c == 0x7F) then e = format("\\x%02x", c) end
      if e then
        flush(i - 1)
        out[#out + 1] = e
        plain_from = i + 1
      end
      i = i + 1
    else
      local len = c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC0 and 2 or 1
      local cp
      if len == 2 then
        local c2 = byte(s, i + 1) or 0
        cp = (c % 0x20) * 0x40 + c2 % 0x40
      elseif len == 3 then
        local c2, c3 = byte(s, i + 1, i + 2)
        cp = (c % 0x10) * 0x1000 + ((c2 or 0) % 0x40) * 0x40 + (c3 or 0) % 0x40
      elseif len == 4 then
        local c2, c3, c4 = byte(s, i + 1, i + 3)
        cp = (c % 0x08) * 0x40000 + ((c2 or 0) % 0x40) * 0x1000 + ((c3 or 0) % 0x40) * 0x40 + (c4 or 0) % 0x40
      end
      if cp and not printable(cp) then
        flush(i - 1)
        if cp < 0x100 then
          out[#out + 1] = format("\\x%02x", cp)
        elseif cp < 0x10000 then
          out[#out + 1] = format("\\u%04x", cp)
        else
          out[#out + 1] = format("\\U%08x", cp)
        end
        plain_from = i + len
      end
      i = i + len
    end
  end
  flush(n)
  return char(q) .. concat(out) .. char(q)
end

-- lists are Lua arrays; dicts are { {key, value}, ... } wrapped by llm.py_dict (ordered)
local dict_mt = {}
function llm.py_dict(pairs_list)
  return setmetatable(pairs_list, dict_mt)
end

function llm.py_repr(v)
  local t = type(v)
  if t == "string" then return py_str(v) end
  if t == "number" then
    if v == floor(v) and v > -1e15 and v < 1e15 then return format("%d", v) end
    return json.number(v)
  end
  if t == "boolean" then return v and "True" or "False" end
  if v == nil or v == null then return "None" end
  if t == "table" then
    local parts = {}
    if getmetatable(v) == dict_mt then
      for i, kv in ipairs(v) do parts[i] = llm.py_repr(kv[1]) .. ": " .. llm.py_repr(kv[2]) end
      return "{" .. concat(parts, ", ") .. "}"
    end
    for i, x in ipairs(v) do parts[i] = llm.py_repr(x) end
    return "[" .. concat(parts, ", ") .. "]"
  end
  return py_str(tostring(v))
end

-- Python's ' '.join(s.split()[:max])
function llm.words(s, max)
  local out = {}
  for w in tostring(s or ""):gmatch("%S+") do
    if max and #out >= max then break end
    out[#out + 1] = w
  end
  return concat(out, " ")
end

-- The document's text, cut to max_tokens_per_document words when the request asks
-- (truncate "none" keeps it whole; "start" keeps the end).
function llm.doc_text(req, d)
  local text = d.text or ""
  local max = req and req.max_tokens_per_document
  if not max or req.truncate == "none" then return text end
  local words = {}
  for w in text:gmatch("%S+") do words[#words + 1] = w end
  if #words <= max then return text end
  if req.truncate == "start" then return concat(words, " ", #words - max + 1, #words) end
  return concat(words, " ", 1, max)
end

---------------------------------------------------------------------------------------------
-- accounting

function llm.add_usage(total, u)
  if type(u) ~= "table" then return total end
  for _, k in ipairs({ "prompt_tokens", "completion_tokens", "total_tokens" }) do
    local x = U.num(u[k])
    if x then total[k] = (total[k] or 0) + x end
  end
  return total
end

return llm
