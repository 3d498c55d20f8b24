/* Synthetic scenes: the rules are in lib/kd_scenes.h. */
#include "kd_scenes.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kd_aug.h"
#include "kd_err.h"
#include "kd_rng.h"

typedef struct {
    float x, y, w, h;
} box4;

static double iou(box4 a, box4 b)
{
    double iw = fmin(a.x + a.w, b.x + b.w) - fmax(a.x, b.x), ih = fmin(a.y + a.h, b.y + b.h) - fmax(a.y, b.y);
    if (iw <= 0 || ih <= 0)
        return 0;
    double in = iw * ih;
    return in / ((double)a.w * a.h + (double)b.w * b.h - in);
}

/* Per-thread work space. */
typedef struct {
    float *fl;      /* [C, oh, ow] the resampled object */
    uint8_t *obj;   /* [oh, ow, C] the same in u8 */
    uint8_t *inst;  /* [H, W] which placed object (1-based) owns each pixel */
} work;

/* One scene into img [H,W,C] / mask [H,W]; its boxes (x, y, w, h) and
 * labels into boxes / lb (at most max_objects); returns how many were
 * placed. */
static int scene(const kd_dataset *src, const kd_scenes_opts *o, int64_t i, work *ws, uint8_t *img, uint8_t *mask,
                 float *boxes, int32_t *lb, int64_t *dropped)
{
    box4 bx[KD_SCENES_MAX_OBJECTS];
    const int H = o->h, W = o->w, C = src->c, sh = src->h, sw = src->w;
    kd_rng r = kd_rng_make(o->seed, KD_SCENES_KEY, (uint64_t)i);
    memset(img, 0, (size_t)H * W * C);
    memset(mask, 0, (size_t)H * W);
    memset(ws->inst, 0, (size_t)H * W);
    int k = o->min_objects + (int)kd_rng_below(&r, (uint64_t)(o->max_objects - o->min_objects + 1));
    int placed = 0;
    int64_t orig[KD_SCENES_MAX_OBJECTS], vis[KD_SCENES_MAX_OBJECTS], cov[KD_SCENES_MAX_OBJECTS];
    for (int j = 0; j < k; j++) {
        int ok = 0;
        for (int t = 0; t < KD_SCENES_TRIES && !ok; t++) {
            int64_t idx = (int64_t)kd_rng_below(&r, (uint64_t)src->n);
            float s = kd_rng_range(&r, o->scale_lo, o->scale_hi);
            int oh = (int)lrintf(s * sh), ow = (int)lrintf(s * sw);
            oh = oh < 1 ? 1 : oh > H ? H : oh;
            ow = ow < 1 ? 1 : ow > W ? W : ow;
            int y0 = (int)kd_rng_below(&r, (uint64_t)(H - oh + 1)), x0 = (int)kd_rng_below(&r, (uint64_t)(W - ow + 1));
            kd_aug_resized_crop_u8(src->images + (size_t)idx * sh * sw * C, C, sh, sw, (kd_box){0, 0, sh, sw}, ws->fl,
                                   oh, ow, 0);
            int minx = ow, miny = oh, maxx = -1, maxy = -1;
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    int fg = 0;
                    for (int c = 0; c < C; c++) {
                        float v = ws->fl[((size_t)c * oh + y) * ow + x] * 255.0f;
                        uint8_t u = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : lrintf(v));
                        ws->obj[((size_t)y * ow + x) * C + c] = u;
                        fg |= u >= o->fg_threshold;
                    }
                    if (fg) {
                        minx = x < minx ? x : minx, maxx = x > maxx ? x : maxx;
                        miny = y < miny ? y : miny, maxy = y > maxy ? y : maxy;
                    }
                }
            if (maxx < 0)
                continue;
            box4 b = {(float)(x0 + minx), (float)(y0 + miny), (float)(maxx - minx + 1), (float)(maxy - miny + 1)};
            int far = 1;
            for (int e = 0; e < placed && far; e++)
                far = iou(b, bx[e]) <= o->max_overlap;
            if (!far)
                continue;
            /* how much of each earlier object's visible foreground this one would cover */
            memset(cov, 0, sizeof(int64_t) * (size_t)placed);
            int64_t nfg = 0;
            for (int y = miny; y <= maxy; y++)
                for (int x = minx; x <= maxx; x++) {
                    const uint8_t *p = ws->obj + ((size_t)y * ow + x) * C;
                    int fg = 0;
                    for (int c = 0; c < C; c++)
                        fg |= p[c] >= o->fg_threshold;
                    if (!fg)
                        continue;
                    nfg++;
                    uint8_t e = ws->inst[(size_t)(y0 + y) * W + x0 + x];
                    if (e)
                        cov[e - 1]++;
                }
            for (int e = 0; e < placed && far; e++)
                far = 2 * (vis[e] - cov[e]) >= orig[e];
            if (!far)
                continue;
            for (int e = 0; e < placed; e++)
                vis[e] -= cov[e];
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    const uint8_t *p = ws->obj + ((size_t)y * ow + x) * C;
                    size_t q = (size_t)(y0 + y) * W + x0 + x;
                    uint8_t *d = img + q * C;
                    int fg = 0;
                    for (int c = 0; c < C; c++)
                        fg |= p[c] >= o->fg_threshold;
                    if (fg) {
                        memcpy(d, p, (size_t)C);
                        mask[q] = (uint8_t)(src->labels[idx] + 1);
                        ws->inst[q] = (uint8_t)(placed + 1);
                    } else
                        for (int c = 0; c < C; c++)
                            d[c] = p[c] > d[c] ? p[c] : d[c];
                }
            orig[placed] = vis[placed] = nfg;
            bx[placed] = b;
            lb[placed] = src->labels[idx];
            placed++;
            ok = 1;
        }
        if (!ok)
            (*dropped)++;
    }
    for (int e = 0; e < placed; e++) {
        boxes[4 * e] = bx[e].x, boxes[4 * e + 1] = bx[e].y;
        boxes[4 * e + 2] = bx[e].w, boxes[4 * e + 3] = bx[e].h;
    }
    return placed;
}

