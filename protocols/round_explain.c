/* round_explain.c - the explain round kind (fv_round_explain.h says what it computes, its
 * vectors, why the secure sum cannot wrap and what the coordinator checks).
 *
 *   explain  round fv_job_last_round of a job with "explain": true. An agent explains
 *            every validation row with the job's final training model (one fv_explain
 *            per compute, so per worker thread) and adds up, per explained column, the
 *            clipped |contribution|, with its row counts; the coordinator decodes the
 *            cohort's mean per column. No apply: no model changes.
 *
 * Invariants: agent and coordinator size the vector from the job's schema alone
 * (fv_round_explain_columns), so both hold the same C; the compute writes only its work
 * item; sums run in a fixed order (rows, then columns), so a round run again sends the
 * same vector.
 *
 * Ownership: a decoded explanation owns its two arrays (fv_round_explanation_close, called
 * by fv_round_outcome_close). Threads: the compute on any thread; the rest is pure.
 */
#include "fv_round_explain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fv_explain.h"
#include "fv_fed.h"

/* Plain and decoded column sums may exceed rows * CAP by float32 rounding at most. */
#define SUM_SLACK (1.0 + 0x1p-20)

size_t fv_round_explain_columns(const fv_schema_t *s, size_t *cols)
{
    size_t n = 0, nc = s != NULL ? fv_schema_n_columns(s) : 0;
    for (size_t j = 0; j < nc; j++) {
        fv_col_type_t t = fv_schema_column_type(s, j);
        if (t != FV_COL_NUMERIC && t != FV_COL_CATEGORICAL)
            continue;
        if (cols != NULL)
            cols[n] = j;
        n++;
    }
    return n;
}

void fv_round_explanation_close(fv_round_explanation_t *e)
{
    free(e->column);
    free(e->mean_abs);
    memset(e, 0, sizeof *e);
}

static uint64_t explain_rounds(const fv_job_t *job)
{
    return job->explain ? 1 : 0;
}

static int explain_shape(const fv_round_sizes_t *z, fv_round_shape_t *ret, fv_diag_t *d)
{
    memset(ret, 0, sizeof *ret);
    size_t C = z->job != NULL ? fv_round_explain_columns(z->job->schema, NULL) : 0;
    if (C == 0)
        return fv_diag_set(d, FV_EINVAL, "explain round: the schema has no column to explain");
    if (C > (UINT32_MAX - 16) / FV_FED_EXACT_WORDS)
        return fv_diag_set(d, FV_ERANGE, "explain round: %zu columns", C);
    ret->words = (uint32_t)(2 + C * FV_FED_EXACT_WORDS);
    ret->plain_n = 2 + C;
    ret->plain_dtype = FV_VEC_F32;
    return 0;
}

/* The agent's sums: per explained column the clipped |contribution| over its validation
 * rows (sums, C doubles), and the rows with a clipped column. */
static int explain_rows(const fv_round_data_t *j, const float *params, const size_t *cols, size_t C,
                        double *sums, uint64_t *ret_clipped, fv_diag_t *d)
{
    const fv_schema_t *s = j->job->schema;
    fv_mlp_t *m = NULL;
    fv_explain_t *e = NULL;
    double *contrib =
        malloc((fv_schema_n_columns(s) ? fv_schema_n_columns(s) : 1) * sizeof *contrib);
    uint64_t clipped = 0;
    int r = contrib == NULL ? FV_ENOMEM : fv_mlp_new(j->arch, &m);
    if (r != 0) {
        fv_diag_set(d, r, "explain: out of memory");
        goto out;
    }
    memcpy(fv_mlp_params(m), params, j->n_params * sizeof(float));
    if ((r = fv_explain_new(m, j->pp, s, FV_ROUND_EXPLAIN_STEPS, &e)) != 0) {
        fv_diag_set(d, r, "explain: the model does not fit the schema's features: %s",
                    fv_strerror(r));
        goto out;
    }
    size_t out_ix = j->arch->n_out == 1 ? 0 : FV_EXPLAIN_PREDICTED;
    for (size_t i = 0; i < j->n_va; i++) {
        fv_explain_result_t res;
        if ((r = fv_explain_row(e, j->x_va + i * j->n_feat, out_ix, contrib, &res)) != 0) {
            fv_diag_set(d, r, "explain: validation row %zu: %s", i, fv_strerror(r));
            goto out;
        }
        bool cl = false;
        for (size_t k = 0; k < C; k++) {
            double a = fabs(contrib[cols[k]]);
            if (isnan(a)) {
                r = fv_diag_set(d, FV_ENUMERIC, "explain: validation row %zu: a NaN contribution",
                                i);
                goto out;
            }
            if (a > FV_ROUND_EXPLAIN_CAP) {
                a = FV_ROUND_EXPLAIN_CAP;
                cl = true;
            }
            sums[k] += a;
        }
        clipped += cl;
    }
    *ret_clipped = clipped;
out:
    fv_explain_free(e);
    fv_mlp_free(m);
    free(contrib);
    return r;
}

