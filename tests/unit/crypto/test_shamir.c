/* test_shamir.c - Shamir sharing over GF(2^61 - 1) (fv_shamir_*).
 *
 * Known answers come from an independent implementation, tests/unit/crypto/
 * shamir_oracle.py (Python big ints + `openssl enc -chacha20` for the random stream): it
 * re-derives the shares of secret 00..1f for a seeded source from the header's rules
 * alone, and checks that every t-subset reconstructs. Regenerate with
 *   python3 tests/unit/crypto/shamir_oracle.py 2026 3 5
 *   python3 tests/unit/crypto/shamir_oracle.py 7 17 20
 * (libgfshare was considered and rejected as an oracle: GF(2^8), at most 255 shares.)
 * The rest: round trips for t in {1, 2, 3, 17} and n up to 300 with random t-subsets and
 * supersets; t-1 shares do not give the secret; malformed input is refused; the checked
 * combine catches every single wrong share (and the plain one provably does not); wire
 * form.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_test.h"

#define P ((UINT64_C(1) << 61) - 1)

static const uint64_t kat_2026_3_5[5][6] = {
    {1, 1309818262697749155u, 2177442488264581408u, 1893864448068118643u, 1298030875642180809u,
     2244757884835717347u},
    {2, 1551258597805562226u, 441587855745862794u, 2237703051014243195u, 1463673255197455310u,
     1763572017666097144u},
    {3, 726015369972174189u, 1713637546334702146u, 1037166276689190950u, 504555658117681956u,
     862285408226900570u},
    {4, 1139931588411278995u, 1381905541603711562u, 598097134306655859u, 726521093616554698u,
     1846741065731821576u},
    {5, 487164243909182693u, 1752234850766584993u, 920495623866637922u, 2129569561694073536u,
     105252971753472260u},
};
static const uint64_t kat_7_17_20[2][6] = {
    /* shares 1 and 20 */
    {1, 154102832167684382u, 1629805631068774077u, 286860272390560198u, 2017305161240488115u,
     1822287317041199106u},
    {20, 1369318119085256446u, 1212978502749420489u, 881445084085023505u, 536200104085366671u,
     2061607795869454069u},
};

static void check_share(const fv_shamir_share_t *s, const uint64_t want[6])
{
    CHECK_UINT_EQ(s->x, want[0]);
    for (int k = 0; k < FV_SHAMIR_CHUNKS; k++)
        if (s->y[k] != want[1 + k])
            FV__FAIL("share x=%u chunk %d: %llu, oracle says %llu", s->x, k,
                     (unsigned long long)s->y[k], (unsigned long long)want[1 + k]);
}

static void test_kat(void)
{
    uint8_t secret[32], back[32];
    fv_shamir_share_t sh[20];
    fv_rand_t r;

    for (int i = 0; i < 32; i++)
        secret[i] = (uint8_t)i;
    fv_rand_seeded_u64(&r, 2026);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 3, 5, sh), 0);
    for (int i = 0; i < 5; i++)
        check_share(&sh[i], kat_2026_3_5[i]);
    fv_rand_seeded_u64(&r, 7);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 17, 20, sh), 0);
    check_share(&sh[0], kat_7_17_20[0]);
    check_share(&sh[19], kat_7_17_20[1]);
    CHECK_INT_EQ(fv_shamir_combine(sh + 3, 17, back), 0);
    CHECK(memcmp(back, secret, 32) == 0);
}

/* uniform-enough index in [0, m) for test shuffles */
static uint32_t rand_below(fv_rand_t *r, uint32_t m)
{
    uint64_t v;
    fv_rand_fill(r, &v, sizeof v);
    return (uint32_t)(v % m);
}

static void shuffle(fv_rand_t *r, fv_shamir_share_t *s, uint32_t n)
{
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rand_below(r, i);
        fv_shamir_share_t t = s[i - 1];
        s[i - 1] = s[j];
        s[j] = t;
    }
}

