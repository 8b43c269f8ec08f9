/* vec.c - element-wise float32 kernels and their scalar references.
 *
 * Two versions of each kernel. The *_ref functions are the oracle: marked FV_SCALAR so the
 * compiler never vectorizes them, written in the most obvious way. The fast functions are
 * plain C for the compiler's auto-vectorizer: restrict pointers, no branches in the loop
 * body (conditionals are selects), and the main loop runs over a multiple of FV_VEC_BLOCK
 * elements with a scalar tail. The split is deliberate: at -O2 (our debugoptimized build)
 * gcc 12 vectorizes with its "very-cheap" cost model, which only vectorizes a loop whose
 * trip count is known to be a multiple of the vector width; n & ~(FV_VEC_BLOCK - 1) is.
 * Check with -fopt-info-vec-optimized after touching a loop.
 *
 * Why not BLAS level 1 for axpy/scale: OpenBLAS' saxpy returns early when a == 0 and its
 * sscal stores zeros when a == 0, so NaN/Inf in x would not propagate as in the reference
 * (x *= 0 is NaN for Inf); it also spawns its own threads above a length threshold, and
 * takes int lengths. These loops are memory-bound, so the vectorized loop loses nothing.
 *
 * Numerics:
 *   - axpy, scale, add_bias_rows, relu, relu_backward: one IEEE operation per element, the
 *     same expression in both versions, so the results are bit-identical.
 *   - col_sum, dot, sqnorm: double accumulation in index order (rows in order for col_sum)
 *     in both versions, as fv_vec.h promises. Products of two floats are exact in double,
 *     so only the additions round, in the same order: bit-identical. gcc does not reorder
 *     floating-point additions without -ffast-math/-fassociative-math, which we never use
 *     for this file; the vectorized col_sum keeps one double accumulator per column.
 *   - sigmoid, softmax: the reference computes in double and rounds once; the fast
 *     version uses float expf (no vector expf without -ffast-math, so these stay scalar,
 *     which is fine: they run on the output layer only). Error bounds are derived in
 *     tests/unit/kernels/test_vec.c.
 *   - relu keeps NaN (x < 0 ? 0 : x), so a diverged model is caught by all_finite instead
 *     of being silently zeroed.
 *
 * No state, no allocation; every function is reentrant.
 */
#include "fv_vec.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels-int.h"

/* Main-loop granularity of the fast kernels: 16 floats is one AVX-512 vector. */
#define FV_VEC_BLOCK ((size_t)16)

static inline size_t vec_main(size_t n)
{
    return n & ~(FV_VEC_BLOCK - 1);
}

/* ---- axpy ---------------------------------------------------------------------------- */

void fv_vec_axpy(size_t n, float a, const float *restrict x, float *restrict y)
{
    size_t nv = vec_main(n), i;
    for (i = 0; i < nv; i++)
        y[i] += a * x[i];
    for (; i < n; i++)
        y[i] += a * x[i];
}

FV_SCALAR void fv_vec_axpy_ref(size_t n, float a, const float *x, float *y)
{
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* ---- scale --------------------------------------------------------------------------- */

void fv_vec_scale(size_t n, float a, float *restrict x)
{
    size_t nv = vec_main(n), i;
    for (i = 0; i < nv; i++)
        x[i] *= a;
    for (; i < n; i++)
        x[i] *= a;
}

FV_SCALAR void fv_vec_scale_ref(size_t n, float a, float *x)
{
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++)
        x[i] *= a;
}

/* ---- add_bias_rows ------------------------------------------------------------------- */

/* Not inlined: gcc honours restrict reliably on function parameters, and without it the
 * loop would need a runtime alias check that the -O2 cost model refuses. */
__attribute__((noinline)) static void add_row(size_t n, const float *restrict bias,
                                              float *restrict row)
{
    size_t nv = vec_main(n), j;
    for (j = 0; j < nv; j++)
        row[j] += bias[j];
    for (; j < n; j++)
        row[j] += bias[j];
}

void fv_vec_add_bias_rows(size_t m, size_t n, const float *bias, float *x)
{
    for (size_t r = 0; r < m; r++)
        add_row(n, bias, x + r * n);
}

FV_SCALAR void fv_vec_add_bias_rows_ref(size_t m, size_t n, const float *bias, float *x)
{
    for (size_t r = 0; r < m; r++) {
        FV_SCALAR_LOOP
        for (size_t j = 0; j < n; j++)
            x[r * n + j] += bias[j];
    }
}

/* ---- col_sum ------------------------------------------------------------------------- */

/* Columns are summed in strips of FV_COLSUM_STRIP double accumulators on the stack, each
 * strip walking all rows in order: per column the additions happen in row order, exactly
 * as in the reference. */
#define FV_COLSUM_STRIP ((size_t)256)

void fv_vec_col_sum(size_t m, size_t n, const float *x, float *out)
{
    double acc[FV_COLSUM_STRIP];
    for (size_t j0 = 0; j0 < n; j0 += FV_COLSUM_STRIP) {
        size_t w = n - j0 < FV_COLSUM_STRIP ? n - j0 : FV_COLSUM_STRIP;
        size_t wv = vec_main(w);
        for (size_t j = 0; j < w; j++)
            acc[j] = 0.0;
        for (size_t r = 0; r < m; r++) {
            const float *restrict row = x + r * n + j0;
            size_t j;
            for (j = 0; j < wv; j++)
                acc[j] += (double)row[j];
            for (; j < w; j++)
                acc[j] += (double)row[j];
        }
        for (size_t j = 0; j < w; j++)
            out[j0 + j] = (float)acc[j];
    }
}

