/* Loss crd: Contrastive Representation Distillation (Tian et al. 2020, as
 * RepDistiller implements it; METHODS.md "Supervised distillation").  The
 * student's pooled features (view0) and the teacher's (t.feat0) pass through
 * embedding heads the loss owns; each is contrasted with K negatives of other
 * classes drawn from the other network's memory bank (kd_loss_crd.h has the
 * NCE form).  The loss learns the dataset's size N and every row's class from
 * the dataset file the stream was made from (--crd-data, --crd-limit as
 * augment's --limit); the frame's index says which rows the batch holds.
 *
 * State: the banks and the normalisers Z (checkpointed here) and the heads
 * (the trainer checkpoints own parameters).  The negatives are drawn from a
 * counter-based stream keyed by the step, so the sampler has no state beyond
 * the step the trainer restores. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kd_dataset.h"
#include "kd_err.h"
#include "kd_loss.h"
#include "kd_loss_crd.h"
#include "kd_loss_teacher.h"
#include "kd_names.h"

typedef struct {
    char data[KD_LOPT_STR_MAX];
    int limit, k, dim;
    float tau, mom;
} crd_opts;

static const kd_loss_opt crd_optv[] = {
    {"crd-data", KD_LOPT_STR, offsetof(crd_opts, data), "", 0, 0,
     "the dataset file the stream was made from (required: N and its labels)"},
    {"crd-limit", KD_LOPT_INT, offsetof(crd_opts, limit), "0", 0, 1 << 30,
     "only its first N rows, as augment --limit N; 0: all"},
    {"crd-k", KD_LOPT_INT, offsetof(crd_opts, k), "16384", 1, 1 << 24, "negatives per sample, of other classes"},
    {"crd-tau", KD_LOPT_FLOAT, offsetof(crd_opts, tau), "0.07", 1e-4, 100, "NCE temperature"},
    {"crd-momentum", KD_LOPT_FLOAT, offsetof(crd_opts, mom), "0.5", 0, 1, "memory bank momentum"},
    {"crd-dim", KD_LOPT_INT, offsetof(crd_opts, dim), "128", 1, 1 << 16, "embedding width of both heads"},
    {0}};

typedef struct {
    crd_opts o;
    char instance[48], feat[KD_NAME_MAX];
    uint64_t seed;
    int N, dt;
    kd_crd c;
    int32_t *label;      /* [N] every row's class */
    kd_crd_classes cls;
    int64_t *neg, *idx;  /* [B,K] this step's negatives, [B] its rows */
} crd_state;

static void crd_free(void *st)
{
    crd_state *s = st;
    if (!s)
        return;
    kd_crd_free(&s->c);
    kd_crd_classes_free(&s->cls);
    free(s->label), free(s->neg), free(s->idx);
    free(s);
}

/* N and every row's class from the dataset file, and K checked against the
 * fewest rows of other classes any sample has. */
static int read_classes(crd_state *s)
{
    const char *path = s->o.data;
    kd_dataset_info info;
    kd_dataset_file *f = kd_dataset_open(path, &info);
    if (!f)
        return -1;
    if (!info.has_labels) {
        kd_dataset_close(f);
        kd_err_set("%s: the dataset has no labels, and CRD draws its negatives from other classes", path);
        return -1;
    }
    s->N = (int)(s->o.limit > 0 && s->o.limit < info.n ? s->o.limit : info.n);
    s->label = malloc(sizeof(int32_t) * s->N);
    if (!s->label) {
        kd_dataset_close(f);
        kd_err_set("out of memory for %d labels", s->N);
        return -1;
    }
    int rc = kd_dataset_read_rows(f, 0, s->N, NULL, s->label);
    kd_dataset_close(f);
    int rare = 0;
    int64_t usable = rc ? -1 : kd_crd_classes_init(&s->cls, s->label, s->N, &rare);
    if (usable < 0)
        return -1;
    if (s->o.k >= usable) {
        kd_err_set("--crd-k %d: %s%s has %d rows, and a sample of class %d has only %lld of other classes to draw "
                   "from: give --crd-k below %lld", s->o.k, path, s->o.limit ? " (--crd-limit)" : "", s->N, rare,
                   (long long)usable, (long long)usable);
        return -1;
    }
    return 0;
}

