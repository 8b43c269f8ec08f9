/* coord_round.c - the round driver: cohort, the round machine started and its actions.
 *
 * The round itself (members' flags, SecAgg phases, upload admission, deadlines, the checks
 * of what members send, the plain sums) is protocols' transport-free machine fv_cround_*
 * (fv_round.h, round_coord.c); this file is its I/O shell, and coord_finish.c its end.
 * coord__round_start picks the cohort and the round (the job machine,
 * protocols/fv_round_job.h, says which number and kind run next; the kinds table says
 * what its vector is), sends the models a member lacks, makes the machine, has its
 * accumulator touched on the thread pool (coord__round_prep) and then starts it
 * (coord__round_go). Every call into the machine (here, coord_conn.c, the tick) ends in
 * coord__round_exec, which carries out its actions: SEND onto the member's queue, DROP
 * closes the member's connection, LOG a line with the job, round and agent, PHASE the
 * phase_s metric and the crash points secagg-advertise/-shares/-upload/-unmask (before
 * the next phase's messages go out), CLOSE the unmasking on the pool, DONE the round's
 * end (coord__round_finish). The message sequence is the "ROUNDS" comment of
 * protocols/fv_wire.h; the arithmetic of the vectors is protocols/fv_fed.h.
 *
 * Job runner states: WAITING (fewer than min_agents accepted the job, or a lost member
 * held for under the job's on_member_lost "wait": coord_cohort.c) -> ROUND (the
 * cohort = accepted, connected agents at round start that are not benched for silence,
 * coord_bench.c, sorted by name) -> WAITING/next
 * ROUND -> DONE. Round 0 sums the agents' feature moments (stats); rounds 1..R train;
 * distill and explain rounds follow (an explain round's members get the final training
 * model: the teacher, or the result as "model"; explain_models).
 * A SecAgg job's ROUND_START carries every member's certificate ("certs", in index
 * order), which each agent verifies itself before it masks (agent/agent_cohort.c).
 * Each phase has a deadline (job deadlines_ms); agents that do not answer in time, or
 * disconnect, are dropouts: a SecAgg phase closes with the survivors when at least t
 * answered, else the round aborts (ROUND_END with the code) and runs again under the
 * same number with the same global model (coord_finish.c: at most ROUND_ATTEMPTS times).
 * Masked (or plain) uploads are admitted a few at a time (--max-uploads), so the
 * coordinator holds O(max_uploads * d) of upload buffers plus one accumulator (the
 * machine's), whatever the cohort size.
 *
 * Ownership: c->rnd's cohort and machine live from coord__round_start to
 * coord__round_cleanup; the cohort borrows agents from c->agents. An action borrows the
 * machine until the next call into it (the queue copies what it keeps); DONE and CLOSE are
 * the last action of a call. A straggler's upload buffer still being written when the
 * round ends moves to its agent (a->orphan, coord_conn.c); a machine a worker holds when
 * the round is cleaned up is freed by the work (coord__round_work_orphan).
 * Threading: the loop thread only; time is uv_now, handed to the machine (its deadlines
 * are checked by fv_cround_tick on the housekeeping tick, not while a worker holds it).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "coord-int.h"
#include "fv-config.h"
#include "fv_fed.h"
#include "fv_log.h"
#include "fv_secagg.h"

/* ---- the round ------------------------------------------------------------------ */

const char *coord__phase_names[5] = {"advertise", "shares", "upload", "unmask", "done"};

/* Accepted, connected and not benched (coord_bench.c). */
static size_t n_accepted(coord_t *c)
{
    size_t n = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (coord__bench_eligible(c, a))
            n++;
    return n;
}

const char *coord__kind_name(const coord_t *c)
{
    if (coord__schema_collecting(c)) /* before the job's first round (coord_schema.c) */
        return "schema";
    /* Waiting for agents, no round of this job has started: the kind of the round that
     * comes next (rnd.kind may still be the previous job's). */
    if (c->run.state == ST_WAITING && c->job != NULL && c->model.jm != NULL &&
        coord__round_work(c) == NULL) {
        const fv_round_kind_t *k = fv_cjob_round_kind(c->model.jm);
        if (k != NULL)
            return k->name;
    }
    return c->rnd.kind != NULL ? c->rnd.kind->name : "unknown";
}

/* What the round kinds size a round of this job from (the job machine's models). */
static fv_round_sizes_t round_sizes(coord_t *c)
{
    return fv_cjob_sizes(c->model.jm);
}

