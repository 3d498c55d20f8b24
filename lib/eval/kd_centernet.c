/* kd_centernet — CenterNet's targets, losses and peak decoding (kd_det.h);
 * tests/gen/centernet.py re-implements each one in NumPy/PyTorch. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_det.h"

double kd_cn_radius(double h, double w, double mo)
{
    /* CenterNet's three cases; its code halves (b + sq) instead of dividing
     * by 2a, and that is the rule its heatmaps were tuned with */
    double b1 = h + w, c1 = w * h * (1 - mo) / (1 + mo);
    double r1 = (b1 + sqrt(b1 * b1 - 4 * c1)) / 2;
    double b2 = 2 * (h + w), c2 = (1 - mo) * w * h;
    double r2 = (b2 + sqrt(b2 * b2 - 16 * c2)) / 2;
    double a3 = 4 * mo, b3 = -2 * mo * (h + w), c3 = (mo - 1) * w * h;
    double r3 = (b3 + sqrt(b3 * b3 - 4 * a3 * c3)) / 2;
    double r = r1 < r2 ? r1 : r2;
    return r < r3 ? r : r3;
}

void kd_cn_splat(float *heat, int H, int W, int cx, int cy, int r)
{
    double d = 2 * r + 1, sigma = d / 6;
    for (int dy = -r; dy <= r; dy++) {
        int y = cy + dy;
        if (y < 0 || y >= H)
            continue;
        for (int dx = -r; dx <= r; dx++) {
            int x = cx + dx;
            if (x < 0 || x >= W)
                continue;
            double g = exp(-(double)(dx * dx + dy * dy) / (2 * sigma * sigma));
            if (g < DBL_EPSILON) /* the peak is 1 */
                g = 0;
            float gf = (float)g;
            if (gf > heat[(size_t)y * W + x])
                heat[(size_t)y * W + x] = gf;
        }
    }
}

int kd_cn_targets(const float *boxes, const int32_t *labels, int64_t nbox, int K, int H, int W, int S,
                  float *heat, kd_cn_obj *obj, int max_obj)
{
    memset(heat, 0, sizeof(float) * (size_t)K * H * W);
    int n = 0;
    for (int64_t i = 0; i < nbox && n < max_obj; i++) {
        const float *b = boxes + 4 * i;
        double w = b[2] / (double)S, h = b[3] / (double)S;
        if (!(w > 0) || !(h > 0) || labels[i] < 0 || labels[i] >= K)
            continue;
        double cx = (b[0] + b[2] / 2.0) / S, cy = (b[1] + b[3] / 2.0) / S;
        int ix = (int)floor(cx), iy = (int)floor(cy);
        if (ix >= W)
            ix = W - 1;
        if (iy >= H)
            iy = H - 1;
        if (ix < 0)
            ix = 0;
        if (iy < 0)
            iy = 0;
        double rr = kd_cn_radius(ceil(h), ceil(w), 0.7);
        int r = rr > 0 ? (int)rr : 0;
        kd_cn_splat(heat + (size_t)labels[i] * H * W, H, W, ix, iy, r);
        obj[n].ind = iy * W + ix;
        obj[n].cls = labels[i];
        obj[n].wh[0] = (float)w, obj[n].wh[1] = (float)h;
        obj[n].off[0] = (float)(cx - ix), obj[n].off[1] = (float)(cy - iy);
        n++;
    }
    return n;
}

double kd_cn_focal(const float *x, const float *gt, size_t n, float weight, float *d)
{
    const double lo = 1e-4, hi = 1 - 1e-4;
    double pos = 0, neg = 0;
    size_t npos = 0;
    for (size_t i = 0; i < n; i++)
        npos += gt[i] == 1.0f;
    double scale = npos ? 1.0 / (double)npos : 1.0;
    for (size_t i = 0; i < n; i++) {
        double s = 1 / (1 + exp(-(double)x[i]));
        int clamped = s < lo || s > hi;
        double p = s < lo ? lo : s > hi ? hi : s, g = 0;
        if (gt[i] == 1.0f) {
            pos += log(p) * (1 - p) * (1 - p);
            g = -(1 - p) * (1 - p) * (1 - p) + 2 * p * (1 - p) * (1 - p) * log(p);
        } else {
            double w4 = 1 - gt[i];
            w4 *= w4, w4 *= w4;
            neg += log(1 - p) * p * p * w4;
            g = w4 * (p * p * p - 2 * p * p * (1 - p) * log(1 - p));
        }
        if (d && !clamped)
            d[i] += (float)(weight * scale * g);
    }
    return -(pos + neg) * scale;
}

