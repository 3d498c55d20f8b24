/* test_sup_kd — the supervised distillation losses' arithmetic against
 * PyTorch in float64 (tests/fixtures/sup_kd.h5, written by
 * tests/gen/sup_kd.py from METHODS.md): kd_kd_loss, and kd_dkd_loss with
 * kd_dkd_warmup's factor applied as the dkd module applies it, loss and
 * gradient wrt the student's logits within 1e-5 relative; then both
 * gradients against central differences.  A missing fixture, or fewer
 * cases than written, fails. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_loss.h"
#include "kd_test.h"
#include "kd_test_h5.h"

enum { B = 6, K = 10, MIN_KD = 5, MIN_DKD = 6 };
static const char *fixture = "tests/fixtures/sup_kd.h5";

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

/* The fixture's attributes by name, all or nothing. */
static int attrs(kd_h5 *h, const char *g, const char *const *names, double *v, int n)
{
    for (int i = 0; i < n; i++)
        if (kd_h5_attr_get_f64(h, g, names[i], &v[i]))
            return -1;
    return 0;
}

static void test_kd(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "kd_cases", &ncase);
    double worst_l = 0, worst_g = 0;
    int done = 0, confident = 0;
    for (int c = 0; c < ncase; c++) {
        char g[64];
        snprintf(g, sizeof g, "kd/case%02d", c);
        static const char *const an[] = {"loss", "T", "weight", "confident"};
        float zs[B * K], zt[B * K], want[B * K], d[B * K];
        double a[4], work[2 * K];
        int ok = !attrs(h, g, an, a, 4) && !rd_as(h, g, "zs", KD_F32, B * K, zs) && !rd_as(h, g, "zt", KD_F32, B * K, zt) &&
                 !rd_as(h, g, "grad", KD_F32, B * K, want);
        if (!KD_REQUIRE(ok, "%s read: %s", g, kd_err_get()))
            continue;
        for (int i = 0; i < B * K; i++) /* the gradient is added: start from a known value */
            d[i] = 0.25f;
        double l = kd_kd_loss(zs, zt, B, K, (float)a[1], (float)a[2], d, work);
        for (int i = 0; i < B * K; i++)
            d[i] -= 0.25f;
        double el = rel(l, a[0]), eg = kd_test_relerr(d, want, B * K, 1e-12);
        worst_l = fmax(worst_l, el), worst_g = fmax(worst_g, eg);
        KD_CHECK(el <= 1e-5 && eg <= 1e-5, "%s T %g weight %g%s: loss %.8g vs %.8g (rel %.1e), gradient rel %.1e", g,
                 a[1], a[2], a[3] ? " (confident teacher)" : "", l, a[0], el, eg);
        KD_CHECK(kd_kd_loss(zs, zt, B, K, (float)a[1], (float)a[2], NULL, work) == l,
                 "%s: the loss alone is the same number", g);
        confident += a[3] != 0;
        done++;
    }
    KD_MIN_CASES(done, MIN_KD, "kd");
    KD_CHECK(confident >= 1, "kd: %d cases with a confident teacher; worst loss rel err %.2e, gradient %.2e", confident,
             worst_l, worst_g);
}

