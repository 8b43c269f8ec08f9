/* round_kinds.c - the table of round kinds (stats, train, distill; explain's handlers are
 * round_explain.c's) and their handlers, and
 * the engine's small shared types (action lists, work items, outcomes). fv_round.h says
 * what a kind is; protocols/fv_fed.h is the arithmetic of the vectors.
 *
 *   stats    round 0 of every job. An agent adds its training rows' moments
 *            (fv_fed_stats_encode: counts, sums, sums of squares, category counts) as
 *            u32 words; the sum gives everyone the same global standardization. Plain:
 *            the same words, checked one agent at a time (fv_fed_stats_check).
 *   train    rounds 1..rounds. An agent evaluates the global model on its validation rows,
 *            trains it locally (the job's epochs, batch size and optimizer; FedProx's
 *            proximal term when the strategy says so) and encodes the round vector of
 *            fv_fed_round_layout: its weighted update (clipped to the job's
 *            max_update_norm; a non-finite update fails the compute, so the agent sits
 *            out) and what it measured. The coordinator's decode checks the sum's
 *            consistency (fv_fed_sum_check) and refuses a sum that fails.
 *   distill  rounds+1..fv_job_last_round (a job with "distill"). An agent evaluates the
 *            student, the teacher and (quantize_int8) the int8 student on the same
 *            validation rows, computes the teacher's logits on its training rows, trains
 *            the student on labels and logits (alpha * BCE + (1 - alpha) * T^2 * KL) and
 *            encodes the student's update like a training round's.
 *
 * Differential privacy (a job with "privacy", fv_privacy.h): every train/distill compute
 * recomputes the agent's plan (the same pure function it accepted the job with). Local
 * mode: the local loop runs DP-SGD (cfg.dp: the plan's clip, sigma and rate). Distributed
 * mode (train rounds only): no local loop; one clipped gradient sum over a Poisson sample
 * at the global model, scaled into the update block, quantized, plus discrete Gaussian
 * noise on the parameter words before masking (ddg_update); the coordinator decodes such
 * a job's sum centered (fv_fed_decode_centered). The DP randomness comes from streams
 * (crypto/fv_dpnoise.h) keyed by fv_dp_key_derive(qkey, "fedvault dp", round): secret,
 * and the same bytes if the round runs again; keys and streams are wiped after use. A job
 * without "privacy" takes none of these paths.
 *
 * Every compute is reproducible: the training seed and the rounding key come in the work
 * item (fv_around_new derives them from the job, the round and the agent only).
 *
 * Threads: a compute runs on a worker thread and reads only its fv_round_data_t (read-only
 * while it runs) and writes only its fv_round_work_t. Everything else here is pure.
 */
#include "fv_round.h"
#include "fv_round_explain.h"
#include "fv_round_job.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_dpnoise.h"
#include "fv_fed_valid.h"
#include "fv_metrics.h"
#include "fv_optim.h"
#include "fv_privacy.h"
#include "fv_train.h"

#define EVAL_CHUNK_ROWS 1024

/* ---- action lists, work items, outcomes -------------------------------------------- */

void fv_round_out_init(fv_round_out_t *o)
{
    memset(o, 0, sizeof *o);
}

void fv_round_out_clear(fv_round_out_t *o)
{
    for (size_t i = 0; i < o->n; i++) {
        fv_round_act_t *a = &o->acts[i];
        if (a->type == FV_ROUND_ACT_UPLOAD && a->vec != NULL) {
            sodium_memzero(a->vec, (size_t)a->n * FV_VEC_ELEM_BYTES);
            free(a->vec);
        }
        if (a->type == FV_ROUND_ACT_COMPUTE && a->work != NULL) {
            fv_round_work_close(a->work);
            free(a->work);
        }
    }
    o->n = 0;
}

void fv_round_out_close(fv_round_out_t *o)
{
    fv_round_out_clear(o);
    free(o->acts);
    memset(o, 0, sizeof *o);
}

void fv_round_work_close(fv_round_work_t *w)
{
    if (w == NULL)
        return;
    if (w->words != NULL)
        sodium_memzero(w->words, w->dim * sizeof *w->words);
    free(w->words);
    if (w->fvec != NULL)
        sodium_memzero(w->fvec, w->dim * sizeof *w->fvec);
    free(w->fvec);
    if (w->iwords != NULL)
        sodium_memzero(w->iwords, w->dim * sizeof *w->iwords);
    free(w->iwords);
    w->iwords = NULL;
    free(w->global);
    free(w->teacher);
    sodium_memzero(w->qkey, sizeof w->qkey);
    w->words = NULL, w->fvec = NULL, w->global = NULL, w->teacher = NULL;
}

bool fv_round_validated(const fv_job_t *job, const fv_round_shape_t *shape)
{
    return job != NULL && job->validation.on && job->secagg.on && shape->lay.n_params > 0;
}

