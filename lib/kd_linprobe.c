#include "kd_linprobe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"

#define MEM 10

int kd_logreg_init(kd_logreg *m, int D, int K)
{
    memset(m, 0, sizeof *m);
    m->D = D;
    m->K = K;
    m->W = calloc((size_t)K * D, sizeof(float));
    m->b = calloc((size_t)K, sizeof(float));
    if (!m->W || !m->b) {
        kd_logreg_free(m);
        kd_err_set("logistic regression: out of memory");
        return -1;
    }
    return 0;
}

void kd_logreg_free(kd_logreg *m)
{
    free(m->W);
    free(m->b);
    m->W = m->b = NULL;
}

double kd_logreg_loss_grad(const float *X, const int32_t *y, int64_t N, int D, int K, const float *W,
                           const float *b, double wd, float *gW, float *gb, float *P)
{
    /* P = X W^T + b, then softmax in place and P - onehot(y), over N */
    for (int64_t i = 0; i < N; i++)
        memcpy(P + i * K, b, sizeof(float) * (size_t)K);
    kd_gemm(0, 1, (int)N, K, D, 1.0f, X, D, W, D, 1.0f, P, K);
    double loss = 0;
    float invN = 1.0f / (float)N;
    for (int k = 0; k < K; k++)
        gb[k] = 0;
    for (int64_t i = 0; i < N; i++) {
        float *p = P + i * K, mx = p[0];
        for (int k = 1; k < K; k++)
            mx = p[k] > mx ? p[k] : mx;
        double s = 0;
        for (int k = 0; k < K; k++)
            s += exp((double)p[k] - mx);
        loss += log(s) + mx - p[y[i]];
        for (int k = 0; k < K; k++) {
            float q = (float)(exp((double)p[k] - mx) / s) - (k == y[i]);
            p[k] = q * invN;
            gb[k] += p[k];
        }
    }
    /* gW = dZ^T X + wd W */
    memcpy(gW, W, sizeof(float) * (size_t)K * D);
    kd_gemm(1, 0, K, D, (int)N, 1.0f, P, K, X, D, (float)wd, gW, D);
    double reg = 0;
    for (int64_t j = 0; j < (int64_t)K * D; j++)
        reg += (double)W[j] * W[j];
    return loss / (double)N + 0.5 * wd * reg;
}

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* theta = [W | b] in double; evaluate into f and g (double). */
typedef struct {
    const float *X;
    const int32_t *y;
    int64_t N;
    int D, K;
    double wd;
    float *W, *b, *gW, *gb, *P;
} problem;

static double eval(problem *p, const double *th, double *g)
{
    int64_t nw = (int64_t)p->K * p->D;
    for (int64_t j = 0; j < nw; j++)
        p->W[j] = (float)th[j];
    for (int k = 0; k < p->K; k++)
        p->b[k] = (float)th[nw + k];
    double f = kd_logreg_loss_grad(p->X, p->y, p->N, p->D, p->K, p->W, p->b, p->wd, p->gW, p->gb, p->P);
    for (int64_t j = 0; j < nw; j++)
        g[j] = p->gW[j];
    for (int k = 0; k < p->K; k++)
        g[nw + k] = p->gb[k];
    return f;
}

