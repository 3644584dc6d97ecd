-- IBM watsonx.ai: POST https://{region}.ml.cloud.ibm.com/ml/v1/text/rerank?version=YYYY-MM-DD
-- with an IAM bearer token. The API key (api_key, else WATSONX_APIKEY) is exchanged at
-- https://iam.cloud.ibm.com/identity/token (option iam_url) for an access token, cached until
-- 80% of its lifetime (lua/rerank/engine/token.lua). A model with `iam: false` sends api_key as the
-- bearer token itself (a pre-issued token, or Cloud Pak for Data).
-- Body {model_id, query, inputs: [{text}], project_id | space_id (option, else
-- WATSONX_PROJECT_ID / WATSONX_SPACE_ID), parameters: {truncate_input_tokens?,
-- return_options: {top_n}}}; answer results[{index, score}] with raw model scores (logits
-- for the ms-marco cross-encoders), input_token_count. At most 1,000 inputs per call.
-- Errors: {"errors":[{code, message, more_info}], trace, status_code}.
local U = require "rerank.provider_util"

local P = {
  name = "watsonx",
  env_key = "WATSONX_APIKEY",
  defaults = { base_url = "https://{region}.ml.cloud.ibm.com", path = "/ml/v1/text/rerank?version={version}",
               model = "cross-encoder/ms-marco-minilm-l-12-v2" },
  limits = { max_documents = 1000 },
  options = {
    region = { type = "string", default = "us-south" },
    version = { type = "string", default = "2026-08-11" },
    project_id = "string", space_id = "string",
    iam_url = { type = "string", default = "https://iam.cloud.ibm.com/identity/token" },
    iam = { type = "boolean", default = true },
    truncate_input_tokens = "integer",
    rank_fields = "table",
  },
  score_kind = "logit",
}

local function form_escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

P.token = {
  request = function(model)
    if U.opt(model, "iam", true) == false then return nil end
    local key = U.api_key(model, P.env_key)
    if not key then error("watsonx: no API key (api_key, or WATSONX_APIKEY)", 0) end
    return {
      url = U.opt(model, "iam_url", "https://iam.cloud.ibm.com/identity/token"),
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Accept = "application/json" },
      body = "grant_type=" .. form_escape("urn:ibm:params:oauth:grant-type:apikey") .. "&apikey=" .. form_escape(key),
    }
  end,
  parse = function(body)
    local j = U.decode(body)
    if type(j) ~= "table" then return nil, "not JSON" end
    return U.val(j.access_token), U.num(j.expires_in)
  end,
}

-- project_id or space_id: the options, else WATSONX_PROJECT_ID / WATSONX_SPACE_ID
local function where(model)
  local project, space = U.opt(model, "project_id"), U.opt(model, "space_id")
  if project or space then return project, space end
  project, space = os.getenv("WATSONX_PROJECT_ID"), os.getenv("WATSONX_SPACE_ID")
  if project == "" then project = nil end
  if space == "" or project then space = nil end
  return project, space
end

-- config time (and direct models): one of them must be known
function P.check(model)
  local project, space = where(model)
  if not (project or space) then
    return "watsonx needs project_id or space_id (options, or WATSONX_PROJECT_ID / WATSONX_SPACE_ID)"
  end
  return nil
end

function P.build(model, req)
  local project, space = where(model)
  local inputs = {}
  for i, t in ipairs(U.texts(req, U.param(model, req, "rank_fields"))) do inputs[i] = { text = t } end
  local tok = model.access_token or U.api_key(model, P.env_key)
  local top = U.top_n(req)
  return U.post(model, P, req, {
    model_id = U.model_id(model, P),
    query = req.query,
    inputs = inputs,
    project_id = project,
    space_id = space,
    parameters = { truncate_input_tokens = U.opt(model, "truncate_input_tokens"),
                   return_options = top and { top_n = top } or nil },
  }, tok and { Authorization = "Bearer " .. tok } or {}, {
    region = U.opt(model, "region", "us-south"), version = U.escape(U.opt(model, "version", "2026-08-11")),
  })
end

function P.parse(_, req, _, headers, body)
  local j, err = U.decode(body)
  if j == nil then return nil, "invalid JSON from upstream: " .. tostring(err) end
  local out, perr = U.read(j, headers, #req.documents)
  if not out then return nil, perr end
  local n = type(j) == "table" and U.num(j.input_token_count)
  if n and not out.usage then out.usage = { prompt_tokens = n, total_tokens = n } end
  return out
end

return P
