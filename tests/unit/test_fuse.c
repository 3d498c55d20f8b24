/* test_fuse — batch norm fused with its ReLU and residual add
 * (kd_model_plan.c's plan_fusion, kd_bn_epi) against the unfused twin
 * (kd_model_set_fusion(m, 0)): the same float operations in the same
 * order, so every output, gradient and running statistic must be the same
 * bits.  Per architecture (resnet20, wrn_16_2, mobilenet_v2; resnet8x4 and
 * mobilenet_v3_large with whole-batch BN only, for time): two training
 * steps' forward and backward (logits, features and the last stage map
 * carrying a gradient), with whole-batch BN, with BN groups (MoCo's shuffle
 * BN) and with synchronised BN over one replica; an eval forward of the
 * trained model; an eval-only plan (BN
 * folded into the conv, then the add and ReLU in one pass).  The fused
 * plan must not need more memory.  Then the fused path on 1 and on 2
 * threads: bit-identical.  Kernel level: kd_bn_*_fused against
 * kd_bn_* + kd_add_forward + kd_act_*.  Plan level, every architecture of
 * the zoo: each conv -> BN is folded in an eval-only plan, and each BN read
 * only by the ReLU after it is fused, in both plans. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"
#include "kd_layers.h"
#include "kd_model.h"
#include "kd_rng.h"
#include "kd_test.h"
#include "nn/kd_model_build.h" /* the plan's node table, for test_plans */

enum { N = 4, S = 16, K = 10 };

static float *randn(size_t n, uint64_t key)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    kd_rng r = kd_rng_make(777, key, 0);
    for (size_t i = 0; p && i < n; i++)
        p[i] = kd_rng_normal(&r);
    return p;
}

static int ident_sum(double *v, size_t n)
{
    (void)v, (void)n;
    return 0;
}

typedef enum { M_WHOLE, M_GROUP, M_SYNC } bn_mode;

typedef struct {
    float *logits, *feat, *grads, *bufs, *eval;
    size_t nl, nf, ng, nb, mem;
    int ok;
} run_out;

static void run_free(run_out *r) { free(r->logits), free(r->feat), free(r->grads), free(r->bufs), free(r->eval); }

static float *dup(const float *p, size_t n)
{
    float *q = malloc((n ? n : 1) * sizeof *q);
    if (q && p)
        memcpy(q, p, n * sizeof *q);
    return q;
}

/* Two training steps (forward, backward with fixed output gradients; the
 * parameters are not stepped, the running statistics advance) and an eval
 * forward; everything the caller compares is copied out. */
static run_out run_train(const char *arch, int fuse, bn_mode mode, int threads)
{
    run_out o = {0};
    omp_set_num_threads(threads);
    kd_arch_opts ao = {.arch = arch, .in_channels = 3, .num_classes = K};
    kd_model *m = kd_model_new(&ao, 42);
    if (!KD_REQUIRE(m, "%s: build: %s", arch, kd_err_get()))
        return o;
    kd_model_set_fusion(m, fuse);
    kd_model_set_regularisers(m, 0, 0);
    if (mode == M_SYNC && kd_model_set_bn_sync(m, ident_sum)) {
        KD_REQUIRE(0, "%s: bn sync: %s", arch, kd_err_get());
        kd_model_free(m);
        return o;
    }
    if (!KD_REQUIRE(!kd_model_prepare(m, N, S, S), "%s: prepare: %s", arch, kd_err_get())) {
        kd_model_free(m);
        return o;
    }
    o.mem = kd_model_memory(m);
    int D = kd_model_feat_dim(m), c, h, w;
    kd_model_stage_map(m, kd_model_nstages(m), &c, &h, &w);
    size_t nx = (size_t)N * 3 * S * S, nmap = (size_t)N * c * h * w;
    float *x = randn(nx, 1), *dl = randn((size_t)N * K, 2), *df = randn((size_t)N * D, 3), *dm = randn(nmap, 4);
    int rc = 0;
    for (int step = 0; step < 2 && !rc; step++) {
        kd_model_zero_grad(m);
        x[step] += 0.5f;
        rc = kd_model_forward(m, x, N, 1, mode == M_GROUP ? 2 : 0) ||
             kd_model_backward(m, df, dl, NULL, step ? dm : NULL);
    }
    if (!KD_REQUIRE(!rc, "%s: train step: %s", arch, kd_err_get())) {
        free(x), free(dl), free(df), free(dm);
        kd_model_free(m);
        return o;
    }
    o.nl = (size_t)N * K, o.nf = (size_t)N * D;
    o.logits = dup(kd_model_logits(m), o.nl);
    o.feat = dup(kd_model_features(m), o.nf);
    const float *g = kd_model_grads(m, &o.ng), *b = kd_model_buffers(m, &o.nb);
    o.grads = dup(g, o.ng);
    o.bufs = dup(b, o.nb);
    rc = kd_model_forward(m, x, N, 0, 0);
    o.eval = dup(kd_model_logits(m), o.nl);
    o.ok = !rc && o.logits && o.feat && o.grads && o.bufs && o.eval;
    free(x), free(dl), free(df), free(dm);
    kd_model_free(m);
    return o;
}

