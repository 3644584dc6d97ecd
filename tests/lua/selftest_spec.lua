-- The configuration self-test (rerank.config.selftest, `rerankd -t`): each model's provider built and
-- parsed on canned data, failures named with the script's line. The daemon-level hardening
-- is in tests/e2e/hardening_spec.lua.
local selftest = require "rerank.config.selftest"
local rerank = require "rerank"
local support_files = require "support.files"

describe("configuration self-test", function()
  local dir = os.getenv("PWD") .. "/tests/tmp/selftest_spec"
  os.execute("mkdir -p " .. dir)

  local function instance(provider_src)
    local f = support_files.write(dir .. "/p.lua", provider_src)
    return assert(rerank.new({ models = { { name = "bm25", provider = "bm25" },
      { name = "mine", provider_file = f, base_url = "http://127.0.0.1:1" } } }))
  end

  it("passes the built-in providers", function()
    assert.is_true(selftest.run(assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } } }))))
  end)

  it("refuses a provider whose build() raises, naming it and the script's line", function()
    local ok, err = selftest.run(instance([[
return { name = "mine", build = function() error("no way") end, parse = function() return nil, "x" end }
]]))
    assert.is_nil(ok)
    assert.truthy(err:find('model "mine"', 1, true), err)
    assert.truthy(err:find("build() raised: ", 1, true) and err:find("p.lua:1: no way", 1, true), err)
  end)

  it("refuses a request without a URL and a parse() that raises; accepts a parse() that refuses", function()
    local ok, err = selftest.run(instance([[
return { name = "mine", build = function() return { body = {} } end, parse = function() return {} end }
]]))
    assert.is_nil(ok)
    assert.truthy(err:find("without an absolute url", 1, true), err)
    ok, err = selftest.run(instance([[
return { name = "mine", build = function(m) return { url = m.base_url, body = {} } end,
         parse = function(_, _, _, _, body) return body.nope.nope end }
]]))
    assert.is_nil(ok)
    assert.truthy(err:find("parse() raised on a canned answer", 1, true), err)
    assert.is_true(selftest.run(instance([[
return { name = "mine", build = function(m) return { url = m.base_url, body = {} } end,
         parse = function() return nil, "not my shape" end }
]])))
  end)
end)
