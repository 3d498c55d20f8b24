/* test_trainer — kd_train's contract with the losses (kd_loss.h, kd_train.h):
 * the hook order of a step, gradients accumulating over student views,
 * loss-owned parameters stepped and checkpointed, bit-identical resume,
 * the messages for frames that lack what a loss needs, and the schedule's
 * length from the stream.
 *
 * The losses here are test modules ("probe"), not registered ones: the
 * trainer takes any kd_loss_module.  To check a new trainer behaviour, add
 * a field to probe_opts and a test_* function called from main. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_err.h"
#include "kd_loss.h"
#include "kd_model_io.h"
#include "kd_names.h"
#include "kd_rng.h"
#include "kd_test.h"
#include "kd_train.h"

enum { N = 4, S = 8, D = 64, NW = 5 };

/* ---- the probe loss: L = sum(feat . R) on each view it wants, plus
 * 0.5 |w - target|^2 over its own parameters w on view 0 ---- */
typedef struct {
    int views;      /* bitmask */
    int own;        /* owns parameters */
    int need_extra; /* needs tensor "t.extra" */
    float target;
    int stage;      /* > 0: also sum(map_stage . R2), a gradient into that stage */
} probe_opts;

static const kd_loss_opt probe_optv[] = {
    {"views", KD_LOPT_INT, offsetof(probe_opts, views), "1", 1, 255, "student views"},
    {"own", KD_LOPT_INT, offsetof(probe_opts, own), "0", 0, 1, "own parameters"},
    {"need-extra", KD_LOPT_INT, offsetof(probe_opts, need_extra), "0", 0, 1, "needs t.extra"},
    {"target", KD_LOPT_FLOAT, offsetof(probe_opts, target), "1", -10, 10, "target of w"},
    {"stage", KD_LOPT_INT, offsetof(probe_opts, stage), "0", 0, 8, "stage gradient"},
    {0}};

static char events[1024];
static void ev(const char *fmt, const char *who, int v)
{
    char e[64];
    snprintf(e, sizeof e, fmt, who, v);
    snprintf(events + strlen(events), sizeof events - strlen(events), "%s%s", events[0] ? " " : "", e);
}

typedef struct {
    probe_opts o;
    char name[48];
    kd_slab slab;
    float R[N * D];
    float *R2;
    size_t nmap;
} probe_state;

static void *probe_init(kd_loss_init *c)
{
    probe_state *s = calloc(1, sizeof *s);
    s->o = *(const probe_opts *)c->opts;
    snprintf(s->name, sizeof s->name, "%s", c->instance);
    for (int v = 0; v < 8; v++)
        if (s->o.views & (1 << v))
            kd_loss_want_view(c, v);
    if (s->o.need_extra)
        kd_loss_need_tensor(c, "t.extra", KD_F32, 2, "a test");
    if (s->o.own) {
        kd_pview pv = {.name = "w", .rank = 1, .shape = {NW}};
        if (kd_slab_init(&s->slab, &pv, 1))
            return NULL;
        for (int i = 0; i < NW; i++)
            s->slab.p[i] = 0.1f * (float)i;
        c->params = &s->slab;
    }
    kd_rng r = kd_rng_make(77, 0, 0);
    for (int i = 0; i < N * D; i++)
        s->R[i] = kd_rng_normal(&r);
    if (s->o.stage) {
        int mc, mh, mw;
        if (kd_loss_want_grad_stage(c, s->o.stage) || !kd_model_stage_map(c->student, s->o.stage, &mc, &mh, &mw))
            return NULL;
        s->nmap = (size_t)N * mc * mh * mw;
        s->R2 = malloc(sizeof(float) * s->nmap);
        kd_rng r2 = kd_rng_make(78, 0, 0);
        for (size_t i = 0; i < s->nmap; i++)
            s->R2[i] = kd_rng_normal(&r2);
    }
    ev("init:%s", s->name, 0);
    return s;
}

/* A checksum of the student's parameters: the optimiser step must fall
 * between the last compute and post. */
