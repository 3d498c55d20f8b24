/* Test inputs shared by the layer tests: standard-normal arrays from a
 * caller's generator and zeroed gradient buffers (never a NULL for n = 0,
 * so a zero-sized case still exercises the kernel's bounds). */
#ifndef KD_TEST_DATA_H
#define KD_TEST_DATA_H

#include <stdlib.h>

#include "kd_rng.h"

static inline float *kd_test_normal(kd_rng *r, size_t n)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; v && i < n; i++)
        v[i] = kd_rng_normal(r);
    return v;
}

static inline float *kd_test_zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

#endif
