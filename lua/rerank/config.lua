-- Configuration: YAML file or Lua table -> validated, normalised cfg (DESIGN §5).
--   config.load(path, overrides)  -> cfg | nil, "file:line:col: path: message"
--   config.from_table(t, opts)    -> cfg | nil, "config: path: message"
--                                    opts.dir = base for relative paths (default cwd)
--   overrides (both) = { port = n, workers = n } from the command line.
-- Helpers others reuse: config.duration(v), config.size(v) -> number | nil;
-- config.did_you_mean(word, candidates) -> candidate | nil.
--
-- The normalised shape (other modules rely on it):
--   cfg.file, cfg.dir
--   cfg.server = { listen ("host:port"), host, port, workers (0 = one per core), max_body (bytes),
--                  timeout, keepalive, drain_timeout (seconds), max_documents,
--                  api_keys = { non-empty strings }, log_level }
--   cfg.auth = { keys = { { name, key } }, names = { [name] = true }, open_paths = { "/health",
--                "/metrics" } }  from server.api_keys (strings or {name, key}) and server.open_paths
--   cfg.limits = nil | { backend = "local"|"redis", per_key?, keys = { [key name] = lim },
--                  per_model?, models = { [model] = lim } }
--                  lim = { requests_per_minute?, documents_per_minute? }     (ratelimit.lua)
--   cfg.cache = nil | { enabled, backend? ("memory"|"redis"|"shared_dict"), size (bytes),
--                  ttl (seconds, 0 = none), models? = { names }, shared_dict? }  (cache.lua)
--   cfg.redis = nil | { host, port, password?, db, timeout, prefix } (url parsed)
--   models[i].health = nil | false | { query?, relevant?, irrelevant? }          (health.lua)
--   cfg.paths = { providers = { abs dirs }, templates = { abs dirs } } (built-ins last)
--   cfg.default_model
--   cfg.models = { { name, provider, provider_file, model, base_url, path, api_key,
--                    headers = {}, timeout, retries, fallbacks = {}, max_documents,
--                    concurrency, template, instruction, price = {}, extra_body = {},
--                    options = {}, template_paths?, template_file? } }, cfg.model_index[name]
--                    (template_paths/template_file: providers declaring templates = true)
--   cfg.pipelines = { { name, stages = { { fuse = {...} } | { rerank = {...} } |
--                    { threshold = {...} } | { top_n = N } } } }, cfg.pipeline_index[name]
--                    (a fuse stage's fusion_file is made absolute)
--   cfg.fusion = { { name, file } } (operator fusion methods), cfg.fusion_index[name] = file
--   cfg.routing = { retries?, backoff?, max_backoff?, jitter?, max_retry_after?,
--                   breaker = { failures?, cooldown? }? }      (router.lua has the defaults)
--   cfg.documents = { text_field?, chars_per_token? (number | "whitespace"), chunk_tokens? }
--   cfg.direct_models = false | true | { [provider] = { base_url, timeout, price, ... } }
--   cfg.aliases = { [alias] = { { model = model name, weight = n }, ... } } from the models'
--   `aliases` (several models with one alias: a group); models also take weight, breaker =
--   { failures, cooldown }, chars_per_token; fallbacks and default_model may name aliases
--   (and provider/model names under direct_models).
-- A provider's `defaults` fill model keys the config leaves unset (base_url, path, ...).
-- Top-level keys starting with "x-" are ignored: a place for YAML anchors.
local core = require "rerank.core"
local paths = require "rerank.paths"
local llm = require "rerank.llm"
local usage = require "rerank.usage"

local M = {}

local NULL = core.yaml_parse("~", "null") -- the light userdata NULL (== cjson.null)

local function is_null(v)
  return v == nil or v == NULL
end

---------------------------------------------------------------------------
-- errors: raised as tables, caught in load/from_table and located via marks
---------------------------------------------------------------------------
local ConfigError = {}

local function raise(path, text, at_key)
  error(setmetatable({ path = path, text = text, at_key = at_key }, ConfigError), 0)
end

-- "path: message"
local function fail(path, msg)
  raise(path, path == "" and msg or (path .. ": " .. msg))
end

local function key_path(parent, key)
  return parent == "" and tostring(key) or (parent .. "." .. tostring(key))
end

local function idx_path(parent, i) -- i is 1-based; paths are 0-based like the wire format
  return ("%s[%d]"):format(parent, i - 1)
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n == #t
end

local function is_mapping(t)
  if type(t) ~= "table" then return false end
  if next(t) == nil then return true end
  for k in pairs(t) do
    if type(k) ~= "string" then return false end
  end
  return true
end

local function describe(v)
  local t = type(v)
  if v == NULL then return "null" end
  if t == "string" then
    if #v > 40 then v = v:sub(1, 40) .. "..." end
    return ("%q"):format(v)
  elseif t == "table" then
    if next(v) == nil then return "an empty table" end
    return is_list(v) and "a list" or "a mapping"
  end
  return tostring(v)
end

-- "path must be <what> (got X)"
local function fail_type(path, what, v)
  raise(path, ("%s must be %s (got %s)"):format(path == "" and "the configuration" or path, what, describe(v)))
end

---------------------------------------------------------------------------
-- did you mean
---------------------------------------------------------------------------
local function distance(a, b) -- optimal string alignment (Levenshtein + transpositions)
  a, b = a:lower(), b:lower()
  local la, lb = #a, #b
  if math.abs(la - lb) > 3 then return math.huge end
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 0, lb do d[0][j] = j end
  for i = 1, la do
    local ai = a:byte(i)
    for j = 1, lb do
      local bj = b:byte(j)
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ai == bj and 0 or 1))
      if i > 1 and j > 1 and ai == b:byte(j - 1) and a:byte(i - 1) == bj then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[la][lb]
end

