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

return M
