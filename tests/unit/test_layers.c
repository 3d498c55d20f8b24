/* Layer kernels against their naive references, and gradients against
 * central finite differences (loss = sum(y * r) for a fixed random r);
 * dropout's statistics; workspace bounds; backward accumulation.
 * test_layers_torch.c compares with PyTorch. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kd_layers.h"
#include "kd_rng.h"
#include "kd_test.h"
#include "kd_test_data.h"

static kd_rng rng;

static float *rnd(size_t n) { return kd_test_normal(&rng, n); }
static float *zeros(size_t n) { return kd_test_zeros(n); }

static void conv_case(int N, int C, int H, int W, int O, int k, int s, int p, int g, const char *path)
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
             "conv N%d C%d %dx%d O%d k%d s%d p%d g%d (%s) vs ref: y %.1e dx %.1e dw %.1e db %.1e", N, C, H, W, O, k, s,
             p, g, path, ef, ex, ew, eb);
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

/* 3x3 stride-1 pad-1 layers have two paths (the direct kernel of
 * kd_conv_direct.c and im2col + GEMM): each is checked. */
static void test_conv(int N, int C, int H, int W, int O, int k, int s, int p, int g)
{
    if (g != 1 || k != 3 || s != 1 || p != 1) {
        conv_case(N, C, H, W, O, k, s, p, g, "default");
        return;
    }
    const char *paths[] = {"direct", "gemm"};
    for (int i = 0; i < 2; i++) {
        setenv("KDPIPE_CONV", paths[i], 1);
        conv_case(N, C, H, W, O, k, s, p, g, paths[i]);
    }
    unsetenv("KDPIPE_CONV");
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
           e3 = kd_test_relerr(dx, dxr, (long)n, 1e-3), e4 = kd_test_relerr(dg, dgr, C, 1e-3),
           e5 = kd_test_relerr(db, dbr, C, 1e-3), e6 = kd_test_relerr(rm1, rm2, C, 1e-3),
           e7 = kd_test_relerr(m1, m2, (long)G * C, 1e-3), e8 = kd_test_relerr(r1, r2, (long)G * C, 1e-3);
    KD_CHECK(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-4 && e4 < 1e-4,
             "bn N%d C%d HW%d group %d vs ref: y %.1e run_var %.1e dx %.1e dgamma %.1e", N, C, HW, group, e1, e2, e3, e4);
    KD_CHECK(e5 < 1e-5 && e6 < 1e-5 && e7 < 1e-5 && e8 < 1e-5,
             "bn N%d C%d HW%d group %d vs ref: dbeta %.1e run_mean %.1e saved mean %.1e saved rstd %.1e", N, C, HW,
             group, e5, e6, e7, e8);
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

static void test_pool_act(void)
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
}

/* NaN and infinities through every activation as PyTorch 2 computes them
 * (F.relu, F.relu6, F.silu, F.hardswish, F.hardsigmoid, torch.sigmoid of
 * [nan, inf, -inf, 3, -3, 0]), and through max pooling: NaN must survive,
 * or a NaN input becomes a finite, wrong loss.  ReLU on 100000 values also
 * takes the multi-core loop. */
static int same_value(float a, float b) { return (isnan(a) && isnan(b)) || a == b; }

