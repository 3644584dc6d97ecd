-- Declared pipelines (DESIGN §3, §7): fuse → rerank → threshold → top_n over one request.
--
--   pipeline.parse_fields(body, req, opts) -> nil | err   the pipeline fields of a rerankd-shape
--       request: pipeline (a configured name or inline stages), lists (replacing documents),
--       return_score. Called by the rerankd shape (lua/rerank/shapes/rerankd.lua).
--   pipeline.check_stages(v, param) -> stages | nil, err  inline stages, checked like config's
--   pipeline.resolve(inst, req) -> stages, name | nil, err | nil   does req run a pipeline?
--   pipeline.run(inst, req, stages, name, timing) -> result | nil, err
--
-- Stages: { fuse = { method =, <params>... } } | { rerank = { model =, candidates =, top_n = } }
--       | { threshold = { min_score = } } | { top_n = n }. A fuse stage comes first (when
-- absent, rrf with its defaults runs first). The current score after each stage: fused
-- score, then the rerank model's relevance; threshold keeps documents with score >= min_score.
-- A rerank stage that fails (after the model's fallbacks) keeps the fused order of its
-- candidates, marks the result degraded and skips the threshold stages that follow it (their
-- min_score is for the model's scores).
local json = require "rerank.json"
local fuse = require "rerank.fuse"

local type, tostring, next, pairs, ipairs = type, tostring, next, pairs, ipairs
local floor = math.floor
local concat = table.concat
local null, kind, jnumber, jstring = json.null, json.kind, json.number, json.string

local ok_tnew, table_new = pcall(require, "table.new")
if not ok_tnew then table_new = function() return {} end end

local M = {}

local fail = fuse.fail

local function present(v) return v ~= nil and v ~= null end

local function now_us()
  local ok, core = pcall(require, "rerank.core")
  if ok and type(core) == "table" and core.now_us then return core.now_us() end
  return floor(os.clock() * 1e6)
end

local function log(level, msg)
  local ok, core = pcall(require, "rerank.core")
  if ok and type(core) == "table" and core.log then pcall(core.log, level, msg) end
end

M.STAGES = { "fuse", "rerank", "threshold", "top_n" }
local STAGE_SET = { fuse = true, rerank = true, threshold = true, top_n = true }
M.RETURN_SCORE = { relevance = true, all = true }

---------------------------------------------------------------------------------------------
-- inline stages

local function is_object(v) return type(v) == "table" and kind(v) == "object" end

local function check_int(v, p, min)
  if type(v) ~= "number" or v ~= floor(v) or v == math.huge or v == -math.huge then
    return fail(400, p .. " must be an integer", p)
  end
  if v < min then return fail(422, p .. " must be >= " .. min, p) end
  return v
end

local function did_you_mean(word, names)
  local ok, config = pcall(require, "rerank.config.load")
  if ok and type(config) == "table" and config.did_you_mean then return config.did_you_mean(word, names) end
end

local function unknown_key(p, key, allowed)
  local names = {}
  for k in pairs(allowed) do names[#names + 1] = k end
  table.sort(names)
  local s = did_you_mean(key, names)
  local kp = p .. "." .. key
  return fail(422, ('%s: unknown key (%s)'):format(kp,
    s and ('did you mean "' .. s .. '"?') or ("expected one of: " .. concat(names, ", "))), kp)
end

local RERANK_KEYS = { model = true, candidates = true, top_n = true }
local THRESHOLD_KEYS = { min_score = true }

local function check_stage(st, sp)
  if not is_object(st) then
    return fail(400, sp .. " must be an object with one of: fuse, rerank, threshold, top_n", sp)
  end
  local key, n = nil, 0
  for k in pairs(st) do
    n = n + 1
    key = k
  end
  if n ~= 1 then
    local keys = {}
    for k in pairs(st) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    return fail(422, ("%s: a stage has exactly one kind (got %s)"):format(sp,
      n == 0 and "none" or concat(keys, ", ")), sp)
  end
  if not STAGE_SET[key] then
    local s = did_you_mean(tostring(key), M.STAGES)
    local kp = sp .. "." .. tostring(key)
    return fail(422, ('%s: unknown stage (%s)'):format(kp,
      s and ('did you mean "' .. s .. '"?') or "expected one of: fuse, rerank, threshold, top_n"), kp)
  end
  local v = st[key]
  local kp = sp .. "." .. key
  if key == "fuse" then
    if v == null or v == nil then v = {} end
    if type(v) == "string" then return { fuse = { method = v } } end
    if not is_object(v) and not (type(v) == "table" and next(v) == nil) then
      return fail(400, kp .. ' must be an object (or a method name)', kp)
    end
    if v.fusion_file ~= nil then
      return fail(422, kp .. ".fusion_file is only accepted in the configuration", kp .. ".fusion_file")
    end
    if present(v.method) and type(v.method) ~= "string" then
      return fail(400, kp .. ".method must be a string", kp .. ".method")
    end
    local out = {}
    for k, x in pairs(v) do
      if k ~= "params" and x ~= null then out[k] = x end
    end
    if present(v.params) then
      if not is_object(v.params) and not (type(v.params) == "table" and next(v.params) == nil) then
        return fail(400, kp .. ".params must be an object", kp .. ".params")
      end
      for k, x in pairs(v.params) do
        if x ~= null then out[k] = x end
      end
    end
    return { fuse = out }
  elseif key == "rerank" then
    if type(v) == "string" then v = { model = v } end
    if v == null or v == nil then v = {} end
    if not is_object(v) and not (type(v) == "table" and next(v) == nil) then
      return fail(400, kp .. " must be an object (or a model name)", kp)
    end
    local out = {}
    for k, x in pairs(v) do
      if not RERANK_KEYS[k] then return unknown_key(kp, tostring(k), RERANK_KEYS) end
      if x ~= null then
        if k == "model" then
          if type(x) ~= "string" then return fail(400, kp .. ".model must be a string", kp .. ".model") end
          if x == "" then return fail(422, kp .. ".model must not be empty", kp .. ".model") end
          out.model = x
        else
          local iv, err = check_int(x, kp .. "." .. k, 1)
          if not iv then return nil, err end
          out[k] = iv
        end
      end
    end
    return { rerank = out }
  elseif key == "threshold" then
    if type(v) == "number" then v = { min_score = v } end
    if not is_object(v) then return fail(400, kp .. " must be an object with min_score", kp) end
    for k in pairs(v) do
      if not THRESHOLD_KEYS[k] then return unknown_key(kp, tostring(k), THRESHOLD_KEYS) end
    end
    local m = v.min_score
    if not present(m) then return fail(400, kp .. ".min_score is required", kp .. ".min_score") end
    if type(m) ~= "number" or m ~= m then return fail(400, kp .. ".min_score must be a number", kp .. ".min_score") end
    if m == math.huge or m == -math.huge then
      return fail(422, kp .. ".min_score must be a finite number", kp .. ".min_score")
    end
    return { threshold = { min_score = m } }
  else -- top_n
    if is_object(v) then v = v.n end
    local iv, err = check_int(v, kp, 1)
    if not iv then return nil, err end
    return { top_n = iv }
  end
end

-- Order rule shared with config/load.lua: at most one fuse stage, and it comes first.
function M.check_order(stages)
  for i, st in ipairs(stages) do
    if st.fuse and i > 1 then return i, "a fuse stage must be the first stage (and only one)" end
  end
end

function M.check_stages(v, param)
  param = param or "pipeline"
  if type(v) ~= "table" or (kind(v) ~= "array" and next(v) ~= nil) then
    return fail(400, param .. " must be a string (a configured pipeline) or an array of stages", param)
  end
  if #v == 0 then return fail(422, param .. " must have at least one stage", param) end
  local out = {}
  for i = 1, #v do
    local st, err = check_stage(v[i], param .. "[" .. (i - 1) .. "]")
    if not st then return nil, err end
    out[i] = st
  end
  local bad, msg = M.check_order(out)
  if bad then
    local sp = param .. "[" .. (bad - 1) .. "].fuse"
    return fail(422, sp .. ": " .. msg, sp)
  end
  return out
end

---------------------------------------------------------------------------------------------
-- request fields (the rerankd shape: lua/rerank/shapes/rerankd.lua)

function M.parse_fields(b, req, opts)
  local p = b.pipeline
  if present(p) then
    if type(p) == "string" then
      if p == "" then
        local _, err = fail(422, "pipeline must not be empty", "pipeline")
        return err
      end
      req.pipeline = p
    else
      local stages, err = M.check_stages(p, "pipeline")
      if not stages then return err end
      req.pipeline = stages
    end
  end
  if present(b.lists) then
    if present(b.documents) then
      local _, err = fail(422, "send either documents or lists, not both", "documents")
      return err
    end
    local tf = b.text_field
    if type(tf) ~= "string" or tf == "" then tf = opts.text_field end
    local P, err = fuse.check_lists(b.lists, "lists", { documents = true, text_field = tf,
                                                        max_lists = opts.max_fuse_lists, max_items = opts.max_fuse_items })
    if not P then return err end
    P.text_field = tf
    P.max_image_bytes = opts.max_image_bytes
    req.lists = P
    req.documents = {}
  elseif present(b.documents) then
    local R = require "rerank.shapes.rerankd"
    local dopts = R.documents_opts(b, opts)
    dopts.no_splice = true -- a pipeline's documents are not spliced (their texts are made)
    local docs, err = require("rerank.shapes.registry").check.documents(b.documents, "documents", dopts)
    if not docs then return err end
    req.documents = docs
  else
    local _, err = fail(400, "lists is required (or documents)", "lists")
    return err
  end
end

---------------------------------------------------------------------------------------------
-- which pipeline

local function default_rerank_model(cfg, req)
  if req.model and cfg.model_index[req.model] then return req.model end
  if cfg.model_index[cfg.default_model] then return cfg.default_model end
  return cfg.models[1].name
end

-- stages, name | nil, err | nil (not a pipeline request)
function M.resolve(inst, req)
  local cfg = inst.cfg
  local p = req.pipeline
  if type(p) == "table" then return p, "pipeline" end
  if type(p) == "string" then
    local entry = cfg.pipeline_index and cfg.pipeline_index[p]
    if not entry then
      local names = {}
      for n in pairs(cfg.pipeline_index or {}) do names[#names + 1] = n end
      table.sort(names)
      local s = did_you_mean(p, names)
      return fail(404, ('pipeline "%s" is not configured%s'):format(p,
        s and (' (did you mean "' .. s .. '"?)') or (#names > 0 and (" (configured: " .. concat(names, ", ") .. ")") or "")),
        "pipeline")
    end
    return entry.stages, entry.name
  end
  local name = req.model or cfg.default_model
  local entry = cfg.pipeline_index and cfg.pipeline_index[name]
  if entry then return entry.stages, entry.name end -- model (or default_model) names a pipeline
  if req.lists then
    if req.model and not cfg.model_index[req.model] then
      return fail(404, ("model %q is not configured (see GET /v1/models)"):format(req.model), "model")
    end
    local m = default_rerank_model(cfg, req)
    return { { fuse = { method = fuse.DEFAULT_METHOD } }, { rerank = { model = m } } }, m
  end
  return nil
end

---------------------------------------------------------------------------------------------
-- run

-- The request's documents as one list (a pipeline over documents instead of lists).
local function documents_list(docs)
  local n = #docs
  local ids, docs_idx, pos, best, count, texts, items =
      table_new(n, 0), table_new(n, 0), table_new(n, 0), table_new(n, 0), table_new(n, 0), table_new(n, 0), table_new(n, 0)
  for d = 1, n do
    local doc = docs[d]
    ids[d], docs_idx[d], pos[d], best[d], count[d], texts[d], items[d] = doc.id, d, d, d - 1, 1, doc.text, doc
  end
  local l = { name = "documents", kind = "similarity", n = n, ids = ids, scores = {}, docs = docs_idx, pos = pos,
              missing = n > 0 and 1 or nil, items = items, param = "documents", items_param = "documents" }
  return { l, names = { documents = 1 }, n_docs = n, ids = ids, best = best, count = count, texts = texts,
           doc_item = items, from_documents = true }
end

-- Where document d first appears, as a param path (for "text is required").
local function first_place(P, d)
  local m = fuse.members(P)[d]
  if m and m[1] then
    local l, p = P[m[1]], m[2]
    if P.from_documents then return "documents[" .. (p - 1) .. "]" end
    return l.param .. ".items[" .. (p - 1) .. "]"
  end
  return "lists"
end

-- The client's document d: the decoded item (lists) or the internal documents entry.
local function item_of(P, d)
  if P.from_documents then return P.doc_item[d] end
  local it = P.doc_item and P.doc_item[d]
  if it then return it end
  local m = fuse.members(P)[d]
  if m and m[1] then return P[m[1]].items[m[2]] end
end

-- The client's value for document d (what return_documents echoes).
local function raw_of(P, d)
  local it = item_of(P, d)
  if P.from_documents and type(it) == "table" then return it.raw end
  return it
end

local function copy_params(spec)
  local out = {}
  for k, v in pairs(spec) do
    if k ~= "method" and k ~= "fusion_file" and k ~= "params" then out[k] = v end
  end
  if type(spec.params) == "table" then
    for k, v in pairs(spec.params) do out[k] = v end
  end
  return out
end

-- Sums the numeric usage fields of the rerank stages (tokens, search units, cost).
local function add_usage(acc, u)
  if type(u) ~= "table" then return end
  for k, v in pairs(u) do
    if type(v) == "number" and v == v then acc[k] = (acc[k] or 0) + v end
  end
end

local function map_json(P, d, field)
  local buf = {}
  local m = fuse.members(P)[d]
  for u = 1, #m, 2 do
    local l, p = P[m[u]], m[u + 1]
    local v
    if field == "ranks" then v = p else v = l.scores[p] end
    if v ~= nil then buf[#buf + 1] = jstring(l.name) .. ":" .. jnumber(v) end
  end
  return "{" .. concat(buf, ",") .. "}"
end

-- The extra JSON members of one result: "id", and with return_score "all" every stage's score.
local function extra_json(P, d, st, all)
  local buf = {}
  local id = P.ids[d]
  if id ~= nil then buf[#buf + 1] = ',"id":' .. (type(id) == "number" and jnumber(id) or jstring(id)) end
  if all then
    local dist, sim
    local m = fuse.members(P)[d]
    for u = 1, #m, 2 do
      local l, p = P[m[u]], m[u + 1]
      if l.scores[p] ~= nil then
        if l.kind == "distance" then
          if dist == nil then dist = l.scores[p] end
        elseif sim == nil then
          sim = l.scores[p]
        end
      end
    end
    if dist ~= nil then buf[#buf + 1] = ',"_distance":' .. jnumber(dist) end
    if sim ~= nil then buf[#buf + 1] = ',"score":' .. jnumber(sim) end
    if st.fused then buf[#buf + 1] = ',"_fused_score":' .. jnumber(st.fused[d] or 0) end
    if st.rel and st.rel[d] ~= nil then
      buf[#buf + 1] = ',"_relevance_score":' .. jnumber(st.rel[d])
      local raw = st.raw and st.raw[d] -- the model's own score and its kind (lua/rerank/score.lua)
      if raw ~= nil and st.kinds[d] then
        buf[#buf + 1] = ',"raw_score":' .. jnumber(raw) .. ',"score_kind":' .. jstring(st.kinds[d])
      end
    end
    buf[#buf + 1] = ',"ranks":' .. map_json(P, d, "ranks") .. ',"scores":' .. map_json(P, d, "scores")
  end
  return concat(buf)
end

local function stage_path(name, si, inline)
  if inline then return "pipeline[" .. (si - 1) .. "]" end
  return ("pipelines.%s.stages[%d]"):format(name, si - 1)
end

local function run_fuse(inst, P, spec, sp, st)
  local registry = fuse.methods(inst.cfg)
  local method, err
  if spec.fusion_file then
    local lerr
    method, lerr = fuse.load_file(spec.fusion_file)
    if not method then return fail(500, lerr) end
  else
    method, err = fuse.method(spec.method, registry, sp .. ".fuse.method")
    if not method then return nil, err end
  end
  local params
  params, err = fuse.check_params(method, copy_params(spec), sp .. ".fuse")
  if not params then return nil, err end
  local F
  F, err = fuse.compute(P, method, params, sp .. ".fuse")
  if not F then return nil, err end
  st.fused, st.cur = F, F
  st.order = fuse.order(P, F)
  return true
end

-- What a rerank stage's call saw (its result or error): the last upstream HTTP status and
-- the cache status, kept for the request's (Instance:rerank's result fields).
local function saw(st, r)
  if type(r) ~= "table" then return end
  if r.upstream_status ~= nil then st.upstream_status = r.upstream_status end
  st.cache = require("rerank.engine.cache").merge_status(st.cache, r.cache)
end

local function run_rerank(inst, req, P, spec, sp, st)
  local cfg = inst.cfg
  if req.query == nil then
    return fail(400, "query is required (the pipeline has a rerank stage)", "query")
  end
  local mname = spec.model or default_rerank_model(cfg, req)
  local model = cfg.model_index[mname]
  if not model then
    return fail(404, ("%s.rerank.model: model %q is not configured (see GET /v1/models)"):format(sp, mname),
      sp .. ".rerank.model")
  end
  local order = st.order
  local m = #order
  if spec.candidates and spec.candidates < m then m = spec.candidates end
  local docs = table_new(m, 0)
  for t = 1, m do
    local d = order[t]
    local text = P.texts and P.texts[d]
    local it = item_of(P, d)
    -- an image item (lua/rerank/shapes/registry.lua check_image) goes to the model with its image
    local img = type(it) == "table" and it.image or nil
    if img == null then img = nil end
    if img ~= nil and not P.from_documents then
      local ierr
      img, ierr = require("rerank.shapes.registry").check_image(img, first_place(P, d), P.max_image_bytes)
      if ierr then return nil, ierr end
    end
    if text == nil and img then text = "" end
    if text == nil then
      local ip = first_place(P, d) .. "." .. (P.text_field or "text")
      return fail(400, ip .. " is required (the pipeline has a rerank stage)", ip)
    end
    local title, md
    if type(it) == "table" then
      title, md = it.title, it.metadata
      if title == null then title = nil end
      if md == null then md = nil end
    end
    docs[t] = { index = t - 1, text = text, id = P.ids[d], title = title, metadata = md,
                raw = raw_of(P, d), image = img }
  end
  local cand = table_new(m, 0)
  for t = 1, m do cand[t] = order[t] end
  local sub = { shape = "rerankd", model = mname, query = req.query, documents = docs, return_documents = false,
                truncate = req.truncate, max_tokens_per_document = req.max_tokens_per_document,
                metadata = req.metadata, user = req.user, extra_body = req.extra_body, id = req.id,
                instruction = req.instruction, timeout = req.timeout, fallbacks = req.fallbacks,
                max_chunks_per_doc = req.max_chunks_per_doc }
  local res, err
  if m > 0 then
    local timing = {}
    res, err = inst:rerank(sub, timing)
    saw(st, res or err)
    st.upstream = st.upstream + (timing.upstream or 0)
    -- the model's fallbacks, unless the engine already walked them (err.fallbacks_tried)
    if not res and not (type(err) == "table" and err.fallbacks_tried) then
      for _, f in ipairs(model.fallbacks or {}) do
        if cfg.model_index[f] then
          sub.model = f
          timing = {}
          local r2, e2 = inst:rerank(sub, timing)
          saw(st, r2 or e2)
          st.upstream = st.upstream + (timing.upstream or 0)
          if r2 then res = r2; break end
          err = e2
        end
      end
    end
  else
    res = { results = {}, usage = {} }
  end
  -- an instruction the model cannot take is the request's error, not a degraded stage
  if not res and type(err) == "table" and err.instruction_refused then return nil, err end
  if res then
    local rel, raw, kinds = st.rel or {}, st.raw or {}, st.kinds or {}
    local new = table_new(#res.results, 0)
    for t, r in ipairs(res.results) do
      local d = cand[r.index + 1]
      new[t] = d
      rel[d], raw[d], kinds[d] = r.relevance_score, r.raw_score, r.score_kind
    end
    st.rel, st.cur, st.order, st.raw, st.kinds = rel, rel, new, raw, kinds
    st.skip_threshold = false
    st.score_kind = res.score_kind -- "rank" for listwise models: labels the final scores
    st.repairs = (st.repairs or 0) + (tonumber(res.repairs) or 0)
    if res.degraded then
      st.degraded = true
      st.reasons[#st.reasons + 1] = ("%s: model %q returned incomplete scores"):format(sp, res.model or mname)
    end
    add_usage(st.usage, res.usage)
    if m > 0 then st.stages[#st.stages + 1] = { model = res.model or mname, usage = res.usage } end
  else
    st.degraded = true
    st.skip_threshold = true
    st.order = cand
    st.score_kind = nil -- the fused scores again
    local why = type(err) == "table" and (err.message or err.type) or tostring(err)
    st.reasons[#st.reasons + 1] = ("%s: model %q failed: %s"):format(sp, mname, tostring(why))
    log("warn", ("request %s: pipeline rerank stage degraded to the fused order: %s"):format(
      tostring(req.id or "-"), st.reasons[#st.reasons]))
  end
  if spec.top_n and spec.top_n < #st.order then
    for t = #st.order, spec.top_n + 1, -1 do st.order[t] = nil end
  end
  return true
end

function M.run(inst, req, stages, name, timing)
  local t0 = now_us()
  local inline = type(req.pipeline) == "table"
  local P = req.lists or documents_list(req.documents or {})
  local st = { upstream = 0, usage = { prompt_tokens = 0, total_tokens = 0 }, reasons = {}, degraded = false,
               stages = {} }
  local list = stages
  if not (stages[1] and stages[1].fuse) then
    list = { { fuse = { method = fuse.DEFAULT_METHOD } } }
    for i = 1, #stages do list[i + 1] = stages[i] end
  end
  for si, stage in ipairs(list) do
    -- stage paths count the request's own stages (the implicit fuse stage has none)
    local idx = (list == stages) and si or si - 1
    local sp = stage_path(name, idx, inline)
    local ok, err = true, nil
    if stage.fuse then
      ok, err = run_fuse(inst, P, stage.fuse, sp, st)
    elseif stage.rerank then
      ok, err = run_rerank(inst, req, P, stage.rerank, sp, st)
    elseif stage.threshold then
      if not st.skip_threshold then
        local min = stage.threshold.min_score
        local cur, kept = st.cur, {}
        for _, d in ipairs(st.order) do
          local s = cur[d]
          if s ~= nil and s >= min then kept[#kept + 1] = d end
        end
        st.order = kept
      end
    elseif stage.top_n then
      local n = stage.top_n
      if type(n) == "table" then n = n.n end
      if type(n) == "number" and n < #st.order then
        for t = #st.order, n + 1, -1 do st.order[t] = nil end
      end
    end
    if not ok then
      if type(err) == "table" then -- what the stages before saw, for the access log
        err.upstream_status, err.cache = err.upstream_status or st.upstream_status, st.cache
      end
      return nil, err
    end
  end
  local order = st.order
  if req.min_score then -- the request's cut, on the final (calibrated) score
    local kept = {}
    for _, d in ipairs(order) do
      local s = st.cur[d]
      if s ~= nil and s >= req.min_score then kept[#kept + 1] = d end
    end
    order = kept
  end
  if req.top_n and req.top_n < #order then
    for t = #order, req.top_n + 1, -1 do order[t] = nil end
  end
  -- results: index is 0-based into the documents in order of first appearance (lists), or
  -- into the request's documents
  local all = req.return_score == "all"
  local results = table_new(#order, 0)
  local docs = {}
  for t, d in ipairs(order) do
    docs[d] = { raw = raw_of(P, d), text = P.texts and P.texts[d] }
    results[t] = { index = d - 1, relevance_score = st.cur[d] or 0, id = P.ids[d], extra = extra_json(P, d, st, all) }
  end
  req.documents = docs
  if timing then
    timing.upstream = st.upstream
    timing.sort = (now_us() - t0) - st.upstream
  end
  -- search units: the rerank stages' (add_usage), by the one rule of a rerank call (the
  -- router's: an upstream API's billing; a local scorer and fusion bill none, so a pipeline
  -- of those has none, as the same request over documents has none)
  local rid = req.id
  if not rid then
    local ok, core = pcall(require, "rerank.core")
    rid = "rerank-" .. ((ok and type(core) == "table" and core.random_hex) and core.random_hex(12) or tostring(os.time()))
  end
  return {
    id = rid,
    model = name,
    results = results,
    usage = st.usage,
    cost = st.usage.cost,      -- x-rerankd-cost: the rerank stages' cost
    degraded = st.degraded or nil,
    degraded_reasons = st.degraded and st.reasons or nil,
    score_kind = st.score_kind,
    repairs = st.repairs,
    pipeline = true,
    stages = st.stages,        -- each rerank stage's model and usage (metrics count them per model)
    upstream_status = st.upstream_status, -- the last upstream answer's HTTP status, over the stages
    cache = st.cache,                     -- the stages' cache statuses merged
  }
end

return M
