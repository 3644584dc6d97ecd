-- The engine instance: what rerank.new builds (lua/rerank/init.lua) around a normalised
-- config, and the scoring line a parsed request runs through.
--   instance.new(cfg, transport, mt) -> inst | nil, err   the providers, the score cache and
--       the router; mt: the metatable of the object (the public library's, whose methods
--       fall back to Instance's)
--   Instance:score(model, req, report) -> scores, usage, degraded, out | nil, err
--       the provider call (no cache, no metrics)
--   Instance:rerank(req, timing) -> result | nil, err   a parsed request (req.shape set):
--       pipeline or router → calibration → top-k → results, usage and cost
-- inst fields the engine reads: cfg, providers (by model name), transport, cache, router.
local core = require "rerank.core"
local upstream = require "rerank.engine.upstream"
local router = require "rerank.engine.router"
local cache = require "rerank.engine.cache"
local accounting = require "rerank.engine.usage"
local errors = require "rerank.engine.errors"
local result_fields = require "rerank.engine.result_fields"
local scoring = require "rerank.score"

local fail = errors.fail
local huge = math.huge

local M = {}
local Instance = {}
Instance.__index = Instance
M.Instance = Instance

function M.new(c, transport, mt)
  local self = setmetatable({ cfg = c, providers = {}, transport = transport }, mt or Instance)
  for _, m in ipairs(c.models) do
    -- a provider file is a chunk returning a table of pure functions (DESIGN §4)
    local p, perr = router.load_provider(m.provider_file)
    if not p then return nil, "models." .. m.name .. ": " .. tostring(perr) end
    self.providers[m.name] = p
  end
  self.cache = cache.new(c) -- score cache (lua/rerank/engine/cache.lua); nil unless `cache:` is configured
  -- aliases, fallbacks, retries, deadlines, breakers, direct provider/model names; each call
  -- goes through the score cache and the per-model upstream metrics to the provider
  local sleep = self.transport and self.transport.sleep
  self.router = router.new(c, { providers = self.providers, load_provider = router.load_provider, sleep = sleep,
    score = cache.wrap(self, function(model, req, report) return self:score(model, req, report) end) })
  return self
end

-- Turns a provider's answer into an array of n scores (1-based, aligned with documents).
-- Every provider's answer passes here: a score that is not a finite number, an index that is
-- not a document's or one index twice refuse the answer (502 naming the problem: a retry or
-- a fallback may do better); a document without a score is missing: -inf here, so it ranks
-- last, and the answer is degraded (Instance:rerank gives it a finite score).
local function refuse(pname, what)
  return fail(502, ("provider %q: upstream answer refused: %s"):format(pname, what))
end

local function collect_scores(out, n, pname)
  if type(out) ~= "table" then
    return fail(502, ("provider %q returned no scores"):format(pname))
  end
  local scores
  local missing = 0
  local given = out.scores
  if type(given) == "table" then
    local whole = #given == n -- n numbers and nothing else: the provider's own table serves
    for i = 1, n do
      local x = given[i]
      if type(x) ~= "number" then
        whole = false
      elseif not (x > -huge and x < huge) then
        return refuse(pname, ("the score of document %d is not a finite number"):format(i - 1))
      end
    end
    if whole then return given, 0 end
    scores = {}
    for i = 1, n do scores[i] = given[i] end
  elseif type(out.results) == "table" then
    scores = {}
    for k, r in ipairs(out.results) do
      local idx = type(r) == "table" and tonumber(r.index)
      if not idx or idx < 0 or idx >= n or idx ~= math.floor(idx) then
        return refuse(pname, ("results[%d].index is not a document index (0..%d)"):format(k - 1, n - 1))
      end
      local x = tonumber(r.score or r.relevance_score)
      if x ~= nil and not (x > -huge and x < huge) then
        return refuse(pname, ("the score of document %d is not a finite number"):format(idx))
      end
      if scores[idx + 1] ~= nil then
        return refuse(pname, ("document %d is scored twice"):format(idx))
      end
      scores[idx + 1] = x
    end
  else
    return fail(502, ("provider %q returned neither scores nor results"):format(pname))
  end
  for i = 1, n do
    if type(scores[i]) ~= "number" then
      scores[i] = -huge -- a missing score ranks last; the response says it is degraded
      missing = missing + 1
    end
  end
  return scores, missing
end

-- Runs the model's provider (no cache, no metrics: the router calls it through cache.wrap;
-- GET /health?deep=1 calls it directly); returns scores, usage, degraded, out | nil, err.
-- report (optional table): report.upstream_status, the last upstream answer's HTTP status.
function Instance:score(model, req, report)
  local p = self.providers[model.name]
  local n = #req.documents
  if n == 0 then return {}, {}, false end
  local out, perr
  if type(p.score) == "function" then
    local ok
    ok, out, perr = xpcall(p.score, errors.traceback, model, req)
    if not ok then return errors.script_error(model, "score", out, req.id) end
    if out == nil then
      return fail(502, ("provider %q failed: %s"):format(model.provider, upstream.redact(model, tostring(perr))))
    end
  else
    if not self.transport then
      return fail(501, ("provider %q needs an HTTP transport"):format(model.provider))
    end
    local hedge = require "rerank.engine.hedge"
    local h = model.hedge and hedge.plan(self, model, req) -- a second deployment when slow
    local t0 = core.now_us()
    local race
    out, perr, race = upstream.call(self.transport, model, p, req, h, report)
    if h then hedge.done(h, race) end
    if not out then return nil, perr end
    if model.hedge and not (race and race.index == 2) then hedge.observe(hedge.owner(model), (core.now_us() - t0) / 1e6) end
  end
  local scores, missing = collect_scores(out, n, model.provider)
  if not scores then return nil, missing end
  -- upstreams asked for top_n answer with that many: the rest are cut, not missing
  local cut = req.top_n and math.max(0, n - req.top_n) or 0
  return scores, out.usage or {}, missing > cut or out.degraded == true, out
