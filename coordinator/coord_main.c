/* coord_main.c - fedvault-coordinator: runs the federation's jobs, round by round.
 *
 * One libuv loop owns everything: the TLS server (protocols/fv_conn.h), the registry of
 * connected agents (by certificate name), the job runner below, and (coord_admin.c) the
 * admin port and the metrics endpoint. The message sequence
 * is the "ROUNDS" comment of protocols/fv_wire.h; the arithmetic of what agents send is
 * protocols/fv_fed.h; the secure sum is protocols/fv_secagg.h's server.
 *
 * Job runner states: WAITING (fewer than min_agents accepted the job) -> ROUND (the
 * cohort = accepted, connected agents at round start, sorted by name) -> WAITING/next
 * ROUND -> DONE. Round 0 sums the agents' feature moments (stats); rounds 1..R train.
 * Each phase has a deadline (job deadlines_ms); agents that do not answer in time, or
 * disconnect, are dropouts: a SecAgg phase closes with the survivors when at least t
 * answered, else the round aborts (ROUND_END with the code) and runs again under the
 * same number with the same global model, at most ROUND_ATTEMPTS times before the job
 * fails. Masked (or plain) uploads are admitted a few at a time
 * (--max-uploads), so the coordinator holds O(max_uploads * d) of upload buffers plus one
 * accumulator, whatever the cohort size.
 *
 * Ordering: everything sent to one agent goes through that agent's FIFO (outq), and a
 * vector blocks the queue until fully handed to the socket, so an agent always receives
 * e.g. the model before the ROUND_START that names it.
 *
 * End of a job: JOB_DONE goes to every agent that accepted the job, also to one that is
 * reconnecting at that moment: each agent keeps the last job it took part in (done_*)
 * and hears of its end on every connection until it accepts another; with --job the
 * daemon lingers until all of them were told (or the join deadline passed).
 *
 * Early stopping: round r's global validation metrics (from summed histograms) judge the
 * model sent in round r. The best one (by the job's metric) is kept; the job stops after
 * `patience` rounds without improvement or after `rounds`, and the best model is the
 * result. With patience 0 (no early stopping) the result is the model after the last
 * update instead, which no round evaluated.
 *
 * Distillation (a job with a "distill" section, fv_job.h): when training is over, the
 * training phase's result becomes the teacher: stored as the job's final version, in one
 * transaction with a checkpoint of the distill phase. Distill rounds (kind 3, numbered
 * from rounds+1) then train a student of the spec's architecture exactly like training
 * rounds train the global model (SecAgg, server optimizer, early stopping on the distill
 * section's settings), with the teacher sent to every agent once per session. Each
 * agent's round vector carries histograms of the student, of the teacher and (with
 * quantize_int8) of the int8 student on its validation rows, so every round compares
 * them on the same rows. At the end the best evaluated student is stored as a
 * "distilled" version (and its int8 file as a second one) with a compression report:
 * parameters, bytes, scoring latency measured here on the thread pool (fv_latency.h),
 * ROC/PR AUC of teacher, student and int8 student from the best round's histograms.
 *
 * Jobs: submitted by `--job SPEC` or the admin CLI, stored "queued" in the state
 * (coordinator/fv_state.h), run one at a time in submission order (IDLE -> WAITING ...
 * DONE -> IDLE -> the next). With --job the daemon exits when that job has ended.
 *
 * Durability (what a SIGKILL at any instant leaves): a round's outcome is committed in one
 * SQLite transaction with the checkpoint to resume from (next round, stats sum, global and
 * best model files, server optimizer state, early-stopping counters) and the new model
 * version; the model file is written and fsynced before that transaction. Agents hear of
 * the round's end (ROUND_END, RECEIPT) only after the commit. At start, a job still
 * "running" is restored from its checkpoint and resumed from its next round: a round in
 * flight at the crash is run again (same number, same model; agents derive every random
 * choice from the job seed, the round and their own key, so it gives the same sum), and
 * no committed round runs twice. FV_TEST_KILL_AT injects SIGKILLs for the tests.
 *
 * Audit: every event worth a reviewer's attention (agents connected, refused, dropped;
 * jobs submitted, started, resumed, finished, aborted; each round's cohort, phase counts,
 * contributors and metrics; model versions; exports; admin commands; CRL reloads) goes
 * to the signed audit log (crypto/fv_audit.h) in the state directory, through the state's
 * outbox so a record committed with its change is never lost (see coord_audit).
 *
 * Output (--out DIR): model-rNNNN.fvm for every global model version (round N's model),
 * final.fvm, with distillation student-rNNNN.fvm and student.fvm (the distilled one),
 * rounds.jsonl (one line per round). Logs: JSON lines on stderr. With --job,
 * the final summary: one JSON object on stdout.
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

#include "coord-int.h"
#include "fv-config.h"
#include "fv_conn.h"
#include "fv_crypto.h"
#include "fv_fed.h"
#include "fv_file.h"
#include "fv_fixed.h"
#include "fv_job.h"
#include "fv_log.h"
#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_model.h"
#include "fv_preproc.h"
#include "fv_secagg.h"
#include "fv_tls.h"
#include "fv_wire.h"

/* ---- logging ------------------------------------------------------------------- */

/* The wall-clock time as "2026-11-28T23:40:00.123Z" (logs, receipts). */
static void iso_now(char buf[FV_LOG_TS_MAX])
{
    fv_log_iso_now(buf);
}

void coord_logj(const char *level, const char *event, json_t *fields)
{
    int lv = fv_log_level_parse(level);
    fv_log_json(lv < 0 ? FV_LOG_ERROR : (fv_log_level_t)lv, event, fields);
}

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

/* ---- wall clock, crash points ---------------------------------------------------- */

/* Wall-clock time for records (audit, state), never for deadlines (uv_now). */
int64_t coord_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fault injection for the crash tests (tests/integration/coord_crash.py): with
 * FV_TEST_KILL_AT=POINT[:N] in the environment the process SIGKILLs itself the Nth time
 * (default 1st) it reaches POINT. Points: stats-committed, round-committed (between
 * rounds), secagg-advertise, secagg-shares, secagg-upload, secagg-unmask (inside each
 * SecAgg phase), model-write (the new model file is on disk, its round not committed),
 * distill-started (the teacher stored and the distill phase committed, no distill round
 * started). */
static const char *g_kill_at;
static unsigned long g_kill_n;

static void crash_point(const char *name)
{
    if (g_kill_at == NULL || strcmp(g_kill_at, name) != 0 || --g_kill_n > 0)
        return;
    coord_logj("warn", "test_kill", json_pack("{s:s}", "point", name));
    raise(SIGKILL);
}

static void crash_points_init(void)
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
 * must hear of the end when they reconnect). */
static bool g_test_fail_rounds, g_test_drop_at_job_end;

static void test_hooks_init(void)
{
    const char *e = getenv("FV_TEST_FAIL_ROUNDS");
    g_test_fail_rounds = e != NULL && strcmp(e, "1") == 0;
    e = getenv("FV_TEST_DROP_AGENTS_AT");
    g_test_drop_at_job_end = e != NULL && strcmp(e, "job-end") == 0;
}

static const char *phase_names[5] = {"advertise", "shares", "upload", "unmask", "done"};

/* Tries of one round number (a SecAgg abort, too few contributors, a deadline) before the
 * job fails; an aborted round does not use up one of the job's rounds. */
#define ROUND_ATTEMPTS 3

/* ---- audit ------------------------------------------------------------------------ */

/* Records go through the state's outbox: queued in the same transaction as the change
 * they describe, appended to the signed log after the commit, each with its outbox id as
 * details.eid. A crash between the append and the outbox delete leaves a record both in
 * the log and in the outbox; at start the log's highest eid is read back and such records
 * are not appended twice. */
static int64_t g_audit_max_eid;
static bool g_in_txn;

static int audit_cb(int64_t id, const char *actor, const char *event, const char *details,
                    void *ctx)
{
    coord_t *c = ctx;
    if (id <= g_audit_max_eid)
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
                   json_pack("{s:s,s:s,s:s}", "event", event, "err", fv_err_name(r), "why",
                             d.msg));
        return r;
    }
    g_audit_max_eid = id;
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
                   json_pack("{s:s,s:s,s:s}", "event", event, "err", fv_err_name(r), "why",
                             d.msg));
        return r;
    }
    return g_in_txn ? 0 : coord_audit_flush(c);
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
    uint64_t now = c->loop != NULL ? uv_now(c->loop) : 0;
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

/* A fatal state error: the daemon cannot record what it does, so it stops; a restart
 * resumes from the last commit. */
static void state_fatal(coord_t *c, const char *what, int r, const fv_diag_t *d);

static int txn_begin(coord_t *c)
{
    fv_diag_t d;
    int r = fv_state_begin(c->st, &d);
    if (r != 0)
        state_fatal(c, "begin", r, &d);
    else
        g_in_txn = true;
    return r;
}

static int txn_commit(coord_t *c)
{
    fv_diag_t d;
    g_in_txn = false;
    int r = fv_state_commit(c->st, &d);
    if (r != 0) {
        fv_state_rollback(c->st);
        state_fatal(c, "commit", r, &d);
        return r;
    }
    coord_audit_flush(c);
    return 0;
}

