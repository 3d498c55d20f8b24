/* kd_dethead — the detection/segmentation head of kd_det.h: an upsampling
 * path and four conv heads over the layers of kd_layers.h, every buffer
 * allocated at creation for opts.maxn images. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_det.h"
#include "kd_err.h"
#include "kd_rng.h"

#define MAXUP 4
#define BN_EPS 1e-5f
#define BN_MOM 0.1f

/* The heads and, last, the skip head of the masks (present when o.sC). */
enum { SKIP = KD_DH_NHEADS, NH };
static const char *const head_name[NH] = {"hm", "wh", "reg", "seg", "skip"};

typedef struct {
    kd_conv conv;
    float *in, *cv, *bn, *act, *mean, *rstd;   /* upsampled input, conv, BN, ReLU outputs */
    float *d_act, *d_bn, *d_cv, *d_in;         /* their gradients */
} upblk;

struct kd_dethead {
    kd_dethead_opts o;
    kd_slab P, B;
    int H, W, n, train;
    upblk up[MAXUP];
    int nh;                     /* heads: KD_DH_NHEADS, NH with a skip */
    kd_conv c3[NH], c1[NH];
    int nout[NH], cin[NH];      /* per head: output and input channels */
    size_t hw[NH];              /* and its map's pixels */
    float *a[NH], *r[NH], *out[NH], *dout[NH];
    float *seg, *dseg;          /* with a skip: the masks' logits [n,K+1,sh,sw], their gradient */
    float *d_r, *d_a, *d_F, *ws;
    size_t ws_n;
    const float *x, *F, *skip;
    kd_bn_sum_fn bn_sum; /* synchronised BN across replicas (NULL: local) */
    double *bn_work;     /* [2 * up + 1] */
};

static float *zalloc(size_t n, int *bad)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        *bad = 1;
    return p;
}

/* The largest workspace any batch size up to maxn needs (kd_conv's depends on N). */
static size_t conv_ws(kd_conv *c, int maxn, int C, int H, int W, int O, int k, int pad)
{
    size_t best = 0;
    for (int n = 1; n <= maxn; n++) {
        kd_conv t;
        if (kd_conv_init(&t, n, C, H, W, O, k, 1, pad, 1))
            return (size_t)-1;
        size_t s = kd_conv_workspace(&t);
        best = s > best ? s : best;
    }
    kd_conv_init(c, maxn, C, H, W, O, k, 1, pad, 1);
    return best;
}

