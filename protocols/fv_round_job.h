/* fv_round_job.h - the coordinator's side of a federated job as a transport-free machine:
 * which round runs next, what the cohort's sum does to the job's models, early stopping,
 * the hand-over from training to distillation, the result, and the checkpoint a restart
 * resumes from. The round itself is fv_round.h's fv_cround; this machine is what sits
 * above it. No I/O: model files, the state database and the audit log are the daemon's
 * (coordinator/), which stores what this machine holds at the points it says.
 *
 * A JOB (the default round kinds, fv_round_kinds_default):
 *   round 0, stats      the summed moments give the global standardization, the number
 *                       of training rows n_ref, the initial model (fv_mlp_init with the
 *                       job's seed: the same in a resumed run), the server optimizer.
 *   rounds 1..rounds    train: the sum's metrics judge the model sent in that round (early
 *                       stopping on the job's metric: the best is kept, the phase stops
 *                       after `patience` rounds without an improvement of more than
 *                       min_delta); then the server optimizer applies the mean update.
 *   distill (optional)  the training phase's result becomes the teacher (the best
 *                       evaluated model; the last one with patience 0), a student of the
 *                       distill section's architecture starts from the job's seed, and
 *                       distill rounds (numbered rounds+1..) train it like training rounds,
 *                       with the distill section's early stopping.
 *   explain (optional)  a job with "explain": round fv_job_last_round, after the last
 *                       phase (also when early stopping ended it: fv_cjob_explain_begin
 *                       moves the machine to that number). Its model is the training
 *                       phase's result (fv_cjob_explained: the teacher when distilling);
 *                       it changes no model, so the result below is the same with or
 *                       without it.
 *   the result          the best evaluated model of the last phase (training with
 *                       patience 0: the model after the last update, which no round
 *                       evaluated).
 *   A round that fails is run again under its number (fv_cjob_round_done with ok false);
 *   the daemon decides how many attempts it allows.
 *
 * Checkpoints: fv_cjob_checkpoint after fv_cjob_round_done (or fv_cjob_distill_begin) is
 * everything fv_cjob_restore needs to continue exactly where the job stopped: a job
 * restored from any checkpoint ends with the same model as one never interrupted (the
 * agents' computes are reproducible: fv_round.h). tests/unit/protocols/test_round_job.c
 * checks it at every checkpoint of a whole job.
 *
 * Ownership: the machine borrows the job spec (it must outlive it) and owns its models;
 * pointers it returns are valid until the next call that changes the models.
 * Threads: one at a time.
 */
#ifndef FV_ROUND_JOB_H
#define FV_ROUND_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_fed.h"
#include "fv_job.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_round.h"

typedef struct fv_cjob fv_cjob_t;

int fv_cjob_new(const fv_job_t *job, fv_cjob_t **ret, fv_diag_t *d);
void fv_cjob_free(fv_cjob_t *j); /* NULL-safe */

/* The round to run next and its kind (FV_FED_KIND_*): stats until the stats round
 * succeeded, then train, or distill once fv_cjob_distill_begin ran, and explain at the
 * job's last round number (a job with "explain"). */
uint64_t fv_cjob_round(const fv_cjob_t *j);
uint32_t fv_cjob_kind(const fv_cjob_t *j);
const fv_round_kind_t *fv_cjob_round_kind(const fv_cjob_t *j);
/* What a round's machine needs to size the round (sl, n_params of the model it trains in
 * .n_params for train and .s_n_params for distill). */
fv_round_sizes_t fv_cjob_sizes(const fv_cjob_t *j);

/* The stats round's sum (shape.words words, copied): preprocessing, n_ref, the initial
 * model, the server optimizer. FV_ESCHEMA (why in d) if the sum does not fit the job. */
int fv_cjob_apply_stats(fv_cjob_t *j, const uint32_t *sum, fv_diag_t *d);

/* A training or distill round's decoded sum: early stopping judges the model the round
 * evaluated (fv_cjob_global before this call), then the server optimizer steps.
 * *ret_improved: the round's model is the new best; *ret_metric: the job's metric. */
int fv_cjob_apply_round(fv_cjob_t *j, const fv_fed_result_t *res, bool *ret_improved,
                        double *ret_metric);

