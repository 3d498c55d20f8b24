/* Layer kernels (optimised and *_ref twins) against PyTorch 1.13's torch.nn
 * modules: tests/fixtures/layers.h5, written by tests/gen/layers.py, holds
 * per case the inputs, parameters, outputs and the gradients for a random
 * upstream gradient dy.  Forward within 1e-4, gradients within 1e-3 (max
 * relative error).  Backward accumulates, so gradients start at zero. */
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_layers.h"
#include "kd_test.h"

#define FWD_TOL 1e-4
#define GRAD_TOL 1e-3

static const char *fixture = "tests/fixtures/layers.h5";
static kd_h5 h;

/* Dataset grp/name as floats (flattened); NULL if absent. */
static float *rd(const char *grp, const char *name, int64_t *numel)
{
    char path[256];
    snprintf(path, sizeof path, "%.120s/%.60s", grp, name);
    if (!kd_h5_exists(&h, path))
        return NULL;
    kd_dtype dt;
    int rank;
    int64_t dims[KD_MAX_RANK], n = 1;
    if (kd_h5_info(&h, path, &dt, &rank, dims))
        return NULL;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    float *buf = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (buf && kd_h5_read(&h, path, KD_F32, 0, rank ? dims[0] : 1, buf)) {
        free(buf);
        return NULL;
    }
    if (numel)
        *numel = n;
    return buf;
}

static int ai(const char *g, const char *a)
{
    int64_t v = -1;
    if (kd_h5_attr_get_i64(&h, g, a, &v))
        KD_CHECK(0, "%s: attribute %s: %s", g, a, kd_err_get());
    return (int)v;
}

static float af(const char *g, const char *a)
{
    double v = 0;
    if (kd_h5_attr_get_f64(&h, g, a, &v))
        KD_CHECK(0, "%s: attribute %s: %s", g, a, kd_err_get());
    return (float)v;
}

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static double err(const float *a, const float *b, size_t n) { return kd_test_relerr(a, b, (long)n, 1e-6); }

static void run_conv(const char *g)
{
    int N = ai(g, "N"), C = ai(g, "C"), H = ai(g, "H"), W = ai(g, "W"), O = ai(g, "O"), k = ai(g, "k");
    int s = ai(g, "stride"), p = ai(g, "pad"), gr = ai(g, "groups");
    kd_conv c;
    if (kd_conv_init(&c, N, C, H, W, O, k, s, p, gr)) {
        KD_CHECK(0, "%s: kd_conv_init: %s", g, kd_err_get());
        return;
    }
    int64_t nx, ny, nw;
    float *x = rd(g, "x", &nx), *w = rd(g, "w", &nw), *b = rd(g, "b", NULL), *y = rd(g, "y", &ny);
    float *dy = rd(g, "dy", NULL), *dx = rd(g, "dx", NULL), *dw = rd(g, "dw", NULL), *db = rd(g, "db", NULL);
    KD_CHECK(ny == (int64_t)N * O * c.Ho * c.Wo && nx == (int64_t)N * C * H * W, "%s: shapes", g);
    float *ws = zeros(kd_conv_workspace(&c));
    for (int ref = 0; ref < 2; ref++) {
        float *yo = zeros(ny), *dxo = zeros(nx), *dwo = zeros(nw), *dbo = zeros(O);
        if (ref) {
            kd_conv_forward_ref(&c, x, w, b, yo);
            kd_conv_backward_ref(&c, x, w, dy, dxo, dwo, b ? dbo : NULL);
        } else {
            kd_conv_forward(&c, x, w, b, yo, ws);
            kd_conv_backward(&c, x, w, dy, dxo, dwo, b ? dbo : NULL, ws);
        }
        double ey = err(yo, y, ny), ex = err(dxo, dx, nx), ew = err(dwo, dw, nw), eb = b ? err(dbo, db, O) : 0;
        KD_CHECK(ey <= FWD_TOL && ex <= GRAD_TOL && ew <= GRAD_TOL && eb <= GRAD_TOL,
                 "%s%s vs torch: y %.1e dx %.1e dw %.1e db %.1e", g, ref ? " (ref)" : "", ey, ex, ew, eb);
        free(yo), free(dxo), free(dwo), free(dbo);
    }
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(ws);
}

