-- Scale-out, end to end: two rerankd instances behind real nginx (examples/scale-out/nginx.conf:
-- upstream + proxy_next_upstream) sharing one real redis-server for rate limits and the score
-- cache. Per-key limits hold across instances, a pair cached by one instance is a hit on the
-- other, a rolling SIGHUP and a SIGKILL under load lose no client request, and with Redis
-- down the instances fall back to local state and say so.
local d = require "support.daemon"
local nginx = require "support.nginx"
local redis_server = require "support.redis"

local KEY = "scale-out-test-key-0123456789"
local LIMITED = "scale-out-limited-key-0123456789"

local function config(redis, mock)
  return table.concat({
    'server: { listen: "127.0.0.1:0", api_keys: [ { name: load, key: "' .. KEY .. '" },',
    '  { name: limited, key: "' .. LIMITED .. '" } ] }',
    "log: { access: off }",
    ("redis: { url: \"redis://127.0.0.1:%d/0\", timeout: 200ms, prefix: \"t%d:\" }"):format(redis.port, math.random(1e6)),
    "limits: { backend: redis, per_key: { requests_per_minute: 1000000 }, keys: { limited: { requests_per_minute: 5 } } }",
    "cache: { backend: redis, ttl: 10m }",
    "models:",
    "  - { name: bm25, provider: bm25 }",
    ('  - { name: co, provider: cohere, api_key: test-key, base_url: "%s/cohere" }'):format(mock.url),
  }, "\n") .. "\n"
end

local function post(url, key, body)
  local f = d.writefile(d.tmpname(".json"), body)
  local out = d.sh(("curl -s -o /dev/null -D - -H 'Content-Type: application/json' -H 'Authorization: Bearer %s'"
    .. " --data-binary @%s %s/v1/rerank"):format(key, f, url))
  os.remove(f)
  return tonumber(out:match("^HTTP/%S+ (%d+)")), out
end

local BODY = '{"model":"bm25","query":"cat dog","documents":["the cat sat","a dog barked","cat and dog"]}'

-- wrk through nginx for `secs` seconds while `during()` runs; returns wrk's RESULT fields
local function load(url, secs, during)
  local body = d.writefile(d.tmpname(".json"), BODY)
  local out = d.tmpname(".wrk")
  d.sh(("BENCH_BODY=%s BENCH_AUTH='Bearer %s' wrk -t2 -c8 -d%ds -s %s/bench/post.lua %s/v1/rerank >%s 2>&1 &")
    :format(body, KEY, secs, d.root, url, out))
  during()
  for _ = 1, (secs + 10) * 10 do
    if (d.readfile(out) or ""):find("RESULT") then break end
    d.sleep(0.1)
  end
  local text = d.readfile(out) or ""
  local r = {}
  for k, v in text:gmatch("(%w+)=([%d.]+)") do r[k] = tonumber(v) end
  assert(r.requests, "wrk gave no result: " .. text)
  return r
end

local function served(inst)
  local _, text = d.request(inst, "/metrics")
  local n = 0
  for v in text:gmatch('rerankd_requests_total{route="/v1/rerank",model="[^"]*",status="%d+"} (%d+)') do
    n = n + tonumber(v)
  end
  return n
end

