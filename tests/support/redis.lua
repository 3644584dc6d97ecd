-- e2e helpers: a real redis-server on a free port (no persistence), for the specs that need one.
--   redis.start(password?, port?) -> { port, dir } ; redis.stop(r)
local d = require "support.daemon"

local M = {}

local function ping(port, password)
  return d.sh(("redis-cli -p %d %s --no-auth-warning ping 2>/dev/null"):format(port,
    password and ("-a " .. password) or "")):find("PONG") ~= nil
end

function M.start(password, port)
  local pass = password and (" --requirepass " .. password) or ""
  for _ = 1, 3 do -- a port another run holds: try another
    local p = port or (20000 + math.random(20000))
    local dir = d.tmpname("-redis")
    os.execute("mkdir -p " .. dir)
    os.execute(("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s --daemonize yes"
      .. " --pidfile %s/pid%s >/dev/null 2>&1"):format(p, dir, dir, pass))
    for _ = 1, 100 do
      if ping(p, password) then return { port = p, dir = dir } end
      d.sleep(0.05)
    end
    os.execute(("kill $(cat %s/pid 2>/dev/null) 2>/dev/null"):format(dir))
  end
  error("redis-server did not start")
end

function M.stop(r)
  if not r then return end
  os.execute(("kill $(cat %s/pid) 2>/dev/null"):format(r.dir))
  for _ = 1, 100 do
    if not ping(r.port) then return end
    d.sleep(0.05)
  end
end

return M
