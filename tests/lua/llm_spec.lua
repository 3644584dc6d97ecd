-- LLM reranker helpers (lua/rerank/llm.lua), cost accounting (lua/rerank/engine/usage.lua), the
-- template settings in config/load.lua, and providers/openai_llm.lua + openai_listwise.lua driven
-- through the runtime's multi-round protocol (rerank.engine.upstream) with a transport double.
local cjson = require "cjson"
local json = require "rerank.json"
local llm = require "rerank.llm"
local llm_parse = require "rerank.llm.parse"
local usage = require "rerank.engine.usage"
local config = require "rerank.config.load"
local upstream = require "rerank.engine.upstream"
local shapes = require "rerank.shapes"
local paths = require "rerank.config.paths"

local ROOT = paths.root()
local TMP = ROOT .. "/tests/tmp"
os.execute("mkdir -p " .. TMP)

local function readjson(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return cjson.decode(s)
end

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

local REF = readjson(ROOT .. "/tests/fixtures/llm/python_reference.json")

---------------------------------------------------------------------------------------------
describe("llm.py_repr", function()
  for _, c in ipairs(REF.py_repr) do
    it("matches Python's repr() for " .. c.repr, function()
      local v = c.value
      if type(v) == "table" and next(v) == nil then v = {} end
      assert.are.equal(c.repr, llm.py_repr(v))
    end)
  end

  it("dicts keep their key order; numbers and None like Python", function()
    assert.are.equal("{'id': 3, 'content': 'x'}", llm.py_repr(llm.py_dict({ { "id", 3 }, { "content", "x" } })))
    assert.are.equal("[1, 2.5, True, None]", llm.py_repr({ 1, 2.5, true, json.null }))
  end)
end)

describe("llm_parse.extract_json", function()
  it("decodes plain JSON, fenced JSON and JSON in prose", function()
    assert.are.same({ a = 1 }, llm_parse.extract_json('{"a": 1}'))
    assert.are.same({ a = 1 }, llm_parse.extract_json('```json\n{"a": 1}\n```'))
    assert.are.same({ a = 1 }, llm_parse.extract_json('Sure: {"a": 1}. Bye {"b": 2}'))
    assert.are.same({ a = { 1, 2 } }, llm_parse.extract_json('x {"a": [1, 2]} y'))
    assert.are.same({ a = "}{" }, llm_parse.extract_json('note {"a": "}{"} end'))
  end)

  it("prefers an object over a bracketed citation before it", function()
    assert.are.same({ s = 0.5 }, llm_parse.extract_json('see [1] and {"s": 0.5}'))
  end)

  it("repairs trailing commas and single quotes", function()
    assert.are.same({ a = 1 }, llm_parse.extract_json('{"a": 1,}'))
    assert.are.same({ a = "b" }, llm_parse.extract_json("{'a': 'b'}"))
  end)

  it("fails on no JSON, cut-off JSON and empty text", function()
    assert.is_nil(llm_parse.extract_json("no json here"))
    assert.is_nil(llm_parse.extract_json('{"a": [1, 2'))
    assert.is_nil(llm_parse.extract_json(""))
    assert.is_nil(llm_parse.extract_json(nil))
  end)
end)

describe("llm numbers and scores", function()
  it("to_number coerces strings, percents and fractions", function()
    assert.are.same({ 0.5, false }, { llm_parse.to_number(0.5) })
    assert.are.same({ 0.5, true }, { llm_parse.to_number(" 0.5 ") })
    assert.are.same({ 0.8, true }, { llm_parse.to_number("80%") })
    assert.are.same({ 0.7, true }, { llm_parse.to_number("7/10") })
    assert.are.same({ 1, true }, { llm_parse.to_number(true) })
    assert.is_nil(llm_parse.to_number("high"))
    assert.is_nil(llm_parse.to_number(json.null))
    assert.is_nil(llm_parse.to_number(math.huge))
    assert.is_nil(llm_parse.to_number(0 / 0))
  end)

  it("clamp and score_of", function()
    assert.are.same({ 1, true }, { llm_parse.clamp(3, 0, 1) })
    assert.are.same({ 0, true }, { llm_parse.clamp(-3, 0, 1) })
    assert.are.same({ 0.4, false }, { llm_parse.clamp(0.4, 0, 1) })
    assert.are.same({ 0.4, 0 }, { llm_parse.score_of(0.4) })
    assert.are.same({ 1, 1 }, { llm_parse.score_of("2") })
    assert.is_nil(llm_parse.score_of("x"))
  end)

  it("find_score looks at the usual keys, one level deep", function()
    assert.are.equal(0.1, llm_parse.find_score({ relevance_score = 0.1, score = 0.9 }))
    assert.are.equal(0.2, llm_parse.find_score({ Score = 0.2 }))
    assert.are.equal(0.3, llm_parse.find_score({ out = { relevance = 0.3 } }))
    assert.are.equal(0.4, llm_parse.find_score(0.4))
    assert.is_nil(llm_parse.find_score({ answer = "yes" }))
  end)
end)

describe("llm_parse.windows (RankGPT sliding windows, start clamped)", function()
  local function ranges(m, w, s)
    local out = {}
    for i, r in ipairs(llm_parse.windows(m, w, s)) do out[i] = r[1] .. "-" .. r[2] end
    return table.concat(out, " ")
  end

  it("100 candidates, window 20, step 10: [81,100] up to [1,20] as RankGPT's [80,100) .. [0,20)", function()
    assert.are.equal("81-100 71-90 61-80 51-70 41-60 31-50 21-40 11-30 1-20", ranges(100, 20, 10))
  end)

  it("25 candidates: RankGPT would stop after [5,25); the top window is clamped instead", function()
    assert.are.equal("6-25 1-15", ranges(25, 20, 10))
  end)

  it("fewer candidates than a window: one window", function()
    assert.are.equal("1-10", ranges(10, 20, 10))
    assert.are.equal("1-20", ranges(20, 20, 10))
    assert.are.equal("", ranges(0, 20, 10))
  end)

  it("step equal to the window: disjoint windows", function()
    assert.are.equal("11-15 6-10 1-5", ranges(15, 5, 5))
  end)
end)

describe("llm permutations", function()
  it("repair_permutation keeps first occurrences in range and appends the missing", function()
    assert.are.same({ { 2, 1, 3 }, 0 }, { llm_parse.repair_permutation({ 2, 1, 3 }, 3) })
    assert.are.same({ { 3, 1, 2, 4 }, 4 }, { llm_parse.repair_permutation({ 3, 3, 0, 1 }, 4) })
    assert.are.same({ { 1, 2 }, 2 }, { llm_parse.repair_permutation({}, 2) })
    assert.are.same({ { 1, 2 }, 5 }, { llm_parse.repair_permutation({ 1.5, "x", 7 }, 2) })
  end)

  it("parse_permutation reads ids like RankGPT", function()
    for _, c in ipairs(REF.rankgpt_receive) do
      assert.are.same(c.rankgpt, (llm_parse.parse_permutation(c.text, c.n)), c.text)
    end
  end)
end)

describe("llm_parse.yes_probability", function()
  it("normalises P(yes) over yes and no alternatives (chat format)", function()
    local choice = { logprobs = { content = { { token = "yes", logprob = math.log(0.6), top_logprobs = {
      { token = "yes", logprob = math.log(0.6) }, { token = "no", logprob = math.log(0.2) } } } } } }
    assert.are.equal(0.75, llm_parse.yes_probability(choice))
  end)

  it("skips a leading whitespace token", function()
    local choice = { logprobs = { content = { { token = " ", logprob = -0.01, top_logprobs = {} },
      { token = "No", logprob = math.log(0.9), top_logprobs = { { token = "No", logprob = math.log(0.9) },
        { token = "Yes", logprob = math.log(0.1) } } } } } }
    assert.are.equal(0.1, llm_parse.yes_probability(choice))
  end)

  it("nil without logprobs or without yes/no tokens", function()
    assert.is_nil(llm_parse.yes_probability({}))
    assert.is_nil(llm_parse.yes_probability({ logprobs = json.null }))
    assert.is_nil(llm_parse.yes_probability({ logprobs = { content = { { token = "maybe", logprob = -0.1,
      top_logprobs = { { token = "maybe", logprob = -0.1 } } } } } }))
  end)
end)

describe("llm text helpers", function()
  it("words is Python's ' '.join(s.split()[:n])", function()
    assert.are.equal("a b c", llm.words("  a \n b\tc  "))
    assert.are.equal("a b", llm.words("a b c", 2))
  end)

  it("doc_text cuts to max_tokens_per_document words unless truncate is none", function()
    local d = { text = "one two three four" }
    assert.are.equal("one two three four", llm.doc_text({}, d))
    assert.are.equal("one two", llm.doc_text({ max_tokens_per_document = 2 }, d))
    assert.are.equal("three four", llm.doc_text({ max_tokens_per_document = 2, truncate = "start" }, d))
    assert.are.equal("one two three four", llm.doc_text({ max_tokens_per_document = 2, truncate = "none" }, d))
  end)

  it("instruction: the request's, else the model's", function()
    assert.are.equal("r", llm.instruction({ instruction = "m" }, { instruction = "r" }))
    assert.are.equal("m", llm.instruction({ instruction = "m" }, {}))
    assert.is_nil(llm.instruction({}, { instruction = "" }))
  end)
end)

describe("llm.read_answer", function()
  it("reads content, choice and usage", function()
    local a = llm.read_answer({ status = 200, body = cjson.encode({
      choices = { { message = { role = "assistant", content = "yes" } } },
      usage = { prompt_tokens = 10, completion_tokens = 1, total_tokens = 11 } }) })
    assert.are.equal("yes", a.text)
    assert.are.same({ prompt_tokens = 10, completion_tokens = 1, total_tokens = 11 }, a.usage)
  end)

  it("joins content parts; fails without choices or content but keeps usage", function()
    local a = llm.read_answer({ status = 200,
      body = '{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}' })
    assert.are.equal("ab", a.text)
    local none, err, u = llm.read_answer({ status = 200, body = '{"choices":[],"usage":{"prompt_tokens":3}}' })
    assert.is_nil(none)
    assert.truthy(err:find("no choices"))
    assert.are.equal(3, u.prompt_tokens)
    assert.is_nil(llm.read_answer({ status = 200, body = '{"choices":[{"message":{"content":null,"refusal":"no"}}]}' }))
    assert.is_nil(llm.read_answer({ status = 200, body = "not json" }))
  end)
end)

---------------------------------------------------------------------------------------------
describe("template loading", function()
  it("finds templates by name in dirs, earlier dirs first, or by path", function()
    local dir = TMP .. "/tpl_spec"
    os.execute("mkdir -p " .. dir)
    writefile(dir .. "/lancedb.lua", 'return { kind = "list", messages = function() return {} end, parse = function() end }')
    local builtin = llm.builtin_templates()
    assert.are.equal(dir .. "/lancedb.lua", llm.find_template("lancedb", { dir, builtin }))
    assert.are.equal(builtin .. "/rankgpt.lua", llm.find_template("rankgpt", { dir, builtin }))
    assert.is_nil(llm.find_template("nope", { dir, builtin }))
    assert.are.equal(dir .. "/lancedb.lua", llm.find_template("tpl_spec/lancedb.lua", {}, TMP))
    local names = llm.template_names({ builtin })
    assert.are.same({ "lancedb", "lancedb_exact", "pointwise_json", "rankgpt", "yes_no" }, names)
  end)

  it("rejects files that are not templates, with the reason", function()
    local f = writefile(TMP .. "/tpl_bad1.lua", "return 42")
    local t, err = llm.load_template(f)
    assert.is_nil(t)
    assert.truthy(err:find("must return a table"))
    f = writefile(TMP .. "/tpl_bad2.lua", "return { messages = function() end }")
    t, err = llm.load_template(f)
    assert.is_nil(t)
    assert.truthy(err:find("parse"))
    f = writefile(TMP .. "/tpl_bad3.lua", 'return { kind = "weird", messages = function() end, parse = function() end }')
    t, err = llm.load_template(f)
    assert.is_nil(t)
    assert.truthy(err:find("kind"))
    f = writefile(TMP .. "/tpl_bad4.lua", "return {")
    t, err = llm.load_template(f)
    assert.is_nil(t)
    assert.truthy(err:find("failed to load"))
  end)

  it("caches a loaded template", function()
    local f = llm.find_template("rankgpt", { llm.builtin_templates() })
    assert.are.equal(llm.load_template(f), llm.load_template(f))
  end)

  it("template(model, default): template_file, else the name in template_paths, else built-ins", function()
    assert.are.equal("rankgpt", llm.template({}, "rankgpt").name)
    assert.are.equal("yes_no", llm.template({ template = "yes_no" }, "rankgpt").name)
    local t, err = llm.template({ template = "missing", template_paths = { TMP } })
    assert.is_nil(t)
    assert.truthy(err:find('template "missing" not found'))
  end)
end)

---------------------------------------------------------------------------------------------
describe("usage.cost", function()
  it("prices prompt and completion tokens per 1k and per 1M", function()
    local u = { prompt_tokens = 2000, completion_tokens = 500, total_tokens = 2500 }
    assert.are.equal(0.035, usage.cost({ per_1k_prompt_tokens = 0.01, per_1k_completion_tokens = 0.03 }, u))
    assert.are.equal(0.0035, usage.cost({ per_1m_prompt_tokens = 1, per_1m_completion_tokens = 3 }, u))
    assert.are.equal(0.005, usage.cost({ per_1k_tokens = 0.002 }, u))
    assert.are.equal(0.005, usage.cost({ per_1k_tokens = 0.002 }, { prompt_tokens = 2000, completion_tokens = 500 }))
  end)

  it("search units (reported, else one per 100 documents), documents and requests", function()
    assert.are.equal(0.004, usage.cost({ per_search_unit = 0.002 }, { search_units = 2 }))
    assert.are.equal(0.006, usage.cost({ per_search_unit = 0.002 }, {}, { documents = 201 }))
    assert.are.equal(0.05, usage.cost({ per_document = 0.001, per_request = 0.04 }, {}, { documents = 10 }))
  end)

  it("nil without prices; no float noise", function()
    assert.is_nil(usage.cost({}, { prompt_tokens = 5 }))
    assert.is_nil(usage.cost(nil, {}))
    assert.are.equal(0.3, usage.cost({ per_request = 0.1, per_document = 0.1 }, {}, { documents = 2 }))
  end)

  it("check_price names the first unknown key with a suggestion", function()
    assert.is_true(usage.check_price({ per_1k_tokens = 1 }))
    local ok, key, s = usage.check_price({ per_1k_prompt_token = 1 }, config.did_you_mean)
    assert.is_nil(ok)
    assert.are.equal("per_1k_prompt_token", key)
    assert.are.equal("per_1k_prompt_tokens", s)
  end)

  it("add sums numeric fields", function()
    local t = usage.add({ prompt_tokens = 1 }, { prompt_tokens = 2, completion_tokens = 3, note = "x" })
    assert.are.same({ prompt_tokens = 3, completion_tokens = 3 }, t)
  end)
end)

---------------------------------------------------------------------------------------------
describe("config for LLM models", function()
  local function cfg(models, extra)
    local t = { models = models }
    for k, v in pairs(extra or {}) do t[k] = v end
    return config.from_table(t, { dir = ROOT })
  end

  it("openai_llm defaults: OpenAI URL, gpt-4-turbo-preview, batch_size 20, template dirs", function()
    local c = assert(cfg({ { name = "llm", provider = "openai_llm" } }))
    local m = c.model_index.llm
    assert.are.equal("https://api.openai.com", m.base_url)
    assert.are.equal("/v1/chat/completions", m.path)
    assert.are.equal("gpt-4-turbo-preview", m.model)
    assert.are.equal(20, m.options.batch_size)
    assert.are.same({ ROOT .. "/lua/rerank/llm/templates" }, m.template_paths)
    assert.is_nil(m.template_file)
  end)

  it("openai_listwise defaults: gpt-3.5-turbo, window 20, step 10, candidates 100", function()
    local c = assert(cfg({ { name = "lw", provider = "openai_listwise" } }))
    local m = c.model_index.lw
    assert.are.equal("gpt-3.5-turbo", m.model)
    assert.are.same({ window = 20, step = 10, candidates = 100, call_retries = 0 }, m.options)
  end)

  it("resolves template to a file, from paths.templates first", function()
    local dir = TMP .. "/tpl_cfg"
    os.execute("mkdir -p " .. dir)
    writefile(dir .. "/mine.lua", 'return { kind = "pointwise", messages = function() return {} end, parse = function() end }')
    local c = assert(cfg({ { name = "a", provider = "openai_llm", template = "yes_no" },
                           { name = "b", provider = "openai_llm", template = "mine" } },
      { paths = { templates = { dir } } }))
    assert.are.equal(ROOT .. "/lua/rerank/llm/templates/yes_no.lua", c.model_index.a.template_file)
    assert.are.equal(dir .. "/mine.lua", c.model_index.b.template_file)
  end)

  it("an unknown template is an error with a suggestion", function()
    local c, err = cfg({ { name = "a", provider = "openai_llm", template = "yes_now" } })
    assert.is_nil(c)
    assert.are.equal('config: models[0].template: unknown template "yes_now" (did you mean "yes_no"?)', err)
  end)

  it("a broken template file is an error at load time", function()
    writefile(TMP .. "/tpl_cfg_bad.lua", "return 1")
    local c, err = cfg({ { name = "a", provider = "openai_llm", template = TMP .. "/tpl_cfg_bad.lua" } })
    assert.is_nil(c)
    assert.truthy(err:find("models%[0%]%.template: template .* must return a table"))
  end)

  it("mode is an enum; price keys are checked", function()
    local c, err = cfg({ { name = "a", provider = "openai_llm", mode = "pointwsie" } })
    assert.is_nil(c)
    assert.truthy(err:find('did you mean "pointwise"', 1, true), err)
    c, err = cfg({ { name = "a", provider = "openai_llm", price = { per_1k_prompt = 0.01 } } })
    assert.is_nil(c)
    assert.truthy(err:find("models[0].price.per_1k_prompt: unknown price key", 1, true), err)
  end)

  it("template is not resolved for providers without templates", function()
    local c = assert(cfg({ { name = "co", provider = "cohere", template = "anything" } }))
    assert.is_nil(c.model_index.co.template_file)
    assert.is_nil(c.model_index.co.template_paths)
  end)
end)

---------------------------------------------------------------------------------------------
-- providers through upstream.call with a transport double

local function load_provider(file)
  return assert(loadfile(file))()
end

-- answer(body_table, headers, k) -> response ({status, headers, body}) for each call; records
-- every round: { n = calls, concurrency = bound, bodies = {...} }
local function transport(answer)
  local t = { rounds = {}, calls = {} }
  local function one(o, k)
    local body = cjson.decode(o.body)
    t.calls[#t.calls + 1] = { url = o.url, headers = o.headers, body = body }
    return answer(body, o.headers, #t.calls, k)
  end
  function t.request(o) return one(o, 1) end
  function t.request_all(list, c)
    local round = { n = #list, concurrency = c, bodies = {} }
    t.rounds[#t.rounds + 1] = round
    local out = {}
    for k, o in ipairs(list) do
      out[k] = one(o, k)
      round.bodies[k] = t.calls[#t.calls].body
    end
    return out
  end
  return t
end

local function words(s)
  local w = {}
  for x in tostring(s):lower():gmatch("%w+") do w[x] = true end
  return w
end

-- the share of the query's distinct words found in the text (the mock's rule)
local function share(q, d)
  local qw, dw, n, hit = words(q), words(d), 0, 0
  for x in pairs(qw) do
    n = n + 1
    if dw[x] then hit = hit + 1 end
  end
  return n > 0 and hit / n or 0
end

local function chat(content, u)
  return { status = 200, headers = {}, body = cjson.encode({
    choices = { { index = 0, message = { role = "assistant", content = content }, finish_reason = "stop" } },
    usage = u or { prompt_tokens = 10, completion_tokens = 2, total_tokens = 12 } }) }
end

-- the query and document of a pointwise prompt
local function pointwise_parts(body)
  local user = body.messages[#body.messages].content
  return user:match("^Query: (.-)\n\nDocument: (.*)$")
end

local function model_of(entry, extra)
  local e = { name = "m", provider = "openai_llm", base_url = "http://llm.test", api_key = "k" }
  for k, v in pairs(entry or {}) do e[k] = v end
  local c = assert(config.from_table({ models = { e } }, { dir = ROOT }))
  for k, v in pairs(extra or {}) do c.models[1][k] = v end
  return c.models[1]
end

local function request(q, docs, extra)
  local b = { query = q, documents = docs }
  for k, v in pairs(extra or {}) do b[k] = v end
  return assert(shapes.parse("rerankd", b))
end

local function docs_n(n, fmt)
  local out = {}
  for i = 1, n do out[i] = (fmt or "document number %d"):format(i - 1) end
  return out
end

describe("openai_llm, lancedb mode", function()
  local P = load_provider(ROOT .. "/providers/openai_llm.lua")

  it("sends one JSON-mode call per batch of 20, all in one round, ids global", function()
    local m = model_of({}, { concurrency = 3 })
    local t = transport(function(body)
      local user = body.messages[2].content
      local items = {}
      for id in user:gmatch("{'id': (%d+), ") do
        items[#items + 1] = { id = tonumber(id), relevance_score = tonumber(id) / 100 }
      end
      return chat(cjson.encode({ documents = items }))
    end)
    local req = request("q", docs_n(45))
    local out = assert(upstream.call(t, m, P, req))
    assert.are.equal(1, #t.rounds)
    assert.are.equal(3, t.rounds[1].n)
    assert.are.equal(3, t.rounds[1].concurrency)
    local b = t.calls[2].body
    assert.are.equal("gpt-4-turbo-preview", b.model)
    assert.are.same({ type = "json_object" }, b.response_format)
    assert.are.equal(0, b.temperature)
    assert.truthy(b.messages[2].content:find("^Query: q Docs: %[{'id': 20, 'content': 'document number 20'}"))
    assert.are.equal("Bearer k", t.calls[1].headers.Authorization)
    assert.are.equal("http://llm.test/v1/chat/completions", t.calls[1].url)
    for i = 1, 45 do assert.are.equal((i - 1) / 100, out.scores[i]) end
    assert.are.equal(0, out.repairs)
    assert.is_nil(out.degraded)
    assert.are.same({ prompt_tokens = 30, completion_tokens = 6, total_tokens = 36 }, out.usage)
    assert.are.equal("relevance", out.score_kind)
  end)

  it("repairs a messy answer: missing document scored 0, extras and clamps counted", function()
    local m = model_of()
    local t = transport(function()
      return chat('Here: {"documents": [{"id": 0, "relevance_score": "0.9"}, {"id": 1, "relevance_score": 3},'
        .. ' {"id": 1, "relevance_score": 0.1}, {"id": 42, "relevance_score": 1}]}')
    end)
    local out = assert(upstream.call(t, m, P, request("q", { "a", "b", "c" })))
    assert.are.same({ 0.9, 1, 0 }, out.scores)
    -- "0.9" coerced, 3 clamped, a duplicate, an unknown id, document 2 missing
    assert.are.equal(5, out.repairs)
    assert.is_nil(out.degraded)
  end)

  it("an unreadable batch: its documents score 0, repairs and degraded", function()
    local m = model_of({ batch_size = 2 })
    local t = transport(function(body)
      if body.messages[2].content:find("'c'") then return chat("I refuse to answer in JSON.") end
      return chat('{"documents": [{"id": 0, "relevance_score": 0.5}, {"id": 1, "relevance_score": 0.6}]}')
    end)
    local out = assert(upstream.call(t, m, P, request("q", { "a", "b", "c" })))
    assert.are.same({ 0.5, 0.6, 0 }, out.scores)
    assert.are.equal(1, out.repairs)
    assert.is_true(out.degraded)
  end)

  it("lancedb_exact sends LanceDB's own user message and matches by content", function()
    local m = model_of({ template = "lancedb_exact" })
    local t = transport(function()
      return chat('{"documents": [{"content": "b b", "relevance_score": 0.8}, {"content": "a\'s", "relevance_score": 0.2}]}')
    end)
    local out = assert(upstream.call(t, m, P, request("q", { "a's", "b b" })))
    assert.are.equal([=[Query: q Docs: ["a's", 'b b']]=], t.calls[1].body.messages[2].content)
    assert.are.same({ 0.2, 0.8 }, out.scores)
    assert.are.equal(0, out.repairs)
  end)
end)

describe("openai_llm, pointwise mode", function()
  local P = load_provider(ROOT .. "/providers/openai_llm.lua")

  local function scorer(body)
    local q, d = pointwise_parts(body)
    return chat(cjson.encode({ relevance_score = share(q, d) }))
  end

  it("one call per document in one round, bounded by concurrency (default 8)", function()
    local m = model_of({ mode = "pointwise" })
    local t = transport(scorer)
    local out = assert(upstream.call(t, m, P, request("red apple", { "green pear", "red apple", "apple" })))
    assert.are.equal(1, #t.rounds)
    assert.are.equal(3, t.rounds[1].n)
    assert.are.equal(8, t.rounds[1].concurrency)
    assert.are.same({ 0, 1, 0.5 }, out.scores)
    assert.are.same({ prompt_tokens = 30, completion_tokens = 6, total_tokens = 36 }, out.usage)
  end)

  it("a failed call scores 0 and marks degraded; the rest stand", function()
    local m = model_of({ mode = "pointwise" })
    local t = transport(function(body)
      local _, d = pointwise_parts(body)
      if d == "flaky" then return { status = 500, headers = {}, body = '{"error":{"message":"boom"}}' } end
      if d == "slow" then return { error = "timeout: 30 s" } end
      return scorer(body)
    end)
    local out = assert(upstream.call(t, m, P, request("red apple", { "flaky", "red apple", "slow", "apple" })))
    assert.are.same({ 0, 1, 0, 0.5 }, out.scores)
    assert.is_true(out.degraded)
    assert.are.equal(0, out.repairs)
  end)

  it("unparseable answers score 0 and count as repairs; odd ones are coerced", function()
    local m = model_of({ mode = "pointwise" })
    local answers = { a = "no idea", b = '{"relevance_score": "0.5"}', c = "Relevance: 80%", d = '{"relevance_score": 2}' }
    local t = transport(function(body)
      local _, d = pointwise_parts(body)
      return chat(answers[d])
    end)
    local out = assert(upstream.call(t, m, P, request("q", { "a", "b", "c", "d" })))
    assert.are.same({ 0, 0.5, 0.8, 1 }, out.scores)
    assert.are.equal(4, out.repairs)
    assert.is_true(out.degraded)
  end)

  it("every call failing fails the request with the upstream's status", function()
    local m = model_of({ mode = "pointwise" })
    local t = transport(function()
      return { status = 429, headers = { ["retry-after"] = "2" }, body = '{"error":{"message":"Rate limit reached"}}' }
    end)
    local out, err = upstream.call(t, m, P, request("q", { "a", "b" }))
    assert.is_nil(out)
    assert.are.equal(502, err.status)
    assert.are.equal(429, err.upstream_status)
    assert.truthy(err.message:find("HTTP 429: Rate limit reached", 1, true))
    t = transport(function() return { error = "timeout: 1 s" } end)
    out, err = upstream.call(t, m, P, request("q", { "a" }))
    assert.is_nil(out)
    assert.are.equal(504, err.status)
  end)

  it("call_retries re-sends only the failed calls in a further round", function()
    local m = model_of({ mode = "pointwise", call_retries = 1 })
    local seen = {}
    local t = transport(function(body)
      local _, d = pointwise_parts(body)
      seen[d] = (seen[d] or 0) + 1
      if d == "b" and seen[d] == 1 then return { status = 503, headers = {}, body = "{}" } end
      if d == "c" then return { status = 400, headers = {}, body = "{}" } end -- not retryable
      return chat('{"relevance_score": 0.5}')
    end)
    local out = assert(upstream.call(t, m, P, request("q", { "a", "b", "c" })))
    assert.are.equal(2, #t.rounds)
    assert.are.equal(1, t.rounds[2].n)
    assert.are.same({ 0.5, 0.5, 0 }, out.scores)
    assert.are.same({ a = 1, b = 2, c = 1 }, seen)
    assert.is_true(out.degraded) -- c
  end)

  it("yes_no: logprobs asked for, P(yes) used; logprobs = false drops them", function()
    local m = model_of({ template = "yes_no" })
    local t = transport(function(body)
      local q, d = pointwise_parts(body)
      local p = 0.1 + 0.8 * share(q, d:gsub("\n\nIs the document.*$", ""))
      return { status = 200, headers = {}, body = cjson.encode({ choices = { { message = { content = "yes" },
        logprobs = { content = { { token = "yes", logprob = math.log(p), top_logprobs = {
          { token = "yes", logprob = math.log(p) }, { token = "no", logprob = math.log(1 - p) } } } } } } } }) }
    end)
    local out = assert(upstream.call(t, m, P, request("red apple", { "pear", "red apple", "apple" })))
    assert.is_true(t.calls[1].body.logprobs)
    assert.are.equal(5, t.calls[1].body.top_logprobs)
    assert.are.equal(1, t.calls[1].body.max_tokens)
    assert.are.same({ 0.1, 0.9, 0.5 }, out.scores)
    local m2 = model_of({ template = "yes_no", logprobs = false })
    local t2 = transport(function() return chat("no") end)
    out = assert(upstream.call(t2, m2, P, request("q", { "a" })))
    assert.is_nil(t2.calls[1].body.logprobs)
    assert.is_nil(t2.calls[1].body.top_logprobs)
    assert.are.same({ 0 }, out.scores)
  end)

  it("instruction: the request's overrides the model's; extra_body merges (null deletes)", function()
    local m = model_of({ mode = "pointwise", instruction = "model says", temperature = 0.3, json_mode = false,
                         extra_body = { seed = 7 } })
    local t = transport(function() return chat('{"relevance_score": 1}') end)
    assert(upstream.call(t, m, P, request("q", { "a" })))
    local b = t.calls[1].body
    assert.truthy(b.messages[1].content:find("\nmodel says$"))
    assert.are.equal(0.3, b.temperature)
    assert.are.equal(7, b.seed)
    assert.is_nil(b.response_format)
    t = transport(function() return chat('{"relevance_score": 1}') end)
    assert(upstream.call(t, m, P, request("q", { "a" }, { instruction = "request says", extra_body = { seed = 8 } })))
    b = t.calls[1].body
    assert.truthy(b.messages[1].content:find("\nrequest says$"))
    assert.falsy(b.messages[1].content:find("model says", 1, true))
    assert.are.equal(8, b.seed)
    t = transport(function() return chat('{"relevance_score": 1}') end)
    assert(upstream.call(t, model_of({ mode = "pointwise" }), P, request("q", { "a" },
      { extra_body = { response_format = json.null } })))
    assert.is_nil(t.calls[1].body.response_format)
  end)

  it("a template of the wrong kind is a clear 500", function()
    local m = model_of({ template = "rankgpt" })
    local out, err = upstream.call(transport(function() return chat("") end), m, P, request("q", { "a" }))
    assert.is_nil(out)
    assert.are.equal(500, err.status)
    assert.truthy(err.message:find("openai_listwise", 1, true))
    m = model_of({ template = "yes_no", mode = "lancedb" })
    out, err = upstream.call(transport(function() return chat("") end), m, P, request("q", { "a" }))
    assert.is_nil(out)
    assert.truthy(err.message:find('mode is "lancedb"', 1, true))
  end)
end)

describe("openai_listwise", function()
  local P = load_provider(ROOT .. "/providers/openai_listwise.lua")

  -- orders each window by share(query, passage), ties by position, like a perfect model
  local function ranker(body, _, _, _, mangle)
    local msgs = body.messages
    local q = msgs[2].content:match("relevance to query: (.*)%.$")
    local items = {}
    for i = 4, #msgs - 1, 2 do
      local k, text = msgs[i].content:match("^%[(%d+)%] (.*)$")
      items[#items + 1] = { k = tonumber(k), s = share(q, text) }
    end
    table.sort(items, function(a, b)
      if a.s ~= b.s then return a.s > b.s end
      return a.k < b.k
    end)
    local ids = {}
    for i, it in ipairs(items) do ids[i] = "[" .. it.k .. "]" end
    local text = table.concat(ids, " > ")
    if mangle then text = mangle(text) end
    return chat(text)
  end

  local function lw(opts, extra)
    local e = { provider = "openai_listwise" }
    for k, v in pairs(opts or {}) do e[k] = v end
    return model_of(e, extra)
  end

  local function order(out)
    local idx = {}
    for i = 1, #out.scores do idx[i] = i end
    table.sort(idx, function(a, b)
      if out.scores[a] ~= out.scores[b] then return out.scores[a] > out.scores[b] end
      return a < b
    end)
    for i, x in ipairs(idx) do idx[i] = x - 1 end
    return idx
  end

  it("windows run back to front, one call per round, RankGPT messages, temperature 0", function()
    local m = lw()
    local t = transport(ranker)
    local docs = docs_n(25, "passage %d")
    docs[25] = "target passage about cats" -- index 24, last
    local out = assert(upstream.call(t, m, P, request("cats", docs)))
    assert.are.equal(2, #t.rounds)
    for _, r in ipairs(t.rounds) do assert.are.equal(1, r.n) end
    local b1, b2 = t.calls[1].body, t.calls[2].body
    assert.are.equal("gpt-3.5-turbo", b1.model)
    assert.are.equal(0, b1.temperature)
    assert.are.equal(3 + 2 * 20 + 1, #b1.messages) -- positions 6..25
    assert.are.equal("[1] passage 5", b1.messages[4].content)
    assert.are.equal(3 + 2 * 15 + 1, #b2.messages) -- positions 1..15, the target moved up
    assert.are.equal(24, order(out)[1])
    assert.are.equal("rank", out.score_kind)
    assert.are.equal(0, out.repairs)
    assert.are.same({ prompt_tokens = 20, completion_tokens = 4, total_tokens = 24 }, out.usage)
  end)

  it("rank-derived scores: 1 - (r - 1) / n; documents past candidates keep their order", function()
    local m = lw({ candidates = 4, window = 4, step = 2 })
    local t = transport(ranker)
    local out = assert(upstream.call(t, m, P, request("x", { "a", "b", "c x", "d", "e", "f x" })))
    assert.are.equal(1, #t.rounds)
    assert.are.same({ 2, 0, 1, 3, 4, 5 }, order(out))
    assert.are.equal(1, out.scores[3])
    assert.are.equal(5 / 6, out.scores[1])
    assert.are.equal(1 / 6, out.scores[6])
  end)

  it("permutation repair: duplicates, out-of-range ids and missing ids are counted", function()
    local m = lw({ window = 3, step = 3 })
    local t = transport(function(body) return ranker(body, nil, nil, nil, function() return "[3] > [3] > [7] > [1]" end) end)
    local out = assert(upstream.call(t, m, P, request("x", { "a", "b", "c" })))
    assert.are.same({ 2, 0, 1 }, order(out))
    assert.are.equal(3, out.repairs)
    assert.is_nil(out.degraded)
  end)

  it("a failed window keeps its order (degraded); all failing fails the request", function()
    local m = lw({ window = 3, step = 2 })
    local n = 0
    local t = transport(function(body)
      n = n + 1
      if n == 1 then return { status = 500, headers = {}, body = "{}" } end
      return ranker(body)
    end)
    local out = assert(upstream.call(t, m, P, request("x", { "a", "b", "c", "d", "e x" })))
    assert.is_true(out.degraded)
    assert.are.same({ 0, 1, 2, 3, 4 }, order(out)) -- window [3,5] failed, [1,3] had nothing to move
    local out2, err = upstream.call(transport(function() return { status = 503, headers = {}, body = "{}" } end),
      m, P, request("x", { "a", "b", "c", "d", "e x" }))
    assert.is_nil(out2)
    assert.are.equal(502, err.status)
  end)

  it("call_retries repeats a window", function()
    local m = lw({ call_retries = 2 })
    local n = 0
    local t = transport(function(body)
      n = n + 1
      if n <= 2 then return { status = 429, headers = {}, body = "{}" } end
      return ranker(body)
    end)
    local out = assert(upstream.call(t, m, P, request("x", { "a", "b x" })))
    assert.are.equal(3, #t.rounds)
    assert.is_nil(out.degraded)
    assert.are.same({ 1, 0 }, order(out))
  end)

  it("one document: no call", function()
    local t = transport(ranker)
    local out = assert(upstream.call(t, lw(), P, request("x", { "a" })))
    assert.are.equal(0, #t.calls)
    assert.are.same({ 1 }, out.scores)
  end)

  it("instruction and max_words reach the prompt", function()
    local m = lw({ max_words = 2, instruction = "Prefer recent passages." })
    local t = transport(ranker)
    assert(upstream.call(t, m, P, request("x", { "one two three", "four five six" })))
    local b = t.calls[1].body
    assert.are.equal("[1] one two", b.messages[4].content)
    assert.truthy(b.messages[1].content:find("\nPrefer recent passages.$"))
  end)
end)
