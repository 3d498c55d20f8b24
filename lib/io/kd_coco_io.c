/* Readers for kd_coco: COCO JSON through jansson, kdpipe HDF5 files and
 * tensor streams. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kd_coco.h"
#include "kd_dataset.h"
#include "kd_err.h"
#include "kd_file.h"
#include "kd_h5.h"
#include "kd_stream.h"

static int get_i64(json_t *o, const char *key, int64_t *v, int required)
{
    json_t *x = json_object_get(o, key);
    if (!x) {
        if (required)
            kd_err_set("missing \"%s\"", key);
        return required ? -1 : 1;
    }
    /* pycocotools takes booleans (iscrowd: true) and whole reals as ids;
     * a real beyond int64 would be undefined behaviour to convert */
    if (json_is_integer(x))
        *v = json_integer_value(x);
    else if (json_is_boolean(x))
        *v = json_is_true(x);
    else if (json_is_real(x) && json_real_value(x) == floor(json_real_value(x)) &&
             fabs(json_real_value(x)) < 9.2e18)
        *v = (int64_t)json_real_value(x);
    else {
        kd_err_set("\"%s\" is not an integer", key);
        return -1;
    }
    return 0;
}

static int get_num(json_t *o, const char *key, double *v, int required)
{
    json_t *x = json_object_get(o, key);
    if (!x) {
        if (required)
            kd_err_set("missing \"%s\"", key);
        return required ? -1 : 1;
    }
    if (!json_is_number(x)) {
        kd_err_set("\"%s\" is not a number", key);
        return -1;
    }
    *v = json_number_value(x);
    if (!isfinite(*v)) {
        kd_err_set("\"%s\" is not finite", key);
        return -1;
    }
    return 0;
}

static int get_bbox(json_t *o, kd_coco_box *b)
{
    json_t *x = json_object_get(o, "bbox");
    if (!json_is_array(x) || json_array_size(x) != 4) {
        kd_err_set("\"bbox\" is not a list of 4 numbers");
        return -1;
    }
    double v[4];
    for (int i = 0; i < 4; i++) {
        json_t *e = json_array_get(x, (size_t)i);
        if (!json_is_number(e) || !isfinite(json_number_value(e))) {
            kd_err_set("\"bbox\" is not a list of 4 finite numbers");
            return -1;
        }
        v[i] = json_number_value(e);
    }
    if (v[2] < 0 || v[3] < 0) {
        kd_err_set("\"bbox\" has a negative size (%g x %g)", v[2], v[3]);
        return -1;
    }
    b->x = v[0], b->y = v[1], b->w = v[2], b->h = v[3];
    return 0;
}

static json_t *load(const char *path)
{
    json_error_t e;
    /* "-" is standard input, as everywhere in kdpipe */
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    struct stat st;
    if (f && f != stdin && (fstat(fileno(f), &st) || S_ISDIR(st.st_mode))) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : errno;
        fclose(f);
        f = NULL;
    }
    if (!f) {
        kd_err_set("%s: %s", path, strerror(errno));
        return NULL;
    }
    json_t *j = json_loadf(f, 0, &e);
    if (f != stdin)
        fclose(f);
    if (!j)
        kd_err_set("%s: line %d column %d: %s", path, e.line, e.column, e.text);
    return j;
}

