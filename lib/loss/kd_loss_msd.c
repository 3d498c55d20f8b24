/* Loss msd: multi-scale decoupled contrastive distillation, our design
 * (METHODS.md "MSD"; the paper, arXiv 2502.05835, publishes no code).  The
 * teacher's local logits t.msd0 [B,R,K] and category weights t.msdw0 [B,R]
 * come from `aggregate`; the student's are its last-stage map pooled over
 * the same regions and passed through its own classifier, which is trained
 * through them (kd_model_classifier).  The arithmetic is kd_msd (lib/kd_msd.h).
 * msd-space feat compares n(pooled features) instead, with a 1x1 conv + BN
 * aligner of the loss's own when the widths differ. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_loss.h"
#include "kd_msd.h"
#include "kd_names.h"

typedef struct {
    float tau;
    int stride;
    char scales[KD_LOPT_STR_MAX];
    char space[KD_LOPT_STR_MAX];
} msd_opts;

static const kd_loss_opt msd_optv[] = {
    {"msd-tau", KD_LOPT_FLOAT, offsetof(msd_opts, tau), "0.1", 1e-4, 100, "temperature of both contrasts"},
    {"msd-scales", KD_LOPT_STR, offsetof(msd_opts, scales), "1,2,4", 0, 0,
     "window grids, as given to aggregate --scales"},
    {"msd-stride", KD_LOPT_INT, offsetof(msd_opts, stride), "0", 0, 1024,
     "0: adaptive windows; S: sliding windows, as aggregate --stride"},
    {"msd-space", KD_LOPT_STR, offsetof(msd_opts, space), "logits", 0, 0,
     "logits: compare local logits; feat: pooled features (through an aligner if widths differ)"},
    {0}};

typedef struct {
    msd_opts o;
    char instance[48];
    int stage, K;
    kd_msd m;
    kd_slab own; /* feat space, widths differing: the aligner */
    char tname[KD_NAME_MAX], wname[KD_NAME_MAX];
} msd_state;

static void msd_free(void *st)
{
    msd_state *s = st;
    if (!s)
        return;
    kd_msd_free(&s->m);
    kd_slab_free(&s->own);
    free(s);
}

/* "1,2,4" into rg; -1 with kd_err. */
static int parse_scales(const char *instance, const char *txt, kd_regions *rg)
{
    const char *p = txt;
    rg->nscales = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1024 || rg->nscales == KD_REGIONS_MAX_SCALES || (*end && *end != ',') ||
            (*end == ',' && !end[1])) {
            kd_err_set("loss %s: msd-scales: '%s' is not a list of 1 to %d grid sizes such as 1,2,4", instance, txt,
                       KD_REGIONS_MAX_SCALES);
            return -1;
        }
        rg->scales[rg->nscales++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* t.msd0 [n,R,D] and t.msdw0 [n,R] against what the student gives: the
 * same words at init (first frame) and at every step. */
static int check_teacher(const msd_state *s, const kd_tensor *t, const kd_tensor *tw, int n)
{
    const kd_msd *m = &s->m;
    if (t->dims[1] != m->R) {
        kd_err_set("loss %s: %s has %lld regions, the student's %dx%d map at msd-scales %s gives %d "
                   "(aggregate --scales must match)", s->instance, s->tname, (long long)t->dims[1], m->h, m->w,
                   s->o.scales, m->R);
        return -1;
    }
    if (m->space == KD_MSD_LOGITS && t->dims[2] != s->K) {
        kd_err_set("loss %s: %s has %lld classes, the student's classifier %d", s->instance, s->tname,
                   (long long)t->dims[2], s->K);
        return -1;
    }
    if (m->space == KD_MSD_FEAT && t->dims[2] != m->D) {
        kd_err_set("loss %s: %s is %lld wide, the first frame's was %d", s->instance, s->tname, (long long)t->dims[2],
                   m->D);
        return -1;
    }
    if (tw->dims[1] != m->R) {
        kd_err_set("loss %s: %s is not [%d,%d] (aggregate writes it beside %s)", s->instance, s->wname, n, m->R,
                   s->tname);
        return -1;
    }
    /* a NaN would spread through the softmax over the batch into every
     * sample's gradient: refuse it where it enters */
    const float *x = t->data, *w = tw->data;
    size_t row = (size_t)m->R * m->D;
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < row; j++)
            if (!isfinite(x[i * row + j])) {
                kd_err_set("loss %s: %s row %d is not finite", s->instance, s->tname, i);
                return -1;
            }
        for (int r = 0; r < m->R; r++)
            if (!isfinite(w[(size_t)i * m->R + r])) {
                kd_err_set("loss %s: %s row %d is not finite", s->instance, s->wname, i);
                return -1;
            }
    }
    return 0;
}

