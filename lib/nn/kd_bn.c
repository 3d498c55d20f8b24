/* Batch norm over [N,C,HW] (contract in kd_layers.h): training forward with
 * batch (or per-group) statistics, eval forward with running statistics,
 * backward; split across cores by channel with OpenMP.  The plane sums are
 * in double (plane_sum in kd_layers_impl.h, shared with the convolution's
 * bias gradient).  Each kernel may run with an epilogue (kd_bn_epi: a
 * residual add and a ReLU after the normalisation) inside its per-channel
 * pass, which saves the separate passes over [N,C,HW] of the add and the
 * activation, forward and backward; without one it is the plain batch norm,
 * and the two give the same bits (tests/unit/test_fuse.c). */
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
/* y = act(x * a + b (+ r)) over a plane: the same float operations as the
 * unfused BN, add and activation (see kd_act_forward).  y may be x or r
 * (in place): omp simd, as each element only reads its own inputs, where
 * the compiler's alias check would fall back to scalar code. */
static inline float relu_f(float t) { return t < 0 ? 0 : t; }
static inline float relu6_f(float t) { return t < 0 ? 0 : t > 6 ? 6 : t; }

static void plane_out(const float *x, float a, float b, const kd_bn_epi *e, size_t off, float *y, int n)
{
    const float *r = e && e->res ? e->res + off : NULL;
    kd_act act = e ? e->act : KD_IDENTITY;
    if (r && act == KD_RELU)
#pragma omp simd
        for (int i = 0; i < n; i++)
            y[i] = relu_f(x[i] * a + b + r[i]);
    else if (r && act == KD_RELU6)
#pragma omp simd
        for (int i = 0; i < n; i++)
            y[i] = relu6_f(x[i] * a + b + r[i]);
    else if (r)
#pragma omp simd
        for (int i = 0; i < n; i++)
            y[i] = x[i] * a + b + r[i];
    else if (act == KD_RELU)
#pragma omp simd
        for (int i = 0; i < n; i++)
            y[i] = relu_f(x[i] * a + b);
    else if (act == KD_RELU6)
#pragma omp simd
        for (int i = 0; i < n; i++)
            y[i] = relu6_f(x[i] * a + b);
    else
#pragma omp simd
        for (int i = 0; i < n; i++)
            y[i] = x[i] * a + b;
}

/* dy := 0 + act'(y) dy over a plane, then dres (+)= dy: exactly what the
 * unfused activation and add backwards leave in the BN output's zeroed
 * gradient buffer, so the sums below see the same bits. */
static void plane_back_epi(const kd_bn_epi *e, size_t off, float *dy, int n)
{
    const float *y = e->y + off;
    dy += off;
    if (e->act == KD_RELU)
        for (int i = 0; i < n; i++)
            dy[i] = 0.0f + (y[i] > 0 ? dy[i] : 0);
    else if (e->act == KD_RELU6)
        for (int i = 0; i < n; i++)
            dy[i] = 0.0f + ((y[i] > 0 && y[i] < 6) ? dy[i] : 0);
    else
        for (int i = 0; i < n; i++)
            dy[i] = 0.0f + dy[i];
    if (!e->dres)
        return;
    float *r = e->dres + off;
    if (e->fresh_dres)
        for (int i = 0; i < n; i++)
            r[i] = 0.0f + dy[i];
    else
        for (int i = 0; i < n; i++)
            r[i] += dy[i];
}

/* dx (+)= k (dy - m1 - (x - mu) rs m2) over a plane */
static void plane_dx(const float *x, const float *dy, float *dx, int n, float k, float m1, float mu, float rs,
                     float m2, int fresh)
{
    if (fresh)
        for (int i = 0; i < n; i++)
            dx[i] = 0.0f + k * (dy[i] - m1 - (x[i] - mu) * rs * m2);
    else
        for (int i = 0; i < n; i++)
            dx[i] += k * (dy[i] - m1 - (x[i] - mu) * rs * m2);
}

/* Sums in double per (group, channel): float accumulation over 128x32x32
 * values loses digits PyTorch keeps. */
void kd_bn_forward_train_fused(int N, int C, int HW, int group, const float *x, const float *gamma,
                               const float *beta, const kd_bn_epi *e, float *y, float *mean, float *rstd,
                               float *run_mean, float *run_var, float momentum, float eps)
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
                size_t off = ((size_t)n * C + c) * HW;
                plane_out(x + off, a, bb, e, off, y + off, HW);
            }
            rm += mu;
            rv += cnt > 1 ? s2 / (double)(cnt - 1) : var;
        }
        run_mean[c] = (1 - momentum) * run_mean[c] + momentum * (float)(rm / G);
        run_var[c] = (1 - momentum) * run_var[c] + momentum * (float)(rv / G);
    }
}

