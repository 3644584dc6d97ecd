-- Jina AI Reranker: POST https://api.jina.ai/v1/rerank, Bearer JINA_API_KEY.
-- Body {model, query, documents[string], top_n, return_documents}; answer results[] with
-- relevance_score and usage.total_tokens.
local U = require "rerank.provider_util"

local P = {
  name = "jina",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "JINA_API_KEY",
  defaults = { base_url = "https://api.jina.ai", path = "/v1/rerank", model = "jina-reranker-v2-base-multilingual" },
  options = { rank_fields = "table" }, -- object documents are flattened on these fields
  parse = U.parser,
}

P.build = U.rerank_build(P, {
  model = "model", query = "query", documents = "texts", top_n = "top_n",
  return_documents = "return_documents",
})

return P
