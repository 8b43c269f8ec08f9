/* test_fixed.c - fv_fixed kernels against their scalar references, and their contracts.
 *
 * Inputs: random values plus edge values (exactly +-c, one ulp inside and outside, far
 * beyond, +-Inf, +-0, denormals, NaN), at lengths 0, 1, 3, 16, 17, 4097 (crosses the fast
 * quantizer's 256-element strips and the mask kernel's 4096-word block) and pointer
 * offsets 0 and 1 element (misaligned for every SIMD access). Every buffer has guard words
 * before and after that must come back intact.
 *
 * Tolerances:
 *   - fast vs reference: bit-identical for every kernel (same double expressions in the
 *     same order; see kernels/fixed.c for why no FMA contraction can split them).
 *   - one quantized value: |q - v| < 1 step, v = (clip(x) + c) / (2c) * M computed in
 *     long double; checked as |q - v| <= 1 + 1e-9 (v's own rounding is ~1e-16 relative).
 *     q is floor(v) or floor(v) + 1, exactly M at x >= c and exactly 0 at x <= -c.
 *   - unbiasedness: the mean of N stochastic roundings of a fixed x is within
 *     5 standard errors (sqrt(f (1 - f) / N), f = frac(v)) plus 2^-20 of v. The u are
 *     24-bit uniform floats, so the rounding probability is f up to 2^-24: a bias far
 *     below 2^-20. The seeds are fixed, so the test is deterministic; 5 SE is about a
 *     1-in-3.5-million event for a fresh seed.
 *   - round trip, n parties quantize, mod_add, dequantize(n_summands = n): within
 *     n steps (each party's error is < 1 step) + the final float rounding
 *     (FLT_EPSILON * |sum|) + the double arithmetic (1e-12 * n * c).
 */
#include "fv_fixed.h"
#include "fv_rng.h"
#include "fv_test.h"

#include <float.h>
#include <stdbool.h>
#include <stdint.h>

#define GUARD 8
static const uint32_t GUARD_WORD = 0xdeadbeefu;

static const size_t lens[] = {0, 1, 3, 16, 17, 4097};
#define N_LENS (sizeof lens / sizeof lens[0])

/* n 32-bit elements (float or uint32_t) at offset off (0 or 1) inside guard words. The
 * block is only ever accessed through p as one type, or bytewise (memcpy/memcmp). */
typedef struct {
    unsigned char *block;
    void *p;
    size_t n;
} buf_t;

static buf_t buf_new(size_t n, size_t off)
{
    buf_t b = {.n = n};
    size_t len = n + 2 * GUARD + off;
    b.block = malloc(len * 4);
    CHECK(b.block != NULL);
    for (size_t i = 0; i < len; i++)
        memcpy(b.block + 4 * i, &GUARD_WORD, 4);
    b.p = b.block + 4 * (GUARD + off);
    return b;
}

static void buf_check_guards(const buf_t *b, const char *what)
{
    const unsigned char *p = b->p;
    for (size_t i = 0; i < GUARD; i++) {
        if (memcmp(p - 4 * (i + 1), &GUARD_WORD, 4) != 0 ||
            memcmp(p + 4 * (b->n + i), &GUARD_WORD, 4) != 0)
            FV__FAIL("%s: guard around n=%zu overwritten", what, b->n);
    }
}

static void buf_free(buf_t *b)
{
    buf_check_guards(b, "free");
    free(b->block);
    b->block = NULL;
    b->p = NULL;
}

static float *F(const buf_t *b)
{
    return b->p;
}

static uint32_t *U(const buf_t *b)
{
    return b->p;
}

static void check_words_eq(const char *what, const uint32_t *a, const uint32_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            FV__FAIL("%s n=%zu [%zu]: %#" PRIx32 " vs %#" PRIx32, what, n, i, a[i], b[i]);
    }
}

/* uniform in [0, 1) with 24 random bits: exactly representable as a float, never 1 */
static float rand_u(fv_rng_t *r)
{
    return (float)(fv_rng_next(r) >> 40) * 0x1p-24f;
}

static uint32_t rand_word(fv_rng_t *r)
{
    return (uint32_t)(fv_rng_next(r) >> 32);
}

/* x around [-c, c] with edge values sprinkled in; NaN only if allowed */
static float rand_x(fv_rng_t *r, float c, bool allow_nan)
{
    uint64_t pick = fv_rng_below(r, 16);
    if (pick == 0) {
        const float edges[] = {c,
                               -c,
                               nextafterf(c, INFINITY),
                               nextafterf(c, 0.0f),
                               nextafterf(-c, -INFINITY),
                               nextafterf(-c, 0.0f),
                               0.0f,
                               -0.0f,
                               FLT_TRUE_MIN,
                               -FLT_TRUE_MIN,
                               1e-40f,
                               -3e-39f,
                               FLT_MIN,
                               10.0f * c,
                               -10.0f * c,
                               FLT_MAX,
                               -FLT_MAX,
                               INFINITY,
                               -INFINITY};
        return edges[fv_rng_below(r, sizeof edges / sizeof edges[0])];
    }
    if (pick == 1 && allow_nan)
        return NAN;
    return (float)((4.0 * fv_rng_uniform(r) - 2.0) * (double)c); /* [-2c, 2c) */
}

