/* test_vec.c - every fv_vec kernel against its scalar reference.
 *
 * Inputs: random values of mixed magnitude plus edge values (+-0, denormals, huge, and
 * NaN/Inf where the kernel is defined on them), at lengths 0, 1, 3, 7, 16, 17, 1023 and
 * pointer offsets 0 and 1 float (1 makes every SIMD access misaligned). Every buffer has
 * guard floats before and after; they must come back bit-identical, which catches a
 * vector tail that writes past n even inside the allocation (ASan only sees the ends).
 *
 * Tolerances (u = 2^-24, FLT_EPSILON = 2u):
 *   - scale, add_bias_rows, relu, relu_backward, col_sum, dot, sqnorm: bit-identical.
 *     The first four do one IEEE-rounded operation per element, the same one in both
 *     versions; the reductions are promised bit-identical by fv_vec.h (same order, double).
 *   - axpy: |fast - ref| <= FLT_EPSILON * (|y| + |a x|). The same expression in both, so
 *     bit-identical here; the bound admits one rounding of difference in case a target
 *     fuses a * x + y into an FMA in one version only.
 *   - sigmoid: |fast - ref| <= 4 * FLT_EPSILON * |ref| + 2 * FLT_TRUE_MIN. The reference is
 *     double, rounded once (<= u). The fast float path: expf (glibc: < 1 ulp, i.e. <= 2u
 *     relative), 1 + e and the division (u each); the error of e enters numerator and
 *     denominator with opposite signs, so it does not double. Total <= ~5u < 8u. The
 *     absolute term covers results in the denormal range (x < -87), where relative error
 *     is meaningless and each side is within half a denormal step of exp(x).
 *   - softmax: |fast - ref| <= (10 + g + ln n) * FLT_EPSILON * |ref| + 4 * FLT_TRUE_MIN,
 *     with g = max - x the element's distance from the row maximum. The fast path
 *     computes x - max in float (relative error u, which exp turns into an absolute error
 *     u * g in the exponent, i.e. relative u * g in the result), then expf (2u), the sum
 *     (its relative error is the e^-g-weighted mean of the terms' errors, <= (2 + ln n) u
 *     for n terms) and the scaling (u); the reference adds u. Rows sum to 1 within n u.
 */
#include "fv_vec.h"
#include "fv_rng.h"
#include "fv_test.h"

#include <float.h>
#include <stdbool.h>
#include <stdint.h>

#define GUARD 8
static const float GUARD_VAL = -7777.25f;

static const size_t lens[] = {0, 1, 3, 7, 16, 17, 1023};
#define N_LENS (sizeof lens / sizeof lens[0])

/* A buffer of n floats at offset off (0 or 1) inside guards. */
typedef struct {
    float *block;
    float *p;
    size_t n;
} buf_t;

static buf_t buf_new(size_t n, size_t off)
{
    buf_t b = {.n = n};
    size_t len = n + 2 * GUARD + off;
    b.block = malloc(len * sizeof(float));
    CHECK(b.block != NULL);
    for (size_t i = 0; i < len; i++)
        b.block[i] = GUARD_VAL;
    b.p = b.block + GUARD + off;
    return b;
}

static buf_t buf_copy(const buf_t *src, size_t off)
{
    buf_t b = buf_new(src->n, off);
    for (size_t i = 0; i < src->n; i++)
        b.p[i] = src->p[i];
    return b;
}

static void buf_check_guards(const buf_t *b, const char *what)
{
    for (size_t i = 0; i < GUARD; i++) {
        if (memcmp(&b->p[-(ptrdiff_t)i - 1], &GUARD_VAL, sizeof(float)) != 0 ||
            memcmp(&b->p[b->n + i], &GUARD_VAL, sizeof(float)) != 0)
            FV__FAIL("%s: guard around n=%zu overwritten", what, b->n);
    }
}

