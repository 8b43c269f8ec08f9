/* fv_privacy.h - what a job's "privacy" section means for one agent: its plan (sampling
 * rate, steps, noise multiplier, the epsilon its records get) and its ledger of spends.
 *
 * An agent never takes the coordinator's word for its privacy: it computes the plan
 * itself, from the job spec it was offered and its own row count, with the accountant
 * (model/fv_rdp.h), before it accepts; the compute of every round recomputes the same plan
 * (a pure function of the same inputs) and runs exactly that.
 *
 * local mode        DP-SGD in every local step (model/fv_train.h): q = sample_rate or
 *                   batch_size / n_train (the agent's own training rows), steps =
 *                   fv_train_dp_steps(rounds * local_epochs + distill.rounds *
 *                   distill.local_epochs, q) (every round counted: early stopping may end
 *                   the job sooner, never later), sigma = noise_multiplier or calibrated
 *                   (fv_rdp_calibrate, tol 0.01) to the target epsilon at delta. The
 *                   guarantee is per record of this agent's data, whatever the other agents
 *                   and the coordinator do.
 * distributed mode  one clipped gradient sum per round at the global model (no local
 *                   steps: a record's influence on what an agent sends is then bounded by
 *                   clip alone), each agent adding discrete Gaussian noise in the quantized
 *                   domain, sized so the sum over any min_honest agents carries sigma;
 *                   q = sample_rate (the same for every agent), steps = rounds +
 *                   distill.rounds, the accountant fv_rdp_subsampled_zcdp_curve over
 *                   fv_rdp_ddg_rho. The guarantee holds if at least min_honest agents of
 *                   the round's cohort are honest (and SecAgg hides each one's share).
 *
 * Thread-safe, pure (no I/O) except the ledger functions, which read and write the ledger
 * file named by their caller.
 */
#ifndef FV_PRIVACY_H
#define FV_PRIVACY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"
#include "fv_job.h"
#include "fv_rdp.h"

typedef struct fv_privacy_plan {
    bool on; /* false: the job has no privacy section (nothing else set) */
    fv_privacy_mode_t mode;
    double q;       /* Poisson sampling rate of this agent's rows */
    uint64_t steps; /* sampled steps accounted for the whole job */
    double sigma;   /* noise multiplier (on clip) */
    double clip;    /* C */
    double epsilon; /* the job's epsilon for this agent's records, at delta */
    double delta;
    uint32_t min_honest; /* distributed: h */
    /* distributed: each agent's discrete Gaussian variance in the quantized domain
     * (integer, rounded up), and the L2 sensitivity it was sized for (quantized units,
     * rounding included) */
    uint64_t ddg_sigma2;
    double ddg_sens;
    size_t n_orders;
    double orders[FV_RDP_MAX_ORDERS];
    double rdp[FV_RDP_MAX_ORDERS]; /* the job's RDP curve (the ledger sums these) */
} fv_privacy_plan_t;

/* The plan of `job` for an agent with n_train training rows (after the job's validation
 * split), n_params: the parameters of the model a distributed round's update covers (the
 * largest of the job's models), n_ref: the job's total training rows (distributed mode's
 * scale; 0 before the stats round: then the plan's ddg_* are 0). FV_EINVAL with a sentence
 * naming the field when the job's numbers give no plan (q > 1, sigma not reached...). */
int fv_privacy_plan(const fv_job_t *job, uint64_t n_train, uint64_t n_params, uint64_t n_ref,
                    fv_privacy_plan_t *ret, fv_diag_t *d);

/* Whether distributed noise of plan p (its ddg_sigma2) fits SecAgg's 32-bit sums of
 * n_agents agents at `bits`: n_agents * (2^bits - 1) + 32 * sqrt(n_agents * ddg_sigma2) <
 * 2^32 (the sum read centered, 16 standard deviations of the summed noise on either side).
 * FV_EOVERFLOW with a sentence when not. fv_privacy_plan checks min_agents; a round checks
 * its actual cohort. */
int fv_privacy_ddg_fits(const fv_privacy_plan_t *p, uint32_t bits, uint32_t n_agents, fv_diag_t *d);

/* ---- the ledger ---------------------------------------------------------------------
 * One file per agent (JSON lines, fsynced, rewritten atomically): one entry per job it
 * accepted with a privacy section, {job, fingerprint, mode, epsilon, delta, sigma, q,
 * steps, ts, orders, rdp}. A job is charged once per data fingerprint, whatever the
 * reconnects and restarts: the same job on another data file is charged again for it.
 * The budget of a data fingerprint: the sum of its entries' RDP curves, converted at the
 * policy's delta (fv_rdp_epsilon), must stay at most the policy's epsilon_max. */
typedef struct fv_privacy_ledger fv_privacy_ledger_t;

/* Loads path (a missing file is an empty ledger). FV_EPARSE naming the file and line. */
int fv_privacy_ledger_open(const char *path, fv_privacy_ledger_t **ret, fv_diag_t *d);
void fv_privacy_ledger_free(fv_privacy_ledger_t *l);
/* The epsilon at delta spent on fingerprint (hex) so far, and with plan p added (p NULL:
 * spent only). *ret_charged: job (hex id) already has an entry for this fingerprint. */
int fv_privacy_ledger_spent(const fv_privacy_ledger_t *l, const char *fingerprint, const char *job,
                            const fv_privacy_plan_t *p, double delta, double *ret_spent,
                            double *ret_with, bool *ret_charged, fv_diag_t *d);
/* Appends the (job, fingerprint) entry and writes the file (atomic, fsynced) before it
 * returns; a pair already in the ledger is not added again (0). */
int fv_privacy_ledger_charge(fv_privacy_ledger_t *l, const char *fingerprint, const char *job,
                             const fv_privacy_plan_t *p, int64_t ts_unix, fv_diag_t *d);
/* The ledger as JSON text (malloc'd): {"entries": [...], "totals": [{fingerprint, epsilon,
 * delta, jobs}]} with totals at delta. */
int fv_privacy_ledger_json(const fv_privacy_ledger_t *l, double delta, char **ret, fv_diag_t *d);

#endif
