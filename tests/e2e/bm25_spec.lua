-- The embedded bm25 model over HTTP (the real daemon): the shipped config's English stemming
-- on the README example, language none bit for bit as before stemming, stopwords, field
-- weights, rank_fields, pseudo-relevance feedback, return_score "all", threads and config
-- errors.
local d = require "support.daemon"
local cjson = require "cjson"

local README = {
  model = "bm25",
  query = "How do I deploy a model?",
  documents = {
    { id = "doc_1", text = "Deployments let you run models behind an API endpoint..." },
    { id = "doc_2", text = "Billing lets you add balance and view usage..." },
    { id = "doc_3", text = "A GPU runtime is used to run training jobs..." },
  },
  top_n = 2,
  return_documents = true,
}

local CONFIG = [[
server: { listen: "127.0.0.1:0", auth: none }
default_model: en
models:
  - { name: en, provider: bm25, language: english }
  - { name: none, provider: bm25, language: none }
  - { name: en-nostop, provider: bm25, language: english, stopwords: false }
  - { name: en-mystop, provider: bm25, language: english, stopwords: [deploy] }
  - { name: en-notitle, provider: bm25, language: english, fields: { title: 0 } }
  - { name: en-tags, provider: bm25, language: english, fields: { tags: 5 } }
  - { name: en-fb, provider: bm25, language: english, feedback: { docs: 2, terms: 20, weight: 0.5 } }
  - { name: en-k1, provider: bm25, language: english, k1: 2.0, b: 0 }
  - { name: en-t1, provider: bm25, language: english, threads: 1 }
  - { name: en-t3, provider: bm25, language: english, threads: 3 }
]]

local function rank(srv, body)
  local status, raw, _, j = d.request(srv, "/v1/rerank", { body = body })
  assert.are.equal(200, status, raw)
  local by = {}
  for _, r in ipairs(j.results) do by[r.index] = r.relevance_score end
  return by, j, raw
end

describe("bm25 over HTTP, shipped config.yaml", function()
  local srv
  setup(function() srv = assert(d.start(nil)) end)
  teardown(function() d.stop(srv) end)

  it("ranks the README's relevant document first with a non-zero score", function()
    local by, j = rank(srv, README)
    assert.are.equal("doc_1", j.results[1].document.id)
    assert.is_true(by[0] > 0)
    assert.are.equal(0, j.results[2].relevance_score)
  end)

  it("return_score all shows the matched stems per document", function()
    local body = cjson.decode(cjson.encode(README))
    body.return_score = "all"
    body.return_documents = false
    local _, _, raw = rank(srv, body)
    assert.truthy(raw:find('"matched_terms":{"deploy":1,"model":1}', 1, true), raw)
    assert.truthy(raw:find('"matched_terms":{}', 1, true), raw)
  end)
end)

describe("bm25 options over HTTP", function()
  local srv
  setup(function() srv = assert(d.start(CONFIG)) end)
  teardown(function() d.stop(srv) end)

  it("language none gives the scores recorded before stemming, bit for bit", function()
    local fixture = cjson.decode(d.readfile(d.root .. "/tests/fixtures/bm25/exact_none.json"))
    for _, c in ipairs(fixture.cases) do
      local by = rank(srv, { model = "none", query = c.query, documents = c.documents })
      for i = 1, #c.documents do assert.are.equal(c.scores[i], ("%.17g"):format(by[i - 1]), c.query) end
    end
  end)

  it("stopwords: shipped by default, off, or the config's list", function()
    local docs = { "the the the", "deploy the model" }
    assert.are.equal(0, rank(srv, { model = "en", query = "the", documents = docs })[0])
    assert.is_true(rank(srv, { model = "en-nostop", query = "the", documents = docs })[0] > 0)
    local mine = rank(srv, { model = "en-mystop", query = "deploy the model", documents = docs })
    assert.is_true(mine[0] > 0) -- "the" is no stopword in this list
    local only = rank(srv, { model = "en-mystop", query = "deploy", documents = docs })
    assert.are.equal(0, only[1])
  end)

  it("field weights: a title match outranks a text match; title 0 ignores titles", function()
    local docs = { { text = "billing and a deployment checklist", title = "Billing" },
                   { text = "how billing works", title = "Deployment" } }
    local _, j = rank(srv, { model = "en", query = "deployment", documents = docs })
    assert.are.equal(1, j.results[1].index)
    local off = rank(srv, { model = "en-notitle", query = "deployment", documents = docs })
    assert.are.equal(0, off[1])
  end)

  it("rank_fields (Cohere v1 shape) score the named fields with their weights", function()
    local body = { model = "en-tags", query = "training", rank_fields = { "tags", "body" }, documents = {
      { text = "x", tags = "gpu training", body = "deploy models" },
      { text = "x", tags = "deploy", body = "gpu training jobs" } } }
    local status, raw, _, j = d.request(srv, "/cohere/v1/rerank", { body = body })
    assert.are.equal(200, status, raw)
    assert.are.equal(0, j.results[1].index) -- the tags match (weight 5) beats the body match
    assert.is_true(j.results[2].relevance_score > 0)
  end)

  it("feedback expands the query from the top documents, deterministically", function()
    local docs = { "nickel toxicity in rats and nickel carbonyl inhalation", "carbonyl inhalation causes lung tumours in rats",
                   "nickel allergy and cobalt allergy in patients", "selenium toxicity in chick embryos",
                   "lung tumours after carbonyl exposure", "a history of the dewey decimal classification" }
    local base = rank(srv, { model = "en", query = "nickel toxicity", documents = docs })
    local fb = rank(srv, { model = "en-fb", query = "nickel toxicity", documents = docs })
    local again = rank(srv, { model = "en-fb", query = "nickel toxicity", documents = docs })
    assert.are.equal(0, base[4])
    assert.is_true(fb[4] > 0)
    assert.are.same(fb, again)
  end)

  it("k1 and b are model options", function()
    local docs = { "cat cat cat dog dog dog dog", "cat" }
    local a = rank(srv, { model = "en", query = "cat", documents = docs })
    local b = rank(srv, { model = "en-k1", query = "cat", documents = docs })
    assert.are_not.equal(a[0], b[0])
  end)
end)

