-- The daemon's request handler: routes, wire shapes, timing, error bodies.
-- core/luahost.c calls init() once per worker and handle(ctx) in a fresh coroutine per request.
local core = require "rerank.core"
local rerank = require "rerank"
local json = require "rerank.json"
local api = require "rerank.shapes.registry"
local shapes = require "rerank.shapes" -- client shapes (Cohere v1/v2, Jina, Voyage, TEI) + detection
-- operations: API keys, rate limits, metrics, semantic health
local auth = require "rerank.daemon.auth"
local ratelimit = require "rerank.daemon.ratelimit"
local upstream = require "rerank.engine.upstream"
local waits = require "rerank.transport.waits"
local shadow = require "rerank.engine.shadow"
local metrics = require "rerank.daemon.metrics"
local health = require "rerank.daemon.health"

local M = {}
local instance -- this worker's rerank instance
local gate, limiter -- API keys (auth.lua) and rate limits (ratelimit.lua); nil when not configured

-- The daemon's configurations answer HTTP: config/load.lua then refuses an empty one and one
-- that does not choose its authentication (server.api_keys or server.auth: none).
local function serving(overrides)
  local o = { serve = true }
  for k, v in pairs(overrides or {}) do o[k] = v end
  return o
end
M.serving = serving

-- The configuration check before the daemon serves a file (start, SIGHUP; core/luahost.c):
-- validation, then the self-test (lua/rerank/config/selftest.lua) on an instance that cannot reach
-- the network.
local NO_NETWORK = {
  request = function() return nil, "no network during the self-test" end,
  request_all = function(list)
    local out = {}
    for i = 1, #list do out[i] = { error = "no network during the self-test" } end
    return out
  end,
}

function M.load_config(path, overrides)
  local r, err = rerank.new(path, { overrides = serving(overrides), transport = NO_NETWORK })
  if not r then return nil, err end
  local ok, terr = require("rerank.config.selftest").run(r)
  if not ok then return nil, terr end
  return r.cfg
end

-- One line at start and at each reload (worker 0): how clients authenticate.
local function log_auth(cfg)
  local keys = cfg.auth and #cfg.auth.keys or 0
  if keys > 0 then
    core.log("info", ("auth: %d API key%s; open paths: %s"):format(keys, keys == 1 and "" or "s",
      table.concat(cfg.auth.open_paths or {}, " ")))
  else
    core.log("warn", "auth: none (server.auth: none): every route answers without an API key")
  end
end

-- Serves an existing instance (nginx builds one for its library API and shares it).
function M.adopt(r)
  instance = r
  gate, limiter = auth.new(r.cfg.auth), ratelimit.from_config(r.cfg)
  metrics.limit_models(r.cfg) -- the model label: configured names, then a bounded set
  metrics.restore() -- counters stay monotonic across reloads
  metrics.watch_router(r.router)
  return r.cfg
end

function M.init(path, overrides)
  local r, err = rerank.new(path, { overrides = serving(overrides) })
  if not r then return nil, err end
  -- the worker's own Lua state (not nginx's, which M.adopt shares): the collector's pace
  collectgarbage("setpause", r.cfg.server.gc_pause) -- the schema fills its default
  if not overrides or (overrides.worker or 0) == 0 then log_auth(r.cfg) end
  return M.adopt(r)
end

local JSON = { ["content-type"] = "application/json" }

local function error_reply(status, etype, message, param, headers)
  return status, headers or JSON, json.error_body(status, etype, message, param)
end

local function err_reply(err)
  return error_reply(err.status or 500, err.type or "internal_error", err.message or "error", err.param)
end

-- Errors answered before a rerank route reads its body as a request (401, 405, 415): in the
-- route's own shape where the route has one, else (/v1/rerank, /rerank: the shape is detected
-- from the body) with every client's field (Cohere "message", Jina/Voyage "detail").
local FIXED_SHAPE = { ["/v2/rerank"] = "cohere_v2", ["/cohere/v1/rerank"] = "cohere_v1",
  ["/cohere/v2/rerank"] = "cohere_v2", ["/jina/v1/rerank"] = "jina", ["/voyage/v1/rerank"] = "voyage",
  ["/tei/rerank"] = "tei" }
