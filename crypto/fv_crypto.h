/* fv_crypto.h - fedvault's cryptographic building blocks, composed from libsodium and
 * OpenSSL. No primitive is home-made; Shamir sharing (which neither library offers) is
 * plain polynomial arithmetic over a documented prime field, built on nothing secret-
 * dependent in its control flow.
 *
 * Conventions: keys and secrets are fixed-size byte arrays owned by the caller; a
 * function that receives a secret never keeps it. Callers wipe secrets with
 * fv_crypto_wipe (sodium_memzero) or keep them in fv_secret buffers (sodium_malloc:
 * guard pages, mlock, wiped on free). Every function returns 0 or a negative FV_E* code;
 * verification failures are FV_EAUTH. fv_crypto_init() must run once first (idempotent,
 * thread-safe after the first call returns).
 */
#ifndef FV_CRYPTO_H
#define FV_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

int fv_crypto_init(void); /* FV_EIO if libsodium cannot initialise (no entropy source) */
/* sodium_memzero: not optimized away. NULL-safe. */
void fv_crypto_wipe(void *p, size_t len);
/* Secret buffers: sodium_malloc / sodium_free (guard pages, wiped on free). NULL-safe. */
void *fv_secret_alloc(size_t len);
void fv_secret_free(void *p);

/* ---- randomness ------------------------------------------------------------------- */
/* The protocols take randomness from an injected source so tests are deterministic.
 * fv_rand_system fills from the OS CSPRNG (randombytes_buf); fv_rand_seeded is a
 * deterministic CSPRNG (ChaCha20 keystream of a 32-byte seed: for tests and the
 * simulator only, never for production keys). Each fill of the seeded source starts at a
 * 64-byte block boundary and consumes ceil(len / 64) blocks (the tail of the last block
 * is dropped), so the same sequence of fill lengths gives the same bytes. */
typedef struct fv_rand {
    void (*fill)(struct fv_rand *r, void *buf, size_t len);
    uint8_t key[32];
    uint64_t counter; /* blocks of 64 bytes consumed (seeded source) */
} fv_rand_t;
void fv_rand_system(fv_rand_t *r);
void fv_rand_seeded(fv_rand_t *r, const uint8_t seed[32]);
void fv_rand_seeded_u64(fv_rand_t *r, uint64_t seed); /* seed expanded with BLAKE2b */
static inline void fv_rand_fill(fv_rand_t *r, void *buf, size_t len)
{
    r->fill(r, buf, len);
}

/* ---- hashing ---------------------------------------------------------------------- */
#define FV_HASH_BYTES 32
/* SHA-256 (libsodium crypto_hash_sha256). */
void fv_sha256(uint8_t out[FV_HASH_BYTES], const void *msg, size_t len);
/* SHA-256 of a whole file, streamed (a data file's fingerprint: the CLI's lineage, the
 * agent's JOB_ACCEPT). OpenSSL's implementation: the same digest, with the CPU's SHA
 * instructions where it has them (1.7 GB/s on this project's VM against libsodium's
 * portable 0.3 GB/s). 0, a negated errno (open, read), or FV_ENOMEM / FV_EIO (OpenSSL). */
int fv_sha256_file(const char *path, uint8_t out[FV_HASH_BYTES]);

/* ---- identity signatures: Ed25519 ------------------------------------------------- */
#define FV_SIGN_PK_BYTES 32
#define FV_SIGN_SK_BYTES 64
#define FV_SIGN_BYTES 64
/* Key pair from the injected source (32-byte seed drawn from r). */
int fv_sign_keypair(fv_rand_t *r, uint8_t pk[FV_SIGN_PK_BYTES], uint8_t sk[FV_SIGN_SK_BYTES]);
int fv_sign(uint8_t sig[FV_SIGN_BYTES], const void *msg, size_t len,
            const uint8_t sk[FV_SIGN_SK_BYTES]);
/* 0 or FV_EAUTH. */
int fv_sign_verify(const uint8_t sig[FV_SIGN_BYTES], const void *msg, size_t len,
                   const uint8_t pk[FV_SIGN_PK_BYTES]);

/* ---- key agreement: X25519 + BLAKE2b KDF ------------------------------------------ */
#define FV_KX_PK_BYTES 32
#define FV_KX_SK_BYTES 32
#define FV_KX_KEY_BYTES 32
int fv_kx_keypair(fv_rand_t *r, uint8_t pk[FV_KX_PK_BYTES], uint8_t sk[FV_KX_SK_BYTES]);
/* Shared key = BLAKE2b-256(key = X25519(sk, peer_pk), msg = "fedvault kx v1" || lo_pk ||
 * hi_pk || context), where lo/hi are the two public keys in byte order, so both sides
 * derive the same key. Fails (FV_EAUTH) on a low-order peer key (all-zero shared point). */
