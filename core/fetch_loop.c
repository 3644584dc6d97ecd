/* Upstream HTTP for request coroutines: libcurl multi_socket_action driven by the
 * worker's event_base (curl's hiperfifo pattern). A Lua call starts transfers and
 * yields; completions are recorded in C and the coroutine is resumed from a loop
 * callback (never from inside a libcurl callback). Connections are reused per worker. */
#include "daemon.h"
#include "curl_call.h"
#include "rerank.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <lauxlib.h>


typedef struct {
    rr_worker *w;
    CURLM *multi;
    struct event *timer;
} fetch_state;

typedef struct batch batch;

struct batch {
    fetch_state *fs;
    rr_req *r;
    lua_State *L;                 /* the host state holding the refs */
    int keep_ref;                 /* the options: curl sends their body strings in place */
    int self_ref;                 /* this batch (a userdata) while it is pending */
    int live;                     /* transfers and timer not yet released */
    CURLM *multi;                 /* fs->multi, copied: __gc may run after fs is gone */
    int single;                   /* request() vs request_all() */
    int n, next, running, remaining, concurrency;
    /* hedge(): t[1] starts when t[0] has not answered after a delay; the first 2xx wins */
    int race, hedged, finished, winner;
    struct event *hedge_ev;
    rr_transfer t[];
};

typedef struct {
    struct event *ev;
} sock_info;

/* A batch is a userdata, so nothing malloc'd is held across the Lua calls that set it up or
 * push its results: a raise there leaves it unreferenced and its __gc releases the transfers.
 * While pending it is referenced from the registry (self_ref). */
#define BATCH_MT "rerank.fetch.batch"

static void batch_release(batch *b)
{
    if (!b->live) return;
    b->live = 0;
    if (b->hedge_ev) event_free(b->hedge_ev);
    b->hedge_ev = NULL;
    for (int i = 0; i < b->n; i++) rr_curl_transfer_free(b->multi, &b->t[i]);
}

static int batch_gc(lua_State *L)
{
    batch_release(lua_touserdata(L, 1));
    return 0;
}

/* Releases the transfers and drops the refs; the memory goes with the next collection. */
static void batch_free(batch *b)
{
    batch_release(b);
    luaL_unref(b->L, LUA_REGISTRYINDEX, b->keep_ref); /* after the transfers: they read the bodies */
    luaL_unref(b->L, LUA_REGISTRYINDEX, b->self_ref);
    b->keep_ref = b->self_ref = LUA_NOREF;
}

/* Results are pushed with the batch anchored on co's stack and its refs dropped first: a
 * raise while pushing leaves the batch to its __gc. Returns the anchor's stack index. */
static int batch_anchor(batch *b, lua_State *co)
{
    lua_rawgeti(co, LUA_REGISTRYINDEX, b->self_ref);
    int at = lua_gettop(co);
    luaL_unref(b->L, LUA_REGISTRYINDEX, b->self_ref);
    b->self_ref = LUA_NOREF;
    return at;
}

/* the request's cleanup hook: client abort, deadline, or shutdown */
static void batch_cancel(rr_req *r)
{
    batch *b = r->pending;
    r->pending = NULL;
    r->cancel = NULL;
    if (b) batch_free(b);
}

static void start_next(batch *b)
{
    while (b->next < b->n && b->running < b->concurrency) {
        rr_transfer *t = &b->t[b->next++];
        t->started = 1;
        b->running++;
        if (curl_multi_add_handle(b->fs->multi, t->easy) != CURLM_OK) {
            t->done = 1;
            t->result = CURLE_FAILED_INIT;
            snprintf(t->errbuf, sizeof t->errbuf, "cannot start the transfer");
            b->running--;
            b->remaining--;
        }
    }
}

static int push_batch(rr_req *r, lua_State *co)
{
    batch *b = r->pending;
    r->pending = NULL;
    r->cancel = NULL;
    int anchor = batch_anchor(b, co), n;
    if (b->single) {
        n = rr_curl_push_result(co, &b->t[0], 1);
    } else {
        lua_createtable(co, b->n, 0);
        for (int i = 0; i < b->n; i++) {
            rr_curl_push_result(co, &b->t[i], 0);
            lua_rawseti(co, -2, i + 1);
        }
        n = 1;
    }
    batch_free(b);
    lua_remove(co, anchor);
    return n;
}

