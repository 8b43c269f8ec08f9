/* quant.c - post-training INT8 quantization of a network's weights (fv_mlp.h).
 *
 * WHAT IS QUANTIZED, AND THE LAYOUT THIS FILE RELIES ON
 *   The parameter vector of fv_mlp.h: for layer l = 0..H, with d_in = dims[l] and
 *   d_out = dims[l+1], first W_l (d_in x d_out, row-major, input-major: the weight from
 *   input i to output unit j is at W_l[i * d_out + j]), then b_l (d_out). Offsets follow
 *   from fv_mlp_arch() alone: W_0 starts at 0 and each layer takes d_in * d_out + d_out
 *   floats. fv_mlp_decay_mask() marks exactly the W entries with 1 (test_quant.c checks that
 *   it agrees with this walk). "The row of output unit j" is therefore the strided column
 *   W_l[j], W_l[d_out + j], ..., W_l[(d_in - 1) * d_out + j]: the d_in weights that feed
 *   unit j, which is what one symmetric scale per output channel means for Z = X W + b.
 *   Biases are copied unchanged.
 *
 * ONE ROW (fv_mlp_quantize_int8_row), with m = max |w_i| over the row:
 *   m == 0           s = +0, every q = 0.
 *   m / 127 >= 2^-126   (the normal case; computed in double, exactly rounded)
 *                    s = m / 127 rounded to nearest, ties to even, to 17 significant bits.
 *                    If 127 s would exceed FLT_MAX (m within 2^-17 relative of FLT_MAX) it is
 *                    rounded down instead, so that 127 s stays finite.
 *   m / 127 <  2^-126   (rows of subnormal-sized weights)
 *                    s = the smallest power of two >= m / 127, and at least 2^-149.
 *   q_i = round half to even of the exact quotient w_i / s (the quotient is computed in
 *   double: with s of at most 17 significant bits it can never land on or cross a
 *   half-integer it was not exactly equal to, the distance being >= 2^-42 against a
 *   rounding error <= 2^-47 for |w_i / s| <= 128). Dequantized: w'_i = (float)q_i * s.
 *
 * WHY THE SCALE IS ROUNDED: IDEMPOTENCE AND EXACTNESS
 *   The header's rule "s = max|w| / 127 as a float32" alone is not idempotent: q * s
 *   rounds, so the dequantized row's maximum 127 s, divided by 127 again, can land one ulp
 *   away from s, and then every weight moves. With 17 significant bits in s, q * s (q at
 *   most 7 bits) is exact in float32, so:
 *     - normal case: |m / s - 127| <= 127 * 2^-16 < 0.5, so max |q| = 127 exactly and
 *       |q| <= 127 always; the dequantized row has maximum exactly 127 s, 127 s / 127 = s
 *       exactly, s is already on the 17-bit grid, so the scale comes back bit for bit, and
 *       q_i s / s = q_i. Quantizing the result again returns it unchanged.
 *     - subnormal case: s is a power of two, so w / s and q * s are exact; if s > 2^-149,
 *       m > 63.5 s (else s / 2 would do), so 64 <= max |q| <= 127, and the dequantized
 *       maximum M' = max|q| s has M' / 127 in (s / 2, s]: the same power of two comes
 *       back (or, when M' / 127 = s = 2^-126, the normal rule, which gives s as well). If
 *       s = 2^-149 every weight is an exact multiple of s and nothing moves at all.
 *   And |w_i - w'_i| <= s / 2 holds exactly (q_i is the correctly rounded quotient and
 *   w'_i = q_i s carries no rounding). The cost of the rounding: s differs from
 *   m / 127 by at most 2^-17 relative, invisible next to the 1/254 of the quantization.
 *
 * DETERMINISM
 *   Every step is one IEEE 754 operation in round-to-nearest (the default mode, which
 *   nothing in fedvault changes): a division, a floor, an exact scaling by a power of two
 *   (ldexp), an exact product, comparisons. There is no product feeding an addition, so
 *   FMA contraction (GCC's default -ffp-contract=fast on aarch64) has nothing to fuse,
 *   and FLT_EVAL_METHOD == 0 (pinned below) rules out x87 excess precision. An agent and
 *   the coordinator quantizing the same floats get the same bits on any platform
 *   fedvault builds for. Rounding half to even is written out (rne) rather than taken
 *   from rint(), which follows the current rounding mode.
 *
 * No global state; pure functions of their inputs; safe from any thread.
 */
#include "fv_mlp.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(FLT_EVAL_METHOD == 0, "quantization needs float and double evaluated as such");
_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24 && FLT_MIN_EXP == -125,
               "float must be IEEE 754 binary32");
