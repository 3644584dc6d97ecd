-- Upstream calls for HTTP providers: build → transport → parse, with the error mapping
-- every provider shares. The transport is injected (daemon: rerank.core.fetch; library:
-- libcurl or nginx cosockets; tests: a double) and has request(opts) and request_all(list, n).
-- A transport with sends_bodies (the daemon's) takes a spliced body as a body (core.body):
-- built outside the Lua heap, and released here once the transport is done with it.
local core = require "rerank.core"
local json = require "rerank.json"
local probe = require "rerank.engine.probe"
local token = require "rerank.engine.token"

local M = {}

local errors = require "rerank.engine.errors"
local fail = errors.fail

-- Upstream text made safe to put in a JSON answer or a log line: bytes that are not UTF-8
-- become U+FFFD (lua-cjson would copy them into the JSON as they are).
local REPLACEMENT = "\239\191\189"
local function clean_utf8(s)
  local parts = {}
  while true do
    local at = core.utf8_check(s)
    if not at then break end
    parts[#parts + 1] = s:sub(1, at) .. REPLACEMENT
    s = s:sub(at + 2)
  end
  if #parts == 0 then return s end
  parts[#parts + 1] = s
  return table.concat(parts)
end
M.clean_utf8 = clean_utf8

-- A short description of what the upstream said (secrets are removed by the caller).
local function upstream_message(body)
  if type(body) ~= "string" or body == "" then return "" end
  local j = json.decode(body)
  local msg
  if type(j) == "table" then
    local e = j.error
    local es = type(j.errors) == "table" and j.errors[1] -- IBM watsonx: {"errors":[{code, message}]}
    msg = j.message or j.detail or (type(e) == "table" and (e.message or e.type)) or (type(e) == "string" and e)
      or (type(es) == "table" and es.message)
    if type(msg) == "table" then msg = json.encode(msg) end
  end
  msg = tostring(msg or body)
  if #msg > 300 then msg = msg:sub(1, 300) .. "…" end -- a cut character becomes U+FFFD below
  return clean_utf8(msg)
end
M.upstream_message = upstream_message

-- Retry-After as the upstream sent it, when it is valid: delta-seconds (digits only) or an
-- HTTP-date; anything else (abc, -5, 1e9) is dropped rather than passed to the client.
function M.valid_retry_after(v)
  if type(v) == "number" then
    return v >= 0 and v < 1e10 and v == math.floor(v) and tostring(v) or nil
  end
  if type(v) ~= "string" then return nil end
  v = v:match("^%s*(.-)%s*$")
  if v:match("^%d+$") and #v <= 10 then return v end
  if v:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$") then return v end
  return nil
end

local function valid_retry_after_ms(v)
  if type(v) ~= "string" then return nil end
  local ms = v:match("^%s*(%d+)%s*$")
  return ms and #ms <= 12 and ms or nil
end

-- Encodes a built request: body tables become JSON (as_body: a spliced one as a body,
-- json.encode_body). Returns transport options.
function M.prepare(model, spec, as_body)
  local headers = {}
  for k, v in pairs(spec.headers or {}) do headers[k] = v end
  for k, v in pairs(model.headers or {}) do headers[k] = v end
  local body, made = spec.body, false
  if type(body) == "table" then
    body = as_body and json.encode_body(body) or json.encode(body)
    made = type(body) == "userdata"
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  end
  -- SigV4 signs each path segment URI-encoded twice; libcurl 7.88 signs the path as given.
  -- So sign the doubly-encoded path and send the real one as the request target.
  local url, target = spec.url, spec.request_target
  if spec.aws_sigv4 and not target then
    local origin, path, rest = url:match("^(https?://[^/]+)(/[^?#]*)(.*)$")
    if path and path:find("%", 1, true) then
      target = path .. rest
      url = origin .. path:gsub("%%", "%%25") .. rest
    end
  end
  return {
    method = spec.method or (body and "POST" or "GET"),
    url = url, request_target = target, headers = headers, body = body,
    timeout = spec.timeout or model.timeout or 30,
    aws_sigv4 = spec.aws_sigv4, userpwd = spec.userpwd,
    made_body = made or nil, -- a body made here, released by sent() below
  }
end

-- Upstream messages sometimes quote the credential they rejected: never pass it on.
-- A model's secrets: its api_key, every value under headers: (secret by default: they carry
-- tokens), the user:password of its base_url, and provider options whose name says key,
-- secret, token or password. Each is masked in any letter case, URL-encoded and JSON-escaped.
local SECRET_NAME = { "key", "secret", "token", "password", "credential" }

local function secret_name(k)
  k = tostring(k):lower()
  for _, w in ipairs(SECRET_NAME) do
    if k:find(w, 1, true) then return true end
  end
  return false
end

local function secrets_of(model)
  local out = {}
  local function add(v)
    if type(v) == "string" and #v >= 4 then out[#out + 1] = v end
  end
  add(model.api_key)
  add(model.access_token) -- an exchanged bearer token (lua/rerank/engine/token.lua)
  for _, v in pairs(type(model.headers) == "table" and model.headers or {}) do
    add(v)
    -- "Bearer <token>", "Basic <creds>": the credential alone may be quoted back too
    if type(v) == "string" then add(v:match("^%S+%s+(%S+)$")) end
  end
  local userinfo = type(model.base_url) == "string" and model.base_url:match("^%a[%w+.-]*://([^/@]*)@")
  if userinfo then
    add(userinfo)
    add(userinfo:match(":(.*)$"))
  end
  for k, v in pairs(type(model.options) == "table" and model.options or {}) do
    if secret_name(k) then add(v) end
  end
  return out
end
M.secrets_of = secrets_of

local function url_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- msg with every case-insensitive occurrence of needle replaced by [redacted]
local function mask(msg, needle)
  local lower, low = msg:lower(), needle:lower()
  local at = lower:find(low, 1, true)
  if not at then return msg end
  local parts, pos = {}, 1
  while at do
    parts[#parts + 1] = msg:sub(pos, at - 1)
    parts[#parts + 1] = "[redacted]"
    pos = at + #low
    at = lower:find(low, pos, true)
  end
  parts[#parts + 1] = msg:sub(pos)
  return table.concat(parts)
end

function M.redact_secrets(secrets, msg)
  msg = tostring(msg)
  for _, s in ipairs(secrets) do
    msg = mask(msg, s)
    local enc = url_encode(s)
    if enc ~= s then msg = mask(msg, enc) end
    local esc = s:gsub("/", "\\/")
    if esc ~= s then msg = mask(msg, esc) end
  end
  return msg
end

-- A message about this model made safe for a client and a log: no secret, valid UTF-8.
local function redact(model, msg)
  return clean_utf8(M.redact_secrets(secrets_of(model), msg))
end
M.redact = redact

-- Maps a transport failure or an HTTP error status to the gateway's error.
function M.error_for(model, res, err)
  local who = ("upstream %q (model %q)"):format(model.provider, model.name)
  if not res then
    err = redact(model, tostring(err))
    if err:find("^timeout") then return fail(504, who .. " timed out: " .. err) end
    return fail(502, who .. " unreachable: " .. err)
  end
  local msg = redact(model, upstream_message(res.body))
  local auth = res.status == 401 or res.status == 403
  local h = type(res.headers) == "table" and res.headers or {}
  local e = { status = 502, type = auth and "upstream_auth_error" or "upstream_error",
              message = ("%s returned HTTP %d%s"):format(who, res.status, msg ~= "" and (": " .. msg) or ""),
              upstream_status = res.status, retry_after = M.valid_retry_after(h["retry-after"]),
              retry_after_ms = valid_retry_after_ms(h["retry-after-ms"]) }
  return nil, e
end

-- report (optional, the caller's table): report.upstream_status is set to the HTTP status
-- of each upstream answer as it arrives, so it ends as the last one's (the access log's
-- upstream_status; Instance:rerank returns it in its result or error).
local function note_status(report, res)
  if report and type(res) == "table" and tonumber(res.status) then report.upstream_status = tonumber(res.status) end
end

-- Parses one transport result with the provider; returns its output | nil, err.
local function parse_result(model, p, req, res, terr, report)
  note_status(report, res)
  if not res or res.status >= 400 then return M.error_for(model, res, terr) end -- parse sees answers only
  local ok, out, perr = xpcall(p.parse, errors.traceback, model, req, res.status, res.headers, res.body)
  -- a raise is the script's bug (500, traceback logged); nil, err is an answer it cannot use (502)
  if not ok then return errors.script_error(model, "parse", out, req.id) end
  -- like error_for: name the upstream, the model and the HTTP status
  local who = ("upstream %q (model %q) answered HTTP %s"):format(model.provider, model.name,
    tostring(res.status))
  if not out then
    return fail(502, ("%s: %s"):format(who, redact(model, tostring(perr))))
  end
  return out
end

-- The transport options of spec for transport, and their release once it has answered
local function prepared(transport, model, spec)
  return M.prepare(model, spec, transport.sends_bodies)
end
local function sent(opts)
  if opts.made_body then core.body_release(opts.body) end
end

-- One call: returns parse's result table | nil, err.
function M.call_one(transport, model, p, req, spec, report)
  local opts = prepared(transport, model, spec)
  local res, terr = transport.request(opts)
  sent(opts)
  return parse_result(model, p, req, res, terr, report)
end

local function build(model, p, req)
  local ok, spec = xpcall(p.build, errors.traceback, model, req)
  if not ok then return errors.script_error(model, "build", spec, req.id) end
  if spec == nil then return fail(500, ("provider %q built no request"):format(model.provider)) end
  return spec
end

-- A sub-request over documents[first..last]; its documents keep their original tables.
local function slice(req, first, last)
  local sub = {}
  for k, v in pairs(req) do sub[k] = v end
  local docs = {}
  for i = first, last do docs[#docs + 1] = req.documents[i] end
  sub.documents = docs
  sub.top_n = nil -- every document of a batch needs a score
  return sub
end

local function add_usage(total, u)
  if type(u) ~= "table" then return end
  for k, v in pairs(u) do
    if type(v) == "number" then total[k] = (total[k] or 0) + v end
  end
end

-- A batch's scores as rank percentiles: the best of n gets 1, the k-th 1 - (k-1)/n (ties by
-- position); documents without a score stay without one. Batches of different sizes then
-- interleave by relative rank.
function M.rank_scores(bs, n)
  local idx = {}
  for j = 1, n do
    if bs[j] ~= nil then idx[#idx + 1] = j end
  end
  table.sort(idx, function(a, b)
    if bs[a] ~= bs[b] then return bs[a] > bs[b] end
    return a < b
  end)
  local out = {}
  for k, j in ipairs(idx) do out[j] = 1 - (k - 1) / n end
  return out
end

-- Above the provider's max_documents: batches called concurrently, scores merged by position
-- (by rank when the provider says comparable_scores = false).
local function call_split(transport, model, p, req, max_docs, report)
  local n = #req.documents
  local subs, opts = {}, {}
  for first = 1, n, max_docs do
    local sub = slice(req, first, math.min(n, first + max_docs - 1))
    local spec, err = build(model, p, sub)
    if not spec then return nil, err end
    if probe.applies(model, p) then spec = probe.resolve(model, p, spec) end
    subs[#subs + 1] = { req = sub, offset = first - 1 }
    opts[#opts + 1] = prepared(transport, model, spec)
  end
  local responses = transport.request_all(opts, model.concurrency or p.concurrency or 4)
  for i = 1, #opts do sent(opts[i]) end
  local scores, usage, degraded = {}, {}, false
  -- scores not comparable across calls (listwise LLMs): merge by rank within each batch
  local by_rank = p.comparable_scores == false or model.comparable_scores == false
  for i, sub in ipairs(subs) do
    local r = responses[i]
    local out, err = parse_result(model, p, sub.req, r and not r.error and r or nil, r and r.error, report)
    if not out then return nil, err end
    local bs, nb = {}, #sub.req.documents
    if out.scores then
      for j = 1, nb do bs[j] = tonumber(out.scores[j]) end
    else
      for _, item in ipairs(out.results or {}) do
        local idx = tonumber(item.index)
        if idx and idx >= 0 and idx < nb then bs[idx + 1] = tonumber(item.score or item.relevance_score) end
      end
    end
    if by_rank then bs = M.rank_scores(bs, nb) end
    for j = 1, nb do scores[sub.offset + j] = bs[j] end
    add_usage(usage, out.usage)
    degraded = degraded or out.degraded == true
  end
  return { scores = scores, usage = usage, degraded = degraded or nil }
end

-- Multi-round providers (LLM pointwise, listwise windows): plan(model, req, state) returns the
-- calls of the next round (nil or {} when done), absorb(model, req, state, calls, responses)
-- takes their answers ({status, headers, body} or {error=msg} each), combine(model, req, state)
-- returns the final output. The provider does no I/O; the runtime runs each round concurrently.
local function call_planned(transport, model, p, req, report)
  local state = {}
  for _ = 1, 1000 do
    local ok, calls = xpcall(p.plan, errors.traceback, model, req, state)
    if not ok then return errors.script_error(model, "plan", calls, req.id) end
    if not calls or #calls == 0 then break end
    local opts = {}
    for i, spec in ipairs(calls) do opts[i] = M.prepare(model, spec) end
    local responses = transport.request_all(opts, model.concurrency or p.concurrency or 8)
    for _, r in ipairs(responses) do note_status(report, r) end
    local aok, aerr = xpcall(p.absorb, errors.traceback, model, req, state, calls, responses)
    if not aok then return errors.script_error(model, "absorb", aerr, req.id) end
    if state.error then return nil, state.error end
  end
  local ok, out, perr = xpcall(p.combine, errors.traceback, model, req, state)
  if not ok then return errors.script_error(model, "combine", out, req.id) end
  if not out then return fail(502, ("provider %q: %s"):format(model.provider, redact(model, tostring(perr)))) end
  return out
end

-- One call raced against the same request built for the hedge target h = { model, provider,
-- after } (lua/rerank/engine/hedge.lua): transport.hedge sends the second when the first has not
-- answered after h.after; the first 2xx wins. Returns out (out.served_by names a winning
-- target), plus the race's report { index, hedged }.
local function call_hedged(transport, model, p, req, spec, h, report)
  local hspec = build(h.model, h.provider, req)
  if not hspec or probe.applies(h.model, h.provider) then return M.call_one(transport, model, p, req, spec, report) end
  local o1, o2 = prepared(transport, model, spec), prepared(transport, h.model, hspec)
  local r = transport.hedge(o1, o2, h.after)
  sent(o1)
  sent(o2)
  local res = r.result
  local who, wp = model, p
  if r.index == 2 then who, wp = h.model, h.provider end
  local out, err = parse_result(who, wp, req, not res.error and res or nil, res.error, report)
  if out and r.index == 2 then out.served_by = h.model.name end
  return out, err, r
end

-- The engine's entry for providers without score(): returns scores-or-results table.
-- report: a table for the last answer's HTTP status (note_status above), or nil.
function M.call(transport, model, p, req, hedge, report)
  if type(p.token) == "table" then -- a bearer token from an exchange first (lua/rerank/engine/token.lua); not hedged
    local out, err = token.call(function(t, m, pp, r) return M.call_with_token(t, m, pp, r, nil, report) end,
                                transport, model, p, req)
    return out, err
  end
  return M.call_with_token(transport, model, p, req, hedge, report)
end

-- hedge: an armed hedge (lua/rerank/engine/hedge.lua) or nil; the third return is the race's report.
function M.call_with_token(transport, model, p, req, hedge, report)
  if type(p.plan) == "function" then return call_planned(transport, model, p, req, report) end
  local max_docs = model.max_documents or (p.limits and p.limits.max_documents)
  -- a provider limited by bytes per call says how many of these documents fit in one
  if type(p.batch_size) == "function" then max_docs = p.batch_size(model, req, max_docs) end
  if max_docs and #req.documents > max_docs then return call_split(transport, model, p, req, max_docs, report) end
  local spec, err = build(model, p, req)
  if not spec then return nil, err end
  if probe.applies(model, p) then return probe.call(transport, model, p, req, spec, report) end
  if hedge then return call_hedged(transport, model, p, req, spec, hedge, report) end
  return M.call_one(transport, model, p, req, spec, report)
end

return M
