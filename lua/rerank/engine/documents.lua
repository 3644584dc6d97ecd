-- Document preparation before a provider call (DESIGN §3): rank_fields, local truncation
-- with a fast token estimate, and chunking (max_chunks_per_doc) with the document score
-- taken as the max over its chunks (Cohere semantics). Pure functions, no I/O.
--
--   docs.settings(cfg_documents, model) -> s       { chars_per_token = number | "whitespace",
--                                                   chunk_tokens = n, text_field = "text" }
--   docs.estimate(text, s)              -> tokens  bytes / chars_per_token (rounded up), or
--                                                  whitespace-separated words
--   docs.truncate(text, max, from, s)   -> text, cut   from = "end" (keep the start, default)
--                                                      | "start" (keep the end)
--   docs.chunks(text, size, max, s)     -> { chunk texts }  (at least one; at most max)
--   docs.rank_text(raw, rank_fields)    -> "key: value" lines in rank_fields order | nil
--   docs.field_text(raw, field)         -> the text of an object document's field | nil
--   docs.prepare(req, provider, s)      -> preq, owners | req (nothing to do)
--       preq: a shallow copy of req whose documents are the texts to score (flattened on
--             rank_fields, truncated where the provider cannot, split into chunks);
--       owners[j] = the 1-based index in req.documents of preq.documents[j] (nil when 1:1)
--   docs.collapse(scores, owners, n)    -> n scores, each the max over the document's chunks
--   docs.lazy(index, src, js, je)       -> a string document whose text stays bytes of the
--                                          request body src (the JSON string src[js..je], no
--                                          escapes) until d.text or d.raw is read
--   docs.is_lazy(d)                     -> true while d's text is still only bytes of its body
--   docs.text_bytes(d)                  -> #d.text, without making the string of a lazy one
--
-- Token estimate: the byte length divided by chars_per_token (default 4), rounded up. Bytes
-- rather than code points: a CJK character (3 bytes) is about one token, so bytes/4
-- undercounts less than characters/4 would. "whitespace" counts words instead.
-- Cuts never split a UTF-8 sequence, and prefer a whitespace boundary close to the cut.
local json = require "rerank.json"

local type, tostring, ipairs, pairs = type, tostring, ipairs, pairs
local ceil, floor, max, huge = math.ceil, math.floor, math.max, math.huge
local byte, sub, find, concat = string.byte, string.sub, string.find, table.concat
local null = json.null

local M = {}

---------------------------------------------------------------------------------------------
-- lazy texts: no Lua string per document until a stage reads one. Splicing (json.spliced,
-- core/json_splice.c) and the bm25 scorer (core/lbm25.c) read a lazy text in place.

local json_text = require("rerank.core").json_text
local rawget, rawset, getmetatable, setmetatable = rawget, rawset, getmetatable, setmetatable

-- A lazy document is { src, js, je, index } (one allocation: an array part LuaJIT keeps
-- inside the table; a thousand documents a request make that count): d.src, d.js, d.je and
-- d.index read those slots, d.text and d.raw make the text and keep it under their names.
-- core/json_splice.c reads the slots too.
local SLOT = { src = 1, js = 2, je = 3, index = 4 }
local LAZY = {
  __index = function(d, k)
    if k ~= "text" and k ~= "raw" then
      local at = SLOT[k]
      return at and rawget(d, at)
    end
    local s = json_text(rawget(d, 1), rawget(d, 2), rawget(d, 3))
    rawset(d, "text", s)
    if rawget(d, "raw") == nil then rawset(d, "raw", s) end
    return s
  end,
}

function M.lazy(index, src, js, je)
  return setmetatable({ src, js, je, index }, LAZY)
end

function M.is_lazy(d)
  return getmetatable(d) == LAZY and rawget(d, "text") == nil
end

function M.text_bytes(d)
  if getmetatable(d) == LAZY and rawget(d, "text") == nil then return rawget(d, 3) - rawget(d, 2) - 1 end
  local t = d.text
  return type(t) == "string" and #t or 0
end

M.DEFAULT_CHARS_PER_TOKEN = 4
M.DEFAULT_CHUNK_TOKENS = 512

function M.settings(global, model)
  local s = { chars_per_token = M.DEFAULT_CHARS_PER_TOKEN, chunk_tokens = M.DEFAULT_CHUNK_TOKENS,
              text_field = "text" }
  for _, src in ipairs({ global or {}, model or {} }) do
    if src.chars_per_token ~= nil then s.chars_per_token = src.chars_per_token end
    if src.chunk_tokens ~= nil then s.chunk_tokens = src.chunk_tokens end
    if src.text_field ~= nil then s.text_field = src.text_field end
  end
  return s
end

local function words_mode(s)
  return s and s.chars_per_token == "whitespace"
