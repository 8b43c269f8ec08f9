/* test_train.c - the training loop: it learns, it is deterministic, early stopping keeps
 * the best epoch, the caller can stop it, bad configurations are refused.
 *
 * Learning checks use accuracy thresholds well below what the runs reach (a fixed seed
 * makes each run reproducible, the margin keeps the test valid if a kernel's rounding
 * changes). Early-stopping checks are exact: training does not depend on the validation
 * set, so the restored parameters must be bit-identical to a run of best_epoch epochs.
 * Validation metrics recomputed here from the kept parameters are compared with
 * best_val_metric to 1e-6 (loss) and 1e-3 (AUC): the loop evaluates the validation set in
 * chunks, and OpenBLAS may pick a different kernel (so a different summation order) for a
 * different number of rows, so the float logits can differ in their last bits (the loss
 * by ~1e-8, the AUC by a tied or swapped pair out of ~20000 at worst).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_rng.h"
#include "fv_test.h"
#include "fv_train.h"
#include "mlp_auc.h"

static double unif(fv_rng_t *r, double lo, double hi)
{
    return lo + (hi - lo) * fv_rng_uniform(r);
}

/* y = [x0 + 2 x1 > 0.1], with a margin of 0.1 around the boundary. */
static data_t make_linear(size_t n, uint64_t seed)
{
    data_t s = data_alloc(n, 2);
    fv_rng_t r;
    fv_rng_seed(&r, seed);
    for (size_t i = 0; i < n;) {
        double a = unif(&r, -1, 1), b = unif(&r, -1, 1), f = a + 2 * b - 0.1;
        if (fabs(f) < 0.1)
            continue;
        s.x[2 * i] = (float)a;
        s.x[2 * i + 1] = (float)b;
        s.y[i++] = f > 0;
    }
    return s;
}

/* y = [x0 > 0] xor [x1 > 0], points at least 0.1 away from the axes. */
static data_t make_xor(size_t n, uint64_t seed)
{
    data_t s = data_alloc(n, 2);
    fv_rng_t r;
    fv_rng_seed(&r, seed);
    for (size_t i = 0; i < n;) {
        double a = unif(&r, -1, 1), b = unif(&r, -1, 1);
        if (fabs(a) < 0.1 || fabs(b) < 0.1)
            continue;
        s.x[2 * i] = (float)a;
        s.x[2 * i + 1] = (float)b;
        s.y[i++] = (a > 0) != (b > 0);
    }
    return s;
}

/* Three Gaussian blobs (sd 0.6) around points 3 apart from the origin. */
static data_t make_blobs(size_t n, uint64_t seed)
{
    static const double cx[3] = {0.0, 2.6, -2.6}, cy[3] = {3.0, -1.5, -1.5};
    data_t s = data_alloc(n, 2);
    fv_rng_t r;
    fv_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        int k = (int)fv_rng_below(&r, 3);
        s.x[2 * i] = (float)(cx[k] + 0.6 * fv_rng_normal(&r));
        s.x[2 * i + 1] = (float)(cy[k] + 0.6 * fv_rng_normal(&r));
        s.y[i] = k;
    }
    return s;
}

/* y = [x0 + x1 > 0], flipped with probability 0.3: a weak signal a big net first learns,
 * then buries under memorized noise. */
static data_t make_noisy(size_t n, size_t d, uint64_t seed)
{
    data_t s = data_alloc(n, d);
    fv_rng_t r;
    fv_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++)
            s.x[i * d + j] = (float)fv_rng_normal(&r);
        s.y[i] = (s.x[i * d] + s.x[i * d + 1] > 0) ^ (fv_rng_uniform(&r) < 0.3);
    }
    return s;
}

static fv_mlp_t *make_model(const char *spec, size_t n_in, size_t n_classes, uint64_t seed)
{
    fv_mlp_arch_t a;
    fv_diag_t d, *dp = &d;
    fv_mlp_t *m = NULL;
    CHECK_OK(fv_mlp_parse_arch(spec, n_in, n_classes, &a, dp), dp);
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    fv_mlp_init(m, seed);
    return m;
}

