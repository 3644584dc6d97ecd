-- Upstream calls for HTTP providers: build → transport → parse, with the error mapping
-- every provider shares. The transport is injected (daemon: rerank.core.fetch; library:
-- libcurl or nginx cosockets; tests: a double) and has request(opts) and request_all(list, n).
local json = require "rerank.json"

local M = {}

local function fail(status, etype, message, param)
  return nil, { status = status, type = etype, message = message, param = param }
end

-- A short, key-free description of what the upstream said.
local function upstream_message(body)
  if type(body) ~= "string" or body == "" then return "" end
  local j = json.decode(body)
  local msg
  if type(j) == "table" then
    local e = j.error
    msg = j.message or j.detail or (type(e) == "table" and (e.message or e.type)) or (type(e) == "string" and e)
    if type(msg) == "table" then msg = json.encode(msg) end
  end
  msg = tostring(msg or body)
  if #msg > 300 then msg = msg:sub(1, 300) .. "…" end
  return msg
end
M.upstream_message = upstream_message

-- Encodes a built request: body tables become JSON. Returns transport options.
function M.prepare(model, spec)
  local headers = {}
  for k, v in pairs(spec.headers or {}) do headers[k] = v end
  for k, v in pairs(model.headers or {}) do headers[k] = v end
  local body = spec.body
  if type(body) == "table" then
    body = json.encode(body)
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  end
  return {
    method = spec.method or (body and "POST" or "GET"),
    url = spec.url, headers = headers, body = body,
    timeout = spec.timeout or model.timeout or 30,
    aws_sigv4 = spec.aws_sigv4, userpwd = spec.userpwd,
  }
end

-- Maps a transport failure or an HTTP error status to the gateway's error.
function M.error_for(model, res, err)
  local who = ("upstream %q (model %q)"):format(model.provider, model.name)
  if not res then
    err = tostring(err)
    if err:find("^timeout") then return fail(504, "timeout_error", who .. " timed out: " .. err) end
    return fail(502, "upstream_error", who .. " unreachable: " .. err)
  end
  local msg = upstream_message(res.body)
  local e = { status = 502, type = "upstream_error",
              message = ("%s returned HTTP %d%s"):format(who, res.status, msg ~= "" and (": " .. msg) or ""),
              upstream_status = res.status, retry_after = res.headers and res.headers["retry-after"] }
  return nil, e
end

-- One call: returns parse's result table | nil, err.
function M.call_one(transport, model, p, req, spec)
  local opts = M.prepare(model, spec)
  local res, terr = transport.request(opts)
  if not res or res.status >= 400 and not p.parse_errors then return M.error_for(model, res, terr) end
  local ok, out, perr = pcall(p.parse, model, req, res.status, res.headers, res.body)
  if not ok then
    return fail(502, "upstream_error",
      ("provider %q could not parse the upstream answer: %s"):format(model.provider, tostring(out)))
  end
  if not out then
    return fail(502, "upstream_error", ("provider %q: %s"):format(model.provider, tostring(perr)))
  end
  return out
end

-- Parses one transport result with the provider; returns its output | nil, err.
local function parse_result(model, p, req, res, terr)
  if not res or res.status >= 400 and not p.parse_errors then return M.error_for(model, res, terr) end
  local ok, out, perr = pcall(p.parse, model, req, res.status, res.headers, res.body)
  if not ok then
    return fail(502, "upstream_error",
      ("provider %q could not parse the upstream answer: %s"):format(model.provider, tostring(out)))
  end
  if not out then
    return fail(502, "upstream_error", ("provider %q: %s"):format(model.provider, tostring(perr)))
  end
  return out
end

-- One call: returns parse's result table | nil, err.
function M.call_one(transport, model, p, req, spec)
  local res, terr = transport.request(M.prepare(model, spec))
  return parse_result(model, p, req, res, terr)
end

local function build(model, p, req)
  local ok, spec = pcall(p.build, model, req)
  if not ok then
    return fail(500, "internal_error",
      ("provider %q failed to build the request: %s"):format(model.provider, tostring(spec)))
  end
  if spec == nil then return fail(500, "internal_error", ("provider %q built no request"):format(model.provider)) end
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

-- Above the provider's max_documents: batches called concurrently, scores merged by position.
local function call_split(transport, model, p, req, max_docs)
  local n = #req.documents
  local subs, opts = {}, {}
  for first = 1, n, max_docs do
    local sub = slice(req, first, math.min(n, first + max_docs - 1))
    local spec, err = build(model, p, sub)
    if not spec then return nil, err end
    subs[#subs + 1] = { req = sub, offset = first - 1 }
    opts[#opts + 1] = M.prepare(model, spec)
  end
  local responses = transport.request_all(opts, model.concurrency or p.concurrency or 4)
  local scores, usage, degraded = {}, {}, false
  for i, sub in ipairs(subs) do
    local r = responses[i]
    local out, err = parse_result(model, p, sub.req, r and not r.error and r or nil, r and r.error)
    if not out then return nil, err end
    if out.scores then
      for j = 1, #sub.req.documents do scores[sub.offset + j] = out.scores[j] end
    else
      for _, item in ipairs(out.results or {}) do
        local idx = tonumber(item.index)
        if idx then scores[sub.offset + idx + 1] = tonumber(item.score or item.relevance_score) end
      end
    end
    add_usage(usage, out.usage)
    degraded = degraded or out.degraded == true
  end
  return { scores = scores, usage = usage, degraded = degraded or nil }
end

-- Multi-round providers (LLM pointwise, listwise windows): plan(model, req, state) returns the
-- calls of the next round (nil or {} when done), absorb(model, req, state, calls, responses)
-- takes their answers ({status, headers, body} or {error=msg} each), combine(model, req, state)
-- returns the final output. The provider does no I/O; the runtime runs each round concurrently.
local function call_planned(transport, model, p, req)
  local state = {}
  for _ = 1, 1000 do
    local ok, calls = pcall(p.plan, model, req, state)
    if not ok then
      return fail(500, "internal_error", ("provider %q failed to plan: %s"):format(model.provider, tostring(calls)))
    end
    if not calls or #calls == 0 then break end
    local opts = {}
    for i, spec in ipairs(calls) do opts[i] = M.prepare(model, spec) end
    local responses = transport.request_all(opts, model.concurrency or p.concurrency or 8)
    local aok, aerr = pcall(p.absorb, model, req, state, calls, responses)
    if not aok then
      return fail(502, "upstream_error",
        ("provider %q could not use the upstream answers: %s"):format(model.provider, tostring(aerr)))
    end
    if state.error then return nil, state.error end
  end
  local ok, out, perr = pcall(p.combine, model, req, state)
  if not ok then
    return fail(500, "internal_error", ("provider %q failed to combine: %s"):format(model.provider, tostring(out)))
  end
  if not out then return fail(502, "upstream_error", ("provider %q: %s"):format(model.provider, tostring(perr))) end
  return out
end

-- The engine's entry for providers without score(): returns scores-or-results table.
function M.call(transport, model, p, req)
  if type(p.plan) == "function" then return call_planned(transport, model, p, req) end
  local max_docs = model.max_documents or (p.limits and p.limits.max_documents)
  if max_docs and #req.documents > max_docs then return call_split(transport, model, p, req, max_docs) end
  local spec, err = build(model, p, req)
  if not spec then return nil, err end
  return M.call_one(transport, model, p, req, spec)
end

return M
