/* kd_resize — bilinear resize of planes and its adjoint (lib/kd_layers.h),
 * for maps of two resolutions compared position by position (loss ssa). */
#include "kd_layers.h"

#include <stddef.h>

void kd_bilinear_tap(float scale, int d, int in, int *i0, int *step, float *l0, float *l1)
{
    float real = scale * ((float)d + 0.5f) - 0.5f;
    if (real < 0.0f)
        real = 0.0f;
    int i = (int)real;
    if (i > in - 1)
        i = in - 1;
    float lam = real - (float)i;
    if (lam < 0.0f)
        lam = 0.0f;
    if (lam > 1.0f)
        lam = 1.0f;
    *i0 = i;
    *step = i < in - 1 ? 1 : 0;
    *l1 = lam;
    *l0 = 1.0f - lam;
}

/* dir 0: y = resize(x); dir 1: x += resize^T(y).  The same taps both ways
 * (one output pixel at a time: the maps are small). */
static void resize_any(float *x, int P, int hi, int wi, float *y, int ho, int wo, int dir)
{
    float sh = (float)hi / (float)ho, sw = (float)wi / (float)wo;
    for (int p = 0; p < P; p++) {
        float *xp = x + (size_t)p * hi * wi, *yp = y + (size_t)p * ho * wo;
        for (int oy = 0; oy < ho; oy++) {
            int y0, ys;
            float a0, a1;
            kd_bilinear_tap(sh, oy, hi, &y0, &ys, &a0, &a1);
            float *r0 = xp + (size_t)y0 * wi, *r1 = xp + (size_t)(y0 + ys) * wi;
            for (int ox = 0; ox < wo; ox++) {
                int x0, xs;
                float b0, b1;
                kd_bilinear_tap(sw, ox, wi, &x0, &xs, &b0, &b1);
                float *o = yp + (size_t)oy * wo + ox;
                if (!dir) {
                    *o = a0 * (b0 * r0[x0] + b1 * r0[x0 + xs]) + a1 * (b0 * r1[x0] + b1 * r1[x0 + xs]);
                    continue;
                }
                float g = *o;
                r0[x0] += a0 * b0 * g, r0[x0 + xs] += a0 * b1 * g;
                r1[x0] += a1 * b0 * g, r1[x0 + xs] += a1 * b1 * g;
            }
        }
    }
}

void kd_resize_forward(const float *x, int P, int hi, int wi, float *y, int ho, int wo)
{
    resize_any((float *)x, P, hi, wi, y, ho, wo, 0);
}

void kd_resize_backward(const float *dy, int P, int hi, int wi, float *dx, int ho, int wo)
{
    resize_any(dx, P, hi, wi, (float *)dy, ho, wo, 1);
}
