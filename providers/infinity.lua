-- Infinity (michaelfeil/infinity): POST {base}/rerank (prefix with --url-prefix, e.g.
-- path: /v1/rerank), optional Bearer. Body {model, query, documents, top_n,
-- return_documents, raw_scores}; answer results[] with relevance_score, usage.
local U = require "rerank.provider_util"

local P = {
  name = "infinity",
  env_key = "INFINITY_API_KEY",
  defaults = { base_url = "http://127.0.0.1:7997", path = "/rerank" },
  limits = { max_documents = 2048 }, -- INFINITY_MAX_CLIENT_BATCH_SIZE default
  options = { raw_scores = "boolean", rank_fields = "table" },
  parse = U.parser,
}

-- raw_scores: true answers the model's raw logits (lua/rerank/score.lua)
function P.score_kind(model)
  return U.opt(model, "raw_scores") == true and "logit" or "probability"
end

P.build = U.rerank_build(P, {
  model = "model", query = "query", documents = "texts", top_n = "top_n",
  return_documents = "return_documents", raw_scores = U.option("raw_scores"),
})

return P
