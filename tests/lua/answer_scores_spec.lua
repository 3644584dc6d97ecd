-- U.parse_scores: the C fast path that reads a rerank answer's item list straight into
-- scores (core/json.c answer mode). It must agree with U.parse wherever it answers, and
-- hand every answer it cannot judge exactly to U.parse (nil).
local U = require "rerank.provider_util"
local json = require "rerank.json"

-- index -> score of either form, and the usage
local function as_map(out)
  local m = {}
  if out.scores then
    for i = 1, table.maxn(out.scores) do
      if out.scores[i] ~= nil then m[i - 1] = out.scores[i] end
    end
  else
    for _, r in ipairs(out.results) do m[r.index] = r.score end
  end
  return m
end

local function agree(body, n, headers)
  local fast = U.parse_scores(body, headers, n)
  local full, err = U.parse(body, headers, n)
  if fast then
    assert(full, ("fast path accepted what U.parse refuses (%s): %s"):format(tostring(err), body))
    assert.are.same(as_map(full), as_map(fast))
    assert.are.same(full.usage, fast.usage)
  end
  return fast, full, err
end

describe("U.parse_scores (answers read in C)", function()
  it("reads a Cohere answer with usage, in any item order", function()
    local body = '{"id":"x","results":[{"index":2,"relevance_score":0.5},{"index":0,"relevance_score":0.9}],'
      .. '"meta":{"billed_units":{"search_units":1}}}'
    local fast = assert(agree(body, 3))
    assert.are.same({ [1] = 0.9, [3] = 0.5 }, fast.scores)
    assert.are.same({ search_units = 1 }, fast.usage)
  end)

  it("takes the score members in U.read's order and null as absent", function()
    local fast = assert(agree('{"data":[{"index":0,"score":1,"relevance_score":2},'
      .. '{"index":1,"relevance_score":null,"logit":-3}]}', 2))
    assert.are.same({ 2, -3 }, fast.scores)
    fast = assert(agree('{"rankings":[{"index":1,"relevanceScore":0.25}]}', 2))
    assert.are.same({ [2] = 0.25 }, fast.scores)
  end)

  it("prefers results over data over rankings, and the last of repeated keys", function()
    local fast = assert(agree('{"rankings":[{"index":0,"score":3}],"data":[{"index":0,"score":2}],'
      .. '"results":[{"index":0,"score":1}]}', 1))
    assert.are.same({ 1 }, fast.scores)
    fast = assert(agree('{"results":"none","data":[{"index":0,"score":2}]}', 1))
    assert.are.same({ 2 }, fast.scores)
    fast = assert(agree('{"results":[{"index":0,"score":1}],"results":[{"index":0,"score":5}]}', 1))
    assert.are.same({ 5 }, fast.scores)
    -- an object under results wins over the array before it: U.parse decides
    assert.is_nil((agree('{"results":[{"index":0,"score":1}],"results":{"a":1}}', 1)))
  end)

  it("skips items without an index or a score, like U.read", function()
    local fast = assert(agree('{"results":[{"index":0},{"score":1},3,"x",[1],'
      .. '{"index":1,"score":0.5,"document":{"text":"t"}}]}', 2))
    assert.are.same({ [2] = 0.5 }, fast.scores)
  end)

  it("leaves every answer it cannot judge exactly to U.parse, with U.parse's messages", function()
    local cases = {
      { '{"results":[{"index":0,"relevance_score":1e400}]}', "not a finite number" },
      { '{"results":[{"index":3,"relevance_score":1}]}', "is not a document index" },
      { '{"results":[{"index":0.5,"relevance_score":1}]}', "is not a document index" },
      { '{"results":[{"index":-1,"relevance_score":1}]}', "is not a document index" },
      { '{"results":[{"index":0,"score":1},{"index":0,"score":2}]}', "appears twice" },
      { '{"results":[]}', "no usable results" },
      { '{"results":[{"index":"0","score":"0.5"}]}', nil }, -- strings: U.read converts them
      { '[{"index":0,"score":1}]', nil },                   -- a bare list
      { '{"scores":[0.1,0.2]}', nil },                      -- input-order scores
      { '{"error":"boom"}', "no results" },
      { '{"results":[{"index":0,"score":1}', "invalid JSON" },
      { '{"results":[{"index":01,"score":1}]}', "invalid JSON" },
    }
    for _, c in ipairs(cases) do
      local fast, full, err = agree(c[1], 2)
      assert.is_nil(fast, c[1])
      if c[2] then
        assert.is_nil(full, c[1])
        assert.truthy(tostring(err):find(c[2], 1, true), c[1] .. " -> " .. tostring(err))
      else
        assert.truthy(full, c[1] .. " -> " .. tostring(err))
      end
    end
  end)

  it("U.parser answers with the fast path, and U.parse's error when it cannot", function()
    local req = { documents = { {}, {} } }
    local out = assert(U.parser(nil, req, 200, {}, '{"results":[{"index":1,"relevance_score":0.7}]}'))
    assert.are.same({ [2] = 0.7 }, out.scores)
    local none, err = U.parser(nil, req, 200, {}, "not json")
    assert.is_nil(none)
    assert.truthy(err:find("invalid JSON from upstream", 1, true))
  end)

  it("agrees with U.parse on generated answers", function()
    local seed = 7
    local function rnd(k) seed = (seed * 16807) % 2147483647; return seed % k end
    local KEYS = { "index", "relevance_score", "score", "logit", "relevanceScore", "document", "id" }
    local function value(key)
      local r = rnd(10)
      if key == "index" then
        if r < 6 then return tostring(rnd(6)) end
        if r == 6 then return "null" elseif r == 7 then return '"1"' elseif r == 8 then return "1.5" end
        return "-1"
      end
      if r < 6 then return tostring(rnd(1000) / 1000) end
      if r == 6 then return "null" elseif r == 7 then return "true" elseif r == 8 then return '{"a":[1]}' end
      return '"0.5"'
    end
    local fast_seen = 0
    for _ = 1, 2000 do
      local items = {}
      for i = 1, rnd(6) do
        local members = {}
        for m = 1, rnd(4) + 1 do
          local k = KEYS[rnd(#KEYS) + 1]
          members[m] = json.string(k) .. ":" .. value(k)
        end
        items[i] = rnd(12) == 0 and "7" or ("{" .. table.concat(members, ",") .. "}")
      end
      local list = "[" .. table.concat(items, ",") .. "]"
      local key = ({ "results", "data", "rankings" })[rnd(3) + 1]
      local body = '{"' .. key .. '":' .. list .. ',"usage":{"total_tokens":' .. rnd(50) .. '}}'
      if agree(body, 5) then fast_seen = fast_seen + 1 end
    end
    assert.is_true(fast_seen > 100, "the fast path answered " .. fast_seen .. " of 2000")
  end)
end)
