/* test_models — the architectures against PyTorch 1.13 / torchvision 0.14.
 *
 * tests/fixtures/models.h5 (written by tests/gen/models.py) holds, per case,
 * the state-dict names and shapes PyTorch has, and the outputs it computes
 * (features, logits, embedding, last stage map; in training mode also the
 * parameter gradients as per-tensor sums of squares and projections, and
 * running statistics after the step).  Weights and inputs are not stored:
 * both sides fill them from the tensor's name with the same integer hash.
 *
 * Also: eval-only planning gives the same outputs; a model file round trip;
 * load errors (unknown arch, missing tensor, wrong shape); initialisation
 * statistics; finite-difference check of the whole network's backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_model.h"
#include "kd_model_io.h"
#include "kd_rng.h"
#include "kd_fixture_weights.h"
#include "kd_test.h"

static const char *fixture = "tests/fixtures/models.h5";
static char tmpdir[256];

static const kd_pview *find_view(const kd_model *m, const char *name, int *is_buf)
{
    for (int i = 0; i < kd_model_nparam_views(m); i++)
        if (!strcmp(kd_model_param_view(m, i)->name, name)) {
            *is_buf = 0;
            return kd_model_param_view(m, i);
        }
    for (int i = 0; i < kd_model_nbuffer_views(m); i++)
        if (!strcmp(kd_model_buffer_view(m, i)->name, name)) {
            *is_buf = 1;
            return kd_model_buffer_view(m, i);
        }
    return NULL;
}

static float *read_all(kd_h5 *h, const char *grp, const char *name, int64_t *numel)
{
    char path[256];
    snprintf(path, sizeof path, "%.60s/%.120s", grp, name);
    if (!kd_h5_exists(h, path))
        return NULL;
    kd_dtype dt;
    int rank;
    int64_t dims[KD_MAX_RANK], n = 1;
    if (kd_h5_info(h, path, &dt, &rank, dims))
        return NULL;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    float *buf = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (buf && kd_h5_read(h, path, KD_F32, 0, rank ? dims[0] : 1, buf)) {
        free(buf);
        return NULL;
    }
    if (numel)
        *numel = n;
    return buf;
}

static double *read_f64(kd_h5 *h, const char *grp, const char *name, int64_t *numel)
{
    char path[256];
    snprintf(path, sizeof path, "%.60s/%.120s", grp, name);
    kd_dtype dt;
    int rank;
    int64_t dims[KD_MAX_RANK];
    if (kd_h5_info(h, path, &dt, &rank, dims))
        return NULL;
    double *buf = malloc((size_t)dims[0] * sizeof(double));
    float *tmp = malloc((size_t)dims[0] * sizeof(float));
    /* kd_h5 reads convert to our dtypes; doubles come through float here
     * only for the comparison's sake, so read them via raw HDF5 */
    hid_t d = H5Dopen2(h->id, path, H5P_DEFAULT);
    if (d < 0 || H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        buf = NULL;
    }
    if (d >= 0)
        H5Dclose(d);
    free(tmp);
    *numel = dims[0];
    return buf;
}

static long long get_i(kd_h5 *h, const char *g, const char *a)
{
    int64_t v = 0;
    kd_h5_attr_get_i64(h, g, a, &v);
    return v;
}

static void cmp(const char *cs, const char *what, const float *got, const float *want, int64_t n, double tol)
{
    double e = kd_test_relerr(got, want, (long)n, 1e-6);
    KD_CHECK(e <= tol, "%s: %s rel err %.2e (n=%lld)", cs, what, e, (long long)n);
}

/* every dataset of the fixture, "case/name" (kd_h5_walk order) */
typedef struct {
    char **v;
    int n, cap;
} names_list;

/* Runs one case; 1 when it is a training-mode case, 0 eval, -1 when it
 * could not run (a failing check says why). */
