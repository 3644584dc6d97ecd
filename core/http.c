/* HTTP/1.1 connections on the worker's event loop: accept4 on the SO_REUSEPORT listener,
 * one event per connection, large reads into a reused per-connection buffer (grown once
 * to hold a request whose Content-Length is known), framing by http_parse.c, one request
 * in flight per connection (pipelined bytes wait in the buffer), replies in one writev,
 * header/body/idle timeouts, client-abort detection, lingering close after a refusal. */
#include "daemon.h"
#include "http.h"
#include "buf.h"
#include "rerank.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define IN_START 16384
#define BUF_KEEP (1u << 20) /* buffers above this are shrunk once idle */
#define LINGER_S 2.0        /* after a refusal: discard what the client still sends */
#define ACCEPT_PAUSE_MS 500 /* out of descriptors: stop accepting for this long */

typedef struct {
    rr_worker *w;
    struct event *accept_ev, *resume_ev;
    rr_conn *conns;
} rr_httpd;

struct rr_conn {
    rr_httpd *d;
    rr_worker *w;
    int fd;
    struct event *ev, *timer, *next_ev;
    short ev_flags;
    char *in;                  /* in[in_off..in_len) is received but not yet parsed */
    size_t in_off, in_len, in_cap;
    rr_hmsg m;
    struct rr_req *req;        /* the request in flight, or NULL */
    char *out;                 /* out[out_off..out_len) is queued reply bytes */
    size_t out_off, out_len, out_cap;
    uint64_t msg_t0, body_t0;  /* first byte of the current message; its headers done */
    uint64_t rx_us;            /* the last read that brought bytes */
    int closing;               /* close once the queued reply is written */
    int linger;                /* ... after a lingering close (unread request bytes) */
    int lingering, busy, dead, served, continue_sent, unflushed, rd_eof;
    rr_conn *prev, *next;
};

static void conn_update(rr_conn *c);
static void conn_process(rr_conn *c);
static void on_io(evutil_socket_t fd, short ev, void *arg);

static struct timeval tv_of(double s)
{
    if (s < 0) s = 0;
    struct timeval tv = { (time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6) };
    return tv;
}

const rr_hmsg *rr_conn_msg(const rr_conn *c) { return &c->m; }
void rr_conn_drop_body(rr_conn *c) { rr_hmsg_drop_body(&c->m); }

/* The request keeps the buffer its body is in (the caller frees it; the bytes stay where
 * rr_hmsg_body said): the parser's, when it gathered the body, else the input buffer, and
 * the connection reads on into a new one of the same size holding the bytes received after
 * the body. NULL (nothing changes) when no buffer could be had. */
char *rr_conn_take_body(rr_conn *c)
{
    char *gathered = rr_hmsg_take_body(&c->m);
    if (gathered) return gathered;
    const char *body = c->m.body_in;
    if (!body || body < c->in || body + c->m.body_len > c->in + c->in_len) return NULL;
    size_t rest = c->in_len - c->in_off;
    char *fresh = malloc(c->in_cap);
    if (!fresh) return NULL;
    memcpy(fresh, c->in + c->in_off, rest); /* pipelined bytes, usually none */
    char *taken = c->in;
    c->in = fresh;
    c->in_off = 0;
    c->in_len = rest;
    c->m.body_in = NULL;
    return taken;
}
int rr_conn_closing(const rr_conn *c) { return c->closing; }
void rr_conn_bind(rr_conn *c, struct rr_req *r) { c->req = r; }

static size_t in_max(const rr_conn *c) { return RR_HTTP_MAX_HEAD + c->w->opt->max_body + 4096; }
static int partial(const rr_conn *c) { return c->m.started || c->in_off < c->in_len; }

/* A Content-Length body that fits the buffer grow_for_body gives is not fed to the parser
 * until all of it is there: then it is parsed whole, in place, and handed to the request
 * without a copy (rr_conn_take_body). */
