/* The trainer's state, shared by kd_train.c (step), kd_train_ckpt.c
 * (checkpoints) and kd_train_val.c (validation).  Not a public header. */
#ifndef KD_TRAIN_IMPL_H
#define KD_TRAIN_IMPL_H

#include "kd_evalset.h"
#include "kd_train.h"

typedef struct {
    const kd_loss_module *mod;
    float weight, own_wd;
    void *opts;
    void *st;
    char name[48];    /* instance name: "ce", "ce.2" */
    char group[64];   /* checkpoint group: "train/ce", "train/ce.2" */
    kd_loss_init ctx; /* what init declared */
    kd_sgd own;       /* optimiser of ctx.params */
} kd_train_loss;

struct kd_trainer {
    kd_train_opts o;
    kd_model *m;
    kd_sgd opt;
    kd_sched sched;
    kd_train_loss L[KD_TRAIN_MAX_LOSSES];
    int nl;
    unsigned views;   /* union of the losses' views */
    unsigned stages;  /* union of the gradient stages */
    int B, C, H, W, D, K, E;
    long batches, epochs;
    long step, epoch;
    uint64_t fwd;     /* training forwards so far: the model's RNG position */
    float *dfeat, *dlog, *demb, *dmap[KD_MAX_STAGES + 1];
    size_t mapsz[KD_MAX_STAGES + 1]; /* floats per image of each stage map */
    kd_step_info last;
    int inited;
    int64_t *dist_check; /* [3 * ranks] kd_trainer_dist_check's gather */
    /* validation */
    kd_evalset vs, bs;
    int has_val, has_bank, knn_k;
    float knn_t;
    float *vout, *bout;
    int32_t *pred;
};

/* kd_train_dist.c: refuses losses that are not data_parallel in a job of
 * several processes and sets sync-BN; then the gradients' averaging and the
 * mean of the loss terms over the ranks (nothing in one process). */
int kd_train_dist_init(kd_trainer *t);
int kd_train_dist_reduce(kd_trainer *t, double *terms, double *total);

#endif
