/* test_schema_open.c - open schemas: the JSON forms, an agent's vocabulary, resolution
 * from hostile vocabularies, the offline merge, opening an inferred schema, and the
 * refusals of everything that needs a feature layout.
 *
 * Each refusal checks the code and that the message names the origin (the agent, the
 * file) and the field, so an operator can act on it.
 */
#include "fv_dataset.h"
#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_test.h"

#include <stdlib.h>
#include <string.h>

static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;

/* amount numeric, job open categories, purpose open type, id ignored, y target. */
#define OPEN_HEAD                                                                                  \
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\",\"good\"],"
#define OPEN_COLS                                                                                  \
    "\"columns\":[{\"name\":\"amount\",\"type\":\"numeric\"},"                                     \
    "{\"name\":\"job\",\"type\":\"categorical\",\"categories\":\"open\"},"                         \
    "{\"name\":\"purpose\",\"type\":\"open\"},"                                                    \
    "{\"name\":\"home\",\"type\":\"categorical\",\"categories\":[\"own\",\"rent\"]},"              \
    "{\"name\":\"id\",\"type\":\"ignored\"},{\"name\":\"y\",\"type\":\"target\"}]}"
static const char OPEN_CANON[] = OPEN_HEAD "\"unknown_category\":\"other\"," OPEN_COLS;

static fv_schema_t *load(const char *json)
{
    fv_schema_t *s = NULL;
    D->msg[0] = '\0';
    CHECK_OK(fv_schema_from_json("s.json", json, strlen(json), &s, D), D);
    return s;
}

static int load_bad(const char *json)
{
    fv_schema_t *s = NULL;
    D->msg[0] = '\0';
    int r = fv_schema_from_json("s.json", json, strlen(json), &s, D);
    CHECK(r < 0);
    CHECK(s == NULL);
    return r;
}

static char *to_json(const fv_schema_t *s)
{
    char *j = NULL;
    size_t n = 0;
    CHECK_OK(fv_schema_to_json(s, &j, &n), NULL);
    CHECK_UINT_EQ(n, strlen(j));
    return j;
}

static void test_open_json(void)
{
    fv_schema_t *s = load(OPEN_CANON), *t;
    char *j = to_json(s);
    CHECK_STR_EQ(j, OPEN_CANON);
    CHECK(fv_schema_is_open(s));
    CHECK(!fv_schema_column_open(s, 0));
    CHECK(fv_schema_column_open(s, 1));
    CHECK(fv_schema_column_open(s, 2));
    CHECK(!fv_schema_column_open(s, 3));
    CHECK(!fv_schema_column_open(s, 99));
    CHECK_INT_EQ(fv_schema_column_type(s, 1), FV_COL_CATEGORICAL);
    CHECK_INT_EQ(fv_schema_column_type(s, 2), FV_COL_OPEN);
    CHECK_UINT_EQ(fv_schema_n_categories(s, 1), 0);
    CHECK(fv_schema_category(s, 1, 0) == NULL);
    CHECK_INT_EQ(fv_schema_unknown_policy(s), FV_UNKNOWN_OTHER);
    t = load(j);
    CHECK(fv_schema_equal(s, t));
    fv_schema_free(t);
    free(j);

    /* unknown_category left out: filled in as "other"; canonical form writes it */
    t = load(OPEN_HEAD OPEN_COLS);
    CHECK(fv_schema_equal(s, t));
    j = to_json(t);
    CHECK_STR_EQ(j, OPEN_CANON);
    free(j);
    fv_schema_free(t);

    /* "error" with an open column is refused with a sentence naming the column */
    CHECK_INT_EQ(load_bad(OPEN_HEAD "\"unknown_category\":\"error\"," OPEN_COLS), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "s.json: unknown_category: \"error\" with an open column");
    CHECK_CONTAINS(D->msg, "columns[1] 'job'");
    CHECK_CONTAINS(D->msg, "expected \"other\"");
    /* a closed schema still needs the key */
    CHECK_INT_EQ(load_bad("{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"b\",\"classes\":"
                          "[\"a\",\"b\"],\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},"
                          "{\"name\":\"y\",\"type\":\"target\"}]}"),
                 FV_EPARSE);
    CHECK_CONTAINS(D->msg, "unknown_category: missing");
    /* categories on an open type; a categories string other than "open" */
    CHECK_INT_EQ(load_bad(OPEN_HEAD "\"columns\":[{\"name\":\"p\",\"type\":\"open\",\"categories\":"
                                    "\"open\"},{\"name\":\"y\",\"type\":\"target\"}]}"),
                 FV_EPARSE);
    CHECK_CONTAINS(D->msg, "columns[0].categories: present on a column of type \"open\"");
    CHECK_INT_EQ(load_bad(OPEN_HEAD
                          "\"columns\":[{\"name\":\"p\",\"type\":\"categorical\","
                          "\"categories\":\"closed\"},{\"name\":\"y\",\"type\":\"target\"}]}"),
                 FV_EPARSE);
    CHECK_CONTAINS(D->msg, "columns[0].categories: expected an array of strings");
    /* open on a numeric column is not a thing */
    CHECK_INT_EQ(load_bad(OPEN_HEAD
                          "\"columns\":[{\"name\":\"p\",\"type\":\"numeric\","
                          "\"categories\":\"open\"},{\"name\":\"y\",\"type\":\"target\"}]}"),
                 FV_EPARSE);
    CHECK_CONTAINS(D->msg, "columns[0].categories: present on a numeric column");

    /* An open schema has no layout: refused clearly, not crashed on. */
    {
        double z[6] = {0};
        fv_preproc_t *p = NULL;
        fv_dataset_t *ds = NULL;
        const char csv[] = "amount,job,purpose,home,id,y\n1,a,b,own,1,bad\n";
        CHECK_INT_EQ(fv_preproc_from_moments(s, z, z, z, &p), FV_EINVAL);
        CHECK(p == NULL);
        D->msg[0] = '\0';
        CHECK_INT_EQ(fv_dataset_load_mem("d.csv", csv, sizeof csv - 1, s, &ds, D), FV_EINVAL);
        CHECK(ds == NULL);
        CHECK_CONTAINS(D->msg, "d.csv: schema has open columns (columns[1] 'job', columns[2] "
                               "'purpose'): resolve it first");
        CHECK_INT_EQ(fv_schema_check_closed(s, "job", D), FV_EINVAL);
    }
    fv_schema_free(s);
}

