#include "kd_aug_policy.h"

#include <math.h>
#include <string.h>

#include "kd_err.h"

static const char *const kind_names[] = {"none", "mocov2", "simclr", "crop-flip", "eval"};

const char *kd_aug_kind_name(kd_aug_kind k)
{
    return (unsigned)k < sizeof kind_names / sizeof *kind_names ? kind_names[k] : "?";
}

int kd_aug_kind_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof kind_names / sizeof *kind_names); i++)
        if (strcmp(s, kind_names[i]) == 0)
            return i;
    return -1;
}

void kd_aug_policy_init(kd_aug_policy *p, kd_aug_kind k, int oh, int ow, int oc)
{
    memset(p, 0, sizeof *p);
    p->kind = k;
    p->oh = oh;
    p->ow = ow;
    p->oc = oc;
    p->scale[0] = 0.08f;
    p->scale[1] = 1.0f;
    p->ratio[0] = 3.0f / 4.0f;
    p->ratio[1] = 4.0f / 3.0f;
    p->sigma[0] = 0.1f;
    p->sigma[1] = 2.0f;
    p->normalize = 1;
    for (int c = 0; c < 3; c++) {
        p->mean[c] = 0.0f;
        p->std[c] = 1.0f;
    }
    switch (k) {
    case KD_AUG_MOCOV2:
    case KD_AUG_SIMCLR: {
        float s = k == KD_AUG_MOCOV2 ? 0.4f : 0.8f;
        p->rrc = 1;
        p->scale[0] = k == KD_AUG_MOCOV2 ? 0.2f : 0.08f;
        p->jitter[0] = p->jitter[1] = p->jitter[2] = s;
        p->jitter[3] = s / 4.0f;
        p->jitter_p = 0.8f;
        p->gray_p = 0.2f;
        p->blur_p = 0.5f;
        p->flip_p = 0.5f;
        break;
    }
    case KD_AUG_CROPFLIP:
        p->pad = 4;
        p->flip_p = 0.5f;
        break;
    case KD_AUG_EVAL:
    case KD_AUG_NONE:
        break;
    }
}

static int check_p(const char *name, float v)
{
    if (!(v >= 0.0f && v <= 1.0f)) {
        kd_err_set("%s %g is not a probability in [0, 1]", name, v);
        return -1;
    }
    return 0;
}

static int check_range(const char *name, const float *r)
{
    if (!(r[0] > 0.0f && r[0] <= r[1] && isfinite(r[1]))) {
        kd_err_set("%s %g,%g: need 0 < min <= max", name, r[0], r[1]);
        return -1;
    }
    return 0;
}

int kd_aug_policy_check(const kd_aug_policy *p, int H, int W, int C)
{
    if (C != 1 && C != 3) {
        kd_err_set("images have %d channels; augment handles 1 (gray) or 3 (RGB)", C);
        return -1;
    }
    if (H < 1 || W < 1) {
        kd_err_set("images of %dx%d", H, W);
        return -1;
    }
    if (p->oc != 1 && p->oc != 3) {
        kd_err_set("output channels %d: need 1 or 3", p->oc);
        return -1;
    }
    if (p->oh < 1 || p->ow < 1 || p->oh > 4096 || p->ow > 4096) {
        kd_err_set("output size %dx%d outside 1..4096", p->oh, p->ow);
        return -1;
    }
    if (check_range("crop scale", p->scale) || check_range("crop ratio", p->ratio) ||
        check_range("blur sigma", p->sigma))
        return -1;
    if (p->sigma[1] > 40.0f) {
        kd_err_set("blur sigma %g larger than 40", p->sigma[1]);
        return -1;
    }
    static const char *const jn[] = {"brightness", "contrast", "saturation", "hue"};
    for (int i = 0; i < 4; i++)
        if (!(p->jitter[i] >= 0.0f && p->jitter[i] <= (i == 3 ? 0.5f : 1e6f))) {
            kd_err_set("jitter %s %g: need %s", jn[i], p->jitter[i], i == 3 ? "0 <= hue <= 0.5" : ">= 0");
            return -1;
        }
    if (check_p("jitter probability", p->jitter_p) || check_p("grayscale probability", p->gray_p) ||
        check_p("blur probability", p->blur_p) || check_p("flip probability", p->flip_p))
        return -1;
    if (p->pad < 0 || p->pad > 4096) {
        kd_err_set("padding %d outside 0..4096", p->pad);
        return -1;
    }
    if (p->kind == KD_AUG_CROPFLIP && (p->oh > H + 2 * p->pad || p->ow > W + 2 * p->pad)) {
        kd_err_set("crop size %dx%d is larger than the padded image %dx%d (pad %d)", p->oh, p->ow,
                   H + 2 * p->pad, W + 2 * p->pad, p->pad);
        return -1;
    }
    if (p->kind == KD_AUG_EVAL) {
        int s = p->resize ? p->resize : (p->oh > p->ow ? p->oh : p->ow), nh, nw;
        if (s < 1 || s > 8192) {
            kd_err_set("resize %d outside 1..8192", s);
            return -1;
        }
        kd_aug_resize_short(H, W, s, &nh, &nw);
        if (p->oh > nh || p->ow > nw || nw > 16384 || nh > 16384) {
            kd_err_set("crop size %dx%d is larger than the resized image %dx%d", p->oh, p->ow, nh, nw);
            return -1;
        }
    }
    for (int c = 0; c < p->oc; c++)
        if (!(p->std[c] > 0.0f) || !isfinite(p->mean[c])) {
            kd_err_set("normalisation of channel %d: mean %g std %g (std must be > 0)", c, p->mean[c],
                       p->std[c]);
            return -1;
        }
    return 0;
}

