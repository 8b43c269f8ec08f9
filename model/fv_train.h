/* fv_train.h - the local training loop: mini-batches, early stopping, determinism.
 *
 * One epoch shuffles the training rows with an fv_rng seeded from (seed, epoch), walks
 * them in batches (the last batch may be short), and takes one optimizer step per batch.
 * After each epoch, if a validation set is given, the model is evaluated on it; early
 * stopping watches the chosen metric and stops after `patience` epochs without an
 * improvement larger than min_delta, then restores the best parameters. patience == 0
 * or no validation set disables early stopping (all epochs run, last parameters kept).
 * Same inputs, seed, thread count (cfg.threads) and OpenBLAS thread count -> bit-identical
 * parameters.
 *
 * No clocks, no printing: the caller times and reports epochs through on_epoch.
 */
#ifndef FV_TRAIN_H
#define FV_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"
#include "fv_mlp.h"
#include "fv_optim.h"

typedef enum {
    FV_ES_LOSS = 0,    /* validation loss, lower is better */
    FV_ES_ROC_AUC = 1, /* validation ROC AUC (binary only), higher is better */
} fv_es_metric_t;

typedef struct fv_epoch_report {
    size_t epoch;      /* 1-based */
    double train_loss; /* mean batch loss over the epoch (without regularizers) */
    double val_loss;   /* NaN if no validation set */
    double val_auc;    /* NaN if no validation set or multi-class */
    int improved;      /* 1 if this epoch is the best so far */
} fv_epoch_report_t;

/* DP-SGD (Abadi et al. 2016) instead of plain mini-batches, when on: every step samples
 * its rows by Poisson sampling (each training row independently with probability
 * sample_rate, through `sample`), clips each row's gradient (of its own loss, with
 * pos_weight) to L2 norm at most clip, sums them, adds N(0, (noise_multiplier clip)^2) to
 * every coordinate of the sum (through `noise`) and divides by the EXPECTED batch
 * sample_rate * n_train (a fixed denominator: the sample's size is not released); the
 * optimizer (its L2 decay included: post-processing) takes that as the step's gradient.
 * An epoch is fv_train_dp_steps(1, q) steps; a job's accountant counts
 * fv_train_dp_steps(epochs, q). Early stopping is refused with dp on (patience must be 0:
 * choosing an epoch by validation would be a release the accountant does not count).
 * The randomness is the caller's (keyed, secret: crypto/fv_dpnoise.h), per step index
 * (0-based over the whole call), so a run is reproducible from its keys.
 * The step (train.c's note): sample -> gather in chunks of the workspace's batch (a sample
 * may be larger than batch_size) -> fv_mlp_clipped_grad_sum per chunk, summed -> noise
 * (not called when noise_multiplier is 0) -> / (sample_rate * n_train) -> optimizer.
 * batch_size only sizes the chunks; there is no shuffle. The epoch report's train_loss is
 * the mean unclipped loss of the sampled rows. fv_train_distill takes the same step on the
 * distillation loss. With `on` false nothing changes (bit for bit). Refused (FV_EINVAL,
 * naming the field): clip, noise_multiplier or sample_rate out of range, a NULL callback,
 * patience > 0. */
typedef struct fv_train_dp {
    bool on;
    double clip;             /* C > 0, finite */
    double noise_multiplier; /* sigma >= 0, finite (0: clipping only, no privacy) */
    double sample_rate;      /* q in (0, 1] */
    /* The rows of step `step`: writes the sampled indices (each < n, increasing) into idx
     * (room for n) and returns their count. */
    size_t (*sample)(void *user, uint64_t step, double q, size_t n, size_t *idx);
    /* out[i] += std * N(0, 1), i < n, for step `step`. */
    void (*noise)(void *user, uint64_t step, double std, float *out, size_t n);
    void *user;
} fv_train_dp_t;

/* Steps of `epochs` DP-SGD epochs at sampling rate q: epochs * ceil(1 / q) (for
 * q = B / n that is epochs * ceil(n / B), the plain loop's batches). */
