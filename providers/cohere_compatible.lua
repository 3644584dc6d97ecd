-- Any server speaking the Cohere/Jina rerank shape (base_url required). Body {model?, query,
-- documents[string], top_n, return_documents}; the answer may be results/data, bare list,
-- relevance_score/score. Without `path`, the runtime tries probe_paths in order while the
-- server answers 404/405 and remembers the first that works (lua/rerank/engine/probe.lua).
local U = require "rerank.provider_util"

local P = {
  name = "cohere_compatible",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "RERANK_API_KEY",
  defaults = {},
  probe_paths = { "/v1/rerank", "/rerank", "/v2/rerank" },
  options = { rank_fields = "table" },
  parse = U.parser,
}

local build = U.rerank_build(P, {
  model = "model", query = "query", documents = "texts", top_n = "top_n", return_documents = "return_documents",
})

function P.build(model, req)
  local spec = build(model, req)
  if U.path(model, P) == nil then spec.url = U.join(U.base_url(model, P), P.probe_paths[1]) end
  return spec
end

return P
