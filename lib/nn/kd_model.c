/* kd_model — the engine: graph building, planning (activation arenas with
 * in-place reuse), forward, backward, initialisation and model files.
 * The architectures themselves are in kd_arch_*.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_model_build.h"
#include "kd_rng.h"

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

/* ---------------------------------------------------------------- building */

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
        m->build_err = 1;
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
    if (m->build_err || in < 0 || in >= m->nv || (in2 >= m->nv)) {
        m->build_err = 1;
        return NULL;
    }
    if (grow((void **)&m->nodes, &m->capn, m->nn + 1, sizeof(kd_node))) {
        m->build_err = 1;
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
        m->build_err = 1;
        return -1;
    }
    if (!buffer && *cap != oldcap) {
        kd_init *q = realloc(m->pinit, (size_t)*cap * sizeof(kd_init));
        if (!q) {
            m->build_err = 1;
            return -1;
        }
        m->pinit = q;
    }
    kd_pview *v = &(*arr)[*cnt];
    memset(v, 0, sizeof *v);
    if (strlen(name) >= sizeof v->name) {
        m->build_err = 1;
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
        m->build_err = 1;
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
        m->build_err = 1;
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
        m->build_err = 1;
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
        m->build_err = 1;
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

/* ------------------------------------------------------------ architectures */

static const struct {
    const char *name;
    int (*build)(kd_model *);
} archs[] = {
    {"resnet18", kd_arch_resnet_tv},      {"resnet34", kd_arch_resnet_tv},
    {"resnet50", kd_arch_resnet_tv},      {"resnet20", kd_arch_resnet_cifar},
    {"resnet56", kd_arch_resnet_cifar},   {"resnet8x4", kd_arch_resnet_cifar},
    {"resnet32x4", kd_arch_resnet_cifar}, {"wrn_16_2", kd_arch_wrn},
    {"wrn_40_2", kd_arch_wrn},            {"mobilenet_v2", kd_arch_mobilenet_v2},
    {"efficientnet_b0", kd_arch_efficientnet_b0},
    {"mobilenet_v3_large", kd_arch_mobilenet_v3_large},
};

const char *kd_model_arch_names(void)
{
    return "resnet18 resnet34 resnet50 resnet20 resnet56 resnet8x4 resnet32x4 wrn_16_2 wrn_40_2 "
           "mobilenet_v2 efficientnet_b0 mobilenet_v3_large";
}

/* MoCo-style projection head on the features: head.0 Linear(d,h),
 * [head.1 BatchNorm1d(h)], ReLU, Linear(h,e) -- indices as an nn.Sequential
 * numbers them, so a MoCo `fc` Sequential renamed to `head` loads as is. */
static int build_head(kd_model *m)
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

static void init_params(kd_model *m, uint64_t seed)
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

static kd_model *model_build(const kd_arch_opts *o)
{
    if (!o || !o->arch) {
        kd_err_set("model: no architecture given");
        return NULL;
    }
    int ai = -1;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!strcmp(o->arch, archs[i].name))
            ai = (int)i;
    if (ai < 0) {
        kd_err_set("model: unknown architecture '%s' (known: %s)", o->arch, kd_model_arch_names());
        return NULL;
    }
    if (o->in_channels != 1 && o->in_channels != 3) {
        kd_err_set("model: in_channels must be 1 or 3, not %d", o->in_channels);
        return NULL;
    }
    if (o->num_classes < 0 || o->num_classes > 1000000 || o->head_hidden < 0 || o->head_out < 0 ||
        o->head_hidden > 1000000 || o->head_out > 1000000 || (o->head_hidden > 0) != (o->head_out > 0)) {
        kd_err_set("model: bad classifier/head sizes");
        return NULL;
    }
    if (o->cifar_stem && strncmp(o->arch, "resnet", 6)) {
        kd_err_set("model: --cifar-stem applies to resnet18/34/50 only");
        return NULL;
    }
    if (o->width_mult != 0 && o->width_mult != 1 &&
        (o->width_mult < 0.1 || o->width_mult > 4 ||
         (strcmp(o->arch, "mobilenet_v2") && strcmp(o->arch, "efficientnet_b0") && strcmp(o->arch, "mobilenet_v3_large")))) {
        kd_err_set("model: width multiplier %g not supported for %s", o->width_mult, o->arch);
        return NULL;
    }
    kd_model *m = calloc(1, sizeof *m);
    if (!m) {
        kd_err_set("model: out of memory");
        return NULL;
    }
    m->o = *o;
    snprintf(m->arch, sizeof m->arch, "%s", archs[ai].name);
    m->o.arch = m->arch;
    if (m->o.width_mult == 0)
        m->o.width_mult = 1;
    m->feat = m->logits = m->emb = -1;
    m->use_dropout = m->use_droppath = 1;
    new_value(m, o->in_channels, -1);
    if (archs[ai].build(m) || m->build_err || m->feat < 0 || (o->head_hidden > 0 && build_head(m)) || m->build_err) {
        /* a builder that fails without build_err has said why */
        if (m->build_err || m->feat < 0)
            kd_err_set("model: %s: could not build (out of memory or bad options)", o->arch);
        kd_model_free(m);
        return NULL;
    }
    m->vals[m->feat].stage = 1; /* outputs are never overwritten in place */
    if (m->logits >= 0)
        m->vals[m->logits].stage = 1;
    if (m->emb >= 0)
        m->vals[m->emb].stage = 1;
    m->params = calloc(m->nparams ? m->nparams : 1, sizeof(float));
    m->grads = calloc(m->nparams ? m->nparams : 1, sizeof(float));
    m->buffers = calloc(m->nbuffers ? m->nbuffers : 1, sizeof(float));
    if (!m->params || !m->grads || !m->buffers) {
        kd_err_set("model: %s: out of memory for %zu parameters", o->arch, m->nparams);
        kd_model_free(m);
        return NULL;
    }
    m->keep_stage[m->nstages] = 1;
    return m;
}

