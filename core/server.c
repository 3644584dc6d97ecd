/* HTTP serving: one evhttp per worker thread on its own SO_REUSEPORT listener;
 * each request becomes a Lua coroutine (luahost.c). Limits, deadlines, drain. */
#include "daemon.h"
#include "rerank.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>

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

static void on_reply_complete(struct evhttp_request *req, void *arg)
{
    (void)req;
    rr_worker *w = arg;
    w->unflushed--;
    maybe_exit_drained(w);
}

/* Frees the request object; the HTTP reply must have been sent (or abandoned). */
void rr_req_finish(rr_req *r)
{
    rr_worker *w = r->w;
    if (r->cancel) r->cancel(r);
    if (r->deadline_ev) event_free(r->deadline_ev);
    if (r->abort_ev) event_free(r->abort_ev);
    if (r->resume_ev) event_free(r->resume_ev);
    if (r->co_ref != LUA_NOREF) luaL_unref(r->host->L, LUA_REGISTRYINDEX, r->co_ref);
    if (r->host) rr_lua_host_release(r->host);
    free(r->log_fields);
    if (r->evreq) { /* never answered (should not happen): answer so libevent frees it */
        struct evhttp_connection *c = evhttp_request_get_connection(r->evreq);
        if (c) evhttp_connection_set_closecb(c, NULL, NULL);
        evhttp_send_error(r->evreq, 500, NULL);
    }
    free(r);
    w->inflight--;
    maybe_exit_drained(w);
}


/* libevent 2.1's table stops at 417 and has no 422/429: name them ourselves. */
static const char *reason(int status)
{
    switch (status) {
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return NULL; /* libevent's own */
    }
}

/* One access-log line: Lua's fields when the handler returned, else the request id. */
static void access_log(rr_req *r, int status, unsigned long long total)
{
    char line[12288];
    if (r->log_fields)
        snprintf(line, sizeof line, "%s,\"status\":%d,\"total_us\":%llu", r->log_fields, status, total);
    else
        snprintf(line, sizeof line, "\"id\":\"%s\",\"status\":%d,\"total_us\":%llu", r->id, status, total);
    rr_access_log(line);
}

/* Sends status + body; headers come from the Lua table at idx_headers of `from` (or none). */
void rr_req_reply(rr_req *r, int status, lua_State *from, int idx_headers, const char *body, size_t len)
{
    if (!r->evreq) return;
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->evreq);
    int have_ct = 0;
    const char *timing = NULL;
    if (from && idx_headers && lua_istable(from, idx_headers)) {
        lua_pushnil(from);
        while (lua_next(from, idx_headers)) {
            if (lua_type(from, -2) == LUA_TSTRING && lua_type(from, -1) == LUA_TSTRING) {
                const char *k = lua_tostring(from, -2), *v = lua_tostring(from, -1);
                if (strcasecmp(k, "x-rerankd-timing") == 0) timing = v; /* completed below */
                else {
                    if (strcasecmp(k, "content-type") == 0) have_ct = 1;
                    evhttp_remove_header(out, k);
                    evhttp_add_header(out, k, v);
                }
            }
            lua_pop(from, 1);
        }
    }
    if (!have_ct) evhttp_add_header(out, "Content-Type", "application/json");
    char tbuf[512];
    unsigned long long total = (unsigned long long)(rr_now_us() - r->t0_us);
    if (timing && timing[0]) snprintf(tbuf, sizeof tbuf, "%s;total=%llu", timing, total);
    else snprintf(tbuf, sizeof tbuf, "total=%llu", total);
    evhttp_add_header(out, "x-rerankd-timing", tbuf);
    if (r->abort_ev) {
        event_free(r->abort_ev);
        r->abort_ev = NULL;
    }
    struct evhttp_connection *c = evhttp_request_get_connection(r->evreq);
    if (c) evhttp_connection_set_closecb(c, NULL, NULL);
    if (c) {
        r->w->unflushed++;
        evhttp_request_set_on_complete_cb(r->evreq, on_reply_complete, r->w);
    }
    struct evbuffer *buf = evbuffer_new();
    if (buf) evbuffer_add(buf, body, len);
    evhttp_send_reply(r->evreq, status, reason(status), buf);
    if (buf) evbuffer_free(buf);
    r->evreq = NULL;
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

void rr_req_reply_error(rr_req *r, int status, const char *type, const char *msg)
{
    char esc[1024], body[1200];
    json_escape_into(esc, sizeof esc, msg);
    int n = snprintf(body, sizeof body, "{\"error\":{\"type\":\"%s\",\"message\":\"%s\",\"param\":null}}", type, esc);
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

static void on_deadline(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_req *r = arg;
    char msg[128];
    snprintf(msg, sizeof msg, "request exceeded its deadline of %.3gs", r->w->opt->timeout);
    r->w->deadline_timeouts++;
    rr_log(RR_LOG_WARN, "request %s: %s", r->id[0] ? r->id : "-", msg);
    rr_req_reply_error(r, 504, "timeout_error", msg);
    rr_req_finish(r);
}

static void on_client_close(struct evhttp_connection *c, void *arg)
{
    (void)c;
    rr_req *r = arg;
    rr_log(RR_LOG_INFO, "request %s: connection closed before the reply (client gone or shutdown); cancelling", r->id);
    r->aborted = 1;
    /* libevent detached the unanswered request from the dying connection: we own it now */
    if (r->evreq && !evhttp_request_get_connection(r->evreq)) evhttp_request_free(r->evreq);
    r->evreq = NULL;
    rr_req_finish(r);
}

/* evhttp stops reading a connection while its request is being handled, so it never sees
 * the client go away. While parked we watch the socket ourselves: EOF (or an error) means
 * the client left, so cancel the request's transfers and drop the connection. Bytes
 * instead (a pipelined request) end the watch: those are evhttp's to read later. */
static void on_client_readable(evutil_socket_t fd, short ev, void *arg)
{
    (void)ev;
    rr_req *r = arg;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) return;
    rr_log(RR_LOG_INFO, "request %s: client closed the connection before the reply; cancelling", r->id);
    r->aborted = 1;
    r->w->client_aborts++;
    access_log(r, 499, (unsigned long long)(rr_now_us() - r->t0_us)); /* nginx's "client closed" */
    struct evhttp_connection *evcon = r->evreq ? evhttp_request_get_connection(r->evreq) : NULL;
    r->evreq = NULL; /* freed with its connection below */
    if (evcon) {
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        evhttp_connection_free(evcon);
    }
    rr_req_finish(r);
}

