-- `rerankd check-provider FILE [FIXTURES_DIR]`: runs a provider's build/parse against fixture
-- files, outside the repository, and prints a diff for every mismatch. The fixture format is
-- the one of the shipped providers (tests/fixtures/providers/<name>/, README "Writing a
-- provider"):
--   build.json  [ { name, model = {model entry}, request = {rerank request}, env = {VAR = value}?,
--                   rank_fields = [...]?, expect = { method, url, headers, body, aws_sigv4?, userpwd? } } ]
--   parse.json  { "<response file>": { status, n (documents in the request), headers?,
--                   results = [[index, score], ...] | scores = [...], usage?,      -- a usable answer
--                   error = "text parse's error contains"                         -- parse returns nil, err
--                   upstream_error = "text the 502 contains" } }                  -- status >= 400
-- The module's helpers also run the in-repo spec (tests/lua/providers_spec.lua).
local cjson = require "cjson"
local json = require "rerank.json"
local shapes = require "rerank.shapes"
local upstream = require "rerank.engine.upstream"

local M = {}

local function denull(v)
  if v == cjson.null then return nil end
  return v
end
M.denull = denull

local read = require("rerank.config.paths").read -- fixtures: regular files of bounded size
M.read = read

-- compare as JSON values: no metatables, no functions
local function plain(v)
  if v == nil then return nil end
  return cjson.decode(json.encode(v))
end
M.plain = plain

-- runs fn with os.getenv answering only from env (hermetic: the machine's variables are hidden)
function M.with_env(env, fn)
  local real = os.getenv
  os.getenv = function(k) return denull(env and env[k]) end -- luacheck: ignore 122
  local ok, a, b = pcall(fn)
  os.getenv = real -- luacheck: ignore 122
  if not ok then error(a, 0) end
  return a, b
end

-- a model entry as lua/rerank/config/load.lua normalises it: provider defaults fill unset keys
function M.make_model(t, P)
  local m = {}
  for k, v in pairs(t) do m[k] = denull(v) end
  for k, v in pairs(P and P.defaults or {}) do
    if m[k] == nil then m[k] = v end
  end
  m.options = m.options or {}
  return m
end

function M.make_req(request, rank_fields)
  -- every shape's fields (instruction, priority, min_score, ...): lua/rerank/shapes/init.lua
  local req, err = shapes.parse("rerankd", cjson.encode(request))
  if not req then error("the fixture's request is invalid: " .. tostring(err and err.message), 0) end
  req.raw_scores = request.raw_scores -- TEI's field, as the TEI shape reads it
  req.rank_fields = denull(rank_fields)
  return req
end

function M.req_of(n)
  local docs = {}
  for i = 1, n do docs[i] = "document " .. i end
  return M.make_req({ query = "q", documents = docs })
end

-- The { index, score } pairs of a parse result in index order, whichever form it has:
-- { results = { {index, score}, ... } } or { scores = { [index + 1] = score } } (U.parser's
-- C fast path). A list of pairs (a fixture's "results") is put in the same order.
local function by_index(a, b) return a[1] < b[1] end
function M.pairs_of(out)
  local list = {}
  if type(out) ~= "table" then return list end
  if out[1] ~= nil then
    for i, p in ipairs(out) do list[i] = { p[1], p[2] } end
  elseif type(out.results) == "table" then
    for i, r in ipairs(out.results) do list[i] = { r.index, r.score } end
  elseif type(out.scores) == "table" then
    for i = 1, table.maxn(out.scores) do
      if out.scores[i] ~= nil then list[#list + 1] = { i - 1, out.scores[i] } end
    end
  end
  table.sort(list, by_index)
  return list
end

-- a transport answering every request with one response
function M.fake_transport(status, headers, body)
  local t = { calls = {} }
  function t.request(opts)
    t.calls[#t.calls + 1] = opts.url
    return { status = status, headers = headers or {}, body = body }
  end
  return t
end

---------------------------------------------------------------------------------------------
-- diffs: both values pretty-printed (keys sorted), then a line diff

local function jstr(s) return (cjson.encode(s):gsub("\\/", "/")) end

local function pretty(v, ind, out)
  ind = ind or ""
  out = out or {}
  local t = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif t == "table" then
    local keys, n = {}, 0
    for k in pairs(v) do
      n = n + 1
      keys[#keys + 1] = k
    end
    local is_array = n == #v
    if n == 0 then
      out[#out + 1] = is_array and "[]" or "{}"
      return out
    end
    if not is_array then table.sort(keys, function(a, b) return tostring(a) < tostring(b) end) end
    out[#out + 1] = is_array and "[" or "{"
    local inner = ind .. "  "
    for i = 1, n do
      local k = is_array and i or keys[i]
      local sub = pretty(v[k], inner, {})
      sub[1] = inner .. (is_array and "" or (jstr(tostring(k)) .. ": ")) .. sub[1]
      if i < n then sub[#sub] = sub[#sub] .. "," end
      for _, l in ipairs(sub) do out[#out + 1] = l end
    end
    out[#out + 1] = ind .. (is_array and "]" or "}")
  elseif t == "string" then
    out[#out + 1] = jstr(v)
  elseif t == "number" then
    out[#out + 1] = v == math.floor(v) and v < 1e15 and v > -1e15 and ("%d"):format(v) or ("%.17g"):format(v)
  else
    out[#out + 1] = tostring(v)
  end
  return out
end

-- "-" lines only in expected, "+" lines only in got, "  " both (longest common subsequence)
function M.diff(expected, got)
  local a, b = pretty(expected), pretty(got)
  local n, m = #a, #b
  local L = {}
  for i = n + 1, 1, -1 do
    L[i] = {}
    for j = m + 1, 1, -1 do
      if i > n or j > m then L[i][j] = 0
      elseif a[i] == b[j] then L[i][j] = L[i + 1][j + 1] + 1
      else L[i][j] = math.max(L[i + 1][j], L[i][j + 1]) end
    end
  end
  local out, i, j = { "--- expected", "+++ got" }, 1, 1
  while i <= n or j <= m do
    if i <= n and j <= m and a[i] == b[j] then
      out[#out + 1] = "  " .. a[i]; i, j = i + 1, j + 1
    elseif i <= n and (j > m or L[i + 1][j] >= L[i][j + 1]) then
      out[#out + 1] = "- " .. a[i]; i = i + 1
    else
      out[#out + 1] = "+ " .. b[j]; j = j + 1
    end
  end
  return table.concat(out, "\n")
end

local function same(a, b)
  return table.concat(pretty(a), "\n") == table.concat(pretty(b), "\n")
end

---------------------------------------------------------------------------------------------
-- the cases: each returns true | false, "what differs" (a diff or a message)

-- What build returned, in the fixture's expect shape, and what the runtime would send.
function M.build_case(P, case)
  local model, req = M.make_model(case.model or {}, P), M.make_req(case.request or {}, case.rank_fields)
  local spec = M.with_env(case.env or {}, function() return P.build(model, req) end)
  if type(spec) ~= "table" then return false, "build returned " .. type(spec) .. ", not a table" end
  local e = case.expect or {}
  local got = { method = spec.method or "POST", url = spec.url, headers = plain(spec.headers) or {},
                body = plain(spec.body) }
  local want = { method = e.method, url = e.url, headers = denull(e.headers) or {}, body = denull(e.body) }
  if denull(e.aws_sigv4) or spec.aws_sigv4 then got.aws_sigv4, want.aws_sigv4 = spec.aws_sigv4, denull(e.aws_sigv4) end
  if denull(e.userpwd) or spec.userpwd then got.userpwd, want.userpwd = spec.userpwd, denull(e.userpwd) end
  if not same(want, got) then return false, M.diff(want, got) end
  -- what the runtime sends: JSON text that decodes back to the expected body
  local opts = upstream.prepare(model, spec)
  if type(spec.body) == "table" then
    local sent = cjson.decode(opts.body)
    if not same(want.body, sent) then return false, "the encoded body differs:\n" .. M.diff(want.body, sent) end
  end
  return true
end

-- One parse.json entry against its response file (body).
function M.parse_case(P, name, e, body)
  local model = M.make_model({ name = "m", provider = P.name, api_key = "sk-secret-key",
                               base_url = "http://127.0.0.1:9" }, P)
  if e.status >= 400 then
    local req = M.req_of(3)
    local spec = M.with_env({}, function() return P.build(model, req) end)
    local out, err = upstream.call_one(M.fake_transport(e.status, {}, body), model, P, req, spec)
    if out then return false, ("HTTP %d was accepted as an answer"):format(e.status) end
    local msg = tostring(err.message)
    if err.status ~= 502 then return false, ("HTTP %d gave %d, not 502: %s"):format(e.status, err.status, msg) end
    if msg:find("sk-secret-key", 1, true) then return false, "the error shows the API key: " .. msg end
    if e.upstream_error and not msg:find(e.upstream_error, 1, true) then
      return false, ("the error does not say %q: %s"):format(e.upstream_error, msg)
    end
    return true
  end
  local req = M.req_of(e.n or 3)
  local out, err = P.parse(model, req, e.status, denull(e.headers) or {}, body)
  if denull(e.error) then
    if out ~= nil then return false, ("parse accepted %s; expected nil, %q"):format(name, e.error) end
    if not tostring(err):find(e.error, 1, true) then
      return false, ("parse's error does not say %q: %s"):format(e.error, tostring(err))
    end
    return true
  end
  if out == nil then return false, "parse returned nil, " .. tostring(err) end
  local want, got = { usage = denull(e.usage) }, { usage = plain(out.usage) }
  if denull(e.scores) then
    want.scores, got.scores = e.scores, plain(out.scores)
  else
    want.results, got.results = M.pairs_of(denull(e.results)), M.pairs_of(out)
  end
  if not same(want, got) then return false, M.diff(want, got) end
  return true
end

---------------------------------------------------------------------------------------------
-- the command

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function run_case(fn, ...)
  local ok, good, why = xpcall(fn, require("rerank.engine.errors").traceback, ...)
  if not ok then return false, "raised: " .. tostring(good) end
  return good, why
end

-- args = { FILE, FIXTURES_DIR? }; out(line) prints. Returns the exit status: 0 all passed,
-- 1 a case failed, 2 misuse (no file, no fixtures, not a provider).
function M.main(args, out)
  out = out or print
  local file, dir = args[1], args[2]
  if not file or file == "" or file == "-h" or file == "--help" then
    out("usage: rerankd check-provider FILE [FIXTURES_DIR]")
    out("  runs FILE's build/parse against FIXTURES_DIR/build.json and parse.json")
    out("  (default FIXTURES_DIR: fixtures/<name> next to FILE, <name> = FILE without .lua)")
    return 2
  end
  local stem = file:match("([^/]+)%.lua$") or file:match("[^/]+$")
  dir = dir or (dirname(file) .. "/fixtures/" .. stem)
  local P, lerr = require("rerank.engine.router").load_provider(file)
  if not P then
    out("check-provider: " .. tostring(lerr))
    return 2
  end
  if type(P.build) ~= "function" or type(P.parse) ~= "function" then
    out(("check-provider: %s must export build(model, req) and parse(model, req, status, headers, body)"):format(file))
    return 2
  end
  P.name = P.name or stem
  local fixtures = 0
  local passed, failed = 0, 0
  local function report(label, good, why)
    if good then
      passed = passed + 1
      out("ok    " .. label)
    else
      failed = failed + 1
      out("FAIL  " .. label)
      for line in (tostring(why) .. "\n"):gmatch("([^\n]*)\n") do out("      " .. line) end
    end
  end
  out(("check-provider: %s (%s) against %s/"):format(tostring(P.name), file, dir))
  -- a fixture file's JSON (nil when the file is absent; a failed case when it is not `what`)
  local function fixture(fname, what)
    local text = read(dir .. "/" .. fname)
    if not text then return nil end
    fixtures = fixtures + 1
    local v, derr = json.decode(text)
    if type(v) == "table" then return v end
    report(fname, false, ("not %s: %s"):format(what, tostring(derr or type(v))))
  end
  local cases = fixture("build.json", "a JSON array of cases")
  for i, case in ipairs(cases or {}) do
    report("build: " .. tostring(case.name or ("case " .. i)), run_case(M.build_case, P, case))
  end
  local entries = fixture("parse.json", "a JSON object") or {}
  local names = {}
  for k in pairs(entries) do names[#names + 1] = k end
  table.sort(names)
  for _, name in ipairs(names) do
    local e = entries[name]
    local body, rerr = read(dir .. "/" .. name)
    local label = ("parse: %s (HTTP %s)"):format(name, tostring(type(e) == "table" and e.status))
    if type(e) ~= "table" or type(e.status) ~= "number" then
      report(label, false, "the entry needs a numeric status")
    elseif not body then
      report(label, false, "cannot read the response file: " .. tostring(rerr))
    else
      report(label, run_case(M.parse_case, P, name, e, body))
    end
  end
  if fixtures == 0 then
    out(("check-provider: no build.json or parse.json in %s (see README, Writing a provider)"):format(dir))
    return 2
  end
  out(("%d passed, %d failed"):format(passed, failed))
  return failed == 0 and 0 or 1
end

return M
