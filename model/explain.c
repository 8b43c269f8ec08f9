/* explain.c - per-column contributions to a row's logit (reason codes), see fv_explain.h.
 *
 * Purpose: give every scored row the columns that pushed its score, with signed sizes,
 * so a model consumer can say why a transaction scored high. The methods and their
 * guarantees (exact for logistic regression, integrated gradients from the zero baseline
 * for MLPs) are stated in fv_explain.h; this note covers how.
 *
 * Feature layout: recomputed from the schema exactly as preproc.c lays features out
 * (schema column order; numeric 1, categorical n_categories (+1 under "other"), ignored
 * and target 0) into col_of[feature]. new() checks the total against
 * fv_preproc_n_features and the network's n_in, so a drift between the two files is an
 * error, not a misattribution.
 *
 * Arithmetic: everything in double, from the float32 parameters. A row is one vector, so
 * the loops are plain dot products (no gemm: a batch of one gains nothing from BLAS, and
 * double keeps the completeness residual about the method, not about rounding).
 * Summation order is fixed (feature order, then column order), so results are
 * deterministic.
 *
 * Gradient (integrated gradients): forward z_l = a_l W_l + b_l, a_{l+1} = relu(z_l),
 * keeping every z_l; backward from g = e_out: g_a_l[i] = sum_k W_l[i, k] g_z_l[k], and
 * g_z_{l-1}[i] = g_a_l[i] * [z_{l-1}[i] > 0]. The sum over the m midpoints accumulates
 * in double in step order.
 *
 * Ownership: the explainer borrows mlp, preproc and schema; it owns col_of and one
 * scratch block (activations of every layer, two gradient buffers, the IG point and the
 * gradient sum). One explainer per thread.
 */
#include "fv_explain.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPLAIN_MAX_LAYERS (FV_MLP_MAX_HIDDEN + 1)

struct fv_explain {
    const fv_mlp_t *mlp;
    const fv_schema_t *s;
    size_t n_cols;      /* schema columns */
    size_t n_feat_cols; /* columns with at least one feature */
    size_t n_steps;
    size_t n_layers;
    size_t dims[EXPLAIN_MAX_LAYERS + 1];
    size_t w_off[EXPLAIN_MAX_LAYERS];
    size_t b_off[EXPLAIN_MAX_LAYERS];
    size_t max_width;
    size_t *col_of;                /* n_in: schema column of each feature */
    bool *has_feat;                /* n_cols: column has features */
    double *z[EXPLAIN_MAX_LAYERS]; /* pre-activations of each layer (z[L-1]: logits) */
    double *g[2];                  /* gradient ping-pong, max_width each */
    double *xd;                    /* n_in: x in double */
    double *pt;                    /* n_in: an integrated-gradients point */
    double *gsum;                  /* n_in: sum of gradients over the steps */
    double *gstep;                 /* n_in: gradient at one point */
    double *block;                 /* owns the double buffers above */
};

void fv_explain_free(fv_explain_t *e)
{
    if (e == NULL)
        return;
    free(e->block);
    free(e->has_feat);
    free(e->col_of);
    free(e);
}

