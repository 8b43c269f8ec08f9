/* test_route.c - fedvault-serve's router (agent/serve/fv_route.h) on a manual clock: the
 * sticky canary split, the latency breaker, the canary guard, promote and rollback,
 * reference counts, and pick / done on four threads while the slots change under them.
 * No sleeps: the clock only moves when a test advances it. */
#include "fv_route.h"
#include "fv_test.h"

#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>

/* ---- the manual clock, the event log, test models ---- */

static _Atomic uint64_t g_now_us = 1000000;

static uint64_t clock_fn(void *arg)
{
    (void)arg;
    return atomic_load(&g_now_us);
}

static void advance_ms(uint64_t ms)
{
    atomic_fetch_add(&g_now_us, ms * 1000);
}

#define LOG_MAX 256
typedef struct evlog {
    fv_route_event_t ev[LOG_MAX];
    size_t n;
} evlog_t;

static void on_event(void *arg, const fv_route_event_t *ev)
{
    evlog_t *l = arg;
    if (l->n < LOG_MAX)
        l->ev[l->n++] = *ev;
}

static const fv_route_event_t *last_ev(const evlog_t *l)
{
    CHECK(l->n > 0);
    return &l->ev[l->n - 1];
}

typedef struct tmodel {
    fv_route_model_t m;
    int id;
} tmodel_t;

static atomic_int g_freed;

static void tmodel_free(void *obj)
{
    atomic_fetch_add(&g_freed, 1);
    free(obj);
}

static fv_route_model_t *mk(const char *version)
{
    tmodel_t *t = calloc(1, sizeof *t);
    CHECK(t != NULL);
    fv_route_model_init(&t->m, t, tmodel_free, version, "00");
    return &t->m;
}

static fv_route_t *mk_router(const fv_route_cfg_t *cfg, evlog_t *log)
{
    fv_route_t *r = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_route_new(cfg, clock_fn, NULL, log ? on_event : NULL, log, &r, &d), &d);
    return r;
}

/* One request: pick, then done with the given outcome; returns the label it went to. */
static fv_release_label_t request(fv_route_t *r, const char *key, uint64_t lat_us, bool failed,
                                  fv_route_pick_t *ret)
{
    fv_route_pick_t p;
    CHECK_OK(fv_route_pick(r, key, key ? strlen(key) : 0, &p), NULL);
    CHECK(p.model != NULL);
    if (ret)
        *ret = p;
    fv_route_outcome_t o = {.latency_us = lat_us, .failed = failed};
    fv_release_label_t label = p.label;
    fv_route_done(r, &p, &o);
    CHECK(p.model == NULL && p.backup == NULL && p.shadow == NULL);
    return label;
}

/* ---- sticky routing ---- */

static void test_sticky(void)
{
    fv_route_cfg_t cfg;
    fv_route_cfg_default(&cfg);
    cfg.canary_percent = 10;
    fv_route_t *r = mk_router(&cfg, NULL);
    fv_route_set(r, FV_RELEASE_STABLE, mk("1"));
    fv_route_set(r, FV_RELEASE_CANARY, mk("2"));
    fv_route_set(r, FV_RELEASE_BACKUP, mk("0"));

    enum { N = 10000 };
    static bool at10[N];
    size_t n_canary = 0;
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "customer-%08d", i);
        fv_route_pick_t p;
        fv_release_label_t l = request(r, key, 10, false, &p);
        CHECK(l == FV_RELEASE_STABLE || l == FV_RELEASE_CANARY);
        CHECK_STR_EQ(p.reason, l == FV_RELEASE_CANARY ? "sticky" : "stable");
        /* the rule, recomputed here: SHA-256(key) as a big-endian u64, mod 10000 < 1000 */
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(h, (const unsigned char *)key, strlen(key));
        uint64_t v = 0;
        for (int k = 0; k < 8; k++)
            v = v << 8 | h[k];
        CHECK_INT_EQ(l == FV_RELEASE_CANARY, v % 10000 < 1000);
        at10[i] = l == FV_RELEASE_CANARY;
        n_canary += at10[i];
        /* sticky: the same key, the same side */
        for (int k = 0; k < 3; k++)
            CHECK_INT_EQ(request(r, key, 10, false, NULL), l);
    }
    CHECK_NEAR((double)n_canary / N, 0.10, 0.015);

    /* raising the percentage only moves keys towards the canary */
    CHECK_OK(fv_route_set_canary_percent(r, 30, NULL), NULL);
    size_t n30 = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "customer-%08d", i);
        bool c = request(r, key, 10, false, NULL) == FV_RELEASE_CANARY;
        if (at10[i])
            CHECK(c);
        n30 += c;
    }
    CHECK_NEAR((double)n30 / N, 0.30, 0.015);
    CHECK(n30 > n_canary);

    /* keyless: split by a counter, exactly 10 of every 100, every tenth */
    CHECK_OK(fv_route_set_canary_percent(r, 10, NULL), NULL);
    size_t keyless = 0;
    for (int i = 0; i < 1000; i++) {
        fv_route_pick_t p;
        fv_release_label_t l = request(r, NULL, 10, false, &p);
        if (l == FV_RELEASE_CANARY) {
            CHECK_STR_EQ(p.reason, "canary");
            CHECK_INT_EQ(i % 10, 9);
            keyless++;
        }
    }
    CHECK_UINT_EQ(keyless, 100);

    /* 0 percent: nobody; 100 percent: everybody */
    CHECK_OK(fv_route_set_canary_percent(r, 0, NULL), NULL);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "customer-%08d", i);
        CHECK_INT_EQ(request(r, key, 10, false, NULL), FV_RELEASE_STABLE);
        CHECK_INT_EQ(request(r, NULL, 10, false, NULL), FV_RELEASE_STABLE);
    }
    CHECK_OK(fv_route_set_canary_percent(r, 100, NULL), NULL);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "customer-%08d", i);
        CHECK_INT_EQ(request(r, key, 10, false, NULL), FV_RELEASE_CANARY);
        CHECK_INT_EQ(request(r, NULL, 10, false, NULL), FV_RELEASE_CANARY);
    }
    fv_route_free(r);
}

