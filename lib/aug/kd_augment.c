/* kd_augment — the augmenter (kd_augment.h): workers over a batch, the RNG
 * keying that is augment's reproducibility contract, frame assembly,
 * policy overrides and denormalisation. */
#include "kd_augment.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_names.h"
#include "kd_rng.h"

#define AUGV 0x61756776u /* "augv" */

void kd_aug_overrides_init(kd_aug_overrides *ov)
{
    memset(ov, 0, sizeof *ov);
    ov->jitter_p = ov->gray_p = ov->blur_p = ov->flip_p = -1.0f;
}

int kd_aug_policy_apply_overrides(kd_aug_policy *p, const kd_aug_overrides *ov, const kd_dataset_info *info)
{
    if (ov->has_scale) {
        memcpy(p->scale, ov->scale, sizeof p->scale);
        p->rrc = 1;
    }
    if (ov->has_ratio)
        memcpy(p->ratio, ov->ratio, sizeof p->ratio);
    if (ov->has_jitter) {
        memcpy(p->jitter, ov->jitter, sizeof p->jitter);
        if (p->kind != KD_AUG_MOCOV2 && p->kind != KD_AUG_SIMCLR && ov->jitter_p < 0)
            p->jitter_p = 1.0f;
    }
    if (ov->has_sigma)
        memcpy(p->sigma, ov->sigma, sizeof p->sigma);
    if (ov->jitter_p >= 0)
        p->jitter_p = ov->jitter_p;
    if (ov->gray_p >= 0)
        p->gray_p = ov->gray_p;
    if (ov->blur_p >= 0)
        p->blur_p = ov->blur_p;
    if (ov->flip_p >= 0)
        p->flip_p = ov->flip_p;
    if (ov->has_pad)
        p->pad = ov->pad;
    if (ov->has_resize)
        p->resize = ov->resize;
    p->normalize = !ov->no_normalize;
    if (!p->normalize)
        return 0;
    return kd_dataset_norm(info, p->oc, &ov->norm, p->mean, p->std);
}

void kd_aug_denormalize(const kd_aug_policy *p, const float *src, float *dst, int hw)
{
    for (int c = 0; c < p->oc; c++)
        for (int k = 0; k < hw; k++)
            dst[c * hw + k] = p->normalize ? src[c * hw + k] * p->std[c] + p->mean[c] : src[c * hw + k];
}

void kd_augment_order(uint64_t seed, int64_t epoch, int shuffle, int64_t *perm, int64_t n)
{
    if (shuffle) {
        kd_rng pr = kd_rng_make(seed, (uint64_t)epoch, UINT64_MAX /* not an image index */);
        kd_rng_permute(&pr, perm, n);
    } else {
        for (int64_t i = 0; i < n; i++)
            perm[i] = i;
    }
}

/* One worker's share [k0, k1) of the batch's b * V views. */
typedef struct {
    const kd_augmenter *a;
    uint64_t epoch;
    const int64_t *idx;
    float **views;
    int k0, k1;
    float *scratch;
    uint8_t *row; /* one image when reading from the file */
    int rc;
} work;

struct kd_augmenter {
    kd_augmenter_opts o;
    kd_aug_policy pol;
    int nthreads;
    work *ws;
    pthread_t *tids;
    float *vptr[64];
};

static void *worker(void *arg)
{
    work *w = arg;
    const kd_augmenter *a = w->a;
    const kd_aug_policy *p = &a->pol;
    const size_t vsz = (size_t)p->oc * p->oh * p->ow;
    const size_t isz = (size_t)a->o.h * a->o.w * a->o.c;
    const int V = a->o.views;
    int64_t have = -1;
    w->rc = 0;
    for (int k = w->k0; k < w->k1; k++) {
        int i = k / V, v = k % V;
        int64_t id = w->idx[i];
        const uint8_t *src;
        if (a->o.images) {
            src = a->o.images + (size_t)id * isz;
        } else {
            /* a dataset file handle is not thread-safe: this path runs
             * with one worker only */
            if (have != id) {
                if (kd_dataset_read_rows(a->o.file, id, 1, w->row, NULL) < 0) {
                    w->rc = -1;
                    return NULL;
                }
                have = id;
            }
            src = w->row;
        }
        kd_rng base = kd_rng_make(a->o.seed, w->epoch, (uint64_t)id);
        kd_rng r = kd_rng_make(base.key, (uint64_t)v, AUGV);
        kd_aug_view(p, &r, src, a->o.h, a->o.w, a->o.c, w->views[v] + (size_t)i * vsz, w->scratch);
    }
    return NULL;
}

