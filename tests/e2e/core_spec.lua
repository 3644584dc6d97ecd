-- End to end: the real rerankd binary over HTTP with curl.
local d = require "support.daemon"

-- the README's first request, with documents that share words with the query
local README_BODY = d.readfile(d.root .. "/tests/fixtures/readme_request.json")

describe("rerankd over HTTP (shipped config.yaml)", function()
  local srv
  setup(function() srv = assert(d.start(nil, { workers = 2 })) end)
  teardown(function() d.stop(srv) end)

  it("answers the README example with bm25, sorted, top_n and documents", function()
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body = README_BODY })
    assert.are.equal(200, status, raw)
    assert.are.equal("list", j.object)
    assert.are.equal("bm25", j.model)
    assert.truthy(j.id:match("^rerank%-"))
    assert.are.equal(2, #j.results)
    assert.are.equal(0, j.results[1].index)
    assert.are.equal("doc_1", j.results[1].document.id)
    assert.is_true(j.results[1].relevance_score >= j.results[2].relevance_score)
    assert.is_true(j.usage.prompt_tokens > 0)
    assert.are.equal(j.usage.prompt_tokens, j.usage.total_tokens)
    assert.truthy(h["x-request-id"])
    assert.truthy(h["x-rerankd-timing"]:match("parse=%d+;upstream=%d+;sort=%d+;serialize=%d+;total=%d+"))
    assert.truthy(raw:find('^{"id":"rerank%-[^"]+","object":"list","model":"bm25","results":%['))
  end)

  it("uses the default model when none is given and omits documents by default", function()
    local status, _, _, j = d.request(srv, "/v1/rerank", { body = {
      query = "cat", documents = { "a dog", "a cat", "cat cat cat" } } })
    assert.are.equal(200, status)
    assert.are.equal("bm25", j.model)
    assert.are.equal(3, #j.results)
    assert.are.equal(2, j.results[1].index)
    assert.are.equal(1, j.results[2].index)
    assert.is_nil(j.results[1].document)
  end)

  it("returns [] for an empty document list", function()
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = '{"query":"x","documents":[]}' })
    assert.are.equal(200, status, raw)
    assert.truthy(raw:find('"results":[]', 1, true), raw)
    assert.are.equal(0, j.usage.total_tokens)
  end)

  it("clamps top_n above the document count", function()
    local status, _, _, j = d.request(srv, "/v1/rerank", { body = { query = "a", documents = { "a", "b" }, top_n = 50 } })
    assert.are.equal(200, status)
    assert.are.equal(2, #j.results)
  end)

  it("keeps ties in input order", function()
    local _, _, _, j = d.request(srv, "/v1/rerank", { body = { query = "zzz", documents = { "a", "b", "c", "d" } } })
    for i = 1, 4 do assert.are.equal(i - 1, j.results[i].index) end
  end)

  it("handles unicode text (case folding across scripts)", function()
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = {
      query = "ÉCOLE Привет", documents = { "rien", "une école", "привет мир", "日本語" }, return_documents = true } })
    assert.are.equal(200, status, raw)
    local top = { j.results[1].index, j.results[2].index }
    table.sort(top)
    assert.are.same({ 1, 2 }, top)
    assert.are.equal(0, j.results[4].relevance_score)
    assert.truthy(raw:find("日本語", 1, true))
  end)

  it("rejects malformed JSON with a 400 JSON error", function()
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body = '{"query": "x", "documents": [' })
    assert.are.equal(400, status, raw)
    assert.are.equal("invalid_request_error", j.error.type)
    assert.truthy(j.error.message:lower():find("json"))
    assert.truthy(h["x-request-id"])
    assert.truthy(h["x-rerankd-timing"])
  end)

  it("names the offending field for wrong types", function()
    local cases = {
      { { query = 5, documents = { "a" } }, "query" },
      { { query = "q", documents = "a" }, "documents" },
      { { query = "q", documents = { "a", "b", "c", { text = 7 } } }, "documents[3].text" },
      { { query = "q", documents = { "a" }, top_n = "3" }, "top_n" },
      { { query = "q", documents = { "a" }, return_documents = "yes" }, "return_documents" },
      { { query = "q", documents = { "a" }, metadata = "x" }, "metadata" },
    }
    for _, c in ipairs(cases) do
      local status, raw, _, j = d.request(srv, "/v1/rerank", { body = c[1] })
      assert.is_true(status == 400 or status == 422, raw)
      assert.are.equal(c[2], j.error.param, raw)
    end
  end)

  it("rejects a missing query", function()
    local status, _, _, j = d.request(srv, "/v1/rerank", { body = { documents = { "a" } } })
    assert.are.equal(400, status)
    assert.are.equal("query", j.error.param)
  end)

  it("404s an unknown model and an unknown path, 405s a wrong method", function()
    local status, _, _, j = d.request(srv, "/v1/rerank", { body = { model = "nope", query = "q", documents = { "a" } } })
    assert.are.equal(404, status)
    assert.are.equal("model", j.error.param)
    status, _, _, j = d.request(srv, "/v2/nothing")
    assert.are.equal(404, status)
    assert.are.equal("not_found_error", j.error.type)
    local h
    status, _, h, j = d.request(srv, "/v1/rerank")
    assert.are.equal(405, status)
    assert.are.equal("POST", h["allow"])
    assert.truthy(j.error.message)
    status = d.request(srv, "/health", { method = "DELETE" })
    assert.are.equal(405, status)
  end)

  it("answers HEAD like GET, without a body", function()
    local out = d.sh(("curl -s -I %s/health"):format(srv.url))
    assert.truthy(out:find("^HTTP/1.1 200"), out)
    assert.truthy(out:lower():find("x-request-id:", 1, true), out)
  end)

  it("serves /health and /v1/models", function()
    local status, _, _, j = d.request(srv, "/health")
    assert.are.equal(200, status)
    assert.are.equal("ok", j.status)
    assert.are.equal(2, j.workers_up)
    status, _, _, j = d.request(srv, "/v1/models")
    assert.are.equal(200, status)
    assert.are.equal("list", j.object)
    assert.are.equal("bm25", j.data[1].id)
  end)

  it("serves concurrent requests on 2 workers", function()
    local body = d.writefile(d.tmpname(".json"), README_BODY)
    local cmd = ("seq 1 40 | xargs -P 16 -I{} curl -s -o /dev/null -w '%%{http_code}\\n' "
      .. "-H 'Content-Type: application/json' --data-binary @%s %s/v1/rerank"):format(body, srv.url)
    local out = d.sh(cmd)
    local n = 0
    for code in out:gmatch("%d+") do
      assert.are.equal("200", code)
      n = n + 1
    end
    assert.are.equal(40, n)
  end)

  it("keeps the connection alive across requests", function()
    local out = d.sh(("curl -s -v -o /dev/null -o /dev/null %s/health %s/health 2>&1"):format(srv.url, srv.url))
    assert.truthy(out:find("Re%-using existing connection") or out:find("Reusing existing connection"), out)
  end)
