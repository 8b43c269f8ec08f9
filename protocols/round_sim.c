/* round_sim.c - the round engine in one process (fv_round_sim.h): one coordinator round
 * machine, n agent round machines, a FIFO of events between them, simulated time.
 *
 * Events: bytes to an agent, bytes to the coordinator (both fv_wire frames' bodies),
 * an upload (the vector handed over whole), a compute's completion, a lost connection.
 * The loop delivers events in order; when none is left and the round is not over, time
 * jumps past every deadline and the coordinator's machine is ticked. A fault is applied
 * where its protocol point is reached (fv_round_sim.h).
 *
 * Invariants: an action list is consumed before the machine that produced it is called
 * again (the simulator never calls a machine while it walks that machine's actions; what
 * the walk would need to feed back, a lost member, goes into the queue). A work item
 * carries its agent's round generation: one that comes back to a newer round (or none) is
 * orphaned and freed, as the daemon does.
 *
 * Ownership: the simulator owns every machine, event and work item until it returns; the
 * result's arrays are the caller's. Threads: one.
 */
#include "fv_round_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* ---- events -------------------------------------------------------------------------- */

typedef enum { EV_TO_AGENT, EV_TO_COORD, EV_UPLOAD, EV_COMPUTE, EV_LOST, EV_CLOSE } ev_type_t;

typedef struct ev {
    struct ev *next;
    ev_type_t type;
    uint32_t agent;
    uint8_t *bytes; /* TO_AGENT, TO_COORD: a frame body; UPLOAD: the vector */
    size_t len;
    uint64_t n; /* UPLOAD: elements (announced) */
    fv_vec_dtype_t dtype;
    uint32_t vec_id;
    const char *name;
    fv_round_work_t *work; /* COMPUTE */
    uint64_t gen;          /* COMPUTE: the round generation it belongs to */
} ev_t;

typedef struct sagent {
    char name[32];
    uint8_t pk[32], sk[64];
    fv_around_held_t held;
    fv_around_t *r;
    uint64_t gen; /* incremented for every round the agent starts */
    bool connected, silent, seen_fwd;
    fv_round_work_t *held_work; /* FV_RSIM_SLOW: its compute, until SHARES_FWD arrives */
    uint64_t held_gen;
    fv_rand_t rng;
    bool faulted; /* its one-shot fault was applied */
} sagent_t;

typedef struct sim {
    const fv_round_sim_cfg_t *cfg;
    const fv_round_kinds_t *kinds;
    const fv_round_kind_t *kind;
    fv_round_sizes_t sizes;
    fv_round_shape_t shape;
    fv_wire_limits_t lim;
    sagent_t *ag;
    uint8_t *pks;
    uint8_t job_digest[32];
    uint8_t model_hash[32];
    bool has_model;
    ev_t *head, *tail;
    fv_cround_t *cr;
    bool done, restart;
    int done_status;
    char done_why[256];
    uint64_t now;
    fv_round_sim_result_t *res;
    fv_rand_t rng; /* graph seeds */
    int failed;    /* an internal error (out of memory, an encoding the simulator made) */
    char fail_why[256];
} sim_t;

static const fv_round_sim_agent_t no_fault = {NULL, FV_RSIM_NONE, 0};

static const fv_round_sim_agent_t *spec(const sim_t *s, uint32_t i)
{
    return s->cfg->agents != NULL ? &s->cfg->agents[i] : &no_fault;
}

static uint64_t cpu_now(const sim_t *s)
{
    return s->cfg->cpu_ns != NULL ? s->cfg->cpu_ns() : 0;
}

static void sim_fail(sim_t *s, int err, const char *what)
{
    if (s->failed == 0) {
        s->failed = err;
        snprintf(s->fail_why, sizeof s->fail_why, "%s", what);
    }
}

static void push(sim_t *s, ev_t *e)
{
    e->next = NULL;
    if (s->tail != NULL)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
}

static ev_t *pop(sim_t *s)
{
    ev_t *e = s->head;
    if (e != NULL) {
        s->head = e->next;
        if (s->head == NULL)
            s->tail = NULL;
    }
    return e;
}

static void ev_free(ev_t *e)
{
    if (e == NULL)
        return;
    free(e->bytes);
    if (e->work != NULL) {
        fv_round_work_close(e->work);
        free(e->work);
    }
    free(e);
}

static void queue_clear(sim_t *s)
{
    ev_t *e;
    while ((e = pop(s)) != NULL)
        ev_free(e);
}

