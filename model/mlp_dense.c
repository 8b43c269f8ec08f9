/* mlp_dense.c - scoring's forward pass, and its dense layer Z = X W + b (ReLU optional)
 * without BLAS for a few rows at a time (issue 20: a batch-1 call of an mlp:4 student is ~500
 * multiply-adds, and cblas_sgemm's per-call work plus separate bias and ReLU passes made
 * it cost ~375 ns where the arithmetic needs ~20).
 *
 * Layout as in mlp.c: X is n x in row-major, W is in x o row-major (W[i * o + j]), b has o
 * entries, Z is n x o. Rows are done one at a time; for each row:
 *   - o == 1 (a binary output layer): a dot product of x with W's only column, which is
 *     contiguous; 32 lanes of partial sums (4 vectors of 8), then the lanes in a fixed
 *     order, then the scalar tail.
 *   - o == 4 (the mlp:4 student's hidden layer): W's rows are 4 floats, so rows i and i+1
 *     are 8 contiguous floats; one 8-lane vector holds x[i] in lanes 0-3 and x[i+1] in
 *     4-7, and 8 accumulators take 16 rows of W per step (short add chains: at batch 1
 *     their latency is what a call waits for); lanes j and j + 4 are added at the end.
 *   - otherwise, the columns in blocks: 32 columns (4 vectors) with the rows split over
 *     two sets of accumulators (even and odd i), then blocks of 8 columns with the rows
 *     split four ways (so at least 8 independent add chains, whatever the width), then
 *     the last o % 8 columns one at a time with four scalar partial sums.
 * The bias is added to the sum (one addition) and ReLU is x < 0 ? 0 : x on the result,
 * as fv_vec_relu (NaN is kept, so a diverged model is still caught). Nothing is
 * allocated and nothing is prepared per call: the weights are read where the model keeps
 * them, so a caller who changes the parameters (fv_mlp_params) is never served a stale
 * copy.
 *
 * Vectors are GCC vector extensions (8 floats), not intrinsics: the same source is
 * compiled for the baseline (SSE2 on x86-64, where each 8-float operation is two 4-float
 * ones; plain scalar code elsewhere) and, on x86-64, a second time with AVX2 and FMA
 * (the multiply-add is then fused: GNU C's default -ffp-contract=fast). The AVX2 copy is
 * used when __builtin_cpu_supports says the CPU has both (as optim.c does for Adam), read
 * once by a constructor. Scoring's whole forward pass (fv__mlp_forward_score) is in this
 * file and compiled into both copies too, so a call makes one dispatch and no call per
 * direct layer; the layers it leaves to BLAS call fv_gemm as fv__mlp_forward does.
 *
 * Results. The summation order differs from cblas_sgemm's (which itself depends on the
 * shape and the CPU) and between the two copies (fused or not), so the results agree with
 * the gemm path to rounding, not bit for bit: each output is a float sum of in + 1 terms,
 * within (in + 2) * 2^-24 * (sum_i |x_i w_ij| + |b_j|) of the exact value (the classical
 * bound for any summation order, the fused copy included), which is what
 * tests/unit/model/test_mlp.c checks against a double reference for both copies. A call
 * is deterministic: the same inputs on the same CPU give the same bits, whatever the
 * other rows of the batch.
 *
 * When it is used (fv__mlp_direct, model-int.h): scoring only (fv_mlp_logits and
 * fv_mlp_predict; training's forward pass stays on fv_gemm), for layers of at most
 * FV__MLP_DIRECT_ROWS rows, and for layers of 1 or 4 outputs at any batch size. Measured
 * on the dev machine (AMD EPYC with AVX-512, OpenBLAS 0.3.21 Haswell kernels, one
 * thread), time of fv_gemm + bias + ReLU over time of this path, min of 30 repetitions:
 *     shape (in x o)   n=1   n=2   n=3   n=4   n=8   n=64  n=1024
 *     119 x 4          12.7  8.0   7.7   4.4   3.6   1.9   1.7
 *     119 x 1          16.0  11.6  11.8  6.9   6.0   3.0   2.8
 *     119 x 128        3.0   1.8   -     0.76  0.59  0.42  -
 *     128 x 64         4.6   2.7   -     1.16  0.94  0.66  -
 *     119 x 5          2.2   1.25  1.16  0.67  0.55  0.25  0.23
 *     512 x 256        4.5   2.3   -     1.0   0.68  0.37  -
 * so up to 3 rows it wins everywhere, from 4 rows on cblas_sgemm wins for every width but
 * the two with their own kernel (which win at every batch size measured).
 *
 * State: one flag (the CPU has AVX2 and FMA), written by a constructor before main and
 * only read afterwards. Everything else is reentrant: a model may be scored by many
 * threads at once, each with its own workspace.
 */
