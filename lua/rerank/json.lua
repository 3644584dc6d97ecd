-- JSON for rerankd: lua-cjson (Debian's 2.1.0) behind a small policy layer.
--
--   json.decode(s)      -> value | nil, err   never raises; strict numbers (no NaN, Infinity, hex),
--                                             nesting limited to 64; empty JSON arrays come back
--                                             marked with json.array so they re-encode as [].
--   json.encode(v)      -> string             raises on values JSON cannot carry (functions, cycles,
--                                             non-string/number keys), like cjson.encode
--   json.encode_body(v) -> string | body      json.encode, but JSON that splices documents comes
--                                             back as a body (core.body: outside the Lua heap)
--   json.array(t)       -> t                  marks t as an array: encodes as [] when empty
--   json.is_array(t)    -> bool               t carries the array mark
--   json.kind(v)        -> "object"|"array"|"string"|"number"|"boolean"|"null"|nil
--   json.number(x)      -> string             shortest of %.15g/%.16g/%.17g that reads back as x
--   json.string(s)      -> string             a quoted, escaped JSON string
--   json.null                                 cjson.null
--   json.decode_scores(s, n) -> value, lists | nil
--                                             a rerank answer's item lists read as scores in C
--                                             (U.parser, lua/rerank/provider_util.lua)
--   json.decode_request(s [, lazy_key]) -> value, spans, utf8_bad | nil, err    (s: a string or
--                                             the daemon's request body, core/body.c)
--                                             the request-path decoder (core/json.c): one strict
--                                             pass (RFC 8259, UTF-8), spans of each document's
--                                             JSON string for splicing (see json.spliced);
--                                             lazy_key's string elements come back as json.lazy
--   json.lazy                                 what decode_request gives for a lazy text
--   json.spliced(list, docs) -> list          marks list (the texts of request documents) so that
--                                             json.encode copies the client's JSON bytes of
--                                             each text instead of escaping it again
--   json.error_body(status, type, message, param) -> the project's error body (DESIGN §6)
--   json.error_type(status) -> the error type for an HTTP status
--
-- Why the extra layer:
-- * cjson 2.1.0 has no empty_array: an empty Lua table encodes as {}. Tables marked with
--   json.array encode as [] when empty. json.encode hands every subtree that holds no
--   marked-empty array and no number needing more than 14 digits straight to cjson (C speed);
--   only the rest is assembled here.
-- * cjson 2.1.0 prints numbers with at most 14 significant digits (0.1 + 0.2 -> 0.3), which
--   loses scores and large ids. json.number prints the shortest form that round-trips.
-- * Non-finite numbers have no JSON form. Decoding never yields NaN (the literal is rejected),
--   but a literal such as 1e400 overflows to inf. On encode, NaN and +-inf become null (what
--   JavaScript's JSON.stringify does), so a response is always valid JSON.
-- * Decoded empty arrays: cjson decodes [] and {} to the same empty table. When the text
--   contains an empty array outside strings, decode rewrites each `[ ]` to hold a sentinel
--   string, decodes, and swaps every {sentinel} back to an empty marked table. So a client's
--   document {"tags": []} is echoed as {"tags": []}, extra_body {"stop": []} stays an array,
--   and "metadata": [] can be told apart from "metadata": {}. Residual: a one-element array
--   holding exactly the sentinel string "\0rerankd:empty-array\0", sent in a body that also
--   has an empty array, decodes as an empty array.
-- * Duplicate object keys: the last one wins (cjson's behaviour).
-- * Object key order is not preserved (Lua tables); cjson escapes "/" as "\/" (valid JSON).
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"
local core = require "rerank.core"

local type, pairs, next, tostring, tonumber = type, pairs, next, tostring, tonumber
local getmetatable, setmetatable, error = getmetatable, setmetatable, error
local find, sub, byte, format = string.find, string.sub, string.byte, string.format
local floor, huge, max = math.floor, math.huge, math.max
local concat = table.concat

local json = {}

local decoder = cjson_safe.new()
decoder.decode_invalid_numbers(false) -- reject NaN, Infinity, 0x10
decoder.decode_max_depth(64)

local encoder = cjson.new()           -- raising variant: misuse is an error (DESIGN §12.1)
encoder.encode_invalid_numbers("null") -- NaN/inf -> null (see above)
encoder.encode_number_precision(14)    -- 2.1.0's maximum; numbers needing more go through json.number
encoder.encode_sparse_array(true)      -- very sparse integer-keyed tables become objects, not errors
encoder.encode_keep_buffer(true)
encoder.encode_max_depth(1000)

local cj_encode, cj_decode = encoder.encode, decoder.decode

local null = cjson.null
json.null = null
json.lazy = core.json_lazy

local array_mt = { __name = "rerank.json.array" }

function json.array(t)
  return setmetatable(t or {}, array_mt)
end

function json.is_array(t)
  return getmetatable(t) == array_mt
end

-- The JSON kind of a decoded value. Tables: marked -> "array"; holding [1] -> "array"
-- (decoded objects only ever have string keys); anything else, including an unmarked empty
-- table, -> "object".
function json.kind(v)
  local t = type(v)
  if t == "table" then
    if getmetatable(v) == array_mt or v[1] ~= nil then return "array" end
    return "object"
  elseif t == "string" or t == "number" or t == "boolean" then
    return t
  elseif v == null then
    return "null"
  end
  return nil
end

---------------------------------------------------------------------------------------------
-- numbers

-- The shortest of %.15g, %.16g, %.17g that reads back as x (in the cases that matter; always
-- exact). Integers below 1e15 take a fast path; NaN and +-inf -> "null".
-- Cost: tonumber(string) is the expensive step (~0.2us), so %.16g is tried first: it already
-- prints every number that has a <= 15-digit form in that form (0.92 -> "0.92"), except when
-- the decimal's rounding noise reaches the 16th digit (0.9199999999999999): a 16-digit result
-- ending in 01 or 99 is retried at %.15g. %.17g always round-trips.
local function number(x)
  if x == floor(x) then
    if x < 1e15 and x > -1e15 then return format("%d", x) end
    if x == huge or x == -huge then return "null" end
  elseif x ~= x then
    return "null"
  end
  local s = format("%.16g", x)
  if tonumber(s) ~= x then return format("%.17g", x) end
  local e = find(s, "e", 1, true)
  local last = e and e - 1 or #s
  local c1, c2 = byte(s, last - 1, last)
  if (c1 == 48 and c2 == 49) or (c1 == 57 and c2 == 57) then -- "01", "99"
    local s15 = format("%.15g", x)
    if tonumber(s15) == x then return s15 end
  end
  return s
end
json.number = number

-- cjson prints this number exactly (%.14g round-trips, or it is not finite: null either way).
local function cj_number_ok(x)
  if x == floor(x) then
    return (x < 1e14 and x > -1e14) or x == huge or x == -huge
  end
  return x ~= x or tonumber(format("%.14g", x)) == x
end

---------------------------------------------------------------------------------------------
-- encode

function json.string(s)
  return cj_encode(s)
end

-- list -> its documents (see json.spliced). The value must not reference the key: LuaJIT's
-- weak tables are not ephemerons, so { list, docs } as the value would keep list alive.
-- A list that is its own documents maps to SELF: as its own value it would never be collected.
local splices = setmetatable({}, { __mode = "k" })
local SELF = {}
local function spliced_docs(list)
  local docs = splices[list]
  if docs == SELF then return list end
  return docs
end
local body_at = 0 -- json.encode_body: the depth whose spliced JSON is made a body

-- A marked list that changed since it was marked is encoded as it is: unmarked, its
-- documents that stood for their own lazy text replaced by that text. Returns the list to
-- encode: list itself, or a new one when list is its own documents (provider_util's
-- doc_texts marks a request's documents themselves), which stay as they are.
local function unsplice(list)
  local docs = spliced_docs(list)
  splices[list] = nil
  local out = list == docs and {} or list
  for i = 1, #list do
    local v = list[i]
    if type(v) == "table" and v == docs[i] then out[i] = v.text else out[i] = v end
  end
  return out
end

-- true when cjson encodes t exactly as we want: no marked-empty array, no spliced list and
-- no number that needs more than 14 digits anywhere below. Past depth 1000 it answers true
-- so that cjson reports the excessive nesting (or the cycle).
local function clean(t, depth)
  if depth > 1000 then return true end
  for _, v in pairs(t) do
    local tv = type(v)
    if tv == "table" then
      if splices[v] or (getmetatable(v) == array_mt and next(v) == nil) then return false end
      if not clean(v, depth + 1) then return false end
    elseif tv == "number" then
      if not cj_number_ok(v) then return false end
    end
  end
  return true
end

local encode_value

-- A table that is not clean, assembled here with cjson's rules: keys all positive integers
-- -> array (nil holes -> null; very sparse ones, as cjson with encode_sparse_array(true),
-- -> object); anything else -> object (number keys as strings).
local function encode_table(t, depth)
  if depth > 1000 then error("Cannot serialise, excessive nesting (" .. depth .. ")", 0) end
  if next(t) == nil then
    return getmetatable(t) == array_mt and "[]" or "{}"
  end
  local n, count, is_arr = 0, 0, true
  for k in pairs(t) do
    if type(k) == "number" and k > 0 and k == floor(k) then
      n, count = max(n, k), count + 1
    else
      is_arr = false
      break
    end
  end
  local buf = {}
  if is_arr and not (n > count * 2 and n > 10) then
    for i = 1, n do
      local v = t[i]
      buf[i] = v == nil and "null" or encode_value(v, depth + 1)
    end
    return "[" .. concat(buf, ",") .. "]"
  end
  -- "{" key:value "," ... "}" as parts; a spliced member stays a { src, spans } part so
  -- that the body is assembled once, in C (core.json_concat)
  local i, spliced = 0, false
  for k, v in pairs(t) do
    local tk = type(k)
    local key
    if tk == "string" then
      key = cj_encode(k)
    elseif tk == "number" then
      key = '"' .. number(k) .. '"'
    else
      error("Cannot serialise " .. tk .. ": table key must be a number or string", 0)
    end
    local docs = type(v) == "table" and spliced_docs(v)
    i = i + 1
    if docs then
      buf[i] = (i == 1 and "{" or ",") .. key .. ":"
      i = i + 1
      buf[i] = { v, docs }
      spliced = true
    else
      buf[i] = (i == 1 and "{" or ",") .. key .. ":" .. encode_value(v, depth + 1)
    end
  end
  buf[i + 1] = "}"
  if not spliced then return concat(buf) end
  local out = core.json_concat(buf, depth == body_at)
  if out then return out end
  for k, v in pairs(t) do -- a marked list changed since it was marked: encode them as they are
    if type(v) == "table" and splices[v] then t[k] = unsplice(v) end
  end
  return encode_table(t, depth)
end

encode_value = function(v, depth)
  local tv = type(v)
  if tv == "string" then
    return cj_encode(v)
  elseif tv == "number" then
    return number(v)
  elseif tv == "table" then
    local docs = spliced_docs(v)
    if docs then
      local s = core.json_concat({ { v, docs } }, depth == body_at)
      if s then return s end
      v = unsplice(v) -- the list changed since it was marked: encode it as it is
    end
    if getmetatable(v) == array_mt and next(v) == nil then return "[]" end
    if clean(v, depth) then return cj_encode(v) end
    return encode_table(v, depth)
  end
  return cj_encode(v) -- booleans, null; raises for functions and other userdata
end

function json.encode(v)
  return encode_value(v, 1)
end

-- json.encode, but a value whose JSON splices documents comes back as a body (core.body:
-- its bytes outside the Lua heap; #body, tostring(body)); anything else as a string.
function json.encode_body(v)
  body_at = 1
  local ok, out = pcall(encode_value, v, 1)
  body_at = 0
  if not ok then error(out, 0) end
  return out
end

-- list: the texts of docs (request documents carrying d.src, d.js, d.je: where the JSON
-- string of the text the client sent lies in its body), or docs[i] itself for a lazy text
-- (lua/rerank/engine/documents.lua). json.encode copies those bytes for the list; if by then
-- any list[i] is neither, it encodes list as is (lazy entries as their texts).
function json.spliced(list, docs)
  splices[list] = list == docs and SELF or docs
  return list
end

---------------------------------------------------------------------------------------------
-- decode

local EMPTY = "\0rerankd:empty-array\0"
local EMPTY_JSON = '["\\u0000rerankd:empty-array\\u0000"]'

-- Next empty array `[ ws* ]` at or after pos (inside strings or not): its [ and ] positions.
local function next_empty(s, pos)
  local p = find(s, "[", pos, true)
  while p do
    local _, e = find(s, "^[ \t\r\n]*%]", p + 1)
    if e then return p, e end
    p = find(s, "[", p + 1, true)
  end
  return nil
end

-- s with every empty array outside strings replaced by EMPTY_JSON; nil when there is none
-- (the common case: one plain find per "[" in the body) or when s is not well-formed enough
-- to tell (cjson then reports the error on the original text).
local function mark_empty_arrays(s)
  local a, b = next_empty(s, 1)
  if not a then return nil end
  local out, no = {}, 0
  local copied = 1
  local q = find(s, '"', 1, true)
  while a do
    if q and q < a then
      -- skip the string opened at q: its end is the next quote preceded by an even number
      -- of backslashes
      local i = q + 1
      while true do
        local e = find(s, '"', i, true)
        if not e then return nil end
        local k = e - 1
        while byte(s, k) == 92 do k = k - 1 end
        i = e + 1
        if (e - 1 - k) % 2 == 0 then break end
      end
      q = find(s, '"', i, true)
      if a < i then a, b = next_empty(s, i) end
    else
      out[no + 1] = sub(s, copied, a - 1)
      out[no + 2] = EMPTY_JSON
      no = no + 2
      copied = b + 1
      a, b = next_empty(s, copied)
    end
  end
  if no == 0 then return nil end
  out[no + 1] = sub(s, copied)
  return concat(out)
end

local function restore(t)
  for _, v in pairs(t) do
    if type(v) == "table" then
      if v[1] == EMPTY and v[2] == nil then
        v[1] = nil
        setmetatable(v, array_mt)
      else
        restore(v)
      end
    end
  end
end

local core_decode = core.json_decode

function json.decode(s)
  if type(s) ~= "string" then
    return nil, "expected a string, got " .. type(s)
  end
  -- strict JSON (nearly everything) in one C pass; cjson below for what only it accepts
  -- (raw control characters in strings, "1.", leading zeros) and for its error messages
  local strict = core_decode(s, array_mt, false)
  if strict ~= nil then return strict end
  local marked = mark_empty_arrays(s)
  if marked then
    local v = cj_decode(marked)
    if v ~= nil then
      if type(v) == "table" then
        if v[1] == EMPTY and v[2] == nil then return json.array() end
        restore(v)
      end
      return v
    end
  end
  return cj_decode(s)
end

-- A rerank answer over n documents in one C pass: the value without its top-level arrays
-- under results/data/rankings, and lists { [key] = { [index + 1] = score } | false } for
-- them (false: an item the full reader must judge). nil when the text is not strict JSON.
function json.decode_scores(s, n)
  if type(s) ~= "string" or type(n) ~= "number" then return nil end
  return core_decode(s, array_mt, false, n)
end

-- Request bodies: strict JSON (RFC 8259) and UTF-8 in one C pass; empty arrays marked.
-- lazy_key: the top-level array whose string elements without escapes come back as
-- json.lazy (their spans say where the text lies; shapes/registry.lua check.documents reads
-- them), not as strings.
function json.decode_request(s, lazy_key)
  local t = type(s) -- a string, or the daemon's request body (core/body.c)
  if t ~= "string" and t ~= "userdata" then return nil, "expected a string, got " .. t end
  return core_decode(s, array_mt, true, nil, lazy_key)
end

---------------------------------------------------------------------------------------------
-- error bodies (DESIGN §6)

local error_types = {
  [400] = "invalid_request_error", [413] = "invalid_request_error",
  [415] = "invalid_request_error", [422] = "invalid_request_error",
  [401] = "authentication_error", [404] = "not_found_error", [405] = "method_not_allowed",
  [429] = "rate_limit_error", [500] = "internal_error", [502] = "upstream_error",
  [503] = "unavailable", [504] = "timeout_error",
}
json.error_types = error_types

function json.error_type(status)
  return error_types[status]
      or ((tonumber(status) or 500) >= 500 and "internal_error" or "invalid_request_error")
end

-- {"error":{"type":..,"message":..,"param":..}}; type defaults from status, param null when nil.
function json.error_body(status, etype, message, param)
  return '{"error":{"type":' .. cj_encode(etype or json.error_type(status))
      .. ',"message":' .. cj_encode(message == nil and "error" or tostring(message))
      .. ',"param":' .. (param == nil and "null" or cj_encode(tostring(param))) .. '}}'
end

return json