/* ---- the breaker ---- */

static void test_breaker_p99(void)
{
    fv_route_cfg_t cfg;
    fv_route_cfg_default(&cfg);
    cfg.p99_budget_us = 20000;
    cfg.deadline_us = 50000;
    cfg.min_requests = 20;
    cfg.cooldown_ms = 5000;
    cfg.probes = 3;
    evlog_t log = {.n = 0};
    fv_route_t *r = mk_router(&cfg, &log);
    fv_route_set(r, FV_RELEASE_STABLE, mk("7"));
    fv_route_set(r, FV_RELEASE_BACKUP, mk("3"));
    size_t n0 = log.n;

    /* fewer than min_requests: not judged, however slow */
    for (int i = 0; i < 19; i++)
        CHECK_INT_EQ(request(r, NULL, 30000, false, NULL), FV_RELEASE_STABLE);
    CHECK_UINT_EQ(log.n, n0);
    /* the 20th opens it */
    CHECK_INT_EQ(request(r, NULL, 30000, false, NULL), FV_RELEASE_STABLE);
    CHECK_UINT_EQ(log.n, n0 + 1);
    const fv_route_event_t *ev = last_ev(&log);
    CHECK_INT_EQ(ev->kind, FV_ROUTE_EV_BREAKER);
    CHECK_INT_EQ(ev->from, FV_BREAKER_CLOSED);
    CHECK_INT_EQ(ev->to, FV_BREAKER_OPEN);
    CHECK_STR_EQ(ev->version, "7");
    CHECK_STR_EQ(ev->why, "p99 30000 us over budget 20000 us (20 requests)");
    CHECK_UINT_EQ(ev->at_us, clock_fn(NULL));

    fv_route_stats_t s;
    fv_route_stats(r, &s);
    CHECK_INT_EQ(s.breaker, FV_BREAKER_OPEN);
    CHECK_UINT_EQ(s.breaker_opened, 1);

    /* open: to the backup, which has no fallback of its own */
    fv_route_pick_t p;
    CHECK_INT_EQ(request(r, "k", 100, false, &p), FV_RELEASE_BACKUP);
    CHECK_STR_EQ(p.reason, "breaker_open");
    CHECK(p.backup == NULL);
    advance_ms(4999);
    CHECK_INT_EQ(request(r, NULL, 100, false, &p), FV_RELEASE_BACKUP);
    CHECK_INT_EQ(log.n, n0 + 1);

    /* cooldown over: half-open, one probe at a time */
    advance_ms(1);
    fv_route_pick_t probe, other;
    CHECK_OK(fv_route_pick(r, NULL, 0, &probe), NULL);
    CHECK_INT_EQ(log.n, n0 + 2);
    CHECK_INT_EQ(last_ev(&log)->to, FV_BREAKER_HALF_OPEN);
    CHECK_STR_EQ(last_ev(&log)->why, "cooldown of 5000 ms elapsed");
    CHECK(probe.probe);
    CHECK_INT_EQ(probe.label, FV_RELEASE_STABLE);
    CHECK_STR_EQ(probe.reason, "probe");
    CHECK(probe.backup != NULL); /* a probe that misses its deadline is answered by it */
    for (int i = 0; i < 5; i++) {
        CHECK_OK(fv_route_pick(r, NULL, 0, &other), NULL);
        CHECK(!other.probe);
        CHECK_INT_EQ(other.label, FV_RELEASE_BACKUP);
        CHECK_STR_EQ(other.reason, "breaker_open");
        fv_route_done(r, &other, &(fv_route_outcome_t){.latency_us = 100});
    }
    fv_route_done(r, &probe, &(fv_route_outcome_t){.latency_us = 1000});
    fv_route_stats(r, &s);
    CHECK_INT_EQ(s.breaker, FV_BREAKER_HALF_OPEN);
    /* two more good probes close it */
    for (int i = 0; i < 2; i++) {
        CHECK_INT_EQ(request(r, NULL, 1000, false, &p), FV_RELEASE_STABLE);
        CHECK(p.probe);
    }
    CHECK_INT_EQ(log.n, n0 + 3);
    CHECK_INT_EQ(last_ev(&log)->from, FV_BREAKER_HALF_OPEN);
    CHECK_INT_EQ(last_ev(&log)->to, FV_BREAKER_CLOSED);
    CHECK_STR_EQ(last_ev(&log)->why, "3 good probes in a row");
    CHECK_INT_EQ(request(r, NULL, 1000, false, &p), FV_RELEASE_STABLE);
    CHECK_STR_EQ(p.reason, "stable");

    /* exactness: 99 fast + 1 slow of 100 is a p99 within budget; one more slow is not */
    for (int i = 0; i < 98; i++)
        request(r, NULL, 1000, false, NULL); /* 99 fast with the one above */
    request(r, NULL, 40000, false, NULL);
    fv_route_stats(r, &s);
    CHECK_INT_EQ(s.breaker, FV_BREAKER_CLOSED);
    CHECK_UINT_EQ(s.window_p99_us[FV_RELEASE_STABLE], 1000);
    request(r, NULL, 40000, false, NULL);
    fv_route_stats(r, &s);
    CHECK_INT_EQ(s.breaker, FV_BREAKER_OPEN);
    CHECK_STR_EQ(last_ev(&log)->why, "p99 40000 us over budget 20000 us (101 requests)");

    /* a bad probe reopens it; the cooldown restarts */
    advance_ms(5000);
    CHECK_INT_EQ(request(r, NULL, 25000, false, &p), FV_RELEASE_STABLE);
    CHECK(p.probe);
    fv_route_stats(r, &s);
    CHECK_INT_EQ(s.breaker, FV_BREAKER_OPEN);
    CHECK_INT_EQ(last_ev(&log)->from, FV_BREAKER_HALF_OPEN);
    CHECK_INT_EQ(last_ev(&log)->to, FV_BREAKER_OPEN);
    CHECK_CONTAINS(last_ev(&log)->why, "half-open probe took 25000 us");
    advance_ms(4000);
    CHECK_INT_EQ(request(r, NULL, 100, false, NULL), FV_RELEASE_BACKUP);
    advance_ms(1000);
    /* a failed probe too */
    CHECK_INT_EQ(request(r, NULL, 100, true, &p), FV_RELEASE_STABLE);
    CHECK(p.probe);
    CHECK_STR_EQ(last_ev(&log)->why, "half-open probe failed");
    fv_route_stats(r, &s);
    CHECK_UINT_EQ(s.breaker_opened, 4);

    /* the backup gone while open: stable answers ("no_backup"), nothing refused */
    fv_route_set(r, FV_RELEASE_BACKUP, NULL);
    CHECK_INT_EQ(request(r, NULL, 100, false, &p), FV_RELEASE_STABLE);
    CHECK_STR_EQ(p.reason, "no_backup");
    CHECK(!p.probe);

    /* a new stable model starts closed: SET, then the breaker event */
    size_t n1 = log.n;
    fv_route_set(r, FV_RELEASE_STABLE, mk("8"));
    CHECK_UINT_EQ(log.n, n1 + 2);
    CHECK_INT_EQ(log.ev[n1].kind, FV_ROUTE_EV_SET);
    CHECK_STR_EQ(log.ev[n1].version, "8");
    CHECK_STR_EQ(log.ev[n1].prev_version, "7");
    CHECK_INT_EQ(log.ev[n1 + 1].kind, FV_ROUTE_EV_BREAKER);
    CHECK_INT_EQ(log.ev[n1 + 1].to, FV_BREAKER_CLOSED);
    CHECK_INT_EQ(request(r, NULL, 100, false, &p), FV_RELEASE_STABLE);
    CHECK_STR_EQ(p.reason, "stable");
    fv_route_free(r);
}

