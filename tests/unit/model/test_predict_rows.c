/* test_predict_rows.c - fv_model_predict_ws_rows: a verdict per row, good rows unchanged.
 *
 * On the German credit data (a logistic regression, an MLP, a multi-class MLP), a copy of
 * the dataset gets rows whose credit_amount overflows float32 once standardized (1e45):
 * those rows must come back with that column and NaN scores; every other row's score must
 * be the bits fv_model_predict_ws gives for the same chunk layout, both on the modified
 * data (where fv_model_predict_ws feeds the infinite feature into the gemm: a bad row
 * must not poison its chunk) and on the original data (the bad value moves no other row).
 * A hand-built network whose hidden units overflow to inf - inf gives FV_MODEL_BAD_OUTPUT
 * with finite features, and so does a logit of +inf whose sigmoid is a finite 1.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_dataset.h"
#include "fv_mlp.h"
#include "fv_model.h"
#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "model-int.h"

typedef struct fixture {
    fv_model_t *model;
    fv_dataset_t *ds; /* borrows model->schema */
} fixture_t;

static fixture_t build_german(const char *target, const char *positive, const char *arch_spec)
{
    char path[1024];
    fv_diag_t d = {{0}};
    fv_diag_t *dp = &d;
    fv_schema_infer_opts_t opts;
    fv_schema_t *s = NULL;
    fv_preproc_t *pp = NULL;
    fv_mlp_t *mlp = NULL;
    fv_mlp_arch_t arch;
    fixture_t f;

    fv_test_src("examples/data/german_credit.csv", path, sizeof path);
    memset(&opts, 0, sizeof opts);
    opts.target = target;
    opts.positive = positive;
    CHECK_OK(fv_schema_infer(path, &opts, &s, dp), dp);
    CHECK_OK(fv_dataset_load(path, s, &f.ds, dp), dp);
    CHECK_OK(fv_preproc_fit(f.ds, NULL, f.ds->n_rows, &pp), NULL);
    CHECK_OK(
        fv_mlp_parse_arch(arch_spec, fv_preproc_n_features(pp), fv_schema_n_classes(s), &arch, dp),
        dp);
    CHECK_OK(fv_mlp_new(&arch, &mlp), NULL);
    fv_mlp_init(mlp, 42);
    CHECK_OK(fv_model_new(s, pp, mlp, NULL, &f.model), NULL);
    return f;
}

/* A deep copy of ds's rows (same schema). */
static fv_dataset_t *ds_copy(const fv_dataset_t *ds)
{
    fv_dataset_t *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    *c = *ds;
    c->cells = malloc(ds->n_rows * ds->n_cols * sizeof *c->cells);
    c->label = malloc(ds->n_rows * sizeof *c->label);
    c->line = malloc(ds->n_rows * sizeof *c->line);
    CHECK(c->cells != NULL && c->label != NULL && c->line != NULL);
    memcpy(c->cells, ds->cells, ds->n_rows * ds->n_cols * sizeof *c->cells);
    memcpy(c->label, ds->label, ds->n_rows * sizeof *c->label);
    memcpy(c->line, ds->line, ds->n_rows * sizeof *c->line);
    return c;
}

/* Every feature maps back to the column its name starts with. */
static void check_feature_columns(const fv_model_t *m)
{
    const fv_preproc_t *p = m->preproc;
    size_t nf = fv_preproc_n_features(p);
    for (size_t j = 0; j < nf; j++) {
        char name[512];
        long c = fv_preproc_feature_column(p, j);
        CHECK(c >= 0);
        const char *cn = fv_schema_column_name(m->schema, (size_t)c);
        fv_preproc_feature_name(p, j, name, sizeof name);
        CHECK(strncmp(name, cn, strlen(cn)) == 0);
        CHECK(name[strlen(cn)] == '\0' || name[strlen(cn)] == '=');
    }
    CHECK_INT_EQ(fv_preproc_feature_column(p, nf), -1);
    CHECK_INT_EQ(fv_preproc_feature_column(NULL, 0), -1);
}

