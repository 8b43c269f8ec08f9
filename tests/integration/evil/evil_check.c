/* evil_check.c - the malicious agent's hooks (evil.c) on a real federated round's statement
 * (fv_fed_valid_init: 300 parameters, one model, 20 histogram bins), without a federation.
 *
 * An honest w (small update, histograms summing to n_val) satisfies the statement. Each
 * input attack must make fv_valid_spec_eval fail at the check the attack names (the clear
 * evaluation has no wraparound check: the norm attacks fail "norm" there), and only in the
 * rounds FV_EVIL_ROUNDS allows. shuffle_hist must keep the statement true with the bins
 * swapped and the update negated at the bound. The proof attacks run on real proofs (n = 3
 * holders, t = 2): swap leaves the header and changes every payload, so a holder finds its
 * payload is not the committed one (FV_EAUTH); replay sends round 1's header and payloads
 * in round 2, which a holder expecting round 2's context refuses (FV_EROUND), and keeps
 * round 2's proof for round 3.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "evil-int.h"
#include "fv_crypto.h"
#include "fv_evil.h"
#include "fv_fed.h"
#include "fv_fed_valid.h"
#include "fv_job.h"
#include "fv_test.h"
#include "fv_valid.h"

enum { P = 300, BINS = 20, N_HOLD = 3, T_HOLD = 2 };

static fv_fed_valid_t V;
static int64_t honest[P + 64];

static void make_honest(void)
{
    fv_job_t job;
    memset(&job, 0, sizeof job);
    strcpy(job.name, "evil-check");
    job.secagg.on = true;
    job.secagg.clip = 1.0f;
    job.secagg.bits = 16;
    job.max_update_norm = 1.0;
    fv_fed_layout_t l;
    fv_fed_layout_init(&l, P, 1, BINS, 0);
    fv_diag_t d = {{0}};
    CHECK_OK(fv_fed_valid_init(&l, &job, &V, &d), &d);
    CHECK(V.spec.dim <= sizeof honest / sizeof honest[0]);
    memset(honest, 0, sizeof honest);
    for (uint32_t j = 0; j < P; j++)
        honest[j] = (int64_t)((j * 7919u) % 201u) - 100; /* norm about 1000 << 2^14 */
    honest[V.off_n_train] = 1000;
    uint64_t n_val = 0;
    for (uint32_t i = 0; i < BINS; i++) {
        honest[V.off_hist_pos + i] = i;
        honest[V.off_hist_neg + i] = 2 * i + 1;
        n_val += 3 * i + 1;
    }
    honest[V.off_n_val] = (int64_t)n_val;
    honest[V.off_loss] = (int64_t)(n_val << 31); /* 0.5 per row */
    CHECK_OK(fv_valid_spec_eval(&V.spec, honest, &d), &d);
}

static double norm_of(const int64_t *w)
{
    double s = 0;
    for (uint32_t j = 0; j < P; j++)
        s += (double)w[j] * (double)w[j];
    return sqrt(s);
}

/* attack in round (rounds: FV_EVIL_ROUNDS); want: the failed check, NULL: still true;
 * target: what the attack says it aims at (the proof's check) */
static void input_case(const char *attack, const char *rounds, uint64_t round, const char *want,
                       const char *target)
{
    CHECK_INT_EQ(fv__evil_configure(attack, rounds), 0);
    int64_t w[sizeof honest / sizeof honest[0]];
    memcpy(w, honest, sizeof w);
    bool lie = fv_evil_input(round, &V.spec, w);
    fv_diag_t d = {{0}};
    int rc = fv_valid_spec_eval(&V.spec, w, &d);
    if (want == NULL) {
        if (rc != 0 || lie)
            FV__FAIL("%s round %llu: statement false (%s) or lie %d", attack,
                     (unsigned long long)round, d.msg, lie);
    } else {
        if (rc != FV_ERANGE || !lie || strstr(d.msg, want) == NULL)
            FV__FAIL("%s round %llu: rc %d lie %d, failed check '%s', expected '%s'", attack,
                     (unsigned long long)round, rc, lie, d.msg, want);
        CHECK_STR_EQ(fv__evil_target(), target);
    }
    printf("%-12s round %llu: %s\n", attack, (unsigned long long)round,
           want ? d.msg : "statement true");
}

/* ---- proofs ------------------------------------------------------------------------- */

typedef struct again {
    uint8_t ctx[FV_HASH_BYTES];
    fv_rand_t rng;
    int calls;
} again_t;