static void test_round_trip(void)
{
    static const uint32_t ts[] = {1, 2, 3, 17, 129, 130, 200}; /* 130, 200: heap coefficients */
    static const uint32_t extra_n[] = {0, 1, 33, 300};
    fv_shamir_share_t *sh = malloc(300 * sizeof *sh);
    fv_rand_t r, test_r;
    int n_wrong_eauth = 0, n_wrong_value = 0;

    CHECK(sh != NULL);
    fv_rand_seeded_u64(&r, 11);
    fv_rand_seeded_u64(&test_r, 12);
    for (size_t a = 0; a < sizeof ts / sizeof ts[0]; a++) {
        for (size_t b = 0; b < sizeof extra_n / sizeof extra_n[0]; b++) {
            uint32_t t = ts[a], n = extra_n[b] < t ? t + extra_n[b] : extra_n[b];
            for (int trial = 0; trial < 8; trial++) {
                uint8_t secret[32], back[32];
                fv_rand_fill(&test_r, secret, sizeof secret);
                if (trial == 0)
                    memset(secret, 0xFF, sizeof secret); /* every chunk at its maximum */
                if (trial == 1)
                    memset(secret, 0, sizeof secret);
                CHECK_INT_EQ(fv_shamir_split(&r, secret, t, n, sh), 0);
                for (uint32_t i = 0; i < n; i++) {
                    CHECK_UINT_EQ(sh[i].x, i + 1);
                    for (int k = 0; k < FV_SHAMIR_CHUNKS; k++)
                        CHECK(sh[i].y[k] < P);
                }
                /* a random t-subset (the first t after a shuffle) */
                shuffle(&test_r, sh, n);
                memset(back, 0, sizeof back);
                CHECK_INT_EQ(fv_shamir_combine(sh, t, back), 0);
                if (memcmp(back, secret, 32) != 0)
                    FV__FAIL("t=%u n=%u trial %d: t-subset gives a wrong secret", t, n, trial);
                /* a random superset, up to t + 5 */
                uint32_t more = t + 5 <= n ? t + 5 : n;
                CHECK_INT_EQ(fv_shamir_combine(sh + n - more, more, back), 0);
                CHECK(memcmp(back, secret, 32) == 0);
                /* t - 1 shares: FV_EAUTH, or a secret that is not this one */
                if (t >= 2) {
                    uint8_t wrong[32];
                    memset(wrong, 0, sizeof wrong);
                    int rc = fv_shamir_combine(sh, t - 1, wrong);
                    if (rc == FV_EAUTH) {
                        n_wrong_eauth++;
                    } else {
                        CHECK_INT_EQ(rc, 0);
                        if (memcmp(wrong, secret, 32) == 0)
                            FV__FAIL("t=%u n=%u: t-1 shares reconstruct the secret", t, n);
                        n_wrong_value++;
                    }
                }
            }
        }
    }
    /* t-1 shares give a random field element per chunk: it fits 56 bits with probability
     * 2^-5, so nearly all attempts end in FV_EAUTH. */
    CHECK(n_wrong_eauth > 0);
    printf("t-1 shares: %d x FV_EAUTH, %d x wrong secret\n", n_wrong_eauth, n_wrong_value);
    free(sh);
}

static void test_large_x(void)
{
    /* n = FV_SHAMIR_MAX_SHARES, reconstruct from the two largest x's */
    uint32_t n = FV_SHAMIR_MAX_SHARES;
    fv_shamir_share_t *sh = malloc(n * sizeof *sh);
    uint8_t secret[32], back[32];
    fv_rand_t r;
    CHECK(sh != NULL);
    fv_rand_seeded_u64(&r, 13);
    fv_rand_fill(&r, secret, 32);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 2, n, sh), 0);
    CHECK_UINT_EQ(sh[n - 1].x, FV_SHAMIR_MAX_SHARES);
    CHECK_INT_EQ(fv_shamir_combine(sh + n - 2, 2, back), 0);
    CHECK(memcmp(back, secret, 32) == 0);
    fv_shamir_share_t pair[2] = {sh[0], sh[n - 1]};
    CHECK_INT_EQ(fv_shamir_combine(pair, 2, back), 0);
    CHECK(memcmp(back, secret, 32) == 0);
    free(sh);
}

