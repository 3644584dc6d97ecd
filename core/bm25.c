/* Okapi BM25 / BM25F over one request's documents (idf from those documents), after the
 * analyzer's stopwords and stems, with optional pseudo-relevance feedback.
 * One pass over every document counts the query terms (tf per field, weighted) into
 * postings; feedback adds a second pass with the expanded query. */
#include "rerank.h"
#include "analyzer.h"
#include "tok.h"

#include <math.h>

typedef struct {
    uint64_t hash;
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
    /* Exact words: prefilter over ASCII terms keyed by (first byte, last byte, length):
     * most document tokens are rejected by one rarely-taken branch, before lower-casing
     * or hashing. Non-ASCII tokens skip it. */
    uint64_t filter[16];
    /* Stems: the same idea on a word's first three bytes (a Snowball stem keeps the
     * word's first letters, but for y -> i): pf3 has a bit per (first, second, third)
     * ASCII letter or digit (or none, for shorter words): a stem of 4+ bytes sets its own
     * three, a shorter one every third after its first one or two. pf 0: no prefilter. */
    uint64_t pf3[(37 * 37 * 37 + 63) / 64];
    int pf, stem;
    rr_analyzer *an;
    uint32_t epoch;
    uint32_t norig;    /* the query's own terms are ids below this */
    double cand_w;     /* feedback: what one occurrence in the current top document adds to fw */
    lbuf b;
    /* current document */
    double *tf;        /* per term, reset after each doc */
    uint32_t *touched; /* term ids with tf > 0 in the current doc */
    uint32_t ntouched;
    double dl, w;      /* weighted length, weight of the field being read */
    size_t ntok;       /* tokens read (unweighted, for usage) */
} bm25_ctx;

typedef struct { uint32_t term; double tf; } posting;

static inline int32_t find_term(const bm25_ctx *c, const char *tok, size_t len, uint64_t h)
{
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        uint32_t s = c->slots[i];
        if (!s) return -1;
        const term *t = &c->terms[s - 1];
        if (t->hash == h && t->len == len && memcmp(c->arena + t->off, tok, len) == 0) return (int32_t)(s - 1);
    }
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
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

/* The id of term tok (added with weight 0 when new); -1 when out of memory. */
static int32_t add_term(bm25_ctx *c, const char *tok, size_t len, uint64_t h)
{
    int32_t id = find_term(c, tok, len, h);
    if (id >= 0 || c->oom) return id;
    size_t tcap = c->tcap, acap = c->acap;
    if (c->nterms >= UINT32_MAX / 4 || len > UINT32_MAX) goto oom;
    if (c->nterms == tcap) {
        size_t t1 = tcap, t2 = tcap, t3 = tcap;
        if (grow((void **)&c->terms, &t1, tcap + 1, sizeof *c->terms) ||
            grow((void **)&c->tf, &t2, tcap + 1, sizeof *c->tf) ||
            grow((void **)&c->touched, &t3, tcap + 1, sizeof *c->touched))
            goto oom;
        for (size_t i = tcap; i < t2; i++) c->tf[i] = 0;
        c->tcap = (uint32_t)t1;
    }
    if (2 * ((size_t)c->nterms + 1) > (size_t)c->mask + 1) { /* rehash into twice the slots */
        size_t cap = ((size_t)c->mask + 1) * 2;
        uint32_t *ns = calloc(cap, sizeof *ns);
        if (!ns) goto oom;
        for (uint32_t t = 0; t < c->nterms; t++) {
            uint32_t i = (uint32_t)c->terms[t].hash & (uint32_t)(cap - 1);
            while (ns[i]) i = (i + 1) & (uint32_t)(cap - 1);
            ns[i] = t + 1;
        }
        free(c->slots);
        c->slots = ns;
        c->mask = (uint32_t)(cap - 1);
    }
    if (grow((void **)&c->arena, &acap, c->aused + len + 1, 1)) goto oom;
    c->acap = acap;
    memcpy(c->arena + c->aused, tok, len);
    term *t = &c->terms[c->nterms];
    t->hash = h;
    t->off = (uint32_t)c->aused;
    t->len = (uint32_t)len;
    t->w = 0;
    t->fw = 0;
    c->aused += len;
    uint32_t i = (uint32_t)h & c->mask;
    while (c->slots[i]) i = (i + 1) & c->mask;
    c->slots[i] = ++c->nterms;
    return (int32_t)(c->nterms - 1);
oom:
    c->oom = 1;
    return -1;
}

