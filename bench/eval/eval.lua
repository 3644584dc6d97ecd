-- Ranking quality of the embedded bm25 model: nDCG@10 and MAP of each option on a test
-- collection in the JSONL form of bench/eval/med100.jsonl (a header line, then
-- {"doc","title","text"} lines, then {"query","text","relevant":{doc: grade}} lines).
-- Every query reranks all the collection's documents, as one request.
--
--   luajit bench/eval/eval.lua [FILE]                      every option below, through the library
--   luajit bench/eval/eval.lua FILE --config config.yaml --model bm25    one configured model
--   luajit bench/eval/eval.lua FILE --url http://127.0.0.1:8080 --model bm25   a running daemon (curl)
--   --strings: send each document as one string (title + text) instead of {title, text}
--   luajit bench/eval/eval.lua FILE --write-jsonl OUT      the set in `rerankd eval`'s input form
--       (one query a line, with all the documents), then: rerankd eval -c CONFIG --data OUT
--
-- nDCG@10 with linear gains (as trec_eval's ndcg_cut_10), MAP over the full ranking
-- (documents with grade > 0 are relevant). Run from the repository root (make build first).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "./?.so;" .. package.cpath
local cjson = require "cjson"

local file, config, model, url, strings, write = "bench/eval/med100.jsonl", nil, nil, nil, false, nil
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--config" then config = arg[i + 1]; i = i + 1
  elseif a == "--model" then model = arg[i + 1]; i = i + 1
  elseif a == "--url" then url = arg[i + 1]; i = i + 1
  elseif a == "--strings" then strings = true
  elseif a == "--write-jsonl" then write = arg[i + 1]; i = i + 1
  else file = a end
  i = i + 1
end

local docs, queries = {}, {}
for line in io.lines(file) do
  local v = cjson.decode(line)
  if v.doc then docs[#docs + 1] = v
  elseif v.query then queries[#queries + 1] = v end
end

local function documents(as_strings)
  local out = {}
  for k, d in ipairs(docs) do
    if as_strings then
      out[k] = (d.title and d.title ~= "" and (d.title .. "\n") or "") .. d.text
    else
      out[k] = { id = d.doc, title = d.title, text = d.text }
    end
  end
  return out
end

local function log2(x) return math.log(x) / math.log(2) end

-- metrics of one ranking (list of 0-based indices into docs)
local function measure(order, rel)
  local dcg, ideal, grades = 0, 0, {}
  for _, g in pairs(rel) do if g > 0 then grades[#grades + 1] = g end end
  table.sort(grades, function(a, b) return a > b end)
  for r = 1, math.min(10, #grades) do ideal = ideal + grades[r] / log2(r + 1) end
  local hits, ap = 0, 0
  for r, idx in ipairs(order) do
    local g = rel[docs[idx + 1].doc] or 0
    if r <= 10 then dcg = dcg + g / log2(r + 1) end
    if g > 0 then hits = hits + 1; ap = ap + hits / r end
  end
  return ideal > 0 and dcg / ideal or 0, #grades > 0 and ap / #grades or 0
end

local function run(rerank, as_strings)
  local D = documents(as_strings)
  local nd, map = 0, 0
  for _, q in ipairs(queries) do
    local order = rerank(q.text, D)
    local n, ap = measure(order, q.relevant)
    nd, map = nd + n, map + ap
  end
  return nd / #queries, map / #queries
end

local function library(cfg, name)
  local rerank = require "rerank"
  local r = assert(rerank.new(cfg))
  return function(query, D)
    local res = assert(r:rerank({ model = name, query = query, documents = D }))
    local order = {}
    for k, it in ipairs(res.results) do order[k] = it.index end
    return order
  end
end

local function http(base, name)
  return function(query, D)
    local body = cjson.encode({ model = name, query = query, documents = D })
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    f:write(body)
    f:close()
    local p = assert(io.popen(("curl -s -H 'Content-Type: application/json' --data-binary @%s %s/v1/rerank")
      :format(tmp, base)))
    local out = p:read("*a")
    p:close()
    os.remove(tmp)
    local res = cjson.decode(out)
    local order = {}
    for k, it in ipairs(res.results) do order[k] = it.index end
    return order
  end
end

local title = ("%s: %d documents, %d queries"):format(file, #docs, #queries)
if write then
  local f = assert(io.open(write, "w"))
  local D = documents(strings)
  for _, q in ipairs(queries) do
    f:write(cjson.encode({ id = q.query, query = q.text, documents = D, relevant = q.relevant }), "\n")
  end
  f:close()
  print(("%s -> %s"):format(title, write))
  return
end
if url or config then
  local fn = url and http(url, model or "bm25") or library(config, model or "bm25")
  local nd, map = run(fn, strings)
  print(("%s\n%s %s: nDCG@10 %.3f  MAP %.3f"):format(title, url or config, model or "bm25", nd, map))
  return
end

-- every option, one model each (library, no daemon)
local FB = { docs = 10, terms = 20, weight = 0.5 }
local function fb(d, t, w) return { docs = d, terms = t, weight = w } end
local variants = {
  { "language none (exact words, as before), one string per document", { language = "none" }, true },
  { "english stemming, no stopwords, one string", { language = "english", stopwords = false }, true },
  { "english + stopwords, one string", { language = "english" }, true },
  { "english + stopwords, {title, text}, title weight 1", { language = "english", fields = { title = 1 } } },
  { "english + stopwords, {title, text}, title weight 2 (default)", { language = "english" } },
  { "english + stopwords, {title, text}, title weight 3", { language = "english", fields = { title = 3 } } },
  { "language none + stopwords, {title, text}", { language = "none", stopwords = true } },
  { "default + feedback {docs 10, terms 20, weight 0.5}", { language = "english", feedback = FB } },
  { "default + feedback {docs 5, terms 20, weight 0.5}", { language = "english", feedback = fb(5, 20, 0.5) } },
  { "default + feedback {docs 10, terms 10, weight 0.5}", { language = "english", feedback = fb(10, 10, 0.5) } },
  { "default + feedback {docs 10, terms 30, weight 0.3}", { language = "english", feedback = fb(10, 30, 0.3) } },
  { "default + feedback {docs 10, terms 20, weight 1}", { language = "english", feedback = fb(10, 20, 1) } },
  { "default + feedback {docs 20, terms 40, weight 0.5}", { language = "english", feedback = fb(20, 40, 0.5) } },
  { "one string + feedback {docs 10, terms 20, weight 0.5}", { language = "english", feedback = FB }, true },
  { "language none + stopwords + title + feedback", { language = "none", stopwords = true, feedback = FB } },
  { "default, k1 0.9 b 0.4", { language = "english", k1 = 0.9, b = 0.4 } },
  { "default, k1 1.5 b 0.75", { language = "english", k1 = 1.5, b = 0.75 } },
}
print(title)
print("| configuration | nDCG@10 | MAP |")
print("|---|---|---|")
for _, v in ipairs(variants) do
  local m = { name = "bm25", provider = "bm25" }
  for k, x in pairs(v[2]) do m[k] = x end
  local nd, map = run(library({ models = { m } }, "bm25"), v[3])
  print(("| %s | %.3f | %.3f |"):format(v[1], nd, map))
end
