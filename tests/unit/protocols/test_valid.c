/* test_valid.c - input validation under secure aggregation (protocols/fv_valid.h):
 * completeness, soundness and tamper resistance at small sizes.
 *
 * A synthetic spec stands in for a training round's input: a norm block of d words
 * (sum z_j^2 <= 400 d), then n_val, four histogram bins, a loss sum and n_train, with
 * ranges (counts in [0, 2^b)), upper bounds (loss <= 17 n_val, n_train <= 1000) and one
 * equality (the bins sum to n_val). All parties run in this process: a prover, n holders
 * (holder_check on the bytes of the proof), the decider (decide on the vshares) and the
 * aggregation (aggshare / aggregate).
 *
 * What is checked:
 *   completeness  honest inputs (several seeds and d, d = 1, on the norm bound exactly)
 *                 pass every holder check and decide, from all n vshares, exactly t and
 *                 t + 1; the aggregate from t, t + 1 and n holders is the exact sum.
 *   soundness     a false input proved with fv_valid_prove_unchecked is rejected and the
 *                 verdict names the failed check: norm over the bound by 1, a coordinate
 *                 of 2^31 (its field square is 2: the field norm looks small, only the
 *                 wraparound check sees it), a count below 0, an upper bound exceeded,
 *                 the bins not summing to n_val. The one attack left out is a bit of a
 *                 range decomposition that is not 0 or 1: the prover's code makes the
 *                 bits, so it cannot be produced from outside.
 *   tampering     every bit of the header and a sample of payload bits flipped (holder
 *                 check fails with the code of the field), every bit of a vshare flipped
 *                 (decide fails or names that holder; never an ok verdict that ignored
 *                 it), proofs for another federation, job, round, prover or identity and
 *                 a proof replayed in the next round (FV_EROUND), tampered aggshares
 *                 (one of t + 2: named and dropped, the sum exact; two: FV_EAUTH).
 * Randomness is seeded (fv_rand_seeded_u64), so every run draws the same proofs.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_gf61.h"
#include "fv_test.h"
#include "fv_valid.h"

#define MAXN 8
#define N_METRIC 7
#define MAX_PROVERS 4

/* ---- the synthetic spec --------------------------------------------------------------- */

enum { W_NVAL, W_HIST0, W_LOSS = W_HIST0 + 4, W_NTRAIN, W_END };

typedef struct tspec {
    uint32_t d, D;
    fv_valid_spec_t spec;
    fv_valid_affine_t ranges[9];
    fv_valid_affine_t equal[1];
    fv_valid_term_t terms[16];
} tspec_t;

static void range1(fv_valid_affine_t *a, fv_valid_term_t *t, uint32_t idx, int64_t coef,
                   int64_t constant, uint32_t bits, const char *name)
{
    t->index = idx;
    t->coef = coef;
    a->terms = t;
    a->n_terms = 1;
    a->constant = constant;
    a->bits = bits;
    snprintf(a->name, sizeof a->name, "%s", name);
}

/* Norm block w[0, d), metrics w[d, d + 7). The caller keeps ts alive (the spec points into
 * it). */
