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
 *                   PRAGMA user_version = 2 (FV_STATE_SCHEMA_VERSION).
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
 * fv_state_open creates version 2 (schema_sql) or migrates version 1 to 2
 * (migrate_1_2_sql) in ONE transaction, so SIGKILL during the migration leaves version 1
 * intact (WAL recovery drops the uncommitted frames) and the next open migrates again.
 * CHECK constraints cannot be altered in SQLite, so rounds and versions are rebuilt by
 * SQLite's documented procedure: foreign_keys=OFF (outside the transaction, where the
 * pragma works), BEGIN, CREATE TABLE new_x, INSERT INTO new_x SELECT ..., DROP TABLE x,
 * ALTER TABLE new_x RENAME TO x, recreate x's indexes; versions' AUTOINCREMENT counter is
 * carried over in sqlite_sequence. checkpoints and jobs get ALTER TABLE ADD COLUMN;
 * user_version = 2. Then PRAGMA foreign_key_check must return no row (else FV_ECORRUPT
 * and ROLLBACK), COMMIT, foreign_keys=ON. Rows written by version 1 read as: a train-
 * phase checkpoint without teacher, no report, no student version. A user_version above
 * 2 is FV_EVERSION (a newer fedvault wrote it; this one does not downgrade), and a
 * fedvault that knows only version 1 refuses a version-2 database the same way.
 *
 * Durability argument:
 *   - A model file is written to <name>.tmp, fsynced, renamed to <name>, and the models
 *     directory is fsynced, all before fv_state_model_put returns. A row naming the file
 *     (versions, checkpoints, rounds) can only be committed after that, so a committed
 *     row never names a missing or partial file. fv_state_version_add checks the file is
 *     there. A crash before the rename leaves only a .tmp file (removed at open); a crash
 *     after it leaves an unreferenced, complete model file (harmless: it is content-
 *     addressed, and the next put of the same bytes reuses it).
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
 * SQL: every statement is a constant string with bound parameters; values never become
 * SQL text. Statements are prepared per call (the coordinator makes a few calls per round,
 * so a statement cache would buy nothing measurable), through three helpers: exec_bound
 * (a write), query_row (at most one row) and rows_append (a JSON array of rows, each
 * built by a row_json_fn, most by a column table). Every sqlite3 return is checked and
 * becomes FV_EIO / FV_ECORRUPT / FV_ENOMEM with a sentence naming DIR/state.db and
 * SQLite's message. Rows read back are checked as hostile where they feed memory sizes or
 * fixed buffers (blob lengths, sha lengths, status length).
 *
 * Threading: a fv_state_t belongs to one thread. Ownership: fv_state_t owns its strings,
 * the sqlite3 connection and the lock fd; JSON results are new references for the caller.
 */
#define _GNU_SOURCE /* flock, strnlen */
#include "fv_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fv_crypto.h"
#include "fv_file.h"

#define BUSY_TIMEOUT_MS 5000
#define EVENT_MAX 128  /* bytes of an outbox event (as fv_audit's FV_AUDIT_EVENT_MAX) */
#define STATUS_MAX 63  /* bytes of a round status */
#define SERIAL_MAX 128 /* hex digits of a certificate serial */

struct fv_state {
    char *dir;        /* as given to open */
    char *db_path;    /* DIR/state.db */
    char *models_dir; /* DIR/models */
    sqlite3 *db;
    int lock_fd; /* DIR/LOCK, flock'd; -1 if not open */
};

/* The bodies of the two tables the version 1 -> 2 migration rebuilds (their CHECK
 * constraints changed), shared by schema_sql and migrate_1_2_sql so that a migrated database
 * and a new one have the same definitions. */
#define ROUNDS_BODY                                                                                \
    "  job TEXT NOT NULL REFERENCES jobs(id),"                                                     \
    "  round INTEGER NOT NULL,"                                                                    \
    "  attempt INTEGER NOT NULL,"                                                                  \
    "  kind TEXT NOT NULL CHECK (kind IN ('stats','train','distill')),"                            \
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
    "PRAGMA user_version = 2;";

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

/* ---- small helpers ------------------------------------------------------------------ */

/* A database failure: rc is the failing call's result; sqlite3_errmsg still describes it
 * because nothing else ran on the connection since. */
static int db_fail(const fv_state_t *s, int rc, const char *what, fv_diag_t *d)
{
    int prim = rc & 0xff;
    int err = prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB ? FV_ECORRUPT
              : prim == SQLITE_NOMEM                          ? FV_ENOMEM
                                                              : FV_EIO;
    return fv_diag_set(d, err, "%s: %s: %s", s->db_path, what, sqlite3_errmsg(s->db));
}

/* A row this code cannot have written. */
static int db_corrupt(const fv_state_t *s, const char *what, const char *detail, fv_diag_t *d)
{
    return fv_diag_set(d, FV_ECORRUPT, "%s: %s: %s (the database was changed by something else)",
                       s->db_path, what, detail);
}

/* A query that always answers one row (count(*), a PRAGMA) answered none. */
static int db_no_result(const fv_state_t *s, const char *what, fv_diag_t *d)
{
    return fv_diag_set(d, FV_EIO, "%s: %s: no result", s->db_path, what);
}

static int json_fail(const fv_state_t *s, const char *what, fv_diag_t *d)
{
    return fv_diag_set(d, FV_ENOMEM,
                       "%s: %s: cannot build JSON (out of memory, or text that is not UTF-8)",
                       s->db_path, what);
}

static int oom(const fv_state_t *s, const char *what, fv_diag_t *d)
{
    return fv_diag_set(d, FV_ENOMEM, "%s: %s: out of memory", s->db_path, what);
}

/* A failed system call on path: r is the negative errno (read errno before anything else
 * runs: `sys_fail(-errno, ...)`). The sentence is "PATH: DOING: strerror". */
static int sys_fail(int r, const char *path, const char *doing, fv_diag_t *d)
{
    return fv_diag_set(d, r, "%s: %s: %s", path, doing, strerror(-r));
}

static int prep(fv_state_t *s, const char *sql, sqlite3_stmt **st, const char *what, fv_diag_t *d)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(s, rc, what, d);
}

/* Binds parameters 1, 2, ... from a type string:
 *   't' const char * text (NULL binds NULL)      'i' int64_t (pass exactly int64_t)
 *   'b' const void *, size_t blob (NULL binds NULL)   'd' double (NaN binds NULL)
 * Text and blobs are SQLITE_STATIC: they must outlive the statement's step. Returns an
 * SQLite result code. */
static int bind_allv(sqlite3_stmt *st, const char *types, va_list ap)
{
    int rc = SQLITE_OK;
    for (int i = 0; types[i] != '\0' && rc == SQLITE_OK; i++) {
        int col = i + 1;
        switch (types[i]) {
        case 't': {
            const char *v = va_arg(ap, const char *);
            rc = v ? sqlite3_bind_text(st, col, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, col);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(st, col, (sqlite3_int64)va_arg(ap, int64_t));
            break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            rc = p ? sqlite3_bind_blob64(st, col, p, (sqlite3_uint64)n, SQLITE_STATIC)
                   : sqlite3_bind_null(st, col);
            break;
        }
        case 'd': {
            double v = va_arg(ap, double);
            rc = isnan(v) ? sqlite3_bind_null(st, col) : sqlite3_bind_double(st, col, v);
            break;
        }
        default:
            rc = SQLITE_MISUSE;
        }
    }
    return rc;
}

static int bind_all(sqlite3_stmt *st, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = bind_allv(st, types, ap);
    va_end(ap);
    return rc;
}