kd_model *kd_model_new(const kd_arch_opts *o, uint64_t seed)
{
    kd_model *m = model_build(o);
    if (!m)
        return NULL;
    m->seed = seed;
    m->rng_seed = seed;
    init_params(m, seed);
    return m;
}

void kd_model_free(kd_model *m)
{
    if (!m)
        return;
    free(m->nodes);
    free(m->vals);
    free(m->pv);
    free(m->pinit);
    free(m->bv);
    free(m->params);
    free(m->grads);
    free(m->buffers);
    free(m->act);
    free(m->dact);
    free(m->aux);
    free(m->iaux);
    free(m->ws);
    free(m->nz);
    free(m->fold);
    free(m);
}

const kd_arch_opts *kd_model_opts(const kd_model *m) { return &m->o; }

float *kd_model_params(kd_model *m, size_t *n)
{
    if (n)
        *n = m->nparams;
    return m->params;
}
float *kd_model_grads(kd_model *m, size_t *n)
{
    if (n)
        *n = m->nparams;
    return m->grads;
}
float *kd_model_buffers(kd_model *m, size_t *n)
{
    if (n)
        *n = m->nbuffers;
    return m->buffers;
}
int kd_model_nparam_views(const kd_model *m) { return m->npv; }
const kd_pview *kd_model_param_view(const kd_model *m, int i) { return i >= 0 && i < m->npv ? &m->pv[i] : NULL; }
int kd_model_nbuffer_views(const kd_model *m) { return m->nbv; }
const kd_pview *kd_model_buffer_view(const kd_model *m, int i) { return i >= 0 && i < m->nbv ? &m->bv[i] : NULL; }
void kd_model_zero_grad(kd_model *m) { memset(m->grads, 0, m->nparams * sizeof(float)); }

int kd_model_feat_dim(const kd_model *m) { return m->vals[m->feat].C; }
int kd_model_num_classes(const kd_model *m) { return m->logits >= 0 ? m->vals[m->logits].C : 0; }
int kd_model_emb_dim(const kd_model *m) { return m->emb >= 0 ? m->vals[m->emb].C : 0; }
int kd_model_nstages(const kd_model *m) { return m->nstages; }

void kd_model_set_eval_only(kd_model *m, int on)
{
    if (m->eval_only != !!on)
        m->planned_n = 0;
    m->eval_only = !!on;
}

int kd_model_keep_stage(kd_model *m, int stage)
{
    if (stage < 1 || stage > m->nstages) {
        kd_err_set("model: %s has stages 1..%d, not %d", m->arch, m->nstages, stage);
        return -1;
    }
    if (!m->keep_stage[stage])
        m->planned_n = 0;
    m->keep_stage[stage] = 1;
    return 0;
}

void kd_model_set_rng(kd_model *m, uint64_t seed, uint64_t step)
{
    m->rng_seed = seed;
    m->step = step;
}

void kd_model_set_regularisers(kd_model *m, int dropout, int drop_path)
{
    m->use_dropout = !!dropout;
    m->use_droppath = !!drop_path;
}

