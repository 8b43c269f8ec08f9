/* route.c - fedvault-serve's router: gray release, the stable model's latency breaker and
 * the canary guard (the contract, with the routing rules, is fv_route.h).
 *
 * Purpose. Decide per request which resident model answers it, learn from the outcomes,
 * and change slots (promote, rollback, automatic rollback, breaker transitions) without
 * ever failing or dropping a request. Pure logic over an injected clock: no I/O, no
 * logging; state changes leave as events.
 *
 * State (all under r->mu, one mutex): the three slots and the previous stable (each
 * holding one reference), one sliding window per slot, the breaker (state, opened_at,
 * misses in a row, good probes, probe in flight, probe_gen), canary_percent and shadow,
 * the keyless split counter, the stats counters.
 *
 * Invariants.
 *   - A slot pointer is non-NULL only while the slot holds a reference to it; a pick
 *     takes its references under the lock, while the slot's reference keeps refs > 0, so
 *     a reference is never taken on a model being freed.
 *   - The last reference may be dropped on any thread (a worker's fv_route_done, the
 *     loop's fv_route_set): refs is atomic, the decrement is acq_rel, and whoever brings
 *     it to 0 calls free_fn, exactly once. Drops found under the lock are queued and done
 *     after unlocking, so free_fn never runs under the router's lock.
 *   - A window holds only outcomes of the model now in its slot: it is cleared when the
 *     slot's model changes, and fv_route_done records an outcome only if pick.model is
 *     still the slot's model (the pick's reference rules out a freed-and-reused pointer).
 *   - Windows (route_window.c): the ring is rotated to the clock on every pick, done and
 *     stats, so a window holds the last window_ms (to a tenth). Each counts requests,
 *     failures, deadline misses and requests over the slot's threshold (stable:
 *     p99_budget_us, canary: canary_max_p99_us; set once at fv_route_new), and keeps a
 *     latency histogram (fv_route_hist_bounds_us).
 *   - "p99 over T" is decided exactly from the over-threshold counts: fewer than
 *     ceil(0.99 n) of the n requests took at most T. The histogram only reports a p99
 *     (the upper bound of the bucket of rank ceil(0.99 n)), which is then also over T.
 *   - The clock is read under the lock, so the times the router acts on never go back
 *     (given a monotonic clock).
 *   - Breaker: probe_inflight only in half-open; probe_gen changes at every transition, so
 *     the outcome of a probe from an earlier half-open period is not taken as the probe.
 *
 * Events. Changes are queued in a per-call batch under the lock; before unlocking the call
 * takes consecutive tickets (ev_next); after unlocking it waits (ev_mu, ev_cv) until every
 * earlier ticket was delivered (ev_done), calls on_event for its own, and advances
 * ev_done. Hence: delivered after the lock, in the order the changes happened, on the
 * thread that caused them, never concurrently, and delivered when the call returns. A
 * callback that changed state would wait for its own ticket: fv_route.h forbids that.
 *
 * Threading: any function from any thread. Picks and dones are O(1): a bounded rotation
 * and sums over the ring's buckets; histograms are merged only to report a p99 (an
 * event's sentence, stats).
 *
 * Ownership: the router owns one reference per slot and for previous; a pick owns one
 * per non-NULL model pointer in it until fv_route_done. fv_route_free drops the router's.
 */
#include "fv_route.h"
#include "route-int.h"

#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_LABELS FV_RELEASE_N_LABELS
#define MAX_EVENTS 8 /* per call: done can make 3, set / promote 2 */
#define MAX_UNREF 6  /* per call: done drops 3 + an auto-rolled canary */
#define WINDOW_MS_MAX ((uint64_t)86400000)
#define COOLDOWN_MS_MAX ((uint64_t)86400000)

static const char *const label_names[N_LABELS] = {"stable", "canary", "backup"};

/* What one call found under the lock and handles after it. */
typedef struct batch {
    fv_route_event_t ev[MAX_EVENTS];
    size_t n_ev;
    fv_route_model_t *unref[MAX_UNREF];
    size_t n_unref;
} batch_t;

struct fv_route {
    pthread_mutex_t mu;
    fv_route_cfg_t cfg; /* canary_percent and shadow change at run time */
    uint64_t (*now_us)(void *arg);
    void *clock_arg;
    void (*on_event)(void *arg, const fv_route_event_t *ev);
    void *event_arg;
    uint64_t bucket_us;

