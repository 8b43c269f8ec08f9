/* test_distill.c - the distillation loss (fv_mlp_distill_loss_grad) and the distillation
 * training loop (fv_train_distill).
 *
 * Gradient checks, two layers as in test_mlp.c:
 *   (1) the loss as a function of the logits, against an independent double-precision
 *       reference written from the definition (KL = sum q log(q / p) with the
 *       probabilities themselves, not mlp.c's softplus form) and its central finite
 *       differences (h = 1e-6). A logistic regression on an all-zero input row has
 *       logits = biases, so the bias gradient of one row IS dL/dz. The float32 delta
 *       carries ~1e-7 relative error: |g - fd| <= 1e-6 + 1e-5 |fd|.
 *   (2) whole networks (one ReLU hidden layer, binary and multi-class): central
 *       differences of the float forward pass, eps = 1e-3, against the backward pass,
 *       |diff| <= 3e-3 + 2e-2 |g| (the bound of test_mlp.c, for the same reason). Data
 *       seeds are chosen so hidden pre-activations keep 1e-2 away from the ReLU kink.
 * alpha = 1 must equal plain training bit for bit (memcmp of the parameters), with
 * early stopping on. On the shipped Lending Club data a logistic-regression student
 * distilled from an MLP teacher must reach a test ROC AUC within 0.02 of the teacher's
 * (the run prints both, and a plain logreg's, for the record).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_dataset.h"
#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_rng.h"
#include "fv_schema.h"
#include "fv_test.h"
#include "mlp_auc.h"
#include "fv_train.h"

static fv_diag_t diag;
#define D (&diag)

static fv_mlp_t *make_model(const char *spec, size_t n_in, size_t n_classes, uint64_t seed)
{
    fv_mlp_arch_t a;
    fv_mlp_t *m = NULL;
    CHECK_OK(fv_mlp_parse_arch(spec, n_in, n_classes, &a, D), D);
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    fv_mlp_init(m, seed);
    return m;
}

/* ---- (1) the loss of one row, from the logits ------------------------------------ */

/* Reference per-row loss, from the definitions, in double. k = 1: binary. */
static double ref_row(size_t k, const double *z, const double *zt, int y, double pw, double alpha,
                      double T)
{
    double hard, kl = 0.0;
    if (k == 1) {
        double p1 = 1.0 / (1.0 + exp(-z[0]));
        hard = y == 1 ? -pw * log(p1) : -log(1.0 - p1);
        double p = 1.0 / (1.0 + exp(-z[0] / T)), q = 1.0 / (1.0 + exp(-zt[0] / T));
        kl = q * log(q / p) + (1.0 - q) * log((1.0 - q) / (1.0 - p));
    } else {
        double s = 0.0, sp = 0.0, sq = 0.0;
        for (size_t j = 0; j < k; j++) {
            s += exp(z[j]);
            sp += exp(z[j] / T);
            sq += exp(zt[j] / T);
        }
        hard = -log(exp(z[y]) / s);
        for (size_t j = 0; j < k; j++) {
            double p = exp(z[j] / T) / sp, q = exp(zt[j] / T) / sq;
            kl += q * log(q / p);
        }
    }
    return alpha * hard + (1.0 - alpha) * T * T * kl;
}

