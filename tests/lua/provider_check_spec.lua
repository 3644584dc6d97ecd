-- A provider's check(model) (what its build needs beyond keys: vertex_ai's project,
-- watsonx's project or space) runs when the configuration loads, so `rerankd -t` names the
-- model entry, and when a direct model ("vertex_ai/...") is first used (400 naming it).
local rerank = require "rerank"

local function with_env(env, fn)
  local real = os.getenv
  os.getenv = function(k) return env[k] end -- luacheck: ignore 122
  local ok, a, b = pcall(fn)
  os.getenv = real -- luacheck: ignore 122
  if not ok then error(a, 0) end
  return a, b
end

local function load(models, extra)
  local cfg = { models = models }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return rerank.new(cfg, { transport = { request = function() end, request_all = function() end } })
end

describe("provider checks at configuration time", function()
  it("vertex_ai needs a project: option or GOOGLE_CLOUD_PROJECT", function()
    local r, err = with_env({}, function() return load({ { name = "bm25", provider = "bm25" },
                                                          { name = "v", provider = "vertex_ai", api_key = "t" } }) end)
    assert.is_nil(r)
    local msg = tostring(err.message or err)
    assert.truthy(msg:find("models[1]: vertex_ai needs a project", 1, true), msg)
    assert.truthy(with_env({}, function() return load({ { name = "v", provider = "vertex_ai", project = "p" } }) end))
    assert.truthy(with_env({ GOOGLE_CLOUD_PROJECT = "p" }, function()
      return load({ { name = "v", provider = "vertex_ai" } })
    end))
  end)

  it("watsonx needs project_id or space_id: options or WATSONX_PROJECT_ID / WATSONX_SPACE_ID", function()
    local r, err = with_env({}, function() return load({ { name = "w", provider = "watsonx", api_key = "k" } }) end)
    assert.is_nil(r)
    assert.truthy(tostring(err.message or err):find("models[0]: watsonx needs project_id or space_id", 1, true),
      tostring(err.message or err))
    assert.truthy(with_env({}, function() return load({ { name = "w", provider = "watsonx", space_id = "s" } }) end))
    assert.truthy(with_env({ WATSONX_PROJECT_ID = "p" }, function() return load({ { name = "w", provider = "watsonx" } }) end))
  end)

  it("a direct model without what its provider needs is a 400 naming it", function()
    local res, err = with_env({ GOOGLE_OAUTH_ACCESS_TOKEN = "t" }, function()
      local r = assert(load({ { name = "bm25", provider = "bm25" } }, { direct_models = true }))
      return r:rerank({ model = "vertex_ai/semantic-ranker-default@latest", query = "q", documents = { "a" } })
    end)
    assert.is_nil(res)
    assert.are.equal(400, err.status)
    assert.truthy(err.message:find('model "vertex_ai/semantic-ranker-default@latest": vertex_ai needs a project', 1, true),
      err.message)
  end)
end)
