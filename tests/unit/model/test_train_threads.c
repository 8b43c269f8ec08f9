/* test_train_threads.c - data-parallel training (fv_train_cfg_t.threads > 1, train_pool.c).
 *
 * What is exact and what is not:
 *   - the same thread count repeats bit for bit (every slice, sum and range is fixed);
 *   - threads 0 and 1 are the single-threaded loop, bit for bit;
 *   - distillation with alpha 1 is plain training bit for bit, with threads too;
 *   - early stopping restores the best epoch's parameters, which are bit-identical to a
 *     run of best_epoch epochs with the same thread count;
 *   - a different thread count only changes float rounding: the slices' gradients are
 *     means over fewer rows, summed with weights n_t / nb. One step of SGD (lr 1, no
 *     momentum) shows the gradient itself: it must match the single-threaded one to
 *     1e-5 of its largest entry (float sums of a few dozen rows agree to ~1e-7 relative;
 *     a wrong weight, e.g. 1/T instead of n_t/nb with slices of 2 and 1 rows, is off by
 *     tens of percent). Over whole runs the rounding differences compound, so runs with 1,
 *     2 and 3 threads are compared by what they learn: validation loss within 0.02 and
 *     accuracy within 0.03 of each other, all well above chance.
 * Timing is never asserted here (tests/bench/bench_train.py measures the speed-up).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fv_blas.h"
#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_rng.h"
#include "fv_test.h"
#include "fv_train.h"
#include "mlp_auc.h"

/* y = [x0 + x1 - x2 > 0], flipped with probability 0.1; d >= 3 normal features. */
static data_t make_data(size_t n, size_t d, uint64_t seed)
{
    data_t s = data_alloc(n, d);
    fv_rng_t r;
    fv_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++)
            s.x[i * d + j] = (float)fv_rng_normal(&r);
        float *x = s.x + i * d;
        s.y[i] = (x[0] + x[1] - x[2] > 0) ^ (fv_rng_uniform(&r) < 0.1);
    }
    return s;
}

static fv_mlp_t *make_model(const char *spec, size_t n_in, uint64_t seed)
{
    fv_mlp_arch_t a;
    fv_diag_t d, *dp = &d;
    fv_mlp_t *m = NULL;
    CHECK_OK(fv_mlp_parse_arch(spec, n_in, 2, &a, dp), dp);
    CHECK_OK(fv_mlp_new(&a, &m), NULL);
    fv_mlp_init(m, seed);
    return m;
}

static fv_mlp_t *clone(const fv_mlp_t *m)
{
    fv_mlp_t *c = NULL;
    CHECK_OK(fv_mlp_clone(m, &c), NULL);
    return c;
}

static int same_params(const fv_mlp_t *a, const fv_mlp_t *b)
{
    return memcmp(fv_mlp_params_const(a), fv_mlp_params_const(b),
                  fv_mlp_n_params(a) * sizeof(float)) == 0;
}

static double val_loss(const fv_mlp_t *m, const data_t *s)
{
    return mlp_test_loss(m, s->x, s->y, s->n, 1.0f);
}

static double accuracy(const fv_mlp_t *m, const data_t *s)
{
    return mlp_test_accuracy(m, s->x, s->y, s->n);
}

static fv_train_cfg_t cfg_of(size_t epochs, size_t batch, size_t threads)
{
    fv_train_cfg_t c;
    fv_train_cfg_default(&c);
    c.epochs = epochs;
    c.batch_size = batch;
    c.optim.lr = 0.01f;
    c.patience = 0;
    c.seed = 5;
    c.threads = threads;
    return c;
}

static void train_ok(fv_mlp_t *m, const data_t *tr, const data_t *va, const fv_train_cfg_t *c,
                     fv_train_result_t *res)
{
    fv_diag_t d, *dp = &d;
    CHECK_OK(fv_train(m, tr->x, tr->y, tr->n, va ? va->x : NULL, va ? va->y : NULL, va ? va->n : 0,
                      c, res, dp),
             dp);
}

/* One SGD step (lr 1, no momentum, no decay) over one batch of nb rows: the parameter
 * change is minus the batch gradient, for 1 and for `threads` threads. */
