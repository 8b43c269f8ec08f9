/* train.c - the local training loop: shuffled mini-batches, validation, early stopping.
 *
 * Per epoch e (1-based):
 *   1. idx = 0..n_train-1, shuffled by an fv_rng seeded with mix(seed, e). The order of
 *      epoch e is a function of (seed, e) alone, not of earlier epochs.
 *   2. Batches of batch_size rows in that order (the last one may be short). Each batch
 *      is gathered once into a contiguous buffer (rows x n_in), then one
 *      fv_mlp_loss_grad and one fv_optim_step.
 *   3. train_loss = sum over batches of (batch mean loss * batch rows) / n_train, i.e.
 *      the mean per-row loss seen during the epoch (equal to the mean of the batch losses
 *      when all batches are full), without regularizers.
 *   4. With a validation set: val_loss = fv_mlp_loss over it (in chunks, recombined
 *      exactly as a row mean), using the training pos_weight, because that is the
 *      objective being minimized; val_auc = fv_metrics_roc_auc of fv_mlp_predict
 *      (binary only; NaN if the validation labels hold one class). That is two forward
 *      passes per validation chunk, accepted so the loss keeps its one definition in
 *      mlp.c: a forward pass is about a third of a training step, so with a validation
 *      set a fifth the size of the training set this costs a few percent of an epoch.
 *   5. Bookkeeping: the epoch "improved" if its metric beats the best so far by more than
 *      min_delta (loss: m < best - min_delta; AUC: m > best + min_delta); the first
 *      epoch always improves. With early stopping on, an improving epoch's parameters are
 *      copied aside.
 *   6. on_epoch (if any) sees the report; non-zero stops the run (stopped_by_caller).
 *   7. Early stopping: after `patience` consecutive epochs without improvement, stop.
 * At the end, with early stopping on (patience > 0 and a validation set), the best
 * epoch's parameters are put back, also when the caller stopped the run; best_epoch and
 * best_val_metric describe them. With early stopping off, the last parameters are kept,
 * best_epoch = epochs_run and best_val_metric is the last epoch's metric (NaN without a
 * validation set).
 *
 * Errors: arguments are checked before any work (labels too, with the row named). A
 * non-finite loss or parameter during training is FV_ENUMERIC; on any failure the model's
 * parameters are restored to their values at entry, and *ret is not written.
 *
 * Determinism: the only randomness is the per-epoch shuffle; every reduction has a
 * fixed order; so the same inputs, seed, cfg->threads and OpenBLAS thread count give
 * bit-identical parameters. No clocks, no printing (STYLE.md): the caller times epochs
 * in on_epoch.
 *
 * Distillation (fv_train_distill): the same loop; each batch also gathers the rows'
 * teacher logits (n_out per row) and takes fv_mlp_distill_loss_grad instead of
 * fv_mlp_loss_grad. Validation stays the plain loss on the labels (evaluate() is shared),
 * so early stopping keeps the student that predicts y best, not the one that mimics the
 * teacher best. The teacher logits are checked finite up front (row named), so a bad
 * teacher is an argument error, not a numeric failure in the middle of an epoch.
 *
 * DP-SGD (cfg->dp.on, fv_train.h): steps 1-3 are replaced; validation, reports and the
 * rest are the same (patience must be 0, checked up front). An epoch is
 * fv_train_dp_steps(1, q) steps; step s (0-based over the whole call, so epoch e's steps
 * are (e-1)*per .. e*per-1):
 *   a. cfg->dp.sample(user, s, q, n_train, idx) chooses the rows (Poisson: the count
 *      varies, from 0 to n_train; checked increasing and in range);
 *   b. they are gathered in chunks of the workspace's batch (batch_size rows, or the
 *      validation chunk if larger), and fv_mlp_clipped_grad_sum of each chunk is summed
 *      (float, chunks in order): the sum over the sample of each row's gradient clipped
 *      to L2 norm clip;
 *   c. cfg->dp.noise(user, s, noise_multiplier * clip, grad, n_params) adds the Gaussian
 *      noise (not called when that std is 0: clipping only);
 *   d. grad /= q * n_train (the expected batch, fixed: the count is not released), then
 *      one fv_optim_step as in plain training (its weight decay is post-processing).
 *   train_loss is the mean unclipped loss of the rows sampled during the epoch (NaN if
 *   none were). No shuffle: the rows are the sampler's. Same callbacks (same keys) ->
 *   bit-identical parameters. With dp off none of this runs and nothing else changes.
 *
 * Data parallelism (cfg->threads = T > 1, plain and distillation training; DP-SGD stays
 * on the calling thread). T is capped at the batch size. The call starts T - 1 threads
 * once (the caller's thread is thread 0) and stops them before it returns; they never
 * outlive fv_train. Work is cut into T tasks that do not depend on which thread runs
 * them, and any thread may claim any task, so a thread the OS deschedules (two cores
 * shared with other processes) does not stall the batch: the others take its tasks.
 * Each batch is two jobs:
 *   SLICE  task k gathers slice k of the batch straight from x_train (rows lo_k ..
 *          lo_k + n_k - 1 of the batch, n_k = nb / T or one more for the first nb % T
 *          slices, so a slice is empty only after every non-empty one) into slice k's
 *          buffers and takes fv_mlp_loss_grad (or the distillation one) of it with slice
 *          k's workspace: the mean over its n_k rows, into slice k's gradient. Thread 0
 *          then checks every slice's status (the first failing slice is the error) and
 *          adds n_k * loss_k to the epoch's loss, slices in order.
 *   RANGE  task k owns range k of the parameters (T near-equal ranges, cut at multiples
 *          of 16 floats so no two tasks write one cache line) and, over it, forms
 *              g = s_0 g_0 + s_1 g_1 + ...,  s_k = (float)(n_k / nb)  (slices in order)
 *          into slice 0's gradient, which is the batch mean's gradient up to rounding,
 *          then runs fv_optim_step_part of the batch's step number on that range (the
 *          same operations per element as fv_optim_step).
 * Validation is one EVAL job: task k evaluates chunks k, k + T, ... (the single-threaded
 * chunks, each into its own loss slot and val_prob range, with the running thread's
 * workspace); thread 0 then sums the chunk losses in chunk order, exactly as evaluate()
 * does, so the validation metrics of given parameters do not depend on T.
 * Hand-off: one 64-bit claim word = job number | task count | next task. Thread 0 sets
 * the job's fields, zeroes the done count and stores a new claim word (seq_cst), then
 * claims tasks itself; every thread claims by compare-and-swap on next, runs the task,
 * and counts it done; thread 0 waits for done == T before it reads results or publishes
 * the next job, so a job's fields never change while one of its tasks runs, and
 * everything a task wrote is visible to the next job (the done count and the claim word
 * order them). Waits spin POOL_SPINS pauses (tens of microseconds: the other thread is
 * usually about to finish), then block on a condition variable, so idle threads leave
 * the shared cores to other processes; a waker signals only when someone sleeps (a
 * seq_cst store/load pair on each side, so a wake-up is never lost). The exit word
 * (task count 0xffff) makes the threads return, and they are joined.
 * A claimed task cannot be taken back, so a thread descheduled in the middle of one
 * stalls the job: when thread 0, out of tasks, has waited for two jobs in a row longer
 * than its own share took (a descheduled thread, not a slow wake-up), it runs the next
 * POOL_SOLO_JOBS jobs' tasks alone, in order (the same tasks give the same bits), then
 * hands them out again. On a machine whose cores are
 * busy with other work T threads then cost about what one does instead of more.
 * Determinism: slices, their buffers and workspaces, ranges and sums are fixed by (nb, T),
 * not by which thread ran what, so the same T gives the same bits; T = 1 is the
 * single-threaded loop above, unchanged.
 *
 * Memory: everything is allocated once before the first epoch (workspace, batch buffer,
 * gradient, optimizer state, index, snapshots; DP-SGD's second gradient for chunks, and
 * the workspace's delta block on the first step); nothing is allocated per batch.
 */