/* A message as the wire carries it: encoded, then queued as the frame's body. */
static void send_bytes(sim_t *s, ev_type_t type, uint32_t agent, const fv_msg_t *m)
{
    fv_buf_t b = {0};
    int r = fv_wire_encode(m, &s->lim, &b);
    if (r != 0) {
        char why[128];
        snprintf(why, sizeof why, "fv_wire_encode refused a %s message %s emitted",
                 fv_msg_type_name(m->type), type == EV_TO_AGENT ? "the coordinator" : "an agent");
        fv_buf_free(&b);
        sim_fail(s, r, why);
        return;
    }
    ev_t *e = calloc(1, sizeof *e);
    if (e == NULL) {
        fv_buf_free(&b);
        sim_fail(s, FV_ENOMEM, "out of memory");
        return;
    }
    e->type = type;
    e->agent = agent;
    e->len = b.len - FV_WIRE_HEADER_BYTES;
    e->bytes = malloc(e->len ? e->len : 1);
    if (e->bytes == NULL) {
        free(e);
        fv_buf_free(&b);
        sim_fail(s, FV_ENOMEM, "out of memory");
        return;
    }
    memcpy(e->bytes, b.data + FV_WIRE_HEADER_BYTES, e->len);
    fv_buf_free(&b);
    s->res->msgs++;
    s->res->msg_bytes += e->len;
    push(s, e);
}

static void queue_simple(sim_t *s, ev_type_t type, uint32_t agent)
{
    ev_t *e = calloc(1, sizeof *e);
    if (e == NULL) {
        sim_fail(s, FV_ENOMEM, "out of memory");
        return;
    }
    e->type = type;
    e->agent = agent;
    push(s, e);
}

/* ---- the agents ---------------------------------------------------------------------- */

static void agent_disconnect(sim_t *s, uint32_t i)
{
    sagent_t *a = &s->ag[i];
    if (!a->connected)
        return;
    a->connected = false;
    fv_around_free(a->r);
    a->r = NULL;
    a->gen++;
    queue_simple(s, EV_LOST, i);
}

/* Rewrites a SecAgg message's sender or job (the faults that forge them). */
static int secagg_forge(const uint8_t *in, size_t len, uint32_t from, uint8_t **out, size_t *olen)
{
    fv_secagg_msg_t m;
    fv_diag_t d;
    int r = fv_secagg_msg_decode(in, len, &m, &d);
    if (r != 0)
        return r;
    m.from = from;
    r = fv_secagg_msg_encode(&m, out, olen);
    fv_secagg_msg_close(&m);
    return r;
}

static void agent_acts(sim_t *s, uint32_t i, fv_round_out_t *out);

static void run_compute(sim_t *s, uint32_t i, fv_round_work_t *w, uint64_t gen)
{
    sagent_t *a = &s->ag[i];
    if (a->r == NULL || gen != a->gen || !a->connected) {
        fv_round_work_close(w); /* orphaned: its round is gone */
        free(w);
        return;
    }
    uint64_t t0 = cpu_now(s);
    const fv_round_data_t *data = spec(s, i)->data;
    fv_round_data_t empty;
    if (data == NULL) {
        memset(&empty, 0, sizeof empty);
        empty.job = s->cfg->job;
        empty.sl = s->sizes.sl;
        empty.n_params = s->sizes.n_params;
        empty.s_n_params = s->sizes.s_n_params;
        data = &empty;
    }
    w->kind->compute(data, w);
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_around_computed(a->r, w, &out);
    s->res->agents_cpu_ns += cpu_now(s) - t0;
    agent_acts(s, i, &out);
    fv_round_out_close(&out);
}

static void agent_send(sim_t *s, uint32_t i, fv_round_act_t *act)
{
    sagent_t *a = &s->ag[i];
    const fv_round_sim_agent_t *sp = spec(s, i);
    fv_msg_t m = act->msg;
    uint8_t *forged = NULL;
    size_t flen = 0;
    if (m.type == FV_MSG_SECAGG && !a->faulted &&
        (sp->fault == FV_RSIM_BAD_SENDER || sp->fault == FV_RSIM_OTHER_JOB)) {
        a->faulted = true;
        if (sp->fault == FV_RSIM_OTHER_JOB) {
            m.u.secagg.job[0] ^= 1;
        } else {
            uint32_t other = (act->member + 1) % s->cfg->n_agents;
            fv_secagg_msg_t sm;
            fv_diag_t d;
            if (fv_secagg_msg_decode(m.u.secagg.data, m.u.secagg.len, &sm, &d) == 0) {
                other = (sm.from + 1) % s->cfg->n_agents;
                fv_secagg_msg_close(&sm);
            }
            if (secagg_forge(m.u.secagg.data, m.u.secagg.len, other, &forged, &flen) != 0) {
                sim_fail(s, FV_EINVAL, "cannot forge the sender");
                return;
            }
            m.u.secagg.data = forged;
            m.u.secagg.len = flen;
        }
    }
    send_bytes(s, EV_TO_COORD, i, &m);
    free(forged);
}

