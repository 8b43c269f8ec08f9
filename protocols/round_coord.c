/* round_coord.c - the coordinator's round machine (fv_cround_*): one round of one kind,
 * from ROUND_START to DONE, with no I/O, no clock and no logging (fv_round.h).
 *
 * What it holds: the cohort members' per-round flags (below), the SecAgg server
 * (fv_secagg.h; its graph seed comes in the config, so the machine draws no randomness),
 * the upload buffers it hands out at VEC_BEGIN, and without SecAgg the plain accumulator
 * (u32 words summed mod 2^32 for a FV_VEC_U32 kind, f32 elements summed in double for a
 * FV_VEC_F32 kind, in member arrival order: the order the coordinator received them).
 *
 * Phases (r->phase): the SecAgg server's collection phase 0..4 (advertise, share keys,
 * masked input, consistency, unmask); 2 while plain uploads are collected (the same number
 * the masked input has, so the deadline's log line names the same phase in both modes); 5
 * once done. Every phase has one deadline, set when the phase opens: now + train_ms for
 * phase 2 (the masked input, or the plain upload: local training), now + phase_ms for the
 * others (SecAgg's messages, sent before or after the training, never during it). Phase 0
 * (advertise: an agent sends it on ROUND_START, before it trains) counts per member with
 * cfg.await_delivery: phase_ms from when that member's ROUND_START reached its connection
 * (fv_cround_delivered; the coordinator queues the models a member lacks before its
 * ROUND_START, and paces vector sends, so the last member may get it long after the first),
 * and, before that, train_ms from the start bounds the transfer; each member is late at its
 * own deadline and the phase closes when no live member is left unanswered.
 *
 * A member's flags, for the round:
 *   alive     in the round: neither lost, dropped (a violation) nor late (a deadline)
 *   late      left at a deadline without answering what it was asked (silent; not a
 *             member still waiting for an upload slot); fv_cround_late: the
 *             coordinator's benching counts it
 *   lost      its connection is gone (fv_cround_lost): it gets no ROUND_END
 *   answered  answered the phase being collected (reset when a phase opens)
 *   granted   holds an UPLOAD_GO of the upload phase; uploaded: its upload arrived
 *   summed    its plain vector passed the kind's check and is in the accumulator
 *   buf       the buffer vec_begin gave out, until vec_end, lost, or the caller takes it
 *             (fv_cround_vec_take): a straggler past its deadline may still be writing
 *             into it, so a deadline never frees it.
 * Invariants: in_flight = members granted, not uploaded and alive (at most max_uploads);
 * a phase closes when no alive member is unanswered, or at its deadline; DONE is emitted
 * once, as the last action of the call that ends the round, and nothing but
 * fv_cround_end's ROUND_END is emitted after it.
 *
 * Actions (fv_round_out_t): SEND (msg to `member`; its borrowed fields point into the
 * machine: the cohort keys and certificates, the SecAgg outbox of the phase just opened, the
 * ROUND_END reason), DROP (`member` broke the protocol: close its connection with err and why; when
 * `event` is set the drop is its own log line, as "upload_refused"), LOG (level, event,
 * member or UINT32_MAX, err when non-zero, why when non-empty, phase and count as the event
 * names them: "deadline" phase and missing, "phase_closed" the closed phase and its
 * survivors, "upload_received" bytes), PHASE (a SecAgg phase closed with `count` answers,
 * before the next phase's messages), DONE (err 0: fv_cround_sum is ready), CLOSE
 * (cfg.defer_close: SecAgg's last phase is complete; the caller runs fv_cround_close,
 * which does the unmasking, and until then the machine takes nothing: messages and
 * vectors are stale, a loss only takes the member out of ROUND_END).
 *
 * Ownership: the machine owns everything above; actions borrow it until the next call
 * into the machine. Threads: a machine belongs to one thread.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fv_fed_valid.h"
#include "fv_fixed.h"
#include "fv_round.h"

typedef struct member {
    bool alive, lost, answered, granted, uploaded, summed;
    bool late;             /* left the round at a deadline (silent), not lost or dropped */
    bool delivered;        /* cfg.await_delivery: its ROUND_START reached its connection */
    uint64_t delivered_ms; /* ... then */
    void *buf;
} member_t;

struct fv_cround {
    fv_cround_cfg_t cfg; /* cfg.pks and cfg.certs point at pks and certs below */
    uint8_t *pks;
    uint8_t *certs; /* NULL when cfg.certs_len is 0 */
    fv_round_shape_t shape;
    member_t *m;
    fv_secagg_server_t *sa;
    fv_vagg_server_t *va; /* a validated round (fv_vagg.h) instead of sa */
    fv_fed_valid_t fv;    /* ... its statement (the server borrows fv.spec) */
    fv_secagg_outbox_t ob;
    int phase;
    bool started, done;
    bool closing;      /* cfg.defer_close: CLOSE emitted, fv_cround_close not run yet */
    uint64_t close_ms; /* the time the phase was complete */
    int status;
    uint64_t deadline_ms;
    uint64_t start_ms; /* fv_cround_start's time */
    uint32_t counts[FV_SECAGG_N_PHASES];
    uint32_t in_flight;
    uint32_t *acc_u;
    double *acc_f;
    uint32_t n_summands;
    const uint32_t *sum; /* SecAgg's, once done */
    const int64_t *isum; /* a validated round's, once done */
    char end_why[FV_WIRE_TEXT_MAX];
};

