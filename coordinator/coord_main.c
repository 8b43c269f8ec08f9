/* coord_main.c - fedvault-coordinator: runs a job's rounds over the federation.
 *
 * One libuv loop owns everything: the TLS server (protocols/fv_conn.h), the registry of
 * connected agents (by certificate name), and the job runner below. The message sequence
 * is the "ROUNDS" comment of protocols/fv_wire.h; the arithmetic of what agents send is
 * protocols/fv_fed.h; the secure sum is protocols/fv_secagg.h's server.
 *
 * Job runner states: WAITING (fewer than min_agents accepted the job) -> ROUND (the
 * cohort = accepted, connected agents at round start, sorted by name) -> WAITING/next
 * ROUND -> DONE. Round 0 sums the agents' feature moments (stats); rounds 1..R train.
 * Each phase has a deadline (job deadlines_ms); agents that do not answer in time, or
 * disconnect, are dropouts: a SecAgg phase closes with the survivors when at least t
 * answered, else the round aborts (ROUND_END with the code) and the next round starts
 * with the same global model. Masked (or plain) uploads are admitted a few at a time
 * (--max-uploads), so the coordinator holds O(max_uploads * d) of upload buffers plus one
 * accumulator, whatever the cohort size.
 *
 * Ordering: everything sent to one agent goes through that agent's FIFO (outq), and a
 * vector blocks the queue until fully handed to the socket, so an agent always receives
 * e.g. the model before the ROUND_START that names it.
 *
 * Early stopping: round r's global validation metrics (from summed histograms) judge the
 * model sent in round r. The best one (by the job's metric) is kept; the job stops after
 * `patience` rounds without improvement or after `rounds`, and the best model is the
 * result. With patience 0 (no early stopping) the result is the model after the last
 * update instead, which no round evaluated.
 *
 * Output (--out DIR): model-rNNNN.fvm for every global model version (round N's model),
 * final.fvm, rounds.jsonl (one line per round). Logs: JSON lines on stderr. The final
 * summary: one JSON object on stdout.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv-config.h"
#include "fv_conn.h"
#include "fv_crypto.h"
#include "fv_fed.h"
#include "fv_fixed.h"
#include "fv_job.h"
#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_model.h"
#include "fv_preproc.h"
#include "fv_secagg.h"
#include "fv_tls.h"
#include "fv_wire.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* ---- logging ------------------------------------------------------------------- */

static void logj(const char *level, const char *event, json_t *fields)
{
    json_t *o = fields != NULL ? fields : json_object();
    struct timespec ts;
    struct tm tm;
    char buf[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
    json_object_set_new(o, "ts", json_string(buf));
    json_object_set_new(o, "level", json_string(level));
    json_object_set_new(o, "event", json_string(event));
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (s != NULL) {
        fprintf(stderr, "%s\n", s);
        fflush(stderr);
        free(s);
    }
    json_decref(o);
}

/* ---- per-agent outgoing FIFO --------------------------------------------------- */

typedef struct outitem {
    struct outitem *next;
    bool is_vec;
    fv_msg_t m;         /* pointers into owned */
    uint8_t *owned;     /* copies of borrowed fields */
    uint32_t vec_id;
    fv_vec_dtype_t dtype;
    const void *vec;    /* borrowed: coordinator-owned, alive until the queue drains */
    void *vec_owned;    /* or owned */
    uint64_t n_elems;
    char name[16];
} outitem_t;

typedef struct agent {
    struct agent *next;
    char name[FV_NAME_MAX + 1];
    fv_conn_t *conn;     /* NULL when disconnected */
    uint8_t sign_pk[32];
    bool accepted;
    uint64_t rows;
    uint8_t dsha[32];
    bool has_model;
    uint8_t model[32];
    bool has_stats;
    /* outgoing */
    outitem_t *oq_head, *oq_tail;
    bool vec_busy;
    /* round */
    int idx;            /* cohort index, -1 if not in the round's cohort */
    fv_conn_t *round_conn; /* the session that got ROUND_START (a reconnect is another) */
    bool alive;         /* in the cohort and still connected */
    bool answered;      /* answered the current phase */
    bool granted, uploaded;
    void *upload;       /* buffer of the vector being received */
} agent_t;

typedef enum { ST_WAITING, ST_ROUND, ST_DONE } cstate_t;

typedef struct coord {
    uv_loop_t *loop;
    fv_tls_ctx_t *ctx;
    fv_server_t *server;
    uv_timer_t timer;
    uv_signal_t sigint, sigterm, sighup;
    fv_job_t *job;
    char *spec;
    size_t spec_len;
    uint8_t digest[32];
    char job_hex[17];
    uint64_t job_id64;
    const char *out_dir;
    unsigned max_uploads;
    agent_t *agents;
    cstate_t state;
    /* the round */
    uint64_t round;     /* 0 = stats */
    uint32_t kind;
    agent_t **cohort;
    uint32_t n, t, k;
    uint32_t dim;       /* words (secagg) / elements (plain) */
    fv_secagg_server_t *sa;
    fv_secagg_outbox_t outbox;
    int phase;          /* secagg phase being collected, or 2 for plain uploads */
    uint64_t phase_deadline;
    unsigned in_flight;
    double *acc_f;      /* plain train: float sums in double */
    uint32_t *acc_u;    /* plain stats: word sums */
    uint32_t n_summands;
    uint64_t t_round_start;
    uint64_t rounds_done, rounds_failed;
    /* model */
    fv_schema_t *schema;    /* copy owned by preproc's user (the model) */
    fv_preproc_t *preproc;
    fv_fed_stats_layout_t slay;
    fv_fed_layout_t lay;
    uint32_t *stats_sum;
    uint64_t n_ref;
    fv_mlp_t *global;
    uint8_t model_hash[32];
    fv_fed_server_opt_t *sopt;
    fv_mlp_t *best;
    const fv_mlp_t *final; /* best or global, once the job is done */
    double best_metric;
    uint64_t best_round;
    uint32_t since_best;
    double last_auc, last_pr, last_loss;
    FILE *rounds_log;
    int exit_code;
    char fail_why[512];
} coord_t;

static void hex8(const uint8_t *p, char out[17])
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static json_t *jf(coord_t *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "job", json_string(c->job_hex));
    if (c->state == ST_ROUND)
        json_object_set_new(o, "round", json_integer((json_int_t)c->round));
    return o;
}

static void oq_pump(agent_t *a);
static void oq_pump_all(void);
/* Vectors (models, stats) being sent, over all agents: at most vec_sends_max at once, so
 * the coordinator's send buffers (each connection queues up to its low-water mark of
 * ciphertext) do not grow with the number of agents. One coordinator per process. */
static unsigned g_vec_sends, g_vec_sends_max = 2;
static struct agent **g_agents; /* &coord.agents, for oq_pump_all */

/* Queues a copy of m. When m borrows a buffer (field: the address of that pointer
 * member inside *m), the buffer's owned_len bytes are copied and the copy's member is
 * pointed at them, so the caller's buffer may go away at once. */
