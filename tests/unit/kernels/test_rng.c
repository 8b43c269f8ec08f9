/* test_rng.c - fv_rng: known answers, determinism, ranges and rough distributions.
 *
 * The known-answer vectors come from an independent Python implementation of splitmix64
 * and xoshiro256** written from Vigna's published reference code (below, to re-run with
 * python3). Its first splitmix64 output for seed 0, 0xe220a8397b1dcdaf, is the widely
 * published value, which cross-checks the Python itself.
 *
 * Statistical checks use fixed seeds, so they are deterministic; the bounds are 5 sigma
 * (or a chi-square far in the tail) so that a correct generator passes them for any seed,
 * while a broken one (wrong range, bias, a stuck bit) fails by orders of magnitude.
 *
 *   M = (1 << 64) - 1
 *   def splitmix64(x):
 *       x = (x + 0x9e3779b97f4a7c15) & M
 *       z = x
 *       z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
 *       z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
 *       return x, z ^ (z >> 31)
 *   def rotl(x, k): return ((x << k) | (x >> (64 - k))) & M
 *   class X:
 *       def __init__(self, seed):
 *           self.s, x = [], seed
 *           for _ in range(4):
 *               x, v = splitmix64(x); self.s.append(v)
 *       def next(self):
 *           s = self.s
 *           r = (rotl((s[1] * 5) & M, 7) * 9) & M
 *           t = (s[1] << 17) & M
 *           s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t
 *           s[3] = rotl(s[3], 45)
 *           return r
 *       def below(self, n):                     # Lemire 2019
 *           m = self.next() * n; l = m & M
 *           if l < n:
 *               t = ((1 << 64) - n) % n
 *               while l < t:
 *                   m = self.next() * n; l = m & M
 *           return m >> 64
 *   g = X(0); print([hex(g.next()) for _ in range(8)])
 *   g = X(0); print([repr((g.next() >> 11) * 2.0**-53) for _ in range(4)])
 *   g = X(0); print([g.below(10) for _ in range(16)])
 *   g = X(7); print([g.below((1 << 63) + 1) for _ in range(6)])
 */
#include "fv_rng.h"
#include "fv_test.h"

#include <stdbool.h>

static void test_known_answers(void)
{
    static const uint64_t seed0_state[4] = {0xe220a8397b1dcdafULL, 0x6e789e6aa1b965f4ULL,
                                            0x06c45d188009454fULL, 0xf88bb8a8724c81ecULL};
    static const uint64_t seed0[8] = {
        0x99ec5f36cb75f2b4ULL, 0xbf6e1f784956452aULL, 0x1a5f849d4933e6e0ULL, 0x6aa594f1262d2d2cULL,
        0xbba5ad4a1f842e59ULL, 0xffef8375d9ebcacaULL, 0x6c160deed2f54c98ULL, 0x8920ad648fc30a3fULL,
    };
    static const uint64_t seed42[8] = {
        0x15780b2e0c2ec716ULL, 0x6104d9866d113a7eULL, 0xae17533239e499a1ULL, 0xecb8ad4703b360a1ULL,
        0xfde6dc7fe2ec5e64ULL, 0xc50da53101795238ULL, 0xb82154855a65ddb2ULL, 0xd99a2743ebe60087ULL,
    };
    static const double uniform0[4] = {0.6012629994179048, 0.7477740925472398, 0.10301998939503632,
                                       0.4165890778296456};
    static const uint64_t below10[16] = {6, 7, 1, 4, 7, 9, 4, 5, 8, 9, 1, 0, 1, 6, 4, 2};
    static const uint64_t below_big[6] = {
        6461677535414237997ULL, 7744196453246319819ULL, 9049029322324588832ULL,
        9139072988219048332ULL, 1400256439129669809ULL, 6750200521807187948ULL,
    };
    fv_rng_t r;

    fv_rng_seed(&r, 0);
    for (int i = 0; i < 4; i++)
        CHECK_UINT_EQ(r.s[i], seed0_state[i]);
    for (int i = 0; i < 8; i++)
        CHECK_UINT_EQ(fv_rng_next(&r), seed0[i]);

    fv_rng_seed(&r, 42);
    for (int i = 0; i < 8; i++)
        CHECK_UINT_EQ(fv_rng_next(&r), seed42[i]);

    fv_rng_seed(&r, 0);
    for (int i = 0; i < 4; i++)
        CHECK(fv_rng_uniform(&r) == uniform0[i]); /* exact: 53 bits times 2^-53 */

    fv_rng_seed(&r, 0);
    for (int i = 0; i < 16; i++)
        CHECK_UINT_EQ(fv_rng_below(&r, 10), below10[i]);

    /* n = 2^63 + 1 rejects almost half the draws: exercises Lemire's retry loop. */
    fv_rng_seed(&r, 7);
    for (int i = 0; i < 6; i++)
        CHECK_UINT_EQ(fv_rng_below(&r, (1ULL << 63) + 1), below_big[i]);
}

static void test_determinism(void)
{
    fv_rng_t a, b;
    fv_rng_seed(&a, 12345);
    fv_rng_seed(&b, 12345);
    for (int i = 0; i < 10000; i++)
        CHECK_UINT_EQ(fv_rng_next(&a), fv_rng_next(&b));

    /* The state is a plain value: a copy forks an identical stream. */
    fv_rng_t c = a;
    for (int i = 0; i < 1000; i++)
        CHECK(fv_rng_normal(&a) == fv_rng_normal(&c));

    /* Different seeds, including adjacent ones, give different streams. */
    uint64_t first[16];
    for (uint64_t s = 0; s < 16; s++) {
        fv_rng_seed(&a, s);
        first[s] = fv_rng_next(&a);
        for (uint64_t t = 0; t < s; t++)
            CHECK(first[s] != first[t]);
    }
    fv_rng_seed(&a, 1);
    fv_rng_seed(&b, 2);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += fv_rng_next(&a) == fv_rng_next(&b);
    CHECK_INT_EQ(same, 0);
}

