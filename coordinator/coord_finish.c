/* coord_finish.c - the round's end, and the round's work on the thread pool.
 *
 * The round's machine (fv_cround) ends with DONE: coord__round_finish reads its sum and
 * hands the finish to the thread pool (finish_run: the kind's decode, the kind's apply
 * through the job machine, the --out copy of the model the round evaluated, the new
 * model's hash and its file written and fsynced in the state directory); then, on the
 * loop, round_complete: the log lines of what the worker did, the job machine's count
 * (fv_cjob_round_done), the commit (round_commit: one SQLite transaction with the round,
 * the model version, the job machine's checkpoint and the audit records), ROUND_END,
 * the signed receipts, rounds.jsonl (with the summed score histograms of a round whose model
 * may be the final one: the report's curves), and the next round (in a callback of its own). A
 * round that fails has nothing to compute: it completes at once. A kind without apply
 * (explain) changes no model: no file, no version; its decoded explanation is recorded
 * (coord_explain.c) as the round's metrics and line. An explain round that aborts
 * ROUND_ATTEMPTS times is given up: the job ends with its models, without it.
 *
 * The same pool runs the accumulator's first touch before ROUND_START (coord__round_prep)
 * and SecAgg's last close, the unmasking (coord__round_close, on the machine's CLOSE),
 * which spreads its keystream work over threads of its own (unmask_par_for).
 *
 * Invariant: while a work item runs (c->rnd.work), the loop makes no call into the round
 * machine or the job machine: coord_conn.c treats the round's messages as stale, keeps
 * losses for later (coord__round_lost: told to the machine before ROUND_END or after the
 * start), live progress reports the work instead of the machine's phase, an abort waits
 * for the round's end, and coord__round_cleanup (a signal, a fatal error) orphans the
 * work, which frees the machine when it returns. fv_state_model_put touches files only,
 * so the worker may write model files while the loop uses the database.
 *
 * Durability: the model file is on disk before the transaction that names it; agents hear
 * of the round's end (ROUND_END, RECEIPT) only after the commit; a restart resumes the
 * job from the checkpoint (coord_job.c).
 *
 * Threads: finish_run, close_run and prep_run on a pool thread (the work item, the
 * machine it holds, the job machine, read-only coordinator fields); everything else on
 * the loop thread. work_done is measured like every callback into the daemon
 * (coord_loopstat.c: round.prep_done, round.close_done, round.finish_done).
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "coord-int.h"
#include "fv-config.h"
#include "fv_fed.h"
#include "fv_log.h"

/* Tries of one round number (a SecAgg abort, too few contributors, a deadline) before the
 * job fails; an aborted round does not use up one of the job's rounds. */
