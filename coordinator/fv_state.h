/* fv_state.h - the coordinator's durable state: one directory, crash-safe.
 *
 * Layout of the state directory DIR (created mode 0700):
 *   DIR/LOCK         exclusive flock while a coordinator has DIR open; holds its pid
 *   DIR/state.db     SQLite (WAL, synchronous=FULL): agents, jobs, rounds, checkpoints,
 *                    model versions and their lineage, the audit outbox
 *   DIR/models/<sha256>.fvm   content-addressed model files (64 lowercase hex names)
 * The tables are described at the top of state.c.
 *
 * Durability: nothing written through this API is durable until fv_state_commit returns
 * 0 (or, outside a transaction, until the call itself returns 0). A model file is on
 * disk (fsynced, renamed, directory fsynced) when fv_state_model_put returns, so a row
 * that names it, committed later, never points at a missing file. SIGKILL at any moment
 * loses at most the open transaction: write a round's outcome, its checkpoint, its model
 * version and its audit records in one transaction and a restart resumes the job from the
 * last committed round.
 *
 * Pure library: no libuv, no logging, no clock reads. Times are passed in by the caller
 * as int64 milliseconds since the Unix epoch (UTC) and shown in JSON as ISO-8601 UTC
 * strings with milliseconds ("2026-11-28T23:40:00.123Z").
 *
 * Errors: 0 on success, a negative code otherwise, with a sentence in d (may be NULL)
 * that names DIR/state.db or the file concerned and, for database failures, SQLite's own
 * message. Database failures are FV_EIO, FV_ECORRUPT (SQLITE_CORRUPT / SQLITE_NOTADB, or
 * a row this code cannot have written) or FV_ENOMEM; system calls return -errno (UV_E*).
 * Argument checks: job ids and model names are 64 lowercase hex characters (FV_EINVAL
 * otherwise); text is valid UTF-8 under the caps below (FV_EINVAL / FV_ETOOBIG); JSON
 * arguments must parse and have the documented shape (FV_EPARSE / FV_ESCHEMA); integers
 * given as uint64_t must be at most INT64_MAX (FV_ERANGE). ret_* out-parameters are
 * written only on success.
 *
 * Threading: a fv_state_t belongs to one thread (the coordinator's loop thread).
 */
#ifndef FV_STATE_H
#define FV_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fv_error.h"

#define FV_STATE_MODEL_MAX ((size_t)1 << 31) /* bytes of one model file (2 GiB) */
#define FV_STATE_NAME_MAX 256                /* bytes of an agent name, job name, actor... */
#define FV_STATE_TEXT_MAX 4096               /* bytes of a "why" sentence, a producer */
#define FV_STATE_JSON_MAX ((size_t)16 << 20) /* bytes of a JSON argument (spec, cohort...) */
#define FV_STATE_STATS_MAX ((size_t)1 << 26) /* words of a checkpoint's stats vector */
#define FV_STATE_SCHEMA_VERSION 3            /* PRAGMA user_version this code writes */

typedef struct fv_state fv_state_t;

/* ---- opening ---------------------------------------------------------------------- */
/* Opens the state directory dir (borrowed; copied), creating dir, dir/models/ and
 * dir/state.db (modes 0700/0700/0600) if missing. Sets journal_mode=WAL,
 * synchronous=FULL, foreign_keys=ON and a busy timeout of 5 s; creates the schema in
 * one transaction and sets user_version=2. A version-1 database (fedvault before
 * distillation) is migrated to version 2 in one transaction (state.c's top comment): a
 * crash or an error during it leaves version 1 intact, and the next open tries again.
 * Leftover temporary model files of a crashed fv_state_model_put are removed.
 * Errors: UV_EBUSY "DIR is in use by another coordinator (pid N)" if another open
 * fv_state_t (in any process) holds dir/LOCK; FV_EVERSION if the database was written by
 * a newer fedvault (user_version > 2); FV_ECORRUPT if state.db is not a database, or if
 * the version-1 database to migrate has a dangling reference (PRAGMA foreign_key_check);
 * FV_EIO naming the path and SQLite's message; -errno for mkdir/open failures.
 * On success *ret is the caller's, to be closed with fv_state_close. */
