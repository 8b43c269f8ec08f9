/* coord_job.c - the job scheduler: submit, start or resume, abort, finish, and JOB_DONE.
 *
 * Jobs: submitted by `--job SPEC` or the admin CLI, stored "queued" in the state
 * (coordinator/fv_state.h), run one at a time in submission order (IDLE -> WAITING ...
 * DONE -> IDLE -> the next). With --job the daemon exits when that job has ended.
 *
 * Resuming (what a SIGKILL at any instant leaves, with the round commit of coord_finish.c):
 * at start, a job still "running" is restored from its checkpoint and resumed from its
 * next round: a round in flight at the crash is run again (same number, same model;
 * agents derive every random choice from the job seed, the round and their own key, so
 * it gives the same sum), and no committed round runs twice.
 *
 * End of a job: JOB_DONE goes to every agent that accepted the job, also to one that is
 * reconnecting at that moment: each agent keeps the last job it took part in (done_*)
 * and hears of its end on every connection until it accepts another; with --job the
 * daemon lingers until all of them were told (or the join deadline passed). Each JOB_DONE
 * follows the job's signed receipt (coord_release.c: the final and student files' hashes).
 * Then the job's report (report.html in its directory) is written on the thread pool
 * (coord_report.c).
 *
 * Ownership: c->job and c->run belong to the job being run, c->model to its models; all
 * are freed by coord__job_reset, which leaves the agents connected. Threading: the loop
 * thread only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "coord-int.h"
#include "fv-config.h"
#include "fv_model.h"
#include "fv_schema.h"

/* ---- starting or resuming a job -------------------------------------------------- */

static void hex8(const uint8_t *p, char out[17])
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* Frees everything that belongs to the job being run; the agents stay connected. */
void coord__job_reset(coord_t *c)
{
    if (c->run.state == ST_ROUND)
        coord__round_cleanup(c);
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        a->accepted = false;
        a->has_model = false;
        a->has_stats = false;
        a->has_teacher = false;
    }
    fv_cjob_free(c->model.jm);
    c->model.jm = NULL;
    c->distill.teacher_sha[0] = '\0';
    c->distill.teacher_version = 0;
    c->distill.lat_ready = false;
    coord__schema_reset(c);
    fv_job_free(c->job);
    c->job = NULL;
    free(c->run.spec);
    c->run.spec = NULL;
    c->run.spec_len = 0;
    c->model.final = NULL;
    if (c->run.rounds_log != NULL)
        fclose(c->run.rounds_log);
    c->run.rounds_log = NULL;
    c->run.job_id[0] = c->run.wire_id[0] = c->run.job_hex[0] = c->run.dir[0] = '\0';
    c->model.global_sha[0] = c->model.best_sha[0] = '\0';
    c->model.global_version = c->model.best_version = 0;
    c->rnd.round = 0;
    c->rnd.attempt = 0;
    c->run.final_stored = false;
    c->run.final_sha[0] = '\0';
    c->distill.teacher_stored = false;
    c->run.last_auc = c->run.last_pr = c->run.last_loss = c->run.last_acc = NAN;
    c->run.avg_round_s = 0;
    c->run.abort_requested = false;
    c->run.explain_given_up = false;
    c->run.fail_why[0] = '\0';
    coord__cohort_reset(c);
    c->run.state = ST_IDLE;
}

/* The parameters of a stored model file (malloc'd into *ret, *ret_n of them). */
static int load_params(coord_t *c, const char *sha, float **ret, size_t *ret_n)
{
    fv_diag_t d;
    uint8_t *buf = NULL;
    size_t len = 0;
    fv_model_t *m = NULL;
    *ret = NULL;
    int r = fv_state_model_read(c->st, sha, &buf, &len, &d);
    if (r == 0)
        r = fv_model_decode(sha, buf, len, &m, &d);
    free(buf);
    if (r == 0) {
        *ret_n = fv_mlp_n_params(m->mlp);
        *ret = malloc(*ret_n * sizeof(float));
        if (*ret == NULL)
            r = FV_ENOMEM;
        else
            memcpy(*ret, fv_mlp_params_const(m->mlp), *ret_n * sizeof(float));
    }
    if (r != 0)
        coord_logj("error", "resume_model_failed",
                   json_pack("{s:s,s:s,s:s}", "sha256", sha, "err", fv_err_name(r), "why", d.msg));
    fv_model_free(m);
    return r;
}

