/* linprobe's numerics: the logistic-regression gradient against central
 * finite differences, L-BFGS against a closed-form-checkable optimum
 * (gradient zero), both solvers against scikit-learn's optimum
 * (tests/fixtures/linprobe.h5 from tests/gen/linprobe.py), kNN against its
 * brute-force reference and against scikit-learn's KNeighborsClassifier,
 * top-k counting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_knn.h"
#include "kd_linprobe.h"
#include "kd_rng.h"
#include "kd_test.h"

static const char *fixture_path(void)
{
    const char *p = getenv("KD_LINPROBE_FIXTURE");
    return p ? p : "tests/fixtures/linprobe.h5";
}

/* Both solvers reach scikit-learn's optimum of one fixture case. */
static void check_sklearn_case(kd_h5 *h, const char *name)
{
    char ds[64];
    int64_t xd[KD_MAX_RANK], cd[KD_MAX_RANK];
    kd_dtype dt;
    int rank;
    snprintf(ds, sizeof ds, "%s/x", name);
    KD_CHECK(kd_h5_info(h, ds, &dt, &rank, xd) == 0 && rank == 2, "%s: x [%lld,%lld]", name, (long long)xd[0],
             (long long)xd[1]);
    snprintf(ds, sizeof ds, "%s/coef", name);
    KD_CHECK(kd_h5_info(h, ds, &dt, &rank, cd) == 0 && rank == 2 && cd[1] == xd[1], "%s: coef [%lld,%lld]", name,
             (long long)cd[0], (long long)cd[1]);
    int64_t N = xd[0];
    int D = (int)xd[1], K = (int)cd[0];
    float *X = malloc(sizeof(float) * (size_t)(N * D)), *coef = malloc(sizeof(float) * (size_t)K * D);
    float *icpt = malloc(sizeof(float) * (size_t)K), *W0 = malloc(sizeof(float) * (size_t)K * D);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)N);
    double wd = 0, loss = 0;
    snprintf(ds, sizeof ds, "%s/x", name);
    int rc = kd_h5_read(h, ds, KD_F32, 0, N, X);
    snprintf(ds, sizeof ds, "%s/y", name);
    rc |= kd_h5_read(h, ds, KD_I32, 0, N, y);
    snprintf(ds, sizeof ds, "%s/coef", name);
    rc |= kd_h5_read(h, ds, KD_F32, 0, K, coef);
    snprintf(ds, sizeof ds, "%s/intercept", name);
    rc |= kd_h5_read(h, ds, KD_F32, 0, K, icpt);
    rc |= kd_h5_attr_get_f64(h, name, "wd", &wd) | kd_h5_attr_get_f64(h, name, "loss", &loss);
    KD_CHECK(rc == 0, "%s: read (%s)", name, rc ? kd_err_get() : "ok");
    if (rc)
        return;
    double cmax = 0;
    for (int j = 0; j < K * D; j++)
        cmax = fmax(cmax, fabs(coef[j]));
    for (int s = 0; s < 2; s++) {
        kd_logreg m;
        KD_CHECK(kd_logreg_init(&m, D, K) == 0, "init");
        int frc = s ? kd_logreg_fit_sgd(&m, X, y, N, wd, 300, 16, 0.05, 1) : kd_logreg_fit(&m, X, y, N, wd, 5000, 1e-7);
        float *P = malloc(sizeof(float) * (size_t)(N * K)), *gW = malloc(sizeof(float) * (size_t)K * D);
        float gb[64];
        double f = kd_logreg_loss_grad(X, y, N, D, K, m.W, m.b, wd, gW, gb, P);
        /* softmax is invariant to adding one vector to every class; scikit-learn's
         * penalty picks the member with zero column sums, and so does ours */
        double ew = 0, eb = 0;
        for (int j = 0; j < K * D; j++)
            ew = fmax(ew, fabs(m.W[j] - coef[j]));
        for (int k = 0; k < K; k++)
            eb = fmax(eb, fabs(m.b[k] - icpt[k]));
        const char *sv = s ? "sgd" : "lbfgs";
        KD_CHECK(frc == 0, "%s %s: fit (%d iterations or epochs)", name, sv, m.iters);
        KD_CHECK(f - loss < (s ? 2e-4 : 1e-6) && f - loss > -1e-6,
                 "%s %s: objective %.8f vs scikit-learn's %.8f", name, sv, f, loss);
        KD_CHECK(ew < (s ? 3e-2 : 2e-3) * cmax, "%s %s: weights within %.2e of scikit-learn's (max |w| %.2f), intercept %.2e",
                 name, sv, ew, cmax, eb);
        if (s) { /* deterministic in the seed, and the seed matters */
            memcpy(W0, m.W, sizeof(float) * (size_t)K * D);
            kd_logreg m2;
            kd_logreg_init(&m2, D, K);
            kd_logreg_fit_sgd(&m2, X, y, N, wd, 300, 16, 0.05, 1);
            int same = !memcmp(m2.W, W0, sizeof(float) * (size_t)K * D);
            kd_logreg_fit_sgd(&m2, X, y, N, wd, 300, 16, 0.05, 2);
            int differ = memcmp(m2.W, W0, sizeof(float) * (size_t)K * D) != 0;
            KD_CHECK(same && differ, "%s sgd: same seed same weights (%d), another seed other weights (%d)", name,
                     same, differ);
            kd_logreg_free(&m2);
        }
        free(P), free(gW);
        kd_logreg_free(&m);
    }
    free(X), free(coef), free(icpt), free(W0), free(y);
}

