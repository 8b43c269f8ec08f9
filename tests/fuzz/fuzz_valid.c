/* fuzz_valid.c - fuzz target for the decoders of input validation (protocols/fv_valid.h):
 * fv_valid_holder_check on arbitrary header and payload bytes, fv_valid_decide on
 * arbitrary vshares (and header), fv_valid_aggregate on arbitrary aggshares.
 *
 * Every one of these bytes comes from a peer: the header and payload from the prover,
 * vshares and aggshares from the holders. The statement, cohort and context are fixed and
 * tiny (fuzz_valid_spec.h, which also gives the input format), so the target is fast and
 * the seeds (gen_valid_corpus.c, real messages) reach the checks past the decoding.
 * Each input runs twice, the second time with what a hostile sender can always make
 * right made right (as fuzz_model recomputes its checksum): the header's ctx and the
 * holder's three stage hashes recomputed over the payload, every vshare's header hash,
 * every aggshare's sum_id; then the refusals left are FV_EPROTO (holder check) and never
 * FV_EROUND (decide, aggregate), and mutations reach the element decoding, the openings
 * and the interpolation.
 *
 * Properties besides "no crash, no leak, no sanitizer report" (a violation abort()s):
 *   - every refusal is one of the codes the header promises for peer bytes: holder check
 *     FV_EPROTO, FV_EROUND, FV_EAUTH (FV_EINVAL only for a holder index outside 1..n, the
 *     caller's argument); decide FV_EPROTO, FV_EROUND, FV_ETHRESHOLD, FV_EDUP (a holder
 *     twice; valid.c's code, not listed in the header); aggregate FV_EPROTO,
 *     FV_EROUND, FV_EAUTH, FV_ETHRESHOLD; never FV_ENOMEM (the inputs are small);
 *   - a refused holder check hands nothing out (the output pointers keep their sentinel),
 *     a passed one gives a vshare of exactly the layout's size and a held share of x;
 *   - every refusal fills its diagnostic sentence;
 *   - a verdict has a NUL-terminated check name, n_used between t and the vshares given,
 *     an outlier in 0..n; an aggregation's outlier is in 0..n and its sums centred.
 * Everything is released (leaks are bugs).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fuzz_valid_spec.h"
#include "fv_crypto.h"
#include "fv_gf61.h"
#include "fv_valid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct rd {
    const uint8_t *p;
    size_t left;
} rd_t;

static uint32_t rd_u8(rd_t *r)
{
    if (r->left == 0)
        return 0;
    r->left--;
    return *r->p++;
}

static uint32_t rd_u16(rd_t *r)
{
    uint32_t lo = rd_u8(r);
    return lo | rd_u8(r) << 8;
}

/* len bytes (cut to what is left) as a buffer of exactly that size, so ASan sees a read
 * past its end. Caller frees (malloc(0) may be NULL: then *ret_len is 0). */
static uint8_t *rd_bytes(rd_t *r, size_t len, size_t *ret_len)
{
    if (len > r->left)
        len = r->left;
    uint8_t *b = malloc(len ? len : 1);
    if (b == NULL)
        abort();
    memcpy(b, r->p, len);
    r->p += len;
    r->left -= len;
    *ret_len = len;
    return b;
}

/* H{k}_x of the payload into the header (fv_valid.h: SHA-256("fv-valid share v1" | ctx |
 * u32 x | u32 k | stage k); the label with its NUL, as valid.c hashes it), and ctx. */
static void fix_header(const fuzz_valid_spec_t *f, const fv_valid_layout_t *l, uint32_t x,
                       uint8_t *hdr, const uint8_t *pl)
{
    static const char label[] = "fv-valid share v1";
    size_t off[3] = {0, (size_t)l->s1 * 8, ((size_t)l->s1 + l->s2) * 8};
    size_t len[3] = {(size_t)l->s1 * 8, (size_t)l->s2 * 8, (size_t)l->s3 * 8};
    memcpy(hdr + 16, f->ctx, FV_HASH_BYTES);
    for (uint32_t k = 1; k <= 3; k++) {
        crypto_hash_sha256_state st;
        uint8_t b[8] = {
            (uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16), (uint8_t)(x >> 24), (uint8_t)k, 0, 0,
            0};
        crypto_hash_sha256_init(&st);
        crypto_hash_sha256_update(&st, (const uint8_t *)label, sizeof label);
        crypto_hash_sha256_update(&st, f->ctx, FV_HASH_BYTES);
        crypto_hash_sha256_update(&st, b, 8);
        crypto_hash_sha256_update(&st, pl + off[k - 1], len[k - 1]);
        crypto_hash_sha256_final(&st, hdr + FV_VALID_HEADER_FIXED + (size_t)(x - 1) * 96 +
                                          (size_t)(k - 1) * 32);
    }
}

