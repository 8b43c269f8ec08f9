/* test_mlp.c - architecture parsing, parameter layout, forward/loss/gradient of fv_mlp.
 *
 * Gradient check ("careful scheme"): the library computes the gradient in float32. We
 * check it against central finite differences of an independent double-precision
 * reference of the same network and loss written here (plain loops over the documented
 * parameter layout), with h = 1e-6. In double the finite difference is accurate to about
 * 1e-8, so the comparison measures the library's float32 rounding only:
 *     |g_lib - g_fd| <= 1e-4 + 1e-3 * |g_fd|
 * (float32 has a 6e-8 unit roundoff; the gradients of these tiny nets are sums of a few
 * dozen O(1) terms, so their errors are ~1e-6; the bound leaves 100x headroom yet would
 * catch any formula or layout mistake, which shows up as an O(1e-2..1) error).
 * Points within 1e-3 of a ReLU kink are avoided by choosing the data seed (a finite
 * difference across a kink is meaningless).
 * Second, the library checks itself: central differences of fv_mlp_loss (float forward)
 * with eps = 1e-3 against fv_mlp_loss_grad, |diff| <= 3e-3 + 2e-2 |g|: the float loss
 * has ~1e-6 absolute error, which the 2e-3 step turns into ~5e-4 of gradient noise.
 *
 * Scoring's direct path (model/mlp_dense.c, issue 20): fv__mlp_dense, both compiled copies
 * (baseline, and AVX2+FMA where the CPU has it), against a double reference for every
 * width around its kernels' block sizes (o = 1..9, 15..17, 31..33, 63..65, 128; in = 1..9,
 * 15..17, 31..33, 64, 119, 130), 1..5 rows, with and without ReLU, to the classical bound
 * of a float sum in any order, (in + 2) * 2^-24 * (sum |x w| + |b|) per output. Then whole
 * networks through fv_mlp_logits at batch sizes on both sides of fv__mlp_direct's rule
 * against a float forward built on fv_gemm_ref, to a first-order bound of the same kind.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_blas.h"
#include "fv_mlp.h"
#include "fv_rng.h"
#include "fv_test.h"
#include "model-int.h"

/* ---- helpers --------------------------------------------------------------------- */

static fv_mlp_arch_t mk_arch(size_t n_in, size_t n_hidden, const size_t *hidden, size_t n_out)
{
    fv_mlp_arch_t a;
    memset(&a, 0, sizeof a);
    a.n_in = n_in;
    a.n_hidden = n_hidden;
    for (size_t i = 0; i < n_hidden; i++)
        a.hidden[i] = hidden[i];
    a.n_out = n_out;
    return a;
}

static size_t arch_dims(const fv_mlp_arch_t *a, size_t *dims)
{
    dims[0] = a->n_in;
    for (size_t i = 0; i < a->n_hidden; i++)
        dims[i + 1] = a->hidden[i];
    dims[a->n_hidden + 1] = a->n_out;
    return a->n_hidden + 1;
}

static void fill_normal(fv_rng_t *r, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * fv_rng_normal(r));
}

/* Double-precision reference: mean weighted loss of the batch, with the parameters in
 * the documented layout. Also reports the smallest |pre-activation| of hidden units. */
static double ref_loss(const fv_mlp_arch_t *a, const double *p, const float *x, const int32_t *y,
                       const float *row_w, size_t n, double pos_weight, double *ret_min_pre)
{
    size_t dims[FV_MLP_MAX_HIDDEN + 2];
    size_t n_layers = arch_dims(a, dims);
    double in[64], out[64], sum = 0.0, min_pre = INFINITY;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < dims[0]; j++)
            in[j] = x[i * dims[0] + j];
        const double *q = p;
        for (size_t l = 0; l < n_layers; l++) {
            size_t ni = dims[l], no = dims[l + 1];
            const double *w = q, *b = q + ni * no;
            for (size_t o = 0; o < no; o++) {
                double z = b[o];
                for (size_t k = 0; k < ni; k++)
                    z += in[k] * w[k * no + o];
                out[o] = z;
            }
            q += ni * no + no;
            if (l + 1 < n_layers) {
                for (size_t o = 0; o < no; o++) {
                    if (fabs(out[o]) < min_pre)
                        min_pre = fabs(out[o]);
                    in[o] = out[o] > 0.0 ? out[o] : 0.0;
                }
            }
        }
        double li;
        if (a->n_out == 1) {
            double z = out[0];
            /* -log sigmoid(z) and -log(1 - sigmoid(z)) computed directly: fine in double
             * for the moderate logits used here. */
            li = y[i] == 1 ? pos_weight * log1p(exp(-z)) : log1p(exp(z));
        } else {
            double mx = out[0], s = 0.0;
            for (size_t k = 1; k < a->n_out; k++)
                mx = out[k] > mx ? out[k] : mx;
            for (size_t k = 0; k < a->n_out; k++)
                s += exp(out[k] - mx);
            li = mx + log(s) - out[y[i]];
        }
        sum += (row_w ? row_w[i] : 1.0) * li;
    }
    if (ret_min_pre)
        *ret_min_pre = min_pre;
    return sum / (double)n;
}

/* ---- parse_arch / arch_string ---------------------------------------------------- */

static void check_parse_bad(const char *spec, size_t n_in, size_t n_classes, const char *needle)
{
    fv_mlp_arch_t a;
    memset(&a, 0xab, sizeof a);
    fv_mlp_arch_t before = a;
    fv_diag_t d;
    d.msg[0] = '\0';
    int r = fv_mlp_parse_arch(spec, n_in, n_classes, &a, &d);
    if (r != FV_EINVAL)
        fprintf(stderr, "spec '%s'\n", spec ? spec : "(null)");
    CHECK_INT_EQ(r, FV_EINVAL);
    CHECK_CONTAINS(d.msg, needle);
    CHECK(memcmp(&a, &before, sizeof a) == 0); /* ret untouched on failure */
}