static const float cs[] = {1.0f, 0.37f, 1e-3f, 3.0e4f, 1e-40f, FLT_MAX};
#define N_CS (sizeof cs / sizeof cs[0])
static const uint32_t bitss[] = {1, 2, 8, 16, 24, 31};
#define N_BITS (sizeof bitss / sizeof bitss[0])

static long double clip_ld(float x, float c)
{
    long double v = x, lc = c;
    return v < -lc ? -lc : v > lc ? lc : v;
}

/* ---- check_range ---------------------------------------------------------------------- */

static void test_check_range(void)
{
    for (uint32_t bits = 1; bits <= 31; bits++) {
        uint64_t m = (UINT64_C(1) << bits) - 1, nmax = UINT32_MAX / m;
        CHECK_INT_EQ(fv_fixed_check_range(bits, 1), 0);
        CHECK_INT_EQ(fv_fixed_check_range(bits, nmax), 0);
        CHECK(nmax * m <= UINT32_MAX && (nmax + 1) * m > UINT32_MAX);
        CHECK_INT_EQ(fv_fixed_check_range(bits, nmax + 1), FV_EOVERFLOW);
        CHECK_INT_EQ(fv_fixed_check_range(bits, UINT64_MAX), FV_EOVERFLOW);
        CHECK_INT_EQ(fv_fixed_check_range(bits, 0), FV_EINVAL);
    }
    /* n * (2^bits - 1) == 2^32 - 1 exactly where bits divides 32: OK; one more wraps */
    static const uint32_t exact[] = {1, 2, 4, 8, 16};
    for (size_t i = 0; i < 5; i++) {
        uint64_t m = (UINT64_C(1) << exact[i]) - 1, n = UINT32_MAX / m;
        CHECK_UINT_EQ(n * m, UINT32_MAX);
        CHECK_INT_EQ(fv_fixed_check_range(exact[i], n), 0);
        CHECK_INT_EQ(fv_fixed_check_range(exact[i], n + 1), FV_EOVERFLOW);
    }
    CHECK_INT_EQ(fv_fixed_check_range(16, 65537), 0); /* 65537 * 65535 = 2^32 - 1 */
    CHECK_INT_EQ(fv_fixed_check_range(16, 65538), FV_EOVERFLOW);
    CHECK_INT_EQ(fv_fixed_check_range(31, 2), 0);
    CHECK_INT_EQ(fv_fixed_check_range(31, 3), FV_EOVERFLOW);
    CHECK_INT_EQ(fv_fixed_check_range(1, UINT32_MAX), 0);
    CHECK_INT_EQ(fv_fixed_check_range(1, (uint64_t)UINT32_MAX + 1), FV_EOVERFLOW);
    CHECK_INT_EQ(fv_fixed_check_range(0, 1), FV_EINVAL);
    CHECK_INT_EQ(fv_fixed_check_range(32, 1), FV_EINVAL);
    CHECK_INT_EQ(fv_fixed_check_range(UINT32_MAX, 1), FV_EINVAL);
}

/* ---- mod add / sub -------------------------------------------------------------------- */