static int same(const float *a, const float *b, size_t n) { return a && b && !memcmp(a, b, n * sizeof *a); }

static void diff(const char *what, const float *a, const float *b, size_t n)
{
    double e = 0;
    size_t k = 0;
    for (size_t i = 0; a && b && i < n; i++)
        if (memcmp(a + i, b + i, 4)) {
            k++;
            double d = fabs((double)a[i] - b[i]) / (fabs((double)a[i]) + 1e-30);
            if (d > e)
                e = d;
        }
    if (k)
        printf("# %s: %zu of %zu differ, max rel %.2e\n", what, k, n, e);
}

static int same_run(const run_out *a, const run_out *b)
{
    diff("logits", a->logits, b->logits, a->nl);
    diff("feat", a->feat, b->feat, a->nf);
    diff("grads", a->grads, b->grads, a->ng);
    diff("bufs", a->bufs, b->bufs, a->nb);
    diff("eval", a->eval, b->eval, a->nl);
    return a->ok && b->ok && a->ng == b->ng && a->nb == b->nb && same(a->logits, b->logits, a->nl) &&
           same(a->feat, b->feat, a->nf) && same(a->grads, b->grads, a->ng) && same(a->bufs, b->bufs, a->nb) &&
           same(a->eval, b->eval, a->nl);
}

/* all: every BN mode, else whole-batch BN only (the slow models) */
static void test_train(const char *arch, int all)
{
    static const char *names[] = {"whole-batch BN", "BN groups of 2", "sync BN (one replica)"};
    for (int mode = M_WHOLE; mode <= (all ? M_SYNC : M_WHOLE); mode++) {
        run_out f = run_train(arch, 1, (bn_mode)mode, 2), u = run_train(arch, 0, (bn_mode)mode, 2);
        KD_CHECK(same_run(&f, &u),
                 "%s, %s: fused == unfused bit for bit (logits, features, %zu gradients, running stats, eval logits)",
                 arch, names[mode], f.ng);
        if (mode == M_WHOLE)
            KD_CHECK(f.ok && u.ok && f.mem <= u.mem, "%s: fused plan memory %.2f MB <= unfused %.2f MB", arch,
                     f.mem / 1048576.0, u.mem / 1048576.0);
        run_free(&f), run_free(&u);
    }
    run_out t1 = run_train(arch, 1, M_WHOLE, 1), t2 = run_train(arch, 1, M_WHOLE, 2);
    KD_CHECK(same_run(&t1, &t2), "%s: fused path on 1 and 2 threads: bit-identical", arch);
    run_free(&t1), run_free(&t2);
}

/* eval-only plans: BN folded into the conv, then add+ReLU fused */
static void test_eval_only(const char *arch)
{
    float *out[2] = {0};
    size_t mem[2] = {0};
    omp_set_num_threads(2);
    float *x = randn((size_t)N * 3 * S * S, 9);
    for (int fuse = 0; fuse < 2; fuse++) {
        kd_arch_opts ao = {.arch = arch, .in_channels = 3, .num_classes = K};
        kd_model *m = kd_model_new(&ao, 43);
        if (!KD_REQUIRE(m, "%s: build: %s", arch, kd_err_get()))
            break;
        /* non-trivial running statistics, so that the fold matters */
        size_t nb;
        float *b = kd_model_buffers(m, &nb);
        kd_rng r = kd_rng_make(5, 0, 0);
        for (size_t i = 0; i < nb; i++)
            b[i] = 0.5f + kd_rng_uniform(&r);
        kd_model_set_eval_only(m, 1);
        kd_model_set_fusion(m, fuse);
        if (KD_REQUIRE(!kd_model_prepare(m, N, S, S) && !kd_model_forward(m, x, N, 0, 0), "%s: eval-only: %s", arch,
                       kd_err_get())) {
            out[fuse] = dup(kd_model_logits(m), (size_t)N * K);
            mem[fuse] = kd_model_memory(m);
        }
        kd_model_free(m);
    }
    KD_CHECK(same(out[0], out[1], (size_t)N * K) && mem[1] <= mem[0],
             "%s eval-only (BN folded): fused == unfused logits bit for bit, memory %.2f <= %.2f MB", arch,
             mem[1] / 1048576.0, mem[0] / 1048576.0);
    free(out[0]), free(out[1]), free(x);
}

