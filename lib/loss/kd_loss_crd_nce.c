/* kd_loss_crd_nce — CRD's heads, memory banks and NCE loss (kd_loss_crd.h),
 * free of the stream so that a test can drive it with fixed negatives. */
#include "kd_loss_crd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_layers.h"
#include "kd_loss.h"
#include "kd_rng.h"

/* RepDistiller's eps in the NCE denominators */
#define CRD_EPS 1e-7

int kd_crd_init(kd_crd *c, int ds, int dt, int E, int N, int K, int B, float tau, float mom, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->ds = ds, c->dt = dt, c->E = E, c->N = N, c->K = K, c->B = B, c->tau = tau, c->mom = mom;
    c->Z[0] = c->Z[1] = -1;
    kd_pview pv[4] = {
        {.name = "embed_s.linear.weight", .rank = 2, .shape = {E, ds}},
        {.name = "embed_s.linear.bias", .rank = 1, .shape = {E}, .no_decay = 1},
        {.name = "embed_t.linear.weight", .rank = 2, .shape = {E, dt}},
        {.name = "embed_t.linear.bias", .rank = 1, .shape = {E}, .no_decay = 1},
    };
    if (kd_slab_init(&c->heads, pv, 4))
        return -1;
    float *p[4], *g[4];
    for (int i = 0; i < 4; i++) {
        p[i] = c->heads.p + c->heads.v[i].off;
        g[i] = c->heads.g + c->heads.v[i].off;
        /* nn.Linear: kaiming_uniform(a=sqrt(5)) and its bias rule both give
         * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
        float bound = (float)(1 / sqrt((double)(i < 2 ? ds : dt)));
        kd_rng r = kd_rng_make(seed, 0x637264686561ULL /* "crdhea" */, (uint64_t)i);
        for (size_t j = 0; j < c->heads.v[i].n; j++)
            p[i][j] = kd_rng_range(&r, -bound, bound);
    }
    c->Ws = p[0], c->bs = p[1], c->Wt = p[2], c->bt = p[3];
    c->gWs = g[0], c->gbs = g[1], c->gWt = g[2], c->gbt = g[3];
    size_t NE = (size_t)N * E, BE = (size_t)B * E;
    c->bank_s = malloc(sizeof(float) * NE);
    c->bank_t = malloc(sizeof(float) * NE);
    float **bufs[] = {&c->hs, &c->ht, &c->vs, &c->vt, &c->dvs, &c->dvt, &c->dhs, &c->dht, &c->upd};
    int ok = c->bank_s && c->bank_t;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ok &= (*bufs[i] = malloc(sizeof(float) * BE)) != NULL;
    c->ns = malloc(sizeof(float) * B);
    c->nt = malloc(sizeof(float) * B);
    c->P = malloc(sizeof(double) * B * ((size_t)K + 1));
    if (!ok || !c->ns || !c->nt || !c->P) {
        kd_err_set("out of memory for memory banks of %d x %d", N, E);
        kd_crd_free(c);
        return -1;
    }
    /* RepDistiller: torch.rand(N, E) * 2 stdv - stdv, stdv = 1/sqrt(E/3): rows
     * of expected unit norm, not normalised */
    float stdv = (float)(1 / sqrt(E / 3.0));
    float *banks[2] = {c->bank_s, c->bank_t};
    for (int b = 0; b < 2; b++) {
        kd_rng r = kd_rng_make(seed, 0x637264626e6bULL /* "crdbnk" */, (uint64_t)b);
        for (size_t j = 0; j < NE; j++)
            banks[b][j] = kd_rng_range(&r, -stdv, stdv);
    }
    return 0;
}

void kd_crd_free(kd_crd *c)
{
    kd_slab_free(&c->heads);
    free(c->bank_s), free(c->bank_t), free(c->hs), free(c->ht), free(c->vs), free(c->vt), free(c->dvs);
    free(c->dvt), free(c->dhs), free(c->dht), free(c->upd), free(c->ns), free(c->nt), free(c->P);
    memset(c, 0, sizeof *c);
}

/* One side: the anchors v [n,E] against bank rows idx (positive) and neg.
 * Sets *Z when unset; returns that side's loss and adds scale * dL/dv into
 * dv. */