void fv_round_outcome_close(fv_round_outcome_t *o)
{
    if (o->has_stats)
        fv_fed_stats_close(&o->stats);
    if (o->has_result)
        fv_fed_result_close(&o->res);
    fv_round_explanation_close(&o->expl);
    memset(o, 0, sizeof *o);
}

/* ---- what an agent measures: evaluation ------------------------------------------ */

static int on_epoch_cb(void *user, const fv_epoch_report_t *r)
{
    fv_round_work_t *w = user;
    w->train_loss = r->train_loss;
    w->epochs = r->epoch;
    return 0;
}

/* What an agent measures of the models it evaluates in a round, in the layout's blocks
 * (fv_fed.h): histograms of the positive class's score (binary), rows per class and rows
 * classified right per model (multi-class), model 0's log loss sum. */
typedef struct evals {
    fv_fed_layout_t lay;
    uint64_t *hpos, *hneg; /* n_models * hist_bins */
    uint64_t *class_n;     /* n_classes */
    uint64_t *class_right; /* n_models * n_classes */
    double loss_sum;       /* model 0's */
} evals_t;

static int evals_init(evals_t *e, const fv_fed_layout_t *lay)
{
    memset(e, 0, sizeof *e);
    e->lay = *lay;
    size_t mb = e->lay.n_models * e->lay.hist_bins, mk = e->lay.n_models * e->lay.n_classes;
    e->hpos = calloc(mb ? mb : 1, sizeof *e->hpos);
    e->hneg = calloc(mb ? mb : 1, sizeof *e->hneg);
    e->class_n = calloc(e->lay.n_classes ? e->lay.n_classes : 1, sizeof *e->class_n);
    e->class_right = calloc(mk ? mk : 1, sizeof *e->class_right);
    return e->hpos && e->hneg && e->class_n && e->class_right ? 0 : FV_ENOMEM;
}

static void evals_close(evals_t *e)
{
    free(e->hpos), free(e->hneg), free(e->class_n), free(e->class_right);
    memset(e, 0, sizeof *e);
}

/* Evaluates model `model` of the round (g) on the validation rows into e: its histograms
 * or per-class counts and, for model 0, the sum of per-row log loss (probabilities
 * clipped to [1e-7, 1 - 1e-7], as fv_metrics_log_loss). */
static int eval_model(const fv_round_data_t *j, const fv_mlp_t *g, size_t model, evals_t *e)
{
    size_t B = e->lay.hist_bins, K = e->lay.n_classes, n_out = fv_mlp_arch(g)->n_out;
    bool binary = n_out == 1;
    double loss = 0;
    if (j->n_va == 0)
        return 0;
    fv_mlp_ws_t *ws = NULL;
    size_t chunk = j->n_va < EVAL_CHUNK_ROWS ? j->n_va : EVAL_CHUNK_ROWS;
    float *prob = malloc(chunk * n_out * sizeof *prob);
    int r = prob == NULL ? FV_ENOMEM : fv_mlp_ws_new(g, chunk, &ws);
    for (size_t i = 0; r == 0 && i < j->n_va; i += chunk) {
        size_t n = j->n_va - i < chunk ? j->n_va - i : chunk;
        if ((r = fv_mlp_predict(g, ws, j->x_va + i * j->n_feat, n, prob)) != 0)
            break;
        const int32_t *y = j->y_va + i;
        for (size_t k = 0; k < n; k++) {
            double p =
                binary ? (y[k] == 1 ? prob[k] : 1.0 - prob[k]) : prob[k * n_out + (size_t)y[k]];
            if (!(p >= 1e-7))
                p = 1e-7;
            if (p > 1 - 1e-7)
                p = 1 - 1e-7;
            loss -= log(p);
            if (!binary && K == n_out) {
                const float *pk = prob + k * n_out;
                size_t best = 0; /* argmax; a tie goes to the lowest class */
                for (size_t c = 1; c < n_out; c++)
                    if (pk[c] > pk[best])
                        best = c;
                if (model == 0)
                    e->class_n[y[k]]++;
                if (best == (size_t)y[k])
                    e->class_right[model * K + best]++;
            }
        }
        if (binary && B > 0)
            fv_metrics_hist_add(prob, y, n, B, e->hpos + model * B, e->hneg + model * B);
    }
    fv_mlp_ws_free(ws);
    free(prob);
    if (r == 0 && !isfinite(loss))
        r = FV_ENUMERIC;
    if (r == 0 && model == 0)
        e->loss_sum = loss;
    return r;
}

/* The local training settings of a round: the job's batch size and optimizer, no proximal
 * term, no local early stopping, the work item's seed. */
static void local_cfg(const fv_job_t *job, fv_round_work_t *w, uint32_t epochs, fv_train_cfg_t *cfg)
{
    fv_train_cfg_default(cfg);
    cfg->epochs = epochs;
    cfg->batch_size = job->batch_size;
    cfg->optim = job->optim;
    cfg->optim.prox_ref = NULL;
    cfg->optim.prox_mu = 0;
    cfg->patience = 0;
    cfg->seed = w->seed;
    cfg->threads = w->train_threads;
    cfg->on_epoch = on_epoch_cb;
    cfg->user = w;
}