int fv_state_open(const char *dir, fv_state_t **ret, fv_diag_t *d);
/* Rolls back an open transaction, closes the database, releases the lock. NULL-safe. */
void fv_state_close(fv_state_t *s);
/* The directory given to fv_state_open (borrowed; lives as long as s). */
const char *fv_state_dir(const fv_state_t *s);

/* ---- transactions ----------------------------------------------------------------- */
/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. Outside a transaction each call is its own
 * autocommit transaction. Transactions do not nest: begin inside one, or commit outside
 * one, is FV_EINVAL. A failed call inside a transaction leaves the transaction open with
 * that call's changes undone: the caller decides to roll back (usually) or go on.
 * A failed commit rolls the transaction back (nothing of it is durable). */
int fv_state_begin(fv_state_t *s, fv_diag_t *d);
int fv_state_commit(fv_state_t *s, fv_diag_t *d);
/* Undoes the open transaction, if any. */
void fv_state_rollback(fv_state_t *s);
/* 1 while a transaction is open, 0 otherwise. */
int fv_state_in_transaction(const fv_state_t *s);

/* ---- model files ------------------------------------------------------------------ */
/* Stores bytes (borrowed; len <= FV_STATE_MODEL_MAX, else FV_ETOOBIG) as
 * DIR/models/<sha256>.fvm: written to <name>.tmp (mode 0600), fsynced, renamed, the
 * directory fsynced. A file already there with the same size is not rewritten (only the
 * directory is fsynced again); one with another size is damaged and is replaced.
 * ret_sha: the 64 lowercase hex SHA-256 and a NUL. Not part of any transaction: the file
 * is durable when this returns 0, before a row that names it is committed. */
int fv_state_model_put(fv_state_t *s, const uint8_t *bytes, size_t len, char ret_sha[65],
                       fv_diag_t *d);
/* Reads DIR/models/<sha>.fvm and checks that its SHA-256 equals its name. *ret_bytes is
 * malloc'd (caller frees; one NUL byte follows the len bytes). UV_ENOENT if missing;
 * FV_ECORRUPT naming the file if the contents do not match; FV_ETOOBIG over 2 GiB. */
int fv_state_model_read(fv_state_t *s, const char *sha, uint8_t **ret_bytes, size_t *ret_len,
                        fv_diag_t *d);
/* Writes "DIR/models/<sha>.fvm" and a NUL into buf (cap bytes). FV_ETOOBIG if cap is too
 * small (buf untouched), FV_EINVAL if sha is not 64 lowercase hex. */
int fv_state_model_path(const fv_state_t *s, const char *sha, char *buf, size_t cap);

/* ---- agents ----------------------------------------------------------------------- */
/* Records that the agent with certificate name name (1..FV_STATE_NAME_MAX bytes) and
 * certificate serial serial_hex (1..128 hex digits) connected at now_ms: inserted the
 * first time (first_seen = last_seen = now_ms), afterwards last_seen and serial updated. */
int fv_state_agent_seen(fv_state_t *s, const char *name, const char *serial_hex, int64_t now_ms,
                        fv_diag_t *d);
/* *ret (caller decrefs): array of {"name","serial","first_seen","last_seen"}, sorted by
 * name (bytewise), times as ISO-8601 strings. */
int fv_state_agents_json(fv_state_t *s, json_t **ret, fv_diag_t *d);

/* ---- jobs ------------------------------------------------------------------------- */
/* A job's status is one of these; set by the coordinator, not checked for transitions. */
#define FV_STATE_JOB_STATUSES "queued", "running", "done", "failed", "aborted"

