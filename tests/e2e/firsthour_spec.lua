-- A new user's first hour (issue 15), through the real interfaces: what the README promises
-- is what the daemon, the CLI, the Makefile, the library and the examples do.
local d = require "support.daemon"
local prom = require "support.prom"
local cjson = require "cjson"

local root = d.root

local function sh_rc(cmd)
  local out = d.sh(cmd .. " 2>&1; echo \"rc=$?\"")
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, out:gsub("rc=%d+%s*$", "")
end

local function bin_path() return os.getenv("RERANKD_BIN") or (root .. "/rerankd") end

local function metrics(srv)
  local _, text = d.request(srv, "/metrics")
  return assert(prom.parse(text))
end

local function readme() return assert(d.readfile(root .. "/README.md")) end

-- every line of a log file (error log and access log: both JSON with log.format json)
local function json_lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, line)
    assert(ok and type(v) == "table", "not a JSON line: " .. line)
    out[#out + 1] = v
  end
  return out
end

describe("pipelines: attribution, and the library answers like the daemon", function()
  local mock, srv, cfgfile
  local tpldir
  setup(function()
    mock = d.start_mock("mock_openai.py", "--key test-key")
    -- a prompt template with a bug in parse
    tpldir = d.tmpname("_tpl")
    d.sh("mkdir -p " .. tpldir)
    d.writefile(tpldir .. "/buggy.lua", [=[
return {
  kind = "pointwise",
  messages = function(query, doc)
    return { { role = "user", content = "Query: " .. query .. "\n\nDocument: " .. doc.text } }
  end,
  parse = function() local t = nil; return t.score end,
}
]=])
    local cfg = ([[
server: { auth: none }
paths: { templates: [%s] }
models:
  - { name: bm25, provider: bm25 }
  - { name: buggy, provider: openai_llm, mode: pointwise, template: buggy, base_url: %s, api_key: test-key }
  - name: llm
    provider: openai_llm
    mode: pointwise
    base_url: %s
    api_key: test-key
    price: { per_1k_prompt_tokens: 1, per_1k_completion_tokens: 2 }
pipelines:
  - name: hybrid
    stages:
      - fuse: { method: rrf }
      - rerank: { model: llm, candidates: 3 }
  - name: local
    stages:
      - fuse: rrf
      - rerank: bm25
]]):format(tpldir, mock.url, mock.url)
    cfgfile = d.writefile(d.tmpname(".yaml"), cfg)
    srv = assert(d.start(cfg))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
    d.sh("rm -rf " .. tpldir)
  end)

  it("a prompt template that raises: its documents degrade, the traceback goes to the log, no paths out", function()
    local status, raw, _, j = d.request(srv, "/v1/rerank",
      { body = { model = "buggy", query = "red", documents = { "red", "blue" } } })
    assert.are.equal(200, status, raw)
    assert.is_true(j.degraded)
    assert.falsy(raw:find(".lua", 1, true), raw)
    local log = d.logtext(srv)
    local at = log:find('template "buggy" (model "buggy") raised in parse: ', 1, true)
    assert.truthy(at, log)
    assert.truthy(log:find("buggy.lua:6: attempt to index local 't'", at, true), log)
    -- Lua shortens long chunk names ("...tail"), so match from the file name on
    assert.truthy(log:find("stack traceback:\n\t[^\n]*/buggy%.lua:6: in function", at), log)
  end)

  local LISTS = {
    { name = "vector", kind = "distance", items = {
      { id = "a", score = 0.1, text = "red apple pie" }, { id = "b", score = 0.2, text = "blue sky" },
      { id = "c", score = 0.4, text = "apple crumble" } } },
    { name = "fts", items = { { id = "c", score = 9 }, { id = "d", score = 4, text = "red car" } } },
  }

  it("logs and counts a request naming a pipeline under the pipeline, each stage under its model", function()
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body = { pipeline = "hybrid", query = "red apple", lists = LISTS } })
    assert.are.equal(200, status, raw)
    assert.are.equal("hybrid", j.model)
    local cost = tonumber(h["x-rerankd-cost"])
    assert.is_true(cost > 0)
    local fam = metrics(srv)
    assert.are.equal(cost, prom.value(fam, "rerankd_cost_usd_total", { model = "hybrid" }))
    assert.are.equal(cost, prom.value(fam, "rerankd_cost_usd_total", { model = "llm" }))
    assert.are.equal(j.usage.total_tokens, prom.value(fam, "rerankd_tokens_total", { model = "hybrid" }))
    assert.are.equal(j.usage.total_tokens, prom.value(fam, "rerankd_tokens_total", { model = "llm" }))
    assert.is_nil(prom.value(fam, "rerankd_cost_usd_total", { model = "bm25" }))
    assert.is_nil(prom.value(fam, "rerankd_tokens_total", { model = "bm25" }))
    assert.are.equal(1, prom.value(fam, "rerankd_requests_total", { route = "/v1/rerank", model = "hybrid", status = "200" }))
    local line = d.logtext(srv):match('[^\n]*"id":"' .. h["x-request-id"] .. '"[^\n]*')
    assert.truthy(line, d.logtext(srv))
    assert.are.equal("hybrid", cjson.decode(line).model)
  end)

  it("gives the library the same per-stage fields as the HTTP answer (not a JSON string)", function()
    local req = { pipeline = "local", query = "red apple", lists = LISTS, return_score = "all" }
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = req })
    assert.are.equal(200, status, raw)
    local rerank = require "rerank"
    local r = assert(rerank.new(cfgfile))
    local res = assert(r:rerank(cjson.decode(cjson.encode(req))))
    assert.are.equal(#j.results, #res.results)
    for i, want in ipairs(j.results) do
      local got = res.results[i]
      assert.is_nil(got.extra)
      assert.are.equal("number", type(got._fused_score))
      assert.are.equal("table", type(got.ranks))
      -- the same JSON values (rerank.json writes numbers exactly, as the daemon does)
      assert.are.same(want, cjson.decode(require("rerank.json").encode(got)))
    end
    assert.are.equal(res.results[1].id, j.results[1].id)
  end)
