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

function P.build(model, req)
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    documents = U.texts(req, U.param(model, req, "rank_fields")),
    top_n = U.top_n(req),
    return_documents = req.return_documents == true,
    raw_scores = U.opt(model, "raw_scores"),
  })
end

return P
