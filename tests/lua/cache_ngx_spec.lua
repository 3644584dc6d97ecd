-- rerank.engine.cache_ngx (the score cache on an nginx shared dict) outside nginx, against a fake
-- ngx.shared (tests/e2e/nginx_spec.lua runs it in real nginx).
describe("rerank.engine.cache_ngx (fake shared dict)", function()
  local function with_dicts(dicts, fn)
    rawset(_G, "ngx", { shared = dicts, md5 = function(s) return "md5(" .. s .. ")" end })
    package.loaded["rerank.engine.cache_ngx"] = nil
    local ok, err = pcall(fn, require "rerank.engine.cache_ngx")
    rawset(_G, "ngx", nil)
    package.loaded["rerank.engine.cache_ngx"] = nil
    assert(ok, err)
  end

  local function fake_dict()
    local store = { sets = {} }
    return {
      get = function(_, k) return store[k] end,
      set = function(_, k, v, ttl)
        if type(k) ~= "string" then return false, "bad key" end
        store[k] = v
        store.sets[#store.sets + 1] = { k, v, ttl }
        return true
      end,
    }, store
  end

  it("stores and reads scores by key, with a ttl", function()
    local dict, store = fake_dict()
    with_dicts({ rerank_cache = dict }, function(cache)
      assert.is_true(cache.available())
      local c = assert(cache.new("rerank_cache", { ttl = 600 }))
      local k1, k2 = cache.key("cohere", "rerank-v3.5", "q", "doc one"), cache.key("cohere", "rerank-v3.5", "q", "doc two")
      assert.are_not.equal(k1, k2)
      assert.is_nil(c:get(k1))
      assert.is_true(c:set(k1, 0.5))
      assert.are.equal(0.5, c:get(k1))
      assert.are.equal(600, store.sets[1][3])
      assert.is_true(c:set(k2, -1.25, 5))
      assert.are.equal(5, store.sets[2][3])
      assert.is_nil((c:set(k2, 0 / 0)))
      assert.is_nil((c:set(k2, math.huge)))
      local got, hits = c:get_many({ k1, "absent", k2 })
      assert.are.equal(2, hits)
      assert.are.same({ [1] = 0.5, [3] = -1.25 }, got)
      assert.are.equal(1, c:set_many({ "a", "b" }, { 1.5, nil }))
    end)
  end)

  it("keys are unambiguous across part boundaries and accept numbers", function()
    with_dicts({}, function(cache)
      assert.are_not.equal(cache.key("ab", "c"), cache.key("a", "bc"))
      assert.are_not.equal(cache.key("a", nil), cache.key("a"))
      assert.are.equal(cache.key("m", 1), cache.key("m", "1"))
      assert.truthy(cache.key("x"):find("^rr:md5%("))
      assert.has_error(function() cache.key({}) end)
    end)
  end)

  it("reports a missing shared dict, and is off outside nginx or when not configured", function()
    with_dicts({}, function(cache)
      local c, err = cache.new("rerank_cache")
      assert.is_nil(c)
      assert.are.equal('cache: lua_shared_dict "rerank_cache" is not declared in nginx.conf', err)
      assert.is_nil(cache.from_config({ cache = nil }))
      assert.is_nil((cache.from_config({ cache = { shared_dict = "rerank_cache" } })))
      assert.has_error(function() cache.new(nil) end)
    end)
    with_dicts({ d = fake_dict() }, function(cache)
      assert.truthy(cache.from_config({ cache = { shared_dict = "d", ttl = 60 } }))
    end)
    package.loaded["rerank.engine.cache_ngx"] = nil
    local cache = require "rerank.engine.cache_ngx"
    assert.is_false(cache.available())
    assert.is_nil(cache.from_config({ cache = { shared_dict = "d" } }))
    package.loaded["rerank.engine.cache_ngx"] = nil
  end)
end)