static void agent_upload(sim_t *s, uint32_t i, fv_round_act_t *act)
{
    sagent_t *a = &s->ag[i];
    const fv_round_sim_agent_t *sp = spec(s, i);
    uint64_t n = act->n;
    const char *name = act->name;
    uint8_t *vec = act->vec;
    act->vec = NULL; /* taken */
    size_t bytes = (size_t)n * FV_VEC_ELEM_BYTES;
    if (!a->faulted) {
        switch (sp->fault) {
        case FV_RSIM_MASKED_SECAGG: {
            /* the masked words as the MASKED message's little-endian bytes, sent as SECAGG */
            a->faulted = true;
            uint8_t *b = malloc(bytes);
            if (b == NULL) {
                free(vec);
                sim_fail(s, FV_ENOMEM, "out of memory");
                return;
            }
            const uint32_t *w = (const uint32_t *)vec;
            for (uint64_t k = 0; k < n; k++) {
                b[4 * k] = (uint8_t)w[k];
                b[4 * k + 1] = (uint8_t)(w[k] >> 8);
                b[4 * k + 2] = (uint8_t)(w[k] >> 16);
                b[4 * k + 3] = (uint8_t)(w[k] >> 24);
            }
            fv_msg_t m = {.type = FV_MSG_SECAGG};
            memcpy(m.u.secagg.job, s->job_digest, 32);
            m.u.secagg.round = s->cfg->round;
            m.u.secagg.data = b;
            m.u.secagg.len = bytes;
            send_bytes(s, EV_TO_COORD, i, &m);
            free(b);
            free(vec);
            return;
        }
        case FV_RSIM_UPLOAD_LEN:
            a->faulted = true;
            n++;
            break;
        case FV_RSIM_UPLOAD_NAME:
            a->faulted = true;
            name = "model";
            break;
        case FV_RSIM_MASKED_FORGED: {
            a->faulted = true;
            uint8_t *b = malloc(bytes), *forged = NULL;
            size_t flen = 0;
            const uint32_t *w = (const uint32_t *)vec;
            for (uint64_t k = 0; b != NULL && k < n; k++) {
                b[4 * k] = (uint8_t)w[k];
                b[4 * k + 1] = (uint8_t)(w[k] >> 8);
                b[4 * k + 2] = (uint8_t)(w[k] >> 16);
                b[4 * k + 3] = (uint8_t)(w[k] >> 24);
            }
            fv_secagg_msg_t sm;
            fv_diag_t d;
            uint32_t from = 0;
            if (b != NULL && fv_secagg_msg_decode(b, bytes, &sm, &d) == 0) {
                from = sm.from;
                fv_secagg_msg_close(&sm);
            }
            if (b == NULL ||
                secagg_forge(b, bytes, (from + 1) % s->cfg->n_agents, &forged, &flen) != 0 ||
                flen != bytes) {
                free(b), free(forged), free(vec);
                sim_fail(s, FV_EINVAL, "cannot forge the masked input");
                return;
            }
            uint32_t *wo = (uint32_t *)vec;
            for (uint64_t k = 0; k < n; k++)
                wo[k] = (uint32_t)forged[4 * k] | (uint32_t)forged[4 * k + 1] << 8 |
                        (uint32_t)forged[4 * k + 2] << 16 | (uint32_t)forged[4 * k + 3] << 24;
            free(b), free(forged);
            break;
        }
        case FV_RSIM_PLAIN_NAN:
            if (act->dtype == FV_VEC_F32 && n > 0) {
                a->faulted = true;
                ((float *)vec)[0] = __builtin_nanf("");
            }
            break;
        case FV_RSIM_PLAIN_HUGE:
            if (act->dtype == FV_VEC_U32 && n > 0) {
                a->faulted = true;
                ((uint32_t *)vec)[n - 1] = 1u << 31;
            }
            break;
        default:
            break;
        }
    }
    ev_t *e = calloc(1, sizeof *e);
    if (e == NULL) {
        free(vec);
        sim_fail(s, FV_ENOMEM, "out of memory");
        return;
    }
    e->type = EV_UPLOAD;
    e->agent = i;
    e->bytes = vec;
    e->len = bytes;
    e->n = n;
    e->dtype = act->dtype;
    e->vec_id = act->vec_id;
    e->name = name;
    s->res->vec_bytes += bytes;
    push(s, e);
}

