/* round_agent.c - an agent's side of one round (fv_around_t, fv_round.h "A ROUND, an
 * agent's side"): ROUND_START's checks, the agent's policy, the SecAgg client, the
 * compute handed out and taken back, SHARES_FWD held until our vector is there, UPLOAD_GO
 * and the upload, ROUND_END's checks. No I/O, no clock, no log: messages in, actions out
 * (the daemon, agent/agent_round.c, carries them; tests/unit/test_round_agent.c drives
 * the machine directly).
 *
 * The round's states, as flags (a round is one of these at a time, in this order, unless
 * it is sat out):
 *   computing   COMPUTE handed out, not back yet (fv_around_computed). A SHARES_FWD that
 *               arrives now is copied (fwd) and handled when the vector is back: the
 *               masked input is built from it. A second one is a violation.
 *   ready       the vector is back (words: SecAgg input or u32 plain; fvec: f32 plain).
 *               With SecAgg it is the client's input; the client's MASKED message is kept
 *               (masked, native u32 words) and is never sent as SECAGG.
 *   go          UPLOAD_GO arrived (a second is a violation).
 *   uploaded    UPLOAD went out: once go and (SecAgg) masked / (plain) the vector.
 *   sat_out     our policy refused the round, the client aborted on its own rules, or the
 *               compute failed: nothing more is sent; messages of the round are ignored
 *               (but a second UPLOAD_GO, or SECAGG in a plain job, is still a violation).
 *
 * Invariants: every action's `why` and every violation text is this file's (the daemon's
 * tests grep them: keep them as they are). The SecAgg client borrows the machine's rng
 * and, while SHARES_FWD is handled, its input (words): both live as long as the machine.
 * Reproducibility: the training seed is SHA-256(job seed LE64 || round LE64 || agent name)
 * read as LE64; the rounding key is BLAKE2b-256 keyed with the first 32 bytes of our
 * Ed25519 secret key over ("fedvault quantize" || job digest || round LE64). Both depend
 * on the job, the round and the agent only (fv_round.h "Reproducibility").
 *
 * Ownership: the machine owns its client, outbox, vectors and the deferred SHARES_FWD;
 * SEND actions borrow the outbox's bytes until the next call into the machine; UPLOAD's
 * vector and COMPUTE's work are the caller's once taken. Secrets (the SecAgg input, the
 * masked vector, the rng's key, the rounding key in a work item) are wiped when freed.
 * Threads: one machine, one thread; nothing here blocks.
 */
#include "fv_round.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_fed_valid.h"
#include "fv_tls.h" /* FV_NAME_MAX: the agent name in the training seed */

struct fv_around {
    const fv_round_kind_t *kind;
    fv_round_shape_t shape;
    uint8_t job[32];
    uint64_t round;
    uint32_t index, n, t, k;
    uint64_t n_ref;
    bool secagg;
    bool sat_out, computing, ready, go, uploaded;
    fv_secagg_client_t *sa;
    fv_vagg_client_t *va; /* a validated round (fv_vagg.h) instead of sa */
    fv_fed_valid_t fv;    /* ... its statement (the client borrows fv.spec) */
    fv_rand_t rng;        /* the client's randomness (borrowed by it) */
    fv_secagg_outbox_t ob;
    uint32_t *words; /* SecAgg input, or the u32 plain vector */
    float *fvec;     /* the f32 plain vector */
    size_t dim;
    uint8_t *fwd; /* deferred SHARES_FWD */
    size_t fwd_len;
    uint32_t *masked; /* the MASKED message as native words, waiting for UPLOAD_GO */
    size_t masked_words;
};

/* ---- actions -------------------------------------------------------------------------- */

/* A zeroed action at the end of out, or NULL when out of memory (the action is lost:
 * callers keep their state so that nothing half-done is left behind). */
