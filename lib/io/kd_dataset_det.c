/* Detection datasets: the boxes (/boxes, /box_labels, /box_offsets,
 * optional /box_crowd) and semantic masks (/masks) of a dataset file, one
 * rule for writing and reading them (man/man5/kdpipe-h5.5). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_dataset_impl.h"
#include "kd_err.h"

int kd_dataset_check_boxes(const char *path, int64_t n, int h, int w, int nclasses, const float *boxes,
                           const int32_t *labels, const int64_t *offsets, int64_t m)
{
    if (offsets[0] != 0 || offsets[n] != m) {
        kd_err_set("%s: /box_offsets runs from %lld to %lld, not from 0 to %lld (the number of boxes)", path,
                   (long long)offsets[0], (long long)offsets[n], (long long)m);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        if (offsets[i + 1] < offsets[i]) {
            kd_err_set("%s: /box_offsets decreases at image %lld", path, (long long)i);
            return -1;
        }
        for (int64_t q = offsets[i]; q < offsets[i + 1]; q++) {
            const float *b = boxes + 4 * q;
            if (!isfinite(b[0]) || !isfinite(b[1]) || !(b[2] >= 0 && b[3] >= 0) || !isfinite(b[2]) ||
                !isfinite(b[3])) {
                kd_err_set("%s: box %lld has a negative or non-finite size", path, (long long)q);
                return -1;
            }
            /* in double: x + w <= w must not pass by float rounding */
            if (b[0] < 0 || b[1] < 0 || (double)b[0] + b[2] > w || (double)b[1] + b[3] > h) {
                kd_err_set("%s: box %lld of image %lld (x %g, y %g, w %g, h %g) is outside the %dx%d image", path,
                           (long long)q, (long long)i, b[0], b[1], b[2], b[3], h, w);
                return -1;
            }
        }
    }
    int k = nclasses > 0 ? nclasses : KD_DATASET_MAX_CLASSES;
    for (int64_t q = 0; q < m; q++)
        if (labels[q] < 0 || labels[q] >= k) {
            kd_err_set("%s: box %lld: label %d is out of range [0, %d)", path, (long long)q, labels[q], k);
            return -1;
        }
    return 0;
}

int kd_dataset_check_masks(const char *path, const uint8_t *masks, int64_t n, int h, int w, int64_t first_row,
                           int nclasses)
{
    int top = nclasses > 0 && nclasses < 255 ? nclasses : 255;
    int64_t px = (int64_t)h * w;
    for (int64_t i = 0; i < n * px; i++)
        if (masks[i] > top) {
            kd_err_set("%s: /masks: image %lld, pixel (%lld, %lld): %d is not 0 or a class + 1 (1..%d)", path,
                       (long long)(first_row + i / px), (long long)(i % px / w), (long long)(i % w), masks[i], top);
            return -1;
        }
    return 0;
}

int kd_dataset_open_det(kd_dataset_file *f)
{
    kd_dataset_info *in = &f->info;
    kd_h5 *h = &f->h5;
    int nb = kd_h5_exists(h, "boxes") > 0, nl = kd_h5_exists(h, "box_labels") > 0,
        no = kd_h5_exists(h, "box_offsets") > 0;
    in->has_boxes = nb && nl && no;
    if ((nb || nl || no) && !in->has_boxes) {
        kd_err_set("%s: a detection dataset needs /boxes, /box_labels and /box_offsets; /%s is missing", in->path,
                   !nb ? "boxes" : !nl ? "box_labels" : "box_offsets");
        return -1;
    }
    int64_t d[KD_MAX_RANK];
    if (in->has_boxes) {
        if (kd_h5_expect(h, "boxes", 2, (int64_t[]){-1, 4}, d))
            return -1;
        in->nboxes = d[0];
        if (kd_h5_expect(h, "box_labels", 1, (int64_t[]){in->nboxes}, NULL) ||
            (kd_h5_exists(h, "box_crowd") > 0 && kd_h5_expect(h, "box_crowd", 1, (int64_t[]){in->nboxes}, NULL)))
            return -1;
        if (kd_h5_expect(h, "box_offsets", 1, (int64_t[]){-1}, d))
            return -1;
        if (d[0] != in->n + 1) {
            kd_err_set("%s: /box_offsets has %lld entries for %lld images (needs %lld)", in->path, (long long)d[0],
                       (long long)in->n, (long long)in->n + 1);
            return -1;
        }
    }
    in->has_masks = kd_h5_exists(h, "masks") > 0;
    if (in->has_masks) {
        kd_dtype dt;
        int rank;
        if (kd_h5_info(h, "masks", &dt, &rank, d))
            return -1;
        if (dt != KD_U8 || rank != 3 || d[0] != in->n || d[1] != in->h || d[2] != in->w) {
            kd_err_set("%s: /masks must be u8 [%lld,%d,%d] for its images", in->path, (long long)in->n, in->h,
                       in->w);
            return -1;
        }
    }
    return 0;
}

