/* coord_round.c - the round driver: cohort, the round machine's actions, decode, commit.
 *
 * The round itself (members' flags, SecAgg phases, upload admission, deadlines, the checks
 * of what members send, the plain sums) is protocols' transport-free machine fv_cround_*
 * (fv_round.h, round_coord.c); this file is its I/O shell. coord__round_start picks the
 * cohort and the round (the job machine, protocols/fv_round_job.h, says which number and
 * kind run next; the kinds table says what its vector is), sends the models a member
 * lacks, and starts the
 * machine; every call into it (here, coord_conn.c, the tick) ends in coord__round_exec,
 * which carries out its actions: SEND onto the member's queue, DROP closes the member's
 * connection, LOG a line with the job, round and agent, PHASE the phase_s metric and the
 * crash points secagg-advertise/-shares/-upload/-unmask (before the next phase's messages
 * go out), DONE round_finish. round_finish decodes the sum with the kind's decode, hands
 * it to the job machine (fv_cjob_apply_stats / fv_cjob_apply_round: the preprocessing and
 * initial model, or early stopping and the server optimizer's step; fv_cjob_round_done)
 * and does the I/O: the model file, the commit with the machine's checkpoint, ROUND_END
 * (fv_cround_end), receipts, rounds.jsonl. The message sequence is the "ROUNDS"
 * comment of protocols/fv_wire.h; the arithmetic of the vectors is protocols/fv_fed.h.
 *
 * Job runner states: WAITING (fewer than min_agents accepted the job) -> ROUND (the
 * cohort = accepted, connected agents at round start, sorted by name) -> WAITING/next
 * ROUND -> DONE. Round 0 sums the agents' feature moments (stats); rounds 1..R train.
 * Each phase has a deadline (job deadlines_ms); agents that do not answer in time, or
 * disconnect, are dropouts: a SecAgg phase closes with the survivors when at least t
 * answered, else the round aborts (ROUND_END with the code) and runs again under the
 * same number with the same global model, at most ROUND_ATTEMPTS times before the job
 * fails. Masked (or plain) uploads are admitted a few at a time
 * (--max-uploads), so the coordinator holds O(max_uploads * d) of upload buffers plus one
 * accumulator (the machine's), whatever the cohort size.
 *
 * Early stopping (the job machine's): round r's global validation metrics (from summed
 * histograms) judge the model sent in round r. The best one (by the job's metric) is
 * kept; the phase stops after `patience` rounds without improvement or after its last
 * round, and the best model is the result. With patience 0 (no early stopping) the result
 * is the model after the last update instead, which no round evaluated.
 *
 * Durability: a round's outcome is committed in one SQLite transaction with the checkpoint
 * to resume from (next round, stats sum, global and best model files, server optimizer
 * state, early-stopping counters) and the new model version; the model file is written and
 * fsynced before that transaction. Agents hear of the round's end (ROUND_END, RECEIPT)
 * only after the commit (round_commit); a restart resumes the job (coord_job.c). The
 * round's line of rounds.jsonl (--out) is written after the commit too, with the loop's
 * longest callback of the round (coord_loopstat.c), which the state never records.
 *
 * Ownership: c->rnd's cohort and machine live from coord__round_start to
 * coord__round_cleanup; the cohort borrows agents from c->agents. An action borrows the
 * machine until the next call into it (the queue copies what it keeps); DONE is the last
 * action of a call, and round_finish frees the machine. A straggler's upload buffer still
 * being written when the round ends moves to its agent (a->orphan, coord_conn.c).
 * Threading: the loop thread only; time is uv_now, handed to the machine (its deadlines
 * are checked by fv_cround_tick on the housekeeping tick).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "coord-int.h"
#include "fv-config.h"
#include "fv_fed.h"
#include "fv_log.h"
#include "fv_secagg.h"

/* ---- the round ------------------------------------------------------------------ */

const char *coord__phase_names[5] = {"advertise", "shares", "upload", "unmask", "done"};

/* Tries of one round number (a SecAgg abort, too few contributors, a deadline) before the
 * job fails; an aborted round does not use up one of the job's rounds. */
#define ROUND_ATTEMPTS 3

static void round_finish(coord_t *c, int status, const char *why);
static void exec_close(coord_t *c);

/* Work on the thread pool for the round: the accumulator's pages touched before the round
 * starts (W_PREP: first-touch page faults of an 8 MB sum cost about 20 ms here), SecAgg's
 * last close (W_CLOSE: the unmasking) or the finish (W_FINISH: decode, the job machine's
 * step, the model file written and fsynced). While one runs, the loop makes no call into the
 * round's machine nor the job machine: messages for the round are stale, losses wait in
 * c->rnd.lost_later (coord__round_lost). */
typedef struct rwork {
    uv_work_t req;
    coord_t *c;
    enum { W_PREP, W_CLOSE, W_FINISH } what;
    bool orphaned;      /* the round was cleaned up (a signal, a fatal error) meanwhile */
    fv_cround_t *cr;    /* orphaned: the machine, freed when the work returns */
    fv_round_out_t out; /* the close's actions */
    /* the finish */
    int status;
    char why[512];
    char model_in[65];
    fv_round_sum_t sum; /* borrowed from the machine (done: nothing changes it) */
    fv_round_outcome_t oc;
    bool improved;
    uint8_t hash[32];
    char model_out[65];
    int store_rc, save_rc;
    fv_diag_t store_d, save_d;
    char save_path[4096];
} rwork_t;

static size_t n_accepted(coord_t *c)
{
    size_t n = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL && a->accepted)
            n++;
    return n;
}

const char *coord__kind_name(const coord_t *c)
{
    return c->rnd.kind != NULL ? c->rnd.kind->name : "unknown";
}

