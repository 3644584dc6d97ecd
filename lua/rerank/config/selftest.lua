-- The self-test a configuration passes before the daemon serves it (start and SIGHUP): every
-- model's provider builds a canned request and parses a canned answer, every fusion method a
-- pipeline or `fusion:` names runs on canned lists. No network: nothing is sent, and a
-- provider's score() that yields or calls the daemon's HTTP or Redis is stopped there. A script that raises fails the test,
-- so a reload that would turn every request into a 500 is refused and the old one serves on.
--
--   selftest.run(instance) -> true | nil, "file:line:col: what failed: the script's error"
local fuse = require "rerank.fuse"
local shapes = require "rerank.shapes"
local upstream = require "rerank.engine.upstream"

local M = {}

M.QUERY = "What is the capital of France?"
M.DOCUMENTS = { "Paris is the capital of France.", "Bananas grow in tropical climates." }
-- a Cohere-shaped answer; a provider of another shape may refuse it (nil, err) but not raise
M.ANSWER = '{"results":[{"index":0,"relevance_score":0.9},{"index":1,"relevance_score":0.1}],'
  .. '"choices":[{"message":{"content":"{\\"score\\": 0.9}"}}]}'
M.LISTS = {
  { name = "a", items = { { id = "x", score = 0.9 }, { id = "y", score = 0.4 } } },
  { name = "b", items = { { id = "y", score = 3 }, { id = "z", score = 1 } } },
}

-- CPU seconds one script call may take on the canned input: a script that loops forever
-- fails the self-test instead of freezing the start or the reload.
M.BUDGET_S = 2

local SELF = debug.getinfo(1, "S").source
local function over_budget()
  local at = debug.getinfo(2, "S")
  if at and at.source == SELF then return end -- back in bounded(): it clears the hook
  error(("did not finish within %gs of CPU on the self-test's canned input"):format(M.BUDGET_S), 2)
end

-- pcall(fn, ...) under M.BUDGET_S: past it, a count hook raises at every instruction, so a
-- pcall inside the script cannot swallow the error (operator scripts run interpreted:
-- lua/rerank/config/paths.lua loads them with the JIT off, so hooks reach them).
local function bounded(fn, ...)
  local t0 = os.clock()
  debug.sethook(function()
    if os.clock() - t0 > M.BUDGET_S then debug.sethook(over_budget, "", 1) end
  end, "", 10000)
  local res = { pcall(fn, ...) }
  debug.sethook()
  return unpack(res, 1, table.maxn(res))
end
M.bounded = bounded

local function first_line(e)
  return (tostring(e):match("^[^\n]*"))
end

local function request(cfg)
  return assert(shapes.parse("rerankd", { query = M.QUERY, documents = M.DOCUMENTS },
    { max_documents = cfg.server and cfg.server.max_documents }))
end

-- One call spec: a URL, and a body the runtime can encode.
local function check_spec(model, spec)
  if type(spec) ~= "table" then return nil, "built " .. type(spec) .. ", not a request table" end
  if type(spec.url) ~= "string" or not spec.url:match("^%a[%w+.-]*://") then
    return nil, "built a request without an absolute url"
  end
  local ok, err = bounded(upstream.prepare, model, spec)
  if not ok then return nil, "built a body that cannot be encoded: " .. first_line(err) end
  return true
end

local ANSWER_HEADERS = { ["content-type"] = "application/json" }

local function check_provider(model, p, req)
  if type(p.score) == "function" then
    -- in-process scorers (bm25) run; one that yields, or reaches for the daemon's HTTP or
    -- Redis (which raise outside a request: "must be called from a request coroutine"),
    -- does I/O, and the self-test has no network: it stops there
    local co = coroutine.create(p.score)
    local ok, err = coroutine.resume(co, model, req)
    if not ok and not tostring(err):find("must be called from a request coroutine", 1, true) then
      return nil, "score() raised: " .. first_line(err)
    end
    return true
  end
  if type(p.plan) == "function" then
    local state = {}
    local ok, calls = bounded(p.plan, model, req, state)
    if not ok then return nil, "plan() raised: " .. first_line(calls) end
    if type(calls) ~= "table" then return true end
    local responses = {}
    for i, spec in ipairs(calls) do
      local sok, serr = check_spec(model, spec)
      if not sok then return nil, "plan() " .. serr end
      responses[i] = { status = 200, headers = ANSWER_HEADERS, body = M.ANSWER }
    end
    if type(p.absorb) == "function" then
      local aok, aerr = bounded(p.absorb, model, req, state, calls, responses)
      if not aok then return nil, "absorb() raised on a canned answer: " .. first_line(aerr) end
    end
    return true
  end
  local ok, spec = bounded(p.build, model, req)
  if not ok then return nil, "build() raised: " .. first_line(spec) end
  local sok, serr = check_spec(model, spec)
  if not sok then return nil, "build() " .. serr end
  local pok, perr = bounded(p.parse, model, req, 200, ANSWER_HEADERS, M.ANSWER)
  if not pok then return nil, "parse() raised on a canned answer: " .. first_line(perr) end
  return true
end

local function where(cfg, path)
  local mark = cfg.marks and cfg.marks[path]
  if mark then return ("%s:%s: %s"):format(cfg.source or cfg.file or "config", mark, path) end
  return ("%s: %s"):format(cfg.source or cfg.file or "config", path)
end

local function check_fusion(cfg, registry, opts, path)
  local o = { methods = registry }
  for k, v in pairs(opts) do o[k] = v end
  local ok, res, err = bounded(fuse.run, M.LISTS, o)
  if not ok then return nil, ("%s: fusion method failed its self-test: %s"):format(where(cfg, path), first_line(res)) end
  if res == nil then
    return nil, ("%s: fusion method failed its self-test: %s"):format(where(cfg, path),
      type(err) == "table" and tostring(err.message) or tostring(err))
  end
  return true
end

function M.run(instance)
  local cfg = instance.cfg
  for i, model in ipairs(cfg.models) do
    local p = instance.providers[model.name]
    local ok, err = check_provider(model, p, request(cfg))
    if not ok then
      return nil, ("%s: model %q (provider %q) failed its self-test: %s"):format(
        where(cfg, ("models[%d]"):format(i - 1)), model.name, tostring(model.provider), upstream.redact(model, err))
    end
  end
  local registry = fuse.methods(cfg)
  for i, f in ipairs(cfg.fusion or {}) do
    local ok, err = check_fusion(cfg, registry, { method = f.name }, ("fusion[%d]"):format(i - 1))
    if not ok then return nil, err end
  end
  for i, pl in ipairs(cfg.pipelines or {}) do
    for j, st in ipairs(pl.stages) do
      if st.fuse then
        local opts = {}
        for k, v in pairs(st.fuse) do opts[k] = v end
        opts.weights = nil -- they name the request's lists (checked with the config)
        if not opts.fusion_file then opts.method = opts.method or fuse.DEFAULT_METHOD end
        local ok, err = check_fusion(cfg, registry, opts, ("pipelines[%d].stages[%d].fuse"):format(i - 1, j - 1))
        if not ok then return nil, err end
      end
    end
  end
  return true
end

return M
