-- Providers against their documented wire formats. The cases are data
-- (tests/fixtures/providers/<name>/): build.json (model entry + request -> exact method, URL,
-- headers, body, SigV4 fields), parse.json (fixture file -> results/scores/usage, or the
-- error the runtime must report) and the response fixtures it names (good.json, variants,
-- malformed.txt, bad_request.json, unauthorized.json).
local cjson = require "cjson"
local json = require "rerank.json"
local U = require "rerank.provider_util"
local upstream = require "rerank.engine.upstream"

local ROOT = os.getenv("PWD") or "."
local FIX = ROOT .. "/tests/fixtures/providers/"
local PROVIDERS = { "cohere", "jina", "voyage", "together", "mixedbread", "pinecone", "nvidia_nim", "deepinfra",
                    "fireworks", "azure_ai", "tei", "infinity", "vllm", "llamacpp", "bedrock", "cohere_compatible",
                    "sglang", "zeroentropy", "contextual", "dashscope", "nvidia_nim_vl", "vertex_ai", "watsonx",
                    "examples/providers/my_rerank" }
local OPTION_TYPES = { string = true, number = true, integer = true, boolean = true, table = true, duration = true, size = true }

-- the fixture helpers `rerankd check-provider` uses (lua/rerank/config/check_provider.lua)
local CP = require "rerank.config.check_provider"
local denull, plain, with_env = CP.denull, CP.plain, CP.with_env
local make_model, make_req, req_of, pairs_of, fake_transport = CP.make_model, CP.make_req, CP.req_of, CP.pairs_of,
  CP.fake_transport
local function read(path) return (assert(CP.read(path), "missing fixture " .. path)) end
local function fixture_json(name, file) return cjson.decode(read(FIX .. name .. "/" .. file)) end

-- "cohere" -> providers/cohere.lua; a name with a "/" is a path from the repository root
local function load_provider(name)
  local file = name:find("/", 1, true) and name or ("providers/" .. name)
  return assert(loadfile(ROOT .. "/" .. file .. ".lua"))()
end

