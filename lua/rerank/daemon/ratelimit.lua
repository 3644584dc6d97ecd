-- Rate limits per API key and per model: requests per minute and documents per minute.
--
--   ratelimit.new(limits_cfg, opts) -> limiter | nil (no limits configured)
--       limits_cfg (config/load.lua's cfg.limits): { backend = "local" | "redis",
--           per_key = { requests_per_minute =, documents_per_minute = } | nil,  -- every key
--           keys = { [key name] = {...} },                                     -- overrides
--           per_model = {...} | nil, models = { [model name] = {...} } }
--       opts: { redis = the rerank.core.redis module (or a double), redis_opts = {host,...},
--               prefix = "rerankd:", clock = fn() -> seconds (monotonic; local windows),
--               known_model = fn(name) -> bool (limits apply to configured names only),
--               log = fn(level, msg) }
--   limiter:admit(key_name, model_name, ndocs) -> true | nil, denial
--       denial = { scope = "key"|"model", name =, limit = "requests"|"documents", max =, cost =,
--                  retry_after = whole seconds >= 1, message = }
--   ratelimit.from_config(cfg, opts) -> limiter | nil   (the daemon's constructor)
--   ratelimit.reply(denial) -> 429, headers (Retry-After), JSON error body
--   ratelimit.error(denial) -> { status = 429, type, message, retry_after } (shaped replies)
--   ratelimit.estimate / ratelimit.retry_after: the window math (pure; tests)
--
-- Algorithm: a sliding window approximated from two fixed one-minute windows (the previous
-- window's count weighted by how much of it still overlaps the last 60 s, plus the current
-- window's count). A request is admitted only when every applicable limit has room for it, and
-- then counts against all of them; refused requests count against none.
-- Local backend: counters in this worker only (each worker enforces the full limit).
-- Redis backend: one atomic script per request over every applicable limit, windows from the
-- Redis server's clock, so every worker of every instance shares the budget. When Redis fails
-- the request is checked against the local counters instead (and rerankd_redis_errors_total
-- counts it): limits degrade to per worker rather than failing open or closed.
local json = require "rerank.json"
local metrics = require "rerank.daemon.metrics"
local redis_state = require "rerank.daemon.redis_state"

local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min

local M = {}
M.WINDOW = 60

local Limiter = {}
Limiter.__index = Limiter

-- The sliding estimate of a bucket whose previous window counted prev and current cur, frac
-- of the current window elapsed.
function M.estimate(prev, cur, frac)
  return prev * (1 - frac) + cur
end

-- Seconds until cost fits under limit (whole, 1..W), given the counts now. W: window seconds.
function M.retry_after(prev, cur, cost, limit, frac, W)
  W = W or M.WINDOW
  if cost > limit then return ceil(W) end -- never fits: a window is the honest answer
  local wait
  local room = limit - cur - cost
  if room >= 0 and prev > 0 then
    -- later in this window the previous window's weight has decayed enough
    local f = 1 - room / prev
    wait = (f - frac) * W
  else
    -- the next window: this window's count becomes the decaying previous one
    local g = cur > 0 and max(0, 1 - (limit - cost) / cur) or 0
    wait = (1 - frac) * W + g * W
  end
  -- at most one window: a client told to wait longer than the window it is limited over
  -- would wait for nothing (the sliding estimate can still be over by a fraction then: a
  -- retry gets a short second Retry-After)
  return max(1, min(ceil(W), ceil(wait - 1e-9)))
end

local RPM, DPM = "requests_per_minute", "documents_per_minute"

function M.new(cfg, opts)
  if not cfg then return nil end
  opts = opts or {}
  local has = cfg.per_key or cfg.per_model or next(cfg.keys or {}) or next(cfg.models or {})
  if not has then return nil end
  local self = setmetatable({
    cfg = cfg, window = cfg.window or M.WINDOW, buckets = {},
    clock = opts.clock or function() return require("rerank.core").now_us() / 1e6 end,
    known_model = opts.known_model or function() return true end,
    log = opts.log or function() end,
    prefix = opts.prefix or "rerankd:",
  }, Limiter)
  if cfg.backend == "redis" and opts.redis then
    self.redis, self.redis_opts = opts.redis, opts.redis_opts or {}
  end
  return self
end

-- The limits that apply to this request: { scope, name, limit, max, cost, id }.
function Limiter:checks(key_name, model_name, ndocs)
  local c, list = self.cfg, {}
  local function add(scope, name, spec)
    if not spec then return end
    if spec[RPM] then
      list[#list + 1] = { scope = scope, name = name, limit = "requests", max = spec[RPM], cost = 1,
                          id = scope .. ":" .. name .. ":requests" }
    end
    if spec[DPM] then
      list[#list + 1] = { scope = scope, name = name, limit = "documents", max = spec[DPM], cost = ndocs,
                          id = scope .. ":" .. name .. ":documents" }
    end
  end
  key_name = key_name or "anonymous"
  add("key", key_name, (c.keys and c.keys[key_name]) or c.per_key)
  if model_name and self.known_model(model_name) then
    add("model", model_name, (c.models and c.models[model_name]) or c.per_model)
  end
  return list
end

local function describe(ch)
  if ch.scope == "key" then
    if ch.name == "anonymous" then return "for all clients" end
    return ('for API key "%s"'):format(ch.name)
  end
  return ('for model "%s"'):format(ch.name)
end

local function denial(ch, retry)
  local msg
  if ch.cost > ch.max then
    msg = ("request has %d documents, more than the limit of %d documents per minute %s"):format(
      ch.cost, ch.max, describe(ch))
  else
    msg = ("rate limit exceeded: %d %s per minute %s; retry after %ds"):format(ch.max, ch.limit, describe(ch), retry)
  end
  return { scope = ch.scope, name = ch.name, limit = ch.limit, max = ch.max, cost = ch.cost,
           retry_after = retry, message = msg }
end

-- Local counters: bucket = { win = window index, prev =, cur = }.
function Limiter:admit_local(list)
  local now = self.clock()
  local W = self.window
  local idx = floor(now / W)
  local frac = (now - idx * W) / W
  local bs = {}
  for i, ch in ipairs(list) do
    local b = self.buckets[ch.id]
    if not b then
      b = { win = idx, prev = 0, cur = 0 }
      self.buckets[ch.id] = b
    elseif b.win ~= idx then
      b.prev = (b.win == idx - 1) and b.cur or 0
      b.cur, b.win = 0, idx
    end
    bs[i] = b
    if M.estimate(b.prev, b.cur, frac) + ch.cost > ch.max then
      return nil, denial(ch, M.retry_after(b.prev, b.cur, ch.cost, ch.max, frac, W))
    end
  end
  for i, ch in ipairs(list) do bs[i].cur = bs[i].cur + ch.cost end
  return true
end

-- KEYS: one base key per limit; ARGV: window seconds, then max and cost per limit.
-- Returns { denied limit (0 = admitted), elapsed fraction (string), prev1, cur1, prev2, cur2, ... }
M.SCRIPT = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local w = tonumber(ARGV[1])
local idx = math.floor(now / w)
local frac = (now - idx * w) / w
local out = { 0, tostring(frac) }
for i = 1, #KEYS do
  local limit, cost = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (idx - 1)) or '0')
  local cur = tonumber(redis.call('GET', KEYS[i] .. ':' .. idx) or '0')
  out[2 * i + 1], out[2 * i + 2] = prev, cur
  if out[1] == 0 and prev * (1 - frac) + cur + cost > limit then out[1] = i end
