-- Semantic health: GET /health?deep=1 scores a canned (query, relevant, irrelevant) triple
-- with every model and reports, per model, whether the relevant document scored higher,
-- the latency, this check's error and the last error this worker saw.
--
--   health.deep(inst)      -> all_ok, report   report = { { name, provider, ok, relevant,
--                             irrelevant, latency_ms, error?, last_error?, last_error_at? } | { name,
--                             provider, skipped = true } }
--   health.wants_deep(query_string) -> bool     ("deep=1", "deep=true", "deep")
--   health.admit(now?)     -> nil | seconds to wait (one deep check per worker per DEEP_INTERVAL)
--   health.triple(model)   -> the model's { query, relevant, irrelevant } (or the default)
--
-- A model's `health:` config entry replaces any of the three texts, or `health: false` skips
-- the model. Checks bypass the score cache and run one model after another, each under the
-- model's own timeout. The verdict is pass only when both scores are finite, the answer is not
-- degraded, and relevant > irrelevant.
local core = require "rerank.core"
local metrics = require "rerank.daemon.metrics"

local M = {}

M.DEFAULT = {
  query = "What is the capital of France?",
  relevant = "Paris is the capital and largest city of France.",
  irrelevant = "Bananas are a good source of potassium and grow in tropical climates.",
}

local last_errors = {} -- model name -> { message, at (unix seconds) }, per worker

-- A deep check calls every upstream (and may cost money): each worker starts at most one
-- every M.DEEP_INTERVAL seconds. M.admit(now) -> nil (go) | seconds to wait.
M.DEEP_INTERVAL = 5
local last_deep
function M.admit(now)
  now = now or core.now_us() / 1e6
  if last_deep and now - last_deep < M.DEEP_INTERVAL and now >= last_deep then
    return math.max(1, math.ceil(M.DEEP_INTERVAL - (now - last_deep)))
  end
  last_deep = now
  return nil
end

function M.wants_deep(q)
  if type(q) ~= "string" or q == "" then return false end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k == "deep" then
      v = v:lower()
      return v == "" or v == "1" or v == "true" or v == "yes"
    end
  end
  return false
end

function M.triple(model)
  local h = type(model.health) == "table" and model.health or {}
  return {
    query = h.query or M.DEFAULT.query,
    relevant = h.relevant or M.DEFAULT.relevant,
    irrelevant = h.irrelevant or M.DEFAULT.irrelevant,
  }
end

local function finite(x)
  return type(x) == "number" and x == x and x > -math.huge and x < math.huge
end

local function first_line(s)
  s = tostring(s)
  return s:match("^[^\n]*") or s
end

local function check(inst, model)
  local t = M.triple(model)
  local req = {
    shape = "rerankd", model = model.name, query = t.query, return_documents = false,
    documents = { { index = 0, text = t.relevant, raw = t.relevant }, { index = 1, text = t.irrelevant, raw = t.irrelevant } },
    health_check = true,
  }
  local t0 = core.now_us()
  local ok, scores, err, degraded = pcall(inst.score, inst, model, req)
  local latency = (core.now_us() - t0) / 1000
  local r = { name = model.name, provider = model.provider, latency_ms = math.floor(latency * 1000 + 0.5) / 1000 }
  local problem
  if not ok then
    problem = "raised: " .. first_line(scores)
  elseif not scores then
    problem = type(err) == "table" and (err.message or err.type) or tostring(err)
  else
    r.relevant, r.irrelevant = scores[1], scores[2]
    if degraded then
      problem = "degraded answer (missing scores)"
    elseif not finite(scores[1]) or not finite(scores[2]) then
      problem = "non-finite scores"
    elseif scores[1] <= scores[2] then
      problem = ("the relevant document did not score higher (%s <= %s)"):format(
        tostring(scores[1]), tostring(scores[2]))
    end
  end
  r.ok = problem == nil
  if problem then
    r.error = problem
    last_errors[model.name] = { message = problem, at = math.floor(core.time()) }
  end
  local last = last_errors[model.name]
  if last then r.last_error, r.last_error_at = last.message, last.at end
  metrics.inc("rerankd_health_checks_total", { model = model.name, result = r.ok and "pass" or "fail" })
  return r
end

function M.deep(inst)
  local report, all = {}, true
  for _, model in ipairs(inst.cfg.models) do
    if model.health == false or (type(model.health) == "table" and model.health.enabled == false) then
      report[#report + 1] = { name = model.name, provider = model.provider, skipped = true }
    else
      local r = check(inst, model)
      report[#report + 1] = r
      all = all and r.ok
    end
  end
  return all, report
end

function M.last_errors() return last_errors end

return M