static int body_held(const rr_conn *c)
{
    const rr_hmsg *m = &c->m;
    return m->headers_done && !m->complete && !m->status && !m->chunked && !m->expect_continue && m->body_len == 0
        && m->body_expected <= BUF_KEEP && c->in_len - c->in_off < m->body_expected;
}

/* body bytes received: parsed, and held unparsed */
static size_t body_received(const rr_conn *c)
{
    return c->m.body_len + (body_held(c) ? c->in_len - c->in_off : 0);
}

/* ---- lifetime ---- */

static void conn_free(rr_conn *c)
{
    rr_worker *w = c->w;
    if (c->req) { /* the client left while its request was in flight */
        struct rr_req *r = c->req;
        c->req = NULL;
        rr_server_abort(r);
    }
    if (c->unflushed) w->unflushed--;
    event_free(c->ev);
    event_free(c->timer);
    event_free(c->next_ev);
    close(c->fd);
    rr_hmsg_free(&c->m);
    free(c->in);
    free(c->out);
    if (c->prev) c->prev->next = c->next;
    else c->d->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c);
    rr_server_check_drained(w);
}

/* Closes now, or when the callback that is running on c returns. */
static void conn_close(rr_conn *c)
{
    if (c->busy) c->dead = 1;
    else conn_free(c);
}

/* Callbacks on c run between enter and leave; leave returns 0 when c is gone. */
static void enter(rr_conn *c) { c->busy++; }
static int leave(rr_conn *c)
{
    if (--c->busy == 0 && c->dead) {
        conn_free(c);
        return 0;
    }
    return !c->dead;
}

/* The queued reply is out and the connection must go: after a refusal the client may
 * still be sending; closing with unread bytes would reset the connection and could lose
 * the answer, so shut our side and read until its EOF or LINGER_S (nginx's lingering close). */
static void conn_finish(rr_conn *c)
{
    if (!c->linger || shutdown(c->fd, SHUT_WR) != 0) {
        conn_close(c);
        return;
    }
    c->lingering = 1;
    c->in_off = c->in_len = 0;
    struct timeval tv = tv_of(LINGER_S);
    evtimer_add(c->timer, &tv);
    conn_update(c);
}

/* ---- timers ---- */

static void arm_timer(rr_conn *c)
{
    if (c->lingering || c->dead) return;
    const rr_options *o = c->w->opt;
    double now = (double)rr_now_us() / 1e6, t = -1;
    if (c->out_off < c->out_len) t = o->keepalive > 0 ? o->keepalive : 60; /* send timeout */
    else if (c->req) t = -1;                                               /* the deadline rules */
    else if (!partial(c)) t = c->served ? o->keepalive : o->header_timeout;
    else {
        /* within a request: silence longer than keepalive ends it, and so does a header
         * section slower than header_timeout or a body slower than body_min_rate */
        t = o->keepalive > 0 ? (double)c->rx_us / 1e6 + o->keepalive - now : 1e9;
        double deadline = 1e9;
        if (!c->m.headers_done) {
            if (o->header_timeout > 0) deadline = (double)c->msg_t0 / 1e6 + o->header_timeout - now;
        } else if (o->body_min_rate > 0) {
            if (!c->body_t0) c->body_t0 = rr_now_us();
            deadline = (double)c->body_t0 / 1e6 + 1.0 + (double)body_received(c) / o->body_min_rate - now;
        }
        if (deadline < t) t = deadline;
        if (t >= 1e9) t = -1;
        else if (t < 0.001) t = 0.001;
    }
    if (t <= 0) {
        event_del(c->timer);
        return;
    }
    struct timeval tv = tv_of(t);
    evtimer_add(c->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_conn *c = arg;
    if (c->lingering || c->out_off < c->out_len || c->req || !partial(c)) {
        conn_close(c); /* linger over, send timeout, or idle */
        return;
    }
    enter(c);
    c->closing = c->linger = 1;
    rr_server_reject(c->w, c, 408,
                     c->m.headers_done ? "timed out reading the request body (server.body_min_rate, server.keepalive)"
                                       : "timed out reading the request headers (server.header_timeout, server.keepalive)");
    leave(c);
}

/* ---- output ---- */

static int out_append(rr_conn *c, const char *p, size_t n)
{
    if (rr_buf_reserve(&c->out, &c->out_cap, c->out_len + n, 16384, (size_t)-1) != 0) return -1;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

/* Writes iov directly when nothing is queued; what the socket does not take is queued
 * and EV_WRITE armed. Returns -1 when the connection broke (it is being closed). */
static int conn_write(rr_conn *c, struct iovec *iov, int n)
{
    size_t total = 0, done = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    if (c->out_off == c->out_len) {
        ssize_t k;
        do k = writev(c->fd, iov, n);
        while (k < 0 && errno == EINTR);
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_close(c);
            return -1;
        }
        done = k > 0 ? (size_t)k : 0;
        if (done == total) return 0;
    }
    for (int i = 0; i < n; i++) {
        size_t skip = done < iov[i].iov_len ? done : iov[i].iov_len;
        done -= skip;
        if (out_append(c, (const char *)iov[i].iov_base + skip, iov[i].iov_len - skip) != 0) {
            conn_close(c);
            return -1;
        }
    }
    if (!c->unflushed) {
        c->unflushed = 1;
        c->w->unflushed++;
    }
    conn_update(c);
    return 0;
}

static void conn_flush(rr_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm_timer(c);
            return;
        }
        if (k <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)k;
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > BUF_KEEP) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    if (c->unflushed) {
        c->unflushed = 0;
        c->w->unflushed--;
    }
    if (c->closing) conn_finish(c);
    else conn_process(c);
    conn_update(c);
    rr_server_check_drained(c->w);
}

