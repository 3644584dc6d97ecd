-- Metrics (rerank.daemon.metrics) and the strict Prometheus exposition parser the specs check them with.
local metrics = require "rerank.daemon.metrics"
local prom = require "support.prom"

describe("metrics", function()
  before_each(function() metrics.reset() end)

  it("renders valid exposition text (strict parser)", function()
    metrics.inc("rerankd_requests_total", { route = "/v1/rerank", model = "m", status = "200" })
    metrics.inc("rerankd_requests_total", { route = "/v1/rerank", model = 'we"ird\\name\n', status = "200" }, 2)
    metrics.observe("rerankd_upstream_duration_seconds", { model = "m" }, 0.003)
    metrics.observe("rerankd_upstream_duration_seconds", { model = "m" }, 100)
    metrics.set("rerankd_in_flight_requests", nil, 3)
    local text = metrics.render(metrics.merge({ metrics.snapshot(0) }))
    local fams, err = prom.parse(text)
    assert.is_nil(err, err)
    assert.are.equal("counter", fams.rerankd_requests_total.type)
    assert.are.equal(2, prom.value(fams, "rerankd_requests_total", { model = 'we"ird\\name\n' }))
    assert.are.equal(2, prom.value(fams, "rerankd_upstream_duration_seconds", { model = "m", le = "+Inf" },
      "rerankd_upstream_duration_seconds_bucket"))
    assert.are.equal(1, prom.value(fams, "rerankd_upstream_duration_seconds", { model = "m", le = "0.005" },
      "rerankd_upstream_duration_seconds_bucket"))
    assert.are.equal(100.003, prom.value(fams, "rerankd_upstream_duration_seconds", {},
      "rerankd_upstream_duration_seconds_sum"))
    assert.are.equal(3, prom.value(fams, "rerankd_in_flight_requests"))
    assert.truthy(text:find('# TYPE rerankd_upstream_duration_seconds histogram\n', 1, true))
  end)

  it("merges several workers' snapshots", function()
    metrics.inc("rerankd_requests_total", { route = "/r", model = "m", status = "200" }, 3)
    metrics.observe("rerankd_stage_duration_seconds", { stage = "parse" }, 0.0001)
    metrics.set("rerankd_in_flight_requests", nil, 1)
    metrics.set("rerankd_build_info", { version = "1" }, 1)
    local w0 = metrics.snapshot(0)
    metrics.reset()
    metrics.inc("rerankd_requests_total", { route = "/r", model = "m", status = "200" }, 4)
    metrics.inc("rerankd_cost_usd_total", { model = "m" }, 0.1)
    metrics.inc("rerankd_cost_usd_total", { model = "m" }, 0.2)
    metrics.observe("rerankd_stage_duration_seconds", { stage = "parse" }, 2)
    metrics.set("rerankd_in_flight_requests", nil, 2)
    metrics.set("rerankd_build_info", { version = "1" }, 1)
    local w1 = metrics.snapshot(1)
    local merged = metrics.merge({ w0, w1 })
    local fams = assert(prom.parse(metrics.render(merged)))
    assert.are.equal(7, prom.value(fams, "rerankd_requests_total", { route = "/r" }))
    assert.are.equal(3, prom.value(fams, "rerankd_in_flight_requests"))
    assert.are.equal(1, prom.value(fams, "rerankd_build_info"))
    assert.is_true(math.abs(prom.value(fams, "rerankd_cost_usd_total", { model = "m" }) - 0.3) < 1e-12)
    assert.are.equal(2, prom.value(fams, "rerankd_stage_duration_seconds", { stage = "parse" },
      "rerankd_stage_duration_seconds_count"))
    assert.are.equal(1, prom.value(fams, "rerankd_stage_duration_seconds", { stage = "parse", le = "0.0005" },
      "rerankd_stage_duration_seconds_bucket"))
  end)

  it("snapshots round-trip exactly", function()
    metrics.inc("rerankd_cost_usd_total", { model = "a b" }, 0.1 + 0.2)
    metrics.observe("rerankd_request_duration_seconds", { route = "/x" }, 1 / 3)
    local st = metrics.parse_snapshot(metrics.snapshot(7))
    assert.are.equal(7, st.worker)
    assert.are.equal(0.1 + 0.2, st.values.rerankd_cost_usd_total['model="a b"'])
    assert.are.equal(1 / 3, st.values.rerankd_request_duration_seconds['route="/x"'].sum)
  end)

  it("counts a request by route, known model and status, with usage", function()
    local cfg = { model_index = { m = {} }, pipeline_index = {} }
    local ctx = { route = "/v1/rerank", t0_us = require("rerank.core").now_us(),
      info = { model = "m", docs = 3, timing = { parse = 10, upstream = 2000, sort = 5, serialize = 7 },
               usage = { total_tokens = 30, search_units = 1, cost = 0.002 } } }
    metrics.request_start(ctx)
    metrics.request_done(ctx, 200, cfg)
    assert.are.equal(1, metrics.get("rerankd_requests_total", { route = "/v1/rerank", model = "m", status = "200" }))
    assert.are.equal(3, metrics.get("rerankd_documents_scored_total", { model = "m" }))
    assert.are.equal(30, metrics.get("rerankd_tokens_total", { model = "m" }))
    assert.are.equal(1, metrics.get("rerankd_search_units_total", { model = "m" }))
    assert.are.equal(0.002, metrics.get("rerankd_cost_usd_total", { model = "m" }))
    assert.are.equal(1, metrics.get("rerankd_stage_duration_seconds", { stage = "upstream" }).count)
    -- a model name the config does not know is folded (clients cannot grow the label set)
    metrics.request_done({ route = "/v1/rerank", info = { model = "random-123" } }, 404, cfg)
    assert.are.equal(1, metrics.get("rerankd_requests_total", { route = "/v1/rerank", model = "", status = "404" }))
    metrics.request_done({}, 404, cfg)
    assert.are.equal(1, metrics.get("rerankd_requests_total", { route = "unmatched", model = "", status = "404" }))
  end)

  it("reads the router's retries, fallbacks and breaker states at each snapshot", function()
    local router = { stats = { m = { attempts = 5, failures = 2, retries = 2, served = 3, fallbacks = 1 } },
                     breakers = { n = {} } }
    function router.breaker_state(_, name) return name == "n" and "open" or "closed" end
    metrics.watch_router(router)
    metrics.publish()
    assert.are.equal(2, metrics.get("rerankd_upstream_retries_total", { model = "m" }))
    assert.are.equal(1, metrics.get("rerankd_fallbacks_total", { model = "m" }))
    assert.are.equal(2, metrics.get("rerankd_breaker_state", { model = "n", worker = 0 }))
    assert.are.equal(0, metrics.get("rerankd_breaker_state", { model = "m", worker = 0 }))
    metrics.watch_router(nil)
  end)

  it("keeps counters across a reload through the worker's published snapshot", function()
    local slots = {}
    local fake = {
      worker_id = function() return 2 end,
      metrics_publish = function(snap) slots[3] = snap end,
      metrics_collect = function()
        local out = {}
        for i = 1, 4 do if slots[i] then out[#out + 1] = slots[i] end end
        return out
      end,
    }
    slots[1] = "W 0\nc rerankd_requests_total 100 route=\"/r\",model=\"m\",status=\"200\""
    metrics.use_daemon(fake)
    finally(function() metrics.use_daemon(nil); metrics.watch_router(nil) end)
    local router = { stats = { m = { attempts = 5 } }, breakers = {} }
    metrics.watch_router(router)
    metrics.inc("rerankd_requests_total", { route = "/r", model = "m", status = "200" }, 7)
    metrics.set("rerankd_in_flight_requests", nil, 3)
    metrics.publish()
    -- a new Lua state: nothing, until restore() reads this worker's (2) slot, not worker 0's
    metrics.reset()
    router.stats.m.attempts = 1
    assert.is_true(metrics.restore())
    assert.are.equal(7, metrics.get("rerankd_requests_total", { route = "/r", model = "m", status = "200" }))
    assert.is_nil(metrics.get("rerankd_in_flight_requests"))
    metrics.publish()
    assert.are.equal(6, metrics.get("rerankd_upstream_attempts_total", { model = "m" }))
    local fams = assert(prom.parse(metrics.collect_render()))
    assert.are.equal(107, prom.value(fams, "rerankd_requests_total", { route = "/r" }))
    assert.are.equal(1, prom.value(fams, "rerankd_workers"))
  end)

  it("rejects bad declarations", function()
    assert.has_error(function() metrics.define("bad name", "counter", "x") end)
    assert.has_error(function() metrics.define("x_count", "counter", "x") end)
    assert.has_error(function() metrics.inc("rerankd_nope_total") end)
  end)
end)

describe("the strict exposition parser", function()
  it("rejects what Prometheus would", function()
    local bad = {
      "x_total 1\n",                                                   -- no TYPE
      "# TYPE x_total counter\nx_total 1",                             -- no final newline
      "# TYPE x_total counter\nx_total{a=\"b} 1\n",                    -- unterminated
      "# TYPE x_total counter\nx_total{a=\"\\x\"} 1\n",                -- bad escape
      "# TYPE x_total counter\nx_total -1\n",                          -- negative counter
      "# TYPE x counter\nx 1\n",                                       -- counter without _total
      "# TYPE x_total counter\nx_total 1\nx_total 2\n",                -- duplicate
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", -- no +Inf
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
      "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",               -- not contiguous
      "# TYPE a gauge\n\na 1\n",                                       -- blank line
      "# TYPE a gauge\na one\n",                                       -- bad value
    }
    for _, t in ipairs(bad) do assert.is_nil((prom.parse(t)), t) end
    assert.truthy(prom.parse("# HELP a A gauge\n# TYPE a gauge\na{x=\"1\",y=\"\\\"\"} +Inf\n"))
  end)
end)
