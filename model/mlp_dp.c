/* mlp_dp.c - DP-SGD's clipped gradient sum (fv_mlp_clipped_grad_sum, fv_mlp.h).
 *
 * What it computes: sum_i s_i grad_i, grad_i the gradient of row i's own loss (mlp.c's
 * per-row loss with pos_weight, or the distillation loss), s_i = min(1, C / |grad_i|)
 * with |.| the L2 norm over all parameters together. No grad_i is ever formed:
 *   1. forward pass over the n rows (mlp.c's, activations kept in the workspace);
 *   2. per row, dL_i/dz from mlp.c's loss with n = 1 (so each row's delta is bit for bit
 *      the one fv_mlp_loss_grad computes for that row alone: no 1/n, no row weights);
 *   3. backward for the deltas only: D_{l-1} = (D_l W_l^T) * relu'(A_l), one gemm per
 *      layer but the first, EVERY layer's D_l kept (the workspace's dp_block);
 *   4. norms: row i's weight gradient of layer l is the outer product a_{l,i} g_{l,i}^T
 *      (a = that layer's input row, g = its delta row), whose squared Frobenius norm is
 *      |a|^2 |g|^2, and the bias gradient is g itself, so
 *        |grad_i|^2 = sum_l (|a_{l,i}|^2 + 1) |g_{l,i}|^2      (double, O(n * width));
 *   5. each D_l's row i scaled by s_i in place (rows with s_i = 1 untouched), then per
 *      layer dW_l = A_l^T D_l (one gemm) and db_l = colsum(D_l), as mlp.c's backward.
 * The gemm work is the plain step's (forward, dX for layers 1.., dW for all): the extra is
 * O(n * sum of widths) for the norms and scales, and memory for the kept deltas.
 * Rounding: the norm is computed from float activations and deltas in double, the
 * reference (per-row fv_mlp_loss_grad, then the norm of the float gradient) sums the
 * float products; both agree to a few float ulps relative, so a row whose norm is within
 * that of C may be clipped by one and not the other, with a scale of 1 - O(1e-7) either
 * way (tests/unit/model/test_dpsgd.c compares to a relative tolerance).
 *
 * n == 0 is allowed here (a Poisson sample can be empty): grad_sum is zeroed. Errors:
 * FV_EINVAL (arguments, labels, pos_weight, teacher logits not finite, dc without
 * t_logits or t_logits without dc), FV_ENOMEM (the first call's allocation),
 * FV_ENUMERIC (a loss or a norm not finite); grad_sum is unspecified after an error.
 *
 * Threading and ownership: as mlp.c (the model is only read, the workspace is the
 * caller's, one per thread); the delta block belongs to the workspace.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fv_blas.h"
#include "fv_mlp.h"
#include "fv_vec.h"
#include "model-int.h"

/* Floats of the kept deltas of max_batch rows (every layer's output), then room for
 * 2 * max_batch doubles. */
static int dp_block_ensure(fv_mlp_ws_t *ws)
{
    if (ws->dp_block != NULL)
        return 0;
    size_t per_row = 0, n_f, n_d, total;
    for (size_t l = 1; l <= ws->n_layers; l++)
        per_row += ws->dims[l];
    if (__builtin_mul_overflow(per_row, ws->max_batch, &n_f) ||
        __builtin_mul_overflow(ws->max_batch, 2 * sizeof(double) / sizeof(float), &n_d) ||
        __builtin_add_overflow(n_f, n_d + 2, &total) || total > SIZE_MAX / sizeof(float))
        return FV_ENOMEM;
    ws->dp_block = malloc(total * sizeof(float));
    return ws->dp_block == NULL ? FV_ENOMEM : 0;
}

/* sum_j v[j]^2 in double, eight partial sums (j mod 8) added in a fixed order: the same
 * result every time, and the compiler can vectorize it (fv_vec_sqnorm's one running sum
 * is a chain of dependent adds: for logistic regression the norms of the input rows
 * would cost more than the gradient). */
