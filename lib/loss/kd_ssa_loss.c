/* kd_ssa_loss — SSA's dense term (contract in lib/kd_ssa_loss.h): aligner,
 * resize to the finer grid, sparse aggregation, dense InfoNCE. */
#include "kd_ssa_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"
#include "kd_layers.h"
#include "kd_loss.h"

void kd_ssa_loss_free(kd_ssa_loss *L)
{
    kd_aligner_free(&L->al);
    free(L->sx), free(L->dsx), free(L->tx), free(L->y), free(L->dy), free(L->tn), free(L->idx);
    free(L->kw), free(L->norms), free(L->kws), free(L->tnorm), free(L->pool), free(L->pnorm), free(L->lg);
    memset(L, 0, sizeof *L);
}

int kd_ssa_loss_init(kd_ssa_loss *L, int maxB, int C, int hs, int ws, int D, int ht, int wt, int k, float gamma,
                     float tau, int Q)
{
    memset(L, 0, sizeof *L);
    int h = hs > ht ? hs : ht, w = ws > wt ? ws : wt;
    *L = (kd_ssa_loss){.maxB = maxB, .C = C, .hs = hs, .ws = ws, .D = D, .ht = ht, .wt = wt, .h = h, .w = w,
                       .Q = Q, .tau = tau};
    if (ht < 1 || wt < 1 || Q < 0 || !(tau > 0)) {
        kd_err_set("ssa: a teacher map of %dx%d, queue %d, tau %g", ht, wt, Q, (double)tau);
        return -1;
    }
    if (kd_ssa_init(&L->ssa, maxB, D, h, w, k, gamma) || kd_aligner_init(&L->al, maxB, C, hs, ws, D))
        return -1;
    size_t hw = (size_t)h * w, map = (size_t)maxB * D * hw, kk = (size_t)maxB * hw * L->ssa.k;
    size_t M = (size_t)(Q > maxB ? Q : maxB);
    int rs = hs != h || ws != w, rt = ht != h || wt != w;
    if (rs)
        L->sx = malloc(sizeof(float) * map), L->dsx = malloc(sizeof(float) * map);
    if (rt)
        L->tx = malloc(sizeof(float) * map);
    L->y = malloc(sizeof(float) * map), L->dy = malloc(sizeof(float) * map), L->tn = malloc(sizeof(float) * map);
    L->idx = malloc(sizeof(int32_t) * kk), L->kw = malloc(sizeof(float) * kk);
    L->norms = malloc(sizeof(float) * 2 * maxB * hw), L->kws = malloc(sizeof(float) * kd_ssa_workspace(&L->ssa));
    L->tnorm = malloc(sizeof(float) * hw);
    L->pool = malloc(sizeof(float) * maxB * D), L->pnorm = malloc(sizeof(float) * maxB);
    L->lg = malloc(sizeof(float) * M * hw);
    if ((rs && (!L->sx || !L->dsx)) || (rt && !L->tx) || !L->y || !L->dy || !L->tn || !L->idx || !L->kw ||
        !L->norms || !L->kws || !L->tnorm || !L->pool || !L->pnorm || !L->lg) {
        kd_ssa_loss_free(L);
        kd_err_set("ssa: out of memory");
        return -1;
    }
    return 0;
}

/* t [D,hw] -> tn = t / max(|t_i|, 1e-12) per position i (over channels). */
static void normalise_positions(const float *t, int D, int hw, float *tn, float *norm)
{
    for (int i = 0; i < hw; i++)
        norm[i] = 0;
    for (int c = 0; c < D; c++)
        for (int i = 0; i < hw; i++)
            norm[i] += t[(size_t)c * hw + i] * t[(size_t)c * hw + i];
    for (int i = 0; i < hw; i++)
        norm[i] = fmaxf(sqrtf(norm[i]), 1e-12f);
    for (int c = 0; c < D; c++)
        for (int i = 0; i < hw; i++)
            tn[(size_t)c * hw + i] = t[(size_t)c * hw + i] / norm[i];
}

/* The InfoNCE of image b's positions: y, tn [D,hw]; negatives N [M,D],
 * row skip left out (-1: none).  Returns the sum over positions of -log p0
 * and, with dy, puts c * dL/dy there (c = weight / (n hw)). */
