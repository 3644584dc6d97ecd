-- rerankd as a Lua library: `require "rerank"` in LuaJIT and inside nginx's Lua module.
--   luarocks make rerank-scm-1.rockspec                    (from a checkout)
--   luarocks make --deps-mode=none rerank-scm-1.rockspec   (lua-cjson from apt: Debian's
--                                                           lua-cjson is not a rock)
-- Builds rerank/core.so from core/ with the Makefile (`make lib`), then `make install-lib`
-- puts the Lua modules in $(LUADIR), core.so in $(LIBDIR) and the providers and templates
-- in the rock's own share/rerankd, which the installed rerank/site.lua points at.
rockspec_format = "3.0"
package = "rerank"
version = "scm-1"

source = {
  url = "git+https://github.com/rerankd/rerankd.git",
  branch = "main",
}

description = {
  summary = "Rerank documents with BM25 or hosted rerankers, from LuaJIT or nginx",
  detailed = [[
The library behind the rerankd daemon: the same providers (Cohere, Jina, Voyage, TEI,
Bedrock, LLM rerankers...), fusion and YAML config. Upstream calls use libcurl in plain
LuaJIT and cosockets inside nginx's Lua module (OpenResty, Kong, APISIX).
]],
  license = "MIT",
  labels = { "rerank", "search", "nginx", "openresty", "luajit" },
}

-- LuaJIT 2.1 (it reports itself as Lua 5.1); core.so resolves lua_* from the host process.
dependencies = {
  "lua == 5.1",
  "lua-cjson >= 2.1",
}

external_dependencies = {
  CURL = { library = "curl" }, -- Debian keeps curl/curl.h in a multiarch include dir
  YAML = { header = "yaml.h", library = "yaml" },
  STEMMER = { header = "libstemmer.h", library = "stemmer" }, -- Debian libstemmer-dev
}

build = {
  type = "make",
  build_target = "lib",
  build_variables = {
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_target = "install-lib",
  install_variables = {
    PREFIX = "$(PREFIX)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
    DATADIR = "$(PREFIX)/share/rerankd",
  },
  copy_directories = { "examples" },
}
