-- Routing (DESIGN §3): which deployment answers a model name, and what happens when it fails.
--
--   local r = router.new(cfg, {
--     score = function(model, req, report) -> scores, usage, degraded, out | nil, err   (required:
--             one call; Instance:score through cache.wrap; report is run's, passed through)
--     providers = { [model name] = provider table },  (shared: direct models are added to it)
--     sleep = function(seconds),      non-blocking in the daemon (rerank.core.fetch.sleep)
--     now = function() -> seconds,    random = function() -> [0, 1),
--     load_provider = function(path) -> provider | nil, err,  getenv = os.getenv,
--   })
--   r:run(name, req, report) -> scores, usage, degraded, info | nil, err
--       report: the caller's table each call fills in (upstream_status, cache), or nil
--       scores: one per req.documents entry (1-based), usage from the upstream;
--       info = { model = the name of the deployment that answered, entry = its model table,
--                out = the provider's raw output, provider, attempts, fallback = bool,
--                cost (USD | nil without prices), search_units, tokens, calls, documents }
--       Errors after the chain was walked carry fallbacks_tried = true.
--   r:resolve(name) -> { name, members = { { model = entry, weight = w }, ... } } | nil, err
--   r.stats[name] = { attempts, failures, retries, served, fallbacks, cost }, r.breakers and
--   r:breaker_state(name): read by lua/rerank/daemon/metrics.lua (watch_router) for GET /metrics
--
-- A name resolves, in this order, to: an alias (cfg.aliases: one model or a weighted group),
-- a configured model, or, with direct_models, "provider/upstream-model" (the provider's
-- defaults, the key from its env_key). The chain tried is the group's deployments, then the
-- request's `fallbacks` when it gives some, else the models' own `fallbacks`; each fallback
-- name resolves the same way. Within a group the least-in-flight deployment goes first, ties
-- drawn at random by weight.
-- Each deployment is tried 1 + retries times on retryable failures (transport errors,
-- timeouts, HTTP 408/409/425/429/5xx, unparseable answers) with jittered exponential backoff,
-- or exactly the upstream's Retry-After (retry-after-ms too) when it sends one; a wait longer
-- than routing.max_retry_after or than the time left moves on to the next deployment instead.
-- The request's deadline (x-rerankd-timeout-ms or body timeout, capped by server.timeout)
-- bounds every attempt's timeout and every wait. A circuit breaker per deployment opens after
-- breaker.failures consecutive retryable failures, skips the deployment for breaker.cooldown,
-- then lets one request through as a probe (half-open): success closes it, failure re-opens.
-- State (in-flight counts, breakers, metrics) is per worker.
local docs = require "rerank.engine.documents"
local accounting = require "rerank.engine.usage"
local paths = require "rerank.config.paths"
local config_models = require "rerank.config.models"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local min, max, floor, ceil, huge = math.min, math.max, math.floor, math.ceil, math.huge
local concat, sort = table.concat, table.sort

local M = {}

M.DEFAULTS = {
  backoff = 0.1,          -- first retry delay (seconds); doubles each retry
  max_backoff = 5,        -- cap of the exponential delay
  jitter = 0.2,           -- +-20% on computed delays (not on Retry-After)
  max_retry_after = 30,   -- longer Retry-After: fall back instead of waiting
  breaker = { failures = 5, cooldown = 10 },
}

local errors = require "rerank.engine.errors"
local fail = errors.fail

---------------------------------------------------------------------------------------------
-- defaults for the injected functions

local function default_now()
  local ok, core = pcall(require, "rerank.core")
  if ok and core.now_us then return function() return core.now_us() / 1e6 end end
  return os.clock
end

-- Without a transport sleep: yield to the loop (the daemon resumes a bare yield on the next
-- turn) until the time passes; outside a coroutine, the shell's sleep.
local function yield_sleep(now)
  return function(seconds)
    if seconds <= 0 then return end
    local t_end = now() + seconds
    if coroutine.running() then
      while now() < t_end do coroutine.yield() end
    else
      os.execute(("sleep %.3f"):format(seconds))
    end
  end
end

---------------------------------------------------------------------------------------------
-- Retry-After

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8, sep = 9, oct = 10,
                 nov = 11, dec = 12 }