static void tspec_init(tspec_t *ts, uint32_t d)
{
    memset(ts, 0, sizeof *ts);
    ts->d = d;
    ts->D = d + N_METRIC;
    uint32_t b = d;
    fv_valid_term_t *t = ts->terms;
    range1(&ts->ranges[0], t++, b + W_NVAL, 1, 0, 10, "n_val");
    for (uint32_t k = 0; k < 4; k++) {
        char name[16];
        snprintf(name, sizeof name, "hist[%u]", k);
        range1(&ts->ranges[1 + k], t++, b + W_HIST0 + k, 1, 0, 10, name);
    }
    range1(&ts->ranges[5], t++, b + W_LOSS, 1, 0, 16, "loss");
    /* loss <= 17 n_val: e = 17 n_val - loss */
    t[0] = (fv_valid_term_t){b + W_NVAL, 17};
    t[1] = (fv_valid_term_t){b + W_LOSS, -1};
    ts->ranges[6] = (fv_valid_affine_t){.terms = t, .n_terms = 2, .constant = 0, .bits = 16};
    snprintf(ts->ranges[6].name, sizeof ts->ranges[6].name, "loss_max");
    t += 2;
    range1(&ts->ranges[7], t++, b + W_NTRAIN, 1, 0, 12, "n_train");
    range1(&ts->ranges[8], t++, b + W_NTRAIN, -1, 1000, 10, "n_train_max"); /* 1000 - w */
    /* sum of the bins - n_val = 0 */
    for (uint32_t k = 0; k < 4; k++)
        t[k] = (fv_valid_term_t){b + W_HIST0 + k, 1};
    t[4] = (fv_valid_term_t){b + W_NVAL, -1};
    ts->equal[0] = (fv_valid_affine_t){.terms = t, .n_terms = 5, .constant = 0, .bits = 0};
    snprintf(ts->equal[0].name, sizeof ts->equal[0].name, "hist_sum");
    t += 5;
    CHECK((size_t)(t - ts->terms) <= sizeof ts->terms / sizeof ts->terms[0]);

    ts->spec.dim = ts->D;
    ts->spec.norm_off = 0;
    ts->spec.norm_len = d;
    ts->spec.norm_sq = 400ull * d;
    ts->spec.ranges = ts->ranges;
    ts->spec.n_ranges = 9;
    ts->spec.equal = ts->equal;
    ts->spec.n_equal = 1;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* An honest input: |z_j| <= 20 (so sum z^2 <= 400 d), consistent metrics. */
static void honest_w(const tspec_t *ts, uint64_t seed, int64_t *w)
{
    uint64_t s = seed * 7919 + 17;
    for (uint32_t j = 0; j < ts->d; j++)
        w[j] = (int64_t)(splitmix(&s) % 41) - 20;
    int64_t *m = w + ts->d;
    int64_t n_val = 1 + (int64_t)(splitmix(&s) % 1000);
    m[W_NVAL] = n_val;
    int64_t left = n_val;
    for (uint32_t k = 0; k < 3; k++) {
        m[W_HIST0 + k] = (int64_t)(splitmix(&s) % (uint64_t)(left + 1));
        left -= m[W_HIST0 + k];
    }
    m[W_HIST0 + 3] = left;
    m[W_LOSS] = (int64_t)(splitmix(&s) % (uint64_t)(17 * n_val + 1));
    m[W_NTRAIN] = (int64_t)(splitmix(&s) % 1001);
}

/* ---- the parties ---------------------------------------------------------------------- */

static void ctx_for(const char *fed, uint64_t job, uint64_t round, uint32_t prover, uint8_t pk_byte,
                    uint8_t ctx[FV_HASH_BYTES])
{
    uint8_t pk[FV_SIGN_PK_BYTES];
    memset(pk, pk_byte, sizeof pk);
    fv_valid_context(fed, job, round, prover, pk, ctx);
}

/* One prover's proof and every holder's result of checking it. */
typedef struct proved {
    fv_valid_proof_t *pf;
    fv_valid_held_t *held[MAXN];
    uint8_t *vs[MAXN]; /* vs[x-1]: holder x's vshare */
    size_t vlen[MAXN];
} proved_t;

static void proved_free(proved_t *p)
{
    fv_valid_proof_free(p->pf);
    for (uint32_t i = 0; i < MAXN; i++) {
        fv_valid_held_free(p->held[i]);
        free(p->vs[i]);
    }
    memset(p, 0, sizeof *p);
}

static void prove(const tspec_t *ts, uint32_t n, uint32_t t, const uint8_t ctx[FV_HASH_BYTES],
                  const int64_t *w, uint64_t seed, bool unchecked, fv_valid_proof_t **ret)
{
    fv_rand_t rng;
    fv_rand_seeded_u64(&rng, seed);
    fv_diag_t d = {""};
    if (unchecked)
        CHECK_OK(fv_valid_prove_unchecked(&ts->spec, n, t, ctx, w, &rng, ret, &d), &d);
    else
        CHECK_OK(fv_valid_prove(&ts->spec, n, t, ctx, w, &rng, ret, &d), &d);
    fv_valid_layout_t l;
    CHECK_OK(fv_valid_layout_init(&ts->spec, n, t, &l, &d), &d);
    CHECK_UINT_EQ((*ret)->n, n);
    CHECK_UINT_EQ((*ret)->header_len, l.header_bytes);
    CHECK_UINT_EQ((*ret)->payload_len, l.payload_bytes);
    CHECK((*ret)->tries >= 1);
    /* seed compression: holders 1..t-1 get a seed whose expansion is their payload */
    CHECK_UINT_EQ((*ret)->n_seeded, t - 1);
    uint8_t *exp = malloc(l.payload_bytes);
    CHECK(exp != NULL);
    for (uint32_t x = 1; x <= (*ret)->n_seeded; x++) {
        CHECK_OK(
            fv_valid_expand_seed(&l, (*ret)->seeds + (size_t)(x - 1) * FV_VALID_SEED_BYTES, exp),
            NULL);
        CHECK(memcmp(exp, (*ret)->payloads[x - 1], l.payload_bytes) == 0);
    }
    free(exp);
}

/* holder_check of holder x on the proof's bytes, with the checking holder's own ctx. */
static int hcheck(const tspec_t *ts, uint32_t n, uint32_t t, uint32_t x,
                  const uint8_t ctx[FV_HASH_BYTES], const uint8_t *hdr, size_t hlen,
                  const uint8_t *pl, size_t plen, fv_valid_held_t **held, uint8_t **vs,
                  size_t *vlen, fv_diag_t *d)
{
    fv_valid_held_t *h = NULL;
    uint8_t *v = NULL;
    size_t vl = 0;
    int rc = fv_valid_holder_check(&ts->spec, n, t, x, ctx, hdr, hlen, pl, plen, &h, &v, &vl, d);
    if (rc != 0) {
        CHECK(h == NULL && v == NULL); /* nothing handed out on failure */
        return rc;
    }
    CHECK(h != NULL && v != NULL);
    CHECK_UINT_EQ(fv_valid_held_x(h), x);
    if (held)
        *held = h;
    else
        fv_valid_held_free(h);
    if (vs) {
        *vs = v;
        *vlen = vl;
    } else {
        free(v);
    }
    return 0;
}

/* Prove w and let every holder check it (all must pass). */
static void prove_and_check(const tspec_t *ts, uint32_t n, uint32_t t,
                            const uint8_t ctx[FV_HASH_BYTES], const int64_t *w, uint64_t seed,
                            bool unchecked, proved_t *ret)
{
    memset(ret, 0, sizeof *ret);
    prove(ts, n, t, ctx, w, seed, unchecked, &ret->pf);
    fv_valid_layout_t l;
    CHECK_OK(fv_valid_layout_init(&ts->spec, n, t, &l, NULL), NULL);
    for (uint32_t x = 1; x <= n; x++) {
        fv_diag_t d = {""};
        CHECK_OK(hcheck(ts, n, t, x, ctx, ret->pf->header, ret->pf->header_len,
                        ret->pf->payloads[x - 1], ret->pf->payload_len, &ret->held[x - 1],
                        &ret->vs[x - 1], &ret->vlen[x - 1], &d),
                 &d);
        CHECK_UINT_EQ(ret->vlen[x - 1], l.vshare_bytes);
    }
}

/* decide on the vshares of the holders listed in xs (1-based). */
static int decide_xs(const tspec_t *ts, uint32_t n, uint32_t t, const proved_t *p,
                     const uint32_t *xs, uint32_t count, fv_valid_verdict_t *v, fv_diag_t *d)
{
    const uint8_t *vs[MAXN];
    size_t lens[MAXN];
    for (uint32_t i = 0; i < count; i++) {
        vs[i] = p->vs[xs[i] - 1];
        lens[i] = p->vlen[xs[i] - 1];
    }
    memset(v, 0xa5, sizeof *v);
    return fv_valid_decide(&ts->spec, n, t, p->pf->header, p->pf->header_len, vs, lens, count, v,
                           d);
}

static int decide_all(const tspec_t *ts, uint32_t n, uint32_t t, const proved_t *p,
                      fv_valid_verdict_t *v, fv_diag_t *d)
{
    uint32_t xs[MAXN];
    for (uint32_t i = 0; i < n; i++)
        xs[i] = i + 1;
    return decide_xs(ts, n, t, p, xs, n, v, d);
}

static void check_accepted(const fv_valid_verdict_t *v, uint32_t n_used)
{
    if (!v->ok)
        FV__FAIL("honest proof refused: check \"%.*s\", outlier %u", FV_VALID_NAME_MAX, v->check,
                 v->outlier);
    CHECK_UINT_EQ(v->outlier, 0);
    CHECK_UINT_EQ(v->n_used, n_used);
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Adds 1 (mod p) to the field element at byte offset off: still canonical, another value. */
static void bump_elem(uint8_t *buf, size_t off)
{
    put_u64(buf + off, fv_gf_add(get_u64(buf + off), 1));
}

/* The byte layouts of fv_valid.h's top comment. */
#define HEADER_FIXED 48u   /* "FVV1" | u32 n | u32 t | u32 S | ctx[32] */
#define VSHARE_PREFIX 40u  /* "FVV2" | hdr_hash[32] | u32 x */
#define AGGSHARE_PREFIX 44 /* "FVV3" | sum_hash[32] | u32 x | u32 count */

/* ---- layout and argument checks ------------------------------------------------------- */

static void test_layout(void)
{
    tspec_t ts;
    tspec_init(&ts, 64);
    fv_valid_layout_t l;
    fv_diag_t d = {""};
    CHECK_OK(fv_valid_layout_init(&ts.spec, 5, 4, &l, &d), &d);
    CHECK_UINT_EQ(l.n, 5);
    CHECK_UINT_EQ(l.t, 4);
    CHECK_UINT_EQ(l.d, 64);
    CHECK_UINT_EQ(l.n_range_bits, 10 * 5 + 16 + 16 + 12 + 10);
    CHECK_UINT_EQ(l.bs, 15); /* 25600 < 2^15 */
    CHECK_UINT_EQ(l.n_proj_bits, FV_VALID_PROJ * l.bp);
    CHECK_UINT_EQ(l.S, l.s1 + l.s2 + l.s3);
    CHECK_UINT_EQ(l.s1, ts.D + l.n_range_bits + l.bs);
    CHECK_UINT_EQ(l.s2, l.n_proj_bits);
    CHECK_UINT_EQ(l.s3, 2 * l.m + 2 * l.L + 2);
    CHECK(l.m * l.L >= l.d + l.n_range_bits + l.bs + l.n_proj_bits);
    /* 4 + 4 + 4 + 4 + 32 bytes, then H1..H3 per holder */
    CHECK_UINT_EQ(l.header_bytes, HEADER_FIXED + 96 * 5);
    CHECK_UINT_EQ(l.payload_bytes, (size_t)l.S * FV_VALID_ELEM_BYTES);
    CHECK_UINT_EQ(l.vshare_bytes, (size_t)(2 * l.m + 6 + 9 + 1) * 8 + 40);
    CHECK_UINT_EQ(l.aggshare_bytes, AGGSHARE_PREFIX + (size_t)ts.D * 8);

    /* n and t outside 2t > n, t <= n */
    CHECK_INT_EQ(fv_valid_layout_init(&ts.spec, 5, 2, &l, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_valid_layout_init(&ts.spec, 4, 2, &l, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_valid_layout_init(&ts.spec, 4, 5, &l, NULL), FV_EINVAL);
    CHECK_INT_EQ(
        fv_valid_layout_init(&ts.spec, FV_VALID_MAX_HOLDERS + 1, FV_VALID_MAX_HOLDERS, &l, NULL),
        FV_EINVAL);
    /* a term past D */
    tspec_t bad = ts;
    fv_valid_term_t far = {ts.D, 1};
    bad.ranges[0].terms = &far;
    bad.spec.ranges = bad.ranges;
    CHECK_INT_EQ(fv_valid_layout_init(&bad.spec, 5, 4, &l, &d), FV_EINVAL);
    /* bits out of 1..FV_VALID_MAX_RANGE_BITS */
    bad = ts;
    bad.spec.ranges = bad.ranges;
    bad.ranges[2].bits = 0;
    CHECK_INT_EQ(fv_valid_layout_init(&bad.spec, 5, 4, &l, &d), FV_EINVAL);
    bad.ranges[2].bits = FV_VALID_MAX_RANGE_BITS + 1;
    CHECK_INT_EQ(fv_valid_layout_init(&bad.spec, 5, 4, &l, &d), FV_EINVAL);
    /* a word in no range and outside the norm block (loss: drop its two ranges) */
    bad = ts;
    bad.spec.ranges = bad.ranges;
    bad.ranges[5] = bad.ranges[8];
    bad.ranges[6] = bad.ranges[7];
    bad.spec.n_ranges = 7;
    CHECK_INT_EQ(fv_valid_layout_init(&bad.spec, 5, 4, &l, &d), FV_EINVAL);
    /* a norm bound too large for the wraparound argument: d 2^(2bp) + 2^bs >= p */
    bad = ts;
    bad.spec.norm_sq = (uint64_t)1 << 50;
    CHECK_INT_EQ(fv_valid_layout_init(&bad.spec, 5, 4, &l, &d), FV_EINVAL);
}

/* ---- completeness --------------------------------------------------------------------- */

static void complete_one(uint32_t d, uint32_t n, uint32_t t, uint64_t seed, const int64_t *w_in)
{
    tspec_t ts;
    tspec_init(&ts, d);
    int64_t *w = calloc(ts.D, sizeof *w);
    CHECK(w != NULL);
    if (w_in)
        memcpy(w, w_in, ts.D * sizeof *w);
    else
        honest_w(&ts, seed, w);
    fv_diag_t dg = {""};
    CHECK_OK(fv_valid_spec_eval(&ts.spec, w, &dg), &dg);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 3, seed, 1, 0x11, ctx);
    proved_t p;
    prove_and_check(&ts, n, t, ctx, w, seed, false, &p);

    fv_valid_verdict_t v;
    CHECK_OK(decide_all(&ts, n, t, &p, &v, &dg), &dg);
    check_accepted(&v, n);
    /* exactly t and t + 1 of n, holders dropped from the front and from the back */
    uint32_t xs[MAXN] = {0}; /* (zeroed: GCC 12 -O3 cannot see k <= MAXN) */
    for (uint32_t k = t; k <= n; k++) {
        for (uint32_t i = 0; i < k; i++)
            xs[i] = n - k + 1 + i;
        CHECK_OK(decide_xs(&ts, n, t, &p, xs, k, &v, &dg), &dg);
        check_accepted(&v, k);
        for (uint32_t i = 0; i < k; i++)
            xs[i] = i + 1;
        CHECK_OK(decide_xs(&ts, n, t, &p, xs, k, &v, &dg), &dg);
        check_accepted(&v, k);
    }
    /* fewer than t */
    CHECK_INT_EQ(decide_xs(&ts, n, t, &p, xs, t - 1, &v, &dg), FV_ETHRESHOLD);
    proved_free(&p);
    free(w);
}

static void test_completeness(void)
{
    static const uint32_t dims[] = {1, 2, 7, 37, 64, 65, 101};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        for (uint64_t seed = 1; seed <= 3; seed++) {
            complete_one(dims[i], 5, 4, seed + 10 * i, NULL);
            complete_one(dims[i], 6, 5, seed + 10 * i, NULL);
        }
    complete_one(64, 6, 4, 99, NULL);
    complete_one(64, 3, 2, 98, NULL);
    complete_one(64, 7, 7, 97, NULL);

    /* On the bounds exactly: sum z^2 = norm_sq (one coordinate +-sqrt(norm_sq)), every
     * range at its maximum or minimum. */
    tspec_t ts;
    tspec_init(&ts, 64);
    int64_t w[64 + N_METRIC];
    memset(w, 0, sizeof w);
    w[5] = 160; /* 160^2 = 25600 = 400 * 64 */
    w[64 + W_NVAL] = 1023;
    w[64 + W_HIST0 + 0] = 1023;
    w[64 + W_LOSS] = 17 * 1023;
    w[64 + W_NTRAIN] = 1000;
    complete_one(64, 5, 4, 7, w);
    w[5] = -160;
    w[64 + W_NVAL] = 0;
    w[64 + W_HIST0 + 0] = 0;
    w[64 + W_LOSS] = 0;
    w[64 + W_NTRAIN] = 0;
    complete_one(64, 5, 4, 8, w);
    /* every coordinate at 20: also norm_sq exactly */
    for (uint32_t j = 0; j < 64; j++)
        w[j] = (j & 1) ? 20 : -20;
    complete_one(64, 6, 5, 9, w);
}

/* Several provers, one aggregation: the sum of the accepted inputs, exactly. */
static void test_aggregate_exact(uint32_t d, uint32_t n, uint32_t t, uint32_t n_provers)
{
    tspec_t ts;
    tspec_init(&ts, d);
    fv_valid_layout_t l;
    CHECK_OK(fv_valid_layout_init(&ts.spec, n, t, &l, NULL), NULL);
    proved_t p[MAX_PROVERS];
    int64_t *w = calloc(ts.D, sizeof *w), *sum = calloc(ts.D, sizeof *sum),
            *out = calloc(ts.D, sizeof *out);
    CHECK(w && sum && out);
    for (uint32_t i = 0; i < n_provers; i++) {
        honest_w(&ts, 100 + i, w);
        for (uint32_t j = 0; j < ts.D; j++)
            sum[j] += w[j];
        uint8_t ctx[FV_HASH_BYTES];
        ctx_for("test-fed", 3, 11, i, (uint8_t)(0x20 + i), ctx);
        prove_and_check(&ts, n, t, ctx, w, 200 + i, false, &p[i]);
        fv_valid_verdict_t v;
        fv_diag_t dg = {""};
        CHECK_OK(decide_all(&ts, n, t, &p[i], &v, &dg), &dg);
        check_accepted(&v, n);
    }
    uint8_t sum_id[FV_HASH_BYTES];
    memset(sum_id, 0x33, sizeof sum_id);
    uint8_t *ag[MAXN];
    size_t aglen[MAXN];
    for (uint32_t x = 1; x <= n; x++) {
        const fv_valid_held_t *h[MAX_PROVERS];
        for (uint32_t i = 0; i < n_provers; i++)
            h[i] = p[i].held[x - 1];
        fv_diag_t dg = {""};
        CHECK_OK(fv_valid_aggshare(&l, sum_id, h, n_provers, &ag[x - 1], &aglen[x - 1], &dg), &dg);
        CHECK_UINT_EQ(aglen[x - 1], l.aggshare_bytes);
    }
    /* from all n, from exactly t and t + 1 (the first and the last holders) */
    for (uint32_t k = t; k <= n; k++) {
        for (int from_back = 0; from_back < 2; from_back++) {
            const uint8_t *s[MAXN];
            size_t lens[MAXN];
            for (uint32_t i = 0; i < k; i++) {
                uint32_t x = from_back ? n - k + 1 + i : i + 1;
                s[i] = ag[x - 1];
                lens[i] = aglen[x - 1];
            }
            uint32_t outlier = 77;
            fv_diag_t dg = {""};
            memset(out, 0, ts.D * sizeof *out);
            CHECK_OK(fv_valid_aggregate(&l, sum_id, s, lens, k, out, &outlier, &dg), &dg);
            CHECK_UINT_EQ(outlier, 0);
            for (uint32_t j = 0; j < ts.D; j++)
                if (out[j] != sum[j])
                    FV__FAIL("d=%u n=%u t=%u from %u: sum[%u] = %lld, want %lld", d, n, t, k, j,
                             (long long)out[j], (long long)sum[j]);
        }
    }
    /* fewer than t; another sum_id */
    {
        const uint8_t *s[MAXN];
        size_t lens[MAXN];
        for (uint32_t i = 0; i < n; i++) {
            s[i] = ag[i];
            lens[i] = aglen[i];
        }
        uint32_t outlier = 0;
        CHECK_INT_EQ(fv_valid_aggregate(&l, sum_id, s, lens, t - 1, out, &outlier, NULL),
                     FV_ETHRESHOLD);
        uint8_t other[FV_HASH_BYTES];
        memset(other, 0x34, sizeof other);
        CHECK_INT_EQ(fv_valid_aggregate(&l, other, s, lens, n, out, &outlier, NULL), FV_EROUND);
    }
    for (uint32_t x = 0; x < n; x++)
        free(ag[x]);
    for (uint32_t i = 0; i < n_provers; i++)
        proved_free(&p[i]);
    free(w);
    free(sum);
    free(out);
}

static void test_aggregation(void)
{
    test_aggregate_exact(64, 5, 4, 3);
    test_aggregate_exact(37, 6, 5, 4);
    test_aggregate_exact(1, 6, 4, 2);
    test_aggregate_exact(101, 5, 3, 1);
}

/* ---- soundness ------------------------------------------------------------------------ */

/* w is false; the clear-text check names `want`, the honest prover refuses it, the
 * unchecked prover's proof passes every holder check (it is well-formed bytes) and decide
 * rejects it naming `want` (or, if want2 is not NULL, want2). */
static void refuse_one(const tspec_t *ts, uint32_t n, uint32_t t, const int64_t *w,
                       const char *want, const char *want2, uint64_t seed)
{
    fv_diag_t dg = {""};
    int rc = fv_valid_spec_eval(&ts->spec, w, &dg);
    if (rc != FV_ERANGE)
        FV__FAIL("%s: spec_eval returned %d, want FV_ERANGE", want, rc);
    /* in the clear a coordinate past the wraparound bound is a norm failure */
    if (strstr(dg.msg, want) == NULL && !(want2 && strstr(dg.msg, want2) != NULL) &&
        !(strcmp(want, "wraparound") == 0 && strstr(dg.msg, "norm") != NULL))
        FV__FAIL("spec_eval: \"%s\" does not name %s", dg.msg, want);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 5, seed, 2, 0x12, ctx);
    fv_rand_t rng;
    fv_rand_seeded_u64(&rng, seed);
    fv_valid_proof_t *pf = (fv_valid_proof_t *)&rng; /* sentinel: must stay untouched */
    CHECK_INT_EQ(fv_valid_prove(&ts->spec, n, t, ctx, w, &rng, &pf, &dg), FV_ERANGE);
    CHECK(pf == (fv_valid_proof_t *)&rng);

    proved_t p;
    prove_and_check(ts, n, t, ctx, w, seed, true, &p);
    fv_valid_verdict_t v;
    CHECK_OK(decide_all(ts, n, t, &p, &v, &dg), &dg);
    if (v.ok)
        FV__FAIL("false input (%s) accepted (n=%u t=%u seed %llu)", want, n, t,
                 (unsigned long long)seed);
    CHECK(memchr(v.check, 0, sizeof v.check) != NULL);
    if (strcmp(v.check, want) != 0 && !(want2 && strcmp(v.check, want2) == 0))
        FV__FAIL("false input refused for \"%s\", want \"%s\"%s%s", v.check, want,
                 want2 ? " or " : "", want2 ? want2 : "");
    CHECK_UINT_EQ(v.outlier, 0); /* every holder was honest */
    /* and from exactly t holders */
    uint32_t xs[MAXN];
    for (uint32_t i = 0; i < t; i++)
        xs[i] = n - i;
    CHECK_OK(decide_xs(ts, n, t, &p, xs, t, &v, &dg), &dg);
    CHECK(!v.ok);
    proved_free(&p);
}

static void test_soundness(void)
{
    static const uint32_t ns[2][2] = {{5, 4}, {6, 5}};
    for (int c = 0; c < 2; c++) {
        uint32_t n = ns[c][0], t = ns[c][1];
        for (uint64_t seed = 1; seed <= 2; seed++) {
            tspec_t ts;
            tspec_init(&ts, 64);
            int64_t w[64 + N_METRIC], *m = w + 64;
            uint64_t s0 = seed * 1000 + n;

            /* norm over the bound by 1: 160^2 + 1^2 = norm_sq + 1 */
            honest_w(&ts, s0, w);
            memset(w, 0, 64 * sizeof *w);
            w[3] = 160;
            w[40] = -1;
            refuse_one(&ts, n, t, w, "norm", NULL, s0 + 1);
            /* every coordinate 20, one 21: norm_sq + 41 */
            for (uint32_t j = 0; j < 64; j++)
                w[j] = 20;
            w[63] = 21;
            refuse_one(&ts, n, t, w, "norm", NULL, s0 + 2);

            /* a coordinate that wraps: 2^31 squared is 2^62 = 2 (mod p), so the field norm
             * is small and only the projections can see it */
            honest_w(&ts, s0, w);
            w[17] = (int64_t)1 << 31;
            refuse_one(&ts, n, t, w, "wraparound", NULL, s0 + 3);
            w[17] = -((int64_t)1 << 31);
            refuse_one(&ts, n, t, w, "wraparound", NULL, s0 + 4);
            /* (p-1)/2: its field square is 2^59, the norm identity fails as well */
            w[17] = (int64_t)((FV_GF_P - 1) / 2);
            refuse_one(&ts, n, t, w, "norm", "wraparound", s0 + 5);

            /* a count below 0 (the bins still sum to n_val) */
            honest_w(&ts, s0, w);
            m[W_HIST0 + 0] = -1;
            m[W_HIST0 + 1] += 1;
            refuse_one(&ts, n, t, w, "hist[0]", NULL, s0 + 6);
            /* a count at 2^b: n_val 1024 (bits 10), the bins following it */
            m[W_NVAL] = 1024;
            m[W_HIST0 + 0] = 1000;
            m[W_HIST0 + 1] = 24;
            m[W_HIST0 + 2] = 0;
            m[W_HIST0 + 3] = 0;
            m[W_LOSS] = 0;
            refuse_one(&ts, n, t, w, "n_val", NULL, s0 + 7);
            /* upper bounds: n_train 1001 > 1000, loss 17 n_val + 1 */
            honest_w(&ts, s0, w);
            m[W_NTRAIN] = 1001;
            refuse_one(&ts, n, t, w, "n_train_max", NULL, s0 + 8);
            honest_w(&ts, s0, w);
            m[W_LOSS] = 17 * m[W_NVAL] + 1;
            refuse_one(&ts, n, t, w, "loss_max", NULL, s0 + 9);
            /* the bins sum to n_val + 1, every value in range */
            honest_w(&ts, s0, w);
            m[W_HIST0 + 3] +=
                1 - (m[W_HIST0 + 0] + m[W_HIST0 + 1] + m[W_HIST0 + 2] + m[W_HIST0 + 3] - m[W_NVAL]);
            refuse_one(&ts, n, t, w, "hist_sum", NULL, s0 + 10);
        }
    }
}

/* ---- tampering with the bytes --------------------------------------------------------- */

/* Every bit of the header: the fixed part (magic, n, t, S) FV_EPROTO at every holder (or
 * FV_EROUND: "not the expected one"), ctx FV_EROUND at every holder, a bit of H{k}_x
 * FV_EAUTH at holder x. A holder whose own hashes are intact may accept a header with
 * another holder's hash altered (it cannot see it; the signature the caller checks covers
 * the header), but then its vshare names another header: decide with the true header
 * refuses it (FV_EROUND). */
static void test_header_bits(uint32_t n, uint32_t t)
{
    tspec_t ts;
    tspec_init(&ts, 64);
    int64_t w[64 + N_METRIC];
    honest_w(&ts, 5, w);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 9, 4, 0, 0x13, ctx);
    proved_t p;
    prove_and_check(&ts, n, t, ctx, w, 51, false, &p);
    size_t hlen = p.pf->header_len;
    uint8_t *hdr = malloc(hlen);
    CHECK(hdr != NULL);
    size_t n_bits = 0, n_cross = 0;
    for (size_t bit = 0; bit < 8 * hlen; bit++) {
        memcpy(hdr, p.pf->header, hlen);
        hdr[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        size_t off = bit / 8;
        n_bits++;
        if (off < HEADER_FIXED) {
            bool in_ctx = off >= 16;
            for (uint32_t x = 1; x <= n; x++) {
                fv_diag_t dg = {""};
                int rc = hcheck(&ts, n, t, x, ctx, hdr, hlen, p.pf->payloads[x - 1],
                                p.pf->payload_len, NULL, NULL, NULL, &dg);
                if (in_ctx ? rc != FV_EROUND : (rc != FV_EPROTO && rc != FV_EROUND))
                    FV__FAIL("header bit %zu (byte %zu), holder %u: %d (%s)", bit, off, x, rc,
                             fv_err_name(rc));
            }
            continue;
        }
        uint32_t owner = (uint32_t)((off - HEADER_FIXED) / 96) + 1;
        fv_diag_t dg = {""};
        int rc = hcheck(&ts, n, t, owner, ctx, hdr, hlen, p.pf->payloads[owner - 1],
                        p.pf->payload_len, NULL, NULL, NULL, &dg);
        if (rc != FV_EAUTH)
            FV__FAIL("header bit %zu (H of holder %u): holder %u returned %d (%s)", bit, owner,
                     owner, rc, fv_err_name(rc));
        if (bit % 29 == 0) {
            /* another holder accepts it; its vshare is about another header */
            uint32_t other = owner % n + 1;
            uint8_t *vs = NULL;
            size_t vlen = 0;
            rc = hcheck(&ts, n, t, other, ctx, hdr, hlen, p.pf->payloads[other - 1],
                        p.pf->payload_len, NULL, &vs, &vlen, &dg);
            if (rc == 0) {
                const uint8_t *v1[MAXN];
                size_t l1[MAXN];
                uint32_t k = 0;
                for (uint32_t x = 1; x <= n; x++) {
                    v1[k] = x == other ? vs : p.vs[x - 1];
                    l1[k++] = x == other ? vlen : p.vlen[x - 1];
                }
                fv_valid_verdict_t v;
                rc = fv_valid_decide(&ts.spec, n, t, p.pf->header, hlen, v1, l1, k, &v, &dg);
                CHECK_INT_EQ(rc, FV_EROUND);
                n_cross++;
                free(vs);
            } else {
                CHECK(rc == FV_EAUTH || rc == FV_EROUND);
            }
        }
    }
    /* truncated and extended headers */
    for (size_t cut = 0; cut < hlen; cut += 37) {
        fv_diag_t dg = {""};
        CHECK_INT_EQ(hcheck(&ts, n, t, 1, ctx, p.pf->header, cut, p.pf->payloads[0],
                            p.pf->payload_len, NULL, NULL, NULL, &dg),
                     FV_EPROTO);
    }
    uint8_t *longer = calloc(hlen + 1, 1);
    CHECK(longer != NULL);
    memcpy(longer, p.pf->header, hlen);
    CHECK_INT_EQ(hcheck(&ts, n, t, 1, ctx, longer, hlen + 1, p.pf->payloads[0], p.pf->payload_len,
                        NULL, NULL, NULL, NULL),
                 FV_EPROTO);
    free(longer);
    printf("header n=%u t=%u: %zu bits flipped, each refused; %zu cross-holder vshares refused "
           "by decide\n",
           n, t, n_bits, n_cross);
    free(hdr);
    proved_free(&p);
}

/* Recomputes H1..H3 of holder x in hdr over payload pl: SHA-256("fv-valid share v1" |
 * ctx | u32 x | u32 k | stage k of the payload). The label is hashed with its terminating
 * NUL (18 bytes), as valid.c does; fv_valid.h does not say so. */
static void rehash(uint8_t *hdr, const fv_valid_layout_t *l, const uint8_t ctx[FV_HASH_BYTES],
                   uint32_t x, const uint8_t *pl)
{
    static const char label[] = "fv-valid share v1";
    size_t off[3] = {0, (size_t)l->s1 * 8, ((size_t)l->s1 + l->s2) * 8};
    size_t len[3] = {(size_t)l->s1 * 8, (size_t)l->s2 * 8, (size_t)l->s3 * 8};
    for (uint32_t k = 1; k <= 3; k++) {
        size_t mlen = sizeof label + FV_HASH_BYTES + 8 + len[k - 1];
        uint8_t *m = malloc(mlen);
        CHECK(m != NULL);
        memcpy(m, label, sizeof label);
        memcpy(m + sizeof label, ctx, FV_HASH_BYTES);
        uint8_t *q = m + sizeof label + FV_HASH_BYTES;
        for (int i = 0; i < 4; i++) {
            q[i] = (uint8_t)(x >> (8 * i));
            q[4 + i] = (uint8_t)(k >> (8 * i));
        }
        memcpy(q + 8, pl + off[k - 1], len[k - 1]);
        fv_sha256(hdr + HEADER_FIXED + (size_t)(x - 1) * 96 + (k - 1) * 32, m, mlen);
        free(m);
    }
}

/* Payload bits: every bit of the first and last three elements, one bit (position varying)
 * of every other element. Each flip is FV_EAUTH (the hash) or FV_EPROTO (non-canonical). */
static void test_payload_bits(uint32_t n, uint32_t t)
{
    tspec_t ts;
    tspec_init(&ts, 64);
    int64_t w[64 + N_METRIC];
    honest_w(&ts, 6, w);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 9, 5, 0, 0x13, ctx);
    proved_t p;
    prove_and_check(&ts, n, t, ctx, w, 61, false, &p);
    size_t plen = p.pf->payload_len, n_el = plen / 8;
    uint8_t *pl = malloc(plen);
    CHECK(pl != NULL);
    size_t n_flips = 0, n_auth = 0, n_proto = 0;
    for (size_t el = 0; el < n_el; el++) {
        bool all = el < 3 || el + 3 >= n_el;
        for (unsigned b = 0; b < 64; b++) {
            if (!all && b != (unsigned)((el * 13) % 64))
                continue;
            uint32_t x = (uint32_t)(el % n) + 1;
            memcpy(pl, p.pf->payloads[x - 1], plen);
            pl[el * 8 + b / 8] ^= (uint8_t)(1u << (b % 8));
            fv_diag_t dg = {""};
            int rc = hcheck(&ts, n, t, x, ctx, p.pf->header, p.pf->header_len, pl, plen, NULL, NULL,
                            NULL, &dg);
            n_flips++;
            if (rc == FV_EAUTH)
                n_auth++;
            else if (rc == FV_EPROTO)
                n_proto++;
            else
                FV__FAIL("payload element %zu bit %u (holder %u): %d (%s)", el, b, x, rc,
                         fv_err_name(rc));
        }
    }
    /* An element set to p (non-canonical): FV_EAUTH while the header's hash is of the
     * honest bytes; FV_EPROTO when the prover committed to the non-canonical bytes (the
     * header's H{k}_x recomputed as fv_valid.h specifies it). */
    fv_valid_layout_t l;
    CHECK_OK(fv_valid_layout_init(&ts.spec, n, t, &l, NULL), NULL);
    uint8_t *hdr = malloc(p.pf->header_len);
    CHECK(hdr != NULL);
    size_t n_rehashed = 0;
    for (size_t el = 0; el < n_el; el += n_el / 7 + 1) {
        for (uint32_t x = 1; x <= n; x += n - 1) {
            memcpy(pl, p.pf->payloads[x - 1], plen);
            put_u64(pl + el * 8, FV_GF_P + (el & 1)); /* p or p + 1 */
            CHECK_INT_EQ(hcheck(&ts, n, t, x, ctx, p.pf->header, p.pf->header_len, pl, plen, NULL,
                                NULL, NULL, NULL),
                         FV_EAUTH);
            memcpy(hdr, p.pf->header, p.pf->header_len);
            rehash(hdr, &l, ctx, x, pl);
            fv_diag_t dg = {""};
            CHECK_INT_EQ(
                hcheck(&ts, n, t, x, ctx, hdr, p.pf->header_len, pl, plen, NULL, NULL, NULL, &dg),
                FV_EPROTO);
            CHECK_CONTAINS(dg.msg, "element");
            n_rehashed++;
        }
    }
    /* the recomputed hash of the honest payload is the header's own (the format is as
     * specified) */
    memcpy(hdr, p.pf->header, p.pf->header_len);
    rehash(hdr, &l, ctx, 2, p.pf->payloads[1]);
    CHECK(memcmp(hdr, p.pf->header, p.pf->header_len) == 0);
    free(hdr);
    /* wrong lengths; the payload of another holder; holder indices 0 and n + 1 */
    CHECK_INT_EQ(hcheck(&ts, n, t, 1, ctx, p.pf->header, p.pf->header_len, p.pf->payloads[0],
                        plen - 8, NULL, NULL, NULL, NULL),
                 FV_EPROTO);
    CHECK_INT_EQ(hcheck(&ts, n, t, 1, ctx, p.pf->header, p.pf->header_len, p.pf->payloads[0],
                        plen - 1, NULL, NULL, NULL, NULL),
                 FV_EPROTO);
    CHECK_INT_EQ(hcheck(&ts, n, t, 1, ctx, p.pf->header, p.pf->header_len, p.pf->payloads[0], 0,
                        NULL, NULL, NULL, NULL),
                 FV_EPROTO);
    CHECK_INT_EQ(hcheck(&ts, n, t, 1, ctx, p.pf->header, p.pf->header_len, p.pf->payloads[1], plen,
                        NULL, NULL, NULL, NULL),
                 FV_EAUTH);
    CHECK(hcheck(&ts, n, t, 0, ctx, p.pf->header, p.pf->header_len, p.pf->payloads[0], plen, NULL,
                 NULL, NULL, NULL) != 0);
    CHECK(hcheck(&ts, n, t, n + 1, ctx, p.pf->header, p.pf->header_len, p.pf->payloads[0], plen,
                 NULL, NULL, NULL, NULL) != 0);
    /* n, t other than the header's */
    CHECK(hcheck(&ts, n + 1, t + 1, 1, ctx, p.pf->header, p.pf->header_len, p.pf->payloads[0], plen,
                 NULL, NULL, NULL, NULL) != 0);
    printf("payload n=%u t=%u: %zu of %zu bits flipped (%zu elements): %zu FV_EAUTH, %zu "
           "FV_EPROTO; %zu non-canonical elements committed to: FV_EPROTO\n",
           n, t, n_flips, plen * 8, n_el, n_auth, n_proto, n_rehashed);
    free(pl);
    proved_free(&p);
}

/* Every bit of one holder's vshare, all n vshares given to decide. Allowed: an error
 * (FV_EPROTO for bytes that do not decode, FV_EROUND for the header hash), an ok verdict
 * naming that holder the outlier (only when n - t >= 2: with one spare vshare a single
 * wrong one cannot be told from the others), or a refusal for "consistency" (never a
 * statement check: the prover was honest). Never an ok verdict without the outlier. */
static void test_vshare_bits(uint32_t n, uint32_t t, uint32_t victim)
{
    tspec_t ts;
    tspec_init(&ts, 64);
    int64_t w[64 + N_METRIC];
    honest_w(&ts, 7, w);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 9, 6, 0, 0x13, ctx);
    proved_t p;
    prove_and_check(&ts, n, t, ctx, w, 71, false, &p);
    size_t vlen = p.vlen[victim - 1];
    uint8_t *orig = p.vs[victim - 1];
    uint8_t *vs = malloc(vlen);
    CHECK(vs != NULL);
    p.vs[victim - 1] = vs;
    size_t n_err = 0, n_named = 0, n_cons = 0;
    for (size_t bit = 0; bit < 8 * vlen; bit++) {
        memcpy(vs, orig, vlen);
        vs[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        size_t off = bit / 8;
        fv_valid_verdict_t v;
        fv_diag_t dg = {""};
        int rc = decide_all(&ts, n, t, &p, &v, &dg);
        if (off < 4 || (off >= 36 && off < 40)) { /* magic, x (out of 1..n, or repeated) */
            if (rc != FV_EPROTO && !(off >= 36 && rc == FV_EDUP))
                FV__FAIL("vshare byte %zu bit %zu: %d (%s), want FV_EPROTO", off, bit % 8, rc,
                         fv_err_name(rc));
            n_err++;
        } else if (off < 36) { /* hdr_hash */
            if (rc != FV_EROUND)
                FV__FAIL("vshare byte %zu bit %zu: %d (%s), want FV_EROUND", off, bit % 8, rc,
                         fv_err_name(rc));
            n_err++;
        } else if (rc != 0) {
            if (rc != FV_EPROTO)
                FV__FAIL("vshare element byte %zu bit %zu: %d (%s)", off, bit % 8, rc,
                         fv_err_name(rc));
            n_err++;
        } else if (v.ok) {
            if (v.outlier != victim)
                FV__FAIL("vshare of holder %u, byte %zu bit %zu flipped: ok with outlier %u",
                         victim, off, bit % 8, v.outlier);
            CHECK_UINT_EQ(v.n_used, n - 1);
            n_named++;
        } else {
            if (strcmp(v.check, "consistency") != 0)
                FV__FAIL("vshare of holder %u, byte %zu bit %zu flipped: the honest prover "
                         "refused for \"%.*s\" (outlier %u)",
                         victim, off, bit % 8, FV_VALID_NAME_MAX, v.check, v.outlier);
            CHECK(v.outlier == 0 || v.outlier == victim);
            n_cons++;
        }
    }
    printf("vshare n=%u t=%u holder %u: %zu bits flipped: %zu errors, %zu named outlier, %zu "
           "\"consistency\"\n",
           n, t, victim, 8 * vlen, n_err, n_named, n_cons);
    /* with n - t >= 2 a single changed element is always corrected */
    if (n - t >= 2)
        CHECK_UINT_EQ(n_cons, 0);
    p.vs[victim - 1] = orig;
    free(vs);
    proved_free(&p);
}

/* One holder lies (a canonical element +1), in every position of the list; then two. */
static void test_vshare_liars(uint32_t n, uint32_t t)
{
    tspec_t ts;
    tspec_init(&ts, 37);
    int64_t w[37 + N_METRIC];
    honest_w(&ts, 8, w);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 9, 7, 0, 0x13, ctx);
    proved_t p;
    prove_and_check(&ts, n, t, ctx, w, 81, false, &p);
    size_t n_el = (p.vlen[0] - VSHARE_PREFIX) / 8;
    for (uint32_t liar = 1; liar <= n; liar++) {
        for (size_t el = 0; el < n_el; el += 3) {
            uint8_t *save = malloc(p.vlen[liar - 1]);
            CHECK(save != NULL);
            memcpy(save, p.vs[liar - 1], p.vlen[liar - 1]);
            bump_elem(p.vs[liar - 1], VSHARE_PREFIX + el * 8);
            fv_valid_verdict_t v;
            fv_diag_t dg = {""};
            CHECK_OK(decide_all(&ts, n, t, &p, &v, &dg), &dg);
            if (n - t >= 2) {
                if (!v.ok || v.outlier != liar)
                    FV__FAIL("n=%u t=%u holder %u lied about element %zu: ok %d check \"%.*s\" "
                             "outlier %u",
                             n, t, liar, el, v.ok, FV_VALID_NAME_MAX, v.check, v.outlier);
                CHECK_UINT_EQ(v.n_used, n - 1);
            } else if (v.ok ? v.outlier != liar : strcmp(v.check, "consistency") != 0) {
                FV__FAIL("n=%u t=%u holder %u lied about element %zu: ok %d check \"%.*s\" "
                         "outlier %u",
                         n, t, liar, el, v.ok, FV_VALID_NAME_MAX, v.check, v.outlier);
            }
            /* a second liar: "consistency" */
            uint32_t liar2 = liar % n + 1;
            uint8_t *save2 = malloc(p.vlen[liar2 - 1]);
            CHECK(save2 != NULL);
            memcpy(save2, p.vs[liar2 - 1], p.vlen[liar2 - 1]);
            bump_elem(p.vs[liar2 - 1], VSHARE_PREFIX + ((el + 1) % n_el) * 8);
            CHECK_OK(decide_all(&ts, n, t, &p, &v, &dg), &dg);
            if (v.ok || strcmp(v.check, "consistency") != 0)
                FV__FAIL("n=%u t=%u holders %u and %u lied: ok %d check \"%.*s\" outlier %u", n, t,
                         liar, liar2, v.ok, FV_VALID_NAME_MAX, v.check, v.outlier);
            memcpy(p.vs[liar2 - 1], save2, p.vlen[liar2 - 1]);
            memcpy(p.vs[liar - 1], save, p.vlen[liar - 1]);
            free(save2);
            free(save);
        }
    }
    /* vshares from the same holder twice: not two holders (FV_EDUP; fv_valid.h lists only
     * FV_EPROTO, FV_EROUND and FV_ETHRESHOLD) */
    {
        const uint8_t *v2[MAXN];
        size_t l2[MAXN];
        for (uint32_t i = 0; i < n; i++) {
            v2[i] = p.vs[i == 1 ? 0 : i];
            l2[i] = p.vlen[i == 1 ? 0 : i];
        }
        fv_valid_verdict_t v;
        CHECK_INT_EQ(
            fv_valid_decide(&ts.spec, n, t, p.pf->header, p.pf->header_len, v2, l2, n, &v, NULL),
            FV_EDUP);
    }
    proved_free(&p);
}

