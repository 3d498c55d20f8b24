#include "kd_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"
#include "kd_rng.h"

double kd_softmax_ce(const float *logits, const int32_t *y, int n, int K, float weight, float *d)
{
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * K;
        float mx = z[0];
        for (int k = 1; k < K; k++)
            mx = z[k] > mx ? z[k] : mx;
        double s = 0;
        for (int k = 0; k < K; k++)
            s += exp((double)z[k] - mx);
        loss += log(s) + mx - z[y[i]];
        if (d)
            for (int k = 0; k < K; k++)
                d[(size_t)i * K + k] += weight / n * (float)(exp((double)z[k] - mx) / s - (k == y[i]));
    }
    return loss / n;
}

void kd_l2norm_forward(const float *x, float *y, float *norm, int n, int d)
{
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++)
            s += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
        float nr = (float)sqrt(s);
        nr = nr > 1e-12f ? nr : 1e-12f;
        norm[i] = nr;
        for (int j = 0; j < d; j++)
            y[(size_t)i * d + j] = x[(size_t)i * d + j] / nr;
    }
}

void kd_l2norm_backward(const float *y, const float *norm, const float *dy, float *dx, int n, int d)
{
    for (int i = 0; i < n; i++) {
        double yd = 0;
        for (int j = 0; j < d; j++)
            yd += (double)y[(size_t)i * d + j] * dy[(size_t)i * d + j];
        for (int j = 0; j < d; j++)
            dx[(size_t)i * d + j] += (dy[(size_t)i * d + j] - y[(size_t)i * d + j] * (float)yd) / norm[i];
    }
}

/* ------------------------------------------------------------ ce */

typedef struct {
    int K;
} ce_state;

static void *ce_init(kd_model *m, const kd_loss_opts *o)
{
    if (!kd_model_num_classes(m)) {
        kd_err_set("loss ce: the model has no classifier (model-init --num-classes K)");
        return NULL;
    }
    ce_state *s = malloc(sizeof *s);
    if (s)
        s->K = kd_model_num_classes(m);
    return s;
}

static int ce_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    ce_state *s = st;
    if (!b->label) {
        kd_err_set("loss ce: the frame has no 'label' tensor");
        return -1;
    }
    for (int i = 0; i < b->n; i++)
        if (b->label[i] < 0 || b->label[i] >= s->K) {
            kd_err_set("loss ce: label %d outside the model's %d classes", b->label[i], s->K);
            return -1;
        }
    *loss = kd_softmax_ce(b->logits, b->label, b->n, s->K, weight, b->d_logits);
    return 0;
}

static const kd_loss_module ce_module = {"ce", "label i32 [B]; a model with a classifier", ce_init, NULL, ce_compute,
                                         NULL, NULL, NULL, free};

/* ---------------------------------------------------------- moco */

typedef struct {
    kd_loss_opts o;
    kd_model *key;          /* momentum encoder */
    int E, B, C, H, W;
    float *queue;           /* [K,E] normalised keys */
    long ptr;
    float *kin, *k, *knorm; /* shuffled key input, keys [B,E], norms */
    float *q, *qnorm, *lg, *dq; /* [B,E], [B], [B,1+K], [B,E] */
    int64_t *perm;
    int32_t *zero;
} moco_state;

static void moco_free(void *st)
{
    moco_state *s = st;
    if (!s)
        return;
    kd_model_free(s->key);
    free(s->queue), free(s->kin), free(s->k), free(s->knorm), free(s->q), free(s->qnorm), free(s->lg);
    free(s->dq), free(s->perm), free(s->zero);
    free(s);
}

