-- Configuration sections about models (config/load.lua assembles the whole; schema.lua is the
-- checker): provider files (found by name in paths.providers, loaded and checked once per
-- configuration), model entries with their provider's options and defaults, aliases and
-- fallbacks, per-model breaker/chars_per_token/health, and direct_models.
--   M.check_models(v, ctx) -> models, index  (sets ctx.aliases, ctx.alias_names)
--   M.check_direct_models(v, ctx) -> false | true | { [provider] = settings }
--   M.direct_name(name, path, ctx) -> bool (raises for an unknown provider)
--   M.check_breaker, M.check_chars_per_token, M.check_health: spec check functions; M.BREAKER
--   M.check_alias_options(v, ctx, cfg) -> { [alias] = { hedge?, shadow? } } (top-level aliases:)
local paths = require "rerank.config.paths"
local llm = require "rerank.llm"
local usage = require "rerank.engine.usage"
local S = require "rerank.config.schema"
local scoring = require "rerank.score"

local is_null, fail, fail_type, describe = S.is_null, S.fail, S.fail_type, S.describe
local key_path, idx_path, is_list, is_mapping = S.key_path, S.idx_path, S.is_list, S.is_mapping
local sorted_keys, check_keys, copy, check = S.sorted_keys, S.check_keys, S.copy, S.check

local M = {}
local resolve_score -- below

---------------------------------------------------------------------------
-- providers
---------------------------------------------------------------------------
local OPTION_TYPES = { number = true, integer = true, string = true, boolean = true, table = true,
                       duration = true, size = true }

local function available_providers(ctx)
  return paths.lua_names(ctx.paths.providers)
end

local function find_provider(name, ppath, ctx)
  if not name:find("/", 1, true) then
    for _, dir in ipairs(ctx.paths.providers) do
      local f = paths.join(dir, name .. ".lua")
      if paths.exists(f) then return f end
    end
  end
  local names = available_providers(ctx)
  local s = S.did_you_mean(name, names)
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
  local p, lerr = paths.load_table(file, "provider file", "@" .. paths.basename(file))
  if not p then fail(ppath, lerr) end
  local fn = function(k) return type(p[k]) == "function" end
  if not (fn("score") or (fn("build") and fn("parse")) or fn("plan")) then
    bad("must export score(model, req), or build(model, req) and parse(model, req, status, headers, body)")
  end
  local options = {}
  if p.options ~= nil then
    if type(p.options) ~= "table" then bad("declares options that are not a table") end
    for k, decl in pairs(p.options) do
      local o = type(decl) == "table" and decl or { type = decl }
      if type(k) ~= "string" or not (OPTION_TYPES[o.type] or type(o.check) == "function") then
        bad(("declares option %s with unknown type %s (use number, integer, string, boolean, table, duration or size)")
          :format(tostring(k), describe(o.type)))
      end
      options[k] = o
    end
  end
  if p.defaults ~= nil and type(p.defaults) ~= "table" then bad("declares defaults that are not a table") end
  -- the score layer (lua/rerank/score.lua) and instructions (lua/rerank/engine/router.lua)
  local k = p.score_kind
  if k ~= nil and type(k) ~= "function" and not scoring.KIND_SET[k] then
    bad(("declares score_kind %s (use one of: %s, or a function)"):format(describe(k), table.concat(scoring.KINDS, ", ")))
  end
  if p.calibrate ~= nil then
    local _, cerr = scoring.check_spec(p.calibrate, type(k) == "string" and k or nil)
    if cerr then bad("declares calibrate that is invalid: " .. cerr) end
  end
  local ins = p.instruction
  if ins ~= nil and type(ins) ~= "function" and ins ~= "field" and ins ~= "query" and ins ~= "prompt" then
    bad(("declares instruction %s (use \"field\", \"query\", \"prompt\" or a function)"):format(describe(ins)))
  end
  ctx.providers[file] = { p = p, options = options }
  return p, options
end

---------------------------------------------------------------------------
-- per-model routing and health keys (lua/rerank/engine/router.lua, engine/documents.lua, health.lua)
---------------------------------------------------------------------------
-- breaker: { failures = n (0 disables), cooldown = duration }
local BREAKER = { type = "record", fields = {
  { "failures", { type = "integer", min = 0, max = 1000000 } },
  { "cooldown", { type = "duration", positive = true } },
} }
M.BREAKER = BREAKER
function M.check_breaker(_, v, path, ctx) return check(BREAKER, v, path, ctx) end

-- chars_per_token: a positive number, or "whitespace" (count words)
function M.check_chars_per_token(_, v, path)
  if v == "whitespace" then return v end
  if type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge then
    fail_type(path, 'a positive number or "whitespace"', v)
  end
  return v