static fv_round_act_t *act_push(fv_round_out_t *out, fv_round_act_type_t type)
{
    if (out->n == out->cap) {
        size_t cap = out->cap ? 2 * out->cap : 8;
        fv_round_act_t *acts = realloc(out->acts, cap * sizeof *acts);
        if (acts == NULL)
            return NULL;
        out->acts = acts;
        out->cap = cap;
    }
    fv_round_act_t *a = &out->acts[out->n++];
    memset(a, 0, sizeof *a);
    a->type = type;
    return a;
}

static void act_why(fv_round_act_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void act_why(fv_round_act_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->why, sizeof a->why, fmt, ap);
    va_end(ap);
}

static void wipe_free(void *p, size_t len)
{
    if (p != NULL)
        sodium_memzero(p, len);
    free(p);
}

/* The round is sat out (nothing more is sent for it): the client goes, with its secrets. */
static void sit_out(fv_around_t *r, fv_round_out_t *out, const char *event, int err,
                    const char *why)
{
    r->sat_out = true;
    fv_secagg_client_free(r->sa);
    r->sa = NULL;
    fv_vagg_client_free(r->va);
    r->va = NULL;
    fv_round_act_t *a = act_push(out, FV_ROUND_ACT_SIT_OUT);
    if (a == NULL)
        return;
    a->event = event;
    a->err = err;
    act_why(a, "%s", why);
}

static void violation(fv_round_out_t *out, int err, const char *why)
{
    fv_round_act_t *a = act_push(out, FV_ROUND_ACT_VIOLATION);
    if (a == NULL)
        return;
    a->err = err;
    act_why(a, "%s", why);
}

/* ---- ROUND_START's checks -------------------------------------------------------------- */

