-- Issue 14 through the real interfaces: `rerankd -t`, SIGHUP, HTTP against the daemon.
-- Auth fails closed; reloads self-test before they commit; secrets never echo; request ids
-- cannot forge access-log fields; a config cannot exhaust the machine.
local d = require "support.daemon"
local rawtcp = require "support.rawtcp"
local cjson = require "cjson"
local core = require "rerank.core"

local function check_config(text, env)
  local f = d.writefile(d.tmpname(".yaml"), text)
  local out = d.sh(("%s %s -t -c %s 2>&1; echo rc=$?"):format(env or "", d.bin, f))
  return out, f
end

local function wait_log(srv, pattern, from)
  for _ = 1, 100 do
    local text = d.logtext(srv)
    if text:find(pattern, from or 1, true) then return true end
    d.sleep(0.05)
  end
  return false
end

local DOCS = { query = "capital of France", documents = { "Paris is the capital of France", "bananas" } }

---------------------------------------------------------------------------------------------
describe("issue 14: authentication fails closed", function()
  it("rerankd -t refuses an empty, comment-only or truncated config", function()
    for _, text in ipairs({ "", "# nothing but a comment\n", "server:\n  listen: \"127.0.0.1:0\"\n" }) do
      local out, f = check_config(text)
      assert.truthy(out:find("rc=1", 1, true), out)
      assert.truthy(out:find(f .. ":", 1, true), out) -- file:line:col
      assert.truthy(out:find("configuration is empty", 1, true) or out:find("no API keys", 1, true), out)
    end
  end)

  it("rerankd -t refuses api_keys whose entries are all empty (an unset ${VAR}), accepts auth: none", function()
    local cfg = 'server:\n  api_keys: ["${HARDEN_KEY}", { name: b, key: "${HARDEN_KEY_B:-}" }]\n'
      .. "models: [{ name: bm25, provider: bm25 }]\n"
    local out, f = check_config(cfg, "env -u HARDEN_KEY -u HARDEN_KEY_B")
    assert.truthy(out:find(f .. ":2:13: server.api_keys: every API key is empty", 1, true), out)
    assert.truthy(out:find("rc=1", 1, true), out)
    out = check_config(cfg, "HARDEN_KEY=k-0123456789")
    assert.truthy(out:find("is ok", 1, true), out)
    out = check_config("server: { auth: none }\nmodels: [{ name: bm25, provider: bm25 }]\n")
    assert.truthy(out:find("is ok", 1, true), out)
    out, f = check_config('server: { auth: none, api_keys: ["k-0123456789"] }\nmodels: [{ name: bm25, provider: bm25 }]\n')
    assert.truthy(out:find(f .. ":1:", 1, true) and out:find("auth: none conflicts", 1, true), out)
  end)

  it("the shipped config.yaml makes the choice explicitly and the daemon says so at start", function()
    local out = d.sh(("%s -t -c %s/config.yaml 2>&1"):format(d.bin, d.root))
    assert.truthy(out:find("is ok", 1, true), out)
    local srv = assert(d.start(nil))
    finally(function() d.stop(srv) end)
    assert.is_true(wait_log(srv, "auth: none (server.auth: none)"), d.logtext(srv))
    local status, raw = d.request(srv, "/v1/rerank", { body = DOCS })
    assert.are.equal(200, status, raw)
  end)

  it("SIGHUP refuses an empty, truncated or keyless config: 401 stays 401", function()
    local keyed = 'server: { api_keys: ["k-hardening-0123"] }\nmodels: [{ name: bm25, provider: bm25 }]\n'
    local srv = assert(d.start(keyed))
    finally(function() d.stop(srv) end)
    assert.is_true(wait_log(srv, "auth: 1 API key"), d.logtext(srv))
    local cases = {
      "",                                                             -- emptied by a bad deploy
      "# server:\n#   api_keys: [\"k-hardening-0123\"]\n",            -- commented out
      "server: { api_keys: [\"${HARDEN_UNSET_KEY}\"] }\nmodels: [{ name: bm25, provider: bm25 }]\n",
      "models: [{ name: bm25, provider: bm25 }]\n",                  -- truncated: keys gone
    }
    for i, text in ipairs(cases) do
      local mark = #d.logtext(srv)
      d.writefile(srv.cfg, text)
      os.execute("kill -HUP " .. srv.pid)
      assert.is_true(wait_log(srv, "reload refused", mark), "case " .. i .. ": " .. d.logtext(srv):sub(mark))
      local status, raw = d.request(srv, "/v1/rerank", { body = DOCS })
      assert.are.equal(401, status, "case " .. i .. ": " .. raw)
      status = d.request(srv, "/v1/rerank", { body = DOCS, headers = { Authorization = "Bearer k-hardening-0123" } })
      assert.are.equal(200, status)
    end
    -- an explicit auth: none is a choice: it is applied, and logged
    local mark = #d.logtext(srv)
    d.writefile(srv.cfg, "server: { auth: none }\nmodels: [{ name: bm25, provider: bm25 }]\n")
    os.execute("kill -HUP " .. srv.pid)
    assert.is_true(wait_log(srv, "configuration reloaded", mark), d.logtext(srv):sub(mark))
    assert.is_true(wait_log(srv, "auth: none", mark), d.logtext(srv):sub(mark))
    local status = d.request(srv, "/v1/rerank", { body = DOCS })
    assert.are.equal(200, status)
  end)
end)