static void buf_free(buf_t *b)
{
    buf_check_guards(b, "free");
    free(b->block);
    b->block = b->p = NULL;
}

static bool same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void check_bits(const char *what, const buf_t *fast, const buf_t *ref)
{
    buf_check_guards(fast, what);
    buf_check_guards(ref, what);
    for (size_t i = 0; i < fast->n; i++) {
        /* NaN payloads may legitimately differ; any NaN matches any NaN */
        if (isnan(fast->p[i]) && isnan(ref->p[i]))
            continue;
        if (!same_bits(fast->p[i], ref->p[i]))
            FV__FAIL("%s n=%zu [%zu]: fast %a ref %a", what, fast->n, i, (double)fast->p[i],
                     (double)ref->p[i]);
    }
}

/* Random values spread over many magnitudes, both signs, with edge values sprinkled in. */
static float rand_val(fv_rng_t *r, bool allow_nonfinite)
{
    static const float edges[] = {0.0f,         -0.0f,  1.0f,    -1.0f, FLT_MIN, -FLT_MIN,
                                  FLT_TRUE_MIN, 1e-40f, -3e-39f, 1e20f, -1e20f};
    uint64_t pick = fv_rng_below(r, 20);
    if (pick == 0)
        return edges[fv_rng_below(r, sizeof edges / sizeof edges[0])];
    if (pick == 1 && allow_nonfinite) {
        static const float nf[] = {NAN, INFINITY, -INFINITY};
        return nf[fv_rng_below(r, 3)];
    }
    double mag = pow(10.0, 6.0 * fv_rng_uniform(r) - 3.0); /* 1e-3 .. 1e3 */
    return (float)(fv_rng_uniform(r) < 0.5 ? -mag : mag);
}

static buf_t rand_buf(fv_rng_t *r, size_t n, size_t off, bool allow_nonfinite)
{
    buf_t b = buf_new(n, off);
    for (size_t i = 0; i < n; i++)
        b.p[i] = rand_val(r, allow_nonfinite);
    return b;
}

/* ---- element-wise, bit-identical ------------------------------------------------------ */

static void test_elementwise(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 10);
    for (size_t li = 0; li < N_LENS; li++) {
        size_t n = lens[li];
        for (size_t off = 0; off <= 1; off++) {
            /* scale: a few factors including 0 (0 * Inf = NaN in both) and -1 */
            static const float as[] = {0.0f, -1.0f, 0.37f, 3.0e5f};
            for (size_t ai = 0; ai < 4; ai++) {
                buf_t x = rand_buf(&r, n, off, true);
                buf_t xr = buf_copy(&x, 1 - off);
                fv_vec_scale(n, as[ai], x.p);
                fv_vec_scale_ref(n, as[ai], xr.p);
                check_bits("scale", &x, &xr);
                buf_free(&x);
                buf_free(&xr);
            }

            /* relu keeps NaN, maps negatives (and not -0) to +0 */
            buf_t x = rand_buf(&r, n, off, true);
            buf_t xr = buf_copy(&x, 1 - off);
            buf_t orig = buf_copy(&x, 0);
            fv_vec_relu(n, x.p);
            fv_vec_relu_ref(n, xr.p);
            check_bits("relu", &x, &xr);
            for (size_t i = 0; i < n; i++) {
                if (isnan(orig.p[i]))
                    CHECK(isnan(x.p[i]));
                else
                    CHECK(x.p[i] == (orig.p[i] > 0.0f ? orig.p[i] : 0.0f));
            }

            /* relu_backward: grad survives where act > 0 */
            fv_vec_relu(n, orig.p); /* a real ReLU output, NaN included */
            buf_t g = rand_buf(&r, n, 1 - off, true);
            buf_t gr = buf_copy(&g, off);
            buf_t g0 = buf_copy(&g, 0);
            fv_vec_relu_backward(n, orig.p, g.p);
            fv_vec_relu_backward_ref(n, orig.p, gr.p);
            check_bits("relu_backward", &g, &gr);
            for (size_t i = 0; i < n; i++)
                CHECK(same_bits(g.p[i], orig.p[i] > 0.0f ? g0.p[i] : 0.0f) ||
                      (isnan(g.p[i]) && isnan(g0.p[i])));
            buf_free(&x);
            buf_free(&xr);
            buf_free(&orig);
            buf_free(&g);
            buf_free(&gr);
            buf_free(&g0);
        }
    }
}