static void oq_push_msg(agent_t *a, const fv_msg_t *m, const void *owned_src, size_t owned_len,
                        const void **field)
{
    if (a->conn == NULL)
        return;
    outitem_t *it = calloc(1, sizeof *it);
    if (it == NULL)
        return;
    it->m = *m;
    if (owned_len > 0) {
        it->owned = malloc(owned_len);
        if (it->owned == NULL) {
            free(it);
            return;
        }
        memcpy(it->owned, owned_src, owned_len);
        /* re-point the borrowed field at the copy: field is its offset in m */
        size_t off = (size_t)((const uint8_t *)field - (const uint8_t *)m);
        memcpy((uint8_t *)&it->m + off, &it->owned, sizeof(void *));
    }
    if (a->oq_tail != NULL)
        a->oq_tail->next = it;
    else
        a->oq_head = it;
    a->oq_tail = it;
    oq_pump(a);
}

static void oq_push_vec(agent_t *a, uint32_t id, fv_vec_dtype_t dtype, const void *vec,
                        void *owned, uint64_t n, const char *name)
{
    if (a->conn == NULL) {
        free(owned);
        return;
    }
    outitem_t *it = calloc(1, sizeof *it);
    if (it == NULL) {
        free(owned);
        return;
    }
    it->is_vec = true;
    it->vec_id = id;
    it->dtype = dtype;
    it->vec = owned != NULL ? owned : vec;
    it->vec_owned = owned;
    it->n_elems = n;
    snprintf(it->name, sizeof it->name, "%s", name);
    if (a->oq_tail != NULL)
        a->oq_tail->next = it;
    else
        a->oq_head = it;
    a->oq_tail = it;
    oq_pump(a);
}

static void oq_clear(agent_t *a)
{
    outitem_t *it = a->oq_head;
    if (a->vec_busy && it != NULL)
        it = it->next; /* the vector in flight is freed when the connection closes */
    while (it != NULL) {
        outitem_t *next = it->next;
        free(it->owned);
        free(it->vec_owned);
        free(it);
        it = next;
    }
    if (a->vec_busy && a->oq_head != NULL) {
        free(a->oq_head->owned);
        free(a->oq_head->vec_owned);
        free(a->oq_head);
    }
    a->oq_head = a->oq_tail = NULL;
    if (a->vec_busy) {
        a->vec_busy = false;
        g_vec_sends--;
        oq_pump_all();
    }
}

static void oq_pump(agent_t *a)
{
    while (a->conn != NULL && !a->vec_busy && a->oq_head != NULL) {
        outitem_t *it = a->oq_head;
        if (it->is_vec) {
            if (g_vec_sends >= g_vec_sends_max)
                return; /* oq_pump_all resumes it when a send slot frees */
            /* Busy before the call: a small vector is fully queued, and on_vec_sent run,
             * inside fv_conn_send_vec. */
            a->vec_busy = true;
            g_vec_sends++;
            int r = fv_conn_send_vec(a->conn, it->vec_id, it->dtype, it->vec, it->n_elems,
                                     it->name);
            if (r == 0)
                return; /* on_vec_sent pops it (maybe already did) */
            a->vec_busy = false;
            g_vec_sends--;
            logj("warn", "send_failed",
                 json_pack("{s:s,s:s,s:s}", "agent", a->name, "what", it->name, "err",
                           fv_err_name(r)));
        } else {
            fv_conn_send(a->conn, &it->m);
        }
        a->oq_head = it->next;
        if (a->oq_head == NULL)
            a->oq_tail = NULL;
        free(it->owned);
        free(it->vec_owned);
        free(it);
    }
}

static void oq_pump_all(void)
{
    static bool running;
    if (running || g_agents == NULL)
        return; /* the outer loop sees what nested sends changed */
    running = true;
    for (struct agent *a = *g_agents; a != NULL && g_vec_sends < g_vec_sends_max; a = a->next)
        oq_pump(a);
    running = false;
}

/* ---- helpers ------------------------------------------------------------------- */

static agent_t *agent_by_name(coord_t *c, const char *name)
{
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

static void params_hash(const fv_mlp_t *m, uint8_t out[32])
{
    /* SHA-256 of the parameters' little-endian bytes = the VEC_END digest. The hosts we
     * build for are little-endian; fv_wire converts on others, and so must this. */
    fv_sha256(out, fv_mlp_params_const(m), fv_mlp_n_params(m) * sizeof(float));
}

static uint64_t now_ms(coord_t *c)
{
    uv_update_time(c->loop);
    return uv_now(c->loop);
}

static void send_ctl(coord_t *c, agent_t *a, fv_msg_type_t type, int32_t status,
                     const char *reason)
{
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = type;
    switch (type) {
    case FV_MSG_UPLOAD_GO:
        memcpy(m.u.upload_go.job, c->digest, 32);
        m.u.upload_go.round = c->round;
        oq_push_msg(a, &m, NULL, 0, NULL);
        break;
    case FV_MSG_ROUND_END:
        memcpy(m.u.round_end.job, c->digest, 32);
        m.u.round_end.round = c->round;
        m.u.round_end.status = status;
        m.u.round_end.reason.ptr = reason;
        m.u.round_end.reason.len = strnlen(reason, FV_WIRE_TEXT_MAX);
        oq_push_msg(a, &m, reason, m.u.round_end.reason.len + 1,
                    (const void **)&m.u.round_end.reason.ptr);
        break;
    case FV_MSG_JOB_DONE:
        memcpy(m.u.job_done.job, c->digest, 32);
        m.u.job_done.rounds = c->rounds_done;
        if (c->final != NULL)
            params_hash(c->final, m.u.job_done.model);
        oq_push_msg(a, &m, NULL, 0, NULL);
        break;
    default:
        break;
    }
}

static void send_offer(coord_t *c, agent_t *a)
{
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_JOB_OFFER;
    memcpy(m.u.job_offer.job, c->digest, 32);
    m.u.job_offer.spec = (const uint8_t *)c->spec;
    m.u.job_offer.spec_len = c->spec_len;
    oq_push_msg(a, &m, c->spec, c->spec_len, (const void **)&m.u.job_offer.spec);
}

static void send_stats(coord_t *c, agent_t *a)
{
    if (c->stats_sum == NULL || a->has_stats)
        return;
    uint32_t *copy = malloc((size_t)c->slay.dim * 4);
    if (copy == NULL)
        return;
    memcpy(copy, c->stats_sum, (size_t)c->slay.dim * 4);
    oq_push_vec(a, 0, FV_VEC_U32, NULL, copy, c->slay.dim, "stats");
    a->has_stats = true;
}

static size_t n_accepted(coord_t *c)
{
    size_t n = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL && a->accepted)
            n++;
    return n;
}

static void round_start(coord_t *c);
static void round_finish(coord_t *c, int status, const char *why);

/* ---- model versions ------------------------------------------------------------ */

