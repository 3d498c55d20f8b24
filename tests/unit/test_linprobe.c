/* linprobe's numerics: the logistic-regression gradient against central
 * finite differences, L-BFGS against a closed-form-checkable optimum
 * (gradient zero), kNN against its brute-force reference, top-k counting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_knn.h"
#include "kd_linprobe.h"
#include "kd_rng.h"
#include "kd_test.h"

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
            int same = 0, right = 0;
            for (int i = 0; i < M; i++) same += p1[i] == p2[i], right += p1[i] == i % 5;
            KD_CHECK(same >= M - 1, "kNN %s k=%d agrees with brute force on %d/%d (accuracy %d)",
                     mi ? "euclidean" : "cosine", k, same, M, right);
        }
    KD_CHECK(kd_knn_predict(bank, lab, NB, DK, 5, q, M, NB + 1, 0.07f, 0, p1) == -1, "k > N refused");
    return KD_TEST_DONE();
}