/* Restores a job's progress from its checkpoint: the job machine (fv_cjob_restore: stats,
 * models, optimizer state, early stopping and round counters) from the stored model files
 * it names, exactly as they were after the last committed round. */
static int job_restore(coord_t *c, const fv_state_ckpt_t *ck, char *why, size_t why_len)
{
    fv_cjob_ckpt_t jc;
    memset(&jc, 0, sizeof jc);
    jc.next_round = ck->next_round;
    jc.rounds_done = ck->rounds_done;
    jc.rounds_failed = ck->rounds_failed;
    jc.stats_sum = ck->stats_sum;
    jc.stats_words = ck->stats_words;
    jc.n_ref = ck->n_ref;
    jc.opt = ck->opt_state;
    jc.opt_len = ck->opt_len;
    jc.best_metric = ck->best_metric;
    jc.best_round = ck->best_round;
    jc.since_best = ck->since_best;
    jc.distill = ck->distill;
    float *teacher = NULL, *global = NULL, *best = NULL;
    int r = 0;
    if (ck->stats_sum != NULL && ck->distill &&
        (r = load_params(c, ck->teacher_sha, &teacher, &jc.n_teacher)) != 0)
        snprintf(why, why_len, "checkpoint: teacher model %s cannot be read", ck->teacher_sha);
    if (r == 0 && ck->stats_sum != NULL && ck->global_sha[0] != '\0' &&
        (r = load_params(c, ck->global_sha, &global, &jc.n_global)) != 0)
        snprintf(why, why_len, "checkpoint: global model %s cannot be read", ck->global_sha);
    if (r == 0 && ck->stats_sum != NULL && ck->best_sha[0] != '\0' &&
        (r = load_params(c, ck->best_sha, &best, &jc.n_best)) != 0)
        snprintf(why, why_len, "checkpoint: best model %s cannot be read", ck->best_sha);
    jc.teacher = teacher, jc.global = global, jc.best = best;
    fv_cjob_t *jm = NULL;
    fv_diag_t d;
    if (r == 0 && (r = fv_cjob_restore(c->job, &jc, &jm, &d)) != 0)
        snprintf(why, why_len, "%.400s", d.msg);
    free(teacher), free(global), free(best);
    if (r != 0)
        return r;
    fv_cjob_free(c->model.jm);
    c->model.jm = jm;
    c->rnd.round = ck->next_round;
    if (!fv_cjob_has_stats(jm))
        return 0;
    if (ck->distill)
        coord__distill_entered(c, ck->teacher_sha, ck->teacher_version);
    memcpy(c->model.global_sha, ck->global_sha, 65);
    c->model.global_version = ck->global_version;
    coord__params_hash(fv_cjob_global(jm), c->model.hash);
    if (ck->best_sha[0] != '\0') {
        memcpy(c->model.best_sha, ck->best_sha, 65);
        c->model.best_version = ck->best_version;
    }
    return 0;
}

/* --out/jobs/<id> made (also when it exists: a resumed job appends to its own files) and
 * --out/latest pointed at it (a symlink replaced by rename, so a reader sees the old or the
 * new one). A failure is logged and leaves the job without files; it does not stop it. */
static int job_dir_make(coord_t *c)
{
    char jobs[4096], tmp[4096], rel[128];
    int n = snprintf(jobs, sizeof jobs, "%s/jobs", c->out_dir);
    if (n < 0 || (size_t)n + 66 >= sizeof c->run.dir) {
        coord_logj("error", "job_dir",
                   json_pack("{s:s,s:s}", "dir", c->out_dir, "why",
                             "--out path too long for the job's directory"));
        return -1;
    }
    memcpy(c->run.dir, jobs, (size_t)n);
    snprintf(c->run.dir + n, sizeof c->run.dir - (size_t)n, "/%s", c->run.job_id);
    snprintf(rel, sizeof rel, "jobs/%s", c->run.job_id);
    snprintf(tmp, sizeof tmp, "%s/.latest.tmp", c->out_dir);
    if ((mkdir(jobs, 0700) != 0 && errno != EEXIST) ||
        (mkdir(c->run.dir, 0700) != 0 && errno != EEXIST)) {
        coord_logj("error", "job_dir",
                   json_pack("{s:s,s:s}", "dir", c->run.dir, "why", strerror(errno)));
        c->run.dir[0] = '\0';
        return -1;
    }
    char latest[4096];
    snprintf(latest, sizeof latest, "%s/latest", c->out_dir);
    (void)unlink(tmp);
    if (symlink(rel, tmp) != 0 || rename(tmp, latest) != 0)
        coord_logj("warn", "job_dir",
                   json_pack("{s:s,s:s}", "dir", latest, "why", strerror(errno)));
    return 0;
}

