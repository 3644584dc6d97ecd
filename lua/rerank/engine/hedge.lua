-- Hedged requests (README "Routing: hedged requests"): a model with
-- `hedge: { after: 300ms | p95, to: NAME }` sends the same upstream request to the deployment
-- NAME when its own has not answered after `after` (or this worker's 95th percentile of its
-- recent answer times); the first 2xx answer wins and the other transfer is cancelled
-- (core/fetch_loop.c, fetch.hedge). An alias's hedge (top-level `aliases: { NAME: { hedge } }`)
-- reaches here on the member's entry as model.hedge with model.hedge_from = the alias
-- (router.lua): it is counted, and its p95 kept, under the alias's name.
--   hedge.plan(inst, model, req) -> { model, provider, after } | nil   (nil: call plainly)
--   hedge.observe(name, seconds)     an answer time of a model (for `p95`)
--   hedge.done(h, out)               counts the hedge sent/won and releases its slot
-- A hedge is never sent past the request's deadline (`after` must be shorter than the time
-- the primary call may take), while the target's breaker is open, or when the target already
-- has `concurrency` calls in flight on this worker; skipped hedges are counted by reason.
local core = require "rerank.core"
local metrics = require "rerank.daemon.metrics"

local M = {}

local C = "counter"
metrics.define("rerankd_hedges_sent_total", C, "Hedged requests sent, by model and hedge target", { "model", "to" })
metrics.define("rerankd_hedges_won_total", C, "Hedged requests answered first by the hedge target", { "model", "to" })
metrics.define("rerankd_hedges_skipped_total", C,
  "Hedges not armed: reason = deadline, concurrency, breaker, warmup (p95 needs 20 answers), shape",
  { "model", "reason" })

M.WINDOW, M.MIN_SAMPLES = 200, 20

local samples = {} -- model name -> { n, i, [1..WINDOW] = seconds }

function M.observe(name, seconds)
  local s = samples[name]
  if not s then
    s = { n = 0, i = 0 }
    samples[name] = s
  end
  s.i = s.i % M.WINDOW + 1
  s[s.i] = seconds
  if s.n < M.WINDOW then s.n = s.n + 1 end
end

function M.quantile(name, q)
  local s = samples[name]
  if not s or s.n < M.MIN_SAMPLES then return nil end
  local v = {}
  for i = 1, s.n do v[i] = s[i] end
  table.sort(v)
  return v[math.max(1, math.ceil(q * s.n))]
end

-- the name a hedge is counted and timed under: the alias it came from, else the model
function M.owner(model) return model.hedge_from or model.name end

local function skip(model, reason)
  metrics.inc("rerankd_hedges_skipped_total", { model = M.owner(model), reason = reason })
  return nil
end

function M.plan(inst, model, req)
  local h = model.hedge
  if not h then return nil end
  local transport = inst.transport
  if not transport or type(transport.hedge) ~= "function" then return nil end -- daemon only
  local target = inst.cfg.model_index and inst.cfg.model_index[h.to]
  local tp = target and inst.providers[h.to]
  local p = inst.providers[model.name]
  if not tp or type(tp.plan) == "function" or type(p.plan) == "function" then return skip(model, "shape") end
  local n = #req.documents
  for _, x in ipairs({ { model, p }, { target, tp } }) do
    local max_docs = x[1].max_documents or (x[2].limits and x[2].limits.max_documents)
    if max_docs and n > max_docs then return skip(model, "shape") end
  end
  local after = h.after
  if h.quantile then
    after = M.quantile(M.owner(model), h.quantile)
    if not after then return skip(model, "warmup") end
  end
  -- model.timeout is already cut to the request's deadline (router attempt)
  if after >= (tonumber(model.timeout) or math.huge) then return skip(model, "deadline") end
  local router = inst.router
  local now = router.now()
  if router:breaker_state(h.to) == "open" then return skip(model, "breaker") end
  if target.concurrency and router.inflight_count(router, h.to, now) >= target.concurrency then
    return skip(model, "concurrency")
  end
  local t = {}
  for k, v in pairs(target) do t[k] = v end
  t.timeout = math.max(0.001, math.min(tonumber(target.timeout) or math.huge, model.timeout - after))
  return { model = t, provider = tp, after = after, from = M.owner(model), to = h.to,
           token = router.inflight_add(router, h.to, now + model.timeout + 1), router = router }
end

function M.done(h, r)
  h.router.inflight_done(h.router, h.to, h.token)
  if r and r.hedged then
    metrics.inc("rerankd_hedges_sent_total", { model = h.from, to = h.to })
    if r.index == 2 then metrics.inc("rerankd_hedges_won_total", { model = h.from, to = h.to }) end
  end
end

M.now = function() return core.now_us() / 1e6 end

return M
