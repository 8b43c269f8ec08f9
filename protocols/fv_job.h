/* fv_job.h - the job spec: what a federation trains, how, and under which protections.
 *
 * A job spec is one JSON object (parsed with jansson), written by the federation
 * operator, shipped by the coordinator to every agent (which checks it against its own
 * data and policy before taking part). Strict: an unknown key, a missing required key, a
 * wrong type or a value out of range is refused with a sentence naming the field by its
 * JSON path ("job.json: secagg.threshold: 7 is more than the 5 agents of min_agents").
 *
 *   {
 *     "name": "lc-risk",                     required, fv_name_valid
 *     "schema": { ... },                     required, the fv_schema JSON (columns,
 *                                            types, vocabularies, target, positive);
 *                                            may be open (below);
 *                                            in a spec FILE only, a string: the path of
 *                                            a schema JSON file relative to the spec
 *                                            file's directory (below, "Spec files")
 *     "model": "mlp:32,16",                  required, "logreg" or "mlp:H1,H2,..."
 *     "rounds": 20,                          1..10000
 *     "local_epochs": 1,                     1..1000
 *     "batch_size": 128,                     1..65536
 *     "optimizer": {"kind": "adam", "lr": 0.001, "momentum": 0.9,
 *                   "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},   local optimizer, kind
 *                                            "sgd" | "adam"; ranges of fv_optim_cfg_check
 *     "l2": 0.01,                            weight decay on weights, >= 0
 *     "strategy": {"kind": "fedavg"}         fedavg | fedprox (+ "mu" > 0, required) |
 *                                            fedadam / fedyogi (+ "server_lr" > 0 = 0.01,
 *                                            "beta1" = 0.9, "beta2" = 0.99 in [0,1),
 *                                            "tau" > 0 = 1e-3); "kind" is required and
 *                                            only its kind's keys are allowed
 *     "secagg": {"threshold": 0, "neighbors": 0, "clip": 1.0, "bits": 16}
 *               or "off"                     threshold 0 = floor(2(k+1)/3)+1 of the cohort;
 *                                            neighbors 0 = classic (n-1); clip > 0 bounds
 *                                            each agent's weighted update per element;
 *                                            bits 1..31 with cohort * (2^bits-1) < 2^32.
 *                                            Checked against the smallest cohort
 *                                            (min_agents): explicit neighbors even and
 *                                            <= min_agents - 2; explicit threshold
 *                                            <= min_agents, a majority of min_agents
 *                                            (classic) or 2t > k+1, t <= k+1 (neighbors);
 *                                            min_agents * (2^bits-1) < 2^32.
 *                                            "off": no masking: each agent sends its
 *                                            plain float32 vector over TLS (fv_fed.h),
 *                                            which the coordinator checks claim by claim
 *                                            and sums; clip and bits keep their defaults
 *                                            but are not used
 *     "min_agents": 3,                       3..65535 (SecAgg needs 3)
 *     "deadlines_ms": {"join": 60000, "train": 600000, "secagg_phase": 60000},
 *                                            each 1..2592000000 (30 days)
 *     "early_stopping": {"metric": "roc_auc", "patience": 3, "min_delta": 0.0001},
 *                                            metric roc_auc | pr_auc (binary schema only)
 *                                            | accuracy (multi-class schema only)
 *                                            | log_loss; default roc_auc for a binary
 *                                            schema, log_loss for a multi-class one;
 *                                            patience 0..10000, 0 = off; min_delta >= 0,
 *                                            in the metric's own units (below)
 *     "validation_fraction": 0.1,            (0, 0.5]: each agent's local validation split
 *     "hist_bins": 1000,                     score histogram bins for a binary job's
 *                                            global ROC/PR AUC: 10..100000. A binary
 *                                            schema only: a multi-class job's global
 *                                            metrics are accuracy, per-class recall and
 *                                            log loss from summed counts; there the key
 *                                            must be absent or 0 (canonical form: 0)
 *     "seed": 0,                             0..2^63-1
 *     "max_update_norm": 5.0,                optional, > 0 (finite); absent = no bound.
 *                                            The L2 bound, in the update's real units,
 *                                            of the update block an agent adds to a
 *                                            training or distill round (below)
 *     "validation": {"max_failures": 1},     optional; present = every training and
 *                                            distill round is validated (fv_vagg.h): each
 *                                            agent proves its input well formed (norm
 *                                            <= max_update_norm, counts in range,
 *                                            histograms summing to its n_val) and only
 *                                            accepted inputs are summed; an agent whose
 *                                            proofs fail max_failures times (1..1000) is
 *                                            excluded from the job's later rounds. Needs
 *                                            SecAgg on with neighbors 0, and
 *                                            max_update_norm; the stats round (0) stays
 *                                            plain SecAgg
 *     "distill": {                           optional; absent = no distillation stage.
 *                                            After the last training round, rounds that
 *                                            train a student on the global model's
 *                                            logits (loss in fv_mlp.h):
 *       "student": "logreg",                 required, "logreg" or "mlp:H1,...", checked
 *                                            against the schema like "model"
 *       "temperature": 2.0,                  > 0 (finite)
 *       "alpha": 0.5,                        [0, 1], weight of the label loss
 *       "rounds": 10,                        1..10000 distillation rounds
 *       "local_epochs": 1,                   1..1000
 *       "early_stopping": {...},             like the job's (same keys, ranges and
 *                                            schema rule); absent keys default to the
 *                                            job's early_stopping values
 *       "quantize_int8": false               boolean: also ship an int8-quantized student
 *     },
 *     "cohort": {                            optional; what the coordinator does when the
 *                                            cohort is short (both keys optional):
 *       "on_join_deadline": "fail",          "fail" | "wait". The job waits for min_agents
 *                                            agents to accept it; "fail": when fewer have
 *                                            accepted deadlines_ms.join after it began
 *                                            waiting, the job fails, its reason naming
 *                                            each refusal's agent and category and the
 *                                            agents that never answered; "wait": it waits
 *                                            on, showing on whom
 *       "on_member_lost": "continue"         "continue" | "wait". A member whose
 *                                            connection closes and does not come back is
 *                                            shown gone (with the time); "continue": the
 *                                            next rounds run with the members still
 *                                            connected (at least min_agents; below that
 *                                            the job waits as at its start, under
 *                                            on_join_deadline); "wait": no round starts
 *                                            until every lost member is back
 *     }
 *     "explain": false                       boolean; true = one explanation round (kind
 *                                            4, protocols/round_explain.c) after the last
 *                                            training round and after distillation (when
 *                                            there is one): each agent sums, per schema
 *                                            column, |reason-code contribution| of the
 *                                            job's final training model (not the student)
 *                                            over its validation rows; the coordinator
 *                                            learns only the cohort's sum and records the
 *                                            mean per column (rounds.jsonl, job show).
 *                                            Its round number is fv_job_last_round, also
 *                                            when early stopping ended a phase early; it
 *                                            changes no model
 *     "privacy": {                           optional; absent = no differential privacy.
 *                                            Present: every agent computes its own plan
 *                                            (fv_privacy.h) and refuses the job if its
 *                                            policy's budget cannot pay for it
 *       "mode": "local",                     required: "local" (each agent runs DP-SGD,
 *                                            the whole noise its own: the guarantee needs
 *                                            no one else) | "distributed" (one clipped
 *                                            gradient sum per round, each agent adding a
 *                                            share of discrete Gaussian noise under
 *                                            SecAgg: the guarantee needs min_honest
 *                                            honest agents in the cohort)
 *       "epsilon": 8.0,                      exactly one of epsilon, in (0, 100]: the
 *       "noise_multiplier": 1.1,             target epsilon per record of each agent at
 *                                            delta (the agents calibrate sigma), and
 *                                            noise_multiplier, in (0, 1e6]: sigma given
 *                                            (the agents compute the epsilon it gives).
 *                                            0 = not given (the canonical form's unset one)
 *       "delta": 1e-5,                       required, (0, 0.1]
 *       "clip": 1.0,                         per-record gradient L2 bound C, (0, 1e6]
 *       "sample_rate": 0.05,                 Poisson sampling rate q, (0, 1]; local mode:
 *                                            optional, 0/absent = batch_size / the
 *                                            agent's training rows; distributed: required
 *       "min_honest": 3,                     distributed only: 1..min_agents, absent or
 *                                            0 = min_agents; local mode: absent or 0
 *       "outside_budget": ["stats", "metrics", "explain"]
 *                                            required: the releases fedvault adds no
 *                                            noise to, declared: "stats" (round 0's
 *                                            counts, sums, squares) and "metrics" (every
 *                                            round's validation histograms, loss sums,
 *                                            class and row counts) always, "explain"
 *                                            (the explanation round's sums) when
 *                                            "explain" is true; unknown or repeated
 *                                            words refused. The agent's policy must allow
 *                                            each one listed
 *     }                                      Distributed mode needs SecAgg on, no
 *                                            "validation", no "distill" (not yet) and
 *                                            local_epochs 1. In the budget: every training
 *                                            round's update (and, local mode, every distill
 *                                            round's student update; the teacher's logits
 *                                            are post-processing of a DP model)
 *   }
 * The operator's reference is docs/job.schema.json (a JSON Schema of this form, every field
 * with its unit, default, range and an example; tests/integration/job_schema.py keeps it
 * equal to this parser) and `fedvault job template`, which prints a commented spec.
 *
 * Early stopping, precisely (protocols/round_job.c, better()): each training round's
 * metric is the global validation metric of the model sent in that round, from the
 * cohort's summed counts and histograms. The phase keeps the best model so far, best_m.
 * A round's metric m counts as an improvement when
 *     log_loss:                      m < best_m - min_delta   (lower is better)
 *     roc_auc, pr_auc, accuracy:     m > best_m + min_delta   (higher is better)
 * strictly, in the metric's absolute units (log loss in nats per validation row; the AUCs
 * and accuracy as fractions in [0, 1], so 1e-4 is 0.01 percentage points), never relative.
 * The first evaluated round always counts; a NaN metric never does. best_m moves only on
 * an improvement, so a slow drift counts once its total since the best passes min_delta.
 * The phase ends after `patience` rounds in a row without an improvement. Example: with
 * the default min_delta 1e-4, a log loss of 0.43358 after a best of 0.43364 is not an
 * improvement (0.43364 - 0.43358 = 0.00006, not more than 0.0001): the round counts toward
 * patience and the earlier model stays the best. Set min_delta 0 to keep any decrease.
 *
 * Spec files (fv_job_load, fv_job_file_expand): what an operator writes may hold full-line
 * comments, lines whose first non-blank characters are //, blanked before parsing (so
 * line:column in an error still points into the file), and "schema" may be a string, the
 * path of a schema JSON file relative to the spec file's directory (absolute paths as
 * they are). The file's schema is checked on its own (errors name that file) and inlined.
 * Neither form is accepted from the network: fv_job_from_json refuses a string schema
 * (FV_EPARSE), and JSON with comments is invalid JSON; callers that read a file send the
 * expanded spec (fedvault job submit, the coordinator's --job).
 *
 * Every key except name, schema, model and max_update_norm has the default shown. The
 * canonical form writes "distill" (every key, defaults included) and "max_update_norm"
 * only when the spec has them, "cohort" only when a key differs from its default (then
 * both keys), "explain" only when true, and "privacy" (every key, the unset ones as 0,
 * outside_budget in the order stats, metrics, explain) only when the spec has it, so jobs
 * without them keep the digest they had before those keys existed.
 *
 * max_update_norm: which vector it bounds. An agent's update block in the round vector
 * (fv_fed.h) is a_k = w_k * delta_k, w_k = n_train_k / n_ref, delta_k = local model -
 * global model: the bound applies to a_k, AFTER the n_train weighting, as the agent
 * computes it in double before any rounding (before the float32 plain vector, and before
 * secagg.clip's per-element clip and the quantization for SecAgg). ||a_k||_2 <=
 * max_update_norm. Why after the weighting: a_k is the very block that is summed, so a
 * later proof of the summed input can check this one inequality on the input itself
 * without trusting the agent's own n_train claim (a bound on delta_k alone would let a
 * bank that overstates n_train scale its influence); and one bank then moves the summed
 * update sum(a_k) by at most max_update_norm, and the decoded mean sum(a_k) / sum(w_k) by
 * at most max_update_norm / sum(w_k) (sum(w_k) is about 1 when the whole federation
 * contributes). In the same units as secagg.clip, which bounds each element of a_k.
 * A proof on the quantized block must allow the quantization: each element's stochastic
 * rounding moves it by less than one step 2 clip / (2^bits - 1), so the quantized block's
 * norm is at most max_update_norm + sqrt(P) * 2 clip / (2^bits - 1). The honest agent
 * clips: if ||a_k|| > max_update_norm it scales delta_k (hence a_k) by max_update_norm /
 * ||a_k||, so the block's norm is the bound (within a relative 2^-21: float32 roundings,
 * fv_fed_update_clip); an update with a NaN or infinite element is never sent (the agent
 * sits the round out). The same bound applies to distill rounds, whose block has the same
 * layout (the student's update, P of the student): one number for both stages; the
 * operator sizes it for the larger. No differential-privacy noise is added today; if it
 * is, the bound is on the update before the noise. Absent: no norm bound (secagg.clip's
 * per-element clip still applies under SecAgg). The model is checked
 * against the schema (input features after one-hot, number of classes).
 *
 * Open schema: "schema" may have open columns ("categories": "open", "type": "open";
 * fv_schema.h), to be found by the federation's schema round. Such a job decodes, encodes
 * and has a stable digest, but while its schema is open the model (and distill.student)
 * is checked only for its syntax and classes, not for the number of inputs: that check
 * needs the one-hot layout and runs in fv_job_resolve_schema. A job whose schema is open
 * cannot be trained (fv_preproc, fv_dataset and the stats layout refuse an open schema);
 * an agent offered one refuses it.
 *
 * Errors: FV_EPARSE when the text is not shaped like a job (invalid JSON, duplicate key,
 * wrong JSON type, unknown key, missing required key; the embedded schema's own errors
 * keep fv_schema_from_json's code); FV_EINVAL when a value is not allowed (out of range,
 * an unknown word such as "secagg": "on", a rule across fields); FV_ETOOBIG past the size
 * cap. The sentence always names the field by its JSON path.
 */
