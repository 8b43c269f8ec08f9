/* agent_round.c - one round of the agent's job: ROUND_START's checks, the local work
 * queued, the SecAgg client, UPLOAD_GO and the upload, ROUND_END.
 *
 * Protocol (protocols/fv_wire.h, "ROUNDS"), as this side plays it:
 *   ROUND_START               checks (our key at pks[index], policy, t and k as the job
 *                             prescribes, model hash, round kind: 1 stats for round 0, 2
 *                             train for 1..rounds, 3 distill for the rounds after them,
 *                             fv_job_last_round), then queues the work (stats words;
 *                             evaluate + train + encode; or, distill, evaluate student,
 *                             teacher and int8 student + distill + encode) on the thread
 *                             pool and, with SecAgg, starts the client (ADVERTISE goes out
 *                             at once: key agreement overlaps training).
 *   SECAGG                    handed to the client; SHARES_FWD needs our input, so if the
 *                             work has not finished it is copied and handled when it does.
 *                             The client's MASKED message is never sent as SECAGG: it is
 *                             kept until UPLOAD_GO and sent as VEC "masked" (u32 words).
 *   UPLOAD_GO                 may arrive before or after our vector is ready; the upload
 *                             goes out when both happened (VEC "masked" with SecAgg,
 *                             VEC "update" without).
 *   ROUND_END                 frees the round (a work item still running is orphaned and
 *                             its result dropped when it returns).
 *
 * Policy: a round our own policy refuses (cohort or threshold too small, SecAgg
 * parameters other than the job's) is sat out: logged as policy_refusal, nothing is sent
 * for it. A message that breaks the protocol is a violation (agent_conn.c).
 *
 * Threads: the loop thread only. The work item runs on the thread pool (agent_work.c);
 * work_done, its after-work callback, merges the result into the round here. A round
 * that goes away while its work runs is detached (round->work) and the result dropped
 * when it returns.
 *
 * Ownership: the job owns its round (j->round); the round owns its SecAgg client, outbox
 * and vectors until the upload hands one to the agent (tx_buf, freed in agent_conn.c).
 */
#include "agent-int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv_conn.h"
#include "fv_crypto.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_secagg.h"
#include "fv_wire.h"

/* ---- round lifetime and the work's result ------------------------------------------- */

void fv__agent_round_free(around_t *r)
{
    if (r == NULL)
        return;
    if (r->work != NULL)
        r->work->r = NULL; /* orphaned: the after-work callback drops its result */
    fv_secagg_client_free(r->sa);
    fv_secagg_outbox_close(&r->ob);
    if (r->words != NULL)
        sodium_memzero(r->words, r->dim * sizeof *r->words);
    free(r->words);
    free(r->fvec);
    free(r->fwd);
    free(r->masked);
    free(r);
}

static void try_upload(agent_t *a, ajob_t *j, around_t *r);
static void pump_secagg(agent_t *a, ajob_t *j, around_t *r, const uint8_t *msg, size_t len);

static void round_sit_out(ajob_t *j, around_t *r, const char *event, const char *why)
{
    fv__agent_log_job("warn", event, j, (int64_t)r->round, json_pack("{s:s}", "why", why));
    r->sat_out = true;
    fv_secagg_client_free(r->sa);
    r->sa = NULL;
}

