-- The access log (issue 9): the upstream status and the fields operators read, on the real
-- daemon with the mock upstream, over curl.
local d = require "support.daemon"
local cjson = require "cjson"

local function access_line(access, id)
  for _ = 1, 40 do
    for line in (d.readfile(access) or ""):gmatch("[^\n]+") do
      local ok, l = pcall(cjson.decode, line)
      if ok and l.id == id then return l end
    end
    d.sleep(0.05)
  end
end

describe("access log: upstream status", function()
  local srv, mock, access

  setup(function()
    mock = d.start_mock()
    access = d.tmpname(".access")
    srv = assert(d.start(([[
server: { auth: none }
log: { access: %s }
default_model: co
models:
  - { name: bm25, provider: bm25 }
  - { name: co, provider: cohere, api_key: test-key, base_url: "%s/cohere", retries: 0 }
  - { name: down, provider: cohere, api_key: test-key, base_url: "%s/fault/500/cohere", retries: 0, fallbacks: [bm25] }
  - { name: broken, provider: cohere, api_key: test-key, base_url: "%s/fault/503/cohere", retries: 0 }
]]):format(access, mock.url, mock.url, mock.url)))
  end)

  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  local function call(model, id)
    local status = d.request(srv, "/v1/rerank", { headers = { ["x-request-id"] = id },
      body = { model = model, query = "deploy model", documents = { "deploy a model", "billing" } } })
    return status, access_line(access, id)
  end

  it("logs the upstream's HTTP status of a successful upstream call", function()
    local status, l = call("co", "acc-up-ok")
    assert.are.equal(200, status)
    assert.truthy(l, d.readfile(access))
    assert.are.equal(200, l.upstream_status)
  end)

  it("logs the failing upstream's status, also when a fallback answered", function()
    local status, l = call("broken", "acc-up-503")
    assert.are.equal(502, status)
    assert.truthy(l, d.readfile(access))
    assert.are.equal(503, l.upstream_status)
    status, l = call("down", "acc-up-500")
    assert.are.equal(200, status)
    assert.truthy(l, d.readfile(access))
    assert.are.equal(500, l.upstream_status)
  end)

  it("logs no upstream status for a local model", function()
    local status, l = call("bm25", "acc-up-local")
    assert.are.equal(200, status)
    assert.truthy(l, d.readfile(access))
    assert.is_nil(l.upstream_status)
  end)
end)

describe("access log: batched lines", function()
  -- a worker writes its lines in batches (core/log.c): when it has nothing in flight, when
  -- 32 KB are pending, every second and when it exits; none may be lost, cut or doubled
  it("has exactly one whole line per request after a parallel burst on two workers", function()
    local access = d.tmpname(".access")
    local srv = assert(d.start(([[
server: { auth: none }
log: { access: %s }
models:
  - { name: bm25, provider: bm25 }
]]):format(access), { workers = 2 }))
    local cfg, lines, n = d.tmpname(".curl"), {}, 600
    for i = 1, n do
      lines[i] = ('url = "%s/v1/rerank"\ndata = "{\\"query\\":\\"a\\",\\"documents\\":[\\"a b\\",\\"c\\"]}"\n'
        .. 'header = "Content-Type: application/json"\nheader = "x-request-id: burst-%d"\n'
        .. 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n'):format(srv.url, i)
    end
    d.writefile(cfg, table.concat(lines, "next\n"))
    local codes = d.sh("curl -s --no-progress-meter -Z --parallel-max 16 -K " .. cfg .. " 2>/dev/null")
    assert.are.equal(n, select(2, codes:gsub("200", "")), codes:sub(1, 200))
    local function count()
      local seen, total = {}, 0
      for line in (d.readfile(access) or ""):gmatch("[^\n]+") do
        local l = assert(cjson.decode(line)) -- a cut or interleaved line fails here
        if l.id and l.id:find("^burst%-") then
          assert.is_nil(seen[l.id], "twice: " .. l.id)
          seen[l.id], total = true, total + 1
        end
      end
      return total
    end
    local got = 0
    for _ = 1, 40 do
      got = count()
      if got == n then break end
      d.sleep(0.05)
    end
    assert.are.equal(n, got)
    d.stop(srv)
    assert.are.equal(n, count())
  end)
end)
