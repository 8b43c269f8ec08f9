/* fixed.c - fixed-point quantization, arithmetic mod 2^32 and the fused mask kernel.
 *
 * Layout follows vec.c: each kernel has a fast version written for gcc's auto-vectorizer
 * at -O2 (restrict pointers, selects instead of branches, a main loop over a multiple of
 * FV_FIXED_BLOCK elements plus a scalar tail, because gcc 12's "very-cheap" cost model
 * only vectorizes loops whose trip count is a known multiple of the vector width) and a
 * scalar reference *_ref marked FV_SCALAR (kernels-int.h), written the obvious way. The
 * tests (tests/unit/kernels/test_fixed.c) require the two to agree bit for bit.
 *
 * Quantization, q = floor(v) + (u < frac(v)) with v = (clip(x, -c, c) / (2c) + 0.5) * M,
 * M = 2^bits - 1 (the header's (clip(x) + c) / (2c) * M, in an order that is exact at
 * the ends):
 *   - Computed in double. v needs up to 31 integer bits plus the fractional part that
 *     the stochastic rounding compares against u; float has 24 bits in all, so at
 *     bits > 24 it could not even hold every integer step, and at bits = 16 it would keep
 *     only 8 fraction bits, a visible bias. Double keeps >= 22 fraction bits at bits = 31.
 *   - v lies in [0, M] for every input and is exact at the ends: c / (2c) is exactly 0.5
 *     (a correctly rounded quotient), so x = c gives 1 * M and x = -c gives 0 * M; every
 *     step is monotonic, so |x| < c stays inside. Multiplying by a precomputed M / (2c)
 *     instead would save the division but can land a hair above or below M at x = c.
 *   - floor(v) + 1 is only taken when frac(v) > 0, i.e. floor(v) < M, so q is in [0, M]
 *     for any u, even one outside [0, 1) or NaN (a NaN u never rounds up). frac(v) is
 *     exact (v - floor(v) is representable), and u is a float, exactly converted.
 *   - E[q] = v for u uniform in [0, 1): unbiased up to the rounding of v (relative 2^-52)
 *     and the granularity of the caller's u.
 *   - x = +-Inf clips to +-c. NaN makes the call return FV_ENUMERIC: the fast version
 *     scans everything in one pass (NaN quantizes as 0 meanwhile, with no undefined
 *     float-to-int conversion) and reports at the end; the reference stops at the first
 *     NaN. Either way q must be ignored on error, as fv_fixed.h says.
 *   - The floor is (int32_t)v, exact truncation since 0 <= v <= 2^31 - 1; gcc vectorizes
 *     it (cvttpd2dq) where a call to floor() would not vectorize without SSE4.1. Both
 *     loops of quant_strip vectorize at -O2 (checked with -fopt-info-vec-optimized, gcc
 *     12, x86-64 baseline); the comments there say what shape they need.
 *   - No FMA can change the result: v has several uses (clip, conversion, subtraction),
 *     so gcc never fuses its product into a later addition under -ffp-contract=fast.
 *   - q must not overlap x or u (the fast version uses restrict).
 *
 * Dequantization, x = (float)(q * (2c / M) - n_summands * c), is computed in double and
 * rounded once: q is a sum of up to 2^32 - 1, far past float's 24 bits, and the offset
 * cancels most of it. Same expression in both versions; on an FMA target gcc contracts it
 * the same way in both (vector and scalar FMA round identically).
 *
 * fv_fixed_dequantize_centered (distributed DP's noisy sums) is scalar only: one call per
 * round on the coordinator, nothing to vectorize for.
 *
 * Modular arithmetic: uint32_t wrap-around, which C defines. For fv_mod_add/sub, x and
 * acc must not overlap (restrict); the references tolerate any aliasing.
 *
 * fv_mask_accumulate draws the stream in blocks of FV_MASK_BLOCK_WORDS into a 16 KiB stack
 * buffer and adds (sign +1) or subtracts (sign -1) each block into acc before drawing the
 * next, so the mask is never materialized at full length and the block is still in L1
 * when it is added. fn is called ceil(n / FV_MASK_BLOCK_WORDS) times, in order, each time
 * for FV_MASK_BLOCK_WORDS words except possibly the last (fewer); never for n == 0. The
 * reference makes exactly the same calls, so any keystream gives both the same result.
 * The buffer holds mask material (secret): it is wiped before returning, on success and on
 * error. On error (fn returned nonzero) the blocks before the failing one have been
 * applied and the rest of acc is untouched: acc is then partially masked and the caller
 * must discard it.
 *
 * No state, no allocation; every function is reentrant. 16 KiB of stack per
 * fv_mask_accumulate call.
 */
