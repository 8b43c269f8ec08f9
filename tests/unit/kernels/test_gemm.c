/* test_gemm.c - fv_gemm (OpenBLAS) against fv_gemm_ref (scalar, double accumulation).
 *
 * Tolerance. For each element the test computes the magnitude
 *     mag = |alpha| * sum_p |op(A)[i][p]| * |op(B)[p][j]| + |beta| * |C0[i][j]|
 * and requires |fast - ref| <= (k + 2) * FLT_EPSILON * mag.
 * Why: any float evaluation of a length-k dot product, in any summation order, blocked or
 * with FMA, has error <= gamma_k * sum |a_p b_p|, gamma_k = k u / (1 - k u) (Higham,
 * "Accuracy and Stability of Numerical Algorithms", 3.1), u = 2^-24 = FLT_EPSILON / 2.
 * Scaling by alpha and adding beta * C cost at most 3 more roundings, and the reference,
 * exact but for its final rounding to float, is within u * mag. So the worst case is about
 * (k + 4) u * mag, and (k + 2) * FLT_EPSILON = (2k + 4) u covers it for every k >= 0
 * with margin. It is relative to mag, not to the result: with cancellation the result can
 * be tiny while the rounding errors are not. In practice OpenBLAS is ~sqrt(k) u, and the
 * test prints the worst ratio seen.
 *
 * Beyond values, the test checks that padding between rows (ld > width) is neither read
 * (it holds NaN, which would poison any result it touched) nor written (sentinel values
 * stay bit-identical), that beta == 0 ignores NaN in C, and that alpha == 0 or k == 0
 * give beta * C without reading A or B.
 */
#include "fv_blas.h"
#include "fv_rng.h"
#include "fv_test.h"

#include <float.h>
#include <stdbool.h>
#include <stdint.h>

static double worst_ratio; /* max |fast - ref| / bound over the run, for the log */

/* A matrix stored rows x cols with leading dimension ld >= cols, at an offset of `off`
 * floats from a malloc'd block (off = 1 makes it misaligned for any SIMD width). */
typedef struct {
    float *block;
    float *p;
    size_t rows, cols, ld;
} mat_t;

static const float PAD = 12345.0f; /* C padding sentinel */

static mat_t mat_new(size_t rows, size_t cols, size_t ld, size_t off)
{
    mat_t m = {.rows = rows, .cols = cols, .ld = ld};
    size_t len = rows * ld + off + 1;
    m.block = malloc(len * sizeof(float));
    CHECK(m.block != NULL);
    for (size_t i = 0; i < len; i++)
        m.block[i] = NAN;
    m.p = m.block + off;
    return m;
}

static void mat_free(mat_t *m)
{
    free(m->block);
    m->block = m->p = NULL;
}

static void mat_fill(mat_t *m, fv_rng_t *r)
{
    for (size_t i = 0; i < m->rows; i++) {
        for (size_t j = 0; j < m->cols; j++)
            m->p[i * m->ld + j] = (float)(2.0 * fv_rng_uniform(r) - 1.0);
    }
}

typedef struct {
    bool ta, tb;
    size_t m, n, k;
    float alpha, beta;
    size_t pad; /* extra columns in every leading dimension */
    size_t off; /* misalignment in floats */
    bool nan_c; /* fill C with NaN (only meaningful with beta == 0) */
} gemm_case_t;