static void hexn(const uint8_t *p, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
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
            coord_logj("warn", "send_failed",
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
    case FV_MSG_JOB_DONE: /* of the job the agent took part in (a->done_*) */
        memcpy(m.u.job_done.job, a->part_job, 32);
        m.u.job_done.rounds = a->done_rounds;
        memcpy(m.u.job_done.model, a->done_model, 32);
        oq_push_msg(a, &m, NULL, 0, NULL);
        a->done_sent = true;
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


/* Early stopping of the phase being run: the job's, or its distill section's. */
typedef struct {
    fv_job_metric_t metric;
    uint32_t patience;
    double min_delta;
} es_t;

static es_t phase_es(const coord_t *c)
{
    es_t e;
    if (c->distilling) {
        e.metric = c->job->distill.early_stopping.metric;
        e.patience = c->job->distill.early_stopping.patience;
        e.min_delta = c->job->distill.early_stopping.min_delta;
    } else {
        e.metric = c->job->early_stopping.metric;
        e.patience = c->job->early_stopping.patience;
        e.min_delta = c->job->early_stopping.min_delta;
    }
    return e;
}

/* ---- model versions ------------------------------------------------------------ */

/* The complete model file of parameters mlp: the job's schema, the global preprocessing
 * (from the summed stats) and metadata without a timestamp, so the same parameters give
 * the same bytes, and so the same content address, in a resumed run. */
static int build_model(coord_t *c, const fv_mlp_t *mlp, uint64_t round, fv_model_t **ret)
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
    if (c->distilling && mlp != c->teacher) {
        /* a student: what it was distilled from, and how */
        json_object_set_new(meta, "role", json_string("student"));
        json_object_set_new(meta, "teacher", json_string(c->teacher_sha));
        json_object_set_new(meta, "temperature", json_real(c->job->distill.temperature));
        json_object_set_new(meta, "alpha", json_real(c->job->distill.alpha));
    }
    char *meta_s = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
    if (r == 0) {
        r = fv_model_new(s, p, m, meta_s, ret);
        s = NULL, p = NULL, m = NULL, meta_s = NULL;
    }
    fv_preproc_free(p);
    fv_schema_free(s);
    fv_mlp_free(m);
    free(meta_s);
    return r;
}

/* Writes the model file into the state directory (content-addressed, fsynced).
 * int8: the file holds the weights quantized (fv_model_t.int8). ret_len (may be NULL):
 * the file's size. */
static int store_model_as(coord_t *c, const fv_mlp_t *mlp, uint64_t round, bool int8,
                          char sha[65], size_t *ret_len)
{
    fv_model_t *model = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    fv_diag_t d;
    snprintf(d.msg, sizeof d.msg, "cannot build the model file");
    int r = build_model(c, mlp, round, &model);
    if (r == 0) {
        model->int8 = int8;
        r = fv_model_encode(model, &buf, &len);
    }
    if (r == 0)
        r = fv_state_model_put(c->st, buf, len, sha, &d);
    if (r == 0 && ret_len != NULL)
        *ret_len = len;
    if (r != 0)
        coord_logj("error", "model_store_failed",
                   json_pack("{s:s,s:I,s:s,s:s}", "job", c->job_hex, "round", (json_int_t)round,
                             "err", fv_err_name(r), "why", d.msg));
    free(buf);
    fv_model_free(model);
    return r;
}

static int store_model(coord_t *c, const fv_mlp_t *mlp, uint64_t round, char sha[65])
{
    return store_model_as(c, mlp, round, false, sha, NULL);
}

/* A copy for the operator under --out (final.fvm, model-rNNNN.fvm). */
static int save_model(coord_t *c, const fv_mlp_t *mlp, const char *path, uint64_t round)
{
    fv_diag_t d;
    fv_model_t *model = NULL;
    int r = build_model(c, mlp, round, &model);
    if (r == 0)
        r = fv_model_save(model, path, &d);
    if (r != 0)
        coord_logj("error", "model_save_failed",
                   json_pack("{s:s,s:s}", "path", path, "err", fv_err_name(r)));
    fv_model_free(model);
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
    c->t_phase_start = now_ms(c);
    c->phase_deadline = c->t_phase_start + ms;
    for (uint32_t i = 0; i < c->n; i++)
        c->cohort[i]->answered = false;
}

/* Ends the SecAgg phase being collected and sends the next phase's messages. */
static void secagg_close(coord_t *c)
{
    fv_diag_t d;
    static const char *const points[4] = {"secagg-advertise", "secagg-shares", "secagg-upload",
                                          "secagg-unmask"};
    if (c->phase >= 0 && c->phase < 4) {
        uint32_t answered = 0;
        for (uint32_t i = 0; i < c->n; i++)
            answered += c->cohort[i]->alive && c->cohort[i]->answered;
        c->phase_counts[c->phase] = answered;
        if (c->m_phase_s != NULL)
            fv_prom_observe(c->m_phase_s, phase_names[c->phase],
                            (double)(now_ms(c) - c->t_phase_start) / 1000.0);
        crash_point(points[c->phase]);
    }
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
    coord_logj("info", "phase_closed", f);
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
    es_t e = phase_es(c);
    if (isnan(v))
        return false;
    if (isnan(c->best_metric))
        return true;
    if (e.metric == FV_JOB_METRIC_LOG_LOSS)
        return v < c->best_metric - e.min_delta;
    return v > c->best_metric + e.min_delta;
}

/* From the summed stats: the global preprocessing, the initial model (seeded: the same
 * in a resumed run), the server optimizer and the round layout. sum: copied. */
static int stats_apply(coord_t *c, const uint32_t *sum, char *why, size_t why_len)
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
    if (r == 0)
        r = fv_fed_round_layout(c->job, FV_FED_KIND_TRAIN, fv_mlp_n_params(c->global), &c->lay);
    coord_logj("info", "stats_ready",
               json_pack("{s:s,s:I,s:I,s:I}", "job", c->job_hex, "n_ref", (json_int_t)c->n_ref,
                         "features", (json_int_t)fv_preproc_n_features(c->preproc), "params",
                         (json_int_t)fv_mlp_n_params(c->global)));
    return r;
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* Training or distill round done: metrics, early stopping, the update. *ret_metrics: the
 * round's global validation metrics (owned by the caller); a distill round's also hold the
 * teacher's and (quantize_int8) the int8 student's, from the same round's sums. A binary
 * job's are ROC AUC and PR AUC, a multi-class job's accuracy and per-class recall; both
 * have the log loss. */
static int after_train(coord_t *c, fv_fed_result_t *res, json_t **ret_metrics)
{
    es_t e = phase_es(c);
    double metric = e.metric == FV_JOB_METRIC_ROC_AUC    ? res->val_roc_auc
                    : e.metric == FV_JOB_METRIC_PR_AUC   ? res->val_pr_auc
                    : e.metric == FV_JOB_METRIC_ACCURACY ? res->val_accuracy
                                                         : res->val_log_loss;
    c->last_auc = res->val_roc_auc;
    c->last_pr = res->val_pr_auc;
    c->last_loss = res->val_log_loss;
    c->last_acc = res->val_accuracy;
    if (c->out_dir != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-r%04" PRIu64 ".fvm", c->out_dir,
                 c->distilling ? "student" : "model", c->round);
        save_model(c, c->global, path, c->round);
    }
    bool imp = better(c, metric);
    if (imp) {
        fv_mlp_free(c->best);
        c->best = NULL;
        if (fv_mlp_clone(c->global, &c->best) != 0)
            return FV_ENOMEM;
        c->best_metric = metric;
        c->best_round = c->round;
        c->since_best = 0;
        memcpy(c->best_sha, c->global_sha, sizeof c->best_sha);
        c->best_version = c->global_version;
    } else {
        c->since_best++;
    }
    json_t *metrics = json_pack("{s:o,s:o,s:o,s:I,s:b}", "val_roc_auc", jnum(res->val_roc_auc),
                                "val_pr_auc", jnum(res->val_pr_auc), "val_log_loss",
                                jnum(res->val_log_loss), "n_val", (json_int_t)res->n_val,
                                "improved", imp);
    if (res->n_classes > 0) {
        json_object_set_new(metrics, "val_accuracy", jnum(res->val_accuracy));
        json_t *rec = json_array();
        for (size_t k = 0; k < res->n_classes; k++)
            json_array_append_new(rec, jnum(fv_fed_result_recall(res, 0, k)));
        json_object_set_new(metrics, "val_recall", rec);
    }
    static const char *const prefix[FV_FED_MAX_MODELS] = {NULL, "teacher", "int8"};
    for (size_t m = 1; m < res->n_models; m++) {
        char key[32];
        const fv_fed_model_metrics_t *mm = &res->model[m];
        if (c->lay.hist_bins > 0) {
            snprintf(key, sizeof key, "%s_roc_auc", prefix[m]);
            json_object_set_new(metrics, key, jnum(mm->roc_auc));
            snprintf(key, sizeof key, "%s_pr_auc", prefix[m]);
            json_object_set_new(metrics, key, jnum(mm->pr_auc));
        }
        if (res->n_classes > 0) {
            snprintf(key, sizeof key, "%s_accuracy", prefix[m]);
            json_object_set_new(metrics, key, jnum(mm->accuracy));
        }
    }
    json_t *line = json_deep_copy(metrics);
    json_object_set_new(line, "job", json_string(c->job_hex));
    json_object_set_new(line, "round", json_integer((json_int_t)c->round));
    json_object_set_new(line, "kind", json_string(fv_fed_kind_name(c->kind)));
    json_object_set_new(line, "agents", json_integer(c->n_summands));
    json_object_set_new(line, "secs", json_real((double)(now_ms(c) - c->t_round_start) / 1000.0));
    char *s = json_dumps(line, JSON_COMPACT);
    if (s != NULL && c->rounds_log != NULL) {
        fprintf(c->rounds_log, "%s\n", s);
        fflush(c->rounds_log);
    }
    free(s);
    *ret_metrics = metrics;
    coord_logj("info", "round_metrics", line);
    /* The update: global += strategy(delta_mean). */
    int r = fv_fed_server_opt_apply(c->sopt, fv_mlp_params(c->global), res->delta_mean);
    params_hash(c->global, c->model_hash);
    return r;
}

/* Whether the phase being run is over once round `done` has completed. */
static bool phase_over(coord_t *c, uint64_t done)
{
    es_t e = phase_es(c);
    if (done >= (c->distilling ? fv_job_last_round(c->job) : c->job->rounds))
        return true;
    return e.patience > 0 && c->since_best >= e.patience;
}

/* The round's cohort and contributors as JSON arrays of names. */
static json_t *cohort_names(coord_t *c, bool contributors_only)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < c->n; i++) {
        bool in = true;
        if (contributors_only)
            in = c->sa != NULL ? fv_secagg_server_phase(c->sa) == 5 &&
                                     fv_secagg_server_in_set(c->sa, 3, i)
                               : c->cohort[i]->uploaded;
        if (in)
            json_array_append_new(a, json_string(c->cohort[i]->name));
    }
    return a;
}

/* Sends the round's signed receipt to each member of the cohort still on the session that
 * took part: what the coordinator attests for that round (RECEIPT in fv_wire.h). */
static void send_receipts(coord_t *c, const char *status, const char *model_in,
                          const char *model_out, json_t *cohort, json_t *contrib)
{
    char ts[40];
    iso_now(ts);
    json_t *body = json_pack("{s:s,s:s,s:I,s:s,s:s,s:O,s:O,s:s,s:s,s:s}", "federation",
                             c->federation, "job", c->job_id, "round", (json_int_t)c->round,
                             "kind", fv_fed_kind_name(c->kind), "status", status,
                             "cohort", cohort, "contributors", contrib, "model_in",
                             model_in != NULL ? model_in : "", "model_out",
                             model_out != NULL ? model_out : "", "ts", ts);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(body);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    fv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = FV_MSG_RECEIPT;
    memcpy(m.u.receipt.job, c->digest, 32);
    m.u.receipt.round = c->round;
    m.u.receipt.body.ptr = text;
    m.u.receipt.body.len = len;
    crypto_sign_detached(m.u.receipt.sig, NULL, (const uint8_t *)text, len, c->sign_sk);
    for (uint32_t i = 0; i < c->n; i++)
        if (c->cohort[i]->conn != NULL && c->cohort[i]->conn == c->cohort[i]->round_conn)
            oq_push_msg(c->cohort[i], &m, text, len + 1, (const void **)&m.u.receipt.body.ptr);
    free(text);
}

/* Records the round's outcome durably: the model file first (fsynced), then one
 * transaction with the round row, the new model version, the checkpoint to resume from
 * and the audit records. Returns 0 or the state error (the daemon then stops). */
