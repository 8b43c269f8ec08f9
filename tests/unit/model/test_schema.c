/* test_schema.c - schema inference, canonical JSON, strict loading.
 *
 * Inference: types, sorted vocabularies, missing values, the number grammar, every
 * error with its place, the category cap. Real data: the two example files. JSON: a
 * known-answer canonical encoding, round trips (equal schemas, equal bytes), and one
 * test per rule of the strict decoder, each checking the message names the JSON path.
 */
#include "fv_schema.h"
#include "fv_test.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One diagnostic for the whole file, through a pointer (see test_csv.c). */
static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;
static char tmpdir[256];

static int infer(const char *csv, const char *target, const char *positive, fv_schema_t **ret)
{
    fv_schema_infer_opts_t o;
    memset(&o, 0, sizeof o);
    o.target = target;
    o.positive = positive;
    D->msg[0] = '\0';
    return fv_schema_infer_mem("t.csv", csv, strlen(csv), &o, ret, D);
}

/* Inference fails with err and a message holding every given substring. */
#define CHECK_INFER_BAD(csv, target, positive, err, ...)                                           \
    do {                                                                                           \
        fv_schema_t *s_ = NULL;                                                                    \
        const char *want_[] = {__VA_ARGS__};                                                       \
        CHECK_INT_EQ(infer(csv, target, positive, &s_), err);                                      \
        CHECK(s_ == NULL);                                                                         \
        for (size_t k_ = 0; k_ < sizeof want_ / sizeof want_[0]; k_++)                             \
            CHECK_CONTAINS(D->msg, want_[k_]);                                                     \
    } while (0)

static void test_infer_basic(void)
{
    const char csv[] = "age,city,id,note,y\n"
                       "30,b,1,x,yes\n"
                       "41.5,B,2,,no\n"
                       ",a,3,NA,no\n"
                       "NA,,4,y,yes\n"
                       "7,b,5,z,no\n";
    fv_schema_t *s = NULL;
    fv_schema_infer_opts_t o;
    const char *drop[] = {"id"};
    memset(&o, 0, sizeof o);
    o.target = "y";
    o.positive = "yes";
    o.drop = drop;
    o.n_drop = 1;
    CHECK_OK(fv_schema_infer_mem("t.csv", csv, sizeof csv - 1, &o, &s, D), D);

    CHECK_UINT_EQ(fv_schema_n_columns(s), 5);
    CHECK_STR_EQ(fv_schema_column_name(s, 0), "age");
    CHECK_INT_EQ(fv_schema_column_type(s, 0), FV_COL_NUMERIC);
    CHECK_INT_EQ(fv_schema_column_type(s, 1), FV_COL_CATEGORICAL);
    CHECK_INT_EQ(fv_schema_column_type(s, 2), FV_COL_IGNORED);
    CHECK_INT_EQ(fv_schema_column_type(s, 3), FV_COL_CATEGORICAL);
    CHECK_INT_EQ(fv_schema_column_type(s, 4), FV_COL_TARGET);
    /* sorted by byte order ('B' < 'a' < 'b'); missing cells are not categories */
    CHECK_UINT_EQ(fv_schema_n_categories(s, 1), 3);
    CHECK_STR_EQ(fv_schema_category(s, 1, 0), "B");
    CHECK_STR_EQ(fv_schema_category(s, 1, 1), "a");
    CHECK_STR_EQ(fv_schema_category(s, 1, 2), "b");
    CHECK(fv_schema_category(s, 1, 3) == NULL);
    CHECK_UINT_EQ(fv_schema_n_categories(s, 3), 3); /* x y z: "" and NA are missing */
    CHECK_UINT_EQ(fv_schema_n_categories(s, 0), 0);
    CHECK_UINT_EQ(fv_schema_n_categories(s, 2), 0);
    CHECK_INT_EQ(fv_schema_category_index(s, 1, "a"), 1);
    CHECK_INT_EQ(fv_schema_category_index(s, 1, "c"), -1);
    CHECK_INT_EQ(fv_schema_category_index(s, 0, "a"), -1);

    CHECK_INT_EQ(fv_schema_column_index(s, "note"), 3);
    CHECK_INT_EQ(fv_schema_column_index(s, "y"), 4);
    CHECK_INT_EQ(fv_schema_column_index(s, "nope"), -1);
    CHECK_UINT_EQ(fv_schema_target(s), 4);

    CHECK(fv_schema_is_binary(s));
    CHECK_STR_EQ(fv_schema_positive(s), "yes");
    CHECK_UINT_EQ(fv_schema_n_classes(s), 2);
    CHECK_UINT_EQ(fv_schema_n_labels(s), 2);
    CHECK_STR_EQ(fv_schema_label(s, 0), "no");
    CHECK_STR_EQ(fv_schema_label(s, 1), "yes");
    CHECK_INT_EQ(fv_schema_class_of(s, "yes"), 1);
    CHECK_INT_EQ(fv_schema_class_of(s, "no"), 0);
    CHECK_INT_EQ(fv_schema_class_of(s, "maybe"), -1);
    CHECK_INT_EQ(fv_schema_unknown_policy(s), FV_UNKNOWN_ERROR);
    fv_schema_free(s);
    fv_schema_free(NULL);

    CHECK(fv_schema_is_missing(""));
    CHECK(fv_schema_is_missing("NA"));
    CHECK(!fv_schema_is_missing("na"));
    CHECK(!fv_schema_is_missing("NA "));
    CHECK(!fv_schema_is_missing(" "));
}