#include "fv_fixed.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels-int.h"

/* Main-loop granularity of the fast kernels: 16 uint32 or floats is one AVX-512 vector. */
#define FV_FIXED_BLOCK ((size_t)16)

static inline size_t fixed_main(size_t n)
{
    return n & ~(FV_FIXED_BLOCK - 1);
}

/* ---- range --------------------------------------------------------------------------- */

int fv_fixed_check_range(uint32_t bits, uint64_t n_summands)
{
    if (bits < 1 || bits > 31 || n_summands < 1)
        return FV_EINVAL;
    uint64_t m = (UINT64_C(1) << bits) - 1;
    /* n * m <= 2^32 - 1, written as a division so the product cannot overflow uint64 */
    return n_summands <= UINT32_MAX / m ? 0 : FV_EOVERFLOW;
}

/* ---- quantize ------------------------------------------------------------------------ */

static int quant_check(float c, uint32_t bits)
{
    if (!(c > 0.0f) || isinf(c) || bits < 1 || bits > 31)
        return FV_EINVAL;
    return 0;
}

/* The fast quantizer runs in strips of FV_QUANT_STRIP elements through two loops with
 * the scaled values in a stack buffer between them. One fused loop does not vectorize:
 * gcc's PRE specialises the arithmetic after a clip for the clipped branches (the clip
 * constants make e.g. (int)M or (double)c already known), which turns later operations
 * into conditional ones, and a conditional FP operation "could trap" under
 * -ftrapping-math, which stops if-conversion. With the clip as the last operation before
 * a store (as in fv_vec_relu) there is nothing after it to specialise. 2 KiB of doubles
 * stays in L1 between the two loops. */
#define FV_QUANT_STRIP ((size_t)256)

/* NaN test on the bits, as fv_vec_all_finite does: robust to -ffinite-math-only, and
 * branch-free so the loop still vectorizes. */
static inline uint32_t is_nan_bits(float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return (uint32_t)((b & 0x7fffffffu) > 0x7f800000u);
}

/* v = clip((x / 2c + 0.5) * M, 0, M). x / (2c) + 0.5 is exactly 1 at x = c and 0 at
 * x = -c, and monotonic, so for |x| < c this is the reference's clip-then-scale value bit
 * for bit, and for |x| >= c the clip gives the same exact 0 or M. NaN fails v >= 0 and
 * becomes 0 (no undefined conversion later); +-Inf becomes M or 0. x / (2c) cannot
 * overflow a double (at most FLT_MAX / (2 FLT_TRUE_MIN), about 1.2e83). */
static inline double scale_one(float xv, double c2, double m)
{
    double v = ((double)xv / c2 + 0.5) * m;
    v = v >= 0.0 ? v : 0.0;
    return v <= m ? v : m;
}

/* q = floor(v) + (frac(v) > 0 && u < frac(v)), v in [0, M]. Both comparisons are
 * evaluated (&, not &&), the select is between constants and the addition unconditional,
 * for if-conversion; the rounding stays in double because a double compare yielding a
 * uint32 has no vector type on SSE2. fl + 1.0 <= M, exact. */
static inline uint32_t round_one(double v, float uv)
{
    double fl = (double)(int32_t)v; /* floor, since 0 <= v < 2^31 */
    double frac = v - fl;           /* exact, [0, 1) */
    double r = fl + (((frac > 0.0) & ((double)uv < frac)) ? 1.0 : 0.0);
    return (uint32_t)(int32_t)r;
}

