/* fv_schema.h - the dataset schema every bank of a federation shares.
 *
 * A schema names the columns in order and their types, the category vocabulary of every
 * categorical column (sorted by byte order, so it does not depend on row order), the
 * target column, its vocabulary of class labels and, for a binary task, the positive
 * label. Banks that hold the same schema get the same one-hot layout.
 *
 * JSON form (saved and loaded with jansson; unknown keys are an error; the // notes
 * below are annotations, not part of the format):
 *   {
 *     "fedvault_schema": 1,
 *     "target": "Class",
 *     "positive": "bad",              // string: binary task; null: multi-class
 *     "classes": ["bad", "good"],     // every target label, sorted
 *     "unknown_category": "error",    // or "other": unseen categories go to an extra column
 *     "columns": [
 *       {"name": "funded_amnt", "type": "numeric"},
 *       {"name": "term", "type": "categorical", "categories": ["term_36", "term_60"]},
 *       {"name": "sub_grade", "type": "ignored"},
 *       {"name": "Class", "type": "target"}
 *     ]
 *   }
 * Binary: class index 1 is the positive label, 0 every other label in "classes".
 * Multi-class: class index is the label's position in "classes".
 *
 * Missing values: an empty cell or "NA" (exactly) in any column is missing.
 *
 * Open schemas (federated schema discovery). A job may leave vocabularies, or even column
 * types, to be found from the banks' data:
 *       {"name": "Job", "type": "categorical", "categories": "open"}
 *       {"name": "Purpose", "type": "open"}   // numeric or categorical, decided later;
 *                                             // its categories are open too
 * "classes" stays required and closed (the model's outputs are fixed by the job). A schema
 * with an open column uses "unknown_category": "other" (values an agent suppressed must
 * land somewhere), which the loader fills in when the key is absent; "error" with an open
 * column is refused. to_json writes open columns in exactly these two forms (no
 * "categories" key on a "type": "open" column). An open schema describes a job, not a
 * feature layout: everything that needs a vocabulary (fv_preproc, fv_dataset, the
 * federated stats layout, a model file) refuses it with FV_EINVAL ("schema has open
 * columns: resolve it first"). fv_schema_resolve turns it into a closed schema.
 *
 * Vocabulary JSON (what an agent discloses for the open columns; fv_schema_vocab makes it,
 * fv_schema_resolve reads it, hostile, at most FV_SCHEMA_VOCAB_MAX_BYTES):
 *   {"fedvault_vocab": 1,
 *    "columns": [{"name": "Job", "type": "categorical",     // or "numeric"
 *                 "categories": ["fixed", "freelance"],     // sorted; [] when numeric
 *                 "suppressed": 3}]}                        // distinct values held by
 *                                                           // fewer than min_count rows
 * One entry per open column, in schema order; no row counts per value.
 */
#ifndef FV_SCHEMA_H
#define FV_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

#define FV_SCHEMA_MAX_COLUMNS 4096
#define FV_SCHEMA_MAX_CATEGORIES 65536 /* per column; more is refused at infer/load */

typedef enum {
    FV_COL_NUMERIC = 0,
    FV_COL_CATEGORICAL = 1,
    FV_COL_IGNORED = 2,
    FV_COL_TARGET = 3,
    FV_COL_OPEN = 4, /* open schemas only: numeric or categorical, decided by discovery */
} fv_col_type_t;

#define FV_SCHEMA_VOCAB_MAX_BYTES ((size_t)1 << 20) /* one agent's vocabulary JSON */
#define FV_SCHEMA_VOCAB_MAX_VALUE 1024              /* bytes of one category in a vocabulary */

typedef enum {
    FV_UNKNOWN_ERROR = 0, /* an unseen category is an error naming file:line:col */
    FV_UNKNOWN_OTHER = 1, /* an unseen category goes to the column's "<other>" bucket */
} fv_unknown_policy_t;

typedef struct fv_schema fv_schema_t;

typedef struct fv_schema_infer_opts {
    const char *target;      /* required: target column name */
    const char *positive;    /* positive label; NULL = multi-class */
    const char *const *drop; /* columns to mark ignored (borrowed), may be NULL */
    size_t n_drop;
    fv_unknown_policy_t unknown; /* default FV_UNKNOWN_ERROR */
} fv_schema_infer_opts_t;

