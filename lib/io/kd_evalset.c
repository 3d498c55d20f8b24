#include "kd_evalset.h"

#include <stdlib.h>
#include <string.h>

#include "kd_aug.h"
#include "kd_err.h"
#include "kd_h5.h"

int kd_evalset_load(kd_evalset *e, const char *path, int64_t limit, int h, int w)
{
    memset(e, 0, sizeof *e);
    kd_h5 f;
    if (kd_h5_open(&f, path, "dataset"))
        return -1;
    int64_t d[KD_MAX_RANK];
    int rc = -1;
    uint8_t *px = NULL;
    float *tmp = NULL;
    if (kd_h5_expect(&f, "images", 4, (int64_t[]){-1, -1, -1, -1}, d) ||
        kd_h5_expect(&f, "labels", 1, (int64_t[]){d[0]}, NULL))
        goto out;
    int64_t n = limit > 0 && limit < d[0] ? limit : d[0];
    int H = (int)d[1], W = (int)d[2], C = (int)d[3];
    if (C != 1 && C != 3) {
        kd_err_set("%s: images have %d channels", path, C);
        goto out;
    }
    float mean[3] = {0, 0, 0}, sd[3] = {1, 1, 1};
    if (kd_h5_attr_get_f32v(&f, NULL, "mean", mean, 3) != C || kd_h5_attr_get_f32v(&f, NULL, "std", sd, 3) != C) {
        kd_err_prefix("%s: mean/std", path);
        goto out;
    }
    if (h <= 0 || w <= 0)
        h = H, w = W;
    e->n = n, e->c = C, e->h = h, e->w = w;
    e->x = malloc(sizeof(float) * (size_t)(n * C * h * w));
    e->y = malloc(sizeof(int32_t) * (size_t)n);
    px = malloc((size_t)(n * H * W * C));
    tmp = malloc(sizeof(float) * (size_t)C * H * W);
    if (!e->x || !e->y || !px || !tmp) {
        kd_err_set("%s: out of memory for %lld images", path, (long long)n);
        goto out;
    }
    if (kd_h5_read(&f, "images", KD_U8, 0, n, px) || kd_h5_read(&f, "labels", KD_I32, 0, n, e->y))
        goto out;
    for (int64_t i = 0; i < n; i++) {
        float *dst = e->x + (size_t)i * C * h * w;
        kd_aug_from_u8(px + (size_t)i * H * W * C, H, W, C, h == H && w == W ? dst : tmp, C);
        if (h != H || w != W) {
            kd_box b = {0, 0, H, W};
            kd_aug_resized_crop(tmp, C, H, W, b, dst, h, w);
        }
        kd_aug_normalize(dst, C, h * w, mean, sd);
    }
    rc = 0;
out:
    free(px);
    free(tmp);
    kd_h5_close(&f);
    if (rc)
        kd_evalset_free(e);
    return rc;
}

void kd_evalset_free(kd_evalset *e)
{
    free(e->x);
    free(e->y);
    e->x = NULL;
    e->y = NULL;
}