static inline unsigned filter_slot(unsigned first, unsigned last, size_t len)
{
    return ((first << 16 ^ last << 8 ^ (unsigned)len) * 0x9E3779B1u) >> 22; /* 0..1023 */
}
/* ASCII alnum (lower case or | 0x20) -> 1..36, anything else 0: pf3's index */
static const uint8_t alnum_idx[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9,
    ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['g'] = 17,
    ['h'] = 18, ['i'] = 19, ['j'] = 20, ['k'] = 21, ['l'] = 22, ['m'] = 23, ['n'] = 24, ['o'] = 25,
    ['p'] = 26, ['q'] = 27, ['r'] = 28, ['s'] = 29, ['t'] = 30, ['u'] = 31, ['v'] = 32, ['w'] = 33,
    ['x'] = 34, ['y'] = 35, ['z'] = 36,
};
static inline unsigned key3(unsigned b0, unsigned b1, unsigned b2)
{
    return (alnum_idx[b0] * 37u + alnum_idx[b1]) * 37u + alnum_idx[b2];
}
#define SETBIT(f, k) ((f)[(k) >> 6] |= 1ull << ((k) & 63))
#define HASBIT(f, k) (((f)[(k) >> 6] >> ((k) & 63)) & 1)

/* The prefilters for the terms now in the table (every pass builds them anew). */
static void build_filters(bm25_ctx *c)
{
    memset(c->filter, 0, sizeof c->filter);
    memset(c->pf3, 0, sizeof c->pf3);
    c->pf = c->stem && rr_analyzer_prefix_stable(c->an);
    for (uint32_t t = 0; t < c->nterms; t++) {
        const unsigned char *s = (const unsigned char *)c->arena + c->terms[t].off;
        size_t len = c->terms[t].len, j, ascii = 1;
        if (!c->stem) {
            for (j = 0; j < len; j++) ascii &= s[j] < 0x80;
            if (ascii) SETBIT(c->filter, filter_slot(s[0], s[len - 1], len)); /* İ lowers to ASCII */
            continue;
        }
        for (j = 0; j < len && j < 3; j++) ascii &= s[j] < 0x80;
        if (!ascii) c->pf = 0; /* words of non-ASCII stems need not start like them */
        if (!alnum_idx[s[0]]) c->pf = 0; /* cannot happen for ASCII stems of words */
        /* y -> i: dying -> die, and a 3rd-letter y of a longer word */
        unsigned s1 = len > 1 ? s[1] : 0, y1 = s1 == 'i' ? 'y' : s1;
        if (len >= 4) {
            SETBIT(c->pf3, key3(s[0], s1, s[2]));
            if (s[2] == 'i') SETBIT(c->pf3, key3(s[0], s1, 'y'));
            continue;
        }
        for (unsigned x = 0; x < 37; x++) {       /* any third byte (x 0: none) */
            unsigned b2 = x == 0 ? 0 : x <= 10 ? '0' + x - 1 : 'a' + x - 11;
            if (len == 1) {
                for (unsigned z = 0; z < 37; z++)  /* and any second */
                    SETBIT(c->pf3, key3(s[0], z == 0 ? 0 : z <= 10 ? '0' + z - 1 : 'a' + z - 11, b2));
            } else {
                SETBIT(c->pf3, key3(s[0], s1, b2));
                SETBIT(c->pf3, key3(s[0], y1, b2));
            }
        }
    }
}

/* Could this ASCII word stem to a term? (raw bytes: ASCII alnum | 0x20 is its lower case) */
static inline int prefix_pass(const bm25_ctx *c, const unsigned char *s, size_t len)
{
    /* branch-free: word lengths 2 / 3+ mix unpredictably (reads stay inside the token) */
    unsigned b1 = (s[len > 1] | 0x20u) & -(unsigned)(len > 1);
    unsigned b2 = (s[(len > 2) * 2] | 0x20u) & -(unsigned)(len > 2);
    return HASBIT(c->pf3, key3(s[0] | 0x20u, b1, b2));
}

