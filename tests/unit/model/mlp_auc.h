/* mlp_auc.h - test helper shared by the model tests: a network's ROC AUC on n rows
 * (one workspace of n rows, fv_mlp_predict, fv_metrics_roc_auc; any failure fails the test). */
#ifndef FV_TEST_MLP_AUC_H
#define FV_TEST_MLP_AUC_H

#include <stdlib.h>

#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_test.h"

static inline double mlp_test_auc(const fv_mlp_t *m, const float *x, const int32_t *y, size_t n)
{
    fv_mlp_ws_t *ws = NULL;
    float *p = malloc(n * sizeof *p);
    double auc;
    CHECK(p != NULL);
    CHECK_OK(fv_mlp_ws_new(m, n, &ws), NULL);
    CHECK_OK(fv_mlp_predict(m, ws, x, n, p), NULL);
    CHECK_OK(fv_metrics_roc_auc(p, y, n, &auc), NULL);
    fv_mlp_ws_free(ws);
    free(p);
    return auc;
}

#endif
