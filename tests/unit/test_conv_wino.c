/* Winograd convolution (lib/nn/kd_conv_wino.c) against the direct loops of
 * kd_conv_*_ref at every 3x3 stride-1 layer shape of the zoo (resnet18's
 * CIFAR stem, resnet8x4/32x4, resnet20/56, wrn_16_2/40_2) and odd plane
 * sizes, F(2x2,3x3) and F(4x4,3x3): y, dx, dw, db within 1e-4 of the
 * largest reference value; one thread and two give the same bits; the
 * workspace is respected; backward accumulates; KDPIPE_CONV=gemm's mode
 * turns it off. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kd_layers.h"
#include "kd_rng.h"
#include "kd_test.h"
#include "kd_test_data.h"
#include "nn/kd_layers_impl.h"

static kd_rng rng;

static float *rnd(size_t n) { return kd_test_normal(&rng, n); }
static float *zeros(size_t n) { return kd_test_zeros(n); }

#define CANARY 12345.0f

/* Forward and backward of c with workspace canaries; false if overrun. */
static int run(const kd_conv *c, const float *x, const float *w, const float *b, const float *dy, float *y, float *dx,
               float *dw, float *db)
{
    size_t n = kd_conv_workspace(c);
    float *ws = zeros(n + 16);
    for (int i = 0; i < 16; i++)
        ws[n + i] = CANARY;
    kd_conv_forward(c, x, w, b, y, ws);
    kd_conv_backward(c, x, w, dy, dx, dw, db, ws);
    int ok = 1;
    for (int i = 0; i < 16; i++)
        ok &= ws[n + i] == CANARY;
    free(ws);
    return ok;
}

static void test_shape(int N, int C, int H, int W, int O)
{
    kd_conv c;
    kd_conv_wino_force(2);
    if (kd_conv_init(&c, N, C, H, W, O, 3, 1, 1, 1)) {
        KD_CHECK(0, "conv init");
        return;
    }
    size_t nx = (size_t)N * C * H * W, nw = (size_t)O * C * 9, ny = (size_t)N * O * H * W;
    float *x = rnd(nx), *w = rnd(nw), *b = rnd(O), *dy = rnd(ny);
    float *yr = zeros(ny), *dxr = zeros(nx), *dwr = zeros(nw), *dbr = zeros(O);
    kd_conv_forward_ref(&c, x, w, b, yr);
    kd_conv_backward_ref(&c, x, w, dy, dxr, dwr, dbr);
    for (int m = 2; m <= 4; m += 2) {
        kd_conv_wino_force(m); /* a layer's kernel is fixed at its init */
        kd_conv_init(&c, N, C, H, W, O, 3, 1, 1, 1);
        float *y = zeros(ny), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(O);
        int ok = c.path == KD_CONV_WINO && c.wm == m && run(&c, x, w, b, dy, y, dx, dw, db);
        double ef = kd_test_relerr(y, yr, (long)ny, 1e-3), ex = kd_test_relerr(dx, dxr, (long)nx, 1e-3),
               ew = kd_test_relerr(dw, dwr, (long)nw, 1e-3), eb = kd_test_relerr(db, dbr, O, 1e-3);
        KD_CHECK(ok && ef < 1e-4 && ex < 1e-4 && ew < 1e-4 && eb < 1e-5,
                 "F(%dx%d,3x3) N%d %d->%d %dx%d vs direct: y %.1e dx %.1e dw %.1e db %.1e%s", m, m, N, C, O, H, W, ef,
                 ex, ew, eb, ok ? "" : " (workspace overrun or not applied)");
        free(y), free(dx), free(dw), free(db);
    }
    free(x), free(w), free(b), free(dy), free(yr), free(dxr), free(dwr), free(dbr);
}