static void *moco_init(kd_model *m, const kd_loss_opts *o)
{
    if (!kd_model_emb_dim(m)) {
        kd_err_set("loss moco: the model has no projection head (model-init --head mlp:HIDDEN:OUT)");
        return NULL;
    }
    if (o->queue < 1) {
        kd_err_set("loss moco: --queue must be positive");
        return NULL;
    }
    moco_state *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->o = *o;
    s->E = kd_model_emb_dim(m);
    s->B = o->max_batch;
    s->C = kd_model_opts(m)->in_channels;
    s->H = o->h;
    s->W = o->w;
    /* the key encoder starts as a copy of the query encoder */
    s->key = kd_model_new(kd_model_opts(m), o->seed);
    if (!s->key || kd_model_prepare(s->key, s->B, s->H, s->W)) {
        moco_free(s);
        return NULL;
    }
    size_t np, nb, nq, nbq;
    float *kp = kd_model_params(s->key, &np), *kb = kd_model_buffers(s->key, &nb);
    const float *qp = kd_model_params(m, &nq), *qb = kd_model_buffers(m, &nbq);
    if (np != nq || nb != nbq) {
        kd_err_set("loss moco: the key encoder does not match the model");
        moco_free(s);
        return NULL;
    }
    memcpy(kp, qp, sizeof(float) * np);
    memcpy(kb, qb, sizeof(float) * nb);
    size_t K = (size_t)o->queue, E = (size_t)s->E, B = (size_t)s->B;
    s->queue = malloc(sizeof(float) * K * E);
    s->kin = malloc(sizeof(float) * B * s->C * s->H * s->W);
    s->k = malloc(sizeof(float) * B * E);
    s->knorm = malloc(sizeof(float) * B);
    s->q = malloc(sizeof(float) * B * E);
    s->qnorm = malloc(sizeof(float) * B);
    s->lg = malloc(sizeof(float) * B * (1 + K));
    s->dq = malloc(sizeof(float) * B * E);
    s->perm = malloc(sizeof(int64_t) * B);
    s->zero = calloc(B, sizeof(int32_t));
    if (!s->queue || !s->kin || !s->k || !s->knorm || !s->q || !s->qnorm || !s->lg || !s->dq || !s->perm || !s->zero) {
        kd_err_set("loss moco: out of memory for a queue of %zu x %zu", K, E);
        moco_free(s);
        return NULL;
    }
    /* the queue starts as normalised Gaussian vectors */
    kd_rng r = kd_rng_make(o->seed, 0x6d6f636f, 0);
    for (size_t i = 0; i < K * E; i++)
        s->queue[i] = kd_rng_normal(&r);
    for (size_t i = 0; i < K; i++) {
        double n2 = 0;
        for (size_t j = 0; j < E; j++)
            n2 += (double)s->queue[i * E + j] * s->queue[i * E + j];
        float inv = (float)(1 / sqrt(n2));
        for (size_t j = 0; j < E; j++)
            s->queue[i * E + j] *= inv;
    }
    return s;
}

/* Momentum update, then keys of view1 with shuffled BN groups. */
static int moco_pre(void *st, kd_loss_batch *b)
{
    moco_state *s = st;
    if (!b->view1) {
        kd_err_set("loss moco: the frame has no 'view1' (augment --views 2)");
        return -1;
    }
    size_t np, nq;
    float *pk = kd_model_params(s->key, &np);
    const float *pq = kd_model_params(b->student, &nq);
    float m = s->o.moco_m;
    for (size_t i = 0; i < np; i++)
        pk[i] = m * pk[i] + (1 - m) * pq[i];
    int n = b->n, G = s->o.bn_group;
    if (G > 0 && n % G)
        G = 0; /* a short last batch: one group */
    size_t per = (size_t)s->C * s->H * s->W;
    kd_rng r = kd_rng_make(s->o.seed, 0x73687566, (uint64_t)b->step);
    kd_rng_permute(&r, s->perm, n);
    for (int i = 0; i < n; i++)
        memcpy(s->kin + (size_t)i * per, b->view1 + (size_t)s->perm[i] * per, sizeof(float) * per);
    if (kd_model_forward(s->key, s->kin, n, 1, G))
        return -1;
    const float *ke = kd_model_embedding(s->key);
    for (int i = 0; i < n; i++) /* unshuffle */
        memcpy(s->k + (size_t)s->perm[i] * s->E, ke + (size_t)i * s->E, sizeof(float) * s->E);
    kd_l2norm_forward(s->k, s->k, s->knorm, n, s->E);
    return 0;
}

/* The body of moco_compute, free of the module's state so that it can be
 * checked against PyTorch alone (tests/unit/test_train.c). */