static void test_invalid(void)
{
    fv_shamir_share_t sh[6], bad[6];
    uint8_t secret[32] = {1, 2, 3}, back[32], keep[32];
    fv_rand_t r;

    fv_rand_seeded_u64(&r, 14);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 0, 5, sh), FV_EINVAL);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 6, 5, sh), FV_EINVAL);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 1, FV_SHAMIR_MAX_SHARES + 1, sh), FV_EINVAL);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 3, 6, sh), 0);

    memset(keep, 0xC3, sizeof keep);
    memcpy(back, keep, sizeof back);
    CHECK_INT_EQ(fv_shamir_combine(sh, 0, back), FV_EINVAL);
    memcpy(bad, sh, sizeof bad);
    bad[2].x = bad[0].x; /* duplicate x */
    CHECK_INT_EQ(fv_shamir_combine(bad, 3, back), FV_EINVAL);
    memcpy(bad, sh, sizeof bad);
    bad[5].x = bad[1].x; /* duplicate far apart */
    CHECK_INT_EQ(fv_shamir_combine(bad, 6, back), FV_EINVAL);
    memcpy(bad, sh, sizeof bad);
    bad[1].x = 0;
    CHECK_INT_EQ(fv_shamir_combine(bad, 3, back), FV_EINVAL);
    bad[1].x = FV_SHAMIR_MAX_SHARES + 1;
    CHECK_INT_EQ(fv_shamir_combine(bad, 3, back), FV_EINVAL);
    memcpy(bad, sh, sizeof bad);
    bad[2].y[4] = P; /* not canonical */
    CHECK_INT_EQ(fv_shamir_combine(bad, 3, back), FV_EINVAL);
    bad[2].y[4] = UINT64_MAX;
    CHECK_INT_EQ(fv_shamir_combine(bad, 3, back), FV_EINVAL);
    CHECK(memcmp(back, keep, sizeof back) == 0); /* written only on success */

    /* A corrupted share: FV_EAUTH or a different secret, never the right one. The range
     * check catches an error e only when lambda_i * e leaves the chunk's width: with
     * small x's lambda_i is a small integer, so e = +1 usually yields a nearby wrong
     * secret; a random-looking e is caught with probability 1 - 2^-5 (1 - 2^-29 for the
     * 4-byte chunk). The shares travel under AEAD; this check is only a backstop. */
    int n_eauth = 0;
    for (int k = 0; k < FV_SHAMIR_CHUNKS; k++) {
        for (uint64_t e = 1; e != 0; e = e == 1 ? UINT64_C(0x0123456789abcdef) : 0) {
            memcpy(bad, sh, sizeof bad);
            bad[1].y[k] = (bad[1].y[k] + e) % P;
            int rc = fv_shamir_combine(bad, 3, back);
            if (rc == FV_EAUTH)
                n_eauth++;
            else
                CHECK(rc == 0 && memcmp(back, secret, 32) != 0);
        }
    }
    CHECK(n_eauth >= 5);

    /* precomputed coefficients: x order and count must match */
    uint32_t xs[3] = {sh[0].x, sh[1].x, sh[2].x}, dup[3] = {1, 2, 1};
    fv_shamir_lagrange_t *l = NULL;
    CHECK_INT_EQ(fv_shamir_lagrange_new(dup, 3, &l), FV_EINVAL);
    CHECK(l == NULL);
    CHECK_INT_EQ(fv_shamir_lagrange_new(xs, 0, &l), FV_EINVAL);
    CHECK_INT_EQ(fv_shamir_lagrange_new(xs, 3, &l), 0);
    CHECK_INT_EQ(fv_shamir_combine_with(l, sh, 3, back), 0);
    CHECK(memcmp(back, secret, 32) == 0);
    CHECK_INT_EQ(fv_shamir_combine_with(l, sh, 2, back), FV_EINVAL);
    fv_shamir_share_t swapped[3] = {sh[1], sh[0], sh[2]};
    CHECK_INT_EQ(fv_shamir_combine_with(l, swapped, 3, back), FV_EINVAL);
    fv_shamir_lagrange_free(l);
    fv_shamir_lagrange_free(NULL);
}

