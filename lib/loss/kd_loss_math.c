/* kd_loss_math — the mathematics the losses share, free of any module's
 * state so that tests can check it against PyTorch alone. */
#include "kd_loss.h"

#include <math.h>

#include "kd_gemm.h"

double kd_softmax_ce(const float *logits, const int32_t *y, int n, int K, float weight, float *d)
{
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * K;
        float mx = z[0];
        for (int k = 1; k < K; k++)
            mx = z[k] > mx ? z[k] : mx;
        double s = 0;
        for (int k = 0; k < K; k++)
            s += exp((double)z[k] - mx);
        loss += log(s) + mx - z[y[i]];
        if (d)
            for (int k = 0; k < K; k++)
                d[(size_t)i * K + k] += weight / n * (float)(exp((double)z[k] - mx) / s - (k == y[i]));
    }
    return loss / n;
}

void kd_l2norm_forward(const float *x, float *y, float *norm, int n, int d)
{
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++)
            s += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
        float nr = (float)sqrt(s);
        nr = nr > 1e-12f ? nr : 1e-12f;
        norm[i] = nr;
        for (int j = 0; j < d; j++)
            y[(size_t)i * d + j] = x[(size_t)i * d + j] / nr;
    }
}

void kd_l2norm_backward(const float *y, const float *norm, const float *dy, float *dx, int n, int d)
{
    for (int i = 0; i < n; i++) {
        double yd = 0;
        for (int j = 0; j < d; j++)
            yd += (double)y[(size_t)i * d + j] * dy[(size_t)i * d + j];
        for (int j = 0; j < d; j++)
            dx[(size_t)i * d + j] += (dy[(size_t)i * d + j] - y[(size_t)i * d + j] * (float)yd) / norm[i];
    }
}

/* The body of moco_compute, free of the module's state so that it can be
 * checked against PyTorch alone (tests/unit/test_train.c). */
double kd_infonce_queue(const float *q_raw, const float *k, const float *queue, int n, int E, int K, float tau,
                        float weight, float *dq_raw, float *qn, float *qnorm, float *lg, float *dqn)
{
    int L = 1 + K;
    float inv_t = 1.0f / tau;
    kd_l2norm_forward(q_raw, qn, qnorm, n, E);
    /* logits: [q.k, q.queue] / tau */
    for (int i = 0; i < n; i++) {
        double dot = 0;
        for (int j = 0; j < E; j++)
            dot += (double)qn[(size_t)i * E + j] * k[(size_t)i * E + j];
        lg[(size_t)i * L] = (float)dot * inv_t;
    }
    kd_gemm(0, 1, n, K, E, inv_t, qn, E, queue, E, 0.0f, lg + 1, L);
    /* CE with target 0; gradient into the logits buffer itself */
    double l = 0;
    for (int i = 0; i < n; i++) {
        float *z = lg + (size_t)i * L, mx = z[0];
        for (int c = 1; c < L; c++)
            mx = z[c] > mx ? z[c] : mx;
        double sum = 0;
        for (int c = 0; c < L; c++)
            sum += exp((double)z[c] - mx);
        l += log(sum) + mx - z[0];
        for (int c = 0; c < L; c++)
            z[c] = (float)(exp((double)z[c] - mx) / sum) - (c == 0);
    }
    if (dq_raw) {
        /* dq = (w/n/tau) (dz0 k + dz_rest . queue); keys get no gradient */
        float sc = weight / n * inv_t;
        kd_gemm(0, 0, n, E, K, sc, lg + 1, L, queue, E, 0.0f, dqn, E);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < E; j++)
                dqn[(size_t)i * E + j] += sc * lg[(size_t)i * L] * k[(size_t)i * E + j];
        kd_l2norm_backward(qn, qnorm, dqn, dq_raw, n, E);
    }
    return l / n;
}

