/* kd_loss_math — the mathematics the losses share, free of any module's
 * state so that tests can check it against PyTorch alone. */
#include "kd_loss.h"

#include <math.h>

#include "kd_gemm.h"

double kd_softmax_ce(const float *logits, const int32_t *y, int n, int K, float weight, float *d)
{
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * K;
        float mx = z[0];
        for (int k = 1; k < K; k++)
            mx = z[k] > mx ? z[k] : mx;
        double s = 0;
        for (int k = 0; k < K; k++)
            s += exp((double)z[k] - mx);
        loss += log(s) + mx - z[y[i]];
        if (d)
            for (int k = 0; k < K; k++)
                d[(size_t)i * K + k] += weight / n * (float)(exp((double)z[k] - mx) / s - (k == y[i]));
    }
    return loss / n;
}

void kd_l2norm_forward(const float *x, float *y, float *norm, int n, int d)
{
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++)
            s += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
        float nr = (float)sqrt(s);
        nr = nr > 1e-12f ? nr : 1e-12f;
        norm[i] = nr;
        for (int j = 0; j < d; j++)
            y[(size_t)i * d + j] = x[(size_t)i * d + j] / nr;
    }
}

void kd_l2norm_backward(const float *y, const float *norm, const float *dy, float *dx, int n, int d)
{
    for (int i = 0; i < n; i++) {
        double yd = 0;
        for (int j = 0; j < d; j++)
            yd += (double)y[(size_t)i * d + j] * dy[(size_t)i * d + j];
        for (int j = 0; j < d; j++)
            dx[(size_t)i * d + j] += (dy[(size_t)i * d + j] - y[(size_t)i * d + j] * (float)yd) / norm[i];
    }
}

/* The body of moco_compute, free of the module's state so that it can be
 * checked against PyTorch alone (tests/unit/test_train.c). */
double kd_infonce_queue(const float *q_raw, const float *k, const float *queue, int n, int E, int K, float tau,
                        float weight, float *dq_raw, float *qn, float *qnorm, float *lg, float *dqn)
{
    int L = 1 + K;
    float inv_t = 1.0f / tau;
    kd_l2norm_forward(q_raw, qn, qnorm, n, E);
    /* logits: [q.k, q.queue] / tau */
    for (int i = 0; i < n; i++) {
        double dot = 0;
        for (int j = 0; j < E; j++)
            dot += (double)qn[(size_t)i * E + j] * k[(size_t)i * E + j];
        lg[(size_t)i * L] = (float)dot * inv_t;
    }
    kd_gemm(0, 1, n, K, E, inv_t, qn, E, queue, E, 0.0f, lg + 1, L);
    /* CE with target 0; gradient into the logits buffer itself */
    double l = 0;
    for (int i = 0; i < n; i++) {
        float *z = lg + (size_t)i * L, mx = z[0];
        for (int c = 1; c < L; c++)
            mx = z[c] > mx ? z[c] : mx;
        double sum = 0;
        for (int c = 0; c < L; c++)
            sum += exp((double)z[c] - mx);
        l += log(sum) + mx - z[0];
        for (int c = 0; c < L; c++)
            z[c] = (float)(exp((double)z[c] - mx) / sum) - (c == 0);
    }
    if (dq_raw) {
        /* dq = (w/n/tau) (dz0 k + dz_rest . queue); keys get no gradient */
        float sc = weight / n * inv_t;
        kd_gemm(0, 0, n, E, K, sc, lg + 1, L, queue, E, 0.0f, dqn, E);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < E; j++)
                dqn[(size_t)i * E + j] += sc * lg[(size_t)i * L] * k[(size_t)i * E + j];
        kd_l2norm_backward(qn, qnorm, dqn, dq_raw, n, E);
    }
    return l / n;
}


/* DisCo's distillation term on one view: q = n(emb_raw), the teacher's t
 * already normalised (teacher-extract does it; renormalising here would
 * hide a stream that is not).  The squared distance is accumulated in
 * double: for close embeddings it is a small difference of O(1) terms. */
