/* Batch norm over [N,C,HW] (contract in kd_layers.h): training forward with
 * batch (or per-group) statistics, eval forward with running statistics,
 * backward; split across cores by channel with OpenMP.  The plane sums are
 * in double (plane_sum in kd_layers_impl.h, shared with the convolution's
 * bias gradient). */
#include <math.h>

#include "kd_layers_impl.h"


static double plane_sqdev(const float *x, int n, double mu)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++)
        s += (x[i] - mu) * (x[i] - mu);
    return s;
}

/* sum dy and sum dy * (x - mu) over a plane */
static void plane_dsums(const float *x, const float *dy, int n, double mu, double *sdy, double *sdyx)
{
    double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
    for (int i = 0; i < n; i++) {
        a += dy[i];
        b += (double)dy[i] * (x[i] - mu);
    }
    *sdy += a, *sdyx += b;
}
/* Sums in double per (group, channel): float accumulation over 128x32x32
 * values loses digits PyTorch keeps. */
void kd_bn_forward_train(int N, int C, int HW, int group, const float *x, const float *gamma, const float *beta,
                         float *y, float *mean, float *rstd, float *run_mean, float *run_var, float momentum,
                         float eps)
{
    if (group <= 0 || N % group)
        group = N;
    int G = N / group;
    size_t cnt = (size_t)group * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double rm = 0, rv = 0;
        for (int g = 0; g < G; g++) {
            double s = 0, s2 = 0;
            for (int n = g * group; n < (g + 1) * group; n++)
                s += plane_sum(x + ((size_t)n * C + c) * HW, HW);
            double mu = s / (double)cnt;
            for (int n = g * group; n < (g + 1) * group; n++)
                s2 += plane_sqdev(x + ((size_t)n * C + c) * HW, HW, mu);
            double var = s2 / (double)cnt, rs = 1.0 / sqrt(var + eps);
            mean[g * C + c] = (float)mu;
            rstd[g * C + c] = (float)rs;
            float a = (float)(rs * gamma[c]), bb = (float)(beta[c] - mu * rs * gamma[c]);
            for (int n = g * group; n < (g + 1) * group; n++) {
                const float *xc = x + ((size_t)n * C + c) * HW;
                float *yc = y + ((size_t)n * C + c) * HW;
                for (int i = 0; i < HW; i++)
                    yc[i] = xc[i] * a + bb;
            }
            rm += mu;
            rv += cnt > 1 ? s2 / (double)(cnt - 1) : var;
        }
        run_mean[c] = (1 - momentum) * run_mean[c] + momentum * (float)(rm / G);
        run_var[c] = (1 - momentum) * run_var[c] + momentum * (float)(rv / G);
    }
}

void kd_bn_forward_eval(int N, int C, int HW, const float *x, const float *gamma, const float *beta,
                        const float *run_mean, const float *run_var, float eps, float *y)
{
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float s = gamma[c] / sqrtf(run_var[c] + eps), b = beta[c] - run_mean[c] * s;
        for (int n = 0; n < N; n++) {
            const float *xc = x + ((size_t)n * C + c) * HW;
            float *yc = y + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++)
                yc[i] = xc[i] * s + b;
        }
    }
}

void kd_bn_backward(int N, int C, int HW, int group, const float *x, const float *mean, const float *rstd,
                    const float *gamma, const float *dy, float *dx, float *dgamma, float *dbeta)
{
    if (group <= 0 || N % group)
        group = N;
    int G = N / group;
    size_t cnt = (size_t)group * HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        for (int g = 0; g < G; g++) {
            float mu = mean[g * C + c], rs = rstd[g * C + c];
            double sdy = 0, sdyx = 0;
            for (int n = g * group; n < (g + 1) * group; n++)
                plane_dsums(x + ((size_t)n * C + c) * HW, dy + ((size_t)n * C + c) * HW, HW, mu, &sdy, &sdyx);
            sdyx *= rs; /* sum dy * xhat */
            if (dgamma)
                dgamma[c] += (float)sdyx;
            if (dbeta)
                dbeta[c] += (float)sdy;
            if (!dx)
                continue;
            float k = gamma[c] * rs, m1 = (float)(sdy / (double)cnt), m2 = (float)(sdyx / (double)cnt);
            for (int n = g * group; n < (g + 1) * group; n++) {
                const float *xc = x + ((size_t)n * C + c) * HW, *dyc = dy + ((size_t)n * C + c) * HW;
                float *dxc = dx + ((size_t)n * C + c) * HW;
                for (int i = 0; i < HW; i++)
                    dxc[i] += k * (dyc[i] - m1 - (xc[i] - mu) * rs * m2);
            }
        }
}