static void test_below(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 99);
    static const uint64_t ns[] = {1,         2, 3, 7, 10, 1000, (1ULL << 32) + 1, (1ULL << 63) + 1,
                                  UINT64_MAX};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        for (int i = 0; i < 2000; i++) {
            uint64_t v = fv_rng_below(&r, ns[k]);
            CHECK(v < ns[k]);
        }
    }

    /* Rough uniformity over 10 values: chi-square with 9 degrees of freedom. Its 1e-6
     * upper quantile is about 44; a bias of 1% in one bucket over 200000 draws adds ~20,
     * an off-by-one range (a bucket never hit) adds ~20000. */
    enum { N_DRAWS = 200000, K = 10 };
    uint64_t count[K] = {0};
    for (int i = 0; i < N_DRAWS; i++)
        count[fv_rng_below(&r, K)]++;
    double expect = (double)N_DRAWS / K, chi2 = 0.0;
    for (int j = 0; j < K; j++)
        chi2 += ((double)count[j] - expect) * ((double)count[j] - expect) / expect;
    if (!(chi2 < 44.0))
        FV__FAIL("fv_rng_below(10) chi-square %.2f >= 44", chi2);

    /* The top half of a huge range is hit about half the time (5 sigma: 0.0079 at 10^4). */
    int top = 0;
    for (int i = 0; i < 10000; i++)
        top += fv_rng_below(&r, UINT64_MAX) >= (1ULL << 63);
    CHECK_NEAR(top / 10000.0, 0.5, 0.025);
}

static void test_shuffle(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 5);

    fv_rng_shuffle(&r, NULL, 0); /* n = 0 touches nothing */
    size_t one = 17;
    fv_rng_shuffle(&r, &one, 1);
    CHECK_UINT_EQ(one, 17);

    enum { N = 257 };
    size_t idx[N];
    bool seen[N];
    for (size_t i = 0; i < N; i++)
        idx[i] = i;
    int moved = 0;
    for (int round = 0; round < 20; round++) {
        fv_rng_shuffle(&r, idx, N);
        memset(seen, 0, sizeof seen);
        for (size_t i = 0; i < N; i++) {
            CHECK(idx[i] < N);
            CHECK(!seen[idx[i]]);
            seen[idx[i]] = true;
        }
    }
    for (size_t i = 0; i < N; i++)
        moved += idx[i] != i;
    CHECK(moved > N / 2);

    /* All 6 orders of 3 items, equally often: chi-square with 5 degrees of freedom, whose
     * 1e-6 upper quantile is about 36. The classic off-by-one Fisher-Yates bug (j drawn
     * from [0, i-1) instead of [0, i]) never produces some orders and fails by thousands. */
    enum { TRIALS = 60000 };
    uint64_t perm_count[6] = {0};
    for (int t = 0; t < TRIALS; t++) {
        size_t p[3] = {0, 1, 2};
        fv_rng_shuffle(&r, p, 3);
        /* rank of the permutation in lexicographic order */
        size_t rank = p[0] * 2 + (p[1] > p[2]);
        CHECK(p[0] != p[1] && p[1] != p[2] && p[0] != p[2]);
        perm_count[rank]++;
    }
    double expect = TRIALS / 6.0, chi2 = 0.0;
    for (int j = 0; j < 6; j++)
        chi2 += ((double)perm_count[j] - expect) * ((double)perm_count[j] - expect) / expect;
    if (!(chi2 < 36.0))
        FV__FAIL("shuffle of 3 chi-square %.2f >= 36", chi2);
}

static void test_uniform_normal(void)
{
    enum { N = 1000000 };
    fv_rng_t r;
    fv_rng_seed(&r, 2024);

    /* U[0,1): mean 1/2, variance 1/12; 5 sigma of the mean at 10^6 draws is 0.0015. */
    double sum = 0.0, sumsq = 0.0, lo = 1.0, hi = 0.0;
    for (int i = 0; i < N; i++) {
        double u = fv_rng_uniform(&r);
        CHECK(u >= 0.0 && u < 1.0);
        sum += u;
        sumsq += u * u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    double mean = sum / N, var = sumsq / N - mean * mean;
    CHECK_NEAR(mean, 0.5, 0.0015);
    CHECK_NEAR(var, 1.0 / 12.0, 0.001);
    CHECK(lo < 1e-4 && hi > 1.0 - 1e-4);

    /* N(0,1): 5 sigma of the mean is 0.005, of the variance 5 * sqrt(2 / N) = 0.0071;
     * P(|z| < 1) = 0.6827, 5 sigma 0.0023. */
    sum = sumsq = 0.0;
    int within1 = 0;
    for (int i = 0; i < N; i++) {
        double z = fv_rng_normal(&r);
        CHECK(isfinite(z));
        sum += z;
        sumsq += z * z;
        within1 += fabs(z) < 1.0;
    }
    mean = sum / N;
    var = sumsq / N - mean * mean;
    CHECK_NEAR(mean, 0.0, 0.005);
    CHECK_NEAR(var, 1.0, 0.0071);
    CHECK_NEAR((double)within1 / N, 0.682689, 0.0023);
}

int main(void)
{
    test_known_answers();
    test_determinism();
    test_below();
    test_shuffle();
    test_uniform_normal();
    return 0;
}
