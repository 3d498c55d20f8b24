/* kd_loss — the registry of training losses of distill-step.
 *
 * A loss module sees each batch through kd_loss_batch: the frame, the
 * student's outputs on view0 after its training-mode forward, and gradient
 * buffers (zeroed by the trainer) into which it ADDS weight * dL/d(output).
 * The trainer then runs one backward and one optimiser step.  Hooks:
 *   init    parse options, allocate state (never during a step)
 *   pre     before the student's forward (MoCo: momentum update, keys)
 *   compute loss value and gradients
 *   post    after the optimiser step (MoCo: enqueue the keys)
 *   save/load  state into/from a checkpoint, under the group name
 * Adding a loss (DisCo, SEED, KD, CRD, MSD, SSA): write its kd_loss_module
 * in a file of its own and list it in kd_loss_modules[] (lib/kd_loss.c). */
#ifndef KD_LOSS_H
#define KD_LOSS_H

#include <stdint.h>

#include "kd_h5.h"
#include "kd_model.h"
#include "kd_tensor.h"

typedef struct {
    int queue;          /* MoCo queue length K */
    float tau;          /* temperature */
    float moco_m;       /* key encoder momentum */
    int bn_group;       /* shuffle-BN group for the keys (0: whole batch) */
    uint64_t seed;
    int max_batch, h, w;
} kd_loss_opts;

typedef struct {
    kd_frame *frame;
    const float *view0, *view1; /* [n,C,H,W]; view1 may be NULL */
    const int32_t *label;       /* [n] or NULL */
    int n;
    long step;
    kd_model *student;
    const float *feat, *logits, *emb;  /* student outputs on view0 */
    float *d_feat, *d_logits, *d_emb;  /* accumulate here */
} kd_loss_batch;

typedef struct {
    const char *name;
    const char *needs; /* human-readable: what the frame and model must have */
    void *(*init)(kd_model *student, const kd_loss_opts *o);
    int (*pre)(void *st, kd_loss_batch *b);
    int (*compute)(void *st, kd_loss_batch *b, float weight, double *loss);
    int (*post)(void *st, kd_loss_batch *b);
    int (*save)(void *st, kd_h5 *h, const char *group);
    int (*load)(void *st, const kd_h5 *h, const char *group);
    void (*free)(void *st);
} kd_loss_module;

extern const kd_loss_module *const kd_loss_modules[];
const kd_loss_module *kd_loss_find(const char *name);

/* Softmax cross-entropy of logits [n,K] against targets; adds
 * weight/n * (softmax - onehot) into d (may be NULL); returns the mean loss. */
double kd_softmax_ce(const float *logits, const int32_t *y, int n, int K, float weight, float *d);

/* y = x / max(|x|, 1e-12) per row, and its backward: dx += (dy - y (y.dy)) / |x|. */
void kd_l2norm_forward(const float *x, float *y, float *norm, int n, int d);
void kd_l2norm_backward(const float *y, const float *norm, const float *dy, float *dx, int n, int d);

/* MoCo's InfoNCE over [q.k, q.queue]/tau with target 0: q_raw [n,E] before
 * L2 normalisation, k [n,E] and queue [K,E] normalised.  Returns the mean
 * loss; adds weight * dL/dq_raw into dq_raw (NULL: loss only).  Scratch:
 * qn [n,E], qnorm [n], lg [n,1+K], dqn [n,E]. */
double kd_infonce_queue(const float *q_raw, const float *k, const float *queue, int n, int E, int K, float tau,
                        float weight, float *dq_raw, float *qn, float *qnorm, float *lg, float *dqn);

#endif
