/* test_secagg.c - SecAgg / SecAgg+ state machines, wire format and simulator.
 *
 * Two drivers: the simulator (fv_secagg_sim_run) for end-to-end sums under dropouts, and
 * a hand-driven harness (n clients + server in this file) that lets a test stand in for
 * a lying server or a broken network: it decodes a message, alters it, re-encodes it and
 * checks the exact error code and whether the party aborted or just dropped the message.
 * Dimensions are small (the arithmetic is the same at any size) so the suite stays fast
 * under ASan.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_secagg.h"
#include "fv_test.h"
#include "secagg-int.h" /* fv__secagg_client_wiped */

#define DIM 37
#define MAXN 16

/* ---- simulator -------------------------------------------------------------------------- */

static fv_secagg_sim_config_t sim_cfg(uint32_t n, uint32_t t, uint32_t k, uint64_t seed)
{
    fv_secagg_sim_config_t c;
    memset(&c, 0, sizeof(c));
    c.params.job_id = 42;
    c.params.round = 7;
    c.params.n_clients = n;
    c.params.threshold = t;
    c.params.n_neighbors = k;
    c.params.dim = DIM;
    c.params.prg = FV_PRG_DEFAULT;
    memset(c.params.graph_seed, 0x5a, sizeof(c.params.graph_seed));
    c.seed = seed;
    c.dropout_phase = 2;
    return c;
}

static void test_dropouts_every_phase(void)
{
    static const double fr[] = {0.0, 0.1, 0.3};
    for (uint32_t ph = 0; ph <= 4; ph++) {
        for (size_t i = 0; i < 3; i++) {
            fv_secagg_sim_config_t c = sim_cfg(15, 8, 14, 1000 + ph);
            c.dropout_fraction = fr[i];
            c.dropout_phase = ph;
            fv_secagg_sim_result_t r;
            fv_diag_t d = {""};
            CHECK_OK(fv_secagg_sim_run(&c, &r, &d), &d);
            if (!r.exact)
                FV__FAIL("phase %u fraction %.1f: sum is not exact", ph, fr[i]);
            uint32_t nd = (uint32_t)(fr[i] * 15);
            CHECK_UINT_EQ(r.n_dropped, nd);
            /* the sets shrink exactly at the dropout phase */
            for (uint32_t s = 1; s <= 5; s++)
                CHECK_UINT_EQ(r.set_size[s], s - 1 < ph ? 15 : 15 - nd);
            free(r.sum);
        }
    }
}

static void test_below_threshold_aborts(void)
{
    /* n = 10, t = 8: three dropouts leave 7 at whichever phase they happen. */
    for (uint32_t ph = 0; ph <= 4; ph++) {
        fv_secagg_sim_config_t c = sim_cfg(10, 8, 9, 77);
        c.dropout_fraction = 0.3;
        c.dropout_phase = ph;
        fv_secagg_sim_result_t r;
        fv_diag_t d = {""};
        int rc = fv_secagg_sim_run(&c, &r, &d);
        CHECK_INT_EQ(rc, FV_ETHRESHOLD);
        CHECK(r.sum == NULL);
        CHECK_CONTAINS(d.msg, "threshold");
    }
}

static void test_secagg_plus(void)
{
    /* n = 20, k = 8 (holder sets of 9), t = 5; dropouts at every phase. */
    int n_exact = 0;
    for (uint32_t ph = 0; ph <= 4; ph++) {
        for (int f = 0; f < 3; f++) {
            fv_secagg_sim_config_t c = sim_cfg(20, 5, 8, 300 + ph);
            c.dropout_fraction = f * 0.1;
            c.dropout_phase = ph;
            fv_secagg_sim_result_t r;
            fv_diag_t d = {""};
            int rc = fv_secagg_sim_run(&c, &r, &d);
            /* a neighbourhood may lose its majority: that must be a clean abort */
            if (rc == FV_ETHRESHOLD) {
                CHECK(r.sum == NULL);
                continue;
            }
            CHECK_OK(rc, &d);
            CHECK(r.exact);
            n_exact++;
            /* each client shares with k neighbours only: phase-1 upload is k ciphertexts */
            CHECK(r.max_bytes_up[1] == 32 + 8 * 108);
            free(r.sum);
        }
    }
    CHECK(n_exact >= 13);
    /* larger sparse cohort with 20 % dropping after share keys */
    fv_secagg_sim_config_t c = sim_cfg(60, 9, 16, 9);
    c.dropout_fraction = 0.2;
    fv_secagg_sim_result_t r;
    fv_diag_t d = {""};
    CHECK_OK(fv_secagg_sim_run(&c, &r, &d), &d);
    CHECK(r.exact);
    free(r.sum);
}

/* Work counts follow the configuration exactly. */
static void test_counts(void)
{
    const uint32_t n = 10;
    fv_secagg_sim_config_t c = sim_cfg(n, 6, n - 1, 5);
    c.dropout_fraction = 0.3; /* 3 drop after share keys */
    fv_secagg_sim_result_t r;
    fv_diag_t d = {""};
    CHECK_OK(fv_secagg_sim_run(&c, &r, &d), &d);
    CHECK(r.exact);
    uint64_t s3 = n - 3;
    CHECK_UINT_EQ(r.clients.prg_words, s3 * (1 + (n - 1)) * DIM);
    CHECK_UINT_EQ(r.server.prg_words, (s3 + 3 * s3) * DIM);
    CHECK_UINT_EQ(r.clients.n_kx, n * (n - 1) + s3 * (n - 1));
    CHECK_UINT_EQ(r.server.n_kx, 3 * s3);
    CHECK_UINT_EQ(r.bytes_up[2], s3 * (32 + 4 * DIM));
    free(r.sum);
}

typedef struct {
    uint8_t h[FV_HASH_BYTES];
    uint64_t n_msgs;
} transcript_t;

static void on_msg(void *ud, uint32_t phase, uint32_t from, uint32_t to, const uint8_t *m,
                   size_t len)
{
    transcript_t *t = ud;
    uint8_t buf[FV_HASH_BYTES * 2];
    memcpy(buf, t->h, FV_HASH_BYTES);
    fv_sha256(buf + FV_HASH_BYTES, m, len);
    fv_sha256(t->h, buf, sizeof(buf));
    t->n_msgs++;
    (void)phase;
    (void)from;
    (void)to;
}

static void run_transcript(uint64_t seed, transcript_t *t)
{
    memset(t, 0, sizeof(*t));
    fv_secagg_sim_config_t c = sim_cfg(12, 7, 11, seed);
    c.dropout_fraction = 0.25;
    c.msg_hook = on_msg;
    c.hook_ud = t;
    fv_secagg_sim_result_t r;
    fv_diag_t d = {""};
    CHECK_OK(fv_secagg_sim_run(&c, &r, &d), &d);
    CHECK(r.exact);
    free(r.sum);
}

static void test_deterministic(void)
{
    transcript_t a, b, o;
    run_transcript(11, &a);
    run_transcript(11, &b);
    run_transcript(12, &o);
    CHECK(a.n_msgs > 0);
    CHECK_UINT_EQ(a.n_msgs, b.n_msgs);
    CHECK(memcmp(a.h, b.h, FV_HASH_BYTES) == 0);
    CHECK(memcmp(a.h, o.h, FV_HASH_BYTES) != 0);
}

/* ---- parallel simulator ------------------------------------------------------------------ */

/* What a run leaves behind besides the result: the msg_hook transcript (caller's thread)
 * and the step hook's counts, per client in its own row (written from worker threads). */
typedef struct {
    transcript_t tr;
    uint32_t steps[60][FV_SECAGG_N_PHASES][2]; /* [client][phase][before/after] */
    uint32_t server_steps[FV_SECAGG_N_PHASES];
} par_trace_t;

