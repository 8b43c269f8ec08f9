/* score_json.c - the scoring request's JSON decoder (fv_score_json.h).
 *
 * Purpose: turn a hostile request body into rows a model can score, with one sentence per
 * bad row, so a bad row costs that row only and a bad body costs one 4xx naming the
 * problem. fedvault-serve parses a body once on its loop and binds it on a worker, once per
 * model the request is routed to (stable, canary, shadow: each has its own schema).
 *
 * Parse (fv_score_json_parse), in this order, each step bounded before the next:
 *   1. size: len > max_bytes is FV_ETOOBIG before a byte is read;
 *   2. depth: a lexical pre-scan counts '[' and '{' outside strings; more than
 *      FV_SCORE_MAX_DEPTH levels is FV_EPARSE "line L, column C: ...". jansson has its own
 *      limit (2048 in 2.14) but recurses to it; ours keeps the stack small and the answer
 *      cheap. The scan only needs to be conservative: whatever it misreads in invalid
 *      JSON, jansson refuses next;
 *   3. JSON: json_loadb with JSON_REJECT_DUPLICATES (two "Income" in a row would make
 *      the value depend on the parser) and JSON_DECODE_INT_AS_REAL (every number is a
 *      double parsed by strtod, as a CSV cell is: 52000 and 52000.0 decode alike, and a
 *      20-digit integer is a number, not an error). jansson refuses numbers past a
 *      double's range ("1e400": "real number overflow") and NaN/Infinity are not JSON, so
 *      a non-finite number is a parse error of the whole body naming its line and column
 *      (a per-row answer would need the row of a byte offset jansson does not give); a
 *      bound row still checks isfinite, for any other source of a json_t;
 *   4. shape: an object with exactly one of "rows" (1..max_rows objects) and "row" (an
 *      object), optional "key" (1..FV_SCORE_KEY_MAX bytes) and "explain" (a boolean);
 *      anything else FV_EPROTO naming the member.
 * The parsed request keeps jansson's tree (owned) and an array of row pointers into it.
 *
 * Bind (fv_score_json_bind), row by row, the first problem of a row is its error:
 *   - members in the row's order: a name that is not a schema column (or longer than
 *     FV_SCORE_NAME_MAX bytes, which no lookup is spent on) is "unknown column 'X'";
 *   - then schema columns in schema order: a numeric or categorical column that is absent
 *     is "missing column 'X'"; numeric: null = missing (NaN), a number = its double, any
 *     other type "expected a number, got a string"; categorical: null = missing, a string
 *     decoded by fv__dataset_cat_cell (dataset.c: the CSV decoder's own rule, so "" and
 *     "NA" are missing as in a CSV cell, and unseen values follow the schema's unknown
 *     policy with the CSV decoder's words), any other type "expected a string";
 *     ignored and target columns: not read (absent, or any type).
 *   Sentences are "row J: column 'X': ..." (J 0-based, the request's numbering), cut to
 *   FV_SCORE_ROW_ERR_MAX bytes; names and values quoted with fv__msg_str (escaped, cut).
 *
 * Memory: a batch holds n_req x n_cols doubles (good rows only are filled) and
 * n_req x FV_SCORE_ROW_ERR_MAX bytes of sentences; n_req <= max_rows, so the caller's
 * max_rows (and the schema's FV_SCHEMA_MAX_COLUMNS) bound it. Products are checked.
 *
 * Threading: no global state; parse result read-only afterwards (bind only reads jansson
 * objects: json_object_get and iteration change no reference count), so several threads
 * may bind one request at once. No logging.
 */
#include "fv_score_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "model-int.h"

#define MSG_BUF FV__MSG_BUF

struct fv_score_json {
    json_t *root;  /* owned */
    json_t **rows; /* n_rows objects, borrowed from root (read only after parse) */
    size_t n_rows;
    const char *key; /* borrowed from root, NULL when absent */
    size_t key_len;
    bool explain;
};

/* ---- parse ------------------------------------------------------------------------- */