static void test_overflow_rows(const char *target, const char *positive, const char *arch)
{
    fixture_t f = build_german(target, positive, arch);
    const fv_model_t *m = f.model;
    size_t n_out = fv_mlp_arch(m->mlp)->n_out, n_rows = f.ds->n_rows, n_cols = f.ds->n_cols;
    long amt = fv_schema_column_index(m->schema, "credit_amount");
    CHECK(amt >= 0);
    check_feature_columns(m);

    fv_dataset_t *bad = ds_copy(f.ds);
    static const size_t bad_rows[] = {0, 5, 6, 63, 64, 999};
    for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++)
        bad->cells[bad_rows[i] * n_cols + (size_t)amt] = i % 2 ? -1e45 : 1e45;

    size_t n_list = 1500;
    size_t *list = malloc(n_list * sizeof *list);
    float *got = malloc(n_list * n_out * sizeof *got);
    float *want_bad = malloc(n_list * n_out * sizeof *want_bad);
    float *want_orig = malloc(n_list * n_out * sizeof *want_orig);
    long *verdict = malloc(n_list * sizeof *verdict);
    CHECK(list != NULL && got != NULL && want_bad != NULL && want_orig != NULL && verdict != NULL);
    for (size_t i = 0; i < n_list; i++)
        list[i] = (i * 7 + 5) % n_rows;

    static const size_t batches[] = {1, 7, 64, FV_MODEL_PREDICT_CHUNK};
    size_t n_bad_seen = 0;
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        fv_model_ws_t *ws = NULL;
        CHECK_OK(fv_model_ws_new(m, batches[b], &ws), NULL);
        for (int use_list = 0; use_list < 2; use_list++) {
            const size_t *rows = use_list ? list : NULL;
            size_t n = use_list ? n_list : n_rows;
            CHECK_OK(fv_model_predict_ws_rows(m, ws, bad, rows, n, got, verdict), NULL);
            CHECK_OK(fv_model_predict_ws(m, ws, bad, rows, n, want_bad), NULL);
            CHECK_OK(fv_model_predict_ws(m, ws, f.ds, rows, n, want_orig), NULL);
            for (size_t i = 0; i < n; i++) {
                size_t row = rows ? rows[i] : i;
                bool is_bad = false;
                for (size_t k = 0; k < sizeof bad_rows / sizeof bad_rows[0]; k++)
                    is_bad |= bad_rows[k] == row;
                if (is_bad) {
                    n_bad_seen++;
                    CHECK_INT_EQ(verdict[i], amt);
                    for (size_t c = 0; c < n_out; c++)
                        CHECK(isnan(got[i * n_out + c]));
                    continue;
                }
                if (verdict[i] != -1)
                    fprintf(stderr, "%s: row %zu verdict %ld\n", arch, row, verdict[i]);
                CHECK_INT_EQ(verdict[i], -1);
                CHECK(memcmp(got + i * n_out, want_bad + i * n_out, n_out * sizeof *got) == 0);
                CHECK(memcmp(got + i * n_out, want_orig + i * n_out, n_out * sizeof *got) == 0);
            }
        }
        /* n == 0 scores nothing; ret_bad is required otherwise */
        CHECK_OK(fv_model_predict_ws_rows(m, ws, bad, NULL, 0, NULL, NULL), NULL);
        CHECK_INT_EQ(fv_model_predict_ws_rows(m, ws, bad, NULL, 3, got, NULL), FV_EINVAL);
        CHECK_INT_EQ(fv_model_predict_ws_rows(m, NULL, bad, NULL, 3, got, verdict), FV_EINVAL);
        fv_model_ws_free(ws);
    }
    CHECK(n_bad_seen > 0);

    /* the sentence names the column and says what to send */
    char msg[FV_DIAG_MAX];
    CHECK_INT_EQ(fv_model_bad_row_str(m, bad, 5, amt, msg, sizeof msg), amt);
    CHECK_CONTAINS(msg, "column 'credit_amount': value -1e+45 overflows float32 once standardized");
    CHECK_CONTAINS(msg, "expected |value| below");
    /* cut to a small buffer: still NUL-terminated */
    char small[16];
    CHECK_INT_EQ(fv_model_bad_row_str(m, bad, 5, amt, small, sizeof small), amt);
    CHECK_UINT_EQ(strlen(small), sizeof small - 1);
    CHECK_INT_EQ(fv_model_bad_row_str(m, bad, n_rows, amt, msg, sizeof msg), -1);
    CHECK_STR_EQ(msg, "");

    free(verdict);
    free(want_orig);
    free(want_bad);
    free(got);
    free(list);
    fv_dataset_free(bad);
    fv_dataset_free(f.ds);
    fv_model_free(f.model);
}

/* x numeric (mean 0, std 1), c categorical {a, b}; one hidden layer of two units that both
 * compute relu(4x) and an output h1 - h2 (logreg: 4x): at x near FLT_MAX the features are
 * finite and the network is not. */
