#include "kd_rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define GAMMA 0x9e3779b97f4a7c15ULL

kd_rng kd_rng_make(uint64_t seed, uint64_t a, uint64_t b)
{
    kd_rng r;
    r.key = mix64(mix64(mix64(seed + GAMMA) ^ (a + 2 * GAMMA)) ^ (b + 3 * GAMMA));
    r.ctr = 0;
    return r;
}

uint64_t kd_rng_u64(kd_rng *r)
{
    return mix64(r->key + (++r->ctr) * GAMMA);
}

float kd_rng_uniform(kd_rng *r)
{
    return (float)(kd_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

double kd_rng_uniform_d(kd_rng *r)
{
    return (double)(kd_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

float kd_rng_range(kd_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * kd_rng_uniform(r);
}

uint64_t kd_rng_below(kd_rng *r, uint64_t n)
{
    /* Rejection keeps it unbiased: discard the top partial bucket. */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = kd_rng_u64(r);
    while (x >= lim);
    return x % n;
}

float kd_rng_normal(kd_rng *r)
{
    double u1 = kd_rng_uniform_d(r), u2 = kd_rng_uniform_d(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void kd_rng_permute(kd_rng *r, int64_t *perm, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)kd_rng_below(r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
