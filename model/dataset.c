/* dataset.c - decode CSV rows against a schema; stratified train/test splits.
 *
 * Purpose: turn a bank's CSV into a dense row-major matrix of doubles in schema column
 * order, decoding every cell exactly once, and say precisely where the data disagrees
 * with the schema ("FILE:LINE:COL: column 'NAME': what; expected WHAT").
 *
 * Header mapping: the CSV may order its columns differently from the schema; they are
 * matched by name. The header must be a permutation of the schema's column names: a
 * name not in the schema, a name given twice, or a schema column absent from the header
 * is an error (an extra column would otherwise be silently ignored, and a bank would
 * train on less than it thinks). COL in messages is always the CSV field number.
 *
 * Cell decoding (see fv_dataset.h for the encoding):
 *   - missing = "" or "NA" exactly (fv_schema_is_missing);
 *   - numbers follow the grammar in schema.c's top note, with the value strtod_l gives
 *     in the "C" locale: [+-]? (digits ['.' digits*] | '.' digits) [[eE] [+-]? digits].
 *     One parser for both files (fv__parse_number, text.c: inference must call a column
 *     numeric exactly when loading accepts it; test_schema checks that they agree); a
 *     plain integer of up to 15 digits is converted here inline (cell_number), and
 *     text.c computes most other numbers exactly without strtod, bit for bit the same
 *     (test_csv_number).
 *     "inf", "infinity", "nan" (any case, optional sign) and numbers that overflow a
 *     double ("1e999") are "non-finite number" errors, not missing values: a NaN
 *     written by some tool is more likely a bug upstream than a deliberate blank, and
 *     the error says how to write a missing value;
 *   - the target must hold a label from the schema's classes in every row.
 *
 * Inference and loading (fv_dataset_infer_load, what `fedvault train` does without a
 * schema file): inference reads the whole file anyway, and for a file whose columns are
 * all numeric (but the target and the dropped ones) it keeps every row decoded as the
 * decoder below would decode it (schema.c, "rows kept"), so the file is read once, not
 * twice; any other file is loaded in a second pass.
 *
 * Row-by-row reading (fv_dataset_reader_*): the header mapping and the cell decoder
 * live in the reader; fv_dataset_load is a loop over it that stops at the first bad
 * row, fedvault predict a loop that records the bad row and goes on. Under
 * FV_DATASET_TARGET_OPTIONAL the target may be absent and is never an error.
 *
 * Memory: the file is read once (fv_csv, through a window); each row is decoded straight
 * into the cell matrix, which is sized once from the bytes per row of the first
 * DS_ROWS_INIT rows (fv__dataset_grow; doubling after that if the estimate falls short), with a
 * huge-page hint. All sizes are bounded by the CSV byte cap and the schema caps. The
 * dataset borrows its schema.
 *
 * Split: rows are bucketed by class in input order; one xoshiro stream seeded with
 * `seed` shuffles the buckets in class order 0, 1, ...; the first round(f * n_class)
 * rows of each shuffled bucket go to test. Both outputs are then sorted, so the result
 * depends only on (rows, labels, f, seed).
 */
#define _GNU_SOURCE /* strtod_l */

#include "fv_dataset.h"

#include <locale.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#include "fv_csv.h"
#include "model-int.h"
#include "fv_rng.h"

#define DS_ROWS_INIT 1024
#define MSG_BUF FV__MSG_BUF

/* "'a', 'b', 'c', 'd', ... (35 in all)": a column's categories, or the labels. Shared
 * with score_json.c (model-int.h), so a JSON row's message lists categories the same way. */
void fv__dataset_list_cats(char *out, size_t len, const fv_schema_t *s, size_t col, bool labels)
{
    size_t n = labels ? fv_schema_n_labels(s) : fv_schema_n_categories(s, col), o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && i < 4; i++) {
        char b[MSG_BUF];
        const char *v = labels ? fv_schema_label(s, i) : fv_schema_category(s, col, i);
        int k = snprintf(out + o, len - o, "%s'%s'", i ? ", " : "", fv__msg_str(b, sizeof b, v));
        if (k < 0 || (size_t)k >= len - o)
            return;
        o += (size_t)k;
    }
    if (n > 4)
        snprintf(out + o, len - o, ", ... (%zu in all)", n);
    else if (n == 0)
        snprintf(out, len, "(no categories)");
}