describe("scale-out: instances behind nginx sharing Redis", function()
  local redis, mock, a, b, lb
  setup(function()
    assert(nginx.available())
    redis = redis_server.start()
    mock = d.start_mock()
    local cfg = config(redis, mock)
    a = assert(d.start(cfg))
    b = assert(d.start(cfg))
    local conf = assert(d.readfile(d.root .. "/examples/scale-out/nginx.conf"))
    local n1, n2, n3
    conf, n1 = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:$PORT;")
    conf, n2 = conf:gsub("server 127%.0%.0%.1:8081 ", "server 127.0.0.1:" .. a.port .. " ")
    conf, n3 = conf:gsub("server 127%.0%.0%.1:8082 ", "server 127.0.0.1:" .. b.port .. " ")
    assert(n1 == 1 and n2 == 1 and n3 == 1, "examples/scale-out/nginx.conf changed shape")
    conf = conf:gsub("worker_processes auto;", "worker_processes 1;")
    lb = assert(nginx.start({ conf = conf }))
  end)
  teardown(function()
    nginx.stop(lb)
    d.stop(a)
    d.stop(b)
    d.stop_mock(mock)
    redis_server.stop(redis)
  end)

  it("a per-key limit of N per minute admits exactly N across the instances", function()
    local before_a, before_b = served(a), served(b)
    local codes = {}
    for _ = 1, 10 do
      local status = post(lb.url, LIMITED, BODY)
      codes[status] = (codes[status] or 0) + 1
    end
    assert.same({ [200] = 5, [429] = 5 }, codes)
    -- both instances answered (nginx round robin): one budget, not one per instance
    assert.is_true(served(a) > before_a and served(b) > before_b)
  end)

  it("a pair cached by one instance is a hit on the other", function()
    d.mock_reset(mock)
    local body = '{"model":"co","query":"shared cache","documents":["a shared cache entry","another"]}'
    local s1, h1 = post(a.url, KEY, body)
    local s2, h2 = post(b.url, KEY, body)
    assert.equal(200, s1)
    assert.equal(200, s2)
    assert.truthy(h1:lower():find("x%-rerankd%-cache: miss"), h1)
    assert.truthy(h2:lower():find("x%-rerankd%-cache: hit"), h2)
    assert.equal(1, #d.mock_requests(mock)) -- only the first instance called the upstream
  end)

  it("a rolling SIGHUP reload under load drops nothing", function()
    local r = load(lb.url, 3, function()
      d.sleep(0.8)
      os.execute("kill -HUP " .. a.pid)
      d.sleep(0.8)
      os.execute("kill -HUP " .. b.pid)
    end)
    assert.is_true(r.requests > 50, tostring(r.requests))
    assert.equal(0, r.errors)
    assert.equal(0, r.non2xx)
    assert.truthy(d.logtext(a):find("configuration reloaded", 1, true))
    assert.truthy(d.logtext(b):find("configuration reloaded", 1, true))
  end)

  it("SIGKILL of one instance under load loses no client request", function()
    local r = load(lb.url, 3, function()
      d.sleep(1)
      os.execute("kill -KILL " .. a.pid)
    end)
    assert.is_false(d.alive(a))
    assert.is_true(r.requests > 50, tostring(r.requests))
    assert.equal(0, r.errors)
    assert.equal(0, r.non2xx)
  end)

  it("with Redis down an instance falls back to local state and says so", function()
    redis_server.stop(redis)
    assert.equal(200, (post(b.url, KEY, BODY)))
    local status, _, _, j = d.request(b, "/health?deep=1", { headers = { Authorization = "Bearer " .. KEY } })
    assert.equal(200, status)
    assert.equal("down", j.redis.status)
    assert.truthy(j.redis.fallback:find("local", 1, true))
    assert.is_false(j.redis.uses.ratelimit.ok)
    assert.truthy(d.logtext(b):find("redis: ratelimit failed", 1, true))
    assert.truthy(d.logtext(b):find("falling back to this worker's local counters", 1, true))
    -- the cache falls back to this worker's memory: a repeated pair is still a hit
    local body = '{"model":"co","query":"redis is down","documents":["local fallback cache"]}'
    local _, h1 = post(b.url, KEY, body)
    local _, h2 = post(b.url, KEY, body)
    assert.truthy(h1:lower():find("x%-rerankd%-cache: miss"), h1)
    assert.truthy(h2:lower():find("x%-rerankd%-cache: hit"), h2)
    assert.truthy(d.logtext(b):find("falling back to this worker's local in-process cache", 1, true))
    -- Redis back: shared state resumes, and the log says so
    redis = redis_server.start(nil, redis.port)
    for _ = 1, 20 do -- a pooled connection that died with the old server fails once
      assert.equal(200, (post(b.url, KEY, BODY)))
      if d.logtext(b):find("redis: ratelimit answers again", 1, true) then break end
      d.sleep(0.1)
    end
    assert.truthy(d.logtext(b):find("redis: ratelimit answers again", 1, true), d.logtext(b))
    -- deep health runs at most once per 5 s per worker (429 until then)
    for _ = 1, 70 do
      status, _, _, j = d.request(b, "/health?deep=1", { headers = { Authorization = "Bearer " .. KEY } })
      if status ~= 429 then break end
      d.sleep(0.1)
    end
    assert.equal(200, status)
    assert.equal("up", j.redis.status)
    assert.is_nil(j.redis.fallback)
  end)
end)