double kd_disco_term(const float *emb_raw, const float *t, int n, int E, float weight, float *d_emb, float *qn,
                     float *qnorm, float *dqn)
{
    kd_l2norm_forward(emb_raw, qn, qnorm, n, E);
    /* q - t in double from the raw embedding: a float q carries 6e-8 of
     * rounding, which is all of a distance once the student is near */
    double l = 0;
    float sc = 2.0f * weight / n; /* d/dq of mean_b |q_b - t_b|^2 is 2 (q - t) / n */
    for (int i = 0; i < n; i++) {
        double nr2 = 0;
        for (int j = 0; j < E; j++)
            nr2 += (double)emb_raw[(size_t)i * E + j] * emb_raw[(size_t)i * E + j];
        double nr = sqrt(nr2) > 1e-12 ? sqrt(nr2) : 1e-12;
        for (int j = 0; j < E; j++) {
            size_t k = (size_t)i * E + j;
            double d = emb_raw[k] / nr - t[k];
            l += d * d;
            dqn[k] = (float)(sc * d);
        }
    }
    if (d_emb)
        kd_l2norm_backward(qn, qnorm, dqn, d_emb, n, E);
    return l / n;
}

/* Row i of [a.t_i, a.Q] in double accumulation: the teacher's logits are
 * divided by tau_T = 1e-4, so a float dot product's rounding (~1e-7) would
 * move them by ~1e-3 and p_T visibly whenever two entries nearly tie. */
static void seed_logits_f64(const float *a, const float *t, const float *queue, int E, int K, double inv_tau,
                            double *z)
{
    double d = 0;
    for (int j = 0; j < E; j++)
        d += (double)a[j] * t[j];
    z[0] = d * inv_tau;
    for (int k = 0; k < K; k++) {
        const float *q = queue + (size_t)k * E;
        d = 0;
        for (int j = 0; j < E; j++)
            d += (double)a[j] * q[j];
        z[1 + k] = d * inv_tau;
    }
}

/* softmax in place, max subtracted: at tau_T = 1e-4 the logits reach 1e4. */
static void softmax_f64(double *z, int L)
{
    double mx = z[0], s = 0;
    for (int c = 1; c < L; c++)
        mx = z[c] > mx ? z[c] : mx;
    for (int c = 0; c < L; c++)
        s += (z[c] = exp(z[c] - mx));
    for (int c = 0; c < L; c++)
        z[c] /= s;
}

/* SEED: p_T = softmax([t.t, t.Q]/tau_t), p_S = softmax([s.t, s.Q]/tau_s),
 * s = n(s_raw), L = mean_b -sum_c p_T log p_S.  Both sides in double
 * accumulation (the student's logits are only /0.2, but the 1e-5 agreement
 * with PyTorch in float64 is the contract, and the cost is a B x K x E
 * product, small beside the student's forward). */
double kd_seed_loss(const float *s_raw, const float *t, const float *queue, int n, int E, int K, float tau_s,
                    float tau_t, float weight, float *d_s_raw, float *sn, float *snorm, double *pt, double *ps,
                    float *dsn, double *acc)
{
    int L = 1 + K;
    kd_l2norm_forward(s_raw, sn, snorm, n, E);
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *ti = t + (size_t)i * E, *si = sn + (size_t)i * E;
        double *zt = pt + (size_t)i * L, *zs = ps + (size_t)i * L;
        seed_logits_f64(ti, ti, queue, E, K, 1.0 / tau_t, zt);
        softmax_f64(zt, L);
        seed_logits_f64(si, ti, queue, E, K, 1.0 / tau_s, zs);
        double mx = zs[0], sum = 0;
        for (int c = 1; c < L; c++)
            mx = zs[c] > mx ? zs[c] : mx;
        for (int c = 0; c < L; c++)
            sum += exp(zs[c] - mx);
        double lse = mx + log(sum), li = 0;
        for (int c = 0; c < L; c++) {
            if (zt[c] > 0) /* 0 * log p_S is 0, also where p_S underflows */
                li -= zt[c] * (zs[c] - lse);
            zs[c] = exp(zs[c] - lse) - zt[c]; /* dL_i/dz_S, since sum p_T = 1 */
        }
        loss += li;
    }
    if (d_s_raw) {
        /* ds = (w/n/tau_s) (dz_0 t + dz_rest . Q); the teacher gets none */
        double sc = (double)weight / n / tau_s;
        for (int i = 0; i < n; i++) {
            const double *dz = ps + (size_t)i * L;
            const float *ti = t + (size_t)i * E;
            for (int j = 0; j < E; j++)
                acc[j] = dz[0] * ti[j];
            for (int k = 0; k < K; k++) { /* row by row: the queue is read contiguously */
                const float *q = queue + (size_t)k * E;
                for (int j = 0; j < E; j++)
                    acc[j] += dz[1 + k] * q[j];
            }
            for (int j = 0; j < E; j++)
                dsn[(size_t)i * E + j] = (float)(sc * acc[j]);
        }
        kd_l2norm_backward(sn, snorm, dsn, d_s_raw, n, E);
    }
    return loss / n;
}

