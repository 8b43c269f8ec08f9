/* bench_dpsgd.c - what DP-SGD costs: DP-SGD training against plain training of the SAME
 * model on the same data, measured in the same run (the ratio is the number; the goal is
 * DP-SGD <= 3x plain).
 *
 * usage: bench_dpsgd [CSV|""] [EPOCHS] [REPS] [BLAS_THREADS]   -> one JSON line per model
 * CSV defaults to $FV_SOURCE_ROOT/examples/data/lending_club.csv (target "Class",
 * positive "bad"); the Lending Club job's split: 75 % of the rows train (seed 0), the
 * preprocessing fitted on them. Models: mlp:128,64 (the Lending Club job's) and logreg.
 * Plain: fv_train, batch 128, EPOCHS epochs (default 5), Adam, no validation, no early
 * stopping. DP-SGD: the same with cfg->dp on, q = 128 / n_train (so the same number of
 * steps per epoch and the same expected batch), clip 1, sigma 1. Best of REPS (default 3)
 * of each after one warm-up run of each. Times are process CPU seconds with BLAS_THREADS
 * OpenBLAS threads (default 1: then CPU time is the run's own work; with more, spinning
 * BLAS threads count too).
 *
 * The randomness callbacks are the agent's (crypto/fv_dpnoise.h, linked here; the model
 * library itself does not depend on crypto/): per step, a keyed ChaCha20 stream for the
 * Poisson sample (fv_dp_poisson: ~1 keystream byte per training row) and one for the
 * Gaussian noise (fv_dp_gauss_add_f32: one normal per parameter), under a fixed bench key.
 * "callbacks_s" times those callbacks alone for the same steps (and per row sampled
 * from / per parameter noised), so the ratio can be split
 * into the randomness (fixed by the privacy design: O(n_train + n_params) per step) and
 * the clipped step itself (per-row losses, the kept deltas, the norms, the scaled deltas).
 * "grad_ratio": 200 clipped gradient sums of 128 rows against 200 plain gradients of the
 * same rows (the gradient alone, no loop, no randomness).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_blas.h"
#include "fv_dataset.h"
#include "fv_dpnoise.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_rng.h"
#include "fv_schema.h"
#include "fv_train.h"

/* CPU seconds of the process: with one OpenBLAS thread that is this run's own work, which
 * other jobs on a shared machine disturb far less than they disturb wall-clock time. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int r, const fv_diag_t *d)
{
    fprintf(stderr, "bench_dpsgd: %s: %s (%d)%s%s\n", what, fv_err_name(r), r, d ? ": " : "",
            d ? d->msg : "");
    exit(1);
}

static const uint8_t bench_key[32] = {0x66, 0x76, 0x2d, 0x62, 0x65, 0x6e, 0x63, 0x68};

static size_t sample_cb(void *user, uint64_t step, double q, size_t n, size_t *idx)
{
    (void)user;
    fv_dp_stream_t st;
    fv_dp_stream_init(&st, bench_key, FV_DP_DOMAIN_SAMPLE, step);
    size_t c = fv_dp_poisson(&st, q, n, idx);
    fv_dp_stream_wipe(&st);
    return c;
}

static void noise_cb(void *user, uint64_t step, double std, float *out, size_t n)
{
    (void)user;
    fv_dp_stream_t st;
    fv_dp_stream_init(&st, bench_key, FV_DP_DOMAIN_NOISE, step);
    fv_dp_gauss_add_f32(&st, std, out, n);
    fv_dp_stream_wipe(&st);
}

/* Seconds of the callbacks alone over the DP run's steps: ret[0] sampling, ret[1] noise. */
static void run_callbacks(uint64_t steps, double q, size_t n, size_t n_params, size_t *idx,
                          float *g, double *ret)
{
    double t0 = now_s();
    for (uint64_t s = 0; s < steps; s++)
        sample_cb(NULL, s, q, n, idx);
    double t1 = now_s();
    for (uint64_t s = 0; s < steps; s++)
        noise_cb(NULL, s, 1.0, g, n_params);
    ret[0] = t1 - t0;
    ret[1] = now_s() - t1;
}

