-- Jina AI Reranker: POST https://api.jina.ai/v1/rerank, Bearer JINA_API_KEY.
-- Body {model, query, documents[string], top_n, return_documents}; answer results[] with
-- relevance_score and usage.total_tokens.
local U = require "rerank.provider_util"

local P = {
  name = "jina",
  env_key = "JINA_API_KEY",
  defaults = { base_url = "https://api.jina.ai", path = "/v1/rerank", model = "jina-reranker-v2-base-multilingual" },
  options = { rank_fields = "table" }, -- object documents are flattened on these fields
  parse = U.parser,
}

function P.build(model, req)
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    documents = U.texts(req, U.param(model, req, "rank_fields")),
    top_n = U.top_n(req),
    return_documents = req.return_documents == true,
  })
end

return P
