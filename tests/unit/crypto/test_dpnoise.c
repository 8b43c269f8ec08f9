/* test_dpnoise.c - DP's keyed streams and samplers (crypto/fv_dpnoise.h).
 *
 * Known answers, computed outside fedvault:
 *   K=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
 *   head -c 32 /dev/zero | openssl enc -chacha20 -K $K -iv 00000000010000000200000000000000
 *     (openssl's -iv is the 4-byte LE block counter, then the nonce: domain 1 LE32, index 2
 *     LE64) -> the first 32 bytes of the stream (key K, domain 1, index 2);
 *   python3: hashlib.blake2b(b'fedvault dp' + (7).to_bytes(8, 'little'),
 *            key=bytes(range(32)), digest_size=32) -> fv_dp_key_derive(K, "fedvault dp", 7).
 *
 * Distributions: every stream has a fixed key, so the test is deterministic; the
 * frequencies and chi-square statistics are compared with thresholds at a false-alarm
 * probability of about 1e-6 (binomial: 5.5 standard deviations; chi-square: the upper 1e-6
 * quantile by Wilson-Hilferty), and the chi-square test must reject the same samples
 * against the wrong law (sigma2 * 1.1, scale * 1.1), so it has power.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto-int.h"
#include "fv_dpnoise.h"
#include "fv_test.h"

typedef fv_dp_u128 u128;

static uint8_t key0[32];

static void stream(fv_dp_stream_t *s, uint32_t domain, uint64_t index)
{
    fv_dp_stream_init(s, key0, domain, index);
}

/* ---- streams and keys ---- */

static void test_stream_kat(void)
{
    uint8_t want[32], got[32], sod[800], nonce[12] = {1, 0, 0, 0, 2};
    fv_dp_stream_t s;

    fv_test_unhex("78a8a2bf5027c5ef8ea3d74fff637942dcfd69e4ff5a42eca9382f28c0d3d046", want, 32);
    stream(&s, 1, 2);
    for (int i = 0; i < 4; i++) {
        uint64_t v = fv_dp_u64(&s);
        for (int j = 0; j < 8; j++)
            got[8 * i + j] = (uint8_t)(v >> (8 * j));
    }
    CHECK(memcmp(got, want, 32) == 0);
    /* 100 words (across several 256-byte refills) = libsodium's keystream */
    memset(sod, 0, sizeof sod);
    crypto_stream_chacha20_ietf_xor_ic(sod, sod, sizeof sod, nonce, 0, key0);
    stream(&s, 1, 2);
    for (int i = 0; i < 100; i++) {
        uint64_t v = fv_dp_u64(&s), w = 0;
        for (int j = 7; j >= 0; j--)
            w = w << 8 | sod[8 * i + j];
        CHECK_UINT_EQ(v, w);
    }
    fv_dp_stream_wipe(&s);
}

static void test_determinism(void)
{
    fv_dp_stream_t a, b, c, d, e;
    uint8_t k1[32], k2[32], want[32];

    stream(&a, FV_DP_DOMAIN_NOISE, 5);
    stream(&b, FV_DP_DOMAIN_NOISE, 5);
    stream(&c, FV_DP_DOMAIN_SAMPLE, 5);
    stream(&d, FV_DP_DOMAIN_NOISE, 6);
    int same_c = 0, same_d = 0;
    for (int i = 0; i < 1000; i++) {
        int64_t x = fv_dp_dgauss(&a, 1000), y = fv_dp_dgauss(&b, 1000);
        CHECK_INT_EQ(x, y);
        same_c += fv_dp_dgauss(&c, 1000) == x;
        same_d += fv_dp_dgauss(&d, 1000) == x;
    }
    /* P(equal) for two independent N_Z(0, 1000) is about 1/(2 sqrt(pi 1000)) = 0.9% */
    CHECK(same_c < 40 && same_d < 40);

    /* the key derivation: pinned, and every input matters */
    fv_test_unhex("b7f9f12a9caa01b70b366bcb867058f81cb9212734e71ef8c77c3398a7d84d3b", want, 32);
    fv_dp_key_derive(k1, key0, "fedvault dp", 7);
    CHECK(memcmp(k1, want, 32) == 0);
    fv_dp_key_derive(k2, key0, "fedvault dp", 8);
    CHECK(memcmp(k1, k2, 32) != 0);
    fv_dp_key_derive(k2, key0, "fedvault dq", 7);
    CHECK(memcmp(k1, k2, 32) != 0);
    fv_dp_key_derive(k2, k1, "fedvault dp", 7);
    CHECK(memcmp(k1, k2, 32) != 0);
    fv_dp_stream_init(&e, k1, FV_DP_DOMAIN_NOISE, 5);
    stream(&a, FV_DP_DOMAIN_NOISE, 5);
    CHECK(fv_dp_u64(&e) != fv_dp_u64(&a));

    /* keys wiped */
    fv_dp_stream_wipe(&e);
    static const fv_dp_stream_t zero;
    CHECK(memcmp(&e, &zero, sizeof e) == 0);
    fv_dp_stream_wipe(&a);
    fv_dp_stream_wipe(&b);
    fv_dp_stream_wipe(&c);
    fv_dp_stream_wipe(&d);
}

