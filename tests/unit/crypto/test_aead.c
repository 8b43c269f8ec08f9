/* test_aead.c - XChaCha20-Poly1305 with associated data (fv_aead_*).
 *
 * Round trips for lengths 0..300; tamper: every flipped bit of the ciphertext+tag and of
 * the associated data fails with FV_EAUTH; truncations fail (FV_EPROTO below the tag
 * size, FV_EAUTH above); wrong nonce and wrong key fail; pt is wiped on every failure
 * (poisoned beforehand, checked all zero after).
 * Known answer: draft-irtf-cfrg-xchacha-03 appendix A.3.1 (the AEAD example: "Ladies and
 * Gentlemen of the class of '99..." with AD 50515253c0c1c2c3c4c5c6c7), tag included.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_test.h"

static void check_zero(const uint8_t *p, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            FV__FAIL("%s: byte %zu is 0x%02x, not wiped", what, i, p[i]);
}

static void test_kat(void)
{
    static const char pt_s[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
                               "only one tip for the future, sunscreen would be it.";
    static const char ct_hex[] = "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
                                 "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
                                 "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
                                 "21f9664c97637da9768812f615c68b13b52e"
                                 "c0875924c1c7987947deafd8780acf49";
    uint8_t key[32], nonce[24], ad[12], want[114 + 16], ct[114 + 16], pt[114];
    size_t len = strlen(pt_s);

    CHECK_UINT_EQ(len, 114);
    fv_test_unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", key, 32);
    fv_test_unhex("404142434445464748494a4b4c4d4e4f5051525354555657", nonce, 24);
    fv_test_unhex("50515253c0c1c2c3c4c5c6c7", ad, 12);
    fv_test_unhex(ct_hex, want, sizeof want);
    CHECK_INT_EQ(fv_aead_seal(ct, (const uint8_t *)pt_s, len, ad, sizeof ad, nonce, key), 0);
    if (memcmp(ct, want, sizeof want) != 0) {
        fprintf(stderr, "got  ");
        for (size_t i = 0; i < sizeof ct; i++)
            fprintf(stderr, "%02x", ct[i]);
        fprintf(stderr, "\nwant %s\n", ct_hex);
        FV__FAIL("XChaCha20-Poly1305 known answer differs");
    }
    CHECK_INT_EQ(fv_aead_open(pt, ct, sizeof ct, ad, sizeof ad, nonce, key), 0);
    CHECK(memcmp(pt, pt_s, len) == 0);
}

static void fill_random(fv_rand_t *r, uint8_t *p, size_t len)
{
    fv_rand_fill(r, p, len);
}

static void test_round_trip(void)
{
    fv_rand_t r;
    uint8_t key[32], nonce[24], ad[40];
    fv_rand_seeded_u64(&r, 3);
    fill_random(&r, key, sizeof key);
    fill_random(&r, nonce, sizeof nonce);
    fill_random(&r, ad, sizeof ad);
    for (size_t len = 0; len <= 300; len++) {
        uint8_t *pt = malloc(len + 1), *ct = malloc(len + 16), *back = malloc(len + 1);
        CHECK(pt && ct && back);
        fill_random(&r, pt, len);
        CHECK_INT_EQ(fv_aead_seal(ct, pt, len, ad, len % 41, nonce, key), 0);
        if (len >= 16)
            CHECK(memcmp(ct, pt, 16) != 0); /* it does encrypt */
        CHECK_INT_EQ(fv_aead_open(back, ct, len + 16, ad, len % 41, nonce, key), 0);
        CHECK(memcmp(back, pt, len) == 0);
        free(pt);
        free(ct);
        free(back);
    }
    /* NULL pointers are fine with zero lengths */
    uint8_t tag[16];
    CHECK_INT_EQ(fv_aead_seal(tag, NULL, 0, NULL, 0, nonce, key), 0);
    CHECK_INT_EQ(fv_aead_open(NULL, tag, 16, NULL, 0, nonce, key), 0);
}

static void test_tamper(void)
{
    fv_rand_t r;
    uint8_t key[32], key2[32], nonce[24], nonce2[24], ad[24], pt[37], ct[37 + 16], out[37];
    fv_rand_seeded_u64(&r, 4);
    fill_random(&r, key, sizeof key);
    fill_random(&r, nonce, sizeof nonce);
    fill_random(&r, ad, sizeof ad);
    fill_random(&r, pt, sizeof pt);
    CHECK_INT_EQ(fv_aead_seal(ct, pt, sizeof pt, ad, sizeof ad, nonce, key), 0);

    for (size_t bit = 0; bit < 8 * sizeof ct; bit++) {
        ct[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        memset(out, 0x5A, sizeof out);
        int rc = fv_aead_open(out, ct, sizeof ct, ad, sizeof ad, nonce, key);
        if (rc != FV_EAUTH)
            FV__FAIL("ciphertext bit %zu flipped: got %d, want FV_EAUTH", bit, rc);
        check_zero(out, sizeof out, "pt after tampered ciphertext");
        ct[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t bit = 0; bit < 8 * sizeof ad; bit++) {
        ad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        memset(out, 0x5A, sizeof out);
        int rc = fv_aead_open(out, ct, sizeof ct, ad, sizeof ad, nonce, key);
        if (rc != FV_EAUTH)
            FV__FAIL("associated-data bit %zu flipped: got %d, want FV_EAUTH", bit, rc);
        check_zero(out, sizeof out, "pt after tampered ad");
        ad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* associated data shortened, extended, dropped */
    CHECK_INT_EQ(fv_aead_open(out, ct, sizeof ct, ad, sizeof ad - 1, nonce, key), FV_EAUTH);
    CHECK_INT_EQ(fv_aead_open(out, ct, sizeof ct, NULL, 0, nonce, key), FV_EAUTH);
    /* truncated ciphertext: below the tag size it is malformed, above it forged */
    for (size_t l = 0; l < sizeof ct; l++) {
        uint8_t *o = malloc(sizeof ct); /* room for any claimed length */
        CHECK(o != NULL);
        memset(o, 0x5A, sizeof ct);
        int rc = fv_aead_open(o, ct, l, ad, sizeof ad, nonce, key);
        if (l < 16) {
            CHECK_INT_EQ(rc, FV_EPROTO);
        } else {
            CHECK_INT_EQ(rc, FV_EAUTH);
            check_zero(o, l - 16, "pt after truncated ciphertext");
        }
        free(o);
    }
    /* wrong nonce (one bit), wrong key (one bit) */
    memcpy(nonce2, nonce, sizeof nonce);
    nonce2[23] ^= 0x80;
    memset(out, 0x5A, sizeof out);
    CHECK_INT_EQ(fv_aead_open(out, ct, sizeof ct, ad, sizeof ad, nonce2, key), FV_EAUTH);
    check_zero(out, sizeof out, "pt after wrong nonce");
    memcpy(key2, key, sizeof key);
    key2[0] ^= 1;
    memset(out, 0x5A, sizeof out);
    CHECK_INT_EQ(fv_aead_open(out, ct, sizeof ct, ad, sizeof ad, nonce, key2), FV_EAUTH);
    check_zero(out, sizeof out, "pt after wrong key");
    /* and the untouched message still opens */
    CHECK_INT_EQ(fv_aead_open(out, ct, sizeof ct, ad, sizeof ad, nonce, key), 0);
    CHECK(memcmp(out, pt, sizeof pt) == 0);
}

int main(void)
{
    CHECK_INT_EQ(fv_crypto_init(), 0);
    test_kat();
    test_round_trip();
    test_tamper();
    printf("test_aead: ok\n");
    return 0;
}