static void job_run(coord_t *c, const char *id, int r, char *why, size_t why_len);

/* Starts (or resumes) the next job from the state: a running one first, else the oldest
 * queued. A job whose schema is open runs the schema round first (coord_schema.c), unless
 * the state holds its resolved spec. Then offers it to every connected agent. */
void coord__job_try_next(coord_t *c)
{
    if (c->run.state != ST_IDLE || c->stopping)
        return;
    fv_diag_t d;
    char id[65];
    char *spec = NULL;
    int r = fv_state_job_next(c->st, id, &spec, &d);
    if (r == UV_ENOENT)
        return;
    if (r != 0) {
        coord__state_fatal(c, "next job", r, &d);
        return;
    }
    char why[512] = "";
    fv_job_t *job = NULL;
    r = fv_job_from_json("job", spec, strlen(spec), &job, &d);
    if (r != 0)
        snprintf(why, sizeof why, "stored spec: %.400s", d.msg);
    c->job = job;
    /* the stored spec is the one submitted: its digest is the job's id (also when the
     * job then runs with a resolved schema, whose digest is the wire's) */
    if (r == 0 && (r = fv_job_to_json(job, &c->run.spec, &c->run.spec_len)) == 0 &&
        (r = fv_job_digest(job, c->run.digest)) == 0) {
        coord__hexn(c->run.digest, 32, c->run.job_id);
        memcpy(c->run.wire_id, c->run.job_id, 65);
        hex8(c->run.digest, c->run.job_hex);
        c->run.job_id64 = 0;
        for (int i = 7; i >= 0; i--)
            c->run.job_id64 = (c->run.job_id64 << 8) | c->run.digest[i];
        if (strcmp(c->run.job_id, id) != 0) {
            snprintf(why, sizeof why, "stored spec hashes to %s, not its id", c->run.job_id);
            r = FV_ECORRUPT;
        }
    }
    free(spec);
    if (r == 0 && fv_schema_is_open(c->job->schema)) {
        r = coord__schema_begin(c, why, sizeof why);
        if (r == 1)
            return; /* the schema round runs; coord__job_resolved goes on */
    }
    job_run(c, id, r, why, sizeof why);
}

void coord__job_resolved(coord_t *c)
{
    char id[65], why[512] = "";
    memcpy(id, c->run.job_id, 65);
    job_run(c, id, 0, why, sizeof why);
}

void coord__job_unrunnable(coord_t *c, int r, const char *why_in)
{
    fv_diag_t d;
    char id[65], why[768];
    memcpy(id, c->run.job_id, 65);
    snprintf(why, sizeof why, "%s", why_in);
    /* A job that cannot run is marked failed, so it does not block the queue. */
    coord_logj("error", "job_unrunnable",
               json_pack("{s:s,s:s,s:s}", "job", id, "err", fv_err_name(r), "why", why));
    if (fv_state_job_set_status(c->st, id, "failed", why, coord_wall_ms(), &d) == 0)
        coord_audit(c, NULL, "job.failed", json_pack("{s:s,s:s}", "job", id, "why", why));
    bool exit_now = c->only_job != NULL && strcmp(c->only_job, id) == 0;
    coord__job_reset(c);
    if (exit_now) {
        c->run.exit_code = EXIT_FAIL;
        snprintf(c->run.fail_why, sizeof c->run.fail_why, "%.500s", why);
        coord__shutdown_all(c);
        return;
    }
    coord__job_try_next(c);
}

/* The job (c->job, c->run.spec and digest set; r and why from loading it) starts or
 * resumes from its checkpoint. */
