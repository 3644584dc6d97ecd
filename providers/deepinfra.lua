-- DeepInfra reranker inference: POST https://api.deepinfra.com/v1/inference/{model},
-- Bearer DEEPINFRA_API_KEY. Body {query, documents[, instruction]}; answer
-- {scores:[...]} in input order (no top_n), input_tokens.
local U = require "rerank.provider_util"

local P = {
  name = "deepinfra",
  score_kind = "probability", -- lua/rerank/score.lua
  instruction = "field",
  env_key = "DEEPINFRA_API_KEY",
  defaults = { base_url = "https://api.deepinfra.com", path = "/v1/inference/{model}", model = "Qwen/Qwen3-Reranker-4B" },
  options = { rank_fields = "table" },
  parse = U.parser,
}

P.build = U.rerank_build(P, {
  query = "query", documents = "texts",
  instruction = "instruction", -- Qwen3-Reranker task instruction
}, { model_in_path = true })

return P
