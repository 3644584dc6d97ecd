-- End to end: the LLM rerankers (providers/openai_llm.lua, providers/openai_listwise.lua)
-- in the real daemon against the mock OpenAI-compatible chat server
-- (tests/mock/mock_openai.py), which scores by keyword overlap and misbehaves on demand
-- (fault tokens in the upstream model name). Also the library (plain LuaJIT, libcurl
-- transport) for what the HTTP shape does not show (repairs, score_kind).
local d = require "support.daemon"
local cjson = require "cjson"
local now, requests = d.now, d.mock_requests

local function stats(mock) return cjson.decode(d.sh("curl -s " .. mock.url .. "/stats")) end
local function reset(mock) d.sh("curl -s -X POST " .. mock.url .. "/stats/reset") end

-- the mock's rule, the query and generated documents (tests/support/mock_rule.lua)
local rule = require "support.mock_rule"
local share, nwords, QUERY = rule.share, rule.nwords, rule.QUERY
local function make_docs(n) return rule.make_docs(n, 5, "filler text") end

-- indices (0-based) by share desc, index asc
local function expected_order(q, docs)
  local idx = {}
  for i = 1, #docs do idx[i] = i end
  table.sort(idx, function(a, b)
    local sa, sb = share(q, docs[a]), share(q, docs[b])
    if sa ~= sb then return sa > sb end
    return a < b
  end)
  for i, x in ipairs(idx) do idx[i] = x - 1 end
  return idx
end

local function order_of(j)
  local out = {}
  for i, r in ipairs(j.results) do out[i] = r.index end
  return out
end

local SMALL = { "banana bread", "apple pie recipe", "red apple pie with cream", "red car", "pie" }

