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
    /* a pieced body (rr_body_pieced): its bytes are pieces of Lua strings and of request
     * bodies (srcs), which its environment table keeps alive; p stays NULL until a reader
     * needs them contiguous. The pieces outlive that (a transfer may be reading them). */
    rr_piece *pieces;
    size_t npieces;
    rr_body **srcs;
    size_t nsrcs;
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
    free(b->pieces);
    free(b->srcs);
    b->p = b->base = NULL;
    b->pieces = NULL;
    b->srcs = NULL;
    b->len = b->npieces = b->nsrcs = 0;
    b->released = 1;
}

/* A pieced body reads only while every request body its pieces lie in is still there. */
static int live(const rr_body *b)
{
    if (b->released) return 0;
    for (size_t i = 0; i < b->nsrcs; i++)
        if (b->srcs[i]->released) return 0;
    return 1;
}

/* The bytes of b in one block: a pieced body's are joined once (NULL: out of memory, or a
 * request body they lie in was released). */
static const char *contiguous(rr_body *b)
{
    if (b->p || !b->pieces) return b->p ? b->p : "";
    if (!live(b)) return NULL;
    char *o = malloc(b->len ? b->len : 1);
    if (!o) return NULL;
    for (size_t i = 0, w = 0; i < b->npieces; w += b->pieces[i].len, i++) memcpy(o + w, b->pieces[i].p, b->pieces[i].len);
    b->p = o;
    return o;
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
    if (!live(b)) luaL_error(L, "the request body was released (its request ended)");
    return b;
}

rr_body *rr_body_at(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TUSERDATA ? to_body(L, idx) : NULL;
}

static int body_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_body(L, 1)->len);
    return 1;
}

static int body_tostring(lua_State *L)
{
    rr_body *b = check_body(L, 1);
    const char *p = contiguous(b);
    if (!p) return luaL_error(L, "body: out of memory (%d bytes)", (int)b->len);
    lua_pushlstring(L, p, b->len);
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

rr_body *rr_body_pieced(lua_State *L, const rr_piece *pieces, size_t n, rr_body *const *srcs, size_t nsrcs, int anchor)
{
    anchor = anchor < 0 ? lua_gettop(L) + anchor + 1 : anchor;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += pieces[i].len;
    rr_body_alloc(L, 0);
    rr_body *b = lua_touserdata(L, -1);
    b->pieces = malloc((n ? n : 1) * sizeof *pieces);
    b->srcs = malloc((nsrcs ? nsrcs : 1) * sizeof *srcs);
    if (!b->pieces || !b->srcs) luaL_error(L, "body: out of memory");
    memcpy(b->pieces, pieces, n * sizeof *pieces);
    if (nsrcs) memcpy(b->srcs, srcs, nsrcs * sizeof *srcs);
    b->npieces = n;
    b->nsrcs = nsrcs;
    b->len = len;
    lua_pushvalue(L, anchor);
    lua_setfenv(L, -2);
    return b;
}

const rr_piece *rr_body_pieces(const rr_body *b, size_t *n, size_t *len)
{
    if (!b || !b->pieces || !live(b)) return NULL;
    *n = b->npieces;
    *len = b->len;
    return b->pieces;
}

int rr_body_live(const rr_body *b)
{
    return live(b);
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
    rr_body *b = rr_body_at(L, idx);
    if (!b || !live(b)) return NULL;
    *len = b->len;
    return contiguous(b);
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
