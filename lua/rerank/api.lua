-- Wire shapes in and out (DESIGN §3, §6).
--
--   api.parse(shape, body, opts) -> req | nil, err
--       body: the request body (a JSON string), or an already-decoded table (library callers).
--       opts: { max_documents = 10000, max_image_bytes = 5 MiB }
--       err:  { status = 400|413|415|422, type = "invalid_request_error", message =, param = }
--   api.render(shape, result, req) -> JSON string in the shape the client spoke
--   api.render_error(shape, err) -> JSON error body in that shape
--   api.register(shape, { parse = fn(body_table, opts) -> req | nil, err,
--                         render = fn(result, req) -> string, render_error = fn(err)? })
--
-- The internal request every shape normalises to (others rely on it):
--   req = { model = string|nil (nil: the default model), query = string,
--           documents = { { index = 0-based, text = string, id = string|number|nil,
--                           title = string|nil, metadata = table|nil, image = URL|nil,
--                           raw = the client's document value as decoded (string or table) }, ... },
--           top_n = integer|nil, return_documents = bool, truncate = "none"|"start"|"end"|nil,
--           max_tokens_per_document = integer|nil, metadata = table|nil, user = string|nil,
--           extra_body = table|nil, instruction = string|nil, shape = "rerankd",
--           pipeline = name|stages|nil, lists = prepared lists (rerank.fuse)|nil,
--           return_score = "relevance"|"all"|nil,   (pipelines: lua/rerank/pipeline.lua)
--           min_score = number|nil, priority = 0..999|nil, max_tokens_per_query = integer|nil,
--           raw_scores = bool|nil (TEI: the answer in logits) }   (every shape: shapes/init.lua)
-- Document text is the decoder's string itself (no copies).
--
-- Validation rules (stable messages; tests assert them): JSON null counts as absent for
-- optional fields; a field of the wrong JSON type -> 400 "<param> must be a <type>"; a value
-- of the right type but out of range -> 422; param paths are 0-based ("documents[3].text").
-- Unknown top-level fields are ignored. An empty table counts as an empty documents array
-- (Lua callers cannot mark it); a JSON [] is never accepted where an object is expected.
-- top_n may exceed the document count (the runtime clamps it); integral huge values
-- (1e300, even 1e400 = inf) are kept as numbers and clamp the same way.
local json = require "rerank.json"

local type, next, floor, find, lower, sub, tostring = type, next, math.floor, string.find, string.lower, string.sub, tostring
local concat = table.concat
local null, kind, number = json.null, json.kind, json.number
local jstring, jencode = json.string, json.encode

local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local api = {}
api.DEFAULT_MAX_DOCUMENTS = 10000

local shapes = {}
api.shapes = shapes

local fail = require("rerank.errors").fail
api.fail = fail

---------------------------------------------------------------------------------------------
-- field checks shared by the shapes; each returns value | nil, err (value nil when absent)

local function present(v) return v ~= nil and v ~= null end

local function is_object(v) return type(v) == "table" and kind(v) == "object" end

-- Arrays: a marked or [1]-holding table, or an empty unmarked one from a Lua caller. For
-- JSON text, json.decode marks every empty [] (so an unmarked empty table was {}): strict.
local strict_arrays = false
local function is_array(v)
  return type(v) == "table" and (kind(v) == "array" or (not strict_arrays and next(v) == nil))
end

local function check_string(v, param)
  if not present(v) then return nil end
  if type(v) ~= "string" then return fail(400, param .. " must be a string", param) end
  return v
end

local function check_bool(v, param)
  if not present(v) then return nil end
  if type(v) ~= "boolean" then return fail(400, param .. " must be a boolean", param) end
  return v
end

local function check_object(v, param)
  if not present(v) then return nil end
  if not is_object(v) then return fail(400, param .. " must be an object", param) end
  return v
end

-- integer >= min: a JSON number without a fractional part
local function check_int(v, param, min)
  if not present(v) then return nil end
  if type(v) ~= "number" or v ~= floor(v) then return fail(400, param .. " must be an integer", param) end
  if min and v < min then return fail(422, param .. " must be >= " .. min, param) end
  return v
end

local TRUNCATE = { none = "none", start = "start", ["end"] = "end" }

local function check_truncate(v, param)
  local s, err = check_string(v, param)
  if not s then return nil, err end
  local t = TRUNCATE[lower(s)]
  if not t then return fail(422, param .. ' must be one of "none", "start", "end"', param) end
  return t
end

local function check_query(v, param)
  if not present(v) then return fail(400, param .. " is required", param) end
  if type(v) ~= "string" then return fail(400, param .. " must be a string", param) end
  if not find(v, "%S") then return fail(422, param .. " must not be empty", param) end
  return v
end

-- Where the JSON string of each document's text lies in the request body (spans from
-- json.decode_request, for splicing into upstream bodies and responses): src, spans | nil
local function doc_spans(opts, param)
  local src, spans = opts and opts.body, opts and opts.spans
  if src and spans then
    local sp = spans[param]
    if sp then return src, sp end
  end
  return nil
end
api.doc_spans = doc_spans

-- Document i's span (js, je) in spans, or nil when it has none (0 0: not a JSON string).
local function doc_span(spans, i)
  local js = spans and spans[2 * i - 1]
  if not js or js == 0 then return nil end
  return js, spans[2 * i]
end
api.doc_span = doc_span

-- An image document's `image` (optional `text` beside it): an http(s) URL or a base64 data:
-- URL of at most max_bytes (opts.max_image_bytes, config documents.max_image_bytes).
-- -> the string | nil, err. Providers send it in their own shape (provider_util U.media);
-- the router refuses it for models whose provider does not declare `images`.
api.DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
local function check_image(v, p, max_bytes)
  p = p .. ".image"
  if type(v) ~= "string" then return fail(400, p .. " must be a string", p) end
  max_bytes = max_bytes or api.DEFAULT_MAX_IMAGE_BYTES
  if #v > max_bytes then
    return fail(413, ("%s is %d bytes; the maximum is %d (documents.max_image_bytes)"):format(p, #v, max_bytes), p)
  end
  if not (find(v, "^[hH][tT][tT][pP][sS]?://[^%s]+$") or find(v, "^data:image/[%w%.%+%-]+;base64,[%w%+/=]+$")) then
    return fail(422, p .. " must be an http(s) URL or a data:image/...;base64, URL", p)
  end
  return v
end
api.check_image = check_image

-- documents: strings or {text, id?, title?, metadata?} objects -> internal documents.
-- With src/spans (doc_spans), a document whose text is a JSON string of the body records
-- its bytes: d.src, d.js, d.je (json.encode and responses splice them).
-- An object with `image` needs no text: the document's text is then "" (d.image set).
local function check_documents(v, param, max_docs, src, spans, max_image)
  if not present(v) then return fail(400, param .. " is required", param) end
  if not is_array(v) then return fail(400, param .. " must be an array", param) end
  local n = #v
  if n > max_docs then
    return fail(422, param .. " has " .. n .. " items; the maximum is " .. max_docs, param)
  end
  local docs = table_new(n, 0)
  for i = 1, n do
    local d = v[i]
    local td = type(d)
    if td == "string" then
      local js, je = doc_span(spans, i)
      docs[i] = { index = i - 1, text = d, raw = d, src = js and src, js = js, je = je }
    elseif td == "table" and kind(d) == "object" then
      local p = param .. "[" .. (i - 1) .. "]"
      local text, id, title, md = d.text, d.id, d.title, d.metadata
      local image, err = d.image
      if present(image) then
        image, err = check_image(image, p, max_image)
        if err then return nil, err end
        if not present(text) then text = "" end
      else
        image = nil
      end
      if not present(text) then return fail(400, p .. ".text is required", p .. ".text") end
      if type(text) ~= "string" then return fail(400, p .. ".text must be a string", p .. ".text") end
      if id == null then
        id = nil
      elseif id ~= nil and type(id) ~= "string" and type(id) ~= "number" then
        return fail(400, p .. ".id must be a string or a number", p .. ".id")
      end
      if title ~= nil then
        title, err = check_string(title, p .. ".title")
        if err then return nil, err end
      end
      if md ~= nil then
        md, err = check_object(md, p .. ".metadata")
        if err then return nil, err end
      end
      local js, je = doc_span(spans, i) -- the span of the "text" member
      docs[i] = { index = i - 1, text = text, id = id, title = title, metadata = md, raw = d,
                  src = js and src, js = js, je = je, image = image }
    else
      local p = param .. "[" .. (i - 1) .. "]"
      return fail(400, p .. " must be a string or an object with a text field", p)
    end
  end
  return docs
end

api.check = {
  present = present, is_object = is_object, is_array = is_array,
  string = check_string, bool = check_bool, object = check_object, int = check_int,
  truncate = check_truncate, query = check_query, documents = check_documents,
}

---------------------------------------------------------------------------------------------
-- rerankd's own POST /v1/rerank (reference/002_6e2ab227ad9244fd.txt)

local function parse_rerankd(b, opts)
  local req = { shape = "rerankd", return_documents = false }
  local v, err
  -- model
  v, err = check_string(b.model, "model")
  if err then return nil, err end
  if v == "" then return fail(422, "model must not be empty", "model") end
  req.model = v
  -- pipeline / lists (lua/rerank/pipeline.lua): query optional until a rerank stage needs it
  local piped = present(b.pipeline) or present(b.lists)
  if not (piped and not present(b.query)) then
    v, err = check_query(b.query, "query")
    if err then return nil, err end
    req.query = v
  end
  if piped then
    err = require("rerank.pipeline").parse_fields(b, req, opts)
    if err then return nil, err end
  else
    local src, spans = doc_spans(opts, "documents")
    v, err = check_documents(b.documents, "documents", opts.max_documents or api.DEFAULT_MAX_DOCUMENTS,
                             src, spans, opts.max_image_bytes)
    if err then return nil, err end
    req.documents = v
  end
  v, err = check_string(b.return_score, "return_score")
  if err then return nil, err end
  if v ~= nil and v ~= "relevance" and v ~= "all" then
    return fail(422, 'return_score must be one of "relevance", "all"', "return_score")
  end
  req.return_score = v
  v, err = check_int(b.top_n, "top_n", 1)
  if err then return nil, err end
  req.top_n = v
  v, err = check_bool(b.return_documents, "return_documents")
  if err then return nil, err end
  if v ~= nil then req.return_documents = v end
  v, err = check_truncate(b.truncate, "truncate")
  if err then return nil, err end
  req.truncate = v
  v, err = check_int(b.max_tokens_per_document, "max_tokens_per_document", 1)
  if err then return nil, err end
  req.max_tokens_per_document = v
  v, err = check_object(b.metadata, "metadata")
  if err then return nil, err end
  req.metadata = v
  v, err = check_string(b.user, "user")
  if err then return nil, err end
  req.user = v
  v, err = check_object(b.extra_body, "extra_body")
  if err then return nil, err end
  req.extra_body = v
  return req
end

-- The client's document for a result: its original value (string or object) as decoded.
local function document_json(req, index)
  local d = req.documents and req.documents[index + 1]
  if not d then return "null" end
  local raw = d.raw
  if raw == nil then raw = d.text end
  if type(raw) == "string" then
    if d.js and raw == d.text then return sub(d.src, d.js, d.je) end -- the client's own bytes
    return jstring(raw)
  end
  return jencode(raw)
end
api.document_json = document_json

local function value_json(v)
  if v == nil then return "null" end
  if type(v) == "number" then return number(v) end
  return jencode(v)
end

-- return_score "all": the model's raw score, the calibrated one (null without a calibration)
-- and the score's kind, after the relevance_score every answer carries
function api.score_members(r)
  local s = ',"_relevance_score":' .. number(r.relevance_score)
  if r.raw_score ~= nil then
    s = s .. ',"raw_score":' .. number(r.raw_score) .. ',"calibrated_score":'
        .. (r.calibrated_score ~= nil and number(r.calibrated_score) or 'null')
  end
  if r.score_kind then s = s .. ',"score_kind":' .. jstring(r.score_kind) end
  return s
end

-- {"id":..,"object":"list","model":..,"results":[{"index":..,"relevance_score":..,
-- "document":..?}],"usage":{"prompt_tokens":..,"total_tokens":..},"degraded":true?}
-- relevance_score goes through json.number (exact, shortest; a non-finite score, which the
-- runtime never produces, would print as null rather than break the JSON).
local function render_rerankd(result, req)
  local results = result.results or {}
  local n = #results
  local with_docs = req and req.return_documents
  local buf = table_new(n + 2, 0)
  buf[1] = '{"id":' .. value_json(result.id) .. ',"object":"list","model":'
      .. value_json(result.model or (req and req.model)) .. ',"results":['
  local all = req and req.return_score == "all"
  for i = 1, n do
    local r = results[i]
    local idx = r.index
    -- pipeline results carry their extra members (id, stage scores) as a JSON fragment
    local extra = r.extra or (all and api.score_members(r)) or ""
    if with_docs then
      buf[i + 1] = (i > 1 and ',{"index":' or '{"index":') .. number(idx) .. ',"relevance_score":'
          .. number(r.relevance_score) .. extra .. ',"document":' .. document_json(req, idx) .. '}'
    else
      buf[i + 1] = (i > 1 and ',{"index":' or '{"index":') .. number(idx) .. ',"relevance_score":'
          .. number(r.relevance_score) .. extra .. '}'
    end
  end
  local u = result.usage or {}
  local pt = u.prompt_tokens or 0
  -- optional members only when known: completion tokens (LLMs), search units, cost (USD
  -- from config prices), score_kind ("rank" for listwise), repairs (LLM answers fixed up)
  buf[n + 2] = '],"usage":{"prompt_tokens":' .. number(pt)
      .. (u.completion_tokens and (',"completion_tokens":' .. number(u.completion_tokens)) or '')
      .. ',"total_tokens":' .. number(u.total_tokens or pt)
      .. (u.search_units and (',"search_units":' .. number(u.search_units)) or '')
      .. (u.cost and (',"cost":' .. number(u.cost)) or '') .. '}'
      .. (result.score_kind and result.score_kind ~= "relevance" and (',"score_kind":' .. jstring(result.score_kind)) or '')
      .. (result.repairs and result.repairs > 0 and (',"repairs":' .. number(result.repairs)) or '')
      .. (result.degraded and ',"degraded":true}' or '}')
  return concat(buf)
end

shapes.rerankd = { parse = parse_rerankd, render = render_rerankd }

---------------------------------------------------------------------------------------------

function api.register(name, shape)
  if type(name) ~= "string" or type(shape) ~= "table" or type(shape.parse) ~= "function"
      or type(shape.render) ~= "function" then
    error("api.register(name, { parse = fn, render = fn })", 2)
  end
  shapes[name] = shape
end

local function get_shape(name)
  local sh = shapes[name]
  if not sh then error("unknown API shape " .. tostring(name), 3) end
  return sh
end

function api.parse(shape, body, opts)
  local sh = get_shape(shape)
  local b = body
  if type(body) ~= "table" then
    local err
    b, err = json.decode(body)
    if b == nil then return fail(400, "invalid JSON body: " .. tostring(err)) end
  end
  if not is_object(b) then return fail(400, "request body must be a JSON object") end
  return api.parse_decoded(sh.parse, b, opts, b ~= body)
end

-- Runs a shape's parse over a decoded body. from_json: the body was JSON text, so an
-- unmarked empty table was {} (json.decode marks every []) and is not an array.
function api.parse_decoded(parse, b, opts, from_json)
  strict_arrays = from_json and true or false -- parse never yields: the flag cannot leak
  local ok, req, err = pcall(parse, b, opts or {})
  strict_arrays = false
  if not ok then error(req, 0) end
  return req, err
end

-- HTTP bodies must be UTF-8: json.decode_request reports the first bad byte (0-based).
function api.utf8_error(at)
  return select(2, fail(400, ("request body is not valid UTF-8 (byte %d)"):format(at)))
end

function api.render(shape, result, req)
  return get_shape(shape).render(result, req)
end

function api.render_error(shape, err)
  local sh = get_shape(shape)
  if sh.render_error then return sh.render_error(err) end
  return json.error_body(err.status or 500, err.type, err.message, err.param)
end

return api
