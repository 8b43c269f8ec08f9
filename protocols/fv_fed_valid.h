/* fv_fed_valid.h - a federated round's vector as an fv_valid statement (issue 16): what an
 * agent proves about its round input, the integers it proves it on, and how the
 * coordinator reads the validated sum back into the fv_fed_result_t that fv_fed_decode
 * gives for the mod-2^32 path.
 *
 * THE VECTOR w (int64, D = l->plain_dim words: the plain vector's layout, fv_fed.h, with
 * integers in place of floats). For a round layout l of P parameters, m models, B
 * histogram bins and K classes:
 *   [P update: z_j = stochastic round(a_j / step)] [n_train] [m*B hist pos] [m*B hist neg]
 *   [X = round(loss_sum * 2^32)] [n_val] [K class rows] [m*K class right]
 * a = w_k * delta_k (w_k = n_train / n_ref) is the weighted update block the agent has
 * already clipped to the job's max_update_norm B (fv_fed_update_clip); step = B / 2^14
 * (FV_FED_VALID_NORM_BITS), so ||a / step|| <= 2^14. Stochastic rounding: z_j = floor(x_j)
 * + [u_j < x_j - floor(x_j)], x_j = a_j / step in double, u_j a 24-bit uniform drawn as
 * fv_fed_encode draws its variates (strips of 1024, 4 bytes per parameter). Counts are
 * the non-negative integers themselves; the loss sum is ONE word X (not the 8 limbs of the
 * exact encoding): the same integer round(loss * 2^32) the exact encoding carries.
 * Unlike fv_fed_encode, no element is clipped to secagg.clip: the norm bound is the bound
 * (it implies |a_j| <= B).
 *
 * THE STATEMENT (fv_valid_spec_t; every range's and equality's name is what the decision,
 * `job show` and the audit log print when that check fails):
 *   norm block   w[0 .. P) = z, norm_sq = (2^14 + ceil(sqrt(P)))^2: stochastic rounding
 *                moves each coordinate by less than 1, hence the norm by less than
 *                sqrt(P).
 *   non-negative the histogram bins (each the sum of four squares, fv_valid.h: 4 witness
 *                values per bin instead of 17 range bits), their total at most m * 65537;
 *                "nonneg" names a failure. Each bin is then at most n_val (its model's
 *                bins sum to n_val).
 *   ranges       (each in [0, 2^b)):
 *                  "n_train", "n_val", "class_n[2]", "class_right[m0][2]"   b = 17 (65537 < 2^17)
 *                  "loss>=0"                X                      b = 53
 *                  "loss<=17*n_val"         17 * 2^32 * n_val - X  b = 53
 *                  "right<=rows[m0][2]"     class_n[k] - class_right[m][k]   b = 17
 *   equalities   binary: per model, "hist_sum=n_val[m0]": sum of that model's positive
 *                and negative bins - n_val = 0; multi-class: "class_sum=n_val": sum of
 *                class rows - n_val = 0.
 * Proved are bounds, not truth: a bank can still send well-formed lies (README).
 *
 * THE SUM. fv_valid_aggregate gives sum_k w_k as centred integers (|value| < p/2, p =
 * 2^61 - 1). Each X < 2^53, so the sum of up to FV_FED_VALID_MAX_SUMMANDS = 127 provers is
 * below 127 * 2^53 < 2^60 < p/2: exact. fv_fed_valid_decode turns the metric sums into the
 * uint32 words fv_fed_decode reads (counts as they are; the loss sum as the 8 limbs of X's
 * sum, which recombine to exactly the value the exact encoding's limb sums give) and lets
 * fv_fed_decode do the metrics; the update it decodes itself: delta_mean_j = sum z_j * step
 * / weight_sum, weight_sum = n_train / n_ref as fv_fed_decode computes it.
 * Quantization bound: |delta_mean_j - sum a_j / weight_sum| < n * step / weight_sum plus
 * one float rounding (2^-24 relative) of the result.
 */
#ifndef FV_FED_VALID_H
#define FV_FED_VALID_H

