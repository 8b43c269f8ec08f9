/* serve_api.c - fedvault-serve's endpoints and metrics.
 *
 *   POST /v1/score   the body parsed here, on the loop (fv_score_json_parse: bounded by
 *                    --max-body and --max-rows), routed (fv_route_pick on the request's
 *                    key), then scored on the pool (serve_score.c); the answer is written
 *                    when the job comes back (fv__serve_on_async). 400 for a body that is
 *                    not a scoring request, 415 without Content-Type: application/json,
 *                    503 with no model resident; 422 / 200 from the pool.
 *   GET /v1/models   the route's snapshot (fv__serve_models_json).
 *   GET /healthz     200 while the loop runs.
 *   GET /readyz      200 when a stable or backup model is resident, else 503.
 *   GET /metrics     the Prometheus registry (coordinator/fv_prom.h), refreshed from the
 *                    route's counters just before rendering.
 * Anything else: 404 (unknown path) or 405 (known path, wrong method, with Allow).
 *
 * Metrics (loop thread only: the registry is not thread-safe, so the workers never touch
 * it; a finished job is counted when it comes back):
 *   fv_serve_requests_total{model,label,outcome}   scoring requests answered (model =
 *       the answering version, outcome ok | fallback | rows_bad | error | bad_request |
 *       unavailable)
 *   fv_serve_request_seconds{label}                histogram of the time on the worker
 *       (plus test.delay's amount under FV_TEST_SERVE)
 *   fv_serve_breaker_state                         0 closed, 1 open, 2 half-open
 *   fv_serve_canary_percent, fv_serve_fallbacks_total
 *   fv_serve_releases_rejected_total{reason}       (serve_models.c adds)
 *   fv_serve_shadow_scored_total, fv_serve_shadow_diverged_total
 *   fv_serve_http_errors_total{status}, fv_serve_connections_refused_total{why}
 */
#include "serve-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

static const double SECONDS_BOUNDS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};

int fv__serve_metrics_init(serve_t *s)
{
    static const char *const req_labels[] = {"model", "label", "outcome"};
    int r = fv_prom_new(&s->prom);
    if (r == 0)
        r = fv_prom_family(s->prom, FV_PROM_COUNTER, "fv_serve_requests_total",
                           "Scoring requests answered, by model version, label and outcome.",
                           req_labels, 3, NULL, 0, &s->m_requests);
    if (r == 0)
        r = fv_prom_histogram(s->prom, "fv_serve_request_seconds",
                              "Time to score a request on a worker, by answering label.", "label",
                              SECONDS_BOUNDS, sizeof SECONDS_BOUNDS / sizeof SECONDS_BOUNDS[0],
                              &s->m_seconds);
    if (r == 0)
        r = fv_prom_gauge(s->prom, "fv_serve_breaker_state",
                          "The stable model's latency breaker: 0 closed, 1 open, 2 half-open.",
                          NULL, &s->m_breaker);
    if (r == 0)
        r = fv_prom_gauge(s->prom, "fv_serve_canary_percent",
                          "Share of traffic routed to the canary, percent.", NULL, &s->m_canary);
    if (r == 0)
        r = fv_prom_counter(s->prom, "fv_serve_releases_rejected_total",
                            "Releases in the model directory refused, by reason.", "reason",
                            &s->m_rejected);
    if (r == 0)
        r = fv_prom_counter(s->prom, "fv_serve_shadow_scored_total",
                            "Requests also scored by the canary in shadow mode.", NULL,
                            &s->m_shadow);
    if (r == 0)
        r = fv_prom_counter(s->prom, "fv_serve_shadow_diverged_total",
                            "Shadow-scored requests whose canary scores differed.", NULL,
                            &s->m_shadow_div);
    if (r == 0)
        r = fv_prom_counter(s->prom, "fv_serve_fallbacks_total",
                            "Requests answered by the backup instead of the picked model.", NULL,
                            &s->m_fallbacks);
    if (r == 0)
        r = fv_prom_counter(s->prom, "fv_serve_http_errors_total",
                            "Requests refused before routing, by kind.", "status", &s->m_http);
    if (r == 0)
        r = fv_prom_counter(s->prom, "fv_serve_connections_refused_total",
                            "Connections closed at accept or evicted by the caps.", "why",
                            &s->m_conns_refused);
    return r;
}

