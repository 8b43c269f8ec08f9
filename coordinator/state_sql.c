/* state_sql.c - the durable state store's shared helpers (state-int.h): statements, the
 * sentences of failures, the checks of the API's arguments.
 *
 * SQL: every statement is a constant string with bound parameters; values never become
 * SQL text. Statements are prepared per call (the coordinator makes a few calls per round,
 * so a statement cache would buy nothing measurable), through three helpers:
 * fv__state_exec_bound (a write), fv__state_query_row (at most one row) and rows_append
 * (state_json.c: a JSON array of rows, each built by a row_json_fn, most by a column
 * table). Every sqlite3 return is checked and becomes FV_EIO / FV_ECORRUPT / FV_ENOMEM
 * with a sentence naming DIR/state.db and SQLite's message. Rows read back are checked as
 * hostile where they feed memory sizes or fixed buffers (blob lengths, sha lengths, status
 * length): that is done where they are read.
 *
 * Arguments: text is valid UTF-8 under a cap, shas are 64 lowercase hex digits, uint64
 * values fit an SQLite INTEGER (at most INT64_MAX), JSON text parses under
 * FV_STATE_JSON_MAX; the API checks them before any statement runs.
 *
 * Threading: the caller's (a fv_state_t belongs to one thread). Ownership: nothing here
 * keeps a pointer; text and blobs bound are SQLITE_STATIC, so they must outlive the
 * statement's step.
 */
#define _GNU_SOURCE /* strnlen */
#include "state-int.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

/* ---- failures as sentences ---------------------------------------------------------- */

/* A database failure: rc is the failing call's result; sqlite3_errmsg still describes it
 * because nothing else ran on the connection since. */
int fv__state_db_fail(const fv_state_t *s, int rc, const char *what, fv_diag_t *d)
{
    int prim = rc & 0xff;
    int err = prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB ? FV_ECORRUPT
              : prim == SQLITE_NOMEM                          ? FV_ENOMEM
                                                              : FV_EIO;
    return fv_diag_set(d, err, "%s: %s: %s", s->db_path, what, sqlite3_errmsg(s->db));
}

/* A row this code cannot have written. */
int fv__state_db_corrupt(const fv_state_t *s, const char *what, const char *detail, fv_diag_t *d)
{
    return fv_diag_set(d, FV_ECORRUPT, "%s: %s: %s (the database was changed by something else)",
                       s->db_path, what, detail);
}

/* A query that always answers one row (count(*), a PRAGMA) answered none. */
int fv__state_db_no_result(const fv_state_t *s, const char *what, fv_diag_t *d)
{
    return fv_diag_set(d, FV_EIO, "%s: %s: no result", s->db_path, what);
}

int fv__state_oom(const fv_state_t *s, const char *what, fv_diag_t *d)
{
    return fv_diag_set(d, FV_ENOMEM, "%s: %s: out of memory", s->db_path, what);
}

/* A failed system call on path: r is the negative errno (read errno before anything else
 * runs: `fv__state_sys_fail(-errno, ...)`). The sentence is "PATH: DOING: strerror". */
int fv__state_sys_fail(int r, const char *path, const char *doing, fv_diag_t *d)
{
    return fv_diag_set(d, r, "%s: %s: %s", path, doing, strerror(-r));
}

/* ---- statements --------------------------------------------------------------------- */

int fv__state_prep(fv_state_t *s, const char *sql, sqlite3_stmt **st, const char *what,
                   fv_diag_t *d)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : fv__state_db_fail(s, rc, what, d);
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

int fv__state_bind_all(sqlite3_stmt *st, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = bind_allv(st, types, ap);
    va_end(ap);
    return rc;
}

/* Prepares sql into *st and binds it as bind_allv. The caller finalizes *st, also when
 * this fails. */
int fv__state_prep_bindv(fv_state_t *s, sqlite3_stmt **st, const char *sql, const char *what,
                         fv_diag_t *d, const char *types, va_list ap)
{
    int r = fv__state_prep(s, sql, st, what, d);
    if (r != 0)
        return r;
    int rc = bind_allv(*st, types, ap);
    return rc == SQLITE_OK ? 0 : fv__state_db_fail(s, rc, what, d);
}

/* Runs a prepared write statement to completion. *ret_ext (may be NULL) gets SQLite's
 * extended code on failure, so callers can tell a constraint from an I/O error. */
