/* test_round_agent.c - an agent's round machine (fv_around_*, protocols/round_agent.c)
 * driven by hand: ROUND_START's checks (every violation, with the code and the text the
 * integration tests grep), a whole SecAgg round of four machines against a real
 * fv_secagg_server (SHARES_FWD before and after the compute; the server's sum is the sum
 * of the inputs), plain stats and training rounds, the policy refusals, the SecAgg client
 * aborting, garbage SecAgg bytes, the duplicate messages, a failed compute, ROUND_END's
 * checks, and the seed and rounding key derived exactly as the agent always did.
 *
 * The kinds are the default table; nothing is computed: the test plays the caller and
 * fills the work item's vector itself (the kinds' compute is tested through the daemons).
 * The stats layout is a stand-in with only its dim set (the stats kind's shape reads no
 * more).
 */
#include "fv_round.h"
#include "fv_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define NA 4         /* cohort */
#define STATS_DIM 10 /* words of the stand-in stats vector */
#define N_PARAMS 5   /* logreg over 4 features */
#define N_TR 100     /* our training rows */

/* age numeric, city categorical (3), id ignored, y target: 4 features, binary. */
#define SCHEMA_B                                                                                   \
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\",\"classes\":[\"no\",\"yes\"],"   \
    "\"unknown_category\":\"error\",\"columns\":[{\"name\":\"age\",\"type\":\"numeric\"},"         \
    "{\"name\":\"city\",\"type\":\"categorical\",\"categories\":[\"a\",\"b\",\"c\"]},"             \
    "{\"name\":\"id\",\"type\":\"ignored\"},{\"name\":\"y\",\"type\":\"target\"}]}"

static fv_job_t *job_sec, *job_plain;
static uint8_t dig_sec[32], dig_plain[32];
static fv_fed_stats_layout_t sl = {.schema = NULL, .n_classes = 2, .dim = STATS_DIM};
static uint8_t pks[NA * 32], sks[NA * 64];
static const uint8_t MODEL[32] = {1, 2, 3}, STUDENT[32] = {4, 5, 6};

static fv_job_t *job_parse(const char *json, uint8_t digest[32])
{
    fv_job_t *j = NULL;
    fv_diag_t d = {""};
    CHECK_OK(fv_job_from_json("job.json", json, strlen(json), &j, &d), &d);
    CHECK_OK(fv_job_digest(j, digest), NULL);
    return j;
}

static void setup(void)
{
    job_sec = job_parse("{\"name\":\"s\",\"schema\":" SCHEMA_B ",\"model\":\"logreg\",\"rounds\":"
                        "2,\"distill\":{\"student\":\"logreg\",\"rounds\":1}}",
                        dig_sec);
    job_plain = job_parse("{\"name\":\"p\",\"schema\":" SCHEMA_B ",\"model\":\"logreg\",\"rounds\":"
                          "2,\"secagg\":\"off\"}",
                          dig_plain);
    CHECK(job_sec->secagg.on);
    CHECK(!job_plain->secagg.on);
    fv_rand_t r;
    fv_rand_seeded_u64(&r, 7);
    for (int u = 0; u < NA; u++)
        CHECK_OK(fv_sign_keypair(&r, pks + 32 * u, sks + 64 * u), NULL);
}

/* What agent u holds: everything, by default. */
static void held(fv_around_held_t *h, const fv_job_t *job, const uint8_t *digest, uint32_t u)
{
    static const char *names[NA] = {"bank-a", "bank-b", "bank-c", "bank-d"};
    memset(h, 0, sizeof *h);
    h->kinds = fv_round_kinds_default();
    h->job = job;
    memcpy(h->digest, digest, 32);
    h->name = names[u];
    h->pk = pks + 32 * u;
    h->sk = sks + 64 * u;
    h->sizes =
        (fv_round_sizes_t){.job = job, .sl = &sl, .n_params = N_PARAMS, .s_n_params = N_PARAMS};
    h->has_global = h->has_student = h->has_teacher = h->has_features = true;
    memcpy(h->global_hash, MODEL, 32);
    memcpy(h->student_hash, STUDENT, 32);
    h->n_tr = N_TR;
}

/* ROUND_START as the coordinator would send it to agent u. */
static fv_msg_t rs_msg(const uint8_t *digest, uint64_t round, uint32_t kind, uint32_t u)
{
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_ROUND_START;
    memcpy(m.u.round_start.job, digest, 32);
    m.u.round_start.round = round;
    m.u.round_start.kind = kind;
    m.u.round_start.index = u;
    m.u.round_start.n = NA;
    m.u.round_start.t = 3; /* fv_job_secagg_for(4): k = 3, t = floor(2 * 4 / 3) + 1 */
    m.u.round_start.k = 3;
    m.u.round_start.pks = pks;
    m.u.round_start.pks_len = sizeof pks;
    m.u.round_start.has_model = kind != FV_FED_KIND_STATS;
    memcpy(m.u.round_start.model, kind == FV_FED_KIND_DISTILL ? STUDENT : MODEL, 32);
    m.u.round_start.n_ref = 4 * N_TR;
    return m;
}