end)

describe("provider script errors", function()
  local mock, srv
  setup(function()
    mock = d.start_mock()
    srv = assert(d.start(([[
server: { auth: none }
log: { format: json }
models:
  - { name: bm25, provider: bm25 }
  - { name: acme, provider_file: %s/tests/fixtures/providers/raising.lua, base_url: "%s/cohere", api_key: test-key }
]]):format(root, mock.url)))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  local function call(q)
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = { model = "acme", query = q, documents = { "a", "b" } } })
    return status, j, raw
  end

  it("works when it does not raise", function()
    local status, _, raw = call("red apple")
    assert.are.equal(200, status, raw)
  end)

  for _, case in ipairs({ { "boom-build", "build", "build exploded on purpose" },
                          { "boom-parse", "parse", "attempt to index" } }) do
    it("a raise in " .. case[2] .. " is a 500 internal_error without paths, the traceback in the log", function()
      local status, j, raw = call(case[1])
      assert.are.equal(500, status, raw)
      assert.are.equal("internal_error", j.error.type)
      assert.truthy(j.error.message:find("raised in " .. case[2], 1, true), j.error.message)
      assert.truthy(j.error.message:find(case[3], 1, true), j.error.message)
      assert.falsy(raw:find(".lua", 1, true), raw)
      assert.falsy(raw:find(root, 1, true), raw)
      local found
      for _, l in ipairs(json_lines(d.logtext(srv))) do
        if l.level == "error" and l.msg:find("raised in " .. case[2], 1, true) then found = l.msg end
      end
      assert.truthy(found, d.logtext(srv))
      assert.truthy(found:find("stack traceback", 1, true), found)
      -- the frame that raised is in the traceback, not only in the message
      local frame = "\n\t" .. root:gsub("%p", "%%%0") .. "/tests/fixtures/providers/raising%.lua:%d+: in function"
      assert.truthy(found:find(frame), found)
    end)
  end

  it("parse returning nil, err stays a 502 naming the upstream", function()
    local status, j, raw = call("nil-parse")
    assert.are.equal(502, status, raw)
    assert.are.equal("upstream_error", j.error.type)
    assert.truthy(j.error.message:find('upstream "raising" (model "acme")', 1, true), j.error.message)
    assert.truthy(j.error.message:find("cannot read this answer", 1, true), j.error.message)
  end)

  it("writes every error-log line as JSON with log.format: json", function()
    local lines = json_lines(d.logtext(srv))
    local levels = 0
    for _, l in ipairs(lines) do
      if l.level then
        levels = levels + 1
        assert.are.equal("string", type(l.ts))
        assert.are.equal("string", type(l.msg))
      end
    end
    assert.is_true(levels >= 2) -- the start line and the tracebacks
    assert.truthy(d.logtext(srv):find('"level":"info","msg":"rerankd ', 1, true))
  end)
