/* Workers: one event loop per thread on its own SO_REUSEPORT listener (connections in
 * http.c); each request becomes a Lua coroutine (luahost.c). Replies, deadlines, drain. */
#include "daemon.h"
#include "http.h"
#include "loop.h"
#include "rerank.h"

#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <strings.h>

#include <lauxlib.h>

/* give_back_memory (below): what counts as a large request, how long a busy worker waits */
#define BIG_BODY (1u << 20)
#define BIG_LUA_KB (16 * 1024)
#define BUSY_TICKS 5

atomic_int rr_workers_up;
int rr_workers_total;

uint64_t rr_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct timeval tv_of(double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return tv;
}

int rr_listen_socket(const char *host, int port, int *bound_port, char *err, size_t errlen)
{
    struct addrinfo hints = { 0 }, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0) break;
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return -1;
    if (bound_port) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            char serv[16];
            if (getnameinfo((struct sockaddr *)&ss, sl, NULL, 0, serv, sizeof serv, NI_NUMERICSERV) == 0)
                *bound_port = atoi(serv);
        }
    }
    return fd;
}

/* ---- replies ---- */

/* A drained worker exits once every reply has also been written to its socket. */
static void maybe_exit_drained(rr_worker *w)
{
    if (w->stopping && w->inflight == 0 && w->unflushed == 0) event_base_loopexit(w->base, NULL);
}

void rr_server_check_drained(rr_worker *w) { maybe_exit_drained(w); }

/* Frees the request object; the HTTP reply must have been sent (or abandoned). */
void rr_req_finish(rr_req *r)
{
    rr_worker *w = r->w;
    if (r->conn) /* never answered (should not happen): answer so the connection goes on */
        rr_req_reply_error(r, 500, "internal_error", "internal error: the request ended without a reply");
    if (r->cancel) r->cancel(r);
    if (r->deadline_ev) event_free(r->deadline_ev);
    if (r->resume_ev) event_free(r->resume_ev);
    if (r->body) rr_body_release(r->body); /* nothing of this request reads it any more */
    if (r->body_ref != LUA_NOREF) luaL_unref(r->host->L, LUA_REGISTRYINDEX, r->body_ref);
    if (r->co_ref != LUA_NOREF) luaL_unref(r->host->L, LUA_REGISTRYINDEX, r->co_ref);
    if (r->host) rr_lua_host_release(r->host);
    free(r->log_fields);
    if (r->big) w->mem_dirty = 1;
    free(r);
    w->inflight--;
    if (w->inflight == 0) rr_bm25_busy(-1); /* bm25 threads "auto" count busy workers */
    if (w->inflight == 0 && w->idle_ev && !w->stopping) event_active(w->idle_ev, 0, 0);
    maybe_exit_drained(w);
}

/* One access-log line: the request id, Lua's fields when the handler returned (encoded by
 * rr_alog in luahost.c), the status and the total time. */
static void access_log(rr_req *r, int status, unsigned long long total)
{
    rr_alog b;
    rr_alog_init(&b);
    if (r->log_fields) rr_alog_fields(&b, r->log_fields, strlen(r->log_fields));
    else rr_alog_str(&b, "id", r->id, strlen(r->id));
    rr_alog_num(&b, "status", status);
    rr_alog_num(&b, "total_us", (double)total);
    rr_alog_write(&b);
    if (r->w->stopping) rr_log_flush(); /* draining: no idle turn or tick comes to write it */
}

/* The reply's header lines, on the stack unless they are large. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
    char stack[4096];
} hbuf;

static void hb_add(hbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap * 2;
        while (cap < b->len + n) cap *= 2;
        char *p = b->p == b->stack ? malloc(cap) : realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        if (b->p == b->stack) memcpy(p, b->stack, b->len);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void hb_header(hbuf *b, const char *k, size_t kl, const char *v, size_t vl)
{
    hb_add(b, k, kl);
    hb_add(b, ": ", 2);
    hb_add(b, v, vl);
    hb_add(b, "\r\n", 2);
}

/* A name is a token; a value has no CR, LF or NUL (no header injection from a script). */
static int header_ok(const char *k, size_t kl, const char *v, size_t vl)
{
    if (kl == 0) return 0;
    for (size_t i = 0; i < kl; i++)
        if ((unsigned char)k[i] <= ' ' || k[i] == ':' || (unsigned char)k[i] >= 0x7f) return 0;
    for (size_t i = 0; i < vl; i++)
        if (v[i] == '\r' || v[i] == '\n' || v[i] == 0) return 0;
    return strcasecmp(k, "content-length") != 0 && strcasecmp(k, "connection") != 0 &&
           strcasecmp(k, "transfer-encoding") != 0;
}

