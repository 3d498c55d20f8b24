/* Convolution (contract in kd_layers.h): shapes, workspace sizing, im2col /
 * col2im and the GEMM paths.  Which path a kd_conv takes:
 *  - depthwise (groups == C == O, kernel up to 8x8): direct loops, in
 *    kd_conv_dw.c;
 *  - groups == 1 with small weights (O*C*kh*kw <= 131072 floats): per core.
 *    Each core takes a group of images (about GROUP_COLS output pixels; a
 *    larger single image in bands of output rows), builds its columns in
 *    its own slice of the workspace and runs a single-threaded GEMM
 *    (kd_gemm_serial) on them while they are in its cache; the weight
 *    gradient is summed in KD_CONV_PARTS fixed image ranges, so the result
 *    does not depend on the thread count; stride-1 input gradients are the
 *    convolution of dy with the flipped kernel;
 *  - groups == 1 with larger weights: chunked.  Images in chunks of about
 *    CHUNK_COLS output pixels, their columns side by side, one multithreaded
 *    kd_gemm per chunk (and per gradient), col2im for the input gradient;
 *  - other grouped convolutions: im2col and one GEMM per image and group.
 * 1x1 stride-1 convolutions skip im2col (the image is the column matrix).
 * The loops around the GEMMs are split across cores with OpenMP, never
 * around a (threaded) kd_gemm call, which BLIS threads itself in the same
 * libgomp pool; the per-core path calls only kd_gemm_serial inside its
 * parallel loop.  Every backward accumulates. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"
#include "kd_layers_impl.h"

/* ---------------------------------------------------------------- conv */

int kd_conv_init(kd_conv *c, int N, int C, int H, int W, int O, int k, int stride, int pad, int groups)
{
    c->N = N, c->C = C, c->H = H, c->W = W, c->O = O;
    c->kh = c->kw = k, c->stride = stride, c->pad = pad, c->groups = groups;
    if (groups < 1 || C % groups || O % groups || k < 1 || stride < 1 || pad < 0) {
        kd_err_set("conv: %d -> %d channels, kernel %d, stride %d, groups %d is inconsistent", C, O, k, stride,
                   groups);
        return -1;
    }
    c->nt = omp_get_max_threads();
    c->Ho = (H + 2 * pad - k) / stride + 1;
    c->Wo = (W + 2 * pad - k) / stride + 1;
    if (H + 2 * pad < k || W + 2 * pad < k || c->Ho < 1 || c->Wo < 1) {
        kd_err_set("conv: input %dx%d is smaller than kernel %d with padding %d", H, W, k, pad);
        return -1;
    }
    c->path = kd_conv_path(c);
    c->wm = c->path == KD_CONV_WINO ? kd_conv_wino_tile(c) : 0;
    return 0;
}

static int chunk_images(const kd_conv *c);
/* Depthwise kernels up to 8x8 take the direct loops (dw_backward keeps k*k
 * double sums on its stack); larger ones the grouped GEMM path. */
static int is_depthwise(const kd_conv *c)
{
    return c->groups > 1 && c->groups == c->C && c->groups == c->O && c->kh * c->kw <= 64;
}
static int is_pointwise(const kd_conv *c) { return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0; }

/* Ungrouped convolutions with small weights run on each core separately: a
 * core takes a group of images (one image from 16x16 up, a few below, about
 * GROUP_COLS output pixels), and its columns stay in that core's cache
 * between im2col and the single-threaded GEMM (kd_gemm_serial), where the
 * chunked path below streams megabytes of columns through memory for an
 * [O,K] of a few kilobytes and splits small GEMMs across cores.  The weight
 * gradient is summed in KD_CONV_PARTS fixed image ranges and then in range
 * order, so the result does not depend on the number of threads. */
#define GROUP_COLS 256
static int direct(const kd_conv *c) { return c->path == KD_CONV_DIRECT; }
static int wino(const kd_conv *c) { return c->path == KD_CONV_WINO; }

static int per_core(const kd_conv *c)
{
    return c->groups == 1 && (size_t)c->O * c->C * c->kh * c->kw <= 131072;
}

/* At most N/KD_CONV_PARTS images per group, so that tiny planes still give
 * every core work (and the grouping never depends on the thread count). */
