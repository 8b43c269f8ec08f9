/* test_vagg.c - validated secure aggregation (fv_vagg.h) end to end in one process, with a
 * hostile client written here, in the test tree (never in the installed agent).
 *
 * The hostile client speaks the protocol with its own keys through the public pieces
 * (fv_vagg_msg_encode, fv_vagg_seal, fv_vagg_ctx, fv_valid_prove_unchecked) and lies in
 * one way per run: a false statement (over the norm, a coordinate that wraps the field, a
 * count out of range, histograms not summing), payloads that are not the ones it
 * committed to, shares off its polynomial, a proof replayed from the previous round,
 * garbage checks as a holder, a garbage sum share. Every run checks: the round completes,
 * the liar is named (its verdict fails with the right check, or it is the outlier holder,
 * or its message is refused), and the sum is exactly the honest clients' sum.
 */
#include <stdlib.h>
#include <string.h>

#include "fv_test.h"
#include "fv_vagg.h"
#include "secagg-int.h"

#define N 6
#define D0 64
#define DIM (D0 + 3)
#define EVIL 2
#define NORM_SQ (16384ull * 16384ull)

enum attack {
    HONEST,
    OVER_NORM,
    WRAP,
    COUNT_RANGE,
    HIST_SUM,
    SWAP_ALL,     /* every holder gets a payload of another proof (another vector) */
    OFF_POLY_TWO, /* two holders' shares moved, commitments recomputed */
    OFF_POLY_ONE, /* one holder's share moved: located as the outlier, proof fails */
    REPLAY,       /* the previous round's PROOF, re-addressed to this round */
    BAD_VSHARES,  /* as a holder: garbage checks */
    BAD_AGGSHARE, /* as a holder: a garbage sum share */
    SIGN_OTHER,   /* a proof signed over another header */
    N_ATTACKS
};

static const char *attack_name[N_ATTACKS] = {
    "honest",       "over_norm",    "wrap",   "count_range", "hist_sum",     "swap_all",
    "off_poly_two", "off_poly_one", "replay", "bad_vshares", "bad_aggshare", "sign_other"};

static fv_valid_term_t t_c1[] = {{D0, 1}}, t_c2[] = {{D0 + 1, 1}}, t_nv[] = {{D0 + 2, 1}},
                       t_eq[] = {{D0, 1}, {D0 + 1, 1}, {D0 + 2, -1}};
static fv_valid_affine_t ranges[3] = {
    {t_c1, 1, 0, 17, "hist_pos[0]"}, {t_c2, 1, 0, 17, "hist_neg[0]"}, {t_nv, 1, 0, 17, "n_val"}};
static fv_valid_affine_t equal[1] = {{t_eq, 3, 0, 0, "hist_sum=n_val"}};
static const fv_valid_spec_t spec = {DIM, 0, D0, NORM_SQ, ranges, 3, equal, 1, NULL, 0, 0};

static uint8_t pks[N * 32], sks[N * 64];

static void input_of(uint32_t u, int64_t *w)
{
    for (uint32_t j = 0; j < D0; j++)
        w[j] = (int64_t)((j * 7919u + u * 31u) % 401u) - 200;
    w[D0] = 10 + u;
    w[D0 + 1] = 20 + 2 * u;
    w[D0 + 2] = w[D0] + w[D0 + 1];
}

/* ---- the hostile client -------------------------------------------------------------------- */
typedef struct evil {
    enum attack a;
    fv_vagg_params_t p;
    fv_rand_t rng;
    uint8_t c_pk[32], c_sk[32];
    uint32_t m, t, my_x, u1[N];
    uint8_t u1_cpk[N * 32], keys[N * 32];
    fv_valid_layout_t lay;
    fv_valid_held_t *held[N];
    uint8_t *own_vs; /* our check of our own proof, sent like every holder's */
    size_t own_vl;
} evil_t;