static void test_parse_arch(void)
{
    fv_mlp_arch_t a;
    fv_diag_t d, *dp = &d;

    CHECK_OK(fv_mlp_parse_arch("logreg", 10, 2, &a, dp), dp);
    CHECK_UINT_EQ(a.n_in, 10);
    CHECK_UINT_EQ(a.n_hidden, 0);
    CHECK_UINT_EQ(a.n_out, 1);

    CHECK_OK(fv_mlp_parse_arch("logreg", 7, 5, &a, dp), dp);
    CHECK_UINT_EQ(a.n_out, 5);

    CHECK_OK(fv_mlp_parse_arch("mlp:64,32", 10, 3, &a, dp), dp);
    CHECK_UINT_EQ(a.n_in, 10);
    CHECK_UINT_EQ(a.n_hidden, 2);
    CHECK_UINT_EQ(a.hidden[0], 64);
    CHECK_UINT_EQ(a.hidden[1], 32);
    CHECK_UINT_EQ(a.n_out, 3);

    CHECK_OK(fv_mlp_parse_arch("mlp:1,2,3,4,5,6,7,8", 4, 2, &a, dp), dp);
    CHECK_UINT_EQ(a.n_hidden, 8);
    CHECK_UINT_EQ(a.hidden[7], 8);
    CHECK_OK(fv_mlp_parse_arch("mlp:65536", 4, 2, &a, dp), dp);
    CHECK_UINT_EQ(a.hidden[0], FV_MLP_MAX_WIDTH);
    CHECK_OK(fv_mlp_parse_arch("mlp:007", 4, 2, &a, dp), dp);
    CHECK_UINT_EQ(a.hidden[0], 7);

    check_parse_bad("mlp:", 4, 2, "no hidden layer widths");
    check_parse_bad("mlp:0", 4, 2, "hidden layer 1: width 0; expected 1..65536 units");
    check_parse_bad("mlp:a", 4, 2, "hidden layer 1: expected a width (digits), got 'a'");
    check_parse_bad("mlp:1,2,3,4,5,6,7,8,9", 4, 2, "more than 8 hidden layers");
    check_parse_bad("mlp:65537", 4, 2, "width above the limit; expected 1..65536 units");
    check_parse_bad("mlp:64,99999999999999999999999999", 4, 2,
                    "hidden layer 2: width above the limit");
    check_parse_bad("mlp:64,", 4, 2, "hidden layer 2: missing width");
    check_parse_bad("mlp:64;32", 4, 2, "unexpected ';'");
    check_parse_bad("mlp:-3", 4, 2, "got '-'");
    check_parse_bad("mlp: 3", 4, 2, "got ' '");
    check_parse_bad("mlp:,3", 4, 2, "got ','");
    check_parse_bad("rnn:4", 4, 2, "unknown; expected 'logreg' or 'mlp:H1,H2,...'");
    check_parse_bad("", 4, 2, "unknown");
    check_parse_bad("LOGREG", 4, 2, "unknown");
    check_parse_bad(NULL, 4, 2, "no spec");
    check_parse_bad("logreg", 0, 2, "0 input features");
    check_parse_bad("logreg", FV_MLP_MAX_WIDTH + 1, 2, "input features");
    check_parse_bad("logreg", 4, 1, "1 classes; need 2..");
    /* the spec is quoted in the message */
    check_parse_bad("mlp:12,x", 4, 2, "architecture 'mlp:12,x'");
    /* diag may be NULL */
    CHECK_INT_EQ(fv_mlp_parse_arch("mlp:", 4, 2, &a, NULL), FV_EINVAL);
}

static void test_arch_string(void)
{
    const char *specs[] = {"logreg", "mlp:512,256", "mlp:1,2,3,4,5,6,7,8", "mlp:65536", "mlp:3"};
    char buf[128];
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        fv_mlp_arch_t a;
        fv_diag_t d, *dp = &d;
        CHECK_OK(fv_mlp_parse_arch(specs[i], 9, 2, &a, dp), dp);
        CHECK(fv_mlp_arch_string(&a, buf, sizeof buf) == buf);
        CHECK_STR_EQ(buf, specs[i]);
        fv_mlp_arch_t b;
        CHECK_OK(fv_mlp_parse_arch(buf, 9, 2, &b, dp), dp);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
    }
    /* truncation keeps the buffer NUL-terminated */
    fv_mlp_arch_t a;
    CHECK_OK(fv_mlp_parse_arch("mlp:512,256", 9, 2, &a, NULL), NULL);
    char small[7];
    fv_mlp_arch_string(&a, small, sizeof small);
    CHECK_STR_EQ(small, "mlp:51");
    fv_mlp_arch_string(&a, small, 1);
    CHECK_STR_EQ(small, "");
}

/* ---- model layout and lifecycle -------------------------------------------------- */

static void test_new_layout(void)
{
    size_t h[2] = {4, 3};
    fv_mlp_arch_t a = mk_arch(5, 2, h, 1);
    fv_mlp_t *m = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    /* W0 5x4, b0 4, W1 4x3, b1 3, W2 3x1, b2 1 */
    CHECK_UINT_EQ(fv_mlp_n_params(m), 20 + 4 + 12 + 3 + 3 + 1);
    const uint8_t *mask = fv_mlp_decay_mask(m);
    const float *p = fv_mlp_params_const(m);
    uint8_t want[43];
    size_t k = 0;
    for (size_t i = 0; i < 20; i++)
        want[k++] = 1;
    for (size_t i = 0; i < 4; i++)
        want[k++] = 0;
    for (size_t i = 0; i < 12; i++)
        want[k++] = 1;
    for (size_t i = 0; i < 3; i++)
        want[k++] = 0;
    for (size_t i = 0; i < 3; i++)
        want[k++] = 1;
    want[k++] = 0;
    CHECK_UINT_EQ(k, 43);
    for (size_t i = 0; i < 43; i++) {
        CHECK_UINT_EQ(mask[i], want[i]);
        CHECK(p[i] == 0.0f); /* zeroed by new */
    }
    CHECK(fv_mlp_params(m) == p);
    CHECK(fv_mlp_arch(m)->n_hidden == 2 && fv_mlp_arch(m)->hidden[1] == 3);
    fv_mlp_free(m);
    fv_mlp_free(NULL);

    /* invalid architectures */
    fv_mlp_arch_t bad = mk_arch(0, 0, NULL, 1);
    CHECK_INT_EQ(fv_mlp_new(&bad, &m), FV_EINVAL);
    bad = mk_arch(3, 0, NULL, 0);
    CHECK_INT_EQ(fv_mlp_new(&bad, &m), FV_EINVAL);
    size_t big[1] = {FV_MLP_MAX_WIDTH + 1};
    bad = mk_arch(3, 1, big, 1);
    CHECK_INT_EQ(fv_mlp_new(&bad, &m), FV_EINVAL);
    bad = mk_arch(3, 1, h, 1);
    bad.n_hidden = FV_MLP_MAX_HIDDEN + 1;
    CHECK_INT_EQ(fv_mlp_new(&bad, &m), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_new(NULL, &m), FV_EINVAL);

    /* flops: 100-512-256-1 */
    size_t hb[2] = {512, 256};
    fv_mlp_arch_t ab = mk_arch(100, 2, hb, 1);
    double fwd = 2.0 * (100 * 512 + 512 * 256 + 256 * 1);
    CHECK_NEAR(fv_mlp_flops_forward(&ab), fwd, 0);
    CHECK_NEAR(fv_mlp_flops_train(&ab), 3 * fwd - 2.0 * 100 * 512, 0);
}