static void run_bn(const char *g)
{
    int N = ai(g, "N"), C = ai(g, "C"), HW = ai(g, "HW"), gr = ai(g, "group");
    float mom = af(g, "momentum"), eps = af(g, "eps");
    size_t n = (size_t)N * C * HW, G = gr ? (size_t)(N / gr) : 1;
    float *x = rd(g, "x", NULL), *ga = rd(g, "gamma", NULL), *be = rd(g, "beta", NULL), *y = rd(g, "y", NULL);
    float *rm0 = rd(g, "rm0", NULL), *rv0 = rd(g, "rv0", NULL), *rm = rd(g, "rm", NULL), *rv = rd(g, "rv", NULL);
    float *dy = rd(g, "dy", NULL), *dx = rd(g, "dx", NULL), *dga = rd(g, "dgamma", NULL), *dbe = rd(g, "dbeta", NULL);
    for (int ref = 0; ref < 2; ref++) {
        float *yo = zeros(n), *mean = zeros(G * C), *rstd = zeros(G * C), *rmo = zeros(C), *rvo = zeros(C);
        float *dxo = zeros(n), *dgo = zeros(C), *dbo = zeros(C);
        memcpy(rmo, rm0, sizeof(float) * C), memcpy(rvo, rv0, sizeof(float) * C);
        if (ref) {
            kd_bn_forward_train_ref(N, C, HW, gr, x, ga, be, yo, mean, rstd, rmo, rvo, mom, eps);
            kd_bn_backward_ref(N, C, HW, gr, x, mean, rstd, ga, dy, dxo, dgo, dbo);
        } else {
            kd_bn_forward_train(N, C, HW, gr, x, ga, be, yo, mean, rstd, rmo, rvo, mom, eps);
            kd_bn_backward(N, C, HW, gr, x, mean, rstd, ga, dy, dxo, dgo, dbo);
        }
        double ey = err(yo, y, n), em = err(rmo, rm, C), ev = err(rvo, rv, C);
        double ex = err(dxo, dx, n), eg = err(dgo, dga, C), eb = err(dbo, dbe, C);
        KD_CHECK(ey <= FWD_TOL && em <= FWD_TOL && ev <= FWD_TOL && ex <= GRAD_TOL && eg <= GRAD_TOL && eb <= GRAD_TOL,
                 "%s%s vs torch: y %.1e running mean %.1e var %.1e dx %.1e dgamma %.1e dbeta %.1e", g,
                 ref ? " (ref)" : "", ey, em, ev, ex, eg, eb);
        free(yo), free(mean), free(rstd), free(rmo), free(rvo), free(dxo), free(dgo), free(dbo);
    }
    free(x), free(ga), free(be), free(y), free(rm0), free(rv0), free(rm), free(rv), free(dy), free(dx), free(dga);
    free(dbe);
}

static void run_bneval(const char *g)
{
    int N = ai(g, "N"), C = ai(g, "C"), HW = ai(g, "HW");
    size_t n = (size_t)N * C * HW;
    float *x = rd(g, "x", NULL), *ga = rd(g, "gamma", NULL), *be = rd(g, "beta", NULL), *y = rd(g, "y", NULL);
    float *rm = rd(g, "rm", NULL), *rv = rd(g, "rv", NULL), *yo = zeros(n);
    kd_bn_forward_eval(N, C, HW, x, ga, be, rm, rv, af(g, "eps"), yo);
    double e = err(yo, y, n);
    KD_CHECK(e <= FWD_TOL, "%s vs torch: y %.1e", g, e);
    free(x), free(ga), free(be), free(y), free(rm), free(rv), free(yo);
}

