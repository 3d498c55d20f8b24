/* Loss dkd: decoupled knowledge distillation as mdistiller implements it
 * (Zhao et al. 2022; METHODS.md "Supervised distillation"): with
 * p = softmax(z/T), the target-class binary distribution b = [p_y, 1-p_y]
 * and the non-target distribution q = softmax(z/T - 1000 [k = y]) (the
 * target class masked out as mdistiller does, not dropped),
 *     L_dkd = min(epoch/warmup, 1) * T^2 * mean_b (alpha KL(b_t||b_s) + beta KL(q_t||q_s)),
 * z_s the student's logits on view0, z_t the teacher's (t.logits0), y the
 * frame's labels.  mdistiller counts epochs from 1, the stream from 0: the
 * frame's epoch e is mdistiller's e + 1, so the first epoch trains at
 * 1/warmup, not 0.  The CE term is the ce loss: `--loss ce:1,dkd:1`. */
#include <stddef.h>

#include "kd_loss.h"
#include "kd_loss_teacher.h"
#include "kd_names.h"

typedef struct {
    float alpha, beta, t;
    int warmup;
} dkd_opts;

static const kd_loss_opt dkd_optv[] = {
    {"dkd-alpha", KD_LOPT_FLOAT, offsetof(dkd_opts, alpha), "1", 0, 1e6, "weight of the target-class term TCKD"},
    {"dkd-beta", KD_LOPT_FLOAT, offsetof(dkd_opts, beta), "8", 0, 1e6, "weight of the non-target term NCKD"},
    {"dkd-t", KD_LOPT_FLOAT, offsetof(dkd_opts, t), "4", 1e-3, 1e3, "temperature T"},
    {"dkd-warmup", KD_LOPT_INT, offsetof(dkd_opts, warmup), "20", 1, 1e6,
     "epochs of linear warm-up: factor min((epoch+1)/N, 1), epoch 0-based"},
    {0}};

typedef struct {
    kd_logit_loss base; /* first */
    dkd_opts o;
} dkd_state;

static void *dkd_init(kd_loss_init *c)
{
    if (kd_loss_need_tensor(c, KD_NAME_LABEL, KD_I32, 1, "a labelled dataset through augment"))
        return NULL;
    dkd_state *s = kd_logit_loss_new(c, sizeof *s);
    if (s)
        s->o = *(const dkd_opts *)c->opts;
    return s;
}

static int dkd_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    dkd_state *s = st;
    const kd_logit_loss *l = &s->base;
    const float *zt = kd_teacher_logits(b, l->instance, b->view, l->K);
    if (!zt || kd_check_labels(b, l->instance, l->K))
        return -1;
    double f = kd_dkd_warmup(b->epoch, s->o.warmup);
    *loss = f * kd_dkd_loss(b->logits, zt, b->label, b->n, l->K, s->o.t, s->o.alpha, s->o.beta, (float)(weight * f),
                            b->d_logits, l->work);
    return 0;
}

const kd_loss_module kd_loss_dkd = {
    .name = "dkd",
    .summary = "DKD (mdistiller): warm-up x T^2 (alpha TCKD + beta NCKD) of logits vs t.logits0 on view0 (--loss ce:1,dkd:1)",
    .needs = "view0, t.logits0 f32 [B,K] (teacher-extract), label i32 [B]; a classifier with the teacher's K classes",
    .monitor = KD_MONITOR_TOP1,
    .data_parallel = 1,
    .opts = dkd_optv,
    .opts_size = sizeof(dkd_opts),
    .init = dkd_init,
    .compute = dkd_compute,
    .free = kd_logit_loss_free,
};
