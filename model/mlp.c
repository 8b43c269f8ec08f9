/* mlp.c - logistic regression and ReLU multi-layer perceptrons, float32, batch-at-a-time.
 *
 * Parameters. One contiguous float vector, layer after layer (fv_mlp.h): W_l is
 * dims[l] x dims[l+1] row-major, then b_l (dims[l+1]). w_off[]/b_off[] cache the offsets,
 * and decay_mask[] (1 on W entries, 0 on b entries) is built once in fv_mlp_new. The
 * model owns both arrays; the architecture never changes after fv_mlp_new.
 *
 * Forward pass over a batch of n rows (A_0 = X, L = n_hidden + 1 layers):
 *     Z_l = A_l W_l + b_l           one sgemm per layer, then a bias pass
 *     A_{l+1} = relu(Z_l)           hidden layers; Z_{L-1} are the logits
 * Backward pass, D_{L-1} = dLoss/dZ_{L-1} (already carrying 1/n and the row weights):
 *     dW_l = A_l^T D_l              one sgemm (trans_a)
 *     db_l = colsum(D_l)            fv_vec_col_sum (double, rows in order)
 *     D_{l-1} = (D_l W_l^T) * relu'(A_l)   one sgemm (trans_b); never done for l = 0,
 *                                   the gradient w.r.t. the input is not needed
 * In training there is no per-row loop around a dot product anywhere: all O(n * width^2)
 * work is in fv_gemm. Per-row loops exist only for the loss, which is O(n * n_out).
 * Scoring (fv_mlp_logits, fv_mlp_predict) runs the same forward pass through
 * fv__mlp_forward_score, which sends small layers (a few rows, or 1 or 4 outputs) to
 * mlp_dense.c's direct kernels instead, bias and ReLU fused: at batch 1 cblas_sgemm's
 * per-call work was most of a small network's cost. The results agree with the gemm
 * path's to rounding (mlp_dense.c), not bit for bit.
 *
 * Loss, from the logits z, per row, in double (n * n_out work, so precision is free):
 *   binary       softplus(t) = max(t, 0) + log1p(exp(-|t|))  (= -log sigmoid(-t))
 *                L_i = pos_weight * y softplus(-z) + (1 - y) softplus(z)
 *                dL_i/dz = y ? -pos_weight * sigmoid(-z) : sigmoid(z)
 *   multi-class  L_i = logsumexp(z) - z_y;  dL_i/dz_j = softmax(z)_j - [j == y]
 *   batch loss   (1/n) * sum_i w_i L_i.
 *
 * Distillation loss (fv_mlp_distill_loss_grad), per row, from the student's logits z and
 * the teacher's logits z_t at temperature T, with u = z / T and v = z_t / T:
 *   L_i = alpha * H_i + (1 - alpha) * T^2 * KL_i,   H_i the loss above.
 *   binary: q = sigmoid(v), p = sigmoid(u), KL_i = q log(q/p) + (1-q) log((1-q)/(1-p)).
 *     With log sigmoid(t) = -softplus(-t), log(1 - sigmoid(t)) = -softplus(t) and
 *     softplus(-t) = softplus(t) - t, this is
 *       KL_i = softplus(u) - softplus(v) - q (u - v)
 *     which needs no log of a probability (stable for any logits; in double it can come
 *     out a few ulps below 0 when p = q, which is left as is: clamping would put a kink
 *     in the loss). Differentiating, d softplus(u)/du = sigmoid(u) = p, so
 *       dKL_i/du = p - q,  du/dz = 1/T,  d(T^2 KL_i)/dz = T (p - q)
 *                  = T (sigmoid(z/T) - sigmoid(z_t/T)).
 *   multi-class: q = softmax(v), log p_j = u_j - lse(u),
 *       KL_i = sum_j q_j (log q_j - log p_j) = sum_j q_j ((v_j - lse(v)) - (u_j - lse(u)))
 *     and d lse(u)/du_j = p_j, sum_j q_j = 1 give dKL_i/du_j = p_j - q_j, so again
 *       d(T^2 KL_i)/dz_j = T (p_j - q_j).
 *   Altogether dL_i/dz = alpha dH_i/dz + (1 - alpha) T (p - q): at T = 1, alpha = 0 the
 *   student regresses onto the teacher's probabilities exactly as plain training
 *   regresses onto the labels. pos_weight scales H_i only (the teacher's soft targets
 *   already carry whatever class balance the teacher learned). With alpha == 1 the soft
 *   term is not computed at all, so the result is the plain loss bit for bit (a
 *   0 * KL term could otherwise turn a -0 gradient into +0); the teacher logits are
 *   still checked.
 * Decision (the header only says "means over the batch, weights per row optional"): the
 * weighted sum is divided by n, not by sum(w). That keeps the per-batch gradient an
 * unbiased estimate of the weighted empirical risk (1/N) sum w_i L_i, matches the way
 * pos_weight is folded in, and equals the plain mean when row_w is NULL. Row weights
 * must be finite and >= 0; pos_weight (binary only) finite and > 0; labels in range
 * (binary 0/1, multi-class 0..K-1); anything else is FV_EINVAL. n == 0 is FV_EINVAL for
 * the loss functions (a mean over nothing is undefined) but a no-op for predict/logits.
 *
 * Workspace. Allocated once (one block) for up to max_batch rows: every hidden
 * activation A_1..A_{L-1} (kept for the backward pass), the logits, and two ping-pong
 * delta buffers of max_batch x (widest layer output). It records the dims it was made
 * for and may serve any model with the same architecture (a clone, the best-epoch copy);
 * a mismatch is FV_EINVAL. One workspace per thread; the model itself is only read by
 * predict/logits/loss, so many threads may share one model. DP-SGD's clipped gradient
 * sum (mlp_dp.c) keeps every layer's deltas: it allocates that block in the workspace on
 * its first call (fv_mlp_ws_free frees it), so workspaces that never clip pay nothing.
 * The two structs and the forward pass and loss are in model-int.h for mlp_dp.c.
 *
 * Initialisation: He-normal (std sqrt(2 / fan_in)) for layers feeding a ReLU,
 * Glorot-uniform (+-sqrt(6 / (fan_in + fan_out))) for the output layer, zero biases;
 * logistic regression starts at zero (convex, nothing to break symmetry). Draws come from
 * one fv_rng seeded with the seed, in parameter order, so init is reproducible anywhere.
 */
