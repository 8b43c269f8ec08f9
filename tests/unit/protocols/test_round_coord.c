/* test_round_coord.c - the coordinator's round machine (fv_cround_*), driven in one process.
 *
 * A harness plays the cohort: SecAgg clients (fv_secagg_client_*) or plain vectors, with
 * a test-only round kind defined here ("tiny": W words, plain u32 elements each below
 * 1000), a clock the test moves, and a queue of what members send. Every action the
 * machine emits is recorded, so a test asserts the sequence: DONE last, the sum, who
 * contributed, each violation's DROP code and reason, deadlines, ROUND_END only to
 * members still connected.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_round.h"
#include "fv_secagg.h"
#include "fv_test.h"

#define W 6
#define MAXN 8
#define TRAIN_MS 1000
#define PHASE_MS 500

/* ---- the test kind ------------------------------------------------------------------- */

static int tiny_shape(const fv_round_sizes_t *z, fv_round_shape_t *ret, fv_diag_t *d)
{
    (void)z, (void)d;
    memset(ret, 0, sizeof *ret);
    ret->words = W;
    ret->plain_n = W;
    ret->plain_dtype = FV_VEC_U32;
    return 0;
}

static int tiny_check(const fv_round_sizes_t *z, const fv_round_shape_t *s, const void *vec,
                      fv_diag_t *d)
{
    (void)z;
    const uint32_t *v = vec;
    for (uint64_t i = 0; i < s->plain_n; i++)
        if (v[i] >= 1000)
            return fv_diag_set(d, FV_EPEER, "element %u is %u", (unsigned)i, v[i]);
    return 0;
}

static const fv_round_kind_t tiny = {
    .id = 200, .name = "tiny", .shape = tiny_shape, .plain_check = tiny_check};

/* ---- the harness --------------------------------------------------------------------- */

typedef struct rec {
    fv_round_act_type_t type;
    uint32_t member;
    fv_msg_type_t msg;
    int err, phase;
    uint32_t count;
    char event[32];
    char why[256];
} rec_t;

typedef struct pending {
    uint32_t member;
    bool upload;
    uint8_t *data;
    size_t len;
} pending_t;

typedef struct h {
    fv_cround_t *r;
    uint32_t n, t, k;
    bool secagg;
    uint64_t now;
    uint8_t job[32];
    uint8_t pk[MAXN][32], sk[MAXN][64];
    fv_rand_t rng[MAXN];
    fv_secagg_client_t *cl[MAXN];
    uint8_t certs[MAXN * 5]; /* ROUND_START "certs" of a SecAgg round (fake 3-byte DER) */
    size_t certs_len;
    uint32_t x[MAXN][W];
    bool silent[MAXN]; /* sends nothing more (a straggler, or before being lost) */
    int lose_at[MAXN]; /* lost when the machine opens this phase (-1: never) */
    bool lost[MAXN];
    bool granted[MAXN];
    uint8_t *masked[MAXN]; /* held until UPLOAD_GO */
    size_t masked_len[MAXN];
    bool round_end[MAXN];
    rec_t recs[512];
    size_t n_recs;
    pending_t q[256];
    size_t q_head, q_n;
} h_t;

/* h_init's machines count phase 0 per member from fv_cround_delivered (the daemon's way). */
static bool g_await_delivery;

static void enqueue(h_t *h, uint32_t member, bool upload, const uint8_t *data, size_t len)
{
    CHECK(h->q_n < 256);
    pending_t *p = &h->q[(h->q_head + h->q_n++) % 256];
    p->member = member;
    p->upload = upload;
    p->data = malloc(len);
    CHECK(p->data != NULL);
    memcpy(p->data, data, len);
    p->len = len;
}

static void client_out(h_t *h, uint32_t u, fv_secagg_outbox_t *ob)
{
    for (size_t i = 0; i < ob->n; i++) {
        const fv_secagg_outmsg_t *om = &ob->msgs[i];
        fv_secagg_msg_t sm;
        fv_diag_t d = {""};
        CHECK_OK(fv_secagg_msg_decode(om->data, om->len, &sm, &d), &d);
        bool masked = sm.type == FV_SECAGG_MSG_MASKED;
        fv_secagg_msg_close(&sm);
        if (!masked) {
            enqueue(h, u, false, om->data, om->len);
            continue;
        }
        h->masked[u] = malloc(om->len);
        CHECK(h->masked[u] != NULL);
        memcpy(h->masked[u], om->data, om->len);
        h->masked_len[u] = om->len;
        if (h->granted[u])
            enqueue(h, u, true, h->masked[u], h->masked_len[u]);
    }
    fv_secagg_outbox_clear(ob);
}

