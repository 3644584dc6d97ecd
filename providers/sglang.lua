-- SGLang server: POST {base}/v1/rerank (Bearer only when the server runs with --api-key).
-- Body {query, documents, instruct, top_n, return_documents: false}; an image document
-- goes as a list of content parts ([{type:"text"}, {type:"image_url", image_url:{url}}]).
-- `model` is not a field of the request (the server ignores it): not sent.
-- Answer: a bare array [{score, index, meta_info}] sorted by score, cut to top_n; no usage.
-- Scores: p(yes)/(p(yes)+p(no)) on the decoder templates (Qwen3-Reranker, Qwen3-VL), the
-- model's raw output on the cross-encoder path: the kind depends on the model (score:).
local U = require "rerank.provider_util"

local P = {
  name = "sglang",
  env_key = "SGLANG_API_KEY",
  defaults = { base_url = "http://127.0.0.1:30000", path = "/v1/rerank" },
  options = { rank_fields = "table" },
  score_kind = "unknown",  -- decoder templates: probability; cross-encoders: unverified
  instruction = "field",   -- `instruct` (decoder templates; cross-encoders ignore it)
  images = true,           -- Qwen3-VL-Reranker (vl_decoder backend)
  parse = U.parser,
}

function P.build(model, req)
  return U.post(model, P, req, {
    query = req.query,
    documents = U.media_body(req, U.param(model, req, "rank_fields"), U.image_parts),
    instruct = req.instruction,
    top_n = U.top_n(req),
    -- documents are filled in locally; a multimodal document cannot be echoed as a string
    return_documents = false,
  })
end

return P