static void test_combine_many(void)
{
    /* the server's case: many secrets, same holders */
    enum { NS = 40, T = 25, N = 60 };
    fv_shamir_share_t *all = malloc((size_t)NS * N * sizeof *all), sub[T];
    uint8_t secrets[NS][32], back[32];
    uint32_t xs[T];
    fv_rand_t r;
    fv_shamir_lagrange_t *l = NULL;

    CHECK(all != NULL);
    fv_rand_seeded_u64(&r, 15);
    for (int s = 0; s < NS; s++) {
        fv_rand_fill(&r, secrets[s], 32);
        CHECK_INT_EQ(fv_shamir_split(&r, secrets[s], T, N, all + (size_t)s * N), 0);
    }
    for (int i = 0; i < T; i++)
        xs[i] = (uint32_t)(N - 2 * i); /* 60, 58, ..., 12 */
    CHECK_INT_EQ(fv_shamir_lagrange_new(xs, T, &l), 0);
    for (int s = 0; s < NS; s++) {
        for (int i = 0; i < T; i++)
            sub[i] = all[(size_t)s * N + xs[i] - 1];
        CHECK_INT_EQ(fv_shamir_combine_with(l, sub, T, back), 0);
        CHECK(memcmp(back, secrets[s], 32) == 0);
        CHECK_INT_EQ(fv_shamir_combine(sub, T, back), 0);
        CHECK(memcmp(back, secrets[s], 32) == 0);
    }
    fv_shamir_lagrange_free(l);
    free(all);
}

static void test_checked(void)
{
    enum { N = 40 };
    fv_shamir_share_t sh[N], bad[N];
    uint8_t secret[32], back[32], keep[32];
    fv_rand_t r;

    fv_rand_seeded_u64(&r, 16);
    for (uint32_t t = 1; t <= 17; t += 8) {
        fv_rand_fill(&r, secret, 32);
        CHECK_INT_EQ(fv_shamir_split(&r, secret, t, N, sh), 0);
        shuffle(&r, sh, N);
        /* consistent: t, t + 1 and all N shares */
        CHECK_INT_EQ(fv_shamir_combine_checked(sh, t, t, back), 0);
        CHECK(memcmp(back, secret, 32) == 0);
        CHECK_INT_EQ(fv_shamir_combine_checked(sh, t + 1, t, back), 0);
        CHECK(memcmp(back, secret, 32) == 0);
        CHECK_INT_EQ(fv_shamir_combine_checked(sh, N, t, back), 0);
        CHECK(memcmp(back, secret, 32) == 0);
        /* one wrong share among t + 1, in any position, any chunk, error +1: always
         * caught, and the secret buffer is left alone */
        for (uint32_t pos = 0; pos <= t; pos++) {
            for (int k = 0; k < FV_SHAMIR_CHUNKS; k++) {
                memcpy(bad, sh, sizeof bad);
                bad[pos].y[k] = (bad[pos].y[k] + 1) % P;
                memset(back, 0xC3, sizeof back);
                memcpy(keep, back, sizeof keep);
                int rc = fv_shamir_combine_checked(bad, t + 1, t, back);
                if (rc != FV_EAUTH)
                    FV__FAIL("t=%u: share %u chunk %d off by one: got %d, want FV_EAUTH", t, pos, k,
                             rc);
                CHECK(memcmp(back, keep, 32) == 0);
            }
        }
        /* t - 1 shares claimed as t: not enough, refused */
        CHECK_INT_EQ(fv_shamir_combine_checked(sh, t, t + 1, back), FV_EINVAL);
    }
    /* The attack the layout check cannot see: x = 1, 2, 3 has weights 3, -3, 1, so share 3
     * off by +1 moves chunk 0 of the secret by +1 and fv_shamir_combine accepts it. */
    memset(secret, 0x10, sizeof secret);
    CHECK_INT_EQ(fv_shamir_split(&r, secret, 3, 4, sh), 0);
    memcpy(bad, sh, 4 * sizeof sh[0]);
    bad[2].y[0] = (bad[2].y[0] + 1) % P;
    CHECK_INT_EQ(fv_shamir_combine(bad, 3, back), 0);
    CHECK_UINT_EQ(back[0], 0x11); /* silently wrong */
    CHECK(memcmp(back + 1, secret + 1, 31) == 0);
    CHECK_INT_EQ(fv_shamir_combine_checked(bad, 4, 3, back), FV_EAUTH);
    /* invalid input */
    memcpy(bad, sh, 4 * sizeof sh[0]);
    bad[3].x = bad[0].x;
    CHECK_INT_EQ(fv_shamir_combine_checked(bad, 4, 3, back), FV_EINVAL);
    bad[3].x = 0;
    CHECK_INT_EQ(fv_shamir_combine_checked(bad, 4, 3, back), FV_EINVAL);
    CHECK_INT_EQ(fv_shamir_combine_checked(sh, 4, 0, back), FV_EINVAL);
}

