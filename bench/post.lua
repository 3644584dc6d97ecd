-- wrk script: POST the JSON bodies in the files listed (space-separated) in
-- $BENCH_BODY, cycling through them; GET when unset; $BENCH_AUTH, when set, is sent as
-- the Authorization header. Prints one machine-readable line at the end (latencies in
-- microseconds).
-- luacheck: globals wrk request done
local requests_ = {}
-- wrk adds Host only in wrk.init, after this file ran: HTTP/1.1 requires it (nginx: 400)
local host = wrk.port and (wrk.host .. ":" .. wrk.port) or wrk.host
local path = os.getenv("BENCH_BODY") or ""
local auth = os.getenv("BENCH_AUTH")
for file in path:gmatch("%S+") do
  local f = assert(io.open(file, "rb"))
  local body = f:read("*a")
  f:close()
  requests_[#requests_ + 1] = wrk.format("POST", nil,
    { ["Content-Type"] = "application/json", Host = host, Authorization = auth ~= "" and auth or nil }, body)
end
local i = 0

if #requests_ > 0 then
  function request()
    i = i % #requests_ + 1
    return requests_[i]
  end
end

function done(summary, latency)
  local e = summary.errors
  -- errors: all of wrk's; non2xx: the responses wrk counts as "Non-2xx or 3xx" (status > 399)
  io.write(string.format("RESULT p50=%d p99=%d rps=%.1f requests=%d errors=%d non2xx=%d\n",
    latency:percentile(50), latency:percentile(99),
    summary.requests / (summary.duration / 1e6), summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, e.status))
end
