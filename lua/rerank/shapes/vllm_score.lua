-- vLLM's score API (POST /v1/score, /score): clients written for `vllm serve` work unmodified.
-- Request: model, the pair lists text_1/text_2, queries/documents, queries/items or
-- data_1/data_2 (left: a string or a list; right: a string or a list of strings), 1:1, 1:N
-- or N:N (pair i = left[i] with right[i]: one rerank per distinct query, run in turn),
-- use_activation (false: the scores are logits; `activation` and
-- `softmax` are its deprecated aliases), truncate_prompt_tokens (>0: tokens kept per
-- document; -1 and null: none), truncation_side ("left" keeps the last tokens),
-- max_tokens_per_query, max_tokens_per_doc, instruction (or chat_template_kwargs.instruction),
-- priority; other fields are ignored, as vLLM ignores them.
-- Answer: {"id":"score-…","object":"list","created","model","data":[{"index","object":"score",
-- "score"}] in input order,"usage":{"prompt_tokens","total_tokens","completion_tokens":0}}.
-- score: a probability (the calibrated score, the raw one when it is one, or the sigmoid of
-- a logit) or, with use_activation false, a logit (lua/rerank/score.lua); scores of other
-- kinds (bm25, fused, rank) as they are.
-- Errors: {"error":{"message","type","param","code"}} with code = the HTTP status.
local api = require "rerank.shapes.registry"
local C = require "rerank.shapes.common"
local json = require "rerank.json"

local check, fail = api.check, api.fail
local number, value_json, jstring = C.number, C.value_json, C.jstring
local type, sort, concat, pairs, ipairs, tostring = type, table.sort, table.concat, pairs, ipairs, tostring

local S = { name = "vllm_score" }

-- the pair fields, in vLLM's order of preference
local PAIRS = { { "queries", "documents" }, { "queries", "items" }, { "text_1", "text_2" }, { "data_1", "data_2" } }