---------------------------------------------------------------------------------------------
describe("issue 14: a config cannot exhaust the machine (rerankd -t)", function()
  local bad = d.root .. "/tests/fixtures/config/bad/"
  for _, name in ipairs({ "hard_yaml_alias_bomb", "hard_yaml_merge_bomb", "hard_max_body_huge",
                          "hard_keepalive_zero", "hard_timeout_huge", "hard_model_timeout_huge",
                          "hard_cache_size_huge", "hard_provider_file_device" }) do
    it(name, function()
      local f = bad .. name .. ".yaml"
      local want = d.readfile(f):match("^# expect: ([^\n]*)")
      local out = d.sh(("%s -t -c %s 2>&1; echo rc=$?"):format(d.bin, f))
      assert.truthy(out:find(f .. want, 1, true), out)
      assert.truthy(out:find("rc=1", 1, true), out)
    end)
  end

  it("refuses a FIFO, a device and an oversized file as the config without reading them", function()
    local fifo = d.tmpname(".fifo")
    os.execute("mkfifo " .. fifo)
    finally(function() os.remove(fifo) end)
    -- timeout: the old code blocked forever opening the FIFO
    local out = d.sh(("timeout 10 %s -t -c %s 2>&1; echo rc=$?"):format(d.bin, fifo))
    assert.truthy(out:find(fifo .. ": not a regular file", 1, true), out)
    assert.truthy(out:find("rc=1", 1, true), out)
    out = d.sh(("timeout 10 %s -t -c /dev/zero 2>&1; echo rc=$?"):format(d.bin))
    assert.truthy(out:find("/dev/zero: not a regular file", 1, true), out)
    local big = d.writefile(d.tmpname(".yaml"), "server: { auth: none }\n" .. ("# padding\n"):rep(120000))
    out = d.sh(("%s -t -c %s 2>&1; echo rc=$?"):format(d.bin, big))
    assert.truthy(out:find(big .. ": file too large", 1, true), out)
    assert.truthy(out:find("rc=1", 1, true), out)
  end)

  it("refuses a FIFO as a provider file or template without blocking", function()
    local fifo = d.tmpname(".lua")
    os.execute("mkfifo " .. fifo)
    finally(function() os.remove(fifo) end)
    local out = check_config(("server: { auth: none }\nmodels:\n  - { name: p, provider_file: %s }\n"):format(fifo))
    assert.truthy(out:find("not a regular file", 1, true), out)
    out = check_config(("server: { auth: none }\nmodels:\n  - { name: l, provider: openai_llm, api_key: k, "
      .. "template: %s }\n"):format(fifo))
    assert.truthy(out:find("not a regular file", 1, true), out)
    assert.truthy(out:find("rc=1", 1, true), out)
  end)
end)