static size_t count(const fv_round_out_t *o, fv_round_act_type_t t)
{
    size_t n = 0;
    for (size_t i = 0; i < o->n; i++)
        n += o->acts[i].type == t;
    return n;
}

static fv_round_act_t *find(fv_round_out_t *o, fv_round_act_type_t t)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->acts[i].type == t)
            return &o->acts[i];
    return NULL;
}

/* The only action of out is a violation with err and a why containing needle. */
static void check_violation(fv_round_out_t *o, int err, const char *needle)
{
    CHECK_UINT_EQ(o->n, 1);
    CHECK_INT_EQ(o->acts[0].type, FV_ROUND_ACT_VIOLATION);
    CHECK_INT_EQ(o->acts[0].err, err);
    CHECK_CONTAINS(o->acts[0].why, needle);
    fv_round_out_clear(o);
}

static void check_sit_out(fv_round_out_t *o, const char *event, const char *needle)
{
    fv_round_act_t *a = find(o, FV_ROUND_ACT_SIT_OUT);
    CHECK(a != NULL);
    CHECK_STR_EQ(a->event, event);
    CHECK_CONTAINS(a->why, needle);
    CHECK_UINT_EQ(count(o, FV_ROUND_ACT_SIT_OUT), 1);
    CHECK_UINT_EQ(count(o, FV_ROUND_ACT_COMPUTE), 0);
    CHECK_UINT_EQ(count(o, FV_ROUND_ACT_UPLOAD), 0);
}

static void check_fails(const fv_around_held_t *h, const fv_msg_t *m, int err, const char *needle)
{
    char why[512] = "";
    CHECK_INT_EQ(fv_around_check(h, m, why, sizeof why), err);
    CHECK_CONTAINS(why, needle);
}

static fv_round_work_t *take_compute(fv_round_out_t *o)
{
    fv_round_act_t *a = find(o, FV_ROUND_ACT_COMPUTE);
    CHECK(a != NULL && a->work != NULL);
    fv_round_work_t *w = a->work;
    a->work = NULL;
    return w;
}

/* The caller's part of a compute: a vector of the round's shape. */
static void fill(fv_round_work_t *w, const fv_around_held_t *h, uint32_t base)
{
    fv_round_shape_t s;
    fv_diag_t d = {""};
    CHECK_OK(w->kind->shape(&h->sizes, &s, &d), &d);
    if (w->secagg || s.plain_dtype == FV_VEC_U32) {
        w->dim = w->secagg ? s.words : s.plain_n;
        w->words = malloc(w->dim * sizeof *w->words);
        CHECK(w->words != NULL);
        for (size_t i = 0; i < w->dim; i++)
            w->words[i] = base + (uint32_t)i;
    } else {
        w->dim = s.plain_n;
        w->fvec = malloc(w->dim * sizeof *w->fvec);
        CHECK(w->fvec != NULL);
        for (size_t i = 0; i < w->dim; i++)
            w->fvec[i] = (float)base + (float)i / 8;
    }
}

/* ---- ROUND_START's and ROUND_END's checks ---------------------------------------------- */

