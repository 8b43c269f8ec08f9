/* metrics.c - evaluation metrics, exact (from scores) and from score histograms.
 *
 * One walk serves both: the exact metrics sort the scores and walk groups of tied scores;
 * the histogram metrics walk bins, each bin a group of tied scores. So when every score has
 * a bin to itself, the histogram and exact results are the same numbers.
 *
 * ROC AUC is the Mann-Whitney statistic: walking groups in increasing score,
 *     U += pos_g * (neg_below + neg_g / 2),   AUC = U / (P * N),
 * i.e. the probability that a random positive outscores a random negative, ties counted
 * one half. PR AUC is average precision as scikit-learn's average_precision_score defines
 * it: walking groups in decreasing score (one threshold per group),
 *     AP += (pos_g / P) * tp / (tp + fp)
 * which is sum (R_i - R_{i-1}) P_i with no interpolation. Groups with no positives add
 * nothing to either sum. Counts and sums are doubles: exact up to 2^53, so U is exact while
 * P * N < 2^53 (about 9e7 rows per class); beyond that it is correct to double rounding.
 *
 * Sorting: qsort on (score, index) pairs, ties broken by index, so the order is a total,
 * deterministic order (qsort is not stable). Only the grouping matters for the result.
 *
 * Errors: NULL pointers, labels other than 0/1, n_bins == 0, bad thresholds -> FV_EINVAL;
 * NaN in scores or probabilities -> FV_ENUMERIC; nothing to average (n == 0) or a binary
 * ranking metric without both classes -> FV_EEMPTY (fv_metrics.h: "Undefined cases (no
 * positives or no negatives) return FV_EEMPTY"; we apply that to ROC AUC, PR AUC and
 * recall at FPR alike). Histogram counts arrive summed from several parties; if their
 * total overflows uint64 the input is hostile or corrupt: FV_ERANGE. Out-parameters are
 * written only on success.
 *
 * Pure functions; the exact ones allocate one scratch array of n pairs (FV_ENOMEM).
 */
#include "fv_metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

/* log loss clipping, fv_metrics.h */
#define FV_METRICS_EPS 1e-7

typedef struct {
    float score;
    int32_t y;
    size_t idx;
} scored_t;

static int scored_cmp(const void *pa, const void *pb)
{
    const scored_t *a = pa, *b = pb;
    if (a->score < b->score)
        return -1;
    if (a->score > b->score)
        return 1;
    /* equal scores (NaN was rejected before sorting; -0 == +0 is one group) */
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Validates labels and scores, counts classes. */
static int check_binary(const float *score, const int32_t *y, size_t n, size_t *ret_pos,
                        size_t *ret_neg)
{
    if (n > 0 && (score == NULL || y == NULL))
        return FV_EINVAL;
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (y[i] != 0 && y[i] != 1)
            return FV_EINVAL;
        if (isnan(score[i]))
            return FV_ENUMERIC;
        pos += (size_t)y[i];
    }
    *ret_pos = pos;
    *ret_neg = n - pos;
    return 0;
}

/* Scores sorted ascending, with both classes present. Caller frees *ret. */
static int sort_binary(const float *score, const int32_t *y, size_t n, scored_t **ret,
                       size_t *ret_pos, size_t *ret_neg)
{
    size_t pos = 0, neg = 0;
    int err = check_binary(score, y, n, &pos, &neg);
    if (err < 0)
        return err;
    if (pos == 0 || neg == 0)
        return FV_EEMPTY;
    if (n > SIZE_MAX / sizeof(scored_t))
        return FV_ENOMEM;
    scored_t *s = malloc(n * sizeof *s);
    if (s == NULL)
        return FV_ENOMEM;
    for (size_t i = 0; i < n; i++)
        s[i] = (scored_t){.score = score[i], .y = y[i], .idx = i};
    qsort(s, n, sizeof *s, scored_cmp);
    *ret = s;
    *ret_pos = pos;
    *ret_neg = neg;
    return 0;
}

/* Group [i, end) of equal scores starting at i in an ascending array; counts by class. */
static size_t group_fwd(const scored_t *s, size_t n, size_t i, double *pos_g, double *neg_g)
{
    size_t p = 0, q = 0, j = i;
    for (; j < n && s[j].score == s[i].score; j++) {
        if (s[j].y)
            p++;
        else
            q++;
    }
    *pos_g = (double)p;
    *neg_g = (double)q;
    return j;
}

/* Group [start, i) of equal scores ending at i (exclusive) in an ascending array. */
static size_t group_back(const scored_t *s, size_t i, double *pos_g, double *neg_g)
{
    size_t p = 0, q = 0, j = i;
    for (; j > 0 && s[j - 1].score == s[i - 1].score; j--) {
        if (s[j - 1].y)
            p++;
        else
            q++;
    }
    *pos_g = (double)p;
    *neg_g = (double)q;
    return j;
}

/* ---- the two walks ------------------------------------------------------------------- */

