/* kd_ssa — sparse spatial aggregation (lib/kd_ssa.h).  The kernels work on
 * one image at a time in a positions-major layout [n,C] (a transpose of the
 * map), so that the similarities are one GEMM and every per-position vector
 * is contiguous. */
#include "kd_ssa.h"

#include <math.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"
#include "kd_loss.h"

int kd_ssa_init(kd_ssa *s, int B, int C, int h, int w, int k, float gamma)
{
    if (B < 1 || C < 1 || h < 1 || w < 1 || (long long)h * w > 1 << 20) {
        kd_err_set("ssa: bad map size [%d,%d,%d,%d]", B, C, h, w);
        return -1;
    }
    if (k < 1 || !(gamma > 0)) {
        kd_err_set("ssa: k %d must be >= 1 and gamma %g > 0", k, (double)gamma);
        return -1;
    }
    *s = (kd_ssa){.B = B, .C = C, .h = h, .w = w, .k = k < h * w ? k : h * w, .gamma = gamma};
    return 0;
}

size_t kd_ssa_workspace(const kd_ssa *s)
{
    size_t n = (size_t)s->h * s->w, nc = n * (size_t)s->C;
    size_t fwd = 3 * nc + n * n, bwd = 5 * nc;
    return fwd > bwd ? fwd : bwd;
}

/* Row i of the similarities g [n] -> kept [k]: i, then the k-1 others of
 * largest g, decreasing, the lower j first among equals. */
static void select_row(const float *g, int n, int i, int k, int32_t *kept)
{
    int32_t *best = kept + 1;
    int m = 0;
    kept[0] = i;
    for (int j = 0; j < n && k > 1; j++) {
        if (j == i || (m == k - 1 && !(g[j] > g[best[m - 1]])))
            continue;
        int p = m < k - 1 ? m++ : m - 1; /* the slot freed: the end, or the worst */
        while (p > 0 && g[j] > g[best[p - 1]]) {
            best[p] = best[p - 1];
            p--;
        }
        best[p] = j;
    }
}

static double weight(double g, float gamma) { return g > 0 ? (gamma == 2.0f ? g * g : pow(g, gamma)) : 0; }

/* [C,n] -> [n,C] */
static void to_pos(const float *x, int C, int n, float *t)
{
    for (int c = 0; c < C; c++)
        for (int i = 0; i < n; i++)
            t[(size_t)i * C + c] = x[(size_t)c * n + i];
}

void kd_ssa_forward(const kd_ssa *s, const float *x, float *y, int32_t *idx, float *wt, float *norms, float *ws)
{
    int C = s->C, n = s->h * s->w, k = s->k;
    size_t nc = (size_t)n * C;
    float *st = ws, *vt = ws + nc, *yt = ws + 2 * nc, *G = ws + 3 * nc;
    for (int b = 0; b < s->B; b++) {
        const float *xb = x + (size_t)b * nc;
        float *xn = norms + (size_t)b * 2 * n, *vn = xn + n;
        int32_t *ib = idx + (size_t)b * n * k;
        float *wb = wt + (size_t)b * n * k;
        to_pos(xb, C, n, vt);
        kd_l2norm_forward(vt, st, xn, n, C);
        /* one image's similarities are a small product: threading it costs more than it saves */
        kd_gemm_serial(0, 1, n, n, C, 1.0f, st, C, st, C, 0.0f, G, n);
        memset(vt, 0, nc * sizeof(float));
        for (int i = 0; i < n; i++) {
            select_row(G + (size_t)i * n, n, i, k, ib + (size_t)i * k);
            float *v = vt + (size_t)i * C;
            for (int t = 0; t < k; t++) {
                int j = ib[(size_t)i * k + t];
                float a = (float)weight(G[(size_t)i * n + j], s->gamma);
                wb[(size_t)i * k + t] = a;
                const float *sj = st + (size_t)j * C;
                for (int c = 0; c < C; c++)
                    v[c] += a * sj[c];
            }
        }
        kd_l2norm_forward(vt, yt, vn, n, C);
        float *yb = y + (size_t)b * nc;
        for (int c = 0; c < C; c++)
            for (int i = 0; i < n; i++)
                yb[(size_t)c * n + i] = yt[(size_t)i * C + c];
    }
}

static double dot(const float *a, const float *b, int C)
{
    double d = 0;
    for (int c = 0; c < C; c++)
        d += (double)a[c] * b[c];
    return d;
}

void kd_ssa_backward(const kd_ssa *s, const float *x, const float *y, const int32_t *idx, const float *wt,
                     const float *norms, const float *dy, float *dx, float *ws)
{
    int C = s->C, n = s->h * s->w, k = s->k;
    size_t nc = (size_t)n * C;
    float *st = ws, *yt = ws + nc, *dyt = ws + 2 * nc, *dvt = ws + 3 * nc, *dst = ws + 4 * nc;
    for (int b = 0; b < s->B; b++) {
        const float *xn = norms + (size_t)b * 2 * n, *vn = xn + n;
        const int32_t *ib = idx + (size_t)b * n * k;
        const float *wb = wt + (size_t)b * n * k;
        to_pos(x + (size_t)b * nc, C, n, st);
        for (int i = 0; i < n; i++) /* s as the forward computed it */
            for (int c = 0; c < C; c++)
                st[(size_t)i * C + c] /= xn[i];
        to_pos(y + (size_t)b * nc, C, n, yt);
        to_pos(dy + (size_t)b * nc, C, n, dyt);
        memset(dvt, 0, 2 * nc * sizeof(float)); /* dvt and dst */
        kd_l2norm_backward(yt, vn, dyt, dvt, n, C);
        for (int i = 0; i < n; i++) {
            const float *si = st + (size_t)i * C, *dv = dvt + (size_t)i * C;
            float *dsi = dst + (size_t)i * C;
            for (int t = 0; t < k; t++) {
                int j = ib[(size_t)i * k + t];
                float a = wb[(size_t)i * k + t];
                const float *sj = st + (size_t)j * C;
                float *dsj = dst + (size_t)j * C;
                double g = dot(si, sj, C);
                /* dA_ij = dv_i.s_j; dG_ij = dA_ij gamma G^(gamma-1) where G > 0 */
                float dg = g > 0 ? (float)(dot(dv, sj, C) * s->gamma * weight(g, s->gamma) / g) : 0.0f;
                for (int c = 0; c < C; c++) {
                    dsj[c] += a * dv[c] + dg * si[c];
                    dsi[c] += dg * sj[c];
                }
            }
        }
        /* through the first normalisation, into dyt (free now), then back to [C,n] */
        memset(dyt, 0, nc * sizeof(float));
        kd_l2norm_backward(st, xn, dst, dyt, n, C);
        float *db = dx + (size_t)b * nc;
        for (int c = 0; c < C; c++)
            for (int i = 0; i < n; i++)
                db[(size_t)c * n + i] += dyt[(size_t)i * C + c];
    }
}
