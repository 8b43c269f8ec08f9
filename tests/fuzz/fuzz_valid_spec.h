/* fuzz_valid_spec.h - the fixed statement, cohort and context of fuzz_valid.c, shared with
 * gen_valid_corpus.c (which writes the seeds from real messages of this statement).
 *
 * Tiny on purpose: a norm block of 2 words (sum z^2 <= 4), n_val and two histogram bins
 * in [0, 16) with the bins summing to n_val; n = 3 holders, threshold 2. Every input of
 * the target is decoded against these.
 *
 * Input format of the target (all integers little-endian; a length past the end of the
 * input is cut to what is left):
 *   byte 0: mode % 3
 *   mode 0, holder check:  u8 x (x % (n + 2): 0 and n + 1 are invalid holders) |
 *                          u16 header_len | header | payload (the rest)
 *   mode 1, decide:        u16 header_len | header | u8 count (% 9) |
 *                          count x (u16 len | vshare)
 *   mode 2, aggregate:     u8 count (% 9) | count x (u16 len | aggshare)
 */
#ifndef FV_FUZZ_VALID_SPEC_H
#define FV_FUZZ_VALID_SPEC_H

#include <string.h>

#include "fv_crypto.h"
#include "fv_valid.h"

#define FUZZ_VALID_N 3u
#define FUZZ_VALID_T 2u
#define FUZZ_VALID_D 2u
#define FUZZ_VALID_DIM (FUZZ_VALID_D + 3u)
#define FUZZ_VALID_MAX_COUNT 8u
#define FUZZ_VALID_MODES 3u

typedef struct fuzz_valid_spec {
    fv_valid_spec_t spec;
    fv_valid_affine_t ranges[3];
    fv_valid_affine_t equal[1];
    fv_valid_term_t terms[6];
    uint8_t ctx[FV_HASH_BYTES];
    uint8_t sum_id[FV_HASH_BYTES];
} fuzz_valid_spec_t;

static inline void fuzz_valid_spec_init(fuzz_valid_spec_t *f)
{
    memset(f, 0, sizeof *f);
    static const char *const names[3] = {"n_val", "bin[0]", "bin[1]"};
    for (uint32_t i = 0; i < 3; i++) {
        f->terms[i] = (fv_valid_term_t){FUZZ_VALID_D + i, 1};
        f->ranges[i].terms = &f->terms[i];
        f->ranges[i].n_terms = 1;
        f->ranges[i].bits = 4;
        strcpy(f->ranges[i].name, names[i]);
    }
    f->terms[3] = (fv_valid_term_t){FUZZ_VALID_D + 1, 1};
    f->terms[4] = (fv_valid_term_t){FUZZ_VALID_D + 2, 1};
    f->terms[5] = (fv_valid_term_t){FUZZ_VALID_D, -1};
    f->equal[0].terms = &f->terms[3];
    f->equal[0].n_terms = 3;
    strcpy(f->equal[0].name, "bin_sum");
    f->spec.dim = FUZZ_VALID_DIM;
    f->spec.norm_off = 0;
    f->spec.norm_len = FUZZ_VALID_D;
    f->spec.norm_sq = 4;
    f->spec.ranges = f->ranges;
    f->spec.n_ranges = 3;
    f->spec.equal = f->equal;
    f->spec.n_equal = 1;
    uint8_t pk[FV_SIGN_PK_BYTES];
    memset(pk, 0x5a, sizeof pk);
    fv_valid_context("fuzz", 1, 1, 0, pk, f->ctx);
    memset(f->sum_id, 0x77, sizeof f->sum_id);
}

#endif