static void *msd_init(kd_loss_init *c)
{
    msd_state *s = calloc(1, sizeof *s);
    if (!s) {
        kd_err_set("loss %s: out of memory", c->instance);
        return NULL;
    }
    s->o = *(const msd_opts *)c->opts;
    snprintf(s->instance, sizeof s->instance, "%s", c->instance);
    kd_name(s->tname, sizeof s->tname, KD_NAME_MSD, NULL, 0);
    kd_name(s->wname, sizeof s->wname, KD_NAME_MSDW, NULL, 0);
    int feat = !strcmp(s->o.space, "feat");
    if (!feat && strcmp(s->o.space, "logits")) {
        kd_err_set("loss %s: msd-space: '%s' is not logits or feat", c->instance, s->o.space);
        goto fail;
    }
    kd_regions rg = {.stride = s->o.stride};
    float *W, *b, *dW, *db;
    if (parse_scales(c->instance, s->o.scales, &rg))
        goto fail;
    if (!feat && kd_model_classifier(c->student, &W, &b, &dW, &db)) {
        kd_err_prefix("loss %s", c->instance);
        goto fail;
    }
    s->K = kd_model_num_classes(c->student);
    s->stage = kd_model_nstages(c->student);
    const char *hint = feat ? "teacher-extract --maps | aggregate --in t.map0" : "teacher-extract --cam | aggregate --in t.cam0";
    int C, h, w;
    if (kd_loss_want_view(c, 0) || kd_loss_want_grad_stage(c, s->stage) ||
        kd_loss_need_tensor(c, s->tname, KD_F32, 3, hint) || kd_loss_need_tensor(c, s->wname, KD_F32, 2, hint) ||
        !kd_model_stage_map(c->student, s->stage, &C, &h, &w))
        goto fail;
    /* the regions are checked before any step, and the teacher's width
     * sizes the aligner: the first frame must carry both tensors, in the
     * words of the trainer's check of every frame */
    const kd_tensor *t = kd_frame_cget(c->first, s->tname), *tw = kd_frame_cget(c->first, s->wname);
    for (int i = 0; i < 2; i++) {
        const kd_tensor *x = i ? tw : t;
        const char *nm = i ? s->wname : s->tname;
        if (!x) {
            kd_err_set("frame 0: loss %s needs tensor %s (%s)", c->instance, nm, hint);
            goto fail;
        }
        if (x->dtype != KD_F32 || x->rank != 3 - i) {
            kd_err_set("frame 0: loss %s needs %s as f32 of rank %d, the frame has %s of rank %d", c->instance, nm,
                       3 - i, kd_dtype_name(x->dtype), x->rank);
            goto fail;
        }
    }
    int D = feat ? (int)t->dims[2] : s->K;
    if (kd_msd_init(&s->m, &rg, feat ? KD_MSD_FEAT : KD_MSD_LOGITS, c->max_batch, C, h, w, D, s->o.tau)) {
        kd_err_prefix("loss %s", c->instance);
        goto fail;
    }
    if (check_teacher(s, t, tw, (int)t->dims[0]) || (s->m.align && kd_aligner_slab(&s->own, C, D, c->seed, 0x6d7364)))
        goto fail;
    if (s->m.align)
        c->params = &s->own;
    return s;
fail:
    msd_free(s);
    return NULL;
}

static int msd_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    msd_state *s = st;
    const kd_tensor *t = kd_loss_tensor(b, s->tname), *tw = kd_loss_tensor(b, s->wname);
    if (!t || check_teacher(s, t, tw, b->n))
        return -1;
    kd_msd_params p = {0};
    if (s->m.space == KD_MSD_LOGITS && kd_model_classifier(b->student, (float **)&p.W, (float **)&p.b, &p.dW, &p.db))
        return -1;
    if (s->m.align) {
        kd_aligner_p a = kd_aligner_bind(&s->own);
        p.aw = a.w, p.daw = a.dw, p.ag = a.g, p.dag = a.dg, p.ab = a.b, p.dab = a.db;
    }
    const float *F = kd_model_stage_map(b->student, s->stage, NULL, NULL, NULL);
    if (!F)
        return -1;
    *loss = kd_msd_step(&s->m, b->n, F, &p, t->data, tw->data, weight, b->d_map[s->stage]);
    return 0;
}

const kd_loss_module kd_loss_msd = {
    .name = "msd",
    .summary = "MSD (our design): sample- and feature-wise contrasts of multi-scale local logits against t.msd0",
    .needs = "view0, t.msd0 f32 [B,R,K] and t.msdw0 f32 [B,R] (aggregate); a linear classifier of K classes",
    .monitor = KD_MONITOR_TOP1,
    .opts = msd_optv,
    .opts_size = sizeof(msd_opts),
    .init = msd_init,
    .compute = msd_compute,
    .free = msd_free,
};
