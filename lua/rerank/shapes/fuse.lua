-- POST /v1/fuse's wire shape (README "POST /v1/fuse"): the request body read into a fusion
-- spec, and the answer written straight from the prepared lists. The fusion itself (list
-- checks, methods, parameters, the order) is lua/rerank/fuse.lua's; this module only maps the
-- body's fields onto it and renders what it returns. Not a rerank shape: daemon/server.lua's
-- handle_fuse calls it directly (nothing is registered in shapes/registry.lua).
--
--   S.parse(body, registry, limits) -> spec | nil, err
--       body: the JSON text or the decoded object; registry: fuse.methods(cfg);
--       limits: { max_lists =, max_items = } (server.max_fuse_lists / max_fuse_items).
--       spec = { lists = P (fuse.check_lists), method =, params = (defaults filled), top_n = }
--   S.run(spec) -> order, F | nil, err          (fuse.compute + fuse.order)
--   S.render(P, F, order) -> body
--
-- Request: lists (required), method (default "rrf"), top_n (integer >= 1), params (object);
-- the built-ins' parameters (fuse.KNOWN: weights, rank_base, k, normalize, std) may also sit at
-- the top level, params wins; fusion_file is refused (configuration only).
-- Answer: {"results":[{"id","score","ranks":{name: rank},"scores":{name: score}}, ...]}, list
-- names in input order, ranks 1-based, scores only where the item had one.
local fuse = require "rerank.fuse"
local json = require "rerank.json"
local api = require "rerank.shapes.registry" -- body_object: the JSON object every shape reads

local type, next, pairs = type, next, pairs
local floor, huge = math.floor, math.huge
local concat = table.concat
local null, kind, jnumber, jstring = json.null, json.kind, json.number, json.string
local fail = fuse.fail

local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local function present(v) return v ~= nil and v ~= null end

local S = { name = "fuse" }

function S.parse(body, registry, limits)
  local b, berr = api.body_object(body)
  if not b then return nil, berr end
  local method, err = fuse.method(present(b.method) and b.method or nil, registry, "method")
  if not method then return nil, err end
  local top_n = b.top_n
  if present(top_n) then
    if type(top_n) ~= "number" or top_n ~= floor(top_n) or top_n == huge or top_n == -huge then
      return fail(400, "top_n must be an integer", "top_n")
    end
    if top_n < 1 then return fail(422, "top_n must be >= 1", "top_n") end
  else
    top_n = nil
  end
  local raw = b.params
  if present(raw) and (type(raw) ~= "table" or (kind(raw) ~= "object" and next(raw) ~= nil)) then
    return fail(400, "params must be an object", "params")
  end
  raw = present(raw) and raw or {}
  if raw.fusion_file ~= nil or b.fusion_file ~= nil then
    local fp = raw.fusion_file and "params.fusion_file" or "fusion_file"
    return fail(422, fp .. " is only accepted in the configuration", fp)
  end
  -- the built-ins' parameters may also sit at the top level (params wins)
  local merged = {}
  for k in pairs(fuse.KNOWN) do
    if present(b[k]) then merged[k] = b[k] end
  end
  for k, v in pairs(raw) do merged[k] = v end
  local params
  params, err = fuse.check_params(method, merged, "params")
  if not params then return nil, err end
  local P
  P, err = fuse.check_lists(b.lists, "lists", limits)
  if not P then return nil, err end
  return { lists = P, method = method, params = params, top_n = top_n }
end

-- Runs a parsed request: order, F | nil, err (S.render turns them into the body).
function S.run(spec)
  local F, err = fuse.compute(spec.lists, spec.method, spec.params, "params")
  if not F then return nil, err end
  return fuse.order(spec.lists, F, spec.top_n), F
end

-- Straight from the prepared lists (no per-result tables).
function S.render(P, F, order)
  local m = #order
  local L = #P
  local names = table_new(L, 0)
  for i = 1, L do names[i] = jstring(P[i].name) .. ":" end
  local mem = fuse.members(P)
  local buf = table_new(m + 2, 0)
  buf[1] = '{"results":['
  local rk, sc = {}, {}
  for t = 1, m do
    local d = order[t]
    local md = mem[d]
    local nr, ns = 0, 0
    for u = 1, #md, 2 do
      local i, p = md[u], md[u + 1]
      nr = nr + 1
      rk[nr] = names[i] .. p
      local x = P[i].scores[p]
      if x ~= nil then
        ns = ns + 1
        sc[ns] = names[i] .. jnumber(x)
      end
    end
    local id = P.ids[d]
    buf[t + 1] = (t > 1 and ',{"id":' or '{"id":') .. (type(id) == "number" and jnumber(id) or jstring(id))
        .. ',"score":' .. jnumber(F[d] or 0) .. ',"ranks":{' .. concat(rk, ",", 1, nr)
        .. '},"scores":{' .. concat(sc, ",", 1, ns) .. '}}'
  end
  buf[m + 2] = ']}'
  return concat(buf)
end

return S
