-- Fusion of ranked lists (DESIGN §3, §7): input checking, the method registry and parameters,
-- the fused scores, the final order. Callers: rerank.fuse / r:fuse (init.lua), pipelines
-- (engine/pipeline.lua), POST /v1/fuse (its wire shape, body in and answer out, is
-- shapes/fuse.lua). The built-in methods are fusion/score.lua and fusion/rank.lua, the shared
-- normalisations fusion/normalize.lua.
-- Why one file over ~500 lines: every section below reads or writes the prepared lists P
-- described here (checks build it, methods and compute read it, order and results walk it),
-- so one file keeps that layout in one place; what only reads P's output (the wire shape, the
-- method arithmetic) lives outside.
--
--   fuse.check_lists(v, param, opts) -> P | nil, err
--       v: an array of lists; a list is { name=?, kind=?, weight=?, items = {...} } or an
--       array of items (a Lua table may carry name/kind/weight next to its array part).
--       An item is { id = string|number, score = number? } or a bare id. opts.documents:
--       also check text (opts.text_field, default "text")/title/metadata (pipelines).
--       err = { status, type, message, param }.
--   fuse.methods(cfg) -> { name = method } the built-ins plus the operator's (cfg.fusion,
--       fusion_file in pipeline stages), loaded once per configuration table.
--   opts.max_lists / opts.max_items (check_lists): at most that many lists and items over all
--       lists (default M.MAX_LISTS, M.MAX_ITEMS; server.max_fuse_lists / max_fuse_items), 422
--       above: every method is O(items · log items), so these bound a request's CPU time.
--   fuse.method(name, registry, param) -> method | nil, err
--   fuse.check_params(method, params, prefix) -> params (defaults filled) | nil, err
--       fuse.KNOWN: the built-ins' parameter names (any built-in accepts, and ignores, the others')
--   fuse.compute(P, method, params, pprefix) -> F (F[d] = fused score of document d) | nil, err
--   fuse.order(P, F, top_n) -> { d, ... } best first
--   fuse.results(P, F, order) -> { { id, score, ranks = {name=rank}, scores = {name=score} } }
--   fuse.run(lists, opts) -> results | nil, err   (check + compute + order + results)
--   fuse.members(P) -> { d -> { i, pos, i', pos', ... } } the lists holding each document
--
-- P (what methods see as `lists`): P[i] = { name, kind ("similarity"|"distance"), weight
-- (the list's own, or nil), w (effective weight), n, ids = {pos -> id}, scores = {pos -> raw
-- score or nil}, sims = {pos -> similarity} (1 - d for distance lists; set when the method uses
-- scores), docs = {pos -> d}, pos = {d -> pos} }, and P.n_docs, P.ids = {d -> id} (documents in
-- order of first appearance, list by list), P.best = {d -> best 0-based position},
-- P.count = {d -> number of lists holding d}. Positions are 1-based in these arrays.
--
-- A method file returns { name =, fuse = function(lists, params) -> F end, scores = bool or
-- function(params) -> bool (needs item scores), params = { name = { type = "number"|
-- "integer"|"string"|"boolean"|"any", min =, enum = {...}, default = } } }. It is pure.
local json = require "rerank.json"
local paths = require "rerank.config.paths"

local type, tostring, next, pairs, ipairs = type, tostring, next, pairs, ipairs
local getmetatable, setmetatable = getmetatable, setmetatable
local floor, huge = math.floor, math.huge
local concat, sort = table.concat, table.sort
local null, kind = json.null, json.kind

local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local M = {}

M.BUILTIN = { "rrf", "relative_score", "linear", "dbsf", "combsum", "combmnz", "combmax",
              "combmin", "combmed", "combanz", "isr", "borda", "mrr" }
M.DEFAULT_METHOD = "rrf"
M.NORMALIZE = { "none", "min_max", "max", "sum", "z_score", "rank" }
M.STD = { "population", "sample" }
M.MAX_LISTS = 1000     -- lists per request (server.max_fuse_lists)
M.MAX_ITEMS = 100000   -- items over all lists of a request (server.max_fuse_items)

