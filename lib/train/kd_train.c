/* kd_train — the trainer's life and its step; checkpoints are in
 * kd_train_ckpt.c, validation in kd_train_val.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_dist.h"
#include "kd_err.h"
#include "kd_names.h"
#include "kd_train_impl.h"

kd_trainer *kd_trainer_new(kd_model *m, const kd_train_opts *o)
{
    kd_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        kd_err_set("trainer: out of memory");
        return NULL;
    }
    t->o = *o;
    t->m = m;
    return t;
}

void kd_trainer_free(kd_trainer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->nl; i++) {
        if (t->L[i].st && t->L[i].mod->free)
            t->L[i].mod->free(t->L[i].st);
        kd_sgd_free(&t->L[i].own);
        free(t->L[i].opts);
    }
    kd_sgd_free(&t->opt);
    kd_model_free(t->m);
    free(t->dfeat), free(t->dlog), free(t->demb);
    for (int s = 0; s <= KD_MAX_STAGES; s++)
        free(t->dmap[s]);
    kd_evalset_free(&t->vs);
    kd_evalset_free(&t->bs);
    free(t->vout), free(t->bout), free(t->pred), free(t->dist_check);
    free(t);
}

int kd_trainer_add_loss(kd_trainer *t, const kd_loss_module *mod, float weight, const void *opts, float own_wd)
{
    if (t->inited || t->nl == KD_TRAIN_MAX_LOSSES) {
        kd_err_set(t->inited ? "trainer: losses are added before init" : "trainer: at most %d losses",
                   KD_TRAIN_MAX_LOSSES);
        return -1;
    }
    kd_train_loss *l = &t->L[t->nl];
    memset(l, 0, sizeof *l);
    l->mod = mod;
    l->weight = weight;
    l->own_wd = own_wd;
    if (!(l->opts = calloc(1, mod->opts_size ? mod->opts_size : 1))) {
        kd_err_set("trainer: out of memory");
        return -1;
    }
    if (opts)
        memcpy(l->opts, opts, mod->opts_size);
    else if (kd_loss_opts_defaults(mod, l->opts)) {
        free(l->opts);
        return -1;
    }
    int k = 1;
    for (int i = 0; i < t->nl; i++)
        k += t->L[i].mod == mod;
    char nm[sizeof l->name];
    if (k == 1)
        snprintf(nm, sizeof nm, "%s", mod->name);
    else
        snprintf(nm, sizeof nm, "%s.%d", mod->name, k);
    memcpy(l->name, nm, sizeof nm);
    snprintf(l->group, sizeof l->group, "train/%s", nm);
    t->nl++;
    return 0;
}

int kd_trainer_init(kd_trainer *t, kd_frame *first)
{
    if (t->inited) {
        kd_err_set("trainer: init twice");
        return -1;
    }
    if (!t->nl) {
        kd_err_set("trainer: no loss");
        return -1;
    }
    char v0[KD_NAME_MAX];
    kd_name(v0, sizeof v0, KD_NAME_VIEW, NULL, 0);
    kd_tensor *x = kd_frame_need(first, v0, KD_F32, 4);
    if (!x) {
        kd_err_prefix("frame 0");
        return -1;
    }
    t->B = (int)x->dims[0], t->C = (int)x->dims[1], t->H = (int)x->dims[2], t->W = (int)x->dims[3];
    if (t->C != kd_model_opts(t->m)->in_channels) {
        kd_err_set("view0 has %d channels but the model takes %d", t->C, kd_model_opts(t->m)->in_channels);
        return -1;
    }
    int64_t nb, ne;
    if (kd_frame_meta_count(first, KD_META_BATCHES, 1, 0, &nb) || kd_frame_meta_count(first, KD_META_EPOCHS, 1, 0, &ne)) {
        kd_err_prefix("frame 0");
        return -1;
    }
    t->batches = (long)nb;
    t->epochs = (long)ne;
    if (kd_model_prepare(t->m, t->B, t->H, t->W))
        return -1;
    kd_model_set_rng(t->m, t->o.seed, 0);
    if (kd_train_dist_init(t)) /* before the losses: sync-BN is the student's, which they may copy */
        return -1;
    for (int i = 0; i < t->nl; i++) {
        kd_train_loss *l = &t->L[i];
        l->ctx = (kd_loss_init){.student = t->m, .opts = l->opts, .first = first, .seed = t->o.seed,
                                .max_batch = t->B, .c = t->C, .h = t->H, .w = t->W, .instance = l->name};
        if (!(l->st = l->mod->init(&l->ctx)))
            return -1;
        t->views |= l->ctx.views;
        t->stages |= l->ctx.grad_stages;
        if (l->ctx.params) {
            kd_sgd_opts so = t->o.sgd;
            if (l->own_wd >= 0)
                so.wd = l->own_wd;
            if (kd_sgd_init_views(&l->own, l->ctx.params->n, l->ctx.params->v, l->ctx.params->nv, &so))
                return -1;
        }
    }
    if (!t->views) {
        kd_err_set("trainer: no loss asked for a student view");
        return -1;
    }
    if (kd_sgd_init(&t->opt, t->m, &t->o.sgd))
        return -1;
    t->D = kd_model_feat_dim(t->m), t->K = kd_model_num_classes(t->m), t->E = kd_model_emb_dim(t->m);
    size_t B = (size_t)t->B;
    t->dfeat = calloc(B * t->D, sizeof(float));
    t->dlog = calloc(B * (t->K ? t->K : 1), sizeof(float));
    t->demb = calloc(B * (t->E ? t->E : 1), sizeof(float));
    t->dist_check = malloc(sizeof(int64_t) * 3 * (size_t)kd_dist_size());
    if (!t->dfeat || !t->dlog || !t->demb || !t->dist_check) {
        kd_err_set("trainer: out of memory");
        return -1;
    }
    /* stages that receive a gradient are planned for it: prepare again */
    int ns = kd_model_nstages(t->m), replan = 0;
    for (int s = 1; s <= ns; s++)
        if (t->stages & (1u << s)) {
            if (kd_model_grad_stage(t->m, s))
                return -1;
            replan |= s != ns;
        }
    if (replan && kd_model_prepare(t->m, t->B, t->H, t->W))
        return -1;
    for (int s = 1; s <= ns; s++)
        if (t->stages & (1u << s)) {
            int c, h, w;
            if (!kd_model_stage_map(t->m, s, &c, &h, &w))
                return -1;
            t->mapsz[s] = (size_t)c * h * w;
            if (!(t->dmap[s] = calloc(B * t->mapsz[s], sizeof(float)))) {
                kd_err_set("trainer: out of memory");
                return -1;
            }
        }
    kd_sched *sc = &t->sched;
    if (kd_sched_parse(sc, t->o.schedule ? t->o.schedule : "cosine"))
        return -1;
    sc->base = t->o.lr * (t->o.lr_scale_batch ? (double)t->B * kd_dist_size() / 256.0 : 1); /* the global batch */
    sc->warmup = t->o.warmup_steps;
    double ep = t->o.epochs > 0 ? t->o.epochs : (double)t->epochs;
    sc->total = t->o.total_steps > 0 ? t->o.total_steps : (long)(ep * (double)t->batches);
    t->inited = 1;
    if (sc->kind == KD_SCHED_COSINE && sc->total <= 0) {
        kd_err_set("the schedule needs the run's length: the stream's frames carry no '%s'/'%s' metadata",
                   KD_META_EPOCHS, KD_META_BATCHES);
        return KD_TRAIN_NO_LENGTH;
    }
    return 0;
}

