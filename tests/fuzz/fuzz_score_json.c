/* fuzz_score_json.c - fuzz target for the scoring request's decoder (fv_score_json.h).
 *
 * The input is a request body. It is parsed with fixed caps (16 rows, 64 KiB, and once
 * more with a byte cap one below its size) and, when it parses, bound to a fixed small
 * schema (numeric "age", categorical "city" of lyon/paris, ignored "id", target "y")
 * under both unknown-category policies, then the good rows go through the preprocessing
 * a model would apply. Properties (a violation abort()s):
 *   - a refusal is FV_EPARSE, FV_EPROTO or FV_ETOOBIG (never FV_ENOMEM or FV_EINVAL for
 *     these small inputs), fills its sentence and leaves *ret alone (a sentinel);
 *   - a parsed request has 1..16 rows, a key of 1..FV_SCORE_KEY_MAX bytes (strlen equal
 *     to the length: no NUL inside) or none;
 *   - bind succeeds; ds.n_rows is the number of good rows, ds_row numbers them in order,
 *     line[] gives back the request row, labels are -1; a bad row's sentence starts with
 *     "row J: " and ends within FV_SCORE_ROW_ERR_MAX bytes; a good row's cells mean what
 *     fv_dataset.h says (numeric finite or NaN; a category index, FV_CELL_MISSING, or
 *     FV_CELL_OTHER only under "other"; ignored and target NaN);
 *   - a row good under policy "error" is good under "other" with the same cells, and
 *     binding twice gives the same bytes;
 *   - fv_preproc_transform accepts the good rows and gives finite features.
 * Everything is freed (LeakSanitizer reports a leak).
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_score_json.h"
#include "model-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_ROWS 16
#define FUZZ_MAX_BYTES ((size_t)1 << 16)

static const char schema_fmt[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\","
    "\"classes\":[\"no\",\"yes\"],\"unknown_category\":\"%s\",\"columns\":["
    "{\"name\":\"age\",\"type\":\"numeric\"},"
    "{\"name\":\"city\",\"type\":\"categorical\",\"categories\":[\"lyon\",\"paris\"]},"
    "{\"name\":\"id\",\"type\":\"ignored\"},"
    "{\"name\":\"y\",\"type\":\"target\"}]}";

static fv_schema_t *schema_for(const char *policy)
{
    char buf[1024];
    fv_schema_t *s = NULL;
    fv_diag_t d;
    snprintf(buf, sizeof buf, schema_fmt, policy);
    if (fv_schema_from_json("fuzz-schema", buf, strlen(buf), &s, &d) != 0)
        abort();
    return s;
}

static void check_refusal(int r, const fv_diag_t *d, const fv_score_json_t *ret,
                          const fv_score_json_t *sentinel)
{
    if (r != FV_EPARSE && r != FV_EPROTO && r != FV_ETOOBIG)
        abort();
    if (d->msg[0] == '\0' || ret != sentinel)
        abort();
}

/* The batch's invariants; returns it for comparisons. */
static fv_score_batch_t *bind_checked(const fv_score_json_t *r, const fv_schema_t *s, bool other)
{
    fv_score_batch_t *b = NULL;
    size_t n = fv_score_json_n_rows(r), n_good = 0, n_cols = fv_schema_n_columns(s);
    if (fv_score_json_bind(r, s, &b) != 0 || b == NULL)
        abort();
    if (b->n_req != n || b->ds.schema != s || b->ds.n_cols != n_cols)
        abort();
    for (size_t j = 0; j < n; j++) {
        const char *e = b->row_err + j * FV_SCORE_ROW_ERR_MAX;
        if (!b->row_ok[j]) {
            char want[32];
            snprintf(want, sizeof want, "row %zu: ", j);
            if (b->ds_row[j] != SIZE_MAX || strncmp(e, want, strlen(want)) != 0 ||
                memchr(e, '\0', FV_SCORE_ROW_ERR_MAX) == NULL)
                abort();
            continue;
        }
        size_t g = b->ds_row[j];
        if (g != n_good++ || e[0] != '\0' || b->ds.line[g] != j || b->ds.label[g] != -1)
            abort();
        const double *x = b->ds.cells + g * n_cols;
        for (size_t c = 0; c < n_cols; c++) {
            switch (fv_schema_column_type(s, c)) {
            case FV_COL_NUMERIC:
                if (isinf(x[c]))
                    abort();
                break;
            case FV_COL_CATEGORICAL:
                if (!(x[c] == FV_CELL_MISSING || (other && x[c] == FV_CELL_OTHER) ||
                      (x[c] >= 0 && x[c] < (double)fv_schema_n_categories(s, c) &&
                       x[c] == floor(x[c]))))
                    abort();
                break;
            case FV_COL_IGNORED:
            case FV_COL_TARGET:
            default:
                if (!isnan(x[c]))
                    abort();
                break;
            }
        }
    }
    if (b->ds.n_rows != n_good)
        abort();
    return b;
}