static void test_init_clone(void)
{
    size_t h[2] = {200, 50};
    fv_mlp_arch_t a = mk_arch(100, 2, h, 3);
    fv_mlp_t *m1 = NULL, *m2 = NULL, *m3 = NULL;
    CHECK_OK(fv_mlp_new(&a, &m1), NULL);
    CHECK_OK(fv_mlp_new(&a, &m2), NULL);
    CHECK_OK(fv_mlp_new(&a, &m3), NULL);
    size_t np = fv_mlp_n_params(m1);
    fv_mlp_init(m1, 42);
    fv_mlp_init(m2, 42);
    fv_mlp_init(m3, 43);
    CHECK(memcmp(fv_mlp_params(m1), fv_mlp_params(m2), np * sizeof(float)) == 0);
    CHECK(memcmp(fv_mlp_params(m1), fv_mlp_params(m3), np * sizeof(float)) != 0);

    /* He-normal on the hidden layers, Glorot-uniform at the output, zero biases. */
    const float *p = fv_mlp_params_const(m1);
    const size_t dims[4] = {100, 200, 50, 3};
    size_t off = 0;
    for (size_t l = 0; l < 3; l++) {
        size_t nw = dims[l] * dims[l + 1];
        double s = 0, s2 = 0, mx = 0;
        for (size_t i = 0; i < nw; i++) {
            s += p[off + i];
            s2 += (double)p[off + i] * p[off + i];
            mx = fmax(mx, fabs(p[off + i]));
        }
        double mean = s / (double)nw, sd = sqrt(s2 / (double)nw - mean * mean);
        if (l < 2) {
            double want = sqrt(2.0 / (double)dims[l]);
            CHECK_NEAR(sd, want, 0.05 * want); /* 20000 / 10000 draws: ~1% sampling error */
            CHECK_NEAR(mean, 0.0, 0.05 * want);
        } else {
            double lim = sqrt(6.0 / (double)(dims[2] + dims[3]));
            CHECK(mx <= lim);
            CHECK(mx > 0.5 * lim);
        }
        off += nw;
        for (size_t i = 0; i < dims[l + 1]; i++)
            CHECK(p[off + i] == 0.0f);
        off += dims[l + 1];
    }
    CHECK_UINT_EQ(off, np);

    /* clone: same architecture and parameters, independent storage */
    fv_mlp_t *c = NULL;
    CHECK_OK(fv_mlp_clone(m1, &c), NULL);
    CHECK_UINT_EQ(fv_mlp_n_params(c), np);
    CHECK(memcmp(fv_mlp_arch(c), fv_mlp_arch(m1), sizeof(fv_mlp_arch_t)) == 0);
    CHECK(memcmp(fv_mlp_params(c), fv_mlp_params(m1), np * sizeof(float)) == 0);
    CHECK(memcmp(fv_mlp_decay_mask(c), fv_mlp_decay_mask(m1), np) == 0);
    CHECK(fv_mlp_params(c) != fv_mlp_params(m1));
    fv_mlp_params(c)[0] += 1.0f;
    CHECK(fv_mlp_params(c)[0] != fv_mlp_params(m1)[0]);

    /* logistic regression starts at zero whatever the seed */
    fv_mlp_arch_t al = mk_arch(6, 0, NULL, 1);
    fv_mlp_t *lr = NULL;
    CHECK_OK(fv_mlp_new(&al, &lr), NULL);
    fv_mlp_params(lr)[0] = 5.0f;
    fv_mlp_init(lr, 7);
    for (size_t i = 0; i < fv_mlp_n_params(lr); i++)
        CHECK(fv_mlp_params(lr)[i] == 0.0f);

    fv_mlp_free(lr);
    fv_mlp_free(c);
    fv_mlp_free(m1);
    fv_mlp_free(m2);
    fv_mlp_free(m3);
}

/* ---- loss: hand-computed values -------------------------------------------------- */