local DETECTED_SHAPE = { ["/v1/rerank"] = true, ["/rerank"] = true }

local function early_error(path, status, etype, message, param, headers)
  local err = { status = status, type = etype, message = message, param = param }
  local body
  if FIXED_SHAPE[path] then
    body = shapes.render_error(FIXED_SHAPE[path], err)
  elseif DETECTED_SHAPE[path] then
    body = shapes.error_every_client(err)
  else
    body = json.error_body(status, etype, message, param)
  end
  return status, headers or JSON, body
end

-- Bodies we can read: JSON, or curl's default form type and text/plain carrying JSON.
local function acceptable_type(ct)
  if not ct or ct == "" then return true end
  ct = ct:lower()
  return ct:find("json", 1, true) or ct:find("^application/x%-www%-form%-urlencoded")
      or ct:find("^text/plain")
end

-- An error in the shape the client spoke, with Retry-After when there is one.
local function shape_error(shape, err, cache_status)
  local headers = { ["content-type"] = "application/json" }
  local ra = err.retry_after and upstream.valid_retry_after(tostring(err.retry_after))
  if ra then headers["retry-after"] = ra end
  if cache_status then headers["x-rerankd-cache"] = cache_status end -- the cache was consulted
  return err.status or 500, headers, shapes.render_error(shape, err)
end

