/* state.c - the coordinator's durable state store (fv_state.h).
 *
 * Purpose: everything the coordinator must remember across a crash or a restart, in one
 * directory DIR: an SQLite database and content-addressed model files. "SIGKILL at any
 * moment loses at most the round in flight; restart resumes the job from the last
 * completed round."
 *
 * Files:
 *   DIR/LOCK        flock(LOCK_EX|LOCK_NB) held for the life of a fv_state_t; contains
 *                   the holder's pid as decimal text (for the UV_EBUSY sentence only).
 *   DIR/state.db    SQLite 3, journal_mode=WAL, synchronous=FULL, foreign_keys=ON,
 *                   PRAGMA user_version = 3 (FV_STATE_SCHEMA_VERSION).
 *   DIR/models/<64 lowercase hex SHA-256 of the contents>.fvm   model files, immutable.
 *   DIR/models/<...>.fvm.tmp   a put in progress (removed by the next open).
 *
 * Tables (times are INTEGER ms since the Unix epoch; shas are 64 lowercase hex TEXT;
 * uint64 values are stored as INTEGER, so the API caps them at INT64_MAX):
 *   agents(name PK, serial, first_seen, last_seen)
 *   jobs(seq INTEGER PK AUTOINCREMENT = submission order, id UNIQUE, name, spec (JSON
 *        text, as submitted), submitted_by, submitted, status CHECK IN (queued, running,
 *        done, failed, aborted), why, started, finished, final_version -> versions,
 *        student_version -> versions (the job's distilled student; v2))
 *   job_agents(job -> jobs, agent, data_sha256, rows, accepted; PK (job, agent))
 *   rounds(job -> jobs, round, attempt, kind CHECK IN (stats, train, distill), status
 *        ("ok" or an error name), why, cohort, contributors, metrics (compact JSON text),
 *        model_in, model_out, started, finished; PK (job, round, attempt))
 *   checkpoints(job PK -> jobs, next_round, rounds_done, rounds_failed, n_ref, stats_sum
 *        (BLOB of uint32 little-endian, NULL before stats), global_sha, global_version,
 *        opt_state (BLOB or NULL), best_sha, best_version, best_metric (REAL, NULL = NaN),
 *        best_round, since_best, phase CHECK IN (train, distill) DEFAULT train (v2),
 *        teacher_sha (NULL = none; v2), teacher_version (DEFAULT 0; v2), teacher_json
 *        (JSON object text as given, or NULL; v2))
 *   versions(version INTEGER PK AUTOINCREMENT (never reused), sha256, job -> jobs, round,
 *        kind CHECK IN (global, final, student, distilled), parent -> versions (NULL =
 *        none), created, bytes (the model file's size when added), producer, report
 *        (compact JSON object text or NULL: a distilled model's compression report; v2))
 *   outbox(id INTEGER PK AUTOINCREMENT, actor, event, details (JSON text or NULL))
 * A round's completed count is not stored: the JSON views derive it from rounds.
 *
 * Schema versions (PRAGMA user_version; 0 = a new, empty file):
 *   1  the tables above without the members marked v2.
 *   2  knowledge distillation: rounds.kind 'distill'; versions.kind 'student' (the student
 *      after a distill round) and 'distilled' (the job's final student); versions.report;
 *      checkpoints.phase/teacher_*; jobs.student_version.
 *   3  the explain round: rounds.kind 'explain' (migrate_2_3_sql rebuilds rounds the same
 *      way as below).
 * fv_state_open creates version 3 (schema_sql) or migrates version 1 to 2
 * (migrate_1_2_sql) in ONE transaction (then 2 to 3 in another), so SIGKILL during the migration
 * leaves version 1 intact (WAL recovery drops the uncommitted frames) and the next open migrates
 * again. CHECK constraints cannot be altered in SQLite, so rounds and versions are rebuilt by
 * SQLite's documented procedure: foreign_keys=OFF (outside the transaction, where the
 * pragma works), BEGIN, CREATE TABLE new_x, INSERT INTO new_x SELECT ..., DROP TABLE x,
 * ALTER TABLE new_x RENAME TO x, recreate x's indexes; versions' AUTOINCREMENT counter is
 * carried over in sqlite_sequence. checkpoints and jobs get ALTER TABLE ADD COLUMN;
 * user_version = 2. Then PRAGMA foreign_key_check must return no row (else FV_ECORRUPT
 * and ROLLBACK), COMMIT, foreign_keys=ON. Rows written by version 1 read as: a train-
 * phase checkpoint without teacher, no report, no student version. A user_version above
 * 3 is FV_EVERSION (a newer fedvault wrote it; this one does not downgrade), and a
 * fedvault that knows only version 1 refuses a version-2 database the same way.
 *
 * Durability argument:
 *   - A model file is on disk (written, fsynced, renamed, its directory fsynced) before
 *     fv_state_model_put returns, and a row naming it (versions, checkpoints, rounds) can
 *     only be committed after that, so a committed row never names a missing or partial
 *     file; fv_state_version_add checks the file is there. state_models.c spells out the
 *     steps and what a crash between them leaves.
 *   - The database is in WAL mode with synchronous=FULL: COMMIT returns only after the
 *     WAL frames of the transaction are fsynced, so a committed transaction survives
 *     SIGKILL and power loss, and an uncommitted one leaves no trace (SQLite ignores WAL
 *     frames without a commit record on recovery).
 *   - The coordinator writes a round's row, its checkpoint, its model version and its
 *     audit records (outbox) in one transaction, so after a crash they agree: the job
 *     resumes at the checkpoint's next_round and the outbox still holds any audit record
 *     not yet copied into the signed log.
 *   - The LOCK flock keeps a second coordinator from writing the same directory; it is
 *     released by the kernel when the process dies, so a SIGKILLed coordinator does not
 *     block its own restart.
 *
 * releases (state_releases.c) and job_agent_status (state_cohort.c) are tables of their
 * own, each created if missing at every open of
 * a version 2 database (CREATE TABLE IF NOT EXISTS): the schema version does not change.
 * job_schemas (state_schemas.c: the resolved spec of a job submitted with an open schema)
 * is created the same way, which is also the migration of an existing database.
 *
 * This file: fv_state_open (the directory, DIR/LOCK, the leftover .tmp files, the pragmas,
 * the schema created or migrated), fv_state_close, the transactions and the audit outbox.
 * The rest of the API is in state_models.c (model files), state_jobs.c (agents, jobs,
 * checkpoints, rounds, model versions) and state_json.c (the JSON views); state_sql.c has
 * the statement helpers and says how SQL is written (state-int.h lists the files).
 *
 * Threading: a fv_state_t belongs to one thread. Ownership: fv_state_t owns its strings,
 * the sqlite3 connection and the lock fd (state-int.h); JSON results are new references
 * for the caller.
 */