end)

describe("rerankd limits and containment", function()
  local srv
  setup(function()
    srv = assert(d.start(([[
server: { auth: none, listen: "127.0.0.1:8080", max_body: 2k, timeout: 300ms }
paths: { providers: [%s/tests/fixtures/providers] }
default_model: bm25
models:
  - { name: bm25, provider: bm25 }
  - { name: broken, provider: broken }
  - { name: sleepy, provider: sleepy, seconds: 5 }
]]):format(d.root)))
  end)
  teardown(function() d.stop(srv) end)

  it("answers an oversized body with a JSON 413", function()
    local big = { query = "q", documents = { string.rep("x", 4096) } }
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = big })
    assert.are.equal(413, status, raw)
    assert.are.equal("invalid_request_error", j.error.type)
  end)

  it("contains a faulty provider: 500 JSON, traceback in the log, next request served", function()
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = { model = "broken", query = "q", documents = { "a" } } })
    assert.are.equal(500, status, raw)
    assert.are.equal("internal_error", j.error.type)
    status, raw, _, j = d.request(srv, "/v1/rerank", { body = { model = "broken", query = "boom", documents = { "a" } } })
    assert.are.equal(500, status, raw)
    assert.truthy(j.error.message:find("exploded on purpose", 1, true))
    assert.truthy(d.logtext(srv):find("stack traceback", 1, true))
    status = d.request(srv, "/v1/rerank", { body = { model = "bm25", query = "a", documents = { "a" } } })
    assert.are.equal(200, status)
    assert.is_true(d.alive(srv))
  end)

  it("enforces the per-request deadline with a 504", function()
    local t0 = os.time()
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body = { model = "sleepy", query = "q", documents = { "a" } } })
    assert.are.equal(504, status, raw)
    assert.are.equal("timeout_error", j.error.type)
    assert.truthy(h["x-request-id"])
    assert.is_true(os.time() - t0 < 4)
    status = d.request(srv, "/v1/rerank", { body = { model = "bm25", query = "a", documents = { "a" } } })
    assert.are.equal(200, status)
  end)
