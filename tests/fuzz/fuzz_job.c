/* fuzz_job.c - fuzz target for the job spec decoder (fv_job_from_json).
 *
 * The coordinator ships the job spec to every agent, which decodes it before it checks
 * the job against its own data and policy: to an agent these are a peer's bytes.
 * Properties (a violation abort()s, so libFuzzer reports it as a crash):
 *   - a refusal returns FV_EPARSE, FV_EINVAL, FV_ETOOBIG or FV_EVERSION (the embedded
 *     schema's version), the codes job.c documents for hostile bytes. Not FV_ENOMEM:
 *     inputs are small (libFuzzer's -max_len, the corpus files), so "out of memory" for
 *     them would blame our side for a peer's bytes. A refusal leaves *ret untouched (a
 *     sentinel is passed) and writes a sentence that starts with the origin;
 *   - a job that parses re-encodes (fv_job_to_json), the re-encoding parses, and
 *     re-encoding that gives the same bytes (the canonical form is a fixed point); the
 *     two jobs have equal schemas and equal digests, and the digest is the SHA-256 of
 *     the canonical bytes;
 *   - a job that parses with SecAgg on can size SecAgg for its smallest cohort
 *     (fv_job_secagg_for with min_agents agents): the parser checked the spec against
 *     min_agents by the same rules.
 * Everything is freed (a leak is a bug, and LeakSanitizer or valgrind reports it).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"
#include "fv_job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ORIGIN "fuzz.json"

/* Decodes and checks what a refusal must look like; returns the decoder's result. */
static int decode_checked(const char *origin, const char *json, size_t len, fv_job_t **ret)
{
    static fv_job_t sentinel_storage;
    fv_job_t *const sentinel = &sentinel_storage;
    fv_job_t *job = sentinel;
    fv_diag_t d;
    int r;

    d.msg[0] = '\0';
    r = fv_job_from_json(origin, json, len, &job, &d);
    if (r == 0) {
        if (job == sentinel || job == NULL || job->schema == NULL)
            abort(); /* success writes a job */
        *ret = job;
        return 0;
    }
    if (r != FV_EPARSE && r != FV_EINVAL && r != FV_ETOOBIG && r != FV_EVERSION)
        abort(); /* a peer's bytes are refused with a documented code */
    if (job != sentinel)
        abort(); /* ret_* written only on success */
    if (strncmp(d.msg, origin, strlen(origin)) != 0)
        abort(); /* the sentence says where: "ORIGIN: json.path: ..." */
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_job_t *j1 = NULL, *j2 = NULL;
    char *e1 = NULL, *e2 = NULL;
    size_t n1 = 0, n2 = 0;
    uint8_t d1[32], d2[32], h[32];

    /* The decoder takes (pointer, length): no NUL terminator is added, so a read past
     * the end is caught by ASan in the replay and libFuzzer builds alike. */
    if (decode_checked(ORIGIN, (const char *)data, size, &j1) != 0)
        return 0;
    if (fv_job_to_json(j1, &e1, &n1) != 0 || e1 == NULL || strlen(e1) != n1)
        abort(); /* a job that parsed must serialize, as one NUL-terminated string */
    if (decode_checked("fuzz-reencoded.json", e1, n1, &j2) != 0)
        abort(); /* and what we write we must read */
    if (fv_job_to_json(j2, &e2, &n2) != 0)
        abort();
    if (n1 != n2 || memcmp(e1, e2, n1) != 0)
        abort(); /* the canonical form is a fixed point */
    if (!fv_schema_equal(j1->schema, j2->schema))
        abort();
    if (fv_job_digest(j1, d1) != 0 || fv_job_digest(j2, d2) != 0 || memcmp(d1, d2, 32) != 0)
        abort(); /* equal jobs, equal identity */
    fv_sha256(h, e1, n1);
    if (memcmp(d1, h, 32) != 0)
        abort(); /* the digest is the SHA-256 of the canonical bytes */
    if (fv_job_last_round(j1) < j1->rounds)
        abort();
    if (j1->secagg.on) {
        uint32_t t = 0, k = 0;
        fv_diag_t d;
        if (fv_job_secagg_for(j1, j1->min_agents, &t, &k, &d) != 0)
            abort(); /* the parser checked the spec against min_agents */
    }

    fv_job_free(j1);
    fv_job_free(j2);
    free(e1);
    free(e2);
    return 0;
}
