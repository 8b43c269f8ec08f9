/* agent_round.c - the daemon's shell around an agent's round machine (fv_around_t,
 * protocols/fv_round.h and round_agent.c): the machine decides, this file carries its
 * actions over the connection, the thread pool and the log.
 *
 * Protocol (protocols/fv_wire.h, "ROUNDS"), as this side plays it:
 *   ROUND_START   the job's checks here (accepted, not loading), a round still held is
 *                 abandoned (round_abandoned), for a SecAgg job the cohort's
 *                 certificates (agent_cohort.c: a violation refuses the job), then
 *                 fv_around_check (round kind for the
 *                 number, no older round, our key at our index, the model hash, the
 *                 stats vector, n_ref) and fv_around_new (policy, SecAgg client,
 *                 ADVERTISE, COMPUTE).
 *   SECAGG        the job's and round's checks here (stale_message for a round we no
 *                 longer hold), then fv_around_on_secagg.
 *   UPLOAD_GO     the same checks, then fv_around_on_go.
 *   ROUND_END     fv_around_check_end, round_end logged, the round freed (a compute still
 *                 running is orphaned and its result dropped when it returns).
 *
 * Actions (fv_round_out_t): SEND -> fv__agent_send_msg (after a failed send, the rest of
 * that batch's SENDs are skipped); UPLOAD -> the vector handed to the agent (tx_buf) and
 * fv_conn_send_vec ("before-masked" kill point first); SIT_OUT -> its event logged {why,
 * err when the SecAgg client gave one}, and a refusal by the agent's policy audited
 * (policy.refused {job, round, scope "round", why}); VIOLATION -> fv__agent_violation (the
 * connection closes; nothing after it in the batch runs); COMPUTE -> the job's parameters the kind
 * starts from copied into the work (FV_ROUND_NEEDS_*) and the work queued on the thread
 * pool (work_run: kind->compute over the job's fv_round_data_t). A compute that cannot be
 * queued goes back to the machine at once with its error (round_failed).
 *
 * Threads: the loop thread, except work_run (the thread pool), which reads only the job's
 * read-only data (dataset, splits, feature matrices: written once before any training
 * work is queued; a new stats vector replaces them only while no work runs, agent_conn.c)
 * and writes only its fv_round_work_t. work_done, its after-work callback, hands the
 * work back with fv_around_computed when the round still exists, else drops it. A job
 * that goes away while a compute runs is detached (job->n_busy) and freed here.
 *
 * Ownership: the job owns its round (j->round), the round its machine; the work item
 * (awork_t) owns its fv_round_work_t until work_done hands it back (the machine takes it)
 * or closes it. An upload's vector belongs to the agent (tx_buf, freed in agent_conn.c).
 */
#include "agent-int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "fv_conn.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_round.h"
#include "fv_wire.h"

/* ---- the machine's view of the job ------------------------------------------------------ */

static void held_of(const agent_t *a, const ajob_t *j, fv_around_held_t *h)
{
    memset(h, 0, sizeof *h);
    h->kinds = a->kinds;
    h->job = j->job;
    memcpy(h->digest, j->digest, 32);
    h->name = a->cfg->name;
    h->pk = a->pk;
    h->sk = a->sk;
    h->sizes = (fv_round_sizes_t){
        .job = j->job, .sl = &j->sl, .n_params = j->n_params, .s_n_params = j->s_n_params};
    h->started = j->started;
    h->last_round = j->last_round;
    h->has_global = j->has_global;
    h->has_student = j->has_student;
    h->has_teacher = j->has_teacher;
    h->has_features = j->has_features;
    memcpy(h->global_hash, j->global_hash, 32);
    memcpy(h->student_hash, j->student_hash, 32);
    memcpy(h->teacher_hash, j->teacher_hash, 32);
    h->n_tr = j->n_tr;
    h->min_cohort = a->cfg->min_cohort;
    h->min_threshold = a->cfg->min_threshold;
    h->federation = a->cfg->federation;
}

