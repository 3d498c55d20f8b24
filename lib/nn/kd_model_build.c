/* kd_model_build — building a model's graph: the kd_b_*() builders the
 * architectures (kd_arch_*.c) call in forward order, the parameter and
 * buffer views they declare, the projection head, and the PyTorch-like
 * initialisation of the parameters.  Split from kd_model.c so that adding
 * an op's builder does not mean reading the planner or the executor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_model_build.h"
#include "kd_rng.h"

/* Remember the first build failure and say what it was; later builder
 * calls see build_err and do nothing, so the first message stands. */
static void build_fail(kd_model *m, const char *what, const char *name)
{
    if (!m->build_err)
        kd_err_set("model: %s: %s%s%s", m->arch[0] ? m->arch : "?", what, name ? " " : "", name ? name : "");
    m->build_err = 1;
}

static int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int nc = *cap ? *cap * 2 : 64;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q)
        return -1;
    memset((char *)q + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *p = q;
    *cap = nc;
    return 0;
}

static int new_value(kd_model *m, int C, int producer)
{
    if (grow((void **)&m->vals, &m->capv, m->nv + 1, sizeof(kd_value))) {
        build_fail(m, "out of memory for the value table", NULL);
        return -1;
    }
    kd_value *v = &m->vals[m->nv];
    memset(v, 0, sizeof *v);
    v->C = C;
    v->producer = producer;
    v->last_use = -1;
    v->alias = -1;
    return m->nv++;
}

static kd_node *new_node(kd_model *m, kd_op op, int in, int in2)
{
    if (m->build_err)
        return NULL;
    if (in < 0 || in >= m->nv || (in2 >= m->nv)) {
        build_fail(m, "a layer reads a value that does not exist (a failed builder before it?)", NULL);
        return NULL;
    }
    if (grow((void **)&m->nodes, &m->capn, m->nn + 1, sizeof(kd_node))) {
        build_fail(m, "out of memory for the node list", NULL);
        return NULL;
    }
    kd_node *n = &m->nodes[m->nn];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->in = in;
    n->in2 = in2;
    n->w = n->b = n->rm = n->rv = n->nbt = -1;
    m->vals[in].nuse++;
    m->vals[in].last_use = m->nn;
    if (in2 >= 0) {
        m->vals[in2].nuse++;
        m->vals[in2].last_use = m->nn;
    }
    return n;
}

/* Finish a node: its output value with C channels. */
static int node_out(kd_model *m, kd_node *n, int C)
{
    int v = new_value(m, C, (int)(n - m->nodes));
    if (v < 0)
        return -1;
    n->out = v;
    m->nn++;
    return v;
}

static int add_view(kd_model *m, int buffer, const char *name, int rank, const int64_t *shape, kd_init init)
{
    kd_pview **arr = buffer ? &m->bv : &m->pv;
    int *cnt = buffer ? &m->nbv : &m->npv;
    int *cap = buffer ? &m->capbv : &m->cappv;
    int oldcap = *cap;
    if (grow((void **)arr, cap, *cnt + 1, sizeof(kd_pview))) {
        build_fail(m, "out of memory for the views of", name);
        return -1;
    }
    if (!buffer && *cap != oldcap) {
        kd_init *q = realloc(m->pinit, (size_t)*cap * sizeof(kd_init));
        if (!q) {
            build_fail(m, "out of memory for the initialisers of", name);
            return -1;
        }
        m->pinit = q;
    }
    kd_pview *v = &(*arr)[*cnt];
    memset(v, 0, sizeof *v);
    if (strlen(name) >= sizeof v->name) {
        build_fail(m, "parameter name too long:", name);
        return -1;
    }
    strcpy(v->name, name);
    v->rank = rank;
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        v->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    v->n = n;
    size_t *tot = buffer ? &m->nbuffers : &m->nparams;
    v->off = *tot;
    *tot += n;
    if (!buffer)
        m->pinit[*cnt] = init;
    else /* buffers: running_var starts at 1, the rest at 0 */
        v->no_decay = 1;
    (void)init;
    return (*cnt)++;
}

static int add_param(kd_model *m, const char *mod, const char *suffix, int rank, const int64_t *shape,
                     kd_init init, int no_decay)
{
    char name[128];
    snprintf(name, sizeof name, "%s%s%s", mod, *mod ? "." : "", suffix);
    int i = add_view(m, 0, name, rank, shape, init);
    if (i >= 0)
        m->pv[i].no_decay = no_decay;
    return i;
}

