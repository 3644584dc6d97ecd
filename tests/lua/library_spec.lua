-- rerank as a library in plain LuaJIT: the BUILT rerank/core.so (found through LUA_CPATH, as
-- README "Use as a library" sets it), bm25, fusion, a mock upstream through the blocking
-- libcurl transport, and the `make install` layout with only the standard LuaJIT paths.
local root = os.getenv("PWD")
local tmp = root .. "/tests/tmp"

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function alive(pid) return sh("kill -0 " .. pid .. " 2>/dev/null && echo alive") ~= "" end

local function start_mock()
  local log = ("%s/library_mock_%d.log"):format(tmp, math.random(1e9))
  local pid = tonumber(sh(("python3 %s/tests/mock/mock_upstream.py --port 0 >%s 2>&1 & echo $!"):format(root, log))
    :match("%d+"))
  for _ = 1, 200 do
    local port = (readfile(log) or ""):match("listening on [%d.]+:(%d+)")
    if port then return { pid = pid, port = tonumber(port), url = "http://127.0.0.1:" .. port, log = log } end
    if not alive(pid) then break end
    os.execute("sleep 0.05")
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  return nil, "mock upstream did not start: " .. (readfile(log) or "")
end

local DOCS = {
  "Deploy a model behind an API endpoint.",
  "The cat sat on the mat.",
  "Models are deployed with one command and served over HTTP.",
  "Billing and usage reports.",
}

