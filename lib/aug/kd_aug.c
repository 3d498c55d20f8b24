/* The pixel loops below are written to be vectorised (selects instead of
 * branches, restrict pointers); -O2's cheap cost model leaves most of them
 * scalar, so this file asks for -O3.  No fast-math: results must stay those
 * of torchvision's float arithmetic. */
#pragma GCC optimize("O3", "no-trapping-math")

#include "kd_aug.h"
#include "kd_layers.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma, as PIL's "L"). */
#define LUMA_R 0.2989f
#define LUMA_G 0.587f
#define LUMA_B 0.114f

/* GCC/Clang vector extension: 16 floats, one AVX-512 register, two AVX
 * ones, four SSE ones.  Loads and stores go through an unaligned, aliasing
 * variant of the type (no function takes or returns a vector: that would
 * change the ABI between -march settings). */
typedef float v16f __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
#define LD16(p) ((v16f) * (const v16u *)(const void *)(p))
#define ST16(p, v) (*(v16u *)(void *)(p) = (v))

static inline float clamp01(float x)
{
    return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
}

/* x / 255 for every byte value, exactly as torch computes img.float() / 255 */
static float u8_lut[256];
static void lut_init(void)
{
    for (int v = 0; v < 256; v++)
        u8_lut[v] = (float)v / 255.0f;
}
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

void kd_aug_from_u8(const uint8_t *src, int H, int W, int C, float *dst, int oc)
{
    const int n = H * W;
    pthread_once(&lut_once, lut_init);
    const float *lut = u8_lut;
    if (C == oc) {
        for (int c = 0; c < C; c++) {
            float *restrict d = dst + (size_t)c * n;
            const uint8_t *restrict s = src + c;
            for (int i = 0; i < n; i++)
                d[i] = lut[s[(size_t)i * C]];
        }
        return;
    }
    if (C == 1) { /* 1 -> 3 */
        for (int i = 0; i < n; i++)
            dst[i] = dst[n + i] = dst[2 * n + i] = lut[src[i]];
        return;
    }
    for (int i = 0; i < n; i++) { /* 3 -> 1 */
        const uint8_t *p = src + (size_t)i * 3;
        dst[i] = LUMA_R * lut[p[0]] + LUMA_G * lut[p[1]] + LUMA_B * lut[p[2]];
    }
}

/* ---- bilinear resize (torch upsample_bilinear2d, align_corners=False) ---- */

/* Separable: each needed source row is interpolated horizontally once
 * (h = xl0*a + xl1*b), then output rows blend two such rows vertically
 * (yl0*h0 + yl1*h1) — the same expressions ATen evaluates per pixel, so the
 * results are the same, at a fraction of the gathers.  The source is either
 * float planar (f32) or u8 interleaved with C channels (u8, converted by the
 * x/255 table on the fly). */
