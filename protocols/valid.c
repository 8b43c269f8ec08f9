/* valid.c - input validation under secure aggregation: prover, holder check, decision,
 * aggregation on the shares. The construction, the messages and the argument are at the
 * top of fv_valid.h; this file follows them.
 *
 * Notes on this implementation:
 * - Pure: no I/O, no clock, no threads, no globals except the thread-local work counters.
 *   Randomness only from the injected fv_rand_t (prover) and the public challenges.
 * - Shared values are indexed as in the header: [w: D][range bits][slack bits] (stage 1)
 *   [projection bits] (stage 2) [a: m][b: m][P(0..2L)][psi] (stage 3). The bits of all
 *   kinds are therefore one contiguous run [D, D + K).
 * - The prover's values, blinds and payloads are secret: heap buffers wiped before they
 *   are freed (fv_crypto_wipe; at d = 250K and n = 10 the payloads are 20 MB, too big for
 *   sodium_malloc's locked pages). Shares a holder keeps are wiped on free as well.
 * - The heavy loop is the prover's extension of the 2m wire polynomials from L+1 to 2L+1
 *   points: a fixed (L x (L+1)) matrix of Lagrange weights (nodes 0..L, targets L+1..2L)
 *   times each wire's values, with 128-bit accumulators reduced every 64 products.
 * - Lagrange weights at consecutive nodes 0..M: l_c(X) = N(X) w_c / (X - c), N(X) =
 *   prod_k (X - k), w_c = (-1)^(M-c) / (c! (M-c)!), the inverses by one batch inversion.
 * - Interpolation of the holders' answers (vshares, aggshares) uses the first t holders
 *   and checks every further one at its own x; a single disagreeing holder is located by
 *   leaving each one out in turn (needs t + 2 answers).
 */
#include "fv_valid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_gf61.h"
#include "secagg-int.h"

#define MAGIC_HDR "FVV1"
#define MAGIC_VSH "FVV2"
#define MAGIC_AGG "FVV3"
#define VSH_FIXED (4 + 32 + 4)
#define N_TAIL 6 /* P(r), sigma_norm, sigma_bits, l_proj, xi, sigma_sq */
#define AGG_FIXED (4 + 32 + 4 + 4)

static _Thread_local fv_valid_stats_t g_stats;

void fv_valid_last_stats(fv_valid_stats_t *ret)
{
    *ret = g_stats;
}

/* ---- small helpers ------------------------------------------------------------------- */

#define put_u32 fv__put_u32
#define get_u32 fv__get_u32
#define put_u64 fv__put_u64
#define get_u64 fv__get_u64

/* n elements from bytes; FV_EPROTO on a non-canonical one (index in *bad). */
static int get_elems(const uint8_t *b, size_t n, uint64_t *out, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = get_u64(b + 8 * i);
        if (out[i] >= FV_GF_P) {
            *bad = i;
            return FV_EPROTO;
        }
    }
    return 0;
}

static void put_elems(uint8_t *b, const uint64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_u64(b + 8 * i, v[i]);
}

static void wipe_free(void *p, size_t len)
{
    if (p) {
        fv_crypto_wipe(p, len);
        free(p);
    }
}

static uint32_t bitlen(uint64_t v)
{
    uint32_t b = 0;
    while (v) {
        b++;
        v >>= 1;
    }
    return b;
}

/* Uniform field elements from a seeded stream: 61-bit draws, p rejected. */
static void draw_elems(fv_rand_t *r, uint64_t *out, size_t n)
{
    uint8_t buf[512];
    size_t i = 0;
    while (i < n) {
        size_t want = n - i < 64 ? n - i : 64;
        fv_rand_fill(r, buf, 8 * want);
        for (size_t k = 0; k < want; k++) {
            uint64_t v = get_u64(buf + 8 * k) & FV_GF_P;
            if (v != FV_GF_P)
                out[i++] = v;
        }
    }
    fv_crypto_wipe(buf, sizeof(buf));
}

/* seed' = SHA-256(label | seed), a stream for one use of a challenge. */
static void derive(fv_rand_t *r, const char *label, const uint8_t seed[32], uint32_t index)
{
    crypto_hash_sha256_state st;
    uint8_t out[32], ib[4];
    put_u32(ib, index);
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)label, strlen(label) + 1);
    crypto_hash_sha256_update(&st, seed, 32);
    crypto_hash_sha256_update(&st, ib, 4);
    crypto_hash_sha256_final(&st, out);
    fv_rand_seeded(r, out);
}

/* ---- layout ------------------------------------------------------------------------- */

