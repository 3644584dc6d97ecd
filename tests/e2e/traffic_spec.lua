-- End to end over the mock upstream: the gateway-overhead histogram (time in rerankd minus
-- upstream wait), hedged requests, shadow traffic.
local d = require "support.daemon"
local prom = require "support.prom"

local rerank = d.rerank

-- the mock upstream, and a daemon whose models: are bm25 plus lines(mock) (a function
-- returning YAML lines; pipelines: may follow)
local function serve(lines)
  local mock = d.start_mock()
  local cfg = { 'server: { auth: none, listen: "127.0.0.1:0" }', "log: { access: off }", "models:",
                "  - { name: bm25, provider: bm25 }" }
  for _, l in ipairs(lines(mock)) do cfg[#cfg + 1] = l end
  return mock, assert(d.start(table.concat(cfg, "\n") .. "\n"))
end

local function stop(mock, srv)
  d.stop(srv)
  d.stop_mock(mock)
end

local function metrics(srv)
  local _, text = d.request(srv, "/metrics")
  return assert(prom.parse(text))
end

-- sum of a histogram's _sum / _count samples matching labels
local function hist(fams, name, labels)
  local f = fams[name]
  local sum, count = 0, 0
  if not f then return sum, count end
  for _, s in ipairs(f.samples) do
    local match = true
    for k, v in pairs(labels) do if s.labels[k] ~= v then match = false end end
    if match and s.name == name .. "_sum" then sum = sum + s.value end
    if match and s.name == name .. "_count" then count = count + s.value end
  end
  return sum, count
end

local function counter(fams, name, labels)
  local f = fams[name]
  local n = 0
  if not f then return 0 end
  for _, s in ipairs(f.samples) do
    local match = true
    for k, v in pairs(labels or {}) do if s.labels[k] ~= v then match = false end end
    if match then n = n + s.value end
  end
  return n
end

describe("gateway overhead metric", function()
  local mock, srv
  setup(function()
    mock, srv = serve(function(m)
      return { ('  - { name: slow, provider: cohere, api_key: test-key, base_url: "%s/fault/slow:300/cohere" }'):format(m.url) }
    end)
  end)
  teardown(function() stop(mock, srv) end)

  it("excludes the upstream wait, per route and model", function()
    for _ = 1, 3 do assert.equal(200, (rerank(srv, { model = "slow" }))) end
    for _ = 1, 3 do assert.equal(200, (rerank(srv, { model = "bm25" }))) end
    local fams = metrics(srv)
    assert.equal("histogram", fams.rerankd_gateway_overhead_seconds.type)
    local osum, ocount = hist(fams, "rerankd_gateway_overhead_seconds", { route = "/v1/rerank", model = "slow" })
    local usum = hist(fams, "rerankd_upstream_duration_seconds", { model = "slow" })
    assert.equal(3, ocount)
    assert.is_true(usum >= 0.9, tostring(usum))         -- three 300 ms upstream answers
    assert.is_true(osum < 0.25, tostring(osum))         -- rerankd's own part of them is small
    local _, bcount = hist(fams, "rerankd_gateway_overhead_seconds", { route = "/v1/rerank", model = "bm25" })
    assert.equal(3, bcount)                              -- local models: all of it is rerankd's
  end)
end)

describe("hedged requests", function()
  local mock, srv
  local function m(name, path, extra)
    return ('  - { name: %s, provider: cohere, api_key: test-key, base_url: "%s%s", headers: { x-test-model: %s }%s }')
      :format(name, mock.url, path, name, extra and (", " .. extra) or "")
  end
  local function hits(name)
    local n = 0
    for _, r in ipairs(d.mock_requests(mock)) do
      if r.headers["x-test-model"] == name then n = n + 1 end
    end
    return n
  end
  setup(function()
    mock, srv = serve(function(mk)
      mock = mk
      return {
      m("fast", "/cohere"),
      m("broken", "/fault/500/cohere"),
      m("busy", "/fault/slow:1500/cohere", "concurrency: 1"),
      m("slowp", "/fault/slow:2000/cohere", "hedge: { after: 200ms, to: fast }"),
      m("goodp", "/fault/slow:600/cohere", "hedge: { after: 100ms, to: broken }"),
      m("boundp", "/fault/slow:400/cohere", "hedge: { after: 100ms, to: busy }"),
      m("quick", "/cohere", "hedge: { after: p95, to: fast }"),
      "cache: { backend: memory, models: [slowp] }",
      }
    end)
  end)
  teardown(function() stop(mock, srv) end)

  it("sends the hedge when the first has not answered in time; the first good answer wins", function()
    d.mock_reset(mock)
    local t0 = d.now()
    local status, _, h, j = rerank(srv, { model = "slowp" })
    local took = d.now() - t0
    assert.equal(200, status)
    assert.is_true(took < 1.5, tostring(took))      -- not the primary's 2 s
    assert.equal("fast", h["x-rerankd-model"])
    assert.equal(2, j.results[1].index)             -- the mock's ranking: "cat and dog" first
    assert.equal(1, hits("slowp"))
    assert.equal(1, hits("fast"))
    d.sleep(0.2) -- the losing transfer was cancelled: the mock saw the connection close
    local cancelled
    for _, r in ipairs(d.mock_requests(mock)) do
      if r.headers["x-test-model"] == "slowp" then cancelled = r.cancelled end
    end
    assert.is_true(cancelled)
    local fams = metrics(srv)
    assert.equal(1, counter(fams, "rerankd_hedges_sent_total", { model = "slowp", to = "fast" }))
    assert.equal(1, counter(fams, "rerankd_hedges_won_total", { model = "slowp", to = "fast" }))
    -- the hedge target's scores were not cached as the primary's
    local _, _, h2 = rerank(srv, { model = "slowp" })
    assert.equal("miss", h2["x-rerankd-cache"])
  end)

  it("a failing hedge does not win: the slower good answer does", function()
    d.mock_reset(mock)
    local status, _, h = rerank(srv, { model = "goodp" })
    assert.equal(200, status)
    assert.equal("goodp", h["x-rerankd-model"])
    assert.equal(1, hits("broken"))
    local fams = metrics(srv)
    assert.equal(1, counter(fams, "rerankd_hedges_sent_total", { model = "goodp" }))
    assert.equal(0, counter(fams, "rerankd_hedges_won_total", { model = "goodp" }))
  end)

  it("never hedges past the request deadline", function()
    d.mock_reset(mock)
    local status = rerank(srv, { model = "slowp" }, { ["x-rerankd-timeout-ms"] = "150" })
    assert.equal(504, status)
    d.sleep(0.3)
    assert.equal(0, hits("fast"))
    local fams = metrics(srv)
    assert.equal(1, counter(fams, "rerankd_hedges_skipped_total", { model = "slowp", reason = "deadline" }))
  end)

  it("never hedges past the target's concurrency bound", function()
    d.mock_reset(mock)
    -- one call to busy (concurrency: 1) in flight on the only worker
    local body = d.writefile(d.tmpname(".json"), '{"model":"busy","query":"cat","documents":["cat"]}')
    d.sh(("curl -s -o /dev/null -H 'Content-Type: application/json' --data-binary @%s %s/v1/rerank >/dev/null 2>&1 &")
      :format(body, srv.url))
    d.sleep(0.3)
    local status, _, h = rerank(srv, { model = "boundp" })
    assert.equal(200, status)
    assert.equal("boundp", h["x-rerankd-model"])
    local fams = metrics(srv)
    assert.equal(1, counter(fams, "rerankd_hedges_skipped_total", { model = "boundp", reason = "concurrency" }))
    assert.equal(0, counter(fams, "rerankd_hedges_sent_total", { model = "boundp" }))
    d.sleep(1.5)
    assert.equal(1, hits("busy")) -- only the direct call
  end)

  it("after: p95 waits for 20 answers before it arms", function()
    for _ = 1, 20 do assert.equal(200, (rerank(srv, { model = "quick" }))) end
    local fams = metrics(srv)
    assert.equal(20, counter(fams, "rerankd_hedges_skipped_total", { model = "quick", reason = "warmup" }))
    assert.equal(200, (rerank(srv, { model = "quick" })))
    fams = metrics(srv)
    assert.equal(20, counter(fams, "rerankd_hedges_skipped_total", { model = "quick", reason = "warmup" }))
  end)
end)

describe("shadow traffic", function()
  local mock, srv, logfile
  local function m(name, path, extra)
    return ('  - { name: %s, provider: cohere, api_key: test-key, base_url: "%s%s"%s }')
      :format(name, mock.url, path, extra and (", " .. extra) or "")
  end
  setup(function()
    logfile = d.tmpname(".shadow.jsonl")
    mock, srv = serve(function(mk)
      mock = mk
      return {
      ("  - { name: bm25-logged, provider: bm25, shadow: { model: same, log: %s } }"):format(logfile),
      "  - { name: same, provider: bm25 }",
      "  - { name: bm25-slow, provider: bm25, shadow: { model: slow, max_inflight: 1 } }",
      "  - { name: bm25-broken, provider: bm25, shadow: { model: broken } }",
      "  - { name: bm25-co, provider: bm25, shadow: { model: co, k: 2 } }",
      "  - { name: bm25-never, provider: bm25, shadow: { model: co, sample: 0 } }",
      m("slow", "/fault/slow:800/cohere"),
      m("broken", "/fault/500/cohere"),
      m("co", "/cohere", "price: { per_search_unit: 0.002 }"),
      "pipelines:",
      "  - { name: fused, stages: [ { fuse: rrf }, { rerank: bm25 } ], shadow: { model: co } }",
      ("  - { name: fused-top1, stages: [ { fuse: rrf }, { rerank: bm25 }, { top_n: 1 } ], shadow: { model: same, log: %s } }")
        :format(logfile .. ".top1"),
      }
    end)
  end)
  teardown(function() stop(mock, srv) end)

  it("compares after the answer: identical rankings score 1, and one JSON line per comparison", function()
    assert.equal(200, (rerank(srv, { model = "bm25-logged" })))
    d.sleep(0.2)
    local fams = metrics(srv)
    local l = { primary = "bm25-logged", shadow = "same" }
    assert.equal(1, counter(fams, "rerankd_shadow_requests_total", { primary = "bm25-logged", outcome = "ok" }))
    for _, name in ipairs({ "rerankd_shadow_kendall_tau", "rerankd_shadow_overlap", "rerankd_shadow_rbo",
                            "rerankd_shadow_top1_agreement" }) do
      local sum, count = hist(fams, name, l)
      assert.equal(1, count, name)
      assert.is_true(math.abs(sum - 1) < 1e-9, name .. " " .. sum)
    end
    local dsum, dcount = hist(fams, "rerankd_shadow_score_drift", l)
    assert.same({ 0, 1 }, { dsum, dcount })
    local line = assert((d.readfile(logfile) or ""):match("^([^\n]+)\n$"))
    local j = require("cjson").decode(line)
    assert.same({ "bm25-logged", "same", 3, 1, 1, 1, 1, 0, 10 },
      { j.primary, j.shadow, j.documents, j.kendall_tau, j.overlap, j.rbo, j.top1, j.score_drift, j.k })
    assert.truthy(j.id:find("^rerank%-"))
    -- the shadow's calls are not the client's: no request or cost counted for "same"
    assert.equal(0, counter(fams, "rerankd_requests_total", { model = "same" }))
  end)

  it("never delays the client, and drops runs over max_inflight", function()
    local t0 = d.now()
    assert.equal(200, (rerank(srv, { model = "bm25-slow" })))
    assert.is_true(d.now() - t0 < 0.6, "the answer waited for the 800 ms shadow")
    assert.equal(200, (rerank(srv, { model = "bm25-slow" })))
    assert.equal(200, (rerank(srv, { model = "bm25-slow" })))
    d.sleep(1)
    local fams = metrics(srv)
    assert.equal(1, counter(fams, "rerankd_shadow_requests_total", { primary = "bm25-slow", outcome = "ok" }))
    assert.equal(2, counter(fams, "rerankd_shadow_requests_total", { primary = "bm25-slow", outcome = "dropped" }))
    local _, count = hist(fams, "rerankd_shadow_duration_seconds", { primary = "bm25-slow", shadow = "slow" })
    assert.equal(1, count)
  end)

  it("counts shadow failures and cost apart; sample 0 never runs; pipelines shadow too", function()
    assert.equal(200, (rerank(srv, { model = "bm25-broken" })))
    assert.equal(200, (rerank(srv, { model = "bm25-co" })))
    assert.equal(200, (rerank(srv, { model = "bm25-never" })))
    assert.equal(200, (rerank(srv, { model = "fused" })))
    d.sleep(0.3)
    local fams = metrics(srv)
    assert.equal(1, counter(fams, "rerankd_shadow_requests_total", { primary = "bm25-broken", outcome = "failed" }))
    assert.equal(1, counter(fams, "rerankd_shadow_requests_total", { primary = "bm25-co", outcome = "ok" }))
    assert.equal(0, counter(fams, "rerankd_shadow_requests_total", { primary = "bm25-never" }))
    assert.equal(1, counter(fams, "rerankd_shadow_requests_total", { primary = "fused", shadow = "co", outcome = "ok" }))
    local cost = counter(fams, "rerankd_shadow_cost_usd_total", { primary = "bm25-co", shadow = "co" })
    assert.is_true(math.abs(cost - 0.002) < 1e-12, tostring(cost))
    assert.equal(0, counter(fams, "rerankd_cost_usd_total", { model = "co" }))
    assert.equal(0, counter(fams, "rerankd_requests_total", { model = "co" }))
    local _, count = hist(fams, "rerankd_shadow_overlap", { primary = "bm25-co", shadow = "co" })
    assert.equal(1, count)
  end)

  it("a pipeline's shadow sees the request as sent, not the pipeline's results", function()
    assert.equal(200, (rerank(srv, { model = "fused-top1" })))
    d.sleep(0.3)
    local text = d.readfile(logfile .. ".top1") or ""
    local line = text:match("^([^\n]+)\n$")
    assert.is_string(line, text)
    local j = require("cjson").decode(line)
    -- the primary returned 1 result; the shadow ranked all 3 documents, the same one first
    assert.same({ 3, 1, 1 }, { j.documents, j.top1, j.overlap })
  end)
end)
