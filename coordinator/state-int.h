/* state-int.h - the durable state store's internals, shared by its files (fv_state.h).
 *
 * The store (the library fv_coord) is five files, one concern each:
 *   state.c         open and close, DIR/LOCK, the pragmas, the schema (its tables are
 *                   described there) and its migration, transactions, the audit outbox.
 *   state_sql.c     the helpers below: statements with bound parameters, the sentences
 *                   of failures, the checks of the API's arguments.
 *   state_models.c  the content-addressed model files (DIR/models) and their durability.
 *   state_jobs.c    agents, jobs, a job's agents, checkpoints, rounds, model versions.
 *   state_cohort.c  each agent's status in a job (waiting, accepted, refused, gone).
 *   state_json.c    the JSON views the admin port shows (agents, jobs, a job, versions, a
 *                   version with its lineage).
 * Nothing outside these files includes this header: the coordinator sees fv_state.h only.
 *
 * Every helper that returns int returns 0 or a negative error (FV_E*, or -errno) with d
 * set to a sentence naming DIR/state.db or the file, as the API does; the helpers'
 * contracts are written at their definitions in state_sql.c.
 *
 * Threading and ownership: as fv_state.h. A fv_state_t belongs to one thread; the model
 * files' functions touch no field but models_dir (state_models.c says why that matters).
 */
#ifndef FV_STATE_INT_H
#define FV_STATE_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "fv_state.h"

/* Owned by fv_state_open / fv_state_close (state.c); every field is set by the open and
 * not changed afterwards, but for the connection's own state. */
struct fv_state {
    char *dir;        /* as given to open */
    char *db_path;    /* DIR/state.db */
    char *models_dir; /* DIR/models */
    sqlite3 *db;
    int lock_fd; /* DIR/LOCK, flock'd; -1 if not open */
};

/* ---- failures as sentences (state_sql.c) ------------------------------------------- */

int fv__state_db_fail(const fv_state_t *s, int rc, const char *what, fv_diag_t *d);
int fv__state_db_corrupt(const fv_state_t *s, const char *what, const char *detail, fv_diag_t *d);
int fv__state_db_no_result(const fv_state_t *s, const char *what, fv_diag_t *d);
int fv__state_oom(const fv_state_t *s, const char *what, fv_diag_t *d);
int fv__state_sys_fail(int r, const char *path, const char *doing, fv_diag_t *d);

/* ---- statements (state_sql.c) ------------------------------------------------------ */

/* types: one letter per parameter, 't' text, 'i' int64_t, 'b' blob (pointer, size_t),
 * 'd' double; see bind_allv in state_sql.c. */
int fv__state_prep(fv_state_t *s, const char *sql, sqlite3_stmt **st, const char *what,
                   fv_diag_t *d);
int fv__state_bind_all(sqlite3_stmt *st, const char *types, ...);
int fv__state_prep_bindv(fv_state_t *s, sqlite3_stmt **st, const char *sql, const char *what,
                         fv_diag_t *d, const char *types, va_list ap);
int fv__state_step_done(fv_state_t *s, sqlite3_stmt *st, const char *what, int *ret_ext,
                        fv_diag_t *d);
int fv__state_exec_bound(fv_state_t *s, const char *sql, const char *what, int *ret_ext,
                         fv_diag_t *d, const char *types, ...);
int fv__state_query_row(fv_state_t *s, sqlite3_stmt **st, const char *sql, const char *what,
                        fv_diag_t *d, const char *types, ...);

/* ---- the API's arguments (state_sql.c) --------------------------------------------- */

/* fv__state_check_text's flags. */
enum { FV__STATE_TEXT_NULL_OK = 1, FV__STATE_TEXT_EMPTY_OK = 2 };

bool fv__state_is_lower_hex(char c);
bool fv__state_is_hex64(const char *s);
int fv__state_check_hex64(const char *what, const char *v, fv_diag_t *d);
int fv__state_check_text(const char *what, const char *v, size_t max, int flags, fv_diag_t *d);
int fv__state_check_u64(const char *what, uint64_t v, fv_diag_t *d);
int fv__state_parse_json_arg(const char *what, const char *text, json_t **ret, fv_diag_t *d);
bool fv__state_is_string_array(const json_t *a);
int fv__state_json_arg_compact(const char *owner, const char *what, const char *text, char shape,
                               bool nullable, char **ret, fv_diag_t *d);

/* ---- shared by two files ------------------------------------------------------------ */

/* Removes the .fvm.tmp files a crashed fv_state_model_put left (state_models.c; called by
 * fv_state_open with DIR/LOCK held). */
int fv__state_model_tmp_remove(fv_state_t *s, fv_diag_t *d);

/* The releases table, created if missing at every open (state_releases.c). */
extern const char fv__state_releases_sql[];
/* The job_agent_status table, the same way (state_cohort.c). */
extern const char fv__state_cohort_sql[];
/* "2026-11-28T23:40:00.123Z" for ms since the epoch, as every view shows a time
 * (state_json.c). */
json_t *fv__state_time_json(int64_t ms);
/* The job_schemas table, created if missing at every open (state_schemas.c). */
extern const char fv__state_schemas_sql[];

/* UV_ENOENT: "model version N is unknown" (state_jobs.c; also used by state_json.c). */
int fv__state_no_version(const fv_state_t *s, int64_t version, fv_diag_t *d);

#endif
