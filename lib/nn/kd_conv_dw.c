/* Depthwise convolution (groups == C == O; kd_conv_forward/backward send
 * kernels up to 8x8 here) by direct loops, split across cores with OpenMP
 * by (image, channel) plane forward and by channel backward, so that each
 * thread writes its own dw/db entries and dx planes.  Two variants: the
 * flat one for stride-1 convolutions on small planes, and row loops for the
 * rest.  Every backward accumulates; no workspace. */
#include <string.h>

#include "kd_layers_impl.h"

/* Stride-1 depthwise on small planes (the MobileNet/EfficientNet case):
 * the plane is copied once into a zero-padded buffer xp [Hp, Wp]; the output
 * is computed Wp wide (columns >= Wo are discarded), so that for each tap
 * (u, v) the whole plane is ONE contiguous loop yp[q] += w * xp[q + u*Wp + v]
 * instead of Ho loops of Wo (16 floats at 16x16: all loop overhead).
 * Scratch is a per-plane stack buffer of DW_PLANE floats. */
#define DW_PLANE 12288
static int dw_flat_ok(const kd_conv *c)
{
    size_t Wp = (size_t)c->W + 2 * c->pad, pl = ((size_t)c->H + 2 * c->pad) * Wp + (size_t)c->kw;
    return c->stride == 1 && 2 * pl + (size_t)c->Ho * Wp <= DW_PLANE;
}

/* xp [Hp*Wp + kw] = plane xc with pad zeros around it (and a zero tail the last taps read). */
static void dw_pad_plane(const kd_conv *c, const float *xc, float *xp)
{
    int p = c->pad, Wp = c->W + 2 * p;
    size_t n = (size_t)(c->H + 2 * p) * Wp + c->kw;
    memset(xp, 0, sizeof(float) * n);
    for (int h = 0; h < c->H; h++)
        memcpy(xp + (size_t)(h + p) * Wp + p, xc + (size_t)h * c->W, sizeof(float) * (size_t)c->W);
}

static void dw_forward_flat(const kd_conv *c, const float *x, const float *w, const float *b, float *y)
{
    int k = c->kh, Wp = c->W + 2 * c->pad, Q = c->Ho * Wp;
    long planes = (long)c->N * c->C;
#pragma omp parallel for schedule(static)
    for (long nc = 0; nc < planes; nc++) {
        float buf[DW_PLANE], *xp = buf, *yp = buf + (size_t)(c->H + 2 * c->pad) * Wp + k;
        int ch = (int)(nc % c->C);
        const float *wc = w + (size_t)ch * k * k;
        float *yc = y + (size_t)nc * c->Ho * c->Wo;
        dw_pad_plane(c, x + (size_t)nc * c->H * c->W, xp);
        float bias = b ? b[ch] : 0.0f;
        for (int q = 0; q < Q; q++)
            yp[q] = bias;
        for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++) {
                const float *src = xp + (size_t)u * Wp + v;
                float wv = wc[u * k + v];
                for (int q = 0; q < Q; q++)
                    yp[q] += wv * src[q];
            }
        for (int i = 0; i < c->Ho; i++)
            memcpy(yc + (size_t)i * c->Wo, yp + (size_t)i * Wp, sizeof(float) * (size_t)c->Wo);
    }
}

/* Split by channel: each writes its own dw/db entries and dx planes.  dy is
 * laid out Wp wide with zeros in the discarded columns, so that they add
 * nothing to dw or dx. */
static void dw_backward_flat(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx,
                             float *dw, float *db)
{
    int k = c->kh, p = c->pad, Wp = c->W + 2 * p, Q = c->Ho * Wp;
    size_t pl = (size_t)(c->H + 2 * p) * Wp + k;
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c->C; ch++) {
        float buf[DW_PLANE], *xp = buf, *dxp = buf + pl, *dyp = buf + 2 * pl;
        const float *wc = w + (size_t)ch * k * k;
        double gb = 0, gw[64] = {0}; /* k*k <= 64 on the depthwise path */
        for (int n = 0; n < c->N; n++) {
            size_t nc = (size_t)n * c->C + ch;
            const float *dyc = dy + nc * c->Ho * c->Wo;
            memset(dyp, 0, sizeof(float) * (size_t)Q);
            for (int i = 0; i < c->Ho; i++)
                memcpy(dyp + (size_t)i * Wp, dyc + (size_t)i * c->Wo, sizeof(float) * (size_t)c->Wo);
            if (db) {
                float t = 0;
#pragma omp simd reduction(+ : t)
                for (int q = 0; q < Q; q++)
                    t += dyp[q];
                gb += t;
            }
            if (dw) {
                dw_pad_plane(c, x + nc * c->H * c->W, xp);
                for (int u = 0; u < k; u++)
                    for (int v = 0; v < k; v++) {
                        const float *src = xp + (size_t)u * Wp + v;
                        float t = 0;
#pragma omp simd reduction(+ : t)
                        for (int q = 0; q < Q; q++)
                            t += dyp[q] * src[q];
                        gw[u * k + v] += t;
                    }
            }
            if (dx) {
                memset(dxp, 0, sizeof(float) * pl);
                for (int u = 0; u < k; u++)
                    for (int v = 0; v < k; v++) {
                        float *dst = dxp + (size_t)u * Wp + v, wv = wc[u * k + v];
                        for (int q = 0; q < Q; q++)
                            dst[q] += wv * dyp[q];
                    }
                float *dxc = dx + nc * c->H * c->W;
                for (int h = 0; h < c->H; h++) {
                    float *dr = dxc + (size_t)h * c->W;
                    const float *sr = dxp + (size_t)(h + p) * Wp + p;
                    for (int j = 0; j < c->W; j++)
                        dr[j] += sr[j];
                }
            }
        }
        if (db)
            db[ch] += (float)gb;
        if (dw)
            for (int q = 0; q < k * k; q++)
                dw[(size_t)ch * k * k + q] += (float)gw[q];
    }
}