static int save_model(coord_t *c, const fv_mlp_t *mlp, const char *path, uint64_t round)
{
    fv_diag_t d;
    char *sj = NULL;
    size_t sl = 0;
    fv_schema_t *s = NULL;
    fv_preproc_t *p = NULL;
    fv_mlp_t *m = NULL;
    int r = fv_schema_to_json(c->job->schema, &sj, &sl);
    if (r == 0)
        r = fv_schema_from_json("job schema", sj, sl, &s, &d);
    free(sj);
    if (r == 0) {
        fv_fed_stats_t st;
        memset(&st, 0, sizeof st);
        r = fv_fed_stats_decode(&c->slay, c->stats_sum, &st, &d);
        if (r == 0)
            r = fv_preproc_from_moments(s, st.count, st.sum, st.sumsq, &p);
        fv_fed_stats_close(&st);
    }
    if (r == 0)
        r = fv_mlp_clone(mlp, &m);
    json_t *meta = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "producer", "fedvault-coordinator",
                             "version", FV_VERSION, "commit", FV_COMMIT, "job", c->job_hex,
                             "round", (json_int_t)round, "n_ref", (json_int_t)c->n_ref);
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    fv_model_t *model = NULL;
    if (r == 0) {
        r = fv_model_new(s, p, m, meta_s, &model);
        s = NULL, p = NULL, m = NULL, meta_s = NULL;
    }
    if (r == 0)
        r = fv_model_save(model, path, &d);
    if (r != 0)
        logj("error", "model_save_failed",
             json_pack("{s:s,s:s}", "path", path, "err", fv_err_name(r)));
    fv_model_free(model);
    fv_preproc_free(p);
    fv_schema_free(s);
    fv_mlp_free(m);
    free(meta_s);
    return r;
}

/* ---- the round ------------------------------------------------------------------ */

static void grant_uploads(coord_t *c)
{
    for (uint32_t i = 0; i < c->n && c->in_flight < c->max_uploads; i++) {
        agent_t *a = c->cohort[i];
        if (a->alive && !a->granted && !a->uploaded) {
            a->granted = true;
            c->in_flight++;
            send_ctl(c, a, FV_MSG_UPLOAD_GO, 0, "");
        }
    }
}

static uint32_t n_alive_unanswered(coord_t *c)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->cohort[i]->alive && !c->cohort[i]->answered)
            n++;
    return n;
}

static void set_deadline(coord_t *c)
{
    uint64_t ms = c->job->deadlines.secagg_phase_ms;
    if (c->phase == 0 || c->phase == 2)
        ms = c->job->deadlines.train_ms; /* model transfer and local training */
    c->phase_deadline = now_ms(c) + ms;
    for (uint32_t i = 0; i < c->n; i++)
        c->cohort[i]->answered = false;
}

/* Ends the SecAgg phase being collected and sends the next phase's messages. */
static void secagg_close(coord_t *c)
{
    fv_diag_t d;
    fv_secagg_outbox_clear(&c->outbox);
    int r = fv_secagg_server_close_phase(c->sa, &c->outbox, &d);
    if (r != 0) {
        round_finish(c, r, d.msg);
        return;
    }
    int ph = fv_secagg_server_phase(c->sa);
    json_t *f = jf(c);
    json_object_set_new(f, "closed_phase", json_integer(c->phase));
    json_object_set_new(f, "survivors", json_integer(fv_secagg_server_set_size(c->sa,
                                                                   c->phase + 1 > 5 ? 5 : c->phase + 1)));
    logj("info", "phase_closed", f);
    if (ph == 5) {
        round_finish(c, 0, "");
        return;
    }
    c->phase = ph;
    set_deadline(c);
    for (size_t i = 0; i < c->outbox.n; i++) {
        const fv_secagg_outmsg_t *om = &c->outbox.msgs[i];
        if (om->to >= c->n)
            continue;
        agent_t *a = c->cohort[om->to];
        if (!a->alive)
            continue;
        fv_msg_t m;
        memset(&m, 0, sizeof m);
        m.type = FV_MSG_SECAGG;
        memcpy(m.u.secagg.job, c->digest, 32);
        m.u.secagg.round = c->round;
        m.u.secagg.data = om->data;
        m.u.secagg.len = om->len;
        oq_push_msg(a, &m, om->data, om->len, (const void **)&m.u.secagg.data);
    }
    if (c->phase == 2) {
        c->in_flight = 0;
        for (uint32_t i = 0; i < c->n; i++)
            c->cohort[i]->granted = c->cohort[i]->uploaded = false;
        grant_uploads(c);
    }
}

static void phase_progress(coord_t *c)
{
    if (c->state != ST_ROUND)
        return;
    if (n_alive_unanswered(c) > 0)
        return;
    if (c->sa != NULL)
        secagg_close(c);
    else
        round_finish(c, 0, "");
}

static void round_cleanup(coord_t *c)
{
    for (uint32_t i = 0; i < c->n; i++) {
        agent_t *a = c->cohort[i];
        free(a->upload);
        a->upload = NULL;
        a->idx = -1;
        a->round_conn = NULL;
        a->alive = a->granted = a->uploaded = a->answered = false;
    }
    free(c->cohort);
    c->cohort = NULL;
    c->n = 0;
    fv_secagg_server_free(c->sa);
    c->sa = NULL;
    fv_secagg_outbox_clear(&c->outbox);
    free(c->acc_f);
    c->acc_f = NULL;
    free(c->acc_u);
    c->acc_u = NULL;
}

static void job_finish(coord_t *c);

static bool better(coord_t *c, double v)
{
    if (isnan(v))
        return false;
    if (isnan(c->best_metric))
        return true;
    if (c->job->early_stopping.metric == FV_JOB_METRIC_LOG_LOSS)
        return v < c->best_metric - c->job->early_stopping.min_delta;
    return v > c->best_metric + c->job->early_stopping.min_delta;
}

/* Stats round done: global preprocessing, initial model, server optimizer. */
static int after_stats(coord_t *c, const uint32_t *sum, char *why, size_t why_len)
{
    fv_diag_t d;
    fv_fed_stats_t st;
    memset(&st, 0, sizeof st);
    int r = fv_fed_stats_decode(&c->slay, sum, &st, &d);
    if (r != 0) {
        snprintf(why, why_len, "stats: %.400s", d.msg);
        return r;
    }
    c->n_ref = st.n_rows;
    c->stats_sum = malloc((size_t)c->slay.dim * 4);
    if (c->stats_sum == NULL) {
        fv_fed_stats_close(&st);
        return FV_ENOMEM;
    }
    memcpy(c->stats_sum, sum, (size_t)c->slay.dim * 4);
    r = fv_preproc_from_moments(c->job->schema, st.count, st.sum, st.sumsq, &c->preproc);
    fv_fed_stats_close(&st);
    if (r != 0)
        return r;
    fv_mlp_arch_t arch;
    r = fv_mlp_parse_arch(c->job->model, fv_preproc_n_features(c->preproc),
                          fv_schema_n_classes(c->job->schema), &arch, &d);
    if (r == 0)
        r = fv_mlp_new(&arch, &c->global);
    if (r != 0) {
        snprintf(why, why_len, "model: %.400s", d.msg);
        return r;
    }
    fv_mlp_init(c->global, c->job->seed);
    params_hash(c->global, c->model_hash);
    r = fv_fed_server_opt_new(c->job, fv_mlp_n_params(c->global), &c->sopt);
    fv_fed_layout_init(&c->lay, fv_mlp_n_params(c->global),
                       fv_schema_positive(c->job->schema) != NULL ? c->job->hist_bins : 0);
    logj("info", "stats_ready",
         json_pack("{s:s,s:I,s:I,s:I}", "job", c->job_hex, "n_ref", (json_int_t)c->n_ref,
                   "features", (json_int_t)fv_preproc_n_features(c->preproc), "params",
                   (json_int_t)fv_mlp_n_params(c->global)));
    return r;
}