static void job_run(coord_t *c, const char *id, int r, char *why, size_t why_len)
{
    fv_diag_t d;
    if (r == 0 && (r = fv_cjob_new(c->job, &c->model.jm, &d)) != 0)
        snprintf(why, why_len, "%.400s", d.msg);
    char prev[16] = "";
    if (r == 0)
        r = fv_state_job_status(c->st, id, prev, &d);
    bool resumed = false;
    if (r == 0) {
        fv_state_ckpt_t ck;
        memset(&ck, 0, sizeof ck);
        int cr = fv_state_ckpt_load(c->st, id, &ck, &d);
        if (cr == 0) {
            r = job_restore(c, &ck, why, why_len);
            resumed = true;
        } else if (cr != UV_ENOENT) {
            r = cr;
            snprintf(why, why_len, "checkpoint: %.400s", d.msg);
        }
        fv_state_ckpt_close(&ck);
    }
    if (r != 0) {
        memcpy(c->run.job_id, id, 65);
        coord__job_unrunnable(c, r, why);
        return;
    }
    if (c->out_dir != NULL && job_dir_make(c) == 0) {
        char p[4096];
        snprintf(p, sizeof p, "%s/rounds.jsonl", c->run.dir);
        c->run.rounds_log = fopen(p, resumed ? "a" : "w");
        coord__schema_write_file(c);
    }
    if (strcmp(prev, "running") != 0 &&
        fv_state_job_set_status(c->st, id, "running", NULL, coord_wall_ms(), &d) != 0) {
        coord__state_fatal(c, "job start", FV_EIO, &d);
        return;
    }
    coord_audit(c, NULL, resumed ? "job.resumed" : "job.started",
                json_pack("{s:s,s:s,s:I,s:I}", "job", c->run.job_id, "name", c->job->name,
                          "next_round", (json_int_t)c->rnd.round, "rounds_done",
                          (json_int_t)coord__rounds_done(c)));
    coord_logj("info", resumed ? "job_resumed" : "job_started",
               json_pack("{s:s,s:s,s:s,s:b,s:i,s:I,s:s}", "job", c->run.job_hex, "name",
                         c->job->name, "model", c->job->model, "secagg", c->job->secagg.on,
                         "min_agents", (int)c->job->min_agents, "next_round",
                         (json_int_t)c->rnd.round, "global", c->model.global_sha));
    c->run.state = ST_WAITING;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL)
            coord__send_offer(c, a);
    /* Resumed after a phase's last round was committed but before the phase's end was
     * (the teacher stored, or the job ended): do that now. */
    if (resumed && fv_cjob_phase_over(c->model.jm))
        coord__phase_end(c);
}

/* ---- submit, abort, progress (the admin port) ------------------------------------ */

int coord_job_submit(coord_t *c, const char *spec, size_t len, const char *by, char ret_id[65],
                     fv_diag_t *d)
{
    fv_job_t *job = NULL;
    char *canon = NULL;
    size_t clen = 0;
    uint8_t dg[32];
    char id[65];
    int r = fv_job_from_json("job", spec, len, &job, d);
    if (r != 0)
        return r;
    if ((r = fv_job_to_json(job, &canon, &clen)) != 0 || (r = fv_job_digest(job, dg)) != 0) {
        snprintf(d->msg, sizeof d->msg, "cannot encode the job spec");
        goto out;
    }
    coord__hexn(dg, 32, id);
    r = fv_state_job_add(c->st, id, canon, job->name, by, coord_wall_ms(), d);
    if (r != 0)
        goto out;
    coord_audit(c, by, "job.submitted",
                json_pack("{s:s,s:s,s:s,s:s}", "job", id, "name", job->name, "model", job->model,
                          "spec_sha256", id));
    coord_logj("info", "job_submitted",
               json_pack("{s:s,s:s,s:s}", "job", id, "name", job->name, "by", by));
    memcpy(ret_id, id, 65);
    coord__job_try_next(c);
out:
    fv_job_free(job);
    free(canon);
    return r;
}