    fv_route_model_t *slot[N_LABELS];
    fv_route_model_t *previous;
    fv__route_window_t win[N_LABELS];

    fv_breaker_state_t breaker;
    uint64_t opened_at_us;
    uint32_t misses_in_row, good_probes;
    bool probe_inflight;
    uint64_t probe_gen;
    uint64_t keyless_seq;

    uint64_t requests[N_LABELS], failed[N_LABELS], missed[N_LABELS];
    uint64_t fallbacks, shadow_scored, shadow_diverged, breaker_opened, auto_rollbacks;

    uint64_t ev_next; /* under mu: the next ticket */
    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cv;
    uint64_t ev_done; /* under ev_mu: tickets below are delivered */
};

/* ---- models ---- */

void fv_route_model_init(fv_route_model_t *m, void *obj, void (*free_fn)(void *obj),
                         const char *version, const char *sha256)
{
    m->obj = obj;
    m->free_fn = free_fn;
    snprintf(m->version, sizeof m->version, "%s", version ? version : "");
    snprintf(m->sha256, sizeof m->sha256, "%s", sha256 ? sha256 : "");
    atomic_init(&m->refs, 1);
}

fv_route_model_t *fv_route_model_ref(fv_route_model_t *m)
{
    if (m)
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void fv_route_model_unref(fv_route_model_t *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        if (m->free_fn)
            m->free_fn(m->obj);
    }
}

/* ---- config ---- */

void fv_route_cfg_default(fv_route_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->canary_percent = 0;
    c->shadow = false;
    c->window_ms = 10000;
    c->min_requests = 20;
    c->p99_budget_us = 0;
    c->deadline_us = 0;
    c->consecutive_misses = 5;
    c->cooldown_ms = 5000;
    c->probes = 3;
    c->canary_max_error_rate = 0.05;
    c->canary_max_p99_us = 0;
}