static int round_commit(coord_t *c, int status, const char *why, json_t *metrics,
                        const char *model_in, char model_out[65])
{
    fv_diag_t d;
    int r = 0;
    bool ok = status == 0;
    model_out[0] = '\0';
    if (ok) {
        r = store_model(c, c->global, c->round, model_out);
        if (r != 0) {
            /* logged by store_model; the round cannot be recorded, so the daemon stops
             * (a restart runs the round again) */
            state_fatal(c, "model store", r, NULL);
            return r;
        }
        crash_point("model-write");
    }
    json_t *cohort = cohort_names(c, false);
    json_t *contrib = ok ? cohort_names(c, true) : json_array();
    char *cohort_s = json_dumps(cohort, JSON_COMPACT);
    char *contrib_s = json_dumps(contrib, JSON_COMPACT);
    char *metrics_s = metrics != NULL ? json_dumps(metrics, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    uint8_t *opt = NULL;
    size_t opt_len = 0;
    int64_t version = 0;
    if ((r = txn_begin(c)) != 0)
        goto out;
    fv_state_round_t rr = {.job = c->job_id,
                           .round = c->round,
                           .attempt = c->attempt,
                           .kind = fv_fed_kind_name(c->kind),
                           .status = ok ? "ok" : fv_err_name(status),
                           .why = ok ? NULL : why,
                           .cohort_json = cohort_s,
                           .contributors_json = contrib_s,
                           .metrics_json = metrics_s,
                           .model_in_sha = model_in,
                           .model_out_sha = ok ? model_out : NULL,
                           .started_ms = c->wall_round_start_ms,
                           .finished_ms = coord_wall_ms()};
    r = fv_state_round_add(c->st, &rr, &d);
    if (r == 0 && ok) {
        char producer[96];
        snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
        r = fv_state_version_add(c->st, c->job_id, c->round, model_out, c->global_version,
                                 c->distilling ? "student" : "global", producer, coord_wall_ms(),
                                 &version, &d);
    }
    if (r == 0 && ok)
        r = fv_fed_server_opt_save(c->sopt, &opt, &opt_len);
    if (r == 0) {
        fv_state_ckpt_t ck;
        memset(&ck, 0, sizeof ck);
        /* an aborted round is run again under the same number (round_finish) */
        ck.next_round = ok ? c->round + 1 : c->round;
        ck.rounds_done = c->rounds_done + (ok ? 1 : 0);
        ck.rounds_failed = c->rounds_failed + (ok ? 0 : 1);
        ck.n_ref = c->n_ref;
        ck.stats_sum = c->stats_sum;
        ck.stats_words = c->stats_sum != NULL ? c->slay.dim : 0;
        memcpy(ck.global_sha, ok ? model_out : c->global_sha, 65);
        ck.global_version = ok ? version : c->global_version;
        if (!ok && c->sopt != NULL)
            r = fv_fed_server_opt_save(c->sopt, &opt, &opt_len);
        ck.opt_state = opt;
        ck.opt_len = opt_len;
        memcpy(ck.best_sha, c->best_sha, 65);
        ck.best_version = c->best_version;
        ck.best_metric = c->best_metric;
        ck.best_round = c->best_round;
        ck.since_best = c->since_best;
        ck.distill = c->distilling;
        memcpy(ck.teacher_sha, c->teacher_sha, 65);
        ck.teacher_version = c->teacher_version;
        if (r == 0)
            r = fv_state_ckpt_save(c->st, c->job_id, &ck, &d);
    }
    if (r != 0) {
        g_in_txn = false;
        fv_state_rollback(c->st);
        state_fatal(c, "round commit", r, &d);
        goto out;
    }
    json_t *phases = json_object();
    if (c->sa != NULL)
        for (int i = 0; i < 4; i++)
            json_object_set_new(phases, phase_names[i], json_integer(c->phase_counts[i]));
    json_t *det = json_pack("{s:s,s:I,s:I,s:s,s:s,s:O,s:O,s:o}", "job", c->job_id, "round",
                            (json_int_t)c->round, "attempt", (json_int_t)c->attempt, "kind",
                            fv_fed_kind_name(c->kind), "status",
                            ok ? "ok" : fv_err_name(status), "cohort", cohort, "contributors",
                            contrib, "phases", phases);
    if (!ok)
        json_object_set_new(det, "why", json_string(why));
    if (metrics != NULL)
        json_object_set(det, "metrics", metrics);
    if (model_in != NULL)
        json_object_set_new(det, "model_in", json_string(model_in));
    if (ok)
        json_object_set_new(det, "model_out", json_string(model_out));
    coord_audit(c, NULL, ok ? "round.completed" : "round.aborted", det);
    if (ok)
        coord_audit(c, NULL, "model.stored",
                    json_pack("{s:I,s:s,s:s,s:I,s:s,s:I}", "version", (json_int_t)version,
                              "sha256", model_out, "job", c->job_id, "round",
                              (json_int_t)c->round, "kind",
                              c->distilling ? "student" : "global", "parent",
                              (json_int_t)c->global_version));
    if ((r = txn_commit(c)) != 0)
        goto out;
    if (ok) {
        memcpy(c->global_sha, model_out, 65);
        c->global_version = version;
    }
    send_receipts(c, ok ? "ok" : fv_err_name(status), model_in, ok ? model_out : NULL, cohort,
                  contrib);
out:
    json_decref(cohort);
    json_decref(contrib);
    free(cohort_s);
    free(contrib_s);
    free(metrics_s);
    free(opt);
    return r;
}

static void phase_end(coord_t *c);

static void round_finish(coord_t *c, int status, const char *why_in)
{
    char why[512];
    snprintf(why, sizeof why, "%s", why_in);
    json_t *metrics = NULL;
    char model_in[65];
    memcpy(model_in, c->global_sha, 65);
    if (status == 0 && c->kind != FV_FED_KIND_STATS && g_test_fail_rounds) {
        status = FV_EIO;
        snprintf(why, sizeof why, "FV_TEST_FAIL_ROUNDS");
    }
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
        } else if (status == 0 && c->kind == FV_FED_KIND_STATS) {
            status = stats_apply(c, sum, why, sizeof why);
        } else if (status == 0 && c->sa != NULL) {
            fv_fed_result_t res;
            memset(&res, 0, sizeof res);
            status = fv_fed_decode(&c->lay, sum, c->n_summands, c->job->secagg.clip,
                                   c->job->secagg.bits, (double)c->n_ref, &res, &d);
            if (status == 0)
                status = after_train(c, &res, &metrics);
            else
                snprintf(why, sizeof why, "%s", d.msg);
            fv_fed_result_close(&res);
        } else if (status == 0) {
            /* Plain FedAvg: acc_f holds the sum of the checked plain vectors (fv_fed.h) */
            fv_fed_result_t res;
            memset(&res, 0, sizeof res);
            status = fv_fed_plain_decode(&c->lay, c->acc_f, c->n_summands, (double)c->n_ref, &res,
                                         &d);
            if (status == 0)
                status = after_train(c, &res, &metrics);
            else
                snprintf(why, sizeof why, "%s", d.msg);
            fv_fed_result_close(&res);
        }
    }
    /* Durable before anyone hears of it: an agent is told a round ended only once a
     * restart would not run it again. */
    char model_out[65];
    int sr = round_commit(c, status, why, metrics, model_in[0] != '\0' ? model_in : NULL,
                          model_out);
    json_decref(metrics);
    if (sr != 0)
        return; /* state_fatal stopped the daemon */
    for (uint32_t i = 0; i < c->n; i++)
        if (c->cohort[i]->conn != NULL && c->cohort[i]->conn == c->cohort[i]->round_conn)
            send_ctl(c, c->cohort[i], FV_MSG_ROUND_END, status, status == 0 ? "" : why);
    json_t *f = jf(c);
    json_object_set_new(f, "status", json_string(fv_err_name(status)));
    json_object_set_new(f, "contributors", json_integer(c->n_summands));
    if (status == 0)
        json_object_set_new(f, "model", json_string(model_out));
    else
        json_object_set_new(f, "why", json_string(why));
    coord_logj(status == 0 ? "info" : "warn", status == 0 ? "round_done" : "round_aborted", f);
    bool was_stats = c->kind == FV_FED_KIND_STATS;
    double secs = (double)(now_ms(c) - c->t_round_start) / 1000.0;
    round_cleanup(c);
    if (status == 0) {
        c->rounds_done++;
        c->attempt = 0;
        if (c->m_rounds_ok != NULL)
            fv_prom_add(c->m_rounds_ok, NULL, 1);
        if (!was_stats)
            c->avg_round_s = c->avg_round_s == 0 ? secs : 0.7 * c->avg_round_s + 0.3 * secs;
        if (was_stats)
            for (agent_t *a = c->agents; a != NULL; a = a->next)
                if (a->conn != NULL && a->accepted)
                    send_stats(c, a);
        crash_point(was_stats ? "stats-committed" : "round-committed");
    } else {
        c->rounds_failed++;
        if (c->m_rounds_failed != NULL)
            fv_prom_add(c->m_rounds_failed, NULL, 1);
    }
    if (c->abort_requested) {
        job_finish(c);
        return;
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
    if (!was_stats && status != 0) {
        /* An aborted round is run again under its number (it does not use up one of the
         * job's rounds); a round that aborts ROUND_ATTEMPTS times ends the job. */
        if (c->attempt >= ROUND_ATTEMPTS) {
            snprintf(c->fail_why, sizeof c->fail_why,
                     "round %" PRIu64 " (%s) aborted %" PRIu32 " times; the last time: %.400s",
                     c->round, fv_fed_kind_name(c->kind), c->attempt, why);
            c->exit_code = EXIT_FAIL;
            job_finish(c);
            return;
        }
        c->state = ST_WAITING;
        round_start(c);
        return;
    }
    if (!was_stats && phase_over(c, c->round)) {
        phase_end(c);
        return;
    }
    if (!was_stats) {
        c->round++;
        c->attempt = 0;
    }
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
    c->kind = c->stats_sum == NULL ? FV_FED_KIND_STATS
              : c->distilling    ? FV_FED_KIND_DISTILL
                                 : FV_FED_KIND_TRAIN;
    if (c->kind == FV_FED_KIND_STATS)
        c->round = 0;
    else if (c->round == 0)
        c->round = 1;
    c->state = ST_ROUND;
    c->t_round_start = now_ms(c);
    c->wall_round_start_ms = coord_wall_ms();
    /* the attempt numbers of a round number continue across retries and restarts */
    uint32_t tried = 0;
    if (fv_state_round_attempts(c->st, c->job_id, c->round, &tried, &d) != 0) {
        coord_logj("error", "state_read_failed", json_pack("{s:s,s:s}", "what", "round attempts",
                                                           "why", d.msg));
        tried = c->attempt;
    }
    c->attempt = (tried > c->attempt ? tried : c->attempt) + 1;
    memset(c->phase_counts, 0, sizeof c->phase_counts);
    c->n_summands = 0;
    /* Words of the SecAgg/stats vector, or elements of the plain vector (fv_fed.h) */
    if (c->kind == FV_FED_KIND_STATS)
        c->dim = (uint32_t)c->slay.dim;
    else if (c->job->secagg.on)
        c->dim = (uint32_t)c->lay.dim;
    else
        c->dim = (uint32_t)c->lay.plain_dim;
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
        if (c->kind == FV_FED_KIND_STATS)
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
    json_object_set_new(f, "kind", json_string(fv_fed_kind_name(c->kind)));
    json_object_set_new(f, "cohort", json_integer(c->n));
    json_object_set_new(f, "threshold", json_integer(c->t));
    json_object_set_new(f, "neighbors", json_integer(c->k));
    json_object_set_new(f, "secagg", json_boolean(c->job->secagg.on));
    coord_logj("info", "round_start", f);
    for (uint32_t i = 0; i < c->n; i++) {
        agent_t *a = c->cohort[i];
        if (c->kind == FV_FED_KIND_DISTILL && !a->has_teacher) {
            oq_push_vec(a, 0, FV_VEC_F32, fv_mlp_params_const(c->teacher), NULL,
                        fv_mlp_n_params(c->teacher), "teacher");
            a->has_teacher = true;
        }
        if (c->kind != FV_FED_KIND_STATS && (!a->has_model || memcmp(a->model, c->model_hash, 32) != 0)) {
            oq_push_vec(a, (uint32_t)c->round, FV_VEC_F32, fv_mlp_params_const(c->global), NULL,
                        fv_mlp_n_params(c->global), c->kind == FV_FED_KIND_DISTILL ? "student" : "model");
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
        m.u.round_start.has_model = c->kind != FV_FED_KIND_STATS;
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
    c->stopping = true;
    if (c->server != NULL) {
        fv_server_stop(c->server);
        c->server = NULL;
    }
    if (c->admin != NULL) {
        fv_server_stop(c->admin);
        c->admin = NULL;
    }
    if (c->prom_srv != NULL) {
        fv_prom_server_stop(c->prom_srv);
        c->prom_srv = NULL;
    }
    uv_timer_stop(&c->timer);
    if (!uv_is_closing((uv_handle_t *)&c->timer)) {
        uv_close((uv_handle_t *)&c->timer, NULL);
        uv_close((uv_handle_t *)&c->sigint, NULL);
        uv_close((uv_handle_t *)&c->sigterm, NULL);
        uv_close((uv_handle_t *)&c->sighup, NULL);
    }
}

static void state_fatal(coord_t *c, const char *what, int r, const fv_diag_t *d)
{
    coord_logj("error", "state_failed",
               json_pack("{s:s,s:s,s:s,s:s}", "what", what, "err", fv_err_name(r), "why",
                         d != NULL ? d->msg : "", "state", fv_state_dir(c->st)));
    snprintf(c->fail_why, sizeof c->fail_why,
             "the state directory cannot be written (%s: %s); stopping, a restart resumes "
             "from the last completed round",
             what, fv_err_name(r));
    c->exit_code = EXIT_FAIL;
    if (c->state == ST_ROUND)
        round_cleanup(c);
    c->state = ST_DONE;
    shutdown_all(c);
}

/* Frees everything that belongs to the job being run; the agents stay connected. */
static void job_reset(coord_t *c)
{
    if (c->state == ST_ROUND)
        round_cleanup(c);
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        a->accepted = false;
        a->has_model = false;
        a->has_stats = false;
        a->has_teacher = false;
    }
    fv_mlp_free(c->teacher);
    c->teacher = NULL;
    c->distilling = false;
    c->teacher_sha[0] = '\0';
    c->teacher_version = 0;
    c->lat_ready = false;
    fv_job_free(c->job);
    c->job = NULL;
    free(c->spec);
    c->spec = NULL;
    c->spec_len = 0;
    free(c->stats_sum);
    c->stats_sum = NULL;
    fv_preproc_free(c->preproc);
    c->preproc = NULL;
    fv_mlp_free(c->global);
    c->global = NULL;
    fv_mlp_free(c->best);
    c->best = NULL;
    fv_fed_server_opt_free(c->sopt);
    c->sopt = NULL;
    c->final = NULL;
    if (c->rounds_log != NULL)
        fclose(c->rounds_log);
    c->rounds_log = NULL;
    c->job_id[0] = c->job_hex[0] = '\0';
    c->global_sha[0] = c->best_sha[0] = '\0';
    c->global_version = c->best_version = 0;
    c->round = c->rounds_done = c->rounds_failed = c->best_round = 0;
    c->attempt = c->since_best = 0;
    c->n_ref = 0;
    c->best_metric = c->last_auc = c->last_pr = c->last_loss = c->last_acc = NAN;
    c->avg_round_s = 0;
    c->abort_requested = false;
    c->fail_why[0] = '\0';
    c->state = ST_IDLE;
}

/* Replaces the global parameters (and optionally best) with those of a stored version. */
static int load_params(coord_t *c, const char *sha, fv_mlp_t *into)
{
    fv_diag_t d;
    uint8_t *buf = NULL;
    size_t len = 0;
    fv_model_t *m = NULL;
    int r = fv_state_model_read(c->st, sha, &buf, &len, &d);
    if (r == 0)
        r = fv_model_decode(sha, buf, len, &m, &d);
    free(buf);
    if (r == 0 && fv_mlp_n_params(m->mlp) != fv_mlp_n_params(into))
        r = FV_ECORRUPT;
    if (r == 0)
        memcpy(fv_mlp_params(into), fv_mlp_params_const(m->mlp),
               fv_mlp_n_params(into) * sizeof(float));
    else
        coord_logj("error", "resume_model_failed",
                   json_pack("{s:s,s:s,s:s}", "sha256", sha, "err", fv_err_name(r), "why",
                             d.msg));
    fv_model_free(m);
    return r;
}

/* Turns the job to its distill phase in memory: the global parameters become the teacher
 * (teacher_sha/version name its stored file), and global/sopt/lay/best describe a
 * student of the spec's distill.student architecture, seeded like the job's model. */
static int distill_setup(coord_t *c, const char *teacher_sha, int64_t teacher_version,
                         char *why, size_t why_len)
{
    fv_diag_t d;
    fv_mlp_arch_t arch;
    fv_mlp_t *student = NULL;
    fv_fed_server_opt_t *sopt = NULL;
    int r = fv_mlp_parse_arch(c->job->distill.student, fv_preproc_n_features(c->preproc),
                              fv_schema_n_classes(c->job->schema), &arch, &d);
    if (r == 0)
        r = fv_mlp_new(&arch, &student);
    if (r != 0) {
        snprintf(why, why_len, "distill.student: %.400s", r == FV_ENOMEM ? "out of memory" : d.msg);
        return r;
    }
    if ((r = fv_fed_server_opt_new(c->job, fv_mlp_n_params(student), &sopt)) != 0) {
        fv_mlp_free(student);
        snprintf(why, why_len, "the student's server optimizer: %s", fv_strerror(r));
        return r;
    }
    fv_mlp_init(student, c->job->seed);
    fv_mlp_free(c->teacher);
    c->teacher = c->global;
    c->global = student;
    params_hash(c->teacher, c->teacher_hash);
    memcpy(c->teacher_sha, teacher_sha, 65);
    c->teacher_version = teacher_version;
    fv_fed_server_opt_free(c->sopt);
    c->sopt = sopt;
    c->distilling = true;
    c->kind = FV_FED_KIND_DISTILL;
    fv_fed_round_layout(c->job, FV_FED_KIND_DISTILL, fv_mlp_n_params(student), &c->lay);
    params_hash(c->global, c->model_hash);
    c->global_sha[0] = '\0';
    c->global_version = teacher_version; /* the first student's parent */
    fv_mlp_free(c->best);
    c->best = NULL;
    c->best_sha[0] = '\0';
    c->best_version = 0;
    c->best_metric = NAN;
    c->best_round = 0;
    c->since_best = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        a->has_teacher = false; /* what they hold is the teacher-phase model, re-sent by name */
    coord_logj("info", "distill_started",
               json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "job", c->job_hex, "teacher", teacher_sha,
                         "student", c->job->distill.student, "teacher_params",
                         (json_int_t)fv_mlp_n_params(c->teacher), "student_params",
                         (json_int_t)fv_mlp_n_params(c->global), "first_round",
                         (json_int_t)c->job->rounds + 1));
    return 0;
}

