/* Logging: leveled error log lines (text, or JSON objects with log.format: json) and one
 * JSON access-log line per request, each to stderr or a file; rr_log_reopen() (SIGUSR1) reopens files in place for log rotation.
 * Each write(2) is of whole lines on an O_APPEND descriptor, so worker threads never
 * interleave within a line. A worker batches its access-log lines (nginx's access_log
 * buffer= flush=): they go out when the worker has no request in flight, when 32 KB are
 * pending, on its once-a-second tick and when it exits, so a busy worker does not pay a
 * write(2) per request and an idle one leaves nothing pending. */
#include "rerank.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int min_level = RR_LOG_INFO;
static int json_format; /* log.format: json -> error-log lines are JSON objects too */
static const char *const names[] = { "debug", "info", "warn", "error" };
static int error_fd = 2, access_fd = 2; /* -1 = off */
static char error_path[1024], access_path[1024];

void rr_log_set_level(int level) { min_level = level; }
void rr_log_set_json(int on) { json_format = on; }

/* path: "stderr", "off", or a file. Opens onto the same descriptor number when reopening,
 * so threads writing concurrently never see a closed fd. */
static int open_into(int *fd, char *saved, size_t cap, const char *path)
{
    if (path) snprintf(saved, cap, "%s", path);
    if (!saved[0] || strcmp(saved, "stderr") == 0) {
        *fd = 2;
        return 0;
    }
    if (strcmp(saved, "off") == 0) {
        *fd = -1;
        return 0;
    }
    int nfd = open(saved, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (nfd < 0) return -1;
    if (*fd > 2) {
        dup2(nfd, *fd); /* atomic swap under concurrent writers */
        close(nfd);
    } else {
        *fd = nfd;
    }
    return 0;
}

int rr_log_open(const char *error_file, const char *access_file)
{
    if (open_into(&error_fd, error_path, sizeof error_path, error_file) != 0) return -1;
    if (open_into(&access_fd, access_path, sizeof access_path, access_file) != 0) return -1;
    return 0;
}

int rr_log_reopen(void)
{
    int a = open_into(&error_fd, error_path, sizeof error_path, NULL);
    int b = open_into(&access_fd, access_path, sizeof access_path, NULL);
    return a || b ? -1 : 0;
}

static void write_line(int fd, const char *buf, size_t len)
{
    if (fd < 0) return;
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w <= 0) return;
        buf += w;
        len -= (size_t)w;
    }
}

#define ALOG_BATCH 32768
typedef struct {
    size_t len;
    char p[ALOG_BATCH];
} alog_batch;
static _Thread_local alog_batch *batch; /* this worker's pending access-log lines */
_Static_assert(sizeof(((rr_alog *)0)->p) + 64 < ALOG_BATCH, "an access-log line fits in a batch");

void rr_log_batch_begin(void)
{
    if (!batch && (batch = malloc(sizeof *batch)) != NULL) batch->len = 0;
}

void rr_log_flush(void)
{
    if (!batch || !batch->len) return;
    write_line(access_fd, batch->p, batch->len);
    batch->len = 0;
}

void rr_log_batch_end(void)
{
    rr_log_flush();
    free(batch);
    batch = NULL;
}

static void access_line(const char *line, size_t n)
{
    if (!batch) {
        write_line(access_fd, line, n);
        return;
    }
    if (batch->len + n > sizeof batch->p) rr_log_flush();
    memcpy(batch->p + batch->len, line, n); /* n < sizeof batch->p: a line's buffer is smaller */
    batch->len += n;
}

/* UTC, millisecond precision: "2026-12-03T07:30:00.123Z" (24 bytes). The part up to the
 * second is formatted once a second per thread (every access-log line takes one). */
static size_t timestamp(char *buf, size_t cap)
{
    static _Thread_local time_t cached_sec = (time_t)-1;
    static _Thread_local char cached[24];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (cap < 25) return 0;
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        int n = snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (n != 20) return 0; /* a year past 9999 */
        cached_sec = ts.tv_sec;
    }
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    memcpy(buf, cached, 20);
    buf[20] = (char)('0' + ms / 100);
    buf[21] = (char)('0' + ms / 10 % 10);
    buf[22] = (char)('0' + ms % 10);
    buf[23] = 'Z';
    buf[24] = 0;
    return 24;
}

/* {"ts":"…","level":"…","msg":"…"}: the message JSON-escaped (control characters as \u00XX;
 * other bytes as they are), cut at a character boundary of the escape if it is too long. */
