-- Metrics: per-worker counters, gauges and histograms in Lua, merged across workers and
-- rendered in the Prometheus text exposition format (version 0.0.4) for GET /metrics.
--
--   metrics.inc(name, labels, v)       counter += v (default 1)
--   metrics.set(name, labels, v)       gauge = v
--   metrics.observe(name, labels, v)   histogram observation (seconds for latencies)
--       labels: a table { model = "x" } or nil; label order is the family's declared order
--   metrics.define(name, kind, help, label_names, opts) -> declares a family (others may add
--       their own; every worker runs the same code, so declarations are never shipped)
--   metrics.snapshot()        -> this worker's state as a string (see below)
--   metrics.merge(snapshots)  -> merged state of several snapshots
--   metrics.render(state)     -> exposition text
--   metrics.publish() / metrics.collect_render() / metrics.restore(): the daemon's glue over
--       rerank.core.daemon (metrics_publish / metrics_collect); no-ops outside the daemon
--   metrics.watch_router(router): retries, fallbacks, attempts, failures and breaker states
--       are read from the router's own per-worker state at each snapshot
--   metrics.on_snapshot(key, fn(metrics)): refresh gauges before each snapshot
--   metrics.request_start(ctx), metrics.request_done(ctx, status, cfg): the server's hooks
--
-- Label values never carry secrets: callers pass model names, routes, statuses, reasons.
-- Unknown model names from clients are folded to "" so a client cannot grow the label set;
-- the model label of every family is bounded too (metrics.limit_models): configured names,
-- then at most server.max_model_labels other names (direct provider/model names, which
-- clients choose) per worker, then "other".
--
-- Snapshot format (one line each, label text last because it may hold spaces):
--   W <worker id>
--   c|g <name> <value> <label text>
--   h <name> <sum> <count> <b1,b2,...> <label text>   (per-bucket counts, not cumulative)
-- where <label text> is the rendered Prometheus label set without braces: model="x",status="200".
local core = require "rerank.core"

local M = {}

local type, tostring, pairs, ipairs, format, concat = type, tostring, pairs, ipairs, string.format, table.concat
local floor, huge = math.floor, math.huge

M.LATENCY_BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 }

local families, order = {}, {}
local values = {}  -- name -> label text -> number | { counts = {}, sum =, count = }
local bases = {}   -- name -> label text -> restored value of a counter read from elsewhere
M.families = families

