/* fv_latency.h - how long a network takes to score, measured in-process.
 *
 * Used where a report must state scoring latency next to the model it describes: the
 * coordinator's compression report after distillation and `fedvault distill`. The
 * network alone is timed (fv_mlp_predict on rows that are already encoded): a student
 * shares its teacher's schema and preprocessing, so that part of the cost is the same
 * for both and is measured separately by `fedvault bench predict`.
 *
 * Method: per batch size, LAT_WARMUP untimed calls, then calls timed one by one with
 * CLOCK_MONOTONIC until at least FV_LATENCY_MIN_CALLS were made and budget_s seconds
 * have passed (or FV_LATENCY_MAX_CALLS); the median per call is reported. Batch-1 calls
 * walk through the rows so the cache sees different rows. One thread (the caller's).
 */
#ifndef FV_LATENCY_H
#define FV_LATENCY_H

#include <stddef.h>

#include "fv_mlp.h"

#define FV_LATENCY_BIG_BATCH 1024
#define FV_LATENCY_MIN_CALLS 31
#define FV_LATENCY_MAX_CALLS 5001

typedef struct fv_latency {
    double batch1_us, batch1024_us; /* median microseconds per call */
    size_t calls1, calls1024;       /* timed calls behind each median */
} fv_latency_t;

/* x: FV_LATENCY_BIG_BATCH rows of m's n_in features (borrowed). budget_s > 0: the time
 * after which each batch size stops once it has FV_LATENCY_MIN_CALLS calls.
 * FV_EINVAL for NULL or a budget that is not positive, FV_ENOMEM, or fv_mlp_predict's
 * error. */
int fv_mlp_latency(const fv_mlp_t *m, const float *x, double budget_s, fv_latency_t *ret);

/* Fills x (n x n_in) with a fixed pseudo-random pattern in [-2, 2) (xorshift64* from
 * seed): rows to time a network on when no data is at hand (the coordinator). */
void fv_latency_rows(float *x, size_t n, size_t n_in, unsigned long long seed);

#endif
