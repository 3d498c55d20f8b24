/* kd_msd — the student side and the two contrasts of MSD, multi-scale
 * decoupled contrastive distillation (METHODS.md, "MSD"; our reading of a
 * paper without published code), over plain arrays so that the loss module
 * (lib/loss/kd_loss_msd.c) and the unit test share one implementation.
 *
 * From the student's last-stage map F [n,C,h,w]:
 *   space logits: P = pool_r(F) [n,R,C] (kd_regions), z_s = P W^T + b [n,R,K];
 *   space feat:   z_s = pool_r(A(F)) [n,R,D], A a 1x1 conv (no bias) + batch
 *                 norm (batch statistics) from C to D channels when the
 *                 widths differ, none when they are equal.
 * u = n(z_s), v = n(z_t), z_t [n,R,D] the teacher's (t.msd0), w [n,R] the
 * teacher's category weights (t.msdw0), tau the temperature:
 *   L_sam = -1/(nR) sum_{b,r} w_br log softmax_{b'}(u_br.v_b'r/tau)[b]
 *   L_fea = -1/(n Rf) sum_b sum_{r in a scale of more than one region}
 *           w_br log softmax_{r' of r's scale}(u_br.v_br'/tau)[r]
 * with Rf the number of those regions (20 for scales 1,2,4). */
#ifndef KD_MSD_H
#define KD_MSD_H

#include "kd_aligner.h"
#include "kd_regions.h"

enum { KD_MSD_LOGITS, KD_MSD_FEAT };

/* The trainable tensors the step reads and the gradients it adds to
 * (any gradient NULL: not wanted).  logits: the classifier W [K,C], b [K]
 * or NULL.  feat with an aligner: aw [D,C,1,1], ag and ab [D] (BN). */
typedef struct {
    const float *W, *b;
    float *dW, *db;
    const float *aw, *ag, *ab;
    float *daw, *dag, *dab;
} kd_msd_params;

typedef struct {
    kd_regions rg;
    int space, align;    /* align: feat space with C != D */
    int maxB, C, h, w;   /* the student's map */
    int R, Rf, D;        /* regions, those of multi-region scales, compared width */
    float tau;
    double sam, fea;     /* the last step's two terms */
    int *first, *count;  /* [R]: the span of each region's scale */
    kd_aligner al;       /* when align */
    float *pool, *z, *u, *unorm, *v, *vnorm, *du, *dz, *dpool;          /* [maxB,R,*], [maxB*R] */
    double *p;                                                           /* [max(maxB, R)] */
} kd_msd;

/* Sizes everything for up to maxB images; D is the teacher's width (K in
 * logits space; the classifier must then have K outputs).  -1 with kd_err
 * on bad sizes or no memory. */
int kd_msd_init(kd_msd *m, const kd_regions *rg, int space, int maxB, int C, int h, int w, int D, float tau);
void kd_msd_free(kd_msd *m);

/* One step on n <= maxB images: returns L_sam + L_fea (m->sam, m->fea the
 * parts); with dF not NULL adds weight * dL/dF into dF [n,C,h,w] and
 * weight * dL/d(parameter) into the gradients p gives.  No allocation. */
double kd_msd_step(kd_msd *m, int n, const float *F, const kd_msd_params *p, const float *zt, const float *wt,
                   float weight, float *dF);

#endif