#include "fv_train.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_metrics.h"
#include "fv_rng.h"
#include "fv_vec.h"

/* Validation rows evaluated per forward pass (at least the batch size). */
#define FV_TRAIN_VAL_CHUNK 256

void fv_train_cfg_default(fv_train_cfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->epochs = 200;
    cfg->batch_size = 128;
    fv_optim_cfg_default(&cfg->optim);
    cfg->patience = 3;
    cfg->min_delta = 1e-4;
    cfg->es_metric = FV_ES_LOSS;
    cfg->pos_weight = 1.0f;
    cfg->seed = 0;
    cfg->on_epoch = NULL;
    cfg->user = NULL;
    cfg->threads = 1;
}

/* splitmix64's finalizer: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Seed of epoch e's shuffle: distinct (seed, epoch) pairs give unrelated streams. */
static uint64_t epoch_seed(uint64_t seed, size_t epoch)
{
    return mix64(mix64(seed ^ 0x6a09e667f3bcc909ULL) + (uint64_t)epoch);
}

static int check_labels(const char *what, const int32_t *y, size_t n, size_t n_classes,
                        fv_diag_t *d)
{
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || (size_t)y[i] >= n_classes)
            return fv_diag_set(d, FV_EINVAL,
                               "training: %s row %zu: label %d is out of range 0..%zu", what, i,
                               (int)y[i], n_classes - 1);
    return 0;
}

static int check_args(const fv_mlp_t *m, const float *x_train, const int32_t *y_train,
                      size_t n_train, const float *x_val, const int32_t *y_val, size_t n_val,
                      const fv_train_cfg_t *cfg, const fv_train_result_t *ret, fv_diag_t *d)
{
    if (m == NULL || x_train == NULL || y_train == NULL || cfg == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "training: missing model, data, config or result");
    if (n_train == 0)
        return fv_diag_set(d, FV_EEMPTY, "training: no training rows");
    if (n_val > 0 && (x_val == NULL || y_val == NULL))
        return fv_diag_set(d, FV_EINVAL, "training: %zu validation rows but no data", n_val);
    if (cfg->epochs < 1)
        return fv_diag_set(d, FV_EINVAL, "training: epochs = %zu: must be >= 1", cfg->epochs);
    if (cfg->batch_size < 1)
        return fv_diag_set(d, FV_EINVAL, "training: batch_size = %zu: must be >= 1",
                           cfg->batch_size);
    if (!(isfinite(cfg->min_delta) && cfg->min_delta >= 0.0))
        return fv_diag_set(d, FV_EINVAL, "training: min_delta = %g: must be finite and >= 0",
                           cfg->min_delta);
    if (!(isfinite(cfg->pos_weight) && cfg->pos_weight > 0.0f))
        return fv_diag_set(d, FV_EINVAL, "training: pos_weight = %g: must be finite and > 0",
                           (double)cfg->pos_weight);
    if (cfg->es_metric != FV_ES_LOSS && cfg->es_metric != FV_ES_ROC_AUC)
        return fv_diag_set(d, FV_EINVAL,
                           "training: es_metric = %d: must be loss (0) or roc_auc (1)",
                           (int)cfg->es_metric);
    if (cfg->threads > FV_TRAIN_MAX_THREADS)
        return fv_diag_set(d, FV_EINVAL, "training: threads = %zu: must be 1..%d", cfg->threads,
                           FV_TRAIN_MAX_THREADS);
    int r = fv_optim_cfg_check(&cfg->optim, d);
    if (r != 0)
        return r;
    if (cfg->dp.on) {
        const fv_train_dp_t *dp = &cfg->dp;
        if (!(isfinite(dp->clip) && dp->clip > 0.0))
            return fv_diag_set(d, FV_EINVAL, "training: DP-SGD clip = %g: must be finite and > 0",
                               dp->clip);
        if (!(isfinite(dp->noise_multiplier) && dp->noise_multiplier >= 0.0))
            return fv_diag_set(d, FV_EINVAL,
                               "training: DP-SGD noise_multiplier = %g: must be finite and >= 0",
                               dp->noise_multiplier);
        if (!(dp->sample_rate > 0.0 && dp->sample_rate <= 1.0))
            return fv_diag_set(d, FV_EINVAL, "training: DP-SGD sample_rate = %g: must be in (0, 1]",
                               dp->sample_rate);
        if (dp->sample == NULL || dp->noise == NULL)
            return fv_diag_set(d, FV_EINVAL,
                               "training: DP-SGD needs its sample and noise callbacks");
        if (cfg->patience > 0)
            return fv_diag_set(d, FV_EINVAL,
                               "training: DP-SGD with early stopping (patience = %zu): choosing "
                               "an epoch by validation is a release the privacy accountant does "
                               "not count; set patience to 0",
                               cfg->patience);
    }

    size_t n_out = fv_mlp_arch(m)->n_out;
    size_t n_classes = n_out == 1 ? 2 : n_out;
    if ((r = check_labels("training", y_train, n_train, n_classes, d)) != 0 ||
        (r = check_labels("validation", y_val, n_val, n_classes, d)) != 0)
        return r;

    if (cfg->patience > 0 && n_val > 0 && cfg->es_metric == FV_ES_ROC_AUC) {
        if (n_out != 1)
            return fv_diag_set(d, FV_EINVAL,
                               "training: early stopping on ROC AUC needs a binary model "
                               "(this one has %zu classes); use the loss metric",
                               n_out);
        size_t n_pos = 0;
        for (size_t i = 0; i < n_val; i++)
            n_pos += y_val[i] == 1;
        if (n_pos == 0 || n_pos == n_val)
            return fv_diag_set(d, FV_EINVAL,
                               "training: the validation set has only %s rows, so ROC AUC "
                               "is undefined; use the loss metric or another split",
                               n_pos ? "positive" : "negative");
    }
    return 0;
}

