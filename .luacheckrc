std = "luajit"
max_line_length = 130
files["tests"] = { std = "+busted" }
files["bench"] = { std = "+luajit" }
-- nginx's Lua module provides the ngx global (read-only use)
files["lua/rerank/transport/ngx.lua"] = { read_globals = { "ngx" } }
files["lua/rerank/nginx.lua"] = { globals = { "ngx" } } -- sets ngx.status, ngx.header
files["lua/rerank/engine/cache_ngx.lua"] = { read_globals = { "ngx" } }
files["examples/nginx"] = { read_globals = { "ngx" } }
exclude_files = { "tests/tmp/**" }
