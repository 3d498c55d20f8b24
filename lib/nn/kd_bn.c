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
