-- luacheck: std +busted
-- rerank.shapes.registry: the registry (parse, render, register) and its field checks, through
-- rerankd's own shape.
local api = require "rerank.shapes.registry"
local json = require "rerank.json"
local cjson = require "cjson"

local FIXTURES = (debug.getinfo(1, "S").source:match("^@(.*)tests/lua/[^/]*$") or "./") .. "tests/fixtures/api/"

local function fixture(name)
  local f = assert(io.open(FIXTURES .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return assert(json.decode(s))
end

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return setmetatable(t, getmetatable(v))
end

local function parse(body, opts)
  if type(body) == "table" then body = json.encode(body) end
  return api.parse("rerankd", body, opts)
end

local function expect_error(body, status, message, param, opts)
  local req, err = parse(body, opts)
  assert.is_nil(req)
  assert.same({ status = status, type = json.error_type(status), message = message, param = param }, err)
end

describe("api.parse rerankd", function()
  it("parses the reference example into the internal request", function()
    local ex = fixture("rerankd_example.json")
    local req = assert(parse(ex.request))
    assert.equal("rerankd", req.shape)
    assert.equal("your-reranker-model-or-deployment-id", req.model)
    assert.equal("How do I deploy a model?", req.query)
    assert.equal(2, req.top_n)
    assert.is_true(req.return_documents)
    assert.equal(3, #req.documents)
    for i, d in ipairs(req.documents) do
      assert.equal(i - 1, d.index)
      assert.equal(ex.request.documents[i].text, d.text)
      assert.equal(ex.request.documents[i].id, d.id)
      assert.same(ex.request.documents[i], d.raw)
    end
    assert.is_nil(req.truncate)
    assert.is_nil(req.max_tokens_per_document)
    assert.is_nil(req.metadata)
    assert.is_nil(req.user)
    assert.is_nil(req.extra_body)
  end)

  it("accepts string documents and keeps every field of object documents", function()
    local req = assert(parse({
      model = "bm25", query = "q",
      documents = { "plain", { text = "t", id = 7, title = "T", metadata = { lang = "en" }, extra = 1 },
        { text = "u", id = "u1" } },
      top_n = 1, return_documents = false, truncate = "END", max_tokens_per_document = 512,
      metadata = { team = "search" }, user = "user-1", extra_body = { priority = 2, stop = json.array() },
    }))
    assert.same({ index = 0, text = "plain", raw = "plain" }, req.documents[1])
    local d = req.documents[2]
    assert.equal(1, d.index)
    assert.equal("t", d.text)
    assert.equal(7, d.id)
    assert.equal("T", d.title)
    assert.same({ lang = "en" }, d.metadata)
    assert.equal(1, d.raw.extra)
    assert.equal(d.metadata, d.raw.metadata) -- the decoder's tables, not copies
    assert.equal("u1", req.documents[3].id)
    assert.is_nil(req.documents[3].title)
    assert.equal("end", req.truncate)
    assert.equal(512, req.max_tokens_per_document)
    assert.same({ team = "search" }, req.metadata)
    assert.equal("user-1", req.user)
    assert.equal(2, req.extra_body.priority)
    assert.is_true(json.is_array(req.extra_body.stop)) -- forwarded upstream as []
    assert.equal("[]", json.encode(req.extra_body.stop))
    assert.is_false(req.return_documents)
  end)

  it("keeps the request's keys to the documented set", function()
    local req = assert(parse({ model = "m", query = "q", documents = { "a" }, top_n = 1, truncate = "none",
      max_tokens_per_document = 3, metadata = { a = 1 }, user = "u", extra_body = { b = 2 },
      return_documents = true, unknown = 5 }))
    local allowed = { model = true, query = true, documents = true, top_n = true, return_documents = true,
      truncate = true, max_tokens_per_document = true, metadata = true, user = true, extra_body = true, shape = true }
    for k in pairs(req) do assert.is_true(allowed[k] or false, k) end
    local doc_keys = { index = true, text = true, id = true, title = true, metadata = true, raw = true }
    for k in pairs(req.documents[1]) do assert.is_true(doc_keys[k] or false, k) end
  end)

  it("treats null as absent for optional fields and defaults return_documents to false", function()
    local req = assert(parse('{"model":null,"query":"q","documents":[{"text":"a","id":null,"title":null,'
      .. '"metadata":null}],"top_n":null,"return_documents":null,"truncate":null,'
      .. '"max_tokens_per_document":null,"metadata":null,"user":null,"extra_body":null}'))
    assert.is_nil(req.model)
    assert.is_nil(req.top_n)
    assert.is_false(req.return_documents)
    assert.is_nil(req.truncate)
    assert.is_nil(req.max_tokens_per_document)
    assert.is_nil(req.metadata)
    assert.is_nil(req.user)
    assert.is_nil(req.extra_body)
    assert.same({ index = 0, text = "a" }, { index = req.documents[1].index, text = req.documents[1].text,
      id = req.documents[1].id, title = req.documents[1].title, metadata = req.documents[1].metadata })
  end)

  it("accepts an empty documents list", function()
    local req = assert(parse('{"query":"q","documents":[]}'))
    assert.same({}, req.documents)
    -- a Lua caller's {} cannot say array or object: accepted as empty
    req = assert(api.parse("rerankd", { query = "q", documents = {} }))
    assert.same({}, req.documents)
  end)

  it("refuses a JSON object {} where documents must be an array", function()
    expect_error('{"query":"q","documents":{}}', 400, "documents must be an array", "documents")
  end)

  it("keeps unicode text byte for byte", function()
    local text = "Überprüfung 日本語 😀 \u{0}"
    local req = assert(parse('{"query":"qué 😀","documents":["' .. "Überprüfung 日本語 \\ud83d\\ude00 \\u0000"
      .. '",{"text":"ça","title":"✓"}]}'))
    assert.equal("qué 😀", req.query)
    assert.equal(text, req.documents[1].text)
    assert.equal("ça", req.documents[2].text)
    assert.equal("✓", req.documents[2].title)
  end)

  it("accepts top_n at and beyond the document count, and huge finite integral values", function()
    assert.equal(1, assert(parse({ query = "q", documents = { "a" }, top_n = 1 })).top_n)
    assert.equal(50, assert(parse({ query = "q", documents = { "a" }, top_n = 50 })).top_n)
    assert.equal(1e300, assert(parse('{"query":"q","documents":["a"],"top_n":1e300}')).top_n)
    local _, err = parse('{"query":"q","documents":["a"],"top_n":1e400}') -- inf: not an integer
    assert.are.same({ 400, "top_n must be an integer" }, { err.status, err.message })
    assert.equal(3, assert(parse('{"query":"q","documents":["a"],"top_n":3.0}')).top_n)
    assert.equal(3, assert(parse('{"query":"q","documents":["a"],"top_n":3e0}')).top_n)
  end)

  it("normalises truncate case-insensitively", function()
    for _, v in ipairs({ "none", "NONE", "None", "start", "Start", "end", "eNd" }) do
      assert.equal(v:lower(), assert(parse({ query = "q", documents = { "a" }, truncate = v })).truncate)
    end
  end)

  it("accepts a query with surrounding whitespace as is", function()
    assert.equal("  q  ", assert(parse({ query = "  q  ", documents = { "a" } })).query)
  end)

  it("ignores unknown top-level fields", function()
    local req = assert(parse({ query = "q", documents = { "a" }, rank_fields = { "x" }, foo = { bar = 1 },
      topn = 3 }))
    assert.is_nil(req.top_n)
    assert.is_nil(req.foo)
  end)

  it("limits the document count to opts.max_documents, 10000 by default", function()
    local docs = {}
    for i = 1, 10000 do docs[i] = "d" end
    assert.equal(10000, #assert(parse({ query = "q", documents = docs })).documents)
    docs[10001] = "d"
    expect_error({ query = "q", documents = docs }, 422, "documents has 10001 items; the maximum is 10000", "documents")
    assert.equal(10001, #assert(parse({ query = "q", documents = docs }, { max_documents = 20000 })).documents)
    expect_error({ query = "q", documents = { "a", "b" } }, 422, "documents has 2 items; the maximum is 1", "documents",
      { max_documents = 1 })
  end)

  it("accepts an already-decoded table (library callers)", function()
    local docs = { "a", { text = "b", id = 2 } }
    local req = assert(api.parse("rerankd", { query = "q", documents = docs, top_n = 1 }))
    assert.equal(docs[2], req.documents[2].raw)
    assert.equal(1, req.top_n)
    local _, err = api.parse("rerankd", { 1, 2 })
    assert.equal("request body must be a JSON object", err.message)
  end)

  it("rejects 65 levels of nesting cleanly and accepts 64", function()
    local deep = string.rep("[", 60) .. string.rep("]", 60)
    assert.is_table(parse('{"query":"q","documents":[],"extra_body":{"x":' .. deep .. '}}'))
    local deeper = string.rep("[", 63) .. string.rep("]", 63)
    local req, err = parse('{"query":"q","documents":[],"extra_body":{"x":' .. deeper .. '}}')
    assert.is_nil(req)
    assert.equal(400, err.status)
    assert.matches("^invalid JSON body: Found too many nested data structures %(65%)", err.message)
    assert.is_nil(err.param)
  end)

  it("keeps the last of duplicate keys", function()
    assert.equal("second", assert(parse('{"query":"first","query":"second","documents":[]}')).query)
  end)

  it("raises on an unknown shape", function()
    assert.has_error(function() api.parse("nope", "{}") end, "unknown API shape nope")
    assert.has_error(function() api.render("nope", {}, {}) end, "unknown API shape nope")
  end)

  describe("refuses bad requests (tests/fixtures/api/rerankd_bad_requests.json)", function()
    for _, c in ipairs(fixture("rerankd_bad_requests.json").cases) do
      it(c.name, function()
        local body = c.raw
        if body == nil then body = json.encode(c.body) end
        local req, err = api.parse("rerankd", body, c.opts ~= json.null and c.opts or nil)
        assert.is_nil(req)
        assert.is_table(err)
        assert.equal(c.status, err.status)
        assert.equal(json.error_type(c.status), err.type)
        if c.param == json.null then
          assert.is_nil(err.param)
        else
          assert.equal(c.param, err.param)
        end
        if c.message then
          assert.equal(c.message, err.message)
        else
          assert.equal(c.message_prefix, err.message:sub(1, #c.message_prefix))
        end
      end)
    end
  end)

  describe("type matrix (tests/fixtures/api/rerankd_field_types.json)", function()
    local fx = fixture("rerankd_field_types.json")
    local names = {}
    for name in pairs(fx.values) do names[#names + 1] = name end
    table.sort(names)
    for _, field in ipairs(fx.fields) do
      local ok = {}
      for _, v in ipairs(field.ok) do ok[v] = true end
      for _, vname in ipairs(names) do
        local verdict = ok[vname] and "accepted" or "refused"
        it(("%s = %s is %s"):format(field.path, vname, verdict), function()
          local body = copy(fx.base)
          local t = body
          for i = 1, #field.set - 1 do t = t[field.set[i]] end
          t[field.set[#field.set]] = copy(fx.values[vname])
          local req, err = parse(body)
          if ok[vname] then
            assert.is_table(req, err and err.message)
            return
          end
          assert.is_nil(req)
          local special = field.special and field.special[vname]
          if special then
            assert.same({ status = special[1], type = "invalid_request_error", message = special[2],
              param = special[3] }, err)
          else
            assert.same({ status = 400, type = "invalid_request_error",
              message = field.path .. " must be " .. field.type, param = field.path }, err)
          end
        end)
      end
    end
  end)
end)

describe("api.render rerankd", function()
  local function request(docs, return_documents)
    return assert(parse({ query = "q", documents = docs, return_documents = return_documents }))
  end

  it("renders the reference example", function()
    local ex = fixture("rerankd_example.json")
    local req = assert(parse(ex.request))
    local out = api.render("rerankd", ex.result, req)
    assert.same(cjson.decode(json.encode(ex.response)), cjson.decode(out))
    assert.matches('^{"id":"rerank_01ABCDEF234567890","object":"list","model":"your%-reranker%-model%-or%-deployment%-id",'
      .. '"results":%[{"index":0,"relevance_score":0.92,"document":{', out)
    assert.matches('},{"index":2,"relevance_score":0.41,"document":{.-}}%],'
      .. '"usage":{"prompt_tokens":34,"total_tokens":34}}$', out)
  end)

  it("writes keys in order and omits document unless asked", function()
    local req = request({ "a", "b" }, false)
    local out = api.render("rerankd", { id = "r1", model = "bm25",
      results = { { index = 1, relevance_score = 0.5 }, { index = 0, relevance_score = 0.25 } },
      usage = { prompt_tokens = 7, total_tokens = 9 } }, req)
    assert.equal('{"id":"r1","object":"list","model":"bm25","results":[{"index":1,"relevance_score":0.5},'
      .. '{"index":0,"relevance_score":0.25}],"usage":{"prompt_tokens":7,"total_tokens":9}}', out)
  end)

  it("echoes the client's original document value", function()
    local req = assert(parse('{"query":"q","return_documents":true,"documents":["plain \\"s\\"",'
      .. '{"id":"x","text":"t","tags":[],"meta":{"n":1234567890123456,"f":0.1}}]}'))
    local out = api.render("rerankd", { id = "r", model = "m",
      results = { { index = 1, relevance_score = 1 }, { index = 0, relevance_score = 0 } },
      usage = { prompt_tokens = 1, total_tokens = 1 } }, req)
    local v = cjson.decode(out)
    assert.equal('plain "s"', v.results[2].document)
    assert.same({ id = "x", text = "t", tags = {}, meta = { n = 1234567890123456, f = 0.1 } }, v.results[1].document)
    assert.matches('"tags":[]', out, 1, true)
    assert.matches('"n":1234567890123456', out, 1, true)
  end)

  it("renders empty results as []", function()
    local req = request(json.array(), true)
    local out = api.render("rerankd", { id = "r", model = "m", results = {}, usage = { prompt_tokens = 0,
      total_tokens = 0 } }, req)
    assert.equal('{"id":"r","object":"list","model":"m","results":[],"usage":{"prompt_tokens":0,"total_tokens":0}}', out)
    out = api.render("rerankd", { id = "r", model = "m" }, req)
    assert.matches('"results":[],"usage":{"prompt_tokens":0,"total_tokens":0}}', out, 1, true)
  end)

  it("adds degraded at the end when set", function()
    local out = api.render("rerankd", { id = "r", model = "m", results = { { index = 0, relevance_score = 1 } },
      usage = { prompt_tokens = 2, total_tokens = 2 }, degraded = true }, request({ "a" }))
    assert.matches(',"usage":{"prompt_tokens":2,"total_tokens":2},"degraded":true}$', out)
    assert.is_true(cjson.decode(out).degraded)
  end)

  it("falls back to the request's model and to total = prompt tokens", function()
    local req = assert(parse({ model = "req-model", query = "q", documents = { "a" } }))
    local out = api.render("rerankd", { id = "r", results = {}, usage = { prompt_tokens = 5 } }, req)
    local v = cjson.decode(out)
    assert.equal("req-model", v.model)
    assert.equal(5, v.usage.total_tokens)
  end)

  it("prints scores that round-trip exactly", function()
    math.randomseed(3)
    local docs, results = {}, {}
    for i = 1, 1000 do
      docs[i] = "d" .. i
      local s = i % 3 == 0 and math.random() or (i % 3 == 1 and math.random(0, 1000) / 1000
        or math.floor(math.random() * 2 ^ 24) / 2 ^ 24 * 10 ^ math.random(-8, 3))
      results[i] = { index = i - 1, relevance_score = s }
    end
    local out = api.render("rerankd", { id = "r", model = "m", results = results,
      usage = { prompt_tokens = 1, total_tokens = 1 } }, request(docs))
    local i = 0
    for printed in out:gmatch('"relevance_score":([^,}]+)') do
      i = i + 1
      assert(tonumber(printed) == results[i].relevance_score, printed)
    end
    assert.equal(1000, i)
    assert.matches('"relevance_score":0.92}', api.render("rerankd", { id = "r", model = "m",
      results = { { index = 0, relevance_score = 0.92 } } }, request({ "a" })), 1, true)
  end)

  it("writes a non-finite score as null (never invalid JSON)", function()
    local out = api.render("rerankd", { id = "r", model = "m", results = {
      { index = 0, relevance_score = 0 / 0 }, { index = 1, relevance_score = math.huge } } }, request({ "a", "b" }))
    local v = cjson.decode(out)
    assert.equal(cjson.null, v.results[1].relevance_score)
    assert.equal(cjson.null, v.results[2].relevance_score)
  end)
end)

describe("api.render_error and api.register", function()
  it("renders the project's error shape by default", function()
    local _, err = parse({ query = "q", documents = { "a", "b", "c", { text = 3 } } })
    assert.equal('{"error":{"type":"invalid_request_error","message":"documents[3].text must be a string",'
      .. '"param":"documents[3].text"}}', api.render_error("rerankd", err))
  end)

  it("makes a new shape available to parse and render", function()
    api.register("test_shape", {
      parse = function(b) return { shape = "test_shape", query = b.q, documents = {} } end,
      render = function(result) return "n=" .. #result.results end,
      render_error = function(err) return "E" .. err.status end,
    })
    assert.equal("x", assert(api.parse("test_shape", '{"q":"x"}')).query)
    assert.equal("n=0", api.render("test_shape", { results = {} }, {}))
    assert.equal("E422", api.render_error("test_shape", { status = 422 }))
    local _, err = api.parse("test_shape", "[]")
    assert.equal(400, err.status)
    api.shapes.test_shape = nil
    assert.has_error(function() api.register("x", { parse = print }) end)
  end)

  it("a shape with render_parts alone renders its parts joined", function()
    api.register("test_parts", {
      parse = function() return { shape = "test_parts", query = "q", documents = {} } end,
      render_parts = function(result) return { "[", tostring(#result.results), "]" } end,
    })
    assert.equal("[0]", api.render("test_parts", { results = {} }, {}))
    api.shapes.test_parts = nil
  end)
end)

describe("api.check.fields, api.check.documents, api.body_object", function()
  local check = api.check

  it("reads optional fields in order, the first error wins, absent fields keep the default", function()
    local fields = { { "top_n", check.int, 1 }, { "return_documents", check.bool }, { "user", check.string } }
    local req = assert(check.fields({ top_n = 3 }, { return_documents = true }, fields))
    assert.same({ top_n = 3, return_documents = true }, req)
    local _, err = check.fields({ top_n = 0, return_documents = "yes" }, {}, fields)
    assert.same({ 422, "top_n must be >= 1", "top_n" }, { err.status, err.message, err.param })
    _, err = check.fields({ return_documents = "yes", user = 5 }, {}, fields)
    assert.same({ 400, "return_documents must be a boolean" }, { err.status, err.message })
  end)

  it("keeps rerankd's own document rules apart from the client shapes'", function()
    local docs = json.decode('[{"text":"a","title":5}]')
    local out = assert(check.documents(docs, "documents", {}))
    assert.is_nil(out[1].title) -- client shapes drop a title that is not a string
    local _, err = check.documents(docs, "documents", { rerankd = true })
    assert.same({ 400, "documents[0].title must be a string", "documents[0].title" },
                { err.status, err.message, err.param })
    _, err = check.documents(json.decode('[5]'), "documents", { text_field = "body" })
    assert.equal("documents[0] must be a string or an object with a body field", err.message)
    _, err = check.documents(json.decode('[5]'), "documents", { text_field = "body", rerankd = true })
    assert.equal("documents[0] must be a string or an object with a text field", err.message)
  end)

  it("api.body_object: a JSON object from text or a decoded table", function()
    assert.equal("q", api.body_object('{"query":"q"}').query)
    local t = json.decode('{"a":1}')
    assert.equal(t, api.body_object(t))
    local _, err = api.body_object("[1]")
    assert.equal("request body must be a JSON object", err.message)
    _, err = api.body_object("{")
    assert.equal(400, err.status)
  end)
end)
