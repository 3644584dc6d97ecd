-- The configuration checker's engine (load.lua, models.lua and ops.lua hold the sections): typed
-- checks of YAML/Lua values against small specs, with paths in every message.
--   S.check(spec, value, path, ctx) -> normalised value; raises S.raise/S.fail errors
--     spec = { type = "string"|"integer"|"number"|"boolean"|"duration"|"size"|"table"|
--              "mapping"|"list"|"map"|"record", ... } or { check = function(spec, v, path, ctx) }
--     string: nonempty, enum; integer/number: min, max; duration/size: positive, min, max (default max 24h / 64g);
--     list: items, single (a lone value is a list of one); map: values;
--     record: fields = { {name, spec (required?, default?)}, ... }, unknown keys rejected
--   S.check_keys(t, path, allowed, ctx): the first unknown key, with "did you mean"
--   errors are tables (S.is_error) carrying path and text, located later through ctx.marks
--   S.duration(v), S.size(v) -> number | nil; S.did_you_mean(word, candidates) -> candidate | nil
--   path helpers: S.key_path(parent, key), S.idx_path(parent, i) (0-based like the wire format)
local core = require "rerank.core"

local S = {}

local NULL = core.yaml_parse("~", "null") -- the light userdata NULL (== cjson.null)

local function is_null(v)
  return v == nil or v == NULL
end

---------------------------------------------------------------------------
-- errors: raised as tables, caught in load/from_table and located via marks
---------------------------------------------------------------------------
local ConfigError = {}

local function raise(path, text, at_key)
  error(setmetatable({ path = path, text = text, at_key = at_key }, ConfigError), 0)
end

-- "path: message"
local function fail(path, msg)
  raise(path, path == "" and msg or (path .. ": " .. msg))
end

local function key_path(parent, key)
  return parent == "" and tostring(key) or (parent .. "." .. tostring(key))
end

local function idx_path(parent, i) -- i is 1-based; paths are 0-based like the wire format
  return ("%s[%d]"):format(parent, i - 1)
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n == #t
end

local function is_mapping(t)
  if type(t) ~= "table" then return false end
  if next(t) == nil then return true end
  for k in pairs(t) do
    if type(k) ~= "string" then return false end
  end
  return true
end

local function describe(v)
  local t = type(v)
  if v == NULL then return "null" end
  if t == "string" then
    if #v > 40 then v = v:sub(1, 40) .. "..." end
    return ("%q"):format(v)
  elseif t == "table" then
    if next(v) == nil then return "an empty table" end
    return is_list(v) and "a list" or "a mapping"
  end
  return tostring(v)
end

-- "path must be <what> (got X)"
local function fail_type(path, what, v)
  raise(path, ("%s must be %s (got %s)"):format(path == "" and "the configuration" or path, what, describe(v)))
end

---------------------------------------------------------------------------
-- did you mean
---------------------------------------------------------------------------
local function distance(a, b) -- optimal string alignment (Levenshtein + transpositions)
  a, b = a:lower(), b:lower()
  local la, lb = #a, #b
  if math.abs(la - lb) > 3 then return math.huge end
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 0, lb do d[0][j] = j end
  for i = 1, la do
    local ai = a:byte(i)
    for j = 1, lb do
      local bj = b:byte(j)
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ai == bj and 0 or 1))
      if i > 1 and j > 1 and ai == b:byte(j - 1) and a:byte(i - 1) == bj then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[la][lb]
end