static int push_race(rr_req *r, lua_State *co)
{
    batch *b = r->pending;
    r->pending = NULL;
    r->cancel = NULL;
    int anchor = batch_anchor(b, co);
    lua_createtable(co, 0, 3);
    rr_curl_push_result(co, &b->t[b->winner], 0);
    lua_setfield(co, -2, "result");
    lua_pushinteger(co, b->winner + 1);
    lua_setfield(co, -2, "index");
    lua_pushboolean(co, b->hedged);
    lua_setfield(co, -2, "hedged");
    batch_free(b); /* the loser, still running, is cancelled here */
    lua_remove(co, anchor);
    return 1;
}

static void race_finish(batch *b, int winner)
{
    b->finished = 1;
    b->winner = winner;
    if (b->hedge_ev) evtimer_del(b->hedge_ev);
    b->r->push = push_race;
    rr_req_schedule_resume(b->r, 0);
}

/* A transfer of a hedge finished: a 2xx wins; a failure waits for the other one while it
 * runs; the primary's failure before the hedge was sent ends the race (the router retries). */
static void race_done(batch *b, rr_transfer *t)
{
    int idx = (int)(t - b->t);
    int good = t->result == CURLE_OK && t->status >= 200 && t->status < 300;
    if (good) race_finish(b, idx);
    else if (!b->hedged || b->remaining == 0) race_finish(b, 0);
}

static void on_hedge_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    batch *b = arg;
    if (b->finished) return;
    b->hedged = 1;
    b->concurrency = 2;
    start_next(b); /* a hedge that cannot start counts as failed: the primary decides */
}

