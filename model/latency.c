/* latency.c - in-process scoring latency of a network (fv_latency.h). */
#include "fv_latency.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "fv_error.h"

#define LAT_WARMUP 5

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds per call of `batch` rows (t: FV_LATENCY_MAX_CALLS slots of scratch). */
static int time_batch(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t batch,
                      double budget_s, float *out, double *t, double *ret_median, size_t *ret_calls)
{
    size_t nf = fv_mlp_arch(m)->n_in, calls = 0, row = 0;
    double start = now_s();
    for (size_t i = 0; i < LAT_WARMUP + FV_LATENCY_MAX_CALLS; i++) {
        const float *xb = x + row * nf;
        row = batch == 1 ? (row + 1) % FV_LATENCY_BIG_BATCH : 0;
        double t0 = now_s();
        int r = fv_mlp_predict(m, ws, xb, batch, out);
        double t1 = now_s();
        if (r != 0)
            return r;
        if (i < LAT_WARMUP)
            continue;
        t[calls++] = t1 - t0;
        if (calls >= FV_LATENCY_MIN_CALLS && t1 - start > budget_s)
            break;
    }
    qsort(t, calls, sizeof *t, cmp_double);
    *ret_median = calls % 2 ? t[calls / 2] : 0.5 * (t[calls / 2 - 1] + t[calls / 2]);
    *ret_calls = calls;
    return 0;
}

int fv_mlp_latency(const fv_mlp_t *m, const float *x, double budget_s, fv_latency_t *ret)
{
    if (m == NULL || x == NULL || ret == NULL || !(budget_s > 0))
        return FV_EINVAL;
    fv_mlp_ws_t *ws = NULL;
    size_t n_out = fv_mlp_arch(m)->n_out;
    float *out = malloc(FV_LATENCY_BIG_BATCH * n_out * sizeof *out);
    double *t = malloc(FV_LATENCY_MAX_CALLS * sizeof *t), med1 = 0, medb = 0;
    size_t c1 = 0, cb = 0;
    int r = FV_ENOMEM;
    if (out != NULL && t != NULL && (r = fv_mlp_ws_new(m, FV_LATENCY_BIG_BATCH, &ws)) == 0 &&
        (r = time_batch(m, ws, x, 1, budget_s, out, t, &med1, &c1)) == 0 &&
        (r = time_batch(m, ws, x, FV_LATENCY_BIG_BATCH, budget_s, out, t, &medb, &cb)) == 0) {
        ret->batch1_us = med1 * 1e6;
        ret->batch1024_us = medb * 1e6;
        ret->calls1 = c1;
        ret->calls1024 = cb;
    }
    fv_mlp_ws_free(ws);
    free(out);
    free(t);
    return r;
}

void fv_latency_rows(float *x, size_t n, size_t n_in, unsigned long long seed)
{
    uint64_t s = seed ? seed : 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n * n_in; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t v = s * 0x2545f4914f6cdd1dull;
        x[i] = (float)((double)(v >> 40) * 0x1p-24 * 4.0 - 2.0);
    }
}