static void work_done(uv_work_t *req, int status)
{
    awork_t *w = req->data;
    agent_t *a = w->a;
    ajob_t *j = w->j;
    around_t *r = w->r;
    j->n_busy--;
    if (j->detached || r == NULL || status != 0) {
        if (j->detached && j->n_busy == 0)
            fv__agent_job_destroy(j);
        fv__agent_work_free(w);
        return;
    }
    r->work = NULL;
    if (w->rc != 0) {
        char clean[FV_DIAG_MAX];
        fv__agent_text_clean(w->d.msg, strlen(w->d.msg), clean, sizeof clean);
        round_sit_out(j, r, "round_failed", clean);
        fv__agent_work_free(w);
        return;
    }
    if (w->kind == FV_FED_KIND_TRAIN || w->kind == FV_FED_KIND_DISTILL)
        fv__agent_log_job(
            "info", w->kind == FV_FED_KIND_TRAIN ? "trained" : "distilled", j, (int64_t)r->round,
            json_pack("{s:I,s:o,s:I,s:I}", "epochs", (json_int_t)w->epochs, "train_loss",
                      isfinite(w->train_loss) ? json_real(w->train_loss) : json_null(),
                      "train_rows", (json_int_t)j->n_tr, "val_rows", (json_int_t)j->n_va));
    else
        fv__agent_log_job(
            "info", "stats_ready", j, (int64_t)r->round,
            json_pack("{s:I,s:I}", "train_rows", (json_int_t)j->n_tr, "words", (json_int_t)w->dim));
    r->words = w->words, w->words = NULL;
    r->fvec = w->fvec, w->fvec = NULL;
    r->dim = w->dim;
    r->ready = true;
    fv__agent_work_free(w);
    if (r->sat_out)
        return;
    if (r->secagg) {
        if (r->sa == NULL || fv_secagg_client_set_input(r->sa, r->words) != 0) {
            round_sit_out(j, r, "round_failed", "the SecAgg client refused the input");
            return;
        }
        if (r->fwd != NULL) {
            uint8_t *fwd = r->fwd;
            size_t len = r->fwd_len;
            r->fwd = NULL;
            pump_secagg(a, j, r, fwd, len);
            free(fwd);
            return; /* pump_secagg tried the upload */
        }
    }
    try_upload(a, j, r);
}

/* ---- SecAgg ------------------------------------------------------------------------- */

static bool round_msg_ok(agent_t *a, fv_conn_t *c, const uint8_t job[32], uint64_t round,
                         const char *what, around_t **ret)
{
    ajob_t *j = a->job;
    if (j == NULL || j->loading || memcmp(job, j->digest, 32) != 0) {
        fv__agent_violation(a, c, j, (int64_t)round, FV_EROUND,
                            "%s for a job this agent has not accepted", what);
        return false;
    }
    if (j->round == NULL || j->round->round != round) {
        /* A round we no longer hold (we reconnected, or it ended): stale, not hostile,
         * as long as it is not from the future. */
        if (j->started && round <= j->last_round) {
            fv__agent_log_job("info", "stale_message", j, (int64_t)round,
                              json_pack("{s:s}", "msg", what));
            *ret = NULL;
            return true;
        }
        fv__agent_violation(a, c, j, (int64_t)round, FV_EROUND,
                            "%s for round %" PRIu64 " which has not started", what, round);
        return false;
    }
    *ret = j->round;
    return true;
}

/* Sends every outbox message as SECAGG, except MASKED, which is kept for UPLOAD_GO. */
static void flush_outbox(agent_t *a, ajob_t *j, around_t *r)
{
    for (size_t i = 0; i < r->ob.n; i++) {
        const fv_secagg_outmsg_t *om = &r->ob.msgs[i];
        if (om->len >= 2 && om->data[1] == FV_SECAGG_MSG_MASKED) {
            if (om->len % 4 != 0) {
                round_sit_out(j, r, "round_failed", "masked message length is not whole words");
                break;
            }
            free(r->masked);
            r->masked_words = om->len / 4;
            r->masked = malloc(r->masked_words * sizeof *r->masked);
            if (r->masked == NULL) {
                round_sit_out(j, r, "round_failed", "out of memory");
                break;
            }
            for (size_t k = 0; k < r->masked_words; k++) {
                const uint8_t *p = om->data + 4 * k;
                r->masked[k] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                               (uint32_t)p[3] << 24;
            }
            continue;
        }
        fv_msg_t m = {.type = FV_MSG_SECAGG};
        memcpy(m.u.secagg.job, j->digest, 32);
        m.u.secagg.round = r->round;
        m.u.secagg.data = om->data;
        m.u.secagg.len = om->len;
        if (fv__agent_send_msg(a, &m) != 0)
            break;
    }
    fv_secagg_outbox_clear(&r->ob);
}

