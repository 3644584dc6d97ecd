/* Okapi BM25 / BM25F over one request's documents (idf from those documents), after the
 * analyzer's stopwords and stems, with optional pseudo-relevance feedback.
 * One pass over every document counts the query terms (tf per field, weighted) into
 * postings; feedback adds a second pass with the expanded query. */
#include "bm25_int.h"

#include <math.h>

static inline int32_t find_term(const bm25_ctx *c, const char *tok, size_t len, uint64_t h)
{
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        uint32_t s = c->slots[i];
        if (!s) return -1;
        const term *t = &c->terms[s - 1];
        if (t->hash == h && t->len == len && memcmp(c->arena + t->off, tok, len) == 0) return (int32_t)(s - 1);
    }
}

/* find_term for an ASCII token of len <= 16 bytes packed as pack16 gives it (lower-cased):
 * compared as two words, no copy or byte-wise hash (h = rr_hash_packed) */
static inline int32_t find_term16(const bm25_ctx *c, uint64_t x, uint64_t y, size_t len, uint64_t h)
{
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        uint32_t s = c->slots[i];
        if (!s) return -1;
        const term *t = &c->terms[s - 1];
        if (t->hash == h && t->len == len && t->px == x && t->py == y) return (int32_t)(s - 1);
    }
}