describe("require 'rerank' in plain LuaJIT", function()
  local rerank, core

  setup(function()
    os.execute("mkdir -p " .. tmp)
    rerank = require "rerank"
    core = require "rerank.core"
  end)

  it("loads the built C module rerank/core.so, not the daemon's preload", function()
    local so = package.searchpath("rerank.core", package.cpath)
    assert.truthy(so, "rerank.core not on LUA_CPATH: " .. package.cpath)
    assert.truthy(so:find("rerank/core%.so$"), so)
    assert.is_nil(package.preload["rerank.core"])
    assert.is_false(core.daemon)
    assert.is_function(core.http_request)
    assert.is_function(core.http_request_all)
    assert.is_string(rerank._VERSION)
    -- and the libcurl transport is the one picked outside the daemon and nginx
    assert.are.equal("curl", rerank.default_transport().name)
  end)

  it("reranks with bm25 from a config table: sorted, 0-based, top_n", function()
    local r = assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } } }))
    local res = assert(r:rerank({ model = "bm25", query = "deploy model", documents = DOCS, top_n = 2 }))
    assert.are.equal("bm25", res.model)
    assert.are.equal(2, #res.results)
    local first = res.results[1]
    assert.is_true(first.index == 0 or first.index == 2)
    assert.is_true(first.relevance_score >= res.results[2].relevance_score)
    assert.is_true(res.usage.prompt_tokens > 0)
    -- the default model when none is named
    local res2 = assert(r:rerank({ query = "cat", documents = { "a dog", "a cat", "cat cat cat" } }))
    assert.are.same({ 2, 1, 0 }, { res2.results[1].index, res2.results[2].index, res2.results[3].index })
  end)

  it("loads a YAML config file and lists its models", function()
    local path = writefile(("%s/library_%d.yaml"):format(tmp, math.random(1e9)), [[
default_model: fast
models:
  - name: fast
    provider: bm25
]])
    local r = assert(rerank.new(path))
    os.remove(path)
    local models = r:models()
    assert.are.equal(1, #models)
    assert.are.equal("fast", models[1].id)
    assert.are.equal("bm25", models[1].provider)
    local res = assert(r:rerank({ query = "cat", documents = { "dog", "cat" } }))
    assert.are.equal(1, res.results[1].index)
  end)

  it("returns nil, err for expected failures and raises on misuse", function()
    local r, err = rerank.new("/nonexistent/rerank.yaml")
    assert.is_nil(r)
    assert.truthy(err)
    r, err = rerank.new({ models = { { name = "x", provider = "cohre" } } })
    assert.is_nil(r)
    assert.truthy(tostring(type(err) == "table" and err.message or err):find("cohere", 1, true))
    assert.has_error(function() rerank.new(42) end)
    assert.has_error(function() rerank.new({ models = {} }, "opts") end)
    assert.has_error(function() rerank.new({ models = {} }, { transport = {} }) end)
    r = assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } } }))
    assert.has_error(function() r:rerank("not a table") end)
    local res
    res, err = r:rerank({ model = "nope", query = "x", documents = { "a" } })
    assert.is_nil(res)
    assert.are.equal(404, err.status)
    res, err = r:rerank({ query = 7, documents = { "a" } })
    assert.is_nil(res)
    assert.are.equal(400, err.status)
    assert.are.equal("query", err.param)
  end)

  it("fuses ranked lists (RRF, k = 60)", function()
    local r = assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } } }))
    if type(r.fuse) ~= "function" then
      pending("Instance:fuse is not there yet")
      return
    end
    local fused = assert(r:fuse({ { "a", "b", "c" }, { "c", "a", "d" } }, { method = "rrf", k = 60 }))
    fused = fused.results or fused
    local ids = {}
    for i, item in ipairs(fused) do ids[i] = item.id end
    assert.are.same({ "a", "c", "b", "d" }, ids)
    assert.is_true(math.abs(fused[1].score - (1 / 61 + 1 / 62)) < 1e-12)
    assert.is_true(math.abs(fused[4].score - 1 / 63) < 1e-12)
    assert.has_error(function() r:fuse("a,b") end)
    local bad, err = r:fuse({ { "a" } }, { method = "nope" })
    assert.is_nil(bad)
    assert.truthy(err.message:find("nope", 1, true))
    local top = assert(r:fuse({ { "a", "b" }, { "b" } }, { method = "rrf", top_n = 1 }))
    top = top.results or top
    assert.are.equal(1, #top)
    assert.are.equal("b", top[1].id)
  end)

  describe("with a mock upstream through libcurl", function()
    local mock, r

    setup(function()
      mock = assert(start_mock())
      r = assert(rerank.new({ models = {
        { name = "cohere", provider = "cohere", base_url = mock.url .. "/cohere", api_key = "test-key" },
        { name = "split", provider = "cohere", base_url = mock.url .. "/fault/slow:300/cohere", api_key = "test-key",
          max_documents = 1, concurrency = 4 },
        { name = "badkey", provider = "cohere", base_url = mock.url .. "/cohere", api_key = "wrong" },
        { name = "slow", provider = "cohere", base_url = mock.url .. "/fault/slow:3000/cohere", api_key = "test-key",
          timeout = "300ms" },
      } }))
    end)

    teardown(function()
      if mock then
        os.execute("kill " .. mock.pid .. " 2>/dev/null")
        os.remove(mock.log)
      end
    end)

    it("scores through the provider, with the upstream's scores", function()
      assert.are.equal("curl", r.transport.name)
      local res = assert(r:rerank({ model = "cohere", query = "deploy model", documents = DOCS }))
      assert.are.equal(#DOCS, #res.results)
      -- the mock scores the share of query words found: doc 0 has both, doc 2 neither word exactly
      assert.are.equal(0, res.results[1].index)
      assert.are.equal(1, res.results[1].relevance_score)
    end)

    it("runs split batches concurrently inside one rerank call", function()
      local t0 = core.now_us()
      local res = assert(r:rerank({ model = "split", query = "deploy model", documents = DOCS }))
      local elapsed = (core.now_us() - t0) / 1e6
      assert.are.equal(#DOCS, #res.results)
      assert.is_true(elapsed < 1.0, "4 batches of a 300 ms upstream took " .. elapsed .. " s")
    end)

    it("returns nil, err for upstream errors and timeouts", function()
      local res, err = r:rerank({ model = "badkey", query = "q", documents = { "a" } })
      assert.is_nil(res)
      assert.are.equal(502, err.status)
      assert.truthy(err.message:find("401", 1, true))
      assert.is_nil(err.message:find("wrong", 1, true))
      res, err = r:rerank({ model = "slow", query = "q", documents = { "a" } })
      assert.is_nil(res)
      assert.are.equal(504, err.status)
    end)
  end)

  it("works after `make install PREFIX=...` with only the standard LuaJIT paths", function()
    local prefix = ("%s/library_prefix_%d"):format(tmp, math.random(1e9))
    -- the core.so this run uses (under make sanitize: build/asan's), installed as it is (-o)
    local so = assert(package.searchpath("rerank.core", package.cpath))
    local out = sh(("make -s -C %s -o %s install-lib MODULE=%s PREFIX=%s 2>&1; echo rc=$?"):format(root, so, so, prefix))
    assert.truthy(out:find("rc=0", 1, true), out)
    local script = writefile(prefix .. "/use.lua", [[
local rerank = require "rerank"
local r = assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } } }))
local res = assert(r:rerank({ query = "cat", documents = { "dog", "cat" }, top_n = 1 }))
io.write(package.searchpath("rerank.core", package.cpath), " ", package.searchpath("rerank", package.path), " ",
  res.results[1].index, " ", r.cfg.paths.providers[1])
]])
    -- from another directory, with the LuaJIT paths a PREFIX=/usr/local install would use
    local lp = ("%s/share/lua/5.1/?.lua;%s/share/lua/5.1/?/init.lua"):format(prefix, prefix)
    local lc = ("%s/lib/lua/5.1/?.so"):format(prefix)
    out = sh(("cd /tmp && env -u RERANKD_HOME LUA_PATH='%s;;' LUA_CPATH='%s;;' luajit %s 2>&1"):format(lp, lc, script))
    os.execute("rm -rf " .. prefix)
    assert.are.equal(("%s/lib/lua/5.1/rerank/core.so %s/share/lua/5.1/rerank/init.lua 1 %s/share/rerankd/providers")
      :format(prefix, prefix, prefix), out)
  end)
