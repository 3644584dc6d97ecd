-- End to end (issue 17): the score layer (kind + calibration per model, min_score, return_score
-- "all", TEI raw_scores), instructions in each provider's documented place (asserted on the
-- body the mock upstream received) or a 422 naming the model, the 2026 request fields, and
-- the inbound vLLM /v1/score and NIM /v1/ranking shapes; over HTTP with the real daemon and
-- through the library (plain LuaJIT, libcurl) against tests/mock/mock_upstream.py.
--
-- The mock scores by the share of the query's distinct words in a document: Cohere answers
-- that share (a probability), NIM the logit 10 * share - 5. With QUERY "alpha beta" the
-- documents below score 1, 0.5 and 0 (logits 5, 0, -5).
local d = require "support.daemon"
local cjson = require "cjson"

local QUERY = "alpha beta"
local DOCS = { "alpha beta", "alpha gamma", "delta" }
local function sigmoid(x) return 1 / (1 + math.exp(-x)) end

local function models_yaml(mock)
  local lines = {}
  local function add(t)
    t.api_key = t.api_key or "test-key"
    t.base_url = mock.url .. "/" .. t.mock
    t.mock = nil
    lines[#lines + 1] = "  - " .. cjson.encode(t)
  end
  lines[#lines + 1] = "  - { name: bm25, provider: bm25 }"
  add({ name = "cohere", provider = "cohere", mock = "cohere" })
  add({ name = "nim-raw", provider = "nvidia_nim", mock = "nim" })
  add({ name = "nim-cal", provider = "nvidia_nim", mock = "nim", score = { calibrate = "sigmoid" } })
  add({ name = "nim-platt", provider = "nvidia_nim", mock = "nim", score = { calibrate = { platt = { a = 0.5, b = 0 } } } })
  add({ name = "tei", provider = "tei", mock = "tei" })
  add({ name = "tei-raw", provider = "tei", mock = "tei", raw_scores = true })
  add({ name = "vllm", provider = "vllm", mock = "vllm" })
  add({ name = "vllm-ctk", provider = "vllm", mock = "vllm", instruction_mode = "chat_template_kwargs" })
  add({ name = "vllm-q", provider = "vllm", mock = "vllm", instruction_mode = "query" })
  add({ name = "vllm-ins", provider = "vllm", mock = "vllm", instruction = "Model instruction." })
  add({ name = "voyage", provider = "voyage", mock = "voyage" })
  add({ name = "voyage-old", provider = "voyage", mock = "voyage", model = "rerank-2" })
  add({ name = "jina", provider = "jina", mock = "jina" })
  add({ name = "deepinfra", provider = "deepinfra", mock = "deepinfra" })
  add({ name = "fireworks", provider = "fireworks", mock = "fireworks" })
  return table.concat(lines, "\n")
end

local function by_index(results)
  local t = {}
  for _, r in ipairs(results) do t[r.index] = r end
  return t
end

local function near(a, b, eps) return math.abs(a - b) <= (eps or 1e-9) end

describe("scores, instructions and the 2026 API shapes", function()
  local mock, srv

  setup(function()
    mock = d.start_mock()
    srv = assert(d.start(("server: { auth: none, listen: \"127.0.0.1:8080\" }\ndefault_model: bm25\nmodels:\n%s\n")
      :format(models_yaml(mock)), { workers = 1 }))
  end)

  teardown(function()
    d.stop(srv)
    d.stop_mock(mock)
  end)

  before_each(function() d.mock_reset(mock) end)

  local function rerank(model, extra, path)
    local b = { model = model, query = QUERY, documents = DOCS }
    for k, v in pairs(extra or {}) do b[k] = v end
    return d.request(srv, path or "/v1/rerank", { body = b })
  end

  local function last_body()
    local reqs = d.mock_requests(mock)
    return reqs[#reqs] and reqs[#reqs].json, #reqs
  end

  describe("the score layer", function()
    it("a logit model calibrated with a sigmoid and a probability model: comparable scores, one min_score cut", function()
      local s1, raw1, _, co = rerank("cohere", { min_score = 0.4 })
      local s2, raw2, _, nc = rerank("nim-cal", { min_score = 0.4 })
      local s3, raw3, _, nr = rerank("nim-raw", { min_score = 0.4 })
      assert.are.equal(200, s1, raw1)
      assert.are.equal(200, s2, raw2)
      assert.are.equal(200, s3, raw3)
      -- the same documents survive the cut, in the same order, with close scores
      assert.are.equal(2, #co.results, raw1)
      assert.are.equal(2, #nc.results, raw2)
      for i = 1, 2 do
        assert.are.equal(co.results[i].index, nc.results[i].index)
        assert.is_true(math.abs(co.results[i].relevance_score - nc.results[i].relevance_score) < 0.01, raw2)
      end
      -- without the calibration the logit 0 of the half-relevant document falls under 0.4
      assert.are.equal(1, #nr.results, raw3)
      assert.are.equal(5, nr.results[1].relevance_score)
    end)

    it("return_score all shows the raw score, the calibrated one and the kind", function()
      local status, raw, _, j = rerank("nim-cal", { return_score = "all" })
      assert.are.equal(200, status, raw)
      local r = by_index(j.results)
      assert.are.equal(5, r[0].raw_score)
      assert.is_true(near(sigmoid(5), r[0].calibrated_score), raw)
      assert.are.equal(r[0].calibrated_score, r[0].relevance_score)
      assert.are.equal("logit", r[0].score_kind)
      status, raw, _, j = rerank("cohere", { return_score = "all" })
      assert.are.equal(200, status, raw)
      r = by_index(j.results)
      assert.are.equal(0.5, r[1].raw_score)
      assert.are.equal(cjson.null, r[1].calibrated_score) -- no calibration: relevance_score is raw
      assert.are.equal(0.5, r[1].relevance_score)
      assert.are.equal("probability", r[1].score_kind)
      status, raw, _, j = rerank("bm25", { return_score = "all" })
      assert.are.equal(200, status, raw)
      assert.are.equal("bm25", j.results[1].score_kind, raw)
    end)

    it("platt parameters from the config apply: sigmoid(a * x + b)", function()
      local status, raw, _, j = rerank("nim-platt")
      assert.are.equal(200, status, raw)
      local r = by_index(j.results)
      assert.is_true(near(sigmoid(2.5), r[0].relevance_score), raw)
      assert.is_true(near(0.5, r[1].relevance_score), raw)
    end)

    it("a pipeline threshold applies to the calibrated score", function()
      local status, raw, _, j = d.request(srv, "/v1/rerank", { body = { query = QUERY, documents = DOCS,
        return_score = "all", pipeline = { { rerank = { model = "nim-cal" } }, { threshold = { min_score = 0.4 } } } } })
      assert.are.equal(200, status, raw)
      assert.are.equal(2, #j.results, raw)
      assert.is_true(near(sigmoid(5), j.results[1].relevance_score), raw)
      assert.are.equal(5, j.results[1].raw_score, raw)
      assert.are.equal("logit", j.results[1].score_kind, raw)
      -- and the request's min_score after it
      status, raw, _, j = d.request(srv, "/v1/rerank", { body = { query = QUERY, documents = DOCS, min_score = 0.9,
        pipeline = { { rerank = { model = "nim-cal" } } } } })
      assert.are.equal(200, status, raw)
      assert.are.equal(1, #j.results, raw)
    end)

    it("min_score must be a number", function()
      local status, raw, _, j = rerank("cohere", { min_score = "high" })
      assert.are.equal(400, status, raw)
      assert.are.equal("min_score", j.error.param)
    end)

    it("TEI raw_scores works as TEI defines it, whatever the model's kind", function()
      local function tei(model, raw_scores)
        local status, raw, _, j = d.request(srv, "/tei/rerank", { body = { model = model, query = QUERY, texts = DOCS,
          raw_scores = raw_scores } })
        assert.are.equal(200, status, raw)
        local t = {}
        for _, x in ipairs(j) do t[x.index] = x.score end
        return t, raw
      end
      -- a NIM (logit) model: false -> sigmoid of the logit, true -> the logit
      local p, raw = tei("nim-raw", false)
      assert.is_true(near(sigmoid(5), p[0]) and near(0.5, p[1]) and near(sigmoid(-5), p[2]), raw)
      local l = tei("nim-raw", true)
      assert.are.same({ [0] = 5, [1] = 0, [2] = -5 }, l)
      -- a probability model: false -> the probability, true -> its logit
      p = tei("cohere", false)
      assert.are.same({ [0] = 1, [1] = 0.5, [2] = 0 }, p)
      l, raw = tei("cohere", true)
      assert.is_true(near(0, l[1]) and l[0] > 30 and l[2] < -30, raw)
      -- a TEI upstream gets the client's raw_scores and answers in the asked terms itself
      l = tei("tei", true)
      assert.are.equal(true, last_body().raw_scores)
      assert.are.same({ [0] = 5, [1] = 0, [2] = -5 }, l)
      p = tei("tei-raw", false) -- the model's option is overridden by the client's false
      assert.are.equal(false, last_body().raw_scores)
      assert.are.same({ [0] = 1, [1] = 0.5, [2] = 0 }, p)
      -- on /v1/rerank a raw_scores model answers logits, kind logit
      local status, raw2, _, j = rerank("tei-raw", { return_score = "all" })
      assert.are.equal(200, status, raw2)
      assert.are.equal("logit", j.results[1].score_kind)
      assert.are.equal(5, j.results[1].relevance_score)
    end)
  end)

  describe("instructions", function()
    it("vLLM: the instruction field, chat_template_kwargs, or the query", function()
      local status, raw = rerank("vllm", { instruction = "Find greek letters." })
      assert.are.equal(200, status, raw)
      assert.are.equal("Find greek letters.", last_body().instruction)
      status, raw = rerank("vllm-ctk", { instruction = "Find greek letters." })
      assert.are.equal(200, status, raw)
      local b = last_body()
      assert.are.same({ instruction = "Find greek letters." }, b.chat_template_kwargs)
      assert.is_nil(b.instruction)
      status, raw = rerank("vllm-q", { instruction = "Find greek letters" })
      assert.are.equal(200, status, raw)
      assert.are.equal("Instruction: Find greek letters. Query: alpha beta", last_body().query)
    end)

    it("vLLM: the model's default instruction, replaced by the request's", function()
      assert.are.equal(200, (rerank("vllm-ins")))
      assert.are.equal("Model instruction.", last_body().instruction)
      assert.are.equal(200, (rerank("vllm-ins", { instruction = "Request instruction." })))
      assert.are.equal("Request instruction.", last_body().instruction)
    end)

    it("Voyage rerank-2.5: in the query, in the documented format", function()
      local status, raw = rerank("voyage", { instruction = "Prefer documents from 2025." })
      assert.are.equal(200, status, raw)
      assert.are.equal("Instruction: Prefer documents from 2025. Query: alpha beta", last_body().query)
      assert.are.equal(200, (rerank("voyage")))
      assert.are.equal(QUERY, last_body().query)
    end)

    it("DeepInfra (instruction) and Fireworks (task): a field", function()
      assert.are.equal(200, (rerank("deepinfra", { instruction = "Rank it." })))
      assert.are.equal("Rank it.", last_body().instruction)
      assert.are.equal(200, (rerank("fireworks", { instruction = "Rank it." })))
      assert.are.equal("Rank it.", last_body().task)
    end)

    it("a model that cannot take one answers 422 naming the model, and nothing is sent", function()
      for _, m in ipairs({ "jina", "voyage-old", "cohere", "nim-raw" }) do
        local status, raw, _, j = rerank(m, { instruction = "Prefer documents from 2025." })
        assert.are.equal(422, status, raw)
        assert.are.equal("instruction", j.error.param, raw)
        assert.truthy(j.error.message:find('model "' .. m .. '"', 1, true), raw)
        local _, n = last_body()
        assert.are.equal(0, n, m)
      end
      -- in the client's own shape: Cohere v2's {"message"}
      local status, raw, _, j = rerank("cohere", { instruction = "x" }, "/cohere/v2/rerank")
      assert.are.equal(422, status, raw)
      assert.truthy(j.message:find('model "cohere"', 1, true), raw)
    end)

    it("a pipeline's rerank stage refuses it the same way (not a degraded answer)", function()
      local status, raw = d.request(srv, "/v1/rerank", { body = { query = QUERY, documents = DOCS, instruction = "x",
        pipeline = { { rerank = { model = "jina" } } } } })
      assert.are.equal(422, status, raw)
    end)

    it("rerankd -t refuses a default instruction for a provider without a place for it", function()
      local f = d.writefile(d.tmpname(".yaml"), "models:\n  - name: co\n    provider: cohere\n    instruction: be strict\n")
      local out = d.sh(("%s/rerankd -t -c %s 2>&1"):format(d.root, f))
      assert.truthy(out:find(':4:18: models[0].instruction: provider "cohere" cannot take an instruction', 1, true), out)
    end)
  end)

  describe("2026 request fields", function()
    it("Cohere priority 0-999 reaches the upstream; out of range is a 422", function()
      local status, raw = rerank("cohere", { priority = 5 }, "/cohere/v2/rerank")
      assert.are.equal(200, status, raw)
      assert.are.equal(5, last_body().priority)
      status, raw = rerank("cohere", { priority = 7 })
      assert.are.equal(200, status, raw)
      assert.are.equal(7, last_body().priority)
      local _, n0 = last_body()
      local j
      status, raw, _, j = rerank("cohere", { priority = 1000 }, "/cohere/v2/rerank")
      assert.are.equal(422, status, raw)
      assert.are.equal("priority must be between 0 and 999", j.message)
      status = rerank("cohere", { priority = -1 })
      assert.are.equal(422, status)
      status = rerank("cohere", { priority = 1.5 })
      assert.are.equal(400, status)
      local _, n1 = last_body()
      assert.are.equal(n0, n1) -- nothing sent
    end)

    it("vLLM max_tokens_per_query and truncation_side (from truncate)", function()
      local status, raw = rerank("vllm", { max_tokens_per_query = 64, truncate = "start", max_tokens_per_document = 100 })
      assert.are.equal(200, status, raw)
      local b = last_body()
      assert.are.equal(64, b.max_tokens_per_query)
      assert.are.equal("left", b.truncation_side)
      assert.are.equal(100, b.truncate_prompt_tokens)
      assert.are.equal(422, (rerank("vllm", { max_tokens_per_query = 0 })))
    end)

    it("TEI truncation_direction reaches a TEI upstream (truncate null: TEI's auto-truncate)", function()
      local status, raw = d.request(srv, "/tei/rerank", { body = { model = "tei", query = QUERY, texts = DOCS,
        truncation_direction = "Left" } })
      assert.are.equal(200, status, raw)
      local b = last_body()
      assert.are.equal("Left", b.truncation_direction)
      assert.are.equal(true, b.truncate)
    end)

    it("other upstream fields pass through extra_body", function()
      assert.are.equal(200, (rerank("vllm", { extra_body = { mm_processor_kwargs = { fps = 1 } } })))
      assert.are.same({ fps = 1 }, last_body().mm_processor_kwargs)
    end)
  end)

  describe("vLLM's /v1/score", function()
    it("answers in vLLM's shape: input order, object score, probabilities by default", function()
      local status, raw, _, j = d.request(srv, "/v1/score", { body = { model = "nim-raw", text_1 = QUERY, text_2 = DOCS } })
      assert.are.equal(200, status, raw)
      assert.are.equal("list", j.object)
      assert.truthy(j.id:find("^score%-"), raw)
      assert.are.equal("number", type(j.created))
      assert.are.equal("nim-raw", j.model)
      assert.are.equal(3, #j.data)
      for i, x in ipairs(j.data) do
        assert.are.equal(i - 1, x.index)
        assert.are.equal("score", x.object)
      end
      assert.is_true(near(sigmoid(5), j.data[1].score) and near(0.5, j.data[2].score), raw)
      assert.is_true(j.usage.prompt_tokens > 0 and j.usage.total_tokens == j.usage.prompt_tokens, raw)
      assert.are.equal(0, j.usage.completion_tokens)
    end)

    it("use_activation false answers logits; queries/documents and /score work too", function()
      local status, raw, _, j = d.request(srv, "/score", { body = { model = "nim-raw", queries = { QUERY },
        documents = DOCS, use_activation = false } })
      assert.are.equal(200, status, raw)
      assert.are.same({ 5, 0, -5 }, { j.data[1].score, j.data[2].score, j.data[3].score })
      -- 1:1 with a single string, N:N with one repeated query
      status, raw, _, j = d.request(srv, "/v1/score", { body = { model = "cohere", text_1 = QUERY, text_2 = "alpha gamma" } })
      assert.are.equal(200, status, raw)
      assert.are.equal(0.5, j.data[1].score)
      status, raw, _, j = d.request(srv, "/v1/score", { body = { model = "cohere", text_1 = { QUERY, QUERY },
        text_2 = { "delta", "alpha beta" } } })
      assert.are.equal(200, status, raw)
      assert.are.same({ 0, 1 }, { j.data[1].score, j.data[2].score })
      -- N:N with different queries: pair i is (text_1[i], text_2[i]); one upstream call per query
      d.mock_reset(mock)
      status, raw, _, j = d.request(srv, "/v1/score", { body = { model = "nim-raw", text_1 = { QUERY, "delta", QUERY },
        text_2 = { "alpha gamma", "delta", "alpha beta" } } })
      assert.are.equal(200, status, raw)
      assert.are.same({ 0, 1, 2 }, { j.data[1].index, j.data[2].index, j.data[3].index })
      assert.is_true(near(0.5, j.data[1].score) and near(sigmoid(5), j.data[2].score)
        and near(sigmoid(5), j.data[3].score), raw)
      local reqs = d.mock_requests(mock)
      assert.are.equal(2, #reqs)
      assert.are.same({ "alpha gamma", "alpha beta" }, { reqs[1].json.passages[1].text, reqs[1].json.passages[2].text })
    end)

    it("errors in vLLM's shape", function()
      local status, raw, _, j = d.request(srv, "/v1/score", { body = { model = "cohere", text_1 = QUERY } })
      assert.are.equal(400, status, raw)
      assert.are.same({ message = "text_2 is required", type = "BadRequestError", param = "text_2", code = 400 },
        j.error)
      status, raw, _, j = d.request(srv, "/v1/score", { body = { model = "cohere", text_1 = { "a", "b" },
        text_2 = { "x" } } })
      assert.are.equal(422, status, raw)
      assert.are.equal("text_1 and text_2 must have the same length (got 2 and 1)", j.error.message)
      assert.are.equal(422, j.error.code)
      status, raw, _, j = d.request(srv, "/v1/score", { body = "{not json" })
      assert.are.equal(400, status, raw)
      assert.are.equal("BadRequestError", j.error.type)
      status, raw, _, j = d.request(srv, "/v1/score", { body = { model = "nope", text_1 = QUERY, text_2 = DOCS } })
      assert.are.equal(404, status, raw)
      assert.are.equal("NotFoundError", j.error.type)
    end)
  end)

  describe("NVIDIA NIM's /v1/ranking", function()
    local function ranking(model, extra)
      local b = { model = model, query = { text = QUERY }, passages = {}, truncate = "END" }
      for i, t in ipairs(DOCS) do b.passages[i] = { text = t } end
      for k, v in pairs(extra or {}) do b[k] = v end
      return d.request(srv, "/v1/ranking", { body = b })
    end

    it("a NIM model's logits come back unchanged, sorted by logit", function()
      local status, raw, _, j = ranking("nim-raw")
      assert.are.equal(200, status, raw)
      assert.are.same({ { index = 0, logit = 5 }, { index = 1, logit = 0 }, { index = 2, logit = -5 } }, j.rankings)
      assert.is_true(j.usage.prompt_tokens > 0, raw)
      assert.are.equal("END", last_body().truncate)
    end)

    it("a probability model answers logits whose sigmoid is its probability", function()
      local status, raw, _, j = ranking("cohere")
      assert.are.equal(200, status, raw)
      assert.are.equal(1, j.rankings[2].index)
      assert.is_true(near(0, j.rankings[2].logit), raw)
      assert.is_true(near(0.5, sigmoid(j.rankings[2].logit)))
      -- a calibrated model: the logit of the calibrated probability
      status, raw, _, j = ranking("nim-platt")
      assert.are.equal(200, status, raw)
      assert.is_true(near(2.5, j.rankings[1].logit, 1e-6), raw)
    end)

    it("errors: missing passages, bad truncate", function()
      local status, raw, _, j = d.request(srv, "/v1/ranking", { body = { model = "cohere", query = { text = QUERY } } })
      assert.are.equal(400, status, raw)
      assert.are.equal("passages is required", j.detail)
      assert.are.equal("passages", j.error.param)
      status, raw, _, j = ranking("cohere", { truncate = "START" })
      assert.are.equal(422, status, raw)
      assert.are.equal('truncate must be "NONE" or "END"', j.detail)
    end)
  end)

  describe("the library (plain LuaJIT, libcurl)", function()
    it("calibrates, cuts at min_score and routes instructions like the daemon", function()
      local lib = require "rerank"
      local r = assert(lib.new({ models = {
        { name = "co", provider = "cohere", base_url = mock.url .. "/cohere", api_key = "test-key" },
        { name = "nim", provider = "nvidia_nim", base_url = mock.url .. "/nim", api_key = "test-key",
          score = { kind = "logit", calibrate = { sigmoid = { scale = 1 } } } },
        { name = "vl", provider = "vllm", base_url = mock.url .. "/vllm", api_key = "test-key" },
        { name = "jn", provider = "jina", base_url = mock.url .. "/jina", api_key = "test-key" },
      } }, { dir = d.root }))
      local a = assert(r:rerank({ model = "co", query = QUERY, documents = DOCS, min_score = 0.4 }))
      local b = assert(r:rerank({ model = "nim", query = QUERY, documents = DOCS, min_score = 0.4 }))
      assert.are.equal(2, #a.results)
      assert.are.equal(2, #b.results)
      assert.are.equal("logit", b.results[1].score_kind)
      assert.are.equal(5, b.results[1].raw_score)
      assert.is_true(math.abs(a.results[2].relevance_score - b.results[2].relevance_score) < 0.01)
      assert.are.equal("sigmoid", b.scoring.calibration.method)
      assert(r:rerank({ model = "vl", query = QUERY, documents = DOCS, instruction = "Be strict." }))
      assert.are.equal("Be strict.", last_body().instruction)
      local res, err = r:rerank({ model = "jn", query = QUERY, documents = DOCS, instruction = "Be strict." })
      assert.is_nil(res)
      assert.are.equal(422, err.status)
      assert.truthy(err.message:find('model "jn"', 1, true))
    end)
  end)
end)
