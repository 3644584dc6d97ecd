-- Fireworks AI rerank: POST https://api.fireworks.ai/inference/v1/rerank, Bearer
-- FIREWORKS_API_KEY. The schema rejects unknown fields, so only {model, query, documents,
-- top_n, return_documents, task} are sent (task = the model's `instruction`).
-- Answer data[] with relevance_score, usage.{prompt,total}_tokens.
local U = require "rerank.provider_util"

local P = {
  name = "fireworks",
  score_kind = "probability", -- lua/rerank/score.lua
  instruction = "field",
  env_key = "FIREWORKS_API_KEY",
  defaults = { base_url = "https://api.fireworks.ai", path = "/inference/v1/rerank",
               model = "accounts/fireworks/models/qwen3-reranker-8b" },
  options = { rank_fields = "table" },
  parse = U.parser,
}

P.build = U.rerank_build(P, {
  model = "model", query = "query", documents = "texts", top_n = "top_n",
  return_documents = "return_documents", task = "instruction",
})

return P
