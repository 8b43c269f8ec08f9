/* fv_route.h - fedvault-serve's traffic router: which resident model version answers a
 * request (gray release), the latency breaker to the backup, and automatic rollback of a
 * failing canary. Pure logic over an injected clock: no I/O, no logging (state changes
 * are reported through a callback), so tests drive windows and deadlines deterministically.
 *
 * Slots. Three labels are resident at once: stable, canary, backup (fv_release_label_t
 * order), each a refcounted fv_route_model_t or empty; the router also keeps the previous
 * stable after a promote, for rollback. Changing a slot (fv_route_set, promote, rollback)
 * is a pointer swap under the router's lock; a request holds references to the models it
 * was routed to (fv_route_pick) until fv_route_done, and a model is freed (its free_fn)
 * when its last reference goes. So a switch never fails or drops a request: requests
 * already routed finish on the version they were given; every request routed after the
 * switch returns gets the new one.
 *
 * Routing (fv_route_pick), in order:
 *   1. no stable model: the backup if resident (reason "no_stable"), else none
 *      (FV_EEMPTY; the server answers 503);
 *   2. the stable model's breaker is open: the backup (reason "breaker_open"); half-open:
 *      one probe request at a time goes to stable, the others to the backup;
 *   3. a canary is resident and canary_percent > 0: a request with a key goes to the
 *      canary when SHA-256(key) read as a big-endian u64, mod 10000, is below
 *      canary_percent * 100 (sticky: the same key always takes the same side at a given
 *      percentage, and raising the percentage only moves keys towards the canary); a
 *      request without a key is split by a counter in the same proportion;
 *   4. otherwise stable. With shadow on and a canary resident, a request answered by
 *      stable also gets the canary as its shadow (scored, not answered; divergence
 *      counted by the caller through fv_route_done).
 *   Every pick also holds a reference to the backup (NULL if none), for a request whose
 *   model misses its deadline or fails: the caller answers it with the backup.
 *
 * Outcomes (fv_route_done): the latency of the model that was asked (microseconds, from
 * the caller's clock) and whether it failed or missed deadline_us. Per model slot the
 * router keeps a sliding window of window_ms (a ring of 10 buckets of window_ms/10,
 * each a latency histogram with the same bounds as /metrics, and error counts), from
 * which p99 and the error rate are read.
 *   The histogram's bounds are fv_route_hist_bounds_us (1 us .. 60 s, 1-1.2-1.5-2-2.5-3-4-5-
 *   6-8 per decade, plus an overflow bucket). A reported p99 (events, stats) is the upper
 *   bound of the bucket holding the 99th percentile (rank ceil(0.99 n)), so it is at or
 *   above the true p99 by at most one bucket step (a third, above 10 us); in the overflow
 *   bucket it is the largest latency seen. The threshold decisions (breaker, canary
 *   guard) do not use that rounding: each window also counts the requests over its slot's
 *   threshold exactly, and "p99 over T" means fewer than ceil(0.99 n) requests took at
 *   most T.
 *   The window belongs to the model in the slot: it is cleared when the slot's model
 *   changes, and an outcome of a model no longer in the slot it was picked from is counted
 *   in the stats but not in any window.
 *
 * Breaker (stable only; the backup is the fallback and has no breaker): closed -> open
 * when the window's p99 exceeds p99_budget_us (with at least min_requests in the window)
 * or consecutive_misses requests in a row missed deadline_us; open -> half_open after
 * cooldown_ms; half_open -> closed after probes good probe requests in a row (within
 * budget), -> open again on a bad probe. The window is cleared on each transition.
 * A good probe: not failed, within deadline_us and p99_budget_us (where set). A new stable
 * model (set, promote, rollback) starts with the breaker closed (an event if it was not).
 * With the breaker open (or half-open, outside the probe) and no backup resident, stable
 * answers (reason "no_backup"): a request is never refused while a model is resident.
 *
 * Canary guard: when the canary's window (at least min_requests) has an error rate over
 * canary_max_error_rate or a p99 over canary_max_p99_us, the canary is rolled back
 * automatically: its slot is emptied (the model freed when its requests finish) and
 * canary_percent set to 0; the event says why. (A commanded rollback of the canary leaves
 * canary_percent as it is; promote too: the percentage applies to the next canary.)
 *
 * Events: every state change (breaker transitions, promote, rollback, automatic
 * rollback, slot set/clear) calls on_event once, from the thread that caused it, after the
 * router's lock is released, in the order the changes happened: when a call returns, its
 * events and all earlier ones have been delivered. Callbacks never run concurrently. The
 * callback must not call the functions that change state (set, promote, rollback,
 * set_canary_percent, set_shadow, pick, done): they would wait for their own delivery;
 * get, stats and model_ref / model_unref are fine.
 *
 * Threading: every function may be called from any thread (one mutex; picks and dones are
 * O(1) apart from the window's bucket rotation). The clock function must be thread-safe.
 */