static void test_mod(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 20);
    for (size_t li = 0; li < N_LENS; li++) {
        size_t n = lens[li];
        for (size_t off = 0; off <= 1; off++) {
            buf_t x = buf_new(n, off), a = buf_new(n, 1 - off), ar = buf_new(n, off),
                  a0 = buf_new(n, 0);
            static const uint32_t edge[] = {0, 1, 0x7fffffffu, 0x80000000u, 0xffffffffu};
            for (size_t i = 0; i < n; i++) {
                bool e = fv_rng_below(&r, 4) == 0;
                U(&x)[i] = e ? edge[fv_rng_below(&r, 5)] : rand_word(&r);
                e = fv_rng_below(&r, 4) == 0;
                U(&a0)[i] = e ? edge[fv_rng_below(&r, 5)] : rand_word(&r);
            }
            if (n > 0) {
                memcpy(U(&a), U(&a0), n * 4);
                memcpy(U(&ar), U(&a0), n * 4);
            }
            fv_mod_add(n, U(&x), U(&a));
            fv_mod_add_ref(n, U(&x), U(&ar));
            buf_check_guards(&a, "mod_add");
            buf_check_guards(&ar, "mod_add_ref");
            check_words_eq("mod_add", U(&a), U(&ar), n);
            for (size_t i = 0; i < n; i++) /* the sum mod 2^32, computed in 64 bits */
                CHECK_UINT_EQ(U(&a)[i], ((uint64_t)U(&a0)[i] + U(&x)[i]) & UINT64_C(0xffffffff));

            /* sub undoes add, in both versions */
            fv_mod_sub(n, U(&x), U(&a));
            fv_mod_sub_ref(n, U(&x), U(&ar));
            buf_check_guards(&a, "mod_sub");
            buf_check_guards(&ar, "mod_sub_ref");
            check_words_eq("sub(add)", U(&a), U(&a0), n);
            check_words_eq("sub_ref(add_ref)", U(&ar), U(&a0), n);

            /* sub on its own: (a - x) mod 2^32 */
            fv_mod_sub(n, U(&x), U(&a));
            fv_mod_sub_ref(n, U(&x), U(&ar));
            check_words_eq("mod_sub", U(&a), U(&ar), n);
            for (size_t i = 0; i < n; i++)
                CHECK_UINT_EQ(U(&a)[i], ((uint64_t)U(&a0)[i] + (UINT64_C(1) << 32) - U(&x)[i]) &
                                            UINT64_C(0xffffffff));
            buf_free(&x);
            buf_free(&a);
            buf_free(&ar);
            buf_free(&a0);
        }
    }

    /* Wrap-around by hand, in a main-loop-sized run and a tail. */
    enum { NW = 19 };
    uint32_t one[NW], acc[NW], accr[NW];
    for (int i = 0; i < NW; i++) {
        one[i] = 1;
        acc[i] = accr[i] = 0;
    }
    fv_mod_sub(NW, one, acc);
    fv_mod_sub_ref(NW, one, accr);
    for (int i = 0; i < NW; i++) {
        CHECK_UINT_EQ(acc[i], 0xffffffffu); /* 0 - 1 */
        CHECK_UINT_EQ(accr[i], 0xffffffffu);
    }
    fv_mod_add(NW, one, acc);
    fv_mod_add_ref(NW, one, accr);
    for (int i = 0; i < NW; i++) {
        CHECK_UINT_EQ(acc[i], 0); /* 0xffffffff + 1 */
        CHECK_UINT_EQ(accr[i], 0);
        one[i] = acc[i] = accr[i] = 0x80000000u;
    }
    fv_mod_add(NW, one, acc);
    fv_mod_add_ref(NW, one, accr);
    for (int i = 0; i < NW; i++) {
        CHECK_UINT_EQ(acc[i], 0); /* 2^31 + 2^31 */
        CHECK_UINT_EQ(accr[i], 0);
    }
}

/* ---- quantize ------------------------------------------------------------------------- */

/* q against the exact definition, for a non-NaN x */
static void check_q_one(float x, float u, float c, uint32_t bits, uint32_t q)
{
    uint32_t m = (UINT32_C(1) << bits) - 1;
    long double v = (clip_ld(x, c) + (long double)c) / (2.0L * (long double)c) * m;
    if (q > m)
        FV__FAIL("quantize(%a, c=%a, bits=%u) = %" PRIu32 " > M", (double)x, (double)c, bits, q);
    if (!(fabsl((long double)q - v) <= 1.0L + 1e-9L))
        FV__FAIL("quantize(%a, u=%a, c=%a, bits=%u) = %" PRIu32 ", exact %.6Lf", (double)x,
                 (double)u, (double)c, bits, q, v);
    if (x >= c)
        CHECK_UINT_EQ(q, m);
    if (x <= -c)
        CHECK_UINT_EQ(q, 0);
    if (x == 0.0f) /* v = M / 2, frac exactly 1/2 for odd M */
        CHECK_UINT_EQ(q, m / 2 + (u < 0.5f));
}

static void test_quantize(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 30);
    for (size_t ci = 0; ci < N_CS; ci++) {
        for (size_t bi = 0; bi < N_BITS; bi++) {
            float c = cs[ci];
            uint32_t bits = bitss[bi];
            for (size_t li = 0; li < N_LENS; li++) {
                size_t n = lens[li];
                for (size_t off = 0; off <= 1; off++) {
                    buf_t x = buf_new(n, off), u = buf_new(n, 1 - off), q = buf_new(n, off),
                          qr = buf_new(n, 1 - off);
                    for (size_t i = 0; i < n; i++) {
                        F(&x)[i] = rand_x(&r, c, false);
                        uint64_t pick = fv_rng_below(&r, 16);
                        F(&u)[i] = pick == 0 ? 0.0f : pick == 1 ? 0x1.fffffep-1f : rand_u(&r);
                    }
                    CHECK_OK(fv_fixed_quantize(n, F(&x), F(&u), c, bits, U(&q)), NULL);
                    CHECK_OK(fv_fixed_quantize_ref(n, F(&x), F(&u), c, bits, U(&qr)), NULL);
                    buf_check_guards(&q, "quantize");
                    buf_check_guards(&qr, "quantize_ref");
                    check_words_eq("quantize", U(&q), U(&qr), n);
                    for (size_t i = 0; i < n; i++)
                        check_q_one(F(&x)[i], F(&u)[i], c, bits, U(&q)[i]);

                    /* one value's error in x units is <= one step, through dequantize */
                    if (n > 0) {
                        buf_t d = buf_new(n, off);
                        fv_fixed_dequantize(n, U(&q), c, bits, 1, F(&d));
                        double step = 2.0 * (double)c / (ldexp(1.0, (int)bits) - 1.0);
                        for (size_t i = 0; i < n; i++) {
                            double want = (double)clip_ld(F(&x)[i], c);
                            CHECK_NEAR(F(&d)[i], want,
                                       step + FLT_EPSILON * (double)c + FLT_TRUE_MIN);
                        }
                        buf_free(&d);
                    }
                    buf_free(&x);
                    buf_free(&u);
                    buf_free(&q);
                    buf_free(&qr);
                }
            }
        }
    }
}

