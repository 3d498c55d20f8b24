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
#include "kd_queue.h"
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
    kd_queue queue; /* normalised teacher embeddings */
    const float *t; /* this step's teacher embeddings, for post */
    float *sn, *snorm, *dsn;
    double *pt, *ps, *acc;
} seed_state;

static void seed_free(void *st)
{
    seed_state *s = st;
    if (!s)
        return;
    kd_queue_free(&s->queue);
    free(s->sn), free(s->snorm), free(s->dsn), free(s->pt), free(s->ps), free(s->acc);
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
    s->sn = malloc(sizeof(float) * B * E);
    s->snorm = malloc(sizeof(float) * B);
    s->dsn = malloc(sizeof(float) * B * E);
    s->pt = malloc(sizeof(double) * B * L);
    s->ps = malloc(sizeof(double) * B * L);
    s->acc = malloc(sizeof(double) * E);
    /* normalised Gaussian vectors, as moco's queue, from another stream of
     * the seed so that the two queues of one run differ */
    if (kd_queue_init(&s->queue, s->o.queue, E, c->seed, 0x73656564) || !s->sn || !s->snorm || !s->dsn || !s->pt || !s->ps || !s->acc) {
        kd_err_set("loss %s: out of memory for a queue of %zu x %d", c->instance, K, E);
        seed_free(s);
        return NULL;
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
    *loss = kd_seed_loss(b->emb, t, s->queue.v, b->n, s->E, s->o.queue, s->o.tau_s, s->o.tau_t, weight, b->d_emb, s->sn,
                         s->snorm, s->pt, s->ps, s->dsn, s->acc);
    return 0;
}

static int seed_post(void *st, kd_loss_batch *b)
{
    seed_state *s = st;
    if (!s->t) /* compute did not run: nothing to enqueue */
        return 0;
    kd_queue_push(&s->queue, s->t, b->n);
    s->t = NULL;
    return 0;
}

static int seed_save(void *st, kd_h5 *h, const char *g) { return kd_queue_save(&((seed_state *)st)->queue, h, g); }
static int seed_load(void *st, const kd_h5 *h, const char *g) { return kd_queue_load(&((seed_state *)st)->queue, h, g); }

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