/* The id of term tok (added with weight 0 when new); -1 when out of memory. */
int32_t rr_bm25_add_term(bm25_ctx *c, const char *tok, size_t len, uint64_t h)
{
    int32_t id = find_term(c, tok, len, h);
    if (id >= 0 || c->oom) return id;
    size_t tcap = c->tcap, acap = c->acap;
    if (c->nterms >= UINT32_MAX / 4 || len > UINT32_MAX) goto oom;
    if (c->nterms == tcap) {
        size_t t1 = tcap, t2 = tcap, t3 = tcap;
        if (rr_bm25_grow((void **)&c->terms, &t1, tcap + 1, sizeof *c->terms) ||
            rr_bm25_grow((void **)&c->tf, &t2, tcap + 1, sizeof *c->tf) ||
            rr_bm25_grow((void **)&c->touched, &t3, tcap + 1, sizeof *c->touched))
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
    if (rr_bm25_grow((void **)&c->arena, &acap, c->aused + len + 1, 1)) goto oom;
    c->acap = acap;
    memcpy(c->arena + c->aused, tok, len);
    term *t = &c->terms[c->nterms];
    t->hash = h;
    t->px = t->py = 0;
    if (len <= 16) {
        unsigned char b[16] = { 0 };
        memcpy(b, tok, len);
        memcpy(&t->px, b, 8);
        memcpy(&t->py, b + 8, 8);
    }
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

/* The exact-word prefilter's bit: five low bits of the first and last bytes (the same for
 * an ASCII letter in either case; digits share with p-y, which only loosens it) and the
 * length's two low bits. 0..4095, no multiply: it runs once per document token. */
static inline unsigned filter_slot(unsigned first, unsigned last, size_t len)
{
    return (first & 31u) << 7 | (last & 31u) << 2 | ((unsigned)len & 3u);
}

/* The prefilters for the terms now in the table (every pass builds them anew). */
static void build_filters(bm25_ctx *c)
{
    memset(c->filter, 0, sizeof c->filter);
    if (c->stem) memset(c->pf3, 0, sizeof c->pf3); /* read with stems only */
    c->pf = c->stem && rr_analyzer_prefix_stable(c->an);
    unsigned char firsts[RR_SCREEN_MAX];
    int nfirst = 0;
    for (uint32_t t = 0; t < c->nterms; t++) {
        const unsigned char *s = (const unsigned char *)c->arena + c->terms[t].off;
        size_t len = c->terms[t].len, j, ascii = 1;
        if (!c->stem) {
            for (j = 0; j < len; j++) ascii &= s[j] < 0x80;
            if (!ascii) continue; /* matches non-ASCII words only: those take scan()'s slow path */
            SETBIT(c->filter, filter_slot(s[0], s[len - 1], len)); /* İ lowers to ASCII */
            if (nfirst > RR_SCREEN_MAX) continue; /* too many first bytes to screen by */
            int seen = 0;
            for (int f = 0; f < nfirst; f++) seen |= firsts[f] == s[0];
            if (!seen) {
                if (nfirst < RR_SCREEN_MAX) firsts[nfirst] = s[0];
                nfirst++;
            }
            continue;
        }
        for (j = 0; j < len && j < 3; j++) ascii &= s[j] < 0x80;
        if (!ascii) c->pf = 0; /* words of non-ASCII stems need not start like them */
        if (!rr_alnum_idx[s[0]]) c->pf = 0; /* cannot happen for ASCII stems of words */
        /* y -> i: dying -> die, and a 3rd-letter y of a longer word */
        unsigned s1 = len > 1 ? s[1] : 0, y1 = s1 == 'i' ? 'y' : s1 == 'y' ? 'i' : s1;
        if (len >= 3) {
            SETBIT(c->pf3, rr_key3(s[0], s1, s[2]));
            if (s[2] == 'i') SETBIT(c->pf3, rr_key3(s[0], s1, 'y')); /* cry -> cri */
            if (s[2] == 'y') SETBIT(c->pf3, rr_key3(s[0], s1, 'i')); /* skies -> sky */
        }
        /* stems of 1-2 letters, and 3 letters ending in an added e (using -> use) or
         * with an i or y second letter (dying -> die): any third letter */
        if (len >= 4 || (len == 3 && s[2] != 'e' && s1 != y1)) continue;
        for (unsigned x = 0; x < 37; x++) {       /* any third byte (x 0: none) */
            unsigned b2 = x == 0 ? 0 : x <= 10 ? '0' + x - 1 : 'a' + x - 11;
            if (len == 1) {
                for (unsigned z = 0; z < 37; z++)  /* and any second */
                    SETBIT(c->pf3, rr_key3(s[0], z == 0 ? 0 : z <= 10 ? '0' + z - 1 : 'a' + z - 11, b2));
            } else {
                SETBIT(c->pf3, rr_key3(s[0], s1, b2));
                SETBIT(c->pf3, rr_key3(s[0], y1, b2));
            }
        }
    }
    if (c->stem)
        for (size_t w = 0; w < RR_KEY3_N / 64; w++) c->any3[w] = c->pf3[w] | (c->st ? c->st->prefix[w] : 0);
    c->screen.n = nfirst <= RR_SCREEN_MAX ? nfirst : 0;
#ifdef __SSE2__
    for (int f = 0; f < c->screen.n; f++) c->screen.b[f] = _mm_set1_epi8((char)firsts[f]);
#endif
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
    int32_t id = rr_bm25_add_term(c, tok, len, rr_hash_bytes(tok, len)); /* repeated terms count once */
    if (id >= 0) c->terms[id].w = 1.0;
}

/* An ASCII token of len <= 16 bytes at s + from, lower-cased (ASCII letters and digits
 * | 0x20 are their lower case), as two little-endian words, zero past len. */
static inline void pack16(const bm25_ctx *c, const unsigned char *s, size_t from, size_t len, uint64_t *px, uint64_t *py)
{
    uint64_t x, y;
    if (c->cur_end - from >= 16) {
        memcpy(&x, s + from, 8);
        memcpy(&y, s + from + 8, 8);
    } else {
        unsigned char b[16] = { 0 };
        memcpy(b, s + from, len);
        memcpy(&x, b, 8);
        memcpy(&y, b + 8, 8);
    }
    uint64_t mx = len >= 8 ? ~0ull : (1ull << (8 * len)) - 1;
    uint64_t my = len >= 16 ? ~0ull : len <= 8 ? 0 : (1ull << (8 * (len - 8))) - 1;
    *px = (x | 0x2020202020202020ull) & mx;
    *py = (y | 0x2020202020202020ull) & my;
}

/* Is this document token a stopword? ASCII tokens of up to 16 bytes (nearly all) are
 * packed into two words and looked up branch-free; others take the analyzer's set. */
static inline int stop_token(bm25_ctx *c, const unsigned char *s, size_t from, size_t len, int lower, int ascii)
{
    const rr_stoptab *t = c->st;
    if (ascii && len <= 16) {
        uint64_t x, y;
        pack16(c, s, from, len, &x, &y);
        return rr_stop_packed(t, x, y);
    }
    if (ascii ? !t->other_ascii : !t->other_nonascii) return 0;
    size_t l = len;
    const char *tok = lower ? lower_token(s + from, len, &c->b, &l) : (const char *)s + from;
    return rr_analyzer_is_stop(c->an, tok, l, rr_hash_bytes(tok, l));
}

/* stem_id of an ASCII token of up to 16 bytes: a cached word is found without copying,
 * lower-casing or hashing it byte by byte */
static inline __attribute__((always_inline)) int32_t stem_id16(bm25_ctx *c, const unsigned char *s, size_t from, size_t len)
{
    uint64_t x, y, ex, ey;
    pack16(c, s, from, len, &x, &y);
    uint64_t h = rr_hash_packed(x, y, len);
    rr_acache_entry *e = &c->cache[rr_acache_slot(h)];
    memcpy(&ex, e->word, 8);
    memcpy(&ey, e->word + 8, 8);
    if (e->wlen == len && ex == x && ey == y && e->epoch == c->epoch) return e->qid;
    unsigned char b[16];
    memcpy(b, &x, 8);
    memcpy(b + 8, &y, 8);
    return stem_id(c, (const char *)b, len, h);
}

/* What a document token is checked for: its stem (else the exact word), whether it is a
 * stopword (the length leaves those out), and with stems whether the three-letter prefilter
 * applies. scan_field picks one scanner per field (DOC_SCANNER below), so each scan() loop
 * carries only its own checks. */
enum { T_STEM = 1, T_STOP = 2, T_PF = 4 };

/* The counted side of a document token: its term id (through its stem with T_STEM), its tf.
 * Out of line, so the scan loops keep only the prefilters in registers. */
static __attribute__((noinline)) void doc_term(bm25_ctx *c, const unsigned char *s, size_t from, size_t len,
                                               int lower, int ascii, int stem)
{
    int32_t id;
    if (stem && c->cache && ascii && len <= 16) {
        id = stem_id16(c, s, from, len);
    } else if (!stem && ascii && len <= 16) { /* exact words: the packed token against the terms */
        uint64_t x, y;
        pack16(c, s, from, len, &x, &y);
        id = find_term16(c, x, y, len, rr_hash_packed(x, y, len));
    } else {
        const char *tok = lower ? lower_token(s + from, len, &c->b, &len) : (const char *)s + from;
        uint64_t h = rr_hash_bytes(tok, len);
        id = stem ? stem_id(c, tok, len, h) : find_term(c, tok, len, h);
    }
    if (id < 0) return;
    if (c->tf[id] == 0) c->touched[c->ntouched++] = (uint32_t)id;
    c->tf[id] += c->w;
}

static __attribute__((noinline)) void doc_stop(bm25_ctx *c, const unsigned char *s, size_t from, size_t len,
                                               int lower, int ascii)
{
    c->nstop += (size_t)stop_token(c, s, from, len, lower, ascii);
}

/* The gathered candidates of the field s (doc_token): exact words looked up; with stems, a
 * stopword counted and a stem looked up. As doc_token would have at once: the results are
 * sums, so the order is free. Their case is not kept: lower 1 is right for any ASCII token
 * (only long ones are copied). */
static __attribute__((noinline)) void check_candidates(bm25_ctx *c, const unsigned char *s)
{
    for (uint32_t j = 0; j < c->ncand; j++) {
        size_t from = (uint32_t)c->cand[j], len = (size_t)(c->cand[j] >> 32);
        if (!c->stem) { /* exact words: they passed the filter */
            doc_term(c, s, from, len, 1, 1, 0);
            continue;
        }
        unsigned k = rr_key3_token4(s + from, len, c->cur_end - from);
        if (c->st && HASBIT(c->st->prefix, k)) doc_stop(c, s, from, len, 1, 1);
        if (HASBIT(c->pf3, k)) doc_term(c, s, from, len, 1, 1, 1);
    }
    c->ncand = 0;
}

static inline __attribute__((always_inline)) void
doc_token(const unsigned char *s, size_t from, size_t to, int lower, int ascii, bm25_ctx *c, int mode)
{
    size_t len = to - from;
    if (ascii && (mode & T_PF || mode == 0)) {
        /* gathered for check_candidates: the prefilter's answer is stored, not branched on (the
         * text makes it unpredictable). Stems (and stopwords): where the first three letters
         * could start one; exact words: by (first byte, last byte, length) */
        int pass = mode & T_PF ? (int)HASBIT(c->any3, rr_key3_token4(s + from, len, ascii == RR_ASCII4 ? 4 : c->cur_end - from))
                               : (int)HASBIT(c->filter, filter_slot(s[from], s[to - 1], len));
        c->cand[c->ncand] = (uint64_t)from | (uint64_t)len << 32;
        c->ncand += (uint32_t)pass;
        if (c->ncand == sizeof c->cand / sizeof *c->cand) check_candidates(c, s);
        return;
    }
    if (ascii) {
        if ((mode & T_STOP) && HASBIT(c->st->prefix, rr_key3_token4(s + from, len, c->cur_end - from)))
            doc_stop(c, s, from, len, lower, ascii);
        if (!(mode & T_STEM) && !HASBIT(c->filter, filter_slot(s[from], s[to - 1], len))) return;
    } else if (mode & T_STOP) {
        doc_stop(c, s, from, len, lower, ascii);
    }
    doc_term(c, s, from, len, lower, ascii, mode & T_STEM);
}

/* One scan() instance per mode, each in a function of its own (one loop's registers), and
 * per mode one for a whole field and one for a window (truncation's skip and limit). */
#define DOC_SCANNER(name, mode)                                                                    \
    static inline __attribute__((always_inline)) void name##_token(const unsigned char *s, size_t from, \
                                                                   size_t to, int lower, int ascii, void *ud) \
    {                                                                                              \
        doc_token(s, from, to, lower, ascii, ud, (mode));                                          \
    }                                                                                              \
    static RR_SCAN_CLONES __attribute__((noinline)) size_t name(bm25_ctx *c, const char *d, size_t len, size_t skip, size_t limit) \
    {                                                                                              \
        size_t seen = skip == 0 && limit == (size_t)-1                                             \
                          ? scan_screened(d, len, 0, (size_t)-1, name##_token, c, (mode) ? NULL : &c->screen) \
                          : scan(d, len, skip, limit, name##_token, c);                            \
        if ((mode) & T_PF || (mode) == 0) check_candidates(c, (const unsigned char *)d);            \
        return seen;                                                                               \
    }
DOC_SCANNER(scan_exact, 0)
DOC_SCANNER(scan_exact_stop, T_STOP)
DOC_SCANNER(scan_stem, T_STEM)
DOC_SCANNER(scan_stem_stop, T_STEM | T_STOP)
DOC_SCANNER(scan_stem_pf, T_STEM | T_PF)
DOC_SCANNER(scan_stem_pf_stop, T_STEM | T_PF | T_STOP)

/* One field of the current document through the scanner of its mode; returns the tokens
 * handed to doc_token (the window's). */
static size_t scan_field(bm25_ctx *c, const char *d, size_t len, size_t skip, size_t limit)
{
    typedef size_t (*scanner)(bm25_ctx *, const char *, size_t, size_t, size_t);
    static const scanner by_mode[8] = {
        [0] = scan_exact, [T_STOP] = scan_exact_stop, [T_STEM] = scan_stem,
        [T_STEM | T_STOP] = scan_stem_stop, [T_STEM | T_PF] = scan_stem_pf,
        [T_STEM | T_PF | T_STOP] = scan_stem_pf_stop,
    };
    int mode = (c->stem ? T_STEM | (c->pf ? T_PF : 0) : 0) | (c->st ? T_STOP : 0);
    size_t seen = by_mode[mode](c, d, len, skip, limit);
    return seen > skip ? seen - skip : 0;
}

/* Token window of field 0 (the text) under max_tokens: skip, limit. */
void rr_bm25_window(const char *d, size_t len, const rr_bm25_params *p, int text, size_t *skip, size_t *limit)
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

/* Every field of document i: fills c->dl, c->ntok, c->tf, c->touched. */
static void scan_doc(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t i, size_t nf,
                     const rr_bm25_params *p)
{
    c->dl = 0;
    c->ntok = 0;
    c->nstop = 0;
    c->ntouched = 0;
    for (size_t f = 0; f < nf; f++) {
        const char *d = docs[i * nf + f];
        size_t len = lens[i * nf + f], skip, limit;
        if (!d || !len) continue;
        rr_bm25_window(d, len, p, f == 0, &skip, &limit);
        c->w = field_weight(p, f);
        if (c->w > 0) {
            size_t stops = c->nstop;
            c->cur_end = len;
            size_t t = scan_field(c, d, len, skip, limit);
            c->ntok += t;
            c->dl += c->w * (double)(t - (c->nstop - stops));
        } else { /* not scored, still counted for usage */
            size_t t = scan(d, len, 0, (size_t)-1, NULL, NULL) - skip;
            c->ntok += t < limit ? t : limit;
        }
    }
}

/* Documents [a, b) into s: postings (document i's end at s->post_end[i], counted from
 * s->npost's start), lengths (unless c->keep_dl), df, tokens. -1 when out of memory. */
int rr_bm25_scan_range(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t nf,
                       const rr_bm25_params *p, size_t a, size_t b, scan_sink *s)
{
    for (size_t i = a; i < b; i++) {
        scan_doc(c, docs, lens, i, nf, p);
        if (!c->keep_dl) s->dls[i] = c->dl;
        s->tokens += c->ntok;
        if (rr_bm25_grow((void **)&s->post, &s->cap, s->npost + c->ntouched, sizeof *s->post)) return -1;
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
            s->post[s->npost].term = t;
            s->post[s->npost].tf = c->tf[t];
            s->npost++;
            s->df[t] += 1;
            c->tf[t] = 0;
        }
        s->post_end[i] = s->npost;
    }
    return 0;
}

/* One pass over every document with the current term table: postings, lengths, idf.
 * Large texts are shared out between threads (bm25_par.c), with the same result.
 * Returns -1 when out of memory. */
int rr_bm25_run_pass(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t n, size_t nf,
                    const rr_bm25_params *p, pass_out *o)
{
    if (c->oom) return -1;
    if (c->stem) c->epoch = rr_analyzer_next_epoch(c->an);
    c->cache = c->stem ? rr_analyzer_cache(c->an) : NULL;
    build_filters(c);
    size_t nd = o->ndf;
    if (rr_bm25_grow((void **)&o->df, &nd, c->nterms, sizeof *o->df)) return -1;
    nd = o->ndf;
    if (rr_bm25_grow((void **)&o->idf, &nd, c->nterms, sizeof *o->idf)) return -1;
    o->ndf = nd;
    for (uint32_t t = 0; t < c->nterms; t++) o->df[t] = 0;
    scan_sink s = { o->post, 0, o->cap, o->post_end, o->dls, o->df, 0 };
    int rc = rr_bm25_scan_parallel(c, docs, lens, n, nf, p, &s);
    o->post = s.post;
    o->cap = s.cap;
    o->npost = s.npost;
    o->tokens = s.tokens;
    if (rc != 0) return -1;
    if (!c->keep_dl) { /* summed in document order: the same avgdl however the pass ran */
        double total_dl = 0;
        for (size_t i = 0; i < n; i++) total_dl += o->dls[i];
        o->avgdl = total_dl / (double)n;
    }
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
    /* zeroed but for the prefilters (build_filters writes them) and the candidate buffer
     * (written before read): 10 KB a request need not be cleared */
    memset(&c, 0, offsetof(bm25_ctx, filter));
    memset(&c.ncand, 0, sizeof c - offsetof(bm25_ctx, ncand));
    c.an = p->analyzer;
    c.stem = rr_analyzer_stems(c.an);
    c.st = rr_analyzer_stoptab(c.an);
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
                rr_bm25_window(docs[i * nf + f], lens[i * nf + f], p, f == 0, &skip, &limit);
                t = scan(docs[i * nf + f], lens[i * nf + f], 0, (size_t)-1, NULL, NULL) - skip;
                *p->doc_tokens += t < limit ? t : limit;
            }
        rc = 0;
        goto done;
    }
    if (rr_bm25_run_pass(&c, docs, lens, n, nf, p, &o) != 0) goto done;
    if (p->doc_tokens) *p->doc_tokens = o.tokens;
    if (o.avgdl <= 0) { rc = 0; goto done; } /* every document empty: all scores stay 0 */
    score_all(&c, &o, n, p, scores_out);
    if (p->fb_docs > 0 && p->fb_terms > 0 && p->fb_weight > 0) {
        if (rr_bm25_feedback(&c, docs, lens, n, nf, p, &o, scores_out) != 0) goto done;
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