static void test_checks(void)
{
    fv_around_held_t h;
    held(&h, job_sec, dig_sec, 1);
    fv_msg_t m = rs_msg(dig_sec, 0, FV_FED_KIND_STATS, 1);
    CHECK_INT_EQ(fv_around_check(&h, &m, NULL, 0), 0);
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 1);
    CHECK_INT_EQ(fv_around_check(&h, &m, NULL, 0), 0);
    m = rs_msg(dig_sec, 3, FV_FED_KIND_DISTILL, 1);
    CHECK_INT_EQ(fv_around_check(&h, &m, NULL, 0), 0);

    /* another job */
    m = rs_msg(dig_plain, 0, FV_FED_KIND_STATS, 1);
    check_fails(&h, &m, FV_EROUND, "ROUND_START for a job this agent has not accepted");
    /* the kind must be the number's */
    m = rs_msg(dig_sec, 0, FV_FED_KIND_TRAIN, 1);
    check_fails(&h, &m, FV_EPROTO,
                "ROUND_START round 0 kind 2 (the job has 2 training rounds and 1 distill "
                "rounds; round 0 is the stats round, kind 1; then kind 2, then kind 3)");
    m = rs_msg(dig_sec, 2, FV_FED_KIND_DISTILL, 1);
    check_fails(&h, &m, FV_EPROTO, "ROUND_START round 2 kind 3");
    m = rs_msg(dig_sec, 3, FV_FED_KIND_TRAIN, 1);
    check_fails(&h, &m, FV_EPROTO, "ROUND_START round 3 kind 2");
    m = rs_msg(dig_sec, 4, FV_FED_KIND_DISTILL, 1); /* past the last round */
    check_fails(&h, &m, FV_EPROTO, "ROUND_START round 4 kind 3");
    m = rs_msg(dig_sec, 1, 9, 1);
    check_fails(&h, &m, FV_EPROTO, "ROUND_START round 1 kind 9");
    fv_around_held_t hp;
    held(&hp, job_plain, dig_plain, 1);
    m = rs_msg(dig_plain, 3, FV_FED_KIND_DISTILL, 1); /* no distill in the job */
    check_fails(&hp, &m, FV_EPROTO, "2 training rounds and 0 distill rounds");

    /* no round older than the last started (the same one again is fine) */
    h.started = true;
    h.last_round = 2;
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 1);
    check_fails(&h, &m, FV_EROUND, "ROUND_START for round 1 after round 2");
    m = rs_msg(dig_sec, 2, FV_FED_KIND_TRAIN, 1);
    CHECK_INT_EQ(fv_around_check(&h, &m, NULL, 0), 0);
    h.started = false;

    /* our key at our index */
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 2);
    check_fails(&h, &m, FV_EPROTO,
                "ROUND_START: the cohort key at index 2 is not this agent's key");
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 1);
    m.u.round_start.pks_len -= 32;
    check_fails(&h, &m, FV_EPROTO, "is not this agent's key");
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 1);
    m.u.round_start.index = NA;
    check_fails(&h, &m, FV_EPROTO, "is not this agent's key");

    /* what a training round starts from */
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 1);
    h.has_global = false;
    check_fails(&h, &m, FV_EPROTO, "ROUND_START: no global model was sent before the round");
    h.has_global = true;
    m.u.round_start.model[0] ^= 1;
    check_fails(&h, &m, FV_EPROTO,
                "ROUND_START: the announced model hash is not the model this agent holds");
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 1);
    m.u.round_start.has_model = false;
    check_fails(&h, &m, FV_EPROTO, "the announced model hash is not the model");
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 1);
    h.has_features = false;
    check_fails(&h, &m, FV_EPROTO, "ROUND_START: training round before the stats vector was sent");
    h.has_features = true;
    m.u.round_start.n_ref = N_TR - 1;
    check_fails(&h, &m, FV_EPROTO, "ROUND_START: nref 99 is below this agent's 100 training rows");
    h.n_tr = 0;
    m.u.round_start.n_ref = 0;
    check_fails(&h, &m, FV_EPROTO, "ROUND_START: nref 0 is below this agent's 0 training rows");
    h.n_tr = N_TR;

    /* and a distill round */
    m = rs_msg(dig_sec, 3, FV_FED_KIND_DISTILL, 1);
    h.has_teacher = false;
    h.has_student = false;
    check_fails(&h, &m, FV_EPROTO,
                "ROUND_START: no teacher model was sent before the distill round");
    h.has_teacher = true;
    check_fails(&h, &m, FV_EPROTO,
                "ROUND_START: no student model was sent before the distill round");
    h.has_student = true;
    memcpy(m.u.round_start.model, MODEL, 32); /* the global model's hash, not the student's */
    check_fails(&h, &m, FV_EPROTO,
                "ROUND_START: the announced model hash is not the student this agent holds");
    m = rs_msg(dig_sec, 3, FV_FED_KIND_DISTILL, 1);
    h.has_features = false;
    check_fails(&h, &m, FV_EPROTO, "training round before the stats vector was sent");
    h.has_features = true;
    m.u.round_start.n_ref = 1;
    check_fails(&h, &m, FV_EPROTO, "nref 1 is below");
    /* a stats round needs nothing */
    h.has_global = h.has_student = h.has_teacher = h.has_features = false;
    m = rs_msg(dig_sec, 0, FV_FED_KIND_STATS, 1);
    m.u.round_start.n_ref = 0;
    CHECK_INT_EQ(fv_around_check(&h, &m, NULL, 0), 0);

    /* ROUND_END */
    fv_msg_t e;
    memset(&e, 0, sizeof e);
    e.type = FV_MSG_ROUND_END;
    memcpy(e.u.round_end.job, dig_sec, 32);
    e.u.round_end.round = 0;
    char why[256] = "";
    CHECK_INT_EQ(fv_around_check_end(&h, &e, why, sizeof why), FV_EROUND);
    CHECK_STR_EQ(why, "ROUND_END for round 0 which has not started");
    h.started = true;
    h.last_round = 1;
    CHECK_INT_EQ(fv_around_check_end(&h, &e, why, sizeof why), 0);
    e.u.round_end.round = 1;
    CHECK_INT_EQ(fv_around_check_end(&h, &e, why, sizeof why), 0);
    e.u.round_end.round = 2;
    CHECK_INT_EQ(fv_around_check_end(&h, &e, why, sizeof why), FV_EROUND);
    CHECK_STR_EQ(why, "ROUND_END for round 2 which has not started");
    memcpy(e.u.round_end.job, dig_plain, 32);
    e.u.round_end.round = 1;
    CHECK_INT_EQ(fv_around_check_end(&h, &e, why, sizeof why), FV_EROUND);
    CHECK_STR_EQ(why, "ROUND_END for a job this agent has not accepted");
}

