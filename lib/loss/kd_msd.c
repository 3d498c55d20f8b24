/* kd_msd — MSD's student side (region pooling, classifier or aligner) and
 * its sample-wise and feature-wise contrasts (contract in lib/kd_msd.h). */
#include "kd_msd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_loss.h"

void kd_msd_free(kd_msd *m)
{
    free(m->first), free(m->count);
    kd_aligner_free(&m->al);
    free(m->pool), free(m->z), free(m->u), free(m->unorm), free(m->v), free(m->vnorm);
    free(m->du), free(m->dz), free(m->dpool), free(m->p);
    memset(m, 0, sizeof *m);
}

int kd_msd_init(kd_msd *m, const kd_regions *rg, int space, int maxB, int C, int h, int w, int D, float tau)
{
    memset(m, 0, sizeof *m);
    m->rg = *rg;
    m->space = space, m->maxB = maxB, m->C = C, m->h = h, m->w = w, m->D = D, m->tau = tau;
    m->align = space == KD_MSD_FEAT && C != D;
    if (maxB < 1 || C < 1 || D < 1) {
        kd_err_set("msd: %d images of %d channels compared over %d", maxB, C, D);
        return -1;
    }
    if ((m->R = kd_regions_count(rg, h, w)) < 0)
        return -1;
    size_t B = (size_t)maxB, R = (size_t)m->R, Dd = (size_t)D, Cp = m->space == KD_MSD_LOGITS ? (size_t)C : Dd;
    m->first = malloc(sizeof(int) * R), m->count = malloc(sizeof(int) * R);
    m->pool = malloc(sizeof(float) * B * R * Cp), m->dpool = malloc(sizeof(float) * B * R * Cp);
    m->z = malloc(sizeof(float) * B * R * Dd), m->dz = malloc(sizeof(float) * B * R * Dd);
    m->u = malloc(sizeof(float) * B * R * Dd), m->du = malloc(sizeof(float) * B * R * Dd);
    m->v = malloc(sizeof(float) * B * R * Dd);
    m->unorm = malloc(sizeof(float) * B * R), m->vnorm = malloc(sizeof(float) * B * R);
    m->p = malloc(sizeof(double) * (B > R ? B : R));
    int ok = m->first && m->count && m->pool && m->dpool && m->z && m->dz && m->u && m->du && m->v && m->unorm &&
             m->vnorm && m->p;
    if (ok && m->align && kd_aligner_init(&m->al, maxB, C, h, w, D)) {
        kd_msd_free(m);
        return -1;
    }
    if (!ok) {
        kd_msd_free(m);
        kd_err_set("msd: out of memory");
        return -1;
    }
    for (int r = 0; r < m->R; r++) {
        if (kd_regions_scale_span(rg, h, w, r, &m->first[r], &m->count[r]) < 0) {
            kd_msd_free(m);
            return -1;
        }
        m->Rf += m->count[r] > 1;
    }
    return 0;
}

/* One InfoNCE row: anchor u [D] against m candidates v_j (v + j*step),
 * the positive at pos.  Returns -log p_pos; adds c (sum_j p_j v_j - v_pos)
 * / tau into du (NULL: none).  p: [m] scratch. */
static double nce_row(const float *u, const float *v, size_t step, int m, int pos, int D, float tau, double c,
                      float *du, double *p)
{
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < m; j++) {
        const float *vj = v + (size_t)j * step;
        double d = 0;
        for (int k = 0; k < D; k++)
            d += (double)u[k] * vj[k];
        p[j] = d / tau;
        mx = fmax(mx, p[j]);
    }
    for (int j = 0; j < m; j++)
        s += (p[j] = exp(p[j] - mx));
    double l = -(log(p[pos] / s));
    if (du) {
        for (int j = 0; j < m; j++) {
            const float *vj = v + (size_t)j * step;
            double g = c * (p[j] / s - (j == pos)) / tau;
            for (int k = 0; k < D; k++)
                du[k] += (float)(g * vj[k]);
        }
    }
    return l;
}

/* L_sam + L_fea of u and v [n,R,D] normalised; du (NULL: none) gets
 * weight * dL/du. */
static double contrasts(kd_msd *m, int n, const float *wt, float weight, float *du)
{
    int R = m->R, D = m->D;
    double sam = 0, fea = 0, cs = (double)weight / ((double)n * R),
           cf = m->Rf ? (double)weight / ((double)n * m->Rf) : 0;
    for (int b = 0; b < n; b++)
        for (int r = 0; r < R; r++) {
            size_t i = (size_t)b * R + r;
            const float *u = m->u + i * D;
            float *d = du ? du + i * D : NULL;
            double w = wt[i];
            sam += w * nce_row(u, m->v + (size_t)r * D, (size_t)R * D, n, b, D, m->tau, cs * w, d, m->p);
            if (m->count[r] > 1)
                fea += w * nce_row(u, m->v + ((size_t)b * R + m->first[r]) * D, (size_t)D, m->count[r],
                                   r - m->first[r], D, m->tau, cf * w, d, m->p);
        }
    m->sam = sam / ((double)n * R);
    m->fea = m->Rf ? fea / ((double)n * m->Rf) : 0;
    return m->sam + m->fea;
}

double kd_msd_step(kd_msd *m, int n, const float *F, const kd_msd_params *p, const float *zt, const float *wt,
                   float weight, float *dF)
{
    int R = m->R, D = m->D, C = m->C, h = m->h, w = m->w;
    size_t nr = (size_t)n * R, hw = (size_t)h * w;
    kd_aligner_p ap = {.w = p->aw, .g = p->ag, .b = p->ab, .dw = p->daw, .dg = p->dag, .db = p->dab};
    const float *src = F; /* the map that is pooled */
    int Cp = C;
    if (m->align) {
        src = kd_aligner_forward(&m->al, n, F, &ap);
        Cp = D;
    }
    kd_regions_forward(&m->rg, src, n, Cp, h, w, m->pool);
    const float *zs = m->pool;
    if (m->space == KD_MSD_LOGITS) {
        kd_linear_forward((int)nr, C, D, m->pool, p->W, p->b, m->z);
        zs = m->z;
    }
    kd_l2norm_forward(zs, m->u, m->unorm, (int)nr, D);
    kd_l2norm_forward(zt, m->v, m->vnorm, (int)nr, D);
    if (!dF)
        return contrasts(m, n, wt, weight, NULL);
    memset(m->du, 0, sizeof(float) * nr * D);
    double l = contrasts(m, n, wt, weight, m->du);
    memset(m->dz, 0, sizeof(float) * nr * D);
    kd_l2norm_backward(m->u, m->unorm, m->du, m->dz, (int)nr, D);
    const float *dpool = m->dz;
    if (m->space == KD_MSD_LOGITS) {
        memset(m->dpool, 0, sizeof(float) * nr * C);
        kd_linear_backward((int)nr, C, D, m->pool, p->W, m->dz, m->dpool, p->dW, p->db);
        dpool = m->dpool;
    }
    if (!m->align) {
        kd_regions_backward(&m->rg, dpool, n, Cp, h, w, dF);
        return l;
    }
    memset(m->al.dy, 0, sizeof(float) * n * D * hw);
    kd_regions_backward(&m->rg, dpool, n, D, h, w, m->al.dy);
    kd_aligner_backward(&m->al, n, F, &ap, dF);
    return l;
}