static double accuracy(const fv_mlp_t *m, const data_t *s)
{
    size_t k = fv_mlp_arch(m)->n_out;
    fv_mlp_ws_t *ws = NULL;
    float *p = malloc(s->n * k * sizeof *p);
    CHECK(p != NULL);
    CHECK_OK(fv_mlp_ws_new(m, s->n, &ws), NULL);
    CHECK_OK(fv_mlp_predict(m, ws, s->x, s->n, p), NULL);
    double acc;
    if (k == 1)
        CHECK_OK(fv_metrics_accuracy(p, s->y, s->n, 0.5, &acc), NULL);
    else
        CHECK_OK(fv_metrics_mc_accuracy(p, s->n, k, s->y, &acc), NULL);
    fv_mlp_ws_free(ws);
    free(p);
    return acc;
}

static double val_loss(const fv_mlp_t *m, const data_t *s, float pos_weight)
{
    return mlp_test_loss(m, s->x, s->y, s->n, pos_weight);
}

static double val_auc(const fv_mlp_t *m, const data_t *s)
{
    return mlp_test_auc(m, s->x, s->y, s->n);
}

static int same_params(const fv_mlp_t *a, const fv_mlp_t *b)
{
    return fv_mlp_n_params(a) == fv_mlp_n_params(b) &&
           memcmp(fv_mlp_params_const(a), fv_mlp_params_const(b),
                  fv_mlp_n_params(a) * sizeof(float)) == 0;
}

static fv_train_cfg_t quick_cfg(size_t epochs, size_t batch, float lr)
{
    fv_train_cfg_t c;
    fv_train_cfg_default(&c);
    c.epochs = epochs;
    c.batch_size = batch;
    c.optim.lr = lr;
    c.optim.weight_decay = 0.0f;
    c.patience = 0;
    c.seed = 1;
    return c;
}

/* Records every epoch report. */
#define MAX_EPOCHS 400
typedef struct recorder {
    size_t n;
    fv_epoch_report_t r[MAX_EPOCHS];
    size_t stop_at; /* return 1 at this epoch (0 = never) */
} recorder_t;

static int record(void *user, const fv_epoch_report_t *r)
{
    recorder_t *rec = user;
    CHECK(rec->n < MAX_EPOCHS);
    CHECK_UINT_EQ(r->epoch, rec->n + 1);
    rec->r[rec->n++] = *r;
    return rec->stop_at != 0 && r->epoch == rec->stop_at;
}

/* ---- it learns ------------------------------------------------------------------- */

static void test_learns(void)
{
    fv_diag_t d, *dp = &d;
    fv_train_result_t res;

    /* linearly separable, logistic regression */
    data_t tr = make_linear(400, 1), te = make_linear(400, 2);
    fv_mlp_t *m = make_model("logreg", 2, 2, 0);
    fv_train_cfg_t c = quick_cfg(40, 32, 0.05f);
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, &c, &res, dp), dp);
    CHECK_UINT_EQ(res.epochs_run, 40);
    CHECK_UINT_EQ(res.best_epoch, 40);
    CHECK(isnan(res.best_val_metric));
    CHECK(!res.stopped_early && !res.stopped_by_caller);
    double acc = accuracy(m, &te);
    if (acc < 0.98)
        FV__FAIL("linear: test accuracy %.4f < 0.98", acc);
    fv_mlp_free(m);
    data_free(&tr);
    data_free(&te);

    /* XOR needs the hidden layer */
    tr = make_xor(400, 3);
    te = make_xor(400, 4);
    m = make_model("mlp:8", 2, 2, 5);
    c = quick_cfg(150, 32, 0.02f);
    recorder_t *rec = calloc(1, sizeof *rec);
    CHECK(rec != NULL);
    c.on_epoch = record;
    c.user = rec;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, &c, &res, dp), dp);
    CHECK_UINT_EQ(rec->n, 150);
    CHECK(rec->r[149].train_loss < 0.5 * rec->r[0].train_loss);
    CHECK(isnan(rec->r[0].val_loss) && isnan(rec->r[0].val_auc));
    acc = accuracy(m, &te);
    if (acc < 0.95)
        FV__FAIL("xor: test accuracy %.4f < 0.95", acc);
    fv_mlp_free(m);
    data_free(&tr);
    data_free(&te);

    /* three blobs, softmax; the validation set is reported, val_auc is NaN */
    tr = make_blobs(300, 6);
    te = make_blobs(300, 7);
    m = make_model("mlp:16", 2, 3, 8);
    c = quick_cfg(30, 32, 0.02f);
    memset(rec, 0, sizeof *rec);
    c.on_epoch = record;
    c.user = rec;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, te.x, te.y, te.n, &c, &res, dp), dp);
    CHECK_UINT_EQ(rec->n, 30);
    CHECK(rec->r[29].val_loss < rec->r[0].val_loss);
    CHECK(isnan(rec->r[29].val_auc));
    CHECK_UINT_EQ(res.best_epoch, 30); /* patience 0: the last parameters are kept */
    CHECK(res.best_val_metric == rec->r[29].val_loss);
    acc = accuracy(m, &te);
    if (acc < 0.97)
        FV__FAIL("blobs: test accuracy %.4f < 0.97", acc);
    free(rec);
    fv_mlp_free(m);
    data_free(&tr);
    data_free(&te);
}

