-- AWS Bedrock reranking, signed with SigV4 by libcurl (CURLOPT_AWS_SIGV4, service "bedrock").
--   api: "rerank" (default): bedrock-agent-runtime POST /rerank {queries, sources,
--        rerankingConfiguration}; answer results[] with relevanceScore.
--   api: "invoke": bedrock-runtime POST /model/{modelId}/invoke; cohere.rerank-* gets the
--        Cohere body without model plus api_version 2, amazon.rerank-* gets {query, documents}.
-- Credentials: options aws_access_key_id/aws_secret_access_key[/aws_session_token], else the
-- AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN environment. A model api_key (or
-- AWS_BEARER_TOKEN_BEDROCK when there are no AWS keys) is sent as a Bedrock API key (Bearer).
local U = require "rerank.provider_util"

local P = {
  name = "bedrock",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "AWS_BEARER_TOKEN_BEDROCK",
  defaults = { base_url = "https://bedrock-agent-runtime.{region}.amazonaws.com", path = "/rerank",
               model = "amazon.rerank-v1:0" },
  invoke = { base_url = "https://bedrock-runtime.{region}.amazonaws.com", path = "/model/{model}/invoke" },
  limits = { max_documents = 1000 },
  options = { api = { type = "string", enum = { "rerank", "invoke" } }, region = "string", rank_fields = "table",
              aws_access_key_id = "string", aws_secret_access_key = "string", aws_session_token = "string" },
  parse = U.parser,
}

local function region(model)
  return U.opt(model, "region") or os.getenv("AWS_REGION") or os.getenv("AWS_DEFAULT_REGION") or "us-east-1"
end

-- -> headers, aws_sigv4, userpwd
local function auth(model, r)
  if (model.api_key or "") == "" then
    local ak, sk = U.opt(model, "aws_access_key_id"), U.opt(model, "aws_secret_access_key")
    local tok = U.opt(model, "aws_session_token")
    if not (ak and sk) then
      ak, sk, tok = os.getenv("AWS_ACCESS_KEY_ID"), os.getenv("AWS_SECRET_ACCESS_KEY"), os.getenv("AWS_SESSION_TOKEN")
    end
    if ak and sk and ak ~= "" and sk ~= "" then
      return { ["x-amz-security-token"] = tok ~= "" and tok or nil }, "aws:amz:" .. r .. ":bedrock", ak .. ":" .. sk
    end
  end
  return U.bearer(model, P.env_key)
end

local function agent_body(req, id, r, rf)
  local sources, objs = {}, U.has_fields(rf) and U.objects(req, rf)
  for i, d in ipairs(req.documents) do
    local doc = objs and type(d.raw) == "table" and { type = "JSON", jsonDocument = objs[i] }
        or { type = "TEXT", textDocument = { text = d.text } }
    sources[i] = { type = "INLINE", inlineDocumentSource = doc }
  end
  return {
    queries = { { type = "TEXT", textQuery = { text = req.query } } },
    sources = sources,
    rerankingConfiguration = { type = "BEDROCK_RERANKING_MODEL", bedrockRerankingConfiguration = {
      numberOfResults = U.top_n(req) or #req.documents,
      modelConfiguration = { modelArn = id:find("^arn:") and id or ("arn:aws:bedrock:%s::foundation-model/%s"):format(r, id) },
    } },
  }
end

function P.build(model, req)
  local r, id, api = region(model), U.model_id(model, P), U.opt(model, "api", "rerank")
  local rf = U.param(model, req, "rank_fields")
  local base, path, body = model.base_url, model.path, nil
  if api == "invoke" then
    if base == nil or base == P.defaults.base_url then base = P.invoke.base_url end
    if path == nil or path == P.defaults.path then path = P.invoke.path end
    if id:find("cohere%.rerank") then
      body = U.cohere_body(model, P, req, "v2", false)
      body.api_version = 2
    else -- amazon.rerank-v1:0 (body as in the opensearch ml-commons Bedrock tutorial)
      body = { query = req.query, documents = U.texts_body(req, rf) }
    end
  elseif api == "rerank" then
    body = agent_body(req, id, r, rf)
  else
    error(('bedrock: api must be "rerank" or "invoke", got %q'):format(tostring(api)), 0)
  end
  local headers, sigv4, userpwd = auth(model, r)
  local vars = { region = r, model = U.escape(id) } -- ":" travels as %3A
  return {
    method = "POST",
    url = U.join(U.expand(base or P.defaults.base_url, vars), U.expand(path or P.defaults.path, vars)),
    headers = headers,
    body = U.merge(body, model.extra_body, req.extra_body),
    aws_sigv4 = sigv4,
    userpwd = userpwd,
  }
end

return P