static uint8_t *evil_adv(evil_t *e, size_t *len)
{
    CHECK_OK(fv_kx_keypair(&e->rng, e->c_pk, e->c_sk), NULL);
    fv_vagg_msg_t m = {.type = FV_VAGG_MSG_ADVERTISE,
                       .job_id = e->p.job_id,
                       .round = e->p.round,
                       .from = EVIL,
                       .to = FV_SECAGG_SERVER};
    m.key.id = EVIL;
    memcpy(m.key.c_pk, e->c_pk, 32);
    CHECK_OK(fv_vagg_sign_adv(&e->p, EVIL, e->c_pk, sks + EVIL * 64, m.key.sig), NULL);
    uint8_t *b;
    CHECK_OK(fv_vagg_msg_encode(&m, NULL, &b, len), NULL);
    return b;
}

/* Recompute holder x's three stage hashes in a header after its payload changed. */
static void rehash(const fv_valid_layout_t *l, const uint8_t ctx[32], uint8_t *header, uint32_t x,
                   const uint8_t *payload);

static void push(fv_secagg_outbox_t *o, const fv_vagg_msg_t *m, const fv_valid_layout_t *l)
{
    uint8_t *b;
    size_t len;
    CHECK_OK(fv_vagg_msg_encode(m, l, &b, &len), NULL);
    CHECK_OK(fv__secagg_outbox_push(o, FV_SECAGG_SERVER, b, len), NULL);
}