/* ---- actions ------------------------------------------------------------------------- */

/* A new action at the end of out, zeroed but for type and member. On allocation failure
 * the action is lost; the list keeps what it had (the caller sees no partial action). */
static fv_round_act_t *act_push(fv_round_out_t *o, fv_round_act_type_t type, uint32_t member)
{
    if (o->n == o->cap) {
        size_t cap = o->cap == 0 ? 16 : 2 * o->cap;
        fv_round_act_t *a = realloc(o->acts, cap * sizeof *a);
        if (a == NULL)
            return NULL;
        o->acts = a;
        o->cap = cap;
    }
    fv_round_act_t *a = &o->acts[o->n++];
    memset(a, 0, sizeof *a);
    a->type = type;
    a->member = member;
    return a;
}

static void act_log(fv_round_out_t *o, uint32_t member, const char *level, const char *event,
                    int err, const char *why)
{
    fv_round_act_t *a = act_push(o, FV_ROUND_ACT_LOG, member);
    if (a == NULL)
        return;
    a->level = level;
    a->event = event;
    a->err = err;
    a->phase = -1;
    snprintf(a->why, sizeof a->why, "%s", why != NULL ? why : "");
}

static void act_drop(fv_round_out_t *o, uint32_t member, int err, const char *event,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void act_drop(fv_round_out_t *o, uint32_t member, int err, const char *event,
                     const char *fmt, ...)
{
    fv_round_act_t *a = act_push(o, FV_ROUND_ACT_DROP, member);
    if (a == NULL)
        return;
    a->err = err;
    a->event = event;
    a->level = "warn";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->why, sizeof a->why, fmt, ap);
    va_end(ap);
}

static fv_round_act_t *act_send(fv_round_out_t *o, uint32_t member, fv_msg_type_t type)
{
    fv_round_act_t *a = act_push(o, FV_ROUND_ACT_SEND, member);
    if (a != NULL)
        a->msg.type = type;
    return a;
}

/* ---- the machine ---------------------------------------------------------------------- */

static void free_buf(member_t *m)
{
    free(m->buf);
    m->buf = NULL;
}

