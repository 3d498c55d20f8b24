/* kd_model_exec — running a planned model: forward (with conv+BN folding
 * when prepared for evaluation only, and each BN fused with the ReLU and
 * residual add after it when the plan says so), backward through the
 * gradient arena, and the multiply-accumulate count.  The plan it runs on is made by
 * kd_model_plan.c; nothing here allocates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_model_build.h"
#include "kd_rng.h"

#define VAL(v) (m->act + m->vals[v].off)
#define DVAL(v) (m->dact + m->vals[v].doff)
#define PAR(i) ((i) >= 0 ? m->params + m->pv[i].off : NULL)
#define GRAD(i) ((i) >= 0 ? m->grads + m->pv[i].off : NULL)
#define BUF(i) (m->buffers + m->bv[i].off)

/* conv(x, w) then eval BN == conv(x, w * s) + (beta - mean * s) + bias * s,
 * s = gamma / sqrt(var + eps), per output channel.  Recomputed every
 * forward (O(weights), small next to the convolution) so that a model whose
 * parameters change between forwards stays right. */
static void fold_conv_bn(kd_model *m, const kd_node *c, const kd_node *bn, const float **w, const float **b)
{
    const float *W = PAR(c->w), *B = PAR(c->b), *g = PAR(bn->w), *be = PAR(bn->b);
    const float *rm = BUF(bn->rm), *rv = BUF(bn->rv);
    size_t per = m->pv[c->w].n / (size_t)c->O;
    float *fw = m->fold, *fb = m->fold + m->pv[c->w].n;
    for (int o = 0; o < c->O; o++) {
        float s = g[o] / sqrtf(rv[o] + bn->eps);
        for (size_t k = 0; k < per; k++)
            fw[(size_t)o * per + k] = W[(size_t)o * per + k] * s;
        fb[o] = be[o] - rm[o] * s + (B ? B[o] * s : 0.0f);
    }
    *w = fw;
    *b = fb;
}

