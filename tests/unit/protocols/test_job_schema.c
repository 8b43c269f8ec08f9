/* test_job_schema.c - a job whose schema is open: it decodes, has a canonical form and a
 * stable digest, cannot be laid out, and fv_job_resolve_schema turns it into a fully
 * checked job only with a schema that refines the open one.
 */
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;

#define HEAD                                                                                       \
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\",\"good\"],"
#define COLS                                                                                       \
    "\"columns\":[{\"name\":\"amount\",\"type\":\"numeric\"},"                                     \
    "{\"name\":\"job\",\"type\":\"categorical\",\"categories\":\"open\"},"                         \
    "{\"name\":\"purpose\",\"type\":\"open\"},"                                                    \
    "{\"name\":\"home\",\"type\":\"categorical\",\"categories\":[\"own\",\"rent\"]},"              \
    "{\"name\":\"y\",\"type\":\"target\"}]}"
static const char OPEN_SCHEMA[] = HEAD COLS; /* unknown_category left out: "other" */

static char *job_text(const char *schema, const char *model, const char *extra)
{
    static char buf[1 << 20];
    snprintf(buf, sizeof buf, "{\"name\":\"open-job\",\"schema\":%s,\"model\":\"%s\"%s}", schema,
             model, extra);
    return buf;
}

static fv_job_t *parse_ok(const char *text)
{
    fv_job_t *j = NULL;
    D->msg[0] = '\0';
    CHECK_OK(fv_job_from_json("job.json", text, strlen(text), &j, D), D);
    return j;
}

static fv_schema_t *schema_ok(const char *json)
{
    fv_schema_t *s = NULL;
    D->msg[0] = '\0';
    CHECK_OK(fv_schema_from_json("s.json", json, strlen(json), &s, D), D);
    return s;
}

static void test_open_job(void)
{
    fv_job_t *j = parse_ok(
                 job_text(OPEN_SCHEMA, "mlp:16,8", ",\"distill\":{\"student\":\"mlp:4\"}")),
             *k;
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    uint8_t da[32], db[32];
    fv_fed_stats_layout_t sl;

    CHECK(fv_schema_is_open(j->schema));
    /* canonical form: open columns in their canonical words, a fixed point */
    CHECK_OK(fv_job_to_json(j, &a, &la), NULL);
    CHECK_CONTAINS(a, "{\"name\":\"job\",\"type\":\"categorical\",\"categories\":\"open\"}");
    CHECK_CONTAINS(a, "{\"name\":\"purpose\",\"type\":\"open\"}");
    CHECK_CONTAINS(a, "\"unknown_category\":\"other\"");
    k = parse_ok(a);
    CHECK_OK(fv_job_to_json(k, &b, &lb), NULL);
    CHECK_STR_EQ(a, b);
    CHECK_OK(fv_job_digest(j, da), NULL);
    CHECK_OK(fv_job_digest(k, db), NULL);
    CHECK(memcmp(da, db, 32) == 0);
    free(a);
    free(b);
    fv_job_free(k);
    /* no layout: the stats round refuses */
    CHECK_INT_EQ(fv_fed_stats_layout_init(j->schema, &sl), FV_EINVAL);
    fv_job_free(j);

    /* the model's syntax is still checked while the schema is open */
    {
        fv_job_t *bad = NULL;
        const char *t = job_text(OPEN_SCHEMA, "mlp:x", "");
        D->msg[0] = '\0';
        CHECK_INT_EQ(fv_job_from_json("job.json", t, strlen(t), &bad, D), FV_EINVAL);
        CHECK_CONTAINS(D->msg, "job.json: model:");
        t = job_text(OPEN_SCHEMA, "logreg", ",\"distill\":{\"student\":\"tree\"}");
        CHECK_INT_EQ(fv_job_from_json("job.json", t, strlen(t), &bad, D), FV_EINVAL);
        CHECK_CONTAINS(D->msg, "job.json: distill.student:");
        /* "error" with an open column is the schema's refusal */
        t = job_text(HEAD "\"unknown_category\":\"error\"," COLS, "logreg", "");
        CHECK_INT_EQ(fv_job_from_json("job.json", t, strlen(t), &bad, D), FV_EINVAL);
        CHECK_CONTAINS(D->msg, "job.json: schema: unknown_category: \"error\" with an open column");
    }
}

