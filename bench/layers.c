/* Convolution forward and backward GFLOP/s through kd_conv (bench/layers.sh
 * runs the same shapes through torch.nn.functional.conv2d).
 *
 *   layers THREADS SECS N,C,H,W,O,k,stride,pad,groups|sgemm [...]
 *
 * One JSON line per shape: {"shape", "fwd_ms", "bwd_ms", "fwd_gflops",
 * "bwd_gflops"}; for the word sgemm, the sgemm peak (bench_peak.h: 2048^3 through kd_gemm)
 * and the BLIS kernels in use.  Backward computes dx and dw (no bias), i.e.
 * twice the forward FLOPs.  Times are the fastest of several runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_gemm.h"
#include "kd_layers.h"

#include "bench_peak.h"

/* Repeat stmt until secs have passed (at least 3 runs after a warm-up); out
 * gets the FASTEST run's seconds: on a shared machine the minimum is the
 * estimate least disturbed by other processes (the peer does the same). */
#define TIMED(secs, out, stmt)                                                                                    \
    do {                                                                                                          \
        stmt;                                                                                                     \
        int reps_ = 0;                                                                                            \
        double t0_ = kd_now(), best_ = 1e30, t_;                                                                  \
        do {                                                                                                      \
            double s_ = kd_now();                                                                                 \
            stmt;                                                                                                 \
            t_ = kd_now();                                                                                        \
            if (t_ - s_ < best_)                                                                                  \
                best_ = t_ - s_;                                                                                  \
            reps_++;                                                                                              \
        } while (t_ - t0_ < (secs) || reps_ < 3);                                                                 \
        (out) = best_;                                                                                            \
    } while (0)

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: layers THREADS SECS N,C,H,W,O,k,stride,pad,groups|sgemm ...\n");
        return 2;
    }
    kd_gemm_init(atoi(argv[1]));
    double secs = atof(argv[2]);
    for (int a = 3; a < argc; a++) {
        if (!strcmp(argv[a], "sgemm")) {
            printf("{\"sgemm_peak\": %.1f, \"blis\": \"%s\", \"blis_source\": \"%s\"}\n", sgemm_peak(),
                   kd_gemm_arch(), kd_gemm_arch_source());
            continue;
        }
        int N, C, H, W, O, k, s, p, g;
        kd_conv c;
        if (sscanf(argv[a], "%d,%d,%d,%d,%d,%d,%d,%d,%d", &N, &C, &H, &W, &O, &k, &s, &p, &g) != 9 ||
            kd_conv_init(&c, N, C, H, W, O, k, s, p, g)) {
            fprintf(stderr, "layers: bad shape '%s'\n", argv[a]);
            return 2;
        }
        size_t nx = (size_t)N * C * H * W, nw = (size_t)O * (C / g) * k * k, ny = (size_t)N * O * c.Ho * c.Wo;
        float *x = bench_filled(nx, 4), *w = bench_filled(nw, 5), *y = bench_filled(ny, 6), *dy = bench_filled(ny, 7);
        float *dx = bench_filled(nx, 8), *dw = bench_filled(nw, 9), *ws = bench_filled(kd_conv_workspace(&c), 10);
        double tf, tb, flops = 2.0 * ny * (C / g) * k * k;
        TIMED(secs, tf, kd_conv_forward(&c, x, w, NULL, y, ws));
        TIMED(secs, tb, kd_conv_backward(&c, x, w, dy, dx, dw, NULL, ws));
        printf("{\"shape\": \"%s\", \"fwd_ms\": %.3f, \"bwd_ms\": %.3f, \"fwd_gflops\": %.2f, \"bwd_gflops\": %.2f}\n",
               argv[a], 1e3 * tf, 1e3 * tb, flops / tf / 1e9, 2 * flops / tb / 1e9);
        fflush(stdout);
        free(x), free(w), free(y), free(dy), free(dx), free(dw), free(ws);
    }
    return 0;
}
