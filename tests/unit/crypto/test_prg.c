/* test_prg.c - the secure-aggregation mask generator (fv_prg_*) and the seeded random
 * source (fv_rand_seeded), whose streams are a wire contract.
 *
 * Known answers for seed 00 01 02 .. 1f, computed with the openssl command line (OpenSSL
 * 3.0; its ChaCha20 is independent of libsodium's, its "-iv" for chacha20 is the 4-byte
 * little-endian block counter followed by the 12-byte IETF nonce):
 *   K=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
 *   IV=00000000000000000000000000000000
 *   head -c 96 /dev/zero | openssl enc -aes-256-ctr -K $K -iv $IV | xxd -p
 *   head -c 96 /dev/zero | openssl enc -aes-128-ctr -K ${K:0:32} -iv $IV | xxd -p
 *   head -c 96 /dev/zero | openssl enc -chacha20 -K $K -iv $IV | xxd -p
 * The bytes are pinned as hex and turned into words little-endian here, which is the
 * header's contract (word i = keystream bytes 4i..4i+3, little-endian). ChaCha20 with the
 * all-zero key is also RFC 8439 appendix A.1, test vector #1 (76b8e0ad...).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_test.h"

static const char aes_hex[] = "f29000b62a499fd0a9f39a6add2e7780f05d76ae4ab99fe5a6f69b3148c2363d"
                              "0ebcb5deb52c83bd08a8a935182c9199d24356532881602f809eb383c5ff5d56"
                              "4e5fe6bc2af2b80633c371f5c1ce694ea90741e6797146a550b63f264a604ee4";
static const char aes128_hex[] = "c6a13b37878f5b826f4f8162a1c8d8797346139595c0b41e497bbde365f42d0a"
                                 "49d68753999ba68ce3897a686081b09db9ad2b2e346ac238505d365e9cb7fc56"
                                 "3063b6df0a2cdbb0851251d2c669d1bf9b82998964728141405e23dd9f1dd01b";
static const char chacha_hex[] = "39fd2b7dd9c5196a8dbd0377b8dc4a498a35d86fbcde6accb2cc7d4cd8ea2492"
                                 "2b23cce7a26023ab3f0eef693ac87f64258235eab1f7a32dc22762a0485b410c"
                                 "18b84231ade6a6d113615c61af434e27f8b1f3f5e1ad5b5cecf8fc122a35755c";
static const char chacha_zero_key_hex[] = /* RFC 8439 A.1 #1, first 64 bytes */
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586";

/* words from pinned bytes, little-endian, independent of the host's byte order */
static void words_le(const char *hex, uint32_t *w, size_t n)
{
    uint8_t b[256];
    fv_test_unhex(hex, b, 4 * n);
    for (size_t i = 0; i < n; i++)
        w[i] = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
               (uint32_t)b[4 * i + 3] << 24;
}

static const char *kind_name(fv_prg_kind_t k)
{
    return k == FV_PRG_CHACHA20 ? "chacha20" : "aes256ctr";
}

static void check_words(const uint32_t *got, const uint32_t *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            FV__FAIL("%s: word %zu is 0x%08x, want 0x%08x", what, i, got[i], want[i]);
}

static void test_kat(void)
{
    uint8_t seed[32], zero[32] = {0};
    uint32_t want[24], got[24];

    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    words_le(aes_hex, want, 24);
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_AES256CTR, seed, got, 24), 0);
    check_words(got, want, 24, "AES-256-CTR known answer");
    CHECK_UINT_EQ(got[0], 0xb60090f2u); /* the byte order spelled out once */

    words_le(aes128_hex, want, 24);
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_AES128CTR, seed, got, 24), 0);
    check_words(got, want, 24, "AES-128-CTR known answer (key = seed bytes 0..15)");

    words_le(chacha_hex, want, 24);
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_CHACHA20, seed, got, 24), 0);
    check_words(got, want, 24, "ChaCha20 known answer");
    CHECK_UINT_EQ(got[0], 0x7d2bfd39u);

    words_le(chacha_zero_key_hex, want, 16);
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_CHACHA20, zero, got, 16), 0);
    check_words(got, want, 16, "ChaCha20 RFC 8439 A.1 #1");

    CHECK(FV_PRG_DEFAULT == FV_PRG_CHACHA20 || FV_PRG_DEFAULT == FV_PRG_AES256CTR);
}

/* fv_rand_seeded is the same ChaCha20 stream (djb variant, 64-bit counter: equal to the
 * IETF stream below 2^32 blocks), each fill starting at a block boundary. */