/* The first outputs of each sampler under key K, pinned: a change to how a sampler reads
 * the stream (which would make a restarted round send different bytes than before, and
 * agents of two versions disagree) fails here. Values from this implementation (release
 * and ASan builds agree); the float ones as bit patterns, since the sampler promises the
 * same bits on every IEEE-754 host. */
static void test_pinned(void)
{
    static const uint32_t gauss_bits[5] = {0xbfba1298u, 0x3f2cf588u, 0xbf316328u, 0xbebe1e77u,
                                           0xbf2e5509u};
    static const int64_t dg[8] = {333, 1845, -446, 1156, -717, -812, -439, 477};
    static const int64_t dl[8] = {-1, -1, -1, -2, -4, 0, -2, 2};
    static const size_t kept[8] = {10, 30, 36, 44, 54, 59, 62, 63};
    static float many[4096]; /* wedges and the tail too (max |z| 3.73 > r) */
    fv_dp_stream_t s;
    float f[5] = {0};
    size_t idx[64];

    stream(&s, FV_DP_DOMAIN_NOISE, 3);
    fv_dp_gauss_add_f32(&s, 1.0, f, 5);
    for (int i = 0; i < 5; i++) {
        uint32_t b;
        memcpy(&b, &f[i], 4);
        CHECK_UINT_EQ(b, gauss_bits[i]);
    }
    stream(&s, FV_DP_DOMAIN_NOISE, 5);
    fv_dp_gauss_add_f32(&s, 1.0, many, 4096);
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a of the floats' bytes (LE host) */
    for (size_t i = 0; i < sizeof many; i++)
        h = (h ^ ((const uint8_t *)many)[i]) * UINT64_C(1099511628211);
    CHECK_UINT_EQ(h, UINT64_C(0xe7fc1f1b1eac026f));
    CHECK_UINT_EQ(fv_dp_u64(&s), UINT64_C(8141677687640198334));
    stream(&s, FV_DP_DOMAIN_DDG, 0);
    for (int i = 0; i < 8; i++)
        CHECK_INT_EQ(fv_dp_dgauss(&s, 1000000), dg[i]);
    stream(&s, FV_DP_DOMAIN_TEST, 9);
    for (int i = 0; i < 8; i++)
        CHECK_INT_EQ(fv_dp_dlaplace(&s, 7, 3), dl[i]);
    stream(&s, FV_DP_DOMAIN_SAMPLE, 4);
    CHECK_UINT_EQ(fv_dp_poisson(&s, 0.1, 64, idx), 8);
    for (int i = 0; i < 8; i++)
        CHECK_UINT_EQ(idx[i], kept[i]);
    fv_dp_stream_wipe(&s);
}

/* ---- uniform and Bernoulli ---- */

/* |k - n p| within 5.5 binomial standard deviations (two-sided p ~ 4e-8) */
static void check_freq(uint64_t k, uint64_t n, double p, const char *what)
{
    double sd = sqrt((double)n * p * (1 - p));
    if (fabs((double)k - (double)n * p) > 5.5 * sd + 1e-9)
        FV__FAIL("%s: %llu of %llu, want %.6f (z = %.2f)", what, (unsigned long long)k,
                 (unsigned long long)n, (double)n * p, ((double)k - (double)n * p) / sd);
}

