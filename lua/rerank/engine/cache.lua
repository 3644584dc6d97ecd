-- Score cache: one entry per (model, model settings + template/instruction + request options,
-- query, document) pair. The engine asks it first; a request whose pairs are partly cached
-- calls the upstream with only the missing documents (a sub-request) and merges.
--
--   cache.new(cfg, opts)          -> c | nil (no `cache:` section, or enabled: false)
--       cfg.cache = { enabled, backend = "memory"|"redis"|"shared_dict", size (bytes), ttl (s; 0 =
--                     none), models = { names } | nil, shared_dict = NAME (nginx) }
--       opts: { redis = module (default require "rerank.core.redis"), redis_opts, prefix,
--               clock = fn() -> seconds, log = fn(level, msg) }
--   cache.wrap(inst, score)       -> cached(model, req, report) -> scores, usage, degraded, out | nil, err
--       score(model, req, report) is the provider call (Instance:score); the router calls the
--       wrapped one. It asks the cache first (inst.cache, nil without one), calls score with
--       the missing documents only, stores what came back, and feeds the per-model upstream
--       metrics, so it wraps whether or not a cache is configured. report (the caller's
--       table, or nil): report.cache becomes "hit" | "partial" | "miss", merged over the
--       calls made with the same report (cache.merge_status)
--   cache.hash(s[, seed])         -> 16 hex digits (64-bit, not cryptographic)
--   cache.lru(max_bytes)          -> the in-process store (get_many/set_many/entries/bytes)
--   c:keys(model, req)            -> one key per document
--
-- What may be cached: providers that call an upstream per (query, document) pair. Local
-- providers (those with score(), e.g. bm25, whose idf depends on the whole document set) are
-- not cached, nor is a provider declaring `cacheable = false` (listwise rerankers), nor any
-- answer with score_kind = "rank". A provider declaring `cacheable = true` is cached even if
-- it scores locally. Degraded answers (missing scores, repairs) are never stored.
-- Redis failures count in rerankd_redis_errors_total and behave as misses.
local ffi = require "ffi"
local bit = require "bit"
local core = require "rerank.core"
local metrics = require "rerank.daemon.metrics"
local redis_state = require "rerank.daemon.redis_state"
local docs = require "rerank.engine.documents"

local type, pairs, ipairs, tostring, tonumber, concat = type, pairs, ipairs, tostring, tonumber, table.concat
local huge = math.huge

local M = {}
M.DEFAULT_SIZE = 64 * 1024 * 1024
M.DEFAULT_TTL = 3600
M.ENTRY_OVERHEAD = 160 -- bytes per memory entry beside its key (node table + map slot), approx.

---------------------------------------------------------------------------------------------
-- hashing: murmur-style 64-bit over 8-byte words (LuaJIT FFI 64-bit integers)

local U64 = ffi.typeof("uint64_t")
local U8P = ffi.typeof("const uint8_t *")
local U64P = ffi.typeof("const uint64_t *")
local bxor, rol, rshift, lshift, bor, tohex = bit.bxor, bit.rol, bit.rshift, bit.lshift, bit.bor, bit.tohex

local function u64(hi, lo) return U64(hi) * 0x100000000 + lo end
local K1 = u64(0x87c37b91, 0x114253d5)
local K2 = u64(0x4cf5ad43, 0x2745937f)
local F1 = u64(0xff51afd7, 0xed558ccd)
local F2 = u64(0xc4ceb9fe, 0x1a85ec53)

function M.hash(s, seed)
  local n = #s
  local p = ffi.cast(U8P, s)
  local h = bxor(U64(seed or 0x9747b28c), U64(n) * K1)
  local words = n - n % 8
  local w = ffi.cast(U64P, p)
  for i = 0, words / 8 - 1 do
    local k = w[i] * K1
    k = rol(k, 31) * K2
    h = bxor(h, k)
    h = rol(h, 27) * 5 + 0x52dce729
  end
  if words < n then
    local t = U64(0)
    for j = words, n - 1 do t = bor(t, lshift(U64(p[j]), (j - words) * 8)) end
    t = rol(t * K1, 31) * K2
    h = bxor(h, t)
  end
  h = bxor(h, rshift(h, 33)) * F1
  h = bxor(h, rshift(h, 33)) * F2
  h = bxor(h, rshift(h, 33))
  return tohex(h)
end

