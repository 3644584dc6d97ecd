-- Document preparation before a provider call (rerank.engine.documents): token estimates, truncation and
-- chunking that never split UTF-8, rank_fields, what a provider declares it handles, chunk
-- scores collapsed per document, and the image check. Pure functions, no I/O.
local docs = require "rerank.engine.documents"

describe("rerank.engine.documents", function()
  local s4 = { chars_per_token = 4 }
  local sw = { chars_per_token = "whitespace" }

  it("estimates tokens from bytes or words", function()
    assert.are.equal(3, docs.estimate("0123456789", s4))
    assert.are.equal(0, docs.estimate("", s4))
    assert.are.equal(2, docs.estimate("  hello   world ", sw))
  end)

  it("truncates at the end or the start without splitting UTF-8", function()
    assert.are.equal("abcdefgh", (docs.truncate("abcdefghijkl", 2, "end", s4)))
    assert.are.equal("efghijkl", (docs.truncate("abcdefghijkl", 2, "start", s4)))
    local t, cut = docs.truncate("short", 10, "end", s4)
    assert.are.equal("short", t)
    assert.is_false(cut)
    local u = docs.truncate(("é"):rep(10), 1, "end", s4) -- 4 bytes: two whole é
    assert.are.equal("éé", u)
    assert.are.equal("éé", (docs.truncate(("é"):rep(10), 1, "start", s4)))
    assert.are.equal("one two", (docs.truncate("one two three four", 2, "end", sw)))
    assert.are.equal("three four", (docs.truncate("one two three four", 2, "start", sw)))
  end)

  it("splits into at most max chunks, preferring whitespace", function()
    local text = ("word "):rep(40) -- 200 bytes
    local c = docs.chunks(text, 10, 3, s4) -- 40-byte chunks
    assert.are.equal(3, #c)
    for _, part in ipairs(c) do assert.is_true(#part <= 40) end
    assert.are.same({ "tiny" }, docs.chunks("tiny", 10, 3, s4))
    assert.are.same({ "a b", "c d", "e" }, docs.chunks("a b c d e", 2, 10, sw))
  end)

  it("joins rank_fields as key: value lines in order", function()
    assert.are.equal("title: T\nyear: 2020\ntags: [\"x\"]",
      docs.rank_text({ title = "T", year = 2020, tags = { "x" }, other = "o" }, { "title", "year", "missing", "tags" }))
  end)

  it("prepares documents: rank_fields flattened, raw documents untouched", function()
    local raw = { title = "T", body = "B" }
    local req = { query = "q", rank_fields = { "body", "title" }, documents = { { index = 0, text = "", raw = raw } } }
    local preq, owners = docs.prepare(req, { name = "x" }, s4)
    assert.is_nil(owners)
    assert.are.equal("body: B\ntitle: T", preq.documents[1].text)
    assert.are.equal(preq.documents[1].text, preq.documents[1].raw)
    assert.is_nil(preq.rank_fields)
    assert.are.equal(raw, req.documents[1].raw)
  end)

  it("truncates locally unless the provider handles it", function()
    local req = { query = "q", max_tokens_per_document = 1, documents = { { index = 0, text = "abcdefgh", raw = "abcdefgh" } } }
    assert.are.equal("abcd", docs.prepare(req, { name = "x" }, s4).documents[1].text)
    -- the declaration counts, not the name (providers/bm25.lua declares handles)
    assert.are.equal("abcd", docs.prepare(req, { name = "bm25" }, s4).documents[1].text)
    assert.are.equal(req, docs.prepare(req, { name = "y", handles = { max_tokens_per_document = true } }, s4))
    req.truncate = "none"
    assert.are.equal(req, docs.prepare(req, { name = "x" }, s4))
    req.truncate = "start"
    assert.are.equal("efgh", docs.prepare(req, { name = "x" }, s4).documents[1].text)
  end)

  it("collapses chunk scores to the max per document", function()
    assert.are.same({ 0.9, 0.2 }, docs.collapse({ 0.1, 0.9, 0.2 }, { 1, 1, 2 }, 2))
    local s = { 1, 2 }
    assert.are.equal(s, docs.collapse(s, nil, 2))
  end)
end)

describe("rerank.engine.documents settings and estimates", function()
  it("settings: defaults, the global section, then the model's", function()
    assert.are.same({ chars_per_token = 4, chunk_tokens = 512, text_field = "text" }, docs.settings())
    assert.are.same({ chars_per_token = "whitespace", chunk_tokens = 100, text_field = "body" },
      docs.settings({ chars_per_token = "whitespace", chunk_tokens = 50 }, { chunk_tokens = 100, text_field = "body" }))
  end)

  it("a bad chars_per_token falls back to 4; CJK counts by bytes", function()
    assert.are.equal(3, docs.estimate("0123456789", { chars_per_token = 0 }))
    assert.are.equal(3, docs.estimate(("\228\184\173"):rep(3), { chars_per_token = 3 })) -- 9 bytes
    assert.are.equal(0, docs.estimate(nil, { chars_per_token = 4 }))
  end)

  it("prompt_tokens counts the query once per document plus each document", function()
    local s4 = { chars_per_token = 4 }
    assert.are.equal((1 + 2) + (1 + 1), docs.prompt_tokens("qq", { { text = "12345678" }, { text = "1" } }, s4))
    assert.are.equal(0, docs.prompt_tokens("query", {}, s4))
  end)

  it("field_text: scalars as text, tables as JSON, null and missing as nil", function()
    assert.are.equal("T", docs.field_text({ title = "T" }, "title"))
    assert.are.equal("2020", docs.field_text({ year = 2020 }, "year"))
    assert.is_nil(docs.field_text({ title = "T" }, "body"))
    assert.is_nil(docs.field_text("plain", "title"))
    assert.is_nil(docs.field_text({ x = require("cjson").null }, "x"))
    assert.is_nil(docs.rank_text({ a = 1 }, { "b" }))
  end)

  it("useful_fields: a non-empty list other than just text", function()
    assert.is_true(docs.useful_fields({ "title" }))
    assert.is_true(docs.useful_fields({ "text", "title" }))
    assert.is_false(docs.useful_fields({ "text" }))
    assert.is_false(docs.useful_fields({}))
    assert.is_false(docs.useful_fields(nil))
  end)
end)

describe("rerank.engine.documents chunking through prepare", function()
  local s4 = { chars_per_token = 4, chunk_tokens = 2 }

  it("splits long documents, maps each chunk to its owner and clears top_n", function()
    local req = { query = "q", top_n = 1, max_chunks_per_doc = 5, documents = {
      { index = 0, text = "short", raw = "short", id = "a" },
      { index = 1, text = "aaaaaaa bbbbbbb ccccccc", raw = "x", id = "b" } } }
    local preq, owners = docs.prepare(req, { name = "x" }, s4)
    assert.is_nil(preq.top_n)
    assert.is_nil(preq.max_chunks_per_doc)
    assert.are.equal(1, req.top_n) -- the request itself is untouched
    assert.is_true(#preq.documents > 2)
    assert.are.equal(1, owners[1])
    for j = 2, #preq.documents do
      assert.are.equal(2, owners[j])
      assert.are.equal("b", preq.documents[j].id)
      assert.are.equal(j - 1, preq.documents[j].index)
    end
    local scores = {}
    for j = 1, #preq.documents do scores[j] = j end
    assert.are.same({ 1, #preq.documents }, docs.collapse(scores, owners, 2))
  end)

  it("a document with no scored chunk collapses to -inf", function()
    assert.are.same({ 0.5, -math.huge }, docs.collapse({ 0.5, "x" }, { 1, 2 }, 2))
  end)
end)

describe("rerank.engine.documents images", function()
  local function req(images)
    local list = {}
    for i, img in ipairs(images) do list[i] = { index = i - 1, text = "t", image = img or nil } end
    return { documents = list }
  end

  it("passes requests without images, and providers that declare them", function()
    assert.is_nil(docs.check_images({ name = "m" }, {}, req({ false, false })))
    assert.is_nil(docs.check_images({ name = "m" }, { images = true }, req({ false, "http://x/a.png" })))
    assert.is_nil(docs.check_images({ name = "m" }, { images = "text" }, req({ "http://x/a.png" })))
    assert.is_nil(docs.check_images({ name = "m" }, { images = function() return true end }, req({ "data:x" })))
  end)

  it("refuses images for a provider without them (422 naming the first)", function()
    local err = docs.check_images({ name = "m" }, { name = "p" }, req({ false, "http://x/a.png" }))
    assert.are.equal(422, err.status)
    assert.truthy(err.message:find('model "m" does not accept image documents (documents[1].image)', 1, true),
      err.message)
  end)

  it("image_urls = false: data: URLs only", function()
    local p = { images = true, image_urls = false }
    assert.is_nil(docs.check_images({ name = "m" }, p, req({ "data:image/png;base64,AA" })))
    local err = docs.check_images({ name = "m" }, p, req({ "data:image/png;base64,AA", "https://x/b.png" }))
    assert.are.equal(422, err.status)
    assert.truthy(err.message:find("data: URLs only (documents[1].image)", 1, true), err.message)
  end)
end)
