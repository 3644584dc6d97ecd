-- Voyage AI rerank (POST /v1/rerank with `top_k` or `truncation`, which the Voyage SDK always
-- sends, possibly null; /voyage/v1/rerank).
-- Request: model, query, documents (strings; objects with text accepted), top_k (null: all),
-- return_documents (default false), truncation (default true: "end"; false: "none").
-- Answer: {"object":"list","data":[{"relevance_score","index","document"?: string}],
-- "model","usage":{"total_tokens"}} (+ "id").
-- Errors: {"detail": ..., "error": {...}}.
local api = require "rerank.shapes.registry"
local C = require "rerank.shapes.common"

local check = api.check
local number, value_json = C.number, C.value_json

local S = { name = "voyage" }

function S.parse(b, opts)
  local req, err = C.model_query_documents(b, { shape = S.name, return_documents = false }, "documents",
                                           api.documents_opts(opts))
  if not req then return nil, err end
  local v
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

local function score_index(r)
  return '"relevance_score":' .. number(r.relevance_score) .. ',"index":' .. number(r.index)
end

function S.render(result, req)
  local _, tt = C.usage(result)
  return '{"id":' .. value_json(result.id) .. ',"object":"list","data":['
      .. C.results(result, req, score_index, "document", C.document_text) .. '],"model":'
      .. C.model_json(result, req) .. ',"usage":{"total_tokens":' .. number(tt) .. '}' .. C.close(result)
end

function S.render_error(err) return C.error_superset("detail", err) end

return S