static int prove_again(void *ud, const int64_t *w, fv_valid_proof_t **ret)
{
    again_t *a = ud;
    a->calls++;
    return fv_valid_prove_unchecked(&V.spec, N_HOLD, T_HOLD, a->ctx, w, &a->rng, ret, NULL);
}

static void ctx_of(uint64_t round, uint8_t ctx[FV_HASH_BYTES])
{
    uint8_t pk[FV_SIGN_PK_BYTES] = {7};
    fv_valid_context("evil-fed", 1, round, 5, pk, ctx);
}

static fv_valid_proof_t *honest_proof(again_t *a, uint64_t round)
{
    ctx_of(round, a->ctx);
    fv_rand_seeded_u64(&a->rng, 40 + round);
    a->calls = 0;
    fv_valid_proof_t *pf = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_valid_prove(&V.spec, N_HOLD, T_HOLD, a->ctx, honest, &a->rng, &pf, &d), &d);
    return pf;
}

/* Holder x's check of pf with the context it expects for round. */
static int holder(const fv_valid_proof_t *pf, uint32_t x, uint64_t round)
{
    uint8_t ctx[FV_HASH_BYTES];
    ctx_of(round, ctx);
    fv_valid_held_t *held = NULL;
    uint8_t *vs = NULL;
    size_t vl = 0;
    fv_diag_t d = {{0}};
    int rc = fv_valid_holder_check(&V.spec, N_HOLD, T_HOLD, x, ctx, pf->header, pf->header_len,
                                   pf->payloads[x - 1], pf->payload_len, &held, &vs, &vl, &d);
    fv_valid_held_free(held);
    free(vs);
    return rc;
}

static void test_swap(void)
{
    CHECK_INT_EQ(fv__evil_configure("swap", NULL), 0);
    again_t a;
    int64_t w[sizeof honest / sizeof honest[0]];
    memcpy(w, honest, sizeof w);
    CHECK(!fv_evil_input(1, &V.spec, w)); /* the input is the honest one */
    CHECK(memcmp(w, honest, sizeof w) == 0);
    fv_valid_proof_t *pf = honest_proof(&a, 1);
    for (uint32_t x = 1; x <= N_HOLD; x++)
        CHECK_INT_EQ(holder(pf, x, 1), 0);
    uint8_t *hdr = malloc(pf->header_len), *p0 = malloc(pf->payload_len);
    memcpy(hdr, pf->header, pf->header_len);
    memcpy(p0, pf->payloads[0], pf->payload_len);
    fv_evil_proof(1, &V.spec, pf, prove_again, &a);
    CHECK_INT_EQ(a.calls, 1); /* 3x the honest input: proved unchecked at once */
    CHECK(memcmp(hdr, pf->header, pf->header_len) == 0);
    CHECK(memcmp(p0, pf->payloads[0], pf->payload_len) != 0);
    for (uint32_t x = 1; x <= N_HOLD; x++)
        CHECK_INT_EQ(holder(pf, x, 1), FV_EAUTH);
    CHECK_STR_EQ(fv__evil_target(), "complaints");
    printf("swap: header kept, every holder's payload not the committed one (FV_EAUTH)\n");
    free(hdr);
    free(p0);
    fv_valid_proof_free(pf);
}

