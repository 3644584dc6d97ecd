/* The Lua module's own upstream transport (plain LuaJIT, no event loop): libcurl multi
 * driven with curl_multi_poll until the call's transfers finish. Blocking by design; the
 * daemon never registers it (its workers use the non-blocking fetch_loop.c). One multi handle
 * per lua_State keeps connections alive between calls. */
#include "curl_call.h"
#include "rerank.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

static char multi_key;

typedef struct {
    CURLM *multi;
} multi_box;

static int multi_gc(lua_State *L)
{
    multi_box *m = lua_touserdata(L, 1);
    if (m->multi) curl_multi_cleanup(m->multi);
    m->multi = NULL;
    return 0;
}

static CURLM *get_multi(lua_State *L)
{
    multi_box *m = rr_registry_get(L, &multi_key);
    if (m && m->multi) return m->multi;
    m = lua_newuserdata(L, sizeof *m);
    m->multi = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, multi_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    m->multi = curl_multi_init();
    if (!m->multi) {
        lua_pop(L, 1);
        luaL_error(L, "http: cannot create a libcurl multi handle");
    }
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, 32L);
    lua_pushlightuserdata(L, &multi_key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return m->multi;
}

/* Transfers live in a userdata whose __gc frees them, so a raise never leaks. */
typedef struct {
    int n;
    CURLM *multi;
    rr_transfer t[];
} set_box;

static int set_gc(lua_State *L)
{
    set_box *s = lua_touserdata(L, 1);
    for (int i = 0; i < s->n; i++) rr_curl_transfer_free(s->multi, &s->t[i]);
    s->n = 0;
    return 0;
}

static set_box *new_set(lua_State *L, int n, CURLM *multi)
{
    set_box *s = lua_newuserdata(L, sizeof *s + sizeof(rr_transfer) * (size_t)n);
    memset(s, 0, sizeof *s + sizeof(rr_transfer) * (size_t)n);
    s->multi = multi;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, set_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    return s;
}

static void run_all(set_box *s, int concurrency)
{
    int next = 0, running = 0, left = s->n;
    while (left > 0) {
        while (next < s->n && running < concurrency) {
            rr_transfer *t = &s->t[next++];
            t->started = 1;
            if (curl_multi_add_handle(s->multi, t->easy) == CURLM_OK) running++;
            else {
                t->done = 1;
                t->result = CURLE_FAILED_INIT;
                left--;
            }
        }
        int still;
        curl_multi_perform(s->multi, &still);
        while (rr_curl_next_done(s->multi) != NULL) {
            running--;
            left--;
        }
        if (left > 0 && running > 0) curl_multi_poll(s->multi, NULL, 0, 1000, NULL);
    }
}

static int start(lua_State *L, int n, int single, int concurrency)
{
    CURLM *multi = get_multi(L);
    rr_curl_opts *opts = rr_curl_read_call(L, 1, n, single);
    set_box *s = new_set(L, n, multi);
    if (rr_curl_setup_call(L, 1, n, single, s->t, opts, 0, NULL, &s->n) != 0)
        return luaL_error(L, "http: cannot set up the transfer");
    run_all(s, concurrency > 0 ? concurrency : n);
    if (single) return rr_curl_push_result(L, &s->t[0], 1);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        rr_curl_push_result(L, &s->t[i], 0);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* core.http_request{method, url, headers, body, timeout, ...} -> {status, headers, body} | nil, err */
static int l_http_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    return start(L, 1, 1, 1);
}

/* core.http_request_all({opts...}, concurrency) -> { {status,headers,body} | {error=...} ... } */
static int l_http_request_all(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)lua_objlen(L, 1);
    int conc = (int)luaL_optinteger(L, 2, 8);
    return start(L, n, 0, conc);
}

void rr_fetch_blocking_register(lua_State *L)
{
    static int inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = 1;
    }
    lua_pushcfunction(L, l_http_request);
    lua_setfield(L, -2, "http_request");
    lua_pushcfunction(L, l_http_request_all);
    lua_setfield(L, -2, "http_request_all");
}
