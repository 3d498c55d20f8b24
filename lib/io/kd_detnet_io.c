/* kd_detnet_io — detector files: a model file (the backbone) with the head
 * under /det/NAME and its configuration as root attributes det_*. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_detnet.h"
#include "kd_err.h"
#include "kd_model_io.h"

static int write_views(kd_h5 *h, const kd_slab *s)
{
    for (int i = 0; i < s->nv; i++) {
        char name[128];
        snprintf(name, sizeof name, "det/%s", s->v[i].name);
        if (kd_h5_write(h, name, KD_F32, s->v[i].rank, s->v[i].shape, s->p + s->v[i].off))
            return -1;
    }
    return 0;
}

int kd_detnet_save_h5(const kd_detnet *d, kd_h5 *h)
{
    if (kd_model_save_h5(d->m, h) || kd_h5_attr_set_i64(h, NULL, "det_stage", d->stage) ||
        kd_h5_attr_set_i64(h, NULL, "det_stride", d->stride) || kd_h5_attr_set_i64(h, NULL, "det_upsample", d->nup) ||
        kd_h5_attr_set_i64(h, NULL, "det_up_channels", d->up) ||
        kd_h5_attr_set_i64(h, NULL, "det_head_channels", d->hc) || kd_h5_attr_set_i64(h, NULL, "det_classes", d->K) ||
        (d->skip && kd_h5_attr_set_i64(h, NULL, "det_seg_skip", d->skip)) ||
        kd_h5_attr_set_f32v(h, NULL, "det_mean", d->mean, d->c) || kd_h5_attr_set_f32v(h, NULL, "det_std", d->std, d->c))
        return -1;
    if (d->names && kd_h5_attr_set_strv(h, NULL, "det_class_names", (const char *const *)d->names, d->nnames))
        return -1;
    kd_dethead *hd = d->head;
    return write_views(h, kd_dethead_params(hd)) || write_views(h, kd_dethead_buffers(hd)) ? -1 : 0;
}

static int get_int(const kd_h5 *h, const char *name, int lo, int hi, int *out)
{
    int64_t v;
    if (kd_h5_attr_get_i64(h, NULL, name, &v))
        return -1;
    if (v < lo || v > hi) {
        kd_err_set("%s: attribute %s = %lld is out of range [%d, %d]", h->path, name, (long long)v, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int read_views(const kd_h5 *h, const kd_slab *s, float **dst, size_t *n)
{
    *n = s->n;
    *dst = malloc(sizeof(float) * (s->n ? s->n : 1));
    if (!*dst) {
        kd_err_set("%s: out of memory", h->path);
        return -1;
    }
    for (int i = 0; i < s->nv; i++) {
        const kd_pview *v = &s->v[i];
        char name[128];
        snprintf(name, sizeof name, "det/%s", v->name);
        int64_t want[4];
        for (int k = 0; k < v->rank; k++)
            want[k] = v->shape[k];
        if (!kd_h5_exists(h, name)) {
            kd_err_set("%s: missing tensor '%s' of the detection head", h->path, name);
            return -1;
        }
        if (kd_h5_expect(h, name, v->rank, want, NULL) || kd_h5_read(h, name, KD_F32, 0, v->shape[0], *dst + v->off))
            return -1;
        for (size_t k = 0; k < v->n; k++)
            if (!isfinite((*dst)[v->off + k])) {
                kd_err_set("%s: tensor '%s' holds non-finite values", h->path, name);
                return -1;
            }
    }
    return 0;
}

int kd_detnet_load(kd_detnet *d, const char *path)
{
    memset(d, 0, sizeof *d);
    kd_h5 h;
    if (kd_h5_open(&h, path, "model"))
        return -1;
    int rc = -1;
    kd_dethead *probe = NULL;
    if (!kd_h5_attr_has(&h, NULL, "det_stage")) {
        kd_err_set("%s: not a detector (no det_stage attribute; train one with detect-train)", path);
        goto out;
    }
    if (!(d->m = kd_model_load_h5(&h)))
        goto out;
    d->c = kd_model_opts(d->m)->in_channels;
    if (get_int(&h, "det_stage", 1, kd_model_nstages(d->m), &d->stage) || get_int(&h, "det_stride", 1, 64, &d->stride) ||
        get_int(&h, "det_upsample", 0, 4, &d->nup) || get_int(&h, "det_up_channels", 0, 4096, &d->up) ||
        get_int(&h, "det_head_channels", 1, 4096, &d->hc) || get_int(&h, "det_classes", 1, 254, &d->K))
        goto out;
    /* files written before the skip existed have no det_seg_skip: none */
    if (kd_h5_attr_has(&h, NULL, "det_seg_skip") &&
        get_int(&h, "det_seg_skip", 1, kd_model_nstages(d->m), &d->skip))
        goto out;
    if (d->skip == d->stage) {
        kd_err_set("%s: det_seg_skip is the head's own stage %d", path, d->stage);
        goto out;
    }
    if (!d->skip && kd_h5_exists(&h, "det/skip.0.weight")) {
        kd_err_set("%s: a skip head (det/skip.*) without the det_seg_skip attribute naming its stage", path);
        goto out;
    }
    if (kd_h5_attr_get_f32v(&h, NULL, "det_mean", d->mean, 3) != d->c ||
        kd_h5_attr_get_f32v(&h, NULL, "det_std", d->std, 3) != d->c) {
        kd_err_set("%s: det_mean and det_std need %d values", path, d->c);
        goto out;
    }
    for (int c = 0; c < d->c; c++)
        if (!isfinite(d->mean[c]) || !(d->std[c] > 0) || !isfinite(d->std[c])) {
            kd_err_set("%s: det_std must be positive and det_mean finite", path);
            goto out;
        }
    if (kd_h5_attr_has(&h, NULL, "det_class_names")) {
        int n = kd_h5_attr_get_strv(&h, NULL, "det_class_names", &d->names);
        if (n < 0)
            goto out;
        d->nnames = n;
    }
    /* the head's layout does not depend on the map size: read it from a
     * head built for a 1x1 map */
    kd_dethead_opts po = {.C = 1, .h = 1, .w = 1, .nup = d->nup, .up = d->up, .hc = d->hc, .K = d->K, .maxn = 1};
    int64_t dims[KD_MAX_RANK];
    if (kd_h5_expect(&h, d->nup ? "det/up.0.conv.weight" : "det/hm.0.weight", 4, (int64_t[]){-1, -1, 3, 3}, dims))
        goto out;
    po.C = (int)dims[1];
    if (d->skip) {
        if (kd_h5_expect(&h, "det/skip.0.weight", 4, (int64_t[]){d->hc, -1, 3, 3}, dims))
            goto out;
        if (dims[1] < 1) {
            kd_err_set("%s: det/skip.0.weight has %lld input channels", path, (long long)dims[1]);
            goto out;
        }
        d->saved_sC = po.sC = (int)dims[1], po.sh = po.sw = 1;
    }
    if (!(probe = kd_dethead_new(&po)) || read_views(&h, kd_dethead_params(probe), &d->saved_p, &d->nsaved_p) ||
        read_views(&h, kd_dethead_buffers(probe), &d->saved_b, &d->nsaved_b))
        goto out;
    rc = 0;
out:
    kd_dethead_free(probe);
    kd_h5_close(&h);
    if (rc)
        kd_detnet_free(d);
    return rc;
}