local function yaml(mock)
  local lines = {}
  local function add(t)
    t.base_url = t.base_url or mock.url
    if t.api_key == nil then t.api_key = "test-key" end
    lines[#lines + 1] = "  - " .. cjson.encode(t)
  end
  add({ name = "ldb", provider = "openai_llm" })
  add({ name = "ldb-batch", provider = "openai_llm", model = "slow:100", batch_size = 10, concurrency = 3 })
  add({ name = "ldb-noids", provider = "openai_llm", model = "noids+shuffle" })
  add({ name = "ldb-messy", provider = "openai_llm", model = "messy" })
  add({ name = "ldb-exact", provider = "openai_llm", template = "lancedb_exact" })
  add({ name = "ldb-priced", provider = "openai_llm",
        price = { per_1k_prompt_tokens = 0.01, per_1k_completion_tokens = 0.03 } })
  add({ name = "pw", provider = "openai_llm", mode = "pointwise", model = "slow:50", concurrency = 4 })
  add({ name = "pw8", provider = "openai_llm", mode = "pointwise", model = "slow:50" })
  add({ name = "pw-prose", provider = "openai_llm", mode = "pointwise", model = "prose" })
  add({ name = "pw-strings", provider = "openai_llm", mode = "pointwise", model = "strings" })
  add({ name = "pw-some", provider = "openai_llm", mode = "pointwise", model = "fail-some" })
  add({ name = "pw-garbled", provider = "openai_llm", mode = "pointwise", model = "malformed-some" })
  add({ name = "pw-429", provider = "openai_llm", mode = "pointwise", model = "429" })
  add({ name = "pw-timeout", provider = "openai_llm", mode = "pointwise", model = "slow:3000", timeout = "300ms" })
  add({ name = "pw-flaky", provider = "openai_llm", mode = "pointwise", model = "flaky:1", call_retries = 1,
        concurrency = 1 })
  add({ name = "pw-instr", provider = "openai_llm", mode = "pointwise", instruction = "Model instruction." })
  add({ name = "yn", provider = "openai_llm", template = "yes_no" })
  add({ name = "yn-nolp", provider = "openai_llm", template = "yes_no", model = "nologprobs" })
  add({ name = "lw", provider = "openai_listwise", window = 10, step = 5 })
  add({ name = "lw-messy", provider = "openai_listwise", model = "messy", window = 4, step = 2 })
  add({ name = "lw-prose", provider = "openai_listwise", model = "prose" })
  add({ name = "lw-fail", provider = "openai_listwise", model = "500" })
  add({ name = "badkey", provider = "openai_llm", api_key = "wrong-key" })
  return "server: { auth: none, timeout: 20s }\nmodels:\n" .. table.concat(lines, "\n") .. "\n"
end

describe("LLM rerankers over HTTP (mock OpenAI chat)", function()
  local mock, srv
  setup(function()
    mock = d.start_mock("mock_openai.py", "--key test-key")
    srv = assert(d.start(yaml(mock), { workers = 1 }))
  end)
  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  local function rerank(model, docs, extra)
    local body = { model = model, query = QUERY, documents = docs }
    for k, v in pairs(extra or {}) do body[k] = v end
    local status, raw, h, j = d.request(srv, "/v1/rerank", { body = body, timeout = 30 })
    return status, j, raw, h
  end

  describe("lancedb mode", function()
    it("ranks by the model's scores, LanceDB's prompt, JSON mode, default model and key", function()
      reset(mock)
      local status, j, raw = rerank("ldb", SMALL)
      assert.are.equal(200, status, raw)
      assert.are.same(expected_order(QUERY, SMALL), order_of(j))
      assert.are.equal(1, j.results[1].relevance_score)
      assert.is_nil(j.degraded)
      local reqs = requests(mock)
      assert.are.equal(1, #reqs)
      local b = reqs[1].json
      assert.are.equal("gpt-4-turbo-preview", b.model)
      assert.are.same({ type = "json_object" }, b.response_format)
      assert.are.equal(0, b.temperature)
      assert.are.equal("Bearer test-key", reqs[1].headers.authorization)
      assert.truthy(b.messages[1].content:find("^You are an expert relevance ranker%. Given a list of" .. (" "):rep(24)))
      assert.are.equal(548, #b.messages[1].content)
      assert.are.equal("Query: red apple pie Docs: [{'id': 0, 'content': 'banana bread'}, {'id': 1, 'content': "
        .. "'apple pie recipe'}, {'id': 2, 'content': 'red apple pie with cream'}, {'id': 3, 'content': 'red car'}, "
        .. "{'id': 4, 'content': 'pie'}]", b.messages[2].content)
    end)

    it("usage sums every call; total = prompt + completion", function()
      reset(mock)
      local _, j = rerank("ldb-batch", make_docs(25))
      local reqs = requests(mock)
      assert.are.equal(3, #reqs)
      assert.is_true(j.usage.total_tokens > j.usage.prompt_tokens)
      -- the mock counts words: the three prompts' words
      local pt = 0
      for _, r in ipairs(reqs) do
        for _, m in ipairs(r.json.messages) do
          for _ in m.content:lower():gmatch("[%w_]+") do pt = pt + 1 end
        end
      end
      assert.are.equal(pt, j.usage.prompt_tokens)
    end)

    it("splits 45 documents into batches of 10, at most 3 in flight, in one round", function()
      reset(mock)
      local docs = make_docs(45)
      local t0 = now()
      local status, j = rerank("ldb-batch", docs)
      local dt = now() - t0
      assert.are.equal(200, status)
      assert.are.same(expected_order(QUERY, docs), order_of(j))
      local s = stats(mock)
      assert.are.equal(5, s.requests)
      assert.are.equal(3, s.max_inflight)
      assert.is_true(dt >= 0.2 and dt < 2, "wall " .. dt) -- two waves of 100 ms
    end)

    it("matches LanceDB-style answers (no ids, any order) by content", function()
      local status, j = rerank("ldb-noids", SMALL)
      assert.are.equal(200, status)
      assert.are.same(expected_order(QUERY, SMALL), order_of(j))
      assert.is_nil(j.degraded)
    end)

    it("lancedb_exact sends LanceDB's exact user message", function()
      reset(mock)
      local status, j = rerank("ldb-exact", { "it's red", 'a "pie"' })
      assert.are.equal(200, status)
      assert.are.same({ 0, 1 }, order_of(j))
      assert.are.equal([=[Query: red apple pie Docs: ["it's red", 'a "pie"']]=], requests(mock)[1].json.messages[2].content)
    end)

    it("repairs a messy answer (missing, duplicate, unknown items) without failing", function()
      local status, j, raw = rerank("ldb-messy", SMALL)
      assert.are.equal(200, status, raw)
      assert.are.equal(5, #j.results)
      -- the last document went missing: score 0, ranked by index among the zeros
      local last
      for _, r in ipairs(j.results) do if r.index == 4 then last = r end end
      assert.are.equal(0, last.relevance_score)
      assert.are.equal(2, j.results[1].index)
    end)

    it("prices the upstream's real tokens (x-rerankd-cost)", function()
      local status, j, raw, h = rerank("ldb-priced", SMALL)
      assert.are.equal(200, status, raw)
      local pt, ct = j.usage.prompt_tokens, j.usage.total_tokens - j.usage.prompt_tokens
      assert.is_true(ct > 0)
      local want = (pt * 0.01 + ct * 0.03) / 1000
      assert.is_true(math.abs(tonumber(h["x-rerankd-cost"]) - want) < 1e-9, h["x-rerankd-cost"] .. " vs " .. want)
    end)

    it("a wrong key: 502 naming the upstream's 401, never the key", function()
      local status, j, raw = rerank("badkey", SMALL)
      assert.are.equal(502, status, raw)
      assert.truthy(j.error.message:find("HTTP 401", 1, true))
      assert.falsy(raw:find("wrong-key", 1, true))
    end)
  end)

  describe("pointwise mode", function()
    it("one call per document, at most `concurrency` (4) in flight, order by score", function()
      reset(mock)
      local docs = make_docs(20)
      local t0 = now()
      local status, j = rerank("pw", docs)
      local dt = now() - t0
      assert.are.equal(200, status)
      assert.are.same(expected_order(QUERY, docs), order_of(j))
      local s = stats(mock)
      assert.are.equal(20, s.requests)
      assert.are.equal(4, s.max_inflight)
      assert.is_true(dt >= 0.25, "5 waves of 50 ms took " .. dt)
    end)

    it("the default bound is 8; fewer documents never exceed their count", function()
      reset(mock)
      rerank("pw8", make_docs(24))
      assert.are.equal(8, stats(mock).max_inflight)
      reset(mock)
      rerank("pw8", make_docs(3))
      assert.is_true(stats(mock).max_inflight <= 3)
    end)

    it("JSON in prose and scores as strings still rank correctly", function()
      for _, m in ipairs({ "pw-prose", "pw-strings" }) do
        local status, j = rerank(m, SMALL)
        assert.are.equal(200, status, m)
        assert.are.same(expected_order(QUERY, SMALL), order_of(j), m)
        assert.is_nil(j.degraded, m)
      end
    end)

    it("failed calls: those documents score 0, the response is degraded, the rest ranked", function()
      local docs = { "red apple pie flaky", "apple pie", "red", "flaky apple", "nothing" }
      local status, j, raw, h = rerank("pw-some", docs)
      assert.are.equal(200, status, raw)
      assert.is_true(j.degraded)
      assert.are.equal("true", h["x-rerankd-degraded"])
      assert.are.same({ 1, 2, 0, 3, 4 }, order_of(j))
      assert.are.equal(0, j.results[3].relevance_score)
    end)

    it("malformed answers: repaired to 0, degraded, not fatal", function()
      local docs = { "red apple pie flaky", "apple pie", "red" }
      local status, j = rerank("pw-garbled", docs)
      assert.are.equal(200, status)
      assert.is_true(j.degraded)
      assert.are.same({ 1, 2, 0 }, order_of(j))
    end)

    it("every call rejected (429): the request fails naming the upstream's 429", function()
      local status, j = rerank("pw-429", SMALL)
      assert.truthy(status == 429 or status == 502, status) -- the router passes 429 through
      assert.truthy(j.error.message:find("HTTP 429", 1, true))
    end)

    it("every call timing out: 504", function()
      local status, j = rerank("pw-timeout", { "a", "b" })
      assert.are.equal(504, status)
      assert.truthy(j.error.message:find("timed out", 1, true))
    end)

    it("call_retries re-sends a call that failed with 503", function()
      reset(mock)
      local status, j = rerank("pw-flaky", SMALL)
      assert.are.equal(200, status)
      assert.is_nil(j.degraded)
      assert.are.same(expected_order(QUERY, SMALL), order_of(j))
      assert.are.equal(6, stats(mock).requests)
    end)

    it("instruction: the request's replaces the model's in the prompt", function()
      reset(mock)
      rerank("pw-instr", { "a" })
      assert.truthy(requests(mock)[1].json.messages[1].content:find("\nModel instruction.$"))
      reset(mock)
      local status = rerank("pw-instr", { "a" }, { instruction = "Request instruction." })
      assert.are.equal(200, status)
      local sys = requests(mock)[1].json.messages[1].content
      assert.truthy(sys:find("\nRequest instruction.$"))
      assert.falsy(sys:find("Model instruction", 1, true))
      local st, j = rerank("pw-instr", { "a" }, { instruction = 5 })
      assert.are.equal(400, st)
      assert.are.equal("instruction", j.error.param)
    end)

    it("yes/no with logprobs: P(yes) orders the documents", function()
      reset(mock)
      local status, j = rerank("yn", SMALL)
      assert.are.equal(200, status)
      assert.are.same(expected_order(QUERY, SMALL), order_of(j))
      assert.are.equal(0.95, j.results[1].relevance_score)
      local b = requests(mock)[1].json
      assert.is_true(b.logprobs)
      assert.are.equal(1, b.max_tokens)
    end)

    it("yes/no without logprobs: 1 for yes, 0 for no", function()
      local status, j = rerank("yn-nolp", SMALL)
      assert.are.equal(200, status)
      assert.are.same({ 1, 2 }, { j.results[1].index, j.results[2].index }) -- both "yes": ties by index
      assert.are.equal(1, j.results[1].relevance_score)
      assert.are.equal(1, j.results[2].relevance_score)
      assert.are.equal(0, j.results[3].relevance_score)
    end)
  end)

  describe("listwise (RankGPT)", function()
    it("sliding windows back to front, one call at a time; rank-derived scores", function()
      reset(mock)
      local docs = make_docs(30)
      local status, j, raw = rerank("lw", docs)
      assert.are.equal(200, status, raw)
      local s = stats(mock)
      assert.are.equal(5, s.requests) -- [21,30] [16,25] [11,20] [6,15] [1,10]
      assert.are.equal(1, s.max_inflight)
      -- window - step = 5: the top 5 are the true top 5, in order
      local want = expected_order(QUERY, docs)
      for k = 1, 5 do assert.are.equal(want[k], j.results[k].index) end
      for k, r in ipairs(j.results) do assert.is_true(math.abs(1 - (k - 1) / 30 - r.relevance_score) < 1e-12) end
      local reqs = requests(mock)
      local first = reqs[1].json
      assert.are.equal("gpt-3.5-turbo", first.model)
      assert.are.equal("You are RankGPT, an intelligent assistant that can rank passages based on their "
        .. "relevancy to the query.", first.messages[1].content)
      assert.are.equal("[1] " .. docs[21], first.messages[4].content)
      assert.are.equal(3 + 2 * 10 + 1, #first.messages)
    end)

    it("repairs messy permutations (duplicates, out of range, missing)", function()
      local status, j, raw = rerank("lw-messy", SMALL)
      assert.are.equal(200, status, raw)
      assert.are.equal(5, #j.results)
      assert.is_nil(j.degraded)
      local seen = {}
      for _, r in ipairs(j.results) do seen[r.index] = true end
      for i = 0, 4 do assert.is_true(seen[i]) end
    end)

    it("a permutation in prose", function()
      local status, j = rerank("lw-prose", SMALL)
      assert.are.equal(200, status)
      assert.are.same(expected_order(QUERY, SMALL), order_of(j))
    end)

    it("every window failing: 502", function()
      local status, j = rerank("lw-fail", SMALL)
      assert.are.equal(502, status)
      assert.truthy(j.error.message:find("HTTP 500", 1, true))
    end)
  end)

  describe("the library (plain LuaJIT, libcurl)", function()
    it("reports repairs and score_kind", function()
      local lib = require "rerank"
      local r = assert(lib.new({ models = {
        { name = "messy", provider = "openai_llm", base_url = mock.url, api_key = "test-key", model = "messy" },
        { name = "lw", provider = "openai_listwise", base_url = mock.url, api_key = "test-key" },
      } }, { dir = d.root }))
      local res = assert(r:rerank({ model = "messy", query = QUERY, documents = SMALL }))
      assert.are.equal(3, res.repairs) -- the missing document, the duplicate, the unknown item
      assert.are.equal("relevance", res.score_kind)
      assert.is_true(res.usage.completion_tokens > 0)
      res = assert(r:rerank({ model = "lw", query = QUERY, documents = SMALL }))
      assert.are.equal("rank", res.score_kind)
      assert.are.equal(0, res.repairs)
      assert.are.equal(1, res.results[1].relevance_score)
    end)
  end)

  describe("configuration", function()
    it("rerankd -t names an unknown template with file:line:col and a suggestion", function()
      local f = d.writefile(d.tmpname(".yaml"), "models:\n  - name: x\n    provider: openai_llm\n    template: rankgtp\n")
      local out = d.sh(("%s/rerankd -t -c %s 2>&1"):format(d.root, f))
      assert.truthy(out:find(':4:15: models[0].template: unknown template "rankgtp" (did you mean "rankgpt"?)', 1, true), out)
    end)
  end)
end)

-- Checked independently of the providers (issue 5): the exact LanceDB prompt (computed here,
-- the docs list with Python's own repr), JSON mode, default model and key, id matching,
-- clamping, concurrent batches, the pointwise concurrency bound and failures, RankGPT windows
-- simulated here, templates from a config directory with the instruction, usage sums and cost.
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

local TEMPLATE = [[
local llm = require "rerank.llm"
local llm_parse = require "rerank.llm.parse"
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
    local j = llm_parse.extract_json(text)
    if not j then return nil, "no json" end
    return { score = j.relevance_score, repairs = 0 }
  end,
}
]]

describe("LLM rerankers checked independently: exact prompts, batches, templates, windows", function()
  local mock, srv, tdir
  local function mock_get(path) return cjson.decode(d.sh("curl -s " .. mock.url .. path)) end
  local function mock_reset() d.sh("curl -s -X POST " .. mock.url .. "/_mock/reset") end

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
    mock_reset()
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
    mock_reset()
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
    mock_reset()
    local docs = rule.make_docs(14)
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
    mock_reset()
    local docs = rule.make_docs(9)
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
    mock_reset()
    local docs = { "red", "red apple" }
    local j = rerank({ model = "tpl", query = QUERY, documents = docs })
    assert.are.same({ 1, 0 }, { j.results[1].index, j.results[2].index })
    for _, rq in ipairs(mock_get("/_mock/requests")) do
      assert.are.equal("ACCEPT-TEMPLATE\nModel says.", rq.json.messages[1].content)
    end
    mock_reset()
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
    mock_reset()
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
    local docs = rule.make_docs(45)
    check_listwise("lw", docs, 45, 20, 10)
    local b = mock_get("/_mock/requests")[1].json
    assert.are.equal("gpt-3.5-turbo", b.model)
  end)

  it("listwise: messy permutations repaired; documents past candidates keep their order", function()
    local docs = rule.make_docs(17)
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
    for i, t in ipairs(rule.make_docs(6)) do items[i] = { id = "d" .. i, score = i / 10, text = t } end
    local j = rerank({ query = QUERY, pipeline = { { fuse = "rrf" }, { rerank = { model = "lw" } } },
      lists = { { name = "v", kind = "distance", items = items } } })
    assert.are.equal("rank", j.score_kind)
  end)
end)