/* Seconds of `calls` gradients of the first 128 rows: plain (fv_mlp_loss_grad, ret[0])
 * and clipped (fv_mlp_clipped_grad_sum, clip 1, ret[1]); the step's core alone. */
static void run_grads(const fv_mlp_arch_t *a, const float *x, const int32_t *y, int calls,
                      double *ret)
{
    fv_mlp_t *m = NULL;
    fv_mlp_ws_t *ws = NULL;
    int r = fv_mlp_new(a, &m);
    if (r != 0 || (r = fv_mlp_ws_new(m, 128, &ws)) != 0)
        die("model", r, NULL);
    fv_mlp_init(m, 0);
    float *g = malloc(fv_mlp_n_params(m) * sizeof *g);
    if (g == NULL)
        die("memory", FV_ENOMEM, NULL);
    double loss, t0 = now_s();
    for (int i = 0; i < calls; i++)
        if ((r = fv_mlp_loss_grad(m, ws, x, y, NULL, 128, 1.0f, g, &loss)) != 0)
            die("gradient", r, NULL);
    double t1 = now_s();
    for (int i = 0; i < calls; i++)
        if ((r = fv_mlp_clipped_grad_sum(m, ws, x, y, NULL, NULL, 128, 1.0f, 1.0, g, &loss,
                                         NULL)) != 0)
            die("clipped gradient", r, NULL);
    ret[0] = t1 - t0;
    ret[1] = now_s() - t1;
    free(g);
    fv_mlp_ws_free(ws);
    fv_mlp_free(m);
}

/* Seconds of one training run from a fresh model. */
static double run(const fv_mlp_arch_t *a, const float *x, const int32_t *y, size_t n,
                  const fv_train_cfg_t *c)
{
    fv_mlp_t *m = NULL;
    fv_diag_t d;
    fv_train_result_t res;
    int r = fv_mlp_new(a, &m);
    if (r != 0)
        die("model", r, NULL);
    fv_mlp_init(m, 0);
    double t0 = now_s();
    if ((r = fv_train(m, x, y, n, NULL, NULL, 0, c, &res, &d)) != 0)
        die("training", r, &d);
    double t = now_s() - t0;
    fv_mlp_free(m);
    return t;
}

