/* fv_rng.h - deterministic pseudo-random numbers for machine learning.
 *
 * xoshiro256** (Blackman & Vigna, 2018) seeded through splitmix64. NOT cryptographic:
 * it drives weight initialisation, shuffling and data splits so a training run is
 * reproducible from its seed. Anything secret (keys, masks, nonces) comes from libsodium
 * or OpenSSL in crypto/, never from here. The state is a plain value: copy it to fork a
 * stream. Results are identical on every platform for a given seed.
 */
#ifndef FV_RNG_H
#define FV_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct fv_rng {
    uint64_t s[4];
} fv_rng_t;

void fv_rng_seed(fv_rng_t *r, uint64_t seed);
uint64_t fv_rng_next(fv_rng_t *r);
/* uniform in [0, 1) with 53 random bits */
double fv_rng_uniform(fv_rng_t *r);
/* uniform integer in [0, n), unbiased (Lemire's method); n > 0 */
uint64_t fv_rng_below(fv_rng_t *r, uint64_t n);
/* standard normal (Box-Muller, both values used in turn is NOT done: one per call) */
double fv_rng_normal(fv_rng_t *r);
/* Fisher-Yates shuffle of idx[0..n) */
void fv_rng_shuffle(fv_rng_t *r, size_t *idx, size_t n);

#endif
