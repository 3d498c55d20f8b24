/* kd_loss — the contract between the trainer (kd_train) and a training loss.
 *
 * A loss is one file, lib/loss/kd_loss_NAME.c, defining
 *     const kd_loss_module kd_loss_NAME = {.name = "NAME", ...};
 * and one line KD_LOSS(NAME) in lib/loss/kd_losses.def.  Nothing else: the
 * registry, `distill-step --help`, option parsing and checkpointing follow
 * from the module's fields.  lib/loss/kd_loss_ce.c is the smallest example.
 *
 * What a module declares:
 *   opts/opts_size  its options as a table over its own option struct; the
 *                   trainer fills the struct with the defaults and the user's
 *                   values (distill-step --NAME V, or --loss-opt LOSS.NAME=V)
 *                   and hands it to init.
 *   init            gets the student, the parsed options and the stream's
 *                   FIRST frame; allocates everything it will ever need, and
 *                   declares through the kd_loss_init context the student
 *                   views it wants (training forward + gradient on each), the
 *                   stream tensors every frame must carry, the stages whose
 *                   maps it sends gradients into, and parameters of its own.
 *   monitor         which validation monitor suits it (kNN for representation
 *                   losses, top-1 for classifiers).
 * Hooks of one step, in this order (kd_train.h):
 *   pre(b)                   every loss, before any student forward
 *   for each view v any loss asked for, ascending:
 *       student training forward on view v (BN statistics updated)
 *       compute(b, v) of every loss that asked for v: loss value, and
 *            weight * dL/d(output) ADDED into b->d_* (zeroed per view)
 *       student backward of v, accumulating into the gradient slab
 *   optimiser step over the student's and the losses' own parameters
 *   post(b)                  every loss (queues, banks)
 *   save/load                state (queues, key encoders) under a group of
 *                            the checkpoint; own parameters and their momentum
 *                            are checkpointed by the trainer.
 * A loss never prints and never exits: errors go through kd_err_set.
 * Pointers into the student (outputs, stage maps) are valid inside the
 * hooks only: the trainer may plan the model again after every init. */
#ifndef KD_LOSS_H
#define KD_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "kd_h5.h"
#include "kd_model.h"
#include "kd_slab.h"
#include "kd_tensor.h"

/* ---- options ---- */
/* KD_LOPT_STR: a char[KD_LOPT_STR_MAX] field, for a word, a list or a file
 * name that the module checks and parses itself in init (msd-space
 * logits|feat, msd-scales 1,2,4, crd-data FILE); min and max are unused;
 * "" is an empty default. */
typedef enum { KD_LOPT_INT, KD_LOPT_FLOAT, KD_LOPT_U64, KD_LOPT_STR } kd_lopt_type;
#define KD_LOPT_STR_MAX 256
typedef struct {
    const char *name;  /* command-line spelling: --NAME V or --loss-opt LOSS.NAME=V */
    kd_lopt_type type; /* int, float, uint64_t or char[KD_LOPT_STR_MAX] field at off */
    size_t off;        /* offsetof(the module's option struct, field) */
    const char *def;   /* default, as the user would type it */
    double min, max;   /* accepted range (numbers) */
    const char *help;
} kd_loss_opt;

/* ---- what a loss sees of one step ---- */
typedef struct {
    kd_frame *frame;
    int n;              /* images in the batch */
    long step;          /* steps done before this one */
    long epoch;
    const int32_t *label; /* [n] or NULL when the frame has none */
    kd_model *student;
    /* compute() only: the current view and the student's outputs on it */
    int view;
    const float *x;     /* [n,C,H,W] the view's images */
    const float *feat, *logits, *emb; /* [n,D] [n,K] [n,E]; logits/emb NULL if absent */
    float *d_feat, *d_logits, *d_emb; /* add weight * dL/d(output) here */
    float *d_map[KD_MAX_STAGES + 1];  /* d_map[s]: gradient at stage s, for declared stages only */
} kd_loss_batch;

/* The student's view i of the frame ([n,C,H,W], checked by the trainer). */
const float *kd_loss_view(const kd_loss_batch *b, int i);
/* A tensor of the frame the loss declared it needs (NULL if absent). */
const kd_tensor *kd_loss_tensor(const kd_loss_batch *b, const char *name);

/* ---- what a loss sees at init ---- */
#define KD_LOSS_MAX_NEEDS 16
typedef struct {
    char name[KD_NAME_MAX];
    kd_dtype dtype;
    int rank;
    char hint[96]; /* who writes it, e.g. "augment --views 2" */
} kd_loss_need;

typedef struct kd_loss_init {
    kd_model *student;
    const void *opts;        /* the module's option struct, filled */
    const kd_frame *first;   /* the stream's first frame */
    uint64_t seed;
    int max_batch, c, h, w;  /* the student's planned input */
    const char *instance;    /* "moco", or "moco.2" for a second instance: for messages */
    /* declared by init: */
    unsigned views;          /* bit v: a training forward on view v, compute(v) */
    unsigned grad_stages;    /* bit s: d_map[s] is provided */
    int nneeds;
    kd_loss_need needs[KD_LOSS_MAX_NEEDS];
    kd_slab *params;         /* the loss's own parameters, or NULL */
} kd_loss_init;

