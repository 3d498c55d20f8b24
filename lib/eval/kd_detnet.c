/* kd_detnet — backbone + detection head as one network (kd_detnet.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_detnet.h"
#include "kd_err.h"

/* A fresh copy of the architecture, prepared for one image, to read the
 * stage sizes before the real model is planned (stage gradients must be
 * declared before its kd_model_prepare). */
int kd_detnet_pick_stage(kd_model *m, int H, int W, int stride, int stage, int *out_stage, int *nup)
{
    kd_model *p = kd_model_new(kd_model_opts(m), 0);
    if (!p || kd_model_prepare(p, 1, H, W)) {
        kd_model_free(p);
        return -1;
    }
    int ns = kd_model_nstages(p), st[KD_MAX_STAGES + 1] = {0};
    char list[128] = "";
    for (int s = 1; s <= ns; s++) {
        int c, h, w;
        if (!kd_model_stage_map(p, s, &c, &h, &w)) {
            kd_model_free(p);
            return -1;
        }
        st[s] = h > 0 && H % h == 0 && w > 0 && W % w == 0 && H / h == W / w ? H / h : 0;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", s > 1 ? " " : "", st[s]);
    }
    kd_model_free(p);
    int lo = stage > 0 ? stage : 1, hi = stage > 0 ? stage : ns;
    if (stage > ns) {
        kd_err_set("%s has stages 1..%d, not %d", kd_model_opts(m)->arch, ns, stage);
        return -1;
    }
    for (int s = hi; s >= lo; s--) {
        if (st[s] < stride || st[s] % stride)
            continue;
        int r = st[s] / stride, k = 0;
        while (r > 1 && r % 2 == 0)
            r /= 2, k++;
        if (r == 1 && k <= 4) {
            *out_stage = s, *nup = k;
            return 0;
        }
    }
    if (stage > 0)
        kd_err_set("%s: stage %d has stride %d, which upsampling cannot bring to stride %d (strides: %s)",
                   kd_model_opts(m)->arch, stage, st[stage], stride, list);
    else
        kd_err_set("%s has no stage at stride %d or a power-of-two multiple of it at %dx%d (strides: %s)",
                   kd_model_opts(m)->arch, stride, H, W, list);
    return -1;
}

int kd_detnet_check_skip(kd_model *m, int H, int W, int stage, int nup, int skip)
{
    int ns = kd_model_nstages(m), c, h, w, sc, sh, sw;
    if (skip < 1 || skip > ns || skip == stage) {
        kd_err_set("%s: no skip from stage %d (stages 1..%d, the head's %d)", kd_model_opts(m)->arch, skip, ns, stage);
        return -1;
    }
    if (H <= 0)
        return 0;
    if (!kd_model_stage_map(m, stage, &c, &h, &w) || !kd_model_stage_map(m, skip, &sc, &sh, &sw))
        return -1;
    if (sh < h << nup || sw < w << nup || sh > H || sw > W) {
        kd_err_set("%s: stage %d's %dx%d map at %dx%d is not finer than the head's %dx%d", kd_model_opts(m)->arch,
                   skip, sh, sw, H, W, h << nup, w << nup);
        return -1;
    }
    return 0;
}

