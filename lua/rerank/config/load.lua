-- Configuration: YAML file or Lua table -> validated, normalised cfg (DESIGN §5).
--   config.load(path, overrides)  -> cfg | nil, "file:line:col: path: message"
--   config.from_table(t, opts)    -> cfg | nil, "config: path: message"
--                                    opts.dir = base for relative paths (default cwd)
--   overrides (both) = { port = n, workers = n } from the command line; serve = true when the
--   configuration will answer HTTP (the daemon, nginx): then it must not be empty and must
--   choose its authentication (server.api_keys or server.auth: none).
-- Helpers others reuse: config.duration(v), config.size(v) -> number | nil;
-- config.did_you_mean(word, candidates) -> candidate | nil.
--
-- The normalised shape (other modules rely on it):
--   cfg.file, cfg.dir; cfg.source, cfg.marks (config.load: the path as given, path -> "line:col")
--   cfg.server = { listen ("host:port"), host, port, workers (0 = one per core), max_body (bytes),
--                  timeout, keepalive, drain_timeout (seconds), max_documents, max_fuse_lists,
--                  max_fuse_items, max_direct_models, max_model_labels, gc_pause, gc_idle_step,
--                  api_keys = { non-empty strings }, auth? ("keys" | "none"), log_level }
--   cfg.auth = { keys = { { name, key } }, names = { [name] = true }, open_paths = { "/health",
--                "/metrics" }, mode? }  from server.api_keys (strings or {name, key}),
--                server.open_paths and server.auth
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
--   cfg.documents = { text_field?, chars_per_token? (number | "whitespace"), chunk_tokens?,
--                     max_image_bytes? (an image document's image string, api.check_image) }
--   cfg.direct_models = false | true | { [provider] = { base_url, timeout, price, ... } }
--   cfg.aliases = { [alias] = { { model = model name, weight = n }, ... } } from the models'
--   `aliases` (several models with one alias: a group); models also take weight, breaker =
--   { failures, cooldown }, chars_per_token; fallbacks and default_model may name aliases
--   (and provider/model names under direct_models).
--   cfg.alias_options = { [alias] = { hedge?, shadow? } } from the top-level `aliases:` mapping
-- A provider's `defaults` fill model keys the config leaves unset (base_url, path, ...).
-- Top-level keys starting with "x-" are ignored: a place for YAML anchors.
-- The sections live in config/models.lua (providers, models, direct_models) and
-- config/ops.lua (auth, limits, cache, redis); schema.lua is the checker they share.
local core = require "rerank.core"
local paths = require "rerank.config.paths"
local S = require "rerank.config.schema"
local models = require "rerank.config.models"
local ops = require "rerank.config.ops"

local is_null, raise, fail, fail_type = S.is_null, S.raise, S.fail, S.fail_type
local describe, key_path, idx_path, is_list = S.describe, S.key_path, S.idx_path, S.is_list
local is_mapping, sorted_keys, check_keys, copy = S.is_mapping, S.sorted_keys, S.check_keys, S.copy
local is_integer, check = S.is_integer, S.check

local M = {}

-- the API others use (see the top): the checker's helpers and the sections' check functions
M.did_you_mean, M.duration, M.size = S.did_you_mean, S.duration, S.size
M.check_breaker, M.check_chars_per_token, M.check_health = models.check_breaker, models.check_chars_per_token,
  models.check_health
M.direct_name = models.direct_name
M.MAX_API_KEY_BYTES = ops.MAX_API_KEY_BYTES
M.check_api_key, M.check_open_path, M.normalize_api_keys = ops.check_api_key, ops.check_open_path,
  ops.normalize_api_keys
M.check_auth_mode, M.check_serving = ops.check_auth_mode, ops.check_serving
M.check_operations = ops.check_operations

-- advice for unknown keys people are known to try (schema.check_keys reads ctx.key_hints)
local KEY_HINTS = {
  ["server.bind"] = 'use listen: "host:port"',
  ["server.address"] = 'use listen: "host:port"',
}

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
  -- ranges: a request body up to 1g; no timeout of 0 (that would be none) or above an hour
  { "max_body", { type = "size", positive = true, max = 1024 ^ 3, default = 8 * 1024 * 1024 } },
  { "timeout", { type = "duration", positive = true, min = 0.001, max = 3600, default = 30 } },
  { "keepalive", { type = "duration", positive = true, min = 0.001, max = 3600, default = 75 } },
  { "header_timeout", { type = "duration", positive = true, min = 0.001, max = 3600, default = 10 } },
  { "body_min_rate", { type = "size", max = 1024 ^ 3, default = 1024 } },
  { "drain_timeout", { type = "duration", max = 3600, default = 30 } },
  { "max_documents", { type = "integer", min = 1, max = 1000000, default = 10000 } },
  -- "none": serve without API keys, on purpose; "keys" (the default when api_keys is set):
  -- at least one non-empty key. A daemon needs one or the other (check_serving).
  { "auth", { type = "string", enum = { "keys", "none" } } },
  -- bounds on what one request may cost or leave behind (README "Limits")
  { "max_fuse_lists", { type = "integer", min = 1, max = 1000000, default = 1000 } },
  { "max_fuse_items", { type = "integer", min = 1, max = 100000000, default = 100000 } },
  { "max_direct_models", { type = "integer", min = 1, max = 1000000, default = 256 } },
  { "max_model_labels", { type = "integer", min = 0, max = 100000, default = 100 } },
  -- the worker's Lua collector: a new cycle starts when the heap reaches gc_pause % of what the
  -- last one left (LuaJIT's own default is 200; bench/RESULTS.md "GC pause" for the trade-off)
  { "gc_pause", { type = "integer", min = 100, max = 1000, default = 150 } },
  -- KB of collector work each time the worker has no request in flight (0: none), so that
  -- the collector's cost falls between requests; done in slices that yield to waiting
  -- connections, so the default lets the cycle in progress finish (bench/RESULTS.md, issue
  -- 13's third and ninth passes)
  { "gc_idle_step", { type = "integer", min = 0, max = 65536, default = 65536 } },
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
  -- cfg.auth (lua/rerank/daemon/auth.lua) gets the named keys and open paths; server.api_keys stays
  -- the list of key strings
  local entries, names = M.normalize_api_keys(s.api_keys)
  M.check_auth_mode(s, entries)
  ctx.auth = { keys = entries, names = names, open_paths = s.open_paths, mode = s.auth }
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
  local builtin = paths.join(root, "lua/rerank/llm/templates")
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
    check_keys(p, path, { name = true, stages = true, shadow = true }, ctx)
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
    local bad, why = require("rerank.engine.pipeline").check_order(stages)
    if bad then fail(key_path(idx_path(spath, bad), "fuse"), why) end
    local entry = { name = name, stages = stages }
    if not is_null(p.shadow) then entry.shadow = models.check_shadow(nil, p.shadow, key_path(path, "shadow"), ctx) end
    list[i], index[name], where[name] = entry, entry, path
  end
  return list, index
end

---------------------------------------------------------------------------
-- routing, documents (lua/rerank/engine/router.lua, engine/documents.lua)
---------------------------------------------------------------------------
local ROUTING = { type = "record", fields = {
  { "retries", { type = "integer", min = 0, max = 100 } },
  { "backoff", { type = "duration", positive = true } },
  { "max_backoff", { type = "duration", positive = true } },
  { "jitter", { type = "number", min = 0, max = 1 } },
  { "max_retry_after", { type = "duration" } },
  { "breaker", models.BREAKER },
} }

local DOCUMENTS = { type = "record", fields = {
  { "text_field", { type = "string", nonempty = true } },
  { "chars_per_token", { check = M.check_chars_per_token } },
  { "chunk_tokens", { type = "integer", min = 1 } },
  { "max_image_bytes", { type = "size", positive = true } },
} }

---------------------------------------------------------------------------
-- the whole configuration
---------------------------------------------------------------------------
local TOP = { server = true, paths = true, default_model = true, models = true, pipelines = true, log = true,
              fusion = true, routing = true, documents = true, direct_models = true,
              limits = true, cache = true, redis = true, templates = true, aliases = true }

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

-- log: { level, access, error, format }: "stderr", "off" (access only) or a file path (config-relative)
local LOG = { type = "record", fields = {
  { "level", { type = "string", enum = { "debug", "info", "warn", "error" } } },
  { "access", { type = "string", nonempty = true, default = "stderr" } },
  { "error", { type = "string", nonempty = true, default = "stderr" } },
  { "format", { type = "string", enum = { "text", "json" }, default = "text" } }, -- the error log's
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
  local serving = type(ctx.overrides) == "table" and ctx.overrides.serve
  if serving and (is_null(root) or (is_mapping(root) and next(root) == nil)) then
    raise("", "the configuration is empty (a truncated or comment-only file?); rerankd needs at least "
      .. "server.api_keys or server.auth: none, and models")
  end
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
  cfg.direct_models = models.check_direct_models(root.direct_models, ctx)
  ctx.direct_models = cfg.direct_models
  cfg.models, cfg.model_index = models.check_models(root.models, ctx)
  ctx.model_index = cfg.model_index
  cfg.fusion, cfg.fusion_index = check_fusion(root.fusion, ctx)
  ctx.fusion_index = cfg.fusion_index
  cfg.pipelines, cfg.pipeline_index = check_pipelines(root.pipelines, ctx)
  cfg.aliases = ctx.aliases
  cfg.alias_options = models.check_alias_options(root.aliases, ctx, cfg) -- an alias's hedge, shadow
  models.check_shadow_names(cfg, function(n, path)
    local names = sorted_keys(cfg.model_index)
    for _, x in ipairs(sorted_keys(cfg.pipeline_index)) do names[#names + 1] = x end
    local s = M.did_you_mean(n, names)
    fail(path, ('unknown model "%s" (%s)'):format(n,
      s and ('did you mean "' .. s .. '"?') or ("configured: " .. table.concat(names, ", "))))
  end)
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
  if serving then M.check_serving(cfg) end
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
  ctx.key_hints = KEY_HINTS
  local ok, res = pcall(build, root, ctx)
  if ok then return res end
  if not S.is_error(res) then error(res, 0) end
  local mark = res.at_key and ctx.marks and ctx.marks[res.path .. "!key"] or locate(ctx.marks, res.path)
  if mark then return nil, ("%s:%s: %s"):format(where, mark, res.text) end
  return nil, ("%s: %s"):format(where, res.text)
end

function M.load(path, overrides)
  if type(path) ~= "string" then error("config.load: path must be a string", 2) end
  local root, marks = core.yaml_load(path)
  if root == nil then return nil, marks end
  local file = paths.abs(path)
  local cfg, err = run(root, { file = file, dir = paths.dirname(file), marks = marks, overrides = overrides,
                               providers = {} }, path)
  if cfg then cfg.source, cfg.marks = path, marks end -- for later messages (lua/rerank/config/selftest.lua)
  return cfg, err
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