/* What the round kinds size a round of this job from (the job machine's models). */
static fv_round_sizes_t round_sizes(coord_t *c)
{
    return fv_cjob_sizes(c->model.jm);
}

/* ---- the machine's actions ------------------------------------------------------- */

static void exec_send(coord_t *c, agent_t *a, const fv_round_act_t *act)
{
    fv_msg_t m = act->msg; /* the copy's borrowed field is copied again by the queue */
    switch (m.type) {
    case FV_MSG_ROUND_START:
        coord__oq_push_msg(a, &m, m.u.round_start.pks, m.u.round_start.pks_len,
                           (const void **)&m.u.round_start.pks);
        break;
    case FV_MSG_SECAGG:
        coord__oq_push_msg(a, &m, m.u.secagg.data, m.u.secagg.len, (const void **)&m.u.secagg.data);
        break;
    case FV_MSG_ROUND_END:
        coord__send_ctl(c, a, FV_MSG_ROUND_END, m.u.round_end.status, m.u.round_end.reason.ptr);
        break;
    case FV_MSG_UPLOAD_GO:
        coord__send_ctl(c, a, FV_MSG_UPLOAD_GO, 0, "");
        break;
    default:
        coord__oq_push_msg(a, &m, NULL, 0, NULL);
        break;
    }
}

/* A log line of the machine: the job and round, the member's name, and the fields its
 * event names (round_coord.c's top note). */
static void exec_log(coord_t *c, agent_t *a, const fv_round_act_t *act)
{
    json_t *f = coord__jf(c);
    if (a != NULL)
        json_object_set_new(f, "agent", json_string(a->name));
    if (strcmp(act->event, "deadline") == 0) {
        json_object_set_new(f, "phase", json_integer(act->phase));
        json_object_set_new(f, "missing", json_integer(act->count));
    } else if (strcmp(act->event, "phase_closed") == 0) {
        json_object_set_new(f, "closed_phase", json_integer(act->phase));
        json_object_set_new(f, "survivors", json_integer(act->count));
    } else if (strcmp(act->event, "upload_received") == 0) {
        json_object_set_new(f, "bytes", json_integer(act->count));
    }
    if (act->err != 0)
        json_object_set_new(f, "err", json_string(fv_err_name(act->err)));
    if (act->why[0] != '\0')
        json_object_set_new(f, "why", json_string(act->why));
    coord_logj(act->level != NULL ? act->level : "info", act->event, f);
}

/* A SecAgg phase closed: its duration, and the crash point of that protocol point (before
 * the next phase's messages go out). Phase 4's close is the round's end (no point). */
static void exec_phase(coord_t *c, const fv_round_act_t *act)
{
    static const char *const points[4] = {"secagg-advertise", "secagg-shares", "secagg-upload",
                                          "secagg-unmask"};
    uint64_t now = coord__now_ms(c);
    if (act->phase >= 0 && act->phase < 4) {
        if (c->metrics.phase_s != NULL)
            fv_prom_observe(c->metrics.phase_s, coord__phase_names[act->phase],
                            (double)(now - c->rnd.t_phase_start) / 1000.0);
        coord__crash_point(points[act->phase]);
    }
    c->rnd.t_phase_start = now;
}

void coord__round_exec(coord_t *c, fv_round_out_t *out)
{
    for (size_t i = 0; i < out->n; i++) {
        const fv_round_act_t *act = &out->acts[i];
        agent_t *a = act->member < c->rnd.n ? c->rnd.cohort[act->member] : NULL;
        switch (act->type) {
        case FV_ROUND_ACT_SEND:
            if (a != NULL)
                exec_send(c, a, act);
            break;
        case FV_ROUND_ACT_DROP:
            if (a == NULL)
                break;
            if (act->event != NULL)
                coord_logj("warn", act->event,
                           json_pack("{s:s,s:I,s:s,s:s,s:s}", "job", c->run.job_hex, "round",
                                     (json_int_t)c->rnd.round, "agent", a->name, "addr", a->addr,
                                     "why", act->why));
            if (a->conn != NULL && a->conn == a->round_conn)
                fv_conn_close(a->conn, act->err, act->why);
            break;
        case FV_ROUND_ACT_LOG:
            exec_log(c, a, act);
            break;
        case FV_ROUND_ACT_PHASE:
            exec_phase(c, act);
            break;
        case FV_ROUND_ACT_CLOSE:
            /* the last action, like DONE: the close runs on the thread pool */
            out->n = 0;
            exec_close(c);
            return;
        case FV_ROUND_ACT_DONE: {
            /* the last action: round_finish frees the machine the others borrowed from */
            char why[256];
            snprintf(why, sizeof why, "%s", act->why);
            int err = act->err;
            out->n = 0;
            round_finish(c, err, why);
            return;
        }
        default:
            break;
        }
    }
    fv_round_out_clear(out);
}

void coord__round_cleanup(coord_t *c)
{
    if (c->rnd.work != NULL) {
        /* a worker holds the machine: it is freed when the work returns (its members'
         * buffers with it: the daemon is stopping, no connection writes into them) */
        c->rnd.work->orphaned = true;
        c->rnd.work->cr = c->rnd.cr;
        c->rnd.work = NULL;
        c->rnd.cr = NULL;
    }
    free(c->rnd.lost_later);
    c->rnd.lost_later = NULL;
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        agent_t *a = c->rnd.cohort[i];
        void *orphan = c->rnd.cr != NULL ? fv_cround_vec_take(c->rnd.cr, i) : NULL;
        if (orphan != NULL && a->conn != NULL && a->conn == a->round_conn) {
            /* a straggler's upload still arriving: its connection writes into it */
            free(a->orphan);
            a->orphan = orphan;
            a->orphan_conn = a->conn;
        } else {
            free(orphan);
        }
        a->idx = -1;
        a->round_conn = NULL;
    }
    free(c->rnd.cohort);
    c->rnd.cohort = NULL;
    c->rnd.n = 0;
    fv_cround_free(c->rnd.cr);
    c->rnd.cr = NULL;
}

