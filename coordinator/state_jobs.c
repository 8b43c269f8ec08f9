/* state_jobs.c - the durable state store's rows about the work (fv_state.h): agents, jobs,
 * a job's agents (their data fingerprints), checkpoints, rounds and model versions.
 *
 * The tables are described at the top of state.c. Every function checks its arguments
 * (state_sql.c's checks) before any statement runs, and one that writes a row about a job
 * checks first that the job exists, so a missing job is UV_ENOENT with a sentence rather
 * than a foreign-key failure.
 * Rows read back are hostile where they feed memory or fixed buffers: a status, a sha, a
 * stats or optimizer blob, a counter is checked before it is copied, and a row this code
 * cannot have written is FV_ECORRUPT.
 *
 * Checkpoints: stats_sum is stored as little-endian 32-bit words whatever the host, so the
 * database file is portable; best_metric NaN is stored as NULL. Model versions: a version
 * names a model file that must already be on disk (the durability argument in state.c and
 * state_models.c); its number is never reused (AUTOINCREMENT).
 *
 * Threading: a fv_state_t belongs to one thread. Ownership: fv_state_job_next's spec and a
 * loaded checkpoint's buffers are the caller's (fv_state_ckpt_close frees the latter).
 */
#define _GNU_SOURCE /* strnlen */
#include "state-int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#define STATUS_MAX 63  /* bytes of a round status */
#define SERIAL_MAX 128 /* hex digits of a certificate serial */

/* Whether job id exists: 0, UV_ENOENT with a sentence, or a database error. */
static int job_exists(fv_state_t *s, const char *id, const char *what, fv_diag_t *d)
{
    sqlite3_stmt *st = NULL;
    int r = fv__state_query_row(s, &st, "SELECT 1 FROM jobs WHERE id = ?1", what, d, "t", id);
    sqlite3_finalize(st); /* its result repeats the step's, handled by fv__state_query_row */
    if (r == 0)
        return fv_diag_set(d, -ENOENT, "%s: %s: job %s is unknown", s->db_path, what, id);
    return r < 0 ? r : 0;
}

/* ---- agents ------------------------------------------------------------------------- */

int fv_state_agent_seen(fv_state_t *s, const char *name, const char *serial_hex, int64_t now_ms,
                        fv_diag_t *d)
{
    int r;

    if ((r = fv__state_check_text("agent name", name, FV_STATE_NAME_MAX, 0, d)) != 0)
        return r;
    size_t n = serial_hex ? strnlen(serial_hex, SERIAL_MAX + 1) : 0;
    if (n == 0 || n > SERIAL_MAX)
        return fv_diag_set(d, FV_EINVAL, "agent %s: certificate serial must be 1..%d hex digits",
                           name, SERIAL_MAX);
    for (size_t i = 0; i < n; i++)
        if (!fv__state_is_lower_hex(serial_hex[i]) &&
            !(serial_hex[i] >= 'A' && serial_hex[i] <= 'F'))
            return fv_diag_set(d, FV_EINVAL, "agent %s: certificate serial is not hex", name);

    return fv__state_exec_bound(s,
                                "INSERT INTO agents (name, serial, first_seen, last_seen) "
                                "VALUES (?1, ?2, ?3, ?3) "
                                "ON CONFLICT (name) DO UPDATE SET serial = excluded.serial, "
                                "last_seen = excluded.last_seen",
                                "recording an agent", NULL, d, "tti", name, serial_hex, now_ms);
}

/* ---- jobs --------------------------------------------------------------------------- */

static const char *const job_statuses[] = {FV_STATE_JOB_STATUSES};

static bool is_job_status(const char *v)
{
    for (size_t i = 0; i < sizeof job_statuses / sizeof job_statuses[0]; i++)
        if (strcmp(v, job_statuses[i]) == 0)
            return true;
    return false;
}

