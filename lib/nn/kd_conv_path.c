/* Which kernel a convolution takes, and the weight-gradient parts' final
 * sum, shared by the convolution files (contract in kd_layers_impl.h). */
#include <stdlib.h>
#include <string.h>

#include "kd_layers_impl.h"

/* 3x3 stride-1 pad-1 layers: the direct kernel (kd_conv_direct.c),
 * Winograd (kd_conv_wino.c) or im2col + GEMM.  KDPIPE_CONV=gemm forces
 * im2col + GEMM everywhere, =direct the direct kernel and =wino2 / =wino4
 * Winograd wherever each applies (A/B runs, tests).  The rule, measured at
 * batch 128 on 2 cores (Zen 5, AVX-512; bench/results-layers.md,
 * bench/results-wino.md), forward + backward GFLOP/s direct vs GEMM: 1->16
 * at 32x32 77+113 vs 19+19, 16->16 305+183 vs 87+78, 64->64 at 32x32
 * 382+325 vs 193+173, 128 at 16x16 347+288 vs 124+153, 256 at 8x8 275+172
 * vs 163+185, but 512 at 4x4 159+87 vs 153+170: on planes of fewer than 64
 * outputs the padding and the weight gradient's reductions dominate.  There,
 * and at 8x8 from 256x256 weights, Winograd (2-6x GEMM's speed for weights
 * of 128x128 and more; 256 at 8x8 about 25 % ahead of the direct kernel);
 * smaller weights on small planes stay on GEMM's per-core path. */
int kd_conv_path(const kd_conv *c)
{
    const char *e = getenv("KDPIPE_CONV");
    int mode = kd_conv_wino_mode(), hw = c->H * c->W;
    long co = (long)c->C * c->O;
    if (mode == 1)
        return KD_CONV_GEMM;
    if (mode == 2 || mode == 4)
        return kd_conv_wino_applies(c) ? KD_CONV_WINO : KD_CONV_GEMM;
    if (e && !strcmp(e, "direct"))
        return kd_conv_direct_applies(c) ? KD_CONV_DIRECT : KD_CONV_GEMM;
    if (kd_conv_direct_applies(c) && (hw >= 256 || (hw >= 64 && co < 256L * 256)))
        return KD_CONV_DIRECT;
    if (kd_conv_wino_applies(c) && co >= 128L * 128)
        return KD_CONV_WINO;
    return KD_CONV_GEMM;
}

/* dw, db += the sum over parts (in part order, so the bits do not depend on
 * the thread count) of the per-part sums [O*K + O] (dW as [O][K], or as
 * dW^T [K][O] when transposed, then db). */
void kd_conv_sum_parts(const kd_conv *c, const float *sums, int parts, size_t K, int transposed, float *dw,
                       float *db)
{
    if (!dw && !db)
        return;
    size_t ok = (size_t)c->O * K, part = ok + c->O;
#pragma omp parallel for num_threads(c->nt) schedule(static)
    for (size_t i = 0; i < part; i++) {
        float acc = 0;
        for (int p = 0; p < parts; p++)
            acc += sums[p * part + i];
        if (i < ok && dw)
            dw[transposed ? (i % c->O) * K + i / c->O : i] += acc;
        else if (i >= ok && db)
            db[i - ok] += acc;
    }
}
