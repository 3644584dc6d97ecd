-- Usage accounting (rerank.engine.usage): token sums across upstream calls, cost from a model's
-- price (every key, the search-unit rule, rounding) and the price key check.
local usage = require "rerank.engine.usage"

describe("usage.add", function()
  it("sums the numeric fields of each call into the total", function()
    local total = {}
    usage.add(total, { prompt_tokens = 10, completion_tokens = 2, total_tokens = 12 })
    usage.add(total, { prompt_tokens = 5, search_units = 1 })
    assert.are.same({ prompt_tokens = 15, completion_tokens = 2, total_tokens = 12, search_units = 1 }, total)
  end)

  it("skips what is not a finite number, and a missing usage", function()
    local total = { prompt_tokens = 1 }
    assert.are.equal(total, usage.add(total, nil))
    usage.add(total, { prompt_tokens = "7", completion_tokens = 0 / 0, total_tokens = math.huge, model = "m" })
    assert.are.same({ prompt_tokens = 1 }, total)
  end)
end)

describe("usage.cost", function()
  it("is nil when the price sets nothing", function()
    assert.is_nil(usage.cost(nil, { prompt_tokens = 10 }))
    assert.is_nil(usage.cost({}, { prompt_tokens = 10 }))
    assert.is_nil(usage.cost({ per_1m_tokens = "1" }, { prompt_tokens = 10 }))
  end)

  it("prices prompt and completion tokens per 1k and per 1M", function()
    local u = { prompt_tokens = 2000, completion_tokens = 500 }
    assert.are.equal(0.009, usage.cost({ per_1k_prompt_tokens = 0.002, per_1k_completion_tokens = 0.01 }, u))
    assert.are.equal(0.0135,
      usage.cost({ per_1m_prompt_tokens = 3, per_1m_completion_tokens = 15 }, u))
  end)

  it("prices total tokens: the upstream's total, else prompt + completion", function()
    assert.are.equal(0.1, usage.cost({ per_1k_tokens = 0.1 }, { total_tokens = 1000, prompt_tokens = 1 }))
    assert.are.equal(0.25, usage.cost({ per_1m_tokens = 100 }, { prompt_tokens = 2000, completion_tokens = 500 }))
  end)

  it("search units: the upstream's count, else one per 100 documents (Cohere's rule)", function()
    assert.are.equal(0.006, usage.cost({ per_search_unit = 0.002 }, { search_units = 3 }, { documents = 1 }))
    assert.are.equal(0.004, usage.cost({ per_search_unit = 0.002 }, {}, { documents = 101 }))
    assert.are.equal(0.002, usage.cost({ per_search_unit = 0.002 }, {}, { documents = 100 }))
    assert.are.equal(0, usage.cost({ per_search_unit = 0.002 }, {}, {}))
  end)

  it("per_document, per_request, and the terms add up", function()
    assert.are.equal(0.3, usage.cost({ per_document = 0.1 }, nil, { documents = 3 }))
    assert.are.equal(0.5, usage.cost({ per_request = 0.5 }, nil, nil))
    assert.are.equal(0.801,
      usage.cost({ per_request = 0.5, per_document = 0.1, per_1k_prompt_tokens = 0.001 }, { prompt_tokens = 1000 },
        { documents = 3 }))
  end)

  it("rounds to 12 significant digits", function()
    assert.are.equal(0.3, usage.cost({ per_document = 0.1 }, nil, { documents = 3 }))
    assert.are_not.equal(0.3, 0.1 * 3) -- what it would be unrounded
    assert.are.equal(0.333333333333, usage.cost({ per_request = 1 / 3 }))
  end)
end)

describe("usage.check_price", function()
  it("accepts every documented key and a missing price", function()
    local all = {}
    for _, k in ipairs(usage.PRICE_KEYS) do all[k] = 1 end
    assert.are.equal(9, #usage.PRICE_KEYS)
    assert.is_true(usage.check_price(all))
    assert.is_true(usage.check_price(nil))
  end)

  it("names the first unknown key (sorted) with the suggestion", function()
    local seen
    local ok, key, hint = usage.check_price({ per_1m_prompt_token = 1, a_thing = 2 }, function(word, cands)
      seen = cands
      return word == "a_thing" and "per_request" or nil
    end)
    assert.is_nil(ok)
    assert.are.equal("a_thing", key)
    assert.are.equal("per_request", hint)
    assert.are.equal(usage.PRICE_KEYS, seen)
    ok, key, hint = usage.check_price({ per_token = 1 })
    assert.is_nil(ok)
    assert.are.equal("per_token", key)
    assert.is_nil(hint)
  end)
end)
