/* Upstream HTTP for request coroutines: libcurl multi_socket_action driven by the
 * worker's event_base (curl's hiperfifo pattern). A Lua call starts transfers and
 * yields; completions are recorded in C and the coroutine is resumed from a loop
 * callback (never from inside a libcurl callback). Connections are reused per worker. */
#include "daemon.h"
#include "rerank.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <lauxlib.h>

#define MAX_RESPONSE (64u << 20)

typedef struct {
    rr_worker *w;
    CURLM *multi;
    struct event *timer;
} fetch_state;

typedef struct {
    char *data;
    size_t len, cap;
    int overflow;
} growbuf;

typedef struct batch batch;

typedef struct {
    batch *b;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    growbuf resp, resp_headers;
    char errbuf[CURL_ERROR_SIZE];
    CURLcode result;
    long status;
    int started, done;
} transfer;

struct batch {
    fetch_state *fs;
    rr_req *r;
    int single;                   /* request() vs request_all() */
    int n, next, running, remaining, concurrency;
    transfer t[];
};

typedef struct {
    struct event *ev;
} sock_info;

static int grow(growbuf *g, const char *p, size_t n)
{
    if (g->len + n > MAX_RESPONSE) {
        g->overflow = 1;
        return -1;
    }
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4096;
        while (cap < g->len + n + 1) cap *= 2;
        char *d = realloc(g->data, cap);
        if (!d) return -1;
        g->data = d;
        g->cap = cap;
    }
    memcpy(g->data + g->len, p, n);
    g->len += n;
    g->data[g->len] = 0;
    return 0;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    transfer *t = ud;
    return grow(&t->resp, p, sz * nm) == 0 ? sz * nm : 0;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
    transfer *t = ud;
    /* a new status line (redirect, 100-continue) starts a fresh header block */
    if (sz * nm > 5 && memcmp(p, "HTTP/", 5) == 0) t->resp_headers.len = 0;
    return grow(&t->resp_headers, p, sz * nm) == 0 ? sz * nm : 0;
}

static void transfer_free(fetch_state *fs, transfer *t)
{
    if (t->easy) {
        if (t->started && !t->done) curl_multi_remove_handle(fs->multi, t->easy);
        curl_easy_cleanup(t->easy);
        t->easy = NULL;
    }
    curl_slist_free_all(t->headers);
    t->headers = NULL;
    free(t->body);
    free(t->resp.data);
    free(t->resp_headers.data);
    t->body = t->resp.data = t->resp_headers.data = NULL;
}

static void batch_free(batch *b)
{
    for (int i = 0; i < b->n; i++) transfer_free(b->fs, &b->t[i]);
    free(b);
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
        transfer *t = &b->t[b->next++];
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

static void push_headers(lua_State *L, const growbuf *g)
{
    lua_newtable(L);
    if (!g->data) return;
    const char *p = g->data, *end = g->data + g->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && colon > p) {
            char key[128];
            size_t kl = (size_t)(colon - p);
            if (kl < sizeof key) {
                for (size_t i = 0; i < kl; i++) key[i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] + 32 : p[i]);
                const char *v = colon + 1, *ve = eol;
                while (v < ve && (*v == ' ' || *v == '\t')) v++;
                while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
                lua_pushlstring(L, key, kl);
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_rawset(L, -3);
            }
        }
        p = eol + 1;
    }
}

static const char *error_kind(CURLcode c)
{
    switch (c) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY: return "dns";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE: return "tls";
    case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE: return "io";
    case CURLE_WRITE_ERROR: return "too_large";
    default: return "http";
    }
}

/* pushes {status, headers, body} or nil, err (single) / {error=err} (in a batch) */
static int push_result(lua_State *L, transfer *t, int single)
{
    if (t->result != CURLE_OK) {
        const char *msg = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result);
        if (t->resp.overflow) msg = "response body exceeds 64 MiB";
        if (single) {
            lua_pushnil(L);
            lua_pushfstring(L, "%s: %s", error_kind(t->result), msg);
            return 2;
        }
        lua_createtable(L, 0, 1);
        lua_pushfstring(L, "%s: %s", error_kind(t->result), msg);
        lua_setfield(L, -2, "error");
        return 1;
    }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, t->status);
    lua_setfield(L, -2, "status");
    push_headers(L, &t->resp_headers);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, t->resp.data ? t->resp.data : "", t->resp.len);
    lua_setfield(L, -2, "body");
    return 1;
}

static int push_batch(rr_req *r, lua_State *co)
{
    batch *b = r->pending;
    r->pending = NULL;
    r->cancel = NULL;
    int n;
    if (b->single) {
        n = push_result(co, &b->t[0], 1);
    } else {
        lua_createtable(co, b->n, 0);
        for (int i = 0; i < b->n; i++) {
            push_result(co, &b->t[i], 0);
            lua_rawseti(co, -2, i + 1);
        }
        n = 1;
    }
    batch_free(b);
    return n;
}