#ifndef FV_ROUTE_H
#define FV_ROUTE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_error.h"
#include "fv_release.h"

/* A resident model version. The router takes the caller's reference at fv_route_set and
 * calls free_fn(obj) when the last reference is dropped. A new model has refs == 1 (the
 * caller's; fv_route_model_init sets it). The router never frees the struct itself:
 * free_fn owns it (typically it is embedded in obj's allocation). */
typedef struct fv_route_model {
    void *obj; /* the caller's (fedvault-serve: its loaded model) */
    void (*free_fn)(void *obj);
    char version[32]; /* "12" (the coordinator's model version), for answers */
    char sha256[65];
    atomic_uint_fast64_t refs; /* managed by the router */
} fv_route_model_t;

typedef struct fv_route_cfg {
    double canary_percent; /* 0..100 */
    bool shadow;
    uint64_t window_ms;           /* sliding window (default 10000) */
    uint64_t min_requests;        /* in the window before p99 / error rate are judged (20) */
    uint64_t p99_budget_us;       /* breaker: the stable model's p99 budget (0 = off) */
    uint64_t deadline_us;         /* per request (0 = none) */
    uint32_t consecutive_misses;  /* breaker: deadline misses in a row (5; 0 = off) */
    uint64_t cooldown_ms;         /* open -> half-open (5000) */
    uint32_t probes;              /* good probes in a row to close (3) */
    double canary_max_error_rate; /* 0..1 (0.05; 1 = off) */
    uint64_t canary_max_p99_us;   /* (0 = off) */
} fv_route_cfg_t;

/* The defaults above. */
void fv_route_cfg_default(fv_route_cfg_t *c);

/* Fills m: obj and free_fn, version and sha256 copied (truncated to fit), refs = 1. */
void fv_route_model_init(fv_route_model_t *m, void *obj, void (*free_fn)(void *obj),
                         const char *version, const char *sha256);

/* The latency histogram's upper bounds in microseconds, ascending: bucket i holds
 * latencies in (bound[i-1], bound[i]]; one more bucket holds those above the last.
 * /metrics may use the same bounds. */
#define FV_ROUTE_HIST_N 76
extern const uint64_t fv_route_hist_bounds_us[FV_ROUTE_HIST_N];

typedef enum fv_breaker_state {
    FV_BREAKER_CLOSED = 0,
    FV_BREAKER_OPEN = 1,
    FV_BREAKER_HALF_OPEN = 2
} fv_breaker_state_t;
const char *fv_breaker_state_name(fv_breaker_state_t s); /* "closed", "open", "half_open" */

typedef enum fv_route_event_kind {
    FV_ROUTE_EV_SET,           /* a slot got a model (or was cleared: model NULL) */
    FV_ROUTE_EV_PROMOTE,       /* canary -> stable; old stable kept as previous */
    FV_ROUTE_EV_ROLLBACK,      /* by command: canary withdrawn, or stable <- previous */
    FV_ROUTE_EV_AUTO_ROLLBACK, /* the canary guard withdrew the canary */
    FV_ROUTE_EV_BREAKER,       /* the stable breaker changed state */
    FV_ROUTE_EV_CONFIG         /* canary_percent / shadow changed */
} fv_route_event_kind_t;

typedef struct fv_route_event {
    fv_route_event_kind_t kind;
    fv_release_label_t label;
    char version[32];            /* the version concerned ("" if none) */
    char prev_version[32];       /* the version it replaced ("" if none) */
    fv_breaker_state_t from, to; /* FV_ROUTE_EV_BREAKER */
    char why[160];               /* "p99 41234 us over budget 20000 us (57 requests)", ... */
    uint64_t at_us;              /* the router's clock */
} fv_route_event_t;

typedef struct fv_route fv_route_t;

/* now_us: the clock (monotonic microseconds; tests pass a manual one). on_event may be
 * NULL. FV_EINVAL (a config field out of range, named in d), FV_ENOMEM. */
