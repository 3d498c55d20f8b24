/* test_ssl_trainer — the disco and seed modules through the trainer's
 * contract (kd_loss.h, kd_train.h): `moco:1,disco:W` runs MoCo's compute on
 * view 0 only and disco's on views 0 and 1, disco's term being the sum of
 * the two views'; the width, head and finiteness checks with their
 * messages; seed's queue after post (FIFO, wrapping) and a checkpoint
 * round trip that restores queue and pointer bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_loss.h"
#include "kd_model_io.h"
#include "kd_names.h"
#include "kd_rng.h"
#include "kd_test.h"
#include "kd_train.h"

enum { N = 4, S = 8, E = 16 };

extern const kd_loss_module kd_loss_moco, kd_loss_disco, kd_loss_seed;

/* ---- spies: the registered modules with their compute logged ---- */
static char events[512];
static double disco_view_term[2];
static int (*real_compute[2])(void *, kd_loss_batch *, float, double *);

static void ev(const char *who, int v)
{
    snprintf(events + strlen(events), sizeof events - strlen(events), "%s%s:c%d", events[0] ? " " : "", who, v);
}

static int spy_moco(void *st, kd_loss_batch *b, float w, double *l)
{
    ev("moco", b->view);
    return real_compute[0](st, b, w, l);
}

static int spy_disco(void *st, kd_loss_batch *b, float w, double *l)
{
    ev("disco", b->view);
    int rc = real_compute[1](st, b, w, l);
    disco_view_term[b->view & 1] = *l;
    return rc;
}

static kd_model *student(int head_out)
{
    kd_arch_opts o = {.arch = "resnet20", .in_channels = 1, .head_hidden = head_out ? 32 : 0, .head_out = head_out};
    return kd_model_new(&o, 11);
}

/* Frame `step`: two views, t.emb0/t.emb1 [N,W] normalised. */
static void make_frame(kd_frame *f, long step, int W)
{
    kd_frame_clear(f);
    char nm[KD_NAME_MAX];
    for (int v = 0; v < 2; v++) {
        kd_tensor *t = kd_frame_add(f, kd_name(nm, sizeof nm, KD_NAME_VIEW, NULL, v), KD_F32, 4,
                                    (int64_t[]){N, 1, S, S});
        kd_rng r = kd_rng_make(5, (uint64_t)step, (uint64_t)v);
        for (int i = 0; i < N * S * S; i++)
            ((float *)t->data)[i] = kd_rng_normal(&r);
        kd_tensor *e = kd_frame_add(f, kd_name(nm, sizeof nm, KD_NAME_EMB, NULL, v), KD_F32, 2, (int64_t[]){N, W});
        float *x = e->data, norm[N];
        kd_rng r2 = kd_rng_make(6, (uint64_t)step, (uint64_t)v);
        for (int i = 0; i < N * W; i++)
            x[i] = kd_rng_normal(&r2);
        kd_l2norm_forward(x, x, norm, N, W);
    }
    kd_frame_meta_set(f, KD_META_STEP, "%ld", step);
}

static kd_train_opts plain(void)
{
    return (kd_train_opts){.sgd = {.momentum = 0.9f}, .schedule = "const", .lr = 0.05, .seed = 1};
}

static void *opts(const kd_loss_module *m, const char *a, const char *va)
{
    void *o = calloc(1, m->opts_size ? m->opts_size : 1);
    kd_loss_opts_defaults(m, o);
    if (a)
        kd_loss_opts_set(m, o, a, va);
    return o;
}