const char *fv_breaker_state_name(fv_breaker_state_t s)
{
    switch (s) {
    case FV_BREAKER_CLOSED:
        return "closed";
    case FV_BREAKER_OPEN:
        return "open";
    case FV_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "?";
}

static bool percent_ok(double p)
{
    return isfinite(p) && p >= 0 && p <= 100;
}

static int cfg_check(const fv_route_cfg_t *c, fv_diag_t *d)
{
    if (!percent_ok(c->canary_percent))
        return fv_diag_set(d, FV_EINVAL, "route config: canary_percent %g out of range (0..100)",
                           c->canary_percent);
    if (c->window_ms < FV__ROUTE_RING || c->window_ms > WINDOW_MS_MAX)
        return fv_diag_set(d, FV_EINVAL, "route config: window_ms %llu out of range (%d..%llu)",
                           (unsigned long long)c->window_ms, FV__ROUTE_RING,
                           (unsigned long long)WINDOW_MS_MAX);
    if (c->min_requests < 1)
        return fv_diag_set(d, FV_EINVAL, "route config: min_requests must be at least 1");
    if (c->cooldown_ms > COOLDOWN_MS_MAX)
        return fv_diag_set(d, FV_EINVAL, "route config: cooldown_ms %llu over %llu",
                           (unsigned long long)c->cooldown_ms, (unsigned long long)COOLDOWN_MS_MAX);
    if (c->probes < 1)
        return fv_diag_set(d, FV_EINVAL, "route config: probes must be at least 1");
    if (!(c->canary_max_error_rate >= 0 && c->canary_max_error_rate <= 1))
        return fv_diag_set(d, FV_EINVAL,
                           "route config: canary_max_error_rate %g out of range (0..1)",
                           c->canary_max_error_rate);
    return 0;
}

/* ---- batches: events and drops, handled after the lock ---- */

static const char *version_of(const fv_route_model_t *m)
{
    return m ? m->version : "";
}

static fv_route_event_t *ev_push(batch_t *b, fv_route_event_kind_t kind, fv_release_label_t label,
                                 const fv_route_model_t *m, const fv_route_model_t *prev,
                                 uint64_t now)
{
    /* MAX_EVENTS bounds what one call can cause (see its definition). */
    fv_route_event_t *ev = &b->ev[b->n_ev < MAX_EVENTS ? b->n_ev++ : MAX_EVENTS - 1];
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->label = label;
    snprintf(ev->version, sizeof ev->version, "%s", version_of(m));
    snprintf(ev->prev_version, sizeof ev->prev_version, "%s", version_of(prev));
    ev->at_us = now;
    return ev;
}

static void ev_why(fv_route_event_t *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ev_why(fv_route_event_t *ev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->why, sizeof ev->why, fmt, ap);
    va_end(ap);
}

static void drop_later(batch_t *b, fv_route_model_t *m)
{
    if (m && b->n_unref < MAX_UNREF)
        b->unref[b->n_unref++] = m;
}

/* Called with r->mu held; releases it, drops the queued references, delivers the events
 * in ticket order. */
static void unlock_and_finish(fv_route_t *r, batch_t *b)
{
    size_t n_ev = r->on_event ? b->n_ev : 0;
    uint64_t first = r->ev_next;
    r->ev_next += n_ev;
    pthread_mutex_unlock(&r->mu);

    for (size_t i = 0; i < b->n_unref; i++)
        fv_route_model_unref(b->unref[i]);
    if (n_ev == 0)
        return;
    pthread_mutex_lock(&r->ev_mu);
    while (r->ev_done != first)
        pthread_cond_wait(&r->ev_cv, &r->ev_mu);
    pthread_mutex_unlock(&r->ev_mu);
    for (size_t i = 0; i < n_ev; i++)
        r->on_event(r->event_arg, &b->ev[i]);
    pthread_mutex_lock(&r->ev_mu);
    r->ev_done += n_ev;
    pthread_cond_broadcast(&r->ev_cv);
    pthread_mutex_unlock(&r->ev_mu);
}

/* ---- breaker and guard (under the lock) ---- */

static void breaker_to(fv_route_t *r, batch_t *b, fv_breaker_state_t to, uint64_t now,
                       const char *why)
{
    fv_route_event_t *ev =
        ev_push(b, FV_ROUTE_EV_BREAKER, FV_RELEASE_STABLE, r->slot[FV_RELEASE_STABLE], NULL, now);
    ev->from = r->breaker;
    ev->to = to;
    snprintf(ev->why, sizeof ev->why, "%s", why);
    r->breaker = to;
    fv__route_window_clear(&r->win[FV_RELEASE_STABLE]);
    r->misses_in_row = 0;
    r->good_probes = 0;
    r->probe_inflight = false;
    r->probe_gen++;
    if (to == FV_BREAKER_OPEN) {
        r->opened_at_us = now;
        r->breaker_opened++;
    }
}

/* The stable slot got another model: a fresh window, the breaker closed. */
static void stable_changed(fv_route_t *r, batch_t *b, uint64_t now)
{
    fv__route_window_clear(&r->win[FV_RELEASE_STABLE]);
    if (r->breaker != FV_BREAKER_CLOSED) {
        char why[160];
        snprintf(why, sizeof why, "a new stable model (version '%s')",
                 version_of(r->slot[FV_RELEASE_STABLE]));
        breaker_to(r, b, FV_BREAKER_CLOSED, now, why);
    }
    r->misses_in_row = 0;
}

/* Rotates the windows to now; an open breaker whose cooldown has passed turns half-open. */
static void tick(fv_route_t *r, batch_t *b, uint64_t now, bool passive)
{
    for (size_t l = 0; l < N_LABELS; l++)
        fv__route_window_rotate(&r->win[l], now / r->bucket_us);
    if (!passive && r->breaker == FV_BREAKER_OPEN &&
        now >= r->opened_at_us + r->cfg.cooldown_ms * 1000) {
        char why[160];
        snprintf(why, sizeof why, "cooldown of %llu ms elapsed",
                 (unsigned long long)r->cfg.cooldown_ms);
        breaker_to(r, b, FV_BREAKER_HALF_OPEN, now, why);
    }
}

static void breaker_judge(fv_route_t *r, batch_t *b, const fv_route_pick_t *pick, uint64_t lat_us,
                          bool failed, bool missed, uint64_t now)
{
    const fv_route_cfg_t *c = &r->cfg;
    char why[160];
    if (pick->probe) {
        if (r->breaker != FV_BREAKER_HALF_OPEN || !r->probe_inflight ||
            pick->probe_gen != r->probe_gen)
            return; /* a probe of an earlier half-open period */
        r->probe_inflight = false;
        if (failed || missed || (c->p99_budget_us && lat_us > c->p99_budget_us)) {
            if (failed)
                snprintf(why, sizeof why, "half-open probe failed");
            else
                snprintf(why, sizeof why,
                         "half-open probe took %llu us (budget %llu us, deadline %llu us)",
                         (unsigned long long)lat_us, (unsigned long long)c->p99_budget_us,
                         (unsigned long long)c->deadline_us);
            breaker_to(r, b, FV_BREAKER_OPEN, now, why);
        } else if (++r->good_probes >= c->probes) {
            snprintf(why, sizeof why, "%u good probes in a row", (unsigned)r->good_probes);
            breaker_to(r, b, FV_BREAKER_CLOSED, now, why);
        }
        return;
    }
    if (r->breaker != FV_BREAKER_CLOSED)
        return; /* stable answering without a backup: recorded, not judged */
    if (!missed) {
        r->misses_in_row = 0;
    } else if (c->consecutive_misses && ++r->misses_in_row >= c->consecutive_misses) {
        snprintf(why, sizeof why, "%u requests in a row missed the deadline of %llu us",
                 (unsigned)r->misses_in_row, (unsigned long long)c->deadline_us);
        breaker_to(r, b, FV_BREAKER_OPEN, now, why);
        return;
    }
    const fv__route_window_t *w = &r->win[FV_RELEASE_STABLE];
    fv__route_totals_t t = fv__route_window_totals(w);
    if (t.n >= c->min_requests && fv__route_window_p99_over(w, t)) {
        snprintf(why, sizeof why, "p99 %llu us over budget %llu us (%llu requests)",
                 (unsigned long long)fv__route_window_p99(w), (unsigned long long)c->p99_budget_us,
                 (unsigned long long)t.n);
        breaker_to(r, b, FV_BREAKER_OPEN, now, why);
    }
}

static void canary_guard(fv_route_t *r, batch_t *b, uint64_t now)
{
    const fv_route_cfg_t *c = &r->cfg;
    fv__route_window_t *w = &r->win[FV_RELEASE_CANARY];
    fv__route_totals_t t = fv__route_window_totals(w);
    if (t.n < c->min_requests)
        return;
    bool bad_rate =
        c->canary_max_error_rate < 1 && (double)t.failed / (double)t.n > c->canary_max_error_rate;
    bool slow = fv__route_window_p99_over(w, t);
    if (!bad_rate && !slow)
        return;
    fv_route_model_t *m = r->slot[FV_RELEASE_CANARY];
    fv_route_event_t *ev = ev_push(b, FV_ROUTE_EV_AUTO_ROLLBACK, FV_RELEASE_CANARY, m, NULL, now);
    if (bad_rate)
        ev_why(ev, "error rate %.3f over %.3f (%llu of %llu requests failed); canary_percent 0",
               (double)t.failed / (double)t.n, c->canary_max_error_rate,
               (unsigned long long)t.failed, (unsigned long long)t.n);
    else
        ev_why(ev, "p99 %llu us over %llu us (%llu requests); canary_percent 0",
               (unsigned long long)fv__route_window_p99(w),
               (unsigned long long)c->canary_max_p99_us, (unsigned long long)t.n);
    r->slot[FV_RELEASE_CANARY] = NULL;
    drop_later(b, m);
    fv__route_window_clear(w);
    r->cfg.canary_percent = 0;
    r->auto_rollbacks++;
}

/* ---- lifecycle ---- */

int fv_route_new(const fv_route_cfg_t *cfg, uint64_t (*now_us)(void *arg), void *clock_arg,
                 void (*on_event)(void *arg, const fv_route_event_t *ev), void *event_arg,
                 fv_route_t **ret, fv_diag_t *d)
{
    int rc = cfg_check(cfg, d);
    if (rc < 0)
        return rc;
    if (!now_us)
        return fv_diag_set(d, FV_EINVAL, "route: no clock");
    fv_route_t *r = calloc(1, sizeof *r);
    if (!r)
        return fv_diag_set(d, FV_ENOMEM, "route: out of memory");
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return fv_diag_set(d, FV_ENOMEM, "route: pthread_mutex_init failed");
    }
    if (pthread_mutex_init(&r->ev_mu, NULL) != 0) {
        pthread_mutex_destroy(&r->mu);
        free(r);
        return fv_diag_set(d, FV_ENOMEM, "route: pthread_mutex_init failed");
    }
    if (pthread_cond_init(&r->ev_cv, NULL) != 0) {
        pthread_mutex_destroy(&r->ev_mu);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return fv_diag_set(d, FV_ENOMEM, "route: pthread_cond_init failed");
    }
    r->cfg = *cfg;
    r->now_us = now_us;
    r->clock_arg = clock_arg;
    r->on_event = on_event;
    r->event_arg = event_arg;
    r->bucket_us = cfg->window_ms * 1000 / FV__ROUTE_RING;
    r->win[FV_RELEASE_STABLE].over_us = cfg->p99_budget_us;
    r->win[FV_RELEASE_CANARY].over_us = cfg->canary_max_p99_us;
    r->breaker = FV_BREAKER_CLOSED;
    *ret = r;
    return 0;
}