static void check_sklearn_knn(kd_h5 *h)
{
    int64_t bd[KD_MAX_RANK], qd[KD_MAX_RANK];
    kd_dtype dt;
    int rank;
    if (kd_h5_info(h, "knn/bank", &dt, &rank, bd) || kd_h5_info(h, "knn/queries", &dt, &rank, qd)) {
        KD_CHECK(0, "knn fixture: %s", kd_err_get());
        return;
    }
    int64_t N = bd[0], M = qd[0];
    int D = (int)bd[1];
    float *bank = malloc(sizeof(float) * (size_t)(N * D)), *q = malloc(sizeof(float) * (size_t)(M * D));
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)N), *want = malloc(sizeof(int32_t) * (size_t)M);
    int32_t *got = malloc(sizeof(int32_t) * (size_t)M);
    int rc = kd_h5_read(h, "knn/bank", KD_F32, 0, N, bank) | kd_h5_read(h, "knn/queries", KD_F32, 0, M, q) |
             kd_h5_read(h, "knn/labels", KD_I32, 0, N, lab);
    int ks[] = {1, 5, 15};
    for (int t = 0; t < 3 && !rc; t++) {
        char ds[32];
        snprintf(ds, sizeof ds, "knn/pred_k%d", ks[t]);
        rc |= kd_h5_read(h, ds, KD_I32, 0, M, want);
        rc |= kd_knn_predict(bank, lab, N, D, 5, q, M, ks[t], 0.07f, KD_KNN_EUCLID, got);
        int same = 0;
        for (int64_t i = 0; i < M; i++)
            same += got[i] == want[i];
        KD_CHECK(same == M, "kNN euclidean k=%d: %d/%lld predictions equal KNeighborsClassifier's", ks[t], same,
                 (long long)M);
    }
    KD_CHECK(rc == 0, "knn fixture read");
    free(bank), free(q), free(lab), free(want), free(got);
}

