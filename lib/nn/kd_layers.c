/* Layer kernels other than convolution and batch norm (contract in
 * kd_layers.h): activations, pooling, linear, channel scaling, residual
 * add and dropout.  Plain loops (linear: kd_gemm); only ReLU, the one on
 * every conv's output, is split across cores, and only on large tensors.
 * Every backward accumulates. */
#include "kd_layers.h"

#include <math.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"

/* --------------------------------------------------------- activations */

/* NaN and infinities come out as PyTorch's do: every comparison with NaN
 * is false, so each form below lets NaN through (`x > 0 ? x : 0` would turn
 * it into 0 and hide it from every later check), and hardswish(-inf) is
 * -inf * 0 = NaN as in x * relu6(x + 3) / 6. */
void kd_act_forward(kd_act a, const float *x, float *y, size_t n)
{
    switch (a) {
    case KD_RELU:
        /* simd: in place (y == x) the compiler's alias check would pick
         * its scalar loop */
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) y[i] = x[i] < 0 ? 0 : x[i];
        break;
    case KD_RELU6:
        for (size_t i = 0; i < n; i++) y[i] = x[i] < 0 ? 0 : x[i] > 6 ? 6 : x[i];
        break;
    case KD_SILU:
        for (size_t i = 0; i < n; i++) y[i] = x[i] / (1 + expf(-x[i]));
        break;
    case KD_HSWISH:
        for (size_t i = 0; i < n; i++) y[i] = x[i] <= -3 ? x[i] * 0 : x[i] >= 3 ? x[i] : x[i] * (x[i] + 3) / 6;
        break;
    case KD_HSIGMOID:
        for (size_t i = 0; i < n; i++) y[i] = x[i] <= -3 ? 0 : x[i] >= 3 ? 1 : x[i] / 6 + 0.5f;
        break;
    case KD_SIGMOID:
        for (size_t i = 0; i < n; i++) y[i] = 1 / (1 + expf(-x[i]));
        break;
    case KD_IDENTITY:
        if (y != x)
            memmove(y, x, n * sizeof *y);
        break;
    }
}

/* Derivatives as PyTorch defines them at the kinks (relu'(0) = 0,
 * hardswish'(-3) = 0 and (3) = 1 from its piecewise formula). */
void kd_act_backward(kd_act a, const float *x, const float *y, const float *dy, float *dx, size_t n)
{
    switch (a) {
    case KD_RELU:
#pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0 ? dy[i] : 0;
        break;
    case KD_RELU6:
        for (size_t i = 0; i < n; i++) dx[i] += (x[i] > 0 && x[i] < 6) ? dy[i] : 0;
        break;
    case KD_SILU:
        for (size_t i = 0; i < n; i++) {
            float s = 1 / (1 + expf(-x[i]));
            dx[i] += dy[i] * s * (1 + x[i] * (1 - s));
        }
        break;
    case KD_HSWISH:
        for (size_t i = 0; i < n; i++) dx[i] += dy[i] * (x[i] < -3 ? 0 : x[i] > 3 ? 1 : (2 * x[i] + 3) / 6);
        break;
    case KD_HSIGMOID:
        for (size_t i = 0; i < n; i++) dx[i] += (x[i] > -3 && x[i] < 3) ? dy[i] / 6 : 0;
        break;
    case KD_SIGMOID:
        for (size_t i = 0; i < n; i++) {
            float s = y ? y[i] : 1 / (1 + expf(-x[i]));
            dx[i] += dy[i] * s * (1 - s);
        }
        break;
    case KD_IDENTITY:
        for (size_t i = 0; i < n; i++) dx[i] += dy[i];
        break;
    }
}

/* ------------------------------------------------------------- pooling */

int kd_pool_init(kd_pool *p, int N, int C, int H, int W, int k, int stride, int pad)
{
    p->N = N, p->C = C, p->H = H, p->W = W, p->k = k, p->stride = stride, p->pad = pad;
    if (k < 1 || stride < 1 || pad < 0 || 2 * pad > k || H + 2 * pad < k || W + 2 * pad < k) {
        kd_err_set("pool: kernel %d stride %d padding %d does not fit %dx%d", k, stride, pad, H, W);
        return -1;
    }
    p->Ho = (H + 2 * pad - k) / stride + 1;
    p->Wo = (W + 2 * pad - k) / stride + 1;
    return 0;
}

