-- Mixedbread Reranking: POST https://api.mixedbread.com/v1/reranking, Bearer MXBAI_API_KEY.
-- documents -> input, top_n -> top_k, return_documents -> return_input; answer data[]
-- with score, usage.{prompt,total}_tokens.
local U = require "rerank.provider_util"

local P = {
  name = "mixedbread",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "MXBAI_API_KEY",
  defaults = { base_url = "https://api.mixedbread.com", path = "/v1/reranking",
               model = "mixedbread-ai/mxbai-rerank-large-v2" },
  limits = { max_documents = 1000 },
  options = { rank_fields = "table", rewrite_query = "boolean" },
  parse = U.parser,
}

P.build = U.rerank_build(P, {
  model = "model", query = "query", input = "documents", rank_fields = "rank_fields", top_k = "top_n",
  return_input = "return_documents", rewrite_query = U.option("rewrite_query"),
})

return P
