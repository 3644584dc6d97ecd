-- rerank.config.load: YAML/table -> normalised cfg, and every error message form.
-- Bad cases are data: tests/fixtures/config/bad/*.yaml, each headed by
--   # expect: <what follows the file name>   (prefix of the message, with :line:col:)
--   # contains: <substring>                  (optional, repeatable)
--   # env: NAME=value / # unset: NAME        (optional environment for the case)
local config = require "rerank.config.load"
local paths = require "rerank.config.paths"
local core = require "rerank.core"
local support_files = require "support.files"
local setenv, write = support_files.setenv, support_files.write

local HERE = paths.dirname(paths.abs(debug.getinfo(1, "S").source:sub(2)))
local REPO = paths.normalize(HERE .. "/../..")
local FIX = REPO .. "/tests/fixtures/config"
local TMP = REPO .. "/tests/tmp/config_load_spec"

local function read_header(file)
  local h = { contains = {}, env = {} }
  for line in io.lines(file) do
    if not line:match("^#") then break end
    local k, v = line:match("^#%s*([%w-]+):%s?(.*)$")
    if k == "expect" then h.expect = v
    elseif k == "contains" then h.contains[#h.contains + 1] = v
    elseif k == "env" then
      local name, val = v:match("^([%w_]+)=(.*)$")
      h.env[#h.env + 1] = { name, val }
    elseif k == "unset" then h.env[#h.env + 1] = { v } end
  end
  return h
end

local function yaml_files(dir)
  local out = {}
  for _, f in ipairs(assert(core.listdir(dir))) do
    if f:match("%.yaml$") then out[#out + 1] = f end
  end
  return out
end

describe("config bad fixtures", function()
  local dir = FIX .. "/bad"
  local files = yaml_files(dir)
  it("has cases", function() assert.is_true(#files >= 40) end)
  for _, f in ipairs(files) do
    it(f, function()
      local file = dir .. "/" .. f
      local h = read_header(file)
      assert.is_string(h.expect, f .. " has no '# expect:' line")
      for _, e in ipairs(h.env) do setenv(e[1], e[2]) end
      local cfg, err = config.load(file)
      for _, e in ipairs(h.env) do setenv(e[1], nil) end
      assert.is_nil(cfg)
      assert.is_string(err)
      local want = file .. h.expect
      assert.are.equal(want, err:sub(1, #want))
      for _, c in ipairs(h.contains) do
        assert.is_truthy(err:find(c, 1, true), ("%q not in %q"):format(c, err))
      end
      assert.is_nil(err:find("\n", 1, true), "one line: " .. err)
    end)
  end
end)

describe("config good fixtures", function()
  local dir = FIX .. "/good"
  local providers = FIX .. "/providers"

  it("full.yaml: every section normalised", function()
    setenv("RERANKD_TEST_KEY", "secret-key")
    setenv("RERANKD_TEST_EMPTY", nil)
    setenv("RERANKD_TEST_PORT", nil)
    local cfg, err = config.load(dir .. "/full.yaml")
    setenv("RERANKD_TEST_KEY", nil)
    assert.is_nil(err)
    assert.are.equal(dir .. "/full.yaml", cfg.file)
    assert.are.equal(dir, cfg.dir)
    local s = cfg.server
    assert.are.same({
      listen = "0.0.0.0:9090", host = "0.0.0.0", port = 9090, workers = 4,
      max_body = 512 * 1024, timeout = 1.5, keepalive = 120, drain_timeout = 0.25,
      header_timeout = 10, body_min_rate = 1024,
      max_documents = 500, api_keys = { "secret-key", "literal-key" }, log_level = "debug",
      max_fuse_lists = 1000, max_fuse_items = 100000, max_direct_models = 256, max_model_labels = 100,
      gc_pause = 150, gc_idle_step = 65536,
    }, s)
    assert.are.equal(providers, cfg.paths.providers[1])
    assert.are.equal(REPO .. "/providers", cfg.paths.providers[#cfg.paths.providers])
    assert.are.same({ dir, REPO .. "/lua/rerank/llm/templates" }, cfg.paths.templates)
    assert.are.equal("hybrid", cfg.default_model)
    assert.are.equal(4, #cfg.models)

    local bm25 = cfg.model_index.bm25
    assert.are.equal(cfg.models[1], bm25)
    assert.are.same({ k1 = 1.5, b = 0.5 }, bm25.options)
    assert.are.equal(REPO .. "/providers/bm25.lua", bm25.provider_file)
    assert.are.equal(0, bm25.retries)
    assert.are.equal(1.5, bm25.timeout) -- the server timeout by default
    assert.are.same({}, bm25.fallbacks)
    assert.are.same({}, bm25.headers)
    assert.are.same({}, bm25.price)
    assert.are.same({}, bm25.extra_body)

    local co = cfg.model_index.cohere
    assert.are.equal("cohere", co.provider)
    assert.are.equal(providers .. "/cohere.lua", co.provider_file)
    assert.are.equal("secret-key", co.api_key)
    assert.are.equal(10, co.timeout)
    assert.are.equal(2, co.retries)
    assert.are.same({ "bm25" }, co.fallbacks)
    assert.are.equal(1000, co.max_documents)
    assert.are.equal(4, co.concurrency)
    assert.are.same({ ["X-Team"] = "search", ["X-Num"] = "7" }, co.headers)
    assert.are.same({ per_search_unit = 0.002 }, co.price)
    assert.are.same({ return_documents = false }, co.extra_body)
    -- provider defaults fill what the config leaves unset
    assert.are.equal("https://api.cohere.com", co.base_url)
    assert.are.equal("/v2/rerank", co.path)
    assert.are.equal("rerank-v3.5", co.model)

    local loc = cfg.model_index["local"]
    assert.are.equal("http://127.0.0.1:8999", loc.base_url) -- ${VAR:-default}, trailing / dropped
    assert.are.equal("/rerank", loc.path)
    assert.are.equal("my-model", loc.model)
    assert.is_nil(loc.api_key) -- ${UNSET} is empty: no key
    assert.are.equal("qwen", loc.template)
    assert.are.equal("Given a query, judge relevance", loc.instruction)

    local custom = cfg.model_index.custom
    assert.are.equal("opts", custom.provider)
    assert.are.equal(providers .. "/opts.lua", custom.provider_file)
    assert.are.same({ "bm25" }, custom.fallbacks)
    assert.are.same({ mode = "fast" }, custom.options)

    assert.are.equal(1, #cfg.pipelines)
    local p = cfg.pipeline_index.hybrid
    assert.are.equal(cfg.pipelines[1], p)
    assert.are.same({
      { fuse = { method = "rrf", k = 60 } },
      { rerank = { model = "cohere", candidates = 100 } },
      { threshold = { min_score = 0.1 } },
    }, p.stages)
  end)

  it("empty.yaml: defaults", function()
    local cfg = assert(config.load(dir .. "/empty.yaml"))
    assert.are.same({
      listen = "127.0.0.1:8080", host = "127.0.0.1", port = 8080, workers = 0,
      max_body = 8388608, timeout = 30, keepalive = 75, drain_timeout = 30,
      header_timeout = 10, body_min_rate = 1024,
      max_documents = 10000, api_keys = {}, log_level = "info",
      max_fuse_lists = 1000, max_fuse_items = 100000, max_direct_models = 256, max_model_labels = 100,
      gc_pause = 150, gc_idle_step = 65536,
    }, cfg.server)
    assert.are.equal("bm25", cfg.default_model)
    assert.are.equal(1, #cfg.models)
    local m = cfg.models[1]
    assert.are.same({
      name = "bm25", provider = "bm25", provider_file = REPO .. "/providers/bm25.lua",
      headers = {}, fallbacks = {}, price = {}, extra_body = {}, options = {},
      retries = 0, timeout = 30,
    }, m)
    assert.are.same({ REPO .. "/providers" }, cfg.paths.providers)
    assert.are.same({}, cfg.pipelines)
    assert.are.same({}, cfg.pipeline_index)
  end)

  it("anchors.yaml: merge keys and aliases", function()
    local cfg = assert(config.load(dir .. "/anchors.yaml"))
    local a, b = cfg.model_index.a, cfg.model_index.b
    assert.are.equal("cohere", a.provider)
    assert.are.equal(5, a.timeout)
    assert.are.equal(1, a.retries)
    assert.are.equal(3, b.retries)
    assert.are.same({ ["X-Team"] = "search" }, b.headers)
    assert.are_not.equal(a.headers, b.headers) -- copies, not shared tables
  end)

  it("options.yaml: declared options typed and defaulted", function()
    local cfg = assert(config.load(dir .. "/options.yaml"))
    assert.are.same({
      temperature = 0.5, top_k = 3, verbose = true, extra = { a = 1 },
      budget = 0.25, window = 4096, alpha = 0, mode = "fast",
    }, cfg.model_index.o.options)
    assert.are.same({ mode = "fast" }, cfg.model_index.defaults.options)
  end)

  it("the shipped config.yaml validates", function()
    local cfg, err = config.load(REPO .. "/config.yaml")
    assert.is_nil(err)
    assert.are.equal("127.0.0.1:8080", cfg.server.listen)
    assert.are.equal(0, cfg.server.workers)
    assert.are.equal(8 * 1024 * 1024, cfg.server.max_body)
    assert.are.equal(30, cfg.server.timeout)
    assert.are.equal("bm25", cfg.default_model)
    assert.are.equal("bm25", cfg.models[1].provider)
  end)
end)

describe("config.load", function()
  it("reports a missing file", function()
    local cfg, err = config.load("/nonexistent/rerankd.yaml")
    assert.is_nil(cfg)
    assert.are.equal("/nonexistent/rerankd.yaml: No such file or directory", err)
  end)

  it("names the file as given and resolves paths against the config's directory", function()
    local d = TMP .. "/rel"
    write(d .. "/my/prov.lua", 'return { score = function() return { scores = {} } end }\n')
    write(d .. "/cfg.yaml", "models:\n  - { name: p, provider_file: my/prov.lua }\n  - { name: q, provider: prov }\n" ..
      "paths:\n  providers: [my]\n")
    local cfg = assert(config.load(d .. "/cfg.yaml"))
    assert.are.equal(d .. "/my/prov.lua", cfg.model_index.p.provider_file)
    assert.are.equal("prov", cfg.model_index.p.provider)
    assert.are.equal(d .. "/my/prov.lua", cfg.model_index.q.provider_file)
    assert.are.equal(d .. "/my", cfg.paths.providers[1])
    write(d .. "/bad.yaml", "server:\n  workers: many\n")
    local _, err = config.load(d .. "/bad.yaml")
    assert.are.equal(d .. '/bad.yaml:2:12: server.workers must be "auto" or an integer between 1 and 1024 (got "many")', err)
  end)

  it("applies command-line overrides", function()
    local cfg = assert(config.load(FIX .. "/good/full.yaml", { port = 7000, workers = 3, worker = 1 }))
    assert.are.equal(7000, cfg.server.port)
    assert.are.equal("0.0.0.0:7000", cfg.server.listen)
    assert.are.equal(3, cfg.server.workers)
    local _, err = config.load(FIX .. "/good/empty.yaml", { port = 99999 })
    assert.are.equal(FIX .. "/good/empty.yaml: -p: invalid port 99999 (0-65535)", err)
  end)

  it("accepts listen forms", function()
    local function listen(v)
      local cfg, err = config.from_table({ server = { listen = v } })
      if not cfg then return nil, err end
      return cfg.server.listen, cfg.server.host, cfg.server.port
    end
    assert.are.same({ "127.0.0.1:9000", "127.0.0.1", 9000 }, { listen("127.0.0.1:9000") })
    assert.are.same({ "0.0.0.0:9000", "0.0.0.0", 9000 }, { listen(":9000") })
    assert.are.same({ "0.0.0.0:9000", "0.0.0.0", 9000 }, { listen("*:9000") })
    assert.are.same({ "[::1]:9000", "::1", 9000 }, { listen("[::1]:9000") })
    assert.are.same({ "localhost:9000", "localhost", 9000 }, { listen("localhost:9000") })
    assert.are.same({ "127.0.0.1:9000", "127.0.0.1", 9000 }, { listen(9000) })
    local cfg = assert(config.from_table({ server = { host = "0.0.0.0", port = 1234 } }))
    assert.are.equal("0.0.0.0:1234", cfg.server.listen)
    assert.are.same({ nil, 'config: server.listen: invalid listen address "host:port:1" (use host:port, e.g. 127.0.0.1:8080)' },
      { listen("host:port:1") })
  end)

  it("interpolates environment variables", function()
    setenv("RERANKD_TEST_PORT", "9123")
    setenv("RERANKD_TEST_EMPTY", "")
    local f = write(TMP .. "/env.yaml", table.concat({
      "server:",
      '  listen: "127.0.0.1:${RERANKD_TEST_PORT}"',
      "  workers: ${RERANKD_TEST_WORKERS:-2}",
      "  api_keys:", -- in a flow list [...] a ${VAR} must be quoted: { and } are flow syntax
      "    - ${RERANKD_TEST_EMPTY}",
      '    - "$${NOT_INTERPOLATED}"',
      "    - ${RERANKD_TEST_EMPTY:-fallback}",
      '    - "${RERANKD_TEST_EMPTY}"',
      "",
    }, "\n"))
    local cfg, err = config.load(f)
    setenv("RERANKD_TEST_PORT", nil)
    setenv("RERANKD_TEST_EMPTY", nil)
    assert.is_nil(err)
    assert.are.equal(9123, cfg.server.port)
    assert.are.equal(2, cfg.server.workers)
    assert.are.same({ "${NOT_INTERPOLATED}", "fallback" }, cfg.server.api_keys)
  end)

  it("accepts durations and sizes in every form", function()
    local cases = {
      { "250ms", 0.25 }, { "10s", 10 }, { "1.5s", 1.5 }, { "2m", 120 }, { "1h", 3600 },
      { "1m30s", 90 }, { 5, 5 }, { 0.5, 0.5 }, { "10", 10 }, { "10 S", 10 },
    }
    for _, c in ipairs(cases) do
      local cfg, err = config.from_table({ server = { timeout = c[1] } })
      assert.is_nil(err)
      assert.are.equal(c[2], cfg.server.timeout)
    end
    local sizes = {
      { "100b", 100 }, { "512k", 524288 }, { "8m", 8388608 }, { "8MB", 8388608 }, { "8MiB", 8388608 },
      { "1g", 1073741824 }, { "1.5k", 1536 }, { 4096, 4096 }, { "4096", 4096 }, { "64 KB", 65536 },
    }
    for _, c in ipairs(sizes) do
      local cfg, err = config.from_table({ server = { max_body = c[1] } })
      assert.is_nil(err)
      assert.are.equal(c[2], cfg.server.max_body)
    end
    for _, bad in ipairs({ "10 parsecs", "s", "-1s", "1.2.3s", "", "10ms5" }) do
      assert.is_nil(config.duration(bad), bad)
    end
    for _, bad in ipairs({ "8 megs", "k", "-1k", 1.5, "1t" }) do
      assert.is_nil(config.size(bad), tostring(bad))
    end
  end)
end)

describe("config.from_table", function()
  it("validates a Lua table with location-free messages", function()
    local cases = {
      { { server = { port = "80x" } }, 'config: server.port must be an integer (got "80x")' },
      { { server = { gc_pause = 50 } }, "config: server.gc_pause must be an integer between 100 and 1000 (got 50)" },
      { { server = { lisen = "x" } }, 'config: server.lisen: unknown key (did you mean "listen"?)' },
      { { server = { timeout = "10 parsecs" } },
        'config: server.timeout: invalid duration "10 parsecs" (use e.g. 250ms, 10s)' },
      { { server = { max_body = "8 megs" } }, 'config: server.max_body: invalid size "8 megs" (use e.g. 512k, 8m)' },
      { { models = { { name = "x", provider = "bm52" } } },
        'config: models[0].provider: unknown provider "bm52" (did you mean "bm25"?)' },
      { { models = { { name = "a", provider = "bm25" }, { name = "a", provider = "bm25" } } },
        'config: models[1].name: duplicate model name "a" (also models[0])' },
      { { models = { { name = "a", provider = "bm25", fallbacks = { "b" } } } },
        'config: models[0].fallbacks[0]: unknown model "b" (configured: a)' },
      { { default_model = "nope" }, 'config: default_model: unknown model "nope" (configured: bm25)' },
      { { models = { { name = "a", provider = "bm25", k1 = "x" } } }, 'config: models[0].k1 must be a number (got "x")' },
      { { models = { {} } }, 'config: models[0]: missing required key "provider" (or "provider_file")' },
      { { models = { "bm25" } }, 'config: models[0] must be a mapping (a model entry) (got "bm25")' },
      { { pipelines = { { name = "p", stages = { { rerank = {} } } } } },
        'config: pipelines[0].stages[0].rerank: missing required key "model"' },
      { "not a table" },
      { { server = { bind = "0.0.0.0:1" } }, 'config: server.bind: unknown key (use listen: "host:port")' },
      { { server = { workers = 0.5 } }, 'config: server.workers must be "auto" or an integer between 1 and 1024 (got 0.5)' },
    }
    for _, c in ipairs(cases) do
      if type(c[1]) == "table" then
        local cfg, err = config.from_table(c[1])
        assert.is_nil(cfg)
        assert.are.equal(c[2], err)
      else
        assert.has_error(function() config.from_table(c[1]) end)
      end
    end
  end)

  it("treats cjson.null like an absent value", function()
    local null = core.yaml_parse("~")
    local cfg = assert(config.from_table({ server = null, models = { { name = "a", provider = "bm25", timeout = null } } }))
    assert.are.equal(30, cfg.models[1].timeout)
  end)

  it("resolves relative paths against opts.dir", function()
    local d = TMP .. "/lib"
    write(d .. "/p/mine.lua", 'return { build = function() end, parse = function() end }\n')
    local cfg = assert(config.from_table({ models = { { name = "m", provider_file = "p/mine.lua" } } }, { dir = d }))
    assert.are.equal(d .. "/p/mine.lua", cfg.model_index.m.provider_file)
    assert.is_nil(cfg.file)
    assert.are.equal(d, cfg.dir)
  end)

  it("does not modify its input", function()
    local t = { server = { timeout = "5s" }, models = { { name = "a", provider = "bm25", k1 = 2 } } }
    assert(config.from_table(t))
    assert.are.same({ server = { timeout = "5s" }, models = { { name = "a", provider = "bm25", k1 = 2 } } }, t)
  end)
end)

describe("config.did_you_mean", function()
  it("suggests by edit distance and prefix", function()
    local keys = { "listen", "workers", "max_body", "timeout", "keepalive", "max_documents" }
    assert.are.equal("listen", config.did_you_mean("lisen", keys))
    assert.are.equal("listen", config.did_you_mean("lsiten", keys))
    assert.are.equal("timeout", config.did_you_mean("timout", keys))
    assert.are.equal("workers", config.did_you_mean("Workers", keys))
    assert.are.equal("keepalive", config.did_you_mean("keep", keys))
    assert.are.equal("max_documents", config.did_you_mean("max_doc", keys))
    assert.is_nil(config.did_you_mean("zzz", keys))
    assert.is_nil(config.did_you_mean("x", { "k1" }))
    assert.are.equal("cohere", config.did_you_mean("cohre", { "bm25", "cohere", "jina" }))
  end)
end)

describe("providers/bm25.lua", function()
  it("scores with core.bm25 and counts tokens", function()
    local cfg = assert(config.from_table({ models = { { name = "bm25", provider = "bm25", k1 = 1.2 } } }))
    local p = dofile(cfg.models[1].provider_file)
    local req = {
      query = "red apple",
      documents = { { index = 0, text = "a red apple pie" }, { index = 1, text = "blue sky" },
                    { index = 2, text = "apple apple red red red" } },
    }
    local out = p.score(cfg.models[1], req)
    assert.are.equal(3, #out.scores)
    assert.is_true(out.scores[1] > out.scores[2])
    assert.is_true(out.scores[3] > out.scores[2])
    assert.are.equal(0, out.scores[2])
    assert.are.equal(2 * 3 + 4 + 2 + 5, out.usage.prompt_tokens)
    req.max_tokens_per_document = 2
    out = p.score(cfg.models[1], req)
    assert.are.equal(2 * 3 + 2 + 2 + 2, out.usage.prompt_tokens)
  end)
end)

describe("config top-level templates:", function()
  it("adds template directories searched before paths.templates and the built-ins", function()
    local dir = os.getenv("PWD") .. "/tests/fixtures/llm"
    local cfg = assert(config.from_table({ templates = { dir }, models = { { name = "b", provider = "bm25" } } }))
    assert.are.equal(dir, cfg.paths.templates[1])
    assert.truthy(cfg.paths.templates[#cfg.paths.templates]:find("lua/rerank/llm/templates$"))
    local _, err = config.from_table({ templates = { "/nonexistent-dir" } })
    assert.truthy(err:find("templates[0]", 1, true), err)
  end)
end)
