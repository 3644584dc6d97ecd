-- rerank.core.utf8_check: RFC 3629 validation (the rules core/json.c applies to every request body).
local core = require "rerank.core"

describe("core.utf8_check", function()
  it("accepts valid UTF-8 of every length, across the 8-byte ASCII fast path", function()
    for _, s in ipairs({ "", "abc", "é", "日本語", "😀", "\u{10FFFF}", ("a"):rep(17) .. "é" .. ("b"):rep(9),
                         "abcdefgh\226\130\172abcdefgh" }) do
      assert.is_nil(core.utf8_check(s), s)
    end
  end)

  it("returns the 0-based offset of the first bad byte", function()
    local cases = {
      { "a\255b", 1 },                      -- never valid
      { "\192\175", 0 },                    -- overlong '/'
      { "\224\128\175", 0 },                -- overlong 3-byte
      { "\237\160\128", 0 },                -- UTF-16 surrogate
      { "\244\144\128\128", 0 },            -- above U+10FFFF
      { "\226\130", 0 },                    -- truncated at the end
      { "x\226", 1 },
      { "\128", 0 },                        -- lone continuation
      { ("a"):rep(16) .. "\255", 16 },      -- after two fast-path words
      { ("a"):rep(20) .. "\226\40\161", 20 }, -- bad continuation
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[2], core.utf8_check(c[1]), ("%q"):format(c[1]))
    end
  end)
end)

describe("core.topk", function()
  -- the definition: every index, score desc, ties by index asc, NaN last
  local function reference(scores, k)
    local idx = {}
    for i = 1, #scores do idx[i] = i end
    table.sort(idx, function(a, b)
      local x, y = scores[a], scores[b]
      local nx, ny = x ~= x, y ~= y
      if nx ~= ny then return ny end -- a number before NaN
      if not nx and x ~= y then return x > y end
      return a < b
    end)
    local out = {}
    for i = 1, math.min(k, #idx) do out[i] = idx[i] end
    return out
  end

  it("orders like the definition, small and large inputs one after another (its buffer is reused)", function()
    local seed = 7
    local function rnd(n) seed = (seed * 16807) % 2147483647; return seed % n end
    for _, n in ipairs({ 0, 1, 5, 100, 3000, 10, 70000, 3 }) do
      local scores = {}
      for i = 1, n do scores[i] = rnd(50) / 10 end -- many ties
      if n > 2 then scores[2] = 0 / 0 end
      for _, k in ipairs({ 0, 1, 10, n }) do
        assert.are.same(reference(scores, k), core.topk(scores, k), ("n=%d k=%d"):format(n, k))
      end
    end
  end)

  it("refuses a score that is not a number, and works on afterwards", function()
    assert.has_error(function() core.topk({ 1, "x", 3 }, 2) end)
    assert.are.same({ 3, 1 }, core.topk({ 2, 1, 3 }, 2))
  end)
end)