/* Restores a job's progress from its checkpoint: stats, global model, optimizer state,
 * early-stopping state and round counters, exactly as they were after the last committed
 * round. */
static int job_restore(coord_t *c, const fv_state_ckpt_t *ck, char *why, size_t why_len)
{
    c->round = ck->next_round;
    c->rounds_done = ck->rounds_done;
    c->rounds_failed = ck->rounds_failed;
    if (ck->stats_sum == NULL)
        return 0;
    if (ck->stats_words != c->slay.dim) {
        snprintf(why, why_len, "checkpoint: stats vector has %zu words, the job needs %zu",
                 ck->stats_words, (size_t)c->slay.dim);
        return FV_ECORRUPT;
    }
    int r = stats_apply(c, ck->stats_sum, why, why_len);
    if (r != 0)
        return r;
    if (ck->distill) {
        /* the distill phase: the teacher first, then the student's progress below */
        if ((r = load_params(c, ck->teacher_sha, c->global)) != 0) {
            snprintf(why, why_len, "checkpoint: teacher model %s cannot be read", ck->teacher_sha);
            return r;
        }
        if ((r = distill_setup(c, ck->teacher_sha, ck->teacher_version, why, why_len)) != 0)
            return r;
    }
    if (ck->global_sha[0] != '\0' && (r = load_params(c, ck->global_sha, c->global)) != 0) {
        snprintf(why, why_len, "checkpoint: global model %s cannot be read", ck->global_sha);
        return r;
    }
    memcpy(c->global_sha, ck->global_sha, 65);
    c->global_version = ck->global_version;
    params_hash(c->global, c->model_hash);
    if ((r = fv_fed_server_opt_load(c->sopt, ck->opt_state, ck->opt_len)) != 0) {
        snprintf(why, why_len, "checkpoint: optimizer state does not fit the job");
        return r;
    }
    if (ck->best_sha[0] != '\0') {
        if ((r = fv_mlp_clone(c->global, &c->best)) != 0 ||
            (r = load_params(c, ck->best_sha, c->best)) != 0) {
            snprintf(why, why_len, "checkpoint: best model %s cannot be read", ck->best_sha);
            return r;
        }
        memcpy(c->best_sha, ck->best_sha, 65);
        c->best_version = ck->best_version;
        c->best_metric = ck->best_metric;
        c->best_round = ck->best_round;
        c->since_best = ck->since_best;
    }
    return 0;
}

/* Training is over and the job has a distill section. The teacher is the training
 * phase's result, chosen as job_finish chooses a job's result (the best evaluated model
 * with early stopping, else the last), and is stored now as the job's final version; in
 * the same transaction the checkpoint moves to the distill phase, so a restart resumes
 * distilling from the same teacher. Returns 0, or non-zero after stopping the daemon
 * (state_fatal) or failing the job. */
static int distill_begin(coord_t *c)
{
    bool last = c->job->early_stopping.patience == 0;
    const fv_mlp_t *final = last ? c->global : c->best;
    const char *final_sha = last ? c->global_sha : c->best_sha;
    int64_t final_parent = last ? c->global_version : c->best_version;
    uint64_t final_round = last ? c->round + 1 : c->best_round;
    fv_diag_t d;
    snprintf(d.msg, sizeof d.msg, "cannot store the teacher");
    char sha[65], why[512] = "";
    int64_t version = 0;
    uint8_t *opt = NULL;
    size_t opt_len = 0;
    int r = store_model(c, final, final_round, sha);
    if (r != 0) {
        state_fatal(c, "teacher store", r, &d);
        return r;
    }
    if (c->out_dir != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/final.fvm", c->out_dir);
        save_model(c, final, path, final_round);
    }
    if ((r = txn_begin(c)) != 0)
        return r;
    char producer[96];
    snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
    r = fv_state_version_add(c->st, c->job_id, final_round, sha, final_parent, "final", producer,
                             coord_wall_ms(), &version, &d);
    if (r == 0)
        r = fv_state_job_set_final(c->st, c->job_id, version, &d);
    if (r == 0 && final != c->global)
        memcpy(fv_mlp_params(c->global), fv_mlp_params_const(final),
               fv_mlp_n_params(c->global) * sizeof(float));
    if (r == 0 && (r = distill_setup(c, sha, version, why, sizeof why)) != 0)
        snprintf(d.msg, sizeof d.msg, "%s", why);
    if (r == 0)
        r = fv_fed_server_opt_save(c->sopt, &opt, &opt_len);
    if (r == 0) {
        fv_state_ckpt_t ck;
        memset(&ck, 0, sizeof ck);
        ck.next_round = (uint64_t)c->job->rounds + 1;
        ck.rounds_done = c->rounds_done;
        ck.rounds_failed = c->rounds_failed;
        ck.n_ref = c->n_ref;
        ck.stats_sum = c->stats_sum;
        ck.stats_words = c->slay.dim;
        ck.global_version = c->global_version;
        ck.opt_state = opt;
        ck.opt_len = opt_len;
        ck.best_metric = NAN;
        ck.distill = true;
        memcpy(ck.teacher_sha, sha, 65);
        ck.teacher_version = version;
        r = fv_state_ckpt_save(c->st, c->job_id, &ck, &d);
    }
    free(opt);
    if (r == 0) {
        coord_audit(c, NULL, "model.stored",
                    json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:s}", "version", (json_int_t)version,
                              "sha256", sha, "job", c->job_id, "round", (json_int_t)final_round,
                              "kind", "final", "parent", (json_int_t)final_parent, "of",
                              final_sha));
        coord_audit(c, NULL, "job.distill_started",
                    json_pack("{s:s,s:I,s:s,s:s,s:f,s:f,s:I,s:I}", "job", c->job_id, "teacher",
                              (json_int_t)version, "teacher_sha256", sha, "student",
                              c->job->distill.student, "temperature",
                              c->job->distill.temperature, "alpha", c->job->distill.alpha,
                              "first_round", (json_int_t)c->job->rounds + 1, "last_round",
                              (json_int_t)fv_job_last_round(c->job)));
    }
    if (r != 0) {
        g_in_txn = false;
        fv_state_rollback(c->st);
        state_fatal(c, "distill start", r, &d);
        return r;
    }
    return txn_commit(c);
}

/* The phase being run is over (or was over when the job resumed): training hands over to
 * distillation when the job has a distill section, else the job ends. */
static void phase_end(coord_t *c)
{
    if (!c->distilling && c->job->distill.on && !c->abort_requested && c->best != NULL) {
        if (distill_begin(c) != 0)
            return;
        crash_point("distill-started");
        c->round = (uint64_t)c->job->rounds + 1;
        c->attempt = 0;
        c->state = ST_WAITING;
        round_start(c);
        return;
    }
    job_finish(c);
}

static void job_try_next(coord_t *c);

/* ---- the distilled student and its compression report ---------------------------- */

/* Scoring latency of the teacher, the student and (quantize_int8) the int8 student,
 * measured on the coordinator's thread pool (fv_mlp_latency on pseudo-random encoded
 * rows: the network's cost does not depend on the values). */
typedef struct latwork {
    uv_work_t req;
    coord_t *c;
    fv_mlp_t *m[3];
    size_t n;
    float *x;
    fv_latency_t lat[3];
    int rc;
} latwork_t;

#define LAT_BUDGET_S 0.25

static void lat_run(uv_work_t *req)
{
    latwork_t *w = req->data;
    for (size_t i = 0; i < w->n && w->rc == 0; i++)
        w->rc = fv_mlp_latency(w->m[i], w->x, LAT_BUDGET_S, &w->lat[i]);
}

static void lat_free(latwork_t *w)
{
    for (size_t i = 0; i < 3; i++)
        fv_mlp_free(w->m[i]);
    free(w->x);
    free(w);
}

static void lat_done(uv_work_t *req, int status)
{
    latwork_t *w = req->data;
    coord_t *c = w->c;
    if (status == 0 && w->rc == 0) {
        memcpy(c->lat, w->lat, sizeof c->lat);
    } else {
        memset(c->lat, 0, sizeof c->lat); /* reported as null */
        coord_logj("warn", "latency_failed",
                   json_pack("{s:s,s:s}", "job", c->job_hex,
                             "err", fv_err_name(status != 0 ? status : w->rc)));
    }
    lat_free(w);
    c->lat_ready = true;
    if (c->stopping || c->job == NULL)
        return; /* the job resumes at its end on the next start */
    job_finish(c);
}

