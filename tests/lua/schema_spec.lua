-- The configuration checker's engine (rerank.config.schema): typed checks against small specs, the
-- error tables they raise (path + text, located later through marks), durations and sizes,
-- unknown keys with "did you mean", and the path helpers. config_load_spec.lua covers the
-- configuration itself.
local S = require "rerank.config.schema"

-- the error a check raises: its text (and the table), or nil when it passed
local function err_of(spec, v, path, ctx)
  local ok, e = pcall(S.check, spec, v, path or "x", ctx or {})
  if ok then return nil end
  assert(S.is_error(e), "not a config error: " .. tostring(e))
  return e.text, e
end

local function ok_of(spec, v, path, ctx)
  return S.check(spec, v, path or "x", ctx or {})
end

describe("schema.duration and schema.size", function()
  it("reads durations in seconds from numbers and unit strings", function()
    assert.are.equal(0.25, S.duration("250ms"))
    assert.are.equal(10, S.duration("10s"))
    assert.are.equal(1.5, S.duration("1.5s"))
    assert.are.equal(90, S.duration("1m30s"))
    assert.are.equal(3600, S.duration("1H"))
    assert.are.equal(5, S.duration(" 5 "))
    assert.are.equal(2e-6, S.duration("2us"))
    assert.are.equal(3, S.duration(3))
    for _, bad in ipairs({ "", "10x", "s", "-1s", "1m30", {}, true }) do assert.is_nil(S.duration(bad), tostring(bad)) end
    assert.is_nil(S.duration(-1))
    assert.is_nil(S.duration(math.huge))
  end)

  it("reads sizes in bytes (1024-based) from numbers and unit strings", function()
    assert.are.equal(100, S.size("100b"))
    assert.are.equal(512 * 1024, S.size("512k"))
    assert.are.equal(8 * 1024 ^ 2, S.size("8MB"))
    assert.are.equal(8 * 1024 ^ 2, S.size("8 MiB"))
    assert.are.equal(1024 ^ 3, S.size("1g"))
    assert.are.equal(1536, S.size("1.5k"))
    assert.are.equal(42, S.size(42))
    for _, bad in ipairs({ "", "1t", "k", "-1k", 1.5, -1, {} }) do assert.is_nil(S.size(bad), tostring(bad)) end
  end)
end)

describe("schema.check scalars", function()
  it("strings: type, nonempty, enum with a suggestion", function()
    assert.are.equal("a", ok_of({ type = "string" }, "a"))
    assert.are.equal('x must be a string (got 5)', err_of({ type = "string" }, 5))
    assert.are.equal("x: must not be empty", err_of({ type = "string", nonempty = true }, ""))
    assert.are.equal("end", ok_of({ type = "string", enum = { "end", "start" } }, "end"))
    assert.are.equal('x: invalid value "strat" (expected one of: end, start; did you mean "start"?)',
      err_of({ type = "string", enum = { "end", "start" } }, "strat"))
    assert.are.equal('x: invalid value "zzzzzz" (expected one of: end, start)',
      err_of({ type = "string", enum = { "end", "start" } }, "zzzzzz"))
  end)

  it("integers and numbers: type and range", function()
    assert.are.equal(3, ok_of({ type = "integer", min = 1 }, 3))
    assert.are.equal("x must be an integer (got 1.5)", err_of({ type = "integer" }, 1.5))
    assert.are.equal("x must be an integer >= 1 (got 0)", err_of({ type = "integer", min = 1 }, 0))
    assert.are.equal("x must be an integer <= 9 (got 10)", err_of({ type = "integer", max = 9 }, 10))
    assert.are.equal("x must be a number between 0 and 1 (got 2)", err_of({ type = "number", min = 0, max = 1 }, 2))
    assert.are.equal("x must be a number (got nan)", (err_of({ type = "number" }, 0 / 0):gsub("%-nan", "nan")))
    assert.are.equal('x must be a number (got "1")', err_of({ type = "number" }, "1"))
  end)

  it("booleans, and null described as null", function()
    assert.is_false(ok_of({ type = "boolean" }, false))
    assert.are.equal('x must be a boolean (true or false) (got "yes")', err_of({ type = "boolean" }, "yes"))
    assert.are.equal("x must be a boolean (true or false) (got null)", err_of({ type = "boolean" }, S.NULL))
  end)

  it("durations and sizes: parsed, bounded, with human limits in messages", function()
    assert.are.equal(0.5, ok_of({ type = "duration" }, "500ms"))
    assert.are.equal('x: invalid duration "soon" (use e.g. 250ms, 10s)', err_of({ type = "duration" }, "soon"))
    assert.are.equal("x must be a duration such as 250ms or 10s (got true)", err_of({ type = "duration" }, true))
    assert.are.equal('x: must be at most 24h (got "25h")', err_of({ type = "duration" }, "25h"))
    assert.are.equal("x: must be greater than 0 (got 0)", err_of({ type = "duration", positive = true }, 0))
    assert.are.equal('x: must be at least 100ms (got "1ms")', err_of({ type = "duration", min = 0.1 }, "1ms"))
    assert.are.equal(8 * 1024 ^ 2, ok_of({ type = "size" }, "8m"))
    assert.are.equal('x: must be at most 1m (got "2m")', err_of({ type = "size", max = 1024 ^ 2 }, "2m"))
    assert.are.equal('x: invalid size "big" (use e.g. 512k, 8m)', err_of({ type = "size" }, "big"))
  end)

  it("a long string is cut in messages", function()
    local text = err_of({ type = "integer" }, ("a"):rep(100))
    assert.truthy(text:find(('"%s..."'):format(("a"):rep(40)), 1, true), text)
  end)
end)

