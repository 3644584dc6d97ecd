-- Mixedbread Reranking: POST https://api.mixedbread.com/v1/reranking, Bearer MXBAI_API_KEY.
-- documents -> input, top_n -> top_k, return_documents -> return_input; answer data[]
-- with score, usage.{prompt,total}_tokens.
local U = require "rerank.provider_util"

local P = {
  name = "mixedbread",
  env_key = "MXBAI_API_KEY",
  defaults = { base_url = "https://api.mixedbread.com", path = "/v1/reranking",
               model = "mixedbread-ai/mxbai-rerank-large-v2" },
  limits = { max_documents = 1000 },
  options = { rank_fields = "table", rewrite_query = "boolean" },
  parse = U.parser,
}

function P.build(model, req)
  local rf = U.param(model, req, "rank_fields")
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    input = U.documents(req, rf),
    rank_fields = U.has_fields(rf) and rf or nil,
    top_k = U.top_n(req),
    return_input = req.return_documents == true,
    rewrite_query = U.opt(model, "rewrite_query"),
  })
end

return P