/* The kernels on their own, in place as the plan runs them (y over the
 * residual), every epilogue, groups and sync. */
static void test_kernels(int n, int C, int HW, int group)
{
    size_t sz = (size_t)n * C * HW;
    float *x = randn(sz, 20), *ga = randn(C, 21), *be = randn(C, 22), *res = randn(sz, 23), *dyo = randn(sz, 24);
    int G = group ? n / group : 1;
    float *st = calloc(4 * (size_t)G * C + 4 * (size_t)C, sizeof(float));
    double *work = malloc(sizeof(double) * (2 * (size_t)C + 1));
    static const kd_act acts[3] = {KD_IDENTITY, KD_RELU, KD_RELU6};
    int ok = st && work;
    for (int a = 0; a < 3 && ok; a++)
        for (int with_res = 0; with_res < 2 && ok; with_res++)
            for (int sync = 0; sync < 2 && ok; sync++) {
                if (sync && group)
                    continue;
                kd_act act = acts[a];
                float *mean = st, *rstd = st + (size_t)G * C, *rm = st + 2 * (size_t)G * C, *rv = rm + C;
                /* unfused: bn, add, act; backward through zeroed buffers */
                float *yu = calloc(sz, 4), *ru = dup(res, sz), *dyu = dup(dyo, sz), *dbn = calloc(sz, 4);
                float *dxu = calloc(sz, 4), *dru = randn(sz, 30), *dgu = calloc(C, 4), *dbu = calloc(C, 4);
                float *yf = dup(res, sz), *dyf = dup(dyo, sz), *dxf = calloc(sz, 4), *drf = randn(sz, 30);
                float *dgf = calloc(C, 4), *dbf = calloc(C, 4);
                memset(rm, 0, 2 * C * sizeof(float));
                if (sync)
                    kd_bn_forward_train_sync(ident_sum, work, n, C, HW, x, ga, be, yu, mean, rstd, rm, rv, 0.1f, 1e-5f);
                else
                    kd_bn_forward_train(n, C, HW, group, x, ga, be, yu, mean, rstd, rm, rv, 0.1f, 1e-5f);
                if (with_res)
                    kd_add_forward(yu, ru, yu, sz);
                kd_act_forward(act, yu, yu, sz);
                kd_act_backward(act, yu, yu, dyu, dbn, sz);
                if (with_res)
                    for (size_t i = 0; i < sz; i++)
                        dru[i] += dbn[i];
                if (sync)
                    kd_bn_backward_sync(ident_sum, work, n, C, HW, x, mean, rstd, ga, dbn, dxu, dgu, dbu);
                else
                    kd_bn_backward(n, C, HW, group, x, mean, rstd, ga, dbn, dxu, dgu, dbu);
                /* fused, y written over the residual; dx fresh */
                kd_bn_epi e = {.act = act, .res = with_res ? yf : NULL};
                memset(rm, 0, 2 * C * sizeof(float));
                if (sync)
                    kd_bn_forward_train_sync_fused(ident_sum, work, n, C, HW, x, ga, be, &e, yf, mean, rstd, rm, rv,
                                                   0.1f, 1e-5f);
                else
                    kd_bn_forward_train_fused(n, C, HW, group, x, ga, be, &e, yf, mean, rstd, rm, rv, 0.1f, 1e-5f);
                kd_bn_epi eb = {.act = act, .y = yf, .dres = with_res ? drf : NULL, .fresh_dx = 1};
                for (size_t i = 0; i < sz; i++)
                    dxf[i] = 12345.0f; /* fresh: must not be read */
                if (sync)
                    kd_bn_backward_sync_fused(ident_sum, work, n, C, HW, x, mean, rstd, ga, &eb, dyf, dxf, dgf, dbf);
                else
                    kd_bn_backward_fused(n, C, HW, group, x, mean, rstd, ga, &eb, dyf, dxf, dgf, dbf);
                ok = same(yu, yf, sz) && same(dxu, dxf, sz) && same(dgu, dgf, C) && same(dbu, dbf, C) &&
                     same(dbn, dyf, sz) && (!with_res || same(dru, drf, sz));
                KD_CHECK(ok, "bn kernels N%d C%d HW%d group %d%s act %d%s: fused == bn+add+act bit for bit", n, C, HW,
                         group, sync ? " sync" : "", (int)act, with_res ? " +residual" : "");
                free(yu), free(ru), free(dyu), free(dbn), free(dxu), free(dru), free(dgu), free(dbu);
                free(yf), free(dyf), free(dxf), free(drf), free(dgf), free(dbf);
            }
    /* eval: the folded add+act pass and the eval BN epilogue */
    float *ye = calloc(sz, 4), *yf = dup(res, sz), *rm = randn(C, 40), *rv = randn(C, 41);
    for (int c = 0; c < C; c++)
        rv[c] = rv[c] * rv[c] + 0.1f;
    kd_bn_forward_eval(n, C, HW, x, ga, be, rm, rv, 1e-5f, ye);
    kd_add_forward(ye, res, ye, sz);
    kd_act_forward(KD_RELU, ye, ye, sz);
    kd_bn_epi e = {.act = KD_RELU, .res = yf};
    kd_bn_forward_eval_fused(n, C, HW, x, ga, be, rm, rv, 1e-5f, &e, yf);
    float *ya = calloc(sz, 4);
    kd_add_forward(x, res, ya, sz);
    kd_act_forward(KD_RELU6, ya, ya, sz);
    float *yb = dup(x, sz);
    kd_add_act_forward(yb, res, KD_RELU6, yb, sz);
    KD_CHECK(same(ye, yf, sz) && same(ya, yb, sz), "eval bn+add+relu and add+relu6 fused, in place: bit for bit");
    free(ye), free(yf), free(rm), free(rv), free(ya), free(yb);
    free(x), free(ga), free(be), free(res), free(dyo), free(st), free(work);
}