int kd_coco_load_gt_json(kd_coco *c, const char *path)
{
    json_t *j = load(path);
    if (!j)
        return -1;
    json_t *imgs = json_object_get(j, "images"), *anns = json_object_get(j, "annotations"),
           *cats = json_object_get(j, "categories");
    if (!json_is_array(imgs) || !json_is_array(anns) || !json_is_array(cats)) {
        kd_err_set("%s: not COCO annotations (needs \"images\", \"annotations\" and \"categories\" lists)", path);
        json_decref(j);
        return -1;
    }
    c->nimages = (int)json_array_size(imgs);
    c->ncats = (int)json_array_size(cats);
    c->ngt = (int64_t)json_array_size(anns);
    c->images = malloc(sizeof(int64_t) * (size_t)(c->nimages + 1));
    c->cats = malloc(sizeof(int64_t) * (size_t)(c->ncats + 1));
    c->catnames = calloc((size_t)c->ncats + 1, sizeof(char *));
    c->gt = calloc((size_t)c->ngt + 1, sizeof(kd_coco_box));
    size_t i;
    json_t *o;
    json_array_foreach(imgs, i, o) if (get_i64(o, "id", &c->images[i], 1)) goto bad_img;
    json_array_foreach(cats, i, o)
    {
        if (get_i64(o, "id", &c->cats[i], 1))
            goto bad_cat;
        json_t *n = json_object_get(o, "name");
        c->catnames[i] = strdup(json_is_string(n) ? json_string_value(n) : "");
    }
    json_array_foreach(anns, i, o)
    {
        kd_coco_box *b = &c->gt[i];
        int64_t crowd = 0;
        if (get_i64(o, "image_id", &b->image, 1) || get_i64(o, "category_id", &b->cat, 1) || get_bbox(o, b) ||
            get_i64(o, "id", &b->id, 0) < 0 || get_i64(o, "iscrowd", &crowd, 0) < 0)
            goto bad_ann;
        int ra = get_num(o, "area", &b->area, 0);
        if (ra < 0)
            goto bad_ann;
        if (ra == 1)
            b->area = b->w * b->h;
        if (!json_object_get(o, "id"))
            b->id = (int64_t)i + 1;
        b->crowd = crowd != 0;
    }
    json_decref(j);
    return 0;
bad_img:
    kd_err_prefix("%s: image %zu", path, i);
    json_decref(j);
    return -1;
bad_cat:
    kd_err_prefix("%s: category %zu", path, i);
    json_decref(j);
    return -1;
bad_ann:
    kd_err_prefix("%s: annotation %zu", path, i);
    json_decref(j);
    return -1;
}

/* Takes j (decref'd here). */
static int dets_from_json(kd_coco *c, json_t *j, const char *path)
{
    if (!json_is_array(j)) {
        kd_err_set("%s: not a COCO results list", path);
        json_decref(j);
        return -1;
    }
    c->ndt = (int64_t)json_array_size(j);
    c->dt = calloc((size_t)c->ndt + 1, sizeof(kd_coco_box));
    if (!c->dt) {
        kd_err_set("%s: out of memory", path);
        json_decref(j);
        return -1;
    }
    size_t i;
    json_t *o;
    json_array_foreach(j, i, o)
    {
        kd_coco_box *b = &c->dt[i];
        if (!json_is_object(o)) {
            kd_err_set("%s: result %zu is not an object", path, i);
            json_decref(j);
            return -1;
        }
        if (get_i64(o, "image_id", &b->image, 1) || get_i64(o, "category_id", &b->cat, 1) || get_bbox(o, b) ||
            get_num(o, "score", &b->score, 1)) {
            kd_err_prefix("%s: result %zu", path, i);
            json_decref(j);
            return -1;
        }
        b->area = b->w * b->h; /* as pycocotools' loadRes: the given "area" is replaced */
        b->id = (int64_t)i + 1;
    }
    json_decref(j);
    return 0;
}

int kd_coco_load_dets_json(kd_coco *c, const char *path)
{
    json_t *j = load(path);
    return j ? dets_from_json(c, j, path) : -1;
}

/* A detection dataset file (kd_dataset_read_boxes: its boxes checked
 * against the images' size): image ids are rows 0..N-1; categories are
 * 0..K-1, K the number of class names or, without names, the largest label
 * + 1 (named from the classes attribute). */
int kd_coco_load_gt_h5(kd_coco *c, const char *path)
{
    kd_dataset_info info;
    kd_dataset_file *f = kd_dataset_open(path, &info);
    if (!f)
        return -1;
    kd_boxes b;
    char **names = NULL;
    int nn = 0, rc = -1;
    if (kd_dataset_read_boxes(f, &b))
        goto out;
    if ((nn = kd_dataset_classes(f, &names)) < 0)
        goto out;
    int maxl = -1;
    for (int64_t q = 0; q < b.m; q++)
        maxl = b.labels[q] > maxl ? b.labels[q] : maxl;
    c->ncats = nn > maxl ? nn : maxl + 1;
    c->nimages = (int)b.n;
    c->ngt = b.m;
    c->cats = malloc(sizeof(int64_t) * (size_t)(c->ncats + 1));
    c->catnames = calloc((size_t)c->ncats + 1, sizeof(char *));
    c->images = malloc(sizeof(int64_t) * (size_t)(b.n + 1));
    c->gt = calloc((size_t)b.m + 1, sizeof(kd_coco_box));
    if (!c->cats || !c->catnames || !c->images || !c->gt) {
        kd_err_set("%s: out of memory for %lld boxes", path, (long long)b.m);
        goto out;
    }
    for (int k = 0; k < c->ncats; k++) {
        c->cats[k] = k;
        c->catnames[k] = strdup(k < nn ? names[k] : "");
    }
    for (int64_t i = 0; i < b.n; i++) {
        c->images[i] = i;
        for (int64_t q = b.offsets[i]; q < b.offsets[i + 1]; q++) {
            kd_coco_box *g = &c->gt[q];
            g->x = b.boxes[4 * q], g->y = b.boxes[4 * q + 1], g->w = b.boxes[4 * q + 2], g->h = b.boxes[4 * q + 3];
            g->area = g->w * g->h;
            g->image = i;
            g->cat = b.labels[q];
            g->id = q + 1;
            g->crowd = b.crowd[q] != 0;
        }
    }
    rc = 0;
out:
    kd_strv_free(names, nn > 0 ? nn : 0);
    kd_boxes_free(&b);
    kd_dataset_close(f);
    return rc;
}

