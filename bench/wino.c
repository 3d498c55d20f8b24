/* im2col + GEMM against Winograd F(2x2,3x3) and F(4x4,3x3) per 3x3 layer
 * shape (bench/wino.sh; the table of bench/results-wino.md and the rule in
 * lib/nn/kd_conv_wino.c come from it).
 *
 *   wino THREADS ROUNDS N,C,H,W,O [...]
 *
 * The three modes alternate within each round (a loaded machine hurts all
 * alike); a round's time is the fastest of 3 runs, the reported time the
 * median over rounds.  One line per shape: forward and backward (dx + dw)
 * milliseconds of each mode. */
#include <stdio.h>
#include <stdlib.h>

#include "kd_cli.h"
#include "kd_gemm.h"
#include "kd_layers.h"
#include "nn/kd_layers_impl.h"

#include "bench_peak.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAXR 32

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: wino THREADS ROUNDS N,C,H,W,O ...\n");
        return 2;
    }
    kd_gemm_init(atoi(argv[1]));
    int rounds = atoi(argv[2]);
    rounds = rounds < 1 ? 1 : rounds > MAXR ? MAXR : rounds;
    static const int modes[3] = {1, 2, 4};
    printf("(sgemm peak %.1f GFLOP/s, BLIS %s)\n", sgemm_peak(), kd_gemm_arch());
    printf("%-22s %9s %9s %9s %9s %9s %9s\n", "N,C,H,W,O", "gemm_fwd", "w2_fwd", "w4_fwd", "gemm_bwd", "w2_bwd",
           "w4_bwd");
    for (int a = 3; a < argc; a++) {
        int N, C, H, W, O;
        if (sscanf(argv[a], "%d,%d,%d,%d,%d", &N, &C, &H, &W, &O) != 5) {
            fprintf(stderr, "wino: bad shape '%s'\n", argv[a]);
            return 2;
        }
        /* one layer per mode: kd_conv_init fixes a layer's kernel */
        kd_conv cm[3];
        size_t nws = 0;
        for (int k = 0; k < 3; k++) {
            kd_conv_wino_force(modes[k]);
            if (kd_conv_init(&cm[k], N, C, H, W, O, 3, 1, 1, 1)) {
                fprintf(stderr, "wino: bad shape '%s'\n", argv[a]);
                return 2;
            }
            size_t s = kd_conv_workspace(&cm[k]);
            nws = s > nws ? s : nws;
        }
        size_t nx = (size_t)N * C * H * W, nw = (size_t)O * C * 9, ny = (size_t)N * O * H * W;
        float *x = bench_filled(nx, 4), *w = bench_filled(nw, 5), *y = bench_filled(ny, 6), *dy = bench_filled(ny, 7);
        float *dx = bench_filled(nx, 8), *dw = bench_filled(nw, 9), *ws = bench_filled(nws, 10);
        double t[3][2][MAXR];
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < 3; k++) {
                const kd_conv *c = &cm[k];
                double bf = 1e30, bb = 1e30;
                for (int i = 0; i < 3; i++) {
                    double s0 = kd_now();
                    kd_conv_forward(c, x, w, NULL, y, ws);
                    double s1 = kd_now();
                    kd_conv_backward(c, x, w, dy, dx, dw, NULL, ws);
                    double s2 = kd_now();
                    bf = s1 - s0 < bf ? s1 - s0 : bf;
                    bb = s2 - s1 < bb ? s2 - s1 : bb;
                }
                t[k][0][r] = bf, t[k][1][r] = bb;
            }
        double med[3][2];
        for (int k = 0; k < 3; k++)
            for (int d = 0; d < 2; d++) {
                qsort(t[k][d], (size_t)rounds, sizeof(double), cmp);
                med[k][d] = 1e3 * t[k][d][rounds / 2];
            }
        printf("%-22s %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", argv[a], med[0][0], med[1][0], med[2][0], med[0][1],
               med[1][1], med[2][1]);
        fflush(stdout);
        free(x), free(w), free(y), free(dy), free(dx), free(dw), free(ws);
    }
    return 0;
}