/* ---- the round's outcome --------------------------------------------------------- */

/* Training or distill round done, on the loop after the worker applied it (fin_run):
 * the metrics and the log line. *ret_metrics: the round's global validation metrics
 * (owned by the caller); a distill round's also hold the teacher's and (quantize_int8)
 * the int8 student's, from the same round's sums. A binary job's are ROC AUC and PR AUC,
 * a multi-class job's accuracy and per-class recall; both have the log loss. *ret_line:
 * the round's line for rounds.jsonl (owned by the caller, written once the round is
 * committed). imp: the round's model is the new best (its file is the round's model_in). */
static void after_train(coord_t *c, const fv_fed_result_t *res, bool imp, json_t **ret_metrics,
                        json_t **ret_line)
{
    c->run.last_auc = res->val_roc_auc;
    c->run.last_pr = res->val_pr_auc;
    c->run.last_loss = res->val_log_loss;
    c->run.last_acc = res->val_accuracy;
    if (imp) {
        memcpy(c->model.best_sha, c->model.global_sha, sizeof c->model.best_sha);
        c->model.best_version = c->model.global_version;
    }
    json_t *metrics =
        json_pack("{s:o,s:o,s:o,s:I,s:b}", "val_roc_auc", coord__jnum(res->val_roc_auc),
                  "val_pr_auc", coord__jnum(res->val_pr_auc), "val_log_loss",
                  coord__jnum(res->val_log_loss), "n_val", (json_int_t)res->n_val, "improved", imp);
    if (res->n_classes > 0) {
        json_object_set_new(metrics, "val_accuracy", coord__jnum(res->val_accuracy));
        json_t *rec = json_array();
        for (size_t k = 0; k < res->n_classes; k++)
            json_array_append_new(rec, coord__jnum(fv_fed_result_recall(res, 0, k)));
        json_object_set_new(metrics, "val_recall", rec);
    }
    static const char *const prefix[FV_FED_MAX_MODELS] = {NULL, "teacher", "int8"};
    for (size_t m = 1; m < res->n_models; m++) {
        char key[32];
        const fv_fed_model_metrics_t *mm = &res->model[m];
        if (fv_cround_shape(c->rnd.cr)->lay.hist_bins > 0) {
            snprintf(key, sizeof key, "%s_roc_auc", prefix[m]);
            json_object_set_new(metrics, key, coord__jnum(mm->roc_auc));
            snprintf(key, sizeof key, "%s_pr_auc", prefix[m]);
            json_object_set_new(metrics, key, coord__jnum(mm->pr_auc));
        }
        if (res->n_classes > 0) {
            snprintf(key, sizeof key, "%s_accuracy", prefix[m]);
            json_object_set_new(metrics, key, coord__jnum(mm->accuracy));
        }
    }
    json_t *line = json_deep_copy(metrics);
    json_object_set_new(line, "job", json_string(c->run.job_hex));
    json_object_set_new(line, "round", json_integer((json_int_t)c->rnd.round));
    json_object_set_new(line, "kind", json_string(coord__kind_name(c)));
    json_object_set_new(line, "agents", json_integer(c->rnd.n_summands));
    json_object_set_new(line, "secs",
                        json_real((double)(coord__now_ms(c) - c->rnd.t_round_start) / 1000.0));
    *ret_metrics = metrics;
    *ret_line = json_deep_copy(line);
    coord_logj("info", "round_metrics", line);
}

/* The round's cohort and contributors as JSON arrays of names. */
static json_t *cohort_names(coord_t *c, bool contributors_only)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        bool in = true;
        if (contributors_only)
            in = c->rnd.cr != NULL && fv_cround_contributed(c->rnd.cr, i);
        if (in)
            json_array_append_new(a, json_string(c->rnd.cohort[i]->name));
    }
    return a;
}

/* The wall-clock time as "2026-11-28T23:40:00.123Z" (logs, receipts). */
static void iso_now(char buf[FV_LOG_TS_MAX])
{
    fv_log_iso_now(buf);
}

/* Sends the round's signed receipt to each member of the cohort still on the session that
 * took part: what the coordinator attests for that round (RECEIPT in fv_wire.h). */
static void send_receipts(coord_t *c, const char *status, const char *model_in,
                          const char *model_out, json_t *cohort, json_t *contrib)
{
    char ts[40];
    iso_now(ts);
    json_t *body = json_pack("{s:s,s:s,s:I,s:s,s:s,s:O,s:O,s:s,s:s,s:s}", "federation",
                             c->federation, "job", c->run.job_id, "round", (json_int_t)c->rnd.round,
                             "kind", coord__kind_name(c), "status", status, "cohort", cohort,
                             "contributors", contrib, "model_in", model_in != NULL ? model_in : "",
                             "model_out", model_out != NULL ? model_out : "", "ts", ts);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(body);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_RECEIPT;
    memcpy(m.u.receipt.job, c->run.digest, 32);
    m.u.receipt.round = c->rnd.round;
    m.u.receipt.body.ptr = text;
    m.u.receipt.body.len = len;
    crypto_sign_detached(m.u.receipt.sig, NULL, (const uint8_t *)text, len, c->sign_sk);
    for (uint32_t i = 0; i < c->rnd.n; i++)
        if (c->rnd.cohort[i]->conn != NULL &&
            c->rnd.cohort[i]->conn == c->rnd.cohort[i]->round_conn)
            coord__oq_push_msg(c->rnd.cohort[i], &m, text, len + 1,
                               (const void **)&m.u.receipt.body.ptr);
    free(text);
}

