/* CenterNet's targets, losses, decoding (lib/eval/kd_centernet.c) against
 * tests/gen/centernet.py (tests/fixtures/centernet.h5), and the detection
 * head (lib/nn/kd_dethead.c) against finite differences and, with a skip
 * map, against PyTorch. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_det.h"
#include "kd_detnet.h"
#include "kd_err.h"
#include "kd_h5.h"
#include "kd_rng.h"
#include "kd_test.h"

#define FX "tests/fixtures/centernet.h5"

static kd_h5 fx;

/* A whole fixture dataset as float (or the given type); n: its elements. */
static void *rd(const char *name, kd_dtype dt, size_t *n)
{
    int64_t dims[KD_MAX_RANK];
    kd_dtype t;
    int rank;
    if (kd_h5_info(&fx, name, &t, &rank, dims))
        return NULL;
    size_t cnt = 1;
    for (int i = 0; i < rank; i++)
        cnt *= (size_t)dims[i];
    void *p = malloc(kd_dtype_size(dt) * (cnt ? cnt : 1));
    if (p && kd_h5_read(&fx, name, dt, 0, rank ? dims[0] : 1, p)) {
        free(p);
        return NULL;
    }
    if (n)
        *n = cnt;
    return p;
}

static double maxrel(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1e-6);
        m = e > m ? e : m;
    }
    return m;
}

/* A scalar (rank 0) of the fixture, in float: the checks are relative 1e-5. */
static double scalar(const char *name)
{
    float f;
    return kd_h5_read(&fx, name, KD_F32, 0, 1, &f) ? NAN : f;
}

static void test_radius_splat(void)
{
    size_t n;
    float *hw = rd("radius/hw", KD_F32, &n), *r = rd("radius/r", KD_F32, NULL);
    if (!KD_REQUIRE(hw && r, "radius: %s", kd_err_get()))
        return;
    double worst = 0;
    for (size_t i = 0; i < n / 2; i++) {
        double e = fabs(kd_cn_radius(hw[2 * i], hw[2 * i + 1], 0.7) - r[i]) / r[i];
        worst = e > worst ? e : worst;
    }
    KD_MIN_CASES(n / 2, 6, "radius");
    KD_CHECK(worst < 1e-5, "gaussian radius of %zu sizes (max rel err %.2g)", n / 2, worst);
    free(hw), free(r);
    int32_t *cs = rd("splat/cases", KD_I32, &n);
    float *want = rd("splat/heat", KD_F32, NULL);
    if (!KD_REQUIRE(cs && want, "splat: %s", kd_err_get()))
        return;
    float heat[9 * 11] = {0};
    for (size_t i = 0; i < n / 3; i++)
        kd_cn_splat(heat, 9, 11, cs[3 * i], cs[3 * i + 1], cs[3 * i + 2]);
    double e = 0;
    for (int i = 0; i < 99; i++)
        e = fmax(e, fabs(heat[i] - want[i]));
    KD_CHECK(e < 1e-6, "Gaussian splats, clipped at the borders, maxed (max abs err %.2g)", e);
    free(cs), free(want);
}

