/* The Lua API of BM25 and its analyzers (part of rerank.core):
 *   core.analyzer(language, stopwords) -> analyzer | nil, err
 *       language: a name from core.stem_languages(), or nil / "none" (exact words);
 *       stopwords: a list of lower-cased words (nil = none). Not shared across threads:
 *       each Lua state (worker) makes its own.
 *   core.stem_languages() -> { "arabic", ..., "yiddish" }
 *   core.terms(text [, analyzer]) -> { the terms BM25 matches: tokens less stopwords, stemmed }
 *   core.bm25(query, docs, opts) -> { scores }, tokens [, matches]
 *       opts: k1 (1.2), b (0.75), max_tokens, keep_end, analyzer, fields (n: docs holds n
 *       strings per document, field 0 the text; false or "" for a missing one; a request
 *       document table stands for its text, read in place when lazy), weights
 *       ({ n numbers }), feedback ({ docs =, terms =, weight = }), matches (true: a third
 *       result, per document { { term, tf }, ... } of the query terms it matched). */
#include "rerank.h"
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define ANALYZER_MT "rerank.analyzer"
#define MATCHES_MT "rerank.bm25_matches"

static int analyzer_gc(lua_State *L)
{
    rr_analyzer **a = luaL_checkudata(L, 1, ANALYZER_MT);
    rr_analyzer_free(*a);
    *a = NULL;
    return 0;
}

static int l_analyzer(lua_State *L)
{
    const char *lang = luaL_optstring(L, 1, NULL);
    size_t n = 0;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        n = lua_objlen(L, 2);
    }
    const char **words = lua_newuserdata(L, (n ? n : 1) * sizeof *words);
    size_t *lens = lua_newuserdata(L, (n ? n : 1) * sizeof *lens);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (int)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "stopwords[%d] is not a string", (int)i + 1);
        words[i] = lua_tolstring(L, -1, &lens[i]);
        lua_pop(L, 1); /* still referenced by the table */
    }
    rr_analyzer **box = lua_newuserdata(L, sizeof *box);
    *box = NULL;
    luaL_getmetatable(L, ANALYZER_MT);
    lua_setmetatable(L, -2);
    *box = rr_analyzer_new(lang, words, lens, n);
    if (!*box) {
        lua_pushnil(L);
        if (errno == ENOENT) lua_pushfstring(L, "unknown language \"%s\"", lang);
        else lua_pushliteral(L, "out of memory");
        return 2;
    }
    return 1;
}

static rr_analyzer *opt_analyzer(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    rr_analyzer **a = luaL_checkudata(L, idx, ANALYZER_MT);
    return *a;
}