int kd_detnet_prepare(kd_detnet *d, int maxn, int H, int W, int train, int freeze, uint64_t seed)
{
    kd_model *m = d->m;
    int bb_train = train && !freeze;
    if (!bb_train)
        kd_model_set_eval_only(m, 1);
    /* d->skip's range is the caller's (detect-train's options, kd_detnet_load's
     * attributes); the map sizes are checked once the plan exists */
    if (kd_model_keep_stage(m, d->stage) || (bb_train && kd_model_grad_stage(m, d->stage)) ||
        (d->skip && (kd_model_keep_stage(m, d->skip) || (bb_train && kd_model_grad_stage(m, d->skip)))) ||
        kd_model_prepare(m, maxn, H, W))
        return -1;
    int sC = 0, sh = 0, sw = 0;
    if (d->skip && (kd_detnet_check_skip(m, H, W, d->stage, d->nup, d->skip) ||
                    !kd_model_stage_map(m, d->skip, &sC, &sh, &sw)))
        return -1;
    int C, h, w;
    if (!kd_model_stage_map(m, d->stage, &C, &h, &w))
        return -1;
    if ((h << d->nup) * d->stride != H || (w << d->nup) * d->stride != W) {
        kd_err_set("%dx%d images: stage %d is %dx%d, not stride %d after %d upsamplings", H, W, d->stage, h, w,
                   d->stride, d->nup);
        return -1;
    }
    kd_dethead_opts ho = {.C = C, .h = h, .w = w, .nup = d->nup, .up = d->up, .hc = d->hc, .K = d->K, .maxn = maxn,
                          .sC = sC, .sh = sh, .sw = sw};
    if (!(d->head = kd_dethead_new(&ho)))
        return -1;
    kd_slab *P = kd_dethead_params(d->head), *B = kd_dethead_buffers(d->head);
    if (d->saved_p && d->skip && d->saved_sC != sC) {
        kd_err_set("detector: det/skip.0.weight has %d input channels, stage %d's map %d", d->saved_sC, d->skip, sC);
        return -1;
    }
    if (d->saved_p && (P->n != d->nsaved_p || B->n != d->nsaved_b)) {
        kd_err_set("detector: the head was trained on a stage map of another width than stage %d's %d channels",
                   d->stage, C);
        return -1;
    }
    if (d->saved_p) {
        memcpy(P->p, d->saved_p, sizeof(float) * P->n);
        if (B->n)
            memcpy(B->p, d->saved_b, sizeof(float) * B->n);
    } else {
        kd_dethead_init(d->head, seed);
    }
    int Ho = h << d->nup, Wo = w << d->nup;
    d->maxn = maxn, d->H = H, d->W = W, d->train = train, d->freeze = freeze;
    d->x = malloc(sizeof(float) * (size_t)maxn * d->c * H * W);
    d->dmap = bb_train ? malloc(sizeof(float) * (size_t)maxn * C * h * w) : NULL;
    d->dskip = bb_train && sC ? malloc(sizeof(float) * (size_t)maxn * sC * sh * sw) : NULL;
    d->scr = malloc(sizeof(float) * (size_t)d->K * Ho * Wo);
    d->iscr = malloc(sizeof(int32_t) * (size_t)d->K * Ho * Wo);
    d->lg = malloc(sizeof(float) * (size_t)(d->K + 1) * H * W);
    int Hs, Ws;
    kd_dethead_seg(d->head, &Hs, &Ws);
    size_t nfl = (size_t)maxn * ((size_t)(d->K + 4) * Ho * Wo + (size_t)(d->K + 1) * Hs * Ws);
    d->fl = d->flip_test ? malloc(sizeof(float) * nfl) : NULL;
    if ((d->flip_test && !d->fl) || !d->x || (bb_train && !d->dmap) || (bb_train && sC && !d->dskip) || !d->scr || !d->iscr || !d->lg) {
        kd_err_set("detector: out of memory");
        return -1;
    }
    return 0;
}

void kd_detnet_input(kd_detnet *d, const uint8_t *img, int n, int cin)
{
    size_t HW = (size_t)d->H * d->W;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < d->c; c++) {
            int sc = cin == 1 ? 0 : c;
            float *o = d->x + ((size_t)i * d->c + c) * HW;
            const uint8_t *p = img + (size_t)i * HW * cin + sc;
            float mu = d->mean[c], is = 1.0f / d->std[c];
            for (size_t k = 0; k < HW; k++)
                o[k] = (p[k * cin] / 255.0f - mu) * is;
        }
}

int kd_detnet_forward(kd_detnet *d, int n, int train)
{
    d->merged = 0;
    if (kd_model_forward(d->m, d->x, n, train && !d->freeze, 0))
        return -1;
    const float *map = kd_model_stage_map(d->m, d->stage, NULL, NULL, NULL);
    const float *skip = d->skip ? kd_model_stage_map(d->m, d->skip, NULL, NULL, NULL) : NULL;
    return map && (skip || !d->skip) ? kd_dethead_forward(d->head, map, skip, n, train) : -1;
}

