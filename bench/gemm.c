/* sgemm GFLOP/s through kd_gemm: the kernels kdpipe selects, at sizes that
 * matter (large square, and a conv-like tall-skinny product).  Run twice by
 * bench/gemm.sh: once as is, once with BLIS_ARCH_TYPE=generic. */
#include <stdio.h>
#include <stdlib.h>

#include "kd_cli.h"
#include "kd_gemm.h"

static double run(int M, int N, int K, int reps)
{
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
    for (long i = 0; i < (long)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (long i = 0; i < (long)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
    kd_gemm(0, 0, M, N, K, 1, A, K, B, N, 0, C, N);
    double t = kd_now();
    for (int r = 0; r < reps; r++)
        kd_gemm(0, 0, M, N, K, 1, A, K, B, N, 0, C, N);
    t = kd_now() - t;
    free(A); free(B); free(C);
    return 2.0 * M * N * K * reps / t / 1e9;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    kd_gemm_init(threads);
    printf("{\"arch\": \"%s\", \"source\": \"%s\", \"threads\": %d, \"square2048\": %.1f, \"conv_like\": %.1f}\n",
           kd_gemm_arch(), kd_gemm_arch_source(), threads, run(2048, 2048, 2048, 3), run(128, 1024, 1152, 20));
    return 0;
}
