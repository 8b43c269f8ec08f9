/* state_json.c - the durable state store's JSON views (fv_state.h), shown by the admin port:
 * the agents, the jobs, a job with its rounds and agents, the model versions, and a
 * version with its lineage (the job's spec, the rounds up to it and its agents' data
 * fingerprints). A job and a version's lineage also show the job's differential privacy
 * ("privacy", from its spec: privacy_view), null without it.
 *
 * Each view is one or a few constant queries whose rows become JSON objects: most through
 * a column table (struct col_member: a key and a reader per result column), the rest
 * through a row_json_fn of their own; rows_append collects them into an array. Times
 * become RFC 3339 UTC text with milliseconds, SQL NULL becomes JSON null, and the JSON
 * text columns (spec, cohort, contributors, metrics, report) are parsed back: one that
 * does not parse is FV_ECORRUPT, as only this store writes them, after validating them.
 * Text that cannot be a JSON string (not UTF-8) or no memory is FV_ENOMEM (json_fail).
 *
 * Threading: a fv_state_t belongs to one thread. Ownership: every view returns a new
 * reference the caller releases with json_decref.
 */
#include "state-int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

/* ---- rows as JSON ------------------------------------------------------------------- */

static int json_fail(const fv_state_t *s, const char *what, fv_diag_t *d)
{
    return fv_diag_set(d, FV_ENOMEM,
                       "%s: %s: cannot build JSON (out of memory, or text that is not UTF-8)",
                       s->db_path, what);
}

/* Builds the JSON object of the row st is on into *ret (a new reference). Returns 0, or a
 * negative error with d set; returning 0 with *ret NULL means the object could not be
 * built (out of memory, or text that is not UTF-8) and the caller reports json_fail. */
typedef int row_json_fn(fv_state_t *s, sqlite3_stmt *st, const void *ctx, const char *what,
                        json_t **ret, fv_diag_t *d);

/* Appends row's object for every row of sql (bound as fv__state_prep_bindv) to the array
 * arr. */
static int rows_append(fv_state_t *s, json_t *arr, row_json_fn *row, const void *ctx,
                       const char *sql, const char *what, fv_diag_t *d, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    int r, rc;
    va_list ap;
    va_start(ap, types);
    r = fv__state_prep_bindv(s, &st, sql, what, d, types, ap);
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
    r = rc == SQLITE_DONE ? 0 : fv__state_db_fail(s, rc, what, d);
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

/* "2026-11-28T23:40:00.123Z" for ms since the epoch (negative times count backwards);
 * state-int.h. */
json_t *fv__state_time_json(int64_t ms)
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
    return fv__state_time_json((int64_t)sqlite3_column_int64(st, i));
}

/* A JSON text column parsed (json_null() for SQL NULL). FV_ECORRUPT if it does not
 * parse: only this store writes these columns, after validating them (state_jobs.c). */
static int col_json(const fv_state_t *s, sqlite3_stmt *st, int i, const char *what, json_t **ret,
                    fv_diag_t *d)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        *ret = json_null();
        return 0;
    }
    const char *v = (const char *)sqlite3_column_text(st, i);
    if (v == NULL)
        return fv__state_oom(s, what, d);
    json_error_t je;
    json_t *j = json_loadb(v, (size_t)sqlite3_column_bytes(st, i), 0, &je);
    if (j == NULL)
        return fv__state_db_corrupt(s, what, "a stored JSON column does not parse", d);
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

/* ---- agents ------------------------------------------------------------------------- */

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

/* The columns of the job views, in the order of job_cols. */
#define JOB_COLS                                                                                   \
    "j.id, j.name, j.status, j.submitted_by, j.submitted, j.started, j.finished, "                 \
    "(SELECT count(*) FROM rounds r WHERE r.job = j.id AND r.kind = 'train' "                      \
    "AND r.status = 'ok'), "                                                                       \
    "(SELECT count(*) FROM rounds r WHERE r.job = j.id AND r.kind = 'distill' "                    \
    "AND r.status = 'ok'), "                                                                       \
    "(SELECT count(*) FROM rounds r WHERE r.job = j.id AND r.status <> 'ok'), "                    \
    "j.final_version, j.student_version, j.why, "                                                  \
    "(SELECT v.round FROM versions v WHERE v.version = j.final_version)"
#define JOB_NCOLS 14

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
                                             {"final_round", col_int},
                                             {NULL, NULL}};

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
/* The job's "schema" object: the resolved schema's {sha256, version, contributors,
 * refused, open: false} when schema discovery fixed one (state_schemas.c); else {sha256:
 * null, version: null, contributors: [], open} with open true when the submitted spec
 * still has an open column ("categories": "open" or "type": "open"). */
static bool spec_schema_open(const json_t *spec)
{
    const json_t *cols = json_object_get(json_object_get(spec, "schema"), "columns");
    size_t i;
    const json_t *c;
    json_array_foreach(cols, i, c)
    {
        const char *cat = json_string_value(json_object_get(c, "categories"));
        const char *typ = json_string_value(json_object_get(c, "type"));
        if ((cat != NULL && strcmp(cat, "open") == 0) || (typ != NULL && strcmp(typ, "open") == 0))
            return true;
    }
    return false;
}

static int job_schema_obj(fv_state_t *s, const char *id, const json_t *spec, json_t **ret,
                          fv_diag_t *d)
{
    int r = fv_state_job_schema_json(s, id, ret, d);
    if (r != -ENOENT)
        return r;
    *ret = json_pack("{s:n,s:n,s:[],s:b}", "sha256", "version", "contributors", "open",
                     spec_schema_open(spec));
    return *ret != NULL ? 0 : fv__state_oom(s, "reading a job's schema", d);
}