kd_augmenter *kd_augmenter_new(const kd_augmenter_opts *o)
{
    if (!o->pol || o->views < 1 || o->views > 64 || (!o->images && !o->file) || o->h < 1 || o->w < 1 ||
        (o->c != 1 && o->c != 3)) {
        kd_err_set("augmenter: bad options (views %d, %dx%dx%d images)", o->views, o->h, o->w, o->c);
        return NULL;
    }
    if (kd_aug_policy_check(o->pol, o->h, o->w, o->c) < 0)
        return NULL;
    kd_augmenter *a = calloc(1, sizeof *a);
    if (!a) {
        kd_err_set("augmenter: out of memory");
        return NULL;
    }
    a->o = *o;
    a->pol = *o->pol;
    a->o.pol = &a->pol;
    a->nthreads = o->images ? (o->threads > 0 ? o->threads : 1) : 1;
    a->ws = calloc((size_t)a->nthreads, sizeof(work));
    a->tids = calloc((size_t)a->nthreads, sizeof(pthread_t));
    if (!a->ws || !a->tids)
        goto oom;
    size_t isz = (size_t)o->h * o->w * o->c;
    for (int t = 0; t < a->nthreads; t++) {
        a->ws[t].scratch = malloc(sizeof(float) * kd_aug_scratch_floats(&a->pol, o->h, o->w));
        a->ws[t].row = o->images ? NULL : malloc(isz);
        if (!a->ws[t].scratch || (!o->images && !a->ws[t].row))
            goto oom;
    }
    return a;
oom:
    kd_augmenter_free(a);
    kd_err_set("augmenter: out of memory");
    return NULL;
}

void kd_augmenter_free(kd_augmenter *a)
{
    if (!a)
        return;
    for (int t = 0; a->ws && t < a->nthreads; t++) {
        free(a->ws[t].scratch);
        free(a->ws[t].row);
    }
    free(a->ws);
    free(a->tids);
    free(a);
}

int kd_augmenter_batch(kd_augmenter *a, uint64_t epoch, const int64_t *idx, int b, float **views)
{
    int K = b * a->o.views, T = a->nthreads < K ? a->nthreads : K;
    int joined[64] = {0};
    for (int t = 0; t < T; t++) {
        work *w = &a->ws[t];
        w->a = a;
        w->epoch = epoch;
        w->idx = idx;
        w->views = views;
        w->k0 = (int)((int64_t)K * t / T);
        w->k1 = (int)((int64_t)K * (t + 1) / T);
        /* a share whose thread cannot start runs here: the views are the
         * same whoever computes them */
        if (t > 0 && (t >= 64 || pthread_create(&a->tids[t], NULL, worker, w) != 0))
            worker(w);
        else if (t > 0)
            joined[t] = 1;
    }
    if (T > 0)
        worker(&a->ws[0]);
    int rc = T > 0 ? a->ws[0].rc : 0;
    for (int t = 1; t < T; t++) {
        if (t < 64 && joined[t] && pthread_join(a->tids[t], NULL) != 0)
            rc = -1;
        rc |= a->ws[t].rc;
    }
    return rc ? -1 : 0;
}

int kd_augmenter_frame(kd_augmenter *a, kd_frame *fr, int64_t epoch, int64_t batch, const int64_t *idx, int b)
{
    const kd_aug_policy *p = &a->pol;
    kd_frame_clear(fr);
    int64_t vd[4] = {b, p->oc, p->oh, p->ow}, bd[1] = {b};
    char name[KD_NAME_MAX];
    for (int v = 0; v < a->o.views; v++) {
        kd_tensor *t = kd_frame_add(fr, kd_name(name, sizeof name, KD_NAME_VIEW, NULL, v), KD_F32, 4, vd);
        if (!t)
            return -1;
        a->vptr[v] = t->data;
    }
    kd_tensor *ti = kd_frame_add(fr, KD_NAME_INDEX, KD_I64, 1, bd);
    if (!ti)
        return -1;
    memcpy(ti->data, idx, sizeof(int64_t) * (size_t)b);
    if (a->o.labels) {
        kd_tensor *tl = kd_frame_add(fr, KD_NAME_LABEL, KD_I32, 1, bd);
        if (!tl)
            return -1;
        int32_t *l = tl->data;
        for (int i = 0; i < b; i++)
            l[i] = a->o.labels[idx[i]];
    }
    /* view pointers are taken after every add: kd_frame_add may move the
     * tensor array, not the data */
    for (int v = 0; v < a->o.views; v++) {
        kd_tensor *t = kd_frame_get(fr, kd_name(name, sizeof name, KD_NAME_VIEW, NULL, v));
        if (!t)
            return -1;
        a->vptr[v] = t->data;
    }
    const int64_t nb = a->o.batches;
    if (kd_frame_meta_set(fr, KD_META_EPOCH, "%lld", (long long)epoch) ||
        kd_frame_meta_set(fr, KD_META_STEP, "%lld", (long long)(epoch * nb + batch)) ||
        kd_frame_meta_set(fr, KD_META_BATCH, "%lld", (long long)batch) ||
        kd_frame_meta_set(fr, KD_META_BATCHES, "%lld", (long long)nb) ||
        kd_frame_meta_set(fr, KD_META_EPOCHS, "%lld", (long long)a->o.epochs) ||
        kd_frame_meta_set(fr, KD_META_SEED, "%llu", (unsigned long long)a->o.seed) ||
        kd_frame_meta_set(fr, KD_META_POLICY, "%s", kd_aug_kind_name(p->kind)))
        return -1;
    return kd_augmenter_batch(a, (uint64_t)epoch, idx, b, a->vptr);
}
