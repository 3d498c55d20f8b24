/* kd_test — the smallest test harness: TAP lines on stdout, exit status 1
 * if any check failed.  Each test binary is one file tests/unit/test_*.c. */
#ifndef KD_TEST_H
#define KD_TEST_H

#include <math.h>
#include <stdarg.h>
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

/* KD_REQUIRE(cond, fmt, ...): a precondition of the checks that follow
 * (fixture data present, a model built).  Silent when it holds; otherwise a
 * failing check named by fmt, so a missing dataset or a build regression
 * turns the suite red instead of removing checks.  Evaluates to cond's truth:
 *     if (!KD_REQUIRE(m, "build resnet18: %s", kd_err_get())) return; */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static inline int kd_test_require(int ok, const char *file, int line, const char *fmt, ...)
{
    if (ok)
        return 1;
    kd_test_n++;
    kd_test_failed++;
    printf("not ok %d - %s:%d: required: ", kd_test_n, file, line);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    return 0;
}
#define KD_REQUIRE(cond, ...) kd_test_require(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* A fixture-driven test ran at least min cases: a regenerated fixture with
 * renamed or dropped cases must fail, not quietly shrink the suite. */
#define KD_MIN_CASES(n, min, what)                                            \
    KD_CHECK((n) >= (min), "%s: %d cases run (at least %d expected)", (what), (int)(n), (int)(min))

/* A TAP skip ("ok N # skip reason"); scripts/run-tests counts it as skipped,
 * and as failed when reason is "needs PKG" for a package scripts/deps
 * installs. */
#define KD_SKIP(...)                                                          \
    do {                                                                      \
        kd_test_n++;                                                          \
        printf("ok %d # skip ", kd_test_n);                                   \
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