static void lose(h_t *h, uint32_t u);

/* One action to a member: what its client does with it. */
static void deliver(h_t *h, const fv_round_act_t *a)
{
    uint32_t u = a->member;
    CHECK(u < h->n);
    if (a->msg.type == FV_MSG_ROUND_END) {
        CHECK(!h->lost[u]);
        h->round_end[u] = true;
        return;
    }
    if (h->lost[u] || h->silent[u])
        return;
    fv_diag_t d = {""};
    fv_secagg_outbox_t ob;
    fv_secagg_outbox_init(&ob);
    switch (a->msg.type) {
    case FV_MSG_ROUND_START:
        CHECK_UINT_EQ(a->msg.u.round_start.index, u);
        CHECK_UINT_EQ(a->msg.u.round_start.n, h->n);
        CHECK_UINT_EQ(a->msg.u.round_start.kind, 200);
        CHECK(memcmp(a->msg.u.round_start.pks + 32 * u, h->pk[u], 32) == 0);
        /* the cohort's certificates, copied by fv_cround_new, in every ROUND_START */
        CHECK_UINT_EQ(a->msg.u.round_start.certs_len, h->certs_len);
        if (h->certs_len > 0) {
            CHECK(a->msg.u.round_start.certs != h->certs);
            CHECK(memcmp(a->msg.u.round_start.certs, h->certs, h->certs_len) == 0);
        }
        if (h->lose_at[u] == 0) {
            lose(h, u);
            break;
        }
        if (h->secagg) {
            CHECK_OK(fv_secagg_client_set_input(h->cl[u], h->x[u]), NULL);
            CHECK_OK(fv_secagg_client_start(h->cl[u], &ob, &d), &d);
        }
        break;
    case FV_MSG_SECAGG: {
        CHECK(memcmp(a->msg.u.secagg.job, h->job, 32) == 0);
        fv_secagg_msg_t sm;
        CHECK_OK(fv_secagg_msg_decode(a->msg.u.secagg.data, a->msg.u.secagg.len, &sm, &d), &d);
        int ph = sm.phase;
        fv_secagg_msg_close(&sm);
        if (h->lose_at[u] == ph) {
            lose(h, u);
            break;
        }
        CHECK_OK(
            fv_secagg_client_handle(h->cl[u], a->msg.u.secagg.data, a->msg.u.secagg.len, &ob, &d),
            &d);
        break;
    }
    case FV_MSG_UPLOAD_GO:
        h->granted[u] = true;
        if (h->secagg && h->masked[u] != NULL)
            enqueue(h, u, true, h->masked[u], h->masked_len[u]);
        else if (!h->secagg)
            enqueue(h, u, true, (const uint8_t *)h->x[u], sizeof h->x[u]);
        break;
    default:
        break;
    }
    client_out(h, u, &ob);
    fv_secagg_outbox_close(&ob);
}

/* Records the machine's actions, then carries the SENDs to the clients. */
static void take(h_t *h, fv_round_out_t *out)
{
    for (size_t i = 0; i < out->n; i++) {
        const fv_round_act_t *a = &out->acts[i];
        CHECK(h->n_recs < 512);
        rec_t *rc = &h->recs[h->n_recs++];
        memset(rc, 0, sizeof *rc);
        rc->type = a->type;
        rc->member = a->member;
        rc->msg = a->type == FV_ROUND_ACT_SEND ? a->msg.type : 0;
        rc->err = a->err;
        rc->phase = a->phase;
        rc->count = a->count;
        snprintf(rc->event, sizeof rc->event, "%s", a->event != NULL ? a->event : "");
        snprintf(rc->why, sizeof rc->why, "%s", a->why);
        if (a->type == FV_ROUND_ACT_DONE)
            CHECK_UINT_EQ(i, out->n - 1); /* DONE is always last */
    }
    for (size_t i = 0; i < out->n; i++)
        if (out->acts[i].type == FV_ROUND_ACT_SEND)
            deliver(h, &out->acts[i]);
    fv_round_out_clear(out);
}