static void test_below(void)
{
    fv_dp_stream_t s, r;
    uint64_t cnt[7] = {0};

    stream(&s, FV_DP_DOMAIN_TEST, 1);
    stream(&r, FV_DP_DOMAIN_TEST, 1);
    CHECK_UINT_EQ(fv_dp_below(&s, 1), 0); /* draws nothing */
    CHECK_UINT_EQ(fv_dp_u64(&s), fv_dp_u64(&r));
    for (int i = 0; i < 70000; i++) {
        uint64_t v = fv_dp_below(&s, 7);
        CHECK(v < 7);
        cnt[v]++;
    }
    for (int i = 0; i < 7; i++)
        check_freq(cnt[i], 70000, 1.0 / 7, "below(7)");
    uint64_t big = UINT64_MAX - 5, top = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t v = fv_dp_below(&s, big);
        CHECK(v < big);
        top += v >> 63;
    }
    check_freq(top, 1000, 0.5, "below(2^64 - 6) top bit");
    fv_dp_stream_wipe(&s);
    fv_dp_stream_wipe(&r);
}

static void test_bernoulli(void)
{
    const u128 two127 = (u128)1 << 127, max = ~(u128)0;
    struct {
        u128 num, den;
    } cases[] = {
        {1, 2},
        {1, 3},
        {2, 7},
        {max / 3, max},            /* 128-bit: den = 2^128 - 1 */
        {two127 + 12345, max - 1}, /* just above 1/2 */
        {(u128)1 << 100, ((u128)1 << 103) + 1},
        {(u128)999999999999ull * 3, (u128)999999999999ull * 1000}, /* 3/1000 */
    };
    fv_dp_stream_t s;
    enum { N = 100000 };

    stream(&s, FV_DP_DOMAIN_TEST, 2);
    for (int i = 0; i < 1000; i++) {
        CHECK(!fv_dp_bernoulli(&s, 0, 1));
        CHECK(!fv_dp_bernoulli(&s, 0, max));
        CHECK(fv_dp_bernoulli(&s, 1, 1));
        CHECK(fv_dp_bernoulli(&s, max, max));
    }
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t k = 0;
        for (int i = 0; i < N; i++)
            k += fv_dp_bernoulli(&s, cases[c].num, cases[c].den);
        char what[64];
        snprintf(what, sizeof what, "bernoulli case %zu", c);
        check_freq(k, N, (double)cases[c].num / (double)cases[c].den, what);
    }
    fv_dp_stream_wipe(&s);
}

static void test_bernoulli_exp(void)
{
    const u128 two120 = (u128)1 << 120;
    struct {
        u128 num, den;
    } cases[] = {
        {0, 1}, {1, 3},
        {1, 1}, {5, 2},
        {7, 2}, {3 * two120, 2 * two120},
        {2, 1}, {(u128)1 << 126, ((u128)1 << 127) - 1}, /* x just above 1/2, den*K overflows */
    };
    fv_dp_stream_t s;
    enum { N = 100000 };

    stream(&s, FV_DP_DOMAIN_TEST, 3);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t k = 0;
        for (int i = 0; i < N; i++)
            k += fv_dp_bernoulli_exp(&s, cases[c].num, cases[c].den);
        char what[64];
        snprintf(what, sizeof what, "bernoulli_exp case %zu", c);
        check_freq(k, N, exp(-(double)cases[c].num / (double)cases[c].den), what);
    }
    /* the discrete Gaussian's split for huge u, with small m: exp(-u^2 / den) */
    struct {
        unsigned u, den, m;
    } sq[] = {{7, 60, 3}, {10, 37, 4}, {5, 30, 1}, {6, 40, 7}, {9, 50, 2}};
    for (size_t c = 0; c < sizeof sq / sizeof sq[0]; c++) {
        uint64_t k = 0;
        for (int i = 0; i < N; i++)
            k += fv__dp_bernoulli_exp_sq(&s, sq[c].u, sq[c].den, sq[c].m);
        char what[64];
        snprintf(what, sizeof what, "bernoulli_exp_sq case %zu", c);
        check_freq(k, N, exp(-(double)sq[c].u * sq[c].u / sq[c].den), what);
    }
    fv_dp_stream_wipe(&s);
}

/* ---- chi-square goodness of fit ---- */

#define MAX_BINS 256

typedef double (*mass_fn)(int64_t a, int64_t b, double param); /* P(a <= X <= b) */

typedef struct {
    int n;
    int64_t lo[MAX_BINS]; /* bin k = [lo[k], lo[k+1] - 1]; lo[0] = INT64_MIN, last to +inf */
} bins_t;

/* Candidate edges e[0] < ... < e[ne-1] give bins (-inf, e0-1], [e0, e1-1], ..., [e_last,
 * inf); adjacent ones merge, left to right, until each expects >= 20 samples under law. */
