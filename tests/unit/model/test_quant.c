/* test_quant.c - post-training INT8 quantization (model/quant.c, fv_mlp.h).
 *
 * For every row quantized here, random or adversarial, check_row asserts the contract:
 *   - q in -127..127 (never -128); a row of zeros has scale +0 and q = 0;
 *   - the scale is finite and >= 0, and max |q| = 127 whenever the row's
 *     max|w| / 127 >= 2^-126 (the normal case of quant.c);
 *   - |w - (float)q * s| <= s / 2 for every weight, computed in double (both sides are
 *     floats, so the difference is exact there), with (float)q * s exact;
 *   - idempotence: quantizing the dequantized row gives the same scale and q, bit for bit.
 * The known-answer vector pins the exact rule across platforms: the rows are made from
 * an xorshift32 stream of float bit patterns, and the expected SHA-256 of all scales and
 * q was computed independently with Python's fractions.Fraction (exact rationals) from
 * the rule written in fv_mlp.h / quant.c, not from this code.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_mlp.h"
#include "fv_rng.h"
#include "fv_test.h"

#define ROW_MAX 4096

static uint32_t f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static float bits_f32(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* Quantizes w (n entries, stride 1), checks the contract, returns the scale. */
static float check_row(const float *w, size_t n)
{
    static int8_t q[ROW_MAX], q2[ROW_MAX];
    static float wq[ROW_MAX];
    float s = -1.0f, s2 = -1.0f, m = 0.0f;
    CHECK(n <= ROW_MAX);
    CHECK_OK(fv_mlp_quantize_int8_row(w, n, 1, q, &s), NULL);
    for (size_t i = 0; i < n; i++)
        m = fabsf(w[i]) > m ? fabsf(w[i]) : m;
    CHECK(isfinite(s) && s >= 0.0f && (f32_bits(s) >> 31) == 0);
    int qmax = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(q[i] >= -FV_MLP_INT8_MAX && q[i] <= FV_MLP_INT8_MAX);
        qmax = abs(q[i]) > qmax ? abs(q[i]) : qmax;
        wq[i] = (float)q[i] * s;
        /* exact product: the double product rounds to the same float */
        CHECK((double)wq[i] == (double)q[i] * (double)s);
        double err = fabs((double)w[i] - (double)wq[i]);
        if (!(err <= (double)s / 2))
            FV__FAIL("row of %zu, weight %zu: w %a, q %d, s %a: |w - q s| = %a > s/2", n, i,
                     (double)w[i], q[i], (double)s, err);
    }
    if (m == 0.0f) {
        CHECK_UINT_EQ(f32_bits(s), 0);
        CHECK_INT_EQ(qmax, 0);
    } else {
        CHECK(s > 0.0f);
        if ((double)m / 127.0 >= 0x1p-126)
            CHECK_INT_EQ(qmax, 127);
        else
            CHECK(qmax >= 1);
    }
    /* idempotence */
    CHECK_OK(fv_mlp_quantize_int8_row(wq, n, 1, q2, &s2), NULL);
    if (f32_bits(s) != f32_bits(s2))
        FV__FAIL("row of %zu (max %a): scale %a, then %a after requantizing", n, (double)m,
                 (double)s, (double)s2);
    CHECK(memcmp(q, q2, n) == 0);
    return s;
}

/* ---- the layout quant.c relies on ------------------------------------------------- */

static void test_layout_matches_decay_mask(void)
{
    fv_mlp_arch_t a;
    memset(&a, 0, sizeof a);
    a.n_in = 5;
    a.n_hidden = 2;
    a.hidden[0] = 4;
    a.hidden[1] = 3;
    a.n_out = 2;
    fv_mlp_t *m = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    const uint8_t *mask = fv_mlp_decay_mask(m);
    size_t dims[] = {5, 4, 3, 2}, off = 0;
    for (size_t l = 0; l < 3; l++) {
        for (size_t i = 0; i < dims[l] * dims[l + 1]; i++)
            CHECK_UINT_EQ(mask[off++], 1);
        for (size_t j = 0; j < dims[l + 1]; j++)
            CHECK_UINT_EQ(mask[off++], 0);
    }
    CHECK_UINT_EQ(off, fv_mlp_n_params(m));
    fv_mlp_free(m);
}

/* ---- rows -------------------------------------------------------------------------- */

