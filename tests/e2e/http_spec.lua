-- The HTTP/1.1 layer (core/http.c, core/http_parse.c) over raw TCP and curl: keep-alive,
-- pipelining, chunked bodies, 100-continue, HEAD, limits (413/414/431/501/417/400), header,
-- body and idle timeouts, and the SIGTERM drain. Every refusal is a JSON error body.
local d = require "support.daemon"
local raw = require "support.rawtcp"
local cjson = require "cjson"

local CONFIG = [[
server: { auth: none, max_body: 64k, keepalive: 1s, header_timeout: 1s, body_min_rate: 100k, timeout: 5s }
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
]]

local BODY = '{"query":"cat","documents":["a cat","a dog"]}'

local function post(body, extra)
  return ("POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s")
    :format(extra or "", #body, body)
end

local function chunked(chunks, extra)
  return "POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" .. (extra or "")
    .. "Transfer-Encoding: chunked\r\n\r\n" .. chunks
end

-- The error JSON of a refusal: {"error":{"type":..., "message":...}}
local function json_error(r)
  local ok, j = pcall(cjson.decode, r.body)
  assert(ok and type(j) == "table" and type(j.error) == "table", "not a JSON error: " .. tostring(r.body))
  assert.are.equal("string", type(j.error.type))
  assert.are.equal("string", type(j.error.message))
  return j.error
end

-- One exchange on a fresh connection: the first response, and whether the server closed.
local function one(srv, bytes, timeout)
  local res = raw.exchange(srv.port, bytes, timeout or 2)
  return res.responses[1], res
end

describe("HTTP/1.1 layer", function()
  local srv
  setup(function() srv = assert(d.start(CONFIG)) end)
  teardown(function() d.stop(srv) end)

  it("keeps HTTP/1.1 connections alive and answers pipelined requests in order", function()
    local c = assert(raw.connect(srv.port))
    assert(c:send("GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: first\r\n\r\n"
      .. post(BODY, "X-Request-Id: second\r\n") .. "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: third\r\n\r\n"))
    local ids = {}
    for i = 1, 3 do
      local r = assert(c:read_response(3))
      assert.are.equal(200, r.status)
      ids[i] = r.headers["x-request-id"]
      assert.is_nil(r.headers["connection"])
    end
    assert.are.same({ "first", "second", "third" }, ids)
    -- the connection is still usable
    assert(c:send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.are.equal(200, assert(c:read_response(3)).status)
    c:close()
  end)

  it("answers pipelined large bodies each from its own bytes (the input buffer handed to the request)", function()
    -- a body from 32 KB on keeps the buffer it arrived in (core/http.c rr_conn_take_body);
    -- the bytes after it (the next requests) move to the connection's new buffer
    local function big(word, n)
      local docs = {}
      for i = 1, n do docs[i] = ("filler %d "):format(i):rep(22) .. (i == n and word or "") end
      return cjson.encode({ query = word, documents = docs, top_n = 1 })
    end
    local bodies = { big("alpha", 200), big("bravo", 160), big("charlie", 250) }
    for _, b in ipairs(bodies) do assert(#b > 32 * 1024 and #b < 64 * 1024, #b) end
    local c = assert(raw.connect(srv.port))
    assert(c:send(post(bodies[1]) .. post(bodies[2]) .. post(bodies[3])))
    for i, n in ipairs({ 200, 160, 250 }) do
      local r = assert(c:read_response(5))
      assert.are.equal(200, r.status, r.body)
      assert.are.equal(n - 1, cjson.decode(r.body).results[1].index, "request " .. i)
    end
    c:close()
  end)

  it("honours Connection: close and HTTP/1.0 keep-alive", function()
    local r, res = one(srv, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.are.equal(200, r.status)
    assert.are.equal("close", r.headers["connection"])
    assert.is_true(res.closed)
    r, res = one(srv, "GET /health HTTP/1.0\r\n\r\n")
    assert.are.equal(200, r.status)
    assert.is_true(res.closed)
    local c = assert(raw.connect(srv.port))
    for _ = 1, 2 do
      assert(c:send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
      r = assert(c:read_response(3))
      assert.are.equal(200, r.status)
      assert.are.equal("keep-alive", r.headers["connection"])
    end
    c:close()
  end)

  it("decodes chunked bodies, chunk extensions included", function()
    local a, b = BODY:sub(1, 5), BODY:sub(6)
    local r = one(srv, chunked(("%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"):format(#a, a, #b, b), "Connection: close\r\n"))
    assert.are.equal(200, r.status, r.body)
    assert.are.equal(2, #cjson.decode(r.body).results)
  end)

  it("refuses a malformed chunk size with 400 and an unsupported transfer coding with 501", function()
    local r, res = one(srv, chunked("zz\r\nhello\r\n0\r\n\r\n"))
    assert.are.equal(400, r.status)
    json_error(r)
    assert.are.equal("close", r.headers["connection"])
    assert.is_true(res.closed)
    for _, te in ipairs({ "gzip, chunked", "identity", "gzip" }) do
      r = one(srv, "POST /v1/rerank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " .. te .. "\r\n\r\n0\r\n\r\n")
      assert.are.equal(501, r.status, te)
      assert.truthy(json_error(r).message:find("Transfer-Encoding", 1, true))
    end
  end)

  it("refuses framing conflicts with 400 and keeps the client's x-request-id", function()
    local r = one(srv, "POST /v1/rerank HTTP/1.1\r\nHost: x\r\nX-Request-Id: conflict-1\r\n"
      .. "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
    assert.are.equal(400, r.status)
    assert.truthy(json_error(r).message:find("Content-Length", 1, true))
    assert.are.equal("conflict-1", r.headers["x-request-id"])
    r = one(srv, "POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert.are.equal(400, r.status)
    json_error(r)
  end)

  it("refuses NUL, CR or LF in a header value with 400", function()
    for _, v in ipairs({ "a\0b", "a\rb" }) do
      local r, res = one(srv, "GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: " .. v .. "\r\n\r\n")
      assert.are.equal(400, r.status, v)
      json_error(r)
      assert.is_true(res.closed)
    end
  end)

  it("refuses a malformed request line or an unsupported HTTP version with 400", function()
    for _, line in ipairs({ "GET /health HTTP/2.0", "GET /health HTTP/1.7", "GET  HTTP/1.1", "GET /health" }) do
      local r, res = one(srv, line .. "\r\nHost: x\r\n\r\n")
      assert.truthy(r, line .. ": no answer " .. tostring(res.rest))
      assert.are.equal(400, r.status, line)
      json_error(r)
    end
  end)

  it("passes any method token to the router (405 in JSON)", function()
    for _, m in ipairs({ "FOO", "PATCH", "get" }) do
      local r = one(srv, m .. " /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.are.equal(405, r.status, m)
      assert.truthy(json_error(r).message:find(m, 1, true), r.body)
    end
  end)

  it("answers HEAD with the GET's Content-Length and no body, and the connection goes on", function()
    local c = assert(raw.connect(srv.port))
    assert(c:send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
    local get = assert(c:read_response(3))
    assert(c:send("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
    local bytes = ""
    for _ = 1, 20 do
      local s = c:recv_some(0.5)
      if not s or s == "" then break end
      bytes = bytes .. s
      local head_end = bytes:find("\r\n\r\n", 1, true)
      if head_end and #raw.parse_responses(bytes:sub(head_end + 4)) == 1 then break end
    end
    local head_end = assert(bytes:find("\r\n\r\n", 1, true), bytes)
    local head = bytes:sub(1, head_end + 3)
    assert.truthy(head:match("^HTTP/1%.1 200"), head)
    assert.are.equal(tostring(#get.body), head:match("\r\nContent%-Length: (%d+)\r\n"))
    -- right after the HEAD answer's blank line comes the next response, not a body
    local rest = raw.parse_responses(bytes:sub(head_end + 4))
    assert.are.equal(1, #rest, bytes)
    assert.are.equal(200, rest[1].status)
    assert.are.equal(#get.body, #rest[1].body)
    c:close()
  end)

  it("413 before reading the body: from Content-Length, and while decoding a chunked body", function()
    local r, res = one(srv, "POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
    assert.are.equal(413, r.status)
    assert.truthy(json_error(r).message:find("max_body", 1, true))
    assert.are.equal("close", r.headers["connection"])
    assert.is_true(res.closed)
    local big = ("x"):rep(40000)
    r = one(srv, chunked(("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"):format(#big, big, #big, big)))
    assert.are.equal(413, r.status)
    json_error(r)
  end)

  it("100-continue: sends 100 before the body, 413 at once when the length is over the limit", function()
    local c = assert(raw.connect(srv.port))
    assert(c:send(("POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      .. "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n"):format(#BODY)))
    local interim = ""
    while not interim:find("\r\n\r\n", 1, true) do
      local got = c:recv_some(2)
      assert(got and got ~= "", "no 100 Continue: " .. interim)
      interim = interim .. got
    end
    assert.are.equal("HTTP/1.1 100 Continue\r\n\r\n", interim)
    assert(c:send(BODY))
    local r = assert(c:read_response(3))
    assert.are.equal(200, r.status, r.body)
    c:close()
    r = one(srv, "POST /v1/rerank HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
    assert.are.equal(413, r.status)
    json_error(r)
    r = one(srv, "POST /v1/rerank HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\n{}")
    assert.are.equal(417, r.status)
    json_error(r)
  end)

  it("curl with Expect: 100-continue does not wait for its 1 s fallback", function()
    local docs = {}
    for i = 1, 40 do docs[i] = ("document %d about cats and dogs "):format(i):rep(30) end
    local file = d.writefile(d.tmpname(".json"), cjson.encode({ query = "cats", documents = docs }))
    local out = d.sh(("curl -s -o /dev/null -w '%%{http_code} %%{time_total}' -H 'Expect: 100-continue' "
      .. "-H 'Content-Type: application/json' --data-binary @%s %s/v1/rerank"):format(file, srv.url))
    local code, t = out:match("^(%d+) ([%d.]+)")
    assert.are.equal("200", code, out)
    assert.is_true(tonumber(t) < 0.9, out)
  end)

  it("431 for too many or too large headers, 414 for a long target", function()
    local many = {}
    for i = 1, 101 do many[i] = ("X-H%d: v\r\n"):format(i) end
    local r = one(srv, "GET /health HTTP/1.1\r\nHost: x\r\n" .. table.concat(many) .. "\r\n")
    assert.are.equal(431, r.status)
    json_error(r)
    r = one(srv, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("a"):rep(70000) .. "\r\n\r\n")
    assert.are.equal(431, r.status)
    json_error(r)
    r = one(srv, "GET /health?" .. ("q"):rep(9000) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.are.equal(414, r.status)
    json_error(r)
  end)

  it("closes a slowloris head (1 byte per 0.5 s) at header_timeout (1 s)", function()
    local c = assert(raw.connect(srv.port))
    local req = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " .. ("a"):rep(40)
    local t0, closed = d.now(), false
    local got = ""
    for i = 1, #req do
      if not c:send(req:sub(i, i), 1) then closed = true break end
      local s, how = c:read_all(0.5)
      got = got .. s
      if how == "closed" then closed = true break end
    end
    local elapsed = d.now() - t0
    c:close()
    assert.is_true(closed, "never closed")
    assert.is_true(elapsed < 2.5, "closed after " .. elapsed .. " s")
    local r = raw.parse_responses(got)[1]
    assert.truthy(r, got)
    assert.are.equal(408, r.status)
    json_error(r)
  end)

  it("closes a body slower than body_min_rate (408)", function()
    local c = assert(raw.connect(srv.port))
    assert(c:send("POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n"))
    local t0, got, how = d.now(), "", nil
    for _ = 1, 20 do -- 100 bytes every 0.3 s: under the keepalive, far under 100 KB/s
      if not c:send(("b"):rep(100), 1) then break end
      local s
      s, how = c:read_all(0.3)
      got = got .. s
      if how == "closed" then break end
    end
    c:close()
    assert.are.equal("closed", how)
    assert.is_true(d.now() - t0 < 3)
    local r = assert(raw.parse_responses(got)[1], got)
    assert.are.equal(408, r.status)
    json_error(r)
  end)

  it("closes an idle keep-alive connection after server.keepalive (1 s)", function()
    local c = assert(raw.connect(srv.port))
    assert(c:send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.are.equal(200, assert(c:read_response(2)).status)
    local t0 = d.now()
    assert.is_true(c:wait_closed(3))
    local idle = d.now() - t0
    c:close()
    assert.is_true(idle > 0.7 and idle < 2, "closed after " .. idle .. " s")
    -- a connection that never sends anything is closed at header_timeout
    c = assert(raw.connect(srv.port))
    assert.is_true(c:wait_closed(3))
    c:close()
  end)

  it("stays up after all of it", function()
    assert.is_true(d.alive(srv))
    assert.are.equal(200, (d.request(srv, "/health")))
  end)
end)

describe("HTTP/1.1 drain on SIGTERM", function()
  it("answers in-flight requests with Connection: close and closes idle connections", function()
    local srv = assert(d.start(([[
server: { auth: none, drain_timeout: 10s }
models:
  - { name: slow, provider_file: "%s/tests/fixtures/providers/sleepy.lua", seconds: 1 }
]]):format(d.root)))
    local idle = assert(raw.connect(srv.port))
    assert(idle:send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.are.equal(200, assert(idle:read_response(2)).status)
    local busy = assert(raw.connect(srv.port))
    assert(busy:send(post('{"query":"q","documents":["a","b"]}')))
    d.sleep(0.3)
    os.execute("kill -TERM " .. srv.pid)
    assert.is_true(idle:wait_closed(1), "the idle keep-alive connection stayed open")
    idle:close()
    local r = assert(busy:read_response(5))
    assert.are.equal(200, r.status, r.body)
    assert.are.equal("close", r.headers["connection"])
    assert.is_true(busy:wait_closed(2))
    busy:close()
    for _ = 1, 50 do
      if not d.alive(srv) then break end
      d.sleep(0.1)
    end
    assert.is_false(d.alive(srv))
    assert.truthy(d.logtext(srv):find("rerankd stopped", 1, true))
  end)
end)