/* The term id of a lower-cased document word through its stem, -1 for none. */
static inline int32_t stem_id(bm25_ctx *c, const char *tok, size_t len, uint64_t h)
{
    rr_acache_entry *e = rr_analyzer_entry(c->an, tok, len, h);
    if (e) {
        if (e->epoch == c->epoch) return e->qid;
        int32_t id = e->stop ? -1 : find_term(c, e->stem, e->slen, e->shash);
        e->epoch = c->epoch;
        e->qid = id;
        return id;
    }
    const char *st;
    size_t sl;
    if (!rr_analyze(c->an, tok, len, &st, &sl)) return -1;
    return find_term(c, st, sl, rr_hash_bytes(st, sl));
}

static void query_token(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud)
{
    (void)ascii;
    bm25_ctx *c = ud;
    size_t len = to - from;
    const char *tok = lower ? lower_token(s + from, len, &c->b, &len) : (const char *)s + from;
    if (c->an && !rr_analyze(c->an, tok, len, &tok, &len)) return; /* a stopword */
    int32_t id = add_term(c, tok, len, rr_hash_bytes(tok, len)); /* repeated terms count once */
    if (id >= 0) c->terms[id].w = 1.0;
}

/* Feedback candidates: every term of a top document, but stopwords, single characters
 * and numbers. */
static void cand_token(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud)
{
    (void)ascii;
    bm25_ctx *c = ud;
    size_t len = to - from, j;
    if (len < 2) return;
    for (j = 0; j < len && s[from + j] >= '0' && s[from + j] <= '9'; j++) {}
    if (j == len) return;
    const char *tok = lower ? lower_token(s + from, len, &c->b, &len) : (const char *)s + from;
    if (c->an && !rr_analyze(c->an, tok, len, &tok, &len)) return;
    int32_t id = add_term(c, tok, len, rr_hash_bytes(tok, len));
    if (id >= (int32_t)c->norig) c->terms[id].fw += c->cand_w;
}

static inline __attribute__((always_inline)) void
doc_token(const unsigned char *s, size_t from, size_t to, int lower, int ascii, void *ud)
{
    bm25_ctx *c = ud;
    size_t len = to - from;
    c->ntok++; /* dl: the field's tokens times its weight, added up in scan_doc */
    if (ascii) {
        if (!c->stem) {
            unsigned f = filter_slot(s[from] | 0x20u, s[to - 1] | 0x20u, len);
            if (!HASBIT(c->filter, f)) return;
        } else if (c->pf && !prefix_pass(c, s + from, len)) {
            return;
        }
    }
    const char *tok = lower ? lower_token(s + from, len, &c->b, &len) : (const char *)s + from;
    uint64_t h = rr_hash_bytes(tok, len);
    int32_t id = c->stem ? stem_id(c, tok, len, h) : find_term(c, tok, len, h);
    if (id < 0) return;
    if (c->tf[id] == 0) c->touched[c->ntouched++] = (uint32_t)id;
    c->tf[id] += c->w;
}

/* Token window of field 0 (the text) under max_tokens: skip, limit. */
static void window(const char *d, size_t len, const rr_bm25_params *p, int text, size_t *skip, size_t *limit)
{
    *skip = 0;
    *limit = (size_t)-1;
    if (!text || p->max_tokens == 0) return;
    *limit = p->max_tokens;
    if (p->keep_end) {
        size_t total = scan(d, len, 0, (size_t)-1, NULL, NULL);
        if (total > *limit) *skip = total - *limit;
    }
}

static double field_weight(const rr_bm25_params *p, size_t f)
{
    return p->weights ? p->weights[f] : 1.0;
}

/* Every field of document i: fills c->dl, c->ntok, c->tf, c->touched. */
static void scan_doc(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t i, size_t nf,
                     const rr_bm25_params *p)
{
    c->dl = 0;
    c->ntok = 0;
    c->ntouched = 0;
    for (size_t f = 0; f < nf; f++) {
        const char *d = docs[i * nf + f];
        size_t len = lens[i * nf + f], skip, limit;
        if (!d || !len) continue;
        window(d, len, p, f == 0, &skip, &limit);
        c->w = field_weight(p, f);
        if (c->w > 0) {
            size_t before = c->ntok;
            scan(d, len, skip, limit, doc_token, c);
            c->dl += c->w * (double)(c->ntok - before);
        } else { /* not scored, still counted for usage */
            size_t t = scan(d, len, 0, (size_t)-1, NULL, NULL) - skip;
            c->ntok += t < limit ? t : limit;
        }
    }
}