static double nce_side(const kd_crd *c, const float *v, const float *bank, const int64_t *idx, const int64_t *neg,
                       int n, double *Z, float scale, float *dv)
{
    int K = c->K, E = c->E;
    size_t L = (size_t)K + 1;
    double *P = c->P, sum = 0;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < L; j++) {
            const float *m = bank + (size_t)(j ? neg[(size_t)i * K + j - 1] : idx[i]) * E;
            double d = 0;
            for (int e = 0; e < E; e++)
                d += (double)m[e] * v[(size_t)i * E + e];
            sum += P[i * L + j] = exp(d / c->tau);
        }
    if (*Z < 0) /* RepDistiller's estimate of the partition function, from the first batch */
        *Z = sum / ((double)n * L) * c->N;
    double cn = (double)K / c->N, cd = cn + CRD_EPS, loss = 0;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < L; j++) {
            double p = P[i * L + j] / *Z, g;
            if (j == 0) {
                loss -= log(p / (p + cd));
                g = -cd / (p + cd); /* dL/dlog p */
            } else {
                loss -= log(cn / (p + cd));
                g = p / (p + cd);
            }
            const float *m = bank + (size_t)(j ? neg[(size_t)i * K + j - 1] : idx[i]) * E;
            float gs = (float)(g * scale / c->tau);
            for (int e = 0; e < E; e++)
                dv[(size_t)i * E + e] += gs * m[e];
        }
    return loss / n;
}

double kd_crd_step(kd_crd *c, const float *fs, const float *ft, const int64_t *idx, const int64_t *neg, int n,
                   float weight, float *d_fs)
{
    int E = c->E;
    size_t nE = (size_t)n * E;
    kd_linear_forward(n, c->ds, E, fs, c->Ws, c->bs, c->hs);
    kd_linear_forward(n, c->dt, E, ft, c->Wt, c->bt, c->ht);
    kd_l2norm_forward(c->hs, c->vs, c->ns, n, E);
    kd_l2norm_forward(c->ht, c->vt, c->nt, n, E);
    memset(c->dvs, 0, sizeof(float) * nE);
    memset(c->dvt, 0, sizeof(float) * nE);
    memset(c->dhs, 0, sizeof(float) * nE);
    memset(c->dht, 0, sizeof(float) * nE);
    float scale = weight / n;
    double loss = nce_side(c, c->vs, c->bank_t, idx, neg, n, &c->Z[0], scale, c->dvs) +
                  nce_side(c, c->vt, c->bank_s, idx, neg, n, &c->Z[1], scale, c->dvt);
    kd_l2norm_backward(c->vs, c->ns, c->dvs, c->dhs, n, E);
    kd_l2norm_backward(c->vt, c->nt, c->dvt, c->dht, n, E);
    /* the teacher's features are data: no gradient beyond its head */
    kd_linear_backward(n, c->ds, E, fs, c->Ws, c->dhs, d_fs, c->gWs, c->gbs);
    kd_linear_backward(n, c->dt, E, ft, c->Wt, c->dht, NULL, c->gWt, c->gbt);
    c->n = n;
    return loss;
}

/* All rows are computed from the bank as it was before writing any, as
 * RepDistiller's index_select / index_copy_ do, so a row twice in a batch
 * takes its last occurrence's update. */
static void update_bank(const kd_crd *c, float *bank, const float *v, const int64_t *idx)
{
    int E = c->E;
    float m = c->mom;
    for (int i = 0; i < c->n; i++) {
        const float *row = bank + (size_t)idx[i] * E;
        float *u = c->upd + (size_t)i * E;
        double s = 0;
        for (int e = 0; e < E; e++) {
            u[e] = row[e] * m + v[(size_t)i * E + e] * (1 - m);
            s += (double)u[e] * u[e];
        }
        float nr = (float)sqrt(s);
        for (int e = 0; e < E; e++)
            u[e] /= nr;
    }
    for (int i = 0; i < c->n; i++)
        memcpy(bank + (size_t)idx[i] * E, c->upd + (size_t)i * E, sizeof(float) * E);
}

void kd_crd_update(kd_crd *c, const int64_t *idx)
{
    update_bank(c, c->bank_s, c->vs, idx);
    update_bank(c, c->bank_t, c->vt, idx);
    c->n = 0;
}