int fv_explain_new(const fv_mlp_t *mlp, const fv_preproc_t *p, const fv_schema_t *s, size_t n_steps,
                   fv_explain_t **ret)
{
    fv_explain_t *e = NULL;
    int r = FV_EINVAL;

    if (mlp == NULL || p == NULL || s == NULL || ret == NULL || n_steps > FV_EXPLAIN_MAX_STEPS)
        return FV_EINVAL;
    const fv_mlp_arch_t *a = fv_mlp_arch(mlp);
    if (a->n_hidden > FV_MLP_MAX_HIDDEN || a->n_in != fv_preproc_n_features(p))
        return FV_EINVAL;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return FV_ENOMEM;
    e->mlp = mlp;
    e->s = s;
    e->n_cols = fv_schema_n_columns(s);
    e->n_steps = n_steps ? n_steps : FV_EXPLAIN_DEFAULT_STEPS;
    e->n_layers = a->n_hidden + 1;
    e->dims[0] = a->n_in;
    for (size_t l = 0; l < a->n_hidden; l++)
        e->dims[l + 1] = a->hidden[l];
    e->dims[e->n_layers] = a->n_out;
    size_t off = 0, sum_z = 0;
    e->max_width = a->n_in;
    for (size_t l = 0; l < e->n_layers; l++) {
        e->w_off[l] = off;
        off += e->dims[l] * e->dims[l + 1];
        e->b_off[l] = off;
        off += e->dims[l + 1];
        sum_z += e->dims[l + 1];
        if (e->dims[l + 1] > e->max_width)
            e->max_width = e->dims[l + 1];
    }
    if (off != fv_mlp_n_params(mlp))
        goto fail; /* r = FV_EINVAL: not the layout fv_mlp.h promises */

    /* Feature layout, as preproc.c builds it. */
    r = FV_ENOMEM;
    e->col_of = malloc((a->n_in ? a->n_in : 1) * sizeof *e->col_of);
    e->has_feat = calloc(e->n_cols ? e->n_cols : 1, sizeof *e->has_feat);
    if (e->col_of == NULL || e->has_feat == NULL)
        goto fail;
    size_t f = 0;
    bool other = fv_schema_unknown_policy(s) == FV_UNKNOWN_OTHER;
    for (size_t c = 0; c < e->n_cols; c++) {
        size_t w = 0;
        if (fv_schema_column_type(s, c) == FV_COL_NUMERIC)
            w = 1;
        else if (fv_schema_column_type(s, c) == FV_COL_CATEGORICAL)
            w = fv_schema_n_categories(s, c) + (other ? 1 : 0);
        if (w > a->n_in - f) {
            r = FV_EINVAL;
            goto fail;
        }
        for (size_t k = 0; k < w; k++)
            e->col_of[f++] = c;
        if (w > 0) {
            e->has_feat[c] = true;
            e->n_feat_cols++;
        }
    }
    if (f != a->n_in) {
        r = FV_EINVAL;
        goto fail;
    }

    /* Scratch: z of every layer, two gradient buffers, four n_in vectors. Widths are
     * capped by FV_MLP_MAX_WIDTH, layers by FV_MLP_MAX_HIDDEN: no overflow. */
    size_t n_dbl = sum_z + 2 * e->max_width + 4 * (a->n_in ? a->n_in : 1);
    e->block = malloc(n_dbl * sizeof *e->block);
    if (e->block == NULL)
        goto fail;
    double *q = e->block;
    for (size_t l = 0; l < e->n_layers; l++) {
        e->z[l] = q;
        q += e->dims[l + 1];
    }
    e->g[0] = q;
    q += e->max_width;
    e->g[1] = q;
    q += e->max_width;
    e->xd = q;
    q += a->n_in;
    e->pt = q;
    q += a->n_in;
    e->gsum = q;
    q += a->n_in;
    e->gstep = q;
    *ret = e;
    return 0;
fail:
    fv_explain_free(e);
    return r;
}

fv_explain_method_t fv_explain_method(const fv_explain_t *e)
{
    return e->n_layers == 1 ? FV_EXPLAIN_LINEAR : FV_EXPLAIN_INTEGRATED_GRADIENTS;
}

const char *fv_explain_method_name(const fv_explain_t *e)
{
    return fv_explain_method(e) == FV_EXPLAIN_LINEAR ? "linear" : "integrated-gradients";
}

size_t fv_explain_n_columns(const fv_explain_t *e)
{
    return e->n_feat_cols;
}

/* Forward pass of one row x (double, n_in) into e->z[]; returns nothing, the logits are
 * e->z[n_layers - 1]. */
static void forward(fv_explain_t *e, const double *x)
{
    const float *P = fv_mlp_params_const(e->mlp);
    const double *in = x;
    for (size_t l = 0; l < e->n_layers; l++) {
        size_t ni = e->dims[l], no = e->dims[l + 1];
        const float *W = P + e->w_off[l], *b = P + e->b_off[l];
        double *z = e->z[l];
        for (size_t k = 0; k < no; k++)
            z[k] = (double)b[k];
        for (size_t i = 0; i < ni; i++) {
            double v = in[i];
            if (l > 0 && !(v > 0.0))
                continue; /* relu of the previous layer's z: 0 contributes nothing */
            const float *w = W + i * no;
            for (size_t k = 0; k < no; k++)
                z[k] += v * (double)w[k];
        }
        in = z;
    }
}

static size_t argmax(const double *z, size_t n)
{
    size_t best = 0;
    for (size_t k = 1; k < n; k++)
        if (z[k] > z[best])
            best = k;
    return best;
}

/* After forward(): gradient of logit `out` w.r.t. the input, into grad (n_in). */
static void backward(fv_explain_t *e, size_t out, double *grad)
{
    const float *P = fv_mlp_params_const(e->mlp);
    size_t L = e->n_layers;
    double *gz = e->g[0], *ga = e->g[1];
    memset(gz, 0, e->dims[L] * sizeof *gz);
    gz[out] = 1.0;
    for (size_t l = L; l-- > 0;) {
        size_t ni = e->dims[l], no = e->dims[l + 1];
        const float *W = P + e->w_off[l];
        double *dst = l == 0 ? grad : ga;
        for (size_t i = 0; i < ni; i++) {
            if (l > 0 && !(e->z[l - 1][i] > 0.0)) { /* relu'(z) = 0 (also at z == 0) */
                dst[i] = 0.0;
                continue;
            }
            const float *w = W + i * no;
            double acc = 0.0;
            for (size_t k = 0; k < no; k++)
                acc += (double)w[k] * gz[k];
            dst[i] = acc;
        }
        /* dst is now dLoss/da_l, which for l > 0 already carries relu'(z_{l-1}) and so
         * is dLoss/dz_{l-1}: swap it into gz. */
        double *t = gz;
        gz = dst;
        ga = t;
    }
}