int kd_detnet_backward(kd_detnet *d)
{
    if (d->freeze || !d->dmap)
        return kd_dethead_backward(d->head, NULL, NULL);
    const kd_dethead_opts *o = kd_dethead_opts_of(d->head);
    memset(d->dmap, 0, sizeof(float) * (size_t)d->maxn * o->C * o->h * o->w);
    if (d->dskip)
        memset(d->dskip, 0, sizeof(float) * (size_t)d->maxn * o->sC * o->sh * o->sw);
    if (kd_dethead_backward(d->head, d->dmap, d->dskip))
        return -1;
    kd_model_dout g;
    memset(&g, 0, sizeof g);
    g.map[d->stage] = d->dmap;
    if (d->dskip)
        g.map[d->skip] = d->dskip;
    return kd_model_backward_dout(d->m, &g);
}

/* Reverses the rows of rows x w maps in place. */
static void mirror(float *p, size_t rows, int w)
{
    for (size_t r = 0; r < rows; r++, p += w)
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            float t = p[a];
            p[a] = p[b], p[b] = t;
        }
}

/* The outputs decode and mask read: a flip test's merged ones, or the head's. */
typedef struct {
    const float *hm, *wh, *off, *seg;
} outs;

/* The flip test's buffers in d->fl (layout in kd_detnet.h). */
static void flip_bufs(const kd_detnet *d, float **hm, float **wh, float **off, float **seg)
{
    int Ho, Wo;
    kd_dethead_out_size(d->head, &Ho, &Wo);
    size_t HW = (size_t)Ho * Wo, m = (size_t)d->maxn;
    *hm = d->fl, *wh = *hm + m * d->K * HW, *off = *wh + m * 2 * HW, *seg = *off + m * 2 * HW;
}

static outs outputs(const kd_detnet *d)
{
    int Hs, Ws;
    if (!d->merged)
        return (outs){kd_dethead_out(d->head, KD_DH_HM), kd_dethead_out(d->head, KD_DH_WH),
                      kd_dethead_out(d->head, KD_DH_REG), kd_dethead_seg(d->head, &Hs, &Ws)};
    float *hm, *wh, *off, *seg;
    flip_bufs(d, &hm, &wh, &off, &seg);
    return (outs){hm, wh, off, seg};
}

static float sigmoidf(float v) { return 1 / (1 + expf(-v)); }

/* a[r][x] = (a[r][x] + f(b[r][w-1-x])) / 2 over rows x w, f the identity or
 * the sigmoid. */
static void merge_mirror(float *a, const float *b, size_t rows, int w, int sigmoid)
{
    for (size_t r = 0; r < rows; r++, a += w, b += w)
        for (int x = 0; x < w; x++) {
            float v = b[w - 1 - x];
            a[x] = (a[x] + (sigmoid ? sigmoidf(v) : v)) / 2;
        }
}

int kd_detnet_forward_flip(kd_detnet *d, int n)
{
    if (!d->fl) {
        kd_err_set("detector: not prepared for a flip test");
        return -1;
    }
    if (kd_detnet_forward(d, n, 0))
        return -1;
    int Ho, Wo, Hs, Ws;
    kd_dethead_out_size(d->head, &Ho, &Wo);
    kd_dethead_seg(d->head, &Hs, &Ws);
    size_t HW = (size_t)Ho * Wo, nh = (size_t)n * d->K * HW, nw = (size_t)n * 2 * HW;
    size_t ns = (size_t)n * (d->K + 1) * Hs * Ws;
    float *hm, *wh, *off, *seg;
    flip_bufs(d, &hm, &wh, &off, &seg);
    const float *h0 = kd_dethead_out(d->head, KD_DH_HM);
    for (size_t k = 0; k < nh; k++)
        hm[k] = sigmoidf(h0[k]);
    memcpy(wh, kd_dethead_out(d->head, KD_DH_WH), sizeof(float) * nw);
    memcpy(off, kd_dethead_out(d->head, KD_DH_REG), sizeof(float) * nw);
    memcpy(seg, kd_dethead_seg(d->head, &Hs, &Ws), sizeof(float) * ns);
    mirror(d->x, (size_t)n * d->c * d->H, d->W);
    if (kd_detnet_forward(d, n, 0))
        return -1;
    merge_mirror(hm, kd_dethead_out(d->head, KD_DH_HM), (size_t)n * d->K * Ho, Wo, 1);
    merge_mirror(wh, kd_dethead_out(d->head, KD_DH_WH), (size_t)n * 2 * Ho, Wo, 0);
    merge_mirror(seg, kd_dethead_seg(d->head, &Hs, &Ws), (size_t)n * (d->K + 1) * Hs, Ws, 0);
    /* back to logits for kd_cn_decode's sigmoid (monotone: the same peaks
     * and order; clamped so that certainty stays finite) */
    for (size_t k = 0; k < nh; k++) {
        double p = hm[k] < 1e-12 ? 1e-12 : hm[k] > 1 - 1e-12 ? 1 - 1e-12 : hm[k];
        hm[k] = (float)log(p / (1 - p));
    }
    d->merged = 1;
    return 0;
}

