/* core/analyzer.c and what bm25.c does with it: Snowball stems, stopwords, the word
 * cache (long words, eviction), the stems' prefilter (stemmed scoring must equal exact
 * scoring of pre-stemmed text, bit for bit), BM25F field weights, pseudo-relevance
 * feedback and the matched terms. */
#include "ctest.h"
#include "rerank.h"
#include "tok.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *stem(rr_analyzer *a, const char *w)
{
    static char out[256];
    const char *s;
    size_t n;
    if (!rr_analyze(a, w, strlen(w), &s, &n)) return "<stop>";
    snprintf(out, sizeof out, "%.*s", (int)n, s);
    return out;
}

/* text -> its terms joined by spaces (what exact matching of pre-analyzed text sees) */
typedef struct { rr_analyzer *a; char *buf; size_t len, cap; } joiner;
static void join_term(const char *tok, size_t len, size_t off, void *ud)
{
    (void)off;
    joiner *j = ud;
    const char *s;
    size_t n;
    if (!rr_analyze(j->a, tok, len, &s, &n)) return;
    if (j->len + n + 2 > j->cap) {
        j->cap = (j->len + n + 2) * 2;
        j->buf = realloc(j->buf, j->cap);
    }
    if (j->len) j->buf[j->len++] = ' ';
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = 0;
}
static char *joined(rr_analyzer *a, const char *text)
{
    joiner j = { a, calloc(1, 1), 0, 1 };
    rr_tokenize(text, strlen(text), join_term, &j);
    return j.buf;
}

static int run(const char *q, const char *const *docs, size_t n, const rr_bm25_params *p, double *out)
{
    size_t lens[64];
    for (size_t i = 0; i < n; i++) lens[i] = docs[i] ? strlen(docs[i]) : 0;
    return rr_bm25(q, strlen(q), docs, lens, n, p, out);
}

