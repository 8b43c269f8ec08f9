/* coord_conn.c - the agent port: the registry of agents and their connections' callbacks.
 *
 * Agents are known by their certificate name (fv_conn checked the certificate and the
 * agent role before on_open): an agent_t outlives its connections, so a reconnecting
 * agent keeps its traffic counters and the last job it took part in, and a second
 * connection of the same name replaces the first. Agents are freed only at exit.
 *
 * Everything an agent sends is hostile until checked here: a message must name the
 * running job and the round being run, a SecAgg message its sender's own index, an upload
 * the exact name, type and length the round expects (on_vec_begin, before any buffer is
 * allocated); a violation closes the connection (FV_EPROTO, FV_EPOLICY) and the daemon goes
 * on. Answers that arrive between jobs or rounds are stale, not errors.
 *
 * Threading: the loop thread only (fv_conn's callbacks).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "coord-int.h"
#include "fv_fixed.h"

/* ---- connection callbacks ------------------------------------------------------ */

static agent_t *agent_by_name(coord_t *c, const char *name)
{
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

static void agent_lost(coord_t *c, agent_t *a);

void coord__on_open(fv_conn_t *conn, const fv_identity_t *peer)
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
        coord__oq_clear(a);
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
        coord_logj("error", "state_agent_failed",
                   json_pack("{s:s,s:s}", "agent", a->name, "why", d.msg));
    coord_audit(c, NULL, "agent.connected",
                json_pack("{s:s,s:s,s:s}", "agent", a->name, "addr", a->addr, "serial", a->serial));
    coord_metrics_refresh(c);
    a->done_sent = false;
    if (a->done_pending)
        coord__send_ctl(c, a, FV_MSG_JOB_DONE, 0, ""); /* it may have missed the end of its job */
    if (c->run.state == ST_WAITING || c->run.state == ST_ROUND)
        coord__send_offer(c, a);
}

static void agent_lost(coord_t *c, agent_t *a)
{
    if (c->run.state == ST_ROUND && a->alive) {
        a->alive = false;
        if (a->granted && !a->uploaded && c->rnd.in_flight > 0)
            c->rnd.in_flight--;
        free(a->upload);
        a->upload = NULL;
        if (c->rnd.phase == 2)
            coord__grant_uploads(c);
        coord__phase_progress(c);
    }
}

