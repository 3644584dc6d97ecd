-- Evaluation sets for `rerankd eval`.
--
--   data.load(path, opts) -> queries | nil, err
--     path: a JSON Lines file, or a BEIR directory (corpus.jsonl, queries.jsonl,
--     qrels/<split>.tsv). opts: split (default "test"), candidates (a TREC run file:
--     "qid Q0 docid rank score tag" lines, giving each query's candidates in rank order;
--     "all": every corpus document, in corpus order; default: the query's judged documents
--     in qrels order).
--   data.to_jsonl(queries) -> string   the same set as JSON Lines (the converter)
--
-- A JSON line: {"id"?, "query", "documents": [string | {id?, text, title?, ...}],
-- "relevant": {"<doc id or 0-based index>": grade, ...}, "lists"?: [...]}. A key names a
-- document by its id first, else by its index. Grades are integers >= 0. A relevant key that
-- names no candidate still counts as a relevant document that was not retrieved (trec_eval).
-- "lists" (ranked lists, as on POST /v1/rerank) replaces "documents" for pipelines; models
-- rerank the union of the lists' items in order of first appearance.
-- A query is { id, query, documents = {wire docs}, lists = nil|{...}, qrels = {[key] = grade},
-- ids = {[doc id] = 1-based index} }; keys are 1-based document indexes, or "?<key>" for
-- judged documents that are not candidates.
local json = require "rerank.json"

local M = {}

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

local function is_dir(path)
  local f = io.open(path .. "/corpus.jsonl", "rb")
  if f then f:close() return true end
  return false
end

