/* kd_dets_io — writing detections in the three forms detect-eval reads
 * (kd_detnet.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_detnet.h"
#include "kd_err.h"
#include "kd_file.h"
#include "kd_names.h"
#include "kd_stream.h"

/* Columns of a detection list as the tensors of a detections file. */
typedef struct {
    float *boxes, *scores;
    int32_t *labels;
} columns;

static int split(const kd_detlist *l, columns *c)
{
    size_t n = (size_t)l->n + 1;
    c->boxes = malloc(sizeof(float) * 4 * n), c->scores = malloc(sizeof(float) * n);
    c->labels = malloc(sizeof(int32_t) * n);
    if (!c->boxes || !c->scores || !c->labels) {
        free(c->boxes), free(c->scores), free(c->labels);
        kd_err_set("detections: out of memory");
        return -1;
    }
    for (int64_t i = 0; i < l->n; i++) {
        const kd_cn_det *d = &l->det[i];
        c->boxes[4 * i] = d->x, c->boxes[4 * i + 1] = d->y, c->boxes[4 * i + 2] = d->w, c->boxes[4 * i + 3] = d->h;
        c->scores[i] = d->score, c->labels[i] = d->cls;
    }
    return 0;
}

int kd_dets_write_h5(const kd_detlist *l, const uint8_t *masks, int64_t n, int H, int W, const char *path)
{
    columns c;
    if (split(l, &c))
        return -1;
    kd_h5 h;
    int rc = -1;
    if (kd_h5_create(&h, path, "detections")) {
        free(c.boxes), free(c.scores), free(c.labels);
        return -1;
    }
    int64_t M = l->n;
    if (kd_h5_write(&h, KD_NAME_BOXES, KD_F32, 2, (int64_t[]){M, 4}, c.boxes) ||
        kd_h5_write(&h, KD_NAME_SCORES, KD_F32, 1, &M, c.scores) ||
        kd_h5_write(&h, KD_NAME_LABELS, KD_I32, 1, &M, c.labels) ||
        kd_h5_write(&h, KD_NAME_IMAGE_IDS, KD_I64, 1, &M, l->ids) ||
        (masks && kd_h5_write(&h, "masks", KD_U8, 3, (int64_t[]){n, H, W}, masks)))
        kd_h5_abort(&h);
    else
        rc = kd_h5_commit(&h);
    free(c.boxes), free(c.scores), free(c.labels);
    return rc;
}

int kd_dets_write_json(const kd_detlist *l, const char *path)
{
    kd_file o;
    if (kd_file_open(&o, path))
        return -1;
    fputc('[', o.f);
    for (int64_t i = 0; i < l->n; i++) {
        const kd_cn_det *d = &l->det[i];
        fprintf(o.f, "%s\n{\"image_id\": %lld, \"category_id\": %d, \"bbox\": [%.9g, %.9g, %.9g, %.9g], \"score\": %.9g}",
                i ? "," : "", (long long)l->ids[i], d->cls, d->x, d->y, d->w, d->h, d->score);
    }
    fputs("]\n", o.f);
    if (ferror(o.f)) {
        kd_err_set("%s: write failed", path);
        kd_file_abort(&o);
        return -1;
    }
    return kd_file_commit(&o);
}

int kd_dets_write_stream(const kd_detlist *l, const char *path)
{
    columns c;
    if (split(l, &c))
        return -1;
    kd_frame f;
    kd_frame_init(&f);
    int64_t M = l->n;
    kd_tensor *t[4] = {kd_frame_add(&f, KD_NAME_BOXES, KD_F32, 2, (int64_t[]){M, 4}),
                       kd_frame_add(&f, KD_NAME_SCORES, KD_F32, 1, &M), kd_frame_add(&f, KD_NAME_LABELS, KD_I32, 1, &M),
                       kd_frame_add(&f, KD_NAME_IMAGE_IDS, KD_I64, 1, &M)};
    int rc = -1;
    kd_writer *w = NULL;
    if (t[0] && t[1] && t[2] && t[3]) {
        memcpy(t[0]->data, c.boxes, t[0]->nbytes), memcpy(t[1]->data, c.scores, t[1]->nbytes);
        memcpy(t[2]->data, c.labels, t[2]->nbytes), memcpy(t[3]->data, l->ids, t[3]->nbytes);
        if ((w = kd_writer_open(path, KD_W_DEFLATE))) {
            if (kd_writer_put(w, &f))
                kd_writer_abort(w);
            else
                rc = kd_writer_close(w);
        }
    }
    kd_frame_free(&f);
    free(c.boxes), free(c.scores), free(c.labels);
    return rc;
}
