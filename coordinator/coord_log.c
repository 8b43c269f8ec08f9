/* coord_log.c - the coordinator's log lines, its audit records, and the faults the tests inject.
 *
 * Logs: JSON lines on stderr through protocols/fv_log.h (coord_logj); coord__jf starts a
 * line's fields with the job and, during a round, its number.
 *
 * Audit: every event worth a reviewer's attention (agents connected, refused, dropped;
 * jobs submitted, started, resumed, finished, aborted; each round's cohort, phase counts,
 * contributors and metrics; model versions; exports; admin commands; CRL reloads) goes
 * to the signed audit log (crypto/fv_audit.h) in the state directory, through the state's
 * outbox so a record committed with its change is never lost (see coord_audit).
 *
 * Invariant: while a state transaction is open (coord__txn_begin .. coord__txn_commit,
 * c->in_txn), records only queue in the outbox; the commit appends them to the signed log.
 * Refused connections are rate-limited (coord_audit_refusal), since a peer controls them.
 *
 * Lines a peer can repeat at will (an unexpected or stale message, a stranger's
 * connection closing) go through coord_logj_peer: a token bucket per (peer, event)
 * (fv_lograte: FV_LOG_BURST lines, then one per FV_LOG_INTERVAL_MS), the dropped ones
 * counted, their number written in the next line let through ("suppressed") and in
 * fedvault_log_suppressed_total. The peer is the agent's name once authenticated, else
 * its address without the port (a stranger's ports are its to choose).
 *
 * Strangers' costs for the metrics: coord__guard_metrics_init registers the families,
 * coord__guard_metrics_refresh (run before each /metrics render) copies the listeners'
 * counters (fv_server_stats, fv_prom_server_stats) into them.
 *
 * Clocks: coord__now_ms (the loop's monotonic time) for deadlines and durations,
 * coord_wall_ms only for what is recorded (audit, state, receipts).
 *
 * Faults for the tests: FV_TEST_KILL_AT injects SIGKILLs at the durability points
 * (coord__crash_point); FV_TEST_FAIL_ROUNDS and FV_TEST_DROP_AGENTS_AT set c->test.
 * Both are read once at start.
 *
 * Threading: the loop thread only. File-scope state: the crash-point settings, the
 * refusals' rate window, the log limiter and the guard metrics (one coordinator per
 * process).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "coord-int.h"
#include "fv_log.h"

/* ---- logging ------------------------------------------------------------------- */

void coord_logj(const char *level, const char *event, json_t *fields)
{
    int lv = fv_log_level_parse(level);
    fv_log_json(lv < 0 ? FV_LOG_ERROR : (fv_log_level_t)lv, event, fields);
}

#define FV_LOG_BURST 10
#define FV_LOG_INTERVAL_MS 10000
#define FV_LOG_PAIRS 4096 /* (peer, event) pairs remembered; about 600 KiB */

static fv_lograte_t *g_lograte;
static bool g_lograte_failed;

void coord__peer_host(const char *addr, char *out, size_t cap)
{
    const char *colon = strrchr(addr, ':');
    size_t n = colon != NULL && colon != addr ? (size_t)(colon - addr) : strlen(addr);
    snprintf(out, cap, "%.*s", (int)n, addr);
}

void coord_logj_peer(coord_t *c, const char *level, const char *peer, const char *event,
                     json_t *fields)
{
    int lv = fv_log_level_parse(level);
    if (!fv_log_enabled(lv < 0 ? FV_LOG_ERROR : (fv_log_level_t)lv)) {
        json_decref(fields);
        return;
    }
    if (g_lograte == NULL && !g_lograte_failed &&
        fv_lograte_new(FV_LOG_PAIRS, FV_LOG_BURST, FV_LOG_INTERVAL_MS, &g_lograte) != 0)
        g_lograte_failed = true; /* no memory: log everything, as before */
    uint64_t suppressed = 0;
    /* the loop's cached time: a line's instant to within one loop turn is enough here */
    uint64_t now = c != NULL && c->net.loop != NULL ? uv_now(c->net.loop) : 0;
    if (g_lograte != NULL && !fv_lograte_allow(g_lograte, peer, event, now, &suppressed)) {
        json_decref(fields);
        return;
    }
    if (suppressed > 0 && fields != NULL)
        json_object_set_new(fields, "suppressed", json_integer((json_int_t)suppressed));
    coord_logj(level, event, fields);
}

