-- Acceptance (issue 5): the LLM rerankers through the real daemon against the mock chat
-- server, checked independently: the exact LanceDB prompt (computed here, the docs list with
-- Python's own repr), JSON mode, default model and key, id matching, clamping, concurrent
-- batches, the pointwise concurrency bound and failures, RankGPT windows simulated here,
-- templates from a config directory with the instruction, usage sums and cost.
local d = require "support.daemon"
local cjson = require "cjson"
local now = d.now

local rule = require "support.mock_rule"
local share, nwords = rule.share, rule.nwords

local LANCEDB_SYSTEM = table.concat({
  "You are an expert relevance ranker. Given a list of",
  "documents and a query, your job is to determine the relevance",
  "each document is for answering the query. Your output is JSON,",
  "which is a list of documents. Each document has two fields,",
  "content and relevance_score.  relevance_score is from 0.0 to",
  "1.0 indicating the relevance of the text to the given query.",
  "Make sure to include all documents in the response.",
}, string.rep(" ", 24))

-- Python's repr of the docs list, by Python itself
local function py_docs_repr(docs, ids)
  local f = d.writefile(d.tmpname(".json"), cjson.encode(docs))
  local code = ids and "print(repr([{'id': i, 'content': t} for i, t in enumerate(json.load(open(sys.argv[1])))]), end='')"
      or "print(repr(json.load(open(sys.argv[1]))), end='')"
  local out = d.sh(("python3 -c %q %s"):format("import json, sys; " .. code, f))
  os.remove(f)
  return out
end

local QUERY = "red apple pie"
local function make_docs(n)
  local docs = {}
  for i = 0, n - 1 do
    local w = { "doc" .. i }
    if i % 2 == 0 then w[#w + 1] = "red" end
    if i % 3 == 0 then w[#w + 1] = "apple" end
    if i % 7 == 0 then w[#w + 1] = "pie" end
    docs[#docs + 1] = table.concat(w, " ")
  end
  return docs
end

local TEMPLATE = [[
local llm = require "rerank.llm"
return {
  kind = "pointwise",
  request = { temperature = 0 },
  messages = function(query, doc, opts)
    return {
      { role = "system", content = "ACCEPT-TEMPLATE" .. (opts.instruction and ("\n" .. opts.instruction) or "") },
      { role = "user", content = "Query: " .. query .. "\n\nDocument: " .. doc.text },
    }
  end,
  parse = function(text)
    local j = llm.extract_json(text)
    if not j then return nil, "no json" end
    return { score = j.relevance_score, repairs = 0 }
  end,
}
]]

describe("acceptance: LLM rerankers over HTTP", function()
  local mock, srv, tdir
  local function mock_get(path) return cjson.decode(d.sh("curl -s " .. mock.url .. path)) end
  local function reset() d.sh("curl -s -X POST " .. mock.url .. "/_mock/reset") end

  setup(function()
    mock = d.start_mock("mock_openai.py")
    tdir = d.tmpname("_tpl")
    os.execute("mkdir -p " .. tdir)
    d.writefile(tdir .. "/accept_graded.lua", TEMPLATE)
    local u = mock.url
    local cfg = ([[
server: { auth: none }
paths: { templates: [%s] }
default_model: ldb
models:
  - { name: ldb, provider: openai_llm, base_url: "%s" }
  - { name: ldb-exact, provider: openai_llm, base_url: "%s", template: lancedb_exact }
  - { name: ldb-batch, provider: openai_llm, base_url: "%s", model: "slow:300", batch_size: 4,
      price: { per_1m_prompt_tokens: 10, per_1m_completion_tokens: 30 } }
  - { name: ldb-range, provider: openai_llm, base_url: "%s", model: "range+shuffle" }
  - { name: pw, provider: openai_llm, base_url: "%s", mode: pointwise, model: "slow:150", concurrency: 3 }
  - { name: pw-some, provider: openai_llm, base_url: "%s", mode: pointwise, model: "fail-some" }
  - { name: tpl, provider: openai_llm, base_url: "%s", template: accept_graded, instruction: "Model says." }
  - { name: yn, provider: openai_llm, base_url: "%s", template: yes_no, logprobs: true }
  - { name: lw, provider: openai_listwise, base_url: "%s" }
  - { name: lw-messy, provider: openai_listwise, base_url: "%s", model: messy, window: 5, step: 3, candidates: 12 }
  - { name: lw-garbled, provider: openai_listwise, base_url: "%s", model: malformed-some, window: 3, step: 2 }
]]):format(tdir, u, u, u, u, u, u, u, u, u, u, u)
    srv = assert(d.start(cfg, { workers = 1, env = "OPENAI_API_KEY=sk-accept-env" }))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  local function rerank(body)
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body = body, timeout = 30 })
    assert(status == 200, tostring(status) .. " " .. raw)
    return j, h, raw
  end

  it("lancedb: exact prompt, JSON mode, default model, env key, ids matched back", function()
    reset()
    local docs = { "banana bread", "it's a \"red\" apple\npie", "naive pie\tcafe \\ back", "red car", "x" }
    local j = rerank({ model = "ldb", query = QUERY, documents = docs })
    local reqs = mock_get("/_mock/requests")
    assert.are.equal(1, #reqs)
    local b = reqs[1].json
    assert.are.equal("gpt-4-turbo-preview", b.model)
    assert.are.equal(0, b.temperature)
    assert.are.same({ type = "json_object" }, b.response_format)
    assert.are.equal("Bearer sk-accept-env", reqs[1].headers.authorization)
    assert.are.equal(2, #b.messages)
    assert.are.equal(548, #LANCEDB_SYSTEM)
    assert.are.equal(LANCEDB_SYSTEM, b.messages[1].content)
    assert.are.equal("system", b.messages[1].role)
    assert.are.equal("Query: " .. QUERY .. " Docs: " .. py_docs_repr(docs, true), b.messages[2].content)
    for _, r in ipairs(j.results) do
      assert.are.equal(share(QUERY, docs[r.index + 1]), r.relevance_score)
    end
    assert.are.equal(1, j.results[1].index)
  end)

  it("lancedb_exact: LanceDB's bare strings", function()
    reset()
    local docs = { "a 'quoted' doc", "red apple" }
    rerank({ model = "ldb-exact", query = QUERY, documents = docs })
    local b = mock_get("/_mock/requests")[1].json
    assert.are.equal("Query: " .. QUERY .. " Docs: " .. py_docs_repr(docs, false), b.messages[2].content)
  end)

  it("lancedb: out-of-range scores clamped to [0,1], answers in any order matched back", function()
    local docs = { "banana", "red", "red apple", "red apple pie" }
    local j = rerank({ model = "ldb-range", query = QUERY, documents = docs })
    local s = {}
    for _, r in ipairs(j.results) do s[r.index] = r.relevance_score end
    assert.are.same({ [0] = 0, [1] = 1, [2] = 1, [3] = 1 }, s)
    assert.is_true((j.repairs or 0) >= 3)
  end)

  it("lancedb: batches go concurrently; usage is the sum; cost from prices", function()
    reset()
    local docs = make_docs(14)
    local t0 = now()
    local j, h = rerank({ model = "ldb-batch", query = QUERY, documents = docs })
    local dt = now() - t0
    local st = mock_get("/stats")
    assert.are.equal(4, st.requests)
    assert.are.equal(4, st.max_inflight)
    assert.is_true(dt < 0.9, "batches in sequence? " .. dt)
    local reqs = mock_get("/_mock/requests")
    local pt = 0
    for _, rq in ipairs(reqs) do
      for _, m in ipairs(rq.json.messages) do pt = pt + nwords(m.content) end
    end
    assert.are.equal(pt, j.usage.prompt_tokens)
    assert.are.equal(j.usage.prompt_tokens + j.usage.completion_tokens, j.usage.total_tokens)
    local cost = j.usage.prompt_tokens * 10 / 1e6 + j.usage.completion_tokens * 30 / 1e6
    assert.is_true(math.abs(cost - tonumber(h["x-rerankd-cost"])) < 1e-9, h["x-rerankd-cost"])
    -- every document scored by its own rule
    for _, r in ipairs(j.results) do assert.are.equal(share(QUERY, docs[r.index + 1]), r.relevance_score) end
  end)

  it("pointwise: one call per document, never more than `concurrency` in flight", function()
    reset()
    local docs = make_docs(9)
    local t0 = now()
    local j = rerank({ model = "pw", query = QUERY, documents = docs })
    local dt = now() - t0
    local st = mock_get("/stats")
    assert.are.equal(9, st.requests)
    assert.are.equal(3, st.max_inflight)
    assert.is_true(dt >= 0.45 and dt < 1.2, "3 rounds of 150 ms: " .. dt)
    for _, r in ipairs(j.results) do assert.are.equal(share(QUERY, docs[r.index + 1]), r.relevance_score) end
    assert.is_nil(j.degraded)
  end)

  it("pointwise: a failed call gives its document the lowest score and degrades", function()
    local docs = { "red apple pie flaky", "red apple", "banana", "red" }
    local j, h = rerank({ model = "pw-some", query = QUERY, documents = docs, return_score = "all" })
    assert.is_true(j.degraded)
    assert.are.equal("true", h["x-rerankd-degraded"])
    local last = j.results[#j.results]
    local lowest = math.huge
    for _, r in ipairs(j.results) do lowest = math.min(lowest, r.relevance_score) end
    local failed
    for _, r in ipairs(j.results) do if r.index == 0 then failed = r end end
    assert.are.equal(lowest, failed.relevance_score)
    assert.are.same({ 1, 3 }, { j.results[1].index, j.results[2].index })
    assert.truthy(last)
  end)

  it("templates: a file from paths.templates, by name, with the instruction", function()
    reset()
    local docs = { "red", "red apple" }
    local j = rerank({ model = "tpl", query = QUERY, documents = docs })
    assert.are.same({ 1, 0 }, { j.results[1].index, j.results[2].index })
    for _, rq in ipairs(mock_get("/_mock/requests")) do
      assert.are.equal("ACCEPT-TEMPLATE\nModel says.", rq.json.messages[1].content)
    end
    reset()
    rerank({ model = "tpl", query = QUERY, documents = docs, instruction = "Request says." })
    for _, rq in ipairs(mock_get("/_mock/requests")) do
      assert.are.equal("ACCEPT-TEMPLATE\nRequest says.", rq.json.messages[1].content)
    end
  end)

  it("yes/no with logprobs: P(yes)/(P(yes)+P(no))", function()
    local docs = { "banana", "red apple pie", "red" }
    local j = rerank({ model = "yn", query = QUERY, documents = docs })
    for _, r in ipairs(j.results) do
      local p = 0.05 + 0.9 * share(QUERY, docs[r.index + 1])
      assert.is_true(math.abs(r.relevance_score - p) < 1e-6, r.relevance_score .. " vs " .. p)
    end
  end)

  -- RankGPT simulated: windows back to front, the mock's order inside each window
  local function simulate(docs, m, window, step)
    local order = {}
    for i = 1, #docs do order[i] = i end
    local wins = {}
    local last = m
    while true do
      local first = math.max(1, last - window + 1)
      wins[#wins + 1] = { first, last }
      if first == 1 then break end
      last = last - step
    end
    for _, w in ipairs(wins) do
      local slice = {}
      for p = w[1], w[2] do slice[#slice + 1] = order[p] end
      local pos = {}
      for k, x in ipairs(slice) do pos[x] = k end
      table.sort(slice, function(a, b)
        local sa, sb = share(QUERY, docs[a]), share(QUERY, docs[b])
        if sa ~= sb then return sa > sb end
        return pos[a] < pos[b]
      end)
      for k, x in ipairs(slice) do order[w[1] + k - 1] = x end
    end
    return order, wins
  end

  local function check_listwise(model, docs, m, window, step)
    reset()
    local j = rerank({ model = model, query = QUERY, documents = docs })
    local exp, wins = simulate(docs, m, window, step)
    local reqs = mock_get("/_mock/requests")
    assert.are.equal(#wins, #reqs)
    -- the first call is the bottom window
    local n_first = 0
    for _, msg in ipairs(reqs[1].json.messages) do
      if msg.role == "user" and msg.content:match("^%[%d+%] ") then n_first = n_first + 1 end
    end
    assert.are.equal(wins[1][2] - wins[1][1] + 1, n_first)
    local n = #docs
    for r, res in ipairs(j.results) do
      assert.are.equal(exp[r] - 1, res.index, "rank " .. r)
      assert.is_true(math.abs(res.relevance_score - (1 - (r - 1) / n)) < 1e-12)
    end
    assert.are.equal("rank", j.score_kind)
    return j
  end

  it("listwise: defaults window 20, step 10 over 45 documents", function()
    local docs = make_docs(45)
    check_listwise("lw", docs, 45, 20, 10)
    local b = mock_get("/_mock/requests")[1].json
    assert.are.equal("gpt-3.5-turbo", b.model)
  end)

  it("listwise: messy permutations repaired; documents past candidates keep their order", function()
    local docs = make_docs(17)
    local j = check_listwise("lw-messy", docs, 12, 5, 3)
    assert.is_true(j.repairs > 0)
    assert.is_nil(j.degraded)
  end)

  it("listwise: an answer without any permutation keeps the window's order and degrades", function()
    -- windows over 5: [3,5] (has "flaky": the mock answers prose without ids), then [1,3]
    local docs = { "banana", "red", "pie", "red apple pie flaky", "red apple" }
    local j, h = rerank({ model = "lw-garbled", query = QUERY, documents = docs })
    assert.is_true(j.degraded)
    assert.are.equal("true", h["x-rerankd-degraded"])
    assert.is_true(j.repairs >= 3)
    -- [3,5] kept (pie, flaky, red apple); [1,3] = banana, red, pie -> red, pie, banana (share 1/3 ties: order)
    local got = {}
    for i, r in ipairs(j.results) do got[i] = r.index end
    assert.are.same({ 1, 2, 0, 3, 4 }, got)
  end)

  it("a pipeline whose rerank stage is listwise keeps the rank label", function()
    local items = {}
    for i, t in ipairs(make_docs(6)) do items[i] = { id = "d" .. i, score = i / 10, text = t } end
    local j = rerank({ query = QUERY, pipeline = { { fuse = "rrf" }, { rerank = { model = "lw" } } },
      lists = { { name = "v", kind = "distance", items = items } } })
    assert.are.equal("rank", j.score_kind)
  end)
end)
