-- Shared helpers for LLM rerankers (providers/openai_llm.lua, providers/openai_listwise.lua)
-- and prompt templates (lua/rerank/llm/templates/*.lua). Pure functions: no I/O except loading
-- template files and reading OPENAI_API_KEY-style environment variables.
--
-- Templates
--   llm.load_template(file)            -> tpl | nil, err   (loads and checks one file, cached)
--   llm.find_template(name, dirs)      -> file | nil       (name.lua in dirs, or a path)
--   llm.template_names(dirs)           -> sorted names of the templates in dirs
--   llm.template(model, default_name)  -> tpl | nil, err   (model.template_file, else
--                                         model.template or default_name in model.template_paths
--                                         or the built-in lua/rerank/llm/templates)
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
-- Parsing model output: lua/rerank/llm/parse.lua (`rerank.llm.parse`), which templates require
--   llm_parse.extract_json(text)             -> value | nil, err   (prose, code fences, trailing commas)
--   llm_parse.to_number(v)                   -> x, coerced | nil   ("0.8", "80%", "8/10", true)
--   llm_parse.clamp(x, lo, hi)               -> x', changed
--   llm_parse.find_score(obj)                -> raw score value | nil
--   llm_parse.score_of(v, lo, hi)            -> score, repairs | nil   (coerce + clamp)
--   llm_parse.match_items(items, window)     -> scores {[i]}, repairs  (LanceDB answers: by id, then
--                                         by content, then by position)
--   llm_parse.parse_permutation(text, n)     -> perm, repairs   (RankGPT's receive_permutation)
--   llm_parse.repair_permutation(ids, n)     -> perm, repairs
--   llm_parse.windows(m, window, step)       -> { {first, last}, ... } back to front, start clamped
--   llm_parse.yes_probability(choice)        -> P(yes) from logprobs | nil
--
-- Text
--   llm.py_repr(v)                     -> Python repr of a string, number, list or dict
--   llm.words(s, max)                  -> first max whitespace-separated words, single-spaced
--   llm.doc_text(req, doc)             -> the text sent for a document (max_tokens_per_document)
--   llm.instruction(model, req)        -> req.instruction, else model.instruction, else nil
local json = require "rerank.json"
local paths = require "rerank.config.paths"
local U = require "rerank.provider_util"
local upstream = require "rerank.engine.upstream"
local errors = require "rerank.engine.errors"

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local floor = math.floor
local concat = table.concat
local byte, char, sub, find, format = string.byte, string.char, string.sub, string.find, string.format
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
  return paths.join(paths.root(), "lua/rerank/llm/templates")
end

local KINDS = { list = true, pointwise = true, listwise = true }

function llm.load_template(file)
  local t = cache[file]
  if t then return t end
  local tpl, err = paths.load_table(file, "template")
  if not tpl then return nil, err end
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
  return paths.lua_names(dirs)
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
  local ok, out, perr = xpcall(tpl.parse, errors.traceback, ans.text, ctx)
  if not ok then -- the template's bug: the traceback to the error log, no paths in the answer
    errors.log_error(("template %q (model %q) raised in parse: %s"):format(tostring(tpl.name), tostring(model.name), out))
    local first = errors.strip_paths(tostring(out):match("^[^\n]*"))
    return "unparseable", ("template %q raised: %s"):format(tostring(tpl.name), first), ans.usage
  end
  if out == nil then return "unparseable", tostring(perr or "no result"), ans.usage end
  return "ok", out, ans.usage
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

-- An LLM provider's combine answer from its call state: the scores, the usage summed over
-- the calls (llm.add_usage; nil when none was reported), degraded, repairs and score_kind.
function llm.combined(state, scores, score_kind)
  local usage = state.usage and next(state.usage) and state.usage or nil
  return {
    scores = scores, usage = usage, degraded = state.degraded or nil,
    repairs = state.repairs or 0, score_kind = score_kind,
  }
end

return llm