static void test_zero_and_small_rows(void)
{
    float w[8] = {0};
    int8_t q[8];
    float s = -1.0f;

    CHECK_UINT_EQ(f32_bits(check_row(w, 8)), 0);
    w[3] = -0.0f; /* -0 is a zero too: scale +0, q 0 */
    CHECK_UINT_EQ(f32_bits(check_row(w, 8)), 0);
    CHECK_OK(fv_mlp_quantize_int8_row(NULL, 0, 1, NULL, &s), NULL); /* empty row */
    CHECK_UINT_EQ(f32_bits(s), 0);

    /* One weight: q = +-127 and the scale brings it back within s / 2. */
    float one[1] = {-3.25f};
    check_row(one, 1);
    CHECK_OK(fv_mlp_quantize_int8_row(one, 1, 1, q, &s), NULL);
    CHECK_INT_EQ(q[0], -127);

    /* The tiny model of test_model.c: computed by hand from the rule (and in model.c's
     * top comment): s = 2/127 to 17 bits = 0x3c810200, q = 32, -64, 127. */
    const float tiny[3] = {0.5f, -1.0f, 2.0f};
    CHECK_OK(fv_mlp_quantize_int8_row(tiny, 3, 1, q, &s), NULL);
    CHECK_UINT_EQ(f32_bits(s), 0x3c810200u);
    CHECK_INT_EQ(q[0], 32);
    CHECK_INT_EQ(q[1], -64);
    CHECK_INT_EQ(q[2], 127);
    check_row(tiny, 3);

    /* Refusals. */
    float bad[3] = {1.0f, NAN, 2.0f};
    CHECK_INT_EQ(fv_mlp_quantize_int8_row(bad, 3, 1, q, &s), FV_ENUMERIC);
    bad[1] = -INFINITY;
    CHECK_INT_EQ(fv_mlp_quantize_int8_row(bad, 3, 1, q, &s), FV_ENUMERIC);
    CHECK_INT_EQ(fv_mlp_quantize_int8_row(NULL, 3, 1, q, &s), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_quantize_int8_row(tiny, 3, 1, NULL, &s), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_quantize_int8_row(tiny, 3, 1, q, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_quantize_int8_row(tiny, 3, 0, q, &s), FV_EINVAL);
}

/* Rows built to sit on the edges of the rule. */
static void test_adversarial_rows(void)
{
    float w[300];
    fv_rng_t rng;
    fv_rng_seed(&rng, 7);

    /* Extremes of the float range, both signs, alone and with company. */
    const float extremes[] = {FLT_MAX,
                              -FLT_MAX,
                              nextafterf(FLT_MAX, 0),
                              0x1.fffep127f,
                              0x1.ffffp127f,
                              0x1p127f,
                              FLT_MIN,
                              -FLT_MIN,
                              0x1p-149f,
                              -0x1p-149f,
                              127 * 0x1p-126f,
                              nextafterf(127 * 0x1p-126f, 0),
                              nextafterf(127 * 0x1p-126f, 1),
                              63.5f * 0x1p-126f,
                              1.0f,
                              127.0f,
                              0.5f,
                              1e-30f,
                              3e38f};
    size_t n_ext = sizeof extremes / sizeof extremes[0];
    for (size_t k = 0; k < n_ext; k++) {
        w[0] = extremes[k];
        check_row(w, 1);
        for (size_t i = 1; i < 64; i++) /* a mix of everything, scaled below the max */
            w[i] = (float)((fv_rng_uniform(&rng) * 2 - 1)) * extremes[k];
        check_row(w, 64);
        for (size_t i = 1; i < 64; i++) /* and of much smaller things, subnormals included */
            w[i] = extremes[(k + i) % n_ext] * 0x1p-100f;
        check_row(w, 64);
    }

    /* Every subnormal-sized maximum from 1 to 40000 ulps (the power-of-two rule and its
     * boundary with the normal rule at 127 * 2^-126 = 2^-119 * 127 / 128 ...), with other
     * weights at random multiples of the ulp. */
    for (uint32_t k = 1; k <= 40000; k++) {
        float m = (float)k * 0x1p-149f; /* exact */
        w[0] = (k & 1) ? m : -m;
        for (size_t i = 1; i < 9; i++)
            w[i] = (float)(int64_t)fv_rng_below(&rng, (uint64_t)k + 1) * 0x1p-149f;
        check_row(w, 9);
    }

    /* Exact ties: weights at (k + 1/2) s for a scale on the 17-bit grid, so q must be the
     * even neighbour. s = 0x1.0001p-7 has 17 significant bits. */
    {
        const float s0 = 0x1.0001p-7f;
        int8_t q[300];
        float s;
        w[0] = 127.0f * s0; /* exact: max |w| / 127 = s0 */
        for (int k = -126; k <= 125; k++)
            w[k + 127] = ((float)k + 0.5f) * s0; /* exact: k + 1/2 has <= 8 bits */
        CHECK_OK(fv_mlp_quantize_int8_row(w, 253, 1, q, &s), NULL);
        CHECK_UINT_EQ(f32_bits(s), f32_bits(s0));
        for (int k = -126; k <= 125; k++) {
            int want = (k % 2 == 0) ? k : k + 1; /* k + 1/2 -> the even one of k, k + 1 */
            CHECK_INT_EQ(q[k + 127], want);
        }
        check_row(w, 253);
    }

    /* Maxima spread over every binade, with random mantissas: the 17-bit rounding of the
     * scale up, down and at the fallback near FLT_MAX. */
    for (int e = -149; e <= 127; e++) {
        for (int t = 0; t < 40; t++) {
            uint32_t mant = (uint32_t)fv_rng_below(&rng, 1u << 23);
            float m = e >= -126 ? ldexpf(1.0f + (float)mant * 0x1p-23f, e)
                                : ldexpf((float)(mant >> (-126 - e + 1)), -149);
            if (!isfinite(m))
                continue;
            w[0] = m;
            size_t n = 1 + (size_t)fv_rng_below(&rng, 40);
            for (size_t i = 1; i < n; i++)
                w[i] = (float)(fv_rng_uniform(&rng) * 2 - 1) * m;
            check_row(w, n);
        }
    }
}

static void test_random_rows(void)
{
    static float w[ROW_MAX];
    fv_rng_t rng;
    fv_rng_seed(&rng, 2024);
    for (int t = 0; t < 2000; t++) {
        size_t n = 1 + (size_t)fv_rng_below(&rng, t < 1900 ? 300 : ROW_MAX);
        double scale = pow(10.0, (double)fv_rng_below(&rng, 60) - 30.0);
        int kind = (int)fv_rng_below(&rng, 3);
        for (size_t i = 0; i < n; i++) {
            double x = kind == 0   ? fv_rng_normal(&rng)
                       : kind == 1 ? fv_rng_uniform(&rng) * 2 - 1
                                   : fv_rng_normal(&rng) * exp(4 * fv_rng_normal(&rng));
            w[i] = (float)(x * scale);
        }
        check_row(w, n);
    }
}

/* ---- known answer: the exact rule ------------------------------------------------- */

static uint32_t xorshift32(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* 300 rows of 1..64 weights from xorshift32 (seed 0x2545f491): row r has a top biased
 * exponent E = r % 256 (0..255, 255 clamped to 254); weight i has sign bit from the
 * stream, biased exponent max(0, E - (x % 24)), a random 23-bit fraction. Biased exponent
 * 0 makes subnormals. Hashed: per row, the scale's 4 bytes (LE) then the q bytes. */
static void test_known_answer(void)
{
    static const char want_hex[] =
        "d275e579da94e451e97eac548ad7effdf88198ad1ad1c683c0fb0a363f4dc2b5";
    uint32_t x = 0x2545f491u;
    crypto_hash_sha256_state st;
    float w[64];
    int8_t q[64];
    crypto_hash_sha256_init(&st);
    for (uint32_t r = 0; r < 300; r++) {
        uint32_t n = 1 + xorshift32(&x) % 64;
        uint32_t top = r % 256 > 254 ? 254 : r % 256;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t sign = xorshift32(&x) & 1u;
            uint32_t drop = xorshift32(&x) % 24;
            uint32_t be = top > drop ? top - drop : 0;
            uint32_t frac = xorshift32(&x) & 0x7fffffu;
            w[i] = bits_f32(sign << 31 | be << 23 | frac);
        }
        float s;
        CHECK_OK(fv_mlp_quantize_int8_row(w, n, 1, q, &s), NULL);
        check_row(w, n);
        uint8_t sb[4];
        uint32_t b = f32_bits(s);
        for (int k = 0; k < 4; k++)
            sb[k] = (uint8_t)(b >> (8 * k));
        crypto_hash_sha256_update(&st, sb, 4);
        crypto_hash_sha256_update(&st, (const uint8_t *)q, n);
    }
    uint8_t got[32], want[32];
    crypto_hash_sha256_final(&st, got);
    if (strlen(want_hex) != 64 || strstr(want_hex, "KAT") != NULL) {
        char hex[65];
        for (int k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", got[k]);
        FV__FAIL("known answer not set; this build computes %s", hex);
    }
    fv_test_unhex(want_hex, want, 32);
    CHECK(memcmp(got, want, 32) == 0);
}

/* ---- whole networks ---------------------------------------------------------------- */

static void test_network(size_t n_in, size_t n_hidden, const size_t *hidden, size_t n_out,
                         uint64_t seed)
{
    fv_mlp_arch_t a;
    memset(&a, 0, sizeof a);
    a.n_in = n_in;
    a.n_hidden = n_hidden;
    for (size_t i = 0; i < n_hidden; i++)
        a.hidden[i] = hidden[i];
    a.n_out = n_out;
    fv_mlp_t *m = NULL, *q1 = NULL, *q2 = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    fv_mlp_init(m, seed);
    /* Random weights and biases everywhere (logistic regression starts at zero), one
     * all-zero row and one row of subnormals. */
    fv_rng_t rng;
    fv_rng_seed(&rng, seed + 1);
    float *p = fv_mlp_params(m);
    size_t np = fv_mlp_n_params(m);
    for (size_t i = 0; i < np; i++)
        p[i] = (float)(0.3 * fv_rng_normal(&rng));
    size_t d_out0 = n_hidden > 0 ? hidden[0] : n_out;
    for (size_t i = 0; i < n_in; i++) /* unit 0 of layer 0: zeros */
        p[i * d_out0] = 0.0f;
    if (d_out0 > 1)
        for (size_t i = 0; i < n_in; i++) /* unit 1: subnormal */
            p[i * d_out0 + 1] = (float)(int)(i + 1) * 0x1p-149f;

    CHECK_OK(fv_mlp_quantize_int8(m, &q1), NULL);
    CHECK(memcmp(fv_mlp_arch(q1), fv_mlp_arch(m), sizeof a) == 0);
    CHECK_UINT_EQ(fv_mlp_n_params(q1), np);
    const float *pq = fv_mlp_params_const(q1);
    const uint8_t *mask = fv_mlp_decay_mask(m);

    /* Per layer and unit: the weights are the row quantization's q * s, biases equal. */
    size_t dims[FV_MLP_MAX_HIDDEN + 2], nd = 0, off = 0;
    dims[nd++] = n_in;
    for (size_t i = 0; i < n_hidden; i++)
        dims[nd++] = hidden[i];
    dims[nd++] = n_out;
    for (size_t l = 0; l + 1 < nd; l++) {
        size_t di = dims[l], dout = dims[l + 1];
        for (size_t j = 0; j < dout; j++) {
            float s;
            int8_t *qq = malloc(di);
            CHECK(qq != NULL);
            CHECK_OK(fv_mlp_quantize_int8_row(p + off + j, di, dout, qq, &s), NULL);
            for (size_t i = 0; i < di; i++) {
                float want = (float)qq[i] * s;
                CHECK_UINT_EQ(f32_bits(pq[off + i * dout + j]), f32_bits(want));
                CHECK(fabs((double)p[off + i * dout + j] - (double)want) <= (double)s / 2);
                CHECK_UINT_EQ(mask[off + i * dout + j], 1);
            }
            if (l == 0 && j == 0)
                CHECK_UINT_EQ(f32_bits(s), 0);
            free(qq);
        }
        off += di * dout;
        for (size_t j = 0; j < dout; j++) {
            CHECK_UINT_EQ(f32_bits(pq[off + j]), f32_bits(p[off + j]));
            CHECK_UINT_EQ(mask[off + j], 0);
        }
        off += dout;
    }
    CHECK_UINT_EQ(off, np);

    /* Idempotent, and deterministic. */
    CHECK_OK(fv_mlp_quantize_int8(q1, &q2), NULL);
    CHECK(memcmp(fv_mlp_params_const(q1), fv_mlp_params_const(q2), np * sizeof(float)) == 0);
    fv_mlp_free(q2);
    q2 = NULL;
    CHECK_OK(fv_mlp_quantize_int8(m, &q2), NULL);
    CHECK(memcmp(fv_mlp_params_const(q1), fv_mlp_params_const(q2), np * sizeof(float)) == 0);
    fv_mlp_free(q2);
    q2 = NULL;

    /* A non-finite weight is refused, a non-finite bias is copied (not quantized). */
    float keep = p[0];
    p[0] = INFINITY;
    CHECK_INT_EQ(fv_mlp_quantize_int8(m, &q2), FV_ENUMERIC);
    CHECK(q2 == NULL);
    p[0] = keep;
    CHECK_INT_EQ(fv_mlp_quantize_int8(NULL, &q2), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_quantize_int8(m, NULL), FV_EINVAL);

    fv_mlp_free(q1);
    fv_mlp_free(m);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    test_layout_matches_decay_mask();
    test_zero_and_small_rows();
    test_adversarial_rows();
    test_random_rows();
    test_known_answer();
    const size_t h1[] = {8}, h2[] = {16, 4}, h3[] = {7, 5, 3};
    test_network(3, 0, NULL, 1, 1);
    test_network(20, 0, NULL, 4, 2);
    test_network(12, 1, h1, 1, 3);
    test_network(30, 2, h2, 3, 4);
    test_network(9, 3, h3, 1, 5);
    printf("test_quant: all checks passed\n");
    return 0;
}
