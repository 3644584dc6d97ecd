-- luacheck: std +busted
local json = require "rerank.json"
local cjson = require "cjson"

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then
    return a == b or (a ~= a and b ~= b)
  end
  if json.is_array(a) ~= json.is_array(b) and (next(a) == nil or next(b) == nil) then return false end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

describe("json.decode", function()
  it("decodes objects, arrays, scalars and null", function()
    local v = assert(json.decode('{"a":[1,"two",true,null],"b":{"c":-1.5e3}}'))
    assert.same({ 1, "two", true, json.null }, setmetatable(v.a, nil))
    assert.equal(-1500, v.b.c)
    assert.equal(json.null, json.decode("null"))
    assert.equal(cjson.null, json.null)
    assert.equal("x", json.decode('"x"'))
    assert.equal(false, json.decode("false"))
    assert.equal(0, json.decode(" 0 "))
  end)

  it("returns nil and an error for invalid JSON, never raises", function()
    for _, s in ipairs({ "", "   ", "{", "[1,]", '{"a" 1}', "{'a': 1}", '{"a":1} x', "nul", "[1 2]" }) do
      local v, err = json.decode(s)
      assert.is_nil(v, s)
      assert.is_string(err, s)
    end
    local v, err = json.decode(nil)
    assert.is_nil(v)
    assert.matches("expected a string", err)
    v, err = json.decode({})
    assert.is_nil(v)
    assert.is_string(err)
  end)

  it("rejects NaN, Infinity and hex numbers", function()
    for _, s in ipairs({ "NaN", "[NaN]", "[nan]", "[Infinity]", "[-Infinity]", "[inf]", "[0x10]", "[+1]", "[01]" }) do
      local v, err = json.decode(s)
      assert.is_nil(v, s)
      assert.matches("^Expected value but found invalid", err, 1)
    end
  end)

  it("decodes an overflowing literal to inf (encoded back as null)", function()
    local v = assert(json.decode('{"x":1e400,"y":-1e400}'))
    assert.equal(math.huge, v.x)
    assert.equal(-math.huge, v.y)
    assert.same({ x = json.null, y = json.null }, json.decode(json.encode(v)))
  end)

  it("accepts 64 levels of nesting and rejects 65 cleanly", function()
    assert.is_table(json.decode(string.rep("[", 64) .. string.rep("]", 64)))
    local v, err = json.decode(string.rep("[", 65) .. string.rep("]", 65))
    assert.is_nil(v)
    assert.matches("too many nested", err, 1, true)
    v, err = json.decode(string.rep('{"a":', 100) .. "1" .. string.rep("}", 100))
    assert.is_nil(v)
    assert.matches("too many nested", err, 1, true)
    v, err = json.decode(string.rep("[", 100000))
    assert.is_nil(v)
    assert.is_string(err)
  end)

  it("keeps the last of duplicate keys (cjson behaviour)", function()
    assert.equal(2, json.decode('{"a":1,"a":2}').a)
  end)

  it("decodes unicode escapes and raw UTF-8", function()
    assert.equal("😀", json.decode('"\\ud83d\\ude00"'))
    assert.equal("é€", json.decode('"\\u00e9\\u20ac"'))
    assert.equal("日本語 ✓", json.decode('"日本語 ✓"'))
    assert.equal("a\0b", json.decode('"a\\u0000b"'))
  end)

  describe("empty arrays", function()
    it("marks [] so it can be told from {}", function()
      local v = assert(json.decode('{"a":[],"b":{},"c":[ \t\r\n ]}'))
      assert.is_true(json.is_array(v.a))
      assert.is_false(json.is_array(v.b))
      assert.is_true(json.is_array(v.c))
      assert.equal("array", json.kind(v.a))
      assert.equal("object", json.kind(v.b))
      assert.is_nil(next(v.a))
      assert.is_true(json.is_array(json.decode("[]")))
      assert.is_true(json.is_array(json.decode(" [ ] ")))
    end)

    it("round-trips empty arrays at any depth", function()
      local function count(s, pat) return select(2, s:gsub(pat, "")) end
      for _, s in ipairs({ "[]", "[[]]", "[[],[[]],{}]", '{"a":{"b":[[],{"c":[]}]}}', '[1,[],"x",[]]' }) do
        local out = json.encode(assert(json.decode(s)))
        assert.same(cjson.decode(s), cjson.decode(out))
        assert.equal(count(s, "%[%]"), count(out, "%[%]"), out)
        assert.equal(count(s, "{}"), count(out, "{}"), out)
      end
      assert.equal('{"a":[]}', json.encode(json.decode('{"a":[]}')))
      assert.equal("[[],[]]", json.encode(json.decode("[[],[]]")))
    end)

    it("never touches strings that look like empty arrays", function()
      local s = '{"a":"[]","b":"x\\"[]","c":"\\\\","d":[],"e":"[ ]\\\\\\"[]","f":"\\\\\\\\"}'
      local v = assert(json.decode(s))
      assert.equal("[]", v.a)
      assert.equal('x"[]', v.b)
      assert.equal("\\", v.c)
      assert.is_true(json.is_array(v.d))
      assert.equal('[ ]\\"[]', v.e)
      assert.equal("\\\\", v.f)
      assert.same(cjson.decode(s).e, v.e)
    end)

    it("keeps a one-element array that is not the sentinel", function()
      local v = assert(json.decode('[[], ["x"], ["\\u0000"]]'))
      assert.is_true(json.is_array(v[1]))
      assert.same({ "x" }, v[2])
      assert.same({ "\0" }, v[3])
    end)

    it("reports errors at positions of the original text", function()
      for _, s in ipairs({ '{"a": [], "b": [[]', '[[], 1 2]', '{"a": [ ], "b": "x"' }) do
        local _, err = json.decode(s)
        local _, want = require("cjson.safe").decode(s)
        assert.equal(want, err)
      end
    end)
  end)
end)

