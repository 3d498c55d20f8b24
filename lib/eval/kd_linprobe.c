#include "kd_linprobe.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_gemm.h"
#include "kd_rng.h"

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

/* Rows per block: the block of X stays in cache between the forward product
 * and the gradient product, so X streams from memory once per evaluation. */
#define ROWBLOCK 1024

/* Workspace of one evaluation: per thread a block of logits P [ROWBLOCK,K],
 * a partial gradient G [K,D] and partial sums acc [K+1] (bias gradient,
 * loss). */
typedef struct {
    int nt, K, D;
    float *P, *G;
    double *acc;
} lgws;

static void lgws_free(lgws *w)
{
    free(w->P), free(w->G), free(w->acc);
    w->P = w->G = NULL;
    w->acc = NULL;
}

/* threads <= 0: OpenMP's default. */
static int lgws_init(lgws *w, int64_t N, int D, int K, int threads)
{
    int64_t nblocks = (N + ROWBLOCK - 1) / ROWBLOCK;
    int nt = threads > 0 ? threads : omp_get_max_threads();
    w->nt = nt < nblocks ? nt : (int)(nblocks > 0 ? nblocks : 1);
    w->K = K, w->D = D;
    w->P = malloc(sizeof(float) * (size_t)w->nt * (size_t)(N < ROWBLOCK ? N : ROWBLOCK) * K);
    w->G = malloc(sizeof(float) * (size_t)w->nt * D * K);
    w->acc = malloc(sizeof(double) * (size_t)w->nt * (K + 1));
    if (!w->P || !w->G || !w->acc) {
        lgws_free(w);
        kd_err_set("logistic regression: out of memory");
        return -1;
    }
    return 0;
}

/* Rows [r0, r1) into one thread's G = dZ^T X, acc = (sum dZ, sum CE). */
static void loss_grad_rows(const float *X, const int32_t *y, int64_t r0, int64_t r1, int D, int K, const float *W,
                           const float *b, float invN, float *P, float *G, double *acc)
{
    for (int k = 0; k <= K; k++)
        acc[k] = 0;
    for (int64_t s0 = r0; s0 < r1; s0 += ROWBLOCK) {
        int nr = (int)(r1 - s0 < ROWBLOCK ? r1 - s0 : ROWBLOCK);
        const float *Xb = X + s0 * D;
        for (int i = 0; i < nr; i++)
            memcpy(P + (int64_t)i * K, b, sizeof(float) * (size_t)K);
        kd_gemm(0, 1, nr, K, D, 1.0f, Xb, D, W, D, 1.0f, P, K);
        for (int i = 0; i < nr; i++) {
            float *p = P + (int64_t)i * K, mx = p[0];
            int yi = y[s0 + i];
            for (int k = 1; k < K; k++)
                mx = p[k] > mx ? p[k] : mx;
            float s = 0, zy = p[yi] - mx;
            for (int k = 0; k < K; k++) {
                p[k] = expf(p[k] - mx);
                s += p[k];
            }
            acc[K] += log((double)s) - zy;
            float inv = 1.0f / s;
            for (int k = 0; k < K; k++) {
                p[k] = (p[k] * inv - (k == yi)) * invN;
                acc[k] += p[k];
            }
        }
        kd_gemm(1, 0, K, D, nr, 1.0f, P, K, Xb, D, s0 > r0 ? 1.0f : 0.0f, G, D);
    }
}

/* With several threads each takes a contiguous range of whole blocks and
 * calls kd_gemm inside the parallel region, where BLIS runs single-threaded
 * (nested OpenMP is off): one barrier per evaluation instead of one per
 * product, which matters on a busy machine.  With one block (small N, SGD
 * minibatches) BLIS threads the products itself.  The result depends only
 * on the number of threads, not on scheduling. */