static void test_axpy(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 11);
    static const float as[] = {0.0f, 1.0f, -0.25f, 1.7e3f};
    for (size_t li = 0; li < N_LENS; li++) {
        size_t n = lens[li];
        for (size_t off = 0; off <= 1; off++) {
            for (size_t ai = 0; ai < 4; ai++) {
                float a = as[ai];
                buf_t x = rand_buf(&r, n, off, false);
                buf_t y = rand_buf(&r, n, 1 - off, false);
                buf_t yr = buf_copy(&y, off);
                buf_t y0 = buf_copy(&y, 0);
                fv_vec_axpy(n, a, x.p, y.p);
                fv_vec_axpy_ref(n, a, x.p, yr.p);
                buf_check_guards(&y, "axpy");
                for (size_t i = 0; i < n; i++) {
                    double tol =
                        FLT_EPSILON * (fabs((double)y0.p[i]) + fabs((double)a * (double)x.p[i]));
                    CHECK_NEAR(y.p[i], yr.p[i], tol);
                    /* and the reference is the plain float expression */
                    CHECK(same_bits(yr.p[i], y0.p[i] + a * x.p[i]));
                }
                buf_free(&x);
                buf_free(&y);
                buf_free(&yr);
                buf_free(&y0);
            }
            /* NaN/Inf propagate like y += a * x, even with a == 0 (unlike BLAS saxpy) */
            if (n > 0) {
                buf_t x = buf_new(n, off), y = buf_new(n, off);
                for (size_t i = 0; i < n; i++) {
                    x.p[i] = i % 2 ? INFINITY : NAN;
                    y.p[i] = 1.0f;
                }
                fv_vec_axpy(n, 0.0f, x.p, y.p);
                for (size_t i = 0; i < n; i++)
                    CHECK(isnan(y.p[i]));
                buf_free(&x);
                buf_free(&y);
            }
        }
    }
}

/* ---- matrix kernels ------------------------------------------------------------------- */

static void test_bias_colsum(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 12);
    static const size_t ms[] = {0, 1, 3, 17, 64};
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
        for (size_t li = 0; li < N_LENS; li++) {
            /* 1023 columns are covered by the other kernels; keep m x n modest */
            size_t m = ms[mi], n = lens[li] == 1023 ? 300 : lens[li];
            for (size_t off = 0; off <= 1; off++) {
                buf_t bias = rand_buf(&r, n, off, false);
                buf_t x = rand_buf(&r, m * n, 1 - off, false);
                buf_t xr = buf_copy(&x, off);
                fv_vec_add_bias_rows(m, n, bias.p, x.p);
                fv_vec_add_bias_rows_ref(m, n, bias.p, xr.p);
                check_bits("add_bias_rows", &x, &xr);

                /* col_sum: bit-identical, and close to a plain double sum; 300 columns
                 * crosses the fast version's 256-column strip boundary */
                buf_t out = buf_new(n, off), outr = buf_new(n, 1 - off);
                fv_vec_col_sum(m, n, x.p, out.p);
                fv_vec_col_sum_ref(m, n, x.p, outr.p);
                check_bits("col_sum", &out, &outr);
                for (size_t j = 0; j < n; j++) {
                    double s = 0.0;
                    for (size_t i = 0; i < m; i++)
                        s += x.p[i * n + j];
                    CHECK(outr.p[j] == (float)s);
                }
                buf_free(&bias);
                buf_free(&x);
                buf_free(&xr);
                buf_free(&out);
                buf_free(&outr);
            }
        }
    }
}