static void evil_proof(evil_t *e, const uint8_t *keylist, size_t kl, fv_secagg_outbox_t *up)
{
    fv_vagg_msg_t km;
    CHECK_OK(fv_vagg_msg_decode(keylist, kl, NULL, N, &km, NULL), NULL);
    e->m = km.count;
    for (uint32_t i = 0; i < km.count; i++) {
        e->u1[i] = km.keys[i].id;
        memcpy(e->u1_cpk + 32 * i, km.keys[i].c_pk, 32);
        if (km.keys[i].id == EVIL)
            e->my_x = i + 1;
    }
    fv_vagg_msg_close(&km);
    e->t = fv_vagg_threshold_for(&e->p, e->m);
    CHECK_OK(fv_valid_layout_init(&spec, e->m, e->t, &e->lay, NULL), NULL);
    static const char label[] = "fv-vagg enc v1";
    uint8_t kctx[sizeof(label) - 1 + 16];
    memcpy(kctx, label, sizeof(label) - 1);
    for (int i = 0; i < 8; i++) {
        kctx[sizeof(label) - 1 + i] = (uint8_t)(e->p.job_id >> (8 * i));
        kctx[sizeof(label) - 1 + 8 + i] = (uint8_t)(e->p.round >> (8 * i));
    }
    for (uint32_t r = 0; r < e->m; r++)
        if (r + 1 != e->my_x)
            CHECK_OK(fv_kx_agree(e->keys + 32 * r, e->c_sk, e->c_pk, e->u1_cpk + 32 * r, kctx,
                                 sizeof(kctx)),
                     NULL);

    uint8_t ctx[32];
    fv_vagg_ctx(&e->p, EVIL, e->u1, e->u1_cpk, e->m, ctx);
    int64_t w[DIM];
    input_of(EVIL, w);
    switch (e->a) {
    case OVER_NORM: /* +clip on every coordinate: each at 2^12, norm 2^15 > 2^14 */
        for (uint32_t j = 0; j < D0; j++)
            w[j] = 4096;
        break;
    case WRAP: /* z_0^2 = 1 mod p with z_0 = (p+1)/2 ... centred: huge; field norm small */
        w[0] = (int64_t)(((UINT64_C(1) << 61) - 1 + 1) / 2);
        break;
    case COUNT_RANGE:
        w[D0] = 1 << 20;
        w[D0 + 2] = w[D0] + w[D0 + 1];
        break;
    case HIST_SUM:
        w[D0 + 2] += 1;
        break;
    default:
        break;
    }
    fv_diag_t d;
    fv_valid_proof_t *pf = NULL, *other = NULL;
    CHECK_OK(fv_valid_prove_unchecked(&spec, e->m, e->t, ctx, w, &e->rng, &pf, &d), &d);
    uint8_t *payload_src[N];
    for (uint32_t r = 0; r < e->m; r++)
        payload_src[r] = pf->payloads[r];
    if (e->a == SWAP_ALL) {
        int64_t w2[DIM];
        input_of(EVIL, w2);
        for (uint32_t j = 0; j < D0; j++)
            w2[j] = -w2[j] * 3;
        CHECK_OK(fv_valid_prove_unchecked(&spec, e->m, e->t, ctx, w2, &e->rng, &other, &d), &d);
        for (uint32_t r = 0; r < e->m; r++)
            payload_src[r] = other->payloads[r];
    }
    if (e->a == OFF_POLY_TWO || e->a == OFF_POLY_ONE) {
        uint32_t nmove = e->a == OFF_POLY_TWO ? 2 : 1, moved = 0;
        for (uint32_t r = 0; r < e->m && moved < nmove; r++) {
            if (r + 1 == e->my_x)
                continue;
            pf->payloads[r][0] ^= 1; /* the share of w[0], still below p */
            rehash(&e->lay, ctx, pf->header, r + 1, pf->payloads[r]);
            moved++;
        }
    }
    size_t ctl = e->lay.payload_bytes + FV_AEAD_TAG_BYTES;
    uint8_t *ct = malloc(ctl);
    uint8_t sig[64];
    if (e->a == SIGN_OTHER) {
        uint8_t h2[4096];
        memcpy(h2, pf->header, pf->header_len);
        h2[20] ^= 0x55;
        CHECK_OK(fv_vagg_sign_proof(&e->p, EVIL, h2, pf->header_len, sks + EVIL * 64, sig), NULL);
    } else {
        CHECK_OK(fv_vagg_sign_proof(&e->p, EVIL, pf->header, pf->header_len, sks + EVIL * 64, sig),
                 NULL);
    }
    fv_vagg_msg_t pm = {.type = FV_VAGG_MSG_PROOF,
                        .job_id = e->p.job_id,
                        .round = e->p.round,
                        .from = EVIL,
                        .to = FV_SECAGG_SERVER,
                        .header = pf->header,
                        .sig = sig};
    push(up, &pm, &e->lay);
    for (uint32_t r = 0; r < e->m; r++) {
        if (r + 1 == e->my_x)
            continue;
        CHECK_OK(fv_vagg_seal(&e->p, EVIL, e->u1[r], e->keys + 32 * r, payload_src[r],
                              pf->payload_len, ct),
                 NULL);
        fv_vagg_msg_t cm = {.type = FV_VAGG_MSG_PROOF_CT,
                            .job_id = e->p.job_id,
                            .round = e->p.round,
                            .from = EVIL,
                            .to = FV_SECAGG_SERVER};
        cm.item = (fv_vagg_item_t){.peer = e->u1[r], .data = ct, .len = ctl};
        push(up, &cm, &e->lay);
    }
    free(ct);
    /* keep our own share to act as a holder */
    fv_valid_held_free(e->held[e->my_x - 1]);
    e->held[e->my_x - 1] = NULL;
    free(e->own_vs);
    e->own_vs = NULL;
    if (fv_valid_holder_check(&spec, e->m, e->t, e->my_x, ctx, pf->header, pf->header_len,
                              pf->payloads[e->my_x - 1], pf->payload_len, &e->held[e->my_x - 1],
                              &e->own_vs, &e->own_vl, &d) != 0)
        e->own_vs = NULL;
    fv_valid_proof_free(pf);
    fv_valid_proof_free(other);
}