int fv_cround_new(const fv_cround_cfg_t *cfg, fv_cround_t **ret, fv_diag_t *d)
{
    if (cfg == NULL || cfg->kind == NULL || cfg->n == 0 || cfg->pks == NULL || ret == NULL)
        return fv_diag_set(d, FV_EINVAL, "round machine: no kind, no cohort or no keys");
    fv_cround_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return fv_diag_set(d, FV_ENOMEM, "out of memory");
    int rc = 0;
    r->cfg = *cfg;
    if (r->cfg.max_uploads == 0)
        r->cfg.max_uploads = 1;
    fv_secagg_outbox_init(&r->ob);
    r->phase = -1;
    r->m = calloc(cfg->n, sizeof *r->m);
    r->pks = malloc((size_t)cfg->n * 32);
    if (r->m == NULL || r->pks == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(r->pks, cfg->pks, (size_t)cfg->n * 32);
    r->cfg.pks = r->pks;
    r->cfg.certs = NULL;
    if (cfg->certs_len > 0) {
        if (cfg->certs == NULL || (r->certs = malloc(cfg->certs_len)) == NULL) {
            rc = fv_diag_set(d, cfg->certs == NULL ? FV_EINVAL : FV_ENOMEM,
                             "round machine: cannot copy the cohort's certificates");
            goto fail;
        }
        memcpy(r->certs, cfg->certs, cfg->certs_len);
        r->cfg.certs = r->certs;
    }
    if (cfg->kind->shape == NULL)
        rc = fv_diag_set(d, FV_EINVAL, "round kind %s has no vector", cfg->kind->name);
    else
        rc = cfg->kind->shape(&cfg->sizes, &r->shape, d);
    if (rc != 0)
        goto fail;
    if (cfg->secagg && fv_round_validated(cfg->sizes.job, &r->shape)) {
        if ((rc = fv_fed_valid_init(&r->shape.lay, cfg->sizes.job, &r->fv, d)) != 0)
            goto fail;
        fv_valid_layout_t vl;
        uint32_t t0 = cfg->t;
        if ((rc = fv_valid_layout_init(&r->fv.spec, cfg->n, t0, &vl, d)) != 0)
            goto fail;
        size_t mx = fv_vagg_max_message(&vl);
        if (cfg->max_msg > 0 && mx > cfg->max_msg) {
            rc = fv_diag_set(d, FV_ETOOBIG,
                             "round %" PRIu64 " (%s): a validated round's largest message is %zu "
                             "bytes (%zu parameters, %zu bins), over the transport's %zu: fewer "
                             "hist_bins or a smaller model",
                             cfg->round, cfg->kind->name, mx, r->shape.lay.n_params,
                             r->shape.lay.hist_bins, cfg->max_msg);
            goto fail;
        }
        fv_vagg_params_t vp = {.federation = cfg->federation,
                               .job_id = cfg->job_id64,
                               .round = cfg->round,
                               .n_clients = cfg->n,
                               .threshold = cfg->t,
                               .spec = &r->fv.spec,
                               .identity_pks = r->pks};
        if ((rc = fv_vagg_server_new(&vp, &r->va, d)) != 0)
            goto fail;
    } else if (cfg->secagg) {
        fv_secagg_params_t p;
        memset(&p, 0, sizeof p);
        p.job_id = cfg->job_id64;
        p.round = cfg->round;
        p.n_clients = cfg->n;
        p.threshold = cfg->t;
        p.n_neighbors = cfg->k;
        p.dim = r->shape.words;
        p.prg = FV_PRG_DEFAULT;
        memcpy(p.graph_seed, cfg->gseed, 32);
        p.quant_bits = 0;
        p.identity_pks = r->pks;
        if ((rc = fv_secagg_server_new(&p, &r->sa, d)) != 0)
            goto fail;
    } else if (r->shape.plain_dtype == FV_VEC_U32) {
        r->acc_u = calloc(r->shape.plain_n > 0 ? r->shape.plain_n : 1, sizeof *r->acc_u);
    } else if (r->shape.plain_dtype == FV_VEC_F32) {
        r->acc_f = calloc(r->shape.plain_n > 0 ? r->shape.plain_n : 1, sizeof *r->acc_f);
    } else {
        rc = fv_diag_set(d, FV_EINVAL, "round kind %s: plain vector of unknown type %d",
                         cfg->kind->name, (int)r->shape.plain_dtype);
        goto fail;
    }
    if (!cfg->secagg && r->acc_u == NULL && r->acc_f == NULL) {
        rc = fv_diag_set(d, FV_ENOMEM, "out of memory");
        goto fail;
    }
    *ret = r;
    return 0;
fail:
    fv_cround_free(r);
    return rc;
}

void fv_cround_free(fv_cround_t *r)
{
    if (r == NULL)
        return;
    if (r->m != NULL)
        for (uint32_t i = 0; i < r->cfg.n; i++)
            free_buf(&r->m[i]);
    free(r->m);
    free(r->pks);
    free(r->certs);
    fv_secagg_server_free(r->sa);
    fv_vagg_server_free(r->va);
    fv_fed_valid_close(&r->fv);
    fv_secagg_outbox_close(&r->ob);
    free(r->acc_u);
    free(r->acc_f);
    free(r);
}

/* The phase in which members train: SecAgg's masked input (2), a validated round's
 * proof (1), the plain upload (2). */
static int train_phase(const fv_cround_t *r)
{
    return r->va != NULL ? 1 : 2;
}

static bool has_protocol(const fv_cround_t *r)
{
    return r->sa != NULL || r->va != NULL;
}

static void set_deadline(fv_cround_t *r, uint64_t now_ms)
{
    uint64_t ms = r->phase == train_phase(r) ? r->cfg.train_ms : r->cfg.phase_ms;
    if (r->phase == 0 && r->cfg.await_delivery)
        ms = r->cfg.train_ms; /* the latest a member's own phase 0 deadline can be */
    r->deadline_ms = now_ms + ms;
    for (uint32_t i = 0; i < r->cfg.n; i++)
        r->m[i].answered = false;
}

static void grant_uploads(fv_cround_t *r, fv_round_out_t *out)
{
    for (uint32_t i = 0; i < r->cfg.n && r->in_flight < r->cfg.max_uploads; i++) {
        member_t *m = &r->m[i];
        if (m->alive && !m->granted && !m->uploaded) {
            m->granted = true;
            r->in_flight++;
            fv_round_act_t *a = act_send(out, i, FV_MSG_UPLOAD_GO);
            if (a != NULL) {
                memcpy(a->msg.u.upload_go.job, r->cfg.job, 32);
                a->msg.u.upload_go.round = r->cfg.round;
            }
        }
    }
}

static uint32_t n_alive_unanswered(const fv_cround_t *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->cfg.n; i++)
        n += r->m[i].alive && !r->m[i].answered;
    return n;
}

/* A member leaves the round (lost, dropped or late): its upload slot is given back. Its
 * buffer stays until vec_end or lost (the connection may still be writing into it). */
static void leave(fv_cround_t *r, member_t *m)
{
    if (!m->alive)
        return;
    m->alive = false;
    if (m->granted && !m->uploaded && r->in_flight > 0)
        r->in_flight--;
}

