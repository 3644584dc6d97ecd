-- `rerankd eval` through the real binary: measures on a hand-computed set, every output
-- format, upstream models over the mock (tokens, cost per 1,000 queries, failures,
-- concurrency), the progress bar only on a terminal, the BEIR converter and the shipped set.
local d = require "support.daemon"
local cjson = require "cjson"

local function run(args) return d.cli("eval", args) end

-- Hand-computed: q1 ranks 0 (grade 2), 2 (grade 1), 1 (0): perfect, nDCG 1, AP 1.
-- q2 ranks b (grade 1) first; "zz" (grade 1) is judged but not a candidate:
-- nDCG = 1 / (1 + 1/log2 3), recall 1/2, AP 1/2, MRR 1.
local SET = table.concat({
  '{"query":"deploy a model","documents":["Deploy a model behind an API endpoint.",'
    .. '"Billing lets you add balance.","A GPU runtime runs training jobs."],"relevant":{"0":2,"2":1}}',
  '{"id":"q2","query":"add balance","documents":[{"id":"a","text":"Deploy a model behind an API endpoint."},'
    .. '{"id":"b","text":"Billing lets you add balance."}],"relevant":{"b":1,"zz":1}}',
}, "\n") .. "\n"

-- a JSON Lines file of n one-judgement queries
local function cat_set(n)
  local qs = {}
  for i = 1, n do
    qs[i] = ('{"query":"cat %d","documents":["cat","dog"],"relevant":{"0":1}}'):format(i)
  end
  return d.writefile(d.tmpname(".jsonl"), table.concat(qs, "\n"))
end

