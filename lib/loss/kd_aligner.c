/* kd_aligner — a loss's 1x1 conv + BN from one width to another
 * (lib/kd_aligner.h). */
#include "kd_aligner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_rng.h"

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

#define W_NAME "aligner.0.weight"
#define G_NAME "aligner.1.weight"
#define B_NAME "aligner.1.bias"

void kd_aligner_free(kd_aligner *a)
{
    free(a->ws), free(a->ya), free(a->y), free(a->dya), free(a->dy);
    free(a->mean), free(a->rstd), free(a->run_mean), free(a->run_var);
    memset(a, 0, sizeof *a);
}

int kd_aligner_init(kd_aligner *a, int maxB, int C, int h, int w, int D)
{
    memset(a, 0, sizeof *a);
    a->maxB = maxB, a->C = C, a->D = D, a->h = h, a->w = w;
    if (maxB < 1 || C < 1 || D < 1 || kd_conv_init(&a->conv, maxB, C, h, w, D, 1, 1, 0, 1))
        return -1;
    size_t n = (size_t)maxB * D * h * w, ws = kd_conv_workspace(&a->conv);
    a->ws = malloc(sizeof(float) * (ws ? ws : 1));
    a->ya = malloc(sizeof(float) * n), a->y = malloc(sizeof(float) * n);
    a->dya = malloc(sizeof(float) * n), a->dy = malloc(sizeof(float) * n);
    a->mean = malloc(sizeof(float) * D), a->rstd = malloc(sizeof(float) * D);
    a->run_mean = calloc(D, sizeof(float)), a->run_var = malloc(sizeof(float) * D);
    if (!a->ws || !a->ya || !a->y || !a->dya || !a->dy || !a->mean || !a->rstd || !a->run_mean || !a->run_var) {
        kd_aligner_free(a);
        kd_err_set("aligner: out of memory");
        return -1;
    }
    for (int i = 0; i < D; i++)
        a->run_var[i] = 1;
    return 0;
}

int kd_aligner_slab(kd_slab *own, int C, int D, uint64_t seed, uint64_t stream)
{
    kd_pview v[3] = {{.name = W_NAME, .rank = 4, .shape = {D, C, 1, 1}},
                     {.name = G_NAME, .rank = 1, .shape = {D}, .no_decay = 1},
                     {.name = B_NAME, .rank = 1, .shape = {D}, .no_decay = 1}};
    if (kd_slab_init(own, v, 3))
        return -1;
    kd_rng r = kd_rng_make(seed, stream, 0);
    float sd = sqrtf(2.0f / (float)D), *w = kd_slab_param(own, W_NAME), *g = kd_slab_param(own, G_NAME);
    for (size_t i = 0; i < (size_t)D * C; i++)
        w[i] = sd * kd_rng_normal(&r);
    for (int i = 0; i < D; i++)
        g[i] = 1;
    return 0;
}

kd_aligner_p kd_aligner_bind(kd_slab *own)
{
    return (kd_aligner_p){.w = kd_slab_param(own, W_NAME), .dw = kd_slab_grad(own, W_NAME),
                          .g = kd_slab_param(own, G_NAME), .dg = kd_slab_grad(own, G_NAME),
                          .b = kd_slab_param(own, B_NAME), .db = kd_slab_grad(own, B_NAME)};
}

const float *kd_aligner_forward(kd_aligner *a, int n, const float *F, const kd_aligner_p *p)
{
    /* n <= maxB maps: the workspace sized at init does not grow with fewer,
     * and the kernel it was sized for stays */
    a->conv.N = n;
    kd_conv_forward(&a->conv, F, p->w, NULL, a->ya, a->ws);
    kd_bn_forward_train(n, a->D, a->h * a->w, 0, a->ya, p->g, p->b, a->y, a->mean, a->rstd, a->run_mean, a->run_var,
                        BN_MOMENTUM, BN_EPS);
    return a->y;
}

void kd_aligner_backward(kd_aligner *a, int n, const float *F, const kd_aligner_p *p, float *dF)
{
    memset(a->dya, 0, sizeof(float) * n * a->D * a->h * a->w);
    kd_bn_backward(n, a->D, a->h * a->w, 0, a->ya, a->mean, a->rstd, p->g, a->dy, a->dya, p->dg, p->db);
    kd_conv_backward(&a->conv, F, p->w, a->dya, dF, p->dw, NULL, a->ws);
}
