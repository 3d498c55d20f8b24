/* kd_loss_teacher — private to lib/loss: the teacher outputs written by
 * teacher-extract that the distillation losses read (t.emb{v}: disco,
 * seed; t.logits{v}: kd, dkd), with the checks they share. */
#ifndef KD_LOSS_TEACHER_H
#define KD_LOSS_TEACHER_H

#include "kd_loss.h"

/* In init: the student must have a head; every frame must carry t.emb{v}
 * for v < nviews (f32 [B,E]); the first frame's t.emb0, when present, must
 * be as wide as the head.  Returns E, or -1 with kd_err. */
int kd_teacher_emb_init(kd_loss_init *c, int nviews);

/* In compute: t.emb{v} of the batch [n,E], checked to be E wide and finite;
 * NULL with kd_err ("loss NAME: t.emb1 row 3 is not finite"). */
const float *kd_teacher_emb(const kd_loss_batch *b, const char *instance, int v, int E);

/* In init: the student must have a classifier; every frame must carry
 * t.logits{v} for v < nviews (f32 [B,K]); the first frame's t.logits0,
 * when present, must have the student's K classes.  Returns K, or -1. */
int kd_teacher_logits_init(kd_loss_init *c, int nviews);

/* In compute: t.logits{v} of the batch [n,K], checked to have K classes
 * and to be finite; NULL with kd_err. */
const float *kd_teacher_logits(const kd_loss_batch *b, const char *instance, int v, int K);

/* In compute: every label of the batch in 0..K-1; -1 with kd_err. */
int kd_check_labels(const kd_loss_batch *b, const char *instance, int K);

#endif
