-- Raw TCP for e2e tests (LuaJIT FFI, Linux): byte-exact HTTP requests that curl will not
-- send (pipelined garbage, broken framing, slow writers), with timeouts on every call.
--
--   local raw = require "support.rawtcp"
--   local c = assert(raw.connect(port))          -- 127.0.0.1 only
--   c:send(bytes [, timeout])  -> true | nil, "closed" | "timeout"
--   c:read_response(timeout)   -> { status, headers, body, version } | nil, "closed" | "timeout" | "bad"
--   c:read_all(timeout)        -> bytes, "closed" | "timeout"   (until EOF or the timeout)
--   c:wait_closed(timeout)     -> true when the peer closed (EOF or reset) within timeout
--   c:shutdown_write()         -- half-close (the server reads EOF)
--   c:close()
--   raw.exchange(port, bytes, timeout) -> { responses = {...}, closed = bool, rest = bytes }
--   raw.parse_responses(bytes [, head]) -> responses, rest   (Content-Length framing; no
--                                          length: the body runs to the end; head: no bodies)
local ffi = require "ffi"
local bit = require "bit"

ffi.cdef [[
typedef unsigned int rt_socklen_t;
struct rt_sockaddr_in { uint16_t sin_family; uint16_t sin_port; uint32_t sin_addr; uint8_t zero[8]; };
struct rt_pollfd { int fd; short events; short revents; };
int socket(int domain, int type, int protocol);
int connect(int fd, const void *addr, rt_socklen_t len);
long send(int fd, const void *buf, size_t len, int flags);
long recv(int fd, void *buf, size_t len, int flags);
int poll(struct rt_pollfd *fds, unsigned long nfds, int timeout);
int close(int fd);
int getsockopt(int fd, int level, int name, void *val, rt_socklen_t *len);
int shutdown(int fd, int how);
]]

local C = ffi.C
local AF_INET, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC = 2, 1, 0x800, 0x80000
local POLLIN, POLLOUT, POLLERR = 0x1, 0x4, 0x8
local MSG_NOSIGNAL = 0x4000
local EINTR, EAGAIN, EINPROGRESS = 4, 11, 115
local SOL_SOCKET, SO_ERROR = 1, 4

local M = {}

local pfd = ffi.new("struct rt_pollfd[1]")
local function wait(fd, events, timeout_s)
  pfd[0].fd, pfd[0].events, pfd[0].revents = fd, events, 0
  local rc = C.poll(pfd, 1, math.floor((timeout_s or 0) * 1000))
  if rc < 0 and ffi.errno() == EINTR then return 0 end
  if rc <= 0 then return rc end
  return pfd[0].revents
end

local Conn = {}
Conn.__index = Conn

function M.connect(port, timeout)
  local fd = C.socket(AF_INET, bit.bor(SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC), 0)
  if fd < 0 then return nil, "socket() failed: errno " .. ffi.errno() end
  local sa = ffi.new("struct rt_sockaddr_in")
  sa.sin_family = AF_INET
  sa.sin_port = bit.rshift(bit.bswap(port), 16) -- htons
  sa.sin_addr = bit.bswap(0x7f000001) -- 127.0.0.1
  local rc = C.connect(fd, sa, ffi.sizeof(sa))
  if rc ~= 0 then
    if ffi.errno() ~= EINPROGRESS then
      C.close(fd)
      return nil, "connect() failed: errno " .. ffi.errno()
    end
    if wait(fd, POLLOUT, timeout or 5) <= 0 then
      C.close(fd)
      return nil, "connect() timed out"
    end
    local err, len = ffi.new("int[1]"), ffi.new("rt_socklen_t[1]", 4)
    C.getsockopt(fd, SOL_SOCKET, SO_ERROR, err, len)
    if err[0] ~= 0 then
      C.close(fd)
      return nil, "connect() failed: errno " .. err[0]
    end
  end
  return setmetatable({ fd = fd, buf = "" }, Conn)
end