static void make_bins(bins_t *b, const int64_t *e, int ne, mass_fn law, double param, double n)
{
    b->n = 0;
    int64_t start = INT64_MIN;
    for (int k = 0; k <= ne; k++) {
        int64_t hi = k < ne ? e[k] - 1 : INT64_MAX;
        if (n * law(start, hi, param) >= 20 || k == ne) {
            if (k == ne && b->n > 0 && n * law(start, hi, param) < 20) /* leftover: merge */
                break;
            CHECK(b->n < MAX_BINS);
            b->lo[b->n++] = start;
            start = hi == INT64_MAX ? hi : hi + 1;
        }
    }
}

static int bin_of(const bins_t *b, int64_t x)
{
    int lo = 0, hi = b->n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (b->lo[mid] <= x)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static double chi2(const bins_t *b, const uint64_t *cnt, mass_fn law, double param, double n)
{
    double st = 0;
    for (int k = 0; k < b->n; k++) {
        int64_t hi = k + 1 < b->n ? b->lo[k + 1] - 1 : INT64_MAX;
        double e = n * law(b->lo[k], hi, param);
        st += ((double)cnt[k] - e) * ((double)cnt[k] - e) / e;
    }
    return st;
}

/* Upper 1e-6 quantile of chi-square with df degrees (Wilson-Hilferty). */
static double chi2_crit(int df)
{
    double z = 4.753424, h = 2.0 / (9.0 * df), c = 1 - h + z * sqrt(h);
    return df * c * c * c;
}

/* Exact PMFs, normalized numerically over |x| <= L (the rest is below 1e-30). */
static double pmf_sum(int64_t a, int64_t b, double param, double (*w)(int64_t, double), int64_t lim)
{
    double num = 0, den = 0;
    for (int64_t x = -lim; x <= lim; x++) {
        double v = w(x, param);
        den += v;
        if (x >= a && x <= b)
            num += v;
    }
    return num / den;
}

static double w_gauss(int64_t x, double s2)
{
    return exp(-(double)x * (double)x / (2 * s2));
}

static double w_laplace(int64_t x, double t)
{
    return exp(-fabs((double)x) / t);
}

static double mass_dgauss(int64_t a, int64_t b, double s2)
{
    return pmf_sum(a, b, s2, w_gauss, (int64_t)(12 * sqrt(s2)) + 2);
}

static double mass_dlaplace(int64_t a, int64_t b, double t)
{
    return pmf_sum(a, b, t, w_laplace, (int64_t)(80 * t) + 2);
}

/* Large sigma: P(a <= X <= b) = Phi((b + 1/2)/sigma) - Phi((a - 1/2)/sigma), the midpoint
 * rule on the Gaussian density (relative error ~ 1/(24 sigma^2), the normalizer's
 * exp(-2 pi^2 sigma^2)): below 1e-12 for sigma >= 2^20. */
static double phi_upper(double z)
{
    return 0.5 * erfc(z / sqrt(2.0));
}

static double mass_gauss_big(int64_t a, int64_t b, double s2)
{
    double sd = sqrt(s2);
    double pa = a == INT64_MIN ? 1.0 : phi_upper(((double)a - 0.5) / sd);
    double pb = b == INT64_MAX ? 0.0 : phi_upper(((double)b + 0.5) / sd);
    return pa - pb;
}

typedef int64_t (*draw_fn)(fv_dp_stream_t *s, const void *arg);

static int64_t draw_dgauss(fv_dp_stream_t *s, const void *arg)
{
    return fv_dp_dgauss(s, *(const uint64_t *)arg);
}

static int64_t draw_dlaplace(fv_dp_stream_t *s, const void *arg)
{
    const uint64_t *t = arg;
    return fv_dp_dlaplace(s, t[0], t[1]);
}

/* n samples vs law(param): passes; vs law(param * 1.1): fails. Edges: integers at
 * -span + k step, k < 2 span / step. */
static void fit(const char *what, uint64_t index, draw_fn draw, const void *arg, mass_fn law,
                double param, double span, double step, int n)
{
    static int64_t e[4 * MAX_BINS];
    static uint64_t cnt[MAX_BINS];
    bins_t b;
    fv_dp_stream_t s;
    int ne = 0;

    for (double x = -span; x <= span && ne < 4 * MAX_BINS; x += step) {
        int64_t v = (int64_t)floor(x);
        if (ne == 0 || v > e[ne - 1])
            e[ne++] = v;
    }
    make_bins(&b, e, ne, law, param, n);
    CHECK(b.n >= 5);
    memset(cnt, 0, sizeof cnt);
    stream(&s, FV_DP_DOMAIN_TEST, index);
    for (int i = 0; i < n; i++)
        cnt[bin_of(&b, draw(&s, arg))]++;
    fv_dp_stream_wipe(&s);
    double crit = chi2_crit(b.n - 1);
    double good = chi2(&b, cnt, law, param, n), bad = chi2(&b, cnt, law, param * 1.1, n);
    fprintf(stderr, "%s: %d bins, chi2 %.1f (critical %.1f), against param*1.1: %.1f\n", what, b.n,
            good, crit, bad);
    if (!(good < crit))
        FV__FAIL("%s: chi-square %.1f >= %.1f", what, good, crit);
    if (!(bad > crit))
        FV__FAIL("%s: the wrong law (param * 1.1) passes: chi-square %.1f <= %.1f", what, bad,
                 crit);
}

static void test_dlaplace(void)
{
    const uint64_t t5[2] = {5, 1}, t15[2] = {3, 2}, t73[2] = {7, 3};
    const int n = 100000;

    fit("dlaplace t=5", 10, draw_dlaplace, t5, mass_dlaplace, 5.0, 40, 1, n);
    fit("dlaplace t=3/2", 11, draw_dlaplace, t15, mass_dlaplace, 1.5, 12, 1, n);
    fit("dlaplace t=7/3", 12, draw_dlaplace, t73, mass_dlaplace, 7.0 / 3, 20, 1, n);
}

static void test_dgauss(void)
{
    static const uint64_t s1 = 1, s10 = 10, s1000 = 1000, s20 = UINT64_C(1) << 20,
                          s40 = UINT64_C(1) << 40, s48 = UINT64_C(1) << 48;
    const int n = 100000;

    fit("dgauss sigma2=1", 20, draw_dgauss, &s1, mass_dgauss, 1, 6, 1, n);
    fit("dgauss sigma2=10", 21, draw_dgauss, &s10, mass_dgauss, 10, 16, 1, n);
    fit("dgauss sigma2=1000", 22, draw_dgauss, &s1000, mass_dgauss, 1000, 130, 3, n);
    fit("dgauss sigma2=2^20", 23, draw_dgauss, &s20, mass_gauss_big, 0x1p20, 4.5 * 0x1p10,
        0x1p10 / 6, n);
    fit("dgauss sigma2=2^40", 24, draw_dgauss, &s40, mass_gauss_big, 0x1p40, 4.5 * 0x1p20,
        0x1p20 / 6, n);
    fit("dgauss sigma2=2^48", 25, draw_dgauss, &s48, mass_gauss_big, 0x1p48, 4.5 * 0x1p24,
        0x1p24 / 6, n);
}

static void test_dgauss_add_u32(void)
{
    fv_dp_stream_t a, b;
    uint32_t acc[1000];

    for (int i = 0; i < 1000; i++)
        acc[i] = i % 2 ? 0xFFFFFFF0u + (uint32_t)(i % 16) : (uint32_t)(i % 16);
    stream(&a, FV_DP_DOMAIN_DDG, 0);
    stream(&b, FV_DP_DOMAIN_DDG, 0);
    fv_dp_dgauss_add_u32(&a, 400, acc, 1000);
    int up = 0, down = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t base = i % 2 ? 0xFFFFFFF0u + (uint32_t)(i % 16) : (uint32_t)(i % 16);
        int64_t x = fv_dp_dgauss(&b, 400);
        CHECK_UINT_EQ(acc[i], (uint32_t)((uint64_t)base + (uint64_t)x));
        up += i % 2 && (int64_t)base + x > (int64_t)UINT32_MAX;
        down += !(i % 2) && (int64_t)base + x < 0;
    }
    CHECK(up > 50 && down > 50); /* both directions of the wrap happened */
    CHECK_UINT_EQ(fv_dp_u64(&a), fv_dp_u64(&b));
    fv_dp_stream_wipe(&a);
    fv_dp_stream_wipe(&b);
}

