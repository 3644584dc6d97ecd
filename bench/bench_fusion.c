/* The fusion kernels of the rrf and linear (normalize = min_max) entries of lua/rerank/fusion/ as
 * plain C loops over the same prepared data (per list: document numbers and similarities),
 * so bench/bench_fusion.lua can compare LuaJIT with C on identical inputs. Built as a
 * shared object by that script; not part of the daemon. Document numbers are 1-based
 * like the Lua arrays; F has n_docs + 1 slots (F[0] unused). */
#include <stddef.h>

void bf_rrf(double *F, int n_docs, int n_lists, const int *const *docs, const int *lens,
            const double *w, double k, int rank_base)
{
    for (int d = 1; d <= n_docs; d++) F[d] = 0;
    double c = k + rank_base - 1;
    for (int i = 0; i < n_lists; i++) {
        const int *ld = docs[i];
        double wi = w[i];
        for (int j = 1; j <= lens[i]; j++) F[ld[j - 1]] += wi / (c + j);
    }
}

void bf_linear_minmax(double *F, int n_docs, int n_lists, const int *const *docs, const int *lens,
                      const double *const *sims, const double *w)
{
    for (int d = 1; d <= n_docs; d++) F[d] = 0;
    for (int i = 0; i < n_lists; i++) {
        const int *ld = docs[i];
        const double *s = sims[i];
        int n = lens[i];
        if (n == 0) continue;
        double mn = s[0], mx = s[0];
        for (int j = 1; j < n; j++) {
            if (s[j] < mn) mn = s[j];
            if (s[j] > mx) mx = s[j];
        }
        double wi = w[i];
        if (mx == mn) {
            for (int j = 0; j < n; j++) F[ld[j]] += wi * 1.0;
        } else {
            double r = mx - mn;
            for (int j = 0; j < n; j++) F[ld[j]] += wi * ((s[j] - mn) / r);
        }
    }
}
