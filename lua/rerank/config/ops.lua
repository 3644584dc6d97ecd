-- Configuration sections for operations (config/load.lua assembles the whole; schema.lua is the
-- checker): API keys and open paths (lua/rerank/daemon/auth.lua), limits (ratelimit.lua), cache
-- (cache.lua), redis. Per-model health is a model key: config/models.lua.
--   M.check_api_key, M.check_open_path: spec check functions for server.api_keys/open_paths
--   M.normalize_api_keys(list) -> { {name, key} }, { [name] = true }
--   M.check_auth_mode(server, entries), M.check_serving(cfg): fail closed (server.auth)
--   M.check_operations(root, cfg, ctx): sets cfg.auth, cfg.redis, cfg.limits, cfg.cache
local models = require "rerank.config.models"
local S = require "rerank.config.schema"

local is_null, raise, fail, fail_type = S.is_null, S.raise, S.fail, S.fail_type
local describe, key_path, idx_path, is_list = S.describe, S.key_path, S.idx_path, S.is_list
local is_mapping, sorted_keys, check = S.is_mapping, S.sorted_keys, S.check

local M = {}

M.MAX_API_KEY_BYTES = 1024

-- never echoes the value: it may be a secret
local function check_key_string(_, v, path)
  if type(v) ~= "string" then
    local what = type(v) == "table" and (is_list(v) and "a list" or "a mapping") or ("a " .. type(v))
    raise(path, ("%s must be a string (got %s%s)"):format(path, what, type(v) == "number" and "; quote the key" or ""))
  end
  if #v > M.MAX_API_KEY_BYTES then fail(path, ("an API key must be at most %d bytes"):format(M.MAX_API_KEY_BYTES)) end
  return v
end

local API_KEY = { type = "record", fields = {
  { "name", { type = "string", nonempty = true } },
  { "key", { check = check_key_string, required = true } },
} }

-- an API key: a string, or { name =, key = } (the name is what logs and limits show)
function M.check_api_key(_, v, path, ctx)
  if type(v) == "table" and is_mapping(v) and next(v) ~= nil then
    local e = check(API_KEY, v, path, ctx)
    if e.name and not e.name:match("^[%w_.%-]+$") then
      fail(key_path(path, "name"), ("invalid key name %s (letters, digits, _ . - only)"):format(describe(e.name)))
    end
    return e
  end
  return { key = check_key_string(nil, v, path) }
end

function M.check_open_path(_, v, path)
  if type(v) ~= "string" then fail_type(path, "a string", v) end
  if v:sub(1, 1) ~= "/" then fail(path, ('must start with "/" (got %s)'):format(describe(v))) end
  return v
end

