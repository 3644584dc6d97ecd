-- Request bodies for the HTTP benchmark, from the corpus bench_kernels dumps (the
-- same documents and query the in-process and FTS5 numbers use).
-- usage: luajit bench/gen.lua DIR   reads DIR/docs.txt, DIR/query.txt
--                                   writes DIR/body_100.json, DIR/body_1000.json
local cjson = require "cjson"

local dir = assert(arg[1], "usage: luajit bench/gen.lua DIR")
local docs = {}
for line in io.lines(dir .. "/docs.txt") do docs[#docs + 1] = line end
local query = io.lines(dir .. "/query.txt")()
assert(#docs >= 1000 and query, "bench/gen.lua: need 1000 documents and a query")

for _, n in ipairs({ 100, 1000 }) do
  local sub = {}
  for i = 1, n do sub[i] = docs[i] end
  local body = cjson.encode({ model = "bm25", query = query, documents = sub, top_n = 10 })
  local f = assert(io.open(("%s/body_%d.json"):format(dir, n), "w"))
  f:write(body)
  f:close()
end
