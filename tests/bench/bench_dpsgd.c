/* bench_dpsgd.c - what DP-SGD costs: DP-SGD training against plain training of the SAME
 * model on the same data, measured in the same run (the ratio is the number; the goal is
 * DP-SGD <= 3x plain).
 *
 * usage: bench_dpsgd [CSV] [EPOCHS] [REPS]   -> one JSON line per model
 * CSV defaults to $FV_SOURCE_ROOT/examples/data/lending_club.csv (target "Class",
 * positive "bad"); the Lending Club job's split: 75 % of the rows train (seed 0), the
 * preprocessing fitted on them. Models: mlp:128,64 (the Lending Club job's) and logreg.
 * Plain: fv_train, batch 128, EPOCHS epochs (default 5), Adam, no validation, no early
 * stopping. DP-SGD: the same with cfg->dp on, q = 128 / n_train (so the same number of
 * steps per epoch and the same expected batch), clip 1, sigma 1. Best of REPS (default 3)
 * of each after one warm-up run of each.
 *
 * The randomness callbacks: an fv_rng Bernoulli sampler and an fv_rng normal noise
 * stand-in, seeded per step. The model library cannot depend on crypto/ (the keyed
 * ChaCha20 streams of crypto/fv_dpnoise.h that the agent uses); the stand-ins do the same
 * amount of work per step (one uniform per training row, one normal per parameter), so the
 * ratio measures the DP step itself: per-row clipping (per-row losses, the kept deltas,
 * the norms, the scaled deltas), the sampling and the noise.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_blas.h"
#include "fv_dataset.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_rng.h"
#include "fv_schema.h"
#include "fv_train.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int r, const fv_diag_t *d)
{
    fprintf(stderr, "bench_dpsgd: %s: %s (%d)%s%s\n", what, fv_err_name(r), r, d ? ": " : "",
            d ? d->msg : "");
    exit(1);
}

static size_t sample_cb(void *user, uint64_t step, double q, size_t n, size_t *idx)
{
    (void)user;
    fv_rng_t r;
    fv_rng_seed(&r, 0x5a4d504c45ULL + step);
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (fv_rng_uniform(&r) < q)
            idx[c++] = i;
    return c;
}

static void noise_cb(void *user, uint64_t step, double std, float *out, size_t n)
{
    (void)user;
    fv_rng_t r;
    fv_rng_seed(&r, 0x4e4f495345ULL + step);
    for (size_t i = 0; i < n; i++)
        out[i] += (float)(std * fv_rng_normal(&r));
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
    char path[1024];
    const char *root = getenv("FV_SOURCE_ROOT");
    if (argc > 1)
        snprintf(path, sizeof path, "%s", argv[1]);
    else
        snprintf(path, sizeof path, "%s/examples/data/lending_club.csv", root ? root : ".");
    size_t epochs = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 5;
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    if (epochs < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_dpsgd [CSV] [EPOCHS >= 1] [REPS >= 1]\n");
        return 2;
    }

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
        double best_p = 1e300, best_d = 1e300;
        for (int i = 0; i < reps; i++) {
            double tp = run(&a, x, y, n_fit, &plain), td = run(&a, x, y, n_fit, &dp);
            best_p = tp < best_p ? tp : best_p;
            best_d = td < best_d ? td : best_d;
        }
        fv_mlp_t *m = NULL;
        fv_mlp_new(&a, &m);
        printf("{\"bench\": \"dpsgd\", \"model\": \"%s\", \"params\": %zu, \"rows\": %zu, "
               "\"features\": %zu, \"epochs\": %zu, \"batch\": 128, \"q\": %.6f, "
               "\"steps_plain\": %zu, \"steps_dp\": %llu, \"plain_s\": %.4f, \"dp_s\": %.4f, "
               "\"ratio\": %.3f, \"goal_ratio\": 3, \"noise\": \"fv_rng stand-in\", "
               "\"blas_threads\": %d, \"blas_core\": \"%s\"}\n",
               specs[k], fv_mlp_n_params(m), n_fit, nf, epochs, dp.dp.sample_rate,
               epochs * ((n_fit + 127) / 128),
               (unsigned long long)fv_train_dp_steps(epochs, dp.dp.sample_rate), best_p, best_d,
               best_d / best_p, fv_blas_get_threads(), fv_blas_core_name());
        fflush(stdout);
        fv_mlp_free(m);
    }
    free(x), free(y), free(fit), free(te);
    fv_preproc_free(pp);
    fv_dataset_free(ds);
    fv_schema_free(s);
    return 0;
}