static double dense_nce(kd_ssa_loss *L, const float *y, const float *tn, const float *N, int M, int skip, double c,
                        float *dy)
{
    int D = L->D, hw = L->h * L->w;
    double inv = 1.0 / L->tau, sum = 0;
    float *lg = L->lg;
    if (M)
        kd_gemm_serial(0, 0, M, hw, D, 1.0f, N, D, y, hw, 0.0f, lg, hw);
    for (int i = 0; i < hw; i++) {
        double pos = 0;
        for (int d = 0; d < D; d++)
            pos += (double)y[(size_t)d * hw + i] * tn[(size_t)d * hw + i];
        pos *= inv;
        double mx = pos, s = 0;
        for (int j = 0; j < M; j++)
            if (j != skip)
                mx = fmax(mx, lg[(size_t)j * hw + i] * inv);
        for (int j = 0; j < M; j++)
            if (j != skip)
                s += exp(lg[(size_t)j * hw + i] * inv - mx);
        double e0 = exp(pos - mx);
        s += e0;
        sum += log(s) - (pos - mx);
        if (!dy)
            continue;
        /* dl/dz_j = p_j - [j = 0]; z = logit/tau */
        for (int j = 0; j < M; j++) {
            float *g = &lg[(size_t)j * hw + i];
            *g = j == skip ? 0.0f : (float)(c * inv * exp(*g * inv - mx) / s);
        }
        float g0 = (float)(c * inv * (e0 / s - 1));
        for (int d = 0; d < D; d++)
            dy[(size_t)d * hw + i] = g0 * tn[(size_t)d * hw + i];
    }
    if (dy && M) /* dy += N^T dlg */
        kd_gemm_serial(1, 0, D, hw, M, 1.0f, N, D, lg, hw, 1.0f, dy, hw);
    return sum;
}

double kd_ssa_loss_step(kd_ssa_loss *L, int n, const float *F, const kd_aligner_p *p, const float *T,
                        const float *queue, float weight, float *dF)
{
    int D = L->D, h = L->h, w = L->w, hw = h * w, thw = L->ht * L->wt;
    size_t map = (size_t)D * hw;
    const float *A = kd_aligner_forward(&L->al, n, F, p), *X = A, *Tx = T;
    if (L->sx) {
        kd_resize_forward(A, n * D, L->hs, L->ws, L->sx, h, w);
        X = L->sx;
    }
    if (L->tx) {
        kd_resize_forward(T, n * D, L->ht, L->wt, L->tx, h, w);
        Tx = L->tx;
    }
    L->ssa.B = n;
    kd_ssa_forward(&L->ssa, X, L->y, L->idx, L->kw, L->norms, L->kws);
    for (int b = 0; b < n; b++) {
        normalise_positions(Tx + b * map, D, hw, L->tn + b * map, L->tnorm);
        const float *tb = T + (size_t)b * D * thw;
        for (int d = 0; d < D; d++) {
            double s = 0;
            for (int i = 0; i < thw; i++)
                s += tb[(size_t)d * thw + i];
            L->pool[(size_t)b * D + d] = (float)(s / thw);
        }
    }
    kd_l2norm_forward(L->pool, L->pool, L->pnorm, n, D);
    const float *N = L->Q ? queue : L->pool;
    int M = L->Q ? L->Q : n;
    double c = (double)weight / ((double)n * hw), sum = 0;
    for (int b = 0; b < n; b++)
        sum += dense_nce(L, L->y + b * map, L->tn + b * map, N, M, L->Q ? -1 : b, c, dF ? L->dy + b * map : NULL);
    if (!dF)
        return sum / ((double)n * hw);
    float *dX = L->sx ? L->dsx : L->al.dy;
    memset(dX, 0, sizeof(float) * n * map);
    kd_ssa_backward(&L->ssa, X, L->y, L->idx, L->kw, L->norms, L->dy, dX, L->kws);
    if (L->sx) {
        memset(L->al.dy, 0, sizeof(float) * n * D * L->hs * L->ws);
        kd_resize_backward(L->dsx, n * D, L->hs, L->ws, L->al.dy, h, w);
    }
    kd_aligner_backward(&L->al, n, F, p, dF);
    return sum / ((double)n * hw);
}
