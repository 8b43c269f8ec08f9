/* test_wipe.c - the wiping promises of fv_crypto.h, as far as a test can see them.
 *
 * Testable, and tested here:
 *   - fv_crypto_wipe zeroes exactly the range it is given (poisoned malloc buffer, bytes
 *     around the range untouched) and accepts NULL / length 0;
 *   - fv_secret_alloc gives writable memory, fv_secret_free(NULL) is a no-op, and after
 *     fv_secret_free the region can no longer be read at all (sodium_free wipes, then
 *     unmaps: a child process that reads it must fault, or at worst read zeros);
 *   - caller-visible temporaries: fv_aead_open wipes the plaintext buffer on failure;
 *     fv_kx_agree and fv_shamir_combine leave their output untouched on failure (no half
 *     secret escapes); fv_shamir_split draws its coefficients into its own buffer, never
 *     into the caller's share array (checked with a spying random source).
 * Not testable from outside, covered by reading the code instead:
 *   - that fv_prg_free clears the ChaCha20 key / buffered block (sodium_memzero before
 *     free) and the AES key schedule (EVP_CIPHER_CTX_free -> OPENSSL_clear_free);
 *   - that fv_shamir_split wipes its coefficients (sodium_memzero, then sodium_free) and
 *     fv_prg_mask_add its stack block: the memory is gone when the call returns, and
 *     reading freed memory is exactly what the sanitizers forbid.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fv_crypto.h"
#include "fv_test.h"

static void test_wipe_range(void)
{
    uint8_t *b = malloc(100);
    CHECK(b != NULL);
    memset(b, 0xA5, 100);
    fv_crypto_wipe(b + 10, 80);
    for (int i = 0; i < 100; i++)
        CHECK_UINT_EQ(b[i], (i >= 10 && i < 90) ? 0 : 0xA5);
    fv_crypto_wipe(NULL, 0);
    fv_crypto_wipe(NULL, 16);
    fv_crypto_wipe(b, 0);
    CHECK_UINT_EQ(b[0], 0xA5);
    free(b);
}

#if !defined(__SANITIZE_ADDRESS__)
static void on_segv(int sig)
{
    (void)sig;
    _exit(0); /* faulted: the freed secret is unreadable */
}
#endif

static void test_secret_alloc(void)
{
    static const uint8_t secret[32] = "fedvault secret: not after free";
    uint8_t *s = fv_secret_alloc(sizeof secret);
    CHECK(s != NULL);
    memcpy(s, secret, sizeof secret);
    CHECK(memcmp(s, secret, sizeof secret) == 0);
    fv_secret_free(s);
    fv_secret_free(NULL);

    /* Reading freed memory is undefined behaviour, so only a throw-away child process does
     * it, and only without sanitizers or valgrind watching (they would rightly object). */
#if defined(__SANITIZE_ADDRESS__)
    fputs("test_wipe: read-after-free probe skipped under ASan\n", stdout);
#else
    if (getenv("FV_NO_FORK_PROBE") != NULL || getenv("LD_PRELOAD") != NULL ||
        getenv("VALGRIND_LIB") != NULL) {
        fputs("test_wipe: read-after-free probe skipped\n", stdout);
        return;
    }
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_segv;
        sigaction(SIGSEGV, &sa, NULL);
        sigaction(SIGBUS, &sa, NULL);
        uint8_t *c = fv_secret_alloc(sizeof secret);
        if (c == NULL)
            _exit(4);
        memcpy(c, secret, sizeof secret);
        fv_secret_free(c);
        volatile const uint8_t *v = c;
        uint8_t seen[sizeof secret];
        for (size_t i = 0; i < sizeof secret; i++)
            seen[i] = v[i];
        _exit(memcmp(seen, secret, sizeof secret) == 0 ? 2 : 3);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    if (WEXITSTATUS(st) == 2)
        FV__FAIL("the secret was still readable after fv_secret_free");
    CHECK(WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 3);
    printf("test_wipe: freed secret %s\n",
           WEXITSTATUS(st) == 0 ? "unreadable (fault)" : "readable but wiped");
#endif
}

static void test_aead_wipes_pt(void)
{
    uint8_t key[32] = {1}, nonce[24] = {2}, pt[64], ct[64 + 16];
    uint8_t *out = malloc(sizeof pt); /* the caller's secret buffer */
    CHECK(out != NULL);
    memset(pt, 0x77, sizeof pt);
    CHECK_INT_EQ(fv_aead_seal(ct, pt, sizeof pt, NULL, 0, nonce, key), 0);
    ct[70] ^= 1; /* forge the tag */
    memset(out, 0xA5, sizeof pt);
    CHECK_INT_EQ(fv_aead_open(out, ct, sizeof ct, NULL, 0, nonce, key), FV_EAUTH);
    for (size_t i = 0; i < sizeof pt; i++)
        CHECK_UINT_EQ(out[i], 0);
    free(out);
}

static void test_outputs_untouched(void)
{
    uint8_t pk[32], sk[32], zero_pk[32] = {0}, key[32];
    fv_rand_t r;
    fv_rand_seeded_u64(&r, 5);
    CHECK_INT_EQ(fv_kx_keypair(&r, pk, sk), 0);
    memset(key, 0xA5, sizeof key);
    CHECK_INT_EQ(fv_kx_agree(key, sk, pk, zero_pk, NULL, 0), FV_EAUTH);
    for (size_t i = 0; i < sizeof key; i++)
        CHECK_UINT_EQ(key[i], 0xA5);
    fv_crypto_wipe(sk, sizeof sk);

    fv_shamir_share_t sh[3];
    uint8_t secret[32] = {9}, back[32];
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 3, 3, sh), 0);
    /* a large error: with x = 1, 2, 3 the Lagrange coefficients are small integers, so a
     * +1 error would shift the result by a few units and still fit the layout */
    sh[0].y[4] = (sh[0].y[4] + UINT64_C(0x0123456789abcdef)) % (((uint64_t)1 << 61) - 1);
    memset(back, 0xA5, sizeof back);
    CHECK_INT_EQ(fv_shamir_combine(sh, 3, back), FV_EAUTH);
    for (size_t i = 0; i < sizeof back; i++)
        CHECK_UINT_EQ(back[i], 0xA5);
}

/* A random source that records where fv_shamir_split asks for its coefficients. */
static const uint8_t *spy_lo, *spy_hi;
static int spy_hits_caller;
static void spy_fill(fv_rand_t *r, void *buf, size_t len)
{
    const uint8_t *b = buf;
    if (b < spy_hi && b + len > spy_lo)
        spy_hits_caller = 1;
    memset(buf, 0x11, len); /* deterministic, < p after masking */
    (void)r;
}

static void test_split_coefficients_private(void)
{
    fv_shamir_share_t sh[8];
    uint8_t secret[32] = {3}, back[32];
    fv_rand_t r;
    memset(&r, 0, sizeof r);
    r.fill = spy_fill;
    spy_lo = (const uint8_t *)sh;
    spy_hi = (const uint8_t *)(sh + 8);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 4, 8, sh), 0);
    CHECK_INT_EQ(spy_hits_caller, 0);
    CHECK_INT_EQ(fv_shamir_combine(sh + 2, 4, back), 0);
    CHECK(memcmp(back, secret, 32) == 0);
}

int main(void)
{
    CHECK_INT_EQ(fv_crypto_init(), 0);
    test_wipe_range();
    test_secret_alloc();
    test_aead_wipes_pt();
    test_outputs_untouched();
    test_split_coefficients_private();
    printf("test_wipe: ok\n");
    return 0;
}
