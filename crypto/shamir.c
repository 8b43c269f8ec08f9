/* shamir.c - Shamir secret sharing of 32-byte secrets over GF(p), p = 2^61 - 1.
 *
 * Why this field: p is a Mersenne prime, so a product (< 2^122, one 64x64->128 multiply)
 * reduces with two shift-and-add folds and one constant-time conditional subtraction; no
 * division, no table, no secret-dependent branch. 2^61 - 1 also leaves room for 65535
 * distinct x's (libgfshare, in Debian, works in GF(2^8): at most 255 shares, fewer than
 * the n = 500 of classic SecAgg, so it was not an option).
 *
 * Layout: the secret is cut into 5 little-endian chunks: bytes 0-6, 7-13, 14-20, 21-27
 * (56 bits each) and 28-31 (32 bits). Chunk k is the constant term of its own random
 * polynomial f_k of degree t - 1; share x holds (f_0(x), ..., f_4(x)), every value
 * canonical (< p). On combine, an interpolated chunk that does not fit its width (2^56 or
 * 2^32) proves the shares inconsistent: FV_EAUTH. (Inconsistent shares pass this check
 * with probability ~2^-5 * 2^-5 * 2^-5 * 2^-5 * 2^-29 ~ 2^-49 per secret; it is a sanity
 * check, not authentication - the shares themselves travel under AEAD.)
 *
 * Randomness: for chunk k = 0..4 in order, the t - 1 coefficients a_1..a_{t-1} are drawn
 * as one fill of 8(t - 1) bytes, each read as a u64 little-endian and masked to 61 bits;
 * the one value equal to p is rejected and redrawn (8 more bytes), so coefficients are
 * uniform in [0, p). This order is pinned by the known-answer test.
 * Coefficients live on the stack when t <= SPLIT_STACK_COEFFS + 1 (the common sizes: a
 * sodium_malloc costs 60-140 us here, as much as the split itself) and in a sodium_malloc
 * buffer above; either way wiped before returning.
 *
 * Combining: Lagrange interpolation at 0, lambda_i = prod_{j != i} x_j / (x_j - x_i),
 * written lambda_i = (prod_j x_j) / (x_i * prod_{j != i} (x_j - x_i)): n^2 multiplies for
 * the denominators (four independent chains), then Montgomery's batch trick turns n
 * inversions into one (Fermat, x^(p-2), fixed public exponent) plus 3n multiplies. The
 * coefficients are public (functions of the x's), computed once per x set
 * (fv_shamir_lagrange_t) and applied to all 5 chunks of every secret shared to those
 * holders, summing up to 64 products of 122 bits in 128-bit accumulators before reducing.
 *
 * fv_shamir_combine_checked is the exact consistency check the layout check is not: the
 * first t shares fix the polynomial, every further share must lie on it. Its cost is
 * (n - t) interpolations of O(t^2) each, plus the combine.
 *
 * Threading: no global state; a fv_shamir_lagrange_t is read-only once built.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_crypto.h"

#include "fv_gf61.h"

typedef fv_u128 u128;
#define P FV_GF_P
#define f_csub fv_gf_csub
#define f_add fv_gf_add
#define f_sub fv_gf_sub
#define f_mul fv_gf_mul
#define f_inv fv_gf_inv
#define f_reduce128 fv_gf_reduce128

/* ---- chunk layout ----------------------------------------------------------------- */

static const unsigned chunk_off[FV_SHAMIR_CHUNKS] = {0, 7, 14, 21, 28};
static const unsigned chunk_len[FV_SHAMIR_CHUNKS] = {7, 7, 7, 7, 4};