describe("json.encode", function()
  it("encodes a marked empty table as [] and an unmarked one as {}", function()
    assert.equal("[]", json.encode(json.array()))
    assert.equal("[]", json.encode(json.array({})))
    assert.equal("{}", json.encode({}))
    assert.equal('{"a":[]}', json.encode({ a = json.array() }))
    assert.equal('[1,[],[[]]]', json.encode({ 1, json.array(), { json.array() } }))
    assert.equal('[1,2]', json.encode(json.array({ 1, 2 })))
    local t = {}
    assert.equal(t, json.array(t))
    assert.is_true(json.is_array(t))
  end)

  it("encodes the hot-path shape through cjson unchanged", function()
    local docs = {}
    for i = 1, 100 do docs[i] = ("doc %d \"quoted\" / ünïcödé"):format(i) end
    local body = { model = "m", query = "q", documents = docs, top_n = 3 }
    assert.same(cjson.decode(cjson.encode(body)), cjson.decode(json.encode(body)))
  end)

  it("prints numbers exactly, beyond cjson's 14 digits", function()
    assert.equal("[0.30000000000000004]", json.encode({ 0.1 + 0.2 }))
    assert.equal('{"id":1234567890123456}', json.encode({ id = 1234567890123456 }))
    assert.equal('{"a":[[],0.30000000000000004]}', json.encode({ a = { json.array(), 0.1 + 0.2 } }))
    assert.equal("0.92", json.encode(0.92))
    assert.equal("3", json.encode(3))
  end)

  it("encodes NaN and infinities as null", function()
    assert.equal("[null,null,null]", json.encode({ 0 / 0, math.huge, -math.huge }))
    assert.equal("null", json.encode(0 / 0))
    assert.equal('[null,[]]', json.encode({ 0 / 0, json.array() }))
  end)

  it("handles sparse arrays without raising", function()
    assert.equal("[1,null,3]", json.encode({ 1, nil, 3 }))
    local v = cjson.decode(json.encode({ [1] = 1, [50] = 2 }))
    assert.same({ ["1"] = 1, ["50"] = 2 }, v)
    v = cjson.decode(json.encode({ [1] = 1, [50] = 2, z = json.array() }))
    assert.same({ ["1"] = 1, ["50"] = 2, z = {} }, v)
  end)

  it("escapes strings and keeps UTF-8", function()
    assert.equal('"a\\"b\\\\c\\n\\u0001é"', json.encode('a"b\\c\n\1é'))
    assert.equal('"\\u0000rerankd:empty-array\\u0000"', json.encode("\0rerankd:empty-array\0"))
    assert.equal('"x"', json.string("x"))
  end)

  it("raises on values JSON cannot carry", function()
    assert.has_error(function() json.encode({ f = print }) end)
    assert.has_error(function() json.encode({ [true] = 1, a = json.array() }) end)
    local cyc = {}
    cyc.self = cyc
    assert.has_error(function() json.encode(cyc) end)
    local cyc2 = { a = json.array() }
    cyc2.self = cyc2
    assert.has_error(function() json.encode(cyc2) end)
  end)

  it("round-trips generated documents", function()
    math.randomseed(42)
    local function gen(depth)
      local r = math.random(1, depth > 3 and 5 or 8)
      if r == 1 then return ("s%d\"\\[]"):format(math.random(1, 1000))
      elseif r == 2 then return math.random() * 10 ^ math.random(-20, 20)
      elseif r == 3 then return math.random(-1e6, 1e6)
      elseif r == 4 then return math.random() < 0.5
      elseif r == 5 then return json.null
      elseif r == 6 then return json.array()
      elseif r == 7 then
        local t = {}
        for i = 1, math.random(0, 4) do t[i] = gen(depth + 1) end
        return t
      else
        local t = {}
        for i = 1, math.random(1, 4) do t["k" .. i] = gen(depth + 1) end
        return t
      end
    end
    for _ = 1, 300 do
      local v = { root = gen(0) }
      local s = json.encode(v)
      local back = assert(json.decode(s))
      assert.is_true(deep_equal(v, back), s)
      assert.is_true(deep_equal(back, assert(json.decode(json.encode(back)))), s)
    end
  end)
end)