end

local function cpt(s)
  local c = s and s.chars_per_token
  if type(c) ~= "number" or c <= 0 then return M.DEFAULT_CHARS_PER_TOKEN end
  return c
end

local function count_words(text)
  local n = 0
  for _ in text:gmatch("%S+") do n = n + 1 end
  return n
end

function M.estimate(text, s)
  if type(text) ~= "string" or text == "" then return 0 end
  if words_mode(s) then return count_words(text) end
  return ceil(#text / cpt(s))
end

-- A document's estimate (docs.estimate of its text), a lazy text's from its length alone.
function M.estimate_doc(d, s)
  if not words_mode(s) and M.is_lazy(d) then return ceil(M.text_bytes(d) / cpt(s)) end
  return M.estimate(d.text, s)
end

-- The one estimate of a call's prompt tokens when the upstream reports none: the query's
-- estimate counted once per document (rerankers score each pair) plus each document's.
function M.prompt_tokens(query, documents, s)
  local q, total = M.estimate(query, s), 0
  for i = 1, #documents do total = total + q + M.estimate_doc(documents[i], s) end
  return total
end

-- the largest position <= pos that ends a UTF-8 sequence (so sub(1, pos) stays valid)
local function utf8_end(text, pos)
  if pos >= #text then return #text end
  if pos <= 0 then return 0 end
  -- move back while the next byte is a continuation byte (10xxxxxx)
  while pos > 0 do
    local b = byte(text, pos + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    pos = pos - 1
  end
  return pos
end

-- prefer a whitespace boundary within the last tenth of the budget before pos
local function soft_end(text, first, pos, budget)
  local lo = pos - floor(budget / 10)
  if lo <= first then return pos end
  for i = pos, lo, -1 do
    local b = byte(text, i)
    if b == 32 or b == 10 or b == 9 or b == 13 then return i end
  end
  return pos
end

-- byte offsets (start, stop) of words first..last (1-based word numbers)
local function word_span(text, first, last)
  local n, a, b = 0, nil, nil
  for ws, we in text:gmatch("()%S+()") do
    n = n + 1
    if n == first then a = ws end
    if n == last then b = we - 1; break end
  end
  return a, b
end

function M.truncate(text, max_tokens, from, s)
  if type(text) ~= "string" or not max_tokens or max_tokens <= 0 or max_tokens == huge then return text, false end
  if words_mode(s) then
    local n = count_words(text)
    if n <= max_tokens then return text, false end
    if from == "start" then
      local a = word_span(text, n - max_tokens + 1, n)
      return sub(text, a), true
    end
    local _, b = word_span(text, 1, max_tokens)
    return sub(text, 1, b), true
  end
  local budget = floor(max_tokens * cpt(s))
  if #text <= budget then return text, false end
  if from == "start" then
    -- keep the last `budget` bytes, starting on a character boundary
    local start = #text - budget + 1
    while start <= #text do
      local b = byte(text, start)
      if b < 0x80 or b >= 0xC0 then break end
      start = start + 1
    end
    return sub(text, start), true
  end
  local stop = utf8_end(text, budget)
  stop = utf8_end(text, soft_end(text, 1, stop, budget))
  return sub(text, 1, stop), true
end

function M.chunks(text, size, max_chunks, s)
  text = type(text) == "string" and text or ""
  size = size or M.DEFAULT_CHUNK_TOKENS
  max_chunks = max_chunks or huge
  local out = {}
  if words_mode(s) then
    local starts, ends = {}, {}
    for ws, we in text:gmatch("()%S+()") do
      starts[#starts + 1] = ws
      ends[#ends + 1] = we - 1
    end
    local n = #starts
    if n <= size then return { text } end
    local w = 1
    while w <= n and #out < max_chunks do
      local last = math.min(n, w + size - 1)
      out[#out + 1] = sub(text, starts[w], ends[last])
      w = last + 1
    end
    return out
  end
  local budget = max(1, floor(size * cpt(s)))
  local len = #text
  if len <= budget then return { text } end
  local pos = 1
  while pos <= len and #out < max_chunks do
    local stop = pos + budget - 1
    if stop >= len then
      stop = len
    else
      stop = utf8_end(text, stop)
      if stop < pos then stop = pos + budget - 1 end -- a single huge sequence: give up on alignment
      stop = soft_end(text, pos, stop, budget)
    end
    out[#out + 1] = sub(text, pos, stop)
    pos = stop + 1
    -- the next chunk starts on the following non-space
    local nxt = find(text, "%S", pos)
    if not nxt then break end
    pos = nxt
  end
  if #out == 0 then out[1] = text end
  return out
end

local function scalar(v)
  if type(v) == "string" then return v end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end

-- "key: value" lines in the given order; absent (or null) fields are skipped
function M.rank_text(raw, rank_fields)
  if type(raw) ~= "table" or type(rank_fields) ~= "table" then return nil end
  local lines = {}
  for _, f in ipairs(rank_fields) do
    local v = raw[f]
    if v ~= nil and v ~= null then lines[#lines + 1] = f .. ": " .. scalar(v) end
  end
  if #lines == 0 then return nil end
  return concat(lines, "\n")
end

function M.field_text(raw, field)
  if type(raw) ~= "table" then return nil end
  local v = raw[field]
  if v == nil or v == null then return nil end
  return scalar(v)
end

-- rank_fields that change anything: a non-empty list other than just "text"
local function useful_fields(rf)
  return type(rf) == "table" and #rf > 0 and not (#rf == 1 and rf[1] == "text")
end
M.useful_fields = useful_fields

-- Does the provider apply max_tokens_per_document itself? A provider declares it with
-- `handles = { max_tokens_per_document = true }` (bm25 truncates in C).
local function native_truncation(p)
  if type(p) ~= "table" then return false end
  return type(p.handles) == "table" and p.handles.max_tokens_per_document == true
end
M.native_truncation = native_truncation

function M.prepare(req, p, s)
  -- a provider that reads rank_fields itself (`handles = { rank_fields = true }`, bm25) gets them as sent
  local own_rf = type(p) == "table" and type(p.handles) == "table" and p.handles.rank_fields
  local rf = not own_rf and useful_fields(req.rank_fields) and req.rank_fields or nil
  local limits = type(p) == "table" and p.limits or nil
  local max_tok = req.max_tokens_per_document or (limits and limits.max_tokens_per_document)
  local from = req.truncate or "end"
  local chunks = req.max_chunks_per_doc
  local do_trunc = max_tok and from ~= "none" and not native_truncation(p)
  if not rf and not do_trunc and not chunks then return req end
  local src = req.documents
  local out, owners = {}, nil
  local chunk_size = chunks and (req.max_tokens_per_document or s.chunk_tokens or M.DEFAULT_CHUNK_TOKENS)
  for i = 1, #src do
    local d = src[i]
    local text = d.text
    if rf then text = M.rank_text(d.raw, rf) or text end
    if chunks then
      local parts = M.chunks(text, chunk_size, chunks, s)
      if #parts > 1 or owners then
        if not owners then
          owners = {}
          for j = 1, #out do owners[j] = j end
        end
      end
      for _, part in ipairs(parts) do
        local j = #out + 1
        out[j] = { index = j - 1, text = part, raw = part, id = d.id, title = d.title, image = d.image }
        if owners then owners[j] = i end
      end
    else
      if do_trunc then text = M.truncate(text, max_tok, from, s) end
      if text == d.text and not rf then
        out[i] = d
      else
        out[i] = { index = i - 1, text = text, raw = text, id = d.id, title = d.title, metadata = d.metadata,
                   image = d.image }
      end
    end
  end
  local preq = {}
  for k, v in pairs(req) do preq[k] = v end
  preq.documents = out
  preq.rank_fields = nil
  preq.max_chunks_per_doc = nil
  if owners then preq.top_n = nil end -- every chunk needs a score
  return preq, owners
end

-- Image documents (d.image, lua/rerank/shapes/registry.lua) go only to a model whose provider declares
-- `images`: true (sent upstream in the provider's shape), "text" (accepted and scored on the
-- document's text alone, as bm25 does), or function(model) -> either. `image_urls = false`:
-- the upstream takes data: URLs only. -> nil | the 422 error naming the model.
function M.check_images(model, p, req)
  local list = req.documents
  local first
  for i = 1, #list do
    if list[i].image then first = i; break end
  end
  if not first then return nil end
  local ok = type(p) == "table" and p.images
  if type(ok) == "function" then ok = ok(model) end
  local name = ("model %q"):format(tostring(model.name))
  if not ok then
    local _, err = require("rerank.engine.errors").fail(422, ("%s does not accept image documents (documents[%d].image)")
      :format(name, first - 1), ("documents[%d].image"):format(first - 1))
    return err
  end
  if ok == true and p.image_urls == false then
    for i = first, #list do
      local img = list[i].image
      if img and not find(img, "^data:") then
        local _, err = require("rerank.engine.errors").fail(422,
          ("%s takes images as base64 data: URLs only (documents[%d].image)"):format(name, i - 1),
          ("documents[%d].image"):format(i - 1))
        return err
      end
    end
  end
  return nil
end

function M.collapse(scores, owners, n)
  if not owners then return scores end
  local out = {}
  for i = 1, n do out[i] = -huge end
  for j, i in pairs(owners) do
    local v = scores[j]
    if type(v) == "number" and v > out[i] then out[i] = v end
  end
  return out
end

return M