/* Adds job id (64 lowercase hex, the job digest) with status "queued". spec_json: a JSON
 * object as text (<= FV_STATE_JSON_MAX bytes), stored byte for byte. name and
 * submitted_by: NULL or 1..FV_STATE_NAME_MAX bytes. FV_EDUP if id exists. */
int fv_state_job_add(fv_state_t *s, const char *id, const char *spec_json, const char *name,
                     const char *submitted_by, int64_t now_ms, fv_diag_t *d);
/* Sets status and why (NULL clears it; <= FV_STATE_TEXT_MAX bytes). "running" sets
 * started the first time only; "done"/"failed"/"aborted" set finished = now_ms;
 * "queued"/"running" clear finished. UV_ENOENT if the job is unknown, FV_EINVAL for a
 * status not in FV_STATE_JOB_STATUSES. */
int fv_state_job_set_status(fv_state_t *s, const char *id, const char *status, const char *why,
                            int64_t now_ms, fv_diag_t *d);
/* Records the job's final model version. UV_ENOENT if the job or the version is unknown;
 * FV_EINVAL if the version belongs to another job. */
int fv_state_job_set_final(fv_state_t *s, const char *id, int64_t version, fv_diag_t *d);
/* Records the job's distilled student: version must be of kind "distilled". UV_ENOENT if
 * the job or the version is unknown; FV_EINVAL if the version belongs to another job or
 * is of another kind. */
int fv_state_job_set_student(fv_state_t *s, const char *id, int64_t version, fv_diag_t *d);
/* Copies the status string (NUL-terminated, < 16 bytes). UV_ENOENT if unknown. */
int fv_state_job_status(fv_state_t *s, const char *id, char ret_status[16], fv_diag_t *d);
/* Resolves a job id prefix: 4..64 hex digits (uppercase accepted) matching exactly one
 * job. UV_ENOENT if none matches; FV_EINVAL "job prefix 'ab12' is ambiguous (2 jobs)",
 * or for a prefix that is too short or not hex. */
int fv_state_job_resolve(fv_state_t *s, const char *prefix, char ret_id[65], fv_diag_t *d);
/* The job to run next: the oldest "running" one (to resume) if any, else the oldest
 * "queued" one (submission order). *ret_spec: the spec text, malloc'd, NUL-terminated,
 * caller frees. UV_ENOENT if there is none. */
int fv_state_job_next(fv_state_t *s, char ret_id[65], char **ret_spec, fv_diag_t *d);
/* *ret (caller decrefs): array, oldest first, of {"id","name","status","submitted_by",
 * "submitted","started","finished","rounds_done","distill_rounds_done","rounds_failed",
 * "final_version","student_version","why"}, null where unset. rounds_done counts the
 * job's rounds of kind "train" with status "ok", distill_rounds_done those of kind
 * "distill"; rounds_failed counts its round rows (any kind) whose status is not "ok". */
int fv_state_jobs_json(fv_state_t *s, json_t **ret, fv_diag_t *d);
/* *ret (caller decrefs): one job: the fields above plus "spec" (the parsed object),
 * "rounds" (the round rows, by round then attempt, as described at fv_state_round_add)
 * and "agents" (array sorted by name of {"name","data_sha256","rows","accepted"}, where
 * accepted is the time of the latest fv_state_job_agent). UV_ENOENT if unknown. */
int fv_state_job_json(fv_state_t *s, const char *id, json_t **ret, fv_diag_t *d);
/* Records agent's data fingerprint for job (upsert: the latest call wins): data_sha256
 * 64 lowercase hex, rows <= INT64_MAX. UV_ENOENT if the job is unknown. */
int fv_state_job_agent(fv_state_t *s, const char *job, const char *agent, const char *data_sha256,
                       uint64_t rows, int64_t now_ms, fv_diag_t *d);

/* Records agent's latest status in job (state_cohort.c; upsert): status "waiting",
 * "accepted", "refused" or "gone" (FV_EINVAL otherwise); category (a JOB_REFUSE word,
 * <= 32 bytes) and reason (<= 256 bytes) NULL unless refused; round the round a member
 * was lost in, or -1 (none); at_ms when the status began. */
