-- Jina AI rerank (POST /jina/v1/rerank; on /v1/rerank a Jina request is indistinguishable
-- from rerankd's own and gets the rerankd_v1 answer, which Jina clients read the same way).
-- Request: model, query, documents (strings or objects with text), top_n,
-- return_documents (default true, as Jina's API answers).
-- Answer: {"id","object":"list","model","usage":{"total_tokens","prompt_tokens"},
-- "results":[{"index","relevance_score","document"?: {"text"}}]}.
-- Errors: {"detail": ..., "error": {...}}.
local api = require "rerank.shapes.registry"
local C = require "rerank.shapes.common"

local check = api.check
local number, value_json = C.number, C.value_json

local S = { name = "jina" }

function S.parse(b, opts)
  local req, err = C.model_query_documents(b, { shape = S.name, return_documents = true }, "documents",
                                           { max = opts.max_documents, text_field = opts.text_field,
                                             body = opts.body, spans = opts.spans, from_json = opts.from_json,
                                             max_image_bytes = opts.max_image_bytes })
  if not req then return nil, err end
  local v
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
  local pt, tt = C.usage(result)
  return '{"id":' .. value_json(result.id) .. ',"object":"list","model":' .. C.model_json(result, req)
      .. ',"usage":{"total_tokens":' .. number(tt) .. ',"prompt_tokens":' .. number(pt) .. '},"results":['
      .. C.results(result, req, C.index_score, "document", C.document_text_object) .. ']' .. C.close(result)
end

function S.render_error(err) return C.error_superset("detail", err) end

return S
