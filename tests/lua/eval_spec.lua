-- rerankd eval's measures (lua/rerank/eval/measures.lua) against hand-computed values and a
-- published example, and the data loaders (lua/rerank/eval/data.lua).
local measures = require "rerank.eval.measures"
local data = require "rerank.eval.data"
local cli = require "rerank.eval.cli"

local EPS = 1e-12
local function near(want, got) assert(math.abs(want - got) < EPS, ("want %.15g, got %.15g"):format(want, got)) end
local L2 = function(x) return math.log(x) / math.log(2) end

describe("eval measures", function()
  it("nDCG: Wikipedia's worked example (gain = grade, ideal over every judged document)", function()
    -- https://en.wikipedia.org/wiki/Discounted_cumulative_gain#Example: ranked grades
    -- 3,2,3,0,1,2 (DCG6 = 6.861); two more judged documents (grades 3 and 2) were not
    -- retrieved, so the ideal order is 3,3,3,2,2,2 (IDCG6 = 8.740) and nDCG6 = 0.785
    local ranking = { "d1", "d2", "d3", "d4", "d5", "d6" }
    local qrels = { d1 = 3, d2 = 2, d3 = 3, d4 = 0, d5 = 1, d6 = 2, d7 = 3, d8 = 2 }
    assert.is_true(math.abs(measures.dcg({ 3, 2, 3, 0, 1, 2 }, 6) - 6.861) < 5e-4)
    assert.is_true(math.abs(measures.dcg({ 3, 3, 3, 2, 2, 2 }, 6) - 8.740) < 5e-4)
    local v = measures.ndcg(ranking, qrels, 6)
    assert.is_true(math.abs(v - 0.785) < 5e-4)
    local dcg = 3 + 2 / L2(3) + 3 / 2 + 0 + 1 / L2(6) + 2 / L2(7)
    local idcg = 3 + 3 / L2(3) + 3 / 2 + 2 / L2(5) + 2 / L2(6) + 2 / L2(7)
    near(dcg / idcg, v)
  end)

  it("nDCG with exponential gain (2^grade - 1) and a cutoff", function()
    local ranking = { "a", "b", "c", "d" }
    local qrels = { a = 0, b = 2, c = 1, e = 3 }
    -- top 3: gains 0, 3, 1 at ranks 1..3; ideal: 7 (e), 3 (b), 1 (c)
    near((3 / L2(3) + 1 / 2) / (7 + 3 / L2(3) + 1 / 2), measures.ndcg(ranking, qrels, 3, "exp"))
    near((2 / L2(3) + 1 / 2) / (3 + 2 / L2(3) + 1 / 2), measures.ndcg(ranking, qrels, 3))
    -- k = 1: nothing relevant at rank 1
    near(0, measures.ndcg(ranking, qrels, 1))
  end)

  it("MRR@k, Recall@k, AP (trec_eval: relevant = grade >= 1; unretrieved relevant count)", function()
    local ranking = { "x", "r1", "y", "r2", "z" }
    local qrels = { r1 = 1, r2 = 2, r3 = 1, x = 0 }
    near(1 / 2, measures.mrr(ranking, qrels, 10))
    near(0, measures.mrr(ranking, qrels, 1))
    near(1 / 3, measures.recall(ranking, qrels, 2))
    near(2 / 3, measures.recall(ranking, qrels, 10))
    -- AP = (1/2 + 2/4) / 3 relevant
    near((1 / 2 + 2 / 4) / 3, measures.ap(ranking, qrels))
    -- perfect ranking
    near(1, measures.ap({ "r1", "r2", "r3" }, qrels))
    near(1, measures.ndcg({ "r2", "r1", "r3" }, qrels, 10))
  end)

  it("a query without relevant documents has no value (left out of the means)", function()
    assert.is_nil(measures.ndcg({ "a" }, { a = 0 }, 10))
    assert.is_nil(measures.mrr({ "a" }, {}, 10))
    assert.is_nil(measures.recall({ "a" }, { a = 0 }, 10))
    assert.is_nil(measures.ap({ "a" }, {}))
  end)

  it("nearest-rank percentiles", function()
    local v = {}
    for i = 1, 20 do v[i] = 21 - i end
    assert.equal(10, measures.percentile(v, 50))
    assert.equal(19, measures.percentile(v, 95))
    assert.equal(20, measures.percentile(v, 100))
    assert.is_nil(measures.percentile({}, 50))
  end)
end)

