/* Splicing JSON: bodies assembled from Lua strings and spans of a request body (what
 * json.c recorded: each document's JSON string), written once into a reused buffer and
 * pushed as one Lua string. No decode, no re-escape of document text. */
#include "rerank.h"
#include "buf.h"

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
    if (rr_buf_reserve(&scratch_buf, &scratch_cap, n, 64 * 1024, (size_t)-1) != 0)
        luaL_error(L, "json: out of memory (%d bytes)", (int)n);
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

/* The pieces of one body: pointers into Lua strings that the parts keep alive. */
typedef struct { const char *p; size_t len; } piece;
static _Thread_local piece *pieces;
static _Thread_local size_t npieces, pieces_cap;

static void add_piece(lua_State *L, const char *p, size_t len)
{
    if (npieces == pieces_cap) {
        size_t cap = pieces_cap ? pieces_cap * 2 : 256;
        piece *np = realloc(pieces, cap * sizeof *np);
        if (!np) luaL_error(L, "json: out of memory");
        pieces = np;
        pieces_cap = cap;
    }
    pieces[npieces].p = p;
    pieces[npieces++].len = len;
}

enum { K_JS = 2, K_JE, K_SRC, K_RAW, K_TEXT }; /* stack slots of the field names */

static void field(lua_State *L, int t, int key)
{
    lua_pushvalue(L, key);
    lua_rawget(L, t);
}

/* The JSON string bytes of document d (a table at idx) when its text is still the string
 * the client sent, the value at s_idx (compared by identity: strings are interned). */
static const char *doc_span(lua_State *L, int idx, int s_idx, size_t *len)
{
    const char *out = NULL;
    field(L, idx, K_JS);
    field(L, idx, K_JE);
    field(L, idx, K_SRC);
    field(L, idx, K_RAW);
    if (lua_istable(L, -1)) field(L, lua_gettop(L), K_TEXT);
    else lua_pushvalue(L, -1);
    size_t sl;
    const char *src = lua_type(L, -3) == LUA_TSTRING ? lua_tolstring(L, -3, &sl) : NULL;
    lua_Integer a = lua_tointeger(L, -5), b = lua_tointeger(L, -4);
    if (src && a >= 1 && b > a && (size_t)b <= sl && lua_type(L, s_idx) == LUA_TSTRING && lua_rawequal(L, -1, s_idx)) {
        out = src + a - 1;
        *len = (size_t)(b - a + 1);
    }
    lua_pop(L, 5);
    return out; /* stays valid: src is referenced by the document */
}

/* Adds "[" json(list[1]) "," ... "]" for the splice { list, docs } at idx; 0 when some
 * list[i] is not its document's original text. */
static int splice_list(lua_State *L, int idx)
{
    lua_rawgeti(L, idx, 1);
    lua_rawgeti(L, idx, 2);
    int list = lua_gettop(L) - 1, docs = list + 1, ok = 1;
    size_t n = lua_istable(L, list) ? lua_objlen(L, list) : 0;
    if (!lua_istable(L, docs) || lua_objlen(L, docs) != n) ok = 0;
    if (ok) add_piece(L, "[", 1);
    for (size_t i = 1; i <= n && ok; i++) {
        lua_rawgeti(L, list, (int)i);
        lua_rawgeti(L, docs, (int)i);
        size_t len = 0;
        const char *p = lua_istable(L, -1) ? doc_span(L, lua_gettop(L), lua_gettop(L) - 1, &len) : NULL;
        lua_pop(L, 2);
        if (!p) ok = 0;
        else {
            if (i > 1) add_piece(L, ",", 1);
            add_piece(L, p, len);
        }
    }
    if (ok) add_piece(L, "]", 1);
    lua_pop(L, 2);
    return ok;
}

/* core.json_concat(parts) -> the concatenation of parts | nil when a splice is stale.
 * A part is a string, or a splice { list, docs }: list (strings) written as a JSON array by
 * copying each document's JSON string from its request body (d.src, d.js, d.je), provided
 * list[i] is still that document's text. One body, written once into the reused buffer. */
int rr_json_concat(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_pushliteral(L, "js");
    lua_pushliteral(L, "je");
    lua_pushliteral(L, "src");
    lua_pushliteral(L, "raw");
    lua_pushliteral(L, "text");
    int n = (int)lua_objlen(L, 1);
    npieces = 0;
    for (int k = 1; k <= n; k++) {
        lua_rawgeti(L, 1, k);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t l;
            const char *p = lua_tolstring(L, -1, &l);
            add_piece(L, p, l); /* alive: the parts table holds it */
        } else if (lua_istable(L, -1)) {
            if (!splice_list(L, lua_gettop(L))) {
                lua_pushnil(L);
                return 1;
            }
        } else {
            return luaL_error(L, "json_concat: part %d is a %s", k, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    size_t total = 0;
    for (size_t i = 0; i < npieces; i++) total += pieces[i].len;
    char *o = scratch(L, total);
    for (size_t i = 0, w = 0; i < npieces; w += pieces[i].len, i++) memcpy(o + w, pieces[i].p, pieces[i].len);
    push_scratch(L, total);
    return 1;
}
