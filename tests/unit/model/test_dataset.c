/* test_dataset.c - decoding rows against a schema, every data error with its place, the
 * example files, and stratified splits.
 *
 * Most cases use one small hand-written schema (below) so vocabularies are known; each
 * bad input checks the code and that the message names file:line:col and the column.
 */
#include "fv_dataset.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "model-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One diagnostic for the whole file, through a pointer (see test_csv.c). */
static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;
static char tmpdir[256];

static const char schema_json[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\","
    "\"classes\":[\"maybe\",\"no\",\"yes\"],\"unknown_category\":\"%s\",\"columns\":["
    "{\"name\":\"age\",\"type\":\"numeric\"},"
    "{\"name\":\"city\",\"type\":\"categorical\",\"categories\":[\"lyon\",\"paris\"]},"
    "{\"name\":\"id\",\"type\":\"ignored\"},"
    "{\"name\":\"y\",\"type\":\"target\"}]}";

/* The test schema; policy "error" or "other". Caller frees. */
static fv_schema_t *test_schema(const char *policy)
{
    char buf[1024];
    fv_schema_t *s = NULL;
    snprintf(buf, sizeof buf, schema_json, policy);
    CHECK_OK(fv_schema_from_json("s.json", buf, strlen(buf), &s, D), D);
    return s;
}

static int load(const char *csv, const fv_schema_t *s, fv_dataset_t **ret)
{
    D->msg[0] = '\0';
    *ret = NULL;
    return fv_dataset_load_mem("data.csv", csv, strlen(csv), s, ret, D);
}

/* Loading fails with err and a message holding every given substring. */
#define CHECK_LOAD_BAD(csv, s, err, ...)                                                           \
    do {                                                                                           \
        fv_dataset_t *ds_ = NULL;                                                                  \
        const char *want_[] = {__VA_ARGS__};                                                       \
        CHECK_INT_EQ(load(csv, s, &ds_), err);                                                     \
        CHECK(ds_ == NULL);                                                                        \
        for (size_t k_ = 0; k_ < sizeof want_ / sizeof want_[0]; k_++)                             \
            CHECK_CONTAINS(D->msg, want_[k_]);                                                     \
    } while (0)

#define CELL(ds, i, j) ((ds)->cells[(i) * (ds)->n_cols + (j)])

static void test_load_good(void)
{
    fv_schema_t *s = test_schema("error");
    fv_dataset_t *ds = NULL;
    /* columns in another order than the schema; a BOM, CRLF, an empty line, a quoted
     * multi-line value in the ignored column, missing values of both spellings */
    const char csv[] = "\xEF\xBB\xBF"
                       "y,id,city,age\r\n"
                       "yes,1,paris,30\r\n"
                       "no,\"two\r\nlines\",lyon,-1.5e1\r\n"
                       "\r\n"
                       "maybe,NA,,\r\n"
                       "\"no\",anything \"goes\" here?,NA,NA";
    CHECK_INT_EQ(load(csv, s, &ds), FV_EPARSE); /* ... except a quote: still CSV */
    CHECK_CONTAINS(D->msg, "data.csv:7:2:");

    const char csv2[] = "\xEF\xBB\xBF"
                        "y,id,city,age\r\n"
                        "yes,1,paris,30\r\n"
                        "no,\"two\r\nlines\",lyon,-1.5e1\r\n"
                        "\r\n"
                        "maybe,NA,,\r\n"
                        "\"no\",anything goes here?,NA,NA";
    CHECK_OK(load(csv2, s, &ds), D);
    CHECK(ds->schema == s);
    CHECK_UINT_EQ(ds->n_rows, 4);
    CHECK_UINT_EQ(ds->n_cols, 4);
    /* schema order: age, city, id, y */
    CHECK(CELL(ds, 0, 0) == 30.0);
    CHECK(CELL(ds, 0, 1) == 1.0); /* paris */
    CHECK(isnan(CELL(ds, 0, 2)));
    CHECK(isnan(CELL(ds, 0, 3)));
    CHECK(CELL(ds, 1, 0) == -15.0);
    CHECK(CELL(ds, 1, 1) == 0.0); /* lyon */
    CHECK(isnan(CELL(ds, 2, 0)));
    CHECK(CELL(ds, 2, 1) == FV_CELL_MISSING);
    CHECK(isnan(CELL(ds, 3, 0)));
    CHECK(CELL(ds, 3, 1) == FV_CELL_MISSING);
    /* binary: positive 1, every other label 0 */
    CHECK_INT_EQ(ds->label[0], 1);
    CHECK_INT_EQ(ds->label[1], 0);
    CHECK_INT_EQ(ds->label[2], 0);
    CHECK_INT_EQ(ds->label[3], 0);
    /* lines: the multi-line record starts on 3, the empty line 5 is skipped */
    CHECK_UINT_EQ(ds->line[0], 2);
    CHECK_UINT_EQ(ds->line[1], 3);
    CHECK_UINT_EQ(ds->line[2], 6);
    CHECK_UINT_EQ(ds->line[3], 7);

    {
        int32_t lab[4];
        size_t rows[2] = {3, 0};
        fv_dataset_labels(ds, NULL, 4, lab);
        CHECK(lab[0] == 1 && lab[1] == 0 && lab[2] == 0 && lab[3] == 0);
        fv_dataset_labels(ds, rows, 2, lab);
        CHECK(lab[0] == 0 && lab[1] == 1);
    }
    fv_dataset_free(ds);
    fv_dataset_free(NULL);
    fv_schema_free(s);
}

static void test_load_multiclass(void)
{
    const char js[] = "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":null,"
                      "\"classes\":[\"a\",\"b\",\"c\"],\"unknown_category\":\"error\","
                      "\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},"
                      "{\"name\":\"y\",\"type\":\"target\"}]}";
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    CHECK_OK(fv_schema_from_json("m.json", js, sizeof js - 1, &s, D), D);
    CHECK_OK(load("x,y\n1,c\n2,a\n3,b\n", s, &ds), D);
    CHECK_INT_EQ(ds->label[0], 2);
    CHECK_INT_EQ(ds->label[1], 0);
    CHECK_INT_EQ(ds->label[2], 1);
    fv_dataset_free(ds);
    fv_schema_free(s);
}

static void test_unknown_category(void)
{
    fv_schema_t *se = test_schema("error"), *so = test_schema("other");
    fv_dataset_t *ds = NULL;
    const char csv[] = "age,city,id,y\n1,paris,a,yes\n2,nice,b,no\n3,lyon,c,no\n";
    /* policy error: the place, the value, and what would have been accepted */
    CHECK_LOAD_BAD(csv, se, FV_ESCHEMA, "data.csv:3:2:", "column 'city'",
                   "unknown category \"nice\"", "expected one of 'lyon', 'paris'",
                   "unknown_category \"other\"");
    /* categories are exact: case and spaces matter */
    CHECK_LOAD_BAD("age,city,id,y\n1,Paris,a,yes\n", se, FV_ESCHEMA, "data.csv:2:2:", "\"Paris\"");
    CHECK_LOAD_BAD("city,age,id,y\n paris,1,a,yes\n", se, FV_ESCHEMA,
                   "data.csv:2:1:", "\" paris\"");
    /* policy other: the <other> bucket */
    CHECK_OK(load(csv, so, &ds), D);
    CHECK(CELL(ds, 0, 1) == 1.0);
    CHECK(CELL(ds, 1, 1) == FV_CELL_OTHER);
    CHECK(CELL(ds, 2, 1) == 0.0);
    fv_dataset_free(ds);
    fv_schema_free(se);
    fv_schema_free(so);
}

static void test_load_errors(void)
{
    fv_schema_t *s = test_schema("error");

    /* ragged rows */
    CHECK_LOAD_BAD("age,city,id,y\n1,paris,a,yes\n2,lyon,b,no,extra\n", s, FV_EPARSE,
                   "data.csv:3:5:", "row has 5 fields, the header has 4", "expected 4 fields");
    CHECK_LOAD_BAD("age,city,id,y\n1,paris,a,yes\n2,lyon\n", s, FV_EPARSE,
                   "data.csv:3:3:", "column 'id'", "row has 2 fields, the header has 4",
                   "expected 4 fields");
    /* text in a numeric column */
    CHECK_LOAD_BAD("age,city,id,y\n1,paris,a,yes\n\n12 years,lyon,b,no\n", s, FV_ESCHEMA,
                   "data.csv:4:1:", "column 'age'", "\"12 years\" is not a number",
                   "expected a number");
    CHECK_LOAD_BAD("id,y,city,age\na,yes,paris,0x1A\n", s, FV_ESCHEMA,
                   "data.csv:2:4:", "column 'age'", "\"0x1A\" is not a number");
    CHECK_LOAD_BAD("age,city,id,y\n1.5.2,paris,a,yes\n", s, FV_ESCHEMA, "data.csv:2:1:");
    /* non-finite numbers: inf / nan text and overflow are errors, not missing values */
    CHECK_LOAD_BAD("age,city,id,y\ninf,paris,a,yes\n", s, FV_ESCHEMA,
                   "data.csv:2:1:", "column 'age'", "non-finite number \"inf\"",
                   "expected a finite number", "empty cell or NA");
    CHECK_LOAD_BAD("age,city,id,y\n-Infinity,paris,a,yes\n", s, FV_ESCHEMA,
                   "data.csv:2:1:", "non-finite number \"-Infinity\"");
    CHECK_LOAD_BAD("age,city,id,y\n1,paris,a,yes\nNaN,paris,a,yes\n", s, FV_ESCHEMA,
                   "data.csv:3:1:", "non-finite number \"NaN\"");
    CHECK_LOAD_BAD("age,city,id,y\n1e999,paris,a,yes\n", s, FV_ESCHEMA,
                   "data.csv:2:1:", "non-finite number \"1e999\"");
    /* missing target cell, both spellings */
    CHECK_LOAD_BAD("age,city,id,y\n1,paris,a,\n", s, FV_ESCHEMA, "data.csv:2:4:", "column 'y'",
                   "missing target label", "expected a class label");
    CHECK_LOAD_BAD("age,city,id,y\n1,paris,a,yes\n2,paris,a,NA\n", s, FV_ESCHEMA,
                   "data.csv:3:4:", "column 'y'", "missing target label");
    /* unknown target label */
    CHECK_LOAD_BAD("age,city,id,y\n1,paris,a,YES\n", s, FV_ESCHEMA, "data.csv:2:4:", "column 'y'",
                   "unknown target label \"YES\"", "expected one of 'maybe', 'no', 'yes'");
    /* header: a schema column missing, an extra column, a duplicate */
    CHECK_LOAD_BAD("age,id,y\n1,a,yes\n", s, FV_ESCHEMA, "data.csv:1:", "column 'city'",
                   "missing from the header", "expected all 4 schema columns");
    CHECK_LOAD_BAD("age,city,id,y,salary\n1,paris,a,yes,9\n", s, FV_ESCHEMA,
                   "data.csv:1:5:", "column 'salary'", "not in the schema", "\"ignored\"");
    CHECK_LOAD_BAD("age,city,age,id,y\n1,paris,2,a,yes\n", s, FV_ESCHEMA,
                   "data.csv:1:3:", "column 'age'", "duplicate header name (also column 1)");
    /* header names are exact */
    CHECK_LOAD_BAD("Age,city,id,y\n1,paris,a,yes\n", s, FV_ESCHEMA, "data.csv:1:1:", "column 'Age'",
                   "not in the schema");
    /* empty file, header only */
    CHECK_LOAD_BAD("", s, FV_EEMPTY, "data.csv:1:1:", "empty file",
                   "expected a header line naming the schema's 4 columns");
    CHECK_LOAD_BAD("age,city,id,y\n", s, FV_EEMPTY, "data.csv:2:", "no data rows",
                   "expected at least one row");
    CHECK_LOAD_BAD("age,city,id,y\n\n\n", s, FV_EEMPTY, "data.csv:2:", "no data rows");
    /* CSV errors come through with their place */
    CHECK_LOAD_BAD("age,city,id,y\n1,\"paris,a,yes\n2,lyon,b,no\n", s, FV_EPARSE,
                   "data.csv:2:2:", "never closed");
    CHECK_LOAD_BAD("age,city,id,y\n1,pa\"ris,a,yes\n", s, FV_EPARSE,
                   "data.csv:2:2:", "quote inside an unquoted field");
    {
        const char nul[] = "age,city,id,y\n1,paris,a\0,yes\n";
        fv_dataset_t *ds = NULL;
        CHECK_INT_EQ(fv_dataset_load_mem("data.csv", nul, sizeof nul - 1, s, &ds, D), FV_EPARSE);
        CHECK_CONTAINS(D->msg, "data.csv:2:3:");
        CHECK_CONTAINS(D->msg, "NUL byte");
    }
    /* long and odd values are shortened and escaped in messages */
    {
        char csv[600];
        snprintf(csv, sizeof csv, "age,city,id,y\n1,%0300d\x01,a,yes\n", 7);
        CHECK_LOAD_BAD(csv, s, FV_ESCHEMA, "data.csv:2:2:", "...\"");
        CHECK(strlen(D->msg) < 400);
    }
    fv_schema_free(s);
}

static void test_files(void)
{
    fv_schema_t *s = test_schema("error");
    fv_dataset_t *ds = NULL;
    char path[512];

    snprintf(path, sizeof path, "%s/nope.csv", tmpdir);
    CHECK_INT_EQ(fv_dataset_load(path, s, &ds, D), -ENOENT);
    CHECK(ds == NULL);
    CHECK_CONTAINS(D->msg, path);
    CHECK_CONTAINS(D->msg, strerror(ENOENT));
    CHECK_INT_EQ(fv_dataset_load(tmpdir, s, &ds, D), -EISDIR);
    CHECK_CONTAINS(D->msg, tmpdir);
    CHECK_CONTAINS(D->msg, strerror(EISDIR));

    /* a 0-byte file */
    snprintf(path, sizeof path, "%s/empty.csv", tmpdir);
    {
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        CHECK(fclose(f) == 0);
    }
    CHECK_INT_EQ(fv_dataset_load(path, s, &ds, D), FV_EEMPTY);
    CHECK_CONTAINS(D->msg, path);
    CHECK_CONTAINS(D->msg, ":1:1: empty file");
    CHECK(unlink(path) == 0);
    fv_schema_free(s);
}

static void test_infer_load_agree(void)
{
    /* Inference calls a column numeric exactly when loading accepts its cells: every
     * spelling that infers numeric loads, with strtod's value. */
    static const char *const nums[] = {"1e3",
                                       "-2.5",
                                       ".5",
                                       "5.",
                                       "+3",
                                       "0",
                                       "-0",
                                       "1E-3",
                                       "007",
                                       "1e-400",
                                       "123456789012345678901234567890"};
    size_t n = sizeof nums / sizeof nums[0];
    char csv[1024];
    size_t o = 0;
    fv_schema_infer_opts_t opts;
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    o += (size_t)snprintf(csv + o, sizeof csv - o, "x,y\n");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(csv + o, sizeof csv - o, "%s,%s\n", nums[i], i % 2 ? "p" : "q");
    memset(&opts, 0, sizeof opts);
    opts.target = "y";
    CHECK_OK(fv_schema_infer_mem("n.csv", csv, o, &opts, &s, D), D);
    CHECK_INT_EQ(fv_schema_column_type(s, 0), FV_COL_NUMERIC);
    CHECK_OK(fv_dataset_load_mem("n.csv", csv, o, s, &ds, D), D);
    for (size_t i = 0; i < n; i++)
        CHECK(CELL(ds, i, 0) == strtod(nums[i], NULL));
    fv_dataset_free(ds);
    fv_schema_free(s);
}

/* fv_dataset_infer_load gives what fv_schema_infer then fv_dataset_load give: the same
 * schema JSON, the same cells bit for bit, labels and line numbers, the same error. */
static void infer_load_same(const char *csv, const char *target, const char *positive,
                            const char *drop, bool want_one_pass)
{
    fv_schema_infer_opts_t o;
    fv_schema_t *s1 = NULL, *s2 = NULL, *s3 = NULL;
    fv_dataset_t *ds1 = NULL, *ds2 = NULL, *ds3 = NULL;
    fv_diag_t d1 = {""}, d2 = {""};
    fv_csv_t *c = NULL;
    size_t len = strlen(csv);
    int r1, r2;
    memset(&o, 0, sizeof o);
    o.target = target;
    o.positive = positive;
    o.drop = drop != NULL ? &drop : NULL;
    o.n_drop = drop != NULL;
    r1 = fv_schema_infer_mem("t.csv", csv, len, &o, &s1, &d1);
    if (r1 == 0)
        r1 = fv_dataset_load_mem("t.csv", csv, len, s1, &ds1, &d1);
    r2 = fv_dataset_infer_load_mem("t.csv", csv, len, &o, &s2, &ds2, &d2);
    CHECK_INT_EQ(r2, r1);
    CHECK_STR_EQ(d2.msg, d1.msg);
    if (r1 == 0) {
        char *j1 = NULL, *j2 = NULL;
        size_t n1 = 0, n2 = 0;
        CHECK_OK(fv_schema_to_json(s1, &j1, &n1), D);
        CHECK_OK(fv_schema_to_json(s2, &j2, &n2), D);
        CHECK(n1 == n2 && memcmp(j1, j2, n1) == 0);
        free(j1);
        free(j2);
        CHECK(ds2->schema == s2);
        CHECK_UINT_EQ(ds2->n_rows, ds1->n_rows);
        CHECK_UINT_EQ(ds2->n_cols, ds1->n_cols);
        CHECK(memcmp(ds2->cells, ds1->cells, ds1->n_rows * ds1->n_cols * sizeof *ds1->cells) == 0);
        CHECK(memcmp(ds2->label, ds1->label, ds1->n_rows * sizeof *ds1->label) == 0);
        CHECK(memcmp(ds2->line, ds1->line, ds1->n_rows * sizeof *ds1->line) == 0);
    } else {
        CHECK(s2 == NULL && ds2 == NULL);
    }
    /* which path: one pass (inference kept the rows) or two */
    CHECK_OK(fv_csv_open_mem("t.csv", csv, len, &c, D), D);
    CHECK_INT_EQ(fv__schema_infer_keep(c, &o, &s3, &ds3, D), r1);
    CHECK(ds3 == NULL || ds3->schema == s3);
    CHECK((ds3 != NULL) == (r1 == 0 && want_one_pass));
    fv_csv_free(c);
    fv_dataset_free(ds1);
    fv_dataset_free(ds2);
    fv_dataset_free(ds3);
    fv_schema_free(s1);
    fv_schema_free(s2);
    fv_schema_free(s3);
}

static void test_infer_load_one_pass(void)
{
    /* every spelling of a number, missing cells, a dropped column, blank lines and a
     * quoted multi-line field (line numbers), CRLF, string labels out of order */
    static const char mixed[] = "a,b,id,note,y\r\n"
                                "1,-2.5,x1,\"two\nlines\",yes\r\n"
                                "\r\n"
                                "007,1e3,x2,t,no\r\n"
                                ",.5,x3,t,maybe\r\n"
                                "NA,-0,x4,t,yes\r\n"
                                "1023,123456789012345678901234567890,x5,t,no\r\n"
                                "1024,+3,x6,t,maybe\r\n"
                                "0,1e-400,x7,t,no\r\n";
    /* note is text: two passes unless it is dropped */
    infer_load_same(mixed, "y", NULL, "note", false);
    {
        /* the same without the text column: one pass; multi-class, and binary */
        static const char num[] = "a,b,id,y\n"
                                  "1,-2.5,7,yes\n"
                                  "\n"
                                  "007,1e3,8,no\n"
                                  ",.5,9,maybe\n"
                                  "NA,-0,10,yes\n"
                                  "1023,5.,11,no\n"
                                  "1024,+3,12,maybe\n"
                                  "0,1E-3,13,no\n";
        static const char bin[] = "x,y\n3,b\n4,a\n5,b\n,a\n";
        infer_load_same(num, "y", NULL, NULL, true);
        infer_load_same(num, "y", NULL, "id", true);
        infer_load_same(bin, "y", "b", NULL, true);
        infer_load_same(bin, "y", "a", NULL, true);
    }
    /* numeric labels (Fashion-MNIST's), a column all missing */
    infer_load_same("label,p1,p2,e\n3,0,255,\n0,12,0,NA\n9,0,0,\n3,1,2,\n", "label", NULL, NULL,
                    true);
    /* a column that turns text at the last row: the kept rows are dropped, two passes */
    infer_load_same("x,z,y\n1,2,p\n3,4,q\n5,six,p\n", "y", NULL, NULL, false);
    infer_load_same("x,z,y\n1,2,p\n3,4,q\n5,inf,p\n", "y", NULL, NULL, false);
    /* errors: the same code and message */
    infer_load_same("x,y\n1,p\n2,\n", "y", NULL, NULL, false);    /* missing target */
    infer_load_same("x,y\n1,p\n2,q,3\n", "y", NULL, NULL, false); /* ragged */
    infer_load_same("x,y\n", "y", NULL, NULL, false);             /* no rows */
    infer_load_same("x,y\n1,p\n2,p\n", "y", NULL, NULL, false);   /* one label */
    infer_load_same("x,y\n1,p\n2,q\n", "y", "r", NULL, false);    /* no such positive */
    infer_load_same("x,y\n1,p\n2,\"q\n", "y", NULL, NULL, false); /* unterminated quote */
    /* a file of more rows than the first growth step (1024), ending mid-window */
    {
        size_t cap = 64 << 10, o = 0;
        char *big = malloc(cap);
        CHECK(big != NULL);
        o += (size_t)snprintf(big + o, cap - o, "v,w,y\n");
        for (int i = 0; i < 3000; i++)
            o += (size_t)snprintf(big + o, cap - o, "%d,%d.%d,c%d\n", i, i % 7, i % 3, i % 5);
        infer_load_same(big, "y", NULL, NULL, true);
        free(big);
    }
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

static size_t count_pos(const fv_dataset_t *ds, const size_t *rows, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ds->label[rows != NULL ? rows[i] : i] == 1;
    return k;
}

static void check_split(const fv_dataset_t *ds, const size_t *train, size_t n_train,
                        const size_t *test, size_t n_test, size_t n_all)
{
    /* sorted, disjoint, and together every row once */
    char *seen = calloc(ds->n_rows, 1);
    CHECK(seen != NULL);
    CHECK_UINT_EQ(n_train + n_test, n_all);
    for (size_t i = 0; i < n_train; i++) {
        CHECK(i == 0 || train[i - 1] < train[i]);
        CHECK(train[i] < ds->n_rows && !seen[train[i]]);
        seen[train[i]] = 1;
    }
    for (size_t i = 0; i < n_test; i++) {
        CHECK(i == 0 || test[i - 1] < test[i]);
        CHECK(test[i] < ds->n_rows && !seen[test[i]]);
        seen[test[i]] = 1;
    }
    free(seen);
}

static void test_examples_and_split(void)
{
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    size_t *tr = NULL, *te = NULL, *tr2 = NULL, *te2 = NULL, ntr, nte, ntr2, nte2;

    load_example("examples/data/lending_club.csv", "Class", &s, &ds);
    CHECK_UINT_EQ(ds->n_rows, 9857);
    CHECK_UINT_EQ(ds->n_cols, 23);
    CHECK_UINT_EQ(count_pos(ds, NULL, ds->n_rows), 517);
    CHECK_UINT_EQ(ds->line[0], 2);
    CHECK_UINT_EQ(ds->line[ds->n_rows - 1], 9858);
    /* first data row: 16100,"term_36",13.99,... */
    CHECK(CELL(ds, 0, 0) == 16100.0);
    CHECK(CELL(ds, 0, 1) == 0.0);
    CHECK(CELL(ds, 0, 2) == 13.99);

    /* 25 % test, stratified: positives in test = round(0.25 * 517) = 129 */
    CHECK_OK(fv_dataset_split(ds, NULL, 0, 0.25, 42, &tr, &ntr, &te, &nte), D);
    check_split(ds, tr, ntr, te, nte, ds->n_rows);
    CHECK_UINT_EQ(count_pos(ds, te, nte), 129);
    CHECK_UINT_EQ(count_pos(ds, tr, ntr), 517 - 129);
    CHECK_UINT_EQ(nte, 129 + 2335); /* round(0.25 * 9340) = 2335 negatives */

    /* deterministic for a seed; another seed gives another split of the same sizes */
    CHECK_OK(fv_dataset_split(ds, NULL, 0, 0.25, 42, &tr2, &ntr2, &te2, &nte2), D);
    CHECK_UINT_EQ(nte2, nte);
    CHECK(memcmp(te, te2, nte * sizeof *te) == 0);
    CHECK(memcmp(tr, tr2, ntr * sizeof *tr) == 0);
    free(tr2);
    free(te2);
    CHECK_OK(fv_dataset_split(ds, NULL, 0, 0.25, 43, &tr2, &ntr2, &te2, &nte2), D);
    CHECK_UINT_EQ(nte2, nte);
    CHECK(memcmp(te, te2, nte * sizeof *te) != 0);
    CHECK_UINT_EQ(count_pos(ds, te2, nte2), 129);
    free(tr2);
    free(te2);

    /* split a subset (the training rows again, as for a validation set) */
    CHECK_OK(fv_dataset_split(ds, tr, ntr, 0.2, 7, &tr2, &ntr2, &te2, &nte2), D);
    check_split(ds, tr2, ntr2, te2, nte2, ntr);
    CHECK_UINT_EQ(count_pos(ds, te2, nte2), 78); /* round(0.2 * 388) = 77.6 -> 78 */
    {
        /* ... and only rows of the subset come out */
        char *in_tr = calloc(ds->n_rows, 1);
        CHECK(in_tr != NULL);
        for (size_t i = 0; i < ntr; i++)
            in_tr[tr[i]] = 1;
        for (size_t i = 0; i < nte2; i++)
            CHECK(in_tr[te2[i]]);
        for (size_t i = 0; i < ntr2; i++)
            CHECK(in_tr[tr2[i]]);
        free(in_tr);
    }
    free(tr2);
    free(te2);

    /* fraction 0: everything trains */
    CHECK_OK(fv_dataset_split(ds, NULL, 0, 0.0, 1, &tr2, &ntr2, &te2, &nte2), D);
    CHECK_UINT_EQ(nte2, 0);
    CHECK_UINT_EQ(ntr2, ds->n_rows);
    free(tr2);
    free(te2);

    /* bad arguments; out-parameters untouched */
    tr2 = te2 = NULL;
    CHECK_INT_EQ(fv_dataset_split(ds, NULL, 0, 1.0, 1, &tr2, &ntr2, &te2, &nte2), FV_EINVAL);
    CHECK_INT_EQ(fv_dataset_split(ds, NULL, 0, -0.1, 1, &tr2, &ntr2, &te2, &nte2), FV_EINVAL);
    CHECK_INT_EQ(fv_dataset_split(ds, NULL, 0, NAN, 1, &tr2, &ntr2, &te2, &nte2), FV_EINVAL);
    {
        size_t bad[1] = {ds->n_rows};
        CHECK_INT_EQ(fv_dataset_split(ds, bad, 1, 0.5, 1, &tr2, &ntr2, &te2, &nte2), FV_EINVAL);
    }
    CHECK(tr2 == NULL && te2 == NULL);

    free(tr);
    free(te);
    fv_dataset_free(ds);
    fv_schema_free(s);

    load_example("examples/data/german_credit.csv", "class", &s, &ds);
    CHECK_UINT_EQ(ds->n_rows, 1000);
    CHECK_UINT_EQ(ds->n_cols, 21);
    CHECK_UINT_EQ(count_pos(ds, NULL, ds->n_rows), 300);
    CHECK_OK(fv_dataset_split(ds, NULL, 0, 0.25, 42, &tr, &ntr, &te, &nte), D);
    check_split(ds, tr, ntr, te, nte, ds->n_rows);
    CHECK_UINT_EQ(count_pos(ds, te, nte), 75);
    CHECK_UINT_EQ(nte, 250);
    free(tr);
    free(te);
    fv_dataset_free(ds);
    fv_schema_free(s);
}

static void test_split_small(void)
{
    /* tiny classes: round half away from zero per class, an empty class is fine */
    fv_schema_t *s = test_schema("error");
    fv_dataset_t *ds = NULL;
    size_t *tr, *te, ntr, nte;
    CHECK_OK(load("age,city,id,y\n1,paris,a,yes\n2,paris,a,no\n3,paris,a,no\n", s, &ds), D);
    CHECK_OK(fv_dataset_split(ds, NULL, 0, 0.5, 3, &tr, &ntr, &te, &nte), D);
    /* class 1: round(0.5) = 1 (half away from zero); class 0: round(1.0) = 1 */
    CHECK_UINT_EQ(nte, 2);
    CHECK_UINT_EQ(ntr, 1);
    free(tr);
    free(te);
    /* an empty row subset */
    {
        size_t none[1] = {0};
        CHECK_OK(fv_dataset_split(ds, none, 0, 0.5, 3, &tr, &ntr, &te, &nte), D);
        CHECK_UINT_EQ(ntr + nte, 0);
        CHECK(tr != NULL && te != NULL);
        free(tr);
        free(te);
    }
    fv_dataset_free(ds);
    fv_schema_free(s);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fv_test_dataset.XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);

    test_load_good();
    test_load_multiclass();
    test_unknown_category();
    test_load_errors();
    test_files();
    test_infer_load_agree();
    test_infer_load_one_pass();
    test_examples_and_split();
    test_split_small();

    CHECK(rmdir(tmpdir) == 0);
    return 0;
}
