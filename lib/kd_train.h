/* kd_train — the trainer: a student model, its losses (kd_loss.h), SGD over
 * the model's and the losses' own parameters, the learning-rate schedule,
 * checkpoints with bit-identical resume, and the validation monitor.
 *
 * Life of a trainer:
 *   t = kd_trainer_new(model, &opts)           takes the model
 *   kd_trainer_add_loss(t, mod, weight, opts)  once per loss (the same module
 *                                              may come twice)
 *   kd_trainer_init(t, first_frame)            plans the model for the
 *                                              stream's shapes, inits every
 *                                              loss, the optimisers and the
 *                                              schedule's length
 *   kd_trainer_resume(t, ckpt)                 optional: state of a checkpoint
 *   kd_trainer_step(t, frame, frame_no)        for every frame
 *   kd_trainer_save(t, path)                   atomic checkpoint
 *
 * One step (the order is part of the contract, tested in test_trainer):
 *   every loss's pre; the gradients of the model and of the losses' own
 *   parameters zeroed; for each student view v that any loss asked for
 *   (ascending): a training forward of the student on view v (BN running
 *   statistics updated, as PyTorch does when it calls the encoder twice),
 *   the output gradients zeroed, compute(v) of each loss that asked for v,
 *   the student's backward (gradients accumulate over views); one SGD step
 *   with the scheduled learning rate over the model's slab and each loss's
 *   slab; every loss's post.
 *
 * Data parallelism (kd_dist.h): in a job of N processes each trains on
 * its shard of every global batch (augment --shard R/N); after the
 * backward the gradients of the model and of the losses' own parameters are
 * summed over the ranks (one call per slab) and divided by N, so every rank
 * takes the same SGD step; the logged loss is the mean over the ranks.  BN
 * statistics are each rank's own (the saved running statistics are rank
 * 0's, as DDP's broadcast buffers make them) unless sync_bn, which takes
 * them over the global batch (kd_model_set_bn_sync): with sync_bn and
 * equal shards a job of N ranks trains what one process does on the global
 * batch.  Only losses with data_parallel (kd_loss.h) are accepted.
 *
 * The schedule's length is --total-steps, else epochs x batches-per-epoch,
 * where epochs is opts.epochs or the frames' "epochs" metadata and the
 * batches per epoch come from the frames' "batches" metadata. */
#ifndef KD_TRAIN_H
#define KD_TRAIN_H

#include <stdint.h>

#include "kd_loss.h"
#include "kd_model.h"
#include "kd_optim.h"
#include "kd_tensor.h"

typedef struct {
    kd_sgd_opts sgd;
    const char *schedule;  /* "const", "cosine" (NULL: cosine) or "step:E1,E2,..." */
    double lr;             /* base learning rate */
    int lr_scale_batch;    /* lr *= batch / 256 */
    long warmup_steps;
    double epochs;         /* > 0: overrides the stream's "epochs" */
    long total_steps;      /* > 0: the schedule's length in steps */
    uint64_t seed;
    int sync_bn;           /* data parallelism: BN statistics over every rank's batch */
} kd_train_opts;

#define KD_TRAIN_MAX_LOSSES 8

typedef struct kd_trainer kd_trainer;

/* Status of kd_trainer_init beyond -1: the schedule needs a length that
 * neither the options nor the stream give. */
#define KD_TRAIN_NO_LENGTH (-2)
/* Status of kd_trainer_step: the loss is not finite (nothing was stepped). */
#define KD_TRAIN_NOT_FINITE (-3)

kd_trainer *kd_trainer_new(kd_model *m, const kd_train_opts *o);
void kd_trainer_free(kd_trainer *t);
/* opts: the module's option struct (kd_loss_opts_defaults/_set), copied;
 * NULL: the defaults.  own_wd < 0: the trainer's weight decay for the
 * loss's own parameters. */
int kd_trainer_add_loss(kd_trainer *t, const kd_loss_module *mod, float weight, const void *opts, float own_wd);
int kd_trainer_init(kd_trainer *t, kd_frame *first);
/* The training state of a checkpoint written by kd_trainer_save: the
 * optimiser's momentum, the losses' parameters and state, step, epoch and
 * the RNG position.  The model's own parameters are those of the model
 * given to kd_trainer_new (load it from the checkpoint: it is a model file).
 * Refused when the checkpoint was made with other losses, weights or seed. */
int kd_trainer_resume(kd_trainer *t, const char *ckpt);

/* 1: trained on the frame; 0: skipped (its step precedes the resumed
 * step); -1 with kd_err "frame N: ..."; KD_TRAIN_NOT_FINITE with kd_err
 * "step S: loss is not finite (...)". */
int kd_trainer_step(kd_trainer *t, kd_frame *f, long frame_no);

/* Data parallelism: every rank calls it before each kd_trainer_step with
 * the frame, and with NULL when its stream has ended; 0 when the ranks
 * agree (all have a frame of the same step and batch size, or all ended),
 * else -1 with kd_err saying which rank differs.  One process: 0. */
int kd_trainer_dist_check(kd_trainer *t, kd_frame *f, long frame_no);

/* Model + training state, atomically (temporary name, fsync, rename): the
 * checkpoint.  The deployed model is kd_model_save(kd_trainer_model(t)). */
int kd_trainer_save(const kd_trainer *t, const char *path);

typedef struct {
    double loss;                         /* weighted sum of the terms */
    double term[KD_TRAIN_MAX_LOSSES];    /* each loss, unweighted */
    double lr;
    int n;                               /* images in the step */
} kd_step_info;

const kd_step_info *kd_trainer_last(const kd_trainer *t);
kd_model *kd_trainer_model(kd_trainer *t);
long kd_trainer_steps(const kd_trainer *t);   /* steps done */
long kd_trainer_epoch(const kd_trainer *t);   /* epoch of the last frame */
long kd_trainer_total(const kd_trainer *t);   /* the schedule's length, 0 if none */
long kd_trainer_epochs(const kd_trainer *t);  /* epochs of the run, 0 if unknown */
int kd_trainer_nlosses(const kd_trainer *t);
/* Whether loss i declared parameters of its own (after init). */
int kd_trainer_loss_owns_params(const kd_trainer *t, int i);
/* "ce", or "ce.2" for the second instance of the same loss. */
const char *kd_trainer_loss_name(const kd_trainer *t, int i);
/* The monitor the losses call for: kNN if any loss asks for it or the
 * model has no classifier, else top-1 of the logits. */
kd_monitor kd_trainer_monitor(const kd_trainer *t);

/* Validation (lib/train/kd_train_val.c): top-1 of the logits on val, or
 * weighted kNN top-1 (k neighbours, temperature T, cosine) of the pooled
 * features against bank.  Loads both (limit > 0: the first limit images) at
 * the stream's image size. */
int kd_trainer_set_val(kd_trainer *t, const char *val, int64_t val_limit, const char *bank, int64_t bank_limit,
                       int knn_k, float knn_t);
/* name: "val_top1" or "val_knn_top1". */
int kd_trainer_validate(kd_trainer *t, const char **name, double *top1);

#endif
