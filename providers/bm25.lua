-- The embedded default provider: Okapi BM25 / BM25F over the request's own documents (no I/O).
-- Options (README "The embedded bm25 model"):
--   k1 (term saturation, 1.2), b (length normalisation, 0.75),
--   language (a Snowball stemmer: english, french, ...; "none" = exact words; default none),
--   stopwords (true = the language's shipped list, false = none, or a list of words),
--   fields ({ title = 2, text = 1, <rank field> = 1 }: BM25F weights of object documents),
--   feedback (false, or { docs = 10, terms = 20, weight = 0.5 }: pseudo-relevance feedback),
--   threads ("auto" = the CPUs idle when the request is scored, or 1 to 4: threads that scan
--   one large request).
-- With return_score "all" the output carries each document's matched terms (stems).
local core = require "rerank.core"
local S = require "rerank.config.schema"
local docs_mod = require "rerank.engine.documents"
local stoplists = require "rerank.bm25.stopwords"

local type, ipairs = type, ipairs
local fail, fail_type, describe = S.fail, S.fail_type, S.describe

local EMPTY = {}
local DEFAULT_WEIGHTS = { title = 2, text = 1 }

-- config checks (errors are located as file:line:col by the config loader)
local function check_language(_, v, path)
  if type(v) ~= "string" then fail_type(path, "a string", v) end
  local names = core.stem_languages()
  if v == "none" then return v end
  for _, n in ipairs(names) do if n == v then return v end end
  names[#names + 1] = "none"
  local s = S.did_you_mean(v, names)
  fail(path, ('unknown language %s (%s)'):format(describe(v),
    s and ('did you mean "' .. s .. '"?') or ("one of: " .. table.concat(names, ", "))))
end

local function check_stopwords(_, v, path)
  if type(v) == "boolean" then return v end
  if not S.is_list(v) then fail_type(path, "true, false or a list of words", v) end
  local out = {}
  for i, w in ipairs(v) do
    if type(w) ~= "string" or w == "" then fail_type(S.idx_path(path, i), "a non-empty string", w) end
    out[i] = w:lower()
  end
  return out
end

local function weight(v, path)
  if type(v) ~= "number" or v ~= v or v < 0 or v > 1000 then fail_type(path, "a number from 0 to 1000", v) end
  return v
end

local function check_fields(_, v, path)
  if not S.is_mapping(v) then fail_type(path, "a mapping of field name to weight (title: 2, text: 1)", v) end
  local out = {}
  for _, k in ipairs(S.sorted_keys(v)) do out[k] = weight(v[k], S.key_path(path, k)) end
  return out
end

local FEEDBACK = { type = "record", fields = {
  { "docs", { type = "integer", min = 1, max = 100, default = 10 } },
  { "terms", { type = "integer", min = 1, max = 200, default = 20 } },
  { "weight", { type = "number", min = 0, max = 10, default = 0.5 } },
} }

local function check_feedback(_, v, path, ctx)
  if v == false then return false end
  if v == true then v = {} end
  if not S.is_mapping(v) then fail_type(path, "false, true or a mapping with docs, terms, weight", v) end
  return S.check(FEEDBACK, v, path, ctx)
end

-- "auto", or 1 to core.bm25_max_threads threads scanning one request's documents
local function check_threads(_, v, path)
  if v == "auto" then return v end
  if type(v) ~= "number" or v ~= math.floor(v) or v < 1 or v > core.bm25_max_threads then
    fail_type(path, ('"auto" or an integer from 1 to %d'):format(core.bm25_max_threads), v)
  end
  return v
end

-- One analyzer per options table and Lua state (worker): libstemmer is not thread-safe,
-- and its word -> stem cache serves every request of the worker.
local analyzers = setmetatable({}, { __mode = "k" })

local function analyzer(opts)
  local an = analyzers[opts]
  if an ~= nil then return an or nil end
  local lang = opts.language or "none"
  local stop = opts.stopwords
  if stop == nil or stop == true then
    stop = lang ~= "none" and stoplists[lang] or nil
  elseif stop == false then
    stop = nil
  end
  if lang == "none" and not stop then
    an = false
  else
    local err
    an, err = core.analyzer(lang, stop)
    if not an then error("bm25: " .. err) end
  end
  analyzers[opts] = an
  return an or nil
end

local function title_of(d)
  if docs_mod.is_lazy(d) then return false end -- a string document (no title), still bytes
  local t = d.title
  if t == nil and type(d.raw) == "table" then t = d.raw.title end
  if type(t) == "string" and t ~= "" then return t end
  return false
end

-- The fields scored: without rank_fields the text and (when a document has one) the
-- title; with rank_fields those fields, the text (when listed) first (truncation applies
-- to it). Returns names (field 1 may be false: no text), weights.
local function field_plan(opts, req)
  local fw = opts.fields or EMPTY
  local names
  local rf = req.rank_fields
  if docs_mod.useful_fields(rf) then
    names = { false }
    local seen = {}
    for _, f in ipairs(rf) do
      if type(f) == "string" and not seen[f] then
        seen[f] = true
        if f == "text" then names[1] = "text" else names[#names + 1] = f end
      end
    end
  else
    names = { "text" }
    for _, d in ipairs(req.documents) do
      if title_of(d) then names[2] = "title"; break end
    end
  end
  local weights = {}
  for i, f in ipairs(names) do weights[i] = f and (fw[f] or DEFAULT_WEIGHTS[f] or 1) or 0 end
  return names, weights
end

local function field_value(d, f)
  if f == "text" then return d.text end
  if f == "title" then return title_of(d) end
  return docs_mod.field_text(d.raw, f) or false
end

return {
  name = "bm25",
  score_kind = "bm25", -- lua/rerank/score.lua
  options = {
    k1 = { type = "number", min = 0.001, max = 100 },
    b = { type = "number", min = 0, max = 1 },
    language = { type = "string", check = check_language },
    stopwords = { type = "table", check = check_stopwords },
    fields = { type = "table", check = check_fields },
    feedback = { type = "table", check = check_feedback },
    threads = { check = check_threads },
  },
  handles = { max_tokens_per_document = true, rank_fields = true },
  images = "text", -- image documents are scored on their text alone (an image-only one scores 0)
  score = function(model, req)
    local opts = model.options or EMPTY
    -- truncate "none" scores the whole text (README: max_tokens_per_document applies to start/end)
    local max = req.truncate ~= "none" and req.max_tokens_per_document or nil
    local docs = req.documents
    local names, weights = field_plan(opts, req)
    local nf = #names
    local texts
    if nf == 1 then -- the documents themselves: core.bm25 reads a lazy text (docs.lazy) in place
      texts = docs
    else
      texts = {}
      local k = 0
      for i = 1, #docs do
        local d = docs[i]
        for f = 1, nf do
          k = k + 1
          texts[k] = names[f] and field_value(d, names[f]) or false
        end
      end
    end
    local fb = opts.feedback
    local want = req.return_score == "all"
    -- one tokenizer pass: the scorer also counts the documents' tokens (after truncation)
    local scores, doc_tokens, matched = core.bm25(req.query, texts, {
      k1 = opts.k1 or 1.2, b = opts.b or 0.75,
      max_tokens = max, keep_end = req.truncate == "start",
      analyzer = analyzer(opts), fields = nf, weights = nf > 1 and weights or nil,
      feedback = fb or nil, matches = want, threads = opts.threads,
    })
    local tokens = doc_tokens + core.count_tokens(req.query) * #docs
    return { scores = scores, usage = { prompt_tokens = tokens }, matched_terms = matched }
  end,
}