double kd_cn_reg_l1(const float *pred, int N, int H, int W, const kd_cn_obj *obj, const int *off, int which,
                    float weight, float *d)
{
    size_t HW = (size_t)H * W;
    double sum = 0, cnt = 2.0 * off[N] + 1e-4;
    for (int i = 0; i < N; i++)
        for (int j = off[i]; j < off[i + 1]; j++) {
            const float *t = which ? obj[j].off : obj[j].wh;
            for (int c = 0; c < 2; c++) {
                size_t at = ((size_t)i * 2 + c) * HW + obj[j].ind;
                double e = (double)pred[at] - t[c];
                sum += fabs(e);
                if (d)
                    d[at] += (float)(weight * (e > 0 ? 1 : e < 0 ? -1 : 0) / cnt);
            }
        }
    return sum / cnt;
}

double kd_seg_ce(const float *logits, const uint8_t *labels, int N, int C, int H, int W, float weight, float *d)
{
    size_t HW = (size_t)H * W;
    double sum = 0, inv = 1.0 / ((double)N * HW);
    for (int n = 0; n < N; n++)
        for (size_t p = 0; p < HW; p++) {
            const float *x = logits + (size_t)n * C * HW + p;
            double mx = x[0];
            for (int c = 1; c < C; c++)
                if (x[c * HW] > mx)
                    mx = x[c * HW];
            double z = 0;
            for (int c = 0; c < C; c++)
                z += exp(x[c * HW] - mx);
            int y = labels[(size_t)n * HW + p];
            sum += log(z) + mx - x[y * HW];
            if (d) {
                float *dx = d + (size_t)n * C * HW + p;
                for (int c = 0; c < C; c++)
                    dx[c * HW] += (float)(weight * inv * (exp(x[c * HW] - mx) / z - (c == y)));
            }
        }
    return sum * inv;
}

double kd_seg_ce_up(const float *logits, int N, int C, int h, int w, const uint8_t *labels, int H, int W,
                    float weight, float *d, float *up, float *dup)
{
    size_t lo = (size_t)C * h * w, hi = (size_t)C * H * W;
    for (int i = 0; i < N; i++)
        kd_bilinear_resize(C, h, w, logits + i * lo, H, W, up + i * hi);
    if (d)
        memset(dup, 0, sizeof(float) * N * hi);
    double l = kd_seg_ce(up, labels, N, C, H, W, weight, d ? dup : NULL);
    if (d)
        for (int i = 0; i < N; i++)
            kd_bilinear_resize_backward(C, h, w, dup + i * hi, H, W, d + i * lo);
    return l;
}

/* Candidates in descending score, ties by ascending index. */
static int cand_cmp(const void *a, const void *b, void *ctx)
{
    const float *s = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (s[i] != s[j])
        return s[i] > s[j] ? -1 : 1;
    return (i > j) - (i < j);
}

int kd_cn_decode(const float *heat, const float *wh, const float *off, int K, int H, int W, int S, int img_h,
                 int img_w, int topk, kd_cn_det *out, float *scratch, int32_t *iscratch)
{
    size_t HW = (size_t)H * W, n = (size_t)K * HW;
    for (size_t i = 0; i < n; i++)
        scratch[i] = (float)(1 / (1 + exp(-(double)heat[i])));
    size_t np = 0;
    for (int k = 0; k < K; k++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                size_t at = (size_t)k * HW + (size_t)y * W + x;
                float v = scratch[at];
                int peak = 1;
                for (int dy = -1; dy <= 1 && peak; dy++)
                    for (int dx = -1; dx <= 1; dx++) {
                        int yy = y + dy, xx = x + dx;
                        if (yy < 0 || yy >= H || xx < 0 || xx >= W)
                            continue;
                        if (scratch[(size_t)k * HW + (size_t)yy * W + xx] > v) {
                            peak = 0;
                            break;
                        }
                    }
                if (peak)
                    iscratch[np++] = (int32_t)at;
            }
    qsort_r(iscratch, np, sizeof(int32_t), cand_cmp, scratch);
    int m = np < (size_t)topk ? (int)np : topk;
    for (int j = 0; j < m; j++) {
        int32_t at = iscratch[j];
        int k = at / (int32_t)HW, p = at % (int32_t)HW, y = p / W, x = p % W;
        double w = wh[p] > 0 ? wh[p] : 0, h = wh[HW + p] > 0 ? wh[HW + p] : 0;
        double cx = x + off[p], cy = y + off[HW + p];
        double x0 = (cx - w / 2) * S, y0 = (cy - h / 2) * S, x1 = (cx + w / 2) * S, y1 = (cy + h / 2) * S;
        x0 = x0 < 0 ? 0 : x0 > img_w ? img_w : x0;
        x1 = x1 < 0 ? 0 : x1 > img_w ? img_w : x1;
        y0 = y0 < 0 ? 0 : y0 > img_h ? img_h : y0;
        y1 = y1 < 0 ? 0 : y1 > img_h ? img_h : y1;
        out[j] = (kd_cn_det){.x = (float)x0, .y = (float)y0, .w = (float)(x1 - x0), .h = (float)(y1 - y0),
                             .score = scratch[at], .cls = k};
    }
    return m;
}

