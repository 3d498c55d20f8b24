/* Loss ssa: the dense term of SSA, sparse spatial aggregation contrastive
 * distillation — our design (METHODS.md "SSA"), from a paper without
 * published method text.  The student's stage map on view0, through the
 * loss's own 1x1 conv + BN aligner (kd_aligner, checkpointed with the
 * trainer's state, never in the deployed model), sparsely aggregated
 * (kd_ssa), is contrasted position by position with the teacher's map of
 * the SAME view, t.map0 (teacher-extract --maps); negatives are the pooled
 * teacher maps of the batch's other images, or a FIFO queue of them
 * (ssa-queue Q, checkpointed).  The arithmetic is kd_ssa_loss
 * (lib/kd_ssa_loss.h).  The global term is the disco loss: SSA as a whole
 * is --loss moco:1,disco:LG,ssa:LD. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "kd_err.h"
#include "kd_loss.h"
#include "kd_names.h"
#include "kd_queue.h"
#include "kd_ssa_loss.h"

typedef struct {
    int k;
    float gamma, tau;
    int queue, stage;
} ssa_opts;

static const kd_loss_opt ssa_optv[] = {
    {"ssa-k", KD_LOPT_INT, offsetof(ssa_opts, k), "8", 1, 1 << 20, "positions kept per position (itself included)"},
    {"ssa-gamma", KD_LOPT_FLOAT, offsetof(ssa_opts, gamma), "2", 1e-3, 100, "exponent of the affinities"},
    {"ssa-tau", KD_LOPT_FLOAT, offsetof(ssa_opts, tau), "0.2", 1e-4, 100, "temperature of the dense contrast"},
    {"ssa-queue", KD_LOPT_INT, offsetof(ssa_opts, queue), "0", 0, 1 << 20,
     "0: the batch's other images are the negatives; Q: a FIFO of Q pooled teacher maps"},
    {"ssa-stage", KD_LOPT_INT, offsetof(ssa_opts, stage), "0", 0, KD_MAX_STAGES,
     "the student's stage whose map is compared (0: the last)"},
    {0}};

typedef struct {
    ssa_opts o;
    char instance[48];
    char tname[KD_NAME_MAX];
    int stage;
    kd_ssa_loss L;
    kd_slab own;    /* the aligner */
    kd_queue queue; /* when o.queue > 0 */
} ssa_state;

static void ssa_free(void *st)
{
    ssa_state *s = st;
    if (!s)
        return;
    kd_ssa_loss_free(&s->L);
    kd_slab_free(&s->own);
    kd_queue_free(&s->queue);
    free(s);
}

/* t.map0 of n images against the first frame's shape, and finite: a NaN
 * would spread through the aligner's batch statistics and the softmax
 * into every image's gradient, and into the queue. */
static int check_map(const ssa_state *s, const kd_tensor *t, int n)
{
    const kd_ssa_loss *L = &s->L;
    if (t->dims[1] != L->D || t->dims[2] != L->ht || t->dims[3] != L->wt) {
        kd_err_set("loss %s: %s is [%lld,%lld,%lld] per image, the first frame's was [%d,%d,%d]", s->instance, s->tname,
                   (long long)t->dims[1], (long long)t->dims[2], (long long)t->dims[3], L->D, L->ht, L->wt);
        return -1;
    }
    size_t per = (size_t)L->D * L->ht * L->wt;
    const float *x = t->data;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < per; j++)
            if (!isfinite(x[i * per + j])) {
                kd_err_set("loss %s: %s image %d is not finite", s->instance, s->tname, i);
                return -1;
            }
    return 0;
}

