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

-- The engine's entry for providers without score(): returns scores-or-results table.
function M.call(transport, model, p, req)
  local ok, spec = pcall(p.build, model, req)
  if not ok then
    return fail(500, "internal_error", ("provider %q failed to build the request: %s"):format(model.provider, tostring(spec)))
  end
  if spec == nil then return fail(500, "internal_error", ("provider %q built no request"):format(model.provider)) end
  return M.call_one(transport, model, p, req, spec)
end

return M