/* Sends status + body; headers come from the Lua table at idx_headers of `from` (or none). */
void rr_req_reply(rr_req *r, int status, lua_State *from, int idx_headers, const char *body, size_t len)
{
    if (!r->conn) return;
    hbuf hb = { .cap = sizeof hb.stack };
    hb.p = hb.stack;
    int have_ct = 0, have_id = 0;
    const char *timing = NULL;
    if (from && idx_headers && lua_istable(from, idx_headers)) {
        lua_pushnil(from);
        while (lua_next(from, idx_headers)) {
            if (lua_type(from, -2) == LUA_TSTRING && lua_type(from, -1) == LUA_TSTRING) {
                size_t kl, vl;
                const char *k = lua_tolstring(from, -2, &kl), *v = lua_tolstring(from, -1, &vl);
                if (strcasecmp(k, "x-rerankd-timing") == 0) timing = v; /* completed below */
                else if (header_ok(k, kl, v, vl)) {
                    if (strcasecmp(k, "content-type") == 0) have_ct = 1;
                    if (strcasecmp(k, "x-request-id") == 0) have_id = 1;
                    hb_header(&hb, k, kl, v, vl);
                }
            }
            lua_pop(from, 1);
        }
    }
    if (!have_ct) hb_add(&hb, "Content-Type: application/json\r\n", 32);
    if (!have_id) hb_header(&hb, "x-request-id", 12, r->id, strlen(r->id));
    char tbuf[512];
    unsigned long long total = (unsigned long long)(rr_now_us() - r->t0_us);
    int tn;
    if (timing && timing[0]) tn = snprintf(tbuf, sizeof tbuf, "%s;total=%llu", timing, total);
    else tn = snprintf(tbuf, sizeof tbuf, "total=%llu", total);
    if (tn >= (int)sizeof tbuf) tn = (int)sizeof tbuf - 1;
    if (!timing || header_ok("x", 1, tbuf, (size_t)tn)) hb_header(&hb, "x-rerankd-timing", 16, tbuf, (size_t)tn);
    struct rr_conn *c = r->conn;
    r->conn = NULL;
    if (hb.oom) {
        static const char oom[] = "{\"error\":{\"type\":\"internal_error\",\"message\":\"out of memory\",\"param\":null}}";
        status = 503;
        rr_conn_reply(c, status, "Content-Type: application/json\r\n", 32, oom, sizeof oom - 1);
    } else rr_conn_reply(c, status, hb.p, hb.len, body, len);
    if (hb.p != hb.stack) free(hb.p);
    access_log(r, status, total);
}

static void json_escape_into(char *dst, size_t cap, const char *s)
{
    size_t j = 0;
    for (; *s && j + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { dst[j++] = '\\'; dst[j++] = (char)c; }
        else if (c < 0x20) j += (size_t)snprintf(dst + j, cap - j, "\\u%04x", c);
        else dst[j++] = (char)c;
    }
    dst[j] = 0;
}

/* rerankd's error object plus the field each client shape reads (Cohere "message",
 * Jina/Voyage "detail"): these errors come before or outside the Lua shapes. */
void rr_req_reply_error(rr_req *r, int status, const char *type, const char *msg)
{
    char esc[1024], body[3300];
    json_escape_into(esc, sizeof esc, msg);
    int n = snprintf(body, sizeof body,
                     "{\"message\":\"%s\",\"detail\":\"%s\",\"error\":{\"type\":\"%s\",\"message\":\"%s\",\"param\":null}}",
                     esc, esc, type, esc);
    if (n < 0 || n >= (int)sizeof body) n = (int)strlen(body);
    rr_req_reply(r, status, NULL, 0, body, (size_t)n);
}

/* ---- coroutine resume from the loop ---- */

static void on_resume(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_req *r = arg;
    int n = r->resume_nargs;
    if (r->push) {
        n = r->push(r, r->co);
        r->push = NULL;
    }
    rr_lua_resume(r, n);
}

