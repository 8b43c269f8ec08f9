/* fv_score_json.h - the scoring request's decoder: rows given as JSON objects keyed by
 * column name, decoded against a model's schema into a dataset, with an error per row.
 *
 * The request body (fedvault-serve's POST /v1/score; also usable offline):
 *   {"rows": [ {"Income": 52000, "Purpose": "car", ...}, ... ],   (1..max_rows objects)
 *    "key": "customer-123",   (optional: the routing key for sticky canary routing,
 *                              1..FV_SCORE_KEY_MAX bytes)
 *    "explain": true}         (optional: reason codes wanted)
 * or a single row given as the "row" member instead of "rows" (exactly one of the two).
 *
 * Decoding is in two steps, so the server parses the body once and binds it to the
 * schema of whichever model the request is routed to (stable, canary, shadow):
 *   fv_score_json_parse   the body as hostile bytes: at most max_bytes (FV_ETOOBIG), JSON
 *                         (FV_EPARSE "line L, column C: ..."), the top-level shape above
 *                         (FV_EPROTO naming the member: "'rows' must be an array of 1..N
 *                         objects", "unknown member 'foo'"), nesting depth bounded
 *                         (FV_SCORE_MAX_DEPTH, FV_EPARSE). Duplicate member names are a
 *                         parse error. A number past a double's range ("1e400") is refused
 *                         by jansson at parse: FV_EPARSE for the whole body ("line 1,
 *                         column 22: real number overflow"), not a row error; integers
 *                         are read as doubles (as a CSV cell: 52000 = 52000.0).
 *   fv_score_json_bind    each row against the schema, as fv_dataset's CSV decoder does
 *                         for a cell: numeric columns take a JSON number (or null =
 *                         missing; a string is "column 'X': expected a number, got a
 *                         string"); a number must be finite and fit a double ("column
 *                         'Income': non-finite value"); categorical columns take a string
 *                         (or null = missing; the strings "" and "NA" are missing too, as
 *                         in a CSV cell), under the schema's unknown policy; ignored
 *                         columns may be present or absent (any type, not read); the
 *                         target may be present (its value is not read) or absent; a
 *                         member that is not a schema column is "unknown column 'X'"; a
 *                         non-ignored feature column that is absent is "missing column
 *                         'X'" (a member name over FV_SCORE_NAME_MAX bytes is unknown
 *                         without a lookup). A bad row is an error of that row only: the
 *                         request goes on with the others. A row's first problem is its
 *                         error: unknown members in the row's order, then the schema's
 *                         columns in schema order.
 *
 * Non-finite values after preprocessing (a finite input that overflows float32 once
 * scaled) are caught at scoring (fv_model_predict_ws_rows in fv_model.h), also per row.
 *
 * Threading: no shared state; a parsed request is read-only after parse, so several
 * threads may bind it at once. No logging.
 */
#ifndef FV_SCORE_JSON_H
#define FV_SCORE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_dataset.h"
#include "fv_error.h"
#include "fv_schema.h"

#define FV_SCORE_KEY_MAX 256
#define FV_SCORE_ROW_ERR_MAX 256 /* bytes of one row's error sentence, NUL included */
#define FV_SCORE_MAX_DEPTH 32    /* nesting levels of '[' and '{' in a body, at most */
#define FV_SCORE_NAME_MAX 1024   /* a longer member name in a row is an unknown column */

typedef struct fv_score_json fv_score_json_t;

typedef struct fv_score_json_opts {
    size_t max_bytes; /* body bytes, at most (the server's body cap) */
    size_t max_rows;  /* rows per request, at most */
} fv_score_json_opts_t;

/* Parses body (len bytes, borrowed only during the call). 0 with *ret (the caller's,
 * fv_score_json_free), or an error as above with a sentence. */
int fv_score_json_parse(const char *body, size_t len, const fv_score_json_opts_t *o,
                        fv_score_json_t **ret, fv_diag_t *d);
void fv_score_json_free(fv_score_json_t *r); /* NULL-safe */

size_t fv_score_json_n_rows(const fv_score_json_t *r);
/* The routing key, or NULL when the request has none (borrowed, NUL-terminated). */
const char *fv_score_json_key(const fv_score_json_t *r, size_t *ret_len);
bool fv_score_json_explain(const fv_score_json_t *r);

/* One request bound to one schema. ds holds the good rows only (ds.n_rows of them, cells
 * in schema column order, labels -1, line[i] = the request row number, 0-based); row_ok[j]
 * says whether request row j decoded, and row_err + j * FV_SCORE_ROW_ERR_MAX holds its
 * sentence when it did not ("row 3: column 'Income': expected a number, got a string").
 * ds_row[j] is the dataset row of request row j (SIZE_MAX for a bad row). */
typedef struct fv_score_batch {
    fv_dataset_t ds;
    size_t n_req;
    bool *row_ok;
    size_t *ds_row;
    char *row_err;
} fv_score_batch_t;

/* Binds r to schema s (borrowed: must outlive the batch). 0 with *ret (the caller's,
 * fv_score_batch_free) even when every row is bad (the caller answers 422 then); FV_ENOMEM
 * only. */
int fv_score_json_bind(const fv_score_json_t *r, const fv_schema_t *s, fv_score_batch_t **ret);
void fv_score_batch_free(fv_score_batch_t *b); /* NULL-safe */

#endif
