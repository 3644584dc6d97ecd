-- DeepInfra reranker inference: POST https://api.deepinfra.com/v1/inference/{model},
-- Bearer DEEPINFRA_API_KEY. Body {query, documents[, instruction]}; answer
-- {scores:[...]} in input order (no top_n), input_tokens.
local U = require "rerank.provider_util"

local P = {
  name = "deepinfra",
  env_key = "DEEPINFRA_API_KEY",
  defaults = { base_url = "https://api.deepinfra.com", path = "/v1/inference/{model}", model = "Qwen/Qwen3-Reranker-4B" },
  options = { rank_fields = "table" },
  parse = U.parser,
}

function P.build(model, req)
  return U.post(model, P, req, {
    query = req.query,
    documents = U.texts(req, U.param(model, req, "rank_fields")),
    instruction = model.instruction, -- Qwen3-Reranker task instruction
  }, nil, { model = U.model_id(model, P) })
end

return P
