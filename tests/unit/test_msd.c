/* test_msd — MSD's student side and contrasts (kd_msd, lib/kd_msd.h)
 * against PyTorch in float64 (tests/fixtures/msd.h5, written by
 * tests/gen/msd.py from METHODS.md): the loss and its two terms, dF, and the
 * gradients of the classifier (W, b) in logits space or of the aligner
 * (1x1 conv, BN weight and bias) in feat space, within 1e-5 relative; the
 * gradients are added, so they start from a known value.  Then the
 * loss-only call gives the same number, and central differences agree
 * with dF independently of the fixture.  A missing fixture, or fewer cases
 * than written, fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_msd.h"
#include "kd_test.h"
#include "kd_test_h5.h"

enum { B = 4, C = 8, K = 10, MAXD = 16, MAXHW = 49, MAXR = 32, MIN_CASES = 7 };
static const char *fixture = "tests/fixtures/msd.h5";

static int rd_scales(kd_h5 *h, const char *grp, kd_regions *rg)
{
    char p[128];
    int64_t dims[KD_MAX_RANK];
    kd_dtype ft;
    int rank;
    snprintf(p, sizeof p, "%s/scales", grp);
    if (kd_h5_info(h, p, &ft, &rank, dims) || rank != 1 || dims[0] < 1 || dims[0] > KD_REGIONS_MAX_SCALES)
        return -1;
    rg->nscales = (int)dims[0];
    return kd_h5_read(h, p, KD_I32, 0, dims[0], rg->scales);
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

/* grad += 0.25 before the step, -= 0.25 after: what it added */
static void bias(float *g, long n, float by)
{
    for (long i = 0; g && i < n; i++)
        g[i] += by;
}

static void test_fixture(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "cases", &ncase);
    KD_CHECK(ncase >= MIN_CASES, "%lld cases in the fixture (at least %d)", (long long)ncase, MIN_CASES);
    int done = 0, spaces[2] = {0, 0}, aligned = 0, strided = 0;
    double worst = 0;
    for (int c = 0; c < ncase; c++) {
        char g[32];
        snprintf(g, sizeof g, "case%02d", c);
        static float F[B * C * MAXHW], zt[B * MAXR * MAXD], wt[B * MAXR], dF[B * C * MAXHW], want_dF[B * C * MAXHW];
        static float P[6][MAXD * C], dP[6][MAXD * C], want[6][MAXD * C];
        double loss = 0, sam = 0, fea = 0, tau = 0, weight = 0;
        int64_t space = -1, stride = -1, D = 0, dims[KD_MAX_RANK];
        kd_dtype ft;
        int rank;
        kd_regions rg = {0};
        char fp[48];
        snprintf(fp, sizeof fp, "%s/F", g);
        int ok = !kd_h5_attr_get_f64(h, g, "loss", &loss) && !kd_h5_attr_get_f64(h, g, "sam", &sam) &&
                 !kd_h5_attr_get_f64(h, g, "fea", &fea) && !kd_h5_attr_get_f64(h, g, "tau", &tau) &&
                 !kd_h5_attr_get_f64(h, g, "weight", &weight) && !kd_h5_attr_get_i64(h, g, "space", &space) &&
                 !kd_h5_attr_get_i64(h, g, "stride", &stride) && !kd_h5_attr_get_i64(h, g, "D", &D) &&
                 !rd_scales(h, g, &rg) && !kd_h5_info(h, fp, &ft, &rank, dims) && rank == 4 && dims[0] == B &&
                 dims[1] == C && dims[2] * dims[3] <= MAXHW && D >= 1 && D <= MAXD && (space == 0 || space == 1);
        if (!KD_REQUIRE(ok, "%s: attributes and shapes", g))
            continue;
        int hh = (int)dims[2], ww = (int)dims[3], d = (int)D, hw = hh * ww;
        rg.stride = (int)stride;
        int R = kd_regions_count(&rg, hh, ww);
        if (!KD_REQUIRE(R > 0 && R <= MAXR, "%s: %d regions", g, R))
            continue;
        /* the trainable tensors of the case, and their gradients */
        const char *names[2][3] = {{"W", "b", NULL}, {"aw", "ag", "ab"}};
        long sizes[2][3] = {{(long)d * C, d, 0}, {(long)d * C, d, d}};
        int align = space == 1 && d != C, np = space == 0 ? 2 : align ? 3 : 0;
        ok = !rd(h, g, "F", (long)B * C * hw, F) && !rd(h, g, "zt", (long)B * R * d, zt) &&
             !rd(h, g, "wt", (long)B * R, wt) && !rd(h, g, "dF", (long)B * C * hw, want_dF);
        for (int i = 0; i < np; i++) {
            char dn[8];
            snprintf(dn, sizeof dn, "d%s", names[space][i]);
            ok = ok && !rd(h, g, names[space][i], sizes[space][i], P[i]) &&
                 !rd(h, g, dn, sizes[space][i], want[i]);
        }
        if (!KD_REQUIRE(ok, "%s: data", g))
            continue;
        kd_msd m;
        if (!KD_REQUIRE(!kd_msd_init(&m, &rg, space ? KD_MSD_FEAT : KD_MSD_LOGITS, B, C, hh, ww, d, (float)tau),
                        "%s: init: %s", g, kd_err_get()))
            continue;
        KD_CHECK(m.align == align && m.R == R, "%s: aligner %d (want %d), %d regions", g, m.align, align, R);
        kd_msd_params p = {0};
        for (int i = 0; i < np; i++)
            for (long j = 0; j < sizes[space][i]; j++)
                dP[i][j] = 0.25f;
        for (long j = 0; j < (long)B * C * hw; j++)
            dF[j] = 0.25f;
        if (space == 0)
            p = (kd_msd_params){.W = P[0], .b = P[1], .dW = dP[0], .db = dP[1]};
        else if (align)
            p = (kd_msd_params){.aw = P[0], .ag = P[1], .ab = P[2], .daw = dP[0], .dag = dP[1], .dab = dP[2]};
        double l = kd_msd_step(&m, B, F, &p, zt, wt, (float)weight, dF);
        bias(dF, (long)B * C * hw, -0.25f);
        double el = fmax(rel(l, loss), fmax(rel(m.sam, sam), rel(m.fea, fea)));
        double eg = kd_test_relerr(dF, want_dF, (long)B * C * hw, 1e-12);
        KD_CHECK(el <= 1e-5 && eg <= 1e-5,
                 "%s space %lld %dx%d R %d D %d tau %g: loss %.8g vs %.8g (sam %.6g, fea %.6g; rel %.1e), dF rel %.1e",
                 g, (long long)space, hh, ww, R, d, tau, l, loss, m.sam, m.fea, el, eg);
        worst = fmax(worst, fmax(el, eg));
        for (int i = 0; i < np; i++) {
            bias(dP[i], sizes[space][i], -0.25f);
            double e = kd_test_relerr(dP[i], want[i], sizes[space][i], 1e-12);
            worst = fmax(worst, e);
            KD_CHECK(e <= 1e-5, "%s: d%s rel %.1e", g, names[space][i], e);
        }
        /* the loss alone: the same number, nothing else touched */
        double la = kd_msd_step(&m, B, F, &p, zt, wt, (float)weight, NULL);
        KD_CHECK(la == l, "%s: the loss alone is the same number (%.10g vs %.10g)", g, la, l);
        kd_msd_free(&m);
        spaces[space]++, aligned += align, strided += stride > 0;
        done++;
    }
    KD_MIN_CASES(done, MIN_CASES, "msd fixture");
    KD_CHECK(spaces[0] >= 3 && spaces[1] >= 3 && aligned >= 2 && strided >= 1,
             "cases: %d logits, %d feat (%d through an aligner), %d sliding; worst rel err %.2e", spaces[0], spaces[1],
             aligned, strided, worst);
}