uint64_t coord__log_suppressed(void)
{
    return g_lograte != NULL ? fv_lograte_suppressed_total(g_lograte) : 0;
}

void coord__log_close(void)
{
    fv_lograte_free(g_lograte);
    g_lograte = NULL;
}

/* ---- strangers' costs, as metrics ------------------------------------------------------ */

static struct {
    fv_prom_metric_t *suppressed, *refused, *unauth, *metrics_evicted;
    uint64_t last_suppressed, last_evicted;
    fv_server_stats_t last[2]; /* agent port, admin port */
} g_guard;

int coord__guard_metrics_init(coord_t *c)
{
    const char *labels[2] = {"listener", "reason"};
    int r = fv_prom_counter(c->metrics.prom, "fedvault_log_suppressed_total",
                            "Log lines dropped by the per-(peer, event) rate limit.", NULL,
                            &g_guard.suppressed);
    if (r == 0)
        r = fv_prom_family(c->metrics.prom, FV_PROM_COUNTER, "fedvault_net_refused_total",
                           "Connections refused or closed before authentication by the caps "
                           "on strangers, by listener (agent, admin) and reason.",
                           labels, 2, NULL, 0, &g_guard.refused);
    if (r == 0)
        r = fv_prom_gauge(c->metrics.prom, "fedvault_net_unauth_connections",
                          "Connections accepted and not yet past TLS and HELLO, by listener.",
                          "listener", &g_guard.unauth);
    if (r == 0)
        r = fv_prom_counter(c->metrics.prom, "fedvault_metrics_conns_evicted_total",
                            "Metrics endpoint connections closed to make room for a new one.", NULL,
                            &g_guard.metrics_evicted);
    return r;
}

static void guard_add(const char *listener, const char *reason, uint64_t now, uint64_t last)
{
    const char *v[2] = {listener, reason};
    if (now > last)
        fv_prom_addv(g_guard.refused, v, (double)(now - last));
}

void coord__guard_metrics_refresh(void *ctx)
{
    coord_t *c = ctx;
    if (g_guard.suppressed == NULL)
        return;
    uint64_t sup = coord__log_suppressed();
    if (sup > g_guard.last_suppressed)
        fv_prom_add(g_guard.suppressed, NULL, (double)(sup - g_guard.last_suppressed));
    g_guard.last_suppressed = sup;
    fv_server_t *srv[2] = {c->net.server, c->net.admin};
    static const char *const names[2] = {"agent", "admin"};
    for (int i = 0; i < 2; i++) {
        if (srv[i] == NULL)
            continue;
        fv_server_stats_t n, *o = &g_guard.last[i];
        fv_server_stats(srv[i], &n);
        guard_add(names[i], "over_unauth", n.refused_unauth, o->refused_unauth);
        guard_add(names[i], "over_unauth_per_source", n.refused_unauth_source,
                  o->refused_unauth_source);
        guard_add(names[i], "over_handshakes", n.refused_handshakes, o->refused_handshakes);
        guard_add(names[i], "handshake_timeout", n.handshake_timeouts, o->handshake_timeouts);
        guard_add(names[i], "evicted", n.evicted, o->evicted);
        guard_add(names[i], "accept_error", n.accept_errors, o->accept_errors);
        fv_prom_set(g_guard.unauth, names[i], (double)n.n_unauth);
        *o = n;
    }
    if (c->net.prom_srv != NULL) {
        uint64_t ev, refused;
        fv_prom_server_stats(c->net.prom_srv, &ev, &refused);
        if (ev > g_guard.last_evicted)
            fv_prom_add(g_guard.metrics_evicted, NULL, (double)(ev - g_guard.last_evicted));
        g_guard.last_evicted = ev;
    }
}

json_t *coord__jf(coord_t *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "job", json_string(c->run.job_hex));
    if (c->run.state == ST_ROUND)
        json_object_set_new(o, "round", json_integer((json_int_t)c->rnd.round));
    return o;
}

json_t *coord__jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

void coord__hexn(const uint8_t *p, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
}

