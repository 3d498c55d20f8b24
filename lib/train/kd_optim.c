#include "kd_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"

int kd_sgd_init_views(kd_sgd *s, size_t n, const kd_pview *views, int nv, const kd_sgd_opts *o)
{
    memset(s, 0, sizeof *s);
    s->o = *o;
    s->n = n;
    s->buf = calloc(s->n ? s->n : 1, sizeof(float));
    s->wdscale = malloc(sizeof(float) * (s->n ? s->n : 1));
    if (!s->buf || !s->wdscale) {
        kd_sgd_free(s);
        kd_err_set("optimizer: out of memory");
        return -1;
    }
    for (size_t i = 0; i < s->n; i++)
        s->wdscale[i] = 1;
    if (o->lars_eta > 0 && !(s->adapt = malloc(sizeof *s->adapt * (size_t)(nv ? nv : 1)))) {
        kd_sgd_free(s);
        kd_err_set("optimizer: out of memory");
        return -1;
    }
    for (int v = 0; v < nv; v++) {
        const kd_pview *pv = &views[v];
        if (pv->no_decay && o->wd_exclude)
            for (size_t i = 0; i < pv->n; i++)
                s->wdscale[pv->off + i] = 0;
        if (!pv->no_decay && s->adapt) {
            s->adapt[s->nadapt][0] = pv->off;
            s->adapt[s->nadapt++][1] = pv->n;
        }
    }
    return 0;
}

int kd_sgd_init(kd_sgd *s, kd_model *m, const kd_sgd_opts *o)
{
    size_t n;
    kd_model_params(m, &n);
    int nv = kd_model_nparam_views(m);
    kd_pview *v = malloc(sizeof *v * (size_t)(nv ? nv : 1));
    if (!v) {
        kd_err_set("optimizer: out of memory");
        return -1;
    }
    for (int i = 0; i < nv; i++)
        v[i] = *kd_model_param_view(m, i);
    int rc = kd_sgd_init_views(s, n, v, nv, o);
    free(v);
    return rc;
}

void kd_sgd_free(kd_sgd *s)
{
    free(s->buf);
    free(s->wdscale);
    free(s->adapt);
    s->buf = s->wdscale = NULL;
    s->adapt = NULL;
}

/* d = g + wd*p over [lo, hi), scaled by r. */
static void sgd_range(kd_sgd *s, float *p, const float *g, float lr, size_t lo, size_t hi, float r)
{
    float m = s->o.momentum, wd = s->o.wd;
    for (size_t i = lo; i < hi; i++) {
        float d = r * (g[i] + wd * s->wdscale[i] * p[i]);
        if (m != 0) {
            s->buf[i] = m * s->buf[i] + d;
            d = s->o.nesterov ? d + m * s->buf[i] : s->buf[i];
        }
        p[i] -= lr * d;
    }
}

/* LARS trust ratio of one weight tensor, norms in double. */
static float lars_ratio(const kd_sgd *s, const float *p, const float *g, size_t off, size_t n)
{
    double pn = 0, dn = 0;
    for (size_t i = off; i < off + n; i++) {
        double d = (double)g[i] + (double)s->o.wd * s->wdscale[i] * p[i];
        pn += (double)p[i] * p[i];
        dn += d * d;
    }
    if (pn <= 0 || dn <= 0)
        return 1;
    return (float)(s->o.lars_eta * sqrt(pn) / sqrt(dn));
}

void kd_sgd_step(kd_sgd *s, float *p, const float *g, float lr)
{
    if (!s->adapt) {
        sgd_range(s, p, g, lr, 0, s->n, 1);
        return;
    }
    /* Views tile the slab in order: the gaps between weight tensors are the
     * BN parameters and biases, stepped with ratio 1. */
    size_t at = 0;
    for (int v = 0; v < s->nadapt; v++) {
        size_t off = s->adapt[v][0], n = s->adapt[v][1];
        sgd_range(s, p, g, lr, at, off, 1);
        sgd_range(s, p, g, lr, off, off + n, lars_ratio(s, p, g, off, n));
        at = off + n;
    }
    sgd_range(s, p, g, lr, at, s->n, 1);
}

double kd_sched_lr(const kd_sched *s, long step, double epoch)
{
    double lr = s->base;
    switch (s->kind) {
    case KD_SCHED_CONST: break;
    case KD_SCHED_COSINE:
        if (s->total > 0)
            lr *= 0.5 * (1 + cos(M_PI * (double)(step < s->total ? step : s->total) / (double)s->total));
        break;
    case KD_SCHED_STEP:
        for (int i = 0; i < s->nmile; i++)
            if (epoch >= s->milestones[i])
                lr *= s->gamma;
        break;
    }
    if (s->warmup > 0 && step < s->warmup)
        lr *= (double)(step + 1) / (double)s->warmup;
    return lr;
}

int kd_sched_parse(kd_sched *s, const char *spec)
{
    s->nmile = 0;
    s->gamma = 0.1;
    if (!strcmp(spec, "const"))
        s->kind = KD_SCHED_CONST;
    else if (!strcmp(spec, "cosine"))
        s->kind = KD_SCHED_COSINE;
    else if (!strncmp(spec, "step:", 5)) {
        s->kind = KD_SCHED_STEP;
        const char *p = spec + 5;
        while (*p) {
            char *end;
            double v = strtod(p, &end);
            if (end == p || v < 0 || s->nmile == 16 || (*end && *end != ',')) {
                kd_err_set("schedule '%s': expected step:E1,E2,... (epochs)", spec);
                return -1;
            }
            s->milestones[s->nmile++] = v;
            p = *end ? end + 1 : end;
        }
        if (!s->nmile) {
            kd_err_set("schedule '%s': no milestones", spec);
            return -1;
        }
    } else {
        kd_err_set("schedule '%s' is not const, cosine or step:E1,E2,...", spec);
        return -1;
    }
    return 0;
}

double kd_grad_clip(float *const *g, const size_t *n, int k, double max_norm)
{
    double ss = 0;
    for (int i = 0; i < k; i++)
        for (size_t j = 0; j < n[i]; j++)
            ss += (double)g[i][j] * g[i][j];
    double norm = sqrt(ss);
    if (!(max_norm > 0) || !isfinite(norm))
        return norm;
    /* torch clamps the coefficient to 1 and multiplies in the gradient's dtype */
    double c = max_norm / (norm + 1e-6);
    if (c < 1) {
        float cf = (float)c;
        for (int i = 0; i < k; i++)
            for (size_t j = 0; j < n[i]; j++)
                g[i][j] *= cf;
    }
    return norm;
}
