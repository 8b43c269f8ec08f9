/* fv_report.h - a federated job's report as one self-contained HTML page.
 *
 * The coordinator builds the report's document (coordinator/coord_report.c, admin command
 * job.report) and renders it into the job's directory at the end of every job; `fedvault
 * job report ID --out F` renders the same document on the operator's machine. The page has
 * inline CSS and inline SVG only: no <script>, no URL, no font or image from anywhere, so it
 * opens offline and can be mailed or archived as one file. docs/report.md describes each
 * section and where its numbers come from.
 *
 * The document (JSON object; every member optional: an absent or mistyped one renders as
 * "not recorded", never as an error, since the document comes over the network):
 *   "fedvault_report": 1
 *   "generated": ISO-8601 UTC text
 *   "job": {"id","name","status","why","model","submitted","started","finished",
 *           "submitted_by","rounds_done","distill_rounds_done","rounds_failed",
 *           "final_version","student_version","secagg","task" ("binary"|"multiclass"),
 *           "rounds" (the spec's), "metric" (early stopping's)}
 *   "rounds": [{"round": N, "kind": "train"|"distill"|"explain", "metrics": {...}}]
 *           the job's completed rounds with their global metrics (the keys of
 *           rounds.jsonl: val_roc_auc, val_pr_auc, val_log_loss, val_accuracy,
 *           teacher_*, int8_*; null for a metric that was undefined)
 *   "final": {"round": N, "label": text, "hist_pos": [B counts], "hist_neg": [B counts]}
 *           the summed secure score histograms the final model was evaluated with, or
 *           {"absent": "why"}
 *   "compression": the distilled student's report (coord_distill.c), or null
 *   "cohorts": [{"round","attempt","kind","status","why","cohort":[names],
 *                "contributors":[names]}]  every round row, aborted ones included
 *   "agents": [{"name","data_sha256","rows"}]  data fingerprints of the job's agents
 *   "audit": {"records","job_events":{event: count},"verified","head_checked","reason"}
 *           or {"absent": "why"}
 *   "explanation": {"round": N, "rows": R, "columns": [{"name","mean_abs"}]} or
 *           {"absent": "why"}
 *   "privacy": {"mode","epsilon","noise_multiplier","delta","clip","sample_rate",
 *           "min_honest","outside_budget":[words]} (the spec's section; unset keys null),
 *           or null: the job has no differential privacy
 *   "schema": {"source": "discovered"|"given"|"open", "sha256" (of the schema's canonical
 *           JSON; absent while open), "version", "contributors": [names], "refused":
 *           [{"agent","category"}] (discovered only), "unknown_category", "columns":
 *           [{"name","type","categories": count or "open"}]}: the data schema the job
 *           trained on (coord_report.c), or null
 *
 * Charts carry what they plot, so a test can compare the page with the records: each
 * chart's <svg class="chart"> has data-x0/x1/y0/y1 (the data window) and data-px0/px1
 * (left/right pixel) and data-py0/py1 (bottom/top pixel) of its plot area; a round
 * curve is <g class="series" data-series=KEY data-x="[rounds]" data-values="[values,
 * null for a gap]"> holding polylines (one per run of defined values) and a circle per
 * point; a ROC or PR curve is <g class="series" data-series="roc"|"pr"
 * data-points="[[x,y],...]">; a bar is <rect class="bar" data-name=COLUMN
 * data-value=X>. Curves from histograms: thresholds from the highest non-empty bin down,
 * ROC from (0,0) to (1,1) through (FP/N, TP/P) after each non-empty bin, PR through
 * (TP/P, TP/(TP+FP)) at the same thresholds.
 *
 * Every text from the document (job, agent and column names, reasons: peer- and
 * operator-controlled) is HTML-escaped; control characters become U+FFFD.
 *
 * Pure: no I/O, no clock. Thread-safe (no shared state).
 */
#ifndef FV_REPORT_H
#define FV_REPORT_H

#include <stddef.h>

#include <jansson.h>

#include "fv_error.h"

#define FV_REPORT_VERSION 1
#define FV_REPORT_MAX_BYTES ((size_t)64 << 20) /* the page's cap (FV_ETOOBIG beyond) */
#define FV_REPORT_MAX_ROUNDS 100000            /* rounds plotted and listed */
#define FV_REPORT_MAX_BINS 100000              /* histogram bins (the job's cap) */
#define FV_REPORT_MAX_BARS 40                  /* explanation columns drawn as bars */
#define FV_REPORT_MAX_COLUMNS 10000            /* schema columns listed */

/* Renders doc (borrowed) as an HTML page: *ret malloc'd, NUL-terminated, *ret_len bytes
 * without the NUL, written only on success. FV_EINVAL when doc is not an object,
 * FV_ETOOBIG beyond FV_REPORT_MAX_BYTES, FV_ENOMEM. */
int fv_report_html(const json_t *doc, char **ret, size_t *ret_len, fv_diag_t *d);

#endif