static void test_act_nonfinite(void)
{
    const float nan = NAN, inf = INFINITY;
    const float in[6] = {nan, inf, -inf, 3, -3, 0};
    const struct {
        kd_act a;
        const char *name;
        float want[6];
    } cases[] = {
        {KD_RELU, "relu", {nan, inf, 0, 3, 0, 0}},
        {KD_RELU6, "relu6", {nan, 6, 0, 3, 0, 0}},
        {KD_SILU, "silu", {nan, inf, nan, 2.857722520828247f, -0.14227761328220367f, 0}},
        {KD_HSWISH, "hardswish", {nan, inf, nan, 3, 0, 0}},
        {KD_HSIGMOID, "hardsigmoid", {nan, 1, 0, 1, 0, 0.5f}},
        {KD_SIGMOID, "sigmoid", {nan, 1, 0, 0.9525741338729858f, 0.04742587357759476f, 0.5f}},
    };
    size_t n = 100000;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (size_t i = 0; i < n; i++) x[i] = in[i % 6];
        kd_act_forward(cases[c].a, x, y, n);
        int ok = 1;
        for (size_t i = 0; i < n; i++)
            ok &= same_value(y[i], cases[c].want[i % 6]) ||
                  fabsf(y[i] - cases[c].want[i % 6]) <= 1e-6f * fabsf(cases[c].want[i % 6]);
        KD_CHECK(ok, "%s of nan, inf, -inf, 3, -3, 0 as PyTorch: %g %g %g %g %g %g", cases[c].name, y[0], y[1],
                 y[2], y[3], y[4], y[5]);
    }
    free(x), free(y);
    kd_pool p;
    kd_pool_init(&p, 1, 1, 2, 2, 2, 2, 0);
    float px[4] = {1, nan, 3, 4}, py[1];
    int32_t idx[1];
    kd_maxpool_forward(&p, px, py, idx);
    KD_CHECK(isnan(py[0]) && idx[0] == 1, "maxpool keeps a NaN (PyTorch: nan)");
}

/* linear (kd_gemm) against its reference, value and gradient (x, W, b),
 * both accumulating into gradients that start non-zero; then the reference
 * gradient against central differences. */
static void test_linear(int N, int I, int O, int bias)
{
    size_t nx = (size_t)N * I, nw = (size_t)O * I, ny = (size_t)N * O;
    float *x = rnd(nx), *W = rnd(nw), *b = bias ? rnd(O) : NULL, *dy = rnd(ny), *y = zeros(ny), *yr = zeros(ny);
    float *dx = rnd(nx), *dW = rnd(nw), *db = rnd(O), *dxr = zeros(nx), *dWr = zeros(nw), *dbr = zeros(O);
    memcpy(dxr, dx, sizeof(float) * nx), memcpy(dWr, dW, sizeof(float) * nw), memcpy(dbr, db, sizeof(float) * O);
    kd_linear_forward(N, I, O, x, W, b, y);
    kd_linear_forward_ref(N, I, O, x, W, b, yr);
    kd_linear_backward(N, I, O, x, W, dy, dx, dW, db);
    kd_linear_backward_ref(N, I, O, x, W, dy, dxr, dWr, dbr);
    double ef = kd_test_relerr(y, yr, (long)ny, 1e-3), ex = kd_test_relerr(dx, dxr, (long)nx, 1e-3),
           ew = kd_test_relerr(dW, dWr, (long)nw, 1e-3), eb = kd_test_relerr(db, dbr, O, 1e-3);
    KD_CHECK(ef < 1e-5 && ex < 1e-5 && ew < 1e-5 && eb < 1e-5,
             "linear N%d I%d O%d%s vs ref: y %.1e dx %.1e dW %.1e db %.1e", N, I, O, bias ? "" : " no bias", ef, ex,
             ew, eb);
    /* the reference's gradient (from zero) against finite differences of sum(y * dy) */
    float *gx = zeros(nx), *gw = zeros(nw), *gb = zeros(O);
    kd_linear_backward_ref(N, I, O, x, W, dy, gx, gw, gb);
    double worst = 0;
    for (int t = 0; t < 6 + 2 * bias; t++) {
        int k = t % (2 + bias);
        float *v = k == 0 ? x : k == 1 ? W : b, *gv = k == 0 ? gx : k == 1 ? gw : gb;
        size_t n = k == 0 ? nx : k == 1 ? nw : (size_t)O, i = (size_t)kd_rng_below(&rng, n);
        float save = v[i], h = 1e-2f;
        double f[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            v[i] = save + (sgn ? -h : h);
            kd_linear_forward_ref(N, I, O, x, W, b, yr);
            double sum = 0;
            for (size_t j = 0; j < ny; j++)
                sum += (double)yr[j] * dy[j];
            f[sgn] = sum;
        }
        v[i] = save;
        double fd = (f[0] - f[1]) / (2 * h), e = fabs(fd - gv[i]) / (fabs(gv[i]) + 1e-2);
        worst = e > worst ? e : worst;
    }
    KD_CHECK(worst < 1e-2, "linear reference finite differences: worst rel err %.1e", worst);
    free(x), free(W), free(b), free(dy), free(y), free(yr), free(dx), free(dW), free(db), free(dxr), free(dWr);
    free(dbr), free(gx), free(gw), free(gb);
}