#define ROUND_ATTEMPTS 3

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
    char hold[300]; /* FV_TEST_HOLD_FINISH: the file the finish waits for, or "" */
} rwork_t;

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
    /* The summed score histograms of the evaluated model (model 0), for the report's ROC
     * and PR curves (coord_report.c): in the line of a round whose model became the best,
     * or of every training round of a job without early stopping; rounds.jsonl only (the
     * state's metrics stay small). */
    size_t bins = fv_cround_shape(c->rnd.cr)->lay.hist_bins;
    bool last_is_final = !coord__distilling(c) && c->job->early_stopping.patience == 0;
    if (bins > 0 && res->hist_pos != NULL && res->hist_neg != NULL && (imp || last_is_final)) {
        json_t *hp = json_array(), *hn = json_array();
        for (size_t i = 0; i < bins; i++) {
            json_array_append_new(hp, json_integer((json_int_t)res->hist_pos[i]));
            json_array_append_new(hn, json_integer((json_int_t)res->hist_neg[i]));
        }
        json_object_set_new(line, "hist_pos", hp);
        json_object_set_new(line, "hist_neg", hn);
    }
    json_object_set_new(line, "job", json_string(c->run.job_hex));
    json_object_set_new(line, "round", json_integer((json_int_t)c->rnd.round));
    json_object_set_new(line, "kind", json_string(coord__kind_name(c)));
    json_object_set_new(line, "agents", json_integer(c->rnd.n_summands));
    json_object_set_new(line, "secs",
                        json_real((double)(coord__now_ms(c) - c->rnd.t_round_start) / 1000.0));
    *ret_metrics = metrics;
    *ret_line = json_deep_copy(line);
    json_object_del(line, "hist_pos"); /* not in the log line */
    json_object_del(line, "hist_neg");
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
    json_t *body =
        json_pack("{s:s,s:s,s:I,s:s,s:s,s:O,s:O,s:s,s:s,s:s}", "federation", c->federation, "job",
                  c->run.wire_id, "round", (json_int_t)c->rnd.round, "kind", coord__kind_name(c),
                  "status", status, "cohort", cohort, "contributors", contrib, "model_in",
                  model_in != NULL ? model_in : "", "model_out", model_out != NULL ? model_out : "",
                  "ts", ts);
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
    bool new_model = ok && model_out[0] != '\0'; /* (an explain round makes none) */
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
                           .model_out_sha = new_model ? model_out : NULL,
                           .started_ms = c->rnd.wall_round_start_ms,
                           .finished_ms = coord_wall_ms()};
    r = fv_state_round_add(c->st, &rr, &d);
    if (r == 0 && new_model) {
        char producer[96];
        snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
        r = fv_state_version_add(
            c->st, c->run.job_id, c->rnd.round, model_out, c->model.global_version,
            coord__distilling(c) ? "student" : "global", producer, coord_wall_ms(), &version, &d);
    }
    /* the job machine counted the round (fv_cjob_round_done): an aborted round is run
     * again under the same number */
    if (r == 0)
        r = coord__ckpt_save(c, new_model ? model_out : c->model.global_sha,
                             new_model ? version : c->model.global_version, &d);
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
    if (new_model)
        json_object_set_new(det, "model_out", json_string(model_out));
    coord_audit(c, NULL, ok ? "round.completed" : "round.aborted", det);
    if (new_model)
        coord_audit(c, NULL, "model.stored",
                    json_pack("{s:I,s:s,s:s,s:I,s:s,s:I}", "version", (json_int_t)version, "sha256",
                              model_out, "job", c->run.job_id, "round", (json_int_t)c->rnd.round,
                              "kind", coord__distilling(c) ? "student" : "global", "parent",
                              (json_int_t)c->model.global_version));
    if ((r = coord__txn_commit(c)) != 0)
        goto out;
    if (new_model) {
        memcpy(c->model.global_sha, model_out, 65);
        c->model.global_version = version;
    }
    send_receipts(c, ok ? "ok" : fv_err_name(status), model_in, new_model ? model_out : NULL,
                  cohort, contrib);
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

/* SecAgg's unmasking spread over threads of its own for the duration of the close: the
 * close already runs on a libuv worker, which cannot queue more work (uv_queue_work is
 * the loop's) and must not block waiting for pool items that could be queued behind it.
 * This thread takes indices too, so a failed pthread_create only means fewer helpers.
 * At most UNMASK_THREADS threads, and no more than the CPUs online. */
#define UNMASK_THREADS 8

typedef struct unmask_pf {
    void (*fn)(void *arg, size_t i);
    void *arg;
    size_t n;
    atomic_size_t next;
} unmask_pf_t;

static void *unmask_pf_main(void *a)
{
    unmask_pf_t *p = a;
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n)
            return NULL;
        p->fn(p->arg, i);
    }
}

