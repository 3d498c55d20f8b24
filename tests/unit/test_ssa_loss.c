/* test_ssa_loss — SSA's dense term (kd_ssa_loss, lib/kd_ssa_loss.h) against
 * PyTorch in float64 (tests/fixtures/ssa_loss.h5, written by
 * tests/gen/ssa_loss.py from METHODS.md): the loss, the pooled teacher
 * embeddings, dF and the aligner's gradients (1x1 conv, BN weight and bias)
 * within 1e-5 relative, over a teacher coarser than the student, a student
 * coarser than the teacher, in-batch and queue negatives and a short batch;
 * the gradients are added, so they start from a known value.  The loss-only
 * call gives the same number.  Independently of the fixture: dF and the
 * aligner's gradients against central differences, and the positions
 * really correspond (a teacher map shifted by one pixel, or transposed,
 * raises the loss of a student that matches it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kd_err.h"
#include "kd_h5.h"
#include "kd_ssa_loss.h"
#include "kd_test.h"
#include "kd_test_h5.h"

enum { B = 4, C = 8, D = 12, MAXHW = 16, MAXQ = 8, MIN_CASES = 5 };
static const char *fixture = "tests/fixtures/ssa_loss.h5";

static int dims4(kd_h5 *h, const char *g, const char *name, int64_t *d)
{
    char p[64];
    kd_dtype ft;
    int rank;
    snprintf(p, sizeof p, "%s/%s", g, name);
    return kd_h5_info(h, p, &ft, &rank, d) || rank != 4 ? -1 : 0;
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-300); }

static void fill(float *g, long n, float v)
{
    for (long i = 0; i < n; i++)
        g[i] = v;
}

static void unbias(float *g, long n)
{
    for (long i = 0; i < n; i++)
        g[i] -= 0.25f;
}

static void test_fixture(kd_h5 *h)
{
    int64_t ncase = 0;
    kd_h5_attr_get_i64(h, NULL, "cases", &ncase);
    KD_CHECK(ncase >= MIN_CASES, "%lld cases in the fixture (at least %d)", (long long)ncase, MIN_CASES);
    int done = 0, tres = 0, sres = 0, queued = 0, short_b = 0;
    double worst = 0;
    for (int c = 0; c < ncase; c++) {
        char g[32];
        snprintf(g, sizeof g, "case%02d", c);
        static float F[B * C * MAXHW], T[B * D * MAXHW], Q[MAXQ * D], dF[B * C * MAXHW], wdF[B * C * MAXHW];
        static float aw[D * C], ag[D], ab[D], daw[D * C], dag[D], dab[D], waw[D * C], wag[D], wab[D], wpool[B * D];
        double loss = 0, tau = 0, gamma = 0, weight = 0;
        int64_t k = 0, nq = -1, fd[KD_MAX_RANK], td[KD_MAX_RANK];
        int ok = !kd_h5_attr_get_f64(h, g, "loss", &loss) && !kd_h5_attr_get_f64(h, g, "tau", &tau) &&
                 !kd_h5_attr_get_f64(h, g, "gamma", &gamma) && !kd_h5_attr_get_f64(h, g, "weight", &weight) &&
                 !kd_h5_attr_get_i64(h, g, "k", &k) && !kd_h5_attr_get_i64(h, g, "Q", &nq) && !dims4(h, g, "F", fd) &&
                 !dims4(h, g, "T", td) && fd[0] >= 1 && fd[0] <= B && td[0] == fd[0] && fd[1] == C && td[1] == D &&
                 fd[2] * fd[3] <= MAXHW && td[2] * td[3] <= MAXHW && nq >= 0 && nq <= MAXQ;
        if (!KD_REQUIRE(ok, "%s: attributes and shapes", g))
            continue;
        int n = (int)fd[0], hs = (int)fd[2], ws = (int)fd[3], ht = (int)td[2], wt = (int)td[3];
        long nf = (long)n * C * hs * ws;
        ok = !rd(h, g, "F", nf, F) && !rd(h, g, "T", (long)n * D * ht * wt, T) && !rd(h, g, "aw", D * C, aw) &&
             !rd(h, g, "ag", D, ag) && !rd(h, g, "ab", D, ab) && !rd(h, g, "dF", nf, wdF) &&
             !rd(h, g, "daw", D * C, waw) && !rd(h, g, "dag", D, wag) && !rd(h, g, "dab", D, wab) &&
             !rd(h, g, "pool", (long)n * D, wpool) && (!nq || !rd(h, g, "queue", nq * D, Q));
        if (!KD_REQUIRE(ok, "%s: data", g))
            continue;
        kd_ssa_loss L;
        if (!KD_REQUIRE(!kd_ssa_loss_init(&L, B, C, hs, ws, D, ht, wt, (int)k, (float)gamma, (float)tau, (int)nq),
                        "%s: init: %s", g, kd_err_get()))
            continue;
        kd_aligner_p p = {.w = aw, .g = ag, .b = ab, .dw = daw, .dg = dag, .db = dab};
        fill(dF, nf, 0.25f), fill(daw, D * C, 0.25f), fill(dag, D, 0.25f), fill(dab, D, 0.25f);
        double l = kd_ssa_loss_step(&L, n, F, &p, T, Q, (float)weight, dF);
        unbias(dF, nf), unbias(daw, D * C), unbias(dag, D), unbias(dab, D);
        double e[6] = {rel(l, loss), kd_test_relerr(L.pool, wpool, (long)n * D, 1e-12),
                       kd_test_relerr(dF, wdF, nf, 1e-12), kd_test_relerr(daw, waw, D * C, 1e-12),
                       kd_test_relerr(dag, wag, D, 1e-12), kd_test_relerr(dab, wab, D, 1e-12)};
        double em = 0;
        for (int i = 0; i < 6; i++)
            em = fmax(em, e[i]);
        KD_CHECK(em <= 1e-5,
                 "%s: %d images, student %dx%d, teacher %dx%d, k %lld, Q %lld: loss %.8g vs %.8g (rel %.1e), pool %.1e, "
                 "dF %.1e, daw %.1e, dag %.1e, dab %.1e", g, n, hs, ws, ht, wt, (long long)k, (long long)nq, l, loss,
                 e[0], e[1], e[2], e[3], e[4], e[5]);
        worst = fmax(worst, em);
        double la = kd_ssa_loss_step(&L, n, F, &p, T, Q, (float)weight, NULL);
        KD_CHECK(la == l, "%s: the loss alone is the same number (%.10g vs %.10g)", g, la, l);
        kd_ssa_loss_free(&L);
        tres += ht * wt < L.h * L.w || ht * wt < hs * ws, sres += hs * ws < ht * wt, queued += nq > 0;
        short_b += n < B;
        done++;
    }
    KD_MIN_CASES(done, MIN_CASES, "ssa_loss fixture");
    KD_CHECK(tres >= 1 && sres >= 1 && queued >= 1 && short_b >= 1,
             "cases: %d teacher resized, %d student resized, %d with a queue, %d short batches; worst rel err %.2e",
             tres, sres, queued, short_b, worst);
}

static unsigned rs = 777;
static float rnd(void) { return (float)((rs = rs * 1103515245u + 12345u) % 2001) / 1000.0f - 1.0f; }

/* dF and the aligner's gradients against central differences on 3 of 4
 * images, the student hs x ws resized to the teacher's 4x4 or not.  Every
 * position is kept: where the top-k selection changes, the loss jumps
 * (by A_ij (s_j - s_j')), and a difference quotient across a jump is not a
 * derivative; the fixture checks the gradients with k < hw. */
