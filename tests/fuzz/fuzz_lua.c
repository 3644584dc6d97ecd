/* libFuzzer harness: feeds each input to one Lua target in tests/fuzz/targets.lua, with
 * the real rerank.core C module (YAML, BM25, top-k) linked in and instrumented. A target
 * must never raise: a Lua error is reported as a finding (abort), like a C crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "rerank.h"

#ifndef FUZZ_TARGET
#define FUZZ_TARGET "request"
#endif

static lua_State *L;
static int target_ref;

/* Lua line coverage as libFuzzer extra counters: the fuzzer sees which Lua lines an input
 * reached (the C edges alone say little about the Lua policy code). */
#define NCOUNTERS (1 << 16)
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t lua_counters[NCOUNTERS];
static uint32_t prev_loc;

static void line_hook(lua_State *S, lua_Debug *ar)
{
    if (!lua_getinfo(S, "S", ar)) return;
    uint32_t h = 2166136261u;
    for (const char *p = ar->source; p && *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    uint32_t loc = (h ^ (uint32_t)ar->currentline * 2654435761u) & (NCOUNTERS - 1);
    lua_counters[(loc ^ prev_loc) & (NCOUNTERS - 1)]++; /* edge-ish: previous line -> this line */
    prev_loc = loc >> 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    const char *root = getenv("RERANKD_HOME");
    if (!root) root = ".";
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/tests/?.lua;", root, root, root);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_rerank_core);
    lua_setfield(L, -2, "rerank.core");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "fuzz.targets");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "fuzz: cannot load tests/fuzz/targets.lua: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_getfield(L, -1, FUZZ_TARGET);
    if (!lua_isfunction(L, -1)) {
        fprintf(stderr, "fuzz: no target %s\n", FUZZ_TARGET);
        abort();
    }
    target_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
    return 0;
}

static int traceback(lua_State *S)
{
    luaL_traceback(S, S, lua_tostring(S, 1), 1);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, target_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, -3) != 0) {
        fprintf(stderr, "fuzz: target %s raised: %s\n", FUZZ_TARGET, lua_tostring(L, -1));
        abort();
    }
    lua_pop(L, 1);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