/* The round ends: DONE, the last action of this call. */
static void finish(fv_cround_t *r, int status, const char *why, fv_round_out_t *out)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", why != NULL ? why : "");
    if (status == 0 && r->va != NULL) {
        uint32_t outlier = 0;
        status = fv_vagg_server_result(r->va, &r->isum, &outlier);
        if (status == 0)
            r->n_summands = fv_vagg_server_set_size(r->va, 5);
        else
            snprintf(buf, sizeof buf, "validation: no sum (%s)", fv_err_name(status));
        if (status == 0 && outlier != 0)
            act_log(out, outlier - 1, "warn", "holder_outlier", FV_EAUTH,
                    "its sum share disagreed with the other holders'; left out");
    } else if (status == 0 && r->sa != NULL) {
        status = fv_secagg_server_result(r->sa, &r->sum);
        if (status == 0)
            r->n_summands = fv_secagg_server_set_size(r->sa, 3);
        else
            snprintf(buf, sizeof buf, "secagg: no sum (%s)", fv_err_name(status));
    }
    if (status == 0 && r->n_summands == 0) {
        status = FV_ETHRESHOLD;
        snprintf(buf, sizeof buf, "no agent contributed");
    }
    r->done = true;
    r->status = status;
    r->phase = 5;
    fv_round_act_t *a = act_push(out, FV_ROUND_ACT_DONE, UINT32_MAX);
    if (a != NULL) {
        a->err = status;
        snprintf(a->why, sizeof a->why, "%s", buf);
    }
}

/* A validated round's decisions: one line per failed proof (the check that failed, the
 * holders that complained) and per holder named as an outlier. */
static void log_verdicts(fv_cround_t *r, fv_round_out_t *out)
{
    for (uint32_t i = 0; i < r->cfg.n; i++) {
        fv_valid_verdict_t v;
        uint32_t complaints = 0;
        if (!fv_vagg_server_verdict(r->va, i, &v, &complaints))
            continue;
        char why[256];
        if (!v.ok) {
            snprintf(why, sizeof why,
                     "proof failed check '%s' (%u holders complained, decided from %u)", v.check,
                     complaints, v.n_used);
            act_log(out, i, "warn", "proof_failed", FV_EAUTH, why);
        }
        uint32_t o = fv_vagg_server_outlier(r->va, i);
        if (o != UINT32_MAX && o < r->cfg.n) {
            snprintf(why, sizeof why,
                     "its check of member %u's proof disagreed with the other holders'", i);
            act_log(out, o, "warn", "holder_outlier", FV_EAUTH, why);
        }
    }
}

/* Ends the SecAgg phase being collected and sends the next phase's messages. */
static void secagg_close(fv_cround_t *r, uint64_t now_ms, fv_round_out_t *out)
{
    fv_diag_t d = {""};
    int closed = r->phase;
    if (closed >= 0 && closed < FV_SECAGG_N_PHASES) {
        uint32_t answered = 0;
        for (uint32_t i = 0; i < r->cfg.n; i++)
            answered += r->m[i].alive && r->m[i].answered;
        r->counts[closed] = answered;
        fv_round_act_t *a = act_push(out, FV_ROUND_ACT_PHASE, UINT32_MAX);
        if (a != NULL) {
            a->phase = closed;
            a->count = answered;
        }
    }
    fv_secagg_outbox_clear(&r->ob);
    int rc = r->va != NULL ? fv_vagg_server_close_phase(r->va, &r->ob, &d)
                           : fv_secagg_server_close_phase(r->sa, &r->ob, &d);
    if (rc != 0) {
        finish(r, rc, d.msg, out);
        return;
    }
    int ph = r->va != NULL ? fv_vagg_server_phase(r->va) : fv_secagg_server_phase(r->sa);
    fv_round_act_t *a = act_push(out, FV_ROUND_ACT_LOG, UINT32_MAX);
    if (a != NULL) {
        a->level = "info";
        a->event = "phase_closed";
        a->phase = closed;
        a->count = r->va != NULL
                       ? fv_vagg_server_set_size(r->va, closed + 1)
                       : fv_secagg_server_set_size(r->sa, closed + 1 > 5 ? 5 : closed + 1);
    }
    if (r->va != NULL && closed == 2)
        log_verdicts(r, out);
    if (ph == (r->va != NULL ? 4 : 5)) {
        finish(r, 0, "", out);
        return;
    }
    r->phase = ph;
    set_deadline(r, now_ms);
    if (r->va != NULL) /* nothing is asked of a live member outside the phase's set */
        for (uint32_t i = 0; i < r->cfg.n; i++)
            if (r->m[i].alive && !fv_vagg_server_expects(r->va, i))
                r->m[i].answered = true;
    for (size_t i = 0; i < r->ob.n; i++) {
        const fv_secagg_outmsg_t *om = &r->ob.msgs[i];
        if (om->to >= r->cfg.n || !r->m[om->to].alive)
            continue;
        fv_round_act_t *s = act_send(out, om->to, FV_MSG_SECAGG);
        if (s == NULL)
            continue;
        memcpy(s->msg.u.secagg.job, r->cfg.job, 32);
        s->msg.u.secagg.round = r->cfg.round;
        s->msg.u.secagg.data = om->data;
        s->msg.u.secagg.len = om->len;
    }
    if (r->phase == 2 && r->sa != NULL) {
        r->in_flight = 0;
        for (uint32_t i = 0; i < r->cfg.n; i++)
            r->m[i].granted = r->m[i].uploaded = false;
        grant_uploads(r, out);
    }
}