int coord_job_abort(coord_t *c, const char *id, const char *by, fv_diag_t *d)
{
    char status[16];
    int r = fv_state_job_status(c->st, id, status, d);
    if (r != 0)
        return r;
    if (strcmp(status, "queued") != 0 && strcmp(status, "running") != 0) {
        snprintf(d->msg, sizeof d->msg, "job %.16s is %s, not queued or running", id, status);
        return FV_EPHASE;
    }
    if (c->run.state == ST_REPORT && strcmp(c->run.job_id, id) == 0) {
        snprintf(d->msg, sizeof d->msg,
                 "job %.16s has finished its rounds and is storing its result", id);
        return FV_EPHASE;
    }
    if (coord__schema_collecting(c) && strcmp(c->run.job_id, id) == 0) {
        /* no model yet: the schema round ends, the job is marked aborted */
        char why[160];
        snprintf(why, sizeof why, "aborted by %s", by);
        r = fv_state_job_set_status(c->st, id, "aborted", why, coord_wall_ms(), d);
        if (r == 0)
            coord_audit(c, NULL, "job.aborted", json_pack("{s:s,s:s}", "job", id, "why", why));
        bool exit_now = c->only_job != NULL && strcmp(c->only_job, id) == 0;
        coord__job_reset(c);
        if (exit_now) {
            c->run.exit_code = EXIT_FAIL;
            snprintf(c->run.fail_why, sizeof c->run.fail_why, "%s", why);
            coord__shutdown_all(c);
        } else
            coord__job_try_next(c);
        return r;
    }
    if (c->run.state != ST_IDLE && c->run.state != ST_DONE && strcmp(c->run.job_id, id) == 0) {
        snprintf(c->run.abort_by, sizeof c->run.abort_by, "%s", by);
        c->run.abort_requested = true;
        coord_logj("warn", "job_abort_requested",
                   json_pack("{s:s,s:s}", "job", c->run.job_hex, "by", by));
        if (coord__round_busy(c) || c->run.files_busy)
            return 0; /* the work's end, when it returns, ends the job */
        if (c->run.state == ST_ROUND) {
            /* the round in flight is abandoned (nothing committed) */
            coord__round_cleanup(c);
            for (agent_t *a = c->agents; a != NULL; a = a->next)
                if (a->conn != NULL && a->accepted)
                    coord__send_ctl(c, a, FV_MSG_ROUND_END, FV_EPHASE,
                                    "job aborted by the operator");
        }
        coord__job_finish(c);
        return 0;
    }
    char why[160];
    snprintf(why, sizeof why, "aborted by %s", by);
    r = fv_state_job_set_status(c->st, id, "aborted", why, coord_wall_ms(), d);
    if (r == 0)
        coord_audit(c, NULL, "job.aborted", json_pack("{s:s,s:s}", "job", id, "why", why));
    return r;
}

json_t *coord_job_live(coord_t *c)
{
    if (c->job == NULL || (c->run.state != ST_WAITING && c->run.state != ST_ROUND))
        return NULL;
    /* (a worker holds the round's machine: its phase is the work's, not read from it) */
    const char *work = coord__round_work(c);
    const fv_cround_t *cr = c->run.state == ST_ROUND && work == NULL ? c->rnd.cr : NULL;
    /* (waiting: the agents that accepted the job, of the min_agents expected) */
    uint32_t answered = cr != NULL                                      ? fv_cround_answered(cr)
                        : work != NULL && strcmp(work, "starting") != 0 ? c->rnd.n
                        : coord__schema_collecting(c) ? (uint32_t)coord__schema_answered(c)
                        : c->run.state == ST_WAITING  ? (uint32_t)coord__cohort_n_accepted(c)
                                                      : 0;
    int ph = cr != NULL ? fv_cround_phase(cr) : -1;
    const char *phase = coord__schema_collecting(c)              ? "schema discovery"
                        : c->run.state == ST_WAITING             ? "waiting for agents"
                        : work != NULL                           ? work
                        : c->job->secagg.on && ph >= 0 && ph < 5 ? coord__phase_names[ph]
                                                                 : "upload";
    /* The kind of the round: while a worker holds the job machine (a round's finish sets
     * the stats round's sums there), the round in progress's, never read from the machine:
     * that read raced the worker's write (TSan, admin-cli in CI). */
    uint32_t kind = work != NULL && c->rnd.kind != NULL   ? c->rnd.kind->id
                    : work == NULL && c->model.jm != NULL ? fv_cjob_kind(c->model.jm)
                                                          : FV_FED_KIND_STATS;
    uint64_t end = coord__distilling(c) || kind == FV_FED_KIND_EXPLAIN ? fv_job_last_round(c->job)
                                                                       : c->job->rounds;
    uint64_t left = end > c->rnd.round ? end - c->rnd.round : 0;
    json_t *o = json_pack(
        "{s:s,s:I,s:I,s:s,s:s,s:i,s:i,s:I,s:I}", "id", c->run.job_id, "round",
        (json_int_t)c->rnd.round, "rounds", (json_int_t)end, "kind", coord__kind_name(c), "phase",
        phase, "answered", (int)answered, "expected",
        c->run.state == ST_ROUND ? (int)c->rnd.n : (int)c->job->min_agents, "rounds_done",
        (json_int_t)coord__rounds_done(c), "rounds_failed", (json_int_t)coord__rounds_failed(c));
    json_object_set_new(o, "val_roc_auc",
                        isnan(c->run.last_auc) ? json_null() : json_real(c->run.last_auc));
    json_object_set_new(o, "val_pr_auc",
                        isnan(c->run.last_pr) ? json_null() : json_real(c->run.last_pr));
    json_object_set_new(o, "val_log_loss",
                        isnan(c->run.last_loss) ? json_null() : json_real(c->run.last_loss));
    if (fv_schema_positive(c->job->schema) == NULL)
        json_object_set_new(o, "val_accuracy",
                            isnan(c->run.last_acc) ? json_null() : json_real(c->run.last_acc));
    json_t *sl = coord__schema_live(c);
    if (sl != NULL)
        json_object_set_new(o, "schema_round", sl);
    json_object_set_new(o, "benched", coord__bench_live(c));        /* silent members sitting out */
    json_object_set_new(o, "proof_failures", coord__valid_live(c)); /* validated rounds */
    json_object_set_new(o, "elapsed_s",
                        json_real(c->run.state == ST_ROUND
                                      ? (double)(coord__now_ms(c) - c->rnd.t_round_start) / 1000.0
                                  : sl != NULL ? json_real_value(json_object_get(sl, "elapsed_s"))
                                               : 0.0));
    /* an upper bound: early stopping may end the job sooner; none while the job waits for
     * agents (cohort says on whom) */
    json_object_set_new(o, "eta_s",
                        c->run.avg_round_s > 0 && c->run.state == ST_ROUND
                            ? json_real(c->run.avg_round_s * (double)left)
                            : json_null());
    json_object_set_new(o, "cohort", coord__cohort_live(c)); /* each agent's status */
    return o;
}