/* Hand-computed values: the rounding goes up iff u < frac (strictly). */
static void test_quantize_known(void)
{
    static const struct {
        float x, u, c;
        uint32_t bits, q;
    } k[] = {
        {0.0f, 0.0f, 1.0f, 1, 1},           /* v = 0.5 */
        {0.0f, 0.5f, 1.0f, 1, 0},           /* u == frac: down */
        {0.0f, 0x1.fffffep-2f, 1.0f, 1, 1}, /* just below 0.5: up */
        {-0.0f, 0.25f, 1.0f, 8, 128},       /* v = 127.5 */
        {0.0f, 0.75f, 1.0f, 8, 127},
        {0.5f, 0.0f, 1.0f, 2, 3}, /* v = 2.25: up only if u < 0.25 */
        {0.5f, 0.25f, 1.0f, 2, 2},
        {0.5f, 0.2499f, 1.0f, 2, 3},
        {1.0f, 0.0f, 1.0f, 31, 0x7fffffffu}, /* exactly M, never M + 1 */
        {-1.0f, 0.9f, 1.0f, 31, 0},
        {3.0f, 0.0f, 3.0f, 16, 65535},
        {-3.0f, 0.0f, 3.0f, 16, 0},
        {1.5f, 0.0f, 3.0f, 2, 3},            /* v = 2.25 */
        {0.5f, 0.0f, 1.0f, 31, 0x60000000u}, /* v = 0.75 M = 1610612735.25 */
        {0.5f, 0.3f, 1.0f, 31, 0x5fffffffu},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        uint32_t q = 0xffffffffu, qr = 0xffffffffu;
        CHECK_OK(fv_fixed_quantize(1, &k[i].x, &k[i].u, k[i].c, k[i].bits, &q), NULL);
        CHECK_OK(fv_fixed_quantize_ref(1, &k[i].x, &k[i].u, k[i].c, k[i].bits, &qr), NULL);
        if (q != k[i].q || qr != k[i].q)
            FV__FAIL("quantize(%g, u=%g, c=%g, bits=%u): fast %" PRIu32 " ref %" PRIu32
                     ", want %" PRIu32,
                     (double)k[i].x, (double)k[i].u, (double)k[i].c, k[i].bits, q, qr, k[i].q);
    }
}

