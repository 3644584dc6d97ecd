/* Request framing: http_parser (Node's, Debian libhttp-parser-dev) plus our limits and
 * RFC 9112 checks, on plain buffers (no sockets: tests/fuzz/fuzz_http.c drives it alone).
 * Every rejection is a status + message; the caller answers it in JSON and closes. */
#include "http.h"
#include "buf.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BODY_KEEP (1u << 20) /* a body buffer above this is freed after its message */

static rr_hmsg *msg_of(http_parser *p) { return p->data; }

static int reject(rr_hmsg *m, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int reject(rr_hmsg *m, int status, const char *fmt, ...)
{
    if (m->status) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->msg, sizeof m->msg, fmt, ap);
    va_end(ap);
    m->status = status;
    return -1;
}

static int head_append(rr_hmsg *m, const char *at, size_t len)
{
    if (m->head_len + len > RR_HTTP_MAX_HEAD)
        return reject(m, 431, "the request line and headers exceed %d bytes", RR_HTTP_MAX_HEAD);
    if (rr_buf_reserve(&m->head, &m->head_cap, m->head_len + len, 1024, (size_t)-1) != 0)
        return reject(m, 503, "out of memory");
    memcpy(m->head + m->head_len, at, len);
    m->head_len += len;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    rr_hmsg *m = msg_of(p);
    if (m->url_len + len > RR_HTTP_MAX_URL)
        return reject(m, 414, "the request target is longer than %d bytes", RR_HTTP_MAX_URL);
    if (head_append(m, at, len) != 0) return -1;
    m->url_len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    rr_hmsg *m = msg_of(p);
    if (m->in_value != 1) { /* a new field (else a continuation of the same name) */
        if (m->nhdr == RR_HTTP_MAX_HEADERS)
            return reject(m, 431, "more than %d header fields", RR_HTTP_MAX_HEADERS);
        rr_hfield *f = &m->hdr[m->nhdr++];
        f->k = (uint32_t)m->head_len;
        f->kl = f->v = f->vl = 0;
        m->in_value = 1;
    }
    if (head_append(m, at, len) != 0) return -1;
    m->hdr[m->nhdr - 1].kl += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    rr_hmsg *m = msg_of(p);
    if (m->nhdr == 0) return reject(m, 400, "header value without a name");
    rr_hfield *f = &m->hdr[m->nhdr - 1];
    if (m->in_value != 2) {
        f->v = (uint32_t)m->head_len;
        f->vl = 0;
        m->in_value = 2;
    }
    for (size_t i = 0; i < len; i++)
        if (at[i] == 0 || at[i] == '\r' || at[i] == '\n')
            return reject(m, 400, "a header value contains a NUL, CR or LF byte");
    if (head_append(m, at, len) != 0) return -1;
    f->vl += (uint32_t)len;
    return 0;
}

static int name_is(const rr_hmsg *m, const rr_hfield *f, const char *name)
{
    return f->kl == strlen(name) && strncasecmp(m->head + f->k, name, f->kl) == 0;
}

/* The value with optional whitespace trimmed equals `want` (case-insensitive). */
static int value_is(const rr_hmsg *m, const rr_hfield *f, const char *want)
{
    const char *v = m->head + f->v;
    size_t n = f->vl;
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    return n == strlen(want) && strncasecmp(v, want, n) == 0;
}

/* Framing and expectation checks over the collected headers; sets m->status on a refusal.
 * Also run when http_parser itself refused, so the answer names the real problem. */
static void classify(rr_hmsg *m)
{
    const rr_hfield *cl = NULL, *te = NULL, *expect = NULL;
    int ncl = 0, nte = 0, cl_differ = 0;
    for (int i = 0; i < m->nhdr; i++) {
        const rr_hfield *f = &m->hdr[i];
        if (name_is(m, f, "content-length")) {
            if (cl && (cl->vl != f->vl || memcmp(m->head + cl->v, m->head + f->v, f->vl) != 0)) cl_differ = 1;
            if (!cl) cl = f;
            ncl++;
        } else if (name_is(m, f, "transfer-encoding")) {
            te = te ? te : f;
            nte++;
        } else if (name_is(m, f, "expect") && !expect) {
            expect = f;
        }
    }
    if (cl_differ) reject(m, 400, "conflicting Content-Length headers");
    else if (ncl > 1) reject(m, 400, "more than one Content-Length header");
    else if (cl && te) reject(m, 400, "both Content-Length and Transfer-Encoding");
    else if (te && (nte > 1 || !value_is(m, te, "chunked")))
        reject(m, 501, "Transfer-Encoding \"%.*s\" is not supported (only chunked)", (int)(te->vl > 64 ? 64 : te->vl),
               m->head + te->v);
    else if (expect && !value_is(m, expect, "100-continue"))
        reject(m, 417, "Expect \"%.*s\" is not supported (only 100-continue)", (int)(expect->vl > 64 ? 64 : expect->vl),
               m->head + expect->v);
}