static void test_targets_losses(void)
{
    size_t nb;
    float *boxes = rd("targets/boxes", KD_F32, &nb), *heat = rd("targets/heat", KD_F32, NULL);
    int32_t *labels = rd("targets/labels", KD_I32, NULL), *ind = rd("targets/ind", KD_I32, NULL);
    float *wh = rd("targets/wh", KD_F32, NULL), *off = rd("targets/off", KD_F32, NULL);
    if (!KD_REQUIRE(boxes && heat && labels && ind && wh && off, "targets: %s", kd_err_get()))
        return;
    int K = 3, H = 10, W = 12, S = 4, M = (int)(nb / 4);
    float got[3 * 10 * 12];
    kd_cn_obj obj[8];
    int m = kd_cn_targets(boxes, labels, M, K, H, W, S, got, obj, 8);
    KD_CHECK(m == M, "targets: %d objects of %d", m, M);
    double e = 0;
    for (int i = 0; i < K * H * W; i++)
        e = fmax(e, fabs(got[i] - heat[i]));
    KD_CHECK(e < 1e-6, "target heatmap (max abs err %.2g)", e);
    int okk = 1;
    for (int j = 0; j < m; j++)
        okk &= obj[j].ind == ind[j] && fabsf(obj[j].wh[0] - wh[2 * j]) < 1e-5f &&
               fabsf(obj[j].wh[1] - wh[2 * j + 1]) < 1e-5f && fabsf(obj[j].off[0] - off[2 * j]) < 1e-5f &&
               fabsf(obj[j].off[1] - off[2 * j + 1]) < 1e-5f;
    KD_CHECK(okk, "peak cells, size and offset targets");

    /* focal */
    size_t n;
    float *x = rd("focal/x", KD_F32, &n), *gt = rd("focal/gt", KD_F32, NULL), *dx = rd("focal/dx", KD_F32, NULL);
    float *gt0 = rd("focal/gt_nopos", KD_F32, NULL), *dx0 = rd("focal/dx_nopos", KD_F32, NULL);
    if (!KD_REQUIRE(x && gt && dx && gt0 && dx0, "focal: %s", kd_err_get()))
        return;
    float *d = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++)
        d[i] = 0.25f; /* backward accumulates */
    double L = kd_cn_focal(x, gt, n, 1.0f, d), Lw = scalar("focal/loss");
    for (size_t i = 0; i < n; i++)
        d[i] -= 0.25f;
    KD_CHECK(fabs(L - Lw) / fabs(Lw) < 1e-5, "focal loss %.8g (PyTorch %.8g)", L, Lw);
    double ge = 0;
    for (size_t i = 0; i < n; i++)
        ge = fmax(ge, fabs(d[i] - dx[i]));
    KD_CHECK(ge < 1e-6, "focal gradient, accumulated, zero where clamped (max abs err %.2g)", ge);
    memset(d, 0, n * sizeof(float));
    L = kd_cn_focal(x, gt0, n, 2.0f, d), Lw = scalar("focal/loss_nopos");
    ge = 0;
    for (size_t i = 0; i < n; i++)
        ge = fmax(ge, fabs(d[i] - 2 * dx0[i]));
    KD_CHECK(fabs(L - Lw) / fabs(Lw) < 1e-5 && ge < 1e-6, "focal loss without positives %.8g (PyTorch %.8g), weighted gradient", L, Lw);
    free(x), free(gt), free(dx), free(gt0), free(dx0), free(d);

    /* RegL1 over a batch of 2: image 0 all objects, image 1 the first two */
    float *pred = rd("regl1/pred", KD_F32, &n);
    if (!KD_REQUIRE(pred, "regl1: %s", kd_err_get()))
        return;
    kd_cn_obj bo[7];
    memcpy(bo, obj, sizeof(kd_cn_obj) * 5);
    memcpy(bo + 5, obj, sizeof(kd_cn_obj) * 2);
    int offs[3] = {0, 5, 7};
    for (int which = 0; which < 2; which++) {
        char nl[32], nd[32];
        snprintf(nl, sizeof nl, "regl1/%s_loss", which ? "off" : "wh");
        snprintf(nd, sizeof nd, "regl1/%s_dpred", which ? "off" : "wh");
        float *dp = rd(nd, KD_F32, NULL), *g = calloc(n, sizeof(float));
        double l = kd_cn_reg_l1(pred, 2, H, W, bo, offs, which, 1.0f, g), lw = scalar(nl);
        KD_CHECK(fabs(l - lw) / lw < 1e-5 && dp && maxrel(g, dp, n) < 1e-4, "%s L1 at the peaks %.8g (PyTorch %.8g)",
                 which ? "offset" : "size", l, lw);
        free(dp), free(g);
    }
    free(pred);

    float *lg = rd("segce/logits", KD_F32, &n), *dl = rd("segce/dlogits", KD_F32, NULL);
    uint8_t *lab = rd("segce/labels", KD_U8, NULL);
    if (!KD_REQUIRE(lg && dl && lab, "segce: %s", kd_err_get()))
        return;
    float *g = calloc(n, sizeof(float));
    double l = kd_seg_ce(lg, lab, 2, K + 1, H, W, 1.0f, g), lw = scalar("segce/loss");
    KD_CHECK(fabs(l - lw) / lw < 1e-5 && maxrel(g, dl, n) < 1e-4, "segmentation cross-entropy %.8g (PyTorch %.8g)", l,
             lw);
    free(lg), free(dl), free(lab), free(g);

    /* at the images' 40x48 (S = 4): through the bilinear upsampling and back */
    lg = rd("segup/logits", KD_F32, &n), dl = rd("segup/dlogits", KD_F32, NULL);
    lab = rd("segup/labels", KD_U8, NULL);
    size_t big = (size_t)2 * (K + 1) * H * S * W * S;
    float *up = malloc(sizeof(float) * big), *dup = malloc(sizeof(float) * big);
    g = calloc(n, sizeof(float));
    if (KD_REQUIRE(lg && dl && lab && up && dup && g, "segup: %s", kd_err_get())) {
        l = kd_seg_ce_up(lg, 2, K + 1, H, W, lab, H * S, W * S, 1.0f, g, up, dup), lw = scalar("segup/loss");
        KD_CHECK(fabs(l - lw) / lw < 1e-5 && maxrel(g, dl, n) < 1e-4,
                 "cross-entropy of bilinearly upsampled logits %.8g (PyTorch %.8g), gradient max rel err %.2g", l, lw,
                 maxrel(g, dl, n));
    }
    free(lg), free(dl), free(lab), free(g), free(up), free(dup);
    free(boxes), free(heat), free(labels), free(ind), free(wh), free(off);
}