static void run_act(const char *g)
{
    static const char *names[] = {"relu", "relu6", "silu", "hardswish", "hardsigmoid", "sigmoid"};
    int a = ai(g, "act");
    int64_t n;
    float *x = rd(g, "x", &n), *y = rd(g, "y", NULL), *dy = rd(g, "dy", NULL), *dx = rd(g, "dx", NULL);
    float *yo = zeros(n), *dxo = zeros(n), *yi = zeros(n);
    kd_act_forward((kd_act)a, x, yo, n);
    kd_act_backward((kd_act)a, x, yo, dy, dxo, n);
    memcpy(yi, x, sizeof(float) * n);
    kd_act_forward((kd_act)a, yi, yi, n); /* in place */
    double ey = err(yo, y, n), ei = err(yi, y, n), ex = err(dxo, dx, n);
    KD_CHECK(ey <= FWD_TOL && ei <= FWD_TOL && ex <= GRAD_TOL, "%s (%s) vs torch: y %.1e in-place %.1e dx %.1e", g,
             a >= 0 && a < 6 ? names[a] : "?", ey, ei, ex);
    free(x), free(y), free(dy), free(dx), free(yo), free(dxo), free(yi);
}

static void run_pool(const char *g, int is_max)
{
    int N = ai(g, "N"), C = ai(g, "C"), H = ai(g, "H"), W = ai(g, "W");
    kd_pool p;
    if (kd_pool_init(&p, N, C, H, W, ai(g, "k"), ai(g, "stride"), ai(g, "pad"))) {
        KD_CHECK(0, "%s: kd_pool_init: %s", g, kd_err_get());
        return;
    }
    int64_t nx, ny;
    float *x = rd(g, "x", &nx), *y = rd(g, "y", &ny), *dy = rd(g, "dy", NULL), *dx = rd(g, "dx", NULL);
    KD_CHECK(ny == (int64_t)N * C * p.Ho * p.Wo, "%s: output shape %dx%d", g, p.Ho, p.Wo);
    float *yo = zeros(ny), *dxo = zeros(nx);
    int32_t *idx = calloc((size_t)ny, sizeof(int32_t));
    if (is_max) {
        kd_maxpool_forward(&p, x, yo, idx);
        kd_maxpool_backward(&p, idx, dy, dxo);
    } else {
        kd_avgpool_forward(&p, x, yo);
        kd_avgpool_backward(&p, dy, dxo);
    }
    double ey = err(yo, y, ny), ex = err(dxo, dx, nx);
    KD_CHECK(ey <= FWD_TOL && ex <= GRAD_TOL, "%s vs torch: y %.1e dx %.1e", g, ey, ex);
    free(x), free(y), free(dy), free(dx), free(yo), free(dxo), free(idx);
}

static void run_adaptive(const char *g)
{
    int N = ai(g, "N"), C = ai(g, "C"), H = ai(g, "H"), W = ai(g, "W"), oh = ai(g, "oh"), ow = ai(g, "ow");
    int64_t nx, ny;
    float *x = rd(g, "x", &nx), *y = rd(g, "y", &ny), *dy = rd(g, "dy", NULL), *dx = rd(g, "dx", NULL);
    float *yo = zeros(ny), *dxo = zeros(nx);
    kd_adaptive_avgpool_forward(N, C, H, W, oh, ow, x, yo);
    kd_adaptive_avgpool_backward(N, C, H, W, oh, ow, dy, dxo);
    double ey = err(yo, y, ny), ex = err(dxo, dx, nx);
    KD_CHECK(ey <= FWD_TOL && ex <= GRAD_TOL, "%s vs torch: y %.1e dx %.1e", g, ey, ex);
    free(x), free(y), free(dy), free(dx), free(yo), free(dxo);
}