/* A proof is bound to its federation, job, round, prover index and identity key. */
static void test_context_binding(void)
{
    const uint32_t n = 5, t = 4;
    tspec_t ts;
    tspec_init(&ts, 64);
    int64_t w[64 + N_METRIC];
    honest_w(&ts, 9, w);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 9, 7, 2, 0x14, ctx);
    proved_t p;
    prove_and_check(&ts, n, t, ctx, w, 91, false, &p);
    uint8_t others[6][FV_HASH_BYTES];
    ctx_for("test-fed2", 9, 7, 2, 0x14, others[0]); /* federation */
    ctx_for("test-fed", 10, 7, 2, 0x14, others[1]); /* job */
    ctx_for("test-fed", 9, 8, 2, 0x14, others[2]);  /* round: the replay of round 7 in 8 */
    ctx_for("test-fed", 9, 6, 2, 0x14, others[3]);  /* round before */
    ctx_for("test-fed", 9, 7, 3, 0x14, others[4]);  /* prover index */
    ctx_for("test-fed", 9, 7, 2, 0x15, others[5]);  /* identity key */
    for (int k = 0; k < 6; k++) {
        CHECK(memcmp(others[k], ctx, FV_HASH_BYTES) != 0);
        for (uint32_t x = 1; x <= n; x++) {
            fv_diag_t dg = {""};
            int rc = hcheck(&ts, n, t, x, others[k], p.pf->header, p.pf->header_len,
                            p.pf->payloads[x - 1], p.pf->payload_len, NULL, NULL, NULL, &dg);
            if (rc != FV_EROUND)
                FV__FAIL("proof for another context (%d) at holder %u: %d (%s)", k, x, rc,
                         fv_err_name(rc));
        }
    }
    /* the context hash separates its fields: "ab" + job vs "a" + ... */
    uint8_t c1[FV_HASH_BYTES], c2[FV_HASH_BYTES];
    ctx_for("ab", 1, 1, 1, 0, c1);
    ctx_for("a", 1, 1, 1, 0, c2);
    CHECK(memcmp(c1, c2, FV_HASH_BYTES) != 0);

    /* Replay: round 7's proof is presented again in round 8 by the same prover. Its vshares
     * from round 7 do not pass as round 8's either: they name round 7's header. */
    int64_t w8[64 + N_METRIC];
    honest_w(&ts, 10, w8);
    proved_t p8;
    prove_and_check(&ts, n, t, others[2], w8, 92, false, &p8);
    fv_valid_verdict_t v;
    fv_diag_t dg = {""};
    CHECK_INT_EQ(fv_valid_decide(&ts.spec, n, t, p8.pf->header, p8.pf->header_len,
                                 (const uint8_t *const *)p.vs, p.vlen, n, &v, &dg),
                 FV_EROUND);
    CHECK_OK(fv_valid_decide(&ts.spec, n, t, p8.pf->header, p8.pf->header_len,
                             (const uint8_t *const *)p8.vs, p8.vlen, n, &v, &dg),
             &dg);
    check_accepted(&v, n);
    proved_free(&p8);
    proved_free(&p);
}