void fv_dataset_free(fv_dataset_t *ds)
{
    if (ds == NULL)
        return;
    free(ds->cells);
    free(ds->label);
    free(ds->line);
    free(ds);
}

/* A large matrix is written once, front to back, right after it is allocated: with 4 KiB
 * pages a third of the load's time went to first-touch page faults. Where the kernel
 * does transparent huge pages on request (madvise mode, the usual default), ask for them
 * on the page-aligned part of the block; a refusal costs nothing but the hint. Also the
 * feature matrices' (fv_preproc_matrix_alloc), through model-int.h. */
void fv__hint_huge_pages(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t b = ((uintptr_t)p + len) & ~(huge - 1);
    if (b > a)
        (void)madvise((void *)a, (size_t)(b - a), MADV_HUGEPAGE);
#else
    (void)p;
    (void)len;
#endif
}

/* Grows the row arrays to hold at least one more row: the first time DS_ROWS_INIT rows;
 * the second time, all the rows the input should hold at the bytes per row seen so far
 * (plus 1/16 and DS_ROWS_INIT: the last rows may be longer), so a large file is not
 * copied by repeated doubling (each doubling copied and page-faulted the whole matrix
 * again: this kernel's mremap does not move a block, so realloc copies); after that, if
 * the estimate fell short, doubling. The unused tail of an estimate is never touched.
 * Also inference's kept rows' (schema.c, fv__schema_infer_keep). */
int fv__dataset_grow(fv_dataset_t *ds, size_t *cap_rows, const fv_csv_t *c)
{
    size_t ncap = *cap_rows ? *cap_rows * 2 : DS_ROWS_INIT;
    size_t done = 0, total = 0;
    fv_csv_progress(c, &done, &total);
    if (*cap_rows == DS_ROWS_INIT && done > 0 && ds->n_rows > 0 && total > done) {
        double per_row = (double)done / (double)ds->n_rows;
        double est = (double)total / per_row * (17.0 / 16.0) + DS_ROWS_INIT;
        if (est > (double)ncap && est < (double)SIZE_MAX / 2)
            ncap = (size_t)est;
    }
    double *cells;
    int32_t *label;
    uint32_t *line;
    if (ncap > SIZE_MAX / sizeof(double) / (ds->n_cols ? ds->n_cols : 1))
        return FV_ENOMEM;
    cells = realloc(ds->cells, ncap * ds->n_cols * sizeof *cells);
    if (cells == NULL)
        return FV_ENOMEM;
    ds->cells = cells;
    fv__hint_huge_pages(cells, ncap * ds->n_cols * sizeof *cells);
    label = realloc(ds->label, ncap * sizeof *label);
    if (label == NULL)
        return FV_ENOMEM;
    ds->label = label;
    line = realloc(ds->line, ncap * sizeof *line);
    if (line == NULL)
        return FV_ENOMEM;
    ds->line = line;
    *cap_rows = ncap;
    return 0;
}

/* The meaning of a categorical cell: missing ("" or NA) -> FV_CELL_MISSING, a category of
 * the column -> its index, an unseen value -> FV_CELL_OTHER under the "other" policy, else
 * FV_ESCHEMA (*ret untouched; the caller words the error). One rule for a CSV cell and a
 * JSON string (score_json.c), declared in model-int.h. */
int fv__dataset_cat_cell(const fv_schema_t *s, size_t col, const char *cell, double *ret)
{
    long k;
    if (fv_schema_is_missing(cell)) {
        *ret = FV_CELL_MISSING;
        return 0;
    }
    k = fv_schema_category_index(s, col, cell);
    if (k >= 0)
        *ret = (double)k;
    else if (fv_schema_unknown_policy(s) == FV_UNKNOWN_OTHER)
        *ret = FV_CELL_OTHER;
    else
        return FV_ESCHEMA;
    return 0;
}

/* fv_schema_is_missing, inlined for the numeric cells of the hot loop. */
static inline bool cell_is_missing(const char *cell)
{
    return cell[0] == '\0' || (cell[0] == 'N' && cell[1] == 'A' && cell[2] == '\0');
}