/* loss = sum(y * r) for a forward f over x; central differences on every
 * element of x against the analytic gradient g (small shapes only). */
typedef void (*fwd_fn)(const float *x, float *y, void *ctx);
static double fd_worst(fwd_fn f, void *ctx, float *x, size_t nx, size_t ny, const float *r, const float *g)
{
    float *y = zeros(ny);
    double worst = 0;
    for (size_t i = 0; i < nx; i++) {
        float save = x[i], h = 1e-2f;
        double l[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            x[i] = save + (sgn ? -h : h);
            f(x, y, ctx);
            double sum = 0;
            for (size_t j = 0; j < ny; j++)
                sum += (double)y[j] * r[j];
            l[sgn] = sum;
        }
        x[i] = save;
        double e = fabs((l[0] - l[1]) / (2 * h) - g[i]) / (fabs(g[i]) + 1e-2);
        worst = e > worst ? e : worst;
    }
    free(y);
    return worst;
}

static void avg_fwd(const float *x, float *y, void *ctx) { kd_avgpool_forward(ctx, x, y); }
static void max_fwd(const float *x, float *y, void *ctx)
{
    const kd_pool *p = ctx;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)p->N * p->C * p->Ho * p->Wo);
    kd_maxpool_forward(p, x, y, idx);
    free(idx);
}
static void adapt_fwd(const float *x, float *y, void *ctx)
{
    (void)ctx;
    kd_adaptive_avgpool_forward(2, 3, 7, 5, 3, 2, x, y);
}
static const float *scale_s;
static void scale_fwd_x(const float *x, float *y, void *ctx)
{
    (void)ctx;
    kd_scale_forward(2, 3, 5, x, scale_s, y);
}
static const float *scale_x;
static void scale_fwd_s(const float *s, float *y, void *ctx)
{
    (void)ctx;
    kd_scale_forward(2, 3, 5, scale_x, s, y);
}

/* Pools, adaptive pool and channel scaling: gradients by central differences
 * on every input element, and backward accumulates (twice = double). */
static void test_pool_scale_fd(void)
{
    kd_pool p;
    int cfg[2][3] = {{3, 2, 1}, {2, 2, 0}};
    for (int t = 0; t < 2; t++) {
        kd_pool_init(&p, 2, 3, 7, 6, cfg[t][0], cfg[t][1], cfg[t][2]);
        size_t nx = 2 * 3 * 7 * 6, ny = (size_t)2 * 3 * p.Ho * p.Wo;
        float *x = rnd(nx), *r = rnd(ny), *y = zeros(ny), *g = zeros(nx), *g2 = zeros(nx);
        int32_t *idx = malloc(sizeof(int32_t) * ny);
        kd_avgpool_forward(&p, x, y);
        kd_avgpool_backward(&p, r, g);
        double ea = fd_worst(avg_fwd, &p, x, nx, ny, r, g);
        kd_avgpool_backward(&p, r, g2);
        kd_avgpool_backward(&p, r, g2);
        double acc = 0;
        for (size_t i = 0; i < nx; i++)
            acc = fmax(acc, fabs(g2[i] - 2 * g[i]));
        memset(g, 0, sizeof(float) * nx);
        /* distinct values 0.05 apart, so that the +-h steps never change an argmax */
        int64_t perm[2 * 3 * 7 * 6];
        kd_rng_permute(&rng, perm, (int64_t)nx);
        for (size_t i = 0; i < nx; i++)
            x[i] = 0.05f * (float)perm[i];
        kd_maxpool_forward(&p, x, y, idx);
        kd_maxpool_backward(&p, idx, r, g);
        double em = fd_worst(max_fwd, &p, x, nx, ny, r, g);
        KD_CHECK(ea < 1e-2 && em < 1e-2 && acc < 1e-6,
                 "pool k%d s%d p%d: avg fd %.1e, max fd %.1e, backward accumulates (%.1e)", cfg[t][0], cfg[t][1],
                 cfg[t][2], ea, em, acc);
        free(x), free(r), free(y), free(g), free(g2), free(idx);
    }
    {
        size_t nx = 2 * 3 * 7 * 5, ny = 2 * 3 * 3 * 2;
        float *x = rnd(nx), *r = rnd(ny), *g = zeros(nx);
        kd_adaptive_avgpool_backward(2, 3, 7, 5, 3, 2, r, g);
        double e = fd_worst(adapt_fwd, NULL, x, nx, ny, r, g);
        KD_CHECK(e < 1e-2, "adaptive avgpool 7x5 -> 3x2 finite differences: %.1e", e);
        free(x), free(r), free(g);
    }
    {
        size_t nx = 2 * 3 * 5, ns = 2 * 3;
        float *x = rnd(nx), *s = rnd(ns), *r = rnd(nx), *gx = zeros(nx), *gs = zeros(ns);
        kd_scale_backward(2, 3, 5, x, s, r, gx, gs);
        scale_s = s, scale_x = x;
        double ex = fd_worst(scale_fwd_x, NULL, x, nx, nx, r, gx), es = fd_worst(scale_fwd_s, NULL, s, ns, nx, r, gs);
        KD_CHECK(ex < 1e-2 && es < 1e-2, "channel scale finite differences: dx %.1e ds %.1e", ex, es);
        free(x), free(s), free(r), free(gx), free(gs);
    }
}