void fv__agent_round_free(around_t *r)
{
    if (r == NULL)
        return;
    if (r->work != NULL)
        r->work->r = NULL; /* orphaned: the after-work callback drops its result */
    fv_around_free(r->m);
    free(r);
}

/* ---- the compute on the thread pool --------------------------------------------------- */

/* FV_TEST_HOLD_COMPUTE="R1,R2,...:PREFIX", for the tests only: the compute of round R (one
 * of those listed) waits on the thread pool until the file PREFIX-R exists (at most 600 s),
 * so a test holds a round open at a known point (SecAgg: phase 2, the masked input, needs
 * the compute) for as long as it needs, without a timing window; the loop goes on (PINGs,
 * the other phases). Read on the loop thread; the path is written into the work item. */
static bool test_hold_path(uint64_t round, char *out, size_t cap)
{
    const char *e = getenv("FV_TEST_HOLD_COMPUTE");
    const char *colon = e != NULL ? strchr(e, ':') : NULL;
    if (colon == NULL || colon[1] == '\0')
        return false;
    for (const char *p = e; p < colon;) {
        char *end;
        unsigned long long r = strtoull(p, &end, 10);
        if (end == p)
            return false;
        if (r == round) {
            int n = snprintf(out, cap, "%s-%" PRIu64, colon + 1, round);
            return n > 0 && (size_t)n < cap;
        }
        p = *end == ',' ? end + 1 : colon;
    }
    return false;
}

static void test_hold(const char *path)
{
    for (int i = 0; i < 600 * 50 && access(path, F_OK) != 0; i++)
        uv_sleep(20);
}

static void work_run(uv_work_t *req)
{
    awork_t *q = req->data;
    const ajob_t *j = q->j;
    if (q->hold != NULL)
        test_hold(q->hold);
    fv_round_data_t data = {.job = j->job,
                            .ds = j->ds,
                            .tr = j->tr,
                            .va = j->va,
                            .n_tr = j->n_tr,
                            .n_va = j->n_va,
                            .sl = &j->sl,
                            .arch = &j->arch,
                            .s_arch = &j->s_arch,
                            .n_feat = j->n_feat,
                            .n_params = j->n_params,
                            .s_n_params = j->s_n_params,
                            .x_tr = j->x_tr,
                            .x_va = j->x_va,
                            .y_tr = j->y_tr,
                            .y_va = j->y_va,
                            .pp = j->pp,
                            .priv = j->priv.on ? &j->priv : NULL};
    int rc = q->w->kind->compute(&data, q->w);
    if (rc != 0 && q->w->rc == 0)
        q->w->rc = rc;
}

static void run_actions(agent_t *a, fv_conn_t *c, ajob_t *j, around_t *r, fv_round_out_t *out);

static void work_done(uv_work_t *req, int status)
{
    awork_t *q = req->data;
    agent_t *a = q->a;
    ajob_t *j = q->j;
    around_t *r = q->r;
    fv_round_work_t *w = q->w;
    free(q);
    j->n_busy--;
    if (r != NULL)
        r->work = NULL;
    if (j->detached || r == NULL || status != 0) {
        if (j->detached && j->n_busy == 0)
            fv__agent_job_destroy(j);
        fv_round_work_close(w);
        free(w);
        return;
    }
    if (w->rc == 0) {
        uint32_t kind = w->kind->id;
        if (kind == FV_FED_KIND_TRAIN || kind == FV_FED_KIND_DISTILL)
            fv__agent_log_job(
                "info", kind == FV_FED_KIND_TRAIN ? "trained" : "distilled", j, (int64_t)w->round,
                json_pack("{s:I,s:o,s:I,s:I,s:f,s:b}", "epochs", (json_int_t)w->epochs,
                          "train_loss",
                          isfinite(w->train_loss) ? json_real(w->train_loss) : json_null(),
                          "train_rows", (json_int_t)j->n_tr, "val_rows", (json_int_t)j->n_va,
                          "update_norm", w->update_norm, "clipped", (int)w->update_clipped));
        else if (kind == FV_FED_KIND_EXPLAIN)
            fv__agent_log_job("info", "explained", j, (int64_t)w->round,
                              json_pack("{s:I,s:I}", "val_rows", (json_int_t)j->n_va, "words",
                                        (json_int_t)w->dim));
        else
            fv__agent_log_job("info", "stats_ready", j, (int64_t)w->round,
                              json_pack("{s:I,s:I}", "train_rows", (json_int_t)j->n_tr, "words",
                                        (json_int_t)w->dim));
    }
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_around_computed(r->m, w, &out);
    run_actions(a, a->conn, j, r, &out);
    fv_round_out_close(&out);
}