/* ---- end of job ------------------------------------------------------------------ */

/* The phase being run is over (or was over when the job resumed): training hands over to
 * distillation when the job has a distill section; then a job with "explain" runs its
 * explanation round (fv_cjob_explain_due: not run yet, and the job has a result); else the
 * job ends. */
void coord__phase_end(coord_t *c)
{
    if (!coord__distilling(c) && c->job->distill.on && !c->run.abort_requested &&
        fv_cjob_best(c->model.jm) != NULL) {
        if (coord__distill_begin(c) != 0)
            return;
        coord__crash_point("distill-started");
        c->rnd.round = (uint64_t)c->job->rounds + 1;
        c->rnd.attempt = 0;
        c->run.state = ST_WAITING;
        coord__round_start_soon(c);
        return;
    }
    fv_diag_t d;
    if (!c->run.abort_requested && c->run.exit_code == 0 && !c->run.explain_given_up &&
        fv_cjob_explain_due(c->model.jm) && fv_cjob_explain_begin(c->model.jm, &d) == 0) {
        c->rnd.round = fv_cjob_round(c->model.jm);
        c->rnd.attempt = 0;
        c->run.state = ST_WAITING;
        coord_logj("info", "explain_started",
                   json_pack("{s:s,s:I,s:s}", "job", c->run.job_hex, "round",
                             (json_int_t)c->rnd.round, "model",
                             coord__distilling(c) ? "teacher" : "final"));
        coord__round_start_soon(c);
        return;
    }
    coord__job_finish(c);
}

/* An agent was told of the end of its job: JOB_DONE queued on its live connection and
 * handed to the socket. */
static bool told(agent_t *a)
{
    if (!a->done_pending || a->done_told)
        return true;
    if (a->conn != NULL && fv_conn_is_open(a->conn) && a->done_sent && a->oq_head == NULL &&
        fv_conn_queued_bytes(a->conn) == 0)
        a->done_told = true;
    return a->done_told;
}

/* --job mode after the job ended: stop once every agent that took part was told, or at
 * linger_until (checked again on every tick). */
void coord__linger_check(coord_t *c)
{
    if (c->stopping || c->run.linger_until == 0)
        return;
    size_t waiting = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        waiting += !told(a);
    if (waiting > 0 && coord__now_ms(c) < c->run.linger_until)
        return;
    if (waiting > 0)
        coord_logj("warn", "job_done_untold",
                   json_pack("{s:s,s:I}", "job", c->run.job_hex, "agents", (json_int_t)waiting));
    coord__shutdown_all(c);
}

/* The result's file is on disk (and saved under --out): the job's end goes on. */
static void final_files_done(coord_t *c, coord_mfwork_t *w)
{
    if (w->put_rc != 0) {
        coord__state_fatal(c, "final model store", w->put_rc, &w->put_d);
        return;
    }
    if (w->save_rc != 0 && c->run.exit_code == 0)
        c->run.exit_code = EXIT_FAIL;
    c->run.final_stored = true;
    memcpy(c->run.final_sha, w->sha, 65);
    memcpy(c->run.final_hash, w->hash, 32);
    coord__job_finish(c);
}