static void unmask_par_for(void *ctx, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
    (void)ctx;
    unmask_pf_t p = {.fn = fn, .arg = arg, .n = n};
    atomic_init(&p.next, 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = cpus > 1 ? (size_t)cpus : 1;
    if (want > UNMASK_THREADS)
        want = UNMASK_THREADS;
    if (want > n)
        want = n;
    pthread_t th[UNMASK_THREADS];
    size_t started = 0;
    while (started + 1 < want && pthread_create(&th[started], NULL, unmask_pf_main, &p) == 0)
        started++;
    unmask_pf_main(&p);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

static void close_run(uv_work_t *req)
{
    rwork_t *w = req->data;
    fv_cround_set_par_for(w->cr, unmask_par_for, NULL);
    fv_cround_close(w->cr, &w->out);
    fv_cround_set_par_for(w->cr, NULL, NULL);
}

static void prep_run(uv_work_t *req)
{
    rwork_t *w = req->data;
    fv_cround_prefault(w->cr);
}

/* The finish, on a worker: the kind reads the sum out; the job machine applies it (the
 * stats round's setup, or early stopping and the server step, after the --out copy of the
 * model this round evaluated); the new model's hash and its file in the state directory
 * (fv_state_model_put touches files only). No log line here: the loop writes them. */
static void finish_run(uv_work_t *req)
{
    rwork_t *w = req->data;
    coord_t *c = w->c;
    fv_diag_t d = {""};
    for (int i = 0; w->hold[0] != '\0' && i < 600 * 50 && access(w->hold, F_OK) != 0; i++)
        uv_sleep(20); /* FV_TEST_HOLD_FINISH (the tests only) */
    fv_round_sizes_t z = fv_cjob_sizes(c->model.jm);
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
    if (c->rnd.kind->apply == NULL) {
        memcpy(w->hash, c->model.hash, 32); /* (explain) no model changed: no file, no version */
        return;
    }
    if ((w->status = c->rnd.kind->apply(c->model.jm, &w->sum, &w->oc, &w->improved, &d)) != 0) {
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
        coord__round_go(c);
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

int coord__round_prep(coord_t *c)
{
    rwork_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return FV_ENOMEM;
    fv_round_out_init(&w->out);
    w->what = W_PREP;
    w->cr = c->rnd.cr;
    int r = queue_work(c, w);
    if (r != 0)
        free(w);
    return r;
}

void coord__round_work_orphan(coord_t *c)
{
    if (c->rnd.work == NULL)
        return;
    c->rnd.work->orphaned = true;
    c->rnd.work->cr = c->rnd.cr;
    c->rnd.work = NULL;
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
void coord__round_close(coord_t *c)
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

void coord__round_finish(coord_t *c, int status, const char *why_in)
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
    if (c->rnd.kind->id == FV_FED_KIND_EXPLAIN) /* the model it explains, not the last one */
        snprintf(w->model_in, sizeof w->model_in, "%s", coord__explain_model_sha(c));
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
        if (c->test.hold_finish[0] != '\0')
            snprintf(w->hold, sizeof w->hold, "%s-%" PRIu64, c->test.hold_finish, c->rnd.round);
        if (c->run.dir[0] != '\0' && c->rnd.kind->id != FV_FED_KIND_STATS)
            snprintf(w->save_path, sizeof w->save_path, "%s/%s-r%04" PRIu64 ".fvm", c->run.dir,
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
        else if (w->oc.has_explanation)
            coord__explain_record(c, &w->oc.expl, &metrics, &line);
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
    if (status == 0 && model_out[0] != '\0')
        json_object_set_new(f, "model", json_string(model_out));
    else if (status != 0)
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
    coord__bench_round_end(c); /* silent members miss, contributors start over */
    coord__valid_round_end(c); /* failed proofs count; max_failures excludes */
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
        if (c->rnd.attempt >= ROUND_ATTEMPTS && c->rnd.kind->id == FV_FED_KIND_EXPLAIN) {
            /* the explanation is a report on the result, not the result: the job ends
             * with its models, without it */
            coord_logj("warn", "explain_given_up",
                       json_pack("{s:s,s:I,s:I,s:s}", "job", c->run.job_hex, "round",
                                 (json_int_t)c->rnd.round, "attempts", (json_int_t)c->rnd.attempt,
                                 "why", why));
            c->run.explain_given_up = true;
            coord__phase_end(c);
            return;
        }
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
