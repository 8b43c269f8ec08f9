/* coord_conn.c - the agent port: the registry of agents and their connections' callbacks.
 *
 * Agents are known by their certificate name (fv_conn checked the certificate and the
 * agent role before on_open): an agent_t outlives its connections, so a reconnecting
 * agent keeps its traffic counters and the last job it took part in, and a second
 * connection of the same name replaces the first. Agents are freed only at exit.
 *
 * Everything an agent sends is hostile until checked: here, that a message names the
 * running job and comes from a cohort member on the session that got ROUND_START; in the
 * round machine (protocols/round_coord.c, fed by member index), that a SecAgg message
 * names its sender's own index, an upload the exact name, type and length the round
 * expects (before any buffer is allocated), a plain vector passes its kind's check. A
 * violation closes the connection (FV_EPROTO, FV_EPOLICY) and the daemon goes on; the
 * close makes the member a dropout (fv_cround_lost). Answers that arrive between jobs or
 * rounds are stale, not errors. A straggler's upload still arriving when its round ended
 * lands in a->orphan, freed at that connection's on_vec or close. An agent's certificate
 * (DER) is kept from on_open for the ROUND_START "certs" of SecAgg jobs; a JOB_REFUSE
 * from an agent that had accepted the running job takes it out of the job (a member that
 * refused its cohort): not accepted any more, lost in the round in flight. Each agent's
 * status in the job (offered, accepted, refused, gone) is coord_cohort.c's.
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

/* ---- connection callbacks ------------------------------------------------------ */

static agent_t *agent_by_name(coord_t *c, const char *name)
{
    for (agent_t *a = c->agents; a != NULL; a = a->next)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

static void agent_lost(coord_t *c, agent_t *a, fv_conn_t *conn);

/* The member index of the agent on this connection in the round being run, or -1 (not in
 * the cohort, or on another session than the one that got ROUND_START). */
static int member_of(coord_t *c, const agent_t *a, const fv_conn_t *conn)
{
    if (a == NULL || c->run.state != ST_ROUND || c->rnd.cr == NULL || a->idx < 0 ||
        (uint32_t)a->idx >= c->rnd.n || conn != a->round_conn)
        return -1;
    return a->idx;
}

/* An upload buffer of a finished round that this connection was still writing into. */
static void orphan_free(agent_t *a, const fv_conn_t *conn)
{
    if (a->orphan != NULL && a->orphan_conn == conn) {
        free(a->orphan);
        a->orphan = NULL;
        a->orphan_conn = NULL;
    }
}

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
        orphan_free(a, old);   /* closed: it reads, and so writes, nothing more */
        agent_lost(c, a, old); /* the old session's part in a round is over */
    }
    a->conn = conn;
    memcpy(a->sign_pk, peer->sign_pk, 32);
    {
        /* its certificate for ROUND_START "certs": the cohort's members verify it */
        const uint8_t *der = NULL;
        size_t len = 0;
        uint8_t *copy = NULL;
        if (fv_conn_peer_der(conn, &der, &len) == 0 && len > 0 && len <= FV_WIRE_CERT_MAX &&
            (copy = malloc(len)) != NULL)
            memcpy(copy, der, len);
        free(a->cert_der);
        a->cert_der = copy;
        a->cert_der_len = copy != NULL ? len : 0;
    }
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
    coord__release_on_open(c, a); /* the current releases, then RELEASE_SYNC */
}

/* The session that started the agent's round is gone: the machine takes it out. */
static void agent_lost(coord_t *c, agent_t *a, fv_conn_t *conn)
{
    int member = member_of(c, a, conn);
    if (member < 0)
        return;
    if (coord__round_busy(c)) {
        coord__round_lost(c, (uint32_t)member); /* told to the machine when the work returns */
        return;
    }
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_cround_lost(c->rnd.cr, (uint32_t)member, coord__now_ms(c), &out);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
}

