-- Client wire shapes on one port (DESIGN §6): registration, detection, and the request
-- fields every shape shares. One file per shape in this folder (rerankd's own in rerankd.lua,
-- registered by shapes/registry.lua); helpers in common.lua.
--
--   shapes.detect(route, body, headers) -> shape name
--       route: "v1" (POST /v1/rerank), "v2" (/v2/rerank), "rerank" (/rerank), or a shape name
--       (the explicit /cohere/v1/rerank, /cohere/v2/rerank, /jina/v1/rerank, /voyage/v1/rerank,
--       /tei/rerank routes). body: the decoded request; headers: lower-case names.
--   shapes.parse(shape, body, opts) -> req | nil, err
--       the shape's parser plus the fields every shape accepts: timeout, fallbacks,
--       text_field, rank_fields, max_chunks_per_doc, max_tokens_per_doc.
--       opts: { max_documents = n, text_field = the configured default, from_json = bool,
--               body = the request's JSON text, spans = its document spans (json.decode_request) }
--       The shape's parse gets opts with text_field resolved (the body's, else the default)
--       and from_json set (api.parse_opts); it reads its documents with them.
--   shapes.render(shape, result, req [, parts]) -> body, extra_headers | nil
--       parts: the caller takes the body as a list of strings too (the daemon writes them
--       out in C): a shape with render_parts gives one, so no response-sized Lua string
--       is made (long strings that differ in a few bytes share LuaJIT's hash chains).
--   shapes.render_error(shape, err) -> body
--
-- Detection on /v1/rerank (and on /rerank without `texts`); the first match wins:
--   1. `top_k` or `truncation` present, even as null (the Voyage SDK always sends both) -> voyage
--   2. a Cohere field (`rank_fields`, `max_chunks_per_doc`, `max_tokens_per_doc`,
--      `returnDocuments`) or a Cohere SDK header (`x-fern-sdk-name: cohere...`,
--      `x-client-name`, `user-agent: cohere...`) -> cohere_v1
--   3. `texts` without `documents` -> tei
--   4. anything else -> rerankd_v1: rerankd's own response (the spec's shape, byte for byte)
--      plus a Cohere `meta` object at the end, so the one answer satisfies rerankd, Jina,
--      vLLM/Infinity/llama.cpp (Jina format) and Cohere v1 clients that send no Cohere field.
-- cohere_v1 answers with Cohere's fields (id, results[{index, relevance_score, document}],
-- meta) and rerankd's (object, model, usage), so a rerankd client that used a Cohere field
-- is served too; its documents are objects ({"text": s} for a string document).
local api = require "rerank.shapes.registry"
local json = require "rerank.json"
local C = require "rerank.shapes.common"

local type, ipairs, tostring = type, ipairs, tostring
local find, lower = string.find, string.lower
local null = json.null
local check = api.check
local fail = api.fail

local M = {}

M.NAMES = { "cohere_v1", "cohere_v2", "jina", "voyage", "tei", "vllm_score", "nim" }

---------------------------------------------------------------------------------------------
-- fields every shape accepts