static int add_buffer(kd_model *m, const char *mod, const char *suffix, int64_t len)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", mod, suffix);
    kd_init z = {I_ZERO, 0};
    return add_view(m, 1, name, len ? 1 : 0, &len, z);
}

int kd_b_input(kd_model *m, int C) { return new_value(m, C, -1); }

kd_init kd_init_linear_default(int fan_in)
{
    kd_init i = {I_UNIFORM, (float)(1.0 / sqrt((double)fan_in))};
    return i;
}

int kd_b_conv(kd_model *m, const char *name, int in, int O, int k, int stride, int groups, int bias)
{
    kd_node *n = new_node(m, N_CONV, in, -1);
    if (!n)
        return -1;
    int C = m->vals[in].C;
    if (groups < 1 || C % groups || O % groups) {
        build_fail(m, "channels not divisible by the groups of", name);
        return -1;
    }
    n->O = O;
    n->k = k;
    n->stride = stride;
    n->pad = (k - 1) / 2;
    n->groups = groups;
    /* torchvision and CRD: kaiming_normal_(mode="fan_out", relu gain); PyTorch's
     * fan_out of a conv weight [O, C/g, k, k] is O*k*k (groups not divided out). */
    kd_init wi = {I_NORMAL, (float)sqrt(2.0 / ((double)O * k * k))};
    int64_t shape[4] = {O, C / groups, k, k};
    n->w = add_param(m, name, "weight", 4, shape, wi, 0);
    if (bias) {
        kd_init z = {I_ZERO, 0};
        int64_t bs = O;
        n->b = add_param(m, name, "bias", 1, &bs, z, 1);
    }
    return node_out(m, n, O);
}

int kd_b_bn(kd_model *m, const char *name, int in, float eps, float momentum)
{
    kd_node *n = new_node(m, N_BN, in, -1);
    if (!n)
        return -1;
    int C = m->vals[in].C;
    n->O = C;
    n->eps = eps;
    n->momentum = momentum;
    int64_t s = C;
    kd_init one = {I_ONE, 0}, zero = {I_ZERO, 0};
    n->w = add_param(m, name, "weight", 1, &s, one, 1);
    n->b = add_param(m, name, "bias", 1, &s, zero, 1);
    n->rm = add_buffer(m, name, "running_mean", C);
    n->rv = add_buffer(m, name, "running_var", C);
    n->nbt = add_buffer(m, name, "num_batches_tracked", 0);
    return node_out(m, n, C);
}

int kd_b_act(kd_model *m, int in, kd_act a)
{
    kd_node *n = new_node(m, N_ACT, in, -1);
    if (!n)
        return -1;
    n->act = a;
    return node_out(m, n, m->vals[in].C);
}

int kd_b_maxpool(kd_model *m, int in, int k, int stride, int pad)
{
    kd_node *n = new_node(m, N_MAXPOOL, in, -1);
    if (!n)
        return -1;
    n->k = k;
    n->stride = stride;
    n->pad = pad;
    return node_out(m, n, m->vals[in].C);
}

int kd_b_gap(kd_model *m, int in)
{
    kd_node *n = new_node(m, N_GAP, in, -1);
    if (!n)
        return -1;
    return node_out(m, n, m->vals[in].C);
}

int kd_b_linear(kd_model *m, const char *name, int in, int O, int bias, kd_init wi, kd_init bi)
{
    kd_node *n = new_node(m, N_LINEAR, in, -1);
    if (!n)
        return -1;
    /* the input must be pooled ([N,C,1,1] or [N,C]); checked when planning */
    int I = m->vals[in].C;
    n->O = O;
    int64_t ws[2] = {O, I}, bs = O;
    n->w = add_param(m, name, "weight", 2, ws, wi, 0);
    if (bias)
        n->b = add_param(m, name, "bias", 1, &bs, bi, 1);
    return node_out(m, n, O);
}

int kd_b_pointwise(kd_model *m, const char *name, int in, int O)
{
    kd_node *n = new_node(m, N_LINEAR, in, -1);
    if (!n)
        return -1;
    int I = m->vals[in].C;
    n->O = O;
    int64_t ws[4] = {O, I, 1, 1}, bs = O;
    kd_init wi = {I_NORMAL, (float)sqrt(2.0 / O)}, z = {I_ZERO, 0};
    n->w = add_param(m, name, "weight", 4, ws, wi, 0);
    n->b = add_param(m, name, "bias", 1, &bs, z, 1);
    return node_out(m, n, O);
}