static void check_done(fetch_state *fs)
{
    rr_transfer *t;
    while ((t = rr_curl_next_done(fs->multi)) != NULL) {
        batch *b = t->owner;
        b->running--;
        b->remaining--;
        if (b->race) {
            if (!b->finished) race_done(b, t);
            continue;
        }
        start_next(b);
        if (b->remaining == 0) {
            b->r->push = push_batch;
            rr_req_schedule_resume(b->r, 0);
        }
    }
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    fetch_state *fs = arg;
    int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(fs->multi, fd, action, &running);
    check_done(fs);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    fetch_state *fs = arg;
    int running;
    curl_multi_socket_action(fs->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(fs);
}

static int on_curl_timer(CURLM *multi, long ms, void *arg)
{
    (void)multi;
    fetch_state *fs = arg;
    if (ms < 0) {
        evtimer_del(fs->timer);
        return 0;
    }
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(fs->timer, &tv);
    return 0;
}

static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
    (void)e;
    fetch_state *fs = arg;
    sock_info *si = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (si) {
            event_free(si->ev);
            free(si);
            curl_multi_assign(fs->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (!si) {
        si = calloc(1, sizeof *si);
        if (!si) return -1;
        curl_multi_assign(fs->multi, s, si);
    } else {
        event_free(si->ev);
    }
    si->ev = event_new(fs->w->base, s, kind, on_socket_event, fs);
    event_add(si->ev, NULL);
    return 0;
}

int rr_fetch_init(rr_worker *w)
{
    fetch_state *fs = calloc(1, sizeof *fs);
    if (!fs) return -1;
    fs->w = w;
    fs->multi = curl_multi_init();
    fs->timer = evtimer_new(w->base, on_timer, fs);
    if (!fs->multi || !fs->timer) {
        if (fs->multi) curl_multi_cleanup(fs->multi);
        if (fs->timer) event_free(fs->timer);
        free(fs);
        return -1;
    }
    curl_multi_setopt(fs->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(fs->multi, CURLMOPT_SOCKETDATA, fs);
    curl_multi_setopt(fs->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(fs->multi, CURLMOPT_TIMERDATA, fs);
    curl_multi_setopt(fs->multi, CURLMOPT_MAXCONNECTS, 64L);
    w->fetch = fs;
    return 0;
}

void rr_fetch_free(rr_worker *w)
{
    fetch_state *fs = w->fetch;
    if (!fs) return;
    curl_multi_cleanup(fs->multi);
    event_free(fs->timer);
    free(fs);
    w->fetch = NULL;
}

/* ---- Lua side ---- */

static rr_req *current_req(lua_State *L)
{
    rr_req *r = rr_lua_current_req(L);
    if (!r) luaL_error(L, "http request: must be called from a request coroutine");
    if (r->pending) luaL_error(L, "http request: another operation is already pending");
    return r;
}

/* Common path: list of option tables at stack index idx (or the single table). */
static int start_batch(lua_State *L, int idx, int n, int single, int concurrency, double hedge_after)
{
    rr_req *r = current_req(L);
    rr_curl_opts *opts = rr_curl_read_call(L, idx, n, single);
    size_t size = sizeof(batch) + sizeof(rr_transfer) * (size_t)n;
    batch *b = lua_newuserdata(L, size); /* raises on OOM with nothing to free */
    memset(b, 0, size);
    b->keep_ref = b->self_ref = LUA_NOREF;
    b->fs = r->w->fetch;
    b->multi = b->fs->multi;
    b->r = r;
    b->L = r->host->L;
    b->live = 1;
    if (luaL_newmetatable(L, BATCH_MT)) {
        lua_pushcfunction(L, batch_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    b->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, idx);
    b->keep_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    b->single = single;
    b->n = b->remaining = n;
    b->concurrency = concurrency > 0 ? concurrency : n;
    double left = r->w->opt->timeout - (double)(rr_now_us() - r->t0_us) / 1e6;
    if (rr_curl_setup_call(L, idx, n, single, b->t, opts, left > 0 ? left : 0.001, b, NULL) != 0) {
        batch_free(b);
        return luaL_error(L, "http request: cannot set up the transfer");
    }
    if (hedge_after >= 0) {
        b->race = 1;
        b->hedge_ev = evtimer_new(r->w->base, on_hedge_timer, b);
        if (!b->hedge_ev) {
            batch_free(b);
            return luaL_error(L, "http request: out of memory");
        }
        struct timeval tv = { (time_t)hedge_after, (suseconds_t)((hedge_after - (double)(time_t)hedge_after) * 1e6) };
        evtimer_add(b->hedge_ev, &tv);
    }
    r->pending = b;
    r->cancel = batch_cancel;
    if (n == 0) {
        r->push = push_batch;
        rr_req_schedule_resume(r, 0);
    } else {
        start_next(b);
        if (b->remaining == 0) { /* every add failed */
            r->push = push_batch;
            rr_req_schedule_resume(r, 0);
        }
    }
    return lua_yield(L, 0);
}

/* fetch.request{method=, url=, headers=, body=, timeout=} -> {status, headers, body} | nil, err */
static int l_request(lua_State *L)
{
    return start_batch(L, 1, 1, 1, 1, -1);
}

/* fetch.request_all({opts...}, concurrency) -> { {status,headers,body} | {error=...} ... } */
static int l_request_all(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)lua_objlen(L, 1);
    int conc = (int)luaL_optinteger(L, 2, 8);
    return start_batch(L, 1, n, 0, conc, -1);
}

/* fetch.hedge(opts1, opts2, after) -> { index = 1|2, hedged = bool, result = {status,headers,body}
 * | {error=...} }: opts2 starts when opts1 has not answered after `after` seconds; the first
 * 2xx answer wins and the other transfer is cancelled; both failing: opts1's result. */
static int l_hedge(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    double after = luaL_checknumber(L, 3);
    if (!(after >= 0)) return luaL_argerror(L, 3, "a delay >= 0 expected");
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 2);
    return start_batch(L, lua_gettop(L), 2, 0, 1, after);
}

static char sleep_marker;

static int sleep_done(rr_req *r, lua_State *co)
{
    (void)co;
    r->pending = NULL;
    r->cancel = NULL;
    return 0;
}

static void sleep_cancel(rr_req *r)
{
    r->pending = NULL;
    r->cancel = NULL; /* the timer is the request's resume event, freed with it */
}

/* fetch.sleep(seconds): yields the request coroutine on a loop timer */
static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    rr_req *r = current_req(L);
    r->pending = &sleep_marker;
    r->cancel = sleep_cancel;
    r->push = sleep_done;
    rr_req_schedule_after(r, s);
    return lua_yield(L, 0);
}

int rr_fetch_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "request", l_request }, { "request_all", l_request_all }, { "hedge", l_hedge },
        { "sleep", l_sleep },     { NULL, NULL },
    };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