void coord__on_close(fv_conn_t *conn, int err, const char *why)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    json_t *f = json_pack("{s:s,s:s,s:s}", "addr", fv_conn_peer_addr(conn), "err", fv_err_name(err),
                          "why", why);
    if (a != NULL)
        json_object_set_new(f, "agent", json_string(a->name));
    char host[256];
    coord__peer_host(fv_conn_peer_addr(conn), host, sizeof host);
    coord_logj_peer(c, err == 0 ? "info" : "warn", a != NULL ? a->name : host,
                    a != NULL ? "agent_disconnected" : "conn_closed", f);
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
    if (a != NULL)
        orphan_free(a, conn);
    if (a == NULL || a->conn != conn)
        return;
    /* an agent that heard of its job's end and then said BYE (an --once agent leaving)
     * was told, whatever the queue counters say now */
    if (err == 0 && a->done_pending && a->done_sent && a->oq_head == NULL)
        a->done_told = true;
    a->conn = NULL;
    coord__oq_clear(a);
    if (c != NULL)
        coord__cohort_closed(c, a); /* a member of the running job is gone */
    a->accepted = false;
    if (c != NULL) {
        agent_lost(c, a, conn);
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
    if (m->type == FV_MSG_FETCH) { /* releases are served between jobs too */
        coord__release_on_fetch(c, a, m);
        return;
    }
    if (coord__schema_on_msg(c, a, m))
        return; /* schema discovery (coord_schema.c) */
    if (c->run.state != ST_WAITING && c->run.state != ST_ROUND) {
        /* between jobs: an answer to the job that just ended is stale, not an error */
        coord_logj_peer(
            c, "info", a->name, "stale_message",
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
        coord__cohort_accepted(c, a);
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
    case FV_MSG_JOB_REFUSE: {
        /* an agent that had accepted the running job leaves it (it refused its cohort:
         * agent/agent_cohort.c): no longer accepted, and lost in the round in flight. The
         * log line, audit record and the agent's status: coord_cohort.c */
        bool current = job_matches(c, m->u.job_refuse.job);
        bool left = a->accepted && current;
        coord__cohort_refused(c, a, m, current, left);
        if (left) {
            a->accepted = false;
            agent_lost(c, a, conn);
            coord_metrics_refresh(c);
        }
        return;
    }
    case FV_MSG_SECAGG:
        if (!job_matches(c, m->u.secagg.job))
            do {
                protocol_error(a, "secagg message for another job");
                return;
            } while (0);
        {
            int member = member_of(c, a, conn);
            if (member < 0 || !c->job->secagg.on || m->u.secagg.round != c->rnd.round ||
                coord__round_busy(c) || !fv_cround_alive(c->rnd.cr, (uint32_t)member)) {
                coord_logj_peer(c, "warn", a->name, "stale_message",
                                json_pack("{s:s,s:I}", "agent", a->name, "round",
                                          (json_int_t)m->u.secagg.round));
                return;
            }
            /* the machine checks the sender, the type and SecAgg's verdict */
            fv_round_out_t out;
            fv_round_out_init(&out);
            fv_cround_on_msg(c->rnd.cr, (uint32_t)member, m, coord__now_ms(c), &out);
            coord__round_exec(c, &out);
            fv_round_out_close(&out);
        }
        return;
    case FV_MSG_VEC_ACK:
        return; /* the agent has the model or stats we sent: nothing to do */
    default:
        coord_logj_peer(
            c, "warn", a->name, "unexpected_message",
            json_pack("{s:s,s:s}", "agent", a->name, "type", fv_msg_type_name(m->type)));
        return;
    }
}

void *coord__on_vec_begin(fv_conn_t *conn, const fv_msg_t *b)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    int member = member_of(c, a, conn);
    if (member < 0 || coord__round_busy(c))
        return NULL; /* (busy: the round's inputs are complete; a late upload is stale) */
    /* name, type and length checked before the machine allocates the buffer; a mismatch
     * is dropped with what was expected (the log line "upload_refused" and the ERROR) */
    fv_round_out_t out;
    fv_round_out_init(&out);
    void *buf = fv_cround_vec_begin(c->rnd.cr, (uint32_t)member, b, &out);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
    return buf;
}

void coord__on_vec(fv_conn_t *conn, uint32_t id, void *vec, uint64_t n)
{
    coord_t *c = fv_server_get_data(fv_conn_server(conn));
    agent_t *a = fv_conn_get_data(conn);
    (void)id;
    if (a != NULL && vec != NULL && vec == a->orphan) {
        orphan_free(a, conn); /* a straggler's upload, after its round ended */
        return;
    }
    int member = member_of(c, a, conn);
    if (member < 0 || coord__round_busy(c))
        return; /* (busy: a straggler's buffer stays the machine's, freed with it) */
    /* SecAgg: the masked input to the server; plain: the kind's check, then the sum */
    fv_round_out_t out;
    fv_round_out_init(&out);
    fv_cround_vec_end(c->rnd.cr, (uint32_t)member, vec, n, coord__now_ms(c), &out);
    coord__round_exec(c, &out);
    fv_round_out_close(&out);
}

/* Closes the agent's live session at once (a CRL reload revoked its certificate): the
 * agent is disconnected from here on, the session's part in a round is over (a dropout:
 * fv_cround_lost), and the connection, detached from the agent like a replaced one, only
 * says why and closes. */
void coord__agent_close(coord_t *c, agent_t *a, int err, const char *why)
{
    fv_conn_t *old = a->conn;
    if (old == NULL)
        return;
    uint64_t in = 0, out = 0;
    fv_conn_traffic(old, &in, &out);
    a->bytes_in += in;
    a->bytes_out += out;
    fv_conn_set_data(old, NULL);
    a->conn = NULL;
    coord__cohort_closed(c, a);
    a->accepted = false;
    coord__oq_clear(a);
    fv_conn_close(old, err, why);
    orphan_free(a, old);
    agent_lost(c, a, old);
    coord_metrics_refresh(c);
}
