/* Leveled logging to stderr (one line per call, safe across worker threads). */
#include "rerank.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int min_level = RR_LOG_INFO;
static const char *const names[] = { "debug", "info", "warn", "error" };

void rr_log_set_level(int level) { min_level = level; }

void rr_log(int level, const char *fmt, ...)
{
    if (level < min_level) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* a single fprintf keeps lines whole: stdio locks the stream per call */
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level], msg);
}