/* ---- wall clock, crash points ---------------------------------------------------- */

/* Wall-clock time for records (audit, state), never for deadlines (uv_now). */
int64_t coord_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t coord__now_ms(coord_t *c)
{
    uv_update_time(c->net.loop);
    return uv_now(c->net.loop);
}

/* Fault injection for the crash tests (tests/integration/coord_crash.py): with
 * FV_TEST_KILL_AT=POINT[:N] in the environment the process SIGKILLs itself the Nth time
 * (default 1st) it reaches POINT. Points: stats-committed, round-committed (between
 * rounds), secagg-advertise, secagg-shares, secagg-upload, secagg-unmask (inside each
 * SecAgg phase), model-write (the new model file is on disk, its round not committed),
 * distill-started (the teacher stored and the distill phase committed, no distill round
 * started), schema-fixed (an open job's resolved spec stored and audited, the job not yet
 * offered). */
static const char *g_kill_at;
static unsigned long g_kill_n;

void coord__crash_point(const char *name)
{
    if (g_kill_at == NULL || strcmp(g_kill_at, name) != 0 || --g_kill_n > 0)
        return;
    coord_logj("warn", "test_kill", json_pack("{s:s}", "point", name));
    raise(SIGKILL);
}

void coord__crash_points_init(void)
{
    static char buf[64];
    const char *e = getenv("FV_TEST_KILL_AT");
    if (e == NULL || e[0] == '\0' || strlen(e) >= sizeof buf)
        return;
    snprintf(buf, sizeof buf, "%s", e);
    char *colon = strchr(buf, ':');
    g_kill_n = 1;
    if (colon != NULL) {
        *colon = '\0';
        g_kill_n = strtoul(colon + 1, NULL, 10);
        if (g_kill_n == 0)
            g_kill_n = 1;
    }
    g_kill_at = buf;
}

/* More deterministic faults for the tests (tests/integration/fed_once.py):
 * FV_TEST_FAIL_ROUNDS=1 aborts every training and distill round as it finishes (why:
 * "FV_TEST_FAIL_ROUNDS"), so a job fails after ROUND_ATTEMPTS tries of round 1;
 * FV_TEST_DROP_AGENTS_AT=job-end closes every agent connection once a job's end is
 * committed and before JOB_DONE is sent (a network blip at the worst moment: the agents
 * must hear of the end when they reconnect);
 * FV_TEST_HOLD_FINISH=PREFIX holds the finish of round R on the thread pool (the worker
 * that decodes the sum and steps the job machine) until the file PREFIX-R exists (at most
 * 600 s), so a test can ask the admin port about the job while a worker holds its machine,
 * without a timing window (tests/integration/admin_cli.py under TSan). */
void coord__test_hooks_init(coord_t *c)
{
    const char *e = getenv("FV_TEST_FAIL_ROUNDS");
    c->test.fail_rounds = e != NULL && strcmp(e, "1") == 0;
    e = getenv("FV_TEST_DROP_AGENTS_AT");
    c->test.drop_at_job_end = e != NULL && strcmp(e, "job-end") == 0;
    e = getenv("FV_TEST_HOLD_FINISH");
    if (e != NULL && strlen(e) < sizeof c->test.hold_finish - 24)
        snprintf(c->test.hold_finish, sizeof c->test.hold_finish, "%s", e);
}

/* ---- audit ------------------------------------------------------------------------ */

/* Records go through the state's outbox: queued in the same transaction as the change
 * they describe, appended to the signed log after the commit, each with its outbox id as
 * details.eid. A crash between the append and the outbox delete leaves a record both in
 * the log and in the outbox; at start the log's highest eid is read back and such records
 * are not appended twice. */
static int audit_cb(int64_t id, const char *actor, const char *event, const char *details,
                    void *ctx)
{
    coord_t *c = ctx;
    if (id <= c->audit_max_eid)
        return 0; /* already in the log (crash after append, before the delete) */
    json_error_t je;
    json_t *o = json_loads(details != NULL ? details : "{}", 0, &je);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    json_object_set_new(o, "eid", json_integer((json_int_t)id));
    fv_diag_t d;
    int r = fv_audit_append_obj(c->audit, actor, event, o, &d);
    json_decref(o);
    if (r != 0) {
        coord_logj("error", "audit_append_failed",
                   json_pack("{s:s,s:s,s:s}", "event", event, "err", fv_err_name(r), "why", d.msg));
        return r;
    }
    c->audit_max_eid = id;
    return 0;
}

