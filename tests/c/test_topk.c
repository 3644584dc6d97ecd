/* core/topk.c: order (score desc, index asc, NaN last), edge cases, and every
 * code path (heap for k <= n/4, radix for k == n >= 256, select + introsort
 * otherwise) against an independent reference sort. */
#include "ctest.h"
#include "rerank.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const double *ref_scores;

/* The documented order, written independently of topk.c's key trick. */
static int ref_cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    double x = ref_scores[a], y = ref_scores[b];
    int nx = isnan(x), ny = isnan(y);
    if (nx != ny) return nx ? 1 : -1;
    if (!nx && x != y) return x > y ? -1 : 1;
    return a < b ? -1 : (a > b);
}

/* topk with exactly-sized heap buffers (ASan catches overruns) vs the reference. */
static int agrees(const double *s, size_t n, size_t k)
{
    uint32_t *ref = malloc((n ? n : 1) * sizeof *ref);
    size_t m = k < n ? k : n;
    uint32_t *out = malloc((m ? m : 1) * sizeof *out);
    uint32_t *scratch = malloc((n ? n : 1) * sizeof *scratch);
    for (size_t i = 0; i < n; i++) ref[i] = (uint32_t)i;
    ref_scores = s;
    qsort(ref, n, sizeof *ref, ref_cmp);
    size_t got = rr_topk(s, n, k, out, scratch);
    int ok = got == m && (m == 0 || memcmp(out, ref, m * sizeof *out) == 0);
    free(ref);
    free(out);
    free(scratch);
    return ok;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Values from a small set (many ties), with NaN, +/-Inf and -0.0 mixed in. */
static double tie_value(void)
{
    switch (next() % 12) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return -0.0;
    case 4: return 0.0;
    case 5: return -NAN;
    default: return (double)(next() % 7) * 0.5 - 1.0;
    }
}

static void fill(double *s, size_t n, int kind)
{
    for (size_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: s[i] = tie_value(); break;
        case 1: s[i] = (double)(next() >> 11) / 9007199254740992.0; break; /* distinct */
        case 2: s[i] = (double)i; break;                                  /* ascending */
        case 3: s[i] = (double)(n - i); break;                            /* descending */
        case 4: s[i] = 1.0; break;                                        /* all equal */
        case 5: s[i] = (double)(i % 17); break;                           /* sawtooth */
        default: s[i] = (i & 1) ? NAN : (double)(i % 5); break;           /* half NaN */
        }
    }
}

int main(void)
{
    uint32_t out[16], scratch[16];

    /* empty and k = 0 */
    CHECK(rr_topk(NULL, 0, 5, out, scratch) == 0, "n=0 gives 0");
    double one[] = { 3.0 };
    CHECK(rr_topk(one, 1, 0, out, scratch) == 0, "k=0 gives 0");
    CHECK(rr_topk(one, 1, 1, out, scratch) == 1 && out[0] == 0, "n=1");

    /* ties by index ascending */
    double t[] = { 1.0, 2.0, 1.0, 2.0, 0.5 };
    size_t m = rr_topk(t, 5, 5, out, scratch);
    CHECK(m == 5 && out[0] == 1 && out[1] == 3 && out[2] == 0 && out[3] == 2 && out[4] == 4,
          "ties broken by index ascending (full sort)");
    m = rr_topk(t, 5, 1, out, scratch);
    CHECK(m == 1 && out[0] == 1, "ties: k=1 picks the lowest index of the best");

    /* k > n writes n */
    m = rr_topk(t, 5, 100, out, scratch);
    CHECK(m == 5 && out[0] == 1 && out[4] == 4, "k > n clamps to n");

    /* NaN last, NaNs by index; infinities are ordinary */
    double nan_s[] = { NAN, -INFINITY, 1.0, NAN, INFINITY, -1.0 };
    m = rr_topk(nan_s, 6, 6, out, scratch);
    CHECK(m == 6 && out[0] == 4 && out[1] == 2 && out[2] == 5 && out[3] == 1 && out[4] == 0 &&
              out[5] == 3,
          "order: +Inf, 1, -1, -Inf, NaN(0), NaN(3)");
    m = rr_topk(nan_s, 6, 1, out, scratch);
    CHECK(m == 1 && out[0] == 4, "k=1 picks +Inf");
    double all_nan[] = { NAN, NAN, NAN };
    m = rr_topk(all_nan, 3, 2, out, scratch);
    CHECK(m == 2 && out[0] == 0 && out[1] == 1, "all NaN: index order");
    double neg_inf[] = { -INFINITY, NAN, -INFINITY };
    m = rr_topk(neg_inf, 3, 3, out, scratch);
    CHECK(m == 3 && out[0] == 0 && out[1] == 2 && out[2] == 1, "-Inf before NaN");

    /* -0.0 == 0.0: tie by index */
    double z[] = { -0.0, 0.0, -0.0 };
    m = rr_topk(z, 3, 3, out, scratch);
    CHECK(m == 3 && out[0] == 0 && out[1] == 1 && out[2] == 2, "-0.0 ties with 0.0");
    double z2[] = { 0.0, -0.0, -1e-300, 1e-300 };
    m = rr_topk(z2, 4, 4, out, scratch);
    CHECK(m == 4 && out[0] == 3 && out[1] == 0 && out[2] == 1 && out[3] == 2,
          "denormal/zero ordering");

    /* heap path (k <= n/4) on a hand case */
    double h[] = { 5, 1, 9, 9, 3, 7, 9, 2, 0, 4, 8, 6 };
    m = rr_topk(h, 12, 3, out, scratch);
    CHECK(m == 3 && out[0] == 2 && out[1] == 3 && out[2] == 6, "heap path: ties among top");

    /* randomized: every kind, many sizes, every interesting k, against the reference */
    static const size_t sizes[] = { 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 255, 256, 257, 1000, 4099 };
    for (int kind = 0; kind < 7; kind++) {
        int ok = 1;
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
            size_t n = sizes[si];
            double *s = malloc(n * sizeof *s);
            for (int rep = 0; rep < 3; rep++) {
                fill(s, n, kind);
                size_t ks[] = { 0, 1, 2, 3, 10, n / 4, n / 4 + 1, n / 2, n - 1, n, n + 3 };
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
                    if (!agrees(s, n, ks[ki])) ok = 0;
            }
            free(s);
        }
        char name[64];
        snprintf(name, sizeof name, "random agreement with reference, input kind %d", kind);
        CHECK(ok, name);
    }

    /* large: k << n (heap) and large k (select) agree with the full sort */
    size_t n = 200000;
    double *s = malloc(n * sizeof *s);
    for (int kind = 0; kind < 7; kind++) {
        fill(s, n, kind);
        int ok = agrees(s, n, 100) && agrees(s, n, 1) && agrees(s, n, n / 3) && agrees(s, n, n);
        char name[64];
        snprintf(name, sizeof name, "n=200000 k in {1,100,n/3,n}, kind %d", kind);
        CHECK(ok, name);
    }
    free(s);

    /* determinism: same input, same output */
    double d[64];
    fill(d, 64, 0);
    uint32_t o1[64], o2[64], sc[64];
    rr_topk(d, 64, 10, o1, sc);
    rr_topk(d, 64, 10, o2, sc);
    CHECK(memcmp(o1, o2, sizeof(uint32_t) * 10) == 0, "deterministic");

    return CT_DONE();
}
