-- Cohere v2 rerank (POST /v2/rerank, /cohere/v2/rerank).
-- Request (every schema state of the SDK history): model, query, documents (strings; objects
-- too, as in the 2024-09 schema, with rank_fields), top_n, max_tokens_per_doc, priority
-- (0..999, sent on to Cohere upstreams; lua/rerank/shapes/init.lua), return_documents (default
-- false), max_chunks_per_doc.
-- Answer: {"id","results":[{"index","relevance_score","document"?: {"text"}}],"meta":{...}}
-- plus rerankd's object/model/usage; "document" only when return_documents is true.
-- Errors: {"message": ..., "error": {...}}.
local api = require "rerank.shapes.registry"
local C = require "rerank.shapes.common"
local V1 = require "rerank.shapes.cohere_v1"

local check = api.check

local S = { name = "cohere_v2", version = "2" }

function S.parse(b, opts)
  local req, err = V1.parse_fields(b, opts, { shape = S.name, return_documents = false })
  if not req then return nil, err end
  local _, perr = check.int(b.priority, "priority")
  if perr then return nil, perr end
  return req
end

function S.render(result, req) return V1.render_version("2", result, req) end

function S.render_error(err) return C.error_superset("message", err) end

return S
