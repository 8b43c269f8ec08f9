/* test_sign.c - Ed25519 identity signatures (fv_sign_*).
 *
 * Known answers: RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72):
 * the key pair is derived from the RFC's 32-byte seed fed through an injected random
 * source, and the signature must match the RFC byte for byte. TEST 2 was also re-derived
 * with the openssl command line (raw seed wrapped in PKCS#8 DER
 * 302e020100300506032b657004220420 || seed, then `openssl pkeyutl -sign -rawin`).
 * Tamper: every flipped bit of the signature, of the message and of the public key fails.
 */
#include <stdint.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_test.h"
#include "fixed_rand.h"

/* A random source that hands out r->key: exactly what keypair functions draw (32 bytes). */
static void check_bytes(const uint8_t *got, const uint8_t *want, size_t len, const char *what)
{
    if (memcmp(got, want, len) != 0) {
        fprintf(stderr, "%s:\n  got  ", what);
        for (size_t i = 0; i < len; i++)
            fprintf(stderr, "%02x", got[i]);
        fprintf(stderr, "\n  want ");
        for (size_t i = 0; i < len; i++)
            fprintf(stderr, "%02x", want[i]);
        fputc('\n', stderr);
        FV__FAIL("%s differs", what);
    }
}

struct kat {
    const char *seed, *pk, *msg, *sig;
};

static const struct kat kats[] = {
    {/* RFC 8032 7.1 TEST 1 */
     "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc6"
     "1e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
    {/* RFC 8032 7.1 TEST 2 */
     "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e45"
     "8f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
};

static void test_kat(const struct kat *k)
{
    uint8_t seed[32], pk_want[32], sig_want[64], msg[16], pk[FV_SIGN_PK_BYTES],
        sk[FV_SIGN_SK_BYTES], sig[FV_SIGN_BYTES];
    size_t mlen = strlen(k->msg) / 2;
    fv_rand_t r;

    fv_test_unhex(k->seed, seed, 32);
    fv_test_unhex(k->pk, pk_want, 32);
    fv_test_unhex(k->sig, sig_want, 64);
    fv_test_unhex(k->msg, msg, mlen);
    fixed_rand(&r, seed);
    CHECK_INT_EQ(fv_sign_keypair(&r, pk, sk), 0);
    check_bytes(pk, pk_want, 32, "RFC 8032 public key");
    CHECK_INT_EQ(fv_sign(sig, msg, mlen, sk), 0);
    check_bytes(sig, sig_want, 64, "RFC 8032 signature");
    CHECK_INT_EQ(fv_sign_verify(sig, msg, mlen, pk), 0);
    fv_crypto_wipe(sk, sizeof sk);
}

static void test_tamper(void)
{
    uint8_t pk[FV_SIGN_PK_BYTES], sk[FV_SIGN_SK_BYTES], sig[FV_SIGN_BYTES], msg[] = "round 7";
    size_t mlen = sizeof msg - 1;
    fv_rand_t r;
    int n_checked = 0;

    fv_rand_seeded_u64(&r, 1);
    CHECK_INT_EQ(fv_sign_keypair(&r, pk, sk), 0);
    CHECK_INT_EQ(fv_sign(sig, msg, mlen, sk), 0);
    CHECK_INT_EQ(fv_sign_verify(sig, msg, mlen, pk), 0);
    for (size_t bit = 0; bit < 8 * sizeof sig; bit++, n_checked++) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (fv_sign_verify(sig, msg, mlen, pk) != FV_EAUTH)
            FV__FAIL("signature bit %zu flipped still verifies", bit);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t bit = 0; bit < 8 * mlen; bit++, n_checked++) {
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (fv_sign_verify(sig, msg, mlen, pk) != FV_EAUTH)
            FV__FAIL("message bit %zu flipped still verifies", bit);
        msg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t bit = 0; bit < 8 * sizeof pk; bit++, n_checked++) {
        pk[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (fv_sign_verify(sig, msg, mlen, pk) != FV_EAUTH)
            FV__FAIL("public key bit %zu flipped still verifies", bit);
        pk[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* truncated and extended messages */
    CHECK_INT_EQ(fv_sign_verify(sig, msg, mlen - 1, pk), FV_EAUTH);
    CHECK_INT_EQ(fv_sign_verify(sig, "round 7!", mlen + 1, pk), FV_EAUTH);
    CHECK_INT_EQ(fv_sign_verify(sig, msg, mlen, pk), 0);
    CHECK_INT_EQ(n_checked, 8 * (64 + 7 + 32));
    fv_crypto_wipe(sk, sizeof sk);
}

static void test_deterministic_keys(void)
{
    uint8_t pk1[32], sk1[64], pk2[32], sk2[64], pk3[32], sk3[64];
    fv_rand_t r1, r2, r3;

    fv_rand_seeded_u64(&r1, 42);
    fv_rand_seeded_u64(&r2, 42);
    fv_rand_seeded_u64(&r3, 43);
    CHECK_INT_EQ(fv_sign_keypair(&r1, pk1, sk1), 0);
    CHECK_INT_EQ(fv_sign_keypair(&r2, pk2, sk2), 0);
    CHECK_INT_EQ(fv_sign_keypair(&r3, pk3, sk3), 0);
    CHECK(memcmp(pk1, pk2, 32) == 0 && memcmp(sk1, sk2, 64) == 0);
    CHECK(memcmp(pk1, pk3, 32) != 0);
    /* a second key pair from the same source is a different one */
    CHECK_INT_EQ(fv_sign_keypair(&r1, pk2, sk2), 0);
    CHECK(memcmp(pk1, pk2, 32) != 0);
}

int main(void)
{
    CHECK_INT_EQ(fv_crypto_init(), 0);
    CHECK_INT_EQ(fv_crypto_init(), 0); /* idempotent */
    for (size_t i = 0; i < sizeof kats / sizeof kats[0]; i++)
        test_kat(&kats[i]);
    test_tamper();
    test_deterministic_keys();
    printf("test_sign: ok\n");
    return 0;
}
