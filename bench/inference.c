/* kdpipe inference throughput: one architecture, eval mode, batch B of
 * 1-channel HxW inputs, as bench/inference.sh runs it (one process per
 * model, so /usr/bin/time sees each one's peak memory).
 * Usage: inference ARCH [THREADS [BATCH [SIZE [SECONDS]]]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_gemm.h"
#include "kd_model.h"
#include "kd_rng.h"

#include "bench_peak.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: inference ARCH [THREADS [BATCH [SIZE [SECONDS]]]]\n");
        return 2;
    }
    const char *arch = argv[1];
    int threads = argc > 2 ? atoi(argv[2]) : 2, B = argc > 3 ? atoi(argv[3]) : 128, S = argc > 4 ? atoi(argv[4]) : 32;
    double secs = argc > 5 ? atof(argv[5]) : 4;
    kd_gemm_init(threads);
    kd_arch_opts o = {arch, 1, 10, !strcmp(arch, "resnet18"), 0, 0, 0, 0};
    kd_model *m = kd_model_new(&o, 0);
    if (!m) {
        fprintf(stderr, "inference: %s\n", kd_err_get());
        return 1;
    }
    kd_model_set_eval_only(m, 1);
    if (kd_model_prepare(m, B, S, S)) {
        fprintf(stderr, "inference: %s\n", kd_err_get());
        return 1;
    }
    size_t n = (size_t)B * S * S;
    float *x = malloc(n * sizeof(float));
    kd_rng r = kd_rng_make(1, 0, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = kd_rng_normal(&r);
    kd_model_forward(m, x, B, 0, 0); /* warm up: page in the arenas */
    int reps = 0;
    double t0 = kd_now(), t;
    do {
        if (kd_model_forward(m, x, B, 0, 0)) {
            fprintf(stderr, "inference: %s\n", kd_err_get());
            return 1;
        }
        reps++;
        t = kd_now() - t0;
    } while (t < secs || reps < 2);
    double ips = (double)reps * B / t, macs = kd_model_flops(m, S, S);
    double gf = 2 * macs * ips / 1e9, peak = sgemm_peak();
    printf("{\"arch\": \"%s\", \"threads\": %d, \"batch\": %d, \"size\": %d, \"images_per_s\": %.1f, "
           "\"gflops\": %.1f, \"sgemm_peak\": %.1f, \"fraction\": %.3f, \"model_mb\": %.1f, \"blis\": \"%s\", "
           "\"blis_arch_type\": \"%s\"}\n",
           arch, threads, B, S, ips, gf, peak, gf / peak, kd_model_memory(m) / 1e6, kd_gemm_arch(),
           getenv("BLIS_ARCH_TYPE") ? getenv("BLIS_ARCH_TYPE") : "");
    free(x);
    kd_model_free(m);
    return 0;
}