/* ROUND_START "certs" (fv_wire.h): each member's certificate, by index, as a 2-byte
 * big-endian length and the DER (coord_conn.c keeps it from the session's handshake). */
static int cohort_certs(coord_t *c, uint8_t **ret, size_t *ret_len)
{
    size_t len = 0;
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        const agent_t *a = c->rnd.cohort[i];
        if (a->cert_der == NULL || a->cert_der_len == 0 || a->cert_der_len > FV_WIRE_CERT_MAX)
            return FV_EINVAL;
        len += 2 + a->cert_der_len;
    }
    uint8_t *p = malloc(len > 0 ? len : 1);
    if (p == NULL)
        return FV_ENOMEM;
    size_t at = 0;
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        const agent_t *a = c->rnd.cohort[i];
        p[at] = (uint8_t)(a->cert_der_len >> 8);
        p[at + 1] = (uint8_t)a->cert_der_len;
        memcpy(p + at + 2, a->cert_der, a->cert_der_len);
        at += 2 + a->cert_der_len;
    }
    *ret = p;
    *ret_len = len;
    return 0;
}

/* ---- the machine's actions ------------------------------------------------------- */

static void exec_send(coord_t *c, agent_t *a, const fv_round_act_t *act)
{
    fv_msg_t m = act->msg; /* the copy's borrowed field is copied again by the queue */
    switch (m.type) {
    case FV_MSG_ROUND_START:
        coord__oq_push_msg2(a, &m, m.u.round_start.pks, m.u.round_start.pks_len,
                            (const void **)&m.u.round_start.pks, m.u.round_start.certs,
                            m.u.round_start.certs_len, (const void **)&m.u.round_start.certs);
        break;
    case FV_MSG_SECAGG:
        coord__oq_push_msg(a, &m, m.u.secagg.data, m.u.secagg.len, (const void **)&m.u.secagg.data);
        break;
    case FV_MSG_ROUND_END:
        coord__send_ctl(c, a, FV_MSG_ROUND_END, m.u.round_end.status, m.u.round_end.reason.ptr);
        break;
    case FV_MSG_UPLOAD_GO:
        coord__send_ctl(c, a, FV_MSG_UPLOAD_GO, 0, "");
        break;
    default:
        coord__oq_push_msg(a, &m, NULL, 0, NULL);
        break;
    }
}

/* A log line of the machine: the job and round, the member's name, and the fields its
 * event names (round_coord.c's top note). */
static void exec_log(coord_t *c, agent_t *a, const fv_round_act_t *act)
{
    json_t *f = coord__jf(c);
    if (a != NULL)
        json_object_set_new(f, "agent", json_string(a->name));
    if (strcmp(act->event, "deadline") == 0) {
        json_object_set_new(f, "phase", json_integer(act->phase));
        json_object_set_new(f, "missing", json_integer(act->count));
    } else if (strcmp(act->event, "phase_closed") == 0) {
        json_object_set_new(f, "closed_phase", json_integer(act->phase));
        json_object_set_new(f, "survivors", json_integer(act->count));
    } else if (strcmp(act->event, "upload_received") == 0) {
        json_object_set_new(f, "bytes", json_integer(act->count));
    }
    if (act->err != 0)
        json_object_set_new(f, "err", json_string(fv_err_name(act->err)));
    if (act->why[0] != '\0')
        json_object_set_new(f, "why", json_string(act->why));
    coord_logj(act->level != NULL ? act->level : "info", act->event, f);
}

/* A SecAgg phase closed: its duration, and the crash point of that protocol point (before
 * the next phase's messages go out). Phase 4's close is the round's end (no point). */
static void exec_phase(coord_t *c, const fv_round_act_t *act)
{
    static const char *const points[4] = {"secagg-advertise", "secagg-shares", "secagg-upload",
                                          "secagg-unmask"};
    uint64_t now = coord__now_ms(c);
    if (act->phase >= 0 && act->phase < 4) {
        if (c->metrics.phase_s != NULL)
            fv_prom_observe(c->metrics.phase_s, coord__phase_names[act->phase],
                            (double)(now - c->rnd.t_phase_start) / 1000.0);
        coord__crash_point(points[act->phase]);
    }
    c->rnd.t_phase_start = now;
}

