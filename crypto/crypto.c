/* crypto.c - initialisation, wiping, secret buffers, random sources, SHA-256, Ed25519,
 * X25519 key agreement and XChaCha20-Poly1305: thin, checked wrappers over libsodium (a
 * file's SHA-256 over OpenSSL's, for its speed: fv_crypto.h).
 *
 * Nothing here is a new primitive; the only composition is the key-agreement KDF
 * (fv_kx_agree), spelled out in fv_crypto.h and below.
 *
 * Randomness. fv_rand_system reads the OS CSPRNG (randombytes_buf). fv_rand_seeded is the
 * ChaCha20 keystream of the 32-byte seed with a zero nonce: libsodium's original (djb)
 * variant, whose 64-bit block counter matches fv_rand_t.counter; for counters below 2^32
 * this is byte for byte the IETF ChaCha20 stream with a zero nonce. Every fill starts at a
 * block boundary: a fill of len bytes consumes ceil(len / 64) blocks and the unused tail
 * of the last block is discarded. So the stream a caller sees depends on how it splits
 * its requests - fine for a deterministic test source, where only "same calls, same
 * bytes" matters.
 *
 * Ownership: every key and secret is the caller's (fixed-size arrays). Temporaries that
 * held secrets (the X25519 shared point, partial keystream blocks, seeds) are wiped with
 * sodium_memzero before returning, on every path.
 *
 * Threading: everything is reentrant once fv_crypto_init() has returned (sodium_init is
 * itself idempotent and thread-safe). A fv_rand_t is used by one thread at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "fv_crypto.h"

int fv_crypto_init(void)
{
    /* 0: initialised now, 1: already initialised, -1: failure (no entropy source). */
    if (sodium_init() < 0)
        return FV_EIO;
    return 0;
}

void fv_crypto_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0)
        sodium_memzero(p, len);
}

void *fv_secret_alloc(size_t len)
{
    return sodium_malloc(len);
}

void fv_secret_free(void *p)
{
    if (p != NULL)
        sodium_free(p);
}

/* ---- randomness ------------------------------------------------------------------- */

static void rand_system_fill(fv_rand_t *r, void *buf, size_t len)
{
    (void)r;
    if (len > 0)
        randombytes_buf(buf, len);
}

void fv_rand_system(fv_rand_t *r)
{
    memset(r, 0, sizeof *r);
    r->fill = rand_system_fill;
}

static const uint8_t zero_nonce8[crypto_stream_chacha20_NONCEBYTES];

static void rand_seeded_fill(fv_rand_t *r, void *buf, size_t len)
{
    uint8_t *out = buf;
    size_t full = len / 64, rem = len % 64;

    if (full > 0) {
        memset(out, 0, full * 64);
        crypto_stream_chacha20_xor_ic(out, out, (unsigned long long)full * 64, zero_nonce8,
                                      r->counter, r->key);
        r->counter += full;
    }
    if (rem > 0) {
        uint8_t block[64] = {0};
        crypto_stream_chacha20_xor_ic(block, block, sizeof block, zero_nonce8, r->counter, r->key);
        r->counter++;
        memcpy(out + full * 64, block, rem);
        sodium_memzero(block, sizeof block);
    }
}

void fv_rand_seeded(fv_rand_t *r, const uint8_t seed[32])
{
    memset(r, 0, sizeof *r);
    r->fill = rand_seeded_fill;
    memcpy(r->key, seed, sizeof r->key);
    r->counter = 0;
}

void fv_rand_seeded_u64(fv_rand_t *r, uint64_t seed)
{
    uint8_t le[8], key[32];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(seed >> (8 * i));
    crypto_generichash(key, sizeof key, le, sizeof le, NULL, 0);
    fv_rand_seeded(r, key);
    sodium_memzero(key, sizeof key);
}

/* ---- hashing ---------------------------------------------------------------------- */

void fv_sha256(uint8_t out[FV_HASH_BYTES], const void *msg, size_t len)
{
    crypto_hash_sha256(out, msg, len);
}

int fv_sha256_file(const char *path, uint8_t out[FV_HASH_BYTES])
{
    unsigned char buf[65536], digest[EVP_MAX_MD_SIZE];
    unsigned int n_digest = 0;
    int r = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        r = FV_ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            goto out;
        }
        if (k == 0)
            break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)k) != 1) {
            r = FV_EIO;
            goto out;
        }
    }
    if (EVP_DigestFinal_ex(ctx, digest, &n_digest) != 1 || n_digest != FV_HASH_BYTES) {
        r = FV_EIO;
        goto out;
    }
    memcpy(out, digest, FV_HASH_BYTES);
out:
    close(fd);
    EVP_MD_CTX_free(ctx);
    return r;
}

/* ---- Ed25519 ---------------------------------------------------------------------- */

