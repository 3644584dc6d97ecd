-- End to end: the real rerankd binary over HTTP with curl.
local d = require "support.daemon"
local mock_requests, reset_mock = d.mock_requests, d.mock_reset

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

-- Okapi BM25 exactly as issue 3 states it (independent of core/bm25.c); docs are token lists.
local function bm25(q, docs, k1, b)
  k1, b = k1 or 1.2, b or 0.75
  local n, total = #docs, 0
  for _, t in ipairs(docs) do total = total + #t end
  local avg = total / n
  local out = {}
  for i, toks in ipairs(docs) do
    local s, seen = 0, {}
    for _, term in ipairs(q) do
      if not seen[term] then
        seen[term] = true
        local tf, nt = 0, 0
        for _, w in ipairs(toks) do if w == term then tf = tf + 1 end end
        for _, other in ipairs(docs) do
          for _, w in ipairs(other) do if w == term then nt = nt + 1; break end end
        end
        if tf > 0 then
          local idf = math.log(1 + (n - nt + 0.5) / (nt + 0.5))
          s = s + idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * #toks / avg))
        end
      end
    end
    out[i] = s
  end
  return out
end

-- Regressions (issues 3, 4, 7) found by driving the real binary; each failed before its fix.
describe("rerankd regressions: core, providers, wire shapes", function()
  local srv, mock
  setup(function()
    mock = d.start_mock()
    local m = mock.url
    srv = assert(d.start(([[
server: { auth: none, max_body: 1k }
models:
  - { name: bm25, provider: bm25 }
  - { name: mal, provider: cohere, base_url: "%s/fault/malformed/cohere", api_key: test-key }
  - { name: co_v1path, provider: cohere, base_url: "%s/cohere", api_key: test-key, path: /v1/rerank }
]]):format(m, m)))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  it("a 413 the C core answers itself still carries x-request-id", function()
    local body = '{"query":"a","documents":["' .. ("a"):rep(2000) .. '"]}'
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body = body })
    assert.are.equal(413, status, raw)
    assert.are.equal("invalid_request_error", j.error.type)
    assert.truthy(h["x-request-id"], "x-request-id missing on 413")
    assert.truthy(h["x-rerankd-timing"])
    -- the client's own id is kept there too
    local status2, _, h2 = d.request(srv, "/v1/rerank", { body = body, headers = { ["x-request-id"] = "big-1" } })
    assert.are.equal(413, status2)
    assert.are.equal("big-1", h2["x-request-id"])
  end)

  it("bm25 with truncate none scores the whole text despite max_tokens_per_document", function()
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body =
      '{"query":"b","documents":["a a a a b","b"],"truncate":"none","max_tokens_per_document":2}' })
    assert.are.equal(200, status, raw)
    local exp = bm25({ "b" }, { { "a", "a", "a", "a", "b" }, { "b" } })
    local got = {}
    for _, r in ipairs(j.results) do got[r.index + 1] = r.relevance_score end
    assert.is_true(math.abs(got[1] - exp[1]) < 1e-12, raw)
    assert.is_true(math.abs(got[2] - exp[2]) < 1e-12, raw)
    -- and "end" keeps the first 2 tokens: "a a" no longer matches
    status, raw, _, j = d.request(srv, "/v1/rerank", { body =
      '{"query":"b","documents":["a a a a b","b"],"truncate":"end","max_tokens_per_document":2}' })
    assert.are.equal(200, status, raw)
    assert.are.equal(1, j.results[1].index)
    assert.are.equal(0, j.results[2].relevance_score)
  end)

  it("rerankd's own fields still apply when a Cohere v1 field is present", function()
    -- rank_fields makes /v1/rerank Cohere v1; max_tokens_per_document + truncate must not vanish
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body =
      '{"query":"b","documents":["a a a a b","b"],"truncate":"end","max_tokens_per_document":2,' ..
      '"rank_fields":["text"]}' })
    assert.are.equal(200, status, raw)
    assert.are.equal("1", j.meta.api_version.version)
    assert.are.equal(1, j.results[1].index)
    assert.are.equal(0, j.results[2].relevance_score, raw)
    status, raw, _, j = d.request(srv, "/v1/rerank", { body =
      '{"query":"b","documents":["a"],"truncate":"middle","max_chunks_per_doc":2}' })
    assert.are.equal(422, status, raw)
    assert.are.equal("truncate", j.error.param)
    status, raw, _, j = d.request(srv, "/v1/rerank", { body =
      '{"query":"b","documents":["a"],"max_tokens_per_document":0,"max_chunks_per_doc":2}' })
    assert.are.equal(422, status, raw)
    assert.are.equal("max_tokens_per_document", j.error.param)
  end)

  it("an unparseable upstream answer names the upstream, the model and the HTTP status", function()
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body =
      '{"model":"mal","query":"a","documents":["a"]}' })
    assert.are.equal(502, status, raw)
    assert.truthy(h["x-request-id"])
    assert.truthy(j.error.message:find('upstream "cohere"', 1, true), raw)
    assert.truthy(j.error.message:find('model "mal"', 1, true), raw)
    assert.truthy(j.error.message:find("HTTP 200", 1, true), raw)
    assert.falsy(j.error.message:find("test-key", 1, true))
  end)

  it("a cohere model configured with path /v1/rerank speaks the v1 body", function()
    reset_mock(mock)
    local status, raw = d.request(srv, "/v1/rerank", { body =
      '{"model":"co_v1path","query":"red cat","documents":["a dog","red cat"],"max_tokens_per_document":50}' })
    assert.are.equal(200, status, raw)
    local reqs = mock_requests(mock)
    local last = reqs[#reqs]
    assert.are.equal("/cohere/v1/rerank", last.path)
    assert.is_nil(last.json.max_tokens_per_doc) -- a v2-only field
    assert.are.equal(false, last.json.return_documents)
  end)
end)

describe("rerankd -t", function()
  it("points an unknown key at the key itself (README: bad.yaml:2:3)", function()
    local f = d.writefile(d.tmpname(".yaml"), 'server:\n  lisen: "127.0.0.1:8080"\n')
    local out = d.sh(d.bin .. " -t -c " .. f .. " 2>&1; echo rc=$?")
    assert.truthy(out:find(f .. ':2:3: server.lisen: unknown key (did you mean "listen"?)', 1, true), out)
    assert.truthy(out:find("rc=1", 1, true), out)
    f = d.writefile(d.tmpname(".yaml"), "models:\n  - name: x\n    provider: bm25\n    k2: 1\n")
    out = d.sh(d.bin .. " -t -c " .. f .. " 2>&1")
    assert.truthy(out:find(f .. ':4:5: models[0].k2: unknown key (did you mean "k1"?)', 1, true), out)
  end)
end)