local fail = require("rerank.engine.errors").fail
M.fail = fail

local function present(v) return v ~= nil and v ~= null end

local function did_you_mean(word, names)
  local ok, config = pcall(require, "rerank.config.load")
  if not ok or type(config) ~= "table" or not config.did_you_mean then return nil end
  return config.did_you_mean(word, names)
end

local function quoted(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = '"' .. v .. '"' end
  return concat(out, ", ")
end

local function join(prefix, key)
  if prefix == nil or prefix == "" then return key end
  return prefix .. "." .. key
end

---------------------------------------------------------------------------------------------
-- input lists

local LIST_KINDS = { similarity = true, distance = true }

-- Checks and indexes the lists in one pass per item (ids -> document numbers d).
function M.check_lists(v, param, opts)
  param = param or "lists"
  opts = opts or {}
  if not present(v) then return fail(400, param .. " is required", param) end
  if type(v) ~= "table" or (kind(v) ~= "array" and next(v) ~= nil) then
    return fail(400, param .. " must be an array", param)
  end
  local nl = #v
  local max_lists, max_items = opts.max_lists or M.MAX_LISTS, opts.max_items or M.MAX_ITEMS
  if nl > max_lists then
    return fail(422, ("%s has %d lists; the maximum is %d (server.max_fuse_lists)"):format(param, nl, max_lists), param)
  end
  local total = 0
  local P = { names = {}, n_docs = 0 }
  local index = {}               -- id -> d
  local ids, best, count = {}, {}, {}
  local nd = 0
  local with_docs = opts.documents
  local tfield = opts.text_field or "text" -- where an item's text is (pipelines)
  local texts, doc_item
  if with_docs then texts, doc_item = {}, {} end
  for i = 1, nl do
    local l = v[i]
    local lp = param .. "[" .. (i - 1) .. "]"
    if type(l) ~= "table" then
      return fail(400, lp .. " must be an object with an items array (or an array of items)", lp)
    end
    local items = l.items
    if present(items) then
      if type(items) ~= "table" or (kind(items) ~= "array" and next(items) ~= nil) then
        return fail(400, lp .. ".items must be an array", lp .. ".items")
      end
    elseif kind(l) == "array" or next(l) == nil then
      items = l
    else
      return fail(400, lp .. ".items is required", lp .. ".items")
    end
    -- name, kind, weight
    local name = l.name
    if present(name) then
      if type(name) ~= "string" then return fail(400, lp .. ".name must be a string", lp .. ".name") end
      if name == "" then return fail(422, lp .. ".name must not be empty", lp .. ".name") end
    else
      name = tostring(i - 1)
    end
    if P.names[name] then
      return fail(422, ('%s.name: duplicate list name "%s" (also %s[%d])'):format(lp, name, param, P.names[name] - 1),
        lp .. ".name")
    end
    P.names[name] = i
    local lk = l.kind
    if present(lk) then
      if type(lk) ~= "string" then return fail(400, lp .. ".kind must be a string", lp .. ".kind") end
      if not LIST_KINDS[lk] then
        return fail(422, lp .. '.kind must be one of "similarity", "distance"', lp .. ".kind")
      end
    else
      lk = "similarity"
    end
    local weight = l.weight
    if present(weight) then
      if type(weight) ~= "number" then return fail(400, lp .. ".weight must be a number", lp .. ".weight") end
      if not (weight >= 0 and weight < huge) then
        return fail(422, lp .. ".weight must be a finite number >= 0", lp .. ".weight")
      end
    else
      weight = nil
    end
    -- items
    local n = #items
    total = total + n
    if total > max_items then
      return fail(422, ("%s hold more than %d items in all (server.max_fuse_items)"):format(param, max_items), param)
    end
    local lids, lscores, ldocs = table_new(n, 0), table_new(n, 0), table_new(n, 0)
    local lpos = {}
    local missing
    for j = 1, n do
      local it = items[j]
      local id, sc
      local t = type(it)
      if t == "table" then
        id, sc = it.id, it.score
        if id == nil or id == null then
          local ip = lp .. ".items[" .. (j - 1) .. "]"
          return fail(400, ip .. ".id is required", ip .. ".id")
        end
        local tid = type(id)
        if (tid ~= "string" and tid ~= "number") or id ~= id then
          local ip = lp .. ".items[" .. (j - 1) .. "]"
          return fail(400, ip .. ".id must be a string or a number", ip .. ".id")
        end
        if tid == "number" and (id == huge or id == -huge) then
          local ip = lp .. ".items[" .. (j - 1) .. "]"
          return fail(422, ip .. ".id must be a finite number", ip .. ".id")
        end
        if sc == nil or sc == null then
          sc = nil
          if not missing then missing = j end
        elseif type(sc) ~= "number" then
          local ip = lp .. ".items[" .. (j - 1) .. "]"
          return fail(400, ip .. ".score must be a number", ip .. ".score")
        elseif sc ~= sc or sc == huge or sc == -huge then
          local ip = lp .. ".items[" .. (j - 1) .. "]"
          return fail(422, ip .. ".score must be a finite number", ip .. ".score")
        end
      elseif (t == "string" or t == "number") and it == it and it ~= huge and it ~= -huge then
        id = it
        if not missing then missing = j end
      else
        local ip = lp .. ".items[" .. (j - 1) .. "]"
        return fail(400, ip .. " must be an object with an id (or an id)", ip)
      end
      local d = index[id]
      if d == nil then
        nd = nd + 1
        d = nd
        index[id] = d
        ids[d] = id
        best[d] = j - 1
        count[d] = 1
      else
        if lpos[d] then
          local ip = lp .. ".items[" .. (j - 1) .. "]"
          return fail(422, ('%s.id: duplicate id %s in one list (also %s.items[%d])'):format(
            ip, t == "table" and json.encode(id) or json.encode(it), lp, lpos[d] - 1), ip .. ".id")
        end
        if j - 1 < best[d] then best[d] = j - 1 end
        count[d] = count[d] + 1
      end
      lpos[d] = j
      lids[j], lscores[j], ldocs[j] = id, sc, d
      if with_docs and t == "table" then
        local ip
        local text, title, md = it[tfield], it.title, it.metadata
        if present(text) then
          if type(text) ~= "string" then
            ip = lp .. ".items[" .. (j - 1) .. "]"
            return fail(400, ip .. "." .. tfield .. " must be a string", ip .. "." .. tfield)
          end
          if texts[d] == nil then texts[d] = text; doc_item[d] = it end
        end
        if present(title) and type(title) ~= "string" then
          ip = lp .. ".items[" .. (j - 1) .. "]"
          return fail(400, ip .. ".title must be a string", ip .. ".title")
        end
        if present(md) and (type(md) ~= "table" or kind(md) ~= "object") then
          ip = lp .. ".items[" .. (j - 1) .. "]"
          return fail(400, ip .. ".metadata must be an object", ip .. ".metadata")
        end
      end
    end
    P[i] = { name = name, kind = lk, weight = weight, n = n, ids = lids, scores = lscores, docs = ldocs,
             pos = lpos, missing = missing, items = items, param = lp }
  end
  P.n_docs, P.ids, P.best, P.count, P.index = nd, ids, best, count, index
  P.texts, P.doc_item = texts, doc_item
  return P
end

-- P.members[d] = { i, p, i', p', ... }: the lists holding document d (input order) and its
-- 1-based position in each; built once, in one pass over the items, for whatever needs "every
-- list holding d" per document (results, render, pipelines) without a pass over all lists
-- per document (which was quadratic in the number of lists).
function M.members(P)
  local mem = P.members
  if mem then return mem end
  local N = P.n_docs
  mem = table_new(N, 0)
  local cnt = P.count
  for d = 1, N do mem[d] = table_new(2 * (cnt and cnt[d] or 1), 0) end
  for i = 1, #P do
    local docs = P[i].docs
    for j = 1, P[i].n do
      local t = mem[docs[j]]
      local k = #t
      t[k + 1], t[k + 2] = i, j
    end
  end
  P.members = mem
  return mem
end

---------------------------------------------------------------------------------------------
-- methods

local loaded_files = {} -- path -> method (fusion files are pure; one load per process)
local check_decls -- (below) a fusion file's params declarations: known types, typed bounds

-- Loads an operator's fusion file: returns the method | nil, message. Cached per path;
-- fresh = true (configuration loads, so a reload sees an edited file) reads it again.
function M.load_file(path, fresh)
  local m = loaded_files[path]
  if m and not fresh then return m end
  local res, err = paths.load_table(path, "fusion file")
  if not res then return nil, err end
  if type(res.name) ~= "string" or res.name == "" then
    return nil, ("fusion file %s must return { name = \"...\", fuse = function(lists, params) }"):format(path)
  end
  if type(res.fuse) ~= "function" then
    return nil, ("fusion file %s must export fuse(lists, params)"):format(path)
  end
  if res.params ~= nil and type(res.params) ~= "table" then
    return nil, ("fusion file %s declares params that are not a table"):format(path)
  end
  if res.params then
    local derr = check_decls(res.params)
    if derr then return nil, ("fusion file %s: %s"):format(path, derr) end
  end
  res.file = path
  loaded_files[path] = res
  return res
end

local builtin_cache = {}
local function builtin(name)
  local m = builtin_cache[name]
  if m == nil then
    -- two registries of small entries: score-based and rank-based methods
    m = require("rerank.fusion.score")[name] or require("rerank.fusion.rank")[name]
        or error("fusion: no built-in method " .. tostring(name))
    builtin_cache[name] = m
  end
  return m
end
M.builtin = builtin

local BUILTIN_SET = {}
for _, n in ipairs(M.BUILTIN) do BUILTIN_SET[n] = true end
M.BUILTIN_SET = BUILTIN_SET

local registries = setmetatable({}, { __mode = "k" })

-- name -> method for a configuration: built-ins (loaded lazily), cfg.fusion entries and
-- fusion files named in pipeline stages.
function M.methods(cfg)
  local reg = cfg and registries[cfg]
  if reg then return reg end
  reg = setmetatable({}, { __index = function(t, name)
    if BUILTIN_SET[name] then
      local m = builtin(name)
      rawset(t, name, m)
      return m
    end
  end })
  if cfg then
    for _, f in ipairs(cfg.fusion or {}) do
      local m = M.load_file(f.file)
      if m then reg[f.name] = m end
    end
    for _, p in ipairs(cfg.pipelines or {}) do
      for _, st in ipairs(p.stages or {}) do
        local fs = st.fuse
        if fs and fs.fusion_file then
          local m = M.load_file(fs.fusion_file)
          if m and not BUILTIN_SET[m.name] then reg[m.name] = m end
        end
      end
    end
    registries[cfg] = reg
  end
  return reg
end

local default_registry
function M.method(name, registry, param)
  param = param or "method"
  if not registry then
    default_registry = default_registry or M.methods(nil)
    registry = default_registry
  end
  if name == nil or name == null then name = M.DEFAULT_METHOD end
  if type(name) ~= "string" then return fail(400, param .. " must be a string", param) end
  local m = registry[name]
  if m then return m end
  local names = {}
  for _, n in ipairs(M.BUILTIN) do names[#names + 1] = n end
  for n in pairs(registry) do
    if not BUILTIN_SET[n] then names[#names + 1] = n end
  end
  sort(names)
  local s = did_you_mean(name, names)
  return fail(422, ('%s: unknown fusion method "%s" (%s)'):format(param, name,
    s and ('did you mean "' .. s .. '"?') or ("available: " .. concat(names, ", "))), param)
end

---------------------------------------------------------------------------------------------
-- parameters

-- Parameters every method accepts.
local COMMON = {
  weights = { type = "weights" },
  rank_base = { type = "integer", enum = { 0, 1 }, default = 1 },
}
-- Parameters of the built-ins: accepted (and ignored) by a built-in that does not use them,
-- so one request shape serves every method; anything else is an error with a did-you-mean.
local KNOWN = { weights = true, rank_base = true, k = true, normalize = true, std = true }
M.KNOWN = KNOWN -- (shapes/fuse.lua: these may sit at the top level of a /v1/fuse body)

local BY_NAME = { __name = "rerank.fuse.weights_by_name" }
M.BY_NAME = BY_NAME

-- A value of the wrong type for a declared param is a 422 (issue 15), as is one out of range.
local function check_one(spec, v, p)
  local t = spec.type
  if t == "number" or t == "integer" then
    if type(v) ~= "number" or v ~= v then return fail(422, p .. " must be a number", p) end
    if t == "integer" and v ~= floor(v) then return fail(422, p .. " must be an integer", p) end
    if spec.enum then
      for _, e in ipairs(spec.enum) do if v == e then return v end end
      local s = {}
      for i, e in ipairs(spec.enum) do s[i] = tostring(e) end
      return fail(422, p .. " must be one of " .. concat(s, ", "), p)
    end
    if spec.min and v < spec.min then return fail(422, p .. " must be >= " .. spec.min, p) end
    if spec.max and v > spec.max then return fail(422, p .. " must be <= " .. spec.max, p) end
    if v == huge or v == -huge then return fail(422, p .. " must be finite", p) end
    return v
  elseif t == "string" then
    if type(v) ~= "string" then return fail(422, p .. " must be a string", p) end
    if spec.enum then
      for _, e in ipairs(spec.enum) do if v == e then return v end end
      local s = did_you_mean(v, spec.enum)
      return fail(422, p .. " must be one of " .. quoted(spec.enum)
        .. (s and ('; did you mean "' .. s .. '"?') or ""), p)
    end
    return v
  elseif t == "boolean" then
    if type(v) ~= "boolean" then return fail(422, p .. " must be a boolean", p) end
    return v
  elseif t == "weights" then
    if type(v) ~= "table" then return fail(422, p .. " must be an array or an object of numbers", p) end
    if kind(v) == "array" or next(v) == nil then
      local out = {}
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      if n ~= #v then return fail(422, p .. " must be an array or an object of numbers", p) end
      for i = 1, #v do
        local w = v[i]
        local wp = p .. "[" .. (i - 1) .. "]"
        if type(w) ~= "number" then return fail(422, wp .. " must be a number", wp) end
        if not (w >= 0 and w < huge) then return fail(422, wp .. " must be a finite number >= 0", wp) end
        out[i] = w
      end
      return out
    end
    local out = {}
    for k, w in pairs(v) do
      local wp = p .. "." .. tostring(k)
      if type(k) ~= "string" then return fail(422, p .. " must be an array or an object of numbers", p) end
      if type(w) ~= "number" then return fail(422, wp .. " must be a number", wp) end
      if not (w >= 0 and w < huge) then return fail(422, wp .. " must be a finite number >= 0", wp) end
      out[k] = w
    end
    return setmetatable(out, BY_NAME)
  end
  return v -- "any"
end

-- A fusion file's `params = { name = { type =, min =, max =, enum =, default = } }` (or
-- name = "type"): every type known, bounds numbers, enum values and the default of the
-- declared type. Returns nil | "params.<name>.<field>: why" (the declaration's place).
local DECL_TYPES = { "any", "boolean", "integer", "number", "string" }
local DECL_TYPE_SET = { any = true, boolean = true, integer = true, number = true, string = true }
check_decls = function(decls)
  local names = {}
  for k in pairs(decls) do names[#names + 1] = k end
  sort(names, function(a, b) return tostring(a) < tostring(b) end)
  for _, name in ipairs(names) do
    local p = "params." .. tostring(name)
    if type(name) ~= "string" then return p .. ": parameter names must be strings" end
    local d = decls[name]
    if type(d) == "string" then
      d = { type = d }
      decls[name] = d
    end
    if type(d) ~= "table" then return p .. ': must be a table { type = "number", ... } or a type name' end
    local t = d.type
    if t == nil then
      d.type, t = "any", "any"
    end
    if not DECL_TYPE_SET[t] then
      local s = type(t) == "string" and did_you_mean(t, DECL_TYPES)
      return ('%s.type: unknown type %s (%s)'):format(p, type(t) == "string" and ('"' .. t .. '"') or tostring(t),
        s and ('did you mean "' .. s .. '"?') or ("one of: " .. concat(DECL_TYPES, ", ")))
    end
    for _, b in ipairs({ "min", "max" }) do
      if d[b] ~= nil and (type(d[b]) ~= "number" or (t ~= "number" and t ~= "integer")) then
        return ("%s.%s: only number and integer parameters have a %s, and it is a number"):format(p, b, b)
      end
    end
    if d.enum ~= nil and (type(d.enum) ~= "table" or #d.enum == 0) then
      return p .. ".enum: must be a non-empty list of values"
    end
    if d.default ~= nil and t ~= "any" then
      local _, err = check_one(d, d.default, p .. ".default")
      if err then return err.message .. " (the declared default)" end
    end
  end
end

local function spec_of(method, key)
  local ps = method.params
  if ps and ps[key] then return ps[key] end
  return COMMON[key]
end

-- Validates params against the method's declarations; fills defaults. prefix names the
-- parameters in messages ("params" -> "params.k"). Methods without a params table accept
-- any key (operator files that do their own checking).
function M.check_params(method, params, prefix)
  if params ~= nil and params ~= null and (type(params) ~= "table" or (kind(params) ~= "object" and next(params) ~= nil)) then
    return fail(400, (prefix or "params") .. " must be an object", prefix or "params")
  end
  params = (params ~= null and params) or {}
  local out = {}
  local declared = method.params
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = params[k]
    local p = join(prefix, tostring(k))
    local spec = type(k) == "string" and spec_of(method, k)
    if spec then
      if present(v) then
        local x, err = check_one(spec, v, p)
        if x == nil then return nil, err end
        out[k] = x
      end
    elseif declared and not (BUILTIN_SET[method.name] and KNOWN[k]) then
      local names = {}
      for n in pairs(COMMON) do names[#names + 1] = n end
      for n in pairs(declared) do names[#names + 1] = n end
      sort(names)
      local s = did_you_mean(tostring(k), names)
      return fail(422, ('%s: unknown parameter for method "%s" (%s)'):format(p, method.name,
        s and ('did you mean "' .. s .. '"?') or ("expected one of: " .. concat(names, ", "))), p)
    else
      out[k] = v ~= null and v or nil
    end
  end
  for k, spec in pairs(COMMON) do
    if out[k] == nil and spec.default ~= nil then out[k] = spec.default end
  end
  for k, spec in pairs(declared or {}) do
    if out[k] == nil and spec.default ~= nil then out[k] = spec.default end
  end
  if method.check then
    local msg, key = method.check(out)
    if msg then
      local p = join(prefix, key or "")
      return fail(422, p .. " " .. msg, p)
    end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- per-list scores: similarities, normalisations (lua/rerank/fusion/normalize.lua, which the
-- method registries in fusion/ require themselves)
local fs = require "rerank.fusion.normalize"

---------------------------------------------------------------------------------------------
-- compute

local finite

local function needs_scores(method, params)
  local s = method.scores
  if type(s) == "function" then return s(params) end
  return s == true
end

local MAX_DOUBLE = 1.7976931348623157e308

-- Every fused score is a finite number: +-inf (weights x scores beyond the largest double)
-- becomes +-1.7976931348623157e308; NaN (such overflows of both signs for one document, or
-- an operator's method) is refused, never serialised as null.
function finite(F, P, method)
  for d = 1, P.n_docs do
    local x = F[d]
    if x ~= nil and (type(x) ~= "number" or not (x > -huge and x < huge)) then
      if x == huge then F[d] = MAX_DOUBLE
      elseif x == -huge then F[d] = -MAX_DOUBLE
      elseif type(x) ~= "number" or not BUILTIN_SET[method.name] then
        return fail(500, ('fusion method "%s" returned %s as the score of id %s'):format(method.name,
          type(x) == "number" and "NaN" or type(x), json.encode(P.ids[d])))
      else
        return fail(422, ('the fused score of id %s is not a number: weights x scores overflow with both '
          .. 'signs; use smaller weights or a normalisation'):format(json.encode(P.ids[d])), "lists")
      end
    end
  end
  return F
end

-- Resolves weights and similarities, then runs the method. Returns F | nil, err.
function M.compute(P, method, params, pprefix)
  local ws = params.weights
  local wp = join(pprefix, "weights")
  local by_name = ws and getmetatable(ws) == BY_NAME
  if ws and not by_name and #ws ~= #P then
    return fail(422, ("%s has %d entries for %d lists"):format(wp, #ws, #P), wp)
  end
  if by_name then
    for k in pairs(ws) do
      if not P.names[k] then
        return fail(422, ('%s.%s: no list named "%s"'):format(wp, k, k), wp .. "." .. k)
      end
    end
  end
  local scored = needs_scores(method, params)
  for i = 1, #P do
    local l = P[i]
    local w = l.weight
    if w == nil and ws then
      if by_name then w = ws[l.name] else w = ws[i] end
    end
    l.w = w or 1
    if scored then
      if l.missing then
        local ip = l.items_param and (l.items_param .. "[" .. (l.missing - 1) .. "]")
            or (l.param .. ".items[" .. (l.missing - 1) .. "]")
        return fail(400, ('%s.score is required by method "%s"'):format(ip, method.name), ip .. ".score")
      end
      fs.sims(l)
    end
  end
  local F = method.fuse(P, params)
  if type(F) ~= "table" then
    return fail(500, ('fusion method "%s" returned %s, not a table of scores'):format(method.name, type(F)))
  end
  return finite(F, P, method)
end

---------------------------------------------------------------------------------------------
-- order: fused score desc, ties by best rank, then first appearance

local topk
do
  local ok, core = pcall(require, "rerank.core")
  if ok and type(core) == "table" and core.topk then
    topk = core.topk
  else
    topk = function(s, k) -- pure-Lua fallback: same order as core.topk
      local idx = {}
      for i = 1, #s do idx[i] = i end
      sort(idx, function(a, b)
        local x, y = s[a], s[b]
        if x ~= x then return false end
        if y ~= y then return true end
        if x ~= y then return x > y end
        return a < b
      end)
      for i = #idx, k + 1, -1 do idx[i] = nil end
      return idx
    end
  end
end

M.TIE_EPSILON = 1e-12 -- scores within this fraction of the largest |score| count as equal

-- Sorts runs of near-equal scores (within tol) by position, which is the tie order.
local function settle_ties(idx, S, tol)
  local m = #idx
  local t = 1
  while t < m do
    local a = t
    while t < m and S[idx[t]] - S[idx[t + 1]] <= tol do t = t + 1 end
    if t > a then
      local run = {}
      for u = a, t do run[#run + 1] = idx[u] end
      sort(run)
      for u = a, t do idx[u] = run[u - a + 1] end
    end
    t = t + 1
  end
end

function M.order(P, F, top_n)
  local N = P.n_docs
  if N == 0 then return {} end
  local k = top_n and top_n < N and top_n or N
  -- permutation of documents in tie order: best position asc (counting sort), then d asc
  local best = P.best
  local cnt = {}
  local maxb = 0
  for d = 1, N do
    local b = best[d]
    cnt[b] = (cnt[b] or 0) + 1
    if b > maxb then maxb = b end
  end
  local acc = 0
  for b = 0, maxb do
    local c = cnt[b]
    if c then cnt[b] = acc; acc = acc + c end
  end
  local perm = table_new(N, 0)
  for d = 1, N do
    local b = best[d]
    local s = cnt[b] + 1
    cnt[b] = s
    perm[s] = d
  end
  local S = table_new(N, 0)
  local scale = 0
  for j = 1, N do
    local x = F[perm[j]] or 0
    S[j] = x
    local a = x < 0 and -x or x
    if a > scale and a < huge then scale = a end
  end
  local tol = scale * M.TIE_EPSILON
  local idx = topk(S, k)
  if k < N and tol > 0 then
    -- near-equal scores just below the cut belong to the same tie run: sort those too
    local kth = S[idx[k]]
    local intop = {}
    for t = 1, k do intop[idx[t]] = true end
    local extra
    for j = 1, N do
      if not intop[j] and S[j] >= kth - tol then
        extra = extra or {}
        extra[#extra + 1] = j
      end
    end
    if extra then
      for _, j in ipairs(extra) do idx[#idx + 1] = j end
      local sub = {}
      for t = 1, #idx do sub[t] = S[idx[t]] end
      local o = topk(sub, #sub)
      local re = {}
      for t = 1, #o do re[t] = idx[o[t]] end
      idx = re
    end
  end
  if tol > 0 then settle_ties(idx, S, tol) end
  local out = table_new(k, 0)
  for t = 1, k do out[t] = perm[idx[t]] end
  return out
end

-- Result tables for the ordered documents.
function M.results(P, F, order)
  local out = table_new(#order, 0)
  local mem = M.members(P)
  for t = 1, #order do
    local d = order[t]
    local m = mem[d]
    local ranks, scores = table_new(0, #m / 2), table_new(0, #m / 2)
    for u = 1, #m, 2 do
      local l, p = P[m[u]], m[u + 1]
      ranks[l.name] = p
      local s = l.scores[p]
      if s ~= nil then scores[l.name] = s end
    end
    local r = table_new(0, 4)
    r.id, r.score, r.ranks, r.scores = P.ids[d], F[d] or 0, ranks, scores
    out[t] = r
  end
  return out
end

---------------------------------------------------------------------------------------------
-- the whole thing

local FLAT_SKIP = { method = true, top_n = true, params = true, fusion_file = true, methods = true,
                    max_lists = true, max_items = true }

-- opts: { method = "rrf", top_n = n, params = {...}, <param> = ..., fusion_file = path,
--         methods = registry, max_lists =, max_items = }. Flat keys other than those are
--         parameters too.
function M.run(lists, opts)
  opts = opts or {}
  local P, err = M.check_lists(lists, "lists", { max_lists = opts.max_lists, max_items = opts.max_items })
  if not P then return nil, err end
  local registry = opts.methods
  local method
  if opts.fusion_file then
    local m, lerr = M.load_file(opts.fusion_file)
    if not m then return fail(422, lerr, "fusion_file") end
    method = m
  else
    method, err = M.method(opts.method, registry, "method")
    if not method then return nil, err end
  end
  local raw = {}
  for k, v in pairs(opts) do
    if not FLAT_SKIP[k] then raw[k] = v end
  end
  local prefix = ""
  if type(opts.params) == "table" then
    for k, v in pairs(opts.params) do raw[k] = v end
  end
  local params
  params, err = M.check_params(method, raw, prefix)
  if not params then return nil, err end
  local top_n = opts.top_n
  if top_n ~= nil and (type(top_n) ~= "number" or top_n ~= floor(top_n) or top_n < 1 or top_n == huge) then
    return fail(422, "top_n must be an integer >= 1", "top_n")
  end
  local F
  F, err = M.compute(P, method, params, prefix)
  if not F then return nil, err end
  return M.results(P, F, M.order(P, F, top_n))
end

return M