/* The round vector of this agent (fv_fed.h, the layout in e): delta = local - w->global
 * (written into delta, P floats) and what e measured, encoded for SecAgg, or as the plain
 * float32 vector without it. */
static int encode_block(const fv_round_data_t *j, fv_round_work_t *w, float *delta, size_t P,
                        double n_ref, const evals_t *e);

static int encode_update(const fv_round_data_t *j, fv_round_work_t *w, const fv_mlp_t *local,
                         float *delta, const evals_t *e)
{
    size_t P = fv_mlp_n_params(local);
    const float *lp = fv_mlp_params_const(local);
    for (size_t i = 0; i < P; i++)
        delta[i] = lp[i] - w->global[i];
    return encode_block(j, w, delta, P, (double)w->n_ref, e);
}

/* encode_update's encoding of delta (P floats, clipped in place) with weight n_train /
 * n_ref: the round's n_ref for a model's change; the agent's own n_train (weight exactly 1)
 * for a distributed-DP block that is already the weighted update. */
static int encode_block(const fv_round_data_t *j, fv_round_work_t *w, float *delta, size_t P,
                        double n_ref, const evals_t *e)
{
    const fv_job_t *job = j->job;
    /* the honest agent's norm clip, before either encoding (fv_job.h, max_update_norm);
     * a NaN or infinite update is never sent: the compute fails, the agent sits out */
    int r = fv_fed_update_clip(delta, P, (double)j->n_tr / n_ref, job->max_update_norm,
                               &w->update_norm, &w->update_clipped, &w->d);
    if (r != 0)
        return r;
    fv_fed_local_t in = {.delta = delta,
                         .n_train = (uint32_t)j->n_tr,
                         .n_ref = n_ref,
                         .hist_pos = e->lay.hist_bins ? e->hpos : NULL,
                         .hist_neg = e->lay.hist_bins ? e->hneg : NULL,
                         .loss_sum = e->loss_sum,
                         .n_val = (uint32_t)j->n_va,
                         .class_n = e->lay.n_classes ? e->class_n : NULL,
                         .class_right = e->lay.n_classes ? e->class_right : NULL};
    if (w->validated) {
        /* the integers the agent proves (fv_fed_valid.h): the norm block is the clipped
         * weighted update in units of max_update_norm / 2^14, stochastically rounded with
         * the same key the SecAgg encoding uses */
        fv_fed_valid_t v;
        if ((r = fv_fed_valid_init(&e->lay, job, &v, &w->d)) != 0)
            return r;
        w->dim = v.spec.dim;
        w->iwords = malloc(w->dim * sizeof *w->iwords);
        if (w->iwords == NULL) {
            fv_fed_valid_close(&v);
            return FV_ENOMEM;
        }
        fv_rand_t rng;
        fv_rand_seeded(&rng, w->qkey);
        r = fv_fed_valid_encode(&v, &in, &rng, w->iwords, &w->d);
        sodium_memzero(&rng, sizeof rng);
        fv_fed_valid_close(&v);
    } else if (w->secagg) {
        w->dim = e->lay.dim;
        w->words = malloc(e->lay.dim * sizeof *w->words);
        if (w->words == NULL)
            return FV_ENOMEM;
        fv_rand_t rng;
        fv_rand_seeded(&rng, w->qkey);
        r = fv_fed_encode(&e->lay, &in, job->secagg.clip, job->secagg.bits, &rng, w->words, &w->d);
        sodium_memzero(&rng, sizeof rng);
    } else {
        w->dim = e->lay.plain_dim;
        w->fvec = malloc(w->dim * sizeof *w->fvec);
        if (w->fvec == NULL)
            return FV_ENOMEM;
        r = fv_fed_plain_encode(&e->lay, &in, w->fvec, &w->d);
    }
    return r;
}

/* ---- differential privacy (fv_privacy.h) -------------------------------------------- */

static bool ddg_job(const fv_job_t *job)
{
    return job->privacy.on && job->privacy.mode == FV_PRIVACY_DISTRIBUTED;
}

/* The randomness of one compute's DP (crypto/fv_dpnoise.h): the key derived from the work
 * item's secret rounding key and the round, a stream per (domain, step) made and wiped
 * around each use. */
typedef struct dp_ctx {
    uint8_t key[32];
} dp_ctx_t;

static void dp_ctx_init(dp_ctx_t *c, const fv_round_work_t *w)
{
    fv_dp_key_derive(c->key, w->qkey, "fedvault dp", w->round);
}

static void dp_ctx_wipe(dp_ctx_t *c)
{
    sodium_memzero(c->key, sizeof c->key);
}

static size_t dp_sample_cb(void *user, uint64_t step, double q, size_t n, size_t *idx)
{
    dp_ctx_t *c = user;
    fv_dp_stream_t st;
    fv_dp_stream_init(&st, c->key, FV_DP_DOMAIN_SAMPLE, step);
    size_t k = fv_dp_poisson(&st, q, n, idx);
    fv_dp_stream_wipe(&st);
    return k;
}