int fv_state_job_add(fv_state_t *s, const char *id, const char *spec_json, const char *name,
                     const char *submitted_by, int64_t now_ms, fv_diag_t *d)
{
    json_t *spec = NULL;
    int r, ext = 0;

    if ((r = fv__state_check_hex64("job id", id, d)) != 0 ||
        (r = fv__state_check_text("job name", name, FV_STATE_NAME_MAX, FV__STATE_TEXT_NULL_OK,
                                  d)) != 0 ||
        (r = fv__state_check_text("submitted_by", submitted_by, FV_STATE_NAME_MAX,
                                  FV__STATE_TEXT_NULL_OK, d)) != 0)
        return r;
    if (spec_json == NULL)
        return fv_diag_set(d, FV_EINVAL, "job %s: no spec", id);
    if ((r = fv__state_parse_json_arg("job spec", spec_json, &spec, d)) != 0)
        return r;
    bool obj = json_is_object(spec);
    json_decref(spec);
    if (!obj)
        return fv_diag_set(d, FV_ESCHEMA, "job %s: the spec is not a JSON object", id);

    r = fv__state_exec_bound(s,
                             "INSERT INTO jobs (id, spec, name, submitted_by, submitted, status) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, 'queued')",
                             "adding a job", &ext, d, "tttti", id, spec_json, name, submitted_by,
                             now_ms);
    if (r != 0 && ext == SQLITE_CONSTRAINT_UNIQUE)
        r = fv_diag_set(d, FV_EDUP, "%s: job %s already exists", s->db_path, id);
    return r;
}

int fv_state_job_set_status(fv_state_t *s, const char *id, const char *status, const char *why,
                            int64_t now_ms, fv_diag_t *d)
{
    static const char what[] = "setting a job's status";
    int r;

    if ((r = fv__state_check_hex64("job id", id, d)) != 0 ||
        (r = fv__state_check_text("why", why, FV_STATE_TEXT_MAX,
                                  FV__STATE_TEXT_NULL_OK | FV__STATE_TEXT_EMPTY_OK, d)) != 0)
        return r;
    if (status == NULL || !is_job_status(status))
        return fv_diag_set(d, FV_EINVAL,
                           "job %s: status must be queued, running, done, failed or aborted", id);
    if ((r = fv__state_exec_bound(
             s,
             "UPDATE jobs SET status = ?2, why = ?3, "
             "started = CASE WHEN ?2 = 'running' AND started IS NULL THEN ?4 "
             "ELSE started END, "
             "finished = CASE WHEN ?2 IN ('done', 'failed', 'aborted') THEN ?4 END "
             "WHERE id = ?1",
             what, NULL, d, "ttti", id, status, why, now_ms)) != 0)
        return r;
    if (sqlite3_changes(s->db) == 0)
        return fv_diag_set(d, -ENOENT, "%s: %s: job %s is unknown", s->db_path, what, id);
    return 0;
}

/* Points job id's final_version, or its student_version if student, at version, which
 * must exist, belong to the job and, for the student, be of kind 'distilled'. */