static double sqnorm8(size_t n, const float *v)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (size_t t = 0; t < 8; t++)
            acc[t] += (double)v[j + t] * (double)v[j + t];
    for (; j < n; j++)
        acc[j & 7] += (double)v[j] * (double)v[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

int fv_mlp_clipped_grad_sum(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, const int32_t *y,
                            const float *t_logits, const fv_distill_cfg_t *dc, size_t n,
                            float pos_weight, double clip, float *grad_sum, double *ret_loss_sum,
                            size_t *ret_n_clipped)
{
    if (m == NULL || ws == NULL || grad_sum == NULL || !fv__mlp_ws_fits(m, ws, n) ||
        (n > 0 && (x == NULL || y == NULL)) || (dc == NULL) != (t_logits == NULL) ||
        (dc != NULL && fv_distill_cfg_check(dc, NULL) != 0) || !(isfinite(clip) && clip > 0.0))
        return FV_EINVAL;
    if (n == 0) {
        memset(grad_sum, 0, m->n_params * sizeof *grad_sum);
        if (ret_loss_sum != NULL)
            *ret_loss_sum = 0.0;
        if (ret_n_clipped != NULL)
            *ret_n_clipped = 0;
        return 0;
    }
    int r = dp_block_ensure(ws);
    if (r != 0)
        return r;

    const size_t L = m->n_layers, k = m->arch.n_out;
    /* D_l (n x dims[l + 1]) for every layer, packed by n rows; then the row doubles. */
    float *dl[FV_MLP_MAX_LAYERS];
    size_t per_row = 0;
    for (size_t l = 0; l < L; l++) {
        dl[l] = ws->dp_block + n * per_row;
        per_row += m->dims[l + 1];
    }
    double *sq = (double *)(void *)(ws->dp_block +
                                    ((ws->max_batch * per_row + 1) & ~(size_t)1)); /* aligned */
    double *scale = sq + n;

    /* 1, 2: forward, per-row deltas of the logits and losses. */
    fv__mlp_forward(m, ws, x, n, ws->logits);
    double loss_sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double li;
        r = fv__mlp_loss_from_logits(m, ws->logits + i * k, y + i, NULL, 1, pos_weight,
                                     t_logits != NULL ? t_logits + i * k : NULL, dc,
                                     dl[L - 1] + i * k, &li);
        if (r != 0)
            return r;
        loss_sum += li;
    }
    if (!isfinite(loss_sum))
        return FV_ENUMERIC;

    /* 3: the deltas of every layer. */
    for (size_t l = L - 1; l > 0; l--) {
        size_t in = m->dims[l], o = m->dims[l + 1];
        fv_gemm(false, true, n, in, o, 1.0f, dl[l], o, m->params + m->w_off[l], o, 0.0f, dl[l - 1],
                in);
        fv_vec_relu_backward(n * in, ws->act[l], dl[l - 1]);
    }

    /* 4: per-row squared norms, then the scales. */
    memset(sq, 0, n * sizeof *sq);
    for (size_t l = 0; l < L; l++) {
        size_t in = m->dims[l], o = m->dims[l + 1];
        const float *a = l == 0 ? x : ws->act[l];
        for (size_t i = 0; i < n; i++)
            sq[i] += (sqnorm8(in, a + i * in) + 1.0) * sqnorm8(o, dl[l] + i * o);
    }
    size_t n_clipped = 0;
    for (size_t i = 0; i < n; i++) {
        double norm = sqrt(sq[i]);
        if (!isfinite(norm))
            return FV_ENUMERIC;
        scale[i] = 1.0;
        if (norm > clip) {
            scale[i] = clip / norm;
            n_clipped++;
        }
    }

    /* 5: scaled deltas, one gemm and one column sum per layer. */
    for (size_t l = 0; l < L; l++) {
        size_t in = m->dims[l], o = m->dims[l + 1];
        const float *a = l == 0 ? x : ws->act[l];
        if (n_clipped > 0)
            for (size_t i = 0; i < n; i++)
                if (scale[i] != 1.0)
                    fv_vec_scale(o, (float)scale[i], dl[l] + i * o);
        fv_gemm(true, false, in, o, n, 1.0f, a, in, dl[l], o, 0.0f, grad_sum + m->w_off[l], o);
        fv_vec_col_sum(n, o, dl[l], grad_sum + m->b_off[l]);
    }
    if (ret_loss_sum != NULL)
        *ret_loss_sum = loss_sum;
    if (ret_n_clipped != NULL)
        *ret_n_clipped = n_clipped;
    return 0;
}
