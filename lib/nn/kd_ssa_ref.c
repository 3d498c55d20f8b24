/* kd_ssa_ref — the naive references of the sparse spatial aggregation
 * (lib/kd_ssa.h): direct loops over the [C,n] layout in double, the
 * selection by a full ranking of each row, the backward by the chain rule
 * written out term by term, recomputing everything from x. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_ssa.h"

typedef struct {
    int n, C, k;
    double *s, *xn, *G, *A, *v, *vn; /* s [C,n], xn [n], G [n,n], A [n,n] (0 off the kept set), v [C,n], vn [n] */
} ref;

static int ref_alloc(ref *r, const kd_ssa *s)
{
    r->n = s->h * s->w, r->C = s->C, r->k = s->k;
    size_t n = (size_t)r->n, nc = n * (size_t)r->C;
    r->s = malloc(sizeof(double) * (2 * nc + 2 * n * n + 2 * n));
    if (!r->s) {
        kd_err_set("ssa ref: out of memory");
        return -1;
    }
    r->v = r->s + nc, r->G = r->v + nc, r->A = r->G + n * n, r->xn = r->A + n * n, r->vn = r->xn + n;
    return 0;
}

/* One image: s, G, the kept set's weights A, v = sum_j A_ij s_j and its norm. */
static void ref_image(ref *r, const float *x, float gamma)
{
    int n = r->n, C = r->C;
    for (int i = 0; i < n; i++) {
        double q = 0;
        for (int c = 0; c < C; c++)
            q += (double)x[(size_t)c * n + i] * x[(size_t)c * n + i];
        r->xn[i] = fmax(sqrt(q), 1e-12);
        for (int c = 0; c < C; c++)
            r->s[(size_t)c * n + i] = x[(size_t)c * n + i] / r->xn[i];
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double g = 0;
            for (int c = 0; c < C; c++)
                g += r->s[(size_t)c * n + i] * r->s[(size_t)c * n + j];
            r->G[(size_t)i * n + j] = g;
        }
    for (int i = 0; i < n; i++) {
        const double *g = r->G + (size_t)i * n;
        for (int j = 0; j < n; j++) {
            /* j's rank among the others: how many beat it (larger, or equal and lower) */
            int rank = 0;
            for (int l = 0; l < n; l++)
                rank += l != i && l != j && (g[l] > g[j] || (g[l] == g[j] && l < j));
            int kept = j == i || rank < r->k - 1;
            r->A[(size_t)i * n + j] = kept && g[j] > 0 ? pow(g[j], gamma) : 0;
        }
        double q = 0;
        for (int c = 0; c < C; c++) {
            double v = 0;
            for (int j = 0; j < n; j++)
                v += r->A[(size_t)i * n + j] * r->s[(size_t)c * n + j];
            r->v[(size_t)c * n + i] = v;
            q += v * v;
        }
        r->vn[i] = fmax(sqrt(q), 1e-12);
    }
}

int kd_ssa_forward_ref(const kd_ssa *s, const float *x, float *y)
{
    ref r;
    if (ref_alloc(&r, s))
        return -1;
    size_t nc = (size_t)r.n * r.C;
    for (int b = 0; b < s->B; b++) {
        ref_image(&r, x + b * nc, s->gamma);
        for (int c = 0; c < r.C; c++)
            for (int i = 0; i < r.n; i++)
                y[b * nc + (size_t)c * r.n + i] = (float)(r.v[(size_t)c * r.n + i] / r.vn[i]);
    }
    free(r.s);
    return 0;
}

int kd_ssa_backward_ref(const kd_ssa *s, const float *x, const float *dy, float *dx)
{
    ref r;
    if (ref_alloc(&r, s))
        return -1;
    int n = r.n, C = r.C;
    size_t nc = (size_t)n * C;
    double *dv = malloc(sizeof(double) * 2 * nc), *ds = dv ? dv + nc : NULL;
    if (!dv) {
        free(r.s);
        kd_err_set("ssa ref: out of memory");
        return -1;
    }
    for (int b = 0; b < s->B; b++) {
        ref_image(&r, x + b * nc, s->gamma);
        const float *g = dy + b * nc;
        /* y = v/|v|: dv = (dy - y (y.dy)) / |v| */
        for (int i = 0; i < n; i++) {
            double yd = 0;
            for (int c = 0; c < C; c++)
                yd += r.v[(size_t)c * n + i] / r.vn[i] * g[(size_t)c * n + i];
            for (int c = 0; c < C; c++)
                dv[(size_t)c * n + i] = (g[(size_t)c * n + i] - r.v[(size_t)c * n + i] / r.vn[i] * yd) / r.vn[i];
        }
        memset(ds, 0, sizeof(double) * nc);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double a = r.A[(size_t)i * n + j], gij = r.G[(size_t)i * n + j];
                if (a == 0)
                    continue;
                double dA = 0;
                for (int c = 0; c < C; c++)
                    dA += dv[(size_t)c * n + i] * r.s[(size_t)c * n + j];
                double dG = dA * s->gamma * pow(gij, s->gamma - 1);
                for (int c = 0; c < C; c++) {
                    ds[(size_t)c * n + j] += a * dv[(size_t)c * n + i] + dG * r.s[(size_t)c * n + i];
                    ds[(size_t)c * n + i] += dG * r.s[(size_t)c * n + j];
                }
            }
        /* s = x/|x|: dx = (ds - s (s.ds)) / |x| */
        for (int i = 0; i < n; i++) {
            double sd = 0;
            for (int c = 0; c < C; c++)
                sd += r.s[(size_t)c * n + i] * ds[(size_t)c * n + i];
            for (int c = 0; c < C; c++)
                dx[b * nc + (size_t)c * n + i] += (float)((ds[(size_t)c * n + i] - r.s[(size_t)c * n + i] * sd) / r.xn[i]);
        }
    }
    free(dv);
    free(r.s);
    return 0;
}