void coord__on_close(fv_conn_t *conn, int err, const char *why)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    json_t *f = json_pack("{s:s,s:s,s:s}", "addr", fv_conn_peer_addr(conn), "err", fv_err_name(err),
                          "why", why);
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
            if (c->metrics.refusals != NULL)
                fv_prom_add(c->metrics.refusals, fv_err_name(err), 1);
        } else if (a != NULL) {
            coord_audit(c, NULL, err == 0 ? "agent.disconnected" : "agent.dropped",
                        json_pack("{s:s,s:s,s:s,s:s}", "agent", peer != NULL ? peer->name : a->name,
                                  "addr", fv_conn_peer_addr(conn), "err", fv_err_name(err), "why",
                                  why));
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
    coord__oq_clear(a);
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
    return c->job != NULL && sodium_memcmp(job, c->run.digest, 32) == 0;
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

void coord__on_msg(fv_conn_t *conn, const fv_msg_t *m)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    if (a == NULL)
        return;
    fv_diag_t d;
    if (c->run.state != ST_WAITING && c->run.state != ST_ROUND) {
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
        memcpy(a->part_job, c->run.digest, 32);
        a->rows = m->u.job_accept.rows;
        memcpy(a->dsha, m->u.job_accept.data_sha256, 32);
        a->has_model = m->u.job_accept.has_model;
        memcpy(a->model, m->u.job_accept.model, 32);
        {
            char dhex[65];
            sodium_bin2hex(dhex, sizeof dhex, a->dsha, 32);
            coord_logj("info", "job_accepted",
                       json_pack("{s:s,s:s,s:I,s:s}", "agent", a->name, "job", c->run.job_hex,
                                 "rows", (json_int_t)a->rows, "data_sha256", dhex));
            /* the agent's data fingerprint, for the lineage of every model it helps make */
            if (fv_state_job_agent(c->st, c->run.job_id, a->name, dhex, a->rows, coord_wall_ms(),
                                   &d) != 0)
                coord_logj("error", "state_agent_failed",
                           json_pack("{s:s,s:s}", "agent", a->name, "why", d.msg));
            coord_audit(c, NULL, "agent.accepted_job",
                        json_pack("{s:s,s:s,s:s,s:I}", "agent", a->name, "job", c->run.job_id,
                                  "data_sha256", dhex, "rows", (json_int_t)a->rows));
        }
        coord__send_stats(c, a);
        coord__round_start(c);
        return;
    case FV_MSG_JOB_REFUSE:
        coord_logj("warn", "job_refused",
                   json_pack("{s:s,s:s,s:s#}", "agent", a->name, "job", c->run.job_hex, "reason",
                             m->u.job_refuse.reason.ptr, (int)m->u.job_refuse.reason.len));
        coord_audit(c, NULL, "agent.refused_job",
                    json_pack("{s:s,s:s,s:s#}", "agent", a->name, "job", c->run.job_id, "reason",
                              m->u.job_refuse.reason.ptr, (int)m->u.job_refuse.reason.len));
        return;
    case FV_MSG_SECAGG:
        if (!job_matches(c, m->u.secagg.job))
            do {
                protocol_error(a, "secagg message for another job");
                return;
            } while (0);
        if (c->run.state != ST_ROUND || c->rnd.sa == NULL || m->u.secagg.round != c->rnd.round ||
            !a->alive) {
            coord_logj(
                "warn", "stale_message",
                json_pack("{s:s,s:I}", "agent", a->name, "round", (json_int_t)m->u.secagg.round));
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
                    protocol_error(a, "secagg message claims sender %u, you are %d", from, a->idx);
                    return;
                } while (0);
            if (type == FV_SECAGG_MSG_MASKED)
                do {
                    protocol_error(a, "masked input must come as a vector upload");
                    return;
                } while (0);
        }
        if (fv_secagg_server_handle(c->rnd.sa, m->u.secagg.data, m->u.secagg.len, &d) != 0) {
            coord_logj("warn", "secagg_rejected",
                       json_pack("{s:s,s:I,s:s}", "agent", a->name, "round",
                                 (json_int_t)c->rnd.round, "why", d.msg));
            return;
        }
        a->answered = true;
        coord__phase_progress(c);
        return;
    case FV_MSG_VEC_ACK:
        return; /* the agent has the model or stats we sent: nothing to do */
    default:
        coord_logj("warn", "unexpected_message",
                   json_pack("{s:s,s:s}", "agent", a->name, "type", fv_msg_type_name(m->type)));
        return;
    }
}

void *coord__on_vec_begin(fv_conn_t *conn, const fv_msg_t *b)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    if (a == NULL || c->run.state != ST_ROUND || !a->alive || !a->granted || a->uploaded ||
        b->u.vec_begin.id != (uint32_t)c->rnd.round)
        return NULL;
    const char *want = c->rnd.sa != NULL ? "masked" : "update";
    fv_vec_dtype_t dt =
        c->rnd.sa != NULL || c->rnd.kind == FV_FED_KIND_STATS ? FV_VEC_U32 : FV_VEC_F32;
    uint64_t n = c->rnd.sa != NULL ? 8 + (uint64_t)c->rnd.dim : c->rnd.dim;
    if (b->u.vec_begin.name.len != strlen(want) ||
        memcmp(b->u.vec_begin.name.ptr, want, strlen(want)) != 0 || b->u.vec_begin.dtype != dt ||
        b->u.vec_begin.n_elems != n) {
        /* Say what was expected, to the log and to the agent (ERROR): a mismatch is a
         * version skew or a broken peer, and both sides' operators need the numbers. */
        char why[FV_WIRE_TEXT_MAX];
        snprintf(
            why, sizeof why,
            "round %" PRIu64 " (%s) expects vector '%s' of %" PRIu64 " %s elements "
            "(%zu parameters, %zu models x %zu bins, %zu classes); got '%.*s' of %" PRIu64 " %s",
            c->rnd.round, fv_fed_kind_name(c->rnd.kind), want, n, dt == FV_VEC_U32 ? "u32" : "f32",
            c->rnd.kind == FV_FED_KIND_STATS ? 0 : c->model.lay.n_params,
            c->rnd.kind == FV_FED_KIND_STATS ? 0 : c->model.lay.n_models,
            c->rnd.kind == FV_FED_KIND_STATS ? 0 : c->model.lay.hist_bins,
            c->rnd.kind == FV_FED_KIND_STATS ? 0 : c->model.lay.n_classes,
            (int)(b->u.vec_begin.name.len < 32 ? b->u.vec_begin.name.len : 32),
            b->u.vec_begin.name.ptr, b->u.vec_begin.n_elems,
            b->u.vec_begin.dtype == FV_VEC_U32 ? "u32" : "f32");
        coord_logj("warn", "upload_refused",
                   json_pack("{s:s,s:s,s:I,s:s}", "agent", a->name, "addr", fv_conn_peer_addr(conn),
                             "round", (json_int_t)c->rnd.round, "why", why));
        fv_conn_close(conn, FV_EPOLICY, why);
        return NULL;
    }
    free(a->upload);
    a->upload = malloc(n * 4);
    return a->upload;
}

