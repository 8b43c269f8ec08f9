/* fv_dpnoise.h - the randomness of differential privacy: keyed streams, exact samplers.
 *
 * Every random choice DP makes in an agent (which rows a DP-SGD step samples, the noise it
 * adds) comes from a STREAM keyed by a 32-byte secret (the agent derives it from its own
 * secret key and the job and round: protocols/round_kinds.c), a 32-bit domain (what the
 * stream is for: FV_DP_DOMAIN_*) and a 64-bit index (the step). The stream is ChaCha20
 * (libsodium's crypto_stream_chacha20_ietf_xor_ic), its 96-bit nonce the domain and the
 * index: the same key, domain and index give the same numbers on every machine, so a
 * round run again after a coordinator restart sends the same bytes and spends no extra
 * budget. Nobody without the key can predict them (the coordinator included).
 *
 * Exact samplers (Canonne, Kamath and Steinke 2020, "The Discrete Gaussian for
 * Differential Privacy", Algorithms 1-3): integer and rational arithmetic only (64- and
 * 128-bit), uniform integers by rejection, no floating point anywhere in
 * fv_dp_bernoulli*, fv_dp_dlaplace, fv_dp_dgauss: their output distribution is exactly the
 * stated one given a uniform stream. fv_dp_gauss_add_f32 (DP-SGD's continuous noise) is the
 * one floating-point sampler; dpnoise.c says what it guarantees.
 *
 * A stream holds key material: fv_dp_stream_wipe when done. One stream per thread.
 */
#ifndef FV_DPNOISE_H
#define FV_DPNOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

enum {
    FV_DP_DOMAIN_SAMPLE = 1, /* Poisson sampling of a DP-SGD step's rows */
    FV_DP_DOMAIN_NOISE = 2,  /* DP-SGD's Gaussian noise of a step */
    FV_DP_DOMAIN_DDG = 3,    /* distributed discrete Gaussian noise of a round */
    FV_DP_DOMAIN_TEST = 99,
};

/* 128-bit unsigned (GCC/Clang extension; __extension__ keeps -Wpedantic quiet). */
__extension__ typedef unsigned __int128 fv_dp_u128;

typedef struct fv_dp_stream {
    uint8_t key[32];
    uint32_t domain;
    uint64_t index;
    uint64_t block; /* next ChaCha20 block counter */
    uint8_t buf[256];
    size_t pos; /* bytes of buf used */
} fv_dp_stream_t;

/* A stream at its start. */
void fv_dp_stream_init(fv_dp_stream_t *s, const uint8_t key[32], uint32_t domain, uint64_t index);
void fv_dp_stream_wipe(fv_dp_stream_t *s);
/* Derives a stream key: BLAKE2b-256 keyed by parent, of the label and the 64-bit n. */
void fv_dp_key_derive(uint8_t out[32], const uint8_t parent[32], const char *label, uint64_t n);

uint64_t fv_dp_u64(fv_dp_stream_t *s);
/* Uniform in [0, n), exact (rejection); n >= 1. */
uint64_t fv_dp_below(fv_dp_stream_t *s, uint64_t n);
/* Bernoulli(num / den), exact; 0 <= num <= den, den >= 1 (128-bit). */
bool fv_dp_bernoulli(fv_dp_stream_t *s, fv_dp_u128 num, fv_dp_u128 den);
/* Bernoulli(exp(-num / den)), exact (CKS Algorithm 1 with its reduction for num/den > 1);
 * num >= 0, den >= 1. */
bool fv_dp_bernoulli_exp(fv_dp_stream_t *s, fv_dp_u128 num, fv_dp_u128 den);
/* Discrete Laplace with scale t (P(x) proportional to exp(-|x| / t)), t = t_num / t_den,
 * exact (CKS Algorithm 2). */
int64_t fv_dp_dlaplace(fv_dp_stream_t *s, uint64_t t_num, uint64_t t_den);
/* Discrete Gaussian N_Z(0, sigma2) (P(x) proportional to exp(-x^2 / (2 sigma2))) with an
 * integer variance parameter sigma2 in [1, 2^48], exact (CKS Algorithm 3). */
int64_t fv_dp_dgauss(fv_dp_stream_t *s, uint64_t sigma2);
/* The largest sigma2 fv_dp_dgauss takes (an assert beyond): callers bound theirs first. */
#define FV_DP_SIGMA2_MAX (UINT64_C(1) << 48)
/* acc[i] += N_Z(0, sigma2) mod 2^32, i < n (noise added to a quantized block). */
void fv_dp_dgauss_add_u32(fv_dp_stream_t *s, uint64_t sigma2, uint32_t *acc, size_t n);

/* out[i] += std * N(0, 1), i < n: DP-SGD's noise (a 256-layer ziggurat in double, one
 * 32-bit word of the stream per value plus more in its rare paths, rounded to float once).
 * std >= 0, finite. */
void fv_dp_gauss_add_f32(fv_dp_stream_t *s, double std, float *out, size_t n);

/* The sampling rate fv_dp_poisson really uses for q: ceil(q 2^32) / 2^32 (q rounded UP to a
 * multiple of 2^-32), 0 for q <= 0 or NaN, 1 for q >= 1. An accountant must count this
 * rate, not q (protocols/privacy.c's plan does). */
double fv_dp_rate_round(double q);
/* Poisson sampling: each i < n is kept with probability fv_dp_rate_round(q) exactly (a
 * 32-bit uniform below ceil(q 2^32); q >= 1 keeps all), in increasing order into idx (n
 * entries of room: all n may be written); returns how many. */
size_t fv_dp_poisson(fv_dp_stream_t *s, double q, size_t n, size_t *idx);

#endif