/* Every conv -> BN folded when eval-only; every BN -> ReLU fused. */
static void test_plans(void)
{
    char names[512];
    snprintf(names, sizeof names, "%s", kd_model_arch_names());
    for (char *sv, *a = strtok_r(names, " ", &sv); a; a = strtok_r(NULL, " ", &sv)) {
        for (int eval = 0; eval < 2; eval++) {
            kd_arch_opts ao = {.arch = a, .in_channels = 3, .num_classes = K};
            kd_model *m = kd_model_new(&ao, 1);
            if (!KD_REQUIRE(m, "%s: build: %s", a, kd_err_get()))
                return;
            kd_model_set_eval_only(m, eval);
            if (!KD_REQUIRE(!kd_model_prepare(m, 2, 32, 32), "%s: prepare: %s", a, kd_err_get())) {
                kd_model_free(m);
                return;
            }
            int bn = 0, convbn = 0, folded = 0, bnrelu = 0, fused = 0, with_add = 0;
            for (int i = 0; i < m->nn; i++) {
                const kd_node *d = &m->nodes[i];
                if (d->op != N_BN)
                    continue;
                bn++;
                int p = m->vals[d->in].producer;
                convbn += p >= 0 && m->nodes[p].op == N_CONV && m->vals[d->in].nuse == 1;
                folded += d->folded;
                const kd_node *nx = i + 1 < m->nn ? &m->nodes[i + 1] : NULL;
                bnrelu += nx && nx->op == N_ACT && (nx->act == KD_RELU || nx->act == KD_RELU6) && nx->in == d->out &&
                          m->vals[d->out].nuse == 1;
                fused += d->fuse_act >= 0 || d->fuse_add >= 0;
                with_add += d->fuse_add >= 0;
            }
            if (eval)
                KD_CHECK(folded == convbn && fused >= bnrelu,
                         "%s eval-only plan: %d BN, %d of %d conv->BN folded, %d fused (%d with the add; %d BN->ReLU)",
                         a, bn, folded, convbn, fused, with_add, bnrelu);
            else
                KD_CHECK(fused >= bnrelu && !folded,
                         "%s training plan: %d BN, %d fused (%d with the residual add; %d BN->ReLU)", a, bn, fused,
                         with_add, bnrelu);
            kd_model_free(m);
        }
    }
}

int main(void)
{
    if (kd_gemm_init(2))
        return 1;
    test_kernels(4, 5, 49, 0);
    test_kernels(8, 3, 16, 2);
    test_kernels(6, 17, 1, 0);
    test_plans();
    static const char *archs[] = {"resnet20", "wrn_16_2", "mobilenet_v2", "resnet8x4", "mobilenet_v3_large"};
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++) {
        test_train(archs[i], i < 3);
        test_eval_only(archs[i]);
    }
    return KD_TEST_DONE();
}