/* An upload that fails its checks: logged with the reason, left out of the sum, and the
 * agent dropped from the round (ERROR with the reason, then the connection closes; its
 * on_close makes it a dropout, so the round goes on without waiting for a deadline). It
 * reconnects and may take part in the next round. */
static void refuse_upload(coord_t *c, fv_conn_t *conn, agent_t *a, const char *event,
                          const char *err, const char *why)
{
    coord_logj("warn", event,
               json_pack("{s:s,s:I,s:s,s:s}", "agent", a->name, "round", (json_int_t)c->rnd.round,
                         "err", err, "why", why));
    char msg[FV_WIRE_TEXT_MAX];
    /* the ERROR reason holds FV_WIRE_TEXT_MAX bytes: the sentence is cut there */
    snprintf(msg, sizeof msg, "round %" PRIu64 ": upload refused: %.200s", c->rnd.round, why);
    fv_conn_close(conn, FV_EPROTO, msg);
}

void coord__on_vec(fv_conn_t *conn, uint32_t id, void *vec, uint64_t n)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    (void)id;
    if (a == NULL || vec != a->upload)
        return;
    a->uploaded = true;
    if (c->rnd.in_flight > 0)
        c->rnd.in_flight--;
    fv_diag_t d;
    if (c->rnd.sa != NULL) {
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
            r = fv_secagg_server_handle(c->rnd.sa, bytes, n * 4, &d);
        if (r != 0)
            refuse_upload(c, conn, a, "masked_rejected", fv_err_name(r), d.msg);
        else
            a->answered = true;
    } else if (c->rnd.kind == FV_FED_KIND_STATS &&
               fv_fed_stats_check(&c->model.slay, vec, &d) != 0) {
        /* the coordinator sees a plain vector: every claim in it is checked first */
        refuse_upload(c, conn, a, "update_rejected", "FV_EPEER", d.msg);
    } else if (c->rnd.kind == FV_FED_KIND_STATS) {
        fv_mod_add(n, vec, c->rnd.acc_u);
        c->rnd.n_summands++;
        a->answered = a->summed = true;
    } else if (fv_fed_plain_check(&c->model.lay, vec, &d) != 0) {
        refuse_upload(c, conn, a, "update_rejected", "FV_EPEER", d.msg);
    } else {
        const float *f = vec;
        for (uint64_t i = 0; i < n; i++)
            c->rnd.acc_f[i] += (double)f[i];
        c->rnd.n_summands++;
        a->answered = a->summed = true;
    }
    free(a->upload);
    a->upload = NULL;
    if (a->answered) {
        json_t *f = coord__jf(c);
        json_object_set_new(f, "agent", json_string(a->name));
        json_object_set_new(f, "bytes", json_integer((json_int_t)(n * 4)));
        coord_logj("info", "upload_received", f);
    }
    coord__grant_uploads(c);
    coord__phase_progress(c);
}