void coord__round_exec(coord_t *c, fv_round_out_t *out)
{
    for (size_t i = 0; i < out->n; i++) {
        const fv_round_act_t *act = &out->acts[i];
        agent_t *a = act->member < c->rnd.n ? c->rnd.cohort[act->member] : NULL;
        switch (act->type) {
        case FV_ROUND_ACT_SEND:
            if (a != NULL)
                exec_send(c, a, act);
            break;
        case FV_ROUND_ACT_DROP:
            if (a == NULL)
                break;
            if (act->event != NULL)
                coord_logj("warn", act->event,
                           json_pack("{s:s,s:I,s:s,s:s,s:s}", "job", c->run.job_hex, "round",
                                     (json_int_t)c->rnd.round, "agent", a->name, "addr", a->addr,
                                     "why", act->why));
            if (a->conn != NULL && a->conn == a->round_conn)
                fv_conn_close(a->conn, act->err, act->why);
            break;
        case FV_ROUND_ACT_LOG:
            exec_log(c, a, act);
            break;
        case FV_ROUND_ACT_PHASE:
            exec_phase(c, act);
            break;
        case FV_ROUND_ACT_CLOSE:
            /* the last action, like DONE: the close runs on the thread pool */
            out->n = 0;
            coord__round_close(c);
            return;
        case FV_ROUND_ACT_DONE: {
            /* the last action: round_finish frees the machine the others borrowed from */
            char why[256];
            snprintf(why, sizeof why, "%s", act->why);
            int err = act->err;
            out->n = 0;
            coord__round_finish(c, err, why);
            return;
        }
        default:
            break;
        }
    }
    fv_round_out_clear(out);
}

void coord__round_cleanup(coord_t *c)
{
    if (c->rnd.work != NULL) {
        /* a worker holds the machine: it is freed when the work returns (its members'
         * buffers with it: the daemon is stopping, no connection writes into them) */
        coord__round_work_orphan(c);
        c->rnd.cr = NULL;
    }
    free(c->rnd.lost_later);
    c->rnd.lost_later = NULL;
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        agent_t *a = c->rnd.cohort[i];
        void *orphan = c->rnd.cr != NULL ? fv_cround_vec_take(c->rnd.cr, i) : NULL;
        if (orphan != NULL && a->conn != NULL && a->conn == a->round_conn) {
            /* a straggler's upload still arriving: its connection writes into it */
            free(a->orphan);
            a->orphan = orphan;
            a->orphan_conn = a->conn;
        } else {
            free(orphan);
        }
        a->idx = -1;
        a->round_conn = NULL;
    }
    free(c->rnd.cohort);
    c->rnd.cohort = NULL;
    c->rnd.n = 0;
    fv_cround_free(c->rnd.cr);
    c->rnd.cr = NULL;
}

/* ---- starting a round ------------------------------------------------------------ */

static void on_next_round(uv_timer_t *t)
{
    coord_t *c = t->data;
    coord__loopstat_begin(c, "round.start");
    if (!c->stopping)
        coord__round_start(c);
    coord__loopstat_end(c);
}

void coord__round_start_soon(coord_t *c)
{
    if (c->stopping || uv_is_closing((uv_handle_t *)&c->net.next_round) ||
        uv_timer_start(&c->net.next_round, on_next_round, 0, 0) != 0)
        coord__round_start(c); /* (no timer: at once) */
}

static int cmp_agent_name(const void *a, const void *b)
{
    const agent_t *x = *(agent_t *const *)a, *y = *(agent_t *const *)b;
    return strcmp(x->name, y->name);
}

/* The explain round's model to a member that lacks it: the teacher in a distilling job
 * (what the agent checks it against), else the final training model as "model" (the
 * member's model is then that one). */
static void explain_models(coord_t *c, agent_t *a)
{
    const fv_mlp_t *m = fv_cjob_explained(c->model.jm);
    if (coord__distilling(c)) {
        if (!a->has_teacher) {
            coord__oq_push_vec(a, 0, FV_VEC_F32, fv_mlp_params_const(m), NULL, fv_mlp_n_params(m),
                               "teacher");
            a->has_teacher = true;
        }
        return;
    }
    uint8_t h[32];
    coord__params_hash(m, h);
    if (!a->has_model || memcmp(a->model, h, 32) != 0) {
        coord__oq_push_vec(a, (uint32_t)c->rnd.round, FV_VEC_F32, fv_mlp_params_const(m), NULL,
                           fv_mlp_n_params(m), "model");
        a->has_model = true;
        memcpy(a->model, h, 32);
    }
}