#ifndef FV_JOB_H
#define FV_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"
#include "fv_optim.h"
#include "fv_schema.h"

typedef enum {
    FV_STRATEGY_FEDAVG = 0,
    FV_STRATEGY_FEDPROX = 1,
    FV_STRATEGY_FEDADAM = 2,
    FV_STRATEGY_FEDYOGI = 3,
} fv_strategy_kind_t;
const char *fv_strategy_name(fv_strategy_kind_t k);

typedef enum {
    FV_JOB_METRIC_ROC_AUC = 0,
    FV_JOB_METRIC_PR_AUC = 1,
    FV_JOB_METRIC_LOG_LOSS = 2,
    FV_JOB_METRIC_ACCURACY = 3, /* multi-class schemas only */
} fv_job_metric_t;

/* "cohort": the short cohort's policies (the defaults are 0). */
typedef enum { FV_JOB_JOIN_FAIL = 0, FV_JOB_JOIN_WAIT = 1 } fv_job_join_policy_t;
typedef enum { FV_JOB_LOST_CONTINUE = 0, FV_JOB_LOST_WAIT = 1 } fv_job_lost_policy_t;

/* The job's differential privacy (a "privacy" section; fv_privacy.h has the plan an
 * agent computes from it). */
typedef enum fv_privacy_mode {
    FV_PRIVACY_LOCAL = 1,       /* each agent runs DP-SGD with the whole noise */
    FV_PRIVACY_DISTRIBUTED = 2, /* each agent adds its share of discrete Gaussian noise to
                                   its quantized gradient sum, under SecAgg */
} fv_privacy_mode_t;
/* What a job releases about records besides the model updates, when declared outside the
 * privacy budget (the job's "outside_budget" list; the agent's policy must allow each). */
