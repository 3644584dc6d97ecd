-- NVIDIA NIM (NeMo Retriever reranking) POST /v1/ranking: clients written for a NIM work
-- unmodified. Request: model, query {text} (a plain string is read too), passages [{text}]
-- (strings are read too), truncate "NONE"|"END" (any case), top_k (the hosted retrieval
-- route's; native NIMs reject it, rerankd reads it); other fields are ignored.
-- Answer: {"rankings":[{"index","logit"}] sorted by logit desc,"usage":{"prompt_tokens",
-- "total_tokens"}}. logit: the model's logit as it is when its scores are logits and
-- uncalibrated, else the logit of its probability (the calibrated score, or the raw one of
-- a probability model), so a client's sigmoid gives the probability back; scores of other
-- kinds (bm25, fused, rank) as they are (lua/rerank/score.lua).
-- Errors (NIM's error body is not documented): {"detail": message, "error": {...}}.
local api = require "rerank.shapes.registry"
local C = require "rerank.shapes.common"

local check, fail = api.check, api.fail
local number = C.number
local type, upper = type, string.upper

local S = { name = "nim" }

local TRUNCATE = { NONE = "none", END = "end" }

function S.parse(b, opts)
  local req = { shape = S.name, return_documents = false }
  local v, err = C.model(b.model)
  if err then return nil, err end
  req.model = v
  local q = b.query
  if check.is_object(q) then
    v, err = check.query(q.text, "query.text")
  elseif not C.present(q) or type(q) == "string" then
    v, err = check.query(q, "query")
  else
    return fail(400, "query must be an object with a text field", "query")
  end
  if err then return nil, err end
  req.query = v
  v, err = check.documents(b.passages, "passages", { max = opts.max_documents, text_field = "text",
                                                 body = opts.body, spans = opts.spans, from_json = opts.from_json })
  if err then return nil, err end
  req.documents = v
  v, err = check.string(b.truncate, "truncate")
  if err then return nil, err end
  if v ~= nil then
    local t = TRUNCATE[upper(v)]
    if not t then return fail(422, 'truncate must be "NONE" or "END"', "truncate") end
    req.truncate = t
  end
  v, err = check.int(b.top_k, "top_k", 1)
  if err then return nil, err end
  req.top_n = v
  v, err = check.object(b.extra_body, "extra_body")
  if err then return nil, err end
  req.extra_body = v
  return req
end

function S.render(result)
  local pt, tt = C.usage(result)
  local function head(r)
    return '"index":' .. number(r.index) .. ',"logit":' .. number(C.score_as(result, r, "logit"))
  end
  return '{"rankings":[' .. C.results(result, { return_documents = false }, head) .. '],"usage":{"prompt_tokens":'
      .. number(pt) .. ',"total_tokens":' .. number(tt) .. '}' .. C.close(result)
end

function S.render_error(err) return C.error_superset("detail", err) end

return S