/* ---- sigmoid, softmax ------------------------------------------------------------------ */

static void check_sigmoid_close(const float *x, const float *fast, const float *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) {
            CHECK(isnan(fast[i]) && isnan(ref[i]));
            continue;
        }
        CHECK(fast[i] >= 0.0f && fast[i] <= 1.0f);
        double tol = 4.0 * FLT_EPSILON * fabs((double)ref[i]) + 2.0 * FLT_TRUE_MIN;
        if (!(fabs((double)fast[i] - (double)ref[i]) <= tol))
            FV__FAIL("sigmoid(%a): fast %a ref %a", (double)x[i], (double)fast[i], (double)ref[i]);
    }
}

static void test_sigmoid(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 13);
    for (size_t li = 0; li < N_LENS; li++) {
        size_t n = lens[li];
        for (size_t off = 0; off <= 1; off++) {
            buf_t x = rand_buf(&r, n, off, true);
            /* moderate values too, where the function is not saturated */
            for (size_t i = 0; i < n; i += 2)
                x.p[i] = (float)(40.0 * fv_rng_uniform(&r) - 20.0);
            buf_t out = buf_new(n, 1 - off), outr = buf_new(n, off);
            fv_vec_sigmoid(n, x.p, out.p);
            fv_vec_sigmoid_ref(n, x.p, outr.p);
            buf_check_guards(&out, "sigmoid");
            buf_check_guards(&outr, "sigmoid_ref");
            check_sigmoid_close(x.p, out.p, outr.p, n);

            /* in place (out == x) gives the same as out of place, in both versions */
            buf_t xin = buf_copy(&x, off), xinr = buf_copy(&x, off);
            fv_vec_sigmoid(n, xin.p, xin.p);
            fv_vec_sigmoid_ref(n, xinr.p, xinr.p);
            check_bits("sigmoid in place", &xin, &out);
            check_bits("sigmoid_ref in place", &xinr, &outr);
            buf_free(&x);
            buf_free(&out);
            buf_free(&outr);
            buf_free(&xin);
            buf_free(&xinr);
        }
    }

    /* Saturation and stability: no overflow, exact limits, symmetric. */
    static const float xs[] = {0.0f,     -0.0f,    88.0f,     -88.0f, 1e30f,  -1e30f, FLT_MAX,
                               -FLT_MAX, INFINITY, -INFINITY, 17.0f,  -17.0f, 104.0f, -104.0f};
    enum { NX = sizeof xs / sizeof xs[0] };
    float f[NX], fr[NX];
    fv_vec_sigmoid(NX, xs, f);
    fv_vec_sigmoid_ref(NX, xs, fr);
    check_sigmoid_close(xs, f, fr, NX);
    for (int v = 0; v < 2; v++) {
        const float *s = v ? fr : f;
        CHECK(s[0] == 0.5f && s[1] == 0.5f);
        CHECK(s[2] == 1.0f);                              /* 1 - 6e-39 rounds to 1 */
        CHECK_NEAR(s[3], exp(-88.0), 2.0 * FLT_TRUE_MIN); /* 6.05e-39, a denormal */
        CHECK(s[3] > 0.0f);
        CHECK(s[4] == 1.0f && s[5] == 0.0f);
        CHECK(s[6] == 1.0f && s[7] == 0.0f);
        CHECK(s[8] == 1.0f && s[9] == 0.0f);
        CHECK_NEAR(s[10], 1.0 / (1.0 + exp(-17.0)), FLT_EPSILON);
        CHECK_NEAR(s[11], exp(-17.0) / (1.0 + exp(-17.0)), 4.0 * FLT_EPSILON * 4.14e-8);
        CHECK(s[12] == 1.0f);
        CHECK(s[13] == 0.0f || s[13] == FLT_TRUE_MIN); /* e^-104 = 6.8e-46 < 2^-149 */
    }
    float nan_in = NAN, nan_out = 0.0f;
    fv_vec_sigmoid(1, &nan_in, &nan_out);
    CHECK(isnan(nan_out));
}