/* ---- the seed and the rounding key ------------------------------------------------------- */

static void test_seed_and_key(void)
{
    fv_around_held_t h;
    held(&h, job_sec, dig_sec, 2);
    fv_msg_t m = rs_msg(dig_sec, 2, FV_FED_KIND_TRAIN, 2);
    fv_rand_t rng;
    fv_rand_seeded_u64(&rng, 1);
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_around_t *r = NULL;
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    fv_round_work_t *w = take_compute(&out);
    CHECK(w->kind == fv_round_kind_by_id(h.kinds, FV_FED_KIND_TRAIN));
    CHECK_UINT_EQ(w->round, 2);
    CHECK_UINT_EQ(w->n_ref, 4 * N_TR);
    CHECK(w->secagg);
    CHECK(w->global == NULL && w->teacher == NULL);
    /* seed: SHA-256(job seed LE64 || round LE64 || name), first 8 bytes LE */
    uint8_t buf[16 + 6], sha[32];
    for (int i = 0; i < 8; i++) {
        buf[i] = (uint8_t)(job_sec->seed >> (8 * i));
        buf[8 + i] = (uint8_t)(UINT64_C(2) >> (8 * i));
    }
    memcpy(buf + 16, "bank-c", 6);
    crypto_hash_sha256(sha, buf, sizeof buf);
    uint64_t seed = 0;
    for (int i = 7; i >= 0; i--)
        seed = seed << 8 | sha[i];
    CHECK_UINT_EQ(w->seed, seed);
    /* key: BLAKE2b-256 keyed with sk[0..32) over "fedvault quantize" || job || round LE64 */
    uint8_t msg[17 + 32 + 8] = "fedvault quantize", key[32];
    memcpy(msg + 17, dig_sec, 32);
    memset(msg + 49, 0, 8);
    msg[49] = 2;
    crypto_generichash(key, 32, msg, sizeof msg, sks + 64 * 2, 32);
    CHECK(memcmp(w->qkey, key, 32) == 0);
    CHECK(fv_around_computing(r));
    /* the round goes away while computing: the work is the caller's to close */
    fv_around_free(r);
    fv_round_work_close(w);
    free(w);
    fv_round_out_close(&out);
}

/* ---- a SecAgg round against the server ------------------------------------------------- */

typedef struct {
    fv_around_held_t h;
    fv_around_t *r;
    fv_round_out_t out;
    fv_round_work_t *w;

} party_t;

/* The SEND actions of out to the server; out cleared. Returns how many. */
static size_t to_server(fv_secagg_server_t *s, party_t *p, uint32_t u)
{
    size_t n = 0;
    fv_diag_t d = {""};
    for (size_t i = 0; i < p->out.n; i++) {
        fv_round_act_t *a = &p->out.acts[i];
        if (a->type != FV_ROUND_ACT_SEND)
            continue;
        CHECK_INT_EQ(a->msg.type, FV_MSG_SECAGG);
        CHECK(memcmp(a->msg.u.secagg.job, p->h.digest, 32) == 0);
        CHECK_UINT_EQ(a->msg.u.secagg.round, fv_around_round(p->r));
        CHECK(a->msg.u.secagg.data[1] != FV_SECAGG_MSG_MASKED); /* never sent as SECAGG */
        CHECK_OK(fv_secagg_server_handle(s, a->msg.u.secagg.data, a->msg.u.secagg.len, &d), &d);
        n++;
    }
    (void)u;
    fv_round_out_clear(&p->out);
    return n;
}

static fv_msg_t secagg_msg(const uint8_t *digest, uint64_t round, const uint8_t *data, size_t len)
{
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_SECAGG;
    memcpy(m.u.secagg.job, digest, 32);
    m.u.secagg.round = round;
    m.u.secagg.data = data;
    m.u.secagg.len = len;
    return m;
}

/* The server's messages of the phase to each party (machine u gets the one to u). */
static void from_server(fv_secagg_outbox_t *sout, party_t *ps, uint64_t round)
{
    for (size_t i = 0; i < sout->n; i++) {
        uint32_t u = sout->msgs[i].to;
        CHECK(u < NA);
        fv_msg_t m = secagg_msg(ps[u].h.digest, round, sout->msgs[i].data, sout->msgs[i].len);
        fv_around_on_secagg(ps[u].r, &m, &ps[u].out);
    }
}