static void test_infer_binary_one_vs_rest(void)
{
    /* binary with three labels: positive is 1, every other label 0 */
    fv_schema_t *s = NULL;
    CHECK_OK(infer("x,y\n1,a\n2,b\n3,c\n", "y", "b", &s), D);
    CHECK_UINT_EQ(fv_schema_n_classes(s), 2);
    CHECK_UINT_EQ(fv_schema_n_labels(s), 3);
    CHECK_INT_EQ(fv_schema_class_of(s, "a"), 0);
    CHECK_INT_EQ(fv_schema_class_of(s, "b"), 1);
    CHECK_INT_EQ(fv_schema_class_of(s, "c"), 0);
    fv_schema_free(s);
}

static void test_infer_multiclass(void)
{
    fv_schema_t *s = NULL;
    CHECK_OK(infer("x,y\n1,dog\n2,cat\n3,emu\n4,cat\n", "y", NULL, &s), D);
    CHECK(!fv_schema_is_binary(s));
    CHECK(fv_schema_positive(s) == NULL);
    CHECK_UINT_EQ(fv_schema_n_classes(s), 3);
    CHECK_INT_EQ(fv_schema_class_of(s, "cat"), 0);
    CHECK_INT_EQ(fv_schema_class_of(s, "dog"), 1);
    CHECK_INT_EQ(fv_schema_class_of(s, "emu"), 2);
    /* a numeric-looking target is still a set of labels */
    fv_schema_free(s);
    CHECK_OK(infer("x,y\n1,1\n2,0\n", "y", "1", &s), D);
    CHECK_INT_EQ(fv_schema_column_type(s, 1), FV_COL_TARGET);
    CHECK_INT_EQ(fv_schema_class_of(s, "1"), 1);
    fv_schema_free(s);
}

static void test_infer_number_grammar(void)
{
    /* Each column holds one odd value; numeric ones first, then text ones. */
    const char csv[] = "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,y\n"
                       "1e3,-2.5,.5,5.,+3,0,-0,1E-3,inf,nan,1e999,\" 12\",0x10,1;5,1e,-,p\n"
                       "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,q\n";
    fv_schema_t *s = NULL;
    CHECK_OK(infer(csv, "y", NULL, &s), D);
    for (size_t j = 0; j < 8; j++)
        CHECK_INT_EQ(fv_schema_column_type(s, j), FV_COL_NUMERIC);
    /* inf, nan, overflow, spaces, hex, other separators, half numbers: text */
    for (size_t j = 8; j < 16; j++)
        CHECK_INT_EQ(fv_schema_column_type(s, j), FV_COL_CATEGORICAL);
    CHECK_INT_EQ(fv_schema_category_index(s, 8, "inf"), 1); /* "1" < "inf" */
    fv_schema_free(s);
}

static void test_infer_all_missing(void)
{
    fv_schema_t *s = NULL;
    CHECK_OK(infer("a,b,y\n,NA,p\nNA,,q\n", "y", NULL, &s), D);
    CHECK_INT_EQ(fv_schema_column_type(s, 0), FV_COL_NUMERIC);
    CHECK_INT_EQ(fv_schema_column_type(s, 1), FV_COL_NUMERIC);
    fv_schema_free(s);
}

static void test_infer_csv_details(void)
{
    /* BOM, CRLF, quoted header, empty lines: same schema as the plain file */
    fv_schema_t *a = NULL, *b = NULL;
    CHECK_OK(infer("x,c,y\n1,u,p\n2,v,q\n", "y", "p", &a), D);
    CHECK_OK(infer("\xEF\xBB\xBF\"x\",\"c\",\"y\"\r\n\r\n1,\"u\",p\r\n2,v,\"q\"", "y", "p", &b), D);
    CHECK(fv_schema_equal(a, b));
    fv_schema_free(a);
    fv_schema_free(b);
}

