-- A Redis double for unit specs (ratelimit, cache): strings with expiry, MGET/SET/GET/INCRBY/
-- PEXPIRE/TIME, pipelines, and SCRIPT LOAD / EVALSHA / EVAL running the script in a sandbox
-- like Redis does. The real server is in tests/support/redis.lua (e2e).
--   local redis_double = require "support.redis_double"; local r = redis_double(clock?)
-- r.call / r.pipeline have the shape of rerank.daemon.redis_state's client; r.data, r.calls,
-- r.scripts are inspectable and r.fail makes every call fail with that message.
local function redis_double(clock)
  local R = { data = {}, calls = {}, scripts = {}, fail = nil, clock = clock or function() return 1000 end }
  local function cmd(name, ...)
    local a = { ... }
    name = name:upper()
    if name == "GET" then
      local v = R.data[a[1]]
      if v == nil then return false end
      return v
    elseif name == "SET" then
      R.data[a[1]] = tostring(a[2])
      return "OK"
    elseif name == "MGET" then
      local out = {}
      for i = 1, #a do
        local v = R.data[a[i]]
        out[i] = v == nil and false or v
      end
      return out
    elseif name == "INCRBY" then
      local v = (tonumber(R.data[a[1]]) or 0) + tonumber(a[2])
      R.data[a[1]] = tostring(v)
      return v
    elseif name == "PEXPIRE" then
      return 1
    elseif name == "TIME" then
      local t = R.clock()
      local s = math.floor(t)
      return { tostring(s), tostring(math.floor((t - s) * 1e6)) }
    end
    error("redis double: unsupported command " .. name)
  end
  local function run_script(src, nkeys, ...)
    local args = { ... }
    local keys, argv = {}, {}
    for i = 1, nkeys do keys[i] = tostring(args[i]) end
    for i = nkeys + 1, #args do argv[#argv + 1] = tostring(args[i]) end
    local fn = assert(loadstring(src))
    setfenv(fn, { redis = { call = cmd }, KEYS = keys, ARGV = argv, tonumber = tonumber, tostring = tostring,
                  math = math })
    return fn()
  end
  function R.call(opts, name, ...)
    R.calls[#R.calls + 1] = { name, ... }
    R.opts = opts
    if R.fail then return nil, R.fail end
    if name == "SCRIPT" then
      local src = select(2, ...)
      local sha = "sha" .. #src
      R.scripts[sha] = src
      return sha
    elseif name == "EVALSHA" then
      local sha = ...
      if not R.scripts[sha] then return nil, "NOSCRIPT No matching script. Please use EVAL." end
      return run_script(R.scripts[sha], select(2, ...))
    elseif name == "EVAL" then
      local src = ...
      R.scripts["sha" .. #src] = src
      return run_script(src, select(2, ...))
    end
    return cmd(name, ...)
  end
  function R.pipeline(opts, cmds)
    R.calls[#R.calls + 1] = { "PIPELINE", #cmds }
    R.opts = opts
    if R.fail then return nil, R.fail end
    local out = {}
    for i, c in ipairs(cmds) do out[i] = cmd(unpack(c)) end
    return out
  end
  return R
end

return redis_double