int kd_model_forward(kd_model *m, const float *x, int n, int train, int bn_group)
{
    if (!m->planned_n || n < 1 || n > m->max_n) {
        kd_err_set("model: forward of %d images but prepared for %d", n, m->planned_n ? m->max_n : 0);
        return -1;
    }
    if (train && m->eval_only) {
        kd_err_set("model: prepared for evaluation only, cannot train");
        return -1;
    }
    if (!train)
        bn_group = 0;
    if (bn_group < 0 || (bn_group > 0 && n % bn_group)) {
        kd_err_set("model: batch of %d is not a multiple of the BN group %d", n, bn_group);
        return -1;
    }
    memcpy(VAL(0), x, kd_val_size(m, 0, n) * sizeof(float));
    for (int i = 0; i < m->nn; i++) {
        kd_node *d = &m->nodes[i];
        if (d->absorbed)
            continue; /* run by the fused BN before it */
        const kd_value *vx = &m->vals[d->in], *vy = &m->vals[d->out];
        float *X = VAL(d->in), *Y = VAL(d->fuse_out);
        size_t ny = kd_val_size(m, d->out, n);
        int HW = vx->H * vx->W;
        switch (d->op) {
        case N_CONV: {
            kd_conv c = d->conv;
            c.N = n;
            if (d->fold_bn >= 0 && !train) {
                const float *w, *b;
                fold_conv_bn(m, d, &m->nodes[d->fold_bn], &w, &b);
                kd_conv_forward(&c, X, w, b, Y, m->ws);
            } else {
                kd_conv_forward(&c, X, PAR(d->w), PAR(d->b), Y, m->ws);
            }
            break;
        }
        case N_BN: {
            kd_bn_epi e = {.act = d->fuse_act >= 0 ? m->nodes[d->fuse_act].act : KD_IDENTITY,
                           .res = d->fuse_res >= 0 ? VAL(d->fuse_res) : NULL};
            const kd_bn_epi *ep = d->fuse_out != d->out ? &e : NULL;
            if (d->folded && !train) {
                /* the BN was done by the conv (in place: its output is X) */
                size_t nf = kd_val_size(m, d->fuse_out, n);
                if (ep && e.res)
                    kd_add_act_forward(X, e.res, e.act, Y, nf);
                else if (ep)
                    kd_act_forward(e.act, X, Y, nf);
                break;
            }
            if (train) {
                if ((bn_group ? bn_group : n) * HW < 2) {
                    kd_err_set("model: batch norm needs more than one value per channel in training "
                               "(batch %d, map %dx%d)", bn_group ? bn_group : n, vx->H, vx->W);
                    return -1;
                }
                float *sv = m->aux + d->aux;
                if (m->bn_sum && !bn_group) {
                    if (kd_bn_forward_train_sync_fused(m->bn_sum, m->bn_work, n, vx->C, HW, X, PAR(d->w), PAR(d->b),
                                                       ep, Y, sv, sv + (size_t)d->O * m->max_n, BUF(d->rm),
                                                       BUF(d->rv), d->momentum, d->eps))
                        return -1;
                } else {
                    kd_bn_forward_train_fused(n, vx->C, HW, bn_group, X, PAR(d->w), PAR(d->b), ep, Y, sv,
                                              sv + (size_t)d->O * m->max_n, BUF(d->rm), BUF(d->rv), d->momentum,
                                              d->eps);
                }
                BUF(d->nbt)[0] += 1;
            } else {
                kd_bn_forward_eval_fused(n, vx->C, HW, X, PAR(d->w), PAR(d->b), BUF(d->rm), BUF(d->rv), d->eps, ep,
                                         Y);
            }
            break;
        }
        case N_ACT:
            kd_act_forward(d->act, X, Y, ny);
            break;
        case N_MAXPOOL: {
            kd_pool p = d->pool;
            p.N = n;
            kd_maxpool_forward(&p, X, Y, m->iaux + d->iaux);
            break;
        }
        case N_GAP:
            kd_adaptive_avgpool_forward(n, vx->C, vx->H, vx->W, 1, 1, X, Y);
            break;
        case N_LINEAR:
            kd_linear_forward(n, vx->C, d->O, X, PAR(d->w), PAR(d->b), Y);
            break;
        case N_ADD:
            kd_add_forward(X, VAL(d->in2), Y, ny);
            break;
        case N_SCALE:
            kd_scale_forward(n, vx->C, HW, X, VAL(d->in2), Y);
            break;
        case N_DROPOUT:
            if (train && m->use_dropout && d->p > 0) {
                kd_rng r = kd_rng_make(m->rng_seed, m->step, (uint64_t)i);
                kd_dropout_forward(X, Y, m->aux + d->aux, ny, d->p, &r);
            } else if (Y != X) {
                memcpy(Y, X, ny * sizeof(float));
            }
            break;
        case N_DROPPATH: {
            float *mask = m->aux + d->aux;
            size_t per = (size_t)vy->C * vy->H * vy->W;
            if (train && m->use_droppath && d->p > 0) {
                /* torchvision's StochasticDepth "row": whole samples dropped,
                 * survivors scaled by 1/(1-p) */
                kd_rng r = kd_rng_make(m->rng_seed, m->step, (uint64_t)i);
                for (int j = 0; j < n; j++) {
                    mask[j] = kd_rng_uniform(&r) < d->p ? 0.0f : 1.0f / (1.0f - d->p);
                    for (size_t k = 0; k < per; k++)
                        Y[j * per + k] = X[j * per + k] * mask[j];
                }
            } else {
                for (int j = 0; j < n; j++)
                    mask[j] = 1;
                if (Y != X)
                    memcpy(Y, X, ny * sizeof(float));
            }
            break;
        }
        }
    }
    m->last_n = n;
    m->last_train = train;
    m->last_group = bn_group;
    m->last_sync = train && m->bn_sum && !bn_group;
    if (train)
        m->step++;
    return 0;
}

/* ---------------------------------------------------------------- backward */

/* Activation gradients are megabytes: zeroed on all cores, since the
 * serial memset left the other core idle for ~3 % of a resnet20 step. */
static void zero_floats(float *p, size_t n)
{
    enum { BLOCK = 1 << 16 };
    long nb = (long)((n + BLOCK - 1) / BLOCK);
#pragma omp parallel for schedule(static) if (nb > 1)
    for (long b = 0; b < nb; b++) {
        size_t lo = (size_t)b * BLOCK, len = n - lo < BLOCK ? n - lo : BLOCK;
        memset(p + lo, 0, len * sizeof(float));
    }
}

static void grad_seed(kd_model *m, int v, const float *g, int n)
{
    if (v < 0)
        return;
    float *d = DVAL(v);
    size_t sz = kd_val_size(m, v, n);
    if (!m->vals[v].grad_live) {
        zero_floats(d, sz);
        m->vals[v].grad_live = 1; /* zeroed: later contributions add */
    }
    if (g)
        for (size_t i = 0; i < sz; i++)
            d[i] += g[i];
}

/* The gradient buffer of an input about to receive its first contribution
 * (from its last consumer, the first one seen going backwards) is zeroed. */