static void par_on_msg(void *ud, uint32_t phase, uint32_t from, uint32_t to, const uint8_t *m,
                       size_t len)
{
    par_trace_t *t = ud;
    on_msg(&t->tr, phase, from, to, m, len);
}

static void par_on_step(void *ud, uint32_t phase, uint32_t party, fv_secagg_hook_when_t when)
{
    par_trace_t *t = ud;
    if (party == FV_SECAGG_SERVER) {
        if (when == FV_SECAGG_HOOK_AFTER)
            t->server_steps[phase]++;
        return;
    }
    if (party >= 60 || phase >= FV_SECAGG_N_PHASES)
        FV__FAIL("step hook: party %u phase %u", party, phase);
    t->steps[party][phase][when]++;
}

/* The trivial par_for: in order, on this thread. */
static void par_for_seq(void *ctx, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        fn(arg, i);
}

/* A real one: *(unsigned *)ctx threads per call, indices from an atomic counter. */
typedef struct {
    atomic_size_t next;
    size_t n;
    void (*fn)(void *arg, size_t i);
    void *arg;
} par_job_t;

static void *par_worker(void *a)
{
    par_job_t *j = a;
    for (size_t i; (i = atomic_fetch_add(&j->next, 1)) < j->n;)
        j->fn(j->arg, i);
    return NULL;
}

