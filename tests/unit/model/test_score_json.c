/* test_score_json.c - the scoring request's decoder (model/fv_score_json.h), rule by rule.
 *
 * One small schema (numeric "age", categorical "city" of lyon/paris, ignored "id", target
 * "y"), under both unknown-category policies. Good rows are checked against the CSV
 * decoder: the same values written as a CSV and loaded with fv_dataset must give the same
 * cells, bit for bit (NaN for NaN). Every refusal checks its code and that the sentence
 * names the member, row or column.
 */
#include "fv_score_json.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_dataset.h"
#include "fv_schema.h"
#include "fv_test.h"

static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;

static const char schema_json[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\","
    "\"classes\":[\"maybe\",\"no\",\"yes\"],\"unknown_category\":\"%s\",\"columns\":["
    "{\"name\":\"age\",\"type\":\"numeric\"},"
    "{\"name\":\"city\",\"type\":\"categorical\",\"categories\":[\"lyon\",\"paris\"]},"
    "{\"name\":\"id\",\"type\":\"ignored\"},"
    "{\"name\":\"y\",\"type\":\"target\"}]}";

enum { AGE = 0, CITY = 1, ID = 2, Y = 3 };

static fv_schema_t *test_schema(const char *policy)
{
    char buf[1024];
    fv_schema_t *s = NULL;
    snprintf(buf, sizeof buf, schema_json, policy);
    CHECK_OK(fv_schema_from_json("s.json", buf, strlen(buf), &s, D), D);
    return s;
}

static const fv_score_json_opts_t OPTS = {.max_bytes = 1 << 16, .max_rows = 8};

static fv_score_json_t *parse_ok(const char *body)
{
    fv_score_json_t *r = NULL;
    D->msg[0] = '\0';
    CHECK_OK(fv_score_json_parse(body, strlen(body), &OPTS, &r, D), D);
    CHECK(r != NULL);
    return r;
}

/* Parsing fails with err and a sentence holding needle. */
static void parse_bad(const char *body, const fv_score_json_opts_t *o, int err, const char *needle)
{
    fv_score_json_t *r = NULL;
    D->msg[0] = '\0';
    int got = fv_score_json_parse(body, strlen(body), o != NULL ? o : &OPTS, &r, D);
    if (got != err)
        fprintf(stderr, "body %.200s: %d (%s) %s\n", body, got, fv_err_name(got), D->msg);
    CHECK_INT_EQ(got, err);
    CHECK(r == NULL);
    CHECK_CONTAINS(D->msg, needle);
}

static fv_score_batch_t *bind_ok(const fv_score_json_t *r, const fv_schema_t *s)
{
    fv_score_batch_t *b = NULL;
    CHECK_OK(fv_score_json_bind(r, s, &b), NULL);
    CHECK(b != NULL);
    CHECK_UINT_EQ(b->n_req, fv_score_json_n_rows(r));
    CHECK(b->ds.schema == s);
    CHECK_UINT_EQ(b->ds.n_cols, fv_schema_n_columns(s));
    return b;
}

static const char *row_err(const fv_score_batch_t *b, size_t j)
{
    return b->row_err + j * FV_SCORE_ROW_ERR_MAX;
}

/* One row body; that row bad with every given substring in its sentence. */
static void row_bad(const fv_schema_t *s, const char *body, const char *n1, const char *n2)
{
    fv_score_json_t *r = parse_ok(body);
    fv_score_batch_t *b = bind_ok(r, s);
    CHECK_UINT_EQ(b->n_req, 1);
    if (b->row_ok[0])
        fprintf(stderr, "body %s: row decoded\n", body);
    CHECK(!b->row_ok[0]);
    CHECK_UINT_EQ(b->ds.n_rows, 0);
    CHECK(b->ds_row[0] == SIZE_MAX);
    CHECK_CONTAINS(row_err(b, 0), "row 0: ");
    CHECK_CONTAINS(row_err(b, 0), n1);
    if (n2 != NULL)
        CHECK_CONTAINS(row_err(b, 0), n2);
    fv_score_batch_free(b);
    fv_score_json_free(r);
}

/* Same cell: the same bits, or both NaN. */
static int same_cell(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* The bound good rows equal the CSV decoder's rows of csv (header included), in order. */
static void check_as_csv(const fv_score_batch_t *b, const char *csv, const fv_schema_t *s)
{
    fv_dataset_t *ds = NULL;
    CHECK_OK(fv_dataset_load_mem("same.csv", csv, strlen(csv), s, &ds, D), D);
    CHECK_UINT_EQ(ds->n_rows, b->ds.n_rows);
    for (size_t i = 0; i < ds->n_rows; i++) {
        CHECK_INT_EQ(b->ds.label[i], -1);
        for (size_t c = 0; c < ds->n_cols; c++) {
            double want = ds->cells[i * ds->n_cols + c], got = b->ds.cells[i * ds->n_cols + c];
            if (!same_cell(want, got))
                fprintf(stderr, "row %zu col %zu: json %.17g csv %.17g\n", i, c, got, want);
            CHECK(same_cell(want, got));
        }
    }
    fv_dataset_free(ds);
}

static void test_single_row(void)
{
    fv_schema_t *s = test_schema("error");
    fv_score_json_t *r = parse_ok("{\"row\":{\"age\":31,\"city\":\"paris\",\"id\":\"c-9\","
                                  "\"y\":\"yes\"}}");
    CHECK_UINT_EQ(fv_score_json_n_rows(r), 1);
    size_t kl = 99;
    CHECK(fv_score_json_key(r, &kl) == NULL);
    CHECK_UINT_EQ(kl, 0);
    CHECK(!fv_score_json_explain(r));
    fv_score_batch_t *b = bind_ok(r, s);
    CHECK(b->row_ok[0]);
    CHECK_UINT_EQ(b->ds.n_rows, 1);
    CHECK_UINT_EQ(b->ds_row[0], 0);
    CHECK_UINT_EQ(b->ds.line[0], 0);
    CHECK_STR_EQ(row_err(b, 0), "");
    check_as_csv(b, "age,city,id,y\n31,paris,c-9,yes\n", s);
    CHECK(b->ds.cells[AGE] == 31.0 && b->ds.cells[CITY] == 1.0);
    CHECK(isnan(b->ds.cells[ID]) && isnan(b->ds.cells[Y]));
    fv_score_batch_free(b);
    fv_score_json_free(r);
    fv_schema_free(s);
}

/* A batch of good rows: every number form, missing values as null and as the CSV's ""
 * and "NA" strings for a category, target and ignored columns absent or of any type. */
static void test_batch_matches_csv(void)
{
    fv_schema_t *s = test_schema("error");
    const char *body = "{\"rows\":["
                       "{\"age\":52000,\"city\":\"lyon\"},"
                       "{\"age\":-3.5,\"city\":\"paris\",\"y\":\"zzz\",\"id\":{\"a\":[1,2]}},"
                       "{\"age\":1e-3,\"city\":null,\"y\":5},"
                       "{\"age\":null,\"city\":\"\"},"
                       "{\"age\":100000000000000000000000,\"city\":\"NA\",\"id\":null},"
                       "{\"age\":0.1,\"city\":\"lyon\",\"y\":null},"
                       "{\"age\":1.7976931348623157e308,\"city\":\"paris\"},"
                       "{\"age\":-0.0,\"city\":\"paris\",\"id\":true}"
                       "],\"key\":\"customer-123\",\"explain\":true}";
    /* The same values as a CSV (the target is required there: any label). */
    const char *csv = "age,city,id,y\n"
                      "52000,lyon,,no\n"
                      "-3.5,paris,x,no\n"
                      "1e-3,,,no\n"
                      ",,,no\n"
                      "100000000000000000000000,NA,,no\n"
                      "0.1,lyon,,no\n"
                      "1.7976931348623157e308,paris,,no\n"
                      "-0.0,paris,,no\n";
    fv_score_json_t *r = parse_ok(body);
    CHECK_UINT_EQ(fv_score_json_n_rows(r), 8);
    size_t kl = 0;
    CHECK_STR_EQ(fv_score_json_key(r, &kl), "customer-123");
    CHECK_UINT_EQ(kl, 12);
    CHECK(fv_score_json_explain(r));
    fv_score_batch_t *b = bind_ok(r, s);
    CHECK_UINT_EQ(b->ds.n_rows, 8);
    for (size_t j = 0; j < 8; j++) {
        CHECK(b->row_ok[j]);
        CHECK_UINT_EQ(b->ds_row[j], j);
        CHECK_UINT_EQ(b->ds.line[j], j);
    }
    check_as_csv(b, csv, s);
    CHECK(b->ds.cells[2 * 4 + CITY] == FV_CELL_MISSING);
    CHECK(isnan(b->ds.cells[3 * 4 + AGE]));
    CHECK(signbit(b->ds.cells[7 * 4 + AGE])); /* -0.0 kept, as strtod gives it */
    fv_score_batch_free(b);
    fv_score_json_free(r);
    fv_schema_free(s);
}

static void test_malformed(void)
{
    parse_bad("", NULL, FV_EPARSE, "line 1, column");
    parse_bad("{\"rows\":[", NULL, FV_EPARSE, "line 1, column");
    parse_bad("{\"rows\":[{\"age\":1}]}xyz", NULL, FV_EPARSE, "line 1");
    parse_bad("{\"rows\":[{\"age\":01}]}", NULL, FV_EPARSE, "line 1");
    parse_bad("{\"rows\":[{\"age\":NaN}]}", NULL, FV_EPARSE, "line 1");
    parse_bad("{\"rows\":[{\"age\":Infinity}]}", NULL, FV_EPARSE, "line 1");
    parse_bad("{\"rows\":\n[{'age':1}]}", NULL, FV_EPARSE, "line 2");
    /* duplicates: the value would depend on the parser */
    parse_bad("{\"rows\":[{\"age\":1,\"age\":2}]}", NULL, FV_EPARSE, "duplicate");
    parse_bad("{\"rows\":[{\"age\":1}],\"rows\":[{\"age\":2}]}", NULL, FV_EPARSE, "duplicate");
    /* not UTF-8; NUL in a string */
    parse_bad("{\"rows\":[{\"city\":\"\xff\"}]}", NULL, FV_EPARSE, "line 1");
    parse_bad("{\"rows\":[{\"city\":\"a\\u0000b\"}]}", NULL, FV_EPARSE, "line 1");
    const char nul_body[] = "{\"row\":{}}\0";
    fv_score_json_t *r = NULL;
    CHECK_INT_EQ(fv_score_json_parse(nul_body, sizeof nul_body - 1, &OPTS, &r, D), FV_EPARSE);
    CHECK(r == NULL);
}

/* A number past a double's range is refused by jansson at parse: the whole body, named by
 * line and column (the header says so); the largest finite double is a good value. */
static void test_non_finite(void)
{
    parse_bad("{\"rows\":[{\"age\":1e400,\"city\":\"lyon\"}]}", NULL, FV_EPARSE, "line 1, column");
    parse_bad("{\"rows\":[{\"age\":-1e400}]}", NULL, FV_EPARSE, "overflow");
    /* an integer of 400 digits is read as a double too: overflow */
    char big[600];
    int k = snprintf(big, sizeof big, "{\"row\":{\"age\":");
    for (int i = 0; i < 400; i++)
        big[k++] = '9';
    snprintf(big + k, sizeof big - (size_t)k, "}}");
    parse_bad(big, NULL, FV_EPARSE, "overflow");
    /* underflow is not an error: the nearest double, as strtod (and a CSV cell) gives */
    fv_schema_t *s = test_schema("error");
    fv_score_json_t *r = parse_ok("{\"row\":{\"age\":1e-400,\"city\":\"lyon\"}}");
    fv_score_batch_t *b = bind_ok(r, s);
    CHECK(b->row_ok[0]);
    check_as_csv(b, "age,city,id,y\n1e-400,lyon,,no\n", s);
    fv_score_batch_free(b);
    fv_score_json_free(r);
    fv_schema_free(s);
}

static void test_shape(void)
{
    fv_score_json_opts_t two = {.max_bytes = 1 << 16, .max_rows = 2};
    parse_bad("[{\"age\":1}]", NULL, FV_EPROTO, "the body is an array");
    parse_bad("{}", NULL, FV_EPROTO, "'rows' (an array of 1..8 objects) or 'row'");
    parse_bad("{\"rows\":5}", NULL, FV_EPROTO,
              "'rows' must be an array of 1..8 objects, got a number");
    parse_bad("{\"rows\":{}}", NULL, FV_EPROTO, "'rows' must be an array");
    parse_bad("{\"rows\":[]}", NULL, FV_EPROTO, "got 0 rows");
    parse_bad("{\"rows\":[{},{},{}]}", &two, FV_EPROTO,
              "'rows' must be an array of 1..2 objects, got 3 rows");
    parse_bad("{\"rows\":[{},\"x\"]}", NULL, FV_EPROTO, "rows[1] is a string");
    parse_bad("{\"rows\":[null]}", NULL, FV_EPROTO, "rows[0] is null");
    parse_bad("{\"row\":[]}", NULL, FV_EPROTO, "'row' must be an object, got an array");
    parse_bad("{\"row\":{},\"rows\":[{}]}", NULL, FV_EPROTO, "both 'rows' and 'row'");
    parse_bad("{\"rows\":[{}],\"foo\":1}", NULL, FV_EPROTO, "unknown member 'foo'");
    parse_bad("{\"Rows\":[{}]}", NULL, FV_EPROTO, "unknown member 'Rows'");
    parse_bad("{\"row\":{},\"explain\":\"yes\"}", NULL, FV_EPROTO,
              "'explain' must be true or false, got a string");
    parse_bad("{\"row\":{},\"explain\":1}", NULL, FV_EPROTO, "'explain'");
    fv_score_json_t *r = parse_ok("{\"row\":{},\"explain\":false}");
    CHECK(!fv_score_json_explain(r));
    fv_score_json_free(r);
    /* exactly max_rows is fine */
    r = NULL;
    const char *b2 = "{\"rows\":[{},{}]}";
    CHECK_OK(fv_score_json_parse(b2, strlen(b2), &two, &r, D), D);
    CHECK_UINT_EQ(fv_score_json_n_rows(r), 2);
    fv_score_json_free(r);
}

static void test_caps(void)
{
    /* body size: over the cap before anything is read; at the cap fine */
    const char *body = "{\"row\":{\"age\":1}}";
    size_t n = strlen(body);
    fv_score_json_opts_t o = {.max_bytes = n - 1, .max_rows = 8};
    fv_score_json_t *r = NULL;
    D->msg[0] = '\0';
    CHECK_INT_EQ(fv_score_json_parse(body, n, &o, &r, D), FV_ETOOBIG);
    CHECK(r == NULL);
    CHECK_CONTAINS(D->msg, "at most 16 bytes");
    o.max_bytes = n;
    CHECK_OK(fv_score_json_parse(body, n, &o, &r, D), D);
    fv_score_json_free(r);

    /* depth: an ignored column may hold nested values up to the cap, not past it */
    char deep[512];
    for (int levels = FV_SCORE_MAX_DEPTH - 3; levels <= FV_SCORE_MAX_DEPTH - 2; levels++) {
        int k = snprintf(deep, sizeof deep, "{\"rows\":[{\"age\":1,\"city\":\"lyon\",\"id\":");
        for (int i = 0; i < levels; i++)
            deep[k++] = '[';
        for (int i = 0; i < levels; i++)
            deep[k++] = ']';
        snprintf(deep + k, sizeof deep - (size_t)k, "}]}");
        if (levels + 3 <= FV_SCORE_MAX_DEPTH) {
            fv_score_json_t *ok = parse_ok(deep);
            fv_schema_t *s = test_schema("error");
            fv_score_batch_t *b = bind_ok(ok, s);
            CHECK(b->row_ok[0]);
            fv_score_batch_free(b);
            fv_schema_free(s);
            fv_score_json_free(ok);
        } else {
            parse_bad(deep, NULL, FV_EPARSE, "nesting deeper than 32 levels");
        }
    }
    /* brackets inside strings do not count; a quote escaped inside a string does not end it */
    char strs[256];
    int k = snprintf(strs, sizeof strs, "{\"row\":{\"id\":\"\\\"");
    for (int i = 0; i < 60; i++)
        strs[k++] = '[';
    snprintf(strs + k, sizeof strs - (size_t)k, "\"}}");
    fv_score_json_free(parse_ok(strs));
    /* a hostile flood of brackets is refused by the pre-scan, at its position */
    char flood[4096];
    memset(flood, '[', sizeof flood - 1);
    flood[sizeof flood - 1] = '\0';
    parse_bad(flood, NULL, FV_EPARSE, "line 1, column 33: nesting deeper");

    /* key: 1..FV_SCORE_KEY_MAX bytes of string */
    char kb[FV_SCORE_KEY_MAX + 64];
    for (size_t len = FV_SCORE_KEY_MAX; len <= FV_SCORE_KEY_MAX + 1; len++) {
        int m = snprintf(kb, sizeof kb, "{\"row\":{},\"key\":\"");
        memset(kb + m, 'k', len);
        snprintf(kb + m + len, sizeof kb - (size_t)m - len, "\"}");
        if (len == FV_SCORE_KEY_MAX) {
            size_t kl = 0;
            r = parse_ok(kb);
            CHECK(fv_score_json_key(r, &kl) != NULL);
            CHECK_UINT_EQ(kl, FV_SCORE_KEY_MAX);
            CHECK_UINT_EQ(strlen(fv_score_json_key(r, NULL)), FV_SCORE_KEY_MAX);
            fv_score_json_free(r);
        } else {
            parse_bad(kb, NULL, FV_EPROTO, "'key' must be a string of 1..256 bytes, got 257 bytes");
        }
    }
    parse_bad("{\"row\":{},\"key\":\"\"}", NULL, FV_EPROTO, "got 0 bytes");
    parse_bad("{\"row\":{},\"key\":42}", NULL, FV_EPROTO,
              "'key' must be a string of 1..256 bytes, got a number");
    parse_bad("{\"row\":{},\"key\":null}", NULL, FV_EPROTO, "'key'");

    /* bad arguments */
    r = NULL;
    CHECK_INT_EQ(fv_score_json_parse(body, n, NULL, &r, D), FV_EINVAL);
    fv_score_json_opts_t zero = {.max_bytes = 100, .max_rows = 0};
    CHECK_INT_EQ(fv_score_json_parse(body, n, &zero, &r, D), FV_EINVAL);
    CHECK_INT_EQ(fv_score_json_parse(NULL, 3, &OPTS, &r, D), FV_EINVAL);
    CHECK_INT_EQ(fv_score_json_parse(body, n, &OPTS, NULL, D), FV_EINVAL);
    CHECK(r == NULL);
    fv_score_batch_t *b = NULL;
    CHECK_INT_EQ(fv_score_json_bind(NULL, NULL, &b), FV_EINVAL);
    CHECK(fv_score_json_n_rows(NULL) == 0 && fv_score_json_key(NULL, NULL) == NULL &&
          !fv_score_json_explain(NULL));
    fv_score_json_free(NULL);
    fv_score_batch_free(NULL);
}

static void test_row_errors(void)
{
    fv_schema_t *s = test_schema("error");
    /* wrong types per column */
    row_bad(s, "{\"row\":{\"age\":\"31\",\"city\":\"lyon\"}}",
            "column 'age': expected a number, got a string", NULL);
    row_bad(s, "{\"row\":{\"age\":true,\"city\":\"lyon\"}}",
            "column 'age': expected a number, got true", NULL);
    row_bad(s, "{\"row\":{\"age\":false,\"city\":\"lyon\"}}", "got false", NULL);
    row_bad(s, "{\"row\":{\"age\":[1],\"city\":\"lyon\"}}", "got an array", NULL);
    row_bad(s, "{\"row\":{\"age\":{},\"city\":\"lyon\"}}", "got an object", NULL);
    row_bad(s, "{\"row\":{\"age\":1,\"city\":5}}",
            "column 'city': expected a string (a category), got a number", NULL);
    row_bad(s, "{\"row\":{\"age\":1,\"city\":[\"lyon\"]}}", "column 'city'", "got an array");
    /* unknown and missing columns; the target and ignored columns may be absent */
    row_bad(s, "{\"row\":{\"agee\":1,\"age\":1,\"city\":\"lyon\"}}", "unknown column 'agee'", NULL);
    row_bad(s, "{\"row\":{\"city\":\"lyon\"}}", "missing column 'age'", NULL);
    row_bad(s, "{\"row\":{\"age\":2}}", "missing column 'city'", NULL);
    row_bad(s, "{\"row\":{}}", "missing column 'age'", NULL);
    /* first problem: unknown members (in the row's order) before schema columns */
    row_bad(s, "{\"row\":{\"age\":\"x\",\"zz\":1,\"aa\":2}}", "unknown column 'zz'", NULL);
    /* a member name past FV_SCORE_NAME_MAX: unknown, quoted cut */
    char *longname = malloc(FV_SCORE_NAME_MAX + 64);
    CHECK(longname != NULL);
    int k = snprintf(longname, 32, "{\"row\":{\"");
    memset(longname + k, 'a', FV_SCORE_NAME_MAX + 1);
    snprintf(longname + k + FV_SCORE_NAME_MAX + 1, 16, "\":1}}");
    row_bad(s, longname, "unknown column 'aaaa", NULL);
    free(longname);
    /* unknown category under policy "error": the CSV decoder's words */
    row_bad(s, "{\"row\":{\"age\":1,\"city\":\"rome\"}}",
            "column 'city': unknown category \"rome\"; expected one of 'lyon', 'paris'",
            "unknown_category \"other\"");
    /* a long hostile value: the sentence is cut, NUL-terminated, still names row and column */
    char hv[3000];
    k = snprintf(hv, sizeof hv, "{\"row\":{\"age\":1,\"city\":\"");
    memset(hv + k, 'x', 2000);
    snprintf(hv + k + 2000, sizeof hv - (size_t)k - 2000, "\"}}");
    row_bad(s, hv, "column 'city': unknown category", NULL);
    fv_schema_free(s);

    /* under policy "other": the unseen category goes to <other>, as in a CSV */
    s = test_schema("other");
    fv_score_json_t *r =
        parse_ok("{\"rows\":[{\"age\":1,\"city\":\"rome\"},{\"age\":2,\"city\":\"lyon\"}]}");
    fv_score_batch_t *b = bind_ok(r, s);
    CHECK(b->row_ok[0] && b->row_ok[1]);
    CHECK(b->ds.cells[CITY] == FV_CELL_OTHER);
    check_as_csv(b, "age,city,id,y\n1,rome,,no\n2,lyon,,no\n", s);
    fv_score_batch_free(b);
    /* the same parsed request bound to the "error" schema: row 0 bad; parse is reusable */
    fv_schema_t *se = test_schema("error");
    b = bind_ok(r, se);
    CHECK(!b->row_ok[0] && b->row_ok[1]);
    CHECK_UINT_EQ(b->ds_row[1], 0);
    CHECK_UINT_EQ(b->ds.line[0], 1);
    fv_score_batch_free(b);
    fv_score_json_free(r);
    fv_schema_free(se);
    fv_schema_free(s);
}

/* Bad rows cost themselves only: good rows keep their place, in order, and all-bad is still
 * a batch (the caller answers 422). */
static void test_mixed_batch(void)
{
    fv_schema_t *s = test_schema("error");
    fv_score_json_t *r = parse_ok("{\"rows\":["
                                  "{\"age\":1,\"city\":\"lyon\"},"
                                  "{\"age\":\"abc\",\"city\":\"lyon\"},"
                                  "{\"age\":3,\"city\":\"paris\"},"
                                  "{\"age\":4,\"town\":\"paris\"},"
                                  "{\"age\":5,\"city\":null}]}");
    fv_score_batch_t *b = bind_ok(r, s);
    CHECK_UINT_EQ(b->ds.n_rows, 3);
    static const bool ok[] = {true, false, true, false, true};
    static const size_t dsr[] = {0, SIZE_MAX, 1, SIZE_MAX, 2};
    for (size_t j = 0; j < 5; j++) {
        CHECK(b->row_ok[j] == ok[j]);
        CHECK(b->ds_row[j] == dsr[j]);
        if (ok[j]) {
            CHECK_STR_EQ(row_err(b, j), "");
            CHECK_UINT_EQ(b->ds.line[dsr[j]], j);
        }
    }
    CHECK_STR_EQ(row_err(b, 1), "row 1: column 'age': expected a number, got a string");
    CHECK_CONTAINS(row_err(b, 3), "row 3: unknown column 'town'");
    check_as_csv(b, "age,city,id,y\n1,lyon,,no\n3,paris,,no\n5,,,no\n", s);
    fv_score_batch_free(b);
    fv_score_json_free(r);

    r = parse_ok("{\"rows\":[{\"age\":\"a\"},{\"x\":1}]}");
    b = bind_ok(r, s);
    CHECK_UINT_EQ(b->ds.n_rows, 0);
    CHECK(!b->row_ok[0] && !b->row_ok[1]);
    fv_score_batch_free(b);
    fv_score_json_free(r);
    fv_schema_free(s);
}

int main(void)
{
    test_single_row();
    test_batch_matches_csv();
    test_malformed();
    test_non_finite();
    test_shape();
    test_caps();
    test_row_errors();
    test_mixed_batch();
    printf("ok\n");
    return 0;
}
