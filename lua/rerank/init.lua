-- rerank: the public library and the engine the daemon runs.
--   local rerank = require "rerank"
--   local r = assert(rerank.new("config.yaml"))      -- or a config table
--   local res, err = r:rerank{ model = "bm25", query = "...", documents = {...}, top_n = 3 }
-- Misuse raises; expected failures return nil, err where err is
-- { status = http status, type = ..., message = ..., param = ... }.
local core = require "rerank.core"
local config = require "rerank.config.load"
local upstream = require "rerank.engine.upstream"
local router = require "rerank.engine.router"
local cache = require "rerank.engine.cache"
local accounting = require "rerank.engine.usage"
local json = require "rerank.json"
local scoring = require "rerank.score"

local M = { _VERSION = core.version }
local Instance = {}
Instance.__index = Instance

local errors = require "rerank.engine.errors"
local fail = errors.fail
M.fail = fail

-- A provider file is a chunk returning a table of pure functions (DESIGN §4).
local load_provider = router.load_provider
M.load_provider = load_provider

-- The daemon's event-loop fetch, nginx cosockets, or blocking libcurl, in that order.
function M.default_transport()
  if core.daemon then return require "rerank.transport.fetch" end
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.socket then
    local ok, t = pcall(require, "rerank.transport.ngx")
    if ok then return t end
  end
  local ok, t = pcall(require, "rerank.transport.curl")
  return ok and t or nil
end

function M.new(cfg, opts)
  if opts ~= nil and type(opts) ~= "table" then error("rerank.new: opts must be a table", 2) end
  opts = opts or {}
  if opts.transport ~= nil and (type(opts.transport) ~= "table" or type(opts.transport.request) ~= "function") then
    error("rerank.new: opts.transport must be a table with request(opts) and request_all(list, n)", 2)
  end
  local c, err
  if type(cfg) == "string" then
    c, err = config.load(cfg, opts.overrides)
  elseif type(cfg) == "table" then
    c, err = config.from_table(cfg, opts)
  else
    error("rerank.new: expected a config file path or a config table", 2)
  end
  if not c then return nil, err end
  -- timed per request: the gateway-overhead metric subtracts the upstream wait (waits.lua)
  local transport = require("rerank.transport.waits").wrap(opts.transport or M.default_transport())
  local self = setmetatable({ cfg = c, providers = {}, transport = transport }, Instance)
  for _, m in ipairs(c.models) do
    local p, perr = load_provider(m.provider_file)
    if not p then return nil, "models." .. m.name .. ": " .. tostring(perr) end
    self.providers[m.name] = p
  end
  self.cache = cache.new(c) -- score cache (lua/rerank/engine/cache.lua); nil unless `cache:` is configured
  -- aliases, fallbacks, retries, deadlines, breakers, direct provider/model names; each call
  -- goes through the score cache and the per-model upstream metrics to the provider
  local sleep = self.transport and self.transport.sleep
  self.router = router.new(c, { providers = self.providers, load_provider = load_provider, sleep = sleep,
    score = cache.wrap(self, function(model, req, report) return self:score(model, req, report) end) })
  return self
end