-- The closest candidate: edit distance <= 2 (and less than the word's length), or a
-- prefix either way (3+ characters). Ties go to the alphabetically first.
function M.did_you_mean(word, candidates)
  if type(word) ~= "string" or word == "" then return nil end
  local lw = word:lower()
  local sorted = {}
  for _, c in ipairs(candidates) do sorted[#sorted + 1] = c end
  table.sort(sorted)
  local best, best_d
  for _, c in ipairs(sorted) do
    local lc = c:lower()
    local d = distance(word, c)
    local ok = d <= 2 and d < #word
    if not ok and #word >= 3 and #c >= 3 and (lc:sub(1, #lw) == lw or lw:sub(1, #lc) == lc) then
      ok, d = true, 3
    end
    if ok and (not best_d or d < best_d) then best, best_d = c, d end
  end
  return best
end

local function quoted_list(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  table.sort(out)
  return table.concat(out, ", ")
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Raises for the first key of t (in file order when marks are known) not in `allowed`.
local KEY_HINTS = {
  ["server.bind"] = 'use listen: "host:port"',
  ["server.address"] = 'use listen: "host:port"',
}

local function check_keys(t, path, allowed, ctx)
  local unknown = {}
  for k in pairs(t) do
    if not allowed[k] and not (path == "" and type(k) == "string" and k:sub(1, 2) == "x-") then
      unknown[#unknown + 1] = k
    end
  end
  if #unknown == 0 then return end
  local function pos(k)
    local m = ctx.marks and ctx.marks[key_path(path, k)]
    local l, c = (m or ""):match("^(%d+):(%d+)$")
    return (tonumber(l) or math.huge) * 1e6 + (tonumber(c) or 0)
  end
  table.sort(unknown, function(a, b)
    local pa, pb = pos(a), pos(b)
    if pa ~= pb then return pa < pb end
    return tostring(a) < tostring(b)
  end)
  local k = unknown[1]
  local kp = key_path(path, k)
  local names = {}
  for name in pairs(allowed) do names[#names + 1] = name end
  local hint = KEY_HINTS[kp]
  local s = M.did_you_mean(tostring(k), names)
  -- located at the key itself (marks[kp .. "!key"]), not at its value
  if s then
    raise(kp, kp .. (': unknown key (did you mean "%s"?)'):format(s), true)
  elseif hint then
    raise(kp, kp .. (": unknown key (%s)"):format(hint), true)
  end
  raise(kp, kp .. (": unknown key (expected one of: %s)"):format(quoted_list(names)), true)
end

---------------------------------------------------------------------------
-- scalar parsers
---------------------------------------------------------------------------
local DURATION_UNITS = { us = 1e-6, ms = 1e-3, s = 1, sec = 1, m = 60, min = 60, h = 3600 }

-- Seconds from a number (seconds) or "250ms", "10s", "1.5s", "2m", "1h", "1m30s".
function M.duration(v)
  if type(v) == "number" then
    if v >= 0 and v < math.huge then return v end
    return nil
  end
  if type(v) ~= "string" then return nil end
  local s = v:lower():gsub("%s+", "")
  if s == "" then return nil end
  if s:match("^%d*%.?%d+$") then return tonumber(s) end
  local total, pos = 0, 1
  while pos <= #s do
    local num, unit, nxt = s:match("^(%d*%.?%d+)(%a+)()", pos)
    if not num or not DURATION_UNITS[unit] then return nil end
    total = total + tonumber(num) * DURATION_UNITS[unit]
    pos = nxt
  end
  return total
end

local SIZE_UNITS = {
  [""] = 1, b = 1,
  k = 1024, kb = 1024, kib = 1024,
  m = 1024 ^ 2, mb = 1024 ^ 2, mib = 1024 ^ 2,
  g = 1024 ^ 3, gb = 1024 ^ 3, gib = 1024 ^ 3,
}

-- Bytes from a number or "100b", "512k", "8m", "8MB", "8MiB", "1g" (1024-based).
function M.size(v)
  if type(v) == "number" then
    if v >= 0 and v < math.huge and v == math.floor(v) then return v end
    return nil
  end
  if type(v) ~= "string" then return nil end
  local num, unit = v:lower():match("^%s*(%d*%.?%d+)%s*(%a*)%s*$")
  if not num or not SIZE_UNITS[unit] then return nil end
  return math.floor(tonumber(num) * SIZE_UNITS[unit])
end

---------------------------------------------------------------------------
-- typed checks: check(spec, value, path, ctx) -> normalised value
---------------------------------------------------------------------------
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if x ~= NULL then out[k] = copy(x) end
  end
  return out
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end

local function check_range(spec, v, path, what)
  if spec.min and v < spec.min then
    if spec.max then
      fail_type(path, ("%s between %s and %s"):format(what, spec.min, spec.max), v)
    end
    fail_type(path, ("%s >= %s"):format(what, spec.min), v)
  end
  if spec.max and v > spec.max then
    if spec.min then
      fail_type(path, ("%s between %s and %s"):format(what, spec.min, spec.max), v)
    end
    fail_type(path, ("%s <= %s"):format(what, spec.max), v)
  end
end

local check

local TYPES = {}

function TYPES.string(spec, v, path)
  if type(v) ~= "string" then fail_type(path, "a string", v) end
  if spec.nonempty and v == "" then fail(path, "must not be empty") end
  if spec.enum then
    for _, e in ipairs(spec.enum) do
      if v == e then return v end
    end
    local s = M.did_you_mean(v, spec.enum)
    fail(path, ("invalid value %s (expected one of: %s%s)"):format(describe(v), table.concat(spec.enum, ", "),
      s and ('; did you mean "' .. s .. '"?') or ""))
  end
  return v
end

function TYPES.integer(spec, v, path)
  if not is_integer(v) then fail_type(path, "an integer", v) end
  check_range(spec, v, path, "an integer")
  return v
end

function TYPES.number(spec, v, path)
  if type(v) ~= "number" or v ~= v then fail_type(path, "a number", v) end
  check_range(spec, v, path, "a number")
  return v
end

function TYPES.boolean(_, v, path)
  if type(v) ~= "boolean" then fail_type(path, "a boolean (true or false)", v) end
  return v
end

function TYPES.duration(spec, v, path)
  local d = M.duration(v)
  if not d then
    if type(v) == "string" then fail(path, ("invalid duration %s (use e.g. 250ms, 10s)"):format(describe(v))) end
    fail_type(path, "a duration such as 250ms or 10s", v)
  end
  if spec.positive and d <= 0 then fail(path, ("must be greater than 0 (got %s)"):format(describe(v))) end
  return d
end

function TYPES.size(spec, v, path)
  local n = M.size(v)
  if not n then
    if type(v) == "string" then fail(path, ("invalid size %s (use e.g. 512k, 8m)"):format(describe(v))) end
    fail_type(path, "a size such as 512k or 8m", v)
  end
  if spec.positive and n <= 0 then fail(path, ("must be greater than 0 (got %s)"):format(describe(v))) end
  return n
end

function TYPES.table(_, v, path)
  if type(v) ~= "table" then fail_type(path, "a mapping or a list", v) end
  return copy(v)
end

function TYPES.mapping(_, v, path)
  if not is_mapping(v) then fail_type(path, "a mapping", v) end
  return copy(v)
end

-- list of spec.items; a single value counts as a list of one; nulls are dropped
function TYPES.list(spec, v, path, ctx)
  if type(v) ~= "table" then
    if spec.single then v = { v } else fail_type(path, "a list", v) end
  elseif not is_list(v) then
    fail_type(path, "a list", v)
  end
  local out = {}
  for i = 1, #v do
    if not is_null(v[i]) then
      local x = check(spec.items, v[i], idx_path(path, i), ctx)
      if x ~= nil then out[#out + 1] = x end
    end
  end
  return out
end

-- mapping with free keys, values of spec.values
function TYPES.map(spec, v, path, ctx)
  if not is_mapping(v) then fail_type(path, "a mapping", v) end
  local out = {}
  for _, k in ipairs(sorted_keys(v)) do
    if not is_null(v[k]) then out[k] = check(spec.values, v[k], key_path(path, k), ctx) end
  end
  return out
end

-- mapping with declared fields (spec.fields = { {name, spec}, ... }), unknown keys rejected
function TYPES.record(spec, v, path, ctx)
  if not is_mapping(v) then fail_type(path, "a mapping", v) end
  local allowed = {}
  for _, f in ipairs(spec.fields) do allowed[f[1]] = true end
  check_keys(v, path, allowed, ctx)
  local out = {}
  for _, f in ipairs(spec.fields) do
    local name, fs = f[1], f[2]
    local x = v[name]
    if is_null(x) then
      if fs.required then fail(path, ('missing required key "%s"'):format(name)) end
      out[name] = copy(fs.default)
    else
      out[name] = check(fs, x, key_path(path, name), ctx)
    end
  end
  return out
end

check = function(spec, v, path, ctx)
  local fn = spec.check or TYPES[spec.type]
  if not fn then error("config: bad schema type " .. tostring(spec.type)) end
  return fn(spec, v, path, ctx)
end

---------------------------------------------------------------------------
-- server
---------------------------------------------------------------------------
local function parse_listen(v, path)
  local host, port
  if type(v) == "number" then
    host, port = "127.0.0.1", v
  elseif type(v) == "string" then
    local h, p = v:match("^%[([^%]]+)%]:(%d+)$")
    if not h then h, p = v:match("^([^:%[%]]*):(%d+)$") end
    if not h then
      fail(path, ('invalid listen address %s (use host:port, e.g. 127.0.0.1:8080)'):format(describe(v)))
    end
    host, port = h, tonumber(p)
    if host == "" or host == "*" then host = "0.0.0.0" end
  else
    fail_type(path, 'a "host:port" string', v)
  end
  if not is_integer(port) or port < 0 or port > 65535 then
    fail(path, ("port %s out of range (0-65535)"):format(tostring(port)))
  end
  return host, port
end

local function listen_string(host, port)
  if host:find(":", 1, true) then return ("[%s]:%d"):format(host, port) end
  return ("%s:%d"):format(host, port)
end

local function check_workers(_, v, path)
  if v == "auto" then return 0 end
  if not is_integer(v) or v < 0 or v > 1024 then fail_type(path, '"auto" or an integer between 1 and 1024', v) end
  return v
end

local SERVER = { type = "record", fields = {
  { "listen", { check = function(_, v) return v end } },
  { "host", { type = "string", nonempty = true } },
  { "port", { type = "integer", min = 0, max = 65535 } },
  { "workers", { check = check_workers, default = 0 } },
  { "max_body", { type = "size", positive = true, default = 8 * 1024 * 1024 } },
  { "timeout", { type = "duration", positive = true, default = 30 } },
  { "keepalive", { type = "duration", default = 75 } },
  { "drain_timeout", { type = "duration", default = 30 } },
  { "max_documents", { type = "integer", min = 1, default = 10000 } },
  { "api_keys", { type = "list", single = true, items = { check = function(...) return M.check_api_key(...) end },
                  default = {} } },
  { "open_paths", { type = "list", single = true, items = { check = function(...) return M.check_open_path(...) end },
                    default = { "/health", "/metrics" } } },
  { "log_level", { type = "string", enum = { "debug", "info", "warn", "error" }, default = "info" } },
} }

local function check_server(v, ctx)
  local s = check(SERVER, is_null(v) and {} or v, "server", ctx)
  -- listen: "host:port"; host and port alone are accepted too, but not next to listen
  if s.listen ~= nil and (s.host or s.port) then
    local k = s.host and "host" or "port"
    fail("server." .. k, ('conflicts with server.listen (set either listen: "host:port" or host/port)'))
  end
  local host, port = "127.0.0.1", 8080
  if s.listen ~= nil then host, port = parse_listen(s.listen, "server.listen") end
  host, port = s.host or host, s.port or port
  s.host, s.port = host, port
  s.listen = listen_string(host, port)
  -- cfg.auth (lua/rerank/auth.lua) gets the named keys and open paths; server.api_keys stays
  -- the list of key strings
  local entries, names = M.normalize_api_keys(s.api_keys)
  ctx.auth = { keys = entries, names = names, open_paths = s.open_paths }
  s.open_paths = nil
  s.api_keys = {}
  for i, e in ipairs(entries) do s.api_keys[i] = e.key end
  return s
end

---------------------------------------------------------------------------
-- paths
---------------------------------------------------------------------------
local function check_dirs(v, path, ctx, builtin)
  local list = is_null(v) and {} or check({ type = "list", single = true, items = { type = "string", nonempty = true } },
    v, path, ctx)
  local out, seen = {}, {}
  for i, p in ipairs(list) do
    local abs = paths.abs(p, ctx.dir)
    local ok, err = core.listdir(abs)
    if not ok then fail(idx_path(path, i), err) end
    if not seen[abs] then
      seen[abs] = true
      out[#out + 1] = abs
    end
  end
  if not seen[builtin] then out[#out + 1] = builtin end
  return out
end

-- top_templates: the top-level `templates:` (a dir or list of dirs), searched before paths.templates
local function check_paths(v, ctx, top_templates)
  if is_null(v) then v = {} end
  if not is_mapping(v) then fail_type("paths", "a mapping", v) end
  check_keys(v, "paths", { providers = true, templates = true }, ctx)
  local root = paths.root()
  local builtin = paths.join(root, "lua/rerank/templates")
  local templates = check_dirs(v.templates, "paths.templates", ctx, builtin)
  if not is_null(top_templates) then
    local extra = check_dirs(top_templates, "templates", ctx, builtin)
    for _, dir in ipairs(templates) do
      local dup = false
      for _, e in ipairs(extra) do dup = dup or e == dir end
      if not dup then extra[#extra + 1] = dir end
    end
    templates = extra
  end
  return {
    providers = check_dirs(v.providers, "paths.providers", ctx, paths.join(root, "providers")),
    templates = templates,
  }
end

---------------------------------------------------------------------------
-- providers
---------------------------------------------------------------------------
local OPTION_TYPES = { number = true, integer = true, string = true, boolean = true, table = true,
                       duration = true, size = true }

local function available_providers(ctx)
  local names, seen = {}, {}
  for _, dir in ipairs(ctx.paths.providers) do
    for _, f in ipairs(core.listdir(dir) or {}) do
      local n = f:match("^(.+)%.lua$")
      if n and not seen[n] then
        seen[n] = true
        names[#names + 1] = n
      end
    end
  end
  table.sort(names)
  return names
end

local function find_provider(name, ppath, ctx)
  if not name:find("/", 1, true) then
    for _, dir in ipairs(ctx.paths.providers) do
      local f = paths.join(dir, name .. ".lua")
      if paths.exists(f) then return f end
    end
  end
  local names = available_providers(ctx)
  local s = M.did_you_mean(name, names)
  if s then fail(ppath, ('unknown provider "%s" (did you mean "%s"?)'):format(name, s)) end
  if #names > 0 then
    fail(ppath, ('unknown provider "%s" (available: %s)'):format(name, table.concat(names, ", ")))
  end
  fail(ppath, ('unknown provider "%s" (no provider files in %s)'):format(name, table.concat(ctx.paths.providers, ", ")))
end

-- Loads and checks a provider file once per configuration; returns the table and its
-- option declarations { name = { type =, default = } }.
local function load_provider(file, ppath, ctx)
  local cached = ctx.providers[file]
  if cached then return cached.p, cached.options end
  local function bad(msg) fail(ppath, ("provider file %s %s"):format(file, msg)) end
  -- named by its base name: the full path is already in the message, and Lua shortens
  -- long chunk names to "...tail"
  local f, oerr = io.open(file, "rb")
  if not f then bad("failed to load: " .. tostring(oerr)) end
  local src = f:read("*a")
  f:close()
  local chunk, err = loadstring(src, "@" .. paths.basename(file))
  if not chunk then bad("failed to load: " .. tostring(err)) end
  local ok, p = pcall(chunk)
  if not ok then bad("failed to load: " .. tostring(p)) end
  if type(p) ~= "table" then bad(("must return a table (got %s)"):format(type(p))) end
  local fn = function(k) return type(p[k]) == "function" end
  if not (fn("score") or (fn("build") and fn("parse")) or fn("plan")) then
    bad("must export score(model, req), or build(model, req) and parse(model, req, status, headers, body)")
  end
  local options = {}
  if p.options ~= nil then
    if type(p.options) ~= "table" then bad("declares options that are not a table") end
    for k, decl in pairs(p.options) do
      local o = type(decl) == "table" and decl or { type = decl }
      if type(k) ~= "string" or not OPTION_TYPES[o.type] then
        bad(("declares option %s with unknown type %s (use number, integer, string, boolean, table, duration or size)")
          :format(tostring(k), describe(o.type)))
      end
      options[k] = o
    end
  end
  if p.defaults ~= nil and type(p.defaults) ~= "table" then bad("declares defaults that are not a table") end
  ctx.providers[file] = { p = p, options = options }
  return p, options
end

---------------------------------------------------------------------------
-- models
---------------------------------------------------------------------------
local function check_base_url(_, v, path)
  if type(v) ~= "string" then fail_type(path, "a string", v) end
  if not v:match("^[hH][tT][tT][pP][sS]?://[^/]") then
    fail(path, ("invalid URL %s (expected http:// or https://...)"):format(describe(v)))
  end
  return (v:gsub("/+$", ""))
end

local function check_url_path(_, v, path)
  if type(v) ~= "string" then fail_type(path, "a string", v) end
  if v:sub(1, 1) ~= "/" then fail(path, ('must start with "/" (got %s)'):format(describe(v))) end
  return v
end

local function check_header_value(_, v, path)
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then fail_type(path, "a string", v) end
  return v
end

-- Common model keys (DESIGN §5), in validation order.
local MODEL_FIELDS = {
  { "name", { type = "string", nonempty = true } },
  { "provider", { type = "string", nonempty = true } },
  { "provider_file", { type = "string", nonempty = true } },
  { "model", { type = "string" } },
  { "base_url", { check = check_base_url } },
  { "path", { check = check_url_path } },
  { "api_key", { type = "string" } },
  { "headers", { type = "map", values = { check = check_header_value } } },
  { "timeout", { type = "duration", positive = true } },
  { "retries", { type = "integer", min = 0, max = 100 } },
  { "fallbacks", { type = "list", single = true, items = { type = "string", nonempty = true } } },
  { "max_documents", { type = "integer", min = 1 } },
  { "concurrency", { type = "integer", min = 1 } },
  { "template", { type = "string", nonempty = true } },
  { "instruction", { type = "string" } },
  { "price", { type = "map", values = { type = "number", min = 0 } } },
  { "extra_body", { type = "mapping" } },
  -- routing (lua/rerank/router.lua) and documents (lua/rerank/docs.lua)
  { "aliases", { type = "list", single = true, items = { type = "string", nonempty = true } } },
  { "weight", { type = "number", min = 0 } },
  { "breaker", { check = function(...) return M.check_breaker(...) end } },
  { "chars_per_token", { check = function(...) return M.check_chars_per_token(...) end } },
  -- semantic health (lua/rerank/health.lua): false, or { query, relevant, irrelevant }
  { "health", { check = function(...) return M.check_health(...) end } },
}
local MODEL_KEYS = {}
for _, f in ipairs(MODEL_FIELDS) do MODEL_KEYS[f[1]] = true end

local function check_model(v, path, ctx)
  if not is_mapping(v) then fail_type(path, "a mapping (a model entry)", v) end
  local has = function(k) return not is_null(v[k]) end
  if not has("provider") and not has("provider_file") then
    check_keys(v, path, MODEL_KEYS, ctx) -- a misspelt "provider" is the likelier story
    fail(path, 'missing required key "provider" (or "provider_file")')
  end
  if not has("name") then fail(path, 'missing required key "name"') end
  local m = { name = check(MODEL_FIELDS[1][2], v.name, key_path(path, "name"), ctx) }

  -- provider: a name searched in paths.providers, or an explicit file
  local file, ppath
  if has("provider_file") then
    ppath = key_path(path, "provider_file")
    local pf = check({ type = "string", nonempty = true }, v.provider_file, ppath, ctx)
    file = paths.abs(pf, ctx.dir)
    if not paths.exists(file) then fail(ppath, ("provider file not found: %s"):format(file)) end
    if has("provider") then
      m.provider = check({ type = "string", nonempty = true }, v.provider, key_path(path, "provider"), ctx)
    else
      m.provider = paths.basename(file):gsub("%.lua$", "")
    end
  else
    ppath = key_path(path, "provider")
    m.provider = check({ type = "string", nonempty = true }, v.provider, ppath, ctx)
    file = find_provider(m.provider, ppath, ctx)
  end
  m.provider_file = file
  local p, decls = load_provider(file, ppath, ctx)

  -- keys: common ones, plus what the provider declares
  local allowed = {}
  for k in pairs(MODEL_KEYS) do allowed[k] = true end
  for k in pairs(decls) do allowed[k] = true end
  check_keys(v, path, allowed, ctx)

  for i = 4, #MODEL_FIELDS do
    local k, spec = MODEL_FIELDS[i][1], MODEL_FIELDS[i][2]
    if has(k) then m[k] = check(spec, v[k], key_path(path, k), ctx) end
  end
  if m.api_key == "" then m.api_key = nil end -- an unset ${VAR}

  -- provider defaults fill what the config left unset
  local defaults = p.defaults or {}
  for k in pairs(MODEL_KEYS) do
    if m[k] == nil and defaults[k] ~= nil and k ~= "name" and k ~= "provider" and k ~= "provider_file" then
      m[k] = copy(defaults[k])
    end
  end
  m.options = {}
  for k, o in pairs(decls) do
    if not MODEL_KEYS[k] then
      if has(k) then
        m.options[k] = check({ type = o.type, min = o.min, max = o.max, enum = o.enum }, v[k], key_path(path, k), ctx)
      elseif o.default ~= nil then
        m.options[k] = copy(o.default)
      elseif defaults[k] ~= nil then
        m.options[k] = copy(defaults[k])
      end
    end
  end
  -- providers that declare `templates = true` (LLM rerankers) get the template dirs, and
  -- `template` must name a loadable template file there (or be a path to one)
  if p.templates then
    m.template_paths = ctx.paths.templates
    if m.template then
      local tpath = key_path(path, "template")
      local tfile = llm.find_template(m.template, ctx.paths.templates, ctx.dir)
      if not tfile then
        local names = llm.template_names(ctx.paths.templates)
        local s = M.did_you_mean(m.template, names)
        fail(tpath, ('unknown template "%s" (%s)'):format(m.template,
          s and ('did you mean "' .. s .. '"?') or ("available: " .. table.concat(names, ", "))))
      end
      local _, terr = llm.load_template(tfile)
      if terr then fail(tpath, terr) end
      m.template_file = tfile
    end
  end
  local price_ok, bad_key, suggestion = usage.check_price(m.price, M.did_you_mean)
  if not price_ok then
    fail(key_path(key_path(path, "price"), bad_key), ("unknown price key (%s)"):format(suggestion
      and ('did you mean "' .. suggestion .. '"?') or ("expected one of: " .. table.concat(usage.PRICE_KEYS, ", "))))
  end
  m.headers = m.headers or {}
  m.fallbacks = m.fallbacks or {}
  m.price = m.price or {}
  m.extra_body = m.extra_body or {}
  m.retries = m.retries or (ctx.routing and ctx.routing.retries) or 0
  m.timeout = m.timeout or ctx.server.timeout
  return m
end

local function check_models(v, ctx)
  if is_null(v) then v = { { name = "bm25", provider = "bm25" } } end
  if not is_list(v) then fail_type("models", "a list of model entries", v) end
  if #v == 0 then fail("models", "at least one model is required") end
  local models, index, where = {}, {}, {}
  for i = 1, #v do
    local path = idx_path("models", i)
    local m = check_model(v[i], path, ctx)
    if index[m.name] then
      fail(key_path(path, "name"), ('duplicate model name "%s" (also %s)'):format(m.name, where[m.name]))
    end
    index[m.name], where[m.name] = m, path
    models[i] = m
  end
  -- aliases: every model listing a name in `aliases` is a deployment of that name (a group)
  local aliases = {}
  for i, m in ipairs(models) do
    for j, a in ipairs(m.aliases or {}) do
      local apath = idx_path(key_path(idx_path("models", i), "aliases"), j)
      if index[a] then fail(apath, ('"%s" is already the name of a model'):format(a)) end
      aliases[a] = aliases[a] or {}
      table.insert(aliases[a], { model = m.name, weight = m.weight or 1 })
    end
  end
  ctx.aliases, ctx.alias_names = aliases, aliases
  -- fallbacks name other models
  local names = sorted_keys(index)
  for i, m in ipairs(models) do
    for j, f in ipairs(m.fallbacks) do
      local fpath = idx_path(key_path(idx_path("models", i), "fallbacks"), j)
      if f == m.name then fail(fpath, ('a model cannot fall back to itself ("%s")'):format(f)) end
      if not index[f] and not (ctx.alias_names and ctx.alias_names[f]) and not M.direct_name(f, fpath, ctx) then
        local s = M.did_you_mean(f, names)
        fail(fpath, ('unknown model "%s" (%s)'):format(f,
          s and ('did you mean "' .. s .. '"?') or ("configured: " .. table.concat(names, ", "))))
      end
    end
  end
  return models, index
end

---------------------------------------------------------------------------
-- pipelines
---------------------------------------------------------------------------
-- Stage parameters: known keys are typed; other keys pass through to the stage.
local STAGES = {
  fuse = { shorthand = "method", fields = {
    method = { type = "string", nonempty = true },
    k = { type = "number", min = 0 },
    weights = { type = "table" },
    normalize = { type = "string", enum = { "none", "min_max", "max", "sum", "z_score", "rank" } },
    rank_base = { type = "integer", min = 0, max = 1 },
    std = { type = "string", enum = { "population", "sample" } },
    fusion_file = { type = "string", nonempty = true },
  } },
  rerank = { shorthand = "model", required = "model", fields = {
    model = { type = "string", nonempty = true },
    candidates = { type = "integer", min = 1 },
    top_n = { type = "integer", min = 1 },
  } },
  threshold = { shorthand = "min_score", required = "min_score", fields = {
    min_score = { type = "number" },
  } },
  top_n = { scalar = { type = "integer", min = 1 } }, -- { top_n = N }
}
local STAGE_NAMES = sorted_keys(STAGES)

-- A fuse stage: a known method (built in, from `fusion:`, or its own fusion_file) and
-- parameters that method accepts (lua/rerank/fuse.lua checks them).
function M.check_fuse_stage(out, kpath, ctx)
  local fuse = require "rerank.fuse"
  local method
  if out.fusion_file then
    local fpath = key_path(kpath, "fusion_file")
    local file = paths.abs(out.fusion_file, ctx.dir)
    if not paths.exists(file) then fail(fpath, ("fusion file not found: %s"):format(file)) end
    local m, err = fuse.load_file(file, true)
    if not m then fail(fpath, err) end
    if out.method and out.method ~= m.name then
      fail(key_path(kpath, "method"), ('"%s" does not match the name "%s" in %s'):format(out.method, m.name, file))
    end
    if fuse.BUILTIN_SET[m.name] then
      fail(fpath, ('fusion method "%s" (%s) is a built-in name; choose another'):format(m.name, file))
    end
    local other = (ctx.fusion_index and ctx.fusion_index[m.name]) or (ctx.stage_fusion and ctx.stage_fusion[m.name])
    if other and other ~= file then
      fail(fpath, ('fusion method "%s" is also defined by %s'):format(m.name, other))
    end
    ctx.stage_fusion = ctx.stage_fusion or {}
    ctx.stage_fusion[m.name] = file
    out.fusion_file, method = file, m
  else
    local name = out.method or fuse.DEFAULT_METHOD
    if fuse.BUILTIN_SET[name] then
      method = fuse.builtin(name)
    elseif ctx.fusion_index and ctx.fusion_index[name] then
      method = fuse.load_file(ctx.fusion_index[name])
    else
      local names = {}
      for _, n in ipairs(fuse.BUILTIN) do names[#names + 1] = n end
      for n in pairs(ctx.fusion_index or {}) do names[#names + 1] = n end
      table.sort(names)
      local s = M.did_you_mean(name, names)
      fail(key_path(kpath, "method"), ('unknown fusion method "%s" (%s)'):format(name,
        s and ('did you mean "' .. s .. '"?') or ("available: " .. table.concat(names, ", "))))
    end
  end
  local params = {}
  for k, x in pairs(out) do
    if k ~= "method" and k ~= "fusion_file" then params[k] = x end
  end
  local ok, err = fuse.check_params(method, params, kpath)
  if not ok then raise(err.param, err.message) end
end

local function check_stage(v, path, ctx)
  if not is_mapping(v) or next(v) == nil then
    fail_type(path, ("a mapping with one of: %s"):format(table.concat(STAGE_NAMES, ", ")), v)
  end
  local keys = sorted_keys(v)
  if #keys > 1 then
    fail(path, ("a stage has exactly one kind (got %s)"):format(table.concat(keys, ", ")))
  end
  local kind = keys[1]
  local def = STAGES[kind]
  local allowed = {}
  for _, k in ipairs(STAGE_NAMES) do allowed[k] = true end
  check_keys(v, path, allowed, ctx)
  local kpath = key_path(path, kind)
  local params = v[kind]
  if def.scalar then return { [kind] = check(def.scalar, params, kpath, ctx) } end
  if is_null(params) then params = {} end
  if type(params) ~= "table" then params = { [def.shorthand] = params } end
  if not is_mapping(params) then fail_type(kpath, "a mapping", params) end
  local out = copy(params)
  for k, spec in pairs(def.fields) do
    if not is_null(params[k]) then out[k] = check(spec, params[k], key_path(kpath, k), ctx) end
  end
  if def.required and out[def.required] == nil then
    fail(kpath, ('missing required key "%s"'):format(def.required))
  end
  if kind == "fuse" then M.check_fuse_stage(out, kpath, ctx) end
  if kind == "rerank" and not ctx.model_index[out.model] then
    local names = sorted_keys(ctx.model_index)
    local s = M.did_you_mean(out.model, names)
    fail(key_path(kpath, "model"), ('unknown model "%s" (%s)'):format(out.model,
      s and ('did you mean "' .. s .. '"?') or ("configured: " .. table.concat(names, ", "))))
  end
  return { [kind] = out }
end

local function check_pipelines(v, ctx)
  if is_null(v) then return {}, {} end
  if not is_list(v) then fail_type("pipelines", "a list of pipeline entries", v) end
  local list, index, where = {}, {}, {}
  for i = 1, #v do
    local path = idx_path("pipelines", i)
    local p = v[i]
    if not is_mapping(p) or next(p) == nil then fail_type(path, "a mapping (a pipeline entry)", p) end
    check_keys(p, path, { name = true, stages = true }, ctx)
    if is_null(p.name) then fail(path, 'missing required key "name"') end
    local name = check({ type = "string", nonempty = true }, p.name, key_path(path, "name"), ctx)
    if ctx.model_index[name] then
      fail(key_path(path, "name"), ('"%s" is already the name of a model'):format(name))
    end
    if index[name] then
      fail(key_path(path, "name"), ('duplicate pipeline name "%s" (also %s)'):format(name, where[name]))
    end
    if is_null(p.stages) then fail(path, 'missing required key "stages"') end
    local spath = key_path(path, "stages")
    if not is_list(p.stages) then fail_type(spath, "a list of stages", p.stages) end
    if #p.stages == 0 then fail(spath, "at least one stage is required") end
    local stages = {}
    for j = 1, #p.stages do stages[j] = check_stage(p.stages[j], idx_path(spath, j), ctx) end
    local bad, why = require("rerank.pipeline").check_order(stages)
    if bad then fail(key_path(idx_path(spath, bad), "fuse"), why) end
    local entry = { name = name, stages = stages }
    list[i], index[name], where[name] = entry, entry, path
  end
  return list, index
end

---------------------------------------------------------------------------
-- routing, documents, direct_models, aliases (lua/rerank/router.lua, docs.lua)
---------------------------------------------------------------------------
-- breaker: { failures = n (0 disables), cooldown = duration }
local BREAKER = { type = "record", fields = {
  { "failures", { type = "integer", min = 0, max = 1000000 } },
  { "cooldown", { type = "duration", positive = true } },
} }
function M.check_breaker(_, v, path, ctx) return check(BREAKER, v, path, ctx) end

-- chars_per_token: a positive number, or "whitespace" (count words)
function M.check_chars_per_token(_, v, path)
  if v == "whitespace" then return v end
  if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
    fail_type(path, 'a positive number or "whitespace"', v)
  end
  return v
end

local ROUTING = { type = "record", fields = {
  { "retries", { type = "integer", min = 0, max = 100 } },
  { "backoff", { type = "duration", positive = true } },
  { "max_backoff", { type = "duration", positive = true } },
  { "jitter", { type = "number", min = 0, max = 1 } },
  { "max_retry_after", { type = "duration" } },
  { "breaker", BREAKER },
} }

local DOCUMENTS = { type = "record", fields = {
  { "text_field", { type = "string", nonempty = true } },
  { "chars_per_token", { check = M.check_chars_per_token } },
  { "chunk_tokens", { type = "integer", min = 1 } },
} }

-- keys a direct_models.<provider> entry may set (what a model entry sets, minus identity)
local DIRECT_KEYS = { "base_url", "path", "api_key", "headers", "timeout", "retries", "fallbacks", "max_documents",
                      "concurrency", "price", "extra_body", "breaker", "chars_per_token" }

-- direct_models: true | false | { <provider> = { base_url, timeout, price, ... } } (enabled)
local function check_direct_models(v, ctx)
  if is_null(v) or v == false then return false end
  if v == true then return true end
  if not is_mapping(v) then fail_type("direct_models", "true, false or a mapping of provider settings", v) end
  local specs = {}
  for _, f in ipairs(MODEL_FIELDS) do specs[f[1]] = f[2] end
  local fields = {}
  for _, k in ipairs(DIRECT_KEYS) do fields[#fields + 1] = { k, specs[k] } end
  local rec = { type = "record", fields = fields }
  local out = {}
  for _, name in ipairs(sorted_keys(v)) do
    local path = key_path("direct_models", name)
    find_provider(tostring(name), path, ctx)
    local o = check(rec, is_null(v[name]) and {} or v[name], path, ctx)
    local ok, bad_key, suggestion = usage.check_price(o.price, M.did_you_mean)
    if not ok then
      fail(key_path(key_path(path, "price"), bad_key), ("unknown price key (%s)"):format(suggestion
        and ('did you mean "' .. suggestion .. '"?') or ("expected one of: " .. table.concat(usage.PRICE_KEYS, ", "))))
    end
    out[name] = o
  end
  return out
end

-- "provider/model" when direct_models is on and the provider exists; raises for a missing provider
function M.direct_name(name, path, ctx)
  if not ctx.direct_models then return false end
  local pname = type(name) == "string" and name:match("^([%w_%-]+)/.+$")
  if not pname then return false end
  find_provider(pname, path, ctx)
  return true
end

---------------------------------------------------------------------------
-- operations: API keys, open paths, limits, cache, redis, per-model health
-- (lua/rerank/auth.lua, ratelimit.lua, cache.lua, health.lua)
---------------------------------------------------------------------------
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

local HEALTH = { type = "record", fields = {
  { "enabled", { type = "boolean" } },
  { "query", { type = "string", nonempty = true } },
  { "relevant", { type = "string", nonempty = true } },
  { "irrelevant", { type = "string", nonempty = true } },
} }

function M.check_health(_, v, path, ctx)
  if type(v) == "boolean" then return v end
  if not is_mapping(v) then fail_type(path, "false or a mapping with query, relevant, irrelevant", v) end
  local h = check(HEALTH, v, path, ctx)
  if h.enabled == false then return false end
  h.enabled = nil
  return h
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
  { "ttl", { type = "duration", default = 3600 } },
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

-- a URL for error messages: the password (anything before an @) masked
local function redact_url(u)
  return (u:gsub("^(.-//?)[^/@]*@", "%1***@"))
end

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
      or (M.direct_name and M.direct_name(name, "limits", ctx))
end

local function check_names(map, path, valid, candidates, what)
  for _, name in ipairs(sorted_keys(map or {})) do
    if not valid(name) then
      local s = M.did_you_mean(name, candidates)
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
        local sug = M.did_you_mean(n, names)
        fail(idx_path("cache.models", i), ('unknown model "%s" (%s)'):format(n,
          sug and ('did you mean "' .. sug .. '"?') or ("configured: " .. table.concat(names, ", "))))
      end
    end
    cfg.cache = c
  end
end

---------------------------------------------------------------------------
-- the whole configuration
---------------------------------------------------------------------------
local TOP = { server = true, paths = true, default_model = true, models = true, pipelines = true, log = true,
              fusion = true, routing = true, documents = true, direct_models = true,
              limits = true, cache = true, redis = true, templates = true }

-- fusion: [files]: operator fusion methods, each a Lua file returning { name =, fuse = fn }
local function check_fusion(v, ctx)
  if is_null(v) then return {}, {} end
  local fuse = require "rerank.fuse"
  local files = check({ type = "list", single = true, items = { type = "string", nonempty = true } }, v, "fusion", ctx)
  local list, index, where = {}, {}, {}
  for i, f in ipairs(files) do
    local path = idx_path("fusion", i)
    local file = paths.abs(f, ctx.dir)
    if not paths.exists(file) then fail(path, ("fusion file not found: %s"):format(file)) end
    local m, err = fuse.load_file(file, true)
    if not m then fail(path, err) end
    if fuse.BUILTIN_SET[m.name] then
      fail(path, ('fusion method "%s" (%s) is a built-in name; choose another'):format(m.name, file))
    end
    if index[m.name] then
      fail(path, ('duplicate fusion method "%s" (also %s)'):format(m.name, where[m.name]))
    end
    list[#list + 1] = { name = m.name, file = file }
    index[m.name], where[m.name] = file, path
  end
  return list, index
end

-- log: { level, access, error }: "stderr", "off" (access only) or a file path (config-relative)
local LOG = { type = "record", fields = {
  { "level", { type = "string", enum = { "debug", "info", "warn", "error" } } },
  { "access", { type = "string", nonempty = true, default = "stderr" } },
  { "error", { type = "string", nonempty = true, default = "stderr" } },
} }

local function check_log(v, ctx, server)
  local l = check(LOG, is_null(v) and {} or v, "log", ctx)
  l.level = l.level or server.log_level or "info"
  for _, k in ipairs({ "access", "error" }) do
    if l[k] ~= "stderr" and l[k] ~= "off" then l[k] = paths.abs(l[k], ctx.dir) end
  end
  if l.error == "off" then fail("log.error", 'the error log cannot be "off" (use a file or "stderr")') end
  return l
end

local function apply_overrides(server, overrides)
  if type(overrides) ~= "table" then return end
  if overrides.port ~= nil then
    local p = overrides.port
    if not is_integer(p) or p < 0 or p > 65535 then
      raise(nil, ("-p: invalid port %s (0-65535)"):format(tostring(p)))
    end
    server.port = p
    server.listen = listen_string(server.host, p)
  end
  if overrides.workers ~= nil then
    local w = overrides.workers
    if not is_integer(w) or w < 0 or w > 1024 then
      raise(nil, ("-w: invalid worker count %s (1-1024)"):format(tostring(w)))
    end
    server.workers = w
  end
end

local function build(root, ctx)
  if is_null(root) then root = {} end
  if not is_mapping(root) then fail_type("", "a mapping", root) end
  check_keys(root, "", TOP, ctx)
  local cfg = { file = ctx.file, dir = ctx.dir }
  cfg.server = check_server(root.server, ctx)
  apply_overrides(cfg.server, ctx.overrides)
  ctx.server = cfg.server
  cfg.log = check_log(root.log, ctx, cfg.server)
  cfg.paths = check_paths(root.paths, ctx, root.templates)
  ctx.paths = cfg.paths
  cfg.routing = check(ROUTING, is_null(root.routing) and {} or root.routing, "routing", ctx)
  ctx.routing = cfg.routing
  cfg.documents = check(DOCUMENTS, is_null(root.documents) and {} or root.documents, "documents", ctx)
  cfg.direct_models = check_direct_models(root.direct_models, ctx)
  ctx.direct_models = cfg.direct_models
  cfg.models, cfg.model_index = check_models(root.models, ctx)
  ctx.model_index = cfg.model_index
  cfg.fusion, cfg.fusion_index = check_fusion(root.fusion, ctx)
  ctx.fusion_index = cfg.fusion_index
  cfg.pipelines, cfg.pipeline_index = check_pipelines(root.pipelines, ctx)
  cfg.aliases = ctx.aliases
  M.check_operations(root, cfg, ctx)
  if is_null(root.default_model) then
    cfg.default_model = cfg.models[1].name
  else
    local d = check({ type = "string", nonempty = true }, root.default_model, "default_model", ctx)
    if not cfg.model_index[d] and not cfg.pipeline_index[d] and not cfg.aliases[d]
        and not M.direct_name(d, "default_model", ctx) then
      local names = sorted_keys(cfg.model_index)
      for _, n in ipairs(sorted_keys(cfg.pipeline_index)) do names[#names + 1] = n end
      local s = M.did_you_mean(d, names)
      fail("default_model", ('unknown model "%s" (%s)'):format(d,
        s and ('did you mean "' .. s .. '"?') or ("configured: " .. table.concat(names, ", "))))
    end
    cfg.default_model = d
  end
  return cfg
end

-- The mark of path, or of its nearest ancestor that has one.
local function locate(marks, path)
  if not marks or not path then return nil end
  local p = path
  while true do
    if marks[p] then return marks[p] end
    if p == "" then return nil end
    local parent = p:match("^(.*)%[%d+%]$") or p:match("^(.*)%.[^.%[%]]*$")
    p = parent or ""
  end
end

local function run(root, ctx, where)
  local ok, res = pcall(build, root, ctx)
  if ok then return res end
  if getmetatable(res) ~= ConfigError then error(res, 0) end
  local mark = res.at_key and ctx.marks and ctx.marks[res.path .. "!key"] or locate(ctx.marks, res.path)
  if mark then return nil, ("%s:%s: %s"):format(where, mark, res.text) end
  return nil, ("%s: %s"):format(where, res.text)
end

function M.load(path, overrides)
  if type(path) ~= "string" then error("config.load: path must be a string", 2) end
  local root, marks = core.yaml_load(path)
  if root == nil then return nil, marks end
  local file = paths.abs(path)
  return run(root, { file = file, dir = paths.dirname(file), marks = marks, overrides = overrides,
                     providers = {} }, path)
end

-- Validates YAML text (as if read from a file called name); used by tests and fuzzing.
function M.load_string(text, name, overrides)
  if type(text) ~= "string" then error("config.load_string: text must be a string", 2) end
  name = name or "<string>"
  local root, marks = core.yaml_parse(text, name)
  if root == nil then return nil, marks end
  local dir = paths.cwd()
  return run(root, { file = paths.abs(name, dir), dir = dir, marks = marks, overrides = overrides,
                     providers = {} }, name)
end

function M.from_table(t, opts)
  if type(t) ~= "table" then error("config.from_table: expected a table", 2) end
  opts = opts or {}
  local dir = paths.abs(opts.dir or paths.cwd())
  return run(t, { dir = dir, overrides = opts.overrides, providers = {} }, "config")
end

return M