static void lose(h_t *h, uint32_t u)
{
    if (h->lost[u])
        return;
    h->lost[u] = true;
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_cround_lost(h->r, u, h->now, &out);
    take(h, &out);
    fv_round_out_close(&out);
}

/* Upload a vector as the transport would: VEC_BEGIN, the words, VEC_END. */
static void upload(h_t *h, uint32_t u, const char *name, fv_vec_dtype_t dt, const void *words,
                   uint64_t n, fv_round_out_t *out)
{
    fv_msg_t b;
    memset(&b, 0, sizeof b);
    b.type = FV_MSG_VEC_BEGIN;
    b.u.vec_begin.id = 1;
    b.u.vec_begin.name.ptr = name;
    b.u.vec_begin.name.len = strlen(name);
    b.u.vec_begin.dtype = dt;
    b.u.vec_begin.n_elems = n;
    void *buf = fv_cround_vec_begin(h->r, u, &b, out);
    if (buf == NULL)
        return;
    memcpy(buf, words, n * 4); /* a little-endian host: the words are the bytes */
    fv_cround_vec_end(h->r, u, buf, n, h->now, out);
}

/* Delivers what members sent until nothing is left. */
static void pump(h_t *h)
{
    fv_round_out_t out;
    fv_round_out_init(&out);
    while (h->q_n > 0) {
        pending_t p = h->q[h->q_head];
        h->q_head = (h->q_head + 1) % 256;
        h->q_n--;
        if (!h->lost[p.member] && !h->silent[p.member] && !fv_cround_done(h->r)) {
            if (p.upload) {
                upload(h, p.member, h->secagg ? "masked" : "update", FV_VEC_U32, p.data, p.len / 4,
                       &out);
            } else {
                fv_msg_t m;
                memset(&m, 0, sizeof m);
                m.type = FV_MSG_SECAGG;
                memcpy(m.u.secagg.job, h->job, 32);
                m.u.secagg.round = 1;
                m.u.secagg.data = p.data;
                m.u.secagg.len = p.len;
                fv_cround_on_msg(h->r, p.member, &m, h->now, &out);
            }
            take(h, &out);
        }
        free(p.data);
    }
    fv_round_out_close(&out);
}

static void h_init(h_t *h, uint32_t n, bool secagg, uint32_t max_uploads)
{
    memset(h, 0, sizeof *h);
    h->n = n;
    h->secagg = secagg;
    h->t = secagg ? n / 2 + 1 : n;
    h->k = n - 1;
    memset(h->job, 0x3c, 32);
    uint8_t pks[MAXN * 32];
    uint8_t gseed[32];
    memset(gseed, 0x11, 32);
    for (uint32_t u = 0; u < n; u++) {
        fv_rand_seeded_u64(&h->rng[u], 100 + u);
        CHECK_OK(fv_sign_keypair(&h->rng[u], h->pk[u], h->sk[u]), NULL);
        memcpy(pks + 32 * u, h->pk[u], 32);
        for (uint32_t i = 0; i < W; i++)
            h->x[u][i] = 10 * u + i;
        h->lose_at[u] = -1;
    }
    fv_cround_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = &tiny;
    memcpy(cfg.job, h->job, 32);
    cfg.job_id64 = 77;
    cfg.round = 1;
    cfg.n = n;
    cfg.pks = pks;
    h->certs_len = 0;
    if (secagg) {
        for (uint32_t u = 0; u < n; u++) {
            uint8_t e[5] = {0, 3, 0x30, 0x01, (uint8_t)u};
            memcpy(h->certs + h->certs_len, e, sizeof e);
            h->certs_len += sizeof e;
        }
        cfg.certs = h->certs;
        cfg.certs_len = h->certs_len;
    }
    cfg.secagg = secagg;
    cfg.t = h->t;
    cfg.k = h->k;
    memcpy(cfg.gseed, gseed, 32);
    cfg.max_uploads = max_uploads;
    cfg.train_ms = TRAIN_MS;
    cfg.phase_ms = PHASE_MS;
    cfg.await_delivery = g_await_delivery;
    fv_diag_t d = {""};
    CHECK_OK(fv_cround_new(&cfg, &h->r, &d), &d);
    if (secagg) {
        fv_secagg_params_t p;
        memset(&p, 0, sizeof p);
        p.job_id = 77;
        p.round = 1;
        p.n_clients = n;
        p.threshold = h->t;
        p.n_neighbors = h->k;
        p.dim = W;
        p.prg = FV_PRG_DEFAULT;
        memcpy(p.graph_seed, gseed, 32);
        p.identity_pks = pks;
        for (uint32_t u = 0; u < n; u++)
            CHECK_OK(fv_secagg_client_new(&p, NULL, u, h->sk[u], &h->rng[u], &h->cl[u], &d), &d);
    }
}