enum {
    FV_PRIV_REL_STATS = 1u << 0,   /* "stats": round 0's counts, column sums and squares */
    FV_PRIV_REL_METRICS = 1u << 1, /* "metrics": every round's validation histograms, loss
                                      sum, class counts and row counts */
    FV_PRIV_REL_EXPLAIN = 1u << 2, /* "explain": the explanation round's sums */
};

typedef struct fv_job {
    char name[65];
    fv_schema_t *schema; /* owned */
    char model[128];     /* "logreg" | "mlp:..." as written */
    uint32_t rounds;
    uint32_t local_epochs;
    uint32_t batch_size;
    fv_optim_cfg_t optim; /* kind, lr, momentum, beta1, beta2, eps; weight_decay = l2;
                           * prox_mu = strategy.mu for fedprox (else 0); prox_ref NULL:
                           * the trainer points it at the global model */
    struct {
        fv_strategy_kind_t kind;
        double mu;        /* fedprox; 0 for other kinds */
        double server_lr; /* fedadam / fedyogi; these four are 0 for other kinds */
        double beta1, beta2, tau;
    } strategy;
    struct {
        bool on;            /* false: "secagg": "off" (clip and bits still apply) */
        uint32_t threshold; /* 0 = auto */
        uint32_t neighbors; /* 0 = classic */
        float clip;
        uint32_t bits;
    } secagg;
    uint32_t min_agents;
    struct {
        uint64_t join_ms, train_ms, secagg_phase_ms;
    } deadlines;
    struct {
        fv_job_metric_t metric;
        uint32_t patience;
        double min_delta;
    } early_stopping;
    double validation_fraction;
    uint32_t hist_bins;
    uint64_t seed;
    double max_update_norm; /* > 0: the L2 bound of the weighted update block; 0: absent */
    struct {
        bool on;               /* "validation" present: validated training/distill rounds */
        uint32_t max_failures; /* failed proofs before an agent is excluded (1..1000) */
    } validation;
    struct {
        bool on;           /* false: no "distill" section (the other fields are zero) */
        char student[128]; /* "logreg" | "mlp:..." as written */
        double temperature;
        double alpha;
        uint32_t rounds;
        uint32_t local_epochs;
        struct {
            fv_job_metric_t metric;
            uint32_t patience;
            double min_delta;
        } early_stopping;
        bool quantize_int8;
    } distill;
    struct {
        fv_job_join_policy_t on_join_deadline; /* default (0): FAIL */
        fv_job_lost_policy_t on_member_lost;   /* default (0): CONTINUE */
    } cohort;
    bool explain; /* one explanation round after the last training/distill round */
    struct fv_job_privacy {
        bool on; /* false: no "privacy" section (the other fields are zero) */
        fv_privacy_mode_t mode;
        double epsilon;          /* target epsilon per record (> 0), or 0 when
                                  * noise_multiplier is given instead */
        double noise_multiplier; /* sigma (> 0), or 0 when epsilon is given */
        double delta;            /* (0, 0.1] */
        double clip;             /* per-row gradient L2 bound C (> 0) */
        double sample_rate;      /* Poisson rate q in (0, 1]; 0 = local mode's default,
                                  * batch_size / the agent's training rows; required in
                                  * distributed mode */
        uint32_t min_honest;     /* distributed: h (1..min_agents); 0 = min_agents */
        uint32_t outside_budget; /* FV_PRIV_REL_* bits: releases declared outside the budget */
    } privacy;
} fv_job_t;