static uint32_t quant_strip(size_t n, const float *restrict x, const float *restrict u, double c2,
                            double m, double *restrict v, uint32_t *restrict q)
{
    uint32_t bad = 0;
    size_t nv = fixed_main(n), i;
    for (i = 0; i < nv; i++) {
        v[i] = scale_one(x[i], c2, m);
        bad |= is_nan_bits(x[i]);
    }
    for (; i < n; i++) {
        v[i] = scale_one(x[i], c2, m);
        bad |= is_nan_bits(x[i]);
    }
    for (i = 0; i < nv; i++)
        q[i] = round_one(v[i], u[i]);
    for (; i < n; i++)
        q[i] = round_one(v[i], u[i]);
    return bad;
}

int fv_fixed_quantize(size_t n, const float *x, const float *u, float c, uint32_t bits, uint32_t *q)
{
    int err = quant_check(c, bits);
    if (err != 0)
        return err;
    const double c2 = 2.0 * (double)c, m = ldexp(1.0, (int)bits) - 1.0;
    double v[FV_QUANT_STRIP];
    uint32_t bad = 0;
    for (size_t i0 = 0; i0 < n; i0 += FV_QUANT_STRIP) {
        size_t w = n - i0 < FV_QUANT_STRIP ? n - i0 : FV_QUANT_STRIP;
        bad |= quant_strip(w, x + i0, u + i0, c2, m, v, q + i0);
    }
    return bad ? FV_ENUMERIC : 0;
}

FV_SCALAR int fv_fixed_quantize_ref(size_t n, const float *x, const float *u, float c,
                                    uint32_t bits, uint32_t *q)
{
    int err = quant_check(c, bits);
    if (err != 0)
        return err;
    const double dc = (double)c, m = ldexp(1.0, (int)bits) - 1.0;
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i]))
            return FV_ENUMERIC;
        double xc = (double)x[i];
        if (xc < -dc)
            xc = -dc;
        else if (xc > dc)
            xc = dc;
        double v = (xc / (2.0 * dc) + 0.5) * m;
        double fl = floor(v);
        double frac = v - fl;
        uint32_t r = (uint32_t)fl;
        if (frac > 0.0 && (double)u[i] < frac)
            r++;
        q[i] = r;
    }
    return 0;
}

/* ---- dequantize ---------------------------------------------------------------------- */

/* bits and c are the caller's configuration, already validated by quantize; outside
 * bits 1..31 or c > 0 the output is meaningless but the arithmetic stays defined. */
void fv_fixed_dequantize(size_t n, const uint32_t *restrict q, float c, uint32_t bits,
                         uint64_t n_summands, float *restrict x)
{
    const double step = 2.0 * (double)c / (ldexp(1.0, (int)(bits & 63)) - 1.0);
    const double off = (double)n_summands * (double)c;
    size_t nv = fixed_main(n), i;
    for (i = 0; i < nv; i++)
        x[i] = (float)((double)q[i] * step - off);
    for (; i < n; i++)
        x[i] = (float)((double)q[i] * step - off);
}

FV_SCALAR void fv_fixed_dequantize_ref(size_t n, const uint32_t *q, float c, uint32_t bits,
                                       uint64_t n_summands, float *x)
{
    const double step = 2.0 * (double)c / (ldexp(1.0, (int)(bits & 63)) - 1.0);
    const double off = (double)n_summands * (double)c;
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)q[i] * step - off);
}

/* The header says what it reads; v = h + (int32_t)(q - h) in int64 (h < 2^32, the
 * difference mod 2^32 as two's complement: conversion of an out-of-range uint32 to
 * int32_t is implementation-defined in C, and gcc/clang define it as modulo 2^32). v is
 * exact in double (|v| < 2^33), and the same expression as fv_fixed_dequantize follows,
 * so in-range sums give the same bits. */
