-- Cohere v1 rerank (POST /v1/rerank with Cohere fields or a Cohere SDK; /cohere/v1/rerank).
-- Request: model?, query, documents (strings or objects), top_n, rank_fields,
-- return_documents (default true: what Cohere v1 clients expect), max_chunks_per_doc,
-- max_tokens_per_doc (plus rerankd's max_tokens_per_document, truncate, metadata, user);
-- `returnDocuments` is read too (the TypeScript SDK passes unknown keys through unconverted).
-- Answer: {"id","object":"list","model","results":[{"index","relevance_score","document"?}],
-- "meta":{api_version{version:"1"},billed_units{search_units},tokens},"usage":{...}}: Cohere's
-- fields plus rerankd's. A document is the client's object, or {"text": s} for a string.
-- Errors: {"message": ..., "error": {type, message, param}}.
local api = require "rerank.shapes.registry"
local C = require "rerank.shapes.common"

local check = api.check
local number, value_json = C.number, C.value_json

local S = { name = "cohere_v1", version = "1" }

-- rerankd's own fields, read after Cohere's (api.check.fields)
local FIELDS = { { "truncate", check.truncate }, { "metadata", check.object }, { "user", check.string },
                 { "extra_body", check.object } }

-- fields shared with the 2024-09 v2 schema
function S.parse_fields(b, opts, req)
  local v, err
  v, err = C.model(b.model)
  if err then return nil, err end
  req.model = v
  v, err = check.query(b.query, "query")
  if err then return nil, err end
  req.query = v
  v, err = C.string_list(b.rank_fields, "rank_fields", false, opts.from_json)
  if err then return nil, err end
  req.rank_fields = v
  local dopts = api.documents_opts(opts)
  dopts.rank_fields, dopts.strings_only = req.rank_fields, opts.strings_only
  v, err = check.documents(b.documents, "documents", dopts)
  if err then return nil, err end
  req.documents = v
  v, err = check.int(b.top_n, "top_n", 1)
  if err then return nil, err end
  req.top_n = v
  local rd = b.return_documents
  if not C.present(rd) then rd = b.returnDocuments end
  v, err = check.bool(rd, "return_documents")
  if err then return nil, err end
  if v ~= nil then req.return_documents = v end
  v, err = check.int(b.max_chunks_per_doc, "max_chunks_per_doc", 1)
  if err then return nil, err end
  req.max_chunks_per_doc = v
  v, err = check.int(b.max_tokens_per_doc, "max_tokens_per_doc", 1)
  if err then return nil, err end
  if v == nil then
    -- rerankd's own fields stay valid when a Cohere field made the request Cohere v1
    v, err = check.int(b.max_tokens_per_document, "max_tokens_per_document", 1)
    if err then return nil, err end
  end
  req.max_tokens_per_document = v
  return check.fields(b, req, FIELDS)
end

function S.parse(b, opts)
  return S.parse_fields(b, opts, { shape = S.name, return_documents = true })
end

-- Cohere's results list; documents as objects when asked
function S.results_json(result, req)
  return '[' .. C.results(result, req, C.index_score, "document", C.document_object) .. ']'
end

function S.render_version(version, result, req)
  local pt, tt = C.usage(result)
  return '{"id":' .. value_json(result.id) .. ',"object":"list","model":'
      .. C.model_json(result, req) .. ',"results":' .. S.results_json(result, req)
      .. ',"meta":' .. C.cohere_meta(version, result)
      .. ',"usage":{"prompt_tokens":' .. number(pt) .. ',"total_tokens":' .. number(tt)
      .. ',"search_units":' .. number(C.search_units(result)) .. '}'
      .. C.close(result)
end

function S.render(result, req) return S.render_version("1", result, req) end

function S.render_error(err) return C.error_superset("message", err) end

return S
