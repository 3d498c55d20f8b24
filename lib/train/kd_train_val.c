/* kd_train_val — the validation monitor of training: top-1 of the logits,
 * or weighted kNN top-1 of the pooled features against a bank (for losses
 * that learn representations, kd_loss_module.monitor). */
#include <stdlib.h>
#include <string.h>

#include "kd_dataset.h"
#include "kd_err.h"
#include "kd_knn.h"
#include "kd_train_impl.h"

int kd_trainer_set_val(kd_trainer *t, const char *val, int64_t val_limit, const char *bank, int64_t bank_limit,
                       int knn_k, float knn_t)
{
    if (!t->inited) {
        kd_err_set("trainer: validation is set after init");
        return -1;
    }
    int knn = kd_trainer_monitor(t) == KD_MONITOR_KNN;
    if (knn && !bank) {
        kd_err_set("the kNN monitor of %s needs a bank of labelled training images",
                   kd_model_num_classes(t->m) ? "these losses" : "a model without a classifier");
        return -1;
    }
    if (kd_evalset_load(&t->vs, val, val_limit, t->H, t->W))
        return -1;
    t->has_val = 1;
    if (t->vs.c != t->C) {
        kd_err_set("%s: %d channels, the stream has %d", val, t->vs.c, t->C);
        return -1;
    }
    /* top-1 of the logits: a label the classifier cannot output is never
     * right, and a file without a classes list is checked against nothing */
    if (!knn && kd_dataset_check_labels(val, t->vs.y, t->vs.n, 0, t->K))
        return -1;
    if (knn) {
        if (kd_evalset_load(&t->bs, bank, bank_limit, t->H, t->W))
            return -1;
        t->has_bank = 1;
        if (t->bs.c != t->C) {
            kd_err_set("%s: %d channels, the stream has %d", bank, t->bs.c, t->C);
            return -1;
        }
        t->bout = malloc(sizeof(float) * (size_t)t->bs.n * t->D);
    }
    t->knn_k = knn_k;
    t->knn_t = knn_t;
    t->vout = malloc(sizeof(float) * (size_t)t->vs.n * (knn ? t->D : t->K));
    t->pred = malloc(sizeof(int32_t) * (size_t)t->vs.n);
    if (!t->vout || !t->pred || (knn && !t->bout)) {
        kd_err_set("validation: out of memory");
        return -1;
    }
    return 0;
}

/* Eval-mode features (or logits) of a set, in chunks of the prepared batch. */
static int eval_outputs(kd_model *m, const kd_evalset *e, int B, int logits, float *out, int dim)
{
    size_t per = (size_t)e->c * e->h * e->w;
    for (int64_t i = 0; i < e->n; i += B) {
        int nb = (int)(e->n - i < B ? e->n - i : B);
        if (kd_model_forward(m, e->x + (size_t)i * per, nb, 0, 0))
            return -1;
        memcpy(out + (size_t)i * dim, logits ? kd_model_logits(m) : kd_model_features(m),
               sizeof(float) * (size_t)nb * dim);
    }
    return 0;
}

int kd_trainer_validate(kd_trainer *t, const char **name, double *top1)
{
    if (!t->has_val) {
        kd_err_set("trainer: no validation set");
        return -1;
    }
    int64_t c = 0;
    if (t->has_bank) {
        if (eval_outputs(t->m, &t->bs, t->B, 0, t->bout, t->D) || eval_outputs(t->m, &t->vs, t->B, 0, t->vout, t->D))
            return -1;
        int nclass = 0;
        for (int64_t i = 0; i < t->bs.n; i++)
            nclass = t->bs.y[i] + 1 > nclass ? t->bs.y[i] + 1 : nclass;
        for (int64_t i = 0; i < t->vs.n; i++)
            nclass = t->vs.y[i] + 1 > nclass ? t->vs.y[i] + 1 : nclass;
        int k = t->bs.n < t->knn_k ? (int)t->bs.n : t->knn_k;
        if (kd_knn_predict(t->bout, t->bs.y, t->bs.n, t->D, nclass, t->vout, t->vs.n, k, t->knn_t, KD_KNN_COSINE,
                           t->pred))
            return -1;
        for (int64_t i = 0; i < t->vs.n; i++)
            c += t->pred[i] == t->vs.y[i];
        *name = "val_knn_top1";
    } else {
        if (eval_outputs(t->m, &t->vs, t->B, 1, t->vout, t->K))
            return -1;
        for (int64_t i = 0; i < t->vs.n; i++) {
            const float *z = t->vout + (size_t)i * t->K;
            int a = 0;
            for (int k = 1; k < t->K; k++)
                a = z[k] > z[a] ? k : a;
            c += a == t->vs.y[i];
        }
        *name = "val_top1";
    }
    *top1 = (double)c / (double)t->vs.n;
    return 0;
}
