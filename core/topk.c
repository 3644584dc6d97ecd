/* Top-k selection over a score array: score desc, ties by index asc, NaN last.
 * Scores are mapped to order-preserving uint64 keys (NaN -> 0, -0.0 == 0.0), so
 * the order is total over indices and any unstable algorithm is deterministic.
 * k <= n/4: bounded heap of the k best in `out` (one pass, most elements rejected
 * by one vectorisable compare). k == n: LSD radix sort. Otherwise: introselect on
 * the index array in `scratch`, then introsort of the first k. No allocation. */
#include "rerank.h"

#include <string.h>

#ifndef RADIX_MIN
#define RADIX_MIN 256 /* below this a comparison sort is as fast */
#endif

/* Larger key = earlier in the output. */
static inline uint64_t key_of(double x)
{
    if (x != x) return 0; /* NaN: below -Inf (whose key is 0x000f...) */
    x += 0.0;             /* -0.0 -> +0.0 so they tie */
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    uint64_t neg = (uint64_t)((int64_t)b >> 63);
    return b ^ (neg | 0x8000000000000000ull);
}

/* a comes before b in the output */
static inline int before(const double *s, uint32_t a, uint32_t b)
{
    uint64_t ka = key_of(s[a]), kb = key_of(s[b]);
    return ka > kb || (ka == kb && a < b);
}

static inline void swap32(uint32_t *a, uint32_t *b)
{
    uint32_t t = *a;
    *a = *b;
    *b = t;
}

/* Max-heap under "comes later": the root is the worst element. */
static void sift_down(const double *s, uint32_t *h, size_t n, size_t i)
{
    uint32_t v = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(s, h[c], h[c + 1])) c++;
        if (!before(s, v, h[c])) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static void heapify(const double *s, uint32_t *h, size_t n)
{
    for (size_t i = n / 2; i-- > 0;) sift_down(s, h, n, i);
}

/* Sorts a heap built by heapify into output order (worst moved to the end). */
static void heap_sort_down(const double *s, uint32_t *h, size_t n)
{
    while (n > 1) {
        swap32(&h[0], &h[n - 1]);
        sift_down(s, h, --n, 0);
    }
}