/* ---- determinism ----------------------------------------------------------------- */

static void test_determinism(void)
{
    fv_diag_t d, *dp = &d;
    fv_train_result_t res;
    data_t tr = make_xor(203, 9); /* 203 = 12 full batches of 16 and a short one */
    fv_mlp_t *m0 = make_model("mlp:8,4", 2, 2, 10), *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(fv_mlp_clone(m0, &a), NULL);
    CHECK_OK(fv_mlp_clone(m0, &b), NULL);
    CHECK_OK(fv_mlp_clone(m0, &c), NULL);
    fv_train_cfg_t cfg = quick_cfg(5, 16, 0.01f);
    cfg.seed = 77;
    CHECK_OK(fv_train(a, tr.x, tr.y, tr.n, NULL, NULL, 0, &cfg, &res, dp), dp);
    CHECK_OK(fv_train(b, tr.x, tr.y, tr.n, NULL, NULL, 0, &cfg, &res, dp), dp);
    CHECK(same_params(a, b));
    CHECK(!same_params(a, m0));
    cfg.seed = 78;
    CHECK_OK(fv_train(c, tr.x, tr.y, tr.n, NULL, NULL, 0, &cfg, &res, dp), dp);
    CHECK(!same_params(a, c));
    fv_mlp_free(m0);
    fv_mlp_free(a);
    fv_mlp_free(b);
    fv_mlp_free(c);
    data_free(&tr);
}

/* train_loss is the mean per-row loss of the epoch: with a negligible learning rate the
 * parameters do not move, so it equals the full-data loss (10 rows in batches 4, 4, 2). */
static void test_train_loss_definition(void)
{
    fv_diag_t d, *dp = &d;
    fv_train_result_t res;
    data_t tr = make_xor(10, 11);
    fv_mlp_t *m = make_model("mlp:5", 2, 2, 12);
    double want = val_loss(m, &tr, 2.5f);
    fv_train_cfg_t c = quick_cfg(1, 4, 1e-30f);
    c.optim.kind = FV_OPT_SGD;
    c.pos_weight = 2.5f;
    recorder_t *rec = calloc(1, sizeof *rec);
    CHECK(rec != NULL);
    c.on_epoch = record;
    c.user = rec;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, &c, &res, dp), dp);
    CHECK_NEAR(rec->r[0].train_loss, want, 1e-6);
    /* batch larger than the data set: one batch of everything */
    c.batch_size = 1000;
    rec->n = 0;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, &c, &res, dp), dp);
    CHECK_NEAR(rec->r[0].train_loss, want, 1e-6);
    free(rec);
    fv_mlp_free(m);
    data_free(&tr);
}

/* ---- early stopping -------------------------------------------------------------- */

