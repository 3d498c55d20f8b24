/* test_regions — multi-scale window pooling (lib/kd_regions.h) against
 * PyTorch's adaptive_avg_pool2d / avg_pool2d (tests/fixtures/regions.h5,
 * written by tests/gen/regions.py): values and the backward within 1e-5
 * relative, the backward also against finite differences of the forward;
 * region counts and spans; refusals; the categorisation with ties. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_regions.h"
#include "kd_test.h"

enum { MIN_POOL = 8, MIN_CAT = 3, MAXN = 8192 };
static const char *fixture = "tests/fixtures/regions.h5";

/* A dataset of at most max elements into buf; its dims and rank out. */
static long rd(kd_h5 *h, const char *grp, const char *name, kd_dtype dt, void *buf, long max, int64_t *dims,
               int *rank)
{
    char p[128];
    kd_dtype t;
    snprintf(p, sizeof p, "%s/%s", grp, name);
    if (kd_h5_info(h, p, &t, rank, dims))
        return -1;
    long n = 1;
    for (int i = 0; i < *rank; i++)
        n *= (long)dims[i];
    if (n > max || kd_h5_read(h, p, dt, 0, dims[0], buf))
        return -1;
    return n;
}

static void test_counts(void)
{
    kd_regions r = {.nscales = 3, .scales = {1, 2, 4}};
    KD_CHECK(kd_regions_count(&r, 7, 7) == 21 && kd_regions_count(&r, 4, 4) == 21, "1,2,4: 21 regions on 7x7 and 4x4");
    int f = -1, c = -1;
    int ok = !kd_regions_scale_span(&r, 7, 7, 0, &f, &c) && f == 0 && c == 1;
    ok = ok && !kd_regions_scale_span(&r, 7, 7, 4, &f, &c) && f == 1 && c == 4;
    ok = ok && !kd_regions_scale_span(&r, 7, 7, 5, &f, &c) && f == 5 && c == 16;
    ok = ok && !kd_regions_scale_span(&r, 7, 7, 20, &f, &c) && f == 5 && c == 16;
    KD_CHECK(ok, "spans: region 0 -> [0,1), 4 -> [1,5), 5 and 20 -> [5,21)");
    KD_CHECK(kd_regions_scale_span(&r, 7, 7, 21, &f, &c) == -1 && strstr(kd_err_get(), "region 21 out of range"),
             "span of region 21 of 21 refused: %s", kd_err_get());
    r.stride = 1;
    KD_CHECK(kd_regions_count(&r, 7, 7) == 1 + 16 + 36, "stride 1 on 7x7: 1 + 4x4 windows of 4x4 + 6x6 of 2x2");
    ok = !kd_regions_scale_span(&r, 7, 7, 17, &f, &c) && f == 17 && c == 36;
    KD_CHECK(ok, "stride 1: region 17 in [17,53)");
    struct {
        kd_regions r;
        int h, w;
        const char *msg;
    } bad[] = {
        {{.nscales = 3, .scales = {1, 2, 8}}, 7, 7, "regions: scale 8 does not fit a 7x7 map (1 to 7)"},
        {{.nscales = 2, .scales = {1, 5}}, 4, 9, "regions: scale 5 does not fit a 4x9 map (1 to 4)"},
        {{.nscales = 2, .scales = {2, 4}}, 7, 7, "regions: the first scale is 2, must be 1 (region 0 is the global average)"},
        {{.nscales = 2, .scales = {1, 0}}, 7, 7, "regions: scale 0 does not fit a 7x7 map (1 to 7)"},
        {{.nscales = 0}, 7, 7, "regions: 0 scales (1 to 8)"},
        {{.nscales = 9, .scales = {1}}, 7, 7, "regions: 9 scales (1 to 8)"},
        {{.nscales = 1, .scales = {1}, .stride = -1}, 7, 7, "regions: stride -1 is negative"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int n = kd_regions_count(&bad[i].r, bad[i].h, bad[i].w);
        KD_CHECK(n == -1 && !strcmp(kd_err_get(), bad[i].msg), "refused: %s", kd_err_get());
    }
}

static void test_pool(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "pool_cases", &ncase);
    static float map[MAXN], out[MAXN], want[MAXN], dout[MAXN], dmap[MAXN], wdmap[MAXN], pert[MAXN], o2[MAXN];
    int done = 0;
    double worst_f = 0, worst_b = 0, worst_fd = 0;
    for (int c = 0; c < ncase; c++) {
        char g[64];
        snprintf(g, sizeof g, "pool/case%02d", c);
        int64_t md[4], od[4], sd[1], stride = -1;
        int mr, orank, sr;
        int scales[KD_REGIONS_MAX_SCALES];
        long nm = rd(h, g, "map", KD_F32, map, MAXN, md, &mr);
        long no = rd(h, g, "out", KD_F32, want, MAXN, od, &orank);
        int ok = nm > 0 && mr == 4 && no > 0 && orank == 3 && rd(h, g, "dout", KD_F32, dout, MAXN, od, &orank) == no &&
                 rd(h, g, "dmap", KD_F32, wdmap, MAXN, md, &mr) == nm &&
                 rd(h, g, "scales", KD_I32, scales, KD_REGIONS_MAX_SCALES, sd, &sr) > 0 &&
                 !kd_h5_attr_get_i64(h, g, "stride", &stride);
        KD_CHECK(ok, "%s read", g);
        if (!ok)
            continue;
        int B = (int)md[0], C = (int)md[1], H = (int)md[2], W = (int)md[3];
        kd_regions r = {.nscales = (int)sd[0], .stride = (int)stride};
        memcpy(r.scales, scales, sizeof(int) * (size_t)r.nscales);
        int R = kd_regions_count(&r, H, W);
        KD_CHECK(R == od[1] && od[0] == B && od[2] == C, "%s: %dx%d stride %d: R %d (PyTorch %lld)", g, H, W, r.stride,
                 R, (long long)od[1]);
        if (R != od[1])
            continue;
        kd_regions_forward(&r, map, B, C, H, W, out);
        double ef = kd_test_relerr(out, want, no, 1e-12);
        for (long i = 0; i < nm; i++)
            dmap[i] = 0.25f; /* the backward adds: start from a known value */
        kd_regions_backward(&r, dout, B, C, H, W, dmap);
        for (long i = 0; i < nm; i++)
            dmap[i] -= 0.25f;
        double eb = kd_test_relerr(dmap, wdmap, nm, 1e-12);
        /* finite differences of L = sum(dout * forward(map)) at every position:
         * linear in map, so central differences are exact up to rounding */
        double efd = 0, gmax = 1e-12;
        const float eps = 0.5f;
        memcpy(pert, map, sizeof(float) * (size_t)nm);
        for (long i = 0; i < nm; i++) {
            double l[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                pert[i] = map[i] + (sgn ? -eps : eps);
                kd_regions_forward(&r, pert, B, C, H, W, o2);
                double acc = 0;
                for (long j = 0; j < no; j++)
                    acc += (double)dout[j] * o2[j];
                l[sgn] = acc;
            }
            pert[i] = map[i];
            double fd = (l[0] - l[1]) / (2.0 * eps);
            efd = fmax(efd, fabs(fd - dmap[i]));
            gmax = fmax(gmax, fabs(dmap[i]));
        }
        efd /= gmax;
        worst_f = fmax(worst_f, ef), worst_b = fmax(worst_b, eb), worst_fd = fmax(worst_fd, efd);
        KD_CHECK(ef <= 1e-5 && eb <= 1e-5 && efd <= 1e-4,
                 "%s: forward rel %.1e, backward rel %.1e (PyTorch), %.1e (finite differences)", g, ef, eb, efd);
        double mean = 0;
        for (long i = 0; i < (long)H * W; i++)
            mean += map[i];
        mean /= (double)H * W;
        KD_CHECK(fabs(out[0] - mean) <= 1e-6 * fabs(mean) + 1e-7, "%s: region 0 is the global average (%.7g, %.7g)", g,
                 out[0], mean);
        done++;
    }
    KD_MIN_CASES(done, MIN_POOL, "pool");
    printf("# pool: worst forward %.2e, backward %.2e, finite differences %.2e\n", worst_f, worst_b, worst_fd);
}

