/* kd_layers — forward/backward pairs over plain float arrays (NCHW).
 *
 * CONTRACT between the layer kernels and the architectures built on them.
 * Conventions:
 *  - every backward ACCUMULATES (+=) into dx and into parameter gradients;
 *    any gradient pointer may be NULL when it is not wanted;
 *  - no function allocates: scratch comes from a caller's workspace whose
 *    size the matching *_workspace() function gives (in floats);
 *  - convolution, batch norm and linear have a *_ref twin (naive loops,
 *    double accumulation; lib/nn/kd_layers_ref.c) that the unit tests
 *    compare the optimised kernels against, value and gradient; the other
 *    kernels (activations, pools, scale, add, dropout) are themselves such
 *    plain loops, tested against finite differences, closed forms and
 *    PyTorch's outputs (dropout: its statistics);
 *  - matrix products go through kd_gemm (lib/kd_gemm.h) only. */
#ifndef KD_LAYERS_H
#define KD_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "kd_rng.h"

/* ---- conv2d: x [N,C,H,W] -> y [N,O,Ho,Wo]; w [O, C/groups, kh, kw]; b [O] or NULL.
 * groups == C == O is depthwise (direct loops); 1x1 stride 1 pad 0 needs no
 * im2col; the paths are described in lib/nn/kd_conv.c. */
typedef struct {
    int N, C, H, W;
    int O, kh, kw, stride, pad, groups;
    int Ho, Wo; /* filled by kd_conv_init */
    int nt;     /* OpenMP threads at init: the workspace holds one slice per thread */
    /* The kernel and Winograd tile, fixed by kd_conv_init (the rule,
     * KDPIPE_CONV and kd_conv_wino_force as they are then): the workspace is
     * sized for them, so a later change of mode cannot reach this layer. */
    int path, wm;
} kd_conv;

/* Fills Ho/Wo; -1 with kd_err on inconsistent shapes. */
int kd_conv_init(kd_conv *c, int N, int C, int H, int W, int O, int k, int stride, int pad, int groups);
size_t kd_conv_workspace(const kd_conv *c);
void kd_conv_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y, float *ws);
void kd_conv_backward(const kd_conv *c, const float *x, const float *w, const float *dy,
                      float *dx, float *dw, float *db, float *ws);
void kd_conv_forward_ref(const kd_conv *c, const float *x, const float *w, const float *b, float *y);
void kd_conv_backward_ref(const kd_conv *c, const float *x, const float *w, const float *dy,
                          float *dx, float *dw, float *db);

/* ---- batch norm over [N,C,HW] (BatchNorm2d with HW = H*W, BatchNorm1d with HW = 1).
 * Training: batch statistics (biased var to normalise), running stats updated
 * as PyTorch does: run = (1-momentum)*run + momentum*stat with the unbiased
 * variance.  group > 0: statistics per consecutive group of `group` images
 * (N % group == 0), saved mean/rstd then have [N/group, C] entries, and the
 * running stats are updated with the mean of the groups' statistics.
 * mean/rstd are saved for backward. */
void kd_bn_forward_train(int N, int C, int HW, int group, const float *x,
                         const float *gamma, const float *beta, float *y,
                         float *mean, float *rstd, float *run_mean, float *run_var,
                         float momentum, float eps);
void kd_bn_forward_eval(int N, int C, int HW, const float *x, const float *gamma,
                        const float *beta, const float *run_mean, const float *run_var,
                        float eps, float *y);
void kd_bn_backward(int N, int C, int HW, int group, const float *x, const float *mean,
                    const float *rstd, const float *gamma, const float *dy,
                    float *dx, float *dgamma, float *dbeta);
/* Synchronised batch norm (data parallelism, kd_dist.h): the statistics of
 * the whole batch of every replica, whose part here is x [N,C,HW].
 * sum(v, n) replaces v[0..n) by its sum over the replicas (identity: one
 * replica, the same as group 0 above); work holds 2*C+1 doubles.  dy on
 * each replica is the gradient of its own mean loss, so dx and the local
 * dgamma/dbeta are those of the mean over replicas times their number, as
 * the trainer's averaging of the gradients expects.  -1 when sum fails. */