/* Depth pre-scan: 0, or FV_EPARSE with the position of the first bracket past the cap. */
static int check_depth(const char *body, size_t len, fv_diag_t *d)
{
    size_t depth = 0, line = 1, col = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        col++;
        if (c == '\n') {
            line++;
            col = 0;
            continue;
        }
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > FV_SCORE_MAX_DEPTH)
                return fv_diag_set(d, FV_EPARSE,
                                   "line %zu, column %zu: nesting deeper than %d levels; "
                                   "expected rows of plain values",
                                   line, col, FV_SCORE_MAX_DEPTH);
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return 0;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
    default:
        return "null";
    }
}

void fv_score_json_free(fv_score_json_t *r)
{
    if (r == NULL)
        return;
    json_decref(r->root);
    free(r->rows);
    free(r);
}

/* The top-level members of an object root into r. 0 or FV_EPROTO / FV_ENOMEM with d set. */
static int parse_shape(fv_score_json_t *r, const fv_score_json_opts_t *o, fv_diag_t *d)
{
    json_t *rows = NULL, *row = NULL, *key = NULL, *explain = NULL;
    const char *name;
    json_t *v;
    char b1[MSG_BUF];

    if (!json_is_object(r->root))
        return fv_diag_set(d, FV_EPROTO,
                           "the body is %s; expected a JSON object with 'rows' (an array of "
                           "1..%zu objects) or 'row' (an object)",
                           type_name(r->root), o->max_rows);
    json_object_foreach(r->root, name, v)
    {
        if (strcmp(name, "rows") == 0)
            rows = v;
        else if (strcmp(name, "row") == 0)
            row = v;
        else if (strcmp(name, "key") == 0)
            key = v;
        else if (strcmp(name, "explain") == 0)
            explain = v;
        else
            return fv_diag_set(d, FV_EPROTO,
                               "unknown member '%s'; expected only 'rows' or 'row', 'key', "
                               "'explain'",
                               fv__msg_str(b1, sizeof b1, name));
    }
    if (rows != NULL && row != NULL)
        return fv_diag_set(d, FV_EPROTO, "both 'rows' and 'row'; expected exactly one of them");
    if (rows == NULL && row == NULL)
        return fv_diag_set(d, FV_EPROTO,
                           "'rows' (an array of 1..%zu objects) or 'row' (an object) is required",
                           o->max_rows);
    if (rows != NULL) {
        size_t n;
        if (!json_is_array(rows))
            return fv_diag_set(d, FV_EPROTO, "'rows' must be an array of 1..%zu objects, got %s",
                               o->max_rows, type_name(rows));
        n = json_array_size(rows);
        if (n == 0 || n > o->max_rows)
            return fv_diag_set(d, FV_EPROTO,
                               "'rows' must be an array of 1..%zu objects, got %zu rows",
                               o->max_rows, n);
        for (size_t i = 0; i < n; i++)
            if (!json_is_object(json_array_get(rows, i)))
                return fv_diag_set(d, FV_EPROTO,
                                   "'rows' must be an array of 1..%zu objects; rows[%zu] is %s",
                                   o->max_rows, i, type_name(json_array_get(rows, i)));
        r->rows = malloc(n * sizeof *r->rows);
        if (r->rows == NULL)
            return fv_diag_set(d, FV_ENOMEM, "out of memory for %zu rows", n);
        for (size_t i = 0; i < n; i++)
            r->rows[i] = json_array_get(rows, i);
        r->n_rows = n;
    } else {
        if (!json_is_object(row))
            return fv_diag_set(d, FV_EPROTO, "'row' must be an object, got %s", type_name(row));
        r->rows = malloc(sizeof *r->rows);
        if (r->rows == NULL)
            return fv_diag_set(d, FV_ENOMEM, "out of memory for one row");
        r->rows[0] = row;
        r->n_rows = 1;
    }
    if (key != NULL) {
        if (!json_is_string(key))
            return fv_diag_set(d, FV_EPROTO, "'key' must be a string of 1..%d bytes, got %s",
                               FV_SCORE_KEY_MAX, type_name(key));
        if (json_string_length(key) == 0 || json_string_length(key) > FV_SCORE_KEY_MAX)
            return fv_diag_set(d, FV_EPROTO, "'key' must be a string of 1..%d bytes, got %zu bytes",
                               FV_SCORE_KEY_MAX, json_string_length(key));
        r->key = json_string_value(key);
        r->key_len = json_string_length(key);
    }
    if (explain != NULL) {
        if (!json_is_boolean(explain))
            return fv_diag_set(d, FV_EPROTO, "'explain' must be true or false, got %s",
                               type_name(explain));
        r->explain = json_is_true(explain);
    }
    return 0;
}