/* Aggshares: one tampered of t + 2 is named and dropped and the sum stays exact, in every
 * position; two tampered: FV_EAUTH. With t + 1 answers one tampered is never silently
 * summed. */
static void test_aggshare_tamper(uint32_t n, uint32_t t)
{
    tspec_t ts;
    tspec_init(&ts, 37);
    fv_valid_layout_t l;
    CHECK_OK(fv_valid_layout_init(&ts.spec, n, t, &l, NULL), NULL);
    proved_t p[2];
    int64_t w[37 + N_METRIC], sum[37 + N_METRIC] = {0}, out[37 + N_METRIC];
    for (uint32_t i = 0; i < 2; i++) {
        honest_w(&ts, 300 + i, w);
        for (uint32_t j = 0; j < ts.D; j++)
            sum[j] += w[j];
        uint8_t ctx[FV_HASH_BYTES];
        ctx_for("test-fed", 3, 12, i, (uint8_t)(0x50 + i), ctx);
        prove_and_check(&ts, n, t, ctx, w, 400 + i, false, &p[i]);
    }
    uint8_t sum_id[FV_HASH_BYTES];
    memset(sum_id, 0x44, sizeof sum_id);
    uint8_t *ag[MAXN];
    size_t aglen[MAXN];
    for (uint32_t x = 1; x <= n; x++) {
        const fv_valid_held_t *h[2] = {p[0].held[x - 1], p[1].held[x - 1]};
        CHECK_OK(fv_valid_aggshare(&l, sum_id, h, 2, &ag[x - 1], &aglen[x - 1], NULL), NULL);
    }
    CHECK(n >= t + 2);
    const uint8_t *s[MAXN];
    size_t lens[MAXN];
    for (uint32_t k = t + 1; k <= t + 2; k++) {
        for (uint32_t bad = 1; bad <= k; bad++) {
            for (uint32_t el = 0; el < ts.D; el += 5) {
                for (uint32_t i = 0; i < k; i++) {
                    s[i] = ag[i];
                    lens[i] = aglen[i];
                }
                uint8_t *copy = malloc(aglen[bad - 1]);
                CHECK(copy != NULL);
                memcpy(copy, ag[bad - 1], aglen[bad - 1]);
                bump_elem(copy, AGGSHARE_PREFIX + (size_t)el * 8);
                s[bad - 1] = copy;
                uint32_t outlier = 99;
                fv_diag_t dg = {""};
                memset(out, 0, sizeof out);
                int rc = fv_valid_aggregate(&l, sum_id, s, lens, k, out, &outlier, &dg);
                if (k == t + 2) {
                    if (rc != 0 || outlier != bad)
                        FV__FAIL("aggshare of holder %u (of %u answers) tampered at %u: rc %d "
                                 "(%s) outlier %u: %s",
                                 bad, k, el, rc, fv_err_name(rc), outlier, dg.msg);
                } else if (rc == 0) {
                    CHECK_UINT_EQ(outlier, bad); /* named, or refused */
                } else {
                    CHECK_INT_EQ(rc, FV_EAUTH);
                }
                if (rc == 0)
                    for (uint32_t j = 0; j < ts.D; j++)
                        CHECK_INT_EQ(out[j], sum[j]);
                /* a second one tampered */
                if (k == t + 2) {
                    uint32_t bad2 = bad % k + 1;
                    uint8_t *copy2 = malloc(aglen[bad2 - 1]);
                    CHECK(copy2 != NULL);
                    memcpy(copy2, ag[bad2 - 1], aglen[bad2 - 1]);
                    bump_elem(copy2, AGGSHARE_PREFIX + (size_t)((el + 3) % ts.D) * 8);
                    s[bad2 - 1] = copy2;
                    CHECK_INT_EQ(fv_valid_aggregate(&l, sum_id, s, lens, k, out, &outlier, &dg),
                                 FV_EAUTH);
                    free(copy2);
                }
                free(copy);
            }
        }
    }
    /* malformed aggshares: truncated, a non-canonical element, count changed */
    for (uint32_t i = 0; i < n; i++) {
        s[i] = ag[i];
        lens[i] = aglen[i];
    }
    uint32_t outlier;
    lens[2] = aglen[2] - 1;
    CHECK_INT_EQ(fv_valid_aggregate(&l, sum_id, s, lens, n, out, &outlier, NULL), FV_EPROTO);
    lens[2] = aglen[2];
    uint8_t *copy = malloc(aglen[2]);
    CHECK(copy != NULL);
    memcpy(copy, ag[2], aglen[2]);
    put_u64(copy + AGGSHARE_PREFIX + 8, FV_GF_P);
    s[2] = copy;
    CHECK_INT_EQ(fv_valid_aggregate(&l, sum_id, s, lens, n, out, &outlier, NULL), FV_EPROTO);
    free(copy);
    for (uint32_t x = 0; x < n; x++)
        free(ag[x]);
    proved_free(&p[0]);
    proved_free(&p[1]);
}

