/* fv_mlp.h - logistic regression and multi-layer perceptrons (ReLU), float32.
 *
 * An architecture is dims = [n_in, hidden_1, ..., hidden_H, n_out]; logistic
 * regression is H = 0. Binary tasks have n_out = 1 (one logit, sigmoid); multi-class
 * tasks have n_out = K >= 2 (softmax). All parameters live in one contiguous float
 * vector (so optimizers, secure aggregation and the model file see one array):
 *   for layer l = 0..H:  W_l  dims[l] x dims[l+1], row-major (input-major: the forward
 *                             pass is Z = X W_l + b_l, a plain gemm)
 *                        b_l  dims[l+1]
 * Losses are means over the batch (weights per row optional):
 *   binary      -[pos_weight * y log p + (1 - y) log(1 - p)]     (from the logit, stable)
 *   multi-class -log softmax(z)_y
 * The regularizers (L2, proximal) live in the optimizer, not here.
 *
 * Thread safety: a model may be read by many threads at once, each with its own
 * workspace; nothing here is global.
 */
#ifndef FV_MLP_H
#define FV_MLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

#define FV_MLP_MAX_HIDDEN 8
#define FV_MLP_MAX_WIDTH 65536 /* per layer; checked by fv_mlp_new and the model decoder */

typedef struct fv_mlp_arch {
    size_t n_in;
    size_t n_hidden; /* number of hidden layers, 0 = logistic regression */
    size_t hidden[FV_MLP_MAX_HIDDEN];
    size_t n_out; /* 1 = binary (sigmoid), >= 2 = multi-class (softmax) */
} fv_mlp_arch_t;

typedef struct fv_mlp fv_mlp_t;
typedef struct fv_mlp_ws fv_mlp_ws_t;

/* "logreg" or "mlp:H1,H2,..." (1..FV_MLP_MAX_HIDDEN widths, each 1..FV_MLP_MAX_WIDTH).
 * n_classes is 2 for binary (-> n_out 1) or K for multi-class. */
int fv_mlp_parse_arch(const char *spec, size_t n_in, size_t n_classes, fv_mlp_arch_t *ret,
                      fv_diag_t *d);
/* Writes the spec back ("logreg", "mlp:512,256") into buf. Returns buf. */
const char *fv_mlp_arch_string(const fv_mlp_arch_t *a, char *buf, size_t len);

/* Parameters zeroed. */
int fv_mlp_new(const fv_mlp_arch_t *arch, fv_mlp_t **ret);
void fv_mlp_free(fv_mlp_t *m);
int fv_mlp_clone(const fv_mlp_t *m, fv_mlp_t **ret);
/* He-normal weights for ReLU layers, Glorot-uniform for the output layer, zero biases;
 * logistic regression starts at zero. Deterministic for a seed. */
void fv_mlp_init(fv_mlp_t *m, uint64_t seed);

const fv_mlp_arch_t *fv_mlp_arch(const fv_mlp_t *m);
size_t fv_mlp_n_params(const fv_mlp_t *m);
float *fv_mlp_params(fv_mlp_t *m);
const float *fv_mlp_params_const(const fv_mlp_t *m);
/* decay_mask[i] = 1 for weights, 0 for biases (L2 applies to weights only).
 * Borrowed, n_params entries, lives as long as the model. */
const uint8_t *fv_mlp_decay_mask(const fv_mlp_t *m);

/* Scratch space for batches of up to max_batch rows. One per thread. */
int fv_mlp_ws_new(const fv_mlp_t *m, size_t max_batch, fv_mlp_ws_t **ret);
void fv_mlp_ws_free(fv_mlp_ws_t *ws);

/* x: n x n_in. ret_prob: n x n_out probabilities (binary: P(positive); multi-class: row
 * of K). n <= the workspace's max_batch, else FV_EINVAL. */
int fv_mlp_predict(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *ret_prob);
/* Same, returning raw logits (n x n_out) instead of probabilities. */
int fv_mlp_logits(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *ret_logits);

/* Mean loss over the batch and its gradient w.r.t. all parameters (grad: n_params, fully
 * overwritten). y: class indices (binary: 0/1). row_w: per-row weights or NULL (all 1).
 * pos_weight: binary only, multiplies the positive term (1 = plain BCE).
 * Returns FV_ENUMERIC if the loss is not finite. */
int fv_mlp_loss_grad(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                     const float *row_w, size_t n, float pos_weight, float *grad, double *ret_loss);

/* Mean loss only (no gradient), same definition. */
int fv_mlp_loss(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                const float *row_w, size_t n, float pos_weight, double *ret_loss);

/* Knowledge distillation (a student learns from a teacher's logits as well as labels).
 * With u = z / T (student) and v = z_t / T (teacher), per row:
 *   L_i = alpha * hard_i + (1 - alpha) * T^2 * KL(q || p)
 *     hard_i  the loss above (binary BCE with pos_weight, or softmax cross-entropy)
 *     binary       q = sigmoid(v), p = sigmoid(u), KL between the two Bernoullis
 *     multi-class  q = softmax(v), p = softmax(u)
 *   dL_i/dz = alpha * dhard_i/dz + (1 - alpha) * T * (p - q)
 * (derivation in mlp.c). The T^2 factor keeps the soft term's gradient on the scale of
 * the hard term's as T changes. alpha = 1 is the plain loss bit for bit; alpha = 0 is
 * pure distillation (labels are still checked but do not count). */