static void test_infer_errors(void)
{
    CHECK_INFER_BAD("", "y", NULL, FV_EEMPTY, "t.csv:1:1:", "empty file", "expected a header");
    CHECK_INFER_BAD("\n\n", "y", NULL, FV_EEMPTY, "t.csv:1:1:", "empty file");
    CHECK_INFER_BAD("x,y\n", "y", NULL, FV_EEMPTY, "t.csv:2:", "no data rows",
                    "expected at least one row");
    CHECK_INFER_BAD("x,y", "y", NULL, FV_EEMPTY, "t.csv:2:", "no data rows");
    CHECK_INFER_BAD("x,y\n1,p\n", "Class", NULL, FV_ESCHEMA,
                    "t.csv:1:", "target column 'Class' is not in the header");
    CHECK_INFER_BAD("x,y,x\n1,p,2\n", "y", NULL, FV_ESCHEMA, "t.csv:1:3:", "column 'x'",
                    "duplicate header name (also column 1)", "expected unique");
    /* ragged rows: too many and too few fields */
    CHECK_INFER_BAD("x,c,y\n1,a,p\n2,b,q,9\n", "y", NULL, FV_EPARSE,
                    "t.csv:3:4:", "row has 4 fields, the header has 3", "expected 3 fields");
    CHECK_INFER_BAD("x,c,y\n1,a,p\n2,b\n", "y", NULL, FV_EPARSE, "t.csv:3:3:", "column 'y'",
                    "row has 2 fields, the header has 3");
    /* missing target cells, empty and NA */
    CHECK_INFER_BAD("x,y\n1,p\n2,\n", "y", NULL, FV_ESCHEMA, "t.csv:3:2:", "column 'y'",
                    "missing target label", "expected a class label");
    CHECK_INFER_BAD("y,x\n p,1\nNA,2\n", "y", NULL, FV_ESCHEMA, "t.csv:3:1:", "column 'y'");
    /* positive never seen */
    CHECK_INFER_BAD("x,y\n1,good\n2,bad\n", "y", "bda", FV_ESCHEMA, "t.csv:", "column 'y'",
                    "positive label 'bda' never appears", "expected one of 'bad', 'good'");
    /* a single label */
    CHECK_INFER_BAD("x,y\n1,good\n2,good\n", "y", NULL, FV_ESCHEMA, "column 'y'",
                    "single label 'good'", "expected at least two");
    /* not UTF-8 (Latin-1 e-acute) */
    CHECK_INFER_BAD("x,y\ncaf\xE9,p\nb,q\n", "y", NULL, FV_EPARSE, "t.csv:2:1:", "column 'x'",
                    "not valid UTF-8", "iconv");
    CHECK_INFER_BAD("x\xE9,y\n1,p\n", "y", NULL, FV_EPARSE, "t.csv:1:1:", "not valid UTF-8");
    /* CSV syntax errors come through with their place */
    CHECK_INFER_BAD("x,y\n1,\"p\n", "y", NULL, FV_EPARSE, "t.csv:2:2:", "never closed");
    /* a control byte in a value is shown escaped, not raw */
    CHECK_INFER_BAD("x,y\n1,p\n\x01\xff,q\n", "y", NULL, FV_EPARSE, "t.csv:3:1:", "\\x01");
}

static void test_infer_drop(void)
{
    fv_schema_infer_opts_t o;
    fv_schema_t *s = NULL;
    const char csv[] = "x,y,z\n1,p,a\n2,q,b\n";
    const char *drop_bad[] = {"z", "nope"};
    const char *drop_target[] = {"y"};
    memset(&o, 0, sizeof o);
    o.target = "y";
    o.drop = drop_bad;
    o.n_drop = 2;
    CHECK_INT_EQ(fv_schema_infer_mem("t.csv", csv, sizeof csv - 1, &o, &s, D), FV_ESCHEMA);
    CHECK_CONTAINS(D->msg, "t.csv:1:");
    CHECK_CONTAINS(D->msg, "drop column 'nope' is not in the header");
    o.drop = drop_target;
    o.n_drop = 1;
    CHECK_INT_EQ(fv_schema_infer_mem("t.csv", csv, sizeof csv - 1, &o, &s, D), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "t.csv:1:2:");
    CHECK_CONTAINS(D->msg, "target cannot be dropped");
    /* a dropped column is not analysed at all: even garbage is fine */
    o.drop = drop_bad;
    o.n_drop = 1;
    {
        const char junk[] = "x,y,z\n1,p,\xff\n2,q,b\n";
        CHECK_OK(fv_schema_infer_mem("t.csv", junk, sizeof junk - 1, &o, &s, D), D);
    }
    CHECK_INT_EQ(fv_schema_column_type(s, 2), FV_COL_IGNORED);
    fv_schema_free(s);
    /* bad options */
    CHECK_INT_EQ(fv_schema_infer_mem("t.csv", csv, sizeof csv - 1, NULL, &s, D), FV_EINVAL);
    o.target = NULL;
    CHECK_INT_EQ(fv_schema_infer_mem("t.csv", csv, sizeof csv - 1, &o, &s, D), FV_EINVAL);
}