int main(int argc, char **argv)
{
    char machine[384];
    fprintf(stderr, "machine: %s\n", fv_machine_line(machine, sizeof machine));
    char path[1024];
    const char *root = getenv("FV_SOURCE_ROOT");
    if (argc > 1 && argv[1][0] != '\0')
        snprintf(path, sizeof path, "%s", argv[1]);
    else
        snprintf(path, sizeof path, "%s/examples/data/lending_club.csv", root ? root : ".");
    size_t epochs = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 5;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    if (epochs < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_dpsgd [CSV] [EPOCHS >= 1] [REPS >= 1]\n");
        return 2;
    }

    int threads = argc > 4 ? atoi(argv[4]) : 1;
    fv_blas_set_threads(threads < 1 ? 1 : threads);
    fv_diag_t d;
    fv_schema_infer_opts_t o;
    fv_schema_t *s = NULL;
    fv_dataset_t *ds = NULL;
    fv_preproc_t *pp = NULL;
    size_t *fit, *te, n_fit, n_te;
    int r;
    memset(&o, 0, sizeof o);
    o.target = "Class";
    o.positive = "bad";
    if ((r = fv_schema_infer(path, &o, &s, &d)) != 0 || (r = fv_dataset_load(path, s, &ds, &d)) ||
        (r = fv_dataset_split(ds, NULL, ds->n_rows, 0.25, 0, &fit, &n_fit, &te, &n_te)))
        die(path, r, &d);
    if ((r = fv_preproc_fit(ds, fit, n_fit, &pp)) != 0)
        die("preprocessing", r, NULL);
    size_t nf = fv_preproc_n_features(pp);
    float *x = malloc(n_fit * nf * sizeof *x);
    int32_t *y = malloc(n_fit * sizeof *y);
    if (x == NULL || y == NULL)
        die("memory", FV_ENOMEM, NULL);
    if ((r = fv_preproc_transform(pp, ds, fit, n_fit, x)) != 0)
        die("preprocessing", r, NULL);
    fv_dataset_labels(ds, fit, n_fit, y);

    const char *specs[] = {"mlp:128,64", "logreg"};
    for (size_t k = 0; k < 2; k++) {
        fv_mlp_arch_t a;
        if ((r = fv_mlp_parse_arch(specs[k], nf, 2, &a, &d)) != 0)
            die("architecture", r, &d);
        fv_train_cfg_t plain, dp;
        fv_train_cfg_default(&plain);
        plain.epochs = epochs;
        plain.batch_size = 128;
        plain.patience = 0;
        dp = plain;
        dp.dp.on = true;
        dp.dp.clip = 1.0;
        dp.dp.noise_multiplier = 1.0;
        dp.dp.sample_rate = 128.0 / (double)n_fit;
        dp.dp.sample = sample_cb;
        dp.dp.noise = noise_cb;
        run(&a, x, y, n_fit, &plain); /* warm-up */
        run(&a, x, y, n_fit, &dp);
        fv_mlp_t *m = NULL;
        if ((r = fv_mlp_new(&a, &m)) != 0)
            die("model", r, NULL);
        const uint64_t steps = fv_train_dp_steps(epochs, dp.dp.sample_rate);
        size_t *idx = malloc(n_fit * sizeof *idx);
        float *g = calloc(fv_mlp_n_params(m), sizeof *g);
        if (idx == NULL || g == NULL)
            die("memory", FV_ENOMEM, NULL);
        double best_p = 1e300, best_d = 1e300, best_s = 1e300, best_n = 1e300;
        double best_gp = 1e300, best_gc = 1e300;
        for (int i = 0; i < reps; i++) {
            double tp = run(&a, x, y, n_fit, &plain), td = run(&a, x, y, n_fit, &dp), tc[2];
            run_callbacks(steps, dp.dp.sample_rate, n_fit, fv_mlp_n_params(m), idx, g, tc);
            best_p = tp < best_p ? tp : best_p;
            best_d = td < best_d ? td : best_d;
            best_s = tc[0] < best_s ? tc[0] : best_s;
            best_n = tc[1] < best_n ? tc[1] : best_n;
            run_grads(&a, x, y, 200, tc);
            best_gp = tc[0] < best_gp ? tc[0] : best_gp;
            best_gc = tc[1] < best_gc ? tc[1] : best_gc;
        }
        const double best_c = best_s + best_n;
        free(idx);
        free(g);
        printf("{\"bench\": \"dpsgd\", \"model\": \"%s\", \"params\": %zu, \"rows\": %zu, "
               "\"features\": %zu, \"epochs\": %zu, \"batch\": 128, \"q\": %.6f, "
               "\"steps_plain\": %zu, \"steps_dp\": %llu, \"plain_s\": %.4f, \"dp_s\": %.4f, "
               "\"ratio\": %.3f, \"goal_ratio\": 3, \"callbacks_s\": %.4f, "
               "\"ratio_without_callbacks\": %.3f, \"sample_ns_per_row\": %.1f, "
               "\"noise_ns_per_param\": %.1f, \"grad_ratio\": %.3f, \"noise\": \"fv_dpnoise\", "
               "\"blas_threads\": %d, \"blas_core\": \"%s\"}\n",
               specs[k], fv_mlp_n_params(m), n_fit, nf, epochs, dp.dp.sample_rate,
               epochs * ((n_fit + 127) / 128), (unsigned long long)steps, best_p, best_d,
               best_d / best_p, best_c, (best_d - best_c) / best_p,
               1e9 * best_s / ((double)steps * (double)n_fit),
               1e9 * best_n / ((double)steps * (double)fv_mlp_n_params(m)), best_gc / best_gp,
               fv_blas_get_threads(), fv_blas_core_name());
        fflush(stdout);
        fv_mlp_free(m);
    }
    free(x), free(y), free(fit), free(te);
    fv_preproc_free(pp);
    fv_dataset_free(ds);
    fv_schema_free(s);
    return 0;
}
