/* preproc.c - imputation, standardization and one-hot encoding with frozen statistics.
 *
 * Purpose: map decoded rows (fv_dataset_t) to the float feature matrix the network
 * reads, with statistics fitted once and then saved in the model, so that training and
 * every later scoring run use the same numbers.
 *
 * Feature layout (fv_preproc.h): schema column order; a numeric column is one feature,
 * a categorical column one feature per category plus "<other>" under the "other"
 * policy, ignored and target columns none. offset[j] and width[j] give column j's
 * block; the layout depends only on the schema, so equal schemas give equal layouts.
 *
 * Fitting is moments -> statistics, nothing else, so a federation that securely sums
 * per-bank (count, sum, sumsq) gets exactly what a central fit over the pooled rows
 * would give, up to the summation order of the moments:
 *   mean = sum / count
 *   var  = sumsq / count - mean^2   (population variance)
 *   std  = sqrt(var), or 1 when the column is constant.
 * "Constant" means var <= 4 * count * DBL_EPSILON * mean^2, not only var == 0: the
 * formula above cancels, and a constant column of 0.1 summed in double gives a var of
 * +-1e-12 * mean^2 or so, not 0 (measured: std/|mean| up to 2e-5 at 1e7 rows). Dividing
 * by such a std would blow up every later value that differs from the constant. The
 * bound is the rounding error of the two sums; a genuine column whose spread is below it
 * cannot be standardized meaningfully in double anyway. count == 0: mean 0, std 1.
 * Moments may come from peers (summed securely), so from_moments checks them: negative
 * or non-finite counts and non-finite sums are FV_EINVAL / FV_ENUMERIC, never a NaN
 * statistic in a model.
 *
 * Ownership: a preproc borrows its schema (the model owns both). Immutable after
 * construction, so transform may run on several threads at once.
 */
#include "fv_preproc.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model-int.h"

struct fv_preproc {
    const fv_schema_t *schema; /* borrowed */
    size_t n_cols;
    double *mean;        /* n_cols; NaN for non-numeric columns */
    double *std;         /* n_cols; NaN for non-numeric columns; > 0 otherwise */
    size_t *offset;      /* n_cols; first feature of the column */
    size_t *width;       /* n_cols; number of features of the column */
    fv_col_type_t *type; /* n_cols; the schema's, read once per cell by transform */
    size_t n_features;
};

void fv_preproc_free(fv_preproc_t *p)
{
    if (p == NULL)
        return;
    free(p->mean);
    free(p->std);
    free(p->offset);
    free(p->width);
    free(p->type);
    free(p);
}

/* Allocates a preproc with the layout of s and NaN statistics. */
static int preproc_new(const fv_schema_t *s, fv_preproc_t **ret)
{
    size_t n = fv_schema_n_columns(s), off = 0;
    fv_preproc_t *p;
    if (fv_schema_is_open(s))
        return FV_EINVAL; /* no layout before the open columns are resolved */
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return FV_ENOMEM;
    p->schema = s;
    p->n_cols = n;
    p->mean = malloc(n * sizeof *p->mean);
    p->std = malloc(n * sizeof *p->std);
    p->offset = malloc(n * sizeof *p->offset);
    p->width = malloc(n * sizeof *p->width);
    p->type = malloc(n * sizeof *p->type);
    if (p->mean == NULL || p->std == NULL || p->offset == NULL || p->width == NULL ||
        p->type == NULL) {
        fv_preproc_free(p);
        return FV_ENOMEM;
    }
    for (size_t j = 0; j < n; j++) {
        size_t w = 0;
        p->type[j] = fv_schema_column_type(s, j);
        switch (p->type[j]) {
        case FV_COL_NUMERIC:
            w = 1;
            break;
        case FV_COL_CATEGORICAL:
            w = fv_schema_n_categories(s, j) +
                (fv_schema_unknown_policy(s) == FV_UNKNOWN_OTHER ? 1 : 0);
            break;
        case FV_COL_IGNORED:
        case FV_COL_TARGET:
        default:
            break;
        }
        p->mean[j] = NAN;
        p->std[j] = NAN;
        p->offset[j] = off;
        p->width[j] = w;
        off += w;
    }
    p->n_features = off;
    *ret = p;
    return 0;
}

