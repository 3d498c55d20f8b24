#include "kd_evalset.h"

#include <stdlib.h>
#include <string.h>

#include "kd_aug.h"
#include "kd_err.h"
#include "kd_dataset.h"

int kd_evalset_load(kd_evalset *e, const char *path, int64_t limit, int h, int w)
{
    memset(e, 0, sizeof *e);
    kd_dataset_info di;
    kd_dataset_file *f = kd_dataset_open(path, &di);
    if (!f)
        return -1;
    int rc = -1;
    uint8_t *px = NULL;
    float *tmp = NULL;
    int64_t n = limit > 0 && limit < di.n ? limit : di.n;
    int H = di.h, W = di.w, C = di.c;
    float mean[3], sd[3];
    if (!di.has_labels) {
        kd_err_set("%s: no /labels", path);
        goto out;
    }
    if (C != 1 && C != 3) {
        kd_err_set("%s: images have %d channels", path, C);
        goto out;
    }
    if (kd_dataset_norm(&di, C, NULL, mean, sd))
        goto out;
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
    if (kd_dataset_read_rows(f, 0, n, px, e->y))
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
    kd_dataset_close(f);
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
