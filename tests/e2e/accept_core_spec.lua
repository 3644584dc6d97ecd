-- Acceptance regressions (issues 3, 4, 7) found by driving the real binary over HTTP and
-- the CLI; each case failed before its fix.
local d = require "support.daemon"
local mock_requests, reset_mock = d.mock_requests, d.mock_reset

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

describe("acceptance: core, providers, wire shapes", function()
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

describe("acceptance: rerankd -t", function()
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
