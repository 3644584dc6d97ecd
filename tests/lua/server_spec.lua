-- lua/rerank/daemon/server.lua in process (the daemon's routes are tested over HTTP in
-- tests/e2e): what init does to the worker's Lua state.
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

  it("refuses a pause out of range with the file position", function()
    local cfg, err = init_with(", gc_pause: 99")
    assert.is_nil(cfg)
    assert.truthy(err:find("c.yaml:1:", 1, true) and err:find("server.gc_pause", 1, true), err)
  end)
end)