-- route: "v1" | "v2" | "rerank" (shape detected from the body, lua/rerank/shapes/init.lua)
-- or an explicit shape name
local function handle_rerank(ctx, route)
  if not acceptable_type(ctx.headers["content-type"]) then
    return early_error(ctx.route, 415, "invalid_request_error",
      ("unsupported Content-Type %q; send application/json"):format(ctx.headers["content-type"]))
  end
  local t0 = core.now_us()
  -- one strict pass in C (core/json.c): JSON, UTF-8, and where each document's bytes lie;
  -- string documents stay bytes of the body until a stage reads their text (docs.lazy)
  local decoded, spans, utf8_bad = json.decode_request(ctx.body, "documents")
  local shape = shapes.detect(route, decoded, ctx.headers)
  if decoded == nil then
    return shape_error(shape, { status = 400, type = "invalid_request_error",
                                message = "invalid JSON body: " .. tostring(spans) })
  end
  if utf8_bad then return shape_error(shape, api.utf8_error(utf8_bad)) end
  local docs_cfg = instance.cfg.documents or {}
  local req, err = shapes.parse(shape, decoded, { max_documents = instance.cfg.server.max_documents,
                                                  max_fuse_lists = instance.cfg.server.max_fuse_lists,
                                                  max_fuse_items = instance.cfg.server.max_fuse_items,
                                                  text_field = docs_cfg.text_field, from_json = true,
                                                  max_image_bytes = docs_cfg.max_image_bytes,
                                                  body = ctx.body, spans = spans })
  if not req then return shape_error(shape, err) end
  local tms = ctx.headers["x-rerankd-timeout-ms"]
  if tms then -- the request's deadline (the body's `timeout` too; the shorter wins)
    local ms = tonumber(tms)
    if not ms or not (ms > 0 and ms < math.huge) then -- "nan" or "inf" would switch the deadline off
      return shape_error(shape, { status = 400, type = "invalid_request_error", param = "x-rerankd-timeout-ms",
        message = "x-rerankd-timeout-ms must be a positive number of milliseconds" })
    end
    req.timeout = math.min(req.timeout or math.huge, ms / 1000)
  end
  req.id = "rerank-" .. ctx.id
  local timing = { parse = core.now_us() - t0 }
  -- documents for limits and logs: a pipeline request's are its lists' distinct documents
  local ndocs = req.lists and req.lists.n_docs or #req.documents
  -- the name the request is accounted under: a named pipeline's ("pipeline" for inline stages)
  local pl = req.pipeline
  local name = type(pl) == "string" and pl or (type(pl) == "table" and "pipeline") or req.model
  local info = { model = name or instance.cfg.default_model, docs = ndocs, timing = timing }
  ctx.info = info
  if limiter then
    local ok, denial = limiter:admit(ctx.key_name, info.model, info.docs)
    if not ok then return shape_error(shape, ratelimit.error(denial)) end
  end
  -- shadow traffic sees the request as parsed (a pipeline replaces req.documents with its results)
  local shadow_name = type(req.pipeline) == "string" and req.pipeline or info.model
  local pristine = ctx.reply_early and shadow.configured(instance.cfg, shadow_name) and shadow.copy(req)
  -- instance:rerank, or the shape's own run; the result or the error says what the request's
  -- upstream calls answered (upstream_status: the last HTTP status) and what the cache did
  local result, rerr = shapes.run(shape, instance, req, timing)
  info.upstream_wait = waits.take() -- µs parked on upstream transfers (gateway overhead = total - this)
  if not result then
    info.upstream_status, info.cache = rerr.upstream_status, rerr.cache
    return shape_error(shape, rerr, info.cache)
  end
  info.degraded, info.upstream_status = result.degraded, result.upstream_status
  info.usage, info.cache = result.usage, result.cache
  if result.pipeline then info.model, info.stages = result.model, result.stages end
  local t1 = core.now_us()
  -- ctx.reply_parts (core/luahost.c): the body may be a list of strings, written out in C
  local body, shape_headers = shapes.render(shape, result, req, ctx.reply_parts)
  timing.serialize = core.now_us() - t1
  local headers = {
    ["content-type"] = "application/json",
    ["x-rerankd-timing"] = ("parse=%d;upstream=%d;sort=%d;serialize=%d"):format(
      timing.parse, timing.upstream or 0, timing.sort or 0, core.now_us() - t1),
  }
  if result.degraded then headers["x-rerankd-degraded"] = "true" end -- never silently
  if info.cache then headers["x-rerankd-cache"] = info.cache end -- hit | partial | miss
  -- USD from the configured prices and local counts (lua/rerank/engine/router.lua), 0 when unpriced
  headers["x-rerankd-cost"] = ("%.10g"):format(result.cost or (result.usage and result.usage.cost) or 0)
  if result.served_by then headers["x-rerankd-model"] = result.served_by end
  for k, v in pairs(shape_headers or {}) do headers[k] = v end
  -- shadow traffic: sampled here, run after the answer is sent (M.handle, lua/rerank/engine/shadow.lua)
  local pick = pristine and shadow.pick(instance.cfg, shadow_name)
  if pick then
    local cfg_timeout = instance.cfg.server.timeout or 30
    ctx.after = function()
      local left = cfg_timeout - (core.now_us() - (ctx.t0_us or core.now_us())) / 1e6 - 0.05
      shadow.run(instance, pick, pristine, result, left)
    end
  end
  return 200, headers, body
end

-- POST /v1/fuse: lists in, one fused list out (wire shape lua/rerank/shapes/fuse.lua, the
-- fusion lua/rerank/fuse.lua).
local function handle_fuse(ctx)
  if not acceptable_type(ctx.headers["content-type"]) then
    return error_reply(415, "invalid_request_error",
      ("unsupported Content-Type %q; send application/json"):format(ctx.headers["content-type"]))
  end
  local fuse = require "rerank.fuse"
  local fuse_shape = require "rerank.shapes.fuse"
  local t0 = core.now_us()
  -- the same strict pass as /v1/rerank (core/json.c): JSON first, then UTF-8
  local decoded, jerr, utf8_bad = json.decode_request(ctx.body)
  if decoded == nil then
    return error_reply(400, "invalid_request_error", "invalid JSON body: " .. tostring(jerr))
  end
  if utf8_bad then return err_reply(api.utf8_error(utf8_bad)) end
  local server = instance.cfg.server
  local spec, err = fuse_shape.parse(decoded, fuse.methods(instance.cfg),
    { max_lists = server.max_fuse_lists, max_items = server.max_fuse_items })
  if not spec then return err_reply(err) end
  local timing = { parse = core.now_us() - t0 }
  ctx.info = { model = spec.method.name, docs = spec.lists.n_docs, timing = timing }
  if limiter then
    local ok, denial = limiter:admit(ctx.key_name, nil, spec.lists.n_docs or 0)
    if not ok then return ratelimit.reply(denial) end
  end
  local t1 = core.now_us()
  local order, F = fuse_shape.run(spec)
  if not order then return err_reply(F) end
  local t2 = core.now_us()
  timing.sort = t2 - t1
  local body = fuse_shape.render(spec.lists, F, order)
  timing.serialize = core.now_us() - t2
  return 200, { ["content-type"] = "application/json",
    ["x-rerankd-timing"] = ("parse=%d;upstream=0;sort=%d;serialize=%d"):format(timing.parse, timing.sort, timing.serialize),
  }, body