static void par_for_threads(void *ctx, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
    unsigned nt = *(const unsigned *)ctx;
    pthread_t th[8];
    par_job_t j = {.n = n, .fn = fn, .arg = arg};
    atomic_init(&j.next, 0);
    if (nt > 8)
        nt = 8;
    for (unsigned i = 0; i < nt; i++)
        if (pthread_create(&th[i], NULL, par_worker, &j) != 0)
            FV__FAIL("pthread_create failed");
    for (unsigned i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
}

/* Runs c three ways: no par_for, the sequential one, 4 threads. Everything must agree. */
static void check_par_identical(fv_secagg_sim_config_t c)
{
    static unsigned n_threads = 4;
    void (*const pf[3])(void *, size_t, void (*)(void *, size_t), void *) = {NULL, par_for_seq,
                                                                             par_for_threads};
    par_trace_t *tr = calloc(3, sizeof(*tr));
    fv_secagg_sim_result_t r[3];
    int rc[3];
    CHECK(tr != NULL);
    for (int m = 0; m < 3; m++) {
        fv_diag_t d = {""};
        c.par_for = pf[m];
        c.par_ctx = &n_threads;
        c.msg_hook = par_on_msg;
        c.step_hook = par_on_step;
        c.hook_ud = &tr[m];
        rc[m] = fv_secagg_sim_run(&c, &r[m], &d);
        if (rc[m] != 0 && rc[m] != FV_ETHRESHOLD)
            CHECK_OK(rc[m], &d);
    }
    for (int m = 1; m < 3; m++) {
        CHECK_INT_EQ(rc[m], rc[0]);
        CHECK_UINT_EQ(tr[m].tr.n_msgs, tr[0].tr.n_msgs);
        CHECK(memcmp(tr[m].tr.h, tr[0].tr.h, FV_HASH_BYTES) == 0); /* bytes and order */
        CHECK(memcmp(tr[m].steps, tr[0].steps, sizeof(tr[0].steps)) == 0);
        CHECK(memcmp(tr[m].server_steps, tr[0].server_steps, sizeof(tr[0].server_steps)) == 0);
        CHECK((r[m].sum == NULL) == (r[0].sum == NULL));
        if (r[0].sum)
            CHECK(memcmp(r[m].sum, r[0].sum, sizeof(uint32_t) * c.params.dim) == 0);
        /* every other field: sets, counts, bytes, stats (the simulator zeroes the whole
         * struct first, so the padding compares equal too) */
        fv_secagg_sim_result_t a = r[0], b = r[m];
        a.sum = b.sum = NULL;
        CHECK(memcmp(&a, &b, sizeof(a)) == 0);
    }
    /* each working client: one BEFORE and one AFTER per phase it worked in */
    for (uint32_t u = 0; u < c.params.n_clients; u++)
        for (int p = 0; p < FV_SECAGG_N_PHASES; p++)
            CHECK_UINT_EQ(tr[2].steps[u][p][0], tr[2].steps[u][p][1]);
    if (rc[0] == 0)
        CHECK(r[0].exact);
    for (int m = 0; m < 3; m++)
        free(r[m].sum);
    free(tr);
}

static void test_parallel_identical(void)
{
    fv_secagg_sim_config_t c = sim_cfg(12, 7, 11, 11); /* classic, 3 drop after share keys */
    c.dropout_fraction = 0.25;
    check_par_identical(c);
    for (uint32_t ph = 0; ph <= 4; ph++) { /* SecAgg+, dropouts at every phase */
        c = sim_cfg(20, 5, 8, 300 + ph);
        c.dropout_fraction = 0.2;
        c.dropout_phase = ph;
        check_par_identical(c);
    }
    c = sim_cfg(6, 5, 5, 3); /* 2 of 6 drop, t = 5: the round aborts, identically */
    c.dropout_fraction = 0.34;
    check_par_identical(c);
    /* the server's pooled unmasking: several 16 Ki-word ranges, the last one partial */
    c = sim_cfg(8, 5, 7, 12);
    c.params.dim = 2 * 16384 + 101; /* 3 ranges; small enough for the valgrind pass */
    c.dropout_fraction = 0.25;
    check_par_identical(c);
    c.params.prg = FV_PRG_CHACHA20;
    check_par_identical(c);
    c.params.prg = FV_PRG_AES128CTR;
    c.params.dim = DIM;
    check_par_identical(c);
}

/* ---- parameters and graph ---------------------------------------------------------------- */

static void test_params_and_graph(void)
{
    uint8_t pks[64 * 32] = {0};
    fv_secagg_params_t p;
    memset(&p, 0, sizeof(p));
    p.n_clients = 10;
    p.n_neighbors = 9;
    p.threshold = 6;
    p.dim = 1;
    p.identity_pks = pks;
    p.prg = FV_PRG_CHACHA20;
    CHECK_OK(fv_secagg_params_check(&p, NULL, NULL), NULL);
    p.threshold = 5; /* 2t = k+1: two disjoint holder majorities would exist */
    CHECK_INT_EQ(fv_secagg_params_check(&p, NULL, NULL), FV_EINVAL);
    p.threshold = 11;
    CHECK_INT_EQ(fv_secagg_params_check(&p, NULL, NULL), FV_EINVAL);
    p.threshold = 6;
    p.n_neighbors = 5; /* odd */
    CHECK_INT_EQ(fv_secagg_params_check(&p, NULL, NULL), FV_EINVAL);
    p.n_neighbors = 4;
    p.threshold = 3;
    CHECK_OK(fv_secagg_params_check(&p, NULL, NULL), NULL);
    fv_secagg_policy_t pol = {.min_cohort = 11, .min_threshold = 0};
    CHECK_INT_EQ(fv_secagg_params_check(&p, &pol, NULL), FV_EPOLICY);
    pol.min_cohort = 10;
    pol.min_threshold = 4;
    CHECK_INT_EQ(fv_secagg_params_check(&p, &pol, NULL), FV_EPOLICY);
    p.dim = 0;
    CHECK_INT_EQ(fv_secagg_params_check(&p, NULL, NULL), FV_EINVAL);
    p.dim = 1;

    /* k-regular, symmetric, sorted, no self loops */
    static const uint32_t cases[][2] = {{10, 4}, {31, 6}, {64, 30}, {7, 6}, {9, 2}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint32_t n = cases[c][0], k = cases[c][1];
        p.n_clients = n;
        p.n_neighbors = k;
        p.threshold = k / 2 + 1;
        static uint32_t nb[64][64];
        for (uint32_t u = 0; u < n; u++)
            CHECK_OK(fv_secagg_neighbors(&p, u, nb[u]), NULL);
        for (uint32_t u = 0; u < n; u++) {
            for (uint32_t j = 0; j < k; j++) {
                uint32_t v = nb[u][j];
                CHECK(v < n && v != u);
                if (j > 0)
                    CHECK(nb[u][j - 1] < v);
                bool back = false;
                for (uint32_t i = 0; i < k; i++)
                    back |= nb[v][i] == u;
                CHECK(back);
            }
        }
    }
}

/* ---- hand-driven harness ----------------------------------------------------------------- */

typedef struct {
    uint32_t n;
    fv_secagg_params_t p;
    uint8_t id_pk[MAXN * 32];
    uint8_t id_sk[MAXN * 64];
    fv_rand_t rng[MAXN];
    fv_secagg_client_t *c[MAXN];
    fv_secagg_server_t *s;
    fv_secagg_outbox_t sout; /* server -> clients of the current phase */
    uint32_t x[MAXN][DIM];
    int phase; /* messages in sout are for this phase */
} harness_t;

static void h_init(harness_t *h, uint32_t n, uint32_t t, uint32_t k, const fv_secagg_policy_t *pol)
{
    memset(h, 0, sizeof(*h));
    h->n = n;
    fv_rand_t r;
    fv_rand_seeded_u64(&r, 99);
    for (uint32_t u = 0; u < n; u++)
        CHECK_OK(fv_sign_keypair(&r, h->id_pk + 32 * u, h->id_sk + 64 * u), NULL);
    h->p.job_id = 1;
    h->p.round = 3;
    h->p.n_clients = n;
    h->p.threshold = t;
    h->p.n_neighbors = k;
    h->p.dim = DIM;
    h->p.prg = FV_PRG_DEFAULT;
    h->p.identity_pks = h->id_pk;
    fv_diag_t d = {""};
    CHECK_OK(fv_secagg_server_new(&h->p, &h->s, &d), &d);
    for (uint32_t u = 0; u < n; u++) {
        fv_rand_seeded_u64(&h->rng[u], 1000 + u);
        CHECK_OK(fv_secagg_client_new(&h->p, pol, u, h->id_sk + 64 * u, &h->rng[u], &h->c[u], &d),
                 &d);
        for (uint32_t i = 0; i < DIM; i++)
            h->x[u][i] = (u + 1) * 1000 + i;
    }
    fv_secagg_outbox_init(&h->sout);
    /* phase 0 */
    fv_secagg_outbox_t o;
    fv_secagg_outbox_init(&o);
    for (uint32_t u = 0; u < n; u++)
        CHECK_OK(fv_secagg_client_start(h->c[u], &o, &d), &d);
    for (size_t i = 0; i < o.n; i++)
        CHECK_OK(fv_secagg_server_handle(h->s, o.msgs[i].data, o.msgs[i].len, &d), &d);
    fv_secagg_outbox_close(&o);
    CHECK_OK(fv_secagg_server_close_phase(h->s, &h->sout, &d), &d);
    h->phase = 1;
}

static void h_free(harness_t *h)
{
    for (uint32_t u = 0; u < h->n; u++)
        fv_secagg_client_free(h->c[u]);
    fv_secagg_server_free(h->s);
    fv_secagg_outbox_close(&h->sout);
}

static const fv_secagg_outmsg_t *h_msg_to(harness_t *h, uint32_t u)
{
    for (size_t i = 0; i < h->sout.n; i++)
        if (h->sout.msgs[i].to == u)
            return &h->sout.msgs[i];
    FV__FAIL("no message for client %u", u);
}

/* Delivers the current phase's messages to the clients in mask (all when 0), routes the
 * replies to the server, closes the phase. Returns the close code. */
/* Client u's replies of the current phase, before routing, for callers that want a copy. */
static uint8_t *h_capture;
static size_t h_capture_len;

/* Delivers the current phase's messages to the clients not in skip_mask, routes the replies
 * to the server and, when close is set, closes the phase (returning the close code). */
static int h_step_ex(harness_t *h, uint32_t skip_mask, bool close)
{
    fv_secagg_outbox_t o;
    fv_secagg_outbox_init(&o);
    fv_diag_t d = {""};
    for (size_t i = 0; i < h->sout.n; i++) {
        uint32_t u = h->sout.msgs[i].to;
        if (skip_mask & (1u << u))
            continue;
        if (h->phase == 2)
            CHECK_OK(fv_secagg_client_set_input(h->c[u], h->x[u]), NULL);
        size_t before = o.n;
        CHECK_OK(
            fv_secagg_client_handle(h->c[u], h->sout.msgs[i].data, h->sout.msgs[i].len, &o, &d),
            &d);
        if (u == 0 && o.n == before + 1) {
            free(h_capture);
            h_capture_len = o.msgs[before].len;
            h_capture = malloc(h_capture_len);
            memcpy(h_capture, o.msgs[before].data, h_capture_len);
        }
    }
    for (size_t i = 0; i < o.n; i++)
        CHECK_OK(fv_secagg_server_handle(h->s, o.msgs[i].data, o.msgs[i].len, &d), &d);
    fv_secagg_outbox_close(&o);
    if (!close)
        return 0;
    fv_secagg_outbox_clear(&h->sout);
    int rc = fv_secagg_server_close_phase(h->s, &h->sout, &d);
    h->phase++;
    return rc;
}

static int h_step(harness_t *h, uint32_t skip_mask)
{
    return h_step_ex(h, skip_mask, true);
}

/* Decode, let f alter, re-encode. Caller frees *out. */
static void h_tamper(const fv_secagg_outmsg_t *m, void (*f)(fv_secagg_msg_t *, void *), void *ud,
                     uint8_t **out, size_t *out_len)
{
    fv_secagg_msg_t dm;
    CHECK_OK(fv_secagg_msg_decode(m->data, m->len, &dm, NULL), NULL);
    f(&dm, ud);
    CHECK_OK(fv_secagg_msg_encode(&dm, out, out_len), NULL);
    dm.n_ids = dm.ids ? dm.n_ids : 0;
    fv_secagg_msg_close(&dm);
}

static int h_deliver(harness_t *h, uint32_t u, const uint8_t *m, size_t len)
{
    fv_secagg_outbox_t o;
    fv_secagg_outbox_init(&o);
    if (h->phase == 2)
        fv_secagg_client_set_input(h->c[u], h->x[u]);
    int rc = fv_secagg_client_handle(h->c[u], m, len, &o, NULL);
    fv_secagg_outbox_close(&o);
    return rc;
}

static void flip_sig(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->keys[1].sig[10] ^= 1;
}
static void swap_cpk(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    uint8_t tmp[32];
    memcpy(tmp, m->keys[1].c_pk, 32);
    memcpy(m->keys[1].c_pk, m->keys[2].c_pk, 32);
    memcpy(m->keys[2].c_pk, tmp, 32);
}
static void own_spk(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->keys[0].s_pk[0] ^= 0x40; /* client 0's own entry */
}
static void dup_entry(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->keys[2] = m->keys[1];
}
static void unknown_entry(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->keys[1].id = 99;
}
static void next_round(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->round++;
}
static void other_job(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->job_id ^= 1;
}

static void test_keylist_attacks(void)
{
    static void (*const attack[])(fv_secagg_msg_t *, void *) = {flip_sig, swap_cpk, own_spk,
                                                                dup_entry, unknown_entry};
    static const int want[] = {FV_EAUTH, FV_EAUTH, FV_EAUTH, FV_EDUP, FV_EPEER};
    for (size_t a = 0; a < sizeof(want) / sizeof(want[0]); a++) {
        harness_t h;
        h_init(&h, 6, 4, 5, NULL);
        uint8_t *b;
        size_t len;
        h_tamper(h_msg_to(&h, 0), attack[a], NULL, &b, &len);
        CHECK_INT_EQ(h_deliver(&h, 0, b, len), want[a]);
        CHECK_INT_EQ(fv_secagg_client_phase(h.c[0]), -1); /* aborted, secrets wiped */
        /* and stays aborted */
        const fv_secagg_outmsg_t *m = h_msg_to(&h, 0);
        CHECK_INT_EQ(h_deliver(&h, 0, m->data, m->len), FV_EPHASE);
        free(b);
        h_free(&h);
    }
}

static void test_envelope_rejections(void)
{
    harness_t h;
    h_init(&h, 6, 4, 5, NULL);
    const fv_secagg_outmsg_t *m = h_msg_to(&h, 0);
    uint8_t *b;
    size_t len;
    fv_diag_t d = {""};

    /* wrong round / job: dropped, client unchanged */
    h_tamper(m, next_round, NULL, &b, &len);
    CHECK_INT_EQ(h_deliver(&h, 0, b, len), FV_EROUND);
    free(b);
    h_tamper(m, other_job, NULL, &b, &len);
    CHECK_INT_EQ(h_deliver(&h, 0, b, len), FV_EROUND);
    free(b);
    CHECK_INT_EQ(fv_secagg_client_phase(h.c[0]), 1);

    /* truncated at every length, one byte too many, flipped header bytes */
    for (size_t l = 0; l < m->len; l++)
        CHECK_INT_EQ(h_deliver(&h, 0, m->data, l), FV_EPROTO);
    b = malloc(m->len + 1);
    memcpy(b, m->data, m->len);
    b[m->len] = 0;
    CHECK_INT_EQ(h_deliver(&h, 0, b, m->len + 1), FV_EPROTO);
    b[0] ^= 1; /* version */
    CHECK_INT_EQ(h_deliver(&h, 0, b, m->len), FV_EPROTO);
    b[0] ^= 1;
    b[2] = 3; /* phase byte disagrees with type */
    CHECK_INT_EQ(h_deliver(&h, 0, b, m->len), FV_EPROTO);
    b[2] = 1;
    b[28] ^= 0x80; /* count */
    CHECK_INT_EQ(h_deliver(&h, 0, b, m->len), FV_EPROTO);
    b[28] ^= 0x80;
    /* addressed to another client */
    b[24] = 1;
    CHECK_INT_EQ(h_deliver(&h, 0, b, m->len), FV_EPEER);
    free(b);
    CHECK_INT_EQ(fv_secagg_client_phase(h.c[0]), 1);

    /* wrong phase: client 1's key list given to it after it moved on */
    const fv_secagg_outmsg_t *m1 = h_msg_to(&h, 1);
    uint8_t *copy = malloc(m1->len);
    memcpy(copy, m1->data, m1->len);
    size_t copy_len = m1->len;

    CHECK_INT_EQ(h_step(&h, 0), 0);                            /* phase 1 done everywhere */
    CHECK_INT_EQ(h_deliver(&h, 1, copy, copy_len), FV_EPHASE); /* replay */
    CHECK_INT_EQ(fv_secagg_client_phase(h.c[1]), 2);

    /* server side: unknown sender, wrong phase, duplicate, wrong length */
    fv_secagg_outbox_t o;
    fv_secagg_outbox_init(&o);
    fv_secagg_client_set_input(h.c[0], h.x[0]);
    CHECK_OK(fv_secagg_client_handle(h.c[0], h_msg_to(&h, 0)->data, h_msg_to(&h, 0)->len, &o, &d),
             &d);
    CHECK_UINT_EQ(o.n, 1);
    uint8_t *y = o.msgs[0].data;
    size_t ylen = o.msgs[0].len;
    y[20] = 99; /* from: unknown client */
    CHECK_INT_EQ(fv_secagg_server_handle(h.s, y, ylen, &d), FV_EPEER);
    y[20] = 0;
    y[12] ^= 1; /* round: a replay from another round */
    CHECK_INT_EQ(fv_secagg_server_handle(h.s, y, ylen, &d), FV_EROUND);
    y[12] ^= 1;
    y[4] ^= 1; /* job */
    CHECK_INT_EQ(fv_secagg_server_handle(h.s, y, ylen, &d), FV_EROUND);
    y[4] ^= 1;
    CHECK_INT_EQ(fv_secagg_server_handle(h.s, y, ylen - 4, &d), FV_EPROTO); /* truncated */
    fv_secagg_msg_t dm;
    CHECK_OK(fv_secagg_msg_decode(y, ylen, &dm, NULL), NULL);
    dm.n_items = DIM - 1; /* a shorter vector, well-formed */
    uint8_t *shorty;
    size_t shorty_len;
    CHECK_OK(fv_secagg_msg_encode(&dm, &shorty, &shorty_len), NULL);
    CHECK_INT_EQ(fv_secagg_server_handle(h.s, shorty, shorty_len, &d), FV_EPROTO);
    CHECK_CONTAINS(d.msg, "dimension");
    free(shorty);
    CHECK_OK(fv_secagg_server_handle(h.s, y, ylen, &d), &d);
    CHECK_INT_EQ(fv_secagg_server_handle(h.s, y, ylen, &d), FV_EDUP);          /* duplicate */
    CHECK_INT_EQ(fv_secagg_server_handle(h.s, copy, copy_len, &d), FV_EPROTO); /* server type */
    fv_secagg_msg_close(&dm);
    fv_secagg_outbox_close(&o);
    free(copy);
    h_free(&h);

    /* server: a replayed ADVERTISE in phase 1 */
    h_init(&h, 6, 4, 5, NULL);
    fv_secagg_client_t *extra;
    fv_rand_t r;
    fv_rand_seeded_u64(&r, 5);
    CHECK_OK(fv_secagg_client_new(&h.p, NULL, 2, h.id_sk + 64 * 2, &r, &extra, NULL), NULL);
    fv_secagg_outbox_init(&o);
    CHECK_OK(fv_secagg_client_start(extra, &o, NULL), NULL);
    CHECK_INT_EQ(fv_secagg_server_handle(h.s, o.msgs[0].data, o.msgs[0].len, NULL), FV_EPHASE);
    /* a forged advertisement (keys changed after signing) */
    fv_secagg_server_t *s2;
    CHECK_OK(fv_secagg_server_new(&h.p, &s2, NULL), NULL);
    o.msgs[0].data[32 + 4] ^= 1;
    CHECK_INT_EQ(fv_secagg_server_handle(s2, o.msgs[0].data, o.msgs[0].len, NULL), FV_EAUTH);
    o.msgs[0].data[32 + 4] ^= 1;
    CHECK_OK(fv_secagg_server_handle(s2, o.msgs[0].data, o.msgs[0].len, NULL), NULL);
    CHECK_INT_EQ(fv_secagg_server_handle(s2, o.msgs[0].data, o.msgs[0].len, NULL), FV_EDUP);
    /* an advertisement signed by client 2 but claiming to come from client 3 */
    o.msgs[0].data[20] = 3;
    CHECK_INT_EQ(fv_secagg_server_handle(s2, o.msgs[0].data, o.msgs[0].len, NULL), FV_EPEER);
    fv_secagg_server_free(s2);
    fv_secagg_client_free(extra);
    fv_secagg_outbox_close(&o);
    h_free(&h);
}

static void flip_ct(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->cts[0].ct[5] ^= 1;
}
static void swap_sender(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    uint32_t t = m->cts[0].peer;
    m->cts[0].peer = m->cts[1].peer;
    m->cts[1].peer = t;
}

static void test_forward_attacks(void)
{
    void (*const attack[])(fv_secagg_msg_t *, void *) = {flip_ct, swap_sender};
    for (size_t a = 0; a < 2; a++) {
        harness_t h;
        h_init(&h, 6, 4, 5, NULL);
        CHECK_INT_EQ(h_step(&h, 0), 0);
        uint8_t *b;
        size_t len;
        h_tamper(h_msg_to(&h, 0), attack[a], NULL, &b, &len);
        CHECK_INT_EQ(h_deliver(&h, 0, b, len), FV_EAUTH);
        CHECK_INT_EQ(fv_secagg_client_phase(h.c[0]), -1);
        free(b);
        h_free(&h);
    }
}

typedef struct {
    uint32_t add_id;
} req_t;
static void request_extra(fv_secagg_msg_t *m, void *ud)
{
    req_t *r = ud;
    uint32_t *ids = malloc(sizeof(uint32_t) * (m->n_ids + 1));
    if (m->n_ids)
        memcpy(ids, m->ids, sizeof(uint32_t) * m->n_ids);
    ids[m->n_ids] = r->add_id;
    free(m->ids);
    m->ids = ids;
    m->n_ids++;
}
static void drop_sig(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->sigs[1].sig[0] ^= 1;
}
static void drop_two_sigs(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->sigs[1].sig[0] ^= 1;
    m->sigs[3].sig[63] ^= 0x80;
}

/* As h_deliver, and *n_out = the number of replies the client produced. */
static int h_deliver_count(harness_t *h, uint32_t u, const uint8_t *m, size_t len, size_t *n_out)
{
    fv_secagg_outbox_t o;
    fv_secagg_outbox_init(&o);
    int rc = fv_secagg_client_handle(h->c[u], m, len, &o, NULL);
    *n_out = o.n;
    fv_secagg_outbox_close(&o);
    return rc;
}

/* Run a classic round of 6 with client 5 dropping after share keys; stop before unmask. */
static void h_to_unmask(harness_t *h)
{
    h_init(h, 6, 4, 5, NULL);
    CHECK_INT_EQ(h_step(h, 0), 0);       /* share keys */
    CHECK_INT_EQ(h_step(h, 1u << 5), 0); /* masked input: 5 drops */
    CHECK_INT_EQ(h_step(h, 0), 0);       /* consistency */
    CHECK_INT_EQ(h->phase, 4);
}

static void test_both_shares_and_unmask(void)
{
    harness_t h;
    size_t n_out;
    /* honest: exact sum of clients 0..4 */
    h_to_unmask(&h);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    const uint32_t *sum;
    CHECK_OK(fv_secagg_server_result(h.s, &sum), NULL);
    for (uint32_t i = 0; i < DIM; i++) {
        uint32_t want = 0;
        for (uint32_t u = 0; u < 5; u++)
            want += h.x[u][i];
        CHECK_UINT_EQ(sum[i], want);
    }
    h_free(&h);

    /* the server asks client 0 for the key share of client 1, which is in U3 */
    for (uint32_t victim = 0; victim <= 1; victim++) {
        h_to_unmask(&h);
        req_t r = {victim};
        uint8_t *b;
        size_t len;
        h_tamper(h_msg_to(&h, 0), request_extra, &r, &b, &len);
        CHECK_INT_EQ(h_deliver(&h, 0, b, len), FV_EBOTHSHARES);
        CHECK_INT_EQ(fv_secagg_client_phase(h.c[0]), -1);
        free(b);
        h_free(&h);
    }
    /* asked twice for the same dropped peer / a peer that never shared */
    h_to_unmask(&h);
    req_t r5 = {5};
    uint8_t *b;
    size_t len;
    h_tamper(h_msg_to(&h, 0), request_extra, &r5, &b, &len);
    CHECK_INT_EQ(h_deliver(&h, 0, b, len), FV_EDUP);
    free(b);
    h_free(&h);

    /* one consistency tag that does not verify: skipped, not fatal (1 + 3 valid >= t = 4);
     * the server cannot filter tags, so a broken client must not stop its neighbours */
    h_to_unmask(&h);
    h_tamper(h_msg_to(&h, 0), drop_sig, NULL, &b, &len);
    CHECK_INT_EQ(h_deliver(&h, 0, b, len), 0);
    CHECK_INT_EQ(fv_secagg_client_phase(h.c[0]), 5);
    free(b);
    h_free(&h);
    /* two: 1 + 2 valid < t, nothing revealed */
    h_to_unmask(&h);
    h_tamper(h_msg_to(&h, 0), drop_two_sigs, NULL, &b, &len);
    CHECK_INT_EQ(h_deliver_count(&h, 0, b, len, &n_out), FV_ETHRESHOLD);
    CHECK_UINT_EQ(n_out, 0);
    CHECK_INT_EQ(fv_secagg_client_phase(h.c[0]), -1);
    free(b);
    /* a second unmask request after answering once: refused */
    const fv_secagg_outmsg_t *m = h_msg_to(&h, 1);
    CHECK_OK(h_deliver(&h, 1, m->data, m->len), NULL);
    CHECK_INT_EQ(fv_secagg_client_phase(h.c[1]), 5);
    CHECK_INT_EQ(h_deliver(&h, 1, m->data, m->len), FV_EPHASE);
    h_free(&h);

    /* the server cannot unmask with fewer than t = 4 shares: 3 answer */
    h_to_unmask(&h);
    CHECK_INT_EQ(h_step(&h, (1u << 0) | (1u << 1)), FV_ETHRESHOLD);
    CHECK_INT_EQ(fv_secagg_server_result(h.s, &sum), FV_EPHASE);
    CHECK_INT_EQ(fv_secagg_server_phase(h.s), -1);
    h_free(&h);
}

/* Hostile server, consistency phase: it shows clients 1..3 a U3' without client 4 (so that
 * they would hand over 4's key share) and client 0 the real U3 (so that it hands over
 * 4's mask-seed share), then forwards to client 0 the tags it collected. Client 0 must
 * see fewer than t holders committed to its U3 and reveal nothing. Variants: the tags
 * all genuine over one U3 (control: client 0 answers), client 0's own tags reflected
 * back as its neighbours', and tags addressed to another recipient. */
enum { CONS_HONEST, CONS_SPLIT, CONS_REFLECT, CONS_OTHER_RECIPIENT };

static void u3_without_4(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    CHECK_UINT_EQ(m->n_ids, 5);
    m->n_items = 4; /* ids 0..3 */
    m->n_ids = 4;
}

static int consist_attack(int mode, size_t *n_out)
{
    harness_t h;
    h_init(&h, 6, 4, 5, NULL);
    CHECK_INT_EQ(h_step(&h, 0), 0);       /* share keys */
    CHECK_INT_EQ(h_step(&h, 1u << 5), 0); /* masked input: 5 drops; U3 = 0..4 */
    CHECK_INT_EQ(h.phase, 3);
    fv_secagg_msg_t consist[5];
    for (uint32_t u = 0; u < 5; u++) {
        fv_secagg_outbox_t o;
        fv_secagg_outbox_init(&o);
        const fv_secagg_outmsg_t *m = h_msg_to(&h, u);
        uint8_t *b = NULL;
        size_t len = m->len;
        if (mode == CONS_SPLIT && u >= 1 && u <= 3)
            h_tamper(m, u3_without_4, NULL, &b, &len);
        CHECK_OK(fv_secagg_client_handle(h.c[u], b ? b : m->data, len, &o, NULL), NULL);
        free(b);
        CHECK_UINT_EQ(o.n, 1);
        CHECK_OK(fv_secagg_msg_decode(o.msgs[0].data, o.msgs[0].len, &consist[u], NULL), NULL);
        fv_secagg_outbox_close(&o);
    }
    /* SIGLIST for client 0: a tag "from" each of 1..4, asking for 5's key share */
    fv_secagg_sig_entry_t e[4];
    for (uint32_t v = 1; v <= 4; v++) {
        const fv_secagg_msg_t *src = &consist[v];
        uint32_t want_to = 0;
        if (mode == CONS_REFLECT) {
            src = &consist[0]; /* client 0's own tag for v */
            want_to = v;
        } else if (mode == CONS_OTHER_RECIPIENT) {
            want_to = v == 1 ? 2 : 1; /* v's tag for another client */
        }
        bool found = false;
        for (uint32_t i = 0; i < src->n_items; i++)
            if (src->sigs[i].id == want_to) {
                e[v - 1].id = v;
                memcpy(e[v - 1].sig, src->sigs[i].sig, FV_SIGN_BYTES);
                found = true;
            }
        CHECK(found);
    }
    uint32_t req = 5;
    fv_secagg_msg_t sl;
    memset(&sl, 0, sizeof(sl));
    sl.type = FV_SECAGG_MSG_SIGLIST;
    sl.phase = 4;
    sl.job_id = h.p.job_id;
    sl.round = h.p.round;
    sl.from = FV_SECAGG_SERVER;
    sl.to = 0;
    sl.n_items = 4;
    sl.sigs = e;
    sl.ids = &req;
    sl.n_ids = 1;
    uint8_t *b;
    size_t len;
    CHECK_OK(fv_secagg_msg_encode(&sl, &b, &len), NULL);
    h.phase = 4;
    int rc = h_deliver_count(&h, 0, b, len, n_out);
    if (rc < 0)
        CHECK_INT_EQ(fv_secagg_client_phase(h.c[0]), -1);
    free(b);
    for (uint32_t u = 0; u < 5; u++)
        fv_secagg_msg_close(&consist[u]);
    h_free(&h);
    return rc;
}

static void consist_short(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->n_items--;
}
static void consist_swap(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    fv_secagg_sig_entry_t t = m->sigs[0];
    m->sigs[0] = m->sigs[1];
    m->sigs[1] = t;
}
static void consist_dropped(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->sigs[m->n_items - 1].id = 5; /* dropped: not in U3 */
}

/* The server takes a CONSIST only with one tag per neighbour of the sender in U3, in id
 * order (it cannot check the tags themselves); a refused one leaves the sender out of U4. */
static void test_server_consist_shape(void)
{
    harness_t h;
    h_init(&h, 6, 4, 5, NULL);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    CHECK_INT_EQ(h_step(&h, 1u << 5), 0); /* U3 = 0..4 */
    fv_secagg_outbox_t o;
    fv_secagg_outbox_init(&o);
    const fv_secagg_outmsg_t *m = h_msg_to(&h, 0);
    CHECK_OK(fv_secagg_client_handle(h.c[0], m->data, m->len, &o, NULL), NULL);
    CHECK_UINT_EQ(o.n, 1);
    void (*const bad[])(fv_secagg_msg_t *, void *) = {consist_short, consist_swap, consist_dropped};
    static const int want[] = {FV_EPROTO, FV_EPEER, FV_EPEER};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *b;
        size_t len;
        h_tamper(&o.msgs[0], bad[i], NULL, &b, &len);
        CHECK_INT_EQ(fv_secagg_server_handle(h.s, b, len, NULL), want[i]);
        CHECK(!fv_secagg_server_in_set(h.s, 4, 0));
        free(b);
    }
    CHECK_OK(fv_secagg_server_handle(h.s, o.msgs[0].data, o.msgs[0].len, NULL), NULL);
    CHECK(fv_secagg_server_in_set(h.s, 4, 0));
    fv_secagg_outbox_close(&o);
    h_free(&h);
}