static void resized_crop_any(const float *f32, const uint8_t *u8, int C, int H, int W, kd_box box, float *dst,
                             int oh, int ow, int hflip)
{
    const float sh = (float)box.h / (float)oh, sw = (float)box.w / (float)ow;
    int xi[KD_AUG_MAXW], xs[KD_AUG_MAXW];
    float xl0[KD_AUG_MAXW], xl1[KD_AUG_MAXW];
    static _Thread_local float hbuf[2][3][KD_AUG_MAXW];
    for (int x = 0; x < ow; x++) {
        kd_bilinear_tap(sw, x, box.w, &xi[x], &xs[x], &xl0[x], &xl1[x]);
        xi[x] += box.left;
        xs[x] += xi[x];
    }
    if (hflip) /* output column x takes the taps of column ow-1-x */
        for (int a = 0, b = ow - 1; a < b; a++, b--) {
            int ti = xi[a], ts = xs[a];
            float t0 = xl0[a], t1 = xl1[a];
            xi[a] = xi[b], xs[a] = xs[b], xl0[a] = xl0[b], xl1[a] = xl1[b];
            xi[b] = ti, xs[b] = ts, xl0[b] = t0, xl1[b] = t1;
        }
    if (u8) /* element offsets into an interleaved row */
        for (int x = 0; x < ow; x++) {
            xi[x] *= C;
            xs[x] *= C;
        }
    const float *lut = u8_lut;
    int have[2] = {-1, -1}; /* source rows held in hbuf */
    for (int y = 0; y < oh; y++) {
        int yi, ys;
        float yl0, yl1;
        kd_bilinear_tap(sh, y, box.h, &yi, &ys, &yl0, &yl1);
        const int need[2] = {box.top + yi, box.top + yi + ys};
        int slot[2];
        for (int k = 0; k < 2; k++) {
            int sl = have[0] == need[k] ? 0 : (have[1] == need[k] ? 1 : -1);
            if (sl < 0) {
                /* evict the row the other tap does not need */
                sl = have[0] == need[1 - k] ? 1 : 0;
                if (u8) {
                    const uint8_t *row = u8 + (size_t)need[k] * W * C;
                    if (C == 3) { /* all channels from one pass over the pixels */
                        float *restrict h0 = hbuf[sl][0], *restrict h1 = hbuf[sl][1], *restrict h2 = hbuf[sl][2];
                        for (int x = 0; x < ow; x++) {
                            const uint8_t *a = row + xi[x], *b = row + xs[x];
                            h0[x] = xl0[x] * lut[a[0]] + xl1[x] * lut[b[0]];
                            h1[x] = xl0[x] * lut[a[1]] + xl1[x] * lut[b[1]];
                            h2[x] = xl0[x] * lut[a[2]] + xl1[x] * lut[b[2]];
                        }
                    } else {
                        for (int c = 0; c < C; c++) {
                            float *restrict hb = hbuf[sl][c];
                            const uint8_t *rc = row + c;
                            for (int x = 0; x < ow; x++)
                                hb[x] = xl0[x] * lut[rc[xi[x]]] + xl1[x] * lut[rc[xs[x]]];
                        }
                    }
                } else {
                    for (int c = 0; c < C; c++) {
                        const float *row = f32 + ((size_t)c * H + need[k]) * W;
                        float *restrict hb = hbuf[sl][c];
                        for (int x = 0; x < ow; x++)
                            hb[x] = xl0[x] * row[xi[x]] + xl1[x] * row[xs[x]];
                    }
                }
                have[sl] = need[k];
            }
            slot[k] = sl;
        }
        for (int c = 0; c < C; c++) {
            float *restrict o = dst + ((size_t)c * oh + y) * ow;
            const float *restrict h0 = hbuf[slot[0]][c], *restrict h1 = hbuf[slot[1]][c];
            for (int x = 0; x < ow; x++)
                o[x] = yl0 * h0[x] + yl1 * h1[x];
        }
    }
}

void kd_aug_resized_crop(const float *src, int C, int H, int W, kd_box box, float *dst, int oh, int ow)
{
    if (ow > KD_AUG_MAXW || C > 3) /* outside what augment accepts; stay correct */
        kd_aug_resized_crop_ref(src, C, H, W, box, dst, oh, ow);
    else
        resized_crop_any(src, NULL, C, H, W, box, dst, oh, ow, 0);
}

int kd_aug_resized_crop_u8(const uint8_t *src, int C, int H, int W, kd_box box, float *dst, int oh, int ow,
                           int hflip)
{
    if (ow > KD_AUG_MAXW || C > 3)
        return -1;
    pthread_once(&lut_once, lut_init);
    resized_crop_any(NULL, src, C, H, W, box, dst, oh, ow, hflip);
    return 0;
}

void kd_aug_resized_crop_ref(const float *src, int C, int H, int W, kd_box box, float *dst, int oh, int ow)
{
    for (int c = 0; c < C; c++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                double ry = (double)box.h / oh * (y + 0.5) - 0.5, rx = (double)box.w / ow * (x + 0.5) - 0.5;
                if (ry < 0)
                    ry = 0;
                if (rx < 0)
                    rx = 0;
                int y0 = (int)ry, x0 = (int)rx;
                if (y0 > box.h - 1)
                    y0 = box.h - 1;
                if (x0 > box.w - 1)
                    x0 = box.w - 1;
                int y1 = y0 + 1 < box.h ? y0 + 1 : y0, x1 = x0 + 1 < box.w ? x0 + 1 : x0;
                double ly = ry - y0, lx = rx - x0;
                const float *p = src + (size_t)c * H * W;
#define PX(yy, xx) ((double)p[(size_t)(box.top + (yy)) * W + box.left + (xx)])
                double v = (1 - ly) * ((1 - lx) * PX(y0, x0) + lx * PX(y0, x1)) +
                           ly * ((1 - lx) * PX(y1, x0) + lx * PX(y1, x1));
#undef PX
                dst[((size_t)c * oh + y) * ow + x] = (float)v;
            }
}