-- seconds to wait from a Retry-After value (delta-seconds or an HTTP-date), nil if unusable
function M.retry_after(v, now_epoch)
  if v == nil then return nil end
  if type(v) == "number" then return v >= 0 and v or nil end
  v = tostring(v)
  local n = tonumber(v:match("^%s*([%d%.]+)%s*$"))
  if n then return n end
  local d, mon, y, hh, mm, ss = v:match("(%d+)[%s%-]+(%a+)[%s%-]+(%d+)%s+(%d+):(%d+):(%d+)")
  mon = mon and MONTHS[mon:lower():sub(1, 3)]
  if not mon then return nil end
  y = tonumber(y)
  if y < 100 then y = y + 2000 end
  local t = { year = y, month = mon, day = tonumber(d), hour = tonumber(hh), min = tonumber(mm),
              sec = tonumber(ss), isdst = false }
  local local_epoch = os.time(t)
  if not local_epoch then return nil end
  local now_s = now_epoch or os.time()
  local offset = os.time(os.date("*t", now_s)) - os.time(os.date("!*t", now_s))
  return max(0, local_epoch + offset - now_s)
end

-- the wait an error asks for: retry-after-ms, then retry-after
local function error_wait(err)
  local ms = tonumber(err.retry_after_ms)
  if ms then return ms / 1000 end
  return M.retry_after(err.retry_after)
end
M.error_wait = error_wait

-- jittered exponential backoff for retry number n (1-based)
function M.backoff(n, settings, random)
  local base = settings.backoff or M.DEFAULTS.backoff
  local cap = settings.max_backoff or M.DEFAULTS.max_backoff
  local jitter = settings.jitter or M.DEFAULTS.jitter
  local d = min(cap, base * 2 ^ (n - 1))
  return d * (1 + jitter * (2 * (random or math.random)() - 1))
end

-- What a failure means: retryable (try the same deployment again), and whether it is the
-- upstream's failure (count it for the breaker, fall back). Local request errors (4xx without
-- an upstream status) are neither: the request itself is wrong, every deployment would refuse it.
function M.classify(err)
  if type(err) ~= "table" then return false, true end
  local us = tonumber(err.upstream_status)
  if us then
    local retry = us == 408 or us == 409 or us == 425 or us == 429 or us >= 500
    return retry, true, retry
  end
  local st = tonumber(err.status) or 500
  if err.type == "timeout_error" or st == 502 or st == 503 or st == 504 then return true, true, true end
  if st >= 500 then return false, true, false end -- a provider bug: fall back, do not retry
  return false, false, false
end

---------------------------------------------------------------------------------------------

local R = {}
R.__index = R

function M.new(cfg, opts)
  opts = opts or {}
  if type(opts.score) ~= "function" then error("router.new: opts.score must be a function", 2) end
  local now = opts.now or default_now()
  local routing = {}
  for k, v in pairs(M.DEFAULTS) do routing[k] = v end
  for k, v in pairs(cfg.routing or {}) do routing[k] = v end
  local self = setmetatable({
    cfg = cfg,
    routing = routing,
    score = opts.score,
    providers = opts.providers or {},
    now = now,
    sleep = opts.sleep or yield_sleep(now),
    random = opts.random or math.random,
    load_provider = opts.load_provider,
    getenv = opts.getenv or os.getenv,
    inflight = {},       -- name -> { [token] = expiry }
    breakers = {},       -- name -> { failures, open_until, probe_until }
    direct_cache = {},   -- "provider/model" -> model entry (an LRU of cfg.server.max_direct_models)
    direct_lru = { n = 0, tick = 0, at = {} }, -- direct name -> last use (see R:direct)
    direct_providers = {}, -- provider file -> its table, shared by that provider's direct names
    direct_stats = 0,    -- direct names with their own stats entry (at most max_model_labels)
    stats = {},          -- name -> { attempts, failures, retries, served, fallbacks, cost }
  }, R)
  self.doc_settings = {}
  return self