/* Everything one run allocates, released in one place. */
typedef struct train_state {
    fv_mlp_ws_t *ws;
    fv_optim_t *opt;
    float *xb;       /* batch rows, bs x n_in */
    int32_t *yb;     /* batch labels */
    float *grad;     /* n_params */
    size_t *idx;     /* n_train */
    float *start;    /* parameters at entry, restored on failure */
    float *best;     /* parameters of the best epoch (early stopping only) */
    float *val_prob; /* n_val (binary with a validation set only) */
    float *tb;       /* batch teacher logits, bs x n_out (distillation only) */
    float *gchunk;   /* DP-SGD: a chunk's clipped sum after the first, n_params */
} train_state_t;

static void state_free(train_state_t *s)
{
    fv_mlp_ws_free(s->ws);
    fv_optim_free(s->opt);
    free(s->xb);
    free(s->yb);
    free(s->grad);
    free(s->idx);
    free(s->start);
    free(s->best);
    free(s->val_prob);
    free(s->tb);
    free(s->gchunk);
}

/* Validation loss (row mean) and, for binary models, ROC AUC (NaN if undefined). */
static int evaluate(const fv_mlp_t *m, train_state_t *s, const float *x, const int32_t *y, size_t n,
                    size_t chunk, float pos_weight, double *ret_loss, double *ret_auc)
{
    size_t n_in = fv_mlp_arch(m)->n_in;
    int binary = fv_mlp_arch(m)->n_out == 1;
    double sum = 0.0;
    for (size_t i = 0; i < n; i += chunk) {
        size_t nc = n - i < chunk ? n - i : chunk;
        double l;
        int r = fv_mlp_loss(m, s->ws, x + i * n_in, y + i, NULL, nc, pos_weight, &l);
        if (r != 0)
            return r;
        sum += l * (double)nc;
        if (binary && (r = fv_mlp_predict(m, s->ws, x + i * n_in, nc, s->val_prob + i)) != 0)
            return r;
    }
    *ret_loss = sum / (double)n;
    *ret_auc = NAN;
    if (binary && fv_metrics_roc_auc(s->val_prob, y, n, ret_auc) != 0)
        *ret_auc = NAN;
    return 0;
}

/* One DP-SGD step (top note): the step's Poisson sample through cfg->dp.sample, its
 * clipped sum in chunks of `chunk` rows (the workspace's batch), noise, and s->grad =
 * that / (q n_train). Adds the sampled rows' unclipped losses to *loss_sum and their
 * count to *rows. */
static int dp_step(fv_mlp_t *m, train_state_t *s, const float *x_train, const int32_t *y_train,
                   const float *t_logits, size_t n_train, const fv_train_cfg_t *cfg,
                   const fv_distill_cfg_t *dc, size_t chunk, uint64_t step, double *loss_sum,
                   size_t *rows, fv_diag_t *d)
{
    const fv_train_dp_t *dp = &cfg->dp;
    const size_t n_in = fv_mlp_arch(m)->n_in, n_out = fv_mlp_arch(m)->n_out;
    const size_t n_params = fv_mlp_n_params(m);
    size_t cnt = dp->sample(dp->user, step, dp->sample_rate, n_train, s->idx);
    if (cnt > n_train)
        return fv_diag_set(d, FV_EINVAL,
                           "training: DP-SGD step %llu: the sample callback returned %zu rows "
                           "of %zu",
                           (unsigned long long)step, cnt, n_train);
    for (size_t j = 0; j < cnt; j++)
        if (s->idx[j] >= n_train || (j > 0 && s->idx[j] <= s->idx[j - 1]))
            return fv_diag_set(d, FV_EINVAL,
                               "training: DP-SGD step %llu: the sample callback's index %zu "
                               "(%zu) is out of range or not increasing",
                               (unsigned long long)step, j, s->idx[j]);
    if (cnt == 0)
        memset(s->grad, 0, n_params * sizeof *s->grad);
    for (size_t c0 = 0; c0 < cnt; c0 += chunk) {
        size_t nc = cnt - c0 < chunk ? cnt - c0 : chunk;
        for (size_t j = 0; j < nc; j++) {
            size_t row = s->idx[c0 + j];
            memcpy(s->xb + j * n_in, x_train + row * n_in, n_in * sizeof *s->xb);
            s->yb[j] = y_train[row];
            if (t_logits != NULL)
                memcpy(s->tb + j * n_out, t_logits + row * n_out, n_out * sizeof *s->tb);
        }
        double ls;
        int r = fv_mlp_clipped_grad_sum(m, s->ws, s->xb, s->yb, t_logits != NULL ? s->tb : NULL,
                                        t_logits != NULL ? dc : NULL, nc, cfg->pos_weight, dp->clip,
                                        c0 == 0 ? s->grad : s->gchunk, &ls, NULL);
        if (r != 0)
            return fv_diag_set(d, r,
                               "training: DP-SGD step %llu: %s; lower the learning rate or "
                               "check the inputs for extreme values",
                               (unsigned long long)step,
                               r == FV_ENUMERIC ? "a loss or gradient norm is not finite"
                                                : "the clipped gradient failed");
        if (c0 > 0)
            fv_vec_axpy(n_params, 1.0f, s->gchunk, s->grad);
        *loss_sum += ls;
    }
    *rows += cnt;
    double std = dp->noise_multiplier * dp->clip;
    if (std > 0.0)
        dp->noise(dp->user, step, std, s->grad, n_params);
    fv_vec_scale(n_params, (float)(1.0 / (dp->sample_rate * (double)n_train)), s->grad);
    return 0;
}

