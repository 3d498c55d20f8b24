#include "kd_dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kd_err.h"
#include "kd_dataset_impl.h"
#include "kd_h5.h"

void kd_dataset_stats(const uint8_t *images, int64_t npix, int c, float *mean, float *std)
{
    /* Integer histograms per channel: exact and one pass. */
    for (int ch = 0; ch < c; ch++) {
        int64_t hist[256] = {0};
        for (int64_t i = ch; i < npix * c; i += c)
            hist[images[i]]++;
        double s = 0, s2 = 0;
        for (int v = 0; v < 256; v++) {
            s += (double)hist[v] * v;
            s2 += (double)hist[v] * v * v;
        }
        double m = npix ? s / (double)npix : 0, var = npix ? s2 / (double)npix - m * m : 0;
        mean[ch] = (float)(m / 255.0);
        std[ch] = (float)(sqrt(var > 0 ? var : 0) / 255.0);
    }
}

int kd_dataset_write(const kd_dataset *d, const char *path)
{
    if (d->labels)
        for (int64_t i = 0; i < d->n; i++)
            if (d->labels[i] < 0 || d->labels[i] >= d->nclasses) {
                kd_err_set("%s: image %lld: label %d is outside [0, %d)", d->source, (long long)i,
                           d->labels[i], d->nclasses);
                return -1;
            }
    if (d->c < 1 || d->c > 4) {
        kd_err_set("%s: %d channels is not supported", d->source, d->c);
        return -1;
    }
    float mean[4], std[4];
    kd_dataset_stats(d->images, d->n * d->h * d->w, d->c, mean, std);
    char **names = d->classes, *fallback[1024];
    char buf[1024][12];
    if (!names && d->nclasses <= 1024) {
        for (int i = 0; i < d->nclasses; i++) {
            snprintf(buf[i], sizeof buf[i], "%d", i);
            fallback[i] = buf[i];
        }
        names = fallback;
    }
    kd_h5 h;
    if (kd_h5_create(&h, path, "dataset"))
        return -1;
    int64_t idims[4] = {d->n, d->h, d->w, d->c}, ldims[1] = {d->n};
    if (kd_h5_create_ext(&h, "images", KD_U8, 4, idims, 0) ||
        kd_h5_append(&h, "images", KD_U8, d->images, d->n) ||
        (d->labels && (kd_h5_create_ext(&h, "labels", KD_I32, 1, ldims, 0) ||
                       kd_h5_append(&h, "labels", KD_I32, d->labels, d->n))) ||
        kd_h5_attr_set_f32v(&h, NULL, "mean", mean, d->c) || kd_h5_attr_set_f32v(&h, NULL, "std", std, d->c) ||
        kd_h5_attr_set_str(&h, NULL, "source", d->source) ||
        (names && kd_h5_attr_set_strv(&h, NULL, "classes", (const char *const *)names, d->nclasses)) ||
        (d->scenes && kd_h5_attr_set_str(&h, NULL, "scenes", d->scenes)) || kd_dataset_write_det(d, &h)) {
        kd_h5_abort(&h);
        return -1;
    }
    return kd_h5_commit(&h);
}

/* ------------------------------------------------------------- reading */

/* A root attribute of 1 or c floats into v; *n = 0 when absent. */
static int stat_attr(const kd_dataset_file *f, const char *name, float *v, int *n)
{
    *n = 0;
    if (!kd_h5_attr_has(&f->h5, NULL, name))
        return 0;
    float buf[8];
    int k = kd_h5_attr_get_f32v(&f->h5, NULL, name, buf, 8);
    if (k < 0)
        return -1;
    if (k != 1 && k != f->info.c) {
        kd_err_set("%s: attribute %s has %d values for %d channels", f->info.path, name, k, f->info.c);
        return -1;
    }
    for (int i = 0; i < k; i++)
        v[i] = buf[i];
    *n = k;
    return 0;
}

kd_dataset_file *kd_dataset_open(const char *path, kd_dataset_info *info)
{
    kd_dataset_file *f = calloc(1, sizeof *f);
    if (!f) {
        kd_err_set("%s: out of memory", path);
        return NULL;
    }
    if (kd_h5_open(&f->h5, path, "dataset")) {
        free(f);
        return NULL;
    }
    kd_dataset_info *in = &f->info;
    in->path = path;
    int64_t dims[KD_MAX_RANK];
    kd_dtype dt;
    int rank;
    if (kd_h5_expect(&f->h5, "images", 4, (int64_t[]){-1, -1, -1, -1}, dims) ||
        kd_h5_info(&f->h5, "images", &dt, &rank, dims))
        goto fail;
    if (dt != KD_U8) {
        kd_err_set("%s: /images is %s, not u8 pixels", path, kd_dtype_name(dt));
        goto fail;
    }
    in->n = dims[0];
    if (dims[1] < 1 || dims[2] < 1 || dims[1] > KD_DATASET_MAX_SIDE || dims[2] > KD_DATASET_MAX_SIDE) {
        kd_err_set("%s: /images of %lldx%lld pixels", path, (long long)dims[1], (long long)dims[2]);
        goto fail;
    }
    if (dims[3] < 1 || dims[3] > 4) {
        kd_err_set("%s: /images has %lld channels", path, (long long)dims[3]);
        goto fail;
    }
    in->h = (int)dims[1], in->w = (int)dims[2], in->c = (int)dims[3];
    if (in->n < 1) {
        kd_err_set("%s: no images", path);
        goto fail;
    }
    in->has_labels = kd_h5_exists(&f->h5, "labels") > 0;
    if (in->has_labels) {
        int64_t ld[KD_MAX_RANK];
        if (kd_h5_expect(&f->h5, "labels", 1, (int64_t[]){-1}, ld))
            goto fail;
        if (ld[0] != in->n) { /* more labels than images is no less a mismatch */
            kd_err_set("%s: /labels has %lld entries for %lld images", path, (long long)ld[0], (long long)in->n);
            goto fail;
        }
    }
    if (kd_h5_attr_has(&f->h5, NULL, "classes")) {
        char **cls;
        int nc = kd_h5_attr_get_strv(&f->h5, NULL, "classes", &cls);
        if (nc < 0)
            goto fail;
        kd_strv_free(cls, nc);
        in->nclasses = nc;
    }
    if (stat_attr(f, "mean", in->mean, &in->nmean) || stat_attr(f, "std", in->std, &in->nstd) ||
        kd_dataset_open_det(f))
        goto fail;
    *info = *in;
    return f;
fail:
    kd_h5_close(&f->h5);
    free(f);
    return NULL;
}