static void run_case(const gemm_case_t *tc, fv_rng_t *r)
{
    size_t a_rows = tc->ta ? tc->k : tc->m, a_cols = tc->ta ? tc->m : tc->k;
    size_t b_rows = tc->tb ? tc->n : tc->k, b_cols = tc->tb ? tc->k : tc->n;
    mat_t a = mat_new(a_rows, a_cols, a_cols + tc->pad, tc->off);
    mat_t b = mat_new(b_rows, b_cols, b_cols + tc->pad, tc->off);
    mat_t c0 = mat_new(tc->m, tc->n, tc->n + tc->pad, tc->off);
    mat_t c_fast = mat_new(tc->m, tc->n, tc->n + tc->pad, tc->off);
    mat_t c_ref = mat_new(tc->m, tc->n, tc->n + tc->pad, tc->off);
    mat_fill(&a, r);
    mat_fill(&b, r);
    mat_fill(&c0, r);
    size_t c_len = tc->m * c0.ld + 1;
    for (size_t i = 0; i < tc->m; i++) {
        for (size_t j = tc->n; j < c0.ld; j++)
            c0.p[i * c0.ld + j] = PAD;
        if (tc->nan_c) {
            for (size_t j = 0; j < tc->n; j++)
                c0.p[i * c0.ld + j] = NAN;
        }
    }
    memcpy(c_fast.p, c0.p, c_len * sizeof(float));
    memcpy(c_ref.p, c0.p, c_len * sizeof(float));

    fv_gemm(tc->ta, tc->tb, tc->m, tc->n, tc->k, tc->alpha, a.p, a.ld, b.p, b.ld, tc->beta,
            c_fast.p, c_fast.ld);
    fv_gemm_ref(tc->ta, tc->tb, tc->m, tc->n, tc->k, tc->alpha, a.p, a.ld, b.p, b.ld, tc->beta,
                c_ref.p, c_ref.ld);

    for (size_t i = 0; i < tc->m; i++) {
        for (size_t j = 0; j < c0.ld; j++) {
            size_t at = i * c0.ld + j;
            if (j >= tc->n) {
                /* padding: untouched, bit for bit */
                if (memcmp(&c_fast.p[at], &PAD, sizeof PAD) != 0 ||
                    memcmp(&c_ref.p[at], &PAD, sizeof PAD) != 0)
                    FV__FAIL("C padding [%zu][%zu] written", i, j);
                continue;
            }
            double mag = tc->beta == 0.0f ? 0.0 : fabs((double)tc->beta * c0.p[at]);
            if (tc->alpha != 0.0f) {
                for (size_t p = 0; p < tc->k; p++) {
                    float av = tc->ta ? a.p[p * a.ld + i] : a.p[i * a.ld + p];
                    float bv = tc->tb ? b.p[j * b.ld + p] : b.p[p * b.ld + j];
                    mag += fabs((double)tc->alpha * av * bv);
                }
            }
            double bound = (double)(tc->k + 2) * FLT_EPSILON * mag;
            double fast = c_fast.p[at], ref = c_ref.p[at];
            if (!isfinite(fast) || !isfinite(ref) || !(fabs(fast - ref) <= bound))
                FV__FAIL("ta=%d tb=%d m=%zu n=%zu k=%zu alpha=%g beta=%g pad=%zu off=%zu "
                         "nan_c=%d: C[%zu][%zu] fast %.9g ref %.9g bound %.3g",
                         tc->ta, tc->tb, tc->m, tc->n, tc->k, (double)tc->alpha, (double)tc->beta,
                         tc->pad, tc->off, tc->nan_c, i, j, fast, ref, bound);
            if (bound > 0.0 && fabs(fast - ref) / bound > worst_ratio)
                worst_ratio = fabs(fast - ref) / bound;
        }
    }
    mat_free(&a);
    mat_free(&b);
    mat_free(&c0);
    mat_free(&c_fast);
    mat_free(&c_ref);
}

static void test_random(void)
{
    static const size_t sizes[] = {1, 2, 3, 7, 16, 17, 33};
    static const float alphas[] = {1.0f, -0.5f, 2.5f};
    static const float betas[] = {0.0f, 1.0f, -1.5f};
    size_t ns = sizeof sizes / sizeof sizes[0];
    fv_rng_t r;
    fv_rng_seed(&r, 1);
    int cases = 0;
    for (int t = 0; t < 4; t++) {
        for (size_t im = 0; im < ns; im++) {
            for (size_t in = 0; in < ns; in++) {
                for (size_t ik = 0; ik < ns; ik++) {
                    /* sizes exhaustively; the scalars, padding and offset rotate */
                    gemm_case_t tc = {
                        .ta = t & 1,
                        .tb = (t >> 1) & 1,
                        .m = sizes[im],
                        .n = sizes[in],
                        .k = sizes[ik],
                        .alpha = alphas[(im + ik) % 3],
                        .beta = betas[(in + ik + (size_t)t) % 3],
                        .pad = (im + in) % 2 ? 3 : 0,
                        .off = (in + ik) % 2,
                    };
                    tc.nan_c = tc.beta == 0.0f && (im % 2 == 0);
                    run_case(&tc, &r);
                    cases++;
                }
            }
        }
    }
    CHECK(cases == 4 * 7 * 7 * 7);
}

static void test_large(void)
{
    /* Big enough for OpenBLAS' blocked and multi-threaded paths. */
    fv_rng_t r;
    fv_rng_seed(&r, 2);
    for (int t = 0; t < 4; t++) {
        gemm_case_t tc = {.ta = t & 1,
                          .tb = (t >> 1) & 1,
                          .m = 131,
                          .n = 97,
                          .k = 301,
                          .alpha = 0.75f,
                          .beta = t == 3 ? 0.0f : 0.5f,
                          .pad = 5,
                          .off = 1,
                          .nan_c = t == 3};
        run_case(&tc, &r);
    }
}