/* Starts the measurement; 0 when queued (job_finish runs again when it is done). */
static int lat_start(coord_t *c)
{
    latwork_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return FV_ENOMEM;
    w->c = c;
    size_t nf = fv_mlp_arch(c->global)->n_in;
    w->x = malloc((size_t)FV_LATENCY_BIG_BATCH * nf * sizeof *w->x);
    int r = w->x == NULL ? FV_ENOMEM : fv_mlp_clone(c->teacher, &w->m[0]);
    if (r == 0)
        r = fv_mlp_clone(c->best, &w->m[1]);
    if (r == 0 && c->job->distill.quantize_int8)
        r = fv_mlp_quantize_int8(c->best, &w->m[2]);
    w->n = c->job->distill.quantize_int8 ? 3 : 2;
    if (r == 0) {
        fv_latency_rows(w->x, FV_LATENCY_BIG_BATCH, nf, c->job->seed);
        w->req.data = w;
        r = uv_queue_work(c->loop, &w->req, lat_run, lat_done);
    }
    if (r != 0) {
        lat_free(w);
        return r;
    }
    c->state = ST_REPORT;
    return 0;
}

/* The metrics object of the job's ok round `round` from the state (NULL if none). */
static json_t *round_metrics(coord_t *c, uint64_t round)
{
    fv_diag_t d;
    json_t *job = NULL, *out = NULL;
    if (fv_state_job_json(c->st, c->job_id, &job, &d) != 0)
        return NULL;
    size_t i;
    json_t *rr;
    json_array_foreach(json_object_get(job, "rounds"), i, rr)
    {
        json_t *st = json_object_get(rr, "status");
        if (json_integer_value(json_object_get(rr, "round")) == (json_int_t)round &&
            json_is_string(st) && strcmp(json_string_value(st), "ok") == 0)
            out = json_incref(json_object_get(rr, "metrics"));
    }
    json_decref(job);
    return out;
}

static double jget(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static json_t *report_side(const fv_mlp_t *m, const char *arch, int64_t version, const char *sha,
                           size_t bytes, const fv_latency_t *lat, double auc, double pr)
{
    json_t *o = json_pack("{s:s,s:I,s:s,s:I,s:I}", "arch", arch, "version", (json_int_t)version,
                          "sha256", sha, "params", (json_int_t)fv_mlp_n_params(m), "bytes",
                          (json_int_t)bytes);
    json_object_set_new(o, "latency_us",
                        json_pack("{s:o,s:o,s:I,s:I}", "batch_1",
                                  jnum(lat->calls1 ? lat->batch1_us : NAN), "batch_1024",
                                  jnum(lat->calls1024 ? lat->batch1024_us : NAN), "calls_1",
                                  (json_int_t)lat->calls1, "calls_1024",
                                  (json_int_t)lat->calls1024));
    json_object_set_new(o, "roc_auc", jnum(auc));
    json_object_set_new(o, "pr_auc", jnum(pr));
    return o;
}

static json_t *ratio(double a, double b)
{
    return jnum(a > 0 && b > 0 ? a / b : NAN);
}

/* Inside job_finish's transaction: the best student as the job's "distilled" version
 * (and, with quantize_int8, its int8 file as a second one), with the compression
 * report; the job's student version. */
static int store_distilled(coord_t *c, int64_t *ret_version, fv_diag_t *d)
{
    char producer[96], sha[65], qsha[65] = "", arch_t[128], arch_s[128];
    snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
    size_t s_bytes = 0, q_bytes = 0, t_bytes = 0;
    int64_t v = 0, vq = 0;
    bool q8 = c->job->distill.quantize_int8;
    fv_mlp_t *qm = NULL;
    json_t *tv = NULL, *met = round_metrics(c, c->best_round), *report = NULL;
    int r = store_model_as(c, c->best, c->best_round, false, sha, &s_bytes);
    if (r == 0 && q8)
        r = store_model_as(c, c->best, c->best_round, true, qsha, &q_bytes);
    if (r == 0 && q8)
        r = fv_mlp_quantize_int8(c->best, &qm);
    if (r == 0)
        r = fv_state_version_json(c->st, c->teacher_version, &tv, d);
    if (r == 0) {
        t_bytes = (size_t)json_integer_value(json_object_get(tv, "bytes"));
        r = fv_state_version_add(c->st, c->job_id, c->best_round, sha, c->best_version,
                                 "distilled", producer, coord_wall_ms(), &v, d);
    }
    if (r == 0 && q8)
        r = fv_state_version_add(c->st, c->job_id, c->best_round, qsha, v, "distilled", producer,
                                 coord_wall_ms(), &vq, d);
    if (r == 0) {
        fv_mlp_arch_string(fv_mlp_arch(c->teacher), arch_t, sizeof arch_t);
        fv_mlp_arch_string(fv_mlp_arch(c->best), arch_s, sizeof arch_s);
        double t_auc = jget(met, "teacher_roc_auc"), s_auc = jget(met, "val_roc_auc");
        report = json_object();
        json_object_set_new(report, "teacher",
                            report_side(c->teacher, arch_t, c->teacher_version, c->teacher_sha,
                                        t_bytes, &c->lat[0], t_auc,
                                        jget(met, "teacher_pr_auc")));
        json_object_set_new(report, "student",
                            report_side(c->best, arch_s, v, sha, s_bytes, &c->lat[1], s_auc,
                                        jget(met, "val_pr_auc")));
        json_object_set_new(json_object_get(report, "student"), "log_loss",
                            jnum(jget(met, "val_log_loss")));
        if (q8)
            json_object_set_new(report, "student_int8",
                                report_side(qm, arch_s, vq, qsha, q_bytes, &c->lat[2],
                                            jget(met, "int8_roc_auc"), jget(met, "int8_pr_auc")));
        json_object_set_new(
            report, "ratios",
            json_pack("{s:o,s:o,s:o,s:o}", "params",
                      ratio((double)fv_mlp_n_params(c->teacher), (double)fv_mlp_n_params(c->best)),
                      "bytes", ratio((double)t_bytes, (double)s_bytes), "latency_batch_1",
                      ratio(c->lat[0].batch1_us, c->lat[1].batch1_us), "latency_batch_1024",
                      ratio(c->lat[0].batch1024_us, c->lat[1].batch1024_us)));
        json_object_set_new(report, "roc_auc_gap", jnum(t_auc - s_auc));
        if (json_object_get(met, "val_accuracy") != NULL) {
            /* a multi-class job: accuracy from the same round's summed counts */
            double t_acc = jget(met, "teacher_accuracy"), s_acc = jget(met, "val_accuracy");
            json_object_set_new(json_object_get(report, "teacher"), "accuracy", jnum(t_acc));
            json_object_set_new(json_object_get(report, "student"), "accuracy", jnum(s_acc));
            if (q8)
                json_object_set_new(json_object_get(report, "student_int8"), "accuracy",
                                    jnum(jget(met, "int8_accuracy")));
            json_object_set_new(report, "accuracy_gap", jnum(t_acc - s_acc));
        }
        json_object_set_new(report, "round", json_integer((json_int_t)c->best_round));
        json_object_set_new(report, "n_val", json_integer(json_integer_value(
                                                 json_object_get(met, "n_val"))));
        json_object_set_new(report, "temperature", json_real(c->job->distill.temperature));
        json_object_set_new(report, "alpha", json_real(c->job->distill.alpha));
        json_object_set_new(report, "distill_rounds",
                            json_integer((json_int_t)(c->round - c->job->rounds)));
        char method[256];
        snprintf(method, sizeof method,
                 "median per call of the network (fv_mlp_predict) on encoded rows, one thread "
                 "of the coordinator's host; AUCs from the secure histograms of round %" PRIu64
                 " (every agent's validation rows)",
                 c->best_round);
        json_object_set_new(report, "latency_method", json_string(method));
        char *text = json_dumps(report, JSON_COMPACT | JSON_SORT_KEYS);
        r = text == NULL ? FV_ENOMEM : fv_state_version_set_report(c->st, v, text, d);
        if (r == 0 && q8)
            r = fv_state_version_set_report(c->st, vq, text, d);
        free(text);
    }
    if (r == 0)
        r = fv_state_job_set_student(c->st, c->job_id, v, d);
    if (r == 0) {
        json_t *det = json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:O}", "version", (json_int_t)v,
                                "sha256", sha, "job", c->job_id, "round",
                                (json_int_t)c->best_round, "kind", "distilled", "parent",
                                (json_int_t)c->best_version, "report", report);
        coord_audit(c, NULL, "model.stored", det);
        if (q8)
            coord_audit(c, NULL, "model.stored",
                        json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:b}", "version", (json_int_t)vq,
                                  "sha256", qsha, "job", c->job_id, "round",
                                  (json_int_t)c->best_round, "kind", "distilled", "parent",
                                  (json_int_t)v, "int8", 1));
        coord_logj("info", "distilled", json_pack("{s:s,s:I,s:O}", "job", c->job_hex,
                                                  "version", (json_int_t)v, "report", report));
        *ret_version = v;
    }
    if (r == 0 && c->out_dir != NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/student.fvm", c->out_dir);
        save_model(c, c->best, path, c->best_round);
    }
    fv_mlp_free(qm);
    json_decref(tv);
    json_decref(met);
    json_decref(report);
    return r;
}

/* An agent was told of the end of its job: JOB_DONE queued on its live connection and
 * handed to the socket. */
static bool told(agent_t *a)
{
    if (!a->done_pending || a->done_told)
        return true;
    if (a->conn != NULL && fv_conn_is_open(a->conn) && a->done_sent && a->oq_head == NULL &&
        fv_conn_queued_bytes(a->conn) == 0)
        a->done_told = true;
    return a->done_told;
}

/* --job mode after the job ended: stop once every agent that took part was told, or at
 * linger_until (checked again on every tick). */
static void linger_check(coord_t *c)
{
    if (c->stopping || c->linger_until == 0)
        return;
    size_t waiting = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        waiting += !told(a);
    if (waiting > 0 && now_ms(c) < c->linger_until)
        return;
    if (waiting > 0)
        coord_logj("warn", "job_done_untold",
                   json_pack("{s:s,s:I}", "job", c->job_hex, "agents", (json_int_t)waiting));
    shutdown_all(c);
}