kd_dethead *kd_dethead_new(const kd_dethead_opts *o)
{
    if (o->nup < 0 || o->nup > MAXUP || o->C < 1 || o->h < 1 || o->w < 1 || o->K < 1 || o->K > 254 || o->hc < 1 ||
        o->maxn < 1 || (o->nup && o->up < 1) || o->sC < 0 || (o->sC && (o->sh < 1 || o->sw < 1))) {
        kd_err_set("detection head: bad shape (C %d, %dx%d, %d upsamplings, K %d)", o->C, o->h, o->w, o->nup, o->K);
        return NULL;
    }
    kd_dethead *h = calloc(1, sizeof *h);
    if (!h) {
        kd_err_set("detection head: out of memory");
        return NULL;
    }
    h->o = *o;
    h->nh = o->sC ? NH : KD_DH_NHEADS;
    int nout[NH] = {o->K, 2, 2, o->K + 1, o->K + 1};
    memcpy(h->nout, nout, sizeof nout);
    kd_pview pv[3 * MAXUP + 4 * NH], bv[2 * MAXUP];
    int np = 0, nb = 0, C = o->C;
    memset(pv, 0, sizeof pv);
    memset(bv, 0, sizeof bv);
    for (int i = 0; i < o->nup; i++) {
        kd_pview *v = &pv[np++];
        snprintf(v->name, sizeof v->name, "up.%d.conv.weight", i);
        v->rank = 4, v->shape[0] = o->up, v->shape[1] = C, v->shape[2] = v->shape[3] = 3;
        for (int k = 0; k < 2; k++) {
            v = &pv[np++];
            snprintf(v->name, sizeof v->name, "up.%d.bn.%s", i, k ? "bias" : "weight");
            v->rank = 1, v->shape[0] = o->up, v->no_decay = 1;
            v = &bv[nb++];
            snprintf(v->name, sizeof v->name, "up.%d.bn.%s", i, k ? "running_var" : "running_mean");
            v->rank = 1, v->shape[0] = o->up;
        }
        C = o->up;
    }
    for (int j = 0; j < h->nh; j++) {
        h->cin[j] = j == SKIP ? o->sC : C;
        const int64_t shp[4][4] = {{o->hc, h->cin[j], 3, 3}, {o->hc}, {nout[j], o->hc, 1, 1}, {nout[j]}};
        const char *leaf[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};
        for (int k = 0; k < 4; k++) {
            kd_pview *v = &pv[np++];
            snprintf(v->name, sizeof v->name, "%s.%s", head_name[j], leaf[k]);
            v->rank = k & 1 ? 1 : 4, v->no_decay = k & 1;
            memcpy(v->shape, shp[k], sizeof shp[k]);
        }
    }
    if (kd_slab_init(&h->P, pv, np) || (nb ? kd_slab_init(&h->B, bv, nb) : 0)) {
        kd_dethead_free(h);
        return NULL;
    }
    int bad = 0, N = o->maxn, hh = o->h, ww = o->w;
    size_t ws = 0, s;
    C = o->C;
    for (int i = 0; i < o->nup; i++) {
        upblk *u = &h->up[i];
        size_t nin = (size_t)N * C * 4 * hh * ww, nmid = (size_t)N * o->up * 4 * hh * ww;
        u->in = zalloc(nin, &bad), u->d_in = zalloc(nin, &bad);
        u->cv = zalloc(nmid, &bad), u->bn = zalloc(nmid, &bad), u->act = zalloc(nmid, &bad);
        u->d_act = zalloc(nmid, &bad), u->d_bn = zalloc(nmid, &bad), u->d_cv = zalloc(nmid, &bad);
        u->mean = zalloc((size_t)o->up, &bad), u->rstd = zalloc((size_t)o->up, &bad);
        if ((s = conv_ws(&u->conv, N, C, 2 * hh, 2 * ww, o->up, 3, 1)) == (size_t)-1)
            goto fail;
        ws = s > ws ? s : ws;
        hh *= 2, ww *= 2, C = o->up;
    }
    h->H = hh, h->W = ww;
    size_t HW = (size_t)hh * ww, big = HW;
    for (int j = 0; j < h->nh; j++) {
        int jh = j == SKIP ? o->sh : hh, jw = j == SKIP ? o->sw : ww;
        size_t jhw = h->hw[j] = (size_t)jh * jw;
        big = jhw > big ? jhw : big;
        h->a[j] = zalloc((size_t)N * o->hc * jhw, &bad), h->r[j] = zalloc((size_t)N * o->hc * jhw, &bad);
        h->out[j] = zalloc((size_t)N * nout[j] * jhw, &bad), h->dout[j] = zalloc((size_t)N * nout[j] * jhw, &bad);
        if ((s = conv_ws(&h->c3[j], N, h->cin[j], jh, jw, o->hc, 3, 1)) == (size_t)-1)
            goto fail;
        ws = s > ws ? s : ws;
        if ((s = conv_ws(&h->c1[j], N, o->hc, jh, jw, nout[j], 1, 0)) == (size_t)-1)
            goto fail;
        ws = s > ws ? s : ws;
    }
    if (o->sC) {
        h->seg = zalloc((size_t)N * (o->K + 1) * h->hw[SKIP], &bad);
        h->dseg = zalloc((size_t)N * (o->K + 1) * h->hw[SKIP], &bad);
    }
    h->d_r = zalloc((size_t)N * o->hc * big, &bad), h->d_a = zalloc((size_t)N * o->hc * big, &bad);
    h->d_F = zalloc((size_t)N * C * HW, &bad);
    h->ws = zalloc(ws, &bad), h->ws_n = ws;
    if (bad) {
        kd_err_set("detection head: out of memory");
        goto fail;
    }
    return h;
fail:
    kd_dethead_free(h);
    return NULL;
}