static void test_breaker_misses(void)
{
    fv_route_cfg_t cfg;
    fv_route_cfg_default(&cfg);
    cfg.deadline_us = 50000;
    cfg.consecutive_misses = 5;
    evlog_t log = {.n = 0};
    fv_route_t *r = mk_router(&cfg, &log);
    fv_route_set(r, FV_RELEASE_STABLE, mk("7"));
    fv_route_set(r, FV_RELEASE_BACKUP, mk("3"));
    size_t n0 = log.n;
    /* four misses, then one in time: the run starts over */
    for (int i = 0; i < 4; i++)
        request(r, NULL, 60000, false, NULL);
    request(r, NULL, 50000, false, NULL); /* at the deadline is in time */
    for (int i = 0; i < 4; i++)
        request(r, NULL, 60000, false, NULL);
    CHECK_UINT_EQ(log.n, n0);
    request(r, NULL, 60000, false, NULL);
    CHECK_UINT_EQ(log.n, n0 + 1);
    CHECK_INT_EQ(last_ev(&log)->to, FV_BREAKER_OPEN);
    CHECK_STR_EQ(last_ev(&log)->why, "5 requests in a row missed the deadline of 50000 us");
    fv_route_pick_t p;
    CHECK_INT_EQ(request(r, NULL, 10, false, &p), FV_RELEASE_BACKUP);
    CHECK_STR_EQ(p.reason, "breaker_open");
    fv_route_stats_t s;
    fv_route_stats(r, &s);
    CHECK_UINT_EQ(s.deadline_missed[FV_RELEASE_STABLE], 9);
    CHECK_UINT_EQ(s.requests[FV_RELEASE_STABLE], 10);
    CHECK_UINT_EQ(s.requests[FV_RELEASE_BACKUP], 1);

    /* a new stable closes the breaker; outcomes of a model that has left the slot are
     * not the new model's: five misses of "9" finishing after "10" took its place leave
     * the breaker closed */
    fv_route_set(r, FV_RELEASE_STABLE, mk("9"));
    fv_route_pick_t old[5];
    for (int i = 0; i < 5; i++) {
        CHECK_OK(fv_route_pick(r, NULL, 0, &old[i]), NULL);
        CHECK_STR_EQ(old[i].model->version, "9");
    }
    fv_route_set(r, FV_RELEASE_STABLE, mk("10"));
    for (int i = 0; i < 5; i++)
        fv_route_done(r, &old[i], &(fv_route_outcome_t){.latency_us = 60000});
    fv_route_stats(r, &s);
    CHECK_INT_EQ(s.breaker, FV_BREAKER_CLOSED);
    CHECK_UINT_EQ(s.deadline_missed[FV_RELEASE_STABLE], 14); /* still counted */
    for (int i = 0; i < 4; i++)
        request(r, NULL, 60000, false, NULL);
    fv_route_stats(r, &s);
    CHECK_INT_EQ(s.breaker, FV_BREAKER_CLOSED);
    request(r, NULL, 60000, false, NULL);
    fv_route_stats(r, &s);
    CHECK_INT_EQ(s.breaker, FV_BREAKER_OPEN);

    /* a probe that misses the deadline reopens it */
    advance_ms(cfg.cooldown_ms);
    CHECK_INT_EQ(request(r, NULL, 50001, false, &p), FV_RELEASE_STABLE);
    CHECK(p.probe);
    CHECK_INT_EQ(last_ev(&log)->to, FV_BREAKER_OPEN);

    /* a fallback is counted */
    CHECK_OK(fv_route_pick(r, NULL, 0, &p), NULL);
    fv_route_done(r, &p, &(fv_route_outcome_t){.latency_us = 10, .answered_by_backup = true});
    fv_route_stats(r, &s);
    CHECK_UINT_EQ(s.fallbacks, 1);
    fv_route_free(r);
}