void fv_preproc_moments(const fv_dataset_t *ds, const size_t *rows, size_t n, double *count,
                        double *sum, double *sumsq)
{
    size_t nc;
    if (ds == NULL || count == NULL || sum == NULL || sumsq == NULL)
        return;
    nc = ds->n_cols;
    if (rows == NULL)
        n = ds->n_rows;
    for (size_t j = 0; j < nc; j++)
        count[j] = sum[j] = sumsq[j] = 0.0;
    for (size_t i = 0; i < n; i++) {
        size_t row = rows != NULL ? rows[i] : i;
        const double *x;
        if (row >= ds->n_rows)
            continue; /* programmer error; skipping beats reading out of bounds */
        x = ds->cells + row * nc;
        for (size_t j = 0; j < nc; j++) {
            if (fv_schema_column_type(ds->schema, j) != FV_COL_NUMERIC || isnan(x[j]))
                continue;
            count[j] += 1.0;
            sum[j] += x[j];
            sumsq[j] += x[j] * x[j];
        }
    }
}

int fv_preproc_from_moments(const fv_schema_t *s, const double *count, const double *sum,
                            const double *sumsq, fv_preproc_t **ret)
{
    fv_preproc_t *p = NULL;
    int r;

    if (s == NULL || count == NULL || sum == NULL || sumsq == NULL || ret == NULL)
        return FV_EINVAL;
    r = preproc_new(s, &p);
    if (r < 0)
        return r;
    for (size_t j = 0; j < p->n_cols; j++) {
        double mean, var, sd;
        if (fv_schema_column_type(s, j) != FV_COL_NUMERIC)
            continue;
        if (!(count[j] >= 0.0) || !isfinite(count[j])) {
            r = FV_EINVAL;
            goto out;
        }
        if (!isfinite(sum[j]) || !isfinite(sumsq[j]) || sumsq[j] < 0.0) {
            r = FV_ENUMERIC;
            goto out;
        }
        if (count[j] == 0.0) {
            p->mean[j] = 0.0;
            p->std[j] = 1.0;
            continue;
        }
        mean = sum[j] / count[j];
        var = sumsq[j] / count[j] - mean * mean;
        if (!isfinite(mean) || !isfinite(var)) {
            r = FV_ENUMERIC;
            goto out;
        }
        if (var <= 4.0 * count[j] * DBL_EPSILON * mean * mean)
            var = 0.0;
        sd = sqrt(var);
        p->mean[j] = mean;
        p->std[j] = sd > 0.0 ? sd : 1.0;
    }
    *ret = p;
    p = NULL;
    r = 0;
out:
    fv_preproc_free(p);
    return r;
}

int fv_preproc_fit(const fv_dataset_t *ds, const size_t *rows, size_t n, fv_preproc_t **ret)
{
    double *count = NULL, *sum = NULL, *sumsq = NULL;
    int r = FV_ENOMEM;

    if (ds == NULL || ret == NULL)
        return FV_EINVAL;
    if (rows == NULL)
        n = ds->n_rows;
    for (size_t i = 0; rows != NULL && i < n; i++)
        if (rows[i] >= ds->n_rows)
            return FV_EINVAL;
    count = malloc((ds->n_cols ? ds->n_cols : 1) * sizeof *count);
    sum = malloc((ds->n_cols ? ds->n_cols : 1) * sizeof *sum);
    sumsq = malloc((ds->n_cols ? ds->n_cols : 1) * sizeof *sumsq);
    if (count == NULL || sum == NULL || sumsq == NULL)
        goto out;
    fv_preproc_moments(ds, rows, n, count, sum, sumsq);
    r = fv_preproc_from_moments(ds->schema, count, sum, sumsq, ret);
out:
    free(count);
    free(sum);
    free(sumsq);
    return r;
}

int fv__preproc_from_stats(const fv_schema_t *s, const double *mean, const double *std,
                           fv_preproc_t **ret)
{
    fv_preproc_t *p = NULL;
    int r;

    if (s == NULL || mean == NULL || std == NULL || ret == NULL)
        return FV_EINVAL;
    r = preproc_new(s, &p);
    if (r < 0)
        return r;
    for (size_t j = 0; j < p->n_cols; j++) {
        if (fv_schema_column_type(s, j) != FV_COL_NUMERIC)
            continue;
        if (!isfinite(mean[j]) || !isfinite(std[j]) || !(std[j] > 0.0)) {
            fv_preproc_free(p);
            return FV_ECORRUPT;
        }
        p->mean[j] = mean[j];
        p->std[j] = std[j];
    }
    *ret = p;
    return 0;
}

size_t fv_preproc_n_features(const fv_preproc_t *p)
{
    return p != NULL ? p->n_features : 0;
}