kd_box kd_aug_rrc_box(kd_rng *r, int H, int W, const float scale[2], const float ratio[2])
{
    const double area = (double)H * W;
    const double lr0 = log((double)ratio[0]), lr1 = log((double)ratio[1]);
    kd_box b;
    for (int attempt = 0; attempt < 10; attempt++) {
        double ta = area * (scale[0] + (scale[1] - scale[0]) * kd_rng_uniform_d(r));
        double ar = exp(lr0 + (lr1 - lr0) * kd_rng_uniform_d(r));
        /* Python's round(): half to even, which nearbyint does by default */
        int w = (int)nearbyint(sqrt(ta * ar));
        int h = (int)nearbyint(sqrt(ta / ar));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            b.top = (int)kd_rng_below(r, (uint64_t)(H - h + 1));
            b.left = (int)kd_rng_below(r, (uint64_t)(W - w + 1));
            b.h = h;
            b.w = w;
            return b;
        }
    }
    double in_ratio = (double)W / H;
    if (in_ratio < ratio[0]) {
        b.w = W;
        b.h = (int)nearbyint(W / (double)ratio[0]);
    } else if (in_ratio > ratio[1]) {
        b.h = H;
        b.w = (int)nearbyint(H * (double)ratio[1]);
    } else {
        b.w = W;
        b.h = H;
    }
    if (b.h > H) /* rounding cannot push past the image, but stay safe */
        b.h = H;
    if (b.w > W)
        b.w = W;
    b.top = (H - b.h) / 2;
    b.left = (W - b.w) / 2;
    return b;
}

void kd_aug_sample(const kd_aug_policy *p, kd_rng *r, int H, int W, kd_aug_params *v)
{
    memset(v, 0, sizeof *v);
    switch (p->kind) {
    case KD_AUG_MOCOV2:
    case KD_AUG_SIMCLR:
        v->box = kd_aug_rrc_box(r, H, W, p->scale, p->ratio);
        v->resize = 1;
        break;
    case KD_AUG_CROPFLIP:
        v->box.top = (int)kd_rng_below(r, (uint64_t)(H + 2 * p->pad - p->oh + 1)) - p->pad;
        v->box.left = (int)kd_rng_below(r, (uint64_t)(W + 2 * p->pad - p->ow + 1)) - p->pad;
        v->box.h = p->oh;
        v->box.w = p->ow;
        break;
    case KD_AUG_EVAL: {
        int s = p->resize ? p->resize : (p->oh > p->ow ? p->oh : p->ow), nh, nw;
        kd_aug_resize_short(H, W, s, &nh, &nw);
        if (nh != H || nw != W) {
            v->pre_h = nh;
            v->pre_w = nw;
        }
        v->box = kd_aug_center_box(nh, nw, p->oh, p->ow);
        break;
    }
    case KD_AUG_NONE: {
        kd_box whole = {0, 0, H, W};
        v->box = whole;
        v->resize = H != p->oh || W != p->ow;
        break;
    }
    }
    if (p->rrc && p->kind != KD_AUG_MOCOV2 && p->kind != KD_AUG_SIMCLR) {
        v->box = kd_aug_rrc_box(r, H, W, p->scale, p->ratio);
        v->resize = 1;
        v->pre_h = v->pre_w = 0;
    }
    /* Colour jitter: torchvision's get_params draws a random order, then
     * each factor uniformly in [max(0, 1 - s), 1 + s] (hue in [-s, s]). */
    float u = kd_rng_uniform(r);
    v->jitter = u < p->jitter_p;
    int64_t perm[4];
    kd_rng_permute(r, perm, 4);
    for (int i = 0; i < 4; i++)
        v->order[i] = (int)perm[i];
    for (int i = 0; i < 3; i++) {
        float s = p->jitter[i], lo = 1.0f - s > 0.0f ? 1.0f - s : 0.0f;
        v->factor[i] = kd_rng_range(r, lo, 1.0f + s);
    }
    v->factor[3] = kd_rng_range(r, -p->jitter[3], p->jitter[3]);
    v->gray = kd_rng_uniform(r) < p->gray_p;
    v->blur = kd_rng_uniform(r) < p->blur_p;
    v->sigma = kd_rng_range(r, p->sigma[0], p->sigma[1]);
    v->ksize = kd_aug_blur_ksize(v->sigma, p->oh, p->ow);
    v->flip = kd_rng_uniform(r) < p->flip_p;
}