static void *crd_init(kd_loss_init *c)
{
    crd_state *s = calloc(1, sizeof *s);
    if (!s) {
        kd_err_set("loss %s: out of memory", c->instance);
        return NULL;
    }
    s->o = *(const crd_opts *)c->opts;
    snprintf(s->instance, sizeof s->instance, "%s", c->instance);
    s->seed = c->seed;
    kd_name(s->feat, sizeof s->feat, KD_NAME_FEAT, NULL, 0);
    if (!s->o.data[0]) {
        kd_err_set("loss %s: --crd-data DATASET.h5 is required (the dataset file the stream was made from: "
                   "its size and labels)", c->instance);
        crd_free(s);
        return NULL;
    }
    if (kd_loss_want_view(c, 0) || kd_loss_need_tensor(c, s->feat, KD_F32, 2, "teacher-extract -m TEACHER") ||
        kd_loss_need_tensor(c, KD_NAME_INDEX, KD_I64, 1, "augment") ||
        kd_loss_need_tensor(c, KD_NAME_LABEL, KD_I32, 1, "augment, from a labelled dataset")) {
        crd_free(s);
        return NULL;
    }
    /* the teacher head's width comes from the first frame: allocated here,
     * so its absence is reported as the trainer would for a later frame */
    const kd_tensor *t = kd_frame_cget(c->first, s->feat);
    if (!t || t->dtype != KD_F32 || t->rank != 2 || t->dims[1] < 1 || t->dims[1] > (1 << 24)) {
        kd_err_set("frame 0: loss %s needs tensor %s as f32 [B,D] (teacher-extract -m TEACHER)", c->instance,
                   s->feat);
        crd_free(s);
        return NULL;
    }
    s->dt = (int)t->dims[1];
    if (read_classes(s)) {
        kd_err_prefix("loss %s", c->instance);
        crd_free(s);
        return NULL;
    }
    size_t B = (size_t)c->max_batch;
    s->neg = malloc(sizeof(int64_t) * B * s->o.k);
    s->idx = malloc(sizeof(int64_t) * B);
    if (!s->neg || !s->idx) {
        kd_err_set("loss %s: out of memory for %zu x %d negatives", c->instance, B, s->o.k);
        crd_free(s);
        return NULL;
    }
    if (kd_crd_init(&s->c, kd_model_feat_dim(c->student), s->dt, s->o.dim, s->N, s->o.k, c->max_batch, s->o.tau,
                    s->o.mom, c->seed)) {
        kd_err_prefix("loss %s", c->instance);
        crd_free(s);
        return NULL;
    }
    c->params = &s->c.heads;
    return s;
}

/* The batch's rows, checked against the dataset, and their negatives. */
static int sample(crd_state *s, const kd_loss_batch *b)
{
    const kd_tensor *ti = kd_loss_tensor(b, KD_NAME_INDEX);
    const int64_t *idx = ti->data;
    for (int i = 0; i < b->n; i++) {
        if (idx[i] < 0 || idx[i] >= s->N) {
            kd_err_set("loss %s: %s[%d] = %lld is outside the %d rows of %s%s", s->instance, KD_NAME_INDEX, i,
                       (long long)idx[i], s->N, s->o.data, s->o.limit ? " (--crd-limit)" : "");
            return -1;
        }
        if (b->label[i] != s->label[idx[i]]) {
            kd_err_set("loss %s: row %d of the batch has %s %d, row %lld of %s has %d: the stream was not made "
                       "from that file", s->instance, i, KD_NAME_LABEL, b->label[i], (long long)idx[i], s->o.data,
                       s->label[idx[i]]);
            return -1;
        }
        s->idx[i] = idx[i];
    }
    kd_crd_sample(&s->cls, s->seed, b->step, s->idx, b->n, s->o.k, s->neg);
    return 0;
}

static int crd_compute(void *st, kd_loss_batch *b, float weight, double *loss)
{
    crd_state *s = st;
    const float *ft = kd_teacher_rows(b, s->instance, s->feat, s->dt);
    if (!ft || sample(s, b))
        return -1;
    *loss = kd_crd_step(&s->c, b->feat, ft, s->idx, s->neg, b->n, weight, b->d_feat);
    return 0;
}

static int crd_post(void *st, kd_loss_batch *b)
{
    crd_state *s = st;
    if (s->c.n) /* compute ran: the banks take this step's embeddings */
        kd_crd_update(&s->c, s->idx);
    return 0;
}

static int crd_save(void *st, kd_h5 *h, const char *g) { return kd_crd_save(&((crd_state *)st)->c, h, g); }
static int crd_load(void *st, const kd_h5 *h, const char *g) { return kd_crd_load(&((crd_state *)st)->c, h, g); }

const kd_loss_module kd_loss_crd = {
    .name = "crd",
    .summary = "CRD: NCE of embedded pooled features against memory banks (RepDistiller); use with ce",
    .needs = "view0, index i64 [B], label i32 [B], t.feat0 f32 [B,D] (teacher-extract); --crd-data",
    .monitor = KD_MONITOR_TOP1,
    .opts = crd_optv,
    .opts_size = sizeof(crd_opts),
    .init = crd_init,
    .compute = crd_compute,
    .post = crd_post,
    .save = crd_save,
    .load = crd_load,
    .free = crd_free,
};