static void run_linear(const char *g)
{
    int N = ai(g, "N"), I = ai(g, "I"), O = ai(g, "O");
    float *x = rd(g, "x", NULL), *w = rd(g, "w", NULL), *b = rd(g, "b", NULL), *y = rd(g, "y", NULL);
    float *dy = rd(g, "dy", NULL), *dx = rd(g, "dx", NULL), *dw = rd(g, "dw", NULL), *db = rd(g, "db", NULL);
    float *yo = zeros((size_t)N * O), *dxo = zeros((size_t)N * I), *dwo = zeros((size_t)O * I), *dbo = zeros(O);
    kd_linear_forward(N, I, O, x, w, b, yo);
    kd_linear_backward(N, I, O, x, w, dy, dxo, dwo, dbo);
    double ey = err(yo, y, (size_t)N * O), ex = err(dxo, dx, (size_t)N * I), ew = err(dwo, dw, (size_t)O * I),
           eb = err(dbo, db, O);
    KD_CHECK(ey <= FWD_TOL && ex <= GRAD_TOL && ew <= GRAD_TOL && eb <= GRAD_TOL,
             "%s vs torch: y %.1e dx %.1e dW %.1e db %.1e", g, ey, ex, ew, eb);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(yo), free(dxo), free(dwo);
    free(dbo);
}

static void run_scale(const char *g)
{
    int N = ai(g, "N"), C = ai(g, "C"), HW = ai(g, "HW");
    size_t n = (size_t)N * C * HW;
    float *x = rd(g, "x", NULL), *s = rd(g, "s", NULL), *y = rd(g, "y", NULL), *dy = rd(g, "dy", NULL);
    float *dx = rd(g, "dx", NULL), *ds = rd(g, "ds", NULL);
    float *yo = zeros(n), *dxo = zeros(n), *dso = zeros((size_t)N * C);
    kd_scale_forward(N, C, HW, x, s, yo);
    kd_scale_backward(N, C, HW, x, s, dy, dxo, dso);
    double ey = err(yo, y, n), ex = err(dxo, dx, n), es = err(dso, ds, (size_t)N * C);
    KD_CHECK(ey <= FWD_TOL && ex <= GRAD_TOL && es <= GRAD_TOL, "%s vs torch: y %.1e dx %.1e ds %.1e", g, ey, ex,
             es);
    free(x), free(s), free(y), free(dy), free(dx), free(ds), free(yo), free(dxo), free(dso);
}

/* kd_h5_walk names datasets; every case has an "x". */
static int one_case(const char *name, void *ctx)
{
    int *count = ctx;
    size_t len = strlen(name);
    if (len < 3 || strcmp(name + len - 2, "/x"))
        return 0;
    char g[128];
    snprintf(g, sizeof g, "%.*s", (int)(len - 2), name);
    char kind[32] = "";
    if (kd_h5_attr_get_str(&h, g, "kind", kind, sizeof kind)) {
        KD_CHECK(0, "%s: no kind: %s", g, kd_err_get());
        return 0;
    }
    (*count)++;
    if (!strcmp(kind, "conv"))
        run_conv(g);
    else if (!strcmp(kind, "bn"))
        run_bn(g);
    else if (!strcmp(kind, "bneval"))
        run_bneval(g);
    else if (!strcmp(kind, "act"))
        run_act(g);
    else if (!strcmp(kind, "maxpool") || !strcmp(kind, "avgpool"))
        run_pool(g, kind[0] == 'm');
    else if (!strcmp(kind, "adaptive"))
        run_adaptive(g);
    else if (!strcmp(kind, "linear"))
        run_linear(g);
    else if (!strcmp(kind, "scale"))
        run_scale(g);
    else
        KD_CHECK(0, "%s: unknown kind %s", g, kind);
    return 0;
}

int main(void)
{
    if (kd_h5_open(&h, fixture, "fixture")) {
        KD_CHECK(0, "open %s: %s", fixture, kd_err_get());
        return KD_TEST_DONE();
    }
    int count = 0;
    if (kd_h5_walk(&h, one_case, &count))
        KD_CHECK(0, "walk %s: %s", fixture, kd_err_get());
    KD_CHECK(count >= 24, "%d PyTorch layer cases found", count);
    kd_h5_close(&h);
    return KD_TEST_DONE();
}
