-- Contextual AI: POST https://api.contextual.ai/v1/rerank, Bearer CONTEXTUAL_API_KEY.
-- Body {model, query, documents[string], instruction?, metadata?, top_n}; `metadata` is a
-- list parallel to documents (same length, "" where none): a document's `metadata` object
-- goes there as "key: value" lines (sorted keys). Answer results[{index, relevance_score}]
-- (0..1, normalised by the API), nothing else. Limits: 400,000 tokens per request; query +
-- instruction + one document with its metadata at most 8,000 tokens. No document count.
local U = require "rerank.provider_util"
local json = require "rerank.json"

local P = {
  name = "contextual",
  env_key = "CONTEXTUAL_API_KEY",
  defaults = { base_url = "https://api.contextual.ai", path = "/v1/rerank",
               model = "ctxl-rerank-v2-instruct-multilingual" },
  options = { rank_fields = "table" },
  score_kind = "probability",
  instruction = "field",
  parse = U.parser,
}

local function metadata_text(md)
  if type(md) ~= "table" then return nil end
  local keys = {}
  for k, v in pairs(md) do
    if type(k) == "string" and v ~= json.null then keys[#keys + 1] = k end
  end
  if #keys == 0 then return nil end
  table.sort(keys)
  local lines = {}
  for i, k in ipairs(keys) do
    local v = md[k]
    lines[i] = k .. ": " .. (type(v) == "table" and json.encode(v) or tostring(v))
  end
  return table.concat(lines, "\n")
end

-- the parallel metadata list, or nil when no document has metadata
function P.metadata(req)
  local out, any = {}, false
  for i, d in ipairs(req.documents) do
    local m = metadata_text(d.metadata)
    any = any or m ~= nil
    out[i] = m or ""
  end
  return any and out or nil
end

function P.build(model, req)
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    documents = U.texts_body(req, U.param(model, req, "rank_fields")),
    instruction = req.instruction,
    metadata = P.metadata(req),
    top_n = U.top_n(req),
  })
end

return P