/* fixed: ctx and the hashes were recomputed, so only FV_EPROTO (or success) is possible. */
static void check_holder(const fuzz_valid_spec_t *f, const fv_valid_layout_t *l, uint32_t x,
                         const uint8_t *hdr, size_t hlen, const uint8_t *pl, size_t plen,
                         bool fixed)
{
    fv_valid_held_t *const h_sentinel = (fv_valid_held_t *)&hlen;
    uint8_t *const v_sentinel = (uint8_t *)&plen;
    fv_valid_held_t *held = h_sentinel;
    uint8_t *vs = v_sentinel;
    size_t vlen = 12345;
    fv_diag_t d = {""};
    int rc = fv_valid_holder_check(&f->spec, FUZZ_VALID_N, FUZZ_VALID_T, x, f->ctx, hdr, hlen, pl,
                                   plen, &held, &vs, &vlen, &d);
    if (rc == 0) {
        if (x < 1 || x > FUZZ_VALID_N || held == h_sentinel || held == NULL || vs == v_sentinel ||
            vs == NULL || vlen != l->vshare_bytes || fv_valid_held_x(held) != x)
            abort();
        fv_valid_held_free(held);
        free(vs);
        return;
    }
    if (held != h_sentinel || vs != v_sentinel || vlen != 12345)
        abort(); /* out-parameters written only on success */
    bool x_ok = x >= 1 && x <= FUZZ_VALID_N;
    if (rc != FV_EPROTO && rc != FV_EROUND && rc != FV_EAUTH && !(rc == FV_EINVAL && !x_ok))
        abort();
    if (fixed && rc != FV_EPROTO)
        abort();
    if (memchr(d.msg, 0, sizeof d.msg) == NULL || d.msg[0] == '\0')
        abort(); /* a refusal says why */
}

/* As is, then (when the sizes fit) with ctx and the holder's hashes recomputed, as a
 * hostile prover can always do, so mutations reach the element decoding and the
 * openings. */
static void fuzz_holder(const fuzz_valid_spec_t *f, const fv_valid_layout_t *l, rd_t *r)
{
    uint32_t x = rd_u8(r) % (FUZZ_VALID_N + 2);
    size_t hlen, plen;
    uint8_t *hdr = rd_bytes(r, rd_u16(r), &hlen);
    uint8_t *pl = rd_bytes(r, r->left, &plen);
    check_holder(f, l, x, hdr, hlen, pl, plen, false);
    if (x >= 1 && x <= FUZZ_VALID_N && hlen == l->header_bytes && plen == l->payload_bytes) {
        fix_header(f, l, x, hdr, pl);
        check_holder(f, l, x, hdr, hlen, pl, plen, true);
    }
    free(hdr);
    free(pl);
}

static void decide_once(const fuzz_valid_spec_t *f, const uint8_t *hdr, size_t hlen,
                        uint8_t *const *vs, const size_t *lens, uint32_t count, bool fixed)
{
    fv_valid_verdict_t v;
    memset(&v, 0xa5, sizeof v);
    fv_diag_t d = {""};
    int rc = fv_valid_decide(&f->spec, FUZZ_VALID_N, FUZZ_VALID_T, hdr, hlen,
                             (const uint8_t *const *)vs, lens, count, &v, &d);
    if (rc == 0) {
        if (memchr(v.check, 0, sizeof v.check) == NULL || v.outlier > FUZZ_VALID_N ||
            v.n_used < FUZZ_VALID_T || v.n_used > count)
            abort();
        if (v.ok && v.outlier == 0 && v.n_used != count)
            abort(); /* an accepted proof used every vshare it was given but an outlier */
    } else if ((rc != FV_EPROTO && rc != FV_EROUND && rc != FV_ETHRESHOLD && rc != FV_EDUP) ||
               d.msg[0] == '\0') {
        abort();
    }
    if (fixed && rc == FV_EROUND)
        abort(); /* every vshare names this header */
}