int fv__state_step_done(fv_state_t *s, sqlite3_stmt *st, const char *what, int *ret_ext,
                        fv_diag_t *d)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (ret_ext != NULL)
        *ret_ext = sqlite3_extended_errcode(s->db);
    return fv__state_db_fail(s, rc, what, d);
}

/* Runs a write statement that returns no rows: prepare, bind (as bind_allv), step to
 * completion, finalize. *ret_ext as for fv__state_step_done. sqlite3_changes and
 * sqlite3_last_insert_rowid still describe it afterwards. */
int fv__state_exec_bound(fv_state_t *s, const char *sql, const char *what, int *ret_ext,
                         fv_diag_t *d, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;
    va_start(ap, types);
    int r = fv__state_prep_bindv(s, &st, sql, what, d, types, ap);
    va_end(ap);
    if (r == 0)
        r = fv__state_step_done(s, st, what, ret_ext, d);
    sqlite3_finalize(st); /* its result repeats the step's, handled above */
    return r;
}

/* Prepares sql into *st, binds it (as bind_allv) and steps once: 1 with a row ready to
 * read, 0 if there is no row (d untouched: the caller says what that means), or a
 * negative error. The caller finalizes *st in every case. */
int fv__state_query_row(fv_state_t *s, sqlite3_stmt **st, const char *sql, const char *what,
                        fv_diag_t *d, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = fv__state_prep_bindv(s, st, sql, what, d, types, ap);
    va_end(ap);
    if (r != 0)
        return r;
    int rc = sqlite3_step(*st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : fv__state_db_fail(s, rc, what, d);
}

/* ---- the API's arguments ------------------------------------------------------------ */

bool fv__state_is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Exactly 64 lowercase hex digits. Reads at most 65 bytes of s. */
bool fv__state_is_hex64(const char *s)
{
    if (s == NULL)
        return false;
    for (int i = 0; i < 64; i++)
        if (!fv__state_is_lower_hex(s[i]))
            return false;
    return s[64] == '\0';
}

int fv__state_check_hex64(const char *what, const char *v, fv_diag_t *d)
{
    if (fv__state_is_hex64(v))
        return 0;
    return fv_diag_set(d, FV_EINVAL, "%s is %s, not 64 lowercase hex digits", what,
                       v == NULL ? "missing" : "malformed");
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

/* A text argument: valid UTF-8 of at most max bytes; NULL and "" only if flags allow. */
int fv__state_check_text(const char *what, const char *v, size_t max, int flags, fv_diag_t *d)
{
    if (v == NULL)
        return (flags & FV__STATE_TEXT_NULL_OK) ? 0
                                                : fv_diag_set(d, FV_EINVAL, "%s is missing", what);
    size_t n = strnlen(v, max + 1);
    if (n == 0 && !(flags & FV__STATE_TEXT_EMPTY_OK))
        return fv_diag_set(d, FV_EINVAL, "%s is empty", what);
    if (n > max)
        return fv_diag_set(d, FV_ETOOBIG, "%s is longer than %zu bytes", what, max);
    if (!utf8_valid((const unsigned char *)v, n))
        return fv_diag_set(d, FV_EINVAL, "%s is not valid UTF-8", what);
    return 0;
}

int fv__state_check_u64(const char *what, uint64_t v, fv_diag_t *d)
{
    if (v <= (uint64_t)INT64_MAX)
        return 0;
    return fv_diag_set(d, FV_ERANGE, "%s is %" PRIu64 ", over the largest storable %" PRId64, what,
                       v, INT64_MAX);
}

/* Parses JSON text given to the API: FV_ETOOBIG over the cap, FV_EPARSE if it does not
 * parse. *ret is a new reference. */
int fv__state_parse_json_arg(const char *what, const char *text, json_t **ret, fv_diag_t *d)
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
bool fv__state_is_string_array(const json_t *a)
{
    if (!json_is_array(a))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) if (!json_is_string(v)) return false;
    return true;
}

/* Validates a JSON argument and re-encodes it compactly into *ret (malloc'd; NULL for a
 * NULL argument when nullable). shape: 'a' array of strings, 'o' object. owner starts the
 * sentences ("round", "model version 7"). */
int fv__state_json_arg_compact(const char *owner, const char *what, const char *text, char shape,
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
    if ((r = fv__state_parse_json_arg(what, text, &j, d)) != 0)
        return r;
    bool ok = shape == 'a' ? fv__state_is_string_array(j) : json_is_object(j);
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