int fv_valid_layout_init(const fv_valid_spec_t *spec, uint32_t n, uint32_t t,
                         fv_valid_layout_t *ret, fv_diag_t *d)
{
    memset(ret, 0, sizeof(*ret));
    if (n < 1 || n > FV_VALID_MAX_HOLDERS || t < 1 || t > n || 2 * t <= n)
        return fv_diag_set(d, FV_EINVAL,
                           "validation: holders n=%u threshold t=%u: need 2t > n, "
                           "t <= n <= %u",
                           n, t, FV_VALID_MAX_HOLDERS);
    if (spec->dim < 1 || spec->dim > FV_VALID_MAX_DIM)
        return fv_diag_set(d, FV_EINVAL, "validation: dim %u outside 1..%u", spec->dim,
                           FV_VALID_MAX_DIM);
    if (spec->norm_len > spec->dim || spec->norm_off > spec->dim - spec->norm_len)
        return fv_diag_set(d, FV_EINVAL, "validation: norm block [%u, +%u) outside dim %u",
                           spec->norm_off, spec->norm_len, spec->dim);
    if (spec->norm_len > 0 && (spec->norm_sq < 1 || spec->norm_sq >= (UINT64_C(1) << 60)))
        return fv_diag_set(d, FV_EINVAL, "validation: norm_sq %llu outside 1..2^60",
                           (unsigned long long)spec->norm_sq);
    if (spec->n_ranges > FV_VALID_MAX_RANGES || spec->n_equal > FV_VALID_MAX_RANGES)
        return fv_diag_set(d, FV_EINVAL, "validation: more than %u ranges or equalities",
                           FV_VALID_MAX_RANGES);
    uint8_t *cover = calloc(spec->dim, 1);
    if (!cover)
        return FV_ENOMEM;
    for (uint32_t j = 0; j < spec->norm_len; j++)
        cover[spec->norm_off + j] = 1;
    uint64_t range_bits = 0;
    int rc = 0;
    for (uint32_t kind = 0; kind < 2 && rc == 0; kind++) {
        const fv_valid_affine_t *arr = kind ? spec->equal : spec->ranges;
        uint32_t cnt = kind ? spec->n_equal : spec->n_ranges;
        for (uint32_t i = 0; i < cnt && rc == 0; i++) {
            const fv_valid_affine_t *a = &arr[i];
            if (kind == 0 && (a->bits < 1 || a->bits > FV_VALID_MAX_RANGE_BITS))
                rc = fv_diag_set(d, FV_EINVAL, "validation: range '%.*s': bits %u outside 1..%u",
                                 FV_VALID_NAME_MAX, a->name, a->bits, FV_VALID_MAX_RANGE_BITS);
            if (a->n_terms > FV_VALID_MAX_DIM || (a->n_terms && !a->terms))
                rc = fv_diag_set(d, FV_EINVAL, "validation: '%.*s': bad terms", FV_VALID_NAME_MAX,
                                 a->name);
            if (a->constant > (int64_t)(UINT64_C(1) << 60) ||
                a->constant < -(int64_t)(UINT64_C(1) << 60))
                rc = fv_diag_set(d, FV_EINVAL, "validation: '%.*s': constant beyond 2^60",
                                 FV_VALID_NAME_MAX, a->name);
            for (uint32_t k = 0; rc == 0 && k < a->n_terms; k++) {
                const fv_valid_term_t *tm = &a->terms[k];
                if (tm->index >= spec->dim || tm->coef > (int64_t)(UINT64_C(1) << 60) ||
                    tm->coef < -(int64_t)(UINT64_C(1) << 60))
                    rc = fv_diag_set(d, FV_EINVAL,
                                     "validation: '%.*s': term %u (index %u, coef %lld) invalid",
                                     FV_VALID_NAME_MAX, a->name, k, tm->index, (long long)tm->coef);
                else if (kind == 0 && tm->coef != 0)
                    cover[tm->index] = 1;
            }
            if (kind == 0)
                range_bits += a->bits;
        }
    }
    if (rc == 0 &&
        (spec->n_nonneg > FV_VALID_MAX_DIM / 4 || (spec->n_nonneg && !spec->nonneg) ||
         (spec->n_nonneg && (spec->nonneg_sum < 1 || spec->nonneg_sum >= (UINT64_C(1) << 40)))))
        rc = fv_diag_set(d, FV_EINVAL, "validation: %u non-negative words with sum bound %llu",
                         spec->n_nonneg, (unsigned long long)spec->nonneg_sum);
    for (uint32_t i = 0; rc == 0 && i < spec->n_nonneg; i++) {
        if (spec->nonneg[i] >= spec->dim)
            rc = fv_diag_set(d, FV_EINVAL, "validation: non-negative word %u outside dim %u",
                             spec->nonneg[i], spec->dim);
        else
            cover[spec->nonneg[i]] = 1;
    }
    for (uint32_t j = 0; rc == 0 && j < spec->dim; j++)
        if (!cover[j])
            rc = fv_diag_set(d, FV_EINVAL,
                             "validation: word %u is in no norm block, range or non-negative set",
                             j);
    free(cover);
    if (rc)
        return rc;
    ret->n = n;
    ret->t = t;
    ret->d = spec->norm_len;
    ret->n_range_bits = (uint32_t)range_bits;
    if (ret->d > 0) {
        ret->bs = bitlen(spec->norm_sq);
        uint64_t B = (uint64_t)ceil(sqrt((double)spec->norm_sq));
        while (B * B < spec->norm_sq)
            B++;
        while (B > 0 && (B - 1) * (B - 1) >= spec->norm_sq)
            B--;
        ret->bp = 1 + bitlen(8 * B - 1); /* 2^(bp-1) >= 8B */
        ret->n_proj_bits = FV_VALID_PROJ * ret->bp;
        /* Wraparound: every |z_j| <= 2^bp after the projections; sum z^2 + slack < p. */
        long double lhs = (long double)ret->d * powl(2.0L, 2.0L * ret->bp) + powl(2.0L, ret->bs);
        if (ret->bp > 28 || lhs >= (long double)FV_GF_P)
            return fv_diag_set(d, FV_EINVAL,
                               "validation: norm block of %u words with bound^2 %llu can wrap "
                               "GF(2^61-1) (d * 2^(2*%u) + 2^%u >= p): lower the bound's "
                               "resolution",
                               ret->d, (unsigned long long)spec->norm_sq, ret->bp, ret->bs);
    }
    if (spec->n_nonneg > 0) {
        ret->n_wit = 4 * spec->n_nonneg;
        uint64_t B = (uint64_t)ceil(sqrt((double)spec->nonneg_sum));
        while (B * B < spec->nonneg_sum)
            B++;
        ret->bpw = 1 + bitlen(8 * B - 1);
        ret->n_wproj_bits = FV_VALID_PROJ * ret->bpw;
        /* each word, four squares of |w| <= 2^bpw, and any sum of them in an equality, must
         * stay an integer identity in the field */
        long double lhs = (long double)spec->n_nonneg * powl(2.0L, 2.0L * ret->bpw + 2.0L);
        if (lhs >= (long double)(UINT64_C(1) << 60))
            return fv_diag_set(d, FV_EINVAL,
                               "validation: %u non-negative words with sum bound %llu can wrap "
                               "GF(2^61-1)",
                               spec->n_nonneg, (unsigned long long)spec->nonneg_sum);
    }
    uint64_t K = range_bits + ret->bs + ret->n_proj_bits + ret->n_wproj_bits;
    uint64_t N = (uint64_t)ret->d + ret->n_wit + K;
    if (K > FV_VALID_MAX_DIM || N > 2 * (uint64_t)FV_VALID_MAX_DIM)
        return fv_diag_set(d, FV_EINVAL, "validation: %llu bits to prove, over the cap",
                           (unsigned long long)K);
    uint64_t m = (uint64_t)ceil(2.0 * sqrt((double)N));
    if (m < 1)
        m = 1;
    if (m > N)
        m = N;
    ret->m = (uint32_t)m;
    ret->K = (uint32_t)K;
    ret->n_norm_chunks = (uint32_t)((ret->d + m - 1) / m);
    ret->n_wit_chunks = (uint32_t)((ret->n_wit + m - 1) / m);
    ret->n_bit_chunks = (uint32_t)((K + m - 1) / m);
    ret->L = ret->n_norm_chunks + ret->n_wit_chunks + ret->n_bit_chunks;
    ret->s1 = spec->dim + ret->n_range_bits + ret->bs + ret->n_wit;
    ret->s2 = ret->n_proj_bits + ret->n_wproj_bits;
    ret->s3 = 2 * ret->m + 2 * ret->L + 1 + 1;
    ret->S = ret->s1 + ret->s2 + ret->s3;
    ret->header_bytes = FV_VALID_HEADER_FIXED + (size_t)96 * n;
    ret->payload_bytes = (size_t)ret->S * 8;
    ret->vshare_bytes =
        VSH_FIXED + (size_t)(2 * ret->m + N_TAIL + spec->n_ranges + spec->n_equal) * 8;
    ret->aggshare_bytes = AGG_FIXED + (size_t)spec->dim * 8;
    return 0;
}

/* Number of opened values in a vshare. */
static size_t n_open(const fv_valid_spec_t *spec, const fv_valid_layout_t *l)
{
    return 2 * (size_t)l->m + N_TAIL + spec->n_ranges + spec->n_equal;
}

/* ---- the statement in the clear ----------------------------------------------------- */

__extension__ typedef __int128 i128;

static i128 affine_eval(const fv_valid_affine_t *a, const int64_t *w)
{
    i128 v = a->constant;
    for (uint32_t k = 0; k < a->n_terms; k++)
        v += (i128)a->terms[k].coef * w[a->terms[k].index];
    return v;
}

int fv_valid_spec_eval(const fv_valid_spec_t *spec, const int64_t *w, fv_diag_t *d)
{
    if (spec->norm_len > 0) {
        i128 s = 0;
        for (uint32_t j = 0; j < spec->norm_len; j++) {
            int64_t z = w[spec->norm_off + j];
            if (z > (int64_t)1 << 30 || z < -((int64_t)1 << 30))
                return fv_diag_set(d, FV_ERANGE, "norm: word %u = %lld is beyond 2^30",
                                   spec->norm_off + j, (long long)z);
            s += (i128)z * z;
        }
        if (s > (i128)spec->norm_sq)
            return fv_diag_set(d, FV_ERANGE, "norm: sum of squares %.0Lf over the bound %llu",
                               (long double)s, (unsigned long long)spec->norm_sq);
    }
    i128 nsum = 0;
    for (uint32_t i = 0; i < spec->n_nonneg; i++) {
        int64_t v = w[spec->nonneg[i]];
        if (v < 0)
            return fv_diag_set(d, FV_ERANGE, "nonneg: word %u = %lld is negative", spec->nonneg[i],
                               (long long)v);
        nsum += v;
    }
    if (spec->n_nonneg > 0 && nsum > (i128)spec->nonneg_sum)
        return fv_diag_set(d, FV_ERANGE, "nonneg: the words sum to %.0Lf, over %llu",
                           (long double)nsum, (unsigned long long)spec->nonneg_sum);
    for (uint32_t i = 0; i < spec->n_ranges; i++) {
        i128 v = affine_eval(&spec->ranges[i], w);
        if (v < 0 || v >= (i128)1 << spec->ranges[i].bits)
            return fv_diag_set(d, FV_ERANGE, "%.*s: %.0Lf outside [0, 2^%u)", FV_VALID_NAME_MAX,
                               spec->ranges[i].name, (long double)v, spec->ranges[i].bits);
    }
    for (uint32_t i = 0; i < spec->n_equal; i++) {
        i128 v = affine_eval(&spec->equal[i], w);
        if (v != 0)
            return fv_diag_set(d, FV_ERANGE, "%.*s: off by %.0Lf", FV_VALID_NAME_MAX,
                               spec->equal[i].name, (long double)v);
    }
    return 0;
}

void fv_valid_context(const char *federation, uint64_t job_id, uint64_t round, uint32_t prover,
                      const uint8_t identity_pk[FV_SIGN_PK_BYTES], uint8_t ctx[FV_HASH_BYTES])
{
    static const char label[] = "fv-valid ctx v1";
    crypto_hash_sha256_state st;
    uint8_t b[8];
    size_t fl = federation ? strlen(federation) : 0;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)label, sizeof(label));
    put_u32(b, (uint32_t)fl);
    crypto_hash_sha256_update(&st, b, 4);
    if (fl)
        crypto_hash_sha256_update(&st, (const uint8_t *)federation, fl);
    put_u64(b, job_id);
    crypto_hash_sha256_update(&st, b, 8);
    put_u64(b, round);
    crypto_hash_sha256_update(&st, b, 8);
    put_u32(b, prover);
    crypto_hash_sha256_update(&st, b, 4);
    crypto_hash_sha256_update(&st, identity_pk, FV_SIGN_PK_BYTES);
    crypto_hash_sha256_final(&st, ctx);
}

/* ---- Lagrange weights ----------------------------------------------------------------- */