/* ---- the float Gaussian ---- */

/* The wedge test's exp against libm's expl (long double): relative error below 4e-16
 * (fdlibm's exp: < 1 ulp), on [-708, 0] and densely on the ziggurat's range [-5.93, 0]. */
static void test_exp_neg(void)
{
    const double edge[] = {0.0,
                           -0.0,
                           -1e-300,
                           -0x1p-28,
                           -0x1p-27,
                           -0.3465735902799726,
                           -0.34657359027997264,
                           -1.0397207708399179,
                           -0.6931471805599453,
                           -5.925,
                           -707.9,
                           -700.0};
    fv_dp_stream_t s;
    double worst = 0;

    CHECK(fv__dp_exp_neg(0.0) == 1.0);
    stream(&s, FV_DP_DOMAIN_TEST, 6);
    for (int i = 0; i < 150000; i++) {
        double x;
        if (i < (int)(sizeof edge / sizeof edge[0]))
            x = edge[i];
        else if (i % 4 == 0)
            x = -708.0 * (double)(fv_dp_u64(&s) >> 11) * 0x1p-53;
        else
            x = -5.93 * (double)(fv_dp_u64(&s) >> 11) * 0x1p-53;
        double got = fv__dp_exp_neg(x);
        long double want = expl((long double)x);
        double err = fabs((double)((got - want) / want));
        if (err > worst)
            worst = err;
        if (err > 4e-16)
            FV__FAIL("exp_neg(%.17g) = %.17g, want %.17Lg", x, got, want);
    }
    fprintf(stderr, "exp_neg: worst relative error %.3g\n", worst);
    fv_dp_stream_wipe(&s);
}

