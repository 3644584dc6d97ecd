-- e2e helpers for nginx (Debian's nginx + libnginx-mod-http-lua) running the rerank library,
-- and for the mock upstream (tests/mock/mock_upstream.py).
--   nginx.available()             -> true | false, why
--   nginx.free_port()             -> a TCP port nobody listens on now
--   nginx.start{ conf =, config =, port = } -> handle { pid, port, url, prefix } | nil, err
--       conf: nginx.conf text (default: examples/nginx/nginx.conf with its listen port replaced);
--       config: config.yaml text written to PREFIX/config.yaml. PREFIX is a fresh directory
--       under tests/tmp laid out like a checkout (lua/, providers/, rerank/core.so symlinked).
--   nginx.stop(h), nginx.errors(h) -> error.log text
--   nginx.start_mock() -> { pid, port, url } | nil, err ; nginx.stop_mock(m)
local d = require "support.daemon"

local M = {}
local root, tmp, sh = d.root, d.tmp, d.sh

M.NGINX = os.getenv("NGINX") or "nginx"
M.LUA_MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so"

function M.available()
  if sh("command -v " .. M.NGINX .. " 2>/dev/null") == "" and not d.readfile("/usr/sbin/nginx") then
    return false, "nginx is not installed (apt install nginx libnginx-mod-http-lua)"
  end
  if not d.readfile(M.LUA_MODULE) then return false, "libnginx-mod-http-lua is not installed" end
  return true
end

local function nginx_bin()
  if sh("command -v " .. M.NGINX .. " 2>/dev/null") ~= "" then return M.NGINX end
  return "/usr/sbin/nginx"
end

function M.free_port()
  local out = sh([[python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])']])
  local port = tonumber(out:match("%d+"))
  if port then return port end
  return 20000 + math.random(0, 20000)
end

local function alive(pid)
  return sh("kill -0 " .. pid .. " 2>/dev/null && echo alive") ~= ""
end

local function wait_port(port, pid, log)
  for _ = 1, 200 do
    local code = sh(("curl -s -o /dev/null -w '%%{http_code}' --max-time 1 http://127.0.0.1:%d/ 2>/dev/null"):format(port))
    if tonumber(code) and tonumber(code) > 0 then return true end
    if not alive(pid) then return nil, "exited: " .. (d.readfile(log) or "") end
    d.sleep(0.05)
  end
  return nil, "did not start listening: " .. (d.readfile(log) or "")
end

function M.example_conf(port)
  local conf = assert(d.readfile(root .. "/examples/nginx/nginx.conf"))
  local n
  conf, n = conf:gsub("listen 127%.0%.0%.1:8080;", ("listen 127.0.0.1:%d;"):format(port))
  assert(n == 1, "examples/nginx/nginx.conf: expected one `listen 127.0.0.1:8080;`")
  return conf
end

-- Under `make sanitize` rerank/core.so is ASan-instrumented: nginx (not instrumented)
-- needs the runtime preloaded to load it.
local function sanitize_env()
  if (os.getenv("RERANKD_SANITIZE") or "") == "" then return "" end
  local so = sh("clang -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null"):gsub("%s+$", "")
  local f = so ~= "" and io.open(so, "rb")
  if not f then return "" end
  f:close()
  return ("LD_PRELOAD=%s ASAN_OPTIONS=detect_leaks=0 "):format(so)
end

function M.start(opts)
  opts = opts or {}
  local ok, why = M.available()
  if not ok then return nil, why end
  local port = opts.port or M.free_port()
  local prefix = ("%s/nginx_%d_%d"):format(tmp, os.time(), math.random(1e6))
  -- the core.so this run uses (LUA_CPATH; under make sanitize: build/asan/rerank/core.so)
  local so = package.searchpath("rerank.core", package.cpath) or (root .. "/rerank/core.so")
  local sodir = so:match("^(.*)/core%.so$") or (root .. "/rerank")
  if sodir:sub(1, 1) ~= "/" then sodir = root .. "/" .. sodir end
  os.execute(("mkdir -p %s/logs && ln -s %s/lua %s/providers %s/ && ln -s %s %s/rerank"):format(
    prefix, root, root, prefix, sodir, prefix))
  local conf = opts.conf or M.example_conf(port)
  conf = conf:gsub("%$PORT", tostring(port))
  d.writefile(prefix .. "/nginx.conf", conf)
  if opts.config then d.writefile(prefix .. "/config.yaml", opts.config) end
  for name, text in pairs(opts.files or {}) do d.writefile(prefix .. "/" .. name, text) end
  local log = prefix .. "/logs/stderr.log"
  local pid = sh(("%s %s -p %s -e %s/logs/error.log -c %s/nginx.conf -g 'daemon off;' >%s 2>&1 & echo $!"):format(
    (opts.env or "") .. " " .. sanitize_env(), nginx_bin(), prefix, prefix, prefix, log))
  pid = tonumber(pid:match("%d+"))
  local h = { pid = pid, port = port, url = "http://127.0.0.1:" .. port, prefix = prefix, log = log }
  local up, err = wait_port(port, pid, log)
  if not up then
    err = err .. (d.readfile(prefix .. "/logs/error.log") or "")
    M.stop(h)
    return nil, "nginx " .. err
  end
  return h
end

function M.errors(h)
  return (d.readfile(h.prefix .. "/logs/error.log") or "") .. (d.readfile(h.log) or "")
end

function M.stop(h)
  if not h or not h.pid then return end
  os.execute("kill -QUIT " .. h.pid .. " 2>/dev/null") -- graceful: the master waits for its workers
  for _ = 1, 100 do
    if not alive(h.pid) then break end
    d.sleep(0.05)
  end
  if alive(h.pid) then
    os.execute("kill -TERM " .. h.pid .. " 2>/dev/null")
    d.sleep(0.2)
    os.execute("kill -KILL " .. h.pid .. " 2>/dev/null")
  end
  h.pid = nil
  if not os.getenv("KEEP_TMP") then os.execute("rm -rf " .. h.prefix) end
end

function M.start_mock()
  local log = d.tmpname(".mock.log")
  local pid = sh(("python3 %s/tests/mock/mock_upstream.py --port 0 >%s 2>&1 & echo $!"):format(root, log))
  pid = tonumber(pid:match("%d+"))
  for _ = 1, 200 do
    local port = (d.readfile(log) or ""):match("listening on [%d.]+:(%d+)")
    if port then return { pid = pid, port = tonumber(port), url = "http://127.0.0.1:" .. port, log = log } end
    if not alive(pid) then return nil, "mock upstream exited: " .. (d.readfile(log) or "") end
    d.sleep(0.05)
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  return nil, "mock upstream did not start: " .. (d.readfile(log) or "")
end

function M.stop_mock(m)
  if m and m.pid then
    os.execute("kill " .. m.pid .. " 2>/dev/null")
    m.pid = nil
    os.remove(m.log)
  end
end

return M
