/* libFuzzer harness for the HTTP request framing (core/http_parse.c over http_parser):
 * raw request bytes, fed in pieces whose sizes come from the input itself, messages parsed
 * one after another as on a keep-alive connection, with and without pause_body (core/http.c
 * then holds a Content-Length body's bytes until all are there). Checks the invariants the
 * connection code relies on: progress, a paused parser after a complete message, bounded
 * buffers, a held body parsed whole in place. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static void check(int ok)
{
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t step = (size_t)data[0] % 17; /* 0: everything at once, else pieces of 1..16 bytes */
    const char *p = (const char *)data + 1;
    size_t len = size - 1, off = 0;
    size_t avail = step && step < len ? step : len; /* bytes "received" so far */
    rr_hmsg m;
    rr_hmsg_init(&m, 4096);
    m.pause_body = (data[0] / 17) & 1;
    int messages = 0;
    while (messages < 64) {
        int held = m.pause_body && m.headers_done && !m.complete && !m.status && !m.chunked && !m.expect_continue
            && m.body_len == 0 && avail - off < m.body_expected;
        if (held && avail < len) { /* as body_held: more bytes first */
            avail = step && avail + step < len ? avail + step : len;
            continue;
        }
        size_t n = rr_hmsg_feed(&m, p + off, avail - off);
        check(n <= avail - off);
        off += n;
        check(m.head_len <= RR_HTTP_MAX_HEAD && m.url_len <= m.head_len && m.nhdr <= RR_HTTP_MAX_HEADERS);
        check(m.body_len <= m.max_body);
        if (m.status) {
            check(m.status >= 400 && m.status < 600 && m.msg[0]);
            break;
        }
        if (m.complete) {
            const char *path, *query;
            size_t plen, qlen;
            rr_hmsg_target(&m, &path, &plen, &query, &qlen);
            check(plen >= 1 && m.method[0]);
            for (int i = 0; i < m.nhdr; i++)
                check(m.hdr[i].k + m.hdr[i].kl <= m.head_len && m.hdr[i].v + m.hdr[i].vl <= m.head_len);
            (void)rr_hmsg_header(&m, "x-request-id", NULL);
            check(rr_hmsg_feed(&m, p + off, avail - off) == 0); /* paused until next */
            if (m.pause_body && !m.chunked && !m.expect_continue && m.body_expected > 0 && m.body_len == m.body_expected
                && !step)
                check(m.body_in != NULL); /* fed whole: in place */
            if (!m.keepalive) break;
            rr_hmsg_next(&m);
            messages++;
            continue;
        }
        if (n > 0) continue; /* paused after the headers: the rest is fed next */
        if (avail == len) break; /* waits for bytes that will never come */
        avail = step && avail + step < len ? avail + step : len;
    }
    rr_hmsg_free(&m);
    return 0;
}