float *fv_preproc_matrix_alloc(const fv_preproc_t *p, size_t n_rows)
{
    size_t nf = p != NULL && p->n_features > 0 ? p->n_features : 1;
    float *m;
    if (n_rows == 0)
        n_rows = 1;
    if (n_rows > SIZE_MAX / sizeof *m / nf)
        return NULL;
    m = malloc(n_rows * nf * sizeof *m);
    if (m != NULL)
        fv__hint_huge_pages(m, n_rows * nf * sizeof *m);
    return m;
}

int fv_preproc_transform(const fv_preproc_t *p, const fv_dataset_t *ds, const size_t *rows,
                         size_t n, float *out)
{
    const fv_schema_t *s;
    bool other;

    if (p == NULL || ds == NULL || (out == NULL && n > 0))
        return FV_EINVAL;
    s = p->schema;
    /* The cells' category indices only mean something under the same vocabularies. */
    if (ds->schema != s && !fv_schema_equal(ds->schema, s))
        return FV_ESCHEMA;
    if (rows == NULL && n > ds->n_rows)
        return FV_EINVAL;
    other = fv_schema_unknown_policy(s) == FV_UNKNOWN_OTHER;
    /* Every feature of a row is written exactly once or, for a categorical block, zeroed
     * and then one of its features set: the blocks of the columns with width > 0 tile
     * [0, n_features) (preproc_new), so the row needs no memset first. */
    for (size_t i = 0; i < n; i++) {
        size_t row = rows != NULL ? rows[i] : i;
        float *f = out + i * p->n_features;
        const double *x;
        if (row >= ds->n_rows)
            return FV_EINVAL;
        x = ds->cells + row * p->n_cols;
        for (size_t j = 0; j < p->n_cols; j++) {
            double v = x[j];
            if (p->width[j] == 0)
                continue;
            if (p->type[j] == FV_COL_NUMERIC) {
                f[p->offset[j]] = isnan(v) ? 0.0f : (float)((v - p->mean[j]) / p->std[j]);
                continue;
            }
            /* categorical */
            size_t n_cats = fv_schema_n_categories(s, j);
            float *blk = f + p->offset[j];
            for (size_t k = 0; k < p->width[j]; k++)
                blk[k] = 0.0f;
            if (v == FV_CELL_MISSING)
                continue;
            if (v == FV_CELL_OTHER && other)
                blk[n_cats] = 1.0f;
            else if (v >= 0.0 && v < (double)n_cats && v == floor(v))
                blk[(size_t)v] = 1.0f;
            else
                return FV_EINVAL; /* not a cell decoded with this schema */
        }
    }
    return 0;
}

const char *fv_preproc_feature_name(const fv_preproc_t *p, size_t j, char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return buf;
    buf[0] = '\0';
    if (p == NULL || j >= p->n_features)
        return buf;
    /* Columns with width 0 share their offset with the next column: find the one whose
     * block holds j. The layout is ordered, so a binary search would do; a scan is
     * enough for names, which are for people. */
    for (size_t c = 0; c < p->n_cols; c++) {
        const char *name;
        size_t k;
        if (p->width[c] == 0 || j < p->offset[c] || j >= p->offset[c] + p->width[c])
            continue;
        name = fv_schema_column_name(p->schema, c);
        if (fv_schema_column_type(p->schema, c) == FV_COL_NUMERIC) {
            snprintf(buf, len, "%s", name);
            return buf;
        }
        k = j - p->offset[c];
        if (k < fv_schema_n_categories(p->schema, c))
            snprintf(buf, len, "%s=%s", name, fv_schema_category(p->schema, c, k));
        else
            snprintf(buf, len, "%s=<other>", name);
        return buf;
    }
    return buf;
}

long fv_preproc_feature_column(const fv_preproc_t *p, size_t j)
{
    size_t lo = 0, hi;
    if (p == NULL || j >= p->n_features)
        return -1;
    /* offset[] is non-decreasing and width-0 columns share the next column's offset:
     * find the last column with offset <= j, then step back over width-0 ones. */
    hi = p->n_cols;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->offset[mid] <= j)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* lo - 1 is the last column with offset <= j (lo >= 1: offset[0] = 0 <= j). */
    for (size_t c = lo; c-- > 0;)
        if (p->width[c] > 0 && j >= p->offset[c] && j < p->offset[c] + p->width[c])
            return (long)c;
    return -1;
}

double fv_preproc_mean(const fv_preproc_t *p, size_t col)
{
    return p != NULL && col < p->n_cols ? p->mean[col] : NAN;
}

double fv_preproc_std(const fv_preproc_t *p, size_t col)
{
    return p != NULL && col < p->n_cols ? p->std[col] : NAN;
}
