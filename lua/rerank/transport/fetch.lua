-- Transport for the daemon: non-blocking libcurl on the worker's event loop; each call
-- yields the request coroutine until its transfers complete (core/fetch_loop.c).
local fetch = require "rerank.core.fetch"

return {
  name = "fetch",
  request = fetch.request,
  request_all = fetch.request_all,
  hedge = fetch.hedge, -- two transfers raced (lua/rerank/engine/hedge.lua)
  sleep = fetch.sleep,
  -- upstream bodies may be bodies (core.body); every call frees its transfers before it
  -- returns, so lua/rerank/engine/upstream.lua may release them then
  sends_bodies = true,
}
