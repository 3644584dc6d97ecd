/* Bodies as bytes outside the Lua heap (json_splice.c builds spliced upstream bodies in them
 * too): the daemon's ctx.body is a small userdata owning the request body's bytes (the
 * connection's input buffer they arrived in, handed over, or a malloc'd copy), released
 * when its request ends (core/server.c), so a
 * large body neither paces LuaJIT's collector nor waits for a collection to be freed. The
 * request-path JSON (json.c, json_splice.c) reads a body or a Lua string alike (rr_bytes).
 *   core.bytes(v [, i [, j]]) -> string   bytes i..j of a string or body, as string.sub
 *   core.body(s) -> body                  a body holding a copy of s (what the daemon's
 *                                         handler gets; for tests and embedders)
 *   core.body_release(body)               frees its bytes now; later reads raise
 *   #body, tostring(body)                 its length, its bytes as a string */
#include "rerank.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

struct rr_body {
    char *p;
    size_t len;
    char *base; /* what to free when p lies inside an adopted buffer (rr_body_adopt), else NULL */
    int released;
};

static char body_mt_key; /* the metatable, in the registry under this address */

static rr_body *to_body(lua_State *L, int idx)
{
    rr_body *b = lua_touserdata(L, idx);
    if (!b || !lua_getmetatable(L, idx)) return NULL;
    lua_pushlightuserdata(L, &body_mt_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? b : NULL;
}

static void release(rr_body *b)
{
    free(b->base ? b->base : b->p);
    b->p = b->base = NULL;
    b->len = 0;
    b->released = 1;
}

static int body_gc(lua_State *L)
{
    rr_body *b = to_body(L, 1);
    if (b) release(b);
    return 0;
}

static rr_body *check_body(lua_State *L, int idx)
{
    rr_body *b = to_body(L, idx);
    if (!b) luaL_typerror(L, idx, "request body");
    if (b->released) luaL_error(L, "the request body was released (its request ended)");
    return b;
}

static int body_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_body(L, 1)->len);
    return 1;
}

static int body_tostring(lua_State *L)
{
    rr_body *b = check_body(L, 1);
    lua_pushlstring(L, b->p ? b->p : "", b->len);
    return 1;
}

/* Pushes a body of len bytes, left for the caller to write; returns them. */
char *rr_body_alloc(lua_State *L, size_t len)
{
    rr_body *b = lua_newuserdata(L, sizeof *b);
    memset(b, 0, sizeof *b);
    lua_pushlightuserdata(L, &body_mt_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        static const luaL_Reg meta[] = {
            { "__gc", body_gc }, { "__len", body_len }, { "__tostring", body_tostring }, { NULL, NULL },
        };
        lua_createtable(L, 0, 4);
        luaL_register(L, NULL, meta);
        lua_pushliteral(L, "rerank.body");
        lua_setfield(L, -2, "__name");
        lua_pushlightuserdata(L, &body_mt_key);
        lua_pushvalue(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    lua_setmetatable(L, -2);
    if (len) {
        b->p = malloc(len);
        if (!b->p) luaL_error(L, "body: out of memory (%d bytes)", (int)len);
        b->len = len;
    }
    return b->p;
}

rr_body *rr_body_new(lua_State *L, const char *p, size_t len)
{
    char *o = rr_body_alloc(L, len);
    if (len) memcpy(o, p, len);
    return lua_touserdata(L, -1);
}

void rr_body_adopt(rr_body *b, char *base, const char *p, size_t len)
{
    release(b);
    b->base = base;
    b->p = (char *)p;
    b->len = len;
    b->released = 0;
}

void rr_body_release(rr_body *b)
{
    release(b);
}

const char *rr_bytes(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
    rr_body *b = lua_type(L, idx) == LUA_TUSERDATA ? to_body(L, idx) : NULL;
    if (!b || b->released) return NULL;
    *len = b->len;
    return b->p ? b->p : "";
}

const char *rr_check_bytes(lua_State *L, int idx, size_t *len)
{
    const char *s = rr_bytes(L, idx, len);
    if (s) return s;
    if (lua_type(L, idx) == LUA_TUSERDATA && to_body(L, idx)) check_body(L, idx); /* raises: released */
    luaL_typerror(L, idx, "string or request body");
    return NULL;
}

/* core.bytes(v [, i [, j]]): string.sub over a string or a body */
int rr_l_bytes(lua_State *L)
{
    size_t len;
    const char *s = rr_check_bytes(L, 1, &len);
    lua_Integer i = luaL_optinteger(L, 2, 1), j = luaL_optinteger(L, 3, -1);
    lua_Integer n = (lua_Integer)len;
    if (i < 0) i = n + i + 1 < 0 ? 0 : n + i + 1;
    if (j < 0) j = n + j + 1;
    if (i < 1) i = 1;
    if (j > n) j = n;
    if (i > j) lua_pushliteral(L, "");
    else lua_pushlstring(L, s + i - 1, (size_t)(j - i + 1));
    return 1;
}

/* core.body(s) -> body */
int rr_l_body(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    rr_body_new(L, s, len);
    return 1;
}

/* core.body_release(body) */
int rr_l_body_release(lua_State *L)
{
    rr_body *b = to_body(L, 1);
    if (!b) return luaL_typerror(L, 1, "request body");
    release(b);
    return 0;
}
