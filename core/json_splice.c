/* Splicing JSON: bodies assembled from Lua strings and spans of a request body (what
 * json.c recorded: each document's JSON string), written once into a reused buffer and
 * pushed as one Lua string. No decode, no re-escape of document text. */
#include "rerank.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* Bodies are assembled in one reusable buffer per thread (worker) and pushed as one Lua
 * string: no body-sized allocation per request. A use that grew it past SCRATCH_KEEP frees
 * it afterwards, so one huge request does not pin memory. */
#define SCRATCH_KEEP (4u << 20)
static _Thread_local char *scratch_buf;
static _Thread_local size_t scratch_cap;

static char *scratch(lua_State *L, size_t n)
{
    if (n > scratch_cap) {
        size_t cap = scratch_cap ? scratch_cap : 64 * 1024;
        while (cap < n) cap *= 2;
        char *p = realloc(scratch_buf, cap);
        if (!p) luaL_error(L, "json: out of memory (%d bytes)", (int)n);
        scratch_buf = p;
        scratch_cap = cap;
    }
    return scratch_buf;
}

static void push_scratch(lua_State *L, size_t n)
{
    lua_pushlstring(L, scratch_buf, n);
    if (scratch_cap > SCRATCH_KEEP) {
        free(scratch_buf);
        scratch_buf = NULL;
        scratch_cap = 0;
    }
}

/* Size of "[" span "," span ... "]" for pairs i..j of the spans table at idx; raises when
 * a span is outside s. */
static size_t join_size(lua_State *L, size_t len, int idx, lua_Integer i, lua_Integer j)
{
    size_t total = 2;
    for (lua_Integer k = i; k <= j; k++) {
        lua_rawgeti(L, idx, (int)(2 * k - 1));
        lua_rawgeti(L, idx, (int)(2 * k));
        lua_Integer a = lua_tointeger(L, -2), b = lua_tointeger(L, -1);
        lua_pop(L, 2);
        if (a < 1 || b < a || (size_t)b > len) return (size_t)luaL_error(L, "json: span %d is out of range", (int)k);
        total += (size_t)(b - a + 2);
    }
    return total;
}

static size_t join_write(lua_State *L, char *o, const char *s, int idx, lua_Integer i, lua_Integer j)
{
    char *start = o;
    *o++ = '[';
    for (lua_Integer k = i; k <= j; k++) {
        lua_rawgeti(L, idx, (int)(2 * k - 1));
        lua_rawgeti(L, idx, (int)(2 * k));
        size_t a = (size_t)lua_tointeger(L, -2), b = (size_t)lua_tointeger(L, -1);
        lua_pop(L, 2);
        if (k > i) *o++ = ',';
        memcpy(o, s + a - 1, b - a + 1);
        o += b - a + 1;
    }
    *o++ = ']';
    return (size_t)(o - start);
}

/* core.json_join(s, spans [, i, j]) -> "[" .. s[spans[2i-1]..spans[2i]] joined by "," .. "]"
 * for the pairs i..j (default all): splices already-validated JSON strings of a request
 * body into another body without decoding them. Raises when a pair is out of range. */
int rr_json_join(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer npairs = (lua_Integer)(lua_objlen(L, 2) / 2);
    lua_Integer i = luaL_optinteger(L, 3, 1), j = luaL_optinteger(L, 4, npairs);
    luaL_argcheck(L, i >= 1 && j <= npairs, 3, "pair range out of bounds");
    char *o = scratch(L, join_size(L, len, 2, i, j));
    push_scratch(L, join_write(L, o, s, 2, i, j));
    return 1;
}

/* core.json_concat(parts) -> the concatenation of parts, where a part is a string or a
 * splice { src, spans } written as json_join(src, spans) would: one body, one copy. */
int rr_json_concat(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)lua_objlen(L, 1);
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *o = pass ? scratch(L, total) : NULL;
        size_t w = 0;
        for (int k = 1; k <= n; k++) {
            lua_rawgeti(L, 1, k);
            if (lua_type(L, -1) == LUA_TSTRING) {
                size_t l;
                const char *p = lua_tolstring(L, -1, &l);
                if (pass) memcpy(o + w, p, l);
                w += l;
            } else if (lua_istable(L, -1)) {
                int t = lua_gettop(L);
                lua_rawgeti(L, t, 1);
                lua_rawgeti(L, t, 2);
                size_t sl;
                const char *src = lua_tolstring(L, -2, &sl);
                if (!src || !lua_istable(L, -1)) return luaL_error(L, "json_concat: part %d is not { src, spans }", k);
                lua_Integer np = (lua_Integer)(lua_objlen(L, -1) / 2);
                w += pass ? join_write(L, o + w, src, t + 2, 1, np) : join_size(L, sl, t + 2, 1, np);
                lua_pop(L, 2);
            } else {
                return luaL_error(L, "json_concat: part %d is a %s", k, luaL_typename(L, -1));
            }
            lua_pop(L, 1);
        }
        total = w;
    }
    push_scratch(L, total);
    return 1;
}