void kd_dethead_free(kd_dethead *h)
{
    if (!h)
        return;
    for (int i = 0; i < MAXUP; i++) {
        upblk *u = &h->up[i];
        free(u->in), free(u->cv), free(u->bn), free(u->act), free(u->mean), free(u->rstd);
        free(u->d_act), free(u->d_bn), free(u->d_cv), free(u->d_in);
    }
    for (int j = 0; j < NH; j++)
        free(h->a[j]), free(h->r[j]), free(h->out[j]), free(h->dout[j]);
    free(h->seg), free(h->dseg), free(h->d_r), free(h->d_a), free(h->d_F), free(h->ws), free(h->bn_work);
    kd_slab_free(&h->P);
    kd_slab_free(&h->B);
    free(h);
}

int kd_dethead_set_bn_sync(kd_dethead *h, kd_bn_sum_fn sum)
{
    if (sum && !h->bn_work && !(h->bn_work = malloc(sizeof(double) * (2 * (size_t)h->o.up + 1)))) {
        kd_err_set("detection head: out of memory");
        return -1;
    }
    h->bn_sum = sum;
    return 0;
}

void kd_dethead_init(kd_dethead *h, uint64_t seed)
{
    kd_rng r = kd_rng_make(seed, 0xDE7u, 0);
    for (int i = 0; i < h->P.nv; i++) {
        const kd_pview *v = &h->P.v[i];
        float *p = h->P.p + v->off;
        const char *leaf = strrchr(v->name, '.') + 1;
        if (strstr(v->name, ".bn.")) {
            for (size_t k = 0; k < v->n; k++)
                p[k] = strcmp(leaf, "weight") ? 0.0f : 1.0f;
            continue;
        }
        /* a conv's bias draws with its weight's fan-in: the view before it */
        const kd_pview *wv = v->rank == 1 ? &h->P.v[i - 1] : v;
        double fan = (double)wv->shape[1] * wv->shape[2] * wv->shape[3], b = 1 / sqrt(fan);
        for (size_t k = 0; k < v->n; k++)
            p[k] = kd_rng_range(&r, (float)-b, (float)b);
        /* the last conv of each head starts near 0 (CenterNet's
         * fill_fc_weights: normal, std 0.001): every head starts at its
         * bias, whatever the scale of the backbone's features */
        if (!strcmp(leaf, "weight") && v->rank == 4 && v->shape[2] == 1)
            for (size_t k = 0; k < v->n; k++)
                p[k] = 0.001f * kd_rng_normal(&r);
        if (!strcmp(v->name, "hm.2.bias"))
            for (size_t k = 0; k < v->n; k++)
                p[k] = -2.19f;
    }
    for (int i = 0; i < h->B.nv; i++) {
        const kd_pview *v = &h->B.v[i];
        for (size_t k = 0; k < v->n; k++)
            h->B.p[v->off + k] = strstr(v->name, "running_var") ? 1.0f : 0.0f;
    }
}

kd_slab *kd_dethead_params(kd_dethead *h) { return &h->P; }
kd_slab *kd_dethead_buffers(kd_dethead *h) { return &h->B; }
const kd_dethead_opts *kd_dethead_opts_of(const kd_dethead *h) { return &h->o; }
const float *kd_dethead_out(const kd_dethead *h, int head) { return h->out[head]; }
float *kd_dethead_dout(kd_dethead *h, int head) { return h->dout[head]; }

const float *kd_dethead_seg(const kd_dethead *h, int *Hs, int *Ws)
{
    *Hs = h->o.sC ? h->o.sh : h->H, *Ws = h->o.sC ? h->o.sw : h->W;
    return h->o.sC ? h->seg : h->out[KD_DH_SEG];
}

float *kd_dethead_dseg(kd_dethead *h) { return h->o.sC ? h->dseg : h->dout[KD_DH_SEG]; }

int kd_dethead_out_size(const kd_dethead *h, int *H, int *W)
{
    *H = h->H, *W = h->W;
    return 0;
}

/* A batch of n <= the planned images: only N changes; the kernel, tile and
 * thread count the workspace was sized for stay those of the init. */
static void conv_n(kd_conv *c, int n) { c->N = n; }

static float *pp(kd_dethead *h, const char *fmt, int i, const char *s, int grad)
{
    char name[96];
    snprintf(name, sizeof name, fmt, i, s);
    return grad ? kd_slab_grad(&h->P, name) : kd_slab_param(&h->P, name);
}