/* In init: every frame must carry NAME (dtype, rank; dims[0] = batch). */
int kd_loss_need_tensor(kd_loss_init *c, const char *name, kd_dtype dt, int rank, const char *hint);
/* In init: student view v with a training forward and gradient. */
int kd_loss_want_view(kd_loss_init *c, int v);
/* In init: a gradient into stage s's map (1..nstages). */
int kd_loss_want_grad_stage(kd_loss_init *c, int s);

typedef enum { KD_MONITOR_TOP1, KD_MONITOR_KNN } kd_monitor;

typedef struct {
    const char *name;
    const char *summary;  /* one line for --help */
    const char *needs;    /* human-readable: what the frame and model must have */
    kd_monitor monitor;
    /* 1: right under data parallelism (kd_dist.h, several processes, each
     * on its shard of the batch, gradients averaged): a mean of per-sample
     * terms, or state the loss keeps the same on every rank itself.  Terms
     * over the whole batch (contrasts between its samples) or state updated
     * from this process's samples alone (banks, queues) are not: the
     * trainer refuses them in a job of several processes. */
    int data_parallel;
    const kd_loss_opt *opts; /* terminated by {0}; NULL: none */
    size_t opts_size;
    void *(*init)(kd_loss_init *c);
    int (*pre)(void *st, kd_loss_batch *b);
    int (*compute)(void *st, kd_loss_batch *b, float weight, double *loss);
    int (*post)(void *st, kd_loss_batch *b);
    int (*save)(void *st, kd_h5 *h, const char *group);
    int (*load)(void *st, const kd_h5 *h, const char *group);
    void (*free)(void *st);
} kd_loss_module;

extern const kd_loss_module *const kd_loss_modules[];
const kd_loss_module *kd_loss_find(const char *name);
/* Space-separated names of the registered losses. */
const char *kd_loss_names(void);

/* Options: fill a struct of mod->opts_size bytes with the defaults, then set
 * one by name from text ("-1 with kd_err": unknown name, bad value, out of
 * range), and find one by name (NULL if the module has no such option). */
int kd_loss_opts_defaults(const kd_loss_module *mod, void *opts);
int kd_loss_opts_set(const kd_loss_module *mod, void *opts, const char *name, const char *val);
const kd_loss_opt *kd_loss_opt_find(const kd_loss_module *mod, const char *name);
/* Every module with its summary, needs and options, for --help. */
void kd_loss_help(FILE *f);

/* ---- shared mathematics (lib/loss/kd_loss_math.c) ---- */

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

/* DisCo's distillation term on one view: mean_b |t_b - n(emb_raw_b)|^2
 * (squared distance summed over E), t [n,E] the teacher's normalised
 * embeddings, taken as they are.  Adds weight * dL/d(emb_raw) into d_emb
 * (NULL: loss only).  Scratch: qn [n,E], qnorm [n], dqn [n,E]. */
double kd_disco_term(const float *emb_raw, const float *t, int n, int E, float weight, float *d_emb, float *qn,
                     float *qnorm, float *dqn);

/* SEED's soft cross-entropy: s = n(s_raw) [n,E], t [n,E] and queue [K,E]
 * normalised teacher embeddings; p_T = softmax([t.t, t.Q]/tau_t),
 * p_S = softmax([s.t, s.Q]/tau_s), returns mean_b -sum p_T log p_S and adds
 * weight * dL/d(s_raw) into d_s_raw (NULL: loss only).  Scratch: sn [n,E],
 * snorm [n], pt and ps [n,1+K] double, dsn [n,E], acc [E] double. */
double kd_seed_loss(const float *s_raw, const float *t, const float *queue, int n, int E, int K, float tau_s,
                    float tau_t, float weight, float *d_s_raw, float *sn, float *snorm, double *pt, double *ps,
                    float *dsn, double *acc);

/* KD (Hinton; as RepDistiller's DistillKL): T^2 * mean_b KL(softmax(zt/T) ||
 * softmax(zs/T)) over logits [n,K], in double.  Adds weight * dL/dzs into
 * d (NULL: loss only).  Scratch: work [2K] double. */
double kd_kd_loss(const float *zs, const float *zt, int n, int K, float T, float weight, float *d, double *work);

/* DKD (as mdistiller's dkd_loss): with p = softmax(z/T), b = [p_y, 1-p_y],
 * TCKD = KL(b_t || b_s), NCKD = KL(q_t || q_s) with q = softmax(z/T - 1000
 * [k = y]); returns T^2 * mean_b (alpha TCKD + beta NCKD) and adds
 * weight * dL/dzs into d (NULL: loss only).  y [n] in 0..K-1.  Scratch:
 * work [2K] double.  The warm-up factor is the caller's. */
double kd_dkd_loss(const float *zs, const float *zt, const int32_t *y, int n, int K, float T, float alpha,
                   float beta, float weight, float *d, double *work);

/* mdistiller's DKD warm-up min(epoch / warmup, 1), whose epochs count from
 * 1: the frame's 0-based epoch e is its epoch e + 1.  warmup >= 1. */
double kd_dkd_warmup(long epoch, int warmup);

#endif