static void dp_noise_cb(void *user, uint64_t step, double std, float *out, size_t n)
{
    dp_ctx_t *c = user;
    fv_dp_stream_t st;
    fv_dp_stream_init(&st, c->key, FV_DP_DOMAIN_NOISE, step);
    fv_dp_gauss_add_f32(&st, std, out, n);
    fv_dp_stream_wipe(&st);
}

/* This agent's privacy plan for the round (malloc'd into *ret; the same pure function of
 * the job, its rows and n_ref as the one it accepted the job with). */
static int dp_plan(const fv_round_data_t *j, const fv_round_work_t *w, fv_privacy_plan_t **ret,
                   fv_diag_t *d)
{
    fv_privacy_plan_t *p = malloc(sizeof *p);
    if (p == NULL)
        return FV_ENOMEM;
    size_t np = j->n_params > j->s_n_params ? j->n_params : j->s_n_params;
    /* the accepted plan's sigma, given instead of the target epsilon: the same plan
     * without the bisection (up to a second per round in a release build) */
    fv_job_t given;
    const fv_job_t *job = j->job;
    if (j->priv != NULL && j->priv->on && j->job->privacy.epsilon > 0) {
        given = *j->job; /* (a shallow copy: read only, nothing of it freed) */
        given.privacy.epsilon = 0;
        given.privacy.noise_multiplier = j->priv->sigma;
        job = &given;
    }
    int r = fv_privacy_plan(job, j->n_tr, np, w->n_ref, p, d);
    if (r == 0 && !p->on)
        r = fv_diag_set(d, FV_EINVAL, "privacy plan: the job has no privacy section");
    if (r != 0) {
        char why[FV_DIAG_MAX];
        snprintf(why, sizeof why, "%s", d->msg);
        fv_diag_set(d, r, "privacy plan: %.400s", why);
        free(p);
        return r;
    }
    *ret = p;
    return 0;
}

/* Local mode: the local loop runs DP-SGD with the plan's clip, noise multiplier and rate,
 * its rows and noise from the ctx's streams (step indices count from 0 in each round; the
 * key differs per round). The caller wipes ctx after training. */
static int dp_local_cfg(const fv_round_data_t *j, fv_round_work_t *w, dp_ctx_t *ctx,
                        fv_train_cfg_t *cfg)
{
    if (!j->job->privacy.on)
        return 0;
    if (j->job->privacy.mode != FV_PRIVACY_LOCAL)
        return fv_diag_set(&w->d, FV_EINVAL,
                           "privacy: distributed mode has no local training (the job's spec "
                           "should have been refused)");
    fv_privacy_plan_t *p;
    int r = dp_plan(j, w, &p, &w->d);
    if (r != 0)
        return r;
    dp_ctx_init(ctx, w);
    cfg->dp = (fv_train_dp_t){.on = true,
                              .clip = p->clip,
                              .noise_multiplier = p->sigma,
                              .sample_rate = p->q,
                              .sample = dp_sample_cb,
                              .noise = dp_noise_cb,
                              .user = ctx};
    free(p);
    return 0;
}

/* Distributed mode's round (fv_privacy.h): the agent's rows sampled once (Poisson, rate
 * q, stream FV_DP_DOMAIN_SAMPLE index 0), u = the sum of their clipped gradients at the
 * global model g (chunks of EVAL_CHUNK_ROWS rows), the block v = -(lr / (q n_ref)) u
 * (written into v, P floats) sent as the weighted update itself (weight 1: the coordinator
 * divides the sum by sum n_train / n_ref, about 1, so the model moves by -lr times the
 * noisy mean clipped gradient), quantized as every SecAgg block, and N_Z(0, ddg_sigma2)
 * added to each parameter word (stream FV_DP_DOMAIN_DDG index 0) before masking. The
 * unnoised sums are wiped. */