static int check_fail(char *why, size_t why_len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int check_fail(char *why, size_t why_len, int err, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

int fv_around_check(const fv_around_held_t *h, const fv_msg_t *m, char *why, size_t why_len)
{
    const __typeof__(m->u.round_start) *rs = &m->u.round_start;
    const fv_job_t *job = h->job;
    if (job == NULL || memcmp(rs->job, h->digest, 32) != 0)
        return check_fail(why, why_len, FV_EROUND,
                          "ROUND_START for a job this agent has not accepted");
    const fv_round_kind_t *kind = fv_round_kind_of(h->kinds, job, rs->round, NULL);
    if (kind == NULL || kind->id != rs->kind)
        return check_fail(why, why_len, FV_EPROTO,
                          "ROUND_START round %" PRIu64 " kind %" PRIu32 " (the job has %" PRIu32
                          " training rounds and %" PRIu32 " distill rounds; round 0 is the stats "
                          "round, kind 1; then kind 2, then kind 3)",
                          rs->round, rs->kind, job->rounds,
                          job->distill.on ? job->distill.rounds : 0);
    if (h->started && rs->round < h->last_round)
        return check_fail(why, why_len, FV_EROUND,
                          "ROUND_START for round %" PRIu64 " after round %" PRIu64, rs->round,
                          h->last_round);
    if (rs->index >= rs->n || rs->pks == NULL || rs->pks_len != (size_t)rs->n * 32 ||
        memcmp(rs->pks + (size_t)rs->index * 32, h->pk, 32) != 0)
        return check_fail(
            why, why_len, FV_EPROTO,
            "ROUND_START: the cohort key at index %" PRIu32 " is not this agent's key", rs->index);
    /* What the kind starts from, in the order the texts below were always checked. */
    if ((kind->needs & FV_ROUND_NEEDS_TEACHER) && !h->has_teacher)
        return check_fail(why, why_len, FV_EPROTO,
                          "ROUND_START: no teacher model was sent before the distill round");
    if (kind->needs & FV_ROUND_NEEDS_STUDENT) {
        if (!h->has_student)
            return check_fail(why, why_len, FV_EPROTO,
                              "ROUND_START: no student model was sent before the distill round");
        if (!rs->has_model || memcmp(rs->model, h->student_hash, 32) != 0)
            return check_fail(why, why_len, FV_EPROTO,
                              "ROUND_START: the announced model hash is not the student this "
                              "agent holds");
    }
    if (kind->needs & FV_ROUND_NEEDS_GLOBAL) {
        if (!h->has_global)
            return check_fail(why, why_len, FV_EPROTO,
                              "ROUND_START: no global model was sent before the round");
        if (!rs->has_model || memcmp(rs->model, h->global_hash, 32) != 0)
            return check_fail(why, why_len, FV_EPROTO,
                              "ROUND_START: the announced model hash is not the model this "
                              "agent holds");
    }
    if (kind->needs & FV_ROUND_NEEDS_FINAL) {
        /* the final training model: the teacher when the job distils (the agent holds it
         * since the distill phase), else the model sent for this round */
        bool t = job->distill.on;
        if (!(t ? h->has_teacher : h->has_global))
            return check_fail(why, why_len, FV_EPROTO,
                              "ROUND_START: no %s was sent before the explain round",
                              t ? "teacher model" : "final model");
        if (!rs->has_model || memcmp(rs->model, t ? h->teacher_hash : h->global_hash, 32) != 0)
            return check_fail(why, why_len, FV_EPROTO,
                              "ROUND_START: the announced model hash is not the final model (%s) "
                              "this agent holds",
                              t ? "the teacher" : "the model sent for the round");
    }
    if (kind->needs & FV_ROUND_NEEDS_FEATURES) {
        if (!h->has_features)
            return check_fail(why, why_len, FV_EPROTO,
                              "ROUND_START: training round before the stats vector was sent");
        if (rs->n_ref < h->n_tr || rs->n_ref == 0)
            return check_fail(why, why_len, FV_EPROTO,
                              "ROUND_START: nref %" PRIu64
                              " is below this agent's %zu training rows",
                              rs->n_ref, h->n_tr);
    }
    return 0;
}

int fv_around_check_end(const fv_around_held_t *h, const fv_msg_t *m, char *why, size_t why_len)
{
    const __typeof__(m->u.round_end) *re = &m->u.round_end;
    if (h->job == NULL || memcmp(re->job, h->digest, 32) != 0)
        return check_fail(why, why_len, FV_EROUND,
                          "ROUND_END for a job this agent has not accepted");
    if (!h->started || re->round > h->last_round)
        return check_fail(why, why_len, FV_EROUND,
                          "ROUND_END for round %" PRIu64 " which has not started", re->round);
    return 0;
}

/* ---- a round's start -------------------------------------------------------------------- */

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* The work item's seed and rounding key (this file's note, "Reproducibility"). */
static void derive_seed(const fv_around_held_t *h, uint64_t round, fv_round_work_t *w)
{
    uint8_t seedbuf[16 + FV_NAME_MAX], sha[crypto_hash_sha256_BYTES];
    size_t nl = h->name != NULL ? strlen(h->name) : 0;
    if (nl > FV_NAME_MAX)
        nl = FV_NAME_MAX;
    for (int i = 0; i < 8; i++) {
        seedbuf[i] = (uint8_t)(h->job->seed >> (8 * i));
        seedbuf[8 + i] = (uint8_t)(round >> (8 * i));
    }
    if (nl > 0)
        memcpy(seedbuf + 16, h->name, nl);
    crypto_hash_sha256(sha, seedbuf, 16 + nl);
    w->seed = le64(sha);

    static const char label[] = "fedvault quantize";
    uint8_t msg[sizeof label - 1 + 32 + 8];
    memcpy(msg, label, sizeof label - 1);
    memcpy(msg + sizeof label - 1, h->digest, 32);
    for (int i = 0; i < 8; i++)
        msg[sizeof label - 1 + 32 + i] = (uint8_t)(round >> (8 * i));
    crypto_generichash(w->qkey, sizeof w->qkey, msg, sizeof msg, h->sk, 32);
}

static void flush_outbox(fv_around_t *r, fv_round_out_t *out);

int fv_around_new(const fv_around_held_t *h, const fv_msg_t *m, const fv_rand_t *rng,
                  fv_around_t **ret, fv_round_out_t *out)
{
    const __typeof__(m->u.round_start) *rs = &m->u.round_start;
    const fv_job_t *job = h->job;
    const fv_round_kind_t *kind = fv_round_kind_of(h->kinds, job, rs->round, NULL);
    if (kind == NULL || kind->id != rs->kind)
        return FV_EINVAL; /* fv_around_check first */
    fv_around_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return FV_ENOMEM;
    r->kind = kind;
    memcpy(r->job, rs->job, 32);
    r->round = rs->round;
    r->index = rs->index;
    r->n = rs->n;
    r->t = rs->t;
    r->k = rs->k;
    r->n_ref = rs->n_ref;
    r->secagg = job->secagg.on;
    r->rng = *rng;
    fv_secagg_outbox_init(&r->ob);
    *ret = r;

    /* Local policy first: it is ours, not the coordinator's. */
    char why[FV_DIAG_MAX + 256];
    if (h->min_cohort > 0 && rs->n < h->min_cohort) {
        snprintf(why, sizeof why, "cohort of %" PRIu32 " agents is below min_cohort %" PRIu32,
                 rs->n, h->min_cohort);
        sit_out(r, out, "policy_refusal", 0, why);
        return 0;
    }
    fv_diag_t d = {""};
    int rc;
    if (r->secagg) {
        uint32_t t, k;
        rc = fv_job_secagg_for(job, rs->n, &t, &k, &d);
        if (rc != 0 || t != rs->t || k != rs->k) {
            snprintf(why, sizeof why,
                     "SecAgg t=%" PRIu32 " k=%" PRIu32 " for %" PRIu32 " agents is not what the "
                     "job prescribes%s%s",
                     rs->t, rs->k, rs->n, rc != 0 ? ": " : "", rc != 0 ? d.msg : "");
            sit_out(r, out, "policy_refusal", 0, why);
            return 0;
        }
    }
    if ((rc = kind->shape(&h->sizes, &r->shape, &d)) != 0) {
        sit_out(r, out, "round_failed", 0, d.msg);
        return 0;
    }
    bool validated = r->secagg && fv_round_validated(job, &r->shape);
    if (validated) {
        /* a validated round: our input is proved, not masked (fv_vagg.h); our own policy
         * (min_cohort, min_threshold) applies to the holders and to the summed set */
        if ((rc = fv_fed_valid_init(&r->shape.lay, job, &r->fv, &d)) != 0) {
            sit_out(r, out, "round_failed", 0, d.msg);
            return 0;
        }
        fv_vagg_params_t vp = {.federation = h->federation,
                               .job_id = le64(h->digest),
                               .round = rs->round,
                               .n_clients = rs->n,
                               .threshold = rs->t,
                               .spec = &r->fv.spec,
                               .identity_pks = rs->pks};
        fv_secagg_policy_t pol = {.min_cohort = h->min_cohort, .min_threshold = h->min_threshold};
        rc = fv_vagg_client_new(&vp, &pol, rs->index, h->sk, &r->rng, &r->va, &d);
        if (rc == 0)
            rc = fv_vagg_client_start(r->va, &r->ob, &d);
        if (rc != 0) {
            sit_out(r, out, rc == FV_EPOLICY ? "policy_refusal" : "round_failed", 0, d.msg);
            return 0;
        }
        flush_outbox(r, out);
    } else if (r->secagg) {
        fv_secagg_params_t p = {.job_id = le64(h->digest),
                                .round = rs->round,
                                .n_clients = rs->n,
                                .threshold = rs->t,
                                .n_neighbors = rs->k,
                                .dim = r->shape.words,
                                .prg = FV_PRG_DEFAULT,
                                .quant_bits = 0,
                                .clip = 0,
                                .identity_pks = rs->pks};
        memcpy(p.graph_seed, rs->gseed, sizeof p.graph_seed);
        fv_secagg_policy_t pol = {.min_cohort = h->min_cohort, .min_threshold = h->min_threshold};
        rc = fv_secagg_client_new(&p, &pol, rs->index, h->sk, &r->rng, &r->sa, &d);
        if (rc == 0)
            rc = fv_secagg_client_start(r->sa, &r->ob, &d);
        if (rc != 0) {
            sit_out(r, out, rc == FV_EPOLICY ? "policy_refusal" : "round_failed", 0, d.msg);
            return 0;
        }
        flush_outbox(r, out); /* ADVERTISE: key agreement overlaps the compute */
    }

    fv_round_work_t *w = calloc(1, sizeof *w);
    fv_round_act_t *a = w != NULL ? act_push(out, FV_ROUND_ACT_COMPUTE) : NULL;
    if (a == NULL) {
        free(w);
        sit_out(r, out, "round_failed", 0, "out of memory");
        return 0;
    }
    w->kind = kind;
    w->round = rs->round;
    w->n_ref = rs->n_ref;
    w->secagg = r->secagg;
    w->validated = validated;
    derive_seed(h, rs->round, w);
    a->work = w;
    r->computing = true;
    return 0;
}

void fv_around_free(fv_around_t *r)
{
    if (r == NULL)
        return;
    fv_secagg_client_free(r->sa);
    fv_vagg_client_free(r->va);
    fv_fed_valid_close(&r->fv);
    fv_secagg_outbox_close(&r->ob);
    wipe_free(r->words, r->dim * sizeof *r->words);
    wipe_free(r->fvec, r->dim * sizeof *r->fvec);
    free(r->fwd);
    wipe_free(r->masked, r->masked_words * sizeof *r->masked);
    sodium_memzero(&r->rng, sizeof r->rng);
    free(r);
}

/* ---- SecAgg ---------------------------------------------------------------------------- */

/* The outbox out as SEND actions (borrowing its bytes), except MASKED, which is kept for
 * UPLOAD_GO. */
static void flush_outbox(fv_around_t *r, fv_round_out_t *out)
{
    for (size_t i = 0; i < r->ob.n; i++) {
        const fv_secagg_outmsg_t *om = &r->ob.msgs[i];
        if (r->va == NULL && om->len >= 2 && om->data[1] == FV_SECAGG_MSG_MASKED) {
            if (om->len % 4 != 0) {
                sit_out(r, out, "round_failed", 0, "masked message length is not whole words");
                break;
            }
            wipe_free(r->masked, r->masked_words * sizeof *r->masked);
            r->masked_words = om->len / 4;
            r->masked = malloc(r->masked_words * sizeof *r->masked);
            if (r->masked == NULL) {
                r->masked_words = 0;
                sit_out(r, out, "round_failed", 0, "out of memory");
                break;
            }
            for (size_t k = 0; k < r->masked_words; k++) {
                const uint8_t *p = om->data + 4 * k;
                r->masked[k] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                               (uint32_t)p[3] << 24;
            }
            continue;
        }
        fv_round_act_t *a = act_push(out, FV_ROUND_ACT_SEND);
        if (a == NULL)
            break;
        a->msg.type = FV_MSG_SECAGG;
        memcpy(a->msg.u.secagg.job, r->job, 32);
        a->msg.u.secagg.round = r->round;
        a->msg.u.secagg.data = om->data;
        a->msg.u.secagg.len = om->len;
    }
}

static void try_upload(fv_around_t *r, fv_round_out_t *out);

/* A client (SecAgg's or validation's) refused a coordinator message with rc. When it
 * aborted on its own rules (policy: refused by our policy, else another abort) the round
 * is sat out and the connection stays; otherwise the message was malformed: a violation. */
static void client_refused(fv_around_t *r, fv_round_out_t *out, int rc, bool aborted, bool policy,
                           const char *abort_event, const char *what, const fv_diag_t *d)
{
    if (aborted) {
        sit_out(r, out, policy ? "policy_refusal" : abort_event, rc, d->msg);
        fv_secagg_outbox_clear(&r->ob);
        return;
    }
    fv_round_act_t *a = act_push(out, FV_ROUND_ACT_VIOLATION);
    if (a != NULL) {
        a->err = rc;
        act_why(a, "%s message rejected: %s", what, d->msg);
    }
}

/* One coordinator SecAgg message to the client; its replies out, then the upload tried. */
static void pump(fv_around_t *r, const uint8_t *msg, size_t len, fv_round_out_t *out)
{
    fv_secagg_outbox_clear(&r->ob); /* the last call's SEND actions are spent */
    fv_diag_t d = {""};
    int rc = fv_secagg_client_handle(r->sa, msg, len, &r->ob, &d);
    if (rc != 0) {
        /* our own rules: policy, signatures, threshold, never both shares */
        client_refused(r, out, rc, fv_secagg_client_phase(r->sa) < 0,
                       rc == FV_EPOLICY || rc == FV_EBOTHSHARES || rc == FV_ETHRESHOLD,
                       "secagg_abort", "SecAgg", &d);
        return;
    }
    flush_outbox(r, out);
    try_upload(r, out);
}

/* One coordinator message to the validated round's client; its replies out. */
static void pump_valid(fv_around_t *r, const uint8_t *msg, size_t len, fv_round_out_t *out)
{
    fv_secagg_outbox_clear(&r->ob); /* the last call's SEND actions are spent */
    fv_diag_t d = {""};
    int rc = fv_vagg_client_handle(r->va, msg, len, &r->ob, &d);
    if (rc != 0) {
        /* our own rules: policy, signatures, a sum we must not give */
        client_refused(r, out, rc, fv_vagg_client_phase(r->va) < 0,
                       rc == FV_EPOLICY || rc == FV_ETHRESHOLD || rc == FV_EPEER,
                       "validation_abort", "validation", &d);
        return;
    }
    flush_outbox(r, out);
}

void fv_around_on_secagg(fv_around_t *r, const fv_msg_t *m, fv_round_out_t *out)
{
    if (!r->secagg) {
        violation(out, FV_EPROTO, "SECAGG in a job without SecAgg");
        return;
    }
    if (r->va != NULL && !r->sat_out) {
        pump_valid(r, m->u.secagg.data, m->u.secagg.len, out);
        return;
    }
    if (r->sat_out || r->sa == NULL)
        return;
    const uint8_t *p = m->u.secagg.data;
    size_t len = m->u.secagg.len;
    if (len >= 2 && p[1] == FV_SECAGG_MSG_SHARES_FWD && !r->ready) {
        /* The masked input needs our vector: keep the message until the compute is back. */
        if (r->fwd != NULL) {
            violation(out, FV_EDUP, "a second SHARES_FWD");
            return;
        }
        r->fwd = malloc(len);
        if (r->fwd == NULL) {
            sit_out(r, out, "round_failed", 0, "out of memory");
            return;
        }
        memcpy(r->fwd, p, len);
        r->fwd_len = len;
        return;
    }
    pump(r, p, len, out);
}

/* ---- the compute back, UPLOAD_GO, the upload ------------------------------------------ */

void fv_around_computed(fv_around_t *r, fv_round_work_t *w, fv_round_out_t *out)
{
    r->computing = false;
    if (w->rc != 0) {
        sit_out(r, out, "round_failed", 0, w->d.msg);
        goto out;
    }
    if (r->sat_out)
        goto out; /* the client aborted while the compute ran */
    if (r->va != NULL) {
        if (w->iwords == NULL || w->dim != r->fv.spec.dim) {
            sit_out(r, out, "round_failed", 0, "the compute gave no validated input");
            goto out;
        }
        fv_secagg_outbox_clear(&r->ob);
        fv_diag_t d = {""};
        int rc = fv_vagg_client_set_input(r->va, w->iwords, &r->ob, &d);
        if (rc != 0) {
            sit_out(r, out, "round_failed", rc, d.msg);
            goto out;
        }
        r->ready = true;
        r->uploaded = true; /* the input is committed: its proof goes out now or at KEYLIST */
        flush_outbox(r, out);
        goto out;
    }
    uint64_t want = r->secagg ? r->shape.words : r->shape.plain_n;
    bool f32 = !r->secagg && r->shape.plain_dtype == FV_VEC_F32;
    if (w->dim != want || (f32 ? w->fvec == NULL : w->words == NULL)) {
        char why[128];
        snprintf(why, sizeof why, "the %s compute gave %zu elements, the round has %" PRIu64,
                 r->kind->name, w->dim, want);
        sit_out(r, out, "round_failed", 0, why);
        goto out;
    }
    if (f32)
        r->fvec = w->fvec, w->fvec = NULL;
    else
        r->words = w->words, w->words = NULL;
    r->dim = w->dim;
    r->ready = true;
    if (r->secagg) {
        if (r->sa == NULL || fv_secagg_client_set_input(r->sa, r->words) != 0) {
            sit_out(r, out, "round_failed", 0, "the SecAgg client refused the input");
            goto out;
        }
        if (r->fwd != NULL) {
            uint8_t *fwd = r->fwd;
            size_t len = r->fwd_len;
            r->fwd = NULL;
            pump(r, fwd, len, out); /* tries the upload */
            free(fwd);
            goto out;
        }
    }
    try_upload(r, out);
out:
    fv_round_work_close(w);
    free(w);
}

static void try_upload(fv_around_t *r, fv_round_out_t *out)
{
    if (r->sat_out || !r->go || r->uploaded || !r->ready)
        return;
    if (r->secagg && r->masked == NULL)
        return;
    fv_round_act_t *a = act_push(out, FV_ROUND_ACT_UPLOAD);
    if (a == NULL)
        return; /* kept: a later call tries again */
    a->vec_id = (uint32_t)r->round;
    if (r->secagg) {
        a->dtype = FV_VEC_U32, a->vec = r->masked, a->n = r->masked_words, a->name = "masked";
        r->masked = NULL, r->masked_words = 0;
    } else if (r->shape.plain_dtype == FV_VEC_F32) {
        a->dtype = FV_VEC_F32, a->vec = r->fvec, a->n = r->dim, a->name = "update";
        r->fvec = NULL;
    } else {
        a->dtype = FV_VEC_U32, a->vec = r->words, a->n = r->dim, a->name = "update";
        r->words = NULL;
    }
    r->uploaded = true;
}

void fv_around_on_go(fv_around_t *r, fv_round_out_t *out)
{
    if (r->va != NULL) {
        violation(out, FV_EPROTO, "UPLOAD_GO in a validated round");
        return;
    }
    if (r->go) {
        violation(out, FV_EDUP, "a second UPLOAD_GO");
        return;
    }
    r->go = true;
    try_upload(r, out);
}

void fv_around_upload_failed(fv_around_t *r)
{
    r->uploaded = false;
    r->sat_out = true;
    fv_secagg_client_free(r->sa);
    r->sa = NULL;
    fv_vagg_client_free(r->va);
    r->va = NULL;
}

/* ---- queries ---------------------------------------------------------------------------- */

uint64_t fv_around_round(const fv_around_t *r)
{
    return r->round;
}

const fv_round_kind_t *fv_around_kind(const fv_around_t *r)
{
    return r->kind;
}

bool fv_around_sat_out(const fv_around_t *r)
{
    return r->sat_out;
}

bool fv_around_uploaded(const fv_around_t *r)
{
    return r->uploaded;
}

bool fv_around_computing(const fv_around_t *r)
{
    return r->computing;
}
