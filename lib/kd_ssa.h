/* kd_ssa — sparse spatial aggregation of a map (METHODS.md "SSA": PixPro's
 * propagation made sparse), a forward/backward pair over float arrays.
 *
 * x [B,C,h,w] -> y [B,C,h,w].  Per image, with n = h*w positions and
 * s_i = x[:,i] / max(|x[:,i]|, 1e-12) (over channels):
 *   G_ij = s_i.s_j;  kept(i) = {i} and the k-1 other j of largest G_ij
 *   (ties to the lower j: the j = i term is always kept, even when other
 *   positions are as similar);  A_ij = max(G_ij, 0)^gamma for j in kept(i);
 *   y_i = n(sum_j A_ij s_j / sum_j A_ij), n(v) = v / max(|v|, 1e-12).
 * Dividing by sum_j A_ij does not change a normalised vector: the kernels
 * compute n(sum_j A_ij s_j), which is the same number (the tests compare
 * with the formula as written).  A position whose kept weights are all 0
 * (a zero feature) gets y_i = 0.  The selection is a constant of the
 * backward, as torch.topk's indices are.
 *
 * The forward saves O(n*k) per image for the backward: the kept indices and
 * weights, and the two norms per position.  Neither allocates: scratch is a
 * caller's workspace of kd_ssa_workspace() floats (O(n*C + n*n), one image
 * at a time).  The *_ref twins are the naive loops in double (they allocate;
 * tests only) that tests/unit/test_ssa.c checks the kernels against, and
 * both against PyTorch (tests/gen/ssa.py). */
#ifndef KD_SSA_H
#define KD_SSA_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int B, C, h, w;
    int k;       /* kept per position, clipped to h*w */
    float gamma; /* exponent of the weights */
} kd_ssa;

/* -1 with kd_err on a non-positive size, k < 1 or gamma not > 0. */
int kd_ssa_init(kd_ssa *s, int B, int C, int h, int w, int k, float gamma);
size_t kd_ssa_workspace(const kd_ssa *s);

/* Saved state: idx [B,n,k] and wt [B,n,k] (position i's kept j, the j = i
 * term first, then by decreasing similarity; their weights A_ij), norms
 * [B,2,n] (|x_i| clamped, then |sum_j A_ij s_j| clamped). */
void kd_ssa_forward(const kd_ssa *s, const float *x, float *y, int32_t *idx, float *wt, float *norms, float *ws);
/* dy [B,C,h,w] -> dx, ACCUMULATED; x, y and the saved state of the forward. */
void kd_ssa_backward(const kd_ssa *s, const float *x, const float *y, const int32_t *idx, const float *wt,
                     const float *norms, const float *dy, float *dx, float *ws);

/* Naive references: the same results from x alone.  -1 with kd_err when
 * out of memory. */
int kd_ssa_forward_ref(const kd_ssa *s, const float *x, float *y);
int kd_ssa_backward_ref(const kd_ssa *s, const float *x, const float *dy, float *dx);

#endif
