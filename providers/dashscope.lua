-- Alibaba DashScope / Model Studio rerank, Bearer DASHSCOPE_API_KEY. Two APIs (`api`):
--   native (default): POST https://dashscope.aliyuncs.com/api/v1/services/rerank/text-rerank/text-rerank
--     {model, input: {query, documents}, parameters: {return_documents: false, top_n, instruct}};
--     answer output.results[{index, relevance_score}], usage.total_tokens (or input_tokens).
--     qwen3-vl-rerank takes image documents: then every document is an object, {text} or
--     {image: URL or data: URL} ({text, image} for a document with both).
--   compatible: POST https://dashscope.aliyuncs.com/compatible-api/v1/reranks (also chosen by a
--     `path` ending in /compatible-api/v1/reranks) {model, query, documents, top_n, instruct};
--     answer results[]. qwen3-rerank only: no images.
-- Singapore: base_url https://dashscope-intl.aliyuncs.com. Errors: {code, message, request_id}.
-- Limits: 500 documents (qwen3-rerank, gte-rerank-v2); a qwen3-vl model takes 100 documents,
-- 40 when any is an image (batch_size).
local U = require "rerank.provider_util"

local P = {
  name = "dashscope",
  env_key = "DASHSCOPE_API_KEY",
  defaults = { base_url = "https://dashscope.aliyuncs.com", path = "/api/v1/services/rerank/text-rerank/text-rerank",
               model = "qwen3-rerank" },
  compatible_path = "/compatible-api/v1/reranks",
  limits = { max_documents = 500 },
  options = { api = { type = "string", enum = { "native", "compatible" } }, rank_fields = "table" },
  score_kind = "probability",
  instruction = "field", -- parameters.instruct (native), instruct (compatible)
}

function P.api(model)
  local dflt = (type(model.path) == "string" and model.path:find("/compatible%-api/")) and "compatible" or "native"
  return U.opt(model, "api", dflt)
end

-- images on the native API only (the compatible endpoint serves qwen3-rerank alone)
function P.images(model) return P.api(model) == "native" end

-- with an image among the documents every document goes as an object (qwen3-vl-rerank's form)
local function has_images(req)
  for _, d in ipairs(req.documents) do
    if d.image then return true end
  end
  return false
end

function P.batch_size(model, req, max_docs)
  if not tostring(U.model_id(model, P)):find("%-vl") then return max_docs end
  local n = has_images(req) and 40 or 100
  if max_docs and max_docs < n then return max_docs end
  return n
end

function P.build(model, req)
  local rf = U.param(model, req, "rank_fields")
  local id = U.model_id(model, P)
  if P.api(model) == "compatible" then
    local spec = U.post(model, P, req, {
      model = id, query = req.query, documents = U.texts_body(req, rf), top_n = U.top_n(req), instruct = req.instruction,
    })
    if model.path == nil or model.path == P.defaults.path then
      spec.url = U.join(U.base_url(model, P), P.compatible_path)
    end
    return spec
  end
  return U.post(model, P, req, {
    model = id,
    input = { query = req.query, documents = has_images(req) and U.text_image(req, rf) or U.texts_body(req, rf) },
    parameters = { return_documents = false, top_n = U.top_n(req), instruct = req.instruction },
  })
end

function P.parse(_, req, _, headers, body)
  local j, err = U.decode(body)
  if j == nil then return nil, "invalid JSON from upstream: " .. tostring(err) end
  local out = type(j) == "table" and U.val(j.output)
  if type(out) == "table" then -- native: the list under output, usage beside it
    return U.read({ results = U.val(out.results), usage = U.val(j.usage) }, headers, #req.documents)
  end
  return U.read(j, headers, #req.documents)
end

return P