describe("bm25 over HTTP: string documents read in place (lazy texts, the body outside the Lua heap)", function()
  local srv
  setup(function() srv = assert(d.start(CONFIG)) end)
  teardown(function() d.stop(srv) end)

  it("scores plain, escaped and non-ASCII strings as the library does, and echoes the client's bytes", function()
    -- the raw JSON: escapes and non-ASCII written as the client wrote them
    local raw = [[{"model":"%s","query":"deploy models caf\u00e9","top_n":5,"return_documents":true,"documents":[]]
        .. [["Deploy models behind an endpoint",]]          -- plain: read in place
        .. [["deploy \"quoted\" models\nnext line",]]      -- escapes: made a string
        .. [["caf\u00e9 deploy",]]                           -- escaped non-ASCII
        .. [["café models café",]]                            -- raw UTF-8, read in place
        .. [[{"text":"models deploy deploy","id":"o1"},]]     -- an object
        .. [[""]}]]
    local rerank = require "rerank"
    for _, model in ipairs({ "en", "none" }) do
      local body = raw:format(model)
      local by, j, text = rank(srv, body)
      local lib = assert(rerank.new({ models = { { name = model, provider = "bm25",
                                                   language = model == "en" and "english" or "none" } } }))
      local want = assert(lib:rerank(cjson.decode(body)))
      for _, r in ipairs(want.results) do
        assert.are.equal(r.relevance_score, by[r.index], model .. " document " .. r.index)
      end
      -- returned documents are the client's own bytes
      assert.truthy(text:find([["document":"deploy \"quoted\" models\nnext line"]], 1, true), text)
      assert.truthy(text:find([["document":"caf\u00e9 deploy"]], 1, true), text)
      assert.truthy(text:find('"document":"café models café"', 1, true), text)
      assert.are.equal(5, #j.results)
    end
  end)
end)

describe("bm25 over HTTP: threads", function()
  local srv
  setup(function() srv = assert(d.start(CONFIG)) end)
  teardown(function() d.stop(srv) end)

  it("a large request scanned by 3 threads answers what one thread does, byte for byte but the id", function()
    -- about 450 KB of string documents (read in place), some with escapes
    local words = { "deploy", "deployments", "models", "Model", "running", "the", "of", "endpoint", "caf\\u00e9",
                    "nickel", "toxicity", "lung", "tumours", "x1", "\\\"q\\\"" }
    local seed, docs = 11, {}
    local function nxt() seed = (seed * 1103515245 + 12345) % 2147483648; return seed end
    for i = 1, 700 do
      local t = {}
      for w = 1, 50 + nxt() % 130 do t[w] = words[1 + nxt() % #words] end
      docs[i] = '"' .. table.concat(t, " ") .. '"'
    end
    local body = '{"model":"%s","query":"deploy models toxicity","return_score":"all","documents":['
        .. table.concat(docs, ",") .. ']}'
    assert.is_true(#body > 300000)
    local _, j1, raw1 = rank(srv, body:format("en-t1"))
    local _, _, raw3 = rank(srv, body:format("en-t3"))
    assert.are.equal(700, #j1.results)
    assert.is_true(j1.results[1].relevance_score > 0)
    assert.are.equal(raw1:gsub('"id":"[^"]*"', ""):gsub('"model":"[^"]*"', ""),
                     raw3:gsub('"id":"[^"]*"', ""):gsub('"model":"[^"]*"', ""))
  end)
end)

describe("bm25 config errors", function()
  for _, c in ipairs({
    { "language: englsh", ':4:15: models%[0%]%.language: unknown language "englsh" %(did you mean "english"%?%)' },
    { "fields: { title: -2 }", ":4:22: models%[0%]%.fields%.title must be a number from 0 to 1000" },
    { "feedback: { docs: 0 }", ":4:23: models%[0%]%.feedback%.docs must be an integer between 1 and 100" },
    { "threads: 9", ':4:14: models%[0%]%.threads must be "auto" or an integer from 1 to 4 %(got 9%)' },
  }) do
    it("rerankd -t rejects " .. c[1] .. " with file:line:col", function()
      local f = d.writefile(d.root .. "/tests/tmp/bm25_bad_" .. #c[1] .. ".yaml",
        "models:\n  - name: bm25\n    provider: bm25\n    " .. c[1] .. "\n")
      local out = d.sh(d.bin .. " -t -c " .. f .. " 2>&1; echo rc=$?")
      assert.truthy(out:find(f:gsub("%p", "%%%0") .. c[2]), out)
      assert.truthy(out:find("rc=1", 1, true), out)
    end)
  end
end)