/* Bit-identical results with 1 and 2 threads; backward accumulates. */
static void test_threads(int m, int N, int C, int H, int W, int O)
{
    kd_conv c1, c2;
    kd_conv_wino_force(m);
    omp_set_num_threads(1);
    kd_conv_init(&c1, N, C, H, W, O, 3, 1, 1, 1);
    omp_set_num_threads(2);
    kd_conv_init(&c2, N, C, H, W, O, 3, 1, 1, 1);
    size_t nx = (size_t)N * C * H * W, nw = (size_t)O * C * 9, ny = (size_t)N * O * H * W;
    float *x = rnd(nx), *w = rnd(nw), *b = rnd(O), *dy = rnd(ny);
    float *y1 = zeros(ny), *y2 = zeros(ny), *dx1 = zeros(nx), *dx2 = zeros(nx), *dw1 = zeros(nw), *dw2 = zeros(nw);
    float *db1 = zeros(O), *db2 = zeros(O);
    int ok = run(&c1, x, w, b, dy, y1, dx1, dw1, db1) && run(&c2, x, w, b, dy, y2, dx2, dw2, db2);
    KD_CHECK(ok && c1.nt == 1 && c2.nt == 2 && !memcmp(y1, y2, ny * 4) && !memcmp(dx1, dx2, nx * 4) &&
                 !memcmp(dw1, dw2, nw * 4) && !memcmp(db1, db2, (size_t)O * 4),
             "F(%dx%d,3x3) N%d %d->%d %dx%d: 1 and 2 threads give identical y, dx, dw, db", m, m, N, C, O, H, W);
    /* a second backward adds the same again */
    float *ws = zeros(kd_conv_workspace(&c2));
    kd_conv_backward(&c2, x, w, dy, dx2, dw2, db2, ws);
    double e = 0;
    for (size_t i = 0; i < nw; i++)
        e = fmax(e, fabs(dw2[i] - 2 * dw1[i]) / (fabs(dw1[i]) + 1));
    for (size_t i = 0; i < nx; i++)
        e = fmax(e, fabs(dx2[i] - 2 * dx1[i]) / (fabs(dx1[i]) + 1));
    KD_CHECK(e < 1e-5, "F(%dx%d,3x3): backward accumulates (%.1e)", m, m, e);
    free(ws), free(x), free(w), free(b), free(dy), free(y1), free(y2), free(dx1), free(dx2), free(dw1), free(dw2);
    free(db1), free(db2);
}

int main(void)
{
    rng = kd_rng_make(17, 0, 0);
    /* resnet18 (CIFAR stem) */
    test_shape(2, 64, 32, 32, 64);
    test_shape(3, 128, 16, 16, 128);
    test_shape(3, 256, 8, 8, 256);
    test_shape(3, 512, 4, 4, 512);
    /* resnet8x4 / resnet32x4 (the 128 and 256 layers as resnet18's) */
    test_shape(2, 32, 32, 32, 64);
    /* wrn_16_2 / wrn_40_2 (64 and 128 as resnet20 below and resnet8x4) */
    test_shape(2, 32, 32, 32, 32);
    test_shape(3, 128, 8, 8, 128);
    /* resnet20 / resnet56 */
    test_shape(3, 32, 16, 16, 32);
    test_shape(3, 64, 8, 8, 64);
    /* plane sizes not a multiple of the tile, images across chunks */
    test_shape(3, 32, 7, 9, 40);
    test_shape(5, 33, 5, 6, 35);
    test_shape(9, 48, 13, 11, 32);
    test_threads(2, 11, 32, 16, 16, 48);
    test_threads(4, 11, 32, 10, 13, 32);
    test_threads(2, 5, 256, 8, 8, 256);
    kd_conv c;
    kd_conv_wino_force(1);
    kd_conv_init(&c, 2, 64, 8, 8, 64, 3, 1, 1, 1);
    KD_CHECK(!kd_conv_wino_applies(&c) && c.path == KD_CONV_GEMM, "the gemm mode (KDPIPE_CONV=gemm) keeps im2col + GEMM");
    kd_conv_wino_force(2);
    kd_conv_init(&c, 2, 16, 8, 8, 64, 3, 1, 1, 1);
    KD_CHECK(!kd_conv_wino_applies(&c) && c.path != KD_CONV_WINO, "fewer than 32 input channels keep im2col + GEMM");
    /* the workspace was sized for the kernel of the init: a later mode
     * change does not move the layer to another one */
    kd_conv_init(&c, 3, 64, 8, 8, 64, 3, 1, 1, 1);
    kd_conv_wino_force(1);
    KD_CHECK(c.path == KD_CONV_WINO && c.wm == 2 && kd_conv_workspace(&c) == kd_conv_wino_workspace(&c),
             "a layer keeps the path and tile of its init when the mode changes after");
    {
        size_t nx = 3 * 64 * 64, nw = 64 * 64 * 9, ny = nx;
        float *x = rnd(nx), *w = rnd(nw), *b = rnd(64), *dy = rnd(ny);
        float *y = zeros(ny), *dx = zeros(nx), *dw = zeros(nw), *db = zeros(64);
        KD_CHECK(run(&c, x, w, b, dy, y, dx, dw, db), "and runs it within its workspace");
        free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
    }
    kd_conv_wino_force(-1);
    return KD_TEST_DONE();
}