static void job_finish(coord_t *c)
{
    /* The distilled student's report needs its latency: measured first, off the loop. */
    if (c->distilling && !c->abort_requested && c->best != NULL && !c->lat_ready &&
        c->exit_code == 0 && lat_start(c) == 0)
        return;
    c->state = ST_DONE;
    /* The result: with early stopping, the best evaluated model (as the local trainer
     * restores its best epoch); without (patience 0), the model after the last update,
     * as fv_train keeps its last parameters. A distilled student is always the best
     * evaluated one: its report states measured metrics. */
    bool last = !c->distilling && c->job->early_stopping.patience == 0;
    const fv_mlp_t *final = last ? c->global : c->best;
    const char *final_sha = last ? c->global_sha : c->best_sha;
    int64_t final_parent = last ? c->global_version : c->best_version;
    uint64_t final_round = last ? c->round + 1 : c->best_round;
    int64_t final_version = 0;
    fv_diag_t d;
    if (c->abort_requested) {
        snprintf(c->fail_why, sizeof c->fail_why, "aborted by %s", c->abort_by);
        c->exit_code = EXIT_FAIL;
    } else if (c->best != NULL && final != NULL) {
        if (c->out_dir != NULL && !c->distilling) {
            char path[4096];
            snprintf(path, sizeof path, "%s/final.fvm", c->out_dir);
            if (save_model(c, final, path, final_round) != 0 && c->exit_code == 0)
                c->exit_code = EXIT_FAIL;
        }
        c->final = final;
    } else if (c->exit_code == 0) {
        c->exit_code = EXIT_FAIL;
        snprintf(c->fail_why, sizeof c->fail_why, "no %s round completed",
                 c->distilling ? "distill" : "training");
    }
    const char *status = c->abort_requested ? "aborted" : c->exit_code == 0 ? "done" : "failed";
    /* The final version names the stored file of the chosen model; one transaction with
     * the job's status, so a restart never runs a finished job again. */
    if (txn_begin(c) != 0)
        return;
    int r = 0;
    int64_t student_version = 0;
    if (c->final != NULL && c->exit_code == 0 && c->distilling) {
        r = store_distilled(c, &student_version, &d);
        final_version = c->teacher_version;
    } else if (c->final != NULL && c->exit_code == 0) {
        char producer[96];
        snprintf(producer, sizeof producer, "fedvault %s (%s)", FV_VERSION, FV_COMMIT);
        char sha[65];
        /* final.fvm's metadata names its round, so its bytes (and address) are its own */
        r = store_model(c, final, final_round, sha);
        if (r == 0)
            r = fv_state_version_add(c->st, c->job_id, final_round, sha, final_parent, "final",
                                     producer, coord_wall_ms(), &final_version, &d);
        if (r == 0)
            r = fv_state_job_set_final(c->st, c->job_id, final_version, &d);
        if (r == 0)
            coord_audit(c, NULL, "model.stored",
                        json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:s}", "version",
                                  (json_int_t)final_version, "sha256", sha, "job", c->job_id,
                                  "round", (json_int_t)final_round, "kind", "final", "parent",
                                  (json_int_t)final_parent, "of", final_sha));
    }
    if (r == 0)
        r = fv_state_job_set_status(c->st, c->job_id, status,
                                    c->fail_why[0] != '\0' ? c->fail_why : NULL, coord_wall_ms(),
                                    &d);
    if (r != 0) {
        g_in_txn = false;
        fv_state_rollback(c->st);
        state_fatal(c, "job end", r, &d);
        return;
    }
    json_t *det = json_pack("{s:s,s:s,s:I,s:I,s:I}", "job", c->job_id, "status", status,
                            "rounds", (json_int_t)c->rounds_done, "rounds_failed",
                            (json_int_t)c->rounds_failed, "best_round",
                            (json_int_t)c->best_round);
    if (final_version > 0)
        json_object_set_new(det, "final_version", json_integer(final_version));
    if (student_version > 0)
        json_object_set_new(det, "student_version", json_integer(student_version));
    if (c->fail_why[0] != '\0')
        json_object_set_new(det, "why", json_string(c->fail_why));
    coord_audit(c, NULL,
                c->abort_requested ? "job.aborted" : c->exit_code == 0 ? "job.finished"
                                                                        : "job.failed",
                det);
    if (txn_commit(c) != 0)
        return;
    if (c->m_jobs != NULL)
        fv_prom_add(c->m_jobs, status, 1);
    /* Every agent that accepted the job hears of its end: now if it is connected, else
     * when it reconnects (on_open). */
    uint8_t final_hash[32] = {0};
    if (c->final != NULL)
        params_hash(c->final, final_hash);
    for (agent_t *a = c->agents; a != NULL; a = a->next) {
        if (!a->took_part || memcmp(a->part_job, c->digest, 32) != 0)
            continue;
        a->took_part = false;
        a->done_pending = true;
        a->done_sent = a->done_told = false;
        a->done_rounds = c->rounds_done;
        memcpy(a->done_model, final_hash, 32);
    }
    if (g_test_drop_at_job_end) {
        coord_logj("warn", "test_drop_agents", json_pack("{s:s}", "point", "job-end"));
        for (agent_t *a = c->agents; a != NULL; a = a->next)
            if (a->conn != NULL) {
                fv_conn_t *old = a->conn;
                fv_conn_close(old, FV_EIO, "FV_TEST_DROP_AGENTS_AT=job-end");
            }
    }
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL && fv_conn_is_open(a->conn) && a->done_pending)
            send_ctl(c, a, FV_MSG_JOB_DONE, 0, "");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    json_t *f = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:o,s:I,s:I}", "job", c->job_hex, "id",
                          c->job_id, "status", status, "rounds", (json_int_t)c->rounds_done,
                          "rounds_failed", (json_int_t)c->rounds_failed, "best_round",
                          (json_int_t)c->best_round, "best_metric", jnum(c->best_metric),
                          "final_version", (json_int_t)final_version, "max_rss_kb",
                          (json_int_t)ru.ru_maxrss);
    if (student_version > 0)
        json_object_set_new(f, "student_version", json_integer(student_version));
    if (c->fail_why[0] != '\0')
        json_object_set_new(f, "why", json_string(c->fail_why));
    coord_logj(c->exit_code == 0 ? "info" : "error", "job_done", json_deep_copy(f));
    bool exit_now = c->only_job != NULL && strcmp(c->only_job, c->job_id) == 0;
    if (exit_now) {
        char *s = json_dumps(f, JSON_COMPACT);
        if (s != NULL)
            printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(f);
    if (exit_now) {
        /* Stay until every agent that took part was told (a reconnecting one too), at
         * most the join deadline; then the server closes with BYE. */
        c->linger_until = now_ms(c) + c->job->deadlines.join_ms;
        linger_check(c);
        return;
    }
    /* A daemon goes on with the next queued job. */
    c->exit_code = 0;
    job_reset(c);
    job_try_next(c);
}

/* Starts (or resumes) the next job from the state: a running one first, else the oldest
 * queued. Offers it to every connected agent. */
static void job_try_next(coord_t *c)
{
    if (c->state != ST_IDLE || c->stopping)
        return;
    fv_diag_t d;
    char id[65];
    char *spec = NULL;
    int r = fv_state_job_next(c->st, id, &spec, &d);
    if (r == UV_ENOENT)
        return;
    if (r != 0) {
        state_fatal(c, "next job", r, &d);
        return;
    }
    char why[512] = "";
    fv_job_t *job = NULL;
    r = fv_job_from_json("job", spec, strlen(spec), &job, &d);
    if (r != 0)
        snprintf(why, sizeof why, "stored spec: %.400s", d.msg);
    c->job = job;
    if (r == 0 && (r = fv_job_to_json(job, &c->spec, &c->spec_len)) == 0 &&
        (r = fv_job_digest(job, c->digest)) == 0) {
        hexn(c->digest, 32, c->job_id);
        hex8(c->digest, c->job_hex);
        c->job_id64 = 0;
        for (int i = 7; i >= 0; i--)
            c->job_id64 = (c->job_id64 << 8) | c->digest[i];
        if (strcmp(c->job_id, id) != 0) {
            snprintf(why, sizeof why, "stored spec hashes to %s, not its id", c->job_id);
            r = FV_ECORRUPT;
        }
    }
    free(spec);
    if (r == 0)
        r = fv_fed_stats_layout_init(c->job->schema, &c->slay);
    char prev[16] = "";
    if (r == 0)
        r = fv_state_job_status(c->st, id, prev, &d);
    bool resumed = false;
    if (r == 0) {
        fv_state_ckpt_t ck;
        memset(&ck, 0, sizeof ck);
        int cr = fv_state_ckpt_load(c->st, id, &ck, &d);
        if (cr == 0) {
            r = job_restore(c, &ck, why, sizeof why);
            resumed = true;
        } else if (cr != UV_ENOENT) {
            r = cr;
            snprintf(why, sizeof why, "checkpoint: %.400s", d.msg);
        }
        fv_state_ckpt_close(&ck);
    }
    if (r != 0) {
        /* A job that cannot run is marked failed, so it does not block the queue. */
        memcpy(c->job_id, id, 65);
        coord_logj("error", "job_unrunnable",
                   json_pack("{s:s,s:s,s:s}", "job", id, "err", fv_err_name(r), "why", why));
        if (fv_state_job_set_status(c->st, id, "failed", why, coord_wall_ms(), &d) == 0)
            coord_audit(c, NULL, "job.failed", json_pack("{s:s,s:s}", "job", id, "why", why));
        bool exit_now = c->only_job != NULL && strcmp(c->only_job, id) == 0;
        job_reset(c);
        if (exit_now) {
            c->exit_code = EXIT_FAIL;
            snprintf(c->fail_why, sizeof c->fail_why, "%s", why);
            shutdown_all(c);
            return;
        }
        job_try_next(c);
        return;
    }
    if (c->out_dir != NULL) {
        char p[4096];
        snprintf(p, sizeof p, "%s/rounds.jsonl", c->out_dir);
        c->rounds_log = fopen(p, resumed ? "a" : "w");
    }
    if (strcmp(prev, "running") != 0 &&
        fv_state_job_set_status(c->st, id, "running", NULL, coord_wall_ms(), &d) != 0) {
        state_fatal(c, "job start", FV_EIO, &d);
        return;
    }
    coord_audit(c, NULL, resumed ? "job.resumed" : "job.started",
                json_pack("{s:s,s:s,s:I,s:I}", "job", c->job_id, "name", c->job->name,
                          "next_round", (json_int_t)c->round, "rounds_done",
                          (json_int_t)c->rounds_done));
    coord_logj("info", resumed ? "job_resumed" : "job_started",
               json_pack("{s:s,s:s,s:s,s:b,s:i,s:I,s:s}", "job", c->job_hex, "name",
                         c->job->name, "model", c->job->model, "secagg", c->job->secagg.on,
                         "min_agents", (int)c->job->min_agents, "next_round",
                         (json_int_t)c->round, "global", c->global_sha));
    c->state = ST_WAITING;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (a->conn != NULL)
            send_offer(c, a);
    /* Resumed after a phase's last round was committed but before the phase's end was
     * (the teacher stored, or the job ended): do that now. */
    if (resumed && c->stats_sum != NULL && c->round > 0 && phase_over(c, c->round - 1))
        phase_end(c);
}

int coord_job_submit(coord_t *c, const char *spec, size_t len, const char *by, char ret_id[65],
                     fv_diag_t *d)
{
    fv_job_t *job = NULL;
    char *canon = NULL;
    size_t clen = 0;
    uint8_t dg[32];
    char id[65];
    int r = fv_job_from_json("job", spec, len, &job, d);
    if (r != 0)
        return r;
    if ((r = fv_job_to_json(job, &canon, &clen)) != 0 || (r = fv_job_digest(job, dg)) != 0) {
        snprintf(d->msg, sizeof d->msg, "cannot encode the job spec");
        goto out;
    }
    hexn(dg, 32, id);
    r = fv_state_job_add(c->st, id, canon, job->name, by, coord_wall_ms(), d);
    if (r != 0)
        goto out;
    coord_audit(c, by, "job.submitted",
                json_pack("{s:s,s:s,s:s,s:s}", "job", id, "name", job->name, "model", job->model,
                          "spec_sha256", id));
    coord_logj("info", "job_submitted",
               json_pack("{s:s,s:s,s:s}", "job", id, "name", job->name, "by", by));
    memcpy(ret_id, id, 65);
    job_try_next(c);
out:
    fv_job_free(job);
    free(canon);
    return r;
}

int coord_job_abort(coord_t *c, const char *id, const char *by, fv_diag_t *d)
{
    char status[16];
    int r = fv_state_job_status(c->st, id, status, d);
    if (r != 0)
        return r;
    if (strcmp(status, "queued") != 0 && strcmp(status, "running") != 0) {
        snprintf(d->msg, sizeof d->msg, "job %.16s is %s, not queued or running", id, status);
        return FV_EPHASE;
    }
    if (c->state == ST_REPORT && strcmp(c->job_id, id) == 0) {
        snprintf(d->msg, sizeof d->msg,
                 "job %.16s has finished its rounds and is storing its distilled model", id);
        return FV_EPHASE;
    }
    if (c->state != ST_IDLE && c->state != ST_DONE && strcmp(c->job_id, id) == 0) {
        snprintf(c->abort_by, sizeof c->abort_by, "%s", by);
        c->abort_requested = true;
        coord_logj("warn", "job_abort_requested",
                   json_pack("{s:s,s:s}", "job", c->job_hex, "by", by));
        if (c->state == ST_ROUND) {
            /* the round in flight is abandoned (nothing committed) */
            round_cleanup(c);
            for (agent_t *a = c->agents; a != NULL; a = a->next)
                if (a->conn != NULL && a->accepted)
                    send_ctl(c, a, FV_MSG_ROUND_END, FV_EPHASE, "job aborted by the operator");
        }
        job_finish(c);
        return 0;
    }
    char why[160];
    snprintf(why, sizeof why, "aborted by %s", by);
    r = fv_state_job_set_status(c->st, id, "aborted", why, coord_wall_ms(), d);
    if (r == 0)
        coord_audit(c, NULL, "job.aborted", json_pack("{s:s,s:s}", "job", id, "why", why));
    return r;
}

