-- e2e helpers: start the real rerankd binary on a free port, talk to it with curl.
local cjson = require "cjson"

local M = {}
local root = os.getenv("PWD")
local tmp = root .. "/tests/tmp"
os.execute("mkdir -p " .. tmp)
M.root, M.tmp = root, tmp
-- make sanitize points RERANKD_BIN at the instrumented binary
-- The command that runs the daemon: its Lua tree, and without the ASan runtime preload that
-- the luajit test host may carry (an instrumented rerankd links its own).
M.bin = ("env -u LD_PRELOAD RERANKD_HOME=%s %s"):format(root, os.getenv("RERANKD_BIN") or (root .. "/rerankd"))

-- Commands never inherit the ASan runtime preload of a sanitize run (curl, python, node
-- and the instrumented daemon must not load it).
local function sh(cmd)
  local p = assert(io.popen("unset LD_PRELOAD; " .. cmd))
  local out = p:read("*a")
  p:close()
  return out
end
M.sh = sh

local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.readfile = readfile

function M.writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

local seq = 0
-- the pid keeps concurrent test runs (same second, same random seed) off each other's files
local PID = (readfile("/proc/self/stat") or ""):match("^(%d+)") or "0"
math.randomseed(os.time() * 65536 + tonumber(PID)) -- random ports differ between concurrent runs
local function tmpname(ext)
  seq = seq + 1
  return ("%s/e2e_%s_%d_%d%s"):format(tmp, PID, math.random(1e9), seq, ext or "")
end
M.tmpname = tmpname

local function sleep(s) os.execute("sleep " .. s) end
M.sleep = sleep

-- Starts rerankd; cfg is YAML text (or nil for the shipped config.yaml). Returns a handle.
function M.start(cfg, opts)
  opts = opts or {}
  local cfgpath = root .. "/config.yaml"
  if cfg then cfgpath = M.writefile(tmpname(".yaml"), cfg) end
  local log = tmpname(".log")
  local workers = opts.workers or 1
  local env = opts.env or ""
  local pid = sh(("RERANKD_HOME=%s %s %s -c %s -p 0 -w %d >%s 2>&1 & echo $!"):format(
    root, env, M.bin, cfgpath, workers, log))
  pid = tonumber(pid:match("%d+"))
  local d = { pid = pid, log = log, cfg = cfgpath }
  for _ = 1, 100 do
    local text = readfile(log) or ""
    local port = text:match("listening on [^\n]-:(%d+) with")
    if port then
      d.port = tonumber(port)
      d.url = "http://127.0.0.1:" .. port
      return d
    end
    if sh("kill -0 " .. pid .. " 2>/dev/null && echo alive") == "" then
      return nil, "rerankd exited: " .. text
    end
    sleep(0.05)
  end
  M.stop(d)
  return nil, "rerankd did not start: " .. (readfile(log) or "")
end

-- Running (a zombie waiting for its reaper counts as gone).
function M.alive(d)
  local stat = readfile("/proc/" .. d.pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

-- Stops the daemon (SIGTERM) and returns its exit status.
function M.stop(d)
  if not d or not d.pid then return end
  os.execute("kill -TERM " .. d.pid .. " 2>/dev/null")
  for i = 1, 200 do
    if not M.alive(d) then break end
    sleep(i < 20 and 0.01 or 0.05)
  end
  os.execute("kill -KILL " .. d.pid .. " 2>/dev/null")
end

function M.logtext(d) return readfile(d.log) or "" end

-- Starts a python3 mock from tests/mock/ (default mock_upstream.py) with extra command-line
-- args (e.g. "--key test-key"): { pid, port, url, log }.
function M.start_mock(script, args)
  local out = tmpname(".mock")
  local pid = tonumber(sh(("python3 %s/tests/mock/%s --port 0 %s>%s 2>&1 & echo $!"):format(
    root, script or "mock_upstream.py", args and (args .. " ") or "", out)))
  for _ = 1, 100 do
    local port = (readfile(out) or ""):match("listening on 127%.0%.0%.1:(%d+)")
    if port then return { pid = pid, port = tonumber(port), url = "http://127.0.0.1:" .. port, log = out } end
    sleep(0.05)
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  error("mock did not start: " .. (readfile(out) or ""))
end

function M.stop_mock(m)
  if m and m.pid then os.execute("kill " .. m.pid .. " 2>/dev/null") end
end

-- The requests a mock has recorded (GET /_mock/requests), decoded; and forgetting them.
function M.mock_requests(mock)
  return cjson.decode(sh("curl -s " .. mock.url .. "/_mock/requests"))
end

function M.mock_reset(mock) sh("curl -s -X POST " .. mock.url .. "/_mock/reset") end

-- Wall-clock seconds with sub-second precision (date +%s.%N).
function M.now()
  local f = io.popen("date +%s.%N")
  local t = tonumber(f:read("*a"))
  f:close()
  return t
end

-- Open file descriptors of a process (Linux /proc).
function M.fd_count(pid)
  return tonumber(sh("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")) or 0
end

-- POST /v1/rerank with body's fields over a query and documents (default: three short texts).
M.DOCS = { "the cat sat", "a dog barked", "cat and dog" }
function M.rerank(d, body, headers, docs)
  local b = { query = "cat dog", documents = docs or M.DOCS }
  for k, v in pairs(body) do b[k] = v end
  return M.request(d, "/v1/rerank", { body = b, headers = headers })
end

-- One HTTP request with curl. opts: method, body (string or table → JSON), headers {k=v}, raw_args.
-- Returns status, body_string, headers (lower-case names), decoded JSON (or nil).
function M.request(d, path, opts)
  opts = opts or {}
  local args = { "curl -s -S --max-time " .. (opts.timeout or 20) }
  local bodyfile, outfile, hdrfile = tmpname(".req"), tmpname(".out"), tmpname(".hdr")
  if opts.method then args[#args + 1] = "-X " .. opts.method end
  local body = opts.body
  if type(body) == "table" then body = cjson.encode(body) end
  if body then
    M.writefile(bodyfile, body)
    args[#args + 1] = "--data-binary @" .. bodyfile
    if not (opts.headers and opts.headers["Content-Type"]) then
      args[#args + 1] = "-H 'Content-Type: application/json'"
    end
  end
  for k, v in pairs(opts.headers or {}) do args[#args + 1] = ("-H '%s: %s'"):format(k, v) end
  args[#args + 1] = opts.raw_args or ""
  args[#args + 1] = ("-o %s -D %s -w '%%{http_code}' '%s%s'"):format(outfile, hdrfile, d.url, path)
  local status = tonumber(sh(table.concat(args, " ") .. " 2>/dev/null"))
  local out = readfile(outfile) or ""
  local headers = {}
  for line in (readfile(hdrfile) or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  os.remove(bodyfile); os.remove(outfile); os.remove(hdrfile)
  local ok, decoded = pcall(cjson.decode, out)
  return status, out, headers, ok and decoded or nil
end

-- `rerankd SUBCOMMAND ARGS` from the source tree: exit status, stdout, stderr.
function M.cli(subcommand, args)
  local err = tmpname(".err")
  local out = sh(("cd %s && %s %s %s 2>%s; echo \"rc=$?\""):format(root, M.bin, subcommand, args, err))
  local rc = tonumber(out:match("rc=(%d+)\n?$"))
  out = out:gsub("rc=%d+\n?$", "")
  local e = readfile(err) or ""
  os.remove(err)
  return rc, out, e
end

return M