/* Copies in the parameters the kind starts from and queues the compute. On failure the
 * work is returned with its error set (the caller hands it back to the machine). */
static fv_round_work_t *queue_compute(agent_t *a, ajob_t *j, around_t *r, fv_round_work_t *w)
{
    const char *why = "out of memory";
    uint32_t needs = w->kind->needs;
    awork_t *q = calloc(1, sizeof *q);
    if (q == NULL)
        goto fail;
    if (needs & FV_ROUND_NEEDS_STUDENT) {
        if ((w->global = malloc(j->s_n_params * sizeof *w->global)) == NULL)
            goto fail;
        memcpy(w->global, j->student, j->s_n_params * sizeof *w->global);
    } else if ((needs & FV_ROUND_NEEDS_FINAL) && j->job->distill.on) {
        /* the final training model of a distilling job is its teacher */
        if ((w->global = malloc(j->n_params * sizeof *w->global)) == NULL)
            goto fail;
        memcpy(w->global, j->teacher, j->n_params * sizeof *w->global);
    } else if (needs & (FV_ROUND_NEEDS_GLOBAL | FV_ROUND_NEEDS_FINAL)) {
        if ((w->global = malloc(j->n_params * sizeof *w->global)) == NULL)
            goto fail;
        memcpy(w->global, j->global, j->n_params * sizeof *w->global);
    }
    if (needs & FV_ROUND_NEEDS_TEACHER) {
        if ((w->teacher = malloc(j->n_params * sizeof *w->teacher)) == NULL)
            goto fail;
        memcpy(w->teacher, j->teacher, j->n_params * sizeof *w->teacher);
    }
    w->train_threads = a->cfg->threads;
    q->a = a;
    q->j = j;
    q->r = r;
    q->w = w;
    q->hold = test_hold_path(w->round, q->hold_path, sizeof q->hold_path) ? q->hold_path : NULL;
    q->req.data = q;
    if (uv_queue_work(a->loop, &q->req, work_run, work_done) != 0) {
        why = "cannot queue the local work";
        goto fail;
    }
    j->n_busy++;
    r->work = q;
    return NULL;
fail:
    free(q);
    w->rc = FV_ENOMEM;
    snprintf(w->d.msg, sizeof w->d.msg, "%s", why);
    return w;
}

/* ---- carrying the machine's actions --------------------------------------------------- */