/* The job's differential privacy for a view, from its spec's "privacy" section (the
 * canonical form holds every key; an unset one, 0 there, shows as null): {mode, epsilon,
 * noise_multiplier, delta, clip, sample_rate, min_honest, outside_budget}, only keys[]
 * of them when keys is not NULL; JSON null without the section. NULL: no memory. */
static json_t *privacy_view(const json_t *spec, const char *const *keys)
{
    static const char *const all[] = {"mode",       "epsilon",        "noise_multiplier",
                                      "delta",      "clip",           "sample_rate",
                                      "min_honest", "outside_budget", NULL};
    const json_t *p = json_object_get(spec, "privacy");
    json_t *o;
    if (!json_is_object(p))
        return json_null();
    if ((o = json_object()) == NULL)
        return NULL;
    for (const char *const *k = keys != NULL ? keys : all; *k != NULL; k++) {
        json_t *v = json_object_get(p, *k);
        bool unset = v == NULL || (json_is_number(v) && json_number_value(v) == 0);
        if (json_object_set_new(o, *k, unset ? json_null() : json_deep_copy(v)) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

int fv_state_job_json(fv_state_t *s, const char *id, json_t **ret, fv_diag_t *d)
{
    static const char what[] = "reading a job";
    sqlite3_stmt *st = NULL;
    json_t *o = NULL, *spec = NULL, *rounds = NULL, *agents = NULL;
    int r;

    if ((r = fv__state_check_hex64("job id", id, d)) != 0)
        return r;
    if ((r = fv__state_query_row(s, &st, "SELECT " JOB_COLS ", j.spec FROM jobs j WHERE j.id = ?1",
                                 what, d, "t", id)) < 0)
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
    json_t *cohort = NULL; /* each agent's status (state_cohort.c) */
    if ((r = fv_state_job_cohort_json(s, id, &cohort, d)) != 0)
        goto out;
    json_t *schema = NULL;
    if ((r = job_schema_obj(s, id, spec, &schema, d)) != 0) {
        json_decref(cohort);
        goto out;
    }
    bool ok = jset(o, "schema", schema);
    ok = jset(o, "privacy", privacy_view(spec, NULL)) && ok;
    ok = jset(o, "spec", spec) && ok;
    ok = jset(o, "rounds", rounds) && ok;
    ok = jset(o, "agents", agents) && ok;
    ok = jset(o, "cohort", cohort) && ok;
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

/* ---- model versions ----------------------------------------------------------------- */

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
    if (!fv__state_is_string_array(cohort)) {
        json_decref(cohort);
        json_decref(contrib);
        return fv__state_db_corrupt(s, what, "a stored cohort is not an array of names", d);
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
        r = fv__state_oom(s, what, d);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(names, key, v) keys[k++] = key;
    qsort(keys, n, sizeof *keys, cmp_str);

    if ((r = fv__state_prep(
             s, "SELECT data_sha256, rows FROM job_agents WHERE job = ?1 AND agent = ?2", &st, what,
             d)) != 0)
        goto out;
    for (i = 0; i < n; i++) {
        sqlite3_reset(st); /* reports the previous step's result, handled already */
        if ((rc = fv__state_bind_all(st, "tt", job, keys[i])) != SQLITE_OK) {
            r = fv__state_db_fail(s, rc, what, d);
            goto out;
        }
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            r = fv__state_db_fail(s, rc, what, d);
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

    if ((r = fv__state_query_row(s, &st,
                                 "SELECT " VERSION_COLS ", report FROM versions WHERE version = ?1",
                                 what, d, "i", version)) < 0)
        goto out;
    if (r == 0) {
        r = fv__state_no_version(s, version, d);
        goto out;
    }
    const char *j = (const char *)sqlite3_column_text(st, 2);
    if (!fv__state_is_hex64(j)) {
        r = fv__state_db_corrupt(s, what, "a version's job is not 64 hex digits", d);
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
        r = fv__state_db_corrupt(s, what, "a stored report is not a JSON object", d);
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
    if ((r = fv__state_query_row(s, &st, "SELECT spec FROM jobs WHERE id = ?1", what, d, "t",
                                 job)) != 1) {
        if (r == 0)
            r = fv__state_db_corrupt(s, what, "a version names a job that does not exist", d);
        goto out;
    }
    if ((r = col_json(s, st, 0, what, &spec, d)) != 0)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    /* the schema the model was trained on: the resolved one's sha256 and version when
     * schema discovery fixed it (the hyperparameters are then the submitted spec) */
    {
        json_t *sch = NULL;
        r = fv_state_job_schema_json(s, job, &sch, d);
        if (r == 0) {
            json_t *ls = json_pack("{s:O,s:O,s:O}", "sha256", json_object_get(sch, "sha256"),
                                   "version", json_object_get(sch, "version"), "contributors",
                                   json_object_get(sch, "contributors"));
            json_decref(sch);
            if (!jset(lin, "schema", ls)) {
                r = json_fail(s, what, d);
                goto out;
            }
        } else if (r != -ENOENT)
            goto out;
    }

    if ((r = rows_append(s, rounds, lineage_round_row, NULL,
                         "SELECT round, kind, cohort, contributors FROM rounds WHERE job = ?1 "
                         "AND status = 'ok' AND round <= ?2 ORDER BY round, attempt",
                         "reading a version's lineage", d, "ti", job, round)) != 0 ||
        (r = lineage_agents(s, job, rounds, agents, d)) != 0)
        goto out;
    {
        static const char *const keys[] = {"mode", "epsilon", "noise_multiplier", "delta", NULL};
        ok = jset(lin, "privacy", privacy_view(spec, keys));
    }
    ok = jset(lin, "hyperparameters", spec) && ok;
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