static void sort_u32(uint32_t *a, size_t n)
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

/* One pass over every document with the current term table: postings, lengths, idf.
 * Returns -1 when out of memory. */
static int run_pass(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t n, size_t nf,
                    const rr_bm25_params *p, pass_out *o)
{
    if (c->oom) return -1;
    if (c->stem) c->epoch = rr_analyzer_next_epoch(c->an);
    build_filters(c);
    size_t nd = o->ndf;
    if (grow((void **)&o->df, &nd, c->nterms, sizeof *o->df)) return -1;
    nd = o->ndf;
    if (grow((void **)&o->idf, &nd, c->nterms, sizeof *o->idf)) return -1;
    o->ndf = nd;
    for (uint32_t t = 0; t < c->nterms; t++) o->df[t] = 0;
    o->npost = 0;
    o->tokens = 0;
    double total_dl = 0;
    for (size_t i = 0; i < n; i++) {
        scan_doc(c, docs, lens, i, nf, p);
        o->dls[i] = c->dl;
        total_dl += c->dl;
        o->tokens += c->ntok;
        if (grow((void **)&o->post, &o->cap, o->npost + c->ntouched, sizeof *o->post)) return -1;
        /* canonical term order so equal documents get bit-identical scores */
        if (c->ntouched <= 32) {
            sort_u32(c->touched, c->ntouched);
        } else {
            uint32_t m = 0;
            for (uint32_t t = 0; t < c->nterms; t++)
                if (c->tf[t] != 0) c->touched[m++] = t;
        }
        for (uint32_t j = 0; j < c->ntouched; j++) {
            uint32_t t = c->touched[j];
            o->post[o->npost].term = t;
            o->post[o->npost].tf = c->tf[t];
            o->npost++;
            o->df[t] += 1;
            c->tf[t] = 0;
        }
        o->post_end[i] = o->npost;
    }
    o->avgdl = total_dl / (double)n;
    double N = (double)n;
    for (uint32_t t = 0; t < c->nterms; t++)
        o->idf[t] = log(1.0 + (N - o->df[t] + 0.5) / (o->df[t] + 0.5));
    return 0;
}

static void score_all(const bm25_ctx *c, const pass_out *o, size_t n, const rr_bm25_params *p, double *scores)
{
    double k1 = p->k1, bb = p->b;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        double norm = k1 * (1.0 - bb + bb * o->dls[i] / o->avgdl);
        double sc = 0;
        for (; j < o->post_end[i]; j++) {
            double tf = o->post[j].tf, w = c->terms[o->post[j].term].w;
            if (w != 0) sc += w * o->idf[o->post[j].term] * tf * (k1 + 1.0) / (tf + norm);
        }
        scores[i] = sc;
    }
}

/* Indices of the k best scores > 0 (score desc, index asc) into top; returns how many. */
static size_t top_docs(const double *s, size_t n, size_t k, size_t *top)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j;
        if (!(s[i] > 0)) continue;
        if (m < k) j = m++;
        else if (s[i] > s[top[k - 1]]) j = k - 1;
        else continue;
        while (j > 0 && s[i] > s[top[j - 1]]) { top[j] = top[j - 1]; j--; }
        top[j] = i;
    }
    return m;
}

static int better(const bm25_ctx *c, const double *fs, uint32_t t, uint32_t u)
{
    if (fs[t] != fs[u]) return fs[t] > fs[u];
    const term *a = &c->terms[t], *b = &c->terms[u];
    int cmp = memcmp(c->arena + a->off, c->arena + b->off, a->len < b->len ? a->len : b->len);
    return cmp < 0 || (cmp == 0 && a->len < b->len);
}

/* The K terms from id `from` on with the largest v (> 0), best first, ties by bytes. */
static size_t best_terms(const bm25_ctx *c, const double *v, uint32_t from, size_t K, uint32_t *best)
{
    size_t nb = 0;
    for (uint32_t t = from; t < c->nterms; t++) {
        size_t j;
        if (!(v[t] > 0)) continue;
        if (nb < K) j = nb++;
        else if (better(c, v, t, best[K - 1])) j = K - 1;
        else continue;
        while (j > 0 && better(c, v, t, best[j - 1])) { best[j] = best[j - 1]; j--; }
        best[j] = t;
    }
    return nb;
}