function S.parse(b, opts)
  local function is_list(v) return type(v) == "table" and check.is_array(v, opts.from_json) end
  local req = { shape = S.name, return_documents = false }
  local v, err = C.model(b.model)
  if err then return nil, err end
  req.model = v
  local lk, rk
  for _, p in ipairs(PAIRS) do
    if C.present(b[p[1]]) or C.present(b[p[2]]) then lk, rk = p[1], p[2]; break end
  end
  if not lk then return fail(400, "text_1 and text_2 are required (or queries and documents)", "text_1") end
  local left, right = b[lk], b[rk]
  if not C.present(left) then return fail(400, lk .. " is required", lk) end
  if not C.present(right) then return fail(400, rk .. " is required", rk) end
  -- the query: one string (1:1, 1:N), or a list of one, or N queries for N documents (N:N pairs)
  local q = left
  if is_list(left) then
    if #left == 0 then return fail(422, lk .. " must not be empty", lk) end
    q = left[1]
    if #left > 1 then
      if not is_list(right) or #left ~= #right then
        return fail(422, ("%s and %s must have the same length (got %d and %s)"):format(lk, rk, #left,
          is_list(right) and tostring(#right) or "a string"), lk)
      end
      -- pairs grouped by query, in order of first appearance: one rerank per distinct query
      local groups, at = {}, {}
      for i = 1, #left do
        local qi
        qi, err = check.query(left[i], ("%s[%d]"):format(lk, i - 1))
        if err then return nil, err end
        local g = at[qi]
        if not g then
          g = { query = qi, members = {} }
          at[qi] = g
          groups[#groups + 1] = g
        end
        g.members[#g.members + 1] = i
      end
      if #groups > 1 then req.groups = groups end
    end
  end
  local qp = is_list(left) and (lk .. "[0]") or lk
  v, err = check.query(q, qp)
  if err then return nil, err end
  req.query = v
  local docs = right
  local dopts = { max = opts.max_documents, strings_only = true, from_json = opts.from_json }
  if type(right) == "string" then
    docs = json.array({ right })
  else
    dopts.body, dopts.spans = opts.body, opts.spans
  end
  v, err = check.documents(docs, rk, dopts)
  if err then return nil, err end
  req.documents = v
  -- use_activation (activation, softmax: deprecated aliases)
  local act = b.use_activation
  if not C.present(act) then act = b.activation end
  if not C.present(act) then act = b.softmax end
  v, err = check.bool(act, "use_activation")
  if err then return nil, err end
  req.score_as = v == false and "logit" or "probability"
  v, err = check.int(b.truncate_prompt_tokens, "truncate_prompt_tokens", -1)
  if err then return nil, err end
  if v and v > 0 then req.max_tokens_per_document = v end
  v, err = check.string(b.truncation_side, "truncation_side")
  if err then return nil, err end
  if v ~= nil then
    if v ~= "left" and v ~= "right" then
      return fail(422, 'truncation_side must be "left" or "right"', "truncation_side")
    end
    req.truncate = v == "left" and "start" or "end"
  end
  local ctk = b.chat_template_kwargs
  if C.present(ctk) then
    if not check.is_object(ctk) then return fail(400, "chat_template_kwargs must be an object", "chat_template_kwargs") end
    if not C.present(b.instruction) and C.present(ctk.instruction) then
      v, err = check.string(ctk.instruction, "chat_template_kwargs.instruction")
      if err then return nil, err end
      req.instruction = v
    end
  end
  v, err = check.object(b.extra_body, "extra_body")
  if err then return nil, err end
  req.extra_body = v
  v, err = check.string(b.user, "user")
  if err then return nil, err end
  req.user = v
  return req
end

-- N:N pairs with several distinct queries: one rerank per query over its documents, the
-- results mapped back to the request's positions (usage summed; the first error answers;
-- upstream_status the last answer's, cache the statuses merged, as Instance:rerank reports).
function S.run(instance, req, timing)
  local groups = req.groups
  if not groups then return instance:rerank(req, timing) end
  local merge_status = require("rerank.engine.cache").merge_status
  local merged, usage, degraded, first = {}, {}, false, nil
  local ustatus, cstatus
  timing = timing or {}
  local up, srt = 0, 0
  for _, g in ipairs(groups) do
    local sub = {}
    for k, x in pairs(req) do sub[k] = x end
    sub.groups, sub.query = nil, g.query
    local docs = {}
    for j, i in ipairs(g.members) do
      local d = req.documents[i]
      local c = setmetatable({}, getmetatable(d)) -- a lazy text stays lazy (docs.lazy)
      for k, x in pairs(d) do c[k] = x end
      c.index = j - 1
      docs[j] = c
    end
    sub.documents = docs
    local t = {}
    local res, err = instance:rerank(sub, t)
    local saw = res or err
    if type(saw) == "table" then
      if saw.upstream_status ~= nil then ustatus = saw.upstream_status end
      cstatus = merge_status(cstatus, saw.cache)
    end
    if not res then
      if type(err) == "table" then err.upstream_status, err.cache = ustatus, cstatus end
      return nil, err
    end
    up, srt = up + (t.upstream or 0), srt + (t.sort or 0)
    first = first or res
    degraded = degraded or res.degraded
    for k, x in pairs(res.usage or {}) do
      if type(x) == "number" then usage[k] = (usage[k] or 0) + x end
    end
    for _, r in ipairs(res.results) do
      local m = {}
      for k, x in pairs(r) do m[k] = x end
      m.index = g.members[r.index + 1] - 1
      m.scoring = res.scoring
      merged[#merged + 1] = m
    end
  end
  timing.upstream, timing.sort = up, srt
  local out = {}
  for k, x in pairs(first) do out[k] = x end
  out.results, out.usage, out.degraded = merged, usage, degraded or nil
  out.cost = usage.cost
  out.upstream_status, out.cache = ustatus, cstatus
  return out
end

local function by_index(a, b) return a.index < b.index end

function S.render(result, req)
  local pt, tt = C.usage(result)
  local want = req and req.score_as or "probability"
  local list = {}
  for i, r in ipairs(result.results or {}) do list[i] = r end
  sort(list, by_index) -- vLLM answers in input order
  local buf = {}
  for i, r in ipairs(list) do
    buf[i] = '{"index":' .. number(r.index) .. ',"object":"score","score":' .. number(C.score_as(result, r, want)) .. '}'
  end
  local id = result.id or ""
  if type(id) == "string" then id = id:gsub("^rerank%-", "score-") end
  return '{"id":' .. value_json(id) .. ',"object":"list","created":' .. number(os.time()) .. ',"model":'
      .. C.model_json(result, req) .. ',"data":[' .. concat(buf, ",") .. '],"usage":{"prompt_tokens":'
      .. number(pt) .. ',"total_tokens":' .. number(tt) .. ',"completion_tokens":0}' .. C.close(result)
end

-- vLLM's ErrorResponse: error.type is the exception's class name
local TYPES = { [400] = "BadRequestError", [401] = "AuthenticationError", [403] = "PermissionDeniedError",
                [404] = "NotFoundError", [413] = "BadRequestError", [415] = "BadRequestError",
                [422] = "BadRequestError", [429] = "RateLimitError" }

function S.render_error(err)
  local status = err.status or 500
  local t = TYPES[status] or (status >= 500 and "InternalServerError" or "BadRequestError")
  return '{"error":{"message":' .. jstring(err.message or "error") .. ',"type":"' .. t .. '","param":'
      .. (err.param and jstring(err.param) or "null") .. ',"code":' .. number(status) .. '}}'
end

return S