static void logit_case(size_t k, fv_rng_t *r)
{
    fv_mlp_arch_t a;
    memset(&a, 0, sizeof a);
    a.n_in = 1;
    a.n_out = k;
    fv_mlp_t *m = NULL;
    fv_mlp_ws_t *ws = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    CHECK_OK(fv_mlp_ws_new(m, 1, &ws), NULL);
    float *p = fv_mlp_params(m); /* W (k), then b (k) */
    float g[2 * 8], zt[8], x = 0.0f;
    double z[8], ztd[8];
    CHECK(k <= 8);
    int32_t y = (int32_t)fv_rng_below(r, k == 1 ? 2 : k);
    fv_distill_cfg_t dc = {fv_rng_uniform(r), 0.5 + 4.0 * fv_rng_uniform(r)};
    float pw = k == 1 ? (float)(0.5 + 3.0 * fv_rng_uniform(r)) : 1.0f;
    for (size_t j = 0; j < k; j++) {
        p[j] = 0.0f;
        p[k + j] = (float)(3.0 * fv_rng_normal(r));
        zt[j] = (float)(3.0 * fv_rng_normal(r));
        z[j] = p[k + j];
        ztd[j] = zt[j];
    }
    double loss;
    CHECK_OK(fv_mlp_distill_loss_grad(m, ws, &x, &y, zt, NULL, 1, pw, &dc, g, &loss), NULL);
    double want = ref_row(k, z, ztd, y, pw, dc.alpha, dc.temperature);
    CHECK_NEAR(loss, want, 1e-9 * fmax(1.0, fabs(want)));
    const double h = 1e-6;
    for (size_t j = 0; j < k; j++) {
        double keep = z[j];
        z[j] = keep + h;
        double lp = ref_row(k, z, ztd, y, pw, dc.alpha, dc.temperature);
        z[j] = keep - h;
        double lm = ref_row(k, z, ztd, y, pw, dc.alpha, dc.temperature);
        z[j] = keep;
        double fd = (lp - lm) / (2 * h);
        if (!(fabs(g[k + j] - fd) <= 1e-6 + 1e-5 * fabs(fd)))
            fprintf(stderr, "k %zu y %d alpha %g T %g pw %g: logit %zu\n", k, (int)y, dc.alpha,
                    dc.temperature, (double)pw, j);
        CHECK_NEAR(g[k + j], fd, 1e-6 + 1e-5 * fabs(fd));
        CHECK(g[j] == 0.0f); /* dW = x * delta with x = 0 */
    }
    /* The loss-only entry point gives the same number. */
    double loss2;
    CHECK_OK(fv_mlp_distill_loss(m, ws, &x, &y, zt, NULL, 1, pw, &dc, &loss2), NULL);
    CHECK(loss2 == loss);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);
}

static void test_logit_grad(void)
{
    fv_rng_t r;
    fv_rng_seed(&r, 7);
    for (int i = 0; i < 200; i++) {
        logit_case(1, &r);
        logit_case(3, &r);
        logit_case(5, &r);
    }
}

/* Values worked by hand: binary, z = z_t = 0, y = 1, alpha 0.5, T 2: the teachers and
 * student agree (KL 0), hard = log 2, dL/dz = 0.5 (0.5 - 1) = -0.25. And z = 0, z_t = 2,
 * T = 2, alpha = 0: q = sigmoid(1), KL(q || 1/2) = q log 2q + (1-q) log 2(1-q)
 * = 0.110944071671727 (computed apart, in Python); loss 4 * that, dL/dz =
 * 2 (0.5 - sigmoid(1)) = -0.462117157. */
static void test_loss_hand(void)
{
    fv_mlp_arch_t a;
    memset(&a, 0, sizeof a);
    a.n_in = 1;
    a.n_out = 1;
    fv_mlp_t *m = NULL;
    fv_mlp_ws_t *ws = NULL;
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    CHECK_OK(fv_mlp_ws_new(m, 1, &ws), NULL);
    float x = 0.0f, zt = 0.0f, g[2];
    int32_t y = 1;
    double loss;
    fv_distill_cfg_t dc;
    fv_distill_cfg_default(&dc);
    CHECK(dc.alpha == 0.5 && dc.temperature == 2.0);
    CHECK_OK(fv_mlp_distill_loss_grad(m, ws, &x, &y, &zt, NULL, 1, 1.0f, &dc, g, &loss), NULL);
    CHECK_NEAR(loss, 0.5 * log(2.0), 1e-12);
    CHECK_NEAR(g[1], -0.25, 1e-7);

    zt = 2.0f;
    dc.alpha = 0.0;
    double s1 = 1.0 / (1.0 + exp(-1.0));
    double kl = 0.110944071671727;
    CHECK_OK(fv_mlp_distill_loss_grad(m, ws, &x, &y, &zt, NULL, 1, 1.0f, &dc, g, &loss), NULL);
    CHECK_NEAR(loss, 4.0 * kl, 1e-12);
    CHECK_NEAR(g[1], 2.0 * (0.5 - s1), 1e-7);
    /* alpha = 0: labels do not count, so flipping y changes nothing */
    y = 0;
    double loss2;
    CHECK_OK(fv_mlp_distill_loss(m, ws, &x, &y, &zt, NULL, 1, 1.0f, &dc, &loss2), NULL);
    CHECK(loss2 == loss);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);
}

