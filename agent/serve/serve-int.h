/* serve-int.h - fedvault-serve's internals, shared by its files:
 *   serve_main.c    the command line and --config, start and stop, the log
 *   serve_http.c    the HTTP/1.1 server (libuv + http_parser): connections, caps, timeouts
 *   serve_api.c     the endpoints (/v1/score, /v1/models, /healthz, /readyz, /metrics)
 *   serve_score.c   the worker pool and the scoring of one request
 *   serve_models.c  the model directory: scans, loads, swaps; route events, audit
 *   serve_admin.c   the admin socket and its test hooks
 *   serve_tls.c     optional TLS / mTLS for the listener (OpenSSL memory BIOs)
 * Threads: one loop thread owns everything here except what is marked "workers" (the
 * pool's queue, the test hooks' atomics, the route, which has its own lock).
 */
#ifndef FV_SERVE_INT_H
#define FV_SERVE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "fv_audit.h"
#include "fv_error.h"
#include "fv_explain.h"
#include "fv_log.h"
#include "fv_mlp.h"
#include "fv_model.h"
#include "fv_prom.h"
#include "fv_release.h"
#include "fv_route.h"
#include "fv_score_json.h"

#define SERVE_PROG "fedvault-serve"
#define SERVE_MAX_HEAD_BYTES 8192 /* request line + headers, else 431 */
#define SERVE_MAX_REASONS 64

/* ---- configuration (serve_main.c) ---- */
typedef struct serve_cfg {
    char host[64];
    int port;
    const char *model_dir, *ca, *crl, *admin_socket, *audit, *identity;
    const char *tls_cert, *tls_key, *tls_client_ca;
    unsigned threads;
    uint64_t poll_ms;
    size_t max_body, max_rows, max_conns, max_conns_per_source, reasons;
    uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms;
    fv_route_cfg_t route;
    bool test_hooks; /* FV_TEST_SERVE=1 */
    bool test_sleep; /* FV_TEST_SERVE_SLEEP=1: test.delay sleeps on the worker */
} serve_cfg_t;

/* A growing text buffer; oom set on the first failed allocation (then appends no-op). */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf_t;
void fv__serve_sb_put(sbuf_t *b, const char *s, size_t n);
void fv__serve_sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fv__serve_sb_json_str(sbuf_t *b, const char *s); /* a JSON string literal */

/* One worker thread's scratch for one model (serve_score.c). */
typedef struct serve_tws {
    fv_model_ws_t *ws;
    fv_mlp_ws_t *mlp_ws;
    fv_explain_t *ex; /* NULL when the model cannot be explained */
    float *prob, *logit, *x;
    long *bad;
    double *contrib;
    size_t *top;
} serve_tws_t;

/* A resident model (fv_route_model_t.obj, the route's handle embedded). Read-only once
 * loaded, but tws[i] belongs to worker i. */
typedef struct serve_model {
    fv_route_model_t rm; /* the router's handle: rm.obj is this struct, freed by
                            fv__serve_model_free at the last reference */
    fv_model_t *model;
    uint64_t release;
    char kind[16];
    size_t n_tws;
    serve_tws_t *tws;
} serve_model_t;
/* Decodes and prepares a model (any thread). */
int fv__serve_model_new(const char *name, const uint8_t *buf, size_t len, size_t n_threads,
                        size_t max_rows, serve_model_t **ret, fv_diag_t *d);
void fv__serve_model_free(void *obj);

typedef struct serve serve_t;
typedef struct serve_conn serve_conn_t;

/* One /v1/score request on its way through the pool. */
typedef struct serve_job {
    struct serve_job *next;
    serve_t *s;
    serve_conn_t *conn; /* kept alive while the job is out (serve_http.c) */
    fv_score_json_t *req;
    fv_route_pick_t pick;
    /* result (worker) */
    int status;
    sbuf_t out;
    fv_release_label_t answered; /* label that answered */
    char version[32];
    const char *outcome; /* "ok", "fallback", "rows_bad", "error" */
    double seconds;      /* recorded latency */
} serve_job_t;

/* A route event on its way to the loop (log, audit). */
typedef struct serve_event {
    struct serve_event *next;
    fv_route_event_t ev;
} serve_event_t;

/* A refused release, remembered so it is logged and counted once. */
typedef struct serve_rejected {
    char path[4096];
    char why[512];
    const char *reason;
} serve_rejected_t;

#define SERVE_MAX_REJECTED 64 /* listed in /v1/models; all are counted */