/* Every tensor the losses declared, and the views, as the first frame had them. */
static int check_frame(kd_trainer *t, kd_frame *f, long frame_no, int *n_out)
{
    char nm[KD_NAME_MAX];
    kd_tensor *x0 = kd_frame_need(f, kd_name(nm, sizeof nm, KD_NAME_VIEW, NULL, 0), KD_F32, 4);
    if (!x0) {
        kd_err_prefix("frame %ld", frame_no);
        return -1;
    }
    int n = (int)x0->dims[0];
    if (n < 1 || n > t->B || x0->dims[1] != t->C || x0->dims[2] != t->H || x0->dims[3] != t->W) {
        kd_err_set("frame %ld: view0 is [%d,%lld,%lld,%lld], the first frame's was [%d,%d,%d,%d]", frame_no, n,
                   (long long)x0->dims[1], (long long)x0->dims[2], (long long)x0->dims[3], t->B, t->C, t->H, t->W);
        return -1;
    }
    /* every view like view0: a loss may feed any of them to a model */
    for (int v = 1; v < 8; v++) {
        kd_tensor *xv = kd_frame_get(f, kd_name(nm, sizeof nm, KD_NAME_VIEW, NULL, v));
        if (!xv && (t->views & (1u << v))) {
            kd_err_set("frame %ld: the student trains on %s, which the frame lacks (augment --views %d)", frame_no,
                       nm, v + 1);
            return -1;
        }
        if (xv && (xv->dtype != KD_F32 || xv->nbytes != x0->nbytes)) {
            kd_err_set("frame %ld: %s does not match view0", frame_no, nm);
            return -1;
        }
    }
    for (int i = 0; i < t->nl; i++)
        for (int k = 0; k < t->L[i].ctx.nneeds; k++) {
            const kd_loss_need *q = &t->L[i].ctx.needs[k];
            kd_tensor *a = kd_frame_get(f, q->name);
            if (!a) {
                kd_err_set("frame %ld: loss %s needs tensor %s (%s)", frame_no, t->L[i].name, q->name, q->hint);
                return -1;
            }
            if (a->dtype != q->dtype || (q->rank >= 0 && a->rank != q->rank) || a->rank < 1 || a->dims[0] != n) {
                kd_err_set("frame %ld: loss %s needs %s as %s of rank %d with %d rows, the frame has %s of rank %d "
                           "with %lld rows", frame_no, t->L[i].name, q->name, kd_dtype_name(q->dtype),
                           q->rank >= 0 ? q->rank : a->rank, n, kd_dtype_name(a->dtype), a->rank,
                           a->rank >= 1 ? (long long)a->dims[0] : 0LL);
                return -1;
            }
        }
    kd_tensor *lab = kd_frame_get(f, KD_NAME_LABEL);
    if (lab && (lab->dtype != KD_I32 || lab->rank != 1 || lab->dims[0] != n)) {
        kd_err_set("frame %ld: label is not i32 [%d]", frame_no, n);
        return -1;
    }
    *n_out = n;
    return 0;
}