/* The parameters a kind's compute starts from, copied into its work item. */
static int work_params(sim_t *s, fv_round_work_t *w)
{
    const fv_round_kind_t *k = w->kind;
    if (k->needs & (FV_ROUND_NEEDS_GLOBAL | FV_ROUND_NEEDS_FINAL)) {
        w->global = malloc(s->sizes.n_params * sizeof *w->global);
        if (w->global == NULL)
            return FV_ENOMEM;
        memcpy(w->global, s->cfg->global, s->sizes.n_params * sizeof *w->global);
    }
    if (k->needs & FV_ROUND_NEEDS_STUDENT) {
        w->global = malloc(s->sizes.s_n_params * sizeof *w->global);
        if (w->global == NULL)
            return FV_ENOMEM;
        memcpy(w->global, s->cfg->global, s->sizes.s_n_params * sizeof *w->global);
    }
    if (k->needs & FV_ROUND_NEEDS_TEACHER) {
        w->teacher = malloc(s->sizes.n_params * sizeof *w->teacher);
        if (w->teacher == NULL)
            return FV_ENOMEM;
        memcpy(w->teacher, s->cfg->teacher, s->sizes.n_params * sizeof *w->teacher);
    }
    return 0;
}

static void agent_acts(sim_t *s, uint32_t i, fv_round_out_t *out)
{
    sagent_t *a = &s->ag[i];
    for (size_t k = 0; k < out->n && a->connected; k++) {
        fv_round_act_t *act = &out->acts[k];
        switch (act->type) {
        case FV_ROUND_ACT_SEND:
            agent_send(s, i, act);
            break;
        case FV_ROUND_ACT_UPLOAD:
            agent_upload(s, i, act);
            break;
        case FV_ROUND_ACT_COMPUTE: {
            fv_round_work_t *w = act->work;
            act->work = NULL;
            if (work_params(s, w) != 0) {
                fv_round_work_close(w);
                free(w);
                sim_fail(s, FV_ENOMEM, "out of memory");
                break;
            }
            if (spec(s, i)->fault == FV_RSIM_SLOW && !a->seen_fwd) {
                a->held_work = w;
                a->held_gen = a->gen;
                break;
            }
            ev_t *e = calloc(1, sizeof *e);
            if (e == NULL) {
                fv_round_work_close(w);
                free(w);
                sim_fail(s, FV_ENOMEM, "out of memory");
                break;
            }
            e->type = EV_COMPUTE;
            e->agent = i;
            e->work = w;
            e->gen = a->gen;
            push(s, e);
            break;
        }
        case FV_ROUND_ACT_SIT_OUT:
            s->res->sit_outs++;
            break;
        case FV_ROUND_ACT_VIOLATION:
            s->res->violations++;
            agent_disconnect(s, i);
            break;
        default:
            break;
        }
    }
}

/* The SecAgg phase an incoming message asks the agent to answer (fv_secagg.h). */
static int answer_phase(const sim_t *s, const fv_msg_t *m)
{
    if (m->type == FV_MSG_ROUND_START)
        return 0;
    if (m->type == FV_MSG_UPLOAD_GO)
        return 2;
    if (m->type == FV_MSG_SECAGG && m->u.secagg.len >= 2) {
        int p = fv_secagg_msg_phase(m->u.secagg.data[1]);
        return p;
    }
    (void)s;
    return -1;
}

static void to_agent(sim_t *s, uint32_t i, const uint8_t *body, size_t len)
{
    sagent_t *a = &s->ag[i];
    if (!a->connected || a->silent)
        return;
    fv_msg_t m;
    fv_diag_t d;
    if (fv_wire_decode(body, len, &s->lim, &m, &d) != 0) {
        sim_fail(s, FV_EPROTO, "an agent could not decode what the coordinator sent");
        return;
    }
    const fv_round_sim_agent_t *sp = spec(s, i);
    int ph = answer_phase(s, &m);
    if (ph >= 0 && ph == sp->phase && (sp->fault == FV_RSIM_DROP || sp->fault == FV_RSIM_SILENT)) {
        if (sp->fault == FV_RSIM_SILENT)
            a->silent = true;
        else
            agent_disconnect(s, i);
        return;
    }
    fv_round_out_t out;
    fv_round_out_init(&out);
    uint64_t t0 = cpu_now(s);
    char why[256];
    switch (m.type) {
    case FV_MSG_ROUND_START:
        if (a->r != NULL) {
            fv_around_free(a->r); /* the round was abandoned: the next one started */
            a->r = NULL;
        }
        if (a->held_work != NULL) {
            fv_round_work_close(a->held_work);
            free(a->held_work);
            a->held_work = NULL;
        }
        a->gen++;
        a->seen_fwd = false;
        if (fv_around_check(&a->held, &m, why, sizeof why) != 0) {
            s->res->violations++;
            agent_disconnect(s, i);
            break;
        }
        a->held.started = true;
        a->held.last_round = m.u.round_start.round;
        if (fv_around_new(&a->held, &m, &a->rng, &a->r, &out) != 0 && a->r == NULL)
            sim_fail(s, FV_ENOMEM, "fv_around_new failed");
        break;
    case FV_MSG_SECAGG:
        if (a->r == NULL)
            break;
        if (m.u.secagg.len >= 2 && m.u.secagg.data[1] == FV_SECAGG_MSG_SHARES_FWD)
            a->seen_fwd = true;
        fv_around_on_secagg(a->r, &m, &out);
        break;
    case FV_MSG_UPLOAD_GO:
        if (a->r != NULL)
            fv_around_on_go(a->r, &out);
        break;
    case FV_MSG_ROUND_END:
        if (fv_around_check_end(&a->held, &m, why, sizeof why) != 0) {
            s->res->violations++;
            agent_disconnect(s, i);
            break;
        }
        fv_around_free(a->r);
        a->r = NULL;
        a->gen++;
        break;
    default:
        break;
    }
    s->res->agents_cpu_ns += cpu_now(s) - t0;
    agent_acts(s, i, &out);
    fv_round_out_close(&out);
    if (a->seen_fwd && a->held_work != NULL) {
        fv_round_work_t *w = a->held_work;
        a->held_work = NULL;
        run_compute(s, i, w, a->held_gen);
    }
}

