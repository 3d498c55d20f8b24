/* kd_augment — augmented views of a dataset's images, as augment(1) writes
 * them, for any program that needs the same views.
 *
 * The reproducibility contract (augment(1), RANDOMNESS): view v of image
 * `index` in epoch e is drawn from
 *     base = kd_rng_make(seed, e, index);
 *     r    = kd_rng_make(base.key, v, 0x61756776 "augv");
 * so it depends on (seed, epoch, index, view) only: never on the batch the
 * image is in, its position there, or the number of threads.  The epoch's
 * order is kd_rng_permute of kd_rng_make(seed, e, UINT64_MAX)
 * (kd_augment_order). */
#ifndef KD_AUGMENT_H
#define KD_AUGMENT_H

#include <stdint.h>

#include "kd_aug_policy.h"
#include "kd_dataset.h"
#include "kd_tensor.h"

/* Options of a policy as a user gave them; kd_aug_policy_apply_overrides
 * lays them over the policy's defaults. */
typedef struct {
    int has_scale, has_ratio, has_jitter, has_sigma, has_pad, has_resize;
    float scale[2], ratio[2], jitter[4], sigma[2];
    float jitter_p, gray_p, blur_p, flip_p; /* < 0: not given */
    int pad, resize;
    int no_normalize;
    kd_norm_overrides norm; /* --mean / --std */
} kd_aug_overrides;

/* Nothing given. */
void kd_aug_overrides_init(kd_aug_overrides *ov);
/* Lays ov over p (already kd_aug_policy_init'ed): a given crop scale turns
 * RandomResizedCrop on; a given jitter on a policy without jitter applies it
 * always unless --jitter-p is given; normalisation statistics from
 * kd_dataset_norm(info, p->oc, &ov->norm) unless no_normalize.  Returns
 * kd_dataset_norm's 0 / -1 (the file) / -2 (the overrides, a usage error). */
int kd_aug_policy_apply_overrides(kd_aug_policy *p, const kd_aug_overrides *ov, const kd_dataset_info *info);

/* Undoes p's normalisation of n floats [oc, hw] (x * std + mean per
 * channel) into dst (may be src); a copy when p does not normalise. */
void kd_aug_denormalize(const kd_aug_policy *p, const float *src, float *dst, int hw);

typedef struct {
    const kd_aug_policy *pol; /* copied */
    int h, w, c;              /* the images' size */
    const uint8_t *images;    /* every image [n,h,w,c] in memory, or NULL ... */
    kd_dataset_file *file;    /* ... to read them one at a time from here (one thread) */
    const int32_t *labels;    /* [n] written as KD_NAME_LABEL, or NULL */
    int views;                /* 1..64 */
    int threads;              /* workers (>= 1; 1 when reading from file) */
    uint64_t seed;
    int64_t epochs, batches;  /* the run's length, written into every frame */
} kd_augmenter_opts;

typedef struct kd_augmenter kd_augmenter;

/* NULL with kd_err on bad options or no memory. */
kd_augmenter *kd_augmenter_new(const kd_augmenter_opts *o);
void kd_augmenter_free(kd_augmenter *a);

/* The views of images idx[0..b) in epoch `epoch`: views[v] is [b, oc, oh, ow]
 * for v < opts.views. */
int kd_augmenter_batch(kd_augmenter *a, uint64_t epoch, const int64_t *idx, int b, float **views);

/* Clears fr and fills it with batch `batch` of epoch `epoch` (images idx[0..b)):
 * tensors view0.. (kd_name KD_NAME_VIEW), KD_NAME_INDEX i64 [b], KD_NAME_LABEL
 * i32 [b] (when there are labels), and metadata KD_META_EPOCH, KD_META_STEP
 * (epoch * batches + batch), KD_META_BATCH, KD_META_BATCHES, KD_META_EPOCHS,
 * KD_META_SEED, KD_META_POLICY. */
int kd_augmenter_frame(kd_augmenter *a, kd_frame *fr, int64_t epoch, int64_t batch, const int64_t *idx, int b);

/* The image order of epoch e: a permutation of 0..n-1 (shuffle), else 0..n-1. */
void kd_augment_order(uint64_t seed, int64_t epoch, int shuffle, int64_t *perm, int64_t n);

#endif
