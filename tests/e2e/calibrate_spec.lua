-- `rerankd calibrate` through the real binary: Platt parameters fitted on a judged set, pasted
-- into a config, give calibrated relevance scores through the daemon; bad arguments exit 2.
local d = require "support.daemon"
local cjson = require "cjson"

local function run(args) return d.cli("calibrate", args) end

-- relevant documents share the query's words; the others do not: a clear positive slope
local SET = table.concat({
  '{"query":"deploy a model","documents":["deploy a model behind an endpoint","bananas are yellow",'
    .. '"model deploy guide","the weather today"],"relevant":{"0":2,"2":1}}',
  '{"query":"add billing balance","documents":["billing: add balance here","a cat sat",'
    .. '"balance of billing accounts","trains run late"],"relevant":{"0":1,"2":1}}',
  '{"query":"gpu training jobs","documents":["gpu jobs for training","soup recipes",'
    .. '"training on a gpu","deploy a model"],"relevant":{"0":1,"2":1}}',
}, "\n") .. "\n"

describe("rerankd calibrate", function()
  local set, cfg
  setup(function()
    set = d.writefile(d.tmpname(".jsonl"), SET)
    cfg = d.writefile(d.tmpname(".yaml"), "server: { auth: none }\nmodels:\n  - { name: bm25, provider: bm25 }\n")
  end)
  teardown(function()
    os.remove(set)
    os.remove(cfg)
  end)

  it("fits a Platt calibration whose block the daemon takes, turning bm25 scores into probabilities", function()
    local rc, out, err = run(("-c %s --data %s --model bm25 --format json"):format(cfg, set))
    assert.equal(0, rc, err)
    local j = cjson.decode(out)
    assert.equal(12, j.pairs)
    assert.equal(6, j.relevant)
    local p = j.score.calibrate.platt
    assert.truthy(p.a > 0, out) -- a higher bm25 score means more likely relevant
    -- the yaml form is a config block as it is
    local yrc, yaml = run(("-c %s --data %s --model bm25"):format(cfg, set))
    assert.equal(0, yrc)
    local block = yaml:match("\n(score: [^\n]+)\n")
    assert.truthy(block, yaml)
    local srv = assert(d.start("server: { auth: none }\nmodels:\n  - name: bm25\n    provider: bm25\n    "
      .. block .. "\n"))
    local status, raw, _, r = d.request(srv, "/v1/rerank", { body = { model = "bm25", query = "deploy a model",
      documents = { "deploy a model behind an endpoint", "bananas are yellow" }, return_score = "all" } })
    d.stop(srv)
    assert.equal(200, status, raw)
    local top, low = r.results[1], r.results[2]
    assert.equal(0, top.index)
    -- calibrated = sigmoid(a * raw + b), strictly inside (0, 1), the raw bm25 score kept apart
    local want = 1 / (1 + math.exp(-(p.a * top.raw_score + p.b)))
    assert.truthy(math.abs(top.relevance_score - want) < 1e-9, raw)
    assert.truthy(low.relevance_score > 0 and low.relevance_score < top.relevance_score, raw)
  end)

  it("refuses what it cannot fit, with exit 2 for usage and 1 for data", function()
    local rc, _, err = run(("-c %s --data %s --model nope"):format(cfg, set))
    assert.equal(2, rc)
    assert.truthy(err:find('"nope" is not a configured model', 1, true), err)
    rc, _, err = run(("-c %s --data %s"):format(cfg, set))
    assert.equal(2, rc)
    assert.truthy(err:find("--model is required", 1, true), err)
    local one = d.writefile(d.tmpname(".jsonl"), '{"query":"x","documents":["x y","z"],"relevant":{"0":1,"1":1}}\n')
    rc, _, err = run(("-c %s --data %s --model bm25"):format(cfg, one))
    os.remove(one)
    assert.equal(1, rc)
    assert.truthy(err:find("needs at least one relevant (1) and one irrelevant (0)", 1, true), err)
  end)
end)
