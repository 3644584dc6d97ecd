-- Voyage AI Reranker: POST https://api.voyageai.com/v1/rerank, Bearer VOYAGE_API_KEY.
-- top_n -> top_k; truncate "none" -> truncation false ("start"/"end" -> true);
-- answer under data[] with relevance_score, usage.total_tokens.
local U = require "rerank.provider_util"

local P = {
  name = "voyage",
  env_key = "VOYAGE_API_KEY",
  defaults = { base_url = "https://api.voyageai.com", path = "/v1/rerank", model = "rerank-2.5" },
  limits = { max_documents = 1000 },
  options = { rank_fields = "table", truncate = U.TRUNCATE_OPTION },
  parse = U.parser,
}

local TRUNCATION = { none = false, start = true, ["end"] = true }

function P.build(model, req)
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    documents = U.texts(req, U.param(model, req, "rank_fields")),
    top_k = U.top_n(req),
    return_documents = req.return_documents == true,
    truncation = U.truncate(model, req, TRUNCATION),
  })
end

return P