static int group_images(const kd_conv *c)
{
    int P = c->Ho * c->Wo, nb = (GROUP_COLS + P - 1) / P, cap = (c->N + KD_CONV_PARTS - 1) / KD_CONV_PARTS;
    return nb > cap ? cap : nb;
}

/* A single image of more than GROUP_COLS output pixels is taken in bands of
 * output rows, so that a band's columns stay in the core's L2 cache (a
 * 16-channel 3x3 layer at 32x32 has 590 KB of columns per image). */
static int band_rows(const kd_conv *c)
{
    int r = GROUP_COLS / c->Wo;
    return r < 1 ? 1 : r;
}

/* Stride-1 input gradients (of at least 8 channels) are computed as the
 * convolution of dy with the flipped, transposed kernel (padding k-1-pad)
 * rather than as a GEMM over only O inputs followed by col2im: the GEMM then
 * has the forward's shape and accumulates straight into dx. */
static int dx_as_conv(const kd_conv *c)
{
    return c->stride == 1 && c->kh > 1 && c->pad <= c->kh - 1 && c->C >= 8;
}

static void flipped_conv(const kd_conv *c, kd_conv *t)
{
    *t = *c;
    t->N = 1, t->C = c->O, t->H = c->Ho, t->W = c->Wo, t->O = c->C, t->pad = c->kh - 1 - c->pad;
    t->Ho = c->H, t->Wo = c->W;
}

/* One core's slice of the per-core workspace: col [K, nb*P] (also the
 * [C, nb*H*W] input gradient of a group), buf [K, nb*P] (dcol, or the
 * flipped columns [O*kk, nb*H*W]), out [O, nb*P] (outputs or dy of a group). */
static void per_core_slice(const kd_conv *c, size_t *col, size_t *buf, size_t *out)
{
    size_t kk = (size_t)c->kh * c->kw, nb = (size_t)group_images(c), P = (size_t)c->Ho * c->Wo;
    size_t HW = (size_t)c->H * c->W, K = (size_t)c->C * kk, fl = dx_as_conv(c) ? (size_t)c->O * kk * nb * HW : 0;
    *col = K * nb * P > c->C * nb * HW ? K * nb * P : c->C * nb * HW;
    *buf = K * nb * P > fl ? K * nb * P : fl;
    *out = (size_t)c->O * nb * P;
}

static size_t per_core_floats(const kd_conv *c)
{
    size_t a, b, o;
    per_core_slice(c, &a, &b, &o);
    return a + b + o;
}

static size_t chunk_dcol(const kd_conv *c)
{
    size_t K = (size_t)c->C * c->kh * c->kw, a = K * chunk_images(c) * c->Ho * c->Wo, b = K * c->O;
    return a > b ? a : b;
}

size_t kd_conv_workspace(const kd_conv *c)
{
    if (wino(c))
        return kd_conv_wino_workspace(c);
    if (is_depthwise(c))
        return 0;
    if (direct(c))
        return kd_conv_direct_workspace(c);
    if (per_core(c)) /* per thread a slice; per part dW^T [K,O], db [O]; flipped weights */
        return (size_t)c->nt * per_core_floats(c) + KD_CONV_PARTS * ((size_t)c->O * c->C * c->kh * c->kw + c->O) +
               (size_t)c->O * c->C * c->kh * c->kw;
    if (c->groups == 1) /* col [K, nb*P], dcol (or dW^T [K,O]), the output/gradient [O, nb*P] */
        return chunk_dcol(c) + ((size_t)c->C * c->kh * c->kw + (size_t)c->O) * (size_t)chunk_images(c) * c->Ho * c->Wo;
    /* columns of one image (one group) and their gradient */
    size_t K = (size_t)(c->C / c->groups) * c->kh * c->kw, P = (size_t)c->Ho * c->Wo;
    return 2 * K * P;
}

/* Output rows [r0, r1) of col [cg*kh*kw, (r1-r0)*Wo] (rows ld apart) from
 * channels c0..c0+cg-1 of one image xn [C,H,W]. */