static void test_early_stopping(void)
{
    fv_diag_t d, *dp = &d;
    fv_train_result_t res;
    /* A big net on 60 noisy rows: the validation loss falls for a few epochs (best at
     * epoch 4 with this seed), then rises as the net memorizes the flipped labels.
     * 300 validation rows so the loop evaluates them in two chunks (256 + 44). */
    data_t tr = make_noisy(60, 4, 13), va = make_noisy(300, 4, 14);
    fv_mlp_t *m0 = make_model("mlp:64,64", 4, 2, 15), *m = NULL;
    CHECK_OK(fv_mlp_clone(m0, &m), NULL);
    fv_train_cfg_t c = quick_cfg(200, 16, 0.003f);
    c.patience = 5;
    c.min_delta = 0.0;
    recorder_t *rec = calloc(1, sizeof *rec);
    CHECK(rec != NULL);
    c.on_epoch = record;
    c.user = rec;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, va.x, va.y, va.n, &c, &res, dp), dp);
    CHECK(res.stopped_early);
    CHECK(!res.stopped_by_caller);
    CHECK(res.best_epoch > 1); /* a real restore, not just "the first epoch" */
    CHECK(res.best_epoch < res.epochs_run);
    CHECK_UINT_EQ(res.epochs_run, res.best_epoch + c.patience);
    CHECK_UINT_EQ(rec->n, res.epochs_run);

    /* best = the minimum reported val_loss; improved flags mark running minima */
    double best = INFINITY;
    size_t arg = 0;
    for (size_t i = 0; i < rec->n; i++) {
        CHECK(isfinite(rec->r[i].val_auc)); /* binary: AUC is reported too */
        int imp = rec->r[i].val_loss < best;
        CHECK_INT_EQ(rec->r[i].improved, imp);
        if (imp) {
            best = rec->r[i].val_loss;
            arg = i + 1;
        }
    }
    CHECK_UINT_EQ(arg, res.best_epoch);
    CHECK(res.best_val_metric == best);
    CHECK(rec->r[rec->n - 1].val_loss > best); /* it did get worse */

    /* the kept parameters reproduce the best metric ... */
    CHECK_NEAR(val_loss(m, &va, 1.0f), res.best_val_metric, 1e-6);
    /* ... and are exactly those of a run of best_epoch epochs (training ignores val) */
    fv_mlp_t *ref = NULL;
    CHECK_OK(fv_mlp_clone(m0, &ref), NULL);
    fv_train_cfg_t c2 = quick_cfg(res.best_epoch, 16, 0.003f);
    CHECK_OK(fv_train(ref, tr.x, tr.y, tr.n, NULL, NULL, 0, &c2, &res, dp), dp);
    CHECK(same_params(m, ref));
    fv_mlp_free(ref);

    /* min_delta: an improvement must beat the best by more than min_delta */
    fv_mlp_free(m);
    CHECK_OK(fv_mlp_clone(m0, &m), NULL);
    c.min_delta = 1e-3;
    rec->n = 0;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, va.x, va.y, va.n, &c, &res, dp), dp);
    best = INFINITY;
    for (size_t i = 0; i < rec->n; i++) {
        int imp = rec->r[i].val_loss < best - 1e-3;
        CHECK_INT_EQ(rec->r[i].improved, imp);
        if (imp)
            best = rec->r[i].val_loss;
    }
    CHECK(res.best_val_metric == best);
    CHECK_NEAR(val_loss(m, &va, 1.0f), best, 1e-6);

    /* on ROC AUC: higher is better, and the kept parameters reproduce it */
    fv_mlp_free(m);
    CHECK_OK(fv_mlp_clone(m0, &m), NULL);
    c.es_metric = FV_ES_ROC_AUC;
    c.min_delta = 0.0;
    c.patience = 3;
    rec->n = 0;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, va.x, va.y, va.n, &c, &res, dp), dp);
    double best_auc = -INFINITY;
    for (size_t i = 0; i < rec->n; i++)
        best_auc = fmax(best_auc, rec->r[i].val_auc);
    CHECK(res.best_val_metric == best_auc);
    CHECK(rec->r[res.best_epoch - 1].val_auc == best_auc);
    CHECK_NEAR(val_auc(m, &va), best_auc, 1e-3);
    CHECK(res.stopped_early);
    CHECK(res.best_epoch > 1);
    CHECK_UINT_EQ(res.epochs_run, res.best_epoch + 3);

    /* patience 0: every epoch runs, the last parameters are kept, and they equal a run
     * without a validation set */
    fv_mlp_free(m);
    CHECK_OK(fv_mlp_clone(m0, &m), NULL);
    c.es_metric = FV_ES_LOSS;
    c.patience = 0;
    c.epochs = 12;
    rec->n = 0;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, va.x, va.y, va.n, &c, &res, dp), dp);
    CHECK_UINT_EQ(res.epochs_run, 12);
    CHECK_UINT_EQ(res.best_epoch, 12);
    CHECK(!res.stopped_early);
    CHECK(res.best_val_metric == rec->r[11].val_loss);
    CHECK_OK(fv_mlp_clone(m0, &ref), NULL);
    c2 = quick_cfg(12, 16, 0.003f);
    CHECK_OK(fv_train(ref, tr.x, tr.y, tr.n, NULL, NULL, 0, &c2, &res, dp), dp);
    CHECK(same_params(m, ref));
    fv_mlp_free(ref);

    /* caller stop: at epoch 3, with early stopping on: best epoch among 1..3 kept */
    fv_mlp_free(m);
    CHECK_OK(fv_mlp_clone(m0, &m), NULL);
    c.patience = 5;
    c.epochs = 200;
    rec->n = 0;
    rec->stop_at = 3;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, va.x, va.y, va.n, &c, &res, dp), dp);
    CHECK_UINT_EQ(rec->n, 3);
    CHECK_UINT_EQ(res.epochs_run, 3);
    CHECK(res.stopped_by_caller);
    CHECK(!res.stopped_early);
    CHECK(res.best_epoch >= 1 && res.best_epoch <= 3);
    CHECK_NEAR(val_loss(m, &va, 1.0f), res.best_val_metric, 1e-6);

    /* caller stop without validation */
    fv_mlp_free(m);
    CHECK_OK(fv_mlp_clone(m0, &m), NULL);
    rec->n = 0;
    rec->stop_at = 2;
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, &c, &res, dp), dp);
    CHECK_UINT_EQ(res.epochs_run, 2);
    CHECK_UINT_EQ(res.best_epoch, 2);
    CHECK(res.stopped_by_caller);

    free(rec);
    fv_mlp_free(m);
    fv_mlp_free(m0);
    data_free(&tr);
    data_free(&va);
}