/* Closes the SecAgg phase being collected, or (cfg.defer_close, the last phase) hands the
 * close to the caller: CLOSE, the last action of this call. */
static void close_phase(fv_cround_t *r, uint64_t now_ms, fv_round_out_t *out)
{
    if (r->cfg.defer_close && r->sa != NULL && r->phase == FV_SECAGG_N_PHASES - 1) {
        r->closing = true;
        r->close_ms = now_ms;
        act_push(out, FV_ROUND_ACT_CLOSE, UINT32_MAX);
        return;
    }
    secagg_close(r, now_ms, out);
}

void fv_cround_close(fv_cround_t *r, fv_round_out_t *out)
{
    if (!r->closing)
        return;
    r->closing = false;
    secagg_close(r, r->close_ms, out);
}

void fv_cround_set_par_for(fv_cround_t *r,
                           void (*par_for)(void *par_ctx, size_t n, void (*fn)(void *arg, size_t i),
                                           void *arg),
                           void *par_ctx)
{
    if (r->sa != NULL)
        fv_secagg_server_set_par_for(r->sa, par_for, par_ctx);
}

void fv_cround_prefault(fv_cround_t *r)
{
    if (r->acc_u != NULL)
        memset(r->acc_u, 0, (r->shape.plain_n > 0 ? r->shape.plain_n : 1) * sizeof *r->acc_u);
    if (r->acc_f != NULL)
        memset(r->acc_f, 0, (r->shape.plain_n > 0 ? r->shape.plain_n : 1) * sizeof *r->acc_f);
    if (r->sa != NULL)
        fv_secagg_server_prefault(r->sa);
}

bool fv_cround_closing(const fv_cround_t *r)
{
    return r->closing;
}

/* The phase closes once every live member answered. */
static void progress(fv_cround_t *r, uint64_t now_ms, fv_round_out_t *out)
{
    if (r->done || r->closing || !r->started || n_alive_unanswered(r) > 0)
        return;
    if (has_protocol(r))
        close_phase(r, now_ms, out);
    else
        finish(r, 0, "", out);
}

int fv_cround_start(fv_cround_t *r, uint64_t now_ms, fv_round_out_t *out)
{
    if (r->started)
        return FV_EPHASE;
    r->started = true;
    for (uint32_t i = 0; i < r->cfg.n; i++) {
        r->m[i].alive = true;
        fv_round_act_t *a = act_send(out, i, FV_MSG_ROUND_START);
        if (a == NULL)
            continue;
        fv_msg_t *m = &a->msg;
        memcpy(m->u.round_start.job, r->cfg.job, 32);
        m->u.round_start.round = r->cfg.round;
        m->u.round_start.kind = r->cfg.kind->id;
        m->u.round_start.index = i;
        m->u.round_start.n = r->cfg.n;
        m->u.round_start.t = r->cfg.t;
        m->u.round_start.k = r->cfg.k;
        memcpy(m->u.round_start.gseed, r->cfg.gseed, 32);
        m->u.round_start.pks = r->pks;
        m->u.round_start.pks_len = (size_t)r->cfg.n * 32;
        m->u.round_start.has_model = r->cfg.has_model;
        memcpy(m->u.round_start.model, r->cfg.model, 32);
        m->u.round_start.n_ref = r->cfg.n_ref;
        m->u.round_start.certs = r->cfg.certs;
        m->u.round_start.certs_len = r->cfg.certs_len;
    }
    r->phase = has_protocol(r) ? 0 : 2;
    r->start_ms = now_ms;
    set_deadline(r, now_ms);
    if (!has_protocol(r))
        grant_uploads(r, out);
    return 0;
}

/* ---- members' messages ----------------------------------------------------------------- */