static int after_train(coord_t *c, const fv_fed_result_t *res)
{
    double metric = c->job->early_stopping.metric == FV_JOB_METRIC_ROC_AUC  ? res->val_roc_auc
                    : c->job->early_stopping.metric == FV_JOB_METRIC_PR_AUC ? res->val_pr_auc
                                                                            : res->val_log_loss;
    c->last_auc = res->val_roc_auc;
    c->last_pr = res->val_pr_auc;
    c->last_loss = res->val_log_loss;
    char path[4096];
    snprintf(path, sizeof path, "%s/model-r%04" PRIu64 ".fvm", c->out_dir, c->round);
    save_model(c, c->global, path, c->round);
    bool imp = better(c, metric);
    if (imp) {
        fv_mlp_free(c->best);
        c->best = NULL;
        if (fv_mlp_clone(c->global, &c->best) != 0)
            return FV_ENOMEM;
        c->best_metric = metric;
        c->best_round = c->round;
        c->since_best = 0;
    } else {
        c->since_best++;
    }
    json_t *line = json_pack(
        "{s:s,s:I,s:i,s:I,s:f,s:f,s:f,s:b,s:f}", "job", c->job_hex, "round",
        (json_int_t)c->round, "agents", (int)c->n_summands, "n_val", (json_int_t)res->n_val,
        "val_roc_auc", res->val_roc_auc, "val_pr_auc", res->val_pr_auc, "val_log_loss",
        res->val_log_loss, "improved", imp, "secs",
        (double)(now_ms(c) - c->t_round_start) / 1000.0);
    char *s = json_dumps(line, JSON_COMPACT);
    if (s != NULL && c->rounds_log != NULL) {
        fprintf(c->rounds_log, "%s\n", s);
        fflush(c->rounds_log);
    }
    free(s);
    logj("info", "round_metrics", line);
    /* The update: global += strategy(delta_mean). */
    int r = fv_fed_server_opt_apply(c->sopt, fv_mlp_params(c->global), res->delta_mean);
    params_hash(c->global, c->model_hash);
    return r;
}

static bool job_should_stop(coord_t *c)
{
    if (c->round >= c->job->rounds)
        return true;
    return c->job->early_stopping.patience > 0 &&
           c->since_best >= c->job->early_stopping.patience;
}

static void round_finish(coord_t *c, int status, const char *why_in)
{
    char why[512];
    snprintf(why, sizeof why, "%s", why_in);
    if (status == 0) {
        fv_diag_t d;
        const uint32_t *sum = NULL;
        if (c->sa != NULL) {
            status = fv_secagg_server_result(c->sa, &sum);
            c->n_summands = fv_secagg_server_set_size(c->sa, 3);
        } else {
            sum = c->acc_u;
        }
        if (status == 0 && c->n_summands == 0) {
            status = FV_ETHRESHOLD;
            snprintf(why, sizeof why, "no agent contributed");
        } else if (status == 0 && c->kind == 1) {
            status = after_stats(c, sum, why, sizeof why);
        } else if (status == 0 && c->sa != NULL) {
            fv_fed_result_t res;
            memset(&res, 0, sizeof res);
            status = fv_fed_decode(&c->lay, sum, c->n_summands, c->job->secagg.clip,
                                   c->job->secagg.bits, (double)c->n_ref, &res, &d);
            if (status == 0)
                status = after_train(c, &res);
            else
                snprintf(why, sizeof why, "%s", d.msg);
            fv_fed_result_close(&res);
        } else if (status == 0) {
            /* Plain FedAvg: acc_f holds [sum w delta][n_train][hist pos][hist neg][loss][n_val]. */
            size_t P = c->lay.n_params, B = c->lay.hist_bins;
            fv_fed_result_t res;
            memset(&res, 0, sizeof res);
            double wsum = c->acc_f[P] / (double)c->n_ref;
            res.delta_mean = malloc(P * sizeof(float));
            res.hist_pos = calloc(B + 1, sizeof(uint64_t));
            res.hist_neg = calloc(B + 1, sizeof(uint64_t));
            if (res.delta_mean == NULL || res.hist_pos == NULL || res.hist_neg == NULL ||
                wsum <= 0) {
                status = wsum <= 0 ? FV_EEMPTY : FV_ENOMEM;
                snprintf(why, sizeof why, "no training rows in the sum");
            } else {
                for (size_t i = 0; i < P; i++)
                    res.delta_mean[i] = (float)(c->acc_f[i] / wsum);
                for (size_t b = 0; b < B; b++) {
                    res.hist_pos[b] = (uint64_t)llround(c->acc_f[P + 1 + b]);
                    res.hist_neg[b] = (uint64_t)llround(c->acc_f[P + 1 + B + b]);
                }
                res.loss_sum = c->acc_f[P + 1 + 2 * B];
                res.n_val = (uint64_t)llround(c->acc_f[P + 2 + 2 * B]);
                res.val_roc_auc = res.val_pr_auc = NAN;
                if (B > 0) {
                    fv_metrics_hist_roc_auc(res.hist_pos, res.hist_neg, B, &res.val_roc_auc);
                    fv_metrics_hist_pr_auc(res.hist_pos, res.hist_neg, B, &res.val_pr_auc);
                }
                res.val_log_loss = res.n_val > 0 ? res.loss_sum / (double)res.n_val : NAN;
                status = after_train(c, &res);
            }
            free(res.delta_mean);
            free(res.hist_pos);
            free(res.hist_neg);
        }
    }
    for (uint32_t i = 0; i < c->n; i++)
        if (c->cohort[i]->conn != NULL && c->cohort[i]->conn == c->cohort[i]->round_conn)
            send_ctl(c, c->cohort[i], FV_MSG_ROUND_END, status, status == 0 ? "" : why);
    json_t *f = jf(c);
    json_object_set_new(f, "status", json_string(fv_err_name(status)));
    json_object_set_new(f, "contributors", json_integer(c->n_summands));
    if (status != 0)
        json_object_set_new(f, "why", json_string(why));
    logj(status == 0 ? "info" : "warn", status == 0 ? "round_done" : "round_aborted", f);
    bool was_stats = c->kind == 1;
    round_cleanup(c);
    if (status == 0) {
        c->rounds_done++;
        if (was_stats)
            for (agent_t *a = c->agents; a != NULL; a = a->next)
                if (a->conn != NULL && a->accepted)
                    send_stats(c, a);
    } else {
        c->rounds_failed++;
    }
    if (was_stats && c->stats_sum == NULL) {
        /* The stats round must succeed before training: retry it. */
        if (c->rounds_failed > 10) {
            snprintf(c->fail_why, sizeof c->fail_why, "the stats round failed 10 times: %.400s",
                     why);
            c->exit_code = EXIT_FAIL;
            job_finish(c);
            return;
        }
        c->state = ST_WAITING;
        round_start(c);
        return;
    }
    if (!was_stats && (job_should_stop(c) || c->rounds_failed > c->job->rounds)) {
        if (c->rounds_failed > c->job->rounds)
            snprintf(c->fail_why, sizeof c->fail_why, "%" PRIu64 " rounds aborted: %.400s",
                     c->rounds_failed, why);
        job_finish(c);
        return;
    }
    c->round++;
    c->state = ST_WAITING;
    round_start(c);
}