static void im2col_rows(const kd_conv *c, const float *xn, int c0, int cg, int r0, int r1, float *col, size_t ld)
{
    int s = c->stride;
    for (int ci = 0; ci < cg; ci++)
        for (int u = 0; u < c->kh; u++)
            for (int v = 0; v < c->kw; v++) {
                float *row = col + ((size_t)(ci * c->kh + u) * c->kw + v) * ld;
                const float *xc = xn + (size_t)(c0 + ci) * c->H * c->W;
                int lo, hi, off = v - c->pad;
                col_range(c, v, &lo, &hi);
                if (s == 1 && c->Wo == c->W) {
                    /* the row is the plane shifted by (u-pad, v-pad): one copy of
                     * the rows inside, then zeros at the edges */
                    int i0 = c->pad - u > 0 ? c->pad - u : 0, i1 = c->H + c->pad - u;
                    i0 = i0 > r0 ? i0 : r0;
                    i1 = i1 < r1 ? i1 : r1;
                    i1 = i1 > i0 ? i1 : i0;
                    size_t W = (size_t)c->W;
                    memset(row, 0, sizeof(float) * (size_t)(i0 - r0) * W);
                    if (i1 > i0) {
                        const float *src = xc + (long)(i0 - c->pad + u) * (long)W + off;
                        size_t a = off < 0 ? (size_t)-off : 0, n = (size_t)(i1 - i0) * W - a;
                        if (off > 0)
                            n -= (size_t)off;
                        memcpy(row + (size_t)(i0 - r0) * W + a, src + a, sizeof(float) * n);
                        for (int i = i0 - r0; i < i1 - r0; i++) {
                            for (int j = 0; j < lo; j++)
                                row[i * W + j] = 0;
                            for (int j = hi; j < c->Wo; j++)
                                row[i * W + j] = 0;
                        }
                    }
                    memset(row + (size_t)(i1 - r0) * W, 0, sizeof(float) * (size_t)(r1 - i1) * W);
                    continue;
                }
                for (int i = r0; i < r1; i++) {
                    int hi_row = i * s - c->pad + u;
                    float *r = row + (size_t)(i - r0) * c->Wo;
                    if (hi_row < 0 || hi_row >= c->H) {
                        memset(r, 0, sizeof(float) * (size_t)c->Wo);
                        continue;
                    }
                    const float *xr = xc + (size_t)hi_row * c->W + off;
                    for (int j = 0; j < lo; j++)
                        r[j] = 0;
                    if (s == 1)
                        memcpy(r + lo, xr + lo, sizeof(float) * (size_t)(hi - lo));
                    else
                        for (int j = lo; j < hi; j++)
                            r[j] = xr[j * s];
                    for (int j = hi; j < c->Wo; j++)
                        r[j] = 0;
                }
            }
}

static void im2col_ld(const kd_conv *c, const float *xn, int c0, int cg, float *col, size_t ld)
{
    im2col_rows(c, xn, c0, cg, 0, c->Ho, col, ld);
}

/* The band of output rows from r0 (band_rows of them, fewer at the bottom)
 * as col [C*kh*kw, *q]; returns the row after the band. */
static int band_cols(const kd_conv *c, const float *xn, int r0, float *col, int *q)
{
    int r1 = r0 + band_rows(c) < c->Ho ? r0 + band_rows(c) : c->Ho;
    *q = (r1 - r0) * c->Wo;
    im2col_rows(c, xn, 0, c->C, r0, r1, col, (size_t)*q);
    return r1;
}

static void im2col(const kd_conv *c, const float *xn, int c0, int cg, float *col)
{
    im2col_ld(c, xn, c0, cg, col, (size_t)c->Ho * c->Wo);
}

/* dxn += col2im(dcol), the adjoint of im2col (rows ld apart). */
static void col2im_ld(const kd_conv *c, const float *dcol, int c0, int cg, float *dxn, size_t ld)
{
    int s = c->stride;
    for (int ci = 0; ci < cg; ci++)
        for (int u = 0; u < c->kh; u++)
            for (int v = 0; v < c->kw; v++) {
                const float *row = dcol + ((size_t)(ci * c->kh + u) * c->kw + v) * ld;
                float *dc = dxn + (size_t)(c0 + ci) * c->H * c->W;
                int lo, hi, off = v - c->pad;
                col_range(c, v, &lo, &hi);
                for (int i = 0; i < c->Ho; i++) {
                    int hi_row = i * s - c->pad + u;
                    if (hi_row < 0 || hi_row >= c->H)
                        continue;
                    float *dr = dc + (size_t)hi_row * c->W + off;
                    const float *r = row + (size_t)i * c->Wo;
                    if (s == 1)
                        for (int j = lo; j < hi; j++)
                            dr[j] += r[j];
                    else
                        for (int j = lo; j < hi; j++)
                            dr[j * s] += r[j];
                }
            }
}

