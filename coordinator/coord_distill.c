/* coord_distill.c - distillation: the teacher handed over, and the distilled student's report.
 *
 * Distillation (a job with a "distill" section, fv_job.h): when training is over, the
 * training phase's result becomes the teacher: stored as the job's final version, in one
 * transaction with a checkpoint of the distill phase. Distill rounds (kind 3, numbered
 * from rounds+1) then train a student of the spec's architecture exactly like training
 * rounds train the global model (SecAgg, server optimizer, early stopping on the distill
 * section's settings), with the teacher sent to every agent once per session. Each
 * agent's round vector carries histograms of the student, of the teacher and (with
 * quantize_int8) of the int8 student on its validation rows, so every round compares
 * them on the same rows. At the end the best evaluated student is stored as a
 * "distilled" version (and its int8 file as a second one) with a compression report:
 * parameters, bytes, scoring latency measured here on the thread pool (fv_latency.h),
 * ROC/PR AUC of teacher, student and int8 student from the best round's histograms.
 *
 * Threading: the latency is measured in uv_queue_work on clones of the models (the work
 * callback touches only its item); lat_done merges on the loop thread and runs job_finish
 * again. Ownership: the teacher is the training phase's result, owned by the job machine
 * (fv_round_job.h) until coord__job_reset frees it.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "coord-int.h"
#include "fv-config.h"

/* ---- the teacher ----------------------------------------------------------------- */

/* The job machine is in its distill phase (fv_cjob_distill_begin, or restored in it): the
 * teacher's stored file (teacher_sha/version) and hash, the student's first parent, no
 * best student yet, and every agent to be sent the teacher again (what it holds is the
 * training phase's model, re-sent by name). */
void coord__distill_entered(coord_t *c, const char *teacher_sha, int64_t teacher_version)
{
    const fv_mlp_t *teacher = fv_cjob_teacher(c->model.jm), *student = fv_cjob_global(c->model.jm);
    coord__params_hash(teacher, c->distill.teacher_hash);
    memcpy(c->distill.teacher_sha, teacher_sha, 65);
    c->distill.teacher_version = teacher_version;
    c->rnd.kind = fv_round_kind_by_id(fv_round_kinds_default(), FV_FED_KIND_DISTILL);
    coord__params_hash(student, c->model.hash);
    c->model.global_sha[0] = '\0';
    c->model.global_version = teacher_version; /* the first student's parent */
    c->model.best_sha[0] = '\0';
    c->model.best_version = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        a->has_teacher = false;
    coord_logj("info", "distill_started",
               json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "job", c->run.job_hex, "teacher", teacher_sha,
                         "student", c->job->distill.student, "teacher_params",
                         (json_int_t)fv_mlp_n_params(teacher), "student_params",
                         (json_int_t)fv_mlp_n_params(student), "first_round",
                         (json_int_t)c->job->rounds + 1));
}

/* The teacher's file is on disk (and saved under --out): the hand-over goes on. */
static void teacher_files_done(coord_t *c, coord_mfwork_t *w)
{
    if (w->put_rc != 0) {
        coord__state_fatal(c, "teacher store", w->put_rc, &w->put_d);
        return;
    }
    c->distill.teacher_stored = true;
    memcpy(c->distill.stored_sha, w->sha, 65);
    coord__phase_end(c);
}

/* Training is over and the job has a distill section. The teacher is the training
 * phase's result, chosen as job_finish chooses a job's result (fv_cjob_final: the best
 * evaluated model with early stopping, else the last): its file is written on the thread
 * pool first (then coord__phase_end runs again), and it is recorded as the job's final
 * version; in the same transaction the checkpoint moves to the distill phase, so a
 * restart resumes distilling from the same teacher. Returns 0, or non-zero when the
 * hand-over is not done (its file being written, or the daemon stopped by state_fatal). */