static int cmp_agent_name(const void *a, const void *b)
{
    const agent_t *x = *(agent_t *const *)a, *y = *(agent_t *const *)b;
    return strcmp(x->name, y->name);
}

static void round_start(coord_t *c)
{
    if (c->state != ST_WAITING)
        return;
    size_t n = n_accepted(c);
    if (n < c->job->min_agents)
        return; /* waits for more agents */
    fv_diag_t d;
    c->cohort = calloc(n, sizeof *c->cohort);
    if (c->cohort == NULL)
        return;
    c->n = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL && a->accepted)
            c->cohort[c->n++] = a;
    qsort(c->cohort, c->n, sizeof *c->cohort, cmp_agent_name);
    c->kind = c->stats_sum == NULL ? 1 : 2;
    if (c->kind == 1)
        c->round = 0;
    else if (c->round == 0)
        c->round = 1;
    c->state = ST_ROUND;
    c->t_round_start = now_ms(c);
    c->n_summands = 0;
    /* Words of the SecAgg/stats vector, or floats of the plain update
     * [P: w delta][n_train][B: hist pos][B: hist neg][loss sum][n_val]. */
    if (c->kind == 1)
        c->dim = (uint32_t)c->slay.dim;
    else if (c->job->secagg.on)
        c->dim = (uint32_t)c->lay.dim;
    else
        c->dim = (uint32_t)(c->lay.n_params + 2 * c->lay.hist_bins + 3);
    uint8_t gseed[32];
    randombytes_buf(gseed, sizeof gseed);
    uint8_t *pks = malloc((size_t)c->n * 32);
    if (pks == NULL) {
        round_finish(c, FV_ENOMEM, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        c->cohort[i]->idx = (int)i;
        c->cohort[i]->alive = true;
        c->cohort[i]->round_conn = c->cohort[i]->conn;
        memcpy(pks + (size_t)i * 32, c->cohort[i]->sign_pk, 32);
    }
    c->t = c->k = 0;
    int r = 0;
    if (c->job->secagg.on) {
        r = fv_job_secagg_for(c->job, c->n, &c->t, &c->k, &d);
        if (r == 0) {
            fv_secagg_params_t p;
            memset(&p, 0, sizeof p);
            p.job_id = c->job_id64;
            p.round = c->round;
            p.n_clients = c->n;
            p.threshold = c->t;
            p.n_neighbors = c->k;
            p.dim = c->dim;
            p.prg = FV_PRG_DEFAULT;
            memcpy(p.graph_seed, gseed, 32);
            p.quant_bits = 0;
            p.identity_pks = pks;
            r = fv_secagg_server_new(&p, &c->sa, &d);
        }
        if (r != 0) {
            free(pks);
            round_finish(c, r, d.msg);
            return;
        }
        c->phase = 0;
    } else {
        c->t = c->n;
        c->k = c->n - 1;
        c->phase = 2;
        if (c->kind == 1)
            c->acc_u = calloc(c->dim, sizeof(uint32_t));
        else
            c->acc_f = calloc(c->dim, sizeof(double));
        if (c->acc_u == NULL && c->acc_f == NULL) {
            free(pks);
            round_finish(c, FV_ENOMEM, "out of memory");
            return;
        }
    }
    json_t *f = jf(c);
    json_object_set_new(f, "kind", json_string(c->kind == 1 ? "stats" : "train"));
    json_object_set_new(f, "cohort", json_integer(c->n));
    json_object_set_new(f, "threshold", json_integer(c->t));
    json_object_set_new(f, "neighbors", json_integer(c->k));
    json_object_set_new(f, "secagg", json_boolean(c->job->secagg.on));
    logj("info", "round_start", f);
    for (uint32_t i = 0; i < c->n; i++) {
        agent_t *a = c->cohort[i];
        if (c->kind == 2 && (!a->has_model || memcmp(a->model, c->model_hash, 32) != 0)) {
            oq_push_vec(a, (uint32_t)c->round, FV_VEC_F32, fv_mlp_params_const(c->global), NULL,
                        fv_mlp_n_params(c->global), "model");
            a->has_model = true;
            memcpy(a->model, c->model_hash, 32);
        }
        fv_msg_t m;
        memset(&m, 0, sizeof m);
        m.type = FV_MSG_ROUND_START;
        memcpy(m.u.round_start.job, c->digest, 32);
        m.u.round_start.round = c->round;
        m.u.round_start.kind = c->kind;
        m.u.round_start.index = i;
        m.u.round_start.n = c->n;
        m.u.round_start.t = c->t;
        m.u.round_start.k = c->k;
        memcpy(m.u.round_start.gseed, gseed, 32);
        m.u.round_start.pks = pks;
        m.u.round_start.pks_len = (size_t)c->n * 32;
        m.u.round_start.has_model = c->kind == 2;
        memcpy(m.u.round_start.model, c->model_hash, 32);
        m.u.round_start.n_ref = c->n_ref;
        oq_push_msg(a, &m, pks, (size_t)c->n * 32, (const void **)&m.u.round_start.pks);
    }
    free(pks);
    set_deadline(c);
    if (c->sa == NULL)
        grant_uploads(c);
}

/* ---- end of job ------------------------------------------------------------------ */

static void shutdown_all(coord_t *c)
{
    if (c->server != NULL) {
        fv_server_stop(c->server);
        c->server = NULL;
    }
    uv_timer_stop(&c->timer);
    if (!uv_is_closing((uv_handle_t *)&c->timer)) {
        uv_close((uv_handle_t *)&c->timer, NULL);
        uv_close((uv_handle_t *)&c->sigint, NULL);
        uv_close((uv_handle_t *)&c->sigterm, NULL);
        uv_close((uv_handle_t *)&c->sighup, NULL);
    }
}

