/* Detection throughput against the backbone's inference alone: one
 * architecture, batch B of 1-channel SxS scenes, eval mode.  The detector
 * (backbone + the head detect-train builds, random weights) runs as detect
 * runs it (kd_detnet_run: input normalisation, forward, peak decoding,
 * top-100, masks); the backbone alone as bench/inference.c runs it
 * (kd_model_forward of an eval-only plan).  The two alternate, one batch
 * each, so a shared machine's load falls on both alike.
 * Usage: detect ARCH [THREADS [BATCH [SIZE [SECONDS [STRIDE [SKIP]]]]]]
 * (SKIP: detect-train --seg-skip's stage, 0 none). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_detnet.h"
#include "kd_gemm.h"
#include "kd_rng.h"

static kd_model *backbone(const char *arch)
{
    kd_arch_opts o = {arch, 1, 10, !strcmp(arch, "resnet18"), 0, 0, 0, 0};
    return kd_model_new(&o, 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: detect ARCH [THREADS [BATCH [SIZE [SECONDS [STRIDE [SKIP]]]]]]\n");
        return 2;
    }
    const char *arch = argv[1];
    int threads = argc > 2 ? atoi(argv[2]) : 2, B = argc > 3 ? atoi(argv[3]) : 32, S = argc > 4 ? atoi(argv[4]) : 48;
    double secs = argc > 5 ? atof(argv[5]) : 4;
    int stride = argc > 6 ? atoi(argv[6]) : 4, skip = argc > 7 ? atoi(argv[7]) : 0;
    kd_gemm_init(threads);
    kd_model *m = backbone(arch);
    kd_detnet d = {.m = backbone(arch), .c = 1, .stride = stride, .up = 64, .hc = 64, .K = 10,
                   .mean = {0.2860f}, .std = {0.3530f}, .skip = skip};
    if (!m || !d.m) {
        fprintf(stderr, "detect: %s\n", kd_err_get());
        return 1;
    }
    kd_model_set_eval_only(m, 1);
    if (kd_model_prepare(m, B, S, S) || kd_detnet_pick_stage(d.m, S, S, stride, 0, &d.stage, &d.nup) ||
        kd_detnet_prepare(&d, B, S, S, 0, 0, 1)) {
        fprintf(stderr, "detect: %s\n", kd_err_get());
        return 1;
    }
    size_t n = (size_t)B * S * S;
    float *x = malloc(n * sizeof(float));
    uint8_t *img = malloc(n), *masks = malloc(n);
    kd_rng r = kd_rng_make(1, 0, 0);
    for (size_t i = 0; i < n; i++)
        img[i] = (uint8_t)(kd_rng_uniform(&r) < 0.8 ? 0 : 255 * kd_rng_uniform(&r));
    for (size_t i = 0; i < n; i++)
        x[i] = (img[i] / 255.0f - 0.2860f) / 0.3530f;
    kd_detlist l = {0};
    /* warm up: page in the arenas, size the detection list */
    if (kd_model_forward(m, x, B, 0, 0) || kd_detnet_run(&d, img, B, 1, 0, 100, &l, masks, NULL, NULL)) {
        fprintf(stderr, "detect: %s\n", kd_err_get());
        return 1;
    }
    int reps = 0;
    double tb = 0, td = 0, t0 = kd_now();
    do {
        double a = kd_now();
        if (kd_model_forward(m, x, B, 0, 0))
            return 1;
        double b = kd_now();
        l.n = 0;
        if (kd_detnet_run(&d, img, B, 1, 0, 100, &l, masks, NULL, NULL))
            return 1;
        double c = kd_now();
        tb += b - a, td += c - b, reps++;
    } while (kd_now() - t0 < 2 * secs || reps < 2);
    double bb = (double)reps * B / tb, det = (double)reps * B / td;
    /* the head's multiply-adds per image: upsampling convs, then four
     * 3x3 + 1x1 heads at the output stride */
    int C, h, w;
    kd_model_stage_map(d.m, d.stage, &C, &h, &w);
    double hm = 0, hw = (double)h * w;
    for (int i = 0; i < d.nup; i++, hw *= 4, C = d.up)
        hm += (double)C * d.up * 9 * hw * 4;
    hm += hw * ((double)4 * C * d.hc * 9 + (double)d.hc * (d.K + 2 + 2 + d.K + 1));
    if (skip) { /* the skip head at its stage's size */
        kd_model_stage_map(d.m, skip, &C, &h, &w);
        hm += (double)h * w * ((double)C * d.hc * 9 + (double)d.hc * (d.K + 1));
    }
    double bm = kd_model_flops(m, S, S);
    printf("{\"arch\": \"%s\", \"skip\": %d, \"threads\": %d, \"batch\": %d, \"size\": %d, \"stride\": %d, \"stage\": %d, "
           "\"upsamplings\": %d, \"reps\": %d, \"backbone_images_per_s\": %.1f, \"detect_images_per_s\": %.1f, "
           "\"ratio\": %.3f, \"backbone_mmac\": %.1f, \"head_mmac\": %.1f, \"flop_bound\": %.3f}\n",
           arch, skip, threads, B, S, stride, d.stage, d.nup, reps, bb, det, det / bb, bm / 1e6, hm / 1e6, bm / (bm + hm));
    free(x), free(img), free(masks);
    kd_detlist_free(&l);
    kd_detnet_free(&d);
    kd_model_free(m);
    return 0;
}
