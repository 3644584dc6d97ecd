-- rerank: the public library and the engine the daemon runs.
--   local rerank = require "rerank"
--   local r = assert(rerank.new("config.yaml"))      -- or a config table
--   local res, err = r:rerank{ model = "bm25", query = "...", documents = {...}, top_n = 3 }
-- Misuse raises; expected failures return nil, err where err is
-- { status = http status, type = ..., message = ..., param = ... }.
local core = require "rerank.core"
local config = require "rerank.config"
local api = require "rerank.api"
local upstream = require "rerank.upstream"

local M = { _VERSION = core.version }
local Instance = {}
Instance.__index = Instance

local function fail(status, etype, message, param)
  return nil, { status = status, type = etype, message = message, param = param }
end
M.fail = fail

local function traceback(e)
  return debug.traceback(tostring(e), 2)
end

-- A provider file is a chunk returning a table of pure functions (DESIGN §4).
local function load_provider(path)
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  local ok, p = pcall(chunk)
  if not ok then return nil, p end
  if type(p) ~= "table" then return nil, path .. ": a provider must return a table" end
  return p
end
M.load_provider = load_provider

-- The daemon's event-loop fetch, nginx cosockets, or blocking libcurl, in that order.
function M.default_transport()
  if core.daemon then return require "rerank.transport.fetch" end
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.socket then
    local ok, t = pcall(require, "rerank.transport.ngx")
    if ok then return t end
  end
  local ok, t = pcall(require, "rerank.transport.curl")
  return ok and t or nil
end

function M.new(cfg, opts)
  opts = opts or {}
  local c, err
  if type(cfg) == "string" then
    c, err = config.load(cfg, opts.overrides)
  elseif type(cfg) == "table" then
    c, err = config.from_table(cfg, opts)
  else
    error("rerank.new: expected a config file path or a config table", 2)
  end
  if not c then return nil, err end
  local self = setmetatable({ cfg = c, providers = {}, transport = opts.transport or M.default_transport() }, Instance)
  for _, m in ipairs(c.models) do
    local p, perr = load_provider(m.provider_file)
    if not p then return nil, "models." .. m.name .. ": " .. tostring(perr) end
    self.providers[m.name] = p
  end
  return self
end

function Instance:models()
  local out = {}
  for i, m in ipairs(self.cfg.models) do
    out[i] = { id = m.name, provider = m.provider, model = m.model }
  end
  return out
end

-- Turns a provider's answer into an array of n scores (1-based, aligned with documents).
local function collect_scores(out, n, pname)
  if type(out) ~= "table" then
    return fail(502, "upstream_error", ("provider %q returned no scores"):format(pname))
  end
  local scores, missing = {}, 0
  if type(out.scores) == "table" then
    for i = 1, n do scores[i] = out.scores[i] end
  elseif type(out.results) == "table" then
    for _, r in ipairs(out.results) do
      local idx = tonumber(r.index)
      if idx and idx >= 0 and idx < n and idx == math.floor(idx) then scores[idx + 1] = tonumber(r.score or r.relevance_score) end
    end
  else
    return fail(502, "upstream_error", ("provider %q returned neither scores nor results"):format(pname))
  end
  for i = 1, n do
    if type(scores[i]) ~= "number" then
      scores[i] = -math.huge -- a missing score ranks last; the response says it is degraded
      missing = missing + 1
    end
  end
  return scores, missing
end

-- Runs the model's provider; returns scores, usage, degraded | nil, err.
function Instance:score(model, req)
  local p = self.providers[model.name]
  local n = #req.documents
  if n == 0 then return {}, {}, false end
  local out, perr
  if type(p.score) == "function" then
    local ok
    ok, out, perr = xpcall(p.score, traceback, model, req)
    if not ok then
      core.log("error", ("provider %q (model %q) raised: %s"):format(model.provider, model.name, tostring(out)))
      local first = tostring(out):match("^[^\n]*")
      return fail(500, "internal_error", ("provider %q failed: %s"):format(model.provider, first))
    end
    if out == nil then
      return fail(502, "upstream_error", ("provider %q failed: %s"):format(model.provider, tostring(perr)))
    end
  else
    if not self.transport then
      return fail(501, "internal_error", ("provider %q needs an HTTP transport"):format(model.provider))
    end
    out, perr = upstream.call(self.transport, model, p, req)
    if not out then return nil, perr end
  end
  local scores, missing = collect_scores(out, n, model.provider)
  if not scores then return nil, missing end
  return scores, out.usage or {}, missing > 0 or out.degraded == true
end

-- Accepts an internal request (from api.parse) or a wire-shaped table from a library user.
function Instance:rerank(req, timing)
  if type(req) ~= "table" then error("rerank: request must be a table", 2) end
  if not req.shape then
    local r, err = api.parse("rerankd", req, { max_documents = self.cfg.server.max_documents })
    if not r then return nil, err end
    req = r
  end
  local name = req.model or self.cfg.default_model
  local model = self.cfg.model_index[name]
  if not model then
    return fail(404, "not_found_error", ("model %q is not configured (see GET /v1/models)"):format(name), "model")
  end
  local t0 = core.now_us()
  local scores, usage, degraded = self:score(model, req)
  if not scores then return nil, usage end
  local t1 = core.now_us()
  local n = #req.documents
  local k = req.top_n and math.min(req.top_n, n) or n
  local order = core.topk(scores, k)
  local results = {}
  for i, idx in ipairs(order) do
    results[i] = { index = idx - 1, relevance_score = scores[idx] }
  end
  if timing then
    timing.upstream = t1 - t0
    timing.sort = core.now_us() - t1
  end
  usage = usage or {}
  local prompt = usage.prompt_tokens
  if not prompt then
    prompt = 0
    local q = core.count_tokens(req.query)
    for _, d in ipairs(req.documents) do prompt = prompt + q + core.count_tokens(d.text) end
  end
  return {
    id = req.id or ("rerank-" .. core.random_hex(12)),
    model = name,
    results = results,
    usage = { prompt_tokens = prompt, total_tokens = usage.total_tokens or prompt,
              search_units = usage.search_units },
    degraded = degraded or nil,
  }
end

return M