-- Sends all of s; stops when the peer closes or nothing can be written for `timeout` s.
function Conn:send(s, timeout)
  local p, left = ffi.cast("const char *", s), #s -- s (a live argument) anchors p
  while left > 0 do
    local n = C.send(self.fd, p, left, MSG_NOSIGNAL)
    if n > 0 then
      p, left = p + n, left - n
    else
      local e = ffi.errno()
      if n < 0 and e ~= EAGAIN and e ~= EINTR then return nil, "closed" end
      local ev = wait(self.fd, POLLOUT, timeout or 5)
      if ev == 0 then return nil, "timeout" end
      if ev < 0 or bit.band(ev, POLLERR) ~= 0 then return nil, "closed" end
    end
  end
  return true
end

local rbuf = ffi.new("char[65536]")
-- One read: bytes | "" on EOF | nil, "closed" (reset) | nil, "timeout"
function Conn:recv_some(timeout)
  local ev = wait(self.fd, POLLIN, timeout)
  if ev == 0 then return nil, "timeout" end
  local n = C.recv(self.fd, rbuf, 65536, 0)
  if n > 0 then return ffi.string(rbuf, n) end
  if n == 0 then return "" end
  local e = ffi.errno()
  if e == EAGAIN or e == EINTR then return nil, "timeout" end
  return nil, "closed"
end

-- Reads until EOF/reset or `timeout` seconds of silence: returns the bytes and how it ended.
function Conn:read_all(timeout)
  local parts = { self.buf }
  self.buf = ""
  while true do
    local s, err = self:recv_some(timeout)
    if s == nil then return table.concat(parts), err end
    if s == "" then return table.concat(parts), "closed" end
    parts[#parts + 1] = s
  end
end

-- True when the server closes the connection (EOF or reset) within `timeout` seconds,
-- discarding whatever it sends before.
function Conn:wait_closed(timeout)
  local _, how = self:read_all(timeout)
  return how == "closed"
end

local function parse_one(s, head_request)
  local head_end = s:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = s:sub(1, head_end - 1)
  local version, status = head:match("^HTTP/(%d%.%d) (%d%d%d)")
  if not status then return nil, "bad" end
  local headers = {}
  for line in head:gmatch("\r\n([^\r\n]+)") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local len = tonumber(headers["content-length"] or "")
  local body_start = head_end + 4
  if head_request then len = 0 end -- the answer to a HEAD request has no body (whatever its length says)
  if not len then -- no framing: the body runs to the end of the bytes
    return { status = tonumber(status), version = version, headers = headers, body = s:sub(body_start), unframed = true }, ""
  end
  if #s < body_start + len - 1 then return nil end
  return { status = tonumber(status), version = version, headers = headers,
           body = s:sub(body_start, body_start + len - 1) }, s:sub(body_start + len)
end

-- Every complete response in s (in order) and the unparsed rest; head: answers to HEAD.
function M.parse_responses(s, head_request)
  local out = {}
  while #s > 0 do
    local r, rest = parse_one(s, head_request)
    if not r then break end
    out[#out + 1] = r
    s = rest
    if r.unframed then break end
  end
  return out, s
end

-- Reads one complete response (waiting up to `timeout` s for more bytes).
function Conn:read_response(timeout)
  while true do
    local r, rest = parse_one(self.buf)
    if r and not r.unframed then
      self.buf = rest
      return r
    end
    if rest == "bad" then return nil, "bad" end
    local s, err = self:recv_some(timeout)
    if s == nil then return nil, err end
    if s == "" then -- EOF: an unframed response ends here
      if r then
        self.buf = ""
        return r
      end
      return nil, "closed"
    end
    self.buf = self.buf .. s
  end
end

-- Half-close: no more bytes from us (the server sees EOF), reading still works.
function Conn:shutdown_write()
  C.shutdown(self.fd, 1) -- SHUT_WR
end

function Conn:close()
  if self.fd then
    C.close(self.fd)
    self.fd = nil
  end
end

-- Sends bytes on a fresh connection and collects what comes back until the server closes
-- the connection or stays silent for `timeout` seconds.
-- opts.half_close: shut our write side after sending; opts.head: the requests are HEAD.
function M.exchange(port, bytes, timeout, opts)
  local c, err = M.connect(port)
  if not c then error(err) end
  local sent, serr = c:send(bytes, timeout or 2)
  if sent and opts and opts.half_close then c:shutdown_write() end
  local data, how = c:read_all(timeout or 2)
  c:close()
  local responses, rest = M.parse_responses(data, opts and opts.head)
  return { responses = responses, closed = how == "closed", rest = rest, sent = sent ~= nil, send_error = serr }
end

return M