/* Synchronised BN: the same arithmetic as group 0 above, with the
 * per-channel sums (and the count) summed over the replicas between the
 * passes: the mean, then the squared deviations from the global mean. */
int kd_bn_forward_train_sync(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x,
                             const float *gamma, const float *beta, float *y, float *mean, float *rstd,
                             float *run_mean, float *run_var, float momentum, float eps)
{
    double *s = work, *s2 = work + C + 1;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double a = 0;
        for (int n = 0; n < N; n++)
            a += plane_sum(x + ((size_t)n * C + c) * HW, HW);
        s[c] = a;
    }
    s[C] = (double)N * HW;
    if (sum(s, (size_t)C + 1))
        return -1;
    double cnt = s[C];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double a = 0, mu = s[c] / cnt;
        for (int n = 0; n < N; n++)
            a += plane_sqdev(x + ((size_t)n * C + c) * HW, HW, mu);
        s2[c] = a;
    }
    if (sum(s2, (size_t)C))
        return -1;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mu = s[c] / cnt, var = s2[c] / cnt, rs = 1.0 / sqrt(var + eps);
        mean[c] = (float)mu;
        rstd[c] = (float)rs;
        float a = (float)(rs * gamma[c]), bb = (float)(beta[c] - mu * rs * gamma[c]);
        for (int n = 0; n < N; n++) {
            const float *xc = x + ((size_t)n * C + c) * HW;
            float *yc = y + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++)
                yc[i] = xc[i] * a + bb;
        }
        run_mean[c] = (1 - momentum) * run_mean[c] + momentum * (float)mu;
        run_var[c] = (1 - momentum) * run_var[c] + momentum * (float)(cnt > 1 ? s2[c] / (cnt - 1) : var);
    }
    return 0;
}

int kd_bn_backward_sync(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x, const float *mean,
                        const float *rstd, const float *gamma, const float *dy, float *dx, float *dgamma,
                        float *dbeta)
{
    double *sdy = work, *sdyx = work + C;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double a = 0, b = 0;
        for (int n = 0; n < N; n++)
            plane_dsums(x + ((size_t)n * C + c) * HW, dy + ((size_t)n * C + c) * HW, HW, mean[c], &a, &b);
        b *= rstd[c]; /* sum dy * xhat */
        /* this replica's share: the trainer averages the parameters' gradients */
        if (dgamma)
            dgamma[c] += (float)b;
        if (dbeta)
            dbeta[c] += (float)a;
        sdy[c] = a, sdyx[c] = b;
    }
    if (!dx)
        return 0;
    work[2 * C] = (double)N * HW;
    if (sum(work, 2 * (size_t)C + 1))
        return -1;
    double cnt = work[2 * C];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float mu = mean[c], rs = rstd[c], k = gamma[c] * rs, m1 = (float)(sdy[c] / cnt), m2 = (float)(sdyx[c] / cnt);
        for (int n = 0; n < N; n++) {
            const float *xc = x + ((size_t)n * C + c) * HW, *dyc = dy + ((size_t)n * C + c) * HW;
            float *dxc = dx + ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++)
                dxc[i] += k * (dyc[i] - m1 - (xc[i] - mu) * rs * m2);
        }
    }
    return 0;
}