static void test_rand_seeded(void)
{
    uint8_t seed[32], want[96], got[96];
    fv_rand_t r;

    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    fv_test_unhex(chacha_hex, want, 96);
    fv_rand_seeded(&r, seed);
    fv_rand_fill(&r, got, 96);
    CHECK(memcmp(got, want, 96) == 0);
    CHECK_UINT_EQ(r.counter, 2);
    /* a partial fill consumes its whole block */
    fv_rand_seeded(&r, seed);
    fv_rand_fill(&r, got, 10);
    CHECK(memcmp(got, want, 10) == 0);
    CHECK_UINT_EQ(r.counter, 1);
    fv_rand_fill(&r, got, 10);
    CHECK(memcmp(got, want + 64, 10) == 0);
    CHECK_UINT_EQ(r.counter, 2);
    fv_rand_fill(&r, got, 0);
    CHECK_UINT_EQ(r.counter, 2);
    /* fv_rand_seeded_u64: BLAKE2b-256 of the u64 little-endian, as the key */
    fv_rand_t a, b, c;
    fv_rand_seeded_u64(&a, 1);
    fv_rand_seeded_u64(&b, 1);
    fv_rand_seeded_u64(&c, 2);
    CHECK(memcmp(a.key, b.key, 32) == 0);
    CHECK(memcmp(a.key, c.key, 32) != 0);
    /* python3 -c "import hashlib; print(hashlib.blake2b((1).to_bytes(8, 'little'),
     *             digest_size=32).hexdigest())" */
    uint8_t k1[32];
    fv_test_unhex("1dbd7d0b561a41d23c2a469ad42fbd70d5438bae826f6fd607413190c37c363b", k1, 32);
    CHECK(memcmp(a.key, k1, 32) == 0);
    CHECK_UINT_EQ(a.counter, 0);
}

static void test_streaming(fv_prg_kind_t kind)
{
    enum { N = 5000 };
    static const size_t pieces[] = {1, 3, 7, 15, 16, 17, 0, 31, 33, 63, 64, 65, 100, 2, 1001};
    uint32_t *one = malloc(N * sizeof *one), *got = malloc(N * sizeof *got);
    uint8_t seed[32];
    fv_prg_t *p = NULL;
    size_t done = 0, k = 0;

    CHECK(one && got);
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(7 * i + 1);
    CHECK_INT_EQ(fv_prg_expand_u32(kind, seed, one, N), 0);
    CHECK_INT_EQ(fv_prg_new(kind, seed, &p), 0);
    while (done < N) {
        size_t m = pieces[k++ % (sizeof pieces / sizeof pieces[0])];
        if (m > N - done)
            m = N - done;
        memset(got + done, 0xEE, m * sizeof *got);
        CHECK_INT_EQ(fv_prg_next_u32(p, got + done, m), 0);
        done += m;
    }
    fv_prg_free(p);
    for (size_t i = 0; i < N; i++)
        if (got[i] != one[i])
            FV__FAIL("%s: streamed word %zu is 0x%08x, one-shot 0x%08x", kind_name(kind), i, got[i],
                     one[i]);
    /* the prefix of a longer expansion is the shorter expansion */
    CHECK_INT_EQ(fv_prg_expand_u32(kind, seed, got, 77), 0);
    check_words(got, one, 77, "prefix");
    free(one);
    free(got);
}

static void test_mask_add(fv_prg_kind_t kind)
{
    static const size_t ns[] = {0, 1, 15, 4095, 4096, 4097, 12289};
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(255 - i);
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        size_t n = ns[t];
        uint32_t *acc = malloc((n + 1) * sizeof *acc), *orig = malloc((n + 1) * sizeof *orig),
                 *mask = malloc((n + 1) * sizeof *mask);
        CHECK(acc && orig && mask);
        for (size_t i = 0; i < n; i++)
            orig[i] = acc[i] = (uint32_t)(i * 2654435761u);
        CHECK_INT_EQ(fv_prg_expand_u32(kind, seed, mask, n), 0);
        CHECK_INT_EQ(fv_prg_mask_add(kind, seed, 1, acc, n), 0);
        for (size_t i = 0; i < n; i++)
            if (acc[i] != orig[i] + mask[i])
                FV__FAIL("%s n=%zu: +mask word %zu", kind_name(kind), n, i);
        CHECK_INT_EQ(fv_prg_mask_add(kind, seed, -1, acc, n), 0);
        for (size_t i = 0; i < n; i++)
            if (acc[i] != orig[i])
                FV__FAIL("%s n=%zu: +mask -mask is not identity at word %zu", kind_name(kind), n,
                         i);
        CHECK_INT_EQ(fv_prg_mask_add(kind, seed, -1, acc, n), 0);
        for (size_t i = 0; i < n; i++)
            if (acc[i] != orig[i] - mask[i])
                FV__FAIL("%s n=%zu: -mask word %zu", kind_name(kind), n, i);
        free(acc);
        free(orig);
        free(mask);
    }
    uint32_t x = 5;
    CHECK_INT_EQ(fv_prg_mask_add(kind, seed, 0, &x, 1), FV_EINVAL);
    CHECK_INT_EQ(fv_prg_mask_add(kind, seed, 2, &x, 1), FV_EINVAL);
    CHECK_UINT_EQ(x, 5);
}

