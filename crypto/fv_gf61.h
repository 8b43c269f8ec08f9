/* fv_gf61.h - arithmetic in GF(p), p = 2^61 - 1: the field of Shamir sharing
 * (shamir.c) and of input validation (protocols/valid.c). Static inline, no state.
 *
 * p is a Mersenne prime, so a product (< 2^122, one 64x64->128 multiply) reduces with
 * two shift-and-add folds and one constant-time conditional subtraction: no division, no
 * table, no branch on a value. Inputs are canonical (< p); outputs are canonical.
 * Sums of up to 64 products (each < 2^122) fit an unsigned 128-bit accumulator, reduced
 * once by fv_gf_reduce128.
 */
#ifndef FV_GF61_H
#define FV_GF61_H

#include <stdint.h>

__extension__ typedef unsigned __int128 fv_u128;

#define FV_GF_P ((UINT64_C(1) << 61) - 1)

/* r in [0, 2p) -> r mod p, without a branch. */
static inline uint64_t fv_gf_csub(uint64_t r)
{
    uint64_t t = r - FV_GF_P;
    uint64_t keep_r = (uint64_t)0 - (t >> 63); /* all ones iff r < p */
    return (r & keep_r) | (t & ~keep_r);
}

static inline uint64_t fv_gf_add(uint64_t a, uint64_t b)
{
    return fv_gf_csub(a + b);
}

static inline uint64_t fv_gf_sub(uint64_t a, uint64_t b)
{
    return fv_gf_csub(a + FV_GF_P - b);
}

static inline uint64_t fv_gf_neg(uint64_t a)
{
    return fv_gf_csub(FV_GF_P - a);
}

static inline uint64_t fv_gf_mul(uint64_t a, uint64_t b)
{
    fv_u128 z = (fv_u128)a * b; /* < 2^122 */
    /* lo <= p and hi <= p; both equal to p would make a*b a multiple of p, impossible for
     * a, b in [1, p): so r < 2p. */
    uint64_t r = ((uint64_t)z & FV_GF_P) + (uint64_t)(z >> 61);
    return fv_gf_csub(r);
}

/* Any z < 2^128 -> z mod p. */
static inline uint64_t fv_gf_reduce128(fv_u128 z)
{
    z = (z & FV_GF_P) + (z >> 61); /* < 2^61 + 2^67 */
    z = (z & FV_GF_P) + (z >> 61); /* < 2^61 + 2^7 */
    return fv_gf_csub((uint64_t)z);
}

/* x^(p-2) = x^-1 for x != 0 (0 -> 0). The exponent 2^61 - 3 is public and fixed: bits 60..2
 * and bit 0 are set, bit 1 is clear, so the square-and-multiply sequence never depends on x. */
static inline uint64_t fv_gf_inv(uint64_t x)
{
    const uint64_t e = FV_GF_P - 2;
    uint64_t r = 1;
    for (int bit = 60; bit >= 0; bit--) {
        r = fv_gf_mul(r, r);
        if ((e >> bit) & 1)
            r = fv_gf_mul(r, x);
    }
    return r;
}

/* Any uint64 -> its residue. */
static inline uint64_t fv_gf_from_u64(uint64_t v)
{
    return fv_gf_csub((v & FV_GF_P) + (v >> 61));
}

/* Any signed 64-bit integer -> its residue. */
static inline uint64_t fv_gf_from_i64(int64_t v)
{
    return v >= 0 ? fv_gf_from_u64((uint64_t)v)
                  : fv_gf_neg(fv_gf_from_u64((uint64_t)0 - (uint64_t)v));
}

/* Centred representative in (-p/2, p/2). */
static inline int64_t fv_gf_to_i64(uint64_t a)
{
    return a > FV_GF_P / 2 ? -(int64_t)(FV_GF_P - a) : (int64_t)a;
}

#endif