end)

-- The library keeps the daemon's promises: return_documents, and a daemon installed under a PREFIX.
describe("library: return_documents and make install PREFIX", function()
  local rerank

  setup(function()
    os.execute("mkdir -p " .. tmp)
    rerank = require "rerank"
  end)

  -- README: a library call and a daemon call on the same request give the same answer;
  -- the daemon echoes each document (as the client sent it) with return_documents = true.
  it("return_documents = true puts each document in the results, as the daemon does", function()
    local r = assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } } }))
    local docs = { "Deploy a model behind an API.", "Billing and usage.", { id = "x", text = "deploy model now" } }
    local res = assert(r:rerank({ model = "bm25", query = "deploy model", documents = docs, return_documents = true }))
    assert.are.equal(3, #res.results)
    for _, item in ipairs(res.results) do
      assert.are.same(docs[item.index + 1], item.document)
    end
    -- and not without it (the wire default is false)
    res = assert(r:rerank({ model = "bm25", query = "deploy model", documents = docs, top_n = 1 }))
    assert.is_nil(res.results[1].document)
  end)

  it("return_documents also applies to a pipeline called from the library", function()
    local r = assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } },
      pipelines = { { name = "p", stages = { { rerank = { model = "bm25" } } } } } }))
    local docs = { "a", "b", "a b" }
    local res = assert(r:rerank({ model = "p", query = "a b", documents = docs, return_documents = true }))
    assert.are.equal(3, #res.results)
    for _, item in ipairs(res.results) do
      assert.are.same(docs[item.index + 1], item.document)
    end
  end)

  -- `make install PREFIX=/some/dir` after a plain `make`: the installed daemon must find its
  -- Lua modules and providers under that prefix, not under the build's default /usr/local.
  it("make install PREFIX=DIR gives a daemon that runs from DIR", function()
    local prefix = ("%s/accept_prefix_%d"):format(tmp, math.random(1e9))
    local out = sh(("cd %s && make -s install PREFIX=%s 2>&1; echo rc=$?"):format(root, prefix))
    assert.truthy(out:find("rc=0", 1, true), out)
    local cfg = prefix .. "/test.yaml"
    local f = assert(io.open(cfg, "wb"))
    f:write("server: { auth: none }\nmodels:\n  - { name: bm25, provider: bm25 }\n")
    f:close()
    out = sh(("cd / && env -u RERANKD_HOME -u LUA_PATH -u LUA_CPATH %s/bin/rerankd -t -c %s 2>&1; echo rc=$?")
      :format(prefix, cfg))
    os.execute("rm -rf " .. prefix)
    assert.truthy(out:find("is ok", 1, true), out)
    assert.truthy(out:find("rc=0", 1, true), out)
  end)
end)
