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
 * on the calling thread): T is capped at the batch size, and train_pool.c (its note)
 * runs each batch's gradient and optimizer step, and the validation, over T threads
 * started once per call. This loop hands it the batches and step numbers, checks the
 * slices (the first failing one is the error), adds their losses to the epoch's in slice
 * order, and keeps everything else. The same T gives the same bits; T = 1 is the
 * single-threaded loop above, unchanged.
 *
 * Memory: everything is allocated once before the first epoch (workspace, batch buffer,
 * gradient, optimizer state, index, snapshots, the threads' slices; DP-SGD's second
 * gradient for chunks, and the workspace's delta block on the first step); nothing is
 * allocated per batch.
 */
#include "fv_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fv_metrics.h"
#include "fv_rng.h"
#include "fv_vec.h"
#include "train-int.h"

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
    train_pool_t *pool = NULL;
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
        if ((r = fv__train_pool_new(n_threads, m, &s, x_train, y_train, t_logits, dc,
                                    cfg->pos_weight, bs, n_val, val_chunk, &pool)) != 0) {
            fv_diag_set(d, r, "training: cannot start %zu training threads (or their buffers)",
                        n_threads);
            goto out;
        }
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
                fv__train_pool_grad(pool, b0, nb);
                for (size_t t = 0; t < fv__train_pool_n(pool); t++) {
                    size_t rows;
                    double sl_loss;
                    if ((r = fv__train_pool_slice(pool, t, &rows, &sl_loss)) != 0) {
                        fv_diag_set(d, r,
                                    "training: epoch %zu, batch at position %zu (slice %zu): %s; "
                                    "lower the learning rate or check the inputs for extreme "
                                    "values",
                                    e, b0, t,
                                    r == FV_ENUMERIC ? "the loss is not finite" : "loss failed");
                        goto out;
                    }
                    if (rows > 0)
                        loss_sum += sl_loss * (double)rows;
                }
                fv__train_pool_step(pool, ++step);
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
                r = fv__train_pool_evaluate(pool, x_val, y_val, n_val, val_chunk, s.val_prob,
                                            &rep.val_loss, &rep.val_auc);
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
    fv__train_pool_free(pool); /* joins the threads: nothing writes params after this */
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
