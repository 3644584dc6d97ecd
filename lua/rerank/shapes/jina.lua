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

-- the optional fields after the documents (api.check.fields)
local FIELDS = { { "top_n", check.int, 1 }, { "return_documents", check.bool }, { "extra_body", check.object } }

function S.parse(b, opts)
  local req, err = C.model_query_documents(b, { shape = S.name, return_documents = true }, "documents",
                                           api.documents_opts(opts))
  if not req then return nil, err end
  return check.fields(b, req, FIELDS)
end

function S.render(result, req)
  local pt, tt = C.usage(result)
  return '{"id":' .. value_json(result.id) .. ',"object":"list","model":' .. C.model_json(result, req)
      .. ',"usage":{"total_tokens":' .. number(tt) .. ',"prompt_tokens":' .. number(pt) .. '},"results":['
      .. C.results(result, req, C.index_score, "document", C.document_text_object) .. ']' .. C.close(result)
end

function S.render_error(err) return C.error_superset("detail", err) end

return S
