/* bm25.c's internals shared with bm25_prf.c (pseudo-relevance feedback): the term table,
 * the per-request context, postings and one pass's output. */
#ifndef RERANKD_BM25_INT_H
#define RERANKD_BM25_INT_H
#include "rerank.h"
#include "analyzer.h"
#include "tok.h"

typedef struct {
    uint64_t hash;
    uint64_t px, py;   /* a term of <= 16 bytes as two little-endian words, zero past len */
    uint32_t off, len; /* the term's bytes in the arena */
    double w;          /* query weight: 1 for the query's own terms, feedback adds some */
    double fw;         /* feedback candidates: score-weighted frequency in the top documents */
} term;

typedef struct {
    /* distinct terms: open addressing, slots hold term id + 1 (0 = empty) */
    term *terms;
    uint32_t nterms, tcap, mask;
    uint32_t *slots;
    char *arena;
    size_t aused, acap;
    int oom;
    /* Exact words: prefilter over ASCII terms keyed by (first byte, last byte, length) (filter_slot):
     * most document tokens are rejected by one rarely-taken branch, before lower-casing
     * or hashing. Non-ASCII tokens skip it. */
    uint64_t filter[64];
    rr_screen screen;  /* exact words: the terms' first bytes (n 0: too many to screen by) */
    /* Stems: the same idea on a word's first three bytes (a Snowball stem keeps the
     * word's first letters, but for y -> i): pf3 has a bit per rr_key3 of (first, second, third)
     * ASCII letter or digit (or none, for shorter words): a stem of 4+ bytes sets its own
     * three, a shorter one every third after its first one or two. pf 0: no prefilter. */
    uint64_t pf3[RR_KEY3_N / 64];
    /* pf3 | the stopwords' prefix bits: with both checks, most tokens need one test */
    uint64_t any3[RR_KEY3_N / 64];
    /* with the stems' prefilter: the ASCII tokens that pass any3 (from | len << 32), gathered
     * without a branch per token and checked in batches (bm25.c check_candidates) */
    uint64_t cand[256];
    uint32_t ncand;
    int pf, stem;
    rr_analyzer *an;
    rr_acache_entry *cache; /* the analyzer's word -> stem cache (this pass), NULL: none */
    uint32_t epoch;
    uint32_t norig;    /* the query's own terms are ids below this */
    int keep_dl;       /* a second pass: the lengths (and avgdl) of the first stand */
    double cand_w;     /* feedback: what one occurrence in the current top document adds to fw */
    lbuf b;
    /* current document */
    double *tf;        /* per term, reset after each doc */
    uint32_t *touched; /* term ids with tf > 0 in the current doc */
    uint32_t ntouched;
    double dl, w;      /* weighted length, weight of the field being read */
    size_t ntok;       /* tokens read (unweighted, for usage) */
    size_t nstop;      /* of which stopwords (not in the length) */
    const rr_stoptab *st; /* the analyzer's stopwords, NULL: none */
    size_t cur_end;    /* length of the field being read */
} bm25_ctx;

typedef struct { uint32_t term; double tf; } posting;

/* *p holds *cap elements of size bytes: at least need (doubling from 16); -1 when out of memory */
static inline int rr_bm25_grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * size);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static inline void sort_u32(uint32_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint32_t v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
        a[j] = v;
    }
}

typedef struct {
    posting *post;
    size_t npost, cap;
    size_t *post_end;  /* n */
    double *dls;       /* n */
    double *df, *idf;  /* nterms (grown per pass) */
    size_t ndf;
    double avgdl;
    size_t tokens;
} pass_out;

static inline double field_weight(const rr_bm25_params *p, size_t f)
{
    return p->weights ? p->weights[f] : 1.0;
}

/* Where a pass's documents go: postings, post_end and dls indexed by document, df by term */
typedef struct {
    posting *post;
    size_t npost, cap;
    size_t *post_end;
    double *dls, *df;
    size_t tokens;
} scan_sink;

/* bm25.c */
int rr_bm25_scan_range(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t nf,
                       const rr_bm25_params *p, size_t a, size_t b, scan_sink *s);
int32_t rr_bm25_add_term(bm25_ctx *c, const char *tok, size_t len, uint64_t h);
void rr_bm25_window(const char *d, size_t len, const rr_bm25_params *p, int text, size_t *skip, size_t *limit);
int rr_bm25_run_pass(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t n, size_t nf,
                     const rr_bm25_params *p, pass_out *o);
/* bm25_par.c: rr_bm25_scan_range over all n documents, shared out between p->threads
 * threads when the text is large enough to be worth it */
int rr_bm25_scan_parallel(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t n, size_t nf,
                          const rr_bm25_params *p, scan_sink *s);
/* bm25_prf.c: expands c's query from the first pass's scores (first); o holds the second pass */
int rr_bm25_feedback(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t n, size_t nf,
                     const rr_bm25_params *p, pass_out *o, const double *first);
#endif