#include "fv_mlp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_blas.h"
#include "fv_rng.h"
#include "fv_vec.h"
#include "model-int.h"

/* ---- architecture ---------------------------------------------------------------- */

/* dims[] of a valid architecture; returns the number of layers. */
static size_t arch_dims(const fv_mlp_arch_t *a, size_t *dims)
{
    dims[0] = a->n_in;
    for (size_t i = 0; i < a->n_hidden; i++)
        dims[i + 1] = a->hidden[i];
    dims[a->n_hidden + 1] = a->n_out;
    return a->n_hidden + 1;
}

static int arch_valid(const fv_mlp_arch_t *a)
{
    if (a == NULL || a->n_hidden > FV_MLP_MAX_HIDDEN)
        return 0;
    if (a->n_in < 1 || a->n_in > FV_MLP_MAX_WIDTH || a->n_out < 1 || a->n_out > FV_MLP_MAX_WIDTH)
        return 0;
    for (size_t i = 0; i < a->n_hidden; i++)
        if (a->hidden[i] < 1 || a->hidden[i] > FV_MLP_MAX_WIDTH)
            return 0;
    return 1;
}

int fv_mlp_parse_arch(const char *spec, size_t n_in, size_t n_classes, fv_mlp_arch_t *ret,
                      fv_diag_t *d)
{
    if (spec == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL,
                           "architecture: no spec given; expected 'logreg' "
                           "or 'mlp:H1,H2,...'");
    if (n_in < 1 || n_in > FV_MLP_MAX_WIDTH)
        return fv_diag_set(d, FV_EINVAL, "architecture '%.80s': %zu input features; need 1..%d",
                           spec, n_in, FV_MLP_MAX_WIDTH);
    if (n_classes < 2 || n_classes > FV_MLP_MAX_WIDTH)
        return fv_diag_set(d, FV_EINVAL,
                           "architecture '%.80s': %zu classes; need 2..%d (2 = binary)", spec,
                           n_classes, FV_MLP_MAX_WIDTH);

    fv_mlp_arch_t a;
    memset(&a, 0, sizeof a);
    a.n_in = n_in;
    a.n_out = n_classes == 2 ? 1 : n_classes;

    if (strcmp(spec, "logreg") == 0) {
        *ret = a;
        return 0;
    }
    if (strncmp(spec, "mlp:", 4) != 0)
        return fv_diag_set(d, FV_EINVAL,
                           "architecture '%.80s': unknown; expected 'logreg' or "
                           "'mlp:H1,H2,...' (e.g. 'mlp:64,32')",
                           spec);

    const char *p = spec + 4;
    if (*p == '\0')
        return fv_diag_set(d, FV_EINVAL,
                           "architecture '%.80s': no hidden layer widths after 'mlp:'; write "
                           "e.g. 'mlp:64,32' (or 'logreg' for no hidden layer)",
                           spec);
    for (;;) {
        if (a.n_hidden == FV_MLP_MAX_HIDDEN)
            return fv_diag_set(d, FV_EINVAL, "architecture '%.80s': more than %d hidden layers",
                               spec, FV_MLP_MAX_HIDDEN);
        size_t layer = a.n_hidden + 1;
        if (*p == '\0')
            return fv_diag_set(d, FV_EINVAL,
                               "architecture '%.80s': hidden layer %zu: missing width after "
                               "','",
                               spec, layer);
        if (*p < '0' || *p > '9')
            return fv_diag_set(d, FV_EINVAL,
                               "architecture '%.80s': hidden layer %zu: expected a width "
                               "(digits), got '%c'",
                               spec, layer, *p);
        /* Accumulate with a cap so arbitrarily long digit strings cannot overflow. */
        size_t v = 0;
        int too_big = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            v = v * 10 + (size_t)(*p - '0');
            if (v > FV_MLP_MAX_WIDTH) {
                too_big = 1;
                v = FV_MLP_MAX_WIDTH + 1;
            }
        }
        if (v == 0 || too_big)
            return fv_diag_set(d, FV_EINVAL,
                               "architecture '%.80s': hidden layer %zu: width %s; expected "
                               "1..%d units",
                               spec, layer, too_big ? "above the limit" : "0", FV_MLP_MAX_WIDTH);
        a.hidden[a.n_hidden++] = v;
        if (*p == '\0')
            break;
        if (*p != ',')
            return fv_diag_set(d, FV_EINVAL,
                               "architecture '%.80s': hidden layer %zu: unexpected '%c' after "
                               "the width; separate widths with ','",
                               spec, layer, *p);
        p++;
    }
    *ret = a;
    return 0;
}