/* ---- data-parallel threads (top note) ------------------------------------------ */

/* Waits spin this many pauses (about 30-60 us) before sleeping on the condition variable. */
#define POOL_SPINS 2000
/* Jobs thread 0 runs alone after two stalled ones (32 batches). */
#define POOL_SOLO_JOBS 64

/* Task kinds of a job: a batch is a SLICE job (T tasks, one per slice) then, when every
 * slice succeeded, a RANGE job (T tasks, one per parameter range); validation is an EVAL
 * job (T tasks, one per stripe of chunks). */
typedef enum { JOB_SLICE, JOB_RANGE, JOB_EVAL } job_kind_t;

/* The claim word: job number (32 bits) | task count (16) | next unclaimed task (16). A
 * task count of CLAIM_EXIT tells the threads to return. */
#define CLAIM_EXIT 0xffffu
#define CLAIM_WORD(gen, n, next) (((uint64_t)(gen) << 32) | ((uint64_t)(n) << 16) | (next))

typedef struct slice {
    fv_mlp_ws_t *ws; /* slice 0: the state's (borrowed); else owned */
    float *xb;       /* the slice's rows */
    int32_t *yb;
    float *tb;   /* the slice's teacher logits (distillation) */
    float *grad; /* n_params; slice 0's receives the batch's sum */
    /* results of the current SLICE job */
    size_t rows;
    double loss;
    int rc;
} slice_t;

typedef struct worker_arg worker_arg_t;

typedef struct pool {
    size_t n;           /* threads and slices, >= 2 */
    worker_arg_t *args; /* n (0 unused) */
    slice_t *sl;
    pthread_t *tid; /* n - 1 */
    size_t n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int have_sync;
    _Atomic uint64_t claim;
    atomic_uint done;     /* tasks of the current job finished */
    atomic_uint sleepers; /* threads blocked (or about to block) on cv */
    uint32_t gen;         /* thread 0's job counter */
    unsigned stalls;      /* consecutive jobs thread 0 had to block on (thread 0 only) */
    unsigned solo;        /* jobs thread 0 still runs alone (thread 0 only) */
    /* the current job (written by thread 0 only while no task of a job is pending) */
    job_kind_t kind;
    size_t b0, nb; /* SLICE, RANGE: the batch */
    uint64_t step; /* RANGE: the optimizer step number, 1-based */
    /* the run, read-only while the threads run (params: see the top note) */
    const fv_mlp_t *m;
    float *params;
    const uint8_t *mask;
    const fv_optim_t *opt;
    const float *x_train;
    const int32_t *y_train;
    const float *t_logits;
    const fv_distill_cfg_t *dc;
    const size_t *idx;
    float pos_weight;
    size_t n_in, n_out, n_params;
    /* validation */
    const float *xv;
    const int32_t *yv;
    size_t nv, chunk;
    double *chunk_loss; /* one per chunk */
    float *val_prob;    /* nv, binary only (else NULL) */
    int *eval_rc;       /* one per stripe */
} pool_t;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Wakes the sleepers after a state change (the change is seq_cst, so either a sleeper
 * that is about to block sees it under the mutex, or this sees the sleeper). */
