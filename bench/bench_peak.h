/* The sgemm peak the benchmarks report their GFLOP/s against: the best of
 * three 2048^3 products through kd_gemm, with whatever threads kd_gemm was
 * initialised for.  Included by bench/inference.c, train.c, layers.c and
 * wino.c; with bench_filled, their test data. */
#ifndef KD_BENCH_PEAK_H
#define KD_BENCH_PEAK_H

#include <stdio.h>
#include <stdlib.h>

#include "kd_cli.h"
#include "kd_gemm.h"

/* n floats of a fixed pseudo-random sequence in [-0.5, 0.5); exits when
 * out of memory. */
static inline float *bench_filled(size_t n, unsigned seed)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    if (!v) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return v;
}

static double sgemm_peak(void)
{
    int n = 2048;
    float *A = malloc(sizeof(float) * n * n), *B = malloc(sizeof(float) * n * n), *C = malloc(sizeof(float) * n * n);
    if (!A || !B || !C) {
        free(A), free(B), free(C);
        return 0;
    }
    for (long i = 0; i < (long)n * n; i++)
        A[i] = (float)(i % 7) * 0.1f, B[i] = (float)(i % 5) * 0.1f;
    kd_gemm(0, 0, n, n, n, 1, A, n, B, n, 0, C, n);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t = kd_now();
        kd_gemm(0, 0, n, n, n, 1, A, n, B, n, 0, C, n);
        t = kd_now() - t;
        if (2.0 * n * n * n / t / 1e9 > best)
            best = 2.0 * n * n * n / t / 1e9;
    }
    free(A), free(B), free(C);
    return best;
}

#endif
