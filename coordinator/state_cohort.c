/* state_cohort.c - each agent's standing in a job, for the operator (fv_state.h).
 *
 * Purpose: `fedvault job show` of a job that has ended (or of one after a restart) must
 * still say who refused it and why, who accepted, who was lost and when. The coordinator
 * writes an agent's latest status on every change (coord_cohort.c); this file stores it.
 *
 * Table (created by fv_state_open with CREATE TABLE IF NOT EXISTS on any schema version
 * 2 database, as releases: a table of its own, which a fedvault that does not know it
 * ignores, so the schema version is unchanged):
 *   job_agent_status(job -> jobs, agent, status CHECK IN (waiting, accepted, refused,
 *        gone), category (refused: a JOB_REFUSE category word; else NULL), reason
 *        (refused: the agent's sentence, <= 256 bytes as received; else NULL), round
 *        (gone: the round it was lost in; else NULL), at (ms since the epoch: when the
 *        status began); PK (job, agent))
 * One row per (job, agent): the latest status wins, so an agent that was lost and came
 * back reads "accepted" again (its loss is in the log and the audit log).
 *
 * Threading: the caller's (a fv_state_t belongs to one thread). Ownership: JSON results
 * are new references for the caller.
 */
#include "state-int.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

const char fv__state_cohort_sql[] =
    "CREATE TABLE IF NOT EXISTS job_agent_status ("
    "  job TEXT NOT NULL REFERENCES jobs(id),"
    "  agent TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('waiting','accepted','refused','gone')),"
    "  category TEXT,"
    "  reason TEXT,"
    "  round INTEGER,"
    "  at INTEGER NOT NULL,"
    "  PRIMARY KEY (job, agent));";

#define REASON_MAX 256 /* FV_WIRE_TEXT_MAX: a JOB_REFUSE reason */
#define CATEGORY_MAX 32

static bool status_ok(const char *st)
{
    return st != NULL && (strcmp(st, "waiting") == 0 || strcmp(st, "accepted") == 0 ||
                          strcmp(st, "refused") == 0 || strcmp(st, "gone") == 0);
}

int fv_state_job_agent_status(fv_state_t *s, const char *job, const char *agent, const char *status,
                              const char *category, const char *reason, int64_t round,
                              int64_t at_ms, fv_diag_t *d)
{
    static const char what[] = "recording an agent's status in a job";
    int r;
    if ((r = fv__state_check_hex64("job id", job, d)) != 0 ||
        (r = fv__state_check_text("agent name", agent, FV_STATE_NAME_MAX, 0, d)) != 0 ||
        (r = fv__state_check_text("category", category, CATEGORY_MAX, FV__STATE_TEXT_NULL_OK, d)) !=
            0 ||
        (r = fv__state_check_text("reason", reason, REASON_MAX,
                                  FV__STATE_TEXT_NULL_OK | FV__STATE_TEXT_EMPTY_OK, d)) != 0)
        return r;
    if (!status_ok(status))
        return fv_diag_set(d, FV_EINVAL,
                           "agent status '%.32s': expected waiting, accepted, refused or gone",
                           status != NULL ? status : "(null)");
    if (round < 0) /* no round: SQL NULL */
        return fv__state_exec_bound(
            s,
            "INSERT INTO job_agent_status (job, agent, status, category, reason, round, at) "
            "VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6) "
            "ON CONFLICT (job, agent) DO UPDATE SET status = excluded.status, "
            "category = excluded.category, reason = excluded.reason, round = NULL, "
            "at = excluded.at",
            what, NULL, d, "ttttti", job, agent, status, category, reason, at_ms);
    return fv__state_exec_bound(
        s,
        "INSERT INTO job_agent_status (job, agent, status, category, reason, round, at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
        "ON CONFLICT (job, agent) DO UPDATE SET status = excluded.status, "
        "category = excluded.category, reason = excluded.reason, round = excluded.round, "
        "at = excluded.at",
        what, NULL, d, "tttttii", job, agent, status, category, reason, round, at_ms);
}

static json_t *col_text(sqlite3_stmt *st, int i)
{
    const char *v = (const char *)sqlite3_column_text(st, i);
    return v != NULL ? json_string(v) : json_null();
}

int fv_state_job_cohort_json(fv_state_t *s, const char *job, json_t **ret, fv_diag_t *d)
{
    static const char what[] = "reading a job's agent statuses";
    sqlite3_stmt *st = NULL;
    json_t *arr = NULL;
    int r, rc;
    if ((r = fv__state_check_hex64("job id", job, d)) != 0)
        return r;
    if ((arr = json_array()) == NULL)
        return fv__state_oom(s, what, d);
    if ((r = fv__state_query_row(s, &st,
                                 "SELECT agent, status, category, reason, round, at "
                                 "FROM job_agent_status WHERE job = ?1 ORDER BY agent",
                                 what, d, "t", job)) < 0)
        goto out;
    for (rc = r == 1 ? SQLITE_ROW : SQLITE_DONE; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        json_t *o = json_object();
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            r = fv__state_oom(s, what, d);
            goto out;
        }
        json_object_set_new(o, "agent", col_text(st, 0));
        json_object_set_new(o, "status", col_text(st, 1));
        json_object_set_new(o, "category", col_text(st, 2));
        json_object_set_new(o, "reason", col_text(st, 3));
        json_object_set_new(o, "round",
                            sqlite3_column_type(st, 4) == SQLITE_NULL
                                ? json_null()
                                : json_integer(sqlite3_column_int64(st, 4)));
        json_object_set_new(o, "at", fv__state_time_json(sqlite3_column_int64(st, 5)));
        json_object_set_new(o, "at_ms", json_integer(sqlite3_column_int64(st, 5)));
    }
    if (rc != SQLITE_DONE) {
        r = fv__state_db_fail(s, rc, what, d);
        goto out;
    }
    *ret = arr;
    arr = NULL;
    r = 0;
out:
    sqlite3_finalize(st);
    json_decref(arr);
    return r;
}
