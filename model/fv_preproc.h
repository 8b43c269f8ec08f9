/* fv_preproc.h - imputation, standardization and one-hot encoding, fitted once.
 *
 * The fitted statistics are part of the model (saved in the model file) and never
 * recomputed at scoring time. Feature layout, in schema column order:
 *   numeric column      1 feature: (x - mean) / std; missing -> mean (so 0)
 *   categorical column  one feature per category (1 for the row's category, else 0),
 *                       plus one "<other>" feature under the "other" policy;
 *                       missing -> all zeros
 *   ignored / target    no feature
 * std is the population standard deviation; a constant column gets std 1 (constant:
 * variance <= 4 * count * DBL_EPSILON * mean^2, since summed moments of a constant are
 * not exactly constant in floating point).
 *
 * Fitting goes through moments (count of non-missing values, sum, sum of squares per
 * numeric column), so a federation can fit the same statistics from securely summed
 * moments without pooling rows (fv_preproc_from_moments).
 */
#ifndef FV_PREPROC_H
#define FV_PREPROC_H

#include <stddef.h>

#include "fv_dataset.h"
#include "fv_error.h"
#include "fv_schema.h"

typedef struct fv_preproc fv_preproc_t;

/* Moments of rows[0..n) (all rows if rows == NULL); arrays have n_cols entries, only
 * numeric columns are written (others set to 0). Double accumulation in row order. */
void fv_preproc_moments(const fv_dataset_t *ds, const size_t *rows, size_t n, double *count,
                        double *sum, double *sumsq);
/* Builds a preproc from moments. The schema is borrowed and must outlive the preproc.
 * A numeric column with count == 0 gets mean 0, std 1. */
int fv_preproc_from_moments(const fv_schema_t *s, const double *count, const double *sum,
                            const double *sumsq, fv_preproc_t **ret);
/* (An open schema, fv_schema_is_open, has no layout: FV_EINVAL from every constructor.) */
/* moments + from_moments over rows[0..n) */
int fv_preproc_fit(const fv_dataset_t *ds, const size_t *rows, size_t n, fv_preproc_t **ret);
void fv_preproc_free(fv_preproc_t *p);

size_t fv_preproc_n_features(const fv_preproc_t *p);
/* A matrix for transform's out: n_rows x n_features floats (at least one float, so
 * n_rows == 0 gives a valid block), uninitialized, with a transparent-huge-page hint (on
 * this project's VM, first-touch faults of 4 KiB pages made up most of the time to encode
 * a large file: 0.6 s for 188 MB). Free with free(). NULL: out of memory or overflow. */
float *fv_preproc_matrix_alloc(const fv_preproc_t *p, size_t n_rows);
/* out is n x n_features (row-major); rows == NULL means rows 0..n-1. */
int fv_preproc_transform(const fv_preproc_t *p, const fv_dataset_t *ds, const size_t *rows,
                         size_t n, float *out);
/* Feature name into buf: "age", "purpose=radio/tv", "purpose=<other>". Returns buf. */
const char *fv_preproc_feature_name(const fv_preproc_t *p, size_t j, char *buf, size_t len);
/* The schema column whose block holds feature j, or -1 when j is out of range. */
long fv_preproc_feature_column(const fv_preproc_t *p, size_t j);
/* Mean and std of a numeric schema column (NaN for a non-numeric column). */
double fv_preproc_mean(const fv_preproc_t *p, size_t col);
double fv_preproc_std(const fv_preproc_t *p, size_t col);

#endif