int kd_b_add(kd_model *m, int a, int b)
{
    if (b < 0 || a < 0 || m->vals[a].C != m->vals[b].C) {
        build_fail(m, "a residual add of different channel counts (or of a failed layer)", NULL);
        return -1;
    }
    kd_node *n = new_node(m, N_ADD, a, b);
    if (!n)
        return -1;
    return node_out(m, n, m->vals[a].C);
}

int kd_b_scale(kd_model *m, int x, int s)
{
    if (s < 0 || x < 0 || m->vals[x].C != m->vals[s].C) {
        build_fail(m, "a channel scale of different channel counts (or of a failed layer)", NULL);
        return -1;
    }
    kd_node *n = new_node(m, N_SCALE, x, s);
    if (!n)
        return -1;
    return node_out(m, n, m->vals[x].C);
}

int kd_b_dropout(kd_model *m, int in, float p)
{
    kd_node *n = new_node(m, N_DROPOUT, in, -1);
    if (!n)
        return -1;
    n->p = p;
    return node_out(m, n, m->vals[in].C);
}

int kd_b_droppath(kd_model *m, int in, float p)
{
    kd_node *n = new_node(m, N_DROPPATH, in, -1);
    if (!n)
        return -1;
    n->p = p;
    return node_out(m, n, m->vals[in].C);
}

void kd_b_stage(kd_model *m, int v)
{
    if (v < 0 || m->nstages >= KD_MAX_STAGES) {
        build_fail(m, v < 0 ? "a stage ends in a failed layer" : "more stages than KD_MAX_STAGES", NULL);
        return;
    }
    m->stages[m->nstages++] = v;
    m->vals[v].stage = 1;
}

int kd_b_channels(const kd_model *m, int v) { return v >= 0 && v < m->nv ? m->vals[v].C : 0; }

int kd_make_divisible(double v, int divisor)
{
    int nv = (int)(v + divisor / 2.0) / divisor * divisor;
    if (nv < divisor)
        nv = divisor;
    if (nv < 0.9 * v)
        nv += divisor;
    return nv;
}
/* MoCo-style projection head on the features: head.0 Linear(d,h),
 * [head.1 BatchNorm1d(h)], ReLU, Linear(h,e) -- indices as an nn.Sequential
 * numbers them, so a MoCo `fc` Sequential renamed to `head` loads as is. */
int kd_build_head(kd_model *m)
{
    int d = m->vals[m->feat].C, h = m->o.head_hidden, e = m->o.head_out;
    int v = kd_b_linear(m, "head.0", m->feat, h, 1, kd_init_linear_default(d), kd_init_linear_default(d));
    int idx = 1;
    if (m->o.head_bn)
        v = kd_b_bn(m, "head.1", v, 1e-5f, 0.1f), idx = 2;
    v = kd_b_act(m, v, KD_RELU);
    char name[32];
    snprintf(name, sizeof name, "head.%d", idx + 1);
    v = kd_b_linear(m, name, v, e, 1, kd_init_linear_default(h), kd_init_linear_default(h));
    m->emb = v;
    return v < 0 ? -1 : 0;
}

void kd_init_params(kd_model *m, uint64_t seed)
{
    for (int i = 0; i < m->npv; i++) {
        kd_pview *v = &m->pv[i];
        float *p = m->params + v->off;
        kd_init in = m->pinit[i];
        kd_rng r = kd_rng_make(seed, 0x6d6f64656cULL, (uint64_t)i);
        for (size_t j = 0; j < v->n; j++) {
            switch (in.kind) {
            case I_ZERO: p[j] = 0; break;
            case I_ONE: p[j] = 1; break;
            case I_NORMAL: p[j] = in.a * kd_rng_normal(&r); break;
            case I_UNIFORM: p[j] = kd_rng_range(&r, -in.a, in.a); break;
            }
        }
    }
    for (int i = 0; i < m->nbv; i++) {
        kd_pview *v = &m->bv[i];
        float val = strstr(v->name, "running_var") ? 1.0f : 0.0f;
        for (size_t j = 0; j < v->n; j++)
            m->buffers[v->off + j] = val;
    }
}