_Static_assert(DBL_MANT_DIG == 53, "double must be IEEE 754 binary64");

#define SCALE_BITS 17             /* significant bits of a normal scale: 17 + 7 <= 24 */
#define SCALE_NORMAL_MIN 0x1p-126 /* below it (as m / 127), the power-of-two rule */
#define SCALE_TINY_MIN 0x1p-149   /* the smallest positive float */

/* x rounded to the nearest integer, ties to even, for |x| < 2^52; independent of the
 * floating-point rounding mode. */
static double rne(double x)
{
    double f = floor(x);
    double h = f + 0.5; /* exact: f is an integer below 2^52 */
    if (x > h)
        return f + 1.0;
    if (x < h)
        return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

/* The scale of a row whose largest magnitude is m (finite, >= 0); see the top note. */
static float row_scale(float m)
{
    if (m == 0.0f)
        return 0.0f;
    double t = (double)m / 127.0;
    if (t >= SCALE_NORMAL_MIN) {
        int e;
        double f = frexp(t, &e);            /* t = f 2^e, f in [0.5, 1) */
        double mant = ldexp(f, SCALE_BITS); /* [2^16, 2^17), exact */
        double s = ldexp(rne(mant), e - SCALE_BITS);
        if (127.0 * s > (double)FLT_MAX) /* 127 s is exact in double */
            s = ldexp(floor(mant), e - SCALE_BITS);
        return (float)s; /* exact: at most 17 significant bits, exponent >= -142 */
    }
    double s = SCALE_TINY_MIN;
    while (s < t) /* at most 23 doublings: t < 2^-126 */
        s = ldexp(s, 1);
    return (float)s;
}

int fv_mlp_quantize_int8_row(const float *w, size_t n, size_t stride, int8_t *ret_q,
                             float *ret_scale)
{
    if ((n > 0 && (w == NULL || ret_q == NULL || stride == 0)) || ret_scale == NULL)
        return FV_EINVAL;

    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(w[i * stride]);
        if (!isfinite(a))
            return FV_ENUMERIC;
        if (a > m)
            m = a;
    }
    float s = row_scale(m);
    if (s == 0.0f) {
        if (n > 0)
            memset(ret_q, 0, n);
        *ret_scale = 0.0f;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        double q = rne((double)w[i * stride] / (double)s);
        /* Unreachable by the argument in the top note (|q| <= 127); kept so that a mistake
         * in it can never produce -128 or wrap. */
        if (q > FV_MLP_INT8_MAX || q < -FV_MLP_INT8_MAX)
            return FV_ENUMERIC;
        ret_q[i] = (int8_t)q;
    }
    *ret_scale = s;
    return 0;
}

int fv_mlp_quantize_int8(const fv_mlp_t *m, fv_mlp_t **ret)
{
    int r;
    fv_mlp_t *out = NULL;
    int8_t *q = NULL;

    if (m == NULL || ret == NULL)
        return FV_EINVAL;
    const fv_mlp_arch_t *a = fv_mlp_arch(m);
    size_t dims[FV_MLP_MAX_HIDDEN + 2], n_dims = 0, widest_in = 0;
    dims[n_dims++] = a->n_in;
    for (size_t i = 0; i < a->n_hidden; i++)
        dims[n_dims++] = a->hidden[i];
    dims[n_dims++] = a->n_out;
    for (size_t l = 0; l + 1 < n_dims; l++)
        widest_in = dims[l] > widest_in ? dims[l] : widest_in;

    r = fv_mlp_new(a, &out);
    if (r < 0)
        goto out;
    q = malloc(widest_in); /* <= FV_MLP_MAX_WIDTH bytes */
    if (q == NULL) {
        r = FV_ENOMEM;
        goto out;
    }
    const float *src = fv_mlp_params_const(m);
    float *dst = fv_mlp_params(out);
    size_t off = 0;
    for (size_t l = 0; l + 1 < n_dims; l++) {
        size_t d_in = dims[l], d_out = dims[l + 1];
        const float *w = src + off;
        float *wq = dst + off;
        for (size_t j = 0; j < d_out; j++) {
            float s;
            r = fv_mlp_quantize_int8_row(w + j, d_in, d_out, q, &s);
            if (r < 0)
                goto out;
            for (size_t i = 0; i < d_in; i++)
                wq[i * d_out + j] = (float)q[i] * s; /* exact */
        }
        off += d_in * d_out;
        memcpy(dst + off, src + off, d_out * sizeof *dst); /* b_l */
        off += d_out;
    }
    *ret = out;
    out = NULL;
    r = 0;
out:
    free(q);
    fv_mlp_free(out);
    return r;
}
