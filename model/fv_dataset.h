/* fv_dataset.h - rows of a CSV decoded against a schema, and stratified splits.
 *
 * Loading maps the CSV header to the schema by column name: every schema column must be
 * present, and every CSV column must be in the schema (mark unwanted ones "ignored").
 * Each cell is decoded once:
 *   numeric      value as double, NaN if missing
 *   categorical  category index (>= 0), FV_CELL_MISSING (-1), or FV_CELL_OTHER (-2) for an
 *                unseen value under the "other" policy
 *   ignored      NaN (not parsed)
 *   target       NaN; the class index goes to label[]
 * Errors name FILE:LINE:COL and the column, and say what was expected: ragged row, text
 * in a numeric column, non-finite number, unknown category (policy "error"), missing or
 * unknown target label, header missing a schema column or holding an extra one, no rows.
 */
#ifndef FV_DATASET_H
#define FV_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "fv_csv.h"
#include "fv_error.h"
#include "fv_schema.h"

#define FV_CELL_MISSING (-1.0)
#define FV_CELL_OTHER (-2.0)

typedef struct fv_dataset {
    const fv_schema_t *schema; /* borrowed: must outlive the dataset */
    size_t n_rows;
    size_t n_cols;  /* == fv_schema_n_columns(schema) */
    double *cells;  /* n_rows x n_cols, row-major, in schema column order */
    int32_t *label; /* n_rows class indices */
    uint32_t *line; /* n_rows source line numbers, for messages */
} fv_dataset_t;

/* Row-by-row decoding, for callers that must go on past a bad row (fedvault predict).
 * The same decoder as fv_dataset_load, so cells and messages are identical. The reader
 * borrows the CSV reader and the schema; both must outlive it. Not thread-safe.
 *
 * new() reads and maps the header (errors as for fv_dataset_load: empty file, a column
 * not in the schema, a duplicate, a schema column missing). With
 * FV_DATASET_TARGET_OPTIONAL the header may leave out the target column (data to score
 * has no label), and a target cell that is there is never an error: a missing or unknown
 * label gives label -1 (scoring does not use it).
 *
 * next() decodes one record into ret_cells (n_cols doubles, encoded as above) and
 * *ret_label (class index, -1 when the target column is absent) and returns
 *   FV_DATASET_ROW      a good row
 *   FV_DATASET_BAD_ROW  the record does not fit the schema (ragged, text in a numeric
 *                       column, non-finite number, unknown category or label): d says
 *                       "FILE:LINE:COL: column 'NAME': ..."; outputs are unspecified;
 *                       the next call reads the next record
 *   FV_DATASET_END      end of input
 *   < 0                 a CSV syntax error (unterminated quote...) or out of memory: the
 *                       position in the file is lost, so this is final (sticky). */
#define FV_DATASET_TARGET_OPTIONAL 1u
/* FV_DATASET_UNKNOWN_MISSING: a categorical cell with a category the schema lacks is read
 * as a missing cell (every one-hot feature of the column 0, as for an empty cell) instead
 * of an error, for scoring rows with a model whose schema has no "other" bucket (eval /
 * predict --unknown-category missing). A schema with unknown_category "other" still sends
 * such a cell to its bucket. */
#define FV_DATASET_UNKNOWN_MISSING 2u
enum { FV_DATASET_END = 0, FV_DATASET_ROW = 1, FV_DATASET_BAD_ROW = 2 };

typedef struct fv_dataset_reader fv_dataset_reader_t;

int fv_dataset_reader_new(fv_csv_t *c, const fv_schema_t *s, unsigned flags,
                          fv_dataset_reader_t **ret, fv_diag_t *d);
int fv_dataset_reader_next(fv_dataset_reader_t *rd, double *ret_cells, int32_t *ret_label,
                           fv_diag_t *d);
/* Line of the header, and of the record last returned by next() (0 before the first). */
size_t fv_dataset_reader_header_line(const fv_dataset_reader_t *rd);
size_t fv_dataset_reader_line(const fv_dataset_reader_t *rd);
/* Raw text of schema column col in the last record (borrowed, valid until the next
 * next()), or NULL: column absent, col out of range, or a record with the wrong number
 * of fields. */
const char *fv_dataset_reader_field(const fv_dataset_reader_t *rd, size_t col);
/* 1-based CSV field number of schema column col (as in messages), or 0 when the column is
 * absent from the header (an optional target) or col is out of range. */
size_t fv_dataset_reader_field_number(const fv_dataset_reader_t *rd, size_t col);
void fv_dataset_reader_free(fv_dataset_reader_t *rd);

int fv_dataset_load(const char *path, const fv_schema_t *s, fv_dataset_t **ret, fv_diag_t *d);
/* fv_dataset_load with reader flags (FV_DATASET_UNKNOWN_MISSING; the target stays required). */
int fv_dataset_load_flags(const char *path, const fv_schema_t *s, unsigned flags,
                          fv_dataset_t **ret, fv_diag_t *d);
int fv_dataset_load_mem(const char *name, const char *buf, size_t len, const fv_schema_t *s,
                        fv_dataset_t **ret, fv_diag_t *d);
/* fv_schema_infer, then fv_dataset_load against the schema inferred: the same schema,
 * the same rows bit for bit, the same errors; but the file is read once when every column
 * but the target and the dropped ones is numeric (inference then keeps each row decoded,
 * schema.c's "rows kept" note), twice otherwise. *ret_schema and *ret_ds are the
 * caller's; the dataset borrows the schema (free the dataset first). */
int fv_dataset_infer_load(const char *path, const fv_schema_infer_opts_t *o,
                          fv_schema_t **ret_schema, fv_dataset_t **ret_ds, fv_diag_t *d);
int fv_dataset_infer_load_mem(const char *name, const char *buf, size_t len,
                              const fv_schema_infer_opts_t *o, fv_schema_t **ret_schema,
                              fv_dataset_t **ret_ds, fv_diag_t *d);
void fv_dataset_free(fv_dataset_t *ds);

/* Stratified split of rows[0..n) (all rows if rows == NULL, n = ds->n_rows): within each
 * class the rows are shuffled with `seed` and round(test_fraction * n_class) go to test.
 * Index arrays are sorted ascending and malloc'd; caller frees. 0 <= test_fraction < 1.
 * Deterministic for (rows, labels, test_fraction, seed). */
int fv_dataset_split(const fv_dataset_t *ds, const size_t *rows, size_t n, double test_fraction,
                     uint64_t seed, size_t **ret_train, size_t *ret_n_train, size_t **ret_test,
                     size_t *ret_n_test);

/* Gathers labels of the given rows (rows == NULL: all). */
void fv_dataset_labels(const fv_dataset_t *ds, const size_t *rows, size_t n, int32_t *out);

#endif
