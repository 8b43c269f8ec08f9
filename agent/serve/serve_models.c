/* serve_models.c - fedvault-serve's models: the model directory's scans, loading and
 * swapping releases in, and the route's events (log, audit).
 *
 * Scans. At start, every --poll-ms when the directory's mtime changed (on_poll), and on
 * the admin's "reload"; both re-read --ca and --crl first (the agent installs the
 * federation's newer CRL as <model-dir>/crl.pem, by rename, which changes the mtime),
 * one scan runs on libuv's threadpool (uv_queue_work: file reads and SHA-256 of every
 * model, then decoding, must not block the loop; the scoring pool is separate; the trust
 * store is used by that one scan only, and replaced only between scans):
 * fv_release_dir_scan verifies
 * every envelope against --ca/--crl and every file against its manifest's hash. Per
 * label the highest verified release counter is taken; it is loaded (fv_model_decode of
 * exactly the bytes that were checked, plus one workspace per worker) only when its
 * counter is above the last one this label took from the directory (last_release), so a
 * label only moves forward and only to a loaded version, and a promote or rollback by the
 * admin is not undone by the next poll. The swap (fv_route_set) is on the loop, after the
 * work: requests already routed finish on the old version, which is freed with its last
 * reference (fv_route.h). A refused release (bad signature, another federation, wrong
 * hash, truncated, undecodable model) never replaces anything: the resident version
 * stays; the refusal is logged once per (envelope, sentence), counted in
 * fv_serve_releases_rejected_total{reason} and listed in /v1/models (the first
 * SERVE_MAX_REJECTED). Only one scan runs at a time; a reload during one runs another
 * after it, and waiters are told when the scan that covers their request is applied.
 *
 * Events. fv_route reports every state change through fv__serve_on_route_event, from the
 * thread that caused it (the loop for set/promote/rollback/config, a worker for the
 * breaker and the canary guard). Events are queued under the pool's mutex and handled on
 * the loop (fv__serve_on_async), in order: one log line each and, with --audit, one signed
 * record (crypto/fv_audit.h) "serve.<kind>" with the same fields.
 *
 * The route's clock (fv__serve_clock_us) is uv_hrtime, or with FV_TEST_SERVE=1 a counter
 * the admin's test.clock advances.
 */
#include "serve-int.h"

#include "fv_trust.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>

#define MAX_WAITERS 32

typedef struct scan {
    serve_t *s;
    uint64_t last_release[FV_RELEASE_N_LABELS];
    int64_t now_s;
    int status;
    char why[512];
    fv_release_entry_t *e;
    size_t n;
    uint8_t **models;
    size_t *lens;
    serve_model_t *loaded[FV_RELEASE_N_LABELS];
    size_t idx[FV_RELEASE_N_LABELS]; /* the entry taken (SIZE_MAX: none) */
    int load_rc[FV_RELEASE_N_LABELS];
    char load_why[FV_RELEASE_N_LABELS][512];
    /* waiters covered by this scan, and the ones for the next */
    void (*done[MAX_WAITERS])(void *arg);
    void *arg[MAX_WAITERS];
    size_t n_done;
} scan_t;

static scan_t g_next_waiters; /* waiters for the next scan (loop thread) */

uint64_t fv__serve_clock_us(void *arg)
{
    serve_t *s = arg;
    if (s->cfg->test_hooks)
        return atomic_load(&s->clock_us);
    return uv_hrtime() / 1000;
}

/* ---- refusals ----------------------------------------------------------------------- */

static const char *reject_reason(int status, const char *why)
{
    if (strstr(why, "truncated") != NULL)
        return "truncated";
    if (strstr(why, "hash mismatch") != NULL)
        return "hash";
    if (strstr(why, "another federation") != NULL)
        return "federation";
    if (status == FV_EAUTH)
        return "signature";
    if (status == FV_ETOOBIG)
        return "too_big";
    if (status == FV_EPROTO || status == FV_EPARSE)
        return "malformed";
    return "other";
}