/* The job's checkpoint in the state (inside the caller's transaction): the job machine's
 * (fv_cjob_checkpoint: counters, the stats sum, early stopping, the optimizer's state)
 * with the stored files of its models (global_sha: the global model's file, "" for none
 * yet; best and teacher from c). */
int coord__ckpt_save(coord_t *c, const char *global_sha, int64_t global_version, fv_diag_t *d)
{
    fv_cjob_ckpt_t jc;
    int r = fv_cjob_checkpoint(c->model.jm, &jc);
    if (r != 0)
        return fv_diag_set(d, r, "the job's checkpoint: %s", fv_strerror(r));
    fv_state_ckpt_t ck;
    memset(&ck, 0, sizeof ck);
    ck.next_round = jc.next_round;
    ck.rounds_done = jc.rounds_done;
    ck.rounds_failed = jc.rounds_failed;
    ck.n_ref = jc.n_ref;
    ck.stats_sum = (uint32_t *)(uintptr_t)jc.stats_sum; /* the state only reads it */
    ck.stats_words = jc.stats_sum != NULL ? jc.stats_words : 0;
    memcpy(ck.global_sha, global_sha, 65);
    ck.global_version = global_version;
    ck.opt_state = jc.opt;
    ck.opt_len = jc.opt_len;
    memcpy(ck.best_sha, c->model.best_sha, 65);
    ck.best_version = c->model.best_version;
    ck.best_metric = jc.best_metric;
    ck.best_round = jc.best_round;
    ck.since_best = jc.since_best;
    ck.distill = jc.distill;
    memcpy(ck.teacher_sha, c->distill.teacher_sha, 65);
    ck.teacher_version = c->distill.teacher_version;
    r = fv_state_ckpt_save(c->st, c->run.job_id, &ck, d);
    fv_cjob_ckpt_close(&jc);
    return r;
}

/* Records the round's outcome durably (the model file model_out is on disk, fsynced, when
 * the round succeeded): one transaction with the round row, the new model version, the
 * checkpoint to resume from and the audit records. Returns 0 or the state error (the
 * daemon then stops). */