/* Hands one coordinator SecAgg message to the client. */
static void pump_secagg(agent_t *a, ajob_t *j, around_t *r, const uint8_t *msg, size_t len)
{
    fv_diag_t d = {""};
    int rc = fv_secagg_client_handle(r->sa, msg, len, &r->ob, &d);
    if (rc != 0) {
        char clean[FV_DIAG_MAX];
        fv__agent_text_clean(d.msg, strlen(d.msg), clean, sizeof clean);
        if (fv_secagg_client_phase(r->sa) < 0) {
            /* The client aborted: our own rules (policy, signatures, threshold, never
             * both shares) said no. Sit the round out; the connection stays. */
            const char *ev = (rc == FV_EPOLICY || rc == FV_EBOTHSHARES || rc == FV_ETHRESHOLD)
                                 ? "policy_refusal"
                                 : "secagg_abort";
            fv__agent_log_job("warn", ev, j, (int64_t)r->round,
                              json_pack("{s:s,s:s}", "why", clean, "err", fv_err_name(rc)));
            r->sat_out = true;
            fv_secagg_client_free(r->sa);
            r->sa = NULL;
            fv_secagg_outbox_clear(&r->ob);
            return;
        }
        fv__agent_violation(a, a->conn, j, (int64_t)r->round, rc, "SecAgg message rejected: %s",
                            clean);
        return;
    }
    flush_outbox(a, j, r);
    try_upload(a, j, r);
}

void fv__agent_on_secagg(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    around_t *r;
    if (!round_msg_ok(a, c, m->u.secagg.job, m->u.secagg.round, "SECAGG", &r) || r == NULL)
        return;
    ajob_t *j = a->job;
    if (!r->secagg) {
        fv__agent_violation(a, c, j, (int64_t)r->round, FV_EPROTO,
                            "SECAGG in a job without SecAgg");
        return;
    }
    if (r->sat_out || r->sa == NULL)
        return;
    const uint8_t *p = m->u.secagg.data;
    size_t len = m->u.secagg.len;
    if (len >= 2 && p[1] == FV_SECAGG_MSG_SHARES_FWD && !r->ready) {
        /* The masked input needs our vector: keep the message until the work is done. */
        if (r->fwd != NULL) {
            fv__agent_violation(a, c, j, (int64_t)r->round, FV_EDUP, "a second SHARES_FWD");
            return;
        }
        r->fwd = malloc(len);
        if (r->fwd == NULL) {
            round_sit_out(j, r, "round_failed", "out of memory");
            return;
        }
        memcpy(r->fwd, p, len);
        r->fwd_len = len;
        return;
    }
    pump_secagg(a, j, r, p, len);
}

/* ---- uploads ------------------------------------------------------------------------ */

static void try_upload(agent_t *a, ajob_t *j, around_t *r)
{
    if (r->sat_out || !r->go || r->uploaded || !r->ready || a->conn == NULL)
        return;
    void *vec;
    uint64_t n;
    fv_vec_dtype_t dt;
    const char *name;
    if (r->secagg) {
        if (r->masked == NULL)
            return;
        fv__agent_kill_point("before-masked", r->round);
        vec = r->masked, n = r->masked_words, dt = FV_VEC_U32, name = "masked";
        r->masked = NULL;
    } else if (r->fvec != NULL) {
        vec = r->fvec, n = r->dim, dt = FV_VEC_F32, name = "update";
        r->fvec = NULL;
    } else {
        vec = r->words, n = r->dim, dt = FV_VEC_U32, name = "update";
        r->words = NULL;
    }
    if (a->tx_buf != NULL) {
        fv__agent_log_job("error", "upload_failed", j, (int64_t)r->round,
                          json_pack("{s:s}", "why", "a previous vector is still being sent"));
        free(vec);
        r->sat_out = true;
        return;
    }
    r->uploaded = true;
    a->tx_buf = vec;
    a->tx_bytes = n * FV_VEC_ELEM_BYTES;
    a->tx_round = r->round;
    a->tx_job = j;
    snprintf(a->tx_name, sizeof a->tx_name, "%s", name);
    a->up_unacked = true;
    int rc = fv_conn_send_vec(a->conn, (uint32_t)r->round, dt, vec, n, name);
    if (rc != 0) {
        fv__agent_log_job("error", "upload_failed", j, (int64_t)r->round,
                          json_pack("{s:s,s:s}", "why", fv_strerror(rc), "err", fv_err_name(rc)));
        free(a->tx_buf);
        a->tx_buf = NULL;
    }
}

