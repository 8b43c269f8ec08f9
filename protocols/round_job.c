/* round_job.c - the coordinator's job machine (fv_round_job.h): the job's models, early
 * stopping, the distill hand-over, the result and checkpoints.
 *
 * Invariants: stats_sum, preproc, global and sopt exist together from the stats round on
 * (apply_stats makes all four, or none); lay is the layout of the kind being run (train,
 * then distill); best is NULL or a model of global's architecture, with best_metric not
 * NaN; teacher is non-NULL exactly while distilling. next_round is the round to run: the
 * one that failed, or the one after the last that completed.
 *
 * Ownership: the job spec is borrowed; every model, the preprocessing, the optimizer and
 * the copy of the stats sum are owned and freed by fv_cjob_free. Threads: one at a time.
 */
#include "fv_round_job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_crypto.h"

struct fv_cjob {
    const fv_job_t *job;
    fv_fed_stats_layout_t slay;
    fv_fed_layout_t lay;
    uint32_t *stats_sum;
    uint64_t n_ref;
    fv_preproc_t *preproc;
    fv_mlp_t *global;
    fv_fed_server_opt_t *sopt;
    fv_mlp_t *best;
    double best_metric;
    uint64_t best_round;
    uint32_t since_best;
    bool distill;
    fv_mlp_t *teacher;
    uint64_t next_round, rounds_done, rounds_failed;
};