static int run_case(kd_h5 *h, const char *cs, const names_list *all)
{
    char arch[64] = "", mode[16] = "";
    if (!KD_REQUIRE(kd_h5_attr_get_str(h, cs, "arch", arch, sizeof arch) == 0 &&
                        kd_h5_attr_get_str(h, cs, "mode", mode, sizeof mode) == 0 &&
                        (!strcmp(mode, "train") || !strcmp(mode, "eval")),
                    "%s: attributes arch and mode (train|eval) ('%s', '%s')", cs, arch, mode))
        return -1;
    double wm = 1;
    kd_h5_attr_get_f64(h, cs, "width_mult", &wm);
    kd_arch_opts o = {arch, (int)get_i(h, cs, "in_channels"), (int)get_i(h, cs, "num_classes"),
                      (int)get_i(h, cs, "cifar_stem"), (int)get_i(h, cs, "head_hidden"),
                      (int)get_i(h, cs, "head_out"), (int)get_i(h, cs, "head_bn"), (float)wm};
    int N = (int)get_i(h, cs, "N"), H = (int)get_i(h, cs, "H"), W = (int)get_i(h, cs, "W");
    int train = !strcmp(mode, "train");
    kd_model *m = kd_model_new(&o, 7);
    KD_CHECK(m != NULL, "%s: build %s (%s)", cs, arch, m ? "" : kd_err_get());
    if (!m)
        return -1;

    /* names and shapes exactly as PyTorch's state dict */
    char **names = NULL;
    int nn = kd_h5_attr_get_strv(h, cs, "names", &names);
    int64_t *shapes = malloc((size_t)(nn > 0 ? nn : 1) * 5 * sizeof(int64_t));
    char sp[256];
    snprintf(sp, sizeof sp, "%.60s/shapes", cs);
    if (!KD_REQUIRE(nn > 0 && kd_h5_read(h, sp, KD_I64, 0, nn, shapes) == 0,
                    "%s: attribute 'names' (%d) and dataset 'shapes'", cs, nn)) {
        kd_strv_free(names, nn);
        free(shapes);
        kd_model_free(m);
        return -1;
    }
    int bad = 0;
    for (int i = 0; i < nn; i++) {
        int isb;
        const kd_pview *v = find_view(m, names[i], &isb);
        int ok = v && v->rank == shapes[i * 5];
        for (int k = 0; ok && k < v->rank; k++)
            ok = v->shape[k] == shapes[i * 5 + 1 + k];
        if (!ok && bad++ < 5)
            printf("# %s: %s %s\n", cs, names[i], v ? "has another shape" : "missing");
    }
    int total = kd_model_nparam_views(m) + kd_model_nbuffer_views(m);
    KD_CHECK(!bad && total == nn, "%s: %d state-dict tensors, names and shapes match (%d mismatches, ours %d)", cs,
             nn, bad, total);
    kd_strv_free(names, nn);
    free(shapes);

    fill_model(m);
    size_t nin = (size_t)N * o.in_channels * H * W;
    float *x = malloc(nin * sizeof(float));
    char key[128];
    snprintf(key, sizeof key, "input:%.60s", cs);
    for (size_t j = 0; j < nin; j++)
        x[j] = (float)(pat(fnv1a(key), j) * sqrt(12.0));
    if (kd_model_prepare(m, N, H, W)) {
        KD_CHECK(0, "%s: prepare: %s", cs, kd_err_get());
        free(x);
        kd_model_free(m);
        return -1;
    }
    kd_model_set_regularisers(m, 0, 0);
    int rc = kd_model_forward(m, x, N, train, 0);
    KD_CHECK(rc == 0, "%s: forward (%s)", cs, rc ? kd_err_get() : mode);
    int64_t n;
    float *want;
    /* the outputs the model has are required in the fixture, by
     * tests/gen/models.py's rules: features always, logits when there are
     * classes, the embedding when there is a head, the last stage map in
     * training mode or when it has at most 4096 values */
    int mc, mh, mw;
    const float *mp = kd_model_stage_map(m, kd_model_nstages(m), &mc, &mh, &mw);
    int64_t map_n = (int64_t)N * mc * mh * mw;
    struct {
        const char *ds, *what;
        const float *got;
        int64_t numel;
        int expected;
    } outs[] = {
        {"feat", "features", kd_model_features(m), (int64_t)N * kd_model_feat_dim(m), 1},
        {"logits", "logits", kd_model_logits(m), (int64_t)N * kd_model_num_classes(m), kd_model_num_classes(m) > 0},
        {"emb", "embedding", kd_model_embedding(m), (int64_t)N * o.head_out, o.head_out > 0},
        {"map", "last stage map", mp, map_n, train || map_n <= 4096},
    };
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) {
        want = read_all(h, cs, outs[k].ds, &n);
        if (!want) {
            if (outs[k].expected)
                KD_REQUIRE(0, "%s: dataset '%s' (the model has %s)", cs, outs[k].ds, outs[k].what);
            continue;
        }
        if (KD_REQUIRE(outs[k].got && n == outs[k].numel, "%s: %s: fixture has %lld values, the model %lld", cs,
                       outs[k].what, (long long)n, (long long)(outs[k].got ? outs[k].numel : 0)))
            cmp(cs, outs[k].what, outs[k].got, want, n, 1e-4);
        free(want);
    }
    if (!train) {
        /* eval-only planning reuses memory but must compute the same */
        size_t mem_full = kd_model_memory(m);
        int K = kd_model_num_classes(m), D = kd_model_feat_dim(m);
        float *ref = malloc((size_t)N * (K ? K : D) * sizeof(float));
        memcpy(ref, K ? kd_model_logits(m) : kd_model_features(m), (size_t)N * (K ? K : D) * sizeof(float));
        kd_model_set_eval_only(m, 1);
        rc = kd_model_prepare(m, N, H, W) || kd_model_forward(m, x, N, 0, 0);
        const float *got = K ? kd_model_logits(m) : kd_model_features(m);
        double e = rc ? 1 : kd_test_relerr(got, ref, (long)N * (K ? K : D), 1e-6);
        KD_CHECK(e <= 1e-5, "%s: eval-only plan (BN folded into convs, memory reused) agrees: %.1e "
                 "(planned memory %.1f MB vs %.1f MB)", cs, e, kd_model_memory(m) / 1e6, mem_full / 1e6);
        free(ref);
    } else {
        /* backward with the gradients PyTorch used */
        float *dfeat = read_all(h, cs, "dfeat", NULL), *dlog = read_all(h, cs, "dlogits", NULL);
        float *demb = read_all(h, cs, "demb", NULL), *dmap = read_all(h, cs, "dmap", NULL);
        KD_REQUIRE(dfeat || dlog || demb || dmap, "%s: at least one of dfeat, dlogits, demb, dmap", cs);
        kd_model_zero_grad(m);
        rc = kd_model_backward(m, dfeat, dlog, demb, dmap);
        KD_CHECK(rc == 0, "%s: backward", cs);
        char **pn = NULL;
        int np = kd_h5_attr_get_strv(h, cs, "pnames", &pn);
        int64_t ng = -1, ngp = -1;
        double *gss = read_f64(h, cs, "gss", &ng), *gproj = read_f64(h, cs, "gproj", &ngp);
        /* every parameter of the model has its gradient in the fixture */
        int have = KD_REQUIRE(np > 0 && np == kd_model_nparam_views(m) && gss && gproj && ng == np && ngp == np,
                              "%s: attribute 'pnames' (%d names, model has %d parameter tensors), datasets 'gss' "
                              "(%lld) and 'gproj' (%lld)", cs, np, kd_model_nparam_views(m),
                              (long long)(gss ? ng : -1), (long long)(gproj ? ngp : -1));
        const float *g = kd_model_grads(m, NULL);
        double worst = 0, worstp = 0;
        const char *wn = "", *wpn = "";
        double gmax = 0;
        for (int i = 0; have && i < np; i++)
            if (gss[i] > gmax)
                gmax = gss[i];
        for (int i = 0; have && i < np; i++) {
            int isb;
            const kd_pview *v = find_view(m, pn[i], &isb);
            if (!v || isb) {
                worst = 1e9;
                wn = pn[i];
                continue;
            }
            double ss = 0, pr = 0;
            uint32_t k = 0;
            char pk[128];
            snprintf(pk, sizeof pk, "proj:%s", pn[i]);
            k = fnv1a(pk);
            for (size_t j = 0; j < v->n; j++) {
                double gj = g[v->off + j];
                ss += gj * gj;
                pr += gj * pat(k, j);
            }
            double e = fabs(ss - gss[i]) / fmax(gss[i], 1e-10 * gmax + 1e-30);
            double ep = fabs(pr - gproj[i]) / fmax(sqrt(gss[i] * (double)v->n / 12.0), 1e-5 * sqrt(gmax) + 1e-30);
            if (e > worst)
                worst = e, wn = pn[i];
            if (ep > worstp)
                worstp = ep, wpn = pn[i];
        }
        KD_CHECK(have && worst <= 2e-3, "%s: %d parameter gradients, sum of squares worst rel err %.2e (%s)", cs, np,
                 worst, wn);
        /* the deep mobile nets in training mode (BN statistics over small
         * maps, sixteen blocks) accumulate float32 rounding to ~1e-3 in the
         * earliest BN biases; the ResNets stay well below 1e-3 */
        double ptol = strstr(arch, "net_") || strstr(arch, "mobilenet") ? 3e-3 : 1e-3;
        KD_CHECK(have && worstp <= ptol, "%s: gradient projections worst rel err %.2e (%s)", cs, worstp, wpn);
        kd_strv_free(pn, np > 0 ? np : 0);
        free(gss);
        free(gproj);
        free(dfeat);
        free(dlog);
        free(demb);
        free(dmap);
        /* running statistics after one step: every rm_NAME dataset of
         * the case names one of our buffers, of the same size */
        size_t cl = strlen(cs);
        for (int a = 0; a < all->n; a++) {
            const char *ds = all->v[a];
            if (strncmp(ds, cs, cl) || ds[cl] != '/' || strncmp(ds + cl + 1, "rm_", 3))
                continue;
            const char *bn = ds + cl + 4;
            int isb = 0;
            const kd_pview *v = find_view(m, bn, &isb);
            want = read_all(h, cs, ds + cl + 1, &n);
            if (KD_REQUIRE(v && isb && want && n == (int64_t)v->n, "%s: '%s' is one of the model's buffers (%s)", cs,
                           ds + cl + 1, v ? "size differs or unreadable" : "no such buffer"))
                cmp(cs, v->name, kd_model_buffers(m, NULL) + v->off, want, n, 1e-4);
            free(want);
        }
    }
    free(x);
    kd_model_free(m);
    return train;
}