int kd_dataset_read_boxes(kd_dataset_file *f, kd_boxes *b)
{
    const kd_dataset_info *in = &f->info;
    memset(b, 0, sizeof *b);
    if (!in->has_boxes) {
        kd_err_set("%s: not a detection dataset (no /boxes)", in->path);
        return -1;
    }
    int64_t m = in->nboxes;
    b->n = in->n, b->m = m;
    b->boxes = malloc(sizeof(float) * (size_t)(4 * m + 4));
    b->labels = malloc(sizeof(int32_t) * (size_t)(m + 1));
    b->offsets = malloc(sizeof(int64_t) * (size_t)(in->n + 1));
    b->crowd = calloc((size_t)m + 1, 1);
    if (!b->boxes || !b->labels || !b->offsets || !b->crowd) {
        kd_err_set("%s: out of memory for %lld boxes", in->path, (long long)m);
        goto fail;
    }
    if (kd_h5_read(&f->h5, "boxes", KD_F32, 0, m, b->boxes) ||
        kd_h5_read(&f->h5, "box_labels", KD_I32, 0, m, b->labels) ||
        kd_h5_read(&f->h5, "box_offsets", KD_I64, 0, in->n + 1, b->offsets) ||
        (kd_h5_exists(&f->h5, "box_crowd") > 0 && kd_h5_read(&f->h5, "box_crowd", KD_U8, 0, m, b->crowd)) ||
        kd_dataset_check_boxes(in->path, in->n, in->h, in->w, in->nclasses, b->boxes, b->labels, b->offsets, m))
        goto fail;
    return 0;
fail:
    kd_boxes_free(b);
    return -1;
}

void kd_boxes_free(kd_boxes *b)
{
    free(b->boxes), free(b->labels), free(b->offsets), free(b->crowd);
    memset(b, 0, sizeof *b);
}

int kd_dataset_read_masks(kd_dataset_file *f, int64_t start, int64_t count, uint8_t *masks)
{
    const kd_dataset_info *in = &f->info;
    if (!in->has_masks || start < 0 || count < 0 || start + count > in->n) {
        kd_err_set("%s: %s", in->path, in->has_masks ? "mask rows out of range" : "no /masks");
        return -1;
    }
    if (kd_h5_read(&f->h5, "masks", KD_U8, start, count, masks))
        return -1;
    return kd_dataset_check_masks(in->path, masks, count, in->h, in->w, start, in->nclasses);
}

int kd_dataset_write_det(const kd_dataset *d, kd_h5 *h)
{
    if (!d->boxes)
        return 0;
    if (kd_dataset_check_boxes(d->source, d->n, d->h, d->w, d->nclasses, d->boxes, d->box_labels, d->box_offsets,
                               d->nboxes) ||
        (d->masks && kd_dataset_check_masks(d->source, d->masks, d->n, d->h, d->w, 0, d->nclasses)))
        return -1;
    int64_t bd[2] = {d->nboxes, 4}, ld[1] = {d->nboxes}, od[1] = {d->n + 1}, md[3] = {d->n, d->h, d->w};
    if (kd_h5_create_ext(h, "boxes", KD_F32, 2, bd, 0) || kd_h5_append(h, "boxes", KD_F32, d->boxes, d->nboxes) ||
        kd_h5_create_ext(h, "box_labels", KD_I32, 1, ld, 0) ||
        kd_h5_append(h, "box_labels", KD_I32, d->box_labels, d->nboxes) ||
        kd_h5_create_ext(h, "box_offsets", KD_I64, 1, od, 0) ||
        kd_h5_append(h, "box_offsets", KD_I64, d->box_offsets, d->n + 1))
        return -1;
    if (d->masks && (kd_h5_create_ext(h, "masks", KD_U8, 3, md, 0) || kd_h5_append(h, "masks", KD_U8, d->masks, d->n)))
        return -1;
    return 0;
}