int kd_logreg_fit(kd_logreg *m, const float *X, const int32_t *y, int64_t N, double wd, int max_iter, double tol)
{
    int D = m->D, K = m->K;
    int64_t n = (int64_t)K * D + K;
    problem p = {X, y, N, D, K, wd, m->W, m->b, NULL, NULL, NULL};
    p.gW = malloc(sizeof(float) * (size_t)K * D);
    p.gb = malloc(sizeof(float) * (size_t)K);
    p.P = malloc(sizeof(float) * (size_t)N * K);
    double *th = calloc((size_t)n, sizeof(double)), *g = malloc(sizeof(double) * (size_t)n);
    double *d = malloc(sizeof(double) * (size_t)n), *th2 = malloc(sizeof(double) * (size_t)n);
    double *g2 = malloc(sizeof(double) * (size_t)n);
    double *S = malloc(sizeof(double) * (size_t)n * MEM), *Y = malloc(sizeof(double) * (size_t)n * MEM);
    double rho[MEM], alpha[MEM];
    int rc = -1;
    if (!p.gW || !p.gb || !p.P || !th || !g || !d || !th2 || !g2 || !S || !Y) {
        kd_err_set("logistic regression: out of memory");
        goto out;
    }
    double f = eval(&p, th, g);
    int hist = 0, head = 0, it;
    for (it = 0; it < max_iter; it++) {
        double gmax = 0;
        for (int64_t j = 0; j < n; j++)
            gmax = fabs(g[j]) > gmax ? fabs(g[j]) : gmax;
        m->gnorm = gmax;
        if (gmax < tol)
            break;
        /* two-loop recursion: d = -H g */
        for (int64_t j = 0; j < n; j++)
            d[j] = -g[j];
        for (int h = 0; h < hist; h++) {
            int s = (head - 1 - h + MEM) % MEM;
            alpha[s] = rho[s] * dot(S + (int64_t)s * n, d, n);
            for (int64_t j = 0; j < n; j++)
                d[j] -= alpha[s] * Y[(int64_t)s * n + j];
        }
        double gamma = 1.0;
        if (hist) {
            int s = (head - 1 + MEM) % MEM;
            gamma = dot(S + (int64_t)s * n, Y + (int64_t)s * n, n) / dot(Y + (int64_t)s * n, Y + (int64_t)s * n, n);
        } else {
            double gn = sqrt(dot(g, g, n));
            gamma = gn > 0 ? 1.0 / gn : 1.0;
        }
        for (int64_t j = 0; j < n; j++)
            d[j] *= gamma;
        for (int h = hist - 1; h >= 0; h--) {
            int s = (head - 1 - h + MEM) % MEM;
            double beta = rho[s] * dot(Y + (int64_t)s * n, d, n);
            for (int64_t j = 0; j < n; j++)
                d[j] += (alpha[s] - beta) * S[(int64_t)s * n + j];
        }
        double gd = dot(g, d, n);
        if (gd >= 0) { /* not a descent direction: restart from steepest descent */
            hist = 0;
            for (int64_t j = 0; j < n; j++)
                d[j] = -g[j] * gamma;
            gd = dot(g, d, n);
        }
        double step = 1.0, f2 = f;
        int ok = 0;
        for (int ls = 0; ls < 30; ls++) {
            for (int64_t j = 0; j < n; j++)
                th2[j] = th[j] + step * d[j];
            f2 = eval(&p, th2, g2);
            if (isfinite(f2) && f2 <= f + 1e-4 * step * gd) {
                ok = 1;
                break;
            }
            step *= 0.5;
        }
        if (!ok)
            break; /* no decrease possible in float precision: converged */
        int s = head;
        double sy = 0;
        for (int64_t j = 0; j < n; j++) {
            S[(int64_t)s * n + j] = th2[j] - th[j];
            Y[(int64_t)s * n + j] = g2[j] - g[j];
        }
        sy = dot(S + (int64_t)s * n, Y + (int64_t)s * n, n);
        if (sy > 1e-12) {
            rho[s] = 1.0 / sy;
            head = (head + 1) % MEM;
            if (hist < MEM)
                hist++;
        }
        double df = f - f2;
        memcpy(th, th2, sizeof(double) * (size_t)n);
        memcpy(g, g2, sizeof(double) * (size_t)n);
        f = f2;
        if (df <= 1e-10 * (fabs(f) > 1 ? fabs(f) : 1))
            break;
    }
    if (!isfinite(f)) {
        kd_err_set("logistic regression: the loss is not finite (features contain huge values?)");
        goto out;
    }
    /* leave the weights at the accepted point */
    int64_t nw = (int64_t)K * D;
    for (int64_t j = 0; j < nw; j++)
        m->W[j] = (float)th[j];
    for (int k = 0; k < K; k++)
        m->b[k] = (float)th[nw + k];
    m->iters = it;
    m->loss = f;
    rc = 0;
out:
    free(p.gW), free(p.gb), free(p.P);
    free(th), free(g), free(d), free(th2), free(g2), free(S), free(Y);
    return rc;
}

void kd_logreg_scores(const kd_logreg *m, const float *X, int64_t N, float *S)
{
    for (int64_t i = 0; i < N; i++)
        memcpy(S + i * m->K, m->b, sizeof(float) * (size_t)m->K);
    kd_gemm(0, 1, (int)N, m->K, m->D, 1.0f, X, m->D, m->W, m->D, 1.0f, S, m->K);
}

void kd_topk_count(const float *S, const int32_t *y, int64_t N, int K, int64_t *top1, int64_t *top5)
{
    *top1 = *top5 = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *s = S + i * K;
        float t = s[y[i]];
        int above = 0; /* classes scoring higher; ties favour the lower index as argmax does */
        for (int k = 0; k < K; k++)
            above += s[k] > t || (s[k] == t && k < y[i]);
        *top1 += above == 0;
        *top5 += above < 5;
    }
}

void kd_standardize_fit(const float *X, int64_t N, int D, float *mean, float *std)
{
    for (int d = 0; d < D; d++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < N; i++) {
            double v = X[i * D + d];
            s += v;
            s2 += v * v;
        }
        double mu = N ? s / (double)N : 0, var = N ? s2 / (double)N - mu * mu : 0;
        mean[d] = (float)mu;
        std[d] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    }
}

void kd_standardize_apply(float *X, int64_t N, int D, const float *mean, const float *std)
{
    for (int64_t i = 0; i < N; i++)
        for (int d = 0; d < D; d++)
            X[i * D + d] = (X[i * D + d] - mean[d]) / std[d];
}