json_t *coord_job_live(coord_t *c)
{
    if (c->job == NULL || (c->state != ST_WAITING && c->state != ST_ROUND))
        return NULL;
    uint32_t answered = 0;
    for (uint32_t i = 0; i < c->n; i++)
        answered += c->cohort[i]->alive && c->cohort[i]->answered;
    const char *phase = c->state == ST_WAITING ? "waiting for agents"
                        : c->sa != NULL && c->phase >= 0 && c->phase < 5
                            ? phase_names[c->phase]
                            : "upload";
    uint64_t end = c->distilling ? fv_job_last_round(c->job) : c->job->rounds;
    uint64_t left = end > c->round ? end - c->round : 0;
    json_t *o = json_pack("{s:s,s:I,s:I,s:s,s:s,s:i,s:i,s:I,s:I}", "id", c->job_id, "round",
                          (json_int_t)c->round, "rounds", (json_int_t)end, "kind",
                          fv_fed_kind_name(c->kind), "phase", phase, "answered",
                          (int)answered, "expected",
                          c->state == ST_ROUND ? (int)c->n : (int)c->job->min_agents,
                          "rounds_done", (json_int_t)c->rounds_done, "rounds_failed",
                          (json_int_t)c->rounds_failed);
    json_object_set_new(o, "val_roc_auc", isnan(c->last_auc) ? json_null() : json_real(c->last_auc));
    json_object_set_new(o, "val_pr_auc", isnan(c->last_pr) ? json_null() : json_real(c->last_pr));
    json_object_set_new(o, "val_log_loss",
                        isnan(c->last_loss) ? json_null() : json_real(c->last_loss));
    if (fv_schema_positive(c->job->schema) == NULL)
        json_object_set_new(o, "val_accuracy",
                            isnan(c->last_acc) ? json_null() : json_real(c->last_acc));
    json_object_set_new(o, "elapsed_s",
                        json_real(c->state == ST_ROUND
                                      ? (double)(now_ms(c) - c->t_round_start) / 1000.0
                                      : 0.0));
    /* an upper bound: early stopping may end the job sooner */
    json_object_set_new(o, "eta_s", c->avg_round_s > 0 ? json_real(c->avg_round_s * (double)left)
                                                       : json_null());
    return o;
}

int coord_reload_crl(coord_t *c, const char *by, fv_diag_t *d)
{
    int r = fv_tls_ctx_reload_crl(c->ctx, d);
    coord_logj(r == 0 ? "info" : "error", r == 0 ? "crl_reloaded" : "crl_reload_failed",
               r == 0 ? json_pack("{s:I,s:s}", "revoked", (json_int_t)fv_tls_ctx_crl_count(c->ctx),
                                  "by", by)
                      : json_pack("{s:s,s:s}", "why", d->msg, "by", by));
    coord_audit(c, by, r == 0 ? "config.crl_reloaded" : "config.crl_reload_failed",
                r == 0 ? json_pack("{s:I}", "revoked", (json_int_t)fv_tls_ctx_crl_count(c->ctx))
                       : json_pack("{s:s}", "why", d->msg));
    return r;
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
    snprintf(a->serial, sizeof a->serial, "%s", peer->serial_hex);
    snprintf(a->addr, sizeof a->addr, "%s", fv_conn_peer_addr(conn));
    a->accepted = false;
    a->has_stats = false;
    fv_conn_set_data(conn, a);
    coord_logj("info", "agent_connected",
         json_pack("{s:s,s:s}", "agent", a->name, "addr", fv_conn_peer_addr(conn)));
    fv_diag_t d;
    if (fv_state_agent_seen(c->st, a->name, a->serial, coord_wall_ms(), &d) != 0)
        coord_logj("error", "state_agent_failed", json_pack("{s:s,s:s}", "agent", a->name,
                                                            "why", d.msg));
    coord_audit(c, NULL, "agent.connected",
                json_pack("{s:s,s:s,s:s}", "agent", a->name, "addr", a->addr, "serial",
                          a->serial));
    coord_metrics_refresh(c);
    a->done_sent = false;
    if (a->done_pending)
        send_ctl(c, a, FV_MSG_JOB_DONE, 0, ""); /* it may have missed the end of its job */
    if (c->state == ST_WAITING || c->state == ST_ROUND)
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
    coord_logj(err == 0 ? "info" : "warn", a != NULL ? "agent_disconnected" : "conn_closed", f);
    if (c != NULL && !c->stopping) {
        const fv_identity_t *peer = fv_conn_peer(conn);
        if (a == NULL && err != 0) {
            /* never got past the handshake and HELLO: a refusal */
            coord_audit_refusal(c, "agent.refused",
                        json_pack("{s:s,s:s,s:s}", "addr", fv_conn_peer_addr(conn), "err",
                                  fv_err_name(err), "why", why));
            if (c->m_refusals != NULL)
                fv_prom_add(c->m_refusals, fv_err_name(err), 1);
        } else if (a != NULL) {
            coord_audit(c, NULL, err == 0 ? "agent.disconnected" : "agent.dropped",
                        json_pack("{s:s,s:s,s:s,s:s}", "agent",
                                  peer != NULL ? peer->name : a->name, "addr",
                                  fv_conn_peer_addr(conn), "err", fv_err_name(err), "why", why));
        }
    }
    if (a != NULL) {
        uint64_t in = 0, out = 0;
        fv_conn_traffic(conn, &in, &out);
        a->bytes_in += in;
        a->bytes_out += out;
    }
    if (a == NULL || a->conn != conn)
        return;
    /* an agent that heard of its job's end and then said BYE (an --once agent leaving)
     * was told, whatever the queue counters say now */
    if (err == 0 && a->done_pending && a->done_sent && a->oq_head == NULL)
        a->done_told = true;
    a->conn = NULL;
    oq_clear(a);
    a->accepted = false;
    if (c != NULL) {
        agent_lost(c, a);
        coord_metrics_refresh(c);
    }
}

void coord_agent_traffic(const agent_t *a, uint64_t *in, uint64_t *out)
{
    uint64_t i = 0, o = 0;
    if (a->conn != NULL)
        fv_conn_traffic(a->conn, &i, &o);
    *in = a->bytes_in + i;
    *out = a->bytes_out + o;
}