static void close_phase(fv_secagg_server_t *s, fv_secagg_outbox_t *sout)
{
    fv_diag_t d = {""};
    fv_secagg_outbox_clear(sout);
    CHECK_OK(fv_secagg_server_close_phase(s, sout, &d), &d);
}

/* A MASKED upload into the server (its bytes are the message, native words). */
static void upload_to_server(fv_secagg_server_t *s, party_t *p, uint64_t round)
{
    fv_round_act_t *a = find(&p->out, FV_ROUND_ACT_UPLOAD);
    CHECK(a != NULL);
    CHECK_STR_EQ(a->name, "masked");
    CHECK_INT_EQ(a->dtype, FV_VEC_U32);
    CHECK_UINT_EQ(a->vec_id, (uint32_t)round);
    fv_diag_t d = {""};
    CHECK_OK(fv_secagg_server_handle(s, a->vec, a->n * 4, &d), &d);
    void *vec = a->vec;
    a->vec = NULL; /* taken, as the daemon does */
    free(vec);
    fv_round_out_clear(&p->out);
    CHECK(fv_around_uploaded(p->r));
}

static void test_secagg_round(void)
{
    const uint64_t round = 1;
    party_t ps[NA];
    fv_round_shape_t shape;
    fv_diag_t d = {""};
    for (uint32_t u = 0; u < NA; u++) {
        memset(&ps[u], 0, sizeof ps[u]);
        held(&ps[u].h, job_sec, dig_sec, u);
        fv_round_out_init(&ps[u].out);
    }
    const fv_round_kind_t *train = fv_round_kind_by_id(fv_round_kinds_default(), FV_FED_KIND_TRAIN);
    CHECK_OK(train->shape(&ps[0].h.sizes, &shape, &d), &d);
    fv_secagg_params_t p = {.round = round,
                            .n_clients = NA,
                            .threshold = 3,
                            .n_neighbors = 3,
                            .dim = shape.words,
                            .prg = FV_PRG_DEFAULT,
                            .identity_pks = pks};
    for (int i = 7; i >= 0; i--)
        p.job_id = p.job_id << 8 | dig_sec[i];
    fv_secagg_server_t *s = NULL;
    CHECK_OK(fv_secagg_server_new(&p, &s, &d), &d);
    fv_secagg_outbox_t sout;
    fv_secagg_outbox_init(&sout);

    /* ROUND_START: ADVERTISE at once, then COMPUTE */
    for (uint32_t u = 0; u < NA; u++) {
        fv_msg_t m = rs_msg(dig_sec, round, FV_FED_KIND_TRAIN, u);
        CHECK_INT_EQ(fv_around_check(&ps[u].h, &m, NULL, 0), 0);
        fv_rand_t rng;
        fv_rand_seeded_u64(&rng, 100 + u);
        CHECK_OK(fv_around_new(&ps[u].h, &m, &rng, &ps[u].r, &ps[u].out), NULL);
        CHECK_UINT_EQ(ps[u].out.n, 2);
        CHECK_INT_EQ(ps[u].out.acts[0].type, FV_ROUND_ACT_SEND);
        CHECK_INT_EQ(ps[u].out.acts[0].msg.u.secagg.data[1], FV_SECAGG_MSG_ADVERTISE);
        CHECK_INT_EQ(ps[u].out.acts[1].type, FV_ROUND_ACT_COMPUTE);
        ps[u].w = take_compute(&ps[u].out);
        CHECK(fv_around_computing(ps[u].r));
        CHECK(fv_around_kind(ps[u].r) == train);
        CHECK_UINT_EQ(to_server(s, &ps[u], u), 1);
    }
    /* UPLOAD_GO early for party 3: nothing to send yet */
    fv_around_on_go(ps[3].r, &ps[3].out);
    CHECK_UINT_EQ(ps[3].out.n, 0);
    close_phase(s, &sout); /* KEYLIST */
    from_server(&sout, ps, round);
    for (uint32_t u = 0; u < NA; u++)
        CHECK_UINT_EQ(to_server(s, &ps[u], u), 1); /* SHARES */
    close_phase(s, &sout);                         /* SHARES_FWD */

    /* Parties 0 and 1 get SHARES_FWD while computing (deferred), 2 and 3 after. */
    for (uint32_t u = 0; u < 2; u++) {
        for (size_t i = 0; i < sout.n; i++)
            if (sout.msgs[i].to == u) {
                fv_msg_t m = secagg_msg(dig_sec, round, sout.msgs[i].data, sout.msgs[i].len);
                fv_around_on_secagg(ps[u].r, &m, &ps[u].out);
                CHECK_UINT_EQ(ps[u].out.n, 0);
                if (u == 0) { /* a second one while the first is held */
                    fv_around_on_secagg(ps[u].r, &m, &ps[u].out);
                    check_violation(&ps[u].out, FV_EDUP, "a second SHARES_FWD");
                }
            }
    }
    uint32_t *sum = calloc(shape.words, sizeof *sum);
    CHECK(sum != NULL);
    for (uint32_t u = 0; u < NA; u++) {
        fill(ps[u].w, &ps[u].h, 1000 * (u + 1));
        for (size_t i = 0; i < shape.words; i++)
            sum[i] += ps[u].w->words[i];
        fv_around_computed(ps[u].r, ps[u].w, &ps[u].out);
        ps[u].w = NULL;
        CHECK(!fv_around_computing(ps[u].r));
        /* 0, 1: MASKED kept for UPLOAD_GO; 2, 3: SHARES_FWD not there yet */
        CHECK_UINT_EQ(ps[u].out.n, 0);
    }
    /* 2 and 3 get SHARES_FWD now; 3 had UPLOAD_GO: it uploads at once */
    for (size_t i = 0; i < sout.n; i++) {
        uint32_t u = sout.msgs[i].to;
        if (u < 2)
            continue;
        fv_msg_t m = secagg_msg(dig_sec, round, sout.msgs[i].data, sout.msgs[i].len);
        fv_around_on_secagg(ps[u].r, &m, &ps[u].out);
        CHECK_UINT_EQ(ps[u].out.n, u == 3 ? 1 : 0);
    }
    upload_to_server(s, &ps[3], round);
    for (uint32_t u = 0; u < 3; u++) {
        CHECK(!fv_around_uploaded(ps[u].r));
        fv_around_on_go(ps[u].r, &ps[u].out);
        CHECK_UINT_EQ(ps[u].out.n, 1);
        upload_to_server(s, &ps[u], round);
        fv_around_on_go(ps[u].r, &ps[u].out);
        check_violation(&ps[u].out, FV_EDUP, "a second UPLOAD_GO");
    }
    close_phase(s, &sout); /* U3LIST */
    from_server(&sout, ps, round);
    for (uint32_t u = 0; u < NA; u++)
        CHECK_UINT_EQ(to_server(s, &ps[u], u), 1); /* CONSIST */
    close_phase(s, &sout);                         /* SIGLIST */
    from_server(&sout, ps, round);
    for (uint32_t u = 0; u < NA; u++)
        CHECK_UINT_EQ(to_server(s, &ps[u], u), 1); /* UNMASK */
    close_phase(s, &sout);
    const uint32_t *res = NULL;
    CHECK_OK(fv_secagg_server_result(s, &res), NULL);
    for (size_t i = 0; i < shape.words; i++)
        CHECK_UINT_EQ(res[i], sum[i]);
    free(sum);
    for (uint32_t u = 0; u < NA; u++) {
        CHECK(!fv_around_sat_out(ps[u].r));
        fv_around_free(ps[u].r);
        fv_round_out_close(&ps[u].out);
    }
    fv_secagg_outbox_close(&sout);
    fv_secagg_server_free(s);
}