/* Inverted dropout: mask is 0 or 1/(1-p), keep rate near 1-p, y = x*mask,
 * backward is dy*mask accumulated; p = 0 keeps everything. */
static void test_dropout(void)
{
    size_t n = 100000;
    float p = 0.3f, *x = rnd(n), *y = zeros(n), *m = zeros(n), *dy = rnd(n), *dx = zeros(n);
    kd_rng r = kd_rng_make(5, 1, 2);
    kd_dropout_forward(x, y, m, n, p, &r);
    size_t kept = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i] != 0)
            kept++;
        if ((m[i] != 0 && fabsf(m[i] - 1 / (1 - p)) > 1e-6f) || y[i] != x[i] * m[i])
            bad++;
    }
    double rate = (double)kept / n;
    for (size_t i = 0; i < n; i++)
        dx[i] = 1;
    kd_dropout_backward(m, dy, dx, n);
    for (size_t i = 0; i < n; i++)
        if (dx[i] != 1 + dy[i] * m[i])
            bad++;
    KD_CHECK(!bad && fabs(rate - (1 - p)) < 0.01, "dropout p=0.3: keep rate %.4f, %zu bad elements", rate, bad);
    kd_dropout_forward(x, y, m, n, 0, &r);
    bad = 0;
    for (size_t i = 0; i < n; i++)
        if (y[i] != x[i] || m[i] != 1)
            bad++;
    KD_CHECK(!bad, "dropout p=0 is the identity (%zu bad)", bad);
    free(x), free(y), free(m), free(dy), free(dx);
}

/* The optimised conv stays inside kd_conv_workspace() floats (a canary
 * right after it), and its backward accumulates. */