/* ---- the coordinator ----------------------------------------------------------------- */

static void coord_acts(sim_t *s, fv_round_out_t *out)
{
    for (size_t k = 0; k < out->n && !s->restart; k++) {
        fv_round_act_t *act = &out->acts[k];
        switch (act->type) {
        case FV_ROUND_ACT_SEND:
            if (act->member < s->cfg->n_agents && s->ag[act->member].connected)
                send_bytes(s, EV_TO_AGENT, act->member, &act->msg);
            break;
        case FV_ROUND_ACT_DROP:
            s->res->drops++;
            if (act->member < s->cfg->n_agents)
                agent_disconnect(s, act->member);
            break;
        case FV_ROUND_ACT_PHASE:
            if (s->res->attempts == 1 && s->cfg->restart_at == act->phase)
                s->restart = true;
            break;
        case FV_ROUND_ACT_CLOSE:
            /* the daemon closes on a worker thread; here, in turn with the other events */
            queue_simple(s, EV_CLOSE, UINT32_MAX);
            break;
        case FV_ROUND_ACT_DONE:
            if (s->res->attempts == 1 && s->cfg->restart_at == FV_RSIM_AT_DONE) {
                s->restart = true;
                break;
            }
            s->done = true;
            s->done_status = act->err;
            snprintf(s->done_why, sizeof s->done_why, "%s", act->why);
            break;
        default:
            break;
        }
    }
}

static void coord_call_done(sim_t *s, fv_round_out_t *out, uint64_t t0)
{
    s->res->coord_cpu_ns += cpu_now(s) - t0;
    coord_acts(s, out);
    fv_round_out_clear(out);
}

static void to_coord(sim_t *s, ev_t *e)
{
    if (s->cr == NULL || s->done)
        return;
    fv_round_out_t out;
    fv_round_out_init(&out);
    uint64_t t0 = cpu_now(s);
    switch (e->type) {
    case EV_TO_COORD: {
        fv_msg_t m;
        fv_diag_t d;
        if (fv_wire_decode(e->bytes, e->len, &s->lim, &m, &d) != 0) {
            sim_fail(s, FV_EPROTO, "the coordinator could not decode what an agent sent");
            break;
        }
        fv_cround_on_msg(s->cr, e->agent, &m, s->now, &out);
        break;
    }
    case EV_UPLOAD: {
        fv_msg_t b = {.type = FV_MSG_VEC_BEGIN};
        b.u.vec_begin.id = e->vec_id;
        b.u.vec_begin.dtype = e->dtype;
        b.u.vec_begin.n_elems = e->n;
        b.u.vec_begin.chunk_elems = 16384;
        b.u.vec_begin.name.ptr = e->name;
        b.u.vec_begin.name.len = strlen(e->name);
        void *buf = fv_cround_vec_begin(s->cr, e->agent, &b, &out);
        if (buf != NULL && !s->ag[e->agent].connected)
            buf = NULL;
        if (buf != NULL) {
            memcpy(buf, e->bytes, e->len);
            fv_cround_vec_end(s->cr, e->agent, buf, e->n, s->now, &out);
        }
        break;
    }
    case EV_LOST:
        fv_cround_lost(s->cr, e->agent, s->now, &out);
        break;
    case EV_CLOSE:
        fv_cround_close(s->cr, &out);
        break;
    default:
        break;
    }
    coord_call_done(s, &out, t0);
    fv_round_out_close(&out);
}