int64_t kd_crd_classes_init(kd_crd_classes *s, const int32_t *label, int N, int *rarest)
{
    memset(s, 0, sizeof *s);
    int C = 0;
    for (int i = 0; i < N; i++)
        C = label[i] >= C ? label[i] + 1 : C;
    s->N = N, s->nclasses = C, s->label = label;
    s->order = malloc(sizeof(int64_t) * (size_t)(N > 0 ? N : 1));
    s->off = calloc((size_t)(C ? C : 1), sizeof(int64_t));
    s->cnt = calloc((size_t)(C ? C : 1), sizeof(int64_t));
    int64_t *fill = calloc((size_t)(C ? C : 1), sizeof(int64_t));
    if (!s->order || !s->off || !s->cnt || !fill) {
        free(fill);
        kd_crd_classes_free(s);
        kd_err_set("out of memory for %d labels", N);
        return -1;
    }
    for (int i = 0; i < N; i++)
        s->cnt[label[i]]++;
    int64_t usable = -1, at = 0;
    for (int k = 0; k < C; k++) {
        s->off[k] = at;
        at += s->cnt[k];
        if (s->cnt[k] && (usable < 0 || N - s->cnt[k] < usable))
            usable = N - s->cnt[k], *rarest = k;
    }
    for (int i = 0; i < N; i++)
        s->order[s->off[label[i]] + fill[label[i]]++] = i;
    free(fill);
    return usable < 0 ? 0 : usable;
}

void kd_crd_classes_free(kd_crd_classes *s)
{
    free(s->order), free(s->off), free(s->cnt);
    memset(s, 0, sizeof *s);
}

void kd_crd_sample(const kd_crd_classes *s, uint64_t seed, long step, const int64_t *idx, int n, int K,
                   int64_t *neg)
{
    kd_rng r = kd_rng_make(seed, 0x637264736d70ULL /* "crdsmp" */, (uint64_t)step);
    for (int i = 0; i < n; i++) {
        int y = s->label[idx[i]];
        int64_t own = s->cnt[y], start = s->off[y];
        /* a uniform position among the other classes' rows: order without
         * the slice [start, start + own) */
        for (int k = 0; k < K; k++) {
            int64_t u = (int64_t)kd_rng_below(&r, (uint64_t)(s->N - own));
            neg[(size_t)i * K + k] = s->order[u < start ? u : u + own];
        }
    }
}

int kd_crd_save(const kd_crd *c, kd_h5 *h, const char *group)
{
    char s[256], t[256];
    snprintf(s, sizeof s, "%s/bank_s", group);
    snprintf(t, sizeof t, "%s/bank_t", group);
    int64_t dims[2] = {c->N, c->E};
    if (kd_h5_write(h, s, KD_F32, 2, dims, c->bank_s) || kd_h5_write(h, t, KD_F32, 2, dims, c->bank_t) ||
        kd_h5_attr_set_f64(h, s, "z_s", c->Z[0]) || kd_h5_attr_set_f64(h, s, "z_t", c->Z[1]))
        return -1;
    return 0;
}

int kd_crd_load(kd_crd *c, const kd_h5 *h, const char *group)
{
    char s[256], t[256];
    snprintf(s, sizeof s, "%s/bank_s", group);
    snprintf(t, sizeof t, "%s/bank_t", group);
    int64_t dims[2] = {c->N, c->E};
    double z[2];
    if (kd_h5_expect(h, s, 2, dims, NULL) || kd_h5_expect(h, t, 2, dims, NULL) ||
        kd_h5_read(h, s, KD_F32, 0, c->N, c->bank_s) || kd_h5_read(h, t, KD_F32, 0, c->N, c->bank_t) ||
        kd_h5_attr_get_f64(h, s, "z_s", &z[0]) || kd_h5_attr_get_f64(h, s, "z_t", &z[1]))
        return -1;
    for (int i = 0; i < 2; i++)
        if (!(z[i] > 0) && z[i] != -1) {
            kd_err_set("%s: normaliser %s = %g is neither positive nor -1 (unset)", s, i ? "z_t" : "z_s", z[i]);
            return -1;
        }
    c->Z[0] = z[0], c->Z[1] = z[1];
    return 0;
}