typedef struct {
    double u;         /* Mann-Whitney U, ties 1/2 */
    double neg_below; /* negatives in groups already walked (lower scores) */
} roc_walk_t;

/* Groups in increasing score. */
static void roc_step(roc_walk_t *w, double pos_g, double neg_g)
{
    w->u += pos_g * (w->neg_below + 0.5 * neg_g);
    w->neg_below += neg_g;
}

typedef struct {
    double ap;
    double tp, fp;
    double n_pos;
} pr_walk_t;

/* Groups in decreasing score: one threshold per group. */
static void pr_step(pr_walk_t *w, double pos_g, double neg_g)
{
    w->tp += pos_g;
    w->fp += neg_g;
    if (pos_g > 0.0)
        w->ap += (pos_g / w->n_pos) * (w->tp / (w->tp + w->fp));
}

/* ---- exact binary metrics ------------------------------------------------------------ */

int fv_metrics_roc_auc(const float *score, const int32_t *y, size_t n, double *ret)
{
    scored_t *s = NULL;
    size_t pos, neg;
    if (ret == NULL)
        return FV_EINVAL;
    int err = sort_binary(score, y, n, &s, &pos, &neg);
    if (err < 0)
        return err;
    roc_walk_t w = {0};
    for (size_t i = 0; i < n;) {
        double pg, ng;
        i = group_fwd(s, n, i, &pg, &ng);
        roc_step(&w, pg, ng);
    }
    free(s);
    *ret = w.u / ((double)pos * (double)neg);
    return 0;
}

int fv_metrics_pr_auc(const float *score, const int32_t *y, size_t n, double *ret)
{
    scored_t *s = NULL;
    size_t pos, neg;
    if (ret == NULL)
        return FV_EINVAL;
    int err = sort_binary(score, y, n, &s, &pos, &neg);
    if (err < 0)
        return err;
    pr_walk_t w = {.n_pos = (double)pos};
    for (size_t i = n; i > 0;) {
        double pg, ng;
        i = group_back(s, i, &pg, &ng);
        pr_step(&w, pg, ng);
    }
    free(s);
    *ret = w.ap;
    return 0;
}

int fv_metrics_recall_at_fpr(const float *score, const int32_t *y, size_t n, double max_fpr,
                             double *ret)
{
    scored_t *s = NULL;
    size_t pos, neg;
    if (ret == NULL || !(max_fpr >= 0.0 && max_fpr <= 1.0))
        return FV_EINVAL;
    int err = sort_binary(score, y, n, &s, &pos, &neg);
    if (err < 0)
        return err;
    /* Thresholds from +inf (nothing flagged: TPR = FPR = 0, always allowed) down through
     * each distinct score. TP and FP only grow as the threshold falls, so the answer is the
     * TPR at the last threshold whose FPR is still allowed. FPR is computed as fp / N, as
     * roc_curve does, so max_fpr = 0.1 with N = 10 admits exactly one false positive. */
    double tp = 0.0, fp = 0.0, best = 0.0;
    for (size_t i = n; i > 0;) {
        double pg, ng;
        i = group_back(s, i, &pg, &ng);
        tp += pg;
        fp += ng;
        if (fp / (double)neg > max_fpr)
            break;
        best = tp / (double)pos;
    }
    free(s);
    *ret = best;
    return 0;
}

int fv_metrics_log_loss(const float *p, const int32_t *y, size_t n, double *ret)
{
    size_t pos, neg;
    if (ret == NULL)
        return FV_EINVAL;
    int err = check_binary(p, y, n, &pos, &neg);
    if (err < 0)
        return err;
    if (n == 0)
        return FV_EEMPTY;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double q = (double)p[i];
        q = q < FV_METRICS_EPS ? FV_METRICS_EPS : q;
        q = q > 1.0 - FV_METRICS_EPS ? 1.0 - FV_METRICS_EPS : q;
        sum -= y[i] ? log(q) : log1p(-q);
    }
    *ret = sum / (double)n;
    return 0;
}

int fv_metrics_accuracy(const float *p, const int32_t *y, size_t n, double threshold, double *ret)
{
    size_t pos, neg;
    if (ret == NULL || isnan(threshold))
        return FV_EINVAL;
    int err = check_binary(p, y, n, &pos, &neg);
    if (err < 0)
        return err;
    if (n == 0)
        return FV_EEMPTY;
    size_t hit = 0;
    for (size_t i = 0; i < n; i++)
        hit += ((double)p[i] >= threshold) == (y[i] == 1);
    *ret = (double)hit / (double)n;
    return 0;
}

/* ---- multi-class --------------------------------------------------------------------- */

static int check_mc(const float *prob, size_t n, size_t k, const int32_t *y)
{
    if (k == 0 || (n > 0 && (prob == NULL || y == NULL)) || n > SIZE_MAX / k)
        return FV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (y[i] < 0 || (uint64_t)y[i] >= (uint64_t)k)
            return FV_EINVAL;
        for (size_t j = 0; j < k; j++) {
            if (isnan(prob[i * k + j]))
                return FV_ENUMERIC;
        }
    }
    return n == 0 ? FV_EEMPTY : 0;
}