static void job_finish(coord_t *c)
{
    c->state = ST_DONE;
    /* The result: with early stopping, the best evaluated model (as the local trainer
     * restores its best epoch); without (patience 0), the model after the last update,
     * as fv_train keeps its last parameters. */
    bool last = c->job->early_stopping.patience == 0;
    const fv_mlp_t *final = last ? c->global : c->best;
    if (c->best != NULL && final != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/final.fvm", c->out_dir);
        if (save_model(c, final, path, last ? c->round + 1 : c->best_round) != 0 &&
            c->exit_code == 0)
            c->exit_code = EXIT_FAIL;
        c->final = final;
    } else if (c->exit_code == 0) {
        c->exit_code = EXIT_FAIL;
        snprintf(c->fail_why, sizeof c->fail_why, "no training round completed");
    }
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL && a->accepted)
            send_ctl(c, a, FV_MSG_JOB_DONE, 0, "");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    json_t *f = json_pack("{s:s,s:I,s:I,s:I,s:f,s:I}", "job", c->job_hex, "rounds",
                          (json_int_t)c->rounds_done, "rounds_failed",
                          (json_int_t)c->rounds_failed, "best_round",
                          (json_int_t)c->best_round, "best_metric", c->best_metric,
                          "max_rss_kb", (json_int_t)ru.ru_maxrss);
    if (c->fail_why[0] != '\0')
        json_object_set_new(f, "why", json_string(c->fail_why));
    logj(c->exit_code == 0 ? "info" : "error", "job_done", json_deep_copy(f));
    char *s = json_dumps(f, JSON_COMPACT);
    if (s != NULL)
        printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(f);
    /* Give the agents a moment to read JOB_DONE: the server closes with BYE. */
    shutdown_all(c);
}

/* ---- connection callbacks ------------------------------------------------------ */

static void agent_lost(coord_t *c, agent_t *a);

static void on_open(fv_conn_t *conn, const fv_identity_t *peer)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = agent_by_name(c, peer->name);
    if (a == NULL) {
        a = calloc(1, sizeof *a);
        if (a == NULL) {
            fv_conn_close(conn, FV_ENOMEM, "out of memory");
            return;
        }
        snprintf(a->name, sizeof a->name, "%s", peer->name);
        a->idx = -1;
        a->next = c->agents;
        c->agents = a;
    } else if (a->conn != NULL) {
        fv_conn_t *old = a->conn;
        fv_conn_set_data(old, NULL);
        a->conn = NULL;
        oq_clear(a);
        fv_conn_close(old, FV_EDUP, "replaced by a new connection of the same agent");
        agent_lost(c, a); /* the old session's part in a round is over */
    }
    a->conn = conn;
    memcpy(a->sign_pk, peer->sign_pk, 32);
    a->accepted = false;
    a->has_stats = false;
    fv_conn_set_data(conn, a);
    logj("info", "agent_connected",
         json_pack("{s:s,s:s}", "agent", a->name, "addr", fv_conn_peer_addr(conn)));
    if (c->state != ST_DONE)
        send_offer(c, a);
}

static void agent_lost(coord_t *c, agent_t *a)
{
    if (c->state == ST_ROUND && a->alive) {
        a->alive = false;
        if (a->granted && !a->uploaded && c->in_flight > 0)
            c->in_flight--;
        free(a->upload);
        a->upload = NULL;
        if (c->phase == 2)
            grant_uploads(c);
        phase_progress(c);
    }
}

static void on_close(fv_conn_t *conn, int err, const char *why)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    json_t *f = json_pack("{s:s,s:s,s:s}", "addr", fv_conn_peer_addr(conn), "err",
                          fv_err_name(err), "why", why);
    if (a != NULL)
        json_object_set_new(f, "agent", json_string(a->name));
    logj(err == 0 ? "info" : "warn", a != NULL ? "agent_disconnected" : "conn_closed", f);
    if (a == NULL || a->conn != conn)
        return;
    a->conn = NULL;
    oq_clear(a);
    a->accepted = false;
    if (c != NULL)
        agent_lost(c, a);
}

static bool job_matches(coord_t *c, const uint8_t job[32])
{
    return sodium_memcmp(job, c->digest, 32) == 0;
}

static void protocol_error(agent_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void protocol_error(agent_t *a, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (a->conn != NULL)
        fv_conn_close(a->conn, FV_EPROTO, why);
}

static void on_msg(fv_conn_t *conn, const fv_msg_t *m)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    if (a == NULL)
        return;
    fv_diag_t d;
    switch (m->type) {
    case FV_MSG_JOB_ACCEPT:
        if (!job_matches(c, m->u.job_accept.job))
            do {
                protocol_error(a, "accepted another job");
                return;
            } while (0);
        a->accepted = true;
        a->rows = m->u.job_accept.rows;
        memcpy(a->dsha, m->u.job_accept.data_sha256, 32);
        a->has_model = m->u.job_accept.has_model;
        memcpy(a->model, m->u.job_accept.model, 32);
        {
            char dhex[65];
            sodium_bin2hex(dhex, sizeof dhex, a->dsha, 32);
            logj("info", "job_accepted",
                 json_pack("{s:s,s:s,s:I,s:s}", "agent", a->name, "job", c->job_hex, "rows",
                           (json_int_t)a->rows, "data_sha256", dhex));
        }
        send_stats(c, a);
        round_start(c);
        return;
    case FV_MSG_JOB_REFUSE:
        logj("warn", "job_refused",
             json_pack("{s:s,s:s,s:s#}", "agent", a->name, "job", c->job_hex, "reason",
                       m->u.job_refuse.reason.ptr, (int)m->u.job_refuse.reason.len));
        return;
    case FV_MSG_SECAGG:
        if (!job_matches(c, m->u.secagg.job))
            do {
                protocol_error(a, "secagg message for another job");
                return;
            } while (0);
        if (c->state != ST_ROUND || c->sa == NULL || m->u.secagg.round != c->round ||
            !a->alive) {
            logj("warn", "stale_message",
                 json_pack("{s:s,s:I}", "agent", a->name, "round",
                           (json_int_t)m->u.secagg.round));
            return;
        }
        {
            /* The SecAgg message names its sender: it must be this connection's index. */
            fv_secagg_msg_t sm;
            if (fv_secagg_msg_decode(m->u.secagg.data, m->u.secagg.len, &sm, &d) != 0)
                do {
                protocol_error(a, "bad secagg message: %s", d.msg);
                return;
            } while (0);
            uint32_t from = sm.from;
            uint8_t type = sm.type;
            fv_secagg_msg_close(&sm);
            if (from != (uint32_t)a->idx)
                do {
                protocol_error(a, "secagg message claims sender %u, you are %d", from,
                                      a->idx);
                return;
            } while (0);
            if (type == FV_SECAGG_MSG_MASKED)
                do {
                protocol_error(a, "masked input must come as a vector upload");
                return;
            } while (0);
        }
        if (fv_secagg_server_handle(c->sa, m->u.secagg.data, m->u.secagg.len, &d) != 0) {
            logj("warn", "secagg_rejected",
                 json_pack("{s:s,s:I,s:s}", "agent", a->name, "round", (json_int_t)c->round,
                           "why", d.msg));
            return;
        }
        a->answered = true;
        phase_progress(c);
        return;
    case FV_MSG_VEC_ACK:
        return; /* the agent has the model or stats we sent: nothing to do */
    default:
        logj("warn", "unexpected_message",
             json_pack("{s:s,s:s}", "agent", a->name, "type", fv_msg_type_name(m->type)));
        return;
    }
}