void coord__job_finish(coord_t *c)
{
    /* The distilled student's report needs its latency: measured first, off the loop. */
    if (coord__distilling(c) && !c->run.abort_requested && fv_cjob_best(c->model.jm) != NULL &&
        !c->distill.lat_ready && c->run.exit_code == 0 && coord__lat_start(c) == 0)
        return;
    c->run.state = ST_DONE;
    /* The result: with early stopping, the best evaluated model (as the local trainer
     * restores its best epoch); without (patience 0), the model after the last update,
     * as fv_train keeps its last parameters. A distilled student is always the best
     * evaluated one: its report states measured metrics. */
    bool last = !coord__distilling(c) && c->job->early_stopping.patience == 0;
    uint64_t final_round = 0;
    /* (no job machine: the job ended in its schema round, before its schema was fixed) */
    const fv_mlp_t *final = c->model.jm != NULL ? fv_cjob_final(c->model.jm, &final_round) : NULL;
    const char *final_sha = last ? c->model.global_sha : c->model.best_sha;
    int64_t final_parent = last ? c->model.global_version : c->model.best_version;
    int64_t final_version = 0;
    fv_diag_t d;
    if (c->run.abort_requested) {
        snprintf(c->run.fail_why, sizeof c->run.fail_why, "aborted by %s", c->run.abort_by);
        c->run.exit_code = EXIT_FAIL;
    } else if (final != NULL) {
        char path[4096] = "";
        if (c->run.dir[0] != '\0')
            snprintf(path, sizeof path, "%s/final.fvm", c->run.dir);
        if (!coord__distilling(c) && !c->run.final_stored && c->run.exit_code == 0) {
            /* the result's file stored (and --out/final.fvm saved) on the thread pool
             * first; final_files_done comes back here */
            c->run.state = ST_REPORT;
            if (coord__model_files_async(c, final, final_round, path, final_files_done) == 0)
                return;
            c->run.state = ST_DONE;
        }
        if (path[0] != '\0' && !coord__distilling(c) && !c->run.final_stored &&
            coord__save_model(c, final, path, final_round) != 0 && c->run.exit_code == 0)
            c->run.exit_code = EXIT_FAIL;
        c->model.final = final;
    } else if (c->run.exit_code == 0) {
        c->run.exit_code = EXIT_FAIL;
        snprintf(c->run.fail_why, sizeof c->run.fail_why, "no %s round completed",
                 coord__distilling(c) ? "distill" : "training");
    }
    const char *status = c->run.abort_requested  ? "aborted"
                         : c->run.exit_code == 0 ? "done"
                                                 : "failed";
    /* The final version names the stored file of the chosen model; one transaction with
     * the job's status, so a restart never runs a finished job again. */
    if (coord__txn_begin(c) != 0)
        return;
    int r = 0;
    int64_t student_version = 0;
    if (c->model.final != NULL && c->run.exit_code == 0 && coord__distilling(c)) {
        r = coord__store_distilled(c, &student_version, &d);
        final_version = c->distill.teacher_version;
    } else if (c->model.final != NULL && c->run.exit_code == 0) {
        char producer[96];
        snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
        char sha[65];
        /* final.fvm's metadata names its round, so its bytes (and address) are its own */
        if (c->run.final_stored)
            memcpy(sha, c->run.final_sha, 65);
        else
            r = coord__store_model(c, final, final_round, sha);
        if (r == 0)
            r = fv_state_version_add(c->st, c->run.job_id, final_round, sha, final_parent, "final",
                                     producer, coord_wall_ms(), &final_version, &d);
        if (r == 0)
            r = fv_state_job_set_final(c->st, c->run.job_id, final_version, &d);
        if (r == 0)
            coord_audit(c, NULL, "model.stored",
                        json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:s}", "version",
                                  (json_int_t)final_version, "sha256", sha, "job", c->run.job_id,
                                  "round", (json_int_t)final_round, "kind", "final", "parent",
                                  (json_int_t)final_parent, "of", final_sha));
    }
    if (r == 0)
        r = fv_state_job_set_status(c->st, c->run.job_id, status,
                                    c->run.fail_why[0] != '\0' ? c->run.fail_why : NULL,
                                    coord_wall_ms(), &d);
    if (r != 0) {
        c->in_txn = false;
        fv_state_rollback(c->st);
        coord__state_fatal(c, "job end", r, &d);
        return;
    }
    json_t *det = json_pack("{s:s,s:s,s:I,s:I,s:I}", "job", c->run.job_id, "status", status,
                            "rounds", (json_int_t)coord__rounds_done(c), "rounds_failed",
                            (json_int_t)coord__rounds_failed(c), "best_round",
                            (json_int_t)fv_cjob_best_round(c->model.jm));
    if (final_version > 0)
        json_object_set_new(det, "final_version", json_integer(final_version));
    if (student_version > 0)
        json_object_set_new(det, "student_version", json_integer(student_version));
    if (c->run.fail_why[0] != '\0')
        json_object_set_new(det, "why", json_string(c->run.fail_why));
    coord_audit(c, NULL,
                c->run.abort_requested  ? "job.aborted"
                : c->run.exit_code == 0 ? "job.finished"
                                        : "job.failed",
                det);
    if (coord__txn_commit(c) != 0)
        return;
    if (c->metrics.jobs != NULL)
        fv_prom_add(c->metrics.jobs, status, 1);
    /* Every agent that accepted the job hears of its end: now if it is connected, else
     * when it reconnects (on_open). */
    uint8_t final_hash[32] = {0};
    if (c->model.final != NULL && c->run.final_stored)
        memcpy(final_hash, c->run.final_hash, 32); /* hashed with the file, on the pool */
    else if (c->model.final != NULL)
        coord__params_hash(c->model.final, final_hash);
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        if (!a->took_part || memcmp(a->part_job, c->run.digest, 32) != 0)
            continue;
        a->took_part = false;
        a->done_pending = true;
        a->done_sent = a->done_told = false;
        a->done_rounds = coord__rounds_done(c);
        memcpy(a->done_model, final_hash, 32);
    }
    /* the job's signed receipt (final and student file hashes), sent before JOB_DONE */
    coord__job_receipt(c, status, final_version, student_version);
    if (c->test.drop_at_job_end) {
        coord_logj("warn", "test_drop_agents", json_pack("{s:s}", "point", "job-end"));
        for (agent_t *a = c->agents; a != NULL; a = a->next)
            if (a->conn != NULL) {
                fv_conn_t *old = a->conn;
                fv_conn_close(old, FV_EIO, "FV_TEST_DROP_AGENTS_AT=job-end");
            }
    }
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL && fv_conn_is_open(a->conn) && a->done_pending)
            coord__send_ctl(c, a, FV_MSG_JOB_DONE, 0, "");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    json_t *f =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:o,s:I,s:I}", "job", c->run.job_hex, "id",
                  c->run.job_id, "status", status, "rounds", (json_int_t)coord__rounds_done(c),
                  "rounds_failed", (json_int_t)coord__rounds_failed(c), "best_round",
                  (json_int_t)fv_cjob_best_round(c->model.jm), "best_metric",
                  coord__jnum(fv_cjob_best_metric(c->model.jm)), "final_version",
                  (json_int_t)final_version, "max_rss_kb", (json_int_t)ru.ru_maxrss);
    if (student_version > 0)
        json_object_set_new(f, "student_version", json_integer(student_version));
    if (c->run.fail_why[0] != '\0')
        json_object_set_new(f, "why", json_string(c->run.fail_why));
    /* the log line (not the --job result) also has the loop's longest callback since the
     * last round ended: the job's end, the final model stored (coord_loopstat.c) */
    json_t *logf = json_deep_copy(f), *loop = coord__loopstat_take(c);
    if (logf != NULL && loop != NULL)
        json_object_update(logf, loop);
    json_decref(loop);
    coord_logj(c->run.exit_code == 0 ? "info" : "error", "job_done", logf);
    coord__report_job_end(c); /* report.html, on the thread pool */
    bool exit_now = c->only_job != NULL && strcmp(c->only_job, c->run.job_id) == 0;
    if (exit_now) {
        char *s = json_dumps(f, JSON_COMPACT);
        if (s != NULL)
            printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(f);
    if (exit_now) {
        /* Stay until every agent that took part was told (a reconnecting one too), at
         * most the join deadline; then the server closes with BYE. */
        c->run.linger_until = coord__now_ms(c) + c->job->deadlines.join_ms;
        coord__linger_check(c);
        return;
    }
    /* A daemon goes on with the next queued job. */
    c->run.exit_code = 0;
    coord__job_reset(c);
    coord__job_try_next(c);
}
