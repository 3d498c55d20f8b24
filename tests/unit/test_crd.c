/* CRD (lib/loss/kd_loss_crd.h) against a PyTorch re-implementation in
 * float64 (tests/fixtures/crd.h5, written by tests/gen/crd.py) with fixed
 * negatives: the loss, the normalisers Z (given, or set from the batch), the
 * gradients into the student's features and both heads' weights and biases
 * within 1e-5 relative, and both banks after the momentum update.  Then the
 * negative sampler (other classes only, every eligible row reachable, keyed
 * by the step) and the checkpoint round trip of banks and Z. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "loss/kd_loss_crd.h"
#include "kd_test.h"
#include "kd_test_h5.h"

#define B 4
#define N 32
#define K 8
#define DS 16
#define DT 24
#define E 32
#define MIN_CASES 4

static const char *fixture = "tests/fixtures/crd.h5";

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

static double attr(kd_h5 *h, const char *g, const char *name)
{
    double v = NAN;
    kd_h5_attr_get_f64(h, g, name, &v);
    return v;
}

static void test_fixture(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "cases", &ncase);
    KD_MIN_CASES(ncase, MIN_CASES, "crd fixture");
    int done = 0, zset = 0, zgiven = 0;
    double worst = 0;
    for (int c = 0; c < ncase; c++) {
        char g[32];
        snprintf(g, sizeof g, "case%02d", c);
        static float fs[B * DS], ft[B * DT], Ws[E * DS], bs[E], Wt[E * DT], bt[E], Ms[N * E], Mt[N * E];
        static float d_fs[B * DS], gWs[E * DS], gbs[E], gWt[E * DT], gbt[E], Ms2[N * E], Mt2[N * E], dfs[B * DS];
        static int64_t idx[B], neg[B * K];
        int ok = !rd_as(h, g, "fs", KD_F32, B * DS, fs) && !rd_as(h, g, "ft", KD_F32, B * DT, ft) &&
                 !rd_as(h, g, "Ws", KD_F32, E * DS, Ws) && !rd_as(h, g, "bs", KD_F32, E, bs) &&
                 !rd_as(h, g, "Wt", KD_F32, E * DT, Wt) && !rd_as(h, g, "bt", KD_F32, E, bt) &&
                 !rd_as(h, g, "bank_s", KD_F32, N * E, Ms) && !rd_as(h, g, "bank_t", KD_F32, N * E, Mt) &&
                 !rd_as(h, g, "idx", KD_I64, B, idx) && !rd_as(h, g, "neg", KD_I64, B * K, neg) &&
                 !rd_as(h, g, "d_fs", KD_F32, B * DS, d_fs) && !rd_as(h, g, "gWs", KD_F32, E * DS, gWs) &&
                 !rd_as(h, g, "gbs", KD_F32, E, gbs) && !rd_as(h, g, "gWt", KD_F32, E * DT, gWt) &&
                 !rd_as(h, g, "gbt", KD_F32, E, gbt) && !rd_as(h, g, "bank_s_after", KD_F32, N * E, Ms2) &&
                 !rd_as(h, g, "bank_t_after", KD_F32, N * E, Mt2);
        if (!KD_REQUIRE(ok, "%s read: %s", g, kd_err_get()))
            continue;
        double zs = attr(h, g, "z_s"), zt = attr(h, g, "z_t"), w = attr(h, g, "weight");
        kd_crd cr;
        if (!KD_REQUIRE(!kd_crd_init(&cr, DS, DT, E, N, K, B, (float)attr(h, g, "tau"), (float)attr(h, g, "mom"), 1),
                        "kd_crd_init: %s", kd_err_get()))
            return;
        memcpy(cr.Ws, Ws, sizeof Ws), memcpy(cr.bs, bs, sizeof bs), memcpy(cr.Wt, Wt, sizeof Wt);
        memcpy(cr.bt, bt, sizeof bt), memcpy(cr.bank_s, Ms, sizeof Ms), memcpy(cr.bank_t, Mt, sizeof Mt);
        cr.Z[0] = zs, cr.Z[1] = zt;
        zset += zs < 0, zgiven += zs > 0;
        /* gradients are added: start from a known value */
        for (size_t i = 0; i < cr.heads.n; i++)
            cr.heads.g[i] = 0.25f;
        for (int i = 0; i < B * DS; i++)
            dfs[i] = 0.25f;
        double l = kd_crd_step(&cr, fs, ft, idx, neg, B, (float)w, dfs);
        for (size_t i = 0; i < cr.heads.n; i++)
            cr.heads.g[i] -= 0.25f;
        for (int i = 0; i < B * DS; i++)
            dfs[i] -= 0.25f;
        double el = rel(l, attr(h, g, "loss")), ez = fmax(rel(cr.Z[0], attr(h, g, "z_s_out")),
                                                           rel(cr.Z[1], attr(h, g, "z_t_out")));
        double eg[5] = {kd_test_relerr(dfs, d_fs, B * DS, 1e-12), kd_test_relerr(cr.gWs, gWs, E * DS, 1e-12),
                        kd_test_relerr(cr.gbs, gbs, E, 1e-12), kd_test_relerr(cr.gWt, gWt, E * DT, 1e-12),
                        kd_test_relerr(cr.gbt, gbt, E, 1e-12)};
        double egm = 0;
        for (int i = 0; i < 5; i++)
            egm = fmax(egm, eg[i]);
        worst = fmax(worst, fmax(el, egm));
        KD_CHECK(el <= 1e-5 && ez <= 1e-6, "%s (Z %s): loss %.8g vs %.8g (rel %.1e), Z %.6g %.6g (rel %.1e)", g,
                 zs < 0 ? "from the batch" : "given", l, attr(h, g, "loss"), el, cr.Z[0], cr.Z[1], ez);
        KD_CHECK(egm <= 1e-5, "%s: gradients rel err d_fs %.1e, W_s %.1e, b_s %.1e, W_t %.1e, b_t %.1e", g, eg[0],
                 eg[1], eg[2], eg[3], eg[4]);
        kd_crd_update(&cr, idx);
        double eb = fmax(kd_test_relerr(cr.bank_s, Ms2, N * E, 1e-12), kd_test_relerr(cr.bank_t, Mt2, N * E, 1e-12));
        int untouched = 1;
        for (int r = 0; r < N; r++) {
            int in = 0;
            for (int i = 0; i < B; i++)
                in |= idx[i] == r;
            if (!in)
                untouched &= !memcmp(cr.bank_s + r * E, Ms + r * E, sizeof(float) * E) &&
                             !memcmp(cr.bank_t + r * E, Mt + r * E, sizeof(float) * E);
        }
        KD_CHECK(eb <= 1e-6 && untouched, "%s: banks after the update rel err %.1e; other rows untouched: %d", g, eb,
                 untouched);
        kd_crd_free(&cr);
        done++;
    }
    KD_CHECK(done >= MIN_CASES && zset >= 1 && zgiven >= 1,
             "%d cases (%d with Z from the batch, %d given); worst rel err %.2e", done, zset, zgiven, worst);
}