static void test_conv_workspace(int N, int C, int H, int W, int O, int k, int s, int pd, int g)
{
    kd_conv c;
    kd_conv_init(&c, N, C, H, W, O, k, s, pd, g);
    size_t nx = (size_t)N * C * H * W, nw = (size_t)O * (C / g) * k * k, ny = (size_t)N * O * c.Ho * c.Wo;
    size_t nws = kd_conv_workspace(&c);
    float *x = rnd(nx), *w = rnd(nw), *dy = rnd(ny), *y = zeros(ny), *ws = zeros(nws + 64);
    float *dx = zeros(nx), *dw = zeros(nw), *dx2 = zeros(nx), *dw2 = zeros(nw);
    for (int i = 0; i < 64; i++)
        ws[nws + i] = 12345.0f;
    kd_conv_forward(&c, x, w, NULL, y, ws);
    kd_conv_backward(&c, x, w, dy, dx, dw, NULL, ws);
    kd_conv_backward(&c, x, w, dy, dx2, dw2, NULL, ws);
    kd_conv_backward(&c, x, w, dy, dx2, dw2, NULL, ws);
    int canary = 1;
    for (int i = 0; i < 64; i++)
        canary &= ws[nws + i] == 12345.0f;
    for (size_t i = 0; i < nx; i++)
        dx[i] *= 2;
    for (size_t i = 0; i < nw; i++)
        dw[i] *= 2;
    double e = fmax(kd_test_relerr(dx2, dx, (long)nx, 1e-3), kd_test_relerr(dw2, dw, (long)nw, 1e-3));
    KD_CHECK(canary && e < 1e-5,
             "conv N%d C%d %dx%d O%d k%d s%d g%d: workspace %zu floats respected, backward accumulates (%.1e)", N, C,
             H, W, O, k, s, g, nws, e);
    free(x), free(w), free(dy), free(y), free(ws), free(dx), free(dw), free(dx2), free(dw2);
}

/* The per-image path sums weight gradients over fixed image ranges, so one
 * thread and two give the same bits. */