static void test_compose(void)
{
    kd_loss_module moco = kd_loss_moco, disco = kd_loss_disco;
    real_compute[0] = moco.compute, real_compute[1] = disco.compute;
    moco.compute = spy_moco, disco.compute = spy_disco;
    kd_frame f;
    kd_frame_init(&f);
    make_frame(&f, 0, E);
    kd_train_opts to = plain();
    kd_trainer *t = kd_trainer_new(student(E), &to);
    void *mo = opts(&moco, "queue", "16");
    KD_CHECK(t && kd_trainer_add_loss(t, &moco, 1, mo, -1) == 0 && kd_trainer_add_loss(t, &disco, 32, NULL, -1) == 0 &&
                 kd_trainer_init(t, &f) == 0,
             "moco:1,disco:32 initialised: %s", kd_err_get());
    free(mo);
    events[0] = 0;
    KD_CHECK(kd_trainer_step(t, &f, 0) == 1, "one step: %s", kd_err_get());
    KD_CHECK(!strcmp(events, "moco:c0 disco:c0 disco:c1"), "moco on view 0 only, disco on views 0 and 1: %s", events);
    const kd_step_info *si = kd_trainer_last(t);
    double sum = disco_view_term[0] + disco_view_term[1];
    KD_CHECK(si->term[1] == sum && sum > 0, "loss_disco %.6f is the sum of the views' terms %.6f + %.6f", si->term[1],
             disco_view_term[0], disco_view_term[1]);
    KD_CHECK(fabs(si->loss - (si->term[0] + 32 * si->term[1])) <= 1e-9 * si->loss,
             "the step's loss is moco + 32 disco (%.6f)", si->loss);
    KD_CHECK(kd_trainer_monitor(t) == KD_MONITOR_KNN, "monitor: kNN");
    /* a NaN in the teacher's embedding of view 1 stops at its row */
    make_frame(&f, 1, E);
    ((float *)kd_frame_get(&f, "t.emb1")->data)[3 * E + 5] = NAN;
    KD_CHECK(kd_trainer_step(t, &f, 1) == -1 && !strcmp(kd_err_get(), "frame 1: loss disco: t.emb1 row 3 is not finite"),
             "NaN teacher: %s", kd_err_get());
    kd_trainer_free(t);
    kd_frame_free(&f);
}

static void test_init_checks(void)
{
    kd_frame f;
    kd_frame_init(&f);
    make_frame(&f, 0, 32);
    const kd_loss_module *mods[2] = {&kd_loss_disco, &kd_loss_seed};
    for (int k = 0; k < 2; k++) {
        kd_train_opts to = plain();
        kd_trainer *t = kd_trainer_new(student(E), &to);
        kd_trainer_add_loss(t, mods[k], 1, NULL, -1);
        char want[256];
        snprintf(want, sizeof want, "loss %s: the teacher's embeddings (t.emb0) are 32 wide, the student's head gives "
                 "16 (model-init --head mlp:H:32)", mods[k]->name);
        KD_CHECK(kd_trainer_init(t, &f) == -1 && !strcmp(kd_err_get(), want), "%s, teacher wider: %s",
                 mods[k]->name, kd_err_get());
        kd_trainer_free(t);
        t = kd_trainer_new(student(0), &to);
        kd_trainer_add_loss(t, mods[k], 1, NULL, -1);
        snprintf(want, sizeof want, "loss %s: the model has no projection head (model-init --head mlp:HIDDEN:OUT)",
                 mods[k]->name);
        KD_CHECK(kd_trainer_init(t, &f) == -1 && !strcmp(kd_err_get(), want), "%s without a head: %s", mods[k]->name,
                 kd_err_get());
        kd_trainer_free(t);
    }
    /* the needs, as declared to the trainer */
    kd_model *m = student(E);
    KD_CHECK(m && kd_model_prepare(m, N, S, S) == 0, "a student with a head");
    make_frame(&f, 0, E);
    for (int k = 0; k < 2; k++) {
        kd_loss_init c = {.student = m, .first = &f, .seed = 1, .max_batch = N, .c = 1, .h = S, .w = S,
                          .instance = mods[k]->name};
        void *o = opts(mods[k], NULL, NULL);
        c.opts = o;
        void *st = mods[k]->init(&c);
        int ok = st && (k ? c.views == 1 && c.nneeds == 1 : c.views == 3 && c.nneeds == 2 &&
                                                                 !strcmp(c.needs[1].name, "t.emb1")) &&
                 !strcmp(c.needs[0].name, "t.emb0") && c.needs[0].dtype == KD_F32 && c.needs[0].rank == 2 &&
                 !strcmp(c.needs[0].hint, "teacher-extract -m TEACHER");
        KD_CHECK(ok, "%s: views %#x, %d needs (%s)", mods[k]->name, c.views, c.nneeds, c.nneeds ? c.needs[0].name : "");
        if (st)
            mods[k]->free(st);
        free(o);
    }
    kd_model_free(m);
    kd_frame_free(&f);
}

/* queue [K,E] and its pointer from a checkpoint */
static int read_queue(const char *path, int K, float *q, int64_t *ptr)
{
    kd_h5 h;
    if (kd_h5_open(&h, path, "model"))
        return -1;
    int rc = kd_h5_read(&h, "train/seed/queue", KD_F32, 0, K, q) || kd_h5_attr_get_i64(&h, "train/seed/queue", "ptr", ptr);
    kd_h5_close(&h);
    return rc ? -1 : 0;
}