static void test_wire(void)
{
    fv_shamir_share_t s = {.x = 0x1234, .y = {1, P - 1, 0, 0x0102030405060708u, 42}}, t, keep;
    uint8_t w[FV_SHAMIR_WIRE_BYTES], w2[FV_SHAMIR_WIRE_BYTES];

    CHECK_UINT_EQ(sizeof w, 44);
    fv_shamir_share_encode(&s, w);
    CHECK(w[0] == 0x34 && w[1] == 0x12 && w[2] == 0 && w[3] == 0); /* x little-endian */
    CHECK(w[4] == 1 && w[5] == 0);
    CHECK(w[28] == 0x08 && w[35] == 0x01); /* y[3] little-endian */
    memset(&t, 0, sizeof t);
    CHECK_INT_EQ(fv_shamir_share_decode(w, &t), 0);
    CHECK_UINT_EQ(t.x, s.x);
    for (int k = 0; k < 5; k++)
        CHECK_UINT_EQ(t.y[k], s.y[k]);
    fv_shamir_share_encode(&t, w2);
    CHECK(memcmp(w, w2, sizeof w) == 0);

    keep = t;
    memcpy(w2, w, sizeof w);
    memset(w2, 0, 4); /* x = 0 */
    CHECK_INT_EQ(fv_shamir_share_decode(w2, &t), FV_EPROTO);
    memcpy(w2, w, sizeof w);
    w2[2] = 1; /* x = 0x11234 > 65535 */
    CHECK_INT_EQ(fv_shamir_share_decode(w2, &t), FV_EPROTO);
    memcpy(w2, w, sizeof w);
    w2[4 + 8 * 2 + 7] = 0x20; /* y[2] = 2^61 = p + 1 */
    CHECK_INT_EQ(fv_shamir_share_decode(w2, &t), FV_EPROTO);
    memcpy(w2, w, sizeof w);
    memset(w2 + 4 + 8, 0xFF, 7);
    w2[4 + 8 + 7] = 0x1F; /* y[1] = p exactly */
    CHECK_INT_EQ(fv_shamir_share_decode(w2, &t), FV_EPROTO);
    CHECK_UINT_EQ(t.x, keep.x); /* untouched on failure (fields: padding is not compared) */
    for (int k = 0; k < 5; k++)
        CHECK_UINT_EQ(t.y[k], keep.y[k]);
}

int main(void)
{
    CHECK_INT_EQ(fv_crypto_init(), 0);
    test_kat();
    test_round_trip();
    test_large_x();
    test_invalid();
    test_combine_many();
    test_checked();
    test_wire();
    printf("test_shamir: ok\n");
    return 0;
}