static void test_consistency_attacks(void)
{
    size_t n_out = 99;
    CHECK_INT_EQ(consist_attack(CONS_HONEST, &n_out), 0);
    CHECK_UINT_EQ(n_out, 1); /* the control answers UNMASK */
    static const int modes[] = {CONS_SPLIT, CONS_REFLECT, CONS_OTHER_RECIPIENT};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        n_out = 99;
        CHECK_INT_EQ(consist_attack(modes[i], &n_out), FV_ETHRESHOLD);
        CHECK_UINT_EQ(n_out, 0);
    }
}

static void u3_shrink(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->n_items = 3; /* keep 3 of 5 ids */
    m->n_ids = 3;
}
static void u3_unsorted(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    uint32_t t = m->ids[0];
    m->ids[0] = m->ids[1];
    m->ids[1] = t;
}

static void test_u3_checks(void)
{
    harness_t h;
    uint8_t *b;
    size_t len;
    /* |U3| below t */
    h_init(&h, 6, 4, 5, NULL);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    h_tamper(h_msg_to(&h, 0), u3_shrink, NULL, &b, &len);
    CHECK_INT_EQ(h_deliver(&h, 0, b, len), FV_ETHRESHOLD);
    free(b);
    h_tamper(h_msg_to(&h, 1), u3_unsorted, NULL, &b, &len);
    CHECK_INT_EQ(h_deliver(&h, 1, b, len), FV_EPROTO);
    free(b);
    h_free(&h);

    /* local policy: my input summed with fewer than min_cohort others */
    fv_secagg_policy_t pol = {.min_cohort = 6, .min_threshold = 4};
    h_init(&h, 6, 4, 5, &pol);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    CHECK_INT_EQ(h_step(&h, 1u << 5), 0);
    CHECK_INT_EQ(h_deliver(&h, 0, h_msg_to(&h, 0)->data, h_msg_to(&h, 0)->len), FV_EPOLICY);
    h_free(&h);

    /* client refuses to be created below its policy */
    fv_secagg_client_t *c;
    fv_rand_t r;
    fv_rand_seeded_u64(&r, 1);
    h_init(&h, 6, 4, 5, NULL);
    pol.min_cohort = 7;
    CHECK_INT_EQ(fv_secagg_client_new(&h.p, &pol, 0, h.id_sk, &r, &c, NULL), FV_EPOLICY);
    pol.min_cohort = 0;
    pol.min_threshold = 5;
    CHECK_INT_EQ(fv_secagg_client_new(&h.p, &pol, 0, h.id_sk, &r, &c, NULL), FV_EPOLICY);
    h_free(&h);
}