/* In-place inverses of n nonzero elements (Montgomery's trick); scratch holds n. */
static void batch_inv(uint64_t *a, size_t n, uint64_t *scratch)
{
    if (n == 0)
        return;
    uint64_t acc = 1;
    for (size_t i = 0; i < n; i++) {
        scratch[i] = acc;
        acc = fv_gf_mul(acc, a[i]);
    }
    uint64_t inv = fv_gf_inv(acc);
    for (size_t i = n; i-- > 0;) {
        uint64_t ai = a[i];
        a[i] = fv_gf_mul(inv, scratch[i]);
        inv = fv_gf_mul(inv, ai);
    }
}

/* Weights for nodes 0..M at X (X not in 0..M): out[M+1]. inv_fact[0..M] given. */
static void lagrange_consec(uint32_t M, uint64_t X, const uint64_t *inv_fact, uint64_t *out,
                            uint64_t *scratch)
{
    uint64_t NX = 1;
    for (uint32_t c = 0; c <= M; c++) {
        out[c] = fv_gf_sub(X, c);
        NX = fv_gf_mul(NX, out[c]);
    }
    batch_inv(out, (size_t)M + 1, scratch);
    for (uint32_t c = 0; c <= M; c++) {
        uint64_t wc = fv_gf_mul(inv_fact[c], inv_fact[M - c]);
        if ((M - c) & 1)
            wc = fv_gf_neg(wc);
        out[c] = fv_gf_mul(fv_gf_mul(NX, wc), out[c]);
    }
}

/* inv_fact[k] = 1/k! for k = 0..M. */
static int inv_factorials(uint32_t M, uint64_t **ret)
{
    uint64_t *f = malloc(((size_t)M + 1) * sizeof(*f));
    if (!f)
        return FV_ENOMEM;
    f[0] = 1;
    for (uint32_t k = 1; k <= M; k++)
        f[k] = fv_gf_mul(f[k - 1], k);
    uint64_t inv = fv_gf_inv(f[M]);
    for (uint32_t k = M; k > 0; k--) {
        uint64_t prev = fv_gf_mul(inv, k); /* 1/(k-1)! */
        f[k] = inv;
        inv = prev;
    }
    f[0] = 1;
    *ret = f;
    return 0;
}

/* Weights at target X for nodes xs[0..t) (distinct, X may be 0). */
static void lagrange_at(const uint32_t *xs, uint32_t t, uint64_t X, uint64_t *w)
{
    for (uint32_t i = 0; i < t; i++) {
        uint64_t num = 1, den = 1;
        for (uint32_t k = 0; k < t; k++) {
            if (k == i)
                continue;
            num = fv_gf_mul(num, fv_gf_sub(X, xs[k]));
            den = fv_gf_mul(den, fv_gf_sub(xs[i], xs[k]));
        }
        w[i] = fv_gf_mul(num, fv_gf_inv(den));
    }
}

/* ---- challenges ----------------------------------------------------------------------- */

typedef struct chal {
    uint8_t seed1[32], seed2[32], seed3[32];
} chal_t;

/* H{k}_x over stage k of a payload. */
static void stage_hash(const uint8_t ctx[32], uint32_t x, uint32_t k, const uint8_t *bytes,
                       size_t len, uint8_t out[32])
{
    static const char label[] = "fv-valid share v1";
    crypto_hash_sha256_state st;
    uint8_t b[4];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)label, sizeof(label));
    crypto_hash_sha256_update(&st, ctx, 32);
    put_u32(b, x);
    crypto_hash_sha256_update(&st, b, 4);
    put_u32(b, k);
    crypto_hash_sha256_update(&st, b, 4);
    crypto_hash_sha256_update(&st, bytes, len);
    crypto_hash_sha256_final(&st, out);
}

/* seed_k from the header's hashes (hashes: n x 96 bytes). */
static void seed_k(const char *label, const uint8_t prev[32], const uint8_t *hashes, uint32_t n,
                   uint32_t k, uint8_t out[32])
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)label, strlen(label) + 1);
    crypto_hash_sha256_update(&st, prev, 32);
    for (uint32_t x = 0; x < n; x++)
        crypto_hash_sha256_update(&st, hashes + (size_t)x * 96 + (size_t)(k - 1) * 32, 32);
    crypto_hash_sha256_final(&st, out);
}

/* All FV_VALID_PROJ projections y_l = <r_l, z> of d field elements (values or shares).
 * Projection l's trits come from its own ChaCha20 stream (seed SHA-256("fv-valid proj v1"
 * | seed1 | l)): coordinate j is bits 2(j mod 4)..+1 of byte j/4, read 0,1 -> 0, 2 -> +1,
 * 3 -> -1. z is walked in blocks of PROJ_BLOCK coordinates for all projections (z stays in
 * cache); each block takes PROJ_BLOCK/4 bytes of every stream, a multiple of ChaCha's
 * 64-byte block, so the streams read as if filled in one go. */
#define PROJ_BLOCK 4096u
static int projections(const char *label, const uint8_t seed1[32], const uint64_t *z, uint32_t d,
                       uint64_t *out)
{
    fv_rand_t *r = malloc(FV_VALID_PROJ * sizeof(*r));
    uint64_t *pos = calloc(2 * FV_VALID_PROJ, sizeof(*pos)), *neg = pos + FV_VALID_PROJ;
    uint8_t buf[PROJ_BLOCK / 4];
    if (!r || !pos) {
        free(r);
        free(pos);
        return FV_ENOMEM;
    }
    for (uint32_t l = 0; l < FV_VALID_PROJ; l++)
        derive(&r[l], label, seed1, l);
    for (uint32_t j0 = 0; j0 < d; j0 += PROJ_BLOCK) {
        uint32_t cnt = d - j0 < PROJ_BLOCK ? d - j0 : PROJ_BLOCK;
        const uint64_t *zb = z + j0;
        for (uint32_t l = 0; l < FV_VALID_PROJ; l++) {
            fv_rand_fill(&r[l], buf, sizeof(buf));
            uint64_t p = pos[l], q = neg[l];
            uint32_t full = cnt / 4;
            for (uint32_t b = 0; b < full; b++) {
                unsigned byte = buf[b];
                const uint64_t *zz = zb + 4 * b;
                for (unsigned k = 0; k < 4; k++) {
                    unsigned v = (byte >> (2 * k)) & 3;
                    p += zz[k] & ((uint64_t)0 - (uint64_t)(v == 2));
                    q += zz[k] & ((uint64_t)0 - (uint64_t)(v == 3));
                }
                /* four terms < 2^61 each on top of < 2^61 + 4: no overflow; fold */
                p = (p & FV_GF_P) + (p >> 61);
                q = (q & FV_GF_P) + (q >> 61);
            }
            for (uint32_t j = 4 * full; j < cnt; j++) {
                unsigned v = (buf[j / 4] >> (2 * (j & 3))) & 3;
                p += zb[j] & ((uint64_t)0 - (uint64_t)(v == 2));
                q += zb[j] & ((uint64_t)0 - (uint64_t)(v == 3));
            }
            pos[l] = (p & FV_GF_P) + (p >> 61);
            neg[l] = (q & FV_GF_P) + (q >> 61);
        }
    }
    for (uint32_t l = 0; l < FV_VALID_PROJ; l++)
        out[l] = fv_gf_sub(fv_gf_csub(pos[l]), fv_gf_csub(neg[l]));
    fv_crypto_wipe(pos, 2 * FV_VALID_PROJ * sizeof(*pos));
    free(pos);
    free(r);
    return 0;
}

/* r outside 0..2L, and the kappa / eta / rho streams. */
static uint64_t draw_r(const uint8_t seed3[32], uint32_t L)
{
    fv_rand_t r;
    derive(&r, "fv-valid r v1", seed3, 0);
    uint64_t v;
    do
        draw_elems(&r, &v, 1);
    while (v <= 2 * (uint64_t)L);
    return v;
}

/* ---- gadget index ----------------------------------------------------------------------- */

/* For chunk c (1..L) and slot j: the value index of u/v's entry, or -1 for a zero pad.
 * *kind: 0 the norm block (u = v = z), 1 a four-square witness (u = rho2[k/4] w, v = w;
 * *k its witness index), 2 a bit (u = rho[k] beta, v = beta; *k its bit index). Bits
 * k < n_range_bits + bs are stage 1's (after w), the others stage 2's. */
static int64_t gadget_entry(const fv_valid_spec_t *spec, const fv_valid_layout_t *l, uint32_t c,
                            uint32_t j, int *kind, uint64_t *k)
{
    if (c <= l->n_norm_chunks) {
        uint64_t idx = (uint64_t)(c - 1) * l->m + j;
        *kind = 0;
        return idx < l->d ? (int64_t)(spec->norm_off + idx) : -1;
    }
    c -= l->n_norm_chunks;
    if (c <= l->n_wit_chunks) {
        uint64_t kw = (uint64_t)(c - 1) * l->m + j;
        *kind = 1;
        *k = kw;
        return kw < l->n_wit ? (int64_t)(spec->dim + l->n_range_bits + l->bs + kw) : -1;
    }
    c -= l->n_wit_chunks;
    uint64_t kb = (uint64_t)(c - 1) * l->m + j, k1 = (uint64_t)l->n_range_bits + l->bs;
    *kind = 2;
    *k = kb;
    if (kb >= l->K)
        return -1;
    return kb < k1 ? (int64_t)(spec->dim + kb) : (int64_t)(l->s1 + (kb - k1));
}