int fv_kx_agree(uint8_t key[FV_KX_KEY_BYTES], const uint8_t my_sk[FV_KX_SK_BYTES],
                const uint8_t my_pk[FV_KX_PK_BYTES], const uint8_t peer_pk[FV_KX_PK_BYTES],
                const void *context, size_t context_len);

/* ---- AEAD: XChaCha20-Poly1305 (IETF) ---------------------------------------------- */
#define FV_AEAD_KEY_BYTES 32
#define FV_AEAD_NONCE_BYTES 24
#define FV_AEAD_TAG_BYTES 16
/* ct holds len + FV_AEAD_TAG_BYTES bytes. A (key, nonce) pair must never repeat. */
int fv_aead_seal(uint8_t *ct, const uint8_t *pt, size_t len, const uint8_t *ad, size_t ad_len,
                 const uint8_t nonce[FV_AEAD_NONCE_BYTES], const uint8_t key[FV_AEAD_KEY_BYTES]);
/* pt holds ct_len - FV_AEAD_TAG_BYTES bytes. FV_EAUTH on any tampering (pt then wiped);
 * FV_EPROTO if ct_len < FV_AEAD_TAG_BYTES. */
int fv_aead_open(uint8_t *pt, const uint8_t *ct, size_t ct_len, const uint8_t *ad, size_t ad_len,
                 const uint8_t nonce[FV_AEAD_NONCE_BYTES], const uint8_t key[FV_AEAD_KEY_BYTES]);

/* ---- PRG: 32-byte seed -> uint32 stream ------------------------------------------- */
/* The mask generator of secure aggregation. Backends: ChaCha20 (libsodium, IETF, zero
 * nonce), AES-256-CTR (OpenSSL EVP, zero IV) and AES-128-CTR (OpenSSL EVP, zero IV, key =
 * the first 16 bytes of the seed; not the default: see prg.c); FV_PRG_DEFAULT is the one
 * measured here (see tests/bench/bench_prg.c and the note in prg.c). Output words are the
 * keystream bytes read little-endian. The stream of a seed is fixed forever for a
 * backend (known-answer tests pin it). */
typedef enum { FV_PRG_CHACHA20 = 0, FV_PRG_AES256CTR = 1, FV_PRG_AES128CTR = 2 } fv_prg_kind_t;
extern const fv_prg_kind_t FV_PRG_DEFAULT;
#define FV_PRG_SEED_BYTES 32

typedef struct fv_prg fv_prg_t; /* holds the expanded key: wiped on free */
int fv_prg_new(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], fv_prg_t **ret);
/* Next n words of the stream (continues where the last call stopped). A ChaCha20 stream
 * ends after 2^36 words (32-bit IETF block counter): asking past it is FV_ERANGE, with
 * nothing written (and nothing added, for fv_prg_mask_add). */
int fv_prg_next_u32(fv_prg_t *p, uint32_t *out, size_t n);
void fv_prg_free(fv_prg_t *p);
/* One-shot: the first n words of the seed's stream. */
int fv_prg_expand_u32(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], uint32_t *out,
                      size_t n);
/* acc[i] += sign * PRG(seed)[i] mod 2^32 for i < n, sign = +1 or -1, without
 * materializing the n-word mask (keystream in L1-sized blocks through fv_mask_accumulate
 * in kernels/). */
int fv_prg_mask_add(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], int sign,
                    uint32_t *acc, size_t n);
/* The same stream started at word `first` (any word; a seek, not a skip: AES-CTR sets the
 * counter, ChaCha20 the block counter, and only the words before `first` in its block are
 * generated and dropped). fv_prg_new_at(k, s, 0, p) is fv_prg_new. fv_prg_mask_add_at adds
 * words first..first+n-1 of the stream into acc[0..n): splitting [0, N) into any ranges
 * and adding each at its offset gives the bits of one fv_prg_mask_add over [0, N). */
int fv_prg_new_at(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], uint64_t first,
                  fv_prg_t **ret);
int fv_prg_mask_add_at(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], int sign,
                       uint32_t *acc, size_t n, uint64_t first);