/* ---- (2) whole networks ---------------------------------------------------------- */

/* Smallest |pre-activation| of the first (only) hidden layer over the rows. */
static double min_pre(const fv_mlp_t *m, const float *x, size_t n)
{
    const fv_mlp_arch_t *a = fv_mlp_arch(m);
    const float *w = fv_mlp_params_const(m), *b = w + a->n_in * a->hidden[0];
    double mn = INFINITY;
    for (size_t i = 0; i < n; i++)
        for (size_t o = 0; o < a->hidden[0]; o++) {
            double z = b[o];
            for (size_t k = 0; k < a->n_in; k++)
                z += (double)x[i * a->n_in + k] * w[k * a->hidden[0] + o];
            mn = fabs(z) < mn ? fabs(z) : mn;
        }
    return mn;
}

static void net_case(size_t n_classes, double alpha, double T, float pw, int weighted)
{
    enum { N = 6, NI = 5 };
    size_t k = n_classes == 2 ? 1 : n_classes;
    fv_mlp_t *m = make_model("mlp:4", NI, n_classes, 1);
    fv_mlp_ws_t *ws = NULL;
    CHECK_OK(fv_mlp_ws_new(m, N, &ws), NULL);
    size_t np = fv_mlp_n_params(m);
    float *p = fv_mlp_params(m), *g = malloc(np * sizeof *g), x[N * NI], zt[N * 8], w[N];
    int32_t y[N];
    CHECK(g != NULL && k <= 8);
    fv_rng_t r;
    for (uint64_t s = 100;; s++) {
        fv_rng_seed(&r, s);
        for (size_t i = 0; i < np; i++)
            p[i] = (float)(0.5 * fv_rng_normal(&r));
        for (size_t i = 0; i < N * NI; i++)
            x[i] = (float)fv_rng_normal(&r);
        if (min_pre(m, x, N) > 1e-2)
            break;
        CHECK(s < 1100);
    }
    for (size_t i = 0; i < N; i++) {
        y[i] = (int32_t)fv_rng_below(&r, n_classes);
        w[i] = (float)(0.25 + 2.0 * fv_rng_uniform(&r));
        for (size_t j = 0; j < k; j++)
            zt[i * k + j] = (float)(2.0 * fv_rng_normal(&r));
    }
    const float *rw = weighted ? w : NULL;
    fv_distill_cfg_t dc = {alpha, T};
    double loss;
    CHECK_OK(fv_mlp_distill_loss_grad(m, ws, x, y, zt, rw, N, pw, &dc, g, &loss), NULL);
    const float eps = 1e-3f;
    for (size_t i = 0; i < np; i++) {
        float keep = p[i];
        double lp, lm;
        p[i] = keep + eps;
        CHECK_OK(fv_mlp_distill_loss(m, ws, x, y, zt, rw, N, pw, &dc, &lp), NULL);
        p[i] = keep - eps;
        CHECK_OK(fv_mlp_distill_loss(m, ws, x, y, zt, rw, N, pw, &dc, &lm), NULL);
        p[i] = keep;
        double fd = (lp - lm) / ((double)(keep + eps) - (double)(keep - eps));
        if (!(fabs(g[i] - fd) <= 3e-3 + 2e-2 * fabs(fd)))
            fprintf(stderr, "classes %zu alpha %g T %g: param %zu\n", n_classes, alpha, T, i);
        CHECK_NEAR(g[i], fd, 3e-3 + 2e-2 * fabs(fd));
    }
    free(g);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);
}

