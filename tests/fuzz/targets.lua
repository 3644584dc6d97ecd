-- libFuzzer targets (tests/fuzz/fuzz_lua.c): each takes the raw input and must never raise.
-- Expected failures come back as nil, err; a raise is a finding.
local api = require "rerank.api"
local config = require "rerank.config"
local json = require "rerank.json"
local paths = require "rerank.paths"
local core = require "rerank.core"

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
    end
  end
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