/* The number in a numeric cell: a plain integer of up to 15 digits (the commonest cell)
 * here, inline; it is below 2^53, so (double)m is exactly the double strtod gives, and a
 * '-' makes -0 of "-0" as strtod does. Everything else goes to fv__parse_number. */
static inline int cell_number(const char *cell, locale_t loc, double *ret)
{
    const char *p = cell + (cell[0] == '-' || cell[0] == '+');
    uint64_t m = 0;
    size_t k = 0;
    while (k < 15 && p[k] >= '0' && p[k] <= '9') {
        m = m * 10 + (uint64_t)(p[k] - '0');
        k++;
    }
    if (k > 0 && p[k] == '\0') {
        double v = (double)m;
        *ret = cell[0] == '-' ? -v : v;
        return FV__NUM_OK;
    }
    return fv__parse_number(cell, loc, ret);
}

/* ---- streaming decoder ------------------------------------------------------------ *
 * One decoder serves both fv_dataset_load (which stops at the first bad row) and the
 * row-by-row reader of fedvault predict (which reports a bad row and goes on), so the
 * two can never disagree on what a cell means or on the words of a message. */

struct fv_dataset_reader {
    fv_csv_t *csv; /* borrowed */
    const fv_schema_t *s;
    const char *fn;
    size_t n;     /* schema columns */
    size_t n_hdr; /* header fields (n, or n - 1 without the optional target) */
    size_t header_line;
    size_t *inv;          /* schema column -> CSV field index; SIZE_MAX = absent */
    fv_col_type_t *types; /* per schema column */
    locale_t loc;
    fv_csv_record_t rec; /* the last record (fields valid until the next call) */
    bool have_rec;
    bool rec_ok;    /* the last record's field count matched the header */
    int row_err;    /* FV_E* of the last bad row (FV_EPARSE ragged, FV_ESCHEMA cell) */
    unsigned flags; /* FV_DATASET_* */
};

void fv_dataset_reader_free(fv_dataset_reader_t *rd)
{
    if (rd == NULL)
        return;
    if (rd->loc != (locale_t)0)
        freelocale(rd->loc);
    free(rd->types);
    free(rd->inv);
    free(rd);
}

int fv_dataset_reader_new(fv_csv_t *c, const fv_schema_t *s, unsigned flags,
                          fv_dataset_reader_t **ret, fv_diag_t *d)
{
    const char *fn;
    size_t n;
    size_t *seen = NULL; /* schema column -> CSV field index + 1, 0 = not yet */
    fv_dataset_reader_t *rd = NULL;
    fv_csv_record_t rec;
    char b1[MSG_BUF];
    int r;

    if (c == NULL || s == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_dataset_reader_new: csv, schema and ret are required");
    fn = fv_csv_name(c);
    if ((r = fv_schema_check_closed(s, fn, d)) < 0)
        return r;
    n = fv_schema_n_columns(s);
    r = fv_csv_next(c, &rec, d);
    if (r < 0)
        return r;
    if (r == 0)
        return fv_diag_set(d, FV_EEMPTY,
                           "%s:1:1: empty file; expected a header line naming the schema's %zu "
                           "columns, then data rows",
                           fn, n);
    rd = calloc(1, sizeof *rd);
    seen = calloc(n, sizeof *seen);
    if (rd != NULL) {
        rd->inv = calloc(n, sizeof *rd->inv);
        rd->types = calloc(n, sizeof *rd->types);
        rd->loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    }
    if (rd == NULL || seen == NULL || rd->inv == NULL || rd->types == NULL ||
        rd->loc == (locale_t)0) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory loading the data", fn);
        goto out;
    }
    rd->csv = c;
    rd->flags = flags;
    rd->s = s;
    rd->fn = fn;
    rd->n = n;
    rd->header_line = rec.line;
    rd->n_hdr = rec.n_fields;

    /* Header: a permutation of the schema's column names (the target may be left out
     * under FV_DATASET_TARGET_OPTIONAL). */
    for (size_t k = 0; k < rec.n_fields; k++) {
        long j = fv_schema_column_index(s, rec.fields[k]);
        if (j < 0) {
            r = fv_diag_set(d, FV_ESCHEMA,
                            "%s:%zu:%zu: column '%s': not in the schema; expected only the "
                            "schema's %zu columns (mark unwanted columns \"ignored\" in the "
                            "schema)",
                            fn, rd->header_line, k + 1, fv__msg_str(b1, sizeof b1, rec.fields[k]),
                            n);
            goto out;
        }
        if (seen[j] != 0) {
            r = fv_diag_set(d, FV_ESCHEMA,
                            "%s:%zu:%zu: column '%s': duplicate header name (also column "
                            "%zu); expected each column once",
                            fn, rd->header_line, k + 1, fv__msg_str(b1, sizeof b1, rec.fields[k]),
                            seen[j]);
            goto out;
        }
        seen[j] = k + 1;
        rd->inv[j] = k;
    }
    for (size_t j = 0; j < n; j++) {
        rd->types[j] = fv_schema_column_type(s, j);
        if (seen[j] != 0)
            continue;
        if ((flags & FV_DATASET_TARGET_OPTIONAL) && rd->types[j] == FV_COL_TARGET) {
            rd->inv[j] = SIZE_MAX;
            continue;
        }
        r = fv_diag_set(d, FV_ESCHEMA,
                        "%s:%zu: column '%s': in the schema but missing from the header; "
                        "expected all %zu schema columns",
                        fn, rd->header_line,
                        fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, j)), n);
        goto out;
    }
    /* Here every header field maps to a distinct schema column, and every schema column
     * but possibly an optional target has a field. */
    *ret = rd;
    rd = NULL;
    r = 0;