end)

describe("errors every client reads", function()
  local srv
  setup(function()
    srv = assert(d.start([[
server: { api_keys: ["k-123456"], max_body: 1k }
models:
  - { name: bm25, provider: bm25 }
]]))
  end)
  teardown(function() d.stop(srv) end)

  local BODY = { query = "q", documents = { "a" } }

  it("401 before the shape is known carries message and detail", function()
    for _, path in ipairs({ "/v1/rerank", "/rerank" }) do
      local status, raw, h, j = d.request(srv, path, { body = BODY })
      assert.are.equal(401, status, raw)
      assert.truthy(h["www-authenticate"])
      assert.are.equal("authentication_error", j.error.type)
      assert.are.equal(j.error.message, j.message)
      assert.are.equal(j.error.message, j.detail)
    end
  end)

  it("401 on a route with one shape is in that shape", function()
    local cases = { ["/v2/rerank"] = "message", ["/cohere/v1/rerank"] = "message", ["/cohere/v2/rerank"] = "message",
                    ["/jina/v1/rerank"] = "detail", ["/voyage/v1/rerank"] = "detail" }
    for path, field in pairs(cases) do
      local status, raw, _, j = d.request(srv, path, { body = BODY })
      assert.are.equal(401, status, raw)
      assert.are.equal("string", type(j[field]), path .. ": " .. raw)
      assert.are.equal("authentication_error", j.error.type)
    end
    local status, raw, _, j = d.request(srv, "/tei/rerank", { body = BODY })
    assert.are.equal(401, status, raw)
    assert.are.equal("string", type(j.error), raw) -- TEI: {"error": "...", "error_type": ...}
  end)

  it("415 and 405 before the shape carry message and detail", function()
    local status, raw, _, j = d.request(srv, "/jina/v1/rerank", { body = cjson.encode(BODY),
      headers = { ["Content-Type"] = "application/xml", Authorization = "Bearer k-123456" } })
    assert.are.equal(415, status, raw)
    assert.are.equal("string", type(j.detail), raw)
    status, raw, _, j = d.request(srv, "/v1/rerank", { method = "GET", headers = { Authorization = "Bearer k-123456" } })
    assert.are.equal(405, status, raw)
    assert.are.equal(j.error.message, j.message)
    assert.are.equal(j.error.message, j.detail)
  end)

  it("the HTTP layer's errors (413) carry message and detail too", function()
    local big = { query = "q", documents = { string.rep("x", 4096) } }
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = big, headers = { Authorization = "Bearer k-123456" } })
    assert.are.equal(413, status, raw)
    assert.are.equal("invalid_request_error", j.error.type)
    assert.are.equal(j.error.message, j.message)
    assert.are.equal(j.error.message, j.detail)
  end)

  it("reads text/plain and curl's default form type as JSON, refuses other types", function()
    for _, ct in ipairs({ "text/plain", "application/x-www-form-urlencoded" }) do
      local status, raw = d.request(srv, "/v1/rerank", { body = cjson.encode(BODY),
        headers = { ["Content-Type"] = ct, Authorization = "Bearer k-123456" } })
      assert.are.equal(200, status, ct .. ": " .. raw)
    end
    local status = d.request(srv, "/v1/rerank", { body = cjson.encode(BODY),
      headers = { ["Content-Type"] = "multipart/form-data", Authorization = "Bearer k-123456" } })
    assert.are.equal(415, status)
  end)

  it("lists the README's auth-failure reasons in the metrics HELP text", function()
    local reasons = readme():match("`rerankd_auth_failures_total` | counter | `reason` = ([^\n]+) |")
    assert.truthy(reasons)
    local fam = metrics(srv)
    local help = fam.rerankd_auth_failures_total.help
    for r in reasons:gmatch("`(%w+)`") do assert.truthy(help:find(r, 1, true), help .. " lacks " .. r) end
  end)