#include <stddef.h>
#include <stdint.h>

#include "fv_crypto.h"
#include "fv_error.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_valid.h"

#define FV_FED_VALID_NORM_BITS 14      /* step = max_update_norm / 2^14 */
#define FV_FED_VALID_COUNT_BITS 17     /* FV_FED_RAW_MAX = 65537 < 2^17 */
#define FV_FED_VALID_LOSS_BITS 53      /* 17 * 2^32 * 65537 < 2^53 */
#define FV_FED_VALID_MAX_SUMMANDS 127u /* 127 * 2^53 < p / 2: the loss sum cannot wrap */

/* One round's statement and the arrays it points into. Owned; read-only after init. */
typedef struct fv_fed_valid {
    fv_fed_layout_t fed; /* the round layout (copy) */
    double max_norm;     /* B: the job's max_update_norm */
    double step;         /* B / 2^14: one unit of z */
    /* offsets in w (D = spec.dim = fed.plain_dim words) */
    size_t off_n_train, off_hist_pos, off_hist_neg, off_loss, off_n_val, off_class_n,
        off_class_right;
    fv_valid_spec_t spec; /* ranges, equal point into the arrays below */
    fv_valid_affine_t *ranges, *equal;
    fv_valid_term_t *terms;
    uint32_t *nonneg; /* the histogram bins' indices */
} fv_fed_valid_t;

/* The statement for layout l (fv_fed_round_layout) of job. FV_EINVAL naming
 * "max_update_norm" for a job without one (a validated round needs the norm bound), or a
 * layout whose vector or number of checks exceeds fv_valid's caps (FV_VALID_MAX_DIM,
 * FV_VALID_MAX_RANGES); FV_ENOMEM. *ret written only on success; fv_fed_valid_close frees.
 */
int fv_fed_valid_init(const fv_fed_layout_t *l, const fv_job_t *job, fv_fed_valid_t *ret,
                      fv_diag_t *d);
void fv_fed_valid_close(fv_fed_valid_t *v); /* NULL-safe; zeroes */

/* The honest agent's w (v->spec.dim words; undefined on error) from in (as fv_fed_encode
 * reads it: the update a = n_train / n_ref * delta). The caller has clipped delta to the
 * norm (fv_fed_update_clip): a norm over max_update_norm by more than the float
 * roundings of that clip (relative 2^-20; absorbed by scaling in double) is FV_ERANGE.
 * FV_EINVAL for missing arguments or a bad n_ref, FV_ENUMERIC for NaN or infinity (delta
 * or loss), FV_EOVERFLOW for a count above FV_FED_RAW_MAX, FV_ERANGE for a negative loss
 * or one above 17 per validation row. The rng is not touched on error. The statement's equalities
 * (histograms summing to n_val) are left to fv_valid_prove, which refuses a false statement naming
 * the check. */
int fv_fed_valid_encode(const fv_fed_valid_t *v, const fv_fed_local_t *in, fv_rand_t *rng,
                        int64_t *w, fv_diag_t *d);

/* The round result from sum (v->spec.dim centred integers: fv_valid_aggregate's out) of
 * n_summands accepted provers, as fv_fed_decode gives it for the uint32 path (counts and
 * loss identical; the update within the bound above). n_ref: the job's total training
 * rows, as for fv_fed_decode (it is not part of the job spec). FV_EEMPTY (no summand or no
 * training rows), FV_EOVERFLOW (n_summands > FV_FED_VALID_MAX_SUMMANDS), FV_EPEER naming
 * the word when a summed count or the loss is negative or too large for the uint32 words
 * (impossible for accepted provers), FV_EINVAL for bad arguments. *ret written only on
 * success (fv_fed_result_close frees it). The caller then runs fv_fed_sum_check (words
 * NULL): note its norm bound has no quantization slack for words NULL, while a validated
 * block may exceed B by sqrt(P) * step. */
int fv_fed_valid_decode(const fv_fed_valid_t *v, const int64_t *sum, uint32_t n_summands,
                        double n_ref, fv_fed_result_t *ret, fv_diag_t *d);

#endif