end

local function handle_health(ctx)
  local up = ctx.workers_up >= ctx.workers and instance ~= nil
  if up and health.wants_deep(ctx.query) then -- GET /health?deep=1 (lua/rerank/daemon/health.lua)
    -- it calls the upstreams and shows their error text: dispatch asked for a key (when keys
    -- are configured), and each worker runs one per health.DEEP_INTERVAL
    local wait = health.admit()
    if wait then
      return 429, { ["content-type"] = "application/json", ["retry-after"] = tostring(wait) },
        json.error_body(429, "rate_limit_error",
          ("GET /health?deep=1 runs at most once every %ds per worker; retry later"):format(health.DEEP_INTERVAL))
    end
    local ok, report = health.deep(instance)
    return ok and 200 or 503, JSON, json.encode({ status = ok and "ok" or "failing", deep = true,
      workers = ctx.workers, workers_up = ctx.workers_up, version = core.version, models = json.array(report),
      redis = require("rerank.daemon.redis_state").report(instance.cfg) })
  end
  local body = json.encode({
    status = up and "ok" or "starting",
    workers = ctx.workers, workers_up = ctx.workers_up,
    models = #instance.cfg.models, version = core.version,
  })
  return up and 200 or 503, JSON, body
end

local function handle_models()
  local data = {}
  for i, m in ipairs(instance:models()) do
    data[i] = { id = m.id, object = "model", owned_by = "rerankd", provider = m.provider, upstream_model = m.model,
                alias_of = m.alias_of and json.array(m.alias_of), pipeline = m.pipeline }
  end
  return 200, JSON, json.encode({ object = "list", data = json.array(data), default_model = instance.cfg.default_model })
end

local function handle_metrics() -- every worker's metrics, merged (lua/rerank/daemon/metrics.lua)
  return 200, { ["content-type"] = metrics.CONTENT_TYPE }, metrics.collect_render()
end