static int explain_compute(const fv_round_data_t *j, fv_round_work_t *w)
{
    const fv_schema_t *s = j->job->schema;
    size_t *cols = malloc((fv_schema_n_columns(s) ? fv_schema_n_columns(s) : 1) * sizeof *cols);
    size_t C = fv_round_explain_columns(s, cols);
    double *sums = calloc(C ? C : 1, sizeof *sums);
    uint64_t clipped = 0;
    int r = 0;
    if (cols == NULL || sums == NULL) {
        r = fv_diag_set(&w->d, FV_ENOMEM, "explain: out of memory");
        goto out;
    }
    if (w->global == NULL || j->pp == NULL || j->x_va == NULL) {
        r = fv_diag_set(&w->d, FV_EINVAL, "explain: no final model or no features");
        goto out;
    }
    if (j->n_va > FV_FED_RAW_MAX) {
        r = fv_diag_set(&w->d, FV_EOVERFLOW,
                        "explain: %zu validation rows, more than the %u one agent may add "
                        "without risking a wrap of the cohort's sum",
                        j->n_va, FV_FED_RAW_MAX);
        goto out;
    }
    if (C == 0 || (r = explain_rows(j, w->global, cols, C, sums, &clipped, &w->d)) != 0) {
        if (r == 0)
            r = fv_diag_set(&w->d, FV_EINVAL, "explain: the schema has no column to explain");
        goto out;
    }
    if (w->secagg) {
        w->dim = 2 + C * FV_FED_EXACT_WORDS;
        if ((w->words = calloc(w->dim, sizeof *w->words)) == NULL) {
            r = fv_diag_set(&w->d, FV_ENOMEM, "explain: out of memory");
            goto out;
        }
        w->words[0] = (uint32_t)j->n_va;
        w->words[1] = (uint32_t)clipped;
        for (size_t k = 0; k < C && r == 0; k++)
            if ((r = fv_fed_exact_encode(sums[k], w->words + 2 + k * FV_FED_EXACT_WORDS)) != 0)
                fv_diag_set(&w->d, r, "explain: column %zu's sum %g cannot be encoded", cols[k],
                            sums[k]);
    } else {
        w->dim = 2 + C;
        if ((w->fvec = malloc(w->dim * sizeof *w->fvec)) == NULL) {
            r = fv_diag_set(&w->d, FV_ENOMEM, "explain: out of memory");
            goto out;
        }
        w->fvec[0] = (float)j->n_va;
        w->fvec[1] = (float)clipped;
        for (size_t k = 0; k < C; k++)
            w->fvec[2 + k] = (float)sums[k];
    }
out:
    free(cols);
    free(sums);
    w->rc = r;
    return r;
}