size_t kd_aug_scratch_floats(const kd_aug_policy *p, int H, int W)
{
    size_t n = (size_t)p->oc * H * W + (size_t)p->oc * p->oh * p->ow;
    if (p->kind == KD_AUG_EVAL) {
        int s = p->resize ? p->resize : (p->oh > p->ow ? p->oh : p->ow), nh, nw;
        kd_aug_resize_short(H, W, s, &nh, &nw);
        n += (size_t)p->oc * nh * nw;
    }
    return n;
}

void kd_aug_apply(const kd_aug_policy *p, const kd_aug_params *v, const uint8_t *src, int H, int W, int C,
                  float *dst, float *scratch)
{
    const int oc = p->oc, oh = p->oh, ow = p->ow, n = oh * ow;
    float *a = scratch;
    /* The common case in one pass instead of two, with the flip folded in:
     * the colour ops are per pixel and the blur is symmetric, so mirroring
     * first only changes the order of float sums (contrast's mean, the
     * blur's taps), well inside the fixtures' tolerance. */
    int flip = v->flip;
    if (C == oc && v->resize && v->pre_h == 0 &&
        kd_aug_resized_crop_u8(src, C, H, W, v->box, dst, oh, ow, flip) == 0) {
        flip = 0;
        goto color;
    }
    kd_aug_from_u8(src, H, W, C, a, oc);
    if (v->pre_h > 0) {
        float *b = scratch + (size_t)oc * H * W;
        kd_box whole = {0, 0, H, W};
        kd_aug_resized_crop(a, oc, H, W, whole, b, v->pre_h, v->pre_w);
        a = b;
        H = v->pre_h;
        W = v->pre_w;
    }
    if (v->resize)
        kd_aug_resized_crop(a, oc, H, W, v->box, dst, oh, ow);
    else
        kd_aug_crop(a, oc, H, W, v->box, dst);
color:
    if (v->jitter)
        for (int i = 0; i < 4; i++) {
            switch (v->order[i]) {
            case 0:
                if (p->jitter[0] > 0.0f)
                    kd_aug_brightness(dst, oc, n, v->factor[0]);
                break;
            case 1:
                if (p->jitter[1] > 0.0f)
                    kd_aug_contrast(dst, oc, n, v->factor[1]);
                break;
            case 2:
                if (p->jitter[2] > 0.0f)
                    kd_aug_saturation(dst, oc, n, v->factor[2]);
                break;
            default:
                if (p->jitter[3] > 0.0f)
                    kd_aug_hue(dst, oc, n, v->factor[3]);
                break;
            }
        }
    if (v->gray)
        kd_aug_grayscale(dst, oc, n);
    if (v->blur)
        kd_aug_blur(dst, oc, oh, ow, v->ksize, v->sigma, scratch);
    if (flip)
        kd_aug_hflip(dst, oc, oh, ow);
    if (p->normalize)
        kd_aug_normalize(dst, oc, n, p->mean, p->std);
}

void kd_aug_view(const kd_aug_policy *p, kd_rng *r, const uint8_t *src, int H, int W, int C, float *dst,
                 float *scratch)
{
    kd_aug_params v;
    kd_aug_sample(p, r, H, W, &v);
    kd_aug_apply(p, &v, src, H, W, C, dst, scratch);
}