/* The round ended (ok: committed; else it runs again under its number). */
void fv_cjob_round_done(fv_cjob_t *j, bool ok);
/* Whether the phase being run (training, or distillation) is over after the last round
 * that completed: its last round number, or `patience` rounds without improvement. Stays
 * true while the explain round is pending and after it ran. */
bool fv_cjob_phase_over(const fv_cjob_t *j);
/* Training is over and the job has a distill section: the training result becomes the
 * teacher, a fresh student the global model, and round rounds+1 is next. */
int fv_cjob_distill_begin(fv_cjob_t *j, fv_diag_t *d);

/* The explain round (a job with "explain"): due when the job has a result and the round
 * has not run (the machine is before or at its number); fv_cjob_explain_begin moves the
 * machine to it (FV_EINVAL when not due). fv_cjob_explained: the model it explains, the
 * training phase's result (the teacher when distilling, else fv_cjob_final's), or NULL. */
bool fv_cjob_explain_due(const fv_cjob_t *j);
int fv_cjob_explain_begin(fv_cjob_t *j, fv_diag_t *d);
const fv_mlp_t *fv_cjob_explained(const fv_cjob_t *j);

/* Models and facts. */
bool fv_cjob_has_stats(const fv_cjob_t *j);
bool fv_cjob_distilling(const fv_cjob_t *j);
const fv_mlp_t *fv_cjob_global(const fv_cjob_t *j); /* the model agents train (student) */
const fv_mlp_t *fv_cjob_best(const fv_cjob_t *j);   /* NULL before a round improved */
const fv_mlp_t *fv_cjob_teacher(const fv_cjob_t *j);
const fv_preproc_t *fv_cjob_preproc(const fv_cjob_t *j);
const uint32_t *fv_cjob_stats_sum(const fv_cjob_t *j);
const fv_fed_stats_layout_t *fv_cjob_stats_layout(const fv_cjob_t *j);
uint64_t fv_cjob_n_ref(const fv_cjob_t *j);
double fv_cjob_best_metric(const fv_cjob_t *j); /* NaN before a round improved */
uint64_t fv_cjob_best_round(const fv_cjob_t *j);
uint32_t fv_cjob_since_best(const fv_cjob_t *j);
uint64_t fv_cjob_rounds_done(const fv_cjob_t *j);
uint64_t fv_cjob_rounds_failed(const fv_cjob_t *j);
/* SHA-256 of the parameters' bytes: what agents hold and ROUND_START names. */
void fv_cjob_params_hash(const fv_mlp_t *m, uint8_t out[32]);

/* The job's result (see above) and the round number its metadata names: the best round
 * (whose metrics judged it: the model that round started from), or (training with
 * patience 0) the last round run, whose update made it (no round evaluated it). NULL when
 * no round of the phase completed. */
const fv_mlp_t *fv_cjob_final(const fv_cjob_t *j, uint64_t *ret_round);

/* ---- checkpoints ------------------------------------------------------------------- */

typedef struct fv_cjob_ckpt {
    uint64_t next_round, rounds_done, rounds_failed;
    const uint32_t *stats_sum; /* NULL before the stats round */
    size_t stats_words;
    uint64_t n_ref;
    const float *global; /* the model agents train (the student when distilling) */
    size_t n_global;
    uint8_t *opt; /* the server optimizer's state (fv_fed_server_opt_save; malloc'd) */
    size_t opt_len;
    const float *best; /* NULL: none yet */
    size_t n_best;
    double best_metric; /* with best_round and since_best: restored only with a best */
    uint64_t best_round;
    uint32_t since_best;
    bool distill;
    const float *teacher;
    size_t n_teacher;
} fv_cjob_ckpt_t;

/* The machine's state as a checkpoint (pointers borrowed from the machine, opt malloc'd:
 * fv_cjob_ckpt_close). */
int fv_cjob_checkpoint(const fv_cjob_t *j, fv_cjob_ckpt_t *ret);
void fv_cjob_ckpt_close(fv_cjob_ckpt_t *ck);
/* A machine for job continuing from ck (its arrays are copied). FV_ECORRUPT with why when
 * the checkpoint does not fit the job (sizes of the stats sum, models, optimizer state). */
int fv_cjob_restore(const fv_job_t *job, const fv_cjob_ckpt_t *ck, fv_cjob_t **ret, fv_diag_t *d);

#endif