static void test_decode(void)
{
    size_t n;
    float *hm = rd("decode/hm", KD_F32, NULL), *wh = rd("decode/wh", KD_F32, NULL), *off = rd("decode/off", KD_F32, NULL);
    float *want = rd("decode/dets", KD_F32, &n);
    if (!KD_REQUIRE(hm && wh && off && want, "decode: %s", kd_err_get()))
        return;
    int K = 3, H = 10, W = 12, nw = (int)(n / 6);
    float scr[3 * 10 * 12];
    int32_t iscr[3 * 10 * 12];
    kd_cn_det det[20];
    int m = kd_cn_decode(hm, wh, off, K, H, W, 4, 40, 48, 20, det, scr, iscr);
    KD_CHECK(m == nw && nw == 20, "decode: %d detections (reference %d)", m, nw);
    int ok = 1;
    double e = 0;
    for (int i = 0; i < m && i < nw; i++) {
        const float *r = want + 6 * i;
        ok &= det[i].cls == (int)r[5];
        e = fmax(e, fabs(det[i].x - r[0]) + fabs(det[i].y - r[1]) + fabs(det[i].w - r[2]) + fabs(det[i].h - r[3]));
        e = fmax(e, fabs(det[i].score - r[4]) * 1e3);
    }
    KD_CHECK(ok && e < 1e-3, "3x3 max-pool peaks, top-k order, classes, boxes and scores (max err %.2g)", e);
    free(hm), free(wh), free(off), free(want);

    float *x = rd("bilinear/x", KD_F32, NULL), *y = rd("bilinear/y", KD_F32, &n);
    if (!KD_REQUIRE(x && y, "bilinear: %s", kd_err_get()))
        return;
    float *o = malloc(sizeof(float) * n);
    kd_bilinear_resize(4, 5, 6, x, 20, 24, o);
    double be = 0;
    for (size_t i = 0; i < n; i++)
        be = fmax(be, fabs(o[i] - y[i]));
    KD_CHECK(be < 1e-5, "bilinear x4 resize as F.interpolate(align_corners=False) (max abs err %.2g)", be);
    free(x), free(y), free(o);
}

/* sum_j <out_j, R_j> over the heads (the masks' logits for seg): its
 * gradient is R. */
static double head_obj(kd_dethead *h, const float *x, const float *skip, int n, float *const R[KD_DH_NHEADS],
                       const int *sz)
{
    kd_dethead_forward(h, x, skip, n, 1);
    double s = 0;
    for (int j = 0; j < KD_DH_NHEADS; j++) {
        int Hs, Ws;
        const float *o = j == KD_DH_SEG ? kd_dethead_seg(h, &Hs, &Ws) : kd_dethead_out(h, j);
        for (int k = 0; k < sz[j]; k++)
            s += (double)o[k] * R[j][k];
    }
    return s;
}