function M.define(name, kind, help, label_names, opts)
  if type(name) ~= "string" or not name:match("^[a-zA-Z_:][a-zA-Z0-9_:]*$") then
    error("metrics.define: invalid metric name " .. tostring(name), 2)
  end
  if kind ~= "counter" and kind ~= "gauge" and kind ~= "histogram" then
    error("metrics.define: kind must be counter, gauge or histogram", 2)
  end
  if kind == "counter" and not name:match("_total$") then
    error("metrics.define: a counter's name ends in _total", 2)
  end
  if families[name] then return families[name] end
  opts = opts or {}
  local f = { name = name, kind = kind, help = help or name, labels = label_names or {},
              buckets = opts.buckets or (kind == "histogram" and M.LATENCY_BUCKETS) or nil,
              merge = opts.merge or "sum", source = opts.source, memo = {} }
  for i, l in ipairs(f.labels) do
    if l == "model" then f.model_at = i end
  end
  families[name] = f
  order[#order + 1] = name
  values[name] = {}
  return f
end

-- Families the server, engine and router feed (the README lists them).
local H, C, G = "histogram", "counter", "gauge"
M.define("rerankd_build_info", G, "Build information (always 1)", { "version" }, { merge = "max" })
M.define("rerankd_workers", G, "Worker threads that published metrics", {}, { merge = "sum" })
M.define("rerankd_requests_total", C, "HTTP requests answered, by route, model and status",
  { "route", "model", "status" })
M.define("rerankd_request_duration_seconds", H, "Request latency from accept to answer, by route", { "route" })
M.define("rerankd_stage_duration_seconds", H, "Time spent per request stage (parse, upstream, sort, serialize)",
  { "stage" })
M.define("rerankd_gateway_overhead_seconds", H,
  "Time a request spent in rerankd itself: its total minus the time parked on upstream transfers", { "route", "model" })
M.define("rerankd_in_flight_requests", G, "Requests being handled right now", {})
M.define("rerankd_lua_memory_bytes", G, "Bytes held by the workers' Lua heaps (summed over workers)", {})
M.define("rerankd_script_errors_total", C, "Requests answered 500 because a Lua script raised", {})
M.define("rerankd_deadline_exceeded_total", C, "Requests answered 504 at the per-request deadline", {})
M.define("rerankd_client_aborts_total", C, "Requests whose client disconnected before the answer", {})
M.define("rerankd_upstream_requests_total", C,
  "Scoring calls per model (deployment): outcome ok, degraded or error", { "model", "provider", "outcome" })
M.define("rerankd_upstream_duration_seconds", H,
  "Latency of scoring calls per model (deployment); local providers report compute time", { "model" })
M.define("rerankd_documents_scored_total", C, "Documents scored in successful requests, by model", { "model" })
M.define("rerankd_tokens_total", C, "Tokens used in successful requests (usage.total_tokens), by model", { "model" })
M.define("rerankd_search_units_total", C, "Search units billed in successful requests, by model", { "model" })
M.define("rerankd_cost_usd_total", C, "Cost from the models' price settings, in USD, by model", { "model" })
M.define("rerankd_cache_requests_total", C, "Score cache lookups per scoring call: hit, partial or miss",
  { "model", "result" })
M.define("rerankd_cache_documents_total", C, "Documents looked up in the score cache: hit or miss",
  { "model", "result" })
M.define("rerankd_cache_entries", G, "Entries in the in-process score caches (summed over workers)", {})
M.define("rerankd_cache_bytes", G, "Approximate bytes held by the in-process score caches", {})
M.define("rerankd_rate_limited_total", C, "Requests refused with 429, by scope (key, model) and limit",
  { "scope", "limit" })
M.define("rerankd_auth_failures_total", C, "Requests refused with 401, by reason (missing, malformed, invalid)", { "reason" })
-- from the router's per-worker state (lua/rerank/engine/router.lua), read at each snapshot
M.define("rerankd_upstream_attempts_total", C, "Upstream attempts per deployment (retries included)", { "model" },
  { source = true })
M.define("rerankd_upstream_failures_total", C, "Failed upstream attempts per deployment", { "model" }, { source = true })
M.define("rerankd_upstream_retries_total", C, "Upstream retries per deployment", { "model" }, { source = true })
M.define("rerankd_served_total", C, "Requests answered per deployment", { "model" }, { source = true })
M.define("rerankd_fallbacks_total", C, "Requests answered by a deployment reached as a fallback", { "model" },
  { source = true })
M.define("rerankd_breaker_state", G, "Circuit breaker state per deployment and worker: 0 closed, 1 half-open, 2 open",
  { "model", "worker" }, { source = true })
M.define("rerankd_direct_models", G,
  "provider/model names held in the direct-model caches (server.max_direct_models per worker, summed)", {})
M.define("rerankd_redis_errors_total", C, "Redis calls that failed, by use (ratelimit, cache)", { "use" })
M.define("rerankd_health_checks_total", C, "Deep health checks per model: pass or fail", { "model", "result" })

---------------------------------------------------------------------------------------------
-- labels

local function escape(v)
  v = tostring(v)
  if v:find('[\\"\n]') then v = v:gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("\n", "\\n") end
  return v
end
M.escape = escape

-- model label values: the configuration's names pass, others (request input) are admitted
-- up to the cap and then counted as "other"
M.MAX_MODEL_LABELS = 100
local known_models, model_cap, admitted, n_admitted = { [""] = true, other = true }, M.MAX_MODEL_LABELS, {}, 0

-- cfg: the loaded configuration (its model, alias and pipeline names are always labels).
function M.limit_models(cfg)
  known_models = { [""] = true, other = true }
  for name in pairs(cfg and cfg.model_index or {}) do known_models[name] = true end
  for name in pairs(cfg and cfg.aliases or {}) do known_models[name] = true end
  for name in pairs(cfg and cfg.pipeline_index or {}) do known_models[name] = true end
  model_cap = cfg and cfg.server and cfg.server.max_model_labels or M.MAX_MODEL_LABELS
end

local function model_label(v)
  if known_models[v] or admitted[v] then return v end
  if n_admitted < model_cap then
    admitted[v] = true
    n_admitted = n_admitted + 1
    return v
  end
  return "other"
end
M.model_label = model_label

-- The rendered label set, memoised per family in a tree keyed by the values in label order
-- (label values are bounded: configured names, routes, statuses, reasons).
local LEAF = {}
local function label_text(f, labels)
  if not labels then return "" end
  local names = f.labels
  local n = #names
  if n == 0 then return "" end
  local mi = f.model_at
  if mi then
    local v = labels.model
    if v ~= nil and v ~= "" and not known_models[v] and not admitted[v] and model_label(v) == "other" then
      local c = {}
      for k, x in pairs(labels) do c[k] = x end
      c.model = "other"
      labels = c
    end
  end
  local node = f.memo
  for i = 1, n do
    local v = labels[names[i]]
    if v == nil then v = "" end
    local nxt = node[v]
    if not nxt then
      nxt = {}
      node[v] = nxt
    end
    node = nxt
  end
  local text = node[LEAF]
  if text then return text end
  local parts = {}
  for i = 1, n do
    local v = labels[names[i]]
    parts[i] = names[i] .. '="' .. (v == nil and "" or escape(v)) .. '"'
  end
  text = concat(parts, ",")
  node[LEAF] = text
  return text
end
M.label_text = label_text

local function family(name)
  local f = families[name]
  if not f then error("metrics: unknown metric " .. tostring(name), 3) end
  return f
end

function M.inc(name, labels, v)
  local f = family(name)
  local t = values[name]
  local k = label_text(f, labels)
  t[k] = (t[k] or 0) + (v or 1)
end

function M.set(name, labels, v)
  local f = family(name)
  values[name][label_text(f, labels)] = v
end

local function new_hist(f)
  local counts = {}
  for i = 1, #f.buckets do counts[i] = 0 end
  return { counts = counts, sum = 0, count = 0 }
end

function M.observe(name, labels, v)
  local f = family(name)
  local t = values[name]
  local k = label_text(f, labels)
  local h = t[k]
  if not h then
    h = new_hist(f)
    t[k] = h
  end
  local b = f.buckets
  for i = 1, #b do
    if v <= b[i] then
      h.counts[i] = h.counts[i] + 1
      break
    end
  end
  h.sum = h.sum + v
  h.count = h.count + 1
end

function M.reset()
  for name in pairs(values) do values[name] = {} end
  bases = {}
end

function M.get(name, labels) -- tests and health: a raw value of this worker
  local f = family(name)
  return values[name][label_text(f, labels)]
end

---------------------------------------------------------------------------------------------
-- snapshots

local function num(v)
  if v ~= v then return "NaN" end
  if v == huge then return "+Inf" end
  if v == -huge then return "-Inf" end
  if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
  local s = format("%.15g", v) -- the short form when it round-trips (0.005, not 0.0050000000000000001)
  if tonumber(s) ~= v then s = format("%.17g", v) end
  return s
end
M.format_value = num

local function parse_num(s)
  if s == "+Inf" then return huge end
  if s == "-Inf" then return -huge end
  if s == "NaN" then return 0 / 0 end
  return tonumber(s)
end

function M.snapshot(worker_id)
  local out = { "W " .. tostring(worker_id or -1) }
  for _, name in ipairs(order) do
    local f = families[name]
    for k, v in pairs(values[name]) do
      if f.kind == "histogram" then
        local c = {}
        for i = 1, #v.counts do c[i] = format("%d", v.counts[i]) end
        out[#out + 1] = "h " .. name .. " " .. num(v.sum) .. " " .. format("%d", v.count) .. " "
            .. concat(c, ",") .. " " .. k
      else
        out[#out + 1] = (f.kind == "counter" and "c " or "g ") .. name .. " " .. num(v) .. " " .. k
      end
    end
  end
  return concat(out, "\n")
end

-- Parses one snapshot into { worker = id, [name] = { [label text] = value } }.
local function parse_snapshot(s)
  local st = { values = {} }
  for line in s:gmatch("[^\n]+") do
    local tag = line:sub(1, 1)
    if tag == "W" then
      st.worker = tonumber(line:sub(3))
    elseif tag == "c" or tag == "g" then
      local name, v, k = line:match("^. (%S+) (%S+) ?(.*)$")
      if name and families[name] then
        st.values[name] = st.values[name] or {}
        st.values[name][k] = parse_num(v)
      end
    elseif tag == "h" then
      local name, sum, count, buckets, k = line:match("^h (%S+) (%S+) (%d+) (%S*) ?(.*)$")
      local f = name and families[name]
      if f and f.kind == "histogram" then
        local counts, i = {}, 0
        for c in buckets:gmatch("[^,]+") do
          i = i + 1
          counts[i] = tonumber(c) or 0
        end
        if i == #f.buckets then
          st.values[name] = st.values[name] or {}
          st.values[name][k] = { counts = counts, sum = parse_num(sum), count = tonumber(count) }
        end
      end
    end
  end
  return st
end
M.parse_snapshot = parse_snapshot

-- Merges parsed-or-string snapshots: counters and histograms add up, gauges per their
-- family's merge rule (sum, max, or keep: label sets are per worker and stay apart).
function M.merge(snaps)
  local merged = {}
  for _, name in ipairs(order) do merged[name] = {} end
  for _, s in ipairs(snaps) do
    local st = type(s) == "string" and parse_snapshot(s) or s
    for name, t in pairs(st.values) do
      local f = families[name]
      local m = merged[name]
      for k, v in pairs(t) do
        local cur = m[k]
        if f.kind == "histogram" then
          if not cur then
            cur = new_hist(f)
            m[k] = cur
          end
          for i = 1, #v.counts do cur.counts[i] = cur.counts[i] + v.counts[i] end
          cur.sum = cur.sum + v.sum
          cur.count = cur.count + v.count
        elseif f.kind == "gauge" and f.merge == "max" then
          if cur == nil or v > cur then m[k] = v end
        else
          m[k] = (cur or 0) + v
        end
      end
    end
  end
  return merged
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function braces(k, extra)
  if k == "" then return extra and ("{" .. extra .. "}") or "" end
  return "{" .. k .. (extra and ("," .. extra) or "") .. "}"
end

local function help_text(s)
  return (s:gsub("\\", "\\\\"):gsub("\n", "\\n"))
end

-- Exposition text of a merged state (families in name order, samples in label order).
function M.render(merged)
  local out = {}
  local names = {}
  for _, name in ipairs(order) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local f = families[name]
    out[#out + 1] = "# HELP " .. name .. " " .. help_text(f.help)
    out[#out + 1] = "# TYPE " .. name .. " " .. f.kind
    local t = merged[name] or {}
    for _, k in ipairs(sorted_keys(t)) do
      local v = t[k]
      if f.kind == "histogram" then
        local cum = 0
        for i, b in ipairs(f.buckets) do
          cum = cum + v.counts[i]
          out[#out + 1] = name .. "_bucket" .. braces(k, 'le="' .. num(b) .. '"') .. " " .. num(cum)
        end
        out[#out + 1] = name .. "_bucket" .. braces(k, 'le="+Inf"') .. " " .. num(v.count)
        out[#out + 1] = name .. "_sum" .. braces(k) .. " " .. num(v.sum)
        out[#out + 1] = name .. "_count" .. braces(k) .. " " .. num(v.count)
      else
        out[#out + 1] = name .. braces(k) .. " " .. num(v)
      end
    end
  end
  return concat(out, "\n") .. "\n"
end

M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

---------------------------------------------------------------------------------------------
-- the daemon's glue

local daemon
if core.daemon then
  local ok, d = pcall(require, "rerank.core.daemon")
  if ok and type(d) == "table" then daemon = d end
end
M.daemon = daemon
function M.use_daemon(d) daemon, M.daemon = d, d end -- tests: a stand-in for rerank.core.daemon
local version = core.version or "unknown"

local function worker_id()
  if daemon and daemon.worker_id then return daemon.worker_id() end
  return 0
end

-- In-flight requests: the coroutines between request_start and request_done. A coroutine that
-- died on a Lua error is not counted; one abandoned on client abort is dropped when the
-- collector frees it (weak keys).
local inflight = setmetatable({}, { __mode = "k" })
local MAIN = {}

local function in_flight()
  if daemon and daemon.in_flight then return daemon.in_flight() end
  local n = 0
  for co in pairs(inflight) do
    if co == MAIN or coroutine.status(co) ~= "dead" then n = n + 1 else inflight[co] = nil end
  end
  return n
end

-- Hooks that refresh gauges before a snapshot (the cache sets its size there), by key: a
-- second registration under one key replaces the first.
local gauge_hooks, hook_order = {}, {}
function M.on_snapshot(key, fn)
  if not gauge_hooks[key] then hook_order[#hook_order + 1] = key end
  gauge_hooks[key] = fn
end

local function refresh()
  M.set("rerankd_build_info", { version = version }, 1)
  M.set("rerankd_workers", nil, 1)
  M.set("rerankd_in_flight_requests", nil, in_flight())
  M.set("rerankd_lua_memory_bytes", nil, math.floor(collectgarbage("count") * 1024))
  if daemon and daemon.counters then -- answered by C: Lua never saw these finish
    local c = daemon.counters()
    M.set("rerankd_script_errors_total", nil, c.lua_errors)
    M.set("rerankd_deadline_exceeded_total", nil, c.deadline_timeouts)
    M.set("rerankd_client_aborts_total", nil, c.client_aborts)
  end
  for _, k in ipairs(hook_order) do
    local ok, err = pcall(gauge_hooks[k], M)
    if not ok then pcall(core.log, "warn", "metrics: snapshot hook " .. tostring(k) .. ": " .. tostring(err)) end
  end
end

function M.publish()
  refresh()
  if daemon then daemon.metrics_publish(M.snapshot(worker_id())) end
end

-- The merged exposition text of every worker (this one's state is published first).
function M.collect_render()
  M.publish()
  local snaps
  if daemon then snaps = daemon.metrics_collect() else snaps = { M.snapshot(0) } end
  return M.render(M.merge(snaps))
end

-- Counters read from elsewhere (the router's) restart at 0 in a new Lua state: what they
-- had reached before the reload is added back (bases[name][label text]).

local function put_source(name, labels, v)
  local f = families[name]
  local k = label_text(f, labels)
  local b = bases[name]
  values[name][k] = (b and b[k] or 0) + v
end

-- After a reload the new Lua state picks up this worker's previous counters and histograms,
-- so they stay monotonic across SIGHUP (gauges start fresh).
function M.restore()
  if not daemon then return false end
  local id = worker_id()
  for _, s in ipairs(daemon.metrics_collect()) do
    local st = parse_snapshot(s)
    if st.worker == id then
      for name, t in pairs(st.values) do
        local f = families[name]
        if f.kind ~= "gauge" and f.source then
          bases[name] = bases[name] or {}
          for k, v in pairs(t) do
            bases[name][k] = v
            values[name][k] = v
          end
        elseif f.kind ~= "gauge" then
          for k, v in pairs(t) do values[name][k] = v end
        end
      end
      return true
    end
  end
  return false
end

---------------------------------------------------------------------------------------------
-- hooks

local BREAKER = { closed = 0, half_open = 1, ["half-open"] = 1, open = 2 }

-- router.stats[name] = { attempts, failures, retries, served, fallbacks }, router.breakers,
-- router:breaker_state(name) -> "closed" | "half_open" | "open" (lua/rerank/engine/router.lua)
function M.watch_router(router)
  M.on_snapshot("router", function(m)
    if type(router) ~= "table" then return end
    local names, seen = {}, {}
    for n in pairs(router.stats or {}) do names[#names + 1], seen[n] = n, true end
    for n in pairs(router.breakers or {}) do
      if not seen[n] then names[#names + 1] = n end
    end
    local w = worker_id()
    -- names beyond the label cap share "other": sum their counters, keep the worst breaker
    local sums, worst, labels = {}, {}, {}
    for _, n in ipairs(names) do
      local st = (router.stats or {})[n] or {}
      local lab = model_label(n)
      local acc = sums[lab]
      if not acc then
        acc = { 0, 0, 0, 0, 0 }
        sums[lab] = acc
        labels[#labels + 1] = lab
      end
      acc[1] = acc[1] + (tonumber(st.attempts) or 0)
      acc[2] = acc[2] + (tonumber(st.failures) or 0)
      acc[3] = acc[3] + (tonumber(st.retries) or 0)
      acc[4] = acc[4] + (tonumber(st.served) or 0)
      acc[5] = acc[5] + (tonumber(st.fallbacks) or 0)
      local state = router.breaker_state and router:breaker_state(n) or "closed"
      local b = BREAKER[state] or 0
      if b > (worst[lab] or 0) then worst[lab] = b end
    end
    m.set("rerankd_direct_models", nil, router.direct_lru and router.direct_lru.n or 0)
    for _, lab in ipairs(labels) do
      local acc, l = sums[lab], { model = lab }
      put_source("rerankd_upstream_attempts_total", l, acc[1])
      put_source("rerankd_upstream_failures_total", l, acc[2])
      put_source("rerankd_upstream_retries_total", l, acc[3])
      put_source("rerankd_served_total", l, acc[4])
      put_source("rerankd_fallbacks_total", l, acc[5])
      m.set("rerankd_breaker_state", { model = lab, worker = w }, worst[lab] or 0)
    end
  end)
end

function M.request_start(ctx)
  inflight[coroutine.running() or MAIN] = true
  ctx.metrics_started = true
end

local STAGES = { "parse", "upstream", "sort", "serialize" }

local function count_usage(l, u)
  if type(u) ~= "table" then return end
  if type(u.total_tokens) == "number" then M.inc("rerankd_tokens_total", l, u.total_tokens) end
  if type(u.search_units) == "number" then M.inc("rerankd_search_units_total", l, u.search_units) end
  if type(u.cost) == "number" then M.inc("rerankd_cost_usd_total", l, u.cost) end
end

-- cfg: the instance's config (model names not configured are folded to "").
function M.request_done(ctx, status, cfg)
  if ctx.metrics_started then inflight[coroutine.running() or MAIN] = nil end
  local info = ctx.info or {}
  local model = info.model
  if model and cfg and not (cfg.model_index and cfg.model_index[model])
      and not (cfg.pipeline_index and cfg.pipeline_index[model]) then
    model = ""
  end
  local route = ctx.route or "unmatched"
  M.inc("rerankd_requests_total", { route = route, model = model or "", status = tostring(status) })
  if ctx.t0_us then
    local total = core.now_us() - ctx.t0_us
    M.observe("rerankd_request_duration_seconds", { route = route }, total / 1e6)
    if info.timing then -- rerank and fuse routes: what rerankd itself cost (local models count as rerankd)
      local own = total - (info.upstream_wait or 0)
      M.observe("rerankd_gateway_overhead_seconds", { route = route, model = model or "" }, (own > 0 and own or 0) / 1e6)
    end
  end
  local t = info.timing
  if t then
    for _, s in ipairs(STAGES) do
      if t[s] then M.observe("rerankd_stage_duration_seconds", { stage = s }, t[s] / 1e6) end
    end
  end
  if status == 200 and model and model ~= "" then
    local l = { model = model }
    if info.docs then M.inc("rerankd_documents_scored_total", l, info.docs) end
    count_usage(l, info.usage)
    -- a pipeline's rerank stages: each model's own tokens and cost, under its name too
    for _, st in ipairs(info.stages or {}) do
      if cfg and cfg.model_index and cfg.model_index[st.model] then count_usage({ model = st.model }, st.usage) end
    end
  end
end

return M
