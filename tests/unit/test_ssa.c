/* test_ssa — the sparse spatial aggregation (lib/kd_ssa.h), kernels and
 * naive references, against PyTorch in float64 (tests/fixtures/ssa.h5,
 * written by tests/gen/ssa.py from METHODS.md): the output and the
 * gradient within 1e-5 relative, the kept sets index for index (including
 * maps built with exact ties: ties to the lower j, j = i always kept), the
 * refusals of kd_ssa_init. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_ssa.h"
#include "kd_test.h"

enum { MIN_CASES = 8, MIN_TIES = 2, MAXN = 4096 };
static const char *fixture = "tests/fixtures/ssa.h5";

static long rd(kd_h5 *h, const char *grp, const char *name, kd_dtype dt, void *buf, int64_t *dims, int *rank)
{
    char p[128];
    kd_dtype t;
    snprintf(p, sizeof p, "%s/%s", grp, name);
    if (kd_h5_info(h, p, &t, rank, dims))
        return -1;
    long n = 1;
    for (int i = 0; i < *rank; i++)
        n *= (long)dims[i];
    return n <= MAXN && !kd_h5_read(h, p, dt, 0, dims[0], buf) ? n : -1;
}

static void test_init(void)
{
    kd_ssa s;
    KD_CHECK(!kd_ssa_init(&s, 2, 3, 4, 4, 99, 2.0f) && s.k == 16, "k larger than h*w is clipped to it: %d", s.k);
    KD_CHECK(kd_ssa_init(&s, 2, 3, 4, 4, 0, 2.0f) == -1 && !strcmp(kd_err_get(), "ssa: k 0 must be >= 1 and gamma 2 > 0"),
             "k 0 refused: %s", kd_err_get());
    KD_CHECK(kd_ssa_init(&s, 2, 3, 4, 4, 4, NAN) == -1 && kd_ssa_init(&s, 2, 3, 4, 4, 4, 0) == -1, "gamma NaN, 0 refused");
    KD_CHECK(kd_ssa_init(&s, 2, 0, 4, 4, 4, 2) == -1 && !strcmp(kd_err_get(), "ssa: bad map size [2,0,4,4]"),
             "0 channels refused: %s", kd_err_get());
}

static void test_cases(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "cases", &ncase);
    int done = 0, ties = 0;
    double worst_y = 0, worst_g = 0;
    for (int c = 0; c < ncase; c++) {
        char g[32];
        snprintf(g, sizeof g, "case%02d", c);
        static float x[MAXN], y[MAXN], dy[MAXN], dx[MAXN], wy[MAXN], wdx[MAXN], ry[MAXN], rdx[MAXN], wt[MAXN], y2[MAXN];
        static int32_t kept[MAXN], idx[MAXN], idx2[MAXN];
        int64_t xd[4], kd[3], k = 0, tie = 0;
        double gamma = 0;
        int xr, kr, r2;
        long n = rd(h, g, "x", KD_F32, x, xd, &xr);
        int ok = n > 0 && xr == 4 && rd(h, g, "y", KD_F32, wy, xd, &r2) == n && rd(h, g, "dy", KD_F32, dy, xd, &r2) == n &&
                 rd(h, g, "dx", KD_F32, wdx, xd, &r2) == n && rd(h, g, "kept", KD_I32, kept, kd, &kr) > 0 &&
                 !kd_h5_attr_get_i64(h, g, "k", &k) && !kd_h5_attr_get_f64(h, g, "gamma", &gamma) &&
                 !kd_h5_attr_get_i64(h, g, "ties", &tie);
        kd_ssa s;
        ok = ok && !kd_ssa_init(&s, (int)xd[0], (int)xd[1], (int)xd[2], (int)xd[3], (int)k, (float)gamma) &&
             kd[2] == s.k && (long)kd[0] * kd[1] * kd[2] <= MAXN;
        KD_CHECK(ok, "%s read", g);
        if (!ok)
            continue;
        int np = s.h * s.w;
        float *ws = malloc(sizeof(float) * kd_ssa_workspace(&s)), norms[2 * MAXN];
        if (!KD_REQUIRE(ws, "workspace"))
            return;
        kd_ssa_forward(&s, x, y, idx, wt, norms, ws);
        long nk = (long)s.B * np * s.k;
        int same_kept = !memcmp(idx, kept, sizeof(int32_t) * (size_t)nk);
        for (long i = 0; i < n; i++)
            dx[i] = 0.25f; /* the backward adds: start from a known value */
        kd_ssa_backward(&s, x, y, idx, wt, norms, dy, dx, ws);
        for (long i = 0; i < n; i++)
            dx[i] -= 0.25f;
        double ey = kd_test_relerr(y, wy, n, 1e-12), eg = kd_test_relerr(dx, wdx, n, 1e-12);
        KD_CHECK(same_kept && ey <= 1e-5 && eg <= 1e-5,
                 "%s [%d,%d,%d,%d] k %d gamma %g%s: kept sets %s, y rel %.1e, dx rel %.1e", g, s.B, s.C, s.h, s.w, s.k,
                 gamma, tie ? " (ties)" : "", same_kept ? "equal" : "DIFFER", ey, eg);
        memset(rdx, 0, sizeof(float) * (size_t)n);
        int rok = !kd_ssa_forward_ref(&s, x, ry) && !kd_ssa_backward_ref(&s, x, dy, rdx);
        double ery = kd_test_relerr(ry, wy, n, 1e-12), erg = kd_test_relerr(rdx, wdx, n, 1e-12);
        KD_CHECK(rok && ery <= 1e-5 && erg <= 1e-5, "%s naive reference: y rel %.1e, dx rel %.1e", g, ery, erg);
        kd_ssa_forward(&s, x, y2, idx2, wt, norms, ws);
        KD_CHECK(!memcmp(y, y2, sizeof(float) * (size_t)n) && !memcmp(idx, idx2, sizeof(int32_t) * (size_t)nk),
                 "%s: a second forward gives the same bytes", g);
        worst_y = fmax(worst_y, fmax(ey, ery)), worst_g = fmax(worst_g, fmax(eg, erg));
        ties += tie != 0;
        done++;
        free(ws);
    }
    KD_MIN_CASES(done, MIN_CASES, "ssa");
    KD_MIN_CASES(ties, MIN_TIES, "ssa with ties");
    printf("# ssa: worst y %.2e, dx %.2e\n", worst_y, worst_g);
}

