-- Pinecone Inference rerank: POST https://api.pinecone.io/rerank with `Api-Key` (not Bearer)
-- and `X-Pinecone-Api-Version`. documents are objects ({text, id?, <rank_fields>}),
-- truncate -> parameters.truncate ("END"/"NONE"); answer data[] with score,
-- usage.rerank_units (reported as search_units).
local U = require "rerank.provider_util"

local P = {
  name = "pinecone",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "PINECONE_API_KEY",
  defaults = { base_url = "https://api.pinecone.io", path = "/rerank", model = "bge-reranker-v2-m3" },
  options = { api_version = "string", rank_fields = "table", truncate = U.TRUNCATE_OPTION },
  parse = U.parser,
}

-- the API truncates at the end or not at all, so "start" also truncates at the end
local TRUNCATE = U.TRUNCATE_NONE_END

function P.build(model, req)
  local rf = U.param(model, req, "rank_fields")
  local trunc = U.truncate(model, req, TRUNCATE)
  local headers = { ["X-Pinecone-Api-Version"] = U.opt(model, "api_version", "2025-10") }
  headers["Api-Key"] = U.api_key(model, P.env_key)
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    documents = U.objects(req, rf),
    rank_fields = type(rf) == "table" and #rf > 0 and rf or nil,
    top_n = U.top_n(req),
    return_documents = req.return_documents == true,
    parameters = trunc and { truncate = trunc } or nil,
  }, headers)
end

return P
