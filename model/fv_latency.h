/* fv_latency.h - how long a network takes to score, measured in-process.
 *
 * Used where a report must state scoring latency next to the model it describes: the
 * coordinator's compression report after distillation and `fedvault distill`. The
 * network alone is timed (fv_mlp_predict on rows that are already encoded): a student
 * shares its teacher's schema and preprocessing, so that part of the cost is the same
 * for both and is measured separately by `fedvault bench predict`.
 *
 * Method: per batch size, LAT_WARMUP (5) untimed calls; then calls are timed in blocks
 * of K calls between two CLOCK_MONOTONIC reads, so the clock's own cost (tens of ns, as
 * long as a call of a small student) is spread over K calls. K is the smallest power of
 * two, at most FV_LATENCY_MAX_PER_BLOCK, for which a block lasts at least
 * FV_LATENCY_BLOCK_US microseconds (the faster of two tries; those blocks are not kept);
 * a batch that takes that long on its own is timed one call per block. Blocks are timed
 * until at least FV_LATENCY_MIN_BLOCKS were and budget_s seconds have passed (or
 * FV_LATENCY_MAX_BLOCKS); the median over the blocks of the time per call (block time /
 * K) is reported. Batch-1 calls walk through the rows, one row per call, so the cache
 * sees different rows. One thread (the caller's).
 */
#ifndef FV_LATENCY_H
#define FV_LATENCY_H

#include <stddef.h>

#include "fv_mlp.h"

#define FV_LATENCY_BIG_BATCH 1024
#define FV_LATENCY_BLOCK_US 20
#define FV_LATENCY_MAX_PER_BLOCK 65536
#define FV_LATENCY_MIN_BLOCKS 31
#define FV_LATENCY_MAX_BLOCKS 5001

typedef struct fv_latency {
    double batch1_us, batch1024_us;   /* median over the blocks of microseconds per call */
    size_t calls1, calls1024;         /* timed calls behind each median (blocks x per block) */
    size_t blocks1, blocks1024;       /* blocks, FV_LATENCY_MIN_BLOCKS..FV_LATENCY_MAX_BLOCKS */
    size_t per_block1, per_block1024; /* calls per block, 1..FV_LATENCY_MAX_PER_BLOCK */
} fv_latency_t;

/* x: FV_LATENCY_BIG_BATCH rows of m's n_in features (borrowed). budget_s > 0: the time
 * after which each batch size stops once it has FV_LATENCY_MIN_BLOCKS blocks.
 * FV_EINVAL for NULL or a budget that is not positive, FV_ENOMEM, or fv_mlp_predict's
 * error. */
int fv_mlp_latency(const fv_mlp_t *m, const float *x, double budget_s, fv_latency_t *ret);

/* Fills x (n x n_in) with a fixed pseudo-random pattern in [-2, 2) (xorshift64* from
 * seed): rows to time a network on when no data is at hand (the coordinator). */
void fv_latency_rows(float *x, size_t n, size_t n_in, unsigned long long seed);

#endif