/* skip: a 2-channel skip map of 7x9 (a size no upsampling of the head's
 * gives, so the bilinear resize is not a plain x2). */
static void test_head_fd(int nup, int skip)
{
    int n = 2, C = 3, hh = 3, ww = 4, K = 2, sC = skip ? 2 : 0, sh = 7, sw = 9;
    kd_dethead_opts o = {.C = C, .h = hh, .w = ww, .nup = nup, .up = 4, .hc = 5, .K = K, .maxn = n,
                         .sC = sC, .sh = skip ? sh : 0, .sw = skip ? sw : 0};
    kd_dethead *h = kd_dethead_new(&o);
    if (!KD_REQUIRE(h, "head: %s", kd_err_get()))
        return;
    kd_dethead_init(h, 3);
    /* parameters of order 1 (the init's 0.001 last layers would make every
     * other gradient tiny next to the differences' rounding) */
    kd_rng pr = kd_rng_make(11, 2, nup);
    for (size_t i = 0; i < kd_dethead_params(h)->n; i++)
        kd_dethead_params(h)->p[i] = kd_rng_range(&pr, -0.5f, 0.5f);
    int H, W, Hs, Ws;
    kd_dethead_out_size(h, &H, &W);
    KD_CHECK(H == hh << nup && W == ww << nup, "head output %dx%d after %d upsamplings", H, W, nup);
    kd_dethead_seg(h, &Hs, &Ws);
    KD_CHECK(skip ? Hs == sh && Ws == sw : Hs == H && Ws == W, "masks' logits %dx%d", Hs, Ws);
    KD_CHECK(!!kd_slab_param(kd_dethead_params(h), "skip.0.weight") == skip, "skip head's parameters %s",
             skip ? "present" : "absent");
    kd_rng r = kd_rng_make(7, 1, nup);
    size_t nx = (size_t)n * C * hh * ww, ns = (size_t)n * sC * sh * sw;
    float *x = malloc(sizeof(float) * (nx + ns)), *dx = calloc(nx + ns, sizeof(float)), *R[KD_DH_NHEADS];
    float *sk = skip ? x + nx : NULL;
    int outc[KD_DH_NHEADS] = {K, 2, 2, K + 1}, sz[KD_DH_NHEADS];
    for (size_t i = 0; i < nx + ns; i++)
        x[i] = kd_rng_normal(&r);
    for (int j = 0; j < KD_DH_NHEADS; j++) {
        sz[j] = n * outc[j] * (j == KD_DH_SEG ? Hs * Ws : H * W);
        R[j] = malloc(sizeof(float) * sz[j]);
        for (int k = 0; k < sz[j]; k++)
            R[j][k] = kd_rng_normal(&r);
    }
    kd_slab *P = kd_dethead_params(h);
    memset(P->g, 0, sizeof(float) * P->n);
    KD_CHECK(kd_dethead_forward(h, x, skip ? NULL : x, n, 1) == -1, "a skip map where the head %s is refused",
             skip ? "needs one, none" : "has none, one");
    kd_dethead_forward(h, x, sk, n, 1);
    for (int j = 0; j < KD_DH_NHEADS; j++)
        memcpy(j == KD_DH_SEG ? kd_dethead_dseg(h) : kd_dethead_dout(h, j), R[j], sizeof(float) * sz[j]);
    KD_CHECK(kd_dethead_backward(h, dx, skip ? dx + nx : NULL) == 0, "head backward");
    /* central differences in float; a coordinate whose one-sided slopes
     * disagree straddles a ReLU kink (a pre-activation within eps of 0) and
     * is left out, at most a fifth of them */
    const float eps = 1e-3f;
    double num = 0, den = 0;
    int kinks = 0, tried = 0;
    double f0 = head_obj(h, x, sk, n, R, sz);
    for (size_t i = 0; i < P->n + nx + ns; i += i < P->n ? 3 : 1) {
        float *q = i < P->n ? &P->p[i] : &x[i - P->n];
        double an = i < P->n ? P->g[i] : dx[i - P->n];
        float keep = *q;
        *q = keep + eps;
        double fp = head_obj(h, x, sk, n, R, sz);
        *q = keep - eps;
        double fm = head_obj(h, x, sk, n, R, sz);
        *q = keep;
        double gl = (f0 - fm) / eps, gr = (fp - f0) / eps, g = (fp - fm) / (2 * eps);
        tried++;
        if (fabs(gl - gr) > 0.02 * fabs(g) + 2e-3) {
            kinks++;
            continue;
        }
        num += (g - an) * (g - an), den += g * g;
    }
    KD_CHECK(kinks * 5 <= tried && sqrt(num / den) < 5e-3,
             "parameter, input%s gradients vs finite differences (%d upsamplings): rel err %.2g (%d of %d at kinks)",
             skip ? " and skip map" : "", nup, sqrt(num / den), kinks, tried);
    for (int j = 0; j < KD_DH_NHEADS; j++)
        free(R[j]);
    free(x), free(dx);
    kd_dethead_free(h);
}