#define _GNU_SOURCE /* flock */
#include "state-int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fv_crypto.h"
#include "fv_file.h"

#define BUSY_TIMEOUT_MS 5000
#define EVENT_MAX 128 /* bytes of an outbox event (as fv_audit's FV_AUDIT_EVENT_MAX) */

/* The bodies of the two tables the version 1 -> 2 migration rebuilds (their CHECK
 * constraints changed), shared by schema_sql and migrate_1_2_sql so that a migrated database
 * and a new one have the same definitions. */
#define ROUNDS_BODY                                                                                \
    "  job TEXT NOT NULL REFERENCES jobs(id),"                                                     \
    "  round INTEGER NOT NULL,"                                                                    \
    "  attempt INTEGER NOT NULL,"                                                                  \
    "  kind TEXT NOT NULL CHECK (kind IN ('stats','train','distill','explain')),"                  \
    "  status TEXT NOT NULL,"                                                                      \
    "  why TEXT,"                                                                                  \
    "  cohort TEXT NOT NULL,"                                                                      \
    "  contributors TEXT NOT NULL,"                                                                \
    "  metrics TEXT,"                                                                              \
    "  model_in TEXT,"                                                                             \
    "  model_out TEXT,"                                                                            \
    "  started INTEGER NOT NULL,"                                                                  \
    "  finished INTEGER NOT NULL,"                                                                 \
    "  PRIMARY KEY (job, round, attempt))"