int fv_sign_keypair(fv_rand_t *r, uint8_t pk[FV_SIGN_PK_BYTES], uint8_t sk[FV_SIGN_SK_BYTES])
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    int rc = 0;

    fv_rand_fill(r, seed, sizeof seed);
    if (crypto_sign_seed_keypair(pk, sk, seed) != 0)
        rc = FV_EINVAL;
    sodium_memzero(seed, sizeof seed);
    return rc;
}

int fv_sign(uint8_t sig[FV_SIGN_BYTES], const void *msg, size_t len,
            const uint8_t sk[FV_SIGN_SK_BYTES])
{
    if (crypto_sign_detached(sig, NULL, msg, len, sk) != 0)
        return FV_EINVAL;
    return 0;
}

int fv_sign_verify(const uint8_t sig[FV_SIGN_BYTES], const void *msg, size_t len,
                   const uint8_t pk[FV_SIGN_PK_BYTES])
{
    /* libsodium rejects non-canonical S, small-order and non-canonical public keys. */
    if (crypto_sign_verify_detached(sig, msg, len, pk) != 0)
        return FV_EAUTH;
    return 0;
}

/* ---- X25519 + BLAKE2b ------------------------------------------------------------- */

int fv_kx_keypair(fv_rand_t *r, uint8_t pk[FV_KX_PK_BYTES], uint8_t sk[FV_KX_SK_BYTES])
{
    uint8_t s[crypto_scalarmult_SCALARBYTES], p[crypto_scalarmult_BYTES];
    int rc = 0;

    fv_rand_fill(r, s, sizeof s);
    /* Fails only if the public key is all zero, which a clamped scalar cannot give. */
    if (crypto_scalarmult_base(p, s) != 0) {
        rc = FV_EINVAL;
        goto out;
    }
    memcpy(pk, p, sizeof p);
    memcpy(sk, s, sizeof s);
out:
    sodium_memzero(s, sizeof s);
    return rc;
}

static const char kx_label[] = "fedvault kx v1"; /* hashed without its NUL: 14 bytes */

int fv_kx_agree(uint8_t key[FV_KX_KEY_BYTES], const uint8_t my_sk[FV_KX_SK_BYTES],
                const uint8_t my_pk[FV_KX_PK_BYTES], const uint8_t peer_pk[FV_KX_PK_BYTES],
                const void *context, size_t context_len)
{
    uint8_t shared[crypto_scalarmult_BYTES];
    crypto_generichash_state st;
    const uint8_t *lo = my_pk, *hi = peer_pk;
    int rc = 0;

    if (context == NULL && context_len > 0)
        return FV_EINVAL;
    /* crypto_scalarmult returns -1 when the shared point is all zero: the peer sent a
     * low-order point (or the zero key) and would know the "secret". */
    if (crypto_scalarmult(shared, my_sk, peer_pk) != 0) {
        rc = FV_EAUTH;
        goto out;
    }
    if (memcmp(my_pk, peer_pk, FV_KX_PK_BYTES) > 0) {
        lo = peer_pk;
        hi = my_pk;
    }
    crypto_generichash_init(&st, shared, sizeof shared, FV_KX_KEY_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)kx_label, sizeof kx_label - 1);
    crypto_generichash_update(&st, lo, FV_KX_PK_BYTES);
    crypto_generichash_update(&st, hi, FV_KX_PK_BYTES);
    if (context_len > 0)
        crypto_generichash_update(&st, context, context_len);
    crypto_generichash_final(&st, key, FV_KX_KEY_BYTES);
out:
    sodium_memzero(shared, sizeof shared);
    sodium_memzero(&st, sizeof st);
    return rc;
}

/* ---- XChaCha20-Poly1305 ----------------------------------------------------------- */

int fv_aead_seal(uint8_t *ct, const uint8_t *pt, size_t len, const uint8_t *ad, size_t ad_len,
                 const uint8_t nonce[FV_AEAD_NONCE_BYTES], const uint8_t key[FV_AEAD_KEY_BYTES])
{
    if (len > crypto_aead_xchacha20poly1305_ietf_MESSAGEBYTES_MAX)
        return FV_ETOOBIG;
    if ((pt == NULL && len > 0) || (ad == NULL && ad_len > 0))
        return FV_EINVAL;
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, pt, len, ad, ad_len, NULL, nonce, key);
    return 0;
}

int fv_aead_open(uint8_t *pt, const uint8_t *ct, size_t ct_len, const uint8_t *ad, size_t ad_len,
                 const uint8_t nonce[FV_AEAD_NONCE_BYTES], const uint8_t key[FV_AEAD_KEY_BYTES])
{
    if (ct_len < FV_AEAD_TAG_BYTES)
        return FV_EPROTO;
    if (ct == NULL || (ad == NULL && ad_len > 0))
        return FV_EINVAL;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, ct, ct_len, ad, ad_len, nonce,
                                                   key) != 0) {
        /* libsodium already clears pt on a bad tag; the header promises it, so make sure. */
        fv_crypto_wipe(pt, ct_len - FV_AEAD_TAG_BYTES);
        return FV_EAUTH;
    }
    return 0;
}
