-- Whether the shared Redis answers, as this worker last saw it (rate limits, score cache).
-- While it fails, each use falls back to this worker's own state (lua/rerank/daemon/ratelimit.lua:
-- local counters; lua/rerank/engine/cache.lua: an in-process LRU) and says so in the log (once per
-- 10 s per use, and once when Redis answers again) and in GET /health?deep=1.
--   redis_state.note(use, ok, err, log)   a Redis call of `use` succeeded or failed
--   redis_state.report(cfg) -> table | nil  for /health?deep=1 (nil without a redis: section);
--                                           pings Redis now (daemon only)
local core = require "rerank.core"

local M = {}

local uses = {} -- use -> { ok, error, since (unix s, first failure of the current outage), logged }

local function default_log(level, msg) pcall(core.log, level, msg) end

function M.note(use, ok, err, log)
  log = log or default_log
  local u = uses[use]
  if not u then
    u = { ok = true }
    uses[use] = u
  end
  local now = core.time()
  if ok then
    if not u.ok then log("info", ("redis: %s answers again; shared state resumed"):format(use)) end
    u.ok, u.error, u.since = true, nil, nil
    return
  end
  if u.ok then u.since = now end
  u.ok, u.error = false, tostring(err)
  if not u.logged or now - u.logged > 10 then
    u.logged = now
    log("warn", ("redis: %s failed (%s); falling back to this worker's local %s"):format(use, tostring(err),
      use == "cache" and "in-process cache" or "counters"))
  end
end

function M.report(cfg)
  if not (cfg and cfg.redis) then return nil end
  local out = { uses = {} }
  local ok_mod, redis = pcall(require, "rerank.core.redis")
  if ok_mod and type(redis) == "table" and redis.call then
    local pong, err = redis.call(cfg.redis, "PING")
    out.status = pong == "PONG" and "up" or "down"
    if pong ~= "PONG" then
      out.error = tostring(err or pong)
    else -- every call tries Redis first: a use that failed before uses it again from now on
      for use, u in pairs(uses) do
        if not u.ok then M.note(use, true) end
      end
    end
  else
    out.status = "unknown" -- not the daemon: no Redis client here
  end
  local down = out.status == "down"
  for use, u in pairs(uses) do
    out.uses[use] = { ok = u.ok, error = u.error, down_since = u.since }
    if not u.ok then down = true end
  end
  if down then
    out.fallback = "local: rate limits count per worker, the score cache is per worker, until Redis answers"
  end
  return out
end

return M
