/* agent_work.c - what a round runs on the thread pool: the stats words (round 0);
 * evaluate the global model, train locally and encode the update (training rounds); or
 * evaluate the student, the teacher and the int8 student, distill and encode (distill
 * rounds).
 *
 * Threads: fv__agent_work_run runs on a thread-pool thread. It touches only its work item
 * and the job's read-only data (dataset, splits, feature matrices: written once before
 * any training work is queued; a different stats vector may replace the features only
 * while no work runs). No loop, no log, no socket: the result and a diagnostic go back
 * in the item, and work_done (agent_round.c) reads them on the loop.
 *
 * Ownership: the work item owns its copies of the global (and teacher) parameters and
 * its results until work_done moves the results into the round; fv__agent_work_free
 * wipes the SecAgg input and the rounding key. Reproducible: the training seed and the
 * rounding key depend on the job, the round and the agent only (awork_t).
 */
#include "agent-int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "fv_crypto.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_optim.h"
#include "fv_train.h"

#define EVAL_CHUNK_ROWS 1024

/* ---- the work: stats, or evaluate + train + encode -------------------------------- */

static int on_epoch_cb(void *user, const fv_epoch_report_t *r)
{
    awork_t *w = user;
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

static int evals_init(evals_t *e, const fv_job_t *job, uint32_t kind, size_t n_params)
{
    memset(e, 0, sizeof *e);
    if (fv_fed_round_layout(job, kind, n_params, &e->lay) != 0)
        return FV_EINVAL;
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
static int eval_model(const ajob_t *j, const fv_mlp_t *g, size_t model, evals_t *e)
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
static void local_cfg(awork_t *w, uint32_t epochs, fv_train_cfg_t *cfg)
{
    fv_train_cfg_default(cfg);
    cfg->epochs = epochs;
    cfg->batch_size = w->j->job->batch_size;
    cfg->optim = w->j->job->optim;
    cfg->optim.prox_ref = NULL;
    cfg->optim.prox_mu = 0;
    cfg->patience = 0;
    cfg->seed = w->seed;
    cfg->on_epoch = on_epoch_cb;
    cfg->user = w;
}

/* The round vector of this agent (fv_fed.h, the layout in e): delta = local - w->global
 * (written into delta, P floats) and what e measured, encoded for SecAgg, or as the plain
 * float32 vector without it. */
static int encode_update(awork_t *w, const fv_mlp_t *local, float *delta, const evals_t *e)
{
    const ajob_t *j = w->j;
    const fv_job_t *job = j->job;
    size_t P = fv_mlp_n_params(local);
    const float *lp = fv_mlp_params_const(local);
    for (size_t i = 0; i < P; i++)
        delta[i] = lp[i] - w->global[i];
    fv_fed_local_t in = {.delta = delta,
                         .n_train = (uint32_t)j->n_tr,
                         .n_ref = (double)w->n_ref,
                         .hist_pos = e->lay.hist_bins ? e->hpos : NULL,
                         .hist_neg = e->lay.hist_bins ? e->hneg : NULL,
                         .loss_sum = e->loss_sum,
                         .n_val = (uint32_t)j->n_va,
                         .class_n = e->lay.n_classes ? e->class_n : NULL,
                         .class_right = e->lay.n_classes ? e->class_right : NULL};
    int r;
    if (w->secagg) {
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

static int work_train(awork_t *w)
{
    const ajob_t *j = w->j;
    const fv_job_t *job = j->job;
    size_t P = j->n_params;
    fv_mlp_t *g = NULL, *local = NULL;
    evals_t e;
    float *delta = malloc(P * sizeof *delta);
    int r = evals_init(&e, job, FV_FED_KIND_TRAIN, P);
    if (r == 0)
        r = delta != NULL ? fv_mlp_new(&j->arch, &g) : FV_ENOMEM;
    if (r != 0)
        goto out;
    memcpy(fv_mlp_params(g), w->global, P * sizeof(float));
    if ((r = eval_model(j, g, 0, &e)) != 0) {
        fv_diag_set(&w->d, r, "evaluating the global model: %s", fv_strerror(r));
        goto out;
    }
    w->val_loss_sum = e.loss_sum;
    if ((r = fv_mlp_clone(g, &local)) != 0)
        goto out;
    fv_train_cfg_t cfg;
    local_cfg(w, job->local_epochs, &cfg);
    if (job->strategy.kind == FV_STRATEGY_FEDPROX) {
        cfg.optim.prox_ref = w->global;
        cfg.optim.prox_mu = (float)job->strategy.mu;
    }
    fv_train_result_t tr;
    r = fv_train(local, j->x_tr, j->y_tr, j->n_tr, NULL, NULL, 0, &cfg, &tr, &w->d);
    if (r == 0)
        r = encode_update(w, local, delta, &e);
out:
    if (r != 0 && w->d.msg[0] == '\0')
        fv_diag_set(&w->d, r, "local training: %s", fv_strerror(r));
    fv_mlp_free(g);
    fv_mlp_free(local);
    evals_close(&e);
    free(delta);
    return r;
}

/* A distill round: evaluate on the validation rows the student's global parameters, the
 * teacher and, with quantize_int8, the student's int8 quantization (fv_mlp_quantize_int8,
 * what the coordinator ships): histograms [student B][teacher B][int8 B], so the
 * coordinator compares them on the same rows; compute the teacher's logits on the
 * training rows; train the student locally on the labels and those logits
 * (fv_train_distill: alpha * BCE + (1 - alpha) * T^2 * KL); encode the student's update
 * like a training round's (the loss sum is the student's). */
static int work_distill(awork_t *w)
{
    const ajob_t *j = w->j;
    const fv_job_t *job = j->job;
    size_t P = j->s_n_params, n_out = j->arch.n_out;
    fv_mlp_t *teacher = NULL, *g = NULL, *q = NULL, *local = NULL;
    fv_mlp_ws_t *ws = NULL;
    evals_t e;
    float *delta = malloc(P * sizeof *delta);
    float *tl = malloc(j->n_tr * n_out * sizeof *tl);
    int r = evals_init(&e, job, FV_FED_KIND_DISTILL, P);
    if (r == 0)
        r = (delta && tl) ? fv_mlp_new(&j->arch, &teacher) : FV_ENOMEM;
    if (r == 0)
        r = fv_mlp_new(&j->s_arch, &g);
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
    if ((r = fv_mlp_ws_new(teacher, chunk, &ws)) != 0)
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
    local_cfg(w, job->distill.local_epochs, &cfg);
    fv_distill_cfg_t dc = {.alpha = job->distill.alpha, .temperature = job->distill.temperature};
    fv_train_result_t tr;
    r = fv_train_distill(local, j->x_tr, j->y_tr, tl, j->n_tr, NULL, NULL, 0, &cfg, &dc, &tr,
                         &w->d);
    if (r == 0)
        r = encode_update(w, local, delta, &e);
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
    return r;
}

void fv__agent_work_run(uv_work_t *req)
{
    awork_t *w = req->data;
    if (w->kind == FV_FED_KIND_STATS) {
        w->dim = w->j->sl.dim;
        w->words = malloc(w->dim * sizeof *w->words);
        w->rc = w->words == NULL ? FV_ENOMEM
                                 : fv_fed_stats_encode(&w->j->sl, w->j->ds, w->j->tr, w->j->n_tr,
                                                       w->words, &w->d);
    } else if (w->kind == FV_FED_KIND_DISTILL) {
        w->rc = work_distill(w);
    } else {
        w->rc = work_train(w);
    }
}

void fv__agent_work_free(awork_t *w)
{
    if (w->words != NULL)
        sodium_memzero(w->words, w->dim * sizeof *w->words);
    free(w->words);
    free(w->fvec);
    free(w->global);
    free(w->teacher);
    sodium_memzero(w->qkey, sizeof w->qkey);
    free(w);
}