static void add_delta(fv_prom_metric_t *m, uint64_t now, uint64_t *seen)
{
    if (now > *seen)
        fv_prom_add(m, NULL, (double)(now - *seen));
    *seen = now;
}

static void metrics_refresh(serve_t *s)
{
    fv_route_stats_t st;
    fv_route_stats(s->route, &st);
    fv_prom_set(s->m_breaker, NULL, (double)st.breaker);
    fv_prom_set(s->m_canary, NULL, st.canary_percent);
    add_delta(s->m_shadow, st.shadow_scored, &s->shadow_scored_seen);
    add_delta(s->m_shadow_div, st.shadow_diverged, &s->shadow_div_seen);
    add_delta(s->m_fallbacks, st.fallbacks, &s->fallbacks_seen);
}

static void count_request(serve_t *s, const char *model, const char *label, const char *outcome)
{
    const char *v[3] = {model, label, outcome};
    fv_prom_addv(s->m_requests, v, 1);
}

/* A JSON object as the answer (taken). */
static void respond_json(serve_conn_t *c, int status, json_t *o)
{
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text == NULL) {
        fv__serve_http_error(c, 500, "out of memory");
        return;
    }
    fv__serve_http_respond(c, status, "application/json", text, strlen(text), NULL);
}

json_t *fv__serve_models_json(serve_t *s)
{
    fv_route_stats_t st;
    fv_route_stats(s->route, &st);
    json_t *models = json_object();
    for (int l = 0; l < FV_RELEASE_N_LABELS; l++) {
        fv_route_model_t *m = fv_route_get(s->route, (fv_release_label_t)l);
        json_t *e = json_null();
        if (m != NULL) {
            const serve_model_t *sm = m->obj;
            e = json_pack(
                "{s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:f}", "version", m->version, "sha256", m->sha256,
                "release", (json_int_t)sm->release, "kind", sm->kind, "requests",
                (json_int_t)st.requests[l], "failed", (json_int_t)st.failed[l], "window_p99_us",
                (json_int_t)st.window_p99_us[l], "window_error_rate", st.window_error_rate[l]);
            fv_route_model_unref(m);
        }
        json_object_set_new(models, fv_release_label_name((fv_release_label_t)l), e);
    }
    json_t *rej = json_array();
    for (size_t i = 0; i < s->n_rejected; i++)
        json_array_append_new(rej, json_pack("{s:s,s:s,s:s}", "path", s->rejected[i].path, "reason",
                                             s->rejected[i].reason, "why", s->rejected[i].why));
    return json_pack("{s:o,s:s,s:s,s:f,s:b,s:I,s:I,s:I,s:o,s:I}", "models", models, "previous",
                     st.previous_version, "breaker", fv_breaker_state_name(st.breaker),
                     "canary_percent", st.canary_percent, "shadow", st.shadow, "fallbacks",
                     (json_int_t)st.fallbacks, "breaker_opened", (json_int_t)st.breaker_opened,
                     "auto_rollbacks", (json_int_t)st.auto_rollbacks, "rejected", rej, "scans",
                     (json_int_t)s->scans);
}

static void respond_405(serve_conn_t *c, const char *json, const char *allow)
{
    char *t = strdup(json);
    if (t == NULL) {
        fv__serve_http_error(c, 500, "out of memory");
        return;
    }
    fv__serve_http_respond(c, 405, "application/json", t, strlen(t), allow);
}

static bool path_is(const char *p, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(p, want, n) == 0;
}

static void api_score(serve_t *s, serve_conn_t *c, const char *body, size_t body_len, bool json_ct)
{
    if (!json_ct) {
        count_request(s, "", "", "bad_request");
        fv__serve_http_error(c, 415, "POST /v1/score takes Content-Type: application/json");
        return;
    }
    fv_score_json_opts_t o = {.max_bytes = s->cfg->max_body, .max_rows = s->cfg->max_rows};
    fv_diag_t d = {""};
    serve_job_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        fv__serve_http_error(c, 500, "out of memory");
        return;
    }
    int r = fv_score_json_parse(body != NULL ? body : "", body_len, &o, &j->req, &d);
    if (r != 0) {
        fv__serve_job_free(j);
        count_request(s, "", "", "bad_request");
        char why[600];
        snprintf(why, sizeof why, "request body: %s", d.msg[0] ? d.msg : fv_strerror(r));
        fv__serve_http_error(c, r == FV_ETOOBIG ? 413 : r == FV_ENOMEM ? 500 : 400, why);
        return;
    }
    size_t klen = 0;
    const char *key = fv_score_json_key(j->req, &klen);
    r = fv_route_pick(s->route, key, klen, &j->pick);
    if (r != 0) {
        fv__serve_job_free(j);
        count_request(s, "", "", "unavailable");
        fv__serve_http_error(c, 503, "no model resident (neither stable nor backup)");
        return;
    }
    j->s = s;
    j->conn = c;
    fv__serve_http_job_out(c);
    fv__serve_pool_submit(s, j);
}

