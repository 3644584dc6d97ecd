-- Azure AI Foundry serverless Cohere Rerank: POST {deployment endpoint}/v1/rerank with a
-- Bearer key; request and answer are Cohere v1 (meta.billed_units). base_url is required.
local U = require "rerank.provider_util"

local P = {
  name = "azure_ai",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "AZURE_AI_API_KEY",
  defaults = { path = "/v1/rerank" },
  limits = { max_documents = 1000 },
  options = { rank_fields = "table", max_chunks_per_doc = "integer" },
  parse = U.parser,
}

function P.build(model, req)
  return U.post(model, P, req, U.cohere_body(model, P, req, "v1"))
end

return P
