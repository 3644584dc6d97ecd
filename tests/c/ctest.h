/* Minimal TAP harness for the C unit tests: one "ok N - name" line per check. */
#ifndef CTEST_H
#define CTEST_H
#include <stdio.h>
#include <math.h>
static int ct_n, ct_failed;
#define CHECK(cond, name) do { ct_n++; if (cond) printf("ok %d - %s\n", ct_n, name); \
    else { ct_failed++; printf("not ok %d - %s (%s:%d: %s)\n", ct_n, name, __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_NEAR(a, b, eps, name) CHECK(fabs((double)(a) - (double)(b)) <= (eps), name)
#define CT_DONE() (printf("1..%d\n", ct_n), ct_failed ? 1 : 0)
/* xorshift64: the same random cases every run */
static inline unsigned long long ct_next(void)
{
    static unsigned long long s = 12345;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}
#endif