/* The radius's log against logl: relative error below 4e-16 (fdlibm's log: < 1 ulp). Edges:
 * u = 2^-53 (the smallest), 1 (log 0, exact), just below 1, and both sides of sqrt(1/2)
 * (where the reduction switches) at several exponents. */
static void test_log_u53(void)
{
    const uint64_t top = (UINT64_C(1) << 53) - 1;
    uint64_t edge[] = {0,
                       1,
                       2,
                       3,
                       top,
                       top - 1,
                       top - 2,
                       (UINT64_C(1) << 52) - 1,
                       (UINT64_C(1) << 52),
                       6369051672525772ull,
                       6369051672525773ull,
                       3184525836262886ull,
                       3184525836262887ull,
                       1448,
                       1449,
                       46340,
                       46341};
    fv_dp_stream_t s;
    double worst = 0;

    CHECK(fv__dp_log_u53(top) == 0.0);
    stream(&s, FV_DP_DOMAIN_TEST, 5);
    for (int i = 0; i < 150000; i++) {
        uint64_t x;
        if (i < (int)(sizeof edge / sizeof edge[0]))
            x = edge[i];
        else if (i % 3 == 0) /* spread over the exponents too */
            x = (fv_dp_u64(&s) >> 11) >> (fv_dp_u64(&s) % 53);
        else
            x = fv_dp_u64(&s) >> 11;
        double got = fv__dp_log_u53(x);
        long double want = logl(((long double)x + 1) / 0x1p53L);
        double err = want == 0 ? fabs(got) : fabs((double)((got - want) / want));
        if (err > worst)
            worst = err;
        if (err > 4e-16)
            FV__FAIL("log_u53(%llu) = %.17g, want %.17Lg", (unsigned long long)x, got, want);
    }
    fprintf(stderr, "log_u53: worst relative error %.3g\n", worst);
    fv_dp_stream_wipe(&s);
}

static double normal_cdf(double z)
{
    return 0.5 * erfc(-z / sqrt(2.0));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov distance of the sorted z[0..n) from N(0, sd^2). */
static double ks_dist(const double *z, size_t n, double sd)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double f = normal_cdf(z[i] / sd), lo = f - (double)i / n, hi = (double)(i + 1) / n - f;
        if (lo > d)
            d = lo;
        if (hi > d)
            d = hi;
    }
    return d;
}

/* Chi-square of the sorted z[0..n) against N(0, sd^2) on 34 bins: (-inf, -4.5), [-4.5,
 * -4), [-4, -3.5), 28 bins of 0.25 on [-3.5, 3.5), [3.5, 4), [4, 4.5), [4.5, inf) (in units
 * of sd_true; expected counts >= 7 at n = 2^21). tail_k counts |z| >= 3.5 sd_true. */
#define GBINS 34
static double gauss_chi2(const double *z, size_t n, double sd_true, double sd, size_t *tail_k)
{
    double edge[GBINS + 1];
    uint64_t cnt[GBINS] = {0};
    edge[0] = -INFINITY;
    edge[1] = -4.5;
    edge[2] = -4.0;
    for (int i = 0; i <= 28; i++)
        edge[3 + i] = -3.5 + 0.25 * i;
    edge[32] = 4.0;
    edge[33] = 4.5;
    edge[34] = INFINITY;
    *tail_k = 0;
    for (size_t i = 0, b = 0; i < n; i++) { /* sorted: the bin only moves up */
        while (z[i] >= edge[b + 1] * sd_true)
            b++;
        cnt[b]++;
        *tail_k += fabs(z[i]) >= 3.5 * sd_true;
    }
    double x2 = 0;
    for (int b = 0; b < GBINS; b++) {
        double p = normal_cdf(edge[b + 1] * sd_true / sd) - normal_cdf(edge[b] * sd_true / sd);
        if (b >= GBINS / 2) /* the upper half from the upper tail: no cancellation */
            p = normal_cdf(-edge[b] * sd_true / sd) - normal_cdf(-edge[b + 1] * sd_true / sd);
        double e = p * (double)n, d = (double)cnt[b] - e;
        x2 += d * d / e;
    }
    return x2;
}