void rr_conn_reply(rr_conn *c, int status, const char *hdrs, size_t hlen, const char *body, size_t blen)
{
    c->req = NULL;
    if (c->dead || c->lingering) return;
    rr_worker *w = c->w;
    int incomplete = !c->m.complete;
    if (incomplete || !c->m.keepalive || w->stopping) c->closing = 1;
    if (incomplete || c->in_off < c->in_len) c->linger = 1;
    char head[64], tail[96];
    int hn = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n", status, rr_http_reason(status));
    int tn = snprintf(tail, sizeof tail, "Content-Length: %zu\r\n%s\r\n", blen,
                      c->closing ? "Connection: close\r\n"
                      : c->m.p.http_minor == 0 ? "Connection: keep-alive\r\n" : "");
    struct iovec iov[4] = {
        { head, (size_t)hn }, { (void *)hdrs, hlen }, { tail, (size_t)tn }, { (void *)body, blen },
    };
    int niov = c->m.is_head ? 3 : 4; /* HEAD: the length a GET would have, no body */
    c->served = 1;
    if (conn_write(c, iov, niov) != 0) return;
    if (c->closing) {
        if (c->out_off == c->out_len) conn_finish(c);
        return;
    }
    rr_hmsg_next(&c->m);
    c->continue_sent = 0;
    c->body_t0 = 0;
    if (c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
        if (c->in_cap > BUF_KEEP) {
            char *p = realloc(c->in, IN_START);
            if (p) {
                c->in = p;
                c->in_cap = IN_START;
            }
        }
    } else c->msg_t0 = c->rx_us = rr_now_us();
    /* pipelined bytes: parsed now when we are inside conn_process, else next loop turn */
    if (c->in_off < c->in_len && !c->busy) event_active(c->next_ev, EV_TIMEOUT, 0);
    arm_timer(c);
    conn_update(c);
}

/* ---- input ---- */

static void conn_update(rr_conn *c)
{
    if (c->dead) return;
    short want = 0;
    if (c->out_off < c->out_len) want |= EV_WRITE;
    if (c->lingering || (!c->rd_eof && c->in_len - c->in_off < in_max(c))) want |= EV_READ;
    if (want == c->ev_flags) return;
    event_del(c->ev);
    c->ev_flags = want;
    if (!want) return;
    event_assign(c->ev, c->w->base, c->fd, want | EV_PERSIST, on_io, c);
    event_add(c->ev, NULL);
}

