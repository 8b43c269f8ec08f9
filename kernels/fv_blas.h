/* fv_blas.h - dense matrix products (float32, row-major) over OpenBLAS cblas.
 *
 * Every function has a scalar reference (*_ref) that is always built and that the fast
 * path is tested against. Threading: OpenBLAS' own thread count is process-global; set
 * it once with fv_blas_set_threads() before training (the daemons size it so it does not
 * fight the libuv pool). The reference accumulates in double, in increasing k order.
 */
#ifndef FV_BLAS_H
#define FV_BLAS_H

#include <stdbool.h>
#include <stddef.h>

/* C[m x n] = alpha * op(A) * op(B) + beta * C.
 * op(A) is m x k: A is stored m x k (lda >= k) or, if trans_a, k x m (lda >= m).
 * op(B) is k x n: B is stored k x n (ldb >= n) or, if trans_b, n x k (ldb >= k).
 * C is m x n, ldc >= n. Any of m, n, k may be 0 (k == 0 scales C by beta).
 * When beta == 0, C's previous contents are ignored (NaN in C does not propagate). */
void fv_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
             size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc);
void fv_gemm_ref(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                 const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                 size_t ldc);

/* OpenBLAS threads (n >= 1). */
void fv_blas_set_threads(int n);
int fv_blas_get_threads(void);
/* Name of the OpenBLAS core in use ("Haswell", ...), for benchmark reports. */
const char *fv_blas_core_name(void);

/* The machine a benchmark ran on, as one line for its report, e.g.
 *   "AMD EPYC, 2 CPUs online AES-NI VAES AVX2 AVX-512F; OpenBLAS 0.3.21 core Haswell,
 *    1 thread"
 * CPU model from /proc/cpuinfo ("unknown CPU" where there is none), the instruction-set
 * extensions OpenBLAS and OpenSSL's ciphers can use (its "flags" line),
 * OpenBLAS' version (openblas_get_config), the core it picked and its thread count now.
 * Writes at most n bytes, always NUL-terminated when n > 0; returns buf. */
char *fv_machine_line(char *buf, size_t n);

#endif