static void *on_vec_begin(fv_conn_t *conn, const fv_msg_t *b)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    if (a == NULL || c->state != ST_ROUND || !a->alive || !a->granted || a->uploaded ||
        b->u.vec_begin.id != (uint32_t)c->round)
        return NULL;
    const char *want = c->sa != NULL ? "masked" : "update";
    fv_vec_dtype_t dt = c->sa != NULL || c->kind == 1 ? FV_VEC_U32 : FV_VEC_F32;
    uint64_t n = c->sa != NULL ? 8 + (uint64_t)c->dim : c->dim;
    if (b->u.vec_begin.name.len != strlen(want) ||
        memcmp(b->u.vec_begin.name.ptr, want, strlen(want)) != 0 || b->u.vec_begin.dtype != dt ||
        b->u.vec_begin.n_elems != n)
        return NULL;
    free(a->upload);
    a->upload = malloc(n * 4);
    return a->upload;
}

static void on_vec(fv_conn_t *conn, uint32_t id, void *vec, uint64_t n)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    (void)id;
    if (a == NULL || vec != a->upload)
        return;
    a->uploaded = true;
    if (c->in_flight > 0)
        c->in_flight--;
    fv_diag_t d;
    if (c->sa != NULL) {
        /* words -> the MASKED message's little-endian bytes (in place) */
        uint32_t *w = vec;
        uint8_t *bytes = vec;
        for (uint64_t i = 0; i < n; i++) {
            uint32_t x = w[i];
            bytes[4 * i] = (uint8_t)x;
            bytes[4 * i + 1] = (uint8_t)(x >> 8);
            bytes[4 * i + 2] = (uint8_t)(x >> 16);
            bytes[4 * i + 3] = (uint8_t)(x >> 24);
        }
        fv_secagg_msg_t sm;
        int r = fv_secagg_msg_decode(bytes, n * 4, &sm, &d);
        if (r == 0) {
            bool ok = sm.from == (uint32_t)a->idx && sm.type == FV_SECAGG_MSG_MASKED;
            fv_secagg_msg_close(&sm);
            if (!ok)
                r = FV_EPEER;
        }
        if (r == 0)
            r = fv_secagg_server_handle(c->sa, bytes, n * 4, &d);
        if (r != 0)
            logj("warn", "masked_rejected",
                 json_pack("{s:s,s:I,s:s}", "agent", a->name, "round", (json_int_t)c->round,
                           "why", fv_err_name(r)));
        else
            a->answered = true;
    } else if (c->kind == 1) {
        fv_mod_add(n, vec, c->acc_u);
        c->n_summands++;
        a->answered = true;
    } else {
        const float *f = vec;
        for (uint64_t i = 0; i < n; i++)
            c->acc_f[i] += (double)f[i];
        c->n_summands++;
        a->answered = true;
    }
    free(a->upload);
    a->upload = NULL;
    json_t *f = jf(c);
    json_object_set_new(f, "agent", json_string(a->name));
    json_object_set_new(f, "bytes", json_integer((json_int_t)(n * 4)));
    logj("info", "upload_received", f);
    grant_uploads(c);
    phase_progress(c);
}

static void on_vec_sent(fv_conn_t *conn, uint32_t id)
{
    agent_t *a = fv_conn_get_data(conn);
    (void)id;
    if (a == NULL || !a->vec_busy || a->oq_head == NULL)
        return;
    outitem_t *it = a->oq_head;
    a->oq_head = it->next;
    if (a->oq_head == NULL)
        a->oq_tail = NULL;
    free(it->owned);
    free(it->vec_owned);
    free(it);
    a->vec_busy = false;
    g_vec_sends--;
    oq_pump(a);
    oq_pump_all();
}

static void on_tick(uv_timer_t *t)
{
    coord_t *c = t->data;
    if (c->state != ST_ROUND || now_ms(c) < c->phase_deadline)
        return;
    json_t *f = jf(c);
    json_object_set_new(f, "phase", json_integer(c->phase));
    json_object_set_new(f, "missing", json_integer(n_alive_unanswered(c)));
    logj("warn", "deadline", f);
    for (uint32_t i = 0; i < c->n; i++) {
        agent_t *a = c->cohort[i];
        if (a->alive && !a->answered) {
            a->alive = false; /* a straggler is a dropout */
            if (a->granted && !a->uploaded && c->in_flight > 0)
                c->in_flight--;
            free(a->upload);
            a->upload = NULL;
        }
    }
    if (c->sa != NULL)
        secagg_close(c);
    else
        round_finish(c, 0, "");
}

static void on_signal(uv_signal_t *h, int signum)
{
    coord_t *c = h->data;
    if (signum == SIGHUP) {
        fv_diag_t d;
        int r = fv_tls_ctx_reload_crl(c->ctx, &d);
        logj(r == 0 ? "info" : "error", r == 0 ? "crl_reloaded" : "crl_reload_failed",
             r == 0 ? json_pack("{s:I}", "revoked", (json_int_t)fv_tls_ctx_crl_count(c->ctx))
                    : json_pack("{s:s}", "why", d.msg));
        return;
    }
    logj("warn", "stopping", json_pack("{s:i}", "signal", signum));
    snprintf(c->fail_why, sizeof c->fail_why, "stopped by signal %d", signum);
    c->exit_code = EXIT_FAIL;
    if (c->state == ST_ROUND)
        round_cleanup(c);
    c->state = ST_DONE;
    shutdown_all(c);
}

/* ---- main ------------------------------------------------------------------------ */

static const char usage[] =
    "Usage: fedvault-coordinator --config FILE --job SPEC --out DIR [--listen HOST:PORT]\n"
    "                            [--max-uploads N] [--crl FILE]\n"
    "\n"
    "Runs one federated training job to completion and exits.\n"
    "\n"
    "  --config FILE       the coordinator kit's coordinator.json (from fedvault provision):\n"
    "                      listen address, ca, cert, key, crl (paths relative to it)\n"
    "  --job SPEC          job spec (JSON; see protocols/fv_job.h)\n"
    "  --out DIR           where model versions, final.fvm and rounds.jsonl go (created)\n"
    "  --listen HOST:PORT  overrides the config (port 0: any; the port is logged)\n"
    "  --max-uploads N     masked/plain uploads received at once (default 2)\n"
    "  -h, --help          this text\n"
    "\n"
    "Logs: JSON lines on stderr. Result: one JSON object on stdout. SIGHUP reloads the CRL.\n"
    "Exit status: 0 job finished, 1 failure, 2 usage error.\n";

static char *kit_path(const char *config, const char *rel)
{
    if (rel == NULL)
        return NULL;
    if (rel[0] == '/')
        return strdup(rel);
    const char *slash = strrchr(config, '/');
    size_t dl = slash != NULL ? (size_t)(slash - config) : 1;
    const char *dir = slash != NULL ? config : ".";
    size_t n = dl + 1 + strlen(rel) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%.*s/%s", (int)dl, dir, rel);
    return p;
}

