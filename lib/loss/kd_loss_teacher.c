/* kd_loss_teacher — the teacher-embedding checks shared by disco and seed,
 * in one place so that both losses word them identically. */
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

/* A NaN would pass silently into the loss and, for seed, into the queue
 * and every later step: refuse it where it enters. */
static const float *finite_rows(const float *x, int n, int w, const char *instance, const char *name)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < w; j++)
            if (!isfinite(x[(size_t)i * w + j])) {
                kd_err_set("loss %s: %s row %d is not finite", instance, name, i);
                return NULL;
            }
    return x;
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

const float *kd_teacher_rows(const kd_loss_batch *b, const char *instance, const char *name, int width)
{
    const kd_tensor *t = kd_loss_tensor(b, name);
    if (!t) { /* the trainer checked every declared tensor: not reached */
        kd_err_set("loss %s: the frame has no %s", instance, name);
        return NULL;
    }
    if (t->rank != 2 || t->dims[1] != width) {
        kd_err_set("loss %s: %s is %lld wide, the first frame's was %d", instance, name,
                   (long long)t->dims[t->rank - 1], width);
        return NULL;
    }
    return finite_rows(t->data, b->n, width, instance, name);
}
