/* prg.c - the mask generator of secure aggregation: 32-byte seed -> stream of uint32.
 *
 * Two backends, both a stream cipher's keystream with the seed as key and a fixed zero
 * nonce (each seed is used for one stream only, so the nonce carries nothing):
 *   FV_PRG_CHACHA20   libsodium crypto_stream_chacha20_ietf_xor_ic, nonce 0, block counter
 *                     from 0. The IETF counter is 32 bits: a stream ends after 2^32
 *                     blocks (2^36 words, 256 GiB); asking past it is FV_ERANGE.
 *   FV_PRG_AES128CTR  OpenSSL EVP_aes_128_ctr, key = seed bytes 0..15 (the seeds are
 *                     uniform: a BLAKE2b output or drawn from the CSPRNG), IV 0 as below.
 *                     10 rounds instead of 14: 1.34x the AES-256 keystream here (openssl
 *                     speed -evp, 16 KiB blocks: 9.9 vs 7.4 GB/s). Not the default: a
 *                     default change is a protocol change (agents and the coordinator take
 *                     FV_PRG_DEFAULT) and the key drops to 128 bits, the level of X25519
 *                     but a smaller margin against multi-key search over many seeds.
 *   FV_PRG_AES256CTR  OpenSSL EVP_aes_256_ctr, IV 0 (the whole 128-bit block is the
 *                     big-endian counter, as in NIST SP 800-38A): no practical end.
 * Word i of the stream is keystream bytes 4i..4i+3 read little-endian (a plain memcpy on
 * little-endian hosts; big-endian hosts byte-swap after generating). These streams are a
 * wire contract between agents and the coordinator: tests/unit/crypto/test_prg.c pins
 * them against the openssl command line.
 *
 * Streaming: fv_prg_next_u32 continues where the last call stopped. AES-CTR in EVP keeps
 * its own partial-block state. ChaCha20 is generated in whole 64-byte blocks at a block
 * counter; a request that ends inside a block keeps the rest of that block in p->buf, and
 * the next request drains it before generating at the next counter.
 *
 * Default backend: AES-256-CTR, about 3x faster here. Measured by tests/bench/bench_prg.c
 * on the development machine (2-vCPU AMD EPYC VM with AES-NI, AVX2, AVX-512, VAES; Debian
 * 12: libsodium 1.0.18, OpenSSL 3.0; release build, one thread, 16 Mi words = 64 MiB, best
 * of 5; GB/s of output, range over 5 runs on a shared host with load 2.5 - 3):
 *     memcpy (bandwidth ceiling)          14   - 22
 *     libsodium ChaCha20 keystream        1.7 - 1.9
 *     OpenSSL ChaCha20 keystream          4.1 - 5.5
 *     OpenSSL AES-256-CTR keystream       5.1 - 6.7
 *     fv_prg_next_u32  ChaCha20 / AES     1.8 - 2.0  /  5.1 - 6.6
 *     fv_prg_mask_add  ChaCha20 / AES     1.6 - 1.9  /  4.2 - 5.2
 * OpenSSL 3.0 runs AES-CTR on AES-NI (8 blocks in flight) and ChaCha20 with AVX-512;
 * libsodium 1.0.18 has only an AVX2 ChaCha20. The ChaCha20 backend stays for hosts
 * without AES instructions. Re-measure when the deployment hardware or libraries change:
 * the default may change only between protocol versions (agents and the coordinator must
 * agree), which is why the choice is a constant and not a run-time probe.
 *
 * Memory: fv_prg_t is malloc'd and wiped with sodium_memzero on free (it holds the
 * ChaCha20 key and a buffered keystream block). The AES key schedule lives inside the
 * EVP context; EVP_CIPHER_CTX_free clears it (OPENSSL_clear_free of the provider context).
 * fv_prg_mask_add streams through fv_mask_accumulate (kernels/fixed.c), which keeps one
 * 16 KiB keystream block on the stack and wipes it before returning.
 *
 * Threading: a fv_prg_t belongs to one thread at a time; distinct ones are independent.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "fv_crypto.h"
#include "fv_fixed.h"

const fv_prg_kind_t FV_PRG_DEFAULT = FV_PRG_AES256CTR;

#define CHACHA_BLOCK 64u
#define CHACHA_MAX_BLOCKS (UINT64_C(1) << 32)
/* EVP_EncryptUpdate takes an int length: feed it at most this many bytes at a time. */
#define EVP_CHUNK_BYTES ((size_t)1 << 30)