void fv_cround_on_msg(fv_cround_t *r, uint32_t member, const fv_msg_t *m, uint64_t now_ms,
                      fv_round_out_t *out)
{
    if (m->type != FV_MSG_SECAGG || member >= r->cfg.n)
        return;
    if (memcmp(m->u.secagg.job, r->cfg.job, 32) != 0) {
        act_drop(out, member, FV_EPROTO, NULL, "secagg message for another job");
        leave(r, &r->m[member]);
        progress(r, now_ms, out);
        return;
    }
    if (r->done || r->closing || !r->started || !has_protocol(r) ||
        m->u.secagg.round != r->cfg.round || !r->m[member].alive) {
        char why[128];
        snprintf(why, sizeof why, "secagg message of round %" PRIu64 " from a member %s",
                 m->u.secagg.round,
                 m->u.secagg.round != r->cfg.round ? "(another round)" : "out of the round");
        act_log(out, member, "warn", "stale_message", 0, why);
        return;
    }
    fv_diag_t d = {""};
    if (r->va != NULL) {
        /* a validated round's message names its sender too: the member's index */
        uint8_t vt;
        uint32_t vfrom;
        if (fv_vagg_msg_peek(m->u.secagg.data, m->u.secagg.len, &vt, &vfrom) != 0 ||
            vfrom != member) {
            act_drop(out, member, FV_EPROTO, NULL, "validation message %s",
                     vfrom != member ? "names another sender" : "malformed");
            leave(r, &r->m[member]);
            progress(r, now_ms, out);
            return;
        }
        if (fv_vagg_server_handle(r->va, m->u.secagg.data, m->u.secagg.len, &d) != 0) {
            act_log(out, member, "warn", "validation_rejected", 0, d.msg);
            return;
        }
        r->m[member].answered = fv_vagg_server_answered(r->va, member);
        progress(r, now_ms, out);
        return;
    }
    /* The SecAgg message names its sender: it must be the member's index. */
    fv_secagg_msg_t sm;
    if (fv_secagg_msg_decode(m->u.secagg.data, m->u.secagg.len, &sm, &d) != 0) {
        act_drop(out, member, FV_EPROTO, NULL, "bad secagg message: %s", d.msg);
        leave(r, &r->m[member]);
        progress(r, now_ms, out);
        return;
    }
    uint32_t from = sm.from;
    uint8_t type = sm.type;
    fv_secagg_msg_close(&sm);
    if (from != member || type == FV_SECAGG_MSG_MASKED) {
        if (from != member)
            act_drop(out, member, FV_EPROTO, NULL, "secagg message claims sender %u, you are %d",
                     from, (int)member);
        else
            act_drop(out, member, FV_EPROTO, NULL, "masked input must come as a vector upload");
        leave(r, &r->m[member]);
        progress(r, now_ms, out);
        return;
    }
    if (fv_secagg_server_handle(r->sa, m->u.secagg.data, m->u.secagg.len, &d) != 0) {
        act_log(out, member, "warn", "secagg_rejected", 0, d.msg);
        return;
    }
    r->m[member].answered = true;
    progress(r, now_ms, out);
}

static const char *dtype_name(fv_vec_dtype_t t)
{
    return t == FV_VEC_U32 ? "u32" : t == FV_VEC_F32 ? "f32" : "?";
}

void *fv_cround_vec_begin(fv_cround_t *r, uint32_t member, const fv_msg_t *b, fv_round_out_t *out)
{
    if (member >= r->cfg.n || r->done || r->closing || !r->started)
        return NULL;
    member_t *mb = &r->m[member];
    if (!mb->alive || !mb->granted || mb->uploaded || mb->buf != NULL ||
        b->u.vec_begin.id != (uint32_t)r->cfg.round)
        return NULL;
    const char *want = r->sa != NULL ? "masked" : "update";
    fv_vec_dtype_t dt = r->sa != NULL ? FV_VEC_U32 : r->shape.plain_dtype;
    uint64_t n = r->sa != NULL ? 8 + (uint64_t)r->shape.words : r->shape.plain_n;
    if (b->u.vec_begin.name.len != strlen(want) ||
        memcmp(b->u.vec_begin.name.ptr, want, strlen(want)) != 0 || b->u.vec_begin.dtype != dt ||
        b->u.vec_begin.n_elems != n) {
        /* Say what was expected, to the log and to the agent (ERROR): a mismatch is a
         * version skew or a broken peer, and both sides' operators need the numbers. */
        const fv_fed_layout_t *l = &r->shape.lay;
        act_drop(out, member, FV_EPOLICY, "upload_refused",
                 "round %" PRIu64 " (%s) expects vector '%s' of %" PRIu64 " %s elements "
                 "(%zu parameters, %zu models x %zu bins, %zu classes); got '%.*s' of %" PRIu64
                 " %s",
                 r->cfg.round, r->cfg.kind->name, want, n, dtype_name(dt), l->n_params, l->n_models,
                 l->hist_bins, l->n_classes,
                 (int)(b->u.vec_begin.name.len < 32 ? b->u.vec_begin.name.len : 32),
                 b->u.vec_begin.name.ptr, b->u.vec_begin.n_elems,
                 b->u.vec_begin.dtype == FV_VEC_U32 ? "u32" : "f32");
        leave(r, mb); /* the phase moves on at fv_cround_lost */
        return NULL;
    }
    mb->buf = malloc(n > 0 ? n * 4 : 4);
    return mb->buf;
}

/* An upload that fails its checks: logged with the reason, left out of the sum, and the
 * member dropped from the round (the caller closes its connection with the reason). */
static void refuse_upload(fv_cround_t *r, uint32_t member, const char *event, int err,
                          const char *why, fv_round_out_t *out)
{
    act_log(out, member, "warn", event, err, why);
    /* the ERROR reason holds FV_WIRE_TEXT_MAX bytes: the sentence is cut there */
    act_drop(out, member, FV_EPROTO, NULL, "round %" PRIu64 ": upload refused: %.200s",
             r->cfg.round, why);
    leave(r, &r->m[member]);
}

/* words -> the MASKED message's little-endian bytes, in place */
static void words_to_le(void *vec, uint64_t n)
{
    uint32_t *w = vec;
    uint8_t *bytes = vec;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t x = w[i];
        bytes[4 * i] = (uint8_t)x;
        bytes[4 * i + 1] = (uint8_t)(x >> 8);
        bytes[4 * i + 2] = (uint8_t)(x >> 16);
        bytes[4 * i + 3] = (uint8_t)(x >> 24);
    }
}

