/* cli_metrics.c - the metric set `fedvault train` and `fedvault eval` report, and its
 * JSON form. Binary tasks get ROC AUC, PR AUC, log loss, accuracy at 0.5, recall at 1 %
 * and 5 % false-positive rate, and the histogram (1,000-bin) ROC/PR AUC that federated
 * evaluation will compute from securely summed counts; multi-class tasks get accuracy and
 * log loss. A metric that is undefined on the data (one class only) is JSON null.
 */
#include "cli-metrics.h"

#include <math.h>
#include <stdlib.h>

#include "fv_metrics.h"

/* Takes v by pointer: in ok_or_nan(f(&v), v) C would leave open whether v is read before
 * or after f writes it; the pointer is dereferenced only once the call has run. */
static double ok_or_nan(int r, const double *v)
{
    return r == 0 ? *v : NAN;
}

int fv_cli_metrics_compute(const float *prob, const int32_t *y, size_t n, size_t n_out,
                           fv_cli_metrics_t *ret)
{
    fv_cli_metrics_t m;
    double v = 0;
    m.n = n;
    m.n_pos = 0;
    m.binary = (n_out == 1);
    m.roc_auc = m.pr_auc = m.hist_roc_auc = m.hist_pr_auc = NAN;
    m.recall_at_1pct_fpr = m.recall_at_5pct_fpr = NAN;
    m.log_loss = m.accuracy = NAN;
    if (m.binary) {
        for (size_t i = 0; i < n; i++)
            m.n_pos += (y[i] == 1);
        m.roc_auc = ok_or_nan(fv_metrics_roc_auc(prob, y, n, &v), &v);
        m.pr_auc = ok_or_nan(fv_metrics_pr_auc(prob, y, n, &v), &v);
        m.log_loss = ok_or_nan(fv_metrics_log_loss(prob, y, n, &v), &v);
        m.accuracy = ok_or_nan(fv_metrics_accuracy(prob, y, n, 0.5, &v), &v);
        m.recall_at_1pct_fpr = ok_or_nan(fv_metrics_recall_at_fpr(prob, y, n, 0.01, &v), &v);
        m.recall_at_5pct_fpr = ok_or_nan(fv_metrics_recall_at_fpr(prob, y, n, 0.05, &v), &v);
        uint64_t *pos = calloc(FV_CLI_HIST_BINS, sizeof *pos);
        uint64_t *neg = calloc(FV_CLI_HIST_BINS, sizeof *neg);
        if (pos == NULL || neg == NULL) {
            free(pos);
            free(neg);
            return -1;
        }
        fv_metrics_hist_add(prob, y, n, FV_CLI_HIST_BINS, pos, neg);
        m.hist_roc_auc = ok_or_nan(fv_metrics_hist_roc_auc(pos, neg, FV_CLI_HIST_BINS, &v), &v);
        m.hist_pr_auc = ok_or_nan(fv_metrics_hist_pr_auc(pos, neg, FV_CLI_HIST_BINS, &v), &v);
        free(pos);
        free(neg);
    } else {
        m.accuracy = ok_or_nan(fv_metrics_mc_accuracy(prob, n, n_out, y, &v), &v);
        m.log_loss = ok_or_nan(fv_metrics_mc_log_loss(prob, n, n_out, y, &v), &v);
    }
    *ret = m;
    return 0;
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *fv_cli_metrics_json(const fv_cli_metrics_t *m)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "rows", json_integer((json_int_t)m->n));
    if (m->binary)
        json_object_set_new(o, "positives", json_integer((json_int_t)m->n_pos));
    json_object_set_new(o, "roc_auc", num_or_null(m->roc_auc));
    json_object_set_new(o, "pr_auc", num_or_null(m->pr_auc));
    json_object_set_new(o, "log_loss", num_or_null(m->log_loss));
    json_object_set_new(o, "accuracy", num_or_null(m->accuracy));
    if (m->binary) {
        json_object_set_new(o, "recall_at_1pct_fpr", num_or_null(m->recall_at_1pct_fpr));
        json_object_set_new(o, "recall_at_5pct_fpr", num_or_null(m->recall_at_5pct_fpr));
        json_object_set_new(o, "hist_roc_auc", num_or_null(m->hist_roc_auc));
        json_object_set_new(o, "hist_pr_auc", num_or_null(m->hist_pr_auc));
    }
    return o;
}

void fv_cli_metrics_print(FILE *f, const char *title, const fv_cli_metrics_t *m)
{
    fprintf(f, "%s (%zu rows", title, m->n);
    if (m->binary)
        fprintf(f, ", %zu positive", m->n_pos);
    fprintf(f, "):\n");
    if (m->binary) {
        fprintf(f, "  ROC AUC            %.4f   (from 1000-bin histograms: %.4f)\n", m->roc_auc,
                m->hist_roc_auc);
        fprintf(f, "  PR AUC             %.4f   (from 1000-bin histograms: %.4f)\n", m->pr_auc,
                m->hist_pr_auc);
        fprintf(f, "  log loss           %.4f\n", m->log_loss);
        fprintf(f, "  accuracy @0.5      %.4f\n", m->accuracy);
        fprintf(f, "  recall @1%% FPR     %.4f\n", m->recall_at_1pct_fpr);
        fprintf(f, "  recall @5%% FPR     %.4f\n", m->recall_at_5pct_fpr);
    } else {
        fprintf(f, "  accuracy           %.4f\n", m->accuracy);
        fprintf(f, "  log loss           %.4f\n", m->log_loss);
    }
}