const char *fv_mlp_arch_string(const fv_mlp_arch_t *a, char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return buf;
    buf[0] = '\0';
    if (a == NULL)
        return buf;
    if (a->n_hidden == 0) {
        snprintf(buf, len, "logreg");
        return buf;
    }
    size_t n_hidden = a->n_hidden < FV_MLP_MAX_HIDDEN ? a->n_hidden : FV_MLP_MAX_HIDDEN;
    size_t pos = (size_t)snprintf(buf, len, "mlp:");
    for (size_t i = 0; i < n_hidden && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%zu", i ? "," : "", a->hidden[i]);
    return buf;
}

double fv_mlp_flops_forward(const fv_mlp_arch_t *a)
{
    size_t dims[FV_MLP_MAX_LAYERS + 1];
    if (!arch_valid(a))
        return 0.0;
    size_t n_layers = arch_dims(a, dims);
    double f = 0.0;
    for (size_t l = 0; l < n_layers; l++)
        f += 2.0 * (double)dims[l] * (double)dims[l + 1];
    return f;
}

/* Exact gemm flops of one training row: forward (X W), dW (A^T D) for every layer, and
 * dX (D W^T) for every layer but the first (skipped, see the top comment). So it is
 * 3x forward minus 2 * n_in * width_1. Element-wise work (bias, ReLU, loss, optimizer)
 * is O(width), not O(width^2), and is not counted. */
double fv_mlp_flops_train(const fv_mlp_arch_t *a)
{
    size_t dims[FV_MLP_MAX_LAYERS + 1];
    if (!arch_valid(a))
        return 0.0;
    arch_dims(a, dims);
    return 3.0 * fv_mlp_flops_forward(a) - 2.0 * (double)dims[0] * (double)dims[1];
}

/* ---- model ----------------------------------------------------------------------- */

int fv_mlp_new(const fv_mlp_arch_t *arch, fv_mlp_t **ret)
{
    if (ret == NULL || !arch_valid(arch))
        return FV_EINVAL;

    fv_mlp_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return FV_ENOMEM;
    m->arch = *arch;
    /* Unused hidden[] slots are zeroed so two equal architectures compare equal. */
    for (size_t i = arch->n_hidden; i < FV_MLP_MAX_HIDDEN; i++)
        m->arch.hidden[i] = 0;
    m->n_layers = arch_dims(arch, m->dims);

    size_t off = 0;
    for (size_t l = 0; l < m->n_layers; l++) {
        size_t nw, nwb;
        m->w_off[l] = off;
        if (__builtin_mul_overflow(m->dims[l], m->dims[l + 1], &nw) ||
            __builtin_add_overflow(nw, m->dims[l + 1], &nwb) ||
            __builtin_add_overflow(off, nwb, &off)) {
            free(m);
            return FV_ENOMEM;
        }
        m->b_off[l] = m->w_off[l] + nw;
    }
    m->n_params = off;

    m->params = calloc(m->n_params, sizeof *m->params);
    m->decay_mask = malloc(m->n_params);
    if (m->params == NULL || m->decay_mask == NULL) {
        fv_mlp_free(m);
        return FV_ENOMEM;
    }
    for (size_t l = 0; l < m->n_layers; l++) {
        memset(m->decay_mask + m->w_off[l], 1, m->b_off[l] - m->w_off[l]);
        memset(m->decay_mask + m->b_off[l], 0, m->dims[l + 1]);
    }
    *ret = m;
    return 0;
}

void fv_mlp_free(fv_mlp_t *m)
{
    if (m == NULL)
        return;
    free(m->params);
    free(m->decay_mask);
    free(m);
}

int fv_mlp_clone(const fv_mlp_t *m, fv_mlp_t **ret)
{
    if (m == NULL || ret == NULL)
        return FV_EINVAL;
    fv_mlp_t *c = NULL;
    int r = fv_mlp_new(&m->arch, &c);
    if (r != 0)
        return r;
    memcpy(c->params, m->params, m->n_params * sizeof *m->params);
    *ret = c;
    return 0;
}

void fv_mlp_init(fv_mlp_t *m, uint64_t seed)
{
    memset(m->params, 0, m->n_params * sizeof *m->params);
    if (m->arch.n_hidden == 0)
        return;
    fv_rng_t rng;
    fv_rng_seed(&rng, seed);
    for (size_t l = 0; l < m->n_layers; l++) {
        size_t fan_in = m->dims[l], fan_out = m->dims[l + 1];
        size_t nw = fan_in * fan_out;
        float *w = m->params + m->w_off[l];
        if (l + 1 < m->n_layers) {
            double sd = sqrt(2.0 / (double)fan_in);
            for (size_t i = 0; i < nw; i++)
                w[i] = (float)(sd * fv_rng_normal(&rng));
        } else {
            double lim = sqrt(6.0 / (double)(fan_in + fan_out));
            for (size_t i = 0; i < nw; i++)
                w[i] = (float)(lim * (2.0 * fv_rng_uniform(&rng) - 1.0));
        }
    }
}

const fv_mlp_arch_t *fv_mlp_arch(const fv_mlp_t *m)
{
    return &m->arch;
}

size_t fv_mlp_n_params(const fv_mlp_t *m)
{
    return m->n_params;
}

float *fv_mlp_params(fv_mlp_t *m)
{
    return m->params;
}

const float *fv_mlp_params_const(const fv_mlp_t *m)
{
    return m->params;
}

const uint8_t *fv_mlp_decay_mask(const fv_mlp_t *m)
{
    return m->decay_mask;
}

/* ---- workspace ------------------------------------------------------------------- */

int fv_mlp_ws_new(const fv_mlp_t *m, size_t max_batch, fv_mlp_ws_t **ret)
{
    if (m == NULL || ret == NULL || max_batch == 0)
        return FV_EINVAL;

    fv_mlp_ws_t *ws = calloc(1, sizeof *ws);
    if (ws == NULL)
        return FV_ENOMEM;
    ws->n_layers = m->n_layers;
    memcpy(ws->dims, m->dims, sizeof ws->dims);
    ws->max_batch = max_batch;

    /* Floats per row: hidden activations + logits + two deltas of the widest output. */
    size_t per_row = 0, widest = 0, total;
    for (size_t l = 1; l <= m->n_layers; l++) {
        per_row += m->dims[l];
        if (m->dims[l] > widest)
            widest = m->dims[l];
    }
    per_row += 2 * widest;
    if (__builtin_mul_overflow(per_row, max_batch, &total) || total > SIZE_MAX / sizeof(float)) {
        free(ws);
        return FV_ENOMEM;
    }
    ws->block = malloc(total * sizeof(float));
    if (ws->block == NULL) {
        free(ws);
        return FV_ENOMEM;
    }
    float *p = ws->block;
    for (size_t l = 1; l < m->n_layers; l++) {
        ws->act[l] = p;
        p += max_batch * m->dims[l];
    }
    ws->logits = p;
    p += max_batch * m->dims[m->n_layers];
    ws->delta[0] = p;
    p += max_batch * widest;
    ws->delta[1] = p;
    *ret = ws;
    return 0;
}

void fv_mlp_ws_free(fv_mlp_ws_t *ws)
{
    if (ws == NULL)
        return;
    free(ws->block);
    free(ws->dp_block);
    free(ws);
}

/* The workspace was made for this architecture and holds n rows. */
int fv__mlp_ws_fits(const fv_mlp_t *m, const fv_mlp_ws_t *ws, size_t n)
{
    if (ws->n_layers != m->n_layers || n > ws->max_batch)
        return 0;
    for (size_t l = 0; l <= m->n_layers; l++) /* a few words: no memcmp call per score */
        if (ws->dims[l] != m->dims[l])
            return 0;
    return 1;
}

/* ---- forward, loss, backward ----------------------------------------------------- */

/* Forward pass of n rows; the logits go to out (n x n_out), hidden activations stay in
 * the workspace for the backward pass. */
void fv__mlp_forward(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *out)
{
    const float *a = x;
    for (size_t l = 0; l < m->n_layers; l++) {
        size_t in = m->dims[l], o = m->dims[l + 1];
        int last = l + 1 == m->n_layers;
        float *z = last ? out : ws->act[l + 1];
        fv_gemm(false, false, n, o, in, 1.0f, a, in, m->params + m->w_off[l], o, 0.0f, z, o);
        fv_vec_add_bias_rows(n, o, m->params + m->b_off[l], z);
        if (!last)
            fv_vec_relu(n * o, z);
        a = z;
    }
}

/* log(1 + exp(t)) without overflow or loss of precision for large |t|. */
static double softplus(double t)
{
    return (t > 0.0 ? t : 0.0) + log1p(exp(-fabs(t)));
}

static double sigmoid(double t)
{
    if (t >= 0.0)
        return 1.0 / (1.0 + exp(-t));
    double e = exp(t);
    return e / (1.0 + e);
}

/* logsumexp of z[0..k) / T, in double. */
static double lse_scaled(const float *z, size_t k, double T)
{
    double mx = (double)z[0] / T, sum = 0.0;
    for (size_t j = 1; j < k; j++)
        if ((double)z[j] / T > mx)
            mx = (double)z[j] / T;
    for (size_t j = 0; j < k; j++)
        sum += exp((double)z[j] / T - mx);
    return mx + log(sum);
}

void fv_distill_cfg_default(fv_distill_cfg_t *c)
{
    c->alpha = 0.5;
    c->temperature = 2.0;
}

int fv_distill_cfg_check(const fv_distill_cfg_t *c, fv_diag_t *d)
{
    if (c == NULL)
        return fv_diag_set(d, FV_EINVAL, "distillation: no configuration");
    if (!(c->alpha >= 0.0 && c->alpha <= 1.0))
        return fv_diag_set(d, FV_EINVAL, "distillation: alpha = %g: must be in [0, 1]", c->alpha);
    if (!(isfinite(c->temperature) && c->temperature > 0.0))
        return fv_diag_set(d, FV_EINVAL, "distillation: temperature = %g: must be finite and > 0",
                           c->temperature);
    return 0;
}

/* Binary soft term of one row (top comment): adds (1 - alpha) * T^2 * KL to *li and
 * (1 - alpha) * T * (p - q) to *g. */
static void distill_binary(double z, double zt, const fv_distill_cfg_t *dc, double *li, double *g)
{
    const double T = dc->temperature, soft_w = 1.0 - dc->alpha;
    double u = z / T, v = zt / T, q = sigmoid(v);
    double kl = softplus(u) - softplus(v) - q * (u - v);
    *li += soft_w * T * T * kl;
    *g += soft_w * T * (sigmoid(u) - q);
}

static int all_finite(const float *v, size_t n)
{
    for (size_t j = 0; j < n; j++)
        if (!isfinite(v[j]))
            return 0;
    return 1;
}

/* Mean loss of n rows from their logits z; if delta != NULL, also dLoss/dz (n x n_out,
 * already scaled by w_i / n). With t_logits (n x n_out) and dc, the distillation loss.
 * See the top comment for the definitions. */
int fv__mlp_loss_from_logits(const fv_mlp_t *m, const float *z, const int32_t *y,
                             const float *row_w, size_t n, float pos_weight, const float *t_logits,
                             const fv_distill_cfg_t *dc, float *delta, double *ret_loss)
{
    size_t k = m->arch.n_out;
    double inv_n = 1.0 / (double)n, sum = 0.0;
    /* With alpha == 1 (or no teacher) the hard term is used as is: 1.0 * x == x. */
    const double hard_w = t_logits != NULL ? dc->alpha : 1.0;

    if (k == 1 && !(isfinite(pos_weight) && pos_weight > 0.0f))
        return FV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        double w = 1.0;
        if (row_w != NULL) {
            if (!(isfinite(row_w[i]) && row_w[i] >= 0.0f))
                return FV_EINVAL;
            w = row_w[i];
        }
        if (k == 1) {
            if (y[i] != 0 && y[i] != 1)
                return FV_EINVAL;
            double t = z[i], li, g;
            if (y[i] == 1) {
                li = (double)pos_weight * softplus(-t);
                g = -(double)pos_weight * sigmoid(-t);
            } else {
                li = softplus(t);
                g = sigmoid(t);
            }
            if (t_logits != NULL) {
                if (!isfinite(t_logits[i]))
                    return FV_EINVAL;
                li *= hard_w;
                g *= hard_w;
                if (dc->alpha != 1.0)
                    distill_binary(t, t_logits[i], dc, &li, &g);
            }
            sum += w * li;
            if (delta != NULL)
                delta[i] = (float)(w * g * inv_n);
        } else {
            if (y[i] < 0 || (size_t)y[i] >= k)
                return FV_EINVAL;
            const float *zr = z + i * k;
            double mx = zr[0], s = 0.0;
            for (size_t j = 1; j < k; j++)
                if (zr[j] > mx)
                    mx = zr[j];
            for (size_t j = 0; j < k; j++)
                s += exp((double)zr[j] - mx);
            double lse = mx + log(s);
            double li = lse - (double)zr[y[i]];
            if (t_logits == NULL) {
                sum += w * li;
                if (delta != NULL) {
                    float *dr = delta + i * k;
                    for (size_t j = 0; j < k; j++) {
                        double g = exp((double)zr[j] - lse) - (j == (size_t)y[i] ? 1.0 : 0.0);
                        dr[j] = (float)(w * g * inv_n);
                    }
                }
                continue;
            }
            /* Distillation (top comment): q = softmax(z_t / T), p = softmax(z / T). */
            const float *zt = t_logits + i * k;
            if (!all_finite(zt, k))
                return FV_EINVAL;
            const double T = dc->temperature, soft_w = 1.0 - dc->alpha;
            const int soft = dc->alpha != 1.0;
            double lse_u = soft ? lse_scaled(zr, k, T) : 0.0;
            double lse_v = soft ? lse_scaled(zt, k, T) : 0.0, kl = 0.0;
            for (size_t j = 0; j < k; j++) {
                double g = hard_w * (exp((double)zr[j] - lse) - (j == (size_t)y[i] ? 1.0 : 0.0));
                if (soft) {
                    double log_p = (double)zr[j] / T - lse_u, log_q = (double)zt[j] / T - lse_v;
                    double q = exp(log_q);
                    kl += q * (log_q - log_p);
                    g += soft_w * T * (exp(log_p) - q);
                }
                if (delta != NULL)
                    delta[i * k + j] = (float)(w * g * inv_n);
            }
            li *= hard_w;
            if (soft)
                li += soft_w * T * T * kl;
            sum += w * li;
        }
    }
    double loss = sum * inv_n;
    if (!isfinite(loss))
        return FV_ENUMERIC;
    *ret_loss = loss;
    return 0;
}

