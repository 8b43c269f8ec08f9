/* route_window.c - the router's sliding window (route-int.h): per model slot, the last
 * window_ms of outcomes as a ring of FV__ROUTE_RING buckets, each with counts and a
 * latency histogram over fv_route_hist_bounds_us.
 *
 * Invariants: the window is the bucket of the newest epoch and the FV__ROUTE_RING - 1
 * before it; a bucket whose epoch left the window is zero (rotation clears the buckets of
 * every epoch it passes, all of them after a gap of a whole window or more). A bucket's
 * n equals the sum of its histogram, and over counts the requests above the window's
 * over_us, so the threshold decision (p99 over T) is exact while the reported p99 is
 * rounded up to a histogram bound.
 *
 * Threading: none of its own; route.c calls it under the router's lock. Cost: add and
 * totals are O(FV__ROUTE_RING) at most (plus a binary search over the bounds); the p99
 * merges the histograms (FV__ROUTE_RING x FV__ROUTE_HIST_SLOTS) and is called only to
 * report one.
 */
#include <string.h>

#include "route-int.h"

/* 1 us .. 60 s: 1-1.2-1.5-2-2.5-3-4-5-6-8 per decade (integers below 10 us). */
const uint64_t fv_route_hist_bounds_us[FV_ROUTE_HIST_N] = {
    1,        2,        3,        4,       5,        6,        8,        10,       12,
    15,       20,       25,       30,      40,       50,       60,       80,       100,
    120,      150,      200,      250,     300,      400,      500,      600,      800,
    1000,     1200,     1500,     2000,    2500,     3000,     4000,     5000,     6000,
    8000,     10000,    12000,    15000,   20000,    25000,    30000,    40000,    50000,
    60000,    80000,    100000,   120000,  150000,   200000,   250000,   300000,   400000,
    500000,   600000,   800000,   1000000, 1200000,  1500000,  2000000,  2500000,  3000000,
    4000000,  5000000,  6000000,  8000000, 10000000, 12000000, 15000000, 20000000, 25000000,
    30000000, 40000000, 50000000, 60000000};

static size_t hist_index(uint64_t us)
{
    size_t lo = 0, hi = FV_ROUTE_HIST_N; /* the first bound >= us, or N (overflow) */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (fv_route_hist_bounds_us[mid] < us)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void fv__route_window_clear(fv__route_window_t *w)
{
    memset(w->b, 0, sizeof w->b);
}

void fv__route_window_rotate(fv__route_window_t *w, uint64_t epoch)
{
    if (epoch <= w->epoch)
        return;
    if (epoch - w->epoch >= FV__ROUTE_RING) {
        fv__route_window_clear(w);
    } else {
        for (uint64_t e = w->epoch + 1; e <= epoch; e++)
            memset(&w->b[e % FV__ROUTE_RING], 0, sizeof w->b[0]);
    }
    w->epoch = epoch;
}

void fv__route_window_add(fv__route_window_t *w, uint64_t lat_us, bool failed, bool missed)
{
    fv__route_bucket_t *b = &w->b[w->epoch % FV__ROUTE_RING];
    b->hist[hist_index(lat_us)]++;
    b->n++;
    b->failed += failed;
    b->missed += missed;
    b->over += w->over_us && lat_us > w->over_us;
    if (lat_us > b->max_us)
        b->max_us = lat_us;
}

fv__route_totals_t fv__route_window_totals(const fv__route_window_t *w)
{
    fv__route_totals_t t = {0, 0, 0, 0};
    for (size_t i = 0; i < FV__ROUTE_RING; i++) {
        t.n += w->b[i].n;
        t.failed += w->b[i].failed;
        t.missed += w->b[i].missed;
        t.over += w->b[i].over;
    }
    return t;
}

static uint64_t p99_rank(uint64_t n)
{
    return (99 * n + 99) / 100; /* ceil(0.99 n), 1-based */
}

/* The window's p99 is over its slot's threshold (exactly: see the design note). */
bool fv__route_window_p99_over(const fv__route_window_t *w, fv__route_totals_t t)
{
    return w->over_us && t.n > 0 && t.n - t.over < p99_rank(t.n);
}

/* The reported p99: the upper bound of the bucket of rank ceil(0.99 n); 0 if empty. */
uint64_t fv__route_window_p99(const fv__route_window_t *w)
{
    uint64_t merged[FV__ROUTE_HIST_SLOTS] = {0}, n = 0, max_us = 0;
    for (size_t i = 0; i < FV__ROUTE_RING; i++) {
        for (size_t k = 0; k < FV__ROUTE_HIST_SLOTS; k++)
            merged[k] += w->b[i].hist[k];
        n += w->b[i].n;
        if (w->b[i].max_us > max_us)
            max_us = w->b[i].max_us;
    }
    if (n == 0)
        return 0;
    uint64_t rank = p99_rank(n), cum = 0;
    for (size_t k = 0; k < FV_ROUTE_HIST_N; k++) {
        cum += merged[k];
        if (cum >= rank)
            return fv_route_hist_bounds_us[k];
    }
    return max_us;
}
