/* mlp_auc.h - test helpers shared by the model tests: a data set of n rows (data_t), and a
 * network's ROC AUC, accuracy (at 0.5) and mean loss on n rows (one workspace of n rows,
 * fv_mlp_predict or fv_mlp_loss; any failure fails the test). */
#ifndef FV_TEST_MLP_AUC_H
#define FV_TEST_MLP_AUC_H

#include <stdlib.h>

#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_test.h"

/* ROC AUC (auc != 0) or accuracy at 0.5 (auc == 0) of a binary network's scores. */
/* n rows of d float features and int32 labels, malloc'd (data_alloc), freed by data_free. */
typedef struct data {
    size_t n, d;
    float *x;
    int32_t *y;
} data_t;

static inline data_t data_alloc(size_t n, size_t d)
{
    data_t s = {n, d, malloc(n * d * sizeof(float)), malloc(n * sizeof(int32_t))};
    CHECK(s.x != NULL && s.y != NULL);
    return s;
}

static inline void data_free(data_t *s)
{
    free(s->x);
    free(s->y);
}

static inline double mlp_test_score_metric(const fv_mlp_t *m, const float *x, const int32_t *y,
                                           size_t n, int auc)
{
    fv_mlp_ws_t *ws = NULL;
    float *p = malloc(n * sizeof *p);
    double v;
    CHECK(p != NULL);
    CHECK_OK(fv_mlp_ws_new(m, n, &ws), NULL);
    CHECK_OK(fv_mlp_predict(m, ws, x, n, p), NULL);
    if (auc)
        CHECK_OK(fv_metrics_roc_auc(p, y, n, &v), NULL);
    else
        CHECK_OK(fv_metrics_accuracy(p, y, n, 0.5, &v), NULL);
    fv_mlp_ws_free(ws);
    free(p);
    return v;
}

static inline double mlp_test_auc(const fv_mlp_t *m, const float *x, const int32_t *y, size_t n)
{
    return mlp_test_score_metric(m, x, y, n, 1);
}

static inline double mlp_test_accuracy(const fv_mlp_t *m, const float *x, const int32_t *y,
                                       size_t n)
{
    return mlp_test_score_metric(m, x, y, n, 0);
}

/* Mean loss (fv_mlp_loss, no row weights) at pos_weight. */
static inline double mlp_test_loss(const fv_mlp_t *m, const float *x, const int32_t *y, size_t n,
                                   float pos_weight)
{
    fv_mlp_ws_t *ws = NULL;
    double l;
    CHECK_OK(fv_mlp_ws_new(m, n, &ws), NULL);
    CHECK_OK(fv_mlp_loss(m, ws, x, y, NULL, n, pos_weight, &l), NULL);
    fv_mlp_ws_free(ws);
    return l;
}

#endif