int coord__distill_begin(coord_t *c)
{
    bool last = c->job->early_stopping.patience == 0;
    uint64_t final_round = 0;
    const fv_mlp_t *final = fv_cjob_final(c->model.jm, &final_round);
    const char *final_sha = last ? c->model.global_sha : c->model.best_sha;
    int64_t final_parent = last ? c->model.global_version : c->model.best_version;
    fv_diag_t d;
    snprintf(d.msg, sizeof d.msg, "cannot store the teacher");
    char sha[65], path[4096] = "";
    int64_t version = 0;
    int r = 0;
    if (c->run.dir[0] != '\0')
        snprintf(path, sizeof path, "%s/final.fvm", c->run.dir);
    if (c->distill.teacher_stored) {
        memcpy(sha, c->distill.stored_sha, 65);
    } else if (coord__model_files_async(c, final, final_round, path, teacher_files_done) == 0) {
        return 1; /* the teacher's file on the thread pool first: teacher_files_done */
    } else {
        if ((r = coord__store_model(c, final, final_round, sha)) != 0) {
            coord__state_fatal(c, "teacher store", r, &d);
            return r;
        }
        if (path[0] != '\0')
            coord__save_model(c, final, path, final_round);
    }
    c->distill.teacher_stored = false;
    if ((r = coord__txn_begin(c)) != 0)
        return r;
    char producer[96];
    snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
    r = fv_state_version_add(c->st, c->run.job_id, final_round, sha, final_parent, "final",
                             producer, coord_wall_ms(), &version, &d);
    if (r == 0)
        r = fv_state_job_set_final(c->st, c->run.job_id, version, &d);
    if (r == 0 && (r = fv_cjob_distill_begin(c->model.jm, &d)) == 0) {
        coord__distill_entered(c, sha, version);
        r = coord__ckpt_save(c, "", c->model.global_version, &d);
    }
    if (r == 0) {
        coord_audit(c, NULL, "model.stored",
                    json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:s}", "version", (json_int_t)version,
                              "sha256", sha, "job", c->run.job_id, "round", (json_int_t)final_round,
                              "kind", "final", "parent", (json_int_t)final_parent, "of",
                              final_sha));
        coord_audit(c, NULL, "job.distill_started",
                    json_pack("{s:s,s:I,s:s,s:s,s:f,s:f,s:I,s:I}", "job", c->run.job_id, "teacher",
                              (json_int_t)version, "teacher_sha256", sha, "student",
                              c->job->distill.student, "temperature", c->job->distill.temperature,
                              "alpha", c->job->distill.alpha, "first_round",
                              (json_int_t)c->job->rounds + 1, "last_round",
                              (json_int_t)fv_job_last_round(c->job)));
    }
    if (r != 0) {
        c->in_txn = false;
        fv_state_rollback(c->st);
        coord__state_fatal(c, "distill start", r, &d);
        return r;
    }
    return coord__txn_commit(c);
}

/* ---- the distilled student and its compression report ---------------------------- */

/* Scoring latency of the teacher, the student and (quantize_int8) the int8 student,
 * measured on the coordinator's thread pool (fv_mlp_latency on pseudo-random encoded
 * rows: the network's cost does not depend on the values). */
typedef struct latwork {
    uv_work_t req;
    coord_t *c;
    fv_mlp_t *m[3];
    size_t n;
    float *x;
    fv_latency_t lat[3];
    int rc;
} latwork_t;

#define LAT_BUDGET_S 0.25

static void lat_run(uv_work_t *req)
{
    latwork_t *w = req->data;
    for (size_t i = 0; i < w->n && w->rc == 0; i++)
        w->rc = fv_mlp_latency(w->m[i], w->x, LAT_BUDGET_S, &w->lat[i]);
}

static void lat_free(latwork_t *w)
{
    for (size_t i = 0; i < 3; i++)
        fv_mlp_free(w->m[i]);
    free(w->x);
    free(w);
}

static void lat_merge(coord_t *c, latwork_t *w, int status)
{
    if (status == 0 && w->rc == 0) {
        memcpy(c->distill.lat, w->lat, sizeof c->distill.lat);
    } else {
        memset(c->distill.lat, 0, sizeof c->distill.lat); /* reported as null */
        coord_logj("warn", "latency_failed",
                   json_pack("{s:s,s:s}", "job", c->run.job_hex, "err",
                             fv_err_name(status != 0 ? status : w->rc)));
    }
    lat_free(w);
    c->distill.lat_ready = true;
    if (c->stopping || c->job == NULL)
        return; /* the job resumes at its end on the next start */
    coord__job_finish(c);
}

static void lat_done(uv_work_t *req, int status)
{
    latwork_t *w = req->data;
    coord_t *c = w->c;
    coord__loopstat_begin(c, "work.latency_done"); /* the loop's callbacks are measured */
    lat_merge(c, w, status);
    coord__loopstat_end(c);
}

/* Starts the measurement; 0 when queued (job_finish runs again when it is done). */
int coord__lat_start(coord_t *c)
{
    latwork_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return FV_ENOMEM;
    w->c = c;
    size_t nf = fv_mlp_arch(fv_cjob_global(c->model.jm))->n_in;
    w->x = malloc((size_t)FV_LATENCY_BIG_BATCH * nf * sizeof *w->x);
    int r = w->x == NULL ? FV_ENOMEM : fv_mlp_clone(fv_cjob_teacher(c->model.jm), &w->m[0]);
    if (r == 0)
        r = fv_mlp_clone(fv_cjob_best(c->model.jm), &w->m[1]);
    if (r == 0 && c->job->distill.quantize_int8)
        r = fv_mlp_quantize_int8(fv_cjob_best(c->model.jm), &w->m[2]);
    w->n = c->job->distill.quantize_int8 ? 3 : 2;
    if (r == 0) {
        fv_latency_rows(w->x, FV_LATENCY_BIG_BATCH, nf, c->job->seed);
        w->req.data = w;
        r = uv_queue_work(c->net.loop, &w->req, lat_run, lat_done);
    }
    if (r != 0) {
        lat_free(w);
        return r;
    }
    c->run.state = ST_REPORT;
    return 0;
}