-- (fallbacks and rank_fields here take an empty {} as an empty list even from JSON text, as
-- they always have; a shape that reads rank_fields itself, Cohere's, is strict)
local function common(req, b)
  local v, err
  if C.present(b.timeout) then
    v = C.parse_timeout(b.timeout)
    if not v then
      return fail(400, "timeout must be a number of seconds or a duration such as 500ms", "timeout")
    end
    if v ~= v or v <= 0 then return fail(422, "timeout must be > 0", "timeout") end
    if v == math.huge then return fail(422, "timeout must be a finite number of seconds", "timeout") end
    req.timeout = v
  end
  if C.present(b.fallbacks) then
    v, err = C.string_list(b.fallbacks, "fallbacks", true)
    if err then return nil, err end
    req.fallbacks = v
  end
  if req.rank_fields == nil and C.present(b.rank_fields) then
    v, err = C.string_list(b.rank_fields, "rank_fields")
    if err then return nil, err end
    req.rank_fields = v
  end
  if req.max_chunks_per_doc == nil and C.present(b.max_chunks_per_doc) then
    v, err = check.int(b.max_chunks_per_doc, "max_chunks_per_doc", 1)
    if err then return nil, err end
    req.max_chunks_per_doc = v
  end
  if req.max_tokens_per_document == nil and C.present(b.max_tokens_per_doc) then
    v, err = check.int(b.max_tokens_per_doc, "max_tokens_per_doc", 1)
    if err then return nil, err end
    req.max_tokens_per_document = v
  end
  -- the score layer's cut (on the calibrated score), instructions, 2026 request fields
  if C.present(b.min_score) then
    if type(b.min_score) ~= "number" or b.min_score ~= b.min_score then
      return fail(400, "min_score must be a number", "min_score")
    end
    req.min_score = b.min_score
  end
  if req.instruction == nil then
    v, err = check.string(b.instruction, "instruction")
    if err then return nil, err end
    req.instruction = v
  end
  if req.priority == nil then
    v, err = check.int(b.priority, "priority")
    if err then return nil, err end
    if v and (v < 0 or v > 999) then return fail(422, "priority must be between 0 and 999", "priority") end
    req.priority = v
  end
  if req.max_tokens_per_query == nil then
    v, err = check.int(b.max_tokens_per_query, "max_tokens_per_query", 1)
    if err then return nil, err end
    req.max_tokens_per_query = v
  end
  return req
end

-- text_field from the body (validated) or the configured default
local function text_field(b, default)
  local tf = b.text_field
  if tf == null then tf = nil end
  if tf ~= nil and (type(tf) ~= "string" or tf == "") then
    return fail(400, "text_field must be a non-empty string", "text_field")
  end
  return tf or default or "text"
end
M.text_field = text_field

-- Each shape's parse reads its own fields, documents included (text_field arrives resolved
-- in opts.text_field, from_json in opts.from_json: api.parse_opts); the fields below are
-- read here for every shape.
function M.parse(shape, body, opts)
  opts = opts or {}
  local b, from_json = body, opts.from_json
  if type(b) == "string" and not from_json then
    local err
    b, err = json.decode(body)
    if b == nil then return fail(400, "invalid JSON body: " .. tostring(err)) end
    from_json = true
  end
  if not check.is_object(b) then return fail(400, "request body must be a JSON object") end
  local sh = api.shapes[shape]
  if not sh then error("unknown API shape " .. tostring(shape), 2) end
  local tf, terr = text_field(b, opts.text_field)
  if not tf then return nil, terr end
  local o = api.parse_opts(opts, from_json)
  o.text_field = tf
  local req, err = sh.parse(b, o)
  if not req then return nil, err end
  if tf ~= "text" then req.text_field = tf end
  return common(req, b)
end

function M.render(shape, result, req, parts)
  local sh = api.shapes[shape]
  if not sh then error("unknown API shape " .. tostring(shape), 2) end
  local body
  if parts and sh.render_parts then body = sh.render_parts(result, req) else body = sh.render(result, req) end
  local headers = sh.headers and sh.headers(result, req) or nil
  return body, headers
end

-- Runs a parsed request: instance:rerank, or the shape's own run(instance, req, timing) for
-- shapes whose one request is several reranks (vLLM's N:N score pairs).
function M.run(shape, instance, req, timing)
  local sh = api.shapes[shape]
  if sh and sh.run then return sh.run(instance, req, timing) end
  return instance:rerank(req, timing)
end

function M.render_error(shape, err)
  return api.render_error(shape, err)
end

-- an error body every client reads, for errors answered before the shape is known
M.error_every_client = C.error_every_client

---------------------------------------------------------------------------------------------
-- detection

local COHERE_FIELDS = { "rank_fields", "max_chunks_per_doc", "max_tokens_per_doc", "returnDocuments" }

local function cohere_client(headers)
  if type(headers) ~= "table" then return false end
  local sdk = headers["x-fern-sdk-name"]
  if type(sdk) == "string" and find(lower(sdk), "^cohere") then return true end
  if headers["x-client-name"] then return true end
  local ua = headers["user-agent"]
  return type(ua) == "string" and find(lower(ua), "^cohere") ~= nil
end

function M.detect(route, body, headers)
  if route == "v2" then return "cohere_v2" end
  -- a route of one shape answers in it, even when the body is not JSON
  if route ~= "v1" and route ~= "rerank" and api.shapes[route] then return route end
  if type(body) ~= "table" then return route == "rerank" and "tei" or "rerankd_v1" end
  if route == "rerank" then
    if body.texts ~= nil then return "tei" end
    route = "v1"
  end
  if route ~= "v1" then return route end
  if body.top_k ~= nil or body.truncation ~= nil then return "voyage" end
  for _, k in ipairs(COHERE_FIELDS) do
    if body[k] ~= nil and body[k] ~= null then return "cohere_v1" end
  end
  if cohere_client(headers) then return "cohere_v1" end
  if body.texts ~= nil and body.documents == nil then return "tei" end
  return "rerankd_v1"
end

---------------------------------------------------------------------------------------------
-- registration

-- rerankd's shape as answered on /v1/rerank: byte for byte the spec's answer, plus "meta"
local function render_rerankd_v1_parts(result, req)
  local parts = api.shapes.rerankd.render_parts(result, req)
  local n = #parts
  parts[n] = parts[n]:sub(1, -2) .. ',"meta":' .. C.cohere_meta("1", result) .. '}'
  return parts
end

for _, name in ipairs(M.NAMES) do api.register(name, require("rerank.shapes." .. name)) end
api.register("rerankd_v1", { parse = api.shapes.rerankd.parse, render_parts = render_rerankd_v1_parts })

return M