/* Reads a CSV and infers: a column is numeric if every non-missing cell is a finite number
 * in the grammar [+-]?(digits[.digits*]|.digits)([eE][+-]?digits)? (C locale; no hex,
 * spaces, inf or nan: see model/text.c), else categorical with the sorted set of seen
 * values. A column with no value at all is numeric. Errors:
 * target or a --drop column not in the header, positive label never seen in the target,
 * duplicate column names, empty file (no header, or header but no rows), ragged rows,
 * missing target cells; each names file:line:col. */
int fv_schema_infer(const char *csv_path, const fv_schema_infer_opts_t *opts, fv_schema_t **ret,
                    fv_diag_t *d);
int fv_schema_infer_mem(const char *name, const char *buf, size_t len,
                        const fv_schema_infer_opts_t *opts, fv_schema_t **ret, fv_diag_t *d);

/* JSON round trip. to_json output is canonical (fixed key order, compact): equal schemas
 * give equal bytes. *ret_json is malloc'd, NUL-terminated; caller frees. */
int fv_schema_to_json(const fv_schema_t *s, char **ret_json, size_t *ret_len);
int fv_schema_from_json(const char *name, const char *json, size_t len, fv_schema_t **ret,
                        fv_diag_t *d);
/* save: the JSON and a newline, through fv_file_write_atomic (kernels/fv_file.h). */
int fv_schema_save(const fv_schema_t *s, const char *path, fv_diag_t *d);
int fv_schema_load(const char *path, fv_schema_t **ret, fv_diag_t *d);
void fv_schema_free(fv_schema_t *s);
/* Deep equality (same columns, types, vocabularies, target, labels, policy). */
bool fv_schema_equal(const fv_schema_t *a, const fv_schema_t *b);

size_t fv_schema_n_columns(const fv_schema_t *s);
const char *fv_schema_column_name(const fv_schema_t *s, size_t col);
fv_col_type_t fv_schema_column_type(const fv_schema_t *s, size_t col);
/* Index of a column by name, or -1. */
long fv_schema_column_index(const fv_schema_t *s, const char *name);
size_t fv_schema_n_categories(const fv_schema_t *s, size_t col); /* 0 if not categorical */
const char *fv_schema_category(const fv_schema_t *s, size_t col, size_t k);
/* Index of value in the column's vocabulary, or -1 (binary search). */
long fv_schema_category_index(const fv_schema_t *s, size_t col, const char *value);

size_t fv_schema_target(const fv_schema_t *s); /* column index of the target */
bool fv_schema_is_binary(const fv_schema_t *s);
const char *fv_schema_positive(const fv_schema_t *s); /* NULL if multi-class */
/* Number of classes the model predicts: 2 for binary, |classes| for multi-class. */
size_t fv_schema_n_classes(const fv_schema_t *s);
size_t fv_schema_n_labels(const fv_schema_t *s); /* |classes| */
/* Whether a network can be trained for the schema's target: a network scores two classes
 * with one output, the probability of the positive class, so a target with exactly two
 * classes needs a positive label. FV_EINVAL with a sentence naming both classes and
 * "positive" (prefixed by origin) when it has none; 0 otherwise. */
int fv_schema_check_trainable(const fv_schema_t *s, const char *origin, fv_diag_t *d);
const char *fv_schema_label(const fv_schema_t *s, size_t k);
/* Class index of a target label (binary: 1 for positive, 0 for another known label),
 * or -1 if the label is not in "classes". */
long fv_schema_class_of(const fv_schema_t *s, const char *label);
fv_unknown_policy_t fv_schema_unknown_policy(const fv_schema_t *s);

/* ---- open schemas (model/schema_open.c; see the top of this file) ---------------------- */

/* Any open column (a categorical column with "categories": "open", or "type": "open"). */
bool fv_schema_is_open(const fv_schema_t *s);
/* Whether column col is open (either form); false for col out of range. Its type is
 * FV_COL_CATEGORICAL (fv_schema_n_categories 0) or FV_COL_OPEN. */