static void col2im(const kd_conv *c, const float *dcol, int c0, int cg, float *dxn)
{
    col2im_ld(c, dcol, c0, cg, dxn, (size_t)c->Ho * c->Wo);
}

/* Ungrouped convolutions run a few large GEMMs instead of one small GEMM per
 * image: images are taken in chunks of about CHUNK_COLS output pixels, whose
 * columns sit side by side (image i at column offset i*P).  Per-image GEMMs
 * at 28x28 and below spent more time waking BLIS's threads than computing. */
#define CHUNK_COLS 8192
static int chunk_images(const kd_conv *c)
{
    int P = c->Ho * c->Wo, nb = (CHUNK_COLS + P - 1) / P;
    return nb < 1 ? 1 : nb > c->N ? c->N : nb;
}

/* Columns of images n0..n0+m-1 side by side in col [K, m*P]; with one
 * image a 1x1 stride-1 convolution reads the image itself. */
static const float *group_cols(const kd_conv *c, const float *x, int n0, int m, float *col)
{
    size_t P = (size_t)c->Ho * c->Wo, HW = (size_t)c->H * c->W;
    if (m == 1 && is_pointwise(c))
        return x + (size_t)n0 * c->C * HW;
    for (int i = 0; i < m; i++)
        im2col_ld(c, x + (size_t)(n0 + i) * c->C * HW, 0, c->C, col + i * P, m * P);
    return col;
}

static void conv_forward_per_core(const kd_conv *c, const float *x, const float *w, const float *b, float *y,
                                  float *ws)
{
    int K = c->C * c->kh * c->kw, P = c->Ho * c->Wo, nb = group_images(c), ng = (c->N + nb - 1) / nb;
    size_t sa, sb, so;
    per_core_slice(c, &sa, &sb, &so);
    /* dynamic: groups are independent, and a core slowed by another process
     * (augment in the same pipe, a noisy neighbour) then no longer holds the
     * other at the barrier; measured 3-5 % on resnet20 training */
#pragma omp parallel for num_threads(c->nt) schedule(dynamic)
    for (int g = 0; g < ng; g++) {
        float *col = ws + (size_t)omp_get_thread_num() * (sa + sb + so), *out = col + sa + sb;
        int n0 = g * nb, m = c->N - n0 < nb ? c->N - n0 : nb;
        float *yn = y + (size_t)n0 * c->O * P;
        if (m == 1) { /* the GEMM writes the image's output in place, band by band */
            if (b)
                for (int o = 0; o < c->O; o++)
                    for (int q = 0; q < P; q++)
                        yn[(size_t)o * P + q] = b[o];
            if (is_pointwise(c)) {
                kd_gemm_serial(0, 0, c->O, P, K, 1.0f, w, K, x + (size_t)n0 * c->C * P, P, b ? 1.0f : 0.0f, yn, P);
                continue;
            }
            for (int r0 = 0, r1, q; r0 < c->Ho; r0 = r1) {
                r1 = band_cols(c, x + (size_t)n0 * c->C * c->H * c->W, r0, col, &q);
                kd_gemm_serial(0, 0, c->O, q, K, 1.0f, w, K, col, q, b ? 1.0f : 0.0f, yn + (size_t)r0 * c->Wo, P);
            }
            continue;
        }
        const float *cx = group_cols(c, x, n0, m, col);
        kd_gemm_serial(0, 0, c->O, m * P, K, 1.0f, w, K, cx, m * P, 0.0f, out, m * P);
        for (int i = 0; i < m; i++)
            for (int o = 0; o < c->O; o++) {
                float *dst = yn + ((size_t)i * c->O + o) * P, bias = b ? b[o] : 0.0f;
                const float *src = out + (size_t)o * m * P + (size_t)i * P;
                for (int q = 0; q < P; q++)
                    dst[q] = src[q] + bias;
            }
    }
}

