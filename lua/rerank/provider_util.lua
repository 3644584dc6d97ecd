-- Shared pure helpers for providers/*.lua (DESIGN §4): URLs, keys, bodies, tolerant parsing.
-- Nothing here does I/O except reading environment variables for API keys.
--
--   U.url(model, p, vars)          base_url + path ("{name}" placeholders filled from vars)
--   U.join(base, path)             "http://h/" + "/v1/rerank" -> "http://h/v1/rerank"
--   U.api_key(model, env)          model.api_key if non-empty, else os.getenv(env)
--   U.bearer(model, env)           { Authorization = "Bearer <key>" } or {} when there is no key
--   U.post(model, p, req, body, headers) -> a request spec; body gets extra_body merged
--   U.rerank_build(p, fields, opts) -> build(model, req) for a declared JSON rerank body
--   U.merge(body, ...)             deep merge of objects; later wins; json.null deletes a key
--   U.texts(req, rank_fields)      one string per document (object docs flattened on rank_fields)
--   U.texts_body(req, rank_fields) the same for a list only json.encode reads (lazy texts kept;
--                                  U.documents_body likewise for U.documents)
--   U.objects(req, rank_fields)    one object per document ({text, id?, <rank_fields>...})
--   U.media(req, rank_fields, fn)  U.texts, with each image document replaced by fn(text|nil, image)
--   U.media_body(req, rank_fields, fn)  the same for a list only json.encode reads (lazy texts kept)
--   U.image_parts(text, image)     OpenAI content parts for an image document (vLLM, SGLang)
--   U.text_image(req, rank_fields) one {text?, image?} object per document
--   U.parse(body, headers, n)      tolerant results parser -> { results|scores, usage? } | nil, err
--   U.read(j, headers, n)          the same over a decoded answer
--   U.parse_scores(body, headers, n) the common answer read in C -> { scores, usage } | nil
--   U.parser                       parse() for providers whose answer needs nothing special
local json = require "rerank.json"
local is_lazy = require("rerank.engine.documents").is_lazy

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local concat, min, floor, huge = table.concat, math.min, math.floor, math.huge
local null = json.null

local U = { null = null }

-- option declarations shared by providers (config validates values against the enum)
U.TRUNCATE_OPTION = { type = "string", enum = { "none", "start", "end" } }
-- rerankd's truncate values in the NONE/END form (NVIDIA NIM, Pinecone: they keep the start,
-- so "start" maps to the nearest they have)
U.TRUNCATE_NONE_END = { none = "NONE", ["end"] = "END", start = "END" }

-- value or nil: JSON null and absent are the same to a parser
local function val(v)
  if v == null then return nil end
  return v
end
U.val = val

function U.decode(body)
  if type(body) ~= "string" or body == "" then return nil, "empty body" end
  return json.decode(body)
end

---------------------------------------------------------------------------------------------
-- URLs, options, keys

function U.join(base, path)
  base = (base or ""):gsub("/+$", "")
  if not path or path == "" then return base end
  return base .. "/" .. path:gsub("^/+", "")
end

-- "{region}" -> vars.region; unknown names are left as they are
local function expand_vars(s, vars) -- apart: a closure in U.expand stops the JIT (NYI FNEW/UCLO)
  return (s:gsub("{([%w_]+)}", function(k) local v = vars[k]; return v ~= nil and tostring(v) or nil end))
end
function U.expand(s, vars)
  if not s or not vars or not s:find("{", 1, true) then return s end
  return expand_vars(s, vars)
end

function U.defaults(p) return p and p.defaults or {} end

function U.model_id(model, p)
  local m = model.model
  if m == nil or m == "" then m = U.defaults(p).model end
  return m
end

function U.base_url(model, p)
  local b = model.base_url
  if b == nil or b == "" then b = U.defaults(p).base_url end
  if not b then error(("model %q: base_url is required for provider %q"):format(model.name or "?", p and p.name or "?"), 0) end
  return b
end

function U.path(model, p)
  local path = model.path
  if path == nil then path = U.defaults(p).path end
  return path
end

function U.url(model, p, vars)
  return U.join(U.expand(U.base_url(model, p), vars), U.expand(U.path(model, p), vars))
end

-- percent-encodes a path segment (RFC 3986 unreserved characters stay)
function U.escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

function U.opt(model, key, default)
  local o = model.options
  local v = o and o[key]
  if v == nil then return default end
  return v
end

-- a request field, else the model's option of the same name (a per-model default)
function U.param(model, req, key)
  local v = req[key]
  if v == nil then v = U.opt(model, key) end
  return v
end

function U.api_key(model, env)
  local k = model.api_key
  if type(k) == "string" and k ~= "" then return k end
  k = env and os.getenv(env)
  if k and k ~= "" then return k end
  return nil
end

function U.bearer(model, env)
  local k = U.api_key(model, env)
  return k and { Authorization = "Bearer " .. k } or {}
end

---------------------------------------------------------------------------------------------
-- request bodies

local function is_object(t) return type(t) == "table" and json.kind(t) == "object" end

local function merge_into(dst, src)
  for k, v in pairs(src) do
    if v == null then
      dst[k] = nil
    elseif is_object(v) and is_object(dst[k]) then
      local copy = {}
      for k2, v2 in pairs(dst[k]) do copy[k2] = v2 end
      dst[k] = merge_into(copy, v)
    else
      dst[k] = v
    end
  end
  return dst
end

-- merge(body, model.extra_body, req.extra_body): the request's extra_body wins
function U.merge(body, ...)
  for i = 1, select("#", ...) do
    local src = select(i, ...)
    if type(src) == "table" then merge_into(body, src) end
  end
  return body
end

-- top_n for the upstream: clamped to the documents in this call; nil when absent
function U.top_n(req)
  local k = req.top_n
  if k == nil then return nil end
  return min(k, #req.documents)
end

local function has_fields(rf)
  return type(rf) == "table" and #rf > 0 and not (#rf == 1 and rf[1] == "text")
end
U.has_fields = has_fields

local function scalar(v)
  if type(v) == "string" then return v end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end

-- "field: value" lines (YAML-like, what Cohere advises for structured data)
local function flatten(raw, rank_fields)
  local lines = {}
  for _, f in ipairs(rank_fields) do
    local v = val(raw[f])
    if v ~= nil then lines[#lines + 1] = f .. ": " .. scalar(v) end
  end
  if #lines == 0 then return nil end
  return concat(lines, "\n")
end

-- One string per document. When every text is still the JSON string the client sent
-- (shapes/registry.lua records its bytes: d.src, d.js, d.je), the list is marked for splicing: the
-- upstream body copies those bytes instead of escaping the texts again (json.spliced).
-- lazy (a list that only json.encode reads): a document whose text is still only bytes of
-- the body (docs.lazy) stands for itself, so that no string is made for it.
local function doc_texts(req, rank_fields, lazy)
  local docs = req.documents
  local rf = has_fields(rank_fields) and rank_fields
  if lazy and not rf and #docs > 0 then -- the common proxy case: every text still lazy, so the
    local all = true                     -- documents stand for themselves (no list made)
    for i = 1, #docs do
      if not is_lazy(docs[i]) then all = false break end
    end
    if all then return json.spliced(docs, docs) end
  end
  local out = {}
  local spliceable = not rf
  for i = 1, #docs do
    local d = docs[i]
    local lz = is_lazy(d)
    spliceable = spliceable and (lz or d.js ~= nil)
    if lazy and spliceable and lz then
      out[i] = d
    else
      out[i] = rf and type(d.raw) == "table" and flatten(d.raw, rf) or d.text
    end
  end
  if spliceable and #docs > 0 then return json.spliced(out, docs) end -- checked again when encoded
  if lazy then
    for i = 1, #out do
      if out[i] == docs[i] then out[i] = docs[i].text end
    end
  end
  return out
end

function U.texts(req, rank_fields)
  return doc_texts(req, rank_fields, false)
end

-- U.texts for a body field that only json.encode reads: a document whose text is still
-- bytes of the request body stands for itself, so no string is made for it
function U.texts_body(req, rank_fields)
  return doc_texts(req, rank_fields, true)
end

function U.objects(req, rank_fields)
  local out, docs = {}, req.documents
  local rf = type(rank_fields) == "table" and rank_fields or {}
  for i = 1, #docs do
    local d = docs[i]
    local o = { text = d.text, id = d.id }
    if type(d.raw) == "table" then
      for _, f in ipairs(rf) do
        local v = d.raw[f]
        if v ~= nil then o[f] = v end
      end
    end
    out[i] = o
  end
  return out
end

-- Documents for a multimodal upstream: U.texts, except that a document carrying an image
-- (shapes/registry.lua: d.image, a URL or data: URL) becomes fn(text, image), text nil when the document
-- has none. Without images this is U.texts itself (spliced).
function U.media(req, rank_fields, fn)
  local texts, docs = U.texts(req, rank_fields), req.documents
  local out
  for i = 1, #docs do
    local img = docs[i].image
    if img then
      if not out then -- a copy: the spliced list must keep exactly its strings
        out = {}
        for j = 1, #texts do out[j] = texts[j] end
      end
      local t = texts[i]
      out[i] = fn(t ~= "" and t or nil, img)
    end
  end
  return out or texts
end

-- U.media for a body field that only json.encode reads: without image documents, a
-- document whose text is still bytes of the request body stands for itself (doc_texts), so
-- no string is made for it. A provider that reads the list uses U.media.
function U.media_body(req, rank_fields, fn)
  local docs = req.documents
  for i = 1, #docs do
    if docs[i].image then return U.media(req, rank_fields, fn) end
  end
  return U.texts_body(req, rank_fields)
end

-- One {text?, image?} object per document (DashScope qwen3-vl, NIM VL passages): an image
-- document without text has no text member (never "")
function U.text_image(req, rank_fields)
  local texts, docs, out = U.texts(req, rank_fields), req.documents, {}
  for i = 1, #docs do
    local t, img = texts[i], docs[i].image
    if img then out[i] = { text = t ~= "" and t or nil, image = img } else out[i] = { text = t } end
  end
  return out
end

-- OpenAI chat content parts for a document: [{type: "text", text}?, {type: "image_url", image_url: {url}}]
function U.image_parts(text, image)
  local parts = {}
  if text then parts[1] = { type = "text", text = text } end
  parts[#parts + 1] = { type = "image_url", image_url = { url = image } }
  return parts
end

-- strings, or objects when the request ranks on fields of object documents; lazy: for a
-- body field that only json.encode reads (doc_texts)
local function documents(req, rank_fields, lazy)
  if has_fields(rank_fields) then return U.objects(req, rank_fields) end
  return doc_texts(req, nil, lazy)
end

function U.documents(req, rank_fields) return documents(req, rank_fields, false) end

-- U.documents for a body field that only json.encode reads (U.texts_body's lazy texts)
function U.documents_body(req, rank_fields) return documents(req, rank_fields, true) end

-- rerankd truncate ("none"|"start"|"end") -> the upstream's word, via map
function U.truncate(model, req, map)
  local t = U.param(model, req, "truncate")
  if t == nil then return nil end
  return map[t]
end

-- The instruction for this call: the request's (the runtime puts the model's default there,
-- lua/rerank/engine/router.lua), else the model's; "" counts as none.
function U.instruction(model, req)
  local i = req and req.instruction
  if i == nil or i == "" then i = model and model.instruction end
  if i == "" then return nil end
  return i
end

-- An instruction folded into the query text, as Voyage documents for rerank-2.5
-- ("Instruction: prefer documents from 2025. Query: EU AI Act obligations for deployers").
function U.instructed_query(query, instruction)
  if not instruction then return query end
  local sep = instruction:find("[%.!?:]%s*$") and " " or ". "
  return "Instruction: " .. (instruction:gsub("%s+$", "")) .. sep .. "Query: " .. query
end

-- a typical HTTP call: POST url, the provider's auth headers, body + extra_body
function U.post(model, p, req, body, headers, vars)
  return {
    method = "POST",
    url = U.url(model, p, vars),
    headers = headers or U.bearer(model, p.env_key),
    body = U.merge(body, model.extra_body, req.extra_body),
  }
end

-- What a body field declared to U.rerank_build is made of; rf = the call's rank_fields.
local SOURCES = {
  model = function(model, p) return U.model_id(model, p) end,
  query = function(_, _, req) return req.query end,
  -- strings (objects flattened on rf); only json.encode reads a built body's list, so a
  -- document whose text is still bytes of the request body stands for itself (doc_texts)
  texts = function(_, _, req, rf) return U.texts_body(req, rf) end,
  documents = function(_, _, req, rf) return U.documents_body(req, rf) end, -- strings, or objects with rf
  rank_fields = function(_, _, _, rf) return has_fields(rf) and rf or nil end,
  top_n = function(_, _, req) return U.top_n(req) end,
  return_documents = function(_, _, req) return req.return_documents == true end,
  instruction = function(model, _, req) return U.instruction(model, req) end,
}

-- build(model, req) for the usual JSON rerank call, declared as { body_field = source }: a
-- source names one of SOURCES above, or is function(model, req) -> value (U.option(key) for
-- a provider option). opts.model_in_path: the model id fills the path's {model} instead.
function U.rerank_build(p, fields, opts)
  for k, src in pairs(fields) do
    if type(src) ~= "function" and not SOURCES[src] then
      error(("rerank_build: body field %s has unknown source %s"):format(tostring(k), tostring(src)), 2)
    end
  end
  local model_in_path = opts and opts.model_in_path
  return function(model, req)
    local rf = U.param(model, req, "rank_fields")
    local body = {}
    for k, src in pairs(fields) do
      if type(src) == "function" then
        body[k] = src(model, req)
      else
        body[k] = SOURCES[src](model, p, req, rf)
      end
    end
    return U.post(model, p, req, body, nil, model_in_path and { model = U.model_id(model, p) } or nil)
  end
end

-- a body source for U.rerank_build: the model's option `key`
function U.option(key)
  return function(model) return U.opt(model, key) end
end

-- Cohere's body: v1 (objects, rank_fields, return_documents, max_chunks_per_doc) or v2
-- (strings, max_tokens_per_doc). with_model = false drops "model" (Bedrock InvokeModel).
-- v2's documents list is for json.encode only: a lazy text is its document there (doc_texts).
function U.cohere_body(model, p, req, version, with_model)
  local rf = U.param(model, req, "rank_fields")
  local b = { query = req.query, top_n = U.top_n(req) }
  if with_model ~= false then b.model = U.model_id(model, p) end
  if version == "v1" or version == 1 then
    b.documents = U.documents_body(req, rf)
    b.rank_fields = has_fields(rf) and rf or nil
    b.return_documents = req.return_documents == true
    b.max_chunks_per_doc = U.opt(model, "max_chunks_per_doc")
  else
    b.documents = doc_texts(req, rf, true)
    b.max_tokens_per_doc = U.param(model, req, "max_tokens_per_document")
    b.priority = U.param(model, req, "priority") -- 0..999, lower runs first
  end
  return b
end

---------------------------------------------------------------------------------------------
-- responses

local LISTS = { "results", "data", "rankings" }

local function num(v)
  v = val(v)
  if type(v) == "string" then v = tonumber(v) end
  if type(v) == "number" and v == v then return v end
  return nil
end
U.num = num

-- what an error-ish JSON body says, for messages (never the whole body)
function U.message(j)
  if type(j) ~= "table" then return nil end
  local e = val(j.error)
  local m = val(j.message) or val(j.detail) or (type(e) == "table" and (val(e.message) or val(e.type))) or e
  if type(m) == "table" then m = val(m.error) or val(m.message) or json.encode(m) end
  if m == nil then return nil end
  m = tostring(m)
  if #m > 200 then m = m:sub(1, 200) .. "..." end
  return m
end

-- usage from the documented places: usage{prompt,total}_tokens, usage.rerank_units,
-- meta.billed_units.{search_units,input_tokens}, meta.tokens.input_tokens, input_tokens,
-- inference_status.tokens_input, and the x-compute-tokens / Bedrock token headers.
function U.usage(j, headers)
  local u = {}
  if type(j) == "table" and json.kind(j) == "object" then
    local us, meta = val(j.usage), val(j.meta)
    if type(us) == "table" then
      u.prompt_tokens = num(us.prompt_tokens) or num(us.input_tokens)
      u.total_tokens = num(us.total_tokens)
      u.search_units = num(us.search_units) or num(us.rerank_units)
    end
    if type(meta) == "table" then
      local bu, tk = val(meta.billed_units), val(meta.tokens)
      if type(bu) == "table" then
        u.search_units = u.search_units or num(bu.search_units)
        u.prompt_tokens = u.prompt_tokens or num(bu.input_tokens)
      end
      if type(tk) == "table" then u.prompt_tokens = u.prompt_tokens or num(tk.input_tokens) end
    end
    local st = val(j.inference_status)
    u.prompt_tokens = u.prompt_tokens or num(j.input_tokens) or (type(st) == "table" and num(st.tokens_input)) or nil
  end
  if type(headers) == "table" then
    u.prompt_tokens = u.prompt_tokens or num(headers["x-compute-tokens"])
        or num(headers["x-amzn-bedrock-input-token-count"])
  end
  u.prompt_tokens = u.prompt_tokens or u.total_tokens
  u.total_tokens = u.total_tokens or u.prompt_tokens
  if next(u) == nil then return nil end
  return u
end

-- Parses a rerank answer in any documented shape: a bare list, or a list under results /
-- data / rankings, items { index (0-based), relevance_score|score|logit|relevanceScore };
-- or { scores = [...] } in input order (DeepInfra). n: the number of documents sent.
-- Items without an index or a score are skipped (the runtime reports those documents as
-- missing: degraded); an answer with none usable is an error, and so is an answer that
-- would misplace a document: a score that is not a finite number (1e400 overflows), an
-- index that is not an integer in [0, n), or one index twice.
function U.parse(body, headers, n)
  local j, err = U.decode(body)
  if j == nil then return nil, "invalid JSON from upstream: " .. tostring(err) end
  return U.read(j, headers, n)
end

-- U.parse over an answer already decoded (a provider that unwraps its own envelope)
function U.read(j, headers, n)
  if type(j) ~= "table" then return nil, "unexpected JSON from upstream (" .. type(j) .. ")" end
  local list
  if json.kind(j) == "array" then
    list = j
  else
    for _, k in ipairs(LISTS) do
      local v = val(j[k])
      if type(v) == "table" then list = v; break end
    end
    if not list and type(val(j.scores)) == "table" then
      local scores, any = {}, false
      for i, s in ipairs(j.scores) do
        scores[i] = num(s)
        if scores[i] and (scores[i] == huge or scores[i] == -huge) then
          return nil, ("upstream answer refused: scores[%d] is not a finite number"):format(i - 1)
        end
        any = any or scores[i] ~= nil
      end
      if not any and (n or 0) > 0 then return nil, "upstream answer has no usable scores" end
      return { scores = scores, usage = U.usage(j, headers) }
    end
    if not list then
      local m = U.message(j)
      return nil, "upstream answer has no results" .. (m and (": " .. m) or "")
    end
  end
  local results, nr, seen = {}, 0, {}
  for i = 1, #list do -- no inner loop over SCORES: this loop compiles (one trace)
    local item = list[i]
    if type(item) == "table" then
      local idx = num(item.index)
      -- the score members, in order of preference
      local score = num(item.relevance_score) or num(item.score) or num(item.logit) or num(item.relevanceScore)
      if idx and score then
        if score == huge or score == -huge then
          return nil, ("upstream answer refused: results[%d] has a score that is not a finite number"):format(i - 1)
        end
        if idx < 0 or idx ~= floor(idx) or (n and idx >= n) then
          return nil, ("upstream answer refused: results[%d].index %s is not a document index (0..%d)")
            :format(i - 1, json.number(idx), (n or 0) - 1)
        end
        if seen[idx] then
          return nil, ("upstream answer refused: results[%d].index %d appears twice (also results[%d])")
            :format(i - 1, idx, seen[idx] - 1)
        end
        seen[idx] = i
        nr = nr + 1
        results[nr] = { index = idx, score = score }
      end
    end
  end
  if #results == 0 and (n or 0) > 0 then return nil, "upstream answer has no usable results" end
  return { results = results, usage = U.usage(j, headers) }
end

-- The common answer (an object whose results/data/rankings list holds items with a
-- numeric index and score) read in one C pass into { scores = { [index + 1] = score },
-- usage }, without a table per item; nil when U.parse must read it (any other shape, a
-- string number, an item it refuses: its messages stay the only ones).
function U.parse_scores(body, headers, n)
  if type(body) ~= "string" or body == "" or not n or n < 1 then return nil end
  local j, lists = json.decode_scores(body, n)
  if type(j) ~= "table" or type(lists) ~= "table" then return nil end
  for _, k in ipairs(LISTS) do
    local s = lists[k]
    if s ~= nil then
      if not s then return nil end
      return { scores = s, usage = U.usage(j, headers) }
    end
    if type(val(j[k])) == "table" then return nil end
  end
  return nil
end

-- parse() for providers whose answer needs nothing special: { scores | results, usage }
function U.parser(_, req, _, headers, body)
  local n = #req.documents
  local out = U.parse_scores(body, headers, n)
  if out then return out end
  return U.parse(body, headers, n)
end

return U