typedef struct fv_distill_cfg {
    double alpha;       /* weight of the hard-label loss, 0..1 */
    double temperature; /* T > 0, finite */
} fv_distill_cfg_t;

/* alpha 0.5, temperature 2. */
void fv_distill_cfg_default(fv_distill_cfg_t *c);
/* FV_EINVAL with a sentence naming the field when out of range. */
int fv_distill_cfg_check(const fv_distill_cfg_t *c, fv_diag_t *d);

/* fv_mlp_loss_grad with the distillation loss. t_logits: the teacher's logits for the
 * same rows, n x n_out, borrowed; each must be finite (else FV_EINVAL). row_w and
 * pos_weight as in fv_mlp_loss_grad (row_w weighs the whole per-row loss, pos_weight
 * only the hard term). */
int fv_mlp_distill_loss_grad(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                             const float *t_logits, const float *row_w, size_t n, float pos_weight,
                             const fv_distill_cfg_t *dc, float *grad, double *ret_loss);
/* Mean distillation loss only, same definition. */
int fv_mlp_distill_loss(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                        const float *t_logits, const float *row_w, size_t n, float pos_weight,
                        const fv_distill_cfg_t *dc, double *ret_loss);

/* DP-SGD's gradient: the SUM over the n rows of each row's gradient of its own loss (the
 * per-row loss above, with pos_weight; with dc != NULL the distillation loss below on
 * t_logits, n x n_out), each scaled to L2 norm at most clip (all parameters of the row's
 * gradient together: min(1, clip / norm)), written into grad_sum (n_params, overwritten).
 * Per-row norms without per-row gradients: for each dense layer the row's weight gradient
 * is the outer product of its input activation a and output delta g, so its squared norm
 * is |a|^2 |g|^2 (+ |g|^2 for the bias); the clipped sum is then one gemm per layer with
 * the deltas scaled row by row. *ret_loss_sum: the unclipped per-row losses summed (may be
 * NULL); *ret_n_clipped: rows whose norm exceeded clip (may be NULL). n <= the workspace's
 * max_batch (n = 0, an empty Poisson sample: zeros). FV_ENUMERIC if a loss or norm is not
 * finite. Implemented in mlp_dp.c. */
int fv_mlp_clipped_grad_sum(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                            const float *t_logits, const fv_distill_cfg_t *dc, size_t n,
                            float pos_weight, double clip, float *grad_sum, double *ret_loss_sum,
                            size_t *ret_n_clipped);

/* ---- post-training INT8 quantization of the weights (quant.c) ----
 *
 * For every layer, each output unit's row of weights (the d_in weights feeding unit j:
 * the strided column W_l[i * d_out + j], i = 0..d_in-1, of the layout above) gets one
 * symmetric float32 scale s, about max|w| / 127; q = round half to even of w / s, in
 * [-127, 127] (never -128); a row of zeros has s = +0 and q = 0. Biases stay float32.
 * The scale is max|w| / 127 rounded to 17 significant bits (ties to even), so that
 * (float)q * s is exact: that makes quantization idempotent and keeps the error bound
 * exact. Rows whose max|w| / 127 is below 2^-126 (subnormal weights) use the smallest
 * power of two >= max|w| / 127 instead (at least 2^-149). quant.c has the argument.
 * Guarantees: |w - (float)q * s| <= s / 2 for every weight; deterministic and
 * platform-independent (plain IEEE 754 operations, nothing for FMA contraction to fuse),
 * so an agent and the coordinator quantizing the same parameters get the same bits;
 * quantizing a quantized network returns it bit for bit. */
#define FV_MLP_INT8_MAX 127

/* One row: w[i * stride], i = 0..n-1 (borrowed) -> ret_q[i] (n contiguous entries,
 * caller's) and *ret_scale. FV_ENUMERIC if a weight is not finite (nothing written to
 * *ret_scale then); FV_EINVAL on NULL pointers with n > 0 or stride 0. n = 0: scale 0. */
int fv_mlp_quantize_int8_row(const float *w, size_t n, size_t stride, int8_t *ret_q,
                             float *ret_scale);

/* *ret (caller frees): a new network of m's architecture whose weights are the
 * dequantized (float)q * s and whose biases are m's, bit for bit. FV_EINVAL (NULL),
 * FV_ENOMEM, FV_ENUMERIC (a weight of m is NaN or infinite). */
int fv_mlp_quantize_int8(const fv_mlp_t *m, fv_mlp_t **ret);

/* Floating-point operations of one forward pass over one row (2 * sum of in*out), and
 * of one training step per row (forward + backward, about 3x forward). For benchmarks. */
double fv_mlp_flops_forward(const fv_mlp_arch_t *a);
double fv_mlp_flops_train(const fv_mlp_arch_t *a);

#endif
