/* test_bn_sync — synchronised batch norm (kd_bn_forward_train_sync,
 * kd_bn_backward_sync): with one replica (the sum the identity) it is
 * bit-identical to whole-batch BN; split over R replicas (threads whose
 * sum() meets at a barrier, as MPI_Allreduce would) it gives the naive
 * reference's statistics, outputs and input gradients of the whole batch,
 * and the replicas' dgamma/dbeta add up to the whole batch's. */
#include <pthread.h>
#include <string.h>

#include "kd_layers.h"
#include "kd_rng.h"
#include "kd_test.h"

#define RMAX 4
static kd_rng rng;
static float *rnd(size_t n)
{
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)kd_rng_normal(&rng) * 2.0f + 0.5f;
    return p;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }
static int ident(double *v, size_t n) { return (void)v, (void)n, 0; }

/* R threads meet in sum(): each publishes v, waits, adds all in rank order */
static int R_;
static pthread_barrier_t bar;
static double *slot[RMAX], *tmp[RMAX];
static _Thread_local int me;
static int sum_threads(double *v, size_t n)
{
    slot[me] = v;
    pthread_barrier_wait(&bar);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int r = 0; r < R_; r++)
            s += slot[r][i];
        tmp[me][i] = s;
    }
    pthread_barrier_wait(&bar);
    memcpy(v, tmp[me], sizeof(double) * n);
    return 0;
}

typedef struct {
    int r, n, C, HW;
    const float *x, *ga, *be, *dy;
    float *y, *mean, *rstd, *rm, *rv, *dx, *dg, *db;
    double *work;
    int rc;
} replica;

static void *run(void *arg)
{
    replica *p = arg;
    me = p->r;
    p->rc = kd_bn_forward_train_sync(sum_threads, p->work, p->n, p->C, p->HW, p->x, p->ga, p->be, p->y, p->mean,
                                     p->rstd, p->rm, p->rv, 0.1f, 1e-5f) ||
            kd_bn_backward_sync(sum_threads, p->work, p->n, p->C, p->HW, p->x, p->mean, p->rstd, p->ga, p->dy, p->dx,
                                p->dg, p->db);
    return NULL;
}

static void test_split(int N, int C, int HW, int R)
{
    size_t n = (size_t)N * C * HW, per = n / R;
    float *x = rnd(n), *ga = rnd(C), *be = rnd(C), *dy = rnd(n), *yr = zeros(n), *y = zeros(n);
    float *mr = zeros(C), *rr = zeros(C), *rmr = zeros(C), *rvr = zeros(C), *dxr = zeros(n), *dgr = zeros(C),
          *dbr = zeros(C);
    for (int c = 0; c < C; c++)
        rvr[c] = 1;
    kd_bn_forward_train_ref(N, C, HW, 0, x, ga, be, yr, mr, rr, rmr, rvr, 0.1f, 1e-5f);
    kd_bn_backward_ref(N, C, HW, 0, x, mr, rr, ga, dy, dxr, dgr, dbr);
    replica p[RMAX];
    pthread_t th[RMAX];
    float *dx = zeros(n), *dg = zeros((size_t)R * C), *db = zeros((size_t)R * C);
    R_ = R;
    pthread_barrier_init(&bar, NULL, (unsigned)R);
    for (int r = 0; r < R; r++) {
        tmp[r] = malloc(sizeof(double) * (2 * (size_t)C + 1));
        p[r] = (replica){.r = r, .n = N / R, .C = C, .HW = HW, .x = x + r * per, .ga = ga, .be = be,
                         .dy = dy + r * per, .y = y + r * per, .mean = zeros(C), .rstd = zeros(C), .rm = zeros(C),
                         .rv = zeros(C), .dx = dx + r * per, .dg = dg + (size_t)r * C, .db = db + (size_t)r * C,
                         .work = malloc(sizeof(double) * (2 * (size_t)C + 1))};
        for (int c = 0; c < C; c++)
            p[r].rv[c] = 1;
        pthread_create(&th[r], NULL, run, &p[r]);
    }
    for (int r = 0; r < R; r++)
        pthread_join(th[r], NULL);
    pthread_barrier_destroy(&bar);
    /* the replicas' parameter gradients: summed (the trainer then averages) */
    for (int r = 1; r < R; r++)
        for (int c = 0; c < C; c++)
            dg[c] += dg[(size_t)r * C + c], db[c] += db[(size_t)r * C + c];
    double ey = kd_test_relerr(y, yr, (long)n, 1e-3), edx = kd_test_relerr(dx, dxr, (long)n, 1e-3),
           eg = kd_test_relerr(dg, dgr, C, 1e-3), eb = kd_test_relerr(db, dbr, C, 1e-3), em = 0, ev = 0, es = 0;
    int rc = 0, same = 1;
    for (int r = 0; r < R; r++) {
        rc |= p[r].rc;
        em = fmax(em, kd_test_relerr(p[r].mean, mr, C, 1e-3));
        es = fmax(es, kd_test_relerr(p[r].rstd, rr, C, 1e-3));
        ev = fmax(ev, kd_test_relerr(p[r].rv, rvr, C, 1e-3));
        same &= !memcmp(p[r].rv, p[0].rv, sizeof(float) * C) && !memcmp(p[r].rm, p[0].rm, sizeof(float) * C);
    }
    KD_CHECK(!rc && ey < 1e-5 && em < 1e-5 && es < 1e-5 && ev < 1e-5 && same,
             "sync bn N%d C%d HW%d over %d replicas vs whole-batch ref: y %.1e mean %.1e rstd %.1e run_var %.1e, "
             "running stats the same on every replica", N, C, HW, R, ey, em, es, ev);
    KD_CHECK(edx < 1e-4 && eg < 1e-4 && eb < 1e-5,
             "sync bn backward over %d replicas: dx %.1e, summed dgamma %.1e dbeta %.1e", R, edx, eg, eb);
    for (int r = 0; r < R; r++) {
        free(tmp[r]), free(p[r].work), free(p[r].mean), free(p[r].rstd), free(p[r].rm), free(p[r].rv);
    }
    free(x), free(ga), free(be), free(dy), free(yr), free(y), free(mr), free(rr), free(rmr), free(rvr), free(dxr);
    free(dgr), free(dbr), free(dx), free(dg), free(db);
}