static int round_commit(coord_t *c, int status, const char *why, json_t *metrics,
                        const char *model_in, const char *model_out)
{
    fv_diag_t d;
    int r = 0;
    bool ok = status == 0;
    json_t *cohort = cohort_names(c, false);
    json_t *contrib = ok ? cohort_names(c, true) : json_array();
    char *cohort_s = json_dumps(cohort, JSON_COMPACT);
    char *contrib_s = json_dumps(contrib, JSON_COMPACT);
    char *metrics_s = metrics != NULL ? json_dumps(metrics, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int64_t version = 0;
    if ((r = coord__txn_begin(c)) != 0)
        goto out;
    fv_state_round_t rr = {.job = c->run.job_id,
                           .round = c->rnd.round,
                           .attempt = c->rnd.attempt,
                           .kind = coord__kind_name(c),
                           .status = ok ? "ok" : fv_err_name(status),
                           .why = ok ? NULL : why,
                           .cohort_json = cohort_s,
                           .contributors_json = contrib_s,
                           .metrics_json = metrics_s,
                           .model_in_sha = model_in,
                           .model_out_sha = ok ? model_out : NULL,
                           .started_ms = c->rnd.wall_round_start_ms,
                           .finished_ms = coord_wall_ms()};
    r = fv_state_round_add(c->st, &rr, &d);
    if (r == 0 && ok) {
        char producer[96];
        snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
        r = fv_state_version_add(
            c->st, c->run.job_id, c->rnd.round, model_out, c->model.global_version,
            coord__distilling(c) ? "student" : "global", producer, coord_wall_ms(), &version, &d);
    }
    /* the job machine counted the round (fv_cjob_round_done): an aborted round is run
     * again under the same number */
    if (r == 0)
        r = coord__ckpt_save(c, ok ? model_out : c->model.global_sha,
                             ok ? version : c->model.global_version, &d);
    if (r != 0) {
        c->in_txn = false;
        fv_state_rollback(c->st);
        coord__state_fatal(c, "round commit", r, &d);
        goto out;
    }
    json_t *phases = json_object();
    if (c->rnd.cr != NULL && c->job->secagg.on)
        for (int i = 0; i < 4; i++)
            json_object_set_new(phases, coord__phase_names[i],
                                json_integer(fv_cround_phase_count(c->rnd.cr, i)));
    json_t *det = json_pack("{s:s,s:I,s:I,s:s,s:s,s:O,s:O,s:o}", "job", c->run.job_id, "round",
                            (json_int_t)c->rnd.round, "attempt", (json_int_t)c->rnd.attempt, "kind",
                            coord__kind_name(c), "status", ok ? "ok" : fv_err_name(status),
                            "cohort", cohort, "contributors", contrib, "phases", phases);
    if (!ok)
        json_object_set_new(det, "why", json_string(why));
    if (metrics != NULL)
        json_object_set(det, "metrics", metrics);
    if (model_in != NULL)
        json_object_set_new(det, "model_in", json_string(model_in));
    if (ok)
        json_object_set_new(det, "model_out", json_string(model_out));
    coord_audit(c, NULL, ok ? "round.completed" : "round.aborted", det);
    if (ok)
        coord_audit(c, NULL, "model.stored",
                    json_pack("{s:I,s:s,s:s,s:I,s:s,s:I}", "version", (json_int_t)version, "sha256",
                              model_out, "job", c->run.job_id, "round", (json_int_t)c->rnd.round,
                              "kind", coord__distilling(c) ? "student" : "global", "parent",
                              (json_int_t)c->model.global_version));
    if ((r = coord__txn_commit(c)) != 0)
        goto out;
    if (ok) {
        memcpy(c->model.global_sha, model_out, 65);
        c->model.global_version = version;
    }
    send_receipts(c, ok ? "ok" : fv_err_name(status), model_in, ok ? model_out : NULL, cohort,
                  contrib);
out:
    json_decref(cohort);
    json_decref(contrib);
    free(cohort_s);
    free(contrib_s);
    free(metrics_s);
    return r;
}

/* Appends the round's line to rounds.jsonl (--out). */
static void rounds_log_write(coord_t *c, const json_t *line)
{
    char *s = json_dumps(line, JSON_COMPACT);
    if (s != NULL && c->run.rounds_log != NULL) {
        fprintf(c->run.rounds_log, "%s\n", s);
        fflush(c->run.rounds_log);
    }
    free(s);
}

/* ---- the round's end, off the loop ------------------------------------------------ */

static void round_complete(coord_t *c, rwork_t *w);

static void rwork_free(rwork_t *w)
{
    fv_round_out_close(&w->out);
    fv_round_outcome_close(&w->oc);
    fv_cround_free(w->cr);
    free(w);
}

static void close_run(uv_work_t *req)
{
    rwork_t *w = req->data;
    fv_cround_close(w->cr, &w->out);
}

static void prep_run(uv_work_t *req)
{
    rwork_t *w = req->data;
    fv_cround_prefault(w->cr);
}

static void round_go(coord_t *c);

/* The finish, on a worker: the kind reads the sum out; the job machine applies it (the
 * stats round's setup, or early stopping and the server step, after the --out copy of the
 * model this round evaluated); the new model's hash and its file in the state directory
 * (fv_state_model_put touches files only). No log line here: the loop writes them. */
static void finish_run(uv_work_t *req)
{
    rwork_t *w = req->data;
    coord_t *c = w->c;
    fv_diag_t d = {""};
    fv_round_sizes_t z = round_sizes(c);
    w->status = c->rnd.kind->decode(&z, fv_cround_shape(w->cr), &w->sum,
                                    (double)fv_cjob_n_ref(c->model.jm), &w->oc, &d);
    if (w->status != 0) {
        snprintf(w->why, sizeof w->why, "%s%.400s",
                 c->rnd.kind->id == FV_FED_KIND_STATS ? "stats: " : "", d.msg);
        return;
    }
    /* --out: the model this round evaluated, before the kind's step changes it */
    if (w->oc.has_result && w->save_path[0] != '\0')
        w->save_rc = coord__model_save(c, fv_cjob_global(c->model.jm), w->save_path, c->rnd.round,
                                       &w->save_d);
    if (c->rnd.kind->apply != NULL &&
        (w->status = c->rnd.kind->apply(c->model.jm, &w->sum, &w->oc, &w->improved, &d)) != 0) {
        snprintf(w->why, sizeof w->why, "%.400s", d.msg);
        return;
    }
    const fv_mlp_t *g = fv_cjob_global(c->model.jm);
    fv_cjob_params_hash(g, w->hash);
    snprintf(w->store_d.msg, sizeof w->store_d.msg, "cannot build the model file");
    w->store_rc = coord__model_put(c, g, c->rnd.round, false, w->model_out, NULL, &w->store_d);
}

static void work_done_in(uv_work_t *req, int status)
{
    rwork_t *w = req->data;
    coord_t *c = w->c;
    if (w->orphaned || status != 0) {
        if (!w->orphaned && c->rnd.work == w)
            c->rnd.work = NULL;
        rwork_free(w);
        return;
    }
    c->rnd.work = NULL;
    if (w->what == W_FINISH) {
        round_complete(c, w);
        return;
    }
    if (w->what == W_PREP) {
        w->cr = NULL;
        rwork_free(w);
        round_go(c);
        return;
    }
    /* the close's actions: PHASE (its crash point), phase_closed, DONE (the finish) */
    fv_round_out_t out = w->out;
    fv_round_out_init(&w->out);
    w->cr = NULL;
    rwork_free(w);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
}

/* The loop's part of a round's work: measured like every callback into the daemon
 * (coord_loopstat.c). */
static void work_done(uv_work_t *req, int status)
{
    rwork_t *w = req->data;
    coord_t *c = w->c;
    coord__loopstat_begin(c, w->what == W_FINISH  ? "round.finish_done"
                             : w->what == W_CLOSE ? "round.close_done"
                                                  : "round.prep_done");
    work_done_in(req, status);
    coord__loopstat_end(c);
}

static int queue_work(coord_t *c, rwork_t *w)
{
    w->req.data = w;
    w->c = c;
    int r = uv_queue_work(c->net.loop, &w->req,
                          w->what == W_FINISH  ? finish_run
                          : w->what == W_CLOSE ? close_run
                                               : prep_run,
                          work_done);
    if (r == 0)
        c->rnd.work = w;
    return r;
}

bool coord__round_busy(const coord_t *c)
{
    return c->rnd.work != NULL;
}

const char *coord__round_work(const coord_t *c)
{
    if (c->rnd.work == NULL)
        return NULL;
    return c->rnd.work->what == W_PREP    ? "starting"
           : c->rnd.work->what == W_CLOSE ? "unmask"
                                          : "finishing";
}

void coord__round_lost(coord_t *c, uint32_t member)
{
    if (c->rnd.lost_later != NULL && member < c->rnd.n)
        c->rnd.lost_later[member] = true;
}

/* CLOSE: the machine's last SecAgg close on the thread pool (inline if it cannot be
 * queued). */
static void exec_close(coord_t *c)
{
    rwork_t *w = calloc(1, sizeof *w);
    if (w != NULL) {
        fv_round_out_init(&w->out);
        w->what = W_CLOSE;
        w->cr = c->rnd.cr;
        if (queue_work(c, w) == 0)
            return;
        free(w);
    }
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_cround_close(c->rnd.cr, &out);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
}

static void round_finish(coord_t *c, int status, const char *why_in)
{
    rwork_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        coord__state_fatal(c, "round finish", FV_ENOMEM, NULL);
        return;
    }
    fv_round_out_init(&w->out);
    w->what = W_FINISH;
    w->status = status;
    snprintf(w->why, sizeof w->why, "%s", why_in);
    memcpy(w->model_in, c->model.global_sha, 65);
    bool have_sum = status == 0 && c->rnd.cr != NULL && fv_cround_sum(c->rnd.cr, &w->sum) == 0;
    if (have_sum)
        c->rnd.n_summands = w->sum.n_summands;
    if (w->status == 0 && c->rnd.kind->id != FV_FED_KIND_STATS && c->test.fail_rounds) {
        w->status = FV_EIO;
        snprintf(w->why, sizeof w->why, "FV_TEST_FAIL_ROUNDS");
    }
    if (w->status == 0 && !have_sum) {
        w->status = FV_EPHASE;
        snprintf(w->why, sizeof w->why, "the round ended without a sum");
    }
    if (w->status == 0) {
        /* the sum read out and applied, the model file written: on the thread pool */
        w->cr = c->rnd.cr;
        if (c->out_dir != NULL && c->rnd.kind->id != FV_FED_KIND_STATS)
            snprintf(w->save_path, sizeof w->save_path, "%s/%s-r%04" PRIu64 ".fvm", c->out_dir,
                     coord__distilling(c) ? "student" : "model", c->rnd.round);
        if (queue_work(c, w) == 0)
            return;
        finish_run(&w->req); /* the pool refused: here, then */
    }
    round_complete(c, w);
}