int kd_detnet_decode(kd_detnet *d, int i, int topk, kd_cn_det *out)
{
    int Ho, Wo;
    kd_dethead_out_size(d->head, &Ho, &Wo);
    size_t HW = (size_t)Ho * Wo;
    outs o = outputs(d);
    const float *hm = o.hm + (size_t)i * d->K * HW;
    const float *wh = o.wh + (size_t)i * 2 * HW;
    const float *off = o.off + (size_t)i * 2 * HW;
    return kd_cn_decode(hm, wh, off, d->K, Ho, Wo, d->stride, d->H, d->W, topk, out, d->scr, d->iscr);
}

void kd_detnet_mask(kd_detnet *d, int i, uint8_t *mask)
{
    int Ho, Wo;
    kd_dethead_seg(d->head, &Ho, &Wo);
    const float *seg = outputs(d).seg + (size_t)i * (d->K + 1) * Ho * Wo;
    kd_bilinear_resize(d->K + 1, Ho, Wo, seg, d->H, d->W, d->lg);
    kd_argmax_u8(d->K + 1, d->H * d->W, d->lg, mask);
}

void kd_detnet_free(kd_detnet *d)
{
    kd_model_free(d->m);
    kd_dethead_free(d->head);
    if (d->names)
        kd_strv_free(d->names, d->nnames);
    free(d->x), free(d->dmap), free(d->dskip), free(d->fl), free(d->saved_p), free(d->saved_b);
    free(d->scr), free(d->iscr), free(d->lg);
    memset(d, 0, sizeof *d);
}

void kd_detlist_free(kd_detlist *l)
{
    free(l->det), free(l->ids);
    memset(l, 0, sizeof *l);
}

static int detlist_reserve(kd_detlist *l, int64_t more)
{
    if (l->n + more <= l->cap)
        return 0;
    int64_t cap = l->cap ? l->cap : 1024;
    while (cap < l->n + more)
        cap *= 2;
    kd_cn_det *nd = realloc(l->det, sizeof(kd_cn_det) * (size_t)cap);
    if (nd)
        l->det = nd;
    int64_t *ni = nd ? realloc(l->ids, sizeof(int64_t) * (size_t)cap) : NULL;
    if (!ni) {
        kd_err_set("detections: out of memory");
        return -1;
    }
    l->ids = ni, l->cap = cap;
    return 0;
}

int kd_detnet_run(kd_detnet *d, const uint8_t *images, int64_t n, int cin, int64_t first_id, int topk,
                  kd_detlist *l, uint8_t *masks, void (*progress)(int64_t done, void *ctx), void *ctx)
{
    size_t img = (size_t)d->H * d->W;
    for (int64_t s = 0; s < n; s += d->maxn) {
        int b = n - s < d->maxn ? (int)(n - s) : d->maxn;
        kd_detnet_input(d, images + (size_t)s * img * cin, b, cin);
        if ((d->flip_test ? kd_detnet_forward_flip(d, b) : kd_detnet_forward(d, b, 0)) || detlist_reserve(l, (int64_t)b * topk))
            return -1;
        for (int i = 0; i < b; i++) {
            int m = kd_detnet_decode(d, i, topk, l->det + l->n);
            for (int k = 0; k < m; k++)
                l->ids[l->n + k] = first_id + s + i;
            l->n += m;
            if (masks)
                kd_detnet_mask(d, i, masks + (size_t)(s + i) * img);
        }
        if (progress)
            progress(s + b, ctx);
    }
    return 0;
}