local routes = {
  ["/health"] = { GET = handle_health },
  ["/metrics"] = { GET = handle_metrics },
  ["/v1/models"] = { GET = handle_models },
  ["/v1/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "v1") end },
  ["/v2/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "v2") end },
  ["/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "rerank") end },
  -- one shape each, no detection (e.g. the Cohere SDK with environment http://host:port/cohere)
  ["/cohere/v1/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "cohere_v1") end },
  ["/cohere/v2/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "cohere_v2") end },
  ["/jina/v1/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "jina") end },
  ["/voyage/v1/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "voyage") end },
  ["/tei/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "tei") end },
  -- vLLM's score API and NVIDIA NIM's ranking API (lua/rerank/shapes/vllm_score.lua, nim.lua)
  ["/v1/score"] = { POST = function(ctx) return handle_rerank(ctx, "vllm_score") end },
  ["/score"] = { POST = function(ctx) return handle_rerank(ctx, "vllm_score") end },
  ["/v1/ranking"] = { POST = function(ctx) return handle_rerank(ctx, "nim") end },
  ["/v1/fuse"] = { POST = handle_fuse },
}

-- The access-log fields of one request, as a table: core/luahost.c encodes them (with the
-- status and total_us core/server.c adds) through the access log's one JSON encoder.
local function log_fields(ctx)
  local info = ctx.info or {}
  local t = info.timing
  return {
    id = ctx.id, method = ctx.method, path = ctx.path, route = ctx.route or "", worker = ctx.worker,
    model = info.model, docs = info.docs,
    us = t and { parse = t.parse or 0, upstream = t.upstream or 0, sort = t.sort or 0, serialize = t.serialize or 0 },
    upstream_status = tonumber(info.upstream_status), cache = info.cache, degraded = info.degraded or nil,
    key = ctx.key_name, -- the key's name, never the key
  }
end

local function dispatch(ctx)
  local path = ctx.path
  if #path > 1 and path:sub(-1) == "/" then path = path:sub(1, -2) end
  local route = routes[path]
  if not route then
    return error_reply(404, "not_found_error", ("no route for %s %s"):format(ctx.method, ctx.path))
  end
  local fn = route[ctx.method] or (ctx.method == "HEAD" and route.GET) -- HEAD: GET without the body
  if not fn then
    local allowed = {}
    for m in pairs(route) do allowed[#allowed + 1] = m end
    table.sort(allowed)
    local allow = table.concat(allowed, ", ")
    return early_error(path, 405, "method_not_allowed", ("%s does not allow %s (allowed: %s)"):format(path, ctx.method, allow),
      nil, { ["content-type"] = "application/json", allow = allow })
  end
  ctx.route = path
  -- API keys, except on server.open_paths; /health?deep=1 calls every upstream, so it is not
  -- open with /health
  local auth_path = (path == "/health" and health.wants_deep(ctx.query)) and "/health?deep" or path
  local key, why = auth.check(gate, ctx, auth_path)
  if not key then
    local status, headers, err = auth.reply(why)
    return early_error(path, status, err.type, err.message, nil, headers)
  end
  if key ~= true then ctx.key_name = key end
  return fn(ctx)
end

function M.handle(ctx)
  metrics.request_start(ctx)
  local status, headers, body = dispatch(ctx)
  metrics.request_done(ctx, status, instance and instance.cfg)
  if ctx.after then -- work after the answer (shadow traffic): the client does not wait for it
    local fields = log_fields(ctx)
    coroutine.yield(ctx.reply_early, status, headers, body, fields)
    ctx.after()
    return status, headers, body, fields
  end
  return status, headers, body, log_fields(ctx)
end

-- Called by the worker when its last request in flight has been answered (core/server.c):
-- server.gc_idle_step KB of the collector's work, done now rather than inside the next
-- requests (their allocations would otherwise pay for it). Only once the heap has grown by a
-- tenth past what the last finished cycle left, so an idle worker does not collect for nothing.
-- The work comes in slices of IDLE_SLICE_KB: idle() returns true while some of it is left,
-- and the worker calls it again only when no connection has bytes waiting (its idle event
-- has the event loop's lowest priority and runs once per loop turn, core/loop.c), so a
-- request that arrives meanwhile is read and started first, and the rest waits for the next
-- idle moment. The default step (64 MB) lets
-- the cycle finish: a cycle left half done is carried on by the next request's allocations.
local IDLE_SLICE_KB = 32
local gc_left_kb, idle_left_kb = 0, 0
function M.idle()
  local step = instance and instance.cfg.server.gc_idle_step or 0
  if step <= 0 then idle_left_kb = 0; return false end
  if idle_left_kb <= 0 then
    if collectgarbage("count") < gc_left_kb * 1.1 then return false end
    idle_left_kb = step
  end
  local slice = idle_left_kb < IDLE_SLICE_KB and idle_left_kb or IDLE_SLICE_KB
  idle_left_kb = idle_left_kb - slice
  if collectgarbage("step", slice) then -- a cycle finished: what it left is the new base
    gc_left_kb = collectgarbage("count")
    idle_left_kb = 0
  end
  return idle_left_kb > 0
end

-- Called by the worker about once a second (core/server.c): periodic housekeeping.
function M.tick()
  metrics.publish() -- this worker's snapshot for GET /metrics on any worker
end

return M
