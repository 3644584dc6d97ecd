/* In-process micro-benchmarks of the C kernels (they explain the HTTP numbers):
 * topk vs qsort, BM25 over ~1 KB documents, and SQLite FTS5 bm25() on the same
 * documents and query. Prints "name value" lines for bench/run.sh.
 *   bench_kernels [--dump DIR]   DIR/docs.txt (one doc per line) + DIR/query.txt */
#include "rerank.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef HAVE_SQLITE
#include <sqlite3.h>
#endif

#define NDOCS 10000 /* benches rotate through disjoint sets: no warm predictor/cache flattery */
#define VOCAB 20000

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double rnd01(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

static double pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double); /* descending */
    size_t i = (size_t)((1.0 - p) * (double)(n - 1) + 0.5);
    return v[i];
}

/* ---- deterministic corpus: Zipf(1.0) over a syllable vocabulary ---- */

static char *vocab[VOCAB];
static double zipf_cdf[VOCAB];
static char *docs[NDOCS];
static size_t lens[NDOCS];
static char query[256];

static void make_corpus(void)
{
    static const char *syl[] = { "ka", "to", "ri", "men", "sa", "lo", "ne", "vi", "dor", "pa",
                                 "qu", "el", "ist", "an", "ber", "go", "ul", "tra", "si", "on" };
    for (int i = 0; i < VOCAB; i++) {
        char w[32] = "";
        int ns = 1 + (int)(rnd() % 4);
        for (int j = 0; j < ns; j++) strcat(w, syl[rnd() % 20]);
        vocab[i] = strdup(w);
    }
    double sum = 0;
    for (int i = 0; i < VOCAB; i++) sum += 1.0 / (i + 1);
    double acc = 0;
    for (int i = 0; i < VOCAB; i++) zipf_cdf[i] = (acc += 1.0 / (i + 1) / sum);
    for (int d = 0; d < NDOCS; d++) {
        char *b = malloc(1100);
        size_t n = 0;
        int pos = 0; /* sentences of 8..15 words, capitalised, ending in ". " */
        int slen = 8 + (int)(rnd() % 8);
        while (n < 1024) {
            double u = rnd01();
            size_t lo = 0, hi = VOCAB - 1;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (zipf_cdf[mid] < u) lo = mid + 1; else hi = mid;
            }
            size_t wl = strlen(vocab[lo]);
            memcpy(b + n, vocab[lo], wl);
            if (pos == 0) b[n] = (char)(b[n] - 32);
            n += wl;
            if (++pos == slen) { b[n++] = '.'; pos = 0; slen = 8 + (int)(rnd() % 8); }
            b[n++] = ' ';
        }
        b[--n] = 0; /* drop the trailing space */
        docs[d] = b;
        lens[d] = n;
    }
    /* a common, two mid-frequency and a rare term */
    snprintf(query, sizeof query, "%s %s %s %s", vocab[9], vocab[120], vocab[700], vocab[4000]);
}

static int dump(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/docs.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (int d = 0; d < NDOCS; d++) fprintf(f, "%s\n", docs[d]);
    fclose(f);
    snprintf(path, sizeof path, "%s/query.txt", dir);
    f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "%s\n", query);
    fclose(f);
    return 0;
}

/* ---- benches ---- */