#include <stdbool.h>
#include <stddef.h>

#include "fv_blas.h"
#include "fv_vec.h"
#include "model-int.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define FV_DENSE_AVX2 1
#endif

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
/* The same vectors at float alignment: loads and stores of 8 (4) floats anywhere. */
typedef float v8f_u __attribute__((vector_size(32), aligned(4)));
typedef float v4f_u __attribute__((vector_size(16), aligned(4)));

#define LD8(p) (*(const v8f_u *)(const void *)(p))
#define ST8(p, v) (*(v8f_u *)(void *)(p) = (v))
#define LD4(p) (*(const v4f_u *)(const void *)(p))
#define ST4(p, v) (*(v4f_u *)(void *)(p) = (v))

/* Lane sum in a fixed order (pairs, then pairs of pairs). */
#define HSUM8(v) ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) + (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))

/* v + bias, then ReLU when relu: lanes below 0 become +0 (a compare mask; NaN compares
 * false and stays). */
#define BIAS_RELU8(v, bp, relu)                                                                    \
    do {                                                                                           \
        (v) += LD8(bp);                                                                            \
        if (relu)                                                                                  \
            (v) = (v8f)((v8i)(v) & ~((v) < zero));                                                 \
    } while (0)

static inline float bias_relu1(float v, float b, bool relu)
{
    v += b;
    return relu && v < 0.0f ? 0.0f : v;
}

static inline __attribute__((always_inline)) void row_o1(const float *restrict x, size_t in,
                                                         const float *restrict w,
                                                         const float *restrict b, bool relu,
                                                         float *restrict z)
{
    const v8f zero = {0};
    float s = 0.0f;
    size_t i = 0;
    if (in >= 8) {
        v8f a0 = zero, a1 = zero, a2 = zero, a3 = zero;
        for (; i + 32 <= in; i += 32) {
            a0 += LD8(x + i) * LD8(w + i);
            a1 += LD8(x + i + 8) * LD8(w + i + 8);
            a2 += LD8(x + i + 16) * LD8(w + i + 16);
            a3 += LD8(x + i + 24) * LD8(w + i + 24);
        }
        for (; i + 8 <= in; i += 8)
            a0 += LD8(x + i) * LD8(w + i);
        a0 = (a0 + a1) + (a2 + a3);
        s = HSUM8(a0);
    }
    float s1 = 0.0f;
    for (; i + 2 <= in; i += 2) {
        s += x[i] * w[i];
        s1 += x[i + 1] * w[i + 1];
    }
    if (i < in)
        s += x[i] * w[i];
    z[0] = bias_relu1(s + s1, b[0], relu);
}