/* ---- the linear openings (holder side; also the prover's self-consistency) ------------ */

typedef struct opened {
    uint64_t *f, *g; /* m each */
    uint64_t pr, sigma_norm, sigma_bits, l_proj, xi;
    uint64_t *l_range, *l_eq;
} opened_t;

static uint64_t affine_share(const fv_valid_affine_t *a, const uint64_t *s)
{
    uint64_t v = fv_gf_from_i64(a->constant);
    for (uint32_t k = 0; k < a->n_terms; k++)
        v = fv_gf_add(v, fv_gf_mul(fv_gf_from_i64(a->terms[k].coef), s[a->terms[k].index]));
    return v;
}

static uint64_t bits_value(const uint64_t *bits, uint32_t nb)
{
    uint64_t v = 0;
    for (uint32_t k = nb; k-- > 0;)
        v = fv_gf_add(fv_gf_add(v, v), bits[k]);
    return v;
}

/* All openings from one holder's share vector s[S] (or the prover's values). The
 * challenges come from the header's hashes. Returns FV_ENOMEM only. */
static int compute_openings(const fv_valid_spec_t *spec, const fv_valid_layout_t *l,
                            const chal_t *ch, const uint64_t *s, uint64_t *out)
{
    const uint32_t m = l->m, L = l->L;
    const uint64_t K = l->K;
    size_t R = spec->n_ranges, E = spec->n_equal;
    uint64_t *f = out, *g = out + m;
    uint64_t *tail = out + 2 * (size_t)m; /* pr, sigma_norm, sigma_bits, l_proj, xi, sigma_sq */
    uint64_t *l_range = tail + N_TAIL, *l_eq = l_range + R;
    uint64_t *rho = NULL, *lam = NULL, *mu = NULL, *scratch = NULL, *inv_fact = NULL;
    uint64_t *kappa = NULL, *eta = NULL, *rho2 = NULL;
    uint64_t proj[FV_VALID_PROJ];
    int rc = FV_ENOMEM;
    size_t S = l->S;

    rho = malloc((K ? K : 1) * sizeof(*rho));
    lam = malloc(((size_t)L + 1) * sizeof(*lam));
    mu = malloc(((size_t)2 * L + 1) * sizeof(*mu));
    scratch = malloc(((size_t)2 * L + 1) * sizeof(*scratch));
    kappa = malloc(S * sizeof(*kappa));
    eta = malloc(2 * FV_VALID_PROJ * sizeof(*eta));
    rho2 = malloc((spec->n_nonneg ? spec->n_nonneg : 1) * sizeof(*rho2));
    if (!rho || !lam || !mu || !scratch || !kappa || !eta || !rho2 ||
        inv_factorials(2 * L, &inv_fact) != 0)
        goto out;

    /* ranges and equalities */
    const uint64_t *bits = s + spec->dim;
    uint64_t off = 0;
    for (size_t i = 0; i < R; i++) {
        const fv_valid_affine_t *a = &spec->ranges[i];
        l_range[i] = fv_gf_sub(affine_share(a, s), bits_value(bits + off, a->bits));
        off += a->bits;
    }
    for (size_t i = 0; i < E; i++)
        l_eq[i] = affine_share(&spec->equal[i], s);

    /* norm slack and projections */
    uint64_t slack = 0, l_proj = 0;
    fv_rand_t er;
    derive(&er, "fv-valid eta v1", ch->seed3, 0);
    draw_elems(&er, eta, 2 * FV_VALID_PROJ);
    if (l->d > 0) {
        slack = bits_value(bits + l->n_range_bits, l->bs);
        const uint64_t *pbits = s + l->s1;
        uint64_t half = fv_gf_csub((uint64_t)1 << (l->bp - 1));
        if (projections("fv-valid proj v1", ch->seed1, s + spec->norm_off, l->d, proj) != 0)
            goto out;
        for (uint32_t p = 0; p < FV_VALID_PROJ; p++) {
            uint64_t y = fv_gf_add(proj[p], half);
            uint64_t link = fv_gf_sub(y, bits_value(pbits + (size_t)p * l->bp, l->bp));
            l_proj = fv_gf_add(l_proj, fv_gf_mul(eta[p], link));
        }
    }
    if (l->n_wit > 0) {
        /* the four-square witnesses' own wraparound check */
        const uint64_t *wpbits = s + l->s1 + l->n_proj_bits;
        uint64_t half = fv_gf_csub((uint64_t)1 << (l->bpw - 1));
        if (projections("fv-valid wproj v1", ch->seed1, s + spec->dim + l->n_range_bits + l->bs,
                        l->n_wit, proj) != 0)
            goto out;
        for (uint32_t p = 0; p < FV_VALID_PROJ; p++) {
            uint64_t y = fv_gf_add(proj[p], half);
            uint64_t link = fv_gf_sub(y, bits_value(wpbits + (size_t)p * l->bpw, l->bpw));
            l_proj = fv_gf_add(l_proj, fv_gf_mul(eta[FV_VALID_PROJ + p], link));
        }
    }

    /* gadget: rho, Lagrange weights at r */
    fv_rand_t rr;
    derive(&rr, "fv-valid rho v1", ch->seed2, 0);
    draw_elems(&rr, rho, K);
    derive(&rr, "fv-valid rho2 v1", ch->seed2, 0);
    draw_elems(&rr, rho2, spec->n_nonneg);
    uint64_t r = draw_r(ch->seed3, L);
    lagrange_consec(L, r, inv_fact, lam, scratch);
    lagrange_consec(2 * L, r, inv_fact, mu, scratch);
    const uint64_t *a_bl = s + l->s1 + l->s2, *b_bl = a_bl + m, *P = b_bl + m;
    for (uint32_t j = 0; j < m; j++) {
        f[j] = fv_gf_mul(lam[0], a_bl[j]);
        g[j] = fv_gf_mul(lam[0], b_bl[j]);
    }
    uint64_t rho_beta = 0;
    for (uint32_t c = 1; c <= L; c++) {
        for (uint32_t j = 0; j < m; j++) {
            int kind;
            uint64_t k = 0;
            int64_t idx = gadget_entry(spec, l, c, j, &kind, &k);
            if (idx < 0)
                continue;
            uint64_t v = s[idx];
            uint64_t u = kind == 2   ? fv_gf_mul(rho[k], v)
                         : kind == 1 ? fv_gf_mul(rho2[k / 4], v)
                                     : v;
            f[j] = fv_gf_add(f[j], fv_gf_mul(lam[c], u));
            g[j] = fv_gf_add(g[j], fv_gf_mul(lam[c], v));
            if (kind == 2)
                rho_beta = fv_gf_add(rho_beta, u);
        }
    }
    uint64_t pr = 0, qn = 0, qw = 0, qb = 0;
    for (uint32_t x = 0; x <= 2 * L; x++)
        pr = fv_gf_add(pr, fv_gf_mul(mu[x], P[x]));
    for (uint32_t c = 1; c <= L; c++) {
        if (c <= l->n_norm_chunks)
            qn = fv_gf_add(qn, P[c]);
        else if (c <= l->n_norm_chunks + l->n_wit_chunks)
            qw = fv_gf_add(qw, P[c]);
        else
            qb = fv_gf_add(qb, P[c]);
    }
    /* sigma_sq = sum_i rho2_i (sum of w_i's four squares - w_i): zero iff every
     * non-negative word is its witnesses' sum of squares */
    uint64_t rho_nn = 0;
    for (uint32_t i = 0; i < spec->n_nonneg; i++)
        rho_nn = fv_gf_add(rho_nn, fv_gf_mul(rho2[i], s[spec->nonneg[i]]));
    tail[0] = pr;
    tail[1] =
        l->d > 0 ? fv_gf_sub(fv_gf_add(qn, slack), fv_gf_from_i64((int64_t)spec->norm_sq)) : qn;
    tail[2] = fv_gf_sub(qb, rho_beta);
    tail[3] = l_proj;
    /* xi = psi + sum kappa_i s_i over the S - 1 other values */
    fv_rand_t kr;
    derive(&kr, "fv-valid kappa v1", ch->seed3, 0);
    draw_elems(&kr, kappa, S - 1);
    fv_u128 acc = 0;
    for (size_t i = 0; i < S - 1; i++) {
        acc += (fv_u128)kappa[i] * s[i];
        if ((i & 63) == 63)
            acc = fv_gf_reduce128(acc);
    }
    tail[4] = fv_gf_add(fv_gf_reduce128(acc), s[S - 1]);
    tail[5] = fv_gf_sub(qw, rho_nn);
    g_stats.holder_mul = (uint64_t)l->s1 + 3 * ((uint64_t)l->d + K) + 3 * (uint64_t)L + S;
    rc = 0;
out:
    fv_crypto_wipe(proj, sizeof(proj)); /* projections of our shares */
    free(rho);
    free(lam);
    free(mu);
    free(scratch);
    free(kappa);
    free(eta);
    free(rho2);
    free(inv_fact);
    return rc;
}