end
if out[1] == 0 then
  for i = 1, #KEYS do
    local k = KEYS[i] .. ':' .. idx
    redis.call('INCRBY', k, tonumber(ARGV[2 * i + 1]))
    redis.call('PEXPIRE', k, math.floor(w * 2000))
  end
end
return out
]]

function Limiter:redis_eval(args)
  local r, o = self.redis, self.redis_opts
  if not self.sha then
    local sha, err = r.call(o, "SCRIPT", "LOAD", M.SCRIPT)
    if type(sha) ~= "string" then return nil, err or "SCRIPT LOAD failed" end
    self.sha = sha
  end
  local res, err = r.call(o, "EVALSHA", self.sha, unpack(args))
  if res == nil and tostring(err):find("NOSCRIPT", 1, true) then
    self.sha = nil
    res, err = r.call(o, "EVAL", M.SCRIPT, unpack(args))
  end
  return res, err
end

function Limiter:admit_redis(list)
  local args = { #list }
  for i, ch in ipairs(list) do args[1 + i] = self.prefix .. "rl:" .. ch.id end
  args[#args + 1] = self.window
  for _, ch in ipairs(list) do
    args[#args + 1] = ch.max
    args[#args + 1] = ch.cost
  end
  local res, err = self:redis_eval(args)
  if type(res) ~= "table" then return nil, nil, err or "unexpected reply" end
  local denied = tonumber(res[1]) or 0
  if denied == 0 then return true end
  local ch = list[denied]
  if not ch then return nil, nil, "unexpected reply" end
  local frac = tonumber(res[2]) or 0
  local prev, cur = tonumber(res[2 * denied + 1]) or 0, tonumber(res[2 * denied + 2]) or 0
  return nil, denial(ch, M.retry_after(prev, cur, ch.cost, ch.max, frac, self.window))
end

function Limiter:admit(key_name, model_name, ndocs)
  local list = self:checks(key_name, model_name, ndocs or 0)
  if #list == 0 then return true end
  local ok, d
  if self.redis then
    local err
    ok, d, err = self:admit_redis(list)
    if ok == nil and d == nil then
      metrics.inc("rerankd_redis_errors_total", { use = "ratelimit" })
      redis_state.note("ratelimit", false, err, self.log)
      ok, d = self:admit_local(list)
    else
      redis_state.note("ratelimit", true, nil, self.log)
    end
  else
    ok, d = self:admit_local(list)
  end
  if not ok then metrics.inc("rerankd_rate_limited_total", { scope = d.scope, limit = d.limit }) end
  return ok, d
end

-- The limiter of a loaded config (cfg.limits, cfg.redis), or nil. In the daemon the Redis
-- backend uses rerank.core.redis; elsewhere (or when it is missing) the local counters.
function M.from_config(cfg, opts)
  local l = cfg and cfg.limits
  if not l then return nil end
  opts = opts or {}
  local o = {
    clock = opts.clock, prefix = cfg.redis and cfg.redis.prefix, redis_opts = cfg.redis,
    log = opts.log or function(level, msg) pcall(require("rerank.core").log, level, msg) end,
    known_model = function(name)
      return cfg.model_index[name] ~= nil or (cfg.pipeline_index and cfg.pipeline_index[name] ~= nil)
          or (cfg.aliases and cfg.aliases[name] ~= nil) or false
    end,
  }
  if l.backend == "redis" then
    o.redis = opts.redis
    if not o.redis then
      local ok, r = pcall(require, "rerank.core.redis")
      if ok then o.redis = r else o.log("warn", "rate limits: redis is not available here; counting per worker") end
    end
  end
  return M.new(l, o)
end

-- The engine-style error of a denial (status, type, message, retry_after) for shaped replies.
function M.error(d)
  return { status = 429, type = "rate_limit_error", message = d.message,
           retry_after = tostring(min(max(1, d.retry_after or 1), 86400)) }
end

function M.reply(d)
  local retry = tostring(min(max(1, d.retry_after or 1), 86400))
  return 429, { ["content-type"] = "application/json", ["retry-after"] = retry },
      json.error_body(429, "rate_limit_error", d.message)
end

return M