static kd_trainer *seed_trainer(const char *resume, kd_frame *f)
{
    kd_train_opts to = plain();
    kd_trainer *t = kd_trainer_new(resume ? kd_model_load(resume) : student(E), &to);
    void *o = opts(&kd_loss_seed, "seed-queue", "6");
    kd_loss_opts_set(&kd_loss_seed, o, "tau-t", "0.05");
    int ok = t && kd_trainer_add_loss(t, &kd_loss_seed, 1, o, -1) == 0 && kd_trainer_init(t, f) == 0 &&
             (!resume || kd_trainer_resume(t, resume) == 0);
    free(o);
    if (!ok) {
        kd_trainer_free(t);
        return NULL;
    }
    return t;
}

static void test_seed_queue(const char *dir)
{
    enum { K = 6 };
    char ck[512], ck2[512];
    snprintf(ck, sizeof ck, "%s/seed.ckpt.h5", dir);
    snprintf(ck2, sizeof ck2, "%s/seed2.ckpt.h5", dir);
    kd_frame f, g;
    kd_frame_init(&f), kd_frame_init(&g);
    make_frame(&f, 0, E);
    kd_trainer *a = seed_trainer(NULL, &f);
    KD_CHECK(a != NULL, "seed trainer: %s", kd_err_get());
    if (!a)
        return;
    float q[K * E], q2[K * E];
    int64_t ptr = -1, ptr2 = -2;
    KD_CHECK(kd_trainer_save(a, ck) == 0 && read_queue(ck, K, q, &ptr) == 0 && ptr == 0, "queue at init, ptr 0");
    double n2 = 0;
    for (int j = 0; j < E; j++)
        n2 += (double)q[j] * q[j];
    KD_CHECK(fabs(n2 - 1) < 1e-6, "the initial queue rows are unit vectors (|q0|^2 = %.7f)", n2);
    /* step 0 enqueues frame 0's rows 0..3 at 0..3; step 1 frame 1's rows 0,1
     * at 4,5 and 2,3 at 0,1 */
    make_frame(&g, 1, E);
    KD_CHECK(kd_trainer_step(a, &f, 0) == 1 && kd_trainer_step(a, &g, 1) == 1, "two steps: %s", kd_err_get());
    KD_CHECK(kd_trainer_save(a, ck) == 0 && read_queue(ck, K, q, &ptr) == 0, "checkpoint after 2 steps");
    const float *t0 = kd_frame_get(&f, "t.emb0")->data, *t1 = kd_frame_get(&g, "t.emb0")->data;
    int fifo = ptr == 2 && !memcmp(q + 2 * E, t0 + 2 * E, sizeof(float) * 2 * E) &&
               !memcmp(q + 4 * E, t1, sizeof(float) * 2 * E) && !memcmp(q, t1 + 2 * E, sizeof(float) * 2 * E);
    KD_CHECK(fifo, "the teacher's embeddings entered the queue after each step, FIFO, wrapping (ptr %lld)",
             (long long)ptr);
    /* resume: queue and pointer restored exactly, and the next step agrees */
    kd_trainer *b = seed_trainer(ck, &f);
    KD_CHECK(b != NULL, "resumed: %s", kd_err_get());
    if (!b) {
        kd_trainer_free(a);
        return;
    }
    KD_CHECK(kd_trainer_save(b, ck2) == 0 && read_queue(ck2, K, q2, &ptr2) == 0 && ptr2 == ptr &&
                 !memcmp(q, q2, sizeof q),
             "the resumed queue and pointer are bit-identical (ptr %lld)", (long long)ptr2);
    make_frame(&g, 2, E);
    KD_CHECK(kd_trainer_step(a, &g, 2) == 1 && kd_trainer_step(b, &g, 2) == 1 &&
                 kd_trainer_last(a)->term[0] == kd_trainer_last(b)->term[0],
             "the next step's loss is the same number after resume (%.9f)", kd_trainer_last(a)->term[0]);
    size_t na, nb;
    const float *pa = kd_model_params(kd_trainer_model(a), &na), *pb = kd_model_params(kd_trainer_model(b), &nb);
    KD_CHECK(na == nb && !memcmp(pa, pb, sizeof(float) * na), "and the weights after it are bit-identical");
    kd_trainer_free(a), kd_trainer_free(b);
    kd_frame_free(&f), kd_frame_free(&g);
    unlink(ck), unlink(ck2);
}

int main(void)
{
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    test_compose();
    test_init_checks();
    test_seed_queue(dir);
    return KD_TEST_DONE();
}