static double psum(kd_model *m)
{
    size_t n;
    const float *p = kd_model_params(m, &n);
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i] * (double)(i % 7 + 1);
    return s;
}
static double sum_pre, sum_compute, sum_post;
static const float *last_x[8]; /* the input compute saw, per view */

static int probe_pre(void *st, kd_loss_batch *b)
{
    ev("pre:%s", ((probe_state *)st)->name, 0);
    sum_pre = psum(b->student);
    return 0;
}

static int probe_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    probe_state *s = st;
    ev("c%2$d:%1$s", s->name, b->view);
    sum_compute = psum(b->student);
    last_x[b->view] = b->x;
    double l = 0;
    for (int i = 0; i < b->n * D; i++) {
        l += (double)b->feat[i] * s->R[i];
        b->d_feat[i] += weight * s->R[i];
    }
    if (s->o.stage) {
        int c, h, w;
        const float *map = kd_model_stage_map(b->student, s->o.stage, &c, &h, &w);
        for (size_t i = 0; i < (size_t)b->n * c * h * w; i++) {
            l += (double)map[i] * s->R2[i];
            b->d_map[s->o.stage][i] += weight * s->R2[i];
        }
    }
    if (s->o.own && b->view == 0)
        for (int i = 0; i < NW; i++) {
            float d = s->slab.p[i] - s->o.target;
            l += 0.5 * d * d;
            s->slab.g[i] += weight * d;
        }
    *loss = l;
    return 0;
}

static int probe_post(void *st, kd_loss_batch *b)
{
    ev("post:%s", ((probe_state *)st)->name, 0);
    sum_post = psum(b->student);
    return 0;
}

static void probe_free(void *st)
{
    probe_state *s = st;
    kd_slab_free(&s->slab);
    free(s->R2);
    free(s);
}

static const kd_loss_module probe = {
    .name = "probe", .summary = "test", .needs = "test", .monitor = KD_MONITOR_TOP1,
    .opts = probe_optv, .opts_size = sizeof(probe_opts),
    .init = probe_init, .pre = probe_pre, .compute = probe_compute, .post = probe_post, .free = probe_free};

/* ---- fixtures ---- */
static kd_model *student(void)
{
    kd_arch_opts o = {.arch = "resnet20", .in_channels = 1};
    return kd_model_new(&o, 11);
}

/* Frame `step` of a run with two views; meta: epochs/batches when given. */
static void make_frame(kd_frame *f, long step, int epochs, int batches)
{
    kd_frame_clear(f);
    int64_t dims[4] = {N, 1, S, S};
    for (int v = 0; v < 2; v++) {
        char nm[KD_NAME_MAX];
        kd_tensor *t = kd_frame_add(f, kd_name(nm, sizeof nm, KD_NAME_VIEW, NULL, v), KD_F32, 4, dims);
        kd_rng r = kd_rng_make(5, (uint64_t)step, (uint64_t)v);
        float *x = t->data;
        for (int i = 0; i < N * S * S; i++)
            x[i] = kd_rng_normal(&r);
    }
    kd_frame_meta_set(f, KD_META_STEP, "%ld", step);
    kd_frame_meta_set(f, KD_META_EPOCH, "%ld", batches ? step / batches : 0);
    if (epochs)
        kd_frame_meta_set(f, KD_META_EPOCHS, "%d", epochs);
    if (batches)
        kd_frame_meta_set(f, KD_META_BATCHES, "%d", batches);
}

static kd_train_opts plain(void)
{
    return (kd_train_opts){.sgd = {.momentum = 0}, .schedule = "const", .lr = 0.1, .seed = 1};
}

static void *opts_with(const char *a, const char *va, const char *b, const char *vb)
{
    void *o = calloc(1, sizeof(probe_opts));
    kd_loss_opts_defaults(&probe, o);
    if (a)
        kd_loss_opts_set(&probe, o, a, va);
    if (b)
        kd_loss_opts_set(&probe, o, b, vb);
    return o;
}