static int collect(const char *name, void *ctx)
{
    names_list *l = ctx;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, sizeof(char *) * (size_t)cap);
        if (!v)
            return -1;
        l->v = v, l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(name)))
        return -1;
    l->n++;
    return 0;
}

static void test_fixtures(const char *only)
{
    if (only && !strcmp(only, "-")) /* "-": only the tests without the fixture */
        return;
    kd_h5 h;
    if (kd_h5_open(&h, fixture, "fixture")) {
        KD_CHECK(0, "open %s: %s", fixture, kd_err_get());
        return;
    }
    names_list all = {0};
    int rc = kd_h5_walk(&h, collect, &all);
    KD_REQUIRE(rc == 0, "walk %s: %d (%s)", fixture, rc, kd_err_get());
    /* a case is a group with a "shapes" dataset */
    int ncase = 0, ntrain = 0;
    for (int i = 0; i < all.n; i++) {
        const char *sh = strstr(all.v[i], "/shapes");
        if (!sh || sh[7])
            continue;
        char cs[256];
        snprintf(cs, sizeof cs, "%.*s", (int)(sh - all.v[i]), all.v[i]);
        if (only && !strstr(cs, only))
            continue;
        int t = run_case(&h, cs, &all);
        ncase += t >= 0;
        ntrain += t == 1;
    }
    /* tests/gen/models.py writes 14 eval and 5 training cases */
    if (only) {
        KD_MIN_CASES(ncase, 1, "models.h5 cases matching the filter");
    } else {
        KD_MIN_CASES(ncase, 19, "models.h5");
        KD_MIN_CASES(ntrain, 5, "models.h5 training-mode");
    }
    for (int i = 0; i < all.n; i++)
        free(all.v[i]);
    free(all.v);
    kd_h5_close(&h);
}