/* The tie map by hand (tests/gen/ssa.py tie_map): position 0's kept set
 * with k 3 is 0, then 4 (same direction), then 1, the lower of the four
 * equally similar 1, 2, 3, 5; position 11 keeps itself before its lower
 * copies 6, 7. */
static void test_ties(kd_h5 *h)
{
    static float x[MAXN], y[MAXN], wt[MAXN], norms[MAXN];
    static int32_t idx[MAXN];
    int64_t xd[4];
    int r;
    kd_ssa s;
    int ok = rd(h, "case06", "x", KD_F32, x, xd, &r) > 0 && !kd_ssa_init(&s, (int)xd[0], (int)xd[1], (int)xd[2], (int)xd[3], 3, 2);
    float *ws = ok ? malloc(sizeof(float) * kd_ssa_workspace(&s)) : NULL;
    if (!KD_REQUIRE(ws, "case06 read"))
        return;
    kd_ssa_forward(&s, x, y, idx, wt, norms, ws);
    KD_CHECK(idx[0] == 0 && idx[1] == 4 && idx[2] == 1, "position 0 keeps 0 4 1: %d %d %d", idx[0], idx[1], idx[2]);
    KD_CHECK(idx[33] == 11 && idx[34] == 6 && idx[35] == 7, "position 11 keeps 11 6 7: %d %d %d", idx[33], idx[34],
             idx[35]);
    free(ws);
}

int main(void)
{
    test_init();
    kd_h5 h;
    if (KD_REQUIRE(!kd_h5_open(&h, fixture, "fixture"), "open %s: %s", fixture, kd_err_get())) {
        test_cases(&h);
        test_ties(&h);
        kd_h5_close(&h);
    }
    return KD_TEST_DONE();
}