/* Prepares sql into *st and binds it as bind_allv. The caller finalizes *st, also when
 * this fails. */
static int prep_bindv(fv_state_t *s, sqlite3_stmt **st, const char *sql, const char *what,
                      fv_diag_t *d, const char *types, va_list ap)
{
    int r = prep(s, sql, st, what, d);
    if (r != 0)
        return r;
    int rc = bind_allv(*st, types, ap);
    return rc == SQLITE_OK ? 0 : db_fail(s, rc, what, d);
}

/* Runs a prepared write statement to completion. *ret_ext (may be NULL) gets SQLite's
 * extended code on failure, so callers can tell a constraint from an I/O error. */
static int step_done(fv_state_t *s, sqlite3_stmt *st, const char *what, int *ret_ext, fv_diag_t *d)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (ret_ext != NULL)
        *ret_ext = sqlite3_extended_errcode(s->db);
    return db_fail(s, rc, what, d);
}

/* Runs a write statement that returns no rows: prepare, bind (as bind_allv), step to
 * completion, finalize. *ret_ext as for step_done. sqlite3_changes and
 * sqlite3_last_insert_rowid still describe it afterwards. */
static int exec_bound(fv_state_t *s, const char *sql, const char *what, int *ret_ext, fv_diag_t *d,
                      const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;
    va_start(ap, types);
    int r = prep_bindv(s, &st, sql, what, d, types, ap);
    va_end(ap);
    if (r == 0)
        r = step_done(s, st, what, ret_ext, d);
    sqlite3_finalize(st); /* its result repeats the step's, handled above */
    return r;
}

/* Prepares sql into *st, binds it (as bind_allv) and steps once: 1 with a row ready to
 * read, 0 if there is no row (d untouched: the caller says what that means), or a
 * negative error. The caller finalizes *st in every case. */
static int query_row(fv_state_t *s, sqlite3_stmt **st, const char *sql, const char *what,
                     fv_diag_t *d, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = prep_bindv(s, st, sql, what, d, types, ap);
    va_end(ap);
    if (r != 0)
        return r;
    int rc = sqlite3_step(*st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : db_fail(s, rc, what, d);
}

/* Builds the JSON object of the row st is on into *ret (a new reference). Returns 0, or a
 * negative error with d set; returning 0 with *ret NULL means the object could not be
 * built (out of memory, or text that is not UTF-8) and the caller reports json_fail. */
typedef int row_json_fn(fv_state_t *s, sqlite3_stmt *st, const void *ctx, const char *what,
                        json_t **ret, fv_diag_t *d);

/* Appends row's object for every row of sql (bound as bind_allv) to the array arr. */
static int rows_append(fv_state_t *s, json_t *arr, row_json_fn *row, const void *ctx,
                       const char *sql, const char *what, fv_diag_t *d, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    int r, rc;
    va_list ap;
    va_start(ap, types);
    r = prep_bindv(s, &st, sql, what, d, types, ap);
    va_end(ap);
    if (r != 0)
        goto out;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = NULL;
        if ((r = row(s, st, ctx, what, &o, d)) != 0)
            goto out;
        if (json_array_append_new(arr, o) != 0) { /* consumes o, also on failure */
            r = json_fail(s, what, d);
            goto out;
        }
    }
    r = rc == SQLITE_DONE ? 0 : db_fail(s, rc, what, d);
out:
    sqlite3_finalize(st);
    return r;
}

/* *ret: a new JSON array of row's object for every row of the constant query sql. */
static int rows_to_json(fv_state_t *s, const char *sql, row_json_fn *row, const void *ctx,
                        const char *what, json_t **ret, fv_diag_t *d)
{
    json_t *arr = json_array();
    int r = arr == NULL ? json_fail(s, what, d) : rows_append(s, arr, row, ctx, sql, what, d, "");
    if (r != 0) {
        json_decref(arr);
        return r;
    }
    *ret = arr;
    return 0;
}

/* Runs a constant statement that returns no rows (BEGIN, COMMIT, the schema). */
static int exec_sql(fv_state_t *s, const char *sql, const char *what, fv_diag_t *d)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(s, rc, what, d);
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Exactly 64 lowercase hex digits. Reads at most 65 bytes of s. */
static bool is_hex64(const char *s)
{
    if (s == NULL)
        return false;
    for (int i = 0; i < 64; i++)
        if (!is_lower_hex(s[i]))
            return false;
    return s[64] == '\0';
}

static int check_hex64(const char *what, const char *v, fv_diag_t *d)
{
    if (is_hex64(v))
        return 0;
    return fv_diag_set(d, FV_EINVAL, "%s is %s, not 64 lowercase hex digits", what,
                       v == NULL ? "missing" : "malformed");
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i];
        size_t k;
        uint32_t min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1, min = 0x80, c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2, min = 0x800, c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (p[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

enum { TEXT_NULL_OK = 1, TEXT_EMPTY_OK = 2 };

/* A text argument: valid UTF-8 of at most max bytes; NULL and "" only if flags allow. */
static int check_text(const char *what, const char *v, size_t max, int flags, fv_diag_t *d)
{
    if (v == NULL)
        return (flags & TEXT_NULL_OK) ? 0 : fv_diag_set(d, FV_EINVAL, "%s is missing", what);
    size_t n = strnlen(v, max + 1);
    if (n == 0 && !(flags & TEXT_EMPTY_OK))
        return fv_diag_set(d, FV_EINVAL, "%s is empty", what);
    if (n > max)
        return fv_diag_set(d, FV_ETOOBIG, "%s is longer than %zu bytes", what, max);
    if (!utf8_valid((const unsigned char *)v, n))
        return fv_diag_set(d, FV_EINVAL, "%s is not valid UTF-8", what);
    return 0;
}

static int check_u64(const char *what, uint64_t v, fv_diag_t *d)
{
    if (v <= (uint64_t)INT64_MAX)
        return 0;
    return fv_diag_set(d, FV_ERANGE, "%s is %" PRIu64 ", over the largest storable %" PRId64, what,
                       v, INT64_MAX);
}

/* Parses JSON text given to the API: FV_ETOOBIG over the cap, FV_EPARSE if it does not
 * parse. *ret is a new reference. */
static int parse_json_arg(const char *what, const char *text, json_t **ret, fv_diag_t *d)
{
    size_t n = strnlen(text, FV_STATE_JSON_MAX + 1);
    if (n > FV_STATE_JSON_MAX)
        return fv_diag_set(d, FV_ETOOBIG, "%s is longer than %zu bytes", what,
                           (size_t)FV_STATE_JSON_MAX);
    json_error_t je;
    json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        return fv_diag_set(d, FV_EPARSE, "%s: not JSON: line %d column %d: %s", what, je.line,
                           je.column, je.text);
    *ret = j;
    return 0;
}

/* An array whose members are all strings. */
static bool is_string_array(const json_t *a)
{
    if (!json_is_array(a))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) if (!json_is_string(v)) return false;
    return true;
}

/* "2026-11-28T23:40:00.123Z" for ms since the epoch (negative times count backwards). */
static json_t *time_json(int64_t ms)
{
    int64_t sec = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        sec -= 1;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    char buf[64];
    if (gmtime_r(&t, &tm) == NULL)
        return json_null(); /* a year beyond int: no caller passes such a time */
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)rem);
    return json_string(buf);
}

/* Column values as JSON (new references; json_null() for SQL NULL; NULL on failure). */
static json_t *col_str(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return json_null();
    const char *v = (const char *)sqlite3_column_text(st, i);
    return v ? json_stringn(v, (size_t)sqlite3_column_bytes(st, i)) : NULL;
}