/* The first non-finite value of a slab, as "NAME[i]"; NULL when all are
 * finite.  Checked before the optimiser step (gradients) and after it
 * (parameters, BN buffers), so that a NaN input or a diverging run stops
 * with the last checkpoint intact instead of training on garbage: ReLU
 * maps NaN to 0, so the loss alone does not always show it. */
static const char *nonfinite(const float *p, size_t n, const kd_pview *(*view)(const void *, int), const void *owner,
                             int nv, char *buf, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) {
            for (int k = 0; k < nv; k++) {
                const kd_pview *v = view(owner, k);
                if (i >= v->off && i < v->off + v->n) {
                    snprintf(buf, len, "%s[%zu]", v->name, i - v->off);
                    return buf;
                }
            }
            snprintf(buf, len, "[%zu]", i);
            return buf;
        }
    return NULL;
}
static const kd_pview *model_pview(const void *m, int k) { return kd_model_param_view(m, k); }
static const kd_pview *model_bview(const void *m, int k) { return kd_model_buffer_view(m, k); }
static const kd_pview *slab_view(const void *s, int k) { return &((const kd_slab *)s)->v[k]; }

int kd_trainer_step(kd_trainer *t, kd_frame *f, long frame_no)
{
    int64_t fstep, fepoch;
    if (kd_frame_meta_count(f, KD_META_STEP, 0, frame_no, &fstep) ||
        kd_frame_meta_count(f, KD_META_EPOCH, 0, t->epoch, &fepoch)) {
        kd_err_prefix("frame %ld", frame_no);
        return -1;
    }
    if (fstep < t->step)
        return 0; /* resume: already trained on */
    int n;
    if (check_frame(t, f, frame_no, &n))
        return -1;
    t->epoch = (long)fepoch;
    kd_tensor *lab = kd_frame_get(f, KD_NAME_LABEL);
    kd_loss_batch b = {.frame = f, .n = n, .step = t->step, .epoch = t->epoch,
                       .label = lab ? lab->data : NULL, .student = t->m,
                       .d_feat = t->dfeat, .d_logits = t->dlog, .d_emb = t->demb};
    memcpy(b.d_map, t->dmap, sizeof b.d_map);
    for (int i = 0; i < t->nl; i++)
        if (t->L[i].mod->pre && t->L[i].mod->pre(t->L[i].st, &b)) {
            kd_err_prefix("frame %ld", frame_no);
            return -1;
        }
    kd_model_zero_grad(t->m);
    for (int i = 0; i < t->nl; i++)
        if (t->L[i].ctx.params)
            memset(t->L[i].ctx.params->g, 0, sizeof(float) * t->L[i].ctx.params->n);
    double terms[KD_TRAIN_MAX_LOSSES] = {0}, total = 0;
    for (int v = 0; v < 8; v++) {
        if (!(t->views & (1u << v)))
            continue;
        b.view = v;
        b.x = kd_loss_view(&b, v);
        if (kd_model_forward(t->m, b.x, n, 1, 0))
            return -1;
        t->fwd++;
        b.feat = kd_model_features(t->m);
        b.logits = kd_model_logits(t->m);
        b.emb = kd_model_embedding(t->m);
        memset(t->dfeat, 0, sizeof(float) * (size_t)n * t->D);
        if (t->K)
            memset(t->dlog, 0, sizeof(float) * (size_t)n * t->K);
        if (t->E)
            memset(t->demb, 0, sizeof(float) * (size_t)n * t->E);
        for (int s = 1; s <= KD_MAX_STAGES; s++)
            if (t->dmap[s])
                memset(t->dmap[s], 0, sizeof(float) * (size_t)n * t->mapsz[s]);
        for (int i = 0; i < t->nl; i++) {
            if (!(t->L[i].ctx.views & (1u << v)))
                continue;
            double l = 0;
            if (t->L[i].mod->compute(t->L[i].st, &b, t->L[i].weight, &l)) {
                kd_err_prefix("frame %ld", frame_no);
                return -1;
            }
            terms[i] += l;
            total += t->L[i].weight * l;
        }
        if (!isfinite(total)) {
            kd_err_set("step %ld: loss is not finite (%g)", t->step, total);
            return KD_TRAIN_NOT_FINITE;
        }
        kd_model_dout g = {.features = t->dfeat, .logits = t->K ? t->dlog : NULL, .embedding = t->E ? t->demb : NULL};
        for (int s = 1; s <= KD_MAX_STAGES; s++)
            g.map[s] = t->dmap[s];
        if (kd_model_backward_dout(t->m, &g))
            return -1;
    }
    if (kd_train_dist_reduce(t, terms, &total)) {
        kd_err_prefix("step %ld", t->step);
        return -1;
    }
    double epoch_f = t->batches > 0 ? (double)t->step / (double)t->batches : (double)t->epoch;
    float lr = (float)kd_sched_lr(&t->sched, t->step, epoch_f);
    size_t np, ng, nb;
    float *P = kd_model_params(t->m, &np), *G = kd_model_grads(t->m, &ng);
    const float *Bf = kd_model_buffers(t->m, &nb);
    char where[128];
    const char *bad = nonfinite(G, ng, model_pview, t->m, kd_model_nparam_views(t->m), where, sizeof where);
    for (int i = 0; !bad && i < t->nl; i++)
        if (t->L[i].ctx.params)
            bad = nonfinite(t->L[i].ctx.params->g, t->L[i].ctx.params->n, slab_view, t->L[i].ctx.params,
                            t->L[i].ctx.params->nv, where, sizeof where);
    if (!bad)
        bad = nonfinite(Bf, nb, model_bview, t->m, kd_model_nbuffer_views(t->m), where, sizeof where);
    if (bad) {
        kd_err_set("step %ld: the gradient or BN statistics are not finite (%s; loss %g)", t->step, bad, total);
        return KD_TRAIN_NOT_FINITE;
    }
    kd_sgd_step(&t->opt, P, G, lr);
    for (int i = 0; i < t->nl; i++)
        if (t->L[i].ctx.params)
            kd_sgd_step(&t->L[i].own, t->L[i].ctx.params->p, t->L[i].ctx.params->g, lr);
    if ((bad = nonfinite(P, np, model_pview, t->m, kd_model_nparam_views(t->m), where, sizeof where))) {
        kd_err_set("step %ld: the parameters are not finite after the step (%s; lr %g)", t->step, bad, lr);
        return KD_TRAIN_NOT_FINITE;
    }
    for (int i = 0; i < t->nl; i++)
        if (t->L[i].mod->post && t->L[i].mod->post(t->L[i].st, &b)) {
            kd_err_prefix("frame %ld", frame_no);
            return -1;
        }
    t->step++;
    t->last.loss = total;
    memcpy(t->last.term, terms, sizeof terms);
    t->last.lr = lr;
    t->last.n = n;
    return 1;
}