describe("json.number", function()
  it("prints the shortest exact form of common values", function()
    local cases = {
      { 0, "0" }, { -0.0, "0" }, { 1, "1" }, { -7, "-7" }, { 0.92, "0.92" }, { 0.41, "0.41" },
      { 0.1 + 0.2, "0.30000000000000004" }, { 1e300, "1e+300" }, { 1e-5, "1e-05" },
      { 2 ^ 53, "9007199254740992" }, { 1234567890123456, "1234567890123456" },
      { 0.95, "0.95" }, { 1 / 3, "0.3333333333333333" }, { 1.7976931348623157e308, "1.7976931348623157e+308" },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], json.number(c[1]), tostring(c[1]))
    end
  end)

  it("maps NaN and infinities to null", function()
    assert.equal("null", json.number(0 / 0))
    assert.equal("null", json.number(math.huge))
    assert.equal("null", json.number(-math.huge))
  end)

  it("round-trips every value (tonumber of the output equals the input)", function()
    math.randomseed(7)
    local function check(x)
      local s = json.number(x)
      assert(tonumber(s) == x, ("%.17g printed as %s"):format(x, s))
      assert(#s <= 24, s)
    end
    for _ = 1, 20000 do check(math.random()) end
    for _ = 1, 20000 do check((math.random() - 0.5) * 10 ^ math.random(-300, 300)) end
    for _ = 1, 20000 do check(math.floor(math.random() * 2 ^ 24) / 2 ^ 24) end
    for _ = 1, 20000 do
      local x = math.random(1, 99999) / 100000
      check(x)
      assert.equal(("%.15g"):format(x), json.number(x)) -- short decimals print short
    end
    check(5e-324)
    check(2.2250738585072014e-308)
  end)
end)

describe("json.kind", function()
  it("names JSON kinds", function()
    assert.equal("object", json.kind({ a = 1 }))
    assert.equal("object", json.kind({}))
    assert.equal("array", json.kind({ 1 }))
    assert.equal("array", json.kind(json.array()))
    assert.equal("string", json.kind("x"))
    assert.equal("number", json.kind(1))
    assert.equal("boolean", json.kind(false))
    assert.equal("null", json.kind(json.null))
    assert.is_nil(json.kind(nil))
    assert.is_nil(json.kind(print))
  end)
end)

describe("json.error_body", function()
  it("has the project's error shape, keys in order", function()
    assert.equal('{"error":{"type":"invalid_request_error","message":"documents[3].text must be a string",'
      .. '"param":"documents[3].text"}}',
      json.error_body(400, "invalid_request_error", "documents[3].text must be a string", "documents[3].text"))
  end)

  it("writes param null when absent and escapes the message", function()
    local s = json.error_body(502, "upstream_error", 'upstream "cohere" answered 500\n')
    assert.equal('{"error":{"type":"upstream_error","message":"upstream \\"cohere\\" answered 500\\n","param":null}}', s)
    local v = cjson.decode(s)
    assert.equal(cjson.null, v.error.param)
  end)

  it("derives the type from the status", function()
    local want = {
      [400] = "invalid_request_error", [413] = "invalid_request_error", [415] = "invalid_request_error",
      [422] = "invalid_request_error", [401] = "authentication_error", [404] = "not_found_error",
      [405] = "method_not_allowed", [429] = "rate_limit_error", [502] = "upstream_error",
      [504] = "timeout_error", [500] = "internal_error", [503] = "unavailable",
      [418] = "invalid_request_error", [599] = "internal_error",
    }
    for status, t in pairs(want) do
      assert.equal(t, json.error_type(status))
      assert.equal(t, cjson.decode(json.error_body(status, nil, "m")).error.type)
    end
  end)
end)