end

-- hedge: { after = duration | "pNN" (this worker's NNth percentile of the model's answer
-- times), to = a model name } (lua/rerank/engine/hedge.lua); `to` is checked in check_models
function M.check_hedge(_, v, path, ctx)
  if not is_mapping(v) then fail_type(path, "a mapping { after, to }", v) end
  check_keys(v, path, { after = true, to = true }, ctx)
  local h = {}
  if is_null(v.to) then fail(path, 'missing required key "to"') end
  h.to = check({ type = "string", nonempty = true }, v.to, key_path(path, "to"), ctx)
  local apath = key_path(path, "after")
  if is_null(v.after) then fail(path, 'missing required key "after"') end
  local q = type(v.after) == "string" and v.after:match("^p(%d%d?)$")
  if q and tonumber(q) >= 1 then
    h.quantile = tonumber(q) / 100
  elseif type(v.after) == "string" and v.after:match("^p") then
    fail(apath, ('"%s": a percentile is p1 ... p99'):format(v.after))
  else
    h.after = check({ type = "duration", positive = true }, v.after, apath, ctx)
  end
  return h
end

-- a hedge's `to`: a configured model that calls an upstream (index: cfg.model_index)
function M.check_hedge_target(h, hpath, index, ctx)
  local t = index[h.to]
  if not t then
    local names = sorted_keys(index)
    local s = S.did_you_mean(h.to, names)
    fail(key_path(hpath, "to"), ('unknown model "%s" (%s)'):format(h.to,
      s and ('did you mean "' .. s .. '"?') or ("configured: " .. table.concat(names, ", "))))
  end
  if ctx.runs_locally(t) then
    fail(key_path(hpath, "to"), ('model "%s" runs locally (provider "%s"): hedge to an upstream'):format(t.name, t.provider))
  end
end

-- shadow: { model, sample (0..1, default 1), max_inflight (default 4), k (overlap@k, default
-- 10), log (a JSON Lines file, config-relative) } (lua/rerank/engine/shadow.lua); model is checked
-- once pipelines are known (M.check_shadow_names)
local SHADOW = { type = "record", fields = {
  { "model", { type = "string", nonempty = true } },
  { "sample", { type = "number", min = 0, max = 1 } },
  { "max_inflight", { type = "integer", min = 1, max = 10000 } },
  { "k", { type = "integer", min = 1, max = 100000 } },
  { "log", { type = "string", nonempty = true } },
} }
function M.check_shadow(_, v, path, ctx)
  local sh = check(SHADOW, v, path, ctx)
  if not sh.model then fail(path, 'missing required key "model"') end
  sh.sample = sh.sample or 1
  sh.max_inflight = sh.max_inflight or 4
  sh.k = sh.k or 10
  if sh.log then sh.log = paths.abs(sh.log, ctx.dir) end
  return sh
end

-- every shadow names a model, alias or pipeline other than its owner
function M.check_shadow_names(cfg, fail_unknown)
  for kind, list in pairs({ models = cfg.models, pipelines = cfg.pipelines }) do
    for i, e in ipairs(list) do
      local sh = e.shadow
      if sh then
        local mpath = key_path(key_path(idx_path(kind, i), "shadow"), "model")
        if sh.model == e.name then fail(mpath, "a model cannot shadow itself") end
        if not cfg.model_index[sh.model] and not cfg.pipeline_index[sh.model] and not cfg.aliases[sh.model] then
          fail_unknown(sh.model, mpath)
        end
      end
    end
  end
  for _, a in ipairs(sorted_keys(cfg.alias_options)) do
    local sh = cfg.alias_options[a].shadow
    local mpath = key_path(key_path(key_path("aliases", a), "shadow"), "model")
    if sh and sh.model == a then fail(mpath, "an alias cannot shadow itself") end
    if sh and not cfg.model_index[sh.model] and not cfg.pipeline_index[sh.model] and not cfg.aliases[sh.model] then
      fail_unknown(sh.model, mpath)
    end
  end
end