/* ---- files and errors */
static void test_files(void)
{
    kd_arch_opts o = {"resnet20", 1, 10, 0, 32, 16, 1, 0};
    kd_model *m = kd_model_new(&o, 3);
    char path[300];
    snprintf(path, sizeof path, "%s/m.h5", tmpdir);
    KD_CHECK(m && kd_model_save(m, path) == 0, "save resnet20 model file");
    kd_model *l = kd_model_load(path);
    KD_CHECK(l != NULL, "load it back (%s)", l ? "" : kd_err_get());
    if (!m || !l)
        return;
    size_t np, nl, nb, nbl;
    float *a = kd_model_params(m, &np), *b = kd_model_params(l, &nl);
    float *ba = kd_model_buffers(m, &nb), *bb = kd_model_buffers(l, &nbl);
    KD_CHECK(np == nl && !memcmp(a, b, np * 4) && nb == nbl && !memcmp(ba, bb, nb * 4),
             "round trip is bit-exact (%zu parameters)", np);
    const kd_arch_opts *lo = kd_model_opts(l);
    KD_CHECK(!strcmp(lo->arch, "resnet20") && lo->in_channels == 1 && lo->num_classes == 10 && lo->head_hidden == 32 &&
                 lo->head_out == 16 && lo->head_bn == 1,
             "options come back from attributes");
    kd_model_free(l);

    /* wrong shape, missing tensor, unknown arch */
    kd_h5 h;
    char p2[300];
    snprintf(p2, sizeof p2, "%s/bad.h5", tmpdir);
    kd_h5_create(&h, p2, "model");
    kd_model_save_h5(m, &h);
    H5Ldelete(h.id, "layer2.1.conv1.weight", H5P_DEFAULT);
    kd_h5_commit(&h);
    l = kd_model_load(p2);
    KD_CHECK(!l && strstr(kd_err_get(), "missing tensor 'layer2.1.conv1.weight'"), "missing tensor: %s",
             kd_err_get());
    kd_h5_open_rw(&h, p2, "model");
    kd_h5_attr_set_str(&h, NULL, "arch", "resnet99");
    kd_h5_close(&h);
    l = kd_model_load(p2);
    KD_CHECK(!l && strstr(kd_err_get(), "unknown architecture 'resnet99'"), "unknown arch: %s", kd_err_get());
    kd_model_free(m);

    o.arch = "resnet56";
    o.in_channels = 2;
    m = kd_model_new(&o, 0);
    KD_CHECK(!m && strstr(kd_err_get(), "in_channels"), "in_channels 2 refused: %s", kd_err_get());
    unlink(path);
    unlink(p2);
}

