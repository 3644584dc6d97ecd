-- luacheck: std +busted
-- rerank.shapes.fuse: POST /v1/fuse's wire shape (the body's fields, the answer's bytes); the
-- fusion it maps onto is rerank.fuse's (fusion_spec.lua), the HTTP route tests/e2e/fusion_spec.lua.
local S = require "rerank.shapes.fuse"
local fuse = require "rerank.fuse"
local json = require "rerank.json"

local FIXTURES = (debug.getinfo(1, "S").source:match("^@(.*)tests/lua/[^/]*$") or "./") .. "tests/fixtures/fusion/"

local function read(name)
  local f = assert(io.open(FIXTURES .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- parse + run + render, as daemon/server.lua's handle_fuse does: body | nil, err
local function answer(body, limits)
  local spec, err = S.parse(body, fuse.methods(nil), limits)
  if not spec then return nil, err end
  local order, F = S.run(spec)
  if not order then return nil, F end
  return S.render(spec.lists, F, order)
end

local function err_of(body, limits)
  local out, err = answer(body, limits)
  assert.is_nil(out)
  return err
end

describe("shapes.fuse answers", function()
  it("renders the hybrid fixture byte for byte (rrf by default, ranks and scores by list name)", function()
    local want = '{"results":['
      .. '{"id":"a","score":0.03252247488101534,"ranks":{"vector":1,"fts":2},"scores":{"vector":0.1,"fts":6}},'
      .. '{"id":"c","score":0.032266458495966696,"ranks":{"vector":3,"fts":1},"scores":{"vector":0.7,"fts":9}},'
      .. '{"id":"b","score":0.016129032258064516,"ranks":{"vector":2},"scores":{"vector":0.4}},'
      .. '{"id":"d","score":0.015873015873015872,"ranks":{"fts":3},"scores":{"fts":3}}]}'
    local text = read("hybrid_lists.json")
    assert.are.equal(want, answer(text))                    -- the JSON text
    assert.are.equal(want, answer(assert(json.decode(text)))) -- the decoded body (the daemon's)
  end)

  it("keeps numeric ids numbers, names unnamed lists by position, omits missing scores", function()
    assert.are.equal('{"results":[{"id":"b","score":0.03252247488101534,"ranks":{"0":2,"1":1},"scores":{}},'
      .. '{"id":3,"score":0.03200204813108039,"ranks":{"0":3,"1":2},"scores":{}}]}',
      answer('{"lists":[["a","b",3],["b",3,"c"]],"top_n":2}'))
    assert.are.equal('{"results":[{"id":1.5,"score":2,"ranks":{"0":1},"scores":{"0":1}},'
      .. '{"id":"q\\"\\n","score":1,"ranks":{"0":2},"scores":{"0":2}}]}',
      answer('{"method":"borda","lists":[{"items":[{"id":1.5,"score":1},{"id":"q\\"\\n","score":2}]}]}'))
  end)

  it("answers empty input with no results", function()
    assert.are.equal('{"results":[]}', answer('{"lists":[]}'))
    assert.are.equal('{"results":[]}', answer('{"method":"borda","lists":[{"items":[]},[]]}'))
  end)

  it("takes the built-ins' parameters at the top level too; params wins", function()
    local lists = '"lists":[["x","y"],["y","z"]]'
    local k20 = answer('{"method":"rrf","params":{"k":20},' .. lists .. '}')
    assert.are.equal(k20, answer('{"method":"rrf","k":20,' .. lists .. '}'))
    assert.are.equal(k20, answer('{"method":"rrf","k":10,"params":{"k":20},' .. lists .. '}'))
    assert.are_not.equal(k20, answer('{"method":"rrf","k":10,' .. lists .. '}'))
  end)

  it("clamps an overflowing fused score to the largest double", function()
    assert.are.equal('{"results":[{"id":"a","score":1.7976931348623157e+308,"ranks":{"0":1,"1":1},'
      .. '"scores":{"0":1e+308,"1":1e+308}}]}',
      answer('{"method":"combsum","weights":[1e308,1e308],'
        .. '"lists":[{"items":[{"id":"a","score":1e308}]},{"items":[{"id":"a","score":1e308}]}]}'))
  end)
end)

describe("shapes.fuse request errors", function()
  it("names the field, with the status the route answers", function()
    local cases = {
      { "{", 400, nil, "invalid JSON body" },
      { "[]", 400, nil, "request body must be a JSON object" },
      { '{"method":5,"lists":[]}', 400, "method" },
      { '{"method":"rff","lists":[]}', 422, "method", 'did you mean "rrf"' },
      { '{"top_n":1.5,"lists":[]}', 400, "top_n", "top_n must be an integer" },
      { '{"top_n":0,"lists":[]}', 422, "top_n", "top_n must be >= 1" },
      { '{"params":[1],"lists":[]}', 400, "params", "params must be an object" },
      { '{"fusion_file":"x","lists":[]}', 422, "fusion_file", "only accepted in the configuration" },
      { '{"params":{"fusion_file":"x"},"lists":[]}', 422, "params.fusion_file" },
      { '{"k":-1,"lists":[]}', 422, "params.k", "params.k must be >= 0" },
      { '{"lists":"x"}', 400, "lists", "lists must be an array" },
      { "{}", 400, "lists", "lists is required" },
      { '{"lists":[["a"]],"weights":[1,2]}', 422, "params.weights", "2 entries for 1 lists" },
      { '{"lists":[{"items":[{"id":"a"}]}],"method":"linear"}', 400, "lists[0].items[0].score",
        'required by method "linear"' },
    }
    for _, c in ipairs(cases) do
      local err = err_of(c[1])
      assert.are.equal(c[2], err.status, c[1] .. ": " .. err.message)
      assert.are.equal(c[3], err.param, c[1])
      assert.are.equal("invalid_request_error", err.type)
      if c[4] then assert.truthy(err.message:find(c[4], 1, true), err.message) end
    end
  end)

  it("applies the server's list and item limits", function()
    local err = err_of('{"lists":[["a"],["a"],["a"],["a"]]}', { max_lists = 3, max_items = 10 })
    assert.are.equal(422, err.status)
    assert.truthy(err.message:find("the maximum is 3 (server.max_fuse_lists)", 1, true), err.message)
    err = err_of('{"lists":[["a","b"],["a","b"]]}', { max_lists = 3, max_items = 3 })
    assert.are.equal(422, err.status)
    assert.truthy(err.message:find("server.max_fuse_items", 1, true), err.message)
  end)

  it("knows a configuration's methods through the registry it is given", function()
    local reg = fuse.methods({ fusion = { { name = "best_rank", file = FIXTURES .. "my_fusion.lua" } } })
    local spec = assert(S.parse('{"method":"best_rank","lists":[["x","y"]]}', reg))
    assert.are.equal("best_rank", spec.method.name)
    assert.are.equal(1, spec.params.boost) -- the file's declared default
    spec = assert(S.parse('{"method":"best_rank","params":{"boost":2},"lists":[["x","y"]]}', reg))
    local order, F = S.run(spec)
    assert.are.equal('{"results":[{"id":"x","score":2,"ranks":{"0":1},"scores":{}},'
      .. '{"id":"y","score":1,"ranks":{"0":2},"scores":{}}]}', S.render(spec.lists, F, order))
    local _, err = S.parse('{"method":"best_rank","params":{"boost":-1},"lists":[]}', reg)
    assert.are.equal("params.boost", err.param)
    _, err = S.parse('{"method":"best_rank","lists":[]}', fuse.methods(nil))
    assert.are.equal("method", err.param)
  end)
end)