static void fuzz_decide(const fuzz_valid_spec_t *f, rd_t *r)
{
    size_t hlen;
    uint8_t *hdr = rd_bytes(r, rd_u16(r), &hlen);
    uint32_t count = rd_u8(r) % (FUZZ_VALID_MAX_COUNT + 1);
    uint8_t *vs[FUZZ_VALID_MAX_COUNT] = {NULL};
    size_t lens[FUZZ_VALID_MAX_COUNT] = {0};
    for (uint32_t i = 0; i < count; i++)
        vs[i] = rd_bytes(r, rd_u16(r), &lens[i]);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 1: every vshare's header hash set to this header's (the holders' part) */
        if (pass == 1) {
            uint8_t hh[FV_HASH_BYTES];
            crypto_hash_sha256(hh, hdr, hlen);
            for (uint32_t i = 0; i < count; i++)
                if (lens[i] >= 4 + FV_HASH_BYTES)
                    memcpy(vs[i] + 4, hh, FV_HASH_BYTES);
        }
        decide_once(f, hdr, hlen, vs, lens, count, pass == 1);
    }
    for (uint32_t i = 0; i < count; i++)
        free(vs[i]);
    free(hdr);
}

static void aggregate_once(const fuzz_valid_spec_t *f, const fv_valid_layout_t *l,
                           uint8_t *const *s, const size_t *lens, uint32_t count, bool fixed)
{
    int64_t out[FUZZ_VALID_DIM];
    uint32_t outlier = 99;
    fv_diag_t d = {""};
    int rc =
        fv_valid_aggregate(l, f->sum_id, (const uint8_t *const *)s, lens, count, out, &outlier, &d);
    if (rc == 0) {
        if (outlier > FUZZ_VALID_N || count < FUZZ_VALID_T)
            abort();
        for (uint32_t j = 0; j < FUZZ_VALID_DIM; j++)
            if (out[j] > (int64_t)(FV_GF_P / 2) || out[j] < -(int64_t)(FV_GF_P / 2))
                abort();
    } else if ((rc != FV_EPROTO && rc != FV_EROUND && rc != FV_EAUTH && rc != FV_ETHRESHOLD) ||
               d.msg[0] == '\0' || (fixed && rc == FV_EROUND)) {
        abort();
    }
}

/* As is, then with every share's sum_id set to the expected one. */
static void fuzz_aggregate(const fuzz_valid_spec_t *f, const fv_valid_layout_t *l, rd_t *r)
{
    uint32_t count = rd_u8(r) % (FUZZ_VALID_MAX_COUNT + 1);
    uint8_t *s[FUZZ_VALID_MAX_COUNT] = {NULL};
    size_t lens[FUZZ_VALID_MAX_COUNT] = {0};
    for (uint32_t i = 0; i < count; i++)
        s[i] = rd_bytes(r, rd_u16(r), &lens[i]);
    aggregate_once(f, l, s, lens, count, false);
    for (uint32_t i = 0; i < count; i++)
        if (lens[i] >= 4 + FV_HASH_BYTES)
            memcpy(s[i] + 4, f->sum_id, FV_HASH_BYTES);
    aggregate_once(f, l, s, lens, count, true);
    for (uint32_t i = 0; i < count; i++)
        free(s[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fuzz_valid_spec_t f;
    static fv_valid_layout_t l;
    static int ready;
    if (!ready) {
        if (fv_crypto_init() != 0)
            abort();
        fuzz_valid_spec_init(&f);
        if (fv_valid_layout_init(&f.spec, FUZZ_VALID_N, FUZZ_VALID_T, &l, NULL) != 0)
            abort();
        ready = 1;
    }
    rd_t r = {data, size};
    switch (rd_u8(&r) % FUZZ_VALID_MODES) {
    case 0:
        fuzz_holder(&f, &l, &r);
        break;
    case 1:
        fuzz_decide(&f, &r);
        break;
    default:
        fuzz_aggregate(&f, &l, &r);
        break;
    }
    return 0;
}