/* 12 rows: job a x4, b x3, c x2, d x1, missing x2; purpose numeric; home one per row. */
static const char DATA[] = "y,id,home,purpose,job,amount\n"
                           "bad,1,own,1.5,a,10\n"
                           "good,2,own,2,a,10\n"
                           "good,3,rent,-3e2,a,10\n"
                           "good,4,own,,a,10\n"
                           "bad,5,own,NA,b,10\n"
                           "good,6,own,7,b,10\n"
                           "good,7,own,.5,b,10\n"
                           "good,8,own,8,c,10\n"
                           "good,9,own,9,c,10\n"
                           "bad,10,own,10,d,10\n"
                           "good,11,own,11,,10\n"
                           "good,12,own,12,NA,10\n";

static char *vocab(const fv_schema_t *s, const char *csv, uint32_t k)
{
    char *j = NULL;
    size_t n = 0;
    D->msg[0] = '\0';
    CHECK_OK(fv_schema_vocab_mem(s, "bank.csv", csv, strlen(csv), k, &j, &n, D), D);
    CHECK_UINT_EQ(n, strlen(j));
    return j;
}

static void test_vocab(void)
{
    fv_schema_t *s = load(OPEN_CANON);
    char *j;

    j = vocab(s, DATA, 1);
    CHECK_STR_EQ(j, "{\"fedvault_vocab\":1,\"columns\":[{\"name\":\"job\",\"type\":\"categorical\","
                    "\"categories\":[\"a\",\"b\",\"c\",\"d\"],\"suppressed\":0},{\"name\":"
                    "\"purpose\",\"type\":\"numeric\",\"categories\":[],\"suppressed\":0}]}");
    free(j);
    /* k = 3: c (2 rows) and d (1 row) suppressed, only counted */
    j = vocab(s, DATA, 3);
    CHECK_STR_EQ(j, "{\"fedvault_vocab\":1,\"columns\":[{\"name\":\"job\",\"type\":\"categorical\","
                    "\"categories\":[\"a\",\"b\"],\"suppressed\":2},{\"name\":\"purpose\",\"type\":"
                    "\"numeric\",\"categories\":[],\"suppressed\":0}]}");
    free(j);
    /* k above every count: nothing disclosed */
    j = vocab(s, DATA, 5);
    CHECK_CONTAINS(j, "\"categories\":[],\"suppressed\":4}");
    free(j);

    /* a text value makes an open-type column categorical; numbers then are categories
     * (same grammar as inference: "inf" and " 1" are text) */
    j = vocab(s, "job,purpose\nx,1\nx,car\nx,car\nx,inf\nx, 1\nx,1\n", 2);
    CHECK_STR_EQ(j, "{\"fedvault_vocab\":1,\"columns\":[{\"name\":\"job\",\"type\":\"categorical\","
                    "\"categories\":[\"x\"],\"suppressed\":0},{\"name\":\"purpose\",\"type\":"
                    "\"categorical\",\"categories\":[\"1\",\"car\"],\"suppressed\":2}]}");
    free(j);
    /* a declared-categorical open column stays categorical even when all numbers */
    j = vocab(s, "job,purpose\n1,1\n2,2\n", 1);
    CHECK_CONTAINS(j, "{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[\"1\",\"2\"]");
    free(j);

    /* refusals, each naming the place */
    {
        char *none = NULL;
        size_t n = 0;
#define VOCAB_BAD(csv, k, err, want)                                                               \
    do {                                                                                           \
        D->msg[0] = '\0';                                                                          \
        CHECK_INT_EQ(fv_schema_vocab_mem(s, "bank.csv", csv, strlen(csv), k, &none, &n, D), err);  \
        CHECK(none == NULL);                                                                       \
        CHECK_CONTAINS(D->msg, want);                                                              \
    } while (0)
        VOCAB_BAD(DATA, 0, FV_EINVAL, "min_count 0; expected at least 1");
        VOCAB_BAD("job,amount\nx,1\n", 1, FV_ESCHEMA,
                  "bank.csv:1: column 'purpose': open in the job's schema but missing from the "
                  "header");
        VOCAB_BAD("job,purpose,job\nx,1,y\n", 1, FV_ESCHEMA,
                  "bank.csv:1:3: column 'job': appears twice in the header");
        VOCAB_BAD("job,purpose\nx,1\ny\n", 1, FV_EPARSE,
                  "bank.csv:3: row has 1 fields, the header has 2");
        VOCAB_BAD("job,purpose\n", 1, FV_EEMPTY, "bank.csv:2: header but no data rows");
        VOCAB_BAD("", 1, FV_EEMPTY, "bank.csv:1:1: empty file");
        VOCAB_BAD("job,purpose\n\"a\tb\",1\n", 1, FV_EINVAL,
                  "bank.csv: column 'job': category 'a\\x09b' holds a control byte");
        /* a control byte in a suppressed value is never disclosed, so it is no error */
        j = vocab(s, "job,purpose\n\"a\tb\",1\nx,1\nx,1\n", 2);
        CHECK_CONTAINS(j, "\"categories\":[\"x\"],\"suppressed\":1}");
        free(j);
        {
            /* a value over 1 KiB */
            size_t L = FV_SCHEMA_VOCAB_MAX_VALUE + 1;
            char *csv = malloc(L + 64);
            CHECK(csv != NULL);
            strcpy(csv, "job,purpose\n");
            memset(csv + 12, 'v', L);
            strcpy(csv + 12 + L, ",1\n");
            VOCAB_BAD(csv, 1, FV_EINVAL, "is longer than the cap");
            free(csv);
        }
        {
            /* more than FV_SCHEMA_MAX_CATEGORIES distinct values in a categorical column;
             * the same count of numbers in an open-type column is fine */
            size_t rows = FV_SCHEMA_MAX_CATEGORIES + 1, o = 0;
            char *csv = malloc(rows * 24 + 32), *out = NULL;
            CHECK(csv != NULL);
            o += (size_t)sprintf(csv, "job,purpose\n");
            for (size_t i = 0; i < rows; i++)
                o += (size_t)sprintf(csv + o, "v%zu,%zu\n", i, i);
            VOCAB_BAD(csv, 1, FV_ETOOBIG, "column 'job': more than 65536 distinct values");
            CHECK_CONTAINS(D->msg, "bank.csv:65538:1:");
            /* job column fixed: only purpose open, numeric past the cap */
            fv_schema_t *p = load(OPEN_HEAD "\"columns\":[{\"name\":\"job\",\"type\":\"ignored\"},"
                                            "{\"name\":\"purpose\",\"type\":\"open\"},{\"name\":"
                                            "\"y\",\"type\":\"target\"}]}");
            CHECK_OK(fv_schema_vocab_mem(p, "bank.csv", csv, o, 1, &out, &n, D), D);
            CHECK_CONTAINS(out, "\"type\":\"numeric\"");
            free(out);
            /* ...until a text value shows up after the cap */
            o += (size_t)sprintf(csv + o, "v,car\n");
            D->msg[0] = '\0';
            CHECK_INT_EQ(fv_schema_vocab_mem(p, "bank.csv", csv, o, 1, &out, &n, D), FV_ETOOBIG);
            CHECK_CONTAINS(D->msg, "column 'purpose': more than 65536 distinct values");
            fv_schema_free(p);
            free(csv);
        }
#undef VOCAB_BAD
    }
    /* a closed schema has nothing to discover */
    {
        fv_schema_t *c = load("{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"b\","
                              "\"classes\":[\"a\",\"b\"],\"unknown_category\":\"error\","
                              "\"columns\":[{\"name\":\"y\",\"type\":\"target\"}]}");
        char *out = NULL;
        size_t n = 0;
        CHECK_INT_EQ(fv_schema_vocab_mem(c, "b.csv", "y\na\n", 4, 1, &out, &n, D), FV_EINVAL);
        CHECK_CONTAINS(D->msg, "no open column");
        fv_schema_free(c);
    }
    fv_schema_free(s);
}

