-- Jina AI Reranker: POST https://api.jina.ai/v1/rerank, Bearer JINA_API_KEY.
-- Body {model, query, documents[string], top_n, return_documents}; answer results[] with
-- relevance_score and usage.total_tokens. An image document (jina-reranker-m0) goes as
-- {image} ({text, image} with text); the URL or data: URL is sent as given.
local U = require "rerank.provider_util"

local function image_doc(text, image) return { text = text, image = image } end

local P = {
  name = "jina",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "JINA_API_KEY",
  defaults = { base_url = "https://api.jina.ai", path = "/v1/rerank", model = "jina-reranker-v2-base-multilingual" },
  options = { rank_fields = "table" }, -- object documents are flattened on these fields
  images = true, -- jina-reranker-m0 (text models refuse them upstream)
  parse = U.parser,
}

P.build = U.rerank_build(P, {
  model = "model", query = "query", top_n = "top_n",
  documents = function(model, req) return U.media_body(req, U.param(model, req, "rank_fields"), image_doc) end,
  return_documents = "return_documents",
})

return P