int main(void)
{
    kd_rng r = kd_rng_make(3, 0, 0);
    enum { N = 300, D = 7, K = 4 };
    static float X[N * D], W[K * D], b[K], gW[K * D], gb[K], P[N * K], tmp[K * D], tb[K];
    static int32_t y[N];
    /* classes are noisy linear functions of X, so the optimum is finite */
    for (int i = 0; i < N; i++) {
        for (int d = 0; d < D; d++) X[i * D + d] = kd_rng_normal(&r);
        y[i] = (X[i * D] + 0.7f * kd_rng_normal(&r) > 0) + 2 * (X[i * D + 1] + 0.7f * kd_rng_normal(&r) > 0);
    }
    for (int j = 0; j < K * D; j++) W[j] = 0.3f * kd_rng_normal(&r);
    for (int k = 0; k < K; k++) b[k] = 0.1f * kd_rng_normal(&r);
    double wd = 0.01;
    kd_logreg_loss_grad(X, y, N, D, K, W, b, wd, gW, gb, P);
    double worst = 0;
    for (int j = 0; j < K * D + K; j++) {
        float *p = j < K * D ? &W[j] : &b[j - K * D];
        float h = 1e-2f, save = *p;
        *p = save + h;
        double fp = kd_logreg_loss_grad(X, y, N, D, K, W, b, wd, tmp, tb, P);
        *p = save - h;
        double fm = kd_logreg_loss_grad(X, y, N, D, K, W, b, wd, tmp, tb, P);
        *p = save;
        double fd = (fp - fm) / (2 * h), an = j < K * D ? gW[j] : gb[j - K * D];
        double e = fabs(fd - an) / (fabs(an) + 1e-3);
        worst = e > worst ? e : worst;
    }
    KD_CHECK(worst < 2e-2, "gradient vs central differences: worst rel err %.2e", worst);

    kd_logreg m;
    KD_CHECK(kd_logreg_init(&m, D, K) == 0, "init");
    KD_CHECK(kd_logreg_fit(&m, X, y, N, wd, 500, 1e-6) == 0, "fit: %d iterations, loss %.6f", m.iters, m.loss);
    double g2 = 0;
    kd_logreg_loss_grad(X, y, N, D, K, m.W, m.b, wd, gW, gb, P);
    for (int j = 0; j < K * D; j++) g2 = fmax(g2, fabs(gW[j]));
    for (int k = 0; k < K; k++) g2 = fmax(g2, fabs(gb[k]));
    KD_CHECK(g2 < 1e-4, "L-BFGS reaches a stationary point (max |grad| %.2e)", g2);
    /* a convex problem: any perturbation raises the loss */
    double f0 = kd_logreg_loss_grad(X, y, N, D, K, m.W, m.b, wd, gW, gb, P), worse = 1;
    for (int t = 0; t < 20; t++) {
        memcpy(tmp, m.W, sizeof tmp);
        for (int j = 0; j < K * D; j++) tmp[j] += 0.05f * kd_rng_normal(&r);
        worse = fmin(worse, kd_logreg_loss_grad(X, y, N, D, K, tmp, m.b, wd, gW, gb, P) - f0);
    }
    KD_CHECK(worse > 0, "perturbations raise the loss (least rise %.2e)", worse);
    float S[N * K];
    kd_logreg_scores(&m, X, N, S);
    int64_t c1, c5;
    kd_topk_count(S, y, N, K, &c1, &c5);
    KD_CHECK(c1 > 0.6 * N && c5 == N, "training top-1 %lld/%d, top-5 %lld", (long long)c1, N, (long long)c5);
    kd_logreg_free(&m);

    /* the row-block evaluation split over threads: 4100 rows = 5 blocks of
     * 1024, the last partial; 1 vs 3 threads reach the same optimum */
    {
        enum { NL = 4100, DL = 12, KL = 3 };
        float *XL = malloc(sizeof(float) * NL * DL);
        int32_t *yl = malloc(sizeof(int32_t) * NL);
        for (int i = 0; i < NL; i++) {
            yl[i] = i % KL;
            for (int d = 0; d < DL; d++) XL[i * DL + d] = kd_rng_normal(&r) + (d == yl[i] ? 1.0f : 0.0f);
        }
        kd_logreg a, c;
        kd_logreg_init(&a, DL, KL);
        kd_logreg_init(&c, DL, KL);
        a.threads = 1, c.threads = 3;
        int ra = kd_logreg_fit(&a, XL, yl, NL, 1e-3, 500, 1e-6), rc3 = kd_logreg_fit(&c, XL, yl, NL, 1e-3, 500, 1e-6);
        double dw = 0;
        for (int j = 0; j < KL * DL; j++) dw = fmax(dw, fabs(a.W[j] - c.W[j]));
        KD_CHECK(ra == 0 && rc3 == 0 && fabs(a.loss - c.loss) < 1e-7 && dw < 1e-3,
                 "1 and 3 threads over 5 row blocks: loss %.9f vs %.9f, weights within %.1e", a.loss, c.loss, dw);
        kd_logreg_free(&a);
        kd_logreg_free(&c);
        free(XL), free(yl);
    }

    /* top-k counting with ties: argmax takes the lower index */
    float s2[] = {1, 1, 0, 0, 0, 0, 0, 0};
    int32_t y2[] = {0};
    kd_topk_count(s2, y2, 1, 8, &c1, &c5);
    KD_CHECK(c1 == 1 && c5 == 1, "ties favour the lower index");

    /* kNN against brute force, both metrics */
    enum { NB = 500, M = 120, DK = 16 };
    static float bank[NB * DK], q[M * DK];
    static int32_t lab[NB], p1[M], p2[M];
    for (int i = 0; i < NB; i++) {
        lab[i] = i % 5;
        for (int d = 0; d < DK; d++) bank[i * DK + d] = kd_rng_normal(&r) + (d == lab[i] ? 2.0f : 0.0f);
    }
    for (int i = 0; i < M * DK; i++) q[i] = kd_rng_normal(&r) + ((i % DK) == (i / DK) % 5 ? 2.0f : 0.0f);
    int metrics[] = {KD_KNN_COSINE, KD_KNN_EUCLID};
    for (int mi = 0; mi < 2; mi++)
        for (int k = 1; k <= 20; k += 19) {
            kd_knn_predict(bank, lab, NB, DK, 5, q, M, k, 0.07f, metrics[mi], p1);
            kd_knn_predict_ref(bank, lab, NB, DK, 5, q, M, k, 0.07f, metrics[mi], p2);
            int same = 0, right = 0, ties = 0;
            for (int i = 0; i < M; i++) same += p1[i] == p2[i], right += p1[i] == i % 5;
            /* a disagreement is tolerated only at a real tie: the k-th and
             * (k+1)-th neighbour's score (in double) closer than the float
             * GEMM's rounding, so the two may pick different neighbours.
             * (the seeded data has none: 120/120 on every metric and k) */
            for (int i = 0; i < M; i++) {
                if (p1[i] == p2[i])
                    continue;
                double sk = -INFINITY, sk1 = -INFINITY, qn = 0; /* k-th and (k+1)-th best */
                static double sc[NB];
                for (int d = 0; d < DK; d++) qn += (double)q[i * DK + d] * q[i * DK + d];
                for (int j = 0; j < NB; j++) {
                    double dot = 0, bb = 0, dd = 0;
                    for (int d = 0; d < DK; d++) {
                        double a = q[i * DK + d], b = bank[j * DK + d];
                        dot += a * b, bb += b * b, dd += (a - b) * (a - b);
                    }
                    sc[j] = mi ? -dd : dot / sqrt(qn * bb);
                }
                for (int t = 0; t <= k; t++) { /* selection of the k+1 best */
                    int bj = 0;
                    for (int j = 1; j < NB; j++) if (sc[j] > sc[bj]) bj = j;
                    if (t == k - 1) sk = sc[bj];
                    if (t == k) sk1 = sc[bj];
                    sc[bj] = -INFINITY;
                }
                ties += fabs(sk - sk1) <= 1e-5 * fmax(1, fabs(sk));
                printf("# kNN query %d: %d vs brute force %d, k-th/(k+1)-th scores %.9g %.9g\n", i, p1[i], p2[i], sk, sk1);
            }
            KD_CHECK(same + ties == M, "kNN %s k=%d agrees with brute force on %d/%d, %d disagreements at ties "
                     "(accuracy %d)", mi ? "euclidean" : "cosine", k, same, M, ties, right);
        }
    KD_CHECK(kd_knn_predict(bank, lab, NB, DK, 5, q, M, NB + 1, 0.07f, 0, p1) == -1, "k > N refused");

    kd_h5 h;
    if (kd_h5_open(&h, fixture_path(), "fixture")) {
        KD_CHECK(0, "fixture: %s", kd_err_get());
    } else {
        check_sklearn_case(&h, "noisy");
        check_sklearn_case(&h, "separable");
        check_sklearn_knn(&h);
        kd_h5_close(&h);
    }
    return KD_TEST_DONE();
}
