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

int fv_dataset_load(const char *path, const fv_schema_t *s, fv_dataset_t **ret,
                    fv_diag_t *d);
int fv_dataset_load_mem(const char *name, const char *buf, size_t len, const fv_schema_t *s,
                        fv_dataset_t **ret, fv_diag_t *d);
void fv_dataset_free(fv_dataset_t *ds);

/* Stratified split of rows[0..n) (all rows if rows == NULL, n = ds->n_rows): within each
 * class the rows are shuffled with `seed` and round(test_fraction * n_class) go to test.
 * Index arrays are sorted ascending and malloc'd; caller frees. 0 <= test_fraction < 1.
 * Deterministic for (rows, labels, test_fraction, seed). */
int fv_dataset_split(const fv_dataset_t *ds, const size_t *rows, size_t n,
                     double test_fraction, uint64_t seed, size_t **ret_train,
                     size_t *ret_n_train, size_t **ret_test, size_t *ret_n_test);

/* Gathers labels of the given rows (rows == NULL: all). */
void fv_dataset_labels(const fv_dataset_t *ds, const size_t *rows, size_t n, int32_t *out);

#endif
