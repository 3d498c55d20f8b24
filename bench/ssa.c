/* The share of SSA's aggregation kernel in a resnet20 training step at
 * 32x32, as bench/ssa.sh runs it: B 3-channel images, the last stage's map
 * [B,64,8,8].  Times, per step, with THREADS threads:
 *   step    a CE training step through kd_train (forward, CE, backward, SGD);
 *   kernel  kd_ssa_forward + kd_ssa_backward on [B,64,8,8] with k 8, gamma 2;
 *   loss    kd_ssa_loss_step with gradient (aligner 64->64, aggregation, dense
 *           InfoNCE against in-batch negatives): the whole dense term.
 * Prints one JSON line.  Usage: ssa [THREADS [BATCH [K [SECONDS]]]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_cli.h"
#include "kd_err.h"
#include "kd_gemm.h"
#include "kd_loss.h"
#include "kd_model.h"
#include "kd_rng.h"
#include "kd_ssa.h"
#include "kd_ssa_loss.h"
#include "kd_train.h"

static void die(void)
{
    fprintf(stderr, "ssa: %s\n", kd_err_get());
    exit(1);
}

/* Seconds per call of fn, at least secs of calls after one warm-up. */
static double per_call(void (*fn)(void *), void *arg, double secs)
{
    fn(arg);
    int n = 0;
    double t0 = kd_now(), t;
    do {
        fn(arg);
        n++;
    } while ((t = kd_now() - t0) < secs || n < 2);
    return t / n;
}

typedef struct {
    kd_trainer *tr;
    kd_frame *f;
    long step;
    kd_ssa s;
    kd_ssa_loss L;
    kd_aligner_p ap;
    float *x, *y, *dy, *dx, *wt, *norms, *ws, *T;
    int32_t *idx;
} ctx;

static void do_step(void *a)
{
    ctx *c = a;
    kd_frame_meta_set(c->f, "step", "%ld", c->step + 1);
    if (kd_trainer_step(c->tr, c->f, c->step + 1) != 1)
        die();
    c->step++;
}

static void do_kernel(void *a)
{
    ctx *c = a;
    kd_ssa_forward(&c->s, c->x, c->y, c->idx, c->wt, c->norms, c->ws);
    kd_ssa_backward(&c->s, c->x, c->y, c->idx, c->wt, c->norms, c->dy, c->dx, c->ws);
}

static void do_loss(void *a)
{
    ctx *c = a;
    kd_ssa_loss_step(&c->L, c->s.B, c->x, &c->ap, c->T, NULL, 1, c->dx);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2, B = argc > 2 ? atoi(argv[2]) : 64, k = argc > 3 ? atoi(argv[3]) : 8;
    double secs = argc > 4 ? atof(argv[4]) : 4;
    enum { S = 32, C = 64, H = 8 };
    kd_gemm_init(threads);
    kd_arch_opts o = {.arch = "resnet20", .in_channels = 3, .num_classes = 10};
    kd_model *m = kd_model_new(&o, 0);
    kd_train_opts to = {.sgd = {.momentum = 0.9f, .wd = 5e-4f}, .schedule = "const", .lr = 0.01, .seed = 1};
    kd_trainer *tr = m ? kd_trainer_new(m, &to) : NULL;
    if (!tr || kd_trainer_add_loss(tr, kd_loss_find("ce"), 1, NULL, -1))
        die();
    kd_frame f;
    kd_frame_init(&f);
    int64_t dims[4] = {B, 3, S, S};
    kd_tensor *tv = kd_frame_add(&f, "view0", KD_F32, 4, dims), *ty = kd_frame_add(&f, "label", KD_I32, 1, dims);
    if (!tv || !ty)
        die();
    tv = kd_frame_get(&f, "view0");
    kd_rng r = kd_rng_make(1, 0, 0);
    for (size_t i = 0; i < (size_t)B * 3 * S * S; i++)
        ((float *)tv->data)[i] = kd_rng_normal(&r);
    for (int i = 0; i < B; i++)
        ((int32_t *)ty->data)[i] = i % 10;
    if (kd_trainer_init(tr, &f))
        die();
    ctx c = {.tr = tr, .f = &f};
    size_t map = (size_t)B * C * H * H, kk = (size_t)B * H * H * k;
    if (kd_ssa_init(&c.s, B, C, H, H, k, 2.0f) || kd_ssa_loss_init(&c.L, B, C, H, H, C, H, H, k, 2.0f, 0.2f, 0))
        die();
    static float aw[C * C], ag[C], ab[C], daw[C * C], dag[C], dab[C];
    c.x = malloc(sizeof(float) * map), c.y = malloc(sizeof(float) * map), c.dy = malloc(sizeof(float) * map);
    c.dx = malloc(sizeof(float) * map), c.T = malloc(sizeof(float) * map);
    c.wt = malloc(sizeof(float) * kk), c.idx = malloc(sizeof(int32_t) * kk);
    c.norms = malloc(sizeof(float) * 2 * B * H * H), c.ws = malloc(sizeof(float) * kd_ssa_workspace(&c.s));
    if (!c.x || !c.y || !c.dy || !c.dx || !c.T || !c.wt || !c.idx || !c.norms || !c.ws)
        return fprintf(stderr, "ssa: out of memory\n"), 1;
    for (size_t i = 0; i < map; i++) /* post-ReLU-like maps */
        c.x[i] = kd_rng_normal(&r) > 0 ? kd_rng_normal(&r) : 0, c.T[i] = kd_rng_normal(&r) + 0.5f,
        c.dy[i] = kd_rng_normal(&r), c.dx[i] = 0;
    for (int i = 0; i < C * C; i++)
        aw[i] = 0.2f * kd_rng_normal(&r);
    for (int i = 0; i < C; i++)
        ag[i] = 1, ab[i] = 0;
    c.ap = (kd_aligner_p){.w = aw, .g = ag, .b = ab, .dw = daw, .dg = dag, .db = dab};
    double ts = per_call(do_step, &c, secs), tk = per_call(do_kernel, &c, secs / 2), tl = per_call(do_loss, &c, secs / 2);
    printf("{\"threads\": %d, \"batch\": %d, \"k\": %d, \"step_ms\": %.2f, \"kernel_ms\": %.3f, \"loss_ms\": %.3f, "
           "\"kernel_share\": %.4f, \"loss_share\": %.4f}\n", threads, B, k, 1e3 * ts, 1e3 * tk, 1e3 * tl,
           tk / (ts + tk), tl / (ts + tl));
    kd_frame_free(&f);
    kd_trainer_free(tr);
    kd_ssa_loss_free(&c.L);
    return 0;
}