static void test_shape_error(void)
{
    kd_arch_opts o = {"resnet20", 1, 10, 0, 0, 0, 0, 0};
    kd_model *m = kd_model_new(&o, 3);
    char path[300];
    snprintf(path, sizeof path, "%s/s.h5", tmpdir);
    kd_h5 h;
    kd_h5_create(&h, path, "model");
    kd_model_save_h5(m, &h);
    H5Ldelete(h.id, "fc.weight", H5P_DEFAULT);
    int64_t d[2] = {10, 32};
    float z[320] = {0};
    kd_h5_write(&h, "fc.weight", KD_F32, 2, d, z);
    kd_h5_commit(&h);
    kd_model *l = kd_model_load(path);
    KD_CHECK(!l && strstr(kd_err_get(), "'fc.weight' has shape [10,32], architecture resnet20 needs [10,64]"),
             "wrong shape: %s", kd_err_get());
    kd_model_free(m);
    unlink(path);
}

/* Initialisation follows PyTorch's: kaiming normal fan_out for convs, BN 1/0,
 * nn.Linear's uniform default. */
static void test_init(void)
{
    kd_arch_opts o = {"resnet18", 3, 1000, 0, 0, 0, 0, 0};
    kd_model *m = kd_model_new(&o, 1);
    if (!KD_REQUIRE(m, "test_init: build resnet18: %s", kd_err_get()))
        return;
    size_t np;
    float *p = kd_model_params(m, &np);
    KD_CHECK(np == 11689512, "resnet18 has torchvision's 11689512 parameters (%zu)", np);
    for (int i = 0; i < kd_model_nparam_views(m); i++) {
        const kd_pview *v = kd_model_param_view(m, i);
        if (!strcmp(v->name, "layer3.0.conv2.weight")) {
            double s = 0, s2 = 0;
            for (size_t j = 0; j < v->n; j++)
                s += p[v->off + j], s2 += (double)p[v->off + j] * p[v->off + j];
            double sd = sqrt(s2 / v->n - (s / v->n) * (s / v->n)), want = sqrt(2.0 / (256 * 9));
            KD_CHECK(fabs(sd / want - 1) < 0.01, "conv std %.5f ~ kaiming fan_out %.5f", sd, want);
        }
        if (!strcmp(v->name, "fc.weight")) {
            float mx = 0;
            for (size_t j = 0; j < v->n; j++)
                mx = fmaxf(mx, fabsf(p[v->off + j]));
            KD_CHECK(mx <= 1 / sqrtf(512) && mx > 0.95f / sqrtf(512), "fc uniform bound %.5f", mx);
        }
        if (!strcmp(v->name, "bn1.weight"))
            KD_CHECK(p[v->off] == 1 && p[v->off + 63] == 1, "BN weight 1");
    }
    kd_model *m2 = kd_model_new(&o, 1);
    KD_CHECK(m2 && !memcmp(kd_model_params(m2, NULL), p, np * 4), "init is deterministic in the seed");
    kd_model_free(m2);
    KD_CHECK(fabs(kd_model_flops(m, 224, 224) / 1.8186e9 - 1) < 0.01, "resnet18 224x224: %.4g MACs",
             kd_model_flops(m, 224, 224));
    kd_model_free(m);
}