/* The good rows go through a model's preprocessing (mean 0, std 1). */
static void transform_checked(const fv_score_batch_t *b, const fv_schema_t *s)
{
    double mean[4] = {0, 0, 0, 0}, sd[4] = {1, 1, 1, 1};
    fv_preproc_t *p = NULL;
    if (b->ds.n_rows == 0)
        return;
    if (fv__preproc_from_stats(s, mean, sd, &p) != 0)
        abort();
    size_t nf = fv_preproc_n_features(p);
    float *f = malloc(b->ds.n_rows * nf * sizeof *f);
    if (f == NULL)
        abort();
    if (fv_preproc_transform(p, &b->ds, NULL, b->ds.n_rows, f) != 0)
        abort();
    for (size_t i = 0; i < b->ds.n_rows * nf; i++)
        if (!isfinite(f[i]) && fabs(b->ds.cells[i / nf * b->ds.n_cols]) <= 1e38)
            abort(); /* only an |age| past float32 may give a non-finite feature */
    free(f);
    fv_preproc_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fv_schema_t *s_err, *s_other; /* built once, never freed (still reachable) */
    static char sentinel_byte;           /* an address no parse returns; never dereferenced */
    fv_score_json_t *const sentinel = (fv_score_json_t *)(void *)&sentinel_byte;
    fv_score_json_t *r = sentinel;
    fv_score_json_opts_t o = {.max_bytes = FUZZ_MAX_BYTES, .max_rows = FUZZ_MAX_ROWS};
    fv_diag_t d;
    int e;

    if (s_err == NULL) {
        s_err = schema_for("error");
        s_other = schema_for("other");
    }
    /* The decoder takes (pointer, length): no NUL is added, so ASan sees a read past the
     * end. */
    if (size > 0) {
        fv_score_json_opts_t tight = {.max_bytes = size - 1, .max_rows = FUZZ_MAX_ROWS};
        d.msg[0] = '\0';
        e = fv_score_json_parse((const char *)data, size, &tight, &r, &d);
        if (e != FV_ETOOBIG)
            abort();
        check_refusal(e, &d, r, sentinel);
    }
    d.msg[0] = '\0';
    e = fv_score_json_parse((const char *)data, size, &o, &r, &d);
    if (e != 0) {
        check_refusal(e, &d, r, sentinel);
        return 0;
    }
    if (r == sentinel || r == NULL)
        abort();
    size_t n = fv_score_json_n_rows(r), kl = 0;
    const char *key = fv_score_json_key(r, &kl);
    if (n < 1 || n > FUZZ_MAX_ROWS)
        abort();
    if (key != NULL && (kl < 1 || kl > FV_SCORE_KEY_MAX || strlen(key) != kl))
        abort();
    if (key == NULL && kl != 0)
        abort();
    (void)fv_score_json_explain(r);

    fv_score_batch_t *be = bind_checked(r, s_err, false);
    fv_score_batch_t *bo = bind_checked(r, s_other, true);
    fv_score_batch_t *be2 = bind_checked(r, s_err, false);
    size_t nc = fv_schema_n_columns(s_err);
    if (be2->ds.n_rows != be->ds.n_rows ||
        memcmp(be2->row_err, be->row_err, n * FV_SCORE_ROW_ERR_MAX) != 0 ||
        memcmp(be2->row_ok, be->row_ok, n * sizeof *be->row_ok) != 0)
        abort();
    for (size_t j = 0; j < n; j++) {
        if (!be->row_ok[j])
            continue;
        if (!bo->row_ok[j])
            abort(); /* good under "error" is good under "other" */
        const double *a = be->ds.cells + be->ds_row[j] * nc, *b = bo->ds.cells + bo->ds_row[j] * nc,
                     *c = be2->ds.cells + be2->ds_row[j] * nc;
        for (size_t k = 0; k < nc; k++) {
            bool same_ab = (isnan(a[k]) && isnan(b[k])) || memcmp(&a[k], &b[k], sizeof *a) == 0;
            bool same_ac = (isnan(a[k]) && isnan(c[k])) || memcmp(&a[k], &c[k], sizeof *a) == 0;
            if (!same_ab || !same_ac)
                abort();
        }
    }
    transform_checked(be, s_err);
    transform_checked(bo, s_other);
    fv_score_batch_free(be);
    fv_score_batch_free(be2);
    fv_score_batch_free(bo);
    fv_score_json_free(r);
    return 0;
}