/* Every message type round-trips through encode/decode, and every truncation fails. */
static void test_wire_all_types(void)
{
    harness_t h;
    h_init(&h, 5, 3, 4, NULL);
    for (int ph = 1; ph <= 4; ph++) {
        /* the server messages of this phase */
        const fv_secagg_outmsg_t *m = h_msg_to(&h, 0);
        fv_secagg_msg_t dm;
        CHECK_OK(fv_secagg_msg_decode(m->data, m->len, &dm, NULL), NULL);
        CHECK_INT_EQ(dm.phase, ph);
        uint8_t *b;
        size_t len;
        CHECK_OK(fv_secagg_msg_encode(&dm, &b, &len), NULL);
        CHECK_UINT_EQ(len, m->len);
        CHECK(memcmp(b, m->data, len) == 0);
        free(b);
        fv_secagg_msg_close(&dm);
        for (size_t l = 0; l < m->len; l++) {
            fv_secagg_msg_t x;
            CHECK_INT_EQ(fv_secagg_msg_decode(m->data, l, &x, NULL), FV_EPROTO);
        }
        CHECK_INT_EQ(h_step(&h, 0), 0);
    }
    h_free(&h);
}

/* Every single flipped bit of a key list or of forwarded shares is rejected by the client
 * (a fresh client with the same seed each time, since content errors abort it), and every
 * flipped bit of an advertisement or a consistency signature by the server (which drops
 * the message and stays usable: the intact one is accepted afterwards). */