/* Called by luahost when the coroutine yields on I/O: arm deadline and abort detection. */
void rr_req_parked(rr_req *r)
{
    if (!r->deadline_ev) {
        r->deadline_ev = evtimer_new(r->w->base, on_deadline, r);
        double left = r->w->opt->timeout - (double)(rr_now_us() - r->t0_us) / 1e6;
        struct timeval tv = tv_of(left > 0 ? left : 0);
        evtimer_add(r->deadline_ev, &tv);
        struct evhttp_connection *c = evhttp_request_get_connection(r->evreq);
        if (c) {
            evhttp_connection_set_closecb(c, on_client_close, r);
            struct bufferevent *bev = evhttp_connection_get_bufferevent(c);
            evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
            if (fd >= 0) {
                r->abort_ev = event_new(r->w->base, fd, EV_READ, on_client_readable, r);
                if (r->abort_ev) event_add(r->abort_ev, NULL);
            }
        }
    }
}

/* ---- request entry ---- */

/* RFC 9112 §6.3: differing Content-Length values are a framing error (a request-smuggling
 * vector behind a proxy that reads the other one). libevent framed the body with the first. */
static int conflicting_lengths(struct evhttp_request *evreq)
{
    const char *first = NULL;
    struct evkeyvalq *hs = evhttp_request_get_input_headers(evreq);
    for (struct evkeyval *h = hs->tqh_first; h; h = h->next.tqe_next) {
        if (strcasecmp(h->key, "Content-Length") != 0) continue;
        if (!first) first = h->value;
        else if (strcmp(first, h->value) != 0) return 1;
    }
    return 0;
}

static void on_request(struct evhttp_request *evreq, void *arg)
{
    rr_worker *w = arg;
    rr_req *r = calloc(1, sizeof *r);
    if (!r) {
        evhttp_send_error(evreq, 503, "out of memory");
        return;
    }
    r->w = w;
    r->evreq = evreq;
    r->co_ref = LUA_NOREF;
    r->t0_us = rr_now_us();
    w->inflight++;
    rr_req_assign_id(r);
    if (conflicting_lengths(evreq)) {
        evhttp_add_header(evhttp_request_get_output_headers(evreq), "Connection", "close");
        rr_req_reply_error(r, 400, "invalid_request_error", "conflicting Content-Length headers");
        rr_req_finish(r);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(evreq);
    if (evbuffer_get_length(in) > w->opt->max_body) {
        char msg[160];
        snprintf(msg, sizeof msg, "request body is %zu bytes; the limit is %zu (server.max_body)",
                 evbuffer_get_length(in), w->opt->max_body);
        evhttp_add_header(evhttp_request_get_output_headers(evreq), "Connection", "close");
        rr_req_reply_error(r, 413, "invalid_request_error", msg);
        rr_req_finish(r);
        return;
    }
    rr_lua_start_request(r);
}

static void on_stop(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_worker *w = arg;
    if (w->stopping) return;
    w->stopping = 1;
    if (w->tick_ev) event_del(w->tick_ev);
    if (w->bound) {
        evhttp_del_accept_socket(w->http, w->bound); /* closes the listener: no new connections */
        w->bound = NULL;
    }
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

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_lua_tick(arg);
}

static void *worker_main(void *arg)
{
    rr_worker *w = arg;
    atomic_fetch_add(&rr_workers_up, 1);
    event_base_dispatch(w->base);
    atomic_fetch_sub(&rr_workers_up, 1);
    return NULL;
}

int rr_worker_start(rr_worker *w)
{
    char err[512];
    w->base = event_base_new();
    w->http = w->base ? evhttp_new(w->base) : NULL;
    if (!w->http) {
        rr_log(RR_LOG_ERROR, "worker %d: cannot create event loop", w->id);
        return -1;
    }
    /* Bodies between max_body and this hard cap get a JSON 413 from us; larger ones
     * are refused by libevent while reading (its own 413) so memory stays bounded. */
    size_t hard = w->opt->max_body * 4 < (64u << 20) ? (64u << 20) : w->opt->max_body * 4;
    evhttp_set_max_body_size(w->http, (ev_ssize_t)hard);
    evhttp_set_max_headers_size(w->http, 64 * 1024);
    struct timeval ka = tv_of(w->opt->keepalive);
    evhttp_set_timeout_tv(w->http, &ka);
    /* Every method, known or not, reaches the Lua router, which answers 405 in JSON: libevent's
     * own refusal is a 501 with an HTML body (DESIGN §6: errors are JSON, 4xx for the client). */
    evhttp_set_allowed_methods(w->http, 0xffff);
    evhttp_set_gencb(w->http, on_request, w);
    w->bound = evhttp_accept_socket_with_handle(w->http, w->listen_fd);
    if (!w->bound) {
        rr_log(RR_LOG_ERROR, "worker %d: cannot accept on the listener", w->id);
        return -1;
    }
    w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
    w->reload_ev = event_new(w->base, -1, 0, on_reload, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
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