static void test_categorise(kd_h5 *h)
{
    /* hand-made: ties go to the lower class, a NaN is never the maximum */
    const float z[] = {3, 5, 5, 1, /* region 0: argmax 1 (tie 1,2) */
                       5, 5, 0, 0, /* argmax 0 (tie): complementary */
                       0, 5, 5, 5, /* argmax 1: consistent */
                       NAN, 2, 7, 7 /* argmax 2: complementary */};
    float wt[4];
    kd_regions_categorise(z, 1, 4, 4, 2.0f, wt);
    KD_CHECK(wt[0] == 1 && wt[1] == 2 && wt[2] == 1 && wt[3] == 2, "categorise ties: %g %g %g %g (1 2 1 2)", wt[0],
             wt[1], wt[2], wt[3]);
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "cat_cases", &ncase);
    int done = 0;
    for (int c = 0; c < ncase; c++) {
        char g[64];
        snprintf(g, sizeof g, "cat/case%02d", c);
        static float zz[MAXN], want[MAXN], got[MAXN];
        int64_t zd[3], wd[2];
        int zr, wr;
        double wc = 0;
        long nz = rd(h, g, "z", KD_F32, zz, MAXN, zd, &zr);
        long nw = rd(h, g, "wt", KD_F32, want, MAXN, wd, &wr);
        int ok = nz > 0 && zr == 3 && nw == zd[0] * zd[1] && !kd_h5_attr_get_f64(h, g, "w_comp", &wc);
        KD_CHECK(ok, "%s read", g);
        if (!ok)
            continue;
        kd_regions_categorise(zz, (int)zd[0], (int)zd[1], (int)zd[2], (float)wc, got);
        KD_CHECK(!memcmp(got, want, sizeof(float) * (size_t)nw), "%s: B %lld R %lld K %lld: weights equal numpy's", g,
                 (long long)zd[0], (long long)zd[1], (long long)zd[2]);
        done++;
    }
    KD_MIN_CASES(done, MIN_CAT, "categorise");
}

int main(void)
{
    test_counts();
    kd_h5 h;
    if (KD_REQUIRE(!kd_h5_open(&h, fixture, "fixture"), "open %s: %s", fixture, kd_err_get())) {
        test_pool(&h);
        test_categorise(&h);
        kd_h5_close(&h);
    }
    return KD_TEST_DONE();
}