static float *hp(kd_dethead *h, int j, const char *leaf, int grad)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", head_name[j], leaf);
    return grad ? kd_slab_grad(&h->P, name) : kd_slab_param(&h->P, name);
}

int kd_dethead_forward(kd_dethead *h, const float *x, const float *skip, int n, int train)
{
    if (n < 1 || n > h->o.maxn) {
        kd_err_set("detection head: batch of %d images, prepared for at most %d", n, h->o.maxn);
        return -1;
    }
    if (!skip != !h->o.sC) {
        kd_err_set("detection head: %s", skip ? "a skip map for a head without one" : "no skip map");
        return -1;
    }
    h->n = n, h->train = train, h->x = x, h->skip = skip;
    const float *F = x;
    int C = h->o.C, hh = h->o.h, ww = h->o.w;
    for (int i = 0; i < h->o.nup; i++) {
        upblk *u = &h->up[i];
        size_t HW = (size_t)4 * hh * ww;
        kd_up2_forward(n, C, hh, ww, F, u->in);
        conv_n(&u->conv, n);
        kd_conv_forward(&u->conv, u->in, pp(h, "up.%d.conv.%s", i, "weight", 0), NULL, u->cv, h->ws);
        float *g = pp(h, "up.%d.bn.%s", i, "weight", 0), *b = pp(h, "up.%d.bn.%s", i, "bias", 0);
        char rm[64], rv[64];
        snprintf(rm, sizeof rm, "up.%d.bn.running_mean", i);
        snprintf(rv, sizeof rv, "up.%d.bn.running_var", i);
        float *run_m = kd_slab_param(&h->B, rm), *run_v = kd_slab_param(&h->B, rv);
        if (train && h->bn_sum) {
            if (kd_bn_forward_train_sync(h->bn_sum, h->bn_work, n, h->o.up, (int)HW, u->cv, g, b, u->bn, u->mean,
                                         u->rstd, run_m, run_v, BN_MOM, BN_EPS))
                return -1;
        } else if (train)
            kd_bn_forward_train(n, h->o.up, (int)HW, 0, u->cv, g, b, u->bn, u->mean, u->rstd, run_m, run_v, BN_MOM,
                                BN_EPS);
        else
            kd_bn_forward_eval(n, h->o.up, (int)HW, u->cv, g, b, run_m, run_v, BN_EPS, u->bn);
        kd_act_forward(KD_RELU, u->bn, u->act, (size_t)n * h->o.up * HW);
        F = u->act, C = h->o.up, hh *= 2, ww *= 2;
    }
    h->F = F;
    for (int j = 0; j < h->nh; j++) {
        size_t HW = h->hw[j];
        conv_n(&h->c3[j], n);
        conv_n(&h->c1[j], n);
        kd_conv_forward(&h->c3[j], j == SKIP ? skip : F, hp(h, j, "0.weight", 0), hp(h, j, "0.bias", 0), h->a[j],
                        h->ws);
        kd_act_forward(KD_RELU, h->a[j], h->r[j], (size_t)n * h->o.hc * HW);
        kd_conv_forward(&h->c1[j], h->r[j], hp(h, j, "2.weight", 0), hp(h, j, "2.bias", 0), h->out[j], h->ws);
        memset(h->dout[j], 0, sizeof(float) * (size_t)n * h->nout[j] * HW);
    }
    if (h->o.sC) {
        int K1 = h->o.K + 1;
        size_t ns = (size_t)K1 * h->hw[SKIP];
        for (int i = 0; i < n; i++) {
            float *y = h->seg + i * ns;
            const float *f = h->out[SKIP] + i * ns;
            kd_bilinear_resize(K1, h->H, h->W, h->out[KD_DH_SEG] + (size_t)i * K1 * h->hw[KD_DH_SEG], h->o.sh,
                               h->o.sw, y);
            for (size_t k = 0; k < ns; k++)
                y[k] += f[k];
        }
        memset(h->dseg, 0, sizeof(float) * n * ns);
    }
    return 0;
}