static void upload(agent_t *a, ajob_t *j, around_t *r, fv_round_act_t *act)
{
    uint64_t rn = fv_around_round(r->m);
    if (a->conn == NULL) { /* unreachable: a closed connection frees the round */
        fv_around_upload_failed(r->m);
        return;
    }
    if (strcmp(act->name, "masked") == 0)
        fv__agent_kill_point("before-masked", rn);
    if (a->tx_buf != NULL) {
        fv__agent_log_job("error", "upload_failed", j, (int64_t)rn,
                          json_pack("{s:s}", "why", "a previous vector is still being sent"));
        fv_around_upload_failed(r->m); /* the vector is freed with the action list */
        return;
    }
    void *vec = act->vec;
    act->vec = NULL;
    a->tx_buf = vec;
    a->tx_bytes = act->n * FV_VEC_ELEM_BYTES;
    a->tx_round = rn;
    a->tx_job = j;
    snprintf(a->tx_name, sizeof a->tx_name, "%s", act->name);
    a->up_unacked = true;
    int rc = fv_conn_send_vec(a->conn, act->vec_id, act->dtype, vec, act->n, act->name);
    if (rc != 0) {
        fv__agent_log_job("error", "upload_failed", j, (int64_t)rn,
                          json_pack("{s:s,s:s}", "why", fv_strerror(rc), "err", fv_err_name(rc)));
        free(a->tx_buf);
        a->tx_buf = NULL;
    }
}

/* Runs out's actions in order, then clears it. A compute that could not be queued is
 * handed back to the machine and its actions run in turn. */
static void run_actions(agent_t *a, fv_conn_t *c, ajob_t *j, around_t *r, fv_round_out_t *out)
{
    for (;;) {
        fv_round_work_t *failed = NULL;
        bool send_failed = false;
        for (size_t i = 0; i < out->n; i++) {
            fv_round_act_t *act = &out->acts[i];
            int64_t rn = (int64_t)fv_around_round(r->m);
            char clean[sizeof act->why];
            switch (act->type) {
            case FV_ROUND_ACT_SEND:
                if (!send_failed && fv__agent_send_msg(a, &act->msg) != 0)
                    send_failed = true;
                break;
            case FV_ROUND_ACT_UPLOAD:
                upload(a, j, r, act);
                break;
            case FV_ROUND_ACT_SIT_OUT:
                fv__agent_text_clean(act->why, strlen(act->why), clean, sizeof clean);
                fv__agent_log_job("warn", act->event, j, rn,
                                  act->err != 0 ? json_pack("{s:s,s:s}", "why", clean, "err",
                                                            fv_err_name(act->err))
                                                : json_pack("{s:s}", "why", clean));
                /* A refusal by the bank's own policy is evidence too: nothing was sent
                 * for the round, and the audit log says why. */
                if (strcmp(act->event, "policy_refusal") == 0 &&
                    fv__agent_audit_append(a, "policy.refused",
                                           json_pack("{s:s,s:I,s:s,s:s}", "job", j->hex, "round",
                                                     (json_int_t)rn, "scope", "round", "why",
                                                     clean)) != 0) {
                    fv_round_out_clear(out);
                    fv__agent_stop(a, 1);
                    return; /* no record, no refusal either: the agent stops */
                }
                break;
            case FV_ROUND_ACT_VIOLATION:
                fv__agent_violation(a, c, j, rn, act->err, "%s", act->why);
                fv_round_out_clear(out);
                return; /* the connection is closing: nothing more for this round */
            case FV_ROUND_ACT_COMPUTE:
                failed = queue_compute(a, j, r, act->work);
                act->work = NULL;
                break;
            default:
                break; /* not an agent's action */
            }
        }
        fv_round_out_clear(out);
        if (failed == NULL)
            return;
        fv_around_computed(r->m, failed, out);
    }
}

/* ---- SECAGG, UPLOAD_GO ------------------------------------------------------------------ */