static void test_resolve_job(void)
{
    fv_job_t *open = parse_ok(job_text(OPEN_SCHEMA, "mlp:16,8", "")), *res = NULL;
    fv_schema_t *closed;
    const char *voc = "{\"fedvault_vocab\":1,\"columns\":[{\"name\":\"job\",\"type\":"
                      "\"categorical\",\"categories\":[\"fixed\",\"freelance\"],\"suppressed\":1},"
                      "{\"name\":\"purpose\",\"type\":\"numeric\",\"categories\":[],"
                      "\"suppressed\":0}]}";
    size_t len = strlen(voc);
    const char *org = "bank-a";
    uint8_t d1[32], d2[32];

    CHECK_OK(fv_schema_resolve(open->schema, &voc, &len, &org, 1, &closed, D), D);
    CHECK_OK(fv_job_resolve_schema(open, closed, &res, D), D);
    CHECK(!fv_schema_is_open(res->schema));
    CHECK(fv_schema_equal(res->schema, closed));
    CHECK_STR_EQ(res->model, "mlp:16,8");
    CHECK_STR_EQ(res->name, "open-job");
    CHECK_UINT_EQ(res->rounds, open->rounds);
    /* the resolved job has a layout and its own digest */
    {
        fv_fed_stats_layout_t sl;
        CHECK_OK(fv_fed_stats_layout_init(res->schema, &sl), NULL);
    }
    CHECK_OK(fv_job_digest(open, d1), NULL);
    CHECK_OK(fv_job_digest(res, d2), NULL);
    CHECK(memcmp(d1, d2, 32) != 0);
    /* resolving is deterministic: same inputs, same digest */
    {
        fv_job_t *again = NULL;
        uint8_t d3[32];
        CHECK_OK(fv_job_resolve_schema(open, closed, &again, D), D);
        CHECK_OK(fv_job_digest(again, d3), NULL);
        CHECK(memcmp(d2, d3, 32) == 0);
        fv_job_free(again);
    }
    fv_job_free(res);
    res = NULL;

    /* refinement violations, each refused with a sentence naming the column */
    struct {
        const char *schema;
        const char *want;
    } bad[] = {
        /* a fixed column's categories changed */
        {HEAD "\"unknown_category\":\"other\",\"columns\":[{\"name\":\"amount\",\"type\":"
              "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[\"a\"]},"
              "{\"name\":\"purpose\",\"type\":\"numeric\"},{\"name\":\"home\",\"type\":"
              "\"categorical\",\"categories\":[\"own\"]},{\"name\":\"y\",\"type\":\"target\"}]}",
         "schema.columns[3] 'home': the resolved schema changes a column the job fixed"},
        /* a fixed column's type changed */
        {HEAD "\"unknown_category\":\"other\",\"columns\":[{\"name\":\"amount\",\"type\":"
              "\"ignored\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[\"a\"]},"
              "{\"name\":\"purpose\",\"type\":\"numeric\"},{\"name\":\"home\",\"type\":"
              "\"categorical\",\"categories\":[\"own\",\"rent\"]},{\"name\":\"y\",\"type\":"
              "\"target\"}]}",
         "schema.columns[0] 'amount'"},
        /* an open-categories column made numeric */
        {HEAD "\"unknown_category\":\"other\",\"columns\":[{\"name\":\"amount\",\"type\":"
              "\"numeric\"},{\"name\":\"job\",\"type\":\"numeric\"},"
              "{\"name\":\"purpose\",\"type\":\"numeric\"},{\"name\":\"home\",\"type\":"
              "\"categorical\",\"categories\":[\"own\",\"rent\"]},{\"name\":\"y\",\"type\":"
              "\"target\"}]}",
         "schema.columns[1] 'job'"},
        /* an open type made ignored */
        {HEAD "\"unknown_category\":\"other\",\"columns\":[{\"name\":\"amount\",\"type\":"
              "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[]},"
              "{\"name\":\"purpose\",\"type\":\"ignored\"},{\"name\":\"home\",\"type\":"
              "\"categorical\",\"categories\":[\"own\",\"rent\"]},{\"name\":\"y\",\"type\":"
              "\"target\"}]}",
         "schema.columns[2] 'purpose'"},
        /* renamed column */
        {HEAD "\"unknown_category\":\"other\",\"columns\":[{\"name\":\"amt\",\"type\":"
              "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[]},"
              "{\"name\":\"purpose\",\"type\":\"numeric\"},{\"name\":\"home\",\"type\":"
              "\"categorical\",\"categories\":[\"own\",\"rent\"]},{\"name\":\"y\",\"type\":"
              "\"target\"}]}",
         "schema.columns[0]: 'amt' in the resolved schema, 'amount' in the job's"},
        /* a column fewer */
        {HEAD "\"unknown_category\":\"other\",\"columns\":[{\"name\":\"amount\",\"type\":"
              "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[]},"
              "{\"name\":\"y\",\"type\":\"target\"}]}",
         "the resolved schema has 3 columns, the job's has 5"},
        /* another positive label */
        {"{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"good\",\"classes\":[\"bad\","
         "\"good\"],\"unknown_category\":\"other\",\"columns\":[{\"name\":\"amount\",\"type\":"
         "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[]},"
         "{\"name\":\"purpose\",\"type\":\"numeric\"},{\"name\":\"home\",\"type\":"
         "\"categorical\",\"categories\":[\"own\",\"rent\"]},{\"name\":\"y\",\"type\":"
         "\"target\"}]}",
         "changes the target, classes or positive label"},
        /* unknown "error" */
        {HEAD "\"unknown_category\":\"error\",\"columns\":[{\"name\":\"amount\",\"type\":"
              "\"numeric\"},{\"name\":\"job\",\"type\":\"categorical\",\"categories\":[]},"
              "{\"name\":\"purpose\",\"type\":\"numeric\"},{\"name\":\"home\",\"type\":"
              "\"categorical\",\"categories\":[\"own\",\"rent\"]},{\"name\":\"y\",\"type\":"
              "\"target\"}]}",
         "schema.unknown_category: \"error\" in the resolved schema"},
        /* still open */
        {OPEN_SCHEMA, "schema has open columns (columns[1] 'job', columns[2] 'purpose')"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fv_schema_t *s = schema_ok(bad[i].schema);
        D->msg[0] = '\0';
        CHECK_INT_EQ(fv_job_resolve_schema(open, s, &res, D), FV_EINVAL);
        CHECK(res == NULL);
        CHECK_CONTAINS(D->msg, "job 'open-job' (resolved): ");
        CHECK_CONTAINS(D->msg, bad[i].want);
        fv_schema_free(s);
    }
    fv_schema_free(closed);

    /* the model check runs at resolution: 65536 job categories + other + amount + purpose
     * + home's 3 = more inputs than a layer may have */
    {
        size_t cap = (size_t)FV_SCHEMA_MAX_CATEGORIES * 10 + 256, o;
        char *v = malloc(cap);
        CHECK(v != NULL);
        o = (size_t)snprintf(v, cap,
                             "{\"fedvault_vocab\":1,\"columns\":[{\"name\":\"purpose\","
                             "\"type\":\"numeric\",\"categories\":[],\"suppressed\":0},"
                             "{\"name\":\"job\",\"type\":\"categorical\",\"suppressed\":0,"
                             "\"categories\":[");
        for (int i = 0; i < FV_SCHEMA_MAX_CATEGORIES; i++)
            o += (size_t)snprintf(v + o, cap - o, "%s\"%06d\"", i ? "," : "", i);
        snprintf(v + o, cap - o, "]}]}");
        len = strlen(v);
        const char *vv = v;
        CHECK_OK(fv_schema_resolve(open->schema, &vv, &len, &org, 1, &closed, D), D);
        D->msg[0] = '\0';
        CHECK_INT_EQ(fv_job_resolve_schema(open, closed, &res, D), FV_EINVAL);
        CHECK(res == NULL);
        CHECK_CONTAINS(D->msg, "job 'open-job' (resolved): model:");
        CHECK_CONTAINS(D->msg, "65542 input features");
        fv_schema_free(closed);
        free(v);
    }
    fv_job_free(open);
}

int main(void)
{
    test_open_job();
    test_resolve_job();
    printf("ok\n");
    return 0;
}