/* dx of images n0..n0+m-1 += the group's input gradient gx [C, m*HW]. */
static void group_add(const kd_conv *c, const float *gx, int m, float *dx)
{
    size_t HW = (size_t)c->H * c->W;
    for (int i = 0; i < m; i++)
        for (int ci = 0; ci < c->C; ci++) {
            float *d = dx + ((size_t)i * c->C + ci) * HW;
            const float *src = gx + (size_t)ci * m * HW + (size_t)i * HW;
            for (size_t q = 0; q < HW; q++)
                d[q] += src[q];
        }
}

static void conv_backward_per_core(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx,
                                   float *dw, float *db, float *ws)
{
    int K = c->C * c->kh * c->kw, P = c->Ho * c->Wo, pw = is_pointwise(c), kk = c->kh * c->kw, nb = group_images(c);
    int parts = c->N < KD_CONV_PARTS ? c->N : KD_CONV_PARTS, flip = dx && dx_as_conv(c);
    size_t part = (size_t)c->O * K + c->O, sa, sb, so, HW = (size_t)c->H * c->W;
    per_core_slice(c, &sa, &sb, &so);
    float *sums = ws + (size_t)c->nt * (sa + sb + so), *wt = sums + KD_CONV_PARTS * part;
    kd_conv t;
    if (flip) { /* wt [C, O*kk]: wt[c][o][u][v] = w[o][c][kh-1-u][kw-1-v] */
        flipped_conv(c, &t);
        for (int ci = 0; ci < c->C; ci++)
            for (int o = 0; o < c->O; o++)
                for (int q = 0; q < kk; q++)
                    wt[((size_t)ci * c->O + o) * kk + q] = w[((size_t)o * c->C + ci) * kk + kk - 1 - q];
    }
#pragma omp parallel for num_threads(c->nt) schedule(dynamic)
    for (int p = 0; p < parts; p++) {
        float *col = ws + (size_t)omp_get_thread_num() * (sa + sb + so), *buf = col + sa, *out = buf + sb;
        float *gw = sums + p * part, *gb = gw + (size_t)c->O * K;
        int p0 = (int)((long)p * c->N / parts), p1 = (int)((long)(p + 1) * c->N / parts);
        for (int n0 = p0; n0 < p1; n0 += nb) {
            int m = p1 - n0 < nb ? p1 - n0 : nb, MP = m * P;
            const float *dyt = dy + (size_t)n0 * c->O * P; /* dy of the group as [O, m*P] */
            if (m > 1) {
                for (int i = 0; i < m; i++)
                    for (int o = 0; o < c->O; o++)
                        memcpy(out + (size_t)o * MP + (size_t)i * P, dyt + ((size_t)i * c->O + o) * P,
                               sizeof(float) * (size_t)P);
                dyt = out;
            }
            if (dw && m == 1 && !pw) { /* as above, band by band */
                for (int r0 = 0, r1, q; r0 < c->Ho; r0 = r1) {
                    r1 = band_cols(c, x + (size_t)n0 * c->C * HW, r0, col, &q);
                    kd_gemm_serial(0, 1, K, c->O, q, 1.0f, col, q, dyt + (size_t)r0 * c->Wo, P,
                                   n0 > p0 || r0 > 0 ? 1.0f : 0.0f, gw, c->O);
                }
            } else if (dw) { /* dW^T[K,O] (+)= col[K,mP] . dy[O,mP]^T */
                const float *cx = group_cols(c, x, n0, m, col);
                kd_gemm_serial(0, 1, K, c->O, MP, 1.0f, cx, MP, dyt, MP, n0 > p0 ? 1.0f : 0.0f, gw, c->O);
            }
            if (db)
                for (int o = 0; o < c->O; o++)
                    gb[o] = (n0 > p0 ? gb[o] : 0.0f) + (float)plane_sum(dyt + (size_t)o * MP, MP);
            if (!dx)
                continue;
            float *dxn = dx + (size_t)n0 * c->C * HW;
            int mHW = m * (int)HW;
            if (pw) { /* the images are their own columns */
                kd_gemm_serial(1, 0, K, MP, c->O, 1.0f, w, K, dyt, MP, m == 1 ? 1.0f : 0.0f, m == 1 ? dxn : col, MP);
                if (m > 1)
                    group_add(c, col, m, dxn);
            } else if (flip && m == 1) {
                for (int r0 = 0, r1, q; r0 < t.Ho; r0 = r1) {
                    r1 = band_cols(&t, dy + (size_t)n0 * c->O * P, r0, buf, &q);
                    kd_gemm_serial(0, 0, c->C, q, c->O * kk, 1.0f, wt, c->O * kk, buf, q, 1.0f,
                                   dxn + (size_t)r0 * t.Wo, (int)HW);
                }
            } else if (flip) {
                for (int i = 0; i < m; i++)
                    im2col_ld(&t, dy + (size_t)(n0 + i) * c->O * P, 0, c->O, buf + i * HW, mHW);
                kd_gemm_serial(0, 0, c->C, mHW, c->O * kk, 1.0f, wt, c->O * kk, buf, mHW, m == 1 ? 1.0f : 0.0f,
                               m == 1 ? dxn : col, mHW);
                if (m > 1)
                    group_add(c, col, m, dxn);
            } else {
                kd_gemm_serial(1, 0, K, MP, c->O, 1.0f, w, K, dyt, MP, 0.0f, buf, MP);
                for (int i = 0; i < m; i++)
                    col2im_ld(c, buf + i * P, 0, c->C, dxn + (size_t)i * c->C * HW, MP);
            }
        }
    }
    kd_conv_sum_parts(c, sums, parts, K, 1, dw, db);
}