/* ---- tests ---- */
static void test_order_and_views(void)
{
    kd_frame f;
    kd_frame_init(&f);
    make_frame(&f, 0, 0, 0);
    kd_train_opts to = plain();
    kd_trainer *t = kd_trainer_new(student(), &to);
    void *o1 = opts_with("views", "3", NULL, NULL), *o2 = opts_with(NULL, NULL, NULL, NULL);
    KD_CHECK(t && kd_trainer_add_loss(t, &probe, 1, o1, -1) == 0 && kd_trainer_add_loss(t, &probe, 1, o2, -1) == 0,
             "two instances of one loss");
    KD_CHECK(!strcmp(kd_trainer_loss_name(t, 0), "probe") && !strcmp(kd_trainer_loss_name(t, 1), "probe.2"),
             "instance names: %s %s", kd_trainer_loss_name(t, 0), kd_trainer_loss_name(t, 1));
    events[0] = 0;
    KD_CHECK(kd_trainer_init(t, &f) == 0, "init with a constant schedule and no length");
    KD_CHECK(kd_trainer_step(t, &f, 0) == 1, "one step");
    const char *want = "init:probe init:probe.2 pre:probe pre:probe.2 c0:probe c0:probe.2 c1:probe post:probe "
                       "post:probe.2";
    KD_CHECK(!strcmp(events, want), "hook order: %s", events);
    KD_CHECK(sum_pre == sum_compute && sum_compute != sum_post,
             "the parameters change between the last compute and post only (%.9g %.9g %.9g)", sum_pre, sum_compute,
             sum_post);
    KD_CHECK(last_x[0] == kd_frame_get(&f, "view0")->data && last_x[1] == kd_frame_get(&f, "view1")->data,
             "compute(v) sees view v as its input");
    KD_CHECK(kd_trainer_last(t)->n == N && kd_trainer_steps(t) == 1, "step info: n %d, steps %ld",
             kd_trainer_last(t)->n, kd_trainer_steps(t));
    free(o1), free(o2);
    kd_trainer_free(t);

    /* gradients accumulate over the views: the same as two forwards and
     * backwards by hand, then p -= lr * g (momentum 0, wd 0) */
    make_frame(&f, 0, 0, 0);
    kd_trainer *a = kd_trainer_new(student(), &to);
    void *o = opts_with("views", "3", NULL, NULL);
    kd_trainer_add_loss(a, &probe, 0.5f, o, -1);
    KD_CHECK(kd_trainer_init(a, &f) == 0 && kd_trainer_step(a, &f, 0) == 1, "two-view step");
    kd_model *m = student();
    kd_model_prepare(m, N, S, S);
    kd_model_zero_grad(m);
    probe_state ref;
    kd_rng r = kd_rng_make(77, 0, 0);
    for (int i = 0; i < N * D; i++)
        ref.R[i] = 0.5f * kd_rng_normal(&r);
    for (int v = 0; v < 2; v++) {
        char nm[KD_NAME_MAX];
        kd_model_forward(m, kd_frame_get(&f, kd_name(nm, sizeof nm, KD_NAME_VIEW, NULL, v))->data, N, 1, 0);
        kd_model_backward(m, ref.R, NULL, NULL, NULL);
    }
    size_t np, ng, na;
    float *p = kd_model_params(m, &np), *g = kd_model_grads(m, &ng);
    for (size_t i = 0; i < np; i++)
        p[i] -= 0.1f * g[i];
    const float *pa = kd_model_params(kd_trainer_model(a), &na);
    size_t nb, nbb;
    const float *ba = kd_model_buffers(kd_trainer_model(a), &nb), *bm = kd_model_buffers(m, &nbb);
    KD_CHECK(na == np && !memcmp(pa, p, sizeof(float) * np), "parameters after a two-view step equal the hand-made "
             "update bit for bit");
    KD_CHECK(nb == nbb && !memcmp(ba, bm, sizeof(float) * nb),
             "BN running statistics updated by both forwards, as by hand");
    free(o);
    kd_model_free(m);
    kd_trainer_free(a);
    kd_frame_free(&f);
}

