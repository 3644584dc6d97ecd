-- rerankd's HTTP API inside nginx's Lua module (lua-nginx-module / OpenResty): the same
-- handler the daemon runs (rerank.daemon.server), fed from ngx.req, so an nginx location and the
-- daemon give the same answer to the same request. Upstream calls go through cosockets
-- (rerank.transport.ngx) and never block the nginx worker.
--
--   init_by_lua_block    { require("rerank.nginx").init(os.getenv("RERANKD_CONFIG") or "/etc/rerankd.yaml") }
--   init_worker_by_lua_block { require("rerank.nginx").init_worker() }  -- periodic housekeeping
--   content_by_lua_block { require("rerank.nginx").serve() }              -- /v1/rerank, /v1/models, /health...
--   access_by_lua_block  { local r = require("rerank.nginx").instance() ... r:rerank{...} ... }
--
--   init(config_path_or_table, opts) -> cfg; raises with the config error (nginx refuses to start)
--   serve(opts)     answers the current request; opts.path routes as if the URI were that path
--   init_worker(s)  runs rerank.daemon.server.tick every s seconds (default 1) in this worker
--   instance()      the rerank instance (rerank.new) for direct library calls
--   transport(...)  rerank.transport.ngx, to tune it: transport().configure{ pool_size = 64 }
local ngx = ngx -- the nginx Lua module's global (nil outside nginx)
local json = require "rerank.json"
local core = require "rerank.core"

local M = {}
local state = { instance = nil, server = nil }

function M.init(cfg, opts)
  if type(cfg) ~= "string" and type(cfg) ~= "table" then
    error("rerank.nginx.init: expected a config file path or a config table", 2)
  end
  local rerank = require "rerank"
  local server = require "rerank.daemon.server"
  -- it answers HTTP: the configuration must choose its authentication (server.auth)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.overrides = server.serving(o.overrides)
  local r, err = rerank.new(cfg, o)
  if not r then
    error("rerank: " .. (type(err) == "table" and tostring(err.message) or tostring(err)), 2)
  end
  server.adopt(r) -- one instance: one router, one in-memory cache per worker
  state.instance, state.server = r, server
  return r.cfg
end

-- init_worker_by_lua_block: the daemon's once-a-second housekeeping (rerank.daemon.server.tick:
-- health checks, metrics) on a timer in every worker, where cosockets are allowed.
function M.init_worker(interval)
  if not state.server then error("rerank.nginx: call init(config) first (init_by_lua_block)", 2) end
  local server = state.server
  if type(server.tick) ~= "function" then return true end
  local ok, err = ngx.timer.every(interval or 1, function(premature)
    if premature then return end
    local tok, terr = pcall(server.tick)
    if not tok then ngx.log(ngx.ERR, "rerank: tick failed: ", tostring(terr)) end
  end)
  if not ok then return nil, err end
  return true
end

function M.instance()
  if not state.instance then error("rerank.nginx: call init(config) first (init_by_lua_block)", 2) end
  return state.instance
end

function M.transport() return require "rerank.transport.ngx" end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file() -- larger than client_body_buffer_size
  if not file then return "" end
  local f = io.open(file, "rb")
  if not f then return "" end
  body = f:read("*a")
  f:close()
  return body or ""
end

-- The daemon's request id rule: a client x-request-id that is short and printable, else ours.
local function request_id(headers)
  local given = headers["x-request-id"]
  if type(given) == "string" and #given > 0 and #given < 80 and not given:find("[^\33-\126]") then return given end
  return ngx.var.request_id or string.format("%x%06x", ngx.worker.pid(), math.random(0, 0xffffff))
end

local function lower_headers()
  local h = {}
  for k, v in pairs(ngx.req.get_headers(100, true)) do
    h[k:lower()] = type(v) == "table" and v[#v] or v
  end
  return h
end

local function reply(status, headers, body, id, t0)
  ngx.status = status
  local timing, have_ct
  for k, v in pairs(headers or {}) do
    local lk = k:lower()
    if lk == "x-rerankd-timing" then timing = v
    else
      if lk == "content-type" then have_ct = true end
      ngx.header[k] = v
    end
  end
  if not have_ct then ngx.header["Content-Type"] = "application/json" end
  ngx.header["x-request-id"] = id
  local total = core.now_us() - t0
  ngx.header["x-rerankd-timing"] = (timing and timing ~= "") and (timing .. ";total=" .. total) or ("total=" .. total)
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK) -- the response is sent: ends the request in content and access phases
end

function M.serve(opts)
  opts = opts or {}
  if not state.server then
    error("rerank.nginx: call init(config) first (init_by_lua_block)", 2)
  end
  local t0 = core.now_us()
  local headers = lower_headers()
  local id = request_id(headers)
  local ctx = {
    method = ngx.req.get_method(),
    path = opts.path or ngx.var.uri,
    query = ngx.var.args or "",
    id = id,
    worker = ngx.worker.id() or 0,
    workers = ngx.worker.count(),
    workers_up = ngx.worker.count(),
    t0_us = t0,
    headers = headers,
    body = read_body(),
  }
  local ok, status, rheaders, body = xpcall(state.server.handle, function(e)
    return debug.traceback(tostring(e), 2)
  end, ctx)
  if not ok or type(status) ~= "number" or type(body) ~= "string" then
    local msg = ok and "internal error: invalid handler response" or tostring(status)
    ngx.log(ngx.ERR, "rerank: request ", id, ": ", msg)
    local first = msg:match("^[^\n]*")
    return reply(500, nil, json.error_body(500, "internal_error",
      ok and first or ("internal error in a Lua script: " .. first)), id, t0)
  end
  return reply(status, rheaders, body, id, t0)
end

return M
