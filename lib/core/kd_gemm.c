#include "kd_gemm.h"

#include "kd_cpu.h"
#include "kd_err.h"

#include <blis.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int inited;
static const char *arch_source = "auto";

/* BLIS 0.9 reads BLIS_ARCH_TYPE as a number (arch_t); a name parses as 0.
 * Map names to ids through BLIS's own table so both forms work. */
static int arch_id(const char *name)
{
    for (int i = 0; i < BLIS_NUM_ARCHS; i++)
        if (!strcmp(bli_arch_string((arch_t)i), name))
            return i;
    return -1;
}

/* -1 when the choice cannot be passed on (setenv out of memory): BLIS would
 * then quietly run its generic kernels and compute other numbers. */
static int select_arch(void)
{
    char num[16];
    const char *env = getenv("BLIS_ARCH_TYPE");
    if (env && *env) {
        arch_source = "env";
        if (*env >= '0' && *env <= '9')
            return 0;
        int id = arch_id(env);
        if (id < 0) {
            arch_source = "env (unknown name, auto-selected)";
        } else {
            snprintf(num, sizeof num, "%d", id);
            return setenv("BLIS_ARCH_TYPE", num, 1);
        }
    }
    __builtin_cpu_init();
    const char *arch = "generic";
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        arch = "skx";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        arch = "haswell";
    int id = arch_id(arch);
    if (id >= 0) {
        snprintf(num, sizeof num, "%d", id);
        return setenv("BLIS_ARCH_TYPE", num, 1);
    }
    return 0;
}

int kd_gemm_init(int threads)
{
    if (!inited) {
        if (select_arch()) {
            kd_err_set("cannot select the BLIS kernels: %s", strerror(errno));
            return -1;
        }
        bli_init();
        inited = 1;
    }
    if (threads <= 0)
        threads = kd_cpu_available();
    omp_set_num_threads(threads); /* the layers' OpenMP loops follow the same count */
    bli_thread_set_num_threads(threads);
    return 0;
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

/* rntm NULL: BLIS's global thread count; else the given runtime. */
static void gemm(rntm_t *rntm, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc)
{
    if (!inited)
        kd_gemm_init(0);
    if (M <= 0 || N <= 0)
        return;
    /* BLIS takes general strides, so row-major needs no transposition trick:
     * op(A) is M x K; A's stored (row, col) strides are (lda, 1). */
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, M, N, K, &alpha,
                 (float *)A, lda, 1, (float *)B, ldb, 1, &beta, C, ldc, 1, NULL, rntm);
}

void kd_gemm(int ta, int tb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc)
{
    gemm(NULL, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void kd_gemm_serial(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    gemm(&rntm, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