static void test_replay(void)
{
    CHECK_INT_EQ(fv__evil_configure("replay", NULL), 0);
    again_t a;
    fv_valid_proof_t *p1 = honest_proof(&a, 1);
    uint8_t *h1 = malloc(p1->header_len);
    memcpy(h1, p1->header, p1->header_len);
    fv_evil_proof(1, &V.spec, p1, prove_again, &a); /* round 1: kept, sent as is */
    CHECK(memcmp(h1, p1->header, p1->header_len) == 0);
    CHECK_INT_EQ(holder(p1, 1, 1), 0);
    fv_valid_proof_free(p1);

    fv_valid_proof_t *p2 = honest_proof(&a, 2);
    uint8_t *h2 = malloc(p2->header_len);
    memcpy(h2, p2->header, p2->header_len);
    CHECK_INT_EQ(holder(p2, 2, 2), 0);
    fv_evil_proof(2, &V.spec, p2, prove_again, &a);
    CHECK_INT_EQ(a.calls, 0);
    CHECK(memcmp(h1, p2->header, p2->header_len) == 0); /* round 1's proof */
    for (uint32_t x = 1; x <= N_HOLD; x++)
        CHECK_INT_EQ(holder(p2, x, 2), FV_EROUND);
    CHECK_INT_EQ(holder(p2, 1, 1), 0); /* the very proof of round 1 */
    fv_valid_proof_free(p2);

    fv_valid_proof_t *p3 = honest_proof(&a, 3);
    fv_evil_proof(3, &V.spec, p3, prove_again, &a);
    CHECK(memcmp(h2, p3->header, p3->header_len) == 0); /* round 2's, kept in round 2 */
    CHECK_INT_EQ(holder(p3, 3, 2), 0);
    fv_valid_proof_free(p3);
    printf("replay: round 2 sends round 1's proof (holders: FV_EROUND), round 3 round 2's\n");
    free(h1);
    free(h2);

    /* FV_EVIL_ROUNDS=3: round 2 is honest (and kept), round 3 replays it */
    CHECK_INT_EQ(fv__evil_configure("replay", "3"), 0);
    p1 = honest_proof(&a, 1);
    fv_evil_proof(1, &V.spec, p1, prove_again, &a);
    fv_valid_proof_free(p1);
    p2 = honest_proof(&a, 2);
    h2 = malloc(p2->header_len);
    memcpy(h2, p2->header, p2->header_len);
    fv_evil_proof(2, &V.spec, p2, prove_again, &a);
    CHECK(memcmp(h2, p2->header, p2->header_len) == 0);
    fv_valid_proof_free(p2);
    p3 = honest_proof(&a, 3);
    fv_evil_proof(3, &V.spec, p3, prove_again, &a);
    CHECK(memcmp(h2, p3->header, p3->header_len) == 0);
    fv_valid_proof_free(p3);
    free(h2);
}

static void test_shuffle(void)
{
    CHECK_INT_EQ(fv__evil_configure("shuffle_hist", NULL), 0);
    int64_t w[sizeof honest / sizeof honest[0]];
    memcpy(w, honest, sizeof w);
    CHECK(!fv_evil_input(1, &V.spec, w));
    fv_diag_t d = {{0}};
    CHECK_OK(fv_valid_spec_eval(&V.spec, w, &d), &d);
    for (uint32_t i = 0; i < BINS; i++) {
        CHECK_INT_EQ(w[V.off_hist_pos + i], honest[V.off_hist_neg + i]);
        CHECK_INT_EQ(w[V.off_hist_neg + i], honest[V.off_hist_pos + i]);
    }
    double nh = norm_of(honest), nw = norm_of(w), dot = 0;
    for (uint32_t j = 0; j < P; j++)
        dot += (double)w[j] * (double)honest[j];
    CHECK_NEAR(nw, 16384.0, 0.5 * sqrt((double)P));
    CHECK(dot / (nh * nw) < -0.9999); /* the honest direction, negated */
    printf("shuffle_hist: statement true; bins swapped; update norm %.1f (bound 2^14), "
           "cosine to the honest %.5f\n",
           nw, dot / (nh * nw));
}

int main(void)
{
    make_honest();
    input_case("none", NULL, 1, NULL, NULL);
    input_case("over_norm", NULL, 1, "norm", "norm");
    input_case("plus_clip", NULL, 1, "norm", "norm");
    input_case("just_over", NULL, 1, "norm", "norm");
    input_case("big_word", NULL, 1, "norm", "wraparound"); /* in the clear: no wraparound check */
    input_case("count_range", NULL, 1, "nonneg", "nonneg");
    input_case("neg_bin", NULL, 1, "nonneg", "nonneg");
    input_case("hist_sum", NULL, 1, "hist_sum=n_val[m0]", "hist_sum=n_val[m0]");
    input_case("over_norm", "2,4-5", 1, NULL, NULL);
    input_case("over_norm", "2,4-5", 2, "norm", "norm");
    input_case("over_norm", "2,4-5", 3, NULL, NULL);
    input_case("over_norm", "2,4-5", 5, "norm", "norm");
    CHECK_INT_EQ(fv__evil_configure("nonsense", NULL), -1);
    CHECK_INT_EQ(fv__evil_configure("swap", "3-1"), -1);
    CHECK_INT_EQ(fv__evil_configure("swap", "1,x"), -1);
    test_swap();
    test_replay();
    test_shuffle();
    CHECK_INT_EQ(fv__evil_configure("none", NULL), 0); /* frees what was kept */
    fv_fed_valid_close(&V);
    printf("PASS\n");
    return 0;
}