static void test_every_bit_flip(void)
{
    harness_t h;
    h_init(&h, 3, 2, 2, NULL);
    const fv_secagg_outmsg_t *m = h_msg_to(&h, 0);
    uint8_t *b = malloc(m->len);
    for (size_t bit = 0; bit < 8 * m->len; bit++) {
        memcpy(b, m->data, m->len);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        fv_secagg_client_t *c;
        fv_rand_t r;
        fv_secagg_outbox_t o;
        fv_secagg_outbox_init(&o);
        fv_rand_seeded_u64(&r, 1000); /* client 0's seed in h_init: same keys */
        CHECK_OK(fv_secagg_client_new(&h.p, NULL, 0, h.id_sk, &r, &c, NULL), NULL);
        CHECK_OK(fv_secagg_client_start(c, &o, NULL), NULL);
        fv_secagg_outbox_clear(&o);
        int rc = fv_secagg_client_handle(c, b, m->len, &o, NULL);
        if (rc >= 0)
            FV__FAIL("KEYLIST with bit %zu flipped was accepted", bit);
        fv_secagg_outbox_close(&o);
        fv_secagg_client_free(c);
    }
    free(b);
    h_free(&h);

    /* forwarded shares: client 0 in phase 2 of a fresh round each time */
    h_init(&h, 3, 2, 2, NULL);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    m = h_msg_to(&h, 0);
    size_t len = m->len;
    uint8_t *orig = malloc(len);
    memcpy(orig, m->data, len);
    h_free(&h);
    b = malloc(len);
    for (size_t bit = 0; bit < 8 * len; bit += 3) {
        h_init(&h, 3, 2, 2, NULL);
        CHECK_INT_EQ(h_step(&h, 0), 0);
        CHECK(memcmp(h_msg_to(&h, 0)->data, orig, len) == 0); /* deterministic */
        memcpy(b, orig, len);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (h_deliver(&h, 0, b, len) >= 0)
            FV__FAIL("SHARES_FWD with bit %zu flipped was accepted", bit);
        h_free(&h);
    }
    free(b);
    free(orig);

    /* server side: ADVERTISE of client 0 (phase 0) */
    h_init(&h, 3, 2, 2, NULL);
    fv_secagg_server_t *s;
    CHECK_OK(fv_secagg_server_new(&h.p, &s, NULL), NULL);
    fv_secagg_client_t *c;
    fv_rand_t r;
    fv_secagg_outbox_t o;
    fv_secagg_outbox_init(&o);
    fv_rand_seeded_u64(&r, 1000);
    CHECK_OK(fv_secagg_client_new(&h.p, NULL, 0, h.id_sk, &r, &c, NULL), NULL);
    CHECK_OK(fv_secagg_client_start(c, &o, NULL), NULL);
    b = malloc(o.msgs[0].len);
    for (size_t bit = 0; bit < 8 * o.msgs[0].len; bit++) {
        memcpy(b, o.msgs[0].data, o.msgs[0].len);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        if (fv_secagg_server_handle(s, b, o.msgs[0].len, NULL) >= 0)
            FV__FAIL("ADVERTISE with bit %zu flipped was accepted", bit);
    }
    CHECK_OK(fv_secagg_server_handle(s, o.msgs[0].data, o.msgs[0].len, NULL), NULL);
    free(b);
    fv_secagg_outbox_close(&o);
    fv_secagg_client_free(c);
    fv_secagg_server_free(s);
    h_free(&h);
}