/* ---- prover ---------------------------------------------------------------------------- */

void fv_valid_proof_free(fv_valid_proof_t *p)
{
    if (!p)
        return;
    if (p->payloads)
        for (uint32_t i = 0; i < p->n; i++)
            wipe_free(p->payloads[i], p->payload_len);
    free(p->payloads);
    wipe_free(p->seeds, p->seeds ? (size_t)p->n * FV_VALID_SEED_BYTES : 0);
    free(p->header);
    free(p);
}

/* A seeded holder's whole share vector: S uniform elements from ChaCha20(seed), in value
 * order, as little-endian bytes (the one expansion both the prover and the holder run). */
static void expand_seed(const uint8_t seed[32], size_t S, uint8_t *payload)
{
    fv_rand_t r;
    uint64_t buf[64];
    fv_rand_seeded(&r, seed);
    for (size_t i0 = 0; i0 < S; i0 += 64) {
        size_t blk = S - i0 < 64 ? S - i0 : 64;
        draw_elems(&r, buf, blk);
        put_elems(payload + 8 * i0, buf, blk);
    }
    fv_crypto_wipe(buf, sizeof(buf));
    fv_crypto_wipe(&r, sizeof(r));
}

int fv_valid_expand_seed(const fv_valid_layout_t *l, const uint8_t seed[FV_VALID_SEED_BYTES],
                         uint8_t *payload)
{
    expand_seed(seed, l->S, payload);
    return 0;
}

/* Shares of values v[0..cnt) (value index base) for the computed holders x = t..n: the
 * polynomial through (0, v) and the seeded holders' shares (x = 1..t-1, already in their
 * payloads), evaluated at x with the weights W[(x - t) * t + k] of nodes 0..t-1. */
static void share_values(const uint64_t *v, size_t base, size_t cnt, uint32_t n, uint32_t t,
                         const uint64_t *W, uint8_t **payloads)
{
    for (size_t i = 0; i < cnt; i++) {
        size_t idx = base + i;
        for (uint32_t x = t; x <= n; x++) {
            const uint64_t *wx = W + (size_t)(x - t) * t;
            fv_u128 acc = (fv_u128)wx[0] * v[i];
            for (uint32_t k = 1; k < t; k++) {
                acc += (fv_u128)wx[k] * get_u64(payloads[k - 1] + 8 * idx);
                if ((k & 63) == 63)
                    acc = fv_gf_reduce128(acc);
            }
            put_u64(payloads[x - 1] + 8 * idx, fv_gf_reduce128(acc));
        }
    }
}

static int64_t isqrt64(int64_t v)
{
    int64_t r = (int64_t)sqrt((double)v);
    while (r > 0 && r * r > v)
        r--;
    while ((r + 1) * (r + 1) <= v)
        r++;
    return r;
}

/* v = a^2 + b^2 + c^2 + d^2 with a >= b >= c >= d >= 0 (Lagrange: one exists for every
 * v >= 0), by the usual search from the largest square down with its bounds (the
 * remainder after a must fit three squares of at most a: v - a^2 <= 3a^2, and so on); v
 * is a count here (below 2^40), so the search stops after a few steps. A negative v or
 * one of 2^40 or more leaves zeros (the proof then fails, as it should). */
static void four_squares(int64_t v, int64_t out[4])
{
    out[0] = out[1] = out[2] = out[3] = 0;
    if (v <= 0 || v >= ((int64_t)1 << 40))
        return;
    for (int64_t a = isqrt64(v); a >= 0 && v - a * a <= 3 * a * a; a--) {
        int64_t r1 = v - a * a;
        int64_t bmax = isqrt64(r1) < a ? isqrt64(r1) : a;
        for (int64_t b = bmax; b >= 0 && r1 - b * b <= 2 * b * b; b--) {
            int64_t r2 = r1 - b * b;
            int64_t cmax = isqrt64(r2) < b ? isqrt64(r2) : b;
            for (int64_t c = cmax; c >= 0 && r2 - c * c <= c * c; c--) {
                int64_t r3 = r2 - c * c, dd = isqrt64(r3);
                if (dd * dd == r3 && dd <= c) {
                    out[0] = a, out[1] = b, out[2] = c, out[3] = dd;
                    return;
                }
            }
        }
    }
}

/* Low nb bits of a field element's centred integer value, as elements. */
static void to_bits(i128 v, uint32_t nb, uint64_t *out)
{
    for (uint32_t k = 0; k < nb; k++)
        out[k] = (uint64_t)((v >> k) & 1);
}