#define VERSIONS_BODY                                                                              \
    "  version INTEGER PRIMARY KEY AUTOINCREMENT,"                                                 \
    "  sha256 TEXT NOT NULL,"                                                                      \
    "  job TEXT NOT NULL REFERENCES jobs(id),"                                                     \
    "  round INTEGER NOT NULL,"                                                                    \
    "  kind TEXT NOT NULL CHECK (kind IN ('global','final','student','distilled')),"               \
    "  parent INTEGER REFERENCES versions(version),"                                               \
    "  created INTEGER NOT NULL,"                                                                  \
    "  bytes INTEGER NOT NULL,"                                                                    \
    "  producer TEXT NOT NULL,"                                                                    \
    "  report TEXT)"
/* The columns version 2 adds to checkpoints and jobs with ALTER TABLE ADD COLUMN; a new
 * database has them at the same place (last), so both kinds read alike. */
#define CKPT_PHASE "phase TEXT NOT NULL DEFAULT 'train' CHECK (phase IN ('train','distill'))"
#define CKPT_TEACHER_SHA "teacher_sha TEXT"
#define CKPT_TEACHER_VERSION "teacher_version INTEGER NOT NULL DEFAULT 0"
#define CKPT_TEACHER_JSON "teacher_json TEXT"
#define JOBS_STUDENT "student_version INTEGER REFERENCES versions(version)"

/* A new database (user_version 0), run in one transaction. */
static const char schema_sql[] =
    "CREATE TABLE agents ("
    "  name TEXT PRIMARY KEY,"
    "  serial TEXT NOT NULL,"
    "  first_seen INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL);"
    "CREATE TABLE jobs ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  name TEXT,"
    "  spec TEXT NOT NULL,"
    "  submitted_by TEXT,"
    "  submitted INTEGER NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','running','done','failed','aborted')),"
    "  why TEXT,"
    "  started INTEGER,"
    "  finished INTEGER,"
    "  final_version INTEGER REFERENCES versions(version),"
    "  " JOBS_STUDENT ");"
    "CREATE TABLE job_agents ("
    "  job TEXT NOT NULL REFERENCES jobs(id),"
    "  agent TEXT NOT NULL,"
    "  data_sha256 TEXT NOT NULL,"
    "  rows INTEGER NOT NULL,"
    "  accepted INTEGER NOT NULL,"
    "  PRIMARY KEY (job, agent));"
    "CREATE TABLE rounds (" ROUNDS_BODY ";"
    "CREATE TABLE checkpoints ("
    "  job TEXT PRIMARY KEY REFERENCES jobs(id),"
    "  next_round INTEGER NOT NULL,"
    "  rounds_done INTEGER NOT NULL,"
    "  rounds_failed INTEGER NOT NULL,"
    "  n_ref INTEGER NOT NULL,"
    "  stats_sum BLOB,"
    "  global_sha TEXT,"
    "  global_version INTEGER NOT NULL,"
    "  opt_state BLOB,"
    "  best_sha TEXT,"
    "  best_version INTEGER NOT NULL,"
    "  best_metric REAL,"
    "  best_round INTEGER NOT NULL,"
    "  since_best INTEGER NOT NULL,"
    "  " CKPT_PHASE ","
    "  " CKPT_TEACHER_SHA ","
    "  " CKPT_TEACHER_VERSION ","
    "  " CKPT_TEACHER_JSON ");"
    "CREATE TABLE versions (" VERSIONS_BODY ";"
    "CREATE INDEX versions_job ON versions(job);"
    "CREATE TABLE outbox ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  actor TEXT NOT NULL,"
    "  event TEXT NOT NULL,"
    "  details TEXT);"
    "PRAGMA user_version = 3;";

/* Version 1 -> 2, run inside one transaction with foreign_keys OFF (set before BEGIN: the
 * pragma is a no-op inside a transaction), following SQLite's "Making Other Kinds Of Table
 * Schema Changes" procedure (lang_altertable.html) for the two tables whose CHECK changed:
 * create new_X, copy every row, drop X, rename new_X to X, recreate its indexes. The
 * caller then runs PRAGMA foreign_key_check (no rows allowed) before COMMIT.
 *   - versions' AUTOINCREMENT counter (sqlite_sequence) is carried over, so a version
 *     number is still never reused, even one above max(version).
 *   - Renaming new_versions to versions keeps the references of jobs.final_version and
 *     versions.parent pointing at "versions": they name the table by name.
 *   - ADD COLUMN suffices for checkpoints and jobs: the new columns have constant
 *     defaults (a REFERENCES column's default is NULL, as SQLite requires). */