static void test_net_grad(void)
{
    net_case(2, 0.5, 2.0, 1.0f, 0);
    net_case(2, 0.0, 4.0, 1.0f, 1);
    net_case(2, 0.3, 1.0, 3.0f, 1);
    net_case(3, 0.5, 2.0, 1.0f, 0);
    net_case(4, 0.1, 3.0, 1.0f, 1);
}

/* ---- the loop -------------------------------------------------------------------- */

/* y = [x0 x1 > 0] (binary) or the quadrant (4 classes), 10 % labels flipped. */
static data_t make_data(size_t n, size_t n_classes, uint64_t seed)
{
    data_t s = data_alloc(n, 2);
    fv_rng_t r;
    fv_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        double a = 2 * fv_rng_uniform(&r) - 1, b = 2 * fv_rng_uniform(&r) - 1;
        s.x[2 * i] = (float)a;
        s.x[2 * i + 1] = (float)b;
        int c = n_classes == 2 ? a * b > 0 : (a > 0) + 2 * (b > 0);
        if (fv_rng_uniform(&r) < 0.1)
            c = (int)fv_rng_below(&r, n_classes);
        s.y[i] = c;
    }
    return s;
}

static float *logits_of(const fv_mlp_t *m, const float *x, size_t n)
{
    size_t k = fv_mlp_arch(m)->n_out;
    fv_mlp_ws_t *ws = NULL;
    float *z = malloc(n * k * sizeof *z);
    CHECK(z != NULL);
    CHECK_OK(fv_mlp_ws_new(m, n, &ws), NULL);
    CHECK_OK(fv_mlp_logits(m, ws, x, n, z), NULL);
    fv_mlp_ws_free(ws);
    return z;
}

static fv_train_cfg_t cfg_for(size_t epochs)
{
    fv_train_cfg_t c;
    fv_train_cfg_default(&c);
    c.epochs = epochs;
    c.batch_size = 32;
    c.optim.lr = 0.01f;
    c.patience = 2;
    c.seed = 3;
    return c;
}

/* alpha = 1 is plain training bit for bit; distillation is deterministic for a seed. */
static void alpha_one_case(size_t n_classes)
{
    data_t tr = make_data(600, n_classes, 11), va = make_data(200, n_classes, 12);
    fv_mlp_t *teacher = make_model("mlp:16,8", 2, n_classes, 5);
    fv_train_cfg_t c = cfg_for(15);
    fv_train_result_t rt, ra, rb, rc;
    CHECK_OK(fv_train(teacher, tr.x, tr.y, tr.n, va.x, va.y, va.n, &c, &rt, D), D);
    float *zt = logits_of(teacher, tr.x, tr.n);

    fv_mlp_t *a = make_model("mlp:4", 2, n_classes, 9), *b = NULL;
    CHECK_OK(fv_mlp_clone(a, &b), NULL);
    fv_distill_cfg_t dc = {1.0, 2.0};
    CHECK_OK(fv_train(a, tr.x, tr.y, tr.n, va.x, va.y, va.n, &c, &ra, D), D);
    CHECK_OK(fv_train_distill(b, tr.x, tr.y, zt, tr.n, va.x, va.y, va.n, &c, &dc, &rb, D), D);
    CHECK(memcmp(fv_mlp_params_const(a), fv_mlp_params_const(b),
                 fv_mlp_n_params(a) * sizeof(float)) == 0);
    CHECK_UINT_EQ(ra.epochs_run, rb.epochs_run);
    CHECK_UINT_EQ(ra.best_epoch, rb.best_epoch);
    CHECK(ra.best_val_metric == rb.best_val_metric);

    /* alpha 0.5: different from plain, the same on a rerun */
    fv_mlp_t *s1 = make_model("mlp:4", 2, n_classes, 9), *s2 = make_model("mlp:4", 2, n_classes, 9);
    dc.alpha = 0.5;
    CHECK_OK(fv_train_distill(s1, tr.x, tr.y, zt, tr.n, va.x, va.y, va.n, &c, &dc, &rb, D), D);
    CHECK_OK(fv_train_distill(s2, tr.x, tr.y, zt, tr.n, va.x, va.y, va.n, &c, &dc, &rc, D), D);
    CHECK(memcmp(fv_mlp_params_const(s1), fv_mlp_params_const(s2),
                 fv_mlp_n_params(s1) * sizeof(float)) == 0);
    CHECK(memcmp(fv_mlp_params_const(s1), fv_mlp_params_const(a),
                 fv_mlp_n_params(s1) * sizeof(float)) != 0);
    CHECK_UINT_EQ(rb.epochs_run, rc.epochs_run);

    free(zt);
    fv_mlp_free(teacher);
    fv_mlp_free(a);
    fv_mlp_free(b);
    fv_mlp_free(s1);
    fv_mlp_free(s2);
    data_free(&tr);
    data_free(&va);
}