static int on_headers_complete(http_parser *p)
{
    rr_hmsg *m = msg_of(p);
    if (m->status) return -1;
    if (p->http_major != 1 || p->http_minor > 1)
        return reject(m, 400, "HTTP version %u.%u is not supported (1.0 and 1.1 are)", p->http_major, p->http_minor);
    classify(m);
    if (m->status) return -1;
    m->chunked = (p->flags & F_CHUNKED) != 0;
    if (!m->chunked && p->content_length != ULLONG_MAX) {
        if (p->content_length > m->max_body)
            return reject(m, 413, "request body is %llu bytes; the limit is %zu (server.max_body)",
                          (unsigned long long)p->content_length, m->max_body);
        m->body_expected = (size_t)p->content_length;
    }
    const rr_hfield *f = NULL;
    for (int i = 0; i < m->nhdr && !f; i++)
        if (name_is(m, &m->hdr[i], "expect")) f = &m->hdr[i];
    m->expect_continue = f && p->http_minor == 1 && (m->chunked || m->body_expected > 0);
    m->keepalive = http_should_keep_alive(p) && !p->upgrade;
    m->is_head = strcmp(m->method, "HEAD") == 0;
    /* a Content-Length body: the caller may hold its bytes until they are all there, so that
     * on_body sees it whole, in place (not with 100-continue: the client waits for us) */
    if (m->pause_body && !m->chunked && m->body_expected > 0 && !m->expect_continue) http_parser_pause(p, 1);
    m->headers_done = 1;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    rr_hmsg *m = msg_of(p);
    if (len > m->max_body - m->body_len)
        return reject(m, 413, "request body exceeds %zu bytes (server.max_body)", m->max_body);
    if (m->body_len == 0 && !m->chunked && len == m->body_expected) { /* whole: no copy */
        m->body_in = at;
        m->body_len = len;
        return 0;
    }
    /* room for the whole body at once, up to BODY_KEEP: a client announcing a large length
     * does not get that memory before it sends the bytes */
    size_t want = m->body_len + len;
    if (!m->body_len && m->body_expected > want) want = m->body_expected < BODY_KEEP ? m->body_expected : want;
    if (rr_buf_reserve(&m->body, &m->body_cap, want, 16384, m->max_body) != 0)
        return reject(m, 503, "out of memory");
    memcpy(m->body + m->body_len, at, len);
    m->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    rr_hmsg *m = msg_of(p);
    m->complete = 1;
    http_parser_pause(p, 1); /* one message at a time: pipelined bytes wait */
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void rr_hmsg_init(rr_hmsg *m, size_t max_body)
{
    memset(m, 0, sizeof *m);
    m->max_body = max_body;
    http_parser_init(&m->p, HTTP_REQUEST);
    m->p.data = m;
    m->p.lenient_http_headers = 1; /* control bytes in values pass (NUL, CR, LF: on_header_value) */
}

void rr_hmsg_free(rr_hmsg *m)
{
    free(m->head);
    free(m->body);
    m->head = m->body = NULL;
    m->head_cap = m->body_cap = 0;
}

char *rr_hmsg_take_body(rr_hmsg *m)
{
    if (m->body_in || !m->body || !m->body_len) return NULL;
    char *b = m->body;
    m->body = NULL;
    m->body_cap = 0;
    return b;
}

void rr_hmsg_drop_body(rr_hmsg *m)
{
    if (m->body_cap <= BODY_KEEP) return; /* small buffers are reused by the next message */
    free(m->body);
    m->body = NULL;
    m->body_cap = 0;
}

void rr_hmsg_next(rr_hmsg *m)
{
    m->head_len = m->url_len = m->body_len = m->body_expected = 0;
    m->body_in = NULL;
    m->nhdr = m->in_value = 0;
    m->started = m->headers_done = m->complete = m->expect_continue = m->is_head = m->keepalive = m->chunked = 0;
    m->status = 0;
    m->msg[0] = m->method[0] = 0;
    if (m->body_cap > BODY_KEEP) {
        free(m->body);
        m->body = NULL;
        m->body_cap = 0;
    }
    http_parser_init(&m->p, HTTP_REQUEST);
    m->p.data = m;
    m->p.lenient_http_headers = 1; /* control bytes in values pass (NUL, CR, LF: on_header_value) */
}

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int known_method(const char *s)
{
#define XX(num, name, string) if (strcmp(s, #string) == 0) return 1;
    HTTP_METHOD_MAP(XX)
#undef XX
    return 0;
}

size_t rr_hmsg_feed(rr_hmsg *m, const char *data, size_t len)
{
    if (m->complete || m->status || len == 0) return 0; /* (len 0 would mean EOF to http_parser) */
    if (HTTP_PARSER_ERRNO(&m->p) == HPE_PAUSED) http_parser_pause(&m->p, 0); /* after the headers */
    size_t used = 0;
    if (!m->started) {
        /* http_parser knows a fixed list of methods; any other token still reaches the
         * router (which answers 405): it is parsed as GET and remembered as sent. */
        while (used < len && (data[used] == '\r' || data[used] == '\n')) used++;
        size_t i = used;
        while (i < len && i - used < sizeof m->method - 1 && is_tchar((unsigned char)data[i])) i++;
        if (i == len && i - used < sizeof m->method - 1) return used; /* the method is not complete yet */
        m->started = 1;
        size_t tl = i - used;
        if (tl > 0 && i < len && data[i] == ' ') {
            memcpy(m->method, data + used, tl);
            m->method[tl] = 0;
            if (!known_method(m->method)) {
                http_parser_execute(&m->p, &settings, "GET ", 4);
                used = i + 1;
            }
        }
    }
    if (used < len) used += http_parser_execute(&m->p, &settings, data + used, len - used);
    enum http_errno e = HTTP_PARSER_ERRNO(&m->p);
    if (e == HPE_OK || e == HPE_PAUSED || m->status) return used;
    if (!m->headers_done) classify(m);
    if (e == HPE_HEADER_OVERFLOW)
        reject(m, 431, "the request line and headers exceed %d bytes", RR_HTTP_MAX_HEAD);
    else if (e == HPE_INVALID_CHUNK_SIZE)
        reject(m, 400, "malformed chunked body: invalid chunk size");
    else
        reject(m, 400, "malformed request: %s", http_errno_description(e));
    return used;
}

const char *rr_hmsg_header(const rr_hmsg *m, const char *name, size_t *len)
{
    for (int i = 0; i < m->nhdr; i++)
        if (name_is(m, &m->hdr[i], name)) {
            if (len) *len = m->hdr[i].vl;
            return m->head + m->hdr[i].v;
        }
    return NULL;
}

void rr_hmsg_target(const rr_hmsg *m, const char **path, size_t *plen, const char **query, size_t *qlen)
{
    const char *u = m->head, *end = m->head + m->url_len;
    static const char slash[] = "/";
    if (m->url_len > 7 && (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0)) {
        u = memchr(u, ':', (size_t)(end - u)) + 3; /* absolute-form: skip scheme://authority */
        while (u < end && *u != '/' && *u != '?' && *u != '#') u++;
    }
    const char *p = u;
    while (p < end && *p != '?' && *p != '#') p++;
    *path = p > u ? u : slash;
    *plen = p > u ? (size_t)(p - u) : 1;
    *query = "";
    *qlen = 0;
    if (p < end && *p == '?') {
        const char *q = ++p;
        while (p < end && *p != '#') p++;
        *query = q;
        *qlen = (size_t)(p - q);
    }
}

const char *rr_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: {
        const char *s = http_status_str((enum http_status)status);
        return s && s[0] != '<' ? s : "Unknown";
    }
    }
}