/* ---- plain rounds ------------------------------------------------------------------------ */

static void test_plain_rounds(void)
{
    fv_around_held_t h;
    held(&h, job_plain, dig_plain, 0);
    fv_rand_t rng;
    fv_rand_seeded_u64(&rng, 3);
    fv_round_out_t out;
    fv_round_out_init(&out);

    /* stats: u32 words; UPLOAD_GO after the compute */
    fv_msg_t m = rs_msg(dig_plain, 0, FV_FED_KIND_STATS, 0);
    fv_around_t *r = NULL;
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    CHECK_UINT_EQ(out.n, 1); /* no SecAgg: nothing sent, just COMPUTE */
    fv_round_work_t *w = take_compute(&out);
    CHECK(!w->secagg);
    fv_round_out_clear(&out);
    fv_msg_t sm = secagg_msg(dig_plain, 0, (const uint8_t *)"\x01\x01", 2);
    fv_around_on_secagg(r, &sm, &out);
    check_violation(&out, FV_EPROTO, "SECAGG in a job without SecAgg");
    fill(w, &h, 5);
    fv_around_computed(r, w, &out);
    CHECK_UINT_EQ(out.n, 0);
    fv_around_on_go(r, &out);
    fv_round_act_t *a = find(&out, FV_ROUND_ACT_UPLOAD);
    CHECK(a != NULL && out.n == 1);
    CHECK_STR_EQ(a->name, "update");
    CHECK_INT_EQ(a->dtype, FV_VEC_U32);
    CHECK_UINT_EQ(a->n, STATS_DIM);
    CHECK_UINT_EQ(a->vec_id, 0);
    CHECK_UINT_EQ(((uint32_t *)a->vec)[STATS_DIM - 1], 5 + STATS_DIM - 1);
    CHECK(fv_around_uploaded(r));
    fv_round_out_clear(&out); /* frees the vector not taken */
    fv_around_free(r);

    /* train: f32, UPLOAD_GO before the compute */
    m = rs_msg(dig_plain, 2, FV_FED_KIND_TRAIN, 0);
    CHECK_INT_EQ(fv_around_check(&h, &m, NULL, 0), 0);
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    w = take_compute(&out);
    fv_round_out_clear(&out);
    fv_around_on_go(r, &out);
    CHECK_UINT_EQ(out.n, 0);
    fill(w, &h, 7);
    size_t dim = w->dim;
    fv_around_computed(r, w, &out);
    a = find(&out, FV_ROUND_ACT_UPLOAD);
    CHECK(a != NULL && out.n == 1);
    CHECK_STR_EQ(a->name, "update");
    CHECK_INT_EQ(a->dtype, FV_VEC_F32);
    CHECK_UINT_EQ(a->n, dim);
    CHECK_UINT_EQ(a->vec_id, 2);
    CHECK(((float *)a->vec)[1] == 7.125f);
    fv_around_on_go(r, &out);
    CHECK_UINT_EQ(out.n, 2);
    CHECK_INT_EQ(out.acts[1].type, FV_ROUND_ACT_VIOLATION);
    CHECK_CONTAINS(out.acts[1].why, "a second UPLOAD_GO");
    fv_round_out_clear(&out);
    fv_around_free(r);

    /* a vector of the wrong size is not sent */
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    w = take_compute(&out);
    fv_round_out_clear(&out);
    fill(w, &h, 7);
    w->dim--;
    fv_around_computed(r, w, &out);
    check_sit_out(&out, "round_failed", "the train compute gave");
    fv_round_out_clear(&out);
    fv_around_on_go(r, &out);
    CHECK_UINT_EQ(out.n, 0);
    fv_around_free(r);
    fv_round_out_close(&out);
}