void kd_maxpool_forward(const kd_pool *p, const float *x, float *y, int32_t *idx)
{
    for (int nc = 0; nc < p->N * p->C; nc++) {
        const float *xc = x + (size_t)nc * p->H * p->W;
        for (int i = 0; i < p->Ho; i++)
            for (int j = 0; j < p->Wo; j++) {
                float m = -INFINITY;
                int32_t bi = -1;
                for (int u = 0; u < p->k; u++) {
                    int hi = i * p->stride - p->pad + u;
                    if (hi < 0 || hi >= p->H)
                        continue;
                    for (int v = 0; v < p->k; v++) {
                        int wi = j * p->stride - p->pad + v;
                        if (wi < 0 || wi >= p->W)
                            continue;
                        float t = xc[hi * p->W + wi];
                        if (t > m || bi < 0 || isnan(t)) {
                            m = t;
                            bi = hi * p->W + wi;
                        }
                    }
                }
                size_t o = ((size_t)nc * p->Ho + i) * p->Wo + j;
                y[o] = m;
                idx[o] = bi;
            }
    }
}

void kd_maxpool_backward(const kd_pool *p, const int32_t *idx, const float *dy, float *dx)
{
    size_t P = (size_t)p->Ho * p->Wo;
    for (int nc = 0; nc < p->N * p->C; nc++)
        for (size_t k = 0; k < P; k++)
            dx[(size_t)nc * p->H * p->W + idx[nc * P + k]] += dy[nc * P + k];
}

void kd_avgpool_forward(const kd_pool *p, const float *x, float *y)
{
    float inv = 1.0f / (float)(p->k * p->k); /* count_include_pad=True */
    for (int nc = 0; nc < p->N * p->C; nc++) {
        const float *xc = x + (size_t)nc * p->H * p->W;
        for (int i = 0; i < p->Ho; i++)
            for (int j = 0; j < p->Wo; j++) {
                float s = 0;
                for (int u = 0; u < p->k; u++) {
                    int hi = i * p->stride - p->pad + u;
                    if (hi < 0 || hi >= p->H)
                        continue;
                    for (int v = 0; v < p->k; v++) {
                        int wi = j * p->stride - p->pad + v;
                        if (wi >= 0 && wi < p->W)
                            s += xc[hi * p->W + wi];
                    }
                }
                y[((size_t)nc * p->Ho + i) * p->Wo + j] = s * inv;
            }
    }
}

void kd_avgpool_backward(const kd_pool *p, const float *dy, float *dx)
{
    float inv = 1.0f / (float)(p->k * p->k);
    for (int nc = 0; nc < p->N * p->C; nc++) {
        float *dc = dx + (size_t)nc * p->H * p->W;
        for (int i = 0; i < p->Ho; i++)
            for (int j = 0; j < p->Wo; j++) {
                float g = dy[((size_t)nc * p->Ho + i) * p->Wo + j] * inv;
                for (int u = 0; u < p->k; u++) {
                    int hi = i * p->stride - p->pad + u;
                    if (hi < 0 || hi >= p->H)
                        continue;
                    for (int v = 0; v < p->k; v++) {
                        int wi = j * p->stride - p->pad + v;
                        if (wi >= 0 && wi < p->W)
                            dc[hi * p->W + wi] += g;
                    }
                }
            }
    }
}

/* PyTorch's adaptive bins: [floor(i*H/oh), ceil((i+1)*H/oh)). */
static int bin_lo(int i, int in, int out) { return (int)(((long)i * in) / out); }
static int bin_hi(int i, int in, int out) { return (int)(((long)(i + 1) * in + out - 1) / out); }