-- A deterministic string for a Lua value (sorted keys, length-prefixed strings).
local function canon(v, skip)
  local t = type(v)
  if t == "string" then return "s" .. #v .. ":" .. v end
  if t == "number" then return "n" .. ("%.17g"):format(v) end
  if t == "boolean" then return v and "T" or "F" end
  if t ~= "table" then return "_" end
  local ks = {}
  for k in pairs(v) do
    if not (skip and skip[k]) then ks[#ks + 1] = k end
  end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  local out = { "{" }
  for _, k in ipairs(ks) do
    local x = v[k]
    local tx = type(x)
    if tx ~= "function" and tx ~= "userdata" and tx ~= "thread" then
      out[#out + 1] = canon(k) .. "=" .. canon(x)
    end
  end
  out[#out + 1] = "}"
  return concat(out)
end
M.canon = canon

---------------------------------------------------------------------------------------------
-- the in-process LRU store (one per worker), bounded in bytes

local LRU = {}
LRU.__index = LRU

function M.lru(max_bytes, clock)
  return setmetatable({ map = {}, max = max_bytes or M.DEFAULT_SIZE, used = 0, n = 0,
                        clock = clock or function() return core.now_us() / 1e6 end }, LRU)
end

local function unlink(self, e)
  if e.prev then e.prev.next = e.next else self.head = e.next end
  if e.next then e.next.prev = e.prev else self.tail = e.prev end
  e.prev, e.next = nil, nil
end

local function push_front(self, e)
  e.next = self.head
  if self.head then self.head.prev = e end
  self.head = e
  if not self.tail then self.tail = e end
end

local function remove(self, e)
  unlink(self, e)
  self.map[e.k] = nil
  self.used = self.used - e.size
  self.n = self.n - 1
end

function LRU:get(k, now)
  local e = self.map[k]
  if not e then return nil end
  if e.exp and e.exp <= (now or self.clock()) then
    remove(self, e)
    return nil
  end
  if self.head ~= e then
    unlink(self, e)
    push_front(self, e)
  end
  return e.v
end

function LRU:set(k, v, ttl, now)
  local exp = (ttl and ttl > 0) and ((now or self.clock()) + ttl) or nil
  local e = self.map[k]
  if e then
    e.v, e.exp = v, exp
    if self.head ~= e then
      unlink(self, e)
      push_front(self, e)
    end
    return
  end
  local size = #k + M.ENTRY_OVERHEAD
  if size > self.max then return end
  e = { k = k, v = v, exp = exp, size = size }
  self.map[k] = e
  push_front(self, e)
  self.used = self.used + size
  self.n = self.n + 1
  while self.used > self.max and self.tail do remove(self, self.tail) end
end

-- get(i) for i = 1..n -> the values found (out[i], nil when absent) and how many (a store's
-- get_many)
local function found(n, get)
  local out, hits = {}, 0
  for i = 1, n do
    local v = get(i)
    if v ~= nil then
      out[i] = v
      hits = hits + 1
    end
  end
  return out, hits
end
M.found = found

function LRU:get_many(keys)
  local now = self.clock()
  return found(#keys, function(i) return self:get(keys[i], now) end)
end

function LRU:set_many(keys, vals, ttl)
  local now = self.clock()
  for i = 1, #keys do
    if vals[i] ~= nil then self:set(keys[i], vals[i], ttl, now) end
  end
end

function LRU:entries() return self.n end
function LRU:bytes() return self.used end

---------------------------------------------------------------------------------------------
-- the Redis store (shared by every worker and instance)

local RedisStore = {}
RedisStore.__index = RedisStore

-- fallback: the in-process store used while Redis fails (lua/rerank/daemon/redis_state.lua)
function M.redis_store(redis, opts, prefix, log, clock, fallback)
  return setmetatable({ redis = redis, opts = opts or {}, prefix = (prefix or "rerankd:") .. "c:",
                        log = log or function() end, fallback = fallback,
                        clock = clock or function() return core.now_us() / 1e6 end }, RedisStore)
end

function RedisStore:failed(err)
  metrics.inc("rerankd_redis_errors_total", { use = "cache" })
  redis_state.note("cache", false, err, self.log)
end

function RedisStore:get_many(keys)
  local args, pre = {}, self.prefix
  for i = 1, #keys do args[i] = pre .. keys[i] end
  local res, err = self.redis.call(self.opts, "MGET", unpack(args))
  if type(res) ~= "table" then
    self:failed(err or "unexpected reply")
    if self.fallback then return self.fallback:get_many(keys) end
    return {}, 0
  end
  redis_state.note("cache", true, nil, self.log)
  return found(#keys, function(i) return type(res[i]) == "string" and tonumber(res[i]) or nil end)
end

function RedisStore:set_many(keys, vals, ttl)
  local cmds, pre = {}, self.prefix
  for i = 1, #keys do
    local v = vals[i]
    if v ~= nil then
      local c = { "SET", pre .. keys[i], ("%.17g"):format(v) }
      if ttl and ttl > 0 then
        c[4], c[5] = "EX", tostring(math.max(1, math.floor(ttl)))
      end
      cmds[#cmds + 1] = c
    end
  end
  if #cmds == 0 then return end
  local res, err = self.redis.pipeline(self.opts, cmds)
  local bad = type(res) ~= "table" and (err or "unexpected reply")
  for _, r in ipairs(type(res) == "table" and res or {}) do
    if type(r) == "table" and r.err then bad = r.err end
  end
  if bad then
    self:failed(bad)
    if self.fallback then self.fallback:set_many(keys, vals, ttl) end
  end
end

---------------------------------------------------------------------------------------------
-- the cache

local Cache = {}
Cache.__index = Cache

function M.new(cfg, opts)
  local cc = cfg and cfg.cache
  if type(cc) ~= "table" or cc.enabled == false then return nil end
  opts = opts or {}
  local self = setmetatable({ ttl = cc.ttl or M.DEFAULT_TTL, backend = "memory" }, Cache)
  if cc.models then
    self.models = {}
    for _, m in ipairs(cc.models) do self.models[m] = true end
  end
  local log = opts.log or function(level, msg) pcall(core.log, level, msg) end
  local backend = cc.backend
  if backend == nil then
    if cc.shared_dict then backend = "shared_dict" elseif cfg.redis then backend = "redis" else backend = "memory" end
  end
  if backend == "redis" then
    local redis = opts.redis
    if not redis then
      local ok, r = pcall(require, "rerank.core.redis")
      if ok then redis = r end
    end
    if redis then
      local r = cfg.redis or {}
      self.store = M.redis_store(redis, opts.redis_opts or r, opts.prefix or r.prefix, log, opts.clock,
        M.lru(cc.size or M.DEFAULT_SIZE, opts.clock))
      self.backend = "redis"
    else
      log("warn", "score cache: redis is not available in this process; using an in-process cache")
    end
  elseif backend == "shared_dict" then
    local ok, cn = pcall(require, "rerank.engine.cache_ngx")
    local store = ok and cn.from_config(cfg)
    if store then
      self.store, self.backend = store, "shared_dict"
    end
  end
  if not self.store then
    self.store = M.lru(cc.size or M.DEFAULT_SIZE, opts.clock)
    local store = self.store
    metrics.on_snapshot("cache", function(m)
      m.set("rerankd_cache_entries", nil, store:entries())
      m.set("rerankd_cache_bytes", nil, store:bytes())
    end)
  end
  return self
end

function Cache:applies(model, p)
  if self.models and not self.models[model.name] then return false end
  if type(p) ~= "table" then return false end
  if p.cacheable ~= nil then return p.cacheable == true end
  return type(p.score) ~= "function"
end

-- Request fields that do not change scores (everything else is part of the key).
local REQ_SKIP = {
  documents = true, query = true, top_n = true, return_documents = true, id = true, metadata = true,
  user = true, shape = true, model = true, return_score = true,
  return_text = true, raw = true, timeout = true, fallbacks = true, pipeline = true, lists = true,
  health_check = true, min_score = true, score_as = true, priority = true,
}
local MODEL_KEYS = { "name", "provider", "model", "base_url", "path", "template", "instruction" }
local DOC_SKIP = { id = true, metadata = true }

-- The part of every key shared by this request's documents: model, settings, query.
local function key_prefix(model, req)
  local parts = {}
  for i, k in ipairs(MODEL_KEYS) do parts[i] = canon(model[k]) end
  parts[#parts + 1] = canon(model.options)
  parts[#parts + 1] = canon(model.extra_body)
  parts[#parts + 1] = canon(req, REQ_SKIP)
  parts[#parts + 1] = canon(req.query)
  return M.hash(concat(parts, "|"))
end

function Cache.keys(_, model, req) -- c:keys(model, req)
  local pre = key_prefix(model, req)
  local keys = {}
  for i, d in ipairs(req.documents) do
    local raw = d.raw
    local text
    if type(raw) == "table" then
      text = canon(raw, DOC_SKIP)
    else
      text = d.text
      if d.title then text = canon(d.title) .. canon(text) end
    end
    keys[i] = pre .. M.hash(text or "")
  end
  return keys
end

---------------------------------------------------------------------------------------------
-- a request's status ("hit" | "partial" | "miss"), merged over its scoring calls

local function merge_status(a, b)
  if not a then return b end
  if not b or a == b then return a end
  return "partial"
end
M.merge_status = merge_status

local function note(report, st)
  if report then report.cache = merge_status(report.cache, st) end
end

---------------------------------------------------------------------------------------------
-- the wrapper the router calls

local function finite(x)
  return type(x) == "number" and x == x and x ~= huge and x ~= -huge
end

local function observe(model, t0, ok, degraded)
  local l = { model = model.name }
  metrics.observe("rerankd_upstream_duration_seconds", l, (core.now_us() - t0) / 1e6)
  metrics.inc("rerankd_upstream_requests_total", { model = model.name, provider = model.provider,
    outcome = not ok and "error" or (degraded and "degraded" or "ok") })
end

-- LLM answers that were fixed up (a count or a list of what was repaired) are not stored.
local function repaired(r)
  if type(r) == "number" then return r > 0 end
  if type(r) == "table" then return next(r) ~= nil end
  return r ~= nil and r ~= false
end

local function direct(score, model, req, report)
  local t0 = core.now_us()
  local scores, usage, degraded, out = score(model, req, report)
  observe(model, t0, scores ~= nil, degraded)
  return scores, usage, degraded, out
end

local function cached(inst, score, model, req, report)
  local c = inst.cache
  local n = #req.documents
  if not c or n == 0 or not c:applies(model, inst.providers and inst.providers[model.name]) then
    return direct(score, model, req, report)
  end
  local keys = c:keys(model, req)
  local vals, hits = c.store:get_many(keys)
  local l = { model = model.name }
  if hits > 0 then metrics.inc("rerankd_cache_documents_total", { model = model.name, result = "hit" }, hits) end
  if hits < n then metrics.inc("rerankd_cache_documents_total", { model = model.name, result = "miss" }, n - hits) end
  if hits == n then
    note(report, "hit")
    l.result = "hit"
    metrics.inc("rerankd_cache_requests_total", l)
    local scores = {}
    for i = 1, n do scores[i] = vals[i] end
    return scores, { prompt_tokens = 0, total_tokens = 0, search_units = 0 }, false, nil
  end
  local st = hits == 0 and "miss" or "partial"
  note(report, st)
  l.result = st
  metrics.inc("rerankd_cache_requests_total", l)

  local sub, missing, mkeys = req, nil, keys
  if hits > 0 then
    sub = {}
    for k, v in pairs(req) do sub[k] = v end
    local todo = {}
    missing, mkeys = {}, {}
    for i = 1, n do
      if vals[i] == nil then
        todo[#todo + 1] = req.documents[i]
        missing[#missing + 1] = i
        mkeys[#mkeys + 1] = keys[i]
      end
    end
    sub.documents = todo
    sub.top_n = nil -- every missing document needs a score
  end
  local s2, usage, degraded, out = direct(score, model, sub, report)
  if not s2 then return nil, usage end
  local o = type(out) == "table" and out or {}
  -- o.served_by: a hedge target answered (lua/rerank/engine/hedge.lua): not the primary's scores
  if not degraded and not o.degraded and o.score_kind ~= "rank" and not repaired(o.repairs) and not o.served_by then
    local store = {}
    for j = 1, #mkeys do
      if finite(s2[j]) then store[j] = s2[j] end
    end
    c.store:set_many(mkeys, store, c.ttl)
  end
  if not missing then return s2, usage, degraded, out end
  local scores = {}
  for i = 1, n do scores[i] = vals[i] end
  for j, i in ipairs(missing) do scores[i] = s2[j] end
  usage = usage or {}
  if usage.prompt_tokens == nil then -- what was sent: the missing documents only
    local u = {}
    for k, v in pairs(usage) do u[k] = v end
    u.prompt_tokens = docs.prompt_tokens(req.query, sub.documents, inst.router:settings(model))
    usage = u
  end
  return scores, usage, degraded, out
end

function M.wrap(inst, score)
  return function(model, req, report) return cached(inst, score, model, req, report) end
end

return M