void kd_conv_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y, float *ws)
{
    if (wino(c)) {
        kd_conv_wino_forward(c, x, w, b, y, ws);
        return;
    }
    if (is_depthwise(c)) {
        kd_conv_dw_forward(c, x, w, b, y);
        return;
    }
    if (direct(c)) {
        kd_conv_direct_forward(c, x, w, b, y, ws);
        return;
    }
    int G = c->groups, cg = c->C / G, og = c->O / G, K = cg * c->kh * c->kw, P = c->Ho * c->Wo;
    if (per_core(c)) {
        conv_forward_per_core(c, x, w, b, y, ws);
        return;
    }
    if (G == 1) {
        int nb = chunk_images(c);
        float *col = ws, *yt = ws + (size_t)K * nb * P;
        for (int n0 = 0; n0 < c->N; n0 += nb) {
            int m = c->N - n0 < nb ? c->N - n0 : nb;
            size_t cols = (size_t)m * P;
#pragma omp parallel for schedule(static)
            for (int i = 0; i < m; i++)
                im2col_ld(c, x + (size_t)(n0 + i) * c->C * c->H * c->W, 0, c->C, col + (size_t)i * P, cols);
            kd_gemm(0, 0, c->O, (int)cols, K, 1.0f, w, K, col, (int)cols, 0.0f, yt, (int)cols);
#pragma omp parallel for schedule(static)
            for (int i = 0; i < m; i++)
                for (int o = 0; o < c->O; o++) {
                    float *dst = y + ((size_t)(n0 + i) * c->O + o) * P;
                    const float *srcp = yt + (size_t)o * cols + (size_t)i * P;
                    float bias = b ? b[o] : 0.0f;
                    for (int q = 0; q < P; q++)
                        dst[q] = srcp[q] + bias;
                }
        }
        return;
    }
    for (int n = 0; n < c->N; n++) {
        const float *xn = x + (size_t)n * c->C * c->H * c->W;
        float *yn = y + (size_t)n * c->O * P;
        for (int g = 0; g < G; g++) {
            const float *col = xn + (size_t)g * cg * c->H * c->W;
            if (!is_pointwise(c)) {
                im2col(c, xn, g * cg, cg, ws);
                col = ws;
            }
            float *yg = yn + (size_t)g * og * P;
            if (b)
                for (int o = 0; o < og; o++)
                    for (int q = 0; q < P; q++)
                        yg[(size_t)o * P + q] = b[g * og + o];
            kd_gemm(0, 0, og, P, K, 1.0f, w + (size_t)g * og * K, K, col, P, b ? 1.0f : 0.0f, yg, P);
        }
    }
}