void kd_adaptive_avgpool_forward(int N, int C, int H, int W, int oh, int ow, const float *x, float *y)
{
    for (int nc = 0; nc < N * C; nc++) {
        const float *xc = x + (size_t)nc * H * W;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                int h0 = bin_lo(i, H, oh), h1 = bin_hi(i, H, oh), w0 = bin_lo(j, W, ow), w1 = bin_hi(j, W, ow);
                double s = 0;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++)
                        s += xc[h * W + w];
                y[((size_t)nc * oh + i) * ow + j] = (float)(s / ((h1 - h0) * (w1 - w0)));
            }
    }
}

void kd_adaptive_avgpool_backward(int N, int C, int H, int W, int oh, int ow, const float *dy, float *dx)
{
    for (int nc = 0; nc < N * C; nc++) {
        float *dc = dx + (size_t)nc * H * W;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                int h0 = bin_lo(i, H, oh), h1 = bin_hi(i, H, oh), w0 = bin_lo(j, W, ow), w1 = bin_hi(j, W, ow);
                float g = dy[((size_t)nc * oh + i) * ow + j] / (float)((h1 - h0) * (w1 - w0));
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++)
                        dc[h * W + w] += g;
            }
    }
}

/* -------------------------------------------------------------- linear */

void kd_linear_forward(int N, int I, int O, const float *x, const float *W, const float *b, float *y)
{
    if (b)
        for (int n = 0; n < N; n++)
            memcpy(y + (size_t)n * O, b, sizeof(float) * (size_t)O);
    kd_gemm(0, 1, N, O, I, 1.0f, x, I, W, I, b ? 1.0f : 0.0f, y, O);
}

void kd_linear_backward(int N, int I, int O, const float *x, const float *W, const float *dy, float *dx, float *dW,
                        float *db)
{
    if (dx)
        kd_gemm(0, 0, N, I, O, 1.0f, dy, O, W, I, 1.0f, dx, I);
    if (dW)
        kd_gemm(1, 0, O, I, N, 1.0f, dy, O, x, I, 1.0f, dW, I);
    if (db)
        for (int o = 0; o < O; o++) {
            double s = 0;
            for (int n = 0; n < N; n++)
                s += dy[(size_t)n * O + o];
            db[o] += (float)s;
        }
}

/* ------------------------------------------------- scale, add, dropout */

void kd_scale_forward(int N, int C, int HW, const float *x, const float *s, float *y)
{
    for (int nc = 0; nc < N * C; nc++)
        for (int i = 0; i < HW; i++)
            y[(size_t)nc * HW + i] = x[(size_t)nc * HW + i] * s[nc];
}

void kd_scale_backward(int N, int C, int HW, const float *x, const float *s, const float *dy, float *dx, float *ds)
{
    for (int nc = 0; nc < N * C; nc++) {
        double a = 0;
        for (int i = 0; i < HW; i++) {
            size_t k = (size_t)nc * HW + i;
            if (dx)
                dx[k] += dy[k] * s[nc];
            a += (double)dy[k] * x[k];
        }
        if (ds)
            ds[nc] += (float)a;
    }
}

void kd_add_forward(const float *a, const float *b, float *y, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

void kd_add_backward(const float *dy, float *da, float *db, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        if (da)
            da[i] += dy[i];
        if (db)
            db[i] += dy[i];
    }
}

/* A folded BN's add and activation: the same operations as kd_add_forward
 * then kd_act_forward, in one pass over memory instead of two. */
void kd_add_act_forward(const float *a, const float *b, kd_act act, float *y, size_t n)
{
    if (act != KD_RELU && act != KD_RELU6) {
        kd_add_forward(a, b, y, n);
        kd_act_forward(act, y, y, n);
        return;
    }
    float hi = act == KD_RELU6 ? 6 : INFINITY;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float t = a[i] + b[i];
        y[i] = t < 0 ? 0 : t > hi ? hi : t;
    }
}

void kd_dropout_forward(const float *x, float *y, float *mask, size_t n, float p, kd_rng *rng)
{
    float keep = p < 1 ? 1 / (1 - p) : 0;
    for (size_t i = 0; i < n; i++) {
        mask[i] = kd_rng_uniform(rng) < p ? 0 : keep;
        y[i] = x[i] * mask[i];
    }
}

void kd_dropout_backward(const float *mask, const float *dy, float *dx, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dx[i] += dy[i] * mask[i];
}