int fv_explain_gradient(fv_explain_t *e, const double *x, size_t out, double *ret_grad,
                        double *ret_logit)
{
    if (e == NULL || x == NULL || ret_grad == NULL || out >= e->dims[e->n_layers])
        return FV_EINVAL;
    forward(e, x);
    backward(e, out, ret_grad);
    if (ret_logit != NULL)
        *ret_logit = e->z[e->n_layers - 1][out];
    return 0;
}

int fv_explain_row(fv_explain_t *e, const float *x, size_t out, double *ret_contrib,
                   fv_explain_result_t *ret)
{
    if (e == NULL || x == NULL || ret_contrib == NULL || ret == NULL)
        return FV_EINVAL;
    const size_t n_in = e->dims[0], n_out = e->dims[e->n_layers];
    const double *zl = e->z[e->n_layers - 1];
    fv_explain_result_t res;
    for (size_t j = 0; j < n_in; j++) {
        if (!isfinite(x[j]))
            return FV_EINVAL;
        e->xd[j] = (double)x[j];
    }
    forward(e, e->xd);
    if (out == FV_EXPLAIN_PREDICTED)
        out = argmax(zl, n_out);
    if (out >= n_out)
        return FV_EINVAL;
    res.out = out;
    res.logit = zl[out];

    /* Per-feature contributions into gstep. */
    if (fv_explain_method(e) == FV_EXPLAIN_LINEAR) {
        const float *P = fv_mlp_params_const(e->mlp);
        const float *W = P + e->w_off[0];
        res.bias = (double)P[e->b_off[0] + out];
        for (size_t j = 0; j < n_in; j++)
            e->gstep[j] = (double)W[j * n_out + out] * e->xd[j];
    } else {
        memset(e->pt, 0, n_in * sizeof *e->pt);
        forward(e, e->pt); /* the baseline x0 = 0 */
        res.bias = zl[out];
        memset(e->gsum, 0, n_in * sizeof *e->gsum);
        const double m = (double)e->n_steps;
        for (size_t k = 0; k < e->n_steps; k++) {
            double alpha = ((double)k + 0.5) / m;
            for (size_t j = 0; j < n_in; j++)
                e->pt[j] = alpha * e->xd[j];
            forward(e, e->pt);
            backward(e, out, e->gstep);
            for (size_t j = 0; j < n_in; j++)
                e->gsum[j] += e->gstep[j];
        }
        for (size_t j = 0; j < n_in; j++)
            e->gstep[j] = e->xd[j] * (e->gsum[j] / m);
    }

    /* Group by schema column, in feature order. */
    memset(ret_contrib, 0, e->n_cols * sizeof *ret_contrib);
    for (size_t j = 0; j < n_in; j++)
        ret_contrib[e->col_of[j]] += e->gstep[j];
    double sum = res.bias;
    for (size_t c = 0; c < e->n_cols; c++)
        sum += ret_contrib[c];
    res.residual = sum - res.logit;
    *ret = res;
    return 0;
}

size_t fv_explain_top(const fv_explain_t *e, const double *contrib, size_t n_top, size_t *ret_cols)
{
    size_t n = 0;
    if (e == NULL || contrib == NULL || ret_cols == NULL)
        return 0;
    if (n_top > e->n_feat_cols)
        n_top = e->n_feat_cols;
    /* Partial selection by insertion: O(n_cols * n_top), n_top is small in practice and
     * at most n_cols (<= FV_SCHEMA_MAX_COLUMNS). Strict > keeps the lower index on ties. */
    for (size_t c = 0; c < e->n_cols && n_top > 0; c++) {
        if (!e->has_feat[c])
            continue;
        double v = fabs(contrib[c]);
        size_t pos = n;
        while (pos > 0 && v > fabs(contrib[ret_cols[pos - 1]]))
            pos--;
        if (pos >= n_top)
            continue;
        size_t last = n < n_top ? n : n_top - 1;
        memmove(ret_cols + pos + 1, ret_cols + pos, (last - pos) * sizeof *ret_cols);
        ret_cols[pos] = c;
        if (n < n_top)
            n++;
    }
    return n;
}
