/* core/bm25_par.c: a pass shared out between threads gives exactly the one-thread result
 * (scores bit for bit, token counts, matched terms) with exact words, stems and stopwords,
 * BM25F fields, truncation and feedback; what threads "auto" means. */
#include "ctest.h"
#include "rerank.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *vocab[] = { "the", "running", "runs", "ran", "cats", "Cat", "dogs", "of", "and", "deploy",
                               "deployments", "models", "model", "API", "endpoint", "quickly", "école", "x1",
                               "2026", "a", "is", "blue", "bluer", "flies", "flying", "fly", "Ωmega", "zz" };
#define NV (sizeof vocab / sizeof *vocab)

static void text(char *buf, size_t cap, size_t words)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t w = 0; w < words; w++) {
        const char *v = vocab[ct_next() % NV];
        size_t n = strlen(v);
        if (len + n + 3 >= cap) break;
        memcpy(buf + len, v, n);
        len += n;
        buf[len++] = ct_next() % 4 ? ' ' : ',';
        buf[len] = 0;
    }
}

static int same_matches(const rr_bm25_matches *a, const rr_bm25_matches *b, size_t n)
{
    if (!a->doc_end || !b->doc_end) return !a->doc_end && !b->doc_end; /* no query terms */
    size_t m = a->doc_end[n - 1];
    if (m != b->doc_end[n - 1]) return 0;
    if (memcmp(a->doc_end, b->doc_end, n * sizeof *a->doc_end) != 0) return 0;
    for (size_t k = 0; k < m; k++) {
        uint32_t ta = a->term[k], tb = b->term[k];
        if (a->tf[k] != b->tf[k] || a->len[ta] != b->len[tb] || memcmp(a->str[ta], b->str[tb], a->len[ta]) != 0)
            return 0;
    }
    return 1;
}

/* several callers at once (each worker has its own analyzers): the one pool of helpers
 * serves them all, each caller taking back what waits too long */
typedef struct {
    rr_analyzer *an;
    const char *const *docs;
    const size_t *lens;
    size_t n;
    const double *want;
    int ok;
} caller;

static void *call_many(void *arg)
{
    caller *k = arg;
    double got[64];
    k->ok = 1;
    for (int r = 0; r < 30; r++) {
        rr_bm25_params p = { .k1 = 1.2, .b = 0.75, .analyzer = k->an, .threads = 2 + (size_t)r % 3, .par_bytes = 1 };
        if (rr_bm25("running deploy models", 21, k->docs, k->lens, k->n, &p, got) != 0 ||
            memcmp(got, k->want, k->n * sizeof *got) != 0)
            k->ok = 0;
    }
    return NULL;
}

