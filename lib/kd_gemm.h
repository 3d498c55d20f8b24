/* kd_gemm — the one matrix-product wrapper of kdpipe, over BLIS.
 *
 * Row-major: C[M,N] = alpha * op(A) * op(B) + beta * C, where op(A) is
 * [M,K] (A stored [M,K] with leading dimension lda, or [K,M] when ta).
 *
 * Debian's BLIS 0.9 does not recognise AMD EPYC CPUs with AVX-512 and runs
 * its slow `generic` kernels; kd_gemm_init() picks skx (AVX-512), haswell
 * (AVX2+FMA) or generic from cpuid unless the user set BLIS_ARCH_TYPE, before
 * BLIS initialises.  Every program calls kd_gemm_init() once (kd_cli does on
 * --version); kd_gemm() calls it lazily too. */
#ifndef KD_GEMM_H
#define KD_GEMM_H

/* BLIS and OpenMP (omp_set_num_threads) both use threads, or when it is <= 0
 * kd_cpu_available() (the affinity mask, the cgroup quota, OMP_NUM_THREADS).  Safe to call again to change threads; kd_conv reads
 * the OpenMP count when it is initialised. */
int kd_gemm_init(int threads); /* -1 with kd_err (out of memory) */
/* Name of the kernel set BLIS is using (e.g. "skx"), and why ("auto", "env"). */
const char *kd_gemm_arch(void);
const char *kd_gemm_arch_source(void);

void kd_gemm(int ta, int tb, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);

/* The same product on the calling thread only: for callers that split work
 * across cores themselves (inside an OpenMP parallel region). */
void kd_gemm_serial(int ta, int tb, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc);

/* The naive triple loop, in double accumulation, for the tests. */
void kd_gemm_ref(int ta, int tb, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc);

#endif