void kd_bn_forward_train(int N, int C, int HW, int group, const float *x, const float *gamma, const float *beta,
                         float *y, float *mean, float *rstd, float *run_mean, float *run_var, float momentum,
                         float eps)
{
    kd_bn_forward_train_fused(N, C, HW, group, x, gamma, beta, NULL, y, mean, rstd, run_mean, run_var, momentum, eps);
}

void kd_bn_forward_eval_fused(int N, int C, int HW, const float *x, const float *gamma, const float *beta,
                              const float *run_mean, const float *run_var, float eps, const kd_bn_epi *e, float *y)
{
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        float s = gamma[c] / sqrtf(run_var[c] + eps), b = beta[c] - run_mean[c] * s;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            plane_out(x + off, s, b, e, off, y + off, HW);
        }
    }
}

void kd_bn_forward_eval(int N, int C, int HW, const float *x, const float *gamma, const float *beta,
                        const float *run_mean, const float *run_var, float eps, float *y)
{
    kd_bn_forward_eval_fused(N, C, HW, x, gamma, beta, run_mean, run_var, eps, NULL, y);
}

void kd_bn_backward_fused(int N, int C, int HW, int group, const float *x, const float *mean, const float *rstd,
                          const float *gamma, const kd_bn_epi *e, float *dy, float *dx, float *dgamma,
                          float *dbeta)
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
            for (int n = g * group; n < (g + 1) * group; n++) {
                size_t off = ((size_t)n * C + c) * HW;
                if (e)
                    plane_back_epi(e, off, dy, HW);
                plane_dsums(x + off, dy + off, HW, mu, &sdy, &sdyx);
            }
            sdyx *= rs; /* sum dy * xhat */
            if (dgamma)
                dgamma[c] += (float)sdyx;
            if (dbeta)
                dbeta[c] += (float)sdy;
            if (!dx)
                continue;
            float k = gamma[c] * rs, m1 = (float)(sdy / (double)cnt), m2 = (float)(sdyx / (double)cnt);
            for (int n = g * group; n < (g + 1) * group; n++) {
                size_t off = ((size_t)n * C + c) * HW;
                plane_dx(x + off, dy + off, dx + off, HW, k, m1, mu, rs, m2, e && e->fresh_dx);
            }
        }
}

void kd_bn_backward(int N, int C, int HW, int group, const float *x, const float *mean, const float *rstd,
                    const float *gamma, const float *dy, float *dx, float *dgamma, float *dbeta)
{
    /* without an epilogue dy is only read */
    kd_bn_backward_fused(N, C, HW, group, x, mean, rstd, gamma, NULL, (float *)dy, dx, dgamma, dbeta);
}

/* Synchronised BN: the same arithmetic as group 0 above, with the
 * per-channel sums (and the count) summed over the replicas between the
 * passes: the mean, then the squared deviations from the global mean. */
int kd_bn_forward_train_sync_fused(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x,
                                   const float *gamma, const float *beta, const kd_bn_epi *e, float *y, float *mean,
                                   float *rstd, float *run_mean, float *run_var, float momentum, float eps)
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
            size_t off = ((size_t)n * C + c) * HW;
            plane_out(x + off, a, bb, e, off, y + off, HW);
        }
        run_mean[c] = (1 - momentum) * run_mean[c] + momentum * (float)mu;
        run_var[c] = (1 - momentum) * run_var[c] + momentum * (float)(cnt > 1 ? s2[c] / (cnt - 1) : var);
    }
    return 0;
}

int kd_bn_forward_train_sync(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x,
                             const float *gamma, const float *beta, float *y, float *mean, float *rstd,
                             float *run_mean, float *run_var, float momentum, float eps)
{
    return kd_bn_forward_train_sync_fused(sum, work, N, C, HW, x, gamma, beta, NULL, y, mean, rstd, run_mean,
                                          run_var, momentum, eps);
}

int kd_bn_backward_sync_fused(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x,
                              const float *mean, const float *rstd, const float *gamma, const kd_bn_epi *e,
                              float *dy, float *dx, float *dgamma, float *dbeta)
{
    double *sdy = work, *sdyx = work + C;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double a = 0, b = 0;
        for (int n = 0; n < N; n++) {
            size_t off = ((size_t)n * C + c) * HW;
            if (e)
                plane_back_epi(e, off, dy, HW);
            plane_dsums(x + off, dy + off, HW, mean[c], &a, &b);
        }
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
            size_t off = ((size_t)n * C + c) * HW;
            plane_dx(x + off, dy + off, dx + off, HW, k, m1, mu, rs, m2, e && e->fresh_dx);
        }
    }
    return 0;
}

int kd_bn_backward_sync(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x, const float *mean,
                        const float *rstd, const float *gamma, const float *dy, float *dx, float *dgamma,
                        float *dbeta)
{
    return kd_bn_backward_sync_fused(sum, work, N, C, HW, x, mean, rstd, gamma, NULL, (float *)dy, dx, dgamma,
                                     dbeta);
}