static void rehash(const fv_valid_layout_t *l, const uint8_t ctx[32], uint8_t *header, uint32_t x,
                   const uint8_t *payload)
{
    /* H_k = SHA-256("fv-valid share v1" | ctx | u32 x | u32 k | stage k), as fv_valid.h says */
    static const char label[] = "fv-valid share v1";
    size_t off[3] = {0, (size_t)l->s1 * 8, ((size_t)l->s1 + l->s2) * 8};
    size_t len[3] = {(size_t)l->s1 * 8, (size_t)l->s2 * 8, (size_t)l->s3 * 8};
    for (uint32_t k = 1; k <= 3; k++) {
        size_t total = sizeof(label) + 32 + 8 + len[k - 1];
        uint8_t *buf = malloc(total), *p = buf;
        memcpy(p, label, sizeof(label));
        p += sizeof(label);
        memcpy(p, ctx, 32);
        p += 32;
        for (int i = 0; i < 4; i++)
            p[i] = (uint8_t)(x >> (8 * i));
        for (int i = 0; i < 4; i++)
            p[4 + i] = (uint8_t)(k >> (8 * i));
        p += 8;
        memcpy(p, payload + off[k - 1], len[k - 1]);
        fv_sha256(header + FV_VALID_HEADER_FIXED + (size_t)(x - 1) * 96 + (k - 1) * 32, buf, total);
        free(buf);
    }
}

/* As a holder, one FWD: honest checks, or garbage (our own proof's check goes first). */
static void evil_on_fwd(evil_t *e, const uint8_t *fwd, size_t fl, fv_secagg_outbox_t *up)
{
    fv_vagg_msg_t fm;
    CHECK_OK(fv_vagg_msg_decode(fwd, fl, &e->lay, N, &fm, NULL), NULL);
    fv_vagg_msg_t r = {.type = FV_VAGG_MSG_VSHARE,
                       .job_id = e->p.job_id,
                       .round = e->p.round,
                       .from = EVIL,
                       .to = FV_SECAGG_SERVER};
    if (e->own_vs) {
        r.item = (fv_vagg_item_t){.peer = EVIL, .data = e->own_vs, .len = e->own_vl};
        push(up, &r, &e->lay);
        free(e->own_vs);
        e->own_vs = NULL;
    }
    uint8_t *pt = malloc(e->lay.payload_bytes), *vs = NULL;
    uint32_t u = fm.item.peer, rk = 0;
    while (e->u1[rk] != u)
        rk++;
    uint8_t ctx[32];
    fv_vagg_ctx(&e->p, u, e->u1, e->u1_cpk, e->m, ctx);
    r.item = (fv_vagg_item_t){.peer = u};
    int st = fv_vagg_open(&e->p, u, EVIL, e->keys + 32 * rk, fm.item.data, fm.item.len, pt);
    if (st == 0 && fm.item.len == FV_VALID_SEED_BYTES + FV_AEAD_TAG_BYTES) {
        uint8_t seed[FV_VALID_SEED_BYTES];
        memcpy(seed, pt, sizeof(seed));
        CHECK_OK(fv_valid_expand_seed(&e->lay, seed, pt), NULL);
    }
    if (st == 0)
        st = fv_valid_holder_check(&spec, e->m, e->t, e->my_x, ctx, fm.item.header,
                                   e->lay.header_bytes, pt, e->lay.payload_bytes, &e->held[rk], &vs,
                                   &r.item.len, NULL);
    r.item.status = st;
    if (st == 0 && e->a == BAD_VSHARES)
        vs[e->lay.vshare_bytes - 1] ^= 0x01; /* the last opening, still below p */
    r.item.data = vs;
    push(up, &r, &e->lay);
    free(vs);
    free(pt);
    fv_vagg_msg_close(&fm);
}

