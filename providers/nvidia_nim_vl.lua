-- NVIDIA NIM VL rerankers (llama-nemotron-rerank-vl-1b-v2, Nemotron-3.5-Rerank-8B): POST
-- {base}/v1/ranking, Bearer NVIDIA_API_KEY on hosted endpoints. Body {model, query: {text},
-- passages: [{text?, image?}], truncate "NONE"|"END"}: an image-only passage has no text
-- (never ""), and `image` must be a base64 data: URL (HTTP URLs are refused upstream, so
-- rerankd answers 422 for them). No top_k. At most 512 passages per call.
-- Answer rankings[{index, logit}] with raw logits (unbounded), optional usage.
local U = require "rerank.provider_util"

local P = {
  name = "nvidia_nim_vl",
  env_key = "NVIDIA_API_KEY",
  defaults = { base_url = "http://127.0.0.1:8000", path = "/v1/ranking", model = "nvidia/llama-nemotron-rerank-vl-1b-v2" },
  limits = { max_documents = 512 },
  options = { rank_fields = "table", truncate = U.TRUNCATE_OPTION },
  score_kind = "logit",
  images = true,
  image_urls = false, -- data: URLs only
  parse = U.parser,
}

-- NIM truncates at the end or not at all, so "start" also truncates at the end
local TRUNCATE = U.TRUNCATE_NONE_END

function P.build(model, req)
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = { text = req.query },
    passages = U.text_image(req, U.param(model, req, "rank_fields")),
    truncate = U.truncate(model, req, TRUNCATE),
  })
end

return P