static int job_set_version(fv_state_t *s, const char *id, int64_t version, bool student,
                           fv_diag_t *d)
{
    const char *what =
        student ? "setting a job's student version" : "setting a job's final version";
    sqlite3_stmt *st = NULL;
    int r;

    if ((r = fv__state_check_hex64("job id", id, d)) != 0)
        return r;
    if ((r = job_exists(s, id, what, d)) != 0)
        return r;
    if ((r = fv__state_query_row(s, &st, "SELECT job, kind FROM versions WHERE version = ?1", what,
                                 d, "i", version)) < 0)
        goto out;
    if (r == 0) {
        r = fv_diag_set(d, -ENOENT, "%s: %s: version %" PRId64 " is unknown", s->db_path, what,
                        version);
        goto out;
    }
    const char *owner = (const char *)sqlite3_column_text(st, 0);
    const char *kind = (const char *)sqlite3_column_text(st, 1);
    if (owner == NULL || strcmp(owner, id) != 0) {
        r = fv_diag_set(d, FV_EINVAL, "%s: %s: version %" PRId64 " belongs to another job",
                        s->db_path, what, version);
        goto out;
    }
    if (student && (kind == NULL || strcmp(kind, "distilled") != 0)) {
        r = fv_diag_set(d, FV_EINVAL,
                        "%s: %s: version %" PRId64 " is of kind '%.16s', not 'distilled'",
                        s->db_path, what, version, kind ? kind : "?");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    r = fv__state_exec_bound(s,
                             student ? "UPDATE jobs SET student_version = ?2 WHERE id = ?1"
                                     : "UPDATE jobs SET final_version = ?2 WHERE id = ?1",
                             what, NULL, d, "ti", id, version);
out:
    sqlite3_finalize(st);
    return r;
}

int fv_state_job_set_final(fv_state_t *s, const char *id, int64_t version, fv_diag_t *d)
{
    return job_set_version(s, id, version, false, d);
}

int fv_state_job_set_student(fv_state_t *s, const char *id, int64_t version, fv_diag_t *d)
{
    return job_set_version(s, id, version, true, d);
}

int fv_state_round_attempts(fv_state_t *s, const char *job, uint64_t round, uint32_t *ret,
                            fv_diag_t *d)
{
    static const char what[] = "reading a round's attempts";
    sqlite3_stmt *st = NULL;
    int r;
    if ((r = fv__state_check_hex64("job id", job, d)) != 0)
        return r;
    if (round > INT64_MAX)
        return fv_diag_set(d, FV_EINVAL, "%s: round %llu out of range", what,
                           (unsigned long long)round);
    if ((r = fv__state_query_row(s, &st,
                                 "SELECT COALESCE(MAX(attempt), 0) FROM rounds "
                                 "WHERE job = ?1 AND round = ?2",
                                 what, d, "ti", job, (int64_t)round)) < 0)
        goto out;
    int64_t n = r == 1 ? sqlite3_column_int64(st, 0) : 0;
    if (n < 0 || n > UINT32_MAX) {
        r = fv__state_db_corrupt(s, what, "attempt out of range", d);
        goto out;
    }
    *ret = (uint32_t)n;
    r = 0;
out:
    sqlite3_finalize(st);
    return r;
}

int fv_state_job_status(fv_state_t *s, const char *id, char ret_status[16], fv_diag_t *d)
{
    static const char what[] = "reading a job's status";
    sqlite3_stmt *st = NULL;
    int r;

    if ((r = fv__state_check_hex64("job id", id, d)) != 0)
        return r;
    if ((r = fv__state_query_row(s, &st, "SELECT status FROM jobs WHERE id = ?1", what, d, "t",
                                 id)) < 0)
        goto out;
    if (r == 0) {
        r = fv_diag_set(d, -ENOENT, "%s: job %s is unknown", s->db_path, id);
        goto out;
    }
    const char *v = (const char *)sqlite3_column_text(st, 0);
    if (v == NULL || (size_t)sqlite3_column_bytes(st, 0) >= 16) {
        r = fv__state_db_corrupt(s, what, "status longer than 15 bytes", d);
        goto out;
    }
    memcpy(ret_status, v, (size_t)sqlite3_column_bytes(st, 0) + 1);
    r = 0;
out:
    sqlite3_finalize(st);
    return r;
}

int fv_state_job_resolve(fv_state_t *s, const char *prefix, char ret_id[65], fv_diag_t *d)
{
    static const char what[] = "resolving a job id";
    sqlite3_stmt *st = NULL;
    char p[65];
    int r;

    size_t n = prefix ? strnlen(prefix, 65) : 0;
    if (n < 4 || n > 64)
        return fv_diag_set(d, FV_EINVAL, "a job id prefix has 4 to 64 hex digits");
    for (size_t i = 0; i < n; i++) {
        char c = prefix[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!fv__state_is_lower_hex(c))
            return fv_diag_set(d, FV_EINVAL, "job prefix '%.64s' is not hex", prefix);
        p[i] = c;
    }
    p[n] = '\0';

    if ((r = fv__state_query_row(
             s, &st, "SELECT count(*), min(id) FROM jobs WHERE substr(id, 1, length(?1)) = ?1",
             what, d, "t", p)) != 1) {
        if (r == 0)
            r = fv__state_db_no_result(s, what, d);
        goto out;
    }
    int64_t count = (int64_t)sqlite3_column_int64(st, 0);
    const char *id = (const char *)sqlite3_column_text(st, 1);
    if (count == 0) {
        r = fv_diag_set(d, -ENOENT, "no job id starts with '%s'", p);
        goto out;
    }
    if (count > 1) {
        r = fv_diag_set(d, FV_EINVAL, "job prefix '%s' is ambiguous (%" PRId64 " jobs)", p, count);
        goto out;
    }
    if (!fv__state_is_hex64(id)) {
        r = fv__state_db_corrupt(s, what, "a job id is not 64 hex digits", d);
        goto out;
    }
    memcpy(ret_id, id, 65);
    r = 0;
out:
    sqlite3_finalize(st);
    return r;
}

int fv_state_job_next(fv_state_t *s, char ret_id[65], char **ret_spec, fv_diag_t *d)
{
    static const char what[] = "choosing the next job";
    sqlite3_stmt *st = NULL;
    int r;

    if ((r = fv__state_query_row(s, &st,
                                 "SELECT id, spec FROM jobs WHERE status IN ('running', 'queued') "
                                 "ORDER BY status = 'running' DESC, seq LIMIT 1",
                                 what, d, "")) < 0)
        goto out;
    if (r == 0) {
        r = fv_diag_set(d, -ENOENT, "%s: no job is queued or running", s->db_path);
        goto out;
    }
    const char *id = (const char *)sqlite3_column_text(st, 0);
    const char *spec = (const char *)sqlite3_column_text(st, 1);
    if (!fv__state_is_hex64(id) || spec == NULL) {
        r = fv__state_db_corrupt(s, what, "a job row without a valid id or spec", d);
        goto out;
    }
    size_t n = (size_t)sqlite3_column_bytes(st, 1);
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        r = fv__state_oom(s, what, d);
        goto out;
    }
    memcpy(copy, spec, n + 1);
    memcpy(ret_id, id, 65);
    *ret_spec = copy;
    r = 0;
out:
    sqlite3_finalize(st);
    return r;
}

