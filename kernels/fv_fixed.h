/* fv_fixed.h - fixed-point quantization and arithmetic mod 2^32 for secure aggregation.
 *
 * Quantization maps a float x to an integer in [0, 2^bits): clip to [-c, c], scale to
 * [0, 2^bits - 1], and round stochastically (up with probability equal to the fraction),
 * so the quantized value is an unbiased estimate of the clipped one. Summing n such values
 * cannot wrap mod 2^32 when n * (2^bits - 1) < 2^32 (fv_fixed_check_range).
 * Dequantizing a sum of n values undoes the offset: x = (q / (2^bits - 1)) * 2c - n*c.
 * The uniform variates come from the caller (u[i] in [0, 1)), so the kernel is pure and
 * deterministic; secure aggregation draws them from its injected random source.
 *
 * Modular arithmetic is plain uint32 wrap-around (defined behaviour in C).
 * fv_mask_accumulate is the fused "expand PRG and add/subtract into the accumulator"
 * kernel: it asks a keystream callback for L1-sized blocks and adds them in, so a mask is
 * never materialized at full length. Each kernel has a scalar reference (*_ref).
 */
#ifndef FV_FIXED_H
#define FV_FIXED_H

#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

/* 0 if n_summands values of `bits` bits cannot wrap a uint32 sum (bits 1..31, n >= 1),
 * else FV_EOVERFLOW. */
int fv_fixed_check_range(uint32_t bits, uint64_t n_summands);

/* q[i] = stochastic_round((clip(x[i], -c, c) + c) / (2c) * (2^bits - 1)), u[i] in [0,1).
 * c > 0 and finite, bits 1..31. NaN x -> FV_ENUMERIC (nothing guaranteed written). */
int fv_fixed_quantize(size_t n, const float *x, const float *u, float c, uint32_t bits,
                      uint32_t *q);
int fv_fixed_quantize_ref(size_t n, const float *x, const float *u, float c, uint32_t bits,
                          uint32_t *q);
/* x[i] = q[i] * (2c / (2^bits - 1)) - n_summands * c   (q is a sum of n_summands values) */
void fv_fixed_dequantize(size_t n, const uint32_t *q, float c, uint32_t bits, uint64_t n_summands,
                         float *x);
void fv_fixed_dequantize_ref(size_t n, const uint32_t *q, float c, uint32_t bits,
                             uint64_t n_summands, float *x);
/* The same for a sum that carries zero-mean integer noise (distributed differential
 * privacy: each agent adds discrete Gaussian noise to its words before masking, so the sum
 * may lie below 0 or above n_summands * (2^bits - 1) and wrap mod 2^32). q[i] is read as
 * the integer v congruent to it mod 2^32 nearest the middle h = floor(n_summands * (2^bits
 * - 1) / 2): v = h + (int32_t)(q[i] - h), exact while |v - h| < 2^31; then x[i] = v * (2c /
 * (2^bits - 1)) - n_summands * c. A q[i] within [0, n_summands * (2^bits - 1)] decodes
 * bit for bit as fv_fixed_dequantize does (n_summands * (2^bits - 1) < 2^32,
 * fv_fixed_check_range). Scalar only: it runs once per round on the coordinator. */
void fv_fixed_dequantize_centered(size_t n, const uint32_t *q, float c, uint32_t bits,
                                  uint64_t n_summands, float *x);

/* acc[i] += x[i] (mod 2^32) */
void fv_mod_add(size_t n, const uint32_t *x, uint32_t *acc);
void fv_mod_add_ref(size_t n, const uint32_t *x, uint32_t *acc);
/* acc[i] -= x[i] (mod 2^32) */
void fv_mod_sub(size_t n, const uint32_t *x, uint32_t *acc);
void fv_mod_sub_ref(size_t n, const uint32_t *x, uint32_t *acc);

/* Keystream source: writes the next n words of a stream into out; 0 or negative code. */
typedef int (*fv_keystream_fn)(void *state, uint32_t *out, size_t n);
#define FV_MASK_BLOCK_WORDS 4096 /* 16 KiB: stays in L1/L2 between generate and add */
/* acc[i] += sign * stream[i] (mod 2^32), i < n, sign +1 or -1; the stream is drawn in
 * blocks of FV_MASK_BLOCK_WORDS from fn. Returns fn's error, if any. */
int fv_mask_accumulate(uint32_t *acc, size_t n, int sign, fv_keystream_fn fn, void *state);
int fv_mask_accumulate_ref(uint32_t *acc, size_t n, int sign, fv_keystream_fn fn, void *state);

#endif