static int ddg_update(const fv_round_data_t *j, fv_round_work_t *w, const fv_mlp_t *g, float *v,
                      const evals_t *e)
{
    const fv_job_t *job = j->job;
    size_t P = j->n_params, F = j->n_feat, k = 0, chunk = 0;
    fv_privacy_plan_t *p = NULL;
    fv_mlp_ws_t *ws = NULL;
    size_t *idx = NULL;
    float *xb = NULL, *gs = NULL;
    int32_t *yb = NULL;
    double *acc = NULL, loss = 0;
    dp_ctx_t ctx;
    fv_dp_stream_t st;
    dp_ctx_init(&ctx, w);
    int r;
    if (!w->secagg || w->validated) {
        r = fv_diag_set(&w->d, FV_EINVAL,
                        "privacy: distributed mode needs secure aggregation and no validation");
        goto out;
    }
    if ((r = dp_plan(j, w, &p, &w->d)) != 0)
        goto out;
    if (p->ddg_sigma2 == 0) {
        r = fv_diag_set(&w->d, FV_EINVAL, "privacy plan: no distributed noise (n_ref %" PRIu64 ")",
                        w->n_ref);
        goto out;
    }
    idx = malloc((j->n_tr ? j->n_tr : 1) * sizeof *idx);
    acc = calloc(P, sizeof *acc);
    gs = malloc(P * sizeof *gs);
    if (idx == NULL || acc == NULL || gs == NULL) {
        r = FV_ENOMEM;
        goto out;
    }
    fv_dp_stream_init(&st, ctx.key, FV_DP_DOMAIN_SAMPLE, 0);
    k = fv_dp_poisson(&st, p->q, j->n_tr, idx);
    fv_dp_stream_wipe(&st);
    chunk = k < EVAL_CHUNK_ROWS ? k : EVAL_CHUNK_ROWS;
    if (chunk > 0) {
        xb = malloc(chunk * F * sizeof *xb);
        yb = malloc(chunk * sizeof *yb);
        if (xb == NULL || yb == NULL || (r = fv_mlp_ws_new(g, chunk, &ws)) != 0) {
            r = r != 0 ? r : FV_ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < k; i += chunk) {
        size_t n = k - i < chunk ? k - i : chunk;
        for (size_t t = 0; t < n; t++) {
            memcpy(xb + t * F, j->x_tr + idx[i + t] * F, F * sizeof *xb);
            yb[t] = j->y_tr[idx[i + t]];
        }
        double ls = 0;
        if ((r = fv_mlp_clipped_grad_sum(g, ws, xb, yb, NULL, NULL, n, 1.0f, p->clip, gs, &ls,
                                         NULL)) != 0) {
            fv_diag_set(&w->d, r, "the clipped gradient sum: %s", fv_strerror(r));
            goto out;
        }
        for (size_t t = 0; t < P; t++)
            acc[t] += gs[t];
        loss += ls;
    }
    double scale = -(job->optim.lr / (p->q * (double)w->n_ref));
    for (size_t t = 0; t < P; t++)
        v[t] = (float)(scale * acc[t]);
    w->epochs = 1;
    w->train_loss = k > 0 ? loss / (double)k : NAN;
    if ((r = encode_block(j, w, v, P, (double)j->n_tr, e)) != 0)
        goto out;
    fv_dp_stream_init(&st, ctx.key, FV_DP_DOMAIN_DDG, 0);
    fv_dp_dgauss_add_u32(&st, p->ddg_sigma2, w->words + e->lay.off_params, P);
    fv_dp_stream_wipe(&st);
out:
    dp_ctx_wipe(&ctx);
    fv_mlp_ws_free(ws);
    if (idx != NULL)
        sodium_memzero(idx, (j->n_tr ? j->n_tr : 1) * sizeof *idx);
    if (xb != NULL)
        sodium_memzero(xb, chunk * F * sizeof *xb);
    if (yb != NULL)
        sodium_memzero(yb, chunk * sizeof *yb);
    if (acc != NULL)
        sodium_memzero(acc, P * sizeof *acc);
    if (gs != NULL)
        sodium_memzero(gs, P * sizeof *gs);
    free(idx), free(xb), free(yb), free(acc), free(gs), free(p);
    return r;
}

/* ---- stats --------------------------------------------------------------------------- */

static uint64_t stats_rounds(const fv_job_t *job)
{
    (void)job;
    return 1;
}

static int stats_shape(const fv_round_sizes_t *z, fv_round_shape_t *ret, fv_diag_t *d)
{
    memset(ret, 0, sizeof *ret);
    if (z->sl == NULL || z->sl->dim == 0 || z->sl->dim > UINT32_MAX)
        return fv_diag_set(d, FV_EINVAL, "stats round: no stats layout");
    ret->words = (uint32_t)z->sl->dim;
    ret->plain_n = z->sl->dim;
    ret->plain_dtype = FV_VEC_U32;
    return 0;
}

static int stats_compute(const fv_round_data_t *j, fv_round_work_t *w)
{
    w->dim = j->sl->dim;
    w->words = malloc(w->dim * sizeof *w->words);
    w->rc = w->words == NULL ? FV_ENOMEM
                             : fv_fed_stats_encode(j->sl, j->ds, j->tr, j->n_tr, w->words, &w->d);
    return w->rc;
}

static int stats_check(const fv_round_sizes_t *z, const fv_round_shape_t *s, const void *vec,
                       fv_diag_t *d)
{
    (void)s;
    return fv_fed_stats_check(z->sl, vec, d);
}

static int stats_decode(const fv_round_sizes_t *z, const fv_round_shape_t *s,
                        const fv_round_sum_t *sum, double n_ref, fv_round_outcome_t *ret,
                        fv_diag_t *d)
{
    (void)s, (void)n_ref;
    memset(ret, 0, sizeof *ret);
    if (sum->words == NULL)
        return fv_diag_set(d, FV_EINVAL, "stats round: no sum");
    int r = fv_fed_stats_decode(z->sl, sum->words, &ret->stats, d);
    ret->has_stats = r == 0;
    return r;
}

static int stats_apply(fv_cjob_t *jm, const fv_round_sum_t *sum, const fv_round_outcome_t *oc,
                       bool *ret_improved, fv_diag_t *d)
{
    (void)oc;
    *ret_improved = false;
    int r = fv_cjob_apply_stats(jm, sum->words, d);
    if (r != 0) {
        char why[FV_DIAG_MAX];
        snprintf(why, sizeof why, "%s", d->msg);
        fv_diag_set(d, r, "stats: %.400s", why);
    }
    return r;
}

static const fv_round_kind_t kind_stats = {.id = FV_FED_KIND_STATS,
                                           .name = "stats",
                                           .needs = 0,
                                           .n_rounds = stats_rounds,
                                           .shape = stats_shape,
                                           .compute = stats_compute,
                                           .plain_check = stats_check,
                                           .decode = stats_decode,
                                           .apply = stats_apply};

/* ---- train and distill: the round vector ------------------------------------------- */

static int vec_shape(const fv_round_sizes_t *z, uint32_t kind, size_t n_params,
                     fv_round_shape_t *ret, fv_diag_t *d)
{
    memset(ret, 0, sizeof *ret);
    if (n_params == 0 || fv_fed_round_layout(z->job, kind, n_params, &ret->lay) != 0)
        return fv_diag_set(d, FV_EINVAL, "%s round: no layout for %zu parameters",
                           fv_fed_kind_name(kind), n_params);
    if (ret->lay.dim > UINT32_MAX - 8)
        return fv_diag_set(d, FV_ERANGE, "%s round: %zu words", fv_fed_kind_name(kind),
                           ret->lay.dim);
    ret->words = (uint32_t)ret->lay.dim;
    ret->plain_n = ret->lay.plain_dim;
    ret->plain_dtype = FV_VEC_F32;
    return 0;
}

static int vec_check(const fv_round_sizes_t *z, const fv_round_shape_t *s, const void *vec,
                     fv_diag_t *d)
{
    (void)z;
    return fv_fed_plain_check(&s->lay, vec, d);
}

static int vec_decode(const fv_round_sizes_t *z, const fv_round_shape_t *s,
                      const fv_round_sum_t *sum, double n_ref, fv_round_outcome_t *ret,
                      fv_diag_t *d)
{
    memset(ret, 0, sizeof *ret);
    int r;
    if (sum->isum != NULL) {
        /* a validated round: the accepted inputs' integer sum (fv_fed_valid.h) */
        fv_fed_valid_t v;
        if ((r = fv_fed_valid_init(&s->lay, z->job, &v, d)) != 0)
            return r;
        r = fv_fed_valid_decode(&v, sum->isum, sum->n_summands, n_ref, &ret->res, d);
        fv_fed_valid_close(&v);
        if (r == 0) {
            /* each proved block is within norm_sq = (2^14 + ceil(sqrt P))^2 units of
             * B / 2^14: the sum check's bound gets that rounding slack */
            fv_job_t jb = *z->job;
            jb.max_update_norm *=
                1.0 + ceil(sqrt((double)s->lay.n_params)) / (double)(1u << FV_FED_VALID_NORM_BITS);
            if ((r = fv_fed_sum_check(&s->lay, &jb, NULL, sum->n_summands, n_ref, &ret->res, d)) !=
                0)
                fv_fed_result_close(&ret->res);
        }
        ret->has_result = r == 0;
        return r;
    }
    if (sum->secagg && sum->words != NULL && ddg_job(z->job))
        /* the agents' discrete Gaussian noise may take the words outside [0, n (2^bits -
         * 1)]: read centered mod 2^32 */
        r = fv_fed_decode_centered(&s->lay, sum->words, sum->n_summands, z->job->secagg.clip,
                                   z->job->secagg.bits, n_ref, &ret->res, d);
    else if (sum->secagg)
        r = sum->words == NULL
                ? fv_diag_set(d, FV_EINVAL, "no sum")
                : fv_fed_decode(&s->lay, sum->words, sum->n_summands, z->job->secagg.clip,
                                z->job->secagg.bits, n_ref, &ret->res, d);
    else
        r = sum->fsum == NULL
                ? fv_diag_set(d, FV_EINVAL, "no sum")
                : fv_fed_plain_decode(&s->lay, sum->fsum, sum->n_summands, n_ref, &ret->res, d);
    /* the consistency checks of the sum (fv_fed_sum_check): a failing sum refuses the
     * round, which runs again under the same number */
    if (r == 0 && (r = fv_fed_sum_check(&s->lay, z->job, sum->secagg ? sum->words : NULL,
                                        sum->n_summands, n_ref, &ret->res, d)) != 0)
        fv_fed_result_close(&ret->res);
    ret->has_result = r == 0;
    return r;
}

/* Early stopping judges the model the round evaluated, then the server optimizer steps. */
static int vec_apply(fv_cjob_t *jm, const fv_round_sum_t *sum, const fv_round_outcome_t *oc,
                     bool *ret_improved, fv_diag_t *d)
{
    (void)sum;
    double metric;
    if (!oc->has_result)
        return fv_diag_set(d, FV_EINVAL, "no decoded round to apply");
    int r = fv_cjob_apply_round(jm, &oc->res, ret_improved, &metric);
    if (r != 0)
        fv_diag_set(d, r, "the server step: %s", fv_strerror(r));
    return r;
}

/* ---- train --------------------------------------------------------------------------- */

static uint64_t train_rounds(const fv_job_t *job)
{
    return job->rounds;
}

static int train_shape(const fv_round_sizes_t *z, fv_round_shape_t *ret, fv_diag_t *d)
{
    return vec_shape(z, FV_FED_KIND_TRAIN, z->n_params, ret, d);
}

static int train_compute(const fv_round_data_t *j, fv_round_work_t *w)
{
    const fv_job_t *job = j->job;
    size_t P = j->n_params;
    fv_mlp_t *g = NULL, *local = NULL;
    evals_t e;
    fv_round_shape_t s;
    memset(&e, 0, sizeof e);
    float *delta = malloc(P * sizeof *delta);
    fv_round_sizes_t z = {.job = job, .sl = j->sl, .n_params = P, .s_n_params = j->s_n_params};
    int r = train_shape(&z, &s, &w->d);
    if (r == 0)
        r = evals_init(&e, &s.lay);
    if (r == 0)
        r = delta != NULL && w->global != NULL ? fv_mlp_new(j->arch, &g) : FV_ENOMEM;
    if (r != 0)
        goto out;
    memcpy(fv_mlp_params(g), w->global, P * sizeof(float));
    if ((r = eval_model(j, g, 0, &e)) != 0) {
        fv_diag_set(&w->d, r, "evaluating the global model: %s", fv_strerror(r));
        goto out;
    }
    w->val_loss_sum = e.loss_sum;
    if (ddg_job(job)) {
        r = ddg_update(j, w, g, delta, &e);
        goto out;
    }
    if ((r = fv_mlp_clone(g, &local)) != 0)
        goto out;
    fv_train_cfg_t cfg;
    local_cfg(job, w, job->local_epochs, &cfg);
    if (job->strategy.kind == FV_STRATEGY_FEDPROX) {
        cfg.optim.prox_ref = w->global;
        cfg.optim.prox_mu = (float)job->strategy.mu;
    }
    dp_ctx_t dpc;
    if ((r = dp_local_cfg(j, w, &dpc, &cfg)) != 0)
        goto out;
    fv_train_result_t tr;
    r = fv_train(local, j->x_tr, j->y_tr, j->n_tr, NULL, NULL, 0, &cfg, &tr, &w->d);
    if (cfg.dp.on)
        dp_ctx_wipe(&dpc);
    if (r == 0)
        r = encode_update(j, w, local, delta, &e);
out:
    if (r != 0 && w->d.msg[0] == '\0')
        fv_diag_set(&w->d, r, "local training: %s", fv_strerror(r));
    fv_mlp_free(g);
    fv_mlp_free(local);
    evals_close(&e);
    free(delta);
    w->rc = r;
    return r;
}

static const fv_round_kind_t kind_train = {.id = FV_FED_KIND_TRAIN,
                                           .name = "train",
                                           .needs = FV_ROUND_NEEDS_GLOBAL | FV_ROUND_NEEDS_FEATURES,
                                           .n_rounds = train_rounds,
                                           .shape = train_shape,
                                           .compute = train_compute,
                                           .plain_check = vec_check,
                                           .decode = vec_decode,
                                           .apply = vec_apply};

/* ---- distill ------------------------------------------------------------------------- */

static uint64_t distill_rounds(const fv_job_t *job)
{
    return job->distill.on ? job->distill.rounds : 0;
}

static int distill_shape(const fv_round_sizes_t *z, fv_round_shape_t *ret, fv_diag_t *d)
{
    return vec_shape(z, FV_FED_KIND_DISTILL, z->s_n_params, ret, d);
}

/* Histograms [student B][teacher B][int8 B], so the coordinator compares the three models
 * on the same rows; the loss sum is the student's. */
static int distill_compute(const fv_round_data_t *j, fv_round_work_t *w)
{
    const fv_job_t *job = j->job;
    size_t P = j->s_n_params, n_out = j->arch->n_out;
    fv_mlp_t *teacher = NULL, *g = NULL, *q = NULL, *local = NULL;
    fv_mlp_ws_t *ws = NULL;
    evals_t e;
    fv_round_shape_t s;
    memset(&e, 0, sizeof e);
    float *delta = malloc(P * sizeof *delta);
    float *tl = malloc((j->n_tr ? j->n_tr : 1) * n_out * sizeof *tl);
    fv_round_sizes_t z = {.job = job, .sl = j->sl, .n_params = j->n_params, .s_n_params = P};
    int r = distill_shape(&z, &s, &w->d);
    if (r == 0)
        r = evals_init(&e, &s.lay);
    if (r == 0)
        r = (delta && tl && w->global && w->teacher) ? fv_mlp_new(j->arch, &teacher) : FV_ENOMEM;
    if (r == 0)
        r = fv_mlp_new(j->s_arch, &g);
    if (r != 0)
        goto out;
    memcpy(fv_mlp_params(teacher), w->teacher, j->n_params * sizeof(float));
    memcpy(fv_mlp_params(g), w->global, P * sizeof(float));
    if ((r = eval_model(j, g, 0, &e)) != 0) {
        fv_diag_set(&w->d, r, "evaluating the student: %s", fv_strerror(r));
        goto out;
    }
    w->val_loss_sum = e.loss_sum;
    if ((r = eval_model(j, teacher, 1, &e)) != 0) {
        fv_diag_set(&w->d, r, "evaluating the teacher: %s", fv_strerror(r));
        goto out;
    }
    if (job->distill.quantize_int8) {
        if ((r = fv_mlp_quantize_int8(g, &q)) != 0 || (r = eval_model(j, q, 2, &e)) != 0) {
            fv_diag_set(&w->d, r, "evaluating the int8 student: %s", fv_strerror(r));
            goto out;
        }
    }
    size_t chunk = j->n_tr < EVAL_CHUNK_ROWS ? j->n_tr : EVAL_CHUNK_ROWS;
    if ((r = fv_mlp_ws_new(teacher, chunk ? chunk : 1, &ws)) != 0)
        goto out;
    for (size_t i = 0; i < j->n_tr; i += chunk) {
        size_t n = j->n_tr - i < chunk ? j->n_tr - i : chunk;
        if ((r = fv_mlp_logits(teacher, ws, j->x_tr + i * j->n_feat, n, tl + i * n_out)) != 0) {
            fv_diag_set(&w->d, r, "the teacher's logits: %s", fv_strerror(r));
            goto out;
        }
    }
    if ((r = fv_mlp_clone(g, &local)) != 0)
        goto out;
    fv_train_cfg_t cfg;
    local_cfg(job, w, job->distill.local_epochs, &cfg);
    fv_distill_cfg_t dc = {.alpha = job->distill.alpha, .temperature = job->distill.temperature};
    dp_ctx_t dpc;
    if ((r = dp_local_cfg(j, w, &dpc, &cfg)) != 0)
        goto out;
    fv_train_result_t tr;
    r = fv_train_distill(local, j->x_tr, j->y_tr, tl, j->n_tr, NULL, NULL, 0, &cfg, &dc, &tr,
                         &w->d);
    if (cfg.dp.on)
        dp_ctx_wipe(&dpc);
    if (r == 0)
        r = encode_update(j, w, local, delta, &e);
out:
    if (r != 0 && w->d.msg[0] == '\0')
        fv_diag_set(&w->d, r, "local distillation: %s", fv_strerror(r));
    fv_mlp_ws_free(ws);
    fv_mlp_free(teacher);
    fv_mlp_free(g);
    fv_mlp_free(q);
    fv_mlp_free(local);
    evals_close(&e);
    free(delta), free(tl);
    w->rc = r;
    return r;
}

static const fv_round_kind_t kind_distill = {
    .id = FV_FED_KIND_DISTILL,
    .name = "distill",
    .needs = FV_ROUND_NEEDS_STUDENT | FV_ROUND_NEEDS_TEACHER | FV_ROUND_NEEDS_FEATURES,
    .n_rounds = distill_rounds,
    .shape = distill_shape,
    .compute = distill_compute,
    .plain_check = vec_check,
    .decode = vec_decode,
    .apply = vec_apply};

/* ---- the table ----------------------------------------------------------------------- */

static const fv_round_kind_t *const default_kinds[] = {&kind_stats, &kind_train, &kind_distill,
                                                       &fv__round_kind_explain};
static const fv_round_kinds_t default_table = {default_kinds,
                                               sizeof default_kinds / sizeof *default_kinds};

const fv_round_kinds_t *fv_round_kinds_default(void)
{
    return &default_table;
}

const fv_round_kind_t *fv_round_kind_by_id(const fv_round_kinds_t *t, uint32_t id)
{
    for (size_t i = 0; t != NULL && i < t->n; i++)
        if (t->kinds[i]->id == id)
            return t->kinds[i];
    return NULL;
}

const fv_round_kind_t *fv_round_kind_of(const fv_round_kinds_t *t, const fv_job_t *job,
                                        uint64_t round, uint64_t *ret_first)
{
    uint64_t first = 0;
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        uint64_t n = t->kinds[i]->n_rounds(job);
        if (round - first < n) {
            if (ret_first != NULL)
                *ret_first = first;
            return t->kinds[i];
        }
        if (n > UINT64_MAX - first)
            return NULL;
        first += n;
    }
    return NULL;
}

uint64_t fv_round_last(const fv_round_kinds_t *t, const fv_job_t *job)
{
    uint64_t n = 0;
    for (size_t i = 0; t != NULL && i < t->n; i++)
        n += t->kinds[i]->n_rounds(job);
    return n > 0 ? n - 1 : 0;
}