void fv_fixed_dequantize_centered(size_t n, const uint32_t *q, float c, uint32_t bits,
                                  uint64_t n_summands, float *x)
{
    const double step = 2.0 * (double)c / (ldexp(1.0, (int)(bits & 63)) - 1.0);
    const double off = (double)n_summands * (double)c;
    const uint64_t m = (UINT64_C(1) << (bits & 31)) - 1;
    const uint32_t h = (uint32_t)((n_summands * m / 2) & UINT32_MAX);
    for (size_t i = 0; i < n; i++) {
        int64_t v = (int64_t)h + (int64_t)(int32_t)(q[i] - h);
        x[i] = (float)((double)v * step - off);
    }
}

/* ---- mod 2^32 add / sub -------------------------------------------------------------- */

void fv_mod_add(size_t n, const uint32_t *restrict x, uint32_t *restrict acc)
{
    size_t nv = fixed_main(n), i;
    for (i = 0; i < nv; i++)
        acc[i] += x[i];
    for (; i < n; i++)
        acc[i] += x[i];
}

FV_SCALAR void fv_mod_add_ref(size_t n, const uint32_t *x, uint32_t *acc)
{
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++)
        acc[i] = (uint32_t)(acc[i] + x[i]);
}

void fv_mod_sub(size_t n, const uint32_t *restrict x, uint32_t *restrict acc)
{
    size_t nv = fixed_main(n), i;
    for (i = 0; i < nv; i++)
        acc[i] -= x[i];
    for (; i < n; i++)
        acc[i] -= x[i];
}

FV_SCALAR void fv_mod_sub_ref(size_t n, const uint32_t *x, uint32_t *acc)
{
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++)
        acc[i] = (uint32_t)(acc[i] - x[i]);
}

/* ---- fused keystream accumulate ------------------------------------------------------ */

/* Wipe the stream buffer in a way the compiler may not drop as a dead store. */
static void wipe(uint32_t *buf, size_t n_words)
{
    if (n_words > 0)
        explicit_bzero(buf, n_words * sizeof *buf);
}

/* A keystream is specified to return 0 or a negative code; anything else is a broken
 * keystream and is reported as FV_EINVAL rather than passed on as "success-like". */
static int stream_err(int r)
{
    return r < 0 ? r : FV_EINVAL;
}

int fv_mask_accumulate(uint32_t *acc, size_t n, int sign, fv_keystream_fn fn, void *state)
{
    if ((sign != 1 && sign != -1) || fn == NULL)
        return FV_EINVAL;
    _Alignas(64) uint32_t buf[FV_MASK_BLOCK_WORDS];
    size_t used = n < FV_MASK_BLOCK_WORDS ? n : FV_MASK_BLOCK_WORDS;
    int err = 0;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < FV_MASK_BLOCK_WORDS ? n - done : FV_MASK_BLOCK_WORDS;
        int r = fn(state, buf, k);
        if (r != 0) {
            err = stream_err(r);
            break;
        }
        if (sign > 0)
            fv_mod_add(k, buf, acc + done);
        else
            fv_mod_sub(k, buf, acc + done);
        done += k;
    }
    wipe(buf, used);
    return err;
}

FV_SCALAR int fv_mask_accumulate_ref(uint32_t *acc, size_t n, int sign, fv_keystream_fn fn,
                                     void *state)
{
    if ((sign != 1 && sign != -1) || fn == NULL)
        return FV_EINVAL;
    uint32_t buf[FV_MASK_BLOCK_WORDS];
    size_t used = n < FV_MASK_BLOCK_WORDS ? n : FV_MASK_BLOCK_WORDS;
    int err = 0;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < FV_MASK_BLOCK_WORDS ? n - done : FV_MASK_BLOCK_WORDS;
        int r = fn(state, buf, k);
        if (r != 0) {
            err = stream_err(r);
            break;
        }
        FV_SCALAR_LOOP
        for (size_t i = 0; i < k; i++) {
            if (sign > 0)
                acc[done + i] = (uint32_t)(acc[done + i] + buf[i]);
            else
                acc[done + i] = (uint32_t)(acc[done + i] - buf[i]);
        }
        done += k;
    }
    wipe(buf, used);
    return err;
}