/* ---- one attempt of the round -------------------------------------------------------- */

static int attempt(sim_t *s, fv_diag_t *d)
{
    const fv_round_sim_cfg_t *cfg = s->cfg;
    const fv_job_t *job = cfg->job;
    fv_cround_cfg_t cc;
    memset(&cc, 0, sizeof cc);
    cc.kind = s->kind;
    cc.sizes = s->sizes;
    memcpy(cc.job, s->job_digest, 32);
    cc.job_id64 = 0; /* SecAgg's job id: the digest's first 8 bytes, little-endian */
    for (int i = 7; i >= 0; i--)
        cc.job_id64 = (cc.job_id64 << 8) | s->job_digest[i];
    cc.round = cfg->round;
    cc.n = cfg->n_agents;
    cc.pks = s->pks;
    cc.secagg = job->secagg.on;
    if (cc.secagg) {
        int r = fv_job_secagg_for(job, cc.n, &cc.t, &cc.k, d);
        if (r != 0)
            return r;
    } else {
        cc.t = cc.n;
        cc.k = cc.n - 1;
    }
    fv_rand_fill(&s->rng, cc.gseed, sizeof cc.gseed);
    cc.has_model = s->has_model;
    memcpy(cc.model, s->model_hash, 32);
    cc.n_ref = cfg->n_ref;
    cc.max_uploads = cfg->max_uploads ? cfg->max_uploads : 4;
    cc.train_ms = job->deadlines.train_ms;
    cc.phase_ms = job->deadlines.secagg_phase_ms;
    cc.defer_close = cfg->defer_close;
    s->res->attempts++;
    s->done = s->restart = false;
    uint64_t t0 = cpu_now(s);
    int r = fv_cround_new(&cc, &s->cr, d);
    s->res->coord_cpu_ns += cpu_now(s) - t0;
    if (r != 0)
        return r;
    fv_round_out_t out;
    fv_round_out_init(&out);
    t0 = cpu_now(s);
    r = fv_cround_start(s->cr, s->now, &out);
    coord_call_done(s, &out, t0);
    for (uint32_t i = 0; r == 0 && i < cfg->n_agents && !s->done && !s->restart; i++)
        if (!s->ag[i].connected) {
            t0 = cpu_now(s);
            fv_cround_lost(s->cr, i, s->now, &out);
            coord_call_done(s, &out, t0);
        }
    uint32_t idle = 0;
    while (r == 0 && !s->done && !s->restart && s->failed == 0) {
        ev_t *e = pop(s);
        if (e == NULL) {
            /* nothing in flight: time moves to past every deadline */
            if (++idle > 16) {
                r = fv_diag_set(d, FV_EPHASE, "the round neither ended nor moved");
                break;
            }
            uint64_t step = cc.train_ms > cc.phase_ms ? cc.train_ms : cc.phase_ms;
            s->now += step + 1;
            s->res->deadlines++;
            t0 = cpu_now(s);
            fv_cround_tick(s->cr, s->now, &out);
            coord_call_done(s, &out, t0);
            continue;
        }
        idle = 0;
        switch (e->type) {
        case EV_TO_AGENT:
            to_agent(s, e->agent, e->bytes, e->len);
            break;
        case EV_COMPUTE: {
            fv_round_work_t *w = e->work;
            e->work = NULL;
            run_compute(s, e->agent, w, e->gen);
            break;
        }
        default:
            to_coord(s, e);
            break;
        }
        ev_free(e);
    }
    fv_round_out_close(&out);
    if (s->failed != 0 && r == 0)
        r = fv_diag_set(d, s->failed, "%s", s->fail_why);
    return r;
}

/* ---- the run ------------------------------------------------------------------------- */

static void params_hash(const float *p, size_t n, uint8_t out[32])
{
    fv_sha256(out, p, n * sizeof *p);
}