void fv_route_free(fv_route_t *r)
{
    if (!r)
        return;
    for (size_t l = 0; l < N_LABELS; l++)
        fv_route_model_unref(r->slot[l]);
    fv_route_model_unref(r->previous);
    pthread_cond_destroy(&r->ev_cv);
    pthread_mutex_destroy(&r->ev_mu);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- slots ---- */

void fv_route_set(fv_route_t *r, fv_release_label_t label, fv_route_model_t *m)
{
    if ((unsigned)label >= N_LABELS) {
        fv_route_model_unref(m); /* the caller's reference moved to us: honour that */
        return;
    }
    batch_t b = {.n_ev = 0, .n_unref = 0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = r->now_us(r->clock_arg);
    fv_route_model_t *old = r->slot[label];
    r->slot[label] = m;
    fv__route_window_clear(&r->win[label]);
    drop_later(&b, old);
    fv_route_event_t *ev = ev_push(&b, FV_ROUTE_EV_SET, label, m, old, now);
    ev_why(ev, m ? "%s set to version '%s'" : "%s cleared", label_names[label], version_of(m));
    if (label == FV_RELEASE_STABLE)
        stable_changed(r, &b, now);
    unlock_and_finish(r, &b);
}

fv_route_model_t *fv_route_get(fv_route_t *r, fv_release_label_t label)
{
    if ((unsigned)label >= N_LABELS)
        return NULL;
    pthread_mutex_lock(&r->mu);
    fv_route_model_t *m = fv_route_model_ref(r->slot[label]);
    pthread_mutex_unlock(&r->mu);
    return m;
}

int fv_route_promote(fv_route_t *r, fv_diag_t *d)
{
    batch_t b = {.n_ev = 0, .n_unref = 0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = r->now_us(r->clock_arg);
    fv_route_model_t *canary = r->slot[FV_RELEASE_CANARY];
    if (!canary) {
        pthread_mutex_unlock(&r->mu);
        return fv_diag_set(d, FV_EINVAL, "promote: no canary");
    }
    fv_route_model_t *old = r->slot[FV_RELEASE_STABLE];
    r->slot[FV_RELEASE_STABLE] = canary;
    r->slot[FV_RELEASE_CANARY] = NULL;
    fv__route_window_clear(&r->win[FV_RELEASE_CANARY]);
    if (old) {
        drop_later(&b, r->previous);
        r->previous = old;
    }
    fv_route_event_t *ev = ev_push(&b, FV_ROUTE_EV_PROMOTE, FV_RELEASE_STABLE, canary, old, now);
    ev_why(ev, "canary version '%s' promoted to stable", canary->version);
    stable_changed(r, &b, now);
    unlock_and_finish(r, &b);
    return 0;
}

int fv_route_rollback(fv_route_t *r, fv_diag_t *d)
{
    batch_t b = {.n_ev = 0, .n_unref = 0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = r->now_us(r->clock_arg);
    fv_route_model_t *canary = r->slot[FV_RELEASE_CANARY];
    if (canary) {
        r->slot[FV_RELEASE_CANARY] = NULL;
        fv__route_window_clear(&r->win[FV_RELEASE_CANARY]);
        drop_later(&b, canary);
        fv_route_event_t *ev =
            ev_push(&b, FV_ROUTE_EV_ROLLBACK, FV_RELEASE_CANARY, canary, NULL, now);
        ev_why(ev, "canary version '%s' withdrawn", canary->version);
    } else if (r->previous) {
        fv_route_model_t *old = r->slot[FV_RELEASE_STABLE];
        r->slot[FV_RELEASE_STABLE] = r->previous;
        r->previous = NULL;
        drop_later(&b, old);
        fv_route_event_t *ev = ev_push(&b, FV_ROUTE_EV_ROLLBACK, FV_RELEASE_STABLE,
                                       r->slot[FV_RELEASE_STABLE], old, now);
        ev_why(ev, "stable back to the previous version '%s'", r->slot[FV_RELEASE_STABLE]->version);
        stable_changed(r, &b, now);
    } else {
        pthread_mutex_unlock(&r->mu);
        return fv_diag_set(d, FV_EINVAL,
                           "rollback: nothing to roll back to (no canary, no previous stable)");
    }
    unlock_and_finish(r, &b);
    return 0;
}

int fv_route_set_canary_percent(fv_route_t *r, double pct, fv_diag_t *d)
{
    if (!percent_ok(pct))
        return fv_diag_set(d, FV_EINVAL, "canary percent %g out of range (0..100)", pct);
    batch_t b = {.n_ev = 0, .n_unref = 0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = r->now_us(r->clock_arg);
    if (pct != r->cfg.canary_percent) {
        fv_route_event_t *ev = ev_push(&b, FV_ROUTE_EV_CONFIG, FV_RELEASE_CANARY,
                                       r->slot[FV_RELEASE_CANARY], NULL, now);
        ev_why(ev, "canary_percent %g -> %g", r->cfg.canary_percent, pct);
        r->cfg.canary_percent = pct;
    }
    unlock_and_finish(r, &b);
    return 0;
}

void fv_route_set_shadow(fv_route_t *r, bool on)
{
    batch_t b = {.n_ev = 0, .n_unref = 0};
    pthread_mutex_lock(&r->mu);
    uint64_t now = r->now_us(r->clock_arg);
    if (on != r->cfg.shadow) {
        fv_route_event_t *ev = ev_push(&b, FV_ROUTE_EV_CONFIG, FV_RELEASE_CANARY,
                                       r->slot[FV_RELEASE_CANARY], NULL, now);
        ev_why(ev, "shadow %s", on ? "on" : "off");
        r->cfg.shadow = on;
    }
    unlock_and_finish(r, &b);
}

/* ---- routing ---- */

/* The canary's share out of 10000: the number of v in [0, 10000) below percent * 100. */
static uint64_t canary_share(double pct)
{
    double x = ceil(pct * 100);
    return x <= 0 ? 0 : x >= 10000 ? 10000 : (uint64_t)x;
}

static bool to_canary(fv_route_t *r, const char *key, size_t key_len)
{
    if (key) {
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(h, (const unsigned char *)key, key_len);
        uint64_t v = 0;
        for (size_t i = 0; i < 8; i++)
            v = v << 8 | h[i];
        return (double)(v % 10000) < r->cfg.canary_percent * 100;
    }
    /* Keyless: exactly share of every 10000 consecutive requests, evenly spread. */
    uint64_t share = canary_share(r->cfg.canary_percent);
    uint64_t c = r->keyless_seq++ % 10000;
    return (c + 1) * share / 10000 > c * share / 10000;
}

int fv_route_pick(fv_route_t *r, const char *key, size_t key_len, fv_route_pick_t *ret)
{
    batch_t b = {.n_ev = 0, .n_unref = 0};
    fv_route_pick_t p;
    memset(&p, 0, sizeof p);
    pthread_mutex_lock(&r->mu);
    uint64_t now = r->now_us(r->clock_arg);
    tick(r, &b, now, false);
    fv_route_model_t *stable = r->slot[FV_RELEASE_STABLE];
    fv_route_model_t *canary = r->slot[FV_RELEASE_CANARY];
    fv_route_model_t *backup = r->slot[FV_RELEASE_BACKUP];
    if (!stable && !backup) {
        unlock_and_finish(r, &b);
        return FV_EEMPTY;
    }
    p.label = FV_RELEASE_STABLE;
    p.model = stable;
    if (!stable) {
        p.model = backup;
        p.label = FV_RELEASE_BACKUP;
        p.reason = "no_stable";
    } else if (r->breaker != FV_BREAKER_CLOSED) {
        if (r->breaker == FV_BREAKER_HALF_OPEN && !r->probe_inflight) {
            r->probe_inflight = true;
            p.probe = true;
            p.probe_gen = r->probe_gen;
            p.reason = "probe";
        } else if (backup) {
            p.model = backup;
            p.label = FV_RELEASE_BACKUP;
            p.reason = "breaker_open";
        } else {
            p.reason = "no_backup";
        }
    } else if (canary && r->cfg.canary_percent > 0 && to_canary(r, key, key_len)) {
        p.model = canary;
        p.label = FV_RELEASE_CANARY;
        p.reason = key ? "sticky" : "canary";
    } else {
        p.reason = "stable";
    }
    if (p.label == FV_RELEASE_STABLE && !p.probe && r->cfg.shadow && canary)
        p.shadow = fv_route_model_ref(canary);
    if (backup && p.model != backup)
        p.backup = fv_route_model_ref(backup);
    fv_route_model_ref(p.model);
    unlock_and_finish(r, &b);
    *ret = p;
    return 0;
}

void fv_route_done(fv_route_t *r, fv_route_pick_t *pick, const fv_route_outcome_t *o)
{
    if (!pick || !pick->model)
        return;
    batch_t b = {.n_ev = 0, .n_unref = 0};
    fv_release_label_t label = pick->label;
    pthread_mutex_lock(&r->mu);
    if (o && (unsigned)label < N_LABELS) {
        uint64_t now = r->now_us(r->clock_arg);
        tick(r, &b, now, false);
        bool missed = r->cfg.deadline_us && o->latency_us > r->cfg.deadline_us;
        r->requests[label]++;
        r->failed[label] += o->failed;
        r->missed[label] += missed;
        r->fallbacks += o->answered_by_backup;
        r->shadow_scored += pick->shadow != NULL;
        r->shadow_diverged += pick->shadow && o->shadow_diverged;
        if (r->slot[label] == pick->model) {
            fv__route_window_add(&r->win[label], o->latency_us, o->failed, missed);
            if (label == FV_RELEASE_STABLE)
                breaker_judge(r, &b, pick, o->latency_us, o->failed, missed, now);
            else if (label == FV_RELEASE_CANARY)
                canary_guard(r, &b, now);
        }
    }
    drop_later(&b, pick->model);
    drop_later(&b, pick->shadow);
    drop_later(&b, pick->backup);
    pick->model = pick->shadow = pick->backup = NULL;
    unlock_and_finish(r, &b);
}

void fv_route_stats(fv_route_t *r, fv_route_stats_t *ret)
{
    fv_route_stats_t s;
    memset(&s, 0, sizeof s);
    batch_t b = {.n_ev = 0, .n_unref = 0};
    pthread_mutex_lock(&r->mu);
    tick(r, &b, r->now_us(r->clock_arg), true);
    for (size_t l = 0; l < N_LABELS; l++) {
        snprintf(s.version[l], sizeof s.version[l], "%s", version_of(r->slot[l]));
        s.requests[l] = r->requests[l];
        s.failed[l] = r->failed[l];
        s.deadline_missed[l] = r->missed[l];
        fv__route_totals_t t = fv__route_window_totals(&r->win[l]);
        s.window_p99_us[l] = fv__route_window_p99(&r->win[l]);
        s.window_error_rate[l] = t.n ? (double)t.failed / (double)t.n : 0;
    }
    snprintf(s.previous_version, sizeof s.previous_version, "%s", version_of(r->previous));
    s.breaker = r->breaker;
    s.canary_percent = r->cfg.canary_percent;
    s.shadow = r->cfg.shadow;
    s.fallbacks = r->fallbacks;
    s.shadow_scored = r->shadow_scored;
    s.shadow_diverged = r->shadow_diverged;
    s.breaker_opened = r->breaker_opened;
    s.auto_rollbacks = r->auto_rollbacks;
    pthread_mutex_unlock(&r->mu);
    *ret = s;
}