static void test_fd(int hs, int ws, int k)
{
    enum { n = 3, ht = 4, wt = 4 };
    static float F[B * C * MAXHW], T[B * D * ht * wt], aw[D * C], ag[D], ab[D], dF[B * C * MAXHW];
    static float daw[D * C], dag[D], dab[D];
    for (size_t i = 0; i < sizeof F / sizeof *F; i++)
        F[i] = rnd();
    for (size_t i = 0; i < sizeof T / sizeof *T; i++)
        T[i] = rnd() + 0.5f;
    for (int i = 0; i < D * C; i++)
        aw[i] = 0.5f * rnd();
    for (int i = 0; i < D; i++)
        ag[i] = 1 + 0.2f * rnd(), ab[i] = 0.1f * rnd();
    kd_ssa_loss L;
    if (!KD_REQUIRE(!kd_ssa_loss_init(&L, B, C, hs, ws, D, ht, wt, k, 2.0f, 0.2f, 0), "fd init: %s", kd_err_get()))
        return;
    kd_aligner_p p = {.w = aw, .g = ag, .b = ab, .dw = daw, .dg = dag, .db = dab};
    memset(dF, 0, sizeof dF), memset(daw, 0, sizeof daw), memset(dag, 0, sizeof dag), memset(dab, 0, sizeof dab);
    kd_ssa_loss_step(&L, n, F, &p, T, NULL, 1, dF);
    struct {
        const char *name;
        float *x, *g;
        int m, step;
    } v[4] = {{"dF", F, dF, n * C * hs * ws, 5}, {"daw", aw, daw, D * C, 7}, {"dag", ag, dag, D, 1},
              {"dab", ab, dab, D, 1}};
    for (int t = 0; t < 4; t++) {
        double worst = 0;
        for (int i = 0; i < v[t].m; i += v[t].step) {
            float x = v[t].x[i], e = 1e-2f;
            v[t].x[i] = x + e;
            double a = kd_ssa_loss_step(&L, n, F, &p, T, NULL, 1, NULL);
            v[t].x[i] = x - e;
            double c = kd_ssa_loss_step(&L, n, F, &p, T, NULL, 1, NULL);
            v[t].x[i] = x;
            worst = fmax(worst, fabs((a - c) / (2 * (double)e) - v[t].g[i]) / (fabs(v[t].g[i]) + 1e-2));
        }
        KD_CHECK(worst < 2e-2, "%s vs central differences (%d of %d images, student %dx%d, k %d): worst rel err %.1e",
                 v[t].name, n, B, hs, ws, k, worst);
    }
    kd_ssa_loss_free(&L);
}