/* the scalar loss of test_fd: sum(logits * rl) + sum(embedding * re) */
static double fd_loss(kd_model *m, const float *x, int N, const float *rl, const float *re)
{
    kd_model_forward(m, x, N, 1, 0);
    const float *lg = kd_model_logits(m), *em = kd_model_embedding(m);
    double L = 0;
    for (int k = 0; k < 20; k++)
        L += (double)lg[k] * rl[k];
    for (int k = 0; k < 16; k++)
        L += (double)em[k] * re[k];
    return L;
}

/* Whole-network gradient against central differences of a scalar loss. */
static void test_fd(void)
{
    kd_arch_opts o = {"resnet8x4", 1, 5, 0, 8, 4, 1, 0};
    kd_model *m = kd_model_new(&o, 11);
    int N = 4, H = 8, W = 8;
    if (!KD_REQUIRE(m && kd_model_prepare(m, N, H, W) == 0, "test_fd: build and prepare resnet8x4: %s",
                    kd_err_get())) {
        kd_model_free(m);
        return;
    }
    float x[4 * 64];
    kd_rng r = kd_rng_make(5, 0, 0);
    for (int i = 0; i < N * H * W; i++)
        x[i] = kd_rng_normal(&r);
    float rl[20], re[16];
    for (int i = 0; i < 20; i++)
        rl[i] = kd_rng_normal(&r);
    for (int i = 0; i < 16; i++)
        re[i] = kd_rng_normal(&r);
    size_t nb;
    float *buf = kd_model_buffers(m, &nb), *saved = malloc(nb * 4);
    memcpy(saved, buf, nb * 4);
    kd_model_forward(m, x, N, 1, 0);
    kd_model_zero_grad(m);
    kd_model_backward(m, NULL, rl, re, NULL);
    size_t np;
    float *p = kd_model_params(m, &np), *g = kd_model_grads(m, NULL);
    /* ReLU kinks, handled as ggml's test-backend-ops does for
     * non-differentiable ops: central differences at two step sizes.
     * The loss is computed in float32, so a central difference carries
     * rounding noise of about C/eps; measured on this net, |fd - g| of
     * parameters away from kinks is up to ~1e-6/eps (C = 3e-6 gives a
     * margin of ~3x).  A smooth loss gives the same difference at both
     * steps to within that noise (the O(eps^2) term is far below it), so:
     *  - both differences agree with the gradient to noise(eps) + 1e-3|g|: pass;
     *  - none of them nor a third at half the smaller step does, and the
     *    three agree with each other: the backward is wrong: fail;
     *  - otherwise a kink lies within one of the steps (two differences
     *    disagree with each other beyond their noise, or only a smaller
     *    step, which crosses fewer kinks, or only the larger, less noisy
     *    one agrees): the parameter is skipped, and counted.  (The third
     *    step: which of two close steps a kink's rounding favours changes
     *    with the kernels' summation order.)
     * At most NT/6 parameters may be kinked (6 of 48 are here: five with
     * the differences far apart, one where only the larger step is off). */
    const double C = 3e-6;
    enum { NT = 48 };
    const float eps[3] = {4e-3f, 2e-3f, 1e-3f};
    int checked = 0, kinks = 0, wrong = 0;
    double worst = 0; /* over the smooth ones: |fd - g| / (noise + 1e-3|g|) */
    size_t wi = 0;
    for (int t = 0; t < NT; t++) {
        size_t i = kd_rng_below(&r, np);
        float keep = p[i];
        double fd[3], tol[3];
        for (int k = 0; k < 3; k++) {
            float hi = keep + eps[k], lo = keep - eps[k];
            p[i] = hi;
            double lp = fd_loss(m, x, N, rl, re);
            p[i] = lo;
            double lm = fd_loss(m, x, N, rl, re);
            fd[k] = (lp - lm) / ((double)hi - (double)lo); /* the step actually taken */
            tol[k] = C / eps[k] + 1e-3 * fabs(g[i]);
        }
        p[i] = keep;
        double r0 = fabs(fd[0] - g[i]) / tol[0], r1 = fabs(fd[1] - g[i]) / tol[1], r2 = fabs(fd[2] - g[i]) / tol[2];
        int apart = 0;
        for (int a = 0; a < 3; a++)
            for (int b = a + 1; b < 3; b++)
                apart |= fabs(fd[a] - fd[b]) > C / eps[a] + C / eps[b];
        int agree = r0 <= 1 && r1 <= 1, kink = r0 <= 1 || r1 <= 1 || r2 <= 1 || apart;
        if (getenv("KD_TEST_VERBOSE"))
            printf("# fd %zu: %.6g (eps %g) %.6g (eps %g) %.6g (eps %g) vs %.6g%s\n", i, fd[0], eps[0], fd[1], eps[1],
                   fd[2], eps[2], g[i], agree ? "" : kink ? "  kink" : "  WRONG");
        checked++;
        if (agree) {
            if (fmax(r0, r1) > worst)
                worst = fmax(r0, r1), wi = i;
        } else if (kink) {
            kinks++;
        } else {
            wrong++;
            printf("# fd %zu: %.6g (eps %g), %.6g (eps %g), %.6g (eps %g) agree, the gradient %.6g does not\n", i,
                   fd[0], eps[0], fd[1], eps[1], fd[2], eps[2], g[i]);
        }
    }
    memcpy(buf, saved, nb * 4);
    free(saved);
    KD_CHECK(wrong == 0 && kinks <= NT / 6,
             "finite differences, %d random parameters: %d wrong, %d across a ReLU kink (at most %d), the rest "
             "within noise, worst at %.2f of its tolerance (%zu)", checked, wrong, kinks, NT / 6, worst, wi);
    kd_model_free(m);
}