static void test_conv_threads(int N, int C, int H, int W, int O, int k, int s, int pd)
{
    kd_conv c1, c2;
    omp_set_num_threads(1);
    kd_conv_init(&c1, N, C, H, W, O, k, s, pd, 1);
    omp_set_num_threads(2);
    kd_conv_init(&c2, N, C, H, W, O, k, s, pd, 1);
    size_t nx = (size_t)N * C * H * W, nw = (size_t)O * C * k * k, ny = (size_t)N * O * c1.Ho * c1.Wo;
    float *x = rnd(nx), *w = rnd(nw), *b = rnd(O), *dy = rnd(ny);
    float *y1 = zeros(ny), *y2 = zeros(ny), *ws1 = zeros(kd_conv_workspace(&c1)), *ws2 = zeros(kd_conv_workspace(&c2));
    float *dx1 = zeros(nx), *dx2 = zeros(nx), *dw1 = zeros(nw), *dw2 = zeros(nw), *db1 = zeros(O), *db2 = zeros(O);
    kd_conv_forward(&c1, x, w, b, y1, ws1);
    kd_conv_forward(&c2, x, w, b, y2, ws2);
    kd_conv_backward(&c1, x, w, dy, dx1, dw1, db1, ws1);
    kd_conv_backward(&c2, x, w, dy, dx2, dw2, db2, ws2);
    KD_CHECK(c1.nt == 1 && c2.nt == 2 && !memcmp(y1, y2, ny * 4) && !memcmp(dx1, dx2, nx * 4) &&
                 !memcmp(dw1, dw2, nw * 4) && !memcmp(db1, db2, (size_t)O * 4),
             "conv N%d C%d %dx%d O%d k%d s%d: 1 and 2 threads give identical y, dx, dw, db", N, C, H, W, O, k, s);
    free(x), free(w), free(b), free(dy), free(y1), free(y2), free(ws1), free(ws2);
    free(dx1), free(dx2), free(dw1), free(dw2), free(db1), free(db2);
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
    test_conv(1, 2, 3, 300, 2, 3, 1, 1, 2); /* depthwise wider than one column block */
    test_conv(2, 3, 9, 11, 3, 3, 2, 0, 3);  /* depthwise stride 2, no padding, odd width */
    test_conv(1, 2, 10, 10, 2, 9, 1, 4, 2); /* depthwise 9x9: grouped GEMM path */
    test_conv(1, 2, 80, 80, 2, 3, 1, 1, 2); /* depthwise plane too large for the flat stride-1 path */
    test_conv(140, 2, 8, 8, 3, 3, 1, 1, 1); /* several image chunks */
    /* planes of >= 256 outputs: image by image on each core */
    test_conv(3, 8, 16, 16, 5, 3, 1, 1, 1);   /* dx as a flipped convolution */
    test_conv(2, 8, 20, 19, 4, 3, 1, 0, 1);   /* ... without padding (flipped padding 2) */
    test_conv(2, 8, 16, 16, 4, 5, 1, 2, 1);   /* ... 5x5 */
    test_conv(3, 3, 33, 32, 4, 3, 2, 1, 1);   /* stride 2: col2im */
    /* planes of more than 256 outputs: in bands of rows (a partial last band) */
    test_conv(2, 8, 33, 31, 5, 3, 1, 1, 1);   /* shifted-plane im2col, flipped dx */
    test_conv(2, 3, 45, 40, 4, 3, 2, 1, 1);   /* stride 2 */
    test_conv(2, 16, 32, 32, 16, 3, 1, 1, 1); /* resnet20's first stage */
    test_conv(2, 5, 16, 16, 7, 1, 1, 0, 1);   /* pointwise */
    test_conv(11, 2, 16, 16, 3, 3, 1, 1, 1);  /* images not a multiple of the gradient parts */
    /* the direct kernel: channels not a multiple of its blocks, one input
     * channel (a stem), planes narrower than a vector, several images per
     * weight-gradient group, 1x1 and one-row planes */
    test_conv(2, 1, 28, 28, 16, 3, 1, 1, 1);
    test_conv(3, 5, 14, 14, 6, 3, 1, 1, 1);
    test_conv(3, 16, 7, 7, 16, 3, 1, 1, 1);
    test_conv(19, 64, 8, 8, 64, 3, 1, 1, 1);
    test_conv(10, 32, 16, 16, 36, 3, 1, 1, 1);
    test_conv(2, 24, 9, 13, 20, 3, 1, 1, 1);
    test_conv(2, 3, 1, 1, 3, 3, 1, 1, 1);
    test_conv(2, 8, 1, 40, 12, 3, 1, 1, 1);
    test_bn(6, 3, 10, 0);
    test_bn(8, 4, 5, 2);
    test_bn(5, 7, 1, 0); /* BatchNorm1d */
    test_pool_act();
    test_act_nonfinite();
    test_linear(7, 13, 5, 1);
    test_linear(3, 40, 9, 0); /* no bias */
    test_linear(130, 64, 10, 1); /* a classifier head on a batch */
    test_pool_scale_fd();
    test_dropout();
    test_conv_workspace(3, 4, 9, 9, 6, 3, 2, 1, 1);
    test_conv_workspace(40, 3, 16, 16, 4, 3, 1, 1, 1);
    test_conv_workspace(140, 2, 8, 8, 3, 3, 1, 1, 1);
    test_conv_workspace(2, 8, 20, 19, 4, 3, 1, 0, 1);
    test_conv_workspace(2, 3, 20, 19, 4, 3, 1, 0, 1);
    test_conv_workspace(3, 3, 33, 32, 4, 3, 2, 1, 1);
    test_conv_workspace(2, 8, 33, 31, 5, 3, 1, 1, 1);
    test_conv_workspace(2, 5, 16, 16, 7, 1, 1, 0, 1);
    test_conv_workspace(2, 2, 1, 1, 64, 1, 1, 0, 1); /* dW^T [K,O] larger than the chunk's columns */
    test_conv_threads(11, 8, 16, 16, 4, 3, 1, 1);
    test_conv_threads(17, 16, 14, 14, 16, 3, 1, 1); /* the direct kernel */
    test_conv_threads(21, 64, 8, 8, 60, 3, 1, 1);
    test_conv_workspace(9, 16, 7, 7, 20, 3, 1, 1, 1);
    test_conv_workspace(19, 64, 8, 8, 64, 3, 1, 1, 1);
    test_conv_threads(11, 3, 16, 16, 4, 3, 1, 1);
    test_conv_threads(5, 2, 33, 32, 3, 3, 2, 1);
    test_conv_workspace(2, 6, 5, 5, 8, 1, 1, 0, 1);
    test_conv_workspace(2, 6, 7, 7, 6, 3, 1, 1, 3);
    test_conv_workspace(2, 6, 7, 7, 6, 3, 2, 1, 6);
    return KD_TEST_DONE();
}