int fv_state_job_agent(fv_state_t *s, const char *job, const char *agent, const char *data_sha256,
                       uint64_t rows, int64_t now_ms, fv_diag_t *d)
{
    static const char what[] = "recording an agent's data fingerprint";
    int r;

    if ((r = fv__state_check_hex64("job id", job, d)) != 0 ||
        (r = fv__state_check_text("agent name", agent, FV_STATE_NAME_MAX, 0, d)) != 0 ||
        (r = fv__state_check_hex64("data_sha256", data_sha256, d)) != 0 ||
        (r = fv__state_check_u64("rows", rows, d)) != 0)
        return r;
    if ((r = job_exists(s, job, what, d)) != 0)
        return r;
    return fv__state_exec_bound(
        s,
        "INSERT INTO job_agents (job, agent, data_sha256, rows, accepted) "
        "VALUES (?1, ?2, ?3, ?4, ?5) "
        "ON CONFLICT (job, agent) DO UPDATE SET data_sha256 = excluded.data_sha256, "
        "rows = excluded.rows, accepted = excluded.accepted",
        what, NULL, d, "tttii", job, agent, data_sha256, (int64_t)rows, now_ms);
}

/* ---- checkpoints -------------------------------------------------------------------- */

int fv_state_ckpt_save(fv_state_t *s, const char *job, const fv_state_ckpt_t *ck, fv_diag_t *d)
{
    static const char what[] = "saving a checkpoint";
    uint8_t *stats = NULL;
    int r;

    if ((r = fv__state_check_hex64("job id", job, d)) != 0)
        return r;
    if (ck == NULL)
        return fv_diag_set(d, FV_EINVAL, "job %s: no checkpoint given", job);
    if ((r = fv__state_check_u64("next_round", ck->next_round, d)) != 0 ||
        (r = fv__state_check_u64("rounds_done", ck->rounds_done, d)) != 0 ||
        (r = fv__state_check_u64("rounds_failed", ck->rounds_failed, d)) != 0 ||
        (r = fv__state_check_u64("n_ref", ck->n_ref, d)) != 0 ||
        (r = fv__state_check_u64("best_round", ck->best_round, d)) != 0)
        return r;
    if (ck->stats_sum == NULL && ck->stats_words > 0)
        return fv_diag_set(d, FV_EINVAL, "job %s: checkpoint stats_words without stats_sum", job);
    if (ck->stats_words > FV_STATE_STATS_MAX)
        return fv_diag_set(d, FV_ETOOBIG, "job %s: checkpoint stats of %zu words, over %zu", job,
                           ck->stats_words, (size_t)FV_STATE_STATS_MAX);
    if (ck->opt_state == NULL && ck->opt_len > 0)
        return fv_diag_set(d, FV_EINVAL, "job %s: checkpoint opt_len without opt_state", job);
    if (ck->opt_len > FV_STATE_MODEL_MAX)
        return fv_diag_set(d, FV_ETOOBIG, "job %s: optimizer state of %zu bytes, over %zu", job,
                           ck->opt_len, (size_t)FV_STATE_MODEL_MAX);
    if ((ck->global_sha[0] != '\0' && !fv__state_is_hex64(ck->global_sha)) ||
        (ck->best_sha[0] != '\0' && !fv__state_is_hex64(ck->best_sha)) ||
        (ck->teacher_sha[0] != '\0' && !fv__state_is_hex64(ck->teacher_sha)))
        return fv_diag_set(d, FV_EINVAL,
                           "job %s: checkpoint global_sha/best_sha/teacher_sha must be \"\" or 64 "
                           "lowercase hex digits",
                           job);
    if (ck->teacher_json != NULL) {
        json_t *t = NULL;
        if ((r = fv__state_parse_json_arg("checkpoint teacher_json", ck->teacher_json, &t, d)) != 0)
            return r;
        bool obj = json_is_object(t);
        json_decref(t);
        if (!obj)
            return fv_diag_set(d, FV_ESCHEMA,
                               "job %s: checkpoint teacher_json is not a JSON object", job);
    }
    if ((r = job_exists(s, job, what, d)) != 0)
        return r;

    /* Little-endian words, whatever the host: the database file is portable. */
    size_t stats_bytes = ck->stats_words * 4;
    if (stats_bytes > 0) {
        stats = malloc(stats_bytes);
        if (stats == NULL)
            return fv__state_oom(s, what, d);
        for (size_t i = 0; i < ck->stats_words; i++) {
            uint32_t w = ck->stats_sum[i];
            stats[4 * i] = (uint8_t)w;
            stats[4 * i + 1] = (uint8_t)(w >> 8);
            stats[4 * i + 2] = (uint8_t)(w >> 16);
            stats[4 * i + 3] = (uint8_t)(w >> 24);
        }
    }
    r = fv__state_exec_bound(
        s,
        "INSERT OR REPLACE INTO checkpoints (job, next_round, rounds_done, "
        "rounds_failed, n_ref, stats_sum, global_sha, global_version, opt_state, "
        "best_sha, best_version, best_metric, best_round, since_best, phase, "
        "teacher_sha, teacher_version, teacher_json) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
        "?16, ?17, ?18)",
        what, NULL, d, "tiiiibtibtidiittit", job, (int64_t)ck->next_round, (int64_t)ck->rounds_done,
        (int64_t)ck->rounds_failed, (int64_t)ck->n_ref, (const void *)stats, stats_bytes,
        ck->global_sha[0] ? ck->global_sha : NULL, ck->global_version,
        (const void *)(ck->opt_len > 0 ? ck->opt_state : NULL), ck->opt_len,
        ck->best_sha[0] ? ck->best_sha : NULL, ck->best_version, ck->best_metric,
        (int64_t)ck->best_round, (int64_t)ck->since_best, ck->distill ? "distill" : "train",
        ck->teacher_sha[0] ? ck->teacher_sha : NULL, ck->teacher_version, ck->teacher_json);
    free(stats);
    return r;
}