static json_t *col_int(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return json_null();
    return json_integer((json_int_t)sqlite3_column_int64(st, i));
}

static json_t *col_time(sqlite3_stmt *st, int i)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return json_null();
    return time_json((int64_t)sqlite3_column_int64(st, i));
}

/* A JSON text column parsed (json_null() for SQL NULL). FV_ECORRUPT if it does not
 * parse: only this file writes these columns, after validating them. */
static int col_json(const fv_state_t *s, sqlite3_stmt *st, int i, const char *what, json_t **ret,
                    fv_diag_t *d)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        *ret = json_null();
        return 0;
    }
    const char *v = (const char *)sqlite3_column_text(st, i);
    if (v == NULL)
        return oom(s, what, d);
    json_error_t je;
    json_t *j = json_loadb(v, (size_t)sqlite3_column_bytes(st, i), 0, &je);
    if (j == NULL)
        return db_corrupt(s, what, "a stored JSON column does not parse", d);
    *ret = j;
    return 0;
}

/* json_object_set_new that reports failure (v NULL, or no memory); v is always consumed. */
static bool jset(json_t *o, const char *key, json_t *v)
{
    return json_object_set_new(o, key, v) == 0;
}

/* A JSON object whose members were set by a chain of jset calls (ok: all succeeded);
 * NULL, with o released, if one failed. */
static json_t *obj_done(json_t *o, bool ok)
{
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A JSON member read from result column i of a row (col_str, col_int, col_time). */
struct col_member {
    const char *key;
    json_t *(*get)(sqlite3_stmt *st, int i);
};

/* The object whose member k is cols[k].key = cols[k].get(st, k), for the members before
 * the one with key NULL; NULL on failure. */
static json_t *cols_obj(sqlite3_stmt *st, const struct col_member *cols)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    for (int i = 0; ok && cols[i].key != NULL; i++)
        ok = jset(o, cols[i].key, cols[i].get(st, i));
    return obj_done(o, ok);
}

/* A row_json_fn for rows read by a column table: ctx is the table. */
static int cols_row(fv_state_t *s, sqlite3_stmt *st, const void *ctx, const char *what,
                    json_t **ret, fv_diag_t *d)
{
    *ret = cols_obj(st, ctx);
    return 0;
}

/* Whether job id exists: 0, UV_ENOENT with a sentence, or a database error. */
static int job_exists(fv_state_t *s, const char *id, const char *what, fv_diag_t *d)
{
    sqlite3_stmt *st = NULL;
    int r = query_row(s, &st, "SELECT 1 FROM jobs WHERE id = ?1", what, d, "t", id);
    sqlite3_finalize(st); /* its result repeats the step's, handled by query_row */
    if (r == 0)
        return fv_diag_set(d, -ENOENT, "%s: %s: job %s is unknown", s->db_path, what, id);
    return r < 0 ? r : 0;
}

/* Reads one integer from a constant query (PRAGMA user_version...). */
static int query_int(fv_state_t *s, const char *sql, int64_t *ret, fv_diag_t *d)
{
    sqlite3_stmt *st = NULL;
    int r = query_row(s, &st, sql, sql, d, "");
    if (r == 1) {
        *ret = (int64_t)sqlite3_column_int64(st, 0);
        r = 0;
    } else if (r == 0) {
        r = db_no_result(s, sql, d);
    }
    sqlite3_finalize(st);
    return r;
}

/* ---- opening ------------------------------------------------------------------------ */

static int make_dir(const char *path, fv_diag_t *d)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return sys_fail(-errno, path, "cannot create the directory", d);
}

/* Takes DIR/LOCK; on EWOULDBLOCK names the holder's pid from the file. */
static int take_lock(fv_state_t *s, fv_diag_t *d)
{
    char path[PATH_MAX], buf[32];
    int r = 0;
    snprintf(path, sizeof path, "%s/LOCK", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0)
        return sys_fail(-errno, path, "cannot open", d);
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK)
            return sys_fail(-errno, path, "cannot lock", d);
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
        return sys_fail(r ? r : -errno, path, "cannot write the pid", d);
    return 0;
}

/* Removes <64 hex>.fvm.tmp files a crashed fv_state_model_put left behind. Safe: we hold
 * the lock, so no put is in progress. */
static int remove_tmp_models(fv_state_t *s, fv_diag_t *d)
{
    DIR *dir = opendir(s->models_dir);
    int r = 0;
    if (dir == NULL)
        return sys_fail(-errno, s->models_dir, "cannot read the directory", d);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char name[65];
        if (strlen(e->d_name) != 64 + 8 || strcmp(e->d_name + 64, ".fvm.tmp") != 0)
            continue;
        memcpy(name, e->d_name, 64);
        name[64] = '\0';
        if (!is_hex64(name))
            continue;
        if (unlinkat(dirfd(dir), e->d_name, 0) != 0 && errno != ENOENT) {
            r = -errno;
            fv_diag_set(d, r, "%s/%s: cannot remove a leftover temporary file: %s", s->models_dir,
                        e->d_name, strerror(-r));
            break;
        }
    }
    closedir(dir);
    return r;
}

/* Migrates a version-1 database to version 2 (migrate_1_2_sql) in one transaction: a
 * crash or a failure anywhere leaves version 1 exactly as it was, and the next open tries
 * again. foreign_keys is OFF around the transaction (the rebuild drops tables that others
 * reference) and ON again afterwards, whatever happened; PRAGMA foreign_key_check must
 * find nothing before COMMIT, so the rebuild cannot have broken a reference. No other
 * process can be writing: the caller holds DIR/LOCK (an older fedvault takes it too). */
