/* Logging: leveled error log lines (text, or JSON objects with log.format: json) and one
 * JSON access-log line per request, each to stderr or a file; rr_log_reopen() (SIGUSR1) reopens files in place for log rotation.
 * Each line is a single write(2) on an O_APPEND descriptor, so worker threads never
 * interleave within a line. */
#include "rerank.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
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

static size_t timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    return n > 0 ? (size_t)n : 0;
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

/* {"ts":..., <fields>} where fields is a JSON object body without braces */
void rr_access_log(const char *fields)
{
    if (access_fd < 0) return;
    char line[16384];
    size_t n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"");
    n += timestamp(line + n, sizeof line - n);
    int m = snprintf(line + n, sizeof line - n - 1, "\",%s}", fields);
    if (m < 0 || n + (size_t)m >= sizeof line - 1) return; /* never write a cut JSON line */
    n += (size_t)m;
    line[n++] = '\n';
    write_line(access_fd, line, n);
}