static uint64_t load_le(const uint8_t *b, unsigned len)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < len; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static void store_le(uint8_t *b, uint64_t v, unsigned len)
{
    for (unsigned i = 0; i < len; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

/* ---- split ------------------------------------------------------------------------ */

static void draw_coeffs(fv_rand_t *r, uint64_t *a, uint32_t m)
{
    fv_rand_fill(r, a, (size_t)m * sizeof *a);
    for (uint32_t j = 0; j < m; j++) {
        uint8_t b[8];
        memcpy(b, &a[j], sizeof b);
        uint64_t v = load_le(b, 8) & P;
        while (v == P) { /* probability 2^-61: public, data-independent in practice */
            fv_rand_fill(r, b, sizeof b);
            v = load_le(b, 8) & P;
        }
        a[j] = v;
        sodium_memzero(b, sizeof b);
    }
}

#define SPLIT_STACK_COEFFS 128 /* 5 KiB of stack */

int fv_shamir_split(fv_rand_t *r, const uint8_t secret[FV_SHAMIR_SECRET_BYTES], uint32_t t,
                    uint32_t n, fv_shamir_share_t *out)
{
    uint64_t *a = NULL; /* a[k * (t-1) + j - 1] = coefficient j of chunk k's polynomial */
    uint64_t c0[FV_SHAMIR_CHUNKS];
    uint64_t stack_a[FV_SHAMIR_CHUNKS * SPLIT_STACK_COEFFS];
    uint32_t m;

    if (r == NULL || secret == NULL || out == NULL)
        return FV_EINVAL;
    if (t < 1 || t > n || n > FV_SHAMIR_MAX_SHARES)
        return FV_EINVAL;
    m = t - 1;
    if (m > 0 && m <= SPLIT_STACK_COEFFS) {
        a = stack_a;
    } else if (m > 0) {
        a = fv_secret_alloc((size_t)FV_SHAMIR_CHUNKS * m * sizeof *a);
        if (a == NULL)
            return FV_ENOMEM;
    }
    for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++) {
        c0[k] = load_le(secret + chunk_off[k], chunk_len[k]);
        if (m > 0)
            draw_coeffs(r, a + (size_t)k * m, m);
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t x = i + 1;
        out[i].x = i + 1;
        uint64_t y[FV_SHAMIR_CHUNKS] = {0};
        /* Horner, y_k = (((a_{t-1} x + a_{t-2}) x + ...) x + a_1) x + c0_k, the five chunks'
         * chains interleaved so their multiply latencies overlap. */
        for (uint32_t j = m; j >= 1; j--)
            for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
                y[k] = f_add(f_mul(y[k], x), a[(size_t)k * m + j - 1]);
        for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
            out[i].y[k] = f_add(f_mul(y[k], x), c0[k]);
    }
    sodium_memzero(c0, sizeof c0);
    if (a != NULL) {
        sodium_memzero(a, (size_t)FV_SHAMIR_CHUNKS * m * sizeof *a);
        if (a != stack_a)
            fv_secret_free(a); /* wipes again; the explicit wipe documents the intent */
    }
    return 0;
}

/* ---- combine ---------------------------------------------------------------------- */

struct fv_shamir_lagrange {
    uint32_t n;
    uint32_t *xs;     /* n, points into the same allocation */
    uint64_t *lambda; /* n Lagrange coefficients at 0 */
};

/* 1..FV_SHAMIR_MAX_SHARES and pairwise distinct. */
static int check_xs(const uint32_t *xs, uint32_t n)
{
    uint8_t seen[(FV_SHAMIR_MAX_SHARES + 1 + 7) / 8];

    if (n < 1 || n > FV_SHAMIR_MAX_SHARES)
        return FV_EINVAL;
    memset(seen, 0, sizeof seen);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t x = xs[i];
        if (x < 1 || x > FV_SHAMIR_MAX_SHARES)
            return FV_EINVAL;
        if (seen[x >> 3] & (1u << (x & 7)))
            return FV_EINVAL;
        seen[x >> 3] |= (uint8_t)(1u << (x & 7));
    }
    return 0;
}

/* lambda[i] = prod_{j != i} x_j / (x_j - x_i) for n distinct nonzero field elements x:
 * the weights of interpolation at 0. (Interpolation at z is the same over x - z.) */
