/* Loss moco: MoCo v2 (He et al. 2020; METHODS.md) — a momentum key
 * encoder updated before the keys are computed, shuffle-BN emulated by
 * per-group statistics over a permutation of view1, and a FIFO queue of
 * normalised keys.  Only the query encoder (the student on view0) receives
 * gradients; the key encoder and queue are state, checkpointed.
 *
 * On R processes (kd_dist.h) as MoCo's DDP code does it: view1 of the
 * global batch is gathered, shuffled by one permutation of the global batch
 * (the same on every rank), each rank encodes its slice of the shuffled
 * batch (BN groups within it; whole-batch statistics synchronised with
 * --sync-bn, else the rank's own), the keys are gathered and unshuffled,
 * and every rank pushes all of them into its queue: the queues, and the
 * key encoders, stay the same on every rank, and with equal groups the
 * keys are those of one process. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kd_dist.h"
#include "kd_err.h"
#include "kd_loss.h"
#include "kd_names.h"
#include "kd_queue.h"
#include "kd_rng.h"

typedef struct {
    int queue;     /* K */
    float tau;
    float moco_m;  /* key encoder momentum */
    int bn_group;  /* shuffle-BN group of the keys (0: whole batch) */
} moco_opts;

static const kd_loss_opt moco_optv[] = {
    {"queue", KD_LOPT_INT, offsetof(moco_opts, queue), "4096", 1, 1 << 24, "queue length K"},
    {"tau", KD_LOPT_FLOAT, offsetof(moco_opts, tau), "0.2", 1e-4, 100, "temperature"},
    {"moco-m", KD_LOPT_FLOAT, offsetof(moco_opts, moco_m), "0.999", 0, 1, "key encoder momentum"},
    {"shuffle-bn-group", KD_LOPT_INT, offsetof(moco_opts, bn_group), "32", 0, 1 << 20,
     "key BN statistics per group of G shuffled images (0: whole batch)"},
    {0}};

typedef struct {
    moco_opts o;
    uint64_t seed;
    kd_model *key;          /* momentum encoder */
    int E, B, C, H, W;
    kd_queue queue;         /* normalised keys */
    int R, rank;            /* processes of the job, this one */
    float *kin, *knorm;     /* this rank's shuffled key input [B,C,H,W]; norms [R*B] */
    float *vall, *kall;     /* R > 1: gathered view1 [R*B,C,H,W], shuffled keys [R*B,E] */
    float *kg, *k;          /* keys of the global batch [R*B,E]; k: this rank's rows */
    float *q, *qnorm, *lg, *dq; /* [B,E], [B], [B,1+K], [B,E] */
    int64_t *perm;
} moco_state;

static void moco_free(void *st)
{
    moco_state *s = st;
    if (!s)
        return;
    kd_model_free(s->key);
    kd_queue_free(&s->queue);
    free(s->kin), free(s->kg), free(s->knorm), free(s->vall), free(s->kall), free(s->q), free(s->qnorm), free(s->lg);
    free(s->dq), free(s->perm);
    free(s);
}