/* Appends M detections (boxes xywh [M,4], scores, labels, image ids),
 * refusing negative or non-finite sizes and scores; "what" names the
 * detection in messages (its position is first + q). */
static int add_dets(kd_coco *c, const float *boxes, const float *sc, const int32_t *lab, const int64_t *img,
                    int64_t M, const char *what)
{
    kd_coco_box *dt = realloc(c->dt, sizeof(kd_coco_box) * (size_t)(c->ndt + M + 1));
    if (!dt) {
        kd_err_set("%s: out of memory for %lld detections", what, (long long)(c->ndt + M));
        return -1;
    }
    c->dt = dt;
    for (int64_t q = 0; q < M; q++) {
        kd_coco_box *b = &c->dt[c->ndt];
        memset(b, 0, sizeof *b);
        b->x = boxes[4 * q], b->y = boxes[4 * q + 1], b->w = boxes[4 * q + 2], b->h = boxes[4 * q + 3];
        if (!(b->w >= 0 && b->h >= 0) || !isfinite(b->x) || !isfinite(b->y) || !isfinite(b->w) || !isfinite(b->h)) {
            kd_err_set("%s: detection %lld has a negative or non-finite size", what, (long long)c->ndt);
            return -1;
        }
        if (!isfinite(sc[q])) {
            kd_err_set("%s: detection %lld has a non-finite score", what, (long long)c->ndt);
            return -1;
        }
        b->score = sc[q];
        b->area = b->w * b->h;
        b->image = img[q];
        b->cat = lab[q];
        b->id = ++c->ndt;
    }
    return 0;
}

int kd_coco_load_dets_h5(kd_coco *c, const char *path)
{
    kd_h5 h;
    if (kd_h5_open(&h, path, "detections"))
        return -1;
    int64_t bd[KD_MAX_RANK];
    int rc = -1;
    if (kd_h5_expect(&h, "boxes", 2, (int64_t[]){-1, 4}, bd) || kd_h5_expect(&h, "scores", 1, (int64_t[]){bd[0]}, NULL) ||
        kd_h5_expect(&h, "labels", 1, (int64_t[]){bd[0]}, NULL) ||
        kd_h5_expect(&h, "image_ids", 1, (int64_t[]){bd[0]}, NULL)) {
        kd_h5_close(&h);
        return -1;
    }
    int64_t M = bd[0];
    float *boxes = malloc(sizeof(float) * (size_t)(4 * M + 4)), *sc = malloc(sizeof(float) * (size_t)(M + 1));
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)(M + 1));
    int64_t *img = malloc(sizeof(int64_t) * (size_t)(M + 1));
    if (!boxes || !sc || !lab || !img || kd_h5_read(&h, "boxes", KD_F32, 0, M, boxes) ||
        kd_h5_read(&h, "scores", KD_F32, 0, M, sc) || kd_h5_read(&h, "labels", KD_I32, 0, M, lab) ||
        kd_h5_read(&h, "image_ids", KD_I64, 0, M, img))
        goto out;
    rc = add_dets(c, boxes, sc, lab, img, M, path);
out:
    free(boxes), free(sc), free(lab), free(img);
    kd_h5_close(&h);
    return rc;
}