/* ---- errors ---------------------------------------------------------------------- */

static void check_train_bad(fv_mlp_t *m, const data_t *tr, const data_t *va,
                            const fv_train_cfg_t *c, int want, const char *needle)
{
    size_t np = fv_mlp_n_params(m);
    float *before = malloc(np * sizeof *before);
    CHECK(before != NULL);
    memcpy(before, fv_mlp_params(m), np * sizeof *before);
    fv_train_result_t res;
    memset(&res, 0xab, sizeof res);
    fv_train_result_t res0 = res;
    fv_diag_t d;
    d.msg[0] = '\0';
    int r = fv_train(m, tr->x, tr->y, tr->n, va ? va->x : NULL, va ? va->y : NULL, va ? va->n : 0,
                     c, &res, &d);
    CHECK_INT_EQ(r, want);
    CHECK_CONTAINS(d.msg, needle);
    CHECK(memcmp(before, fv_mlp_params(m), np * sizeof *before) == 0); /* model untouched */
    CHECK(memcmp(&res, &res0, sizeof res) == 0);                       /* ret untouched */
    free(before);
}

static void test_errors(void)
{
    data_t tr = make_xor(40, 16), va = make_xor(20, 17);
    fv_mlp_t *m = make_model("mlp:4", 2, 2, 18);
    fv_train_cfg_t c = quick_cfg(3, 8, 0.01f), b;

    b = c, b.epochs = 0;
    check_train_bad(m, &tr, NULL, &b, FV_EINVAL, "epochs = 0: must be >= 1");
    b = c, b.batch_size = 0;
    check_train_bad(m, &tr, NULL, &b, FV_EINVAL, "batch_size = 0: must be >= 1");
    b = c, b.optim.lr = 0.0f;
    check_train_bad(m, &tr, NULL, &b, FV_EINVAL, "lr = 0");
    b = c, b.optim.beta1 = 1.0f;
    check_train_bad(m, &tr, NULL, &b, FV_EINVAL, "beta1");
    b = c, b.pos_weight = 0.0f;
    check_train_bad(m, &tr, NULL, &b, FV_EINVAL, "pos_weight");
    b = c, b.min_delta = -1.0;
    check_train_bad(m, &tr, NULL, &b, FV_EINVAL, "min_delta");
    b = c, b.es_metric = (fv_es_metric_t)9;
    check_train_bad(m, &tr, NULL, &b, FV_EINVAL, "es_metric");

    /* labels out of range, named by row */
    tr.y[7] = 2;
    check_train_bad(m, &tr, NULL, &c, FV_EINVAL, "training row 7: label 2 is out of range 0..1");
    tr.y[7] = 1;
    va.y[3] = -1;
    check_train_bad(m, &tr, &va, &c, FV_EINVAL, "validation row 3: label -1");
    va.y[3] = 0;

    /* ROC AUC early stopping needs a binary model and both classes in validation */
    data_t one = make_xor(20, 19);
    for (size_t i = 0; i < one.n; i++)
        one.y[i] = 0;
    b = c, b.patience = 2, b.es_metric = FV_ES_ROC_AUC;
    check_train_bad(m, &tr, &one, &b, FV_EINVAL, "only negative rows");
    data_t bl = make_blobs(30, 20), blv = make_blobs(30, 21);
    fv_mlp_t *mc = make_model("logreg", 2, 3, 22);
    check_train_bad(mc, &bl, &blv, &b, FV_EINVAL, "needs a binary model");

    /* no rows; rows without data */
    data_t empty = {0, 2, tr.x, tr.y};
    check_train_bad(m, &empty, NULL, &c, FV_EEMPTY, "no training rows");
    data_t noval = {5, 2, NULL, NULL};
    check_train_bad(m, &tr, &noval, &c, FV_EINVAL, "validation rows but no data");
    fv_train_result_t res;
    CHECK_INT_EQ(fv_train(m, NULL, tr.y, tr.n, NULL, NULL, 0, &c, &res, NULL), FV_EINVAL);
    CHECK_INT_EQ(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, NULL, &res, NULL), FV_EINVAL);

    /* a NaN in the inputs: FV_ENUMERIC, the model is restored to its entry values even
     * though some steps were taken before the bad row came up */
    tr.x[2 * 31] = NAN;
    check_train_bad(m, &tr, NULL, &c, FV_ENUMERIC, "not finite");

    /* defaults */
    fv_train_cfg_t def;
    fv_train_cfg_default(&def);
    CHECK_UINT_EQ(def.epochs, 200);
    CHECK_UINT_EQ(def.batch_size, 128);
    CHECK_UINT_EQ(def.patience, 3);
    CHECK_NEAR(def.min_delta, 1e-4, 0);
    CHECK_INT_EQ(def.es_metric, FV_ES_LOSS);
    CHECK(def.pos_weight == 1.0f && def.seed == 0 && def.on_epoch == NULL);
    CHECK_INT_EQ(def.optim.kind, FV_OPT_ADAM);

    fv_mlp_free(mc);
    fv_mlp_free(m);
    data_free(&bl);
    data_free(&blv);
    data_free(&one);
    data_free(&tr);
    data_free(&va);
}

int main(void)
{
    test_learns();
    test_determinism();
    test_train_loss_definition();
    test_early_stopping();
    test_errors();
    puts("ok");
    return 0;
}
