/* latency.c - in-process scoring latency of a network (fv_latency.h has the method). */
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

/* `calls` calls of `batch` rows; batch 1 walks through the rows from *row. */
static int run_calls(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t batch, size_t calls,
                     size_t *row, float *out)
{
    size_t nf = fv_mlp_arch(m)->n_in;
    for (size_t i = 0; i < calls; i++) {
        int r = fv_mlp_predict(m, ws, x + *row * nf, batch, out);
        if (r != 0)
            return r;
        if (batch == 1)
            *row = (*row + 1) % FV_LATENCY_BIG_BATCH;
    }
    return 0;
}

/* Median seconds per call of `batch` rows, timed in blocks (fv_latency.h; t:
 * FV_LATENCY_MAX_BLOCKS slots of scratch). */
static int time_batch(const fv_mlp_t *m, fv_mlp_ws_t *ws, const float *x, size_t batch,
                      double budget_s, float *out, double *t, double *ret_median,
                      size_t *ret_blocks, size_t *ret_per_block)
{
    size_t row = 0, k = 1, blocks = 0;
    int r = run_calls(m, ws, x, batch, LAT_WARMUP, &row, out);
    /* K: doubled until a block lasts FV_LATENCY_BLOCK_US, the faster of two tries (one
     * descheduled block would otherwise leave K too small); these blocks are not kept. */
    for (; r == 0; k *= 2) {
        double dt = 0;
        for (int try = 0; try < 2 && r == 0; try++) {
            double t0 = now_s();
            r = run_calls(m, ws, x, batch, k, &row, out);
            double t1 = now_s() - t0;
            dt = try == 0 || t1 < dt ? t1 : dt;
        }
        if (dt >= FV_LATENCY_BLOCK_US * 1e-6 || k >= FV_LATENCY_MAX_PER_BLOCK)
            break;
    }
    double start = now_s();
    while (r == 0 && blocks < FV_LATENCY_MAX_BLOCKS) {
        double t0 = now_s();
        r = run_calls(m, ws, x, batch, k, &row, out);
        double t1 = now_s();
        t[blocks++] = (t1 - t0) / (double)k;
        if (blocks >= FV_LATENCY_MIN_BLOCKS && t1 - start > budget_s)
            break;
    }
    if (r != 0)
        return r;
    qsort(t, blocks, sizeof *t, cmp_double);
    *ret_median = blocks % 2 ? t[blocks / 2] : 0.5 * (t[blocks / 2 - 1] + t[blocks / 2]);
    *ret_blocks = blocks;
    *ret_per_block = k;
    return 0;
}

int fv_mlp_latency(const fv_mlp_t *m, const float *x, double budget_s, fv_latency_t *ret)
{
    if (m == NULL || x == NULL || ret == NULL || !(budget_s > 0))
        return FV_EINVAL;
    fv_mlp_ws_t *ws = NULL;
    size_t n_out = fv_mlp_arch(m)->n_out;
    float *out = malloc(FV_LATENCY_BIG_BATCH * n_out * sizeof *out);
    double *t = malloc(FV_LATENCY_MAX_BLOCKS * sizeof *t), med1 = 0, medb = 0;
    size_t b1 = 0, bb = 0, k1 = 0, kb = 0;
    int r = FV_ENOMEM;
    if (out != NULL && t != NULL && (r = fv_mlp_ws_new(m, FV_LATENCY_BIG_BATCH, &ws)) == 0 &&
        (r = time_batch(m, ws, x, 1, budget_s, out, t, &med1, &b1, &k1)) == 0 &&
        (r = time_batch(m, ws, x, FV_LATENCY_BIG_BATCH, budget_s, out, t, &medb, &bb, &kb)) == 0) {
        ret->batch1_us = med1 * 1e6;
        ret->batch1024_us = medb * 1e6;
        ret->calls1 = b1 * k1;
        ret->calls1024 = bb * kb;
        ret->blocks1 = b1;
        ret->blocks1024 = bb;
        ret->per_block1 = k1;
        ret->per_block1024 = kb;
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