/* A prover that gives one holder shares off its polynomials (committed in the header, so
 * the holder check passes): decide names that holder, whichever it is, and accepts the
 * proof from the others; decide from t holders without it accepts; from t + 1 with it
 * refuses for "consistency"; the aggregate without it is exact. The shares altered are
 * stage 3's (a blind a_0, b_0, P(1), psi): the header's H3 feeds only seed3 (r, kappa,
 * eta), and an honest proof stays valid for any of those, so the recomputed header is
 * what such a prover would have sent. (Stage 1 or 2 altered would change rho or the
 * projections the prover used: that needs the prover's own code.) */
static void test_inconsistent_share(uint32_t n, uint32_t t)
{
    tspec_t ts;
    tspec_init(&ts, 37);
    fv_valid_layout_t l;
    CHECK_OK(fv_valid_layout_init(&ts.spec, n, t, &l, NULL), NULL);
    int64_t w[37 + N_METRIC];
    honest_w(&ts, 12, w);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 9, 9, 0, 0x16, ctx);
    size_t st3 = (size_t)l.s1 + l.s2;
    const size_t elems[] = {st3, st3 + l.m, st3 + 2 * l.m + 1, (size_t)l.S - 1};
    for (uint32_t victim = 1; victim <= n; victim++) {
        for (size_t e = 0; e < sizeof elems / sizeof elems[0]; e++) {
            fv_valid_proof_t *pf;
            prove(&ts, n, t, ctx, w, 120 + victim, false, &pf);
            bump_elem(pf->payloads[victim - 1], elems[e] * 8);
            rehash(pf->header, &l, ctx, victim, pf->payloads[victim - 1]);
            proved_t p;
            memset(&p, 0, sizeof p);
            p.pf = pf;
            for (uint32_t x = 1; x <= n; x++) {
                fv_diag_t dg = {""};
                CHECK_OK(hcheck(&ts, n, t, x, ctx, pf->header, pf->header_len, pf->payloads[x - 1],
                                pf->payload_len, &p.held[x - 1], &p.vs[x - 1], &p.vlen[x - 1], &dg),
                         &dg);
            }
            fv_valid_verdict_t v;
            fv_diag_t dg = {""};
            CHECK_OK(decide_all(&ts, n, t, &p, &v, &dg), &dg);
            if (!v.ok || v.outlier != victim)
                FV__FAIL("n=%u t=%u: holder %u given an inconsistent share of value %zu: ok %d "
                         "check \"%.*s\" outlier %u",
                         n, t, victim, elems[e], v.ok, FV_VALID_NAME_MAX, v.check, v.outlier);
            uint32_t xs[MAXN], k = 0;
            for (uint32_t x = 1; x <= n && k < t; x++)
                if (x != victim)
                    xs[k++] = x;
            CHECK_OK(decide_xs(&ts, n, t, &p, xs, t, &v, &dg), &dg);
            check_accepted(&v, t);
            xs[k++] = victim;
            CHECK_OK(decide_xs(&ts, n, t, &p, xs, t + 1, &v, &dg), &dg);
            CHECK(!v.ok);
            CHECK_STR_EQ(v.check, "consistency");
            /* the sum from the holders the decider kept */
            const uint8_t *s[MAXN];
            uint8_t *ag[MAXN];
            size_t lens[MAXN];
            uint8_t sum_id[FV_HASH_BYTES];
            memset(sum_id, 0x66, sizeof sum_id);
            for (uint32_t i = 0; i < t; i++) {
                const fv_valid_held_t *h[1] = {p.held[xs[i] - 1]};
                CHECK_OK(fv_valid_aggshare(&l, sum_id, h, 1, &ag[i], &lens[i], NULL), NULL);
                s[i] = ag[i];
            }
            int64_t out[37 + N_METRIC];
            uint32_t outlier = 9;
            CHECK_OK(fv_valid_aggregate(&l, sum_id, s, lens, t, out, &outlier, &dg), &dg);
            for (uint32_t j = 0; j < ts.D; j++)
                CHECK_INT_EQ(out[j], w[j]);
            for (uint32_t i = 0; i < t; i++)
                free(ag[i]);
            proved_free(&p);
        }
    }
}