/* Run steps [from, to) of a 2-epoch x 3-batch run; resume from ckpt if given. */
static kd_trainer *run(long from, long to_, const char *resume, int own)
{
    kd_frame f;
    kd_frame_init(&f);
    make_frame(&f, 0, 2, 3);
    kd_train_opts to = {.sgd = {.momentum = 0.9f, .wd = 1e-3f}, .schedule = "cosine", .lr = 0.05, .seed = 1};
    kd_model *m = resume ? kd_model_load(resume) : student();
    kd_trainer *t = kd_trainer_new(m, &to);
    void *o = opts_with("own", own ? "1" : "0", "views", "3");
    kd_trainer_add_loss(t, &probe, 1, o, 0.01f);
    free(o);
    if (kd_trainer_init(t, &f) || (resume && kd_trainer_resume(t, resume))) {
        kd_frame_free(&f);
        kd_trainer_free(t);
        return NULL;
    }
    for (long s = 0; s < to_; s++) {
        make_frame(&f, s, 2, 3);
        int rc = kd_trainer_step(t, &f, s);
        if (rc != (s >= from ? 1 : 0)) {
            kd_frame_free(&f);
            kd_trainer_free(t);
            return NULL;
        }
    }
    kd_frame_free(&f);
    return t;
}

static void test_resume_and_own_params(const char *dir)
{
    char ck[512];
    snprintf(ck, sizeof ck, "%s/trainer.ckpt.h5", dir);
    kd_trainer *a = run(0, 6, NULL, 1), *b = run(0, 3, NULL, 1);
    KD_CHECK(a && b, "6 steps, and 3 steps");
    if (!a || !b)
        return;
    KD_CHECK(kd_trainer_total(a) == 6, "cosine length from the stream: epochs 2 x batches 3 = %ld",
             kd_trainer_total(a));
    KD_CHECK(kd_trainer_save(b, ck) == 0, "checkpoint after 3 steps");
    kd_trainer *c = run(3, 6, ck, 1);
    KD_CHECK(c != NULL, "resume and run steps 3..5");
    if (!c)
        return;
    size_t na, nc;
    const float *pa = kd_model_params(kd_trainer_model(a), &na), *pc = kd_model_params(kd_trainer_model(c), &nc);
    KD_CHECK(na == nc && !memcmp(pa, pc, sizeof(float) * na), "resumed model parameters bit-identical");
    size_t nba, nbc;
    const float *ba = kd_model_buffers(kd_trainer_model(a), &nba), *bc = kd_model_buffers(kd_trainer_model(c), &nbc);
    KD_CHECK(nba == nbc && !memcmp(ba, bc, sizeof(float) * nba), "resumed BN running statistics bit-identical");
    kd_h5 ha, hc;
    char ca[512];
    snprintf(ca, sizeof ca, "%s/a.h5", dir);
    KD_CHECK(kd_trainer_save(a, ca) == 0 && kd_trainer_save(c, ck) == 0, "save both");
    float wa[NW], wc[NW];
    int ok = kd_h5_open(&ha, ca, "model") == 0 && kd_h5_open(&hc, ck, "model") == 0 &&
             kd_h5_read(&ha, "train/probe/own_params", KD_F32, 0, NW, wa) == 0 &&
             kd_h5_read(&hc, "train/probe/own_params", KD_F32, 0, NW, wc) == 0;
    KD_CHECK(ok, "own parameters are in the checkpoint under train/probe/own_params");
    KD_CHECK(ok && !memcmp(wa, wc, sizeof wa), "resumed own parameters bit-identical");
    /* w follows SGD with the loss's own weight decay 0.01, momentum 0.9 and
     * the cosine schedule, from w = 0.1 i towards the target 1 */
    double worst = 0;
    for (int i = 0; i < NW; i++) {
        float w = 0.1f * (float)i, buf = 0;
        for (int st = 0; st < 6; st++) {
            float lr = (float)(0.05 * 0.5 * (1 + cos(M_PI * st / 6.0)));
            float d = (w - 1.0f) + 0.01f * w;
            buf = 0.9f * buf + d;
            w -= lr * buf;
        }
        worst = fmax(worst, fabs(w - wa[i]));
    }
    KD_CHECK(ok && worst < 1e-6, "own parameters stepped by SGD as by hand (worst %.1e; w0 %.4f, w4 %.4f)", worst,
             wa[0], wa[4]);
    if (ok)
        kd_h5_close(&ha), kd_h5_close(&hc);
    /* a checkpoint of other losses is refused */
    kd_frame f;
    kd_frame_init(&f);
    make_frame(&f, 0, 2, 3);
    kd_train_opts to = plain();
    kd_trainer *d = kd_trainer_new(kd_model_load(ck), &to);
    kd_trainer_add_loss(d, &probe, 2, NULL, -1);
    KD_CHECK(kd_trainer_init(d, &f) == 0 && kd_trainer_resume(d, ck) == -1 &&
                 strstr(kd_err_get(), "the checkpoint was trained with --loss probe:1, not probe:2"),
             "resume with other loss weights: %s", kd_err_get());
    kd_trainer_free(d);
    kd_frame_free(&f);
    kd_trainer_free(a), kd_trainer_free(b), kd_trainer_free(c);
    unlink(ck), unlink(ca);
}