static void check_softmax_close(size_t m, size_t n, const float *x, const float *fast,
                                const float *ref)
{
    for (size_t r = 0; r < m; r++) {
        const float *xr = x + r * n;
        float mx = xr[0];
        for (size_t j = 1; j < n; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0.0, sumr = 0.0;
        for (size_t j = 0; j < n; j++) {
            double g = (double)mx - (double)xr[j];
            double f = fast[r * n + j], e = ref[r * n + j];
            double tol = (10.0 + g + log((double)n)) * FLT_EPSILON * fabs(e) + 4.0 * FLT_TRUE_MIN;
            if (!(fabs(f - e) <= tol))
                FV__FAIL("softmax n=%zu row %zu [%zu] x=%a max=%a: fast %a ref %a tol %.3g", n, r,
                         j, (double)xr[j], (double)mx, f, e, tol);
            CHECK(f >= 0.0 && f <= 1.0);
            sum += f;
            sumr += e;
        }
        CHECK_NEAR(sum, 1.0, (double)(n + 2) * FLT_EPSILON);
        CHECK_NEAR(sumr, 1.0, (double)(n + 2) * FLT_EPSILON);
    }
}

static void run_softmax(size_t m, size_t n, const float *x, size_t off)
{
    buf_t a = buf_new(m * n, off), b = buf_new(m * n, 1 - off);
    if (m * n > 0) {
        memcpy(a.p, x, m * n * sizeof(float));
        memcpy(b.p, x, m * n * sizeof(float));
    }
    fv_vec_softmax_rows(m, n, a.p);
    fv_vec_softmax_rows_ref(m, n, b.p);
    buf_check_guards(&a, "softmax");
    buf_check_guards(&b, "softmax_ref");
    if (m > 0 && n > 0)
        check_softmax_close(m, n, x, a.p, b.p);
    buf_free(&a);
    buf_free(&b);
}

static void test_softmax(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 14);
    static const size_t ms[] = {0, 1, 4};
    static const double spreads[] = {1.0, 30.0, 200.0};
    for (size_t mi = 0; mi < 3; mi++) {
        for (size_t li = 0; li < N_LENS; li++) {
            for (size_t si = 0; si < 3; si++) {
                size_t m = ms[mi], n = lens[li];
                float *x = malloc((m * n + 1) * sizeof(float));
                CHECK(x != NULL);
                for (size_t i = 0; i < m * n; i++)
                    x[i] = (float)(spreads[si] * (2.0 * fv_rng_uniform(&r) - 1.0) + 50.0);
                run_softmax(m, n, x, li % 2);
                free(x);
            }
        }
    }

    /* Huge logits: no overflow, exact answers. */
    const float huge[] = {1e30f, -1e30f, 0.0f, 1e30f};
    float h[4], hr[4];
    memcpy(h, huge, sizeof h);
    memcpy(hr, huge, sizeof hr);
    fv_vec_softmax_rows(1, 4, h);
    fv_vec_softmax_rows_ref(1, 4, hr);
    for (int v = 0; v < 2; v++) {
        const float *s = v ? hr : h;
        CHECK(s[0] == 0.5f && s[1] == 0.0f && s[2] == 0.0f && s[3] == 0.5f);
    }
    const float extreme[] = {FLT_MAX, -FLT_MAX, 88.0f, 89.0f, 90.0f, 1000.0f};
    run_softmax(1, 6, extreme, 1);
    const float big3[] = {88.0f, 89.0f, 90.0f};
    run_softmax(1, 3, big3, 0);
    float eq[5] = {3.0f, 3.0f, 3.0f, 3.0f, 3.0f};
    fv_vec_softmax_rows(1, 5, eq);
    for (int j = 0; j < 5; j++)
        CHECK(eq[j] == 0.2f);
    float one = -1e30f;
    fv_vec_softmax_rows(1, 1, &one);
    CHECK(one == 1.0f);

    /* A NaN poisons its row, not the others. */
    float rows[6] = {1.0f, NAN, 2.0f, 1.0f, 2.0f, 3.0f};
    float rows_r[6];
    memcpy(rows_r, rows, sizeof rows);
    fv_vec_softmax_rows(2, 3, rows);
    fv_vec_softmax_rows_ref(2, 3, rows_r);
    for (int j = 0; j < 3; j++) {
        CHECK(isnan(rows[j]) && isnan(rows_r[j]));
        CHECK(isfinite(rows[3 + j]) && isfinite(rows_r[3 + j]));
    }
}

