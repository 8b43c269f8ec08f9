/* test_explain.c - reason codes (model/fv_explain.h).
 *
 * Logistic regression: exactness (bias + contributions == logit, against a logit
 * recomputed here in double to 1e-12 and against the network's float32 logit to 1e-5),
 * one-hot grouping per schema column, multi-class (the predicted class is explained).
 * MLP: the input gradient against central finite differences (a ReLU network is
 * piecewise linear, so away from a kink the difference quotient is exact up to
 * rounding), integrated-gradients completeness with 64 steps, the baseline term equal
 * to the network's logit at the zero vector. Ranking: order, ties, N past the number
 * of columns. Layout mismatches are refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_test.h"

#include "fv_dataset.h"
#include "fv_explain.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_schema.h"

static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;

/* Column order: x (numeric), c (categorical a,b,c [+ <other>]), k (numeric),
 * id (ignored), z (numeric), y (target). Features: x, c=a, c=b, c=c, [c=<other>], k, z. */
static const char schema_json[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":%s,\"classes\":[\"p\",\"q\",\"r\"],"
    "\"unknown_category\":\"%s\",\"columns\":["
    "{\"name\":\"x\",\"type\":\"numeric\"},"
    "{\"name\":\"c\",\"type\":\"categorical\",\"categories\":[\"a\",\"b\",\"c\"]},"
    "{\"name\":\"k\",\"type\":\"numeric\"},"
    "{\"name\":\"id\",\"type\":\"ignored\"},"
    "{\"name\":\"z\",\"type\":\"numeric\"},"
    "{\"name\":\"y\",\"type\":\"target\"}]}";
enum { COL_X, COL_C, COL_K, COL_ID, COL_Z, COL_Y, N_COLS };

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static double urand(void) /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1.0p-53;
}
static double nrand(void)
{
    double u = urand() + 1e-300, v = urand();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static fv_schema_t *make_schema(int binary, int other)
{
    char buf[1024];
    fv_schema_t *s = NULL;
    snprintf(buf, sizeof buf, schema_json, binary ? "\"p\"" : "null", other ? "other" : "error");
    CHECK_OK(fv_schema_from_json("s.json", buf, strlen(buf), &s, D), D);
    return s;
}

static fv_preproc_t *make_preproc(const fv_schema_t *s)
{
    double count[N_COLS] = {0}, sum[N_COLS] = {0}, sumsq[N_COLS] = {0};
    const int num[] = {COL_X, COL_K, COL_Z};
    for (size_t i = 0; i < 3; i++) { /* mean 2, std 3 for every numeric column */
        count[num[i]] = 10;
        sum[num[i]] = 20;
        sumsq[num[i]] = 10 * (9 + 4);
    }
    fv_preproc_t *p = NULL;
    CHECK_OK(fv_preproc_from_moments(s, count, sum, sumsq, &p), D);
    return p;
}

static fv_mlp_t *make_mlp(size_t n_in, const char *spec, size_t n_classes, uint64_t seed)
{
    fv_mlp_arch_t a;
    fv_mlp_t *m = NULL;
    CHECK_OK(fv_mlp_parse_arch(spec, n_in, n_classes, &a, D), D);
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    fv_mlp_init(m, seed);
    /* logreg starts at zero and every bias at zero: give all parameters some size */
    float *w = fv_mlp_params(m);
    for (size_t i = 0; i < fv_mlp_n_params(m); i++)
        w[i] += (float)(0.3 * nrand());
    return m;
}

/* A random preprocessed row: standardized numerics, one category or none (missing). */
static double row_scale = 2.0; /* std of the standardized numerics */
static void random_row(size_t n_in, int other, float *x)
{
    size_t n_cat = other ? 4 : 3, f = 0;
    x[f++] = (float)(row_scale * nrand());
    size_t pick = (size_t)(urand() * (double)(n_cat + 1)); /* n_cat = missing */
    for (size_t k = 0; k < n_cat; k++)
        x[f++] = k == pick ? 1.0f : 0.0f;
    x[f++] = (float)(row_scale * nrand());
    x[f++] = (float)(row_scale * nrand());
    CHECK_UINT_EQ(f, n_in);
}

static float model_logit(const fv_mlp_t *m, const float *x, size_t out)
{
    fv_mlp_ws_t *ws = NULL;
    float z[8];
    CHECK(fv_mlp_arch(m)->n_out <= 8);
    CHECK_OK(fv_mlp_ws_new(m, 1, &ws), NULL);
    CHECK_OK(fv_mlp_logits(m, ws, x, 1, z), NULL);
    fv_mlp_ws_free(ws);
    return z[out];
}

static void test_logreg_exact(int other)
{
    fv_schema_t *s = make_schema(1, other);
    fv_preproc_t *p = make_preproc(s);
    size_t n_in = fv_preproc_n_features(p);
    CHECK_UINT_EQ(n_in, other ? 7u : 6u);
    fv_mlp_t *m = make_mlp(n_in, "logreg", 2, 1);
    fv_explain_t *e = NULL;
    CHECK_OK(fv_explain_new(m, p, s, 0, &e), NULL);
    CHECK(fv_explain_method(e) == FV_EXPLAIN_LINEAR);
    CHECK_STR_EQ(fv_explain_method_name(e), "linear");
    CHECK_UINT_EQ(fv_explain_n_columns(e), 4);

    const float *w = fv_mlp_params_const(m), b = w[n_in];
    float x[8];
    double contrib[N_COLS];
    for (int it = 0; it < 500; it++) {
        fv_explain_result_t res;
        random_row(n_in, other, x);
        CHECK_OK(fv_explain_row(e, x, FV_EXPLAIN_PREDICTED, contrib, &res), NULL);
        CHECK_UINT_EQ(res.out, 0);
        /* exact terms, recomputed here */
        double want_logit = (double)b, cat = 0.0;
        for (size_t j = 0; j < n_in; j++)
            want_logit += (double)w[j] * (double)x[j];
        for (size_t j = 1; j < n_in - 2; j++)
            cat += (double)w[j] * (double)x[j];
        CHECK_NEAR(res.bias, (double)b, 0.0);
        CHECK_NEAR(contrib[COL_X], (double)w[0] * x[0], 0.0);
        CHECK_NEAR(contrib[COL_C], cat, 1e-15);
        CHECK_NEAR(contrib[COL_K], (double)w[n_in - 2] * x[n_in - 2], 0.0);
        CHECK_NEAR(contrib[COL_Z], (double)w[n_in - 1] * x[n_in - 1], 0.0);
        CHECK_NEAR(contrib[COL_ID], 0.0, 0.0);
        CHECK_NEAR(contrib[COL_Y], 0.0, 0.0);
        double total = res.bias;
        for (size_t c = 0; c < N_COLS; c++)
            total += contrib[c];
        CHECK_NEAR(res.logit, want_logit, 1e-12);
        CHECK_NEAR(total, want_logit, 1e-12);
        CHECK(fabs(res.residual) <= 1e-12);
        /* against the network's own float32 logit: the documented tolerance */
        CHECK_NEAR(total, (double)model_logit(m, x, 0), 1e-5);
    }
    fv_explain_free(e);
    fv_mlp_free(m);
    fv_preproc_free(p);
    fv_schema_free(s);
}

/* Through the real decoding path: a CSV row, preprocessed, explained; the categorical
 * column's contribution is exactly its one chosen feature's weight. */
static void test_onehot_grouping(void)
{
    static const char csv[] = "x,c,k,id,z,y\n"
                              "5,b,2,i,-1,p\n"   /* category b */
                              "NA,,2,i,2,q\n"    /* x missing, c missing */
                              "2,zzz,8,i,2,q\n"; /* unseen category -> <other> */
    fv_schema_t *s = make_schema(1, 1);
    fv_preproc_t *p = make_preproc(s);
    fv_dataset_t *ds = NULL;
    CHECK_OK(fv_dataset_load_mem("g.csv", csv, sizeof csv - 1, s, &ds, D), D);
    size_t n_in = fv_preproc_n_features(p);
    float x[3 * 7];
    CHECK_OK(fv_preproc_transform(p, ds, NULL, 3, x), NULL);
    fv_mlp_t *m = make_mlp(n_in, "logreg", 2, 2);
    const float *w = fv_mlp_params_const(m);
    fv_explain_t *e = NULL;
    CHECK_OK(fv_explain_new(m, p, s, 0, &e), NULL);
    double contrib[N_COLS];
    fv_explain_result_t res;

    CHECK_OK(fv_explain_row(e, x, FV_EXPLAIN_PREDICTED, contrib, &res), NULL);
    CHECK_NEAR(contrib[COL_C], (double)w[2], 0.0);       /* c=b is feature 2 */
    CHECK_NEAR(contrib[COL_X], (double)w[0] * 1.0, 0.0); /* (5 - 2) / 3 = 1 */
    CHECK_NEAR(contrib[COL_K], 0.0, 0.0);                /* at the mean */

    CHECK_OK(fv_explain_row(e, x + 7, FV_EXPLAIN_PREDICTED, contrib, &res), NULL);
    CHECK_NEAR(contrib[COL_C], 0.0, 0.0); /* missing: no category, no contribution */
    CHECK_NEAR(contrib[COL_X], 0.0, 0.0); /* missing: imputed with the mean */

    CHECK_OK(fv_explain_row(e, x + 14, FV_EXPLAIN_PREDICTED, contrib, &res), NULL);
    CHECK_NEAR(contrib[COL_C], (double)w[4], 0.0);       /* c=<other> is feature 4 */
    CHECK_NEAR(contrib[COL_K], (double)w[5] * 2.0, 0.0); /* (8 - 2) / 3 */

    fv_explain_free(e);
    fv_mlp_free(m);
    fv_dataset_free(ds);
    fv_preproc_free(p);
    fv_schema_free(s);
}

static void test_multiclass(void)
{
    fv_schema_t *s = make_schema(0, 0);
    fv_preproc_t *p = make_preproc(s);
    size_t n_in = fv_preproc_n_features(p);
    fv_mlp_t *m = make_mlp(n_in, "logreg", 3, 3);
    fv_explain_t *e = NULL;
    CHECK_OK(fv_explain_new(m, p, s, 0, &e), NULL);
    float x[8];
    double contrib[N_COLS];
    for (int it = 0; it < 100; it++) {
        fv_explain_result_t res, r1;
        random_row(n_in, 0, x);
        CHECK_OK(fv_explain_row(e, x, FV_EXPLAIN_PREDICTED, contrib, &res), NULL);
        float z[3] = {model_logit(m, x, 0), model_logit(m, x, 1), model_logit(m, x, 2)};
        for (size_t k = 0; k < 3; k++)
            CHECK((double)z[k] <= (double)z[res.out] + 1e-5);
        CHECK_NEAR(res.logit, (double)z[res.out], 1e-5);
        CHECK(fabs(res.residual) <= 1e-12);
        CHECK_OK(fv_explain_row(e, x, 1, contrib, &r1), NULL);
        CHECK_UINT_EQ(r1.out, 1);
        CHECK_NEAR(r1.logit, (double)z[1], 1e-5);
    }
    CHECK_INT_EQ(fv_explain_row(e, x, 3, contrib, &(fv_explain_result_t){0}), FV_EINVAL);
    fv_explain_free(e);
    fv_mlp_free(m);
    fv_preproc_free(p);
    fv_schema_free(s);
}

static void test_mlp_gradient_and_ig(void)
{
    fv_schema_t *s = make_schema(1, 1);
    fv_preproc_t *p = make_preproc(s);
    size_t n_in = fv_preproc_n_features(p);
    fv_mlp_t *m = make_mlp(n_in, "mlp:16,8", 2, 4);
    fv_explain_t *e = NULL;
    CHECK_OK(fv_explain_new(m, p, s, 64, &e), NULL);
    CHECK(fv_explain_method(e) == FV_EXPLAIN_INTEGRATED_GRADIENTS);
    CHECK_STR_EQ(fv_explain_method_name(e), "integrated-gradients");

    /* Gradient: central differences in double. h small enough that a kink is rarely
     * crossed; a crossing shows up as a mismatch, so count them and allow a few. */
    double xd[8], g[8], xp[8], zp, zm, z0;
    size_t n_checked = 0, n_kinked = 0;
    for (int it = 0; it < 200; it++) {
        float xf[8];
        random_row(n_in, 1, xf);
        for (size_t j = 0; j < n_in; j++)
            xd[j] = xf[j];
        CHECK_OK(fv_explain_gradient(e, xd, 0, g, &z0), NULL);
        CHECK_NEAR(z0, (double)model_logit(m, xf, 0), 1e-4);
        for (size_t j = 0; j < n_in; j++) {
            const double h = 1e-6;
            memcpy(xp, xd, sizeof xp);
            xp[j] = xd[j] + h;
            CHECK_OK(fv_explain_gradient(e, xp, 0, g + 0, &zp), NULL);
            xp[j] = xd[j] - h;
            CHECK_OK(fv_explain_gradient(e, xp, 0, g + 0, &zm), NULL);
            double fd = (zp - zm) / (2 * h);
            CHECK_OK(fv_explain_gradient(e, xd, 0, g, NULL), NULL); /* restore g */
            n_checked++;
            if (fabs(fd - g[j]) > 1e-6 * (1.0 + fabs(g[j])))
                n_kinked++;
        }
    }
    if (n_kinked * 100 > n_checked)
        FV__FAIL("gradient: %zu of %zu partials differ from finite differences", n_kinked,
                 n_checked);

    /* The baseline term is the logit at the zero vector. */
    float zero[8] = {0};
    double contrib[N_COLS];
    fv_explain_result_t res;
    CHECK_OK(fv_explain_row(e, zero, FV_EXPLAIN_PREDICTED, contrib, &res), NULL);
    CHECK_NEAR(res.bias, (double)model_logit(m, zero, 0), 1e-5);
    CHECK_NEAR(res.logit, res.bias, 1e-12);
    for (size_t c = 0; c < N_COLS; c++)
        CHECK_NEAR(contrib[c], 0.0, 0.0);

    /* Completeness with 64 steps. The midpoint sum is exact where the path crosses no
     * ReLU kink and off by O(1/m) per crossing, so a row whose path crosses many kinks
     * can be off by a few percent. Measured on this random 16-8 network: the mean of
     * |residual| is about 1.2 % of the mean |logit change| at 64 steps, 0.26 % at 256,
     * 0.07 % at 1024 (the 1/m of kink crossings). The checks: mean under 2 %, no row
     * off by more than 5 % of max(|logit change|, 1). */
    double worst = 0.0, sum_res = 0.0, sum_diff = 0.0;
    row_scale = 1.0; /* standardized data: rows like the training data */
    for (int it = 0; it < 400; it++) {
        float x[8];
        random_row(n_in, 1, x);
        CHECK_OK(fv_explain_row(e, x, FV_EXPLAIN_PREDICTED, contrib, &res), NULL);
        double diff = res.logit - res.bias, total = res.bias;
        for (size_t c = 0; c < N_COLS; c++)
            total += contrib[c];
        CHECK_NEAR(total - res.logit, res.residual, 1e-12);
        CHECK_NEAR(res.logit, (double)model_logit(m, x, 0), 1e-4);
        sum_res += fabs(res.residual);
        sum_diff += fabs(diff);
        double rel = fabs(res.residual) / fmax(fabs(diff), 1.0);
        if (rel > worst)
            worst = rel;
        if (!(rel < 5e-2))
            FV__FAIL("completeness: residual %.3g for logit change %.3g (relative to max(|change|, "
                     "1): %.3g)",
                     res.residual, diff, rel);
    }
    if (!(sum_res < 2e-2 * sum_diff))
        FV__FAIL("completeness: sum |residual| %.3g >= 2 %% of sum |logit change| %.3g", sum_res,
                 sum_diff);
    printf("# integrated gradients, 64 steps: mean relative residual %.3g, worst row %.3g\n",
           sum_res / sum_diff, worst);
    fv_explain_free(e);
    fv_mlp_free(m);
    fv_preproc_free(p);
    fv_schema_free(s);
}

static void test_top(void)
{
    fv_schema_t *s = make_schema(1, 0);
    fv_preproc_t *p = make_preproc(s);
    fv_mlp_t *m = make_mlp(fv_preproc_n_features(p), "logreg", 2, 5);
    fv_explain_t *e = NULL;
    CHECK_OK(fv_explain_new(m, p, s, 0, &e), NULL);
    size_t cols[N_COLS];
    /* id and y have no features and are never listed, whatever their value */
    double contrib[N_COLS] = {
        [COL_X] = 0.5, [COL_C] = -2.0, [COL_K] = 0.5, [COL_ID] = 9, [COL_Z] = 0.0, [COL_Y] = 9};
    CHECK_UINT_EQ(fv_explain_top(e, contrib, 2, cols), 2);
    CHECK_UINT_EQ(cols[0], COL_C);
    CHECK_UINT_EQ(cols[1], COL_X);                           /* tie with k: lower index first */
    CHECK_UINT_EQ(fv_explain_top(e, contrib, 100, cols), 4); /* N past the columns */
    CHECK_UINT_EQ(cols[0], COL_C);
    CHECK_UINT_EQ(cols[1], COL_X);
    CHECK_UINT_EQ(cols[2], COL_K);
    CHECK_UINT_EQ(cols[3], COL_Z);
    CHECK_UINT_EQ(fv_explain_top(e, contrib, 0, cols), 0);
    fv_explain_free(e);
    fv_mlp_free(m);
    fv_preproc_free(p);
    fv_schema_free(s);
}

static void test_refused(void)
{
    fv_schema_t *s = make_schema(1, 0), *s_other = make_schema(1, 1);
    fv_preproc_t *p = make_preproc(s);
    fv_mlp_t *m = make_mlp(fv_preproc_n_features(p), "logreg", 2, 6);
    fv_mlp_t *wrong = make_mlp(fv_preproc_n_features(p) + 1, "logreg", 2, 6);
    fv_explain_t *e = NULL;
    CHECK_INT_EQ(fv_explain_new(wrong, p, s, 0, &e), FV_EINVAL);
    CHECK_INT_EQ(fv_explain_new(m, p, s_other, 0, &e), FV_EINVAL); /* layout disagrees */
    CHECK_INT_EQ(fv_explain_new(m, p, s, FV_EXPLAIN_MAX_STEPS + 1, &e), FV_EINVAL);
    CHECK_INT_EQ(fv_explain_new(NULL, p, s, 0, &e), FV_EINVAL);
    CHECK(e == NULL);
    CHECK_OK(fv_explain_new(m, p, s, 0, &e), NULL);
    float x[6] = {0, 0, 0, 0, NAN, 0};
    double contrib[N_COLS];
    fv_explain_result_t res;
    CHECK_INT_EQ(fv_explain_row(e, x, FV_EXPLAIN_PREDICTED, contrib, &res), FV_EINVAL);
    fv_explain_free(e);
    fv_explain_free(NULL);
    fv_mlp_free(wrong);
    fv_mlp_free(m);
    fv_preproc_free(p);
    fv_schema_free(s_other);
    fv_schema_free(s);
}

int main(void)
{
    test_logreg_exact(0);
    test_logreg_exact(1);
    test_onehot_grouping();
    test_multiclass();
    test_mlp_gradient_and_ig();
    test_top();
    test_refused();
    printf("test_explain: ok\n");
    return 0;
}