static void test_loss_hand(void)
{
    /* Binary logistic regression, 2 inputs: W = [1, -2], b = 0.5.
     * Row 0: x = [1, 1], y = 1, weight 1 -> z = -0.5
     * Row 1: x = [2, 0], y = 0, weight 3 -> z = 2.5
     * pos_weight 2:
     *   L = (1 * 2 * log(1 + e^0.5) + 3 * log(1 + e^2.5)) / 2
     *     = (2 * 0.974076984180107 + 3 * 2.578889734292550) / 2 = 4.842411585618931
     *   dL/dz0 = 1 * -2 * sigmoid(0.5) / 2 = -0.622459331201855
     *   dL/dz1 = 3 * sigmoid(2.5) / 2     =  1.386212729968135
     *   dW = x0 dz0 + x1 dz1 = [-0.622459 + 2 * 1.386213, -0.622459] = [2.149966, -0.622459]
     *   db = dz0 + dz1 = 0.763753398766280 */
    fv_mlp_arch_t a = mk_arch(2, 0, NULL, 1);
    fv_mlp_t *m = NULL;
    fv_mlp_ws_t *ws = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    CHECK_OK(fv_mlp_ws_new(m, 4, &ws), NULL);
    float *p = fv_mlp_params(m);
    p[0] = 1.0f;
    p[1] = -2.0f;
    p[2] = 0.5f;
    const float x[4] = {1, 1, 2, 0};
    const int32_t y[2] = {1, 0};
    const float w[2] = {1, 3};
    float g[3];
    double loss = 0;
    CHECK_OK(fv_mlp_loss_grad(m, ws, x, y, w, 2, 2.0f, g, &loss), NULL);
    CHECK_NEAR(loss, 4.842411585618931, 1e-6);
    CHECK_NEAR(g[0], 2.149966128734415, 1e-6);
    CHECK_NEAR(g[1], -0.622459331201855, 1e-6);
    CHECK_NEAR(g[2], 0.763753398766280, 1e-6);
    double loss2 = 0;
    CHECK_OK(fv_mlp_loss(m, ws, x, y, w, 2, 2.0f, &loss2), NULL);
    CHECK(loss2 == loss);

    /* No weights, pos_weight 1: (log(1 + e^0.5) + log(1 + e^2.5)) / 2 */
    CHECK_OK(fv_mlp_loss(m, ws, x, y, NULL, 2, 1.0f, &loss), NULL);
    CHECK_NEAR(loss, (0.974076984180107 + 2.578889734292550) / 2, 1e-6);

    /* Extreme logits stay finite: z = -100 for a positive costs pos_weight * 100. */
    p[0] = -100.0f;
    p[1] = 0.0f;
    p[2] = 0.0f;
    const int32_t y1[1] = {1};
    CHECK_OK(fv_mlp_loss_grad(m, ws, x, y1, NULL, 1, 1.0f, g, &loss), NULL);
    CHECK_NEAR(loss, 100.0, 1e-9);
    CHECK_NEAR(g[2], -1.0, 1e-7);
    const int32_t y0[1] = {0};
    CHECK_OK(fv_mlp_loss_grad(m, ws, x, y0, NULL, 1, 1.0f, g, &loss), NULL);
    CHECK_NEAR(loss, exp(-100.0), 1e-40);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);

    /* Multi-class logistic regression, K = 3, W = 0, b = [0, 1, 2]: every row's logits
     * are [0, 1, 2]; y = [0, 2]:
     *   L = log(1 + e + e^2) - (0 + 2) / 2 = 2.407605964444380 - 1
     *   db_j = softmax_j - mean(onehot_j) = [0.090031 - 0.5, 0.244728, 0.665241 - 0.5] */
    a = mk_arch(2, 0, NULL, 3);
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    CHECK_OK(fv_mlp_ws_new(m, 2, &ws), NULL);
    p = fv_mlp_params(m);
    p[6] = 0.0f;
    p[7] = 1.0f;
    p[8] = 2.0f;
    const int32_t ym[2] = {0, 2};
    float gm[9];
    CHECK_OK(fv_mlp_loss_grad(m, ws, x, ym, NULL, 2, 1.0f, gm, &loss), NULL);
    CHECK_NEAR(loss, 1.407605964444380, 1e-6);
    CHECK_NEAR(gm[6], 0.090030573170381 - 0.5, 1e-6);
    CHECK_NEAR(gm[7], 0.244728471054798, 1e-6);
    CHECK_NEAR(gm[8], 0.665240955774822 - 0.5, 1e-6);
    /* dW[i][j] = mean over rows of x_i * delta_j: rows x = [1,1] (y 0) and [2,0] (y 2) */
    CHECK_NEAR(gm[0], (1 * (0.090030573170381 - 1) + 2 * 0.090030573170381) / 2, 1e-6);
    CHECK_NEAR(gm[5], (1 * (0.665240955774822 - 0) + 0) / 2, 1e-6);
    /* pos_weight is ignored for multi-class */
    CHECK_OK(fv_mlp_loss(m, ws, x, ym, NULL, 2, 5.0f, &loss2), NULL);
    CHECK(loss2 == loss);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);
}

/* ---- gradient check -------------------------------------------------------------- */

typedef struct gcase {
    size_t n_in, n_hidden, hidden[2], n_out;
    int weighted;
    float pos_weight;
} gcase_t;

static void grad_check(const gcase_t *gc, uint64_t seed)
{
    enum { N = 6 };
    fv_mlp_arch_t a = mk_arch(gc->n_in, gc->n_hidden, gc->hidden, gc->n_out);
    fv_mlp_t *m = NULL;
    fv_mlp_ws_t *ws = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    CHECK_OK(fv_mlp_ws_new(m, N, &ws), NULL);
    size_t np = fv_mlp_n_params(m);
    float *p = fv_mlp_params(m);
    float *g = malloc(np * sizeof *g);
    double *pd = malloc(np * sizeof *pd);
    float x[N * 8];
    int32_t y[N];
    float w[N];
    CHECK(g && pd && gc->n_in <= 8);

    /* Find a data seed whose hidden pre-activations keep clear of the ReLU kink. */
    double min_pre = 0.0;
    fv_rng_t r;
    for (uint64_t s = seed;; s++) {
        fv_rng_seed(&r, s);
        fill_normal(&r, p, np, 0.5); /* biases random too, so their gradients are tested */
        fill_normal(&r, x, N * gc->n_in, 1.0);
        for (size_t i = 0; i < N; i++) {
            y[i] = (int32_t)fv_rng_below(&r, gc->n_out == 1 ? 2 : gc->n_out);
            w[i] = (float)(0.25 + 2.0 * fv_rng_uniform(&r));
        }
        y[0] = gc->n_out == 1 ? 1 : 0; /* make sure the positive term is exercised */
        for (size_t i = 0; i < np; i++)
            pd[i] = p[i];
        ref_loss(&a, pd, x, y, NULL, N, 1.0, &min_pre);
        if (min_pre > 1e-2)
            break;
        CHECK(s < seed + 1000);
    }
    const float *rw = gc->weighted ? w : NULL;

    double loss = 0;
    CHECK_OK(fv_mlp_loss_grad(m, ws, x, y, rw, N, gc->pos_weight, g, &loss), NULL);
    double want = ref_loss(&a, pd, x, y, rw, N, gc->pos_weight, NULL);
    CHECK_NEAR(loss, want, 1e-5 * fmax(1.0, fabs(want)));

    /* (1) double reference, h = 1e-6 */
    const double h = 1e-6;
    for (size_t i = 0; i < np; i++) {
        double keep = pd[i];
        pd[i] = keep + h;
        double lp = ref_loss(&a, pd, x, y, rw, N, gc->pos_weight, NULL);
        pd[i] = keep - h;
        double lm = ref_loss(&a, pd, x, y, rw, N, gc->pos_weight, NULL);
        pd[i] = keep;
        double fd = (lp - lm) / (2 * h);
        if (!(fabs(g[i] - fd) <= 1e-4 + 1e-3 * fabs(fd)))
            fprintf(stderr, "arch %zu-[%zu]-%zu weighted %d pw %g: param %zu\n", gc->n_in,
                    gc->n_hidden, gc->n_out, gc->weighted, (double)gc->pos_weight, i);
        CHECK_NEAR(g[i], fd, 1e-4 + 1e-3 * fabs(fd));
    }

    /* (2) the library against itself, float forward, eps = 1e-3 */
    const float eps = 1e-3f;
    for (size_t i = 0; i < np; i++) {
        float keep = p[i];
        double lp, lm;
        p[i] = keep + eps;
        CHECK_OK(fv_mlp_loss(m, ws, x, y, rw, N, gc->pos_weight, &lp), NULL);
        p[i] = keep - eps;
        CHECK_OK(fv_mlp_loss(m, ws, x, y, rw, N, gc->pos_weight, &lm), NULL);
        p[i] = keep;
        double fd = (lp - lm) / ((double)(keep + eps) - (double)(keep - eps));
        CHECK_NEAR(g[i], fd, 3e-3 + 2e-2 * fabs(fd));
    }

    /* The gradient fully overwrites its buffer. */
    float *g2 = malloc(np * sizeof *g2);
    CHECK(g2 != NULL);
    for (size_t i = 0; i < np; i++)
        g2[i] = NAN;
    CHECK_OK(fv_mlp_loss_grad(m, ws, x, y, rw, N, gc->pos_weight, g2, &loss), NULL);
    CHECK(memcmp(g, g2, np * sizeof *g) == 0);

    free(g2);
    free(g);
    free(pd);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);
}

