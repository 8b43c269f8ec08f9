/* test_job_file.c - job spec FILES (fv_job_load, fv_job_file_expand, fv_job_expand):
 * full-line // comments (blanked, so an error's line:column still points into the file),
 * the schema given by a path relative to the spec's directory, --schema's replacement,
 * the errors that name the missing or broken schema file, and the refusal of a string
 * schema in bytes from the network (fv_job_from_json).
 *
 * Files are written under a fresh mkdtemp directory, removed at the end.
 */
#define _GNU_SOURCE /* mkdtemp */
#include "fv_job.h"
#include "fv_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static fv_diag_t diag_store;
static fv_diag_t *const D = &diag_store;
static char dir[256];

/* age numeric, city categorical (3), id ignored, y target: binary. */
static const char SCHEMA_B[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\",\"classes\":[\"no\",\"yes\"],"
    "\"unknown_category\":\"error\",\"columns\":[{\"name\":\"age\",\"type\":\"numeric\"},"
    "{\"name\":\"city\",\"type\":\"categorical\",\"categories\":[\"a\",\"b\",\"c\"]},"
    "{\"name\":\"id\",\"type\":\"ignored\"},{\"name\":\"y\",\"type\":\"target\"}]}\n";
/* x numeric, y target with three classes. */
static const char SCHEMA_M[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":null,\"classes\":[\"cat\",\"dog\","
    "\"emu\"],\"unknown_category\":\"other\",\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},"
    "{\"name\":\"y\",\"type\":\"target\"}]}\n";

/* dir/rel (written when text is not NULL); a static buffer per call slot. */
static const char *put(const char *rel, const char *text)
{
    static char bufs[4][512];
    static int slot;
    char *p = bufs[slot++ % 4];
    snprintf(p, 512, "%s/%s", dir, rel);
    if (text != NULL) {
        FILE *f = fopen(p, "w");
        CHECK(f != NULL);
        CHECK(fwrite(text, 1, strlen(text), f) == strlen(text));
        CHECK(fclose(f) == 0);
    }
    return p;
}

static void test_comments(void)
{
    fv_job_t *j = NULL;
    put("schema.json", SCHEMA_B);
    /* comments anywhere a line may start, indented, with tabs, with // inside a string
     * value (not a comment: it is not at the start of a line), and CRLF line ends */
    const char *p = put("c.json", "// a job\n"
                                  "{\n"
                                  "  // the name\n"
                                  "  \"name\": \"c-job\",\n"
                                  "\t// the schema, beside this file\r\n"
                                  "  \"schema\": \"schema.json\",\r\n"
                                  "  \"model\": \"logreg\", // not a comment: refused below\n"
                                  "  \"rounds\": 7\n"
                                  "  // the end\n"
                                  "}\n"
                                  "// trailing\n");
    CHECK(fv_job_load(p, &j, D) < 0);
    /* the trailing // on line 7 is not a full-line comment: invalid JSON at line 7 */
    CHECK_CONTAINS(D->msg, "c.json:7:");
    fv_job_free(j);
    j = NULL;

    p = put("c.json", "// a job\n"
                      "{\n"
                      "  // the name\n"
                      "  \"name\": \"c-job\",\n"
                      "\t// the schema, beside this file\r\n"
                      "  \"schema\": \"schema.json\",\r\n"
                      "  \"model\": \"logreg\",\n"
                      "  \"seed\": 3,\n"
                      "  // \"rounds\": 99,\n"
                      "  \"rounds\": 7\n"
                      "  // the end\n"
                      "}\n"
                      "// trailing, no newline");
    CHECK_OK(fv_job_load(p, &j, D), D);
    CHECK_STR_EQ(j->name, "c-job");
    CHECK_UINT_EQ(j->rounds, 7); /* the commented-out 99 stays out */
    CHECK_UINT_EQ(j->seed, 3);
    CHECK_UINT_EQ(fv_schema_n_columns(j->schema), 4);
    fv_job_free(j);
    j = NULL;

    /* line numbers: an error after five comment lines is reported on its own line (7),
     * column included */
    p = put("l.json", "// 1\n"
                      "// 2\n"
                      "{\n"
                      "  // 4\n"
                      "    // 5\n"
                      "  \"name\": \"l\",\n"
                      "  \"rounds\": 1,,\n"
                      "}\n");
    CHECK(fv_job_load(p, &j, D) == FV_EPARSE);
    CHECK_CONTAINS(D->msg, "l.json:7:");
    /* a value-level error after comments names the field, not a line */
    p = put("v.json",
            "// x\n{\"name\": \"v\", \"schema\": \"schema.json\", \"model\": \"logreg\",\n"
            "// y\n\"rounds\": 0}\n");
    CHECK(fv_job_load(p, &j, D) == FV_EINVAL);
    CHECK_CONTAINS(D->msg, "v.json: rounds: 0 must be in 1..10000");
    /* a // not at the start of a line inside a string is the string's */
    p = put("s.json", "{\"name\": \"s\", \"schema\": \"schema.json\",\n"
                      "\"model\": \"mlp://4\"}\n");
    CHECK(fv_job_load(p, &j, D) == FV_EINVAL);
    CHECK_CONTAINS(D->msg, "mlp://4");
    /* comments are a file's: the same text from the network is invalid JSON */
    {
        const char *t = "// c\n{\"name\":\"n\"}";
        CHECK(fv_job_from_json("job", t, strlen(t), &j, D) == FV_EPARSE);
        CHECK_CONTAINS(D->msg, "job:1:");
    }
}

static void test_schema_path(void)
{
    fv_job_t *j = NULL, *k = NULL;
    char *json = NULL, *c1 = NULL, *c2 = NULL;
    size_t len = 0;
    char sub[300];

    /* relative to the spec's directory, not the working directory */
    snprintf(sub, sizeof sub, "%s/specs", dir);
    CHECK(mkdir(sub, 0700) == 0);
    snprintf(sub, sizeof sub, "%s/schemas", dir);
    CHECK(mkdir(sub, 0700) == 0);
    put("schemas/m.json", SCHEMA_M);
    const char *p =
        put("specs/job.json",
            "{\"name\": \"rel\", \"schema\": \"../schemas/m.json\", \"model\": \"logreg\"}\n");
    CHECK_OK(fv_job_load(p, &j, D), D);
    CHECK(fv_schema_positive(j->schema) == NULL);
    CHECK_UINT_EQ(fv_schema_n_classes(j->schema), 3);
    CHECK_UINT_EQ(j->hist_bins, 0); /* the multi-class default: the schema file counts */
    CHECK_INT_EQ(j->early_stopping.metric, FV_JOB_METRIC_LOG_LOSS);

    /* the expanded spec is the inline spec: same canonical bytes */
    CHECK_OK(fv_job_file_expand(p, NULL, &json, &len, D), D);
    CHECK(strstr(json, "\"positive\":null") != NULL);
    CHECK(strstr(json, "m.json") == NULL);
    CHECK_OK(fv_job_from_json("inline", json, len, &k, D), D);
    CHECK_OK(fv_job_to_json(j, &c1, NULL), D);
    CHECK_OK(fv_job_to_json(k, &c2, NULL), D);
    CHECK_STR_EQ(c1, c2);
    free(json), free(c1), free(c2);
    json = c1 = c2 = NULL;
    fv_job_free(k);
    k = NULL;

    /* an absolute path is taken as it is */
    {
        char spec[1024];
        snprintf(spec, sizeof spec,
                 "{\"name\": \"abs\", \"schema\": \"%s/schemas/m.json\", "
                 "\"model\": \"logreg\"}",
                 dir);
        CHECK_OK(fv_job_load(put("specs/abs.json", spec), &k, D), D);
        CHECK_UINT_EQ(fv_schema_n_classes(k->schema), 3);
        fv_job_free(k);
        k = NULL;
    }

    /* a missing schema file is named, with where the path is relative to */
    p = put("specs/missing.json",
            "{\"name\": \"m\", \"schema\": \"nope.json\", \"model\": \"logreg\"}\n");
    CHECK(fv_job_load(p, &k, D) < 0);
    CHECK_CONTAINS(D->msg, "specs/missing.json: schema: cannot open '");
    CHECK_CONTAINS(D->msg, "specs/nope.json' (the spec's \"schema\", relative to its directory)");
    CHECK_CONTAINS(D->msg, "No such file");
    /* an empty path */
    p = put("specs/empty.json", "{\"name\": \"m\", \"schema\": \"\", \"model\": \"logreg\"}\n");
    CHECK(fv_job_load(p, &k, D) == FV_EINVAL);
    CHECK_CONTAINS(D->msg, "specs/empty.json: schema: an empty path");
    /* a schema file that is broken: its own errors name it (JSON syntax, then a rule) */
    put("schemas/bad.json", "{\"fedvault_schema\": 1,\n\"target\": }\n");
    p = put("specs/bad.json",
            "{\"name\": \"b\", \"schema\": \"../schemas/bad.json\", \"model\": \"logreg\"}\n");
    CHECK(fv_job_load(p, &k, D) == FV_EPARSE);
    CHECK_CONTAINS(D->msg, "schemas/bad.json:2:");
    put("schemas/bad.json", "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"yes\","
                            "\"classes\":[\"yes\",\"no\"],\"unknown_category\":\"error\","
                            "\"columns\":[{\"name\":\"y\",\"type\":\"target\"}]}");
    CHECK(fv_job_load(p, &k, D) == FV_EPARSE);
    CHECK_CONTAINS(D->msg, "schemas/bad.json: classes[1]");
    /* a schema path that is a directory */
    p = put("specs/dir.json",
            "{\"name\": \"d\", \"schema\": \"../schemas\", \"model\": \"logreg\"}\n");
    CHECK(fv_job_load(p, &k, D) < 0);
    CHECK_CONTAINS(D->msg, "schemas' (the spec's \"schema\", relative to its directory) is not a "
                           "regular file");

    /* schema_path (--schema F) replaces the spec's schema: a path, an object or none */
    {
        const char *b = put("b.json", SCHEMA_B);
        fv_job_t *x = NULL;
        CHECK_OK(fv_job_file_expand(put("specs/job.json", NULL), b, &json, &len, D), D);
        CHECK_OK(fv_job_from_json("x", json, len, &x, D), D);
        CHECK_STR_EQ(fv_schema_positive(x->schema), "yes");
        free(json);
        fv_job_free(x);
        x = NULL;
        p = put("specs/noschema.json", "{\"name\": \"n\", \"model\": \"logreg\"}\n");
        CHECK(fv_job_load(p, &x, D) == FV_EPARSE); /* no schema at all */
        CHECK_CONTAINS(D->msg, "schema: missing");
        CHECK_OK(fv_job_file_expand(p, b, &json, &len, D), D);
        CHECK_OK(fv_job_from_json("x", json, len, &x, D), D);
        free(json);
        fv_job_free(x);
        x = NULL;
        CHECK(fv_job_file_expand(p, "/nonexistent/s.json", &json, &len, D) < 0);
        CHECK_CONTAINS(D->msg, "'/nonexistent/s.json' (given by --schema)");
        /* fv_job_expand of text (standard input): base_dir "." is the working directory */
        char cwd[4096];
        CHECK(getcwd(cwd, sizeof cwd) != NULL);
        CHECK(chdir(dir) == 0);
        {
            const char *t = "// stdin\n{\"name\":\"i\",\"schema\":\"b.json\",\"model\":\"logreg\"}";
            CHECK_OK(fv_job_expand("standard input", t, strlen(t), ".", NULL, &json, &len, D), D);
            CHECK_OK(fv_job_from_json("x", json, len, &x, D), D);
            free(json);
            fv_job_free(x);
            x = NULL;
        }
        CHECK(chdir(cwd) == 0);
    }

    /* over the network (fv_job_from_json), a string schema is refused, naming why */
    {
        const char *t = "{\"name\":\"n\",\"schema\":\"schema.json\",\"model\":\"logreg\"}";
        CHECK(fv_job_from_json("job", t, strlen(t), &k, D) == FV_EPARSE);
        CHECK_CONTAINS(D->msg, "job: schema: a string ('schema.json'), a schema file's path");
        CHECK_CONTAINS(D->msg, "only in a job spec file");
        CHECK(k == NULL);
    }
    fv_job_free(j);
}

/* the shipped spec loads the same through the file path as before (no comments) */
static void test_shipped(void)
{
    char path[4096];
    fv_job_t *j = NULL;
    CHECK_OK(fv_job_load(fv_test_src("examples/lending-club/job.json", path, sizeof path), &j, D),
             D);
    CHECK_STR_EQ(j->name, "lending-club");
    fv_job_free(j);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/fv-jobfile-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    test_comments();
    test_schema_path();
    test_shipped();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