struct serve {
    uv_loop_t *loop;
    serve_cfg_t *cfg;
    fv_route_t *route;
    fv_trust_t *trust; /* loop thread, or the scan work while it runs (never both) */
    fv_prom_t *prom;
    fv_audit_t *audit; /* NULL without --audit */
    /* metrics families */
    fv_prom_metric_t *m_requests, *m_seconds, *m_breaker, *m_canary, *m_rejected, *m_shadow,
        *m_shadow_div, *m_http, *m_conns_refused, *m_fallbacks;
    uint64_t shadow_scored_seen, shadow_div_seen, fallbacks_seen;
    /* pool (workers) */
    pthread_t *threads;
    unsigned n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    serve_job_t *q_head, *q_tail; /* to the workers */
    serve_job_t *done;            /* back to the loop (reversed) */
    serve_event_t *events;        /* to the loop (reversed) */
    bool pool_stop;
    bool events_closed; /* the async handle is closing: route events are dropped */
    uv_async_t async;
    bool async_open;
    /* test hooks (workers read) */
    _Atomic uint64_t clock_us;
    _Atomic uint64_t delay_us[FV_RELEASE_N_LABELS];
    atomic_bool fail[FV_RELEASE_N_LABELS];
    /* models (serve_models.c) */
    uv_timer_t poll;
    uv_work_t scan_work;
    bool scanning, rescan;
    bool reload_trust; /* re-read --ca/--crl before the next scan (admin reload) */
    void *scan;        /* the running scan's state */
    uint64_t last_release[FV_RELEASE_N_LABELS];
    serve_rejected_t rejected[SERVE_MAX_REJECTED];
    size_t n_rejected;
    uint64_t rejected_hashes[4096];
    size_t n_rejected_hashes;
    uint64_t scans;
    struct timespec dir_mtime; /* the model directory's, when the last scan started */
    bool have_dir_mtime;
    /* http (serve_http.c) and admin (serve_admin.c) */
    void *http;
    void *admin;
    void *tls_ctx; /* SSL_CTX with --tls-cert, else NULL */
    bool stopping;
    int exit_code;
};

/* serve_main.c */
void fv__serve_log(fv_log_level_t lv, const char *event, json_t *fields);
void fv__serve_stop(serve_t *s, int code);

/* serve_score.c: the pool */
int fv__serve_pool_start(serve_t *s, fv_diag_t *d);
void fv__serve_pool_stop(serve_t *s); /* joins the workers after the queue drains */
void fv__serve_pool_submit(serve_t *s, serve_job_t *j);
void fv__serve_job_free(serve_job_t *j);

/* serve_api.c */
int fv__serve_metrics_init(serve_t *s);
/* A complete request: answers it (now, or later through the pool). */
void fv__serve_api_request(serve_t *s, serve_conn_t *c, int method, const char *path,
                           size_t path_len, const char *body, size_t body_len, bool json_ct);
void fv__serve_api_job_done(serve_t *s, serve_job_t *j); /* loop: metrics, then respond */
json_t *fv__serve_models_json(serve_t *s);
void fv__serve_on_async(uv_async_t *a); /* drains done jobs and events */

/* serve_http.c */
int fv__serve_http_start(serve_t *s, fv_diag_t *d);
void fv__serve_http_stop(serve_t *s);
int fv__serve_http_port(serve_t *s);
/* Answers the connection's current request (body taken over, may be NULL for none). */
void fv__serve_http_respond(serve_conn_t *c, int status, const char *content_type, char *body,
                            size_t body_len, const char *extra_headers);
/* {"error": why} with status. */
void fv__serve_http_error(serve_conn_t *c, int status, const char *why);
/* The job came back: the connection goes on (or is freed if it closed meanwhile).
 * Returns false when the connection is gone (do not respond). */
bool fv__serve_http_job_back(serve_conn_t *c);
void fv__serve_http_job_out(serve_conn_t *c);
void fv__serve_http_stats(serve_t *s, uint64_t *ret_live, uint64_t *ret_refused,
                          uint64_t *ret_evicted);

/* serve_tls.c: optional TLS over memory BIOs (the context is an SSL_CTX) */
typedef struct serve_tls serve_tls_t;
int fv__serve_tls_ctx_new(const serve_cfg_t *cfg, void **ret, fv_diag_t *d);
void fv__serve_tls_ctx_free(void *ctx);
serve_tls_t *fv__serve_tls_new(void *ctx);
void fv__serve_tls_free(serve_tls_t *t);
int fv__serve_tls_feed(serve_tls_t *t, const char *in, size_t n);
int fv__serve_tls_read(serve_tls_t *t, char *buf, size_t cap, size_t *ret_n);
int fv__serve_tls_write(serve_tls_t *t, const char *buf, size_t n);
int fv__serve_tls_take(serve_tls_t *t, char **ret, size_t *ret_len);
int fv__serve_tls_flush(serve_tls_t *t, uv_stream_t *st);
int fv__serve_tls_pull(serve_tls_t *t, char *buf, size_t *len, size_t cap);

/* serve_models.c */
int fv__serve_models_start(serve_t *s, fv_diag_t *d);
void fv__serve_models_stop(serve_t *s);
void fv__serve_models_rescan(serve_t *s, void (*done)(void *arg), void *arg);
void fv__serve_on_route_event(void *arg, const fv_route_event_t *ev); /* any thread */
void fv__serve_event_loop(serve_t *s, const fv_route_event_t *ev);    /* loop: log, audit */
uint64_t fv__serve_clock_us(void *arg);

/* serve_admin.c */
int fv__serve_admin_start(serve_t *s, fv_diag_t *d);
void fv__serve_admin_stop(serve_t *s);

#endif