static void test_sampler(void)
{
    static int32_t label[N];
    for (int i = 0; i < N; i++) /* uneven classes; class 3 is the largest */
        label[i] = i < 4 ? 0 : i < 10 ? 1 : i < 12 ? 2 : 3;
    kd_crd_classes cl;
    int rare = -1;
    int64_t usable = kd_crd_classes_init(&cl, label, N, &rare);
    KD_CHECK(usable == 12 && rare == 3, "usable negatives %lld (12: rows not of class 3, the largest), class %d",
             (long long)usable, rare);
    enum { KS = 64 };
    static int64_t idx[B] = {0, 5, 11, 20}, neg[B * KS], neg2[B * KS], neg3[B * KS];
    int bad = 0, seen[N] = {0};
    for (long step = 0; step < 50; step++) {
        kd_crd_sample(&cl, 9, step, idx, B, KS, neg);
        for (int i = 0; i < B; i++)
            for (int k = 0; k < KS; k++) {
                int64_t r = neg[i * KS + k];
                bad += r < 0 || r >= N || label[r] == label[idx[i]];
                if (r >= 0 && r < N && i == 3)
                    seen[r]++;
            }
    }
    int reach = 1;
    for (int r = 0; r < N; r++)
        reach &= label[r] == 3 ? seen[r] == 0 : seen[r] > 0;
    KD_CHECK(!bad && reach, "negatives of other classes only (%d not), every other-class row drawn: %d", bad, reach);
    kd_crd_sample(&cl, 9, 7, idx, B, KS, neg);
    kd_crd_sample(&cl, 9, 7, idx, B, KS, neg2);
    kd_crd_sample(&cl, 9, 8, idx, B, KS, neg3);
    KD_CHECK(!memcmp(neg, neg2, sizeof neg) && memcmp(neg, neg3, sizeof neg),
             "the draw is a function of (seed, step): same step same rows, next step other rows");
    static int32_t one[4] = {2, 2, 2, 2};
    kd_crd_classes c1;
    KD_CHECK(kd_crd_classes_init(&c1, one, 4, &rare) == 0, "a single class leaves no negatives");
    kd_crd_classes_free(&c1);
    kd_crd_classes_free(&cl);
}

