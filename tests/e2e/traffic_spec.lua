-- End to end over the mock upstream: the gateway-overhead histogram (time in rerankd minus
-- upstream wait), hedged requests, shadow traffic.
local d = require "support.daemon"
local prom = require "support.prom"

local DOCS = { "the cat sat", "a dog barked", "cat and dog" }

local function rerank(srv, body, headers)
  local b = { query = "cat dog", documents = DOCS }
  for k, v in pairs(body) do b[k] = v end
  return d.request(srv, "/v1/rerank", { body = b, headers = headers })
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
    mock = d.start_mock()
    srv = assert(d.start(table.concat({
      'server: { listen: "127.0.0.1:0" }',
      "log: { access: off }",
      "models:",
      "  - { name: bm25, provider: bm25 }",
      ('  - { name: slow, provider: cohere, api_key: test-key, base_url: "%s/fault/slow:300/cohere" }'):format(mock.url),
    }, "\n") .. "\n"))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

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