static void test_infer_unreadable(void)
{
    fv_schema_infer_opts_t o;
    fv_schema_t *s = NULL;
    char path[512];
    memset(&o, 0, sizeof o);
    o.target = "y";
    snprintf(path, sizeof path, "%s/missing.csv", tmpdir);
    CHECK_INT_EQ(fv_schema_infer(path, &o, &s, D), -ENOENT);
    CHECK_CONTAINS(D->msg, path);
    CHECK_CONTAINS(D->msg, strerror(ENOENT));
    CHECK_INT_EQ(fv_schema_infer(tmpdir, &o, &s, D), -EISDIR);
    CHECK_CONTAINS(D->msg, tmpdir);
    CHECK_CONTAINS(D->msg, strerror(EISDIR));
    CHECK(s == NULL);
}

/* Appends printf output to a growing buffer. */
struct sbuf {
    char *p;
    size_t len, cap;
};

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int k;
    if (b->cap - b->len < 256) {
        b->cap = b->cap ? b->cap * 2 : 4096;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p != NULL);
    }
    va_start(ap, fmt);
    k = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    CHECK(k >= 0 && (size_t)k < b->cap - b->len);
    b->len += (size_t)k;
}

static void test_infer_category_cap(void)
{
    /* n rows: a numeric id with n distinct values, a text column with m distinct */
    const size_t n = FV_SCHEMA_MAX_CATEGORIES + 1;
    struct sbuf b = {0};
    fv_schema_t *s = NULL;

    /* 1. A numeric column may have more distinct values than the category cap. */
    sb_printf(&b, "id,c,y\n");
    for (size_t i = 0; i < n; i++)
        sb_printf(&b, "%zu,k%zu,%c\n", i, i % 7, i % 2 ? 'p' : 'q');
    CHECK_OK(infer(b.p, "y", NULL, &s), D);
    CHECK_INT_EQ(fv_schema_column_type(s, 0), FV_COL_NUMERIC);
    CHECK_UINT_EQ(fv_schema_n_categories(s, 1), 7);
    fv_schema_free(s);

    /* 2. ... but if it then turns out not to be numeric, it has too many categories. */
    sb_printf(&b, "oops,k1,p\n");
    CHECK_INFER_BAD(b.p, "y", NULL, FV_ETOOBIG, "t.csv:65539:1:", "column 'id'",
                    "more than 65536 distinct categories");

    /* 3. A text column over the cap fails on the row that crosses it. */
    b.len = 0;
    sb_printf(&b, "c,y\n");
    for (size_t i = 0; i < n; i++)
        sb_printf(&b, "v%zu,p\nv%zu,q\n", i, i);
    CHECK_INFER_BAD(b.p, "c", NULL, FV_ETOOBIG, "column 'c'", "more than 65536 distinct labels");
    CHECK_INFER_BAD(b.p, "y", NULL, FV_ETOOBIG, "t.csv:131074:1:", "column 'c'",
                    "more than 65536 distinct categories");
    /* exactly at the cap is fine */
    b.len = 0;
    sb_printf(&b, "c,y\n");
    for (size_t i = 0; i < FV_SCHEMA_MAX_CATEGORIES; i++)
        sb_printf(&b, "v%zu,%c\n", i, i % 2 ? 'p' : 'q');
    CHECK_OK(infer(b.p, "y", NULL, &s), D);
    CHECK_UINT_EQ(fv_schema_n_categories(s, 0), FV_SCHEMA_MAX_CATEGORIES);
    fv_schema_free(s);
    free(b.p);
}

static void count_types(const fv_schema_t *s, size_t *num, size_t *cat, size_t *ign, size_t *tgt)
{
    *num = *cat = *ign = *tgt = 0;
    for (size_t j = 0; j < fv_schema_n_columns(s); j++) {
        switch (fv_schema_column_type(s, j)) {
        case FV_COL_NUMERIC:
            (*num)++;
            break;
        case FV_COL_CATEGORICAL:
            (*cat)++;
            break;
        case FV_COL_IGNORED:
            (*ign)++;
            break;
        case FV_COL_TARGET:
            (*tgt)++;
            break;
        case FV_COL_OPEN: /* open schemas only: never inferred or loaded closed */
            break;
        }
    }
}

