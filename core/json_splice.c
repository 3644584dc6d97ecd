/* Splicing JSON: bodies assembled from Lua strings and spans of a request body (what
 * json.c recorded: each document's JSON string), written once into a reused buffer and
 * pushed as one Lua string. No decode, no re-escape of document text. */
#include "rerank.h"
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* Bodies are assembled in one reusable buffer per thread (worker) and pushed as one Lua
 * string: no body-sized allocation per request. A use that grew it past RR_SCRATCH_KEEP frees
 * it afterwards, so one huge request does not pin memory. */
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
    rr_buf_trim(&scratch_buf, &scratch_cap, RR_SCRATCH_KEEP);
}

/* The pieces of one body: pointers into Lua strings that the parts keep alive. */
typedef rr_piece piece;
/* Upstream bodies above this go out as pieces: libcurl copies a body through its upload
 * buffer anyway, and sends one up to 64 KB together with the headers from a copy of its own */
#define PIECED_MIN (64 * 1024)
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

/* The bytes of the last src seen since rr_doc_keys: a request's documents share their body,
 * so it is resolved once per call (rr_bytes checks a userdata's metatable through the
 * registry). Valid within the C call that pushed the keys: its documents reference every
 * src, and no Lua code that could release one runs meanwhile. */
static _Thread_local struct { const void *obj; const char *p; size_t len; } memo;

/* A pieced body (json_concat's as_body, large): the request bodies its pieces lie in, and
 * the stack index of the table that keeps every src alive with it (0: not collecting) */
static _Thread_local rr_body **srcs;
static _Thread_local size_t nsrcs, srcs_cap;
static _Thread_local int anchor_idx;

static void keep_src(lua_State *L, int idx)
{
    if (!anchor_idx) return;
    lua_pushvalue(L, idx);
    lua_rawseti(L, anchor_idx, (int)lua_objlen(L, anchor_idx) + 1);
    rr_body *b = rr_body_at(L, idx);
    if (!b) return; /* a Lua string: the anchor keeps it */
    for (size_t i = 0; i < nsrcs; i++)
        if (srcs[i] == b) return;
    if (nsrcs == srcs_cap) {
        size_t cap = srcs_cap ? srcs_cap * 2 : 4;
        rr_body **ns = realloc(srcs, cap * sizeof *ns);
        if (!ns) luaL_error(L, "json: out of memory");
        srcs = ns;
        srcs_cap = cap;
    }
    srcs[nsrcs++] = b;
}

int rr_doc_keys(lua_State *L)
{
    memo.obj = NULL;
    anchor_idx = 0; /* only json_concat collects, and only after this */
    nsrcs = 0;
    int base = lua_gettop(L) + 1;
    lua_pushliteral(L, "text");
    lua_pushliteral(L, "js");
    lua_pushliteral(L, "je");
    lua_pushliteral(L, "src");
    lua_pushliteral(L, "raw");
    return base;
}
enum { K_TEXT, K_JS, K_JE, K_SRC, K_RAW }; /* offsets from rr_doc_keys' base */

static void rawfield(lua_State *L, int idx, int keys, int k)
{
    lua_pushvalue(L, keys + k);
    lua_rawget(L, idx);
}

/* The span of document d (the table at idx) in its request body: src[js..je], the JSON
 * string quotes included (d.src, d.js, d.je; a lazy document keeps them in its slots 1..3);
 * NULL when it has none. Stays valid: d references src. */
static const char *span_of(lua_State *L, int idx, int keys, size_t *len)
{
    const char *out = NULL;
    lua_rawgeti(L, idx, 2);
    if (lua_type(L, -1) == LUA_TNUMBER) { /* a lazy document (docs.lazy): { src, js, je, index } */
        lua_rawgeti(L, idx, 3);
        lua_rawgeti(L, idx, 1);
    } else {
        lua_pop(L, 1);
        rawfield(L, idx, keys, K_JS);
        rawfield(L, idx, keys, K_JE);
        rawfield(L, idx, keys, K_SRC);
    }
    size_t sl = 0;
    const void *obj = lua_topointer(L, -1);
    const char *src;
    if (obj && obj == memo.obj) {
        src = memo.p;
        sl = memo.len;
    } else {
        src = rr_bytes(L, -1, &sl); /* the body: a string or the daemon's body userdata */
        if (src) {
            memo.obj = obj;
            memo.p = src;
            memo.len = sl;
            keep_src(L, lua_gettop(L));
        }
    }
    lua_Integer a = lua_tointeger(L, -3), b = lua_tointeger(L, -2);
    if (src && a >= 1 && b > a && (size_t)b <= sl && src[a - 1] == '"' && src[b - 1] == '"') {
        out = src + a - 1;
        *len = (size_t)(b - a + 1);
    }
    lua_pop(L, 3);
    return out;
}

