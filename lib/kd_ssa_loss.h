/* kd_ssa_loss — the dense term of SSA, sparse spatial aggregation
 * contrastive distillation (METHODS.md "SSA"; our design, from a paper
 * without published method text), over plain arrays so that the loss module
 * (lib/loss/kd_loss_ssa.c) and the unit test share one implementation.
 *
 * The student's stage map F [n,C,hs,ws] and the teacher's map T [n,D,ht,wt]
 * of the SAME view (position i of one is position i of the other):
 *   A = BN(conv1x1(F)) [n,D,hs,ws], the aligner (kd_aligner.h);
 *   the compared grid is h = max(hs,ht), w = max(ws,wt): a map of another
 *   size is resized to it bilinearly (align_corners=False), the student's
 *   after the aligner, with gradient;
 *   y_i = kd_ssa aggregation of A at i (k, gamma; it normalises s_i = n(A_i)
 *   itself), t_i = n(T_i) (over channels);
 *   negatives of image b: p_b' = n(mean over positions of T_b') for the
 *   OTHER images b' != b of the batch (at the teacher's own resolution), or
 *   the Q rows of a queue of such embeddings from earlier batches;
 *   L = 1/(n h w) sum_{b,i} -log softmax([y_bi.t_bi, y_bi.neg_1, ...]/tau)[0].
 * The global DisCo term is another loss (disco); this is the dense one. */
#ifndef KD_SSA_LOSS_H
#define KD_SSA_LOSS_H

#include <stdint.h>

#include "kd_aligner.h"
#include "kd_ssa.h"

typedef struct {
    int maxB, C, hs, ws, D, ht, wt, h, w; /* student map, teacher map, compared grid */
    int Q;                                /* queue rows, 0: in-batch negatives */
    float tau;
    kd_aligner al;
    kd_ssa ssa;
    float *sx, *dsx;      /* [maxB,D,h,w] the student resized and its gradient (NULL: no resize) */
    float *tx;            /* [maxB,D,h,w] the teacher resized (NULL: no resize) */
    float *y, *dy, *tn;   /* [maxB,D,h,w] aggregated student, its gradient, n(teacher) */
    int32_t *idx;         /* kd_ssa's saved state */
    float *kw, *norms, *kws; /* kept weights, norms, workspace */
    float *tnorm;         /* [h*w] */
    float *pool, *pnorm;  /* [maxB,D] normalised pooled teacher maps (the queue's next rows), [maxB] */
    float *lg;            /* [max(maxB,Q), h*w] logits of one image */
} kd_ssa_loss;

/* Sizes everything for up to maxB images; -1 with kd_err on a bad size,
 * k < 1, gamma or tau not > 0, Q < 0, or no memory. */
int kd_ssa_loss_init(kd_ssa_loss *L, int maxB, int C, int hs, int ws, int D, int ht, int wt, int k, float gamma,
                     float tau, int Q);
void kd_ssa_loss_free(kd_ssa_loss *L);

/* One step on n <= maxB images: returns L and leaves the batch's pooled
 * teacher embeddings in L->pool; queue [Q,D] normalised (ignored when Q is
 * 0).  With dF not NULL adds weight * dL/dF into dF [n,C,hs,ws] and
 * weight * dL/d(aligner parameter) into p's gradients.  No allocation. */
double kd_ssa_loss_step(kd_ssa_loss *L, int n, const float *F, const kd_aligner_p *p, const float *T,
                        const float *queue, float weight, float *dF);

#endif
