/* fuzz_vagg.c - fuzz target for the validated-aggregation message decoder
 * (fv_vagg_msg_decode, fv_vagg.h).
 *
 * Every byte a peer sends in a validated round goes through this decoder first, against
 * the layout of the round's U1 (here a fixed tiny statement: 4 holders, threshold 3, a
 * 2-word norm block and 2 counts, one of them non-negative). An input that decodes must
 * re-encode, and the re-encoding must decode and re-encode to the same bytes (one
 * encoding per message); a failure of either is a bug and abort()s. Everything is
 * released (leaks are bugs).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_vagg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const fv_valid_term_t t_c[] = {{2, 1}};
static const uint32_t nonneg[] = {3};
static const fv_valid_affine_t ranges[] = {{t_c, 1, 0, 17, "count"}};
static const fv_valid_spec_t spec = {4, 0, 2, 10000, ranges, 1, NULL, 0, nonneg, 1, 100};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fv_valid_layout_t l;
    fv_vagg_msg_t m1, m2;
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    fv_diag_t d;

    if (fv_valid_layout_init(&spec, 4, 3, &l, &d) != 0)
        abort();
    /* ADVERTISE and KEYLIST decode without a layout too: try both ways */
    for (int with_layout = 0; with_layout < 2; with_layout++) {
        const fv_valid_layout_t *lp = with_layout ? &l : NULL;
        if (fv_vagg_msg_decode(data, size, lp, 8, &m1, &d) != 0)
            continue;
        if (fv_vagg_msg_encode(&m1, lp, &b1, &n1) != 0)
            abort(); /* a message that decoded must encode */
        if (fv_vagg_msg_decode(b1, n1, lp, 8, &m2, &d) != 0)
            abort(); /* and what we write we must read */
        if (fv_vagg_msg_encode(&m2, lp, &b2, &n2) != 0 || n1 != n2 || memcmp(b1, b2, n1) != 0)
            abort();
        if (n1 != size || memcmp(b1, data, size) != 0)
            abort(); /* one encoding per message */
        fv_vagg_msg_close(&m2);
        fv_vagg_msg_close(&m1);
        free(b1);
        free(b2);
        b1 = b2 = NULL;
    }
    return 0;
}