/* ---- the canary guard ---- */

/* Sends keyless requests until n of them reached the canary; canary outcomes from fail(i). */
static void canary_traffic(fv_route_t *r, int n, uint64_t lat_us, int fail_every)
{
    for (int i = 0; i < n;) {
        fv_route_pick_t p;
        CHECK_OK(fv_route_pick(r, NULL, 0, &p), NULL);
        bool c = p.label == FV_RELEASE_CANARY;
        bool failed = c && fail_every && i % fail_every == 0;
        fv_route_done(r, &p,
                      &(fv_route_outcome_t){.latency_us = c ? lat_us : 10, .failed = failed});
        i += c;
    }
}

static void test_canary_guard(void)
{
    fv_route_cfg_t cfg;
    fv_route_cfg_default(&cfg);
    cfg.canary_percent = 50;
    cfg.min_requests = 20;
    cfg.canary_max_error_rate = 0.05;
    evlog_t log = {.n = 0};
    fv_route_t *r = mk_router(&cfg, &log);
    fv_route_set(r, FV_RELEASE_STABLE, mk("1"));
    fv_route_set(r, FV_RELEASE_BACKUP, mk("0"));
    fv_route_set(r, FV_RELEASE_CANARY, mk("2"));
    size_t n0 = log.n;

    /* 1 failure in 20 is 5%, not over it */
    canary_traffic(r, 20, 100, 20);
    CHECK_UINT_EQ(log.n, n0);
    fv_route_stats_t s;
    fv_route_stats(r, &s);
    CHECK_NEAR(s.window_error_rate[FV_RELEASE_CANARY], 0.05, 1e-12);
    /* failures that left the window do not count */
    advance_ms(cfg.window_ms);
    fv_route_stats(r, &s);
    CHECK_UINT_EQ(s.window_p99_us[FV_RELEASE_CANARY], 0);
    canary_traffic(r, 10, 100, 1); /* 10 failures */
    advance_ms(cfg.window_ms);
    canary_traffic(r, 40, 100, 0);
    CHECK_UINT_EQ(log.n, n0);
    fv_route_stats(r, &s);
    CHECK_STR_EQ(s.version[FV_RELEASE_CANARY], "2");
    /* part of the window still counts: 9 of 10 s later, 2 failures + 18 fine is 10% */
    advance_ms(cfg.window_ms);
    canary_traffic(r, 2, 100, 1);
    advance_ms(cfg.window_ms * 9 / 10);
    int before = atomic_load(&g_freed);
    canary_traffic(r, 17, 100, 0);
    CHECK_UINT_EQ(log.n, n0);
    canary_traffic(r, 1, 100, 0);
    CHECK_UINT_EQ(log.n, n0 + 1);
    const fv_route_event_t *ev = last_ev(&log);
    CHECK_INT_EQ(ev->kind, FV_ROUTE_EV_AUTO_ROLLBACK);
    CHECK_INT_EQ(ev->label, FV_RELEASE_CANARY);
    CHECK_STR_EQ(ev->version, "2");
    CHECK_STR_EQ(ev->why,
                 "error rate 0.100 over 0.050 (2 of 20 requests failed); canary_percent 0");
    CHECK_INT_EQ(atomic_load(&g_freed), before + 1); /* no pick held it */
    fv_route_stats(r, &s);
    CHECK_STR_EQ(s.version[FV_RELEASE_CANARY], "");
    CHECK_NEAR(s.canary_percent, 0, 0);
    CHECK_UINT_EQ(s.auto_rollbacks, 1);
    for (int i = 0; i < 100; i++)
        CHECK_INT_EQ(request(r, NULL, 10, false, NULL), FV_RELEASE_STABLE);
    /* a new canary waits for the operator's percentage */
    fv_route_set(r, FV_RELEASE_CANARY, mk("4"));
    for (int i = 0; i < 100; i++)
        CHECK_INT_EQ(request(r, "key", 10, false, NULL), FV_RELEASE_STABLE);
    fv_route_free(r);

    /* the p99 guard: with 20 requests the p99 is the slowest */
    cfg.canary_max_error_rate = 1;
    cfg.canary_max_p99_us = 10000;
    log.n = 0;
    r = mk_router(&cfg, &log);
    fv_route_set(r, FV_RELEASE_STABLE, mk("1"));
    fv_route_set(r, FV_RELEASE_CANARY, mk("2"));
    n0 = log.n;
    canary_traffic(r, 19, 10000, 1); /* failures are off; at the threshold is fine */
    CHECK_UINT_EQ(log.n, n0);
    canary_traffic(r, 1, 15000, 0);
    CHECK_UINT_EQ(log.n, n0 + 1);
    CHECK_INT_EQ(last_ev(&log)->kind, FV_ROUTE_EV_AUTO_ROLLBACK);
    CHECK_STR_EQ(last_ev(&log)->why, "p99 15000 us over 10000 us (20 requests); canary_percent 0");
    for (int i = 0; i < 50; i++)
        CHECK_INT_EQ(request(r, NULL, 10, false, NULL), FV_RELEASE_STABLE);
    fv_route_free(r);
}

