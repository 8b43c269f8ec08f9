/* fv_metrics.h - evaluation metrics, exact and from score histograms.
 *
 * Binary metrics take scores (higher = more positive; usually P(positive)) and labels
 * 0/1. Exact ROC AUC is the Mann-Whitney statistic with ties counted one half; PR AUC is
 * average precision (sum over distinct thresholds of (R_i - R_{i-1}) P_i, tied scores
 * forming one threshold), as scikit-learn defines it. Undefined cases (no positives or
 * no negatives) return FV_EEMPTY.
 *
 * Histogram metrics: each party bins its scores (in [0, 1]) into n_bins equal bins,
 * separately for positives and negatives; the counts can be summed across parties (under
 * secure aggregation) and the metrics computed from the sums alone, treating each bin as
 * one tied score. bin(s) = min(floor(s * n_bins), n_bins - 1), s clamped to [0, 1].
 */
#ifndef FV_METRICS_H
#define FV_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"

int fv_metrics_roc_auc(const float *score, const int32_t *y, size_t n, double *ret);
int fv_metrics_pr_auc(const float *score, const int32_t *y, size_t n, double *ret);
/* Mean binary cross-entropy of probabilities p, clipped to [1e-7, 1 - 1e-7]. */
int fv_metrics_log_loss(const float *p, const int32_t *y, size_t n, double *ret);
/* Fraction with (p >= threshold) == y. */
int fv_metrics_accuracy(const float *p, const int32_t *y, size_t n, double threshold, double *ret);
/* Highest recall (TPR) over thresholds whose false-positive rate is <= max_fpr. */
int fv_metrics_recall_at_fpr(const float *score, const int32_t *y, size_t n, double max_fpr,
                             double *ret);

/* Multi-class: prob is n x k, rows sum to 1. */
int fv_metrics_mc_accuracy(const float *prob, size_t n, size_t k, const int32_t *y, double *ret);
int fv_metrics_mc_log_loss(const float *prob, size_t n, size_t k, const int32_t *y, double *ret);

size_t fv_metrics_hist_bin(float score, size_t n_bins);
/* Adds n scores into pos[] / neg[] (n_bins each; not cleared first). */
void fv_metrics_hist_add(const float *score, const int32_t *y, size_t n, size_t n_bins,
                         uint64_t *pos, uint64_t *neg);
int fv_metrics_hist_roc_auc(const uint64_t *pos, const uint64_t *neg, size_t n_bins, double *ret);
int fv_metrics_hist_pr_auc(const uint64_t *pos, const uint64_t *neg, size_t n_bins, double *ret);

#endif