static void pool_notify(pool_t *p)
{
    if (atomic_load(&p->sleepers) == 0)
        return;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Until the claim word's job number differs from gen (workers) ... */
static int gen_changed(pool_t *p, uint32_t gen)
{
    return (uint32_t)(atomic_load(&p->claim) >> 32) != gen;
}

/* ... or until all n tasks of the job are done (thread 0). */
static int all_done(pool_t *p, uint32_t n)
{
    return atomic_load(&p->done) == n;
}

/* Returns 1 if it had to block. */
static int pool_wait(pool_t *p, int (*ready)(pool_t *, uint32_t), uint32_t arg)
{
    for (int i = 0; i < POOL_SPINS; i++) {
        if (ready(p, arg))
            return 0;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while (!ready(p, arg))
        pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return 1;
}

/* Slice k's rows of nb: the first nb % T slices take one row more. */
static void slice_of(size_t nb, size_t n_slices, size_t k, size_t *lo, size_t *n)
{
    size_t q = nb / n_slices, r = nb % n_slices;
    *lo = k * q + (k < r ? k : r);
    *n = q + (k < r);
}

/* Range k of the parameters, cut at multiples of 16 floats (64 bytes). */
static void range_of(size_t n_params, size_t n_ranges, size_t k, size_t *lo, size_t *hi)
{
    size_t units = (n_params + 15) / 16;
    *lo = 16 * (k * units / n_ranges);
    *hi = 16 * ((k + 1) * units / n_ranges);
    if (*lo > n_params)
        *lo = n_params;
    if (*hi > n_params)
        *hi = n_params;
}

/* SLICE task k: gather slice k of the batch and take its gradient, with slice k's own
 * buffers whichever thread runs it (so the bits do not depend on the thread). */
static void slice_task(pool_t *p, size_t k)
{
    slice_t *s = &p->sl[k];
    size_t lo, n;
    slice_of(p->nb, p->n, k, &lo, &n);
    s->rows = n;
    s->loss = 0.0;
    s->rc = 0;
    if (n == 0)
        return;
    for (size_t j = 0; j < n; j++) {
        size_t row = p->idx[p->b0 + lo + j];
        memcpy(s->xb + j * p->n_in, p->x_train + row * p->n_in, p->n_in * sizeof *s->xb);
        s->yb[j] = p->y_train[row];
        if (p->t_logits != NULL)
            memcpy(s->tb + j * p->n_out, p->t_logits + row * p->n_out, p->n_out * sizeof *s->tb);
    }
    if (p->t_logits != NULL)
        s->rc = fv_mlp_distill_loss_grad(p->m, s->ws, s->xb, s->yb, s->tb, NULL, n, p->pos_weight,
                                         p->dc, s->grad, &s->loss);
    else
        s->rc =
            fv_mlp_loss_grad(p->m, s->ws, s->xb, s->yb, NULL, n, p->pos_weight, s->grad, &s->loss);
}

/* RANGE task k: over parameter range k, the slices' gradients summed with weights
 * n_t / nb into slice 0's, then the optimizer's share of the step. */
static void range_task(pool_t *p, size_t k)
{
    size_t n_used = 0; /* non-empty slices: a prefix */
    for (size_t t = 0; t < p->n; t++)
        if (p->sl[t].rows > 0)
            n_used = t + 1;
    size_t lo, hi;
    range_of(p->n_params, p->n, k, &lo, &hi);
    if (hi <= lo)
        return;
    float *g0 = p->sl[0].grad;
    const double inv_nb = 1.0 / (double)p->nb;
    const float s0 = (float)((double)p->sl[0].rows * inv_nb);
    if (n_used == 2) { /* the common case, one pass */
        const float s1 = (float)((double)p->sl[1].rows * inv_nb);
        const float *g1 = p->sl[1].grad;
        for (size_t i = lo; i < hi; i++)
            g0[i] = s0 * g0[i] + s1 * g1[i];
    } else {
        if (s0 != 1.0f)
            for (size_t i = lo; i < hi; i++)
                g0[i] = s0 * g0[i];
        for (size_t t = 1; t < n_used; t++) {
            const float st = (float)((double)p->sl[t].rows * inv_nb);
            const float *gt = p->sl[t].grad;
            for (size_t i = lo; i < hi; i++)
                g0[i] = g0[i] + st * gt[i];
        }
    }
    fv_optim_step_part(p->opt, p->step, p->params, g0, p->mask, lo, hi);
}

/* EVAL task k on thread `self`: validation chunks k, k + T, ..., each chunk's mean loss
 * into chunk_loss and its probabilities into val_prob, with the thread's workspace (the
 * slice workspace of the same index: no SLICE job runs meanwhile). */
static void eval_task(pool_t *p, size_t k, size_t self)
{
    fv_mlp_ws_t *ws = p->sl[self].ws;
    p->eval_rc[k] = 0;
    size_t n_chunks = (p->nv + p->chunk - 1) / p->chunk;
    for (size_t c = k; c < n_chunks; c += p->n) {
        size_t i = c * p->chunk;
        size_t nc = p->nv - i < p->chunk ? p->nv - i : p->chunk;
        int r = fv_mlp_loss(p->m, ws, p->xv + i * p->n_in, p->yv + i, NULL, nc, p->pos_weight,
                            &p->chunk_loss[c]);
        if (r == 0 && p->val_prob != NULL)
            r = fv_mlp_predict(p->m, ws, p->xv + i * p->n_in, nc, p->val_prob + i);
        if (r != 0) {
            p->eval_rc[k] = r;
            return;
        }
    }
}

static void run_task(pool_t *p, size_t k, size_t self)
{
    if (p->kind == JOB_SLICE)
        slice_task(p, k);
    else if (p->kind == JOB_RANGE)
        range_task(p, k);
    else
        eval_task(p, k, self);
}

/* Claims and runs tasks of the job in s (as loaded) until none is left. Returns the last
 * claim word seen (its job may be a newer one, or the exit word). */
static uint64_t run_tasks(pool_t *p, uint64_t s, size_t self)
{
    for (;;) {
        unsigned n = (unsigned)(s >> 16) & 0xffffu, next = (unsigned)s & 0xffffu;
        if (n == CLAIM_EXIT || next >= n)
            return s;
        if (!atomic_compare_exchange_weak(&p->claim, &s, s + 1))
            continue; /* s was reloaded */
        run_task(p, next, self);
        if (atomic_fetch_add(&p->done, 1) + 1 == n)
            pool_notify(p);
        s = atomic_load(&p->claim);
    }
}

struct worker_arg {
    pool_t *pool;
    size_t self;
};

static void *worker_main(void *arg)
{
    pool_t *p = ((worker_arg_t *)arg)->pool;
    size_t self = ((worker_arg_t *)arg)->self;
    for (;;) {
        uint64_t s = run_tasks(p, atomic_load(&p->claim), self);
        if (((unsigned)(s >> 16) & 0xffffu) == CLAIM_EXIT)
            return NULL;
        pool_wait(p, gen_changed, (uint32_t)(s >> 32));
    }
}

static double pool_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Thread 0: publish a job of n tasks (its fields already set), take part, and wait until
 * every task is done. */
static void pool_run(pool_t *p, job_kind_t kind, unsigned n)
{
    p->kind = kind;
    if (p->solo > 0) { /* the same tasks, on this thread: the same bits */
        p->solo--;
        for (unsigned k = 0; k < n; k++)
            run_task(p, k, 0);
        return;
    }
    atomic_store(&p->done, 0);
    p->gen++;
    double t0 = pool_now();
    atomic_store(&p->claim, CLAIM_WORD(p->gen, n, 0));
    pool_notify(p);
    run_tasks(p, atomic_load(&p->claim), 0);
    /* Nothing left to claim: a task another thread claimed is still running. Waiting for
     * it longer than this thread took for its own share means that thread was
     * descheduled (the cores are busy): twice in a row, and thread 0 runs the next
     * POOL_SOLO_JOBS jobs alone, then tries again. A shorter wait (a wake-up's latency,
     * one slice a little slower than the other) is not a stall. The clock only decides
     * who runs the tasks, never what they compute. */
    double t1 = pool_now();
    int blocked = pool_wait(p, all_done, n);
    if (!blocked || pool_now() - t1 <= t1 - t0)
        p->stalls = 0;
    else if (++p->stalls >= 2) {
        p->stalls = 0;
        p->solo = POOL_SOLO_JOBS;
    }
}

static void pool_free(pool_t *p)
{
    if (p == NULL)
        return;
    if (p->n_started > 0) {
        p->gen++;
        atomic_store(&p->claim, CLAIM_WORD(p->gen, CLAIM_EXIT, 0));
        pool_notify(p);
        for (size_t t = 0; t < p->n_started; t++)
            pthread_join(p->tid[t], NULL);
    }
    if (p->have_sync) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
    if (p->sl != NULL)
        for (size_t t = 1; t < p->n; t++) {
            fv_mlp_ws_free(p->sl[t].ws);
            free(p->sl[t].xb);
            free(p->sl[t].yb);
            free(p->sl[t].tb);
            free(p->sl[t].grad);
        }
    free(p->sl);
    free(p->tid);
    free(p->chunk_loss);
    free(p->eval_rc);
    free(p->args);
    free(p);
}

/* Threads 1..n-1 and slices 1..n-1 with their buffers; slice 0 uses the state's.
 * FV_ENOMEM if anything (a thread included) cannot be had; nothing is left running. */
static int pool_new(size_t n, const fv_mlp_t *m, train_state_t *s, size_t bs, size_t n_val,
                    size_t val_chunk, int distill, pool_t **ret)
{
    const size_t n_in = fv_mlp_arch(m)->n_in, n_out = fv_mlp_arch(m)->n_out;
    const size_t n_params = fv_mlp_n_params(m);
    const size_t slice_rows = (bs + n - 1) / n;
    const size_t ws_rows = n_val > 0 && val_chunk > slice_rows ? val_chunk : slice_rows;
    pool_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return FV_ENOMEM;
    p->n = n;
    atomic_init(&p->claim, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    p->sl = calloc(n, sizeof *p->sl);
    p->tid = calloc(n - 1, sizeof *p->tid);
    p->eval_rc = calloc(n, sizeof *p->eval_rc);
    if (n_val > 0)
        p->chunk_loss = malloc((n_val + val_chunk - 1) / val_chunk * sizeof *p->chunk_loss);
    if (p->sl == NULL || p->tid == NULL || p->eval_rc == NULL ||
        (n_val > 0 && p->chunk_loss == NULL))
        goto fail;
    p->sl[0].ws = s->ws;
    p->sl[0].xb = s->xb;
    p->sl[0].yb = s->yb;
    p->sl[0].tb = s->tb;
    p->sl[0].grad = s->grad;
    for (size_t t = 1; t < n; t++) {
        slice_t *sl = &p->sl[t];
        if (fv_mlp_ws_new(m, ws_rows, &sl->ws) != 0)
            goto fail;
        sl->xb = malloc(slice_rows * n_in * sizeof *sl->xb);
        sl->yb = malloc(slice_rows * sizeof *sl->yb);
        sl->grad = malloc(n_params * sizeof *sl->grad);
        if (distill)
            sl->tb = malloc(slice_rows * n_out * sizeof *sl->tb);
        if (sl->xb == NULL || sl->yb == NULL || sl->grad == NULL || (distill && sl->tb == NULL))
            goto fail;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->have_sync = 1;
    p->args = calloc(n, sizeof *p->args);
    if (p->args == NULL)
        goto fail;
    for (size_t t = 1; t < n; t++) {
        p->args[t].pool = p;
        p->args[t].self = t;
        if (pthread_create(&p->tid[t - 1], NULL, worker_main, &p->args[t]) != 0)
            goto fail;
        p->n_started = t;
    }
    *ret = p;
    return 0;
fail:
    pool_free(p); /* started threads see the exit word and return */
    return FV_ENOMEM;
}

/* evaluate() over the pool's threads: the same chunks, the same sums. */
static int evaluate_pool(pool_t *p, const float *x, const int32_t *y, size_t n, size_t chunk,
                         float *val_prob, double *ret_loss, double *ret_auc)
{
    p->xv = x;
    p->yv = y;
    p->nv = n;
    p->chunk = chunk;
    p->val_prob = fv_mlp_arch(p->m)->n_out == 1 ? val_prob : NULL;
    pool_run(p, JOB_EVAL, (unsigned)p->n);
    for (size_t t = 0; t < p->n; t++)
        if (p->eval_rc[t] != 0)
            return p->eval_rc[t];
    double sum = 0.0;
    for (size_t c = 0, i = 0; i < n; c++, i += chunk) {
        size_t nc = n - i < chunk ? n - i : chunk;
        sum += p->chunk_loss[c] * (double)nc;
    }
    *ret_loss = sum / (double)n;
    *ret_auc = NAN;
    if (p->val_prob != NULL && fv_metrics_roc_auc(val_prob, y, n, ret_auc) != 0)
        *ret_auc = NAN;
    return 0;
}

/* The loop of fv_train and fv_train_distill (t_logits and dc NULL for plain training). */
static int train_run(fv_mlp_t *m, const float *x_train, const int32_t *y_train,
                     const float *t_logits, size_t n_train, const float *x_val,
                     const int32_t *y_val, size_t n_val, const fv_train_cfg_t *cfg,
                     const fv_distill_cfg_t *dc, fv_train_result_t *ret, fv_diag_t *d)
{
    int r;

    const fv_mlp_arch_t *arch = fv_mlp_arch(m);
    const size_t n_in = arch->n_in, n_params = fv_mlp_n_params(m);
    const size_t bs = cfg->batch_size < n_train ? cfg->batch_size : n_train;
    size_t val_chunk = bs > FV_TRAIN_VAL_CHUNK ? bs : FV_TRAIN_VAL_CHUNK;
    if (val_chunk > n_val)
        val_chunk = n_val;
    const size_t n_out = arch->n_out;
    const int es_on = cfg->patience > 0 && n_val > 0;
    const int use_auc = cfg->es_metric == FV_ES_ROC_AUC;
    float *params = fv_mlp_params(m);
    const uint8_t *mask = fv_mlp_decay_mask(m);

    train_state_t s;
    memset(&s, 0, sizeof s);
    pool_t *pool = NULL;
    fv_train_result_t res;
    memset(&res, 0, sizeof res);
    res.best_val_metric = NAN;
    double best = use_auc ? -INFINITY : INFINITY;
    size_t since_best = 0;

    const int dp_on = cfg->dp.on;
    const size_t ws_rows = bs > val_chunk ? bs : val_chunk;
    const size_t buf_rows = dp_on ? ws_rows : bs; /* DP-SGD gathers whole workspace chunks */
    if ((r = fv_mlp_ws_new(m, ws_rows, &s.ws)) != 0 ||
        (r = fv_optim_new(&cfg->optim, n_params, &s.opt)) != 0) {
        fv_diag_set(d, r,
                    "training: cannot allocate the workspace or optimizer (%zu "
                    "parameters, batch %zu)",
                    n_params, bs);
        goto out;
    }
    s.xb = malloc(buf_rows * n_in * sizeof *s.xb);
    s.yb = malloc(buf_rows * sizeof *s.yb);
    s.grad = malloc(n_params * sizeof *s.grad);
    s.idx = malloc(n_train * sizeof *s.idx);
    s.start = malloc(n_params * sizeof *s.start);
    if (es_on)
        s.best = malloc(n_params * sizeof *s.best);
    if (n_val > 0 && arch->n_out == 1)
        s.val_prob = malloc(n_val * sizeof *s.val_prob);
    if (t_logits != NULL)
        s.tb = malloc(buf_rows * n_out * sizeof *s.tb);
    const int need_gchunk = dp_on && n_train > ws_rows;
    if (need_gchunk)
        s.gchunk = malloc(n_params * sizeof *s.gchunk);
    if (!s.xb || !s.yb || !s.grad || !s.idx || !s.start || (es_on && !s.best) ||
        (n_val > 0 && arch->n_out == 1 && !s.val_prob) || (t_logits != NULL && !s.tb) ||
        (need_gchunk && !s.gchunk)) {
        r = fv_diag_set(d, FV_ENOMEM,
                        "training: out of memory for %zu rows and %zu "
                        "parameters",
                        n_train, n_params);
        goto out;
    }
    memcpy(s.start, params, n_params * sizeof *params);

    size_t n_threads = cfg->threads > 1 ? cfg->threads : 1;
    if (n_threads > bs)
        n_threads = bs;
    if (!dp_on && n_threads > 1) {
        if ((r = pool_new(n_threads, m, &s, bs, n_val, val_chunk, t_logits != NULL, &pool)) != 0) {
            fv_diag_set(d, r, "training: cannot start %zu training threads (or their buffers)",
                        n_threads);
            goto out;
        }
        pool->m = m;
        pool->params = params;
        pool->mask = mask;
        pool->opt = s.opt;
        pool->x_train = x_train;
        pool->y_train = y_train;
        pool->t_logits = t_logits;
        pool->dc = dc;
        pool->idx = s.idx;
        pool->pos_weight = cfg->pos_weight;
        pool->n_in = n_in;
        pool->n_out = n_out;
        pool->n_params = n_params;
    }
    uint64_t step = 0;

    const uint64_t dp_per_epoch = dp_on ? fv_train_dp_steps(1, cfg->dp.sample_rate) : 0;
    for (size_t e = 1; e <= cfg->epochs; e++) {
        double loss_sum = 0.0;
        size_t dp_rows = 0;
        if (dp_on) {
            for (uint64_t j = 0; j < dp_per_epoch; j++) {
                r = dp_step(m, &s, x_train, y_train, t_logits, n_train, cfg, dc, ws_rows,
                            (uint64_t)(e - 1) * dp_per_epoch + j, &loss_sum, &dp_rows, d);
                if (r != 0)
                    goto out;
                fv_optim_step(s.opt, params, s.grad, mask);
            }
        } else {
            fv_rng_t rng;
            for (size_t i = 0; i < n_train; i++)
                s.idx[i] = i;
            fv_rng_seed(&rng, epoch_seed(cfg->seed, e));
            fv_rng_shuffle(&rng, s.idx, n_train);
            for (size_t b0 = 0; pool != NULL && b0 < n_train; b0 += bs) {
                size_t nb = n_train - b0 < bs ? n_train - b0 : bs;
                pool->b0 = b0;
                pool->nb = nb;
                pool_run(pool, JOB_SLICE, (unsigned)pool->n);
                for (size_t t = 0; t < pool->n; t++) {
                    const slice_t *sl = &pool->sl[t];
                    if ((r = sl->rc) != 0) {
                        fv_diag_set(d, r,
                                    "training: epoch %zu, batch at position %zu (slice %zu): %s; "
                                    "lower the learning rate or check the inputs for extreme "
                                    "values",
                                    e, b0, t,
                                    r == FV_ENUMERIC ? "the loss is not finite" : "loss failed");
                        goto out;
                    }
                    if (sl->rows > 0)
                        loss_sum += sl->loss * (double)sl->rows;
                }
                pool->step = ++step;
                pool_run(pool, JOB_RANGE, (unsigned)pool->n);
            }
            for (size_t b0 = 0; pool == NULL && b0 < n_train; b0 += bs) {
                size_t nb = n_train - b0 < bs ? n_train - b0 : bs;
                for (size_t j = 0; j < nb; j++) {
                    size_t row = s.idx[b0 + j];
                    memcpy(s.xb + j * n_in, x_train + row * n_in, n_in * sizeof *s.xb);
                    s.yb[j] = y_train[row];
                    if (t_logits != NULL)
                        memcpy(s.tb + j * n_out, t_logits + row * n_out, n_out * sizeof *s.tb);
                }
                double bl;
                if (t_logits != NULL)
                    r = fv_mlp_distill_loss_grad(m, s.ws, s.xb, s.yb, s.tb, NULL, nb,
                                                 cfg->pos_weight, dc, s.grad, &bl);
                else
                    r = fv_mlp_loss_grad(m, s.ws, s.xb, s.yb, NULL, nb, cfg->pos_weight, s.grad,
                                         &bl);
                if (r != 0) {
                    fv_diag_set(d, r,
                                "training: epoch %zu, batch at position %zu: %s; lower the "
                                "learning rate or check the inputs for extreme values",
                                e, b0, r == FV_ENUMERIC ? "the loss is not finite" : "loss failed");
                    goto out;
                }
                loss_sum += bl * (double)nb;
                fv_optim_step(s.opt, params, s.grad, mask);
            }
        }
        if (!fv_vec_all_finite(n_params, params)) {
            r = fv_diag_set(d, FV_ENUMERIC,
                            "training: epoch %zu: parameters are not finite; lower the "
                            "learning rate",
                            e);
            goto out;
        }

        fv_epoch_report_t rep;
        memset(&rep, 0, sizeof rep);
        rep.epoch = e;
        if (dp_on)
            rep.train_loss = dp_rows > 0 ? loss_sum / (double)dp_rows : NAN;
        else
            rep.train_loss = loss_sum / (double)n_train;
        rep.val_loss = NAN;
        rep.val_auc = NAN;
        res.epochs_run = e;
        if (n_val > 0) {
            if (pool != NULL)
                r = evaluate_pool(pool, x_val, y_val, n_val, val_chunk, s.val_prob, &rep.val_loss,
                                  &rep.val_auc);
            else
                r = evaluate(m, &s, x_val, y_val, n_val, val_chunk, cfg->pos_weight, &rep.val_loss,
                             &rep.val_auc);
            if (r != 0) {
                fv_diag_set(d, r, "training: epoch %zu: validation %s", e,
                            r == FV_ENUMERIC ? "loss is not finite" : "failed");
                goto out;
            }
            double metric = use_auc ? rep.val_auc : rep.val_loss;
            if (use_auc ? metric > best + cfg->min_delta : metric < best - cfg->min_delta) {
                rep.improved = 1;
                best = metric;
                since_best = 0;
                res.best_epoch = e;
                res.best_val_metric = metric;
                if (es_on)
                    memcpy(s.best, params, n_params * sizeof *params);
            } else {
                since_best++;
            }
            if (!es_on) /* the kept parameters are the last ones */
                res.best_val_metric = metric;
        }

        if (cfg->on_epoch != NULL && cfg->on_epoch(cfg->user, &rep) != 0)
            res.stopped_by_caller = 1;
        if (es_on && since_best >= cfg->patience && e < cfg->epochs)
            res.stopped_early = 1;
        if (res.stopped_by_caller || res.stopped_early)
            break;
    }

    if (es_on && res.best_epoch > 0) {
        if (res.best_epoch != res.epochs_run)
            memcpy(params, s.best, n_params * sizeof *params);
    } else {
        res.best_epoch = res.epochs_run;
    }
    *ret = res;
    r = 0;

out:
    pool_free(pool); /* joins the threads: nothing writes params after this */
    if (r != 0 && s.start != NULL)
        memcpy(params, s.start, n_params * sizeof *params);
    state_free(&s);
    return r;
}

int fv_train(fv_mlp_t *m, const float *x_train, const int32_t *y_train, size_t n_train,
             const float *x_val, const int32_t *y_val, size_t n_val, const fv_train_cfg_t *cfg,
             fv_train_result_t *ret, fv_diag_t *d)
{
    int r = check_args(m, x_train, y_train, n_train, x_val, y_val, n_val, cfg, ret, d);
    if (r != 0)
        return r;
    return train_run(m, x_train, y_train, NULL, n_train, x_val, y_val, n_val, cfg, NULL, ret, d);
}

int fv_train_distill(fv_mlp_t *m, const float *x_train, const int32_t *y_train,
                     const float *t_logits, size_t n_train, const float *x_val,
                     const int32_t *y_val, size_t n_val, const fv_train_cfg_t *cfg,
                     const fv_distill_cfg_t *dc, fv_train_result_t *ret, fv_diag_t *d)
{
    int r = check_args(m, x_train, y_train, n_train, x_val, y_val, n_val, cfg, ret, d);
    if (r != 0)
        return r;
    if (t_logits == NULL)
        return fv_diag_set(d, FV_EINVAL, "distillation: no teacher logits");
    if ((r = fv_distill_cfg_check(dc, d)) != 0)
        return r;
    size_t n_out = fv_mlp_arch(m)->n_out;
    for (size_t i = 0; i < n_train; i++)
        for (size_t j = 0; j < n_out; j++)
            if (!isfinite(t_logits[i * n_out + j]))
                return fv_diag_set(d, FV_EINVAL,
                                   "distillation: training row %zu: teacher logit %zu is not "
                                   "finite (%g); check the teacher model",
                                   i, j, (double)t_logits[i * n_out + j]);
    return train_run(m, x_train, y_train, t_logits, n_train, x_val, y_val, n_val, cfg, dc, ret, d);
}