void rr_req_schedule_resume(rr_req *r, int nargs)
{
    r->resume_nargs = nargs;
    if (!r->resume_ev) r->resume_ev = event_new(r->w->base, -1, 0, on_resume, r);
    event_active(r->resume_ev, 0, 0);
}

/* Resume after `seconds` through the timer heap (not the active queue), so a script that
 * yields in a loop lets the loop poll sockets and fire deadlines between turns. */
void rr_req_schedule_after(rr_req *r, double seconds)
{
    struct timeval tv = tv_of(seconds > 0 ? seconds : 0);
    if (!r->resume_ev) r->resume_ev = event_new(r->w->base, -1, 0, on_resume, r);
    event_add(r->resume_ev, &tv);
}

/* 504 at the deadline, then the request ends; how: "" (parked on I/O) or what was stopped */
void rr_req_deadline(rr_req *r, const char *how)
{
    char msg[128];
    if (!r->conn && !r->aborted) { /* answered early (ctx.reply_early): only its after-work is cut */
        rr_log(RR_LOG_INFO, "request %s: work after the answer cut at the deadline", r->id[0] ? r->id : "-");
        rr_req_finish(r);
        return;
    }
    snprintf(msg, sizeof msg, "request exceeded its deadline of %.3gs", r->w->opt->timeout);
    r->w->deadline_timeouts++;
    rr_log(RR_LOG_WARN, "request %s: %s%s", r->id[0] ? r->id : "-", msg, how);
    rr_req_reply_error(r, 504, "timeout_error", msg);
    rr_req_finish(r);
}

static void on_deadline(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_req_deadline(arg, "");
}

/* The client closed its connection (EOF or a reset) while the request was in flight:
 * cancel its transfers; nginx's "client closed request" in the access log. */
void rr_server_abort(rr_req *r)
{
    r->conn = NULL;
    rr_log(RR_LOG_INFO, "request %s: client closed the connection before the reply; cancelling", r->id);
    r->aborted = 1;
    r->w->client_aborts++;
    access_log(r, 499, (unsigned long long)(rr_now_us() - r->t0_us));
    rr_req_finish(r);
}

/* Called by luahost when the coroutine yields on I/O: arm the deadline. Client aborts are
 * seen by the connection, which keeps reading while the request is in flight. */
void rr_req_parked(rr_req *r)
{
    if (!r->deadline_ev) {
        r->deadline_ev = evtimer_new(r->w->base, on_deadline, r);
        double left = r->w->opt->timeout - (double)(rr_now_us() - r->t0_us) / 1e6;
        struct timeval tv = tv_of(left > 0 ? left : 0);
        if (r->deadline_ev) evtimer_add(r->deadline_ev, &tv);
    }
}

/* ---- request entry ---- */

static rr_req *req_new(rr_worker *w, struct rr_conn *c)
{
    rr_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->w = w;
    r->conn = c;
    r->co_ref = LUA_NOREF;
    r->body_ref = LUA_NOREF;
    r->t0_us = rr_now_us();
    if (w->inflight++ == 0) rr_bm25_busy(1);
    rr_req_assign_id(r);
    return r;
}

static void reply_oom(struct rr_conn *c)
{
    static const char oom[] = "{\"error\":{\"type\":\"internal_error\",\"message\":\"out of memory\",\"param\":null}}";
    rr_conn_reply(c, 503, "Content-Type: application/json\r\n", 32, oom, sizeof oom - 1);
}

/* A complete request (http.c): it becomes a Lua coroutine. */
void rr_server_request(rr_worker *w, struct rr_conn *c)
{
    rr_req *r = req_new(w, c);
    if (!r) {
        reply_oom(c);
        return;
    }
    rr_conn_bind(c, r);
    r->big = rr_conn_msg(c)->body_len >= BIG_BODY;
    rr_lua_start_request(r);
}

/* A request the HTTP layer refused (framing, limits, timeouts): a JSON error, then close. */
void rr_server_reject(rr_worker *w, struct rr_conn *c, int status, const char *msg)
{
    rr_req *r = req_new(w, c);
    if (!r) {
        reply_oom(c);
        return;
    }
    rr_req_reply_error(r, status, "invalid_request_error", msg);
    rr_req_finish(r);
}

/* The worker has no request in flight: Lua may do deferred work (its collector's steps, so
 * that their cost falls between requests rather than inside one). Activated after the last
 * request's reply was written; the event has the loop's lowest priority (RR_PRI_IDLE), so it
 * runs only when no other event is ready, and re-activated while Lua has work left: a
 * request whose bytes arrive meanwhile is read first. */
