-- Shadow traffic (README "Shadow traffic"): a model, alias or pipeline with
-- `shadow: { model: NAME, sample: 0.05, max_inflight: 4, k: 10, log: FILE }` also runs a
-- sampled share of its requests on NAME after the client has its answer (server.lua answers
-- early through ctx.reply_early), and compares the two rankings (lua/rerank/engine/compare.lua).
--   shadow.configured(cfg, name) -> bool, shadow.copy(req) -> req   (the request as parsed is
--                                           kept before the primary runs)
--   shadow.pick(cfg, name) -> pick | nil     a sampled request's shadow, or nil (not sampled,
--                                           or over max_inflight: dropped and counted)
--   shadow.run(inst, pick, req, result, deadline_s)  runs the shadow and records the comparison
local core = require "rerank.core"
local metrics = require "rerank.daemon.metrics"
local compare = require "rerank.engine.compare"
local json = require "rerank.json"

local M = {}

local H, C = "histogram", "counter"
local UNIT = { 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1 }
local TAU = { -0.5, 0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1 }
local DRIFT = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local L = { "primary", "shadow" }
metrics.define("rerankd_shadow_kendall_tau", H, "Kendall tau-b of primary and shadow scores on their common documents",
  L, { buckets = TAU })
metrics.define("rerankd_shadow_overlap", H, "Share of the primary's top k also in the shadow's top k", L, { buckets = UNIT })
metrics.define("rerankd_shadow_rbo", H, "Rank-biased overlap (p = 0.9) of the primary and shadow rankings", L,
  { buckets = UNIT })
metrics.define("rerankd_shadow_top1_agreement", H, "1 when primary and shadow rank the same document first, else 0", L,
  { buckets = { 0, 1 } })
metrics.define("rerankd_shadow_score_drift", H, "Mean |shadow score - primary score| over the common documents", L,
  { buckets = DRIFT })
metrics.define("rerankd_shadow_duration_seconds", H, "Time a shadow run took", L)
metrics.define("rerankd_shadow_requests_total", C, "Shadow runs: outcome = ok, failed, dropped (over max_inflight or "
  .. "too close to the deadline)", { "primary", "shadow", "outcome" })
metrics.define("rerankd_shadow_cost_usd_total", C, "Cost of shadow runs from the shadow model's prices, in USD", L)
metrics.define("rerankd_shadow_tokens_total", C, "Tokens of shadow runs (usage.total_tokens)", L)

local inflight = {} -- primary name -> shadow runs in flight on this worker
local random = math.random

function M.set_random(f) random = f end

local function count(primary, spec, outcome)
  metrics.inc("rerankd_shadow_requests_total", { primary = primary, shadow = spec.model, outcome = outcome })
end

local function spec_of(cfg, name)
  local entry = cfg.model_index and cfg.model_index[name] or cfg.pipeline_index and cfg.pipeline_index[name]
    or cfg.alias_options and cfg.alias_options[name] -- an alias's (top-level aliases:)
  return entry and entry.shadow
end

-- Does `name` have a shadow at all (before the primary runs: the caller keeps a copy)?
function M.configured(cfg, name) return spec_of(cfg, name) ~= nil end

-- A shallow copy of a parsed request (its documents list is replaced, never edited, by
-- the primary's pipeline stages).
function M.copy(req)
  local c = {}
  for k, v in pairs(req) do c[k] = v end
  return c
end

function M.pick(cfg, name)
  local spec = spec_of(cfg, name)
  if not spec then return nil end
  if spec.sample < 1 and random() >= spec.sample then return nil end
  if (inflight[name] or 0) >= spec.max_inflight then
    count(name, spec, "dropped")
    return nil
  end
  inflight[name] = (inflight[name] or 0) + 1 -- released by run()
  return { primary = name, spec = spec }
end

local logs = {} -- path -> file handle (one per Lua state; reopened after a reload)
local function log_line(path, line)
  local f = logs[path]
  if not f then
    f = io.open(path, "a")
    if not f then
      core.log("warn", "shadow: cannot open the shadow log " .. path)
      return
    end
    f:setvbuf("no")
    logs[path] = f
  end
  f:write(line, "\n")
end

local function ranking(res)
  local out = {}
  for i, r in ipairs(res.results or {}) do out[i] = { index = r.index, score = tonumber(r.relevance_score) or 0 } end
  return out
end

local function num(x) return x == nil and "null" or json.number(x) end

function M.run(inst, pick, req, result, deadline_s)
  local name, spec = pick.primary, pick.spec
  local ok, err = pcall(function()
    local l = { primary = name, shadow = spec.model }
    if deadline_s and deadline_s < 0.05 then
      count(name, spec, "dropped")
      return
    end
    local sreq = M.copy(req)
    sreq.model, sreq.pipeline, sreq.id = spec.model, nil, (req.id or "rerank") .. "-shadow"
    sreq.timeout = deadline_s and math.min(tonumber(req.timeout) or math.huge, deadline_s) or req.timeout
    local t0 = core.now_us()
    local res, rerr = inst:rerank(sreq)
    local secs = (core.now_us() - t0) / 1e6
    metrics.observe("rerankd_shadow_duration_seconds", l, secs)
    if not res then
      count(name, spec, "failed")
      core.log("warn", ("shadow %s of %s failed: %s"):format(spec.model, name,
        tostring(type(rerr) == "table" and rerr.message or rerr)))
      return
    end
    count(name, spec, "ok")
    local u = res.usage or {}
    if tonumber(res.cost) then metrics.inc("rerankd_shadow_cost_usd_total", l, tonumber(res.cost)) end
    if tonumber(u.total_tokens) then metrics.inc("rerankd_shadow_tokens_total", l, tonumber(u.total_tokens)) end
    local a, b = ranking(result), ranking(res)
    local tau, ov, rbo = compare.kendall_tau_b(a, b), compare.overlap(a, b, spec.k), compare.rbo(a, b, 0.9)
    local top1, drift = compare.top1(a, b), compare.score_drift(a, b)
    if tau then metrics.observe("rerankd_shadow_kendall_tau", l, tau) end
    metrics.observe("rerankd_shadow_overlap", l, ov)
    metrics.observe("rerankd_shadow_rbo", l, rbo)
    metrics.observe("rerankd_shadow_top1_agreement", l, top1)
    if drift then metrics.observe("rerankd_shadow_score_drift", l, drift) end
    if spec.log then
      log_line(spec.log, ('{"ts":%s,"id":%s,"primary":%s,"shadow":%s,"documents":%d,"kendall_tau":%s,"overlap":%s,'
        .. '"k":%d,"rbo":%s,"top1":%d,"score_drift":%s,"shadow_ms":%s,"shadow_cost":%s}'):format(
        json.number(core.time()), json.string(req.id or ""), json.string(name), json.string(spec.model),
        #(req.documents or {}), num(tau), num(ov), spec.k, num(rbo), top1, num(drift),
        json.number(math.floor(secs * 1e6) / 1e3), num(tonumber(res.cost))))
    end
  end)
  inflight[name] = math.max(0, (inflight[name] or 1) - 1)
  if not ok then core.log("error", ("shadow %s of %s raised: %s"):format(spec.model, name, tostring(err))) end
end

return M