/* ||a - b|| / ||b||: float against the fixture's float64 autograd. */
static double relnorm(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++)
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

/* head_skip/DIR/NAME of view i, NULL unless of the view's size. */
static float *rd_view(const kd_slab *P, int i, const char *dir)
{
    char name[128];
    size_t m;
    snprintf(name, sizeof name, "head_skip/%s/%s", dir, P->v[i].name);
    float *v = rd(name, KD_F32, &m);
    if (v && m != P->v[i].n) {
        free(v);
        return NULL;
    }
    return v;
}

/* The head with one upsampling and a skip map against PyTorch
 * (tests/gen/centernet.py head_skip): outputs, masks' logits and every
 * gradient, parameters by name. */
static void test_head_torch(void)
{
    int n = 2;
    kd_dethead_opts o = {.C = 3, .h = 3, .w = 4, .nup = 1, .up = 4, .hc = 5, .K = 2, .maxn = n,
                         .sC = 2, .sh = 7, .sw = 9};
    kd_dethead *h = kd_dethead_new(&o);
    if (!KD_REQUIRE(h, "head: %s", kd_err_get()))
        return;
    kd_slab *P = kd_dethead_params(h);
    int loaded = 1;
    for (int i = 0; i < P->nv; i++) {
        float *v = rd_view(P, i, "p");
        loaded &= v != NULL;
        if (v)
            memcpy(P->p + P->v[i].off, v, sizeof(float) * P->v[i].n);
        free(v);
    }
    size_t nx, ns;
    float *x = rd("head_skip/x", KD_F32, &nx), *sk = rd("head_skip/skip", KD_F32, &ns);
    if (!KD_REQUIRE(loaded && P->nv == 23 && x && sk && nx == (size_t)n * 3 * 3 * 4 && ns == (size_t)n * 2 * 7 * 9,
                    "head_skip fixture: %s", kd_err_get()))
        return;
    memset(P->g, 0, sizeof(float) * P->n);
    KD_CHECK(kd_dethead_forward(h, x, sk, n, 1) == 0, "head forward with a skip map");
    const char *on[KD_DH_NHEADS] = {"hm", "wh", "reg", "seg"};
    double eo = 0;
    int ok = 1;
    for (int j = 0; j < KD_DH_NHEADS; j++) {
        char name[64];
        size_t m;
        int Hs, Ws;
        snprintf(name, sizeof name, "head_skip/out_%s", on[j]);
        float *want = rd(name, KD_F32, &m);
        snprintf(name, sizeof name, "head_skip/R_%s", on[j]);
        float *R = rd(name, KD_F32, NULL);
        const float *got = j == KD_DH_SEG ? kd_dethead_seg(h, &Hs, &Ws) : kd_dethead_out(h, j);
        int oc[KD_DH_NHEADS] = {2, 2, 2, 3};
        size_t sz = (size_t)n * oc[j] * (j == KD_DH_SEG ? 7 * 9 : 6 * 8);
        ok &= want && R && m == sz;
        if (want && R && m == sz) {
            eo = fmax(eo, relnorm(got, want, m));
            memcpy(j == KD_DH_SEG ? kd_dethead_dseg(h) : kd_dethead_dout(h, j), R, sizeof(float) * m);
        }
        free(want), free(R);
    }
    KD_CHECK(ok && eo < 1e-5, "outputs and masks' logits as PyTorch (rel err %.2g)", eo);
    float *dx = calloc(nx, sizeof(float)), *dsk = calloc(ns, sizeof(float));
    KD_CHECK(kd_dethead_backward(h, dx, dsk) == 0, "head backward with a skip map");
    float *wdx = rd("head_skip/dx", KD_F32, NULL), *wdsk = rd("head_skip/dskip", KD_F32, NULL);
    double eg = 0;
    ok = wdx && wdsk;
    for (int i = 0; i < P->nv; i++) {
        float *want = rd_view(P, i, "g");
        ok &= want != NULL;
        if (want)
            eg = fmax(eg, relnorm(P->g + P->v[i].off, want, P->v[i].n));
        free(want);
    }
    if (ok)
        eg = fmax(eg, fmax(relnorm(dx, wdx, nx), relnorm(dsk, wdsk, ns)));
    KD_CHECK(ok && eg < 1e-4, "every parameter's, the input's and the skip map's gradient as PyTorch (worst rel err %.2g)",
             eg);
    free(x), free(sk), free(dx), free(dsk), free(wdx), free(wdsk);
    kd_dethead_free(h);
}

