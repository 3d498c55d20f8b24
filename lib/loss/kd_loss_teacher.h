/* kd_loss_teacher — private to lib/loss: the teacher embeddings
 * (t.emb{v}, written by teacher-extract) that the distillation losses
 * (disco, seed) read, with the checks they share. */
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

/* In compute: the declared teacher tensor NAME of the batch [n,width],
 * checked to be as wide as the first frame's and finite; NULL with kd_err
 * ("loss NAME: t.feat0 is 32 wide, the first frame's was 64"). */
const float *kd_teacher_rows(const kd_loss_batch *b, const char *instance, const char *name, int width);

#endif