int fv_route_new(const fv_route_cfg_t *cfg, uint64_t (*now_us)(void *arg), void *clock_arg,
                 void (*on_event)(void *arg, const fv_route_event_t *ev), void *event_arg,
                 fv_route_t **ret, fv_diag_t *d);
/* Drops the router's references (models freed when requests still holding them finish). */
void fv_route_free(fv_route_t *r); /* NULL-safe */

/* Puts m (the caller's reference moves to the router; NULL clears the slot) in a slot. */
void fv_route_set(fv_route_t *r, fv_release_label_t label, fv_route_model_t *m);
/* The slot's model with a new reference (release with fv_route_model_unref), or NULL. */
fv_route_model_t *fv_route_get(fv_route_t *r, fv_release_label_t label);
fv_route_model_t *fv_route_model_ref(fv_route_model_t *m);
void fv_route_model_unref(fv_route_model_t *m); /* NULL-safe; frees at the last */

/* Canary -> stable (FV_EINVAL "no canary" without one). */
int fv_route_promote(fv_route_t *r, fv_diag_t *d);
/* A canary resident: withdrawn. Else the previous stable back (FV_EINVAL "nothing to roll
 * back to" without one). */
int fv_route_rollback(fv_route_t *r, fv_diag_t *d);
int fv_route_set_canary_percent(fv_route_t *r, double pct, fv_diag_t *d); /* 0..100 */
void fv_route_set_shadow(fv_route_t *r, bool on);

typedef struct fv_route_pick {
    fv_route_model_t *model;  /* answers the request (a reference) */
    fv_release_label_t label; /* its slot */
    fv_route_model_t *shadow; /* scored for comparison only, or NULL (a reference) */
    fv_route_model_t *backup; /* the fallback, or NULL (a reference; NULL also when the
                                 backup itself answers) */
    bool probe;               /* a half-open probe of stable */
    const char *reason;       /* "stable", "canary", "sticky", "breaker_open", "no_stable",
                                 "probe" (a half-open probe), "no_backup" (breaker not
                                 closed but no backup resident: stable answers) */
    uint64_t probe_gen;       /* router-internal: which half-open period a probe belongs to */
} fv_route_pick_t;

/* Routes one request (key may be NULL). 0, or FV_EEMPTY when neither stable nor backup
 * is resident. */
int fv_route_pick(fv_route_t *r, const char *key, size_t key_len, fv_route_pick_t *ret);

typedef struct fv_route_outcome {
    uint64_t latency_us;     /* of pick.model's scoring */
    bool failed;             /* pick.model could not score (an internal error, not a bad row) */
    bool answered_by_backup; /* the caller answered with pick.backup */
    bool shadow_diverged;    /* the shadow's score differed beyond the caller's tolerance */
} fv_route_outcome_t;

/* Records the outcome for pick.model's slot (deadline miss = latency_us > deadline_us),
 * runs the breaker and canary guard, and drops the pick's references (the pick's pointers
 * are set to NULL). Call it exactly once per successful pick: an outstanding half-open
 * probe keeps other requests on the backup until its done. o NULL: only the references
 * are dropped. */
void fv_route_done(fv_route_t *r, fv_route_pick_t *pick, const fv_route_outcome_t *o);

/* A snapshot for /metrics, /v1/models and the admin socket's status. */
typedef struct fv_route_stats {
    char version[FV_RELEASE_N_LABELS][32]; /* "" for an empty slot */
    char previous_version[32];
    fv_breaker_state_t breaker;
    double canary_percent;
    bool shadow;
    uint64_t requests[FV_RELEASE_N_LABELS]; /* answered, by label (pick.label; the
                                                backup's fallbacks counted in fallbacks),
                                                since start */
    uint64_t failed[FV_RELEASE_N_LABELS];
    uint64_t deadline_missed[FV_RELEASE_N_LABELS];
    uint64_t fallbacks; /* answered by the backup instead of the picked model */
    uint64_t shadow_scored, shadow_diverged;
    uint64_t breaker_opened, auto_rollbacks;
    uint64_t window_p99_us[FV_RELEASE_N_LABELS]; /* 0 when the window has no requests */
    double window_error_rate[FV_RELEASE_N_LABELS];
} fv_route_stats_t;
/* Passive: windows are read as of now, but no state changes (an open breaker whose
 * cooldown has elapsed turns half-open at the next pick or done). */
void fv_route_stats(fv_route_t *r, fv_route_stats_t *ret);

#endif