static void check_one_step(const fv_mlp_t *m0, const data_t *tr, size_t nb, size_t threads)
{
    fv_train_result_t res;
    fv_train_cfg_t c = cfg_of(1, nb, 1);
    c.optim.kind = FV_OPT_SGD;
    c.optim.lr = 1.0f;
    c.optim.momentum = 0.0f;
    c.optim.weight_decay = 0.0f;
    data_t one = {nb, tr->d, tr->x, tr->y}; /* exactly one batch */
    fv_mlp_t *a = clone(m0), *b = clone(m0);
    train_ok(a, &one, NULL, &c, &res);
    c.threads = threads;
    train_ok(b, &one, NULL, &c, &res);
    size_t n = fv_mlp_n_params(m0);
    const float *p0 = fv_mlp_params_const(m0), *pa = fv_mlp_params_const(a),
                *pb = fv_mlp_params_const(b);
    double gmax = 0.0, dmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        double ga = (double)pa[i] - p0[i], gb = (double)pb[i] - p0[i];
        if (fabs(ga) > gmax)
            gmax = fabs(ga);
        if (fabs(ga - gb) > dmax)
            dmax = fabs(ga - gb);
    }
    CHECK(gmax > 1e-3); /* the step moved */
    CHECK_NEAR(dmax / gmax, 0.0, 1e-5);
    fv_mlp_free(a);
    fv_mlp_free(b);
}

static void test_gradient_matches(void)
{
    data_t tr = make_data(64, 5, 1);
    fv_mlp_t *m0 = make_model("mlp:16,8", 5, 2);
    check_one_step(m0, &tr, 3, 2);  /* slices of 2 and 1 rows */
    check_one_step(m0, &tr, 5, 3);  /* 2, 2, 1 */
    check_one_step(m0, &tr, 64, 2); /* 32, 32 */
    check_one_step(m0, &tr, 61, 4); /* 16, 15, 15, 15 */
    fv_mlp_free(m0);
    data_free(&tr);
}

/* Same thread count: bit for bit; 0 and 1 are the same; another count is close. */
static void test_determinism(void)
{
    fv_train_result_t res;
    data_t tr = make_data(203, 6, 3); /* 203 = 12 batches of 16 and one of 11 */
    fv_mlp_t *m0 = make_model("mlp:24,12", 6, 4);
    fv_mlp_t *t0 = clone(m0), *t1 = clone(m0), *a = clone(m0), *b = clone(m0), *c3 = clone(m0),
             *d3 = clone(m0);
    fv_train_cfg_t c = cfg_of(4, 16, 0);
    train_ok(t0, &tr, NULL, &c, &res);
    c.threads = 1;
    train_ok(t1, &tr, NULL, &c, &res);
    CHECK(same_params(t0, t1));
    c.threads = 2;
    train_ok(a, &tr, NULL, &c, &res);
    train_ok(b, &tr, NULL, &c, &res);
    CHECK(same_params(a, b));
    CHECK(!same_params(a, m0));
    c.threads = 3; /* the short batch: slices of 4, 4 and 3 */
    train_ok(c3, &tr, NULL, &c, &res);
    train_ok(d3, &tr, NULL, &c, &res);
    CHECK(same_params(c3, d3));
    CHECK_UINT_EQ(res.epochs_run, 4);
    fv_mlp_free(m0);
    fv_mlp_free(t0);
    fv_mlp_free(t1);
    fv_mlp_free(a);
    fv_mlp_free(b);
    fv_mlp_free(c3);
    fv_mlp_free(d3);
    data_free(&tr);
}

/* Batches smaller than the thread count: capped at the batch, and a last batch of one
 * row leaves the other slices empty. */
static void test_small_batches(void)
{
    fv_train_result_t res;
    data_t tr = make_data(41, 4, 5); /* batches of 2: the last has 1 row */
    fv_mlp_t *m0 = make_model("mlp:8", 4, 6);
    fv_mlp_t *a = clone(m0), *b = clone(m0), *one = clone(m0);
    fv_train_cfg_t c = cfg_of(3, 2, 4); /* 4 threads, capped at 2 */
    train_ok(a, &tr, NULL, &c, &res);
    c.threads = 2; /* the same run */
    train_ok(b, &tr, NULL, &c, &res);
    CHECK(same_params(a, b));
    c.threads = 1;
    train_ok(one, &tr, NULL, &c, &res);
    size_t n = fv_mlp_n_params(m0);
    for (size_t i = 0; i < n; i++)
        CHECK_NEAR(fv_mlp_params_const(a)[i], fv_mlp_params_const(one)[i], 1e-3);
    /* batch 1: one thread whatever is asked */
    fv_mlp_t *e = clone(m0), *f = clone(m0);
    c = cfg_of(2, 1, 3);
    train_ok(e, &tr, NULL, &c, &res);
    c.threads = 1;
    train_ok(f, &tr, NULL, &c, &res);
    CHECK(same_params(e, f));
    fv_mlp_free(m0);
    fv_mlp_free(a);
    fv_mlp_free(b);
    fv_mlp_free(one);
    fv_mlp_free(e);
    fv_mlp_free(f);
    data_free(&tr);
}