/* A sha column into a char[65]: NULL -> "", otherwise 64 lowercase hex. */
static bool col_sha(sqlite3_stmt *st, int i, char out[65])
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        out[0] = '\0';
        return true;
    }
    const char *v = (const char *)sqlite3_column_text(st, i);
    if (!fv__state_is_hex64(v))
        return false;
    memcpy(out, v, 65);
    return true;
}

int fv_state_ckpt_load(fv_state_t *s, const char *job, fv_state_ckpt_t *ret, fv_diag_t *d)
{
    static const char what[] = "loading a checkpoint";
    sqlite3_stmt *st = NULL;
    fv_state_ckpt_t ck = {0};
    int r;

    if ((r = fv__state_check_hex64("job id", job, d)) != 0)
        return r;
    if ((r = fv__state_query_row(s, &st,
                                 "SELECT next_round, rounds_done, rounds_failed, n_ref, stats_sum, "
                                 "global_sha, global_version, opt_state, best_sha, best_version, "
                                 "best_metric, best_round, since_best, phase, teacher_sha, "
                                 "teacher_version, teacher_json FROM checkpoints WHERE job = ?1",
                                 what, d, "t", job)) < 0)
        goto out;
    if (r == 0) {
        r = fv_diag_set(d, -ENOENT, "%s: job %s has no checkpoint", s->db_path, job);
        goto out;
    }
    int64_t v[6] = {
        (int64_t)sqlite3_column_int64(st, 0),  (int64_t)sqlite3_column_int64(st, 1),
        (int64_t)sqlite3_column_int64(st, 2),  (int64_t)sqlite3_column_int64(st, 3),
        (int64_t)sqlite3_column_int64(st, 11), (int64_t)sqlite3_column_int64(st, 12),
    };
    for (int i = 0; i < 6; i++)
        if (v[i] < 0 || (i == 5 && v[i] > (int64_t)UINT32_MAX)) {
            r = fv__state_db_corrupt(s, what, "a counter out of range", d);
            goto out;
        }
    ck.next_round = (uint64_t)v[0];
    ck.rounds_done = (uint64_t)v[1];
    ck.rounds_failed = (uint64_t)v[2];
    ck.n_ref = (uint64_t)v[3];
    ck.best_round = (uint64_t)v[4];
    ck.since_best = (uint32_t)v[5];
    ck.global_version = (int64_t)sqlite3_column_int64(st, 6);
    ck.best_version = (int64_t)sqlite3_column_int64(st, 9);
    ck.best_metric =
        sqlite3_column_type(st, 10) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 10);
    if (!col_sha(st, 5, ck.global_sha) || !col_sha(st, 8, ck.best_sha) ||
        !col_sha(st, 14, ck.teacher_sha)) {
        r = fv__state_db_corrupt(s, what, "a model name is not 64 hex digits", d);
        goto out;
    }
    const char *phase = (const char *)sqlite3_column_text(st, 13);
    if (phase == NULL || (strcmp(phase, "train") != 0 && strcmp(phase, "distill") != 0)) {
        r = fv__state_db_corrupt(s, what, "the phase is neither train nor distill", d);
        goto out;
    }
    ck.distill = strcmp(phase, "distill") == 0;
    ck.teacher_version = (int64_t)sqlite3_column_int64(st, 15);

    /* stats_sum: a blob of 4-byte little-endian words, at most FV_STATE_STATS_MAX. */
    if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
        const uint8_t *b = sqlite3_column_blob(st, 4);
        size_t n = (size_t)sqlite3_column_bytes(st, 4);
        if (n % 4 != 0 || n / 4 > FV_STATE_STATS_MAX) {
            r = fv__state_db_corrupt(s, what, "the stats blob is not a whole number of words", d);
            goto out;
        }
        if (n > 0) {
            ck.stats_sum = malloc(n);
            if (ck.stats_sum == NULL) {
                r = fv__state_oom(s, what, d);
                goto out;
            }
            ck.stats_words = n / 4;
            for (size_t i = 0; i < ck.stats_words; i++)
                ck.stats_sum[i] = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                                  (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        }
    }
    if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
        const void *b = sqlite3_column_blob(st, 7);
        size_t n = (size_t)sqlite3_column_bytes(st, 7);
        if (n > 0) {
            ck.opt_state = malloc(n);
            if (ck.opt_state == NULL) {
                r = fv__state_oom(s, what, d);
                goto out;
            }
            memcpy(ck.opt_state, b, n);
            ck.opt_len = n;
        }
    }
    if (sqlite3_column_type(st, 16) != SQLITE_NULL) {
        const char *t = (const char *)sqlite3_column_text(st, 16);
        size_t n = (size_t)sqlite3_column_bytes(st, 16);
        if (t == NULL) {
            r = fv__state_oom(s, what, d);
            goto out;
        }
        if (n > FV_STATE_JSON_MAX) {
            r = fv__state_db_corrupt(s, what, "teacher_json is over the JSON cap", d);
            goto out;
        }
        if ((ck.teacher_json = malloc(n + 1)) == NULL) {
            r = fv__state_oom(s, what, d);
            goto out;
        }
        memcpy(ck.teacher_json, t, n + 1);
    }
    *ret = ck;
    memset(&ck, 0, sizeof ck); /* now the caller's */
    r = 0;
