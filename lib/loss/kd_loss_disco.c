/* Loss disco: DisCo's distillation term alone (Gao et al. 2022;
 * METHODS.md), lambda . (|t_q - q|^2 + |t_k - q'|^2) with q = n(student
 * head on view0), q' = n(student head on view1), both with gradient, and
 * t_q, t_k the frame's teacher embeddings t.emb0, t.emb1.
 *
 * The student's own MoCo term is the `moco` loss: DisCo is
 * `--loss moco:1,disco:LAMBDA`.  Keeping the term separate means MoCo runs
 * once (its key encoder and queue are moco's state, the student's keys
 * alone enter that queue, never a teacher's), and the term composes with
 * any other student loss.  The weight is lambda: DisCo's code sums the
 * distances over its per-GPU batch of 32 while its CE is a batch mean, so
 * its setting is lambda = 32 here, where both are per-sample means. */
#include <stdlib.h>

#include "kd_err.h"
#include "kd_loss.h"
#include "kd_loss_teacher.h"

typedef struct {
    char instance[48];
    int E;
    float *qn, *qnorm, *dqn; /* scratch [B,E], [B], [B,E] */
} disco_state;

static void disco_free(void *st)
{
    disco_state *s = st;
    if (!s)
        return;
    free(s->qn), free(s->qnorm), free(s->dqn);
    free(s);
}

static void *disco_init(kd_loss_init *c)
{
    int E = kd_teacher_emb_init(c, 2);
    if (E < 0)
        return NULL;
    disco_state *s = calloc(1, sizeof *s);
    if (!s) {
        kd_err_set("loss %s: out of memory", c->instance);
        return NULL;
    }
    snprintf(s->instance, sizeof s->instance, "%s", c->instance);
    s->E = E;
    size_t B = (size_t)c->max_batch;
    s->qn = malloc(sizeof(float) * B * E);
    s->qnorm = malloc(sizeof(float) * B);
    s->dqn = malloc(sizeof(float) * B * E);
    if (!s->qn || !s->qnorm || !s->dqn) {
        kd_err_set("loss %s: out of memory", c->instance);
        disco_free(s);
        return NULL;
    }
    return s;
}

/* Called for view 0 and view 1: the view's term; the trainer sums them. */
static int disco_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    disco_state *s = st;
    const float *t = kd_teacher_emb(b, s->instance, b->view, s->E);
    if (!t)
        return -1;
    *loss = kd_disco_term(b->emb, t, b->n, s->E, weight, b->d_emb, s->qn, s->qnorm, s->dqn);
    return 0;
}

const kd_loss_module kd_loss_disco = {
    .name = "disco",
    .summary = "DisCo's term alone: mean |t.emb_v - n(emb on view v)|^2, v = 0, 1 (DisCo: --loss moco:1,disco:32)",
    .needs = "view0, view1, t.emb0, t.emb1 f32 [B,E] (teacher-extract); a head as wide as the teacher's",
    .monitor = KD_MONITOR_KNN,
    .data_parallel = 1,
    .init = disco_init,
    .compute = disco_compute,
    .free = disco_free,
};