-- { {name?, key}, ... } -> entries with names ("key-<n>", n 1-based), empty keys (an unset
-- ${VAR:-}) dropped; and the set of every declared name.
function M.normalize_api_keys(list)
  local keys, names, where = {}, {}, {}
  for i, e in ipairs(list) do
    local name = e.name or ("key-" .. i)
    local path = idx_path("server.api_keys", i)
    if where[name] then fail(path, ('duplicate API key name "%s" (also %s)'):format(name, where[name])) end
    where[name] = path
    names[name] = true
    if e.key ~= "" then keys[#keys + 1] = { name = name, key = e.key } end
  end
  return keys, names
end

-- Fail closed: a list of keys that all came out empty (an unset ${VAR}) is an error, not
-- an open gateway; server.auth says which of the two the operator meant.
function M.check_auth_mode(s, entries)
  if s.auth == "none" and #entries > 0 then
    fail("server.auth", "auth: none conflicts with the keys in server.api_keys (remove one of them)")
  end
  if #entries == 0 and #s.api_keys > 0 then
    fail("server.api_keys", ("every API key is empty (%d entr%s; an unset environment variable?): the gateway "
      .. "would be open; set a key, or server.auth: none to serve without keys"):format(#s.api_keys,
      #s.api_keys == 1 and "y" or "ies"))
  end
  if s.auth == "keys" and #entries == 0 then
    fail("server.auth", "auth: keys needs at least one key in server.api_keys")
  end
end

-- A configuration that will answer HTTP chooses: API keys, or none on purpose.
function M.check_serving(cfg)
  if #cfg.auth.keys == 0 and cfg.auth.mode ~= "none" then
    fail("server", "no API keys: set server.api_keys, or server.auth: none to serve every route without a key")
  end
end

local LIMIT = { type = "record", fields = {
  { "requests_per_minute", { type = "integer", min = 1 } },
  { "documents_per_minute", { type = "integer", min = 1 } },
} }

local LIMITS = { type = "record", fields = {
  { "backend", { type = "string", enum = { "local", "redis" } } },
  { "per_key", LIMIT },
  { "keys", { type = "map", values = LIMIT } },
  { "per_model", LIMIT },
  { "models", { type = "map", values = LIMIT } },
} }

local CACHE = { type = "record", fields = {
  { "enabled", { type = "boolean", default = true } },
  { "backend", { type = "string", enum = { "memory", "redis", "shared_dict" } } },
  { "size", { type = "size", positive = true, default = 64 * 1024 * 1024 } },
  { "ttl", { type = "duration", max = 30 * 86400, default = 3600 } },
  { "models", { type = "list", single = true, items = { type = "string", nonempty = true } } },
  { "shared_dict", { type = "string", nonempty = true } },
} }

local REDIS = { type = "record", fields = {
  { "url", { type = "string", nonempty = true } },
  { "host", { type = "string", nonempty = true } },
  { "port", { type = "integer", min = 1, max = 65535 } },
  { "username", { type = "string", nonempty = true } },
  { "password", { type = "string" } },
  { "db", { type = "integer", min = 0 } },
  { "timeout", { type = "duration", positive = true, default = 0.5 } },
  { "prefix", { type = "string", default = "rerankd:" } },
} }

local function unescape_url(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local redact_url = models.redact_url -- the password (anything before an @) masked

-- redis://[[user]:password@]host[:port][/db]
local function parse_redis_url(u, path)
  local rest = u:match("^[rR][eE][dD][iI][sS]://(.*)$")
  if not rest then
    fail(path, ("invalid Redis URL %s (expected redis://[:password@]host[:port][/db])"):format(describe(redact_url(u))))
  end
  local out = {}
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if auth then
    local user, pass = auth:match("^([^:]*):(.*)$")
    if user then
      user = unescape_url(user)
      if user ~= "" and user ~= "default" then out.username = user end -- Redis 6 ACL: AUTH user pass
      out.password = unescape_url(pass)
    else
      out.password = unescape_url(auth)
    end
  else
    hostpart = rest
  end
  local hp, db = hostpart:match("^([^/]*)/?(.*)$")
  local host, port = hp:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = hp:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then fail(path, ("invalid Redis URL %s (no host)"):format(describe(redact_url(u)))) end
  out.host = host
  if port ~= "" then
    out.port = tonumber(port)
    if out.port < 1 or out.port > 65535 then fail(path, ("port %s out of range (1-65535)"):format(port)) end
  end
  if db ~= "" then
    if not db:match("^%d+$") then fail(path, ("invalid Redis database %s (an integer)"):format(describe(db))) end
    out.db = tonumber(db)
  end
  return out
end

local function check_redis(v, ctx)
  if is_null(v) then return nil end
  local r = check(REDIS, v, "redis", ctx)
  if r.url then
    local u = parse_redis_url(r.url, "redis.url")
    for _, k in ipairs({ "host", "port", "username", "password", "db" }) do
      if r[k] ~= nil and u[k] ~= nil then
        fail("redis." .. k, "conflicts with redis.url (set either url or host/port/username/password/db)")
      end
      if r[k] == nil then r[k] = u[k] end
    end
    r.url = nil
  end
  r.host = r.host or "127.0.0.1"
  r.port = r.port or 6379
  r.db = r.db or 0
  if r.password == "" then r.password = nil end -- an unset ${VAR:-}
  return r
end

local function known_name(name, ctx, cfg)
  return cfg.model_index[name] or cfg.pipeline_index[name] or (cfg.aliases and cfg.aliases[name])
      or models.direct_name(name, "limits", ctx)
end

local function check_names(map, path, valid, candidates, what)
  for _, name in ipairs(sorted_keys(map or {})) do
    if not valid(name) then
      local s = S.did_you_mean(name, candidates)
      fail(key_path(path, name), ('unknown %s "%s" (%s)'):format(what, name,
        s and ('did you mean "' .. s .. '"?') or ("configured: " .. table.concat(candidates, ", "))))
    end
  end
end

function M.check_operations(root, cfg, ctx)
  cfg.auth = ctx.auth
  cfg.redis = check_redis(root.redis, ctx)
  local model_names = sorted_keys(cfg.model_index)
  for _, n in ipairs(sorted_keys(cfg.pipeline_index)) do model_names[#model_names + 1] = n end
  if not is_null(root.limits) then
    local l = check(LIMITS, root.limits, "limits", ctx)
    if l.backend == "redis" and not cfg.redis then
      fail("limits.backend", 'backend "redis" needs a redis: section')
    end
    l.backend = l.backend or (cfg.redis and "redis" or "local")
    local key_names = sorted_keys(cfg.auth.names)
    key_names[#key_names + 1] = "anonymous"
    check_names(l.keys, "limits.keys", function(n) return n == "anonymous" or cfg.auth.names[n] end,
      key_names, "API key name")
    check_names(l.models, "limits.models", function(n) return known_name(n, ctx, cfg) end, model_names, "model")
    l.keys, l.models = l.keys or {}, l.models or {}
    cfg.limits = l
  end
  if not is_null(root.cache) then
    local c = check(CACHE, root.cache, "cache", ctx)
    if c.backend == "redis" and not cfg.redis then fail("cache.backend", 'backend "redis" needs a redis: section') end
    if c.backend == "shared_dict" and not c.shared_dict then
      fail("cache.backend", 'backend "shared_dict" needs cache.shared_dict (a lua_shared_dict name)')
    end
    for i, n in ipairs(c.models or {}) do
      if not cfg.model_index[n] then
        local names = sorted_keys(cfg.model_index)
        local sug = S.did_you_mean(n, names)
        fail(idx_path("cache.models", i), ('unknown model "%s" (%s)'):format(n,
          sug and ('did you mean "' .. sug .. '"?') or ("configured: " .. table.concat(names, ", "))))
      end
    end
    cfg.cache = c
  end
end

return M
