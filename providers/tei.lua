-- Hugging Face Text Embeddings Inference: POST {base}/rerank (Bearer only when the server
-- runs with --api-key). documents -> texts, return_documents -> return_text, truncate:
-- "none" -> truncate:false, "start" -> truncate:true + "Left", "end" -> true + "Right".
-- No model or top_n. Answer: a bare array [{index, score}], tokens in x-compute-tokens.
-- raw_scores: the request's (a TEI client's), else the model's option (default false); TEI
-- answers sigmoid(logit) with false (kind probability) and the logit with true (kind logit).
local U = require "rerank.provider_util"

local P = {
  name = "tei",
  env_key = "TEI_API_KEY",
  defaults = { base_url = "http://127.0.0.1:8080", path = "/rerank" },
  limits = { max_documents = 32 }, -- the server's default --max-client-batch-size
  options = { raw_scores = "boolean", rank_fields = "table", truncate = U.TRUNCATE_OPTION },
  parse = U.parser,
}

local function raw_scores(model, req)
  local r = U.param(model, req, "raw_scores")
  if r == nil then r = false end
  return r
end

function P.score_kind(model, req)
  return raw_scores(model, req or {}) and "logit" or "probability"
end

local DIRECTION = { start = "Left", ["end"] = "Right" }

P.build = U.rerank_build(P, {
  query = "query",
  texts = "texts",
  raw_scores = raw_scores,
  return_text = "return_documents",
  truncate = function(model, req) -- "none": off; start/end: on, in that direction
    local t = U.param(model, req, "truncate")
    if t == "none" then return false end
    if DIRECTION[t] then return true end
    return nil
  end,
  truncation_direction = function(model, req) return DIRECTION[U.param(model, req, "truncate")] end,
})

return P