end)

describe("small truths", function()
  it("answers the README's first sample with the README's output", function()
    local text = readme()
    local body = text:match("```sh\ncurl %-s localhost:8080/v1/rerank %-H 'Content%-Type: application/json' %-d '(%b{})'")
    local shown = text:match("```json\n(%b{})\n```")
    assert.truthy(body and shown)
    local srv = assert(d.start(nil))
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = body })
    d.stop(srv)
    assert.are.equal(200, status, raw)
    local want = cjson.decode(shown)
    assert.truthy(want.meta, "the README sample shows meta")
    want.id, j.id = nil, nil
    assert.are.same(want, j)
  end)

  it("--help and the README list the same options", function()
    local _, help = sh_rc(d.bin .. " --help")
    local block = readme():match("## Command line\n\n```\n(.-)```")
    assert.truthy(block)
    local readme_opts, help_opts = {}, {}
    for line in block:gmatch("[^\n]+") do
      if line:match("^  %S") then readme_opts[#readme_opts + 1] = line end
    end
    for line in help:gmatch("[^\n]+") do
      if line:match("^  %S") then help_opts[#help_opts + 1] = line end
    end
    assert.are.same(help_opts, readme_opts)
    assert.truthy(help:find("0 = any free port", 1, true))
    assert.truthy(block:find("-v, --version", 1, true))
  end)

  it("never asks a client to wait longer than the 60 s window", function()
    local srv = assert(d.start([[
server: { auth: none }
limits: { per_key: { requests_per_minute: 1 } }
models:
  - { name: bm25, provider: bm25 }
]]))
    local body = { query = "q", documents = { "a" } }
    local first = d.request(srv, "/v1/rerank", { body = body })
    local status, raw, h = d.request(srv, "/v1/rerank", { body = body })
    d.stop(srv)
    assert.are.equal(200, first)
    assert.are.equal(429, status, raw)
    local wait = tonumber(h["retry-after"])
    assert.is_true(wait >= 1 and wait <= 60, tostring(h["retry-after"]))
  end)

  it("says x-rerankd-cache on every answer that consulted the cache, with Redis down", function()
    local mock = d.start_mock()
    local srv = assert(d.start(([[
server: { auth: none }
redis: { url: "redis://127.0.0.1:1/0", timeout: 200ms }
cache: { backend: redis }
models:
  - { name: co, provider: cohere, api_key: test-key, base_url: "%s/cohere" }
  - { name: down, provider: cohere, api_key: test-key, base_url: "%s/fault/503/cohere" }
]]):format(mock.url, mock.url)))
    local body = { model = "co", query = "red apple", documents = { "red apple", "sky" } }
    local status, raw, h = d.request(srv, "/v1/rerank", { body = body })
    body.model = "down"
    local status2, raw2, h2 = d.request(srv, "/v1/rerank", { body = body })
    d.stop(srv)
    d.stop_mock(mock)
    assert.are.equal(200, status, raw)
    assert.are.equal("miss", h["x-rerankd-cache"])
    status, raw, h = status2, raw2, h2
    assert.are.equal(502, status, raw)
    assert.are.equal("miss", h["x-rerankd-cache"])
  end)
end)

describe("rerankd check-provider (a provider developed outside the repository)", function()
  local dir
  setup(function()
    dir = d.tmpname("_oot")
    d.sh(("mkdir -p %s/fixtures/my_rerank && cp %s/examples/providers/my_rerank.lua %s/"):format(dir, root, dir))
    d.sh(("cp %s/tests/fixtures/providers/my_rerank/* %s/fixtures/my_rerank/"):format(root, dir))
  end)
  teardown(function() d.sh("rm -rf " .. dir) end)

  it("passes a provider that matches its fixtures", function()
    local rc, out = sh_rc(("cd %s && %s check-provider my_rerank.lua"):format(dir, d.bin))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("ok    build: typical", 1, true), out)
    assert.truthy(out:find("ok    parse: good.json (HTTP 200)", 1, true), out)
    assert.truthy(out:find("6 passed, 0 failed", 1, true), out)
  end)

  it("prints a diff and exits 1 on a mismatch", function()
    d.sh(("sed -i 's/q = req.query, passages = passages/q = req.query, docs = passages/' %s/my_rerank.lua"):format(dir))
    local rc, out = sh_rc(("%s check-provider %s/my_rerank.lua %s/fixtures/my_rerank"):format(d.bin, dir, dir))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find("FAIL  build: typical", 1, true), out)
    assert.truthy(out:find('\n      -     "passages": [', 1, true), out)
    assert.truthy(out:find('\n      +     "docs": [', 1, true), out)
    assert.truthy(out:find("4 passed, 2 failed", 1, true), out)
  end)

  it("exits 2 without fixtures, naming where it looked", function()
    local rc, out = sh_rc(("%s check-provider %s/my_rerank.lua %s/none"):format(d.bin, dir, dir))
    assert.are.equal(2, rc, out)
    assert.truthy(out:find("no build.json or parse.json in " .. dir .. "/none", 1, true), out)
  end)