for _, file in ipairs(PROVIDERS) do
  local name = file:match("[^/]+$")
  describe("provider " .. name, function()
    local P = load_provider(file)

    it("follows the provider contract", function()
      assert.are.equal(name, P.name)
      assert.are.equal("function", type(P.build))
      assert.are.equal("function", type(P.parse))
      assert.are.equal("table", type(P.defaults))
      assert.are.equal("string", type(P.env_key))
      for k, decl in pairs(P.options or {}) do
        local ty = type(decl) == "table" and decl.type or decl
        assert.is_true(OPTION_TYPES[ty] == true, ("option %s has type %s"):format(k, tostring(ty)))
      end
      if P.limits then assert.are.equal("number", type(P.limits.max_documents)) end
      for _, f in ipairs({ "build.json", "parse.json", "good.json", "malformed.txt", "bad_request.json", "unauthorized.json" }) do
        assert.truthy(io.open(FIX .. name .. "/" .. f), "fixture " .. name .. "/" .. f)
      end
    end)

    for _, case in ipairs(fixture_json(name, "build.json")) do
      it("builds: " .. case.name, function()
        local model, req = make_model(case.model, P), make_req(case.request, case.rank_fields)
        local spec = with_env(case.env or {}, function() return P.build(model, req) end)
        local e = case.expect
        assert.are.equal(e.method, spec.method or "POST")
        assert.are.equal(e.url, spec.url)
        assert.are.same(e.headers, plain(spec.headers) or {})
        assert.are.same(e.body, plain(spec.body))
        assert.are.equal(denull(e.aws_sigv4), spec.aws_sigv4)
        assert.are.equal(denull(e.userpwd), spec.userpwd)
        -- what the runtime sends: JSON text that decodes back to the expected body
        local opts = upstream.prepare(model, spec)
        assert.are.same(e.body, cjson.decode(opts.body))
        assert.are.equal("application/json", opts.headers["Content-Type"])
      end)
    end

    it("passes rerankd check-provider's cases (the same fixtures)", function()
      local lines = {}
      local path = file:find("/", 1, true) and file or ("providers/" .. file)
      local rc = CP.main({ ROOT .. "/" .. path .. ".lua", FIX .. name }, function(l) lines[#lines + 1] = l end)
      assert.are.equal(0, rc, table.concat(lines, "\n"))
      assert.truthy(lines[#lines]:find("^%d+ passed, 0 failed$"), lines[#lines])
    end)

    local expectations = fixture_json(name, "parse.json")
    local files = {}
    for f in pairs(expectations) do files[#files + 1] = f end
    table.sort(files)
    for _, fixture in ipairs(files) do
      local e = expectations[fixture]
      local body = read(FIX .. name .. "/" .. fixture)
      local model = make_model({ name = "m", provider = name, api_key = "sk-secret-key", base_url = "http://127.0.0.1:9" }, P)
      if e.status >= 400 then
        it(("maps %s (HTTP %d) to a 502 naming the upstream, without the key"):format(fixture, e.status), function()
          local req = req_of(3)
          local spec = with_env({}, function() return P.build(model, req) end)
          local out, err = upstream.call_one(fake_transport(e.status, {}, body), model, P, req, spec)
          assert.is_nil(out)
          assert.are.equal(502, err.status)
          assert.are.equal(e.status, err.upstream_status)
          assert.truthy(err.message:find("HTTP " .. e.status, 1, true), err.message)
          assert.truthy(err.message:find(name, 1, true), err.message)
          assert.truthy(err.message:find(e.upstream_error, 1, true), err.message)
          assert.falsy(err.message:find("sk-secret-key", 1, true), err.message)
        end)
      else
        it("parses " .. fixture, function()
          local req = req_of(e.n)
          local out, err = P.parse(model, req, e.status, denull(e.headers) or {}, body)
          if denull(e.error) then
            assert.is_nil(out)
            assert.truthy(tostring(err):find(e.error, 1, true), tostring(err))
            return
          end
          assert.is_nil(err)
          if denull(e.scores) then
            assert.are.same(e.scores, out.scores)
          else
            assert.are.same(pairs_of(e.results), pairs_of(out))
          end
          assert.are.same(denull(e.usage), out.usage)
        end)
      end
    end
  end)
end

describe("provider_util", function()
  it("joins URLs without double slashes", function()
    assert.are.equal("http://h:1/v1/rerank", U.join("http://h:1/", "/v1/rerank"))
    assert.are.equal("http://h:1/v1/rerank", U.join("http://h:1", "v1/rerank"))
    assert.are.equal("http://h:1/p", U.join("http://h:1//", "//p"))
    assert.are.equal("http://h:1", U.join("http://h:1/", nil))
  end)

  it("expands placeholders and escapes path segments", function()
    assert.are.equal("/model/a%3A0/invoke", U.expand("/model/{model}/invoke", { model = U.escape("a:0") }))
    assert.are.equal("/x/{unknown}", U.expand("/x/{unknown}", {}))
  end)

  it("takes the API key from the model, else the environment", function()
    with_env({ K = "from-env" }, function()
      assert.are.equal("mine", U.api_key({ api_key = "mine" }, "K"))
      assert.are.equal("from-env", U.api_key({ api_key = "" }, "K"))
      assert.are.equal("from-env", U.api_key({}, "K"))
      assert.is_nil(U.api_key({}, "OTHER"))
      assert.are.same({}, U.bearer({}, "OTHER"))
    end)
  end)

  it("merges extra_body deeply; the request wins; null removes a key", function()
    local body = { a = 1, nested = { x = 1, y = 2 }, list = { 1, 2 }, drop = true }
    U.merge(body, { a = 2, nested = { y = 3 }, list = { 9 } }, { a = 3, drop = json.null, new = "n" })
    assert.are.same({ a = 3, nested = { x = 1, y = 3 }, list = { 9 }, new = "n" }, body)
  end)

  it("flattens object documents on rank_fields and keeps plain text otherwise", function()
    local req = make_req({ query = "q", documents = { "plain", { text = "t", title = "T", n = 5 } } })
    assert.are.same({ "plain", "t" }, U.texts(req))
    assert.are.same({ "plain", "t" }, U.texts(req, { "text" }))
    assert.are.same({ "plain", "title: T\ntext: t\nn: 5" }, U.texts(req, { "title", "text", "n", "missing" }))
    assert.are.same({ { text = "plain" }, { text = "t", title = "T" } }, plain(U.objects(req, { "title" })))
    assert.are.same({ "plain", "t" }, U.documents(req, nil))
  end)

  it("clamps top_n to the documents of the call", function()
    assert.are.equal(2, U.top_n(make_req({ query = "q", documents = { "a", "b" }, top_n = 10 })))
    assert.is_nil(U.top_n(make_req({ query = "q", documents = { "a" } })))
  end)

  it("rejects answers that are not rerank results", function()
    local cases = { { "", "invalid JSON" }, { "null", "unexpected JSON" }, { "42", "unexpected JSON" },
                    { '{"results": null}', "no results" }, { '{"error":{"message":"boom"}}', "boom" },
                    { "[]", "no usable results" }, { '{"data":[{"index":0}]}', "no usable results" },
                    { '{"scores":[null]}', "no usable scores" } }
    for _, c in ipairs(cases) do
      local out, err = U.parse(c[1], {}, 3)
      assert.is_nil(out, c[1])
      assert.truthy(tostring(err):find(c[2], 1, true), tostring(err))
    end
    assert.are.same({ results = {} }, U.parse("[]", {}, 0))
  end)

  it("reads usage from every documented place, ignoring nulls", function()
    assert.is_nil(U.usage({ usage = json.null, meta = { billed_units = { search_units = json.null } } }))
    assert.are.same({ prompt_tokens = 7, total_tokens = 7 }, U.usage({ inference_status = { tokens_input = 7 } }))
    assert.are.same({ prompt_tokens = 3, total_tokens = 5 }, U.usage({ usage = { prompt_tokens = 3, total_tokens = 5 } }))
    assert.are.same({ prompt_tokens = 11, total_tokens = 11 }, U.usage({}, { ["x-compute-tokens"] = "11" }))
  end)

  it("rejects a bad cohere api_version when building", function()
    local P = load_provider("cohere")
    assert.has_error(function()
      P.build({ name = "m", api_key = "k", options = { api_version = "v3" } }, req_of(1))
    end, 'cohere: api_version must be "v1" or "v2", got "3"')
  end)

  it("needs a base_url where the provider has no default", function()
    local P = load_provider("azure_ai")
    local ok, err = pcall(P.build, { name = "az", api_key = "k", options = {} }, req_of(1))
    assert.is_false(ok)
    assert.truthy(err:find("base_url is required", 1, true), err)
  end)
end)