/* Room for what the current message still needs: a body of known length arrives in one
 * or two reads instead of one per 16 KB. */
static void grow_for_body(rr_conn *c)
{
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    if (!c->m.headers_done || c->m.complete || c->m.chunked) return;
    size_t need = c->m.body_expected - c->m.body_len, have = c->in_len - c->in_off;
    if (need > BUF_KEEP) need = BUF_KEEP; /* larger bodies grow the buffer as they arrive */
    /* from in_off: the body still to parse (held bytes are part of it) and the header's last
     * byte, which a held body leaves unparsed */
    size_t want = (have > need ? have : need) + 64;
    if (c->in_cap - c->in_off >= want) return;
    if (c->in_off) {
        memmove(c->in, c->in + c->in_off, have);
        c->in_off = 0;
        c->in_len = have;
    }
    if (c->in_cap >= want) return;
    /* in 64 KB steps: the next request's body, a little larger, fits the same buffer */
    size_t cap = (want + 4096 + 65535) & ~(size_t)65535;
    char *p = realloc(c->in, cap);
    if (p) {
        c->in = p;
        c->in_cap = cap;
    }
}

static void conn_process(rr_conn *c)
{
    if (c->dead || c->lingering || c->closing || c->out_off < c->out_len) return;
    enter(c);
    while (!c->dead && !c->closing && !c->req && c->in_off < c->in_len && !body_held(c)) {
        size_t n = rr_hmsg_feed(&c->m, c->in + c->in_off, c->in_len - c->in_off);
        c->in_off += n;
        if (c->m.status) {
            c->closing = c->linger = 1;
            rr_server_reject(c->w, c, c->m.status, c->m.msg);
        } else if (c->m.complete) {
            rr_server_request(c->w, c); /* may answer at once; then the loop goes on */
        } else if (n == 0) break; /* all parsed (or a partial method token): more bytes first */
    }
    if (!c->dead && !c->closing && !c->req) {
        if (c->m.expect_continue && !c->continue_sent && c->m.body_len == 0 && c->in_off == c->in_len) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            struct iovec iov = { (void *)cont, sizeof cont - 1 };
            c->continue_sent = 1;
            conn_write(c, &iov, 1);
        }
        grow_for_body(c);
    }
    if (leave(c)) {
        arm_timer(c);
        conn_update(c);
    }
}

static void conn_read(rr_conn *c)
{
    if (c->lingering) {
        char junk[16384];
        ssize_t k;
        while ((k = recv(c->fd, junk, sizeof junk, 0)) > 0) {}
        if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) conn_close(c);
        return;
    }
    int eof = 0;
    for (;;) {
        if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
        if (c->in_len == c->in_cap) {
            if (c->in_off) {
                memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
                c->in_len -= c->in_off;
                c->in_off = 0;
            } else {
                size_t cap = c->in_cap ? c->in_cap * 2 : IN_START;
                if (cap > in_max(c)) cap = in_max(c);
                char *p = cap > c->in_cap ? realloc(c->in, cap) : NULL;
                if (!p) break; /* full: stop reading until the request in flight is answered */
                c->in = p;
                c->in_cap = cap;
            }
        }
        size_t room = c->in_cap - c->in_len;
        int was_partial = partial(c);
        ssize_t k = recv(c->fd, c->in + c->in_len, room, 0);
        if (k > 0) {
            c->rx_us = rr_now_us();
            if (!was_partial) c->msg_t0 = c->rx_us;
            c->in_len += (size_t)k;
            if ((size_t)k < room) break; /* drained: no second recv just to see EAGAIN */
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        eof = 1; /* EOF or a reset */
        break;
    }
    conn_process(c);
    if (eof && !c->dead) {
        if (c->req || c->out_off == c->out_len) conn_close(c); /* in flight: the abort path */
        else {                                                  /* close after the reply */
            c->closing = c->rd_eof = 1;
            conn_update(c);
        }
    }
}