static void test_quantize_errors(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 31);
    /* NaN anywhere (first, in the vector body, in the tail, last) -> FV_ENUMERIC */
    enum { N = 530 }; /* two full strips and a tail */
    static const size_t at[] = {0, 5, 255, 256, 300, 527, N - 1};
    float x[N], u[N];
    uint32_t q[N];
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        for (size_t i = 0; i < N; i++) {
            x[i] = rand_x(&r, 1.0f, false);
            u[i] = rand_u(&r);
        }
        x[at[k]] = k % 2 ? -NAN : NAN;
        CHECK_INT_EQ(fv_fixed_quantize(N, x, u, 1.0f, 16, q), FV_ENUMERIC);
        CHECK_INT_EQ(fv_fixed_quantize_ref(N, x, u, 1.0f, 16, q), FV_ENUMERIC);
        CHECK_INT_EQ(fv_fixed_quantize(N - at[k], x + at[k], u, 1.0f, 16, q), FV_ENUMERIC);
        CHECK_INT_EQ(fv_fixed_quantize_ref(N - at[k], x + at[k], u, 1.0f, 16, q), FV_ENUMERIC);
    }

    /* random vectors with NaN sprinkled in: both versions agree on the code */
    for (size_t trial = 0; trial < 200; trial++) {
        size_t n = 1 + fv_rng_below(&r, N);
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            x[i] = rand_x(&r, 1.0f, trial % 2 == 0 && fv_rng_below(&r, 8) == 0);
            any |= isnan(x[i]) != 0;
            u[i] = rand_u(&r);
        }
        int want = any ? FV_ENUMERIC : 0;
        CHECK_INT_EQ(fv_fixed_quantize(n, x, u, 1.0f, 12, q), want);
        CHECK_INT_EQ(fv_fixed_quantize_ref(n, x, u, 1.0f, 12, q), want);
    }

    /* invalid c or bits -> FV_EINVAL, checked before anything else (even for n == 0) */
    static const float bad_c[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad_c / sizeof bad_c[0]; i++) {
        CHECK_INT_EQ(fv_fixed_quantize(1, x, u, bad_c[i], 16, q), FV_EINVAL);
        CHECK_INT_EQ(fv_fixed_quantize_ref(1, x, u, bad_c[i], 16, q), FV_EINVAL);
        CHECK_INT_EQ(fv_fixed_quantize(0, NULL, NULL, bad_c[i], 16, NULL), FV_EINVAL);
    }
    static const uint32_t bad_bits[] = {0, 32, 33, 64, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad_bits / sizeof bad_bits[0]; i++) {
        CHECK_INT_EQ(fv_fixed_quantize(1, x, u, 1.0f, bad_bits[i], q), FV_EINVAL);
        CHECK_INT_EQ(fv_fixed_quantize_ref(1, x, u, 1.0f, bad_bits[i], q), FV_EINVAL);
    }
    CHECK_OK(fv_fixed_quantize(0, NULL, NULL, 1.0f, 16, NULL), NULL);
    CHECK_OK(fv_fixed_quantize_ref(0, NULL, NULL, 1.0f, 16, NULL), NULL);

    /* u outside [0, 1) (a caller bug) still gives q in [0, M], the same in both */
    static const float bad_u[] = {-1.0f, -0.0f, 1.0f, 2.0f, NAN, -INFINITY, INFINITY};
    enum { NB = sizeof bad_u / sizeof bad_u[0] };
    for (uint32_t bits = 1; bits <= 31; bits += 5) {
        float xs[NB * 4], us[NB * 4];
        uint32_t qs[NB * 4], qsr[NB * 4];
        static const float xv[] = {-1.0f, 1.0f, 0.0f, 0.3f};
        for (size_t i = 0; i < NB * 4; i++) {
            xs[i] = xv[i / NB];
            us[i] = bad_u[i % NB];
        }
        CHECK_OK(fv_fixed_quantize(NB * 4, xs, us, 1.0f, bits, qs), NULL);
        CHECK_OK(fv_fixed_quantize_ref(NB * 4, xs, us, 1.0f, bits, qsr), NULL);
        check_words_eq("quantize bad u", qs, qsr, NB * 4);
        for (size_t i = 0; i < NB * 4; i++)
            CHECK(qs[i] <= (UINT32_C(1) << bits) - 1);
    }
}

/* Mean of many stochastic roundings of one x is x (in steps: v). */
static void test_unbiased(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 32);
    enum { N = 100000 };
    float *x = malloc(N * sizeof *x), *u = malloc(N * sizeof *u);
    uint32_t *q = malloc(N * sizeof *q);
    CHECK(x && u && q);
    static const struct {
        float x, c;
        uint32_t bits;
    } cases[] = {
        {0.3f, 1.0f, 4},      {-0.77f, 1.0f, 4},    {0.0f, 1.0f, 8},
        {0.123456f, 1.0f, 2}, {-0.999f, 1.0f, 1},   {1e-30f, 1.0f, 3},
        {2.5f, 3.0f, 16},     {-1234.5f, 3e4f, 12}, {0.5f, 1.0f, 31},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float c = cases[k].c;
        uint32_t bits = cases[k].bits;
        for (size_t i = 0; i < N; i++) {
            x[i] = cases[k].x;
            u[i] = rand_u(&r);
        }
        long double m = (long double)((UINT32_C(1) << bits) - 1);
        long double v = ((long double)cases[k].x + c) / (2.0L * c) * m;
        long double f = v - floorl(v);
        for (int ref = 0; ref <= 1; ref++) {
            if (ref)
                CHECK_OK(fv_fixed_quantize_ref(N, x, u, c, bits, q), NULL);
            else
                CHECK_OK(fv_fixed_quantize(N, x, u, c, bits, q), NULL);
            long double sum = 0.0L;
            for (size_t i = 0; i < N; i++) {
                CHECK(q[i] == (uint32_t)floorl(v) || q[i] == (uint32_t)floorl(v) + 1);
                sum += q[i];
            }
            long double mean = sum / N;
            double se = sqrt((double)(f * (1.0L - f)) / N);
            if (!(fabsl(mean - v) <= 5.0 * se + 0x1p-20))
                FV__FAIL("unbiased: x=%g c=%g bits=%u ref=%d: mean %.9Lf vs v %.9Lf "
                         "(5 SE = %.3g)",
                         (double)cases[k].x, (double)c, bits, ref, mean, v, 5.0 * se);
        }
    }
    free(x);
    free(u);
    free(q);
}

/* ---- dequantize ----------------------------------------------------------------------- */