static int collect(sim_t *s, fv_diag_t *d)
{
    fv_round_sim_result_t *res = s->res;
    res->status = s->done_status;
    snprintf(res->why, sizeof res->why, "%s", s->done_why);
    res->shape = *fv_cround_shape(s->cr);
    for (uint32_t i = 0; i < s->cfg->n_agents; i++)
        res->contributed[i] = fv_cround_contributed(s->cr, i);
    if (s->done_status != 0)
        return 0;
    fv_round_sum_t sum;
    int r = fv_cround_sum(s->cr, &sum);
    if (r != 0)
        return fv_diag_set(d, r, "the round is done but has no sum");
    res->n_summands = sum.n_summands;
    if (sum.words != NULL) {
        size_t n = sum.secagg ? res->shape.words : (size_t)res->shape.plain_n;
        res->sum = malloc(n * sizeof *res->sum);
        if (res->sum == NULL)
            return FV_ENOMEM;
        memcpy(res->sum, sum.words, n * sizeof *res->sum);
    }
    if (sum.fsum != NULL) {
        res->fsum = malloc(res->shape.plain_n * sizeof *res->fsum);
        if (res->fsum == NULL)
            return FV_ENOMEM;
        memcpy(res->fsum, sum.fsum, res->shape.plain_n * sizeof *res->fsum);
    }
    fv_diag_t dd;
    res->decode_status =
        s->kind->decode(&s->sizes, &res->shape, &sum, (double)s->cfg->n_ref, &res->outcome, &dd);
    return 0;
}

int fv_round_sim_run(const fv_round_sim_cfg_t *cfg, fv_round_sim_result_t *ret, fv_diag_t *d)
{
    memset(ret, 0, sizeof *ret);
    if (cfg->job == NULL || cfg->n_agents < 3 || cfg->n_agents > 1000)
        return fv_diag_set(d, FV_EINVAL, "round sim: a job and 3..1000 agents");
    sim_t s;
    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    s.res = ret;
    s.kinds = cfg->kinds != NULL ? cfg->kinds : fv_round_kinds_default();
    s.kind = fv_round_kind_of(s.kinds, cfg->job, cfg->round, NULL);
    if (s.kind == NULL)
        return fv_diag_set(d, FV_EINVAL, "round sim: round %llu is past the job's last round",
                           (unsigned long long)cfg->round);
    s.sizes = cfg->sizes;
    s.sizes.job = cfg->job;
    int r = s.kind->shape(&s.sizes, &s.shape, d);
    if (r != 0)
        return r;
    fv_wire_limits_default(&s.lim);
    uint32_t n = cfg->n_agents;
    s.ag = calloc(n, sizeof *s.ag);
    s.pks = malloc((size_t)n * 32);
    ret->contributed = calloc(n, sizeof *ret->contributed);
    if (s.ag == NULL || s.pks == NULL || ret->contributed == NULL) {
        r = FV_ENOMEM;
        goto out;
    }
    fv_rand_seeded_u64(&s.rng, cfg->seed);
    memset(s.job_digest, 0, 32);
    for (int k = 0; k < 8; k++)
        s.job_digest[k] = (uint8_t)(cfg->seed >> (8 * k));
    s.job_digest[31] = 0xf5;
    if (s.kind->needs & (FV_ROUND_NEEDS_GLOBAL | FV_ROUND_NEEDS_FINAL)) {
        s.has_model = true;
        params_hash(cfg->global, s.sizes.n_params, s.model_hash);
    } else if (s.kind->needs & FV_ROUND_NEEDS_STUDENT) {
        s.has_model = true;
        params_hash(cfg->global, s.sizes.s_n_params, s.model_hash);
    }
    for (uint32_t i = 0; i < n; i++) {
        sagent_t *a = &s.ag[i];
        uint8_t seed[32];
        fv_rand_fill(&s.rng, seed, sizeof seed);
        crypto_sign_seed_keypair(a->pk, a->sk, seed);
        sodium_memzero(seed, sizeof seed);
        fv_rand_fill(&s.rng, seed, sizeof seed);
        fv_rand_seeded(&a->rng, seed);
        memcpy(s.pks + (size_t)i * 32, a->pk, 32);
        snprintf(a->name, sizeof a->name, "agent-%04u", i);
        a->connected = true;
        fv_around_held_t *h = &a->held;
        h->kinds = s.kinds;
        h->job = cfg->job;
        memcpy(h->digest, s.job_digest, 32);
        h->name = a->name;
        h->pk = a->pk;
        h->sk = a->sk;
        h->sizes = s.sizes;
        h->has_global = (s.kind->needs & (FV_ROUND_NEEDS_GLOBAL | FV_ROUND_NEEDS_FINAL)) != 0;
        h->has_student = (s.kind->needs & FV_ROUND_NEEDS_STUDENT) != 0;
        h->has_teacher = (s.kind->needs & (FV_ROUND_NEEDS_TEACHER | FV_ROUND_NEEDS_FINAL)) != 0;
        memcpy(h->global_hash, s.model_hash, 32);
        memcpy(h->student_hash, s.model_hash, 32);
        memcpy(h->teacher_hash, s.model_hash, 32); /* explain in a distilling job */
        const fv_round_data_t *data = spec(&s, i)->data;
        h->has_features = data != NULL && data->x_tr != NULL;
        h->n_tr = data != NULL ? data->n_tr : 0;
    }
    r = attempt(&s, d);
    if (r == 0 && s.restart) {
        /* the coordinator crashed before the round's commit: what was in flight is lost,
         * and the round runs again under its number (the agents still hold the old one
         * until the new ROUND_START) */
        queue_clear(&s);
        fv_cround_free(s.cr);
        s.cr = NULL;
        for (uint32_t i = 0; i < n; i++)
            if (s.ag[i].held_work != NULL) {
                fv_round_work_close(s.ag[i].held_work);
                free(s.ag[i].held_work);
                s.ag[i].held_work = NULL;
            }
        r = attempt(&s, d);
    }
    if (r == 0 && !s.done)
        r = fv_diag_set(d, FV_EINVAL, "round sim: the round did not end");
    if (r == 0)
        r = collect(&s, d);
    if (r == 0) {
        /* ROUND_END to the agents, as the coordinator sends it after the commit */
        fv_round_out_t out;
        fv_round_out_init(&out);
        fv_cround_end(s.cr, s.done_status, s.done_why, &out);
        coord_acts(&s, &out);
        fv_round_out_close(&out);
        ev_t *e;
        while ((e = pop(&s)) != NULL) {
            if (e->type == EV_TO_AGENT)
                to_agent(&s, e->agent, e->bytes, e->len);
            ev_free(e);
        }
    }
    ret->sim_ms = s.now;
out:
    queue_clear(&s);
    fv_cround_free(s.cr);
    for (uint32_t i = 0; s.ag != NULL && i < n; i++) {
        fv_around_free(s.ag[i].r);
        if (s.ag[i].held_work != NULL) {
            fv_round_work_close(s.ag[i].held_work);
            free(s.ag[i].held_work);
        }
        sodium_memzero(s.ag[i].sk, sizeof s.ag[i].sk);
        sodium_memzero(&s.ag[i].rng, sizeof s.ag[i].rng);
    }
    free(s.ag);
    free(s.pks);
    sodium_memzero(&s.rng, sizeof s.rng);
    if (r != 0)
        fv_round_sim_result_close(ret);
    return r;
}

