/* Loss kd: Hinton's knowledge distillation as RepDistiller implements it
 * (DistillKL; METHODS.md "Supervised distillation"):
 *     L_kd = T^2 * mean_b KL(softmax(z_t/T) || softmax(z_s/T)),
 * z_s the student's logits on view0, z_t the teacher's on the same view
 * (t.logits0, teacher-extract).  The cross-entropy term and the gamma/alpha
 * weights are the loss weights: RepDistiller's recipe is
 * `--loss ce:0.1,kd:0.9`. */
#include <stddef.h>

#include "kd_loss.h"
#include "kd_loss_teacher.h"

typedef struct {
    float t;
} kd_opts;

/* kd-t, not t or temperature: other losses have temperatures of their own */
static const kd_loss_opt kd_optv[] = {
    {"kd-t", KD_LOPT_FLOAT, offsetof(kd_opts, t), "4", 1e-3, 1e3, "temperature T"},
    {0}};

typedef struct {
    kd_logit_loss base; /* first */
    kd_opts o;
} kd_state;

static void *kd_init(kd_loss_init *c)
{
    kd_state *s = kd_logit_loss_new(c, sizeof *s);
    if (s)
        s->o = *(const kd_opts *)c->opts;
    return s;
}

static int kd_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    kd_state *s = st;
    const float *zt = kd_teacher_logits(b, s->base.instance, b->view, s->base.K);
    if (!zt)
        return -1;
    *loss = kd_kd_loss(b->logits, zt, b->n, s->base.K, s->o.t, weight, b->d_logits, s->base.work);
    return 0;
}

const kd_loss_module kd_loss_kd = {
    .name = "kd",
    .summary = "KD (RepDistiller): T^2 KL(softmax(t.logits0/T) || softmax(logits/T)) on view0 (--loss ce:0.1,kd:0.9)",
    .needs = "view0, t.logits0 f32 [B,K] (teacher-extract); a classifier with the teacher's K classes",
    .monitor = KD_MONITOR_TOP1,
    .data_parallel = 1,
    .opts = kd_optv,
    .opts_size = sizeof(kd_opts),
    .init = kd_init,
    .compute = kd_compute,
    .free = kd_logit_loss_free,
};