static void test_degenerate(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 3);
    /* Zero sizes: C padding checks prove nothing is written; k == 0 and alpha == 0
     * scale C by beta; A and B hold only NaN there (mat_fill not reached for 0 sizes,
     * and alpha == 0 must not read them). */
    static const size_t zs[][3] = {{0, 0, 0}, {0, 5, 3}, {4, 0, 3}, {4, 5, 0},
                                   {1, 1, 0}, {0, 1, 1}, {1, 1, 1}};
    for (int t = 0; t < 4; t++) {
        for (size_t z = 0; z < sizeof zs / sizeof zs[0]; z++) {
            static const float betas[] = {0.0f, 1.0f, -2.0f};
            for (size_t ib = 0; ib < 3; ib++) {
                for (size_t pad = 0; pad <= 2; pad += 2) {
                    gemm_case_t tc = {.ta = t & 1,
                                      .tb = (t >> 1) & 1,
                                      .m = zs[z][0],
                                      .n = zs[z][1],
                                      .k = zs[z][2],
                                      .alpha = 1.5f,
                                      .beta = betas[ib],
                                      .pad = pad,
                                      .off = pad / 2,
                                      .nan_c = betas[ib] == 0.0f};
                    run_case(&tc, &r);
                }
            }
        }
    }

    /* Minimal leading dimensions with zero sizes: lda = 0 is legal when the stored width
     * is 0 and must not reach cblas (which rejects lda < 1). */
    float c[2] = {7.0f, 7.0f};
    fv_gemm(false, false, 0, 2, 0, 1.0f, NULL, 0, NULL, 2, 0.0f, c, 2);
    CHECK(c[0] == 7.0f && c[1] == 7.0f);
    fv_gemm(false, false, 1, 2, 0, 1.0f, NULL, 0, NULL, 2, 3.0f, c, 2);
    CHECK(c[0] == 21.0f && c[1] == 21.0f);
    fv_gemm(true, true, 1, 2, 0, 1.0f, NULL, 1, NULL, 0, 0.0f, c, 2);
    CHECK(c[0] == 0.0f && c[1] == 0.0f);

    /* alpha == 0: A and B are not read (NaN there does not reach C), C = beta * C. */
    float a[4] = {NAN, NAN, INFINITY, NAN}, b[4] = {NAN, 1.0f, 2.0f, NAN};
    float cf[4] = {1.0f, 2.0f, 3.0f, 4.0f}, cr[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    fv_gemm(false, false, 2, 2, 2, 0.0f, a, 2, b, 2, 0.5f, cf, 2);
    fv_gemm_ref(false, false, 2, 2, 2, 0.0f, a, 2, b, 2, 0.5f, cr, 2);
    for (int i = 0; i < 4; i++) {
        CHECK(cf[i] == 0.5f * (float)(i + 1));
        CHECK(cr[i] == cf[i]);
    }

    /* A tiny known answer, independent of the reference:
     * [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]; with alpha 2, beta -1, C = 1s. */
    float ka[4] = {1, 2, 3, 4}, kb[4] = {5, 6, 7, 8};
    float kc[4] = {1, 1, 1, 1}, kr[4] = {1, 1, 1, 1};
    fv_gemm(false, false, 2, 2, 2, 2.0f, ka, 2, kb, 2, -1.0f, kc, 2);
    fv_gemm_ref(false, false, 2, 2, 2, 2.0f, ka, 2, kb, 2, -1.0f, kr, 2);
    static const float kx[4] = {37, 43, 85, 99};
    for (int i = 0; i < 4; i++) {
        CHECK(kc[i] == kx[i]);
        CHECK(kr[i] == kx[i]);
    }
    /* A^T * B^T = [1 3; 2 4] * [5 7; 6 8] = [23 31; 34 46] */
    float kt[4] = {0, 0, 0, 0};
    fv_gemm(true, true, 2, 2, 2, 1.0f, ka, 2, kb, 2, 0.0f, kt, 2);
    static const float ktx[4] = {23, 31, 34, 46};
    for (int i = 0; i < 4; i++)
        CHECK(kt[i] == ktx[i]);
}

static void test_threads(void)
{
    const char *core = fv_blas_core_name();
    CHECK(core != NULL && core[0] != '\0');

    int before = fv_blas_get_threads();
    CHECK(before >= 1);
    fv_blas_set_threads(1);
    CHECK_INT_EQ(fv_blas_get_threads(), 1);

    /* Results within tolerance of the reference whatever the thread count. */
    fv_rng_t r;
    fv_rng_seed(&r, 4);
    gemm_case_t tc = {.m = 120, .n = 80, .k = 200, .alpha = 1.0f, .beta = 0.0f};
    run_case(&tc, &r);
    fv_blas_set_threads(2);
    CHECK(fv_blas_get_threads() >= 1 && fv_blas_get_threads() <= 2);
    run_case(&tc, &r);
    fv_blas_set_threads(before);
    CHECK_INT_EQ(fv_blas_get_threads(), before);
    printf("# OpenBLAS core %s, %d threads\n", core, before);
}

int main(void)
{
    test_degenerate();
    test_random();
    test_large();
    test_threads();
    printf("# worst |fast - ref| / bound = %.3g\n", worst_ratio);
    return 0;
}
