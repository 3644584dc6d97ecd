-- The wire-shape registry (DESIGN §3, §6): shapes by name (register, parse, render) and the
-- field checks every shape module uses (api.check). The shapes themselves: shapes/*.lua.
--
--   api.parse(shape, body, opts) -> req | nil, err
--       body: the request body (a JSON string), or an already-decoded table (library callers).
--       opts: { max_documents = 10000, max_image_bytes = 5 MiB, text_field = "text",
--               from_json = bool (a decoded table that was JSON text; a string body is) }
--       The shape's parse gets a copy of opts with from_json set (check.is_array below).
--       err:  { status = 400|413|415|422, type = "invalid_request_error", message =, param = }
--   api.render(shape, result, req) -> JSON string in the shape the client spoke
--   api.render_error(shape, err) -> JSON error body in that shape
--   api.register(shape, { parse = fn(body_table, opts) -> req | nil, err,   (one module a shape:
--                                                                        lua/rerank/shapes/)
--                         render = fn(result, req) -> string, render_error = fn(err)?,
--                         render_parts = fn(result, req) -> { strings }? })
--       (a shape with render_parts alone gets render = the parts joined)
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
--           return_score = "relevance"|"all"|nil,   (pipelines: lua/rerank/engine/pipeline.lua)
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
-- (1e300) are kept as numbers and clamp the same way, but a number that is not finite
-- (1e400 reads as inf) is no integer: 400, wherever an integer is expected, and a numeric
-- id must be finite too.
local json = require "rerank.json"

local type, next, floor, find, lower, tostring = type, next, math.floor, string.find, string.lower, tostring
local huge, pairs = math.huge, pairs
local null, kind, number = json.null, json.kind, json.number
local jstring, jencode = json.string, json.encode

local api = {}
api.DEFAULT_MAX_DOCUMENTS = 10000

local shapes = {}
api.shapes = shapes

local fail = require("rerank.engine.errors").fail
api.fail = fail

---------------------------------------------------------------------------------------------
-- field checks shared by the shapes; each returns value | nil, err (value nil when absent)

local function present(v) return v ~= nil and v ~= null end

local function is_object(v) return type(v) == "table" and kind(v) == "object" end

-- Arrays: a marked or [1]-holding table, or an empty unmarked one from a Lua caller. For
-- JSON text (from_json: the parse's opts.from_json), json.decode marks every empty [] (so an
-- unmarked empty table was {}): strict.
local function is_array(v, from_json)
  return type(v) == "table" and (kind(v) == "array" or (not from_json and next(v) == nil))
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
  if type(v) ~= "number" or v ~= floor(v) or v == huge or v == -huge then
    return fail(400, param .. " must be an integer", param)
  end
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

-- Optional fields into req, in order (the first error wins): fields = { { name, check, min? },
-- ... }, check one of the checks above; an absent field leaves req[name] as it was (the
-- shape's default) -> req | nil, err
local function check_fields(b, req, fields)
  for i = 1, #fields do
    local f = fields[i]
    local name = f[1]
    local v, err = f[2](b[name], name, f[3])
    if err then return nil, err end
    if v ~= nil then req[name] = v end
  end
  return req
end

api.check = {
  present = present, is_object = is_object, is_array = is_array,
  string = check_string, bool = check_bool, object = check_object, int = check_int,
  truncate = check_truncate, query = check_query, fields = check_fields,
}

---------------------------------------------------------------------------------------------
-- documents: strings or objects -> internal documents (every shape's; two rules for objects)

local docs = require "rerank.engine.documents"
local core = require "rerank.core"
local LAZY, json_text, bytes = core.json_lazy, core.json_text, core.bytes -- bytes: sub of a string or body
local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

-- An object document's text, the client shapes' rule: its text_field (default "text"; any
-- other field's scalar read as text), else its `text`, else its rank_fields; an image document
-- with neither text_field nor `text` member has "" -> text | nil, err
local function client_text(d, p, tf, rf, image)
  local text = d[tf]
  if text == null then text = nil end
  if image and text == nil and d.text == nil then text = "" end
  if text ~= nil and type(text) ~= "string" then
    if tf == "text" then return fail(400, p .. ".text must be a string", p .. ".text") end
    text = docs.field_text(d, tf)
  end
  if text == nil and tf ~= "text" and type(d.text) == "string" then text = d.text end -- field absent: text
  if text == nil and rf then text = docs.rank_text(d, rf) or "" end
  if text == nil then return fail(400, p .. "." .. tf .. " is required", p .. "." .. tf) end
  return text
end

-- rerankd's rule: with text_field or rank_fields, the field's text, else a string `text`,
-- else the rank_fields; without them `text`, which must be a string; an image document
-- needs no text (its text is then "") -> text | nil, err
local function rerankd_text(d, p, tf, rf, image)
  local text = d.text
  if tf ~= "text" or rf then
    text = tf ~= "text" and docs.field_text(d, tf) or nil
    if text == nil and type(d.text) == "string" then text = d.text end -- text_field absent: text
    if text == nil and rf then text = docs.rank_text(d, rf) or "" end
    if text == nil and not image then return fail(400, p .. "." .. tf .. " is required", p .. "." .. tf) end
  end
  if image and not present(text) then text = "" end
  if not present(text) then return fail(400, p .. ".text is required", p .. ".text") end
  if type(text) ~= "string" then return fail(400, p .. ".text must be a string", p .. ".text") end
  return text
end

-- Documents: strings or objects {text, id?, title?, metadata?, image?} -> internal documents
-- (the request's `documents` above). An object with `image` (check_image) needs no text.
-- opts: { max = n, text_field = "text", rank_fields = raw list | nil, strings_only = bool,
--         max_image_bytes = n, from_json = bool (check.is_array), body =, spans =
--         (json.decode_request), rerankd = bool, no_splice = bool }.
-- With body/spans, a document whose text is its JSON string `text` records the string's bytes:
-- d.src, d.js, d.je (json.encode and responses splice them; not with no_splice). A string
-- document that json.decode_request left lazy (core.json_lazy) stays bytes of the body
-- (docs.lazy, lua/rerank/engine/documents.lua) while it may be spliced, else becomes its text.
-- opts.rerankd: rerankd's own rules (rerankd_text; a title that is not a string, metadata
-- that is not an object and a numeric id that is not finite are errors, not dropped; no
-- spans when text_field or rank_fields choose the texts); else the client shapes' rules
-- (client_text; a wrong-typed title or metadata is dropped).
local function check_documents(v, param, opts)
  if not present(v) then return fail(400, param .. " is required", param) end
  if not is_array(v, opts.from_json) then return fail(400, param .. " must be an array", param) end
  local n = #v
  local max_docs = opts.max or api.DEFAULT_MAX_DOCUMENTS
  if n > max_docs then
    return fail(422, param .. " has " .. n .. " items; the maximum is " .. max_docs, param)
  end
  local strict = opts.rerankd
  local tf = opts.text_field or "text"
  local rf = opts.rank_fields
  if not docs.useful_fields(rf) then rf = nil end
  -- the body and spans: where lazy texts lie (json.decode_request with a lazy key) and, when
  -- the texts are the documents' own (not chosen by text_field or rank_fields), what splices
  local body, all_spans = doc_spans(opts, param)
  local src, spans
  if not (strict and (tf ~= "text" or rf)) and not opts.no_splice then src, spans = body, all_spans end
  local object_text = strict and rerankd_text or client_text
  local out = table_new(n, 0)
  for i = 1, n do
    local d = v[i]
    local td = type(d)
    if d == LAZY then -- a string document still in the body (no escapes)
      local js, je = doc_span(all_spans, i)
      if not js then error("documents: a lazy text without its span (pass the body and spans)", 0) end
      if spans then
        out[i] = docs.lazy(i - 1, src, js, je)
      else
        local text = json_text(body, js, je)
        out[i] = { index = i - 1, text = text, raw = text }
      end
    elseif td == "string" then
      local js, je = doc_span(spans, i)
      out[i] = { index = i - 1, text = d, raw = d, src = js and src, js = js, je = je }
    elseif td == "table" and kind(d) == "object" and not opts.strings_only then
      local p = param .. "[" .. (i - 1) .. "]"
      local id, title, md = d.id, d.title, d.metadata
      local image, text, err = d.image
      if present(image) then
        image, err = check_image(image, p, opts.max_image_bytes)
        if err then return nil, err end
      else
        image = nil
      end
      text, err = object_text(d, p, tf, rf, image ~= nil)
      if err then return nil, err end
      if id == null then
        id = nil
      elseif id ~= nil and type(id) ~= "string" and type(id) ~= "number" then
        return fail(400, p .. ".id must be a string or a number", p .. ".id")
      elseif strict and type(id) == "number" and not (id > -huge and id < huge) then
        return fail(422, p .. ".id must be a finite number", p .. ".id")
      end
      if strict then
        title, err = check_string(title, p .. ".title")
        if err then return nil, err end
        md, err = check_object(md, p .. ".metadata")
        if err then return nil, err end
      else
        if type(title) ~= "string" then title = nil end
        if not is_object(md) then md = nil end
      end
      local js, je -- the span of the "text" member: only when that is the text
      if tf == "text" and text == d.text then js, je = doc_span(spans, i) end
      out[i] = { index = i - 1, text = text, id = id, title = title, metadata = md, raw = d,
                 src = js and src, js = js, je = je, image = image }
    else
      local p = param .. "[" .. (i - 1) .. "]"
      if opts.strings_only then return fail(400, p .. " must be a string", p) end
      return fail(400, p .. " must be a string or an object with a " .. (strict and "text" or tf) .. " field", p)
    end
  end
  return out
end
api.check.documents = check_documents

-- the documents options (check.documents) from a shape's parse opts
function api.documents_opts(opts)
  return { max = opts.max_documents, text_field = opts.text_field, from_json = opts.from_json,
           max_image_bytes = opts.max_image_bytes, body = opts.body, spans = opts.spans }
end

---------------------------------------------------------------------------------------------
-- answer helpers the shapes share (lua/rerank/shapes/)

-- The client's document for a result: its original value (string or object) as decoded.
local function document_json(req, index)
  local d = req.documents and req.documents[index + 1]
  if not d then return "null" end
  if docs.is_lazy(d) then return bytes(d.src, d.js, d.je) end -- the client's own bytes, no string made
  local raw = d.raw
  if raw == nil then raw = d.text end
  if type(raw) == "string" then
    if d.js and raw == d.text then return bytes(d.src, d.js, d.je) end -- the client's own bytes
    return jstring(raw)
  end
  return jencode(raw)
end
api.document_json = document_json

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

---------------------------------------------------------------------------------------------

function api.register(name, shape)
  if type(shape) == "table" and type(shape.render) ~= "function"
      and type(shape.render_parts) == "function" then -- render: the parts joined
    local parts = shape.render_parts
    shape.render = function(result, req) return table.concat(parts(result, req)) end
  end
  if type(name) ~= "string" or type(shape) ~= "table" or type(shape.parse) ~= "function"
      or type(shape.render) ~= "function" then
    error("api.register(name, { parse = fn, render = fn or render_parts = fn })", 2)
  end
  shapes[name] = shape
end

local function get_shape(name)
  local sh = shapes[name]
  if not sh then error("unknown API shape " .. tostring(name), 3) end
  return sh
end

-- A request body (a JSON string, or a table already decoded) as an object -> b | nil, err
function api.body_object(body)
  local b = body
  if type(body) ~= "table" then
    local err
    b, err = json.decode(body)
    if b == nil then return fail(400, "invalid JSON body: " .. tostring(err)) end
  end
  if not is_object(b) then return fail(400, "request body must be a JSON object") end
  return b
end

function api.parse(shape, body, opts)
  local sh = get_shape(shape)
  local b, err = api.body_object(body)
  if not b then return nil, err end
  return sh.parse(b, api.parse_opts(opts, b ~= body))
end

-- The opts a shape's parse gets: a copy of the caller's, from_json set when the body was
-- JSON text (then an unmarked empty table was {}, not an array: check.is_array).
function api.parse_opts(opts, from_json)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.from_json = (from_json or o.from_json) and true or nil
  return o
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

-- rerankd's own shape is always there (lua/rerank/shapes/rerankd.lua; it requires this module)
package.loaded["rerank.shapes.registry"] = api
api.register("rerankd", require "rerank.shapes.rerankd")

return api