int main(void)
{
    static const char *stop[] = { "the", "of", "and", "a", "is" };
    static const size_t stop_lens[] = { 3, 2, 3, 1, 2 };
    rr_analyzer *en = rr_analyzer_new("english", stop, stop_lens, 5);
    rr_analyzer *exact_stop = rr_analyzer_new("none", stop, stop_lens, 5);
    CHECK(en && exact_stop, "analyzers");
    enum { MAXN = 60, NF = 2 };
    static char buf[MAXN * NF][1500];
    const char *docs[MAXN * NF];
    size_t lens[MAXN * NF];
    int agree = 1, matches_agree = 1, tokens_agree = 1, cases = 0;
    for (int r = 0; r < 400; r++) {
        size_t n = 1 + ct_next() % MAXN, nf = 1 + ct_next() % NF;
        for (size_t i = 0; i < n * nf; i++) {
            if (ct_next() % 17 == 0) { docs[i] = NULL; lens[i] = 0; continue; } /* a missing field */
            text(buf[i], sizeof buf[i], ct_next() % 200);
            docs[i] = buf[i];
            lens[i] = strlen(buf[i]);
        }
        char q[200];
        text(q, sizeof q, 1 + ct_next() % 5);
        double weights[NF] = { 1.0, 2.0 };
        rr_bm25_params p = { .k1 = 1.2, .b = 0.75 };
        p.analyzer = r % 3 == 0 ? NULL : r % 3 == 1 ? en : exact_stop;
        p.nfields = nf;
        p.weights = nf > 1 ? weights : NULL;
        if (ct_next() % 4 == 0) { p.max_tokens = 1 + ct_next() % 30; p.keep_end = (int)(ct_next() % 2); }
        if (ct_next() % 3 == 0) { p.fb_docs = 1 + ct_next() % 5; p.fb_terms = 1 + ct_next() % 10; p.fb_weight = 0.5; }
        double one[MAXN], many[MAXN];
        size_t tok_one = 0, tok_many = 0;
        rr_bm25_matches m1, m2;
        memset(&m1, 0, sizeof m1);
        memset(&m2, 0, sizeof m2);
        p.doc_tokens = &tok_one;
        p.matches = &m1;
        p.threads = 1;
        int rc1 = rr_bm25(q, strlen(q), docs, lens, n, &p, one);
        p.doc_tokens = &tok_many;
        p.matches = &m2;
        p.threads = 2 + ct_next() % (RR_BM25_MAX_THREADS - 1);
        p.par_bytes = 1 + ct_next() % 2000; /* small: every size of pass is shared out */
        int rc2 = rr_bm25(q, strlen(q), docs, lens, n, &p, many);
        if (rc1 != 0 || rc2 != 0 || memcmp(one, many, n * sizeof *one) != 0) {
            if (agree) printf("# case %d: q=\"%s\" n=%zu nf=%zu threads=%zu\n", r, q, n, nf, p.threads);
            agree = 0;
        }
        if (tok_one != tok_many) tokens_agree = 0;
        if (rc1 == 0 && rc2 == 0 && !same_matches(&m1, &m2, n)) matches_agree = 0;
        rr_bm25_matches_free(&m1);
        rr_bm25_matches_free(&m2);
        cases++;
    }
    CHECK(agree, "scores with 2-4 threads equal one thread's, bit for bit (400 random cases: exact, stems, "
                 "stopwords, fields, truncation, feedback)");
    CHECK(tokens_agree, "token counts equal");
    CHECK(matches_agree, "matched terms equal");

    {
        enum { NC = 3 };
        const char *cd[64];
        size_t cl[64];
        for (size_t i = 0; i < 64; i++) {
            text(buf[i], sizeof buf[i], 150);
            cd[i] = buf[i];
            cl[i] = strlen(buf[i]);
        }
        rr_analyzer *ans[NC];
        double want[64];
        caller k[NC];
        pthread_t t[NC];
        int started = 1, all_ok = 1;
        for (int j = 0; j < NC; j++) {
            ans[j] = rr_analyzer_new("english", stop, stop_lens, 5);
            rr_bm25_params p = { .k1 = 1.2, .b = 0.75, .analyzer = ans[j], .threads = 1 };
            if (j == 0 && rr_bm25("running deploy models", 21, cd, cl, 64, &p, want) != 0) all_ok = 0;
            k[j] = (caller){ ans[j], cd, cl, 64, want, 0 };
        }
        for (int j = 0; j < NC; j++) started &= pthread_create(&t[j], NULL, call_many, &k[j]) == 0;
        for (int j = 0; j < NC && started; j++) {
            pthread_join(t[j], NULL);
            all_ok &= k[j].ok;
        }
        for (int j = 0; j < NC; j++) rr_analyzer_free(ans[j]);
        CHECK(started && all_ok, "three callers at once share the helpers: each gets one thread's scores (90 passes)");
    }

    /* below par_bytes per thread the caller scans alone; the same answer either way */
    const char *two[2] = { "the cat runs", "dogs run quickly" };
    size_t two_lens[2] = { 12, 16 };
    double a[2], b[2];
    rr_bm25_params p = { .k1 = 1.2, .b = 0.75, .analyzer = en, .threads = 4 };
    CHECK(rr_bm25("running", 7, two, two_lens, 2, &p, a) == 0, "small text, 4 threads allowed");
    p.threads = 1;
    CHECK(rr_bm25("running", 7, two, two_lens, 2, &p, b) == 0 && memcmp(a, b, sizeof a) == 0 && a[0] > 0 && a[1] > 0,
          "small text: the same scores (stems match)");

    /* "auto": the CPUs no busy worker or helper uses, counting the caller; 1 for a library caller */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t all = cpus < 1 ? 1 : cpus > RR_BM25_MAX_THREADS ? RR_BM25_MAX_THREADS : (size_t)cpus;
    CHECK(rr_bm25_auto_threads() == 1, "auto without a daemon's worker count: 1");
    rr_bm25_set_workers(2);
    CHECK(rr_bm25_auto_threads() == all, "auto with no other worker busy: every CPU, at most RR_BM25_MAX_THREADS");
    rr_bm25_busy(1);
    CHECK(rr_bm25_auto_threads() == all, "the caller itself busy: the same");
    rr_bm25_busy((int)cpus);
    CHECK(rr_bm25_auto_threads() == 1, "every CPU busy with other workers: 1");
    rr_bm25_busy(-(int)cpus - 1);
    CHECK(rr_bm25_auto_threads() == all, "idle again: every CPU");
    rr_analyzer_free(en);
    rr_analyzer_free(exact_stop);
    (void)cases;
    return CT_DONE();
}
