/* kd_test — the smallest test harness: TAP lines on stdout, exit status 1
 * if any check failed.  Each test binary is one file tests/unit/test_*.c. */
#ifndef KD_TEST_H
#define KD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int kd_test_n, kd_test_failed;

#define KD_CHECK(cond, ...)                                                   \
    do {                                                                      \
        kd_test_n++;                                                          \
        if (cond) {                                                           \
            printf("ok %d - ", kd_test_n);                                    \
        } else {                                                              \
            kd_test_failed++;                                                 \
            printf("not ok %d - %s:%d: ", kd_test_n, __FILE__, __LINE__);     \
        }                                                                     \
        printf(__VA_ARGS__);                                                  \
        printf("\n");                                                         \
        fflush(stdout);                                                       \
    } while (0)

/* Max relative error: max|a-b| / max(max|b|, floor). */
static inline double kd_test_relerr(const float *a, const float *b, long n, double floor_)
{
    double md = 0, mb = floor_;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= md))
            md = d; /* NaN propagates as a large error */
        if (fabs((double)b[i]) > mb)
            mb = fabs((double)b[i]);
    }
    return md / mb;
}

#define KD_TEST_DONE() (printf("1..%d\n", kd_test_n), kd_test_failed ? 1 : 0)

#endif
