-- http.request{method, url, headers, body, timeout} -> {status, headers, body} | nil, err
-- http.request_all({opts...}, concurrency)          -> { result | {error = err} ... }
-- The transport of the host this code runs in: the daemon's event loop (the calling request
-- coroutine yields until the transfer completes), nginx cosockets, or blocking libcurl in
-- plain LuaJIT. For scripts that need I/O beyond the provider contract (build/parse).
local rerank = require "rerank"

local transport = rerank.default_transport()
if not transport then error("rerank.http: no HTTP transport in this host", 2) end

return {
  request = transport.request,
  request_all = transport.request_all,
  sleep = transport.sleep,
  transport = transport.name,
}