/* Shuffle-BN emulation: a training forward with bn_group G equals G-sized
 * forwards of each group on its own, and its gradients are their sum. */
static void test_bn_group(void)
{
    kd_arch_opts o = {"resnet20", 1, 10, 0, 16, 8, 1, 0};
    kd_model *m = kd_model_new(&o, 4);
    int N = 4, G = 2, H = 8, W = 8;
    if (!KD_REQUIRE(m && kd_model_prepare(m, N, H, W) == 0, "test_bn_group: build and prepare resnet20: %s",
                    kd_err_get())) {
        kd_model_free(m);
        return;
    }
    float x[4 * 64], dl[40];
    kd_rng r = kd_rng_make(9, 0, 0);
    for (int i = 0; i < N * H * W; i++)
        x[i] = kd_rng_normal(&r);
    for (int i = 0; i < 40; i++)
        dl[i] = kd_rng_normal(&r);
    size_t nb, np;
    float *buf = kd_model_buffers(m, &nb), *saved = malloc(nb * 4);
    memcpy(saved, buf, nb * 4);
    kd_model_forward(m, x, N, 1, G);
    float whole[40], parts[40];
    memcpy(whole, kd_model_logits(m), sizeof whole);
    kd_model_zero_grad(m);
    kd_model_backward(m, NULL, dl, NULL, NULL);
    float *g = kd_model_grads(m, &np), *gw = malloc(np * 4);
    memcpy(gw, g, np * 4);
    kd_model_zero_grad(m);
    for (int k = 0; k < N / G; k++) {
        memcpy(buf, saved, nb * 4);
        kd_model_forward(m, x + k * G * H * W, G, 1, 0);
        memcpy(parts + k * G * 10, kd_model_logits(m), (size_t)G * 10 * 4);
        kd_model_backward(m, NULL, dl + k * G * 10, NULL, NULL);
    }
    KD_CHECK(kd_test_relerr(whole, parts, 40, 1e-6) < 1e-5, "bn_group 2: logits equal per-group forwards (%.1e)",
             kd_test_relerr(whole, parts, 40, 1e-6));
    KD_CHECK(kd_test_relerr(gw, g, (long)np, 1e-6) < 1e-4, "bn_group 2: gradients are the groups' sum (%.1e)",
             kd_test_relerr(gw, g, (long)np, 1e-6));
    KD_CHECK(kd_model_forward(m, x, 3, 1, 2) != 0 && strstr(kd_err_get(), "multiple of the BN group"),
             "batch not a multiple of the group refused: %s", kd_err_get());
    memcpy(buf, saved, nb * 4);
    free(saved);
    free(gw);
    kd_model_free(m);
}

int main(int argc, char **argv)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_models.%d", (int)getpid());
    mkdir(tmpdir, 0700);
    if (getenv("KD_MODELS_FIXTURE"))
        fixture = getenv("KD_MODELS_FIXTURE");
    test_fixtures(argc > 1 ? argv[1] : NULL);
    if (argc <= 1 || !strcmp(argv[1], "-")) {
        test_files();
        test_shape_error();
        test_init();
        test_fd();
        test_bn_group();
    }
    rmdir(tmpdir);
    return KD_TEST_DONE();
}