static void test_frames_and_length(void)
{
    kd_frame f;
    kd_frame_init(&f);
    make_frame(&f, 0, 0, 0);
    kd_train_opts to = {.schedule = "cosine", .lr = 0.1};
    kd_trainer *t = kd_trainer_new(student(), &to);
    kd_trainer_add_loss(t, &probe, 1, NULL, -1);
    KD_CHECK(kd_trainer_init(t, &f) == KD_TRAIN_NO_LENGTH, "cosine without epochs/batches: %s", kd_err_get());
    kd_trainer_free(t);
    to.epochs = 3;
    make_frame(&f, 0, 0, 4);
    t = kd_trainer_new(student(), &to);
    kd_trainer_add_loss(t, &probe, 1, NULL, -1);
    KD_CHECK(kd_trainer_init(t, &f) == 0 && kd_trainer_total(t) == 12, "--epochs 3 x batches 4 = %ld",
             kd_trainer_total(t));
    kd_trainer_free(t);
    to.total_steps = 7;
    make_frame(&f, 0, 5, 4);
    t = kd_trainer_new(student(), &to);
    kd_trainer_add_loss(t, &probe, 1, NULL, -1);
    KD_CHECK(kd_trainer_init(t, &f) == 0 && kd_trainer_total(t) == 7, "--total-steps overrides: %ld",
             kd_trainer_total(t));
    kd_trainer_free(t);

    to = plain();
    t = kd_trainer_new(student(), &to);
    void *o = opts_with("need-extra", "1", "views", "2");
    kd_trainer_add_loss(t, &probe, 1, o, -1);
    free(o);
    make_frame(&f, 0, 0, 0);
    KD_CHECK(kd_trainer_init(t, &f) == 0, "init");
    KD_CHECK(kd_trainer_step(t, &f, 3) == -1 && !strcmp(kd_err_get(), "frame 3: loss probe needs tensor t.extra (a test)"),
             "a missing tensor: %s", kd_err_get());
    kd_tensor *e = kd_frame_add(&f, "t.extra", KD_I32, 2, (int64_t[]){N, 2});
    KD_CHECK(e && kd_trainer_step(t, &f, 3) == -1 &&
                 !strcmp(kd_err_get(), "frame 3: loss probe needs t.extra as f32 of rank 2 with 4 rows, the frame has "
                                       "i32 of rank 2 with 4 rows"),
             "a tensor of the wrong dtype: %s", kd_err_get());
    kd_frame_remove(&f, "view1");
    kd_frame_add(&f, "t.extra", KD_F32, 2, (int64_t[]){N, 2});
    KD_CHECK(kd_trainer_step(t, &f, 4) == -1 &&
                 !strcmp(kd_err_get(), "frame 4: the student trains on view1, which the frame lacks (augment --views 2)"),
             "a missing view: %s", kd_err_get());
    kd_trainer_free(t);
    kd_frame_free(&f);
}