static void test_dkd(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "dkd_cases", &ncase);
    double worst_l = 0, worst_g = 0;
    int done = 0, confident = 0, warming = 0, full = 0;
    for (int c = 0; c < ncase; c++) {
        char g[64];
        snprintf(g, sizeof g, "dkd/case%02d", c);
        static const char *const an[] = {"loss", "T", "alpha", "beta", "weight", "epoch", "warmup", "factor", "confident"};
        float zs[B * K], zt[B * K], want[B * K], d[B * K];
        int32_t y[B];
        double a[9], work[2 * K];
        int ok = !attrs(h, g, an, a, 9) && !rd_as(h, g, "zs", KD_F32, B * K, zs) && !rd_as(h, g, "zt", KD_F32, B * K, zt) &&
                 !rd_as(h, g, "y", KD_I32, B, y) && !rd_as(h, g, "grad", KD_F32, B * K, want);
        if (!KD_REQUIRE(ok, "%s read: %s", g, kd_err_get()))
            continue;
        /* the module's arithmetic: factor from the frame's 0-based epoch */
        double f = kd_dkd_warmup((long)a[5], (int)a[6]);
        KD_CHECK(fabs(f - a[7]) <= 1e-12, "%s: warm-up factor at epoch %g of %g: %g vs PyTorch's %g", g, a[5], a[6], f,
                 a[7]);
        memset(d, 0, sizeof d);
        double l = f * kd_dkd_loss(zs, zt, y, B, K, (float)a[1], (float)a[2], (float)a[3], (float)(a[4] * f), d, work);
        double el = rel(l, a[0]), eg = kd_test_relerr(d, want, B * K, 1e-12);
        worst_l = fmax(worst_l, el), worst_g = fmax(worst_g, eg);
        KD_CHECK(el <= 1e-5 && eg <= 1e-5,
                 "%s T %g alpha %g beta %g factor %g%s: loss %.8g vs %.8g (rel %.1e), gradient rel %.1e", g, a[1], a[2],
                 a[3], f, a[8] ? " (confident teacher)" : "", l, a[0], el, eg);
        confident += a[8] != 0, warming += f < 1, full += f == 1;
        done++;
    }
    KD_MIN_CASES(done, MIN_DKD, "dkd");
    KD_CHECK(confident >= 1 && warming >= 2 && full >= 2,
             "dkd: %d confident, %d warming up, %d at full weight; worst loss rel err %.2e, gradient %.2e", confident,
             warming, full, worst_l, worst_g);
    /* mdistiller's epoch 1 is the stream's 0: the first epoch is not free */
    KD_CHECK(kd_dkd_warmup(0, 20) == 1.0 / 20 && kd_dkd_warmup(19, 20) == 1 && kd_dkd_warmup(100, 20) == 1,
             "dkd warm-up: %g at epoch 0, %g at 19, %g at 100", kd_dkd_warmup(0, 20), kd_dkd_warmup(19, 20),
             kd_dkd_warmup(100, 20));
}

/* Against central differences, independent of the fixture: the gradient
 * is the derivative of the returned loss. */
static double loss_of(int which, const float *zs, const float *zt, const int32_t *y, float *d, double *work)
{
    return which ? kd_dkd_loss(zs, zt, y, B, K, 4.0f, 1.0f, 8.0f, 1, d, work)
                 : kd_kd_loss(zs, zt, B, K, 4.0f, 1, d, work);
}

static void test_fd(void)
{
    float zs[B * K], zt[B * K], d[B * K];
    int32_t y[B];
    double work[2 * K];
    unsigned r = 12345;
    for (int i = 0; i < B * K; i++)
        zs[i] = (float)((r = r * 1103515245u + 12345u) % 2001) / 250.0f - 4.0f;
    for (int i = 0; i < B * K; i++)
        zt[i] = (float)((r = r * 1103515245u + 12345u) % 2001) / 250.0f - 4.0f;
    for (int i = 0; i < B; i++)
        y[i] = (int32_t)((r = r * 1103515245u + 12345u) % K);
    for (int which = 0; which < 2; which++) {
        memset(d, 0, sizeof d);
        loss_of(which, zs, zt, y, d, work);
        double worst = 0;
        for (int i = 0; i < B * K; i++) {
            float v = zs[i], hh = 1e-2f;
            zs[i] = v + hh;
            double a = loss_of(which, zs, zt, y, NULL, work);
            zs[i] = v - hh;
            double b = loss_of(which, zs, zt, y, NULL, work);
            zs[i] = v;
            /* the step as float rounded it: zs +- hh is not exact */
            double step = (double)(v + hh) - (double)(v - hh);
            worst = fmax(worst, fabs((a - b) / step - d[i]) / (fabs(d[i]) + 1e-3));
        }
        KD_CHECK(worst < 1e-3, "%s gradient vs central differences: worst rel err %.1e", which ? "dkd" : "kd", worst);
    }
}

int main(void)
{
    test_fd();
    kd_h5 h;
    if (kd_h5_open(&h, fixture, "fixture")) {
        KD_CHECK(0, "open %s: %s (tests/gen/sup_kd.py writes it)", fixture, kd_err_get());
        return KD_TEST_DONE();
    }
    test_kd(&h);
    test_dkd(&h);
    kd_h5_close(&h);
    return KD_TEST_DONE();
}
