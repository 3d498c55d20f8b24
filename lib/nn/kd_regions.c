/* kd_regions — multi-scale window pooling (lib/kd_regions.h). */
#include "kd_regions.h"

#include "kd_err.h"

/* Windows of scale s along an axis of length n: how many, and where
 * window i starts and ends ([*lo, *hi)). */
static int axis_count(int s, int n, int stride)
{
    if (s == 1 || stride == 0)
        return s;
    int k = (n + s - 1) / s;
    return (n - k) / stride + 1;
}

static void axis_window(int s, int n, int stride, int i, int *lo, int *hi)
{
    if (s == 1) {
        *lo = 0, *hi = n;
    } else if (stride == 0) {
        /* PyTorch's start_index / end_index, in 64 bits so i*n cannot overflow */
        *lo = (int)((long long)i * n / s);
        *hi = (int)(((long long)(i + 1) * n + s - 1) / s);
    } else {
        int k = (n + s - 1) / s;
        *lo = i * stride, *hi = i * stride + k;
    }
}

int kd_regions_count(const kd_regions *r, int h, int w)
{
    if (r->nscales < 1 || r->nscales > KD_REGIONS_MAX_SCALES) {
        kd_err_set("regions: %d scales (1 to %d)", r->nscales, KD_REGIONS_MAX_SCALES);
        return -1;
    }
    if (r->stride < 0) {
        kd_err_set("regions: stride %d is negative", r->stride);
        return -1;
    }
    if (r->scales[0] != 1) {
        kd_err_set("regions: the first scale is %d, must be 1 (region 0 is the global average)", r->scales[0]);
        return -1;
    }
    long long R = 0;
    for (int i = 0; i < r->nscales; i++) {
        int s = r->scales[i];
        if (s < 1 || s > h || s > w) {
            kd_err_set("regions: scale %d does not fit a %dx%d map (1 to %d)", s, h, w, h < w ? h : w);
            return -1;
        }
        R += (long long)axis_count(s, h, r->stride) * axis_count(s, w, r->stride);
    }
    if (R > 1 << 24) {
        kd_err_set("regions: %lld regions per image is too many", R);
        return -1;
    }
    return (int)R;
}

int kd_regions_scale_span(const kd_regions *r, int h, int w, int region, int *first, int *count)
{
    int R = kd_regions_count(r, h, w);
    if (R < 0)
        return -1;
    if (region < 0 || region >= R) {
        kd_err_set("regions: region %d out of range [0, %d)", region, R);
        return -1;
    }
    int f = 0;
    for (int i = 0; i < r->nscales; i++) {
        int n = axis_count(r->scales[i], h, r->stride) * axis_count(r->scales[i], w, r->stride);
        if (region < f + n) {
            *first = f, *count = n;
            return 0;
        }
        f += n;
    }
    return -1; /* unreachable: region < R */
}

/* Region reg's window [*y0,*y1) x [*x0,*x1); r valid, reg in [0, R). */
static void window(const kd_regions *r, int h, int w, int reg, int *y0, int *y1, int *x0, int *x1)
{
    for (int i = 0; i < r->nscales; i++) {
        int s = r->scales[i];
        int nh = axis_count(s, h, r->stride), nw = axis_count(s, w, r->stride);
        if (reg < nh * nw) {
            axis_window(s, h, r->stride, reg / nw, y0, y1);
            axis_window(s, w, r->stride, reg % nw, x0, x1);
            return;
        }
        reg -= nh * nw;
    }
}

void kd_regions_forward(const kd_regions *r, const float *map, int B, int C, int h, int w, float *out)
{
    int R = kd_regions_count(r, h, w);
    if (R < 0)
        return;
    long hw = (long)h * w;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *p = map + ((long)b * C + c) * hw;
            float *o = out + (long)b * R * C + c;
            for (int reg = 0; reg < R; reg++) {
                int y0, y1, x0, x1;
                window(r, h, w, reg, &y0, &y1, &x0, &x1);
                double acc = 0;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++)
                        acc += p[(long)y * w + x];
                o[(long)reg * C] = (float)(acc / ((double)(y1 - y0) * (x1 - x0)));
            }
        }
}

void kd_regions_backward(const kd_regions *r, const float *dout, int B, int C, int h, int w, float *dmap)
{
    int R = kd_regions_count(r, h, w);
    if (R < 0)
        return;
    long hw = (long)h * w;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float *p = dmap + ((long)b * C + c) * hw;
            const float *d = dout + (long)b * R * C + c;
            for (int reg = 0; reg < R; reg++) {
                int y0, y1, x0, x1;
                window(r, h, w, reg, &y0, &y1, &x0, &x1);
                float g = (float)(d[(long)reg * C] / ((double)(y1 - y0) * (x1 - x0)));
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++)
                        p[(long)y * w + x] += g;
            }
        }
}

static int argmax(const float *z, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best] || (z[best] != z[best] && z[k] == z[k]))
            best = k;
    return best;
}

void kd_regions_categorise(const float *z, int B, int R, int K, float w_comp, float *wt)
{
    for (int b = 0; b < B; b++) {
        const float *zb = z + (long)b * R * K;
        int g = argmax(zb, K);
        for (int r = 0; r < R; r++)
            wt[(long)b * R + r] = argmax(zb + (long)r * K, K) == g ? 1.0f : w_comp;
    }
}
