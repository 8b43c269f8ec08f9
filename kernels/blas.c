/* blas.c - fv_gemm over OpenBLAS cblas_sgemm, and its scalar reference.
 *
 * Semantics (the same in fv_gemm and fv_gemm_ref, so they can be compared on any input):
 *   - m == 0 or n == 0: nothing is read or written.
 *   - k == 0 or alpha == 0: C = beta * C, and A and B are not read (as in reference BLAS,
 *     so NaN/Inf in A or B do not reach C when alpha is 0).
 *   - beta == 0: C is written without being read, so NaN in C does not propagate.
 * We handle the first two cases here rather than in cblas: cblas rejects lda < max(1, cols)
 * even when a dimension is 0, and which degenerate cases an OpenBLAS build short-cuts is
 * not part of its interface. For beta == 0 we rely on cblas: the BLAS contract says C need
 * not be set on input, and OpenBLAS' beta kernels store zeros rather than multiply
 * (tests/unit/kernels/test_gemm.c checks it with NaN in C).
 *
 * cblas takes blasint (int, or int64 in an INTERFACE64 build) sizes. A dimension or
 * leading dimension that does not fit falls back to the reference: slow, never wrong.
 * Leading dimensions below the header's minimum are a programmer error (assert).
 *
 * The reference accumulates each dot product in double in increasing k and rounds once
 * to float at the end, so it is at least as accurate as any float summation order; the
 * tests compare fv_gemm to it with an error bound that holds for every order.
 *
 * Threading: fv_gemm is reentrant; OpenBLAS runs its own thread pool, whose size is
 * process-global (fv_blas_set_threads). No state lives in this file.
 */
#include "fv_blas.h"

#include <assert.h>
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Largest value a blasint holds; blasint is a signed integer type. */
#define FV_BLASINT_MAX ((size_t)(((uint64_t)1 << (sizeof(blasint) * 8 - 1)) - 1))

static void check_ld(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, size_t lda,
                     size_t ldb, size_t ldc)
{
    (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)lda, (void)ldb, (void)ldc;
    assert(lda >= (trans_a ? m : k));
    assert(ldb >= (trans_b ? k : n));
    assert(ldc >= n);
}

/* C = beta * C for the k == 0 / alpha == 0 case; beta == 0 stores zeros. */
static void scale_c(size_t m, size_t n, float beta, float *c, size_t ldc)
{
    for (size_t i = 0; i < m; i++) {
        float *row = c + i * ldc;
        if (beta == 0.0f) {
            for (size_t j = 0; j < n; j++)
                row[j] = 0.0f;
        } else if (beta != 1.0f) {
            for (size_t j = 0; j < n; j++)
                row[j] *= beta;
        }
    }
}

void fv_gemm_ref(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                 const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                 size_t ldc)
{
    check_ld(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0)
        return;
    if (k == 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    /* op(A)[i][p] and op(B)[p][j] as strides into the stored matrices. */
    size_t a_row = trans_a ? 1 : lda, a_col = trans_a ? lda : 1;
    size_t b_row = trans_b ? 1 : ldb, b_col = trans_b ? ldb : 1;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (size_t p = 0; p < k; p++)
                acc += (double)a[i * a_row + p * a_col] * (double)b[p * b_row + j * b_col];
            double r = (double)alpha * acc;
            if (beta != 0.0f)
                r += (double)beta * (double)c[i * ldc + j];
            c[i * ldc + j] = (float)r;
        }
    }
}

void fv_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha, const float *a,
             size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc)
{
    check_ld(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0)
        return;
    if (k == 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    if (m > FV_BLASINT_MAX || n > FV_BLASINT_MAX || k > FV_BLASINT_MAX || lda > FV_BLASINT_MAX ||
        ldb > FV_BLASINT_MAX || ldc > FV_BLASINT_MAX) {
        fv_gemm_ref(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* m, n, k >= 1 here, so the header's minimums are cblas' max(1, cols). */
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

void fv_blas_set_threads(int n)
{
    assert(n >= 1);
    if (n < 1)
        n = 1;
    openblas_set_num_threads(n);
}

int fv_blas_get_threads(void)
{
    return openblas_get_num_threads();
}

const char *fv_blas_core_name(void)
{
    const char *name = openblas_get_corename();
    return name != NULL ? name : "unknown";
}

/* OpenBLAS' own banner ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64"):
 * its first two words. Declared by cblas.h in every OpenBLAS since 0.2.x. */
static void blas_version(char *buf, size_t n)
{
    const char *cfg = openblas_get_config();
    size_t len = 0, words = 0;
    if (cfg == NULL)
        cfg = "OpenBLAS";
    while (cfg[len] != '\0' && !(cfg[len] == ' ' && ++words == 2))
        len++;
    snprintf(buf, n, "%.*s", (int)len, cfg);
}

/* "model name" (x86) or "Processor" (some arm) from /proc/cpuinfo, and from its "flags"
 * line the extensions a report should name. */
static void cpu_model(char *buf, size_t n, char *isa, size_t isa_n)
{
    snprintf(buf, n, "unknown CPU");
    isa[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    static char line[16384];
    int have_model = 0, have_flags = 0;
    while ((!have_model || !have_flags) && fgets(line, sizeof line, f) != NULL) {
        const char *v = strchr(line, ':');
        if (v == NULL)
            continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t len = strcspn(v, "\n");
        while (len > 0 && v[len - 1] == ' ')
            len--;
        if (!have_model &&
            (strncmp(line, "model name", 10) == 0 || strncmp(line, "Processor", 9) == 0) &&
            len > 0) {
            snprintf(buf, n, "%.*s", (int)len, v);
            have_model = 1;
        } else if (!have_flags && strncmp(line, "flags", 5) == 0) {
            static const char *const want[][2] = {{" aes ", " AES-NI"},
                                                  {" vaes ", " VAES"},
                                                  {" avx2 ", " AVX2"},
                                                  {" avx512f ", " AVX-512F"}};
            char padded[sizeof line + 2];
            snprintf(padded, sizeof padded, " %.*s ", (int)len, v);
            size_t used = 0;
            for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
                if (strstr(padded, want[i][0]) != NULL && used < isa_n)
                    used += (size_t)snprintf(isa + used, isa_n - used, "%s", want[i][1]);
            have_flags = 1;
        }
    }
    fclose(f);
}

char *fv_machine_line(char *buf, size_t n)
{
    if (buf == NULL || n == 0)
        return buf;
    char model[160], blas[64], isa[64];
    cpu_model(model, sizeof model, isa, sizeof isa);
    blas_version(blas, sizeof blas);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int th = fv_blas_get_threads();
    snprintf(buf, n, "%s, %ld CPU%s online%s; %s core %s, %d thread%s", model, cpus,
             cpus == 1 ? "" : "s", isa, blas, fv_blas_core_name(), th, th == 1 ? "" : "s");
    return buf;
}