static int migrate_1_2(fv_state_t *s, fv_diag_t *d)
{
    static const char what[] = "migrating the schema from version 1 to 2";
    sqlite3_stmt *st = NULL;
    int r, r2;

    if ((r = exec_sql(s, "PRAGMA foreign_keys = OFF", what, d)) != 0)
        return r;
    if ((r = exec_sql(s, "BEGIN IMMEDIATE", what, d)) != 0 ||
        (r = exec_sql(s, migrate_1_2_sql, what, d)) != 0)
        goto out;
    if ((r = query_row(s, &st, "PRAGMA foreign_key_check", what, d, "")) < 0)
        goto out;
    if (r == 1) {
        /* Columns: table, rowid (NULL for a WITHOUT ROWID table), parent table, fk id. */
        const char *table = (const char *)sqlite3_column_text(st, 0);
        const char *parent = (const char *)sqlite3_column_text(st, 2);
        char detail[256];
        snprintf(detail, sizeof detail,
                 "row %" PRId64 " of table %.64s refers to a missing row of table %.64s; "
                 "the database is left at version 1",
                 (int64_t)sqlite3_column_int64(st, 1), table ? table : "?", parent ? parent : "?");
        r = db_corrupt(s, what, detail, d);
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
        return sys_fail(-errno, s->db_path, "cannot open", d);
    close(fd);

    rc = sqlite3_open_v2(s->db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        if (s->db == NULL)
            return fv_diag_set(d, FV_ENOMEM, "%s: cannot open: out of memory", s->db_path);
        return db_fail(s, rc, "cannot open", d);
    }
    sqlite3_extended_result_codes(s->db, 1);
    if ((rc = sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS)) != SQLITE_OK)
        return db_fail(s, rc, "cannot set the busy timeout", d);

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
        return db_corrupt(s, "reading the schema version", "user_version is negative", d);

    /* journal_mode answers with the mode in effect: anything but "wal" is a failure (a
     * file system without shared memory support, for one). */
    if ((r = query_row(s, &st, "PRAGMA journal_mode = WAL", wal_what, d, "")) != 1) {
        sqlite3_finalize(st);
        return r == 0 ? db_no_result(s, wal_what, d) : r;
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
    if (version == 1)
        return migrate_1_2(s, d);
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
        (r = make_dir(s->models_dir, d)) != 0 || (r = remove_tmp_models(s, d)) != 0 ||
        (r = open_db(s, d)) != 0)
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

/* ---- model files -------------------------------------------------------------------- */

int fv_state_model_path(const fv_state_t *s, const char *sha, char *buf, size_t cap)
{
    if (!is_hex64(sha))
        return FV_EINVAL;
    int n = snprintf(NULL, 0, "%s/%s.fvm", s->models_dir, sha);
    if (n < 0 || (size_t)n >= cap)
        return FV_ETOOBIG;
    snprintf(buf, cap, "%s/%s.fvm", s->models_dir, sha);
    return 0;
}

int fv_state_model_put(fv_state_t *s, const uint8_t *bytes, size_t len, char ret_sha[65],
                       fv_diag_t *d)
{
    uint8_t h[FV_HASH_BYTES];
    char sha[65], path[PATH_MAX], tmp[PATH_MAX + 8];
    int fd = -1, r;
    bool tmp_made = false;

    if (bytes == NULL && len > 0)
        return fv_diag_set(d, FV_EINVAL, "fv_state_model_put: NULL bytes");
    if (len > FV_STATE_MODEL_MAX)
        return fv_diag_set(d, FV_ETOOBIG, "model of %zu bytes is over the cap of %zu bytes", len,
                           (size_t)FV_STATE_MODEL_MAX);
    fv_sha256(h, len > 0 ? bytes : (const uint8_t *)"", len);
    to_hex(h, sizeof h, sha);
    /* The open checked the directory name leaves room for both names. */
    fv_state_model_path(s, sha, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);

    struct stat st;
    if (stat(path, &st) == 0) {
        /* Already stored: fsync the directory again, as the put that renamed it may have
         * failed at its own directory fsync. */
        if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size == len)
            goto sync_dir;
        /* Wrong size: damaged. Replaced below by the same atomic rename. */
    } else if (errno != ENOENT) {
        r = sys_fail(-errno, path, "cannot stat", d);
        goto out;
    }

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = sys_fail(-errno, tmp, "cannot create", d);
        goto out;
    }
    tmp_made = true;
    if ((r = fv_file_write_all(fd, bytes, len)) != 0) {
        sys_fail(r, tmp, "cannot write", d);
        goto out;
    }
    if (fsync(fd) != 0) {
        r = sys_fail(-errno, tmp, "cannot fsync", d);
        goto out;
    }
    r = close(fd) == 0 ? 0 : -errno;
    fd = -1;
    if (r != 0) {
        sys_fail(r, tmp, "cannot close", d);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        r = -errno;
        fv_diag_set(d, r, "%s: cannot rename to %s: %s", tmp, path, strerror(-r));
        goto out;
    }
    tmp_made = false;
sync_dir:
    if ((r = fv_file_fsync_dir(s->models_dir)) != 0) {
        sys_fail(r, s->models_dir, "cannot fsync", d);
        goto out;
    }
    memcpy(ret_sha, sha, sizeof sha);
out:
    if (fd >= 0)
        close(fd);
    if (tmp_made)
        unlink(tmp); /* best effort; the next open removes it otherwise */
    return r;
}

int fv_state_model_read(fv_state_t *s, const char *sha, uint8_t **ret_bytes, size_t *ret_len,
                        fv_diag_t *d)
{
    char path[PATH_MAX], got[65];
    uint8_t h[FV_HASH_BYTES];
    char *buf = NULL;
    size_t len = 0;
    int r;

    if ((r = check_hex64("model name", sha, d)) != 0)
        return r;
    fv_state_model_path(s, sha, path, sizeof path);
    if ((r = fv_file_read_all(path, FV_STATE_MODEL_MAX, &buf, &len, NULL, d)) != 0)
        return r;
    fv_sha256(h, buf, len);
    to_hex(h, sizeof h, got);
    if (strcmp(got, sha) != 0) {
        free(buf);
        return fv_diag_set(d, FV_ECORRUPT,
                           "%s: the contents do not match the name (their SHA-256 is %s): the "
                           "model file is damaged; restore it from a backup",
                           path, got);
    }
    *ret_bytes = (uint8_t *)buf;
    *ret_len = len;
    return 0;
}

/* ---- agents ------------------------------------------------------------------------- */

int fv_state_agent_seen(fv_state_t *s, const char *name, const char *serial_hex, int64_t now_ms,
                        fv_diag_t *d)
{
    int r;

    if ((r = check_text("agent name", name, FV_STATE_NAME_MAX, 0, d)) != 0)
        return r;
    size_t n = serial_hex ? strnlen(serial_hex, SERIAL_MAX + 1) : 0;
    if (n == 0 || n > SERIAL_MAX)
        return fv_diag_set(d, FV_EINVAL, "agent %s: certificate serial must be 1..%d hex digits",
                           name, SERIAL_MAX);
    for (size_t i = 0; i < n; i++)
        if (!is_lower_hex(serial_hex[i]) && !(serial_hex[i] >= 'A' && serial_hex[i] <= 'F'))
            return fv_diag_set(d, FV_EINVAL, "agent %s: certificate serial is not hex", name);

    return exec_bound(s,
                      "INSERT INTO agents (name, serial, first_seen, last_seen) "
                      "VALUES (?1, ?2, ?3, ?3) "
                      "ON CONFLICT (name) DO UPDATE SET serial = excluded.serial, "
                      "last_seen = excluded.last_seen",
                      "recording an agent", NULL, d, "tti", name, serial_hex, now_ms);
}

/* The members of an agent, from the columns of fv_state_agents_json's query. */
static const struct col_member agent_cols[] = {{"name", col_str},
                                               {"serial", col_str},
                                               {"first_seen", col_time},
                                               {"last_seen", col_time},
                                               {NULL, NULL}};