/* ---- Shamir secret sharing over GF(p), p = 2^61 - 1 ------------------------------- */
/* A 32-byte secret is cut into 5 little-endian chunks of 7 bytes (56 bits < 61, the last
 * chunk holds 4 bytes), each shared with its own random polynomial of degree t - 1 whose
 * constant term is the chunk. Share i (x = i, 1 <= i <= FV_SHAMIR_MAX_SHARES) holds the 5
 * polynomial values. Any t shares reconstruct by Lagrange interpolation at 0; fewer reveal
 * nothing. Arithmetic is constant-time in the values (128-bit multiply, Mersenne fold). */
#define FV_SHAMIR_SECRET_BYTES 32
#define FV_SHAMIR_CHUNKS 5
#define FV_SHAMIR_SHARE_BYTES (FV_SHAMIR_CHUNKS * 8) /* 5 x u64 little-endian */
#define FV_SHAMIR_MAX_SHARES 65535
typedef struct fv_shamir_share {
    uint32_t x; /* 1..FV_SHAMIR_MAX_SHARES */
    uint64_t y[FV_SHAMIR_CHUNKS];
} fv_shamir_share_t;
/* n shares with x = 1..n, threshold t (1 <= t <= n <= FV_SHAMIR_MAX_SHARES). Randomness
 * from r; polynomial coefficients wiped before returning. */
int fv_shamir_split(fv_rand_t *r, const uint8_t secret[FV_SHAMIR_SECRET_BYTES], uint32_t t,
                    uint32_t n, fv_shamir_share_t *out);
/* Reconstructs from exactly the shares given (n >= t is the caller's policy; any n >= 1
 * interpolates a polynomial of degree n - 1). Duplicate or zero x, or a y >= p:
 * FV_EINVAL. A result whose chunks do not fit the 32-byte layout: FV_EAUTH (wrong or
 * inconsistent shares). */
int fv_shamir_combine(const fv_shamir_share_t *shares, uint32_t n,
                      uint8_t secret[FV_SHAMIR_SECRET_BYTES]);
/* The layout check above catches random corruption, not a chosen one: the Lagrange
 * weights are public, so whoever controls one share can shift the secret by a small
 * amount that still fits the layout. fv_shamir_combine_checked interpolates the degree
 * t - 1 polynomial through the first t shares and requires each of the other n - t to lie
 * on it (FV_EAUTH otherwise, an exact check), then returns its constant term (with the
 * layout check). With n - t = e extra shares, up to e wrong shares are always detected
 * (not located); e + 1 colluding holders can still shift the secret. t <= n, else
 * FV_EINVAL; n = t is fv_shamir_combine. Cost (n - t + 1) * O(t^2). */
int fv_shamir_combine_checked(const fv_shamir_share_t *shares, uint32_t n, uint32_t t,
                              uint8_t secret[FV_SHAMIR_SECRET_BYTES]);
/* Many secrets shared to the same holders (the server unmasking every peer from the same
 * responders): the Lagrange coefficients depend only on the x's, so compute them once
 * (O(n^2) multiplications, one field inversion) and apply them to each secret (O(n)).
 * The coefficients are public (functions of the x's only). xs: borrowed, n >= 1 distinct
 * values in 1..FV_SHAMIR_MAX_SHARES, else FV_EINVAL. */
typedef struct fv_shamir_lagrange fv_shamir_lagrange_t;
int fv_shamir_lagrange_new(const uint32_t *xs, uint32_t n, fv_shamir_lagrange_t **ret);
void fv_shamir_lagrange_free(fv_shamir_lagrange_t *l); /* NULL-safe */
/* As fv_shamir_combine, with shares[i].x == xs[i] for the xs l was made from (same n, same
 * order), else FV_EINVAL. */
int fv_shamir_combine_with(const fv_shamir_lagrange_t *l, const fv_shamir_share_t *shares,
                           uint32_t n, uint8_t secret[FV_SHAMIR_SECRET_BYTES]);
/* Wire form: x as u32 little-endian, then the 5 y as u64 little-endian (44 bytes).
 * Decode: FV_EPROTO if x is 0 or above FV_SHAMIR_MAX_SHARES or a y >= p (s untouched). */
#define FV_SHAMIR_WIRE_BYTES (4 + FV_SHAMIR_SHARE_BYTES)
void fv_shamir_share_encode(const fv_shamir_share_t *s, uint8_t out[4 + FV_SHAMIR_SHARE_BYTES]);
int fv_shamir_share_decode(const uint8_t in[4 + FV_SHAMIR_SHARE_BYTES], fv_shamir_share_t *s);

#endif