void kd_aug_crop(const float *src, int C, int H, int W, kd_box box, float *dst)
{
    for (int c = 0; c < C; c++)
        for (int y = 0; y < box.h; y++) {
            float *o = dst + ((size_t)c * box.h + y) * box.w;
            int sy = box.top + y;
            if (sy < 0 || sy >= H) {
                memset(o, 0, sizeof(float) * box.w);
                continue;
            }
            const float *row = src + ((size_t)c * H + sy) * W;
            for (int x = 0; x < box.w; x++) {
                int sx = box.left + x;
                o[x] = (sx < 0 || sx >= W) ? 0.0f : row[sx];
            }
        }
}

kd_box kd_aug_center_box(int H, int W, int th, int tw)
{
    /* int(round((H - th) / 2.0)) with Python's round-half-to-even */
    kd_box b = {(int)nearbyint((H - th) / 2.0), (int)nearbyint((W - tw) / 2.0), th, tw};
    return b;
}

void kd_aug_resize_short(int H, int W, int s, int *nh, int *nw)
{
    if (W <= H) {
        *nw = s;
        *nh = (int)((double)s * H / W);
    } else {
        *nh = s;
        *nw = (int)((double)s * W / H);
    }
}

/* ---- colour ---- */

void kd_aug_brightness(float *img, int C, int n, float f)
{
    size_t m = (size_t)C * n;
    for (size_t i = 0; i < m; i++)
        img[i] = clamp01(f * img[i]);
}

/* Mean of the luma (or of the gray plane): 16 float lanes of partial sums
 * (vectorised) over blocks of 1024 pixels, blocks added in double. */
static double gray_mean(const float *img, int C, int n)
{
    double s = 0;
    const float *r = img, *g = img + n, *b = img + 2 * (size_t)n;
    int i = 0;
    while (i + 16 <= n) {
        int end = n - i > 1024 ? i + 1024 : n;
        v16f acc = {0};
        for (; i + 16 <= end; i += 16)
            acc += C == 3 ? LUMA_R * LD16(r + i) + LUMA_G * LD16(g + i) + LUMA_B * LD16(b + i) : LD16(r + i);
        for (int j = 0; j < 16; j++)
            s += acc[j];
    }
    for (; i < n; i++)
        s += C == 3 ? LUMA_R * r[i] + LUMA_G * g[i] + LUMA_B * b[i] : r[i];
    return s / n;
}

void kd_aug_contrast(float *img, int C, int n, float f)
{
    const float m = (float)gray_mean(img, C, n);
    const float bias = (1.0f - f) * m;
    size_t k = (size_t)C * n;
    for (size_t i = 0; i < k; i++)
        img[i] = clamp01(f * img[i] + bias);
}

void kd_aug_saturation(float *img, int C, int n, float f)
{
    if (C != 3)
        return;
    float *r = img, *g = img + n, *b = img + 2 * (size_t)n;
    const float f1 = 1.0f - f;
    for (int i = 0; i < n; i++) {
        float l = LUMA_R * r[i] + LUMA_G * g[i] + LUMA_B * b[i];
        float bl = f1 * l;
        r[i] = clamp01(f * r[i] + bl);
        g[i] = clamp01(f * g[i] + bl);
        b[i] = clamp01(f * b[i] + bl);
    }
}

static void hue_rgb(float *restrict R, float *restrict G, float *restrict B, int n, float hue)
{
    for (int i = 0; i < n; i++) {
        const float r = R[i], g = G[i], b = B[i];
        /* RGB -> HSV as torchvision's _rgb2hsv (itself after PIL) */
        float maxc = r > g ? r : g, minc = r < g ? r : g;
        maxc = maxc > b ? maxc : b;
        minc = minc < b ? minc : b;
        const float cr = maxc - minc;
        const int eq = maxc == minc;
        const float s = cr / (eq ? 1.0f : maxc);
        const float icr = 1.0f / (eq ? 1.0f : cr); /* one division, not three */
        const float rc = (maxc - r) * icr, gc = (maxc - g) * icr, bc = (maxc - b) * icr;
        float h = maxc == r ? bc - gc : (maxc == g ? 2.0f + rc - bc : 4.0f + gc - rc);
        h = h / 6.0f + 1.0f;
        h = h - floorf(h); /* fmod(h, 1) for h >= 0, exactly */
        h = h + hue;
        h = h - floorf(h); /* torch.remainder(h, 1) */
        /* HSV -> RGB; sector 6 (h*6 rounding up to 6) is sector 0 */
        const float v = maxc, h6 = h * 6.0f, fi = floorf(h6), f = h6 - fi;
        const float p = clamp01(v * (1.0f - s));
        const float q = clamp01(v * (1.0f - s * f));
        const float t = clamp01(v * (1.0f - s * (1.0f - f)));
        R[i] = fi == 1.0f ? q : ((fi == 2.0f || fi == 3.0f) ? p : (fi == 4.0f ? t : v));
        G[i] = (fi == 0.0f || fi == 6.0f) ? t : ((fi == 1.0f || fi == 2.0f) ? v : (fi == 3.0f ? q : p));
        B[i] = (fi == 0.0f || fi == 1.0f || fi == 6.0f) ? p : (fi == 2.0f ? t : (fi == 5.0f ? q : v));
    }
}