static int explain_check(const fv_round_sizes_t *z, const fv_round_shape_t *s, const void *vec,
                         fv_diag_t *d)
{
    (void)z;
    const float *v = vec;
    for (uint64_t i = 0; i < s->plain_n; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return fv_diag_set(d, FV_EPEER,
                               "explain vector: element %llu is %g; expected finite and >= 0",
                               (unsigned long long)i, (double)v[i]);
    double rows = v[0], clipped = v[1];
    if (rows != floor(rows) || rows > FV_FED_RAW_MAX)
        return fv_diag_set(d, FV_EPEER,
                           "explain vector: element 0 (rows) is %g; expected a whole number "
                           "0..%u",
                           rows, FV_FED_RAW_MAX);
    if (clipped != floor(clipped) || clipped > rows)
        return fv_diag_set(d, FV_EPEER,
                           "explain vector: element 1 (clipped rows) is %g; expected a whole "
                           "number 0..%g (the rows)",
                           clipped, rows);
    double max = rows * FV_ROUND_EXPLAIN_CAP * SUM_SLACK;
    for (uint64_t i = 2; i < s->plain_n; i++)
        if ((double)v[i] > max)
            return fv_diag_set(d, FV_EPEER,
                               "explain vector: element %llu (a column's sum) is %g, more than "
                               "%g rows * the cap %g",
                               (unsigned long long)i, (double)v[i], rows, FV_ROUND_EXPLAIN_CAP);
    return 0;
}

static int explain_decode(const fv_round_sizes_t *z, const fv_round_shape_t *s,
                          const fv_round_sum_t *sum, double n_ref, fv_round_outcome_t *ret,
                          fv_diag_t *d)
{
    (void)n_ref;
    memset(ret, 0, sizeof *ret);
    const fv_schema_t *sc = z->job->schema;
    size_t C = (size_t)s->plain_n - 2;
    uint32_t n = sum->n_summands;
    if (n == 0)
        return fv_diag_set(d, FV_EEMPTY, "explain: no agent contributed");
    if (n > FV_FED_MAX_AGENTS)
        return fv_diag_set(d, FV_EOVERFLOW,
                           "explain: %u agents, more than the %u whose sums "
                           "cannot wrap",
                           n, FV_FED_MAX_AGENTS);
    if (sum->secagg ? sum->words == NULL : sum->fsum == NULL)
        return fv_diag_set(d, FV_EINVAL, "explain: no sum");
    double rows = sum->secagg ? (double)sum->words[0] : sum->fsum[0];
    double clipped = sum->secagg ? (double)sum->words[1] : sum->fsum[1];
    if (!(rows >= 1))
        return fv_diag_set(d, FV_EEMPTY, "explain: the cohort has no validation rows");
    if (!(clipped >= 0 && clipped <= rows) || rows > (double)n * FV_FED_RAW_MAX)
        return fv_diag_set(d, FV_EPEER,
                           "explain: the sum holds %g rows and %g clipped rows from %u agents",
                           rows, clipped, n);
    fv_round_explanation_t *e = &ret->expl;
    e->column = malloc(C * sizeof *e->column);
    e->mean_abs = malloc(C * sizeof *e->mean_abs);
    if (e->column == NULL || e->mean_abs == NULL || fv_round_explain_columns(sc, NULL) != C) {
        int r = e->column == NULL || e->mean_abs == NULL ? FV_ENOMEM : FV_EINVAL;
        fv_round_explanation_close(e);
        return fv_diag_set(d, r, "explain: %s",
                           r == FV_ENOMEM ? "out of memory" : "the sum does not fit the schema");
    }
    fv_round_explain_columns(sc, e->column);
    e->n_columns = C;
    e->rows = (uint64_t)rows;
    e->clipped_rows = (uint64_t)clipped;
    double lo = -(double)n * 0x1p-32, hi = rows * FV_ROUND_EXPLAIN_CAP * SUM_SLACK;
    for (size_t k = 0; k < C; k++) {
        double x = sum->secagg
                       ? (double)fv_fed_exact_decode(sum->words + 2 + k * FV_FED_EXACT_WORDS)
                       : sum->fsum[2 + k];
        if (!(x >= lo && x <= hi)) {
            fv_diag_set(d, FV_EPEER,
                        "explain: column '%s' sums to %g over %g rows: not within 0..%g (rows "
                        "* the cap); a malformed input",
                        fv_schema_column_name(sc, e->column[k]), x, rows, hi);
            fv_round_explanation_close(e);
            return FV_EPEER;
        }
        e->mean_abs[k] = (x > 0 ? x : 0) / rows;
    }
    ret->has_explanation = true;
    return 0;
}

const fv_round_kind_t fv__round_kind_explain = {.id = FV_FED_KIND_EXPLAIN,
                                                .name = "explain",
                                                .needs =
                                                    FV_ROUND_NEEDS_FINAL | FV_ROUND_NEEDS_FEATURES,
                                                .n_rounds = explain_rounds,
                                                .shape = explain_shape,
                                                .compute = explain_compute,
                                                .plain_check = explain_check,
                                                .decode = explain_decode,
                                                .apply = NULL};

const fv_round_kind_t *fv_round_kind_explain(void)
{
    return &fv__round_kind_explain;
}
