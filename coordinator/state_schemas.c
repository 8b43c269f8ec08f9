/* state_schemas.c - the durable state store's resolved schemas (fv_state.h, "schemas").
 *
 * Purpose: a job submitted with an open schema (model/fv_schema.h) runs with the spec the
 * coordinator resolved by schema discovery (coordinator/coord_schema.c). That spec is kept
 * here, beside the submitted one (jobs.spec, whose digest stays the job's id), so a
 * restarted coordinator resumes the job with the same resolved spec, hence the same wire
 * digest, and never runs a second schema round for it.
 *
 * Table (created by fv_state_open with CREATE TABLE IF NOT EXISTS on any schema version
 * 2 database, like releases: a table of its own, which a fedvault that does not know it
 * ignores, so the schema version is unchanged and an existing database needs no other
 * migration):
 *   job_schemas(job TEXT PRIMARY KEY REFERENCES jobs(id), spec (the resolved job's
 *               canonical JSON), sha256 (of the resolved schema's canonical JSON), version
 *               (1: the schema fixed for the job; a later re-discovery would count up),
 *               contributors (JSON array of agent names whose vocabulary went in),
 *               refused (JSON array of {agent, category}), ts (ms since the epoch))
 * A row is written once per job (INSERT; a second one is FV_EDUP).
 *
 * Threading: the caller's (a fv_state_t belongs to one thread). Ownership: returned text is
 * the caller's (free()); JSON results are new references.
 */
#include "state-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

const char fv__state_schemas_sql[] = "CREATE TABLE IF NOT EXISTS job_schemas ("
                                     "  job TEXT PRIMARY KEY REFERENCES jobs(id),"
                                     "  spec TEXT NOT NULL,"
                                     "  sha256 TEXT NOT NULL,"
                                     "  version INTEGER NOT NULL CHECK (version >= 1),"
                                     "  contributors TEXT NOT NULL,"
                                     "  refused TEXT NOT NULL,"
                                     "  ts INTEGER NOT NULL);";

int fv_state_job_schema_set(fv_state_t *s, const char *job, const char *spec, const char *sha,
                            int64_t version, const char *contributors, const char *refused,
                            int64_t now_ms, fv_diag_t *d)
{
    int r;
    if ((r = fv__state_check_hex64("a resolved schema's job", job, d)) != 0 ||
        (r = fv__state_check_hex64("a resolved schema's sha256", sha, d)) != 0 ||
        (r = fv__state_check_text("a resolved spec", spec, FV_STATE_JSON_MAX, 0, d)) != 0 ||
        (r = fv__state_check_text("a resolved schema's contributors", contributors,
                                  FV_STATE_JSON_MAX, 0, d)) != 0 ||
        (r = fv__state_check_text("a resolved schema's refusals", refused, FV_STATE_JSON_MAX, 0,
                                  d)) != 0)
        return r;
    if (version < 1)
        return fv_diag_set(d, FV_EINVAL, "a resolved schema: version %" PRId64 " must be >= 1",
                           version);
    int ext = 0;
    r = fv__state_exec_bound(s,
                             "INSERT INTO job_schemas (job, spec, sha256, version, contributors, "
                             "refused, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             "storing a resolved schema", &ext, d, "tttitti", job, spec, sha,
                             version, contributors, refused, now_ms);
    if (r != 0 && ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        return fv_diag_set(d, FV_EDUP, "job %.16s already has a resolved schema", job);
    if (r != 0 && ext == SQLITE_CONSTRAINT_FOREIGNKEY)
        return fv_diag_set(d, -ENOENT, "job %.16s is unknown", job);
    return r;
}

int fv_state_job_schema_spec(fv_state_t *s, const char *job, char **ret_spec, fv_diag_t *d)
{
    static const char what[] = "reading a resolved spec";
    sqlite3_stmt *st = NULL;
    int r = fv__state_query_row(s, &st, "SELECT spec FROM job_schemas WHERE job = ?1", what, d, "t",
                                job);
    if (r == 1) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        char *copy = t != NULL ? strdup(t) : NULL;
        if (copy == NULL)
            r = t == NULL ? fv__state_db_corrupt(s, what, "the spec is NULL", d)
                          : fv__state_oom(s, what, d);
        else {
            *ret_spec = copy;
            r = 0;
        }
    } else if (r == 0)
        r = -ENOENT;
    sqlite3_finalize(st);
    return r;
}

int fv_state_job_schema_json(fv_state_t *s, const char *job, json_t **ret, fv_diag_t *d)
{
    static const char what[] = "reading a resolved schema";
    sqlite3_stmt *st = NULL;
    int r = fv__state_query_row(
        s, &st, "SELECT sha256, version, contributors, refused FROM job_schemas WHERE job = ?1",
        what, d, "t", job);
    if (r == 1) {
        json_error_t je;
        const char *sha = (const char *)sqlite3_column_text(st, 0);
        const char *ct = (const char *)sqlite3_column_text(st, 2);
        const char *rt = (const char *)sqlite3_column_text(st, 3);
        json_t *contrib = ct != NULL ? json_loads(ct, 0, &je) : NULL;
        json_t *refused = rt != NULL ? json_loads(rt, 0, &je) : NULL;
        json_t *o = sha != NULL && json_is_array(contrib) && json_is_array(refused)
                        ? json_pack("{s:s,s:I,s:O,s:O,s:b}", "sha256", sha, "version",
                                    (json_int_t)sqlite3_column_int64(st, 1), "contributors",
                                    contrib, "refused", refused, "open", 0)
                        : NULL;
        json_decref(contrib);
        json_decref(refused);
        if (o == NULL)
            r = fv__state_db_corrupt(s, what, "a stored resolved schema is malformed", d);
        else {
            *ret = o;
            r = 0;
        }
    } else if (r == 0)
        r = -ENOENT;
    sqlite3_finalize(st);
    return r;
}
