/* fv_explain.h - reason codes: per-column contributions to one row's logit.
 *
 * Input is one row after preprocessing (fv_preproc_transform: standardized numerics,
 * one-hot categoricals). Contributions are computed per feature and summed per ORIGINAL
 * schema column (a categorical column's one-hot features, its "<other>" feature
 * included, add up to one contribution). The output explained is the logit of a binary
 * model, or one class's logit of a multi-class model (by default the predicted class).
 *
 * Two methods, chosen by the architecture:
 *
 *   linear (logistic regression, no hidden layer) - exact:
 *       contribution of feature j = w_j * x_j,  bias = b
 *       bias + sum of contributions == logit.
 *     Computed in double from the float32 weights and inputs, so against the logit
 *     computed here (result.logit) the residual is double rounding (< 1e-12 for any
 *     sane model). Against the model's own float32 logit (fv_mlp_logits, an sgemm) the
 *     gap is float32 summation error, bounded by (n_in + 1) * 2^-24 * (|b| + sum_j
 *     |w_j x_j|): about 1e-6 for a few dozen standardized features.
 *
 *   integrated gradients (MLP; Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep
 *   Networks", ICML 2017) from the baseline x0 = 0 in the preprocessed space:
 *       contribution of feature j = x_j * (1/m) sum_{k=0}^{m-1} dF/dx_j((k + 1/2)/m * x)
 *       bias = F(x0)
 *     with F the explained logit and m steps (midpoint Riemann sum). The zero baseline
 *     means: every numeric column at its training mean (0 after standardization, the
 *     value a missing cell is imputed with) and every categorical column with no
 *     category set (all its one-hot features 0, the encoding of a missing cell). So
 *     "bias" is the logit of an average row with no categories, and a column's
 *     contribution is how much the row's value moves the logit away from that.
 *     Completeness holds up to the Riemann error: bias + sum of contributions ==
 *     logit + result.residual; |residual| shrinks as 1/m^2 between ReLU kinks and as
 *     1/m across them. It is reported per row, never hidden.
 *     Gradients: fv_mlp.h has no input gradient (its backward pass stops at the first
 *     layer's weights), so this module runs its own forward and backward pass per
 *     point, in double, from the parameter vector (layout in fv_mlp.h). ReLU'(0) := 0.
 *     Cost: about 3 * m forward passes of one row.
 *
 * Thread safety: an explainer holds scratch space; one per thread. It borrows the
 * network, the preprocessing and the schema, which must outlive it and not change.
 */
#ifndef FV_EXPLAIN_H
#define FV_EXPLAIN_H

#include <stddef.h>

#include "fv_error.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_schema.h"

#define FV_EXPLAIN_DEFAULT_STEPS 32
#define FV_EXPLAIN_MAX_STEPS 4096
#define FV_EXPLAIN_PREDICTED ((size_t)-1) /* explain the class with the largest logit */

typedef enum {
    FV_EXPLAIN_LINEAR = 0,               /* exact, logistic regression */
    FV_EXPLAIN_INTEGRATED_GRADIENTS = 1, /* MLP */
} fv_explain_method_t;

typedef struct fv_explain fv_explain_t;

typedef struct fv_explain_result {
    size_t out;      /* output explained: 0 for binary, a class index for multi-class */
    double logit;    /* that output's logit at x, computed here in double */
    double bias;     /* linear: the output bias b; integrated gradients: logit at x0 */
    double residual; /* bias + sum(contributions) - logit (0 up to rounding for linear) */
} fv_explain_result_t;

/* n_steps: integrated-gradients steps, 0 = FV_EXPLAIN_DEFAULT_STEPS, at most
 * FV_EXPLAIN_MAX_STEPS (ignored for linear models). FV_EINVAL if the network's input
 * width is not the preprocessing's feature count or the schema's one-hot layout. */
int fv_explain_new(const fv_mlp_t *mlp, const fv_preproc_t *p, const fv_schema_t *s, size_t n_steps,
                   fv_explain_t **ret);
void fv_explain_free(fv_explain_t *e);

fv_explain_method_t fv_explain_method(const fv_explain_t *e);
/* "linear" or "integrated-gradients". */
const char *fv_explain_method_name(const fv_explain_t *e);
/* Schema columns that have features (numeric and categorical): the most reasons a row
 * can get. */
size_t fv_explain_n_columns(const fv_explain_t *e);

/* x: one preprocessed row (n_in floats, borrowed, finite). out: output index, or
 * FV_EXPLAIN_PREDICTED. ret_contrib: one double per schema column (0 for ignored and
 * target columns). FV_EINVAL for a bad argument or a non-finite x. */
int fv_explain_row(fv_explain_t *e, const float *x, size_t out, double *ret_contrib,
                   fv_explain_result_t *ret);

/* Gradient of output out's logit with respect to the input, at x (n_in doubles), and the
 * logit there. The building block of integrated gradients, exposed for tests. */
int fv_explain_gradient(fv_explain_t *e, const double *x, size_t out, double *ret_grad,
                        double *ret_logit);

/* The min(n_top, fv_explain_n_columns) feature columns with the largest |contribution|,
 * largest first (ties: lower column index first), into ret_cols. Returns their number. */
size_t fv_explain_top(const fv_explain_t *e, const double *contrib, size_t n_top, size_t *ret_cols);

#endif