/* Keeps the query's terms and the nk candidates keep[] (ids), drops the other candidates. */
static void keep_terms(bm25_ctx *c, uint32_t *keep, size_t nk)
{
    sort_u32(keep, nk);
    uint32_t m = c->norig;
    for (size_t j = 0; j < nk; j++) c->terms[m++] = c->terms[keep[j]];
    c->nterms = m;
    memset(c->slots, 0, ((size_t)c->mask + 1) * sizeof *c->slots);
    for (uint32_t t = 0; t < m; t++) {
        uint32_t i = (uint32_t)c->terms[t].hash & c->mask;
        while (c->slots[i]) i = (i + 1) & c->mask;
        c->slots[i] = t + 1;
    }
}

/* Pseudo-relevance feedback (RM3-like): the terms of the fb_docs best documents, each
 * occurrence weighted by its document's first-pass score / the best one's and divided by
 * the document's length; the 4 * fb_terms best of those are counted in every document (a
 * second pass), and the fb_terms best by their BM25 weight summed over the top documents
 * (score-weighted too) join the query. */
static int feedback(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t n, size_t nf,
                    const rr_bm25_params *p, pass_out *o, const double *first)
{
    size_t k = p->fb_docs < n ? p->fb_docs : n, M = 4 * p->fb_terms;
    size_t *top = malloc(k * sizeof *top);
    double *fs = NULL;
    uint32_t *best = malloc((M ? M : 1) * sizeof *best);
    int rc = -1;
    if (!top || !best) goto out;
    size_t ntop = top_docs(first, n, k, top);
    c->norig = c->nterms;
    for (size_t r = 0; r < ntop; r++) {
        size_t i = top[r];
        for (size_t f = 0; f < nf; f++) {
            const char *d = docs[i * nf + f];
            size_t len = lens[i * nf + f], skip, limit;
            if (!d || !len || field_weight(p, f) <= 0) continue;
            window(d, len, p, f == 0, &skip, &limit);
            c->cand_w = first[i] / first[top[0]] * field_weight(p, f) / o->dls[i];
            scan(d, len, skip, limit, cand_token, c);
        }
    }
    if (c->oom) goto out;
    rc = 0;
    if (c->nterms == c->norig) goto out; /* nothing new to add */
    rc = -1;
    fs = calloc(c->nterms, sizeof *fs);
    if (!fs) goto out;
    if (c->nterms - c->norig > M) { /* only the likeliest candidates get counted everywhere */
        for (uint32_t t = c->norig; t < c->nterms; t++) fs[t] = c->terms[t].fw;
        keep_terms(c, best, best_terms(c, fs, c->norig, M, best));
    }
    if (run_pass(c, docs, lens, n, nf, p, o) != 0) goto out;
    memset(fs, 0, c->nterms * sizeof *fs);
    /* a candidate's worth: its BM25 weight in the top documents, score-weighted */
    for (size_t r = 0; r < ntop; r++) {
        size_t i = top[r], j = i ? o->post_end[i - 1] : 0;
        double norm = p->k1 * (1.0 - p->b + p->b * o->dls[i] / o->avgdl), dw = first[i] / first[top[0]];
        for (; j < o->post_end[i]; j++) {
            double tf = o->post[j].tf;
            fs[o->post[j].term] += dw * o->idf[o->post[j].term] * tf * (p->k1 + 1.0) / (tf + norm);
        }
    }
    size_t nb = best_terms(c, fs, c->norig, p->fb_terms, best);
    for (size_t j = 0; j < nb; j++) c->terms[best[j]].w = p->fb_weight * fs[best[j]] / fs[best[0]];
    rc = 0;
out:
    free(fs);
    free(best);
    free(top);
    return rc;
}

