-- End to end: routing over the mock upstreams (tests/mock/mock_upstream.py): fallbacks on
-- 500/timeout/429, Retry-After honoured (measured), retries, request deadlines, circuit
-- breaker, groups, direct provider/model names, splitting above max_documents, chunking,
-- local cost in x-rerankd-cost.
local d = require "support.daemon"
local cjson = require "cjson"
local now, mock_requests, mock_reset = d.now, d.mock_requests, d.mock_reset

-- requests the mock received from model `name` (each model sends x-test-model: its name)
local function hits(mock, name)
  local n = 0
  for _, r in ipairs(mock_requests(mock)) do
    if r.headers["x-test-model"] == name then n = n + 1 end
  end
  return n
end

local rerank = d.rerank

-- each mock-backed model sends x-test-model: its name, so hits() can count its calls
local MODELS = {
  { "jina-ok", "jina", "/jina" },
  { "co-ok", "cohere", "/cohere", "price: { per_search_unit: 0.002, per_request: 0.001 }" },
  { "co-500", "cohere", "/fault/500/cohere", "fallbacks: [jina-ok]" },
  { "co-500-bare", "cohere", "/fault/500/cohere" },
  { "co-slow", "cohere", "/fault/slow:3000/cohere", "timeout: 300ms, fallbacks: [bm25]" },
  { "co-slow-long", "cohere", "/fault/slow:3000/cohere", "timeout: 10s, fallbacks: [co-slow]" },
  { "co-429", "cohere", "/fault/429:5/cohere", "fallbacks: [bm25]" },
  { "co-429-retry", "cohere", "/fault/429:1/cohere", "retries: 1, fallbacks: [bm25]" },
  { "co-flaky", "cohere", "/fault/flaky:2/cohere", "retries: 2" },
  { "co-breaker", "cohere", "/fault/503/cohere", "fallbacks: [bm25], breaker: { failures: 2, cooldown: 1s }" },
  { "vo", "voyage", "/voyage" },
  { "grp-a", "cohere", "/cohere", "aliases: [grp]" },
  { "grp-b", "jina", "/jina", "aliases: [grp]" },
}

