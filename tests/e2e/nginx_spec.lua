-- End to end: the rerank library inside real nginx (Debian's nginx + libnginx-mod-http-lua),
-- served with examples/nginx/nginx.conf, compared with the daemon on the same requests; and
-- the cosocket transport (rerank.transport.ngx) against real servers.
local d = require "support.daemon"
local nginx = require "support.nginx"
local cjson = require "cjson"

local available, why = nginx.available()

-- The answers must be the same apart from the per-request id.
local function comparable(j)
  if type(j) ~= "table" then return j end
  local c = {}
  for k, v in pairs(j) do c[k] = v end
  c.id = nil
  return c
end

local README_BODY = d.readfile(d.root .. "/tests/fixtures/readme_request.json")

local DOCS = {
  "Deploy a model behind an API endpoint.",
  "The cat sat on the mat.",
  "Models are deployed with one command and served over HTTP.",
  "Billing and usage reports.",
  "How to deploy: build, push, run the model server.",
}

describe("nginx + rerank library (examples/nginx/nginx.conf) vs the daemon", function()
  if not available then
    pending("nginx not available: " .. tostring(why))
    return
  end
  local mock, ngx_srv, daemon

  setup(function()
    mock = assert(nginx.start_mock())
    local m = mock.url
    local cfg = table.concat({
      "server: { auth: none }",
      "default_model: bm25",
      "cache: { shared_dict: rerank_cache, ttl: 10m, models: [cached] }",
      "models:",
      "  - { name: bm25, provider: bm25 }",
      "  - { name: cohere, provider: cohere, model: rerank-v3.5, base_url: '" .. m .. "/cohere', api_key: test-key }",
      "  - { name: jina, provider: jina, base_url: 'http://localhost:" .. mock.port .. "/jina', api_key: test-key }",
      "  - { name: tei, provider: tei, base_url: '" .. m .. "/tei', api_key: test-key, max_documents: 2, concurrency: 3 }",
      "  - { name: bedrock, provider: bedrock, base_url: '" .. m .. "/bedrock', region: us-east-1,"
        .. " aws_access_key_id: test-key, aws_secret_access_key: test-secret }",
      "  - { name: cached, provider: cohere, base_url: '" .. m .. "/cohere', api_key: test-key }",
      "  - { name: badkey, provider: cohere, base_url: '" .. m .. "/cohere', api_key: wrong-key }",
      "  - { name: slow, provider: cohere, base_url: '" .. m .. "/fault/slow:3000/cohere', api_key: test-key, timeout: 300ms }",
      "  - { name: truncated, provider: cohere, base_url: '" .. m .. "/fault/truncated/cohere', api_key: test-key }",
      "  - { name: down, provider: cohere, base_url: 'http://127.0.0.1:" .. nginx.free_port() .. "', api_key: test-key }",
      "",
    }, "\n")
    local err
    ngx_srv, err = nginx.start({ config = cfg })
    assert(ngx_srv, err)
    daemon = assert(d.start(cfg))
  end)

  teardown(function()
    nginx.stop(ngx_srv)
    d.stop(daemon)
    nginx.stop_mock(mock)
  end)

  local function both(path, opts)
    local s1, raw1, h1, j1 = d.request(ngx_srv, path, opts)
    local s2, raw2, h2, j2 = d.request(daemon, path, opts)
    return { status = s1, raw = raw1, headers = h1, json = j1 }, { status = s2, raw = raw2, headers = h2, json = j2 }
  end

  local function same(path, opts, status)
    local n, dm = both(path, opts)
    assert.are.equal(status or 200, n.status, n.raw .. "\n" .. nginx.errors(ngx_srv))
    assert.are.equal(dm.status, n.status, dm.raw)
    assert.are.same(comparable(dm.json), comparable(n.json))
    return n, dm
  end

  it("answers the README bm25 example exactly like the daemon", function()
    local n = same("/v1/rerank", { body = README_BODY })
    assert.are.equal("bm25", n.json.model)
    assert.are.equal(2, #n.json.results)
    assert.are.equal("doc_1", n.json.results[1].document.id)
    assert.truthy(n.raw:find('^{"id":"rerank%-[^"]+","object":"list","model":"bm25","results":%['))
    assert.truthy(n.headers["content-type"]:find("application/json", 1, true))
    assert.truthy(n.headers["x-request-id"])
    assert.truthy(n.headers["x-rerankd-timing"]:match("parse=%d+;upstream=%d+;sort=%d+;serialize=%d+;total=%d+"))
  end)

  it("answers bm25 requests like the daemon: default model, top_n, ties, unicode, empty list", function()
    same("/v1/rerank", { body = { query = "cat", documents = { "a dog", "a cat", "cat cat cat" } } })
    same("/v1/rerank", { body = { model = "bm25", query = "deploy model", documents = DOCS, top_n = 3 } })
    same("/v1/rerank", { body = { query = "zzz", documents = { "a", "b", "c", "d" } } })
    same("/v1/rerank", { body = { query = "ÉCOLE Привет", documents = { "rien", "une école", "привет мир", "日本語" },
                                  return_documents = true } })
    local n = same("/v1/rerank", { body = '{"query":"x","documents":[]}' })
    assert.truthy(n.raw:find('"results":[]', 1, true), n.raw)
  end)

  it("calls a mock Cohere upstream over cosockets with the same result as the daemon", function()
    d.request(mock, "/_mock/reset", { method = "POST" })
    local n = same("/v1/rerank", { body = { model = "cohere", query = "deploy model", documents = DOCS, top_n = 3,
                                            return_documents = true } })
    assert.are.equal("cohere", n.json.model)
    assert.are.equal(3, #n.json.results)
    local _, _, _, log = d.request(mock, "/_mock/requests")
    assert.are.equal(2, #log) -- one from nginx, one from the daemon
    for _, r in ipairs(log) do
      assert.are.equal("/cohere/v2/rerank", r.path)
      assert.are.equal("Bearer test-key", r.headers.authorization)
      assert.are.equal("deploy model", r.json.query)
      assert.are.equal(#DOCS, #r.json.documents)
    end
  end)

  it("reaches a localhost upstream (Jina wire format) like the daemon", function()
    local n = same("/v1/rerank", { body = { model = "jina", query = "cat mat", documents = DOCS } })
    assert.are.equal(1, n.json.results[1].index)
  end)

  it("signs AWS Bedrock calls with SigV4 over cosockets like libcurl does in the daemon", function()
    d.request(mock, "/_mock/reset", { method = "POST" })
    local n = same("/v1/rerank", { body = { model = "bedrock", query = "deploy model", documents = DOCS, top_n = 2 } })
    assert.are.equal(2, #n.json.results)
    local _, _, _, log = d.request(mock, "/_mock/requests")
    assert.are.equal(2, #log)
    for _, r in ipairs(log) do
      assert.truthy(r.headers.authorization:find("^AWS4%-HMAC%-SHA256 Credential=test%-key/%d+/us%-east%-1/bedrock/"))
    end
  end)

  it("caches upstream scores in the lua_shared_dict, shared by the workers", function()
    d.request(mock, "/_mock/reset", { method = "POST" })
    local body = { model = "cached", query = "deploy model", documents = DOCS }
    local s1, raw1, h1, j1 = d.request(ngx_srv, "/v1/rerank", { body = body })
    assert.are.equal(200, s1, raw1)
    assert.are.equal("miss", h1["x-rerankd-cache"])
    for _ = 1, 4 do -- new connections, so other workers answer some of them
      local s2, raw2, h2, j2 = d.request(ngx_srv, "/v1/rerank", { body = body })
      assert.are.equal(200, s2, raw2)
      assert.are.equal("hit", h2["x-rerankd-cache"])
      assert.are.same(j1.results, j2.results)
    end
    body.documents = { DOCS[1], "a new document about a model" }
    local _, _, h3 = d.request(ngx_srv, "/v1/rerank", { body = body })
    assert.are.equal("partial", h3["x-rerankd-cache"])
    local _, _, _, log = d.request(mock, "/_mock/requests")
    assert.are.equal(2, #log)
    assert.are.equal(1, #log[2].json.documents)
  end)

  it("splits above max_documents into concurrent upstream calls like the daemon", function()
    d.request(mock, "/_mock/reset", { method = "POST" })
    local n = same("/v1/rerank", { body = { model = "tei", query = "deploy model server", documents = DOCS } })
    assert.are.equal(#DOCS, #n.json.results)
    local _, _, _, log = d.request(mock, "/_mock/requests")
    assert.are.equal(6, #log) -- 3 batches of at most 2 documents, twice
  end)

  it("maps upstream failures to the daemon's statuses and error bodies", function()
    same("/v1/rerank", { body = { model = "badkey", query = "q", documents = { "a" } } }, 502)
    local n, dm = both("/v1/rerank", { body = { model = "slow", query = "q", documents = { "a" } } })
    assert.are.equal(504, n.status, n.raw)
    assert.are.equal(dm.status, n.status)
    assert.are.equal("timeout_error", n.json.error.type)
    for _, model in ipairs({ "truncated", "down" }) do
      n, dm = both("/v1/rerank", { body = { model = model, query = "q", documents = { "a" } } })
      assert.are.equal(502, n.status, n.raw)
      assert.are.equal(dm.status, n.status, dm.raw)
      assert.are.equal(dm.json.error.type, n.json.error.type)
      assert.is_nil(n.raw:find("test-key", 1, true))
    end
  end)

  it("rejects bad requests like the daemon", function()
    same("/v1/rerank", { body = '{"query": "x", "documents": [' }, 400)
    same("/v1/rerank", { body = { query = 1, documents = { "a" } } }, 400)
    same("/v1/rerank", { body = { model = "nope", query = "x", documents = { "a" } } }, 404)
    same("/v1/rerank", { body = { query = "x", documents = { "a", 3 } } }, 400)
  end)

  it("serves /v1/models and /health, and keeps a client's x-request-id", function()
    same("/v1/models", nil)
    local status, _, _, j = d.request(ngx_srv, "/health")
    assert.are.equal(200, status)
    assert.are.equal("ok", j.status)
    local _, _, h, body = d.request(ngx_srv, "/v1/rerank", { body = { query = "a", documents = { "a" } },
                                                               headers = { ["x-request-id"] = "my-id-42" } })
    assert.are.equal("my-id-42", h["x-request-id"])
    assert.are.equal("rerank-my-id-42", body.id)
  end)

  it("runs the library from an access_by_lua_block (/demo/best)", function()
    local status, raw = d.request(ngx_srv, "/demo/best?q=cat&d=dog&d=black%20cat&d=bird")
    assert.are.equal(200, status)
    assert.are.equal("1\n", raw)
  end)
end)

-- A test server: /t/* run the transport (and the cache) from content handlers, /up/* are the
-- upstreams it talks to (the same nginx, plain on $PORT and TLS on $TLSPORT).
local TRANSPORT_CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
  access_log off;
  lua_package_path "$prefix/lua/?.lua;$prefix/lua/?/init.lua;;";
  lua_package_cpath "$prefix/?.so;;";
  lua_ssl_trusted_certificate cert.pem; # relative to the prefix
  lua_shared_dict rerank_cache 1m;
  client_body_buffer_size 1m;
  server {
    listen 127.0.0.1:$PORT;
    location = /t/request {
      content_by_lua_block {
        local cjson = require "cjson"
        local t = require "rerank.transport.ngx"
        ngx.req.read_body()
        local arg = cjson.decode(ngx.req.get_body_data())
        ngx.update_time()
        local t0 = ngx.now()
        local out = {}
        for i, opts in ipairs(arg.calls or { arg }) do
          local ok, res, err = pcall(t.request, opts)
          out[i] = { ok = ok, res = res or cjson.null, err = err or cjson.null }
        end
        ngx.update_time()
        ngx.say(cjson.encode({ out = out, elapsed = ngx.now() - t0 }))
      }
    }
    location = /t/request_all {
      content_by_lua_block {
        local cjson = require "cjson"
        local t = require "rerank.transport.ngx"
        ngx.req.read_body()
        local arg = cjson.decode(ngx.req.get_body_data())
        ngx.update_time()
        local t0 = ngx.now()
        local res = t.request_all(arg.list, arg.concurrency)
        ngx.update_time()
        ngx.say(cjson.encode({ results = res, elapsed = ngx.now() - t0 }))
      }
    }
    location = /t/sleep {
      content_by_lua_block {
        local t = require "rerank.transport.ngx"
        t.sleep(0.2)
        ngx.say("ok")
      }
    }
    location = /t/cache {
      content_by_lua_block {
        local cache = require "rerank.engine.cache_ngx"
        local c = assert(cache.new("rerank_cache"))
        local args = ngx.req.get_uri_args()
        local key = cache.key("m", args.q, args.d)
        if args.v then assert(c:set(key, tonumber(args.v), 0)) end
        local missing, err = cache.new("no_such_dict")
        ngx.say(tostring(c:get(key)), " ", tostring(missing), " ", err)
      }
    }
    location = /up/echo {
      content_by_lua_block {
        local cjson = require "cjson"
        ngx.req.read_body()
        ngx.header["X-Dup"] = { "a", "b" }
        ngx.say(cjson.encode({ method = ngx.req.get_method(), uri = ngx.var.request_uri, head = ngx.req.raw_header(),
                               body = ngx.req.get_body_data() or "", connection = ngx.var.connection }))
      }
    }
    location = /up/chunked {
      content_by_lua_block {
        ngx.print("hello ")
        ngx.flush(true)
        ngx.print(string.rep("x", 100000))
        ngx.flush(true)
        ngx.print(" world")
      }
    }
    location = /up/length { return 200 "hello world"; }
    location = /up/eof {
      chunked_transfer_encoding off; # no length, no chunks: the body ends when nginx closes
      content_by_lua_block { ngx.print("until "); ngx.flush(true); ngx.print("close") }
    }
    location = /up/empty { return 204; }
    location = /up/close { keepalive_timeout 0; return 200 "bye"; }
    location = /up/sleep {
      content_by_lua_block {
        ngx.sleep(tonumber(ngx.var.arg_s) or 1)
        ngx.say(ngx.var.arg_id or "ok")
      }
    }
  }
  server {
    listen 127.0.0.1:$TLSPORT ssl;
    ssl_certificate cert.pem;
    ssl_certificate_key key.pem;
    location / {
      content_by_lua_block { ngx.say("tls ", ngx.var.ssl_server_name or "-", " ", ngx.var.connection) }
    }
  }
}
]]

describe("ngx cosocket transport (rerank.transport.ngx) in real nginx", function()
  if not available then
    pending("nginx not available: " .. tostring(why))
    return
  end
  local srv, tls_url, certdir

  setup(function()
    certdir = d.tmpname(".tls")
    os.execute(("mkdir -p %s && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
      .. "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1")
      :format(certdir, certdir, certdir))
    local tls_port = nginx.free_port()
    tls_url = "https://localhost:" .. tls_port
    local err
    srv, err = nginx.start({ conf = TRANSPORT_CONF:gsub("%$TLSPORT", tostring(tls_port)), files = {
      ["cert.pem"] = d.readfile(certdir .. "/cert.pem"), ["key.pem"] = d.readfile(certdir .. "/key.pem") } })
    assert(srv, err)
  end)

  teardown(function()
    nginx.stop(srv)
    if certdir then os.execute("rm -rf " .. certdir) end
  end)

  local function request(opts)
    local status, raw, _, j = d.request(srv, "/t/request", { body = opts })
    assert.are.equal(200, status, raw .. nginx.errors(srv))
    local o = j.out[1]
    assert.is_true(o.ok, tostring(o.res))
    return o.res ~= cjson.null and o.res or nil, o.err ~= cjson.null and o.err or nil, j
  end

  it("sends method, Host, headers, Content-Length and body; lower-cases answer headers", function()
    local res = assert(request({ url = srv.url .. "/up/echo?a=1", method = "PUT", body = "payload",
                                 headers = { ["X-Api-Key"] = "k1", ["Content-Type"] = "text/plain" }, timeout = 5 }))
    assert.are.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.are.equal("PUT", echo.method)
    assert.are.equal("/up/echo?a=1", echo.uri)
    assert.are.equal("payload", echo.body)
    assert.truthy(echo.head:find("^PUT /up/echo%?a=1 HTTP/1%.1\r\n"))
    assert.truthy(echo.head:find("\r\nHost: 127%.0%.0%.1:" .. srv.port .. "\r\n"))
    assert.truthy(echo.head:find("\r\nContent%-Length: 7\r\n"))
    assert.truthy(echo.head:find("\r\nX%-Api%-Key: k1\r\n"))
    assert.are.equal("a, b", res.headers["x-dup"])
    assert.truthy(res.headers["content-type"])
    assert.is_nil(res.headers["Content-Type"])
  end)

  it("sends basic auth for userpwd and a POST for a body without a method", function()
    local res = assert(request({ url = srv.url .. "/up/echo", body = "{}", userpwd = "user:secret" }))
    local echo = cjson.decode(res.body)
    assert.are.equal("POST", echo.method)
    assert.truthy(echo.head:find("\r\nAuthorization: Basic dXNlcjpzZWNyZXQ=\r\n", 1, true))
  end)

  it("reads Content-Length, chunked, empty (204) and HEAD answers", function()
    local res = assert(request({ url = srv.url .. "/up/length" }))
    assert.are.equal("hello world", res.body)
    assert.are.equal("11", res.headers["content-length"])
    res = assert(request({ url = srv.url .. "/up/chunked" }))
    assert.are.equal("chunked", res.headers["transfer-encoding"])
    assert.are.equal("hello " .. string.rep("x", 100000) .. " world", res.body)
    res = assert(request({ url = srv.url .. "/up/empty" }))
    assert.are.equal(204, res.status)
    assert.are.equal("", res.body)
    res = assert(request({ url = srv.url .. "/up/length", method = "HEAD" }))
    assert.are.equal(200, res.status)
    assert.are.equal("", res.body)
  end)

  it("keeps connections alive and reuses them, but not after Connection: close", function()
    local _, _, j = request({ calls = {
      { url = srv.url .. "/up/echo" }, { url = srv.url .. "/up/echo" },
      { url = srv.url .. "/up/close" }, { url = srv.url .. "/up/echo" } } })
    local r1, r2, r3, r4 = j.out[1].res, j.out[2].res, j.out[3].res, j.out[4].res
    assert.are.equal(cjson.decode(r1.body).connection, cjson.decode(r2.body).connection)
    assert.is_true(r2.reused > 0)
    assert.are.equal("bye", r3.body)
    assert.are.equal("close", r3.headers.connection)
    assert.are.equal(0, r4.reused)
  end)

  it("fails with timeout:, connect:, dns: errors and enforces the whole-call timeout", function()
    local res, err, j = request({ url = srv.url .. "/up/sleep?s=2", timeout = 0.3 })
    assert.is_nil(res)
    assert.truthy(err:find("^timeout: "), err)
    assert.is_true(j.elapsed < 1.5, "took " .. j.elapsed)
    res, err = request({ url = "http://127.0.0.1:" .. nginx.free_port() .. "/", timeout = 2 })
    assert.is_nil(res)
    assert.truthy(err:find("^connect: "), err)
    res, err = request({ url = "http://no-such-host.invalid/", timeout = 2 })
    assert.is_nil(res)
    assert.truthy(err:find("^dns: "), err)
    res, err = request({ url = "ftp://example.com/" })
    assert.is_nil(res)
    assert.truthy(err:find("^http: "), err)
  end)

  it("raises on misuse (no url, body not a string)", function()
    local _, raw, _, j = d.request(srv, "/t/request", { body = { calls = { { method = "GET" }, { url = srv.url, body = 1 } } } })
    assert.is_false(j.out[1].ok, raw)
    assert.truthy(j.out[1].res:find("url is required", 1, true))
    assert.is_false(j.out[2].ok)
    assert.truthy(j.out[2].res:find("body must be a string", 1, true))
  end)

  it("speaks TLS with SNI: certificate checked against lua_ssl_trusted_certificate, or not when insecure", function()
    local _, _, j = request({ calls = { { url = tls_url .. "/a", timeout = 5 }, { url = tls_url .. "/b", timeout = 5 } } })
    local r1, r2 = j.out[1].res, j.out[2].res
    assert.are_not.equal(cjson.null, r1, tostring(j.out[1].err))
    assert.are.equal(200, r1.status)
    local conn1 = r1.body:match("^tls localhost (%d+)\n$")
    assert.truthy(conn1, r1.body)
    -- the second call reuses the pooled TLS connection (no second handshake)
    assert.are.equal("tls localhost " .. conn1 .. "\n", r2.body)
    assert.is_true(r2.reused > 0)
    local res, err = request({ url = tls_url .. "/", server_name = "other.example", timeout = 5 })
    assert.is_nil(res)
    assert.truthy(err:find("^tls: "), err)
    res, err = request({ url = tls_url .. "/", server_name = "other.example", insecure = true, timeout = 5 })
    assert.truthy(res, err)
    assert.truthy(res.body:find("^tls other%.example "), res.body)
    res, err = request({ url = tls_url:gsub("localhost", "127.0.0.1") .. "/", ssl_verify = false, timeout = 5 })
    assert.truthy(res, err)
    res, err = request({ url = srv.url:gsub("^http:", "https:") .. "/up/length", timeout = 5 })
    assert.is_nil(res)
    assert.truthy(err:find("^tls: "), err)
  end)

  it("reads a body delimited by the server closing the connection", function()
    local res = assert(request({ url = srv.url .. "/up/eof" }))
    assert.is_nil(res.headers["content-length"])
    assert.is_nil(res.headers["transfer-encoding"])
    assert.are.equal("until close", res.body)
  end)

  it("request_all keeps order, runs calls concurrently up to the bound, reports errors per call", function()
    local list = {}
    for i = 1, 4 do list[i] = { url = srv.url .. "/up/sleep?s=0.3&id=" .. i, timeout = 5 } end
    list[5] = { url = "http://127.0.0.1:" .. nginx.free_port() .. "/", timeout = 2 }
    local _, raw, _, j = d.request(srv, "/t/request_all", { body = { list = list, concurrency = 5 } })
    assert.truthy(j, raw)
    for i = 1, 4 do assert.are.equal(i .. "\n", j.results[i].body) end
    assert.truthy(j.results[5].error:find("^connect: "))
    assert.is_true(j.elapsed < 0.6, "concurrent: took " .. j.elapsed)
    _, raw, _, j = d.request(srv, "/t/request_all", { body = { list = { list[1], list[2], list[3], list[4] }, concurrency = 2 } })
    assert.truthy(j, raw)
    assert.is_true(j.elapsed >= 0.55 and j.elapsed < 1.1, "two at a time: took " .. j.elapsed)
    for i = 1, 4 do assert.are.equal(i .. "\n", j.results[i].body) end
  end)

  it("never blocks the worker: parallel clients waiting on upstreams finish together", function()
    local cmd = {}
    for i = 1, 4 do
      cmd[i] = ("curl -s --max-time 10 --data-binary '{\"url\":\"%s/up/sleep?s=1\"}' %s/t/request &"):format(srv.url, srv.url)
    end
    local t0 = d.sh("date +%s.%N")
    local out = d.sh("(" .. table.concat(cmd, " ") .. " wait)")
    local elapsed = tonumber(d.sh("date +%s.%N")) - tonumber(t0)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      assert.are.equal(200, cjson.decode(line).out[1].res.status)
      n = n + 1
    end
    assert.are.equal(4, n)
    assert.is_true(elapsed < 2.5, "one worker, 4 x 1 s upstreams took " .. elapsed .. " s")
  end)

  it("sleeps with ngx.sleep", function()
    local status, raw = d.request(srv, "/t/sleep")
    assert.are.equal(200, status)
    assert.are.equal("ok\n", raw)
  end)

  it("caches scores in a lua_shared_dict across requests", function()
    local _, raw = d.request(srv, "/t/cache?q=cat&d=doc&v=0.75")
    assert.truthy(raw:find("^0%.75 nil cache: lua_shared_dict \"no_such_dict\" is not declared"), raw)
    _, raw = d.request(srv, "/t/cache?q=cat&d=doc")
    assert.truthy(raw:find("^0%.75 "), raw)
    _, raw = d.request(srv, "/t/cache?q=cat&d=other")
    assert.truthy(raw:find("^nil "), raw)
  end)
end)
