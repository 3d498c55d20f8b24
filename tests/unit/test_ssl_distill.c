/* test_ssl_distill — the distillation losses' arithmetic against PyTorch
 * in float64 (tests/fixtures/ssl_distill.h5, written by
 * tests/gen/ssl_distill.py from METHODS.md): kd_disco_term on both views
 * and kd_seed_loss, loss and gradient wrt the raw student embedding (through
 * the L2 norm), within 1e-5 relative.  A missing fixture, or fewer cases
 * than written, fails: a test that checks nothing must not pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_loss.h"
#include "kd_test.h"
#include "kd_test_h5.h"

enum { N = 6, E = 16, K = 32, MIN_DISCO = 5, MIN_SEED = 6 };
static const char *fixture = "tests/fixtures/ssl_distill.h5";

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

static void test_disco(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "disco_cases", &ncase);
    KD_CHECK(ncase >= MIN_DISCO, "disco: %lld cases in the fixture (at least %d)", (long long)ncase, MIN_DISCO);
    double worst_l = 0, worst_g = 0;
    int done = 0;
    for (int c = 0; c < ncase; c++) {
        char g[64];
        snprintf(g, sizeof g, "disco/case%02d", c);
        float emb[2][N * E], t[2][N * E], want[2][N * E], qn[N * E], qnorm[N], dqn[N * E];
        double w = 0, wl[2] = {0, 0};
        int ok = kd_h5_attr_get_f64(h, g, "weight", &w) == 0 && kd_h5_attr_get_f64(h, g, "loss0", &wl[0]) == 0 &&
                 kd_h5_attr_get_f64(h, g, "loss1", &wl[1]) == 0;
        for (int v = 0; v < 2; v++) {
            char a[24], b[24], d[24];
            snprintf(a, sizeof a, "emb%d", v), snprintf(b, sizeof b, "t%d", v), snprintf(d, sizeof d, "grad%d", v);
            ok = ok && !rd(h, g, a, N * E, emb[v]) && !rd(h, g, b, N * E, t[v]) && !rd(h, g, d, N * E, want[v]);
        }
        KD_CHECK(ok, "%s read", g);
        if (!ok)
            continue;
        for (int v = 0; v < 2; v++) {
            /* the gradient is added: start from a known value */
            float d[N * E];
            for (int i = 0; i < N * E; i++)
                d[i] = 0.25f;
            double l = kd_disco_term(emb[v], t[v], N, E, (float)w, d, qn, qnorm, dqn);
            for (int i = 0; i < N * E; i++)
                d[i] -= 0.25f;
            double el = rel(l, wl[v]), eg = kd_test_relerr(d, want[v], N * E, 1e-12);
            worst_l = fmax(worst_l, el), worst_g = fmax(worst_g, eg);
            KD_CHECK(el <= 1e-5 && eg <= 1e-5, "%s view %d (weight %g): loss %.8g vs %.8g (rel %.1e), gradient rel %.1e",
                     g, v, w, l, wl[v], el, eg);
            KD_CHECK(kd_disco_term(emb[v], t[v], N, E, (float)w, NULL, qn, qnorm, dqn) == l,
                     "%s view %d: the loss alone is the same number", g, v);
        }
        done++;
    }
    KD_CHECK(done >= MIN_DISCO, "disco: %d cases checked; worst loss rel err %.2e, gradient %.2e", done, worst_l,
             worst_g);
}

