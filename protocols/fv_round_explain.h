/* fv_round_explain.h - the explanation round (kind 4, "explain"; protocols/round_explain.c):
 * a global explanation of the job's final training model, the mean absolute reason-code
 * contribution of every column over the cohort's validation rows, of which the coordinator
 * learns only the cohort's sum (no bank's own figures). One round, after the last training
 * round and after distillation (a job with "explain": true; fv_job.h).
 *
 * WHAT AN AGENT COMPUTES
 * The model is the job's final training model (FV_ROUND_NEEDS_FINAL, fv_round.h): the
 * teacher in a job that distils, else the model the coordinator names (and sent) in
 * ROUND_START; never the student. For each of its validation rows (n_val of them, the
 * features standardized with the job's global preprocessing) fv_explain_row
 * (model/fv_explain.h) gives a contribution per schema column: exact w * x for logistic
 * regression, integrated gradients with FV_ROUND_EXPLAIN_STEPS steps for an MLP; of the
 * logit for a binary model, of the predicted class's logit for a multi-class one. The
 * explained columns are the schema's numeric and categorical columns, in schema order (C
 * of them; fv_round_explain_columns): the target and ignored columns have none. Per row and
 * column a_j = min(|contribution_j|, FV_ROUND_EXPLAIN_CAP); the agent adds up, in double in
 * row order, sum_j = sum over its rows of a_j, and counts its rows and the rows with a
 * clipped column. A non-finite contribution fails the compute (the agent sits out).
 *
 * THE CAP: FV_ROUND_EXPLAIN_CAP = 64 logit units per row and column. A logit of 64 is a
 * probability within e^-64 of 0 or 1, so a column that moves one row's logit by more says
 * nothing more; the cap is what bounds each agent's addend, so that the sums cannot wrap
 * (below) and one bank moves a column's mean by at most 64 * its rows / the cohort's rows.
 * The decoded mean of a column with clipped rows is a lower bound; clipped_rows says how
 * many rows had one.
 *
 * SECAGG VECTOR (u32 words summed mod 2^32; dim = 2 + 8 C words):
 *   [rows: raw] [clipped rows: raw] [C x exact: sum_j]
 * raw and exact are fv_fed.h's encodings. raw: the count itself, at most FV_FED_RAW_MAX =
 * 65537 (an agent with more validation rows refuses to encode, FV_EOVERFLOW, as it does in
 * training rounds). exact: the fixed-point integer X = round(x * 2^32) (the scale: one
 * unit is 2^-32 logit), two's complement in 128 bits cut into 8 limbs of 16 bits.
 * Why the cohort's sum cannot wrap mod 2^32, for every job: one agent's column sum is
 * 0 <= x <= n_val * CAP <= 65537 * 64 < 2^22 (the cap, and the row cap), well inside the
 * exact encoding's |x| < 2^79; every word an agent adds is a limb < 2^16 or a count <=
 * 65537, and a round's contributors are at most FV_FED_MAX_AGENTS = 65535 (decode refuses
 * more), so each word's true sum is at most 65535 * 65537 = 2^32 - 1: the sum mod 2^32 is
 * the sum itself, and the limb sums recombine (in 128 bits) to the exact sum of the agents'
 * fixed-point integers, below 65535 * 2^54 < 2^70: exact.
 * Precision: each agent rounds its sum once, by at most 2^-33; the decoded column sum is
 * within n_agents * 2^-33 of the sum of the agents' double sums (and those within a
 * relative n_val * 2^-53 of the exact sum), so the mean is within n_agents * 2^-33 / rows
 * plus double rounding (tests/unit/protocols/test_round_explain.c checks exactly that).
 *
 * PLAIN VECTOR (a job with "secagg": "off"; float32, plain_n = 2 + C):
 *   [rows] [clipped rows] [C x sum_j]
 * The coordinator sees each agent's vector, so plain_check refuses (FV_EPEER, naming the
 * element) one that is not: every element finite and >= 0; rows and clipped rows whole
 * numbers, rows <= FV_FED_RAW_MAX, clipped rows <= rows; each column sum <= rows * CAP *
 * (1 + 2^-20) (float32 rounds an honest sum by a relative 2^-24 at most). Summed in
 * double. Precision: each agent's float32 rounding, relative 2^-24 of its sum.
 *
 * DECODE (the coordinator, the cohort's sum): n_summands in 1..FV_FED_MAX_AGENTS, rows >=
 * 1 (FV_EEMPTY: nothing to explain), clipped rows <= rows, and each column sum within
 * [-n_summands * 2^-32, rows * CAP * (1 + 2^-20)] (a sum outside cannot come from honest
 * agents: a malformed input under SecAgg; FV_EPEER, the round is refused and runs again).
 * mean_abs_j = max(sum_j, 0) / rows. The kind has no apply: the round changes no model,
 * no release and no student; the coordinator records the explanation (rounds.jsonl, the
 * round's metrics in the state).
 *
 * Pure (no I/O); a compute runs on a worker thread with one explainer of its own.
 */
#ifndef FV_ROUND_EXPLAIN_H
#define FV_ROUND_EXPLAIN_H

#include <stddef.h>

#include "fv_round.h"
#include "fv_schema.h"

#define FV_ROUND_EXPLAIN_CAP 64.0 /* logit units, per row and column */
#define FV_ROUND_EXPLAIN_STEPS 32 /* integrated-gradients steps (MLP) */

/* The explain kind's row (also in fv_round_kinds_default(); the object itself is named for
 * round_kinds.c's static table, whose initializer needs an address constant). */
const fv_round_kind_t *fv_round_kind_explain(void);
extern const fv_round_kind_t fv__round_kind_explain;

/* The explained columns of schema s: numeric and categorical columns in schema order.
 * cols (may be NULL) gets their schema indices (fv_schema_n_columns entries suffice);
 * returns their number. */
size_t fv_round_explain_columns(const fv_schema_t *s, size_t *cols);

/* Frees what an explanation owns (not the struct). */
void fv_round_explanation_close(fv_round_explanation_t *e);

#endif