static void test_grad(void)
{
    const gcase_t cases[] = {
        {5, 2, {4, 3}, 1, 0, 1.0f}, /* 5-4-3-1 binary */
        {5, 2, {4, 3}, 1, 1, 3.0f}, /* with row weights and pos_weight */
        {5, 2, {4, 3}, 1, 0, 0.4f}, {5, 1, {4, 0}, 3, 0, 1.0f}, /* 5-4-3 multi-class */
        {5, 1, {4, 0}, 3, 1, 1.0f}, {5, 2, {4, 3}, 4, 1, 1.0f},
        {5, 0, {0, 0}, 1, 1, 2.0f}, /* logistic regression */
        {5, 0, {0, 0}, 3, 1, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        grad_check(&cases[i], 1000 + 17 * i);
}

/* ---- predict / logits ------------------------------------------------------------ */

static void test_predict(void)
{
    enum { N = 37 };
    fv_rng_t r;
    fv_rng_seed(&r, 5);
    float x[N * 6], z[N * 4], pr[N * 4];

    size_t h[2] = {7, 5};
    fv_mlp_arch_t a = mk_arch(6, 2, h, 1);
    fv_mlp_t *m = NULL;
    fv_mlp_ws_t *ws = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    fv_mlp_init(m, 9);
    CHECK_OK(fv_mlp_ws_new(m, N, &ws), NULL);
    fill_normal(&r, x, N * 6, 2.0);
    CHECK_OK(fv_mlp_logits(m, ws, x, N, z), NULL);
    CHECK_OK(fv_mlp_predict(m, ws, x, N, pr), NULL);
    for (size_t i = 0; i < N; i++)
        CHECK_NEAR(pr[i], 1.0 / (1.0 + exp(-(double)z[i])), 1e-6);
    /* logits agree with the double reference */
    size_t np = fv_mlp_n_params(m);
    double *pd = malloc(np * sizeof *pd);
    CHECK(pd != NULL);
    for (size_t i = 0; i < np; i++)
        pd[i] = fv_mlp_params(m)[i];
    for (size_t i = 0; i < N; i++) {
        /* loss of a positive row with pos_weight 1 is softplus(-z): recover z */
        int32_t one = 1;
        double l = ref_loss(&a, pd, x + i * 6, &one, NULL, 1, 1.0, NULL);
        double zr = -log(expm1(l)); /* l = log1p(exp(-z)) */
        CHECK_NEAR(z[i], zr, 1e-4 * fmax(1.0, fabs(zr)));
    }
    free(pd);
    /* n = 0 is a no-op; n over the workspace size is refused */
    CHECK_OK(fv_mlp_predict(m, ws, x, 0, pr), NULL);
    CHECK_INT_EQ(fv_mlp_predict(m, ws, x, N + 1, pr), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_logits(m, ws, x, N + 1, pr), FV_EINVAL);
    /* a workspace of another architecture is refused */
    fv_mlp_arch_t a2 = mk_arch(6, 1, h, 1);
    fv_mlp_t *m2 = NULL;
    CHECK_OK(fv_mlp_new(&a2, &m2), NULL);
    CHECK_INT_EQ(fv_mlp_predict(m2, ws, x, 1, pr), FV_EINVAL);
    fv_mlp_free(m2);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);

    /* multi-class: rows of probabilities sum to 1 and are the softmax of the logits */
    a = mk_arch(6, 2, h, 4);
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    fv_mlp_init(m, 10);
    CHECK_OK(fv_mlp_ws_new(m, N, &ws), NULL);
    CHECK_OK(fv_mlp_logits(m, ws, x, N, z), NULL);
    CHECK_OK(fv_mlp_predict(m, ws, x, N, pr), NULL);
    for (size_t i = 0; i < N; i++) {
        double s = 0, se = 0;
        for (size_t k = 0; k < 4; k++) {
            s += pr[i * 4 + k];
            se += exp((double)z[i * 4 + k]);
            CHECK(pr[i * 4 + k] >= 0.0f && pr[i * 4 + k] <= 1.0f);
        }
        CHECK_NEAR(s, 1.0, 1e-5);
        for (size_t k = 0; k < 4; k++)
            CHECK_NEAR(pr[i * 4 + k], exp((double)z[i * 4 + k]) / se, 1e-6);
    }
    /* a model shared by a clone's workspace: same architecture, so allowed */
    fv_mlp_t *c = NULL;
    CHECK_OK(fv_mlp_clone(m, &c), NULL);
    float pr2[N * 4];
    CHECK_OK(fv_mlp_predict(c, ws, x, N, pr2), NULL);
    CHECK(memcmp(pr, pr2, sizeof pr) == 0);
    fv_mlp_free(c);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);
}