static int prove_once(const fv_valid_spec_t *spec, const fv_valid_layout_t *l,
                      const uint8_t ctx[32], const int64_t *w, fv_rand_t *rng, bool check,
                      fv_valid_proof_t **ret, fv_diag_t *d)
{
    const uint32_t n = l->n, t = l->t, m = l->m, L = l->L;
    const uint64_t K = l->K;
    size_t S = l->S;
    int rc = FV_ENOMEM;
    uint64_t *val = calloc(S, sizeof(*val));
    uint64_t *rho2 = malloc((spec->n_nonneg ? spec->n_nonneg : 1) * sizeof(*rho2));
    uint64_t *W = malloc((size_t)(n - t + 1) * t * sizeof(*W));
    uint64_t *rho = malloc((K ? K : 1) * sizeof(*rho));
    uint64_t *E = NULL, *inv_fact = NULL, *scratch = malloc(((size_t)2 * L + 1) * sizeof(uint64_t));
    uint64_t *F = malloc(((size_t)2 * L + 1) * sizeof(uint64_t));
    uint64_t *G = malloc(((size_t)2 * L + 1) * sizeof(uint64_t));
    fv_valid_proof_t *p = calloc(1, sizeof(*p));
    if (!val || !rho2 || !W || !rho || !scratch || !F || !G || !p)
        goto out;
    p->n = n;
    p->payload_len = l->payload_bytes;
    p->header_len = l->header_bytes;
    p->payloads = calloc(n, sizeof(*p->payloads));
    p->header = malloc(p->header_len);
    if (!p->payloads || !p->header)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        if (!(p->payloads[i] = malloc(p->payload_len)))
            goto out;
    /* holders 1..t-1 get a seed; their shares of every value are its expansion */
    p->n_seeded = t - 1;
    if (!(p->seeds = calloc(n, FV_VALID_SEED_BYTES)))
        goto out;
    for (uint32_t x = 1; x < t; x++) {
        fv_rand_fill(rng, p->seeds + (size_t)(x - 1) * FV_VALID_SEED_BYTES, FV_VALID_SEED_BYTES);
        expand_seed(p->seeds + (size_t)(x - 1) * FV_VALID_SEED_BYTES, S, p->payloads[x - 1]);
    }
    {
        uint64_t *ifact = NULL, *scr = malloc((size_t)t * sizeof(*scr));
        if (!scr || inv_factorials(t - 1, &ifact) != 0) {
            free(scr);
            goto out;
        }
        for (uint32_t x = t; x <= n; x++)
            lagrange_consec(t - 1, x, ifact, W + (size_t)(x - t) * t, scr);
        free(scr);
        free(ifact);
    }

    /* stage 1: w, range bits, slack bits */
    for (uint32_t i = 0; i < spec->dim; i++)
        val[i] = fv_gf_from_i64(w[i]);
    uint64_t off = spec->dim;
    for (uint32_t i = 0; i < spec->n_ranges; i++) {
        to_bits(affine_eval(&spec->ranges[i], w), spec->ranges[i].bits, val + off);
        off += spec->ranges[i].bits;
    }
    if (l->d > 0) {
        i128 ss = 0;
        for (uint32_t j = 0; j < l->d; j++) {
            int64_t z = fv_gf_to_i64(val[spec->norm_off + j]);
            ss += (i128)z * z;
        }
        to_bits((i128)spec->norm_sq - ss, l->bs, val + off);
    }
    /* the four-square witnesses of the non-negative words (a negative or huge word has
     * none: zeros, and the check fails) */
    uint64_t *wit = val + spec->dim + l->n_range_bits + l->bs;
    for (uint32_t i = 0; i < spec->n_nonneg; i++) {
        int64_t sq[4] = {0, 0, 0, 0};
        four_squares(w[spec->nonneg[i]], sq);
        for (int k = 0; k < 4; k++)
            wit[4 * (size_t)i + k] = fv_gf_from_i64(sq[k]);
        fv_crypto_wipe(sq, sizeof(sq));
    }
    uint8_t *hashes = p->header + FV_VALID_HEADER_FIXED;
    share_values(val, 0, l->s1, n, t, W, p->payloads);
    for (uint32_t x = 1; x <= n; x++)
        stage_hash(ctx, x, 1, p->payloads[x - 1], (size_t)l->s1 * 8, hashes + (size_t)(x - 1) * 96);
    chal_t ch;
    seed_k("fv-valid c1 v1", ctx, hashes, n, 1, ch.seed1);

    /* stage 2: projection bits, of the norm block, then of the witnesses */
    for (int blk = 0; blk < 2; blk++) {
        uint32_t bp = blk ? l->bpw : l->bp, len = blk ? l->n_wit : l->d;
        const uint64_t *src = blk ? wit : val + spec->norm_off;
        uint64_t *dst = val + l->s1 + (blk ? l->n_proj_bits : 0);
        if (len == 0)
            continue;
        uint64_t half = (uint64_t)1 << (bp - 1);
        uint64_t proj[FV_VALID_PROJ];
        if (projections(blk ? "fv-valid wproj v1" : "fv-valid proj v1", ch.seed1, src, len, proj) !=
            0)
            goto out;
        bool out_of_range = false;
        for (uint32_t q = 0; q < FV_VALID_PROJ; q++) {
            int64_t y = fv_gf_to_i64(fv_gf_add(proj[q], half));
            if (check && (y < 0 || y >= (int64_t)1 << bp))
                out_of_range = true;
            to_bits(y, bp, dst + (size_t)q * bp);
        }
        fv_crypto_wipe(proj, sizeof(proj)); /* projections of the input: secret */
        if (out_of_range) {
            rc = 1; /* the caller draws again */
            goto out;
        }
    }
    share_values(val + l->s1, l->s1, l->s2, n, t, W, p->payloads);
    for (uint32_t x = 1; x <= n; x++)
        stage_hash(ctx, x, 2, p->payloads[x - 1] + (size_t)l->s1 * 8, (size_t)l->s2 * 8,
                   hashes + (size_t)(x - 1) * 96 + 32);
    seed_k("fv-valid c2 v1", ch.seed1, hashes, n, 2, ch.seed2);

    /* stage 3: blinds, the gadget polynomial P at 0..2L, psi */
    fv_rand_t rr;
    derive(&rr, "fv-valid rho v1", ch.seed2, 0);
    draw_elems(&rr, rho, K);
    derive(&rr, "fv-valid rho2 v1", ch.seed2, 0);
    draw_elems(&rr, rho2, spec->n_nonneg);
    uint64_t *a_bl = val + l->s1 + l->s2, *b_bl = a_bl + m, *P = b_bl + m, *psi = P + 2 * L + 1;
    draw_elems(rng, a_bl, m);
    draw_elems(rng, b_bl, m);
    draw_elems(rng, psi, 1);
    if (inv_factorials(2 * L, &inv_fact) != 0)
        goto out;
    E = malloc((size_t)L * (L + 1) * sizeof(*E));
    if (!E)
        goto out;
    for (uint32_t i = 0; i < L; i++)
        lagrange_consec(L, (uint64_t)L + 1 + i, inv_fact, E + (size_t)i * (L + 1), scratch);
    memset(P, 0, ((size_t)2 * L + 1) * sizeof(*P));
    for (uint32_t j = 0; j < m; j++) {
        F[0] = a_bl[j];
        G[0] = b_bl[j];
        for (uint32_t c = 1; c <= L; c++) {
            int kind;
            uint64_t k = 0;
            int64_t idx = gadget_entry(spec, l, c, j, &kind, &k);
            uint64_t v = idx < 0 ? 0 : val[idx];
            F[c] = idx < 0     ? 0
                   : kind == 2 ? fv_gf_mul(rho[k], v)
                   : kind == 1 ? fv_gf_mul(rho2[k / 4], v)
                               : v;
            G[c] = v;
        }
        for (uint32_t i = 0; i < L; i++) {
            const uint64_t *row = E + (size_t)i * (L + 1);
            fv_u128 af = 0, ag = 0;
            for (uint32_t c = 0; c <= L; c++) {
                af += (fv_u128)row[c] * F[c];
                ag += (fv_u128)row[c] * G[c];
                if ((c & 63) == 63) {
                    af = fv_gf_reduce128(af);
                    ag = fv_gf_reduce128(ag);
                }
            }
            F[L + 1 + i] = fv_gf_reduce128(af);
            G[L + 1 + i] = fv_gf_reduce128(ag);
        }
        for (uint32_t x = 0; x <= 2 * L; x++)
            P[x] = fv_gf_add(P[x], fv_gf_mul(F[x], G[x]));
    }
    share_values(val + l->s1 + l->s2, (size_t)l->s1 + l->s2, l->s3, n, t, W, p->payloads);
    for (uint32_t x = 1; x <= n; x++)
        stage_hash(ctx, x, 3, p->payloads[x - 1] + ((size_t)l->s1 + l->s2) * 8, (size_t)l->s3 * 8,
                   hashes + (size_t)(x - 1) * 96 + 64);

    memcpy(p->header, MAGIC_HDR, 4);
    put_u32(p->header + 4, n);
    put_u32(p->header + 8, t);
    put_u32(p->header + 12, l->S);
    memcpy(p->header + 16, ctx, 32);
    g_stats.prover_mul = (uint64_t)S * (n - t + 1) * t + 2 * (uint64_t)m * L * (L + 1) +
                         (uint64_t)m * (2 * L + 1) + (uint64_t)L * (L + 1) * 4;
    p->tries = 1;
    *ret = p;
    p = NULL;
    rc = 0;
out:
    if (rc < 0 && rc != FV_ENOMEM)
        fv_diag_set(d, rc, "validation: proof failed");
    fv_valid_proof_free(p);
    wipe_free(val, S * sizeof(*val));
    wipe_free(F, ((size_t)2 * L + 1) * sizeof(uint64_t));
    wipe_free(G, ((size_t)2 * L + 1) * sizeof(uint64_t));
    free(W);
    free(rho);
    free(rho2);
    free(E);
    free(inv_fact);
    free(scratch);
    return rc;
}

static int prove(const fv_valid_spec_t *spec, uint32_t n, uint32_t t, const uint8_t ctx[32],
                 const int64_t *w, fv_rand_t *rng, bool check, fv_valid_proof_t **ret, fv_diag_t *d)
{
    fv_valid_layout_t l;
    int rc = fv_valid_layout_init(spec, n, t, &l, d);
    if (rc)
        return rc;
    if (check && (rc = fv_valid_spec_eval(spec, w, d)) != 0)
        return rc;
    /* all of a proof's randomness from one ChaCha20 stream keyed by 32 bytes of rng (the
     * system source would be a getrandom call per 512 bytes: megabytes per proof) */
    uint8_t key[32];
    fv_rand_t local;
    fv_rand_fill(rng, key, sizeof(key));
    fv_rand_seeded(&local, key);
    fv_crypto_wipe(key, sizeof(key));
    for (uint32_t tries = 1;; tries++) {
        rc = prove_once(spec, &l, ctx, w, &local, check, ret, d);
        if (rc != 1) {
            if (rc == 0)
                (*ret)->tries = tries;
            fv_crypto_wipe(&local, sizeof(local));
            return rc;
        }
        if (tries >= FV_VALID_PROVE_TRIES) {
            fv_crypto_wipe(&local, sizeof(local));
            return fv_diag_set(d, FV_ENUMERIC,
                               "validation: %u draws put a projection out of its range", tries);
        }
    }
}

int fv_valid_prove(const fv_valid_spec_t *spec, uint32_t n, uint32_t t,
                   const uint8_t ctx[FV_HASH_BYTES], const int64_t *w, fv_rand_t *rng,
                   fv_valid_proof_t **ret, fv_diag_t *d)
{
    return prove(spec, n, t, ctx, w, rng, true, ret, d);
}

int fv_valid_prove_unchecked(const fv_valid_spec_t *spec, uint32_t n, uint32_t t,
                             const uint8_t ctx[FV_HASH_BYTES], const int64_t *w, fv_rand_t *rng,
                             fv_valid_proof_t **ret, fv_diag_t *d)
{
    return prove(spec, n, t, ctx, w, rng, false, ret, d);
}

/* ---- holder ---------------------------------------------------------------------------- */

struct fv_valid_held {
    uint32_t x, dim;
    uint64_t *w; /* dim shares */
};

void fv_valid_held_free(fv_valid_held_t *h)
{
    if (!h)
        return;
    wipe_free(h->w, (size_t)h->dim * sizeof(*h->w));
    free(h);
}

uint32_t fv_valid_held_x(const fv_valid_held_t *h)
{
    return h->x;
}

/* Header fields against the layout (not the ctx). */
static int header_parse(const fv_valid_layout_t *l, const uint8_t *h, size_t len, fv_diag_t *d)
{
    if (len != l->header_bytes)
        return fv_diag_set(d, FV_EPROTO, "validation header: %zu bytes, expected %zu", len,
                           l->header_bytes);
    if (memcmp(h, MAGIC_HDR, 4) != 0)
        return fv_diag_set(d, FV_EPROTO, "validation header: bad magic");
    if (get_u32(h + 4) != l->n || get_u32(h + 8) != l->t || get_u32(h + 12) != l->S)
        return fv_diag_set(d, FV_EPROTO,
                           "validation header: n=%u t=%u S=%u, expected n=%u t=%u S=%u",
                           get_u32(h + 4), get_u32(h + 8), get_u32(h + 12), l->n, l->t, l->S);
    return 0;
}

