/* bench_prg.c - throughput of the secure-aggregation mask generator and cost of the
 * public-key and Shamir operations around it. Prints one JSON line.
 *
 * Throughputs are GB/s (10^9 bytes of output per second; a uint32 word is 4 bytes), best
 * of REPS runs over an N-word vector that does not fit in cache, so "memcpy" is the
 * memory-bandwidth ceiling the others are compared with. Raw keystreams ("sodium_chacha20",
 * "openssl_chacha20", "openssl_aes256ctr") are the libraries alone; "prg_*" go through
 * fv_prg_next_u32 in one call, "mask_add_*" through fv_prg_mask_add (keystream in 16 KiB
 * blocks added into the accumulator: the server's and the agent's real work).
 * Public-key and Shamir timings are microseconds per operation (mean over many); the Shamir
 * case is the server's: 250 surviving holders out of 500, threshold 250 (249 plus one
 * verified extra share for the checked combine), 500 secrets sharing the same x's.
 * Results feed the choice of FV_PRG_DEFAULT in crypto/prg.c.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "fv_blas.h"
#include "fv_crypto.h"

#define N ((size_t)16 << 20) /* words: 64 MiB */
#define REPS 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile uint32_t sink;

static void die(const char *what)
{
    fprintf(stderr, "bench_prg: %s failed\n", what);
    exit(1);
}

/* best-of-REPS GB/s for producing n words */
#define BEST_GBPS(var, body)                                                                       \
    do {                                                                                           \
        double best_ = 1e30;                                                                       \
        for (int rep_ = 0; rep_ < REPS; rep_++) {                                                  \
            double t0_ = now_s();                                                                  \
            body;                                                                                  \
            double dt_ = now_s() - t0_;                                                            \
            if (dt_ < best_)                                                                       \
                best_ = dt_;                                                                       \
        }                                                                                          \
        var = (double)(N * 4) / best_ / 1e9;                                                       \
    } while (0)

static void evp_stream(const EVP_CIPHER *c, const uint8_t *key, uint8_t *buf, size_t len)
{
    static const uint8_t iv[16];
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl;
    if (ctx == NULL || EVP_EncryptInit_ex(ctx, c, NULL, key, iv) != 1)
        die("EVP init");
    memset(buf, 0, len);
    for (size_t off = 0; off < len; off += (size_t)1 << 30) {
        size_t m = len - off < ((size_t)1 << 30) ? len - off : ((size_t)1 << 30);
        if (EVP_EncryptUpdate(ctx, buf + off, &outl, buf + off, (int)m) != 1)
            die("EVP update");
    }
    EVP_CIPHER_CTX_free(ctx);
}