/* A gradient into stage 1 (and the features), as kd_model_backward_dout by hand. */
static void test_stage_gradient(void)
{
    kd_frame f;
    kd_frame_init(&f);
    make_frame(&f, 0, 0, 0);
    kd_train_opts to = plain();
    kd_trainer *a = kd_trainer_new(student(), &to);
    void *o = opts_with("stage", "1", NULL, NULL);
    kd_trainer_add_loss(a, &probe, 1, o, -1);
    free(o);
    KD_CHECK(kd_trainer_init(a, &f) == 0 && kd_trainer_step(a, &f, 0) == 1, "a step with a stage-1 gradient: %s",
             kd_err_get());
    kd_model *m = student();
    KD_CHECK(kd_model_grad_stage(m, 1) == 0 && kd_model_prepare(m, N, S, S) == 0, "by hand: stage 1 declared");
    int c, h, w;
    kd_model_stage_map(m, 1, &c, &h, &w);
    size_t nm = (size_t)N * c * h * w;
    float *R2 = malloc(sizeof(float) * nm), R[N * D];
    kd_rng r = kd_rng_make(77, 0, 0), r2 = kd_rng_make(78, 0, 0);
    for (int i = 0; i < N * D; i++)
        R[i] = kd_rng_normal(&r);
    for (size_t i = 0; i < nm; i++)
        R2[i] = kd_rng_normal(&r2);
    kd_model_zero_grad(m);
    kd_model_forward(m, kd_frame_get(&f, "view0")->data, N, 1, 0);
    kd_model_dout g = {.features = R};
    g.map[1] = R2;
    KD_CHECK(kd_model_backward_dout(m, &g) == 0, "backward with the stage gradient");
    size_t np, ng, na;
    float *p = kd_model_params(m, &np), *gr = kd_model_grads(m, &ng);
    for (size_t i = 0; i < np; i++)
        p[i] -= 0.1f * gr[i];
    const float *pa = kd_model_params(kd_trainer_model(a), &na);
    KD_CHECK(na == np && !memcmp(pa, p, sizeof(float) * np), "the trainer's step with a stage gradient equals the "
             "hand-made one bit for bit");
    free(R2);
    kd_model_free(m);
    kd_trainer_free(a);
    kd_frame_free(&f);
}

/* The validation monitor follows the losses and the model. */
static void test_monitor(void)
{
    kd_train_opts to = plain();
    kd_arch_opts oc = {.arch = "resnet20", .in_channels = 1, .num_classes = 10, .head_hidden = 16, .head_out = 8};
    kd_trainer *t = kd_trainer_new(kd_model_new(&oc, 1), &to);
    kd_trainer_add_loss(t, &probe, 1, NULL, -1);
    KD_CHECK(kd_trainer_monitor(t) == KD_MONITOR_TOP1, "a classifier and top-1 losses: the top-1 monitor");
    kd_trainer_add_loss(t, kd_loss_find("moco"), 1, NULL, -1);
    KD_CHECK(kd_trainer_monitor(t) == KD_MONITOR_KNN, "with moco (a representation loss): the kNN monitor");
    kd_trainer_free(t);
    t = kd_trainer_new(student(), &to);
    kd_trainer_add_loss(t, &probe, 1, NULL, -1);
    KD_CHECK(kd_trainer_monitor(t) == KD_MONITOR_KNN, "no classifier: the kNN monitor");
    kd_trainer_free(t);
}

int main(void)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    test_order_and_views();
    test_resume_and_own_params(dir);
    test_frames_and_length();
    test_stage_gradient();
    test_monitor();
    return KD_TEST_DONE();
}