static int fill_matches(const bm25_ctx *c, const pass_out *o, size_t n, rr_bm25_matches *m)
{
    size_t count = 0;
    for (size_t j = 0; j < o->npost; j++) count += c->terms[o->post[j].term].w != 0;
    m->doc_end = malloc(n * sizeof *m->doc_end);
    m->term = malloc((count ? count : 1) * sizeof *m->term);
    m->tf = malloc((count ? count : 1) * sizeof *m->tf);
    m->str = calloc(c->nterms ? c->nterms : 1, sizeof *m->str);
    m->len = calloc(c->nterms ? c->nterms : 1, sizeof *m->len);
    m->arena = malloc(c->aused + c->nterms + 1);
    if (!m->doc_end || !m->term || !m->tf || !m->str || !m->len || !m->arena) return -1;
    m->nterms = c->nterms;
    size_t at = 0;
    for (uint32_t t = 0; t < c->nterms; t++) {
        m->str[t] = m->arena + at;
        m->len[t] = c->terms[t].len;
        memcpy(m->arena + at, c->arena + c->terms[t].off, c->terms[t].len);
        at += c->terms[t].len;
        m->arena[at++] = 0;
    }
    size_t k = 0, j = 0;
    for (size_t i = 0; i < n; i++) {
        for (; j < o->post_end[i]; j++) {
            if (c->terms[o->post[j].term].w == 0) continue;
            m->term[k] = o->post[j].term;
            m->tf[k++] = o->post[j].tf;
        }
        m->doc_end[i] = k;
    }
    return 0;
}

void rr_bm25_matches_free(rr_bm25_matches *m)
{
    if (!m) return;
    free(m->doc_end);
    free(m->term);
    free(m->tf);
    free(m->str);
    free(m->len);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

int rr_bm25(const char *query, size_t qlen, const char *const *docs, const size_t *lens,
            size_t n, const rr_bm25_params *p, double *scores_out)
{
    for (size_t i = 0; i < n; i++) scores_out[i] = 0.0;
    if (p->doc_tokens) *p->doc_tokens = 0;
    if (n == 0) return 0;
    size_t nf = p->nfields ? p->nfields : 1;
    bm25_ctx c;
    memset(&c, 0, sizeof c);
    c.an = p->analyzer;
    c.stem = rr_analyzer_stems(c.an);
    pass_out o;
    memset(&o, 0, sizeof o);
    int rc = -1;
    c.slots = calloc(16, sizeof *c.slots);
    o.post_end = malloc(n * sizeof *o.post_end);
    o.dls = malloc(n * sizeof *o.dls);
    if (!c.slots || !o.post_end || !o.dls) goto done;
    c.mask = 15;
    scan(query, qlen, 0, (size_t)-1, query_token, &c);
    if (c.oom) goto done;
    if (c.nterms == 0) { /* nothing to score; the token count is still wanted for usage */
        for (size_t i = 0; p->doc_tokens && i < n; i++)
            for (size_t f = 0; f < nf; f++) {
                size_t skip, limit, t;
                if (!docs[i * nf + f]) continue;
                window(docs[i * nf + f], lens[i * nf + f], p, f == 0, &skip, &limit);
                t = scan(docs[i * nf + f], lens[i * nf + f], 0, (size_t)-1, NULL, NULL) - skip;
                *p->doc_tokens += t < limit ? t : limit;
            }
        rc = 0;
        goto done;
    }
    if (run_pass(&c, docs, lens, n, nf, p, &o) != 0) goto done;
    if (p->doc_tokens) *p->doc_tokens = o.tokens;
    if (o.avgdl <= 0) { rc = 0; goto done; } /* every document empty: all scores stay 0 */
    score_all(&c, &o, n, p, scores_out);
    if (p->fb_docs > 0 && p->fb_terms > 0 && p->fb_weight > 0) {
        if (feedback(&c, docs, lens, n, nf, p, &o, scores_out) != 0) goto done;
        score_all(&c, &o, n, p, scores_out);
    }
    if (p->matches && fill_matches(&c, &o, n, p->matches) != 0) {
        rr_bm25_matches_free(p->matches);
        goto done;
    }
    rc = 0;
done:
    free(c.b.heap);
    free(c.terms);
    free(c.tf);
    free(c.touched);
    free(c.slots);
    free(c.arena);
    free(o.post);
    free(o.post_end);
    free(o.dls);
    free(o.df);
    free(o.idf);
    if (rc != 0)
        for (size_t i = 0; i < n; i++) scores_out[i] = 0.0;
    return rc;
}
