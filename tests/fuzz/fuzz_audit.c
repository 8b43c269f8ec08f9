/* fuzz_audit.c - fuzz target for the audit log's record and head decoders
 * (fv_audit_verify_mem: crypto/audit.c).
 *
 * Input: LOG bytes, optionally followed by one NUL and HEAD bytes (a record line never
 * holds a NUL). The key is fixed (seeded from 1, as the corpus was written), so seeds in
 * corpus/audit/ verify and mutations reach every check: JSON, members, canonical form,
 * seq, chain, hash, signature, head.
 *
 * Properties (a violation abort()s): the result is 0 or FV_ECORRUPT, never anything else
 * for bytes in memory; a valid log has exactly one record per LF and the report says ok;
 * a refusal names a record (or the head) in a sentence; verifying twice gives the same
 * report (no hidden state).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_audit.h"
#include "fv_crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t pk[32];
    static int ready;
    if (!ready) {
        uint8_t sk[64];
        fv_rand_t r;
        if (fv_crypto_init() != 0)
            abort();
        fv_rand_seeded_u64(&r, 1);
        if (fv_sign_keypair(&r, pk, sk) != 0)
            abort();
        fv_crypto_wipe(sk, sizeof sk);
        ready = 1;
    }
    const char *log = (const char *)data, *head = NULL;
    size_t log_len = size, head_len = 0;
    const uint8_t *nul = memchr(data, 0, size);
    if (nul != NULL) {
        log_len = (size_t)(nul - data);
        head = (const char *)nul + 1;
        head_len = size - log_len - 1;
    }
    /* Copies of exactly the given length: ASan catches a read past the end. */
    char *lb = malloc(log_len ? log_len : 1), *hb = malloc(head_len ? head_len : 1);
    if (lb == NULL || hb == NULL)
        abort();
    memcpy(lb, log, log_len);
    if (head != NULL)
        memcpy(hb, head, head_len);

    fv_audit_report_t a, b;
    fv_diag_t d;
    int r1 = fv_audit_verify_mem(lb, log_len, head ? hb : NULL, head_len, pk, &a, &d);
    int r2 = fv_audit_verify_mem(lb, log_len, head ? hb : NULL, head_len, pk, &b, &d);
    if (r1 != 0 && r1 != FV_ECORRUPT)
        abort();
    if (r1 != r2 || memcmp(&a, &b, sizeof a) != 0)
        abort();
    if (r1 == 0) {
        size_t lines = 0;
        for (size_t i = 0; i < log_len; i++)
            lines += lb[i] == '\n';
        if (!a.ok || a.n_records != lines || (head != NULL) != a.head_checked)
            abort();
    } else {
        if (a.ok || a.reason[0] == '\0' ||
            (strstr(a.reason, "record ") == NULL && strstr(a.reason, "line ") == NULL &&
             strstr(a.reason, "head") == NULL))
            abort();
    }
    free(lb);
    free(hb);
    return 0;
}
