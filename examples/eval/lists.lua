-- Builds the hybrid evaluation file from the BEIR set: for every query, two ranked lists
-- over the whole corpus, BM25 over the documents' titles ("title") and BM25 over their
-- texts ("text"), as JSON Lines for `rerankd eval --data` (a pipeline fuses the lists;
-- a model reranks their union).
--   luajit examples/eval/lists.lua examples/eval/beir > hybrid.jsonl
local rerank = require "rerank"
local data = require "rerank.eval.data"
local json = require "rerank.json"

local dir = assert(arg[1], "usage: luajit lists.lua BEIR_DIR > out.jsonl")
local queries = assert(data.load(dir, { candidates = "all" }))
local r = assert(rerank.new({ models = { { name = "bm25", provider = "bm25" } } }))

local function ranked(q, field)
  local texts = {}
  for i, d in ipairs(q.documents) do texts[i] = d[field] or "" end
  local res = assert(r:rerank({ model = "bm25", query = q.query, documents = texts }))
  return res.results
end

for _, q in ipairs(queries) do
  local lists = {}
  for li, field in ipairs({ "title", "text" }) do
    local items = {}
    for i, x in ipairs(ranked(q, field)) do
      local d = q.documents[x.index + 1]
      items[i] = ('{"id":%s,"score":%s%s}'):format(json.string(d.id), json.number(x.relevance_score),
        li == 1 and (',"title":%s,"text":%s'):format(json.string(d.title or ""), json.string(d.text)) or "")
    end
    lists[li] = ('{"name":"%s","items":[%s]}'):format(field, table.concat(items, ","))
  end
  local rel, keys = {}, {}
  for k in pairs(q.qrels) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local id = type(k) == "number" and q.documents[k].id or k:sub(2)
    rel[#rel + 1] = json.string(id) .. ":" .. q.qrels[k]
  end
  io.write(('{"id":%s,"query":%s,"lists":[%s],"relevant":{%s}}\n'):format(json.string(q.id), json.string(q.query),
    table.concat(lists, ","), table.concat(rel, ",")))
end