static int resolve(const fv_schema_t *s, const char *const *v, size_t n, fv_schema_t **ret)
{
    size_t lens[8];
    const char *org[8] = {"bank-a", "bank-b", "bank-c", "bank-d", "e", "f", "g", "h"};
    CHECK(n <= 8);
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(v[i]);
    D->msg[0] = '\0';
    return fv_schema_resolve(s, v, lens, org, n, ret, D);
}

#define VJOB(cats, sup)                                                                            \
    "{\"name\":\"job\",\"type\":\"categorical\",\"categories\":" cats ",\"suppressed\":" sup "}"
#define VPUR(type, cats)                                                                           \
    "{\"name\":\"purpose\",\"type\":\"" type "\",\"categories\":" cats ",\"suppressed\":0}"
#define VOC(a, b) "{\"fedvault_vocab\":1,\"columns\":[" a "," b "]}"

static void test_resolve(void)
{
    fv_schema_t *s = load(OPEN_CANON), *r = NULL;
    char *j;

    /* union, numeric everywhere -> numeric */
    {
        const char *v[] = {VOC(VJOB("[\"a\",\"b\"]", "1"), VPUR("numeric", "[]")),
                           VOC(VPUR("numeric", "[]"), VJOB("[\"b\",\"freelance\"]", "0")),
                           VOC(VJOB("[]", "5"), VPUR("numeric", "[]"))};
        CHECK_OK(resolve(s, v, 3, &r), D);
        CHECK(!fv_schema_is_open(r));
        j = to_json(r);
        CHECK_STR_EQ(j, OPEN_HEAD "\"unknown_category\":\"other\",\"columns\":[{\"name\":"
                                  "\"amount\",\"type\":\"numeric\"},{\"name\":\"job\",\"type\":"
                                  "\"categorical\",\"categories\":[\"a\",\"b\",\"freelance\"]},"
                                  "{\"name\":\"purpose\",\"type\":\"numeric\"},{\"name\":\"home\","
                                  "\"type\":\"categorical\",\"categories\":[\"own\",\"rent\"]},"
                                  "{\"name\":\"id\",\"type\":\"ignored\"},{\"name\":\"y\",\"type\":"
                                  "\"target\"}]}");
        free(j);
        /* the result has a layout: 1 + 3+1 + 1 + 2+1 features */
        {
            double z[6] = {0};
            fv_preproc_t *p = NULL;
            CHECK_OK(fv_preproc_from_moments(r, z, z, z, &p), NULL);
            CHECK_UINT_EQ(fv_preproc_n_features(p), 9);
            fv_preproc_free(p);
        }
        fv_schema_free(r);
        r = NULL;
    }
    /* one agent saw text in purpose: categorical, union of the categorical agents' lists */
    {
        const char *v[] = {VOC(VJOB("[\"a\"]", "0"), VPUR("numeric", "[]")),
                           VOC(VJOB("[\"a\"]", "0"), VPUR("categorical", "[\"car\",\"tv\"]")),
                           VOC(VJOB("[\"a\"]", "0"), VPUR("categorical", "[\"1\",\"car\"]"))};
        CHECK_OK(resolve(s, v, 3, &r), D);
        CHECK_INT_EQ(fv_schema_column_type(r, 2), FV_COL_CATEGORICAL);
        CHECK_UINT_EQ(fv_schema_n_categories(r, 2), 3);
        CHECK_STR_EQ(fv_schema_category(r, 2, 0), "1");
        CHECK_STR_EQ(fv_schema_category(r, 2, 2), "tv");
        /* a fixed vocabulary is untouched */
        CHECK_UINT_EQ(fv_schema_n_categories(r, 3), 2);
        fv_schema_free(r);
        r = NULL;
    }

    /* hostile vocabularies: refused, naming the agent and the field */
    struct {
        const char *text;
        int err;
        const char *want;
    } bad[] = {
        {"", FV_EPARSE, "bank-b: vocabulary:1:0: invalid JSON"},
        {"[]", FV_EPARSE, "bank-b: vocabulary: expected a JSON object"},
        {"{\"fedvault_vocab\":2,\"columns\":[]}", FV_EVERSION,
         "fedvault_vocab: unsupported version"},
        {"{\"fedvault_vocab\":1}", FV_EPARSE, "bank-b: vocabulary: columns: missing"},
        {"{\"fedvault_vocab\":1,\"columns\":[],\"x\":1}", FV_EPARSE, "unknown key 'x'"},
        {"{\"fedvault_vocab\":1,\"fedvault_vocab\":1,\"columns\":[]}", FV_EPARSE,
         "duplicate object key"},
        {VOC(VJOB("[\"a\"]", "0"), VJOB("[\"a\"]", "0")), FV_EINVAL,
         "bank-b: vocabulary: columns[1].name: 'job' appears twice"},
        {"{\"fedvault_vocab\":1,\"columns\":[" VJOB("[\"a\"]", "0") "]}", FV_EINVAL,
         "bank-b: vocabulary: open column 'purpose' is missing"},
        {VOC(VJOB("[\"a\"]", "0"), "{\"name\":\"home\",\"type\":\"categorical\",\"categories\":"
                                   "[\"own\"],\"suppressed\":0}"),
         FV_EINVAL, "columns[1].name: 'home' is not an open column"},
        {VOC(VJOB("[\"a\"]", "0"), "{\"name\":\"nope\",\"type\":\"numeric\",\"categories\":[],"
                                   "\"suppressed\":0}"),
         FV_EINVAL, "columns[1].name: 'nope' is not an open column"},
        {VOC(VJOB("[\"b\",\"a\"]", "0"), VPUR("numeric", "[]")), FV_EINVAL,
         "columns[0].categories[1]: 'a' after 'b'; expected unique values sorted"},
        {VOC(VJOB("[\"a\",\"a\"]", "0"), VPUR("numeric", "[]")), FV_EINVAL, "'a' after 'a'"},
        {VOC(VJOB("[\"a\\u0001\"]", "0"), VPUR("numeric", "[]")), FV_EINVAL,
         "columns[0].categories[0] (2 bytes) holds a control byte"},
        {VOC(VJOB("[\"a\\u007f\"]", "0"), VPUR("numeric", "[]")), FV_EINVAL, "control byte"},
        {VOC(VJOB("[\"a\\u0000b\"]", "0"), VPUR("numeric", "[]")), FV_EPARSE, "invalid JSON"},
        {VOC(VJOB("[\"NA\"]", "0"), VPUR("numeric", "[]")), FV_EINVAL,
         "\"NA\" means a missing value"},
        {VOC(VJOB("[\"\"]", "0"), VPUR("numeric", "[]")), FV_EINVAL, "means a missing value"},
        {VOC(VJOB("[1]", "0"), VPUR("numeric", "[]")), FV_EPARSE,
         "columns[0].categories[0]: wrong type"},
        {VOC(VJOB("[\"a\"]", "-1"), VPUR("numeric", "[]")), FV_EPARSE,
         "columns[0].suppressed: wrong value"},
        {VOC(VJOB("[\"a\"]", "0"), VPUR("numeric", "[\"3\"]")), FV_EINVAL,
         "categories on a numeric column"},
        {VOC(VJOB("[\"a\"]", "0"), VPUR("text", "[]")), FV_EPARSE, "columns[1].type: wrong value"},
        {VOC("{\"name\":\"job\",\"type\":\"numeric\",\"categories\":[],\"suppressed\":0}",
             VPUR("numeric", "[]")),
         FV_EINVAL, "type \"numeric\" for a column the schema declares categorical"},
        {VOC(VJOB("[\"a\"]", "0"), "{\"name\":\"purpose\",\"type\":\"numeric\",\"categories\":[],"
                                   "\"suppressed\":0,\"counts\":[]}"),
         FV_EPARSE, "columns[1]: unknown key 'counts'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *v[] = {VOC(VJOB("[\"a\"]", "0"), VPUR("numeric", "[]")), bad[i].text};
        int rc = resolve(s, v, 2, &r);
        if (rc != bad[i].err || strstr(D->msg, bad[i].want) == NULL ||
            strncmp(D->msg, "bank-b: ", 8) != 0) {
            fprintf(stderr, "case %zu: %d (%s)\n", i, rc, D->msg);
            CHECK(0);
        }
        CHECK(r == NULL);
    }
    /* caps: bytes, value length, columns, categories */
    {
        size_t big = FV_SCHEMA_VOCAB_MAX_BYTES + 1;
        char *t = malloc(big + 1);
        const char *v[1];
        CHECK(t != NULL);
        memset(t, ' ', big);
        t[big] = '\0';
        v[0] = t;
        CHECK_INT_EQ(resolve(s, v, 1, &r), FV_ETOOBIG);
        CHECK_CONTAINS(D->msg, "bank-a: vocabulary: 1048577 bytes; expected at most 1048576");
        /* 1025-byte value */
        size_t o =
            (size_t)sprintf(t, "{\"fedvault_vocab\":1,\"columns\":[" VPUR(
                                   "numeric", "[]") ",{\"name\":\"job\",\"type\":\"categorical\","
                                                    "\"categories\":[\"");
        memset(t + o, 'x', FV_SCHEMA_VOCAB_MAX_VALUE + 1);
        o += FV_SCHEMA_VOCAB_MAX_VALUE + 1;
        sprintf(t + o, "\"],\"suppressed\":0}]}");
        CHECK_INT_EQ(resolve(s, v, 1, &r), FV_ETOOBIG);
        CHECK_CONTAINS(D->msg, "bank-a: vocabulary: columns[1].categories[0] (1025 bytes) is "
                               "longer than the cap");
        /* exactly 1024 bytes is fine */
        o -= 1;
        sprintf(t + o, "\"],\"suppressed\":0}]}");
        CHECK_OK(resolve(s, v, 1, &r), D);
        CHECK_UINT_EQ(strlen(fv_schema_category(r, 1, 0)), FV_SCHEMA_VOCAB_MAX_VALUE);
        fv_schema_free(r);
        r = NULL;
        /* 4097 column entries */
        o = (size_t)sprintf(t, "{\"fedvault_vocab\":1,\"columns\":[");
        for (int i = 0; i <= FV_SCHEMA_MAX_COLUMNS; i++)
            o += (size_t)sprintf(t + o, "%s0", i ? "," : "");
        sprintf(t + o, "]}");
        CHECK_INT_EQ(resolve(s, v, 1, &r), FV_ETOOBIG);
        CHECK_CONTAINS(D->msg, "bank-a: vocabulary: columns: 4097 entries; expected at most 4096");
        /* 65537 categories in one entry */
        o = (size_t)sprintf(t, "{\"fedvault_vocab\":1,\"columns\":[{\"name\":\"job\",\"type\":"
                               "\"categorical\",\"suppressed\":0,\"categories\":[");
        for (int i = 0; i <= FV_SCHEMA_MAX_CATEGORIES; i++)
            o += (size_t)sprintf(t + o, "%s\"%06d\"", i ? "," : "", i);
        sprintf(t + o, "]}," VPUR("numeric", "[]") "]}");
        CHECK(strlen(t) <= FV_SCHEMA_VOCAB_MAX_BYTES);
        CHECK_INT_EQ(resolve(s, v, 1, &r), FV_ETOOBIG);
        CHECK_CONTAINS(D->msg, "columns[0].categories: 65537 entries; expected at most 65536");
        /* two vocabularies of 40000 each, disjoint: the union is over the cap */
        {
            char *t2 = malloc(big + 1);
            CHECK(t2 != NULL);
            for (int w = 0; w < 2; w++) {
                char *u = w ? t2 : t;
                o = (size_t)sprintf(u, "{\"fedvault_vocab\":1,\"columns\":[{\"name\":\"job\","
                                       "\"type\":\"categorical\",\"suppressed\":0,"
                                       "\"categories\":[");
                for (int i = 0; i < 40000; i++)
                    o += (size_t)sprintf(u + o, "%s\"%c%05d\"", i ? "," : "", 'a' + w, i);
                sprintf(u + o, "]}," VPUR("numeric", "[]") "]}");
            }
            const char *v2[] = {t, t2};
            CHECK_INT_EQ(resolve(s, v2, 2, &r), FV_ETOOBIG);
            CHECK_CONTAINS(D->msg, "bank-b: column 'job': the union of the vocabularies reaches "
                                   "more than 65536 categories");
            free(t2);
        }
        free(t);
    }
    /* no vocabulary at all; origins NULL names by position */
    {
        const char *v[] = {"{}"};
        size_t len = 2;
        CHECK_INT_EQ(fv_schema_resolve(s, v, &len, NULL, 0, &r, D), FV_EINVAL);
        CHECK_CONTAINS(D->msg, "no vocabulary");
        CHECK_INT_EQ(fv_schema_resolve(s, v, &len, NULL, 1, &r, D), FV_EPARSE);
        CHECK_CONTAINS(D->msg, "vocabulary 1: vocabulary: fedvault_vocab: missing");
    }
    /* vocab -> resolve round trip over two banks with k suppression */
    {
        char *a = vocab(s, DATA, 2);
        char *b = vocab(s, "job,purpose\nzeta,car\nzeta,car\nrare,x\n", 2);
        const char *v[] = {a, b};
        CHECK_OK(resolve(s, v, 2, &r), D);
        CHECK_UINT_EQ(fv_schema_n_categories(r, 1), 4); /* a b c zeta; d, rare suppressed */
        CHECK_STR_EQ(fv_schema_category(r, 1, 3), "zeta");
        CHECK_INT_EQ(fv_schema_column_type(r, 2), FV_COL_CATEGORICAL);
        CHECK_UINT_EQ(fv_schema_n_categories(r, 2), 1); /* car */
        free(a);
        free(b);
        fv_schema_free(r);
    }
    fv_schema_free(s);
}