/* Backward pass from ws->delta[0] = dLoss/dlogits; writes every entry of grad. */
static void backward(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *grad)
{
    float *dz = ws->delta[0], *dprev = ws->delta[1];
    for (size_t l = m->n_layers; l-- > 0;) {
        size_t in = m->dims[l], o = m->dims[l + 1];
        const float *a = l == 0 ? x : ws->act[l];
        /* dW_l = A_l^T D_l  (in x o) */
        fv_gemm(true, false, in, o, n, 1.0f, a, in, dz, o, 0.0f, grad + m->w_off[l], o);
        fv_vec_col_sum(n, o, dz, grad + m->b_off[l]);
        if (l == 0)
            break;
        /* D_{l-1} = (D_l W_l^T) * relu'(A_l)  (n x in) */
        fv_gemm(false, true, n, in, o, 1.0f, dz, o, m->params + m->w_off[l], o, 0.0f, dprev, in);
        fv_vec_relu_backward(n * in, ws->act[l], dprev);
        float *t = dz;
        dz = dprev;
        dprev = t;
    }
}

int fv_mlp_logits(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *ret_logits)
{
    if (m == NULL || ws == NULL || !fv__mlp_ws_fits(m, ws, n) ||
        (n > 0 && (x == NULL || ret_logits == NULL)))
        return FV_EINVAL;
    if (n == 0)
        return 0;
    fv__mlp_forward_score(m, ws, x, n, ret_logits);
    return 0;
}