/* One holder's aggshare says it sums another number of inputs (the count field) than the
 * others'. With t + 2 answers it is one disagreeing holder: named and dropped (the sum
 * exact), or, if refused as malformed, the refusal names that holder's share and no other
 * (the caller drops the share the error names and retries). */
static void test_aggshare_count_blame(uint32_t n, uint32_t t)
{
    tspec_t ts;
    tspec_init(&ts, 37);
    fv_valid_layout_t l;
    CHECK_OK(fv_valid_layout_init(&ts.spec, n, t, &l, NULL), NULL);
    int64_t w[37 + N_METRIC], out[37 + N_METRIC];
    honest_w(&ts, 13, w);
    uint8_t ctx[FV_HASH_BYTES];
    ctx_for("test-fed", 9, 10, 0, 0x17, ctx);
    proved_t p;
    prove_and_check(&ts, n, t, ctx, w, 130, false, &p);
    uint8_t sum_id[FV_HASH_BYTES];
    memset(sum_id, 0x67, sizeof sum_id);
    uint8_t *ag[MAXN];
    size_t lens[MAXN];
    for (uint32_t x = 1; x <= n; x++) {
        const fv_valid_held_t *h[1] = {p.held[x - 1]};
        CHECK_OK(fv_valid_aggshare(&l, sum_id, h, 1, &ag[x - 1], &lens[x - 1], NULL), NULL);
    }
    CHECK(n >= t + 2);
    for (uint32_t liar = 0; liar < t + 2; liar++) {
        ag[liar][40] ^= 1; /* u32 count at byte 40: 1 -> 0 */
        uint32_t outlier = 99;
        fv_diag_t dg = {""};
        int rc = fv_valid_aggregate(&l, sum_id, (const uint8_t *const *)ag, lens, t + 2, out,
                                    &outlier, &dg);
        char want[64];
        snprintf(want, sizeof want, "sum share %u:", liar);
        if (rc == 0) {
            CHECK_UINT_EQ(outlier, liar + 1);
            for (uint32_t j = 0; j < ts.D; j++)
                CHECK_INT_EQ(out[j], w[j]);
        } else if (rc != FV_EPROTO || strstr(dg.msg, want) == NULL) {
            FV__FAIL("aggshare %u (holder %u) with another count: %s, \"%s\": neither that "
                     "holder named the outlier nor its share refused",
                     liar, liar + 1, fv_err_name(rc), dg.msg);
        }
        ag[liar][40] ^= 1;
    }
    for (uint32_t x = 0; x < n; x++)
        free(ag[x]);
    proved_free(&p);
}

int main(void)
{
    CHECK_OK(fv_crypto_init(), NULL);
    test_layout();
    test_completeness();
    test_aggregation();
    test_soundness();
    test_context_binding();
    test_header_bits(5, 4);
    test_header_bits(6, 5);
    test_payload_bits(5, 4);
    test_payload_bits(6, 5);
    test_vshare_bits(5, 4, 2);
    test_vshare_bits(6, 4, 1);
    test_vshare_bits(6, 4, 6);
    test_vshare_liars(5, 4);
    test_vshare_liars(6, 4);
    test_vshare_liars(7, 4);
    test_aggshare_tamper(6, 4);
    test_aggshare_tamper(7, 5);
    test_inconsistent_share(6, 4);
    test_inconsistent_share(7, 5);
    /* Last: fails with valid.c at b0cffc6 (a wrong count in the first aggshare is blamed
     * on the second holder), after every other check has passed. */
    test_aggshare_count_blame(6, 4);
    puts("test_valid: ok");
    return 0;
}
