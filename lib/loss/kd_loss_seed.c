/* Loss seed: SEED (Fang et al. 2021; METHODS.md), one view.  s = n(student
 * head on view0), t = t.emb0 (normalised by teacher-extract), a FIFO queue
 * Q of past TEACHER embeddings; p_T = softmax([t.t, t.Q]/tau_T),
 * p_S = softmax([s.t, s.Q]/tau_S), L = mean_b -sum p_T log p_S.  The
 * batch's teacher embeddings enter the queue after the optimiser step, so
 * a batch never meets itself among the negatives.  The queue and its
 * pointer are state, checkpointed. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_loss.h"
#include "kd_loss_teacher.h"
#include "kd_rng.h"

typedef struct {
    int queue;   /* K */
    float tau_s, tau_t;
} seed_opts;

/* Names of their own: moco's --queue and --tau are flags for every loss
 * that has them, and `--loss moco:1,seed:1` must not set both at once. */
static const kd_loss_opt seed_optv[] = {
    {"seed-queue", KD_LOPT_INT, offsetof(seed_opts, queue), "4096", 1, 1 << 24, "teacher queue length K"},
    {"tau-s", KD_LOPT_FLOAT, offsetof(seed_opts, tau_s), "0.2", 1e-4, 100, "student temperature"},
    {"tau-t", KD_LOPT_FLOAT, offsetof(seed_opts, tau_t), "1e-4", 1e-6, 100, "teacher temperature (SEED's default)"},
    {0}};

typedef struct {
    seed_opts o;
    char instance[48];
    int E;
    float *queue;   /* [K,E] normalised teacher embeddings */
    long ptr;
    const float *t; /* this step's teacher embeddings, for post */
    float *sn, *snorm, *dsn;
    double *pt, *ps, *acc;
} seed_state;

static void seed_free(void *st)
{
    seed_state *s = st;
    if (!s)
        return;
    free(s->queue), free(s->sn), free(s->snorm), free(s->dsn), free(s->pt), free(s->ps), free(s->acc);
    free(s);
}

static void *seed_init(kd_loss_init *c)
{
    int E = kd_teacher_emb_init(c, 1);
    if (E < 0)
        return NULL;
    seed_state *s = calloc(1, sizeof *s);
    if (!s) {
        kd_err_set("loss %s: out of memory", c->instance);
        return NULL;
    }
    s->o = *(const seed_opts *)c->opts;
    snprintf(s->instance, sizeof s->instance, "%s", c->instance);
    s->E = E;
    size_t K = (size_t)s->o.queue, B = (size_t)c->max_batch, L = K + 1;
    s->queue = malloc(sizeof(float) * K * E);
    s->sn = malloc(sizeof(float) * B * E);
    s->snorm = malloc(sizeof(float) * B);
    s->dsn = malloc(sizeof(float) * B * E);
    s->pt = malloc(sizeof(double) * B * L);
    s->ps = malloc(sizeof(double) * B * L);
    s->acc = malloc(sizeof(double) * E);
    if (!s->queue || !s->sn || !s->snorm || !s->dsn || !s->pt || !s->ps || !s->acc) {
        kd_err_set("loss %s: out of memory for a queue of %zu x %d", c->instance, K, E);
        seed_free(s);
        return NULL;
    }
    /* normalised Gaussian vectors, as moco's queue, from another stream of
     * the seed so that the two queues of one run differ */
    kd_rng r = kd_rng_make(c->seed, 0x73656564, 0);
    for (size_t i = 0; i < K * E; i++)
        s->queue[i] = kd_rng_normal(&r);
    for (size_t i = 0; i < K; i++) {
        double n2 = 0;
        for (int j = 0; j < E; j++)
            n2 += (double)s->queue[i * E + j] * s->queue[i * E + j];
        float inv = (float)(1 / sqrt(n2));
        for (int j = 0; j < E; j++)
            s->queue[i * E + j] *= inv;
    }
    return s;
}

static int seed_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    seed_state *s = st;
    const float *t = kd_teacher_emb(b, s->instance, 0, s->E);
    if (!t)
        return -1;
    s->t = t;
    *loss = kd_seed_loss(b->emb, t, s->queue, b->n, s->E, s->o.queue, s->o.tau_s, s->o.tau_t, weight, b->d_emb, s->sn,
                         s->snorm, s->pt, s->ps, s->dsn, s->acc);
    return 0;
}

static int seed_post(void *st, kd_loss_batch *b)
{
    seed_state *s = st;
    if (!s->t) /* compute did not run: nothing to enqueue */
        return 0;
    for (int i = 0; i < b->n; i++) {
        memcpy(s->queue + (size_t)s->ptr * s->E, s->t + (size_t)i * s->E, sizeof(float) * s->E);
        s->ptr = (s->ptr + 1) % s->o.queue;
    }
    s->t = NULL;
    return 0;
}

static int seed_save(void *st, kd_h5 *h, const char *g)
{
    seed_state *s = st;
    char name[256];
    snprintf(name, sizeof name, "%s/queue", g);
    if (kd_h5_write(h, name, KD_F32, 2, (int64_t[]){s->o.queue, s->E}, s->queue))
        return -1;
    return kd_h5_attr_set_i64(h, name, "ptr", s->ptr);
}

static int seed_load(void *st, const kd_h5 *h, const char *g)
{
    seed_state *s = st;
    char name[256];
    int64_t ptr;
    snprintf(name, sizeof name, "%s/queue", g);
    if (kd_h5_expect(h, name, 2, (int64_t[]){s->o.queue, s->E}, NULL) ||
        kd_h5_read(h, name, KD_F32, 0, s->o.queue, s->queue) || kd_h5_attr_get_i64(h, name, "ptr", &ptr))
        return -1;
    if (ptr < 0 || ptr >= s->o.queue) {
        kd_err_set("%s: queue pointer %lld outside [0, %d)", name, (long long)ptr, s->o.queue);
        return -1;
    }
    s->ptr = (long)ptr;
    return 0;
}

const kd_loss_module kd_loss_seed = {
    .name = "seed",
    .summary = "SEED: soft CE of n(emb on view0) against t.emb0 and a queue of teacher embeddings",
    .needs = "view0, t.emb0 f32 [B,E] (teacher-extract); a head as wide as the teacher's",
    .monitor = KD_MONITOR_KNN,
    .opts = seed_optv,
    .opts_size = sizeof(seed_opts),
    .init = seed_init,
    .compute = seed_compute,
    .post = seed_post,
    .save = seed_save,
    .load = seed_load,
    .free = seed_free,
};