static inline __attribute__((always_inline)) void row_o4(const float *restrict x, size_t in,
                                                         const float *restrict w,
                                                         const float *restrict b, bool relu,
                                                         float *restrict z)
{
    const v8f zero = {0};
    const v4f zero4 = {0};
    /* Eight accumulators, 16 rows of W per step: the add chains (one per accumulator) are
     * in / 16 long, not in / 8; at batch 1 their latency, not the FMA throughput, is what
     * a call waits for. PAIR(a, r): a += rows r and r + 1. */
#define PAIR(acc, r)                                                                               \
    do {                                                                                           \
        v8f xv_ = {x[r], x[r], x[r], x[r], x[(r) + 1], x[(r) + 1], x[(r) + 1], x[(r) + 1]};        \
        (acc) += xv_ * LD8(w + (r)*4);                                                             \
    } while (0)
    v8f a0 = zero, a1 = zero, a2 = zero, a3 = zero, a4 = zero, a5 = zero, a6 = zero, a7 = zero;
    size_t i = 0;
    for (; i + 16 <= in; i += 16) {
        PAIR(a0, i);
        PAIR(a1, i + 2);
        PAIR(a2, i + 4);
        PAIR(a3, i + 6);
        PAIR(a4, i + 8);
        PAIR(a5, i + 10);
        PAIR(a6, i + 12);
        PAIR(a7, i + 14);
    }
    /* up to 7 pairs left, one per accumulator */
    if (i + 2 <= in) {
        PAIR(a0, i);
        i += 2;
    }
    if (i + 2 <= in) {
        PAIR(a1, i);
        i += 2;
    }
    if (i + 2 <= in) {
        PAIR(a2, i);
        i += 2;
    }
    if (i + 2 <= in) {
        PAIR(a3, i);
        i += 2;
    }
    if (i + 2 <= in) {
        PAIR(a4, i);
        i += 2;
    }
    if (i + 2 <= in) {
        PAIR(a5, i);
        i += 2;
    }
    if (i + 2 <= in) {
        PAIR(a6, i);
        i += 2;
    }
#undef PAIR
    a0 = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    /* lanes k and k + 4 are rows of the same parity, column k */
    v4f s = {a0[0], a0[1], a0[2], a0[3]}, t = {a0[4], a0[5], a0[6], a0[7]};
    s += t;
    if (i < in)
        s += x[i] * LD4(w + i * 4);
    s += LD4(b);
    if (relu)
        s = (v4f)((v4i)s & ~(s < zero4));
    ST4(z, s);
}

static inline __attribute__((always_inline)) void row_any(const float *restrict x, size_t in,
                                                          const float *restrict w,
                                                          const float *restrict b, size_t o,
                                                          bool relu, float *restrict z)
{
    const v8f zero = {0};
    size_t j = 0;
    for (; j + 32 <= o; j += 32) {
        v8f a0 = zero, a1 = zero, a2 = zero, a3 = zero, c0 = zero, c1 = zero, c2 = zero, c3 = zero;
        const float *wp = w + j;
        size_t i = 0;
        for (; i + 2 <= in; i += 2, wp += 2 * o) {
            float xa = x[i], xb = x[i + 1];
            a0 += xa * LD8(wp);
            a1 += xa * LD8(wp + 8);
            a2 += xa * LD8(wp + 16);
            a3 += xa * LD8(wp + 24);
            c0 += xb * LD8(wp + o);
            c1 += xb * LD8(wp + o + 8);
            c2 += xb * LD8(wp + o + 16);
            c3 += xb * LD8(wp + o + 24);
        }
        if (i < in) {
            float xa = x[i];
            a0 += xa * LD8(wp);
            a1 += xa * LD8(wp + 8);
            a2 += xa * LD8(wp + 16);
            a3 += xa * LD8(wp + 24);
        }
        a0 += c0;
        a1 += c1;
        a2 += c2;
        a3 += c3;
        BIAS_RELU8(a0, b + j, relu);
        BIAS_RELU8(a1, b + j + 8, relu);
        BIAS_RELU8(a2, b + j + 16, relu);
        BIAS_RELU8(a3, b + j + 24, relu);
        ST8(z + j, a0);
        ST8(z + j + 8, a1);
        ST8(z + j + 16, a2);
        ST8(z + j + 24, a3);
    }
    for (; j + 8 <= o; j += 8) {
        v8f a0 = zero, a1 = zero, a2 = zero, a3 = zero;
        const float *wp = w + j;
        size_t i = 0;
        for (; i + 4 <= in; i += 4, wp += 4 * o) {
            a0 += x[i] * LD8(wp);
            a1 += x[i + 1] * LD8(wp + o);
            a2 += x[i + 2] * LD8(wp + 2 * o);
            a3 += x[i + 3] * LD8(wp + 3 * o);
        }
        for (; i < in; i++, wp += o)
            a0 += x[i] * LD8(wp);
        a0 = (a0 + a1) + (a2 + a3);
        BIAS_RELU8(a0, b + j, relu);
        ST8(z + j, a0);
    }
    for (; j < o; j++) {
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        size_t i = 0;
        for (; i + 4 <= in; i += 4) {
            s0 += x[i] * w[i * o + j];
            s1 += x[i + 1] * w[(i + 1) * o + j];
            s2 += x[i + 2] * w[(i + 2) * o + j];
            s3 += x[i + 3] * w[(i + 3) * o + j];
        }
        for (; i < in; i++)
            s0 += x[i] * w[i * o + j];
        z[j] = bias_relu1((s0 + s1) + (s2 + s3), b[j], relu);
    }
}