static double loss_grad(const float *X, const int32_t *y, int64_t N, int D, int K, const float *W, const float *b,
                        double wd, float *gW, float *gb, lgws *w)
{
    float invN = 1.0f / (float)N;
    int64_t nblocks = (N + ROWBLOCK - 1) / ROWBLOCK;
    int nt = w->nt < nblocks ? w->nt : (int)nblocks;
    int64_t rowsz = (int64_t)(N < ROWBLOCK ? N : ROWBLOCK) * K;
    if (nt <= 1) {
        loss_grad_rows(X, y, 0, N, D, K, W, b, invN, w->P, w->G, w->acc);
    } else {
#pragma omp parallel for num_threads(nt) schedule(static, 1)
        for (int t = 0; t < nt; t++) {
            int64_t b0 = nblocks * t / nt, b1 = nblocks * (t + 1) / nt;
            int64_t r1 = b1 * ROWBLOCK < N ? b1 * ROWBLOCK : N;
            loss_grad_rows(X, y, b0 * ROWBLOCK, r1, D, K, W, b, invN, w->P + t * rowsz, w->G + (int64_t)t * K * D,
                           w->acc + t * (K + 1));
        }
    }
    double loss = 0, reg = 0;
    for (int t = 0; t < nt; t++)
        loss += w->acc[t * (K + 1) + K];
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (int t = 0; t < nt; t++)
            s += w->acc[t * (K + 1) + k];
        gb[k] = (float)s;
    }
    for (int64_t j = 0; j < (int64_t)K * D; j++) {
        float g = w->G[j];
        for (int t = 1; t < nt; t++)
            g += w->G[(int64_t)t * K * D + j];
        gW[j] = g + (float)wd * W[j];
        reg += (double)W[j] * W[j];
    }
    return loss / (double)N + 0.5 * wd * reg;
}

double kd_logreg_loss_grad(const float *X, const int32_t *y, int64_t N, int D, int K, const float *W,
                           const float *b, double wd, float *gW, float *gb, float *P)
{
    (void)P; /* the blocked evaluation keeps its own workspace */
    lgws w;
    if (lgws_init(&w, N, D, K, 1))
        return NAN;
    double f = loss_grad(X, y, N, D, K, W, b, wd, gW, gb, &w);
    lgws_free(&w);
    return f;
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
    float *W, *b, *gW, *gb;
    lgws ws;
} problem;