static const char migrate_1_2_sql[] =
    "CREATE TABLE new_rounds (" ROUNDS_BODY ";"
    "INSERT INTO new_rounds (job, round, attempt, kind, status, why, cohort, contributors, "
    "  metrics, model_in, model_out, started, finished) "
    "  SELECT job, round, attempt, kind, status, why, cohort, contributors, metrics, "
    "  model_in, model_out, started, finished FROM rounds;"
    "DROP TABLE rounds;"
    "ALTER TABLE new_rounds RENAME TO rounds;"
    "CREATE TABLE new_versions (" VERSIONS_BODY ";"
    "INSERT INTO new_versions (version, sha256, job, round, kind, parent, created, bytes, "
    "  producer) "
    "  SELECT version, sha256, job, round, kind, parent, created, bytes, producer "
    "  FROM versions ORDER BY version;"
    "UPDATE sqlite_sequence SET seq = (SELECT max(seq) FROM sqlite_sequence "
    "  WHERE name IN ('versions', 'new_versions')) WHERE name = 'new_versions';"
    "INSERT INTO sqlite_sequence (name, seq) "
    "  SELECT 'new_versions', seq FROM sqlite_sequence WHERE name = 'versions' "
    "  AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'new_versions');"
    "DROP TABLE versions;"
    "ALTER TABLE new_versions RENAME TO versions;"
    "CREATE INDEX versions_job ON versions(job);"
    "ALTER TABLE checkpoints ADD COLUMN " CKPT_PHASE ";"
    "ALTER TABLE checkpoints ADD COLUMN " CKPT_TEACHER_SHA ";"
    "ALTER TABLE checkpoints ADD COLUMN " CKPT_TEACHER_VERSION ";"
    "ALTER TABLE checkpoints ADD COLUMN " CKPT_TEACHER_JSON ";"
    "ALTER TABLE jobs ADD COLUMN " JOBS_STUDENT ";"
    "PRAGMA user_version = 2;";

/* Version 2 -> 3 (the explain round): rounds.kind may be 'explain'. The same rebuild of
 * rounds as in migrate_1_2_sql (its CHECK changed; rounds has no index of its own). */
static const char migrate_2_3_sql[] =
    "CREATE TABLE new_rounds (" ROUNDS_BODY ";"
    "INSERT INTO new_rounds (job, round, attempt, kind, status, why, cohort, contributors, "
    "  metrics, model_in, model_out, started, finished) "
    "  SELECT job, round, attempt, kind, status, why, cohort, contributors, metrics, "
    "  model_in, model_out, started, finished FROM rounds;"
    "DROP TABLE rounds;"
    "ALTER TABLE new_rounds RENAME TO rounds;"
    "PRAGMA user_version = 3;";

/* Runs a constant statement that returns no rows (BEGIN, COMMIT, the schema). */
static int exec_sql(fv_state_t *s, const char *sql, const char *what, fv_diag_t *d)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fv__state_db_fail(s, rc, what, d);
}

/* Reads one integer from a constant query (PRAGMA user_version...). */
static int query_int(fv_state_t *s, const char *sql, int64_t *ret, fv_diag_t *d)
{
    sqlite3_stmt *st = NULL;
    int r = fv__state_query_row(s, &st, sql, sql, d, "");
    if (r == 1) {
        *ret = (int64_t)sqlite3_column_int64(st, 0);
        r = 0;
    } else if (r == 0) {
        r = fv__state_db_no_result(s, sql, d);
    }
    sqlite3_finalize(st);
    return r;
}

/* ---- opening ------------------------------------------------------------------------ */

static int make_dir(const char *path, fv_diag_t *d)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return fv__state_sys_fail(-errno, path, "cannot create the directory", d);
}

/* Takes DIR/LOCK; on EWOULDBLOCK names the holder's pid from the file. */
static int take_lock(fv_state_t *s, fv_diag_t *d)
{
    char path[PATH_MAX], buf[32];
    int r = 0;
    snprintf(path, sizeof path, "%s/LOCK", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0)
        return fv__state_sys_fail(-errno, path, "cannot open", d);
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return fv__state_sys_fail(-errno, path, "cannot lock", d);
        ssize_t n = pread(s->lock_fd, buf, sizeof buf - 1, 0);
        long pid = 0;
        if (n > 0) {
            buf[n] = '\0';
            pid = strtol(buf, NULL, 10);
        }
        if (pid > 0)
            return fv_diag_set(d, -EBUSY, "%s is in use by another coordinator (pid %ld)", s->dir,
                               pid);
        return fv_diag_set(d, -EBUSY, "%s is in use by another coordinator", s->dir);
    }
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(s->lock_fd, 0) != 0 || (r = fv_file_write_all(s->lock_fd, buf, (size_t)n)) != 0)
        return fv__state_sys_fail(r ? r : -errno, path, "cannot write the pid", d);
    return 0;
}