static void check_done(fetch_state *fs)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(fs->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        transfer *t = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        CURLcode res = m->data.result;
        curl_multi_remove_handle(fs->multi, m->easy_handle);
        if (!t) continue;
        t->done = 1;
        t->result = res;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
        batch *b = t->b;
        b->running--;
        b->remaining--;
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

typedef struct {
    const char *method, *url, *body, *sigv4, *userpwd;
    size_t body_len;
    double timeout, connect_timeout;
    int insecure;
} req_opts;

static const char *opt_str(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    const char *v = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) v = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1)) luaL_error(L, "http request: %s must be a string", k);
    lua_pop(L, 1); /* the string stays alive: it is referenced by the options table */
    return v;
}

/* Validates one options table; raises on misuse before anything is allocated. */
static void read_opts(lua_State *L, int idx, req_opts *o)
{
    if (!lua_istable(L, idx)) luaL_error(L, "http request: options must be a table");
    memset(o, 0, sizeof *o);
    o->method = opt_str(L, idx, "method");
    o->url = opt_str(L, idx, "url");
    if (!o->url) luaL_error(L, "http request: url is required");
    lua_getfield(L, idx, "body");
    if (lua_type(L, -1) == LUA_TSTRING) o->body = lua_tolstring(L, -1, &o->body_len);
    else if (!lua_isnil(L, -1)) luaL_error(L, "http request: body must be a string");
    lua_pop(L, 1);
    o->sigv4 = opt_str(L, idx, "aws_sigv4");
    o->userpwd = opt_str(L, idx, "userpwd");
    lua_getfield(L, idx, "timeout");
    o->timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 30;
    lua_getfield(L, idx, "connect_timeout");
    o->connect_timeout = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 10;
    lua_getfield(L, idx, "insecure");
    o->insecure = lua_toboolean(L, -1);
    lua_pop(L, 3);
    lua_getfield(L, idx, "headers");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1)) luaL_error(L, "http request: headers must be a table");
    lua_pop(L, 1);
}

/* Builds the curl handle for t; never raises (Lua values are only read). */
static int setup_transfer(lua_State *L, int idx, transfer *t, const req_opts *o, double deadline_left)
{
    t->easy = curl_easy_init();
    if (!t->easy) return -1;
    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)t);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    double timeout = o->timeout;
    if (deadline_left > 0 && deadline_left < timeout) timeout = deadline_left;
    long ms = (long)(timeout * 1000.0);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->connect_timeout * 1000.0));
    if (o->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (o->body) {
        t->body = malloc(o->body_len + 1);
        if (!t->body) return -1;
        memcpy(t->body, o->body, o->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    }
    if (o->method) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
    else if (!o->body) curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    if (o->sigv4) curl_easy_setopt(e, CURLOPT_AWS_SIGV4, o->sigv4);
    if (o->userpwd) curl_easy_setopt(e, CURLOPT_USERPWD, o->userpwd);
    t->headers = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    lua_getfield(L, idx, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)) {
                char line[8192];
                snprintf(line, sizeof line, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
                struct curl_slist *h = curl_slist_append(t->headers, line);
                if (h) t->headers = h;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    return 0;
}

static rr_req *current_req(lua_State *L)
{
    rr_req *r = rr_lua_current_req(L);
    if (!r) luaL_error(L, "http request: must be called from a request coroutine");
    if (r->pending) luaL_error(L, "http request: another operation is already pending");
    return r;
}

/* Common path: list of option tables at stack index idx (or the single table). */
static int start_batch(lua_State *L, int idx, int n, int single, int concurrency)
{
    rr_req *r = current_req(L);
    req_opts *opts = lua_newuserdata(L, sizeof(req_opts) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        if (single) read_opts(L, idx, &opts[i]);
        else {
            lua_rawgeti(L, idx, i + 1);
            read_opts(L, lua_gettop(L), &opts[i]);
            lua_pop(L, 1);
        }
    }
    batch *b = calloc(1, sizeof *b + sizeof(transfer) * (size_t)n);
    if (!b) return luaL_error(L, "http request: out of memory");
    b->fs = r->w->fetch;
    b->r = r;
    b->single = single;
    b->n = b->remaining = n;
    b->concurrency = concurrency > 0 ? concurrency : n;
    double left = r->w->opt->timeout - (double)(rr_now_us() - r->t0_us) / 1e6;
    for (int i = 0; i < n; i++) {
        b->t[i].b = b;
        int tidx = idx;
        if (!single) {
            lua_rawgeti(L, idx, i + 1);
            tidx = lua_gettop(L);
        }
        int rc = setup_transfer(L, tidx, &b->t[i], &opts[i], left > 0 ? left : 0.001);
        if (!single) lua_pop(L, 1);
        if (rc != 0) {
            batch_free(b);
            return luaL_error(L, "http request: cannot set up the transfer");
        }
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
    return start_batch(L, 1, 1, 1, 1);
}

/* fetch.request_all({opts...}, concurrency) -> { {status,headers,body} | {error=...} ... } */
static int l_request_all(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)lua_objlen(L, 1);
    int conc = (int)luaL_optinteger(L, 2, 8);
    return start_batch(L, 1, n, 0, conc);
}

int rr_fetch_open(lua_State *L)
{
    static const luaL_Reg fns[] = { { "request", l_request }, { "request_all", l_request_all }, { NULL, NULL } };
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