static uint64_t fnv(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = a; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = b; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static void refuse(serve_t *s, const char *path, const char *why, const char *reason)
{
    uint64_t h = fnv(path, why);
    for (size_t i = 0; i < s->n_rejected_hashes; i++)
        if (s->rejected_hashes[i] == h)
            return; /* logged and counted already */
    if (s->n_rejected_hashes < sizeof s->rejected_hashes / sizeof s->rejected_hashes[0])
        s->rejected_hashes[s->n_rejected_hashes++] = h;
    fv_prom_add(s->m_rejected, reason, 1);
    fv__serve_log(FV_LOG_WARN, "release_refused",
                  json_pack("{s:s,s:s,s:s,s:s}", "path", path, "reason", reason, "why", why,
                            "action", "not loaded; the resident version stays"));
    if (s->n_rejected < SERVE_MAX_REJECTED) {
        serve_rejected_t *r = &s->rejected[s->n_rejected++];
        snprintf(r->path, sizeof r->path, "%s", path);
        snprintf(r->why, sizeof r->why, "%s", why);
        r->reason = reason;
    }
}

/* ---- the scan ----------------------------------------------------------------------- */

static void scan_work(uv_work_t *w)
{
    scan_t *sc = w->data;
    serve_t *s = sc->s;
    fv_diag_t d = {""};
    sc->status = fv_release_dir_scan(s->cfg->model_dir, s->trust, sc->now_s, &sc->e, &sc->n,
                                     &sc->models, &sc->lens, &d);
    /* The certificate checks (fv_trust_member) ran OpenSSL on this pool thread, which made
     * its thread-local error state; libuv's threads never exit, so that state would never
     * be freed (valgrind: definitely lost). Freed here; OpenSSL makes it again on need. */
    OPENSSL_thread_stop();
    if (sc->status != 0) {
        snprintf(sc->why, sizeof sc->why, "%s", d.msg[0] ? d.msg : fv_strerror(sc->status));
        return;
    }
    for (int l = 0; l < FV_RELEASE_N_LABELS; l++) {
        sc->idx[l] = SIZE_MAX;
        for (size_t i = 0; i < sc->n; i++) {
            const fv_release_t *r = sc->e[i].rel;
            if (sc->e[i].status != 0 || r == NULL || (int)r->label != l)
                continue;
            if (sc->idx[l] == SIZE_MAX || r->release > sc->e[sc->idx[l]].rel->release)
                sc->idx[l] = i;
        }
        size_t i = sc->idx[l];
        if (i == SIZE_MAX || sc->e[i].rel->release <= sc->last_release[l])
            continue;
        fv_diag_t ld = {""};
        sc->load_rc[l] =
            fv__serve_model_new(sc->e[i].path, sc->models[i], sc->lens[i], s->cfg->threads,
                                s->cfg->max_rows, &sc->loaded[l], &ld);
        if (sc->load_rc[l] != 0)
            snprintf(sc->load_why[l], sizeof sc->load_why[l], "%s",
                     ld.msg[0] ? ld.msg : fv_strerror(sc->load_rc[l]));
    }
}

static void scan_start(serve_t *s);

static void scan_after(uv_work_t *w, int status)
{
    scan_t *sc = w->data;
    serve_t *s = sc->s;
    s->scanning = false;
    s->scans++;
    if (status == 0 && sc->status != 0) {
        fv__serve_log(FV_LOG_ERROR, "model_dir_scan_failed",
                      json_pack("{s:s,s:s}", "dir", s->cfg->model_dir, "why", sc->why));
    }
    for (size_t i = 0; sc->status == 0 && i < sc->n; i++)
        if (sc->e[i].status != 0)
            refuse(s, sc->e[i].envelope, sc->e[i].why,
                   reject_reason(sc->e[i].status, sc->e[i].why));
    for (int l = 0; sc->status == 0 && l < FV_RELEASE_N_LABELS; l++) {
        size_t i = sc->idx[l];
        if (i == SIZE_MAX || sc->e[i].rel->release <= sc->last_release[l])
            continue;
        const fv_release_t *r = sc->e[i].rel;
        if (sc->load_rc[l] != 0) {
            refuse(s, sc->e[i].path, sc->load_why[l], "model");
            s->last_release[l] = r->release; /* a checked file that does not decode stays so */
            continue;
        }
        serve_model_t *m = sc->loaded[l];
        sc->loaded[l] = NULL;
        if (s->stopping) {
            fv__serve_model_free(m);
            continue;
        }
        m->release = r->release;
        snprintf(m->kind, sizeof m->kind, "%s", r->kind);
        char version[32];
        snprintf(version, sizeof version, "%" PRId64, r->version);
        fv_route_model_init(&m->rm, m, fv__serve_model_free, version, r->model_sha256);
        fv_route_model_t *rm = &m->rm;
        s->last_release[l] = r->release;
        fv__serve_log(FV_LOG_INFO, "model_loaded",
                      json_pack("{s:s,s:s,s:s,s:I,s:s,s:s}", "label",
                                fv_release_label_name((fv_release_label_t)l), "version",
                                rm->version, "sha256", rm->sha256, "release",
                                (json_int_t)r->release, "kind", r->kind, "path", sc->e[i].path));
        fv_route_set(s->route, (fv_release_label_t)l, rm);
    }
    for (int l = 0; l < FV_RELEASE_N_LABELS; l++)
        fv__serve_model_free(sc->loaded[l]);
    fv_release_entries_free(sc->e, sc->n, sc->models, sc->lens);
    for (size_t i = 0; i < sc->n_done; i++)
        sc->done[i](sc->arg[i]);
    free(sc);
    if ((s->rescan || g_next_waiters.n_done > 0) && !s->stopping) {
        s->rescan = false;
        scan_start(s);
    }
}

static void scan_start(serve_t *s)
{
    if (s->scanning || s->stopping)
        return;
    scan_t *sc = calloc(1, sizeof *sc);
    if (sc == NULL)
        return;
    sc->s = s;
    if (s->reload_trust) { /* no scan is running: the trust store is ours */
        fv_trust_t *t = NULL;
        fv_diag_t d = {""};
        s->reload_trust = false;
        if (fv_trust_new(s->cfg->ca, s->cfg->crl, &t, &d) == 0) {
            fv_trust_free(s->trust);
            s->trust = t;
        } else {
            fv__serve_log(FV_LOG_ERROR, "trust_reload_failed",
                          json_pack("{s:s,s:s}", "why", d.msg, "action",
                                    "the CA and CRL read before stay in use"));
        }
    }
    struct stat st;
    s->have_dir_mtime = stat(s->cfg->model_dir, &st) == 0;
    if (s->have_dir_mtime)
        s->dir_mtime = st.st_mtim;
    memcpy(sc->last_release, s->last_release, sizeof sc->last_release);
    sc->now_s = (int64_t)time(NULL);
    memcpy(sc->done, g_next_waiters.done, sizeof sc->done);
    memcpy(sc->arg, g_next_waiters.arg, sizeof sc->arg);
    sc->n_done = g_next_waiters.n_done;
    g_next_waiters.n_done = 0;
    s->scan_work.data = sc;
    if (uv_queue_work(s->loop, &s->scan_work, scan_work, scan_after) != 0) {
        for (size_t i = 0; i < sc->n_done; i++)
            sc->done[i](sc->arg[i]);
        free(sc);
        return;
    }
    s->scanning = true;
}

void fv__serve_models_rescan(serve_t *s, void (*done)(void *arg), void *arg)
{
    if (done != NULL) {
        if (g_next_waiters.n_done == MAX_WAITERS) {
            done(arg); /* too many at once: told now, they see the next poll */
        } else {
            g_next_waiters.done[g_next_waiters.n_done] = done;
            g_next_waiters.arg[g_next_waiters.n_done++] = arg;
        }
    }
    s->reload_trust = true;
    if (s->scanning)
        s->rescan = true;
    else
        scan_start(s);
}

/* A poll scans only when the directory changed: the agent installs by rename, which
 * changes the directory's mtime (a scan reads and hashes every model file, so an idle
 * poll must not). The mtime is taken before the scan, so a change during it is seen by
 * the next poll. A reload always scans. */
static void on_poll(uv_timer_t *t)
{
    serve_t *s = t->data;
    struct stat st;
    if (s->scanning || stat(s->cfg->model_dir, &st) != 0) {
        scan_start(s);
        return;
    }
    if (s->have_dir_mtime && st.st_mtim.tv_sec == s->dir_mtime.tv_sec &&
        st.st_mtim.tv_nsec == s->dir_mtime.tv_nsec)
        return;
    s->reload_trust = true; /* the agent may have installed a newer crl.pem there */
    scan_start(s);
}

int fv__serve_models_start(serve_t *s, fv_diag_t *d)
{
    (void)d;
    scan_start(s);
    return uv_timer_start(&s->poll, on_poll, s->cfg->poll_ms, s->cfg->poll_ms);
}

void fv__serve_models_stop(serve_t *s)
{
    (void)uv_timer_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, NULL);
    /* a running scan finishes; scan_after sees s->stopping and loads nothing */
    for (size_t i = 0; i < g_next_waiters.n_done; i++)
        g_next_waiters.done[i](g_next_waiters.arg[i]);
    g_next_waiters.n_done = 0;
}