static void test_gauss_f32(void)
{
    enum { N = 1 << 21, M = 3001 };
    float *v = calloc(N, sizeof *v), ref[M], got[M];
    double *z = malloc(N * sizeof *z);
    fv_dp_stream_t s, r;

    CHECK(v != NULL && z != NULL);
    /* keyed: the same stream state gives the same values, whatever was read before (here
     * mid-buffer), and the two streams stay in step afterwards */
    stream(&s, FV_DP_DOMAIN_NOISE, 1);
    stream(&r, FV_DP_DOMAIN_NOISE, 1);
    CHECK(fv_dp_below(&s, 1u << 24) == fv_dp_below(&r, 1u << 24));
    for (int i = 0; i < M; i++)
        got[i] = ref[i] = 0.5f;
    fv_dp_gauss_add_f32(&s, 3.0, got, M);
    fv_dp_gauss_add_f32(&r, 3.0, ref, M);
    CHECK(memcmp(got, ref, sizeof got) == 0);
    CHECK_UINT_EQ(fv_dp_u64(&s), fv_dp_u64(&r));
    /* a value differs from 0.5 by std z: about 3 at most 3 * 8 */
    int moved = 0;
    for (int i = 0; i < M; i++) {
        CHECK(fabs(got[i] - 0.5) < 3.0 * 8.5);
        moved += got[i] != 0.5f;
    }
    CHECK(moved > M - 10);
    /* std 0 leaves the values alone */
    fv_dp_gauss_add_f32(&s, 0.0, got, M);
    CHECK(memcmp(got, ref, sizeof got) == 0);

    /* the law: 2^21 values at std 2.5 against N(0, 2.5^2) by Kolmogorov-Smirnov and a
     * binned chi-square that includes the tails beyond 3.5 sd (the ziggurat's tail
     * method starts at 3.44); both must reject the same values against std * 1.02 */
    const double sd = 2.5;
    fv_dp_gauss_add_f32(&s, sd, v, N);
    double m1 = 0, m2 = 0, m4 = 0, cross = 0, over2 = 0;
    for (int i = 0; i < N; i++) {
        double x = v[i];
        z[i] = x;
        m1 += x;
        m2 += x * x;
        m4 += x * x * x * x;
        over2 += fabs(x) > 2 * sd;
        if (i % 2)
            cross += x * v[i - 1];
    }
    m1 /= N;
    m2 /= N;
    m4 /= N;
    cross /= N / 2;
    double var = sd * sd;
    CHECK_NEAR(m1, 0, 5.5 * sd / sqrt(N));
    CHECK_NEAR(m2, var, 5.5 * var * sqrt(2.0 / N));
    CHECK_NEAR(m4 / (m2 * m2), 3.0, 5.5 * sqrt(96.0 / N));
    CHECK_NEAR(cross, 0, 5.5 * var / sqrt(N / 2.0)); /* neighbours independent */
    check_freq((uint64_t)over2, N, erfc(2 / sqrt(2.0)), "float gaussian |z| > 2");
    qsort(z, N, sizeof *z, cmp_double);
    /* KS: P(sqrt(n) D > c) <= 2 exp(-2 c^2) (Dvoretzky-Kiefer-Wolfowitz, Massart): 1e-6 */
    double ks_crit = sqrt(log(2e6) / 2) / sqrt((double)N);
    double ks = ks_dist(z, N, sd), ks_bad = ks_dist(z, N, sd * 1.02);
    size_t tail_k, tail_bad;
    double crit = chi2_crit(GBINS - 1), x2 = gauss_chi2(z, N, sd, sd, &tail_k),
           x2_bad = gauss_chi2(z, N, sd, sd * 1.02, &tail_bad);
    fprintf(stderr,
            "float gaussian: KS %.3g (critical %.3g, against std*1.02 %.3g); chi2 %.1f on %d "
            "bins (critical %.1f, against std*1.02 %.1f); %zu beyond 3.5 sd\n",
            ks, ks_crit, ks_bad, x2, GBINS, crit, x2_bad, tail_k);
    CHECK(ks < ks_crit);
    CHECK(ks_bad > ks_crit);
    CHECK(x2 < crit);
    CHECK(x2_bad > crit);
    check_freq(tail_k, N, erfc(3.5 / sqrt(2.0)), "float gaussian |z| >= 3.5");
    free(z);
    free(v);
    fv_dp_stream_wipe(&s);
    fv_dp_stream_wipe(&r);
}

