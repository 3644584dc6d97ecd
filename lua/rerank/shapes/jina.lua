-- Jina AI rerank (POST /jina/v1/rerank; on /v1/rerank a Jina request is indistinguishable
-- from rerankd's own and gets the rerankd_v1 answer, which Jina clients read the same way).
-- Request: model, query, documents (strings or objects with text), top_n,
-- return_documents (default true, as Jina's API answers).
-- Answer: {"id","object":"list","model","usage":{"total_tokens","prompt_tokens"},
-- "results":[{"index","relevance_score","document"?: {"text"}}]}.
-- Errors: {"detail": ..., "error": {...}}.
local api = require "rerank.api"
local C = require "rerank.shapes.common"

local check = api.check
local number, value_json = C.number, C.value_json
local concat = table.concat

local S = { name = "jina" }

function S.parse(b, opts)
  local req = { shape = S.name, return_documents = true }
  local v, err = C.model(b.model)
  if err then return nil, err end
  req.model = v
  v, err = check.query(b.query, "query")
  if err then return nil, err end
  req.query = v
  v, err = C.documents(b.documents, "documents", { max = opts.max_documents, text_field = opts.text_field })
  if err then return nil, err end
  req.documents = v
  v, err = check.int(b.top_n, "top_n", 1)
  if err then return nil, err end
  req.top_n = v
  v, err = check.bool(b.return_documents, "return_documents")
  if err then return nil, err end
  if v ~= nil then req.return_documents = v end
  v, err = check.object(b.extra_body, "extra_body")
  if err then return nil, err end
  req.extra_body = v
  return req
end

function S.render(result, req)
  local results = result.results or {}
  local with_docs = req and req.return_documents
  local buf = {}
  for i = 1, #results do
    local r = results[i]
    local s = '{"index":' .. number(r.index) .. ',"relevance_score":' .. number(r.relevance_score)
    if with_docs then
      local d = req.documents[r.index + 1]
      s = s .. ',"document":{"text":' .. C.jstring(d and d.text or "") .. '}'
    end
    buf[i] = s .. '}'
  end
  local pt, tt = C.usage(result)
  return '{"id":' .. value_json(result.id) .. ',"object":"list","model":'
      .. value_json(result.model or (req and req.model)) .. ',"usage":{"total_tokens":' .. number(tt)
      .. ',"prompt_tokens":' .. number(pt) .. '},"results":[' .. concat(buf, ',') .. ']'
      .. (result.degraded and ',"degraded":true}' or '}')
end

function S.render_error(err) return C.error_superset("detail", err) end

return S
