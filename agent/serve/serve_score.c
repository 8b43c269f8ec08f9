/* serve_score.c - fedvault-serve's scoring: the worker pool and one request's scores.
 *
 * Pool. --threads worker threads (our own, not libuv's shared threadpool, so the model
 * directory's scans and other uv_queue_work users never wait behind scoring and the
 * scoring width is exactly --threads). One FIFO of jobs under a mutex and a condition
 * variable; finished jobs go back on a second list under the same mutex and the loop is
 * woken with uv_async_send (sends coalesce: the loop drains the whole list, serve_api.c).
 * Worker i uses the i-th workspace of each model (serve_model_t.tws[i]): fv_model_ws_t,
 * fv_mlp_ws_t, an explainer and row buffers of --max-rows, made when the model is loaded,
 * so scoring allocates nothing but the answer's text.
 *
 * One job (run_job): the request, parsed on the loop, is bound to the picked model's
 * schema (fv_score_json_bind) and scored (fv_model_predict_ws_rows; logits and reason
 * codes as cli/cmd_predict.c computes them: fv_preproc_transform, fv_mlp_logits,
 * fv_explain_row of the predicted class), all numbers printed %.9g as `fedvault predict
 * --format jsonl` prints them. The latency recorded for the route is the measured one;
 * with FV_TEST_SERVE=1 it is test.delay's amount for the label alone (the manual clock
 * does not move during a request), and with FV_TEST_SERVE_SLEEP=1 as well the delay is a
 * real sleep, measured. When the model failed (an internal error, or
 * test.fail for its label) or missed --deadline-us, the pick's backup answers (fallback
 * true). With a shadow, the shadow model scores too and a score differing by more than
 * SHADOW_TOL counts as a divergence. fv_route_done then records the outcome (and may
 * change the route's state: its events come back to the loop, serve_models.c).
 *
 * Row numbers in answers are the request's, 0-based. A row the decoder refused keeps
 * its sentence; a row whose encoded features, scores or logits are not finite gets
 * "row R: " and fv_model_bad_row_str's sentence (the column it blames, if any).
 */
#include "serve-int.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_preproc.h"
#include "fv_schema.h"

#define SHADOW_TOL 1e-6

/* ---- text buffer -------------------------------------------------------------------- */

void fv__serve_sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void fv__serve_sb_printf(sbuf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        fv__serve_sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    fv__serve_sb_put(b, big, (size_t)n);
    free(big);
}

void fv__serve_sb_json_str(sbuf_t *b, const char *s)
{
    json_t *j = json_string(s);
    char *d = j != NULL ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (d != NULL)
        fv__serve_sb_put(b, d, strlen(d));
    else
        fv__serve_sb_put(b, "\"?\"", 3); /* not UTF-8: column names are, by the schema */
    free(d);
    json_decref(j);
}

/* ---- models and their workspaces ---------------------------------------------------- */

static void tws_close(serve_tws_t *t)
{
    fv_model_ws_free(t->ws);
    fv_mlp_ws_free(t->mlp_ws);
    fv_explain_free(t->ex);
    free(t->prob);
    free(t->logit);
    free(t->x);
    free(t->bad);
    free(t->contrib);
    free(t->top);
}

void fv__serve_model_free(void *obj)
{
    serve_model_t *m = obj;
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_tws; i++)
        tws_close(&m->tws[i]);
    free(m->tws);
    fv_model_free(m->model);
    free(m);
}