typedef int (*kd_bn_sum_fn)(double *v, size_t n);
int kd_bn_forward_train_sync(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x,
                             const float *gamma, const float *beta, float *y, float *mean, float *rstd,
                             float *run_mean, float *run_var, float momentum, float eps);
int kd_bn_backward_sync(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x, const float *mean,
                        const float *rstd, const float *gamma, const float *dy, float *dx, float *dgamma,
                        float *dbeta);
void kd_bn_forward_train_ref(int N, int C, int HW, int group, const float *x,
                             const float *gamma, const float *beta, float *y,
                             float *mean, float *rstd, float *run_mean, float *run_var,
                             float momentum, float eps);
void kd_bn_backward_ref(int N, int C, int HW, int group, const float *x, const float *mean,
                        const float *rstd, const float *gamma, const float *dy,
                        float *dx, float *dgamma, float *dbeta);

/* ---- element-wise activations, in place allowed (y == x) for forward.
 * Backward gets the forward input x (and output y) and dy. */
typedef enum { KD_RELU, KD_RELU6, KD_SILU, KD_HSWISH, KD_HSIGMOID, KD_SIGMOID, KD_IDENTITY } kd_act;
void kd_act_forward(kd_act a, const float *x, float *y, size_t n);
void kd_act_backward(kd_act a, const float *x, const float *y, const float *dy, float *dx, size_t n);

/* ---- batch norm fused with what follows it (kd_bn.c): y = act(bn(x) + res),
 * act KD_IDENTITY, KD_RELU or KD_RELU6, res [N,C,HW] or NULL; the same
 * float operations in the same order as bn, kd_add_forward and
 * kd_act_forward one after the other, so the results are those bits.
 * Backward takes dy, the gradient of the fused output y, and OVERWRITES it
 * with the gradient of the batch norm's output (0 + act'(y) dy, as the
 * unfused ReLU backward leaves it in a zeroed buffer); dres (+)= that.
 * fresh_dx / fresh_dres: the buffer holds no contribution yet, so it is
 * written (as 0 + v, the bits zero-then-accumulate gives) instead of read:
 * one pass over memory fewer.  NULL epilogue: the plain batch norm. */
typedef struct {
    kd_act act;
    const float *res; /* forward: added before act, or NULL */
    const float *y;   /* backward: the fused output, act's mask */
    float *dres;      /* backward: gradient of res, or NULL */
    int fresh_dx, fresh_dres;
} kd_bn_epi;
void kd_bn_forward_train_fused(int N, int C, int HW, int group, const float *x, const float *gamma,
                               const float *beta, const kd_bn_epi *e, float *y, float *mean, float *rstd,
                               float *run_mean, float *run_var, float momentum, float eps);
void kd_bn_forward_eval_fused(int N, int C, int HW, const float *x, const float *gamma, const float *beta,
                              const float *run_mean, const float *run_var, float eps, const kd_bn_epi *e, float *y);
void kd_bn_backward_fused(int N, int C, int HW, int group, const float *x, const float *mean, const float *rstd,
                          const float *gamma, const kd_bn_epi *e, float *dy, float *dx, float *dgamma,
                          float *dbeta);
int kd_bn_forward_train_sync_fused(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x,
                                   const float *gamma, const float *beta, const kd_bn_epi *e, float *y, float *mean,
                                   float *rstd, float *run_mean, float *run_var, float momentum, float eps);
int kd_bn_backward_sync_fused(kd_bn_sum_fn sum, double *work, int N, int C, int HW, const float *x,
                              const float *mean, const float *rstd, const float *gamma, const kd_bn_epi *e,
                              float *dy, float *dx, float *dgamma, float *dbeta);