static void h_start(h_t *h)
{
    fv_round_out_t out;
    fv_round_out_init(&out);
    CHECK_OK(fv_cround_start(h->r, h->now, &out), NULL);
    take(h, &out);
    fv_round_out_close(&out);
}

static void h_tick(h_t *h, uint64_t now)
{
    h->now = now;
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_cround_tick(h->r, h->now, &out);
    take(h, &out);
    fv_round_out_close(&out);
    pump(h);
}

static void h_end(h_t *h)
{
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_cround_end(h->r, 0, "", &out);
    take(h, &out);
    fv_round_out_close(&out);
}

static void h_free(h_t *h)
{
    for (uint32_t u = 0; u < h->n; u++) {
        fv_secagg_client_free(h->cl[u]);
        free(h->masked[u]);
    }
    fv_cround_free(h->r);
    while (h->q_n > 0) {
        free(h->q[h->q_head].data);
        h->q_head = (h->q_head + 1) % 256;
        h->q_n--;
    }
}

static const rec_t *find(const h_t *h, fv_round_act_type_t type, const char *event)
{
    for (size_t i = 0; i < h->n_recs; i++)
        if (h->recs[i].type == type && (event == NULL || strcmp(h->recs[i].event, event) == 0))
            return &h->recs[i];
    return NULL;
}

static size_t count(const h_t *h, fv_round_act_type_t type, fv_msg_type_t msg)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_recs; i++)
        n += h->recs[i].type == type && (msg == 0 || h->recs[i].msg == msg);
    return n;
}