/* ---- policy, failures, aborts ------------------------------------------------------------- */

static void test_policy(void)
{
    fv_around_held_t h;
    held(&h, job_sec, dig_sec, 0);
    fv_rand_t rng;
    fv_rand_seeded_u64(&rng, 4);
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_around_t *r = NULL;

    /* min_cohort: sat out, nothing sent, its messages ignored */
    h.min_cohort = NA + 1;
    fv_msg_t m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 0);
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    check_sit_out(&out, "policy_refusal", "cohort of 4 agents is below min_cohort 5");
    CHECK_UINT_EQ(out.n, 1);
    CHECK_INT_EQ(out.acts[0].err, 0);
    CHECK(fv_around_sat_out(r));
    CHECK(!fv_around_computing(r));
    fv_round_out_clear(&out);
    fv_msg_t sm = secagg_msg(dig_sec, 1, (const uint8_t *)"\x01\x02\x03", 3);
    fv_around_on_secagg(r, &sm, &out);
    CHECK_UINT_EQ(out.n, 0);
    fv_around_on_go(r, &out);
    CHECK_UINT_EQ(out.n, 0);
    fv_around_on_go(r, &out); /* still a violation */
    check_violation(&out, FV_EDUP, "a second UPLOAD_GO");
    fv_around_free(r);
    h.min_cohort = 0;

    /* t and k other than the job's */
    m.u.round_start.t = 4;
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    check_sit_out(&out, "policy_refusal",
                  "SecAgg t=4 k=3 for 4 agents is not what the job prescribes");
    CHECK_UINT_EQ(out.n, 1);
    fv_round_out_clear(&out);
    fv_around_free(r);
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 0);
    m.u.round_start.k = 2;
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    check_sit_out(&out, "policy_refusal", "SecAgg t=3 k=2 for 4 agents");
    fv_round_out_clear(&out);
    fv_around_free(r);

    /* min_threshold above t: the SecAgg client refuses */
    h.min_threshold = 4;
    m = rs_msg(dig_sec, 1, FV_FED_KIND_TRAIN, 0);
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    check_sit_out(&out, "policy_refusal", "");
    CHECK_UINT_EQ(out.n, 1);
    fv_round_out_clear(&out);
    fv_around_free(r);
    h.min_threshold = 0;

    /* a compute that failed */
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    fv_round_work_t *w = take_compute(&out);
    fv_round_out_clear(&out);
    fv_around_on_go(r, &out);
    w->rc = FV_ENUMERIC;
    fv_diag_set(&w->d, FV_ENUMERIC, "local training: not a number");
    fv_around_computed(r, w, &out);
    check_sit_out(&out, "round_failed", "local training: not a number");
    CHECK(fv_around_sat_out(r));
    fv_round_out_clear(&out);
    fv_around_free(r);

    /* garbage SecAgg bytes: a violation (the client did not abort) */
    CHECK_OK(fv_around_new(&h, &m, &rng, &r, &out), NULL);
    w = take_compute(&out);
    fv_round_out_clear(&out);
    sm = secagg_msg(dig_sec, 1, (const uint8_t *)"\xff\x02garbage", 9);
    fv_around_on_secagg(r, &sm, &out);
    check_violation(&out, FV_EPROTO, "SecAgg message rejected: ");
    CHECK(!fv_around_sat_out(r));
    fv_around_free(r);
    fv_round_work_close(w);
    free(w);

    fv_round_out_close(&out);
}