static void check_round_trip(const fv_schema_t *s)
{
    char *j1 = NULL, *j2 = NULL;
    size_t n1 = 0, n2 = 0;
    fv_schema_t *t = NULL;
    CHECK_OK(fv_schema_to_json(s, &j1, &n1), D);
    CHECK_UINT_EQ(strlen(j1), n1);
    CHECK_OK(fv_schema_from_json("rt.json", j1, n1, &t, D), D);
    CHECK(fv_schema_equal(s, t));
    CHECK(fv_schema_equal(t, s));
    CHECK_OK(fv_schema_to_json(t, &j2, &n2), D);
    CHECK_UINT_EQ(n1, n2);
    CHECK(memcmp(j1, j2, n1) == 0);
    /* ret_len is optional */
    free(j2);
    CHECK_OK(fv_schema_to_json(t, &j2, NULL), D);
    CHECK_STR_EQ(j2, j1);
    free(j1);
    free(j2);
    fv_schema_free(t);
}

static void test_real_data(void)
{
    char path[1024], out[600];
    fv_schema_infer_opts_t o;
    fv_schema_t *s = NULL, *t = NULL;
    size_t num, cat, ign, tgt;
    memset(&o, 0, sizeof o);

    o.target = "Class";
    o.positive = "bad";
    CHECK_OK(fv_schema_infer(fv_test_src("examples/data/lending_club.csv", path, sizeof path), &o,
                             &s, D),
             D);
    CHECK_UINT_EQ(fv_schema_n_columns(s), 23);
    count_types(s, &num, &cat, &ign, &tgt);
    CHECK_UINT_EQ(num, 17);
    CHECK_UINT_EQ(cat, 5);
    CHECK_UINT_EQ(ign, 0);
    CHECK_UINT_EQ(tgt, 1);
    long term = fv_schema_column_index(s, "term");
    CHECK(term >= 0);
    CHECK_INT_EQ(fv_schema_column_type(s, (size_t)term), FV_COL_CATEGORICAL);
    CHECK_UINT_EQ(fv_schema_n_categories(s, (size_t)term), 2);
    CHECK_STR_EQ(fv_schema_category(s, (size_t)term, 0), "term_36");
    CHECK_STR_EQ(fv_schema_category(s, (size_t)term, 1), "term_60");
    CHECK_UINT_EQ(fv_schema_n_categories(s, (size_t)fv_schema_column_index(s, "addr_state")), 50);
    CHECK_INT_EQ(fv_schema_column_type(s, (size_t)fv_schema_column_index(s, "int_rate")),
                 FV_COL_NUMERIC);
    CHECK_STR_EQ(fv_schema_label(s, 0), "bad");
    CHECK_STR_EQ(fv_schema_label(s, 1), "good");
    CHECK_INT_EQ(fv_schema_class_of(s, "bad"), 1);
    check_round_trip(s);

    /* save / load through a file */
    snprintf(out, sizeof out, "%s/lending_club.schema.json", tmpdir);
    CHECK_OK(fv_schema_save(s, out, D), D);
    CHECK_OK(fv_schema_load(out, &t, D), D);
    CHECK(fv_schema_equal(s, t));
    fv_schema_free(t);
    /* saving again replaces the file */
    CHECK_OK(fv_schema_save(s, out, D), D);
    CHECK(unlink(out) == 0);
    fv_schema_free(s);

    o.target = "class";
    o.positive = "bad";
    CHECK_OK(fv_schema_infer(fv_test_src("examples/data/german_credit.csv", path, sizeof path), &o,
                             &s, D),
             D);
    CHECK_UINT_EQ(fv_schema_n_columns(s), 21);
    count_types(s, &num, &cat, &ign, &tgt);
    CHECK_UINT_EQ(num, 7);
    CHECK_UINT_EQ(cat, 13);
    CHECK_UINT_EQ(tgt, 1);
    {
        long p = fv_schema_column_index(s, "purpose");
        CHECK(p >= 0);
        CHECK_UINT_EQ(fv_schema_n_categories(s, (size_t)p), 10);
        CHECK(fv_schema_category_index(s, (size_t)p, "radio/tv") >= 0);
    }
    check_round_trip(s);
    fv_schema_free(s);
}

/* ---- JSON ------------------------------------------------------------------------- */