static void lagrange_at0(const uint64_t *x, uint32_t n, uint64_t *lambda)
{
    uint64_t *den = lambda; /* den, then lambda: in place */
    uint64_t prod_x = 1, acc, inv_acc;

    /* den[i] = x_i * prod_{j != i} (x_j - x_i), nonzero since the x's are distinct and
     * nonzero. Four independent products break the multiply-reduce latency chain (the
     * O(n^2) part of combining); the factor j == i is replaced by 1. */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t xi = x[i], d[4] = {xi, 1, 1, 1};
        uint32_t j = 0;
        prod_x = f_mul(prod_x, xi);
        for (; j + 4 <= n; j += 4)
            for (unsigned u = 0; u < 4; u++)
                d[u] = f_mul(d[u], j + u == i ? 1 : f_sub(x[j + u], xi));
        for (; j < n; j++)
            d[0] = f_mul(d[0], j == i ? 1 : f_sub(x[j], xi));
        den[i] = f_mul(f_mul(d[0], d[1]), f_mul(d[2], d[3]));
    }
    /* Montgomery's trick: pre[i] = den[0] * ... * den[i]; one inversion of pre[n-1]. */
    uint64_t *pre = malloc((size_t)n * sizeof *pre);
    if (pre != NULL) {
        acc = 1;
        for (uint32_t i = 0; i < n; i++) {
            acc = f_mul(acc, den[i]);
            pre[i] = acc;
        }
        inv_acc = f_inv(acc); /* = 1 / (den[0] * ... * den[n-1]) */
        for (uint32_t i = n; i-- > 1;) {
            uint64_t inv_i = f_mul(inv_acc, pre[i - 1]);
            inv_acc = f_mul(inv_acc, den[i]);
            den[i] = f_mul(prod_x, inv_i);
        }
        den[0] = f_mul(prod_x, inv_acc);
        free(pre);
    } else {
        /* Out of memory for the scratch: n separate inversions, same result. */
        for (uint32_t i = 0; i < n; i++)
            den[i] = f_mul(prod_x, f_inv(den[i]));
    }
}

/* out[k] = sum_i lambda[i] * shares[i].y[k] mod p. Lazy reduction: each product is
 * < 2^122, so 64 of them fit a 128-bit sum. */
static void weighted_sum(const uint64_t *lambda, const fv_shamir_share_t *shares, uint32_t n,
                         uint64_t out[FV_SHAMIR_CHUNKS])
{
    for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
        out[k] = 0;
    for (uint32_t i0 = 0; i0 < n; i0 += 64) {
        uint32_t i1 = n - i0 < 64 ? n : i0 + 64;
        u128 z[FV_SHAMIR_CHUNKS] = {0};
        for (uint32_t i = i0; i < i1; i++)
            for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
                z[k] += (u128)lambda[i] * shares[i].y[k];
        for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
            out[k] = f_add(out[k], f_reduce128(z[k]));
        sodium_memzero(z, sizeof z);
    }
}

int fv_shamir_lagrange_new(const uint32_t *xs, uint32_t n, fv_shamir_lagrange_t **ret)
{
    fv_shamir_lagrange_t *l;
    uint64_t *xf;
    int rc;

    if (xs == NULL || ret == NULL)
        return FV_EINVAL;
    rc = check_xs(xs, n);
    if (rc != 0)
        return rc;
    /* lambda first in the allocation keeps it 8-byte aligned. */
    l = malloc(sizeof *l + (size_t)n * (sizeof(uint64_t) + sizeof(uint32_t)));
    xf = malloc((size_t)n * sizeof *xf);
    if (l == NULL || xf == NULL) {
        free(l);
        free(xf);
        return FV_ENOMEM;
    }
    l->n = n;
    l->lambda = (uint64_t *)(void *)(l + 1);
    l->xs = (uint32_t *)(void *)(l->lambda + n);
    memcpy(l->xs, xs, (size_t)n * sizeof *xs);
    for (uint32_t i = 0; i < n; i++)
        xf[i] = xs[i];
    lagrange_at0(xf, n, l->lambda);
    free(xf);
    *ret = l;
    return 0;
}

void fv_shamir_lagrange_free(fv_shamir_lagrange_t *l)
{
    free(l);
}

