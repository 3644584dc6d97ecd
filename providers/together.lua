-- Together AI Rerank: POST https://api.together.xyz/v1/rerank, Bearer TOGETHER_API_KEY.
-- Body {model, query, documents, top_n, return_documents, rank_fields}; object documents
-- (with rank_fields) only on dedicated Llama-Rank endpoints, so strings unless asked.
local U = require "rerank.provider_util"

local P = {
  name = "together",
  env_key = "TOGETHER_API_KEY",
  defaults = { base_url = "https://api.together.xyz", path = "/v1/rerank", model = "Salesforce/Llama-Rank-V1" },
  options = { rank_fields = "table" },
  parse = U.parser,
}

function P.build(model, req)
  local rf = U.param(model, req, "rank_fields")
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    documents = U.documents(req, rf),
    top_n = U.top_n(req),
    return_documents = req.return_documents == true,
    rank_fields = U.has_fields(rf) and rf or nil,
  })
end

return P