int fv__serve_model_new(const char *name, const uint8_t *buf, size_t len, size_t n_threads,
                        size_t max_rows, serve_model_t **ret, fv_diag_t *d)
{
    serve_model_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    int r = fv_model_decode(name, buf, len, &m->model, d);
    if (r != 0) {
        free(m);
        return r;
    }
    m->tws = calloc(n_threads, sizeof *m->tws);
    if (m->tws == NULL) {
        fv__serve_model_free(m);
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    }
    m->n_tws = n_threads;
    const fv_mlp_arch_t *a = fv_mlp_arch(m->model->mlp);
    size_t n_out = a->n_out, n_in = a->n_in;
    size_t n_cols = fv_schema_n_columns(m->model->schema);
    for (size_t i = 0; i < n_threads; i++) {
        serve_tws_t *t = &m->tws[i];
        r = fv_model_ws_new(m->model, max_rows, &t->ws);
        if (r == 0)
            r = fv_mlp_ws_new(m->model->mlp, max_rows, &t->mlp_ws);
        if (r != 0) {
            fv__serve_model_free(m);
            return fv_diag_set(d, r, "%s: cannot make a scoring workspace (%s)", name,
                               fv_strerror(r));
        }
        if (fv_explain_new(m->model->mlp, m->model->preproc, m->model->schema, 0, &t->ex) != 0)
            t->ex = NULL; /* answers say the model cannot be explained */
        t->prob = malloc(max_rows * n_out * sizeof *t->prob);
        t->logit = malloc(max_rows * n_out * sizeof *t->logit);
        t->x = malloc(max_rows * n_in * sizeof *t->x);
        t->bad = malloc(max_rows * sizeof *t->bad);
        t->contrib = malloc((n_cols + 1) * sizeof *t->contrib);
        t->top = malloc((n_cols + 1) * sizeof *t->top);
        if (!t->prob || !t->logit || !t->x || !t->bad || !t->contrib || !t->top) {
            fv__serve_model_free(m);
            return fv_diag_set(d, FV_ENOMEM, "out of memory");
        }
    }
    *ret = m;
    return 0;
}

/* ---- one request -------------------------------------------------------------------- */

/* A cell's value for a reason: the number, the category, or null (missing). */
static void put_cell(sbuf_t *o, const fv_schema_t *s, size_t col, double v)
{
    if (fv_schema_column_type(s, col) == FV_COL_CATEGORICAL) {
        if (v == FV_CELL_MISSING) {
            fv__serve_sb_put(o, "null", 4);
            return;
        }
        const char *cat = v >= 0 && (size_t)v < fv_schema_n_categories(s, col)
                              ? fv_schema_category(s, col, (size_t)v)
                              : NULL;
        fv__serve_sb_json_str(o, cat != NULL ? cat : "<other>");
        return;
    }
    if (isnan(v))
        fv__serve_sb_put(o, "null", 4);
    else
        fv__serve_sb_printf(o, "%.9g", v);
}

/* Scores req with model m (worker idx): the "results" array into o, *ret_first the
 * scores of the good rows for shadow comparison (prob of row's answered output; NULL ok).
 * Returns 0 (with *ret_n_ok rows scored) or an FV_E* code (the model failed). */