int fv_shamir_combine_with(const fv_shamir_lagrange_t *l, const fv_shamir_share_t *shares,
                           uint32_t n, uint8_t secret[FV_SHAMIR_SECRET_BYTES])
{
    uint64_t c[FV_SHAMIR_CHUNKS] = {0};
    uint8_t s[FV_SHAMIR_SECRET_BYTES];
    int rc = 0;

    if (l == NULL || shares == NULL || secret == NULL || n != l->n)
        return FV_EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        if (shares[i].x != l->xs[i])
            return FV_EINVAL;
        for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
            if (shares[i].y[k] >= P)
                return FV_EINVAL;
    }
    weighted_sum(l->lambda, shares, n, c);
    for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++) {
        if (c[k] >> (8 * chunk_len[k]) != 0) {
            rc = FV_EAUTH;
            goto out;
        }
        store_le(s + chunk_off[k], c[k], chunk_len[k]);
    }
    memcpy(secret, s, sizeof s);
out:
    sodium_memzero(c, sizeof c);
    sodium_memzero(s, sizeof s);
    return rc;
}

int fv_shamir_combine(const fv_shamir_share_t *shares, uint32_t n,
                      uint8_t secret[FV_SHAMIR_SECRET_BYTES])
{
    fv_shamir_lagrange_t *l = NULL;
    uint32_t *xs;
    int rc;

    if (shares == NULL || secret == NULL || n < 1 || n > FV_SHAMIR_MAX_SHARES)
        return FV_EINVAL;
    xs = malloc((size_t)n * sizeof *xs);
    if (xs == NULL)
        return FV_ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        xs[i] = shares[i].x;
    rc = fv_shamir_lagrange_new(xs, n, &l);
    free(xs);
    if (rc != 0)
        return rc;
    rc = fv_shamir_combine_with(l, shares, n, secret);
    fv_shamir_lagrange_free(l);
    return rc;
}

int fv_shamir_combine_checked(const fv_shamir_share_t *shares, uint32_t n, uint32_t t,
                              uint8_t secret[FV_SHAMIR_SECRET_BYTES])
{
    uint32_t *xs = NULL;
    uint64_t *xf = NULL, *lam = NULL, v[FV_SHAMIR_CHUNKS];
    int rc;

    if (shares == NULL || secret == NULL || t < 1 || t > n || n > FV_SHAMIR_MAX_SHARES)
        return FV_EINVAL;
    xs = calloc(n, sizeof *xs); /* calloc: gcc cannot see that n >= 1 fills it */
    xf = malloc((size_t)t * sizeof *xf);
    lam = malloc((size_t)t * sizeof *lam);
    if (xs == NULL || xf == NULL || lam == NULL) {
        rc = FV_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        xs[i] = shares[i].x;
        for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
            if (shares[i].y[k] >= P) {
                rc = FV_EINVAL;
                goto out;
            }
    }
    rc = check_xs(xs, n);
    if (rc != 0)
        goto out;
    /* Every share past the first t must be the value at its x of the polynomial through
     * the first t: interpolating at z is interpolating at 0 over the points x_i - z. */
    for (uint32_t e = t; e < n && rc == 0; e++) {
        for (uint32_t i = 0; i < t; i++)
            xf[i] = f_sub(xs[i], xs[e]); /* nonzero: the x's are distinct */
        lagrange_at0(xf, t, lam);
        weighted_sum(lam, shares, t, v);
        for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
            if (v[k] != shares[e].y[k])
                rc = FV_EAUTH;
    }
    if (rc == 0)
        rc = fv_shamir_combine(shares, t, secret);
out:
    sodium_memzero(v, sizeof v);
    free(xs);
    free(xf);
    free(lam);
    return rc;
}

/* ---- wire form -------------------------------------------------------------------- */

void fv_shamir_share_encode(const fv_shamir_share_t *s, uint8_t out[4 + FV_SHAMIR_SHARE_BYTES])
{
    store_le(out, s->x, 4);
    for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++)
        store_le(out + 4 + 8 * k, s->y[k], 8);
}

int fv_shamir_share_decode(const uint8_t in[4 + FV_SHAMIR_SHARE_BYTES], fv_shamir_share_t *s)
{
    fv_shamir_share_t t;

    t.x = (uint32_t)load_le(in, 4);
    if (t.x < 1 || t.x > FV_SHAMIR_MAX_SHARES)
        return FV_EPROTO;
    for (unsigned k = 0; k < FV_SHAMIR_CHUNKS; k++) {
        t.y[k] = load_le(in + 4 + 8 * k, 8);
        if (t.y[k] >= P)
            return FV_EPROTO;
    }
    *s = t;
    return 0;
}