/* ---- route events ------------------------------------------------------------------- */

void fv__serve_on_route_event(void *arg, const fv_route_event_t *ev)
{
    serve_t *s = arg;
    serve_event_t *e = malloc(sizeof *e);
    if (e == NULL)
        return;
    e->ev = *ev;
    pthread_mutex_lock(&s->mu);
    if (s->events_closed) { /* the route's last changes, at exit: nobody to tell */
        pthread_mutex_unlock(&s->mu);
        free(e);
        return;
    }
    e->next = s->events;
    s->events = e;
    uv_async_send(&s->async); /* under the lock: the handle is not closed meanwhile */
    pthread_mutex_unlock(&s->mu);
}

static const char *event_kind_name(fv_route_event_kind_t k)
{
    static const char *const names[] = {"set",           "promote", "rollback",
                                        "auto_rollback", "breaker", "config"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

void fv__serve_event_loop(serve_t *s, const fv_route_event_t *ev)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "kind", event_kind_name(ev->kind), "label",
                          fv_release_label_name(ev->label), "version", ev->version, "prev_version",
                          ev->prev_version, "why", ev->why, "at_us", (json_int_t)ev->at_us);
    if (o != NULL && ev->kind == FV_ROUTE_EV_BREAKER) {
        json_object_set_new(o, "from", json_string(fv_breaker_state_name(ev->from)));
        json_object_set_new(o, "to", json_string(fv_breaker_state_name(ev->to)));
    }
    if (s->audit != NULL && o != NULL) {
        char event[64];
        snprintf(event, sizeof event, "serve.%s", event_kind_name(ev->kind));
        fv_diag_t d = {""};
        int r = fv_audit_append_obj(s->audit, NULL, event, o, &d);
        if (r != 0)
            fv__serve_log(FV_LOG_ERROR, "audit_failed",
                          json_pack("{s:s,s:s,s:s}", "path", s->cfg->audit, "record", event, "why",
                                    d.msg[0] ? d.msg : fv_strerror(r)));
    }
    char name[64];
    snprintf(name, sizeof name, "route_%s", event_kind_name(ev->kind));
    fv__serve_log(ev->kind == FV_ROUTE_EV_AUTO_ROLLBACK ||
                          (ev->kind == FV_ROUTE_EV_BREAKER && ev->to == FV_BREAKER_OPEN)
                      ? FV_LOG_WARN
                      : FV_LOG_INFO,
                  name, o);
}