static void on_idle(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_worker *w = arg;
    if (w->inflight == 0 && !w->stopping && rr_lua_idle(w)) event_active(w->idle_ev, 0, 0);
    rr_log_flush(); /* nothing in flight: the batched access-log lines go out now */
}

static void on_stop(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_worker *w = arg;
    if (w->stopping) return;
    w->stopping = 1;
    if (w->tick_ev) event_del(w->tick_ev);
    rr_http_stop(w); /* closes the listener and idle connections */
    struct timeval tv = tv_of(w->opt->drain);
    event_base_loopexit(w->base, &tv); /* hard limit on the drain */
    maybe_exit_drained(w);
}

void rr_worker_stop(rr_worker *w)
{
    if (w->stop_ev) event_active(w->stop_ev, 0, 0);
}

static void on_reload(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_worker *w = arg;
    char err[2048];
    if (rr_lua_init_worker(w, err, sizeof err) != 0)
        rr_log(RR_LOG_ERROR, "worker %d: reload failed, keeping the previous configuration: %s", w->id, err);
    else
        rr_log(RR_LOG_INFO, "worker %d: configuration reloaded", w->id);
}

void rr_worker_reload(rr_worker *w)
{
    if (w->reload_ev) event_active(w->reload_ev, 0, 0);
}

/* Memory goes back after large requests (one that ended with a body of BIG_BODY or more, or
 * a Lua heap BIG_LUA_KB above its size after the last collection): once no request is in
 * flight, or after BUSY_TICKS seconds of traffic, a full Lua collection frees the requests'
 * strings and tables and malloc_trim returns the free pages of every arena to the kernel
 * (main.c keeps them for throughput otherwise). RSS comes back near idle within seconds. */

static void give_back_memory(rr_worker *w)
{
    lua_State *L = w->host ? w->host->L : NULL;
    int kb = L ? lua_gc(L, LUA_GCCOUNT, 0) : 0;
    if (!w->mem_dirty && kb > w->lua_kb_base + BIG_LUA_KB) w->mem_dirty = 1;
    if (!w->mem_dirty) return;
    if (w->inflight > 0 && ++w->mem_wait < BUSY_TICKS) return;
    if (L) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        w->lua_kb_base = lua_gc(L, LUA_GCCOUNT, 0);
    }
    /* malloc_trim releases free chunks but never the free top of a thread's arena, where the
     * large blocks of this worker merged; freeing a block of 64 KB or more trims that top down
     * to M_TRIM_THRESHOLD, lowered for the moment */
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    void *volatile probe = malloc(256 * 1024);
    free(probe);
    mallopt(M_TRIM_THRESHOLD, RR_TRIM_KEEP);
    malloc_trim(0);
    w->mem_dirty = 0;
    w->mem_wait = 0;
}

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_lua_tick(arg);
    give_back_memory(arg);
    rr_log_flush();
}

static void *worker_main(void *arg)
{
    rr_worker *w = arg;
    atomic_fetch_add(&rr_workers_up, 1);
    rr_log_batch_begin();
    event_base_dispatch(w->base);
    rr_log_batch_end();
    atomic_fetch_sub(&rr_workers_up, 1);
    return NULL;
}

int rr_worker_start(rr_worker *w)
{
    char err[512];
    w->base = rr_loop_new();
    if (!w->base || rr_http_start(w) != 0) {
        rr_log(RR_LOG_ERROR, "worker %d: cannot create its event loop or accept on the listener", w->id);
        return -1;
    }
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->reload_ev = event_new(w->base, -1, 0, on_reload, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    w->idle_ev = event_new(w->base, -1, 0, on_idle, w);
    if (w->idle_ev) event_priority_set(w->idle_ev, RR_PRI_IDLE);
    struct timeval second = { 1, 0 };
    event_add(w->tick_ev, &second);
    if (rr_fetch_init(w) != 0) {
        rr_log(RR_LOG_ERROR, "worker %d: cannot initialise libcurl", w->id);
        return -1;
    }
    if (rr_lua_init_worker(w, err, sizeof err) != 0) {
        rr_log(RR_LOG_ERROR, "worker %d: %s", w->id, err);
        return -1;
    }
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        rr_log(RR_LOG_ERROR, "worker %d: cannot start thread", w->id);
        return -1;
    }
    return 0;
}
