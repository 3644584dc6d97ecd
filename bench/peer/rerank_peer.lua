-- The "nginx + Lua peer" of bench/proxy.sh: what a naive OpenResty rerank proxy does, for
-- comparison with rerankd on the same mock upstream (content_by_lua_file; /upstream/ is an
-- internal location that proxy_passes to the mock over a keepalive upstream).
-- luacheck: globals ngx
local cjson = require "cjson"
ngx.req.read_body()
local req = cjson.decode(ngx.req.get_body_data())
local up = cjson.encode({ model = "rerank-v3.5", query = req.query, documents = req.documents, top_n = req.top_n })
local res = ngx.location.capture("/upstream/v2/rerank", { method = ngx.HTTP_POST, body = up })
if res.status ~= 200 then return ngx.exit(502) end
local results = cjson.decode(res.body).results
table.sort(results, function(a, b)
  if a.relevance_score ~= b.relevance_score then return a.relevance_score > b.relevance_score end
  return a.index < b.index
end)
local out = {}
for i = 1, math.min(req.top_n or #results, #results) do
  out[i] = { index = results[i].index, relevance_score = results[i].relevance_score }
end
ngx.header.content_type = "application/json"
ngx.say(cjson.encode({ id = ngx.var.request_id, results = out, meta = { api_version = { version = "2" } } }))
