-- Google Vertex AI ranking API (Discovery Engine):
--   POST https://discoveryengine.googleapis.com/v1/projects/{project}/locations/{location}/
--        rankingConfigs/{ranking_config}:rank
-- Auth: an OAuth2 access token (scope cloud-platform), from api_key or the environment
-- (GOOGLE_OAUTH_ACCESS_TOKEN), e.g. `gcloud auth print-access-token`; it is not refreshed.
-- project: option, else GOOGLE_CLOUD_PROJECT; location: option (default "global").
-- Body {model, query, topN, ignoreRecordDetailsInResponse: true, records: [{id, title?,
-- content}]}: id is the document's position in the call ("0", "1", ...), title its title.
-- Answer records[{id, score}] sorted by score and cut to topN; matched back by id, never by
-- position; a record without score scored 0 (proto3 JSON omits zero values).
-- At most 200 records per call (rerankd splits above). Errors: {"error":{code, message, status}}.
local U = require "rerank.provider_util"

local P = {
  name = "vertex_ai",
  env_key = "GOOGLE_OAUTH_ACCESS_TOKEN",
  defaults = { base_url = "https://discoveryengine.googleapis.com",
               path = "/v1/projects/{project}/locations/{location}/rankingConfigs/{ranking_config}:rank",
               model = "semantic-ranker-default@latest" },
  limits = { max_documents = 200 },
  options = {
    project = "string",
    location = { type = "string", default = "global" },
    ranking_config = { type = "string", default = "default_ranking_config" },
    rank_fields = "table",
  },
  score_kind = "probability", -- 0..1 relevance
}

local function project(model)
  local p = U.opt(model, "project") or os.getenv("GOOGLE_CLOUD_PROJECT")
  if p == "" then p = nil end
  return p
end

-- config time (and direct models): the project must be known
function P.check(model)
  if not project(model) then return "vertex_ai needs a project (option project, or GOOGLE_CLOUD_PROJECT)" end
  return nil
end

function P.build(model, req)
  local records = {}
  for i, t in ipairs(U.texts(req, U.param(model, req, "rank_fields"))) do
    local d = req.documents[i]
    records[i] = { id = tostring(i - 1), title = d.title, content = t }
  end
  return U.post(model, P, req, {
    model = U.model_id(model, P),
    query = req.query,
    topN = U.top_n(req),
    ignoreRecordDetailsInResponse = true,
    records = records,
  }, nil, {
    project = project(model) and U.escape(project(model)), -- P.check made sure it is known
    location = U.escape(U.opt(model, "location", "global")),
    ranking_config = U.escape(U.opt(model, "ranking_config", "default_ranking_config")),
  })
end

function P.parse(_, req, _, _, body)
  local j, err = U.decode(body)
  if j == nil then return nil, "invalid JSON from upstream: " .. tostring(err) end
  local records = type(j) == "table" and U.val(j.records)
  if type(records) ~= "table" then
    local m = U.message(j)
    return nil, "upstream answer has no records" .. (m and (": " .. m) or "")
  end
  local n, results = #req.documents, {}
  for _, r in ipairs(records) do
    local idx = type(r) == "table" and tonumber(U.val(r.id))
    if idx and idx >= 0 and idx < n and idx == math.floor(idx) then
      results[#results + 1] = { index = idx, score = U.num(r.score) or 0 }
    end
  end
  if #results == 0 and n > 0 then return nil, "upstream answer has no usable records" end
  return { results = results }
end

return P