void kd_conv_backward(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                      float *db, float *ws)
{
    if (wino(c)) {
        kd_conv_wino_backward(c, x, w, dy, dx, dw, db, ws);
        return;
    }
    if (is_depthwise(c)) {
        kd_conv_dw_backward(c, x, w, dy, dx, dw, db);
        return;
    }
    if (direct(c)) {
        kd_conv_direct_backward(c, x, w, dy, dx, dw, db, ws);
        return;
    }
    int G = c->groups, cg = c->C / G, og = c->O / G, K = cg * c->kh * c->kw, P = c->Ho * c->Wo;
    if (per_core(c)) {
        conv_backward_per_core(c, x, w, dy, dx, dw, db, ws);
        return;
    }
    if (G == 1) {
        int nb = chunk_images(c);
        float *col = ws, *dcol = ws + (size_t)K * nb * P, *dyt = dcol + chunk_dcol(c);
        for (int n0 = 0; n0 < c->N; n0 += nb) {
            int m = c->N - n0 < nb ? c->N - n0 : nb;
            size_t cols = (size_t)m * P;
#pragma omp parallel for schedule(static)
            for (int o = 0; o < c->O; o++)
                for (int i = 0; i < m; i++) {
                    const float *srcp = dy + ((size_t)(n0 + i) * c->O + o) * P;
                    memcpy(dyt + (size_t)o * cols + (size_t)i * P, srcp, sizeof(float) * (size_t)P);
                    if (db) {
                        double t = 0;
                        for (int q = 0; q < P; q++)
                            t += srcp[q];
                        db[o] += (float)t;
                    }
                }
            if (dw) {
#pragma omp parallel for schedule(static)
                for (int i = 0; i < m; i++)
                    im2col_ld(c, x + (size_t)(n0 + i) * c->C * c->H * c->W, 0, c->C, col + (size_t)i * P, cols);
                /* dW^T[K,O] = col . dy^T into dcol (free until dx): BLIS runs this
                 * shape about twice as fast as dW = dy . col^T */
                kd_gemm(0, 1, K, c->O, (int)cols, 1.0f, col, (int)cols, dyt, (int)cols, 0.0f, dcol, c->O);
#pragma omp parallel for schedule(static)
                for (int o = 0; o < c->O; o++)
                    for (int k = 0; k < K; k++)
                        dw[(size_t)o * K + k] += dcol[(size_t)k * c->O + o];
            }
            if (dx) {
                kd_gemm(1, 0, K, (int)cols, c->O, 1.0f, w, K, dyt, (int)cols, 0.0f, dcol, (int)cols);
#pragma omp parallel for schedule(static)
                for (int i = 0; i < m; i++)
                    col2im_ld(c, dcol + (size_t)i * P, 0, c->C, dx + (size_t)(n0 + i) * c->C * c->H * c->W, cols);
            }
        }
        return;
    }
    float *col = ws, *dcol = ws ? ws + (size_t)K * P : NULL;
    for (int n = 0; n < c->N; n++) {
        const float *xn = x + (size_t)n * c->C * c->H * c->W;
        const float *dyn = dy + (size_t)n * c->O * P;
        float *dxn = dx ? dx + (size_t)n * c->C * c->H * c->W : NULL;
        if (db)
            for (int o = 0; o < c->O; o++) {
                double t = 0;
                for (int q = 0; q < P; q++)
                    t += dyn[(size_t)o * P + q];
                db[o] += (float)t;
            }
        for (int g = 0; g < G; g++) {
            const float *dyg = dyn + (size_t)g * og * P, *wg = w + (size_t)g * og * K;
            const float *cx = xn + (size_t)g * cg * c->H * c->W;
            int pw = is_pointwise(c);
            if (dw) {
                if (!pw) {
                    im2col(c, xn, g * cg, cg, col);
                    cx = col;
                }
                /* dW[og,K] += dy[og,P] . col[K,P]^T */
                kd_gemm(0, 1, og, K, P, 1.0f, dyg, P, cx, P, 1.0f, dw + (size_t)g * og * K, K);
            }
            if (dxn) {
                if (pw) /* the image is its own column matrix: accumulate straight into dx */
                    kd_gemm(1, 0, K, P, og, 1.0f, wg, K, dyg, P, 1.0f, dxn + (size_t)g * cg * c->H * c->W, P);
                else {
                    kd_gemm(1, 0, K, P, og, 1.0f, wg, K, dyg, P, 0.0f, dcol, P);
                    col2im(c, dcol, g * cg, cg, dxn);
                }
            }
        }
    }
}