const kd_step_info *kd_trainer_last(const kd_trainer *t) { return &t->last; }
kd_model *kd_trainer_model(kd_trainer *t) { return t->m; }
long kd_trainer_steps(const kd_trainer *t) { return t->step; }
long kd_trainer_epoch(const kd_trainer *t) { return t->epoch; }
long kd_trainer_total(const kd_trainer *t) { return t->sched.total > 0 ? t->sched.total : 0; }
long kd_trainer_epochs(const kd_trainer *t) { return t->o.epochs > 0 ? (long)ceil(t->o.epochs) : t->epochs; }
int kd_trainer_nlosses(const kd_trainer *t) { return t->nl; }
int kd_trainer_loss_owns_params(const kd_trainer *t, int i) { return i >= 0 && i < t->nl && t->L[i].ctx.params; }
const char *kd_trainer_loss_name(const kd_trainer *t, int i) { return i >= 0 && i < t->nl ? t->L[i].name : NULL; }

kd_monitor kd_trainer_monitor(const kd_trainer *t)
{
    if (!kd_model_num_classes(t->m))
        return KD_MONITOR_KNN;
    for (int i = 0; i < t->nl; i++)
        if (t->L[i].mod->monitor == KD_MONITOR_KNN)
            return KD_MONITOR_KNN;
    return KD_MONITOR_TOP1;
}