/* The server refuses unmask shares of the wrong kind, holder, index or multiplicity. */
static void share_kind(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->shares[1].kind ^= 1;
}
static void share_dup(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->shares[2] = m->shares[1];
}
static void share_x(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->shares[1].share[0] ^= 1; /* x of the share: not this holder's index */
}
static void share_stranger(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    m->shares[1].peer = 77;
}

static void test_server_unmask_checks(void)
{
    static void (*const attack[])(fv_secagg_msg_t *, void *) = {share_kind, share_dup, share_x,
                                                                share_stranger};
    static const int want[] = {FV_EPROTO, FV_EDUP, FV_EPROTO, FV_EPEER};
    for (size_t a = 0; a < 4; a++) {
        harness_t h;
        h_to_unmask(&h);
        fv_secagg_outbox_t o;
        fv_secagg_outbox_init(&o);
        const fv_secagg_outmsg_t *m = h_msg_to(&h, 0);
        CHECK_OK(fv_secagg_client_handle(h.c[0], m->data, m->len, &o, NULL), NULL);
        uint8_t *b;
        size_t len;
        h_tamper(&o.msgs[0], attack[a], NULL, &b, &len);
        CHECK_INT_EQ(fv_secagg_server_handle(h.s, b, len, NULL), want[a]);
        /* rejected, not recorded: the intact message is still accepted */
        CHECK_OK(fv_secagg_server_handle(h.s, o.msgs[0].data, o.msgs[0].len, NULL), NULL);
        free(b);
        fv_secagg_outbox_close(&o);
        h_free(&h);
    }
}

/* A holder that lies about a share: client 0 shifts its b-share of client 1 so that the
 * interpolation the server used to do (t + 1 = 5 shares, x = 1..5, Lagrange weight of
 * x = 1 is 5) moves chunk 0 of b_1 by exactly +1. That passes the layout check, and b_1
 * is checked against nothing, so it would silently yield a wrong sum; the checked combine
 * catches it (the share is not on the polynomial of the others) and the round fails. */
#define INV5_MOD_P UINT64_C(0x1999999999999999) /* 5^-1 mod 2^61 - 1 */
static void shift_b_share(fv_secagg_msg_t *m, void *ud)
{
    (void)ud;
    for (uint32_t i = 0; i < m->n_items; i++) {
        fv_secagg_share_entry_t *e = &m->shares[i];
        if (e->peer != 1 || e->kind != FV_SECAGG_SHARE_B)
            continue;
        fv_shamir_share_t sh;
        CHECK_OK(fv_shamir_share_decode(e->share, &sh), NULL);
        CHECK_UINT_EQ(sh.x, 1);
        const uint64_t p = (UINT64_C(1) << 61) - 1;
        sh.y[0] = (sh.y[0] + INV5_MOD_P) % p; /* both < p: no overflow */
        fv_shamir_share_encode(&sh, e->share);
        return;
    }
    FV__FAIL("no b-share of client 1 in the unmask answer");
}

static void test_server_detects_wrong_share(void)
{
    harness_t h;
    h_to_unmask(&h);
    fv_secagg_outbox_t o;
    fv_secagg_outbox_init(&o);
    const fv_secagg_outmsg_t *m = h_msg_to(&h, 0);
    CHECK_OK(fv_secagg_client_handle(h.c[0], m->data, m->len, &o, NULL), NULL);
    uint8_t *b;
    size_t len;
    h_tamper(&o.msgs[0], shift_b_share, NULL, &b, &len);
    /* well-formed: accepted on arrival; only the combine can tell */
    CHECK_OK(fv_secagg_server_handle(h.s, b, len, NULL), NULL);
    fv_diag_t d = {""};
    fv_secagg_outbox_t o2;
    fv_secagg_outbox_init(&o2);
    for (uint32_t u = 1; u < 5; u++) {
        m = h_msg_to(&h, u);
        CHECK_OK(fv_secagg_client_handle(h.c[u], m->data, m->len, &o2, &d), &d);
    }
    for (size_t i = 0; i < o2.n; i++)
        CHECK_OK(fv_secagg_server_handle(h.s, o2.msgs[i].data, o2.msgs[i].len, &d), &d);
    fv_secagg_outbox_clear(&h.sout);
    CHECK_INT_EQ(fv_secagg_server_close_phase(h.s, &h.sout, &d), FV_EAUTH);
    CHECK_CONTAINS(d.msg, "client 1");
    CHECK_INT_EQ(fv_secagg_server_phase(h.s), -1);
    const uint32_t *sum;
    CHECK_INT_EQ(fv_secagg_server_result(h.s, &sum), FV_EPHASE); /* no sum released */
    free(b);
    fv_secagg_outbox_close(&o);
    fv_secagg_outbox_close(&o2);
    h_free(&h);
}

