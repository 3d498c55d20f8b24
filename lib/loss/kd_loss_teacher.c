/* kd_loss_teacher — the checks of teacher outputs shared by the
 * distillation losses (embeddings: disco, seed; logits: kd, dkd), in one
 * place so that the losses word them identically. */
#include "kd_loss_teacher.h"

#include <math.h>

#include "kd_err.h"
#include "kd_names.h"

static int width_error(const char *instance, const char *name, long long w, int E)
{
    kd_err_set("loss %s: the teacher's embeddings (%s) are %lld wide, the student's head gives %d "
               "(model-init --head mlp:H:%lld)", instance, name, w, E, w);
    return -1;
}

/* A NaN would pass silently into the loss and, for seed, into the queue
 * and every later step: refuse it where it enters. */
static const float *finite_rows(const float *x, int n, int w, const char *instance, const char *nm)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < w; j++)
            if (!isfinite(x[(size_t)i * w + j])) {
                kd_err_set("loss %s: %s row %d is not finite", instance, nm, i);
                return NULL;
            }
    return x;
}

int kd_teacher_emb_init(kd_loss_init *c, int nviews)
{
    int E = kd_model_emb_dim(c->student);
    if (!E) {
        kd_err_set("loss %s: the model has no projection head (model-init --head mlp:HIDDEN:OUT)", c->instance);
        return -1;
    }
    char nm[KD_NAME_MAX];
    for (int v = 0; v < nviews; v++)
        if (kd_loss_want_view(c, v) ||
            kd_loss_need_tensor(c, kd_name(nm, sizeof nm, KD_NAME_EMB, NULL, v), KD_F32, 2, "teacher-extract -m TEACHER"))
            return -1;
    /* the width is checked here, before any step, when the first frame
     * allows it; a frame without t.emb0 is reported by the trainer's check
     * of every frame, in its own words */
    const kd_tensor *t = kd_frame_cget(c->first, kd_name(nm, sizeof nm, KD_NAME_EMB, NULL, 0));
    if (t && t->rank == 2 && t->dims[1] != E)
        return width_error(c->instance, nm, (long long)t->dims[1], E);
    return E;
}

const float *kd_teacher_emb(const kd_loss_batch *b, const char *instance, int v, int E)
{
    char nm[KD_NAME_MAX];
    const kd_tensor *t = kd_loss_tensor(b, kd_name(nm, sizeof nm, KD_NAME_EMB, NULL, v));
    if (!t) { /* the trainer checked every declared tensor: not reached */
        kd_err_set("loss %s: the frame has no %s", instance, nm);
        return NULL;
    }
    if (t->dims[1] != E) {
        width_error(instance, nm, (long long)t->dims[1], E);
        return NULL;
    }
    return finite_rows(t->data, b->n, E, instance, nm);
}

static int classes_error(const char *instance, const char *name, long long k, int K)
{
    kd_err_set("loss %s: the teacher's logits (%s) have %lld classes, the student's classifier has %d", instance, name,
               k, K);
    return -1;
}

int kd_teacher_logits_init(kd_loss_init *c, int nviews)
{
    int K = kd_model_num_classes(c->student);
    if (!K) {
        kd_err_set("loss %s: the model has no classifier (model-init --num-classes K)", c->instance);
        return -1;
    }
    char nm[KD_NAME_MAX];
    for (int v = 0; v < nviews; v++)
        if (kd_loss_want_view(c, v) || kd_loss_need_tensor(c, kd_name(nm, sizeof nm, KD_NAME_LOGITS, NULL, v), KD_F32,
                                                           2, "teacher-extract -m TEACHER, a teacher with a classifier"))
            return -1;
    const kd_tensor *t = kd_frame_cget(c->first, kd_name(nm, sizeof nm, KD_NAME_LOGITS, NULL, 0));
    if (t && t->rank == 2 && t->dims[1] != K)
        return classes_error(c->instance, nm, (long long)t->dims[1], K);
    return K;
}

const float *kd_teacher_logits(const kd_loss_batch *b, const char *instance, int v, int K)
{
    char nm[KD_NAME_MAX];
    const kd_tensor *t = kd_loss_tensor(b, kd_name(nm, sizeof nm, KD_NAME_LOGITS, NULL, v));
    if (!t) { /* the trainer checked every declared tensor: not reached */
        kd_err_set("loss %s: the frame has no %s", instance, nm);
        return NULL;
    }
    if (t->dims[1] != K) {
        classes_error(instance, nm, (long long)t->dims[1], K);
        return NULL;
    }
    return finite_rows(t->data, b->n, K, instance, nm);
}

int kd_check_labels(const kd_loss_batch *b, const char *instance, int K)
{
    for (int i = 0; i < b->n; i++)
        if (b->label[i] < 0 || b->label[i] >= K) {
            kd_err_set("loss %s: label %d outside the model's %d classes", instance, b->label[i], K);
            return -1;
        }
    return 0;
}
