/* Loss ce: supervised softmax cross-entropy of the student's logits on
 * view0 against the frame's labels — the smallest loss module, and the
 * example of distill-step(1)'s "Adding a loss". */
#include <stdlib.h>

#include "kd_err.h"
#include "kd_loss.h"
#include "kd_loss_teacher.h"
#include "kd_names.h"

typedef struct {
    int K;
} ce_state;

static void *ce_init(kd_loss_init *c)
{
    if (!kd_model_num_classes(c->student)) {
        kd_err_set("loss %s: the model has no classifier (model-init --num-classes K)", c->instance);
        return NULL;
    }
    if (kd_loss_want_view(c, 0) ||
        kd_loss_need_tensor(c, KD_NAME_LABEL, KD_I32, 1, "a labelled dataset through augment"))
        return NULL;
    ce_state *s = malloc(sizeof *s);
    if (!s) {
        kd_err_set("loss %s: out of memory", c->instance);
        return NULL;
    }
    s->K = kd_model_num_classes(c->student);
    return s;
}

static int ce_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    ce_state *s = st;
    if (kd_check_labels(b, "ce", s->K))
        return -1;
    *loss = kd_softmax_ce(b->logits, b->label, b->n, s->K, weight, b->d_logits);
    return 0;
}

const kd_loss_module kd_loss_ce = {
    .name = "ce",
    .summary = "supervised cross-entropy of the logits on view0 against label",
    .needs = "label i32 [B]; a model with a classifier",
    .monitor = KD_MONITOR_TOP1,
    .data_parallel = 1,
    .init = ce_init,
    .compute = ce_compute,
    .free = free,
};