void kd_up2_forward(int N, int C, int H, int W, const float *x, float *y)
{
    for (size_t nc = 0; nc < (size_t)N * C; nc++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++)
                y[(nc * 2 * H + i) * 2 * W + j] = x[(nc * H + i / 2) * W + j / 2];
}

void kd_up2_backward(int N, int C, int H, int W, const float *dy, float *dx)
{
    for (size_t nc = 0; nc < (size_t)N * C; nc++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++)
                dx[(nc * H + i / 2) * W + j / 2] += dy[(nc * 2 * H + i) * 2 * W + j];
}

/* PyTorch's source index for align_corners=False, clamped at 0. */
static void bl_src(int o, int in, int out, int *i0, int *i1, float *f)
{
    double s = ((double)o + 0.5) * in / out - 0.5;
    if (s < 0)
        s = 0;
    *i0 = (int)s;
    *i1 = *i0 + 1 < in ? *i0 + 1 : in - 1;
    *f = (float)(s - *i0);
}

/* The four sources of output pixel (i, j) and their weights. */
static void bl_taps(int i, int j, int H, int W, int Ho, int Wo, int at[4], float wt[4])
{
    int y0, y1, x0, x1;
    float fy, fx;
    bl_src(i, H, Ho, &y0, &y1, &fy);
    bl_src(j, W, Wo, &x0, &x1, &fx);
    at[0] = y0 * W + x0, at[1] = y0 * W + x1, at[2] = y1 * W + x0, at[3] = y1 * W + x1;
    wt[0] = (1 - fy) * (1 - fx), wt[1] = (1 - fy) * fx, wt[2] = fy * (1 - fx), wt[3] = fy * fx;
}

void kd_bilinear_resize(int C, int H, int W, const float *x, int Ho, int Wo, float *y)
{
    for (int i = 0; i < Ho; i++)
        for (int j = 0; j < Wo; j++) {
            int at[4];
            float wt[4];
            bl_taps(i, j, H, W, Ho, Wo, at, wt);
            for (int c = 0; c < C; c++) {
                const float *p = x + (size_t)c * H * W;
                y[((size_t)c * Ho + i) * Wo + j] = p[at[0]] * wt[0] + p[at[1]] * wt[1] + p[at[2]] * wt[2] +
                                                   p[at[3]] * wt[3];
            }
        }
}

/* The transpose of kd_bilinear_resize: each output's gradient goes back to
 * its four sources with the forward's weights. */
void kd_bilinear_resize_backward(int C, int H, int W, const float *dy, int Ho, int Wo, float *dx)
{
    for (int i = 0; i < Ho; i++)
        for (int j = 0; j < Wo; j++) {
            int at[4];
            float wt[4];
            bl_taps(i, j, H, W, Ho, Wo, at, wt);
            for (int c = 0; c < C; c++) {
                float *p = dx + (size_t)c * H * W, g = dy[((size_t)c * Ho + i) * Wo + j];
                for (int k = 0; k < 4; k++)
                    p[at[k]] += g * wt[k];
            }
        }
}

void kd_argmax_u8(int C, int HW, const float *x, uint8_t *out)
{
    for (int p = 0; p < HW; p++) {
        int best = 0;
        for (int c = 1; c < C; c++)
            if (x[(size_t)c * HW + p] > x[(size_t)best * HW + p])
                best = c;
        out[p] = (uint8_t)best;
    }
}
