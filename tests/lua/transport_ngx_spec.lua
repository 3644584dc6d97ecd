-- rerank.transport.ngx outside nginx, against a scripted fake of the cosocket API
-- (tests/e2e/nginx_spec.lua runs it in real nginx; cache_ngx_spec.lua has the shared-dict cache).

-- A fake ngx: each connect() takes the next scripted server from `servers`; a server is
-- { reply = "raw response bytes", reused = n, connect_err = "...", ssl_err = "...", close_after_send = true }.
local function fake_ngx(servers)
  local log = { sockets = {}, keepalive = 0, closed = 0, sleeps = {} }
  local now = 1000
  local ngx = {
    log = function() end, ERR = 4,
    now = function() return now end,
    update_time = function() end,
    sleep = function(s) log.sleeps[#log.sleeps + 1] = s end,
    encode_base64 = function(s)
      local map = { ["user:secret"] = "dXNlcjpzZWNyZXQ=" }
      return map[s] or ("b64(" .. s .. ")")
    end,
    md5 = function(s) return "md5(" .. s .. ")" end,
    socket = {},
    thread = {},
  }
  function ngx.socket.tcp()
    local srv = table.remove(servers, 1) or { connect_err = "connection refused" }
    local buf, pos = srv.reply or "", 1
    local sock = { sent = {}, srv = srv }
    log.sockets[#log.sockets + 1] = sock
    function sock:settimeouts(c, s, r) self.timeouts = { c, s, r } end
    function sock:connect(host, port, opts)
      self.host, self.port, self.opts = host, port, opts
      if srv.connect_err then return nil, srv.connect_err end
      return 1
    end
    function sock.getreusedtimes() return srv.reused or 0 end
    function sock:sslhandshake(_, name, verify)
      self.sni, self.verify = name, verify
      if srv.ssl_raise then error(srv.ssl_raise) end
      if srv.ssl_err then return nil, srv.ssl_err end
      return true
    end
    function sock:send(data)
      if srv.send_err then return nil, srv.send_err end
      self.sent[#self.sent + 1] = type(data) == "table" and table.concat(data) or data
      return #self.sent[#self.sent]
    end
    function sock.receive(_, pat)
      if srv.read_err and pos > #buf then return nil, srv.read_err end
      if pat == "*l" then
        local e = buf:find("\n", pos, true)
        if not e then
          local rest = buf:sub(pos)
          pos = #buf + 1
          return nil, "closed", rest
        end
        local line = buf:sub(pos, e - 1):gsub("\r$", "")
        pos = e + 1
        return line
      end
      local n = tonumber(pat)
      if pos + n - 1 > #buf then
        local rest = buf:sub(pos)
        pos = #buf + 1
        return nil, "closed", rest
      end
      local s = buf:sub(pos, pos + n - 1)
      pos = pos + n
      return s
    end
    function sock:setkeepalive(ms, size)
      log.keepalive = log.keepalive + 1
      self.kept = { ms, size }
      return 1
    end
    function sock:close() log.closed = log.closed + 1; self.closed = true; return 1 end
    return sock
  end
  -- light threads run to completion at spawn (the fake never yields)
  function ngx.thread.spawn(fn, ...)
    log.spawned = (log.spawned or 0) + 1
    fn(...)
    return { done = true }
  end
  function ngx.thread.wait(th) return th.done end
  return ngx, log
end

local function load_transport(servers)
  local ngx, log = fake_ngx(servers)
  rawset(_G, "ngx", ngx)
  package.loaded["rerank.transport.ngx"] = nil
  local t = require "rerank.transport.ngx"
  rawset(_G, "ngx", nil)
  return t, log
end

local OK = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

describe("rerank.transport.ngx (fake cosockets)", function()
  after_each(function() package.loaded["rerank.transport.ngx"] = nil end)

  it("parses URLs", function()
    local t = load_transport({})
    assert.are.same({ "https", "api.cohere.com", 443, "/v2/rerank" }, { t.parse_url("https://api.cohere.com/v2/rerank") })
    assert.are.same({ "http", "127.0.0.1", 8081, "/" }, { t.parse_url("http://127.0.0.1:8081") })
    assert.are.same({ "http", "h", 80, "/?a=1" }, { t.parse_url("HTTP://user:pw@h?a=1#frag") })
    assert.are.same({ "http", "::1", 9000, "/x" }, { t.parse_url("http://[::1]:9000/x") })
    assert.is_nil((t.parse_url("ftp://h/")))
    assert.is_nil((t.parse_url("http:///x")))
    assert.is_nil((t.parse_url("http://h:70000/")))
  end)

  it("writes an HTTP/1.1 request and reads a Content-Length answer into a keep-alive pool", function()
    local t, log = load_transport({ { reply = OK } })
    local res = assert(t.request({ url = "http://example.test:8080/v1/rerank?x=1", body = '{"q":1}',
                                   headers = { Authorization = "Bearer k", ["Content-Length"] = "999" } }))
    assert.are.equal(200, res.status)
    assert.are.equal("{}", res.body)
    assert.are.equal("application/json", res.headers["content-type"])
    local s = log.sockets[1]
    local req = s.sent[1]
    assert.truthy(req:find('^POST /v1/rerank%?x=1 HTTP/1%.1\r\nHost: example%.test:8080\r\n'), req)
    assert.truthy(req:find("\r\nAuthorization: Bearer k\r\n", 1, true))
    assert.truthy(req:find("\r\nContent%-Length: 7\r\n\r\n{\"q\":1}$"))
    assert.is_nil(req:find("999", 1, true))
    assert.are.equal("example.test", s.host)
    assert.are.equal(8080, s.port)
    assert.are.equal("http://example.test:8080||v", s.opts.pool)
    assert.are.equal(1, log.keepalive)
    assert.are.same({ 60000, 32 }, s.kept)
  end)

  it("reads chunked bodies with extensions and trailers, after a 100 Continue", function()
    local reply = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
      .. "5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
    local t, log = load_transport({ { reply = reply } })
    local res = assert(t.request({ url = "http://h/" }))
    assert.are.equal(200, res.status)
    assert.are.equal("hello 0123456789", res.body)
    assert.are.equal("1, 2", res.headers["x-a"])
    assert.are.equal(1, log.keepalive)
    assert.truthy(log.sockets[1].sent[1]:find("^GET / HTTP/1%.1\r\n"))
  end)

  it("reads until close without a length, and closes on Connection: close or HTTP/1.0", function()
    local t, log = load_transport({
      { reply = "HTTP/1.0 200 OK\r\n\r\nall of it" },
      { reply = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc" },
    })
    assert.are.equal("all of it", assert(t.request({ url = "http://h/" })).body)
    assert.are.equal("abc", assert(t.request({ url = "http://h/" })).body)
    assert.are.equal(0, log.keepalive)
    assert.are.equal(2, log.closed)
  end)

  it("does not read a body for HEAD, 204 and 304", function()
    local t = load_transport({
      { reply = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" },
      { reply = "HTTP/1.1 204 No Content\r\n\r\n" },
    })
    assert.are.equal("", assert(t.request({ url = "http://h/", method = "HEAD" })).body)
    assert.are.equal(204, assert(t.request({ url = "http://h/" })).status)
  end)

  it("does TLS with SNI and the verify option, once per pooled connection", function()
    local t, log = load_transport({ { reply = OK }, { reply = OK, reused = 1 }, { reply = OK } })
    assert(t.request({ url = "https://api.example/v1" }))
    assert.are.equal("api.example", log.sockets[1].sni)
    assert.is_true(log.sockets[1].verify)
    assert.are.equal("https://api.example:443|api.example|v", log.sockets[1].opts.pool)
    assert(t.request({ url = "https://api.example/v1" }))
    assert.is_nil(log.sockets[2].sni) -- a reused connection is already TLS
    assert(t.request({ url = "https://10.0.0.1/v1", insecure = true, server_name = "api.example" }))
    assert.are.equal("api.example", log.sockets[3].sni)
    assert.is_false(log.sockets[3].verify)
    assert.are.equal("https://10.0.0.1:443|api.example|n", log.sockets[3].opts.pool)
  end)

  it("names each failure like libcurl's kinds", function()
    local t = load_transport({
      { connect_err = "connection refused" },
      { connect_err = "no resolver defined to resolve \"api.example\"" },
      { connect_err = "timeout" },
      { ssl_err = "18: self signed certificate" },
      { ssl_raise = "assertion failed!" },
      { reply = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc" },
      { reply = "garbage\r\n\r\n" },
      { reply = "HTTP/1.1 200 OK\r\n", read_err = "timeout" },
    })
    local function err(url) return select(2, t.request({ url = url })) end
    assert.truthy(err("http://h:81/"):find("^connect: h:81: connection refused"))
    assert.truthy(err("http://api.example/"):find("^dns: "))
    assert.truthy(err("http://h/"):find("^timeout: "))
    assert.truthy(err("https://h/"):find("^tls: 18: self signed certificate"))
    assert.truthy(err("https://h/"):find("^tls: handshake failed: .*assertion failed!"))
    assert.truthy(err("http://h/"):find("^io: body ended after 3 of 10 bytes"))
    assert.truthy(err("http://h/"):find("^http: bad status line"))
    assert.truthy(err("http://h/"):find("^timeout: "))
    assert.truthy(err("gopher://h/"):find("^http: unsupported scheme"))
    -- SigV4 without keys cannot sign
    assert.truthy(select(2, t.request({ url = "http://h/", aws_sigv4 = "aws:amz:us-east-1:bedrock" })):find("^http: aws_sigv4"))
  end)

  it("refuses bodies over max_body", function()
    local t = load_transport({ { reply = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" } })
    t.configure({ max_body = 10 })
    local res, err = t.request({ url = "http://h/" })
    assert.is_nil(res)
    assert.truthy(err:find("^too_large: "))
  end)

  it("retries once on a stale pooled connection that the server closed", function()
    local t, log = load_transport({ { reply = "", reused = 3 }, { reply = OK } })
    local res = assert(t.request({ url = "http://h/" }))
    assert.are.equal(200, res.status)
    assert.are.equal(2, #log.sockets)
    -- a fresh connection that closes is not retried
    t, log = load_transport({ { reply = "" }, { reply = OK } })
    assert.is_nil((t.request({ url = "http://h/" })))
    assert.are.equal(1, #log.sockets)
  end)

  it("signs with SigV4 for aws_sigv4 + userpwd instead of basic auth", function()
    local t, log = load_transport({ { reply = OK } })
    assert(t.request({ url = "https://bedrock-agent-runtime.us-east-1.amazonaws.com/rerank", body = "{}",
                       headers = { ["Content-Type"] = "application/json", ["x-amz-security-token"] = "tok" },
                       aws_sigv4 = "aws:amz:us-east-1:bedrock", userpwd = "AKID:secret" }))
    local req = log.sockets[1].sent[1]
    assert.truthy(req:find("\r\nAuthorization: AWS4%-HMAC%-SHA256 Credential=AKID/%d+/us%-east%-1/bedrock/aws4_request, "
      .. "SignedHeaders=content%-type;host;x%-amz%-date;x%-amz%-security%-token, Signature=%x+\r\n"), req)
    assert.truthy(req:find("\r\nX%-Amz%-Date: %d+T%d+Z\r\n"))
    assert.is_nil(req:find("Basic", 1, true))
  end)

  it("sends basic auth for userpwd", function()
    local t, log = load_transport({ { reply = OK } })
    assert(t.request({ url = "http://h/", userpwd = "user:secret" }))
    assert.truthy(log.sockets[1].sent[1]:find("\r\nAuthorization: Basic dXNlcjpzZWNyZXQ=\r\n", 1, true))
  end)

  it("raises on misuse", function()
    local t = load_transport({})
    assert.has_error(function() t.request("http://h/") end)
    assert.has_error(function() t.request({}) end)
    assert.has_error(function() t.request({ url = "http://h/", body = {} }) end)
    assert.has_error(function() t.request({ url = "http://h/", headers = "x" }) end)
    assert.has_error(function() t.request_all({ { url = 1 } }) end)
    assert.has_error(function() t.configure({ pool_size = -1 }) end)
  end)

  it("request_all keeps the order, bounds the threads and reports errors in place", function()
    local t, log = load_transport({
      { reply = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na" },
      { connect_err = "connection refused" },
      { reply = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc" },
    })
    local res = t.request_all({ { url = "http://h/1" }, { url = "http://h/2" }, { url = "http://h/3" } }, 2)
    assert.are.equal("a", res[1].body)
    assert.truthy(res[2].error:find("^connect: "))
    assert.are.equal("c", res[3].body)
    assert.are.equal(2, log.spawned)
    assert.are.same({}, t.request_all({}, 4))
  end)

  it("sleeps with ngx.sleep", function()
    local t, log = load_transport({})
    t.sleep(0.25)
    assert.are.same({ 0.25 }, log.sleeps)
  end)
end)
