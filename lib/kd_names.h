/* kd_names — the well-known names of the stream: tensors and frame
 * metadata.  They are the contract between stages (augment writes views,
 * teacher-extract adds teacher outputs, aggregate adds descriptors, the
 * losses of distill-step read them); man/man5/kdt.5 lists the same names.
 * Every program and loss takes them from here, never from a literal. */
#ifndef KD_NAMES_H
#define KD_NAMES_H

#include <stddef.h>

/* Per-view families: NAME{i} for view i.  A teacher family is written under
 * a prefix (teacher-extract --prefix, default KD_TEACHER_PREFIX). */
typedef enum {
    KD_NAME_VIEW,   /* view%d    f32 [B,C,H,W]  augmented views (augment) */
    KD_NAME_EMB,    /* t.emb%d   f32 [B,E]      L2-normalised head embeddings */
    KD_NAME_FEAT,   /* t.feat%d  f32 [B,D]      pooled backbone features */
    KD_NAME_LOGITS, /* t.logits%d f32 [B,K]     classifier logits */
    KD_NAME_MAP,    /* t.map%d   f32 [B,C,h,w]  a stage's feature map */
    KD_NAME_CAM,    /* t.cam%d   f32 [B,K,h,w]  class-activation maps */
    KD_NAME_MSD,    /* t.msd%d   f32 [B,R,C]    multi-scale region descriptors */
    KD_NAME_MSDW,   /* t.msdw%d  f32 [B,R]      their categorisation weights */
    KD_NAME_SSA,    /* t.ssa%d   f32 [B,C,h,w]  sparse-aggregated maps */
    KD_NAME_NFAMILIES
} kd_name_family;

#define KD_TEACHER_PREFIX "t."

/* Per-frame tensors. */
#define KD_NAME_INDEX "index"       /* i64 [B] row of the dataset file */
#define KD_NAME_LABEL "label"       /* i32 [B] class */
#define KD_NAME_BOXES "boxes"       /* f32 [M,4] detections, xywh */
#define KD_NAME_SCORES "scores"     /* f32 [M] */
#define KD_NAME_LABELS "labels"     /* i32 [M] detection classes */
#define KD_NAME_IMAGE_IDS "image_ids" /* i64 [M] */

/* Frame metadata. */
#define KD_META_EPOCH "epoch"     /* 0-based epoch of the frame */
#define KD_META_EPOCHS "epochs"   /* the run's total epochs: last frame's epoch + 1 (augment: --start-epoch + --epochs) */
#define KD_META_STEP "step"       /* 0-based frame number over the run */
#define KD_META_BATCH "batch"     /* 0-based batch within the epoch */
#define KD_META_BATCHES "batches" /* batches per epoch */
#define KD_META_SEED "seed"
#define KD_META_POLICY "policy"
#define KD_META_SHARD "shard"     /* "R/N": the frame is rank R's slice of the global batch (augment --shard) */
#define KD_META_FRAMES "frames"   /* the end marker's only entry: frames before it (kdt(5)) */

/* The name of family f for view i into buf (KD_NAME_MAX bytes suffice for
 * prefixes up to 40 characters); prefix NULL: KD_TEACHER_PREFIX for the
 * teacher families, none for views.  Returns buf. */
char *kd_name(char *buf, size_t size, kd_name_family f, const char *prefix, int i);
/* The bare family name ("view", "emb", ...). */
const char *kd_name_family_str(kd_name_family f);

/* The inverse of kd_name: split "t.cam0" into prefix "t." (into prefix,
 * psize bytes; NULL: not wanted), family KD_NAME_CAM and index 0.  The name
 * must end in a family name and decimal digits.  0, or -1 (no kd_err)
 * when name is not of that form or the prefix does not fit. */
int kd_name_split(const char *name, char *prefix, size_t psize, kd_name_family *f, int *i);

#endif
