/* kd_model_plan — planning a model for a batch and input size: the shapes
 * of every value, which nodes may work in place, which BNs fold into their
 * conv (eval-only) or fuse with their ReLU and add, where every activation and
 * activation gradient lives (two arenas placed by kd_arena.c), the saved
 * state of backward and the shared workspace, and the memory this holds.
 * Split from kd_model.c because it is the subtlest part of the engine. */
#include <stdlib.h>
#include <string.h>

#include "kd_arena.h"
#include "kd_err.h"
#include "kd_limits.h"
#include "kd_model_build.h"

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

static int root_of(const kd_model *m, int v)
{
    while (m->vals[v].alias >= 0)
        v = m->vals[v].alias;
    return v;
}

int kd_model_plan_shapes(const kd_model *m, int n, int h, int w, kd_value *vals, kd_node *nodes)
{
    vals[0].H = h;
    vals[0].W = w;
    for (int i = 0; i < m->nn; i++) {
        const kd_node *d = &m->nodes[i];
        kd_value *x = &vals[d->in], *y = &vals[d->out];
        y->H = x->H;
        y->W = x->W;
        switch (d->op) {
        case N_CONV: {
            kd_conv c, *cp = nodes ? &nodes[i].conv : &c;
            if (kd_conv_init(cp, n, x->C, x->H, x->W, d->O, d->k, d->stride, d->pad, d->groups)) {
                kd_err_prefix("model: %s: input %dx%d too small", m->arch, h, w);
                return -1;
            }
            y->H = cp->Ho;
            y->W = cp->Wo;
            break;
        }
        case N_MAXPOOL: {
            kd_pool p, *pp = nodes ? &nodes[i].pool : &p;
            if (kd_pool_init(pp, n, x->C, x->H, x->W, d->k, d->stride, d->pad)) {
                kd_err_prefix("model: %s: input %dx%d too small", m->arch, h, w);
                return -1;
            }
            y->H = pp->Ho;
            y->W = pp->Wo;
            break;
        }
        case N_GAP:
            y->H = y->W = 1;
            break;
        case N_LINEAR:
            if (x->H != 1 || x->W != 1) {
                kd_err_set("model: %s: linear layer on a %dx%d map", m->arch, x->H, x->W);
                return -1;
            }
            break;
        case N_ADD:
        case N_SCALE: {
            const kd_value *b = &vals[d->in2];
            int want_h = d->op == N_ADD ? x->H : 1, want_w = d->op == N_ADD ? x->W : 1;
            if (b->H != want_h || b->W != want_w) {
                kd_err_set("model: %s: residual shapes differ (%dx%d and %dx%d) at input %dx%d", m->arch,
                           x->H, x->W, b->H, b->W, h, w);
                return -1;
            }
            break;
        }
        default:
            break;
        }
    }
    return 0;
}

/* May node d write its output over its input?  Only when nothing else reads
 * the input, the input is not a kept map, and (when training) no backward
 * needs the overwritten values: ReLU's backward can use its output, ADD's and
 * dropout's need nothing, and the producer of the input must not need its own
 * output (activations might; conv, BN, linear, add do not). */
static int can_inplace(const kd_model *m, const kd_node *d)
{
    const kd_value *x = &m->vals[d->in];
    if (d->in == 0 || x->nuse != 1 || x->stage)
        return 0;
    if (m->eval_only)
        return d->op == N_BN || d->op == N_ACT || d->op == N_ADD || d->op == N_SCALE || d->op == N_DROPOUT ||
               d->op == N_DROPPATH;
    kd_op pop = m->nodes[x->producer].op;
    if (pop == N_ACT || pop == N_SCALE)
        return 0;
    if (d->op == N_ACT)
        return d->act == KD_RELU || d->act == KD_RELU6 || d->act == KD_IDENTITY;
    return d->op == N_ADD || d->op == N_DROPOUT || d->op == N_DROPPATH;
}

/* Fusion: a BN whose output only a ReLU (ReLU6) reads, or only an ADD right
 * after it, itself followed by a ReLU reading only the sum, computes
 * act(bn(x) + res) into the last node's output in its own pass
 * (kd_bn_epi); the values in between are never materialised.  The nodes
 * must be consecutive so that the fused backward adds into the residual's
 * gradient where the unfused one did; stage maps and outputs are never
 * fused away.  Applies to training and evaluation plans alike (in an
 * eval-only plan a BN folded into its conv then runs just the add and the
 * ReLU, in one pass). */
static int mid_value(const kd_model *m, int v) { return m->vals[v].nuse == 1 && !m->vals[v].stage; }
static int relu_like(const kd_node *d) { return d->op == N_ACT && (d->act == KD_RELU || d->act == KD_RELU6); }

static int fusion_off(const kd_model *m)
{
    const char *e = getenv("KDPIPE_NO_FUSE");
    return m->no_fuse || (e && *e && strcmp(e, "0"));
}