end

-- document settings (chars_per_token, chunk_tokens) for a model: its own over cfg.documents
function R:settings(model)
  local s = self.doc_settings[model.name]
  if not s then
    s = docs.settings(self.cfg.documents, model)
    self.doc_settings[model.name] = s
  end
  return s
end

M.MAX_DIRECT_MODELS = 256 -- default of server.max_direct_models
M.MAX_MODEL_LABELS = 100  -- default of server.max_model_labels

-- A deployment's counters. A direct name (provider/model, any string a client sends) gets
-- its own entry while fewer than server.max_model_labels have one; the rest share "other",
-- so the router's state and the metrics read from it stay bounded.
local function stat(self, name, direct)
  local s = self.stats[name]
  if not s and direct then
    local server = self.cfg.server or {}
    if self.direct_stats >= (server.max_model_labels or M.MAX_MODEL_LABELS) then
      name = "other"
      s = self.stats.other
    else
      self.direct_stats = self.direct_stats + 1
    end
  end
  if not s then
    s = { attempts = 0, failures = 0, retries = 0, served = 0, fallbacks = 0, cost = 0 }
    self.stats[name] = s
  end
  return s
end

---------------------------------------------------------------------------------------------
-- resolution

local function is_local_url(u)
  if type(u) ~= "string" then return false end
  local host = u:match("^%a+://%[?([^/:%]]+)")
  return host == "127.0.0.1" or host == "localhost" or host == "::1" or host == "0.0.0.0"
end

-- A provider file is a chunk returning a table of pure functions (DESIGN §4): the table |
-- nil, Lua's own load error or "<path>: a provider must return a table".
local function load_file(path)
  return paths.load_table(path, { type = "%s: a provider must return a table" })
end
M.load_provider = load_file

-- The direct-name cache is an LRU: a name used again moves to the back; above
-- server.max_direct_models the least recently used name is dropped with its per-name state
-- (its breaker and in-flight count; its counters stay, see stat). Clients choose these names,
-- so nothing kept per name may grow without bound.
local function lru_touch(self, name)
  local lru = self.direct_lru
  lru.tick = lru.tick + 1
  lru.at[name] = lru.tick
end

