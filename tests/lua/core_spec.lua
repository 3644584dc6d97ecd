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