local function config(mock)
  local lines = {
    'server: { auth: none, listen: "127.0.0.1:0", timeout: 20s }',
    "default_model: bm25",
    "direct_models:",
    ('  cohere: { base_url: "%s/cohere", price: { per_request: 0.5 } }'):format(mock.url),
    "models:",
    "  - { name: bm25, provider: bm25 }",
  }
  for _, m in ipairs(MODELS) do
    lines[#lines + 1] = ('  - { name: %s, provider: %s, api_key: test-key, base_url: "%s%s",'):format(m[1], m[2], mock.url, m[3])
    lines[#lines + 1] = ("      headers: { x-test-model: %s }%s }"):format(m[1], m[4] and (", " .. m[4]) or "")
  end
  return table.concat(lines, "\n") .. "\n"
end

describe("routing end to end over the mock upstreams", function()
  local mock, srv

  setup(function()
    mock = d.start_mock()
    srv = assert(d.start(config(mock), { workers = 1, env = "env -u VOYAGE_API_KEY COHERE_API_KEY=test-key" }))
  end)

  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  before_each(function() mock_reset(mock) end)

  it("falls back on HTTP 500 to the model's fallback", function()
    local status, raw, h, j = rerank(srv, { model = "co-500" })
    assert.are.equal(200, status, raw)
    assert.are.equal("jina-ok", h["x-rerankd-model"])
    assert.are.equal("co-500", j.model)
    assert.are.equal(3, #j.results)
    assert.are.equal(2, j.results[1].index) -- "cat and dog" has both words
    assert.are.equal(1, hits(mock, "co-500"))
    assert.are.equal(1, hits(mock, "jina-ok"))
  end)

  it("falls back on a timeout within the model's timeout", function()
    local t0 = now()
    local status, raw, h = rerank(srv, { model = "co-slow" })
    local dt = now() - t0
    assert.are.equal(200, status, raw)
    assert.are.equal("bm25", h["x-rerankd-model"])
    assert.is_true(dt < 1.5, tostring(dt))
  end)

  it("falls back at once on 429 when the model has no retries", function()
    local t0 = now()
    local status, raw, h = rerank(srv, { model = "co-429" })
    assert.are.equal(200, status, raw)
    assert.are.equal("bm25", h["x-rerankd-model"])
    assert.is_true(now() - t0 < 1, "did not wait for Retry-After: 5")
    assert.are.equal(1, hits(mock, "co-429"))
  end)

  it("honours Retry-After before retrying (measured), then falls back", function()
    local t0 = now()
    local status, raw, h = rerank(srv, { model = "co-429-retry" })
    local dt = now() - t0
    assert.are.equal(200, status, raw)
    assert.are.equal("bm25", h["x-rerankd-model"])
    assert.are.equal(2, hits(mock, "co-429-retry"))
    assert.is_true(dt >= 0.95, "waited " .. dt .. "s, Retry-After is 1s")
    assert.is_true(dt < 3, tostring(dt))
  end)

  it("retries a flaky upstream with backoff until it answers", function()
    local status, raw, h = rerank(srv, { model = "co-flaky" })
    assert.are.equal(200, status, raw)
    assert.are.equal("co-flaky", h["x-rerankd-model"])
    assert.are.equal(3, hits(mock, "co-flaky"))
  end)

  it("uses the request's fallbacks, which replace the model's", function()
    local status, raw, h = rerank(srv, { model = "co-500-bare", fallbacks = { "bm25" } })
    assert.are.equal(200, status, raw)
    assert.are.equal("bm25", h["x-rerankd-model"])
    status, raw = rerank(srv, { model = "co-500-bare", fallbacks = { "nope" } })
    assert.are.equal(400, status, raw)
    assert.truthy(raw:find("fallbacks", 1, true))
  end)

  it("reports the upstream and its status when every fallback fails", function()
    local status, raw, _, j = rerank(srv, { model = "co-500-bare" })
    assert.are.equal(502, status, raw)
    assert.truthy(j.error.message:find("HTTP 500", 1, true), raw)
    assert.is_nil(raw:find("test-key", 1, true))
  end)

  it("ends a request at its deadline (header x-rerankd-timeout-ms or body timeout)", function()
    local t0 = now()
    local status, raw, _, j = rerank(srv, { model = "co-slow-long" }, { ["x-rerankd-timeout-ms"] = "400" })
    local dt = now() - t0
    assert.are.equal(504, status, raw)
    assert.are.equal("timeout_error", j.error.type)
    assert.is_true(dt < 1.5, tostring(dt))
    t0 = now()
    status, raw = rerank(srv, { model = "co-slow-long", timeout = "400ms" })
    assert.are.equal(504, status, raw)
    assert.is_true(now() - t0 < 1.5)
    status, raw = rerank(srv, { model = "bm25" }, { ["x-rerankd-timeout-ms"] = "soon" })
    assert.are.equal(400, status, raw)
  end)

  it("opens the circuit after consecutive failures, then probes after the cooldown", function()
    for _ = 1, 3 do
      local status, raw, h = rerank(srv, { model = "co-breaker" })
      assert.are.equal(200, status, raw)
      assert.are.equal("bm25", h["x-rerankd-model"])
    end
    assert.are.equal(2, hits(mock, "co-breaker")) -- the third request skipped the open deployment
    d.sleep(1.2)
    rerank(srv, { model = "co-breaker" })
    assert.are.equal(3, hits(mock, "co-breaker")) -- half-open: one probe
  end)

  it("spreads a group's requests over its deployments", function()
    local served = {}
    for _ = 1, 16 do
      local status, raw, h, j = rerank(srv, { model = "grp" })
      assert.are.equal(200, status, raw)
      assert.are.equal("grp", j.model)
      served[h["x-rerankd-model"]] = (served[h["x-rerankd-model"]] or 0) + 1
    end
    assert.truthy(served["grp-a"] and served["grp-b"], cjson.encode(served))
  end)

  it("serves provider/model names with direct_models and the provider's env key", function()
    local status, raw, h, j = rerank(srv, { model = "cohere/rerank-v3.5" })
    assert.are.equal(200, status, raw)
    assert.are.equal("cohere/rerank-v3.5", j.model)
    assert.are.equal("0.5", h["x-rerankd-cost"])
    local reqs = mock_requests(mock)
    assert.are.equal("Bearer test-key", reqs[#reqs].headers.authorization)
    assert.are.equal("rerank-v3.5", reqs[#reqs].json.model)
    status, raw = rerank(srv, { model = "voyage/rerank-2" })
    assert.are.equal(400, status, raw)
    assert.truthy(raw:find("VOYAGE_API_KEY", 1, true), raw)
    status, raw = rerank(srv, { model = "nosuch/model" })
    assert.are.equal(404, status, raw)
    assert.truthy(raw:find('unknown provider', 1, true), raw)
  end)

  it("prices requests locally in x-rerankd-cost", function()
    local status, raw, h = rerank(srv, { model = "co-ok" })
    assert.are.equal(200, status, raw)
    assert.are.equal("0.003", h["x-rerankd-cost"]) -- 1 search unit x 0.002 + 0.001 per request
    local docs = {}
    for i = 1, 250 do docs[i] = "doc " .. i end
    status, raw, h = rerank(srv, { model = "co-ok", documents = docs })
    assert.are.equal(200, status, raw)
    assert.are.equal("0.007", h["x-rerankd-cost"]) -- 3 search units
    local _, _, h2 = rerank(srv, { model = "bm25" })
    assert.are.equal("0", h2["x-rerankd-cost"])
  end)

  it("splits 2,500 documents over a 1,000-document provider into one global order", function()
    local qwords = {}
    for w = 1, 10 do qwords[w] = "w" .. w end
    local docs, k = {}, {}
    for i = 1, 2500 do
      k[i] = (i * 7) % 11 -- 0..10 query words: share k/10
      local t = { "doc" .. i }
      for w = 1, k[i] do t[#t + 1] = "w" .. w end
      docs[i] = table.concat(t, " ")
    end
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = { model = "vo", query = table.concat(qwords, " "),
      documents = docs, top_n = 2500 }, timeout = 60 })
    assert.are.equal(200, status, raw:sub(1, 300))
    assert.are.equal(2500, #j.results)
    local want = {}
    for i = 1, 2500 do want[i] = i end
    table.sort(want, function(a, b)
      if k[a] ~= k[b] then return k[a] > k[b] end
      return a < b
    end)
    for r = 1, 2500 do
      assert.are.equal(want[r] - 1, j.results[r].index, "rank " .. r)
      assert.is_true(math.abs(j.results[r].relevance_score - k[want[r]] / 10) < 1e-9)
    end
    local sizes = {}
    for _, r in ipairs(mock_requests(mock)) do
      if r.path:find("/voyage/", 1, true) then sizes[#sizes + 1] = #r.json.documents end
    end
    table.sort(sizes)
    assert.are.same({ 500, 1000, 1000 }, sizes)
  end)

  it("scores a chunked long document by its best chunk", function()
    local long = ("filler "):rep(300) .. "alpha omega"
    local body = { model = "co-ok", query = "alpha omega", documents = { "alpha beta", long },
                   max_tokens_per_document = 100 }
    -- truncated to its first 100 tokens, the long document loses the words
    local status, raw, _, j = d.request(srv, "/v1/rerank", { body = body })
    assert.are.equal(200, status, raw)
    assert.are.equal(0, j.results[1].index)
    assert.are.equal(0, j.results[2].relevance_score)
    -- chunked, its last chunk matches both words
    body.max_chunks_per_doc = 10
    mock_reset(mock)
    status, raw, _, j = d.request(srv, "/v1/rerank", { body = body })
    assert.are.equal(200, status, raw)
    assert.are.equal(2, #j.results)
    assert.are.equal(1, j.results[1].index)
    assert.are.equal(1, j.results[1].relevance_score)
    assert.are.equal(0.5, j.results[2].relevance_score)
    assert.are.equal(long, j.results[1].document.text) -- the client's document, whole
    local sent = mock_requests(mock)[1].json.documents
    assert.is_true(#sent > 2 and #sent <= 11, tostring(#sent))
  end)
end)
