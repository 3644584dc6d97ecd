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

function P.build(model, req)
  local t = U.param(model, req, "truncate")
  local truncate
  if t == "none" then truncate = false elseif DIRECTION[t] then truncate = true end
  return U.post(model, P, req, {
    query = req.query,
    texts = U.texts(req, U.param(model, req, "rank_fields")),
    raw_scores = raw_scores(model, req),
    return_text = req.return_documents == true,
    truncate = truncate,
    truncation_direction = DIRECTION[t],
  })
end

return P