/* Whole runs with 1, 2 and 3 threads learn the same thing. */
static void test_thread_count_invariance(void)
{
    fv_train_result_t res;
    data_t tr = make_data(1500, 8, 7), va = make_data(500, 8, 8);
    fv_mlp_t *m0 = make_model("mlp:32,16", 8, 9);
    double loss[3], acc[3];
    for (size_t t = 1; t <= 3; t++) {
        fv_mlp_t *m = clone(m0);
        fv_train_cfg_t c = cfg_of(6, 32, t);
        train_ok(m, &tr, NULL, &c, &res);
        loss[t - 1] = val_loss(m, &va);
        acc[t - 1] = accuracy(m, &va);
        CHECK(acc[t - 1] > 0.8);
        fv_mlp_free(m);
    }
    CHECK_NEAR(loss[1], loss[0], 0.02);
    CHECK_NEAR(loss[2], loss[0], 0.02);
    CHECK_NEAR(acc[1], acc[0], 0.03);
    CHECK_NEAR(acc[2], acc[0], 0.03);
    fv_mlp_free(m0);
    data_free(&tr);
    data_free(&va);
}

typedef struct recorder {
    size_t n;
    double val_loss[64], val_auc[64];
} recorder_t;

static int record(void *user, const fv_epoch_report_t *r)
{
    recorder_t *rec = user;
    CHECK(rec->n < 64);
    rec->val_loss[rec->n] = r->val_loss;
    rec->val_auc[rec->n] = r->val_auc;
    rec->n++;
    return 0;
}

/* Early stopping with threads: the kept parameters are the best epoch's, bit for bit a
 * run of best_epoch epochs; the validation metrics (computed in chunks over the threads)
 * are those of a single-threaded evaluation of the kept parameters. */
static void test_early_stopping(void)
{
    fv_train_result_t res, res2;
    /* noisy labels and a big net for few rows: it overfits and stops */
    data_t tr = make_data(300, 10, 11), va = make_data(600, 10, 12);
    for (size_t i = 0; i < tr.n; i += 3)
        tr.y[i] ^= 1;
    fv_mlp_t *m0 = make_model("mlp:64,32", 10, 13);
    fv_mlp_t *a = clone(m0), *b = clone(m0);
    recorder_t *rec = calloc(1, sizeof *rec);
    CHECK(rec != NULL);
    fv_train_cfg_t c = cfg_of(60, 16, 2);
    c.optim.weight_decay = 0.0f;
    c.patience = 2;
    c.on_epoch = record;
    c.user = rec;
    train_ok(a, &tr, &va, &c, &res);
    CHECK(res.stopped_early);
    CHECK(res.best_epoch >= 1 && res.best_epoch < res.epochs_run);
    CHECK_UINT_EQ(rec->n, res.epochs_run);
    CHECK_NEAR(res.best_val_metric, val_loss(a, &va), 1e-6);
    CHECK_NEAR(rec->val_loss[res.best_epoch - 1], res.best_val_metric, 0);
    c.epochs = res.best_epoch;
    c.patience = 0;
    c.on_epoch = NULL;
    train_ok(b, &tr, NULL, &c, &res2);
    CHECK(same_params(a, b));
    /* on AUC too (validation of 600 rows: 3 chunks of 256, 256 and 88 over 2 threads) */
    fv_mlp_t *e = clone(m0);
    c = cfg_of(60, 16, 2);
    c.optim.weight_decay = 0.0f;
    c.patience = 2;
    c.es_metric = FV_ES_ROC_AUC;
    train_ok(e, &tr, &va, &c, &res);
    CHECK(res.best_epoch >= 1);
    CHECK(res.best_val_metric > 0.6 && res.best_val_metric <= 1.0);
    fv_mlp_free(m0);
    fv_mlp_free(a);
    fv_mlp_free(b);
    fv_mlp_free(e);
    free(rec);
    data_free(&tr);
    data_free(&va);
}