static const char canon[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\",\"classes\":[\"no\",\"yes\"],"
    "\"unknown_category\":\"error\",\"columns\":[{\"name\":\"age\",\"type\":\"numeric\"},"
    "{\"name\":\"city\",\"type\":\"categorical\",\"categories\":[\"a\",\"b\"]},"
    "{\"name\":\"id\",\"type\":\"ignored\"},{\"name\":\"y\",\"type\":\"target\"}]}";

static void test_json_known_answer(void)
{
    fv_schema_t *s = NULL, *t = NULL;
    fv_schema_infer_opts_t o;
    const char *drop[] = {"id"};
    const char csv[] = "age,city,id,y\n1,b,x,yes\n2,a,y,no\n";
    char *j = NULL;
    size_t n = 0;
    memset(&o, 0, sizeof o);
    o.target = "y";
    o.positive = "yes";
    o.drop = drop;
    o.n_drop = 1;
    CHECK_OK(fv_schema_infer_mem("t.csv", csv, sizeof csv - 1, &o, &s, D), D);
    CHECK_OK(fv_schema_to_json(s, &j, &n), D);
    CHECK_STR_EQ(j, canon);
    free(j);

    /* Key order, whitespace and layout of the input do not matter. */
    const char pretty[] = "{\n  \"columns\": [\n"
                          "    {\"type\": \"numeric\", \"name\": \"age\"},\n"
                          "    {\"categories\": [\"a\", \"b\"], \"name\": \"city\", \"type\": "
                          "\"categorical\"},\n"
                          "    {\"name\": \"id\", \"type\": \"ignored\"},\n"
                          "    {\"name\": \"y\", \"type\": \"target\"}\n  ],\n"
                          "  \"unknown_category\": \"error\",\n  \"classes\": [\"no\", "
                          "\"yes\"],\n  \"positive\": \"yes\", \"target\": \"y\",\n"
                          "  \"fedvault_schema\": 1\n}\n";
    CHECK_OK(fv_schema_from_json("p.json", pretty, sizeof pretty - 1, &t, D), D);
    CHECK(fv_schema_equal(s, t));
    CHECK_OK(fv_schema_to_json(t, &j, &n), D);
    CHECK_STR_EQ(j, canon);
    free(j);
    fv_schema_free(t);

    /* Policy "other" and multi-class survive the trip and make schemas differ. */
    {
        char *alt = strdup(canon);
        char *p = strstr(alt, "\"error\"");
        memcpy(p, "\"other\"", 7);
        CHECK_OK(fv_schema_from_json("a.json", alt, strlen(alt), &t, D), D);
        CHECK_INT_EQ(fv_schema_unknown_policy(t), FV_UNKNOWN_OTHER);
        CHECK(!fv_schema_equal(s, t));
        check_round_trip(t);
        fv_schema_free(t);
        free(alt);
    }
    {
        const char mc[] = "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":null,"
                          "\"classes\":[\"a\",\"b\",\"c\"],\"unknown_category\":\"error\","
                          "\"columns\":[{\"name\":\"y\",\"type\":\"target\"}]}";
        CHECK_OK(fv_schema_from_json("m.json", mc, sizeof mc - 1, &t, D), D);
        CHECK(!fv_schema_is_binary(t));
        CHECK_UINT_EQ(fv_schema_n_classes(t), 3);
        CHECK_OK(fv_schema_to_json(t, &j, &n), D);
        CHECK_STR_EQ(j, mc);
        free(j);
        fv_schema_free(t);
    }
    /* The example in fv_schema.h, without its comments, is valid. */
    {
        const char ex[] =
            "{\"fedvault_schema\": 1, \"target\": \"Class\", \"positive\": \"bad\","
            " \"classes\": [\"bad\", \"good\"], \"unknown_category\": \"error\", \"columns\": ["
            " {\"name\": \"funded_amnt\", \"type\": \"numeric\"},"
            " {\"name\": \"term\", \"type\": \"categorical\", \"categories\": [\"term_36\", "
            "\"term_60\"]},"
            " {\"name\": \"sub_grade\", \"type\": \"ignored\"},"
            " {\"name\": \"Class\", \"type\": \"target\"}]}";
        CHECK_OK(fv_schema_from_json("ex.json", ex, sizeof ex - 1, &t, D), D);
        fv_schema_free(t);
    }
    fv_schema_free(s);
}

/* Replaces the first occurrence of `from` in canon by `to` and decodes the result,
 * expecting err and a message containing `want` (and the file name). */
static void check_bad_json(const char *from, const char *to, int err, const char *want)
{
    char buf[2048];
    const char *p = strstr(canon, from);
    fv_schema_t *s = NULL;
    size_t pre;
    CHECK(p != NULL);
    pre = (size_t)(p - canon);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)pre, canon, to, p + strlen(from));
    D->msg[0] = '\0';
    int r = fv_schema_from_json("schema.json", buf, strlen(buf), &s, D);
    if (r != err || strstr(D->msg, want) == NULL || strstr(D->msg, "schema.json") == NULL)
        fprintf(stderr, "input: %s\nmessage: %s\n", buf, D->msg);
    CHECK_INT_EQ(r, err);
    CHECK(s == NULL);
    CHECK_CONTAINS(D->msg, "schema.json");
    CHECK_CONTAINS(D->msg, want);
}

static void check_bad_raw(const char *json, int err, const char *want)
{
    fv_schema_t *s = NULL;
    D->msg[0] = '\0';
    CHECK_INT_EQ(fv_schema_from_json("schema.json", json, strlen(json), &s, D), err);
    CHECK(s == NULL);
    CHECK_CONTAINS(D->msg, want);
}