bool fv_schema_column_open(const fv_schema_t *s, size_t col);
/* FV_EINVAL "ORIGIN: schema has open columns (columns[j] 'name', ...): resolve it first"
 * when s is open, 0 when it is closed. For callers that need a feature layout. */
int fv_schema_check_closed(const fv_schema_t *s, const char *origin, fv_diag_t *d);

/* An agent's local vocabulary for the open columns of `open`, read from its CSV in one
 * streaming pass (the header must hold every open column; other columns are not read).
 * Per open column: the type seen (a "type": "open" column is "numeric" when every
 * non-missing cell is a number in fv_schema_infer's grammar, "categorical" otherwise; a
 * "categories": "open" column is always "categorical") and, when categorical, the
 * categories held by >= min_count rows, sorted; the other distinct values are only
 * counted ("suppressed"). A numeric column discloses no value. Disclosed categories must
 * be valid UTF-8, at most FV_SCHEMA_VOCAB_MAX_VALUE bytes, without control bytes, else
 * FV_EINVAL naming the column (the value is quoted: the message is for the bank's own
 * log). Distinct values per column are capped at FV_SCHEMA_MAX_CATEGORIES while the
 * column is categorical (FV_ETOOBIG naming file:line:col). min_count >= 1.
 * *ret_json: malloc'd, NUL-terminated, canonical (compact, fixed key order); caller frees. */
int fv_schema_vocab(const fv_schema_t *open, const char *csv_path, uint32_t min_count,
                    char **ret_json, size_t *ret_len, fv_diag_t *d);
int fv_schema_vocab_mem(const fv_schema_t *open, const char *name, const char *buf, size_t len,
                        uint32_t min_count, char **ret_json, size_t *ret_len, fv_diag_t *d);

/* The closed schema: `open` (borrowed) with each open column filled from the n >= 1
 * vocabularies (borrowed bytes, lens[i] each; hostile): categories the union of the
 * vocabularies' (sorted); a "type": "open" column categorical if any vocabulary saw it
 * categorical, else numeric; unknown_category "other". Each vocabulary is checked before
 * use: at most FV_SCHEMA_VOCAB_MAX_BYTES, strict JSON shape (no unknown or duplicate
 * keys), every open column named exactly once and no other name, at most
 * FV_SCHEMA_MAX_COLUMNS entries and FV_SCHEMA_MAX_CATEGORIES categories per column,
 * categories sorted, unique, 1..FV_SCHEMA_VOCAB_MAX_VALUE bytes, no control bytes, not a
 * missing marker. A bad one is refused (FV_EPARSE, FV_ETOOBIG or FV_EINVAL) with a
 * sentence starting with origins[i] (e.g. the agent's name; origins may be NULL:
 * "vocabulary N"); a union above FV_SCHEMA_MAX_CATEGORIES is FV_ETOOBIG. *ret: caller
 * frees. */
int fv_schema_resolve(const fv_schema_t *open, const char *const *vocabs, const size_t *lens,
                      const char *const *origins, size_t n, fv_schema_t **ret, fv_diag_t *d);

/* Offline union of n >= 1 closed schemas (borrowed; names[i] names in[i] in messages,
 * may be NULL): they must have the same columns in the same order with the same types,
 * the same target, classes and positive label, else FV_EINVAL naming both files and the
 * field. Categories are unioned per column; unknown_category is "other" if any input
 * says "other". *ret: caller frees. */
int fv_schema_merge(const fv_schema_t *const *in, const char *const *names, size_t n,
                    fv_schema_t **ret, fv_diag_t *d);

/* An open copy of the closed schema `closed` (borrowed), for a job whose schema round
 * fills it in: every categorical column's categories open when all_categorical, and each
 * of the n_cols named columns open (a categorical column's categories; a numeric column's
 * type: numeric or categorical, decided by the vocabularies); unknown_category "other".
 * A named column that is not in the schema, or is the target or ignored, is FV_EINVAL
 * naming it; so is nothing to open. *ret: caller frees. */
int fv_schema_open(const fv_schema_t *closed, const char *const *cols, size_t n_cols,
                   bool all_categorical, fv_schema_t **ret, fv_diag_t *d);

/* True if a cell is missing (empty or exactly "NA"). */
bool fv_schema_is_missing(const char *cell);

#endif
