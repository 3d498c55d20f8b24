/* The reference kernels, the unit tests' oracles (tests/unit/test_layers.c):
 * textbook formulas, one element at a time, accumulating in double, for the
 * kernels whose optimised versions are not themselves such loops —
 * convolution (all paths), batch norm and linear.  Never called by the
 * engine; compiled at the default optimisation level. */
#include <math.h>

#include "kd_layers.h"

/* ---------------------------------------------------------------- conv */

void kd_conv_forward_ref(const kd_conv *c, const float *x, const float *w, const float *b, float *y)
{
    int cg = c->C / c->groups, og = c->O / c->groups;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->O; o++) {
            int g = o / og;
            for (int i = 0; i < c->Ho; i++)
                for (int j = 0; j < c->Wo; j++) {
                    double s = b ? b[o] : 0;
                    for (int ci = 0; ci < cg; ci++)
                        for (int u = 0; u < c->kh; u++)
                            for (int v = 0; v < c->kw; v++) {
                                int hi = i * c->stride - c->pad + u, wi = j * c->stride - c->pad + v;
                                if (hi < 0 || hi >= c->H || wi < 0 || wi >= c->W)
                                    continue;
                                s += (double)x[(((size_t)n * c->C + g * cg + ci) * c->H + hi) * c->W + wi] *
                                     w[(((size_t)o * cg + ci) * c->kh + u) * c->kw + v];
                            }
                    y[(((size_t)n * c->O + o) * c->Ho + i) * c->Wo + j] = (float)s;
                }
        }
}

void kd_conv_backward_ref(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                          float *db)
{
    int cg = c->C / c->groups, og = c->O / c->groups;
    for (int n = 0; n < c->N; n++)
        for (int o = 0; o < c->O; o++) {
            int g = o / og;
            for (int i = 0; i < c->Ho; i++)
                for (int j = 0; j < c->Wo; j++) {
                    float d = dy[(((size_t)n * c->O + o) * c->Ho + i) * c->Wo + j];
                    if (db)
                        db[o] += d;
                    for (int ci = 0; ci < cg; ci++)
                        for (int u = 0; u < c->kh; u++)
                            for (int v = 0; v < c->kw; v++) {
                                int hi = i * c->stride - c->pad + u, wi = j * c->stride - c->pad + v;
                                if (hi < 0 || hi >= c->H || wi < 0 || wi >= c->W)
                                    continue;
                                size_t xi = (((size_t)n * c->C + g * cg + ci) * c->H + hi) * c->W + wi;
                                size_t wj = (((size_t)o * cg + ci) * c->kh + u) * c->kw + v;
                                if (dx)
                                    dx[xi] += d * w[wj];
                                if (dw)
                                    dw[wj] += d * x[xi];
                            }
                }
        }
}

/* ---------------------------------------------------------- batch norm */

void kd_bn_forward_train_ref(int N, int C, int HW, int group, const float *x, const float *gamma,
                             const float *beta, float *y, float *mean, float *rstd, float *run_mean,
                             float *run_var, float momentum, float eps)
{
    if (group <= 0 || N % group)
        group = N;
    int G = N / group;
    for (int c = 0; c < C; c++) {
        double rm = 0, rv = 0;
        for (int g = 0; g < G; g++) {
            double s = 0, s2 = 0, cnt = (double)group * HW;
            for (int n = g * group; n < (g + 1) * group; n++)
                for (int i = 0; i < HW; i++)
                    s += x[((size_t)n * C + c) * HW + i];
            double mu = s / cnt;
            for (int n = g * group; n < (g + 1) * group; n++)
                for (int i = 0; i < HW; i++) {
                    double d = x[((size_t)n * C + c) * HW + i] - mu;
                    s2 += d * d;
                }
            double var = s2 / cnt;
            mean[g * C + c] = (float)mu;
            rstd[g * C + c] = (float)(1 / sqrt(var + eps));
            for (int n = g * group; n < (g + 1) * group; n++)
                for (int i = 0; i < HW; i++) {
                    size_t k = ((size_t)n * C + c) * HW + i;
                    y[k] = (float)((x[k] - mu) / sqrt(var + eps) * gamma[c] + beta[c]);
                }
            rm += mu;
            rv += cnt > 1 ? s2 / (cnt - 1) : var;
        }
        run_mean[c] = (float)((1 - momentum) * run_mean[c] + momentum * (rm / G));
        run_var[c] = (float)((1 - momentum) * run_var[c] + momentum * (rv / G));
    }
}

void kd_bn_backward_ref(int N, int C, int HW, int group, const float *x, const float *mean, const float *rstd,
                        const float *gamma, const float *dy, float *dx, float *dgamma, float *dbeta)
{
    if (group <= 0 || N % group)
        group = N;
    int G = N / group;
    for (int c = 0; c < C; c++)
        for (int g = 0; g < G; g++) {
            double mu = mean[g * C + c], rs = rstd[g * C + c], sdy = 0, sdyx = 0, cnt = (double)group * HW;
            for (int n = g * group; n < (g + 1) * group; n++)
                for (int i = 0; i < HW; i++) {
                    size_t k = ((size_t)n * C + c) * HW + i;
                    sdy += dy[k];
                    sdyx += dy[k] * (x[k] - mu) * rs;
                }
            if (dgamma)
                dgamma[c] += (float)sdyx;
            if (dbeta)
                dbeta[c] += (float)sdy;
            if (dx)
                for (int n = g * group; n < (g + 1) * group; n++)
                    for (int i = 0; i < HW; i++) {
                        size_t k = ((size_t)n * C + c) * HW + i;
                        double xh = (x[k] - mu) * rs;
                        dx[k] += (float)(gamma[c] * rs * (dy[k] - sdy / cnt - xh * sdyx / cnt));
                    }
        }
}

/* -------------------------------------------------------------- linear */

void kd_linear_forward_ref(int N, int I, int O, const float *x, const float *W, const float *b, float *y)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double s = b ? b[o] : 0;
            for (int i = 0; i < I; i++)
                s += (double)x[(size_t)n * I + i] * W[(size_t)o * I + i];
            y[(size_t)n * O + o] = (float)s;
        }
}

void kd_linear_backward_ref(int N, int I, int O, const float *x, const float *W, const float *dy, float *dx,
                            float *dW, float *db)
{
    if (dx)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < I; i++) {
                double s = 0;
                for (int o = 0; o < O; o++)
                    s += (double)dy[(size_t)n * O + o] * W[(size_t)o * I + i];
                dx[(size_t)n * I + i] += (float)s;
            }
    if (dW)
        for (int o = 0; o < O; o++)
            for (int i = 0; i < I; i++) {
                double s = 0;
                for (int n = 0; n < N; n++)
                    s += (double)dy[(size_t)n * O + o] * x[(size_t)n * I + i];
                dW[(size_t)o * I + i] += (float)s;
            }
    if (db)
        for (int o = 0; o < O; o++) {
            double s = 0;
            for (int n = 0; n < N; n++)
                s += dy[(size_t)n * O + o];
            db[o] += (float)s;
        }
}
