/* kdpipe training throughput, as bench/train.sh runs it: one SGD step
 * (momentum 0.9, wd 5e-4) per batch of B 1-channel SxS images, BN in
 * training mode.  "ce ARCH": forward, softmax CE, backward, step.
 * Both run through kd_train, the trainer of distill-step.
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
#include "kd_rng.h"
#include "kd_train.h"

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
    kd_arch_opts o = {.arch = arch, .in_channels = 1, .num_classes = moco ? 0 : 10,
                      .cifar_stem = !strcmp(arch, "resnet18"), .head_hidden = moco ? 2048 : 0,
                      .head_out = moco ? 128 : 0};
    kd_model *m = kd_model_new(&o, 0);
    if (!m)
        die();
    /* the trainer distill-step runs, fed frames made here */
    kd_train_opts to = {.sgd = {.momentum = 0.9f, .wd = 5e-4f}, .schedule = "const", .lr = 0.01, .seed = 1};
    kd_trainer *tr = kd_trainer_new(m, &to);
    if (!tr || kd_trainer_add_loss(tr, kd_loss_find(moco ? "moco" : "ce"), 1, NULL, -1))
        die();
    kd_frame f;
    kd_frame_init(&f);
    int64_t dims[4] = {B, 1, S, S};
    kd_tensor *t0_ = kd_frame_add(&f, "view0", KD_F32, 4, dims);
    kd_tensor *t1_ = kd_frame_add(&f, "view1", KD_F32, 4, dims);
    kd_tensor *ty = kd_frame_add(&f, "label", KD_I32, 1, dims);
    if (!t0_ || !t1_ || !ty)
        die();
    t0_ = kd_frame_get(&f, "view0"), t1_ = kd_frame_get(&f, "view1");
    float *x0 = t0_->data, *x1 = t1_->data;
    int32_t *y = ty->data;
    kd_rng r = kd_rng_make(1, 0, 0);
    for (size_t i = 0; i < (size_t)B * S * S; i++)
        x0[i] = kd_rng_normal(&r), x1[i] = kd_rng_normal(&r);
    for (int i = 0; i < B; i++)
        y[i] = i % 10;
    if (kd_trainer_init(tr, &f))
        die();
    int reps = -1; /* the first step warms up: pages in the arenas */
    double t0 = 0, t = 0;
    for (;;) {
        if (reps == 0)
            t0 = kd_now();
        kd_frame_meta_set(&f, "step", "%d", reps + 1);
        if (kd_trainer_step(tr, &f, reps + 1) != 1)
            die();
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
    kd_frame_free(&f);
    kd_trainer_free(tr);
    return 0;
}
