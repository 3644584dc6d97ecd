-- Score cache in an nginx shared dict (lua_shared_dict), shared by every worker of one nginx.
-- Used by the engine inside nginx when the config has  cache: { shared_dict: NAME, ttl: 10m }
-- and nginx.conf declares  lua_shared_dict NAME 64m;
--
--   cache_ngx.available()           -> true inside nginx's Lua module (ngx.shared exists)
--   cache_ngx.new(name[, opts])     -> cache | nil, err   (opts.ttl: default seconds, 0 = no expiry)
--   cache_ngx.from_config(cfg)      -> cache | nil, err | nil when not configured / not in nginx
--   cache_ngx.key(...)              -> a fixed-size key for the parts (strings/numbers), e.g.
--                                      key(model.name, model.model, query, document_text)
--   cache:get(key)                  -> score | nil
--   cache:set(key, score[, ttl])    -> true | nil, err  (non-finite scores are not stored)
--   cache:get_many(keys)            -> scores (scores[i] for keys[i], nil when absent), hits
--   cache:set_many(keys, scores[, ttl]) -> stored count
-- A full dict evicts least recently used entries (shared dict semantics); set only fails on
-- entries too large for the dict, and that is not an error worth failing a request for.
local ngx = ngx -- the nginx Lua module's global (nil outside nginx)
local found = require("rerank.engine.cache").found -- a store's get_many

local M = {}
local Cache = {}
Cache.__index = Cache

function M.available()
  return type(ngx) == "table" and type(ngx.shared) == "table"
end

function M.new(name, opts)
  if type(name) ~= "string" or name == "" then error("cache_ngx.new: shared dict name must be a string", 2) end
  opts = opts or {}
  if opts.ttl ~= nil and (type(opts.ttl) ~= "number" or opts.ttl < 0) then
    error("cache_ngx.new: ttl must be a number of seconds >= 0", 2)
  end
  if not M.available() then return nil, "cache: not running inside nginx's Lua module (no ngx.shared)" end
  local dict = ngx.shared[name]
  if not dict then
    return nil, ("cache: lua_shared_dict %q is not declared in nginx.conf"):format(name)
  end
  return setmetatable({ dict = dict, name = name, ttl = opts.ttl or 0 }, Cache)
end

-- cfg: the loaded config (cfg.cache = { shared_dict = NAME, ttl = seconds }).
function M.from_config(cfg)
  local c = type(cfg) == "table" and cfg.cache
  if type(c) ~= "table" or c.shared_dict == nil then return nil end
  if not M.available() then return nil end -- plain LuaJIT and the daemon use their own cache
  return M.new(c.shared_dict, { ttl = c.ttl })
end

local function hash(s)
  if type(ngx) == "table" and ngx.md5 then return ngx.md5(s) end
  return s -- outside nginx: the joined parts themselves (still a valid, unambiguous key)
end

-- Parts are length-prefixed before hashing, so ("ab", "c") and ("a", "bc") differ.
function M.key(...)
  local n = select("#", ...)
  local buf = {}
  for i = 1, n do
    local v = select(i, ...)
    if v == nil then
      buf[i] = "-"
    else
      local t = type(v)
      if t ~= "string" and t ~= "number" and t ~= "boolean" then
        error(("cache_ngx.key: part %d is a %s (expected a string or number)"):format(i, t), 2)
      end
      v = tostring(v)
      buf[i] = #v .. ":" .. v
    end
  end
  return "rr:" .. hash(table.concat(buf, "|"))
end

local function finite(x)
  return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge
end

function Cache:get(key)
  local v = self.dict:get(key)
  if type(v) == "number" then return v end
  return nil
end

function Cache:set(key, score, ttl)
  if not finite(score) then return nil, "cache: score is not a finite number" end
  local ok, err = self.dict:set(key, score, ttl or self.ttl)
  if not ok then return nil, "cache: " .. tostring(err) end
  return true
end

function Cache:get_many(keys)
  return found(#keys, function(i) return self:get(keys[i]) end)
end

function Cache:set_many(keys, scores, ttl)
  local stored = 0
  for i = 1, #keys do
    if self:set(keys[i], scores[i], ttl) then stored = stored + 1 end
  end
  return stored
end

return M