int fv_state_job_agent_status(fv_state_t *s, const char *job, const char *agent, const char *status,
                              const char *category, const char *reason, int64_t round,
                              int64_t at_ms, fv_diag_t *d);
/* *ret (caller decrefs): [{"agent","status","category","reason","round","at" (ISO 8601
 * UTC), "at_ms"}] sorted by agent (nulls where a status has none); [] for a job without
 * any. fv_state_job_json carries it as "cohort". */
int fv_state_job_cohort_json(fv_state_t *s, const char *job, json_t **ret, fv_diag_t *d);

/* ---- checkpoints ------------------------------------------------------------------ */
/* Resume checkpoint of a job: write it in the same transaction as the round that
 * produced it. uint64_t members must be <= INT64_MAX. A checkpoint written before schema
 * version 2 loads as distill = false, teacher_sha "", teacher_version 0, teacher_json
 * NULL. */
typedef struct fv_state_ckpt {
    uint64_t next_round; /* round to run next: 0 = the stats round */
    uint64_t rounds_done, rounds_failed;
    uint64_t n_ref;         /* total training rows (after stats) */
    uint32_t *stats_sum;    /* the summed stats vector (NULL before the stats round) */
    size_t stats_words;     /* <= FV_STATE_STATS_MAX; 0 is stored as NULL */
    char global_sha[65];    /* model file of the current global model ("" before stats) */
    int64_t global_version; /* its version (0 if none) */
    uint8_t *opt_state;     /* server optimizer state bytes (NULL/0 if none) */
    size_t opt_len;
    char best_sha[65]; /* best model so far ("" if none) */
    int64_t best_version;
    double best_metric; /* NaN if none: stored as NULL, loaded as NaN */
    uint64_t best_round;
    uint32_t since_best;
    bool distill;            /* in the distillation phase (stored as phase 'distill'/'train') */
    char teacher_sha[65];    /* the teacher's model file ("" = none) */
    int64_t teacher_version; /* its version (0 if none) */
    char *teacher_json;      /* NULL or a JSON object as text (the teacher's description) */
} fv_state_ckpt_t;
/* Inserts or replaces job's checkpoint. ck and its buffers are borrowed. stats_sum is
 * stored little-endian (the file is portable); teacher_json byte for byte, after checking
 * it (<= FV_STATE_JSON_MAX: FV_ETOOBIG; FV_EPARSE; not an object: FV_ESCHEMA). FV_EINVAL
 * for a sha that is neither "" nor 64 lowercase hex; UV_ENOENT if the job is unknown. */
int fv_state_ckpt_save(fv_state_t *s, const char *job, const fv_state_ckpt_t *ck, fv_diag_t *d);
/* Loads job's checkpoint into *ret (overwritten on success only). stats_sum, opt_state
 * and teacher_json are malloc'd (NULL when absent): release with fv_state_ckpt_close.
 * UV_ENOENT if the job has no checkpoint; FV_ECORRUPT for a row this code cannot have
 * written (a stats blob whose length is not a multiple of 4, a bad sha, a phase other
 * than train/distill, a teacher_json over FV_STATE_JSON_MAX). */
int fv_state_ckpt_load(fv_state_t *s, const char *job, fv_state_ckpt_t *ret, fv_diag_t *d);
/* Frees the buffers of a loaded checkpoint (stats_sum, opt_state, teacher_json) and sets
 * them to NULL/0. NULL-safe. */
void fv_state_ckpt_close(fv_state_ckpt_t *ck);