static void insertion_sort(const double *s, uint32_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint32_t v = a[i];
        size_t j = i;
        while (j > 0 && before(s, v, a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

/* Median of first/middle/last moved to a[0], then Hoare partition around it.
 * Returns j with 0 <= j < n-1: a[0..j] come before a[j+1..n). Needs n >= 3. */
static size_t partition(const double *s, uint32_t *a, size_t n)
{
    size_t m = n / 2, l = n - 1;
    if (before(s, a[m], a[0])) swap32(&a[m], &a[0]);
    if (before(s, a[l], a[m])) swap32(&a[l], &a[m]);
    if (before(s, a[m], a[0])) swap32(&a[m], &a[0]);
    /* now a[0] <= a[m] <= a[l]; the median goes to a[0] as the pivot */
    swap32(&a[0], &a[m]);
    uint32_t p = a[0];
    size_t i = 0, j = n;
    for (;;) {
        do j--; while (before(s, p, a[j]));
        while (before(s, a[i], p)) i++;
        if (i >= j) return j;
        swap32(&a[i], &a[j]);
        i++;
    }
}

static void intro_sort(const double *s, uint32_t *a, size_t n, int depth)
{
    while (n > 16) {
        if (depth-- <= 0) {
            heapify(s, a, n);
            heap_sort_down(s, a, n);
            return;
        }
        size_t j = partition(s, a, n) + 1;
        /* recurse into the smaller side, loop on the larger: O(log n) stack */
        if (j < n - j) {
            intro_sort(s, a, j, depth);
            a += j;
            n -= j;
        } else {
            intro_sort(s, a + j, n - j, depth);
            n = j;
        }
    }
    insertion_sort(s, a, n);
}

static int depth_for(size_t n)
{
    int d = 0;
    while (n > 1) {
        n >>= 1;
        d += 2;
    }
    return d;
}

/* Rearranges a[0..n) so that a[0..k) are the k first (unordered). */
static void intro_select(const double *s, uint32_t *a, size_t n, size_t k)
{
    int depth = depth_for(n);
    while (n > 16) {
        if (depth-- <= 0) {
            intro_sort(s, a, n, 0); /* heap sort: O(n log n) worst case */
            return;
        }
        size_t j = partition(s, a, n) + 1;
        if (k <= j) {
            n = j;
        } else {
            a += j;
            n -= j;
            k -= j;
        }
    }
    insertion_sort(s, a, n);
}

/* One pass keeping the k best in a heap whose root is the worst kept. */
static void heap_select(const double *s, size_t n, size_t k, uint32_t *h)
{
    for (size_t i = 0; i < k; i++) h[i] = (uint32_t)i;
    heapify(s, h, k);
    uint64_t thr = key_of(s[h[0]]);
    double t = s[h[0]];
    size_t i = k;
    /* Blocks of 8: one vectorisable test rejects most elements. While the worst
     * kept score is a number, x beats it iff x > t (false for NaN; -0.0 == 0.0
     * ties like their keys). Equal keys never enter: the later index loses. */
    while (i + 8 <= n) {
        int any = 1;
        if (t == t) {
            any = 0;
            for (size_t j = 0; j < 8; j++) any |= s[i + j] > t;
        }
        if (any) {
            for (size_t j = 0; j < 8; j++) {
                if (key_of(s[i + j]) > thr) {
                    h[0] = (uint32_t)(i + j);
                    sift_down(s, h, k, 0);
                    thr = key_of(s[h[0]]);
                    t = s[h[0]];
                }
            }
        }
        i += 8;
    }
    for (; i < n; i++) {
        if (key_of(s[i]) > thr) {
            h[0] = (uint32_t)i;
            sift_down(s, h, k, 0);
            thr = key_of(s[h[0]]);
        }
    }
    heap_sort_down(s, h, k);
}

/* All n in order, k == n: LSD radix sort by ~key (stable, so ties keep index
 * order) between the two n-slot buffers, 8-bit digits. One sequential pass builds
 * every histogram; digits where all keys agree (e.g. a shared exponent) are skipped.
 * Avoids the indirect, branchy compares of a comparison sort. */
static void radix_sort_all(const double *s, size_t n, uint32_t *out, uint32_t *scratch)
{
    uint32_t hist[8][256];
    memset(hist, 0, sizeof hist);
    for (size_t i = 0; i < n; i++) {
        uint64_t k = ~key_of(s[i]);
        for (int d = 0; d < 8; d++) hist[d][(k >> (8 * d)) & 255]++;
    }
    uint32_t *src = scratch, *dst = out;
    for (size_t i = 0; i < n; i++) src[i] = (uint32_t)i;
    uint64_t k0 = ~key_of(s[0]);
    for (int d = 0; d < 8; d++) {
        uint32_t *h = hist[d];
        if (h[(k0 >> (8 * d)) & 255] == n) continue;
        uint32_t sum = 0;
        for (int b = 0; b < 256; b++) {
            uint32_t c = h[b];
            h[b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t idx = src[i];
            dst[h[(~key_of(s[idx]) >> (8 * d)) & 255]++] = idx;
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != out) memcpy(out, src, n * sizeof *out);
}

size_t rr_topk(const double *scores, size_t n, size_t k, uint32_t *out, uint32_t *scratch)
{
    if (k > n) k = n;
    if (k == 0) return 0;
    if (k <= n / 4) {
        heap_select(scores, n, k, out);
        return k;
    }
    if (k == n && n >= RADIX_MIN) {
        radix_sort_all(scores, n, out, scratch);
        return k;
    }
    uint32_t *a = (k == n) ? out : scratch;
    for (size_t i = 0; i < n; i++) a[i] = (uint32_t)i;
    if (k < n) intro_select(scores, a, n, k);
    intro_sort(scores, a, k, depth_for(k));
    if (a != out) memcpy(out, a, k * sizeof *out);
    return k;
}