static void test_json_strict(void)
{
    const int P = FV_EPARSE;
    /* syntax */
    check_bad_raw("", P, "schema.json:1:0: invalid JSON");
    check_bad_raw("{\n  \"fedvault_schema\": 1,\n  oops\n}", P, "schema.json:3:");
    check_bad_raw("[]", P, "schema.json: expected a JSON object");
    check_bad_raw("{\"fedvault_schema\":1,\"fedvault_schema\":1}", P, "duplicate");
    /* unknown keys, at the root and in a column */
    check_bad_json("\"target\"", "\"colour\":1,\"target\"", P,
                   "schema.json: unknown key 'colour'; expected only fedvault_schema");
    check_bad_json("\"type\":\"numeric\"", "\"type\":\"numeric\",\"min\":0", P,
                   "schema.json: columns[0]: unknown key 'min'; expected only name, type, "
                   "categories");
    /* version */
    check_bad_json("\"fedvault_schema\":1", "\"fedvault_schema\":2", FV_EVERSION,
                   "fedvault_schema: version 2 is not supported; expected 1");
    check_bad_json("\"fedvault_schema\":1", "\"fedvault_schema\":\"1\"", P,
                   "fedvault_schema: not an integer; expected the integer 1");
    check_bad_json("\"fedvault_schema\":1", "\"fedvault_schema\":1.0", P,
                   "fedvault_schema: not an integer");
    check_bad_json("\"fedvault_schema\":1,", "", P, "fedvault_schema: missing");
    /* wrong types and missing keys */
    check_bad_json("\"target\":\"y\"", "\"target\":3", P, "target: wrong type; expected a string");
    check_bad_json("\"target\":\"y\",", "", P, "target: missing");
    check_bad_json("\"positive\":\"yes\"", "\"positive\":true", P,
                   "positive: wrong type; expected a string (binary task) or null");
    check_bad_json("\"positive\":\"yes\",", "", P, "positive: missing");
    check_bad_json("\"classes\":[\"no\",\"yes\"]", "\"classes\":\"no\"", P,
                   "classes: expected an array of strings");
    check_bad_json("\"classes\":[\"no\",\"yes\"]", "\"classes\":[\"no\",1]", P,
                   "classes: expected an array of strings (entry 1 is not a string)");
    check_bad_json("\"classes\":[\"no\",\"yes\"],", "", P, "classes: missing");
    check_bad_json("\"unknown_category\":\"error\"", "\"unknown_category\":\"ignore\"", P,
                   "unknown_category: wrong value; expected \"error\" or \"other\"");
    check_bad_raw("{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":null,\"classes\":[\"a\","
                  "\"b\"],\"unknown_category\":\"error\",\"columns\":{}}",
                  P, "schema.json: columns: wrong type; expected an array of column objects");
    check_bad_raw("{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":null,\"classes\":[\"a\","
                  "\"b\"],\"unknown_category\":\"error\",\"columns\":[]}",
                  P, "columns: 0 columns; expected 1 to 4096");
    check_bad_json("{\"name\":\"age\",\"type\":\"numeric\"}", "[\"age\"]", P,
                   "schema.json: columns[0]: expected an object");
    check_bad_json("\"name\":\"age\"", "\"name\":7", P,
                   "schema.json: columns[0].name: wrong type; expected a string");
    check_bad_json("\"name\":\"age\",", "", P, "columns[0].name: missing");
    check_bad_json("\"type\":\"numeric\"", "\"type\":\"number\"", P,
                   "columns[0].type: wrong value; expected \"numeric\", \"categorical\"");
    check_bad_json("\"categories\":[\"a\",\"b\"]", "\"categories\":\"a,b\"", P,
                   "schema.json: columns[1].categories: expected an array of strings");
    check_bad_json("\"categories\":[\"a\",\"b\"]", "\"categories\":[\"a\",null]", P,
                   "schema.json: columns[1].categories: expected an array of strings");
    check_bad_json(",\"categories\":[\"a\",\"b\"]", "", P,
                   "columns[1].categories: missing; expected an array of strings");
    check_bad_json("\"type\":\"numeric\"", "\"type\":\"numeric\",\"categories\":[]", P,
                   "columns[0].categories: present on a numeric column");
    /* vocabularies: sorted, unique, no missing markers, at least two classes */
    check_bad_json("[\"a\",\"b\"]", "[\"b\",\"a\"]", P,
                   "columns[1].categories[1]: 'a' comes after 'b'; expected values sorted");
    check_bad_json("[\"a\",\"b\"]", "[\"a\",\"a\"]", P,
                   "columns[1].categories[1]: 'a' appears twice");
    check_bad_json("[\"a\",\"b\"]", "[\"NA\",\"a\"]", P,
                   "columns[1].categories[0]: \"NA\" means a missing value");
    check_bad_json("[\"a\",\"b\"]", "[\"\",\"a\"]", P, "columns[1].categories[0]");
    check_bad_json("[\"no\",\"yes\"]", "[\"yes\",\"no\"]", P, "classes[1]: 'no' comes after 'yes'");
    check_bad_json("[\"no\",\"yes\"]", "[\"yes\"]", P, "classes: 1 entries; expected at least 2");
    /* columns: duplicates, target count and name, positive */
    check_bad_json("\"name\":\"id\"", "\"name\":\"age\"", P,
                   "schema.json: columns[2].name: duplicate column name 'age' (also "
                   "columns[0])");
    check_bad_json("\"name\":\"id\",\"type\":\"ignored\"", "\"name\":\"id\",\"type\":\"target\"", P,
                   "schema.json: columns[3].type: a second target column 'y' (the first is "
                   "columns[2] 'id')");
    check_bad_json("\"name\":\"y\",\"type\":\"target\"", "\"name\":\"y\",\"type\":\"ignored\"", P,
                   "schema.json: columns: no column has type \"target\"; expected exactly one, "
                   "named 'y'");
    check_bad_json("\"target\":\"y\"", "\"target\":\"age\"", P,
                   "target: 'age' but the target column is columns[3] 'y'");
    check_bad_json("\"positive\":\"yes\"", "\"positive\":\"maybe\"", P,
                   "positive: 'maybe' is not in classes");
    /* JSON forbids raw control characters; \u0000 would hide a NUL in a C string */
    check_bad_json("\"name\":\"age\"", "\"name\":\"a\\u0000ge\"", P, "invalid JSON");
    /* not UTF-8 */
    check_bad_json("\"name\":\"age\"", "\"name\":\"\xE9\"", P, "invalid JSON");
    /* the cap */
    {
        fv_schema_t *s = NULL;
        CHECK_INT_EQ(fv_schema_from_json("big.json", canon, ((size_t)16 << 20) + 1, &s, D),
                     FV_ETOOBIG);
        CHECK_CONTAINS(D->msg, "big.json");
    }
}

