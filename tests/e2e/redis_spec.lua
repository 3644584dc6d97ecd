-- The daemon's non-blocking Redis client (core/redis.c) against a real redis-server.
local d = require "support.daemon"
local redis_server = require "support.redis"

local start_redis, stop_redis = redis_server.start, redis_server.stop

describe("rerank.core.redis", function()
  local redis, srv
  setup(function()
    redis = start_redis("s3cret")
    srv = assert(d.start(([[
server: { auth: none }
paths: { providers: [%s/tests/fixtures/providers] }
models:
  - { name: probe, provider: redis_probe, port: %d, password: s3cret }
  - { name: noredis, provider: redis_probe, port: 1 }
  - { name: acl, provider: redis_probe, port: %d, username: bob, password: b0b-pw }
]]):format(d.root, redis.port, redis.port), { workers = 2 }))
    d.sh(("redis-cli -p %d -a s3cret --no-auth-warning ACL SETUSER bob on '>b0b-pw' '~*' '+@all'"):format(redis.port))
  end)
  teardown(function()
    d.stop(srv)
    stop_redis(redis)
  end)

  local function run(model, q, n)
    local docs = {}
    for i = 1, n or 1 do docs[i] = "d" .. i end
    return d.request(srv, "/v1/rerank", { body = { model = model, query = q, documents = docs } })
  end

  it("runs commands with AUTH and reuses pooled connections", function()
    local first
    for i = 1, 5 do
      local status, raw, _, j = run("probe", "incr", 2)
      assert.are.equal(200, status, raw)
      if i == 1 then first = j.results[1].relevance_score end
      assert.are.equal(first + 2 * (i - 1), j.results[1].relevance_score)
    end
    -- pooled: at most one connection per worker (2), plus redis-cli's own
    local clients = d.sh(("redis-cli -p %d -a s3cret --no-auth-warning client list"):format(redis.port))
    local n = select(2, clients:gsub("\n", ""))
    assert.is_true(n <= 3, clients)
  end)

  it("pipelines, nil replies, error replies and arrays", function()
    local _, raw, _, j = run("probe", "pipeline")
    assert.are.equal(5, j.results[1].relevance_score, raw)
    _, raw, _, j = run("probe", "error")
    assert.are.equal(1, j.results[1].relevance_score, raw)
    _, raw, _, j = run("probe", "array")
    assert.are.equal(3, j.results[1].relevance_score, raw)
  end)

  it("authenticates a Redis 6 ACL user", function()
    local status, raw, _, j = run("acl", "array")
    assert.are.equal(200, status, raw)
    assert.are.equal(3, j.results[1].relevance_score)
  end)

  it("reports a refused connection as an error, and the worker keeps serving", function()
    local status, raw, _, j = run("noredis", "incr")
    assert.are.equal(502, status, raw)
    assert.truthy(j.error.message:find("connect", 1, true), raw)
    status = run("probe", "incr")
    assert.are.equal(200, status)
  end)
end)
