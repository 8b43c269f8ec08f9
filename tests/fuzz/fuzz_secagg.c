/* fuzz_secagg.c - fuzz target for the SecAgg message decoder (fv_secagg_msg_decode).
 *
 * Every byte a peer sends the coordinator or an agent during secure aggregation goes
 * through this decoder first. An input that decodes must re-encode, and the re-encoding
 * must decode and re-encode to the same bytes (the format has one encoding per message);
 * a failure of either is a bug and abort()s. Everything is released (leaks are bugs).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_secagg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_secagg_msg_t m1, m2;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    fv_diag_t d;

    if (fv_secagg_msg_decode(data, size, &m1, &d) != 0)
        return 0;
    if (fv_secagg_msg_encode(&m1, &b1, &n1) != 0)
        abort(); /* a message that decoded must encode */
    if (fv_secagg_msg_decode(b1, n1, &m2, &d) != 0)
        abort(); /* and what we write we must read */
    if (fv_secagg_msg_encode(&m2, &b2, &n2) != 0 || n1 != n2 || memcmp(b1, b2, n1) != 0)
        abort();
    fv_secagg_msg_close(&m2);
    fv_secagg_msg_close(&m1);
    free(b1);
    free(b2);
    return 0;
}
