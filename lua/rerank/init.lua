-- rerank: the public library (README "Use as a library").
--   local rerank = require "rerank"
--   local r = assert(rerank.new("config.yaml"))      -- or a config table
--   local res, err = r:rerank{ model = "bm25", query = "...", documents = {...}, top_n = 3 }
-- Misuse raises; expected failures return nil, err where err is
-- { status = http status, type = ..., message = ..., param = ... }.
-- The engine behind it (providers, cache, router, the scoring line) is
-- lua/rerank/engine/instance.lua; the object rerank.new returns is its instance.
local core = require "rerank.core"
local config = require "rerank.config.load"
local instance = require "rerank.engine.instance"

local M = { _VERSION = core.version }

-- the public methods; the engine's (Instance:score, ...) behind them
local Rerank = setmetatable({}, { __index = instance.Instance })
Rerank.__index = Rerank

M.fail = require("rerank.engine.errors").fail
M.load_provider = require("rerank.engine.router").load_provider

-- The daemon's event-loop fetch, nginx cosockets, or blocking libcurl, in that order.
function M.default_transport()
  if core.daemon then return require "rerank.transport.fetch" end
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.socket then
    local ok, t = pcall(require, "rerank.transport.ngx")
    if ok then return t end
  end
  local ok, t = pcall(require, "rerank.transport.curl")
  return ok and t or nil
end

function M.new(cfg, opts)
  if opts ~= nil and type(opts) ~= "table" then error("rerank.new: opts must be a table", 2) end
  opts = opts or {}
  if opts.transport ~= nil and (type(opts.transport) ~= "table" or type(opts.transport.request) ~= "function") then
    error("rerank.new: opts.transport must be a table with request(opts) and request_all(list, n)", 2)
  end
  local c, err
  if type(cfg) == "string" then
    c, err = config.load(cfg, opts.overrides)
  elseif type(cfg) == "table" then
    c, err = config.from_table(cfg, opts)
  else
    error("rerank.new: expected a config file path or a config table", 2)
  end
  if not c then return nil, err end
  -- timed per request: the gateway-overhead metric subtracts the upstream wait (waits.lua)
  local transport = require("rerank.transport.waits").wrap(opts.transport or M.default_transport())
  return instance.new(c, transport, Rerank)
end

-- Every name a client can send as `model`: models, then aliases (groups) and pipelines.
function Rerank:models()
  local out = {}
  for i, m in ipairs(self.cfg.models) do
    out[i] = { id = m.name, provider = m.provider, model = m.model }
  end
  local names = {}
  for a in pairs(self.cfg.aliases or {}) do names[#names + 1] = a end
  table.sort(names)
  for _, a in ipairs(names) do
    local members = {}
    for j, d in ipairs(self.cfg.aliases[a]) do members[j] = d.model end
    out[#out + 1] = { id = a, alias_of = members }
  end
  for _, p in ipairs(self.cfg.pipelines or {}) do out[#out + 1] = { id = p.name, pipeline = true } end
  return out
end

-- Accepts an internal request (from the shapes layer: req.shape set; the engine's
-- Instance:rerank) or a wire-shaped table from a library user, parsed as rerankd's shape,
-- whose results come back with the fields the HTTP answer has (engine/result_fields.lua).
-- Returns result | nil, err; both carry upstream_status and cache (Instance:rerank).
function Rerank:rerank(req, timing)
  if type(req) ~= "table" then error("rerank: request must be a table", 2) end
  if req.shape then return instance.Instance.rerank(self, req, timing) end
  local server = self.cfg.server
  local r, err = require("rerank.shapes").parse("rerankd", req, { max_documents = server.max_documents,
    max_fuse_lists = server.max_fuse_lists, max_fuse_items = server.max_fuse_items,
    text_field = self.cfg.documents and self.cfg.documents.text_field,
    max_image_bytes = self.cfg.documents and self.cfg.documents.max_image_bytes })
  if not r then return nil, err end
  local res, rerr = instance.Instance.rerank(self, r, timing)
  if res and type(res.results) == "table" then require("rerank.engine.result_fields").library(res, r) end
  return res, rerr
end

-- Fusion of ranked lists (lua/rerank/fuse.lua): lists = { { name=?, kind=?, weight=?,
-- items = { {id=, score=}, ... } } or { {id=, score=}, ... }, ... }; opts = { method = "rrf",
-- top_n = n, <params> ... }. Returns { { id, score, ranks = {name=rank}, scores = {name=score} } }
-- | nil, err. The instance knows the operator's methods (fusion: and fusion_file: in config).
function Rerank:fuse(lists, opts)
  if type(lists) ~= "table" then error("fuse: lists must be a table", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("fuse: opts must be a table", 2) end
  local fuse = require "rerank.fuse"
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.methods = o.methods or fuse.methods(self.cfg)
  o.max_lists = o.max_lists or self.cfg.server.max_fuse_lists
  o.max_items = o.max_items or self.cfg.server.max_fuse_items
  return fuse.run(lists, o)
end

-- The same without a configuration: built-in methods, or opts.fusion_file.
function M.fuse(lists, opts)
  return require("rerank.fuse").run(lists, opts)
end

return M
