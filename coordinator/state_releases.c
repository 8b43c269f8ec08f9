/* state_releases.c - the durable state store's model releases (fv_state.h, "releases").
 *
 * Purpose: every release the operator made (fedvault model release), with the exact
 * signed envelope the agents were sent, so a restarted coordinator pushes the same bytes
 * and never reuses a release counter.
 *
 * Table (created by fv_state_open with CREATE TABLE IF NOT EXISTS on any schema version
 * 2 database: a table of its own, which a fedvault that does not know it ignores, so the
 * schema version is unchanged):
 *   releases(release INTEGER PRIMARY KEY AUTOINCREMENT (the manifest's counter: never
 *            reused, also after the newest row were deleted), label CHECK IN (stable,
 *            canary, backup), version (the model version released; no foreign key: a
 *            release outlives nothing, versions are never deleted), sha256, envelope (the
 *            signed JSON text, as sent), ts (ms since the epoch))
 * The counter a new release takes is read (fv_state_release_next) before the manifest is
 * signed and then inserted explicitly; the caller does both inside one transaction on the
 * one thread that owns the fv_state_t, so nothing comes between them.
 *
 * Threading: the caller's (a fv_state_t belongs to one thread). Ownership: the envelope
 * text returned by fv_state_release_latest is the caller's (free()); JSON results are new
 * references.
 */
#include "state-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

const char fv__state_releases_sql[] =
    "CREATE TABLE IF NOT EXISTS releases ("
    "  release INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  label TEXT NOT NULL CHECK (label IN ('stable','canary','backup')),"
    "  version INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL,"
    "  envelope TEXT NOT NULL,"
    "  ts INTEGER NOT NULL);";

static bool label_ok(const char *l)
{
    return l != NULL &&
           (strcmp(l, "stable") == 0 || strcmp(l, "canary") == 0 || strcmp(l, "backup") == 0);
}

int fv_state_release_next(fv_state_t *s, int64_t *ret, fv_diag_t *d)
{
    static const char what[] = "reading the release counter";
    sqlite3_stmt *st = NULL;
    int r = fv__state_query_row(
        s, &st,
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'releases'), 0), "
        "coalesce((SELECT max(release) FROM releases), 0))",
        what, d, "");
    if (r == 1) {
        int64_t v = sqlite3_column_int64(st, 0);
        if (v < 0 || v == INT64_MAX)
            r = fv__state_db_corrupt(s, what, "the counter is out of range", d);
        else {
            *ret = v + 1;
            r = 0;
        }
    } else if (r == 0)
        r = fv__state_db_no_result(s, what, d);
    sqlite3_finalize(st);
    return r;
}

int fv_state_release_add(fv_state_t *s, int64_t release, const char *label, int64_t version,
                         const char *sha, const char *envelope, int64_t now_ms, fv_diag_t *d)
{
    int r;
    if (release < 1 || version < 1)
        return fv_diag_set(d, FV_EINVAL,
                           "a release: counter %" PRId64 " / version %" PRId64 " must be >= 1",
                           release, version);
    if (!label_ok(label))
        return fv_diag_set(d, FV_EINVAL, "a release: label must be stable, canary or backup");
    if ((r = fv__state_check_hex64("a release's sha256", sha, d)) != 0 ||
        (r = fv__state_check_text("a release's envelope", envelope, FV_STATE_JSON_MAX, 0, d)) != 0)
        return r;
    int ext = 0;
    r = fv__state_exec_bound(s,
                             "INSERT INTO releases (release, label, version, sha256, envelope, "
                             "ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                             "adding a release", &ext, d, "ititti", release, label, version, sha,
                             envelope, now_ms);
    return r;
}

int fv_state_release_latest(fv_state_t *s, const char *label, int64_t *ret_release,
                            char ret_sha[65], char **ret_envelope, fv_diag_t *d)
{
    static const char what[] = "reading the latest release";
    if (!label_ok(label))
        return fv_diag_set(d, FV_EINVAL, "a release: label must be stable, canary or backup");
    sqlite3_stmt *st = NULL;
    int r = fv__state_query_row(s, &st,
                                "SELECT release, sha256, envelope FROM releases WHERE label = ?1 "
                                "ORDER BY release DESC LIMIT 1",
                                what, d, "t", label);
    if (r == 0) {
        r = -ENOENT; /* UV_ENOENT: no release of this label */
        goto out;
    }
    if (r < 0)
        goto out;
    const char *sha = (const char *)sqlite3_column_text(st, 1);
    const char *env = (const char *)sqlite3_column_text(st, 2);
    if (!fv__state_is_hex64(sha) || env == NULL) {
        r = fv__state_db_corrupt(s, what, "a release's sha256 or envelope is malformed", d);
        goto out;
    }
    char *copy = strdup(env);
    if (copy == NULL) {
        r = fv__state_oom(s, what, d);
        goto out;
    }
    *ret_release = sqlite3_column_int64(st, 0);
    memcpy(ret_sha, sha, 65);
    *ret_envelope = copy;
    r = 0;
out:
    sqlite3_finalize(st);
    return r;
}

int fv_state_release_has_sha(fv_state_t *s, const char *sha, bool *ret, fv_diag_t *d)
{
    if (!fv__state_is_hex64(sha)) {
        *ret = false;
        return 0;
    }
    sqlite3_stmt *st = NULL;
    int r = fv__state_query_row(s, &st, "SELECT 1 FROM releases WHERE sha256 = ?1 LIMIT 1",
                                "looking up a released model", d, "t", sha);
    sqlite3_finalize(st);
    if (r < 0)
        return r;
    *ret = r == 1;
    return 0;
}

int fv_state_releases_json(fv_state_t *s, json_t **ret, fv_diag_t *d)
{
    static const char what[] = "listing the releases";
    sqlite3_stmt *st = NULL;
    json_t *arr = json_array();
    if (arr == NULL)
        return fv__state_oom(s, what, d);
    int r = fv__state_prep(s,
                           "SELECT release, label, version, sha256, ts FROM releases ORDER BY "
                           "release",
                           &st, what, d);
    int rc = SQLITE_DONE;
    while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *label = (const char *)sqlite3_column_text(st, 1);
        const char *sha = (const char *)sqlite3_column_text(st, 3);
        if (label == NULL || !fv__state_is_hex64(sha)) {
            r = fv__state_db_corrupt(s, what, "a release's label or sha256 is malformed", d);
            break;
        }
        json_t *o =
            json_pack("{s:I,s:s,s:I,s:s,s:I}", "release", (json_int_t)sqlite3_column_int64(st, 0),
                      "label", label, "version", (json_int_t)sqlite3_column_int64(st, 2), "sha256",
                      sha, "ts", (json_int_t)sqlite3_column_int64(st, 4));
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            r = fv__state_oom(s, what, d);
            break;
        }
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = fv__state_db_fail(s, rc, what, d);
    sqlite3_finalize(st);
    if (r != 0) {
        json_decref(arr);
        return r;
    }
    *ret = arr;
    return 0;
}