void fv__agent_on_upload_go(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    around_t *r;
    if (!round_msg_ok(a, c, m->u.upload_go.job, m->u.upload_go.round, "UPLOAD_GO", &r) || r == NULL)
        return;
    if (r->go) {
        fv__agent_violation(a, c, a->job, (int64_t)r->round, FV_EDUP, "a second UPLOAD_GO");
        return;
    }
    r->go = true;
    try_upload(a, a->job, r);
}

/* ---- ROUND_START / ROUND_END -------------------------------------------------------- */

void fv__agent_on_round_start(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    const __typeof__(m->u.round_start) *rs = &m->u.round_start;
    ajob_t *j = a->job;
    int64_t rn = (int64_t)rs->round;
    fv__agent_kill_point("round-start", rs->round);
    if (j == NULL || j->loading || memcmp(rs->job, j->digest, 32) != 0) {
        fv__agent_violation(a, c, j, rn, FV_EROUND,
                            "ROUND_START for a job this agent has not accepted");
        return;
    }
    const fv_job_t *job = j->job;
    if (j->round != NULL) {
        /* A new round means the coordinator gave up on the previous one. */
        fv__agent_log_job("warn", "round_abandoned", j, (int64_t)j->round->round,
                          json_pack("{s:s}", "why", "the next round started"));
        fv__agent_round_free(j->round);
        j->round = NULL;
    }
    bool kind_ok = rs->kind == FV_FED_KIND_STATS     ? rs->round == 0
                   : rs->kind == FV_FED_KIND_TRAIN   ? rs->round >= 1 && rs->round <= job->rounds
                   : rs->kind == FV_FED_KIND_DISTILL ? job->distill.on && rs->round > job->rounds &&
                                                           rs->round <= fv_job_last_round(job)
                                                     : false;
    if (!kind_ok) {
        fv__agent_violation(a, c, j, rn, FV_EPROTO,
                            "ROUND_START round %" PRIu64 " kind %" PRIu32 " (the job has %" PRIu32
                            " training rounds and %" PRIu32 " distill rounds; round 0 is the stats "
                            "round, kind 1; then kind 2, then kind 3)",
                            rs->round, rs->kind, job->rounds,
                            job->distill.on ? job->distill.rounds : 0);
        return;
    }
    if (j->started && rs->round < j->last_round) {
        fv__agent_violation(a, c, j, rn, FV_EROUND,
                            "ROUND_START for round %" PRIu64 " after round %" PRIu64, rs->round,
                            j->last_round);
        return;
    }
    if (rs->index >= rs->n || rs->pks_len != (size_t)rs->n * 32 ||
        memcmp(rs->pks + (size_t)rs->index * 32, a->pk, 32) != 0) {
        fv__agent_violation(
            a, c, j, rn, FV_EPROTO,
            "ROUND_START: the cohort key at index %" PRIu32 " is not this agent's key", rs->index);
        return;
    }
    if (rs->kind == FV_FED_KIND_DISTILL) {
        if (!j->has_teacher || !j->has_student || !rs->has_model ||
            memcmp(rs->model, j->student_hash, 32) != 0) {
            fv__agent_violation(
                a, c, j, rn, FV_EPROTO, "ROUND_START: %s",
                !j->has_teacher   ? "no teacher model was sent before the distill round"
                : !j->has_student ? "no student model was sent before the distill round"
                                  : "the announced model hash is not the student this "
                                    "agent holds");
            return;
        }
    }
    if (rs->kind == FV_FED_KIND_TRAIN || rs->kind == FV_FED_KIND_DISTILL) {
        if (rs->kind == FV_FED_KIND_TRAIN &&
            (!j->has_global || !rs->has_model || memcmp(rs->model, j->global_hash, 32) != 0)) {
            fv__agent_violation(a, c, j, rn, FV_EPROTO, "ROUND_START: %s",
                                !j->has_global
                                    ? "no global model was sent before the round"
                                    : "the announced model hash is not the model this agent holds");
            return;
        }
        if (!j->has_features) {
            fv__agent_violation(a, c, j, rn, FV_EPROTO,
                                "ROUND_START: training round before the stats vector was sent");
            return;
        }
        if (rs->n_ref < j->n_tr || rs->n_ref == 0) {
            fv__agent_violation(a, c, j, rn, FV_EPROTO,
                                "ROUND_START: nref %" PRIu64
                                " is below this agent's %zu training rows",
                                rs->n_ref, j->n_tr);
            return;
        }
    }
    j->started = true;
    j->last_round = rs->round;

    around_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return;
    j->round = r;
    r->round = rs->round;
    r->kind = rs->kind;
    r->index = rs->index;
    r->n = rs->n;
    r->t = rs->t;
    r->k = rs->k;
    r->n_ref = rs->n_ref;
    r->secagg = job->secagg.on;
    fv_secagg_outbox_init(&r->ob);
    fv__agent_log_job("info", "round_start", j, rn,
                      json_pack("{s:s,s:I,s:I,s:I,s:I,s:b}", "kind",
                                rs->kind == FV_FED_KIND_STATS   ? "stats"
                                : rs->kind == FV_FED_KIND_TRAIN ? "train"
                                                                : "distill",
                                "index", (json_int_t)rs->index, "n", (json_int_t)rs->n, "t",
                                (json_int_t)rs->t, "k", (json_int_t)rs->k, "secagg", r->secagg));

    /* Local policy first: it is ours, not the coordinator's. */
    char why[512];
    if (a->cfg->min_cohort > 0 && rs->n < a->cfg->min_cohort) {
        snprintf(why, sizeof why, "cohort of %" PRIu32 " agents is below min_cohort %" PRIu32,
                 rs->n, a->cfg->min_cohort);
        round_sit_out(j, r, "policy_refusal", why);
        return;
    }
    if (r->secagg) {
        uint32_t t, k;
        fv_diag_t d = {""};
        int rc = fv_job_secagg_for(job, rs->n, &t, &k, &d);
        if (rc != 0 || t != rs->t || k != rs->k) {
            snprintf(why, sizeof why,
                     "SecAgg t=%" PRIu32 " k=%" PRIu32 " for %" PRIu32 " agents is not what the "
                     "job prescribes%s%s",
                     rs->t, rs->k, rs->n, rc != 0 ? ": " : "", rc != 0 ? d.msg : "");
            round_sit_out(j, r, "policy_refusal", why);
            return;
        }
        fv_fed_layout_t lay = {0};
        if (rs->kind != FV_FED_KIND_STATS)
            fv_fed_round_layout(
                job, rs->kind, rs->kind == FV_FED_KIND_DISTILL ? j->s_n_params : j->n_params, &lay);
        fv_secagg_params_t p = {.job_id = fv__agent_le64(j->digest),
                                .round = rs->round,
                                .n_clients = rs->n,
                                .threshold = rs->t,
                                .n_neighbors = rs->k,
                                .dim =
                                    (uint32_t)(rs->kind == FV_FED_KIND_STATS ? j->sl.dim : lay.dim),
                                .prg = FV_PRG_DEFAULT,
                                .quant_bits = 0,
                                .clip = 0,
                                .identity_pks = rs->pks};
        memcpy(p.graph_seed, rs->gseed, sizeof p.graph_seed);
        fv_secagg_policy_t pol = {.min_cohort = a->cfg->min_cohort,
                                  .min_threshold = a->cfg->min_threshold};
        fv_rand_system(&r->rng);
        rc = fv_secagg_client_new(&p, &pol, rs->index, a->sk, &r->rng, &r->sa, &d);
        if (rc == 0)
            rc = fv_secagg_client_start(r->sa, &r->ob, &d);
        if (rc != 0) {
            char clean[FV_DIAG_MAX];
            fv__agent_text_clean(d.msg, strlen(d.msg), clean, sizeof clean);
            round_sit_out(j, r, rc == FV_EPOLICY ? "policy_refusal" : "round_failed", clean);
            return;
        }
        flush_outbox(a, j, r);
    }

    awork_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        round_sit_out(j, r, "round_failed", "out of memory");
        return;
    }
    w->a = a;
    w->j = j;
    w->r = r;
    w->kind = rs->kind;
    w->round = rs->round;
    w->n_ref = rs->n_ref;
    w->secagg = r->secagg;
    uint8_t seedbuf[16 + FV_NAME_MAX];
    size_t nl = strlen(a->cfg->name);
    for (int i = 0; i < 8; i++) {
        seedbuf[i] = (uint8_t)(job->seed >> (8 * i));
        seedbuf[8 + i] = (uint8_t)(rs->round >> (8 * i));
    }
    memcpy(seedbuf + 16, a->cfg->name, nl > FV_NAME_MAX ? FV_NAME_MAX : nl);
    w->seed = fv__agent_hash_u64(seedbuf, 16 + (nl > FV_NAME_MAX ? FV_NAME_MAX : nl));
    {
        static const char label[] = "fedvault quantize";
        uint8_t msg[sizeof label - 1 + 32 + 8];
        memcpy(msg, label, sizeof label - 1);
        memcpy(msg + sizeof label - 1, rs->job, 32);
        for (int i = 0; i < 8; i++)
            msg[sizeof label - 1 + 32 + i] = (uint8_t)(rs->round >> (8 * i));
        crypto_generichash(w->qkey, sizeof w->qkey, msg, sizeof msg, a->sk, 32);
    }
    if (rs->kind == FV_FED_KIND_TRAIN) {
        w->global = malloc(j->n_params * sizeof *w->global);
        if (w->global != NULL)
            memcpy(w->global, j->global, j->n_params * sizeof *w->global);
    } else if (rs->kind == FV_FED_KIND_DISTILL) {
        w->global = malloc(j->s_n_params * sizeof *w->global);
        w->teacher = malloc(j->n_params * sizeof *w->teacher);
        if (w->global != NULL && w->teacher != NULL) {
            memcpy(w->global, j->student, j->s_n_params * sizeof *w->global);
            memcpy(w->teacher, j->teacher, j->n_params * sizeof *w->teacher);
        }
    }
    if (rs->kind != FV_FED_KIND_STATS &&
        (w->global == NULL || (rs->kind == FV_FED_KIND_DISTILL && w->teacher == NULL))) {
        fv__agent_work_free(w);
        round_sit_out(j, r, "round_failed", "out of memory");
        return;
    }
    w->req.data = w;
    int rc = uv_queue_work(a->loop, &w->req, fv__agent_work_run, work_done);
    if (rc != 0) {
        fv__agent_work_free(w);
        round_sit_out(j, r, "round_failed", "cannot queue the local work");
        return;
    }
    j->n_busy++;
    r->work = w;
}

