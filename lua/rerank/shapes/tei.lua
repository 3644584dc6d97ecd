-- Hugging Face Text Embeddings Inference rerank (POST /rerank with `texts`; /tei/rerank).
-- Request: query, texts (strings), truncate (bool|null), truncation_direction
-- ("Right"|"Left", any case), raw_scores (bool), return_text (bool); `model` is read when
-- present (TEI has none: the default model answers), other fields are ignored.
-- truncate true -> "end" ("start" with direction Left), false -> "none"; null with direction
-- Left -> "start" (TEI's --auto-truncate is on by default). raw_scores: the answer's scores are
-- logits (true) or probabilities (false, default), converted by the model's score kind.
-- Answer: a bare array [{"index","score","text"?}] sorted by score, usage in the
-- x-compute-tokens header. Errors: {"error": message, "error_type": "Validation"|...}.
local api = require "rerank.shapes.registry"
local C = require "rerank.shapes.common"
local json = require "rerank.json"

local check, fail = api.check, api.fail
local number = C.number
local lower = string.lower

local S = { name = "tei" }

function S.parse(b, opts)
  local req, err = C.model_query_documents(b, { shape = S.name, return_documents = false }, "texts",
                                           { max = opts.max_documents, strings_only = true,
                                             body = opts.body, spans = opts.spans, from_json = opts.from_json })
  if not req then return nil, err end
  local v
  v, err = check.bool(b.return_text, "return_text")
  if err then return nil, err end
  req.return_documents = v == true
  v, err = check.bool(b.raw_scores, "raw_scores")
  if err then return nil, err end
  req.raw_scores = v
  local dir
  v, err = check.string(b.truncation_direction, "truncation_direction")
  if err then return nil, err end
  if v ~= nil then
    dir = lower(v)
    if dir ~= "left" and dir ~= "right" then
      return fail(422, 'truncation_direction must be "Right" or "Left"', "truncation_direction")
    end
  end
  v, err = check.bool(b.truncate, "truncate")
  if err then return nil, err end
  if v == false then
    req.truncate = "none"
  elseif v == true or dir == "left" then -- truncate null: the server's --auto-truncate (default on)
    req.truncate = dir == "left" and "start" or "end"
  end
  return req
end

-- TEI's scores: raw_scores false (the default) answers sigmoid(logit), a probability; true
-- answers the logit (lua/rerank/score.lua converts what the model's kind allows)
function S.render(result, req)
  local want = req and req.raw_scores and "logit" or "probability"
  local function index_score(r)
    return '"index":' .. number(r.index) .. ',"score":' .. number(C.score_as(result, r, want))
  end
  return '[' .. C.results(result, req, index_score, "text", C.document_text) .. ']'
end

function S.headers(result)
  local pt = C.usage(result)
  return { ["x-compute-tokens"] = tostring(pt) }
end

local ERROR_TYPES = { [400] = "Validation", [404] = "Validation", [413] = "Validation", [415] = "Validation",
                      [422] = "Validation", [429] = "Overloaded", [503] = "Unhealthy" }

function S.render_error(err)
  local status = err.status or 500
  local et = ERROR_TYPES[status] or (status >= 500 and "Backend" or "Validation")
  return '{"error":' .. json.string(err.message or "error") .. ',"error_type":"' .. et .. '"}'
end

return S