static int l_stem_languages(lua_State *L)
{
    lua_newtable(L);
    int i = 0;
    for (const char **l = rr_analyzer_languages(); *l; l++) {
        lua_pushstring(L, *l);
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

typedef struct { lua_State *L; rr_analyzer *a; int n; } terms_ctx;

static void push_term(const char *tok, size_t len, size_t offset, void *ud)
{
    (void)offset;
    terms_ctx *t = ud;
    const char *out = tok;
    size_t olen = len;
    if (t->a && !rr_analyze(t->a, tok, len, &out, &olen)) return;
    lua_pushlstring(t->L, out, olen);
    lua_rawseti(t->L, -2, ++t->n);
}

static int l_terms(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    terms_ctx t = { L, opt_analyzer(L, 2), 0 };
    lua_newtable(L);
    rr_tokenize(s, len, push_term, &t);
    return 1;
}

static double opt_number(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A count option; beyond 2^53 (1e999 included) it is as good as unlimited. */
static size_t opt_count(lua_State *L, int t, const char *k, size_t def)
{
    lua_getfield(L, t, k);
    lua_Number v = lua_isnil(L, -1) ? (lua_Number)def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= 0)) luaL_error(L, "bm25: %s must be >= 0", k);
    return v >= 9007199254740992.0 ? SIZE_MAX : (size_t)v;
}

static int matches_gc(lua_State *L)
{
    rr_bm25_matches_free(luaL_checkudata(L, 1, MATCHES_MT));
    return 0;
}

/* The per-document arrays of a call (texts, lengths, scores) in one per-thread block reused
 * across calls, so a request leaves no scratch for the collector (24 KB of userdata for a
 * thousand documents). A call that starts while another is under way on the thread (a
 * document's text made by Lua code) uses userdata, as does every call after a raise from
 * inside Lua's API (out of memory) left the block marked busy. */
static _Thread_local char *tls_block;
static _Thread_local size_t tls_cap;
static _Thread_local int tls_busy;

static char *scratch(lua_State *L, size_t bytes, int *own)
{
    *own = !tls_busy && rr_buf_reserve(&tls_block, &tls_cap, bytes, 4096, (size_t)-1) == 0;
    if (!*own) return lua_newuserdata(L, bytes); /* freed with the call's stack */
    tls_busy = 1;
    return tls_block;
}

static void scratch_done(int own)
{
    if (!own) return;
    tls_busy = 0;
    rr_buf_trim(&tls_block, &tls_cap, RR_SCRATCH_KEEP);
}

static int l_bm25(lua_State *L)
{
    size_t qlen;
    const char *q = luaL_checklstring(L, 1, &qlen);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t total = lua_objlen(L, 2);
    rr_bm25_params p;
    memset(&p, 0, sizeof p);
    p.k1 = 1.2;
    p.b = 0.75;
    p.nfields = 1;
    p.threads = rr_bm25_auto_threads();
    int want_matches = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        p.k1 = opt_number(L, 3, "k1", 1.2);
        p.b = opt_number(L, 3, "b", 0.75);
        p.max_tokens = opt_count(L, 3, "max_tokens", 0);
        lua_getfield(L, 3, "keep_end");
        p.keep_end = lua_toboolean(L, -1);
        lua_getfield(L, 3, "matches");
        want_matches = lua_toboolean(L, -1);
        lua_getfield(L, 3, "analyzer");
        p.analyzer = opt_analyzer(L, -1);
        lua_pop(L, 3); /* the analyzer stays referenced by opts */
        p.nfields = opt_count(L, 3, "fields", 1);
        if (p.nfields == 0 || p.nfields > 64) return luaL_error(L, "bm25: fields must be 1 to 64");
        lua_getfield(L, 3, "weights");
        if (!lua_isnil(L, -1)) {
            luaL_checktype(L, -1, LUA_TTABLE);
            double *w = lua_newuserdata(L, p.nfields * sizeof *w);
            for (size_t f = 0; f < p.nfields; f++) {
                lua_rawgeti(L, -2, (int)f + 1);
                w[f] = lua_isnil(L, -1) ? 1.0 : luaL_checknumber(L, -1);
                lua_pop(L, 1);
                if (!(w[f] >= 0) || w[f] > 1e6) return luaL_error(L, "bm25: weights[%d] must be 0 to 1e6", (int)f + 1);
            }
            p.weights = w;
            lua_replace(L, -2); /* keep the userdata on the stack until we return */
        } else {
            lua_pop(L, 1);
        }
        lua_getfield(L, 3, "threads"); /* "auto" (or nil): the idle CPUs (bm25_par.c) */
        if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_Number t = lua_tonumber(L, -1);
            if (!(t >= 1 && t <= RR_BM25_MAX_THREADS) || t != (lua_Number)(size_t)t)
                return luaL_error(L, "bm25: threads must be \"auto\" or 1 to %d", RR_BM25_MAX_THREADS);
            p.threads = (size_t)t;
        } else if (!lua_isnil(L, -1) && !(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0)) {
            return luaL_error(L, "bm25: threads must be \"auto\" or 1 to %d", RR_BM25_MAX_THREADS);
        }
        lua_pop(L, 1);
        p.par_bytes = opt_count(L, 3, "par_bytes", 0); /* tests: share out smaller texts */
        lua_getfield(L, 3, "feedback");
        if (!lua_isnil(L, -1)) {
            luaL_checktype(L, -1, LUA_TTABLE);
            int fb = lua_gettop(L);
            p.fb_docs = opt_count(L, fb, "docs", 10);
            p.fb_terms = opt_count(L, fb, "terms", 20);
            p.fb_weight = opt_number(L, fb, "weight", 0.5);
            if (p.fb_docs > 1000 || p.fb_terms > 1000) return luaL_error(L, "bm25: feedback docs and terms must be <= 1000");
        }
        lua_pop(L, 1);
    }
    if (total % p.nfields) return luaL_error(L, "bm25: %d docs is not a multiple of %d fields", (int)total, (int)p.nfields);
    size_t n = total / p.nfields;
    int own = 0;
    char *block = scratch(L, (total ? total : 1) * (sizeof(char *) + sizeof(size_t)) + (n ? n : 1) * sizeof(double), &own);
    const char **docs = (const char **)(void *)block;
    size_t *lens = (size_t *)(void *)(block + (total ? total : 1) * sizeof(char *));
    double *scores = (double *)(void *)(block + (total ? total : 1) * (sizeof(char *) + sizeof(size_t)));
    int keys = rr_doc_keys(L);
    for (size_t i = 0; i < total; i++) {
        lua_rawgeti(L, 2, (int)i + 1);
        int t = lua_type(L, -1);
        if (t == LUA_TSTRING) {
            docs[i] = lua_tolstring(L, -1, &lens[i]);
        } else if (t == LUA_TTABLE) { /* a request document: its text, maybe read in place */
            docs[i] = rr_doc_text(L, lua_gettop(L), keys, &lens[i]);
            if (!docs[i]) {
                scratch_done(own);
                return luaL_error(L, "docs[%d] is a document without a text", (int)i + 1);
            }
        } else if ((t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) || t == LUA_TNIL) {
            docs[i] = NULL;
            lens[i] = 0;
        } else {
            scratch_done(own);
            return luaL_error(L, "docs[%d] is not a string", (int)i + 1);
        }
        lua_pop(L, 1); /* still referenced by the docs table */
    }
    rr_bm25_matches *m = NULL;
    if (want_matches) { /* owned by a userdata: pushing the results may raise */
        m = lua_newuserdata(L, sizeof *m);
        memset(m, 0, sizeof *m);
        luaL_getmetatable(L, MATCHES_MT);
        lua_setmetatable(L, -2);
        p.matches = m;
    }
    size_t doc_tokens = 0;
    p.doc_tokens = &doc_tokens;
    if (rr_bm25(q, qlen, docs, lens, n, &p, scores) != 0) {
        scratch_done(own);
        return luaL_error(L, "bm25: out of memory");
    }
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushnumber(L, scores[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    scratch_done(own);
    lua_pushnumber(L, (lua_Number)doc_tokens);
    if (!m) return 2;
    lua_createtable(L, (int)n, 0);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t end = m->doc_end ? m->doc_end[i] : 0;
        lua_createtable(L, (int)(end - k), 0);
        for (int j = 1; k < end; k++, j++) {
            uint32_t t = m->term[k];
            lua_createtable(L, 2, 0);
            lua_pushlstring(L, m->str[t], m->len[t]);
            lua_rawseti(L, -2, 1);
            lua_pushnumber(L, m->tf[k]);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, -2, j);
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
    rr_bm25_matches_free(m);
    return 3;
}

void rr_lbm25_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "bm25", l_bm25 },
        { "analyzer", l_analyzer },
        { "terms", l_terms },
        { "stem_languages", l_stem_languages },
        { NULL, NULL },
    };
    if (luaL_newmetatable(L, ANALYZER_MT)) {
        lua_pushcfunction(L, analyzer_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, MATCHES_MT)) {
        lua_pushcfunction(L, matches_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_register(L, NULL, fns);
    lua_pushinteger(L, RR_BM25_MAX_THREADS);
    lua_setfield(L, -2, "bm25_max_threads");
}