int fv_cjob_new(const fv_job_t *job, fv_cjob_t **ret, fv_diag_t *d)
{
    *ret = NULL;
    fv_cjob_t *j = calloc(1, sizeof *j);
    if (j == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    j->job = job;
    j->best_metric = NAN;
    int r = fv_fed_stats_layout_init(job->schema, &j->slay);
    if (r != 0) {
        free(j);
        return fv_diag_set(d, r, "the job's schema has no stats layout");
    }
    *ret = j;
    return 0;
}

void fv_cjob_free(fv_cjob_t *j)
{
    if (j == NULL)
        return;
    free(j->stats_sum);
    fv_preproc_free(j->preproc);
    fv_mlp_free(j->global);
    fv_mlp_free(j->best);
    fv_mlp_free(j->teacher);
    fv_fed_server_opt_free(j->sopt);
    free(j);
}

/* ---- what runs next -------------------------------------------------------------------- */

uint64_t fv_cjob_round(const fv_cjob_t *j)
{
    return j->stats_sum == NULL ? 0 : j->next_round;
}

/* The explain round is the job's last number (fv_job_last_round): the machine is at it
 * once the phases before it ran their last round or fv_cjob_explain_begin moved it there;
 * nothing else marks it, so a checkpoint's next_round alone restores it. */
static bool at_explain(const fv_cjob_t *j)
{
    return j->job->explain && j->stats_sum != NULL && j->next_round >= fv_job_last_round(j->job);
}

uint32_t fv_cjob_kind(const fv_cjob_t *j)
{
    return j->stats_sum == NULL ? FV_FED_KIND_STATS
           : at_explain(j)      ? FV_FED_KIND_EXPLAIN
           : j->distill         ? FV_FED_KIND_DISTILL
                                : FV_FED_KIND_TRAIN;
}

const fv_round_kind_t *fv_cjob_round_kind(const fv_cjob_t *j)
{
    return fv_round_kind_by_id(fv_round_kinds_default(), fv_cjob_kind(j));
}

fv_round_sizes_t fv_cjob_sizes(const fv_cjob_t *j)
{
    fv_round_sizes_t z = {.job = j->job, .sl = &j->slay};
    if (j->global != NULL) {
        if (j->distill) {
            z.n_params = fv_mlp_n_params(j->teacher);
            z.s_n_params = fv_mlp_n_params(j->global);
        } else {
            z.n_params = fv_mlp_n_params(j->global);
        }
    }
    return z;
}

/* ---- the stats round --------------------------------------------------------------- */

int fv_cjob_apply_stats(fv_cjob_t *j, const uint32_t *sum, fv_diag_t *d)
{
    fv_fed_stats_t st;
    memset(&st, 0, sizeof st);
    int r = fv_fed_stats_decode(&j->slay, sum, &st, d);
    if (r != 0)
        return r;
    uint32_t *copy = malloc(j->slay.dim * sizeof *copy);
    fv_preproc_t *pp = NULL;
    fv_mlp_t *g = NULL;
    fv_fed_server_opt_t *so = NULL;
    fv_fed_layout_t lay;
    fv_mlp_arch_t arch;
    if (copy == NULL)
        r = fv_diag_set(d, FV_ENOMEM, "out of memory");
    if (r == 0 &&
        (r = fv_preproc_from_moments(j->job->schema, st.count, st.sum, st.sumsq, &pp)) != 0)
        fv_diag_set(d, r, "preprocessing from the summed moments: %s", fv_strerror(r));
    uint64_t n_rows = st.n_rows;
    fv_fed_stats_close(&st);
    if (r == 0) {
        fv_diag_t ad;
        r = fv_mlp_parse_arch(j->job->model, fv_preproc_n_features(pp),
                              fv_schema_n_classes(j->job->schema), &arch, &ad);
        if (r == 0)
            r = fv_mlp_new(&arch, &g);
        if (r != 0)
            fv_diag_set(d, r, "model: %s", r == FV_ENOMEM ? "out of memory" : ad.msg);
    }
    if (r == 0) {
        fv_mlp_init(g, j->job->seed);
        r = fv_fed_server_opt_new(j->job, fv_mlp_n_params(g), &so);
        if (r == 0)
            r = fv_fed_round_layout(j->job, FV_FED_KIND_TRAIN, fv_mlp_n_params(g), &lay);
        if (r != 0)
            fv_diag_set(d, r, "the server optimizer or the round layout: %s", fv_strerror(r));
    }
    if (r != 0) {
        free(copy);
        fv_preproc_free(pp);
        fv_mlp_free(g);
        fv_fed_server_opt_free(so);
        return r;
    }
    memcpy(copy, sum, j->slay.dim * sizeof *copy);
    free(j->stats_sum);
    fv_preproc_free(j->preproc);
    fv_mlp_free(j->global);
    fv_fed_server_opt_free(j->sopt);
    j->stats_sum = copy;
    j->n_ref = n_rows;
    j->preproc = pp;
    j->global = g;
    j->sopt = so;
    j->lay = lay;
    return 0;
}

/* ---- training and distill rounds --------------------------------------------------- */

typedef struct {
    fv_job_metric_t metric;
    uint32_t patience;
    double min_delta;
} es_t;

static es_t phase_es(const fv_cjob_t *j)
{
    const fv_job_t *job = j->job;
    es_t e;
    if (j->distill) {
        e.metric = job->distill.early_stopping.metric;
        e.patience = job->distill.early_stopping.patience;
        e.min_delta = job->distill.early_stopping.min_delta;
    } else {
        e.metric = job->early_stopping.metric;
        e.patience = job->early_stopping.patience;
        e.min_delta = job->early_stopping.min_delta;
    }
    return e;
}

static bool better(const fv_cjob_t *j, double v)
{
    es_t e = phase_es(j);
    if (isnan(v))
        return false;
    if (isnan(j->best_metric))
        return true;
    if (e.metric == FV_JOB_METRIC_LOG_LOSS)
        return v < j->best_metric - e.min_delta;
    return v > j->best_metric + e.min_delta;
}

int fv_cjob_apply_round(fv_cjob_t *j, const fv_fed_result_t *res, bool *ret_improved,
                        double *ret_metric)
{
    es_t e = phase_es(j);
    double metric = e.metric == FV_JOB_METRIC_ROC_AUC    ? res->val_roc_auc
                    : e.metric == FV_JOB_METRIC_PR_AUC   ? res->val_pr_auc
                    : e.metric == FV_JOB_METRIC_ACCURACY ? res->val_accuracy
                                                         : res->val_log_loss;
    *ret_metric = metric;
    *ret_improved = false;
    if (j->global == NULL)
        return FV_EINVAL;
    if (better(j, metric)) {
        fv_mlp_t *b = NULL;
        if (fv_mlp_clone(j->global, &b) != 0)
            return FV_ENOMEM;
        fv_mlp_free(j->best);
        j->best = b;
        j->best_metric = metric;
        j->best_round = j->next_round;
        j->since_best = 0;
        *ret_improved = true;
    } else {
        j->since_best++;
    }
    /* the update: global += strategy(delta_mean) */
    return fv_fed_server_opt_apply(j->sopt, fv_mlp_params(j->global), res->delta_mean);
}

void fv_cjob_round_done(fv_cjob_t *j, bool ok)
{
    if (ok) {
        j->rounds_done++;
        j->next_round++;
    } else {
        j->rounds_failed++;
    }
}

bool fv_cjob_phase_over(const fv_cjob_t *j)
{
    if (j->stats_sum == NULL || j->next_round == 0)
        return false;
    uint64_t done = j->next_round - 1;
    if (done == 0)
        return false; /* only the stats round */
    es_t e = phase_es(j);
    uint64_t distill_end = (uint64_t)j->job->rounds + j->job->distill.rounds; /* 0 if no section */
    if (done >= (j->distill ? distill_end : j->job->rounds))
        return true; /* (also while the explain round is pending, and once it ran) */
    return e.patience > 0 && j->since_best >= e.patience;
}

/* The distill phase's models from the teacher's parameters (global's, moved): a student
 * of the spec's architecture, seeded like the job's model, its optimizer and layout. */
static int distill_setup(fv_cjob_t *j, fv_diag_t *d)
{
    fv_diag_t ad;
    fv_mlp_arch_t arch;
    fv_mlp_t *student = NULL;
    fv_fed_server_opt_t *so = NULL;
    fv_fed_layout_t lay;
    int r = fv_mlp_parse_arch(j->job->distill.student, fv_preproc_n_features(j->preproc),
                              fv_schema_n_classes(j->job->schema), &arch, &ad);
    if (r == 0)
        r = fv_mlp_new(&arch, &student);
    if (r != 0)
        return fv_diag_set(d, r, "distill.student: %s", r == FV_ENOMEM ? "out of memory" : ad.msg);
    if ((r = fv_fed_server_opt_new(j->job, fv_mlp_n_params(student), &so)) != 0 ||
        (r = fv_fed_round_layout(j->job, FV_FED_KIND_DISTILL, fv_mlp_n_params(student), &lay)) !=
            0) {
        fv_mlp_free(student);
        fv_fed_server_opt_free(so);
        return fv_diag_set(d, r, "the student's server optimizer or layout: %s", fv_strerror(r));
    }
    fv_mlp_init(student, j->job->seed);
    fv_mlp_free(j->teacher);
    j->teacher = j->global;
    j->global = student;
    fv_fed_server_opt_free(j->sopt);
    j->sopt = so;
    j->lay = lay;
    j->distill = true;
    fv_mlp_free(j->best);
    j->best = NULL;
    j->best_metric = NAN;
    j->best_round = 0;
    j->since_best = 0;
    return 0;
}

int fv_cjob_distill_begin(fv_cjob_t *j, fv_diag_t *d)
{
    if (j->distill || !j->job->distill.on || j->global == NULL)
        return fv_diag_set(d, FV_EINVAL, "no training phase to distill from");
    uint64_t round;
    const fv_mlp_t *final = fv_cjob_final(j, &round);
    if (final == NULL)
        return fv_diag_set(d, FV_EINVAL, "no training round completed");
    if (final != j->global)
        memcpy(fv_mlp_params(j->global), fv_mlp_params_const(final),
               fv_mlp_n_params(j->global) * sizeof(float));
    int r = distill_setup(j, d);
    if (r == 0)
        j->next_round = (uint64_t)j->job->rounds + 1;
    return r;
}

/* ---- the explain round -------------------------------------------------------------- */

const fv_mlp_t *fv_cjob_explained(const fv_cjob_t *j)
{
    if (j->distill)
        return j->teacher;
    return fv_cjob_final(j, NULL);
}

bool fv_cjob_explain_due(const fv_cjob_t *j)
{
    return j->job->explain && j->stats_sum != NULL && j->next_round <= fv_job_last_round(j->job) &&
           fv_cjob_final(j, NULL) != NULL && fv_cjob_explained(j) != NULL;
}

int fv_cjob_explain_begin(fv_cjob_t *j, fv_diag_t *d)
{
    if (!fv_cjob_explain_due(j))
        return fv_diag_set(d, FV_EINVAL, "no explanation round is due");
    j->next_round = fv_job_last_round(j->job);
    return 0;
}

/* ---- facts --------------------------------------------------------------------------- */

bool fv_cjob_has_stats(const fv_cjob_t *j)
{
    return j->stats_sum != NULL;
}
bool fv_cjob_distilling(const fv_cjob_t *j)
{
    return j->distill;
}
const fv_mlp_t *fv_cjob_global(const fv_cjob_t *j)
{
    return j->global;
}
const fv_mlp_t *fv_cjob_best(const fv_cjob_t *j)
{
    return j->best;
}
const fv_mlp_t *fv_cjob_teacher(const fv_cjob_t *j)
{
    return j->teacher;
}
const fv_preproc_t *fv_cjob_preproc(const fv_cjob_t *j)
{
    return j->preproc;
}
const uint32_t *fv_cjob_stats_sum(const fv_cjob_t *j)
{
    return j->stats_sum;
}
const fv_fed_stats_layout_t *fv_cjob_stats_layout(const fv_cjob_t *j)
{
    return &j->slay;
}
uint64_t fv_cjob_n_ref(const fv_cjob_t *j)
{
    return j->n_ref;
}
double fv_cjob_best_metric(const fv_cjob_t *j)
{
    return j->best_metric;
}
uint64_t fv_cjob_best_round(const fv_cjob_t *j)
{
    return j->best_round;
}
uint32_t fv_cjob_since_best(const fv_cjob_t *j)
{
    return j->since_best;
}
uint64_t fv_cjob_rounds_done(const fv_cjob_t *j)
{
    return j->rounds_done;
}
uint64_t fv_cjob_rounds_failed(const fv_cjob_t *j)
{
    return j->rounds_failed;
}

void fv_cjob_params_hash(const fv_mlp_t *m, uint8_t out[32])
{
    /* SHA-256 of the parameters' little-endian bytes = the VEC_END digest of the model
     * vector. The hosts we build for are little-endian; fv_wire converts on others, and
     * so must this. */
    fv_sha256(out, fv_mlp_params_const(m), fv_mlp_n_params(m) * sizeof(float));
}

const fv_mlp_t *fv_cjob_final(const fv_cjob_t *j, uint64_t *ret_round)
{
    bool last = !j->distill && j->job->early_stopping.patience == 0;
    /* patience 0: training ran every round, so its result is round `rounds`'s update,
     * labelled with that round (the explain round, numbered after it, does not move it) */
    uint64_t after =
        j->next_round > (uint64_t)j->job->rounds + 1 ? (uint64_t)j->job->rounds + 1 : j->next_round;
    if (ret_round != NULL)
        *ret_round = last ? (after > 0 ? after - 1 : 0) : j->best_round;
    if (j->best == NULL)
        return NULL; /* no round of the phase completed with a metric */
    return last ? j->global : j->best;
}

/* ---- checkpoints --------------------------------------------------------------------- */

int fv_cjob_checkpoint(const fv_cjob_t *j, fv_cjob_ckpt_t *ret)
{
    memset(ret, 0, sizeof *ret);
    ret->next_round = j->next_round;
    ret->rounds_done = j->rounds_done;
    ret->rounds_failed = j->rounds_failed;
    ret->best_metric = NAN;
    if (j->stats_sum == NULL)
        return 0;
    ret->stats_sum = j->stats_sum;
    ret->stats_words = j->slay.dim;
    ret->n_ref = j->n_ref;
    ret->global = fv_mlp_params_const(j->global);
    ret->n_global = fv_mlp_n_params(j->global);
    int r = fv_fed_server_opt_save(j->sopt, &ret->opt, &ret->opt_len);
    if (r != 0)
        return r;
    if (j->best != NULL) {
        ret->best = fv_mlp_params_const(j->best);
        ret->n_best = fv_mlp_n_params(j->best);
    }
    ret->best_metric = j->best_metric;
    ret->best_round = j->best_round;
    ret->since_best = j->since_best;
    ret->distill = j->distill;
    if (j->teacher != NULL) {
        ret->teacher = fv_mlp_params_const(j->teacher);
        ret->n_teacher = fv_mlp_n_params(j->teacher);
    }
    return 0;
}

void fv_cjob_ckpt_close(fv_cjob_ckpt_t *ck)
{
    free(ck->opt);
    ck->opt = NULL;
    ck->opt_len = 0;
}

int fv_cjob_restore(const fv_job_t *job, const fv_cjob_ckpt_t *ck, fv_cjob_t **ret, fv_diag_t *d)
{
    fv_cjob_t *j = NULL;
    int r = fv_cjob_new(job, &j, d);
    if (r != 0)
        return r;
    j->next_round = ck->next_round;
    j->rounds_done = ck->rounds_done;
    j->rounds_failed = ck->rounds_failed;
    if (ck->stats_sum == NULL)
        goto ok;
    if (ck->stats_words != j->slay.dim) {
        r = fv_diag_set(d, FV_ECORRUPT, "checkpoint: stats vector has %zu words, the job needs %zu",
                        ck->stats_words, j->slay.dim);
        goto fail;
    }
    if ((r = fv_cjob_apply_stats(j, ck->stats_sum, d)) != 0)
        goto fail;
    if (ck->distill) {
        /* the teacher first, then the student's progress below */
        if (ck->teacher == NULL || ck->n_teacher != fv_mlp_n_params(j->global)) {
            r = fv_diag_set(d, FV_ECORRUPT, "checkpoint: the teacher does not fit the job");
            goto fail;
        }
        memcpy(fv_mlp_params(j->global), ck->teacher, ck->n_teacher * sizeof(float));
        if ((r = distill_setup(j, d)) != 0)
            goto fail;
    }
    if (ck->global != NULL) {
        if (ck->n_global != fv_mlp_n_params(j->global)) {
            r = fv_diag_set(d, FV_ECORRUPT,
                            "checkpoint: the global model has %zu parameters, the job's %zu",
                            ck->n_global, fv_mlp_n_params(j->global));
            goto fail;
        }
        memcpy(fv_mlp_params(j->global), ck->global, ck->n_global * sizeof(float));
    }
    if ((r = fv_fed_server_opt_load(j->sopt, ck->opt, ck->opt_len)) != 0) {
        fv_diag_set(d, r, "checkpoint: optimizer state does not fit the job");
        goto fail;
    }
    if (ck->best != NULL) {
        if (ck->n_best != fv_mlp_n_params(j->global)) {
            r = fv_diag_set(d, FV_ECORRUPT,
                            "checkpoint: the best model has %zu parameters, the job's %zu",
                            ck->n_best, fv_mlp_n_params(j->global));
            goto fail;
        }
        if ((r = fv_mlp_clone(j->global, &j->best)) != 0) {
            fv_diag_set(d, r, "out of memory");
            goto fail;
        }
        memcpy(fv_mlp_params(j->best), ck->best, fv_mlp_n_params(j->best) * sizeof(float));
        j->best_metric = ck->best_metric;
        j->best_round = ck->best_round;
        j->since_best = ck->since_best;
    }
ok:
    *ret = j;
    return 0;
fail:
    fv_cjob_free(j);
    *ret = NULL;
    return r;
}