/* The JSON string bytes of document d (a table at idx) when list entry s_idx stands for the
 * text the client sent: d itself (a lazy text, lua/rerank/engine/documents.lua), or the
 * string that is still d's original text (compared by identity: strings are interned). */
static const char *doc_span(lua_State *L, int idx, int s_idx, int keys, size_t *len)
{
    if (lua_rawequal(L, idx, s_idx)) return span_of(L, idx, keys, len);
    rawfield(L, idx, keys, K_RAW);
    if (lua_istable(L, -1)) {
        rawfield(L, lua_gettop(L), keys, K_TEXT);
        lua_remove(L, -2);
    }
    int same = lua_type(L, s_idx) == LUA_TSTRING && lua_rawequal(L, -1, s_idx);
    lua_pop(L, 1);
    return same ? span_of(L, idx, keys, len) : NULL;
}

const char *rr_doc_text(lua_State *L, int idx, int keys, size_t *len)
{
    rawfield(L, idx, keys, K_TEXT);
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *t = lua_tolstring(L, -1, len);
        lua_pop(L, 1); /* d references it */
        return t;
    }
    lua_pop(L, 1);
    const char *p = span_of(L, idx, keys, len);
    if (p && !memchr(p + 1, '\\', *len - 2)) { /* the bytes are the text (no escapes) */
        *len -= 2;
        return p + 1;
    }
    lua_getfield(L, idx, "text"); /* anything else: its text as a lazy document makes it */
    const char *t = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
    lua_pop(L, 1); /* d now references it */
    return t;
}

/* Adds "[" json(list[1]) "," ... "]" for the splice { list, docs } at idx; 0 when some
 * list[i] is not its document's original text. */
static int splice_list(lua_State *L, int idx, int keys)
{
    lua_rawgeti(L, idx, 1);
    lua_rawgeti(L, idx, 2);
    int list = lua_gettop(L) - 1, docs = list + 1, ok = 1;
    size_t n = lua_istable(L, list) ? lua_objlen(L, list) : 0;
    if (!lua_istable(L, docs) || lua_objlen(L, docs) != n) ok = 0;
    if (ok) add_piece(L, "[", 1);
    int same = lua_rawequal(L, list, docs); /* the documents stand for their own texts */
    for (size_t i = 1; i <= n && ok; i++) {
        size_t len = 0;
        const char *p;
        if (same) {
            lua_rawgeti(L, docs, (int)i);
            p = lua_istable(L, -1) ? span_of(L, lua_gettop(L), keys, &len) : NULL;
            lua_pop(L, 1);
        } else {
            lua_rawgeti(L, list, (int)i);
            lua_rawgeti(L, docs, (int)i);
            p = lua_istable(L, -1) ? doc_span(L, lua_gettop(L), lua_gettop(L) - 1, keys, &len) : NULL;
            lua_pop(L, 2);
        }
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

/* core.json_concat(parts [, as_body]) -> the concatenation of parts | nil when a splice is
 * stale. A part is a string, or a splice { list, docs }: list (strings, or documents
 * standing for their own lazy text) written as a JSON array by copying each document's JSON
 * string from its request body (d.src, d.js, d.je), provided list[i] is still that
 * document's text. One body, written once: into the reused buffer and pushed as a string,
 * or with as_body into a body (body.c), outside the Lua heap (an upstream request body:
 * a string that size would pace the collector and be interned, for one send). */
int rr_json_concat(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int as_body = lua_toboolean(L, 2);
    lua_settop(L, 1);
    /* a body keeps what its pieces lie in: the parts (their strings, the documents) and each src */
    if (as_body) {
        lua_createtable(L, 2, 0);
        lua_pushvalue(L, 1);
        lua_rawseti(L, 2, 1);
    } else {
        lua_pushnil(L);
    }
    int keys = rr_doc_keys(L);
    anchor_idx = as_body ? 2 : 0;
    int n = (int)lua_objlen(L, 1);
    npieces = 0;
    for (int k = 1; k <= n; k++) {
        lua_rawgeti(L, 1, k);
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t l;
            const char *p = lua_tolstring(L, -1, &l);
            add_piece(L, p, l); /* alive: the parts table holds it */
        } else if (lua_istable(L, -1)) {
            if (!splice_list(L, lua_gettop(L), keys)) {
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
    anchor_idx = 0; /* (an early return leaves it set: the next rr_doc_keys clears it) */
    if (as_body && total > PIECED_MIN) { /* sent from the pieces (curl_call.c): no copy here */
        rr_body_pieced(L, (const rr_piece *)pieces, npieces, srcs, nsrcs, 2);
        return 1;
    }
    char *o = as_body ? rr_body_alloc(L, total) : scratch(L, total);
    for (size_t i = 0, w = 0; i < npieces; w += pieces[i].len, i++) memcpy(o + w, pieces[i].p, pieces[i].len);
    if (!as_body) push_scratch(L, total);
    return 1;
}