---------------------------------------------------------------------------------------------
describe("issue 14: request ids cannot forge access-log fields", function()
  local srv, access
  setup(function()
    access = d.tmpname(".access.log")
    srv = assert(d.start(([[
server: { auth: none, max_body: 1k }
log: { access: %s }
models: [{ name: bm25, provider: bm25 }]
]]):format(access)))
  end)
  teardown(function() d.stop(srv) end)

  it("drops an unsafe x-request-id (also on replies the C core writes) and keeps a safe one", function()
    local forged = 'evil","key":"admin","status":200,"x":"'
    local big = { query = "q", documents = { ("x"):rep(2000) } } -- 413 from core/http_parse.c
    local s1, _, h1 = d.request(srv, "/v1/rerank", { body = big, headers = { ["x-request-id"] = forged } })
    assert.are.equal(413, s1)
    assert.are_not.equal(forged, h1["x-request-id"])
    local s2, _, h2 = d.request(srv, "/v1/rerank", { body = DOCS, headers = { ["x-request-id"] = forged } })
    assert.are.equal(200, s2)
    assert.truthy(h2["x-request-id"]:match("^[%w]+$"), h2["x-request-id"])
    local long = ("a"):rep(65)
    local _, _, h3 = d.request(srv, "/v1/rerank", { body = DOCS, headers = { ["x-request-id"] = long } })
    assert.are_not.equal(long, h3["x-request-id"])
    local _, _, h4 = d.request(srv, "/v1/rerank", { body = DOCS, headers = { ["x-request-id"] = "trace-1.a_b:c" } })
    assert.are.equal("trace-1.a_b:c", h4["x-request-id"])
    -- a path with a quote, UTF-8 and a byte that is not UTF-8: logged escaped
    local res = rawtcp.exchange(srv.port, 'GET /caf\195\169"x\255 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 3)
    assert.truthy(res.responses[1], "no answer")
    d.sleep(0.2)
    local text = d.readfile(access) or ""
    assert.is_nil(text:find("evil", 1, true), text)
    local n, kept = 0, false
    for line in text:gmatch("[^\n]+") do
      n = n + 1
      assert.is_nil(core.utf8_check(line), line)
      local j = cjson.decode(line) -- every line is one JSON object
      assert.is_nil(j.key, line)   -- no forged field
      assert.is_number(j.status)
      kept = kept or (j.id == "trace-1.a_b:c" and j.status == 200)
    end
    assert.are.equal(5, n, text)
    assert.is_true(kept, text)
    assert.truthy(text:find('"path":"/caf\195\169\\"x\\ufffd"', 1, true), text)
  end)
end)

---------------------------------------------------------------------------------------------
describe("issue 14: secrets never echo", function()
  local mock
  local KEY = "sk-Hardening-Secret-42/x+y"
  local HDR = "hdr-Secret-Token-77"
  setup(function() mock = d.start_mock() end)
  teardown(function() d.stop_mock(mock) end)

  local function leaks(text, secrets)
    local low = text:lower()
    for _, s in ipairs(secrets) do
      local enc = s:gsub("[^%w%-%._~]", function(c) return ("%%%02x"):format(c:byte()) end)
      if low:find(s:lower(), 1, true) or low:find(enc:lower(), 1, true) then return s end
    end
    return nil
  end

  it("masks the key, header values and base_url credentials in any case or encoding (answers and logs)", function()
    local host = mock.url:gsub("^http://", "")
    local srv = assert(d.start(([[
server: { auth: none }
models:
  - name: echo
    provider: cohere
    api_key: "%s"
    base_url: "http://admin:Url-Pass-9911@%s/fault/echo/cohere"
    headers: { x-api-token: "%s" }
    retries: 0
]]):format(KEY, host, HDR)))
    finally(function() d.stop(srv) end)
    local status, raw = d.request(srv, "/v1/rerank", { body = { model = "echo", query = "q", documents = { "a" } } })
    assert.are.equal(502, status, raw)
    assert.truthy(raw:find("rejected credentials", 1, true), raw) -- the echo reached us...
    assert.truthy(raw:find("[redacted]", 1, true), raw)
    assert.is_nil(leaks(raw, { KEY, HDR, "Url-Pass-9911" }), raw) -- ...without the secrets
    assert.is_nil(leaks(d.logtext(srv), { KEY, HDR, "Url-Pass-9911" }), d.logtext(srv))
  end)

  it("rerankd -t never shows the user:password of a base_url", function()
    local out = check_config("server: { auth: none }\nmodels:\n  - { name: c, provider: cohere, api_key: k, "
      .. 'base_url: "htp://admin:Url-Pass-9911@example.com" }\n')
    assert.truthy(out:find("invalid URL", 1, true), out)
    assert.is_nil(out:find("Url-Pass-9911", 1, true), out)
  end)

  it("GET /health?deep=1 needs a key when keys are configured, and is rate-limited", function()
    local srv = assert(d.start(([[
server: { api_keys: ["k-deep-0123456"] }
models:
  - { name: bm25, provider: bm25 }
  - { name: badkey, provider: cohere, api_key: wrong-key, base_url: "%s/cohere" }
]]):format(mock.url)))
    finally(function() d.stop(srv) end)
    d.mock_reset(mock)
    local status, raw = d.request(srv, "/health?deep=1")
    assert.are.equal(401, status, raw)
    assert.are.equal(0, #d.mock_requests(mock)) -- no upstream call for an anonymous client
    status = d.request(srv, "/health")            -- liveness stays open
    assert.are.equal(200, status)
    local auth = { Authorization = "Bearer k-deep-0123456" }
    status, raw = d.request(srv, "/health?deep=1", { headers = auth })
    assert.are.equal(503, status, raw) -- badkey fails
    local h
    status, raw, h = d.request(srv, "/health?deep=1", { headers = auth })
    assert.are.equal(429, status, raw)
    assert.truthy(tonumber(h["retry-after"]), raw)
    assert.are.equal(1, #d.mock_requests(mock)) -- the second check called nothing
  end)
end)

---------------------------------------------------------------------------------------------
describe("issue 14: start and reload run a self-test before they commit", function()
  local BUILD_RAISES = [[
return {
  name = "build_raises",
  build = function(model, req)
    local t = nil
    return { url = model.base_url .. "/x", body = { n = t.field } } -- raises on every request
  end,
  parse = function() return { scores = {} } end,
}
]]
  local FUSE_RAISES = [[
return { name = "fuse_raises", fuse = function(lists) error("fusion exploded: " .. #lists) end }
]]
  local TEMPLATE_RAISES = [[
return { name = "tpl_raises", kind = "pointwise",
  messages = function(query) return query:nope() end, parse = function() return { score = 1 } end }
]]

  it("rerankd -t names the model, its config line and the script's line", function()
    local pf = d.writefile(d.tmpname("_build.lua"), BUILD_RAISES)
    local out, f = check_config(("server: { auth: none }\nmodels:\n  - { name: bm25, provider: bm25 }\n"
      .. "  - { name: bad, provider_file: %s, base_url: \"http://127.0.0.1:1\" }\n"):format(pf))
    assert.truthy(out:find(f .. ":4:5: models[1]: model \"bad\"", 1, true), out)
    assert.truthy(out:find("failed its self-test: build() raised: ", 1, true), out)
    assert.truthy(out:find("_build.lua:5: attempt to index", 1, true), out)
    assert.truthy(out:find("rc=1", 1, true), out)
  end)

  it("rerankd -t runs fusion methods and templates on canned input", function()
    local ff = d.writefile(d.tmpname("_fuse.lua"), FUSE_RAISES)
    local out, f = check_config(("server: { auth: none }\nfusion: [%s]\nmodels: [{ name: bm25, provider: bm25 }]\n"
      .. "pipelines:\n  - { name: p, stages: [ { fuse: fuse_raises }, { rerank: bm25 } ] }\n"):format(ff))
    assert.truthy(out:find(f .. ":2:10: fusion[0]: fusion method failed its self-test: ", 1, true), out)
    assert.truthy(out:find("fusion exploded", 1, true), out)
    local dir = d.tmpname("_tpl")
    os.execute("mkdir -p " .. dir)
    d.writefile(dir .. "/tpl_raises.lua", TEMPLATE_RAISES)
    out, f = check_config(("server: { auth: none }\ntemplates: [%s]\nmodels:\n"
      .. "  - { name: llm, provider: openai_llm, api_key: k, base_url: \"http://127.0.0.1:1\", template: tpl_raises }\n")
      :format(dir))
    os.execute("rm -rf " .. dir)
    assert.truthy(out:find(f .. ":4:5: models[0]: model \"llm\"", 1, true), out)
    assert.truthy(out:find("plan() raised: ", 1, true) and out:find("nope", 1, true), out)
  end)

  it("SIGHUP refuses a config whose provider raises in build(): the old one keeps serving", function()
    local pf = d.writefile(d.tmpname("_build.lua"), BUILD_RAISES)
    local srv = assert(d.start("server: { auth: none }\nmodels: [{ name: bm25, provider: bm25 }]\n"))
    finally(function() d.stop(srv) end)
    local mark = #d.logtext(srv)
    d.writefile(srv.cfg, ("server: { auth: none }\ndefault_model: bad\nmodels:\n  - { name: bm25, provider: bm25 }\n"
      .. "  - { name: bad, provider_file: %s, base_url: \"http://127.0.0.1:1\" }\n"):format(pf))
    os.execute("kill -HUP " .. srv.pid)
    assert.is_true(wait_log(srv, "reload refused", mark), d.logtext(srv):sub(mark))
    local log = d.logtext(srv):sub(mark)
    assert.truthy(log:find(srv.cfg .. ":5:5: models[1]", 1, true), log)
    assert.is_nil(log:find("configuration reloaded", 1, true), log)
    local status, raw = d.request(srv, "/v1/rerank", { body = DOCS })
    assert.are.equal(200, status, raw) -- bm25 still the default: the old configuration serves
  end)
end)