int coord_audit_flush(coord_t *c)
{
    if (c->st == NULL || c->audit == NULL)
        return 0;
    fv_diag_t d;
    int r = fv_state_outbox_drain(c->st, audit_cb, c, &d);
    if (r != 0)
        coord_logj("error", "audit_flush_failed",
                   json_pack("{s:s,s:s}", "err", fv_err_name(r), "why", d.msg));
    return r;
}

int coord_audit(coord_t *c, const char *actor, const char *event, json_t *details)
{
    if (c->st == NULL) {
        json_decref(details);
        return 0;
    }
    char *s = details != NULL ? json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(details);
    fv_diag_t d;
    int64_t id;
    int r = fv_state_outbox_add(c->st, actor != NULL ? actor : c->self_name, event, s, &id, &d);
    free(s);
    if (r != 0) {
        coord_logj("error", "audit_queue_failed",
                   json_pack("{s:s,s:s,s:s}", "event", event, "err", fv_err_name(r), "why", d.msg));
        return r;
    }
    return c->in_txn ? 0 : coord_audit_flush(c);
}

/* Refused connections are peer-controlled events: each would cost an fsynced record on
 * the loop, so a flood of bad handshakes could stall the daemon and bloat the log. At
 * most FV_REFUSALS_PER_MIN records a minute are written one by one; beyond that they are
 * counted and summed up in one "refusals_suppressed" record when the minute is over (the
 * metrics count every one). */
#define FV_REFUSALS_PER_MIN 30
int coord_audit_refusal(coord_t *c, const char *event, json_t *details)
{
    static uint64_t window_start;
    static unsigned n_in_window, n_suppressed;
    uint64_t now = c->net.loop != NULL ? uv_now(c->net.loop) : 0;
    if (now - window_start >= 60000) {
        if (n_suppressed > 0)
            coord_audit(c, NULL, "refusals_suppressed",
                        json_pack("{s:i,s:i}", "count", (int)n_suppressed, "window_s", 60));
        window_start = now;
        n_in_window = n_suppressed = 0;
    }
    if (event == NULL)
        return 0; /* the timer rolling the window */
    if (++n_in_window > FV_REFUSALS_PER_MIN) {
        n_suppressed++;
        json_decref(details);
        return 0;
    }
    return coord_audit(c, NULL, event, details);
}

static int scan_eid(const fv_audit_record_t *rec, void *ctx)
{
    int64_t *max = ctx;
    json_t *e = json_object_get(rec->details, "eid");
    if (json_is_integer(e) && json_integer_value(e) > *max)
        *max = json_integer_value(e);
    return 0;
}

/* Opens the signed audit log in the state directory and reads back the highest outbox id
 * it holds (audit_cb). */
int coord__audit_open(coord_t *c, const char *state_dir, fv_diag_t *d)
{
    char lp[4096], hp[4096];
    snprintf(lp, sizeof lp, "%s/audit.log", state_dir);
    snprintf(hp, sizeof hp, "%s/audit.log.head", state_dir);
    int r = fv_audit_open(lp, hp, c->sign_sk, c->self_name, &c->audit, d);
    if (r != 0)
        return r;
    uint64_t seen = 0;
    return fv_audit_scan(lp, NULL, scan_eid, &c->audit_max_eid, &seen, d);
}

int coord__txn_begin(coord_t *c)
{
    fv_diag_t d;
    int r = fv_state_begin(c->st, &d);
    if (r != 0)
        coord__state_fatal(c, "begin", r, &d);
    else
        c->in_txn = true;
    return r;
}

int coord__txn_commit(coord_t *c)
{
    fv_diag_t d;
    c->in_txn = false;
    int r = fv_state_commit(c->st, &d);
    if (r != 0) {
        fv_state_rollback(c->st);
        coord__state_fatal(c, "commit", r, &d);
        return r;
    }
    coord_audit_flush(c);
    return 0;
}