out:
    free(seen);
    fv_dataset_reader_free(rd);
    return r;
}

size_t fv_dataset_reader_header_line(const fv_dataset_reader_t *rd)
{
    return rd->header_line;
}

size_t fv_dataset_reader_line(const fv_dataset_reader_t *rd)
{
    return rd->have_rec ? rd->rec.line : 0;
}

const char *fv_dataset_reader_field(const fv_dataset_reader_t *rd, size_t col)
{
    if (!rd->have_rec || !rd->rec_ok || col >= rd->n || rd->inv[col] == SIZE_MAX)
        return NULL;
    return rd->rec.fields[rd->inv[col]];
}

size_t fv_dataset_reader_field_number(const fv_dataset_reader_t *rd, size_t col)
{
    if (rd == NULL || col >= rd->n || rd->inv[col] == SIZE_MAX)
        return 0;
    return rd->inv[col] + 1;
}

/* Decodes the fields of rd->rec into row[] (n_cols) and *label. 0 or FV_E* with d set. */
static int decode_record(fv_dataset_reader_t *rd, double *row, int32_t *label, fv_diag_t *d)
{
    const fv_schema_t *s = rd->s;
    const fv_csv_record_t *rec = &rd->rec;
    const char *fn = rd->fn;
    const size_t n = rd->n;
    char b1[MSG_BUF], b2[MSG_BUF], lst[300];

    if (rec->n_fields != rd->n_hdr) {
        const size_t nh = rd->n_hdr;
        if (rec->n_fields > nh)
            return fv_diag_set(d, FV_EPARSE,
                               "%s:%zu:%zu: row has %zu fields, the header has %zu; expected "
                               "%zu fields (an unquoted comma in a value?)",
                               fn, rec->line, nh + 1, rec->n_fields, nh, nh);
        /* name the first absent field's column: find j with inv[j] == n_fields */
        const char *nm = "";
        for (size_t j = 0; j < n; j++)
            if (rd->inv[j] == rec->n_fields)
                nm = fv_schema_column_name(s, j);
        return fv_diag_set(d, FV_EPARSE,
                           "%s:%zu:%zu: column '%s': row has %zu fields, the header has "
                           "%zu; expected %zu fields (a missing comma?)",
                           fn, rec->line, rec->n_fields + 1, fv__msg_str(b1, sizeof b1, nm),
                           rec->n_fields, nh, nh);
    }
    *label = -1;
    for (size_t j = 0; j < n; j++) {
        if (rd->inv[j] == SIZE_MAX) { /* optional target, absent from the header */
            row[j] = NAN;
            continue;
        }
        const char *cell = rec->fields[rd->inv[j]];
        const size_t col = rd->inv[j] + 1;
        switch (rd->types[j]) {
        case FV_COL_NUMERIC: {
            double v = 0;
            int k;
            if (cell_is_missing(cell)) {
                row[j] = NAN;
                break;
            }
            k = cell_number(cell, rd->loc, &v);
            if (k == FV__NUM_TEXT)
                return fv_diag_set(d, FV_ESCHEMA,
                                   "%s:%zu:%zu: column '%s': \"%s\" is not a number; expected "
                                   "a number like 12, -3.5 or 1e-3, or an empty cell or NA "
                                   "for a missing value",
                                   fn, rec->line, col,
                                   fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, j)),
                                   fv__msg_str(b2, sizeof b2, cell));
            if (k == FV__NUM_NONFINITE)
                return fv_diag_set(d, FV_ESCHEMA,
                                   "%s:%zu:%zu: column '%s': non-finite number \"%s\"; "
                                   "expected a finite number (write a missing value as an "
                                   "empty cell or NA)",
                                   fn, rec->line, col,
                                   fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, j)),
                                   fv__msg_str(b2, sizeof b2, cell));
            row[j] = v;
            break;
        }
        case FV_COL_CATEGORICAL: {
            if (fv__dataset_cat_cell(s, j, cell, &row[j]) != 0) {
                if (rd->flags & FV_DATASET_UNKNOWN_MISSING) {
                    row[j] = FV_CELL_MISSING;
                    break;
                }
                fv__dataset_list_cats(lst, sizeof lst, s, j, false);
                return fv_diag_set(d, FV_ESCHEMA,
                                   "%s:%zu:%zu: column '%s': unknown category \"%s\"; "
                                   "expected one of %s (to score such rows: eval/predict "
                                   "--unknown-category missing; to train with them: "
                                   "unknown_category \"other\" in the schema)",
                                   fn, rec->line, col,
                                   fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, j)),
                                   fv__msg_str(b2, sizeof b2, cell), lst);
            }
            break;
        }
        case FV_COL_TARGET: {
            long k;
            row[j] = NAN;
            if (rd->flags & FV_DATASET_TARGET_OPTIONAL) {
                k = fv_schema_is_missing(cell) ? -1 : fv_schema_class_of(s, cell);
                *label = k < 0 ? -1 : (int32_t)k;
                break;
            }
            if (fv_schema_is_missing(cell))
                return fv_diag_set(d, FV_ESCHEMA,
                                   "%s:%zu:%zu: column '%s': missing target label (empty or "
                                   "NA); expected a class label in every row",
                                   fn, rec->line, col,
                                   fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, j)));
            k = fv_schema_class_of(s, cell);
            if (k < 0) {
                fv__dataset_list_cats(lst, sizeof lst, s, j, true);
                return fv_diag_set(d, FV_ESCHEMA,
                                   "%s:%zu:%zu: column '%s': unknown target label \"%s\"; "
                                   "expected one of %s",
                                   fn, rec->line, col,
                                   fv__msg_str(b1, sizeof b1, fv_schema_column_name(s, j)),
                                   fv__msg_str(b2, sizeof b2, cell), lst);
            }
            *label = (int32_t)k;
            break;
        }
        case FV_COL_IGNORED:
        default:
            row[j] = NAN;
            break;
        }
    }
    return 0;
}

