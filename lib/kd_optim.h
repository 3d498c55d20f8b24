/* kd_optim — SGD with momentum over a model's parameter slab, as PyTorch's
 * torch.optim.SGD (dampening 0): d = g + wd*p; buf = m*buf + d;
 * d = nesterov ? d + m*buf : buf; p -= lr*d.  Weight decay may skip the
 * views flagged no_decay (BN weights and biases, all biases).  The momentum
 * buffer is one slab parallel to the parameters.
 *
 * LARS (lars_eta > 0; You et al. 2017, as MoCo v3 and BYOL use it): before
 * the momentum, each weight tensor's d is scaled by the trust ratio
 * eta*|p|/|d| (1 where either norm is 0); BN parameters and biases keep
 * ratio 1, so the large-batch recipes' "exclude BN and bias" is
 * --wd-exclude-bn-bias plus this. */
#ifndef KD_OPTIM_H
#define KD_OPTIM_H

#include <stddef.h>

#include "kd_model.h"

typedef struct {
    float momentum, wd;
    int nesterov, wd_exclude;
    float lars_eta; /* 0: plain SGD */
} kd_sgd_opts;

typedef struct {
    kd_sgd_opts o;
    size_t n;
    float *buf;      /* [n] momentum */
    float *wdscale;  /* [n] 1 or 0: where weight decay applies */
    int nadapt;
    size_t (*adapt)[2]; /* LARS: [nadapt] (offset, length) of the weight tensors */
} kd_sgd;

int kd_sgd_init(kd_sgd *s, kd_model *m, const kd_sgd_opts *o);
/* The same over any slab laid out by views (views tile [0,n) in order). */
int kd_sgd_init_views(kd_sgd *s, size_t n, const kd_pview *views, int nv, const kd_sgd_opts *o);
void kd_sgd_free(kd_sgd *s);
void kd_sgd_step(kd_sgd *s, float *p, const float *g, float lr);

/* Gradient clipping as torch.nn.utils.clip_grad_norm_ over k gradient
 * arrays g[i] of n[i] floats: the global L2 norm N over all of them; when
 * max_norm > 0 and N is finite, every gradient is multiplied by
 * min(1, max_norm / (N + 1e-6)).  Returns N (NaN or inf when a gradient
 * is not finite: nothing is scaled then, the caller decides). */
double kd_grad_clip(float *const *g, const size_t *n, int k, double max_norm);

/* Learning-rate schedules over steps. */
typedef enum { KD_SCHED_CONST, KD_SCHED_COSINE, KD_SCHED_STEP } kd_sched_kind;
typedef struct {
    kd_sched_kind kind;
    double base;
    long total;          /* steps of the whole run (cosine) */
    long warmup;         /* linear warmup steps */
    int nmile;
    double milestones[16]; /* epochs at which the lr is multiplied by gamma */
    double gamma;
} kd_sched;

/* lr at a step (0-based) in a fractional epoch. */
double kd_sched_lr(const kd_sched *s, long step, double epoch);
/* "const", "cosine", "step:150,180,210"; -1 with kd_err when malformed. */
int kd_sched_parse(kd_sched *s, const char *spec);

#endif