static void test_dequantize(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 40);
    static const uint64_t ns[] = {0, 1, 2, 37, 65537, UINT32_MAX};
    for (size_t ci = 0; ci < N_CS; ci++) {
        for (size_t bi = 0; bi < N_BITS; bi++) {
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                for (size_t li = 0; li < N_LENS; li++) {
                    size_t n = lens[li], off = (ci + li) % 2;
                    buf_t q = buf_new(n, off), x = buf_new(n, 1 - off), xr = buf_new(n, off);
                    for (size_t i = 0; i < n; i++)
                        U(&q)[i] = fv_rng_below(&r, 8) == 0 ? 0xffffffffu : rand_word(&r);
                    fv_fixed_dequantize(n, U(&q), cs[ci], bitss[bi], ns[ni], F(&x));
                    fv_fixed_dequantize_ref(n, U(&q), cs[ci], bitss[bi], ns[ni], F(&xr));
                    buf_check_guards(&x, "dequantize");
                    buf_check_guards(&xr, "dequantize_ref");
                    check_words_eq("dequantize", U(&x), U(&xr), n); /* the bits */
                    buf_free(&q);
                    buf_free(&x);
                    buf_free(&xr);
                }
            }
        }
    }
    /* known answers: bits 8 (M = 255), c = 1 */
    uint32_t q[] = {0, 255, 3 * 255, 0, 765 / 2 + 1};
    float x[5], xr[5];
    fv_fixed_dequantize(2, q, 1.0f, 8, 1, x);
    fv_fixed_dequantize_ref(2, q, 1.0f, 8, 1, xr);
    CHECK(x[0] == -1.0f && xr[0] == -1.0f);
    CHECK(x[1] == 1.0f && xr[1] == 1.0f);
    fv_fixed_dequantize(3, q + 2, 1.0f, 8, 3, x);
    fv_fixed_dequantize_ref(3, q + 2, 1.0f, 8, 3, xr);
    CHECK(x[0] == 3.0f && xr[0] == 3.0f);
    CHECK(x[1] == -3.0f && xr[1] == -3.0f);
    CHECK_NEAR(x[2], 2.0 * 383.0 / 255.0 - 3.0, 1e-7);
}

/* Centered: in-range sums decode bit for bit as fv_fixed_dequantize; sums pushed below 0
 * or above n (2^bits - 1) by noise wrap mod 2^32 and decode to the signed value. */
static void test_dequantize_centered(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 41);
    static const uint32_t bs[] = {1, 8, 16, 24, 31};
    static const uint64_t ns[] = {1, 2, 5, 37};
    for (size_t bi = 0; bi < sizeof bs / sizeof bs[0]; bi++) {
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            uint64_t m = (UINT64_C(1) << bs[bi]) - 1, top = ns[ni] * m;
            if (top > UINT32_MAX)
                continue;
            enum { N = 67 };
            uint32_t q[N];
            float x[N], xc[N];
            for (size_t i = 0; i < N; i++)
                q[i] = i == 0 ? 0 : i == 1 ? (uint32_t)top : (uint32_t)fv_rng_below(&r, top + 1);
            fv_fixed_dequantize(N, q, 0.75f, bs[bi], ns[ni], x);
            fv_fixed_dequantize_centered(N, q, 0.75f, bs[bi], ns[ni], xc);
            check_words_eq("dequantize_centered in range", (const uint32_t *)xc,
                           (const uint32_t *)x, N);
        }
    }
    /* known answers: bits 8 (M = 255), c = 1, n = 3 (offset 3, step 2/255) */
    const double step = 2.0 / 255.0;
    uint32_t q[] = {UINT32_MAX - 2, 765 + 4, 0, 765, UINT32_MAX};
    float x[5];
    fv_fixed_dequantize_centered(5, q, 1.0f, 8, 3, x);
    CHECK_NEAR(x[0], -3.0 * step - 3.0, 1e-6);
    CHECK_NEAR(x[1], 769.0 * step - 3.0, 1e-6);
    CHECK(x[2] == -3.0f && x[3] == 3.0f);
    CHECK_NEAR(x[4], -1.0 * step - 3.0, 1e-6);
    /* the middle's far side: h = 382, q = h + 2^31 - 1 is the largest positive reading */
    uint32_t qf[] = {382u + 0x7fffffffu, 382u + 0x80000000u};
    fv_fixed_dequantize_centered(2, qf, 1.0f, 8, 3, x);
    CHECK_NEAR(x[0], (382.0 + 2147483647.0) * step - 3.0, 1.0);
    CHECK_NEAR(x[1], (382.0 - 2147483648.0) * step - 3.0, 1.0);
}

/* ---- keystreams for the mask tests ---------------------------------------------------- */

/* Word i of the stream is a hash of (seed, i), so the stream does not depend on how it is
 * chunked. Records the calls so the block schedule can be checked. */
typedef struct {
    uint64_t seed, pos;
    size_t n_calls, max_req, bad_req;
    size_t fail_at; /* 1-based call that fails; 0 never */
    int fail_code;
} ks_t;