-- aliases: { <alias> = { hedge, shadow } }: settings of an alias, a name the models list in
-- their `aliases` (its members); cfg.alias_options[alias] = { hedge?, shadow? }
function M.check_alias_options(v, ctx, cfg)
  if is_null(v) then return {} end
  if not is_mapping(v) then fail_type("aliases", "a mapping of alias names to { hedge, shadow }", v) end
  local out = {}
  for _, a in ipairs(sorted_keys(v)) do
    local path, e = key_path("aliases", a), v[a]
    if not cfg.aliases[a] then
      local names = sorted_keys(cfg.aliases)
      local s = S.did_you_mean(a, names)
      S.raise(path, ('%s: unknown alias "%s" (%s)'):format(path, a,
        cfg.model_index[a] and "a model: set hedge or shadow on its entry" or s and ('did you mean "' .. s .. '"?')
        or (#names > 0 and ("configured: " .. table.concat(names, ", ")) or "no model lists it in its aliases")), true)
    end
    if not is_mapping(e) then fail_type(path, "a mapping { hedge, shadow }", e) end
    check_keys(e, path, { hedge = true, shadow = true }, ctx)
    local o = {}
    if not is_null(e.hedge) then
      o.hedge = M.check_hedge(nil, e.hedge, key_path(path, "hedge"), ctx)
      M.check_hedge_target(o.hedge, key_path(path, "hedge"), cfg.model_index, ctx)
    end
    if not is_null(e.shadow) then o.shadow = M.check_shadow(nil, e.shadow, key_path(path, "shadow"), ctx) end
    out[a] = o
  end
  return out
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

---------------------------------------------------------------------------
-- the score layer and instructions
---------------------------------------------------------------------------
-- score: { kind: probability|logit|bm25|rank|fused|unknown, calibrate: <spec> }; the
-- calibration is checked against the kind once the provider's default kind is known
function M.check_score(_, v, path, ctx)
  if not is_mapping(v) then fail_type(path, "a mapping with kind and/or calibrate", v) end
  check_keys(v, path, { kind = true, calibrate = true }, ctx)
  local out = {}
  if not is_null(v.kind) then
    if not scoring.KIND_SET[v.kind] then
      fail(key_path(path, "kind"), ("must be one of: %s (got %s)"):format(table.concat(scoring.KINDS, ", "), describe(v.kind)))
    end
    out.kind = v.kind
  end
  if not is_null(v.calibrate) then
    local c = v.calibrate
    if type(c) == "table" and not is_mapping(c) then fail_type(key_path(path, "calibrate"), "none, sigmoid or a mapping", c) end
    local _, err = scoring.check_spec(c)
    if err then fail(key_path(path, "calibrate"), err) end
    out.calibrate = c
  end
  return out
end

-- The model's kind (config, else the provider's declaration) and calibration (config, where
-- "none" switches a provider default off, else the provider's `calibrate`).
resolve_score = function(m, p, v, path)
  local cfg = m.score or {}
  local kind = cfg.kind
  if kind == nil then
    local k = p.score_kind
    if type(k) == "function" then
      local ok, r = pcall(k, m, {})
      k = ok and r or nil
    end
    if type(k) == "string" and scoring.KIND_SET[k] then kind = k end
  end
  local spec, from_config = p.calibrate, false
  if cfg.calibrate ~= nil then spec, from_config = cfg.calibrate, true end
  local cal, err = scoring.check_spec(spec, kind)
  if err then
    local at = from_config and key_path(key_path(path, "score"), "calibrate") or key_path(path, "provider")
    if v.score ~= nil and not from_config then at = key_path(path, "score") end
    fail(at, err)
  end
  m.score = (cfg.kind or cal) and { kind = cfg.kind, calibrate = cal } or nil
end

-- How provider p takes an instruction for model m: "field" | "query" | "prompt" | nil
function M.instruction_mode(p, m)
  local ins = type(p) == "table" and p.instruction
  if type(ins) == "function" then
    local ok, r = pcall(ins, m)
    ins = ok and r or nil
  end
  if ins == "field" or ins == "query" or ins == "prompt" then return ins end
  if type(p) == "table" and p.templates then return "prompt" end
  return nil
end

---------------------------------------------------------------------------
-- models
---------------------------------------------------------------------------
-- a URL for messages: the user:password part (anything before an @ in the authority) masked
local function redact_url(u)
  return (u:gsub("^([^/]*//?)[^/@]*@", "%1***@"))
end
M.redact_url = redact_url

local function check_base_url(_, v, path)
  if type(v) ~= "string" then fail_type(path, "a string", v) end
  if not v:match("^[hH][tT][tT][pP][sS]?://[^/]") then
    fail(path, ("invalid URL %s (expected http:// or https://...)"):format(describe(redact_url(v))))
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
  -- the score layer: { kind = ..., calibrate = ... } (lua/rerank/score.lua)
  { "score", { check = function(...) return M.check_score(...) end } },
  { "price", { type = "map", values = { type = "number", min = 0 } } },
  { "extra_body", { type = "mapping" } },
  -- routing (lua/rerank/engine/router.lua) and documents (lua/rerank/engine/documents.lua)
  { "aliases", { type = "list", single = true, items = { type = "string", nonempty = true } } },
  { "weight", { type = "number", min = 0 } },
  { "breaker", { check = function(...) return M.check_breaker(...) end } },
  { "chars_per_token", { check = function(...) return M.check_chars_per_token(...) end } },
  -- semantic health (lua/rerank/daemon/health.lua): false, or { query, relevant, irrelevant }
  { "health", { check = function(...) return M.check_health(...) end } },
  -- hedged requests (lua/rerank/engine/hedge.lua): { after = duration | "p95", to = model }
  { "hedge", { check = function(...) return M.check_hedge(...) end } },
  -- shadow traffic (lua/rerank/engine/shadow.lua)
  { "shadow", { check = function(...) return M.check_shadow(...) end } },
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
        -- a provider may check its own option (check = function(spec, v, path, ctx), schema.lua)
        local spec = type(o.check) == "function" and { check = o.check }
          or { type = o.type, min = o.min, max = o.max, enum = o.enum }
        m.options[k] = check(spec, v[k], key_path(path, k), ctx)
      elseif o.default ~= nil then
        m.options[k] = copy(o.default)
      elseif defaults[k] ~= nil then
        m.options[k] = copy(defaults[k])
      end
    end
  end
  -- the provider's own check of the entry (what build needs: a project id, ...)
  if type(p.check) == "function" then
    local ok, err = pcall(p.check, m)
    if not ok or err ~= nil then fail(path, tostring(err)) end
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
        local s = S.did_you_mean(m.template, names)
        fail(tpath, ('unknown template "%s" (%s)'):format(m.template,
          s and ('did you mean "' .. s .. '"?') or ("available: " .. table.concat(names, ", "))))
      end
      local _, terr = llm.load_template(tfile)
      if terr then fail(tpath, terr) end
      m.template_file = tfile
    end
  end
  local price_ok, bad_key, suggestion = usage.check_price(m.price, S.did_you_mean)
  if not price_ok then
    fail(key_path(key_path(path, "price"), bad_key), ("unknown price key (%s)"):format(suggestion
      and ('did you mean "' .. suggestion .. '"?') or ("expected one of: " .. table.concat(usage.PRICE_KEYS, ", "))))
  end
  resolve_score(m, p, v, path)
  if m.instruction ~= nil and not M.instruction_mode(p, m) then
    fail(key_path(path, "instruction"), ('provider "%s" cannot take an instruction (model "%s"): it has no '
      .. 'instruction field, query format or prompt for one'):format(m.provider, m.name))
  end
  m.headers = m.headers or {}
  m.fallbacks = m.fallbacks or {}
  m.price = m.price or {}
  m.extra_body = m.extra_body or {}
  m.retries = m.retries or (ctx.routing and ctx.routing.retries) or 0
  m.timeout = m.timeout or ctx.server.timeout
  return m
end

function M.check_models(v, ctx)
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
        local s = S.did_you_mean(f, names)
        fail(fpath, ('unknown model "%s" (%s)'):format(f,
          s and ('did you mean "' .. s .. '"?') or ("configured: " .. table.concat(names, ", "))))
      end
    end
  end
  -- hedge targets are other configured models; both sides call an upstream over HTTP
  ctx.runs_locally = function(m)
    local lp = ctx.providers[m.provider_file]
    return lp and type(lp.p.score) == "function"
  end
  for i, m in ipairs(models) do
    if m.hedge then
      local hpath = key_path(idx_path("models", i), "hedge")
      if ctx.runs_locally(m) then
        fail(hpath, ('model "%s" runs locally (provider "%s"): nothing to hedge'):format(m.name, m.provider))
      end
      if m.hedge.to == m.name then fail(key_path(hpath, "to"), "a model cannot hedge to itself") end
      M.check_hedge_target(m.hedge, hpath, index, ctx)
    end
  end
  return models, index
end

---------------------------------------------------------------------------
-- direct_models (provider/model names without a model entry)
---------------------------------------------------------------------------
-- keys a direct_models.<provider> entry may set (what a model entry sets, minus identity)
local DIRECT_KEYS = { "base_url", "path", "api_key", "headers", "timeout", "retries", "fallbacks", "max_documents",
                      "concurrency", "price", "extra_body", "breaker", "chars_per_token" }

-- direct_models: true | false | { <provider> = { base_url, timeout, price, ... } } (enabled)
function M.check_direct_models(v, ctx)
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
    local ok, bad_key, suggestion = usage.check_price(o.price, S.did_you_mean)
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

return M