static void bench_topk(void)
{
    const size_t n = 1000000, k = 100;
    double *s = malloc(n * sizeof *s), *c = malloc(n * sizeof *c), t[21];
    uint32_t *out = malloc(n * sizeof *out), *scratch = malloc(n * sizeof *scratch);
    for (size_t i = 0; i < n; i++) s[i] = rnd01();
    volatile uint32_t sink = 0;
    for (int r = 0; r < 21; r++) {
        double t0 = now_us();
        rr_topk(s, n, k, out, scratch);
        t[r] = now_us() - t0;
        sink += out[0];
    }
    printf("topk_1m_k100_us %.1f\n", pct(t, 21, 0.5));
    for (int r = 0; r < 5; r++) {
        memcpy(c, s, n * sizeof *c);
        double t0 = now_us();
        qsort(c, n, sizeof *c, cmp_double);
        t[r] = now_us() - t0;
        sink += (uint32_t)c[0];
    }
    printf("qsort_1m_us %.1f\n", pct(t, 5, 0.5));
    for (int r = 0; r < 5; r++) {
        double t0 = now_us();
        rr_topk(s, n, n, out, scratch);
        t[r] = now_us() - t0;
        sink += out[0];
    }
    printf("topk_1m_full_us %.1f\n", pct(t, 5, 0.5));
    /* the typical request: 1,000 scores, top 10 */
    double *ts = malloc(20000 * sizeof *ts);
    for (int r = 0; r < 20000; r++) {
        double t0 = now_us();
        for (int j = 0; j < 10; j++) rr_topk(s + 1000 * j, 1000, 10, out, scratch);
        ts[r] = (now_us() - t0) / 10;
        sink += out[0];
    }
    printf("topk_1k_k10_us %.2f\n", pct(ts, 20000, 0.5));
    for (int r = 0; r < 2000; r++) { /* no top_n: every document in order */
        double t0 = now_us();
        rr_topk(s + 1000 * (r % 100), 1000, 1000, out, scratch);
        ts[r] = now_us() - t0;
        sink += out[0];
    }
    printf("topk_1k_full_us %.2f\n", pct(ts, 2000, 0.5));
    (void)sink;
    free(ts);
    free(s);
    free(c);
    free(out);
    free(scratch);
}

/* name "bm25": exact words; "bm25en": Snowball English (one analyzer, as one worker has) */
static void bench_bm25(const char *name, rr_analyzer *an, size_t n, int iters)
{
    rr_bm25_params p = { .k1 = 1.2, .b = 0.75, .analyzer = an };
    double *scores = malloc(n * sizeof *scores), *t = malloc((size_t)iters * sizeof *t);
    size_t ql = strlen(query);
    size_t sets = NDOCS / n;
    for (int r = 0; r < iters / 10; r++) rr_bm25(query, ql, (const char *const *)docs, lens, n, &p, scores);
    for (int r = 0; r < iters; r++) {
        size_t o = n * ((size_t)r % sets);
        double t0 = now_us();
        rr_bm25(query, ql, (const char *const *)docs + o, lens + o, n, &p, scores);
        t[r] = now_us() - t0;
    }
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) nz += scores[i] > 0;
    printf("%s_%zu_p50_us %.1f\n%s_%zu_p99_us %.1f\n%s_%zu_matching %zu\n", name, n,
           pct(t, (size_t)iters, 0.5), name, n, pct(t, (size_t)iters, 0.99), name, n, nz);
    free(scores);
    free(t);
}

#ifdef HAVE_SQLITE
/* FTS5 equivalent of one rerank: index the documents, rank them with bm25() for the
 * query (terms OR'ed: BM25 scores any document with any term). In-memory DB.
 * porter: FTS5's porter stemmer over its unicode61 tokenizer (the stemmed comparison). */
static int fts5_once(size_t o, size_t n, const char *match, int porter, double *build_us, double *rank_us, size_t *hits)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    double t0 = now_us();
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return -1;
    const char *create = porter ? "CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter unicode61'); BEGIN"
                                : "CREATE VIRTUAL TABLE t USING fts5(body); BEGIN";
    if (sqlite3_exec(db, create, 0, 0, 0) != SQLITE_OK) return -1;
    sqlite3_prepare_v2(db, "INSERT INTO t(rowid, body) VALUES(?, ?)", -1, &st, 0);
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)i);
        sqlite3_bind_text(st, 2, docs[o + i], (int)lens[o + i], SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_exec(db, "COMMIT", 0, 0, 0);
    double t1 = now_us();
    sqlite3_prepare_v2(db, "SELECT rowid, bm25(t) FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT 10",
                       -1, &st, 0);
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    *hits = 0;
    while (sqlite3_step(st) == SQLITE_ROW) (*hits)++;
    sqlite3_finalize(st);
    double t2 = now_us();
    sqlite3_close(db);
    *build_us = t1 - t0;
    *rank_us = t2 - t1;
    return 0;
}