/* Migrates a database from version `from` to from + 1 (migrate_1_2_sql, migrate_2_3_sql)
 * in one transaction: a crash or a failure anywhere leaves version `from` exactly as it
 * was, and the next open tries again. foreign_keys is OFF around the transaction (the rebuild drops
 * tables that others reference) and ON again afterwards, whatever happened; PRAGMA
 * foreign_key_check must find nothing before COMMIT, so the rebuild cannot have broken a reference.
 * No other process can be writing: the caller holds DIR/LOCK (an older fedvault takes it too). */
static int migrate(fv_state_t *s, int from, fv_diag_t *d)
{
    char what[64];
    snprintf(what, sizeof what, "migrating the schema from version %d to %d", from, from + 1);
    sqlite3_stmt *st = NULL;
    int r, r2;

    if ((r = exec_sql(s, "PRAGMA foreign_keys = OFF", what, d)) != 0)
        return r;
    if ((r = exec_sql(s, "BEGIN IMMEDIATE", what, d)) != 0 ||
        (r = exec_sql(s, from == 1 ? migrate_1_2_sql : migrate_2_3_sql, what, d)) != 0)
        goto out;
    if ((r = fv__state_query_row(s, &st, "PRAGMA foreign_key_check", what, d, "")) < 0)
        goto out;
    if (r == 1) {
        /* Columns: table, rowid (NULL for a WITHOUT ROWID table), parent table, fk id. */
        const char *table = (const char *)sqlite3_column_text(st, 0);
        const char *parent = (const char *)sqlite3_column_text(st, 2);
        char detail[256];
        snprintf(detail, sizeof detail,
                 "row %" PRId64 " of table %.64s refers to a missing row of table %.64s; "
                 "the database is left at version %d",
                 (int64_t)sqlite3_column_int64(st, 1), table ? table : "?", parent ? parent : "?",
                 from);
        r = fv__state_db_corrupt(s, what, detail, d);
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    r = exec_sql(s, "COMMIT", what, d);
out:
    sqlite3_finalize(st);
    if (r != 0 && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* best effort: r says why */
    r2 = exec_sql(s, "PRAGMA foreign_keys = ON", "setting foreign_keys=ON", r != 0 ? NULL : d);
    return r != 0 ? r : r2;
}

/* Pragmas, version check, schema (created, or migrated from version 1). */
static int open_db(fv_state_t *s, fv_diag_t *d)
{
    static const char wal_what[] = "setting journal_mode=WAL";
    int r, rc;
    int64_t version = 0, fk = 0;
    sqlite3_stmt *st = NULL;

    /* Create the file ourselves for its mode: SQLite gives the -wal and -shm files the
     * database file's permissions. */
    int fd = open(s->db_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return fv__state_sys_fail(-errno, s->db_path, "cannot open", d);
    close(fd);

    rc = sqlite3_open_v2(s->db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        if (s->db == NULL)
            return fv_diag_set(d, FV_ENOMEM, "%s: cannot open: out of memory", s->db_path);
        return fv__state_db_fail(s, rc, "cannot open", d);
    }
    sqlite3_extended_result_codes(s->db, 1);
    if ((rc = sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS)) != SQLITE_OK)
        return fv__state_db_fail(s, rc, "cannot set the busy timeout", d);

    /* The first read: a file that is not a database fails here (FV_ECORRUPT). */
    if ((r = query_int(s, "PRAGMA user_version", &version, d)) != 0)
        return r;
    if (version > FV_STATE_SCHEMA_VERSION)
        return fv_diag_set(d, FV_EVERSION,
                           "%s: schema version %" PRId64 " was written by a newer fedvault "
                           "(this one understands version %d): upgrade fedvault to use this "
                           "state directory",
                           s->db_path, version, FV_STATE_SCHEMA_VERSION);
    if (version < 0)
        return fv__state_db_corrupt(s, "reading the schema version", "user_version is negative", d);

    /* journal_mode answers with the mode in effect: anything but "wal" is a failure (a
     * file system without shared memory support, for one). */
    if ((r = fv__state_query_row(s, &st, "PRAGMA journal_mode = WAL", wal_what, d, "")) != 1) {
        sqlite3_finalize(st);
        return r == 0 ? fv__state_db_no_result(s, wal_what, d) : r;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    bool wal = mode != NULL && strcmp(mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!wal)
        return fv_diag_set(d, FV_EIO, "%s: cannot use write-ahead logging (journal_mode is %s)",
                           s->db_path, mode ? "not wal" : "unknown");
    if ((r = exec_sql(s, "PRAGMA synchronous = FULL", "setting synchronous=FULL", d)) != 0 ||
        (r = exec_sql(s, "PRAGMA foreign_keys = ON", "setting foreign_keys=ON", d)) != 0 ||
        (r = query_int(s, "PRAGMA foreign_keys", &fk, d)) != 0)
        return r;
    if (fk != 1)
        return fv_diag_set(d, FV_EIO, "%s: this SQLite cannot enforce foreign keys", s->db_path);

    if (version == FV_STATE_SCHEMA_VERSION)
        return 0;
    if (version == 1 && (r = migrate(s, 1, d)) != 0)
        return r;
    if (version == 1 || version == 2)
        return migrate(s, 2, d); /* each step its own transaction: a crash between resumes */
    /* A new database: the whole schema in one transaction, so a crash leaves either none
     * of it (user_version 0: created again next time) or all of it. */
    if ((r = exec_sql(s, "BEGIN IMMEDIATE", "creating the schema", d)) != 0)
        return r;
    if ((r = exec_sql(s, schema_sql, "creating the schema", d)) != 0 ||
        (r = exec_sql(s, "COMMIT", "creating the schema", d)) != 0) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* best effort: r says why */
        return r;
    }
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = malloc(na + nb + 1);
    if (p != NULL) {
        memcpy(p, a, na);
        memcpy(p + na, b, nb + 1);
    }
    return p;
}

int fv_state_open(const char *dir, fv_state_t **ret, fv_diag_t *d)
{
    fv_state_t *s = NULL;
    int r;

    if (dir == NULL || dir[0] == '\0' || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_state_open: no state directory given");
    /* Room for "/models/<64 hex>.fvm.tmp" under PATH_MAX. */
    if (strlen(dir) > PATH_MAX - 96)
        return fv_diag_set(d, -ENAMETOOLONG, "%.64s...: state directory name too long", dir);
    if ((r = fv_crypto_init()) != 0)
        return fv_diag_set(d, r, "cannot initialise libsodium (SHA-256 of model files)");

    s = calloc(1, sizeof *s);
    if (s == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: out of memory", dir);
    s->lock_fd = -1;
    s->dir = strdup(dir);
    s->db_path = join(dir, "/state.db");
    s->models_dir = join(dir, "/models");
    if (s->dir == NULL || s->db_path == NULL || s->models_dir == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory", dir);
        goto fail;
    }
    if ((r = make_dir(s->dir, d)) != 0 || (r = take_lock(s, d)) != 0 ||
        (r = make_dir(s->models_dir, d)) != 0 || (r = fv__state_model_tmp_remove(s, d)) != 0 ||
        (r = open_db(s, d)) != 0 ||
        (r = exec_sql(s, fv__state_releases_sql, "creating the releases table", d)) != 0 ||
        (r = exec_sql(s, fv__state_cohort_sql, "creating the job_agent_status table", d)) != 0 ||
        (r = exec_sql(s, fv__state_schemas_sql, "creating the job_schemas table", d)) != 0)
        goto fail;
    *ret = s;
    return 0;
fail:
    fv_state_close(s);
    return r;
}

void fv_state_close(fv_state_t *s)
{
    if (s == NULL)
        return;
    if (s->db != NULL) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* nothing to report to */
        sqlite3_close_v2(s->db); /* every statement is finalized: SQLITE_OK */
    }
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    free(s->dir);
    free(s->db_path);
    free(s->models_dir);
    free(s);
}

const char *fv_state_dir(const fv_state_t *s)
{
    return s->dir;
}

/* ---- transactions ------------------------------------------------------------------- */

int fv_state_begin(fv_state_t *s, fv_diag_t *d)
{
    if (!sqlite3_get_autocommit(s->db))
        return fv_diag_set(d, FV_EINVAL, "%s: begin: a transaction is already open", s->db_path);
    return exec_sql(s, "BEGIN IMMEDIATE", "begin", d);
}

int fv_state_commit(fv_state_t *s, fv_diag_t *d)
{
    if (sqlite3_get_autocommit(s->db))
        return fv_diag_set(d, FV_EINVAL, "%s: commit: no transaction is open", s->db_path);
    int r = exec_sql(s, "COMMIT", "commit", d);
    if (r != 0 && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* the contract: nothing durable */
    return r;
}

void fv_state_rollback(fv_state_t *s)
{
    if (s != NULL && s->db != NULL && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* void by contract */
}

int fv_state_in_transaction(const fv_state_t *s)
{
    return !sqlite3_get_autocommit(s->db);
}

/* ---- audit outbox ------------------------------------------------------------------- */

int fv_state_outbox_add(fv_state_t *s, const char *actor, const char *event,
                        const char *details_json, int64_t *ret_id, fv_diag_t *d)
{
    int r;

    if ((r = fv__state_check_text("audit actor", actor, FV_STATE_NAME_MAX, 0, d)) != 0 ||
        (r = fv__state_check_text("audit event", event, EVENT_MAX, 0, d)) != 0)
        return r;
    if (details_json != NULL) {
        json_t *j = NULL;
        if ((r = fv__state_parse_json_arg("audit details", details_json, &j, d)) != 0)
            return r;
        bool obj = json_is_object(j);
        json_decref(j);
        if (!obj)
            return fv_diag_set(d, FV_ESCHEMA, "audit details are not a JSON object");
    }
    if ((r = fv__state_exec_bound(
             s, "INSERT INTO outbox (actor, event, details) VALUES (?1, ?2, ?3)",
             "queueing an audit record", NULL, d, "ttt", actor, event, details_json)) != 0)
        return r;
    if (ret_id != NULL)
        *ret_id = (int64_t)sqlite3_last_insert_rowid(s->db);
    return 0;
}

int fv_state_outbox_drain(fv_state_t *s,
                          int (*cb)(int64_t id, const char *actor, const char *event,
                                    const char *details_json, void *ctx),
                          void *ctx, fv_diag_t *d)
{
    static const char what[] = "draining the audit outbox";
    sqlite3_stmt *sel = NULL, *del = NULL;
    int r, rc;

    if (cb == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_state_outbox_drain: no callback");
    if (!sqlite3_get_autocommit(s->db))
        return fv_diag_set(d, FV_EINVAL,
                           "%s: %s: a transaction is open: drain after commit, or a rollback "
                           "would bring back records already written to the audit log",
                           s->db_path, what);
    if ((r = fv__state_prep(s, "SELECT id, actor, event, details FROM outbox ORDER BY id LIMIT 1",
                            &sel, what, d)) != 0 ||
        (r = fv__state_prep(s, "DELETE FROM outbox WHERE id = ?1", &del, what, d)) != 0)
        goto out;
    for (;;) {
        rc = sqlite3_step(sel);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            r = fv__state_db_fail(s, rc, what, d);
            goto out;
        }
        int64_t id = (int64_t)sqlite3_column_int64(sel, 0);
        const char *actor = (const char *)sqlite3_column_text(sel, 1);
        const char *event = (const char *)sqlite3_column_text(sel, 2);
        const char *details = (const char *)sqlite3_column_text(sel, 3);
        if (actor == NULL || event == NULL) {
            r = fv__state_db_corrupt(s, what, "an outbox row without actor or event", d);
            goto out;
        }
        if ((r = cb(id, actor, event, details, ctx)) != 0)
            goto out;
        sqlite3_reset(sel); /* ends the read; reports the step's result, handled above */
        sqlite3_reset(del);
        if ((rc = fv__state_bind_all(del, "i", id)) != SQLITE_OK) {
            r = fv__state_db_fail(s, rc, what, d);
            goto out;
        }
        if ((r = fv__state_step_done(s, del, what, NULL, d)) != 0)
            goto out;
    }
    r = 0;
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(del);
    return r;
}
