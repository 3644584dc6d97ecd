-- Process lifecycle: SIGHUP reload (good and broken configs, under load), access log,
-- SIGUSR1 log reopen.
local d = require "support.daemon"
local cjson = require "cjson"

local BASE = [[
server: { auth: none }
log: { access: %s }
models:
  - { name: bm25, provider: bm25, k1: %s }
  - { name: other, provider: bm25 }
]]

describe("rerankd lifecycle", function()
  local srv, cfgpath, access
  setup(function()
    access = d.tmpname(".access.log")
    srv = assert(d.start(BASE:format(access, "1.2"), { workers = 2 }))
    cfgpath = srv.cfg
  end)
  teardown(function() d.stop(srv) end)

  local function score()
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = { query = "a b", documents = { "a a b c", "b" } } })
    assert.are.equal(200, status, raw)
    return j.results[1].relevance_score
  end

  -- read() until its text holds plain (up to 2.5 s); the text, or nil when it never did
  local function wait_text(read, plain)
    for _ = 1, 50 do
      local text = read() or ""
      if text:find(plain, 1, true) then return text end
      d.sleep(0.05)
    end
    return nil
  end
  local function wait_log(plain) return wait_text(function() return d.logtext(srv) end, plain) ~= nil end
  -- the access-log line is written once the reply has gone out, so a client can read its
  -- reply first: wait for the line rather than race the worker
  local function wait_access(plain) return wait_text(function() return d.readfile(access) end, plain) end

  it("writes one JSON access-log line per request", function()
    d.request(srv, "/v1/rerank", { body = { model = "bm25", query = "a", documents = { "a", "b" } },
      headers = { ["x-request-id"] = "trace-123" } })
    d.request(srv, "/nope")
    local lines = {}
    assert.truthy(wait_access('"id":"trace-123"'), d.readfile(access))
    local text = assert(wait_access('"path":"/nope"'), d.readfile(access))
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(line) end
    local hit, miss
    for _, l in ipairs(lines) do
      if l.id == "trace-123" then hit = l end
      if l.path == "/nope" then miss = l end
    end
    assert.truthy(hit, d.readfile(access))
    assert.are.equal(200, hit.status)
    assert.are.equal("bm25", hit.model)
    assert.are.equal(2, hit.docs)
    assert.are.equal("/v1/rerank", hit.route)
    assert.is_number(hit.total_us)
    assert.is_number(hit.us.upstream)
    assert.truthy(tostring(hit.ts):match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), hit.ts)
    assert.truthy(text:find('"status":200,', 1, true), text) -- integers as digits alone
    assert.truthy(text:find('"total_us":%d+[,}]'), text)
    assert.are.equal(404, miss.status)
  end)

  it("SIGHUP applies a new config and refuses a broken one, dropping nothing under load", function()
    local before = score()
    local body = d.writefile(d.tmpname(".json"), cjson.encode({ query = "a", documents = { "a", "b", "c" } }))
    local codes = d.tmpname(".codes")
    -- 400 requests from 8 clients while we reload three times
    os.execute(("(seq 1 400 | xargs -P 8 -I{} curl -s -o /dev/null -w '%%{http_code}\\n' "
      .. "-H 'Content-Type: application/json' --data-binary @%s %s/v1/rerank > %s) &"):format(body, srv.url, codes))
    d.writefile(cfgpath, BASE:format(access, "0.5"))
    os.execute("kill -HUP " .. srv.pid)
    assert.is_true(wait_log("configuration reloaded"))
    d.writefile(cfgpath, "models:\n  - { name: bm25, provider: bm2 }\n")
    os.execute("kill -HUP " .. srv.pid)
    assert.is_true(wait_log("reload refused"))
    d.writefile(cfgpath, BASE:format(access, "0.5"))
    os.execute("kill -HUP " .. srv.pid)
    for _ = 1, 200 do
      local n = select(2, (d.readfile(codes) or ""):gsub("\n", ""))
      if n >= 400 then break end
      d.sleep(0.05)
    end
    local out = d.readfile(codes) or ""
    local n = 0
    for code in out:gmatch("%d+") do
      assert.are.equal("200", code)
      n = n + 1
    end
    assert.are.equal(400, n)
    assert.truthy(d.logtext(srv):find('provider: unknown provider "bm2"', 1, true))
    assert.is_true(d.alive(srv))
    local after = score()
    assert.are_not.equal(before, after) -- k1 changed from 1.2 to 0.5
  end)

  it("SIGUSR1 reopens the access log after rotation", function()
    os.rename(access, access .. ".1")
    os.execute("kill -USR1 " .. srv.pid)
    assert.is_true(wait_log("log files reopened"))
    d.request(srv, "/health")
    assert.truthy(wait_access('"path":"/health"'), d.readfile(access))
  end)
end)
