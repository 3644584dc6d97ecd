-- Request bodies for the HTTP benchmark, from the corpus bench_kernels dumps (the
-- same documents and query as the in-process and FTS5 rows).
-- usage: luajit bench/gen.lua DIR [SETS]   reads DIR/docs.txt, DIR/query.txt and
-- writes DIR/body_100_<s>.json and DIR/body_1000_<s>.json for s = 1..SETS (10):
-- disjoint document sets, so the load does not replay one body; DIR/body_en_*.json are the
-- same bodies for the model "bm25-en" (English stemming and stopwords).
local cjson = require "cjson"

local dir = assert(arg[1], "usage: luajit bench/gen.lua DIR [SETS]")
local sets = tonumber(arg[2] or 10)
local docs = {}
for line in io.lines(dir .. "/docs.txt") do docs[#docs + 1] = line end
local query = io.lines(dir .. "/query.txt")()
assert(query and #docs >= 1000 * sets, "bench/gen.lua: need 1000*SETS documents and a query")

for _, n in ipairs({ 100, 1000 }) do
  for s = 1, sets do
    local sub = {}
    for i = 1, n do sub[i] = docs[(s - 1) * n + i] end
    for prefix, model in pairs({ body = "bm25", body_en = "bm25-en" }) do
      local body = cjson.encode({ model = model, query = query, documents = sub, top_n = 10 })
      local f = assert(io.open(("%s/%s_%d_%d.json"):format(dir, prefix, n, s), "w"))
      f:write(body)
      f:close()
    end
  end
end
