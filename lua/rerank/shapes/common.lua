-- Helpers the client shapes (lua/rerank/shapes/*.lua) share: model, query and documents
-- (api.check.documents, shapes/registry.lua), string lists, usage numbers, Cohere's meta
-- object, document echo forms, error bodies.
local api = require "rerank.shapes.registry"
local json = require "rerank.json"
local scoring = require "rerank.score"
local config_ok, config = pcall(require, "rerank.config.load")

local type, tonumber = type, tonumber
local concat = table.concat
local null, jstring, number = json.null, json.string, json.number
local check = api.check
local fail = api.fail

local M = {}

local function present(v) return v ~= nil and v ~= null end
M.present = present

-- list of non-empty strings (a single string counts as a list of one when `single`);
-- from_json: the parse's opts.from_json (api.check.is_array)
function M.string_list(v, param, single, from_json)
  if not present(v) then return nil end
  if type(v) == "string" and single then v = { v } end
  if not check.is_array(v, from_json) then return fail(400, param .. " must be an array of strings", param) end
  local out = {}
  for i = 1, #v do
    local s = v[i]
    if type(s) ~= "string" or s == "" then
      return fail(400, ("%s[%d] must be a non-empty string"):format(param, i - 1), ("%s[%d]"):format(param, i - 1))
    end
    out[i] = s
  end
  return out
end

-- model, query and the documents in b[docs_field] into req (the opening of most shapes'
-- parse): req | nil, err
function M.model_query_documents(b, req, docs_field, docs_opts)
  local v, err = M.model(b.model)
  if err then return nil, err end
  req.model = v
  v, err = check.query(b.query, "query")
  if err then return nil, err end
  req.query = v
  v, err = check.documents(b[docs_field], docs_field, docs_opts)
  if err then return nil, err end
  req.documents = v
  return req
end

-- model: optional non-empty string
function M.model(v)
  local s, err = check.string(v, "model")
  if err then return nil, err end
  if s == "" then return fail(422, "model must not be empty", "model") end
  return s
end

-- usage numbers with defaults
function M.usage(result)
  local u = result.usage or {}
  local pt = u.prompt_tokens or 0
  return pt, u.total_tokens or pt, u.search_units
end

-- Cohere's billed search units: one rule, the router's (what the upstream reported, else
-- Cohere's counting for the calls made to an upstream API; lua/rerank/engine/router.lua). Local
-- scorers (bm25) and fusion bill none, whichever request field carried the documents.
function M.search_units(result)
  local _, _, su = M.usage(result)
  return su or 0
end

-- the "meta" object of a Cohere answer
function M.cohere_meta(version, result)
  local pt = M.usage(result)
  local out = result.usage and result.usage.completion_tokens or 0
  return '{"api_version":{"version":"' .. version .. '"},"billed_units":{"search_units":'
      .. number(M.search_units(result)) .. '},"tokens":{"input_tokens":' .. number(pt)
      .. ',"output_tokens":' .. number(out) .. '}}'
end

-- a document as {"text": ...}: string documents wrapped, object documents echoed whole
function M.document_object(req, index)
  local d = req.documents and req.documents[index + 1]
  if not d then return "null" end
  if type(d.raw) == "table" then return json.encode(d.raw) end
  return '{"text":' .. jstring(d.text or "") .. '}'
end

-- a document as its text string
function M.document_text(req, index)
  local d = req.documents and req.documents[index + 1]
  if not d then return "null" end
  return jstring(d.text or "")
end

-- a document as {"text": ...} whatever its form (an unknown index: {"text":""})
function M.document_text_object(req, index)
  local d = req.documents[index + 1]
  return '{"text":' .. jstring(d and d.text or "") .. '}'
end

-- The answer's results joined by ",": each '{' .. head(r) .. '}', with
-- ',"<doc_key>":' .. doc(req, r.index) before the '}' when the request asked for documents.
function M.results(result, req, head, doc_key, doc)
  local results = result.results or {}
  local with_docs = req and req.return_documents
  local buf = {}
  for i = 1, #results do
    local r = results[i]
    local s = '{' .. head(r)
    if with_docs then s = s .. ',"' .. doc_key .. '":' .. doc(req, r.index) end
    buf[i] = s .. '}'
  end
  return concat(buf, ',')
end

-- result heads: "index" then "relevance_score"
function M.index_score(r)
  return '"index":' .. number(r.index) .. ',"relevance_score":' .. number(r.relevance_score)
end

-- A result's score as a client's API defines it (want = "logit" | "probability": TEI
-- raw_scores, vLLM use_activation, NIM logits), from the model's raw score, kind and
-- calibration (lua/rerank/score.lua); relevance_score where the kind has no such meaning.
function M.score_as(result, r, want)
  local sc = r.scoring or result.scoring -- a result merged from several reranks carries its own
  if not sc or r.raw_score == nil then return r.relevance_score end
  local v
  if want == "logit" then v = scoring.logit(r.raw_score, sc.kind, sc.calibration)
  else v = scoring.probability(r.raw_score, sc.kind, sc.calibration) end
  if v == nil then return r.relevance_score end
  return v
end

-- the answer's "model" value: the result's, else the request's
function M.model_json(result, req)
  return M.value_json(result.model or (req and req.model))
end

-- the end of an answer object: rerankd's "degraded" flag when set, then "}"
function M.close(result)
  return result.degraded and ',"degraded":true}' or '}'
end

M.number, M.jstring, M.null = number, jstring, null

function M.value_json(v)
  if v == nil or v == null then return "null" end
  if type(v) == "number" then return number(v) end
  return json.encode(v)
end

-- seconds from a number (seconds) or a duration string ("500ms", "2s")
function M.parse_timeout(v)
  if type(v) == "number" then return v end
  if type(v) == "string" then
    if config_ok and config.duration then return config.duration(v) end
    return tonumber(v)
  end
  return nil
end

-- the error body of shapes whose clients read one field (Cohere "message", Jina/Voyage
-- "detail"): that field, plus rerankd's own "error" object
function M.error_superset(field, err)
  local e = json.error_body(err.status or 500, err.type, err.message, err.param)
  return '{"' .. field .. '":' .. jstring(err.message or "error") .. ',' .. e:sub(2)
end

-- before the client's shape is known: both fields (core/server.c writes the same for the
-- errors of the HTTP layer)
function M.error_every_client(err)
  return '{"message":' .. jstring(err.message or "error") .. ',' .. M.error_superset("detail", err):sub(2)
end

return M