describe("schema.check tables", function()
  it("lists: items checked, a lone value with single, nulls dropped, 0-based paths", function()
    local spec = { type = "list", items = { type = "integer" } }
    assert.are.same({ 1, 2 }, ok_of(spec, { 1, S.NULL, 2 }))
    assert.are.equal("x must be a list (got 1)", err_of(spec, 1))
    assert.are.same({ 7 }, ok_of({ type = "list", single = true, items = { type = "integer" } }, 7))
    assert.are.equal('x[1] must be an integer (got "b")', err_of(spec, { 1, "b" }))
    assert.are.equal("x must be a list (got a mapping)", err_of(spec, { a = 1 }))
  end)

  it("maps: free keys, values checked, nulls dropped", function()
    local spec = { type = "map", values = { type = "number" } }
    assert.are.same({ a = 1 }, ok_of(spec, { a = 1, b = S.NULL }))
    assert.are.equal('x.b must be a number (got "2")', err_of(spec, { a = 1, b = "2" }))
    assert.are.equal("x must be a mapping (got a list)", err_of(spec, { 1, 2 }))
  end)

  it("records: defaults, required keys, unknown keys located at the key", function()
    local spec = { type = "record", fields = {
      { "host", { type = "string", required = true } },
      { "port", { type = "integer", default = 6379 } },
      { "tags", { type = "table", default = { "a" } } },
    } }
    local out = ok_of(spec, { host = "h" }, "redis")
    assert.are.same({ host = "h", port = 6379, tags = { "a" } }, out)
    local again = ok_of(spec, { host = "h" }, "redis")
    assert.are_not.equal(out.tags, again.tags) -- defaults are copies
    assert.are.equal('redis: missing required key "host"', err_of(spec, { port = 1 }, "redis"))
    local text, e = err_of(spec, { host = "h", prot = 1 }, "redis")
    assert.are.equal('redis.prot: unknown key (did you mean "port"?)', text)
    assert.are.equal("redis.prot", e.path)
    assert.is_true(e.at_key)
    text = err_of(spec, { host = "h", zzzzzz = 1 }, "redis")
    assert.are.equal("redis.zzzzzz: unknown key (expected one of: host, port, tags)", text)
  end)

  it("unknown keys: the first in file order, a hint for known mistakes, x- keys at the root", function()
    local allowed = { models = true, server = true }
    local ctx = { marks = { ["bbbbbbbbb"] = "2:1", ["aaaaaaaaa"] = "5:1" } }
    local ok, e = pcall(S.check_keys, { aaaaaaaaa = 1, bbbbbbbbb = 2 }, "", allowed, ctx)
    assert.is_false(ok)
    assert.are.equal("bbbbbbbbb", e.path)
    ok, e = pcall(S.check_keys, { provider_file = 1 }, "m", allowed,
      { key_hints = { ["m.provider_file"] = "write it under models" } })
    assert.is_false(ok)
    assert.are.equal("m.provider_file: unknown key (write it under models)", e.text)
    assert.is_nil(S.check_keys({ ["x-note"] = 1, models = 1 }, "", allowed, {}))
    assert.is_false(pcall(S.check_keys, { ["x-note"] = 1 }, "server", allowed, {}))
  end)

  it("a custom check function, and an unknown type is a programming error", function()
    local spec = { check = function(_, v, path) if v ~= 1 then S.fail(path, "must be one") end return "one" end }
    assert.are.equal("one", ok_of(spec, 1))
    assert.are.equal("x: must be one", err_of(spec, 2))
    local ok, e = pcall(S.check, { type = "nope" }, 1, "x", {})
    assert.is_false(ok)
    assert.is_false(S.is_error(e))
    assert.truthy(tostring(e):find("bad schema type nope", 1, true))
  end)
end)

describe("schema helpers", function()
  it("did_you_mean: small edits, transpositions, prefixes; nothing far off", function()
    local c = { "listen", "workers", "timeout", "max_body" }
    assert.are.equal("listen", S.did_you_mean("lisen", c))
    assert.are.equal("listen", S.did_you_mean("lsiten", c))
    assert.are.equal("timeout", S.did_you_mean("TimeOut", c))
    assert.are.equal("max_body", S.did_you_mean("max", c))
    assert.is_nil(S.did_you_mean("zzz", c))
    assert.is_nil(S.did_you_mean("", c))
    assert.is_nil(S.did_you_mean(5, c))
  end)

  it("paths: keys joined with dots, indexes 0-based", function()
    assert.are.equal("server", S.key_path("", "server"))
    assert.are.equal("server.listen", S.key_path("server", "listen"))
    assert.are.equal("models[0]", S.idx_path("models", 1))
  end)

  it("is_list, is_mapping, describe, sorted_keys", function()
    assert.is_true(S.is_list({ 1, 2 }))
    assert.is_true(S.is_list({}))
    assert.is_false(S.is_list({ 1, a = 2 }))
    assert.is_true(S.is_mapping({}))
    assert.is_false(S.is_mapping({ 1 }))
    assert.are.equal("an empty table", S.describe({}))
    assert.are.equal("a list", S.describe({ 1 }))
    assert.are.equal('"s"', S.describe("s"))
    assert.are.same({ 1, "a", "b" }, S.sorted_keys({ b = 1, a = 1, [1] = 1 }))
    assert.is_true(S.is_null(nil) and S.is_null(S.NULL))
    assert.is_false(S.is_null(false))
  end)
end)