int fv_dataset_reader_next(fv_dataset_reader_t *rd, double *ret_cells, int32_t *ret_label,
                           fv_diag_t *d)
{
    int r;
    if (rd == NULL || ret_cells == NULL || ret_label == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_dataset_reader_next: reader and outputs are required");
    rd->have_rec = false;
    rd->rec_ok = false;
    r = fv_csv_next(rd->csv, &rd->rec, d);
    if (r <= 0)
        return r; /* end, or a CSV syntax error (sticky: the reader cannot resync) */
    rd->have_rec = true;
    rd->rec_ok = rd->rec.n_fields == rd->n_hdr;
    r = decode_record(rd, ret_cells, ret_label, d);
    rd->row_err = r;
    return r == 0 ? FV_DATASET_ROW : FV_DATASET_BAD_ROW;
}

static int ds_load_csv(fv_csv_t *c, const fv_schema_t *s, unsigned flags, fv_dataset_t **ret,
                       fv_diag_t *d)
{
    const char *fn = fv_csv_name(c);
    const size_t n = fv_schema_n_columns(s);
    fv_dataset_reader_t *rd = NULL;
    fv_dataset_t *ds = NULL;
    size_t cap_rows = 0;
    int32_t label;
    int r;

    r = fv_dataset_reader_new(c, s, flags & FV_DATASET_UNKNOWN_MISSING, &rd, d);
    if (r < 0)
        goto out;
    ds = calloc(1, sizeof *ds);
    if (ds == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "%s: out of memory loading the data", fn);
        goto out;
    }
    ds->schema = s;
    ds->n_cols = n;

    /* Each row is decoded straight into its place in the matrix (no copy): the rows
     * after a bad one are never read, so a half-written last row is never counted. */
    for (;;) {
        size_t line;
        if (ds->n_rows == cap_rows && (r = fv__dataset_grow(ds, &cap_rows, c)) < 0) {
            size_t at = ds->n_rows ? fv_dataset_reader_line(rd) : fv_dataset_reader_header_line(rd);
            fv_diag_set(d, r, "%s:%zu: out of memory after %zu rows", fn, at, ds->n_rows);
            goto out;
        }
        r = fv_dataset_reader_next(rd, ds->cells + ds->n_rows * n, &label, d);
        if (r != FV_DATASET_ROW)
            break;
        line = fv_dataset_reader_line(rd);
        ds->label[ds->n_rows] = label;
        ds->line[ds->n_rows] = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
        ds->n_rows++;
    }
    if (r == FV_DATASET_BAD_ROW) {
        r = rd->row_err; /* d names the row; loading stops at the first bad one */
        goto out;
    }
    if (r < 0)
        goto out;
    if (ds->n_rows == 0) {
        r = fv_diag_set(d, FV_EEMPTY,
                        "%s:%zu: header but no data rows; expected at least one row after the "
                        "header",
                        fn, fv_dataset_reader_header_line(rd) + 1);
        goto out;
    }
    *ret = ds;
    ds = NULL;
    r = 0;
out:
    fv_dataset_free(ds);
    fv_dataset_reader_free(rd);
    return r;
}