static void on_io(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    rr_conn *c = arg;
    enter(c);
    if (ev & EV_WRITE) conn_flush(c);
    if ((ev & EV_READ) && !c->dead) conn_read(c);
    leave(c);
}

static void on_next(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    conn_process(arg);
}

/* ---- accept ---- */

static void conn_new(rr_httpd *d, int fd)
{
    rr_worker *w = d->w;
    rr_conn *c = calloc(1, sizeof *c);
    if (c) {
        c->in = malloc(IN_START);
        c->ev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_io, c);
        c->timer = evtimer_new(w->base, on_timer, c);
        c->next_ev = event_new(w->base, -1, 0, on_next, c);
    }
    if (!c || !c->in || !c->ev || !c->timer || !c->next_ev) {
        rr_log(RR_LOG_ERROR, "worker %d: out of memory for a new connection", w->id);
        if (c) {
            free(c->in);
            if (c->ev) event_free(c->ev);
            if (c->timer) event_free(c->timer);
            if (c->next_ev) event_free(c->next_ev);
            free(c);
        }
        close(fd);
        return;
    }
    c->d = d;
    c->w = w;
    c->fd = fd;
    c->in_cap = IN_START;
    rr_hmsg_init(&c->m, w->opt->max_body);
    c->m.pause_body = 1; /* body_held */
    c->next = d->conns;
    if (d->conns) d->conns->prev = c;
    d->conns = c;
    c->ev_flags = EV_READ;
    event_add(c->ev, NULL);
    arm_timer(c);
}

static void on_accept(evutil_socket_t lfd, short ev, void *arg)
{
    (void)ev;
    rr_httpd *d = arg;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* no busy loop on a full descriptor table: pause, log once per pause */
                rr_log(RR_LOG_ERROR, "worker %d: accept: %s; not accepting for %d ms", d->w->id, strerror(errno),
                       ACCEPT_PAUSE_MS);
                event_del(d->accept_ev);
                struct timeval tv = { 0, ACCEPT_PAUSE_MS * 1000 };
                evtimer_add(d->resume_ev, &tv);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK)
                rr_log(RR_LOG_WARN, "worker %d: accept: %s", d->w->id, strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_new(d, fd);
    }
}

static void on_resume_accept(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd; (void)ev;
    rr_httpd *d = arg;
    if (!d->w->stopping && d->w->listen_fd >= 0) event_add(d->accept_ev, NULL);
}

int rr_http_start(rr_worker *w)
{
    rr_httpd *d = calloc(1, sizeof *d);
    if (!d) return -1;
    d->w = w;
    d->accept_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, on_accept, d);
    d->resume_ev = evtimer_new(w->base, on_resume_accept, d);
    w->httpd = d;
    if (!d->accept_ev || !d->resume_ev || event_add(d->accept_ev, NULL) != 0) return -1;
    return 0;
}

void rr_http_stop(rr_worker *w)
{
    rr_httpd *d = w->httpd;
    if (!d) return;
    if (d->accept_ev) event_del(d->accept_ev);
    if (d->resume_ev) event_del(d->resume_ev);
    if (w->listen_fd >= 0) close(w->listen_fd); /* no new connections */
    w->listen_fd = -1;
    for (rr_conn *c = d->conns, *next; c; c = next) {
        next = c->next;
        if (!c->req && !partial(c) && c->out_off == c->out_len && !c->busy) conn_close(c); /* idle */
    }
}

void rr_http_free(rr_worker *w)
{
    rr_httpd *d = w->httpd;
    if (!d) return;
    while (d->conns) {
        d->conns->busy = 0;
        conn_free(d->conns);
    }
    if (d->accept_ev) event_free(d->accept_ev);
    if (d->resume_ev) event_free(d->resume_ev);
    if (w->listen_fd >= 0) close(w->listen_fd);
    w->listen_fd = -1;
    free(d);
    w->httpd = NULL;
}