double kd_infonce_queue(const float *q_raw, const float *k, const float *queue, int n, int E, int K, float tau,
                        float weight, float *dq_raw, float *qn, float *qnorm, float *lg, float *dqn)
{
    int L = 1 + K;
    float inv_t = 1.0f / tau;
    kd_l2norm_forward(q_raw, qn, qnorm, n, E);
    /* logits: [q.k, q.queue] / tau */
    for (int i = 0; i < n; i++) {
        double dot = 0;
        for (int j = 0; j < E; j++)
            dot += (double)qn[(size_t)i * E + j] * k[(size_t)i * E + j];
        lg[(size_t)i * L] = (float)dot * inv_t;
    }
    kd_gemm(0, 1, n, K, E, inv_t, qn, E, queue, E, 0.0f, lg + 1, L);
    /* CE with target 0; gradient into the logits buffer itself */
    double l = 0;
    for (int i = 0; i < n; i++) {
        float *z = lg + (size_t)i * L, mx = z[0];
        for (int c = 1; c < L; c++)
            mx = z[c] > mx ? z[c] : mx;
        double sum = 0;
        for (int c = 0; c < L; c++)
            sum += exp((double)z[c] - mx);
        l += log(sum) + mx - z[0];
        for (int c = 0; c < L; c++)
            z[c] = (float)(exp((double)z[c] - mx) / sum) - (c == 0);
    }
    if (dq_raw) {
        /* dq = (w/n/tau) (dz0 k + dz_rest . queue); keys get no gradient */
        float sc = weight / n * inv_t;
        kd_gemm(0, 0, n, E, K, sc, lg + 1, L, queue, E, 0.0f, dqn, E);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < E; j++)
                dqn[(size_t)i * E + j] += sc * lg[(size_t)i * L] * k[(size_t)i * E + j];
        kd_l2norm_backward(qn, qnorm, dqn, dq_raw, n, E);
    }
    return l / n;
}

static int moco_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    moco_state *s = st;
    *loss = kd_infonce_queue(b->emb, s->k, s->queue, b->n, s->E, s->o.queue, s->o.tau, weight, b->d_emb, s->q,
                             s->qnorm, s->lg, s->dq);
    return 0;
}

static int moco_post(void *st, kd_loss_batch *b)
{
    moco_state *s = st;
    for (int i = 0; i < b->n; i++) {
        memcpy(s->queue + (size_t)s->ptr * s->E, s->k + (size_t)i * s->E, sizeof(float) * s->E);
        s->ptr = (s->ptr + 1) % s->o.queue;
    }
    return 0;
}

static int moco_save(void *st, kd_h5 *h, const char *g)
{
    moco_state *s = st;
    char name[256];
    size_t np, nb;
    float *p = kd_model_params(s->key, &np), *bu = kd_model_buffers(s->key, &nb);
    snprintf(name, sizeof name, "%s/queue", g);
    if (kd_h5_write(h, name, KD_F32, 2, (int64_t[]){s->o.queue, s->E}, s->queue))
        return -1;
    snprintf(name, sizeof name, "%s/key_params", g);
    if (kd_h5_write(h, name, KD_F32, 1, (int64_t[]){(int64_t)np}, p))
        return -1;
    snprintf(name, sizeof name, "%s/key_buffers", g);
    if (kd_h5_write(h, name, KD_F32, 1, (int64_t[]){(int64_t)nb}, bu))
        return -1;
    snprintf(name, sizeof name, "%s/queue", g);
    return kd_h5_attr_set_i64(h, name, "ptr", s->ptr);
}

static int moco_load(void *st, const kd_h5 *h, const char *g)
{
    moco_state *s = st;
    char name[256];
    size_t np, nb;
    float *p = kd_model_params(s->key, &np), *bu = kd_model_buffers(s->key, &nb);
    int64_t ptr;
    snprintf(name, sizeof name, "%s/queue", g);
    if (kd_h5_expect(h, name, 2, (int64_t[]){s->o.queue, s->E}, NULL) ||
        kd_h5_read(h, name, KD_F32, 0, s->o.queue, s->queue) || kd_h5_attr_get_i64(h, name, "ptr", &ptr))
        return -1;
    s->ptr = (long)(ptr % s->o.queue);
    snprintf(name, sizeof name, "%s/key_params", g);
    if (kd_h5_expect(h, name, 1, (int64_t[]){(int64_t)np}, NULL) || kd_h5_read(h, name, KD_F32, 0, (int64_t)np, p))
        return -1;
    snprintf(name, sizeof name, "%s/key_buffers", g);
    if (kd_h5_expect(h, name, 1, (int64_t[]){(int64_t)nb}, NULL) || kd_h5_read(h, name, KD_F32, 0, (int64_t)nb, bu))
        return -1;
    return 0;
}

static const kd_loss_module moco_module = {
    "moco", "view0 and view1 f32 [B,C,H,W]; a model with a projection head", moco_init, moco_pre, moco_compute,
    moco_post, moco_save, moco_load, moco_free};

const kd_loss_module *const kd_loss_modules[] = {&ce_module, &moco_module, NULL};

const kd_loss_module *kd_loss_find(const char *name)
{
    for (int i = 0; kd_loss_modules[i]; i++)
        if (!strcmp(kd_loss_modules[i]->name, name))
            return kd_loss_modules[i];
    return NULL;
}