/* kd_detnet_backward's wiring with a skip from stage 1 (resnet20, 2 images
 * of 16x16, backbone in train mode): the backbone's gradient is that of the
 * head's map gradient at its stage plus that of its skip-map gradient at
 * stage 1, each given to kd_model_backward_dout alone (the head's backward
 * is checked against PyTorch above, the backbone's in test_model), and the
 * skip's part is not small.  Dropping map[skip] fails it. */
static void test_detnet_skip_wiring(void)
{
    int n = 2, S = 16;
    kd_arch_opts ao = {.arch = "resnet20", .in_channels = 1, .num_classes = 10};
    kd_detnet d = {.m = kd_model_new(&ao, 5), .c = 1, .stride = 4, .up = 4, .hc = 4, .K = 2,
                   .mean = {0.3f}, .std = {0.4f}, .skip = 1};
    if (!KD_REQUIRE(d.m && kd_detnet_pick_stage(d.m, S, S, 4, 0, &d.stage, &d.nup) == 0 &&
                        kd_detnet_prepare(&d, n, S, S, 1, 0, 3) == 0,
                    "detector: %s", kd_err_get())) {
        kd_detnet_free(&d);
        return;
    }
    kd_slab *P = kd_dethead_params(d.head);
    kd_rng pr = kd_rng_make(13, 0, 0);
    for (size_t i = 0; i < P->n; i++) /* order-1 head weights, as test_head_fd */
        P->p[i] = kd_rng_range(&pr, -0.5f, 0.5f);
    uint8_t img[2 * 16 * 16];
    for (size_t i = 0; i < sizeof img; i++)
        img[i] = (uint8_t)(256 * kd_rng_uniform(&pr));
    kd_detnet_input(&d, img, n, 1);
    const kd_dethead_opts *o = kd_dethead_opts_of(d.head);
    int Hs, Ws;
    kd_dethead_seg(d.head, &Hs, &Ws);
    KD_CHECK(Hs == S && Ws == S && o->sC == 16, "masks' logits at stage 1's %dx%d, %d channels", Hs, Ws, o->sC);
    size_t nr = (size_t)n * (d.K + 1) * Hs * Ws, nm = (size_t)n * o->C * o->h * o->w;
    size_t ns = (size_t)n * o->sC * o->sh * o->sw, np;
    float *R = malloc(sizeof(float) * nr), *dmap = calloc(nm, sizeof(float)), *dsk = calloc(ns, sizeof(float));
    kd_model_grads(d.m, &np);
    float *g[3];
    int have = R && dmap && dsk;
    for (int t = 0; t < 3; t++)
        have &= (g[t] = malloc(sizeof(float) * np)) != NULL;
    if (!KD_REQUIRE(have, "skip wiring: out of memory")) {
        for (int t = 0; t < 3; t++)
            free(g[t]);
        free(R), free(dmap), free(dsk);
        kd_detnet_free(&d);
        return;
    }
    for (size_t k = 0; k < nr; k++)
        R[k] = kd_rng_normal(&pr);
    /* t 0: kd_detnet_backward; 1: the head map's gradient alone; 2: the skip's */
    int ok = 1;
    for (int t = 0; t < 3; t++) {
        kd_model_zero_grad(d.m);
        ok &= kd_detnet_forward(&d, n, 1) == 0;
        memcpy(kd_dethead_dseg(d.head), R, sizeof(float) * nr);
        if (t == 0) {
            ok &= kd_detnet_backward(&d) == 0;
        } else {
            memset(dmap, 0, sizeof(float) * nm), memset(dsk, 0, sizeof(float) * ns);
            ok &= kd_dethead_backward(d.head, dmap, dsk) == 0;
            kd_model_dout md;
            memset(&md, 0, sizeof md);
            md.map[t == 1 ? d.stage : d.skip] = t == 1 ? dmap : dsk;
            ok &= kd_model_backward_dout(d.m, &md) == 0;
        }
        memcpy(g[t], kd_model_grads(d.m, &np), sizeof(float) * np);
    }
    double e = 0, nf = 0, nb = 0;
    for (size_t k = 0; k < np; k++) {
        double sum = (double)g[1][k] + g[2][k];
        e += (g[0][k] - sum) * (g[0][k] - sum), nf += (double)g[0][k] * g[0][k], nb += (double)g[2][k] * g[2][k];
    }
    KD_CHECK(ok && nf > 0 && sqrt(e / nf) < 1e-5 && sqrt(nb / nf) > 0.1,
             "the backbone's gradient is the head stage's plus the skip stage's (rel err %.2g; the skip's share %.2f)",
             sqrt(e / nf), sqrt(nb / nf));
    for (int t = 0; t < 3; t++)
        free(g[t]);
    free(R), free(dmap), free(dsk);
    kd_detnet_free(&d);
}