/* Channels are independent: the (image, channel) planes split across cores. */
static void dw_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y)
{
    int k = c->kh, s = c->stride, p = c->pad;
    long planes = (long)c->N * c->C;
#pragma omp parallel for schedule(static)
    for (long nc = 0; nc < planes; nc++) {
        int ch = (int)(nc % c->C);
        const float *xc = x + (size_t)nc * c->H * c->W, *wc = w + (size_t)ch * k * k;
        float *yc = y + (size_t)nc * c->Ho * c->Wo;
        float bias = b ? b[ch] : 0.0f;
        for (int i = 0; i < c->Ho * c->Wo; i++)
            yc[i] = bias;
        for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++) {
                float wv = wc[u * k + v];
                int lo, hi, off = v - p;
                col_range(c, v, &lo, &hi);
                for (int i = 0; i < c->Ho; i++) {
                    int hr = i * s - p + u;
                    if (hr < 0 || hr >= c->H)
                        continue;
                    const float *xr = xc + (size_t)hr * c->W + off;
                    float *yr = yc + (size_t)i * c->Wo;
                    if (s == 1)
                        for (int j = lo; j < hi; j++)
                            yr[j] += wv * xr[j];
                    else
                        for (int j = lo; j < hi; j++)
                            yr[j] += wv * xr[j * s];
                }
            }
    }
}

/* Split by channel (each writes its own dw/db entries and dx planes); the
 * weight gradient sums per output column in floats over the rows of one
 * image, then in double across columns and images. */
#define DW_COLS 256
static void dw_backward(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                        float *db)
{
    int k = c->kh, s = c->stride, p = c->pad;
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c->C; ch++) {
        const float *wc = w + (size_t)ch * k * k;
        double gb = 0, gw[64] = {0}; /* k*k <= 64 for the dw path, checked below */
        float acc[DW_COLS];
        for (int n = 0; n < c->N; n++) {
            size_t nc = (size_t)n * c->C + ch;
            const float *xc = x + nc * c->H * c->W, *dyc = dy + nc * c->Ho * c->Wo;
            float *dxc = dx ? dx + nc * c->H * c->W : NULL;
            if (db)
                for (int i = 0; i < c->Ho * c->Wo; i++)
                    gb += dyc[i];
            for (int u = 0; u < k; u++)
                for (int v = 0; v < k; v++) {
                    float wv = wc[u * k + v];
                    int lo, hi, off = v - p;
                    col_range(c, v, &lo, &hi);
                    for (int j0 = lo; j0 < hi; j0 += DW_COLS) {
                        int j1 = j0 + DW_COLS < hi ? j0 + DW_COLS : hi;
                        for (int j = j0; j < j1; j++)
                            acc[j - j0] = 0;
                        for (int i = 0; i < c->Ho; i++) {
                            int hr = i * s - p + u;
                            if (hr < 0 || hr >= c->H)
                                continue;
                            const float *xr = xc + (size_t)hr * c->W + off, *dyr = dyc + (size_t)i * c->Wo;
                            float *dxr = dxc ? dxc + (size_t)hr * c->W + off : NULL;
                            if (s == 1) {
                                for (int j = j0; j < j1; j++)
                                    acc[j - j0] += dyr[j] * xr[j];
                                if (dxr)
                                    for (int j = j0; j < j1; j++)
                                        dxr[j] += wv * dyr[j];
                            } else {
                                for (int j = j0; j < j1; j++)
                                    acc[j - j0] += dyr[j] * xr[j * s];
                                if (dxr)
                                    for (int j = j0; j < j1; j++)
                                        dxr[j * s] += wv * dyr[j];
                            }
                        }
                        double t = 0;
                        for (int j = j0; j < j1; j++)
                            t += acc[j - j0];
                        gw[u * k + v] += t;
                    }
                }
        }
        if (db)
            db[ch] += (float)gb;
        if (dw)
            for (int q = 0; q < k * k; q++)
                dw[(size_t)ch * k * k + q] += (float)gw[q];
    }
}

void kd_conv_dw_forward(const kd_conv *c, const float *x, const float *w, const float *b, float *y)
{
    if (dw_flat_ok(c))
        dw_forward_flat(c, x, w, b, y);
    else
        dw_forward(c, x, w, b, y);
}

void kd_conv_dw_backward(const kd_conv *c, const float *x, const float *w, const float *dy, float *dx, float *dw,
                         float *db)
{
    if (dw_flat_ok(c))
        dw_backward_flat(c, x, w, dy, dx, dw, db);
    else
        dw_backward(c, x, w, dy, dx, dw, db);
}