/* A KEYLIST whose entry's signature is broken: the client aborts (FV_EAUTH) and the round
 * is sat out as secagg_abort, the client's code in err. */
static void test_secagg_abort(void)
{
    const uint64_t round = 0;
    party_t ps[NA];
    fv_diag_t d = {""};
    fv_secagg_params_t p = {.round = round,
                            .n_clients = NA,
                            .threshold = 3,
                            .n_neighbors = 3,
                            .dim = STATS_DIM,
                            .prg = FV_PRG_DEFAULT,
                            .identity_pks = pks};
    for (int i = 7; i >= 0; i--)
        p.job_id = p.job_id << 8 | dig_sec[i];
    fv_secagg_server_t *s = NULL;
    CHECK_OK(fv_secagg_server_new(&p, &s, &d), &d);
    for (uint32_t u = 0; u < NA; u++) {
        memset(&ps[u], 0, sizeof ps[u]);
        held(&ps[u].h, job_sec, dig_sec, u);
        fv_round_out_init(&ps[u].out);
        fv_msg_t m = rs_msg(dig_sec, round, FV_FED_KIND_STATS, u);
        fv_rand_t rng;
        fv_rand_seeded_u64(&rng, 200 + u);
        CHECK_OK(fv_around_new(&ps[u].h, &m, &rng, &ps[u].r, &ps[u].out), NULL);
        ps[u].w = take_compute(&ps[u].out);
        CHECK_UINT_EQ(to_server(s, &ps[u], u), 1);
    }
    fv_secagg_outbox_t sout;
    fv_secagg_outbox_init(&sout);
    close_phase(s, &sout); /* KEYLIST */
    for (size_t i = 0; i < sout.n; i++) {
        uint32_t u = sout.msgs[i].to;
        fv_msg_t m = secagg_msg(dig_sec, round, sout.msgs[i].data, sout.msgs[i].len);
        uint8_t *bad = NULL;
        if (u == 0) {
            fv_secagg_msg_t dm;
            size_t len;
            CHECK_OK(fv_secagg_msg_decode(sout.msgs[i].data, sout.msgs[i].len, &dm, &d), &d);
            dm.keys[1].sig[5] ^= 1;
            CHECK_OK(fv_secagg_msg_encode(&dm, &bad, &len), NULL);
            fv_secagg_msg_close(&dm);
            m = secagg_msg(dig_sec, round, bad, len);
        }
        fv_around_on_secagg(ps[u].r, &m, &ps[u].out);
        free(bad);
    }
    check_sit_out(&ps[0].out, "secagg_abort", "");
    CHECK_UINT_EQ(ps[0].out.n, 1);
    CHECK_INT_EQ(ps[0].out.acts[0].err, FV_EAUTH);
    CHECK(fv_around_sat_out(ps[0].r));
    fv_round_out_clear(&ps[0].out);
    /* the compute comes back to a sat-out round: nothing more */
    fill(ps[0].w, &ps[0].h, 1);
    fv_around_computed(ps[0].r, ps[0].w, &ps[0].out);
    ps[0].w = NULL;
    fv_around_on_go(ps[0].r, &ps[0].out);
    CHECK_UINT_EQ(ps[0].out.n, 0);
    for (uint32_t u = 1; u < NA; u++)
        CHECK_UINT_EQ(count(&ps[u].out, FV_ROUND_ACT_SEND), 1); /* SHARES */
    for (uint32_t u = 0; u < NA; u++) {
        fv_around_free(ps[u].r);
        fv_round_out_close(&ps[u].out);
        if (ps[u].w != NULL) {
            fv_round_work_close(ps[u].w);
            free(ps[u].w);
        }
    }
    fv_secagg_outbox_close(&sout);
    fv_secagg_server_free(s);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    setup();
    test_checks();
    test_seed_and_key();
    test_secagg_round();
    test_plain_rounds();
    test_policy();
    test_secagg_abort();
    fv_job_free(job_sec);
    fv_job_free(job_plain);
    printf("test_round_agent: ok\n");
    return 0;
}
