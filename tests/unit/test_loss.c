/* The loss modules' gradients against central finite differences: CE on
 * logits, and MoCo's InfoNCE through the L2 normalisation of the query
 * embedding, with the keys from a real momentum encoder and a queue. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_loss.h"
#include "kd_model.h"
#include "kd_rng.h"
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

    kd_arch_opts o = {"resnet20", 1, 0, 0, 32, 16, 0, 0};
    kd_model *m = kd_model_new(&o, 1);
    KD_CHECK(m && kd_model_prepare(m, N, 12, 12) == 0, "model with a head");
    kd_loss_opts lo = {32, 0.2f, 0.99f, 4, 1, N, 12, 12};
    const kd_loss_module *mm = kd_loss_find("moco");
    void *st = mm->init(m, &lo);
    KD_CHECK(st != NULL, "moco init");
    float *v0 = malloc(sizeof(float) * N * 144), *v1 = malloc(sizeof(float) * N * 144);
    for (int i = 0; i < N * 144; i++) v0[i] = kd_rng_normal(&r), v1[i] = kd_rng_normal(&r);
    float emb[N * 16], demb[N * 16] = {0}, dummy[N * 16];
    for (int i = 0; i < N * 16; i++) emb[i] = kd_rng_normal(&r);
    kd_loss_batch b = {NULL, v0, v1, NULL, N, 0, m, NULL, NULL, emb, NULL, NULL, demb};
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
    free(v0), free(v1);
    return KD_TEST_DONE();
}
