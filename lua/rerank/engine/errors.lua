-- The one error constructor of the library and the daemon (DESIGN: expected failures return
-- nil, err). err = { status = HTTP status, type = its error type (json.error_type: one type
-- per status), message = text for the client, param = the offending field or nil }, plus
-- any fields of extra (retry_after, upstream_status, fallbacks_tried, ...).
local json = require "rerank.json"

local error_type = json.error_type

local M = {}

function M.fail(status, message, param, extra)
  local e = { status = status, type = error_type(status), message = message, param = param }
  if extra then
    for k, v in pairs(extra) do e[k] = v end
  end
  return nil, e
end

-- "/srv/acme.lua:31: boom" -> "boom": a script's error message without the file paths
-- (and [string "..."] chunk names) Lua prefixes, so clients never see the server's layout.
function M.strip_paths(msg)
  msg = tostring(msg)
  msg = msg:gsub('%[string "[^"]*"%]:%d+:%s*', "")
  msg = msg:gsub("[^%s:'\"]*%.lua:%d+:%s*", "")
  msg = msg:gsub("[^%s:'\"]*/[^%s:'\"]*%.lua", "<script>")
  return msg
end

local function log_error(msg)
  local ok, core = pcall(require, "rerank.core")
  if ok and type(core) == "table" and core.log then pcall(core.log, "error", msg) end
end
M.log_error = log_error

-- A provider script raised (trace: the error with its traceback, from xpcall). The error log
-- gets the whole traceback; the client a 500 internal_error naming the provider, the model
-- and the function, without file paths.
function M.script_error(model, fn, trace, request_id)
  local who = ("provider %q (model %q)"):format(tostring(model.provider), tostring(model.name))
  trace = require("rerank.engine.upstream").redact(model, tostring(trace)) -- a key in the message never echoes
  log_error(("request %s: %s raised in %s: %s"):format(tostring(request_id or "-"), who, fn, tostring(trace)))
  local first = M.strip_paths(tostring(trace):match("^[^\n]*"))
  return M.fail(500, ("%s raised in %s: %s (traceback in the error log)"):format(who, fn, first))
end

-- xpcall's handler: the error and the stack that raised it.
function M.traceback(e)
  return debug.traceback(tostring(e), 1) -- LuaJIT: level 1 is the function that raised
end

return M
