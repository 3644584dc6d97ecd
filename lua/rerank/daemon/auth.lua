-- API keys: `Authorization: Bearer <key>` on API routes (DESIGN §5 server.api_keys).
--
--   auth.new(auth_cfg)          -> a (nil when no keys are configured: everything is open)
--       auth_cfg = config/load.lua's cfg.auth: { keys = { { name =, key = } | "key", ... },
--                  open_paths = { "/health", "/metrics" } (default): reachable without a key }
--   auth.check(a, ctx, path)    -> key name (true on open paths or without keys)
--                                  | nil, reason ("missing" | "malformed" | "invalid")
--       the key name is the entry's `name` (or "key-<n>", n 1-based in the list), safe to log
--   auth.reply(reason)          -> status, headers, err { type, message } of the 401 (server.lua shapes the body)
--   auth.equal(given, key, len) -> bool; compares len bytes whatever the inputs (constant time)
--
-- The comparison touches every byte of a fixed length (the longest configured key, at least
-- 64) for every configured key, with no early exit, so its time does not depend on how much
-- of a key a client guessed. Keys never appear in errors, logs or metrics: only names do.
local bit = require "bit"
local metrics = require "rerank.daemon.metrics"

local bor, bxor, byte, rep = bit.bor, bit.bxor, string.byte, string.rep

local M = {}
M.MIN_COMPARE = 64
M.DEFAULT_OPEN_PATHS = { "/health", "/metrics" }

-- Pads or cuts s to exactly len bytes.
local function fit(s, len)
  local n = #s
  if n == len then return s end
  if n > len then return s:sub(1, len) end
  return s .. rep("\0", len - n)
end

-- Compares len bytes of given and key (both padded with NUL), plus their lengths.
function M.equal(given, key, len)
  len = len or math.max(M.MIN_COMPARE, #key)
  local a, b = fit(given, len), fit(key, len)
  local diff = (#given == #key) and 0 or 1
  for i = 1, len do
    diff = bor(diff, bxor(byte(a, i), byte(b, i)))
  end
  return diff == 0
end

function M.new(cfg)
  local list = cfg and cfg.keys or {}
  if #list == 0 then return nil end
  local keys, len = {}, M.MIN_COMPARE
  for i, k in ipairs(list) do
    local e = type(k) == "table" and k or { key = k }
    keys[#keys + 1] = { name = e.name or ("key-" .. i), key = e.key }
    if #e.key > len then len = #e.key end
  end
  for _, e in ipairs(keys) do e.padded = fit(e.key, len) end
  local open = {}
  for _, p in ipairs(cfg.open_paths or M.DEFAULT_OPEN_PATHS) do open[p] = true end
  return { keys = keys, len = len, open = open }
end

-- The token of an "Authorization: Bearer <token>" header, or nil.
local function bearer(h)
  if type(h) ~= "string" then return nil end
  local scheme, token = h:match("^%s*(%S+)%s+(.-)%s*$")
  if not scheme or scheme:lower() ~= "bearer" or token == "" then return nil end
  return token
end
M.bearer = bearer

function M.check(a, ctx, path)
  if not a or a.open[path] then return true end
  local h = ctx.headers and ctx.headers.authorization
  local token = bearer(h)
  if not token then
    local reason = h and "malformed" or "missing"
    metrics.inc("rerankd_auth_failures_total", { reason = reason })
    return nil, reason
  end
  local len = a.len
  local given = fit(token, len)
  local glen = #token
  local found
  for i = 1, #a.keys do -- every key, every byte: no early exit
    local e = a.keys[i]
    local diff = (glen == #e.key) and 0 or 1
    local kp = e.padded
    for j = 1, len do diff = bor(diff, bxor(byte(given, j), byte(kp, j))) end
    if diff == 0 and not found then found = e.name end
  end
  if not found then
    metrics.inc("rerankd_auth_failures_total", { reason = "invalid" })
    return nil, "invalid"
  end
  return found
end

local MESSAGES = {
  missing = "missing API key: send the header Authorization: Bearer <key>",
  malformed = "malformed Authorization header: expected Authorization: Bearer <key>",
  invalid = "invalid API key",
}

-- status, headers, err ({ type, message }): the caller renders the body in the client's shape
function M.reply(reason)
  return 401, { ["content-type"] = "application/json", ["www-authenticate"] = 'Bearer realm="rerankd"' },
      { type = "authentication_error", message = MESSAGES[reason] or MESSAGES.invalid }
end

return M