/* Distillation with threads: repeats bit for bit; alpha 1 is fv_train bit for bit; a
 * real teacher's run is close to the single-threaded one. */
static void test_distill(void)
{
    fv_diag_t d, *dp = &d;
    fv_train_result_t res;
    data_t tr = make_data(250, 6, 21), va = make_data(300, 6, 22);
    fv_mlp_t *teacher = make_model("mlp:32", 6, 23);
    fv_train_cfg_t tc = cfg_of(5, 25, 1);
    train_ok(teacher, &tr, NULL, &tc, &res);
    float *tl = malloc(tr.n * sizeof *tl);
    CHECK(tl != NULL);
    fv_mlp_ws_t *ws = NULL;
    CHECK_OK(fv_mlp_ws_new(teacher, tr.n, &ws), NULL);
    CHECK_OK(fv_mlp_logits(teacher, ws, tr.x, tr.n, tl), NULL);
    fv_mlp_ws_free(ws);

    fv_mlp_t *s0 = make_model("mlp:12", 6, 24);
    fv_mlp_t *a = clone(s0), *b = clone(s0), *one = clone(s0), *hard = clone(s0),
             *plain = clone(s0);
    fv_distill_cfg_t dc;
    fv_distill_cfg_default(&dc);
    fv_train_cfg_t c = cfg_of(4, 20, 2);
    c.patience = 2;
    CHECK_OK(fv_train_distill(a, tr.x, tr.y, tl, tr.n, va.x, va.y, va.n, &c, &dc, &res, dp), dp);
    CHECK_OK(fv_train_distill(b, tr.x, tr.y, tl, tr.n, va.x, va.y, va.n, &c, &dc, &res, dp), dp);
    CHECK(same_params(a, b));
    c.threads = 1;
    CHECK_OK(fv_train_distill(one, tr.x, tr.y, tl, tr.n, va.x, va.y, va.n, &c, &dc, &res, dp), dp);
    CHECK_NEAR(val_loss(a, &va), val_loss(one, &va), 0.02);
    /* alpha 1: the teacher does not count, fv_train's run bit for bit */
    c.threads = 3;
    dc.alpha = 1.0;
    CHECK_OK(fv_train_distill(hard, tr.x, tr.y, tl, tr.n, va.x, va.y, va.n, &c, &dc, &res, dp), dp);
    train_ok(plain, &tr, &va, &c, &res);
    CHECK(same_params(hard, plain));
    free(tl);
    fv_mlp_free(teacher);
    fv_mlp_free(s0);
    fv_mlp_free(a);
    fv_mlp_free(b);
    fv_mlp_free(one);
    fv_mlp_free(hard);
    fv_mlp_free(plain);
    data_free(&tr);
    data_free(&va);
}

/* A failure in a slice stops the run and restores the entry parameters; the thread count
 * is capped; DP-SGD ignores threads. */
static void test_errors(void)
{
    fv_diag_t d, *dp = &d;
    fv_train_result_t res;
    data_t tr = make_data(100, 4, 31);
    fv_mlp_t *m0 = make_model("mlp:8", 4, 32), *m = clone(m0);
    fv_train_cfg_t c = cfg_of(3, 10, 2);
    tr.x[4 * 57 + 1] = NAN; /* some steps are taken before its batch comes up */
    CHECK_INT_EQ(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, &c, &res, dp), FV_ENUMERIC);
    CHECK_CONTAINS(d.msg, "not finite");
    CHECK(same_params(m, m0));
    tr.x[4 * 57 + 1] = 0.0f;
    c.threads = FV_TRAIN_MAX_THREADS + 1;
    CHECK_INT_EQ(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, &c, &res, dp), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "threads = 257");
    c.threads = FV_TRAIN_MAX_THREADS; /* capped at the batch: 10 threads */
    CHECK_OK(fv_train(m, tr.x, tr.y, tr.n, NULL, NULL, 0, &c, &res, dp), dp);
    fv_train_cfg_t def;
    fv_train_cfg_default(&def);
    CHECK_UINT_EQ(def.threads, 1);
    fv_mlp_free(m0);
    fv_mlp_free(m);
    data_free(&tr);
}

int main(void)
{
    /* as `fedvault train --threads` runs it: each thread's products single-threaded */
    fv_blas_set_threads(1);
    test_gradient_matches();
    test_determinism();
    test_small_batches();
    test_thread_count_invariance();
    test_early_stopping();
    test_distill();
    test_errors();
    puts("ok");
    return 0;
}
