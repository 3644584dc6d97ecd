-- vLLM OpenAI-compatible server: POST {base}/rerank (also /v1/rerank, /v2/rerank), or the
-- /score route when `path` ends in /score ({text_1, text_2}, answer data[] in input order).
-- Rerank body {model, query, documents, top_n, truncate_prompt_tokens, use_activation, user};
-- answer results[] with relevance_score, usage.
local U = require "rerank.provider_util"

local P = {
  name = "vllm",
  env_key = "VLLM_API_KEY",
  defaults = { base_url = "http://127.0.0.1:8000", path = "/rerank" },
  options = { rank_fields = "table", use_activation = "boolean", max_tokens_per_document = "integer" },
  parse = U.parser,
}

function P.build(model, req)
  local texts = U.texts(req, U.param(model, req, "rank_fields"))
  if (U.path(model, P) or ""):find("/score$") then
    return U.post(model, P, req, { model = U.model_id(model, P), text_1 = req.query, text_2 = texts })
  end
  local trunc = U.param(model, req, "truncate") ~= "none" and U.param(model, req, "max_tokens_per_document") or nil
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    documents = texts,
    top_n = U.top_n(req),
    truncate_prompt_tokens = trunc,
    use_activation = U.opt(model, "use_activation"), -- false: raw logits
    user = req.user,
  })
end

return P