describe("rerankd eval", function()
  local mock, set, cfg
  setup(function()
    mock = d.start_mock()
    set = d.writefile(d.tmpname(".jsonl"), SET)
    cfg = d.writefile(d.tmpname(".yaml"), table.concat({
      "log: { access: off }",
      "models:",
      "  - { name: bm25, provider: bm25 }",
      ('  - { name: co, provider: cohere, api_key: test-key, base_url: "%s/cohere",'):format(mock.url),
      "      price: { per_search_unit: 0.002 } }",
      ('  - { name: broken, provider: cohere, api_key: test-key, base_url: "%s/fault/500/cohere" }'):format(mock.url),
      ('  - { name: slow, provider: cohere, api_key: test-key, base_url: "%s/fault/slow:400/cohere" }'):format(mock.url),
      "pipelines:",
      "  - { name: fused, stages: [ { fuse: rrf }, { rerank: { model: bm25 } } ] }",
    }, "\n") .. "\n")
  end)
  teardown(function() d.stop_mock(mock) end)

  it("computes nDCG, MRR, Recall, MAP as trec_eval does (JSON output)", function()
    local rc, out, err = run(("-c %s --data %s --models bm25 --format json"):format(cfg, set))
    assert.equal(0, rc, err)
    assert.equal("", err) -- no progress bar when stderr is not a terminal
    local j = cjson.decode(out)
    assert.equal(2, j.queries)
    assert.equal(10, j.k)
    local m = j.models[1]
    assert.equal("bm25", m.name)
    local l2_3 = math.log(3) / math.log(2)
    assert.is_true(math.abs(m.ndcg - (1 + 1 / (1 + 1 / l2_3)) / 2) < 1e-12, tostring(m.ndcg))
    assert.equal(1, m.mrr)
    assert.equal(0.75, m.recall)
    assert.equal(0.75, m.map)
    assert.equal(2, m.calls)
    assert.equal(0, m.failures)
    assert.is_true(m.latency_ms.p50 >= 0 and m.latency_ms.p95 >= m.latency_ms.p50)
    -- k = 1: q2's second relevant document cannot count; gain exp changes q1's grade-2 gain
    rc, out = run(("-c %s --data %s --models bm25 --format json --k 1 --gain exp"):format(cfg, set))
    assert.equal(0, rc)
    m = cjson.decode(out).models[1]
    assert.equal(0.5, m.recall) -- q1: 1 of 2, q2: 1 of 2
    assert.is_true(math.abs(m.ndcg - (3 / 3 + 1 / 1) / 2) < 1e-12, tostring(m.ndcg))
  end)

  it("upstream models: tokens and cost per 1,000 queries, failures, wins, table and csv", function()
    local rc, out, err = run(("-c %s --data %s --models bm25,co,broken,fused --format json"):format(cfg, set))
    assert.equal(0, rc, err)
    local by = {}
    for _, m in ipairs(cjson.decode(out).models) do by[m.name] = m end
    -- one search unit per query at 0.002 USD: 2 USD per 1,000 queries
    assert.is_true(math.abs(by.co.cost_per_1k_queries_usd - 2) < 1e-9, tostring(by.co.cost_per_1k_queries_usd))
    assert.is_true(by.co.tokens_per_1k_queries > 0)
    assert.equal(2, by.broken.failures)
    assert.equal(0, by.broken.ndcg)
    assert.truthy(by.broken.first_error:find("500"))
    assert.truthy(err:find("broken: 2 of 2 calls failed", 1, true), err)
    assert.equal(1, by.bm25.wins.broken) -- every judged query beats a model that failed
    assert.equal(0, by.broken.wins.bm25)
    assert.equal(by.bm25.ndcg, by.fused.ndcg) -- rrf over one list, then bm25: the same order
    rc, out = run(("-c %s --data %s --models bm25,broken"):format(cfg, set))
    assert.equal(0, rc)
    assert.truthy(out:find("nDCG@10", 1, true))
    assert.truthy(out:match("\nbm25 +0%.8066 +1%.0000 +0%.7500 +0%.7500"), out)
    assert.truthy(out:find("share of queries where the row's nDCG@10 beats the column's", 1, true))
    rc, out = run(("-c %s --data %s --models bm25,broken --format csv"):format(cfg, set))
    assert.equal(0, rc)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(3, #lines)
    assert.truthy(lines[1]:find("^model,ndcg@10,mrr@10,recall@10,map,p50_ms,p95_ms,"))
    assert.truthy(lines[3]:find("^broken,0,0,0,0,,,,,2,2,0,$"), lines[3])
  end)

  it("--concurrency runs calls in parallel", function()
    local f = cat_set(6)
    local t0 = d.now()
    local rc, out = run(("-c %s --data %s --models slow --format json --concurrency 1"):format(cfg, f))
    local serial = d.now() - t0
    assert.equal(0, rc)
    assert.equal(0, cjson.decode(out).models[1].failures)
    t0 = d.now()
    rc, out = run(("-c %s --data %s --models slow --format json --concurrency 6"):format(cfg, f))
    local parallel = d.now() - t0
    assert.equal(0, rc)
    local m = cjson.decode(out).models[1]
    assert.equal(0, m.failures)
    assert.equal(1, m.ndcg)
    assert.is_true(serial >= 6 * 0.4, tostring(serial))
    assert.is_true(parallel < serial / 2, ("serial %.2fs, parallel %.2fs"):format(serial, parallel))
  end)

  it("--concurrency: each call's latency is its own, not its slower round-mate's", function()
    local f = cat_set(4)
    -- co (answers at once) and slow (400 ms) share every round of two calls
    local rc, out, err = run(("-c %s --data %s --models co,slow --format json --concurrency 2"):format(cfg, f))
    assert.equal(0, rc, err)
    local by = {}
    for _, m in ipairs(cjson.decode(out).models) do by[m.name] = m end
    assert.equal(0, by.co.failures + by.slow.failures)
    assert.is_true(by.slow.latency_ms.p50 >= 400, tostring(by.slow.latency_ms.p50))
    assert.is_true(by.co.latency_ms.p95 < 200, tostring(by.co.latency_ms.p95))
  end)

  it("shows a progress bar on a terminal only", function()
    local log = d.tmpname(".tty")
    d.sh(("cd %s && script -qec '%s eval -c %s --data %s --models bm25 >/dev/null' %s >/dev/null 2>&1"):format(
      d.root, d.bin, cfg, set, log))
    local tty = d.readfile(log) or ""
    assert.truthy(tty:find("2/2 queries (2/2 calls)", 1, true), tty)
    assert.truthy(tty:find("ETA", 1, true), tty)
  end)

  it("refuses bad arguments and data with clear errors", function()
    local rc, _, err = run(("-c %s --data %s --models bm25,nope"):format(cfg, set))
    assert.equal(2, rc)
    assert.truthy(err:find('unknown model or pipeline "nope"', 1, true), err)
    rc, _, err = run("--k 3")
    assert.equal(2, rc)
    assert.truthy(err:find("--data is required", 1, true))
    local bad = d.writefile(d.tmpname(".jsonl"), '{"query":"q","documents":["a"],"relevant":{"0":-1}}\n')
    rc, _, err = run(("-c %s --data %s"):format(cfg, bad))
    assert.equal(1, rc)
    assert.truthy(err:find(bad .. ":1: relevant", 1, true), err)
    rc, _, err = run(("-c %s --data /nonexistent.jsonl"):format(cfg))
    assert.equal(1, rc)
    assert.truthy(err:find("/nonexistent.jsonl"))
    rc = run("--help")
    assert.equal(0, rc)
  end)

  it("converts the shipped BEIR set to JSON Lines and evaluates it with the same numbers", function()
    local conv = d.tmpname(".jsonl")
    local rc, _, err = run(("--data examples/eval/beir --candidates all --write-jsonl %s"):format(conv))
    assert.equal(0, rc, err)
    assert.truthy(err:find("wrote 34 queries", 1, true))
    local n = 0
    for _ in (d.readfile(conv) or ""):gmatch("[^\n]+") do n = n + 1 end
    assert.equal(34, n)
    local _, a = run(("-c examples/eval/config.yaml --data examples/eval/beir --candidates all --models bm25 --format json"))
    local _, b = run(("-c examples/eval/config.yaml --data %s --models bm25 --format json"):format(conv))
    local ma, mb = cjson.decode(a).models[1], cjson.decode(b).models[1]
    assert.equal(34, cjson.decode(a).judged)
    assert.same({ ma.ndcg, ma.mrr, ma.recall, ma.map }, { mb.ndcg, mb.mrr, mb.recall, mb.map })
    assert.is_true(ma.ndcg > 0.3 and ma.ndcg < 1)
  end)

  it("examples/eval/run.sh (the README's output) runs bm25 and the fusion pipelines", function()
    local out = d.sh(("cd %s && RERANKD_HOME=%s sh examples/eval/run.sh 2>&1; echo rc=$?"):format(d.root, d.root))
    assert.truthy(out:find("rc=0", 1, true), out)
    assert.truthy(out:find("examples/eval/beir: 34 queries (34 judged)", 1, true), out)
    assert.truthy(out:match("\nhybrid +0%.%d+"), out)
    assert.truthy(out:match("\nhybrid%-bm25 +0%.%d+"), out)
  end)
end)
