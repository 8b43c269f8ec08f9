/* route-int.h - agent/serve's private parts of the router: the sliding window
 * (route_window.c), used by route.c. Not for use outside agent/serve. */
#ifndef FV_ROUTE_INT_H
#define FV_ROUTE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "fv_route.h"

#define FV__ROUTE_RING 10                          /* buckets per window */
#define FV__ROUTE_HIST_SLOTS (FV_ROUTE_HIST_N + 1) /* + the overflow bucket */

typedef struct fv__route_bucket {
    uint64_t hist[FV__ROUTE_HIST_SLOTS];
    uint64_t n, failed, missed, over, max_us;
} fv__route_bucket_t;

/* One slot's window: FV__ROUTE_RING buckets; bucket k holds the outcomes of the clock
 * epoch e (now / bucket length) with e % FV__ROUTE_RING == k. */
typedef struct fv__route_window {
    fv__route_bucket_t b[FV__ROUTE_RING];
    uint64_t epoch;   /* of the newest bucket */
    uint64_t over_us; /* the slot's threshold for fv__route_bucket_t.over (0 = none) */
} fv__route_window_t;

typedef struct fv__route_totals {
    uint64_t n, failed, missed, over;
} fv__route_totals_t;

void fv__route_window_clear(fv__route_window_t *w);
/* Moves the window to epoch (clearing the buckets of the epochs passed); an older epoch
 * is taken as the current one. */
void fv__route_window_rotate(fv__route_window_t *w, uint64_t epoch);
/* Into the current bucket. */
void fv__route_window_add(fv__route_window_t *w, uint64_t lat_us, bool failed, bool missed);
fv__route_totals_t fv__route_window_totals(const fv__route_window_t *w);
/* Exactly: fewer than ceil(0.99 n) of the n requests took at most over_us (false when
 * over_us is 0 or the window is empty). */
bool fv__route_window_p99_over(const fv__route_window_t *w, fv__route_totals_t t);
/* The reported p99: the upper bound of the histogram bucket of rank ceil(0.99 n), the
 * largest latency in the overflow bucket; 0 for an empty window. */
uint64_t fv__route_window_p99(const fv__route_window_t *w);

#endif
