-- rerank.core.yaml_parse / yaml_load (core/yaml.c): values, marks, interpolation, errors.
local core = require "rerank.core"
local setenv = require("support.files").setenv

local NULL = core.yaml_parse("~")

local function parse(text)
  return core.yaml_parse(text, "t.yaml")
end

local function err_of(text)
  local v, err = parse(text)
  assert.is_nil(v)
  assert.is_string(err)
  return err
end

describe("yaml: values", function()
  it("builds mappings and 1-based sequences", function()
    local v = parse("a:\n  b: [x, y]\n  c:\n    - 1\n    - { d: e }\n")
    assert.are.same({ a = { b = { "x", "y" }, c = { 1, { d = "e" } } } }, v)
  end)

  it("resolves plain scalars per the YAML 1.2 core schema", function()
    local v = parse(table.concat({
      "t1: true", "t2: True", "t3: TRUE", "f1: false", "f2: False", "f3: FALSE",
      "yes: yes", "no: no", "on: on",
      "i1: 42", "i2: -17", "i3: +5", "i4: 0x1F", "i5: 0o17", "i6: 007",
      "x1: 1.5", "x2: -2.5e3", "x3: .5", "x4: 1e3", "x5: 1.", "x6: .inf", "x7: -.Inf", "x8: +.INF",
      "s1: 1.2.3", "s2: 0x", "s3: 12abc", "s4: 0b101", "s5: 1_000", "s6: ..5", "s7: e3",
      "",
    }, "\n"))
    assert.are.same({ true, true, true, false, false, false },
      { v.t1, v.t2, v.t3, v.f1, v.f2, v.f3 })
    assert.are.same({ "yes", "no", "on" }, { v.yes, v.no, v.on }) -- YAML 1.1 booleans stay strings
    assert.are.same({ 42, -17, 5, 31, 15, 7 }, { v.i1, v.i2, v.i3, v.i4, v.i5, v.i6 })
    assert.are.same({ 1.5, -2500, 0.5, 1000, 1, math.huge, -math.huge, math.huge },
      { v.x1, v.x2, v.x3, v.x4, v.x5, v.x6, v.x7, v.x8 })
    assert.are.same({ "1.2.3", "0x", "12abc", "0b101", "1_000", "..5", "e3" },
      { v.s1, v.s2, v.s3, v.s4, v.s5, v.s6, v.s7 })
    local n = parse("n: .nan\n").n
    assert.is_true(n ~= n)
  end)

  it("keeps quoted and block scalars as strings", function()
    local v = parse('a: "123"\nb: \'true\'\nc: "~"\nd: |\n  42\ne: >\n  null\nf: ""\n')
    assert.are.same({ a = "123", b = "true", c = "~", d = "42\n", e = "null\n", f = "" }, v)
  end)

  it("represents null as an absent key in mappings and as NULL in sequences", function()
    local v = parse("a: ~\nb: null\nc:\nd: NULL\ne: Null\nl: [1, ~, null, 3]\n")
    assert.are.same({ "a", "b", "c", "d", "e" }, { next(v) == "l" and "a" or "x", "b", "c", "d", "e" })
    assert.is_nil(v.a)
    assert.is_nil(v.b)
    assert.is_nil(v.c)
    assert.are.equal(4, #v.l)
    assert.are.equal(NULL, v.l[2])
    assert.are.equal(NULL, v.l[3])
    assert.are.equal("userdata", type(NULL))
    local ok, cjson = pcall(require, "cjson")
    if ok then assert.are.equal(cjson.null, NULL) end
  end)

  it("returns NULL for an empty document", function()
    for _, text in ipairs({ "", "# only a comment\n", "---\n", "~\n" }) do
      local v, marks = parse(text)
      assert.are.equal(NULL, v)
      assert.are.equal("table", type(marks))
    end
  end)

  it("keeps mapping keys as strings", function()
    local v = parse("1: a\ntrue: b\n~: c\n")
    assert.are.same({ ["1"] = "a", ["true"] = "b", ["~"] = "c" }, v)
  end)

  it("honours explicit core tags", function()
    local v = parse("a: !!str 123\nb: !!int \"42\"\nc: !!float '1.5'\nd: !!bool \"true\"\ne: ! 12\nf: !!str\n")
    assert.are.same({ a = "123", b = 42, c = 1.5, d = true, e = "12", f = "" }, v)
    assert.are.equal('t.yaml:1:4: invalid !!int value "x"', err_of("a: !!int x\n"))
    assert.are.equal("t.yaml:1:4: unsupported tag !custom", err_of("a: !custom x\n"))
  end)

  it("copies aliases and applies merge keys", function()
    local v = parse(table.concat({
      "base: &b { x: 1, y: [1, 2] }",
      "copy: *b",
      "list: [&s hello, *s]",
      "merged:",
      "  <<: *b",
      "  x: 2",
      "multi:",
      "  <<: [{ a: 1, b: 1 }, { b: 2, c: 2 }]",
      "",
    }, "\n"))
    assert.are.same({ x = 1, y = { 1, 2 } }, v.copy)
    assert.are_not.equal(v.base, v.copy)
    assert.are_not.equal(v.base.y, v.copy.y)
    assert.are.same({ "hello", "hello" }, v.list)
    assert.are.same({ x = 2, y = { 1, 2 } }, v.merged)
    assert.are.same({ a = 1, b = 1, c = 2 }, v.multi)
    assert.is_nil(v.merged["<<"])
    assert.are.same({ ["<<"] = "x" }, parse('"<<": x\n')) -- a quoted << is an ordinary key
  end)
end)

describe("yaml: marks", function()
  it("maps every path to 1-based line:col", function()
    local _, m = parse(table.concat({
      "server:",
      "  listen: \"127.0.0.1:8080\"",
      "models:",
      "  - name: bm25",
      "    provider: bm25",
      "  - { name: x, provider: cohere, fallbacks: [bm25] }",
      "",
    }, "\n"))
    assert.are.equal("1:1", m[""])
    assert.are.equal("2:3", m.server)
    assert.are.equal("2:11", m["server.listen"])
    assert.are.equal("4:3", m.models)
    assert.are.equal("4:5", m["models[0]"])
    assert.are.equal("4:11", m["models[0].name"])
    assert.are.equal("5:15", m["models[0].provider"])
    assert.are.equal("6:5", m["models[1]"])
    assert.are.equal("6:26", m["models[1].provider"])
    assert.are.equal("6:45", m["models[1].fallbacks"])
    assert.are.equal("6:46", m["models[1].fallbacks[0]"])
  end)

  it("marks null values and root sequences", function()
    local _, m = parse("a:\nb: ~\n")
    assert.are.equal("1:3", m.a)
    assert.are.equal("2:4", m.b)
    _, m = parse("- 1\n- 2\n")
    assert.are.equal("1:3", m["[0]"])
    assert.are.equal("2:3", m["[1]"])
  end)

  it("counts columns in characters", function()
    local _, m = parse("ünï: x\n")
    assert.are.equal("1:6", m["ünï"])
  end)
end)

describe("yaml: interpolation", function()
  before_each(function()
    setenv("RR_YAML_SET", "value")
    setenv("RR_YAML_NUM", "8080")
    setenv("RR_YAML_EMPTY", "")
    setenv("RR_YAML_UNSET", nil)
  end)
  after_each(function()
    setenv("RR_YAML_SET", nil)
    setenv("RR_YAML_NUM", nil)
    setenv("RR_YAML_EMPTY", nil)
  end)

  it("expands ${VAR}", function()
    assert.are.same({ a = "value", b = "x-value-y", c = "value/value" },
      parse("a: ${RR_YAML_SET}\nb: x-${RR_YAML_SET}-y\nc: ${RR_YAML_SET}/${RR_YAML_SET}\n"))
  end)

  it("expands an unset ${VAR} to the empty string", function()
    local v = parse('a: "${RR_YAML_UNSET}"\nb: ${RR_YAML_UNSET}\nc:\n  - x${RR_YAML_UNSET}y\n')
    assert.are.same({ a = "", c = { "xy" } }, v) -- b: empty plain scalar is null
  end)

  it("uses ${VAR:-default} when unset or empty, ${VAR-default} only when unset", function()
    local v = parse(table.concat({
      "a: ${RR_YAML_UNSET:-dflt}", "b: ${RR_YAML_EMPTY:-dflt}", "c: ${RR_YAML_SET:-dflt}",
      "d: ${RR_YAML_UNSET-dflt}", "e: \"${RR_YAML_EMPTY-dflt}\"", "f: ${RR_YAML_UNSET:-}",
      "g: \"${RR_YAML_UNSET:-a ${RR_YAML_SET} b}\"", "h: ${RR_YAML_UNSET:-{}}", "",
    }, "\n"))
    assert.are.same({ a = "dflt", b = "dflt", c = "value", d = "dflt", e = "", g = "a value b", h = "{}" }, v)
  end)

  it("resolves plain scalars after interpolation, quoted ones stay strings", function()
    local v = parse('port: ${RR_YAML_NUM}\nq: "${RR_YAML_NUM}"\nn: ${RR_YAML_UNSET:-12}\nb: ${RR_YAML_UNSET:-true}\n')
    assert.are.same({ port = 8080, q = "8080", n = 12, b = true }, v)
  end)

  it("does not re-expand environment values", function()
    setenv("RR_YAML_SET", "${RR_YAML_NUM}")
    assert.are.same({ a = "${RR_YAML_NUM}" }, parse("a: ${RR_YAML_SET}\n"))
  end)

  it("treats $${ as a literal ${", function()
    assert.are.same({ a = "${RR_YAML_SET}", b = "$x $$ ${", c = "$" },
      parse('a: $${RR_YAML_SET}\nb: "$x $$ $${"\nc: $\n'))
  end)

  it("fails ${VAR:?message} when unset or empty, with the scalar's location", function()
    assert.are.equal("t.yaml:2:8: RR_YAML_UNSET: please set it",
      err_of("a: 1\nkey:   ${RR_YAML_UNSET:?please set it}\n"))
    assert.are.equal("t.yaml:1:4: RR_YAML_EMPTY: must not be empty", err_of("a: ${RR_YAML_EMPTY:?must not be empty}\n"))
    assert.are.equal("t.yaml:1:4: RR_YAML_UNSET: required environment variable is not set",
      err_of("a: ${RR_YAML_UNSET:?}\n"))
    assert.are.same({ a = "value", b = "" }, parse('a: ${RR_YAML_SET:?x}\nb: "${RR_YAML_EMPTY?x}"\n'))
  end)

  it("interpolates keys too", function()
    assert.are.same({ value = 1 }, parse("${RR_YAML_SET}: 1\n"))
  end)

  it("rejects malformed references", function()
    assert.are.equal('t.yaml:1:4: unterminated variable reference "${RR_YAML_SET" (missing })',
      err_of("a: ${RR_YAML_SET\n"))
    assert.are.equal(
      't.yaml:1:4: invalid variable reference "${}": expected a name after ${ (write $${ for a literal ${)',
      err_of('a: "${}"\n'))
    assert.are.equal(
      't.yaml:1:4: invalid variable reference "${A B}" (use ${NAME}, ${NAME:-default} or ${NAME:?message})',
      err_of('a: "${A B}"\n'))
  end)
end)

describe("yaml: errors", function()
  it("reports libyaml errors with name:line:col", function()
    assert.are.equal("t.yaml:2:5: mapping values are not allowed in this context", err_of("a: 1\nb: c: d\n"))
    assert.are.equal("t.yaml:2:2: did not find expected ',' or ']' (while parsing a flow sequence at line 1, column 4)",
      err_of("a: [1, 2\nb: 3\n"))
    assert.are.equal(
      "t.yaml:2:1: found a tab character that violates indentation (while scanning a plain scalar at line 1, column 4)",
      err_of("a: 1\n\tb: 2\n"))
    assert.are.equal("t.yaml:1:5: invalid leading UTF-8 octet (#255)", err_of('a: "\255"\n'))
  end)

  it("rejects duplicate keys, also with null values", function()
    assert.are.equal('t.yaml:3:1: duplicate key "a"', err_of("a: 1\nb: 2\na: 3\n"))
    assert.are.equal('t.yaml:3:3: duplicate key "x"', err_of("m:\n  x:\n  x: 1\n"))
    assert.are.equal('t.yaml:1:9: duplicate key "k"', err_of("{ k: 1, k: 2 }\n"))
  end)

  it("rejects a second document", function()
    assert.are.equal('t.yaml:2:1: only one YAML document is supported (found another "---")', err_of("a: 1\n---\nb: 2\n"))
  end)

  it("rejects unknown aliases, complex keys and bad merges", function()
    assert.are.equal("t.yaml:1:4: unknown alias *nope", err_of("a: *nope\n"))
    assert.are.equal("t.yaml:1:8: unknown alias *a", err_of("a: &a [*a]\n")) -- no recursion
    assert.are.equal("t.yaml:1:3: only scalar mapping keys are supported", err_of("? [a]\n: 1\n"))
    assert.are.equal("t.yaml:1:5: the value of a merge key (<<) must be a mapping or a list of mappings",
      err_of("<<: 5\n"))
  end)

  it("limits nesting to 64 levels", function()
    assert.is_table(parse(("["):rep(64) .. ("]"):rep(64)))
    assert.are.equal("t.yaml:1:65: nesting deeper than 64 levels", err_of(("["):rep(65) .. ("]"):rep(65)))
  end)

  it("limits alias expansion", function()
    local lines = { "a0: &a0 [x, x, x, x, x, x, x, x, x, x]" }
    for i = 1, 8 do
      lines[#lines + 1] = ("a%d: &a%d [%s]"):format(i, i, ("*a" .. (i - 1) .. ", "):rep(10):sub(1, -3))
    end
    local err = err_of(table.concat(lines, "\n") .. "\n")
    assert.is_truthy(err:find("expands to more than 100000 nodes", 1, true), err)
  end)

  it("survives many failing parses (resources are released on every path)", function()
    for i = 1, 2000 do
      local _, e = parse(("a: %d\nb: [1, ${NOPE_%d:?x}]\n"):format(i, i))
      assert(e)
      assert(not parse("a: [\n"))
    end
    collectgarbage()
  end)
end)

describe("yaml_load", function()
  it("reads a file and names it in errors", function()
    local dir = "tests/tmp/yaml_spec"
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/x.yaml", "wb"))
    f:write("a: 1\nb: [\n")
    f:close()
    local v, err = core.yaml_load(dir .. "/x.yaml")
    assert.is_nil(v)
    assert.are.equal(dir .. "/x.yaml:3:1: did not find expected node content (while parsing a flow node at line 3, column 1)",
      err)
    assert.are.same({ nil, "/nonexistent.yaml: No such file or directory" }, { core.yaml_load("/nonexistent.yaml") })
  end)
end)