static uint32_t ks_word(uint64_t seed, uint64_t i)
{
    uint64_t z = seed * 0x9e3779b97f4a7c15ULL + i * 0xbf58476d1ce4e5b9ULL + 1;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (uint32_t)(z ^ (z >> 31));
}

static int ks_fn(void *state, uint32_t *out, size_t n)
{
    ks_t *k = state;
    k->n_calls++;
    if (n > k->max_req)
        k->max_req = n;
    if (n == 0 || n > FV_MASK_BLOCK_WORDS)
        k->bad_req++;
    if (k->fail_at != 0 && k->n_calls == k->fail_at)
        return k->fail_code;
    for (size_t i = 0; i < n; i++)
        out[i] = ks_word(k->seed, k->pos + i);
    k->pos += n;
    return 0;
}

static ks_t ks_make(uint64_t seed)
{
    ks_t k = {.seed = seed};
    return k;
}

typedef int (*mask_fn)(uint32_t *, size_t, int, fv_keystream_fn, void *);

static void test_mask(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 50);
    static const size_t mlens[] = {0, 1, 3, 17, 4095, 4096, 4097, 3 * 4096 + 5};
    static const mask_fn fns[] = {fv_mask_accumulate, fv_mask_accumulate_ref};
    static const char *names[] = {"mask_accumulate", "mask_accumulate_ref"};
    for (size_t li = 0; li < sizeof mlens / sizeof mlens[0]; li++) {
        size_t n = mlens[li];
        size_t want_calls = (n + FV_MASK_BLOCK_WORDS - 1) / FV_MASK_BLOCK_WORDS;
        for (size_t off = 0; off <= 1; off++) {
            buf_t a0 = buf_new(n, 0), stream = buf_new(n, 0), want = buf_new(n, 0);
            for (size_t i = 0; i < n; i++) {
                U(&a0)[i] = rand_word(&r);
                U(&stream)[i] = ks_word(77 + li, i);
            }
            for (size_t v = 0; v < 2; v++) {
                for (int sign = -1; sign <= 1; sign += 2) {
                    buf_t a = buf_new(n, off);
                    if (n > 0) {
                        memcpy(U(&a), U(&a0), n * 4);
                        memcpy(U(&want), U(&a0), n * 4);
                    }
                    /* the materialized stream, added or subtracted by the reference */
                    if (sign > 0)
                        fv_mod_add_ref(n, U(&stream), U(&want));
                    else
                        fv_mod_sub_ref(n, U(&stream), U(&want));
                    ks_t k = ks_make(77 + li);
                    CHECK_OK(fns[v](U(&a), n, sign, ks_fn, &k), NULL);
                    buf_check_guards(&a, names[v]);
                    check_words_eq(names[v], U(&a), U(&want), n);
                    CHECK_UINT_EQ(k.n_calls, want_calls); /* none at all for n == 0 */
                    CHECK_UINT_EQ(k.pos, n);
                    CHECK_UINT_EQ(k.bad_req, 0);
                    CHECK(k.max_req <= FV_MASK_BLOCK_WORDS);

                    /* the opposite sign with the same stream undoes it */
                    ks_t k2 = ks_make(77 + li);
                    CHECK_OK(fns[1 - v](U(&a), n, -sign, ks_fn, &k2), NULL);
                    check_words_eq("mask undo", U(&a), U(&a0), n);
                    buf_free(&a);
                }
            }
            buf_free(&a0);
            buf_free(&stream);
            buf_free(&want);
        }
    }
}

