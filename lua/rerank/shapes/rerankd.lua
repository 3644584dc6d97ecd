-- rerankd's own shape: POST /v1/rerank as the spec defines it (reference/002_6e2ab227ad9244fd.txt),
-- the shape the library takes too. shapes/registry.lua registers it as "rerankd" (always there);
-- shapes/init.lua answers it on /v1/rerank as "rerankd_v1" (plus Cohere's meta).
-- Request: model?, query, documents (strings or objects {text, id?, title?, metadata?,
-- image?}) or pipeline/lists (lua/rerank/engine/pipeline.lua), top_n, return_documents (default
-- false), return_score, truncate, max_tokens_per_document, metadata, user, extra_body.
-- An object's text is its text_field (opts.text_field, default "text") when that is set, else
-- its `text`; with rank_fields (a Cohere field rerankd accepts too), an object without either
-- is ranked on the named fields. The document's `raw` is always the client's own value.
-- Answer: {"id","object":"list","model","results":[{"index","relevance_score","document"?}],
-- "usage":{...}} (shapes/registry.lua's helpers for documents and score members).
local api = require "rerank.shapes.registry"
local json = require "rerank.json"

local type = type
local number, jstring = json.number, json.string
local check, fail = api.check, api.fail
local present = check.present

local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local S = { name = "rerankd" }

-- the documents options of a request body b under parse opts: rerankd's own rules for
-- api.check.documents (lua/rerank/shapes/registry.lua)
function S.documents_opts(b, opts)
  local o = api.documents_opts(opts)
  o.rank_fields = type(b.rank_fields) == "table" and b.rank_fields or nil
  o.rerankd = true
  return o
end

-- the optional fields after the documents (api.check.fields)
local FIELDS = { { "top_n", check.int, 1 }, { "return_documents", check.bool }, { "truncate", check.truncate },
                 { "max_tokens_per_document", check.int, 1 }, { "metadata", check.object },
                 { "user", check.string }, { "extra_body", check.object } }

function S.parse(b, opts)
  local req = { shape = "rerankd", return_documents = false }
  local v, err
  -- model
  v, err = check.string(b.model, "model")
  if err then return nil, err end
  if v == "" then return fail(422, "model must not be empty", "model") end
  req.model = v
  -- pipeline / lists (lua/rerank/engine/pipeline.lua): query optional until a rerank stage needs it
  local piped = present(b.pipeline) or present(b.lists)
  if not (piped and not present(b.query)) then
    v, err = check.query(b.query, "query")
    if err then return nil, err end
    req.query = v
  end
  if piped then
    err = require("rerank.engine.pipeline").parse_fields(b, req, opts)
    if err then return nil, err end
  else
    v, err = check.documents(b.documents, "documents", S.documents_opts(b, opts))
    if err then return nil, err end
    req.documents = v
  end
  v, err = check.string(b.return_score, "return_score")
  if err then return nil, err end
  if v ~= nil and v ~= "relevance" and v ~= "all" then
    return fail(422, 'return_score must be one of "relevance", "all"', "return_score")
  end
  req.return_score = v
  return check.fields(b, req, FIELDS)
end

local function value_json(v)
  if v == nil then return "null" end
  if type(v) == "number" then return number(v) end
  return json.encode(v)
end

-- {"id":..,"object":"list","model":..,"results":[{"index":..,"relevance_score":..,
-- "document":..?}],"usage":{"prompt_tokens":..,"total_tokens":..},"degraded":true?}
-- relevance_score goes through json.number (exact, shortest; a non-finite score, which the
-- runtime never produces, would print as null rather than break the JSON).
-- As a list of strings, the last one closing it: the daemon writes them out without making
-- one string of them (shapes/init.lua); render, the parts joined, is added on registration.
function S.render_parts(result, req)
  local results = result.results or {}
  local n = #results
  local with_docs = req and req.return_documents
  local buf = table_new(n + 2, 0)
  buf[1] = '{"id":' .. value_json(result.id) .. ',"object":"list","model":'
      .. value_json(result.model or (req and req.model)) .. ',"results":['
  local all = req and req.return_score == "all"
  local document_json = api.document_json
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
  return buf
end

return S