static void bench_fts5(const char *name, int porter, size_t n, int iters)
{
    char match[512] = "";
    char q[256];
    snprintf(q, sizeof q, "%s", query);
    for (char *w = strtok(q, " "); w; w = strtok(NULL, " ")) {
        if (*match) strcat(match, " OR ");
        strcat(match, w);
    }
    double *tb = malloc((size_t)iters * sizeof *tb), *tr = malloc((size_t)iters * sizeof *tr);
    double *tt = malloc((size_t)iters * sizeof *tt);
    size_t hits = 0;
    for (int r = 0; r < iters; r++) {
        if (fts5_once(n * ((size_t)r % (NDOCS / n)), n, match, porter, &tb[r], &tr[r], &hits) != 0) {
            printf("fts5_error 1\n");
            return;
        }
        tt[r] = tb[r] + tr[r];
    }
    printf("%s_%zu_total_p50_us %.1f\n%s_%zu_rank_p50_us %.1f\n%s_%zu_hits %zu\n", name, n,
           pct(tt, (size_t)iters, 0.5), name, n, pct(tr, (size_t)iters, 0.5), name, n, hits);
    free(tb);
    free(tr);
    free(tt);
}
#endif

/* Snowball English with a stopword list: stopwords cost per token whatever the list (the
 * shipped English one has 174) */
static rr_analyzer *english(void)
{
    static const char *stop[] = { "the", "of", "and", "a", "to", "in", "is", "for", "on", "that", "ourselves" };
    size_t stoplens[sizeof stop / sizeof *stop];
    for (size_t i = 0; i < sizeof stop / sizeof *stop; i++) stoplens[i] = strlen(stop[i]);
    return rr_analyzer_new("english", stop, stoplens, sizeof stop / sizeof *stop);
}

int main(int argc, char **argv)
{
    make_corpus();
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) return dump(argv[2]) ? 1 : 0;
#ifdef HAVE_SQLITE
    /* --fts5 NAME PORTER N ITERS: one FTS5 row alone, for bench/run.sh's rounds that alternate
     * it with the HTTP rows it is compared against (a slow spell then hits both) */
    if (argc == 6 && strcmp(argv[1], "--fts5") == 0) {
        bench_fts5(argv[2], atoi(argv[3]), (size_t)atol(argv[4]), atoi(argv[5]));
        return 0;
    }
#endif
    /* --bm25 N ITERS: the two bm25 rows (exact, English) for N documents alone, to compare
     * builds of the scorer run after run */
    if (argc == 4 && strcmp(argv[1], "--bm25") == 0) {
        rr_analyzer *an = english();
        bench_bm25("bm25", NULL, (size_t)atol(argv[2]), atoi(argv[3]));
        if (an) bench_bm25("bm25en", an, (size_t)atol(argv[2]), atoi(argv[3]));
        rr_analyzer_free(an);
        return 0;
    }
    size_t bytes = 0;
    for (int d = 0; d < NDOCS; d++) bytes += lens[d];
    printf("doc_bytes_avg %zu\nquery %s\n", bytes / NDOCS, query);
    bench_topk();
    bench_bm25("bm25", NULL, 100, 5000);
    bench_bm25("bm25", NULL, 1000, 1000);
    rr_analyzer *en = english();
    if (en) {
        bench_bm25("bm25en", en, 100, 5000);
        bench_bm25("bm25en", en, 1000, 1000);
        rr_analyzer_free(en);
    }
#ifdef HAVE_SQLITE
    bench_fts5("fts5", 0, 100, 300);
    bench_fts5("fts5", 0, 1000, 50);
    bench_fts5("fts5porter", 1, 100, 300);
    bench_fts5("fts5porter", 1, 1000, 50);
#endif
    return 0;
}
