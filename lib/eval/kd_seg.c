/* Mean IoU of semantic masks (lib/kd_seg.h). */
#include "kd_seg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_dataset.h"
#include "kd_err.h"
#include "kd_h5.h"

int kd_seg_init(kd_seg_result *r, int ncls)
{
    memset(r, 0, sizeof *r);
    r->ncls = ncls;
    r->conf = calloc((size_t)ncls * ncls, sizeof(int64_t));
    r->iou = calloc((size_t)ncls, sizeof(double));
    if (!r->conf || !r->iou) {
        kd_seg_free(r);
        kd_err_set("out of memory");
        return -1;
    }
    return 0;
}

void kd_seg_add(kd_seg_result *r, const uint8_t *pred, const uint8_t *gt, int64_t npix)
{
    for (int64_t i = 0; i < npix; i++)
        r->conf[(size_t)gt[i] * r->ncls + pred[i]]++;
    r->pixels += npix;
}

void kd_seg_finish(kd_seg_result *r)
{
    const int K = r->ncls;
    int64_t right = 0;
    double sum = 0;
    r->nvalid = 0;
    for (int v = 0; v < K; v++) {
        int64_t tp = r->conf[(size_t)v * K + v], row = 0, col = 0;
        for (int u = 0; u < K; u++)
            row += r->conf[(size_t)v * K + u], col += r->conf[(size_t)u * K + v];
        right += tp;
        int64_t uni = row + col - tp;
        r->iou[v] = uni ? (double)tp / (double)uni : NAN;
        if (uni) {
            sum += r->iou[v];
            r->nvalid++;
        }
    }
    r->miou = r->nvalid ? sum / r->nvalid : NAN;
    r->pixel_acc = r->pixels ? (double)right / (double)r->pixels : NAN;
}

void kd_seg_free(kd_seg_result *r)
{
    free(r->conf), free(r->iou);
    r->conf = NULL, r->iou = NULL;
}

int kd_seg_evaluate(const char *pred_path, const char *gt_path, kd_seg_result *r)
{
    memset(r, 0, sizeof *r);
    kd_dataset_info in;
    kd_dataset_file *g = kd_dataset_open(gt_path, &in);
    if (!g)
        return -1;
    kd_h5 p;
    int rc = -1, opened = 0;
    uint8_t *pm = NULL, *gm = NULL;
    if (!in.has_masks) {
        kd_err_set("%s: no /masks to score masks against (make it with dataset --scenes)", gt_path);
        goto out;
    }
    if (kd_h5_open(&p, pred_path, NULL))
        goto out;
    opened = 1;
    kd_dtype dt;
    int rank;
    int64_t d[KD_MAX_RANK];
    if (kd_h5_exists(&p, "masks") <= 0) {
        kd_err_set("%s: no /masks", pred_path);
        goto out;
    }
    if (kd_h5_info(&p, "masks", &dt, &rank, d))
        goto out;
    if (dt != KD_U8 || rank != 3 || d[0] != in.n || d[1] != in.h || d[2] != in.w) {
        kd_err_set("%s: /masks must be u8 [%lld,%d,%d] as %s's", pred_path, (long long)in.n, in.h, in.w, gt_path);
        goto out;
    }
    int K = in.nclasses > 0 && in.nclasses < 255 ? in.nclasses : 255;
    const int64_t px = (int64_t)in.h * in.w, slab = 64;
    pm = malloc((size_t)(slab * px));
    gm = malloc((size_t)(slab * px));
    if (!pm || !gm) {
        kd_err_set("%s: out of memory", pred_path);
        goto out;
    }
    if (kd_seg_init(r, K + 1))
        goto out;
    for (int64_t i = 0; i < in.n; i += slab) {
        int64_t cnt = in.n - i < slab ? in.n - i : slab;
        if (kd_dataset_read_masks(g, i, cnt, gm) || kd_h5_read(&p, "masks", KD_U8, i, cnt, pm) ||
            kd_dataset_check_masks(pred_path, pm, cnt, in.h, in.w, i, in.nclasses))
            goto out;
        kd_seg_add(r, pm, gm, cnt * px);
    }
    kd_seg_finish(r);
    rc = 0;
out:
    if (rc)
        kd_seg_free(r);
    free(pm), free(gm);
    if (opened)
        kd_h5_close(&p);
    kd_dataset_close(g);
    return rc;
}