void fv_round_sim_result_close(fv_round_sim_result_t *r)
{
    free(r->contributed);
    free(r->sum);
    free(r->fsum);
    fv_round_outcome_close(&r->outcome);
    r->contributed = NULL, r->sum = NULL, r->fsum = NULL;
}

/* ---- the bench kind ------------------------------------------------------------------ */

static uint64_t bench_rounds(const fv_job_t *job)
{
    return job->rounds;
}

static int bench_shape(const fv_round_sizes_t *z, fv_round_shape_t *ret, fv_diag_t *d)
{
    memset(ret, 0, sizeof *ret);
    if (z->n_params == 0 || z->n_params > UINT32_MAX - 8)
        return fv_diag_set(d, FV_EINVAL, "bench round: %zu words", z->n_params);
    ret->words = (uint32_t)z->n_params;
    ret->plain_n = z->n_params;
    ret->plain_dtype = FV_VEC_U32;
    return 0;
}

static int bench_compute(const fv_round_data_t *data, fv_round_work_t *w)
{
    w->dim = data->n_params;
    w->words = malloc(w->dim * sizeof *w->words);
    if (w->words == NULL)
        return w->rc = FV_ENOMEM;
    fv_rand_t rng;
    fv_rand_seeded_u64(&rng, w->seed);
    fv_rand_fill(&rng, w->words, w->dim * sizeof *w->words);
    sodium_memzero(&rng, sizeof rng);
    return w->rc = 0;
}

static int bench_check(const fv_round_sizes_t *z, const fv_round_shape_t *s, const void *vec,
                       fv_diag_t *d)
{
    (void)z, (void)s, (void)vec, (void)d;
    return 0;
}

static int bench_decode(const fv_round_sizes_t *z, const fv_round_shape_t *s,
                        const fv_round_sum_t *sum, double n_ref, fv_round_outcome_t *ret,
                        fv_diag_t *d)
{
    (void)z, (void)s, (void)n_ref;
    memset(ret, 0, sizeof *ret);
    return sum->words != NULL ? 0 : fv_diag_set(d, FV_EINVAL, "bench round: no sum");
}

static const fv_round_kind_t kind_bench = {.id = 200,
                                           .name = "bench",
                                           .needs = 0,
                                           .n_rounds = bench_rounds,
                                           .shape = bench_shape,
                                           .compute = bench_compute,
                                           .plain_check = bench_check,
                                           .decode = bench_decode};

const fv_round_kind_t *fv_round_sim_bench_kind(void)
{
    return &kind_bench;
}