-- Every name a client can send as `model`: models, then aliases (groups) and pipelines.
function Instance:models()
  local out = {}
  for i, m in ipairs(self.cfg.models) do
    out[i] = { id = m.name, provider = m.provider, model = m.model }
  end
  local names = {}
  for a in pairs(self.cfg.aliases or {}) do names[#names + 1] = a end
  table.sort(names)
  for _, a in ipairs(names) do
    local members = {}
    for j, d in ipairs(self.cfg.aliases[a]) do members[j] = d.model end
    out[#out + 1] = { id = a, alias_of = members }
  end
  for _, p in ipairs(self.cfg.pipelines or {}) do out[#out + 1] = { id = p.name, pipeline = true } end
  return out
end

-- Turns a provider's answer into an array of n scores (1-based, aligned with documents).
-- Every provider's answer passes here: a score that is not a finite number, an index that is
-- not a document's or one index twice refuse the answer (502 naming the problem: a retry or
-- a fallback may do better); a document without a score is missing: -inf here, so it ranks
-- last, and the answer is degraded (Instance:rerank gives it a finite score).
local huge = math.huge
local function refuse(pname, what)
  return fail(502, ("provider %q: upstream answer refused: %s"):format(pname, what))
end

local function collect_scores(out, n, pname)
  if type(out) ~= "table" then
    return fail(502, ("provider %q returned no scores"):format(pname))
  end
  local scores, missing = {}, 0
  if type(out.scores) == "table" then
    for i = 1, n do
      local x = out.scores[i]
      if type(x) == "number" and not (x > -huge and x < huge) then
        return refuse(pname, ("the score of document %d is not a finite number"):format(i - 1))
      end
      scores[i] = x
    end
  elseif type(out.results) == "table" then
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

-- Fusion of ranked lists (lua/rerank/fuse.lua): lists = { { name=?, kind=?, weight=?,
-- items = { {id=, score=}, ... } } or { {id=, score=}, ... }, ... }; opts = { method = "rrf",
-- top_n = n, <params> ... }. Returns { { id, score, ranks = {name=rank}, scores = {name=score} } }
-- | nil, err. The instance knows the operator's methods (fusion: and fusion_file: in config).
function Instance:fuse(lists, opts)
  if type(lists) ~= "table" then error("fuse: lists must be a table", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("fuse: opts must be a table", 2) end
  local fuse = require "rerank.fuse"
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.methods = o.methods or fuse.methods(self.cfg)
  o.max_lists = o.max_lists or self.cfg.server.max_fuse_lists
  o.max_items = o.max_items or self.cfg.server.max_fuse_items
  return fuse.run(lists, o)
end

-- The same without a configuration: built-in methods, or opts.fusion_file.
function M.fuse(lists, opts)
  return require("rerank.fuse").run(lists, opts)
end

-- return_score "all" with a provider that reports matched terms (bm25: per document
-- { { term, tf }, ... }): each result's `extra` JSON members carry the score members
-- (api.score_members) and matched_terms { term: tf } in the provider's term order
-- (library_results below turns them into fields for library callers).
local function matched_terms(results, per_doc)
  for _, r in ipairs(results) do
    local list = per_doc[r.index + 1] or {}
    local parts = {}
    for j, m in ipairs(list) do parts[j] = json.string(m[1]) .. ":" .. json.number(m[2]) end
    r.extra = require("rerank.shapes.registry").score_members(r) .. ',"matched_terms":{' .. table.concat(parts, ",") .. "}"
  end
end

-- The fields the HTTP answer has, as Lua values: a pipeline's per-stage members (kept as a
-- JSON fragment in `extra` for the daemon's one-pass serialiser) become fields of each result
-- (id, _distance, score, _fused_score, _relevance_score, ranks, scores); return_score "all"
-- on a plain rerank adds _relevance_score; return_documents adds the documents.
local function library_results(res, r)
  local all = r.return_score == "all"
  for _, item in ipairs(res.results) do
    local extra = item.extra
    if type(extra) == "string" then
      item.extra = nil
      if extra ~= "" then
        local fields = json.decode("{" .. extra:sub(2) .. "}")
        for k, v in pairs(type(fields) == "table" and fields or {}) do item[k] = v end
      end
    elseif all and not res.pipeline then
      item._relevance_score = item.relevance_score
    end
    local doc = r.return_documents and type(item.index) == "number" and r.documents[item.index + 1]
    if doc then
      if doc.raw ~= nil then item.document = doc.raw else item.document = doc.text end
    end
  end
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

-- Accepts an internal request (from api.parse) or a wire-shaped table from a library user.
-- Returns result | nil, err; both carry what the request's upstream calls and cache saw:
-- upstream_status (the last upstream answer's HTTP status, nil without one) and cache
-- ("hit" | "partial" | "miss", nil when the cache was not consulted).
function Instance:rerank(req, timing)
  if type(req) ~= "table" then error("rerank: request must be a table", 2) end
  if not req.shape then
    local r, err = require("rerank.shapes").parse("rerankd", req, { max_documents = self.cfg.server.max_documents,
      max_fuse_lists = self.cfg.server.max_fuse_lists, max_fuse_items = self.cfg.server.max_fuse_items,
      text_field = self.cfg.documents and self.cfg.documents.text_field,
      max_image_bytes = self.cfg.documents and self.cfg.documents.max_image_bytes })
    if not r then return nil, err end
    -- a library call: the results as the daemon serialises them (lua/rerank/shapes/registry.lua)
    local res, rerr = self:rerank(r, timing)
    if res and type(res.results) == "table" then library_results(res, r) end
    return res, rerr
  end
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
    matched_terms(results, out.matched_terms)
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