/* Parses and validates; `origin` (a file name, or "job" for bytes from the network)
 * prefixes every diagnostic. */
int fv_job_from_json(const char *origin, const char *json, size_t len, fv_job_t **ret,
                     fv_diag_t *d);
/* A spec FILE's text made into a spec fv_job_from_json takes: full-line // comments
 * blanked, a string "schema" replaced by the schema object of that file (its path
 * relative to base_dir; NULL or "." = the working directory), or, when schema_path is not
 * NULL, "schema" (whatever the spec holds, or nothing) replaced by the schema in the file
 * schema_path (relative to the working directory, as given on a command line). Only the
 * JSON shape is checked here, and the schema file in full (fv_schema_from_json, its
 * errors naming that file); the job's fields are fv_job_from_json's. *ret_json (malloc'd,
 * NUL-terminated) is compact JSON, keys in the order written. origin prefixes messages. */
int fv_job_expand(const char *origin, const char *text, size_t len, const char *base_dir,
                  const char *schema_path, char **ret_json, size_t *ret_len, fv_diag_t *d);
/* fv_job_expand of the file at path; base_dir is the file's directory. */
int fv_job_file_expand(const char *path, const char *schema_path, char **ret_json, size_t *ret_len,
                       fv_diag_t *d);
/* fv_job_file_expand(path, NULL), then fv_job_from_json with origin path. */
int fv_job_load(const char *path, fv_job_t **ret, fv_diag_t *d);
/* Canonical JSON of the job, every key written (defaults included) in a fixed order, so
 * two parties holding the same job hold the same bytes; *ret_json malloc'd, NUL-terminated.
 * Compact, reals with 17 significant digits (float fields as the shortest decimal that
 * narrows back to the same float); "strategy" holds only its kind's keys, "secagg" is
 * "off" or the full object, "distill" appears only when on. from_json of it gives an equal job with
 * the same bytes. FV_EINVAL for a NULL job or schema, FV_ENOMEM. */