int fv_state_agents_json(fv_state_t *s, json_t **ret, fv_diag_t *d)
{
    return rows_to_json(s, "SELECT name, serial, first_seen, last_seen FROM agents ORDER BY name",
                        cols_row, agent_cols, "listing agents", ret, d);
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

/* The columns of the job views, in the order of job_cols. */
#define JOB_COLS                                                                                   \
    "j.id, j.name, j.status, j.submitted_by, j.submitted, j.started, j.finished, "                 \
    "(SELECT count(*) FROM rounds r WHERE r.job = j.id AND r.kind = 'train' "                      \
    "AND r.status = 'ok'), "                                                                       \
    "(SELECT count(*) FROM rounds r WHERE r.job = j.id AND r.kind = 'distill' "                    \
    "AND r.status = 'ok'), "                                                                       \
    "(SELECT count(*) FROM rounds r WHERE r.job = j.id AND r.status <> 'ok'), "                    \
    "j.final_version, j.student_version, j.why"
#define JOB_NCOLS 13

/* The members of the job view object, from a row starting with JOB_COLS. */
static const struct col_member job_cols[] = {{"id", col_str},
                                             {"name", col_str},
                                             {"status", col_str},
                                             {"submitted_by", col_str},
                                             {"submitted", col_time},
                                             {"started", col_time},
                                             {"finished", col_time},
                                             {"rounds_done", col_int},
                                             {"distill_rounds_done", col_int},
                                             {"rounds_failed", col_int},
                                             {"final_version", col_int},
                                             {"student_version", col_int},
                                             {"why", col_str},
                                             {NULL, NULL}};

int fv_state_job_add(fv_state_t *s, const char *id, const char *spec_json, const char *name,
                     const char *submitted_by, int64_t now_ms, fv_diag_t *d)
{
    json_t *spec = NULL;
    int r, ext = 0;

    if ((r = check_hex64("job id", id, d)) != 0 ||
        (r = check_text("job name", name, FV_STATE_NAME_MAX, TEXT_NULL_OK, d)) != 0 ||
        (r = check_text("submitted_by", submitted_by, FV_STATE_NAME_MAX, TEXT_NULL_OK, d)) != 0)
        return r;
    if (spec_json == NULL)
        return fv_diag_set(d, FV_EINVAL, "job %s: no spec", id);
    if ((r = parse_json_arg("job spec", spec_json, &spec, d)) != 0)
        return r;
    bool obj = json_is_object(spec);
    json_decref(spec);
    if (!obj)
        return fv_diag_set(d, FV_ESCHEMA, "job %s: the spec is not a JSON object", id);

    r = exec_bound(s,
                   "INSERT INTO jobs (id, spec, name, submitted_by, submitted, status) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, 'queued')",
                   "adding a job", &ext, d, "tttti", id, spec_json, name, submitted_by, now_ms);
    if (r != 0 && ext == SQLITE_CONSTRAINT_UNIQUE)
        r = fv_diag_set(d, FV_EDUP, "%s: job %s already exists", s->db_path, id);
    return r;
}

int fv_state_job_set_status(fv_state_t *s, const char *id, const char *status, const char *why,
                            int64_t now_ms, fv_diag_t *d)
{
    static const char what[] = "setting a job's status";
    int r;

    if ((r = check_hex64("job id", id, d)) != 0 ||
        (r = check_text("why", why, FV_STATE_TEXT_MAX, TEXT_NULL_OK | TEXT_EMPTY_OK, d)) != 0)
        return r;
    if (status == NULL || !is_job_status(status))
        return fv_diag_set(d, FV_EINVAL,
                           "job %s: status must be queued, running, done, failed or aborted", id);
    if ((r = exec_bound(s,
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

    if ((r = check_hex64("job id", id, d)) != 0)
        return r;
    if ((r = job_exists(s, id, what, d)) != 0)
        return r;
    if ((r = query_row(s, &st, "SELECT job, kind FROM versions WHERE version = ?1", what, d, "i",
                       version)) < 0)
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
    r = exec_bound(s,
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
    if ((r = check_hex64("job id", job, d)) != 0)
        return r;
    if (round > INT64_MAX)
        return fv_diag_set(d, FV_EINVAL, "%s: round %llu out of range", what,
                           (unsigned long long)round);
    if ((r = query_row(s, &st,
                       "SELECT COALESCE(MAX(attempt), 0) FROM rounds "
                       "WHERE job = ?1 AND round = ?2",
                       what, d, "ti", job, (int64_t)round)) < 0)
        goto out;
    int64_t n = r == 1 ? sqlite3_column_int64(st, 0) : 0;
    if (n < 0 || n > UINT32_MAX) {
        r = db_corrupt(s, what, "attempt out of range", d);
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

    if ((r = check_hex64("job id", id, d)) != 0)
        return r;
    if ((r = query_row(s, &st, "SELECT status FROM jobs WHERE id = ?1", what, d, "t", id)) < 0)
        goto out;
    if (r == 0) {
        r = fv_diag_set(d, -ENOENT, "%s: job %s is unknown", s->db_path, id);
        goto out;
    }
    const char *v = (const char *)sqlite3_column_text(st, 0);
    if (v == NULL || (size_t)sqlite3_column_bytes(st, 0) >= 16) {
        r = db_corrupt(s, what, "status longer than 15 bytes", d);
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
        if (!is_lower_hex(c))
            return fv_diag_set(d, FV_EINVAL, "job prefix '%.64s' is not hex", prefix);
        p[i] = c;
    }
    p[n] = '\0';

    if ((r = query_row(s, &st,
                       "SELECT count(*), min(id) FROM jobs WHERE substr(id, 1, length(?1)) = ?1",
                       what, d, "t", p)) != 1) {
        if (r == 0)
            r = db_no_result(s, what, d);
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
    if (!is_hex64(id)) {
        r = db_corrupt(s, what, "a job id is not 64 hex digits", d);
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

    if ((r = query_row(s, &st,
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
    if (!is_hex64(id) || spec == NULL) {
        r = db_corrupt(s, what, "a job row without a valid id or spec", d);
        goto out;
    }
    size_t n = (size_t)sqlite3_column_bytes(st, 1);
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        r = oom(s, what, d);
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

int fv_state_jobs_json(fv_state_t *s, json_t **ret, fv_diag_t *d)
{
    return rows_to_json(s, "SELECT " JOB_COLS " FROM jobs j ORDER BY j.seq", cols_row, job_cols,
                        "listing jobs", ret, d);
}

/* A round row of a job as a member of fv_state_job_json's "rounds". */
static int job_round_row(fv_state_t *s, sqlite3_stmt *st, const void *ctx, const char *what,
                         json_t **ret, fv_diag_t *d)
{
    json_t *cohort = NULL, *contrib = NULL, *metrics = NULL;
    int r;
    if ((r = col_json(s, st, 5, what, &cohort, d)) != 0 ||
        (r = col_json(s, st, 6, what, &contrib, d)) != 0 ||
        (r = col_json(s, st, 7, what, &metrics, d)) != 0) {
        json_decref(cohort);
        json_decref(contrib);
        return r;
    }
    json_t *o = json_object();
    bool ok = jset(o, "round", col_int(st, 0)) && jset(o, "attempt", col_int(st, 1)) &&
              jset(o, "kind", col_str(st, 2)) && jset(o, "status", col_str(st, 3)) &&
              jset(o, "why", col_str(st, 4));
    /* The parsed columns are consumed whatever happens (jset always consumes). */
    ok = jset(o, "cohort", cohort) && ok;
    ok = jset(o, "contributors", contrib) && ok;
    ok = jset(o, "metrics", metrics) && ok;
    ok = ok && jset(o, "model_in", col_str(st, 8)) && jset(o, "model_out", col_str(st, 9)) &&
         jset(o, "started", col_time(st, 10)) && jset(o, "finished", col_time(st, 11));
    *ret = obj_done(o, ok);
    return 0;
}

/* An agent row of a job as a member of fv_state_job_json's "agents". */
static const struct col_member job_agent_cols[] = {{"name", col_str},
                                                   {"data_sha256", col_str},
                                                   {"rows", col_int},
                                                   {"accepted", col_time},
                                                   {NULL, NULL}};
int fv_state_job_json(fv_state_t *s, const char *id, json_t **ret, fv_diag_t *d)
{
    static const char what[] = "reading a job";
    sqlite3_stmt *st = NULL;
    json_t *o = NULL, *spec = NULL, *rounds = NULL, *agents = NULL;
    int r;

    if ((r = check_hex64("job id", id, d)) != 0)
        return r;
    if ((r = query_row(s, &st, "SELECT " JOB_COLS ", j.spec FROM jobs j WHERE j.id = ?1", what, d,
                       "t", id)) < 0)
        goto out;
    if (r == 0) {
        r = fv_diag_set(d, -ENOENT, "%s: job %s is unknown", s->db_path, id);
        goto out;
    }
    if ((r = col_json(s, st, JOB_NCOLS, what, &spec, d)) != 0)
        goto out;
    if ((o = cols_obj(st, job_cols)) == NULL || (rounds = json_array()) == NULL ||
        (agents = json_array()) == NULL) {
        r = json_fail(s, what, d);
        goto out;
    }
    if ((r = rows_append(s, rounds, job_round_row, NULL,
                         "SELECT round, attempt, kind, status, why, cohort, contributors, "
                         "metrics, model_in, model_out, started, finished FROM rounds "
                         "WHERE job = ?1 ORDER BY round, attempt",
                         "reading a job's rounds", d, "t", id)) != 0 ||
        (r = rows_append(s, agents, cols_row, job_agent_cols,
                         "SELECT agent, data_sha256, rows, accepted FROM job_agents "
                         "WHERE job = ?1 ORDER BY agent",
                         "reading a job's agents", d, "t", id)) != 0)
        goto out;
    bool ok = jset(o, "spec", spec);
    ok = jset(o, "rounds", rounds) && ok;
    ok = jset(o, "agents", agents) && ok;
    spec = rounds = agents = NULL; /* consumed */
    if (!ok) {
        r = json_fail(s, what, d);
        goto out;
    }
    *ret = o;
    o = NULL;
    r = 0;
out:
    sqlite3_finalize(st);
    json_decref(o);
    json_decref(spec);
    json_decref(rounds);
    json_decref(agents);
    return r;
}

int fv_state_job_agent(fv_state_t *s, const char *job, const char *agent, const char *data_sha256,
                       uint64_t rows, int64_t now_ms, fv_diag_t *d)
{
    static const char what[] = "recording an agent's data fingerprint";
    int r;

    if ((r = check_hex64("job id", job, d)) != 0 ||
        (r = check_text("agent name", agent, FV_STATE_NAME_MAX, 0, d)) != 0 ||
        (r = check_hex64("data_sha256", data_sha256, d)) != 0 ||
        (r = check_u64("rows", rows, d)) != 0)
        return r;
    if ((r = job_exists(s, job, what, d)) != 0)
        return r;
    return exec_bound(s,
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

    if ((r = check_hex64("job id", job, d)) != 0)
        return r;
    if (ck == NULL)
        return fv_diag_set(d, FV_EINVAL, "job %s: no checkpoint given", job);
    if ((r = check_u64("next_round", ck->next_round, d)) != 0 ||
        (r = check_u64("rounds_done", ck->rounds_done, d)) != 0 ||
        (r = check_u64("rounds_failed", ck->rounds_failed, d)) != 0 ||
        (r = check_u64("n_ref", ck->n_ref, d)) != 0 ||
        (r = check_u64("best_round", ck->best_round, d)) != 0)
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
    if ((ck->global_sha[0] != '\0' && !is_hex64(ck->global_sha)) ||
        (ck->best_sha[0] != '\0' && !is_hex64(ck->best_sha)) ||
        (ck->teacher_sha[0] != '\0' && !is_hex64(ck->teacher_sha)))
        return fv_diag_set(d, FV_EINVAL,
                           "job %s: checkpoint global_sha/best_sha/teacher_sha must be \"\" or 64 "
                           "lowercase hex digits",
                           job);
    if (ck->teacher_json != NULL) {
        json_t *t = NULL;
        if ((r = parse_json_arg("checkpoint teacher_json", ck->teacher_json, &t, d)) != 0)
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
            return oom(s, what, d);
        for (size_t i = 0; i < ck->stats_words; i++) {
            uint32_t w = ck->stats_sum[i];
            stats[4 * i] = (uint8_t)w;
            stats[4 * i + 1] = (uint8_t)(w >> 8);
            stats[4 * i + 2] = (uint8_t)(w >> 16);
            stats[4 * i + 3] = (uint8_t)(w >> 24);
        }
    }
    r = exec_bound(s,
                   "INSERT OR REPLACE INTO checkpoints (job, next_round, rounds_done, "
                   "rounds_failed, n_ref, stats_sum, global_sha, global_version, opt_state, "
                   "best_sha, best_version, best_metric, best_round, since_best, phase, "
                   "teacher_sha, teacher_version, teacher_json) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                   "?16, ?17, ?18)",
                   what, NULL, d, "tiiiibtibtidiittit", job, (int64_t)ck->next_round,
                   (int64_t)ck->rounds_done, (int64_t)ck->rounds_failed, (int64_t)ck->n_ref,
                   (const void *)stats, stats_bytes, ck->global_sha[0] ? ck->global_sha : NULL,
                   ck->global_version, (const void *)(ck->opt_len > 0 ? ck->opt_state : NULL),
                   ck->opt_len, ck->best_sha[0] ? ck->best_sha : NULL, ck->best_version,
                   ck->best_metric, (int64_t)ck->best_round, (int64_t)ck->since_best,
                   ck->distill ? "distill" : "train", ck->teacher_sha[0] ? ck->teacher_sha : NULL,
                   ck->teacher_version, ck->teacher_json);
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
    if (!is_hex64(v))
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

    if ((r = check_hex64("job id", job, d)) != 0)
        return r;
    if ((r = query_row(s, &st,
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
            r = db_corrupt(s, what, "a counter out of range", d);
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
        r = db_corrupt(s, what, "a model name is not 64 hex digits", d);
        goto out;
    }
    const char *phase = (const char *)sqlite3_column_text(st, 13);
    if (phase == NULL || (strcmp(phase, "train") != 0 && strcmp(phase, "distill") != 0)) {
        r = db_corrupt(s, what, "the phase is neither train nor distill", d);
        goto out;
    }
    ck.distill = strcmp(phase, "distill") == 0;
    ck.teacher_version = (int64_t)sqlite3_column_int64(st, 15);

    /* stats_sum: a blob of 4-byte little-endian words, at most FV_STATE_STATS_MAX. */
    if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
        const uint8_t *b = sqlite3_column_blob(st, 4);
        size_t n = (size_t)sqlite3_column_bytes(st, 4);
        if (n % 4 != 0 || n / 4 > FV_STATE_STATS_MAX) {
            r = db_corrupt(s, what, "the stats blob is not a whole number of words", d);
            goto out;
        }
        if (n > 0) {
            ck.stats_sum = malloc(n);
            if (ck.stats_sum == NULL) {
                r = oom(s, what, d);
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
                r = oom(s, what, d);
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
            r = oom(s, what, d);
            goto out;
        }
        if (n > FV_STATE_JSON_MAX) {
            r = db_corrupt(s, what, "teacher_json is over the JSON cap", d);
            goto out;
        }
        if ((ck.teacher_json = malloc(n + 1)) == NULL) {
            r = oom(s, what, d);
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

/* Validates a JSON argument and re-encodes it compactly into *ret (malloc'd; NULL for a
 * NULL argument when nullable). shape: 'a' array of strings, 'o' object. owner starts the
 * sentences ("round", "model version 7"). */
static int json_arg_compact(const char *owner, const char *what, const char *text, char shape,
                            bool nullable, char **ret, fv_diag_t *d)
{
    json_t *j = NULL;
    int r;
    if (text == NULL) {
        if (!nullable)
            return fv_diag_set(d, FV_EINVAL, "%s: %s is missing", owner, what);
        *ret = NULL;
        return 0;
    }
    if ((r = parse_json_arg(what, text, &j, d)) != 0)
        return r;
    bool ok = shape == 'a' ? is_string_array(j) : json_is_object(j);
    if (!ok) {
        json_decref(j);
        return fv_diag_set(d, FV_ESCHEMA, "%s: %s is not %s", owner, what,
                           shape == 'a' ? "an array of strings" : "a JSON object");
    }
    char *out = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (out == NULL)
        return fv_diag_set(d, FV_ENOMEM, "%s: %s: out of memory", owner, what);
    *ret = out;
    return 0;
}

int fv_state_round_add(fv_state_t *s, const fv_state_round_t *rd, fv_diag_t *d)
{
    static const char what[] = "adding a round";
    char *cohort = NULL, *contrib = NULL, *metrics = NULL;
    int r, ext = 0;

    if (rd == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_state_round_add: no round given");
    if ((r = check_hex64("job id", rd->job, d)) != 0 || (r = check_u64("round", rd->round, d)) != 0)
        return r;
    if (rd->attempt == 0)
        return fv_diag_set(d, FV_EINVAL, "round %" PRIu64 ": attempts count from 1", rd->round);
    if (rd->kind == NULL || (strcmp(rd->kind, "stats") != 0 && strcmp(rd->kind, "train") != 0 &&
                             strcmp(rd->kind, "distill") != 0))
        return fv_diag_set(d, FV_EINVAL, "round %" PRIu64 ": kind must be stats, train or distill",
                           rd->round);
    if ((r = check_text("round status", rd->status, STATUS_MAX, 0, d)) != 0 ||
        (r = check_text("round why", rd->why, FV_STATE_TEXT_MAX, TEXT_NULL_OK | TEXT_EMPTY_OK,
                        d)) != 0)
        return r;
    if ((rd->model_in_sha != NULL && (r = check_hex64("model_in_sha", rd->model_in_sha, d)) != 0) ||
        (rd->model_out_sha != NULL &&
         (r = check_hex64("model_out_sha", rd->model_out_sha, d)) != 0))
        return r;
    if ((r = json_arg_compact("round", "cohort", rd->cohort_json, 'a', false, &cohort, d)) != 0 ||
        (r = json_arg_compact("round", "contributors", rd->contributors_json, 'a', false, &contrib,
                              d)) != 0 ||
        (r = json_arg_compact("round", "metrics", rd->metrics_json, 'o', true, &metrics, d)) != 0)
        goto out;
    if ((r = job_exists(s, rd->job, what, d)) != 0)
        goto out;

    r = exec_bound(s,
                   "INSERT INTO rounds (job, round, attempt, kind, status, why, cohort, "
                   "contributors, metrics, model_in, model_out, started, finished) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                   what, &ext, d, "tiittttttttii", rd->job, (int64_t)rd->round,
                   (int64_t)rd->attempt, rd->kind, rd->status, rd->why, cohort, contrib, metrics,
                   rd->model_in_sha, rd->model_out_sha, rd->started_ms, rd->finished_ms);
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

    if ((r = check_hex64("job id", job, d)) != 0 || (r = check_hex64("model sha", sha, d)) != 0 ||
        (r = check_u64("round", round, d)) != 0 ||
        (r = check_text("producer", producer, FV_STATE_TEXT_MAX, 0, d)) != 0)
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
        r = query_row(s, &st, "SELECT 1 FROM versions WHERE version = ?1", what, d, "i", parent);
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
        return sys_fail(-errno, path, "cannot stat", d);
    }
    if (!S_ISREG(sb.st_mode))
        return fv_diag_set(d, FV_EINVAL, "%s: not a regular file", path);
    /* parent 0 means none: stored as NULL (nullif) so the foreign key holds. */
    if ((r = exec_bound(s,
                        "INSERT INTO versions (sha256, job, round, kind, parent, created, bytes, "
                        "producer) VALUES (?1, ?2, ?3, ?4, nullif(?5, 0), ?6, ?7, ?8)",
                        what, NULL, d, "ttitiiit", sha, job, (int64_t)round, kind, parent, now_ms,
                        (int64_t)sb.st_size, producer)) != 0)
        return r;
    if (ret_version != NULL)
        *ret_version = (int64_t)sqlite3_last_insert_rowid(s->db);
    return 0;
}

static int no_version(const fv_state_t *s, int64_t version, fv_diag_t *d)
{
    return fv_diag_set(d, -ENOENT, "%s: model version %" PRId64 " is unknown", s->db_path, version);
}

int fv_state_version_sha(fv_state_t *s, int64_t version, char ret_sha[65], fv_diag_t *d)
{
    static const char what[] = "reading a model version";
    sqlite3_stmt *st = NULL;
    int r;

    if ((r = query_row(s, &st, "SELECT sha256 FROM versions WHERE version = ?1", what, d, "i",
                       version)) < 0)
        goto out;
    if (r == 0) {
        r = no_version(s, version, d);
        goto out;
    }
    const char *sha = (const char *)sqlite3_column_text(st, 0);
    if (!is_hex64(sha)) {
        r = db_corrupt(s, what, "a model name is not 64 hex digits", d);
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
    if ((r = json_arg_compact(owner, "report", report_json, 'o', true, &report, d)) != 0)
        return r;
    if ((r = exec_bound(s, "UPDATE versions SET report = ?2 WHERE version = ?1", what, NULL, d,
                        "it", version, report)) == 0 &&
        sqlite3_changes(s->db) == 0)
        r = no_version(s, version, d);
    free(report);
    return r;
}

#define VERSION_COLS                                                                               \
    "version, sha256, job, round, kind, parent, created, bytes, producer, "                        \
    "report IS NOT NULL"
#define VERSION_NCOLS 10

/* 0/1 as JSON false/true. */
static json_t *col_bool(sqlite3_stmt *st, int i)
{
    return json_boolean(sqlite3_column_int64(st, i) != 0);
}

/* The members of the version view object, from a row of VERSION_COLS. */
static const struct col_member version_cols[] = {
    {"version", col_int},  {"sha256", col_str},      {"job", col_str},      {"round", col_int},
    {"kind", col_str},     {"parent", col_int},      {"created", col_time}, {"bytes", col_int},
    {"producer", col_str}, {"has_report", col_bool}, {NULL, NULL}};

int fv_state_versions_json(fv_state_t *s, json_t **ret, fv_diag_t *d)
{
    return rows_to_json(s, "SELECT " VERSION_COLS " FROM versions ORDER BY version", cols_row,
                        version_cols, "listing model versions", ret, d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A member of lineage.rounds. */
static int lineage_round_row(fv_state_t *s, sqlite3_stmt *st, const void *ctx, const char *what,
                             json_t **ret, fv_diag_t *d)
{
    json_t *cohort = NULL, *contrib = NULL;
    int r;
    if ((r = col_json(s, st, 2, what, &cohort, d)) != 0 ||
        (r = col_json(s, st, 3, what, &contrib, d)) != 0) {
        json_decref(cohort);
        return r;
    }
    if (!is_string_array(cohort)) {
        json_decref(cohort);
        json_decref(contrib);
        return db_corrupt(s, what, "a stored cohort is not an array of names", d);
    }
    json_t *o = json_object();
    bool ok = jset(o, "round", col_int(st, 0)) && jset(o, "kind", col_str(st, 1));
    ok = jset(o, "cohort", cohort) && ok;
    ok = jset(o, "contributors", contrib) && ok;
    *ret = obj_done(o, ok);
    return 0;
}

/* lineage.agents: the fingerprint of each agent named in a cohort of rounds (lineage.rounds,
 * whose cohorts lineage_round_row checked are arrays of strings), sorted by name. */
static int lineage_agents(fv_state_t *s, const char *job, const json_t *rounds, json_t *agents,
                          fv_diag_t *d)
{
    static const char what[] = "reading a version's agents";
    sqlite3_stmt *st = NULL;
    json_t *names = json_object(); /* used as a set */
    const char **keys = NULL;
    size_t n, k = 0;
    int r, rc;

    if (names == NULL) {
        r = json_fail(s, what, d);
        goto out;
    }
    size_t i;
    json_t *rd;
    json_array_foreach(rounds, i, rd)
    {
        size_t j;
        json_t *name;
        json_array_foreach(json_object_get(rd, "cohort"), j, name)
        {
            if (json_object_set_new(names, json_string_value(name), json_true()) != 0) {
                r = json_fail(s, what, d);
                goto out;
            }
        }
    }
    if ((n = json_object_size(names)) == 0) {
        r = 0;
        goto out;
    }
    keys = malloc(n * sizeof *keys);
    if (keys == NULL) {
        r = oom(s, what, d);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(names, key, v) keys[k++] = key;
    qsort(keys, n, sizeof *keys, cmp_str);

    if ((r = prep(s, "SELECT data_sha256, rows FROM job_agents WHERE job = ?1 AND agent = ?2", &st,
                  what, d)) != 0)
        goto out;
    for (i = 0; i < n; i++) {
        sqlite3_reset(st); /* reports the previous step's result, handled already */
        if ((rc = bind_all(st, "tt", job, keys[i])) != SQLITE_OK) {
            r = db_fail(s, rc, what, d);
            goto out;
        }
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            r = db_fail(s, rc, what, d);
            goto out;
        }
        bool row = rc == SQLITE_ROW;
        json_t *o = json_object();
        bool ok = jset(o, "name", json_string(keys[i])) &&
                  jset(o, "data_sha256", row ? col_str(st, 0) : json_null()) &&
                  jset(o, "rows", row ? col_int(st, 1) : json_null());
        if (json_array_append_new(agents, obj_done(o, ok)) != 0) {
            r = json_fail(s, what, d);
            goto out;
        }
    }
    r = 0;
out:
    sqlite3_finalize(st);
    free(keys);
    json_decref(names);
    return r;
}

int fv_state_version_json(fv_state_t *s, int64_t version, json_t **ret, fv_diag_t *d)
{
    static const char what[] = "reading a model version";
    sqlite3_stmt *st = NULL;
    json_t *o = NULL, *lin = NULL, *spec = NULL, *rounds = NULL, *agents = NULL;
    json_t *producer = NULL, *report = NULL;
    char job[65];
    int64_t round;
    bool ok;
    int r;

    if ((r = query_row(s, &st, "SELECT " VERSION_COLS ", report FROM versions WHERE version = ?1",
                       what, d, "i", version)) < 0)
        goto out;
    if (r == 0) {
        r = no_version(s, version, d);
        goto out;
    }
    const char *j = (const char *)sqlite3_column_text(st, 2);
    if (!is_hex64(j)) {
        r = db_corrupt(s, what, "a version's job is not 64 hex digits", d);
        goto out;
    }
    memcpy(job, j, 65);
    round = (int64_t)sqlite3_column_int64(st, 3);
    if ((o = cols_obj(st, version_cols)) == NULL || (lin = json_object()) == NULL ||
        !jset(lin, "parent", col_int(st, 5)) || !jset(lin, "job", json_string(job)) ||
        (rounds = json_array()) == NULL || (agents = json_array()) == NULL) {
        r = json_fail(s, what, d);
        goto out;
    }
    if ((producer = col_str(st, 8)) == NULL) {
        r = json_fail(s, what, d);
        goto out;
    }
    if ((r = col_json(s, st, VERSION_NCOLS, what, &report, d)) != 0)
        goto out;
    if (!json_is_null(report) && !json_is_object(report)) {
        r = db_corrupt(s, what, "a stored report is not a JSON object", d);
        goto out;
    }
    ok = jset(o, "report", report);
    report = NULL; /* consumed */
    if (!ok) {
        r = json_fail(s, what, d);
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;

    /* hyperparameters: the job's spec. */
    if ((r = query_row(s, &st, "SELECT spec FROM jobs WHERE id = ?1", what, d, "t", job)) != 1) {
        if (r == 0)
            r = db_corrupt(s, what, "a version names a job that does not exist", d);
        goto out;
    }
    if ((r = col_json(s, st, 0, what, &spec, d)) != 0)
        goto out;
    sqlite3_finalize(st);
    st = NULL;

    if ((r = rows_append(s, rounds, lineage_round_row, NULL,
                         "SELECT round, kind, cohort, contributors FROM rounds WHERE job = ?1 "
                         "AND status = 'ok' AND round <= ?2 ORDER BY round, attempt",
                         "reading a version's lineage", d, "ti", job, round)) != 0 ||
        (r = lineage_agents(s, job, rounds, agents, d)) != 0)
        goto out;
    ok = jset(lin, "hyperparameters", spec);
    ok = jset(lin, "rounds", rounds) && ok;
    ok = jset(lin, "agents", agents) && ok;
    ok = jset(lin, "producer", producer) && ok;
    spec = rounds = agents = producer = NULL; /* consumed */
    ok = ok && jset(o, "lineage", lin);
    lin = NULL;
    if (!ok) {
        r = json_fail(s, what, d);
        goto out;
    }
    *ret = o;
    o = NULL;
    r = 0;
out:
    sqlite3_finalize(st);
    json_decref(o);
    json_decref(lin);
    json_decref(spec);
    json_decref(rounds);
    json_decref(agents);
    json_decref(producer);
    json_decref(report);
    return r;
}

/* ---- audit outbox ------------------------------------------------------------------- */

int fv_state_outbox_add(fv_state_t *s, const char *actor, const char *event,
                        const char *details_json, int64_t *ret_id, fv_diag_t *d)
{
    int r;

    if ((r = check_text("audit actor", actor, FV_STATE_NAME_MAX, 0, d)) != 0 ||
        (r = check_text("audit event", event, EVENT_MAX, 0, d)) != 0)
        return r;
    if (details_json != NULL) {
        json_t *j = NULL;
        if ((r = parse_json_arg("audit details", details_json, &j, d)) != 0)
            return r;
        bool obj = json_is_object(j);
        json_decref(j);
        if (!obj)
            return fv_diag_set(d, FV_ESCHEMA, "audit details are not a JSON object");
    }
    if ((r = exec_bound(s, "INSERT INTO outbox (actor, event, details) VALUES (?1, ?2, ?3)",
                        "queueing an audit record", NULL, d, "ttt", actor, event, details_json)) !=
        0)
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
    if ((r = prep(s, "SELECT id, actor, event, details FROM outbox ORDER BY id LIMIT 1", &sel, what,
                  d)) != 0 ||
        (r = prep(s, "DELETE FROM outbox WHERE id = ?1", &del, what, d)) != 0)
        goto out;
    for (;;) {
        rc = sqlite3_step(sel);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            r = db_fail(s, rc, what, d);
            goto out;
        }
        int64_t id = (int64_t)sqlite3_column_int64(sel, 0);
        const char *actor = (const char *)sqlite3_column_text(sel, 1);
        const char *event = (const char *)sqlite3_column_text(sel, 2);
        const char *details = (const char *)sqlite3_column_text(sel, 3);
        if (actor == NULL || event == NULL) {
            r = db_corrupt(s, what, "an outbox row without actor or event", d);
            goto out;
        }
        if ((r = cb(id, actor, event, details, ctx)) != 0)
            goto out;
        sqlite3_reset(sel); /* ends the read; reports the step's result, handled above */
        sqlite3_reset(del);
        if ((rc = bind_all(del, "i", id)) != SQLITE_OK) {
            r = db_fail(s, rc, what, d);
            goto out;
        }
        if ((r = step_done(s, del, what, NULL, d)) != 0)
            goto out;
    }
    r = 0;
out:
    sqlite3_finalize(sel);
    sqlite3_finalize(del);
    return r;
}