void fv__agent_on_round_end(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    ajob_t *j = a->job;
    const __typeof__(m->u.round_end) *re = &m->u.round_end;
    if (j == NULL || j->loading || memcmp(re->job, j->digest, 32) != 0) {
        fv__agent_violation(a, c, j, (int64_t)re->round, FV_EROUND,
                            "ROUND_END for a job this agent has not accepted");
        return;
    }
    if (!j->started || re->round > j->last_round) {
        fv__agent_violation(a, c, j, (int64_t)re->round, FV_EROUND,
                            "ROUND_END for round %" PRIu64 " which has not started", re->round);
        return;
    }
    char reason[FV_WIRE_TEXT_MAX + 1];
    fv__agent_text_clean(re->reason.ptr, re->reason.len, reason, sizeof reason);
    bool took_part = j->round != NULL && j->round->round == re->round && j->round->uploaded;
    if (re->status != 0)
        fv__agent_log_job("warn", "round_end", j, (int64_t)re->round,
                          json_pack("{s:i,s:s,s:s,s:b}", "status", (int)re->status, "err",
                                    fv_err_name(re->status), "reason", reason, "uploaded",
                                    took_part));
    else
        fv__agent_log_job("info", "round_end", j, (int64_t)re->round,
                          json_pack("{s:i,s:b}", "status", 0, "uploaded", took_part));
    if (j->round != NULL && j->round->round == re->round) {
        fv__agent_round_free(j->round);
        j->round = NULL;
    }
}