int fv_job_to_json(const fv_job_t *job, char **ret_json, size_t *ret_len);
/* SHA-256 of the canonical JSON: the job's identity on the wire and in the logs. */
int fv_job_digest(const fv_job_t *job, uint8_t ret[32]);
void fv_job_free(fv_job_t *job); /* NULL-safe */

/* A copy of `open` (borrowed) with `closed` (borrowed; copied) as its schema, checked in
 * full, the model's inputs included, as if the job had been written with it. closed must
 * refine the job's schema: the same column names in the same order, every fixed column
 * unchanged (type and categories), every open column closed ("categories": "open" ->
 * categorical; "type": "open" -> numeric or categorical), the same target, classes and
 * positive label, and unknown_category "other" when the job's schema was open. Else
 * FV_EINVAL with a sentence naming the column. Works on a closed job too (then closed
 * must equal its schema's layout). *ret: caller frees (fv_job_free). */
int fv_job_resolve_schema(const fv_job_t *open, const fv_schema_t *closed, fv_job_t **ret,
                          fv_diag_t *d);

/* The highest round number of a job. Round 0 is the stats round, 1..rounds the training
 * rounds; with a "distill" section the distillation rounds are numbered rounds+1 ..
 * rounds+distill.rounds, also when early stopping ended training before round `rounds`;
 * with "explain" the explanation round is the one after those (rounds+distill.rounds+1),
 * also when early stopping ended a phase early; so a round number alone tells its kind
 * and never repeats within a job. */
uint64_t fv_job_last_round(const fv_job_t *job);

/* The SecAgg threshold and neighbour count this job uses for a cohort of n agents (after
 * the auto rules: k = n-1 when neighbors is 0, t = floor(2(k+1)/3)+1 when threshold is
 * 0), or FV_EINVAL with a sentence when n does not fit the spec (n < 3, n < min_agents,
 * explicit k not even in 2..n-2, explicit t not in 2t > k+1, t <= k+1, SecAgg off), or
 * FV_EOVERFLOW when n * (2^bits-1) >= 2^32. ret_* written only on success. */
int fv_job_secagg_for(const fv_job_t *job, uint32_t n, uint32_t *ret_threshold,
                      uint32_t *ret_neighbors, fv_diag_t *d);

#endif