static double eval(problem *p, const double *th, double *g)
{
    int64_t nw = (int64_t)p->K * p->D;
    for (int64_t j = 0; j < nw; j++)
        p->W[j] = (float)th[j];
    for (int k = 0; k < p->K; k++)
        p->b[k] = (float)th[nw + k];
    double f = loss_grad(p->X, p->y, p->N, p->D, p->K, p->W, p->b, p->wd, p->gW, p->gb, &p->ws);
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
    problem p = {X, y, N, D, K, wd, m->W, m->b, NULL, NULL, {0, 0, 0, NULL, NULL, NULL}};
    p.gW = malloc(sizeof(float) * (size_t)K * D);
    p.gb = malloc(sizeof(float) * (size_t)K);
    double *th = calloc((size_t)n, sizeof(double)), *g = malloc(sizeof(double) * (size_t)n);
    double *d = malloc(sizeof(double) * (size_t)n), *th2 = malloc(sizeof(double) * (size_t)n);
    double *g2 = malloc(sizeof(double) * (size_t)n);
    double *S = malloc(sizeof(double) * (size_t)n * MEM), *Y = malloc(sizeof(double) * (size_t)n * MEM);
    double rho[MEM], alpha[MEM];
    int rc = -1;
    if (lgws_init(&p.ws, N, D, K, m->threads) || !p.gW || !p.gb || !th || !g || !d || !th2 || !g2 || !S || !Y) {
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
    free(p.gW), free(p.gb);
    lgws_free(&p.ws);
    free(th), free(g), free(d), free(th2), free(g2), free(S), free(Y);
    return rc;
}

int kd_logreg_fit_sgd(kd_logreg *m, const float *X, const int32_t *y, int64_t N, double wd, int epochs, int batch,
                      double lr, uint64_t seed)
{
    int D = m->D, K = m->K;
    int B = batch < N ? batch : (int)N;
    int64_t nw = (int64_t)K * D, steps = (int64_t)epochs * (N / B), t = 0;
    lgws ws = {0, 0, 0, NULL, NULL, NULL};
    float *Xb = malloc(sizeof(float) * (size_t)B * D), *gW = malloc(sizeof(float) * (size_t)nw);
    float *gb = malloc(sizeof(float) * (size_t)K), *vW = calloc((size_t)nw, sizeof(float));
    float *vb = calloc((size_t)K, sizeof(float));
    int32_t *yb = malloc(sizeof(int32_t) * (size_t)B);
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)N);
    int rc = -1;
    if (lgws_init(&ws, B, D, K, m->threads) || !Xb || !gW || !gb || !vW || !vb || !yb || !perm) {
        kd_err_set("logistic regression: out of memory");
        goto out;
    }
    memset(m->W, 0, sizeof(float) * (size_t)nw);
    memset(m->b, 0, sizeof(float) * (size_t)K);
    double f = 0;
    for (int e = 0; e < epochs; e++) {
        kd_rng r = kd_rng_make(seed, 0x6c70 /* "lp" */, (uint64_t)e);
        kd_rng_permute(&r, perm, N);
        double fsum = 0;
        int64_t nb = 0;
        /* the last partial batch is dropped: every step sees B rows */
        for (int64_t i0 = 0; i0 + B <= N; i0 += B, t++, nb++) {
            for (int i = 0; i < B; i++) {
                memcpy(Xb + (int64_t)i * D, X + perm[i0 + i] * D, sizeof(float) * (size_t)D);
                yb[i] = y[perm[i0 + i]];
            }
            double fb = loss_grad(Xb, yb, B, D, K, m->W, m->b, wd, gW, gb, &ws);
            if (!isfinite(fb)) {
                kd_err_set("logistic regression: the loss is not finite at epoch %d (learning rate %g too high?)",
                           e + 1, lr);
                goto out;
            }
            fsum += fb;
            /* cosine schedule from lr to 0 over all steps; heavy-ball momentum 0.9 */
            float a = (float)(lr * 0.5 * (1.0 + cos(M_PI * (double)t / (double)steps)));
            for (int64_t j = 0; j < nw; j++) {
                vW[j] = 0.9f * vW[j] + gW[j];
                m->W[j] -= a * vW[j];
            }
            for (int k = 0; k < K; k++) {
                vb[k] = 0.9f * vb[k] + gb[k];
                m->b[k] -= a * vb[k];
            }
        }
        f = nb ? fsum / (double)nb : 0;
    }
    m->iters = epochs;
    m->loss = f; /* mean minibatch loss of the last epoch */
    m->gnorm = NAN;
    rc = 0;
out:
    free(Xb), free(gW), free(gb), free(vW), free(vb), free(yb), free(perm);
    lgws_free(&ws);
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

int kd_standardize_fit(const float *X, int64_t N, int D, float *mean, float *std)
{
    /* row by row (the column walk strides D floats per step); two passes so
     * the variance does not suffer the cancellation of E[x^2] - E[x]^2 */
    double *s = calloc((size_t)D * 2, sizeof(double));
    if (!s) {
        kd_err_set("standardisation: out of memory");
        return -1;
    }
    double *s2 = s + D;
    for (int64_t i = 0; i < N; i++)
        for (int d = 0; d < D; d++)
            s[d] += X[i * D + d];
    for (int d = 0; d < D; d++)
        mean[d] = N ? (float)(s[d] / (double)N) : 0.0f;
    for (int64_t i = 0; i < N; i++)
        for (int d = 0; d < D; d++) {
            double v = (double)X[i * D + d] - mean[d];
            s2[d] += v * v;
        }
    for (int d = 0; d < D; d++) {
        double var = N ? s2[d] / (double)N : 0;
        std[d] = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    }
    free(s);
    return 0;
}

void kd_standardize_apply(float *X, int64_t N, int D, const float *mean, const float *std)
{
    for (int64_t i = 0; i < N; i++)
        for (int d = 0; d < D; d++)
            X[i * D + d] = (X[i * D + d] - mean[d]) / std[d];
}