void fv__serve_api_request(serve_t *s, serve_conn_t *c, int method, const char *path,
                           size_t path_len, const char *body, size_t body_len, bool json_ct)
{
    bool get = method == HTTP_GET;
    if (path_is(path, path_len, "/v1/score")) {
        if (method != HTTP_POST) {
            respond_405(c, "{\"error\":\"/v1/score takes POST\"}", "Allow: POST\r\n");
            return;
        }
        api_score(s, c, body, body_len, json_ct);
        return;
    }
    static const char *const gets[] = {"/v1/models", "/healthz", "/readyz", "/metrics"};
    int which = -1;
    for (int i = 0; i < 4; i++)
        if (path_is(path, path_len, gets[i]))
            which = i;
    if (which < 0) {
        fv__serve_http_error(c, 404,
                             "unknown path (try /v1/score, /v1/models, /healthz, "
                             "/readyz, /metrics)");
        return;
    }
    if (!get) {
        respond_405(c, "{\"error\":\"this path takes GET\"}", "Allow: GET\r\n");
        return;
    }
    switch (which) {
    case 0:
        respond_json(c, 200, fv__serve_models_json(s));
        return;
    case 1:
        respond_json(c, 200, json_pack("{s:s}", "status", "ok"));
        return;
    case 2: {
        fv_route_model_t *st = fv_route_get(s->route, FV_RELEASE_STABLE);
        fv_route_model_t *bk = fv_route_get(s->route, FV_RELEASE_BACKUP);
        bool ready = st != NULL || bk != NULL;
        fv_route_model_unref(st);
        fv_route_model_unref(bk);
        respond_json(c, ready ? 200 : 503,
                     json_pack("{s:s}", "status", ready ? "ready" : "no model resident"));
        return;
    }
    default: {
        metrics_refresh(s);
        char *text;
        size_t len;
        if (fv_prom_render(s->prom, &text, &len) != 0) {
            fv__serve_http_error(c, 500, "out of memory");
            return;
        }
        fv__serve_http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
        return;
    }
    }
}

void fv__serve_api_job_done(serve_t *s, serve_job_t *j)
{
    const char *label = fv_release_label_name(j->answered);
    count_request(s, j->version, label, j->outcome != NULL ? j->outcome : "error");
    fv_prom_observe(s->m_seconds, label, j->seconds);
    serve_conn_t *c = j->conn;
    if (c != NULL && fv__serve_http_job_back(c)) {
        if (j->out.oom || j->out.p == NULL) {
            fv__serve_http_error(c, 500, "out of memory");
        } else {
            char *body = j->out.p;
            size_t len = j->out.len;
            j->out.p = NULL;
            fv__serve_http_respond(c, j->status, "application/json", body, len, NULL);
        }
    }
    fv__serve_job_free(j);
}

void fv__serve_on_async(uv_async_t *a)
{
    serve_t *s = a->data;
    pthread_mutex_lock(&s->mu);
    serve_job_t *done = s->done;
    serve_event_t *evs = s->events;
    s->done = NULL;
    s->events = NULL;
    pthread_mutex_unlock(&s->mu);
    /* both lists were pushed newest first: reverse for order */
    serve_event_t *ev_in_order = NULL;
    while (evs != NULL) {
        serve_event_t *n = evs->next;
        evs->next = ev_in_order;
        ev_in_order = evs;
        evs = n;
    }
    for (serve_event_t *e = ev_in_order, *n; e != NULL; e = n) {
        n = e->next;
        fv__serve_event_loop(s, &e->ev);
        free(e);
    }
    serve_job_t *in_order = NULL;
    while (done != NULL) {
        serve_job_t *n = done->next;
        done->next = in_order;
        in_order = done;
        done = n;
    }
    for (serve_job_t *j = in_order, *n; j != NULL; j = n) {
        n = j->next;
        fv__serve_api_job_done(s, j);
    }
}