end)

describe("typed fusion parameters", function()
  local dir
  setup(function()
    dir = d.tmpname("_fusion")
    d.sh("mkdir -p " .. dir)
    -- the README's operator method (params = { boost = { type = "number", ... } }), and a typo of it
    local good = assert(d.readfile(root .. "/tests/fixtures/fusion/my_fusion.lua"))
    d.writefile(dir .. "/good.lua", good)
    d.writefile(dir .. "/bad.lua", (good:gsub('type = "number"', 'type = "numbr"')))
    local head = "server: { auth: none }\nmodels:\n  - { name: bm25, provider: bm25 }\n"
    d.writefile(dir .. "/bad.yaml", head .. "fusion: [./bad.lua]\n")
    d.writefile(dir .. "/good.yaml", head .. "fusion: [./good.lua]\n")
  end)
  teardown(function() d.sh("rm -rf " .. dir) end)

  it("rerankd -t rejects an unknown type with the parameter's place", function()
    local rc, out = sh_rc(("%s -t -c %s/bad.yaml"):format(d.bin, dir))
    assert.are.equal(1, rc, out)
    assert.truthy(out:find(dir .. "/bad.yaml:4:10: fusion[0]: fusion file " .. dir .. "/bad.lua: "
      .. 'params.boost.type: unknown type "numbr" (did you mean "number"?)', 1, true), out)
  end)

  it("answers a wrong-typed value in a request with a 422 naming it, never a Lua error", function()
    local cfg = assert(d.readfile(dir .. "/good.yaml")):gsub("%./good%.lua", dir .. "/good.lua")
    local srv = assert(d.start(cfg))
    local status, raw, _, j = d.request(srv, "/v1/fuse", { body = { method = "best_rank", params = { boost = "x" },
      lists = { { "a", "b" } } } })
    local ok_status = d.request(srv, "/v1/fuse",
      { body = { method = "best_rank", params = { boost = 2 }, lists = { { "a", "b" } } } })
    d.stop(srv)
    assert.are.equal(422, status, raw)
    assert.are.equal("params.boost", j.error.param)
    assert.are.equal("params.boost must be a number", j.error.message)
    assert.are.equal(200, ok_status)
  end)
end)