static int score_model(const serve_cfg_t *cfg, serve_model_t *m, unsigned idx,
                       const fv_score_json_t *req, sbuf_t *o, size_t *ret_n_ok, double *ret_scores)
{
    serve_tws_t *t = &m->tws[idx];
    const fv_model_t *mod = m->model;
    const fv_schema_t *s = mod->schema;
    fv_score_batch_t *b = NULL;
    int r = fv_score_json_bind(req, s, &b);
    if (r != 0)
        return r;
    size_t k = b->ds.n_rows;
    const fv_mlp_arch_t *a = fv_mlp_arch(mod->mlp);
    size_t n_out = a->n_out, n_in = a->n_in;
    bool explain = fv_score_json_explain(req);
    if (k > 0) {
        r = fv_model_predict_ws_rows(mod, t->ws, &b->ds, NULL, k, t->prob, t->bad);
        if (r == 0)
            r = fv_preproc_transform(mod->preproc, &b->ds, NULL, k, t->x);
        if (r == 0)
            r = fv_mlp_logits(mod->mlp, t->mlp_ws, t->x, k, t->logit);
        if (r != 0)
            goto out;
    }
    size_t n_ok = 0;
    fv__serve_sb_put(o, "[", 1);
    for (size_t j = 0; j < b->n_req; j++) {
        if (j > 0)
            fv__serve_sb_put(o, ",", 1);
        if (!b->row_ok[j]) {
            fv__serve_sb_printf(o, "{\"row\":%zu,\"error\":", j);
            fv__serve_sb_json_str(o, b->row_err + j * FV_SCORE_ROW_ERR_MAX);
            fv__serve_sb_put(o, "}", 1);
            continue;
        }
        size_t i = b->ds_row[j];
        if (t->bad[i] == -1) /* the logits too (fv_mlp_logits: the same network, float32) */
            for (size_t c = 0; c < n_out; c++)
                if (!isfinite(t->logit[i * n_out + c]))
                    t->bad[i] = FV_MODEL_BAD_OUTPUT;
        if (t->bad[i] != -1) {
            char sentence[FV_SCORE_ROW_ERR_MAX], why[FV_SCORE_ROW_ERR_MAX + 32];
            (void)fv_model_bad_row_str(mod, &b->ds, i, t->bad[i], sentence, sizeof sentence);
            snprintf(why, sizeof why, "row %zu: %s", j,
                     sentence[0] ? sentence : "non-finite score");
            fv__serve_sb_printf(o, "{\"row\":%zu,\"error\":", j);
            fv__serve_sb_json_str(o, why);
            fv__serve_sb_put(o, "}", 1);
            continue;
        }
        const float *prob = t->prob + i * n_out, *z = t->logit + i * n_out;
        size_t out = 0;
        for (size_t c = 1; c < n_out; c++)
            if (prob[c] > prob[out])
                out = c;
        if (ret_scores != NULL)
            ret_scores[j] = prob[out];
        fv__serve_sb_printf(o, "{\"row\":%zu,", j);
        if (n_out > 1) {
            fv__serve_sb_put(o, "\"class\":", 8);
            fv__serve_sb_json_str(o, fv_schema_label(s, out));
            fv__serve_sb_put(o, ",", 1);
        }
        fv__serve_sb_printf(o, "\"score\":%.9g,\"logit\":%.9g", (double)prob[out], (double)z[out]);
        if (n_out > 1) {
            fv__serve_sb_put(o, ",\"probs\":[", 10);
            for (size_t c = 0; c < n_out; c++)
                fv__serve_sb_printf(o, c ? ",%.9g" : "%.9g", (double)prob[c]);
            fv__serve_sb_put(o, "]", 1);
        }
        if (explain && t->ex == NULL) {
            fv__serve_sb_put(o, ",\"reasons\":null", 15);
        } else if (explain) {
            fv_explain_result_t res = {0};
            r = fv_explain_row(t->ex, t->x + i * n_in, out, t->contrib, &res);
            if (r != 0)
                goto out;
            size_t n_top = fv_explain_top(t->ex, t->contrib, cfg->reasons, t->top);
            fv__serve_sb_printf(o, ",\"bias\":%.9g,\"reasons\":[", res.bias);
            for (size_t q = 0; q < n_top; q++) {
                size_t c = t->top[q];
                fv__serve_sb_put(o, q ? ",{\"column\":" : "{\"column\":", q ? 11 : 10);
                fv__serve_sb_json_str(o, fv_schema_column_name(s, c));
                fv__serve_sb_put(o, ",\"value\":", 9);
                put_cell(o, s, c, b->ds.cells[i * b->ds.n_cols + c]);
                fv__serve_sb_printf(o, ",\"contribution\":%.9g}", t->contrib[c]);
            }
            fv__serve_sb_put(o, "]", 1);
        }
        fv__serve_sb_put(o, "}", 1);
        n_ok++;
    }
    fv__serve_sb_put(o, "]", 1);
    *ret_n_ok = n_ok;
out:
    fv_score_batch_free(b);
    return r;
}

