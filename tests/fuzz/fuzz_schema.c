/* fuzz_schema.c - fuzz target for the schema JSON decoder (fv_schema_from_json).
 *
 * An input that parses must survive to_json -> from_json unchanged: the two schemas are
 * equal (fv_schema_equal), and since to_json is canonical, the second to_json gives the
 * same bytes as the first. Either failing is a bug and abort()s, so the fuzzer reports
 * it. Everything is freed (a leak is a bug, and LeakSanitizer reports it).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_schema_t *s1 = NULL, *s2 = NULL;
    char *j1 = NULL, *j2 = NULL;
    size_t n1 = 0, n2 = 0;
    fv_diag_t d;

    /* The decoder takes (pointer, length): no NUL terminator is added, so a read past
     * the end is caught by ASan in the replay and libFuzzer builds alike. */
    if (fv_schema_from_json("fuzz.json", (const char *)data, size, &s1, &d) != 0)
        return 0;
    if (fv_schema_to_json(s1, &j1, &n1) != 0)
        abort(); /* a schema that loaded must serialize */
    if (fv_schema_from_json("fuzz-reencoded.json", j1, n1, &s2, &d) != 0)
        abort(); /* and what we write we must read */
    if (!fv_schema_equal(s1, s2))
        abort();
    if (fv_schema_to_json(s2, &j2, &n2) != 0)
        abort();
    if (n1 != n2 || memcmp(j1, j2, n1) != 0)
        abort(); /* to_json is canonical: equal schemas give equal bytes */

    fv_schema_free(s1);
    fv_schema_free(s2);
    free(j1);
    free(j2);
    return 0;
}
