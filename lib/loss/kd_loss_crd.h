/* kd_loss_crd — private to lib/loss: the state and mathematics of CRD
 * (Tian et al. 2020, RepDistiller's crd/; METHODS.md "Supervised
 * distillation"), apart from the module (kd_loss_crd.c) so that
 * tests/unit/test_crd.c can drive one step with negatives and a normaliser
 * of its choosing and compare it with PyTorch.
 *
 * Two embedding heads v_s = n(W_s f_s + b_s), v_t = n(W_t f_t + b_t) and two
 * memory banks of past embeddings, M_s (student) and M_t (teacher), [N,E].
 * For sample i with dataset row r_0 = idx[i] and negatives r_1..r_K:
 *     P^s_ij = exp(M_t[r_j] . v_s_i / tau) / Z_s   (student anchor)
 *     P^t_ij = exp(M_s[r_j] . v_t_i / tau) / Z_t   (teacher anchor)
 * with Z = mean_ij exp(...) * N fixed on the first batch, then constant;
 * per side, with c = K/N:
 *     L = -1/B sum_i [ log(P_i0 / (P_i0 + c + 1e-7))
 *                      + sum_{j>=1} log(c / (P_ij + c + 1e-7)) ]
 * and L_crd = L^s + L^t.  After the step each bank's row idx[i] becomes
 * n(m M[idx[i]] + (1 - m) v_i), m the momentum. */
#ifndef KD_LOSS_CRD_H
#define KD_LOSS_CRD_H

#include <stdint.h>

#include "kd_h5.h"
#include "kd_slab.h"

typedef struct {
    int ds, dt, E, N, K, B;
    float tau, mom;
    double Z[2];             /* Z_s, Z_t; < 0: set on the next batch */
    kd_slab heads;           /* embed_s.linear.{weight [E,ds], bias [E]}, embed_t.linear.{weight [E,dt], bias [E]} */
    float *Ws, *bs, *Wt, *bt; /* views of heads.p */
    float *gWs, *gbs, *gWt, *gbt; /* views of heads.g */
    float *bank_s, *bank_t;  /* [N,E] */
    /* one batch, kept from the step for the bank update */
    float *hs, *ht, *vs, *vt, *ns, *nt; /* [B,E] before/after normalisation, norms [B] */
    float *dvs, *dvt, *dhs, *dht;       /* [B,E] */
    float *upd;                         /* [B,E] rows of the update */
    double *P;                          /* [B,K+1] */
    int n;                              /* rows of the kept batch, 0: none */
} kd_crd;

/* Heads initialised as PyTorch's nn.Linear (U(+-1/sqrt(fan_in)) for weight
 * and bias), banks as RepDistiller's (U(+-1/sqrt(E/3))), from seed; Z
 * unset.  -1 with kd_err when out of memory. */
int kd_crd_init(kd_crd *c, int ds, int dt, int E, int N, int K, int B, float tau, float mom, uint64_t seed);
void kd_crd_free(kd_crd *c);

/* One batch: f_s [n,ds] (student), f_t [n,dt] (teacher), rows idx [n] and
 * negatives neg [n,K] in [0,N).  Sets Z if unset, returns L_crd, adds
 * weight * dL/d f_s into d_fs and weight * dL/d(head parameters) into
 * heads.g, and keeps the batch's embeddings for kd_crd_update. */
double kd_crd_step(kd_crd *c, const float *fs, const float *ft, const int64_t *idx, const int64_t *neg, int n,
                   float weight, float *d_fs);
/* The momentum update of both banks at the kept batch's rows idx [n]. */
void kd_crd_update(kd_crd *c, const int64_t *idx);

/* The negative sampler: every dataset row's class, the rows grouped by
 * class.  init returns the fewest rows of other classes any class has (the
 * usable negatives; 0 with a single class), or -1 with kd_err. */
typedef struct {
    int N, nclasses;
    const int32_t *label; /* [N], the caller's */
    int64_t *order;       /* [N] rows grouped by class */
    int64_t *off, *cnt;   /* [nclasses] each class's slice of order */
} kd_crd_classes;

int64_t kd_crd_classes_init(kd_crd_classes *s, const int32_t *label, int N, int *rarest);
void kd_crd_classes_free(kd_crd_classes *s);
/* For each of the n rows idx, K rows of other classes, uniform with
 * replacement (RepDistiller's sampler), into neg [n,K]; a counter-based
 * stream keyed by (seed, step): no state to checkpoint beyond the step. */
void kd_crd_sample(const kd_crd_classes *s, uint64_t seed, long step, const int64_t *idx, int n, int K,
                   int64_t *neg);

/* GROUP/bank_s, GROUP/bank_t f32 [N,E], attributes z_s, z_t on bank_s. */
int kd_crd_save(const kd_crd *c, kd_h5 *h, const char *group);
int kd_crd_load(kd_crd *c, const kd_h5 *h, const char *group);

#endif
