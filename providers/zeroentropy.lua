-- ZeroEntropy: POST https://api.zeroentropy.dev/v1/models/rerank, Bearer ZEROENTROPY_API_KEY.
-- Body {model, query, documents[string], top_n, latency?}; answer results[{index,
-- relevance_score}] plus top-level total_tokens (billed) and total_bytes.
-- No instruction field: ZeroEntropy's documented format puts it in the query,
-- "<query>{q}</query>\n<instruction>{i}</instruction>" (as vLLM's zerank-2 template does).
-- Scores are calibrated probabilities (0.8 ~ 80% relevant). Limits: no document count is
-- documented; a request may carry 5,000,000 bytes counted as 150 + query + document bytes
-- per document (option max_bytes): batch_size splits bigger requests into calls that fit.
local U = require "rerank.provider_util"

local P = {
  name = "zeroentropy",
  env_key = "ZEROENTROPY_API_KEY",
  defaults = { base_url = "https://api.zeroentropy.dev", path = "/v1/models/rerank", model = "zerank-2" },
  options = { rank_fields = "table", latency = { type = "string", enum = { "fast", "slow" } },
              max_bytes = { type = "integer", min = 1 } },
  score_kind = "probability",
  instruction = "query",
}

-- the query as ZeroEntropy documents it when an instruction is given
function P.query(q, instruction)
  if instruction == nil or instruction == "" then return q end
  return "<query>" .. q .. "</query>\n<instruction>" .. instruction .. "</instruction>"
end

-- documents per call so that each call stays under max_bytes (ZeroEntropy's counting, with
-- the longest document and the query as sent), or max_docs when all fit
function P.batch_size(model, req, max_docs)
  local limit = U.opt(model, "max_bytes", 5000000)
  local q = #P.query(req.query, req.instruction)
  local longest, total = 0, 0
  for _, d in ipairs(req.documents) do
    local n = 150 + q + #d.text
    total = total + n
    if n > longest then longest = n end
  end
  if total <= limit then return max_docs end
  local fit = math.max(1, math.floor(limit / longest))
  if max_docs and max_docs < fit then return max_docs end
  return fit
end

function P.build(model, req)
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = P.query(req.query, req.instruction),
    documents = U.texts_body(req, U.param(model, req, "rank_fields")),
    top_n = U.top_n(req),
    latency = U.opt(model, "latency"), -- null: fast, then slow once the fast limit is used up
  })
end

function P.parse(_, req, _, headers, body)
  local out, err = U.parse(body, headers, #req.documents)
  if not out then return nil, err end
  if not out.usage then -- billed tokens are a top-level member
    local j = U.decode(body)
    local t = type(j) == "table" and U.num(j.total_tokens)
    if t then out.usage = { prompt_tokens = t, total_tokens = t } end
  end
  return out
end

return P
