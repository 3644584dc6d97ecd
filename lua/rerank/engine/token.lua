-- Bearer tokens a provider obtains with a call of its own before the rerank call (IBM IAM:
-- API key -> access token), cached per worker until 80% of their lifetime has passed (IBM's
-- SDK rule), then fetched again. The call goes through the same injected transport as the
-- rerank call (daemon, nginx, plain LuaJIT or a test double).
--
-- A provider declares
--   token = { request = function(model) -> { url, headers, body } | nil (no exchange: the
--                                            model's api_key is used as it is),
--             parse = function(body) -> token, expires_in (seconds) | nil, err }
-- and its build reads model.access_token (upstream.call hands build a copy of the model
-- carrying it). A rerank answer of 401 forgets the token, so the next request exchanges again.
--
--   M.get(transport, model, p)  -> token | false (no exchange for this model) | nil, err (a 502
--                                  upstream_auth_error/upstream_error)
--   M.with(model, token)        -> a shallow copy of model with access_token = token
--   M.forget(model, p)          -> drops the cached token
--   M.call(call, transport, model, p, req) -> call(transport, model with the token, p, req)
local core_ok, core = pcall(require, "rerank.core")
local fail = require("rerank.engine.errors").fail
local json = require "rerank.json"

local M = {}

local cache = {} -- key -> { token =, refresh_at = }; one entry per configured model and key
M.cache = cache

-- seconds (tests replace M.now)
function M.now()
  if core_ok and core.now_us then return core.now_us() / 1e6 end
  return os.time()
end

local function key(model, spec)
  return tostring(model.provider) .. "\0" .. tostring(spec.url) .. "\0" .. tostring(spec.body)
end

-- a short, key-free message from a token endpoint's error body (IAM: errorMessage)
local function message(body)
  local j = type(body) == "string" and json.decode(body)
  local m = type(j) == "table" and (j.errorMessage or j.error_description or j.message
    or (type(j.error) == "string" and j.error)) or nil
  if type(m) ~= "string" then return "" end
  if #m > 200 then m = m:sub(1, 200) .. "..." end
  return ": " .. m
end

function M.get(transport, model, p)
  local ok, spec = pcall(p.token.request, model)
  if not ok then
    return fail(500, ("provider %q failed to build the token request: %s"):format(model.provider, tostring(spec)))
  end
  if spec == nil then return false end
  local k = key(model, spec)
  local c = cache[k]
  local t = M.now()
  if c and t < c.refresh_at then return c.token end
  local who = ("upstream %q (model %q) token endpoint"):format(model.provider, model.name)
  local res, terr = transport.request({ method = "POST", url = spec.url, headers = spec.headers or {},
                                         body = spec.body, timeout = model.timeout or 30 })
  if not res then
    terr = tostring(terr)
    return fail(terr:find("^timeout") and 504 or 502, who .. " unreachable: " .. terr)
  end
  if res.status >= 400 then
    local auth = res.status == 400 or res.status == 401 or res.status == 403
    return nil, { status = 502, type = auth and "upstream_auth_error" or "upstream_error", upstream_status = res.status,
                  message = require("rerank.engine.upstream").redact(model,
                    ("%s returned HTTP %d%s"):format(who, res.status, message(res.body))),
                  retry_after = res.headers and res.headers["retry-after"] }
  end
  local pok, tok, expires = pcall(p.token.parse, res.body)
  if not pok or type(tok) ~= "string" or tok == "" then
    return fail(502, ("%s answered without a usable token%s"):format(who,
      (pok and type(expires) == "string") and (": " .. expires) or ""))
  end
  expires = tonumber(expires) or 3600
  cache[k] = { token = tok, refresh_at = t + 0.8 * expires }
  return tok
end

function M.with(model, tok)
  local m = {}
  for k, v in pairs(model) do m[k] = v end
  m.access_token = tok
  return m
end

function M.forget(model, p)
  local ok, spec = pcall(p.token.request, model)
  if ok and spec then cache[key(model, spec)] = nil end
end

-- call(transport, model_with_token, p, req) with a fresh or cached token; a 401 from the
-- upstream forgets the token (revoked or expired early)
function M.call(call, transport, model, p, req)
  local tok, err = M.get(transport, model, p)
  if tok == nil then return nil, err end
  local out, cerr = call(transport, tok and M.with(model, tok) or model, p, req)
  if not out and type(cerr) == "table" and cerr.upstream_status == 401 then M.forget(model, p) end
  return out, cerr
end

return M
