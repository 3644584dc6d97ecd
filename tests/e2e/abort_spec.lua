-- A client that leaves, or a request past its deadline, cancels its upstream transfers;
-- nothing leaks and the worker keeps serving.
local d = require "support.daemon"

describe("client abort and deadline", function()
  local mock, srv
  setup(function()
    mock = d.start_mock()
    srv = assert(d.start(([[
server: { auth: none, timeout: 1s }
models:
  - { name: slow, provider: cohere, base_url: "%s/fault/slow:3000/cohere", api_key: test-key, timeout: 10s }
  - { name: bm25, provider: bm25 }
]]):format(mock.url)))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  local BODY = '{"model":"slow","query":"q","documents":["a","b"]}'

  it("cancels the upstream call when the client disconnects", function()
    local body = d.writefile(d.tmpname(".json"), BODY)
    local fds = d.fd_count(srv.pid)
    for _ = 1, 5 do
      d.sh(("curl -s --max-time 0.3 -H 'Content-Type: application/json' --data-binary @%s %s/v1/rerank"):format(
        body, srv.url))
    end
    d.sleep(0.2)
    local log = d.logtext(srv)
    local n = select(2, log:gsub("client closed the connection before the reply; cancelling", ""))
    assert.are.equal(5, n, log)
    assert.truthy(log:find('"status":499', 1, true), log)
    -- upstream sockets were closed with their transfers: no growth beyond the reuse pool
    assert.is_true(d.fd_count(srv.pid) <= fds + 1, ("fds %d -> %d"):format(fds, d.fd_count(srv.pid)))
    local status = d.request(srv, "/v1/rerank", { body = { model = "bm25", query = "a", documents = { "a" } } })
    assert.are.equal(200, status)
  end)

  it("answers 504 at the deadline and cancels the transfer", function()
    local t0 = os.time()
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = BODY })
    assert.is_true(os.time() - t0 <= 2)
    assert.is_true(status == 504, raw)
    assert.are.equal("timeout_error", j.error.type)
    local status2 = d.request(srv, "/health")
    assert.are.equal(200, status2)
  end)
end)

describe("rerank.http from a script in the daemon", function()
  it("request and request_all yield the request coroutine and return answers or errors", function()
    local mock = d.start_mock()
    local srv = assert(d.start(([[
server: { auth: none }
paths: { providers: [%s/tests/fixtures/providers] }
models:
  - { name: probe, provider: http_probe }
]]):format(d.root)))
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = {
      model = "probe", query = mock.url, documents = { "a", "b", "c", "d" } } })
    d.stop(srv)
    d.stop_mock(mock)
    assert.are.equal(200, status, raw)
    local by = {}
    for _, r in ipairs(j.results) do by[r.index] = r.relevance_score end
    assert.are.same({ [0] = 200, [1] = 200, [2] = 200, [3] = 1 }, by)
  end)
end)
