#include "kd_gemm.h"

#include <blis.h>
#include <stdlib.h>
#include <unistd.h>

static int inited;
static const char *arch_source = "auto";

static void select_arch(void)
{
    if (getenv("BLIS_ARCH_TYPE")) {
        arch_source = "env";
        return;
    }
    __builtin_cpu_init();
    const char *arch = "generic";
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        arch = "skx";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        arch = "haswell";
    setenv("BLIS_ARCH_TYPE", arch, 0);
}

void kd_gemm_init(int threads)
{
    if (!inited) {
        select_arch();
        bli_init();
        inited = 1;
    }
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    bli_thread_set_num_threads(threads);
}

const char *kd_gemm_arch(void)
{
    if (!inited)
        kd_gemm_init(0);
    return bli_arch_string(bli_arch_query_id());
}

const char *kd_gemm_arch_source(void)
{
    return arch_source;
}

void kd_gemm(int ta, int tb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc)
{
    if (!inited)
        kd_gemm_init(0);
    if (M <= 0 || N <= 0)
        return;
    /* BLIS takes general strides, so row-major needs no transposition trick:
     * op(A) is M x K; A's stored (row, col) strides are (lda, 1). */
    bli_sgemm(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
              M, N, K, &alpha,
              (float *)A, lda, 1,
              (float *)B, ldb, 1,
              &beta, C, ldc, 1);
}

void kd_gemm_ref(int ta, int tb, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(long)k * lda + i] : A[(long)i * lda + k];
                double b = tb ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                s += a * b;
            }
            float c = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
            C[(long)i * ldc + j] = (float)(alpha * s) + c;
        }
}