int kd_scenes_make(const kd_dataset *src, int64_t n, const kd_scenes_opts *o, kd_dataset *out, int64_t *dropped)
{
    memset(out, 0, sizeof *out);
    *dropped = 0;
    const int H = o->h, W = o->w, C = src->c;
    if (!src->labels || src->n < 1) {
        kd_err_set("%s: scenes need labelled objects", src->source);
        return -1;
    }
    if (src->nclasses > 254) {
        kd_err_set("%s: %d classes do not fit the u8 masks (at most 254)", src->source, src->nclasses);
        return -1;
    }
    if (C > 3) {
        kd_err_set("%s: scenes of %d-channel objects are not supported", src->source, C);
        return -1;
    }
    int mh = (int)lrintf(o->scale_hi * src->h), mw = (int)lrintf(o->scale_hi * src->w);
    if (mh > H || mw > W) {
        kd_err_set("%s: --scale %g makes a %dx%d object %dx%d, larger than the %dx%d canvas", src->source,
                   o->scale_hi, src->h, src->w, mh, mw, H, W);
        return -1;
    }
    const int K = o->max_objects;
    out->n = n, out->h = H, out->w = W, out->c = C;
    out->nclasses = src->nclasses, out->classes = src->classes, out->source = src->source;
    out->images = malloc((size_t)n * H * W * C);
    out->masks = malloc((size_t)n * H * W);
    out->boxes = malloc(sizeof(float) * 4 * (size_t)(n * K + 1));
    out->box_labels = malloc(sizeof(int32_t) * (size_t)(n * K + 1));
    out->box_offsets = malloc(sizeof(int64_t) * (size_t)(n + 1));
    int *count = malloc(sizeof(int) * (size_t)n);
    if (!out->images || !out->masks || !out->boxes || !out->box_labels || !out->box_offsets || !count) {
        free(count);
        kd_scenes_free(out);
        kd_err_set("%s: out of memory for %lld scenes", src->source, (long long)n);
        return -1;
    }
    int oom = 0;
    int64_t drop = 0;
    const size_t fl = (size_t)C * H * W;
#pragma omp parallel num_threads(o->threads > 0 ? o->threads : omp_get_max_threads()) reduction(+ : drop)
    {
        work ws = {malloc(sizeof(float) * fl), malloc(fl), malloc((size_t)H * W)};
        if (!ws.fl || !ws.obj || !ws.inst) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < n; i++) {
            int bad;
#pragma omp atomic read
            bad = oom;
            if (bad)
                continue;
            /* scene i's boxes go to slots i*K.. and are packed below */
            count[i] = scene(src, o, i, &ws, out->images + (size_t)i * H * W * C, out->masks + (size_t)i * H * W,
                             out->boxes + 4 * (size_t)i * K, out->box_labels + (size_t)i * K, &drop);
        }
        free(ws.fl), free(ws.obj), free(ws.inst);
    }
    if (oom) {
        free(count);
        kd_scenes_free(out);
        kd_err_set("%s: out of memory", src->source);
        return -1;
    }
    int64_t m = 0;
    out->box_offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        memmove(out->boxes + 4 * m, out->boxes + 4 * (size_t)i * K, sizeof(float) * 4 * (size_t)count[i]);
        memmove(out->box_labels + m, out->box_labels + (size_t)i * K, sizeof(int32_t) * (size_t)count[i]);
        m += count[i];
        out->box_offsets[i + 1] = m;
    }
    out->nboxes = m;
    free(count);
    *dropped = drop;
    return 0;
}

void kd_scenes_free(kd_dataset *out)
{
    free(out->images), free(out->masks), free(out->boxes), free(out->box_labels), free(out->box_offsets);
    out->images = out->masks = NULL;
    out->boxes = NULL;
    out->box_labels = NULL;
    out->box_offsets = NULL;
}