static int split_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= cap)
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *job_path = NULL, *out = NULL, *listen = NULL;
    unsigned max_uploads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fedvault-coordinator: %s needs a value (see --help)\n", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--config") == 0)
            config = v;
        else if (strcmp(a, "--job") == 0)
            job_path = v;
        else if (strcmp(a, "--out") == 0)
            out = v;
        else if (strcmp(a, "--listen") == 0)
            listen = v;
        else if (strcmp(a, "--max-uploads") == 0) {
            char *end;
            unsigned long u = strtoul(v, &end, 10);
            if (*end != '\0' || u < 1 || u > 1024) {
                fprintf(stderr, "fedvault-coordinator: --max-uploads %s: expected 1..1024\n", v);
                return EXIT_USAGE;
            }
            max_uploads = (unsigned)u;
        } else {
            fprintf(stderr, "fedvault-coordinator: unknown option %s (see --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (config == NULL || job_path == NULL || out == NULL) {
        fprintf(stderr, "fedvault-coordinator: --config, --job and --out are required "
                        "(see --help)\n");
        return EXIT_USAGE;
    }
    if (sodium_init() < 0 || fv_crypto_init() != 0)
        return EXIT_FAIL;
    signal(SIGPIPE, SIG_IGN);

    coord_t c;
    memset(&c, 0, sizeof c);
    c.max_uploads = max_uploads;
    g_vec_sends_max = max_uploads;
    g_agents = &c.agents;
    c.out_dir = out;
    c.best_metric = NAN;
    c.last_auc = c.last_pr = c.last_loss = NAN;
    fv_secagg_outbox_init(&c.outbox);
    fv_diag_t d;
    int rc = EXIT_FAIL;
    char *ca = NULL, *cert = NULL, *key = NULL, *crl = NULL, *cfg_listen = NULL;
    json_error_t je;
    json_t *cfg = json_load_file(config, 0, &je);
    if (cfg == NULL) {
        fprintf(stderr, "fedvault-coordinator: error: %s:%d: %s\n", config, je.line, je.text);
        return EXIT_FAIL;
    }
    const char *s_ca = json_string_value(json_object_get(cfg, "ca"));
    const char *s_cert = json_string_value(json_object_get(cfg, "cert"));
    const char *s_key = json_string_value(json_object_get(cfg, "key"));
    const char *s_crl = json_string_value(json_object_get(cfg, "crl"));
    const char *s_listen = json_string_value(json_object_get(cfg, "listen"));
    if (s_ca == NULL || s_cert == NULL || s_key == NULL || (listen == NULL && s_listen == NULL)) {
        fprintf(stderr, "fedvault-coordinator: error: %s: needs string fields ca, cert, key "
                        "and listen\n", config);
        json_decref(cfg);
        return EXIT_FAIL;
    }
    ca = kit_path(config, s_ca);
    cert = kit_path(config, s_cert);
    key = kit_path(config, s_key);
    crl = kit_path(config, s_crl);
    cfg_listen = strdup(listen != NULL ? listen : s_listen);
    json_decref(cfg);

    if (fv_job_load(job_path, &c.job, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    if (fv_job_to_json(c.job, &c.spec, &c.spec_len) != 0 || fv_job_digest(c.job, c.digest) != 0)
        goto out;
    hex8(c.digest, c.job_hex);
    for (int i = 7; i >= 0; i--)
        c.job_id64 = (c.job_id64 << 8) | c.digest[i];
    if (fv_fed_stats_layout_init(c.job->schema, &c.slay) != 0)
        goto out;
    if (mkdir(out, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fedvault-coordinator: error: cannot create %s: %s\n", out,
                strerror(errno));
        goto out;
    }
    {
        char p[4096];
        snprintf(p, sizeof p, "%s/rounds.jsonl", out);
        c.rounds_log = fopen(p, "w");
    }
    fv_tls_opts_t to = {.ca_file = ca, .cert_file = cert, .key_file = key, .crl_file = crl};
    if (fv_tls_ctx_new(true, &to, &c.ctx, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    c.loop = uv_default_loop();
    char host[256];
    int port;
    if (split_hostport(cfg_listen, host, sizeof host, &port) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: listen address '%s': expected HOST:PORT\n",
                cfg_listen);
        goto out;
    }
    fv_net_opts_t net;
    fv_net_opts_default(&net);
    net.allowed_roles = FV_ROLE_BIT(FV_ROLE_AGENT);
    /* Memory that grows with the number of agents is per-connection buffering: the TLS
     * output buffer and the encode buffer keep the size of the largest frame sent, and a
     * vector being sent queues up to low_water_bytes. Smaller chunks and a lower mark
     * keep that to a few hundred KiB per agent; uploads come in the agents' chunks
     * (frames up to our max_frame_bytes, freed one by one). */
    net.chunk_elems = 64u << 10;       /* 256 KiB frames */
    net.low_water_bytes = (size_t)1 << 20;
    net.lim.max_frame_bytes = 1u << 20;
    fv_conn_cbs_t cbs = {.on_open = on_open, .on_msg = on_msg, .on_vec_begin = on_vec_begin,
                         .on_vec = on_vec, .on_vec_sent = on_vec_sent, .on_close = on_close};
    int r = fv_server_start(c.loop, c.ctx, host, port, &net, &cbs, &c, &c.server);
    if (r != 0) {
        fprintf(stderr, "fedvault-coordinator: error: listen on %s: %s\n", cfg_listen,
                fv_strerror(r));
        goto out;
    }
    uv_timer_init(c.loop, &c.timer);
    c.timer.data = &c;
    uv_timer_start(&c.timer, on_tick, 100, 100);
    uv_signal_init(c.loop, &c.sigint);
    uv_signal_init(c.loop, &c.sigterm);
    uv_signal_init(c.loop, &c.sighup);
    c.sigint.data = c.sigterm.data = c.sighup.data = &c;
    uv_signal_start(&c.sigint, on_signal, SIGINT);
    uv_signal_start(&c.sigterm, on_signal, SIGTERM);
    uv_signal_start(&c.sighup, on_signal, SIGHUP);
    logj("info", "listening",
         json_pack("{s:s,s:i,s:s,s:s,s:b,s:i}", "job", c.job_hex, "port",
                   fv_server_port(c.server), "name", c.job->name, "model", c.job->model,
                   "secagg", c.job->secagg.on, "min_agents", (int)c.job->min_agents));
    uv_run(c.loop, UV_RUN_DEFAULT);
    rc = c.exit_code;
    if (uv_loop_close(c.loop) != 0) {
        fprintf(stderr, "fedvault-coordinator: warning: handles left open at exit\n");
        rc = EXIT_FAIL;
    }
out:
    g_agents = NULL;
    if (c.rounds_log != NULL)
        fclose(c.rounds_log);
    while (c.agents != NULL) {
        agent_t *a = c.agents;
        c.agents = a->next;
        oq_clear(a);
        free(a->upload);
        free(a);
    }
    free(c.cohort);
    fv_secagg_server_free(c.sa);
    fv_secagg_outbox_close(&c.outbox);
    free(c.acc_f);
    free(c.acc_u);
    free(c.stats_sum);
    fv_preproc_free(c.preproc);
    fv_mlp_free(c.global);
    fv_mlp_free(c.best);
    fv_fed_server_opt_free(c.sopt);
    fv_tls_ctx_free(c.ctx);
    fv_job_free(c.job);
    free(c.spec);
    free(ca);
    free(cert);
    free(key);
    free(crl);
    free(cfg_listen);
    return rc;
}
