/* kd_aligner — a loss's own 1x1 conv (no bias) + batch norm (batch
 * statistics) taking a student map [n,C,h,w] to another width [n,D,h,w]:
 * the feature aligner of msd (msd-space feat) and ssa, trained with the
 * student and dropped after training (never in the deployed model).
 * Parameters live in the loss's kd_slab as aligner.0.weight [D,C,1,1],
 * aligner.1.weight [D] and aligner.1.bias [D] (PyTorch's names for an
 * nn.Sequential(Conv2d, BatchNorm2d)); the running statistics are kept, as
 * BatchNorm2d's, but nothing reads them. */
#ifndef KD_ALIGNER_H
#define KD_ALIGNER_H

#include <stdint.h>

#include "kd_layers.h"
#include "kd_slab.h"

/* The parameters the step reads and the gradients it adds to (a gradient
 * NULL: not wanted). */
typedef struct {
    const float *w, *g, *b; /* [D,C], [D], [D] */
    float *dw, *dg, *db;
} kd_aligner_p;

typedef struct {
    int maxB, C, D, h, w;
    kd_conv conv;
    float *ws;
    float *ya, *y, *dya, *dy;  /* [maxB,D,h,w]: conv out, BN out, their gradients */
    float *mean, *rstd, *run_mean, *run_var; /* [D] */
} kd_aligner;

/* Sizes it for up to maxB maps; -1 with kd_err (bad size, no memory). */
int kd_aligner_init(kd_aligner *a, int maxB, int C, int h, int w, int D);
void kd_aligner_free(kd_aligner *a);

/* The three views in own (kd_slab_init), PyTorch's initialisation: conv
 * kaiming normal (fan_out, from the rng (seed, stream)), BN weight 1, bias 0. */
int kd_aligner_slab(kd_slab *own, int C, int D, uint64_t seed, uint64_t stream);
/* Pointers into own's parameters and gradients. */
kd_aligner_p kd_aligner_bind(kd_slab *own);

/* a->y = BN(conv(F)) for n <= maxB maps; returns a->y.  No allocation. */
const float *kd_aligner_forward(kd_aligner *a, int n, const float *F, const kd_aligner_p *p);
/* The caller has put dL/d(a->y) in a->dy; adds dL/dF into dF [n,C,h,w]
 * (NULL: none) and the parameters' gradients into p's. */
void kd_aligner_backward(kd_aligner *a, int n, const float *F, const kd_aligner_p *p, float *dF);

#endif