/* ---- rounds ----------------------------------------------------------------------- */
/* One round's outcome (completed or aborted). Everything borrowed; JSON members are text. */
typedef struct fv_state_round {
    const char *job;
    uint64_t round;
    uint32_t attempt;              /* 1, 2, ... if a round number is retried after an abort */
    const char *kind;              /* "stats" | "train" | "distill" | "explain" */
    const char *status;            /* "ok" or the error name, e.g. "FV_ETHRESHOLD" (< 64 bytes) */
    const char *why;               /* NULL when ok; <= FV_STATE_TEXT_MAX bytes */
    const char *cohort_json;       /* array of agent names */
    const char *contributors_json; /* array of names whose input is in the sum */
    const char *metrics_json;      /* object or NULL */
    const char *model_in_sha;      /* NULL or 64 hex */
    const char *model_out_sha;     /* NULL or 64 hex */
    int64_t started_ms, finished_ms;
} fv_state_round_t;
/* Adds a round row; the primary key is (job, round, attempt): FV_EDUP if present.
 * UV_ENOENT if the job is unknown; FV_EPARSE / FV_ESCHEMA for JSON members that do not
 * parse or are not an array of strings (cohort, contributors) or an object (metrics).
 * The JSON is stored re-encoded compactly. In fv_state_job_json a round row reads
 * {"round","attempt","kind","status","why","cohort","contributors","metrics","model_in",
 * "model_out","started","finished"} with the JSON columns parsed, null where unset. */
int fv_state_round_add(fv_state_t *s, const fv_state_round_t *r, fv_diag_t *d);
/* The highest attempt recorded for (job, round), 0 when none: a retried or resumed round
 * takes the next one. */
int fv_state_round_attempts(fv_state_t *s, const char *job, uint64_t round, uint32_t *ret,
                            fv_diag_t *d);

/* ---- model versions --------------------------------------------------------------- */
/* Adds model version 1, 2, 3... (never reused) for model file sha, which must already be
 * stored (fv_state_model_put: UV_ENOENT otherwise; its size is recorded). kind: "global"
 * (after a training round), "final" (the job's model), "student" (the student after a
 * distill round) or "distilled" (the job's final student); anything else is FV_EINVAL.
 * parent: an existing version or 0 for none; producer: the software that made it
 * ("fedvault 0.1.0 (abc123)", 1..FV_STATE_TEXT_MAX bytes). UV_ENOENT if the job or the
 * parent is unknown. *ret_version (may be NULL) gets the new version. */
int fv_state_version_add(fv_state_t *s, const char *job, uint64_t round, const char *sha,
                         int64_t parent, const char *kind, const char *producer, int64_t now_ms,
                         int64_t *ret_version, fv_diag_t *d);
/* The model file name of version. UV_ENOENT if unknown. */
int fv_state_version_sha(fv_state_t *s, int64_t version, char ret_sha[65], fv_diag_t *d);
/* Sets (replaces) version's report: report_json a JSON object as text (<=
 * FV_STATE_JSON_MAX bytes: FV_ETOOBIG; FV_EPARSE if it does not parse; FV_ESCHEMA if not
 * an object), stored re-encoded compactly; NULL removes the report. UV_ENOENT if the
 * version is unknown. For a distilled model the coordinator stores its compression report
 * here (teacher, student, ratios...; cli/cmd_admin_model.c prints it). */
int fv_state_version_set_report(fv_state_t *s, int64_t version, const char *report_json,
                                fv_diag_t *d);
/* *ret (caller decrefs): array by version of {"version","sha256","job","round","kind",
 * "parent","created","bytes","producer","has_report"} (parent null for none; has_report
 * true or false: the report itself is only in fv_state_version_json, to keep the list
 * small). */
int fv_state_versions_json(fv_state_t *s, json_t **ret, fv_diag_t *d);
/* *ret (caller decrefs): one version, the fields above plus "report" (the parsed object,
 * or null) and "lineage": {"parent","job",
 * "hyperparameters" (the job's spec object), "rounds": [{"round","kind","cohort",
 * "contributors"}] for the job's "ok" rounds with round <= the version's round (by round),
 * "agents": [{"name","data_sha256","rows"}] for every agent named in those cohorts
 * (sorted by name; the latest fingerprint recorded, nulls if none), "producer"}.
 * UV_ENOENT if unknown. */
