/* kd_loss_teacher — private to lib/loss: the teacher outputs written by
 * teacher-extract that the distillation losses read (t.emb{v}: disco,
 * seed; t.logits{v}: kd, dkd), with the checks they share. */
#ifndef KD_LOSS_TEACHER_H
#define KD_LOSS_TEACHER_H

#include <stddef.h>

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

/* The state of a loss on the teacher's logits of view0 (kd, dkd): the
 * first member of the module's own state struct. */
typedef struct {
    char instance[48];
    int K;
    double *work; /* [2K] scratch of kd_kd_loss / kd_dkd_loss */
} kd_logit_loss;

/* In init: kd_teacher_logits_init(c, 1), then a zeroed state of size bytes
 * (a struct that begins with kd_logit_loss) with its scratch; NULL with
 * kd_err.  kd_logit_loss_free frees it (the module's .free). */
void *kd_logit_loss_new(kd_loss_init *c, size_t size);
void kd_logit_loss_free(void *st);

/* In compute: every label of the batch in 0..K-1; -1 with kd_err. */
int kd_check_labels(const kd_loss_batch *b, const char *instance, int K);

/* In compute: the declared teacher tensor NAME of the batch [n,width],
 * checked to be as wide as the first frame's and finite; NULL with kd_err
 * ("loss NAME: t.feat0 is 32 wide, the first frame's was 64"). */
const float *kd_teacher_rows(const kd_loss_batch *b, const char *instance, const char *name, int width);

#endif