describe("eval data", function()
  local tmp = os.getenv("PWD") .. "/tests/tmp/eval_spec_" .. tostring(os.time()) .. math.random(1e6)
  local function write(path, s)
    os.execute("mkdir -p $(dirname " .. path .. ")")
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
    return path
  end
  teardown(function() os.execute("rm -rf " .. tmp) end)

  it("JSON Lines: keys name a document by id first, else by 0-based index", function()
    local p = write(tmp .. "/a.jsonl", table.concat({
      '{"query":"q","documents":["a","b","c"],"relevant":{"2":3,"0":1}}',
      '',
      '{"id":"x","query":"q2","documents":[{"id":"d1","text":"t"},{"id":"0","text":"u"}],"relevant":{"0":2,"d1":1,"gone":1}}',
    }, "\n"))
    local qs = assert(data.load(p))
    assert.equal(2, #qs)
    assert.same({ [3] = 3, [1] = 1 }, qs[1].qrels)
    assert.equal("1", qs[1].id)
    assert.same({ [2] = 2, [1] = 1, ["?gone"] = 1 }, qs[2].qrels)
  end)

  it("JSON Lines errors name the line", function()
    local cases = {
      { '{"query":"q","documents":["a"],"relevant":{"0":1.5}}', ':1: relevant%["0"%] must be an integer grade >= 0' },
      { '\n{"query":"","documents":["a"],"relevant":{}}', ":2: query must be a non%-empty string" },
      { '{"query":"q","documents":[],"relevant":{}}', ":1: documents must be a non%-empty array" },
      { '{"query":"q","documents":["a"]}', ":1: relevant must be an object of grades" },
      { '{"query":"q",', ":1: " },
      { '{"query":"q","documents":[{"id":"a","text":"x"},{"id":"a","text":"y"}],"relevant":{}}', 'duplicate document id "a"' },
    }
    for i, c in ipairs(cases) do
      local qs, err = data.load(write(("%s/bad%d.jsonl"):format(tmp, i), c[1]))
      assert.is_nil(qs)
      assert.truthy(err:find(c[2]), err)
    end
  end)

  it("BEIR: judged candidates, a TREC run file, or the whole corpus; converts to JSON Lines", function()
    local dir = tmp .. "/beir"
    write(dir .. "/corpus.jsonl", '{"_id":"d1","title":"T1","text":"one"}\n{"_id":"d2","title":"","text":"two"}\n'
      .. '{"_id":"d3","text":"three"}\n')
    write(dir .. "/queries.jsonl", '{"_id":"q1","text":"first"}\n{"_id":"q2","text":"second"}\n')
    write(dir .. "/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td2\t2\nq1\td1\t0\nq2\td3\t1\n")
    write(tmp .. "/run.trec", "q1 Q0 d3 2 0.5 r\nq1 Q0 d1 1 0.9 r\n")
    local qs = assert(data.load(dir))
    assert.equal(2, #qs)
    assert.same({ { id = "d2", text = "two" }, { id = "d1", text = "one", title = "T1" } }, qs[1].documents)
    assert.same({ [1] = 2, [2] = 0 }, qs[1].qrels)
    local run = assert(data.load(dir, { candidates = tmp .. "/run.trec" }))
    assert.equal(1, #run) -- q2 has no candidates in the run
    assert.same({ "d1", "d3" }, { run[1].documents[1].id, run[1].documents[2].id })
    assert.same({ [1] = 0, ["?d2"] = 2 }, run[1].qrels)
    local all = assert(data.load(dir, { candidates = "all" }))
    assert.equal(3, #all[2].documents)
    -- the converter's output loads back to the same set
    local back = assert(data.load(write(tmp .. "/conv.jsonl", data.to_jsonl(qs))))
    assert.same(qs[1].qrels, back[1].qrels)
    assert.same(qs[1].documents, back[1].documents)
    assert.equal('{"id":"q2","query":"second","documents":[{"id":"d3","text":"three"}],"relevant":{"d3":1}}',
      data.to_jsonl(qs):match("\n(.-)\n$"))
    local _, err = data.load(dir, { split = "dev" })
    assert.truthy(err:find("dev.tsv"))
  end)
end)

describe("eval cli", function()
  it("parses options and refuses bad ones", function()
    local o = assert(cli.parse_args({ "-c", "x.yaml", "--data=d", "--k", "5", "--format", "csv", "--concurrency=3" }))
    assert.same({ "x.yaml", "d", 5, "csv", 3 }, { o.config, o.data, o.k, o.format, o.concurrency })
    assert.same({ nil, "--data is required" }, { cli.parse_args({}) })
    assert.same({ nil, "--k must be a positive integer" }, { cli.parse_args({ "--data", "d", "--k", "0" }) })
    assert.same({ nil, "--format must be table, json or csv" }, { cli.parse_args({ "--data", "d", "--format", "xml" }) })
    assert.same({ nil, 'unknown option "--nope"' }, { cli.parse_args({ "--nope" }) })
    assert.same({ nil, "help" }, { cli.parse_args({ "--data", "d", "-h" }) })
  end)

  it("summarise: means over judged queries, a failed call scores 0, pairwise wins", function()
    local queries = {
      { qrels = { [1] = 1 } }, { qrels = { [2] = 2 } }, { qrels = { [1] = 0 } },
    }
    local stats = {
      { name = "a", lat = { 1, 3 }, tokens = 10, cost = 0.002, ok = 2, failures = 1,
        per_query = { { 1, 2 }, false, { 1 } } },
      { name = "b", lat = { 2, 2, 2 }, tokens = 0, cost = 0, ok = 3, failures = 0,
        per_query = { { 2, 1 }, { 2, 1 }, { 1 } } },
    }
    local s = cli.summarise(queries, stats, { k = 10, gain = "linear" })
    assert.equal(2, s.judged)
    assert.equal(1, s.unjudged)
    near(0.5, stats[1].ndcg)                      -- (1 + 0) / 2
    near((1 / L2(3) + 1) / 2, stats[2].ndcg)
    near(0.5, stats[1].wins.b)                    -- query 1: a 1.0 > b 0.63
    near(0.5, stats[2].wins.a)                    -- query 2: b 1.0 > a (failed) 0
    near(5000, stats[1].tokens_per_1k)
    near(1, stats[1].cost_per_1k)
    assert.equal(1, stats[1].p50)
    assert.equal(3, stats[1].p95)
  end)
end)