/* The round's end on the loop: the log lines of what the worker did, the job machine's
 * count, the commit, ROUND_END, receipts, rounds.jsonl, and the next round. Takes w. */
static void round_complete(coord_t *c, rwork_t *w)
{
    int status = w->status;
    char why[512];
    snprintf(why, sizeof why, "%s", w->why);
    json_t *metrics = NULL, *line = NULL;
    char model_in[65];
    memcpy(model_in, w->model_in, 65);
    w->cr = NULL; /* c->rnd.cr's: freed with the round */
    if (w->save_rc != 0)
        coord_logj("error", "model_save_failed",
                   json_pack("{s:s,s:s,s:s}", "path", w->save_path, "err", fv_err_name(w->save_rc),
                             "why", w->save_d.msg));
    if (status == 0) {
        memcpy(c->model.hash, w->hash, 32);
        if (w->oc.has_stats)
            coord__stats_ready(c);
        else if (w->oc.has_result)
            after_train(c, &w->oc.res, w->improved, &metrics, &line);
        if (w->store_rc != 0) {
            /* the round cannot be recorded, so the daemon stops (a restart runs it again) */
            coord_logj("error", "model_store_failed",
                       json_pack("{s:s,s:I,s:s,s:s}", "job", c->run.job_hex, "round",
                                 (json_int_t)c->rnd.round, "err", fv_err_name(w->store_rc), "why",
                                 w->store_d.msg));
            json_decref(metrics);
            json_decref(line);
            rwork_free(w);
            coord__state_fatal(c, "model store", FV_EIO, NULL);
            return;
        }
        coord__crash_point("model-write");
    }
    char model_out[65];
    memcpy(model_out, w->model_out, 65);
    rwork_free(w);
    /* members whose session went while the work ran are out of ROUND_END */
    if (c->rnd.lost_later != NULL && c->rnd.cr != NULL) {
        fv_round_out_t lo;
        fv_round_out_init(&lo);
        for (uint32_t i = 0; i < c->rnd.n; i++)
            if (c->rnd.lost_later[i])
                fv_cround_lost(c->rnd.cr, i, coord__now_ms(c), &lo);
        fv_round_out_close(&lo); /* a done machine emits nothing for a loss */
    }
    /* The job machine counts the round (the next one, or this one again); then durable
     * before anyone hears of it: an agent is told a round ended only once a restart would
     * not run it again. */
    fv_cjob_round_done(c->model.jm, status == 0);
    int sr =
        round_commit(c, status, why, metrics, model_in[0] != '\0' ? model_in : NULL, model_out);
    json_decref(metrics);
    if (sr != 0) {
        json_decref(line);
        return; /* state_fatal stopped the daemon */
    }
    /* ROUND_END to every member still on the session that started the round */
    if (c->rnd.cr != NULL) {
        fv_round_out_t out;
        fv_round_out_init(&out);
        fv_cround_end(c->rnd.cr, status, status == 0 ? "" : why, &out);
        coord__round_exec(c, &out);
        fv_round_out_close(&out);
    } else {
        for (uint32_t i = 0; i < c->rnd.n; i++)
            if (c->rnd.cohort[i]->conn != NULL &&
                c->rnd.cohort[i]->conn == c->rnd.cohort[i]->round_conn)
                coord__send_ctl(c, c->rnd.cohort[i], FV_MSG_ROUND_END, status,
                                status == 0 ? "" : why);
    }
    /* The loop's longest callback since the last round ended (coord_loopstat.c), this one
     * up to here included: to the log and rounds.jsonl, never to the state. */
    json_t *loop = coord__loopstat_take(c);
    json_t *f = coord__jf(c);
    json_object_set_new(f, "status", json_string(fv_err_name(status)));
    json_object_set_new(f, "contributors", json_integer(c->rnd.n_summands));
    if (status == 0)
        json_object_set_new(f, "model", json_string(model_out));
    else
        json_object_set_new(f, "why", json_string(why));
    if (loop != NULL)
        json_object_update(f, loop);
    coord_logj(status == 0 ? "info" : "warn", status == 0 ? "round_done" : "round_aborted", f);
    if (line != NULL) {
        if (loop != NULL)
            json_object_update(line, loop);
        rounds_log_write(c, line);
        json_decref(line);
    }
    json_decref(loop);
    bool was_stats = c->rnd.kind->id == FV_FED_KIND_STATS;
    double secs = (double)(coord__now_ms(c) - c->rnd.t_round_start) / 1000.0;
    coord__round_cleanup(c);
    if (status == 0) {
        c->rnd.attempt = 0;
        if (c->metrics.rounds_ok != NULL)
            fv_prom_add(c->metrics.rounds_ok, NULL, 1);
        if (!was_stats)
            c->run.avg_round_s =
                c->run.avg_round_s == 0 ? secs : 0.7 * c->run.avg_round_s + 0.3 * secs;
        /* the stats to every agent that lacks them: all after the stats round, and one
         * that accepted the job while the round's work ran (coord__send_stats waited) */
        for (agent_t *a = c->agents; a != NULL; a = a->next)
            if (a->conn != NULL && a->accepted)
                coord__send_stats(c, a);
        coord__crash_point(was_stats ? "stats-committed" : "round-committed");
    } else {
        if (c->metrics.rounds_failed != NULL)
            fv_prom_add(c->metrics.rounds_failed, NULL, 1);
        for (agent_t *a = c->agents; a != NULL; a = a->next)
            if (a->conn != NULL && a->accepted)
                coord__send_stats(c, a); /* one that accepted while the close ran */
    }
    if (c->run.abort_requested) {
        coord__job_finish(c);
        return;
    }
    if (was_stats && !fv_cjob_has_stats(c->model.jm)) {
        /* The stats round must succeed before training: retry it. */
        if (coord__rounds_failed(c) > 10) {
            snprintf(c->run.fail_why, sizeof c->run.fail_why,
                     "the stats round failed 10 times: %.400s", why);
            c->run.exit_code = EXIT_FAIL;
            coord__job_finish(c);
            return;
        }
        c->run.state = ST_WAITING;
        coord__round_start_soon(c);
        return;
    }
    if (!was_stats && status != 0) {
        /* An aborted round is run again under its number (it does not use up one of the
         * job's rounds); a round that aborts ROUND_ATTEMPTS times ends the job. */
        if (c->rnd.attempt >= ROUND_ATTEMPTS) {
            snprintf(c->run.fail_why, sizeof c->run.fail_why,
                     "round %" PRIu64 " (%s) aborted %" PRIu32 " times; the last time: %.400s",
                     c->rnd.round, coord__kind_name(c), c->rnd.attempt, why);
            c->run.exit_code = EXIT_FAIL;
            coord__job_finish(c);
            return;
        }
        c->run.state = ST_WAITING;
        coord__round_start_soon(c);
        return;
    }
    if (!was_stats && fv_cjob_phase_over(c->model.jm)) {
        coord__phase_end(c);
        return;
    }
    if (!was_stats) {
        c->rnd.round = fv_cjob_round(c->model.jm);
        c->rnd.attempt = 0;
    }
    c->run.state = ST_WAITING;
    coord__round_start_soon(c);
}