int fv_mlp_predict(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *ret_prob)
{
    int r = fv_mlp_logits(m, ws, x, n, ret_prob);
    if (r != 0 || n == 0)
        return r;
    if (m->arch.n_out == 1)
        fv_vec_sigmoid(n, ret_prob, ret_prob);
    else
        fv_vec_softmax_rows(n, m->arch.n_out, ret_prob);
    return 0;
}

int fv_mlp_loss(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                const float *row_w, size_t n, float pos_weight, double *ret_loss)
{
    if (m == NULL || ws == NULL || x == NULL || y == NULL || ret_loss == NULL || n == 0 ||
        !fv__mlp_ws_fits(m, ws, n))
        return FV_EINVAL;
    fv__mlp_forward(m, ws, x, n, ws->logits);
    return fv__mlp_loss_from_logits(m, ws->logits, y, row_w, n, pos_weight, NULL, NULL, NULL,
                                    ret_loss);
}

/* On failure grad's contents are unspecified (the loss is checked before backward). */
int fv_mlp_loss_grad(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                     const float *row_w, size_t n, float pos_weight, float *grad, double *ret_loss)
{
    if (m == NULL || ws == NULL || x == NULL || y == NULL || grad == NULL || ret_loss == NULL ||
        n == 0 || !fv__mlp_ws_fits(m, ws, n))
        return FV_EINVAL;
    fv__mlp_forward(m, ws, x, n, ws->logits);
    double loss;
    int r = fv__mlp_loss_from_logits(m, ws->logits, y, row_w, n, pos_weight, NULL, NULL,
                                     ws->delta[0], &loss);
    if (r != 0)
        return r;
    backward(m, ws, x, n, grad);
    *ret_loss = loss;
    return 0;
}

