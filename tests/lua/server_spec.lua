-- lua/rerank/daemon/server.lua in process (the daemon's routes are tested over HTTP in
-- tests/e2e): what init does to the worker's Lua state, and the idle hook core/server.c calls.
local server = require "rerank.daemon.server"
local files = require "support.files"

local dir = (os.getenv("PWD") or ".") .. "/tests/tmp/server_spec"

describe("daemon server.init", function()
  local function init_with(extra)
    local path = dir .. "/c.yaml"
    files.write(path, "server: { auth: none" .. (extra or "") .. " }\nmodels:\n  - { name: bm25, provider: bm25 }\n")
    return server.init(path)
  end

  it("sets the collector's pause from server.gc_pause (150 when unset)", function()
    local before = collectgarbage("setpause", 200)
    assert(init_with(", gc_pause: 120"))
    assert.are.equal(120, collectgarbage("setpause", 200))
    assert(init_with())
    assert.are.equal(150, collectgarbage("setpause", before))
  end)

  it("idle(): collects after requests left garbage, by server.gc_idle_step KB; 0 turns it off", function()
    local before = collectgarbage("setpause", 200)
    local function garbage() -- what a request leaves behind: about 4 MB
      local t = {}
      for i = 1, 4000 do t[i] = string.rep(string.char(65 + i % 26), 1000) .. i end
      return #t
    end
    assert(init_with(", gc_pause: 1000, gc_idle_step: 0"))
    collectgarbage("collect")
    garbage()
    local kb = collectgarbage("count")
    server.idle()
    assert.is_true(collectgarbage("count") > kb - 1024, "gc_idle_step 0: idle() does not collect")
    assert(init_with(", gc_pause: 1000, gc_idle_step: 65536"))
    collectgarbage("collect")
    garbage()
    kb = collectgarbage("count")
    local calls = 1
    while server.idle() do calls = calls + 1 end -- as core/server.c calls it: again while it says so
    assert.is_true(collectgarbage("count") < kb - 2048, "idle() collected the garbage")
    assert.is_true(calls > 1, "the work comes in slices: " .. calls .. " call(s)")
    collectgarbage("setpause", before)
  end)

  it("refuses an idle step out of range with the file position", function()
    local cfg, err = init_with(", gc_idle_step: -1")
    assert.is_nil(cfg)
    assert.truthy(err:find("c.yaml:1:", 1, true) and err:find("server.gc_idle_step", 1, true), err)
  end)

  it("refuses a pause out of range with the file position", function()
    local cfg, err = init_with(", gc_pause: 99")
    assert.is_nil(cfg)
    assert.truthy(err:find("c.yaml:1:", 1, true) and err:find("server.gc_pause", 1, true), err)
  end)
end)
