/* Layer kernels against their naive references, and gradients against
 * central finite differences (loss = sum(y * r) for a fixed random r). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_layers.h"
#include "kd_rng.h"
#include "kd_test.h"

static kd_rng rng;

static float *rnd(size_t n)
{
    float *v = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        v[i] = kd_rng_normal(&rng);
    return v;
}

static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

static void test_conv(int N, int C, int H, int W, int O, int k, int s, int p, int g)
{
    kd_conv c;
    if (kd_conv_init(&c, N, C, H, W, O, k, s, p, g)) {
        KD_CHECK(0, "conv init");
        return;
    }
    size_t nx = (size_t)N * C * H * W, nw = (size_t)O * (C / g) * k * k, ny = (size_t)N * O * c.Ho * c.Wo;
    float *x = rnd(nx), *w = rnd(nw), *b = rnd(O), *dy = rnd(ny);
    float *y = zeros(ny), *yr = zeros(ny), *ws = zeros(kd_conv_workspace(&c) + 1);
    float *dx = zeros(nx), *dxr = zeros(nx), *dw = zeros(nw), *dwr = zeros(nw), *db = zeros(O), *dbr = zeros(O);
    kd_conv_forward(&c, x, w, b, y, ws);
    kd_conv_forward_ref(&c, x, w, b, yr);
    kd_conv_backward(&c, x, w, dy, dx, dw, db, ws);
    kd_conv_backward_ref(&c, x, w, dy, dxr, dwr, dbr);
    double ef = kd_test_relerr(y, yr, (long)ny, 1e-3), ex = kd_test_relerr(dx, dxr, (long)nx, 1e-3),
           ew = kd_test_relerr(dw, dwr, (long)nw, 1e-3), eb = kd_test_relerr(db, dbr, O, 1e-3);
    KD_CHECK(ef < 1e-5 && ex < 1e-5 && ew < 1e-5 && eb < 1e-5,
             "conv N%d C%d %dx%d O%d k%d s%d p%d g%d vs ref: y %.1e dx %.1e dw %.1e db %.1e", N, C, H, W, O, k, s, p,
             g, ef, ex, ew, eb);
    /* finite differences on a few weights and inputs (loss = sum y*dy) */
    double worst = 0;
    for (int t = 0; t < 6; t++) {
        float *v = t % 2 ? w : x, *gv = t % 2 ? dwr : dxr;
        size_t n = t % 2 ? nw : nx, i = (size_t)kd_rng_below(&rng, n);
        float save = v[i], h = 1e-2f;
        double f[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            v[i] = save + (sgn ? -h : h);
            kd_conv_forward_ref(&c, x, w, b, yr);
            double sum = 0;
            for (size_t j = 0; j < ny; j++)
                sum += (double)yr[j] * dy[j];
            f[sgn] = sum;
        }
        v[i] = save;
        double fd = (f[0] - f[1]) / (2 * h), e = fabs(fd - gv[i]) / (fabs(gv[i]) + 1e-2);
        worst = e > worst ? e : worst;
    }
    KD_CHECK(worst < 1e-2, "conv finite differences: worst rel err %.1e", worst);
    free(x), free(w), free(b), free(dy), free(y), free(yr), free(ws), free(dx), free(dxr), free(dw), free(dwr);
    free(db), free(dbr);
}

static void test_bn(int N, int C, int HW, int group)
{
    size_t n = (size_t)N * C * HW;
    int G = group ? N / group : 1;
    float *x = rnd(n), *ga = rnd(C), *be = rnd(C), *dy = rnd(n), *y = zeros(n), *yr = zeros(n);
    float *m1 = zeros((size_t)G * C), *r1 = zeros((size_t)G * C), *m2 = zeros((size_t)G * C), *r2 = zeros((size_t)G * C);
    float *rm1 = zeros(C), *rv1 = zeros(C), *rm2 = zeros(C), *rv2 = zeros(C);
    for (int c = 0; c < C; c++)
        rv1[c] = rv2[c] = 1;
    float *dx = zeros(n), *dxr = zeros(n), *dg = zeros(C), *dgr = zeros(C), *db = zeros(C), *dbr = zeros(C);
    kd_bn_forward_train(N, C, HW, group, x, ga, be, y, m1, r1, rm1, rv1, 0.1f, 1e-5f);
    kd_bn_forward_train_ref(N, C, HW, group, x, ga, be, yr, m2, r2, rm2, rv2, 0.1f, 1e-5f);
    kd_bn_backward(N, C, HW, group, x, m1, r1, ga, dy, dx, dg, db);
    kd_bn_backward_ref(N, C, HW, group, x, m2, r2, ga, dy, dxr, dgr, dbr);
    double e1 = kd_test_relerr(y, yr, (long)n, 1e-3), e2 = kd_test_relerr(rv1, rv2, C, 1e-3),
           e3 = kd_test_relerr(dx, dxr, (long)n, 1e-3), e4 = kd_test_relerr(dg, dgr, C, 1e-3);
    KD_CHECK(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-4 && e4 < 1e-4,
             "bn N%d C%d HW%d group %d vs ref: y %.1e run_var %.1e dx %.1e dgamma %.1e", N, C, HW, group, e1, e2, e3, e4);
    /* finite differences through the batch statistics */
    double worst = 0;
    for (int t = 0; t < 5; t++) {
        size_t i = (size_t)kd_rng_below(&rng, n);
        float save = x[i], h = 1e-2f;
        double f[2];
        for (int s = 0; s < 2; s++) {
            x[i] = save + (s ? -h : h);
            kd_bn_forward_train_ref(N, C, HW, group, x, ga, be, yr, m2, r2, rm2, rv2, 0.1f, 1e-5f);
            double sum = 0;
            for (size_t j = 0; j < n; j++)
                sum += (double)yr[j] * dy[j];
            f[s] = sum;
        }
        x[i] = save;
        double fd = (f[0] - f[1]) / (2 * h), e = fabs(fd - dxr[i]) / (fabs(dxr[i]) + 1e-2);
        worst = e > worst ? e : worst;
    }
    KD_CHECK(worst < 2e-2, "bn finite differences: worst rel err %.1e", worst);
    free(x), free(ga), free(be), free(dy), free(y), free(yr), free(m1), free(r1), free(m2), free(r2);
    free(rm1), free(rv1), free(rm2), free(rv2), free(dx), free(dxr), free(dg), free(dgr), free(db), free(dbr);
}