void kd_aug_hue(float *img, int C, int n, float hue)
{
    if (C != 3)
        return;
    hue_rgb(img, img + n, img + 2 * (size_t)n, n, hue);
}

void kd_aug_hue_ref(float *img, int C, int n, float hue)
{
    if (C != 3)
        return;
    float *R = img, *G = img + n, *B = img + 2 * (size_t)n;
    for (int i = 0; i < n; i++) {
        float r = R[i], g = G[i], b = B[i];
        /* RGB -> HSV as torchvision's _rgb2hsv (itself after PIL). */
        float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
        float cr = maxc - minc;
        int eq = maxc == minc;
        float s = cr / (eq ? 1.0f : maxc);
        float crd = eq ? 1.0f : cr;
        float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
        float h;
        if (maxc == r)
            h = bc - gc;
        else if (maxc == g)
            h = 2.0f + rc - bc;
        else
            h = 4.0f + gc - rc;
        h = fmodf(h / 6.0f + 1.0f, 1.0f);
        h += hue;
        h -= floorf(h); /* torch.remainder(h, 1) */
        /* HSV -> RGB */
        float v = maxc;
        float h6 = h * 6.0f;
        float fi = floorf(h6);
        float fr = h6 - fi;
        int sector = ((int)fi % 6 + 6) % 6;
        float p = clamp01(v * (1.0f - s));
        float q = clamp01(v * (1.0f - s * fr));
        float t = clamp01(v * (1.0f - s * (1.0f - fr)));
        switch (sector) {
        case 0: r = v, g = t, b = p; break;
        case 1: r = q, g = v, b = p; break;
        case 2: r = p, g = v, b = t; break;
        case 3: r = p, g = q, b = v; break;
        case 4: r = t, g = p, b = v; break;
        default: r = v, g = p, b = q; break;
        }
        R[i] = r;
        G[i] = g;
        B[i] = b;
    }
}

void kd_aug_grayscale(float *img, int C, int n)
{
    if (C != 3)
        return;
    float *r = img, *g = img + n, *b = img + 2 * (size_t)n;
    for (int i = 0; i < n; i++) {
        float l = LUMA_R * r[i] + LUMA_G * g[i] + LUMA_B * b[i];
        r[i] = g[i] = b[i] = l;
    }
}

/* ---- blur ---- */

int kd_aug_blur_ksize(float sigma, int H, int W)
{
    int k = 2 * (int)ceilf(3.0f * sigma) + 1;
    if (k < 3)
        k = 3;
    int m = H < W ? H : W;
    while (k > 1 && k / 2 >= m)
        k -= 2;
    return k;
}

/* torch.linspace(-r, r, k) then exp(-0.5 (x/sigma)^2), normalised. */
static void gauss_kernel(int k, float sigma, float *g)
{
    double half = (k - 1) * 0.5, sum = 0;
    double step = k > 1 ? 2 * half / (k - 1) : 0;
    for (int i = 0; i < k; i++) {
        double x = i < k / 2 ? -half + step * i : half - step * (k - 1 - i);
        g[i] = (float)exp(-0.5 * (x / sigma) * (x / sigma));
        sum += g[i];
    }
    for (int i = 0; i < k; i++)
        g[i] = (float)(g[i] / sum);
}

/* Reflect without repeating the edge: -1 -> 1, n -> n-2. */
static inline int reflect(int i, int n)
{
    if (n == 1)
        return 0;
    while (i < 0 || i >= n) {
        if (i < 0)
            i = -i;
        if (i >= n)
            i = 2 * (n - 1) - i;
    }
    return i;
}

