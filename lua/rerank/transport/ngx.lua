-- Transport for nginx's Lua module (lua-nginx-module, OpenResty): a minimal HTTP/1.1 client
-- over cosockets (ngx.socket.tcp), so an upstream call yields the request's Lua thread and
-- never blocks the nginx worker.
--   request(opts)              -> { status, headers (lower-case names), body } | nil, err
--   request_all(list, n)       -> { result | { error = err } ... }, at most n in flight
--   sleep(seconds)             -> ngx.sleep
--   configure{ pool_size = 32, keepalive_timeout = 60, ssl_verify = true, user_agent = ... }
-- opts: method, url (http:// or https://), headers {name = value}, body (string), timeout
-- (seconds, the whole call: connect, TLS, send and receive), connect_timeout (seconds),
-- insecure (true: no certificate check), ssl_verify (false: same), server_name (SNI, default
-- the URL's host), userpwd ("user:password", basic auth). Same options and result shape as
-- the libcurl transports (core/curl_call.c); aws_sigv4 ("aws:amz:REGION:SERVICE" with userpwd
-- "KEY:SECRET") signs with rerank.transport.sigv4 (libcrypto through the FFI) like CURLOPT_AWS_SIGV4.
-- Errors start with a kind like libcurl's: "timeout: ", "connect: ", "dns: ", "tls: ",
-- "io: ", "too_large: ", "http: " (upstream.lua maps "timeout" to 504, the rest to 502).
-- Connections are kept alive per scheme/host/port/SNI/verify pool with setkeepalive;
-- certificate checks need lua_ssl_trusted_certificate in nginx.conf, and host names need a
-- `resolver` (an IP address or "localhost" needs neither).
local ngx = ngx -- the nginx Lua module's global (nil outside nginx)
local sigv4 = require "rerank.transport.sigv4"

local M = {
  name = "ngx",
  pool_size = 32,           -- idle connections kept per pool and worker
  keepalive_timeout = 60,   -- seconds an idle connection stays in the pool
  ssl_verify = true,        -- default certificate check for https
  max_body = 64 * 1024 * 1024,
  user_agent = "rerankd",
}

local sub, find, lower = string.sub, string.find, string.lower
local concat, insert = table.concat, table.insert
local tonumber, tostring, type, pairs, ipairs = tonumber, tostring, type, pairs, ipairs

function M.configure(o)
  if type(o) ~= "table" then error("ngx transport: configure expects a table", 2) end
  for _, k in ipairs({ "pool_size", "keepalive_timeout", "max_body" }) do
    if o[k] ~= nil then
      if type(o[k]) ~= "number" or o[k] <= 0 then error("ngx transport: " .. k .. " must be a positive number", 2) end
      M[k] = o[k]
    end
  end
  if o.ssl_verify ~= nil then M.ssl_verify = o.ssl_verify and true or false end
  if o.user_agent ~= nil then M.user_agent = tostring(o.user_agent) end
  return M
end

-- "https://user@host:port/path?q" -> scheme, host, port, path (raises nothing; nil, err when bad)
local function parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "http: bad URL " .. url end
  scheme = lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then return nil, "http: unsupported scheme " .. scheme end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  authority = authority:gsub("^.*@", "")
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif sub(path, 1, 1) == "?" then path = "/" .. path end
  local host, port
  if sub(authority, 1, 1) == "[" then
    host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host or host == "" then return nil, "http: bad URL " .. url end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "http: bad port in URL " .. url end
  return scheme, host, port, path
end
M.parse_url = parse_url

local function check_opts(opts, level)
  if type(opts) ~= "table" then error("http request: options must be a table", level) end
  if type(opts.url) ~= "string" then error("http request: url is required", level) end
  for _, k in ipairs({ "method", "body", "userpwd", "server_name", "aws_sigv4" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then error("http request: " .. k .. " must be a string", level) end
  end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then error("http request: headers must be a table", level) end
end

local function remaining_ms(deadline)
  local left = (deadline - ngx.now()) * 1000
  if left < 1 then return 1 end
  return left
end

local function classify(stage, err)
  err = tostring(err)
  if err == "timeout" or find(err, "timed out", 1, true) then return "timeout: " .. stage .. " timed out" end
  return nil, err
end

local function host_header(scheme, host, port)
  local default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
  local h = find(host, ":", 1, true) and ("[" .. host .. "]") or host
  if not default_port then h = h .. ":" .. port end
  return h
end

-- The request bytes as a table of strings (sock:send accepts a table).
local function request_bytes(opts, scheme, host, port, path)
  local method = opts.method or (opts.body and "POST" or "GET")
  local hosthdr = host_header(scheme, host, port)
  local out = { method, " ", path, " HTTP/1.1\r\n" }
  local have = {}
  for k, v in pairs(opts.headers or {}) do
    if type(k) == "string" and not find(k, "[%c: ]") and (type(v) == "string" or type(v) == "number") then
      local lk = lower(k)
      -- we speak identity bodies and set the framing ourselves
      if lk ~= "content-length" and lk ~= "transfer-encoding" and lk ~= "connection" and lk ~= "accept-encoding" then
        have[lk] = true
        v = tostring(v):gsub("[\r\n]", " ")
        out[#out + 1] = k
        out[#out + 1] = ": "
        out[#out + 1] = v
        out[#out + 1] = "\r\n"
      end
    end
  end
  if not have.host then insert(out, 5, "Host: " .. hosthdr .. "\r\n") end
  if not have["user-agent"] then out[#out + 1] = "User-Agent: " .. M.user_agent .. "\r\n" end
  if not have.accept then out[#out + 1] = "Accept: */*\r\n" end
  if opts.userpwd and not opts.aws_sigv4 and not have.authorization then
    out[#out + 1] = "Authorization: Basic " .. ngx.encode_base64(opts.userpwd) .. "\r\n"
  end
  local body = opts.body
  if body or (method ~= "GET" and method ~= "HEAD" and method ~= "DELETE" and method ~= "OPTIONS") then
    out[#out + 1] = "Content-Length: " .. #(body or "") .. "\r\n"
  end
  out[#out + 1] = "\r\n"
  if body and body ~= "" then out[#out + 1] = body end
  return out, method
end

-- Reads the status line and headers; returns status, headers, version | nil, err, got_nothing.
local function read_head(sock, deadline)
  local status, version, headers
  repeat
    sock:settimeouts(nil, nil, remaining_ms(deadline))
    local line, err = sock:receive("*l")
    if not line then
      local t = classify("receive", err)
      return nil, t or ("io: " .. tostring(err)), status == nil
    end
    local v, code = line:match("^HTTP/(%d%.%d)%s+(%d%d%d)")
    if not v then return nil, "http: bad status line " .. line:sub(1, 80) end
    version, status = v, tonumber(code)
    headers = {}
    while true do
      local h, herr = sock:receive("*l")
      if not h then
        local t = classify("receive", herr)
        return nil, t or ("io: " .. tostring(herr))
      end
      if h == "" then break end
      local name, value = h:match("^([^:]+):[ \t]*(.-)[ \t]*$")
      if name then
        name = lower(name)
        local prev = headers[name]
        headers[name] = prev and (prev .. ", " .. value) or value
      end
    end
  until status >= 200 or status == 101 -- 1xx interim answers (100 Continue) come before the real one
  return status, headers, version
end

local function read_chunked(sock, deadline, max)
  local parts, total = {}, 0
  while true do
    sock:settimeouts(nil, nil, remaining_ms(deadline))
    local line, err = sock:receive("*l")
    if not line then return nil, classify("receive", err) or ("io: " .. tostring(err)) end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then return nil, "http: bad chunk size " .. line:sub(1, 40) end
    if size == 0 then
      repeat -- trailers
        line, err = sock:receive("*l")
        if not line then return nil, classify("receive", err) or ("io: " .. tostring(err)) end
      until line == ""
      return concat(parts)
    end
    total = total + size
    if total > max then return nil, "too_large: response body exceeds " .. max .. " bytes" end
    local data, derr = sock:receive(size)
    if not data then return nil, classify("receive", derr) or ("io: " .. tostring(derr)) end
    parts[#parts + 1] = data
    local crlf, cerr = sock:receive("*l")
    if not crlf then return nil, classify("receive", cerr) or ("io: " .. tostring(cerr)) end
  end
end

local function read_to_close(sock, deadline, max)
  local parts, total = {}, 0
  while true do
    sock:settimeouts(nil, nil, remaining_ms(deadline))
    local data, err, partial = sock:receive(65536)
    data = data or partial
    if data and data ~= "" then
      total = total + #data
      if total > max then return nil, "too_large: response body exceeds " .. max .. " bytes" end
      parts[#parts + 1] = data
    end
    if err == "closed" then return concat(parts) end
    if err then return nil, classify("receive", err) or ("io: " .. tostring(err)) end
  end
end

-- One attempt on one connection; returns res | nil, err, retryable (stale keep-alive connection).
local function attempt(opts, u, deadline)
  local sock = ngx.socket.tcp()
  local verify = M.ssl_verify
  if opts.insecure or opts.ssl_verify == false then verify = false end
  if opts.ssl_verify == true then verify = true end
  local sni = opts.server_name or u.host
  local pool = ("%s://%s:%d|%s|%s"):format(u.scheme, u.host, u.port, u.scheme == "https" and sni or "",
    verify and "v" or "n")
  local connect_ms = remaining_ms(deadline)
  if opts.connect_timeout and opts.connect_timeout * 1000 < connect_ms then connect_ms = opts.connect_timeout * 1000 end
  sock:settimeouts(connect_ms, remaining_ms(deadline), remaining_ms(deadline))
  local addr = u.host == "localhost" and "127.0.0.1" or u.host
  local ok, err = sock:connect(addr, u.port, { pool = pool, pool_size = M.pool_size })
  if not ok then
    local t = classify("connect", err)
    if t then return nil, t end
    if find(err, "resolve", 1, true) or find(err, "resolver", 1, true) then return nil, "dns: " .. err end
    return nil, ("connect: %s:%d: %s"):format(u.host, u.port, err)
  end
  local reused = sock:getreusedtimes() or 0
  if u.scheme == "https" and reused == 0 then
    sock:settimeouts(nil, remaining_ms(deadline), remaining_ms(deadline))
    -- false: no session to reuse and none wanted back (returns true). pcall: lua-resty-core
    -- 0.1.25 can raise "assertion failed!" when a local peer fails verification at once
    -- (lua-resty-core issue 499)
    local hok, sess, serr = pcall(sock.sslhandshake, sock, false, sni, verify)
    if not hok then sess, serr = nil, "handshake failed: " .. tostring(sess) end
    if not sess then
      sock:close()
      return nil, classify("TLS handshake", serr) or ("tls: " .. tostring(serr))
    end
  end
  sock:settimeouts(nil, remaining_ms(deadline), remaining_ms(deadline))
  local bytes, method = request_bytes(opts, u.scheme, u.host, u.port, u.path)
  local sent, serr = sock:send(bytes)
  if not sent then
    sock:close()
    local t = classify("send", serr)
    return nil, t or ("io: send: " .. tostring(serr)), reused > 0
  end
  local status, headers, version = read_head(sock, deadline)
  if not status then
    sock:close()
    return nil, headers, reused > 0 and version -- version is "got nothing" here
  end
  local body, berr
  local te = headers["transfer-encoding"]
  local conn = lower(headers["connection"] or "")
  local keep = not find(conn, "close", 1, true) and (version == "1.1" or find(conn, "keep-alive", 1, true))
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    body = ""
  elseif te and find(lower(te), "chunked", 1, true) then
    body, berr = read_chunked(sock, deadline, M.max_body)
  elseif headers["content-length"] then
    local n = tonumber(headers["content-length"])
    if not n or n < 0 then
      sock:close()
      return nil, "http: bad Content-Length " .. tostring(headers["content-length"])
    end
    if n > M.max_body then
      sock:close()
      return nil, "too_large: response body exceeds " .. M.max_body .. " bytes"
    end
    if n == 0 then
      body = ""
    else
      sock:settimeouts(nil, nil, remaining_ms(deadline))
      local partial
      body, berr, partial = sock:receive(n)
      if not body then
        berr = classify("receive", berr)
          or ("io: body ended after %d of %d bytes (%s)"):format(partial and #partial or 0, n, tostring(berr))
      end
    end
  else
    keep = false
    body, berr = read_to_close(sock, deadline, M.max_body)
  end
  if not body then
    sock:close()
    return nil, berr
  end
  if keep then
    sock:setkeepalive(M.keepalive_timeout * 1000, M.pool_size)
  else
    sock:close()
  end
  return { status = status, headers = headers, body = body, reused = reused }
end

function M.request(opts)
  check_opts(opts, 2)
  local scheme, host, port, path = parse_url(opts.url)
  if not scheme then return nil, host end
  if opts.aws_sigv4 then -- what libcurl's CURLOPT_AWS_SIGV4 does in the other transports
    local signed, serr = sigv4.sign({ method = opts.method or (opts.body and "POST" or "GET"),
      host = host_header(scheme, host, port), path = path, headers = opts.headers, body = opts.body,
      aws_sigv4 = opts.aws_sigv4, userpwd = opts.userpwd })
    if not signed then return nil, "http: " .. serr end
    local h = {}
    for k, v in pairs(opts.headers or {}) do
      local lk = type(k) == "string" and lower(k)
      if lk ~= "authorization" and lk ~= "x-amz-date" then h[k] = v end
    end
    h.Authorization, h["X-Amz-Date"] = signed.authorization, signed["x-amz-date"]
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.headers = h
    opts = o
  end
  local u = { scheme = scheme, host = host, port = port, path = path }
  local timeout = tonumber(opts.timeout) or 30
  ngx.update_time()
  local deadline = ngx.now() + timeout
  local res, err, retry = attempt(opts, u, deadline)
  -- a pooled connection the server closed meanwhile: one fresh try, like libcurl
  if not res and retry and ngx.now() < deadline then res, err = attempt(opts, u, deadline) end
  if not res then return nil, err end
  return res
end

-- Runs the calls with at most `concurrency` in flight (light threads); results in order.
function M.request_all(list, concurrency)
  if type(list) ~= "table" then error("http request_all: expects a list of options", 2) end
  local n = #list
  for i = 1, n do check_opts(list[i], 2) end
  local results = {}
  local function one(i)
    local res, err = M.request(list[i])
    results[i] = res or { error = err }
  end
  concurrency = math.floor(tonumber(concurrency) or 8)
  if concurrency < 1 then concurrency = 1 end
  if concurrency > n then concurrency = n end
  if n == 1 or concurrency == 1 then
    for i = 1, n do one(i) end
    return results
  end
  local next_i = 0
  local function worker()
    while next_i < n do
      next_i = next_i + 1
      local i = next_i
      local ok, e = pcall(one, i)
      if not ok then results[i] = { error = "http: " .. tostring(e) } end
    end
  end
  local threads = {}
  for t = 1, concurrency do
    local ok, th = pcall(ngx.thread.spawn, worker)
    if not ok or not th then -- no light threads in this phase (init, timer-less contexts): run inline
      worker()
      break
    end
    threads[t] = th
  end
  for t = 1, concurrency do
    if threads[t] then
      local ok, err = ngx.thread.wait(threads[t])
      if not ok then ngx.log(ngx.ERR, "rerank ngx transport: request thread failed: ", tostring(err)) end
    end
  end
  for i = 1, n do
    if results[i] == nil then results[i] = { error = "http: request was not run" } end
  end
  return results
end

function M.sleep(seconds) return ngx.sleep(seconds) end

return M