FV_SCALAR void fv_vec_col_sum_ref(size_t m, size_t n, const float *x, float *out)
{
    FV_SCALAR_LOOP
    for (size_t j = 0; j < n; j++) {
        double acc = 0.0;
        FV_SCALAR_LOOP
        for (size_t r = 0; r < m; r++)
            acc += (double)x[r * n + j];
        out[j] = (float)acc;
    }
}

/* ---- relu ---------------------------------------------------------------------------- */

void fv_vec_relu(size_t n, float *restrict x)
{
    size_t nv = vec_main(n), i;
    for (i = 0; i < nv; i++)
        x[i] = x[i] < 0.0f ? 0.0f : x[i];
    for (; i < n; i++)
        x[i] = x[i] < 0.0f ? 0.0f : x[i];
}

FV_SCALAR void fv_vec_relu_ref(size_t n, float *x)
{
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++) {
        if (x[i] < 0.0f)
            x[i] = 0.0f;
    }
}

void fv_vec_relu_backward(size_t n, const float *restrict act, float *restrict grad)
{
    size_t nv = vec_main(n), i;
    for (i = 0; i < nv; i++)
        grad[i] = act[i] > 0.0f ? grad[i] : 0.0f;
    for (; i < n; i++)
        grad[i] = act[i] > 0.0f ? grad[i] : 0.0f;
}

FV_SCALAR void fv_vec_relu_backward_ref(size_t n, const float *act, float *grad)
{
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++) {
        if (!(act[i] > 0.0f))
            grad[i] = 0.0f;
    }
}

/* ---- sigmoid ------------------------------------------------------------------------- */

/* With e = exp(-|x|) in (0, 1]: sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for
 * x < 0. exp never overflows and 1 + e is in [1, 2], so any finite x (and +-Inf) is safe.
 * NaN propagates. out may equal x, so no restrict here. */
void fv_vec_sigmoid(size_t n, const float *x, float *out)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float e = expf(-fabsf(v));
        out[i] = (v >= 0.0f ? 1.0f : e) / (1.0f + e);
    }
}

FV_SCALAR void fv_vec_sigmoid_ref(size_t n, const float *x, float *out)
{
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++) {
        double v = (double)x[i];
        double e = exp(-fabs(v));
        double s = v >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        out[i] = (float)s;
    }
}

/* ---- softmax ------------------------------------------------------------------------- */

/* Per row: subtract the row maximum (so every exp argument is <= 0 and the largest term is
 * exactly 1), exponentiate, divide by the sum. A NaN anywhere in a row makes the whole row
 * NaN in both versions. */
void fv_vec_softmax_rows(size_t m, size_t n, float *x)
{
    for (size_t r = 0; r < m; r++) {
        float *restrict row = x + r * n;
        if (n == 0)
            continue;
        float mx = row[0];
        for (size_t j = 1; j < n; j++)
            mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
        for (size_t j = 0; j < n; j++) {
            float e = expf(row[j] - mx);
            row[j] = e;
            sum += (double)e;
        }
        double inv = 1.0 / sum;
        size_t nv = vec_main(n), j;
        for (j = 0; j < nv; j++)
            row[j] = (float)((double)row[j] * inv);
        for (; j < n; j++)
            row[j] = (float)((double)row[j] * inv);
    }
}

FV_SCALAR void fv_vec_softmax_rows_ref(size_t m, size_t n, float *x)
{
    for (size_t r = 0; r < m; r++) {
        float *row = x + r * n;
        if (n == 0)
            continue;
        double mx = (double)row[0];
        FV_SCALAR_LOOP
        for (size_t j = 1; j < n; j++) {
            if ((double)row[j] > mx)
                mx = (double)row[j];
        }
        double sum = 0.0;
        FV_SCALAR_LOOP
        for (size_t j = 0; j < n; j++)
            sum += exp((double)row[j] - mx);
        FV_SCALAR_LOOP
        for (size_t j = 0; j < n; j++)
            row[j] = (float)(exp((double)row[j] - mx) / sum);
    }
}

/* ---- reductions ---------------------------------------------------------------------- */

/* The order of the additions is the contract, so there is nothing to vectorize but the
 * conversions and products; the fast and reference loops are the same loop, one allowed
 * to vectorize and one not. */
double fv_vec_dot(size_t n, const float *restrict x, const float *restrict y)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++)
        acc += (double)x[i] * (double)y[i];
    return acc;
}

FV_SCALAR double fv_vec_dot_ref(size_t n, const float *x, const float *y)
{
    double acc = 0.0;
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++)
        acc += (double)x[i] * (double)y[i];
    return acc;
}

double fv_vec_sqnorm(size_t n, const float *restrict x)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++)
        acc += (double)x[i] * (double)x[i];
    return acc;
}

FV_SCALAR double fv_vec_sqnorm_ref(size_t n, const float *x)
{
    double acc = 0.0;
    FV_SCALAR_LOOP
    for (size_t i = 0; i < n; i++)
        acc += (double)x[i] * (double)x[i];
    return acc;
}

/* ---- all_finite ---------------------------------------------------------------------- */

/* A float is finite iff its exponent bits are not all ones. Testing bits instead of
 * isfinite() keeps the answer right even if this file is ever built with -ffinite-math-only,
 * and lets the loop vectorize (no early exit: the whole vector is scanned). */
int fv_vec_all_finite(size_t n, const float *x)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
    }
    return bad == 0;
}