int main(void)
{
    char machine[384];
    fprintf(stderr, "machine: %s\n", fv_machine_line(machine, sizeof machine));
    uint32_t *a = malloc(N * 4), *b = malloc(N * 4);
    uint8_t seed[32];
    static const uint8_t nonce12[12];
    double memcpy_gbps, sodium_cc, ossl_cc, ossl_aes, prg_cc, prg_aes, mask_cc, mask_aes;

    if (a == NULL || b == NULL || fv_crypto_init() != 0)
        die("setup");
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(i * 3 + 1);
    memset(a, 1, N * 4);
    memset(b, 2, N * 4);

    BEST_GBPS(memcpy_gbps, memcpy(b, a, N * 4));
    sink = b[N / 2];
    BEST_GBPS(sodium_cc, crypto_stream_chacha20_ietf((uint8_t *)a, N * 4, nonce12, seed));
    sink = a[N / 3];
    BEST_GBPS(ossl_cc, evp_stream(EVP_chacha20(), seed, (uint8_t *)a, N * 4));
    sink = a[N / 3];
    BEST_GBPS(ossl_aes, evp_stream(EVP_aes_256_ctr(), seed, (uint8_t *)a, N * 4));
    sink = a[N / 3];
    BEST_GBPS(prg_cc, if (fv_prg_expand_u32(FV_PRG_CHACHA20, seed, a, N)) die("prg"));
    sink = a[N / 3];
    BEST_GBPS(prg_aes, if (fv_prg_expand_u32(FV_PRG_AES256CTR, seed, a, N)) die("prg"));
    sink = a[N / 3];
    BEST_GBPS(mask_cc, if (fv_prg_mask_add(FV_PRG_CHACHA20, seed, 1, b, N)) die("mask"));
    sink = b[N / 3];
    BEST_GBPS(mask_aes, if (fv_prg_mask_add(FV_PRG_AES256CTR, seed, 1, b, N)) die("mask"));
    sink = b[N / 3];

    /* ---- public key ---- */
    enum { PK_REPS = 2000 };
    fv_rand_t r;
    uint8_t apk[32], ask[32], bpk[32], bsk[32], shared[32], key[32], spk[32], ssk[64], sig[64],
        msg[64] = {0};
    double t0, x25519_us, kx_us, sign_us, verify_us;
    fv_rand_seeded_u64(&r, 1);
    if (fv_kx_keypair(&r, apk, ask) || fv_kx_keypair(&r, bpk, bsk) || fv_sign_keypair(&r, spk, ssk))
        die("keypair");
    t0 = now_s();
    for (int i = 0; i < PK_REPS; i++) {
        if (crypto_scalarmult(shared, ask, bpk) != 0)
            die("scalarmult");
        ask[0] ^= shared[0] & 1; /* data dependence between iterations */
    }
    x25519_us = (now_s() - t0) / PK_REPS * 1e6;
    t0 = now_s();
    for (int i = 0; i < PK_REPS; i++)
        if (fv_kx_agree(key, ask, apk, bpk, "bench", 5) != 0)
            die("kx_agree");
    kx_us = (now_s() - t0) / PK_REPS * 1e6;
    t0 = now_s();
    for (int i = 0; i < PK_REPS; i++) {
        msg[0] = (uint8_t)i;
        fv_sign(sig, msg, sizeof msg, ssk);
    }
    sign_us = (now_s() - t0) / PK_REPS * 1e6;
    t0 = now_s();
    for (int i = 0; i < PK_REPS; i++)
        if (fv_sign_verify(sig, msg, sizeof msg, spk) != 0)
            die("verify");
    verify_us = (now_s() - t0) / PK_REPS * 1e6;

    /* ---- Shamir: the server's unmasking work ---- */
    enum { SN = 500, ST = 250, NSEC = 500 };
    fv_shamir_share_t *sh = malloc((size_t)NSEC * ST * sizeof *sh), *tmp = malloc(SN * sizeof *tmp);
    uint32_t xs[ST];
    uint8_t secret[32], back[32];
    double split_us, combine1_us, lagrange_us, combine_many_us, checked_us;
    if (sh == NULL || tmp == NULL)
        die("malloc");
    for (int i = 0; i < ST; i++)
        xs[i] = (uint32_t)(2 * i + 1); /* 250 survivors of 500: odd x's */
    t0 = now_s();
    for (int s = 0; s < NSEC; s++) {
        fv_rand_fill(&r, secret, 32);
        if (fv_shamir_split(&r, secret, ST, SN, tmp) != 0)
            die("split");
        for (int i = 0; i < ST; i++)
            sh[(size_t)s * ST + i] = tmp[xs[i] - 1];
    }
    split_us = (now_s() - t0) / NSEC * 1e6;
    enum { C1_REPS = 50 };
    t0 = now_s();
    for (int i = 0; i < C1_REPS; i++)
        if (fv_shamir_combine(sh, ST, back) != 0)
            die("combine");
    combine1_us = (now_s() - t0) / C1_REPS * 1e6;
    /* checked: a secret dealt with t = 249, the same 250 holders (one extra share verified) */
    fv_shamir_share_t chk[ST];
    if (fv_shamir_split(&r, secret, ST - 1, SN, tmp) != 0)
        die("split");
    for (int i = 0; i < ST; i++)
        chk[i] = tmp[xs[i] - 1];
    t0 = now_s();
    for (int i = 0; i < C1_REPS; i++)
        if (fv_shamir_combine_checked(chk, ST, ST - 1, back) != 0)
            die("combine_checked");
    checked_us = (now_s() - t0) / C1_REPS * 1e6;
    fv_shamir_lagrange_t *l = NULL;
    t0 = now_s();
    if (fv_shamir_lagrange_new(xs, ST, &l) != 0)
        die("lagrange");
    lagrange_us = (now_s() - t0) * 1e6;
    t0 = now_s();
    for (int s = 0; s < NSEC; s++)
        if (fv_shamir_combine_with(l, sh + (size_t)s * ST, ST, back) != 0)
            die("combine_with");
    combine_many_us = (now_s() - t0) * 1e6 + lagrange_us;
    fv_shamir_lagrange_free(l);
    sink = back[0];

    printf("{\"bench\":\"prg\",\"words\":%zu,\"gbps\":{\"memcpy\":%.2f,\"sodium_chacha20\":%.2f,"
           "\"openssl_chacha20\":%.2f,\"openssl_aes256ctr\":%.2f,\"prg_chacha20\":%.2f,"
           "\"prg_aes256ctr\":%.2f,\"mask_add_chacha20\":%.2f,\"mask_add_aes256ctr\":%.2f},"
           "\"default\":\"%s\",\"us\":{\"x25519\":%.1f,\"kx_agree\":%.1f,\"ed25519_sign\":%.1f,"
           "\"ed25519_verify\":%.1f,\"shamir_split_t250_n500\":%.0f,"
           "\"shamir_combine_1_of_250\":%.0f,\"shamir_combine_checked_249_plus_1\":%.0f,"
           "\"shamir_lagrange_250\":%.0f,"
           "\"shamir_combine_500_of_250_precomputed\":%.0f}}\n",
           N, memcpy_gbps, sodium_cc, ossl_cc, ossl_aes, prg_cc, prg_aes, mask_cc, mask_aes,
           FV_PRG_DEFAULT == FV_PRG_CHACHA20 ? "chacha20" : "aes256ctr", x25519_us, kx_us, sign_us,
           verify_us, split_us, combine1_us, checked_us, lagrange_us, combine_many_us);
    free(sh);
    free(tmp);
    free(a);
    free(b);
    return 0;
}