static void evil_aggshare(evil_t *e, const uint8_t *req, size_t rl, fv_secagg_outbox_t *up)
{
    fv_vagg_msg_t sm;
    CHECK_OK(fv_vagg_msg_decode(req, rl, &e->lay, N, &sm, NULL), NULL);
    const fv_valid_held_t *hs[N];
    for (uint32_t i = 0; i < sm.count; i++) {
        uint32_t r = 0;
        while (e->u1[r] != sm.items[i].peer)
            r++;
        CHECK(e->held[r] != NULL);
        hs[i] = e->held[r];
    }
    uint8_t *agg;
    size_t al;
    CHECK_OK(fv_valid_aggshare(&e->lay, sm.sum_id, hs, sm.count, &agg, &al, NULL), NULL);
    if (e->a == BAD_AGGSHARE)
        agg[al - 1] ^= 0x01;
    fv_vagg_msg_close(&sm);
    fv_vagg_msg_t r = {.type = FV_VAGG_MSG_AGGSHARE,
                       .job_id = e->p.job_id,
                       .round = e->p.round,
                       .from = EVIL,
                       .to = FV_SECAGG_SERVER,
                       .data = agg,
                       .len = al};
    push(up, &r, &e->lay);
    free(agg);
}

/* ---- one round ------------------------------------------------------------------------------ */
typedef struct outcome {
    bool evil_refused;    /* the server refused its PROOF */
    bool evil_verdict;    /* it had a verdict */
    fv_valid_verdict_t v; /* ... which */
    uint32_t complaints;
    uint32_t vshare_outliers; /* provers whose decision named the evil holder */
    uint32_t sum_outlier;     /* id + 1 */
    int64_t sum[DIM];
    uint32_t n_v;
    bool evil_in_v;
} outcome_t;

static fv_secagg_outbox_t g_prev; /* EVIL's PROOF messages of the previous round (REPLAY) */

