-- Path probing (rerank.engine.probe) for providers that declare probe_paths (cohere_compatible):
-- the order tried, the remembered winner per model and base URL, forgetting it, and errors,
-- over a scripted transport.
local probe = require "rerank.engine.probe"
local CP = require "rerank.config.check_provider"
local make_model, req_of, pairs_of = CP.make_model, CP.req_of, CP.pairs_of

local ROOT = os.getenv("PWD") or "."
local FIX = ROOT .. "/tests/fixtures/providers/"
local function read(path) return (assert(CP.read(path), "missing fixture " .. path)) end
local function load_provider(name) return assert(loadfile(ROOT .. "/providers/" .. name .. ".lua"))() end

describe("probe (cohere_compatible path discovery)", function()
  local P = load_provider("cohere_compatible")
  local good = read(FIX .. "cohere_compatible/good.json")

  local function transport(answers)
    local t = { calls = {} }
    function t.request(opts)
      local path = opts.url:match("^https?://[^/]+(.*)$")
      t.calls[#t.calls + 1] = path
      local a = answers[path] or 404
      if a == "down" then return nil, "connect: refused" end
      return { status = a, headers = {}, body = a == 200 and good or '{"detail":"Not Found"}' }
    end
    return t
  end

  local function run(t, model)
    local req = req_of(3)
    local spec = P.build(model, req)
    return probe.call(t, model, P, req, spec)
  end

  before_each(function() probe.winners = {} end)

  it("applies only without an explicit path", function()
    assert.is_true(probe.applies({ base_url = "http://x" }, P))
    assert.is_false(probe.applies({ base_url = "http://x", path = "/v1/rerank" }, P))
    assert.is_false(probe.applies({}, load_provider("cohere")))
  end)

  it("tries /v1/rerank, /rerank, /v2/rerank on 404/405 and remembers the winner", function()
    local model = make_model({ name = "cc", provider = "cohere_compatible", base_url = "http://h:1/", api_key = "k" })
    local t = transport({ ["/rerank"] = 405, ["/v2/rerank"] = 200 })
    local out = assert(run(t, model))
    assert.are.same({ "/v1/rerank", "/rerank", "/v2/rerank" }, t.calls)
    assert.are.same({ { 0, 0.1 }, { 1, 0.9 }, { 2, 0.5 } }, pairs_of(out))
    t.calls = {}
    assert(run(t, model))
    assert.are.same({ "/v2/rerank" }, t.calls)
    local spec = probe.resolve(model, P, P.build(model, req_of(1)))
    assert.are.equal("http://h:1/v2/rerank", spec.url)
  end)

  it("forgets a winner that starts answering 404", function()
    local model = make_model({ name = "cc2", provider = "cohere_compatible", base_url = "http://h:1", api_key = "k" })
    local answers = { ["/rerank"] = 200 }
    local t = transport(answers)
    assert(run(t, model))
    answers["/rerank"], answers["/v1/rerank"] = 404, 200
    t.calls = {}
    assert(run(t, model))
    assert.are.same({ "/rerank", "/v1/rerank" }, t.calls)
  end)

  it("stops on errors other than 404/405 and maps them", function()
    local model = make_model({ name = "cc3", provider = "cohere_compatible", base_url = "http://h:1", api_key = "k" })
    local t = transport({ ["/v1/rerank"] = 401 })
    local out, err = run(t, model)
    assert.is_nil(out)
    assert.are.equal(502, err.status)
    assert.are.equal(401, err.upstream_status)
    assert.are.same({ "/v1/rerank" }, t.calls)
    t = transport({ ["/v1/rerank"] = "down" })
    out, err = run(t, model)
    assert.is_nil(out)
    assert.truthy(err.message:find("unreachable", 1, true), err.message)
  end)

  it("reports the last 404 when no path answers", function()
    local model = make_model({ name = "cc4", provider = "cohere_compatible", base_url = "http://h:1", api_key = "k" })
    local t = transport({})
    local out, err = run(t, model)
    assert.is_nil(out)
    assert.are.equal(404, err.upstream_status)
    assert.are.equal(3, #t.calls)
  end)

  it("remembers winners per model and per base URL; resolve leaves others alone", function()
    local a = make_model({ name = "cc5", provider = "cohere_compatible", base_url = "http://h:1", api_key = "k" })
    local b = make_model({ name = "cc5", provider = "cohere_compatible", base_url = "http://h:2", api_key = "k" })
    local t = transport({ ["/rerank"] = 200 })
    assert(run(t, a))
    assert.are.equal("http://h:1/rerank", probe.resolve(a, P, { url = "unchanged" }).url)
    assert.are.equal("unchanged", probe.resolve(b, P, { url = "unchanged" }).url)
    t.calls = {}
    assert(run(t, b))
    assert.are.same({ "/v1/rerank", "/rerank" }, t.calls)
  end)
end)