/* fv_prg_new_at / fv_prg_mask_add_at: a seek to any word gives the tail of the stream
 * (the openssl-pinned one: test_kat), and masks added range by range at their offsets
 * equal one fv_prg_mask_add over the whole vector, bit for bit. */
static void test_seek(fv_prg_kind_t kind)
{
    enum { N = 1000 };
    uint8_t seed[FV_PRG_SEED_BYTES];
    for (int i = 0; i < FV_PRG_SEED_BYTES; i++)
        seed[i] = (uint8_t)(7 * i + 3);
    uint32_t *all = malloc(N * sizeof(uint32_t)), *got = malloc(N * sizeof(uint32_t));
    CHECK(all != NULL && got != NULL);
    CHECK_INT_EQ(fv_prg_expand_u32(kind, seed, all, N), 0);
    static const uint64_t offs[] = {0, 1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 100, 999};
    for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
        fv_prg_t *p;
        CHECK_INT_EQ(fv_prg_new_at(kind, seed, offs[k], &p), 0);
        size_t m = N - (size_t)offs[k];
        /* in two pieces, so the state after the seek keeps streaming */
        CHECK_INT_EQ(fv_prg_next_u32(p, got, m / 2), 0);
        CHECK_INT_EQ(fv_prg_next_u32(p, got + m / 2, m - m / 2), 0);
        fv_prg_free(p);
        check_words(got, all + offs[k], m, "seek");
    }
    uint32_t *a = malloc(N * sizeof(uint32_t)), *b = malloc(N * sizeof(uint32_t));
    CHECK(a != NULL && b != NULL);
    for (size_t i = 0; i < N; i++)
        a[i] = b[i] = (uint32_t)(i * 2654435761u);
    CHECK_INT_EQ(fv_prg_mask_add(kind, seed, -1, a, N), 0);
    static const size_t cuts[] = {0, 7, 16, 333, 512, 999, N};
    for (size_t k = 0; k + 1 < sizeof(cuts) / sizeof(cuts[0]); k++)
        CHECK_INT_EQ(
            fv_prg_mask_add_at(kind, seed, -1, b + cuts[k], cuts[k + 1] - cuts[k], cuts[k]), 0);
    check_words(b, a, N, "mask_add_at");
    free(a);
    free(b);
    free(all);
    free(got);
}

static void test_seeds_differ(void)
{
    enum { N = 64 };
    uint8_t s1[32] = {0}, s2[32] = {0};
    uint32_t a[N], b[N], c[N];
    s2[31] = 1;
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_CHACHA20, s1, a, N), 0);
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_CHACHA20, s2, b, N), 0);
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_AES256CTR, s1, c, N), 0);
    size_t same_ab = 0, same_ac = 0;
    for (size_t i = 0; i < N; i++) {
        same_ab += a[i] == b[i];
        same_ac += a[i] == c[i];
    }
    CHECK_UINT_EQ(same_ab, 0);
    CHECK_UINT_EQ(same_ac, 0);
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_AES256CTR, s2, b, N), 0);
    same_ab = 0;
    for (size_t i = 0; i < N; i++)
        same_ab += c[i] == b[i];
    CHECK_UINT_EQ(same_ab, 0);
}

static void test_args(void)
{
    uint8_t seed[32] = {0};
    fv_prg_t *p = (fv_prg_t *)&seed; /* must stay untouched on failure */
    CHECK_INT_EQ(fv_prg_new((fv_prg_kind_t)7, seed, &p), FV_EINVAL);
    CHECK(p == (fv_prg_t *)&seed);
    fv_prg_free(NULL);
    CHECK_INT_EQ(fv_prg_expand_u32(FV_PRG_CHACHA20, seed, NULL, 0), 0);
#if SIZE_MAX > UINT32_MAX
    /* A ChaCha20 stream (32-bit IETF block counter) ends after 2^36 words: refused before
     * anything is written (acc is never touched, so a one-word buffer is safe here). */
    uint32_t acc = 9;
    CHECK_INT_EQ(fv_prg_mask_add(FV_PRG_CHACHA20, seed, 1, &acc, ((size_t)1 << 36) + 1), FV_ERANGE);
    CHECK_UINT_EQ(acc, 9);
#endif
}

int main(void)
{
    CHECK_INT_EQ(fv_crypto_init(), 0);
    test_kat();
    test_rand_seeded();
    test_streaming(FV_PRG_CHACHA20);
    test_streaming(FV_PRG_AES256CTR);
    test_mask_add(FV_PRG_CHACHA20);
    test_mask_add(FV_PRG_AES256CTR);
    test_seek(FV_PRG_CHACHA20);
    test_seek(FV_PRG_AES256CTR);
    test_seek(FV_PRG_AES128CTR);
    test_seeds_differ();
    test_args();
    printf("test_prg: ok\n");
    return 0;
}