static bool round_msg_ok(agent_t *a, fv_conn_t *c, const uint8_t job[32], uint64_t round,
                         const char *what, around_t **ret)
{
    ajob_t *j = a->job;
    if (j == NULL || j->loading || memcmp(job, j->digest, 32) != 0) {
        fv__agent_violation(a, c, j, (int64_t)round, FV_EROUND,
                            "%s for a job this agent has not accepted", what);
        return false;
    }
    if (j->round == NULL || fv_around_round(j->round->m) != round) {
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

void fv__agent_on_secagg(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    around_t *r;
    if (!round_msg_ok(a, c, m->u.secagg.job, m->u.secagg.round, "SECAGG", &r) || r == NULL)
        return;
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_around_on_secagg(r->m, m, &out);
    run_actions(a, c, a->job, r, &out);
    fv_round_out_close(&out);
}

void fv__agent_on_upload_go(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    around_t *r;
    if (!round_msg_ok(a, c, m->u.upload_go.job, m->u.upload_go.round, "UPLOAD_GO", &r) || r == NULL)
        return;
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_around_on_go(r->m, &out);
    run_actions(a, c, a->job, r, &out);
    fv_round_out_close(&out);
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
    if (j->round != NULL) {
        /* A new round means the coordinator gave up on the previous one. */
        fv__agent_log_job("warn", "round_abandoned", j, (int64_t)fv_around_round(j->round->m),
                          json_pack("{s:s}", "why", "the next round started"));
        fv__agent_round_free(j->round);
        j->round = NULL;
    }
    /* a SecAgg cohort must be certified member by member; else the job is refused and
     * gone (agent_cohort.c) */
    if (j->job->secagg.on && fv__agent_cohort_check(a, c, j, m) != 0)
        return;
    fv_around_held_t h;
    held_of(a, j, &h);
    char why[512];
    int rc = fv_around_check(&h, m, why, sizeof why);
    if (rc != 0) {
        fv__agent_violation(a, c, j, rn, rc, "%s", why);
        return;
    }
    j->started = true;
    j->last_round = rs->round;

    around_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return;
    const fv_round_kind_t *kind = fv_round_kind_by_id(a->kinds, rs->kind);
    fv__agent_log_job("info", "round_start", j, rn,
                      json_pack("{s:s,s:I,s:I,s:I,s:I,s:b}", "kind", kind->name, "index",
                                (json_int_t)rs->index, "n", (json_int_t)rs->n, "t",
                                (json_int_t)rs->t, "k", (json_int_t)rs->k, "secagg",
                                j->job->secagg.on));
    fv_rand_t rng;
    fv_rand_system(&rng);
    fv_round_out_t out;
    fv_round_out_init(&out);
    if (fv_around_new(&h, m, &rng, &r->m, &out) != 0) {
        free(r);
        fv_round_out_close(&out);
        return;
    }
    j->round = r;
    run_actions(a, c, j, r, &out);
    fv_round_out_close(&out);
}

void fv__agent_on_round_end(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    ajob_t *j = a->job;
    const __typeof__(m->u.round_end) *re = &m->u.round_end;
    if (j == NULL || j->loading) {
        fv__agent_violation(a, c, j, (int64_t)re->round, FV_EROUND,
                            "ROUND_END for a job this agent has not accepted");
        return;
    }
    fv_around_held_t h;
    held_of(a, j, &h);
    char why[512];
    int rc = fv_around_check_end(&h, m, why, sizeof why);
    if (rc != 0) {
        fv__agent_violation(a, c, j, (int64_t)re->round, rc, "%s", why);
        return;
    }
    char reason[FV_WIRE_TEXT_MAX + 1];
    fv__agent_text_clean(re->reason.ptr, re->reason.len, reason, sizeof reason);
    bool ours = j->round != NULL && fv_around_round(j->round->m) == re->round;
    bool took_part = ours && fv_around_uploaded(j->round->m);
    if (re->status != 0)
        fv__agent_log_job("warn", "round_end", j, (int64_t)re->round,
                          json_pack("{s:i,s:s,s:s,s:b}", "status", (int)re->status, "err",
                                    fv_err_name(re->status), "reason", reason, "uploaded",
                                    took_part));
    else
        fv__agent_log_job("info", "round_end", j, (int64_t)re->round,
                          json_pack("{s:i,s:b}", "status", 0, "uploaded", took_part));
    if (ours) {
        fv__agent_round_free(j->round);
        j->round = NULL;
    }
}