static void test_json_length_not_nul(void)
{
    /* from_json reads exactly len bytes: trailing garbage beyond len is ignored, and a
     * cut input is an error. */
    fv_schema_t *s = NULL;
    char buf[sizeof canon + 8];
    memcpy(buf, canon, sizeof canon - 1);
    memcpy(buf + sizeof canon - 1, "garbage", 8);
    CHECK_OK(fv_schema_from_json("g.json", buf, sizeof canon - 1, &s, D), D);
    fv_schema_free(s);
    s = NULL;
    CHECK_INT_EQ(fv_schema_from_json("g.json", buf, sizeof canon - 2, &s, D), FV_EPARSE);
    CHECK_CONTAINS(D->msg, "g.json:1:");
}

static void test_load_errors(void)
{
    char path[512];
    fv_schema_t *s = NULL;
    snprintf(path, sizeof path, "%s/nope.json", tmpdir);
    CHECK_INT_EQ(fv_schema_load(path, &s, D), -ENOENT);
    CHECK_CONTAINS(D->msg, path);
    CHECK_CONTAINS(D->msg, strerror(ENOENT));
    CHECK_INT_EQ(fv_schema_load(tmpdir, &s, D), -EISDIR);
    CHECK_CONTAINS(D->msg, strerror(EISDIR));
    /* a broken file names itself and the place */
    {
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        fputs("{\n\"fedvault_schema\": 1,\n\"target\" \"y\"\n}\n", f);
        CHECK(fclose(f) == 0);
    }
    CHECK_INT_EQ(fv_schema_load(path, &s, D), FV_EPARSE);
    CHECK_CONTAINS(D->msg, path);
    CHECK_CONTAINS(D->msg, ":3:");
    CHECK(unlink(path) == 0);
    /* saving into a missing directory fails with the path */
    snprintf(path, sizeof path, "%s/no/such/dir/s.json", tmpdir);
    CHECK_OK(fv_schema_from_json("c.json", canon, sizeof canon - 1, &s, D), D);
    CHECK_INT_EQ(fv_schema_save(s, path, D), -ENOENT);
    CHECK_CONTAINS(D->msg, "no/such/dir/s.json");
    fv_schema_free(s);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fv_test_schema.XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);

    test_infer_basic();
    test_infer_binary_one_vs_rest();
    test_infer_multiclass();
    test_infer_number_grammar();
    test_infer_all_missing();
    test_infer_csv_details();
    test_infer_errors();
    test_infer_drop();
    test_infer_unreadable();
    test_infer_category_cap();
    test_real_data();
    test_json_known_answer();
    test_json_strict();
    test_json_length_not_nul();
    test_load_errors();

    CHECK(rmdir(tmpdir) == 0);
    return 0;
}
