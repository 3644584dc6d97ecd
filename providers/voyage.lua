-- Voyage AI Reranker: POST https://api.voyageai.com/v1/rerank, Bearer VOYAGE_API_KEY.
-- top_n -> top_k; truncate "none" -> truncation false ("start"/"end" -> true);
-- answer under data[] with relevance_score, usage.total_tokens.
-- Instructions (rerank-2.5 and later; the API has no field for them) go in the query text:
-- "Instruction: <instruction>. Query: <query>". Older models (rerank-2, rerank-2-lite,
-- rerank-1, rerank-lite-1) do not follow instructions: a request with one gets a 422.
local U = require "rerank.provider_util"

local P = {
  name = "voyage",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "VOYAGE_API_KEY",
  defaults = { base_url = "https://api.voyageai.com", path = "/v1/rerank", model = "rerank-2.5" },
  limits = { max_documents = 1000 },
  options = { rank_fields = "table", truncate = U.TRUNCATE_OPTION },
  parse = U.parser,
}

local NO_INSTRUCTIONS = { ["rerank-2"] = true, ["rerank-2-lite"] = true, ["rerank-1"] = true, ["rerank-lite-1"] = true }

-- "query" for models that follow instructions, nil for the older ones
function P.instruction(model)
  if NO_INSTRUCTIONS[U.model_id(model, P) or ""] then return nil end
  return "query"
end

local TRUNCATION = { none = false, start = true, ["end"] = true }

P.build = U.rerank_build(P, {
  model = "model",
  query = function(model, req) return U.instructed_query(req.query, U.instruction(model, req)) end,
  documents = "texts",
  top_k = "top_n",
  return_documents = "return_documents",
  truncation = function(model, req) return U.truncate(model, req, TRUNCATION) end,
})

return P
