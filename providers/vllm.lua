-- vLLM OpenAI-compatible server: POST {base}/rerank (also /v1/rerank, /v2/rerank), or the
-- /score route when `path` ends in /score ({text_1, text_2}, answer data[] in input order).
-- Rerank body {model, query, documents, top_n, truncate_prompt_tokens, use_activation, user};
-- answer results[] with relevance_score, usage. An image document (Qwen3-VL-Reranker,
-- jina-reranker-m0, ...) goes as {content: [{type: "text"}?, {type: "image_url", image_url: {url}}]}
-- on /rerank (the /score route takes text only).
local U = require "rerank.provider_util"

local function image_doc(text, image) return { content = U.image_parts(text, image) } end

local P = {
  name = "vllm",
  env_key = "VLLM_API_KEY",
  defaults = { base_url = "http://127.0.0.1:8000", path = "/rerank" },
  options = { rank_fields = "table", use_activation = "boolean", max_tokens_per_document = "integer" },
  parse = U.parser,
}

local function score_route(model) return (U.path(model, P) or ""):find("/score$") ~= nil end

function P.images(model) return not score_route(model) end -- /rerank takes image documents

function P.build(model, req)
  local rf = U.param(model, req, "rank_fields")
  if score_route(model) then
    return U.post(model, P, req, { model = U.model_id(model, P), text_1 = req.query, text_2 = U.texts(req, rf) })
  end
  local trunc = U.param(model, req, "truncate") ~= "none" and U.param(model, req, "max_tokens_per_document") or nil
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    documents = U.media(req, rf, image_doc),
    top_n = U.top_n(req),
    truncate_prompt_tokens = trunc,
    use_activation = U.opt(model, "use_activation"), -- false: raw logits
    user = req.user,
  })
end

return P
