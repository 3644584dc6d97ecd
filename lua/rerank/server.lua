-- The daemon's request handler: routes, wire shapes, timing, error bodies.
-- core/luahost.c calls init() once per worker and handle(ctx) in a fresh coroutine per request.
local core = require "rerank.core"
local rerank = require "rerank"
local config = require "rerank.config"
local api = require "rerank.api"
local json = require "rerank.json"

local M = {}
local instance -- this worker's rerank instance

function M.load_config(path, overrides)
  return config.load(path, overrides)
end

function M.init(path, overrides)
  local r, err = rerank.new(path, { overrides = overrides })
  if not r then return nil, err end
  instance = r
  return r.cfg
end

local JSON = { ["content-type"] = "application/json" }

local function error_reply(status, etype, message, param, headers)
  return status, headers or JSON, json.error_body(status, etype, message, param)
end

local function err_reply(err)
  return error_reply(err.status or 500, err.type or "internal_error", err.message or "error", err.param)
end

-- Bodies we can read: JSON, or curl's default form type and text/plain carrying JSON.
local function acceptable_type(ct)
  if not ct or ct == "" then return true end
  ct = ct:lower()
  return ct:find("json", 1, true) or ct:find("^application/x%-www%-form%-urlencoded")
      or ct:find("^text/plain")
end

local function handle_rerank(ctx, shape)
  if not acceptable_type(ctx.headers["content-type"]) then
    return error_reply(415, "invalid_request_error",
      ("unsupported Content-Type %q; send application/json"):format(ctx.headers["content-type"]))
  end
  local t0 = core.now_us()
  local req, err = api.parse(shape, ctx.body, { max_documents = instance.cfg.server.max_documents })
  if not req then return err_reply(err) end
  req.id = "rerank-" .. ctx.id
  local timing = { parse = core.now_us() - t0 }
  local info = { model = req.model or instance.cfg.default_model, docs = #req.documents, timing = timing }
  ctx.info = info
  local result, rerr = instance:rerank(req, timing)
  if not result then
    info.upstream_status = rerr.upstream_status
    return err_reply(rerr)
  end
  info.degraded = result.degraded
  local t1 = core.now_us()
  local body = api.render(shape, result, req)
  timing.serialize = core.now_us() - t1
  local headers = {
    ["content-type"] = "application/json",
    ["x-rerankd-timing"] = ("parse=%d;upstream=%d;sort=%d;serialize=%d"):format(
      timing.parse, timing.upstream or 0, timing.sort or 0, core.now_us() - t1),
  }
  return 200, headers, body
end

local function handle_health(ctx)
  local up = ctx.workers_up >= ctx.workers and instance ~= nil
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
    data[i] = { id = m.id, object = "model", owned_by = "rerankd", provider = m.provider, upstream_model = m.model }
  end
  return 200, JSON, json.encode({ object = "list", data = json.array(data), default_model = instance.cfg.default_model })
end

local routes = {
  ["/health"] = { GET = handle_health },
  ["/v1/models"] = { GET = handle_models },
  ["/v1/rerank"] = { POST = function(ctx) return handle_rerank(ctx, "rerankd") end },
}

-- cjson escapes "/" as "\/": valid, but noisy in paths. Every "\/" it emits is that escape.
local function jstr(s)
  return (json.string(s):gsub("\\/", "/"))
end

-- The access-log fields of one request (core/log.c adds ts, status and total_us).
local function log_fields(ctx)
  local info = ctx.info or {}
  local t = info.timing
  local f = {
    '"id":', jstr(ctx.id), ',"method":', jstr(ctx.method), ',"path":', jstr(ctx.path),
    ',"route":', jstr(ctx.route or ""), ',"worker":', tostring(ctx.worker),
  }
  if info.model then f[#f + 1] = ',"model":' .. jstr(info.model) end
  if info.docs then f[#f + 1] = ',"docs":' .. info.docs end
  if t then
    f[#f + 1] = (',"us":{"parse":%d,"upstream":%d,"sort":%d,"serialize":%d}'):format(
      t.parse or 0, t.upstream or 0, t.sort or 0, t.serialize or 0)
  end
  if info.upstream_status then f[#f + 1] = ',"upstream_status":' .. tonumber(info.upstream_status) end
  if info.cache then f[#f + 1] = ',"cache":' .. json.string(info.cache) end
  if info.degraded then f[#f + 1] = ',"degraded":true' end
  return table.concat(f)
end

local function dispatch(ctx)
  local path = ctx.path
  if #path > 1 and path:sub(-1) == "/" then path = path:sub(1, -2) end
  local route = routes[path]
  if not route then
    return error_reply(404, "not_found_error", ("no route for %s %s"):format(ctx.method, ctx.path))
  end
  local fn = route[ctx.method]
  if not fn then
    local allowed = {}
    for m in pairs(route) do allowed[#allowed + 1] = m end
    table.sort(allowed)
    local allow = table.concat(allowed, ", ")
    return error_reply(405, "method_not_allowed", ("%s does not allow %s (allowed: %s)"):format(path, ctx.method, allow),
      nil, { ["content-type"] = "application/json", allow = allow })
  end
  ctx.route = path
  return fn(ctx)
end

function M.handle(ctx)
  local status, headers, body = dispatch(ctx)
  return status, headers, body, log_fields(ctx)
end

-- Called by the worker about once a second (core/server.c): periodic housekeeping.
function M.tick()
  if instance and instance.tick then instance:tick() end
end

return M
