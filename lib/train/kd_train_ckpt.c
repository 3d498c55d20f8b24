/* kd_train_ckpt — the checkpoint: a model file (kd_model_io) plus, under
 * /train, everything resume needs to continue bit-identically:
 *   attrs step, epoch, rng_step (training forwards so far), seed, losses
 *   train/momentum                  f32 [P] SGD momentum of the model
 *   train/LOSS/own_params           f32 [Q] a loss's own parameters
 *   train/LOSS/own_momentum         f32 [Q] their momentum
 *   train/LOSS/...                  the loss's state (its save hook)
 * LOSS is the instance name ("moco", "ce.2").  man/man5/kdpipe-h5.5 has
 * the same list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_model_io.h"
#include "kd_train_impl.h"

static void loss_list(const kd_trainer *t, char *buf, size_t n)
{
    buf[0] = 0;
    for (int i = 0; i < t->nl; i++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s:%g", i ? "," : "", t->L[i].mod->name, t->L[i].weight);
}

static int write_f32(kd_h5 *h, const char *group, const char *leaf, const float *p, size_t n)
{
    char name[160];
    snprintf(name, sizeof name, "%s/%s", group, leaf);
    return kd_h5_write(h, name, KD_F32, 1, (int64_t[]){(int64_t)n}, p);
}

static int read_f32(const kd_h5 *h, const char *group, const char *leaf, float *p, size_t n)
{
    char name[160];
    snprintf(name, sizeof name, "%s/%s", group, leaf);
    return kd_h5_expect(h, name, 1, (int64_t[]){(int64_t)n}, NULL) || kd_h5_read(h, name, KD_F32, 0, (int64_t)n, p)
               ? -1
               : 0;
}

int kd_trainer_save(const kd_trainer *t, const char *path)
{
    kd_h5 h;
    char losses[512];
    loss_list(t, losses, sizeof losses);
    if (kd_h5_create(&h, path, "model"))
        return -1;
    if (kd_model_save_h5(t->m, &h) || write_f32(&h, "train", "momentum", t->opt.buf, t->opt.n) ||
        kd_h5_attr_set_i64(&h, "train", "step", t->step) || kd_h5_attr_set_i64(&h, "train", "epoch", t->epoch) ||
        kd_h5_attr_set_i64(&h, "train", "rng_step", (int64_t)t->fwd) ||
        kd_h5_attr_set_i64(&h, "train", "seed", (int64_t)t->o.seed) ||
        kd_h5_attr_set_str(&h, "train", "losses", losses))
        goto fail;
    for (int i = 0; i < t->nl; i++) {
        const kd_train_loss *l = &t->L[i];
        if (l->ctx.params && (write_f32(&h, l->group, "own_params", l->ctx.params->p, l->ctx.params->n) ||
                              write_f32(&h, l->group, "own_momentum", l->own.buf, l->own.n)))
            goto fail;
        if (l->mod->save && l->mod->save(l->st, &h, l->group))
            goto fail;
    }
    return kd_h5_commit(&h);
fail:
    kd_h5_abort(&h);
    return -1;
}

int kd_trainer_resume(kd_trainer *t, const char *ckpt)
{
    kd_h5 h;
    if (!t->inited) {
        kd_err_set("trainer: resume after init");
        return -1;
    }
    if (kd_h5_open(&h, ckpt, "model"))
        return -1;
    int64_t s = 0, e = 0, r = 0;
    if (kd_h5_attr_get_i64(&h, "train", "step", &s) || kd_h5_attr_get_i64(&h, "train", "epoch", &e)) {
        kd_err_set("%s: not a distill-step checkpoint (no training state)", ckpt);
        goto fail;
    }
    if (kd_h5_attr_has(&h, "train", "losses")) {
        char had[512], now[512];
        loss_list(t, now, sizeof now);
        if (kd_h5_attr_get_str(&h, "train", "losses", had, sizeof had))
            goto fail;
        if (strcmp(had, now)) {
            kd_err_set("%s: the checkpoint was trained with --loss %s, not %s", ckpt, had, now);
            goto fail;
        }
    }
    if (kd_h5_attr_has(&h, "train", "rng_step") && kd_h5_attr_get_i64(&h, "train", "rng_step", &r))
        goto fail;
    if (kd_h5_attr_has(&h, "train", "seed")) {
        int64_t seed;
        if (kd_h5_attr_get_i64(&h, "train", "seed", &seed))
            goto fail;
        /* the seed keys the stream's views, MoCo's shuffles and dropout:
         * another one would continue a different run */
        if ((uint64_t)seed != t->o.seed) {
            kd_err_set("%s: the checkpoint was trained with --seed %llu, not %llu", ckpt, (unsigned long long)seed,
                       (unsigned long long)t->o.seed);
            goto fail;
        }
    }
    if (read_f32(&h, "train", "momentum", t->opt.buf, t->opt.n))
        goto fail;
    for (int i = 0; i < t->nl; i++) {
        kd_train_loss *l = &t->L[i];
        if (l->ctx.params && (read_f32(&h, l->group, "own_params", l->ctx.params->p, l->ctx.params->n) ||
                              read_f32(&h, l->group, "own_momentum", l->own.buf, l->own.n)))
            goto fail;
        if (l->mod->load && l->mod->load(l->st, &h, l->group))
            goto fail;
    }
    kd_h5_close(&h);
    t->step = (long)s;
    t->epoch = (long)e;
    t->fwd = (uint64_t)r;
    kd_model_set_rng(t->m, t->o.seed, t->fwd);
    return 0;
fail:
    kd_h5_close(&h);
    return -1;
}