/* log softmax(z/T - 1000 [k == mask]) of one row in double; mask -1: none.
 * mdistiller's non-target distribution subtracts 1000 from the target
 * class's tempered logit rather than dropping it; doing the same keeps its
 * numbers (in double e^-1000 is 0, so the class then has probability 0
 * unless the others trail it by ~1000). */
static void log_softmax_t(const float *z, int K, double inv_t, int mask, double *lp)
{
    double mx = -INFINITY, s = 0;
    for (int k = 0; k < K; k++) {
        lp[k] = z[k] * inv_t - (k == mask ? 1000.0 : 0.0);
        mx = lp[k] > mx ? lp[k] : mx;
    }
    for (int k = 0; k < K; k++)
        s += exp(lp[k] - mx);
    double lse = mx + log(s);
    for (int k = 0; k < K; k++)
        lp[k] -= lse;
}

/* KL(p_t || p_s) of one row from the two log-distributions, 0 log 0 = 0
 * as PyTorch's kl_div; g (may be NULL) += sc * dKL/du_s = sc * (p_s - p_t),
 * u_s the tempered student logits. */
static double kl_row(const double *lt, const double *ls, int K, double sc, float *g)
{
    double kl = 0;
    for (int k = 0; k < K; k++) {
        double pt = exp(lt[k]);
        if (pt > 0)
            kl += pt * (lt[k] - ls[k]);
        if (g)
            g[k] += (float)(sc * (exp(ls[k]) - pt));
    }
    return kl;
}

double kd_kd_loss(const float *zs, const float *zt, int n, int K, float T, float weight, float *d, double *work)
{
    double *lt = work, *ls = work + K, inv_t = 1.0 / T, l = 0;
    /* d/dz = (T^2 / n) (1/T) dKL/du */
    double sc = (double)weight * T / n;
    for (int i = 0; i < n; i++) {
        log_softmax_t(zt + (size_t)i * K, K, inv_t, -1, lt);
        log_softmax_t(zs + (size_t)i * K, K, inv_t, -1, ls);
        l += kl_row(lt, ls, K, sc, d ? d + (size_t)i * K : NULL);
    }
    return (double)T * T * l / n;
}

/* log sum_{k != y} exp(lp[k]): log(1 - p_y) without the cancellation of
 * 1 - p_y, which a confident row (p_y = 1 - 1e-9) would lose. */
static double log_rest(const double *lp, int K, int y)
{
    double mx = -INFINITY, s = 0;
    for (int k = 0; k < K; k++)
        if (k != y && lp[k] > mx)
            mx = lp[k];
    for (int k = 0; k < K; k++)
        if (k != y)
            s += exp(lp[k] - mx);
    return mx + log(s);
}

double kd_dkd_loss(const float *zs, const float *zt, const int32_t *y, int n, int K, float T, float alpha,
                   float beta, float weight, float *d, double *work)
{
    double *lt = work, *ls = work + K, inv_t = 1.0 / T, tckd = 0, nckd = 0;
    double sc = (double)weight * T / n;
    for (int i = 0; i < n; i++) {
        const float *zsi = zs + (size_t)i * K, *zti = zt + (size_t)i * K;
        float *g = d ? d + (size_t)i * K : NULL;
        int c = y[i];
        /* TCKD: b = [p_y, 1 - p_y]; dTCKD/du_y = b_s,y - b_t,y and, for
         * k != y, dTCKD/du_k = (p_s,k / b_s,o) (b_s,o - b_t,o) */
        log_softmax_t(zti, K, inv_t, -1, lt);
        log_softmax_t(zsi, K, inv_t, -1, ls);
        double lty = lt[c], lto = log_rest(lt, K, c), lsy = ls[c], lso = log_rest(ls, K, c);
        double bty = exp(lty), bto = exp(lto), bsy = exp(lsy), bso = exp(lso);
        if (bty > 0)
            tckd += bty * (lty - lsy);
        if (bto > 0)
            tckd += bto * (lto - lso);
        if (g)
            for (int k = 0; k < K; k++)
                g[k] += (float)(sc * alpha * (k == c ? bsy - bty : exp(ls[k] - lso) * (bso - bto)));
        /* NCKD over the masked distributions */
        log_softmax_t(zti, K, inv_t, c, lt);
        log_softmax_t(zsi, K, inv_t, c, ls);
        nckd += kl_row(lt, ls, K, sc * beta, g);
    }
    return (double)T * T * (alpha * tckd + beta * nckd) / n;
}

double kd_dkd_warmup(long epoch, int warmup)
{
    double f = (double)(epoch + 1) / warmup;
    return f < 1 ? f : 1;
}