-- The closest candidate: edit distance <= 2 (and less than the word's length), or a
-- prefix either way (3+ characters). Ties go to the alphabetically first.
function S.did_you_mean(word, candidates)
  if type(word) ~= "string" or word == "" then return nil end
  local lw = word:lower()
  local sorted = {}
  for _, c in ipairs(candidates) do sorted[#sorted + 1] = c end
  table.sort(sorted)
  local best, best_d
  for _, c in ipairs(sorted) do
    local lc = c:lower()
    local d = distance(word, c)
    local ok = d <= 2 and d < #word
    if not ok and #word >= 3 and #c >= 3 and (lc:sub(1, #lw) == lw or lw:sub(1, #lc) == lc) then
      ok, d = true, 3
    end
    if ok and (not best_d or d < best_d) then best, best_d = c, d end
  end
  return best
end

local function quoted_list(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  table.sort(out)
  return table.concat(out, ", ")
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Raises for the first key of t (in file order when marks are known) not in `allowed`;
-- ctx.key_hints[key path] words the advice for keys people are known to try.
local function check_keys(t, path, allowed, ctx)
  local unknown = {}
  for k in pairs(t) do
    if not allowed[k] and not (path == "" and type(k) == "string" and k:sub(1, 2) == "x-") then
      unknown[#unknown + 1] = k
    end
  end
  if #unknown == 0 then return end
  local function pos(k)
    local m = ctx.marks and ctx.marks[key_path(path, k)]
    local l, c = (m or ""):match("^(%d+):(%d+)$")
    return (tonumber(l) or math.huge) * 1e6 + (tonumber(c) or 0)
  end
  table.sort(unknown, function(a, b)
    local pa, pb = pos(a), pos(b)
    if pa ~= pb then return pa < pb end
    return tostring(a) < tostring(b)
  end)
  local k = unknown[1]
  local kp = key_path(path, k)
  local names = {}
  for name in pairs(allowed) do names[#names + 1] = name end
  local hint = ctx.key_hints and ctx.key_hints[kp]
  local s = S.did_you_mean(tostring(k), names)
  -- located at the key itself (marks[kp .. "!key"]), not at its value
  if s then
    raise(kp, kp .. (': unknown key (did you mean "%s"?)'):format(s), true)
  elseif hint then
    raise(kp, kp .. (": unknown key (%s)"):format(hint), true)
  end
  raise(kp, kp .. (": unknown key (expected one of: %s)"):format(quoted_list(names)), true)
end

---------------------------------------------------------------------------
-- scalar parsers
---------------------------------------------------------------------------
local DURATION_UNITS = { us = 1e-6, ms = 1e-3, s = 1, sec = 1, m = 60, min = 60, h = 3600 }

-- Seconds from a number (seconds) or "250ms", "10s", "1.5s", "2m", "1h", "1m30s".
function S.duration(v)
  if type(v) == "number" then
    if v >= 0 and v < math.huge then return v end
    return nil
  end
  if type(v) ~= "string" then return nil end
  local s = v:lower():gsub("%s+", "")
  if s == "" then return nil end
  if s:match("^%d*%.?%d+$") then return tonumber(s) end
  local total, pos = 0, 1
  while pos <= #s do
    local num, unit, nxt = s:match("^(%d*%.?%d+)(%a+)()", pos)
    if not num or not DURATION_UNITS[unit] then return nil end
    total = total + tonumber(num) * DURATION_UNITS[unit]
    pos = nxt
  end
  return total
end

local SIZE_UNITS = {
  [""] = 1, b = 1,
  k = 1024, kb = 1024, kib = 1024,
  m = 1024 ^ 2, mb = 1024 ^ 2, mib = 1024 ^ 2,
  g = 1024 ^ 3, gb = 1024 ^ 3, gib = 1024 ^ 3,
}

-- Bytes from a number or "100b", "512k", "8m", "8MB", "8MiB", "1g" (1024-based).
function S.size(v)
  if type(v) == "number" then
    if v >= 0 and v < math.huge and v == math.floor(v) then return v end
    return nil
  end
  if type(v) ~= "string" then return nil end
  local num, unit = v:lower():match("^%s*(%d*%.?%d+)%s*(%a*)%s*$")
  if not num or not SIZE_UNITS[unit] then return nil end
  return math.floor(tonumber(num) * SIZE_UNITS[unit])
end

---------------------------------------------------------------------------
-- typed checks: check(spec, value, path, ctx) -> normalised value
---------------------------------------------------------------------------
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do
    if x ~= NULL then out[k] = copy(x) end
  end
  return out
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end

local function check_range(spec, v, path, what)
  if spec.min and v < spec.min then
    if spec.max then
      fail_type(path, ("%s between %s and %s"):format(what, spec.min, spec.max), v)
    end
    fail_type(path, ("%s >= %s"):format(what, spec.min), v)
  end
  if spec.max and v > spec.max then
    if spec.min then
      fail_type(path, ("%s between %s and %s"):format(what, spec.min, spec.max), v)
    end
    fail_type(path, ("%s <= %s"):format(what, spec.max), v)
  end
end

local check

local TYPES = {}

function TYPES.string(spec, v, path)
  if type(v) ~= "string" then fail_type(path, "a string", v) end
  if spec.nonempty and v == "" then fail(path, "must not be empty") end
  if spec.enum then
    for _, e in ipairs(spec.enum) do
      if v == e then return v end
    end
    local s = S.did_you_mean(v, spec.enum)
    fail(path, ("invalid value %s (expected one of: %s%s)"):format(describe(v), table.concat(spec.enum, ", "),
      s and ('; did you mean "' .. s .. '"?') or ""))
  end
  return v
end

function TYPES.integer(spec, v, path)
  if not is_integer(v) then fail_type(path, "an integer", v) end
  check_range(spec, v, path, "an integer")
  return v
end

function TYPES.number(spec, v, path)
  if type(v) ~= "number" or v ~= v then fail_type(path, "a number", v) end
  check_range(spec, v, path, "a number")
  return v
end

function TYPES.boolean(_, v, path)
  if type(v) ~= "boolean" then fail_type(path, "a boolean (true or false)", v) end
  return v
end

-- Every duration and size has a range (spec.min/spec.max, else these): a config cannot ask
-- for a 999999999999h timeout or a 99999999999g body.
S.MAX_DURATION = 86400             -- 24h
S.MAX_SIZE = 64 * 1024 ^ 3         -- 64g

local function human_duration(d)
  if d >= 3600 and d % 3600 == 0 then return ("%dh"):format(d / 3600) end
  if d >= 60 and d % 60 == 0 then return ("%dm"):format(d / 60) end
  if d >= 1 and d % 1 == 0 then return ("%ds"):format(d) end
  return ("%gms"):format(d * 1000)
end

local function human_size(n)
  for _, u in ipairs({ { "g", 1024 ^ 3 }, { "m", 1024 ^ 2 }, { "k", 1024 } }) do
    if n >= u[2] and n % u[2] == 0 then return ("%d%s"):format(n / u[2], u[1]) end
  end
  return ("%d"):format(n)
end

-- A duration or a size: parse(v) (S.duration, S.size), then its range (spec.min, spec.max
-- else max; human writes the bounds in the errors). name and the two examples say what it
-- takes, in the errors: "invalid <name> ... (use e.g. <e1>, <e2>)", "a <name> such as <e1> or <e2>".
local function measure(parse, name, e1, e2, max, human)
  return function(spec, v, path)
    local x = parse(v)
    if not x then
      if type(v) == "string" then fail(path, ("invalid %s %s (use e.g. %s, %s)"):format(name, describe(v), e1, e2)) end
      fail_type(path, ("a %s such as %s or %s"):format(name, e1, e2), v)
    end
    local min, hi = spec.min, spec.max or max
    if spec.positive and x <= 0 then fail(path, ("must be greater than 0 (got %s)"):format(describe(v))) end
    if min and x < min then fail(path, ("must be at least %s (got %s)"):format(human(min), describe(v))) end
    if x > hi then fail(path, ("must be at most %s (got %s)"):format(human(hi), describe(v))) end
    return x
  end
end

TYPES.duration = measure(S.duration, "duration", "250ms", "10s", S.MAX_DURATION, human_duration)
TYPES.size = measure(S.size, "size", "512k", "8m", S.MAX_SIZE, human_size)

function TYPES.table(_, v, path)
  if type(v) ~= "table" then fail_type(path, "a mapping or a list", v) end
  return copy(v)
end

function TYPES.mapping(_, v, path)
  if not is_mapping(v) then fail_type(path, "a mapping", v) end
  return copy(v)
end

-- list of spec.items; a single value counts as a list of one; nulls are dropped
function TYPES.list(spec, v, path, ctx)
  if type(v) ~= "table" then
    if spec.single then v = { v } else fail_type(path, "a list", v) end
  elseif not is_list(v) then
    fail_type(path, "a list", v)
  end
  local out = {}
  for i = 1, #v do
    if not is_null(v[i]) then
      local x = check(spec.items, v[i], idx_path(path, i), ctx)
      if x ~= nil then out[#out + 1] = x end
    end
  end
  return out
end

-- mapping with free keys, values of spec.values
function TYPES.map(spec, v, path, ctx)
  if not is_mapping(v) then fail_type(path, "a mapping", v) end
  local out = {}
  for _, k in ipairs(sorted_keys(v)) do
    if not is_null(v[k]) then out[k] = check(spec.values, v[k], key_path(path, k), ctx) end
  end
  return out
end

-- mapping with declared fields (spec.fields = { {name, spec}, ... }), unknown keys rejected
function TYPES.record(spec, v, path, ctx)
  if not is_mapping(v) then fail_type(path, "a mapping", v) end
  local allowed = {}
  for _, f in ipairs(spec.fields) do allowed[f[1]] = true end
  check_keys(v, path, allowed, ctx)
  local out = {}
  for _, f in ipairs(spec.fields) do
    local name, fs = f[1], f[2]
    local x = v[name]
    if is_null(x) then
      if fs.required then fail(path, ('missing required key "%s"'):format(name)) end
      out[name] = copy(fs.default)
    else
      out[name] = check(fs, x, key_path(path, name), ctx)
    end
  end
  return out
end

check = function(spec, v, path, ctx)
  local fn = spec.check or TYPES[spec.type]
  if not fn then error("config: bad schema type " .. tostring(spec.type)) end
  return fn(spec, v, path, ctx)
end

S.NULL, S.is_null, S.raise, S.fail, S.fail_type = NULL, is_null, raise, fail, fail_type
S.key_path, S.idx_path, S.is_list, S.is_mapping, S.describe = key_path, idx_path, is_list, is_mapping, describe
S.quoted_list, S.sorted_keys, S.check_keys = quoted_list, sorted_keys, check_keys
S.copy, S.is_integer, S.TYPES, S.check = copy, is_integer, TYPES, check

function S.is_error(e) return getmetatable(e) == ConfigError end

return S