end)

describe("rerankd CLI", function()
  local bin = "RERANKD_HOME=" .. d.root .. " " .. d.bin
  it("prints --version and --help", function()
    assert.truthy(d.sh(bin .. " --version"):match("^rerankd %d+%.%d+%.%d+"))
    local help = d.sh(bin .. " --help")
    for _, flag in ipairs({ "-c", "-t", "-p", "-w", "--version", "--help" }) do
      assert.truthy(help:find(flag, 1, true), flag)
    end
  end)

  it("-t validates a good config (exit 0) and a bad one (exit 1, file:line:col)", function()
    local out = d.sh(bin .. " -t -c " .. d.root .. "/config.yaml 2>&1; echo rc=$?")
    assert.truthy(out:find("rc=0", 1, true), out)
    local bad = d.writefile(d.tmpname(".yaml"), "server:\n  lisen: 1\n")
    out = d.sh(bin .. " -t -c " .. bad .. " 2>&1; echo rc=$?")
    assert.truthy(out:find("rc=1", 1, true), out)
    assert.truthy(out:find(bad .. ":2:%d+: server%.lisen"), out)
    assert.truthy(out:find('did you mean "listen"', 1, true), out)
  end)

  it("rejects bad flags with exit 2", function()
    local out = d.sh(bin .. " -p notaport 2>&1; echo rc=$?")
    assert.truthy(out:find("rc=2", 1, true), out)
  end)

  it("exits 0 on SIGTERM", function()
    local srv = assert(d.start(nil))
    os.execute("kill -TERM " .. srv.pid)
    local rc = d.sh(("for i in $(seq 50); do kill -0 %d 2>/dev/null || break; sleep 0.1; done; "
      .. "kill -0 %d 2>/dev/null && echo running || echo stopped"):format(srv.pid, srv.pid))
    assert.truthy(rc:find("stopped"), rc)
    assert.truthy(d.logtext(srv):find("rerankd stopped", 1, true))
  end)
end)

describe("examples/providers/overlap.lua through the daemon", function()
  it("scores by query-word overlap with its declared option", function()
    local srv = assert(d.start(([[
server: { auth: none }
models:
  - { name: overlap, provider_file: %s/examples/providers/overlap.lua, min_len: 2 }
]]):format(d.root)))
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = {
      model = "overlap", query = "a red car", documents = { "blue car", "a red car", "nothing" } } })
    d.stop(srv)
    assert.are.equal(200, status, raw)
    assert.are.equal(1, j.results[1].index)  -- red + car of {red, car} ("a" is below min_len)
    assert.are.equal(1, j.results[1].relevance_score)
    assert.are.equal(0.5, j.results[2].relevance_score)
    assert.are.equal(0, j.results[3].relevance_score)
  end)
end)

describe("GET /v1/models", function()
  it("lists models, aliases (groups) and pipelines: every name a client may send", function()
    local srv = assert(d.start([[
server: { auth: none }
models:
  - { name: a, provider: bm25, aliases: [fast] }
  - { name: b, provider: bm25, aliases: [fast] }
pipelines:
  - name: hybrid
    stages: [ { fuse: { method: rrf } }, { rerank: { model: a } } ]
]]))
    local status, raw, _, j = d.request(srv, "/v1/models")
    d.stop(srv)
    assert.are.equal(200, status, raw)
    local by = {}
    for _, m in ipairs(j.data) do by[m.id] = m end
    assert.are.equal("bm25", by.a.provider)
    assert.are.same({ "a", "b" }, by.fast.alias_of)
    assert.is_true(by.hybrid.pipeline)
  end)
end)

describe("pipeline requests count their lists' documents", function()
  it("logs (and rate-limits) the distinct documents of `lists`", function()
    local srv = assert(d.start(nil))
    local status, raw = d.request(srv, "/v1/rerank", { body = { query = "cat", lists = {
      { name = "v", items = { { id = "a", text = "a cat" }, { id = "b", text = "a dog" } } },
      { name = "f", items = { { id = "b", text = "a dog" }, { id = "c", text = "cat cat" } } } } } })
    d.stop(srv)
    assert.are.equal(200, status, raw)
    assert.truthy(d.logtext(srv):find('"docs":3', 1, true), d.logtext(srv))
  end)
end)
