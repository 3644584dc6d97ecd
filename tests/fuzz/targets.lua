-- libFuzzer targets (tests/fuzz/fuzz_lua.c): each takes the raw input and must never raise.
-- Expected failures come back as nil, err; a raise is a finding.
local api = require "rerank.shapes.registry"
local config = require "rerank.config.load"
local json = require "rerank.json"
local paths = require "rerank.config.paths"
local core = require "rerank.core"
local U = require "rerank.provider_util"

local M = {}

local shapes = {}
for name in pairs(api.shapes) do shapes[#shapes + 1] = name end
table.sort(shapes)

-- HTTP request body -> every client shape's parse, then render of a synthetic result.
function M.request(s)
  for _, shape in ipairs(shapes) do
    local req = api.parse(shape, s, { max_documents = 1000 })
    if req then
      local results = {}
      for i, doc in ipairs(req.documents or {}) do
        results[i] = { index = doc.index or (i - 1), relevance_score = 1 / i }
      end
      local out = api.render(shape, { id = "fuzz", model = "m", results = results,
                                      usage = { prompt_tokens = 1, total_tokens = 1 } }, req)
      assert(type(out) == "string")
      -- an upstream body splicing the documents (lazy ones in place): json.encode's bytes
      if type(req.query) == "string" and #req.documents > 0 then
        local t = U.cohere_body({}, { defaults = {} }, req, "v2")
        local b = json.encode_body(t)
        assert(tostring(b) == json.encode(t), "encode_body differs from encode")
      end
    end
  end
end

-- The request-path JSON decoder (core/json.c) against lua-cjson, configured as rerankd
-- configures it (depth 64, no NaN/Infinity/hex): the same accept/reject decision and the
-- same values, except where RFC 8259 is stricter than cjson 2.1.0 (raw control characters
-- in strings, numbers such as "01", "1.", "-", text after a NUL byte, which cjson ignores),
-- or the text is not UTF-8 (cjson does not check). And the spans: each spanned string re-decodes to the element it came from.
local cjson_safe = require "cjson.safe"
local ref = cjson_safe.new()
ref.decode_invalid_numbers(false)
ref.decode_max_depth(64)
local RFC_STRICTER = { "unescaped control character", "invalid number" }

local function same(a, b, path)
  if type(a) ~= type(b) then error(("%s: %s vs %s"):format(path, type(a), type(b))) end
  if type(a) == "table" then
    for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
    for k in pairs(b) do
      if a[k] == nil then error(path .. "." .. tostring(k) .. ": only in cjson's value") end
    end
  elseif a ~= b and not (a ~= a and b ~= b) then
    error(("%s: %s vs %s"):format(path, tostring(a), tostring(b)))
  end
end

function M.json(s)
  local v, spans, bad = core.json_decode(s)
  local r = ref.decode(s)
  if v == nil then
    if r ~= nil then
      -- cjson also stops reading at a NUL byte, accepting whatever follows it
      local stricter = s:find("\0", 1, true) ~= nil
      for _, why in ipairs(RFC_STRICTER) do stricter = stricter or spans:find(why, 1, true) ~= nil end
      assert(stricter, "cjson accepts what core.json_decode refuses: " .. tostring(spans))
    end
    return
  end
  assert(r ~= nil or bad ~= nil, "core.json_decode accepts what cjson refuses")
  if bad then return end
  same(v, r, "$")
  for key, sp in pairs(spans or {}) do
    local list = v[key] -- nil when the key was written with escapes (spans name raw keys)
    for i = 1, list and #sp / 2 or 0 do
      local a, b = sp[2 * i - 1], sp[2 * i]
      if a > 0 then
        local el = list[i]
        local text = type(el) == "table" and el.text or el
        assert(ref.decode(s:sub(a, b)) == text, "span of " .. key .. "[" .. i .. "] is not its text")
      end
    end
    if list and #sp > 0 and sp[1] > 0 and type(list[1]) == "string" then -- spliced back, it decodes the same
      local doc = { src = s, js = sp[1], je = sp[2], raw = list[1] }
      assert(ref.decode(core.json_concat({ { { list[1] }, { doc } } }))[1] == list[1], "splice of " .. key)
    end
  end
  -- lazy texts (the daemon's "documents"): the same value, where each json_lazy element is
  -- the string its span holds, byte for byte
  local lv, lspans = core.json_decode(s, nil, true, nil, "documents")
  assert(lv ~= nil, "lazy decoding refuses what plain decoding accepts")
  local list, llist = type(v) == "table" and v.documents, type(lv) == "table" and lv.documents
  if type(llist) == "table" and lspans and lspans.documents then
    local sp = lspans.documents
    for i = 1, #llist do
      if llist[i] == core.json_lazy then
        local a, b = sp[2 * i - 1], sp[2 * i]
        assert(s:sub(a + 1, b - 1) == list[i] and core.json_text(s, a, b) == list[i], "lazy documents[" .. i .. "]")
        llist[i] = list[i]
      end
    end
  end
  same(lv, v, "$")
end

-- YAML text -> loader + validation.
function M.config(s)
  local cfg, err = config.load_string(s, "fuzz.yaml")
  assert(cfg or type(err) == "string")
end

-- Upstream response body -> every HTTP provider's parse.
local providers = {}
do
  local dir = paths.join(paths.root(), "providers")
  for _, f in ipairs(core.listdir(dir) or {}) do
    if f:match("%.lua$") then
      local p = dofile(paths.join(dir, f))
      if type(p.parse) == "function" then providers[#providers + 1] = p end
    end
  end
end

local REQ = { query = "q", documents = { { index = 0, text = "a" }, { index = 1, text = "b" },
                                         { index = 2, text = "c" } }, shape = "rerankd" }

function M.provider(s)
  for _, p in ipairs(providers) do
    local model = { name = "m", provider = p.name, model = "x", options = {}, base_url = "http://h" }
    local out, err = p.parse(model, REQ, 200, { ["content-type"] = "application/json" }, s)
    assert(out or err ~= nil, p.name .. ": parse returned nothing")
  end
end

-- Upstream answer -> U.parse_scores (core/json_answer.c) against U.parse: where the fast
-- path answers, U.parse accepts the answer with the same scores and usage.
function M.answer(s)
  for n = 1, 4, 3 do
    local fast = U.parse_scores(s, {}, n)
    if fast then
      local full, err = U.parse(s, {}, n)
      assert(full, "the fast path accepts what U.parse refuses: " .. tostring(err))
      local m = {}
      if full.scores then
        for i = 1, n do m[i] = full.scores[i] end
      else
        for _, r in ipairs(full.results) do m[r.index + 1] = r.score end
      end
      for i = 1, n do
        local a, b = fast.scores[i], m[i]
        assert(a == b or (a ~= a and b ~= b), ("score of document %d: %s vs %s"):format(i - 1, tostring(a), tostring(b)))
      end
      same(fast.usage or {}, full.usage or {}, "usage")
    end
  end
end

-- Bytes -> the BM25 scorer (core/bm25.c, core/tok.h): a query line, then documents split on
-- byte 0x1E. Every document token mode (exact words, stems, stopwords), whole texts (the
-- 64-byte block path, which screens tokens by first byte for exact words) against the same
-- texts through the truncation window's path (no screening) with a window larger than any
-- text: the same scores, bit for bit, and the same token count; scores finite, never negative.
-- And the pass shared out between 2 to 4 threads (par_bytes 1: any text is split): the same
-- scores and count again.
local bm25_analyzers = { false }
do
  local stop = { "the", "a", "of", "and", "to", "in", "is", "ourselves", "x1" }
  bm25_analyzers[2] = core.analyzer("none", stop)
  bm25_analyzers[3] = core.analyzer("english")
  bm25_analyzers[4] = core.analyzer("english", stop)
end
function M.bm25(s)
  local q, rest = s:match("^([^\n]*)\n?(.*)$")
  local docs = {}
  for d in (rest .. "\30"):gmatch("([^\30]*)\30") do
    if #docs == 40 then break end
    docs[#docs + 1] = d
  end
  for _, an in ipairs(bm25_analyzers) do
    local whole, tw = core.bm25(q, docs, { analyzer = an or nil })
    local windowed, tn = core.bm25(q, docs, { analyzer = an or nil, max_tokens = 1e9 })
    assert(tw == tn, ("token counts %s vs %s"):format(tostring(tw), tostring(tn)))
    local shared, ts = core.bm25(q, docs, { analyzer = an or nil, threads = 2 + #docs % 3, par_bytes = 1 })
    assert(tw == ts, ("token counts %s vs %s with threads"):format(tostring(tw), tostring(ts)))
    for i = 1, #docs do
      assert(whole[i] == shared[i], ("document %d: %.17g vs %.17g with threads"):format(i, whole[i], shared[i]))
    end
    for i = 1, #docs do
      local a, b = whole[i], windowed[i]
      assert(a == b, ("document %d: %.17g whole vs %.17g windowed"):format(i, a, b))
      assert(a >= 0 and a < math.huge, ("document %d: score %s"):format(i, tostring(a)))
    end
  end
end

-- JSON lists -> fusion input checking and every method.
local fuse_ok, fuse = pcall(require, "rerank.fuse")
function M.fusion(s)
  if not fuse_ok then return end
  local v = json.decode(s)
  if type(v) ~= "table" then return end
  for _, method in ipairs({ "rrf", "linear", "relative_score", "dbsf", "combmnz", "combmed", "borda", "isr", "mrr" }) do
    local res, err = fuse.run(v.lists or v, { method = method, params = v.params, top_n = 50 })
    assert(res or err)
  end
end

return M