/* ---- promote, rollback, config ---- */

static void test_promote_rollback(void)
{
    fv_route_cfg_t cfg;
    fv_route_cfg_default(&cfg);
    evlog_t log = {.n = 0};
    fv_diag_t d = {{0}};
    fv_route_t *r = mk_router(&cfg, &log);
    CHECK_INT_EQ(fv_route_rollback(r, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "nothing to roll back to");
    CHECK_INT_EQ(fv_route_promote(r, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "no canary");
    fv_route_pick_t p;
    CHECK_INT_EQ(fv_route_pick(r, NULL, 0, &p), FV_EEMPTY);
    CHECK_UINT_EQ(log.n, 0);

    fv_route_set(r, FV_RELEASE_BACKUP, mk("0"));
    CHECK_INT_EQ(request(r, NULL, 10, false, &p), FV_RELEASE_BACKUP);
    CHECK_STR_EQ(p.reason, "no_stable");
    fv_route_set(r, FV_RELEASE_STABLE, mk("1"));
    fv_route_set(r, FV_RELEASE_CANARY, mk("2"));
    CHECK_UINT_EQ(log.n, 3);
    CHECK_INT_EQ(log.ev[1].kind, FV_ROUTE_EV_SET);
    CHECK_INT_EQ(log.ev[1].label, FV_RELEASE_STABLE);
    CHECK_STR_EQ(log.ev[1].version, "1");
    CHECK_STR_EQ(log.ev[1].prev_version, "");

    /* shadow: stable answers, the canary is scored alongside */
    fv_route_set_shadow(r, true);
    CHECK_INT_EQ(last_ev(&log)->kind, FV_ROUTE_EV_CONFIG);
    CHECK_OK(fv_route_pick(r, NULL, 0, &p), NULL);
    CHECK_INT_EQ(p.label, FV_RELEASE_STABLE);
    CHECK(p.shadow != NULL);
    CHECK_STR_EQ(p.shadow->version, "2");
    CHECK_STR_EQ(p.backup->version, "0");
    fv_route_done(r, &p, &(fv_route_outcome_t){.latency_us = 5, .shadow_diverged = true});
    fv_route_stats_t s;
    fv_route_stats(r, &s);
    CHECK_UINT_EQ(s.shadow_scored, 1);
    CHECK_UINT_EQ(s.shadow_diverged, 1);
    CHECK(s.shadow);
    fv_route_set_shadow(r, false);
    size_t n = log.n;
    fv_route_set_shadow(r, false); /* no change, no event */
    CHECK_UINT_EQ(log.n, n);

    /* the percentage: range-checked, an event when it changes */
    CHECK_INT_EQ(fv_route_set_canary_percent(r, 100.5, &d), FV_EINVAL);
    CHECK_INT_EQ(fv_route_set_canary_percent(r, -1, &d), FV_EINVAL);
    CHECK_OK(fv_route_set_canary_percent(r, 20, &d), &d);
    CHECK_UINT_EQ(log.n, n + 1);
    CHECK_STR_EQ(last_ev(&log)->why, "canary_percent 0 -> 20");
    CHECK_OK(fv_route_set_canary_percent(r, 20, &d), &d);
    CHECK_UINT_EQ(log.n, n + 1);

    /* promote: canary -> stable, old stable kept as previous */
    CHECK_OK(fv_route_promote(r, &d), &d);
    const fv_route_event_t *ev = last_ev(&log);
    CHECK_INT_EQ(ev->kind, FV_ROUTE_EV_PROMOTE);
    CHECK_STR_EQ(ev->version, "2");
    CHECK_STR_EQ(ev->prev_version, "1");
    fv_route_stats(r, &s);
    CHECK_STR_EQ(s.version[FV_RELEASE_STABLE], "2");
    CHECK_STR_EQ(s.version[FV_RELEASE_CANARY], "");
    CHECK_STR_EQ(s.previous_version, "1");
    CHECK_NEAR(s.canary_percent, 20, 0);
    CHECK_INT_EQ(request(r, "abc", 1, false, &p), FV_RELEASE_STABLE);
    CHECK_STR_EQ(p.reason, "stable");

    /* rollback without a canary: stable <- previous; the rolled-back version is freed */
    int before = atomic_load(&g_freed);
    CHECK_OK(fv_route_rollback(r, &d), &d);
    CHECK_INT_EQ(atomic_load(&g_freed), before + 1);
    ev = last_ev(&log);
    CHECK_INT_EQ(ev->kind, FV_ROUTE_EV_ROLLBACK);
    CHECK_INT_EQ(ev->label, FV_RELEASE_STABLE);
    CHECK_STR_EQ(ev->version, "1");
    CHECK_STR_EQ(ev->prev_version, "2");
    fv_route_stats(r, &s);
    CHECK_STR_EQ(s.version[FV_RELEASE_STABLE], "1");
    CHECK_STR_EQ(s.previous_version, "");
    CHECK_INT_EQ(fv_route_rollback(r, &d), FV_EINVAL);

    /* rollback with a canary: the canary is withdrawn, the percentage stays */
    fv_route_set(r, FV_RELEASE_CANARY, mk("3"));
    CHECK_OK(fv_route_rollback(r, &d), &d);
    ev = last_ev(&log);
    CHECK_INT_EQ(ev->kind, FV_ROUTE_EV_ROLLBACK);
    CHECK_INT_EQ(ev->label, FV_RELEASE_CANARY);
    CHECK_STR_EQ(ev->version, "3");
    fv_route_stats(r, &s);
    CHECK_STR_EQ(s.version[FV_RELEASE_CANARY], "");
    CHECK_STR_EQ(s.version[FV_RELEASE_STABLE], "1");
    CHECK_NEAR(s.canary_percent, 20, 0);

    /* clearing a slot is an event too */
    n = log.n;
    fv_route_set(r, FV_RELEASE_BACKUP, NULL);
    CHECK_UINT_EQ(log.n, n + 1);
    CHECK_STR_EQ(last_ev(&log)->version, "");
    CHECK_STR_EQ(last_ev(&log)->prev_version, "0");
    fv_route_free(r);

    /* a bad config is named */
    cfg.window_ms = 5;
    CHECK_INT_EQ(fv_route_new(&cfg, clock_fn, NULL, NULL, NULL, &r, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "window_ms");
    fv_route_cfg_default(&cfg);
    cfg.canary_max_error_rate = 1.5;
    CHECK_INT_EQ(fv_route_new(&cfg, clock_fn, NULL, NULL, NULL, &r, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "canary_max_error_rate");
    fv_route_cfg_default(&cfg);
    cfg.probes = 0;
    CHECK_INT_EQ(fv_route_new(&cfg, clock_fn, NULL, NULL, NULL, &r, &d), FV_EINVAL);
    CHECK_CONTAINS(d.msg, "probes");
}

/* ---- reference counts ---- */

static void test_refcounts(void)
{
    fv_route_cfg_t cfg;
    fv_route_cfg_default(&cfg);
    fv_route_t *r = mk_router(&cfg, NULL);
    int base = atomic_load(&g_freed);
    fv_route_set(r, FV_RELEASE_STABLE, mk("a"));
    fv_route_set(r, FV_RELEASE_BACKUP, mk("b"));
    fv_route_pick_t p1, p2;
    CHECK_OK(fv_route_pick(r, NULL, 0, &p1), NULL);
    CHECK_STR_EQ(p1.model->version, "a");
    fv_route_set(r, FV_RELEASE_STABLE, mk("c")); /* "a" swapped out while p1 holds it */
    CHECK_INT_EQ(atomic_load(&g_freed), base);
    CHECK_UINT_EQ(atomic_load(&p1.model->refs), 1);
    CHECK_OK(fv_route_pick(r, NULL, 0, &p2), NULL);
    CHECK_STR_EQ(p2.model->version, "c");
    fv_route_done(r, &p1, &(fv_route_outcome_t){.latency_us = 1}); /* the last one: freed */
    CHECK_INT_EQ(atomic_load(&g_freed), base + 1);

    fv_route_model_t *g = fv_route_get(r, FV_RELEASE_STABLE);
    CHECK_STR_EQ(g->version, "c");
    CHECK(fv_route_get(r, FV_RELEASE_CANARY) == NULL);
    /* the router freed while p2 and g are outstanding: "c" and "b" live on */
    fv_route_free(r);
    CHECK_INT_EQ(atomic_load(&g_freed), base + 1);
    fv_route_model_unref(p2.model);
    CHECK_INT_EQ(atomic_load(&g_freed), base + 1);
    fv_route_model_unref(p2.backup); /* "b" */
    CHECK_INT_EQ(atomic_load(&g_freed), base + 2);
    fv_route_model_unref(g); /* "c" */
    CHECK_INT_EQ(atomic_load(&g_freed), base + 3);
    fv_route_model_unref(NULL);
    fv_route_free(NULL);
}

/* ---- event order across threads ---- */

/* Each CONFIG event says "canary_percent A -> B": delivered in order, every A is the B
 * before it. Plain variables: callbacks never run concurrently (TSan checks that too). */
static double g_last_pct;
static size_t g_pct_events, g_pct_broken;
static atomic_uint g_pct_seq;

static void chain_event(void *arg, const fv_route_event_t *ev)
{
    (void)arg;
    sched_yield(); /* widens the window a misordered delivery would need */
    double from, to;
    if (ev->kind != FV_ROUTE_EV_CONFIG ||
        sscanf(ev->why, "canary_percent %lf -> %lf", &from, &to) != 2) {
        g_pct_broken++;
        return;
    }
    if (from != g_last_pct)
        g_pct_broken++;
    g_last_pct = to;
    g_pct_events++;
}

static void *pct_setter(void *arg)
{
    fv_route_t *r = arg;
    for (int i = 0; i < 2000; i++) {
        int rc =
            fv_route_set_canary_percent(r, (double)(atomic_fetch_add(&g_pct_seq, 1) % 5), NULL);
        CHECK_INT_EQ(rc, 0);
    }
    return NULL;
}

static void test_event_order(void)
{
    fv_route_cfg_t cfg;
    fv_route_cfg_default(&cfg);
    fv_route_t *r = NULL;
    CHECK_OK(fv_route_new(&cfg, clock_fn, NULL, chain_event, NULL, &r, NULL), NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK_INT_EQ(pthread_create(&th[i], NULL, pct_setter, r), 0);
    for (int i = 0; i < 4; i++)
        CHECK_INT_EQ(pthread_join(th[i], NULL), 0);
    fv_route_stats_t s;
    fv_route_stats(r, &s);
    CHECK_UINT_EQ(g_pct_broken, 0);
    CHECK(g_pct_events > 0);
    CHECK_NEAR(g_last_pct, s.canary_percent, 0);
    fv_route_free(r);
}

/* ---- under load ---- */

enum { POOL = 4096, N_OPS = 1000, N_WORKERS = 4 };

typedef struct lmodel {
    fv_route_model_t m;
    _Atomic uint64_t stable_seq; /* the switch that last made it stable */
    size_t id;
} lmodel_t;

/* Models are heap-allocated and really freed (ASan sees a use after free); their frees
 * are counted by id outside them (a second free is counted before ASan reports it). */
static atomic_int g_frees[POOL];
static atomic_size_t g_pool_used;
static _Atomic uint64_t g_published; /* the last switch that returned */
static atomic_bool g_stop;
/* The gate: request t (a ticket) starts only when t < g_allowed; the main thread raises
 * g_allowed before a switch and waits after it until g_picks (completed requests) reaches
 * it: requests run while each switch happens (how many overlap it is the scheduler's
 * choice), the main thread is never starved by the workers, and no timing is involved. */
static pthread_mutex_t g_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_cv = PTHREAD_COND_INITIALIZER;
static uint64_t g_allowed, g_tickets, g_picks; /* under g_gate_mu */
static size_t g_load_events; /* written only by on_event: callbacks never run concurrently */

static void lmodel_free(void *obj)
{
    lmodel_t *m = obj;
    atomic_fetch_add(&g_frees[m->id], 1);
    free(m);
}

static fv_route_model_t *lmk(void)
{
    size_t i = atomic_fetch_add(&g_pool_used, 1);
    CHECK(i < POOL);
    char v[32];
    snprintf(v, sizeof v, "%zu", i);
    lmodel_t *m = calloc(1, sizeof *m);
    CHECK(m != NULL);
    m->id = i;
    fv_route_model_init(&m->m, m, lmodel_free, v, "00");
    return &m->m;
}

static void check_alive(const fv_route_model_t *m)
{
    if (m)
        CHECK_INT_EQ(atomic_load(&g_frees[((const lmodel_t *)m->obj)->id]), 0);
}

static void *worker(void *arg)
{
    fv_route_t *r = arg;
    char key[32];
    for (uint64_t i = 0;; i++) {
        pthread_mutex_lock(&g_gate_mu);
        uint64_t ticket = g_tickets++;
        while (ticket >= g_allowed && !atomic_load(&g_stop))
            pthread_cond_wait(&g_gate_cv, &g_gate_mu);
        pthread_mutex_unlock(&g_gate_mu);
        if (atomic_load(&g_stop))
            break;
        uint64_t published = atomic_load_explicit(&g_published, memory_order_acquire);
        fv_route_pick_t p;
        snprintf(key, sizeof key, "k%llu", (unsigned long long)(i % 1000));
        int rc = fv_route_pick(r, i % 2 ? key : NULL, i % 2 ? strlen(key) : 0, &p);
        CHECK_INT_EQ(rc, 0);
        CHECK(p.model != NULL);
        check_alive(p.model);
        check_alive(p.shadow);
        check_alive(p.backup);
        if (p.label == FV_RELEASE_STABLE) {
            const lmodel_t *m = p.model->obj;
            uint64_t seq = atomic_load(&m->stable_seq);
            if (seq < published)
                FV__FAIL("picked stable '%s' of switch %llu after switch %llu returned",
                         p.model->version, (unsigned long long)seq, (unsigned long long)published);
        }
        fv_route_done(r, &p, &(fv_route_outcome_t){.latency_us = 5 + i % 50});
        pthread_mutex_lock(&g_gate_mu);
        if (++g_picks == g_allowed)
            pthread_cond_broadcast(&g_gate_cv);
        pthread_mutex_unlock(&g_gate_mu);
    }
    return NULL;
}

/* Lets n more requests start (they run while the caller goes on). */
static void gate_open(uint64_t n)
{
    pthread_mutex_lock(&g_gate_mu);
    g_allowed += n;
    pthread_cond_broadcast(&g_gate_cv);
    pthread_mutex_unlock(&g_gate_mu);
}

/* Waits until every request let in has completed. */
static void gate_drain(void)
{
    pthread_mutex_lock(&g_gate_mu);
    while (g_picks < g_allowed)
        pthread_cond_wait(&g_gate_cv, &g_gate_mu);
    pthread_mutex_unlock(&g_gate_mu);
}

static void count_event(void *arg, const fv_route_event_t *ev)
{
    (void)arg;
    (void)ev;
    g_load_events++;
}

static void test_load(void)
{
    fv_route_cfg_t cfg;
    fv_route_cfg_default(&cfg);
    cfg.canary_percent = 20;
    cfg.shadow = true;
    cfg.canary_max_error_rate = 1; /* the guard and the breaker stay out of it */
    fv_route_t *r = NULL;
    fv_diag_t d = {{0}};
    CHECK_OK(fv_route_new(&cfg, clock_fn, NULL, count_event, NULL, &r, &d), &d);

    uint64_t seq = 1;
    fv_route_model_t *stable = lmk(), *previous = NULL;
    atomic_store(&((lmodel_t *)stable->obj)->stable_seq, seq);
    fv_route_set(r, FV_RELEASE_STABLE, stable);
    fv_route_set(r, FV_RELEASE_BACKUP, lmk());
    atomic_store(&g_published, seq);
    size_t expect_events = 2;

    pthread_t th[N_WORKERS];
    for (int i = 0; i < N_WORKERS; i++)
        CHECK_INT_EQ(pthread_create(&th[i], NULL, worker, r), 0);

    for (int op = 0; op < N_OPS; op++) {
        fv_route_model_t *m;
        gate_open(32); /* requests run while this op switches */
        switch (op % 5) {
        case 0: /* a new canary, then promoted */
            m = lmk();
            fv_route_set(r, FV_RELEASE_CANARY, m);
            atomic_store(&((lmodel_t *)m->obj)->stable_seq, ++seq);
            CHECK_OK(fv_route_promote(r, &d), &d);
            previous = stable;
            stable = m;
            expect_events += 2;
            break;
        case 1: /* rolled back: the previous stable again */
            CHECK(previous != NULL);
            atomic_store(&((lmodel_t *)previous->obj)->stable_seq, ++seq);
            CHECK_OK(fv_route_rollback(r, &d), &d);
            stable = previous;
            previous = NULL;
            expect_events += 1;
            break;
        case 2: /* stable cleared (the backup answers), then a new one set */
            fv_route_set(r, FV_RELEASE_STABLE, NULL);
            gate_drain();
            gate_open(8); /* these find only the backup */
            gate_drain();
            m = lmk();
            atomic_store(&((lmodel_t *)m->obj)->stable_seq, ++seq);
            fv_route_set(r, FV_RELEASE_STABLE, m);
            stable = m;
            expect_events += 2;
            break;
        case 3: /* a new backup; a canary set and withdrawn */
            fv_route_set(r, FV_RELEASE_BACKUP, lmk());
            fv_route_set(r, FV_RELEASE_CANARY, lmk());
            CHECK_OK(fv_route_rollback(r, &d), &d);
            expect_events += 3;
            gate_drain();
            continue; /* the stable did not change */
        case 4:       /* a canary left resident, its share changed */
            fv_route_set(r, FV_RELEASE_CANARY, lmk());
            CHECK_OK(fv_route_set_canary_percent(r, op % 2 ? 20 : 50, &d), &d);
            expect_events += 2;
            gate_drain();
            continue;
        }
        atomic_store_explicit(&g_published, seq, memory_order_release);
        gate_drain();
    }
    pthread_mutex_lock(&g_gate_mu);
    atomic_store(&g_stop, true);
    pthread_cond_broadcast(&g_gate_cv);
    pthread_mutex_unlock(&g_gate_mu);
    for (int i = 0; i < N_WORKERS; i++)
        CHECK_INT_EQ(pthread_join(th[i], NULL), 0);
    fv_route_stats_t s;
    fv_route_stats(r, &s);
    uint64_t total = s.requests[0] + s.requests[1] + s.requests[2];
    CHECK(s.requests[FV_RELEASE_CANARY] > 0 && s.requests[FV_RELEASE_BACKUP] > 0);
    CHECK(s.shadow_scored > 0);
    printf("load: %llu requests (stable %llu, canary %llu, backup %llu), %zu models\n",
           (unsigned long long)total, (unsigned long long)s.requests[0],
           (unsigned long long)s.requests[1], (unsigned long long)s.requests[2],
           atomic_load(&g_pool_used));
    fv_route_free(r);
    CHECK_UINT_EQ(g_load_events, expect_events);
    /* every model freed exactly once */
    for (size_t i = 0; i < atomic_load(&g_pool_used); i++)
        CHECK_INT_EQ(atomic_load(&g_frees[i]), 1);
}

int main(void)
{
    CHECK(sodium_init() >= 0);
    /* the histogram's bounds ascend */
    for (size_t i = 1; i < FV_ROUTE_HIST_N; i++)
        CHECK(fv_route_hist_bounds_us[i] > fv_route_hist_bounds_us[i - 1]);
    CHECK_UINT_EQ(fv_route_hist_bounds_us[FV_ROUTE_HIST_N - 1], 60000000);
    CHECK_STR_EQ(fv_breaker_state_name(FV_BREAKER_HALF_OPEN), "half_open");

    test_sticky();
    test_breaker_p99();
    test_breaker_misses();
    test_canary_guard();
    test_promote_rollback();
    test_refcounts();
    test_event_order();
    test_load();
    return 0;
}