struct fv_prg {
    fv_prg_kind_t kind;
    /* ChaCha20 */
    uint8_t key[FV_PRG_SEED_BYTES];
    uint64_t next_block;       /* counter of the next block to generate */
    uint8_t buf[CHACHA_BLOCK]; /* the last generated block, partly consumed */
    unsigned buf_pos;          /* bytes of buf already handed out; CHACHA_BLOCK: empty */
    /* AES-256-CTR */
    EVP_CIPHER_CTX *evp;
};

static const uint8_t zero_nonce12[crypto_stream_chacha20_ietf_NONCEBYTES];

/* Stream bytes -> words: identity on little-endian hosts. */
static void words_from_le(uint32_t *w, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++)
        w[i] = __builtin_bswap32(w[i]);
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void)w;
    (void)n;
#else
#error "prg.c: unknown byte order; define the keystream-to-word conversion for this host"
#endif
}

int fv_prg_new(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], fv_prg_t **ret)
{
    return fv_prg_new_at(kind, seed, 0, ret);
}

static int chacha_next(fv_prg_t *p, uint8_t *out, size_t len);

int fv_prg_new_at(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], uint64_t first,
                  fv_prg_t **ret)
{
    fv_prg_t *p;
    uint8_t iv[16], skip[64];
    unsigned skip_bytes;

    if (seed == NULL || ret == NULL)
        return FV_EINVAL;
    if (kind != FV_PRG_CHACHA20 && kind != FV_PRG_AES256CTR && kind != FV_PRG_AES128CTR)
        return FV_EINVAL;
    if (kind == FV_PRG_CHACHA20 && first / (CHACHA_BLOCK / 4) >= CHACHA_MAX_BLOCKS)
        return FV_ERANGE;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return FV_ENOMEM;
    p->kind = kind;
    if (kind == FV_PRG_CHACHA20) {
        memcpy(p->key, seed, sizeof p->key);
        p->next_block = first / (CHACHA_BLOCK / 4);
        p->buf_pos = CHACHA_BLOCK;
        skip_bytes = (unsigned)(first % (CHACHA_BLOCK / 4)) * 4;
        if (skip_bytes > 0 && chacha_next(p, skip, skip_bytes) != 0) {
            fv_prg_free(p);
            return FV_ERANGE;
        }
    } else {
        /* The IV is the 128-bit big-endian block counter: block first / 4. */
        uint64_t blk = first / 4;
        memset(iv, 0, sizeof iv);
        for (int i = 0; i < 8; i++)
            iv[15 - i] = (uint8_t)(blk >> (8 * i));
        skip_bytes = (unsigned)(first % 4) * 4;
        p->evp = EVP_CIPHER_CTX_new();
        if (p->evp == NULL) {
            free(p);
            return FV_ENOMEM;
        }
        const EVP_CIPHER *ciph = kind == FV_PRG_AES128CTR ? EVP_aes_128_ctr() : EVP_aes_256_ctr();
        if (EVP_EncryptInit_ex(p->evp, ciph, NULL, seed, iv) != 1) {
            fv_prg_free(p);
            return FV_ENOTSUP;
        }
        int outl = 0;
        memset(skip, 0, sizeof skip);
        if (skip_bytes > 0 && (EVP_EncryptUpdate(p->evp, skip, &outl, skip, (int)skip_bytes) != 1 ||
                               (unsigned)outl != skip_bytes)) {
            fv_prg_free(p);
            return FV_EIO;
        }
    }
    sodium_memzero(skip, sizeof skip);
    *ret = p;
    return 0;
}

void fv_prg_free(fv_prg_t *p)
{
    if (p == NULL)
        return;
    EVP_CIPHER_CTX_free(p->evp); /* NULL-safe; clears the key schedule */
    sodium_memzero(p, sizeof *p);
    free(p);
}