static bool job_matches(coord_t *c, const uint8_t job[32])
{
    return c->job != NULL && sodium_memcmp(job, c->digest, 32) == 0;
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
    if (c->state != ST_WAITING && c->state != ST_ROUND) {
        /* between jobs: an answer to the job that just ended is stale, not an error */
        coord_logj("info", "stale_message",
                   json_pack("{s:s,s:s}", "agent", a->name, "type", fv_msg_type_name(m->type)));
        return;
    }
    switch (m->type) {
    case FV_MSG_JOB_ACCEPT:
        if (!job_matches(c, m->u.job_accept.job))
            do {
                protocol_error(a, "accepted another job");
                return;
            } while (0);
        a->accepted = true;
        a->took_part = true;
        a->done_pending = false; /* a new job: the last one's end is old news */
        memcpy(a->part_job, c->digest, 32);
        a->rows = m->u.job_accept.rows;
        memcpy(a->dsha, m->u.job_accept.data_sha256, 32);
        a->has_model = m->u.job_accept.has_model;
        memcpy(a->model, m->u.job_accept.model, 32);
        {
            char dhex[65];
            sodium_bin2hex(dhex, sizeof dhex, a->dsha, 32);
            coord_logj("info", "job_accepted",
                 json_pack("{s:s,s:s,s:I,s:s}", "agent", a->name, "job", c->job_hex, "rows",
                           (json_int_t)a->rows, "data_sha256", dhex));
            /* the agent's data fingerprint, for the lineage of every model it helps make */
            if (fv_state_job_agent(c->st, c->job_id, a->name, dhex, a->rows, coord_wall_ms(),
                                   &d) != 0)
                coord_logj("error", "state_agent_failed",
                           json_pack("{s:s,s:s}", "agent", a->name, "why", d.msg));
            coord_audit(c, NULL, "agent.accepted_job",
                        json_pack("{s:s,s:s,s:s,s:I}", "agent", a->name, "job", c->job_id,
                                  "data_sha256", dhex, "rows", (json_int_t)a->rows));
        }
        send_stats(c, a);
        round_start(c);
        return;
    case FV_MSG_JOB_REFUSE:
        coord_logj("warn", "job_refused",
             json_pack("{s:s,s:s,s:s#}", "agent", a->name, "job", c->job_hex, "reason",
                       m->u.job_refuse.reason.ptr, (int)m->u.job_refuse.reason.len));
        coord_audit(c, NULL, "agent.refused_job",
                    json_pack("{s:s,s:s,s:s#}", "agent", a->name, "job", c->job_id, "reason",
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
            coord_logj("warn", "stale_message",
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
            coord_logj("warn", "secagg_rejected",
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
        coord_logj("warn", "unexpected_message",
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
    fv_vec_dtype_t dt = c->sa != NULL || c->kind == FV_FED_KIND_STATS ? FV_VEC_U32 : FV_VEC_F32;
    uint64_t n = c->sa != NULL ? 8 + (uint64_t)c->dim : c->dim;
    if (b->u.vec_begin.name.len != strlen(want) ||
        memcmp(b->u.vec_begin.name.ptr, want, strlen(want)) != 0 || b->u.vec_begin.dtype != dt ||
        b->u.vec_begin.n_elems != n) {
        /* Say what was expected, to the log and to the agent (ERROR): a mismatch is a
         * version skew or a broken peer, and both sides' operators need the numbers. */
        char why[FV_WIRE_TEXT_MAX];
        snprintf(why, sizeof why,
                 "round %" PRIu64 " (%s) expects vector '%s' of %" PRIu64 " %s elements "
                 "(%zu parameters, %zu models x %zu bins, %zu classes); got '%.*s' of %" PRIu64
                 " %s",
                 c->round, fv_fed_kind_name(c->kind), want, n, dt == FV_VEC_U32 ? "u32" : "f32",
                 c->kind == FV_FED_KIND_STATS ? 0 : c->lay.n_params,
                 c->kind == FV_FED_KIND_STATS ? 0 : c->lay.n_models,
                 c->kind == FV_FED_KIND_STATS ? 0 : c->lay.hist_bins,
                 c->kind == FV_FED_KIND_STATS ? 0 : c->lay.n_classes,
                 (int)(b->u.vec_begin.name.len < 32 ? b->u.vec_begin.name.len : 32),
                 b->u.vec_begin.name.ptr, b->u.vec_begin.n_elems,
                 b->u.vec_begin.dtype == FV_VEC_U32 ? "u32" : "f32");
        coord_logj("warn", "upload_refused",
                   json_pack("{s:s,s:s,s:I,s:s}", "agent", a->name, "addr",
                             fv_conn_peer_addr(conn), "round", (json_int_t)c->round, "why",
                             why));
        fv_conn_close(conn, FV_EPOLICY, why);
        return NULL;
    }
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
            coord_logj("warn", "masked_rejected",
                 json_pack("{s:s,s:I,s:s}", "agent", a->name, "round", (json_int_t)c->round,
                           "why", fv_err_name(r)));
        else
            a->answered = true;
    } else if (c->kind == FV_FED_KIND_STATS) {
        fv_mod_add(n, vec, c->acc_u);
        c->n_summands++;
        a->answered = true;
    } else if (fv_fed_plain_check(&c->lay, vec, &d) != 0) {
        /* the coordinator sees a plain vector: every claim in it is checked first */
        coord_logj("warn", "update_rejected",
             json_pack("{s:s,s:I,s:s}", "agent", a->name, "round", (json_int_t)c->round,
                       "why", d.msg));
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
    coord_logj("info", "upload_received", f);
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
    static unsigned ticks;
    linger_check(c);
    if (c->stopping)
        return;
    if (++ticks % 10 == 0) {
        coord_metrics_refresh(c); /* traffic counters, once a second */
        coord_audit_refusal(c, NULL, NULL); /* a minute of suppressed refusals summed up */
    }
    if (c->state != ST_ROUND || now_ms(c) < c->phase_deadline)
        return;
    json_t *f = jf(c);
    json_object_set_new(f, "phase", json_integer(c->phase));
    json_object_set_new(f, "missing", json_integer(n_alive_unanswered(c)));
    coord_logj("warn", "deadline", f);
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
        coord_reload_crl(c, "signal SIGHUP", &d);
        return;
    }
    coord_logj("warn", "stopping", json_pack("{s:i}", "signal", signum));
    coord_audit(c, NULL, "coordinator.stopped",
                json_pack("{s:i,s:s}", "signal", signum, "job", c->job_id));
    if (c->only_job != NULL) {
        snprintf(c->fail_why, sizeof c->fail_why, "stopped by signal %d", signum);
        c->exit_code = EXIT_FAIL;
    }
    /* the job stays "running" in the state: a restart resumes it */
    if (c->state == ST_ROUND)
        round_cleanup(c);
    c->state = ST_DONE;
    shutdown_all(c);
}

/* ---- main ------------------------------------------------------------------------ */

static const char usage[] =
    "Usage: fedvault-coordinator --config FILE [--state DIR] [--job SPEC] [--out DIR]\n"
    "                            [--listen HOST:PORT] [--admin-listen HOST:PORT]\n"
    "                            [--metrics-listen HOST:PORT] [--max-uploads N]\n"
    "\n"
    "Runs the federation's jobs: each agent connects to the agent port, the operator's\n"
    "`fedvault` CLI to the admin port (admin certificates only). Jobs, rounds, model\n"
    "versions and lineage live in the state directory; after a crash, a restart resumes\n"
    "every running job from its last completed round.\n"
    "\n"
    "  --config FILE       the coordinator kit's coordinator.json (from fedvault provision):\n"
    "                      listen, ca, cert, key, crl, and optionally state_dir,\n"
    "                      admin_listen, metrics_listen (paths relative to it)\n"
    "  --state DIR         the state directory (default: the config's state_dir, else\n"
    "                      OUT/state with --out, else state/ beside the config)\n"
    "  --job SPEC          submit this job spec (JSON; see protocols/fv_job.h) unless the\n"
    "                      state already has it, run it, and exit when it has ended\n"
    "                      (jobs already running or queued in the state go first;\n"
    "                      without --job the daemon runs submitted jobs until stopped)\n"
    "  --out DIR           also write final.fvm, model-rNNNN.fvm and rounds.jsonl here\n"
    "  --listen HOST:PORT  agent port; overrides the config (port 0: any; it is logged)\n"
    "  --admin-listen HOST:PORT   admin port (mutual TLS, admin role only)\n"
    "  --metrics-listen HOST:PORT Prometheus text metrics at http://HOST:PORT/metrics\n"
    "                      (plain HTTP: a loopback or management address)\n"
    "  --max-uploads N     masked/plain uploads received at once (default 2)\n"
    "  -h, --help          this text\n"
    "\n"
    "Files in the state directory: state.db (SQLite), models/<sha256>.fvm, audit.log and\n"
    "audit.log.head (the signed audit log: `fedvault audit verify --log DIR/audit.log\n"
    "--head DIR/audit.log.head --cert cert.pem`).\n"
    "Logs: JSON lines on stderr. With --job, the result is one JSON object on stdout.\n"
    "SIGHUP (or `fedvault crl reload`) reloads the CRL. SIGTERM stops; running jobs resume\n"
    "at the next start.\n"
    "Exit status: 0 job finished (or the daemon stopped), 1 failure, 2 usage error.\n";

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

static int listen_start(coord_t *c, const char *what, const char *addr,
                        int (*start)(coord_t *, const char *, int, fv_diag_t *))
{
    char host[256];
    int port;
    fv_diag_t d;
    if (split_hostport(addr, host, sizeof host, &port) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s address '%s': expected HOST:PORT\n",
                what, addr);
        return FV_EINVAL;
    }
    int r = start(c, host, port, &d);
    if (r != 0)
        fprintf(stderr, "fedvault-coordinator: error: %s on %s: %s\n", what, addr, d.msg);
    return r;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *job_path = NULL, *out = NULL, *listen = NULL;
    const char *state_arg = NULL, *admin_arg = NULL, *metrics_arg = NULL;
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
        else if (strcmp(a, "--state") == 0)
            state_arg = v;
        else if (strcmp(a, "--listen") == 0)
            listen = v;
        else if (strcmp(a, "--admin-listen") == 0)
            admin_arg = v;
        else if (strcmp(a, "--metrics-listen") == 0)
            metrics_arg = v;
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
    if (config == NULL) {
        fprintf(stderr, "fedvault-coordinator: --config is required (see --help)\n");
        return EXIT_USAGE;
    }
    if (sodium_init() < 0 || fv_crypto_init() != 0)
        return EXIT_FAIL;
    signal(SIGPIPE, SIG_IGN);
    crash_points_init();
    test_hooks_init();

    coord_t c;
    memset(&c, 0, sizeof c);
    c.max_uploads = max_uploads;
    g_vec_sends_max = max_uploads;
    g_agents = &c.agents;
    c.out_dir = out;
    c.best_metric = NAN;
    c.last_auc = c.last_pr = c.last_loss = c.last_acc = NAN;
    c.state = ST_IDLE;
    fv_secagg_outbox_init(&c.outbox);
    fv_diag_t d;
    int rc = EXIT_FAIL;
    char *ca = NULL, *cert = NULL, *key = NULL, *crl = NULL, *cfg_listen = NULL;
    char *state_dir = NULL, *cfg_admin = NULL, *cfg_metrics = NULL;
    char only_job[65];
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
    const char *s_state = json_string_value(json_object_get(cfg, "state_dir"));
    const char *s_admin = json_string_value(json_object_get(cfg, "admin_listen"));
    const char *s_metrics = json_string_value(json_object_get(cfg, "metrics_listen"));
    const char *s_fed = json_string_value(json_object_get(cfg, "federation"));
    const char *s_name = json_string_value(json_object_get(cfg, "name"));
    if (s_ca == NULL || s_cert == NULL || s_key == NULL || (listen == NULL && s_listen == NULL)) {
        fprintf(stderr, "fedvault-coordinator: error: %s: needs string fields ca, cert, key "
                        "and listen\n", config);
        json_decref(cfg);
        return EXIT_FAIL;
    }
    snprintf(c.federation, sizeof c.federation, "%s", s_fed != NULL ? s_fed : "");
    snprintf(c.self_name, sizeof c.self_name, "%s", s_name != NULL ? s_name : "coordinator");
    ca = kit_path(config, s_ca);
    cert = kit_path(config, s_cert);
    key = kit_path(config, s_key);
    crl = kit_path(config, s_crl);
    cfg_listen = strdup(listen != NULL ? listen : s_listen);
    if (state_arg != NULL)
        state_dir = strdup(state_arg);
    else if (s_state != NULL)
        state_dir = kit_path(config, s_state);
    else if (out != NULL) {
        size_t n = strlen(out) + 8;
        state_dir = malloc(n);
        if (state_dir != NULL)
            snprintf(state_dir, n, "%s/state", out);
    } else
        state_dir = kit_path(config, "state");
    cfg_admin = admin_arg != NULL ? strdup(admin_arg) : s_admin != NULL ? strdup(s_admin) : NULL;
    cfg_metrics = metrics_arg != NULL   ? strdup(metrics_arg)
                  : s_metrics != NULL ? strdup(s_metrics)
                                      : NULL;
    json_decref(cfg);
    if (state_dir == NULL || cfg_listen == NULL)
        goto out;

    if (out != NULL && mkdir(out, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fedvault-coordinator: error: cannot create %s: %s\n", out,
                strerror(errno));
        goto out;
    }
    if (fv_state_open(state_dir, &c.st, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    fv_tls_opts_t to = {.ca_file = ca, .cert_file = cert, .key_file = key, .crl_file = crl};
    if (fv_tls_ctx_new(true, &to, &c.ctx, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    if (fv_tls_load_sign_key(key, c.sign_sk, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    {
        char lp[4096], hp[4096];
        snprintf(lp, sizeof lp, "%s/audit.log", state_dir);
        snprintf(hp, sizeof hp, "%s/audit.log.head", state_dir);
        if (fv_audit_open(lp, hp, c.sign_sk, c.self_name, &c.audit, &d) != 0) {
            fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
            goto out;
        }
        uint64_t seen = 0;
        if (fv_audit_scan(lp, NULL, scan_eid, &g_audit_max_eid, &seen, &d) != 0) {
            fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
            goto out;
        }
    }
    /* records left in the outbox by a crash after their commit */
    if (coord_audit_flush(&c) != 0)
        goto out;
    c.loop = uv_default_loop();
    c.t_start_ms = now_ms(&c);
    if (coord_metrics_init(&c) != 0)
        goto out;
    {
        char host[256];
        int port;
        if (split_hostport(cfg_listen, host, sizeof host, &port) != 0) {
            fprintf(stderr,
                    "fedvault-coordinator: error: listen address '%s': expected HOST:PORT\n",
                    cfg_listen);
            goto out;
        }
        fv_net_opts_t net;
        fv_net_opts_default(&net);
        net.allowed_roles = FV_ROLE_BIT(FV_ROLE_AGENT);
        /* Memory that grows with the number of agents is per-connection buffering: the
         * TLS output buffer and the encode buffer keep the size of the largest frame sent,
         * and a vector being sent queues up to low_water_bytes. Smaller chunks and a lower
         * mark keep that to a few hundred KiB per agent; uploads come in the agents'
         * chunks (frames up to our max_frame_bytes, freed one by one). */
        net.chunk_elems = 64u << 10; /* 256 KiB frames */
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
    }
    if (cfg_admin != NULL && listen_start(&c, "admin", cfg_admin, coord_admin_start) != 0)
        goto out_servers;
    if (cfg_metrics != NULL &&
        listen_start(&c, "metrics", cfg_metrics, coord_metrics_start) != 0)
        goto out_servers;
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
    {
        json_t *f = json_pack("{s:i,s:s,s:s}", "port", fv_server_port(c.server), "state",
                              state_dir, "federation", c.federation);
        if (c.admin != NULL)
            json_object_set_new(f, "admin_port", json_integer(fv_server_port(c.admin)));
        if (c.prom_srv != NULL)
            json_object_set_new(f, "metrics_port",
                                json_integer(fv_prom_server_port(c.prom_srv)));
        coord_audit(&c, NULL, "coordinator.started",
                    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "version", FV_VERSION, "commit",
                              FV_COMMIT, "listen", cfg_listen, "admin",
                              cfg_admin != NULL ? cfg_admin : "", "metrics",
                              cfg_metrics != NULL ? cfg_metrics : "", "state", state_dir,
                              "crl_revoked", (json_int_t)fv_tls_ctx_crl_count(c.ctx)));
        coord_logj("info", "listening", f);
    }
    if (job_path != NULL) {
        /* --job: submit it unless the state already has it (a restart after a crash) */
        fv_job_t *job = NULL;
        uint8_t dg[32];
        int r = fv_job_load(job_path, &job, &d);
        if (r == 0)
            r = fv_job_digest(job, dg);
        fv_job_free(job);
        if (r != 0) {
            fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
            c.exit_code = EXIT_FAIL;
            shutdown_all(&c);
            uv_run(c.loop, UV_RUN_DEFAULT);
            goto out_loop;
        }
        hexn(dg, 32, only_job);
        c.only_job = only_job;
        char st[16];
        r = fv_state_job_status(c.st, only_job, st, &d);
        if (r == UV_ENOENT) {
            char *spec = NULL;
            size_t sl = 0;
            r = fv_file_read_all(job_path, FV_WIRE_SPEC_MAX, &spec, &sl, NULL, &d);
            if (r == 0) {
                char id[65];
                r = coord_job_submit(&c, spec, sl, "operator (--job)", id, &d);
            }
            free(spec);
            if (r != 0)
                fprintf(stderr, "fedvault-coordinator: error: %s: %s\n", job_path,
                        r == FV_EDUP ? "already submitted" : d.msg);
        } else if (r == 0 && strcmp(st, "queued") != 0 && strcmp(st, "running") != 0) {
            fprintf(stderr,
                    "fedvault-coordinator: job %.16s has already ended (%s) in %s; "
                    "see `fedvault job show %.16s`\n",
                    only_job, st, state_dir, only_job);
            r = strcmp(st, "done") == 0 ? 0 : FV_EPHASE;
            c.exit_code = r == 0 ? EXIT_OK : EXIT_FAIL;
            shutdown_all(&c);
            uv_run(c.loop, UV_RUN_DEFAULT);
            goto out_loop;
        }
        if (r != 0) {
            c.exit_code = EXIT_FAIL;
            shutdown_all(&c);
            uv_run(c.loop, UV_RUN_DEFAULT);
            goto out_loop;
        }
    }
    job_try_next(&c);
    uv_run(c.loop, UV_RUN_DEFAULT);
out_loop:
    rc = c.exit_code;
    if (uv_loop_close(c.loop) != 0) {
        fprintf(stderr, "fedvault-coordinator: warning: handles left open at exit\n");
        rc = EXIT_FAIL;
    }
    goto out;
out_servers:
    shutdown_all(&c);
    uv_run(c.loop, UV_RUN_DEFAULT);
    uv_loop_close(c.loop);
out:
    g_agents = NULL;
    job_reset(&c);
    while (c.agents != NULL) {
        agent_t *a = c.agents;
        c.agents = a->next;
        oq_clear(a);
        free(a->upload);
        free(a);
    }
    fv_secagg_outbox_close(&c.outbox);
    fv_prom_free(c.prom);
    fv_audit_close(c.audit);
    fv_state_close(c.st);
    sodium_memzero(c.sign_sk, sizeof c.sign_sk);
    fv_tls_ctx_free(c.ctx);
    free(ca);
    free(cert);
    free(key);
    free(crl);
    free(cfg_listen);
    free(state_dir);
    free(cfg_admin);
    free(cfg_metrics);
    return rc;
}
