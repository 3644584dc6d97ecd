-- The request-path JSON (core/json.c through rerank.json): strict decoding, the spans of
-- document strings, and splicing them into upstream bodies and responses.
local json = require "rerank.json"
local cjson = require "cjson"
local shapes = require "rerank.shapes"
local U = require "rerank.provider_util"
local api = require "rerank.shapes.registry"
local core = require "rerank.core"
local docs = require "rerank.engine.documents"

local function same(a, b)
  assert.are.same(cjson.decode(cjson.encode(a)), cjson.decode(cjson.encode(b)))
end

describe("json.decode_request", function()
  it("decodes what cjson decodes, with the same values", function()
    for _, s in ipairs({
      '{"a":1,"b":[1,2.5,-3e2,true,false,null],"c":{"d":"e"}}',
      '"x"', '1', '-0.5', 'true', 'null', '[]', '{}', ' [ 1 , 2 ] ',
      '{"s":"tab\\tq\\"b\\\\s\\/u\\u00e9\\ud83d\\ude00"}',
      '{"big":12345678901234567890,"small":1e-300,"e":1E+2}',
      '{"dup":1,"dup":2}',
    }) do
      local v = json.decode_request(s)
      same(v, cjson.decode(s))
    end
  end)

  it("marks empty arrays and maps null to json.null", function()
    local v = json.decode_request('{"a":[],"b":{},"c":null}')
    assert.is_true(json.is_array(v.a))
    assert.is_false(json.is_array(v.b))
    assert.equals(json.null, v.c)
    assert.equals('{"a":[],"b":{},"c":null}', json.encode({ a = v.a }):sub(1, 7) .. ',"b":{},"c":null}')
  end)

  it("refuses what RFC 8259 refuses, with lua-cjson's message forms", function()
    local cases = {
      { "", "Expected value but found T_END at character 1" },
      { "[1,2", "Expected comma or array end but found T_END at character 5" },
      { '{"a":[1,2,}', "Expected value but found T_OBJ_END at character 11" },
      { '{"a" 1}', "Expected colon but found T_NUMBER at character 6" },
      { '{1:2}', "Expected object key string but found T_NUMBER at character 2" },
      { '[1] x', "Expected the end but found invalid token at character 5" },
      { "01", "invalid number" }, { "1.", "invalid number" }, { "-", "invalid number" },
      { "[NaN]", "invalid token" }, { "[Infinity]", "invalid token" }, { "0x10", "invalid number" },
      { '"a\1b"', "unescaped control character" }, { '"\\x"', "invalid escape code" },
      { '"\\ud800"', "invalid unicode escape code" }, { '"\\udc00x"', "invalid unicode escape code" },
      { '"abc', "unexpected end of string" }, { "tru", "invalid token" },
      { string.rep("[", 65) .. string.rep("]", 65), "Found too many nested data structures (65) at character 65" },
    }
    for _, c in ipairs(cases) do
      local v, err = json.decode_request(c[1])
      assert.is_nil(v, c[1])
      assert.truthy(err:find(c[2], 1, true), c[1] .. " -> " .. tostring(err))
    end
    assert.is_not_nil(json.decode_request(string.rep("[", 64) .. string.rep("]", 64)))
  end)

  it("reports the first invalid UTF-8 byte of otherwise valid JSON", function()
    local v, _, bad = json.decode_request('{"q":"ok","d":["a\255b"]}')
    assert.is_table(v)
    assert.equals(17, bad)
    _, _, bad = json.decode_request('{"q":"\237\160\128"}') -- a UTF-8-encoded surrogate
    assert.equals(6, bad)
    assert.is_nil(select(3, json.decode_request('{"q":"caf\195\169"}')))
  end)

  it("records each document string's bytes, and an object's text member", function()
    local body = '{"query":"q","documents":["a\\nb", {"id":1,"text":"c\\u00e9"}, 3, {"x":1}]}'
    local v, spans = json.decode_request(body)
    local sp = spans.documents
    assert.equals('"a\\nb"', body:sub(sp[1], sp[2]))
    assert.equals('"c\\u00e9"', body:sub(sp[3], sp[4]))
    assert.same({ 0, 0, 0, 0 }, { sp[5], sp[6], sp[7], sp[8] })
    assert.equals("a\nb", v.documents[1])
  end)
end)