static float *grad_in(kd_model *m, int v, int node, int n)
{
    if (v <= 0)
        return NULL;
    kd_value *x = &m->vals[v];
    if (!x->grad_live && x->last_use == node) {
        zero_floats(DVAL(v), kd_val_size(m, v, n));
        x->grad_live = 1;
    }
    return DVAL(v);
}

/* Like grad_in, but instead of zeroing a buffer about to receive its first
 * contribution says so (*fresh): a fused BN writes it without reading. */
static float *grad_fresh(kd_model *m, int v, int node, int *fresh)
{
    *fresh = 0;
    if (v <= 0)
        return NULL;
    kd_value *x = &m->vals[v];
    if (!x->grad_live && x->last_use == node)
        x->grad_live = *fresh = 1;
    return DVAL(v);
}

/* A BN fused with its ReLU and residual add (kd_model_plan.c): the
 * activation's mask, the add and the BN backward in one per-channel pass.
 * The residual's gradient is started where the unfused ADD node (the next
 * node) would have started it. */
static int bn_fused_backward(kd_model *m, const kd_node *d, int i, int n, int group)
{
    char *nz = m->nz;
    int res = d->fuse_res, at = d->fuse_add;
    if (!nz[d->fuse_out]) {
        grad_in(m, d->in, i, n);
        if (res >= 0)
            grad_in(m, res, at, n);
        return 0;
    }
    kd_bn_epi e = {.act = d->fuse_act >= 0 ? m->nodes[d->fuse_act].act : KD_IDENTITY, .y = VAL(d->fuse_out)};
    float *dX = grad_fresh(m, d->in, i, &e.fresh_dx);
    if (res >= 0)
        e.dres = grad_fresh(m, res, at, &e.fresh_dres);
    if (d->in > 0)
        nz[d->in] = 1;
    if (res > 0)
        nz[res] = 1;
    const kd_value *vx = &m->vals[d->in];
    float *X = VAL(d->in), *dY = DVAL(d->fuse_out), *sv = m->aux + d->aux;
    int HW = vx->H * vx->W;
    if (m->last_sync)
        return kd_bn_backward_sync_fused(m->bn_sum, m->bn_work, n, vx->C, HW, X, sv, sv + (size_t)d->O * m->max_n,
                                         PAR(d->w), &e, dY, dX, GRAD(d->w), GRAD(d->b));
    kd_bn_backward_fused(n, vx->C, HW, group, X, sv, sv + (size_t)d->O * m->max_n, PAR(d->w), &e, dY, dX,
                         GRAD(d->w), GRAD(d->b));
    return 0;
}

