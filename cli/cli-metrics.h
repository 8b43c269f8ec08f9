/* cli-metrics.h - the metric set reported by `fedvault train` and `fedvault eval`. */
#ifndef FV_CLI_METRICS_H
#define FV_CLI_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define FV_CLI_HIST_BINS 1000

typedef struct fv_cli_metrics {
    size_t n, n_pos;
    bool binary;
    double roc_auc, pr_auc, log_loss, accuracy;
    double recall_at_1pct_fpr, recall_at_5pct_fpr;
    double hist_roc_auc, hist_pr_auc;
} fv_cli_metrics_t;

/* prob: n x n_out (n_out 1 = binary). Undefined metrics are NaN. -1 on out of memory. */
int fv_cli_metrics_compute(const float *prob, const int32_t *y, size_t n, size_t n_out,
                           fv_cli_metrics_t *ret);
/* New JSON object (NaN -> null); caller owns the reference. */
json_t *fv_cli_metrics_json(const fv_cli_metrics_t *m);
void fv_cli_metrics_print(FILE *f, const char *title, const fv_cli_metrics_t *m);

#endif
