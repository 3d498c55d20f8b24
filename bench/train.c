/* kdpipe training throughput, as bench/train.sh runs it: one SGD step
 * (momentum 0.9, wd 5e-4) per batch of B 1-channel SxS images, BN in
 * training mode.  "ce ARCH": forward, softmax CE, backward, step.
 * "moco ARCH": MoCo v2 through the moco loss module (momentum update, key
 * forward on a shuffled batch with BN groups of 32, query forward+backward,
 * InfoNCE against a queue of 4096, enqueue), head 2048 -> 128.
 * Usage: train ce|moco ARCH [THREADS [BATCH [SIZE [SECONDS]]]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_err.h"
#include "kd_gemm.h"
#include "kd_loss.h"
#include "kd_model.h"
#include "kd_optim.h"
#include "kd_rng.h"

#include "bench_peak.h"

static void die(void)
{
    fprintf(stderr, "train: %s\n", kd_err_get());
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "ce") && strcmp(argv[1], "moco"))) {
        fprintf(stderr, "usage: train ce|moco ARCH [THREADS [BATCH [SIZE [SECONDS]]]]\n");
        return 2;
    }
    int moco = !strcmp(argv[1], "moco");
    const char *arch = argv[2];
    int threads = argc > 3 ? atoi(argv[3]) : 2, B = argc > 4 ? atoi(argv[4]) : 128, S = argc > 5 ? atoi(argv[5]) : 32;
    double secs = argc > 6 ? atof(argv[6]) : 4;
    kd_gemm_init(threads);
    kd_arch_opts o = {arch, 1, moco ? 0 : 10, !strcmp(arch, "resnet18"), moco ? 2048 : 0, moco ? 128 : 0, 0, 0};
    kd_model *m = kd_model_new(&o, 0);
    if (!m || kd_model_prepare(m, B, S, S))
        die();
    kd_sgd opt;
    kd_sgd_opts so = {0.9f, 5e-4f, 0, 0, 0};
    if (kd_sgd_init(&opt, m, &so))
        die();
    size_t n = (size_t)B * S * S;
    float *x0 = malloc(n * sizeof(float)), *x1 = malloc(n * sizeof(float));
    int32_t *y = malloc(sizeof(int32_t) * B);
    kd_rng r = kd_rng_make(1, 0, 0);
    for (size_t i = 0; i < n; i++)
        x0[i] = kd_rng_normal(&r), x1[i] = kd_rng_normal(&r);
    for (int i = 0; i < B; i++)
        y[i] = i % 10;
    int D = kd_model_feat_dim(m), E = kd_model_emb_dim(m);
    float *dl = malloc(sizeof(float) * B * 10), *dfeat = calloc((size_t)B * D, sizeof(float));
    float *demb = calloc((size_t)B * (E ? E : 1), sizeof(float));
    const kd_loss_module *mm = kd_loss_find("moco");
    kd_loss_opts lo = {4096, 0.2f, 0.999f, 32, 1, B, S, S};
    void *st = moco ? mm->init(m, &lo) : NULL;
    if (moco && !st)
        die();
    float *P = kd_model_params(m, NULL), *G = kd_model_grads(m, NULL);
    int reps = -1; /* the first step warms up: pages in the arenas */
    double t0 = 0, t = 0;
    for (;;) {
        if (reps == 0)
            t0 = kd_now();
        kd_loss_batch b = {NULL, x0, x1, y, B, reps + 1, m, NULL, NULL, NULL, dfeat, NULL, demb};
        if (moco && mm->pre(st, &b))
            die();
        kd_model_zero_grad(m);
        if (kd_model_forward(m, x0, B, 1, 0))
            die();
        double l;
        if (moco) {
            b.feat = kd_model_features(m), b.emb = kd_model_embedding(m);
            memset(demb, 0, sizeof(float) * B * E);
            if (mm->compute(st, &b, 1, &l) || kd_model_backward(m, NULL, NULL, demb, NULL))
                die();
        } else {
            l = kd_softmax_ce(kd_model_logits(m), y, B, 10, 1, dl);
            if (kd_model_backward(m, NULL, dl, NULL, NULL))
                die();
        }
        kd_sgd_step(&opt, P, G, 0.01f);
        if (moco)
            mm->post(st, &b);
        reps++;
        if (reps > 0) {
            t = kd_now() - t0;
            if (t >= secs && reps >= 2)
                break;
        }
    }
    double ips = (double)reps * B / t, macs = kd_model_flops(m, S, S);
    /* a training step is ~3 forwards (forward, data and weight gradients);
     * MoCo adds the key forward */
    double gf = 2 * macs * (moco ? 4 : 3) * ips / 1e9, peak = sgemm_peak();
    printf("{\"mode\": \"%s\", \"arch\": \"%s\", \"threads\": %d, \"batch\": %d, \"size\": %d, \"images_per_s\": %.1f, "
           "\"gflops\": %.1f, \"sgemm_peak\": %.1f, \"fraction\": %.3f, \"blis\": \"%s\", \"blis_arch_type\": \"%s\"}\n",
           argv[1], arch, threads, B, S, ips, gf, peak, gf / peak, kd_gemm_arch(),
           getenv("BLIS_ARCH_TYPE") ? getenv("BLIS_ARCH_TYPE") : "");
    if (st)
        mm->free(st);
    kd_sgd_free(&opt);
    free(x0), free(x1), free(y), free(dl), free(dfeat), free(demb);
    kd_model_free(m);
    return 0;
}
