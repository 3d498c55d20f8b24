#include "kd_knn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"

#define QBLOCK 256

static void normalize_rows(float *x, int64_t n, int D)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int d = 0; d < D; d++)
            s += (double)x[i * D + d] * x[i * D + d];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int d = 0; d < D; d++)
            x[i * D + d] *= inv;
    }
}

/* Keep the k best scores (largest) in descending order. */
static void topk_insert(float *best, int32_t *who, int k, float s, int32_t j)
{
    if (s <= best[k - 1])
        return;
    int i = k - 1;
    while (i > 0 && best[i - 1] < s) {
        best[i] = best[i - 1];
        who[i] = who[i - 1];
        i--;
    }
    best[i] = s;
    who[i] = j;
}

static int32_t vote(const float *best, const int32_t *who, const int32_t *labels, int k, int nclass, float T,
                    int metric, double *acc)
{
    memset(acc, 0, sizeof(double) * (size_t)nclass);
    for (int i = 0; i < k; i++) {
        if (who[i] < 0)
            continue;
        acc[labels[who[i]]] += metric == KD_KNN_COSINE ? exp((double)best[i] / T) : 1.0;
    }
    int32_t arg = 0;
    for (int c = 1; c < nclass; c++)
        if (acc[c] > acc[arg])
            arg = c; /* strict: ties keep the smallest label */
    return arg;
}

int kd_knn_predict(const float *bank, const int32_t *labels, int64_t N, int D, int nclass, const float *queries,
                   int64_t M, int k, float T, int metric, int32_t *pred)
{
    if (k < 1 || k > N) {
        kd_err_set("kNN: k = %d must be in [1, %lld]", k, (long long)N);
        return -1;
    }
    float *B = malloc(sizeof(float) * (size_t)N * D), *Q = malloc(sizeof(float) * (size_t)QBLOCK * D);
    float *S = malloc(sizeof(float) * (size_t)QBLOCK * N), *bn = malloc(sizeof(float) * (size_t)N);
    float *best = malloc(sizeof(float) * (size_t)k);
    int32_t *who = malloc(sizeof(int32_t) * (size_t)k);
    double *acc = malloc(sizeof(double) * (size_t)nclass);
    int rc = -1;
    if (!B || !Q || !S || !bn || !best || !who || !acc) {
        kd_err_set("kNN: out of memory for a bank of %lld x %d", (long long)N, D);
        goto out;
    }
    memcpy(B, bank, sizeof(float) * (size_t)N * D);
    if (metric == KD_KNN_COSINE)
        normalize_rows(B, N, D);
    else
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int d = 0; d < D; d++)
                s += (double)B[j * D + d] * B[j * D + d];
            bn[j] = (float)s;
        }
    for (int64_t q0 = 0; q0 < M; q0 += QBLOCK) {
        int nq = (int)(M - q0 < QBLOCK ? M - q0 : QBLOCK);
        memcpy(Q, queries + q0 * D, sizeof(float) * (size_t)nq * D);
        if (metric == KD_KNN_COSINE)
            normalize_rows(Q, nq, D);
        /* S[nq,N] = Q . B^T: similarity, or for Euclid 2 q.b - |b|^2 (larger is nearer) */
        kd_gemm(0, 1, nq, (int)N, D, metric == KD_KNN_COSINE ? 1.0f : 2.0f, Q, D, B, D, 0.0f, S, (int)N);
        for (int i = 0; i < nq; i++) {
            float *s = S + (size_t)i * N;
            for (int t = 0; t < k; t++) {
                best[t] = -INFINITY;
                who[t] = -1;
            }
            for (int64_t j = 0; j < N; j++) {
                float v = metric == KD_KNN_COSINE ? s[j] : s[j] - bn[j];
                topk_insert(best, who, k, v, (int32_t)j);
            }
            pred[q0 + i] = vote(best, who, labels, k, nclass, T, metric, acc);
        }
    }
    rc = 0;
out:
    free(B);
    free(Q);
    free(S);
    free(bn);
    free(best);
    free(who);
    free(acc);
    return rc;
}

int kd_knn_predict_ref(const float *bank, const int32_t *labels, int64_t N, int D, int nclass, const float *queries,
                       int64_t M, int k, float T, int metric, int32_t *pred)
{
    if (k < 1 || k > N)
        return -1;
    float *best = malloc(sizeof(float) * (size_t)k);
    int32_t *who = malloc(sizeof(int32_t) * (size_t)k);
    double *acc = malloc(sizeof(double) * (size_t)nclass);
    if (!best || !who || !acc) {
        free(best), free(who), free(acc);
        return -1;
    }
    for (int64_t i = 0; i < M; i++) {
        const float *q = queries + i * D;
        double qn = 0;
        for (int d = 0; d < D; d++)
            qn += (double)q[d] * q[d];
        for (int t = 0; t < k; t++)
            best[t] = -INFINITY, who[t] = -1;
        for (int64_t j = 0; j < N; j++) {
            const float *b = bank + j * D;
            double dot = 0, bb = 0, dd = 0;
            for (int d = 0; d < D; d++) {
                dot += (double)q[d] * b[d];
                bb += (double)b[d] * b[d];
                dd += ((double)q[d] - b[d]) * ((double)q[d] - b[d]);
            }
            double v = metric == KD_KNN_COSINE ? (qn > 0 && bb > 0 ? dot / sqrt(qn * bb) : 0) : -dd;
            topk_insert(best, who, k, (float)v, (int32_t)j);
        }
        pred[i] = vote(best, who, labels, k, nclass, T, metric, acc);
    }
    free(best);
    free(who);
    free(acc);
    return 0;
}