/* A row's score does not depend on the rows that share its batch, or on the BLAS thread
 * count, beyond rounding: OpenBLAS picks kernels (and the summation order) by shape and
 * CPU, so this is a tolerance, not bit-equality (issue 14: an AVX-512 EPYC differed from
 * an Intel core in the 8th digit). The same 300 rows through an mlp:64,32 (binary and
 * 5-class) in batches of 1, 7, 64, 300 and with 1 and 2 threads agree with the batch-300,
 * one-thread scores to PROB_TOL = 1e-6 absolute (logits: 1e-5 relative). */
#define PROB_TOL 1e-6
static void test_batch_independence(void)
{
    enum { N = 300, D = 40 };
    size_t h[2] = {64, 32}, outs[2] = {1, 5};
    float *x = malloc(N * D * sizeof *x), *ref = malloc(N * 5 * sizeof *ref),
          *got = malloc(N * 5 * sizeof *got), *zr = malloc(N * 5 * sizeof *zr),
          *zg = malloc(N * 5 * sizeof *zg);
    CHECK(x && ref && got && zr && zg);
    fv_rng_t r;
    fv_rng_seed(&r, 77);
    fill_normal(&r, x, N * D, 1.5);
    int threads0 = fv_blas_get_threads();
    for (size_t o = 0; o < 2; o++) {
        size_t K = outs[o];
        fv_mlp_arch_t a = mk_arch(D, 2, h, K);
        fv_mlp_t *m = NULL;
        fv_mlp_ws_t *ws = NULL;
        CHECK_OK(fv_mlp_new(&a, &m), NULL);
        fv_mlp_init(m, 31 + o);
        CHECK_OK(fv_mlp_ws_new(m, N, &ws), NULL);
        fv_blas_set_threads(1);
        CHECK_OK(fv_mlp_predict(m, ws, x, N, ref), NULL);
        CHECK_OK(fv_mlp_logits(m, ws, x, N, zr), NULL);
        static const size_t batches[] = {1, 7, 64, N};
        for (int t = 1; t <= 2; t++) {
            fv_blas_set_threads(t);
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                size_t bs = batches[b];
                for (size_t i = 0; i < N; i += bs) {
                    size_t n = N - i < bs ? N - i : bs;
                    CHECK_OK(fv_mlp_predict(m, ws, x + i * D, n, got + i * K), NULL);
                    CHECK_OK(fv_mlp_logits(m, ws, x + i * D, n, zg + i * K), NULL);
                }
                double worst = 0, worst_z = 0;
                for (size_t i = 0; i < N * K; i++) {
                    worst = fmax(worst, fabs((double)got[i] - (double)ref[i]));
                    worst_z = fmax(worst_z, fabs((double)zg[i] - (double)zr[i]) /
                                                fmax(1.0, fabs((double)zr[i])));
                }
                if (!(worst <= PROB_TOL && worst_z <= 1e-5))
                    FV__FAIL("%zu outputs, batch %zu, %d threads: max |dprob| %.3g (tol %.0e), "
                             "max rel |dlogit| %.3g (tol 1e-5)",
                             K, bs, t, worst, PROB_TOL, worst_z);
            }
        }
        fv_mlp_ws_free(ws);
        fv_mlp_free(m);
    }
    fv_blas_set_threads(threads0);
    free(x), free(ref), free(got), free(zr), free(zg);
}

/* ---- scoring's direct path (mlp_dense.c) ------------------------------------------- */

/* z_ref (double) and the bound of mlp_dense.c's top note for one output. */
static void dense_ref(const float *x, size_t in, const float *w, const float *b, size_t o, size_t j,
                      double *ret_z, double *ret_bound)
{
    double z = b[j], mag = fabs((double)b[j]);
    for (size_t i = 0; i < in; i++) {
        z += (double)x[i] * (double)w[i * o + j];
        mag += fabs((double)x[i] * (double)w[i * o + j]);
    }
    *ret_z = z;
    *ret_bound = (double)(in + 2) * 0x1p-24 * mag;
}

static void check_dense(int isa, size_t n, size_t in, size_t o, bool relu, fv_rng_t *r)
{
    enum { GUARD = 9 };
    float *x = malloc(n * in * sizeof *x), *w = malloc(in * o * sizeof *w),
          *b = malloc(o * sizeof *b), *z = malloc((n * o + GUARD) * sizeof *z),
          *z1 = malloc(o * sizeof *z1);
    CHECK(x && w && b && z && z1);
    fill_normal(r, x, n * in, 1.0);
    fill_normal(r, w, in * o, 1.0 / sqrt((double)in));
    fill_normal(r, b, o, 0.3);
    for (size_t i = 0; i < n * o + GUARD; i++)
        z[i] = -7.0f; /* canary after the n x o outputs */
    fv__mlp_dense(isa, x, n, in, w, b, o, relu, z);
    for (size_t i = n * o; i < n * o + GUARD; i++)
        CHECK(z[i] == -7.0f);
    for (size_t rr = 0; rr < n; rr++) {
        for (size_t j = 0; j < o; j++) {
            double zr, bound;
            dense_ref(x + rr * in, in, w, b, o, j, &zr, &bound);
            if (relu)
                zr = zr < 0 ? 0 : zr; /* 1-Lipschitz: the bound carries over */
            double got = z[rr * o + j];
            if (!(fabs(got - zr) <= bound) || (relu && !(got >= 0)))
                FV__FAIL("isa %d n %zu in %zu o %zu relu %d: row %zu out %zu: %.9g vs %.9g "
                         "(bound %.3g)",
                         isa, n, in, o, (int)relu, rr, j, got, zr, bound);
        }
        /* a row's outputs do not depend on the rest of the batch, bit for bit */
        fv__mlp_dense(isa, x + rr * in, 1, in, w, b, o, relu, z1);
        CHECK(memcmp(z1, z + rr * o, o * sizeof *z1) == 0);
    }
    free(x), free(w), free(b), free(z), free(z1);
}

