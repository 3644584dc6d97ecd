-- Worst-case /v1/fuse bodies for bench/run.sh (issue 14): the most work one request may ask
-- for under the default limits. usage: luajit bench/gen_fuse.lua DIR
--   DIR/fuse_worst.json  server.max_fuse_lists (1000) lists x 100 items = server.max_fuse_items
--                        (100,000), every id distinct (100,000 documents in the answer),
--                        random scores: about 3.6 MB, under the default max_body (8m)
--   DIR/fuse_40k.json    40,000 one-item lists (the body that took 22.5 s before the fix):
--                        refused with 422 now
local dir = assert(arg[1], "usage: luajit bench/gen_fuse.lua DIR")
math.randomseed(14)

local parts = {}
for i = 1, 1000 do
  local items = {}
  for j = 1, 100 do
    items[j] = ('{"id":%d,"score":%.9f}'):format((i - 1) * 100 + j, math.random())
  end
  parts[i] = "[" .. table.concat(items, ",") .. "]"
end
local f = assert(io.open(dir .. "/fuse_worst.json", "w"))
f:write('{"lists":[', table.concat(parts, ","), "]}")
f:close()

parts = {}
for i = 1, 40000 do parts[i] = ('[{"id":%d,"score":0.5}]'):format(i) end
f = assert(io.open(dir .. "/fuse_40k.json", "w"))
f:write('{"method":"rrf","lists":[', table.concat(parts, ","), "]}")
f:close()
