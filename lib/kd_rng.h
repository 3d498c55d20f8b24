/* kd_rng — a counter-based random number generator.
 *
 * A stream is a key derived from (seed, a, b) — e.g. (seed, epoch, image
 * index) — and a counter.  Draws depend only on the key and the counter, so
 * results do not depend on the number of threads, the batch boundaries or the
 * order in which images are processed.  The mixing function is SplitMix64's
 * finaliser applied to key + counter * golden gamma; it passes BigCrush as a
 * counter-mode generator and is far cheaper than Philox. */
#ifndef KD_RNG_H
#define KD_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t key;
    uint64_t ctr;
} kd_rng;

kd_rng kd_rng_make(uint64_t seed, uint64_t a, uint64_t b);
uint64_t kd_rng_u64(kd_rng *r);
/* Uniform in [0, 1) with 24 bits (float) or 53 bits (double). */
float kd_rng_uniform(kd_rng *r);
double kd_rng_uniform_d(kd_rng *r);
/* Uniform in [lo, hi). */
float kd_rng_range(kd_rng *r, float lo, float hi);
/* Uniform integer in [0, n), unbiased; n >= 1. */
uint64_t kd_rng_below(kd_rng *r, uint64_t n);
/* Standard normal (Box-Muller, both draws from this stream). */
float kd_rng_normal(kd_rng *r);
/* A uniformly random permutation of 0..n-1 (Fisher-Yates). */
void kd_rng_permute(kd_rng *r, int64_t *perm, int64_t n);

#endif