int fv_score_json_parse(const char *body, size_t len, const fv_score_json_opts_t *o,
                        fv_score_json_t **ret, fv_diag_t *d)
{
    fv_score_json_t *r;
    json_error_t je;
    int e;

    if ((body == NULL && len > 0) || o == NULL || ret == NULL || o->max_rows == 0)
        return fv_diag_set(d, FV_EINVAL,
                           "fv_score_json_parse: body, options (max_rows >= 1) and ret are "
                           "required");
    if (len > o->max_bytes)
        return fv_diag_set(d, FV_ETOOBIG,
                           "the body is %zu bytes; expected at most %zu bytes (split the rows "
                           "into several requests)",
                           len, o->max_bytes);
    if ((e = check_depth(body, len, d)) != 0)
        return e;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory parsing the body");
    r->root = json_loadb(body != NULL ? body : "", len,
                         JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
    if (r->root == NULL) {
        free(r);
        return fv_diag_set(d, FV_EPARSE, "line %d, column %d: %s", je.line, je.column, je.text);
    }
    e = parse_shape(r, o, d);
    if (e != 0) {
        fv_score_json_free(r);
        return e;
    }
    *ret = r;
    return 0;
}

size_t fv_score_json_n_rows(const fv_score_json_t *r)
{
    return r != NULL ? r->n_rows : 0;
}

const char *fv_score_json_key(const fv_score_json_t *r, size_t *ret_len)
{
    if (ret_len != NULL)
        *ret_len = r != NULL && r->key != NULL ? r->key_len : 0;
    return r != NULL ? r->key : NULL;
}

bool fv_score_json_explain(const fv_score_json_t *r)
{
    return r != NULL && r->explain;
}

/* ---- bind -------------------------------------------------------------------------- */

void fv_score_batch_free(fv_score_batch_t *b)
{
    if (b == NULL)
        return;
    free(b->ds.cells);
    free(b->ds.label);
    free(b->ds.line);
    free(b->row_ok);
    free(b->ds_row);
    free(b->row_err);
    free(b);
}

/* Decodes request row j (obj) into cells (n_cols). 0, or 1 with the sentence in err. */
static int bind_row(const fv_schema_t *s, size_t j, json_t *obj, double *cells, char *err)
{
    const size_t n = fv_schema_n_columns(s);
    char b1[MSG_BUF], b2[MSG_BUF], lst[300];
    const char *name;
    json_t *v;

#define ROW_ERR(...)                                                                               \
    do {                                                                                           \
        int k_ = snprintf(err, FV_SCORE_ROW_ERR_MAX, "row %zu: ", j);                              \
        if (k_ > 0 && k_ < FV_SCORE_ROW_ERR_MAX)                                                   \
            snprintf(err + k_, (size_t)(FV_SCORE_ROW_ERR_MAX - k_), __VA_ARGS__);                  \
        return 1;                                                                                  \
    } while (0)

    json_object_foreach(obj, name, v)
    {
        if (strlen(name) > FV_SCORE_NAME_MAX || fv_schema_column_index(s, name) < 0)
            ROW_ERR("unknown column '%s'; expected the model's schema columns",
                    fv__msg_str(b1, sizeof b1, name));
    }
    for (size_t c = 0; c < n; c++) {
        fv_col_type_t t = fv_schema_column_type(s, c);
        const char *cname = fv_schema_column_name(s, c);
        cells[c] = NAN;
        if (t != FV_COL_NUMERIC && t != FV_COL_CATEGORICAL)
            continue; /* ignored, target: never read */
        v = json_object_get(obj, cname);
        if (v == NULL)
            ROW_ERR("missing column '%s'; expected every feature column (null for a missing "
                    "value)",
                    fv__msg_str(b1, sizeof b1, cname));
        if (json_is_null(v)) {
            cells[c] = t == FV_COL_NUMERIC ? NAN : FV_CELL_MISSING;
            continue;
        }
        if (t == FV_COL_NUMERIC) {
            double x;
            if (!json_is_number(v))
                ROW_ERR("column '%s': expected a number, got %s", fv__msg_str(b1, sizeof b1, cname),
                        type_name(v));
            x = json_number_value(v);
            if (!isfinite(x))
                ROW_ERR("column '%s': non-finite value", fv__msg_str(b1, sizeof b1, cname));
            cells[c] = x;
            continue;
        }
        if (!json_is_string(v))
            ROW_ERR("column '%s': expected a string (a category), got %s",
                    fv__msg_str(b1, sizeof b1, cname), type_name(v));
        if (fv__dataset_cat_cell(s, c, json_string_value(v), &cells[c]) != 0) {
            fv__dataset_list_cats(lst, sizeof lst, s, c, false);
            ROW_ERR("column '%s': unknown category \"%s\"; expected one of %.120s (or "
                    "unknown_category \"other\" in the schema)",
                    fv__msg_str(b1, sizeof b1, cname),
                    fv__msg_str(b2, sizeof b2, json_string_value(v)), lst);
        }
    }
#undef ROW_ERR
    return 0;
}

int fv_score_json_bind(const fv_score_json_t *r, const fv_schema_t *s, fv_score_batch_t **ret)
{
    fv_score_batch_t *b;
    size_t n, n_cols;

    if (r == NULL || s == NULL || ret == NULL)
        return FV_EINVAL;
    n = r->n_rows;
    n_cols = fv_schema_n_columns(s);
    /* n >= 1 (parse), n_cols >= 1 (a schema has a target). */
    if (n > SIZE_MAX / n_cols / sizeof(double) || n > SIZE_MAX / FV_SCORE_ROW_ERR_MAX ||
        n > UINT32_MAX)
        return FV_ENOMEM;
    b = calloc(1, sizeof *b);
    if (b == NULL)
        return FV_ENOMEM;
    b->ds.schema = s;
    b->ds.n_cols = n_cols;
    b->n_req = n;
    b->ds.cells = malloc(n * n_cols * sizeof *b->ds.cells);
    b->ds.label = malloc(n * sizeof *b->ds.label);
    b->ds.line = malloc(n * sizeof *b->ds.line);
    b->row_ok = calloc(n, sizeof *b->row_ok);
    b->ds_row = malloc(n * sizeof *b->ds_row);
    b->row_err = calloc(n, FV_SCORE_ROW_ERR_MAX);
    if (b->ds.cells == NULL || b->ds.label == NULL || b->ds.line == NULL || b->row_ok == NULL ||
        b->ds_row == NULL || b->row_err == NULL) {
        fv_score_batch_free(b);
        return FV_ENOMEM;
    }
    for (size_t j = 0; j < n; j++) {
        size_t g = b->ds.n_rows;
        /* Decoded in place at the next free dataset row; kept only if the row is good. */
        if (bind_row(s, j, r->rows[j], b->ds.cells + g * n_cols,
                     b->row_err + j * FV_SCORE_ROW_ERR_MAX) != 0) {
            b->ds_row[j] = SIZE_MAX;
            continue;
        }
        b->row_ok[j] = true;
        b->ds_row[j] = g;
        b->ds.label[g] = -1;
        b->ds.line[g] = (uint32_t)j;
        b->ds.n_rows++;
    }
    *ret = b;
    return 0;
}