local function lru_evict(self)
  local lru = self.direct_lru
  local server = self.cfg.server or {}
  local cap = server.max_direct_models or M.MAX_DIRECT_MODELS
  if lru.n <= cap then return end
  -- drop the oldest half of what is over the cap's 7/8 in one pass (amortised O(1) per name)
  local names = {}
  for n, t in pairs(lru.at) do names[#names + 1] = { n, t } end
  sort(names, function(a, b) return a[2] < b[2] end)
  local keep = cap - floor(cap / 8)
  for i = 1, #names - keep do
    local n = names[i][1]
    lru.at[n] = nil
    self.direct_cache[n], self.providers[n], self.doc_settings[n] = nil, nil, nil
    self.breakers[n], self.inflight[n] = nil, nil
  end
  lru.n = min(#names, keep)
end

-- "provider/upstream-model" under direct_models
function R:direct(name)
  local cached = self.direct_cache[name]
  if cached then
    lru_touch(self, name)
    return cached
  end
  local dm = self.cfg.direct_models
  if not dm then return nil end
  local pname, upstream_model = name:match("^([%w_%-]+)/(.+)$")
  if not pname then return nil end
  local dirs = self.cfg.paths and self.cfg.paths.providers or {}
  local file
  for _, dir in ipairs(dirs) do
    local f = dir .. "/" .. pname .. ".lua"
    if paths.exists(f) then file = f; break end
  end
  if not file then
    local names = paths.lua_names(dirs)
    return fail(404, ('model "%s": unknown provider "%s" (direct_models; available: %s)')
      :format(name, pname, concat(names, ", ")), "model")
  end
  local p = self.direct_providers[file]
  if not p then
    local perr
    p, perr = (self.load_provider or load_file)(file)
    if not p then
      return fail(500, ('model "%s": provider "%s" failed to load: %s'):format(name, pname, tostring(perr)))
    end
    self.direct_providers[file] = p
  end
  if type(p.build) ~= "function" and type(p.score) ~= "function" and type(p.plan) ~= "function" then
    return fail(404, ('model "%s": "%s" is not a provider'):format(name, pname), "model")
  end
  local over = type(dm) == "table" and type(dm[pname]) == "table" and dm[pname] or {}
  local defaults = type(p.defaults) == "table" and p.defaults or {}
  local base_url = over.base_url or defaults.base_url
  local key = over.api_key
  if (key == nil or key == "") and type(p.env_key) == "string" then key = self.getenv(p.env_key) end
  if key == "" then key = nil end
  if not key and type(p.env_key) == "string" and not is_local_url(base_url) then
    return fail(400, ('model "%s": provider "%s" needs an API key: set %s in rerankd\'s environment')
      :format(name, pname, p.env_key), "model")
  end
  local server = self.cfg.server or {}
  local options = {}
  for k, decl in pairs(type(p.options) == "table" and p.options or {}) do
    if type(decl) == "table" and decl.default ~= nil then options[k] = decl.default
    elseif defaults[k] ~= nil then options[k] = defaults[k] end
  end
  local m = {
    name = name, provider = pname, provider_file = file, model = upstream_model, direct = true,
    base_url = base_url, path = over.path or defaults.path, api_key = key,
    headers = over.headers or {}, timeout = over.timeout or server.timeout or 30,
    retries = over.retries or self.routing.retries or 0, fallbacks = over.fallbacks or {},
    max_documents = over.max_documents, concurrency = over.concurrency, price = over.price or {},
    extra_body = over.extra_body or {}, options = options, breaker = over.breaker,
  }
  if type(p.check) == "function" then -- what build needs (a project id, ...)
    local ok, cerr = pcall(p.check, m)
    if not ok or cerr ~= nil then return fail(400, ('model "%s": %s'):format(name, tostring(cerr)), "model") end
  end
  self.providers[name] = p
  self.direct_cache[name] = m
  local lru = self.direct_lru
  lru.n = lru.n + 1
  lru_touch(self, name)
  lru_evict(self)
  return m
end

function R:resolve(name)
  if type(name) ~= "string" or name == "" then
    return fail(400, "model must be a non-empty string", "model")
  end
  local index = self.cfg.model_index or {}
  local alias = self.cfg.aliases and self.cfg.aliases[name]
  if alias then
    local members = {}
    for _, a in ipairs(alias) do
      local target = a.model
      local m = index[target]
      if not m then
        local dm, derr = self:direct(target)
        if not dm then
          return nil, derr or { status = 500, type = "internal_error",
                                message = ('alias "%s": unknown model "%s"'):format(name, target) }
        end
        m = dm
      end
      members[#members + 1] = { model = m, weight = a.weight or m.weight or 1 }
    end
    local opts = self.cfg.alias_options and self.cfg.alias_options[name]
    return { name = name, members = members, hedge = opts and opts.hedge }
  end
  local m = index[name]
  if m then return { name = name, members = { { model = m, weight = m.weight or 1 } } } end
  local dm, derr = self:direct(name)
  if dm then return { name = name, members = { { model = dm, weight = 1 } } } end
  if derr then return nil, derr end
  local hint = ""
  if name:find("/", 1, true) and not self.cfg.direct_models then
    hint = "; provider/model names need direct_models: true"
  end
  return fail(404, ("model %q is not configured (see GET /v1/models)%s"):format(name, hint), "model")
end

---------------------------------------------------------------------------------------------
-- in-flight counts and breakers

local function inflight_count(self, name, now)
  local t = self.inflight[name]
  if not t then return 0 end
  local n = 0
  for token, expiry in pairs(t) do
    if expiry < now then t[token] = nil else n = n + 1 end
  end
  return n
end

local function inflight_add(self, name, expiry)
  local t = self.inflight[name]
  if not t then t = {}; self.inflight[name] = t end
  local token = {}
  t[token] = expiry
  return token
end

local function inflight_done(self, name, token)
  local t = self.inflight[name]
  if t then t[token] = nil end
end
-- for hedged calls (lua/rerank/engine/hedge.lua): a hedge counts as a call in flight to its target
R.inflight_count, R.inflight_add, R.inflight_done = inflight_count, inflight_add, inflight_done

function R:breaker_settings(model)
  local b = model.breaker or self.routing.breaker or M.DEFAULTS.breaker
  return tonumber(b.failures) or 0, tonumber(b.cooldown) or M.DEFAULTS.breaker.cooldown
end

-- true (closed), "probe" (half-open: this request probes), or false, seconds until it may probe
function R:breaker_allows(model, now)
  local st = self.breakers[model.name]
  if not st or not st.open_until then return true end
  if now < st.open_until then return false, st.open_until - now end
  if st.probe_until and now < st.probe_until then return false, st.probe_until - now end
  st.probe_until = now + (model.timeout or 30) + 1
  return "probe"
end

function R:breaker_result(model, ok, now)
  local threshold, cooldown = self:breaker_settings(model)
  if threshold <= 0 then return end
  local st = self.breakers[model.name]
  if ok then
    if st then self.breakers[model.name] = nil end
    return
  end
  if not st then st = { failures = 0 }; self.breakers[model.name] = st end
  st.failures = st.failures + 1
  st.probe_until = nil
  if st.open_until or st.failures >= threshold then
    st.open_until = now + cooldown
  end
end

function R:breaker_state(name)
  local st = self.breakers[name]
  if not st or not st.open_until then return "closed" end
  if self.now() < st.open_until then return "open" end
  return "half_open"
end

local function by_load_then_draw(a, b)
  if a.load ~= b.load then return a.load < b.load end
  return a.key > b.key
end

-- group members in trying order: least in flight first, ties by weighted random draw
function R:order(members, now)
  local list = {}
  for i, mb in ipairs(members) do
    local w = tonumber(mb.weight) or 1
    local key = w > 0 and self.random() ^ (1 / w) or -1
    list[i] = { model = mb.model, load = inflight_count(self, mb.model.name, now), key = key }
  end
  sort(list, by_load_then_draw)
  return list
end

---------------------------------------------------------------------------------------------
-- local usage and cost

-- What a call over preq costs, from the model's prices and local counts only.
function R:account(model, preq)
  local p = self.providers[model.name]
  local s = self:settings(model)
  local n = #preq.documents
  local q = docs.estimate(preq.query, s)
  local tokens, units = 0, {}
  local max_docs = model.max_documents or (type(p) == "table" and p.limits and p.limits.max_documents)
  local batch = (type(p) == "table" and type(p.score) ~= "function" and type(p.plan) ~= "function" and max_docs
                 and max_docs < n) and max_docs or max(n, 1)
  local calls = n > 0 and ceil(n / batch) or 0
  if n > 0 and type(p) == "table" and type(p.plan) == "function" then calls = 1 end
  for i = 1, n do
    local d = docs.estimate_doc(preq.documents[i], s)
    tokens = tokens + q + d
    local b = floor((i - 1) / batch) + 1
    units[b] = (units[b] or 0) + max(1, ceil((q + d) / 500))
  end
  -- search units are an upstream API's billing (Cohere's rule); a local scorer has none
  local su = nil
  if not (type(p) == "table" and type(p.score) == "function") then
    su = 0
    for _, u in pairs(units) do su = su + ceil(u / 100) end
  end
  local cost = accounting.cost(model.price, { prompt_tokens = tokens, total_tokens = tokens, search_units = su },
    { documents = n })
  return { cost = cost, search_units = su, tokens = tokens, calls = calls, documents = n }
end

---------------------------------------------------------------------------------------------
-- running a request

-- The instruction a call carries (the request's, else the model's default): the provider
-- must have a documented place for it (a field, the query, the prompt), else 422 naming the
-- model; never dropped. Returns preq with .instruction set | nil, err.
local function with_instruction(model, p, req, preq)
  local ins = req.instruction
  if ins == nil or ins == "" then ins = model.instruction end
  if ins == nil or ins == "" then return preq end
  if not config_models.instruction_mode(p, model) then
    return fail(422, ('model "%s" (provider "%s") cannot take an instruction: the provider has no '
      .. 'instruction field, query format or prompt for one; remove "instruction" or choose another model')
      :format(model.name, tostring(model.provider)), "instruction", { instruction_refused = true })
  end
  if preq.instruction ~= ins then
    local copy = {}
    for k, v in pairs(preq) do copy[k] = v end
    copy.instruction = ins
    preq = copy
  end
  return preq
end

function R:attempt(model, req, deadline, report)
  local p = self.providers[model.name]
  local img_err = docs.check_images(model, p, req) -- 422 for image documents a model cannot take
  if img_err then return nil, img_err end
  local preq, owners = docs.prepare(req, p, self:settings(model))
  local ierr
  preq, ierr = with_instruction(model, p, req, preq)
  if not preq then return nil, ierr end
  local now = self.now()
  local left = deadline - now
  local m = model
  local timeout = model.timeout or 30
  if left < timeout then
    m = {}
    for k, v in pairs(model) do m[k] = v end
    m.timeout = max(0.001, left)
    timeout = m.timeout
  end
  local token = inflight_add(self, model.name, now + timeout + 1)
  local ok, scores, usage, degraded, out = xpcall(self.score, errors.traceback, m, preq, report)
  inflight_done(self, model.name, token)
  if not ok then return errors.script_error(model, "scoring", scores, req.id) end
  if not scores then return nil, usage end
  return docs.collapse(scores, owners, #req.documents), usage, degraded, preq, out
end

-- An alias's hedge (cfg.alias_options[alias].hedge) applies to each call of a member made
-- for the alias, unless the member has its own hedge or is the hedge target itself.
local function group_hedged(model, group)
  local h = group.hedge
  if not h or model.hedge or model.name == h.to then return model end
  local m = {}
  for k, v in pairs(model) do m[k] = v end
  m.hedge, m.hedge_from = h, group.name
  return m
end

local function describe(name, err)
  if type(err) ~= "table" then return name .. ": " .. tostring(err) end
  if err.upstream_status then return ("%s: HTTP %d"):format(name, err.upstream_status) end
  if err.type == "timeout_error" then return name .. ": timeout" end
  return ("%s: %s"):format(name, (tostring(err.message or err.type or "error")):sub(1, 80))
end

-- the chain of groups: the model's, then the fallbacks (the request's replace the models')
function R:chain(name, req)
  local primary, err = self:resolve(name)
  if not primary then return nil, err end
  local chain = { primary }
  local names, from_request = {}, false
  if type(req.fallbacks) == "table" then
    names, from_request = req.fallbacks, true
  else
    local seen = {}
    for _, mb in ipairs(primary.members) do
      for _, f in ipairs(mb.model.fallbacks or {}) do
        if not seen[f] then seen[f] = true; names[#names + 1] = f end
      end
    end
  end
  for i, f in ipairs(names) do
    local g, gerr = self:resolve(f)
    if not g then
      if from_request then
        local e = {}
        for k, v in pairs(gerr) do e[k] = v end
        e.param = ("fallbacks[%d]"):format(i - 1)
        if e.status == 404 then e.status = 400; e.type = "invalid_request_error" end
        e.message = "fallbacks: " .. tostring(e.message)
        return nil, e
      end
      return nil, gerr
    end
    chain[#chain + 1] = g
  end
  return chain
end

function R:run(name, req, report)
  local chain, cerr = self:chain(name, req)
  if not chain then return nil, cerr end
  local start = self.now()
  local server = self.cfg.server or {}
  local budget = min(tonumber(req.timeout) or huge, tonumber(server.timeout) or huge)
  local deadline = start + budget
  local tried, notes = {}, {}
  local attempts, last_err, open_wait = 0, nil, nil
  local timed_out = false
  for gi, group in ipairs(chain) do
    for _, cand in ipairs(self:order(group.members, self.now())) do
      local model = cand.model
      if not tried[model.name] then
        tried[model.name] = true
        local allowed, wait = self:breaker_allows(model, self.now())
        if not allowed then
          notes[#notes + 1] = model.name .. ": circuit open"
          open_wait = open_wait and min(open_wait, wait) or wait
        else
          local st = stat(self, model.name, model.direct)
          local retries = tonumber(model.retries) or 0
          for try = 0, retries do
            if self.now() >= deadline then timed_out = true; break end
            attempts = attempts + 1
            st.attempts = st.attempts + 1
            if try > 0 then st.retries = st.retries + 1 end
            local scores, usage, degraded, preq, out = self:attempt(group_hedged(model, group), req, deadline, report)
            if scores then
              self:breaker_result(model, true, self.now())
              local acct = self:account(model, preq)
              st.served = st.served + 1
              st.cost = st.cost + (acct.cost or 0)
              if gi > 1 then st.fallbacks = st.fallbacks + 1 end
              -- a hedge target that answered first serves the request (lua/rerank/engine/hedge.lua)
              local by = type(out) == "table" and out.served_by and self.cfg.model_index
                and self.cfg.model_index[out.served_by] or model
              acct.model, acct.provider, acct.attempts, acct.fallback = by.name, by.provider, attempts, gi > 1
              acct.entry, acct.out, acct.tried = model, out, notes
              return scores, usage, degraded, acct
            end
            local err = usage
            last_err = err
            local retryable, upstream_fault, counts = M.classify(err)
            if not upstream_fault then return nil, err end
            st.failures = st.failures + 1
            notes[#notes + 1] = describe(model.name, err)
            if counts then self:breaker_result(model, false, self.now()) end
            if not retryable or try == retries then break end
            if self:breaker_state(model.name) == "open" then break end
            local delay = error_wait(err)
            if delay then
              if delay > (self.routing.max_retry_after or M.DEFAULTS.max_retry_after) then break end
            else
              delay = M.backoff(try + 1, self.routing, self.random)
            end
            if self.now() + delay >= deadline then break end
            self.sleep(delay)
          end
        end
      end
      if timed_out then break end
    end
    if timed_out then break end
  end
  local tried_text = #notes > 0 and (" (tried " .. concat(notes, "; ") .. ")") or ""
  if timed_out or (req.timeout and last_err and self.now() >= deadline) then
    return fail(504, ("request deadline of %gs exceeded after %d attempt(s)%s")
      :format(budget, attempts, tried_text), nil, { fallbacks_tried = true })
  end
  if not last_err then
    return fail(503, ("no deployment available for model %q: circuit breaker open%s")
      :format(name, tried_text), nil, { retry_after = open_wait and tostring(ceil(open_wait)) or nil,
                                        fallbacks_tried = true })
  end
  local e = { fallbacks_tried = true }
  for k, v in pairs(last_err) do e[k] = v end
  if #notes > 1 then e.message = tostring(e.message) .. tried_text end
  if tonumber(e.upstream_status) == 429 then
    e.status, e.type = 429, "rate_limit_error"
    local w = error_wait(e)
    e.retry_after = w and w >= 0 and w < 1e10 and tostring(ceil(w)) or nil -- only a valid one goes out
  end
  return nil, e
end

return M