int fv_metrics_mc_accuracy(const float *prob, size_t n, size_t k, const int32_t *y, double *ret)
{
    if (ret == NULL)
        return FV_EINVAL;
    int err = check_mc(prob, n, k, y);
    if (err < 0)
        return err;
    size_t hit = 0;
    for (size_t i = 0; i < n; i++) {
        const float *row = prob + i * k;
        size_t best = 0;
        for (size_t j = 1; j < k; j++) {
            if (row[j] > row[best]) /* strict: ties go to the lowest index */
                best = j;
        }
        hit += best == (size_t)y[i];
    }
    *ret = (double)hit / (double)n;
    return 0;
}

/* Mean of -log(prob[i][y[i]]), the true class' probability clipped to [1e-7, 1 - 1e-7].
 * Rows are taken as given (the header says they sum to 1); unlike scikit-learn's log_loss
 * we do not clip and renormalize the whole row, which differs only when some entry of the
 * row is below 1e-7 or the row does not sum to 1. */
int fv_metrics_mc_log_loss(const float *prob, size_t n, size_t k, const int32_t *y, double *ret)
{
    if (ret == NULL)
        return FV_EINVAL;
    int err = check_mc(prob, n, k, y);
    if (err < 0)
        return err;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double q = (double)prob[i * k + (size_t)y[i]];
        q = q < FV_METRICS_EPS ? FV_METRICS_EPS : q;
        q = q > 1.0 - FV_METRICS_EPS ? 1.0 - FV_METRICS_EPS : q;
        sum -= log(q);
    }
    *ret = sum / (double)n;
    return 0;
}

/* ---- histograms ---------------------------------------------------------------------- */

/* s * n_bins is computed in double: a float has 24 significant bits, so the product is
 * exact for n_bins < 2^29 and floor() puts a score on a bin edge into the upper bin.
 * NaN cannot be reported from here (the function returns a bin), so it goes to bin 0;
 * the exact metrics reject NaN. n_bins == 0 is a programmer error; it returns 0. */
size_t fv_metrics_hist_bin(float score, size_t n_bins)
{
    if (n_bins == 0 || !(score > 0.0f))
        return 0;
    if (score >= 1.0f)
        return n_bins - 1;
    size_t b = (size_t)floor((double)score * (double)n_bins);
    return b < n_bins ? b : n_bins - 1;
}

/* Labels: 1 counts as positive, anything else as negative; the function cannot report an
 * error, so validate labels before (the exact metrics return FV_EINVAL for them). */
void fv_metrics_hist_add(const float *score, const int32_t *y, size_t n, size_t n_bins,
                         uint64_t *pos, uint64_t *neg)
{
    if (n_bins == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        size_t b = fv_metrics_hist_bin(score[i], n_bins);
        if (y[i] == 1)
            pos[b]++;
        else
            neg[b]++;
    }
}

static int hist_totals(const uint64_t *pos, const uint64_t *neg, size_t n_bins, uint64_t *ret_pos,
                       uint64_t *ret_neg)
{
    if (pos == NULL || neg == NULL || n_bins == 0)
        return FV_EINVAL;
    uint64_t tp = 0, tn = 0;
    for (size_t b = 0; b < n_bins; b++) {
        if (__builtin_add_overflow(tp, pos[b], &tp) || __builtin_add_overflow(tn, neg[b], &tn))
            return FV_ERANGE;
    }
    if (tp == 0 || tn == 0)
        return FV_EEMPTY;
    *ret_pos = tp;
    *ret_neg = tn;
    return 0;
}

int fv_metrics_hist_roc_auc(const uint64_t *pos, const uint64_t *neg, size_t n_bins, double *ret)
{
    uint64_t tp, tn;
    if (ret == NULL)
        return FV_EINVAL;
    int err = hist_totals(pos, neg, n_bins, &tp, &tn);
    if (err < 0)
        return err;
    roc_walk_t w = {0};
    for (size_t b = 0; b < n_bins; b++)
        roc_step(&w, (double)pos[b], (double)neg[b]);
    *ret = w.u / ((double)tp * (double)tn);
    return 0;
}

int fv_metrics_hist_pr_auc(const uint64_t *pos, const uint64_t *neg, size_t n_bins, double *ret)
{
    uint64_t tp, tn;
    if (ret == NULL)
        return FV_EINVAL;
    int err = hist_totals(pos, neg, n_bins, &tp, &tn);
    if (err < 0)
        return err;
    pr_walk_t w = {.n_pos = (double)tp};
    for (size_t b = n_bins; b > 0; b--)
        pr_step(&w, (double)pos[b - 1], (double)neg[b - 1]);
    *ret = w.ap;
    return 0;
}