/* The round is done with status 0 and its sum is the inputs of `in` (a bit per member). */
static void check_sum(h_t *h, uint32_t in)
{
    const rec_t *done = find(h, FV_ROUND_ACT_DONE, NULL);
    CHECK(done != NULL);
    if (done->err != 0)
        FV__FAIL("DONE %s: %s", fv_err_name(done->err), done->why);
    CHECK(&h->recs[h->n_recs - 1] == done || count(h, FV_ROUND_ACT_SEND, FV_MSG_ROUND_END) > 0);
    fv_round_sum_t s;
    CHECK_OK(fv_cround_sum(h->r, &s), NULL);
    CHECK(s.words != NULL);
    uint32_t want[W] = {0}, n = 0;
    for (uint32_t u = 0; u < h->n; u++) {
        CHECK(fv_cround_contributed(h->r, u) == ((in >> u) & 1));
        if (!((in >> u) & 1))
            continue;
        n++;
        for (uint32_t i = 0; i < W; i++)
            want[i] += h->x[u][i];
    }
    CHECK_UINT_EQ(s.n_summands, n);
    for (uint32_t i = 0; i < W; i++)
        CHECK_UINT_EQ(s.words[i], want[i]);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_secagg_good_round(void)
{
    h_t h;
    h_init(&h, 5, true, 2);
    h_start(&h);
    CHECK_UINT_EQ(count(&h, FV_ROUND_ACT_SEND, FV_MSG_ROUND_START), 5);
    CHECK_INT_EQ(fv_cround_phase(h.r), 0);
    pump(&h);
    CHECK(fv_cround_done(h.r));
    CHECK_INT_EQ(fv_cround_phase(h.r), 5);
    check_sum(&h, 0x1f);
    for (int p = 0; p < 5; p++)
        CHECK_UINT_EQ(fv_cround_phase_count(h.r, p), 5);
    CHECK_UINT_EQ(count(&h, FV_ROUND_ACT_PHASE, 0), 5);
    CHECK_UINT_EQ(count(&h, FV_ROUND_ACT_SEND, FV_MSG_UPLOAD_GO), 5);
    CHECK_UINT_EQ(count(&h, FV_ROUND_ACT_DROP, 0), 0);
    CHECK(find(&h, FV_ROUND_ACT_LOG, "deadline") == NULL);
    CHECK_UINT_EQ(count(&h, FV_ROUND_ACT_LOG, 0), 5 + 5); /* phase_closed, upload_received */
    h_end(&h);
    for (uint32_t u = 0; u < 5; u++)
        CHECK(h.round_end[u]);
    h_free(&h);
}

/* A member lost as the machine opens each phase: the round goes on with the others; once
 * its masked input is in (phases 3, 4), it is in the sum. */
static void test_secagg_dropout_each_phase(void)
{
    for (int ph = 0; ph <= 4; ph++) {
        h_t h;
        h_init(&h, 5, true, 2);
        h.lose_at[4] = ph;
        h_start(&h);
        pump(&h);
        CHECK(fv_cround_done(h.r));
        check_sum(&h, ph >= 3 ? 0x1f : 0x0f);
        CHECK(find(&h, FV_ROUND_ACT_LOG, "deadline") == NULL);
        h_end(&h);
        CHECK(!h.round_end[4] && h.round_end[0]);
        h_free(&h);
    }
}

/* SecAgg's unmasking through a parallel for (fv_cround_set_par_for; the daemon gives it
 * threads in its close): the dropped member's masks are removed on 3 threads, and the sum
 * is exactly the others'. The par_for counts its calls, so the test sees it was used. */
typedef struct {
    void (*fn)(void *, size_t);
    void *arg;
    size_t n;
    atomic_size_t next;
} tpf_t;
static atomic_int tpf_calls;
static void *tpf_main(void *a)
{
    tpf_t *p = a;
    size_t i;
    while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
        p->fn(p->arg, i);
    return NULL;
}
static void tpf(void *ctx, size_t n, void (*fn)(void *, size_t), void *arg)
{
    (void)ctx;
    tpf_t p = {.fn = fn, .arg = arg, .n = n};
    atomic_init(&p.next, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK_INT_EQ(pthread_create(&th[i], NULL, tpf_main, &p), 0);
    tpf_main(&p);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    atomic_fetch_add(&tpf_calls, 1);
}

static void test_secagg_pooled_close(void)
{
    h_t h;
    h_init(&h, 5, true, 2);
    fv_cround_set_par_for(h.r, tpf, NULL);
    h.lose_at[4] = 2; /* shared its keys, never sent its masked input */
    atomic_store(&tpf_calls, 0);
    h_start(&h);
    pump(&h);
    CHECK(fv_cround_done(h.r));
    check_sum(&h, 0x0f);
    CHECK(atomic_load(&tpf_calls) >= 1);
    h_end(&h);
    h_free(&h);
}

/* A silent member: nothing happens before the deadline; at it, the phase closes without
 * it, and it still gets ROUND_END (its connection is there). Phase 0 (advertise, sent on
 * ROUND_START before any training) runs on the SecAgg phase deadline, not the training
 * one: the silent member holds the round PHASE_MS, and it is late (silent), not lost. */
static void test_secagg_straggler(void)
{
    h_t h;
    h_init(&h, 5, true, 2);
    h.silent[2] = true;
    h_start(&h);
    pump(&h);
    CHECK(!fv_cround_done(h.r));
    CHECK_UINT_EQ(fv_cround_answered(h.r), 4);
    h_tick(&h, PHASE_MS - 1);
    CHECK(find(&h, FV_ROUND_ACT_LOG, "deadline") == NULL);
    CHECK(fv_cround_alive(h.r, 2));
    h_tick(&h, PHASE_MS);
    const rec_t *dl = find(&h, FV_ROUND_ACT_LOG, "deadline");
    CHECK(dl != NULL);
    CHECK_INT_EQ(dl->phase, 0);
    CHECK_UINT_EQ(dl->count, 1);
    CHECK(!fv_cround_alive(h.r, 2) || fv_cround_done(h.r));
    CHECK(fv_cround_done(h.r)); /* at PHASE_MS, well before TRAIN_MS */
    check_sum(&h, 0x1b);
    CHECK_UINT_EQ(fv_cround_phase_count(h.r, 0), 4);
    CHECK(fv_cround_late(h.r, 2));
    for (uint32_t u = 0; u < 5; u++)
        CHECK(u == 2 || !fv_cround_late(h.r, u));
    h_end(&h);
    CHECK(h.round_end[2]);
    h_free(&h);
}

/* cfg.await_delivery: phase 0 counts per member from its ROUND_START's delivery. Member 4's
 * ROUND_START is still behind its model transfer when the silent member 2 is late (at
 * PHASE_MS): 4 is not, and the phase waits for it; delivered later, it answers within its
 * own PHASE_MS and is in the sum. A member never delivered is bounded by TRAIN_MS. */
static void test_secagg_phase0_delivery(void)
{
    g_await_delivery = true;
    h_t h;
    h_init(&h, 5, true, 2);
    h.silent[2] = true;
    h.silent[4] = true; /* (its ROUND_START has not reached it: it hears nothing yet) */
    h_start(&h);
    for (uint32_t u = 0; u < 4; u++)
        fv_cround_delivered(h.r, u, 0);
    pump(&h);
    CHECK_UINT_EQ(fv_cround_answered(h.r), 3);
    h_tick(&h, PHASE_MS);
    const rec_t *dl = find(&h, FV_ROUND_ACT_LOG, "deadline");
    CHECK(dl != NULL);
    CHECK_UINT_EQ(dl->count, 1);
    CHECK(fv_cround_late(h.r, 2) && !fv_cround_alive(h.r, 2));
    CHECK(fv_cround_alive(h.r, 4) && !fv_cround_late(h.r, 4));
    CHECK_INT_EQ(fv_cround_phase(h.r), 0); /* still collecting: 4 has not heard */
    h_tick(&h, PHASE_MS + 50);
    CHECK_INT_EQ(fv_cround_phase(h.r), 0);
    /* the model is through: ROUND_START reaches 4 at PHASE_MS + 100; its deadline is
     * then PHASE_MS later, capped at TRAIN_MS from the start */
    fv_cround_delivered(h.r, 4, PHASE_MS + 100);
    h_tick(&h, PHASE_MS + 100 + PHASE_MS / 2);
    CHECK(fv_cround_alive(h.r, 4));
    h.silent[4] = false;
    {
        fv_diag_t d = {""};
        fv_secagg_outbox_t ob;
        fv_secagg_outbox_init(&ob);
        CHECK_OK(fv_secagg_client_set_input(h.cl[4], h.x[4]), NULL);
        CHECK_OK(fv_secagg_client_start(h.cl[4], &ob, &d), &d);
        client_out(&h, 4, &ob);
        fv_secagg_outbox_close(&ob);
    }
    pump(&h);
    CHECK(fv_cround_done(h.r));
    check_sum(&h, 0x1b);
    CHECK(!fv_cround_late(h.r, 4));
    h_free(&h);

    /* Never delivered and silent: late at TRAIN_MS, not before. */
    h_init(&h, 5, true, 2);
    h.silent[4] = true;
    h_start(&h);
    for (uint32_t u = 0; u < 4; u++)
        fv_cround_delivered(h.r, u, 0);
    pump(&h);
    h_tick(&h, TRAIN_MS - 1);
    CHECK(fv_cround_alive(h.r, 4));
    CHECK_INT_EQ(fv_cround_phase(h.r), 0);
    h_tick(&h, TRAIN_MS);
    CHECK(fv_cround_late(h.r, 4));
    CHECK(fv_cround_done(h.r));
    check_sum(&h, 0x0f);
    h_free(&h);
    g_await_delivery = false;
}

/* Too many dropouts: the phase closes below t and the round fails. */
static void test_secagg_below_threshold(void)
{
    h_t h;
    h_init(&h, 5, true, 2); /* t = 3 */
    h.lose_at[3] = h.lose_at[4] = 1;
    h.silent[2] = true;
    h_start(&h);
    pump(&h);
    h_tick(&h, TRAIN_MS + PHASE_MS);
    const rec_t *done = find(&h, FV_ROUND_ACT_DONE, NULL);
    CHECK(done != NULL);
    CHECK_INT_EQ(done->err, FV_ETHRESHOLD);
    fv_round_sum_t s;
    CHECK(fv_cround_sum(h.r, &s) != 0);
    h_free(&h);
}

static void test_secagg_violations(void)
{
    /* a SECAGG for another job, naming another sender, or carrying the masked input */
    for (int v = 0; v < 3; v++) {
        h_t h;
        h_init(&h, 5, true, 2);
        h_start(&h);
        /* member 1's ADVERTISE is in the queue: deliver the others first */
        fv_round_out_t out;
        fv_round_out_init(&out);
        pending_t adv = h.q[h.q_head + 1];
        CHECK_UINT_EQ(adv.member, 1);
        fv_msg_t m;
        memset(&m, 0, sizeof m);
        m.type = FV_MSG_SECAGG;
        memcpy(m.u.secagg.job, h.job, 32);
        m.u.secagg.round = 1;
        m.u.secagg.data = adv.data;
        m.u.secagg.len = adv.len;
        uint8_t *forged = NULL;
        const char *want = NULL;
        if (v == 0) {
            m.u.secagg.job[0] ^= 1;
            want = "secagg message for another job";
        } else if (v == 1) {
            m.u.secagg.data = h.q[h.q_head].data; /* member 0's */
            m.u.secagg.len = h.q[h.q_head].len;
            want = "secagg message claims sender 0, you are 1";
        } else {
            fv_secagg_msg_t sm;
            memset(&sm, 0, sizeof sm);
            sm.type = FV_SECAGG_MSG_MASKED;
            sm.phase = 2;
            sm.job_id = 77;
            sm.round = 1;
            sm.from = 1;
            sm.to = FV_SECAGG_SERVER;
            uint8_t words[4 * W] = {0};
            sm.n_items = W;
            sm.words_le = words;
            size_t len = 0;
            CHECK_OK(fv_secagg_msg_encode(&sm, &forged, &len), NULL);
            m.u.secagg.data = forged;
            m.u.secagg.len = len;
            want = "masked input must come as a vector upload";
        }
        fv_cround_on_msg(h.r, 1, &m, h.now, &out);
        take(&h, &out);
        free(forged);
        const rec_t *dr = find(&h, FV_ROUND_ACT_DROP, NULL);
        CHECK(dr != NULL);
        CHECK_UINT_EQ(dr->member, 1);
        CHECK_INT_EQ(dr->err, FV_EPROTO);
        CHECK_STR_EQ(dr->why, want);
        CHECK(!fv_cround_alive(h.r, 1));
        lose(&h, 1); /* the caller closed its connection */
        pump(&h);
        check_sum(&h, 0x1d);
        fv_round_out_close(&out);
        h_free(&h);
    }
}

static void test_plain_good_and_admission(void)
{
    h_t h;
    h_init(&h, 3, false, 2);
    h_start(&h);
    CHECK_UINT_EQ(count(&h, FV_ROUND_ACT_SEND, FV_MSG_UPLOAD_GO), 2);
    CHECK_UINT_EQ(fv_cround_uploads_in_flight(h.r), 2);
    CHECK_INT_EQ(fv_cround_phase(h.r), 2);
    pump(&h);
    CHECK_UINT_EQ(count(&h, FV_ROUND_ACT_SEND, FV_MSG_UPLOAD_GO), 3);
    CHECK(fv_cround_done(h.r));
    check_sum(&h, 0x7);
    const rec_t *up = find(&h, FV_ROUND_ACT_LOG, "upload_received");
    CHECK(up != NULL);
    CHECK_UINT_EQ(up->count, 4 * W);
    h_free(&h);
}

/* Uploads of the wrong name, type or length are refused before any buffer; a vector that
 * fails the kind's check is refused and left out of the sum. */
static void test_plain_violations(void)
{
    for (int v = 0; v < 4; v++) {
        h_t h;
        h_init(&h, 3, false, 3);
        h_start(&h);
        h.q_n = 0; /* the harness's own uploads: replaced by the test's */
        for (size_t i = 0; i < 3; i++)
            free(h.q[i].data);
        h.q_head = 0;
        fv_round_out_t out;
        fv_round_out_init(&out);
        uint32_t bad[W + 1];
        memcpy(bad, h.x[1], sizeof h.x[1]);
        bad[W] = 0;
        if (v == 0)
            upload(&h, 1, "updates", FV_VEC_U32, bad, W, &out);
        else if (v == 1)
            upload(&h, 1, "update", FV_VEC_F32, bad, W, &out);
        else if (v == 2)
            upload(&h, 1, "update", FV_VEC_U32, bad, W + 1, &out);
        else {
            bad[3] = 5000;
            upload(&h, 1, "update", FV_VEC_U32, bad, W, &out);
        }
        take(&h, &out);
        const rec_t *dr = find(&h, FV_ROUND_ACT_DROP, NULL);
        CHECK(dr != NULL);
        CHECK_UINT_EQ(dr->member, 1);
        if (v < 3) {
            CHECK_INT_EQ(dr->err, FV_EPOLICY);
            CHECK_STR_EQ(dr->event, "upload_refused");
            CHECK_CONTAINS(dr->why, "round 1 (tiny) expects vector 'update' of 6 u32 elements");
            CHECK_CONTAINS(dr->why, v == 0   ? "got 'updates' of 6 u32"
                                    : v == 1 ? "got 'update' of 6 f32"
                                             : "got 'update' of 7 u32");
        } else {
            const rec_t *lg = find(&h, FV_ROUND_ACT_LOG, "update_rejected");
            CHECK(lg != NULL);
            CHECK_INT_EQ(lg->err, FV_EPEER);
            CHECK_STR_EQ(lg->why, "element 3 is 5000");
            CHECK_INT_EQ(dr->err, FV_EPROTO);
            CHECK_STR_EQ(dr->why, "round 1: upload refused: element 3 is 5000");
        }
        lose(&h, 1);
        upload(&h, 0, "update", FV_VEC_U32, h.x[0], W, &out);
        upload(&h, 2, "update", FV_VEC_U32, h.x[2], W, &out);
        take(&h, &out);
        CHECK(fv_cround_done(h.r));
        check_sum(&h, 0x5);
        fv_round_out_close(&out);
        h_free(&h);
    }
}

/* A plain round's deadline ends it with what arrived; with nothing, it fails. */
static void test_plain_deadline(void)
{
    h_t h;
    h_init(&h, 3, false, 3);
    h.silent[0] = true;
    h_start(&h);
    pump(&h);
    CHECK(!fv_cround_done(h.r));
    h_tick(&h, TRAIN_MS);
    CHECK(fv_cround_done(h.r));
    check_sum(&h, 0x6);
    h_free(&h);

    h_init(&h, 3, false, 3);
    for (uint32_t u = 0; u < 3; u++)
        h.silent[u] = true;
    h_start(&h);
    h_tick(&h, TRAIN_MS);
    const rec_t *done = find(&h, FV_ROUND_ACT_DONE, NULL);
    CHECK(done != NULL);
    CHECK_INT_EQ(done->err, FV_ETHRESHOLD);
    CHECK_STR_EQ(done->why, "no agent contributed");
    h_free(&h);
}

/* A straggler's buffer outlives its deadline (the transport may still write into it) and
 * the caller can take it when the round ends. */
static void test_straggler_buffer(void)
{
    h_t h;
    h_init(&h, 3, false, 3);
    h_start(&h);
    h.q_n = 0;
    for (size_t i = 0; i < 3; i++)
        free(h.q[i].data);
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_msg_t b;
    memset(&b, 0, sizeof b);
    b.type = FV_MSG_VEC_BEGIN;
    b.u.vec_begin.id = 1;
    b.u.vec_begin.name.ptr = "update";
    b.u.vec_begin.name.len = 6;
    b.u.vec_begin.dtype = FV_VEC_U32;
    b.u.vec_begin.n_elems = W;
    void *buf = fv_cround_vec_begin(h.r, 0, &b, &out);
    CHECK(buf != NULL);
    upload(&h, 1, "update", FV_VEC_U32, h.x[1], W, &out);
    take(&h, &out);
    h_tick(&h, TRAIN_MS);
    CHECK(fv_cround_done(h.r));
    check_sum(&h, 0x2);
    memset(buf, 0, 4 * W); /* still valid (ASan would say otherwise) */
    void *taken = fv_cround_vec_take(h.r, 0);
    CHECK(taken == buf);
    free(taken);
    fv_round_out_close(&out);
    h_free(&h);
}

int main(void)
{
    test_secagg_good_round();
    test_secagg_dropout_each_phase();
    test_secagg_pooled_close();
    test_secagg_straggler();
    test_secagg_phase0_delivery();
    test_secagg_below_threshold();
    test_secagg_violations();
    test_plain_good_and_admission();
    test_plain_violations();
    test_plain_deadline();
    test_straggler_buffer();
    printf("test_round_coord: ok\n");
    return 0;
}