void fv_cround_vec_end(fv_cround_t *r, uint32_t member, void *vec, uint64_t n, uint64_t now_ms,
                       fv_round_out_t *out)
{
    if (member >= r->cfg.n || vec == NULL || vec != r->m[member].buf)
        return;
    member_t *mb = &r->m[member];
    if (r->done || r->closing || !mb->alive) {
        free_buf(mb); /* a straggler's upload, after its deadline */
        return;
    }
    mb->uploaded = true;
    if (r->in_flight > 0)
        r->in_flight--;
    fv_diag_t d = {""};
    if (r->sa != NULL) {
        words_to_le(vec, n);
        fv_secagg_msg_t sm;
        int rc = fv_secagg_msg_decode(vec, n * 4, &sm, &d);
        if (rc == 0) {
            bool ok = sm.from == member && sm.type == FV_SECAGG_MSG_MASKED;
            fv_secagg_msg_close(&sm);
            if (!ok)
                rc = FV_EPEER;
        }
        if (rc == 0)
            rc = fv_secagg_server_handle(r->sa, vec, n * 4, &d);
        if (rc != 0)
            refuse_upload(r, member, "masked_rejected", rc, d.msg, out);
        else
            mb->answered = true;
    } else {
        int rc = r->cfg.kind->plain_check != NULL
                     ? r->cfg.kind->plain_check(&r->cfg.sizes, &r->shape, vec, &d)
                     : 0;
        if (rc != 0) {
            /* the coordinator sees a plain vector: every claim in it is checked first; a
             * claim that fails is the peer's (FV_EPEER in the log, whatever the check
             * returned) */
            refuse_upload(r, member, "update_rejected", FV_EPEER, d.msg, out);
        } else if (r->acc_u != NULL) {
            fv_mod_add(n, vec, r->acc_u);
            r->n_summands++;
            mb->answered = mb->summed = true;
        } else {
            const float *f = vec;
            for (uint64_t i = 0; i < n; i++)
                r->acc_f[i] += (double)f[i];
            r->n_summands++;
            mb->answered = mb->summed = true;
        }
    }
    free_buf(mb);
    if (mb->answered) {
        fv_round_act_t *a = act_push(out, FV_ROUND_ACT_LOG, member);
        if (a != NULL) {
            a->level = "info";
            a->event = "upload_received";
            a->phase = r->phase;
            a->count = n * 4 > UINT32_MAX ? UINT32_MAX : (uint32_t)(n * 4);
        }
    }
    grant_uploads(r, out);
    progress(r, now_ms, out);
}

void fv_cround_lost(fv_cround_t *r, uint32_t member, uint64_t now_ms, fv_round_out_t *out)
{
    if (member >= r->cfg.n)
        return;
    member_t *mb = &r->m[member];
    mb->lost = true;
    free_buf(mb); /* the connection is gone: nothing writes into it any more */
    if (r->done || r->closing)
        return; /* (closing: the phase is complete; the member is out of ROUND_END) */
    /* a dropped member left at its DROP, but the phase may have waited for this */
    leave(r, mb);
    if (r->phase == 2)
        grant_uploads(r, out);
    progress(r, now_ms, out);
}

void fv_cround_delivered(fv_cround_t *r, uint32_t member, uint64_t now_ms)
{
    if (member >= r->cfg.n || !r->started || r->m[member].delivered)
        return;
    r->m[member].delivered = true;
    r->m[member].delivered_ms = now_ms;
}

/* A member's own deadline in phase 0 (advertise): phase_ms from when its ROUND_START
 * reached its connection (cfg.await_delivery; else from the start); before that, the
 * transfer that precedes ROUND_START (the models it lacks) is bounded by train_ms. */
static uint64_t phase0_deadline(const fv_cround_t *r, const member_t *m)
{
    if (!r->cfg.await_delivery)
        return r->start_ms + r->cfg.phase_ms;
    if (!m->delivered)
        return r->start_ms + r->cfg.train_ms;
    uint64_t d = m->delivered_ms + r->cfg.phase_ms;
    return d < r->start_ms + r->cfg.train_ms ? d : r->start_ms + r->cfg.train_ms;
}

static bool past_deadline(const fv_cround_t *r, const member_t *m, uint64_t now_ms)
{
    if (r->phase == 0 && has_protocol(r))
        return now_ms >= phase0_deadline(r, m);
    return now_ms >= r->deadline_ms;
}

