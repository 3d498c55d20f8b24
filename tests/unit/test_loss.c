/* The loss modules' gradients against central finite differences: CE on
 * logits, and MoCo's InfoNCE through the L2 normalisation of the query
 * embedding, with the keys from a real momentum encoder and a queue. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_loss.h"
#include "kd_model.h"
#include "kd_err.h"
#include "kd_rng.h"
#include "kd_tensor.h"
#include "kd_test.h"

int main(void)
{
    kd_rng r = kd_rng_make(9, 0, 0);
    enum { N = 8, K = 10 };
    float z[N * K], d[N * K] = {0};
    int32_t y[N];
    for (int i = 0; i < N * K; i++) z[i] = 2 * kd_rng_normal(&r);
    for (int i = 0; i < N; i++) y[i] = (int32_t)kd_rng_below(&r, K);
    double l0 = kd_softmax_ce(z, y, N, K, 1.0f, d), worst = 0;
    for (int i = 0; i < N * K; i += 7) {
        float s = z[i], h = 1e-2f;
        z[i] = s + h;
        double a = kd_softmax_ce(z, y, N, K, 1, NULL);
        z[i] = s - h;
        double b = kd_softmax_ce(z, y, N, K, 1, NULL);
        z[i] = s;
        worst = fmax(worst, fabs((a - b) / (2 * h) - d[i]) / (fabs(d[i]) + 1e-3));
    }
    KD_CHECK(l0 > 0 && worst < 1e-2, "CE gradient vs finite differences: worst rel err %.1e", worst);

    kd_arch_opts o = {.arch = "resnet20", .in_channels = 1, .head_hidden = 32, .head_out = 16};
    kd_model *m = kd_model_new(&o, 1);
    KD_CHECK(m && kd_model_prepare(m, N, 12, 12) == 0, "model with a head");
    const kd_loss_module *mm = kd_loss_find("moco");
    KD_CHECK(mm && mm->opts_size > 0, "moco is registered with options");
    void *mo = calloc(1, mm->opts_size);
    KD_CHECK(kd_loss_opts_defaults(mm, mo) == 0 && kd_loss_opts_set(mm, mo, "queue", "32") == 0 &&
                 kd_loss_opts_set(mm, mo, "moco-m", "0.99") == 0 && kd_loss_opts_set(mm, mo, "shuffle-bn-group", "4") == 0,
             "moco options: defaults, then queue 32, moco-m 0.99, shuffle-bn-group 4");
    kd_frame f;
    kd_frame_init(&f);
    int64_t dims[4] = {N, 1, 12, 12};
    kd_tensor *t0 = kd_frame_add(&f, "view0", KD_F32, 4, dims), *t1 = kd_frame_add(&f, "view1", KD_F32, 4, dims);
    KD_CHECK(t0 && t1, "a frame with two views");
    t0 = kd_frame_get(&f, "view0");
    float *v0 = t0->data, *v1 = t1->data;
    for (int i = 0; i < N * 144; i++) v0[i] = kd_rng_normal(&r), v1[i] = kd_rng_normal(&r);
    kd_loss_init c = {.student = m, .opts = mo, .first = &f, .seed = 1, .max_batch = N, .c = 1, .h = 12, .w = 12,
                      .instance = "moco"};
    void *st = mm->init(&c);
    KD_CHECK(st != NULL, "moco init");
    KD_CHECK(c.views == 1 && c.nneeds == 1 && !strcmp(c.needs[0].name, "view1") && c.needs[0].dtype == KD_F32,
             "moco asks for the student on view0 and needs view1 f32 (views %#x, %d needs)", c.views, c.nneeds);
    float emb[N * 16], demb[N * 16] = {0}, dummy[N * 16];
    for (int i = 0; i < N * 16; i++) emb[i] = kd_rng_normal(&r);
    kd_loss_batch b = {.frame = &f, .n = N, .student = m, .view = 0, .x = v0, .emb = emb, .d_emb = demb};
    KD_CHECK(mm->pre(st, &b) == 0, "keys from the momentum encoder (shuffle-BN groups of 4)");
    double loss;
    mm->compute(st, &b, 1.0f, &loss);
    KD_CHECK(loss > 0 && loss < 10, "InfoNCE loss %.4f (ln 33 = %.4f)", loss, log(33.0));
    worst = 0;
    for (int i = 0; i < N * 16; i += 3) {
        float s = emb[i], h = 1e-2f;
        double a, c;
        b.d_emb = dummy;
        emb[i] = s + h;
        mm->compute(st, &b, 1.0f, &a);
        emb[i] = s - h;
        mm->compute(st, &b, 1.0f, &c);
        emb[i] = s;
        b.d_emb = demb;
        worst = fmax(worst, fabs((a - c) / (2 * h) - demb[i]) / (fabs(demb[i]) + 1e-3));
    }
    KD_CHECK(worst < 2e-2, "InfoNCE gradient through the L2 norm vs finite differences: worst rel err %.1e", worst);
    /* a step against the gradient lowers the loss */
    for (int i = 0; i < N * 16; i++) emb[i] -= 0.5f * demb[i];
    double after;
    b.d_emb = dummy;
    mm->compute(st, &b, 1.0f, &after);
    KD_CHECK(after < loss, "descending the gradient lowers the loss: %.4f -> %.4f", loss, after);
    mm->free(st);
    kd_model_free(m);
    kd_frame_free(&f);

    /* the registry and the generic option parser */
    KD_CHECK(!strcmp(kd_loss_names(), "ce moco disco seed kd dkd crd msd ssa"), "registry: '%s'", kd_loss_names());
    KD_CHECK(kd_loss_opts_set(mm, mo, "queue", "0") == -1 && strstr(kd_err_get(), "queue: 0 is outside [1, "),
             "out of range: %s", kd_err_get());
    KD_CHECK(kd_loss_opts_set(mm, mo, "queue", "1.5") == -1 && strstr(kd_err_get(), "is not an integer"),
             "not an integer: %s", kd_err_get());
    KD_CHECK(kd_loss_opts_set(mm, mo, "tau", "x") == -1 && strstr(kd_err_get(), "'x' is not a number"),
             "not a number: %s", kd_err_get());
    KD_CHECK(kd_loss_opts_set(mm, mo, "nope", "1") == -1 &&
                 !strcmp(kd_err_get(), "loss moco has no option 'nope' (it has: queue tau moco-m shuffle-bn-group)"),
             "unknown option: %s", kd_err_get());
    KD_CHECK(kd_loss_opts_set(kd_loss_find("ce"), NULL, "tau", "1") == -1 &&
                 !strcmp(kd_err_get(), "loss ce has no option 'tau' (it has: none)"),
             "ce has no options: %s", kd_err_get());
    /* a string option (crd's dataset file): copied, empty by default, bounded */
    const kd_loss_module *cm = kd_loss_find("crd");
    const kd_loss_opt *co = cm ? kd_loss_opt_find(cm, "crd-data") : NULL;
    char *copt = cm ? calloc(1, cm->opts_size) : NULL;
    if (KD_REQUIRE(co && co->type == KD_LOPT_STR && copt, "crd registered with a string option crd-data")) {
        char *field = copt + co->off, big[KD_LOPT_STR_MAX + 1];
        memset(big, 'a', KD_LOPT_STR_MAX);
        big[KD_LOPT_STR_MAX] = 0;
        KD_CHECK(kd_loss_opts_defaults(cm, copt) == 0 && !field[0] && kd_loss_opts_set(cm, copt, "crd-data", "x/d.h5") == 0 &&
                     !strcmp(field, "x/d.h5"),
                 "string option: default empty, then '%s'", field);
        KD_CHECK(kd_loss_opts_set(cm, copt, "crd-data", big) == -1 && strstr(kd_err_get(), "is too long (at most 255") &&
                     !strcmp(field, "x/d.h5"),
                 "a string of %d characters is refused, the value kept: %s", KD_LOPT_STR_MAX, kd_err_get());
    }
    free(copt);
    free(mo);
    return KD_TEST_DONE();
}
