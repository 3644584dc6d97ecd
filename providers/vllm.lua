-- vLLM OpenAI-compatible server: POST {base}/rerank (also /v1/rerank, /v2/rerank), or the
-- /score route when `path` ends in /score ({text_1, text_2}, answer data[] in input order).
-- Rerank body {model, query, documents, top_n, truncate_prompt_tokens, truncation_side,
-- max_tokens_per_query, use_activation, instruction | chat_template_kwargs, user}; answer
-- results[] with relevance_score, usage.
--   truncate "start" -> truncation_side "left" (keep the last tokens), "end" -> "right".
--   Instructions (vLLM 2026-05+, PR #42412): `instruction` (default), or
--   chat_template_kwargs.instruction with instruction_mode: chat_template_kwargs, or folded
--   into the query text with instruction_mode: query (servers older than 2026-05 ignore
--   the field without an error).
--   Scores: probabilities (the pooler's sigmoid) unless use_activation: false (logits).
--   An image document (Qwen3-VL-Reranker, jina-reranker-m0, ...) goes as {content: [{type:
--   "text"}?, {type: "image_url", image_url: {url}}]} on /rerank (the /score route takes text only).
local U = require "rerank.provider_util"

local function image_doc(text, image) return { content = U.image_parts(text, image) } end

local P = {
  name = "vllm",
  env_key = "VLLM_API_KEY",
  defaults = { base_url = "http://127.0.0.1:8000", path = "/rerank" },
  options = { rank_fields = "table", use_activation = "boolean", max_tokens_per_document = "integer",
              instruction_mode = { type = "string", enum = { "field", "chat_template_kwargs", "query" } } },
  parse = U.parser,
}

-- use_activation false answers raw logits (lua/rerank/score.lua)
function P.score_kind(model)
  return U.opt(model, "use_activation") == false and "logit" or "probability"
end

function P.instruction(model)
  return U.opt(model, "instruction_mode") == "query" and "query" or "field"
end

local function score_route(model) return (U.path(model, P) or ""):find("/score$") ~= nil end

function P.images(model) return not score_route(model) end -- /rerank takes image documents

local SIDE = { start = "left", ["end"] = "right" }

function P.build(model, req)
  local rf = U.param(model, req, "rank_fields")
  local ins = U.instruction(model, req)
  local mode = U.opt(model, "instruction_mode", "field")
  local query = req.query
  if ins and mode == "query" then query = U.instructed_query(query, ins) end
  local instruction = ins and mode == "field" and ins or nil
  local ctk = ins and mode == "chat_template_kwargs" and { instruction = ins } or nil
  if score_route(model) then
    return U.post(model, P, req, { model = U.model_id(model, P), text_1 = query, text_2 = U.texts_body(req, rf),
                                   instruction = instruction, chat_template_kwargs = ctk })
  end
  local t = U.param(model, req, "truncate")
  local trunc = t ~= "none" and U.param(model, req, "max_tokens_per_document") or nil
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = query,
    documents = U.media(req, rf, image_doc),
    top_n = U.top_n(req),
    truncate_prompt_tokens = trunc,
    truncation_side = SIDE[t],
    max_tokens_per_query = req.max_tokens_per_query,
    use_activation = U.opt(model, "use_activation"), -- false: raw logits
    instruction = instruction,
    chat_template_kwargs = ctk,
    user = req.user,
  })
end

return P