static void test_alpha_one(void)
{
    alpha_one_case(2);
    alpha_one_case(4);
}

static void test_errors(void)
{
    data_t tr = make_data(50, 2, 1);
    fv_mlp_t *m = make_model("logreg", 2, 2, 0);
    fv_train_cfg_t c = cfg_for(2);
    fv_train_result_t res;
    float *zt = calloc(tr.n, sizeof *zt);
    CHECK(zt != NULL);
    fv_distill_cfg_t dc = {1.5, 2.0};
    CHECK_INT_EQ(fv_train_distill(m, tr.x, tr.y, zt, tr.n, NULL, NULL, 0, &c, &dc, &res, D),
                 FV_EINVAL);
    CHECK_CONTAINS(diag.msg, "alpha = 1.5: must be in [0, 1]");
    dc.alpha = 0.5;
    dc.temperature = 0.0;
    CHECK_INT_EQ(fv_train_distill(m, tr.x, tr.y, zt, tr.n, NULL, NULL, 0, &c, &dc, &res, D),
                 FV_EINVAL);
    CHECK_CONTAINS(diag.msg, "temperature = 0: must be finite and > 0");
    dc.temperature = NAN;
    CHECK_INT_EQ(fv_train_distill(m, tr.x, tr.y, zt, tr.n, NULL, NULL, 0, &c, &dc, &res, D),
                 FV_EINVAL);
    dc.temperature = 2.0;
    CHECK_INT_EQ(fv_train_distill(m, tr.x, tr.y, NULL, tr.n, NULL, NULL, 0, &c, &dc, &res, D),
                 FV_EINVAL);
    CHECK_CONTAINS(diag.msg, "no teacher logits");
    zt[17] = INFINITY;
    CHECK_INT_EQ(fv_train_distill(m, tr.x, tr.y, zt, tr.n, NULL, NULL, 0, &c, &dc, &res, D),
                 FV_EINVAL);
    CHECK_CONTAINS(diag.msg, "training row 17: teacher logit 0 is not finite");
    /* the library entry points refuse the same */
    fv_mlp_ws_t *ws = NULL;
    float g[3];
    double l;
    CHECK_OK(fv_mlp_ws_new(m, 1, &ws), NULL);
    CHECK_INT_EQ(fv_mlp_distill_loss_grad(m, ws, tr.x, tr.y, zt + 17, NULL, 1, 1.0f, &dc, g, &l),
                 FV_EINVAL);
    dc.alpha = -0.1;
    CHECK_INT_EQ(fv_mlp_distill_loss(m, ws, tr.x, tr.y, zt, NULL, 1, 1.0f, &dc, &l), FV_EINVAL);
    CHECK_INT_EQ(fv_mlp_distill_loss(m, ws, tr.x, tr.y, zt, NULL, 1, 1.0f, NULL, &l), FV_EINVAL);
    fv_mlp_ws_free(ws);
    free(zt);
    fv_mlp_free(m);
    data_free(&tr);
}

/* ---- Lending Club: logreg student from an MLP teacher ---------------------------- */