static void test_seed(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "seed_cases", &ncase);
    KD_CHECK(ncase >= MIN_SEED, "seed: %lld cases in the fixture (at least %d)", (long long)ncase, MIN_SEED);
    double worst_l = 0, worst_g = 0;
    int done = 0, sharp_soft = 0, soft = 0;
    for (int c = 0; c < ncase; c++) {
        char g[64];
        snprintf(g, sizeof g, "seed/case%02d", c);
        static float s[N * E], t[N * E], q[K * E], want[N * E], d[N * E], sn[N * E], snorm[N], dsn[N * E];
        static double pt[N * (1 + K)], ps[N * (1 + K)], acc[E];
        double w = 0, wl = 0, ts = 0, tt = 0, peak = 1;
        int ok = !kd_h5_attr_get_f64(h, g, "weight", &w) && !kd_h5_attr_get_f64(h, g, "loss", &wl) &&
                 !kd_h5_attr_get_f64(h, g, "tau_s", &ts) && !kd_h5_attr_get_f64(h, g, "tau_t", &tt) &&
                 !kd_h5_attr_get_f64(h, g, "pt_peak", &peak) && !rd(h, g, "s", N * E, s) &&
                 !rd(h, g, "t", N * E, t) && !rd(h, g, "queue", K * E, q) && !rd(h, g, "grad", N * E, want);
        KD_CHECK(ok, "%s read", g);
        if (!ok)
            continue;
        memset(d, 0, sizeof d);
        double l = kd_seed_loss(s, t, q, N, E, K, (float)ts, (float)tt, (float)w, d, sn, snorm, pt, ps, dsn, acc);
        double el = rel(l, wl), eg = kd_test_relerr(d, want, N * E, 1e-12);
        worst_l = fmax(worst_l, el), worst_g = fmax(worst_g, eg);
        KD_CHECK(el <= 1e-5 && eg <= 1e-5,
                 "%s tau_s %g tau_t %g weight %g (teacher peak %.3f): loss %.8g vs %.8g (rel %.1e), gradient rel %.1e",
                 g, ts, tt, w, peak, l, wl, el, eg);
        /* the C side's own p_T agrees that the case is (not) one-hot */
        double mypeak = 1;
        for (int i = 0; i < N; i++) {
            double m = 0;
            for (int k = 0; k < 1 + K; k++)
                m = fmax(m, pt[(size_t)i * (1 + K) + k]);
            mypeak = fmin(mypeak, m);
        }
        KD_CHECK(fabs(mypeak - peak) <= 1e-6, "%s: least peaked teacher row %.6f vs PyTorch %.6f", g, mypeak, peak);
        sharp_soft += tt <= 1e-4 && peak < 0.9; /* tau_T = 1e-4 and yet not one-hot */
        soft += tt >= 0.05;
        done++;
    }
    KD_CHECK(done >= MIN_SEED, "seed: %d cases checked; worst loss rel err %.2e, gradient %.2e", done, worst_l,
             worst_g);
    KD_CHECK(sharp_soft >= 1 && soft >= 2, "cases at tau_T = 1e-4 with a split teacher (%d) and at softer tau_T (%d)",
             sharp_soft, soft);
}

/* Against central differences, independent of the fixture: the gradient
 * is the derivative of the returned loss. */
static void test_fd(void)
{
    static float s[N * E], t[N * E], q[K * E], d[N * E], sn[N * E], snorm[N], dsn[N * E], qn[N * E], dq[N * E];
    static double pt[N * (1 + K)], ps[N * (1 + K)], acc[E];
    unsigned r = 12345;
    for (int i = 0; i < N * E; i++)
        s[i] = (float)((r = r * 1103515245u + 12345u) % 2001) / 1000.0f - 1.0f;
    for (int i = 0; i < N * E; i++)
        t[i] = (float)((r = r * 1103515245u + 12345u) % 2001) / 1000.0f - 1.0f;
    for (int i = 0; i < K * E; i++)
        q[i] = (float)((r = r * 1103515245u + 12345u) % 2001) / 1000.0f - 1.0f;
    kd_l2norm_forward(t, t, snorm, N, E);
    for (int k = 0; k < K; k++) {
        double n2 = 0;
        for (int j = 0; j < E; j++)
            n2 += (double)q[k * E + j] * q[k * E + j];
        for (int j = 0; j < E; j++)
            q[k * E + j] = (float)(q[k * E + j] / sqrt(n2));
    }
    for (int which = 0; which < 2; which++) {
        memset(d, 0, sizeof d);
        if (which)
            kd_seed_loss(s, t, q, N, E, K, 0.2f, 0.1f, 1, d, sn, snorm, pt, ps, dsn, acc);
        else
            kd_disco_term(s, t, N, E, 1, d, qn, snorm, dq);
        double worst = 0;
        for (int i = 0; i < N * E; i += 5) {
            float v = s[i], hh = 1e-3f;
            s[i] = v + hh;
            double a = which ? kd_seed_loss(s, t, q, N, E, K, 0.2f, 0.1f, 1, NULL, sn, snorm, pt, ps, dsn, acc)
                             : kd_disco_term(s, t, N, E, 1, NULL, qn, snorm, dq);
            s[i] = v - hh;
            double b = which ? kd_seed_loss(s, t, q, N, E, K, 0.2f, 0.1f, 1, NULL, sn, snorm, pt, ps, dsn, acc)
                             : kd_disco_term(s, t, N, E, 1, NULL, qn, snorm, dq);
            s[i] = v;
            worst = fmax(worst, fabs((a - b) / (2 * (double)hh) - d[i]) / (fabs(d[i]) + 1e-3));
        }
        KD_CHECK(worst < 1e-2, "%s gradient vs central differences: worst rel err %.1e", which ? "seed" : "disco",
                 worst);
    }
}

int main(void)
{
    test_fd();
    kd_h5 h;
    if (kd_h5_open(&h, fixture, "fixture")) {
        KD_CHECK(0, "open %s: %s (tests/gen/ssl_distill.py writes it)", fixture, kd_err_get());
        return KD_TEST_DONE();
    }
    test_disco(&h);
    test_seed(&h);
    kd_h5_close(&h);
    return KD_TEST_DONE();
}