/* ---- Poisson sampling ---- */

static void test_poisson(void)
{
    enum { N = 10000, STEPS = 400 };
    size_t *idx = malloc(N * sizeof *idx);
    fv_dp_stream_t s, r;
    double q = 0.05, sum = 0, sum2 = 0;

    CHECK(idx != NULL);
    for (int step = 0; step < STEPS; step++) {
        stream(&s, FV_DP_DOMAIN_SAMPLE, (uint64_t)step);
        size_t k = fv_dp_poisson(&s, q, N, idx);
        for (size_t j = 0; j < k; j++)
            CHECK(idx[j] < N && (j == 0 || idx[j] > idx[j - 1]));
        sum += (double)k;
        sum2 += (double)k * (double)k;
        fv_dp_stream_wipe(&s);
    }
    double mean = sum / STEPS, var = sum2 / STEPS - mean * mean, mu = N * q, v = N * q * (1 - q);
    CHECK_NEAR(mean, mu, 5.5 * sqrt(v / STEPS));
    CHECK_NEAR(var, v, 5.5 * v * sqrt(2.0 / (STEPS - 1)));

    /* q = 1/2 (T = 2^31): row i kept iff its byte is below 128; a byte of exactly 128
     * (T's top byte) draws 3 more bytes after the chunk, and rest < 0 never holds */
    stream(&s, FV_DP_DOMAIN_SAMPLE, 7);
    stream(&r, FV_DP_DOMAIN_SAMPLE, 7);
    size_t k = fv_dp_poisson(&s, 0.5, 1000, idx), j = 0, ties = 0;
    for (size_t i = 0; i < 1000; i++) {
        uint64_t b = fv_dp_below(&r, 256); /* one byte */
        ties += b == 128;
        if (b < 128) {
            CHECK(j < k);
            CHECK_UINT_EQ(idx[j++], i);
        }
    }
    CHECK_UINT_EQ(j, k);
    CHECK(ties > 0);
    for (size_t i = 0; i < 3 * ties; i++)
        (void)fv_dp_below(&r, 256);
    /* the rate used: q rounded up to a multiple of 2^-32 */
    CHECK(fv_dp_rate_round(0.5) == 0.5);
    CHECK(fv_dp_rate_round(0.05) >= 0.05 && fv_dp_rate_round(0.05) - 0.05 < 0x1p-32);
    CHECK(fv_dp_rate_round(0.05) == ceil(0.05 * 0x1p32) * 0x1p-32);
    CHECK(fv_dp_rate_round(1e-12) == 0x1p-32);
    CHECK(fv_dp_rate_round(1 - 0x1p-40) == 1.0);
    CHECK(fv_dp_rate_round(0.0) == 0.0 && fv_dp_rate_round(NAN) == 0.0);
    CHECK(fv_dp_rate_round(-1.0) == 0.0 && fv_dp_rate_round(2.0) == 1.0);
    /* q = 1 keeps all and draws nothing; q = 0 keeps none */
    CHECK_UINT_EQ(fv_dp_poisson(&s, 1.0, N, idx), N);
    CHECK_UINT_EQ(idx[N - 1], N - 1);
    CHECK_UINT_EQ(fv_dp_poisson(&s, 0.0, N, idx), 0);
    CHECK_UINT_EQ(fv_dp_u64(&s), fv_dp_u64(&r));
    fv_dp_stream_wipe(&s);
    fv_dp_stream_wipe(&r);
    free(idx);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    for (int i = 0; i < 32; i++)
        key0[i] = (uint8_t)i;
    test_stream_kat();
    test_determinism();
    test_pinned();
    test_below();
    test_bernoulli();
    test_bernoulli_exp();
    test_dlaplace();
    test_dgauss();
    test_dgauss_add_u32();
    test_exp_neg();
    test_log_u53();
    test_gauss_f32();
    test_poisson();
    printf("test_dpnoise: ok\n");
    return 0;
}
