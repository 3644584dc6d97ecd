-- Voyage AI rerank (POST /v1/rerank with `top_k` or `truncation`, which the Voyage SDK always
-- sends, possibly null; /voyage/v1/rerank).
-- Request: model, query, documents (strings; objects with text accepted), top_k (null: all),
-- return_documents (default false), truncation (default true: "end"; false: "none").
-- Answer: {"object":"list","data":[{"relevance_score","index","document"?: string}],
-- "model","usage":{"total_tokens"}} (+ "id").
-- Errors: {"detail": ..., "error": {...}}.
local api = require "rerank.api"
local C = require "rerank.shapes.common"

local check = api.check
local number, value_json = C.number, C.value_json
local concat = table.concat

local S = { name = "voyage" }

function S.parse(b, opts)
  local req = { shape = S.name, return_documents = false }
  local v, err = C.model(b.model)
  if err then return nil, err end
  req.model = v
  v, err = check.query(b.query, "query")
  if err then return nil, err end
  req.query = v
  v, err = C.documents(b.documents, "documents", { max = opts.max_documents, text_field = opts.text_field })
  if err then return nil, err end
  req.documents = v
  v, err = check.int(b.top_k, "top_k", 1)
  if err then return nil, err end
  req.top_n = v
  if req.top_n == nil then
    v, err = check.int(b.top_n, "top_n", 1)
    if err then return nil, err end
    req.top_n = v
  end
  v, err = check.bool(b.return_documents, "return_documents")
  if err then return nil, err end
  if v ~= nil then req.return_documents = v end
  v, err = check.bool(b.truncation, "truncation")
  if err then return nil, err end
  if v == false then req.truncate = "none" elseif v == true then req.truncate = "end" end
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
    local s = '{"relevance_score":' .. number(r.relevance_score) .. ',"index":' .. number(r.index)
    if with_docs then s = s .. ',"document":' .. C.document_text(req, r.index) end
    buf[i] = s .. '}'
  end
  local _, tt = C.usage(result)
  return '{"id":' .. value_json(result.id) .. ',"object":"list","data":[' .. concat(buf, ',') .. '],"model":'
      .. value_json(result.model or (req and req.model)) .. ',"usage":{"total_tokens":' .. number(tt) .. '}'
      .. (result.degraded and ',"degraded":true}' or '}')
end

function S.render_error(err) return C.error_superset("detail", err) end

return S