static void run_round(enum attack a, uint64_t round, bool with_evil, outcome_t *oc)
{
    fv_vagg_params_t p = {.federation = "test-fed",
                          .job_id = 77,
                          .round = round,
                          .n_clients = N,
                          .threshold = 4,
                          .spec = &spec,
                          .identity_pks = pks};
    fv_diag_t d = {{0}};
    fv_vagg_server_t *s;
    CHECK_OK(fv_vagg_server_new(&p, &s, &d), &d);
    fv_vagg_client_t *c[N] = {0};
    fv_rand_t rng[N];
    fv_secagg_policy_t pol = {.min_cohort = 3, .min_threshold = 3};
    evil_t e = {.a = a, .p = p};
    fv_rand_seeded_u64(&e.rng, 1000 + round);
    fv_secagg_outbox_t ob;
    fv_secagg_outbox_init(&ob);
    memset(oc, 0, sizeof(*oc));
    for (uint32_t u = 0; u < N; u++) {
        if (u == EVIL && with_evil)
            continue;
        fv_rand_seeded_u64(&rng[u], 100 * round + u);
        CHECK_OK(fv_vagg_client_new(&p, &pol, u, sks + 64 * u, &rng[u], &c[u], &d), &d);
        CHECK_OK(fv_vagg_client_start(c[u], &ob, &d), &d);
    }
    if (with_evil) {
        size_t l;
        uint8_t *b = evil_adv(&e, &l);
        CHECK_OK(fv__secagg_outbox_push(&ob, FV_SECAGG_SERVER, b, l), NULL);
    }
    for (size_t i = 0; i < ob.n; i++)
        CHECK_OK(fv_vagg_server_handle(s, ob.msgs[i].data, ob.msgs[i].len, &d), &d);
    fv_secagg_outbox_clear(&ob);

    for (int phase = 0; phase < 4; phase++) {
        fv_secagg_outbox_t down, up;
        fv_secagg_outbox_init(&down);
        fv_secagg_outbox_init(&up);
        CHECK_OK(fv_vagg_server_close_phase(s, &down, &d), &d);
        if (phase == 2 && with_evil) {
            uint32_t compl = 0;
            oc->evil_verdict = fv_vagg_server_verdict(s, EVIL, &oc->v, &compl );
            oc->complaints = compl ;
            for (uint32_t u = 0; u < N; u++) {
                fv_valid_verdict_t v;
                if (u != EVIL && fv_vagg_server_verdict(s, u, &v, NULL)) {
                    CHECK(v.ok);
                    if (v.outlier)
                        oc->vshare_outliers++;
                }
            }
        }
        if (phase == 3)
            break;
        for (size_t i = 0; i < down.n; i++) {
            uint32_t to = down.msgs[i].to;
            const uint8_t *msg = down.msgs[i].data;
            size_t len = down.msgs[i].len;
            if (to == EVIL && with_evil) {
                if (phase == 0) {
                    fv_secagg_outbox_t mine;
                    fv_secagg_outbox_init(&mine);
                    evil_proof(&e, msg, len, &mine);
                    if (a == REPLAY) {
                        /* last round's messages, each with this round's 32-byte header */
                        CHECK(g_prev.n == mine.n);
                        for (size_t k = 0; k < mine.n; k++)
                            memcpy(mine.msgs[k].data + 32, g_prev.msgs[k].data + 32,
                                   mine.msgs[k].len - 32);
                    } else {
                        fv_secagg_outbox_clear(&g_prev);
                        for (size_t k = 0; k < mine.n; k++) {
                            uint8_t *cp = malloc(mine.msgs[k].len);
                            memcpy(cp, mine.msgs[k].data, mine.msgs[k].len);
                            CHECK_OK(fv__secagg_outbox_push(&g_prev, 0, cp, mine.msgs[k].len),
                                     NULL);
                        }
                    }
                    for (size_t k = 0; k < mine.n; k++) {
                        CHECK_OK(fv__secagg_outbox_push(&up, FV_SECAGG_SERVER, mine.msgs[k].data,
                                                        mine.msgs[k].len),
                                 NULL);
                        mine.msgs[k].data = NULL;
                    }
                    fv_secagg_outbox_close(&mine);
                } else if (phase == 1) {
                    evil_on_fwd(&e, msg, len, &up);
                } else {
                    evil_aggshare(&e, msg, len, &up);
                }
                continue;
            }
            CHECK(c[to] != NULL);
            CHECK_OK(fv_vagg_client_handle(c[to], msg, len, &up, &d), &d);
            if (fv_vagg_client_needs_input(c[to])) {
                int64_t w[DIM];
                input_of(to, w);
                CHECK_OK(fv_vagg_client_set_input(c[to], w, &up, &d), &d);
            }
        }
        for (size_t i = 0; i < up.n; i++) {
            fv_diag_t dd = {{0}};
            int rc = fv_vagg_server_handle(s, up.msgs[i].data, up.msgs[i].len, &dd);
            if (rc != 0) {
                /* only the hostile client's messages may be refused */
                CHECK(with_evil);
                if (phase == 0)
                    oc->evil_refused = true;
            }
        }
        fv_secagg_outbox_close(&down);
        fv_secagg_outbox_close(&up);
    }
    const int64_t *sum;
    CHECK_OK(fv_vagg_server_result(s, &sum, &oc->sum_outlier), NULL);
    memcpy(oc->sum, sum, sizeof(oc->sum));
    oc->n_v = fv_vagg_server_set_size(s, 5);
    oc->evil_in_v = fv_vagg_server_in_set(s, 5, EVIL);
    for (uint32_t u = 0; u < N; u++) {
        if (c[u])
            CHECK_INT_EQ(fv_vagg_client_phase(c[u]), 4);
        fv_vagg_client_free(c[u]);
    }
    for (uint32_t r = 0; r < N; r++)
        fv_valid_held_free(e.held[r]);
    free(e.own_vs);
    fv_secagg_outbox_close(&ob);
    fv_vagg_server_free(s);
}