void coord__round_start(coord_t *c)
{
    if (c->run.state != ST_WAITING || c->run.files_busy)
        return; /* (files_busy: the teacher's file being written: the hand-over starts it) */
    if (coord__cohort_hold(c))
        return; /* on_member_lost "wait": a lost member is not back (coord_cohort.c) */
    coord__bench_fill(c, c->job->min_agents); /* a bench never stalls the job */
    size_t n = n_accepted(c);
    if (n < c->job->min_agents)
        return; /* waits for more agents */
    fv_diag_t d;
    c->rnd.cohort = calloc(n, sizeof *c->rnd.cohort);
    if (c->rnd.cohort == NULL)
        return;
    c->rnd.n = 0;
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (coord__bench_eligible(c, a))
            c->rnd.cohort[c->rnd.n++] = a;
    coord__bench_round_started(c);
    qsort(c->rnd.cohort, c->rnd.n, sizeof *c->rnd.cohort, cmp_agent_name);
    /* the job decides which kind runs next; the table says what its round is */
    c->rnd.kind = fv_cjob_round_kind(c->model.jm);
    uint32_t kind_id = c->rnd.kind->id;
    c->rnd.round = fv_cjob_round(c->model.jm);
    c->run.state = ST_ROUND;
    c->rnd.t_round_start = coord__now_ms(c);
    c->rnd.wall_round_start_ms = coord_wall_ms();
    /* the attempt numbers of a round number continue across retries and restarts */
    uint32_t tried = 0;
    if (fv_state_round_attempts(c->st, c->run.job_id, c->rnd.round, &tried, &d) != 0) {
        coord_logj("error", "state_read_failed",
                   json_pack("{s:s,s:s}", "what", "round attempts", "why", d.msg));
        tried = c->rnd.attempt;
    }
    c->rnd.attempt = (tried > c->rnd.attempt ? tried : c->rnd.attempt) + 1;
    c->rnd.n_summands = 0;
    c->rnd.lost_later = calloc(c->rnd.n, sizeof *c->rnd.lost_later);
    uint8_t gseed[32];
    randombytes_buf(gseed, sizeof gseed);
    uint8_t *pks = malloc((size_t)c->rnd.n * 32);
    if (pks == NULL) {
        coord__round_finish(c, FV_ENOMEM, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < c->rnd.n; i++) {
        c->rnd.cohort[i]->idx = (int)i;
        c->rnd.cohort[i]->round_conn = c->rnd.cohort[i]->conn;
        memcpy(pks + (size_t)i * 32, c->rnd.cohort[i]->sign_pk, 32);
    }
    /* a SecAgg job's members check each other's certificates (ROUND_START "certs") */
    uint8_t *certs = NULL;
    size_t certs_len = 0;
    if (c->job->secagg.on && cohort_certs(c, &certs, &certs_len) != 0) {
        free(pks);
        coord__round_finish(c, FV_ENOMEM, "a member's certificate is unknown, or out of memory");
        return;
    }
    c->rnd.t = c->rnd.n;
    c->rnd.k = c->rnd.n - 1;
    int r = 0;
    if (c->job->secagg.on)
        r = fv_job_secagg_for(c->job, c->rnd.n, &c->rnd.t, &c->rnd.k, &d);
    if (r == 0) {
        fv_cround_cfg_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.kind = c->rnd.kind;
        cfg.sizes = round_sizes(c);
        memcpy(cfg.job, c->run.digest, 32);
        cfg.job_id64 = c->run.job_id64;
        cfg.round = c->rnd.round;
        cfg.n = c->rnd.n;
        cfg.pks = pks;
        cfg.certs = certs;
        cfg.certs_len = certs_len;
        cfg.secagg = c->job->secagg.on;
        cfg.t = c->rnd.t;
        cfg.k = c->rnd.k;
        memcpy(cfg.gseed, gseed, 32);
        cfg.has_model = kind_id != FV_FED_KIND_STATS;
        memcpy(cfg.model, c->model.hash, 32);
        if (kind_id == FV_FED_KIND_EXPLAIN) /* the final training model (fv_round.h) */
            coord__params_hash(fv_cjob_explained(c->model.jm), cfg.model);
        cfg.n_ref = fv_cjob_n_ref(c->model.jm);
        cfg.max_uploads = c->max_uploads;
        cfg.train_ms = c->job->deadlines.train_ms;
        cfg.phase_ms = c->job->deadlines.secagg_phase_ms;
        cfg.await_delivery = true; /* coord__round_delivered, from the queue */
        cfg.defer_close = true;    /* the unmasking runs on the thread pool (exec_close) */
        cfg.federation = c->federation;
        cfg.max_msg = COORD_MAX_FRAME - COORD_FRAME_OVERHEAD; /* a validated round's messages */
        r = fv_cround_new(&cfg, &c->rnd.cr, &d);
    }
    free(pks);
    free(certs);
    if (r != 0) {
        coord__round_finish(c, r, d.msg);
        return;
    }
    json_t *f = coord__jf(c);
    json_object_set_new(f, "kind", json_string(coord__kind_name(c)));
    json_object_set_new(f, "cohort", json_integer(c->rnd.n));
    json_object_set_new(f, "threshold", json_integer(c->rnd.t));
    json_object_set_new(f, "neighbors", json_integer(c->rnd.k));
    json_object_set_new(f, "secagg", json_boolean(c->job->secagg.on));
    coord_logj("info", "round_start", f);
    /* the models a member lacks go before its ROUND_START, on the same queue */
    for (uint32_t i = 0; kind_id == FV_FED_KIND_EXPLAIN && i < c->rnd.n; i++)
        explain_models(c, c->rnd.cohort[i]);
    for (uint32_t i = 0; kind_id != FV_FED_KIND_EXPLAIN && i < c->rnd.n; i++) {
        agent_t *a = c->rnd.cohort[i];
        if (kind_id == FV_FED_KIND_DISTILL && !a->has_teacher) {
            const fv_mlp_t *teacher = fv_cjob_teacher(c->model.jm);
            coord__oq_push_vec(a, 0, FV_VEC_F32, fv_mlp_params_const(teacher), NULL,
                               fv_mlp_n_params(teacher), "teacher");
            a->has_teacher = true;
        }
        if (kind_id != FV_FED_KIND_STATS &&
            (!a->has_model || memcmp(a->model, c->model.hash, 32) != 0)) {
            coord__oq_push_vec(a, (uint32_t)c->rnd.round, FV_VEC_F32,
                               fv_mlp_params_const(fv_cjob_global(c->model.jm)), NULL,
                               fv_mlp_n_params(fv_cjob_global(c->model.jm)),
                               kind_id == FV_FED_KIND_DISTILL ? "student" : "model");
            a->has_model = true;
            memcpy(a->model, c->model.hash, 32);
        }
    }
    /* the accumulator's pages first, on the thread pool (the models above are already
     * going out); then ROUND_START (coord__round_go) */
    if (coord__round_prep(c) != 0)
        coord__round_go(c);
}

/* The machine starts: ROUND_START to every member (UPLOAD_GO without SecAgg); members
 * whose session went while the accumulator was prepared are out at once. */
void coord__round_go(coord_t *c)
{
    fv_round_out_t out;
    fv_round_out_init(&out);
    c->rnd.t_phase_start = coord__now_ms(c);
    fv_cround_start(c->rnd.cr, c->rnd.t_phase_start, &out);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
    for (uint32_t i = 0; c->rnd.lost_later != NULL && c->run.state == ST_ROUND &&
                         c->rnd.cr != NULL && !coord__round_busy(c) && i < c->rnd.n;
         i++)
        if (c->rnd.lost_later[i]) {
            c->rnd.lost_later[i] = false;
            fv_cround_lost(c->rnd.cr, i, coord__now_ms(c), &out);
            coord__round_exec(c, &out);
            fv_round_out_close(&out);
            fv_round_out_init(&out);
        }
}

/* ---- deadlines ------------------------------------------------------------------- */

/* The phase deadline, checked on every tick by the machine: members that have not
 * answered are dropouts, and the phase closes with the others. */
void coord__round_tick(coord_t *c)
{
    if (c->run.state != ST_ROUND || c->rnd.cr == NULL || coord__round_busy(c))
        return;
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_cround_tick(c->rnd.cr, coord__now_ms(c), &out);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
}

/* A member's ROUND_START was handed to its connection (coord_outq.c): its phase 0
 * deadline counts from now (the models it lacked went first). Only for the session that
 * the round started on, and the round's own number. */
void coord__round_delivered(coord_t *c, agent_t *a, uint64_t round)
{
    if (c->run.state != ST_ROUND || c->rnd.cr == NULL || a->idx < 0 ||
        (uint32_t)a->idx >= c->rnd.n || a->conn != a->round_conn || round != c->rnd.round)
        return;
    fv_cround_delivered(c->rnd.cr, (uint32_t)a->idx, coord__now_ms(c));
}