/* ---- starting a round ------------------------------------------------------------ */

static void on_next_round(uv_timer_t *t)
{
    coord_t *c = t->data;
    coord__loopstat_begin(c, "round.start");
    if (!c->stopping)
        coord__round_start(c);
    coord__loopstat_end(c);
}

void coord__round_start_soon(coord_t *c)
{
    if (c->stopping || uv_is_closing((uv_handle_t *)&c->net.next_round) ||
        uv_timer_start(&c->net.next_round, on_next_round, 0, 0) != 0)
        coord__round_start(c); /* (no timer: at once) */
}

static int cmp_agent_name(const void *a, const void *b)
{
    const agent_t *x = *(agent_t *const *)a, *y = *(agent_t *const *)b;
    return strcmp(x->name, y->name);
}

void coord__round_start(coord_t *c)
{
    if (c->run.state != ST_WAITING)
        return;
    size_t n = n_accepted(c);
    if (n < c->job->min_agents)
        return; /* waits for more agents */
    fv_diag_t d;
    c->rnd.cohort = calloc(n, sizeof *c->rnd.cohort);
    if (c->rnd.cohort == NULL)
        return;
    c->rnd.n = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL && a->accepted)
            c->rnd.cohort[c->rnd.n++] = a;
    qsort(c->rnd.cohort, c->rnd.n, sizeof *c->rnd.cohort, cmp_agent_name);
    /* the job decides which kind runs next; the table says what its round is */
    c->rnd.kind = fv_cjob_round_kind(c->model.jm);
    uint32_t kind_id = c->rnd.kind->id;
    c->rnd.round = fv_cjob_round(c->model.jm);
    c->run.state = ST_ROUND;
    c->rnd.t_round_start = coord__now_ms(c);
    c->rnd.wall_round_start_ms = coord_wall_ms();
    /* the attempt numbers of a round number continue across retries and restarts */
    uint32_t tried = 0;
    if (fv_state_round_attempts(c->st, c->run.job_id, c->rnd.round, &tried, &d) != 0) {
        coord_logj("error", "state_read_failed",
                   json_pack("{s:s,s:s}", "what", "round attempts", "why", d.msg));
        tried = c->rnd.attempt;
    }
    c->rnd.attempt = (tried > c->rnd.attempt ? tried : c->rnd.attempt) + 1;
    c->rnd.n_summands = 0;
    c->rnd.lost_later = calloc(c->rnd.n, sizeof *c->rnd.lost_later);
    uint8_t gseed[32];
    randombytes_buf(gseed, sizeof gseed);
    uint8_t *pks = malloc((size_t)c->rnd.n * 32);
    if (pks == NULL) {
        round_finish(c, FV_ENOMEM, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        c->rnd.cohort[i]->idx = (int)i;
        c->rnd.cohort[i]->round_conn = c->rnd.cohort[i]->conn;
        memcpy(pks + (size_t)i * 32, c->rnd.cohort[i]->sign_pk, 32);
    }
    c->rnd.t = c->rnd.n;
    c->rnd.k = c->rnd.n - 1;
    int r = 0;
    if (c->job->secagg.on)
        r = fv_job_secagg_for(c->job, c->rnd.n, &c->rnd.t, &c->rnd.k, &d);
    if (r == 0) {
        fv_cround_cfg_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.kind = c->rnd.kind;
        cfg.sizes = round_sizes(c);
        memcpy(cfg.job, c->run.digest, 32);
        cfg.job_id64 = c->run.job_id64;
        cfg.round = c->rnd.round;
        cfg.n = c->rnd.n;
        cfg.pks = pks;
        cfg.secagg = c->job->secagg.on;
        cfg.t = c->rnd.t;
        cfg.k = c->rnd.k;
        memcpy(cfg.gseed, gseed, 32);
        cfg.has_model = kind_id != FV_FED_KIND_STATS;
        memcpy(cfg.model, c->model.hash, 32);
        cfg.n_ref = fv_cjob_n_ref(c->model.jm);
        cfg.max_uploads = c->max_uploads;
        cfg.train_ms = c->job->deadlines.train_ms;
        cfg.phase_ms = c->job->deadlines.secagg_phase_ms;
        cfg.defer_close = true; /* the unmasking runs on the thread pool (exec_close) */
        r = fv_cround_new(&cfg, &c->rnd.cr, &d);
    }
    free(pks);
    if (r != 0) {
        round_finish(c, r, d.msg);
        return;
    }
    json_t *f = coord__jf(c);
    json_object_set_new(f, "kind", json_string(coord__kind_name(c)));
    json_object_set_new(f, "cohort", json_integer(c->rnd.n));
    json_object_set_new(f, "threshold", json_integer(c->rnd.t));
    json_object_set_new(f, "neighbors", json_integer(c->rnd.k));
    json_object_set_new(f, "secagg", json_boolean(c->job->secagg.on));
    coord_logj("info", "round_start", f);
    /* the models a member lacks go before its ROUND_START, on the same queue */
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        agent_t *a = c->rnd.cohort[i];
        if (kind_id == FV_FED_KIND_DISTILL && !a->has_teacher) {
            const fv_mlp_t *teacher = fv_cjob_teacher(c->model.jm);
            coord__oq_push_vec(a, 0, FV_VEC_F32, fv_mlp_params_const(teacher), NULL,
                               fv_mlp_n_params(teacher), "teacher");
            a->has_teacher = true;
        }
        if (kind_id != FV_FED_KIND_STATS &&
            (!a->has_model || memcmp(a->model, c->model.hash, 32) != 0)) {
            coord__oq_push_vec(a, (uint32_t)c->rnd.round, FV_VEC_F32,
                               fv_mlp_params_const(fv_cjob_global(c->model.jm)), NULL,
                               fv_mlp_n_params(fv_cjob_global(c->model.jm)),
                               kind_id == FV_FED_KIND_DISTILL ? "student" : "model");
            a->has_model = true;
            memcpy(a->model, c->model.hash, 32);
        }
    }
    /* the accumulator's pages first, on the thread pool (the models above are already
     * going out); then ROUND_START (round_go) */
    rwork_t *w = calloc(1, sizeof *w);
    if (w != NULL) {
        fv_round_out_init(&w->out);
        w->what = W_PREP;
        w->cr = c->rnd.cr;
        if (queue_work(c, w) == 0)
            return;
        free(w);
    }
    round_go(c);
}