int fv_state_version_json(fv_state_t *s, int64_t version, json_t **ret, fv_diag_t *d);

/* ---- schemas (state_schemas.c) -------------------------------------------------- */

/* The spec a job with an open schema runs with, resolved by schema discovery (the job's id
 * stays the submitted spec's digest): stored once (FV_EDUP for a second one; UV_ENOENT for
 * an unknown job). sha: the resolved schema's SHA-256 (64 hex); contributors: a JSON array
 * of agent names; refused: a JSON array of {agent, category}. */
int fv_state_job_schema_set(fv_state_t *s, const char *job, const char *spec, const char *sha,
                            int64_t version, const char *contributors, const char *refused,
                            int64_t now_ms, fv_diag_t *d);
/* The stored resolved spec (caller frees), or UV_ENOENT when the job has none. */
int fv_state_job_schema_spec(fv_state_t *s, const char *job, char **ret_spec, fv_diag_t *d);
/* {sha256, version, contributors, refused, open: false} of the resolved schema, or
 * UV_ENOENT. */
int fv_state_job_schema_json(fv_state_t *s, const char *job, json_t **ret, fv_diag_t *d);

/* ---- releases (state_releases.c) ------------------------------------------------ */
/* The counter the next release takes (1, 2, ...: never reused, across restarts). Read it,
 * sign the manifest, and add the release in one transaction. */
int fv_state_release_next(fv_state_t *s, int64_t *ret, fv_diag_t *d);
/* Adds release `release` (from fv_state_release_next) of model version `version` (file
 * sha) under label ("stable", "canary" or "backup": FV_EINVAL otherwise) with its signed
 * envelope text. FV_EIO (a constraint) if the counter is taken. */
int fv_state_release_add(fv_state_t *s, int64_t release, const char *label, int64_t version,
                         const char *sha, const char *envelope, int64_t now_ms, fv_diag_t *d);
/* The latest release of a label: its counter, sha and envelope (*ret_envelope the
 * caller's, free()). UV_ENOENT when the label has none. */
int fv_state_release_latest(fv_state_t *s, const char *label, int64_t *ret_release,
                            char ret_sha[65], char **ret_envelope, fv_diag_t *d);
/* Whether any release names the model file sha (false for a malformed sha). */
int fv_state_release_has_sha(fv_state_t *s, const char *sha, bool *ret, fv_diag_t *d);
/* *ret (caller decrefs): [{"release","label","version","sha256","ts"}] by release. */
int fv_state_releases_json(fv_state_t *s, json_t **ret, fv_diag_t *d);

/* ---- audit outbox ----------------------------------------------------------------- */
/* Queues an audit record, durable with the transaction it is written in; the coordinator
 * drains the outbox into the signed audit log after commit. actor 1..FV_STATE_NAME_MAX,
 * event 1..128 bytes; details_json NULL or a JSON object as text (stored as given).
 * *ret_id (may be NULL): the record's id, increasing. */
int fv_state_outbox_add(fv_state_t *s, const char *actor, const char *event,
                        const char *details_json, int64_t *ret_id, fv_diag_t *d);
/* Calls cb for each pending record in id order (its strings borrowed for the call;
 * details_json NULL if none); after cb returns 0 the row is deleted (autocommit). A
 * non-zero return of cb stops the drain, keeps that row and is returned. Delivery is at
 * least once: a crash between cb and the delete delivers the record again on the next
 * drain. Must be called outside a transaction (FV_EINVAL otherwise), so a rollback
 * cannot resurrect a record cb already wrote. */
int fv_state_outbox_drain(fv_state_t *s,
                          int (*cb)(int64_t id, const char *actor, const char *event,
                                    const char *details_json, void *ctx),
                          void *ctx, fv_diag_t *d);

#endif