/* Flip and scale of a scene: pixels, mask and boxes move together. */
static void test_scene_aug(void)
{
    enum { H = 10, W = 12 };
    uint8_t img[H * W], mask[H * W], oi[H * W], om[H * W];
    for (int i = 0; i < H * W; i++)
        img[i] = (uint8_t)(i * 7 % 251), mask[i] = (uint8_t)(i % 3);
    float box[8] = {1, 2, 4, 3, 9, 8, 3, 2}, ob[8];
    int32_t lab[2] = {4, 7}, ol[2];
    int m = kd_scene_aug(img, mask, H, W, 1, box, lab, 2, 1, 1.0f, oi, om, ob, ol);
    int ok = m == 2 && ol[0] == 4 && ol[1] == 7;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            ok &= oi[y * W + x] == img[y * W + W - 1 - x] && om[y * W + x] == mask[y * W + W - 1 - x];
    ok &= ob[0] == 7 && ob[1] == 2 && ob[2] == 4 && ob[3] == 3 && ob[4] == 0 && ob[6] == 3;
    KD_CHECK(ok, "scene flip: pixels, mask and boxes (x' = W - x - w) mirrored");
    /* x2 about the centre: box 1 grows out of the canvas and is clipped,
     * box 2 leaves it (x from 2*9-6 = 12) and is dropped */
    m = kd_scene_aug(img, mask, H, W, 1, box, lab, 2, 0, 2.0f, oi, om, ob, ol);
    ok = m == 1 && ol[0] == 4 && ob[0] == 0 && ob[1] == 0 && fabsf(ob[2] - 4) < 1e-6f && fabsf(ob[3] - 5) < 1e-6f;
    /* output pixel (y, x) samples source ((y + .5 - 5)/2 + 5 - .5, ...): pixel (5, 6) is source (4.75, 5.75) */
    ok &= om[5 * W + 6] == mask[5 * W + 6] && om[4 * W + 6] == mask[4 * W + 6];
    KD_CHECK(ok, "scene scale x2: boxes scaled about the centre, clipped, dropped outside; mask by nearest");
}

int main(void)
{
    if (!KD_REQUIRE(kd_h5_open(&fx, FX, "fixture") == 0, "%s: %s", FX, kd_err_get()))
        return 1;
    test_radius_splat();
    test_targets_losses();
    test_decode();
    test_scene_aug();
    test_head_fd(0, 0);
    test_head_fd(1, 0);
    test_head_fd(2, 0);
    test_head_fd(0, 1);
    test_head_fd(1, 1);
    test_head_torch();
    test_detnet_skip_wiring();
    kd_h5_close(&fx);
    return kd_test_failed ? 1 : 0;
}