int kd_dataset_read_rows(kd_dataset_file *f, int64_t start, int64_t count, uint8_t *images, int32_t *labels)
{
    const kd_dataset_info *in = &f->info;
    if (start < 0 || count < 0 || start + count > in->n || (labels && !in->has_labels)) {
        kd_err_set("%s: rows %lld..%lld of %lld%s", in->path, (long long)start, (long long)(start + count),
                   (long long)in->n, labels && !in->has_labels ? ", and the file has no labels" : "");
        return -1;
    }
    if (images && kd_h5_read(&f->h5, "images", KD_U8, start, count, images))
        return -1;
    if (labels && (kd_h5_read(&f->h5, "labels", KD_I32, start, count, labels) ||
                   kd_dataset_check_labels(in->path, labels, count, start, in->nclasses)))
        return -1;
    return 0;
}

void kd_dataset_close(kd_dataset_file *f)
{
    if (!f)
        return;
    kd_h5_close(&f->h5);
    free(f);
}

int kd_dataset_classes(kd_dataset_file *f, char ***names)
{
    *names = NULL;
    return f->info.nclasses > 0 ? kd_h5_attr_get_strv(&f->h5, NULL, "classes", names) : 0;
}

int kd_dataset_check_labels(const char *path, const int32_t *y, int64_t n, int64_t first_row, int nclasses)
{
    int k = nclasses > 0 ? nclasses : KD_DATASET_MAX_CLASSES;
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k) {
            kd_err_set("%s: row %lld: label %d is out of range [0, %d)", path, (long long)(first_row + i), y[i], k);
            return -1;
        }
    return 0;
}

/* The file's statistic (n values, 1 or c) carried from c to oc channels. */
static int carry(const kd_dataset_info *in, const char *name, const float *v, int n, int oc, float *out)
{
    float x[3];
    for (int k = 0; k < 3; k++)
        x[k] = v[n == 1 ? 0 : (k < in->c ? k : 0)];
    if (in->c == oc || n == 1) {
        for (int k = 0; k < oc; k++)
            out[k] = x[k];
    } else if (in->c == 1 && oc == 3) {
        out[0] = out[1] = out[2] = x[0];
    } else if (in->c == 3 && oc == 1) {
        /* luma of the channel statistics: exact for the mean, an
         * approximation for the std */
        out[0] = 0.2989f * x[0] + 0.587f * x[1] + 0.114f * x[2];
    } else {
        kd_err_set("%s: cannot carry the %s of %d channels to %d", in->path, name, in->c, oc);
        return -1;
    }
    return 0;
}

int kd_dataset_norm(const kd_dataset_info *info, int out_channels, const kd_norm_overrides *ov, float *mean,
                    float *std)
{
    const int oc = out_channels;
    if (oc != 1 && oc != 3) {
        kd_err_set("%s: %d output channels (1 or 3)", info->path, oc);
        return -2;
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *name = pass ? "std" : "mean";
        float *dst = pass ? std : mean;
        int no = ov ? (pass ? ov->nstd : ov->nmean) : 0;
        if (no) {
            const float *v = pass ? ov->std : ov->mean;
            if (no != 1 && no != oc) {
                if (oc == 1)
                    kd_err_set("--mean/--std: give 1 value for 1 channel");
                else
                    kd_err_set("--mean/--std: give 1 or %d values", oc);
                return -2;
            }
            for (int k = 0; k < oc; k++)
                dst[k] = v[no == 1 ? 0 : k];
        } else {
            int n = pass ? info->nstd : info->nmean;
            if (!n) {
                kd_err_set("%s: no %s attribute; give --%s", info->path, name, name);
                return -1;
            }
            if (carry(info, name, pass ? info->std : info->mean, n, oc, dst))
                return -1;
        }
        for (int k = 0; k < oc; k++)
            if (!isfinite(dst[k]) || (pass && !(dst[k] > 0))) {
                kd_err_set("%s: %s %g is not %s", no ? (pass ? "--std" : "--mean") : info->path, name, dst[k],
                           pass ? "positive" : "finite");
                return no ? -2 : -1;
            }
    }
    return 0;
}
