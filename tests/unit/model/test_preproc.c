/* test_preproc.c - fitted statistics, feature layout and names, the transform, moments
 * (fit == from_moments exactly), the model decoder's from_stats, and the example data.
 *
 * Tolerances: statistics of the small hand-made dataset are exact (small integers);
 * standardized float features of the real data have mean within 1e-4 of 0 and std
 * within 1e-3 of 1 (float rounding of ~7400 values, summed in double).
 */
#include "fv_dataset.h"
#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "model-int.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

/* One diagnostic for the whole file, through a pointer (see test_csv.c). */
static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;

static const char schema_json[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"p\",\"classes\":[\"p\",\"q\"],"
    "\"unknown_category\":\"%s\",\"columns\":["
    "{\"name\":\"x\",\"type\":\"numeric\"},"
    "{\"name\":\"c\",\"type\":\"categorical\",\"categories\":[\"a\",\"b\",\"c\"]},"
    "{\"name\":\"k\",\"type\":\"numeric\"},"
    "{\"name\":\"id\",\"type\":\"ignored\"},"
    "{\"name\":\"z\",\"type\":\"numeric\"},"
    "{\"name\":\"y\",\"type\":\"target\"}]}";

static const char small_csv[] = "x,c,k,id,z,y\n"
                                "1,a,5,i,,p\n"
                                "2,b,5,i,NA,q\n"
                                "3,,5,i,,p\n"
                                "NA,zzz,5,i,,q\n"
                                "6,c,5,i,,p\n";

static fv_schema_t *small_schema(const char *policy)
{
    char buf[1024];
    fv_schema_t *s = NULL;
    snprintf(buf, sizeof buf, schema_json, policy);
    CHECK_OK(fv_schema_from_json("s.json", buf, strlen(buf), &s, D), D);
    return s;
}

static fv_dataset_t *small_data(const fv_schema_t *s)
{
    fv_dataset_t *ds = NULL;
    CHECK_OK(fv_dataset_load_mem("small.csv", small_csv, sizeof small_csv - 1, s, &ds, D), D);
    return ds;
}

static void test_small(void)
{
    fv_schema_t *s = small_schema("other");
    fv_dataset_t *ds = small_data(s);
    fv_preproc_t *p = NULL;
    double count[6], sum[6], sumsq[6];
    float f[5 * 7];
    char name[64];

    fv_preproc_moments(ds, NULL, 0, count, sum, sumsq);
    CHECK(count[0] == 4 && sum[0] == 12 && sumsq[0] == 50);
    CHECK(count[1] == 0 && sum[1] == 0 && sumsq[1] == 0); /* not numeric: zeros */
    CHECK(count[2] == 5 && sum[2] == 25 && sumsq[2] == 125);
    CHECK(count[3] == 0 && count[5] == 0);
    CHECK(count[4] == 0 && sum[4] == 0); /* all missing */

    CHECK_OK(fv_preproc_fit(ds, NULL, 0, &p), D);
    CHECK_UINT_EQ(fv_preproc_n_features(p), 7);
    CHECK(fv_preproc_mean(p, 0) == 3.0);
    CHECK(fv_preproc_std(p, 0) == sqrt(3.5)); /* population std: 50/4 - 9 */
    CHECK(fv_preproc_mean(p, 2) == 5.0);      /* constant column: std 1 */
    CHECK(fv_preproc_std(p, 2) == 1.0);
    CHECK(fv_preproc_mean(p, 4) == 0.0); /* count 0: mean 0, std 1 */
    CHECK(fv_preproc_std(p, 4) == 1.0);
    CHECK(isnan(fv_preproc_mean(p, 1)) && isnan(fv_preproc_std(p, 1)));
    CHECK(isnan(fv_preproc_mean(p, 3)) && isnan(fv_preproc_std(p, 5)));
    CHECK(isnan(fv_preproc_mean(p, 99)));

    /* layout and names */
    static const char *const names[] = {"x", "c=a", "c=b", "c=c", "c=<other>", "k", "z"};
    for (size_t j = 0; j < 7; j++)
        CHECK_STR_EQ(fv_preproc_feature_name(p, j, name, sizeof name), names[j]);
    CHECK_STR_EQ(fv_preproc_feature_name(p, 7, name, sizeof name), "");
    /* truncation keeps a C string */
    CHECK_STR_EQ(fv_preproc_feature_name(p, 4, name, 5), "c=<o");

    /* every feature is written (no memset in transform): start from NaN bytes */
    memset(f, 0xff, sizeof f);
    CHECK_OK(fv_preproc_transform(p, ds, NULL, 5, f), D);
    {
        const float want[5][7] = {
            {(float)((1 - 3) / sqrt(3.5)), 1, 0, 0, 0, 0, 0},
            {(float)((2 - 3) / sqrt(3.5)), 0, 1, 0, 0, 0, 0},
            {(float)((3 - 3) / sqrt(3.5)), 0, 0, 0, 0, 0, 0}, /* c missing: all zeros */
            {0, 0, 0, 0, 1, 0, 0},                            /* x missing -> 0; <other> */
            {(float)((6 - 3) / sqrt(3.5)), 0, 0, 1, 0, 0, 0},
        };
        for (size_t i = 0; i < 5; i++)
            for (size_t j = 0; j < 7; j++)
                CHECK(f[i * 7 + j] == want[i][j]);
    }
    /* a row subset, in the given order */
    {
        size_t rows[2] = {4, 0};
        float g[2 * 7];
        memset(g, 0xff, sizeof g);
        CHECK_OK(fv_preproc_transform(p, ds, rows, 2, g), D);
        CHECK(memcmp(g, f + 4 * 7, 7 * sizeof *g) == 0);
        CHECK(memcmp(g + 7, f, 7 * sizeof *g) == 0);
    }
    fv_preproc_free(p);
    fv_preproc_free(NULL);

    /* fit on a subset only sees those rows */
    {
        size_t rows[2] = {0, 4};
        CHECK_OK(fv_preproc_fit(ds, rows, 2, &p), D);
        CHECK(fv_preproc_mean(p, 0) == 3.5);
        CHECK(fv_preproc_std(p, 0) == 2.5);
        fv_preproc_free(p);
    }
    fv_dataset_free(ds);
    fv_schema_free(s);
}

static void test_policy_error_layout(void)
{
    /* no <other> feature under policy "error" */
    fv_schema_t *s = small_schema("error");
    fv_preproc_t *p = NULL;
    double c[6] = {0}, sm[6] = {0}, sq[6] = {0};
    char name[64];
    CHECK_OK(fv_preproc_from_moments(s, c, sm, sq, &p), D);
    CHECK_UINT_EQ(fv_preproc_n_features(p), 6);
    CHECK_STR_EQ(fv_preproc_feature_name(p, 3, name, sizeof name), "c=c");
    CHECK_STR_EQ(fv_preproc_feature_name(p, 4, name, sizeof name), "k");
    fv_preproc_free(p);
    fv_schema_free(s);
}

static void test_moments_checks(void)
{
    fv_schema_t *s = small_schema("other");
    fv_preproc_t *p = NULL;
    double c[6] = {0}, sm[6] = {0}, sq[6] = {0};

    c[0] = -1;
    CHECK_INT_EQ(fv_preproc_from_moments(s, c, sm, sq, &p), FV_EINVAL);
    c[0] = NAN;
    CHECK_INT_EQ(fv_preproc_from_moments(s, c, sm, sq, &p), FV_EINVAL);
    c[0] = INFINITY;
    CHECK_INT_EQ(fv_preproc_from_moments(s, c, sm, sq, &p), FV_EINVAL);
    c[0] = 2;
    sm[0] = INFINITY;
    CHECK_INT_EQ(fv_preproc_from_moments(s, c, sm, sq, &p), FV_ENUMERIC);
    sm[0] = 1;
    sq[0] = NAN;
    CHECK_INT_EQ(fv_preproc_from_moments(s, c, sm, sq, &p), FV_ENUMERIC);
    sq[0] = -1;
    CHECK_INT_EQ(fv_preproc_from_moments(s, c, sm, sq, &p), FV_ENUMERIC);
    /* a mean that overflows */
    c[0] = 1e-300;
    sm[0] = 1e300;
    sq[0] = 1;
    CHECK_INT_EQ(fv_preproc_from_moments(s, c, sm, sq, &p), FV_ENUMERIC);
    CHECK(p == NULL);
    /* garbage in non-numeric columns is not read */
    c[0] = 2;
    sm[0] = 2;
    sq[0] = 4;
    c[1] = sm[1] = sq[1] = NAN;
    c[5] = -7;
    CHECK_OK(fv_preproc_from_moments(s, c, sm, sq, &p), D);
    CHECK(fv_preproc_mean(p, 0) == 1.0 && fv_preproc_std(p, 0) == 1.0); /* constant */
    fv_preproc_free(p);
    p = NULL;

    /* A constant column whose moments do not cancel exactly still gets std 1. */
    c[0] = 1000;
    sm[0] = sq[0] = 0;
    for (int i = 0; i < 1000; i++) {
        sm[0] += 0.1;
        sq[0] += 0.1 * 0.1;
    }
    CHECK_OK(fv_preproc_from_moments(s, c, sm, sq, &p), D);
    CHECK_NEAR(fv_preproc_mean(p, 0), 0.1, 1e-12);
    CHECK(fv_preproc_std(p, 0) == 1.0);
    fv_preproc_free(p);
    p = NULL;
    /* ... while a small real spread is kept */
    c[0] = 2;
    sm[0] = 0.1 + 0.1001;
    sq[0] = 0.1 * 0.1 + 0.1001 * 0.1001;
    CHECK_OK(fv_preproc_from_moments(s, c, sm, sq, &p), D);
    CHECK_NEAR(fv_preproc_std(p, 0), 0.00005, 1e-9);
    fv_preproc_free(p);

    CHECK_INT_EQ(fv_preproc_from_moments(NULL, c, sm, sq, &p), FV_EINVAL);
    fv_schema_free(s);
}

static void test_from_stats(void)
{
    fv_schema_t *s = small_schema("other");
    fv_dataset_t *ds = small_data(s);
    fv_preproc_t *p = NULL, *q = NULL;
    double mean[6], sd[6];
    float f1[5 * 7], f2[5 * 7];

    CHECK_OK(fv_preproc_fit(ds, NULL, 0, &p), D);
    for (size_t j = 0; j < 6; j++) {
        mean[j] = fv_preproc_mean(p, j); /* NaN for non-numeric columns: not read */
        sd[j] = fv_preproc_std(p, j);
    }
    CHECK_OK(fv__preproc_from_stats(s, mean, sd, &q), D);
    CHECK_UINT_EQ(fv_preproc_n_features(q), fv_preproc_n_features(p));
    for (size_t j = 0; j < 6; j++) {
        double m = fv_preproc_mean(q, j), d = fv_preproc_std(q, j);
        CHECK((isnan(mean[j]) && isnan(m)) || m == mean[j]);
        CHECK((isnan(sd[j]) && isnan(d)) || d == sd[j]);
    }
    CHECK_OK(fv_preproc_transform(p, ds, NULL, 5, f1), D);
    CHECK_OK(fv_preproc_transform(q, ds, NULL, 5, f2), D);
    CHECK(memcmp(f1, f2, sizeof f1) == 0);
    fv_preproc_free(q);

    /* corrupt statistics of a numeric column */
    static const struct {
        size_t col;
        double mean, sd;
    } bad[] = {
        {0, NAN, 1}, {0, INFINITY, 1}, {0, 0, 0},         {0, 0, -1},
        {2, 0, NAN}, {4, 0, INFINITY}, {4, -INFINITY, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double m2[6], s2[6];
        memcpy(m2, mean, sizeof m2);
        memcpy(s2, sd, sizeof s2);
        m2[bad[i].col] = bad[i].mean;
        s2[bad[i].col] = bad[i].sd;
        q = NULL;
        CHECK_INT_EQ(fv__preproc_from_stats(s, m2, s2, &q), FV_ECORRUPT);
        CHECK(q == NULL);
    }
    fv_preproc_free(p);
    fv_dataset_free(ds);
    fv_schema_free(s);
}

static void test_transform_checks(void)
{
    fv_schema_t *s = small_schema("other"), *s2 = small_schema("other"),
                *se = small_schema("error");
    fv_dataset_t *ds = small_data(s), *ds2 = small_data(s2);
    fv_preproc_t *p = NULL;
    float f[6 * 7];
    size_t bad_row[1] = {5};

    CHECK_OK(fv_preproc_fit(ds, NULL, 0, &p), D);
    CHECK_INT_EQ(fv_preproc_transform(p, ds, NULL, 6, f), FV_EINVAL);
    CHECK_INT_EQ(fv_preproc_transform(p, ds, bad_row, 1, f), FV_EINVAL);
    /* a dataset decoded with an equal schema object is fine ... */
    CHECK_OK(fv_preproc_transform(p, ds2, NULL, 5, f), D);
    /* ... one decoded with a different schema is not */
    {
        fv_dataset_t *de = NULL;
        const char csv[] = "x,c,k,id,z,y\n1,a,5,i,,p\n";
        CHECK_OK(fv_dataset_load_mem("e.csv", csv, sizeof csv - 1, se, &de, D), D);
        CHECK_INT_EQ(fv_preproc_transform(p, de, NULL, 1, f), FV_ESCHEMA);
        fv_dataset_free(de);
    }
    /* a cell that no decoding could have produced */
    ds->cells[0 * ds->n_cols + 1] = 3.0; /* only 3 categories: 0..2 */
    CHECK_INT_EQ(fv_preproc_transform(p, ds, NULL, 1, f), FV_EINVAL);
    ds->cells[0 * ds->n_cols + 1] = 0.5;
    CHECK_INT_EQ(fv_preproc_transform(p, ds, NULL, 1, f), FV_EINVAL);
    ds->cells[0 * ds->n_cols + 1] = NAN;
    CHECK_INT_EQ(fv_preproc_transform(p, ds, NULL, 1, f), FV_EINVAL);
    /* n == 0 writes nothing */
    CHECK_OK(fv_preproc_transform(p, ds, NULL, 0, NULL), D);
    /* the matrix for transform: n_rows x n_features floats, one row at least, NULL when
     * the size overflows */
    {
        float *m = fv_preproc_matrix_alloc(p, 2), *m0 = fv_preproc_matrix_alloc(p, 0);
        size_t rows[2] = {1, 4};
        CHECK(m != NULL && m0 != NULL);
        CHECK_OK(fv_preproc_transform(p, ds2, rows, 2, m), D);
        CHECK_OK(fv_preproc_transform(p, ds2, rows, 1, m0), D);
        CHECK(memcmp(m, m0, 7 * sizeof *m) == 0);
        CHECK(fv_preproc_matrix_alloc(p, SIZE_MAX / 8) == NULL);
        free(m);
        free(m0);
    }

    fv_preproc_free(p);
    fv_dataset_free(ds);
    fv_dataset_free(ds2);
    fv_schema_free(s);
    fv_schema_free(s2);
    fv_schema_free(se);
}

static void load_example(const char *rel, const char *target, fv_schema_t **ret_s,
                         fv_dataset_t **ret_ds)
{
    char path[1024];
    fv_schema_infer_opts_t o;
    memset(&o, 0, sizeof o);
    o.target = target;
    o.positive = "bad";
    fv_test_src(rel, path, sizeof path);
    CHECK_OK(fv_schema_infer(path, &o, ret_s, D), D);
    CHECK_OK(fv_dataset_load(path, *ret_s, ret_ds, D), D);
}

static void check_example(const char *rel, const char *target, size_t n_features, size_t n_cat_cols,
                          size_t feat_j, const char *feat_name)
{
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_preproc_t *p = NULL, *q = NULL;
    size_t *tr = NULL, *te = NULL, ntr, nte, nf;
    double *count, *sum, *sumsq;
    float *f;
    char name[128];

    load_example(rel, target, &s, &ds);
    CHECK_OK(fv_dataset_split(ds, NULL, 0, 0.25, 42, &tr, &ntr, &te, &nte), D);
    CHECK_OK(fv_preproc_fit(ds, tr, ntr, &p), D);
    nf = fv_preproc_n_features(p);
    CHECK_UINT_EQ(nf, n_features);
    CHECK_STR_EQ(fv_preproc_feature_name(p, feat_j, name, sizeof name), feat_name);

    /* fit == from_moments(moments), exactly */
    count = malloc(ds->n_cols * sizeof *count);
    sum = malloc(ds->n_cols * sizeof *sum);
    sumsq = malloc(ds->n_cols * sizeof *sumsq);
    CHECK(count != NULL && sum != NULL && sumsq != NULL);
    fv_preproc_moments(ds, tr, ntr, count, sum, sumsq);
    CHECK_OK(fv_preproc_from_moments(s, count, sum, sumsq, &q), D);
    for (size_t j = 0; j < ds->n_cols; j++) {
        double a = fv_preproc_mean(p, j), b = fv_preproc_mean(q, j);
        double c = fv_preproc_std(p, j), e = fv_preproc_std(q, j);
        CHECK((isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0);
        CHECK((isnan(c) && isnan(e)) || memcmp(&c, &e, sizeof c) == 0);
        if (fv_schema_column_type(s, j) == FV_COL_NUMERIC) {
            CHECK(isfinite(a) && c > 0);
            CHECK_NEAR(count[j], (double)ntr, 0); /* no missing values in the examples */
        }
    }

    /* standardized train features: mean ~0, std ~1; one-hot rows sum to the number of
     * categorical columns with a value (no missing values in these files) */
    f = malloc(ntr * nf * sizeof *f);
    CHECK(f != NULL);
    CHECK_OK(fv_preproc_transform(p, ds, tr, ntr, f), D);
    for (size_t j = 0; j < ds->n_cols; j++) {
        double m = 0, v = 0;
        size_t k;
        if (fv_schema_column_type(s, j) != FV_COL_NUMERIC)
            continue;
        for (k = 0; k < nf; k++) {
            char nm[128];
            if (strcmp(fv_preproc_feature_name(p, k, nm, sizeof nm), fv_schema_column_name(s, j)) ==
                0)
                break;
        }
        CHECK(k < nf);
        for (size_t i = 0; i < ntr; i++)
            m += f[i * nf + k];
        m /= (double)ntr;
        for (size_t i = 0; i < ntr; i++)
            v += (f[i * nf + k] - m) * (f[i * nf + k] - m);
        v /= (double)ntr;
        CHECK_NEAR(m, 0.0, 1e-4);
        CHECK_NEAR(sqrt(v), 1.0, 1e-3);
    }
    for (size_t i = 0; i < ntr; i++) {
        double one_hot = 0;
        for (size_t k = 0; k < nf; k++) {
            char nm[128];
            if (strchr(fv_preproc_feature_name(p, k, nm, sizeof nm), '=') != NULL) {
                float x = f[i * nf + k];
                CHECK(x == 0.0f || x == 1.0f);
                one_hot += x;
            }
        }
        CHECK_NEAR(one_hot, (double)n_cat_cols, 0);
    }
    /* test rows use the training statistics */
    {
        size_t row = te[0];
        float g[256];
        CHECK(nf <= 256);
        CHECK_OK(fv_preproc_transform(q, ds, &row, 1, g), D);
        for (size_t j = 0; j < ds->n_cols; j++) {
            if (fv_schema_column_type(s, j) != FV_COL_NUMERIC)
                continue;
            double x = ds->cells[row * ds->n_cols + j];
            float want = (float)((x - fv_preproc_mean(p, j)) / fv_preproc_std(p, j));
            size_t k;
            for (k = 0; k < nf; k++) {
                char nm[128];
                if (strcmp(fv_preproc_feature_name(p, k, nm, sizeof nm),
                           fv_schema_column_name(s, j)) == 0)
                    break;
            }
            CHECK(g[k] == want);
        }
    }
    free(f);
    free(count);
    free(sum);
    free(sumsq);
    free(tr);
    free(te);
    fv_preproc_free(p);
    fv_preproc_free(q);
    fv_dataset_free(ds);
    fv_schema_free(s);
}

int main(void)
{
    test_small();
    test_policy_error_layout();
    test_moments_checks();
    test_from_stats();
    test_transform_checks();
    /* lending_club: 17 numeric + (2 + 35 + 50 + 3 + 12) one-hot; feature 2 is term=term_60 */
    check_example("examples/data/lending_club.csv", "Class", 119, 5, 2, "term=term_60");
    /* german_credit: 7 numeric + 54 one-hot; feature 0 is checking_status's first
     * category in byte order ('0' < '<' < '>' < 'n') */
    check_example("examples/data/german_credit.csv", "class", 61, 13, 0,
                  "checking_status=0<=X<200");
    return 0;
}