static inline uint64_t fv_train_dp_steps(uint64_t epochs, double q)
{
    double k = 1.0 / q;
    uint64_t per = (uint64_t)k;
    if ((double)per < k)
        per++;
    return epochs * (per == 0 ? 1 : per);
}

typedef struct fv_train_cfg {
    size_t epochs;     /* >= 1 */
    size_t batch_size; /* >= 1 */
    fv_optim_cfg_t optim;
    size_t patience; /* 0 = no early stopping */
    double min_delta;
    fv_es_metric_t es_metric;
    float pos_weight; /* binary positive-class weight, 1 = none */
    uint64_t seed;
    /* Called after every epoch; return non-zero to stop training (fv_train then returns
     * 0 with stopped_by_caller set). May be NULL. */
    int (*on_epoch)(void *user, const fv_epoch_report_t *r);
    void *user;
    fv_train_dp_t dp; /* off by default */
    /* Data-parallel training (train_pool.c's note): 1 (the default; 0 means 1) runs the plain
     * loop on the calling thread. T > 1 (at most FV_TRAIN_MAX_THREADS) starts
     * min(T, batch rows) - 1 threads for the call; each batch is cut into that many
     * contiguous slices, the threads take the slices' gradients (any thread any slice),
     * the gradients are summed weighted by the slices' rows (the batch mean), and the
     * optimizer step and the validation chunks are split over the threads too. Same inputs, seed
     * and T -> bit-identical parameters; different T agree up to float rounding of the
     * sums (not bit for bit). Each thread calls OpenBLAS on its own slice, so the caller
     * should run OpenBLAS single-threaded (fv_blas_set_threads(1), as `fedvault train
     * --threads` does): OpenBLAS threads on top would only compete for the same cores.
     * DP-SGD (dp.on) ignores it and runs on the calling thread. */
    size_t threads;
} fv_train_cfg_t;

#define FV_TRAIN_MAX_THREADS 256

/* Defaults: at most 200 epochs (early stopping usually ends sooner), batch 128,
 * fv_optim_cfg_default, patience 3, min_delta 1e-4, FV_ES_LOSS, pos_weight 1, seed 0,
 * threads 1. */
void fv_train_cfg_default(fv_train_cfg_t *cfg);

typedef struct fv_train_result {
    size_t epochs_run;
    size_t best_epoch; /* epoch whose parameters were kept */
    double best_val_metric;
    int stopped_early;
    int stopped_by_caller;
} fv_train_result_t;

/* x_train: n_train x n_in, y_train: class indices. x_val/y_val may be NULL (n_val 0).
 * The model is trained in place. */
int fv_train(fv_mlp_t *m, const float *x_train, const int32_t *y_train, size_t n_train,
             const float *x_val, const int32_t *y_val, size_t n_val, const fv_train_cfg_t *cfg,
             fv_train_result_t *ret, fv_diag_t *d);

/* Knowledge distillation: fv_train with the loss of fv_mlp_distill_loss_grad (fv_mlp.h),
 * alpha * hard loss on y + (1 - alpha) * T^2 * KL(teacher_T || student_T).
 * t_logits: the teacher's logits for every training row, n_train x n_out (the student's
 * n_out), borrowed, all finite (else FV_EINVAL naming the row); they are precomputed so
 * this loop does not depend on the teacher model. Everything else is fv_train's: same
 * shuffle, batches, optimizer, determinism. train_loss in the epoch reports is the
 * distillation loss; the validation loss (and so early stopping on FV_ES_LOSS) is the
 * plain loss on the validation labels (with cfg->pos_weight, as in fv_train: with the
 * default 1 that is plain BCE), because the student is judged on the labels. With
 * dc->alpha == 1 the parameters are bit-identical to fv_train's for the same inputs. */
int fv_train_distill(fv_mlp_t *m, const float *x_train, const int32_t *y_train,
                     const float *t_logits, size_t n_train, const float *x_val,
                     const int32_t *y_val, size_t n_val, const fv_train_cfg_t *cfg,
                     const fv_distill_cfg_t *dc, fv_train_result_t *ret, fv_diag_t *d);

#endif