/* y = act(a + b) in one pass (a folded BN's residual add and ReLU). */
void kd_add_act_forward(const float *a, const float *b, kd_act act, float *y, size_t n);

/* ---- pooling over [N,C,H,W].
 * max pool: PyTorch semantics (padding with -inf, floor mode); idx saves argmax. */
typedef struct {
    int N, C, H, W, k, stride, pad;
    int Ho, Wo;
} kd_pool;
int kd_pool_init(kd_pool *p, int N, int C, int H, int W, int k, int stride, int pad);
void kd_maxpool_forward(const kd_pool *p, const float *x, float *y, int32_t *idx);
void kd_maxpool_backward(const kd_pool *p, const int32_t *idx, const float *dy, float *dx);
/* avg pool with count_include_pad=True (PyTorch default); no engine op uses
 * it (there is no average-pool node), only the unit tests. */
void kd_avgpool_forward(const kd_pool *p, const float *x, float *y);
void kd_avgpool_backward(const kd_pool *p, const float *dy, float *dx);
/* adaptive average pool to oh x ow, PyTorch's bin edges
 * (start = floor(i*H/oh), end = ceil((i+1)*H/oh)); 1x1 is global pooling. */
void kd_adaptive_avgpool_forward(int N, int C, int H, int W, int oh, int ow, const float *x, float *y);
void kd_adaptive_avgpool_backward(int N, int C, int H, int W, int oh, int ow, const float *dy, float *dx);

/* ---- linear: x [N,I] -> y [N,O] = x W^T + b; W [O,I] (PyTorch layout), b [O] or NULL. */
void kd_linear_forward(int N, int I, int O, const float *x, const float *W, const float *b, float *y);
void kd_linear_backward(int N, int I, int O, const float *x, const float *W, const float *dy,
                        float *dx, float *dW, float *db);
void kd_linear_forward_ref(int N, int I, int O, const float *x, const float *W, const float *b, float *y);
void kd_linear_backward_ref(int N, int I, int O, const float *x, const float *W, const float *dy,
                            float *dx, float *dW, float *db);

/* ---- channel scaling (squeeze-excite's last step): y[n,c,:] = x[n,c,:] * s[n,c]. */
void kd_scale_forward(int N, int C, int HW, const float *x, const float *s, float *y);
void kd_scale_backward(int N, int C, int HW, const float *x, const float *s, const float *dy,
                       float *dx, float *ds);

/* ---- residual add y = a + b; backward adds dy to da and db (either NULL). */
void kd_add_forward(const float *a, const float *b, float *y, size_t n);
void kd_add_backward(const float *dy, float *da, float *db, size_t n);

/* ---- dropout (inverted, like PyTorch): train keeps with prob 1-p and scales
 * by 1/(1-p); mask saves the kept scale (0 or 1/(1-p)); eval is identity. */
void kd_dropout_forward(const float *x, float *y, float *mask, size_t n, float p, kd_rng *rng);
void kd_dropout_backward(const float *mask, const float *dy, float *dx, size_t n);

/* ---- bilinear resize of P planes [P,hi,wi] -> [P,ho,wo] with
 * align_corners=False and no antialiasing, as F.interpolate(mode="bilinear")
 * (lib/nn/kd_resize.c).  Backward is its adjoint: dy [P,ho,wo] scattered
 * into dx [P,hi,wi], ACCUMULATED. */
void kd_resize_forward(const float *x, int P, int hi, int wi, float *y, int ho, int wo);
void kd_resize_backward(const float *dy, int P, int hi, int wi, float *dx, int ho, int wo);
/* One output coordinate d of a side of `in` source pixels at scale in/out,
 * in float as ATen computes it: src = scale*(d+0.5)-0.5 clamped to >= 0;
 * taps i0 (weight l0) and i0 + step (weight l1), step 0 at the last pixel.
 * Shared with the augmentations' resized crop (lib/aug/kd_aug.c). */
void kd_bilinear_tap(float scale, int d, int in, int *i0, int *step, float *l0, float *l1);

#endif