/* The machine starts: ROUND_START to every member (UPLOAD_GO without SecAgg); members
 * whose session went while the accumulator was prepared are out at once. */
static void round_go(coord_t *c)
{
    fv_round_out_t out;
    fv_round_out_init(&out);
    c->rnd.t_phase_start = coord__now_ms(c);
    fv_cround_start(c->rnd.cr, c->rnd.t_phase_start, &out);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
    for (uint32_t i = 0; c->rnd.lost_later != NULL && c->run.state == ST_ROUND &&
                         c->rnd.cr != NULL && !coord__round_busy(c) && i < c->rnd.n;
         i++)
        if (c->rnd.lost_later[i]) {
            c->rnd.lost_later[i] = false;
            fv_cround_lost(c->rnd.cr, i, coord__now_ms(c), &out);
            coord__round_exec(c, &out);
            fv_round_out_close(&out);
            fv_round_out_init(&out);
        }
}

/* ---- deadlines ------------------------------------------------------------------- */

/* The phase deadline, checked on every tick by the machine: members that have not
 * answered are dropouts, and the phase closes with the others. */
void coord__round_tick(coord_t *c)
{
    if (c->run.state != ST_ROUND || c->rnd.cr == NULL || coord__round_busy(c))
        return;
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_cround_tick(c->rnd.cr, coord__now_ms(c), &out);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
}
