/* coord_loopstat.c - how long the loop's callbacks into the daemon run, in thread CPU time.
 *
 * Every callback libuv runs into the coordinator's code is bracketed by
 * coord__loopstat_begin(c, name) and coord__loopstat_end(c): the agent port's and the
 * admin port's fv_conn callbacks (coord_main.c, coord_admin.c), the housekeeping tick and
 * the signals (coord_main.c), the after-work callback of the thread pool (coord_distill.c)
 * and the metrics endpoint's (prom_http.c, through fv_prom_server_set_probe). While one of them
 * runs, the loop serves nobody else; issue 14 asks that none take more than 5 ms.
 *
 * What is measured: CLOCK_THREAD_CPUTIME_ID (user + system time of the loop thread) at
 * entry and exit, two clock_gettime calls per callback. Thread CPU time, not wall time:
 * with agents and the coordinator sharing a few cores, wall time mostly measures
 * preemption. It does not count time the thread sleeps, so a wait for the disk in fsync
 * is not in it (the system time to issue the write is).
 *
 * Nesting: a measured callback may call another measured one (fv_conn_send_vec runs
 * on_vec_sent inside an on_msg; fv_server_stop runs every on_close inside a signal
 * handler); only the outermost is measured, under its own name, so each libuv callback
 * counts once.
 *
 * Windows: the figures are kept per window and handed out (and reset) by
 * coord__loopstat_take, which the round driver calls when a round ends (the round_done or
 * round_aborted log line, and the round's line of rounds.jsonl) and the job scheduler when
 * a job ends (job_done). A round's window is thus every callback since the previous
 * round ended. The callback that ends a round usually starts the next one as well: it is
 * split at the take, its part up to there counting in the round that ended (with the
 * unmasking, the decode, the model file and the commit), the rest in the next round's
 * window, so each part counts as one callback of its window.
 *
 * Threading: the loop thread only (c->loopstat belongs to it).
 */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "coord-int.h"

/* The loop thread's CPU time so far, in nanoseconds. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fold(struct coord_loopstat *ls, const char *name, uint64_t ns)
{
    ls->n_cb++;
    ls->total_ns += ns;
    if (ls->max_cb == NULL || ns > ls->max_ns) {
        ls->max_ns = ns;
        ls->max_cb = name;
    }
}

void coord__loopstat_begin(coord_t *c, const char *name)
{
    if (c == NULL)
        return;
    struct coord_loopstat *ls = &c->loopstat;
    if (ls->depth++ > 0)
        return; /* inside a measured callback: that one counts */
    ls->cb = name;
    ls->t0_ns = thread_cpu_ns();
}

void coord__loopstat_end(coord_t *c)
{
    if (c == NULL)
        return;
    struct coord_loopstat *ls = &c->loopstat;
    if (ls->depth == 0 || --ls->depth > 0)
        return;
    fold(ls, ls->cb, thread_cpu_ns() - ls->t0_ns);
    ls->cb = NULL;
}

/* Milliseconds, rounded to the microsecond. */
static double ms_of(uint64_t ns)
{
    return round((double)ns / 1e3) / 1e3;
}

json_t *coord__loopstat_take(coord_t *c)
{
    struct coord_loopstat *ls = &c->loopstat;
    if (ls->depth > 0) {
        /* the callback in progress: its part so far is this window's, the rest the next's */
        uint64_t now = thread_cpu_ns();
        fold(ls, ls->cb, now - ls->t0_ns);
        ls->t0_ns = now;
    }
    json_t *o = json_pack("{s:f,s:s?,s:I,s:f}", "loop_max_cpu_ms", ms_of(ls->max_ns), "loop_max_cb",
                          ls->max_cb, "loop_cb_count", (json_int_t)ls->n_cb, "loop_cpu_ms",
                          ms_of(ls->total_ns));
    if (c->metrics.loop_max != NULL)
        fv_prom_observe(c->metrics.loop_max, NULL, (double)ls->max_ns / 1e9);
    ls->max_ns = ls->total_ns = ls->n_cb = 0;
    ls->max_cb = NULL;
    return o;
}