int kd_dethead_backward(kd_dethead *h, float *dx, float *dskip)
{
    if (!h->train) {
        kd_err_set("detection head: backward after an eval forward");
        return -1;
    }
    int n = h->n;
    size_t HW = (size_t)h->H * h->W, nh = (size_t)n * h->o.hc * HW;
    int C = h->o.nup ? h->o.up : h->o.C;
    float *dF = h->o.nup || dx ? h->d_F : NULL;
    if (dF)
        memset(dF, 0, sizeof(float) * (size_t)n * C * HW);
    if (h->o.sC) {
        /* the sum's gradient reaches both terms: the skip head as it is,
         * the seg head through the upsampling */
        int K1 = h->o.K + 1;
        size_t ns = (size_t)K1 * h->hw[SKIP];
        memcpy(h->dout[SKIP], h->dseg, sizeof(float) * n * ns);
        for (int i = 0; i < n; i++)
            kd_bilinear_resize_backward(K1, h->H, h->W, h->dseg + i * ns, h->o.sh, h->o.sw,
                                        h->dout[KD_DH_SEG] + (size_t)i * K1 * HW);
    }
    for (int j = 0; j < h->nh; j++) {
        nh = (size_t)n * h->o.hc * h->hw[j];
        memset(h->d_r, 0, sizeof(float) * nh);
        memset(h->d_a, 0, sizeof(float) * nh);
        kd_conv_backward(&h->c1[j], h->r[j], hp(h, j, "2.weight", 0), h->dout[j], h->d_r, hp(h, j, "2.weight", 1),
                         hp(h, j, "2.bias", 1), h->ws);
        kd_act_backward(KD_RELU, h->a[j], h->r[j], h->d_r, h->d_a, nh);
        kd_conv_backward(&h->c3[j], j == SKIP ? h->skip : h->F, hp(h, j, "0.weight", 0), h->d_a,
                         j == SKIP ? dskip : dF, hp(h, j, "0.weight", 1), hp(h, j, "0.bias", 1), h->ws);
    }
    const float *dnext = dF;
    int hh = h->H, ww = h->W;
    for (int i = h->o.nup - 1; i >= 0; i--) {
        upblk *u = &h->up[i];
        size_t nm = (size_t)n * h->o.up * hh * ww;
        int Cin = i ? h->o.up : h->o.C;
        memset(u->d_bn, 0, sizeof(float) * nm);
        memset(u->d_cv, 0, sizeof(float) * nm);
        memset(u->d_in, 0, sizeof(float) * (size_t)n * Cin * hh * ww);
        kd_act_backward(KD_RELU, u->bn, u->act, dnext, u->d_bn, nm);
        if (h->bn_sum) {
            if (kd_bn_backward_sync(h->bn_sum, h->bn_work, n, h->o.up, hh * ww, u->cv, u->mean, u->rstd,
                                    pp(h, "up.%d.bn.%s", i, "weight", 0), u->d_bn, u->d_cv,
                                    pp(h, "up.%d.bn.%s", i, "weight", 1), pp(h, "up.%d.bn.%s", i, "bias", 1)))
                return -1;
        } else
            kd_bn_backward(n, h->o.up, hh * ww, 0, u->cv, u->mean, u->rstd, pp(h, "up.%d.bn.%s", i, "weight", 0),
                           u->d_bn, u->d_cv, pp(h, "up.%d.bn.%s", i, "weight", 1), pp(h, "up.%d.bn.%s", i, "bias", 1));
        kd_conv_backward(&u->conv, u->in, pp(h, "up.%d.conv.%s", i, "weight", 0), u->d_cv, u->d_in,
                         pp(h, "up.%d.conv.%s", i, "weight", 1), NULL, h->ws);
        hh /= 2, ww /= 2;
        float *dprev = i ? h->up[i - 1].d_act : dx;
        if (i) /* the previous block's output gradient starts from zero */
            memset(dprev, 0, sizeof(float) * (size_t)n * Cin * hh * ww);
        if (dprev)
            kd_up2_backward(n, Cin, hh, ww, u->d_in, dprev);
        dnext = dprev;
    }
    if (!h->o.nup && dx)
        for (size_t k = 0; k < (size_t)n * h->o.C * HW; k++)
            dx[k] += dF[k];
    return 0;
}