static void test_mask_errors(void)
{
    static const mask_fn fns[] = {fv_mask_accumulate, fv_mask_accumulate_ref};
    enum { N = 2 * FV_MASK_BLOCK_WORDS + 100 };
    uint32_t *a = malloc(N * sizeof *a), *a0 = malloc(N * sizeof *a0);
    CHECK(a && a0);
    for (size_t i = 0; i < N; i++)
        a0[i] = (uint32_t)i * 2654435761u;
    for (size_t v = 0; v < 2; v++) {
        /* a keystream error on the 2nd call is returned; the 1st block is applied, the
         * rest of acc untouched, and fn is not called again */
        for (int code = 0; code < 2; code++) {
            memcpy(a, a0, N * sizeof *a);
            ks_t k = ks_make(5);
            k.fail_at = 2;
            k.fail_code = code ? FV_EIO : 7; /* 7: a broken keystream returning > 0 */
            CHECK_INT_EQ(fns[v](a, N, 1, ks_fn, &k), code ? FV_EIO : FV_EINVAL);
            CHECK_UINT_EQ(k.n_calls, 2);
            for (size_t i = 0; i < N; i++) {
                uint32_t want = i < FV_MASK_BLOCK_WORDS ? a0[i] + ks_word(5, i) : a0[i];
                CHECK_UINT_EQ(a[i], want);
            }
        }
        /* failure on the first call leaves acc untouched */
        memcpy(a, a0, N * sizeof *a);
        ks_t k = ks_make(5);
        k.fail_at = 1;
        k.fail_code = FV_ENOMEM;
        CHECK_INT_EQ(fns[v](a, N, -1, ks_fn, &k), FV_ENOMEM);
        CHECK(memcmp(a, a0, N * sizeof *a) == 0);

        /* sign other than +-1, or no keystream: FV_EINVAL, fn never called */
        static const int bad_sign[] = {0, 2, -2, 1 << 30};
        for (size_t i = 0; i < 4; i++) {
            ks_t kb = ks_make(5);
            CHECK_INT_EQ(fns[v](a, N, bad_sign[i], ks_fn, &kb), FV_EINVAL);
            CHECK_UINT_EQ(kb.n_calls, 0);
        }
        CHECK_INT_EQ(fns[v](a, N, 1, NULL, NULL), FV_EINVAL);
        CHECK(memcmp(a, a0, N * sizeof *a) == 0);
        /* n == 0: success without a call, acc may be NULL */
        ks_t k0 = ks_make(5);
        CHECK_OK(fns[v](NULL, 0, 1, ks_fn, &k0), NULL);
        CHECK_UINT_EQ(k0.n_calls, 0);
    }
    free(a);
    free(a0);
}

/* ---- round trip: n parties, masked, summed mod 2^32, dequantized ---------------------- */

static void test_round_trip(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 60);
    static const struct {
        size_t parties;
        uint32_t bits;
        float c;
    } cases[] = {
        {1, 16, 1.0f},   {5, 16, 0.5f}, {37, 20, 2.0f},
        {255, 24, 1.0f}, {2, 31, 1.0f}, {65537, 16, 1.0f}, /* exactly fills 32 bits */
    };
    enum { N = 1000 };
    float *x = malloc(N * sizeof *x), *u = malloc(N * sizeof *u), *out = malloc(N * 4);
    uint32_t *q = malloc(N * sizeof *q), *acc = malloc(N * sizeof *acc);
    double *sum = malloc(N * sizeof *sum);
    CHECK(x && u && out && q && acc && sum);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t np = cases[k].parties;
        uint32_t bits = cases[k].bits;
        float c = cases[k].c;
        CHECK_OK(fv_fixed_check_range(bits, np), NULL);
        size_t n = np > 1000 ? 17 : N; /* keep the 65537-party case quick */
        memset(acc, 0, n * sizeof *acc);
        for (size_t i = 0; i < n; i++)
            sum[i] = 0.0;
        for (size_t p = 0; p < np; p++) {
            for (size_t i = 0; i < n; i++) {
                /* the 65537-party case puts every party at +c on element 0, so the sum
                 * is exactly 2^32 - 1 there: no wrap */
                x[i] = np > 1000 && i == 0 ? 10.0f : rand_x(&r, c, false);
                u[i] = rand_u(&r);
                sum[i] += (double)clip_ld(x[i], c);
            }
            CHECK_OK(fv_fixed_quantize(n, x, u, c, bits, q), NULL);
            fv_mod_add(n, q, acc);
            /* pairwise masks that cancel in the sum (as in secure aggregation): party p
             * adds the stream it shares with every later party and subtracts the one it
             * shares with every earlier party; only for modest party counts */
            if (np <= 37) {
                for (size_t o = 0; o < np; o++) {
                    if (o == p)
                        continue;
                    size_t lo = p < o ? p : o, hi = p < o ? o : p;
                    ks_t ks = ks_make(1000 * lo + hi);
                    CHECK_OK(fv_mask_accumulate(acc, n, p < o ? 1 : -1, ks_fn, &ks), NULL);
                }
            }
        }
        if (np > 1000)
            CHECK_UINT_EQ(acc[0], UINT32_MAX);
        fv_fixed_dequantize(n, acc, c, bits, np, out);
        double step = 2.0 * (double)c / (ldexp(1.0, (int)bits) - 1.0);
        for (size_t i = 0; i < n; i++) {
            double tol =
                (double)np * step + FLT_EPSILON * fabs(sum[i]) + 1e-12 * (double)np * (double)c;
            if (!(fabs((double)out[i] - sum[i]) <= tol))
                FV__FAIL("round trip parties=%zu bits=%u [%zu]: %.9g vs %.9g (tol %.3g)", np, bits,
                         i, (double)out[i], sum[i], tol);
        }
    }
    free(x);
    free(u);
    free(out);
    free(q);
    free(acc);
    free(sum);
}

int main(void)
{
    test_check_range();
    test_mod();
    test_quantize();
    test_quantize_known();
    test_quantize_errors();
    test_unbiased();
    test_dequantize();
    test_dequantize_centered();
    test_mask();
    test_mask_errors();
    test_round_trip();
    printf("test_fixed: ok\n");
    return 0;
}