static void header_chal(const uint8_t *h, uint32_t n, chal_t *ch)
{
    const uint8_t *hashes = h + FV_VALID_HEADER_FIXED;
    seed_k("fv-valid c1 v1", h + 16, hashes, n, 1, ch->seed1);
    seed_k("fv-valid c2 v1", ch->seed1, hashes, n, 2, ch->seed2);
    seed_k("fv-valid c3 v1", ch->seed2, hashes, n, 3, ch->seed3);
}

int fv_valid_holder_check(const fv_valid_spec_t *spec, uint32_t n, uint32_t t, uint32_t x,
                          const uint8_t ctx[FV_HASH_BYTES], const uint8_t *header,
                          size_t header_len, const uint8_t *payload, size_t payload_len,
                          fv_valid_held_t **ret_held, uint8_t **ret_vshare, size_t *ret_vshare_len,
                          fv_diag_t *d)
{
    fv_valid_layout_t l;
    int rc = fv_valid_layout_init(spec, n, t, &l, d);
    if (rc)
        return rc;
    if (x < 1 || x > n)
        return fv_diag_set(d, FV_EINVAL, "validation: holder x=%u outside 1..%u", x, n);
    if ((rc = header_parse(&l, header, header_len, d)) != 0)
        return rc;
    if (sodium_memcmp(header + 16, ctx, 32) != 0)
        return fv_diag_set(d, FV_EROUND,
                           "validation header: made for another federation, job, round or prover");
    if (payload_len != l.payload_bytes)
        return fv_diag_set(d, FV_EPROTO, "validation payload: %zu bytes, expected %zu", payload_len,
                           l.payload_bytes);
    const uint8_t *mine = header + FV_VALID_HEADER_FIXED + (size_t)(x - 1) * 96;
    size_t soff[3] = {0, (size_t)l.s1 * 8, ((size_t)l.s1 + l.s2) * 8};
    size_t slen[3] = {(size_t)l.s1 * 8, (size_t)l.s2 * 8, (size_t)l.s3 * 8};
    for (uint32_t k = 1; k <= 3; k++) {
        uint8_t h[32];
        stage_hash(ctx, x, k, payload + soff[k - 1], slen[k - 1], h);
        if (sodium_memcmp(h, mine + (k - 1) * 32, 32) != 0)
            return fv_diag_set(d, FV_EAUTH,
                               "validation payload for holder %u: stage %u does not match the "
                               "prover's commitment",
                               x, k);
    }
    uint64_t *s = malloc((size_t)l.S * sizeof(*s));
    size_t nopen = n_open(spec, &l);
    uint64_t *open = malloc(nopen * sizeof(*open));
    fv_valid_held_t *held = calloc(1, sizeof(*held));
    uint8_t *vs = malloc(l.vshare_bytes);
    rc = FV_ENOMEM;
    if (!s || !open || !held || !vs)
        goto out;
    held->x = x;
    held->dim = spec->dim;
    if (!(held->w = malloc((size_t)spec->dim * sizeof(*held->w))))
        goto out;
    size_t bad;
    if ((rc = get_elems(payload, l.S, s, &bad)) != 0) {
        fv_diag_set(d, rc, "validation payload for holder %u: element %zu is not below p", x, bad);
        goto out;
    }
    chal_t ch;
    header_chal(header, n, &ch);
    if ((rc = compute_openings(spec, &l, &ch, s, open)) != 0)
        goto out;
    memcpy(held->w, s, (size_t)spec->dim * sizeof(*s));
    memcpy(vs, MAGIC_VSH, 4);
    crypto_hash_sha256(vs + 4, header, header_len);
    put_u32(vs + 36, x);
    put_elems(vs + VSH_FIXED, open, nopen);
    *ret_held = held;
    *ret_vshare = vs;
    *ret_vshare_len = l.vshare_bytes;
    held = NULL;
    vs = NULL;
    rc = 0;
out:
    wipe_free(s, (size_t)l.S * sizeof(*s));
    free(open);
    fv_valid_held_free(held);
    free(vs);
    return rc;
}

/* ---- interpolation of holders' answers -------------------------------------------------- */

/* vals[i]: holder xs[i]'s len elements. Is the set sel[0..c) (indexes into vals)
 * consistent with degree t - 1? If so and out != NULL, out = the values at 0. */
static int interp_set(const uint64_t *const *vals, const uint32_t *xs, const uint32_t *sel,
                      uint32_t c, uint32_t t, size_t len, uint64_t *out, bool *ok)
{
    uint32_t *nx = malloc((size_t)t * sizeof(*nx));
    uint64_t *w0 = malloc((size_t)t * sizeof(*w0)), *wx = malloc((size_t)t * sizeof(*wx));
    if (!nx || !w0 || !wx) {
        free(nx);
        free(w0);
        free(wx);
        return FV_ENOMEM;
    }
    for (uint32_t i = 0; i < t; i++)
        nx[i] = xs[sel[i]];
    *ok = true;
    for (uint32_t e = t; e < c && *ok; e++) {
        lagrange_at(nx, t, xs[sel[e]], wx);
        for (size_t k = 0; k < len; k++) {
            fv_u128 acc = 0;
            for (uint32_t i = 0; i < t; i++) {
                acc += (fv_u128)wx[i] * vals[sel[i]][k];
                if ((i & 63) == 63)
                    acc = fv_gf_reduce128(acc);
            }
            if (fv_gf_reduce128(acc) != vals[sel[e]][k]) {
                *ok = false;
                break;
            }
        }
    }
    if (*ok && out) {
        lagrange_at(nx, t, 0, w0);
        for (size_t k = 0; k < len; k++) {
            fv_u128 acc = 0;
            for (uint32_t i = 0; i < t; i++) {
                acc += (fv_u128)w0[i] * vals[sel[i]][k];
                if ((i & 63) == 63)
                    acc = fv_gf_reduce128(acc);
            }
            out[k] = fv_gf_reduce128(acc);
        }
    }
    free(nx);
    free(w0);
    free(wx);
    return 0;
}

/* Robust interpolation: all consistent, or exactly one holder off (needs c >= t + 2).
 * *outlier = that holder's x (0 if none); FV_EAUTH when neither. */
static int interp_robust(const uint64_t *const *vals, const uint32_t *xs, uint32_t c, uint32_t t,
                         size_t len, uint64_t *out, uint32_t *outlier)
{
    uint32_t *sel = malloc((size_t)c * sizeof(*sel));
    if (!sel)
        return FV_ENOMEM;
    bool ok;
    int rc;
    *outlier = 0;
    for (uint32_t i = 0; i < c; i++)
        sel[i] = i;
    if ((rc = interp_set(vals, xs, sel, c, t, len, out, &ok)) != 0 || ok)
        goto done;
    rc = FV_EAUTH;
    if (c < t + 2)
        goto done;
    for (uint32_t skip = 0; skip < c; skip++) {
        uint32_t k = 0;
        for (uint32_t i = 0; i < c; i++)
            if (i != skip)
                sel[k++] = i;
        int r2 = interp_set(vals, xs, sel, c - 1, t, len, out, &ok);
        if (r2) {
            rc = r2;
            goto done;
        }
        if (ok) {
            *outlier = xs[skip];
            rc = 0;
            goto done;
        }
    }
done:
    free(sel);
    return rc;
}

/* ---- decider --------------------------------------------------------------------------- */