int fv_mlp_distill_loss(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                        const float *t_logits, const float *row_w, size_t n, float pos_weight,
                        const fv_distill_cfg_t *dc, double *ret_loss)
{
    if (m == NULL || ws == NULL || x == NULL || y == NULL || t_logits == NULL || ret_loss == NULL ||
        n == 0 || !fv__mlp_ws_fits(m, ws, n) || fv_distill_cfg_check(dc, NULL) != 0)
        return FV_EINVAL;
    fv__mlp_forward(m, ws, x, n, ws->logits);
    return fv__mlp_loss_from_logits(m, ws->logits, y, row_w, n, pos_weight, t_logits, dc, NULL,
                                    ret_loss);
}

/* On failure grad's contents are unspecified, as for fv_mlp_loss_grad. */
int fv_mlp_distill_loss_grad(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                             const float *t_logits, const float *row_w, size_t n, float pos_weight,
                             const fv_distill_cfg_t *dc, float *grad, double *ret_loss)
{
    if (m == NULL || ws == NULL || x == NULL || y == NULL || t_logits == NULL || grad == NULL ||
        ret_loss == NULL || n == 0 || !fv__mlp_ws_fits(m, ws, n) ||
        fv_distill_cfg_check(dc, NULL) != 0)
        return FV_EINVAL;
    fv__mlp_forward(m, ws, x, n, ws->logits);
    double loss;
    int r = fv__mlp_loss_from_logits(m, ws->logits, y, row_w, n, pos_weight, t_logits, dc,
                                     ws->delta[0], &loss);
    if (r != 0)
        return r;
    backward(m, ws, x, n, grad);
    *ret_loss = loss;
    return 0;
}
