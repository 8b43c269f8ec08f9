/* coord_explain.c - the explain round's record: what the coordinator keeps of a job's
 * global explanation (protocols/fv_round_explain.h).
 *
 * The round itself is the round engine's (coord_round.c starts it with the final training
 * model, coord_finish.c ends it); its kind has no apply, so it changes no model, no
 * version and no release. What it leaves is one object,
 *   {"rows": R, "clipped_rows": K, "method": "linear" | "integrated-gradients",
 *    "cap": 64, "model": "<sha256 of the explained parameters' stored file>",
 *    "columns": [{"name": "...", "mean_abs": x}, ...]}     (schema order)
 * stored as the round's metrics {"explanation": {...}} in the state (so `job show --json`
 * and the report read it with the other rounds) and written as the round's rounds.jsonl
 * line with the usual job, round, kind, agents and secs. mean_abs is in logit units (the
 * mean over the cohort's validation rows of min(|contribution|, cap)).
 *
 * Threads: the loop thread. Ownership: the JSON returned is the caller's.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "coord-int.h"
#include "fv_round_explain.h"

const char *coord__explain_model_sha(const coord_t *c)
{
    if (coord__distilling(c))
        return c->distill.teacher_sha;
    return c->job->early_stopping.patience == 0 ? c->model.global_sha : c->model.best_sha;
}

void coord__explain_record(coord_t *c, const fv_round_explanation_t *e, json_t **ret_metrics,
                           json_t **ret_line)
{
    const fv_mlp_t *m = fv_cjob_explained(c->model.jm);
    bool linear = m != NULL && fv_mlp_arch(m)->n_hidden == 0;
    json_t *cols = json_array();
    for (size_t k = 0; k < e->n_columns; k++)
        json_array_append_new(cols, json_pack("{s:s,s:o}", "name",
                                              fv_schema_column_name(c->job->schema, e->column[k]),
                                              "mean_abs", coord__jnum(e->mean_abs[k])));
    json_t *ex = json_pack("{s:I,s:I,s:s,s:f,s:s,s:o}", "rows", (json_int_t)e->rows, "clipped_rows",
                           (json_int_t)e->clipped_rows, "method",
                           linear ? "linear" : "integrated-gradients", "cap", FV_ROUND_EXPLAIN_CAP,
                           "model", coord__explain_model_sha(c), "columns", cols);
    json_t *metrics = json_pack("{s:o}", "explanation", ex);
    json_t *line =
        json_pack("{s:s,s:I,s:s,s:I,s:f}", "job", c->run.job_hex, "round", (json_int_t)c->rnd.round,
                  "kind", coord__kind_name(c), "agents", (json_int_t)c->rnd.n_summands, "secs",
                  (double)(coord__now_ms(c) - c->rnd.t_round_start) / 1000.0);
    json_object_set(line, "explanation", ex);
    /* the log line: the three largest columns, not the whole list */
    size_t top[3] = {0, 0, 0}, n_top = 0;
    for (size_t k = 0; k < e->n_columns; k++) {
        size_t at = n_top < 3 ? n_top++ : 3;
        while (at > 0 && e->mean_abs[k] > e->mean_abs[top[at - 1]]) {
            if (at < 3)
                top[at] = top[at - 1];
            at--;
        }
        if (at < 3)
            top[at] = k;
    }
    json_t *tj = json_array();
    for (size_t i = 0; i < n_top; i++)
        json_array_append_new(
            tj, json_string(fv_schema_column_name(c->job->schema, e->column[top[i]])));
    coord_logj("info", "explained",
               json_pack("{s:s,s:I,s:I,s:I,s:o}", "job", c->run.job_hex, "round",
                         (json_int_t)c->rnd.round, "rows", (json_int_t)e->rows, "columns",
                         (json_int_t)e->n_columns, "top", tj));
    *ret_metrics = metrics;
    *ret_line = line;
}