int main(void)
{
    /* ---- analyzer ---- */
    errno = 0;
    CHECK(rr_analyzer_new("englsh", NULL, NULL, 0) == NULL && errno == ENOENT, "unknown language: NULL, ENOENT");
    int has_en = 0;
    for (const char **l = rr_analyzer_languages(); *l; l++) has_en |= strcmp(*l, "english") == 0;
    CHECK(has_en, "libstemmer lists english");
    const char *stop[] = { "a", "do", "the", "how" };
    size_t stoplens[] = { 1, 2, 3, 3 };
    rr_analyzer *en = rr_analyzer_new("english", stop, stoplens, 4);
    CHECK(en != NULL, "english analyzer");
    CHECK(strcmp(stem(en, "deployments"), "deploy") == 0, "deployments -> deploy");
    CHECK(strcmp(stem(en, "models"), "model") == 0, "models -> model");
    CHECK(strcmp(stem(en, "dying"), "die") == 0, "dying -> die (Porter2 exception)");
    CHECK(strcmp(stem(en, "the"), "<stop>") == 0 && strcmp(stem(en, "how"), "<stop>") == 0, "stopwords are dropped");
    CHECK(strcmp(stem(en, "internationalizations"), "internation") == 0, "a word longer than the cache holds");
    CHECK(strcmp(stem(en, "deployments"), "deploy") == 0, "cached word, same stem");
    rr_analyzer *none = rr_analyzer_new("none", stop, stoplens, 4);
    CHECK(none && strcmp(stem(none, "deployments"), "deployments") == 0 && strcmp(stem(none, "a"), "<stop>") == 0,
          "language none: exact words, stopwords still dropped");
    rr_analyzer *fr = rr_analyzer_new("french", NULL, NULL, 0);
    CHECK(fr && strcmp(stem(fr, "continuellement"), "continuel") == 0, "french stems");

    /* ---- the README example: stems match ---- */
    const char *readme[] = { "Deployments let you run models behind an API endpoint...",
                             "Billing lets you add balance and view usage...",
                             "A GPU runtime is used to run training jobs..." };
    double s[64], t[64];
    rr_bm25_params p = { .k1 = 1.2, .b = 0.75 };
    run("How do I deploy a model?", readme, 3, &p, s);
    CHECK(s[0] == 0, "exact words: the relevant document scores 0");
    p.analyzer = en;
    run("How do I deploy a model?", readme, 3, &p, s);
    CHECK(s[0] > 0 && s[1] == 0 && s[2] == 0, "english: only the relevant document scores");

    /* ---- stemmed scoring == exact scoring of pre-stemmed text (prefilter, cache) ---- */
    static const char *vocab[] = { "Running", "runs", "ran", "runner", "dying", "died", "die", "cries", "cry",
        "crying", "skies", "sky", "generalization", "generous", "the", "a", "how", "do", "Über", "uber",
        "straße", "models", "modelling", "modeled", "deployment", "deploys", "ISRAEL", "İstanbul",
        "internationalizations", "international", "go", "goes", "gone", "x", "xs", "i", "ies", "a1b2",
        "β-blockers", "ÉCOLE", "écoles", "flying", "flies", "hoping", "hopped", "possibility", "possible",
        "using", "used", "uses", "aging", "aged", "lying", "lies", "tying", "ties", "spy", "spying", "eyed",
        "skiing", "skis", "news", "atlas", "cosmos", "bias", "andes", "ugly", "early", "only", "singly",
        "idly", "gently", "howe", "proceed", "exceed", "succeed", "canning", "inning", "outing", "herring",
        "earring", "cater", "dyed", "dyes", "agreed", "feed", "bled", "ied", "aid", "vied" };
    size_t nv = sizeof vocab / sizeof *vocab;
    rr_analyzer *langs[] = { en, rr_analyzer_new("irish", NULL, NULL, 0), rr_analyzer_new("german", NULL, NULL, 0) };
    int agree = 1;
    for (int round = 0; round < 2000; round++) {
        rr_analyzer *a = langs[round % 3];
        char qb[256] = "", db[12][512];
        const char *docs[12], *pre[12];
        size_t n = 2 + ct_next() % 10;
        for (int w = 0, nq = 1 + (int)(ct_next() % 4); w < nq; w++) {
            strcat(qb, vocab[ct_next() % nv]);
            strcat(qb, " ");
        }
        for (size_t i = 0; i < n; i++) {
            db[i][0] = 0;
            for (int w = 0, nw = (int)(ct_next() % 20); w < nw; w++) {
                strcat(db[i], vocab[ct_next() % nv]);
                strcat(db[i], ct_next() % 4 ? " " : ", ");
            }
            docs[i] = db[i];
        }
        char *pq = joined(a, qb);
        for (size_t i = 0; i < n; i++) pre[i] = joined(a, docs[i]);
        rr_bm25_params ps = { .k1 = 1.2, .b = 0.75, .analyzer = a }, pe = { .k1 = 1.2, .b = 0.75 };
        run(qb, docs, n, &ps, s);
        run(pq, pre, n, &pe, t);
        for (size_t i = 0; i < n; i++) {
            /* a stopword is in neither the terms nor a document's length */
            if (s[i] != t[i]) {
                if (agree) printf("# q=\"%s\" doc \"%s\": %.17g vs %.17g\n", qb, docs[i], s[i], t[i]);
                agree = 0;
            }
        }
        free(pq);
        for (size_t i = 0; i < n; i++) free((void *)pre[i]);
    }
    CHECK(agree, "stemmed scores equal exact scores of pre-stemmed text without stopwords (2000 random cases, 3 languages)");

    /* ---- BM25F ---- */
    const char *fd[] = { "Deploying models", "Run a model behind an endpoint.",
                         NULL, "Billing and usage of deployments.",
                         "Models", "Training jobs on a GPU." };
    const char *cat1[] = { "Deploying models Run a model behind an endpoint.", "Billing and usage of deployments.",
                           "Models Training jobs on a GPU." };
    const char *cat2[] = { "Deploying models Run a model behind an endpoint. Run a model behind an endpoint.",
                           "Billing and usage of deployments. Billing and usage of deployments.",
                           "Models Training jobs on a GPU. Training jobs on a GPU." };
    double w11[] = { 1, 1 }, w12[] = { 1, 2 }, w10[] = { 1, 0 };
    rr_bm25_params pf = { .k1 = 1.2, .b = 0.75, .analyzer = en, .nfields = 2 };
    size_t flens[6];
    for (int i = 0; i < 6; i++) flens[i] = fd[i] ? strlen(fd[i]) : 0;
    const char *q2 = "deploy model";
    pf.weights = w11;
    rr_bm25(q2, strlen(q2), fd, flens, 3, &pf, s);
    run(q2, cat1, 3, &p, t);
    CHECK(memcmp(s, t, 3 * sizeof *s) == 0, "fields of weight 1 score as their concatenation");
    pf.weights = w12;
    rr_bm25(q2, strlen(q2), fd, flens, 3, &pf, s);
    run(q2, cat2, 3, &p, t);
    CHECK(memcmp(s, t, 3 * sizeof *s) == 0, "a field of weight 2 scores as if written twice");
    size_t dt = 0;
    pf.weights = w10;
    pf.doc_tokens = &dt;
    rr_bm25(q2, strlen(q2), fd, flens, 3, &pf, s);
    CHECK(s[1] == 0 && s[0] > 0 && dt == 19, "a field of weight 0 is not scored but its tokens are counted");
    pf.doc_tokens = NULL;

    /* ---- pseudo-relevance feedback ---- */
    const char *fb[] = { "nickel toxicity in rats and nickel carbonyl inhalation",
                         "carbonyl inhalation causes lung tumours in rats",
                         "nickel allergy and cobalt allergy in patients",
                         "selenium toxicity in chick embryos",
                         "lung tumours after carbonyl exposure",
                         "a history of the dewey decimal classification" };
    rr_bm25_params pb = { .k1 = 1.2, .b = 0.75, .analyzer = en };
    double base[6], f1[6], f2[6];
    run("nickel toxicity", fb, 6, &pb, base);
    pb.fb_docs = 2;
    pb.fb_terms = 20;
    pb.fb_weight = 0.5;
    run("nickel toxicity", fb, 6, &pb, f1);
    run("nickel toxicity", fb, 6, &pb, f2);
    CHECK(memcmp(f1, f2, sizeof f1) == 0, "feedback is deterministic");
    CHECK(base[4] == 0 && f1[4] > 0, "feedback: a document sharing only expansion terms now scores");
    CHECK(f1[5] == 0, "feedback: an unrelated document still scores 0");
    pb.fb_weight = 0;
    run("nickel toxicity", fb, 6, &pb, f2);
    CHECK(memcmp(base, f2, sizeof f2) == 0, "feedback weight 0 changes nothing");

    /* ---- matched terms ---- */
    rr_bm25_matches m;
    memset(&m, 0, sizeof m);
    rr_bm25_params pm = { .k1 = 1.2, .b = 0.75, .analyzer = en, .matches = &m };
    run("How do I deploy a model?", readme, 3, &pm, s);
    int ok = m.doc_end && m.doc_end[0] == 2 && m.doc_end[2] == 2;
    ok = ok && strcmp(m.str[m.term[0]], "deploy") == 0 && strcmp(m.str[m.term[1]], "model") == 0 && m.tf[0] == 1;
    CHECK(ok, "matches: document 0 matched deploy and model once each, the others nothing");
    rr_bm25_matches_free(&m);

    /* bm25.c hashes short ASCII words from their two packed words: the same hash as the
     * analyzer's, or a cached word would never be found again */
    int same = 1;
    const char *w = "abcdefghijklmnopq";
    for (size_t n = 0; n <= 16; n++) {
        unsigned char b[16] = { 0 };
        uint64_t x, y;
        memcpy(b, w, n);
        memcpy(&x, b, 8);
        memcpy(&y, b + 8, 8);
        same &= rr_hash_packed(x, y, n) == rr_hash_bytes(w, n);
    }
    CHECK(same, "rr_hash_packed equals rr_hash_bytes for 0 to 16 bytes");

    rr_analyzer_free(en);
    rr_analyzer_free(none);
    rr_analyzer_free(fr);
    rr_analyzer_free(langs[1]);
    rr_analyzer_free(langs[2]);
    return CT_DONE();
}