static void test_pool_act_linear(void)
{
    /* average pool with padding counts the padding (count_include_pad) */
    kd_pool p;
    kd_pool_init(&p, 1, 1, 3, 3, 3, 2, 1);
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[4];
    kd_avgpool_forward(&p, x, y);
    KD_CHECK(p.Ho == 2 && fabsf(y[0] - 12.0f / 9) < 1e-6f && fabsf(y[3] - 28.0f / 9) < 1e-6f,
             "avgpool count_include_pad: %g %g", y[0], y[3]);
    int32_t idx[4];
    kd_maxpool_forward(&p, x, y, idx);
    KD_CHECK(y[0] == 5 && y[3] == 9 && idx[3] == 8, "maxpool values and argmax");
    /* adaptive pool 5 -> 3 uses PyTorch's overlapping bins [0,2) [1,4) [3,5) */
    float a[5] = {1, 2, 3, 4, 5}, o[3];
    kd_adaptive_avgpool_forward(1, 1, 1, 5, 1, 3, a, o);
    KD_CHECK(fabsf(o[0] - 1.5f) < 1e-6f && fabsf(o[1] - 3) < 1e-6f && fabsf(o[2] - 4.5f) < 1e-6f,
             "adaptive bins: %g %g %g", o[0], o[1], o[2]);
    /* activations: derivative by central differences */
    kd_act acts[] = {KD_RELU6, KD_SILU, KD_HSWISH, KD_HSIGMOID, KD_SIGMOID};
    const char *names[] = {"relu6", "silu", "hardswish", "hardsigmoid", "sigmoid"};
    for (int t = 0; t < 5; t++) {
        double worst = 0;
        for (int i = 0; i < 40; i++) {
            float v = -7.9f + 0.4f * i + 0.013f, yv, yp, ym, d = 0, one = 1, h = 1e-3f;
            kd_act_forward(acts[t], &v, &yv, 1);
            kd_act_backward(acts[t], &v, &yv, &one, &d, 1);
            float vp = v + h, vm = v - h;
            kd_act_forward(acts[t], &vp, &yp, 1);
            kd_act_forward(acts[t], &vm, &ym, 1);
            double e = fabs((yp - ym) / (2 * h) - d);
            worst = e > worst ? e : worst;
        }
        KD_CHECK(worst < 5e-3, "%s derivative vs central differences: %.1e", names[t], worst);
    }
    /* linear (GEMM) against loops */
    int N = 7, I = 13, O = 5;
    float *xx = rnd((size_t)N * I), *W = rnd((size_t)O * I), *b = rnd(O), *yy = zeros((size_t)N * O);
    float *dy = rnd((size_t)N * O), *dx = zeros((size_t)N * I), *dW = zeros((size_t)O * I), *db = zeros(O);
    kd_linear_forward(N, I, O, xx, W, b, yy);
    kd_linear_backward(N, I, O, xx, W, dy, dx, dW, db);
    double e = 0;
    for (int n = 0; n < N; n++)
        for (int o2 = 0; o2 < O; o2++) {
            double s = b[o2];
            for (int i = 0; i < I; i++)
                s += (double)xx[n * I + i] * W[o2 * I + i];
            e = fmax(e, fabs(s - yy[n * O + o2]));
        }
    for (int o2 = 0; o2 < O; o2++)
        for (int i = 0; i < I; i++) {
            double s = 0;
            for (int n = 0; n < N; n++)
                s += (double)dy[n * O + o2] * xx[n * I + i];
            e = fmax(e, fabs(s - dW[o2 * I + i]));
        }
    KD_CHECK(e < 1e-4, "linear forward and dW against loops: %.1e", e);
    free(xx), free(W), free(b), free(yy), free(dy), free(dx), free(dW), free(db);
}

int main(void)
{
    rng = kd_rng_make(11, 0, 0);
    test_conv(2, 3, 7, 6, 4, 3, 1, 1, 1);   /* odd sizes, padding */
    test_conv(3, 4, 9, 9, 6, 3, 2, 1, 1);   /* stride 2 */
    test_conv(2, 5, 5, 5, 7, 1, 1, 0, 1);   /* pointwise */
    test_conv(2, 4, 6, 6, 8, 1, 2, 0, 1);   /* strided 1x1 shortcut */
    test_conv(2, 6, 7, 7, 6, 3, 1, 1, 6);   /* depthwise */
    test_conv(2, 6, 8, 8, 6, 5, 2, 2, 6);   /* depthwise 5x5 stride 2 */
    test_conv(2, 4, 6, 6, 6, 3, 1, 1, 2);   /* grouped */
    test_conv(40, 3, 16, 16, 4, 3, 1, 1, 1); /* several image chunks */
    test_bn(6, 3, 10, 0);
    test_bn(8, 4, 5, 2);
    test_bn(5, 7, 1, 0); /* BatchNorm1d */
    test_pool_act_linear();
    return KD_TEST_DONE();
}
