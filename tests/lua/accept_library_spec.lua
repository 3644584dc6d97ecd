-- Acceptance checks of the library (issue 8) that an independent checker found failing.
local root = os.getenv("PWD")
local tmp = root .. "/tests/tmp"

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

describe("library acceptance", function()
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