int kd_model_backward_dout(kd_model *m, const kd_model_dout *g)
{
    if (!m->last_n || !m->last_train) {
        kd_err_set("model: backward needs a training-mode forward first");
        return -1;
    }
    if (g->map[0]) {
        kd_err_set("model: stages are numbered from 1 (a gradient given for stage 0)");
        return -1;
    }
    for (int s = 1; s <= KD_MAX_STAGES; s++) {
        if (!g->map[s] || s == m->nstages)
            continue;
        if (s > m->nstages) {
            kd_err_set("model: %s has stages 1..%d, a gradient given for stage %d", m->arch, m->nstages, s);
            return -1;
        }
        if (!m->grad_stage[s]) {
            kd_err_set("model: stage %d was not prepared for a gradient (kd_model_grad_stage)", s);
            return -1;
        }
    }
    int n = m->last_n, group = m->last_group;
    for (int v = 0; v < m->nv; v++)
        m->vals[v].grad_live = 0;
    /* external gradients: zero every output's buffer first, since the
     * features' buffer must hold the sum of all of them; then the last
     * stage and the declared stages (their buffers live from the start of
     * backward, see kd_model_prepare) */
    enum { NEXT = 3 + KD_MAX_STAGES };
    int ext[NEXT], next = 0;
    const float *eg[NEXT];
    ext[next] = m->feat, eg[next++] = g->features;
    ext[next] = m->logits, eg[next++] = g->logits;
    ext[next] = m->emb, eg[next++] = g->embedding;
    ext[next] = m->stages[m->nstages - 1], eg[next++] = g->map[m->nstages];
    for (int s = 1; s < m->nstages; s++)
        if (m->grad_stage[s])
            ext[next] = m->stages[s - 1], eg[next++] = g->map[s];
    for (int k = 0; k < next; k++)
        if (ext[k] >= 0)
            grad_seed(m, ext[k], eg[k], n);
    /* grad_live now only means "buffer valid"; track which are non-zero */
    char *nz = m->nz;
    memset(nz, 0, (size_t)m->nv);
    for (int k = 0; k < next; k++)
        if (ext[k] >= 0 && eg[k])
            nz[ext[k]] = 1;
    for (int i = m->nn - 1; i >= 0; i--) {
        kd_node *d = &m->nodes[i];
        if (d->absorbed)
            continue; /* run by the fused BN before it */
        if (d->fuse_out != d->out) {
            if (bn_fused_backward(m, d, i, n, group))
                return -1;
            continue;
        }
        const kd_value *vx = &m->vals[d->in];
        float *dX = grad_in(m, d->in, i, n);
        float *dX2 = d->in2 >= 0 ? grad_in(m, d->in2, i, n) : NULL;
        if (!nz[d->out])
            continue; /* nothing flows back through this node */
        if (d->in > 0)
            nz[d->in] = 1;
        if (d->in2 > 0)
            nz[d->in2] = 1;
        float *X = VAL(d->in), *Y = VAL(d->out), *dY = DVAL(d->out);
        size_t ny = kd_val_size(m, d->out, n);
        int HW = vx->H * vx->W;
        switch (d->op) {
        case N_CONV: {
            kd_conv c = d->conv;
            c.N = n;
            kd_conv_backward(&c, X, PAR(d->w), dY, dX, GRAD(d->w), GRAD(d->b), m->ws);
            break;
        }
        case N_BN: {
            float *sv = m->aux + d->aux;
            if (m->last_sync) {
                if (kd_bn_backward_sync(m->bn_sum, m->bn_work, n, vx->C, HW, X, sv, sv + (size_t)d->O * m->max_n,
                                        PAR(d->w), dY, dX, GRAD(d->w), GRAD(d->b)))
                    return -1;
            } else {
                kd_bn_backward(n, vx->C, HW, group, X, sv, sv + (size_t)d->O * m->max_n, PAR(d->w), dY, dX,
                               GRAD(d->w), GRAD(d->b));
            }
            break;
        }
        case N_ACT:
            if (dX)
                kd_act_backward(d->act, d->inplace ? Y : X, Y, dY, dX, ny);
            break;
        case N_MAXPOOL: {
            kd_pool p = d->pool;
            p.N = n;
            if (dX)
                kd_maxpool_backward(&p, m->iaux + d->iaux, dY, dX);
            break;
        }
        case N_GAP:
            if (dX)
                kd_adaptive_avgpool_backward(n, vx->C, vx->H, vx->W, 1, 1, dY, dX);
            break;
        case N_LINEAR:
            kd_linear_backward(n, vx->C, d->O, X, PAR(d->w), dY, dX, GRAD(d->w), GRAD(d->b));
            break;
        case N_ADD:
            kd_add_backward(dY, dX, dX2, ny);
            break;
        case N_SCALE:
            kd_scale_backward(n, vx->C, HW, X, VAL(d->in2), dY, dX, dX2);
            break;
        case N_DROPOUT:
            if (!dX)
                break;
            if (m->use_dropout && d->p > 0)
                kd_dropout_backward(m->aux + d->aux, dY, dX, ny);
            else
                for (size_t k = 0; k < ny; k++)
                    dX[k] += dY[k];
            break;
        case N_DROPPATH: {
            const float *mask = m->aux + d->aux;
            size_t per = ny / (size_t)n;
            if (dX)
                for (int j = 0; j < n; j++)
                    for (size_t k = 0; k < per; k++)
                        dX[j * per + k] += dY[j * per + k] * mask[j];
            break;
        }
        }
    }
    return 0;
}

int kd_model_backward(kd_model *m, const float *d_features, const float *d_logits, const float *d_embedding,
                      const float *d_map)
{
    kd_model_dout g = {.features = d_features, .logits = d_logits, .embedding = d_embedding};
    g.map[m->nstages] = d_map;
    return kd_model_backward_dout(m, &g);
}

double kd_model_flops(const kd_model *m, int h, int w)
{
    /* shapes on a copy of the value table: the plan is not touched */
    kd_value *vals = malloc((size_t)m->nv * sizeof *vals);
    if (!vals)
        return 0;
    memcpy(vals, m->vals, (size_t)m->nv * sizeof *vals);
    double macs = 0;
    if (!kd_model_plan_shapes(m, 1, h, w, vals, NULL)) {
        for (int i = 0; i < m->nn; i++) {
            const kd_node *d = &m->nodes[i];
            const kd_value *x = &vals[d->in], *y = &vals[d->out];
            if (d->op == N_CONV)
                macs += (double)y->C * y->H * y->W * (x->C / d->groups) * d->k * d->k;
            else if (d->op == N_LINEAR)
                macs += (double)x->C * d->O;
        }
    }
    free(vals);
    return macs;
}