static void test_lending_club(void)
{
    char path[1024];
    fv_schema_infer_opts_t o;
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_preproc_t *pp = NULL;
    size_t *rest, *te, *fit, *val, n_rest, n_te, n_fit, n_val;
    memset(&o, 0, sizeof o);
    o.target = "Class";
    o.positive = "bad";
    fv_test_src("examples/data/lending_club.csv", path, sizeof path);
    CHECK_OK(fv_schema_infer(path, &o, &s, D), D);
    CHECK_OK(fv_dataset_load(path, s, &ds, D), D);
    /* the split of `fedvault train --seed 0`: 25 % test, 10 % of the rest validation */
    CHECK_OK(fv_dataset_split(ds, NULL, ds->n_rows, 0.25, 0, &rest, &n_rest, &te, &n_te), D);
    CHECK_OK(fv_dataset_split(ds, rest, n_rest, 0.1, 1, &fit, &n_fit, &val, &n_val), D);
    CHECK_OK(fv_preproc_fit(ds, fit, n_fit, &pp), NULL);
    size_t nf = fv_preproc_n_features(pp);
    float *x_fit = malloc(n_fit * nf * sizeof(float)), *x_val = malloc(n_val * nf * sizeof(float));
    float *x_te = malloc(n_te * nf * sizeof(float));
    int32_t *y_fit = malloc(n_fit * 4), *y_val = malloc(n_val * 4), *y_te = malloc(n_te * 4);
    CHECK(x_fit && x_val && x_te && y_fit && y_val && y_te);
    CHECK_OK(fv_preproc_transform(pp, ds, fit, n_fit, x_fit), NULL);
    CHECK_OK(fv_preproc_transform(pp, ds, val, n_val, x_val), NULL);
    CHECK_OK(fv_preproc_transform(pp, ds, te, n_te, x_te), NULL);
    fv_dataset_labels(ds, fit, n_fit, y_fit);
    fv_dataset_labels(ds, val, n_val, y_val);
    fv_dataset_labels(ds, te, n_te, y_te);

    fv_train_cfg_t c;
    fv_train_cfg_default(&c);
    fv_train_result_t res;
    fv_mlp_t *teacher = make_model("mlp:64,32", nf, 2, 0);
    CHECK_OK(fv_train(teacher, x_fit, y_fit, n_fit, x_val, y_val, n_val, &c, &res, D), D);
    float *zt = logits_of(teacher, x_fit, n_fit);

    fv_mlp_t *student = make_model("logreg", nf, 2, 0), *plain = make_model("logreg", nf, 2, 0);
    fv_distill_cfg_t dc;
    fv_distill_cfg_default(&dc);
    fv_train_result_t rs;
    CHECK_OK(
        fv_train_distill(student, x_fit, y_fit, zt, n_fit, x_val, y_val, n_val, &c, &dc, &rs, D),
        D);
    CHECK_OK(fv_train(plain, x_fit, y_fit, n_fit, x_val, y_val, n_val, &c, &res, D), D);
    double auc_t = mlp_test_auc(teacher, x_te, y_te, n_te),
           auc_s = mlp_test_auc(student, x_te, y_te, n_te);
    double auc_p = mlp_test_auc(plain, x_te, y_te, n_te);
    printf("lending club test ROC AUC: teacher mlp:64,32 (%zu params) %.4f, distilled logreg "
           "(%zu params, %zu epochs) %.4f, plain logreg %.4f\n",
           fv_mlp_n_params(teacher), auc_t, fv_mlp_n_params(student), rs.epochs_run, auc_s, auc_p);
    CHECK(fv_mlp_n_params(student) * 10 <= fv_mlp_n_params(teacher));
    CHECK(auc_s >= auc_t - 0.02);

    free(zt);
    fv_mlp_free(teacher);
    fv_mlp_free(student);
    fv_mlp_free(plain);
    free(x_fit), free(x_val), free(x_te), free(y_fit), free(y_val), free(y_te);
    free(rest), free(te), free(fit), free(val);
    fv_dataset_free(ds);
    fv_preproc_free(pp);
    fv_schema_free(s);
}

int main(void)
{
    test_loss_hand();
    test_logit_grad();
    test_net_grad();
    test_alpha_one();
    test_errors();
    test_lending_club();
    puts("ok");
    return 0;
}