#define CLOSED(unknown, cats)                                                                      \
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\",\"good\"]," \
    "\"unknown_category\":\"" unknown "\",\"columns\":[{\"name\":\"amount\",\"type\":"             \
    "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":" cats "},"            \
    "{\"name\":\"y\",\"type\":\"target\"}]}"

static void test_merge(void)
{
    fv_schema_t *in[3], *m = NULL;
    const char *names[] = {"a.json", "b.json", "c.json"};
    char *j;

    in[0] = load(CLOSED("error", "[\"fixed\",\"self\"]"));
    in[1] = load(CLOSED("error", "[\"freelance\"]"));
    in[2] = load(CLOSED("other", "[\"fixed\",\"zz\"]"));
    CHECK_OK(fv_schema_merge((const fv_schema_t *const *)in, names, 2, &m, D), D);
    j = to_json(m);
    CHECK_STR_EQ(j, CLOSED("error", "[\"fixed\",\"freelance\",\"self\"]"));
    free(j);
    fv_schema_free(m);
    CHECK_OK(fv_schema_merge((const fv_schema_t *const *)in, names, 3, &m, D), D);
    j = to_json(m);
    CHECK_STR_EQ(j, CLOSED("other", "[\"fixed\",\"freelance\",\"self\",\"zz\"]"));
    free(j);
    fv_schema_free(m);
    m = NULL;
    fv_schema_free(in[1]);
    fv_schema_free(in[2]);

    /* shape mismatches name both files */
    struct {
        const char *json;
        const char *want;
    } bad[] = {
        {"{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\","
         "\"good\"],\"unknown_category\":\"error\",\"columns\":[{\"name\":\"amount\",\"type\":"
         "\"numeric\"},{\"name\":\"y\",\"type\":\"target\"}]}",
         "b.json: 2 columns but a.json has 3"},
        {"{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\","
         "\"good\"],\"unknown_category\":\"error\",\"columns\":[{\"name\":\"amount\",\"type\":"
         "\"numeric\"},{\"name\":\"work\",\"type\":\"categorical\",\"categories\":[]},{\"name\":"
         "\"y\",\"type\":\"target\"}]}",
         "b.json: columns[1] is 'work' but in a.json it is 'job'"},
        {"{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\","
         "\"good\"],\"unknown_category\":\"error\",\"columns\":[{\"name\":\"amount\",\"type\":"
         "\"numeric\"},{\"name\":\"job\",\"type\":\"numeric\"},{\"name\":\"y\",\"type\":"
         "\"target\"}]}",
         "b.json: column 'job' is numeric but in a.json it is categorical"},
        {"{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\","
         "\"good\",\"meh\"],\"unknown_category\":\"error\",\"columns\":[{\"name\":\"amount\","
         "\"type\":\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[]},"
         "{\"name\":\"y\",\"type\":\"target\"}]}",
         "b.json: classes differ from a.json's"},
        {"{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"good\",\"classes\":[\"bad\","
         "\"good\"],\"unknown_category\":\"error\",\"columns\":[{\"name\":\"amount\",\"type\":"
         "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[]},{\"name\":"
         "\"y\",\"type\":\"target\"}]}",
         "b.json: positive label 'good' but a.json has 'bad'"},
        {"{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\","
         "\"good\"],\"columns\":[{\"name\":\"amount\",\"type\":\"numeric\"},{\"name\":\"job\","
         "\"type\":\"categorical\",\"categories\":\"open\"},{\"name\":\"y\",\"type\":"
         "\"target\"}]}",
         "b.json: schema has open columns (columns[1] 'job'): resolve it first"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        in[1] = load(bad[i].json);
        D->msg[0] = '\0';
        CHECK_INT_EQ(fv_schema_merge((const fv_schema_t *const *)in, names, 2, &m, D), FV_EINVAL);
        CHECK(m == NULL);
        CHECK_CONTAINS(D->msg, bad[i].want);
        fv_schema_free(in[1]);
    }
    /* one schema merges to itself */
    CHECK_OK(fv_schema_merge((const fv_schema_t *const *)in, NULL, 1, &m, D), D);
    CHECK(fv_schema_equal(m, in[0]));
    fv_schema_free(m);
    fv_schema_free(in[0]);
}

/* fv_schema_open: the operator's open copy of an inferred schema (schema infer --open...). */
static void test_open_closed(void)
{
    static const char closed_json[] =
        "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\","
        "\"good\"],\"unknown_category\":\"error\",\"columns\":[{\"name\":\"amount\",\"type\":"
        "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[\"fixed\"]},"
        "{\"name\":\"home\",\"type\":\"categorical\",\"categories\":[\"own\",\"rent\"]},"
        "{\"name\":\"id\",\"type\":\"ignored\"},{\"name\":\"y\",\"type\":\"target\"}]}";
    fv_schema_t *c = load(closed_json), *o = NULL, *r = NULL;
    char *j;

    /* every categorical column's categories open; unknown_category becomes other */
    CHECK_OK(fv_schema_open(c, NULL, 0, true, &o, D), D);
    j = to_json(o);
    CHECK_STR_EQ(j, "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":"
                    "[\"bad\",\"good\"],\"unknown_category\":\"other\",\"columns\":[{\"name\":"
                    "\"amount\",\"type\":\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\","
                    "\"categories\":\"open\"},{\"name\":\"home\",\"type\":\"categorical\","
                    "\"categories\":\"open\"},{\"name\":\"id\",\"type\":\"ignored\"},{\"name\":"
                    "\"y\",\"type\":\"target\"}]}");
    free(j);
    /* the schema round fills it back in: a bank's vocabulary (job values held by >= 2 rows) */
    static const char csv[] = "amount,job,home,id,y\n1,fixed,own,1,bad\n2,fixed,rent,2,good\n"
                              "3,self,own,3,good\n4,self,own,4,bad\n5,rare,rent,5,good\n";
    char *vocab = NULL;
    size_t vlen = 0;
    CHECK_OK(fv_schema_vocab_mem(o, "bank.csv", csv, strlen(csv), 2, &vocab, &vlen, D), D);
    const char *vv[] = {vocab};
    CHECK_OK(fv_schema_resolve(o, vv, &vlen, NULL, 1, &r, D), D);
    CHECK_UINT_EQ(fv_schema_n_categories(r, 1), 2);
    CHECK_STR_EQ(fv_schema_category(r, 1, 0), "fixed");
    CHECK_STR_EQ(fv_schema_category(r, 1, 1), "self");
    CHECK_UINT_EQ(fv_schema_n_categories(r, 2), 2);
    CHECK(!fv_schema_is_open(r));
    free(vocab);
    fv_schema_free(r);
    fv_schema_free(o);
    o = NULL;

    /* named columns: a numeric column's type, a categorical column's categories */
    const char *named[] = {"amount", "job"};
    CHECK_OK(fv_schema_open(c, named, 2, false, &o, D), D);
    CHECK_INT_EQ(fv_schema_column_type(o, 0), FV_COL_OPEN);
    CHECK(fv_schema_column_open(o, 0));
    CHECK(fv_schema_column_open(o, 1));
    CHECK(!fv_schema_column_open(o, 2));
    CHECK_UINT_EQ(fv_schema_n_categories(o, 2), 2);
    CHECK_INT_EQ(fv_schema_unknown_policy(o), FV_UNKNOWN_OTHER);
    fv_schema_free(o);
    o = NULL;

    /* refusals name the column */
    struct {
        const char *col;
        const char *want;
    } bad[] = {
        {"nosuch", "column 'nosuch' is not in the schema"},
        {"y", "column 'y' is the target; expected a numeric or categorical column"},
        {"id", "column 'id' is ignored; expected a numeric or categorical column"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        D->msg[0] = '\0';
        CHECK_INT_EQ(fv_schema_open(c, &bad[i].col, 1, true, &o, D), FV_EINVAL);
        CHECK(o == NULL);
        CHECK_CONTAINS(D->msg, bad[i].want);
    }
    fv_schema_free(c);
    c = load("{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\","
             "\"good\"],\"unknown_category\":\"error\",\"columns\":[{\"name\":\"amount\","
             "\"type\":\"numeric\"},{\"name\":\"y\",\"type\":\"target\"}]}");
    CHECK_INT_EQ(fv_schema_open(c, NULL, 0, true, &o, D), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "no column to open");
    /* an open schema is not opened again */
    fv_schema_t *already = load(OPEN_CANON);
    CHECK_INT_EQ(fv_schema_open(already, NULL, 0, true, &o, D), FV_EINVAL);
    CHECK_CONTAINS(D->msg, "schema has open columns");
    fv_schema_free(already);
    fv_schema_free(c);
}

int main(void)
{
    test_open_json();
    test_vocab();
    test_resolve();
    test_merge();
    test_open_closed();
    printf("ok\n");
    return 0;
}
