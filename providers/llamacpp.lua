-- llama.cpp server started with --reranking: POST {base}/v1/rerank (also /rerank,
-- /reranking), Jina format {model?, query, documents, top_n}; optional Bearer (--api-key).
-- Answer results[] with the raw relevance_score (no sigmoid) and usage; the TEI-format bare
-- array is accepted too.
local U = require "rerank.provider_util"

local P = {
  name = "llamacpp",
  score_kind = "logit", -- lua/rerank/score.lua
  env_key = "LLAMA_API_KEY",
  defaults = { base_url = "http://127.0.0.1:8080", path = "/v1/rerank" },
  options = { rank_fields = "table" },
  parse = U.parser,
}

P.build = U.rerank_build(P, {
  model = "model", query = "query", documents = "texts", top_n = "top_n",
})

return P
