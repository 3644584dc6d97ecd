/* The HTTP/1.1 server layer: request framing over http_parser (http_parse.c, socket-free,
 * fuzzed by tests/fuzz/fuzz_http.c) and connections on the worker's event loop (http.c). */
#ifndef RERANKD_HTTP_H
#define RERANKD_HTTP_H
#include <stddef.h>
#include <stdint.h>
#include <http_parser.h>

#define RR_HTTP_MAX_HEADERS 100
#define RR_HTTP_MAX_HEAD (64 * 1024) /* request line + header section */
#define RR_HTTP_MAX_URL (8 * 1024)

typedef struct { uint32_t k, kl, v, vl; } rr_hfield; /* offsets into rr_hmsg.head */

/* One request message being parsed. Feed bytes until `complete` (the parser then pauses:
 * pipelined bytes wait for rr_hmsg_next) or `status` (a rejection: answer it, then close). */
typedef struct {
    http_parser p;
    size_t max_body;
    char method[33];           /* the token the client sent, e.g. "GET", "FOO" */
    char *head;                /* the URL, then header names and values */
    size_t head_len, head_cap, url_len;
    rr_hfield hdr[RR_HTTP_MAX_HEADERS];
    int nhdr, in_value;
    char *body;                /* decoded body; reused across messages */
    size_t body_len, body_cap;
    const char *body_in;       /* or: a Content-Length body that arrived whole, in place in
                                * the caller's input (valid until it reads on: rr_hmsg_body) */
    size_t body_expected;      /* Content-Length, else 0 */
    int started;               /* bytes of this message seen */
    int headers_done, complete, expect_continue, is_head, keepalive, chunked;
    int pause_body;            /* set by the caller: pause after the headers of a Content-Length
                                * body (no 100-continue), so it can feed the body whole */
    int status;                /* rejection status (400, 413, ...) or 0 */
    char msg[200];             /* rejection message */
} rr_hmsg;

void rr_hmsg_init(rr_hmsg *m, size_t max_body);
void rr_hmsg_free(rr_hmsg *m);
/* Parses up to len bytes; returns how many were consumed. */
size_t rr_hmsg_feed(rr_hmsg *m, const char *data, size_t len);
/* Forgets the completed message and resumes the parser for the next one. */
void rr_hmsg_next(rr_hmsg *m);
/* The body's bytes (body_len of them): in the input fed to rr_hmsg_feed when a
 * Content-Length body arrived in one piece (no copy; valid until the caller moves or reads
 * more input), else the decoded copy. */
static inline const char *rr_hmsg_body(const rr_hmsg *m) { return m->body_in ? m->body_in : m->body; }
/* Frees a large body buffer once its bytes were copied (ctx.body); body_len stays. */
void rr_hmsg_drop_body(rr_hmsg *m);
/* A body the parser gathered (chunked, or fed in pieces): its buffer, handed to the caller
 * (who frees it; the bytes start at the returned pointer). NULL when the body is in place. */
char *rr_hmsg_take_body(rr_hmsg *m);
/* First header named `name` (case-insensitive), or NULL. */
const char *rr_hmsg_header(const rr_hmsg *m, const char *name, size_t *len);
/* The raw path (before '?'/'#') and query (after '?', before '#') of the request target. */
void rr_hmsg_target(const rr_hmsg *m, const char **path, size_t *plen, const char **query, size_t *qlen);
const char *rr_http_reason(int status);

/* ---- http.c: connections (daemon only) ---- */
typedef struct rr_conn rr_conn;
struct rr_worker;
struct rr_req;
int rr_http_start(struct rr_worker *w);  /* accept on w->listen_fd */
void rr_http_stop(struct rr_worker *w);  /* drain: close the listener and idle connections */
void rr_http_free(struct rr_worker *w);  /* after the loop ended: close everything */
const rr_hmsg *rr_conn_msg(const rr_conn *c);
/* The request body has been copied out: a large buffer is freed now, not after the reply. */
void rr_conn_drop_body(rr_conn *c);
/* The buffer the request body's bytes are in (the parser's, or the input buffer it arrived
 * in whole), handed over: the caller frees it; the connection takes a new one. NULL when
 * none could be had. */
char *rr_conn_take_body(rr_conn *c);
/* Queues the reply of the request in flight: status line, hdrs ("Name: value\r\n" lines),
 * Content-Length, Connection; body dropped for HEAD. One writev when the socket takes it. */
void rr_conn_reply(rr_conn *c, int status, const char *hdrs, size_t hlen, const char *body, size_t blen);
int rr_conn_closing(const rr_conn *c);   /* the reply will say Connection: close */

/* server.c: what a connection hands to the worker */
void rr_conn_bind(rr_conn *c, struct rr_req *r); /* r is in flight on c */
void rr_server_request(struct rr_worker *w, rr_conn *c);
void rr_server_reject(struct rr_worker *w, rr_conn *c, int status, const char *msg);
void rr_server_abort(struct rr_req *r);  /* the client left while r was in flight */
void rr_server_check_drained(struct rr_worker *w);
#endif