/* ---- reductions ------------------------------------------------------------------------ */

static void test_reductions(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 15);
    for (size_t li = 0; li < N_LENS; li++) {
        size_t n = lens[li];
        for (size_t off = 0; off <= 1; off++) {
            buf_t x = rand_buf(&r, n, off, false);
            buf_t y = rand_buf(&r, n, 1 - off, false);
            double d = fv_vec_dot(n, x.p, y.p), dr = fv_vec_dot_ref(n, x.p, y.p);
            double q = fv_vec_sqnorm(n, x.p), qr = fv_vec_sqnorm_ref(n, x.p);
            CHECK(memcmp(&d, &dr, sizeof d) == 0);
            CHECK(memcmp(&q, &qr, sizeof q) == 0);
            /* the documented order: index order, double */
            double dd = 0.0, qq = 0.0;
            for (size_t i = 0; i < n; i++) {
                dd += (double)x.p[i] * (double)y.p[i];
                qq += (double)x.p[i] * (double)x.p[i];
            }
            CHECK(d == dd && q == qq);
            if (n == 0)
                CHECK(d == 0.0 && q == 0.0);
            buf_free(&x);
            buf_free(&y);
        }
    }
    /* Order matters and is fixed: 1e20 + 1 - 1e20 is 0 in index order. */
    const float a[3] = {1e20f, 1.0f, -1e20f}, ones[3] = {1.0f, 1.0f, 1.0f};
    CHECK(fv_vec_dot(3, a, ones) == 0.0 && fv_vec_dot_ref(3, a, ones) == 0.0);
    /* Products of floats are exact in double: (2^60)^2 does not overflow. */
    const float big = 0x1p60f;
    CHECK(fv_vec_sqnorm(1, &big) == 0x1p120);
}

static void test_all_finite(void)
{
    CHECK(fv_vec_all_finite(0, NULL) == 1);
    static const float fin[] = {0.0f, -0.0f, FLT_MAX, -FLT_MAX, FLT_TRUE_MIN, 1.0f};
    CHECK(fv_vec_all_finite(6, fin) == 1);
    static const float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t li = 1; li < N_LENS; li++) {
        size_t n = lens[li];
        for (size_t off = 0; off <= 1; off++) {
            buf_t x = buf_new(n, off);
            for (size_t i = 0; i < n; i++)
                x.p[i] = (float)i - 3.5f;
            CHECK(fv_vec_all_finite(n, x.p) == 1);
            size_t where[3] = {0, n / 2, n - 1};
            for (size_t w = 0; w < 3; w++) {
                for (size_t b = 0; b < 3; b++) {
                    float save = x.p[where[w]];
                    x.p[where[w]] = bad[b];
                    CHECK(fv_vec_all_finite(n, x.p) == 0);
                    x.p[where[w]] = save;
                }
            }
            /* guards hold a finite value, so reading past n would not be seen here;
             * ASan and valgrind see reads past the block */
            buf_free(&x);
        }
    }
}

int main(void)
{
    test_elementwise();
    test_axpy();
    test_bias_colsum();
    test_sigmoid();
    test_softmax();
    test_reductions();
    test_all_finite();
    return 0;
}
