/* kd_loss_teacher — the checks of teacher outputs shared by the
 * distillation losses (embeddings: disco, seed; logits: kd, dkd; pooled features: crd), in one
 * place so that the losses word them identically. */
#include "kd_loss_teacher.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kd_err.h"
#include "kd_names.h"

/* What differs between the teacher families a loss may read. */
typedef struct {
    kd_name_family family;
    const char *hint; /* who writes it */
    int (*width)(const kd_model *m);
    const char *no_width; /* the student lacks the output */
    void (*mismatch)(const char *instance, const char *name, long long w, int mine);
} family_desc;

static void emb_mismatch(const char *instance, const char *name, long long w, int E)
{
    kd_err_set("loss %s: the teacher's embeddings (%s) are %lld wide, the student's head gives %d "
               "(model-init --head mlp:H:%lld)", instance, name, w, E, w);
}

static void logits_mismatch(const char *instance, const char *name, long long k, int K)
{
    kd_err_set("loss %s: the teacher's logits (%s) have %lld classes, the student's classifier has %d", instance, name,
               k, K);
}

static const family_desc emb_desc = {KD_NAME_EMB, "teacher-extract -m TEACHER", kd_model_emb_dim,
                                     "the model has no projection head (model-init --head mlp:HIDDEN:OUT)",
                                     emb_mismatch};
static const family_desc logits_desc = {KD_NAME_LOGITS, "teacher-extract -m TEACHER, a teacher with a classifier",
                                        kd_model_num_classes,
                                        "the model has no classifier (model-init --num-classes K)", logits_mismatch};

static int teacher_init(kd_loss_init *c, int nviews, const family_desc *f)
{
    int w = f->width(c->student);
    if (!w) {
        kd_err_set("loss %s: %s", c->instance, f->no_width);
        return -1;
    }
    char nm[KD_NAME_MAX];
    for (int v = 0; v < nviews; v++)
        if (kd_loss_want_view(c, v) || kd_loss_need_tensor(c, kd_name(nm, sizeof nm, f->family, NULL, v), KD_F32, 2, f->hint))
            return -1;
    /* the width is checked here, before any step, when the first frame
     * allows it; a frame without the tensor is reported by the trainer's
     * check of every frame, in its own words */
    const kd_tensor *t = kd_frame_cget(c->first, kd_name(nm, sizeof nm, f->family, NULL, 0));
    if (t && t->rank == 2 && t->dims[1] != w) {
        f->mismatch(c->instance, nm, (long long)t->dims[1], w);
        return -1;
    }
    return w;
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

static const float *teacher_rows(const kd_loss_batch *b, const char *instance, int v, int w, const family_desc *f)
{
    char nm[KD_NAME_MAX];
    const kd_tensor *t = kd_loss_tensor(b, kd_name(nm, sizeof nm, f->family, NULL, v));
    if (!t) { /* the trainer checked every declared tensor: not reached */
        kd_err_set("loss %s: the frame has no %s", instance, nm);
        return NULL;
    }
    if (t->dims[1] != w) {
        f->mismatch(instance, nm, (long long)t->dims[1], w);
        return NULL;
    }
    return finite_rows(t->data, b->n, w, instance, nm);
}

int kd_teacher_emb_init(kd_loss_init *c, int nviews) { return teacher_init(c, nviews, &emb_desc); }

const float *kd_teacher_emb(const kd_loss_batch *b, const char *instance, int v, int E)
{
    return teacher_rows(b, instance, v, E, &emb_desc);
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

int kd_teacher_logits_init(kd_loss_init *c, int nviews) { return teacher_init(c, nviews, &logits_desc); }

const float *kd_teacher_logits(const kd_loss_batch *b, const char *instance, int v, int K)
{
    return teacher_rows(b, instance, v, K, &logits_desc);
}

void *kd_logit_loss_new(kd_loss_init *c, size_t size)
{
    int K = kd_teacher_logits_init(c, 1);
    if (K < 0)
        return NULL;
    kd_logit_loss *s = calloc(1, size);
    if (!s || !(s->work = malloc(sizeof(double) * 2 * (size_t)K))) {
        kd_err_set("loss %s: out of memory", c->instance);
        free(s);
        return NULL;
    }
    snprintf(s->instance, sizeof s->instance, "%s", c->instance);
    s->K = K;
    return s;
}

void kd_logit_loss_free(void *st)
{
    kd_logit_loss *s = st;
    if (s)
        free(s->work);
    free(s);
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