/* A tensor stream: every frame holds boxes f32 [M,4] (xywh), scores f32
 * [M], labels i32 [M] and image_ids i64 or i32 [M]; frames concatenate. */
static int load_dets_stream(kd_coco *c, kd_reader *r, const char *path)
{
    kd_frame f;
    kd_frame_init(&f);
    int rc, bad = 0;
    long k = 0;
    int64_t *img = NULL;
    c->dt = calloc(1, sizeof(kd_coco_box));
    if (!c->dt) {
        kd_err_set("%s: out of memory", path);
        bad = 1;
    }
    while (!bad && (rc = kd_reader_next(r, &f)) == 1) {
        kd_tensor *bx = kd_frame_need(&f, "boxes", KD_F32, 2), *sc = kd_frame_need(&f, "scores", KD_F32, 1),
                  *lb = kd_frame_need(&f, "labels", KD_I32, 1), *id = kd_frame_get(&f, "image_ids");
        char what[64];
        snprintf(what, sizeof what, "frame %ld", k++);
        if (!bx || !sc || !lb) {
            kd_err_prefix("%s: %s", path, what);
            bad = 1;
            break;
        }
        int64_t M = bx->dims[0];
        if (!id || id->rank != 1 || (id->dtype != KD_I64 && id->dtype != KD_I32) || bx->dims[1] != 4 ||
            sc->dims[0] != M || lb->dims[0] != M || id->dims[0] != M) {
            kd_err_set("%s: %s: needs boxes f32 [M,4], scores f32 [M], labels i32 [M], image_ids i64 or i32 [M]", path,
                       what);
            bad = 1;
            break;
        }
        int64_t *ni = realloc(img, sizeof(int64_t) * (size_t)(M + 1));
        if (!ni) {
            kd_err_set("%s: out of memory", path);
            bad = 1;
            break;
        }
        img = ni;
        for (int64_t q = 0; q < M; q++)
            img[q] = id->dtype == KD_I64 ? ((const int64_t *)id->data)[q] : ((const int32_t *)id->data)[q];
        char ctx[1100];
        snprintf(ctx, sizeof ctx, "%s: %s", path, what);
        bad = add_dets(c, bx->data, sc->data, lb->data, img, M, ctx) != 0;
    }
    if (!bad && rc < 0)
        bad = 1;
    free(img);
    kd_frame_free(&f);
    return bad ? -1 : 0;
}

/* The detections' format from their first bytes: HDF5, a kdpipe stream
 * ("KDT\n"), else a COCO results JSON list.  Standard input is read whole
 * first, so that any of the three can come through a pipe. */
int kd_coco_load_dets(kd_coco *c, const char *path)
{
    static const unsigned char hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char *buf = NULL;
    size_t len = 0;
    if (strcmp(path, "-") != 0) {
        unsigned char head[8] = {0};
        FILE *f = fopen(path, "rb");
        if (!f) {
            kd_err_set("%s: %s", path, strerror(errno));
            return -1;
        }
        size_t n = fread(head, 1, sizeof head, f);
        fclose(f);
        if (n >= 4 && !memcmp(head, "KDT\n", 4)) {
            kd_reader *r = kd_reader_open(path);
            if (!r)
                return -1;
            int rc = load_dets_stream(c, r, path);
            kd_reader_close(r);
            return rc;
        }
        return kd_h5_is_hdf5(path) ? kd_coco_load_dets_h5(c, path) : kd_coco_load_dets_json(c, path);
    }
    if (kd_file_slurp(path, &buf, &len))
        return -1;
    int rc = -1;
    if (len >= 8 && !memcmp(buf, hdf5_sig, 8))
        kd_err_set("-: an HDF5 file cannot be read from standard input; name the file");
    else if (len >= 4 && !memcmp(buf, "KDT\n", 4)) {
        FILE *mf = fmemopen(buf, len, "rb");
        kd_reader *r = mf ? kd_reader_fopen(mf, "-") : NULL;
        if (r) {
            rc = load_dets_stream(c, r, path);
            kd_reader_close(r);
        } else
            kd_err_set("-: cannot read the stream");
        if (mf)
            fclose(mf);
    } else {
        json_error_t e;
        json_t *j = json_loadb((const char *)buf, len, 0, &e);
        if (!j)
            kd_err_set("%s: line %d column %d: %s", path, e.line, e.column, e.text);
        else
            rc = dets_from_json(c, j, path);
    }
    free(buf);
    return rc;
}
