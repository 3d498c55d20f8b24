/* kd_train_dist — the trainer across processes (kd_train.h, kd_dist.h):
 * which losses may run so, sync-BN, the per-step agreement of the ranks and
 * the averaging of the gradients. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_dist.h"
#include "kd_err.h"
#include "kd_names.h"
#include "kd_train_impl.h"

int kd_train_dist_init(kd_trainer *t)
{
    if (kd_dist_size() == 1)
        return 0;
    for (int i = 0; i < t->nl; i++)
        if (!t->L[i].mod->data_parallel) {
            kd_err_set("loss %s does not run on several processes (its terms or state span the batch): "
                       "train it in one", t->L[i].name);
            return -1;
        }
    return t->o.sync_bn ? kd_model_set_bn_sync(t->m, kd_dist_sum_f64) : 0;
}

int kd_train_dist_reduce(kd_trainer *t, double *terms, double *total)
{
    if (kd_dist_size() == 1)
        return 0;
    size_t ng;
    float *G = kd_model_grads(t->m, &ng);
    if (kd_dist_mean_f32(G, ng))
        return -1;
    for (int i = 0; i < t->nl; i++)
        if (t->L[i].ctx.params && kd_dist_mean_f32(t->L[i].ctx.params->g, t->L[i].ctx.params->n))
            return -1;
    double v[KD_TRAIN_MAX_LOSSES + 1];
    for (int i = 0; i < t->nl; i++)
        v[i] = terms[i];
    v[t->nl] = *total;
    if (kd_dist_mean_f64(v, (size_t)t->nl + 1))
        return -1;
    for (int i = 0; i < t->nl; i++)
        terms[i] = v[i];
    *total = v[t->nl];
    return 0;
}

int kd_trainer_dist_check(kd_trainer *t, kd_frame *f, long frame_no)
{
    int N = kd_dist_size();
    if (N == 1)
        return 0;
    int64_t mine[3] = {0, -1, 0}, *all = t->dist_check;
    if (f) {
        char v0[KD_NAME_MAX];
        kd_tensor *x = kd_frame_get(f, kd_name(v0, sizeof v0, KD_NAME_VIEW, NULL, 0));
        mine[0] = 1;
        mine[1] = kd_frame_meta_i64(f, KD_META_STEP, frame_no);
        mine[2] = x && x->rank >= 1 ? x->dims[0] : 0;
    }
    char want[32];
    snprintf(want, sizeof want, "%d/%d", kd_dist_rank(), N);
    const char *got = f ? kd_frame_meta_get(f, KD_META_SHARD) : want;
    if (!got || strcmp(got, want)) {
        /* every rank on the whole stream would train N times on each image */
        kd_err_set("frame %ld: rank %d of %d reads %s%s (augment --shard %s)", frame_no, kd_dist_rank(), N,
                   got ? "shard " : "a stream that is not a shard", got ? got : "", want);
        return -1;
    }
    if (kd_dist_allgather_i64(mine, 3, all))
        return -1;
    for (int r = 1; r < N; r++) {
        const int64_t *a = all, *b = all + 3 * r;
        if (a[0] != b[0]) {
            kd_err_set("rank %d's stream ended at frame %ld while rank %d's goes on", a[0] ? r : 0, frame_no,
                       a[0] ? 0 : r);
            return -1;
        }
        if (a[1] != b[1] || a[2] != b[2]) {
            kd_err_set("frame %ld: rank 0 has step %lld of %lld images, rank %d step %lld of %lld: the ranks need "
                       "equal shards of the same batch (augment --shard R/N of a batch N divides)",
                       frame_no, (long long)a[1], (long long)a[2], r, (long long)b[1], (long long)b[2]);
            return -1;
        }
    }
    return 0;
}