static void plan_fusion(kd_model *m)
{
    for (int i = 0; i < m->nn; i++) {
        kd_node *d = &m->nodes[i];
        d->fuse_add = d->fuse_act = d->fuse_res = -1;
        d->fuse_out = d->out;
        d->absorbed = 0;
    }
    for (int v = 0; v < m->nv; v++)
        m->vals[v].nobuf = 0;
    if (fusion_off(m))
        return;
    for (int i = 0; i + 1 < m->nn; i++) {
        kd_node *d = &m->nodes[i], *nx = &m->nodes[i + 1];
        if (d->op != N_BN || !mid_value(m, d->out))
            continue;
        if (relu_like(nx) && nx->in == d->out) {
            d->fuse_act = i + 1;
        } else if (nx->op == N_ADD && (nx->in == d->out) != (nx->in2 == d->out)) {
            d->fuse_add = i + 1;
            d->fuse_res = nx->in == d->out ? nx->in2 : nx->in;
            const kd_node *a = i + 2 < m->nn ? &m->nodes[i + 2] : NULL;
            if (a && relu_like(a) && a->in == nx->out && mid_value(m, nx->out))
                d->fuse_act = i + 2;
        } else {
            continue;
        }
        m->vals[d->out].nobuf = 1;
        if (d->fuse_add >= 0) {
            m->nodes[d->fuse_add].absorbed = 1;
            d->fuse_out = m->nodes[d->fuse_add].out;
        }
        if (d->fuse_act >= 0) {
            if (d->fuse_add >= 0)
                m->vals[d->fuse_out].nobuf = 1;
            m->nodes[d->fuse_act].absorbed = 1;
            d->fuse_out = m->nodes[d->fuse_act].out;
        }
    }
}

static int ensure(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    free(*p);
    *p = NULL;
    *cap = 0;
    if (posix_memalign(p, 64, (need ? need : 1) * elem)) {
        *p = NULL;
        return -1;
    }
    memset(*p, 0, need * elem);
    *cap = need;
    return 0;
}