static void *moco_init(kd_loss_init *c)
{
    kd_model *m = c->student;
    const moco_opts *o = c->opts;
    if (!kd_model_emb_dim(m)) {
        kd_err_set("loss %s: the model has no projection head (model-init --head mlp:HIDDEN:OUT)", c->instance);
        return NULL;
    }
    char v1[KD_NAME_MAX];
    if (kd_loss_want_view(c, 0) ||
        kd_loss_need_tensor(c, kd_name(v1, sizeof v1, KD_NAME_VIEW, NULL, 1), KD_F32, 4, "augment --views 2"))
        return NULL;
    moco_state *s = calloc(1, sizeof *s);
    if (!s) {
        kd_err_set("loss %s: out of memory", c->instance);
        return NULL;
    }
    s->o = *o;
    s->seed = c->seed;
    s->E = kd_model_emb_dim(m);
    s->B = c->max_batch;
    s->C = kd_model_opts(m)->in_channels;
    s->H = c->h;
    s->W = c->w;
    /* the key encoder starts as a copy of the query encoder */
    s->key = kd_model_new(kd_model_opts(m), c->seed);
    if (!s->key || kd_model_prepare(s->key, s->B, s->H, s->W)) {
        moco_free(s);
        return NULL;
    }
    size_t np, nb, nq, nbq;
    float *kp = kd_model_params(s->key, &np), *kb = kd_model_buffers(s->key, &nb);
    const float *qp = kd_model_params(m, &nq), *qb = kd_model_buffers(m, &nbq);
    if (np != nq || nb != nbq) {
        kd_err_set("loss %s: the key encoder does not match the model", c->instance);
        moco_free(s);
        return NULL;
    }
    memcpy(kp, qp, sizeof(float) * np);
    memcpy(kb, qb, sizeof(float) * nb);
    s->R = kd_dist_size(), s->rank = kd_dist_rank();
    size_t K = (size_t)o->queue, E = (size_t)s->E, B = (size_t)s->B, R = (size_t)s->R, per = (size_t)s->C * s->H * s->W;
    s->kin = malloc(sizeof(float) * B * per);
    s->kg = malloc(sizeof(float) * R * B * E);
    s->knorm = malloc(sizeof(float) * R * B);
    if (R > 1) {
        s->vall = malloc(sizeof(float) * R * B * per);
        s->kall = malloc(sizeof(float) * R * B * E);
        /* the key encoder's statistics over the ranks, when they are the student's */
        if (!s->vall || !s->kall || kd_model_set_bn_sync(s->key, kd_model_bn_sync(m))) {
            kd_err_set("loss %s: out of memory", c->instance);
            moco_free(s);
            return NULL;
        }
    }
    s->q = malloc(sizeof(float) * B * E);
    s->qnorm = malloc(sizeof(float) * B);
    s->lg = malloc(sizeof(float) * B * (1 + K));
    s->dq = malloc(sizeof(float) * B * E);
    s->perm = malloc(sizeof(int64_t) * R * B);
    if (kd_queue_init(&s->queue, o->queue, s->E, c->seed, 0x6d6f636f) || !s->kin || !s->kg || !s->knorm || !s->q || !s->qnorm || !s->lg || !s->dq || !s->perm) {
        kd_err_set("loss %s: out of memory for a queue of %zu x %zu", c->instance, K, E);
        moco_free(s);
        return NULL;
    }
    return s;
}

/* Momentum update, then keys of view1 with shuffled BN groups. */
static int moco_pre(void *st, kd_loss_batch *b)
{
    moco_state *s = st;
    const float *view1 = kd_loss_view(b, 1);
    size_t np, nq;
    float *pk = kd_model_params(s->key, &np);
    const float *pq = kd_model_params(b->student, &nq);
    float m = s->o.moco_m;
    for (size_t i = 0; i < np; i++)
        pk[i] = m * pk[i] + (1 - m) * pq[i];
    /* the global batch: n images on each of the R ranks (kd_trainer_dist_check) */
    int n = b->n, ng = n * s->R, G = s->o.bn_group;
    if (G > 0 && ng % G)
        G = 0; /* a short last batch: one group */
    int sync = 0;
    if (G == 0 || G == ng) /* statistics over the global batch */
        G = 0, sync = 1;
    else if (n % G) {
        kd_err_set("loss moco: --shuffle-bn-group %d spans ranks (%d images each): give a divisor of %d or 0", G, n, n);
        return -1;
    }
    kd_model_set_bn_sync(s->key, sync ? kd_model_bn_sync(b->student) : NULL); /* allocated at init */
    size_t per = (size_t)s->C * s->H * s->W;
    if (s->R > 1 && kd_dist_allgather_f32(view1, (size_t)n * per, s->vall))
        return -1;
    const float *v1 = s->R > 1 ? s->vall : view1;
    kd_rng r = kd_rng_make(s->seed, 0x73687566, (uint64_t)b->step);
    kd_rng_permute(&r, s->perm, ng);
    const int64_t *mine = s->perm + (size_t)s->rank * n; /* this rank's slice of the shuffled batch */
    for (int i = 0; i < n; i++)
        memcpy(s->kin + (size_t)i * per, v1 + (size_t)mine[i] * per, sizeof(float) * per);
    /* the key encoder's dropout / drop-path draws: keyed by the step (so
     * resume needs no state) and apart from the student's */
    kd_model_set_rng(s->key, s->seed ^ 0x6b6579656e63ULL, (uint64_t)b->step);
    if (kd_model_forward(s->key, s->kin, n, 1, G))
        return -1;
    const float *ke = kd_model_embedding(s->key);
    if (s->R > 1 && kd_dist_allgather_f32(ke, (size_t)n * s->E, s->kall))
        return -1;
    if (s->R > 1)
        ke = s->kall;
    for (int i = 0; i < ng; i++) /* unshuffle */
        memcpy(s->kg + (size_t)s->perm[i] * s->E, ke + (size_t)i * s->E, sizeof(float) * s->E);
    kd_l2norm_forward(s->kg, s->kg, s->knorm, ng, s->E);
    s->k = s->kg + (size_t)s->rank * n * s->E;
    return 0;
}