out:
    sqlite3_finalize(st);
    fv_state_ckpt_close(&ck);
    return r;
}

void fv_state_ckpt_close(fv_state_ckpt_t *ck)
{
    if (ck == NULL)
        return;
    free(ck->stats_sum);
    free(ck->opt_state);
    free(ck->teacher_json);
    ck->stats_sum = NULL;
    ck->stats_words = 0;
    ck->opt_state = NULL;
    ck->opt_len = 0;
    ck->teacher_json = NULL;
}

/* ---- rounds ------------------------------------------------------------------------- */

int fv_state_round_add(fv_state_t *s, const fv_state_round_t *rd, fv_diag_t *d)
{
    static const char what[] = "adding a round";
    char *cohort = NULL, *contrib = NULL, *metrics = NULL;
    int r, ext = 0;

    if (rd == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_state_round_add: no round given");
    if ((r = fv__state_check_hex64("job id", rd->job, d)) != 0 ||
        (r = fv__state_check_u64("round", rd->round, d)) != 0)
        return r;
    if (rd->attempt == 0)
        return fv_diag_set(d, FV_EINVAL, "round %" PRIu64 ": attempts count from 1", rd->round);
    if (rd->kind == NULL || (strcmp(rd->kind, "stats") != 0 && strcmp(rd->kind, "train") != 0 &&
                             strcmp(rd->kind, "distill") != 0 && strcmp(rd->kind, "explain") != 0))
        return fv_diag_set(d, FV_EINVAL,
                           "round %" PRIu64 ": kind must be stats, train, distill or explain",
                           rd->round);
    if ((r = fv__state_check_text("round status", rd->status, STATUS_MAX, 0, d)) != 0 ||
        (r = fv__state_check_text("round why", rd->why, FV_STATE_TEXT_MAX,
                                  FV__STATE_TEXT_NULL_OK | FV__STATE_TEXT_EMPTY_OK, d)) != 0)
        return r;
    if ((rd->model_in_sha != NULL &&
         (r = fv__state_check_hex64("model_in_sha", rd->model_in_sha, d)) != 0) ||
        (rd->model_out_sha != NULL &&
         (r = fv__state_check_hex64("model_out_sha", rd->model_out_sha, d)) != 0))
        return r;
    if ((r = fv__state_json_arg_compact("round", "cohort", rd->cohort_json, 'a', false, &cohort,
                                        d)) != 0 ||
        (r = fv__state_json_arg_compact("round", "contributors", rd->contributors_json, 'a', false,
                                        &contrib, d)) != 0 ||
        (r = fv__state_json_arg_compact("round", "metrics", rd->metrics_json, 'o', true, &metrics,
                                        d)) != 0)
        goto out;
    if ((r = job_exists(s, rd->job, what, d)) != 0)
        goto out;

    r = fv__state_exec_bound(s,
                             "INSERT INTO rounds (job, round, attempt, kind, status, why, cohort, "
                             "contributors, metrics, model_in, model_out, started, finished) "
                             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                             what, &ext, d, "tiittttttttii", rd->job, (int64_t)rd->round,
                             (int64_t)rd->attempt, rd->kind, rd->status, rd->why, cohort, contrib,
                             metrics, rd->model_in_sha, rd->model_out_sha, rd->started_ms,
                             rd->finished_ms);
    if (r != 0 && ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        r = fv_diag_set(d, FV_EDUP,
                        "%s: job %s round %" PRIu64 " attempt %" PRIu32 " is already recorded",
                        s->db_path, rd->job, rd->round, rd->attempt);
out:
    free(cohort);
    free(contrib);
    free(metrics);
    return r;
}

/* ---- model versions ----------------------------------------------------------------- */

int fv_state_version_add(fv_state_t *s, const char *job, uint64_t round, const char *sha,
                         int64_t parent, const char *kind, const char *producer, int64_t now_ms,
                         int64_t *ret_version, fv_diag_t *d)
{
    static const char what[] = "adding a model version";
    sqlite3_stmt *st = NULL;
    char path[PATH_MAX];
    int r;

    if ((r = fv__state_check_hex64("job id", job, d)) != 0 ||
        (r = fv__state_check_hex64("model sha", sha, d)) != 0 ||
        (r = fv__state_check_u64("round", round, d)) != 0 ||
        (r = fv__state_check_text("producer", producer, FV_STATE_TEXT_MAX, 0, d)) != 0)
        return r;
    if (kind == NULL || (strcmp(kind, "global") != 0 && strcmp(kind, "final") != 0 &&
                         strcmp(kind, "student") != 0 && strcmp(kind, "distilled") != 0))
        return fv_diag_set(d, FV_EINVAL,
                           "model version: kind must be global, final, student or distilled");
    if (parent < 0)
        return fv_diag_set(d, FV_EINVAL, "model version: parent %" PRId64 " is negative", parent);
    if ((r = job_exists(s, job, what, d)) != 0)
        return r;
    if (parent > 0) {
        r = fv__state_query_row(s, &st, "SELECT 1 FROM versions WHERE version = ?1", what, d, "i",
                                parent);
        sqlite3_finalize(st);
        if (r == 0)
            return fv_diag_set(d, -ENOENT, "%s: %s: parent version %" PRId64 " is unknown",
                               s->db_path, what, parent);
        if (r < 0)
            return r;
    }
    /* The durability invariant: the file is on disk before a row names it. */
    fv_state_model_path(s, sha, path, sizeof path);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return fv_diag_set(d, -ENOENT,
                               "%s: no such model file: store it (fv_state_model_put) before "
                               "adding a version that names it",
                               path);
        return fv__state_sys_fail(-errno, path, "cannot stat", d);
    }
    if (!S_ISREG(sb.st_mode))
        return fv_diag_set(d, FV_EINVAL, "%s: not a regular file", path);
    /* parent 0 means none: stored as NULL (nullif) so the foreign key holds. */
    if ((r = fv__state_exec_bound(
             s,
             "INSERT INTO versions (sha256, job, round, kind, parent, created, bytes, "
             "producer) VALUES (?1, ?2, ?3, ?4, nullif(?5, 0), ?6, ?7, ?8)",
             what, NULL, d, "ttitiiit", sha, job, (int64_t)round, kind, parent, now_ms,
             (int64_t)sb.st_size, producer)) != 0)
        return r;
    if (ret_version != NULL)
        *ret_version = (int64_t)sqlite3_last_insert_rowid(s->db);
    return 0;
}

int fv__state_no_version(const fv_state_t *s, int64_t version, fv_diag_t *d)
{
    return fv_diag_set(d, -ENOENT, "%s: model version %" PRId64 " is unknown", s->db_path, version);
}

int fv_state_version_sha(fv_state_t *s, int64_t version, char ret_sha[65], fv_diag_t *d)
{
    static const char what[] = "reading a model version";
    sqlite3_stmt *st = NULL;
    int r;

    if ((r = fv__state_query_row(s, &st, "SELECT sha256 FROM versions WHERE version = ?1", what, d,
                                 "i", version)) < 0)
        goto out;
    if (r == 0) {
        r = fv__state_no_version(s, version, d);
        goto out;
    }
    const char *sha = (const char *)sqlite3_column_text(st, 0);
    if (!fv__state_is_hex64(sha)) {
        r = fv__state_db_corrupt(s, what, "a model name is not 64 hex digits", d);
        goto out;
    }
    memcpy(ret_sha, sha, 65);
    r = 0;
out:
    sqlite3_finalize(st);
    return r;
}

int fv_state_version_set_report(fv_state_t *s, int64_t version, const char *report_json,
                                fv_diag_t *d)
{
    static const char what[] = "setting a model version's report";
    char owner[64], *report = NULL;
    int r;

    snprintf(owner, sizeof owner, "model version %" PRId64, version);
    if ((r = fv__state_json_arg_compact(owner, "report", report_json, 'o', true, &report, d)) != 0)
        return r;
    if ((r = fv__state_exec_bound(s, "UPDATE versions SET report = ?2 WHERE version = ?1", what,
                                  NULL, d, "it", version, report)) == 0 &&
        sqlite3_changes(s->db) == 0)
        r = fv__state_no_version(s, version, d);
    free(report);
    return r;
}
