/* kd_linprobe — multinomial logistic regression for linear probes.
 *
 * Minimises  (1/N) sum_i CE(softmax(W x_i + b), y_i) + (wd/2) |W|^2
 * (the bias is not penalised; wd = 1/N is scikit-learn's C = 1) with
 * L-BFGS (memory 10, backtracking Armijo line search, full batch;
 * deterministic) or minibatch SGD with momentum; every product through
 * kd_gemm. */
#ifndef KD_LINPROBE_H
#define KD_LINPROBE_H

#include <stdint.h>

typedef struct {
    int D, K;
    float *W; /* [K,D] */
    float *b; /* [K] */
    int threads; /* for the evaluation over row blocks; 0: OpenMP's default */
    int iters;
    double loss, gnorm;
} kd_logreg;

int kd_logreg_init(kd_logreg *m, int D, int K);
void kd_logreg_free(kd_logreg *m);

/* Loss and gradient at (W, b); gW [K,D], gb [K] are overwritten (one
 * thread).  P is unused (kept for callers of the first version).  NaN with
 * kd_err if out of memory. */
double kd_logreg_loss_grad(const float *X, const int32_t *y, int64_t N, int D, int K, const float *W,
                           const float *b, double wd, float *gW, float *gb, float *P);

/* Fit from zero weights.  -1 with kd_err if out of memory or the loss
 * becomes non-finite. */
int kd_logreg_fit(kd_logreg *m, const float *X, const int32_t *y, int64_t N, double wd, int max_iter, double tol);

/* The same objective by minibatch SGD (heavy-ball momentum 0.9, cosine
 * learning-rate schedule from lr to 0, minibatches drawn by a permutation
 * per epoch from kd_rng(seed)); deterministic in seed.  m->loss is the mean
 * minibatch loss of the last epoch. */
int kd_logreg_fit_sgd(kd_logreg *m, const float *X, const int32_t *y, int64_t N, double wd, int epochs, int batch,
                      double lr, uint64_t seed);

/* Counts of test rows whose label is the top-1 / within the top-5 of the
 * scores S [N,K] (logits of any model). */
void kd_topk_count(const float *S, const int32_t *y, int64_t N, int K, int64_t *top1, int64_t *top5);

/* Logits of m on X [N,D] into S [N,K]. */
void kd_logreg_scores(const kd_logreg *m, const float *X, int64_t N, float *S);

/* Column mean and std of X [N,D] (std 0 -> 1; -1 if out of memory), and
 * X = (X - mean) / std. */
int kd_standardize_fit(const float *X, int64_t N, int D, float *mean, float *std);
void kd_standardize_apply(float *X, int64_t N, int D, const float *mean, const float *std);

#endif
