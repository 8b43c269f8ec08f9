/* fuzz_schema_vocab.c - fuzz target for an agent's vocabulary as the coordinator reads it
 * (fv_schema_resolve; the bytes are peer-controlled).
 *
 * The input is one vocabulary for a fixed open schema (a "categories": "open" column and
 * a "type": "open" column). A vocabulary that is accepted must give a closed schema whose
 * canonical JSON reads back to an equal schema, that holds no open column, that keeps
 * the fixed columns as they were, and whose resolved columns hold at most the cap. The
 * same vocabulary given twice must resolve to the same schema (the union is idempotent).
 * Any failure abort()s; everything is freed (LeakSanitizer reports a leak).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char OPEN[] =
    "{\"fedvault_schema\":1,\"target\":\"y\",\"positive\":\"bad\",\"classes\":[\"bad\","
    "\"good\"],\"columns\":[{\"name\":\"amount\",\"type\":\"numeric\"},{\"name\":\"job\","
    "\"type\":\"categorical\",\"categories\":\"open\"},{\"name\":\"purpose\",\"type\":"
    "\"open\"},{\"name\":\"home\",\"type\":\"categorical\",\"categories\":[\"own\",\"rent\"]},"
    "{\"name\":\"y\",\"type\":\"target\"}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_schema_t *open = NULL, *r1 = NULL, *r2 = NULL, *back = NULL;
    const char *v[2] = {(const char *)data, (const char *)data};
    const size_t lens[2] = {size, size};
    const char *org[2] = {"fuzz-a", "fuzz-b"};
    char *j = NULL;
    size_t n = 0;
    fv_diag_t d;

    if (fv_schema_from_json("open.json", OPEN, sizeof OPEN - 1, &open, &d) != 0)
        abort();
    /* (pointer, length): no terminator is added, so an overread is caught by ASan. */
    if (fv_schema_resolve(open, v, lens, org, 1, &r1, &d) != 0) {
        if (strncmp(d.msg, "fuzz-a: ", 8) != 0 && strstr(d.msg, "out of memory") == NULL)
            abort(); /* every refusal names its origin */
        goto out;
    }
    if (fv_schema_is_open(r1) || fv_schema_unknown_policy(r1) != FV_UNKNOWN_OTHER)
        abort();
    if (fv_schema_column_type(r1, 0) != FV_COL_NUMERIC ||
        fv_schema_column_type(r1, 1) != FV_COL_CATEGORICAL || fv_schema_n_categories(r1, 3) != 2 ||
        fv_schema_n_categories(r1, 1) > FV_SCHEMA_MAX_CATEGORIES)
        abort();
    if (fv_schema_to_json(r1, &j, &n) != 0 || fv_schema_from_json("r.json", j, n, &back, &d) != 0 ||
        !fv_schema_equal(r1, back))
        abort();
    if (fv_schema_resolve(open, v, lens, org, 2, &r2, &d) != 0 || !fv_schema_equal(r1, r2))
        abort();
out:
    free(j);
    fv_schema_free(back);
    fv_schema_free(r2);
    fv_schema_free(r1);
    fv_schema_free(open);
    return 0;
}
