/* kd_layers_impl — internals shared by the layer kernel files of lib/nn
 * (kd_conv.c, kd_conv_dw.c, kd_conv_wino.c, kd_bn.c); private, not installed. */
#ifndef KD_LAYERS_IMPL_H
#define KD_LAYERS_IMPL_H

#include "kd_layers.h"

/* Plane sums (batch norm, bias gradients) in double, whose precision the
 * batch-norm gradient (a difference of such sums) needs; omp simd lets the
 * compiler split them into vector lanes at every optimisation level. */
static inline double plane_sum(const float *x, int n)
{
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++)
        s += x[i];
    return s;
}

/* Output columns j whose input column j*s - p + v lies inside [0, W): the
 * inner loops then run branch-free over [*lo, *hi) and vectorise. */
static inline void col_range(const kd_conv *c, int v, int *lo, int *hi)
{
    int s = c->stride, off = v - c->pad, a = off >= 0 ? 0 : (-off + s - 1) / s;
    int b = c->W - 1 - off < 0 ? 0 : (c->W - 1 - off) / s + 1;
    *lo = a;
    *hi = b < c->Wo ? b : c->Wo;
    if (*hi < *lo)
        *hi = *lo;
}

/* Depthwise convolution (groups == C == O, kernel up to 8x8: kd_conv.c
 * decides), by direct loops without workspace (kd_conv_dw.c). */
void kd_conv_dw_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y);
void kd_conv_dw_backward(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                         float *db);

/* Weight gradients are summed over this many fixed image ranges, then over
 * the ranges in order: the bits do not depend on the thread count. */
#define KD_CONV_PARTS 8

/* The kernel a layer takes (kd_conv_path.c: the measured rule, KDPIPE_CONV)
 * and the parts' final sum into dw (as [O][K], or from dW^T [K][O]) and db. */
enum { KD_CONV_GEMM, KD_CONV_DIRECT, KD_CONV_WINO };
int kd_conv_path(const kd_conv *c);
void kd_conv_sum_parts(const kd_conv *c, const float *sums, int parts, size_t K, int transposed, float *dw,
                       float *db);

/* Direct 3x3 stride-1 pad-1 convolution of narrow layers, without im2col
 * (kd_conv_direct.c; kd_conv.c decides which layers take it). */
int kd_conv_direct_applies(const kd_conv *c);
size_t kd_conv_direct_workspace(const kd_conv *c);
void kd_conv_direct_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y, float *ws);
void kd_conv_direct_backward(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                             float *db, float *ws);

/* Winograd 3x3 stride-1 pad-1 convolution (kd_conv_wino.c): the shapes it
 * can take (kd_conv_wino_applies: ungrouped, >= 32 channels, planes >= 4x4,
 * not in gemm mode; kd_conv.c's rule decides whether it does), its
 * workspace and passes; the direct loops of kd_conv_*_ref are its
 * reference.  kd_conv_wino_force sets the mode as KDPIPE_CONV would (0 the
 * rule, 1 im2col + GEMM, 2 / 4 F(2x2,3x3) / F(4x4,3x3) wherever eligible;
 * -1 back to KDPIPE_CONV), for tests and benchmarks: it applies to the
 * layers initialised after it (kd_conv_init fixes path and tile);
 * kd_conv_wino_mode reads it. */
int kd_conv_wino_applies(const kd_conv *c);
/* The output tile (2 or 4) Winograd would use for c under the current mode,
 * 0 where it cannot run; kd_conv_init stores it in c->wm. */
int kd_conv_wino_tile(const kd_conv *c);
void kd_conv_wino_force(int mode);
int kd_conv_wino_mode(void);
size_t kd_conv_wino_workspace(const kd_conv *c);
void kd_conv_wino_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y, float *ws);
void kd_conv_wino_backward(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                           float *db, float *ws);

#endif