describe("set-up that adapts", function()
  it("make run takes PORT and CONFIG", function()
    local rc, out = sh_rc(("cd %s && make -n run PORT=18999 CONFIG=examples/hybrid/config.yaml"):format(root))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("./rerankd -c examples/hybrid/config.yaml -p 18999", 1, true), out)
    rc, out = sh_rc(("cd %s && make -n run"):format(root))
    assert.are.equal(0, rc, out)
    assert.truthy(out:find("./rerankd -c config.yaml\n", 1, true), out)
  end)

  it("make install PREFIX=... prints the LUA_PATH/LUA_CPATH and nginx lines that work there", function()
    local prefix = d.tmpname("_prefix")
    local rc, out = sh_rc(("cd %s && make install PREFIX=%s"):format(root, prefix))
    assert.are.equal(0, rc, out)
    local exports = {}
    for line in out:gmatch("[^\n]+") do
      if line:match("^  export LUA_C?PATH=") then exports[#exports + 1] = line end
    end
    assert.are.equal(2, #exports, out)
    local lpath = ('lua_package_path "%s/share/lua/5.1/?.lua;%s/share/lua/5.1/?/init.lua;;";'):format(prefix, prefix)
    assert.truthy(out:find(lpath, 1, true), out)
    assert.truthy(out:find(('lua_package_cpath "%s/lib/lua/5.1/?.so;;";'):format(prefix), 1, true), out)
    local script = d.writefile(d.tmpname(".lua"), [[
local rerank = require "rerank"
local r = assert(rerank.new{ models = { { name = "bm25", provider = "bm25" } } })
local res = assert(r:rerank{ query = "cat", documents = { "dog", "cat" } })
print(package.searchpath("rerank", package.path), package.searchpath("rerank.core", package.cpath), res.results[1].index)
]])
    local run
    rc, run = sh_rc(("cd / && env -u LUA_PATH -u LUA_CPATH sh -c '%s; luajit %s'"):format(
      table.concat(exports, "; "):gsub("'", "'\\''"), script))
    d.sh("rm -rf " .. prefix)
    assert.are.equal(0, rc, run)
    local want = prefix .. "/share/lua/5.1/rerank/init.lua\t" .. prefix .. "/lib/lua/5.1/rerank/core.so\t1"
    assert.truthy(run:find(want, 1, true), run)
  end)

  it("the nginx example sets its port in one place and uses a local resolver", function()
    local conf = assert(d.readfile(root .. "/examples/nginx/nginx.conf"))
    local listens = 0
    for _ in conf:gmatch("\n%s*listen ") do listens = listens + 1 end
    assert.are.equal(1, listens)
    local resolver = conf:match("\n%s*resolver ([^;]+);")
    assert.truthy(resolver)
    for addr in resolver:gmatch("(%d+%.%d+%.%d+%.%d+)") do assert.truthy(addr:match("^127%."), resolver) end
  end)
end)

describe("examples/hybrid: hybrid search in 5 minutes", function()
  local function run(args, env)
    -- RERANKD_HOME: under make sanitize the binary lives in build/asan, away from lua/
    local rc, out = sh_rc(("cd %s && %s RERANKD_HOME=%s RERANKD=%s sh examples/hybrid/run.sh %s"):format(
      root, env or "", root, bin_path(), args or ""))
    assert.are.equal(0, rc, out)
    local ok, j = pcall(cjson.decode, out)
    assert(ok, out)
    return j
  end

  it("is referenced from the top of the README", function()
    local top = readme():sub(1, 2500)
    assert.truthy(top:find("examples/hybrid", 1, true))
  end)

  it("fuses a vector list and a keyword list, then reranks with BM25", function()
    local j = run()
    assert.are.equal("hybrid", j.model)
    assert.are.equal(5, #j.results)
    local known = { ["doc-1"] = true, ["doc-2"] = true, ["doc-4"] = true, ["doc-5"] = true, ["doc-7"] = true,
                    ["doc-9"] = true }
    local fused_order = true
    for i, r in ipairs(j.results) do
      assert.truthy(known[r.id], r.id)
      assert.are.equal("number", type(r._fused_score))
      assert.are.equal(r.relevance_score, r._relevance_score) -- BM25 had the last word
      if i > 1 then
        assert.is_true(r.relevance_score <= j.results[i - 1].relevance_score)
        if r._fused_score > j.results[i - 1]._fused_score then fused_order = false end
      end
    end
    assert.is_false(fused_order) -- the reranker reordered the fused candidates
    assert.is_nil(j.degraded)
  end)

  it("reranks with an LLM on an OpenAI-compatible server", function()
    local mock = d.start_mock("mock_openai.py", "--key sk-local")
    local ok, j = pcall(run, "hybrid-llm", ("LLM_BASE_URL=%s LLM_API_KEY=sk-local"):format(mock.url))
    local reqs = d.mock_requests(mock)
    d.stop_mock(mock) -- also when the run failed
    assert(ok, j)
    assert.are.equal("hybrid-llm", j.model)
    assert.is_nil(j.degraded)
    assert.are.equal(5, #j.results)
    assert.is_true(j.usage.completion_tokens > 0)
    assert.are.equal(6, #reqs) -- pointwise: one call per candidate (6 distinct documents)
    assert.are.equal("qwen2.5-1.5b-instruct", reqs[1].json.model)
  end)
end)