static uint64_t now_us_real(void)
{
    return uv_hrtime() / 1000;
}

static void sleep_us(uint64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Scores with m; the latency as the route should record it. */
static int score_timed(serve_t *s, serve_model_t *m, fv_release_label_t label, unsigned idx,
                       const fv_score_json_t *req, sbuf_t *o, size_t *n_ok, double *scores,
                       uint64_t *ret_latency)
{
    uint64_t t0 = now_us_real();
    uint64_t delay = s->cfg->test_hooks ? atomic_load(&s->delay_us[label]) : 0;
    if (delay > 0 && s->cfg->test_sleep)
        sleep_us(delay);
    int r = score_model(s->cfg, m, idx, req, o, n_ok, scores);
    uint64_t lat = now_us_real() - t0;
    /* FV_TEST_SERVE=1 without sleeps: the route's clock is the manual one, which does not
     * move while a request is scored, so the latency recorded is test.delay's alone (a
     * window or deadline never depends on how fast this build scores: ASan, valgrind) */
    if (s->cfg->test_hooks && !s->cfg->test_sleep)
        lat = delay;
    if (r == 0 && s->cfg->test_hooks && atomic_load(&s->fail[label]))
        r = FV_EIO;
    *ret_latency = lat;
    return r;
}

static void answer_head(serve_job_t *j, const fv_route_model_t *rm, fv_release_label_t label,
                        bool fallback)
{
    sbuf_t *o = &j->out;
    fv__serve_sb_put(o, "{\"model\":{\"version\":", 20);
    fv__serve_sb_json_str(o, rm->version);
    fv__serve_sb_printf(o, ",\"label\":\"%s\",\"sha256\":\"%s\"},\"fallback\":%s,\"results\":",
                        fv_release_label_name(label), rm->sha256, fallback ? "true" : "false");
    snprintf(j->version, sizeof j->version, "%s", rm->version);
    j->answered = label;
}

static void run_job(serve_t *s, serve_job_t *j, unsigned idx)
{
    fv_route_pick_t *p = &j->pick;
    size_t n_rows = fv_score_json_n_rows(j->req);
    double *scores = calloc(n_rows, sizeof *scores);
    double *shadow_scores = calloc(n_rows, sizeof *shadow_scores);
    fv_route_outcome_t oc = {0};
    sbuf_t res = {0};
    size_t n_ok = 0;
    uint64_t lat = 0;
    uint64_t t0 = now_us_real();
    int r = score_timed(s, p->model->obj, p->label, idx, j->req, &res, &n_ok, scores, &lat);
    oc.latency_us = lat;
    oc.failed = r != 0;
    bool missed = s->cfg->route.deadline_us > 0 && lat > s->cfg->route.deadline_us;
    bool fallback = p->label == FV_RELEASE_BACKUP;
    fv_route_model_t *answer = p->model;
    fv_release_label_t label = p->label;
    if ((r != 0 || missed) && p->backup != NULL && p->backup != p->model) {
        sbuf_t b = {0};
        size_t b_ok = 0;
        uint64_t b_lat = 0;
        int rb = score_timed(s, p->backup->obj, FV_RELEASE_BACKUP, idx, j->req, &b, &b_ok, scores,
                             &b_lat);
        if (rb == 0) {
            free(res.p);
            res = b;
            n_ok = b_ok;
            r = 0;
            answer = p->backup;
            label = FV_RELEASE_BACKUP;
            fallback = true;
            oc.answered_by_backup = true;
        } else {
            free(b.p);
        }
    }
    if (r == 0 && p->shadow != NULL && shadow_scores != NULL && scores != NULL) {
        sbuf_t sh = {0};
        size_t sh_ok = 0;
        uint64_t sh_lat = 0;
        for (size_t i = 0; i < n_rows; i++)
            shadow_scores[i] = scores[i];
        if (score_timed(s, p->shadow->obj, FV_RELEASE_CANARY, idx, j->req, &sh, &sh_ok,
                        shadow_scores, &sh_lat) == 0) {
            for (size_t i = 0; i < n_rows; i++)
                if (fabs(shadow_scores[i] - scores[i]) > SHADOW_TOL)
                    oc.shadow_diverged = true;
        }
        free(sh.p);
    }
    if (r != 0) {
        char why[256];
        snprintf(why, sizeof why, "model %s (%s) could not score: %s and no backup could",
                 p->model->version, fv_release_label_name(p->label), fv_strerror(r));
        json_t *e = json_pack("{s:s}", "error", why);
        char *t = e != NULL ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        if (t != NULL)
            fv__serve_sb_put(&j->out, t, strlen(t));
        free(t);
        j->status = 500;
        j->outcome = "error";
        snprintf(j->version, sizeof j->version, "%s", p->model->version);
        j->answered = p->label;
    } else {
        answer_head(j, answer, label, fallback);
        fv__serve_sb_put(&j->out, res.p != NULL ? res.p : "[]", res.p != NULL ? res.len : 2);
        fv__serve_sb_put(&j->out, "}", 1);
        j->status = n_ok == 0 ? 422 : 200;
        j->outcome = n_ok == 0 ? "rows_bad" : fallback ? "fallback" : "ok";
        if (res.oom) {
            j->status = 500;
            j->outcome = "error";
        }
    }
    j->seconds = (double)(now_us_real() - t0) / 1e6;
    if (s->cfg->test_hooks && !s->cfg->test_sleep)
        j->seconds += (double)atomic_load(&s->delay_us[p->label]) / 1e6;
    free(res.p);
    free(scores);
    free(shadow_scores);
    fv_route_done(s->route, p, &oc);
    memset(p, 0, sizeof *p);
}

/* ---- the pool ----------------------------------------------------------------------- */

typedef struct worker_arg {
    serve_t *s;
    unsigned idx;
} worker_arg_t;

static void *worker_main(void *arg)
{
    worker_arg_t *wa = arg;
    serve_t *s = wa->s;
    unsigned idx = wa->idx;
    free(wa);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->q_head == NULL && !s->pool_stop)
            pthread_cond_wait(&s->cv, &s->mu);
        serve_job_t *j = s->q_head;
        if (j == NULL)
            break; /* stopping and drained */
        s->q_head = j->next;
        if (s->q_head == NULL)
            s->q_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        run_job(s, j, idx);
        pthread_mutex_lock(&s->mu);
        j->next = s->done;
        s->done = j;
        uv_async_send(&s->async);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int fv__serve_pool_start(serve_t *s, fv_diag_t *d)
{
    s->threads = calloc(s->cfg->threads, sizeof *s->threads);
    if (s->threads == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    for (unsigned i = 0; i < s->cfg->threads; i++) {
        worker_arg_t *wa = malloc(sizeof *wa);
        if (wa == NULL)
            return fv_diag_set(d, FV_ENOMEM, "out of memory");
        wa->s = s;
        wa->idx = i;
        int e = pthread_create(&s->threads[i], NULL, worker_main, wa);
        if (e != 0) {
            free(wa);
            return fv_diag_set(d, FV_EIO, "cannot start worker thread %u: %s", i, strerror(e));
        }
        s->n_threads++;
    }
    return 0;
}

void fv__serve_pool_stop(serve_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->pool_stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < s->n_threads; i++)
        pthread_join(s->threads[i], NULL);
    s->n_threads = 0;
    free(s->threads);
    s->threads = NULL;
}

void fv__serve_pool_submit(serve_t *s, serve_job_t *j)
{
    j->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->q_tail != NULL)
        s->q_tail->next = j;
    else
        s->q_head = j;
    s->q_tail = j;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void fv__serve_job_free(serve_job_t *j)
{
    if (j == NULL)
        return;
    fv_score_json_free(j->req);
    free(j->out.p);
    free(j);
}