int fv_valid_decide(const fv_valid_spec_t *spec, uint32_t n, uint32_t t, const uint8_t *header,
                    size_t header_len, const uint8_t *const *vshares, const size_t *lens,
                    uint32_t count, fv_valid_verdict_t *ret, fv_diag_t *d)
{
    fv_valid_layout_t l;
    int rc = fv_valid_layout_init(spec, n, t, &l, d);
    if (rc)
        return rc;
    memset(ret, 0, sizeof(*ret));
    if ((rc = header_parse(&l, header, header_len, d)) != 0)
        return rc;
    if (count > n)
        return fv_diag_set(d, FV_EPROTO, "validation: %u vshares for %u holders", count, n);
    if (count < t)
        return fv_diag_set(d, FV_ETHRESHOLD, "validation: %u vshares, threshold %u", count, t);
    uint8_t hh[32];
    crypto_hash_sha256(hh, header, header_len);
    size_t nopen = n_open(spec, &l);
    uint64_t *buf = malloc((size_t)count * nopen * sizeof(*buf));
    uint64_t *open = malloc(nopen * sizeof(*open));
    const uint64_t **vals = malloc((size_t)count * sizeof(*vals));
    uint32_t *xs = malloc((size_t)count * sizeof(*xs));
    uint8_t *seen = calloc((size_t)n + 1, 1);
    rc = FV_ENOMEM;
    if (!buf || !open || !vals || !xs || !seen)
        goto out;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *v = vshares[i];
        size_t bad;
        if (lens[i] != l.vshare_bytes || memcmp(v, MAGIC_VSH, 4) != 0) {
            rc = fv_diag_set(d, FV_EPROTO, "validation vshare %u: %zu bytes or bad magic", i,
                             lens[i]);
            goto out;
        }
        if (sodium_memcmp(v + 4, hh, 32) != 0) {
            rc = fv_diag_set(d, FV_EROUND, "validation vshare %u: about another proof", i);
            goto out;
        }
        xs[i] = get_u32(v + 36);
        if (xs[i] < 1 || xs[i] > n || seen[xs[i]]) {
            rc = fv_diag_set(d, xs[i] >= 1 && xs[i] <= n ? FV_EDUP : FV_EPROTO,
                             "validation vshare %u: holder %u unknown or repeated", i, xs[i]);
            goto out;
        }
        seen[xs[i]] = 1;
        if ((rc = get_elems(v + VSH_FIXED, nopen, buf + (size_t)i * nopen, &bad)) != 0) {
            fv_diag_set(d, rc, "validation vshare %u (holder %u): element %zu not below p", i,
                        xs[i], bad);
            goto out;
        }
        vals[i] = buf + (size_t)i * nopen;
    }
    ret->n_used = count;
    rc = interp_robust(vals, xs, count, t, nopen, open, &ret->outlier);
    if (rc == FV_EAUTH) {
        ret->ok = false;
        snprintf(ret->check, sizeof(ret->check), "consistency");
        rc = 0;
        goto out;
    }
    if (rc)
        goto out;
    if (ret->outlier)
        ret->n_used = count - 1;
    const uint64_t *f = open, *g = open + l.m, *tail = open + 2 * (size_t)l.m;
    const uint64_t *l_range = tail + N_TAIL, *l_eq = l_range + spec->n_ranges;
    uint64_t fg = 0;
    for (uint32_t j = 0; j < l.m; j++)
        fg = fv_gf_add(fg, fv_gf_mul(f[j], g[j]));
    const char *fail = NULL;
    if (fg != tail[0])
        fail = "gadget";
    else if (tail[2] != 0)
        fail = "bits";
    else if (tail[3] != 0)
        fail = "wraparound";
    else if (tail[1] != 0)
        fail = "norm";
    else if (tail[5] != 0)
        fail = "nonneg";
    for (uint32_t i = 0; !fail && i < spec->n_ranges; i++)
        if (l_range[i] != 0)
            fail = spec->ranges[i].name;
    for (uint32_t i = 0; !fail && i < spec->n_equal; i++)
        if (l_eq[i] != 0)
            fail = spec->equal[i].name;
    ret->ok = fail == NULL;
    if (fail)
        snprintf(ret->check, sizeof(ret->check), "%.*s", FV_VALID_NAME_MAX - 1, fail);
    rc = 0;
out:
    free(buf);
    free(open);
    free(vals);
    free(xs);
    free(seen);
    return rc;
}

/* ---- aggregation ----------------------------------------------------------------------- */

int fv_valid_aggshare(const fv_valid_layout_t *l, const uint8_t sum_id[FV_HASH_BYTES],
                      const fv_valid_held_t *const *held, uint32_t count, uint8_t **ret,
                      size_t *ret_len, fv_diag_t *d)
{
    if (count < 1)
        return fv_diag_set(d, FV_EINVAL, "validation: nothing to sum");
    uint32_t dim = (uint32_t)((l->aggshare_bytes - AGG_FIXED) / 8), x = held[0]->x;
    for (uint32_t i = 0; i < count; i++)
        if (held[i]->dim != dim || held[i]->x != x)
            return fv_diag_set(d, FV_EINVAL,
                               "validation: held share %u is for another layout "
                               "or holder",
                               i);
    uint64_t *sum = calloc(dim, sizeof(*sum));
    uint8_t *b = malloc(l->aggshare_bytes);
    if (!sum || !b) {
        free(sum);
        free(b);
        return FV_ENOMEM;
    }
    for (uint32_t i = 0; i < count; i++)
        for (uint32_t k = 0; k < dim; k++)
            sum[k] = fv_gf_add(sum[k], held[i]->w[k]);
    memcpy(b, MAGIC_AGG, 4);
    memcpy(b + 4, sum_id, 32);
    put_u32(b + 36, x);
    put_u32(b + 40, count);
    put_elems(b + AGG_FIXED, sum, dim);
    wipe_free(sum, (size_t)dim * sizeof(*sum));
    *ret = b;
    *ret_len = l->aggshare_bytes;
    return 0;
}

int fv_valid_aggregate(const fv_valid_layout_t *l, const uint8_t sum_id[FV_HASH_BYTES],
                       const uint8_t *const *shares, const size_t *lens, uint32_t count,
                       int64_t *out, uint32_t *ret_outlier, fv_diag_t *d)
{
    uint32_t dim = (uint32_t)((l->aggshare_bytes - AGG_FIXED) / 8);
    *ret_outlier = 0;
    if (count > l->n)
        return fv_diag_set(d, FV_EPROTO, "validation: %u sum shares for %u holders", count, l->n);
    if (count < l->t)
        return fv_diag_set(d, FV_ETHRESHOLD, "validation: %u sum shares, threshold %u", count,
                           l->t);
    uint64_t *buf = malloc((size_t)count * dim * sizeof(*buf));
    uint64_t *sum = malloc((size_t)dim * sizeof(*sum));
    const uint64_t **vals = calloc(count ? count : 1, sizeof(*vals));
    uint32_t *xs = calloc(count ? count : 1, sizeof(*xs));
    uint8_t *seen = calloc((size_t)l->n + 1, 1);
    int rc = FV_ENOMEM;
    uint32_t n_sum = 0;
    uint32_t *counts = malloc((size_t)count * sizeof(*counts));
    if (!buf || !sum || !vals || !xs || !seen || !counts)
        goto out;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *v = shares[i];
        size_t bad;
        if (lens[i] != l->aggshare_bytes || memcmp(v, MAGIC_AGG, 4) != 0) {
            rc = fv_diag_set(d, FV_EPROTO, "validation sum share %u: %zu bytes or bad magic", i,
                             lens[i]);
            goto out;
        }
        if (sodium_memcmp(v + 4, sum_id, 32) != 0) {
            rc = fv_diag_set(d, FV_EROUND, "validation sum share %u: for another accepted set", i);
            goto out;
        }
        xs[i] = get_u32(v + 36);
        uint32_t cnt = get_u32(v + 40);
        counts[i] = cnt;
        if (xs[i] < 1 || xs[i] > l->n || seen[xs[i]]) {
            rc = fv_diag_set(d, FV_EPROTO, "validation sum share %u: holder %u or count %u wrong",
                             i, xs[i], cnt);
            goto out;
        }
        n_sum = cnt;
        seen[xs[i]] = 1;
        if ((rc = get_elems(v + AGG_FIXED, dim, buf + (size_t)i * dim, &bad)) != 0) {
            fv_diag_set(d, rc, "validation sum share %u: element %zu not below p", i, bad);
            goto out;
        }
        vals[i] = buf + (size_t)i * dim;
    }
    /* the number of inputs summed: the one most holders state; a single holder stating
     * another is the outlier (left out, named), more than one is FV_EPROTO */
    uint32_t best = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t same = 0;
        for (uint32_t k = 0; k < count; k++)
            same += counts[k] == counts[i];
        if (same > best)
            best = same, n_sum = counts[i];
    }
    uint32_t odd = UINT32_MAX, kept = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (counts[i] != n_sum) {
            if (odd != UINT32_MAX || count - 1 < l->t) {
                rc = fv_diag_set(d, FV_EPROTO,
                                 "validation sum share %u: holder %u states %u inputs, most say %u",
                                 i, xs[i], counts[i], n_sum);
                goto out;
            }
            odd = i;
            continue;
        }
        vals[kept] = vals[i];
        xs[kept++] = xs[i];
    }
    rc = interp_robust(vals, xs, kept, l->t, dim, sum, ret_outlier);
    if (rc == 0 && odd != UINT32_MAX) {
        if (*ret_outlier != 0) {
            rc = fv_diag_set(d, FV_EAUTH, "validation: two sum shares disagree (holders %u and %u)",
                             get_u32(shares[odd] + 36), *ret_outlier);
            goto out;
        }
        *ret_outlier = get_u32(shares[odd] + 36);
    }
    if (rc == FV_EAUTH) {
        fv_diag_set(d, rc,
                    "validation: the %u sum shares disagree and no single holder explains "
                    "it",
                    count);
        goto out;
    }
    if (rc)
        goto out;
    for (uint32_t k = 0; k < dim; k++)
        out[k] = fv_gf_to_i64(sum[k]);
out:
    free(buf);
    free(sum);
    free(vals);
    free(xs);
    free(seen);
    free(counts);
    return rc;
}
