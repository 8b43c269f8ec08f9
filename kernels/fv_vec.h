/* fv_vec.h - element-wise float32 kernels the models need.
 *
 * Each kernel `fv_vec_X` has a scalar reference `fv_vec_X_ref` that is always built and
 * compiled without auto-vectorization; the fast versions are written for the compiler's
 * vectorizer (restrict, no aliasing, no branches in the loop) or call BLAS level 1.
 * Tests compare both on random and edge inputs (n = 0, 1, odd, unaligned pointers);
 * tolerances are in tests/unit/kernels/test_vec.c. Pointers may be unaligned. n may be 0.
 *
 * Reductions (col_sum, dot, sqnorm) accumulate in double, in index order, in both the
 * fast and the reference version, so their results are bit-identical and order-stable.
 */
#ifndef FV_VEC_H
#define FV_VEC_H

#include <stddef.h>

/* y[i] += a * x[i] */
void fv_vec_axpy(size_t n, float a, const float *x, float *y);
void fv_vec_axpy_ref(size_t n, float a, const float *x, float *y);

/* x[i] *= a */
void fv_vec_scale(size_t n, float a, float *x);
void fv_vec_scale_ref(size_t n, float a, float *x);

/* x[r][j] += bias[j] for an m x n row-major matrix */
void fv_vec_add_bias_rows(size_t m, size_t n, const float *bias, float *x);
void fv_vec_add_bias_rows_ref(size_t m, size_t n, const float *bias, float *x);

/* out[j] = sum_r x[r][j] over an m x n matrix (double accumulation, rows in order) */
void fv_vec_col_sum(size_t m, size_t n, const float *x, float *out);
void fv_vec_col_sum_ref(size_t m, size_t n, const float *x, float *out);

/* x[i] = max(x[i], 0) */
void fv_vec_relu(size_t n, float *x);
void fv_vec_relu_ref(size_t n, float *x);

/* grad[i] = act[i] > 0 ? grad[i] : 0   (act is the ReLU output) */
void fv_vec_relu_backward(size_t n, const float *act, float *grad);
void fv_vec_relu_backward_ref(size_t n, const float *act, float *grad);

/* out[i] = 1 / (1 + exp(-x[i])), computed without overflow for any finite x; out may == x */
void fv_vec_sigmoid(size_t n, const float *x, float *out);
void fv_vec_sigmoid_ref(size_t n, const float *x, float *out);

/* Row-wise softmax of an m x n matrix in place (max-subtracted, so no overflow). */
void fv_vec_softmax_rows(size_t m, size_t n, float *x);
void fv_vec_softmax_rows_ref(size_t m, size_t n, float *x);

/* sum x[i]*y[i], double accumulation in index order */
double fv_vec_dot(size_t n, const float *x, const float *y);
double fv_vec_dot_ref(size_t n, const float *x, const float *y);

/* sum x[i]^2, double accumulation in index order */
double fv_vec_sqnorm(size_t n, const float *x);
double fv_vec_sqnorm_ref(size_t n, const float *x);

/* 1 if every x[i] is finite, else 0 */
int fv_vec_all_finite(size_t n, const float *x);

#endif