/* Secrets are wiped as soon as they are no longer needed, and all of them when the client
 * answers the unmask request or aborts (the buffers themselves are sodium_malloc'd). */
static void test_wiping(void)
{
    harness_t h;
    h_init(&h, 6, 4, 5, NULL);
    CHECK_UINT_EQ(fv__secagg_client_wiped(h.c[0]) & (2 | 4 | 16), 0); /* keys live */
    CHECK_INT_EQ(h_step(&h, 0), 0);
    CHECK_UINT_EQ(fv__secagg_client_wiped(h.c[0]) & (1 | 8 | 32), 0);
    CHECK_INT_EQ(h_step(&h, 1u << 5), 0); /* masked input built */
    /* b_u, s_sk, c_sk and the encryption keys are gone; shares and identity remain */
    CHECK_UINT_EQ(fv__secagg_client_wiped(h.c[0]), 1 | 2 | 4 | 8);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    CHECK_INT_EQ(h_step(&h, 0), 0); /* unmask answered */
    CHECK_UINT_EQ(fv__secagg_client_wiped(h.c[0]), 255);
    h_free(&h);

    h_init(&h, 6, 4, 5, NULL);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    uint8_t *b;
    size_t len;
    h_tamper(h_msg_to(&h, 0), flip_ct, NULL, &b, &len);
    CHECK_INT_EQ(h_deliver(&h, 0, b, len), FV_EAUTH);
    CHECK_UINT_EQ(fv__secagg_client_wiped(h.c[0]), 255); /* abort wipes everything */
    free(b);
    h_free(&h);
}

/* Random damage to real messages of every type: decoders answer 0 or FV_EPROTO and the
 * state machines reject or accept without crashing (ASan/UBSan watch). Server messages go
 * to the decoder; client 0's message of phase p goes to a server waiting for exactly it
 * (a twin harness, deterministic, stepped to phase p without client 0). */
static void mutate(fv_rand_t *r, const uint8_t *src, size_t src_len, uint8_t *b, size_t *len)
{
    uint8_t rnd[8];
    fv_rand_fill(r, rnd, sizeof(rnd));
    *len = src_len;
    memcpy(b, src, src_len);
    switch (rnd[0] % 3) {
    case 0:
        for (int j = 0; j < 1 + rnd[1] % 4; j++)
            b[(rnd[2 + j] * 131u + rnd[6]) % src_len] ^= (uint8_t)(rnd[7] | 1);
        break;
    case 1:
        *len = (rnd[1] | (size_t)rnd[2] << 8) % src_len;
        break;
    default: {
        size_t extra = 1 + rnd[1] % 64;
        memset(b + src_len, rnd[2], extra);
        *len += extra;
    }
    }
}

static void test_random_mutations(void)
{
    fv_rand_t r;
    fv_rand_seeded_u64(&r, 2024);
    harness_t a;
    h_init(&a, 5, 3, 4, NULL);
    for (int ph = 1; ph <= 4; ph++) {
        /* server -> client 0 */
        const fv_secagg_outmsg_t *m = h_msg_to(&a, 0);
        uint8_t *b = malloc(m->len + 64);
        for (int it = 0; it < 300; it++) {
            size_t len;
            mutate(&r, m->data, m->len, b, &len);
            fv_secagg_msg_t dm;
            int rc = fv_secagg_msg_decode(b, len, &dm, NULL);
            CHECK(rc == 0 || rc == FV_EPROTO);
            if (rc == 0)
                fv_secagg_msg_close(&dm);
        }
        free(b);
        CHECK_INT_EQ(h_step(&a, 0), 0);
        /* client 0 -> a server collecting phase ph */
        uint8_t *cm = h_capture;
        size_t cm_len = h_capture_len;
        h_capture = NULL;
        CHECK(cm != NULL);
        harness_t t;
        h_init(&t, 5, 3, 4, NULL);
        for (int p = 1; p < ph; p++)
            CHECK_INT_EQ(h_step(&t, 0), 0);
        CHECK_INT_EQ(h_step_ex(&t, 1u << 0, false), 0);
        free(h_capture);
        h_capture = NULL;
        b = malloc(cm_len + 64);
        for (int it = 0; it < 300; it++) {
            size_t len;
            mutate(&r, cm, cm_len, b, &len);
            (void)fv_secagg_server_handle(t.s, b, len, NULL);
        }
        free(b);
        free(cm);
        h_free(&t);
    }
    h_free(&a);
}

/* Float updates: quantize, aggregate securely, dequantize; the wrap check on n * 2^bits. */
static void test_quantized_round(void)
{
    harness_t h;
    h_init(&h, 6, 4, 5, NULL);
    fv_secagg_params_t p = h.p;
    p.quant_bits = 16;
    p.clip = 2.0f;
    CHECK_OK(fv_secagg_params_check(&p, NULL, NULL), NULL);
    float x[6][DIM], want[DIM] = {0}, got[DIM];
    fv_rand_t r;
    fv_rand_seeded_u64(&r, 8);
    for (uint32_t u = 0; u < 6; u++) {
        for (uint32_t i = 0; i < DIM; i++) {
            x[u][i] = (float)((int)(u * 7 + i * 3) % 9 - 4) * 0.3f; /* some beyond the clip */
            if (u < 5)
                want[i] += x[u][i] > 2.0f ? 2.0f : x[u][i] < -2.0f ? -2.0f : x[u][i];
        }
        CHECK_OK(fv_secagg_quantize(&p, &r, x[u], h.x[u]), NULL);
    }
    CHECK_INT_EQ(h_step(&h, 0), 0);
    CHECK_INT_EQ(h_step(&h, 1u << 5), 0); /* client 5 drops */
    CHECK_INT_EQ(h_step(&h, 0), 0);
    CHECK_INT_EQ(h_step(&h, 0), 0);
    const uint32_t *sum;
    CHECK_OK(fv_secagg_server_result(h.s, &sum), NULL);
    CHECK_OK(fv_secagg_dequantize(&p, sum, fv_secagg_server_set_size(h.s, 3), got), NULL);
    /* stochastic rounding: each value within one step 2c/(2^16-1) of the clipped value */
    for (uint32_t i = 0; i < DIM; i++)
        CHECK_NEAR(got[i], want[i], 5 * 4.0 / 65535 + 1e-4);
    h_free(&h);

    p.n_clients = 6;
    p.quant_bits = 30; /* 6 * (2^30 - 1) >= 2^32 */
    CHECK_INT_EQ(fv_secagg_params_check(&p, NULL, NULL), FV_EOVERFLOW);
    p.quant_bits = 29; /* 6 * (2^29 - 1) < 2^32 */
    CHECK_OK(fv_secagg_params_check(&p, NULL, NULL), NULL);
    p.clip = 0;
    CHECK_INT_EQ(fv_secagg_params_check(&p, NULL, NULL), FV_EINVAL);
}

int main(void)
{
    CHECK_OK(fv_crypto_init(), NULL);
    test_params_and_graph();
    test_wire_all_types();
    test_keylist_attacks();
    test_envelope_rejections();
    test_forward_attacks();
    test_both_shares_and_unmask();
    test_u3_checks();
    test_consistency_attacks();
    test_server_consist_shape();
    test_server_unmask_checks();
    test_server_detects_wrong_share();
    test_every_bit_flip();
    test_wiping();
    test_quantized_round();
    test_random_mutations();
    test_counts();
    test_deterministic();
    test_parallel_identical();
    test_dropouts_every_phase();
    test_below_threshold_aborts();
    test_secagg_plus();
    puts("test_secagg: ok");
    return 0;
}
