-- AWS Signature Version 4 for transports without libcurl's CURLOPT_AWS_SIGV4 (the nginx
-- cosocket transport). Same inputs as the libcurl transports take from a provider:
-- aws_sigv4 = "aws:amz:REGION:SERVICE" and userpwd = "ACCESS_KEY:SECRET_KEY"; an
-- x-amz-security-token header (session credentials) is signed along.
--   sigv4.available() -> true when SHA-256/HMAC are reachable (libcrypto through the FFI)
--   sigv4.sign{ method, host (the Host header value), path (raw, with ?query), headers, body,
--               aws_sigv4, userpwd, time (os.time(), default now) }
--     -> { authorization = ..., ["x-amz-date"] = ... } | nil, err
-- Signed headers: host, x-amz-date, content-type and every x-amz-* header. The canonical
-- URI encodes the path as sent once more (AWS's rule for every service but S3).
local M = {}

local crypto, C_sha256, C_hmac, md_sha256

local function load_crypto()
  if crypto ~= nil then return crypto end
  crypto = false
  local ok_ffi, ffi = pcall(require, "ffi")
  if not ok_ffi then return false end
  pcall(ffi.cdef, [[
    typedef struct evp_md_st EVP_MD;
    const EVP_MD *EVP_sha256(void);
    unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
    unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                        const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
  ]])
  -- nginx (and libcurl's host) already has libcrypto mapped; else load it by name
  local libs = { function() return ffi.C end }
  for _, name in ipairs({ "crypto", "libcrypto.so.3", "libcrypto.so.1.1" }) do
    libs[#libs + 1] = function() return ffi.load(name) end
  end
  for _, get in ipairs(libs) do
    local ok, lib = pcall(get)
    if ok and pcall(function() return lib.EVP_sha256 and lib.SHA256 and lib.HMAC end) then
      local buf = ffi.new("unsigned char[32]")
      local len = ffi.new("unsigned int[1]")
      md_sha256 = lib.EVP_sha256()
      C_sha256 = function(s)
        lib.SHA256(s, #s, buf)
        return ffi.string(buf, 32)
      end
      C_hmac = function(key, s)
        lib.HMAC(md_sha256, key, #key, s, #s, buf, len)
        return ffi.string(buf, len[0])
      end
      crypto = true
      break
    end
  end
  return crypto
end

function M.available() return load_crypto() end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function encode(s, keep_slash)
  return (s:gsub("[^%w%-%._~" .. (keep_slash and "/" or "") .. "]", function(c)
    return ("%%%02X"):format(c:byte())
  end))
end

local function decode(s)
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function canonical_query(q)
  if not q or q == "" then return "" end
  local pairs_ = {}
  for part in q:gmatch("[^&]+") do
    local k, v = part:match("^([^=]*)=?(.*)$")
    pairs_[#pairs_ + 1] = { encode(decode(k)), encode(decode(v)) }
  end
  table.sort(pairs_, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local out = {}
  for i, p in ipairs(pairs_) do out[i] = p[1] .. "=" .. p[2] end
  return table.concat(out, "&")
end

function M.sign(o)
  if not load_crypto() then return nil, "aws_sigv4: no SHA-256 (libcrypto) available to sign with" end
  local parts = {}
  for p in (o.aws_sigv4 .. ":"):gmatch("([^:]*):") do parts[#parts + 1] = p end
  local region, service = parts[3], parts[4]
  if not region or region == "" or not service or service == "" then
    -- "aws:amz" alone: service.region.amazonaws.com like libcurl
    service, region = (o.host or ""):match("^([%w-]+)%.([%w-]+)%.amazonaws%.com")
  end
  if not region or not service then return nil, "aws_sigv4: cannot tell the region and service from " .. o.aws_sigv4 end
  local ak, sk = (o.userpwd or ""):match("^([^:]*):(.*)$")
  if not ak or ak == "" or sk == "" then return nil, "aws_sigv4: userpwd must be ACCESS_KEY:SECRET_KEY" end
  local amzdate = os.date("!%Y%m%dT%H%M%SZ", o.time or os.time())
  local day = amzdate:sub(1, 8)
  local hdrs = { host = o.host, ["x-amz-date"] = amzdate }
  for k, v in pairs(o.headers or {}) do
    local lk = k:lower()
    if lk == "content-type" or lk:find("^x%-amz%-") then
      hdrs[lk] = tostring(v):gsub("^%s+", ""):gsub("%s+$", ""):gsub("%s+", " ")
    end
  end
  local names = {}
  for k in pairs(hdrs) do names[#names + 1] = k end
  table.sort(names)
  local canon_headers = {}
  for i, k in ipairs(names) do canon_headers[i] = k .. ":" .. hdrs[k] .. "\n" end
  local signed = table.concat(names, ";")
  local path, query = (o.path or "/"):match("^([^?]*)%??(.*)$")
  if path == "" then path = "/" end
  local creq = table.concat({
    o.method or "POST", encode(path, true), canonical_query(query),
    table.concat(canon_headers), signed, hex(C_sha256(o.body or "")),
  }, "\n")
  local scope = ("%s/%s/%s/aws4_request"):format(day, region, service)
  local to_sign = table.concat({ "AWS4-HMAC-SHA256", amzdate, scope, hex(C_sha256(creq)) }, "\n")
  local k = C_hmac("AWS4" .. sk, day)
  k = C_hmac(k, region)
  k = C_hmac(k, service)
  k = C_hmac(k, "aws4_request")
  local sig = hex(C_hmac(k, to_sign))
  return {
    authorization = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"):format(ak, scope, signed, sig),
    ["x-amz-date"] = amzdate,
  }
end

return M