#define KD_AUG_MAXK 255

/* dst[x] = sum_t g[t] * src[t][x]: blocks of 32 columns stay in registers
 * across the taps instead of going through memory once per tap. */
static void conv_taps(const float *const *src, const float *g, int k, float *restrict dst, int W)
{
    int x0 = 0;
    for (; x0 + 32 <= W; x0 += 32) {
        v16f a0 = g[0] * LD16(src[0] + x0), a1 = g[0] * LD16(src[0] + x0 + 16);
        for (int t = 1; t < k; t++) {
            a0 += g[t] * LD16(src[t] + x0);
            a1 += g[t] * LD16(src[t] + x0 + 16);
        }
        ST16(dst + x0, a0);
        ST16(dst + x0 + 16, a1);
    }
    for (; x0 + 16 <= W; x0 += 16) {
        v16f a0 = g[0] * LD16(src[0] + x0);
        for (int t = 1; t < k; t++)
            a0 += g[t] * LD16(src[t] + x0);
        ST16(dst + x0, a0);
    }
    for (int x = x0; x < W; x++) {
        float acc = g[0] * src[0][x];
        for (int t = 1; t < k; t++)
            acc += g[t] * src[t][x];
        dst[x] = acc;
    }
}

void kd_aug_blur(float *img, int C, int H, int W, int k, float sigma, float *tmp)
{
    if (k <= 1)
        return;
    if (k > KD_AUG_MAXK)
        k = KD_AUG_MAXK;
    float g[KD_AUG_MAXK];
    const float *taps[KD_AUG_MAXK];
    static _Thread_local float pad[KD_AUG_MAXW + 2 * KD_AUG_MAXK];
    gauss_kernel(k, sigma, g);
    const int r = k / 2;
    for (int c = 0; c < C; c++) {
        float *pl = img + (size_t)c * H * W, *tp = tmp + (size_t)c * H * W;
        /* vertical: rows of pl (reflected at the borders) -> tp */
        for (int y = 0; y < H; y++) {
            for (int t = 0; t < k; t++)
                taps[t] = pl + (size_t)reflect(y - r + t, H) * W;
            conv_taps(taps, g, k, tp + (size_t)y * W, W);
        }
        /* horizontal: tp -> pl through a reflect-padded copy of the row */
        for (int y = 0; y < H; y++) {
            const float *s = tp + (size_t)y * W;
            float *o = pl + (size_t)y * W;
            if (W + 2 * r > KD_AUG_MAXW + 2 * KD_AUG_MAXK) {
                for (int x = 0; x < W; x++) {
                    float acc = 0.0f;
                    for (int t = 0; t < k; t++)
                        acc += g[t] * s[reflect(x - r + t, W)];
                    o[x] = acc;
                }
                continue;
            }
            for (int x = 0; x < r; x++) {
                pad[x] = s[reflect(x - r, W)];
                pad[W + r + x] = s[reflect(W + x, W)];
            }
            memcpy(pad + r, s, sizeof(float) * W);
            for (int t = 0; t < k; t++)
                taps[t] = pad + t;
            conv_taps(taps, g, k, o, W);
        }
    }
}

void kd_aug_blur_ref(const float *src, int C, int H, int W, int k, float sigma, float *dst)
{
    float g[KD_AUG_MAXK];
    if (k > KD_AUG_MAXK)
        k = KD_AUG_MAXK;
    gauss_kernel(k, sigma, g);
    const int r = k / 2;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                double acc = 0;
                for (int u = 0; u < k; u++)
                    for (int v = 0; v < k; v++)
                        acc += (double)g[u] * g[v] *
                               src[((size_t)c * H + reflect(y - r + u, H)) * W + reflect(x - r + v, W)];
                dst[((size_t)c * H + y) * W + x] = (float)acc;
            }
}

void kd_aug_hflip(float *img, int C, int H, int W)
{
    for (size_t row = 0; row < (size_t)C * H; row++) {
        float *p = img + row * W;
        for (int a = 0, b = W - 1; a < b; a++, b--) {
            float t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
    }
}

void kd_aug_normalize(float *img, int C, int n, const float *mean, const float *std)
{
    for (int c = 0; c < C; c++) {
        float *p = img + (size_t)c * n;
        const float m = mean[c], sd = std[c];
        for (int i = 0; i < n; i++)
            p[i] = (p[i] - m) / sd;
    }
}