end

-- A failed rerank's error with what the request's report saw: the last upstream answer's
-- HTTP status (when the error has none of its own) and the cache status.
local function reported(err, report)
  if type(err) == "table" then
    if err.upstream_status == nil then err.upstream_status = report.upstream_status end
    err.cache = report.cache
  end
  return err
end

-- A parsed request (from the shapes layer). Returns result | nil, err; both carry what the
-- request's upstream calls and cache saw: upstream_status (the last upstream answer's HTTP
-- status, nil without one) and cache ("hit" | "partial" | "miss", nil when the cache was
-- not consulted).
function Instance:rerank(req, timing)
  -- pipelines (named, inline, a model name that is a pipeline, or lists): lua/rerank/engine/pipeline.lua
  local pipeline = require "rerank.engine.pipeline"
  local stages, pinfo = pipeline.resolve(self, req)
  if stages then return pipeline.run(self, req, stages, pinfo, timing) end
  if pinfo then return nil, pinfo end
  local name = req.model or self.cfg.default_model
  local t0 = core.now_us()
  -- lua/rerank/engine/router.lua: the deployment, fallbacks, retries, deadline; route.cost is local
  local report = {} -- filled by the calls below (upstream.lua, cache.lua)
  local scores, usage, degraded, route = self.router:run(name, req, report)
  if not scores then return nil, reported(usage, report) end
  local out = route.out
  local t1 = core.now_us()
  local n = #req.documents
  -- the score layer (lua/rerank/score.lua): the answering deployment's kind and calibration;
  -- relevance_score is the calibrated score when there is a calibration, else the raw one
  local kind, cal = scoring.of(route.entry or {}, self.providers[route.model], req, out)
  local final = scores
  if cal then
    final = {}
    for i = 1, n do final[i] = scores[i] == -huge and -huge or scoring.apply(cal, scores[i]) end
  end
  local k = req.top_n and math.min(req.top_n, n) or n
  local order = core.topk(final, k)
  local results = {}
  local min_score = req.min_score
  -- a document the upstream left unscored (-inf, ranked last) is answered with the lowest
  -- score of the answer (0 when there is none): always a number; the answer is degraded
  local floor_raw, floor_final
  for i, idx in ipairs(order) do
    local s, raw = final[idx], scores[idx]
    if raw == -huge then
      if not floor_raw then
        floor_raw, floor_final = 0, 0
        local lo, lo_final = huge, huge
        for j = 1, n do
          if scores[j] > -huge then
            if scores[j] < lo then lo = scores[j] end
            if final[j] < lo_final then lo_final = final[j] end
          end
        end
        if lo < huge then floor_raw, floor_final = lo, lo_final end
      end
      raw, s = floor_raw, floor_final
    end
    if min_score and s < min_score then break end -- sorted: the rest score lower
    results[i] = { index = idx - 1, relevance_score = s, raw_score = raw,
                   calibrated_score = cal and s or nil, score_kind = kind }
  end
  if req.return_score == "all" and out and type(out.matched_terms) == "table" then
    result_fields.matched_terms(results, out.matched_terms)
  end
  if timing then
    timing.upstream = t1 - t0
    timing.sort = core.now_us() - t1
  end
  usage = usage or {}
  -- the upstream's count, else the router's estimate of what it sent (lua/rerank/engine/documents.lua)
  local prompt = usage.prompt_tokens or route.tokens or 0
  -- chat (LLM) upstreams report their real tokens, summed over every call: price those
  local cost = route.cost
  if usage.completion_tokens and route.entry then
    cost = accounting.cost(route.entry.price, { prompt_tokens = prompt, completion_tokens = usage.completion_tokens,
      total_tokens = usage.total_tokens, search_units = usage.search_units }, { documents = n }) or cost
  end
  return {
    id = req.id or ("rerank-" .. core.random_hex(12)),
    model = name,
    results = results,
    usage = { prompt_tokens = prompt, completion_tokens = usage.completion_tokens,
      total_tokens = usage.total_tokens or (prompt + (usage.completion_tokens or 0)),
      search_units = usage.search_units or route.search_units, cost = cost },
    cost = cost,              -- USD from config prices and local counts (x-rerankd-cost)
    served_by = route.model,        -- the deployment that answered (alias, group, fallback)
    attempts = route.attempts,
    degraded = degraded or nil,
    score_kind = out and out.score_kind, -- "rank" for listwise LLM rerankers
    scoring = { kind = kind, calibration = cal }, -- the score layer that applied
    repairs = out and out.repairs,       -- LLM answers fixed up (clamped, missing, ...)
    upstream_status = report.upstream_status, -- the last upstream answer's HTTP status (access log)
    cache = report.cache,                     -- hit | partial | miss (x-rerankd-cache, access log)
  }
end

return M