/* dF against central differences of the loss, in both spaces, on a batch
 * smaller than the one planned for (the last batch of an epoch). */
static void test_fd(void)
{
    enum { n = 3, h = 5, w = 5, D = 6 };
    static float F[B * C * h * w], zt[B * 21 * K], wt[B * 21], W[K * C], bb[K], aw[D * C], ag[D], ab[D], dF[B * C * h * w];
    static float dW[K * C], db[K], daw[D * C], dag[D], dab[D];
    unsigned r = 777;
#define RND() ((float)((r = r * 1103515245u + 12345u) % 2001) / 1000.0f - 1.0f)
    for (size_t i = 0; i < sizeof F / sizeof *F; i++)
        F[i] = RND();
    for (size_t i = 0; i < sizeof zt / sizeof *zt; i++)
        zt[i] = 2 * RND();
    for (size_t i = 0; i < sizeof wt / sizeof *wt; i++)
        wt[i] = RND() > 0.4f ? 2 : 1;
    for (int i = 0; i < K * C; i++)
        W[i] = 0.4f * RND();
    for (int i = 0; i < K; i++)
        bb[i] = 0.1f * RND();
    for (int i = 0; i < D * C; i++)
        aw[i] = 0.5f * RND();
    for (int i = 0; i < D; i++)
        ag[i] = 1 + 0.2f * RND(), ab[i] = 0.1f * RND();
    kd_regions rg = {.nscales = 3, .scales = {1, 2, 4}};
    for (int space = 0; space < 2; space++) {
        kd_msd m;
        if (!KD_REQUIRE(!kd_msd_init(&m, &rg, space, B, C, h, w, space ? D : K, 0.2f), "fd init: %s", kd_err_get()))
            return;
        kd_msd_params p = space ? (kd_msd_params){.aw = aw, .ag = ag, .ab = ab, .daw = daw, .dag = dag, .dab = dab}
                                : (kd_msd_params){.W = W, .b = bb, .dW = dW, .db = db};
        memset(dF, 0, sizeof dF);
        kd_msd_step(&m, n, F, &p, zt, wt, 1, dF);
        double worst = 0;
        for (int i = 0; i < n * C * h * w; i += 7) {
            float v = F[i], e = 1e-2f;
            F[i] = v + e;
            double a = kd_msd_step(&m, n, F, &p, zt, wt, 1, NULL);
            F[i] = v - e;
            double c = kd_msd_step(&m, n, F, &p, zt, wt, 1, NULL);
            F[i] = v;
            worst = fmax(worst, fabs((a - c) / (2 * (double)e) - dF[i]) / (fabs(dF[i]) + 1e-2));
        }
        KD_CHECK(worst < 2e-2, "%s space, %d of %d images: dF vs central differences, worst rel err %.1e",
                 space ? "feat" : "logits", n, B, worst);
        kd_msd_free(&m);
    }
}

int main(void)
{
    test_fd();
    kd_h5 h;
    if (kd_h5_open(&h, fixture, "fixture")) {
        KD_CHECK(0, "open %s: %s (tests/gen/msd.py writes it)", fixture, kd_err_get());
        return KD_TEST_DONE();
    }
    test_fixture(&h);
    kd_h5_close(&h);
    return KD_TEST_DONE();
}
