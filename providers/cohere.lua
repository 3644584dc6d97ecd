-- Cohere Rerank (https://api.cohere.com): v2 (default) or v1, chosen by `api_version`.
--   v2: documents are strings (object documents are flattened on rank_fields),
--       max_tokens_per_document -> max_tokens_per_doc; no return_documents.
--   v1: documents may be objects with rank_fields; return_documents; max_chunks_per_doc.
-- Answer: results[{index, relevance_score}], usage from meta.billed_units.search_units.
local U = require "rerank.provider_util"

local P = {
  name = "cohere",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "COHERE_API_KEY",
  defaults = { base_url = "https://api.cohere.com", path = "/v2/rerank", model = "rerank-v3.5" },
  limits = { max_documents = 1000 },
  options = {
    api_version = { type = "string", enum = { "v1", "v2" } }, -- default v2
    rank_fields = "table",             -- object fields to rank on (v1 sends them, v2 flattens)
    max_chunks_per_doc = "integer",    -- v1 only
    max_tokens_per_document = "integer", -- v2 default for max_tokens_per_doc
    priority = { type = "integer", min = 0, max = 999 }, -- v2: 0..999, lower runs first (the request's wins)
  },
  parse = U.parser,
}

function P.version(model)
  -- default v2, or v1 when the configured path is a v1 endpoint (LiteLLM's rule)
  local dflt = (type(model.path) == "string" and model.path:find("/v1/rerank/?$")) and "v1" or "v2"
  local v = tostring(U.opt(model, "api_version", dflt)):lower():gsub("^v", "")
  if v ~= "1" and v ~= "2" then error(("cohere: api_version must be \"v1\" or \"v2\", got %q"):format(v), 0) end
  return "v" .. v
end

function P.build(model, req)
  local v = P.version(model)
  local path = model.path
  if path == nil or path == P.defaults.path then path = "/" .. v .. "/rerank" end
  local spec = U.post(model, P, req, U.cohere_body(model, P, req, v))
  spec.url = U.join(U.base_url(model, P), path)
  return spec
end

return P
