/* Pseudo-relevance feedback for bm25.c: candidate terms from the first pass's top
 * documents, a second pass that counts the likeliest of them everywhere, and the weights of
 * the ones that join the query. */
#include "bm25_int.h"

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
    int32_t id = rr_bm25_add_term(c, tok, len, rr_hash_bytes(tok, len));
    if (id >= (int32_t)c->norig) c->terms[id].fw += c->cand_w;
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
int rr_bm25_feedback(bm25_ctx *c, const char *const *docs, const size_t *lens, size_t n, size_t nf,
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
            rr_bm25_window(d, len, p, f == 0, &skip, &limit);
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
    /* the same documents: their lengths stand, no stopword counting this time */
    const rr_stoptab *st = c->st;
    c->st = NULL;
    c->keep_dl = 1;
    int pass = rr_bm25_run_pass(c, docs, lens, n, nf, p, o);
    c->st = st;
    c->keep_dl = 0;
    if (pass != 0) goto out;
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