static void test_dense_kernel(void)
{
    static const size_t ins[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 119, 130};
    static const size_t outs[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  15,
                                  16, 17, 31, 32, 33, 63, 64, 65, 128};
    fv_rng_t r;
    fv_rng_seed(&r, 2020);
    CHECK(fv__mlp_dense_has(FV__MLP_ISA_BASE));
    int isas = fv__mlp_dense_has(FV__MLP_ISA_AVX2) ? 2 : 1;
    if (isas == 1)
        printf("test_mlp: no AVX2+FMA here: the baseline copy only (twice)\n");
    for (int isa = 0; isa < 2; isa++)
        for (size_t a = 0; a < sizeof ins / sizeof ins[0]; a++)
            for (size_t c = 0; c < sizeof outs / sizeof outs[0]; c++)
                for (size_t n = 1; n <= 5; n += 2)
                    for (int relu = 0; relu < 2; relu++)
                        check_dense(isa, n, ins[a], outs[c], relu, &r);

    /* ReLU keeps NaN (a diverged model stays visible) and maps -0 like fv_vec_relu */
    float x[8] = {1, 2, NAN, 4, 5, 6, 7, 8}, w[8 * 4], b[4] = {0, 0, 0, 0}, z[4];
    for (size_t i = 0; i < 8 * 4; i++)
        w[i] = 0.25f;
    for (int isa = 0; isa < 2; isa++) {
        fv__mlp_dense(isa, x, 1, 8, w, b, 4, true, z);
        for (size_t j = 0; j < 4; j++)
            CHECK(isnan(z[j]));
        fv__mlp_dense(isa, x, 1, 8, w, b, 1, true, z);
        CHECK(isnan(z[0]));
        x[2] = -100.0f;
        fv__mlp_dense(isa, x, 1, 8, w, b, 4, true, z);
        for (size_t j = 0; j < 4; j++)
            CHECK(z[j] == 0.0f && !signbit(z[j]));
        x[2] = NAN;
    }
}

/* Float forward over fv_gemm_ref (the gemm path's semantics) and the first-order error
 * bound of any float evaluation: per layer the bound of a sum of in + 1 terms, applied to
 * the forward pass of |x|, |W|, |b| (which dominates every intermediate), propagated. */
static void ref_forward(const fv_mlp_t *m, const float *x, size_t n, float *out, double *bound)
{
    const fv_mlp_arch_t *a = fv_mlp_arch(m);
    size_t dims[FV_MLP_MAX_HIDDEN + 2];
    size_t nl = arch_dims(a, dims), off = 0, total_in = 0;
    const float *p = fv_mlp_params_const(m);
    float *cur = malloc(n * 256 * sizeof *cur), *nxt = malloc(n * 256 * sizeof *nxt);
    double *acur = malloc(n * 256 * sizeof *acur), *anxt = malloc(n * 256 * sizeof *anxt);
    CHECK(cur && nxt && acur && anxt);
    for (size_t i = 0; i < n * dims[0]; i++) {
        cur[i] = x[i];
        acur[i] = fabs((double)x[i]);
    }
    for (size_t l = 0; l < nl; l++) {
        size_t in = dims[l], o = dims[l + 1];
        CHECK(in <= 256 && o <= 256);
        const float *w = p + off, *b = p + off + in * o;
        fv_gemm_ref(false, false, n, o, in, 1.0f, cur, in, w, o, 0.0f, nxt, o);
        for (size_t r = 0; r < n; r++)
            for (size_t j = 0; j < o; j++) {
                float v = nxt[r * o + j] + b[j];
                nxt[r * o + j] = l + 1 < nl && v < 0.0f ? 0.0f : v;
                double s = fabs((double)b[j]);
                for (size_t i = 0; i < in; i++)
                    s += acur[r * in + i] * fabs((double)w[i * o + j]);
                anxt[r * o + j] = s;
            }
        total_in += in + 2;
        off += in * o + o;
        float *t = cur;
        cur = nxt, nxt = t;
        double *u = acur;
        acur = anxt, anxt = u;
    }
    for (size_t i = 0; i < n * dims[nl]; i++) {
        out[i] = cur[i];
        /* both sides' rounding, with a factor 2 for second-order terms */
        bound[i] = 4.0 * (double)total_in * 0x1p-24 * acur[i] + 1e-30;
    }
    free(cur), free(nxt), free(acur), free(anxt);
}

static void test_score_paths(void)
{
    /* The rule's sides, as the shapes below rely on them. */
    CHECK(fv__mlp_direct(1, 128) && fv__mlp_direct(FV__MLP_DIRECT_ROWS, 16));
    CHECK(!fv__mlp_direct(FV__MLP_DIRECT_ROWS + 1, 16) && !fv__mlp_direct(64, 3));
    CHECK(fv__mlp_direct(1024, 4) && fv__mlp_direct(1024, 1));
    enum { N = 70, D = 30 };
    static const size_t batches[] = {1, 2, 3, 4, 5, 8, 64, N};
    struct {
        size_t n_hidden, hidden[2], n_out;
    } nets[] = {{1, {4, 0}, 1}, {2, {16, 4}, 1}, {2, {33, 8}, 3}, {1, {40, 0}, 5}, {0, {0, 0}, 1}};
    fv_rng_t r;
    fv_rng_seed(&r, 99);
    float *x = malloc(N * D * sizeof *x), *z = malloc(N * 5 * sizeof *z),
          *zr = malloc(N * 5 * sizeof *zr);
    double *bound = malloc(N * 5 * sizeof *bound);
    CHECK(x && z && zr && bound);
    fill_normal(&r, x, N * D, 1.0);
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++) {
        fv_mlp_arch_t a = mk_arch(D, nets[k].n_hidden, nets[k].hidden, nets[k].n_out);
        fv_mlp_t *m = NULL;
        fv_mlp_ws_t *ws = NULL;
        CHECK_OK(fv_mlp_new(&a, &m), NULL);
        fv_mlp_init(m, 40 + k);
        float *p = fv_mlp_params(m); /* non-zero biases, so their addition is checked */
        for (size_t i = 0; i < fv_mlp_n_params(m); i++)
            if (fv_mlp_decay_mask(m)[i] == 0)
                p[i] = (float)(0.2 * fv_rng_normal(&r));
        CHECK_OK(fv_mlp_ws_new(m, N, &ws), NULL);
        ref_forward(m, x, N, zr, bound);
        size_t K = nets[k].n_out;
        /* isa 1: fv_mlp_logits itself (the AVX2+FMA copy where there is one); isa 0: the
         * baseline copy of the same forward pass */
        for (int isa = 1; isa >= 0; isa--)
            for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
                size_t bs = batches[bi];
                for (size_t i = 0; i < N * K; i++)
                    z[i] = NAN; /* every logit must be written by this pass */
                for (size_t i = 0; i < N; i += bs) {
                    size_t n = N - i < bs ? N - i : bs;
                    if (isa == 1)
                        CHECK_OK(fv_mlp_logits(m, ws, x + i * D, n, z + i * K), NULL);
                    else
                        fv__mlp_forward_score_isa(FV__MLP_ISA_BASE, m, ws, x + i * D, n, z + i * K);
                }
                for (size_t i = 0; i < N * K; i++)
                    if (!(fabs((double)z[i] - (double)zr[i]) <= bound[i]))
                        FV__FAIL("net %zu, isa %d, batch %zu: logit %zu: %.9g vs %.9g (bound %.3g)",
                                 k, isa, bs, i, z[i], zr[i], bound[i]);
            }
        fv_mlp_ws_free(ws);
        fv_mlp_free(m);
    }
    free(x), free(z), free(zr), free(bound);
}

