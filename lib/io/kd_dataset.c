#include "kd_dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kd_err.h"
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
        (names && kd_h5_attr_set_strv(&h, NULL, "classes", (const char *const *)names, d->nclasses))) {
        kd_h5_abort(&h);
        return -1;
    }
    return kd_h5_commit(&h);
}