static void *ssa_init(kd_loss_init *c)
{
    ssa_state *s = calloc(1, sizeof *s);
    if (!s) {
        kd_err_set("loss %s: out of memory", c->instance);
        return NULL;
    }
    s->o = *(const ssa_opts *)c->opts;
    snprintf(s->instance, sizeof s->instance, "%s", c->instance);
    kd_name(s->tname, sizeof s->tname, KD_NAME_MAP, NULL, 0);
    int ns = kd_model_nstages(c->student), C, hs, ws;
    s->stage = s->o.stage ? s->o.stage : ns;
    if (s->stage > ns) {
        kd_err_set("loss %s: ssa-stage %d: the model has stages 1..%d", c->instance, s->stage, ns);
        goto fail;
    }
    const char *hint = "teacher-extract -m TEACHER --maps STAGE";
    if (kd_loss_want_view(c, 0) || kd_loss_want_grad_stage(c, s->stage) ||
        kd_loss_need_tensor(c, s->tname, KD_F32, 4, hint) || !kd_model_stage_map(c->student, s->stage, &C, &hs, &ws))
        goto fail;
    /* the teacher's width and resolution size the aligner and the grid:
     * the first frame must carry the map, in the words of the trainer's
     * check of every frame */
    const kd_tensor *t = kd_frame_cget(c->first, s->tname);
    if (!t) {
        kd_err_set("frame 0: loss %s needs tensor %s (%s)", c->instance, s->tname, hint);
        goto fail;
    }
    if (t->dtype != KD_F32 || t->rank != 4) {
        kd_err_set("frame 0: loss %s needs %s as f32 of rank 4, the frame has %s of rank %d", c->instance, s->tname,
                   kd_dtype_name(t->dtype), t->rank);
        goto fail;
    }
    int D = (int)t->dims[1];
    if (kd_ssa_loss_init(&s->L, c->max_batch, C, hs, ws, D, (int)t->dims[2], (int)t->dims[3], s->o.k, s->o.gamma,
                         s->o.tau, s->o.queue)) {
        kd_err_prefix("loss %s", c->instance);
        goto fail;
    }
    if (kd_aligner_slab(&s->own, C, D, c->seed, 0x737361) ||
        (s->o.queue && kd_queue_init(&s->queue, s->o.queue, D, c->seed, 0x73736171))) {
        kd_err_prefix("loss %s", c->instance);
        goto fail;
    }
    c->params = &s->own;
    return s;
fail:
    ssa_free(s);
    return NULL;
}

static int ssa_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    ssa_state *s = st;
    const kd_tensor *t = kd_loss_tensor(b, s->tname);
    if (!t || check_map(s, t, b->n))
        return -1;
    const float *F = kd_model_stage_map(b->student, s->stage, NULL, NULL, NULL);
    if (!F)
        return -1;
    kd_aligner_p p = kd_aligner_bind(&s->own);
    *loss = kd_ssa_loss_step(&s->L, b->n, F, &p, t->data, s->queue.v, weight, b->d_map[s->stage]);
    return 0;
}

/* The batch's pooled teacher maps enter the queue after the step, as
 * MoCo's keys do: never a negative of their own batch. */
static int ssa_post(void *st, kd_loss_batch *b)
{
    ssa_state *s = st;
    if (s->o.queue)
        kd_queue_push(&s->queue, s->L.pool, b->n);
    return 0;
}

static int ssa_save(void *st, kd_h5 *h, const char *g)
{
    ssa_state *s = st;
    return s->o.queue ? kd_queue_save(&s->queue, h, g) : 0;
}

static int ssa_load(void *st, const kd_h5 *h, const char *g)
{
    ssa_state *s = st;
    return s->o.queue ? kd_queue_load(&s->queue, h, g) : 0;
}

const kd_loss_module kd_loss_ssa = {
    .name = "ssa",
    .summary = "SSA's dense term (our design): InfoNCE of the sparsely aggregated, aligned student map against "
               "t.map0 position by position (SSA: --loss moco:1,disco:LG,ssa:LD)",
    .needs = "view0, t.map0 f32 [B,D,h,w] (teacher-extract --maps) of the same view",
    .monitor = KD_MONITOR_KNN,
    .opts = ssa_optv,
    .opts_size = sizeof(ssa_opts),
    .init = ssa_init,
    .compute = ssa_compute,
    .post = ssa_post,
    .save = ssa_save,
    .load = ssa_load,
    .free = ssa_free,
};
