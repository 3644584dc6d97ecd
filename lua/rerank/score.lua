-- The score layer (one per model): what a model's number means (its kind) and how it is
-- mapped to a calibrated score, so one threshold means the same across providers.
--
--   score.KINDS                      probability | logit | bm25 | rank | fused | unknown
--   score.check_spec(v, kind) -> cal | nil, msg     a calibration spec from config (or a
--       provider's `calibrate`): "none" | "sigmoid" | { sigmoid = { scale = s } } |
--       { shifted_sigmoid = { a =, b = } } | { platt = { a =, b = } }
--       -> nil for none, else { method = "sigmoid"|"shifted_sigmoid"|"platt", scale, a, b }
--   score.apply(cal, x) -> calibrated x (cal nil: x itself)
--       sigmoid          1 / (1 + e^(-x / scale))            (scale default 1)
--       shifted_sigmoid  1 / (1 + e^(-(x - a) / b))          (a: the score mapped to 0.5, b > 0)
--       platt            1 / (1 + e^(-(a * x + b)))          (Platt 1999 writes A = -a, B = -b)
--   score.of(model, p, req, out) -> kind, cal    the model's kind and calibration for one call:
--       the model's `score` config, else the provider's `score_kind` (a string, or
--       function(model, req) -> string) and `calibrate`; a provider answer's `score_kind`
--       ("rank") wins over the declared kind.
--   score.probability(raw, kind, cal) / score.logit(raw, kind, cal)   the score in the
--       terms a client asked for (TEI raw_scores, vLLM use_activation, NIM logits); nil
--       when the kind has no such meaning (bm25, rank, fused, unknown).
--   score.fit_platt(pairs, opts) -> { a =, b = } | nil, err   Platt scaling fitted on
--       { {score, label}, ... } (label 1 relevant, 0 not), Newton's method with Platt's
--       target smoothing (Lin, Lin & Weng 2007): the parameters for `calibrate: {platt: ...}`.
local type, tonumber, pairs, exp, log, abs, huge = type, tonumber, pairs, math.exp, math.log, math.abs, math.huge

local M = {}

M.KINDS = { "probability", "logit", "bm25", "rank", "fused", "unknown" }
local KIND_SET = {}
for _, k in ipairs(M.KINDS) do KIND_SET[k] = true end
M.KIND_SET = KIND_SET

M.METHODS = { "none", "sigmoid", "shifted_sigmoid", "platt" }

local function finite(x) return type(x) == "number" and x == x and x ~= huge and x ~= -huge end

local function sigmoid(z)
  if z >= 0 then return 1 / (1 + exp(-z)) end
  local e = exp(z) -- no overflow for very negative z
  return e / (1 + e)
end
M.sigmoid = sigmoid

-- The parameters of one method: { name = "number"|"positive" }
local PARAMS = {
  sigmoid = { scale = "positive" },
  shifted_sigmoid = { a = "number", b = "positive" },
  platt = { a = "number", b = "number" },
}
local REQUIRED = { shifted_sigmoid = { "a", "b" }, platt = { "a", "b" } }

-- cal | nil (none), or nil, message (the message names the offending key)
function M.check_spec(v, kind)
  local method, params
  if v == nil or v == "none" or v == false then return nil end
  if type(v) == "string" then
    method, params = v, {}
  elseif type(v) == "table" then
    local n = 0
    for k, p in pairs(v) do
      n = n + 1
      method, params = k, p
    end
    if n ~= 1 then
      return nil, "must be none, sigmoid, or a mapping with one of: sigmoid, shifted_sigmoid, platt"
    end
    if params == nil or (type(params) ~= "table") then params = {} end
  else
    return nil, "must be none, sigmoid, or a mapping with one of: sigmoid, shifted_sigmoid, platt"
  end
  local decl = PARAMS[method]
  if not decl then
    return nil, ('unknown calibration "%s" (expected one of: none, sigmoid, shifted_sigmoid, platt)'):format(tostring(method))
  end
  local cal = { method = method }
  for k, x in pairs(params) do
    local what = decl[k]
    if not what then
      local names = {}
      for name in pairs(decl) do names[#names + 1] = name end
      table.sort(names)
      return nil, ("%s: unknown parameter %s (expected: %s)"):format(method, tostring(k), table.concat(names, ", "))
    end
    if not finite(x) then return nil, ("%s.%s must be a finite number"):format(method, k) end
    if what == "positive" and x <= 0 then return nil, ("%s.%s must be > 0"):format(method, k) end
    cal[k] = x
  end
  for _, k in ipairs(REQUIRED[method] or {}) do
    if cal[k] == nil then return nil, ("%s.%s is required"):format(method, k) end
  end
  if method == "platt" and cal.a == 0 then return nil, "platt.a must not be 0 (every score would be the same)" end
  -- a probability is already in [0, 1]: a sigmoid over it squeezes it into [0.5, 0.73]
  if kind == "probability" and method ~= "platt" then
    return nil, ("%s over a score of kind probability: a probability is never passed through a sigmoid "
      .. "(use none, or platt fitted on this model's scores)"):format(method)
  end
  return cal
end

function M.apply(cal, x)
  if not cal or not finite(x) then return x end
  local m = cal.method
  if m == "sigmoid" then return sigmoid(x / (cal.scale or 1)) end
  if m == "shifted_sigmoid" then return sigmoid((x - cal.a) / cal.b) end
  return sigmoid(cal.a * x + cal.b) -- platt
end

-- The kind and calibration that apply to one call of a model.
function M.of(model, p, req, out)
  local s = model.score or {}
  local kind = s.kind
  if kind == nil and type(p) == "table" then
    local k = p.score_kind
    if type(k) == "function" then
      local ok, v = pcall(k, model, req)
      k = ok and v or nil
    end
    if type(k) == "string" and KIND_SET[k] then kind = k end
  end
  if type(out) == "table" and out.score_kind == "rank" then kind = "rank" end
  return kind or "unknown", s.calibrate
end

-- Probabilities clamped away from 0 and 1 so that their logit stays finite.
local EPS = 1e-15

-- The score as a probability: the calibrated one, the raw one when it is a probability, the
-- sigmoid of a logit; nil for kinds without a probability (bm25, rank, fused, unknown).
function M.probability(raw, kind, cal)
  if cal then return M.apply(cal, raw) end
  if kind == "probability" then return raw end
  if kind == "logit" then return finite(raw) and sigmoid(raw) or raw end
  return nil
end

-- The score as a logit: the raw one when it is a logit (uncalibrated), else the logit of
-- the probability; nil for kinds without one.
function M.logit(raw, kind, cal)
  if kind == "logit" and not cal then return raw end
  local p = M.probability(raw, kind, cal)
  if p == nil or not finite(p) then return p end
  if p < EPS then p = EPS elseif p > 1 - EPS then p = 1 - EPS end
  return log(p / (1 - p))
end

---------------------------------------------------------------------------------------------
-- Platt scaling

-- pairs: { {score, label}, ... } or { {score =, label =}, ... }; label 1/true relevant.
-- opts: { max_iter = 100, eps = 1e-12 }. Returns { a =, b = } for p = sigmoid(a * score + b).
function M.fit_platt(list, opts)
  opts = opts or {}
  if type(list) ~= "table" then return nil, "fit_platt: pairs must be a list of {score, label}" end
  local f, y, prior1, prior0 = {}, {}, 0, 0
  for i, pr in ipairs(list) do
    if type(pr) ~= "table" then return nil, ("fit_platt: pairs[%d] must be {score, label}"):format(i) end
    local s = tonumber(pr.score or pr[1])
    local l = pr.label
    if l == nil then l = pr[2] end
    if l == true then l = 1 elseif l == false then l = 0 end
    l = tonumber(l)
    if not finite(s) then return nil, ("fit_platt: pairs[%d] has no finite score"):format(i) end
    if l ~= 0 and l ~= 1 then return nil, ("fit_platt: pairs[%d] label must be 0 or 1"):format(i) end
    f[#f + 1], y[#y + 1] = s, l
    if l == 1 then prior1 = prior1 + 1 else prior0 = prior0 + 1 end
  end
  if prior1 == 0 or prior0 == 0 then
    return nil, "fit_platt: needs at least one relevant (1) and one irrelevant (0) pair"
  end
  -- Platt's smoothed targets
  local hi, lo = (prior1 + 1) / (prior1 + 2), 1 / (prior0 + 2)
  local t = {}
  for i = 1, #y do t[i] = y[i] == 1 and hi or lo end
  -- Lin, Lin & Weng's Newton method with backtracking, in Platt's sign convention:
  -- p_i = 1 / (1 + exp(A f_i + B)); we return a = -A, b = -B.
  local A, B = 0, log((prior0 + 1) / (prior1 + 1))
  local max_iter, min_step, sigma, eps = opts.max_iter or 100, 1e-10, 1e-12, opts.eps or 1e-5
  local function objective(a, b)
    local fval = 0
    for i = 1, #f do
      local fApB = f[i] * a + b
      if fApB >= 0 then fval = fval + t[i] * fApB + log(1 + exp(-fApB))
      else fval = fval + (t[i] - 1) * fApB + log(1 + exp(fApB)) end
    end
    return fval
  end
  local fval = objective(A, B)
  for _ = 1, max_iter do
    local h11, h22, h21, g1, g2 = sigma, sigma, 0, 0, 0
    for i = 1, #f do
      local fApB = f[i] * A + B
      local p, q
      if fApB >= 0 then
        p = exp(-fApB) / (1 + exp(-fApB)); q = 1 / (1 + exp(-fApB))
      else
        p = 1 / (1 + exp(fApB)); q = exp(fApB) / (1 + exp(fApB))
      end
      local d2 = p * q
      h11 = h11 + f[i] * f[i] * d2
      h22 = h22 + d2
      h21 = h21 + f[i] * d2
      local d1 = t[i] - p
      g1 = g1 + f[i] * d1
      g2 = g2 + d1
    end
    if abs(g1) < eps and abs(g2) < eps then break end
    local det = h11 * h22 - h21 * h21
    local dA = -(h22 * g1 - h21 * g2) / det
    local dB = -(-h21 * g1 + h11 * g2) / det
    local gd = g1 * dA + g2 * dB
    local step = 1
    local moved = false
    while step >= min_step do
      local nA, nB = A + step * dA, B + step * dB
      local nf = objective(nA, nB)
      if nf < fval + 0.0001 * step * gd then
        A, B, fval, moved = nA, nB, nf, true
        break
      end
      step = step / 2
    end
    if not moved then break end
  end
  return { a = -A, b = -B }
end

return M
