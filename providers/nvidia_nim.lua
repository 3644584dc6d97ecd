-- NVIDIA NIM / NeMo Retriever reranking, Bearer NVIDIA_API_KEY.
--   default: POST https://ai.api.nvidia.com/v1/ranking (also a self-hosted NIM's route);
--   path "/v1/retrieval/{model}/reranking" selects the hosted per-model route ({model} is the
--   model id with "." written as "_"), the only one that takes top_k.
-- Body {model, query:{text}, passages:[{text}], truncate "NONE"|"END"}; answer rankings[]
-- with raw logits (unbounded), optional usage.
local U = require "rerank.provider_util"

local P = {
  name = "nvidia_nim",
  score_kind = "logit", -- lua/rerank/score.lua
  env_key = "NVIDIA_API_KEY",
  defaults = { base_url = "https://ai.api.nvidia.com", path = "/v1/ranking", model = "nvidia/llama-3.2-nv-rerankqa-1b-v2" },
  options = { rank_fields = "table", truncate = U.TRUNCATE_OPTION },
  parse = U.parser,
}

-- NIM truncates at the end or not at all, so "start" also truncates at the end
local TRUNCATE = U.TRUNCATE_NONE_END

function P.build(model, req)
  local id = U.model_id(model, P)
  local passages = {}
  for i, t in ipairs(U.texts(req, U.param(model, req, "rank_fields"))) do passages[i] = { text = t } end
  local retrieval = (U.path(model, P) or ""):find("/retrieval/", 1, true) ~= nil
  return U.post(model, P, req, {
    model = id,
    query = { text = req.query },
    passages = passages,
    truncate = U.truncate(model, req, TRUNCATE),
    top_k = retrieval and U.top_n(req) or nil, -- native /v1/ranking rejects top_k
  }, nil, { model = (id:gsub("%.", "_")) })
end

return P