static void test_checkpoint(void)
{
    kd_crd a, b;
    if (!KD_REQUIRE(!kd_crd_init(&a, DS, DT, E, N, K, B, 0.07f, 0.5f, 3) &&
                        !kd_crd_init(&b, DS, DT, E, N, K, B, 0.07f, 0.5f, 4),
                    "kd_crd_init: %s", kd_err_get()))
        return;
    KD_CHECK(memcmp(a.bank_s, b.bank_s, sizeof(float) * N * E) && memcmp(a.heads.p, b.heads.p, sizeof(float) * a.heads.n),
             "banks and heads depend on the seed");
    float bound = 0;
    for (int i = 0; i < E * DS; i++)
        bound = fmaxf(bound, fabsf(a.Ws[i]));
    float stdv = 0;
    for (int i = 0; i < N * E; i++)
        stdv = fmaxf(stdv, fabsf(a.bank_s[i]));
    KD_CHECK(bound <= 1 / sqrtf(DS) && bound > 0.9f / sqrtf(DS) && stdv <= 1 / sqrtf(E / 3.0f) &&
                 stdv > 0.9f / sqrtf(E / 3.0f),
             "W_s within nn.Linear's 1/sqrt(%d) (max %.4f), banks within 1/sqrt(E/3) (max %.4f)", DS, bound, stdv);
    a.Z[0] = 123.5, a.Z[1] = 7.25;
    char path[] = "/tmp/test_crd_XXXXXX.h5";
    int fd = mkstemps(path, 3);
    if (fd >= 0)
        close(fd);
    kd_h5 h;
    int ok = fd >= 0 && !kd_h5_create(&h, path, "checkpoint") && !kd_crd_save(&a, &h, "train/crd") && !kd_h5_commit(&h);
    ok = ok && !kd_h5_open(&h, path, "checkpoint");
    if (ok) {
        ok = !kd_crd_load(&b, &h, "train/crd");
        kd_h5_close(&h);
    }
    KD_CHECK(ok && !memcmp(a.bank_s, b.bank_s, sizeof(float) * N * E) &&
                 !memcmp(a.bank_t, b.bank_t, sizeof(float) * N * E) && b.Z[0] == 123.5 && b.Z[1] == 7.25,
             "banks and Z survive save/load exactly (%s)", ok ? "loaded" : kd_err_get());
    kd_crd c;
    if (KD_REQUIRE(!kd_crd_init(&c, DS, DT, E, N + 1, K, B, 0.07f, 0.5f, 3), "init: %s", kd_err_get())) {
        ok = !kd_h5_open(&h, path, "checkpoint");
        int rc = ok ? kd_crd_load(&c, &h, "train/crd") : 0;
        if (ok)
            kd_h5_close(&h);
        KD_CHECK(ok && rc == -1 && strstr(kd_err_get(), "bank_s"), "banks of another N are refused: %s",
                 kd_err_get());
        kd_crd_free(&c);
    }
    unlink(path);
    kd_crd_free(&a);
    kd_crd_free(&b);
}

int main(void)
{
    test_sampler();
    test_checkpoint();
    kd_h5 h;
    if (kd_h5_open(&h, fixture, "fixture")) {
        KD_CHECK(0, "open %s: %s (tests/gen/crd.py writes it)", fixture, kd_err_get());
        return KD_TEST_DONE();
    }
    test_fixture(&h);
    kd_h5_close(&h);
    return KD_TEST_DONE();
}