/* A real-ish map: smooth spatial structure (a few plane waves per channel
 * over 8x8) that differs from position to position.  The teacher is the
 * student's own aligned map (what a perfect student would produce), so the
 * positive pair at i is the same position; shifting the teacher by one
 * pixel, or transposing it, must raise the loss. */
static void test_positions(void)
{
    enum { n = 4, Cm = 16, h = 8, w = 8, hw = h * w };
    static float F[n * Cm * hw], T[n * Cm * hw], S[n * Cm * hw], aw[Cm * Cm], ag[Cm], ab[Cm];
    for (int b = 0; b < n; b++)
        for (int c = 0; c < Cm; c++) {
            float fy = 0.6f * rnd(), fx = 0.6f * rnd(), ph = 3 * rnd(), off = 0.3f * rnd();
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    F[((size_t)b * Cm + c) * hw + y * w + x] = off + sinf(fy * 3 * y + fx * 3 * x + ph);
        }
    for (int i = 0; i < Cm * Cm; i++)
        aw[i] = (i / Cm == i % Cm) + 0.1f * rnd();
    for (int i = 0; i < Cm; i++)
        ag[i] = 1, ab[i] = 0;
    kd_ssa_loss L;
    if (!KD_REQUIRE(!kd_ssa_loss_init(&L, n, Cm, h, w, Cm, h, w, 8, 2.0f, 0.2f, 0), "positions init: %s",
                    kd_err_get()))
        return;
    kd_aligner_p p = {.w = aw, .g = ag, .b = ab};
    kd_ssa_loss_step(&L, n, F, &p, F, NULL, 1, NULL);
    memcpy(T, L.al.y, sizeof T);
    double base = kd_ssa_loss_step(&L, n, F, &p, T, NULL, 1, NULL);
    const char *what[3] = {"shifted right by one pixel", "shifted down by one pixel", "transposed"};
    for (int m = 0; m < 3; m++) {
        for (int pl = 0; pl < n * Cm; pl++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    int sy = m == 1 ? (y ? y - 1 : 0) : m == 2 ? x : y, sx = m == 0 ? (x ? x - 1 : 0) : m == 2 ? y : x;
                    S[(size_t)pl * hw + y * w + x] = T[(size_t)pl * hw + sy * w + sx];
                }
        double l = kd_ssa_loss_step(&L, n, F, &p, S, NULL, 1, NULL);
        KD_CHECK(l > base + 1e-3, "teacher %s: loss %.6f > %.6f with the positions matched", what[m], l, base);
    }
    kd_ssa_loss_free(&L);
}

int main(void)
{
    test_fd(2, 3, 16);
    test_fd(4, 4, 16);
    test_positions();
    kd_h5 h;
    if (kd_h5_open(&h, fixture, "fixture")) {
        KD_CHECK(0, "open %s: %s (tests/gen/ssa_loss.py writes it)", fixture, kd_err_get());
        return KD_TEST_DONE();
    }
    test_fixture(&h);
    kd_h5_close(&h);
    return KD_TEST_DONE();
}
