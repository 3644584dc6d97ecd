-- lua/rerank/engine/token.lua: bearer tokens from an exchange (watsonx IAM), cached until 80% of
-- their lifetime, forgotten on a 401; with a transport double and a fake clock.
local token = require "rerank.engine.token"
local upstream = require "rerank.engine.upstream"

local ROOT = os.getenv("PWD") or "."
local P = assert(loadfile(ROOT .. "/providers/watsonx.lua"))()

local function model(extra)
  local m = { name = "wx", provider = "watsonx", api_key = "ibm-key", base_url = "http://wx", timeout = 5,
              options = { project_id = "p", iam_url = "http://iam/identity/token" } }
  for k, v in pairs(extra or {}) do m.options[k] = v end
  return m
end

local req = { query = "q", documents = { { index = 0, text = "a" }, { index = 1, text = "b" } } }

-- answers IAM with tokens tok-1, tok-2, ... (expires_in 100) and the rerank call with `status`
local function transport(status)
  local t = { iam = 0, calls = {} }
  function t.request(o)
    if o.url:find("/identity/token", 1, true) then
      t.iam = t.iam + 1
      t.iam_body = o.body
      return { status = 200, headers = {}, body = ('{"access_token":"tok-%d","expires_in":100}'):format(t.iam) }
    end
    t.calls[#t.calls + 1] = o.headers.Authorization
    if status ~= 200 then return { status = status, headers = {}, body = '{"errors":[{"message":"expired"}]}' } end
    return { status = 200, headers = {}, body = '{"results":[{"index":1,"score":2.5},{"index":0,"score":-1}]}' }
  end
  return t
end

describe("token exchanges (rerank.engine.token)", function()
  local clock, real_now
  before_each(function()
    for k in pairs(token.cache) do token.cache[k] = nil end
    clock, real_now = 1000, token.now
    token.now = function() return clock end
  end)
  after_each(function() token.now = real_now end)

  it("exchanges the key once and reuses the token until 80% of its lifetime", function()
    local t, m = transport(200), model()
    assert(upstream.call(t, m, P, req))
    assert(upstream.call(t, m, P, req))
    assert.are.equal(1, t.iam)
    assert.are.equal("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=ibm-key", t.iam_body)
    clock = clock + 79
    assert(upstream.call(t, m, P, req))
    assert.are.equal(1, t.iam)
    clock = clock + 2 -- 81 s of 100
    local out = assert(upstream.call(t, m, P, req))
    assert.are.equal(2, t.iam)
    assert.are.same({ "Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2" }, t.calls)
    assert.are.equal(1, out.results[1].index)
  end)

  it("forgets the token after a 401 from the API", function()
    local t, m = transport(401), model()
    local out, err = upstream.call(t, m, P, req)
    assert.is_nil(out)
    assert.are.equal(401, err.upstream_status)
    assert.falsy(err.message:find("tok-1", 1, true), err.message)
    upstream.call(t, m, P, req)
    assert.are.equal(2, t.iam)
  end)

  it("sends the key itself, from the model or the environment, when iam is false", function()
    local t = transport(200)
    assert(upstream.call(t, model({ iam = false }), P, req))
    assert.are.equal(0, t.iam)
    assert.are.same({ "Bearer ibm-key" }, t.calls)
    local m = model({ iam = false })
    m.api_key = nil
    local real = os.getenv
    os.getenv = function(k) if k == "WATSONX_APIKEY" then return "env-key" end return nil end -- luacheck: ignore 122
    local ok, out = pcall(upstream.call, t, m, P, req)
    os.getenv = real -- luacheck: ignore 122
    assert.is_true(ok, tostring(out))
    assert.truthy(out and out.results, "no results")
    assert.are.equal("Bearer env-key", t.calls[2])
  end)

  it("maps a refused key to a 502 upstream_auth_error without the key", function()
    local t = { request = function()
      return { status = 400, headers = {}, body = '{"errorCode":"BXNIM0415E","errorMessage":"API key ibm-key not found"}' }
    end }
    local out, err = upstream.call(t, model(), P, req)
    assert.is_nil(out)
    assert.are.equal(502, err.status)
    assert.are.equal("upstream_auth_error", err.type)
    assert.truthy(err.message:find("token endpoint returned HTTP 400", 1, true), err.message)
    assert.falsy(err.message:find("ibm-key", 1, true), err.message)
  end)
end)
