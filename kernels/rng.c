/* rng.c - xoshiro256** + splitmix64; see fv_rng.h for why this is not crypto. */
#include "fv_rng.h"

#include <math.h>

__extension__ typedef unsigned __int128 fv__u128;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void fv_rng_seed(fv_rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t fv_rng_next(fv_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double fv_rng_uniform(fv_rng_t *r)
{
    return (double)(fv_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t fv_rng_below(fv_rng_t *r, uint64_t n)
{
    /* Lemire, "Fast Random Integer Generation in an Interval" (2019). */
    fv__u128 m = (fv__u128)fv_rng_next(r) * n;
    uint64_t l = (uint64_t)m;
    if (l < n) {
        uint64_t t = -n % n;
        while (l < t) {
            m = (fv__u128)fv_rng_next(r) * n;
            l = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double fv_rng_normal(fv_rng_t *r)
{
    double u1 = fv_rng_uniform(r);
    double u2 = fv_rng_uniform(r);
    if (u1 < 0x1.0p-60)
        u1 = 0x1.0p-60;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void fv_rng_shuffle(fv_rng_t *r, size_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)fv_rng_below(r, i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