local function lines(s)
  local out, n = {}, 0
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    out[#out + 1] = { n = n, text = line }
  end
  return out
end

-- the lines of a file | nil, err
local function file_lines(path)
  local s, err = read_file(path)
  if not s then return nil, err end
  return lines(s)
end

local function fields(text)
  local f = {}
  for x in text:gmatch("%S+") do f[#f + 1] = x end
  return f
end

local function grade_ok(g)
  return type(g) == "number" and g >= 0 and g == math.floor(g)
end

-- Builds a query record from its documents (wire form) and relevance keys.
local function make_query(id, text, docs, relevant, where)
  local q = { id = id, query = text, documents = docs, qrels = {}, ids = {} }
  for i, d in ipairs(docs) do
    local did = type(d) == "table" and d.id or nil
    if did ~= nil then
      did = tostring(did)
      if q.ids[did] then return nil, ("%s: duplicate document id %q"):format(where, did) end
      q.ids[did] = i
    end
  end
  for key, g in pairs(relevant) do
    key = tostring(key)
    if not grade_ok(g) then
      return nil, ("%s: relevant[%q] must be an integer grade >= 0"):format(where, key)
    end
    local i = q.ids[key]
    if not i and key:match("^%d+$") and tonumber(key) < #docs then i = tonumber(key) + 1 end
    local k = i or ("?" .. key)
    if q.qrels[k] then return nil, ("%s: relevant[%q] names a document twice"):format(where, key) end
    q.qrels[k] = g
  end
  return q
end

local function list_docs(lists, where)
  if type(lists) ~= "table" or #lists == 0 then return nil, where .. ": lists must be a non-empty array" end
  local docs, seen = {}, {}
  for li, l in ipairs(lists) do
    local items = type(l) == "table" and (l.items or l)
    if type(items) ~= "table" then return nil, ("%s: lists[%d] has no items"):format(where, li - 1) end
    for _, it in ipairs(items) do
      local id = type(it) == "table" and it.id or it
      if id == nil then return nil, ("%s: lists[%d]: an item without id"):format(where, li - 1) end
      local sid = tostring(id)
      if not seen[sid] then
        seen[sid] = #docs + 1
        docs[#docs + 1] = { id = sid, text = type(it) == "table" and it.text or nil,
          title = type(it) == "table" and it.title or nil }
      elseif type(it) == "table" and it.text and not docs[seen[sid]].text then
        docs[seen[sid]].text = it.text
      end
    end
  end
  for _, d in ipairs(docs) do
    if type(d.text) ~= "string" then return nil, ("%s: item %q has no text in any list"):format(where, d.id) end
  end
  return docs
end

function M.load_jsonl(path)
  local ls, err = file_lines(path)
  if not ls then return nil, err end
  local out = {}
  for _, l in ipairs(ls) do
    if l.text:match("%S") then
      local where = ("%s:%d"):format(path, l.n)
      local v, jerr = json.decode(l.text)
      if type(v) ~= "table" then return nil, where .. ": " .. (jerr or "expected a JSON object") end
      if type(v.query) ~= "string" or v.query == "" then return nil, where .. ": query must be a non-empty string" end
      local docs = v.documents
      if v.lists ~= nil then
        local derr
        docs, derr = list_docs(v.lists, where)
        if not docs then return nil, derr end
      elseif type(docs) ~= "table" or #docs == 0 then
        return nil, where .. ": documents must be a non-empty array"
      end
      if type(v.relevant) ~= "table" then return nil, where .. ": relevant must be an object of grades" end
      local q, qerr = make_query(v.id ~= nil and tostring(v.id) or tostring(#out + 1), v.query, docs, v.relevant, where)
      if not q then return nil, qerr end
      q.lists = v.lists
      out[#out + 1] = q
    end
  end
  if #out == 0 then return nil, path .. ": no queries" end
  return out
end

local function read_jsonl_map(path)
  local ls, err = file_lines(path)
  if not ls then return nil, err end
  local map, order = {}, {}
  for _, l in ipairs(ls) do
    if l.text:match("%S") then
      local v = json.decode(l.text)
      if type(v) ~= "table" or v._id == nil then
        return nil, ("%s:%d: expected a JSON object with _id"):format(path, l.n)
      end
      local id = tostring(v._id)
      if not map[id] then order[#order + 1] = id end
      map[id] = v
    end
  end
  return map, order
end

-- qid -> { {doc, grade}, ... } in file order
local function read_qrels(path)
  local ls, err = file_lines(path)
  if not ls then return nil, err end
  local q, order = {}, {}
  for _, l in ipairs(ls) do
    local f = fields(l.text)
    -- header "query-id corpus-id score"; TREC qrels have 4 columns (qid 0 docid grade)
    if #f == 4 then f = { f[1], f[3], f[4] } end
    if #f == 3 and tonumber(f[3]) then
      local g = tonumber(f[3])
      if not grade_ok(g) then return nil, ("%s:%d: grade must be an integer >= 0"):format(path, l.n) end
      if not q[f[1]] then
        q[f[1]] = {}
        order[#order + 1] = f[1]
      end
      table.insert(q[f[1]], { f[2], g })
    elseif #f > 0 and l.n > 1 then
      return nil, ("%s:%d: expected query-id, corpus-id, score"):format(path, l.n)
    end
  end
  return q, order
end

-- qid -> { docid, ... } by rank (TREC run file)
local function read_run(path)
  local ls, err = file_lines(path)
  if not ls then return nil, err end
  local run = {}
  for _, l in ipairs(ls) do
    local f = fields(l.text)
    if #f >= 4 then
      run[f[1]] = run[f[1]] or {}
      table.insert(run[f[1]], { id = f[3], rank = tonumber(f[4]) or math.huge, n = #run[f[1]] })
    elseif #f > 0 then
      return nil, ("%s:%d: expected qid Q0 docid rank [score tag]"):format(path, l.n)
    end
  end
  for _, list in pairs(run) do
    table.sort(list, function(a, b) if a.rank ~= b.rank then return a.rank < b.rank end return a.n < b.n end)
    for i, x in ipairs(list) do list[i] = x.id end
  end
  return run
end

function M.load_beir(dir, opts)
  opts = opts or {}
  local corpus, corpus_order = read_jsonl_map(dir .. "/corpus.jsonl")
  if not corpus then return nil, corpus_order end
  local queries, qerr = read_jsonl_map(dir .. "/queries.jsonl")
  if not queries then return nil, qerr end
  local qrels, order = read_qrels(("%s/qrels/%s.tsv"):format(dir, opts.split or "test"))
  if not qrels then return nil, order end
  local run
  if opts.candidates and opts.candidates ~= "all" then
    local rerr
    run, rerr = read_run(opts.candidates)
    if not run then return nil, rerr end
  end
  local out = {}
  for _, qid in ipairs(order) do
    local qv = queries[qid]
    if not qv then return nil, ("%s/queries.jsonl: no query %q (named in the qrels)"):format(dir, qid) end
    local cand = {}
    if opts.candidates == "all" then
      cand = corpus_order
    elseif run then
      cand = run[qid] or {}
    else
      for i, j in ipairs(qrels[qid]) do cand[i] = j[1] end
    end
    local docs, relevant = {}, {}
    for _, did in ipairs(cand) do
      local d = corpus[did]
      if not d then return nil, ("%s/corpus.jsonl: no document %q"):format(dir, did) end
      docs[#docs + 1] = { id = did, text = d.text, title = d.title ~= "" and d.title or nil }
    end
    for _, j in ipairs(qrels[qid]) do relevant[j[1]] = j[2] end
    if #docs > 0 then
      local q, err = make_query(qid, qv.text, docs, relevant, dir .. " query " .. qid)
      if not q then return nil, err end
      out[#out + 1] = q
    end
  end
  if #out == 0 then return nil, dir .. ": no queries with candidates" end
  return out
end

function M.load(path, opts)
  if is_dir(path) then return M.load_beir(path, opts) end
  return M.load_jsonl(path)
end

-- JSON Lines of a loaded set (relevance keyed by document id where there is one).
function M.to_jsonl(queries)
  local out = {}
  for _, q in ipairs(queries) do
    local rel = {}
    for k, g in pairs(q.qrels) do
      local key
      if type(k) == "number" then
        local d = q.documents[k]
        key = type(d) == "table" and d.id ~= nil and tostring(d.id) or tostring(k - 1)
      else
        key = k:sub(2)
      end
      rel[key] = g
    end
    local keys = {}
    for k in pairs(rel) do keys[#keys + 1] = k end
    table.sort(keys)
    local r = {}
    for i, k in ipairs(keys) do r[i] = json.string(k) .. ":" .. json.number(rel[k]) end
    local docs = {}
    for i, d in ipairs(q.documents) do
      if type(d) == "table" then
        docs[i] = "{" .. (d.id ~= nil and '"id":' .. json.string(tostring(d.id)) .. "," or "")
          .. (d.title and '"title":' .. json.string(d.title) .. "," or "") .. '"text":' .. json.string(d.text) .. "}"
      else
        docs[i] = json.string(d)
      end
    end
    out[#out + 1] = '{"id":' .. json.string(q.id) .. ',"query":' .. json.string(q.query)
      .. (q.lists and ',"lists":' .. json.encode(q.lists) or ',"documents":[' .. table.concat(docs, ",") .. "]")
      .. ',"relevant":{' .. table.concat(r, ",") .. "}}"
  end
  return table.concat(out, "\n") .. "\n"
end

return M
