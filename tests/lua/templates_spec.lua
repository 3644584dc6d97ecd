-- The shipped prompt templates (lua/rerank/llm/templates/*.lua): messages() against what
-- LanceDB and RankGPT build in Python (tests/fixtures/llm/python_reference.json, regenerated
-- by gen_python_reference.py), and parse() on good and broken model outputs
-- (tests/fixtures/llm/parse_cases.json).
local cjson = require "cjson"
local llm = require "rerank.llm"
local paths = require "rerank.config.paths"

local ROOT = paths.root()
local FIX = ROOT .. "/tests/fixtures/llm/"

local function readjson(name)
  local f = assert(io.open(FIX .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return cjson.decode(s)
end

local REF = readjson("python_reference.json")
local CASES = readjson("parse_cases.json")

local function tpl(name)
  local t, err = llm.load_template(ROOT .. "/lua/rerank/llm/templates/" .. name .. ".lua")
  assert(t, err)
  return t
end

local function nulls_to_nil(list, n)
  local out = {}
  for i = 1, n do
    local v = list[i]
    if v ~= cjson.null then out[i] = v end
  end
  return out
end

local function near(a, b)
  return type(a) == "number" and type(b) == "number" and math.abs(a - b) < 1e-9
end

describe("template files", function()
  for _, name in ipairs({ "lancedb", "lancedb_exact", "pointwise_json", "yes_no", "rankgpt" }) do
    it(name .. " loads and declares its kind", function()
      local t = tpl(name)
      assert.are.equal(name, t.name)
      assert.is_function(t.messages)
      assert.is_function(t.parse)
      assert.truthy(({ list = true, pointwise = true, listwise = true })[t.kind])
    end)
  end

  it("kinds: lancedb list, pointwise_json and yes_no pointwise, rankgpt listwise", function()
    assert.are.equal("list", tpl("lancedb").kind)
    assert.are.equal("list", tpl("lancedb_exact").kind)
    assert.are.equal("pointwise", tpl("pointwise_json").kind)
    assert.are.equal("pointwise", tpl("yes_no").kind)
    assert.are.equal("listwise", tpl("rankgpt").kind)
  end)
end)

describe("lancedb messages", function()
  local ref = REF.lancedb
  local window = {}
  for i, text in ipairs(ref.documents) do window[i] = { id = i - 1, text = text } end

  it("system prompt is LanceDB's runtime string byte for byte (548 chars, 24-space joins)", function()
    local m = tpl("lancedb").messages(ref.query, window, {})
    assert.are.equal(2, #m)
    assert.are.equal("system", m[1].role)
    assert.are.equal(ref.system, m[1].content)
    assert.are.equal(548, #m[1].content)
    assert.truthy(m[1].content:find("relevance_score.  relevance_score", 1, true))
  end)

  it("user message: Query: {query} Docs: {python repr of {'id', 'content'} dicts}", function()
    local m = tpl("lancedb").messages(ref.query, window, {})
    assert.are.equal("user", m[2].role)
    assert.are.equal(ref.ids_user, m[2].content)
  end)

  it("lancedb_exact sends the bare strings exactly like LanceDB's f-string", function()
    local m = tpl("lancedb_exact").messages(ref.query, window, {})
    assert.are.equal(ref.system, m[1].content)
    assert.are.equal(ref.exact_user, m[2].content)
    -- and the lancedb template with ids = false is the same thing
    local m2 = tpl("lancedb").messages(ref.query, window, { ids = false })
    assert.are.equal(ref.exact_user, m2[2].content)
  end)

  it("an instruction goes on its own line after the system prompt", function()
    local m = tpl("lancedb").messages(ref.query, window, { instruction = "Prefer official sources." })
    assert.are.equal(ref.system .. "\nPrefer official sources.", m[1].content)
    assert.are.equal(ref.ids_user, m[2].content)
  end)

  it("asks for JSON mode at temperature 0", function()
    assert.are.same({ response_format = { type = "json_object" }, temperature = 0 }, tpl("lancedb").request)
  end)
end)

describe("rankgpt messages", function()
  local ref = REF.rankgpt
  local window = {}
  for i, text in ipairs(ref.documents) do window[i] = { id = i - 1, text = text } end

  it("are RankGPT's create_permutation_instruction messages exactly", function()
    local m = tpl("rankgpt").messages(ref.query, window, {})
    assert.are.equal(#ref.messages, #m)
    for i, want in ipairs(ref.messages) do
      assert.are.equal(want.role, m[i].role, "message " .. i)
      assert.are.equal(want.content, m[i].content, "message " .. i)
    end
  end)

  it("cuts passages to 300 words, drops 'Title: Content: ' and squeezes whitespace", function()
    local m = tpl("rankgpt").messages(ref.query, window, {})
    assert.are.equal("[1] how to bake bread", m[4].content)
    assert.are.equal("[2] Paris is big", m[6].content)
    local words = 0
    for _ in m[8].content:gmatch("%S+") do words = words + 1 end
    assert.are.equal(301, words) -- "[3]" + 300 words
  end)

  it("max_words and instruction are options", function()
    local m = tpl("rankgpt").messages("q", { { id = 0, text = "a b c d" } }, { max_words = 2, instruction = "Be strict." })
    assert.are.equal("[1] a b", m[4].content)
    assert.truthy(m[1].content:find("\nBe strict.$"))
    assert.are.equal(3 + 2 + 1, #m)
  end)

  it("parse is RankGPT's receive_permutation on its own examples", function()
    for _, c in ipairs(REF.rankgpt_receive) do
      local out = tpl("rankgpt").parse(c.text, { n = c.n })
      assert.are.same(c.rankgpt, out.permutation, c.text)
    end
  end)
end)

describe("pointwise messages", function()
  it("pointwise_json: query and document in the user message, JSON score asked in the system", function()
    local t = tpl("pointwise_json")
    local m = t.messages("red apples", { id = 3, text = "an apple a day" }, {})
    assert.are.equal(2, #m)
    assert.truthy(m[1].content:find('{"relevance_score": <number>}', 1, true))
    assert.are.equal("Query: red apples\n\nDocument: an apple a day", m[2].content)
    assert.are.same({ type = "json_object" }, t.request.response_format)
    local mi = t.messages("q", { text = "d" }, { instruction = "Focus on recency." })
    assert.truthy(mi[1].content:find("\nFocus on recency.$"))
  end)

  it("yes_no asks for yes or no with logprobs and one token", function()
    local t = tpl("yes_no")
    local m = t.messages("red apples", { id = 0, text = "an apple a day" }, {})
    assert.truthy(m[1].content:find('Answer only "yes" or "no".', 1, true))
    assert.are.equal("Query: red apples\n\nDocument: an apple a day\n\nIs the document relevant to the query? Answer yes or no.",
      m[2].content)
    assert.is_true(t.request.logprobs)
    assert.are.equal(5, t.request.top_logprobs)
    assert.are.equal(1, t.request.max_tokens)
  end)
end)

describe("parse on model outputs", function()
  local window = CASES.window
  for _, name in ipairs({ "pointwise_json", "yes_no", "lancedb", "rankgpt" }) do
    for _, c in ipairs(CASES[name]) do
      it(name .. ": " .. c.name, function()
        local ctx = { window = window, n = #window }
        if c.choice then ctx.choice = c.choice end
        local out, err = tpl(name).parse(c.text, ctx)
        local e = c.expect
        if e.error then
          assert.is_nil(out)
          assert.is_string(err)
          return
        end
        assert.is_table(out, tostring(err))
        assert.are.equal(e.repairs, out.repairs)
        if e.score then
          assert.is_true(near(e.score, out.score), ("score %s, want %s"):format(tostring(out.score), e.score))
        elseif e.scores then
          local want = nulls_to_nil(e.scores, #window)
          for i = 1, #window do
            if want[i] == nil then
              assert.is_nil(out.scores[i], "score " .. i)
            else
              assert.is_true(near(want[i], out.scores[i]), ("score %d: %s, want %s"):format(i, tostring(out.scores[i]), want[i]))
            end
          end
        else
          assert.are.same(e.permutation, out.permutation)
        end
      end)
    end
  end
end)