int fv_dataset_load_flags(const char *path, const fv_schema_t *s, unsigned flags,
                          fv_dataset_t **ret, fv_diag_t *d)
{
    fv_csv_t *c = NULL;
    int r;
    if (s == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_dataset_load: schema and ret are required");
    r = fv_csv_open(path, 0, &c, d);
    if (r < 0)
        return r;
    r = ds_load_csv(c, s, flags, ret, d);
    fv_csv_free(c);
    return r;
}

int fv_dataset_load(const char *path, const fv_schema_t *s, fv_dataset_t **ret, fv_diag_t *d)
{
    return fv_dataset_load_flags(path, s, 0, ret, d);
}

int fv_dataset_load_mem(const char *name, const char *buf, size_t len, const fv_schema_t *s,
                        fv_dataset_t **ret, fv_diag_t *d)
{
    fv_csv_t *c = NULL;
    int r;
    if (s == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_dataset_load_mem: schema and ret are required");
    r = fv_csv_open_mem(name, buf, len, &c, d);
    if (r < 0)
        return r;
    r = ds_load_csv(c, s, 0, ret, d);
    fv_csv_free(c);
    return r;
}

/* One pass when inference keeps the rows (fv__schema_infer_keep), else inference then
 * loading, each over its own reader: name is the path, or the buffer's name when buf is
 * not NULL. */
static int ds_infer_load(const char *name, const char *buf, size_t len,
                         const fv_schema_infer_opts_t *o, fv_schema_t **ret_schema,
                         fv_dataset_t **ret_ds, fv_diag_t *d)
{
    fv_csv_t *c = NULL;
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    int r;
    if (ret_schema == NULL || ret_ds == NULL)
        return fv_diag_set(d, FV_EINVAL,
                           "fv_dataset_infer_load: ret_schema and ret_ds are required");
    r = buf != NULL ? fv_csv_open_mem(name, buf, len, &c, d) : fv_csv_open(name, 0, &c, d);
    if (r < 0)
        return r;
    r = fv__schema_infer_keep(c, o, &s, &ds, d);
    fv_csv_free(c);
    if (r == 0 && ds == NULL)
        r = buf != NULL ? fv_dataset_load_mem(name, buf, len, s, &ds, d)
                        : fv_dataset_load(name, s, &ds, d);
    if (r < 0) {
        fv_schema_free(s);
        return r;
    }
    *ret_schema = s;
    *ret_ds = ds;
    return 0;
}

int fv_dataset_infer_load(const char *path, const fv_schema_infer_opts_t *o,
                          fv_schema_t **ret_schema, fv_dataset_t **ret_ds, fv_diag_t *d)
{
    return ds_infer_load(path, NULL, 0, o, ret_schema, ret_ds, d);
}

int fv_dataset_infer_load_mem(const char *name, const char *buf, size_t len,
                              const fv_schema_infer_opts_t *o, fv_schema_t **ret_schema,
                              fv_dataset_t **ret_ds, fv_diag_t *d)
{
    if (buf == NULL)
        return fv_diag_set(d, FV_EINVAL, "fv_dataset_infer_load_mem: buf is required");
    return ds_infer_load(name, buf, len, o, ret_schema, ret_ds, d);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

int fv_dataset_split(const fv_dataset_t *ds, const size_t *rows, size_t n, double test_fraction,
                     uint64_t seed, size_t **ret_train, size_t *ret_n_train, size_t **ret_test,
                     size_t *ret_n_test)
{
    size_t k_classes, *start = NULL, *fill = NULL, *order = NULL, *train = NULL, *test = NULL;
    size_t n_train = 0, n_test = 0;
    fv_rng_t rng;
    int r = FV_EINVAL;

    if (ds == NULL || ret_train == NULL || ret_n_train == NULL || ret_test == NULL ||
        ret_n_test == NULL || !(test_fraction >= 0.0 && test_fraction < 1.0))
        return FV_EINVAL;
    if (rows == NULL)
        n = ds->n_rows;
    k_classes = fv_schema_n_classes(ds->schema);
    for (size_t i = 0; i < n; i++) {
        size_t row = rows != NULL ? rows[i] : i;
        if (row >= ds->n_rows || ds->label[row] < 0 || (size_t)ds->label[row] >= k_classes)
            return FV_EINVAL;
    }

    r = FV_ENOMEM;
    start = calloc(k_classes + 1, sizeof *start);
    fill = calloc(k_classes, sizeof *fill);
    order = malloc((n ? n : 1) * sizeof *order);
    train = malloc((n ? n : 1) * sizeof *train);
    test = malloc((n ? n : 1) * sizeof *test);
    if (start == NULL || fill == NULL || order == NULL || train == NULL || test == NULL)
        goto out;

    /* Counting sort by class, stable: order holds each class's rows in input order. */
    for (size_t i = 0; i < n; i++)
        start[ds->label[rows != NULL ? rows[i] : i] + 1]++;
    for (size_t c = 0; c < k_classes; c++)
        start[c + 1] += start[c];
    for (size_t i = 0; i < n; i++) {
        size_t row = rows != NULL ? rows[i] : i;
        size_t c = (size_t)ds->label[row];
        order[start[c] + fill[c]++] = row;
    }

    fv_rng_seed(&rng, seed);
    for (size_t c = 0; c < k_classes; c++) {
        size_t nc = start[c + 1] - start[c];
        size_t nt = (size_t)floor(test_fraction * (double)nc + 0.5);
        if (nt > nc)
            nt = nc;
        fv_rng_shuffle(&rng, order + start[c], nc);
        for (size_t i = 0; i < nc; i++) {
            if (i < nt)
                test[n_test++] = order[start[c] + i];
            else
                train[n_train++] = order[start[c] + i];
        }
    }
    qsort(train, n_train, sizeof *train, cmp_size);
    qsort(test, n_test, sizeof *test, cmp_size);
    *ret_train = train;
    *ret_n_train = n_train;
    *ret_test = test;
    *ret_n_test = n_test;
    train = test = NULL;
    r = 0;
out:
    free(start);
    free(fill);
    free(order);
    free(train);
    free(test);
    return r;
}

void fv_dataset_labels(const fv_dataset_t *ds, const size_t *rows, size_t n, int32_t *out)
{
    if (ds == NULL || out == NULL)
        return;
    /* rows == NULL: rows 0..n-1 (n == ds->n_rows gives all); never read past the end. */
    if (rows == NULL && n > ds->n_rows)
        n = ds->n_rows;
    for (size_t i = 0; i < n; i++) {
        size_t row = rows != NULL ? rows[i] : i;
        out[i] = row < ds->n_rows ? ds->label[row] : -1;
    }
}