static size_t json_line(char *out, size_t cap, int level, const char *msg)
{
    size_t n = (size_t)snprintf(out, cap, "{\"ts\":\"");
    n += timestamp(out + n, cap - n);
    n += (size_t)snprintf(out + n, cap - n, "\",\"level\":\"%s\",\"msg\":\"", names[level]);
    for (const unsigned char *p = (const unsigned char *)msg; *p && n + 8 < cap; p++) {
        if (*p == '"' || *p == '\\') { out[n++] = '\\'; out[n++] = (char)*p; }
        else if (*p == '\n') { out[n++] = '\\'; out[n++] = 'n'; }
        else if (*p == '\t') { out[n++] = '\\'; out[n++] = 't'; }
        else if (*p < 0x20 || *p == 0x7f) n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
        else out[n++] = (char)*p;
    }
    out[n++] = '"';
    out[n++] = '}';
    out[n++] = '\n';
    return n;
}

void rr_log(int level, const char *fmt, ...)
{
    if (level < min_level) return;
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    if (json_format) {
        char msg[6144];
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        write_line(error_fd, line, json_line(line, sizeof line, level, msg));
        return;
    }
    size_t n = timestamp(line, sizeof line);
    n += (size_t)snprintf(line + n, sizeof line - n, " [%s] ", names[level]);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : (n + (size_t)m < sizeof line - 1 ? n + (size_t)m : sizeof line - 2);
    line[n++] = '\n';
    write_line(error_fd, line, n);
}

/* ---- the access log's JSON: every line goes through rr_alog (one encoder) ---- */

void rr_alog_init(rr_alog *b)
{
    b->len = 0;
    b->cut = 0;
    b->depth = 0;
    b->first[0] = 1;
}

static void alog_put(rr_alog *b, const char *s, size_t n)
{
    if (b->cut || b->len + n >= sizeof b->p) {
        b->cut = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* a JSON string: quotes, backslashes and control bytes escaped; bytes that are not UTF-8
 * become U+FFFD, so a line is always valid JSON whatever a client sent */
static void alog_string(rr_alog *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    alog_put(b, "\"", 1);
    size_t i = 0;
    while (i < n && !b->cut) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) { /* one sequence at a time: copied when valid, else U+FFFD */
            size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (len <= n - i && rr_utf8_invalid_at((const unsigned char *)s + i, len) == len) {
                alog_put(b, s + i, len);
                i += len;
            } else {
                alog_put(b, "\\ufffd", 6);
                i++;
            }
            continue;
        }
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            alog_put(b, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            alog_put(b, e, 6);
        } else {
            alog_put(b, (const char *)&c, 1);
        }
        i++;
    }
    alog_put(b, "\"", 1);
}

static void alog_key(rr_alog *b, const char *key)
{
    if (!b->first[b->depth]) alog_put(b, ",", 1);
    b->first[b->depth] = 0;
    alog_string(b, key, strlen(key));
    alog_put(b, ":", 1);
}

void rr_alog_str(rr_alog *b, const char *key, const char *s, size_t n)
{
    alog_key(b, key);
    alog_string(b, s ? s : "", s ? n : 0);
}

/* v in decimal, as "%lld" writes it (most access-log numbers: counts, statuses, µs) */
static size_t fmt_int(char *out, long long v)
{
    char tmp[24];
    size_t n = 0, w = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) out[w++] = '-';
    while (n) out[w++] = tmp[--n];
    out[w] = 0;
    return w;
}

void rr_alog_num(rr_alog *b, const char *key, double v)
{
    char num[40];
    int n;
    if (v != v || v > 1e300 || v < -1e300) n = snprintf(num, sizeof num, "null");
    else if (v > -9e15 && v < 9e15 && v == (double)(long long)v) n = (int)fmt_int(num, (long long)v);
    else n = snprintf(num, sizeof num, "%.17g", v);
    alog_key(b, key);
    alog_put(b, num, (size_t)n);
}

void rr_alog_bool(rr_alog *b, const char *key, int v)
{
    alog_key(b, key);
    alog_put(b, v ? "true" : "false", v ? 4 : 5);
}

/* fields is the content of another rr_alog (b2.p, b2.len): encoded already, by this file */
void rr_alog_fields(rr_alog *b, const char *fields, size_t n)
{
    if (!n) return;
    if (!b->first[b->depth]) alog_put(b, ",", 1);
    b->first[b->depth] = 0;
    alog_put(b, fields, n);
}

void rr_alog_open(rr_alog *b, const char *key)
{
    alog_key(b, key);
    alog_put(b, "{", 1);
    if (b->depth + 1 < (int)sizeof b->first) b->first[++b->depth] = 1;
}

void rr_alog_close(rr_alog *b)
{
    alog_put(b, "}", 1);
    if (b->depth > 0) b->depth--;
}

/* {"ts":"...",<fields>}: one write; a line that did not fit is dropped, never cut */
void rr_alog_write(rr_alog *b)
{
    if (access_fd < 0 || b->cut) return;
    char line[sizeof b->p + 64];
    size_t n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"");
    n += timestamp(line + n, sizeof line - n);
    line[n++] = '"';
    if (b->len) line[n++] = ',';
    memcpy(line + n, b->p, b->len);
    n += b->len;
    line[n++] = '}';
    line[n++] = '\n';
    access_line(line, n);
}
