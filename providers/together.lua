-- Together AI Rerank: POST https://api.together.xyz/v1/rerank, Bearer TOGETHER_API_KEY.
-- Body {model, query, documents, top_n, return_documents, rank_fields}; object documents
-- (with rank_fields) only on dedicated Llama-Rank endpoints, so strings unless asked.
local U = require "rerank.provider_util"

local P = {
  name = "together",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "TOGETHER_API_KEY",
  defaults = { base_url = "https://api.together.xyz", path = "/v1/rerank", model = "Salesforce/Llama-Rank-V1" },
  options = { rank_fields = "table" },
  parse = U.parser,
}

P.build = U.rerank_build(P, {
  model = "model", query = "query", documents = "documents", top_n = "top_n",
  return_documents = "return_documents", rank_fields = "rank_fields",
})

return P