/* ---- errors ---------------------------------------------------------------------- */

static void test_errors(void)
{
    size_t h[1] = {4};
    fv_mlp_arch_t a = mk_arch(3, 1, h, 1);
    fv_mlp_t *m = NULL;
    fv_mlp_ws_t *ws = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    fv_mlp_init(m, 1);
    CHECK_INT_EQ(fv_mlp_ws_new(m, 0, &ws), FV_EINVAL);
    CHECK_OK(fv_mlp_ws_new(m, 4, &ws), NULL);
    size_t np = fv_mlp_n_params(m);
    float x[5 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6};
    int32_t y[5] = {0, 1, 0, 1, 1};
    float g[64];
    double loss = -1;
    CHECK(np <= 64);

    /* batch larger than the workspace */
    CHECK_INT_EQ(fv_mlp_loss_grad(m, ws, x, y, NULL, 5, 1.0f, g, &loss), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_loss(m, ws, x, y, NULL, 5, 1.0f, &loss), FV_EINVAL);
    /* empty batch */
    CHECK_INT_EQ(fv_mlp_loss_grad(m, ws, x, y, NULL, 0, 1.0f, g, &loss), FV_EINVAL);
    /* bad labels, weights, pos_weight */
    int32_t ybad[4] = {0, 2, 0, 1};
    CHECK_INT_EQ(fv_mlp_loss_grad(m, ws, x, ybad, NULL, 4, 1.0f, g, &loss), FV_EINVAL);
    ybad[1] = -1;
    CHECK_INT_EQ(fv_mlp_loss(m, ws, x, ybad, NULL, 4, 1.0f, &loss), FV_EINVAL);
    float wbad[4] = {1, -1, 1, 1};
    CHECK_INT_EQ(fv_mlp_loss(m, ws, x, y, wbad, 4, 1.0f, &loss), FV_EINVAL);
    wbad[1] = NAN;
    CHECK_INT_EQ(fv_mlp_loss(m, ws, x, y, wbad, 4, 1.0f, &loss), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_loss(m, ws, x, y, NULL, 4, 0.0f, &loss), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_loss(m, ws, x, y, NULL, 4, NAN, &loss), FV_EINVAL);
    CHECK(loss == -1); /* never written on failure */
    /* zero row weights are fine: the loss is 0 */
    float w0[4] = {0, 0, 0, 0};
    CHECK_OK(fv_mlp_loss_grad(m, ws, x, y, w0, 4, 1.0f, g, &loss), NULL);
    CHECK(loss == 0.0);
    for (size_t i = 0; i < np; i++)
        CHECK(g[i] == 0.0f);

    /* NaN parameters or inputs: FV_ENUMERIC */
    loss = -1;
    float xn[3] = {1, NAN, 0};
    CHECK_INT_EQ(fv_mlp_loss_grad(m, ws, xn, y, NULL, 1, 1.0f, g, &loss), FV_ENUMERIC);
    fv_mlp_params(m)[np - 1] = INFINITY;
    CHECK_INT_EQ(fv_mlp_loss(m, ws, x, y, NULL, 4, 1.0f, &loss), FV_ENUMERIC);
    CHECK(loss == -1);

    /* multi-class label range */
    fv_mlp_arch_t a3 = mk_arch(3, 0, NULL, 3);
    fv_mlp_t *m3 = NULL;
    fv_mlp_ws_t *ws3 = NULL;
    CHECK_OK(fv_mlp_new(&a3, &m3), NULL);
    CHECK_OK(fv_mlp_ws_new(m3, 4, &ws3), NULL);
    int32_t y3[2] = {2, 3};
    CHECK_INT_EQ(fv_mlp_loss(m3, ws3, x, y3, NULL, 2, 1.0f, &loss), FV_EINVAL);
    y3[1] = 0;
    CHECK_OK(fv_mlp_loss(m3, ws3, x, y3, NULL, 2, 1.0f, &loss), NULL);
    CHECK_NEAR(loss, log(3.0), 1e-7); /* all-zero model: uniform softmax */
    /* workspace/model mismatch */
    CHECK_INT_EQ(fv_mlp_loss(m, ws3, x, y, NULL, 2, 1.0f, &loss), FV_EINVAL);

    fv_mlp_ws_free(ws3);
    fv_mlp_free(m3);
    fv_mlp_ws_free(ws);
    fv_mlp_ws_free(NULL);
    fv_mlp_free(m);
}

int main(void)
{
    test_parse_arch();
    test_arch_string();
    test_new_layout();
    test_init_clone();
    test_loss_hand();
    test_grad();
    test_predict();
    test_batch_independence();
    test_dense_kernel();
    test_score_paths();
    test_errors();
    puts("ok");
    return 0;
}