describe("splicing document bytes", function()
  local body = '{"query":"q","documents":["caf\\u00e9 \\"x\\"","plain",{"text":"obj\\/t","id":"7"}],"top_n":2}'
  local function parse(shape)
    local v, spans = json.decode_request(body)
    return assert(shapes.parse(shape or "rerankd_v1", v, { from_json = true, body = body, spans = spans }))
  end

  it("a repeated key voids the earlier spans (the last value wins)", function()
    local b = '{"a":[],"b":[],"c":[],"documents":["x"],"documents":["y"]}'
    local v, spans = json.decode_request(b)
    assert.equals("y", v.documents[1])
    assert.is_nil(spans.documents)
    b = '{"query":"q","documents":["x"],"documents":["yy"]}'
    v, spans = json.decode_request(b)
    assert.equals('"yy"', b:sub(spans.documents[1], spans.documents[2]))
    local req = assert(shapes.parse("rerankd_v1", v, { from_json = true, body = b, spans = spans }))
    assert.equals('["yy"]', json.encode(U.texts(req)))
  end)

  it("upstream bodies copy the client's bytes (the JSON equals re-encoding)", function()
    local req = parse()
    local texts = U.texts(req)
    local enc = json.encode({ documents = texts })
    assert.equals('{"documents":["caf\\u00e9 \\"x\\"","plain","obj\\/t"]}', enc)
    same(cjson.decode(enc).documents, { "café \"x\"", "plain", "obj/t" })
    for _, shape in ipairs({ "cohere_v2", "jina", "voyage" }) do
      local r = parse(shape)
      assert.equals(enc, json.encode({ documents = U.texts(r) }), shape)
    end
  end)

  it("a changed list or truncated text is encoded normally", function()
    local req = parse()
    local texts = U.texts(req)
    texts[2] = "changed"
    assert.equals('["café \\"x\\"","changed","obj\\/t"]', json.encode(texts))
    local t2 = U.texts(req)
    t2[4] = "extra"
    assert.equals(4, #cjson.decode(json.encode(t2)))
    req.documents[1] = { index = 0, text = "cut", raw = "cut" } -- what truncation makes
    local t3 = U.texts(req)
    assert.equals('["cut","plain","obj\\/t"]', json.encode(t3))
  end)

  it("marked lists are collected like any other table (no growth)", function()
    local req = parse()
    local function churn() for _ = 1, 2000 do U.texts(req) end end
    churn()
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    churn()
    collectgarbage(); collectgarbage()
    assert.is_true(collectgarbage("count") < before + 64, "marked lists stay alive")
  end)

  it("returned documents are the client's bytes", function()
    local req = parse()
    assert.equals('"caf\\u00e9 \\"x\\""', api.document_json(req, 0))
    assert.same({ text = "obj/t", id = "7" }, cjson.decode(api.document_json(req, 2)))
  end)

  it("rewritten documents (text_field) are not spliced", function()
    local b = '{"query":"q","text_field":"body","documents":[{"text":"t","body":"b"}]}'
    local v, spans = json.decode_request(b)
    local req = assert(shapes.parse("rerankd_v1", v, { from_json = true, body = b, spans = spans }))
    assert.equals('["b"]', json.encode(U.texts(req)))
  end)
end)

describe("lazy document texts", function()
  local body = '{"query":"q","documents":["plain one","esc\\"aped",{"text":"obj"},"caf\195\169",""],"top_n":2}'
  local function parse(shape, b)
    b = b or body
    local v, spans = json.decode_request(b, "documents")
    return assert(shapes.parse(shape or "rerankd_v1", v, { from_json = true, body = b, spans = spans })), v
  end

  it("decode_request leaves unescaped strings of the lazy key as json.lazy, spans telling their text", function()
    local v, spans = json.decode_request(body, "documents")
    local d, sp = v.documents, spans.documents
    assert.equals(json.lazy, d[1])
    assert.equals('esc"aped', d[2]) -- escapes: a string as before
    assert.equals("obj", d[3].text)
    assert.equals(json.lazy, d[4])
    assert.equals(json.lazy, d[5])
    assert.equals("plain one", core.json_text(body, sp[1], sp[2]))
    assert.equals("caf\195\169", core.json_text(body, sp[7], sp[8]))
    assert.equals("", core.json_text(body, sp[9], sp[10]))
    assert.equals('esc"aped', core.json_text(body, sp[3], sp[4])) -- json_text unescapes too
    -- other keys and nested arrays stay strings
    local w = json.decode_request('{"query":"q","texts":["a"],"documents":[["b"]],"x":{"documents":["c"]}}', "documents")
    assert.equals("a", w.texts[1])
    assert.equals("b", w.documents[1][1])
    assert.equals("c", w.x.documents[1])
    assert.has_error(function() core.json_text(body, 1, 3) end)
    assert.has_error(function() core.json_text(body, 0, 9999) end)
  end)

  it("a lazy document makes its text only when read, and estimates without it", function()
    local req = parse()
    local d = req.documents[1]
    assert.is_true(docs.is_lazy(d))
    assert.equals(9, docs.text_bytes(d))
    assert.equals(3, docs.estimate_doc(d, docs.settings()))
    assert.is_nil(d.image)
    assert.is_nil(d.title)
    assert.is_true(docs.is_lazy(d))
    assert.equals("plain one", d.text)
    assert.equals("plain one", d.raw)
    assert.is_false(docs.is_lazy(d))
    assert.is_false(docs.is_lazy(req.documents[2])) -- escaped: a string from the start
    assert.equals(3, docs.estimate_doc(req.documents[1], docs.settings()))
    assert.equals(2, docs.estimate_doc(req.documents[1], docs.settings({ chars_per_token = "whitespace" })))
  end)

  it("every shape reads lazy documents as the strings they stand for", function()
    local plain = '{"query":"q","documents":["plain one","two"]}'
    for _, shape in ipairs({ "rerankd_v1", "cohere_v1", "cohere_v2", "jina", "voyage" }) do
      local req = parse(shape, plain)
      assert.equals("plain one", req.documents[1].text, shape)
      assert.equals("two", req.documents[2].raw, shape)
    end
    -- where texts are not spliced (rank_fields in rerankd's shape, pipelines), they are made at once
    local req = parse("rerankd_v1", '{"query":"q","rank_fields":["a"],"documents":["x",{"a":"y"}]}')
    assert.equals("x", rawget(req.documents[1], "text"))
  end)

  it("Cohere v2 bodies splice lazy documents without making their strings", function()
    local req = parse()
    local b = U.cohere_body({}, { defaults = {} }, req, "v2")
    local enc = json.encode({ documents = b.documents })
    assert.equals('{"documents":["plain one","esc\\"aped","obj","caf\195\169",""]}', enc)
    assert.is_true(docs.is_lazy(req.documents[1]))
    assert.is_true(docs.is_lazy(req.documents[5]))
    -- the public U.texts still gives strings
    assert.equals("plain one", U.texts(req)[1])
  end)

  it("a lazy list that changed is encoded as its texts", function()
    local req = parse()
    local b = U.cohere_body({}, { defaults = {} }, req, "v2")
    b.documents[2] = "changed"
    assert.equals('["plain one","changed","obj","caf\195\169",""]', json.encode(b.documents))
    local req2 = parse()
    local b2 = U.cohere_body({}, { defaults = {} }, req2, "v2")
    b2.documents[6] = "extra"
    assert.same({ "plain one", 'esc"aped', "obj", "caf\195\169", "", "extra" }, cjson.decode(json.encode(b2.documents)))
  end)

  it("returned documents of lazy texts are the client's bytes", function()
    local req = parse()
    assert.equals('"plain one"', api.document_json(req, 0))
    assert.is_true(docs.is_lazy(req.documents[1]))
  end)

  it("bm25 scores lazy texts in place exactly as their strings", function()
    local core_bm25 = core.bm25
    local b = '{"query":"plain esc","documents":["plain one","esc\\"aped plain","caf\195\169 plain plain",""]}'
    local req = parse("rerankd_v1", b)
    local strings = {}
    for i = 1, #req.documents do strings[i] = json.decode(b).documents[i] end
    local lazy = {}
    for i, d in ipairs(req.documents) do lazy[i] = docs.is_lazy(d) and d or d.text end
    assert.same(core_bm25("plain esc", strings), core_bm25("plain esc", lazy))
    assert.is_true(docs.is_lazy(req.documents[1]))
    -- a lazy document over an escaped span (the decoder never makes one): its text is made
    local _, spans = json.decode_request(b, "documents")
    local escaped = docs.lazy(1, b, spans.documents[3], spans.documents[4])
    assert.same(core_bm25("plain esc", { strings[2] }), core_bm25("plain esc", { escaped }))
    assert.equals(strings[2], rawget(escaped, "text"))
    assert.has_error(function() core_bm25("q", { {} }) end)
  end)
end)

describe("request bodies outside the Lua heap (core.body, the daemon's ctx.body)", function()
  local text = '{"query":"q","documents":["plain one","esc\\"aped",{"text":"obj","id":"7"}]}'

  it("reads like the string it holds", function()
    local b = core.body(text)
    assert.equals("userdata", type(b))
    assert.equals(#text, #b)
    assert.equals(text, tostring(b))
    assert.equals(text:sub(3, 9), core.bytes(b, 3, 9))
    assert.equals(text:sub(-5), core.bytes(b, -5))
    assert.equals(text, core.bytes(b))
    assert.equals("", core.bytes(b, 10, 3))
    assert.equals(text:sub(2, 4), core.bytes(text, 2, 4)) -- strings too
    assert.equals("", tostring(core.body("")))
    assert.has_error(function() core.bytes({}) end)
  end)

  it("decodes, splices and answers documents as the string body does", function()
    local b = core.body(text)
    local v, spans = json.decode_request(b, "documents")
    local sv, sspans = json.decode_request(text, "documents")
    assert.same(sspans, spans)
    assert.equals(json.lazy, v.documents[1])
    local req = assert(shapes.parse("rerankd_v1", v, { from_json = true, body = b, spans = spans }))
    local sreq = assert(shapes.parse("rerankd_v1", sv, { from_json = true, body = text, spans = sspans }))
    local body = U.cohere_body({}, { defaults = {} }, req, "v2")
    assert.equals('{"documents":["plain one","esc\\"aped","obj"]}', json.encode({ documents = body.documents }))
    assert.equals(json.encode({ documents = U.texts(sreq) }), json.encode({ documents = U.texts(req) }))
    assert.equals('"plain one"', api.document_json(req, 0))
    assert.same({ text = "obj", id = "7" }, cjson.decode(api.document_json(req, 2)))
    assert.equals("plain one", req.documents[1].text)
    assert.same(core.bm25("plain", { "plain one" }), core.bm25("plain", { req.documents[1] }))
  end)

  it("a released body raises where it is read, never reads freed memory", function()
    local b = core.body(text)
    local v, spans = json.decode_request(b, "documents")
    local req = assert(shapes.parse("rerankd_v1", v, { from_json = true, body = b, spans = spans }))
    core.body_release(b)
    local d = req.documents[1]
    assert.is_true(docs.is_lazy(d))
    assert.has_error(function() return d.text end)
    assert.has_error(function() return #b end)
    assert.has_error(function() return tostring(b) end)
    assert.has_error(function() core.bytes(b, 1, 2) end)
    assert.has_error(function() core.bm25("plain", { d }) end)
    assert.is_nil(core.json_concat({ { { d }, { d } } })) -- a splice over it is stale: encoded normally
    assert.has_error(function() json.decode_request(b) end, "the request body was released (its request ended)")
  end)
end)

describe("upstream bodies outside the Lua heap (json.encode_body)", function()
  local text = '{"query":"q","documents":["plain one","esc\\"aped",{"text":"obj","id":"7"}],"top_n":2}'
  local upstream = require "rerank.engine.upstream"
  local function request(b)
    local v, spans = json.decode_request(b, "documents")
    return assert(shapes.parse("rerankd_v1", v, { from_json = true, body = b, spans = spans }))
  end

  it("JSON that splices documents is a body with json.encode's bytes; other JSON a string", function()
    for _, src in ipairs({ text, core.body(text) }) do
      local req = request(src)
      local t = U.cohere_body({}, { defaults = {} }, req, "v2")
      local b = json.encode_body(t)
      assert.equals("userdata", type(b))
      assert.equals(json.encode(t), tostring(b))
      assert.equals(#tostring(b), #b)
      assert.is_true(docs.is_lazy(req.documents[1])) -- still no string made for it
    end
    assert.equals('{"a":[1,2]}', json.encode_body({ a = { 1, 2 } }))
    assert.equals('"x"', json.encode_body("x"))
    assert.has_error(function() json.encode_body({ f = print }) end)
    -- a spliced list at the top and nested below the top level
    local req = request(text)
    local list = U.texts(req)
    assert.equals(json.encode(list), tostring(json.encode_body(list)))
    local nested = { outer = { documents = U.cohere_body({}, { defaults = {} }, req, "v2").documents } }
    assert.equals(json.encode(nested), json.encode_body(nested)) -- the inner splice stays a string part
  end)

  it("every document lazy: the request's documents are the spliced list, and a stale splice leaves them be", function()
    local req = request('{"query":"q","documents":["one","two"]}')
    local list = U.cohere_body({}, { defaults = {} }, req, "v2").documents
    assert.equals(req.documents, list) -- no list of its own
    assert.equals('["one","two"]', json.encode(list))
    -- a document replaced by one without its bytes since: encoded from the texts, the
    -- documents themselves untouched
    local d1 = req.documents[1]
    req.documents[2] = { index = 1, text = "other" }
    assert.equals('{"documents":["one","other"]}', json.encode({ documents = list }))
    assert.equals(d1, req.documents[1])
    assert.equals("table", type(req.documents[2]))
    assert.equals("one", d1.text)
  end)

  it("a body over 64 KB is its pieces: the same bytes, kept alive by the body, unreadable once released", function()
    local parts = {}
    for i = 1, 90 do
      parts[i] = ("%q"):format(("doc %d "):format(i) .. string.rep("word ", 200) .. (i % 9 == 0 and 'a "q" \\' or ""))
    end
    local big = '{"query":"q","documents":[' .. table.concat(parts, ",") .. ']}'
    for _, make in ipairs({ function(s) return s end, core.body }) do
      local b, want
      do
        local src = make(big)
        local t = U.cohere_body({}, { defaults = {} }, request(src), "v2")
        want = json.encode(t)
        b = json.encode_body(t)
      end
      assert.is_true(#want > 64 * 1024)
      collectgarbage()
      collectgarbage() -- only the body references the request now: it keeps what it needs
      assert.equals(#want, #b)
      assert.equals(want, tostring(b))
    end
    local src = core.body(big)
    local b = json.encode_body(U.cohere_body({}, { defaults = {} }, request(src), "v2"))
    core.body_release(src)
    assert.has_error(function() return tostring(b) end, "the request body was released (its request ended)")
  end)

  it("rerank_build's texts and documents, and U.media_body without images, leave lazy texts lazy", function()
    local src = '{"query":"q","documents":["one","t\\"wo",{"text":"three"}]}'
    local P = { defaults = { base_url = "http://u" }, path = "/rerank" }
    for _, field in ipairs({ "texts", "documents" }) do
      local req = request(src)
      local spec = U.rerank_build(P, { query = "query", documents = field })({ name = "m" }, req)
      assert.same({ query = "q", documents = { "one", 't"wo', "three" } }, json.decode(json.encode(spec.body)))
      assert.is_true(docs.is_lazy(req.documents[1])) -- no string was made for it
    end
    local req = request(src)
    local list = U.media_body(req, nil, function() error("no image here") end)
    assert.equals('["one","t\\"wo","three"]', json.encode(list))
    assert.is_true(docs.is_lazy(req.documents[1]))
    -- a provider that reads the texts still gets strings
    assert.same({ "one", 't"wo', "three" }, U.texts(request(src)))
    assert.same({ "one", 't"wo', "three" }, U.media(request(src), nil, function() end))
    req = request(src)
    assert.equals('["one","t\\"wo","three"]', json.encode(U.texts_body(req)))
    assert.is_true(docs.is_lazy(req.documents[1]))
  end)

  it("a spliced list, its own documents or not, does not outlive its request", function()
    local probe = setmetatable({}, { __mode = "v" })
    do
      local req = request('{"query":"q","documents":["one","two"]}')
      local own = U.cohere_body({}, { defaults = {} }, req, "v2").documents -- the documents themselves
      local list = U.texts(request('{"query":"q","documents":["three"]}')) -- a list of its own
      assert.equals('["one","two"]', json.encode(own))
      assert.equals('["three"]', json.encode(list))
      probe[1], probe[2], probe[3] = own, list, req
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(probe)) -- all collected: nothing keeps them alive
  end)

  it("a transport that sends bodies gets one, released once it has answered; others get strings", function()
    local seen = {}
    local function transport(sends)
      return {
        sends_bodies = sends,
        request = function(opts)
          seen[#seen + 1] = { kind = type(opts.body), text = tostring(opts.body), body = opts.body }
          return { status = 200, headers = {}, body = '{"results":[{"index":0,"relevance_score":0.5}]}' }
        end,
      }
    end
    local p = { parse = U.parser }
    local model = { name = "m", provider = "cohere" }
    for _, sends in ipairs({ true, false }) do
      local req = request(core.body(text))
      local spec = { url = "http://u/v2/rerank", body = U.cohere_body({}, { defaults = {} }, req, "v2") }
      local out = assert(upstream.call_one(transport(sends), model, p, req, spec, {}))
      assert.equals(0.5, out.scores and out.scores[1] or out.results[1].relevance_score)
    end
    assert.equals("userdata", seen[1].kind)
    assert.equals("string", seen[2].kind)
    assert.equals(seen[2].text, seen[1].text)
    assert.has_error(function() return #seen[1].body end) -- released: its bytes are gone
    -- a body the provider built itself is its own: sent as it is, never released here
    local own = core.body('{"query":"q","documents":["a"]}')
    local req = request(text)
    assert(upstream.call_one(transport(true), model, p, req, { url = "http://u/v2/rerank", body = own }, {}))
    assert.equals(own, seen[3].body)
    assert.equals(31, #own)
  end)
end)
