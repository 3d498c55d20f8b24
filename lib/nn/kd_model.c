/* kd_model — what a model is: the architecture registry, building a model
 * from options (graph, slabs, initialisation), freeing it, and the small
 * accessors and switches of the public API.  The rest of the engine lives
 * beside it by job: kd_model_build.c (graph builders), kd_model_plan.c
 * (memory plan), kd_model_exec.c (forward/backward), kd_model_io.c (files);
 * the architectures are in kd_arch_*.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_model_build.h"

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

#define NARCHS (sizeof archs / sizeof archs[0])

/* The names of archs[], space-separated, made once (the table is constant,
 * so two threads racing here write the same bytes). */
const char *kd_model_arch_names(void)
{
    static char names[NARCHS * 24];
    if (!names[0]) {
        char buf[sizeof names];
        size_t len = 0;
        for (size_t i = 0; i < NARCHS; i++)
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? " " : "", archs[i].name);
        memcpy(names, buf, len + 1);
    }
    return names;
}

kd_model *kd_model_build_graph(const kd_arch_opts *o)
{
    if (!o || !o->arch) {
        kd_err_set("model: no architecture given");
        return NULL;
    }
    int ai = -1;
    for (size_t i = 0; i < NARCHS; i++)
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
    kd_b_input(m, o->in_channels);
    if (archs[ai].build(m) || m->build_err || m->feat < 0 || (o->head_hidden > 0 && kd_build_head(m)) || m->build_err) {
        /* the first failing kd_b_*() has said why (build_fail); a builder
         * that fails without build_err has said why itself */
        if (!m->build_err && m->feat < 0)
            kd_err_set("model: %s: the architecture builder gave no features", o->arch);
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
    kd_model *m = kd_model_build_graph(o);
    if (!m)
        return NULL;
    m->seed = seed;
    m->rng_seed = seed;
    kd_init_params(m, seed);
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
    free(m->bn_work);
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

void kd_model_set_fusion(kd_model *m, int on)
{
    if (m->no_fuse != !on)
        m->planned_n = 0;
    m->no_fuse = !on;
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

int kd_model_grad_stage(kd_model *m, int stage)
{
    if (stage < 1 || stage > m->nstages) {
        kd_err_set("model: %s has stages 1..%d, not %d", m->arch, m->nstages, stage);
        return -1;
    }
    if (stage == m->nstages)
        return 0; /* the last stage always may */
    if (!m->grad_stage[stage] || !m->keep_stage[stage])
        m->planned_n = 0;
    m->grad_stage[stage] = 1;
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

int kd_model_set_bn_sync(kd_model *m, int (*sum)(double *v, size_t n))
{
    if (sum && !m->bn_work) {
        int C = 1;
        for (int i = 0; i < m->nn; i++)
            if (m->nodes[i].op == N_BN && m->nodes[i].O > C)
                C = m->nodes[i].O;
        if (!(m->bn_work = malloc(sizeof(double) * (2 * (size_t)C + 1)))) {
            kd_err_set("model: out of memory");
            return -1;
        }
    }
    m->bn_sum = sum;
    return 0;
}
int (*kd_model_bn_sync(const kd_model *m))(double *v, size_t n) { return m->bn_sum; }

/* Outputs of the last forward, where the plan put them. */
static const float *out_of(const kd_model *m, int v) { return m->planned_n && v >= 0 ? m->act + m->vals[v].off : NULL; }
const float *kd_model_features(const kd_model *m) { return out_of(m, m->feat); }
const float *kd_model_logits(const kd_model *m) { return out_of(m, m->logits); }
const float *kd_model_embedding(const kd_model *m) { return out_of(m, m->emb); }

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
    return m->act + v->off;
}

