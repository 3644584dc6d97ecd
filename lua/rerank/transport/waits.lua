-- Time a request spends waiting on upstreams: every transport call (request, request_all)
-- of a coroutine (one daemon request) adds its wall time; the gateway-overhead metric is
-- the request's total minus this (lua/rerank/daemon/metrics.lua).
--   waits.wrap(transport) -> transport   the same calls, timed
--   waits.take() -> µs                   this coroutine's total so far, forgotten
local core = require "rerank.core"

local M = {}

local acc = setmetatable({}, { __mode = "k" })

local function add(t0)
  local co = coroutine.running()
  if co then acc[co] = (acc[co] or 0) + (core.now_us() - t0) end
end

local function pass(t0, ...)
  add(t0)
  return ...
end

function M.wrap(t)
  if type(t) ~= "table" or t.timed_waits then return t end
  local w = {}
  for k, v in pairs(t) do w[k] = v end
  local request, request_all = t.request, t.request_all
  w.request = function(opts) return pass(core.now_us(), request(opts)) end
  if request_all then
    w.request_all = function(list, n) return pass(core.now_us(), request_all(list, n)) end
  end
  local hedge = t.hedge -- the daemon's race of two transfers (lua/rerank/engine/hedge.lua)
  if hedge then w.hedge = function(a, b, after) return pass(core.now_us(), hedge(a, b, after)) end end
  w.timed_waits = true
  return w
end

function M.take()
  local co = coroutine.running()
  if not co then return 0 end
  local v = acc[co] or 0
  acc[co] = nil
  return v
end

return M
