-- Transport for plain LuaJIT: libcurl from rerank/core.so, blocking the caller until the
-- call's transfers finish (several run concurrently inside one request_all).
local core = require "rerank.core"

if type(core.http_request) ~= "function" then
  return nil -- the daemon's core has no blocking transport (its workers use rerank.core.fetch)
end

local M = { name = "curl" }

function M.request(opts) return core.http_request(opts) end

function M.request_all(list, concurrency) return core.http_request_all(list, concurrency) end

function M.sleep(seconds)
  local deadline = core.now_us() + seconds * 1e6
  while core.now_us() < deadline do
    os.execute(("sleep %.3f"):format(math.max(0.001, (deadline - core.now_us()) / 1e6)))
  end
end

return M
