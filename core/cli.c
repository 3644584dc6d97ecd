/* rerankd subcommands written in Lua (`rerankd eval ...`, `rerankd check-provider ...`): a Lua
 * state (luahost.c's) whose rerank.core has the blocking libcurl transport (as in
 * rerank/core.so: no event loop here), running require(module).main(args) and exiting with the
 * number it returns; a raise exits 2, with the traceback on stderr. */
#include "daemon.h"
#include "rerank.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

/* rerank.core with the blocking transport: this process has no workers to block */
static int open_core_blocking(lua_State *L)
{
    luaopen_rerank_core(L);
    rr_fetch_blocking_register(L);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "daemon");
    return 1;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

int rr_cli_run(const char *root, const char *module, int argc, char **argv)
{
    char err[256];
    lua_State *L = rr_lua_new(root, err, sizeof err);
    if (!L) {
        fprintf(stderr, "rerankd: %s\n", err);
        return 2;
    }
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open_core_blocking);
    lua_setfield(L, -2, "rerank.core");
    lua_pop(L, 2);
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    int rc = 2;
    if (lua_pcall(L, 1, 1, 1) == 0) {
        lua_getfield(L, -1, "main");
        lua_remove(L, -2);
        lua_createtable(L, argc, 0);
        for (int i = 0; i < argc; i++) {
            lua_pushstring(L, argv[i]);
            lua_rawseti(L, -2, i + 1);
        }
        if (lua_pcall(L, 1, 1, 1) == 0) {
            rc = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
            rr_lua_free(L);
            return rc;
        }
    }
    fprintf(stderr, "rerankd: %s\n", lua_isstring(L, -1) ? lua_tostring(L, -1) : "Lua error");
    rr_lua_free(L);
    return rc;
}