static int chacha_next(fv_prg_t *p, uint8_t *out, size_t len)
{
    size_t avail = CHACHA_BLOCK - p->buf_pos;
    size_t take = len < avail ? len : avail;
    size_t full, rem;
    uint64_t need;

    /* Check the counter range before writing anything. */
    need = (len - take + CHACHA_BLOCK - 1) / CHACHA_BLOCK;
    if (need > CHACHA_MAX_BLOCKS - p->next_block)
        return FV_ERANGE;

    memcpy(out, p->buf + p->buf_pos, take);
    p->buf_pos += (unsigned)take;
    out += take;
    len -= take;

    full = len / CHACHA_BLOCK;
    rem = len % CHACHA_BLOCK;
    if (full > 0) {
        /* In place over zeros gives the keystream; libsodium's own
         * crypto_stream_chacha20_ietf() does the same, but only from counter 0. */
        memset(out, 0, full * CHACHA_BLOCK);
        crypto_stream_chacha20_ietf_xor_ic(out, out, (unsigned long long)full * CHACHA_BLOCK,
                                           zero_nonce12, (uint32_t)p->next_block, p->key);
        p->next_block += full;
        out += full * CHACHA_BLOCK;
    }
    if (rem > 0) {
        memset(p->buf, 0, sizeof p->buf);
        crypto_stream_chacha20_ietf_xor_ic(p->buf, p->buf, sizeof p->buf, zero_nonce12,
                                           (uint32_t)p->next_block, p->key);
        p->next_block++;
        memcpy(out, p->buf, rem);
        p->buf_pos = (unsigned)rem;
    }
    return 0;
}

static int aes_next(fv_prg_t *p, uint8_t *out, size_t len)
{
    memset(out, 0, len);
    while (len > 0) {
        size_t chunk = len < EVP_CHUNK_BYTES ? len : EVP_CHUNK_BYTES;
        int outl = 0;
        if (EVP_EncryptUpdate(p->evp, out, &outl, out, (int)chunk) != 1 || (size_t)outl != chunk)
            return FV_EIO; /* not expected from a software cipher; never silently short */
        out += chunk;
        len -= chunk;
    }
    return 0;
}

int fv_prg_next_u32(fv_prg_t *p, uint32_t *out, size_t n)
{
    int rc;

    if (p == NULL || (out == NULL && n > 0))
        return FV_EINVAL;
    if (n == 0)
        return 0;
    if (n > SIZE_MAX / sizeof(uint32_t))
        return FV_ERANGE;
    if (p->kind == FV_PRG_CHACHA20)
        rc = chacha_next(p, (uint8_t *)out, n * sizeof(uint32_t));
    else
        rc = aes_next(p, (uint8_t *)out, n * sizeof(uint32_t));
    if (rc == 0)
        words_from_le(out, n);
    return rc;
}

int fv_prg_expand_u32(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], uint32_t *out,
                      size_t n)
{
    fv_prg_t *p = NULL;
    int rc = fv_prg_new(kind, seed, &p);
    if (rc != 0)
        return rc;
    rc = fv_prg_next_u32(p, out, n);
    fv_prg_free(p);
    return rc;
}

/* fv_keystream_fn over a fv_prg_t, for fv_mask_accumulate. */
static int prg_keystream(void *state, uint32_t *out, size_t n)
{
    return fv_prg_next_u32(state, out, n);
}

int fv_prg_mask_add(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], int sign,
                    uint32_t *acc, size_t n)
{
    return fv_prg_mask_add_at(kind, seed, sign, acc, n, 0);
}

int fv_prg_mask_add_at(fv_prg_kind_t kind, const uint8_t seed[FV_PRG_SEED_BYTES], int sign,
                       uint32_t *acc, size_t n, uint64_t first)
{
    fv_prg_t *p = NULL;
    int rc;

    if (sign != 1 && sign != -1)
        return FV_EINVAL;
    if (acc == NULL && n > 0)
        return FV_EINVAL;
    /* A ChaCha20 stream ends after 2^36 words: refuse before touching acc. */
    if (kind == FV_PRG_CHACHA20 && (first > CHACHA_MAX_BLOCKS * (CHACHA_BLOCK / 4) ||
                                    (uint64_t)n > CHACHA_MAX_BLOCKS * (CHACHA_BLOCK / 4) - first))
        return FV_ERANGE;
    rc = fv_prg_new_at(kind, seed, first, &p);
    if (rc != 0)
        return rc;
    /* Keystream in FV_MASK_BLOCK_WORDS (16 KiB) blocks, each added while still in L1/L2;
     * the kernel wipes its block buffer. */
    rc = fv_mask_accumulate(acc, n, sign, prg_keystream, p);
    fv_prg_free(p);
    return rc;
}