static int moco_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    moco_state *s = st;
    *loss = kd_infonce_queue(b->emb, s->k, s->queue.v, b->n, s->E, s->o.queue, s->o.tau, weight, b->d_emb, s->q,
                             s->qnorm, s->lg, s->dq);
    return 0;
}

static int moco_post(void *st, kd_loss_batch *b)
{
    moco_state *s = st;
    kd_queue_push(&s->queue, s->kg, b->n * s->R); /* every rank's keys */
    return 0;
}

static int moco_save(void *st, kd_h5 *h, const char *g)
{
    moco_state *s = st;
    char name[256];
    size_t np, nb;
    float *p = kd_model_params(s->key, &np), *bu = kd_model_buffers(s->key, &nb);
    if (kd_queue_save(&s->queue, h, g))
        return -1;
    snprintf(name, sizeof name, "%s/key_params", g);
    if (kd_h5_write(h, name, KD_F32, 1, (int64_t[]){(int64_t)np}, p))
        return -1;
    snprintf(name, sizeof name, "%s/key_buffers", g);
    return kd_h5_write(h, name, KD_F32, 1, (int64_t[]){(int64_t)nb}, bu);
}

static int moco_load(void *st, const kd_h5 *h, const char *g)
{
    moco_state *s = st;
    char name[256];
    size_t np, nb;
    float *p = kd_model_params(s->key, &np), *bu = kd_model_buffers(s->key, &nb);
    if (kd_queue_load(&s->queue, h, g))
        return -1;
    snprintf(name, sizeof name, "%s/key_params", g);
    if (kd_h5_expect(h, name, 1, (int64_t[]){(int64_t)np}, NULL) || kd_h5_read(h, name, KD_F32, 0, (int64_t)np, p))
        return -1;
    snprintf(name, sizeof name, "%s/key_buffers", g);
    if (kd_h5_expect(h, name, 1, (int64_t[]){(int64_t)nb}, NULL) || kd_h5_read(h, name, KD_F32, 0, (int64_t)nb, bu))
        return -1;
    return 0;
}

const kd_loss_module kd_loss_moco = {
    .name = "moco",
    .summary = "MoCo v2: InfoNCE of view0 queries against momentum-encoder keys of view1 and a queue",
    .needs = "view0 and view1 f32 [B,C,H,W]; a model with a projection head",
    .monitor = KD_MONITOR_KNN,
    .data_parallel = 1,
    .opts = moco_optv,
    .opts_size = sizeof(moco_opts),
    .init = moco_init,
    .pre = moco_pre,
    .compute = moco_compute,
    .post = moco_post,
    .save = moco_save,
    .load = moco_load,
    .free = moco_free,
};