static void expect_sum(const outcome_t *oc, bool evil_counted)
{
    int64_t want[DIM] = {0}, w[DIM];
    for (uint32_t u = 0; u < N; u++) {
        if (u == EVIL && !evil_counted)
            continue;
        input_of(u, w);
        for (uint32_t k = 0; k < DIM; k++)
            want[k] += w[k];
    }
    for (uint32_t k = 0; k < DIM; k++)
        CHECK_INT_EQ(oc->sum[k], want[k]);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK_OK(fv_crypto_init(), NULL);
    fv_secagg_outbox_init(&g_prev);
    fv_rand_t kr;
    fv_rand_seeded_u64(&kr, 42);
    for (uint32_t u = 0; u < N; u++)
        CHECK_OK(fv_sign_keypair(&kr, pks + 32 * u, sks + 64 * u), NULL);

    outcome_t oc;
    run_round(HONEST, 1, false, &oc);
    CHECK_UINT_EQ(oc.n_v, N);
    expect_sum(&oc, true);
    printf("honest: %u accepted, sum exact\n", oc.n_v);

    for (int a = HONEST; a < N_ATTACKS; a++) {
        uint64_t round = a == REPLAY ? 2 : 1;
        if (a == REPLAY)
            run_round(HONEST, 1, true, &oc); /* keeps its round-1 PROOF for round 2 */
        run_round((enum attack)a, round, true, &oc);
        const char *what = "";
        switch (a) {
        case HONEST:
            CHECK(oc.evil_verdict && oc.v.ok && oc.evil_in_v);
            expect_sum(&oc, true);
            break;
        case OVER_NORM:
        case WRAP:
        case COUNT_RANGE:
        case HIST_SUM:
        case SWAP_ALL:
        case OFF_POLY_TWO: {
            const char *want = a == OVER_NORM     ? "norm"
                               : a == WRAP        ? "wraparound"
                               : a == COUNT_RANGE ? "hist_pos[0]"
                               : a == HIST_SUM    ? "hist_sum=n_val"
                               : a == SWAP_ALL    ? "complaints"
                                                  : "consistency";
            CHECK(oc.evil_verdict && !oc.v.ok && !oc.evil_in_v);
            if (strcmp(oc.v.check, want) != 0)
                FV__FAIL("attack %s: check '%s', expected '%s'", attack_name[a], oc.v.check, want);
            expect_sum(&oc, false);
            what = oc.v.check;
            break;
        }
        case OFF_POLY_ONE:
            /* The moved share's holder is located as the outlier; the recomputed commitment
             * changed the Fiat-Shamir challenges, so the proof no longer holds on the rest. */
            if (!(oc.evil_verdict && !oc.v.ok && oc.v.outlier != 0 && !oc.evil_in_v))
                FV__FAIL("off_poly_one: verdict %d ok %d check %s outlier %u", oc.evil_verdict,
                         oc.v.ok, oc.v.check, oc.v.outlier);
            expect_sum(&oc, false);
            what = "outlier holder located, proof fails on the rest";
            break;
        case REPLAY:
        case SIGN_OTHER:
            CHECK(oc.evil_refused && !oc.evil_verdict && !oc.evil_in_v);
            expect_sum(&oc, false);
            what = "proof refused by the server";
            break;
        case BAD_VSHARES:
            CHECK_UINT_EQ(oc.vshare_outliers, N - 1);
            CHECK(oc.evil_in_v);
            expect_sum(&oc, true);
            what = "named the outlier holder in every honest prover's decision";
            break;
        case BAD_AGGSHARE:
            CHECK_UINT_EQ(oc.sum_outlier, EVIL + 1);
            expect_sum(&oc, true);
            what = "named the outlier sum share";
            break;
        }
        printf("%-13s caught: %s; sum over %u accepted exact\n", attack_name[a], what, oc.n_v);
    }
    fv_secagg_outbox_close(&g_prev);
    return 0;
}