void fv_cround_tick(fv_cround_t *r, uint64_t now_ms, fv_round_out_t *out)
{
    if (r->done || r->closing || !r->started)
        return;
    uint32_t missing = 0;
    for (uint32_t i = 0; i < r->cfg.n; i++)
        missing += r->m[i].alive && !r->m[i].answered && past_deadline(r, &r->m[i], now_ms);
    if (missing == 0 && now_ms < r->deadline_ms)
        return;
    fv_round_act_t *a = act_push(out, FV_ROUND_ACT_LOG, UINT32_MAX);
    if (a != NULL) {
        a->level = "warn";
        a->event = "deadline";
        a->phase = r->phase;
        a->count = missing;
    }
    for (uint32_t i = 0; i < r->cfg.n; i++)
        if (r->m[i].alive && !r->m[i].answered && past_deadline(r, &r->m[i], now_ms)) {
            /* a member still waiting for an upload slot was not asked yet: not late */
            r->m[i].late = !(r->phase == 2 && r->va == NULL && !r->m[i].granted);
            leave(r, &r->m[i]); /* a straggler is a dropout */
        }
    if (n_alive_unanswered(r) > 0)
        return; /* phase 0: others' ROUND_START still on its way, their deadlines later */
    if (has_protocol(r))
        close_phase(r, now_ms, out);
    else
        finish(r, 0, "", out);
}

void fv_cround_fail(fv_cround_t *r, int err, const char *why, fv_round_out_t *out)
{
    if (r->done)
        return;
    r->closing = false;
    r->done = true;
    r->status = err != 0 ? err : FV_EIO;
    r->phase = 5;
    fv_round_act_t *a = act_push(out, FV_ROUND_ACT_DONE, UINT32_MAX);
    if (a != NULL) {
        a->err = r->status;
        snprintf(a->why, sizeof a->why, "%s", why != NULL ? why : "");
    }
}

void fv_cround_end(fv_cround_t *r, int status, const char *why, fv_round_out_t *out)
{
    snprintf(r->end_why, sizeof r->end_why, "%s", why != NULL ? why : "");
    for (uint32_t i = 0; i < r->cfg.n; i++) {
        if (r->m[i].lost)
            continue;
        fv_round_act_t *a = act_send(out, i, FV_MSG_ROUND_END);
        if (a == NULL)
            continue;
        memcpy(a->msg.u.round_end.job, r->cfg.job, 32);
        a->msg.u.round_end.round = r->cfg.round;
        a->msg.u.round_end.status = status;
        a->msg.u.round_end.reason.ptr = r->end_why;
        a->msg.u.round_end.reason.len = strnlen(r->end_why, FV_WIRE_TEXT_MAX);
    }
}

/* ---- what the caller reads -------------------------------------------------------------- */

bool fv_cround_done(const fv_cround_t *r)
{
    return r->done;
}

int fv_cround_sum(const fv_cround_t *r, fv_round_sum_t *ret)
{
    if (!r->done || r->status != 0)
        return FV_EPHASE;
    memset(ret, 0, sizeof *ret);
    ret->secagg = has_protocol(r);
    ret->words = r->sa != NULL ? r->sum : r->va != NULL ? NULL : r->acc_u;
    ret->isum = r->va != NULL ? r->isum : NULL;
    ret->fsum = r->acc_f;
    ret->n_summands = r->n_summands;
    return 0;
}

bool fv_cround_contributed(const fv_cround_t *r, uint32_t member)
{
    if (member >= r->cfg.n)
        return false;
    if (r->sa != NULL)
        return fv_secagg_server_phase(r->sa) == 5 && fv_secagg_server_in_set(r->sa, 3, member);
    if (r->va != NULL)
        return fv_vagg_server_phase(r->va) == 4 && fv_vagg_server_in_set(r->va, 5, member);
    return r->m[member].summed;
}

bool fv_cround_verdict(const fv_cround_t *r, uint32_t member, fv_valid_verdict_t *ret,
                       uint32_t *ret_complaints)
{
    return r->va != NULL && fv_vagg_server_verdict(r->va, member, ret, ret_complaints);
}

bool fv_cround_late(const fv_cround_t *r, uint32_t member)
{
    return member < r->cfg.n && r->m[member].late;
}

bool fv_cround_alive(const fv_cround_t *r, uint32_t member)
{
    return member < r->cfg.n && !r->done && r->m[member].alive;
}

int fv_cround_phase(const fv_cround_t *r)
{
    return r->phase;
}

uint32_t fv_cround_phase_count(const fv_cround_t *r, int p)
{
    return p >= 0 && p < FV_SECAGG_N_PHASES ? r->counts[p] : 0;
}

const fv_round_shape_t *fv_cround_shape(const fv_cround_t *r)
{
    return &r->shape;
}

uint32_t fv_cround_n(const fv_cround_t *r)
{
    return r->cfg.n;
}

uint32_t fv_cround_threshold(const fv_cround_t *r)
{
    return r->cfg.t;
}

uint32_t fv_cround_uploads_in_flight(const fv_cround_t *r)
{
    return r->in_flight;
}

uint32_t fv_cround_answered(const fv_cround_t *r)
{
    uint32_t n = 0;
    if (!r->done)
        for (uint32_t i = 0; i < r->cfg.n; i++)
            n += r->m[i].alive && r->m[i].answered;
    return n;
}

void *fv_cround_vec_take(fv_cround_t *r, uint32_t member)
{
    if (member >= r->cfg.n)
        return NULL;
    void *b = r->m[member].buf;
    r->m[member].buf = NULL;
    return b;
}