/* One replica: the same bits as kd_bn_forward_train / kd_bn_backward with group 0. */
static void test_identity(int N, int C, int HW)
{
    size_t n = (size_t)N * C * HW;
    float *x = rnd(n), *ga = rnd(C), *be = rnd(C), *dy = rnd(n);
    float *y[2], *m[2], *r[2], *rm[2], *rv[2], *dx[2], *dg[2], *db[2];
    for (int k = 0; k < 2; k++) {
        y[k] = zeros(n), m[k] = zeros(C), r[k] = zeros(C), rm[k] = zeros(C), rv[k] = zeros(C);
        dx[k] = zeros(n), dg[k] = zeros(C), db[k] = zeros(C);
    }
    double *work = malloc(sizeof(double) * (2 * (size_t)C + 1));
    kd_bn_forward_train(N, C, HW, 0, x, ga, be, y[0], m[0], r[0], rm[0], rv[0], 0.1f, 1e-5f);
    kd_bn_backward(N, C, HW, 0, x, m[0], r[0], ga, dy, dx[0], dg[0], db[0]);
    int rc = kd_bn_forward_train_sync(ident, work, N, C, HW, x, ga, be, y[1], m[1], r[1], rm[1], rv[1], 0.1f, 1e-5f) ||
             kd_bn_backward_sync(ident, work, N, C, HW, x, m[1], r[1], ga, dy, dx[1], dg[1], db[1]);
    int same = !rc && !memcmp(y[0], y[1], sizeof(float) * n) && !memcmp(dx[0], dx[1], sizeof(float) * n) &&
               !memcmp(m[0], m[1], sizeof(float) * C) && !memcmp(r[0], r[1], sizeof(float) * C) &&
               !memcmp(rm[0], rm[1], sizeof(float) * C) && !memcmp(rv[0], rv[1], sizeof(float) * C) &&
               !memcmp(dg[0], dg[1], sizeof(float) * C) && !memcmp(db[0], db[1], sizeof(float) * C);
    KD_CHECK(same, "sync bn N%d C%d HW%d on one replica: bit-identical to whole-batch bn (y, dx, stats, dgamma, dbeta)",
             N, C, HW);
    for (int k = 0; k < 2; k++)
        free(y[k]), free(m[k]), free(r[k]), free(rm[k]), free(rv[k]), free(dx[k]), free(dg[k]), free(db[k]);
    free(x), free(ga), free(be), free(dy), free(work);
}

int main(void)
{
    rng = kd_rng_make(11, 0, 0);
    test_identity(8, 5, 49);
    test_identity(3, 16, 1);
    test_split(8, 5, 49, 2);
    test_split(8, 7, 16, 4);
    test_split(4, 32, 1, 2); /* BatchNorm1d */
    return KD_TEST_DONE();
}