/* The metrics object of the job's ok round `round` from the state (NULL if none). */
static json_t *round_metrics(coord_t *c, uint64_t round)
{
    fv_diag_t d;
    json_t *job = NULL, *out = NULL;
    if (fv_state_job_json(c->st, c->run.job_id, &job, &d) != 0)
        return NULL;
    size_t i;
    json_t *rr;
    json_array_foreach(json_object_get(job, "rounds"), i, rr)
    {
        json_t *st = json_object_get(rr, "status");
        if (json_integer_value(json_object_get(rr, "round")) == (json_int_t)round &&
            json_is_string(st) && strcmp(json_string_value(st), "ok") == 0)
            out = json_incref(json_object_get(rr, "metrics"));
    }
    json_decref(job);
    return out;
}

static double jget(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static json_t *report_side(const fv_mlp_t *m, const char *arch, int64_t version, const char *sha,
                           size_t bytes, const fv_latency_t *lat, double auc, double pr)
{
    json_t *o =
        json_pack("{s:s,s:I,s:s,s:I,s:I}", "arch", arch, "version", (json_int_t)version, "sha256",
                  sha, "params", (json_int_t)fv_mlp_n_params(m), "bytes", (json_int_t)bytes);
    json_object_set_new(
        o, "latency_us",
        json_pack("{s:o,s:o,s:I,s:I}", "batch_1", coord__jnum(lat->calls1 ? lat->batch1_us : NAN),
                  "batch_1024", coord__jnum(lat->calls1024 ? lat->batch1024_us : NAN), "calls_1",
                  (json_int_t)lat->calls1, "calls_1024", (json_int_t)lat->calls1024));
    json_object_set_new(o, "roc_auc", coord__jnum(auc));
    json_object_set_new(o, "pr_auc", coord__jnum(pr));
    return o;
}

static json_t *ratio(double a, double b)
{
    return coord__jnum(a > 0 && b > 0 ? a / b : NAN);
}

/* Inside job_finish's transaction: the best student as the job's "distilled" version
 * (and, with quantize_int8, its int8 file as a second one), with the compression
 * report; the job's student version. */
int coord__store_distilled(coord_t *c, int64_t *ret_version, fv_diag_t *d)
{
    char producer[96], sha[65], qsha[65] = "", arch_t[128], arch_s[128];
    snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
    size_t s_bytes = 0, q_bytes = 0, t_bytes = 0;
    int64_t v = 0, vq = 0;
    bool q8 = c->job->distill.quantize_int8;
    fv_mlp_t *qm = NULL;
    json_t *tv = NULL, *met = round_metrics(c, fv_cjob_best_round(c->model.jm)), *report = NULL;
    int r = coord__store_model_as(c, fv_cjob_best(c->model.jm), fv_cjob_best_round(c->model.jm),
                                  false, sha, &s_bytes);
    if (r == 0 && q8)
        r = coord__store_model_as(c, fv_cjob_best(c->model.jm), fv_cjob_best_round(c->model.jm),
                                  true, qsha, &q_bytes);
    if (r == 0 && q8)
        r = fv_mlp_quantize_int8(fv_cjob_best(c->model.jm), &qm);
    if (r == 0)
        r = fv_state_version_json(c->st, c->distill.teacher_version, &tv, d);
    if (r == 0) {
        t_bytes = (size_t)json_integer_value(json_object_get(tv, "bytes"));
        r = fv_state_version_add(c->st, c->run.job_id, fv_cjob_best_round(c->model.jm), sha,
                                 c->model.best_version, "distilled", producer, coord_wall_ms(), &v,
                                 d);
    }
    if (r == 0 && q8)
        r = fv_state_version_add(c->st, c->run.job_id, fv_cjob_best_round(c->model.jm), qsha, v,
                                 "distilled", producer, coord_wall_ms(), &vq, d);
    if (r == 0) {
        fv_mlp_arch_string(fv_mlp_arch(fv_cjob_teacher(c->model.jm)), arch_t, sizeof arch_t);
        fv_mlp_arch_string(fv_mlp_arch(fv_cjob_best(c->model.jm)), arch_s, sizeof arch_s);
        double t_auc = jget(met, "teacher_roc_auc"), s_auc = jget(met, "val_roc_auc");
        report = json_object();
        json_object_set_new(report, "teacher",
                            report_side(fv_cjob_teacher(c->model.jm), arch_t,
                                        c->distill.teacher_version, c->distill.teacher_sha, t_bytes,
                                        &c->distill.lat[0], t_auc, jget(met, "teacher_pr_auc")));
        json_object_set_new(report, "student",
                            report_side(fv_cjob_best(c->model.jm), arch_s, v, sha, s_bytes,
                                        &c->distill.lat[1], s_auc, jget(met, "val_pr_auc")));
        json_object_set_new(json_object_get(report, "student"), "log_loss",
                            coord__jnum(jget(met, "val_log_loss")));
        if (q8)
            json_object_set_new(report, "student_int8",
                                report_side(qm, arch_s, vq, qsha, q_bytes, &c->distill.lat[2],
                                            jget(met, "int8_roc_auc"), jget(met, "int8_pr_auc")));
        json_object_set_new(
            report, "ratios",
            json_pack("{s:o,s:o,s:o,s:o}", "params",
                      ratio((double)fv_mlp_n_params(fv_cjob_teacher(c->model.jm)),
                            (double)fv_mlp_n_params(fv_cjob_best(c->model.jm))),
                      "bytes", ratio((double)t_bytes, (double)s_bytes), "latency_batch_1",
                      ratio(c->distill.lat[0].batch1_us, c->distill.lat[1].batch1_us),
                      "latency_batch_1024",
                      ratio(c->distill.lat[0].batch1024_us, c->distill.lat[1].batch1024_us)));
        json_object_set_new(report, "roc_auc_gap", coord__jnum(t_auc - s_auc));
        if (json_object_get(met, "val_accuracy") != NULL) {
            /* a multi-class job: accuracy from the same round's summed counts */
            double t_acc = jget(met, "teacher_accuracy"), s_acc = jget(met, "val_accuracy");
            json_object_set_new(json_object_get(report, "teacher"), "accuracy", coord__jnum(t_acc));
            json_object_set_new(json_object_get(report, "student"), "accuracy", coord__jnum(s_acc));
            if (q8)
                json_object_set_new(json_object_get(report, "student_int8"), "accuracy",
                                    coord__jnum(jget(met, "int8_accuracy")));
            json_object_set_new(report, "accuracy_gap", coord__jnum(t_acc - s_acc));
        }
        json_object_set_new(report, "round",
                            json_integer((json_int_t)fv_cjob_best_round(c->model.jm)));
        json_object_set_new(report, "n_val",
                            json_integer(json_integer_value(json_object_get(met, "n_val"))));
        json_object_set_new(report, "temperature", json_real(c->job->distill.temperature));
        json_object_set_new(report, "alpha", json_real(c->job->distill.alpha));
        json_object_set_new(report, "distill_rounds",
                            json_integer((json_int_t)(c->rnd.round - c->job->rounds)));
        char method[256];
        snprintf(method, sizeof method,
                 "the network (fv_mlp_predict) on encoded rows, timed in blocks of calls per "
                 "clock read, median over blocks of the time per call, one thread of the "
                 "coordinator's host; AUCs from the secure histograms of round %" PRIu64
                 " (every agent's validation rows)",
                 fv_cjob_best_round(c->model.jm));
        json_object_set_new(report, "latency_method", json_string(method));
        char *text = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS);
        r = text == NULL ? FV_ENOMEM : fv_state_version_set_report(c->st, v, text, d);
        if (r == 0 && q8)
            r = fv_state_version_set_report(c->st, vq, text, d);
        free(text);
    }
    if (r == 0)
        r = fv_state_job_set_student(c->st, c->run.job_id, v, d);
    if (r == 0) {
        json_t *det = json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:O}", "version", (json_int_t)v, "sha256",
                                sha, "job", c->run.job_id, "round",
                                (json_int_t)fv_cjob_best_round(c->model.jm), "kind", "distilled",
                                "parent", (json_int_t)c->model.best_version, "report", report);
        coord_audit(c, NULL, "model.stored", det);
        if (q8)
            coord_audit(c, NULL, "model.stored",
                        json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:b}", "version", (json_int_t)vq,
                                  "sha256", qsha, "job", c->run.job_id, "round",
                                  (json_int_t)fv_cjob_best_round(c->model.jm), "kind", "distilled",
                                  "parent", (json_int_t)v, "int8", 1));
        coord_logj("info", "distilled",
                   json_pack("{s:s,s:I,s:O}", "job", c->run.job_hex, "version", (json_int_t)v,
                             "report", report));
        *ret_version = v;
    }
    if (r == 0 && c->run.dir[0] != '\0') {
        char path[4200];
        snprintf(path, sizeof path, "%s/student.fvm", c->run.dir);
        coord__save_model(c, fv_cjob_best(c->model.jm), path, fv_cjob_best_round(c->model.jm));
    }
    fv_mlp_free(qm);
    json_decref(tv);
    json_decref(met);
    json_decref(report);
    return r;
}