/* ---------------------------------------------------------------- planning */

static int root_of(const kd_model *m, int v)
{
    while (m->vals[v].alias >= 0)
        v = m->vals[v].alias;
    return v;
}

static size_t val_size(const kd_model *m, int v, int n)
{
    const kd_value *x = &m->vals[v];
    return (size_t)n * x->C * x->H * x->W;
}

/* Shapes of every value for an input of h x w; conv/pool descriptors for n. */
static int plan_shapes(kd_model *m, int n, int h, int w)
{
    m->vals[0].H = h;
    m->vals[0].W = w;
    for (int i = 0; i < m->nn; i++) {
        kd_node *d = &m->nodes[i];
        kd_value *x = &m->vals[d->in], *y = &m->vals[d->out];
        y->H = x->H;
        y->W = x->W;
        switch (d->op) {
        case N_CONV:
            if (kd_conv_init(&d->conv, n, x->C, x->H, x->W, d->O, d->k, d->stride, d->pad, d->groups)) {
                kd_err_prefix("model: %s: input %dx%d too small", m->arch, h, w);
                return -1;
            }
            y->H = d->conv.Ho;
            y->W = d->conv.Wo;
            break;
        case N_MAXPOOL:
            if (kd_pool_init(&d->pool, n, x->C, x->H, x->W, d->k, d->stride, d->pad)) {
                kd_err_prefix("model: %s: input %dx%d too small", m->arch, h, w);
                return -1;
            }
            y->H = d->pool.Ho;
            y->W = d->pool.Wo;
            break;
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
            const kd_value *b = &m->vals[d->in2];
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

typedef struct {
    size_t size, off;
    int s, e;
} ivl;

static int ivl_cmp_size(const void *a, const void *b)
{
    const ivl *x = *(ivl *const *)a, *y = *(ivl *const *)b;
    return x->size < y->size ? 1 : x->size > y->size ? -1 : 0;
}
static int ivl_cmp_off(const void *a, const void *b)
{
    const ivl *x = *(ivl *const *)a, *y = *(ivl *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Offsets for live ranges [s,e] so that items alive together never overlap
 * (greedy, largest first); returns the arena size. */
static size_t ivl_place(ivl *it, int n)
{
    ivl **ord = malloc((size_t)(n ? n : 1) * sizeof *ord), **ov = malloc((size_t)(n ? n : 1) * sizeof *ov);
    size_t total = 0;
    if (!ord || !ov) {
        free(ord);
        free(ov);
        return (size_t)-1;
    }
    for (int i = 0; i < n; i++)
        ord[i] = &it[i];
    qsort(ord, (size_t)n, sizeof *ord, ivl_cmp_size);
    for (int i = 0; i < n; i++) {
        ivl *a = ord[i];
        int no = 0;
        for (int j = 0; j < i; j++)
            if (ord[j]->s <= a->e && a->s <= ord[j]->e)
                ov[no++] = ord[j];
        qsort(ov, (size_t)no, sizeof *ov, ivl_cmp_off);
        size_t off = 0;
        for (int j = 0; j < no; j++) {
            if (ov[j]->off >= off + a->size)
                break;
            if (ov[j]->off + ov[j]->size > off)
                off = ov[j]->off + ov[j]->size;
        }
        a->off = off;
        if (off + a->size > total)
            total = off + a->size;
    }
    free(ord);
    free(ov);
    return total;
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
    if (plan_shapes(m, max_n, h, w))
        return -1;
    int nv = m->nv, nn = m->nn;
    ivl *it = calloc((size_t)nv, sizeof *it);
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
    /* forward arena: live range of each storage root */
    int nr = 0;
    for (int v = 0; v < nv; v++)
        root_idx[v] = -1;
    for (int v = 0; v < nv; v++) {
        int r = root_of(m, v);
        if (root_idx[r] < 0) {
            root_idx[r] = nr;
            it[nr].size = ALIGN16(val_size(m, r, max_n));
            it[nr].s = m->vals[r].producer;
            it[nr].e = m->vals[r].producer;
            nr++;
        }
        ivl *a = &it[root_idx[r]];
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
    size_t act_need = ivl_place(it, nr);
    for (int v = 0; v < nv; v++)
        m->vals[v].off = it[root_idx[root_of(m, v)]].off;
    /* gradient arena: value v's gradient lives from its last consumer's
     * backward to its producer's, in reverse time; outputs from the start */
    size_t dact_need = 0;
    if (!m->eval_only) {
        int ng = 0;
        for (int v = 1; v < nv; v++) {
            kd_value *x = &m->vals[v];
            x->has_grad = 1;
            int ext = v == m->feat || v == m->logits || v == m->emb || v == m->stages[m->nstages - 1];
            int first = ext || x->last_use < 0 ? 0 : nn - 1 - x->last_use;
            it[ng].size = ALIGN16(val_size(m, v, max_n));
            it[ng].s = first;
            it[ng].e = nn - 1 - x->producer;
            root_idx[v] = ng++;
        }
        dact_need = ivl_place(it, ng);
        for (int v = 1; v < nv; v++)
            m->vals[v].doff = it[root_idx[v]].off;
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
            aux += ALIGN16(val_size(m, d->out, max_n));
        else if (d->op == N_DROPPATH)
            aux += ALIGN16((size_t)max_n);
        else if (d->op == N_MAXPOOL)
            iaux += ALIGN16(val_size(m, d->out, max_n));
        else if (d->op == N_CONV) {
            size_t s = kd_conv_workspace(&d->conv);
            if (s > ws)
                ws = s;
        }
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

/* ----------------------------------------------------------------- forward */

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
    memcpy(VAL(0), x, val_size(m, 0, n) * sizeof(float));
    for (int i = 0; i < m->nn; i++) {
        kd_node *d = &m->nodes[i];
        const kd_value *vx = &m->vals[d->in], *vy = &m->vals[d->out];
        float *X = VAL(d->in), *Y = VAL(d->out);
        size_t ny = val_size(m, d->out, n);
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
        case N_BN:
            if (d->folded && !train)
                break; /* done by the conv (in place: Y == X) */
            if (train) {
                if ((bn_group ? bn_group : n) * HW < 2) {
                    kd_err_set("model: batch norm needs more than one value per channel in training "
                               "(batch %d, map %dx%d)", bn_group ? bn_group : n, vx->H, vx->W);
                    return -1;
                }
                float *sv = m->aux + d->aux;
                kd_bn_forward_train(n, vx->C, HW, bn_group, X, PAR(d->w), PAR(d->b), Y, sv, sv + (size_t)d->O * m->max_n,
                                    BUF(d->rm), BUF(d->rv), d->momentum, d->eps);
                BUF(d->nbt)[0] += 1;
            } else {
                kd_bn_forward_eval(n, vx->C, HW, X, PAR(d->w), PAR(d->b), BUF(d->rm), BUF(d->rv), d->eps, Y);
            }
            break;
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
    if (train)
        m->step++;
    return 0;
}

const float *kd_model_features(const kd_model *m) { return m->planned_n ? VAL(m->feat) : NULL; }
const float *kd_model_logits(const kd_model *m) { return m->planned_n && m->logits >= 0 ? VAL(m->logits) : NULL; }
const float *kd_model_embedding(const kd_model *m) { return m->planned_n && m->emb >= 0 ? VAL(m->emb) : NULL; }

const float *kd_model_stage_map(const kd_model *m, int stage, int *c, int *h, int *w)
{
    if (stage < 1 || stage > m->nstages || !m->planned_n) {
        kd_err_set("model: %s has stages 1..%d, not %d", m->arch, m->nstages, stage);
        return NULL;
    }
    if (m->eval_only && !m->keep_stage[stage]) {
        kd_err_set("model: stage %d was not kept (kd_model_keep_stage before prepare)", stage);
        return NULL;
    }
    const kd_value *v = &m->vals[m->stages[stage - 1]];
    if (c)
        *c = v->C;
    if (h)
        *h = v->H;
    if (w)
        *w = v->W;
    return VAL(m->stages[stage - 1]);
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
    size_t sz = val_size(m, v, n);
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
        zero_floats(DVAL(v), val_size(m, v, n));
        x->grad_live = 1;
    }
    return DVAL(v);
}

int kd_model_backward(kd_model *m, const float *d_features, const float *d_logits, const float *d_embedding,
                      const float *d_map)
{
    if (!m->last_n || !m->last_train) {
        kd_err_set("model: backward needs a training-mode forward first");
        return -1;
    }
    int n = m->last_n, group = m->last_group;
    for (int v = 0; v < m->nv; v++)
        m->vals[v].grad_live = 0;
    int last_map = m->stages[m->nstages - 1];
    /* external gradients: zero every output's buffer first, since the
     * features' buffer must hold the sum of all of them */
    int ext[4] = {m->feat, m->logits, m->emb, last_map};
    const float *g[4] = {d_features, d_logits, d_embedding, d_map};
    int any[4] = {d_features != NULL, d_logits != NULL, d_embedding != NULL, d_map != NULL};
    for (int k = 0; k < 4; k++)
        if (ext[k] >= 0)
            grad_seed(m, ext[k], g[k], n);
    /* grad_live now only means "buffer valid"; track which are non-zero */
    char *nz = m->nz;
    memset(nz, 0, (size_t)m->nv);
    for (int k = 0; k < 4; k++)
        if (ext[k] >= 0 && any[k])
            nz[ext[k]] = 1;
    for (int i = m->nn - 1; i >= 0; i--) {
        kd_node *d = &m->nodes[i];
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
        size_t ny = val_size(m, d->out, n);
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
            kd_bn_backward(n, vx->C, HW, group, X, sv, sv + (size_t)d->O * m->max_n, PAR(d->w), dY, dX, GRAD(d->w),
                           GRAD(d->b));
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
            for (size_t k = 0; k < ny; k++) {
                if (dX)
                    dX[k] += dY[k];
                if (dX2)
                    dX2[k] += dY[k];
            }
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

double kd_model_flops(const kd_model *m, int h, int w)
{
    /* shapes without touching the plan: a scratch copy of the value table */
    kd_model tmp = *m;
    tmp.vals = malloc((size_t)m->nv * sizeof(kd_value));
    tmp.nodes = malloc((size_t)m->nn * sizeof(kd_node));
    if (!tmp.vals || !tmp.nodes) {
        free(tmp.vals);
        free(tmp.nodes);
        return 0;
    }
    memcpy(tmp.vals, m->vals, (size_t)m->nv * sizeof(kd_value));
    memcpy(tmp.nodes, m->nodes, (size_t)m->nn * sizeof(kd_node));
    double macs = 0;
    if (!plan_shapes(&tmp, 1, h, w)) {
        for (int i = 0; i < tmp.nn; i++) {
            const kd_node *d = &tmp.nodes[i];
            const kd_value *x = &tmp.vals[d->in], *y = &tmp.vals[d->out];
            if (d->op == N_CONV)
                macs += (double)y->C * y->H * y->W * (x->C / d->groups) * d->k * d->k;
            else if (d->op == N_LINEAR)
                macs += (double)x->C * d->O;
        }
    }
    free(tmp.vals);
    free(tmp.nodes);
    return macs;
}

/* ------------------------------------------------------------- model files */

int kd_model_save_h5(const kd_model *m, kd_h5 *h)
{
    const kd_arch_opts *o = &m->o;
    if (kd_h5_attr_set_str(h, NULL, "arch", o->arch) || kd_h5_attr_set_i64(h, NULL, "in_channels", o->in_channels) ||
        kd_h5_attr_set_i64(h, NULL, "num_classes", o->num_classes) ||
        kd_h5_attr_set_i64(h, NULL, "cifar_stem", o->cifar_stem) ||
        kd_h5_attr_set_i64(h, NULL, "head_hidden", o->head_hidden) ||
        kd_h5_attr_set_i64(h, NULL, "head_out", o->head_out) || kd_h5_attr_set_i64(h, NULL, "head_bn", o->head_bn) ||
        kd_h5_attr_set_f64(h, NULL, "width_mult", o->width_mult))
        return -1;
    for (int i = 0; i < m->npv; i++) {
        const kd_pview *v = &m->pv[i];
        if (kd_h5_write(h, v->name, KD_F32, v->rank, v->shape, m->params + v->off))
            return -1;
    }
    for (int i = 0; i < m->nbv; i++) {
        const kd_pview *v = &m->bv[i];
        const float *b = m->buffers + v->off;
        if (v->rank == 0) {
            int64_t t = (int64_t)llround(b[0]);
            if (kd_h5_write(h, v->name, KD_I64, 0, v->shape, &t))
                return -1;
        } else if (kd_h5_write(h, v->name, KD_F32, v->rank, v->shape, b)) {
            return -1;
        }
    }
    return 0;
}

int kd_model_save(const kd_model *m, const char *path)
{
    kd_h5 h;
    if (kd_h5_create(&h, path, "model"))
        return -1;
    if (kd_model_save_h5(m, &h)) {
        kd_h5_abort(&h);
        return -1;
    }
    return kd_h5_commit(&h);
}

static int read_opt_i64(const kd_h5 *h, const char *name, int *out, int required)
{
    int64_t v = 0;
    if (!kd_h5_attr_has(h, NULL, name)) {
        if (required) {
            kd_err_set("%s: not a model file: no '%s' attribute", h->path, name);
            return -1;
        }
        *out = 0;
        return 0;
    }
    if (kd_h5_attr_get_i64(h, NULL, name, &v))
        return -1;
    if (v < 0 || v > 1000000) {
        kd_err_set("%s: attribute %s = %lld out of range", h->path, name, (long long)v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

kd_model *kd_model_load_h5(const kd_h5 *h)
{
    char arch[64];
    kd_arch_opts o;
    memset(&o, 0, sizeof o);
    if (!kd_h5_attr_has(h, NULL, "arch")) {
        kd_err_set("%s: not a model file: no 'arch' attribute", h->path);
        return NULL;
    }
    if (kd_h5_attr_get_str(h, NULL, "arch", arch, sizeof arch))
        return NULL;
    o.arch = arch;
    double wm = 1;
    if (read_opt_i64(h, "in_channels", &o.in_channels, 1) || read_opt_i64(h, "num_classes", &o.num_classes, 0) ||
        read_opt_i64(h, "cifar_stem", &o.cifar_stem, 0) || read_opt_i64(h, "head_hidden", &o.head_hidden, 0) ||
        read_opt_i64(h, "head_out", &o.head_out, 0) || read_opt_i64(h, "head_bn", &o.head_bn, 0))
        return NULL;
    if (kd_h5_attr_has(h, NULL, "width_mult") && kd_h5_attr_get_f64(h, NULL, "width_mult", &wm))
        return NULL;
    o.width_mult = (float)wm;
    kd_model *m = model_build(&o);
    if (!m) {
        kd_err_prefix("%s", h->path);
        return NULL;
    }
    for (int pass = 0; pass < 2; pass++) {
        int cnt = pass ? m->nbv : m->npv;
        for (int i = 0; i < cnt; i++) {
            const kd_pview *v = pass ? &m->bv[i] : &m->pv[i];
            float *dst = (pass ? m->buffers : m->params) + v->off;
            if (!kd_h5_exists(h, v->name)) {
                if (pass && v->rank == 0) { /* older state dicts lack num_batches_tracked */
                    dst[0] = 0;
                    continue;
                }
                kd_err_set("%s: missing tensor '%s' (architecture %s)", h->path, v->name, m->arch);
                kd_model_free(m);
                return NULL;
            }
            int64_t dims[KD_MAX_RANK];
            kd_dtype dt;
            int rank;
            if (kd_h5_info(h, v->name, &dt, &rank, dims)) {
                kd_model_free(m);
                return NULL;
            }
            int ok = rank == v->rank;
            for (int k = 0; ok && k < rank; k++)
                ok = dims[k] == v->shape[k];
            if (!ok && !(v->rank == 0 && rank == 1 && dims[0] == 1)) {
                char want[80] = "", got[80] = "";
                for (int k = 0; k < v->rank; k++)
                    snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", k ? "," : "",
                             (long long)v->shape[k]);
                for (int k = 0; k < rank && k < 8; k++)
                    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", k ? "," : "",
                             (long long)dims[k]);
                kd_err_set("%s: tensor '%s' has shape [%s], architecture %s needs [%s]", h->path, v->name, got,
                           m->arch, want);
                kd_model_free(m);
                return NULL;
            }
            if (v->rank == 0) {
                int64_t t = 0;
                if (kd_h5_read(h, v->name, KD_I64, 0, 1, &t)) {
                    kd_model_free(m);
                    return NULL;
                }
                dst[0] = (float)t;
            } else if (kd_h5_read(h, v->name, KD_F32, 0, v->shape[0], dst)) {
                kd_model_free(m);
                return NULL;
            }
            for (size_t k = 0; k < v->n; k++)
                if (!isfinite(dst[k])) {
                    kd_err_set("%s: tensor '%s' holds non-finite values", h->path, v->name);
                    kd_model_free(m);
                    return NULL;
                }
        }
    }
    return m;
}

kd_model *kd_model_load(const char *path)
{
    kd_h5 h;
    if (kd_h5_open(&h, path, NULL))
        return NULL;
    const char *kind = kd_h5_kind(&h);
    if (strcmp(kind, "model") && strcmp(kind, "checkpoint")) {
        kd_err_set("%s: a %s file, not a model", path, kind[0] ? kind : "kind-less");
        kd_h5_close(&h);
        return NULL;
    }
    kd_model *m = kd_model_load_h5(&h);
    kd_h5_close(&h);
    return m;
}
