/* fuzz_csv.c - fuzz target for the CSV reader and the schema inference built on it.
 *
 * 1. fv_csv_open_mem + fv_csv_next to the end (or the first error), checking the reader's
 *    own promises: a record has at least one field and fewer than FV_CSV_MAX_FIELDS + 1,
 *    every field is a NUL-terminated string, and line numbers never go backwards.
 * 2. fv_schema_infer_mem with the first header column as the target, as a multi-class
 *    task, then as a binary one whose positive label is that column's value in the first
 *    data row (inference walks a different path for each).
 * 3. When inference succeeds, fv_dataset_load_mem of the same bytes against the inferred
 *    schema: a schema inferred from a file must load that file.
 * 4. fv_dataset_infer_load_mem of the same bytes (one pass when the file is all numeric)
 *    must give what 2 and 3 gave: the same code and message, or the same schema JSON and
 *    the same rows bit for bit (cells, labels, line numbers).
 * Failing is a bug and abort()s, so the fuzzer reports it.
 * Everything is freed (a leak is a bug, and LeakSanitizer reports it).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_csv.h"
#include "fv_dataset.h"
#include "fv_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Step 4: the one-pass path against inference then loading (r, d, s, ds from those). */
static void same_as_one_pass(const char *buf, size_t size, const fv_schema_infer_opts_t *opts,
                             int r, const fv_diag_t *d, const fv_schema_t *s,
                             const fv_dataset_t *ds)
{
    fv_schema_t *s2 = NULL;
    fv_dataset_t *ds2 = NULL;
    fv_diag_t d2;
    char *j1 = NULL, *j2 = NULL;
    size_t n1 = 0, n2 = 0;
    int r2 = fv_dataset_infer_load_mem("fuzz.csv", buf, size, opts, &s2, &ds2, &d2);
    if (r2 != r)
        abort();
    if (r != 0) {
        if (strcmp(d2.msg, d->msg) != 0 || s2 != NULL || ds2 != NULL)
            abort();
        return;
    }
    if (fv_schema_to_json(s, &j1, &n1) != 0 || fv_schema_to_json(s2, &j2, &n2) != 0 || n1 != n2 ||
        memcmp(j1, j2, n1) != 0)
        abort();
    if (ds2->schema != s2 || ds2->n_rows != ds->n_rows || ds2->n_cols != ds->n_cols ||
        memcmp(ds2->cells, ds->cells, ds->n_rows * ds->n_cols * sizeof *ds->cells) != 0 ||
        memcmp(ds2->label, ds->label, ds->n_rows * sizeof *ds->label) != 0 ||
        memcmp(ds2->line, ds->line, ds->n_rows * sizeof *ds->line) != 0)
        abort();
    free(j1);
    free(j2);
    fv_dataset_free(ds2);
    fv_schema_free(s2);
}

static void infer_and_load(const char *buf, size_t size, const char *target, const char *positive)
{
    fv_schema_infer_opts_t opts;
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_diag_t d;
    int r;

    memset(&opts, 0, sizeof opts);
    opts.target = target;
    opts.positive = positive;
    opts.unknown = FV_UNKNOWN_ERROR;
    r = fv_schema_infer_mem("fuzz.csv", buf, size, &opts, &s, &d);
    if (r == 0 && fv_dataset_load_mem("fuzz.csv", buf, size, s, &ds, &d) != 0)
        abort(); /* the file the schema was inferred from must load against it */
    same_as_one_pass(buf, size, &opts, r, &d, s, ds);
    fv_dataset_free(ds);
    fv_schema_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    fv_csv_t *c = NULL;
    fv_csv_record_t rec;
    fv_diag_t d;
    char *target = NULL, *positive = NULL;
    size_t n_records = 0, last_line = 0;
    int r;

    if (fv_csv_open_mem("fuzz.csv", buf, size, &c, &d) != 0)
        return 0;
    while ((r = fv_csv_next(c, &rec, &d)) == 1) {
        if (rec.n_fields == 0 || rec.n_fields > FV_CSV_MAX_FIELDS || rec.line < last_line ||
            rec.line == 0)
            abort();
        size_t total = 0;
        for (size_t i = 0; i < rec.n_fields; i++)
            total += strlen(rec.fields[i]); /* each field must be a valid C string */
        (void)total;
        last_line = rec.line;
        if (n_records == 0)
            target = strdup(rec.fields[0]);
        else if (n_records == 1 && target != NULL)
            positive = strdup(rec.fields[0]);
        n_records++;
    }
    fv_csv_free(c);

    if (target != NULL) {
        infer_and_load(buf, size, target, NULL);
        if (positive != NULL)
            infer_and_load(buf, size, target, positive);
    }
    free(target);
    free(positive);
    return 0;
}
