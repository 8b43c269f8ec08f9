/* test_kx.c - X25519 key agreement with the BLAKE2b KDF (fv_kx_*).
 *
 * Known answers: RFC 7748 section 6.1 (Alice's and Bob's key pairs from their private
 * scalars fed through an injected random source). The derived key is pinned for two
 * contexts; the pinned values were computed independently of this code: the shared point
 * with `openssl pkeyutl -derive` (PKCS#8 DER 302e020100300506032b656e04220420 || sk), and
 * the KDF with Python's hashlib:
 *   lo, hi = sorted([alice_pk, bob_pk])
 *   hashlib.blake2b(b"fedvault kx v1" + lo + hi + ctx, digest_size=32, key=shared)
 */
#include <stdint.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_test.h"
#include "fixed_rand.h"

static void check_hex(const uint8_t *got, const char *want_hex, const char *what)
{
    uint8_t want[32];
    fv_test_unhex(want_hex, want, 32);
    if (memcmp(got, want, 32) != 0) {
        fprintf(stderr, "%s:\n  got  ", what);
        for (size_t i = 0; i < 32; i++)
            fprintf(stderr, "%02x", got[i]);
        fprintf(stderr, "\n  want %s\n", want_hex);
        FV__FAIL("%s differs", what);
    }
}

#define ALICE_SK "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
#define ALICE_PK "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
#define BOB_SK "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
#define BOB_PK "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
/* BLAKE2b-256(key = RFC 7748 shared 4a5d9d5b...161742, "fedvault kx v1" || lo || hi || ctx) */
#define KEY_CTX_EMPTY "f768abd9bdf1ec4a48c9f92bf9eca3284a7132b9a08f3518f53191cc1c47b311"
#define KEY_CTX_JOB "6fe9dbcb57ce6cbce618315fadbeba41ad62c44df354f950cf3588aec5f2db40"
static const char ctx_job[] = "fedvault job 1 round 2";

static void test_kat(void)
{
    uint8_t s[32], apk[32], ask[32], bpk[32], bsk[32], ka[32], kb[32];
    fv_rand_t r;

    fv_test_unhex(ALICE_SK, s, 32);
    fixed_rand(&r, s);
    CHECK_INT_EQ(fv_kx_keypair(&r, apk, ask), 0);
    check_hex(apk, ALICE_PK, "RFC 7748 Alice public key");
    CHECK(memcmp(ask, s, 32) == 0);
    fv_test_unhex(BOB_SK, s, 32);
    fixed_rand(&r, s);
    CHECK_INT_EQ(fv_kx_keypair(&r, bpk, bsk), 0);
    check_hex(bpk, BOB_PK, "RFC 7748 Bob public key");

    CHECK_INT_EQ(fv_kx_agree(ka, ask, apk, bpk, NULL, 0), 0);
    CHECK_INT_EQ(fv_kx_agree(kb, bsk, bpk, apk, "", 0), 0);
    check_hex(ka, KEY_CTX_EMPTY, "Alice's key, empty context");
    check_hex(kb, KEY_CTX_EMPTY, "Bob's key, empty context");
    CHECK_INT_EQ(fv_kx_agree(ka, ask, apk, bpk, ctx_job, strlen(ctx_job)), 0);
    CHECK_INT_EQ(fv_kx_agree(kb, bsk, bpk, apk, ctx_job, strlen(ctx_job)), 0);
    check_hex(ka, KEY_CTX_JOB, "Alice's key, job context");
    check_hex(kb, KEY_CTX_JOB, "Bob's key, job context");
}

static void test_agree_random(void)
{
    fv_rand_t r;
    fv_rand_seeded_u64(&r, 7);
    for (int trial = 0; trial < 50; trial++) {
        uint8_t apk[32], ask[32], bpk[32], bsk[32], ka[32], kb[32], kc[32];
        CHECK_INT_EQ(fv_kx_keypair(&r, apk, ask), 0);
        CHECK_INT_EQ(fv_kx_keypair(&r, bpk, bsk), 0);
        CHECK(memcmp(apk, bpk, 32) != 0);
        CHECK_INT_EQ(fv_kx_agree(ka, ask, apk, bpk, "ctx", 3), 0);
        CHECK_INT_EQ(fv_kx_agree(kb, bsk, bpk, apk, "ctx", 3), 0);
        CHECK(memcmp(ka, kb, 32) == 0);
        /* the context changes the key, by one byte or by length */
        CHECK_INT_EQ(fv_kx_agree(kc, ask, apk, bpk, "ctY", 3), 0);
        CHECK(memcmp(ka, kc, 32) != 0);
        CHECK_INT_EQ(fv_kx_agree(kc, ask, apk, bpk, "ct", 2), 0);
        CHECK(memcmp(ka, kc, 32) != 0);
        /* a third party's key gives a different result */
        uint8_t cpk[32], csk[32];
        CHECK_INT_EQ(fv_kx_keypair(&r, cpk, csk), 0);
        CHECK_INT_EQ(fv_kx_agree(kc, csk, cpk, bpk, "ctx", 3), 0);
        CHECK(memcmp(ka, kc, 32) != 0);
    }
}

static void test_low_order(void)
{
    /* Points of small order on Curve25519 (u-coordinates, little-endian): 0, 1, and
     * p - 1 (ecff..ff7f); each makes the shared point all zero for every scalar. */
    static const char *bad[] = {
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", /* order 8 */
    };
    uint8_t pk[32], sk[32], peer[32], key[32];
    fv_rand_t r;

    fv_rand_seeded_u64(&r, 9);
    CHECK_INT_EQ(fv_kx_keypair(&r, pk, sk), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fv_test_unhex(bad[i], peer, 32);
        memset(key, 0xAA, sizeof key);
        int rc = fv_kx_agree(key, sk, pk, peer, "c", 1);
        if (rc != FV_EAUTH)
            FV__FAIL("low-order point %s: got %d, want FV_EAUTH", bad[i], rc);
        for (size_t j = 0; j < 32; j++)
            CHECK_UINT_EQ(key[j], 0xAA); /* key untouched on failure */
    }
}

int main(void)
{
    CHECK_INT_EQ(fv_crypto_init(), 0);
    test_kat();
    test_agree_random();
    test_low_order();
    printf("test_kx: ok\n");
    return 0;
}