static const char tiny_schema_json[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\",\"classes\":[\"no\",\"yes\"],"
    "\"unknown_category\":\"error\",\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},"
    "{\"name\":\"c\",\"type\":\"categorical\",\"categories\":[\"a\",\"b\"]},"
    "{\"name\":\"y\",\"type\":\"target\"}]}";

static fv_model_t *build_tiny(size_t n_hidden)
{
    fv_schema_t *s = NULL;
    fv_preproc_t *pp = NULL;
    fv_mlp_t *mlp = NULL;
    fv_model_t *m = NULL;
    fv_diag_t d = {{0}};
    fv_diag_t *dp = &d;
    CHECK_OK(fv_schema_from_json("tiny", tiny_schema_json, strlen(tiny_schema_json), &s, &d), dp);
    const double mean[3] = {0.0, NAN, NAN}, sd[3] = {1.0, NAN, NAN};
    CHECK_OK(fv__preproc_from_stats(s, mean, sd, &pp), NULL);
    fv_mlp_arch_t arch;
    memset(&arch, 0, sizeof arch);
    arch.n_in = 3;
    arch.n_hidden = n_hidden;
    arch.hidden[0] = 2;
    arch.n_out = 1;
    CHECK_OK(fv_mlp_new(&arch, &mlp), NULL);
    float *w = fv_mlp_params(mlp);
    memset(w, 0, fv_mlp_n_params(mlp) * sizeof *w);
    if (n_hidden == 0) {
        w[0] = 4.0f; /* W_0: x -> out; c's weights 0; bias 0 */
    } else {
        /* W_0 (3 x 2, input-major): x feeds both units with 4; b_0 = 0; W_1 = (1, -1) */
        w[0] = 4.0f;
        w[1] = 4.0f;
        w[8] = 1.0f;
        w[9] = -1.0f;
    }
    CHECK_OK(fv_model_new(s, pp, mlp, NULL, &m), NULL);
    return m;
}

static void test_bad_output(size_t n_hidden)
{
    fv_model_t *m = build_tiny(n_hidden);
    fv_dataset_t ds = {0};
    double cells[4 * 3] = {
        1.0,  0.0, NAN, /* good */
        1e38, 1.0, NAN, /* features finite (1e38 < FLT_MAX), network overflows */
        NAN,  1.0, NAN, /* missing x: good */
        1e39, 0.0, NAN, /* the feature itself overflows */
    };
    int32_t label[4] = {-1, -1, -1, -1};
    uint32_t line[4] = {2, 3, 4, 5};
    ds.schema = m->schema;
    ds.n_rows = 4;
    ds.n_cols = 3;
    ds.cells = cells;
    ds.label = label;
    ds.line = line;
    fv_model_ws_t *ws = NULL;
    float prob[4], want[4];
    long verdict[4];
    CHECK_OK(fv_model_ws_new(m, 4, &ws), NULL);
    CHECK_OK(fv_model_predict_ws_rows(m, ws, &ds, NULL, 4, prob, verdict), NULL);
    CHECK_OK(fv_model_predict_ws(m, ws, &ds, NULL, 4, want), NULL);
    CHECK_INT_EQ(verdict[0], -1);
    CHECK_INT_EQ(verdict[1], FV_MODEL_BAD_OUTPUT);
    CHECK_INT_EQ(verdict[2], -1);
    CHECK_INT_EQ(verdict[3], 0);
    CHECK(isnan(prob[1]) && isnan(prob[3]));
    CHECK(memcmp(&prob[0], &want[0], sizeof *prob) == 0);
    CHECK(memcmp(&prob[2], &want[2], sizeof *prob) == 0);
    if (n_hidden == 0)
        CHECK(want[1] == 1.0f); /* sigmoid(+inf): the score alone looks fine */
    else
        CHECK(isnan(want[1])); /* inf - inf */
    char msg[512];
    CHECK_INT_EQ(fv_model_bad_row_str(m, &ds, 1, FV_MODEL_BAD_OUTPUT, msg, sizeof msg), 0);
    CHECK_CONTAINS(msg, "column 'x': score not finite (float32 overflow in the network); value "
                        "1e+38 is 1e+38 standard deviations from the training mean");
    CHECK_INT_EQ(fv_model_bad_row_str(m, &ds, 3, 0, msg, sizeof msg), 0);
    CHECK_CONTAINS(msg, "column 'x': value 1e+39 overflows float32");
    /* no numeric value to blame (x missing), or none far from the mean: no column */
    CHECK_INT_EQ(fv_model_bad_row_str(m, &ds, 2, FV_MODEL_BAD_OUTPUT, msg, sizeof msg), -1);
    CHECK_CONTAINS(msg, "score not finite (float32 overflow in the network) with every value "
                        "within 1000 standard deviations");
    CHECK_CONTAINS(msg, "a damaged model?");
    CHECK_INT_EQ(fv_model_bad_row_str(m, &ds, 0, FV_MODEL_BAD_OUTPUT, msg, sizeof msg), -1);
    cells[0] = 1000.5; /* past the threshold: blamed */
    CHECK_INT_EQ(fv_model_bad_row_str(m, &ds, 0, FV_MODEL_BAD_OUTPUT, msg, sizeof msg), 0);
    CHECK_CONTAINS(msg, "value 1000.5 is 1e+03 standard deviations");
    fv_model_ws_free(ws);
    fv_model_free(m);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    test_overflow_rows("class", "bad", "logreg");
    test_overflow_rows("class", "bad", "mlp:8,4");
    test_overflow_rows("purpose", NULL, "mlp:16");
    test_bad_output(0);
    test_bad_output(1);
    printf("ok\n");
    return 0;
}