int kd_model_prepare(kd_model *m, int max_n, int h, int w)
{
    if (max_n < 1 || h < 1 || w < 1 || max_n > (1 << 24) || h > 8192 || w > 8192) {
        kd_err_set("model: bad batch/input size %d x %dx%d", max_n, h, w);
        return -1;
    }
    long side = kd_image_bound_px();
    if (side < 0)
        return -1;
    if (h > side || w > side) {
        kd_err_set("model: input of %dx%d is larger than the bound of %ld pixels a side (%s raises it)", h, w, side,
                   KD_IMAGE_BOUND_ENV);
        return -1;
    }
    if (kd_model_plan_shapes(m, max_n, h, w, m->vals, m->nodes))
        return -1;
    int nv = m->nv, nn = m->nn;
    kd_arena_ivl *it = calloc((size_t)nv, sizeof *it);
    int *root_idx = malloc((size_t)nv * sizeof(int));
    if (!it || !root_idx) {
        free(it);
        free(root_idx);
        kd_err_set("model: out of memory");
        return -1;
    }
    /* in-place aliasing */
    for (int v = 0; v < nv; v++)
        m->vals[v].alias = -1;
    size_t fold_need = 0;
    for (int i = 0; i < nn; i++) {
        kd_node *d = &m->nodes[i];
        d->inplace = can_inplace(m, d);
        if (d->inplace)
            m->vals[d->out].alias = d->in;
        d->fold_bn = -1;
        d->folded = 0;
        /* eval-only: a BN right after a conv is folded into the conv's
         * weights and bias (one pass over the activations fewer) */
        if (m->eval_only && d->op == N_BN && d->inplace && m->nodes[m->vals[d->in].producer].op == N_CONV) {
            kd_node *c = &m->nodes[m->vals[d->in].producer];
            c->fold_bn = i;
            d->folded = 1;
            size_t need = m->pv[c->w].n + (size_t)c->O;
            if (need > fold_need)
                fold_need = need;
        }
    }
    plan_fusion(m);
    /* forward arena: live range of each storage root */
    int nr = 0;
    for (int v = 0; v < nv; v++)
        root_idx[v] = -1;
    for (int v = 0; v < nv; v++) {
        if (m->vals[v].nobuf)
            continue; /* a root only aliased by fused-away values gets no storage */
        int r = root_of(m, v);
        if (root_idx[r] < 0) {
            root_idx[r] = nr;
            it[nr].size = ALIGN16(kd_val_size(m, r, max_n));
            it[nr].s = m->vals[r].producer;
            it[nr].e = m->vals[r].producer;
            nr++;
        }
        kd_arena_ivl *a = &it[root_idx[r]];
        int end = m->vals[v].last_use > m->vals[v].producer ? m->vals[v].last_use : m->vals[v].producer;
        if (!m->eval_only)
            end = nn; /* backward needs (nearly) everything */
        int keep = v == m->feat || v == m->logits || v == m->emb;
        for (int s = 0; s < m->nstages; s++)
            if (m->stages[s] == v && m->keep_stage[s + 1])
                keep = 1;
        if (keep)
            end = nn;
        if (end > a->e)
            a->e = end;
    }
    size_t act_need = kd_arena_place(it, nr);
    for (int v = 0; v < nv; v++) {
        int ri = root_idx[root_of(m, v)];
        m->vals[v].off = ri >= 0 ? it[ri].off : 0;
    }
    /* gradient arena: value v's gradient lives from its last consumer's
     * backward to its producer's, in reverse time; outputs from the start */
    size_t dact_need = 0;
    if (!m->eval_only) {
        int ng = 0;
        for (int v = 1; v < nv; v++) {
            kd_value *x = &m->vals[v];
            x->has_grad = !x->nobuf;
            root_idx[v] = -1;
            if (x->nobuf)
                continue;
            /* external gradients (seeded before the reverse walk): the
             * outputs, the last stage and the stages declared by
             * kd_model_grad_stage */
            int ext = v == m->feat || v == m->logits || v == m->emb || v == m->stages[m->nstages - 1];
            for (int s = 1; s < m->nstages; s++)
                if (m->grad_stage[s] && v == m->stages[s - 1])
                    ext = 1;
            int first = ext || x->last_use < 0 ? 0 : nn - 1 - x->last_use;
            it[ng].size = ALIGN16(kd_val_size(m, v, max_n));
            it[ng].s = first;
            it[ng].e = nn - 1 - x->producer;
            root_idx[v] = ng++;
        }
        dact_need = kd_arena_place(it, ng);
        for (int v = 1; v < nv; v++)
            m->vals[v].doff = root_idx[v] >= 0 ? it[root_idx[v]].off : 0;
    }
    free(it);
    free(root_idx);
    if (act_need == (size_t)-1 || dact_need == (size_t)-1) {
        kd_err_set("model: out of memory");
        return -1;
    }
    /* saved state and the shared workspace */
    size_t aux = 0, iaux = 0, ws = 0;
    for (int i = 0; i < nn; i++) {
        kd_node *d = &m->nodes[i];
        d->aux = aux;
        d->iaux = iaux;
        if (d->op == N_BN)
            aux += ALIGN16(2 * (size_t)d->O * max_n);
        else if (d->op == N_DROPOUT)
            aux += ALIGN16(kd_val_size(m, d->out, max_n));
        else if (d->op == N_DROPPATH)
            aux += ALIGN16((size_t)max_n);
        else if (d->op == N_MAXPOOL)
            iaux += ALIGN16(kd_val_size(m, d->out, max_n));
        else if (d->op == N_CONV) {
            size_t s = kd_conv_workspace(&d->conv);
            if (s > ws)
                ws = s;
        }
    }
    /* checked before anything is allocated: a small input (a deflated
     * frame of large views) must not plan gigabytes unasked */
    double mb = ((double)(act_need + dact_need + aux + ws + fold_need + iaux) * 4 + m->nv) / (1 << 20);
    long bound = kd_memory_bound_mb();
    if (bound < 0)
        return -1;
    if (mb > (double)bound) {
        kd_err_set("model: %d images of %dx%d need %.0f MB of activations, more than the bound of %ld MB (%s raises it)",
                   max_n, h, w, mb, bound, KD_MEMORY_BOUND_ENV);
        return -1;
    }
    if (ensure((void **)&m->act, &m->act_cap, act_need, sizeof(float)) ||
        ensure((void **)&m->dact, &m->dact_cap, dact_need, sizeof(float)) ||
        ensure((void **)&m->aux, &m->aux_cap, aux, sizeof(float)) ||
        ensure((void **)&m->iaux, &m->iaux_cap, iaux, sizeof(int32_t)) ||
        ensure((void **)&m->ws, &m->ws_cap, ws, sizeof(float)) ||
        ensure((void **)&m->nz, &m->nz_cap, (size_t)m->nv, 1) ||
        ensure((void **)&m->fold, &m->fold_cap, fold_need, sizeof(float))) {
        kd_err_set("model: out of memory for activations of %d images %dx%d (%.0f MB)", max_n, h, w,
                   (double)(act_need + dact_need + aux + ws) * 4 / 1e6);
        return -1;
    }
    m->act_need = act_need;
    m->dact_need = dact_need;
    m->aux_need = aux;
    m->iaux_need = iaux;
    m->ws_need = ws;
    m->max_n = max_n;
    m->H = h;
    m->W = w;
    m->planned_n = max_n;
    m->last_n = 0;
    return 0;
}

size_t kd_model_memory(const kd_model *m)
{
    return (m->act_need + m->dact_need + m->aux_need + m->ws_need) * sizeof(float) + m->iaux_need * sizeof(int32_t) +
           m->nparams * 2 * sizeof(float) + m->nbuffers * sizeof(float);
}

int kd_model_input_size(const kd_model *m, int *h, int *w)
{
    if (h)
        *h = m->H;
    if (w)
        *w = m->W;
    return m->planned_n;
}
