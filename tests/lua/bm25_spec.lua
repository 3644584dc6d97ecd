-- The embedded bm25 model through the library (require "rerank"): language (Snowball
-- stemming; none = the exact words of before, bit for bit), stopwords, field weights
-- (BM25F), rank_fields, pseudo-relevance feedback, k1/b, return_score "all" and threads
-- (a large request's documents scanned by several threads, with the same scores).
local rerank = require "rerank"
local cjson = require "cjson"

local root = os.getenv("PWD")

local function model(opts)
  local m = { name = "bm25", provider = "bm25" }
  for k, v in pairs(opts or {}) do m[k] = v end
  return assert(rerank.new({ models = { m } }))
end

-- scores by document index (0-based) and the order
local function scores(r, req)
  req.model = req.model or "bm25"
  local res = assert(r:rerank(req))
  local by, order = {}, {}
  for i, it in ipairs(res.results) do
    by[it.index] = it.relevance_score
    order[i] = it.index
  end
  return by, order, res
end

local README = {
  query = "How do I deploy a model?",
  documents = {
    { id = "doc_1", text = "Deployments let you run models behind an API endpoint..." },
    { id = "doc_2", text = "Billing lets you add balance and view usage..." },
    { id = "doc_3", text = "A GPU runtime is used to run training jobs..." },
  },
}

describe("bm25 language", function()
  local fixture = cjson.decode(assert(io.open(root .. "/tests/fixtures/bm25/exact_none.json")):read("*a"))

  for _, opts in ipairs({ { language = "none" }, {} }) do
    it("language " .. (opts.language or "unset") .. " reproduces the scores recorded before stemming, bit for bit", function()
      local r = model(opts)
      for _, c in ipairs(fixture.cases) do
        local by = scores(r, { query = c.query, documents = c.documents })
        local cut = scores(r, { query = c.query, documents = c.documents, max_tokens_per_document = 3 })
        for j = 1, #c.documents do
          assert.are.equal(c.scores[j], ("%.17g"):format(by[j - 1]), c.query .. " doc " .. j)
          assert.are.equal(c.scores_max3[j], ("%.17g"):format(cut[j - 1]), c.query .. " doc " .. j .. " (3 tokens)")
        end
      end
    end)
  end

  it("english matches the README's relevant document (deploy ~ deployments, model ~ models)", function()
    local by, order = scores(model({ language = "english" }), README)
    assert.is_true(by[0] > 0)
    assert.are.equal(0, by[1])
    assert.are.equal(0, by[2])
    assert.are.equal(0, order[1])
    local exact = scores(model({ language = "none" }), README)
    assert.are.equal(0, exact[0])
  end)

  it("stems other languages too (french)", function()
    local by = scores(model({ language = "french" }), { query = "continuellement",
      documents = { "il pleut continuel", "rien" } })
    assert.is_true(by[0] > 0)
    assert.are.equal(0, by[1])
  end)
end)

describe("bm25 stopwords", function()
  local docs = { "the the the the", "a model of the world", "deploy" }

  it("english drops its stopwords from the query and the documents by default", function()
    local by = scores(model({ language = "english" }), { query = "the", documents = docs })
    for i = 0, 2 do assert.are.equal(0, by[i]) end
    local kept = scores(model({ language = "english", stopwords = false }), { query = "the", documents = docs })
    assert.is_true(kept[0] > kept[1] and kept[1] > 0)
  end)

  it("a list in the config replaces the shipped one", function()
    local r = model({ language = "english", stopwords = { "model" } })
    local by = scores(r, { query = "the model", documents = docs })
    assert.is_true(by[0] > 0)      -- "the" is a term now
    local only = scores(r, { query = "models", documents = docs })
    assert.are.equal(0, only[1])   -- "models" is a stopword only as written: it stems, it is not "model"
    local m = scores(r, { query = "model", documents = docs })
    assert.are.equal(0, m[1])
  end)

  it("works with language none too", function()
    local by = scores(model({ language = "none", stopwords = { "the" } }), { query = "the world", documents = docs })
    assert.are.equal(0, by[0])
    assert.is_true(by[1] > 0)
  end)
end)

describe("bm25 field weights", function()
  local docs = {
    { text = "A guide to billing, invoices and a deployment checklist.", title = "Billing" },
    { text = "How billing works for teams.", title = "Deployment" },
  }

  it("weighs the title twice the text by default (a title match wins)", function()
    local by, order = scores(model({ language = "english" }), { query = "deployment", documents = docs })
    assert.are.equal(1, order[1])
    assert.is_true(by[1] > by[0])
  end)

  it("fields: title 0 ignores titles; equal weights score title + text as one text", function()
    local by = scores(model({ language = "english", fields = { title = 0 } }), { query = "deployment", documents = docs })
    assert.are.equal(0, by[1])
    local one = scores(model({ language = "english", fields = { title = 1 } }),
      { query = "deployment billing", documents = docs })
    local concat = scores(model({ language = "english" }), { query = "deployment billing", documents = {
      docs[1].text .. " " .. docs[1].title, docs[2].text .. " " .. docs[2].title } })
    assert.are.equal(concat[0], one[0])
    assert.are.equal(concat[1], one[1])
  end)

  it("rank_fields score the named fields, each with its weight", function()
    local d = {
      { text = "nothing here", tags = "gpu training", body = "deploy models" },
      { text = "nothing here", tags = "deploy", body = "gpu training jobs" },
    }
    local r = model({ language = "english", fields = { tags = 5 } })
    local by, order = scores(r, { query = "deploy gpu", documents = d, rank_fields = { "tags", "body" } })
    assert.is_true(by[0] > 0 and by[1] > 0)
    local plain = scores(r, { query = "deploy gpu", documents = d })
    assert.are.equal(0, plain[0]) -- without rank_fields only the text counts
    local tags_only = scores(r, { query = "training", documents = d, rank_fields = { "tags" } })
    assert.is_true(tags_only[0] > 0)
    assert.are.equal(0, tags_only[1])
    assert.are.equal(2, #order)
  end)
end)

describe("bm25 pseudo-relevance feedback", function()
  local docs = {
    "nickel toxicity in rats and nickel carbonyl inhalation",
    "carbonyl inhalation causes lung tumours in rats",
    "nickel allergy and cobalt allergy in patients",
    "selenium toxicity in chick embryos",
    "lung tumours after carbonyl exposure",
    "a history of the dewey decimal classification",
  }

  it("adds the top documents' terms: a document sharing only those now scores; deterministic", function()
    local base = scores(model({ language = "english" }), { query = "nickel toxicity", documents = docs })
    local r = model({ language = "english", feedback = { docs = 2, terms = 20, weight = 0.5 } })
    local fb = scores(r, { query = "nickel toxicity", documents = docs })
    local again = scores(r, { query = "nickel toxicity", documents = docs })
    assert.are.equal(0, base[4])
    assert.is_true(fb[4] > 0)
    assert.are.equal(0, fb[5])
    for i = 0, 5 do assert.are.equal(fb[i], again[i]) end
  end)

  it("feedback: true takes the defaults (10 documents, 20 terms, weight 0.5)", function()
    local a = scores(model({ language = "english", feedback = true }), { query = "nickel toxicity", documents = docs })
    local b = scores(model({ language = "english", feedback = { docs = 10, terms = 20, weight = 0.5 } }),
      { query = "nickel toxicity", documents = docs })
    for i = 0, 5 do assert.are.equal(a[i], b[i]) end
  end)
end)

describe("bm25 k1, b and return_score all", function()
  it("k1 and b change the scores", function()
    local d = { "cat cat cat dog dog dog dog dog", "cat" }
    local a = scores(model({}), { query = "cat", documents = d })
    local b = scores(model({ k1 = 2.0, b = 0 }), { query = "cat", documents = d })
    assert.are_not.equal(a[0], b[0])
  end)

  it("return_score all lists each document's matched terms (stems) with their tf", function()
    local req = { query = README.query, documents = README.documents, return_score = "all" }
    local _, _, res = scores(model({ language = "english" }), req)
    local first = res.results[1]
    assert.are.same({ deploy = 1, model = 1 }, first.matched_terms)
    assert.are.same({}, res.results[2].matched_terms)
    local _, _, plain = scores(model({ language = "english" }), { query = README.query, documents = README.documents })
    assert.is_nil(plain.results[1].matched_terms)
  end)
end)

describe("bm25 threads", function()
  -- about 400 KB of text: above what one thread scans alone (128 KB per thread)
  local words = { "deploy", "deployments", "models", "model", "running", "runs", "endpoint", "the", "of",
                  "nickel", "toxicity", "rats", "carbonyl", "inhalation", "lung", "Tumours", "école", "x1" }
  local function corpus(n, objects)
    local seed, docs = 7, {}
    local function nxt() seed = (seed * 1103515245 + 12345) % 2147483648; return seed end
    for i = 1, n do
      local t = {}
      for w = 1, 60 + nxt() % 120 do t[w] = words[1 + nxt() % #words] end
      local text = table.concat(t, nxt() % 3 == 0 and ", " or " ")
      docs[i] = objects and { title = words[1 + nxt() % #words] .. " " .. words[1 + nxt() % #words], text = text } or text
    end
    return docs
  end

  for _, case in ipairs({
    { "string documents", { language = "english" }, false },
    { "exact words", { language = "none" }, false },
    { "title and text (BM25F) with feedback", { language = "english", feedback = { docs = 5, terms = 10, weight = 0.5 } }, true },
  }) do
    it(case[1] .. ": 2 to 4 threads give one thread's scores, bit for bit", function()
      local docs = corpus(600, case[3])
      local req = { query = "deploy models toxicity", documents = docs, return_score = "all" }
      local opts1 = { threads = 1 }
      for k, v in pairs(case[2]) do opts1[k] = v end
      local one, order1, res1 = scores(model(opts1), req)
      assert.is_true(#res1.results == 600 and res1.usage.prompt_tokens > 50000)
      for t = 2, 4 do
        local opts = { threads = t }
        for k, v in pairs(case[2]) do opts[k] = v end
        local many, order, res = scores(model(opts), req)
        assert.are.same(one, many)
        assert.are.same(order1, order)
        assert.are.equal(res1.usage.prompt_tokens, res.usage.prompt_tokens)
        assert.are.same(res1.results[1].matched_terms, res.results[1].matched_terms)
      end
    end)
  end

  it('"auto" is accepted; anything but "auto" or 1 to 4 is a config error', function()
    assert.truthy(rerank.new({ models = { { name = "b", provider = "bm25", threads = "auto" } } }))
    for _, bad in ipairs({ 0, 5, 1.5, "two", true }) do
      local r, err = rerank.new({ models = { { name = "b", provider = "bm25", threads = bad } } })
      assert.is_nil(r)
      assert.truthy(tostring(err):find('threads must be "auto" or an integer from 1 to 4', 1, true), tostring(err))
    end
  end)
end)
