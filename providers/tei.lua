-- Hugging Face Text Embeddings Inference: POST {base}/rerank (Bearer only when the server
-- runs with --api-key). documents -> texts, return_documents -> return_text, truncate:
-- "none" -> truncate:false, "start" -> truncate:true + "Left", "end" -> true + "Right".
-- No model or top_n. Answer: a bare array [{index, score}], tokens in x-compute-tokens.
local U = require "rerank.provider_util"

local P = {
  name = "tei",
  env_key = "TEI_API_KEY",
  defaults = { base_url = "http://127.0.0.1:8080", path = "/rerank" },
  limits = { max_documents = 32 }, -- the server's default --max-client-batch-size
  options = { raw_scores = "boolean", rank_fields = "table", truncate = U.TRUNCATE_OPTION },
  parse = U.parser,
}

local DIRECTION = { start = "Left", ["end"] = "Right" }

function P.build(model, req)
  local t = U.param(model, req, "truncate")
  local truncate
  if t == "none" then truncate = false elseif DIRECTION[t] then truncate = true end
  return U.post(model, P, req, {
    query = req.query,
    texts = U.texts(req, U.param(model, req, "rank_fields")),
    raw_scores = U.opt(model, "raw_scores", false),
    return_text = req.return_documents == true,
    truncate = truncate,
    truncation_direction = DIRECTION[t],
  })
end

return P