/* The rows one at a time; the width test is outside the row loop so that each kernel's
 * set-up is its own. */
static inline __attribute__((always_inline)) void dense_rows(const float *x, size_t n, size_t in,
                                                             const float *w, const float *b,
                                                             size_t o, bool relu, float *z)
{
    if (o == 1)
        for (size_t r = 0; r < n; r++)
            row_o1(x + r * in, in, w, b, relu, z + r * o);
    else if (o == 4)
        for (size_t r = 0; r < n; r++)
            row_o4(x + r * in, in, w, b, relu, z + r * o);
    else
        for (size_t r = 0; r < n; r++)
            row_any(x + r * in, in, w, b, o, relu, z + r * o);
}

/* Scoring's forward pass (model-int.h), compiled into each copy so that a call makes one
 * dispatch and no call per direct layer. */
static inline __attribute__((always_inline)) void
forward_score(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *out)
{
    const float *a = x;
    for (size_t l = 0; l < m->n_layers; l++) {
        size_t in = m->dims[l], o = m->dims[l + 1];
        bool last = l + 1 == m->n_layers;
        float *z = last ? out : ws->act[l + 1];
        const float *w = m->params + m->w_off[l], *b = m->params + m->b_off[l];
        if (fv__mlp_direct(n, o)) {
            dense_rows(a, n, in, w, b, o, !last, z);
        } else {
            fv_gemm(false, false, n, o, in, 1.0f, a, in, w, o, 0.0f, z, o);
            fv_vec_add_bias_rows(n, o, b, z);
            if (!last)
                fv_vec_relu(n * o, z);
        }
        a = z;
    }
}

static void dense_base(const float *x, size_t n, size_t in, const float *w, const float *b,
                       size_t o, bool relu, float *z)
{
    dense_rows(x, n, in, w, b, o, relu, z);
}

static void forward_base(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *out)
{
    forward_score(m, ws, x, n, out);
}

#ifdef FV_DENSE_AVX2
__attribute__((target("avx2,fma"))) static void dense_avx2(const float *x, size_t n, size_t in,
                                                           const float *w, const float *b, size_t o,
                                                           bool relu, float *z)
{
    dense_rows(x, n, in, w, b, o, relu, z);
}

__attribute__((target("avx2,fma"))) static void forward_avx2(const fv_mlp_t *m, fv_mlp_ws_t *ws,
                                                             const float *x, size_t n, float *out)
{
    forward_score(m, ws, x, n, out);
}

/* Read once, before main (so before any thread): the per-call test is one load. */
static bool have_avx2;

__attribute__((constructor)) static void detect_avx2(void)
{
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

bool fv__mlp_dense_has(int isa)
{
    if (isa == FV__MLP_ISA_BASE)
        return true;
#ifdef FV_DENSE_AVX2
    if (isa == FV__MLP_ISA_AVX2)
        return have_avx2;
#endif
    return false;
}

void fv__mlp_dense(int isa, const float *x, size_t n, size_t in, const float *w, const float *b,
                   size_t o, bool relu, float *z)
{
    (void)isa; /* one copy only where there is no AVX2 build */
#ifdef FV_DENSE_AVX2
    if (isa != FV__MLP_ISA_BASE && have_avx2) {
        dense_avx2(x, n, in, w, b, o, relu, z);
        return;
    }
#endif
    dense_base(x, n, in, w, b, o, relu, z);
}

void fv__mlp_forward_score_isa(int isa, const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x,
                               size_t n, float *out)
{
    (void)isa;
#ifdef FV_DENSE_AVX2
    if (isa != FV__MLP_ISA_BASE && have_avx2) {
        forward_avx2(m, ws, x, n, out);
        return;
    }
#endif
    forward_base(m, ws, x, n, out);
}

void fv__mlp_forward_score(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t n, float *out)
{
    fv__mlp_forward_score_isa(FV__MLP_ISA_AVX2, m, ws, x, n, out);
}
