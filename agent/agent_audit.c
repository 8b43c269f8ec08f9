/* agent_audit.c - the agent's signed audit log: the send tap that records every frame
 * before it leaves, the session records, and RECEIPT.
 *
 * Protocol (protocols/fv_wire.h, "ROUNDS"), as this side plays it:
 *   RECEIPT                   the coordinator's signed account of a round, or of a job's
 *                             end (kind "job": the final and student files' hashes, sent
 *                             before JOB_DONE): checked (a job we accepted - in this run,
 *                             or in an earlier one per our audit log - round within it
 *                             when accepted in this run, body a JSON object
 *                             whose "job" and "round" are the message's, signature by
 *                             the key of the coordinator's certificate) and kept in the
 *                             audit log (round.receipt); a bad one is a violation.
 *
 * AUDIT. The agent keeps its own signed, hash-chained log (crypto/fv_audit.h: the same
 * format as the coordinator's, signed with the agent's identity key, the key of its
 * certificate; actor = the agent's name), the bank's evidence of what left it. Path:
 * agent.json "audit_log" or --audit-log (default audit/agent-audit.log beside the config;
 * head "<log>.head"). `fedvault audit verify --log L --head L.head --cert cert.pem`
 * checks it. Records (details members in this order):
 *   agent.started   {version, federation, coordinator (host:port), pk (our key, hex),
 *                   serial (our certificate's)}
 *   session.opened  {session, peer, federation, coordinator_serial, coordinator_pk, addr}:
 *                   at our HELLO, the first frame after the TLS handshake authenticated
 *                   the coordinator. session = this record's own seq, so it is unique in
 *                   the log across restarts.
 *   msg.sent        {session, peer, type (fv_msg_type_name), bytes (frame body length),
 *                   sha256 (hex of the exact msgpack body), then by type: hello {sw,
 *                   max_frame_bytes}; error {code, reason}; bye {reason}; vec_ack {job,
 *                   vec_name, vec_id, vec_sha256}; job_accept {job, data_sha256 (the
 *                   SHA-256 of the data file declared to the coordinator), rows, model
 *                   (if held)}; job_refuse {job, reason, category}; secagg {job, round, secagg (the
 *                   SecAgg message: advertise, shares, consist, unmask)}}
 *   vec.sent        {session, peer, name, id, dtype, elems, bytes (sum of the frame
 *                   bodies of VEC_BEGIN, every VEC_CHUNK and VEC_END), frames, sha256 (the
 *                   vector digest VEC_END carries), job, round}: one record per vector,
 *                   not per chunk (a 1 GiB vector is 1000 chunks; the digest binds them).
 *   session.closed  {session, peer, pings, pongs, ping_bytes, reason, err, [vec_unfinished
 *                   {name, id, frames, bytes}: a vector cut off before its VEC_END]}.
 *                   PING and PONG carry nothing but a counter: they are counted here
 *                   rather than written one record (and four fsyncs) each.
 *   round.receipt   {job, round, receipt (the coordinator's signed body, verbatim), sig
 *                   (base64), coordinator_pk (hex), coordinator, session}: RECEIPT after a
 *                   round, kept only if it verifies (see on_receipt); a bad one is a
 *                   violation.
 *   policy.refused  {job, [round], scope ("job", "round" or "schema"), [rule], why}: the agent's
 *                   own policy refused a job (require_secure_aggregation: the JOB_REFUSE
 *                   that follows is recorded as msg.sent) or sat out a round (min_cohort,
 *                   min_threshold, SecAgg parameters not the job's: nothing is sent).
 *   schema_disclosed {job, columns (the open columns' names), values_disclosed (how many
 *                   category values the vocabulary holds), suppressed ({column: values
 *                   held by fewer than min_count rows, withheld}), min_count, vocab_sha256
 *                   (of the exact vocabulary text sent)}: the agent answered a
 *                   SCHEMA_QUERY with its vocabulary (agent_schema.c: its policy's
 *                   schema_discovery opt-in); written before the SCHEMA_VOCAB frame (its
 *                   msg.sent record: job, status, category, vocab_bytes). The values
 *                   themselves are never written to the log. A refused query is a
 *                   policy.refused {scope "schema", rule}.
 *   privacy_spent   {job, fingerprint (the data file's SHA-256, hex), mode, epsilon,
 *                   delta, sigma, q, steps, total_epsilon (the fingerprint's spends with
 *                   this job, at policy.privacy.delta)}: a job with a "privacy" section
 *                   is charged to the privacy ledger (agent_privacy.c), written before the
 *                   ledger's write and the JOB_ACCEPT frame; once per (job, data file),
 *                   again only when a crash came between this record and the ledger.
 *   privacy_spend_failed {job, fingerprint, why}: the ledger write after privacy_spent
 *                   failed; the job is refused and nothing was charged.
 *                   A job refused by the privacy policy is a policy.refused {scope "job",
 *                   rule privacy_required | privacy_outside_budget | privacy_budget}.
 *   cohort.refused  {rule, reason, [member, member_name], job, [round]}: the agent refused
 *                   a job because of its cohort or CRL (agent_cohort.c lists the rules);
 *                   written just before the JOB_REFUSE frame (its msg.sent record).
 *   agent.stopped   {exit}
 * When: fv_conn calls our send tap (on_send) for every frame after encoding, before any
 * byte reaches TLS. The record is appended (written and fsynced, head replaced) there,
 * on the loop thread, so a frame is on disk in the log before it is queued. A vector's
 * record is written when its VEC_END is about to go: its chunks are queued before, but
 * the receiver uses no vector without the VEC_END whose digest the record holds. If an
 * append fails (or cannot be built), the tap withholds the frame, fv_conn closes the
 * connection (its ERROR is withheld too), and on_close stops the agent with exit 1 and an
 * audit_failed line naming the log: nothing more leaves, and there is no reconnect. A
 * record means "handed to the transport", not "received": a transport failure right
 * after it shows in session.closed. Cost: an append is a signature, a write and an fsync,
 * then a head rewrite with two more fsyncs: measured (release build) 5-6 ms mean, max
 * 19 ms, on a VM's ext4 with three agents and the coordinator syncing at once; 0.3 ms on
 * tmpfs (signing and JSON alone); ASan builds about 3x that. A round sends about six
 * frames worth a record, far below the round's own time; the loop is blocked that long
 * per record (heartbeats are seconds). The "stopped" log line reports the count and
 * mean/max append time of the run.
 *
 * Threads: the loop thread only.
 * Ownership: the log handle (a->audit) is opened and closed by fv__agent_run; the
 * session and vec.sent counters live in the agent (agent-int.h) and are reset at every
 * session.opened.
 */
#include "agent-int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv_audit.h"
#include "fv_conn.h"
#include "fv_wire.h"

/* ---- the audit log ("AUDIT" above) ------------------------------------------------- */

static void audit_failed(agent_t *a, const char *event, int err, const char *why)
{
    if (!a->audit_failed)
        fv__agent_log("error", "audit_failed", NULL, NULL, -1,
                      json_pack("{s:s,s:s,s:s,s:s,s:s}", "path", a->cfg->audit_log, "record", event,
                                "err", fv_err_name(err), "why", why, "action",
                                "nothing more is sent; the agent stops (exit 1)"));
    a->audit_failed = true;
}

/* Appends one record (details consumed; NULL from a failed json_pack counts as a
 * failure). Any failure is final: audit_failed is set and nothing more is sent. */
int fv__agent_audit_append(agent_t *a, const char *event, json_t *details)
{
    if (a->audit_failed) {
        json_decref(details);
        return FV_EIO;
    }
    if (details == NULL) {
        audit_failed(a, event, FV_ENOMEM, "out of memory building the record");
        return FV_ENOMEM;
    }
    fv_diag_t d = {""};
    uint64_t t0 = uv_hrtime();
    int r = fv_audit_append_obj(a->audit, NULL, event, details, &d);
    uint64_t dt = uv_hrtime() - t0;
    json_decref(details);
    if (r != 0) {
        audit_failed(a, event, r, d.msg[0] != '\0' ? d.msg : fv_strerror(r));
        return r;
    }
    a->audit_n++;
    a->audit_ns_sum += dt;
    if (dt > a->audit_ns_max)
        a->audit_ns_max = dt;
    return 0;
}

/* Sets key to a JSON string of s (valid UTF-8 by construction: cleaned by
 * fv__agent_text_clean, or hex). */
static void jset_str(json_t *o, const char *key, const char *s)
{
    json_object_set_new(o, key, json_string(s));
}

static void jset_text(json_t *o, const char *key, const char *s, size_t len)
{
    char clean[FV_WIRE_TEXT_MAX * 4 + 1];
    fv__agent_text_clean(s, len, clean, sizeof clean);
    jset_str(o, key, clean);
}

static void jset_hex32(json_t *o, const char *key, const uint8_t b[32])
{
    char h[65];
    fv__agent_hex32(b, h);
    jset_str(o, key, h);
}

static void jset_u64(json_t *o, const char *key, uint64_t v)
{
    /* jansson's integers are signed 64-bit: every count and round here is far below. */
    json_object_set_new(o, key, json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v));
}

static json_t *session_details(const agent_t *a)
{
    json_t *o = json_object();
    if (o != NULL) {
        jset_u64(o, "session", a->session);
        jset_str(o, "peer", a->sess_peer);
    }
    return o;
}

/* The first frame on a connection (our HELLO, right after the TLS handshake
 * authenticated the coordinator) opens its session record. */
static int session_open(agent_t *a, fv_conn_t *c)
{
    const fv_identity_t *p = fv_conn_peer(c);
    a->sess_conn = c;
    a->session = fv_audit_last_seq(a->audit) + 1; /* the seq of session.opened itself */
    snprintf(a->sess_peer, sizeof a->sess_peer, "%s", p != NULL ? p->name : "?");
    a->pings = a->pongs = a->ping_bytes = 0;
    a->vtx_on = false;
    json_t *o = session_details(a);
    if (o != NULL && p != NULL) {
        jset_str(o, "federation", p->federation);
        jset_str(o, "coordinator_serial", p->serial_hex);
        jset_hex32(o, "coordinator_pk", p->sign_pk);
    }
    if (o != NULL)
        jset_str(o, "addr", fv_conn_peer_addr(c));
    return fv__agent_audit_append(a, "session.opened", o);
}

void fv__agent_session_close(agent_t *a, fv_conn_t *c, int err, const char *why)
{
    if (a->sess_conn != c)
        return; /* never got as far as our HELLO: nothing was sent */
    a->sess_conn = NULL;
    if (a->audit_failed)
        return;
    json_t *o = session_details(a);
    if (o != NULL) {
        jset_u64(o, "pings", a->pings);
        jset_u64(o, "pongs", a->pongs);
        jset_u64(o, "ping_bytes", a->ping_bytes);
        jset_text(o, "reason", why, strlen(why));
        jset_str(o, "err", err == 0 ? "" : fv_err_name(err));
        if (a->vtx_on) { /* frames of a vector that never got its VEC_END out */
            json_t *v =
                json_pack("{s:s,s:I,s:I,s:I}", "name", a->vtx_name, "id", (json_int_t)a->vtx_id,
                          "frames", (json_int_t)a->vtx_frames, "bytes", (json_int_t)a->vtx_bytes);
            json_object_set_new(o, "vec_unfinished", v != NULL ? v : json_null());
        }
    }
    a->vtx_on = false;
    fv__agent_audit_append(a, "session.closed", o);
}

static const char *secagg_msg_name(const uint8_t *p, size_t len)
{
    static const char *const names[] = {"?",      "advertise", "keylist", "shares",  "shares_fwd",
                                        "masked", "u3list",    "consist", "siglist", "unmask"};
    if (len < 2 || p[1] >= sizeof names / sizeof names[0])
        return "?";
    return names[p[1]];
}

/* One msg.sent record: what the frame is, its exact size and SHA-256, and the fields a
 * reviewer needs to tell what it said (never update values: those travel as vectors). */
static int audit_msg_sent(agent_t *a, const fv_msg_t *m, const uint8_t *body, size_t len)
{
    uint8_t h[32];
    crypto_hash_sha256(h, body, len);
    json_t *o = session_details(a);
    if (o == NULL)
        return fv__agent_audit_append(a, "msg.sent", NULL);
    jset_str(o, "type", fv_msg_type_name(m->type));
    jset_u64(o, "bytes", len);
    jset_hex32(o, "sha256", h);
    switch (m->type) {
    case FV_MSG_HELLO:
        jset_text(o, "sw", m->u.hello.sw.ptr, m->u.hello.sw.len);
        jset_u64(o, "max_frame_bytes", m->u.hello.max_frame_bytes);
        break;
    case FV_MSG_ERROR:
        jset_str(o, "code", fv_err_name(m->u.error.code));
        jset_text(o, "reason", m->u.error.reason.ptr, m->u.error.reason.len);
        break;
    case FV_MSG_BYE:
        jset_text(o, "reason", m->u.bye.reason.ptr, m->u.bye.reason.len);
        break;
    case FV_MSG_ECHO:
    case FV_MSG_ECHO_REPLY:
        jset_u64(o, "seq", m->u.echo.seq);
        break;
    case FV_MSG_VEC_ACK: /* sent just before on_vec: rx_* still say what arrived */
        if (a->rx_job != NULL)
            jset_str(o, "job", a->rx_job->hex);
        jset_str(o, "vec_name",
                 a->rx_kind == RX_MODEL     ? "model"
                 : a->rx_kind == RX_STATS   ? "stats"
                 : a->rx_kind == RX_TEACHER ? "teacher"
                 : a->rx_kind == RX_STUDENT ? "student"
                                            : "?");
        jset_u64(o, "vec_id", m->u.vec_end.id);
        jset_hex32(o, "vec_sha256", m->u.vec_end.sha256);
        break;
    case FV_MSG_JOB_ACCEPT:
        jset_hex32(o, "job", m->u.job_accept.job);
        jset_hex32(o, "data_sha256", m->u.job_accept.data_sha256);
        jset_u64(o, "rows", m->u.job_accept.rows);
        if (m->u.job_accept.has_model)
            jset_hex32(o, "model", m->u.job_accept.model);
        break;
    case FV_MSG_JOB_REFUSE:
        jset_hex32(o, "job", m->u.job_refuse.job);
        jset_text(o, "reason", m->u.job_refuse.reason.ptr, m->u.job_refuse.reason.len);
        json_object_set_new(o, "category",
                            json_string(fv_refuse_category_name(m->u.job_refuse.category)));
        break;
    case FV_MSG_SECAGG:
        jset_hex32(o, "job", m->u.secagg.job);
        jset_u64(o, "round", m->u.secagg.round);
        jset_str(o, "secagg", secagg_msg_name(m->u.secagg.data, m->u.secagg.len));
        break;
    case FV_MSG_SCHEMA_VOCAB: /* the body's hash is "sha256" above's frame; the values
                                 themselves are never written here */
        jset_hex32(o, "job", m->u.schema_vocab.job);
        jset_str(o, "status",
                 m->u.schema_vocab.status == 0 ? "ok" : fv_err_name(m->u.schema_vocab.status));
        jset_text(o, "category", m->u.schema_vocab.category.ptr, m->u.schema_vocab.category.len);
        jset_u64(o, "vocab_bytes", m->u.schema_vocab.body.len);
        break;
    default:
        break;
    }
    return fv__agent_audit_append(a, "msg.sent", o);
}

/* The send tap (fv_conn_cbs_t.on_send): every frame is recorded before it is queued;
 * a frame that cannot be recorded is withheld and the connection closes (on_close then
 * stops the agent). PING/PONG are counted into session.closed, a vector's frames into
 * one vec.sent record written when its VEC_END is about to go. */
int fv__agent_on_send(fv_conn_t *c, const fv_msg_t *m, const uint8_t *body, size_t len)
{
    agent_t *a = fv_conn_get_data(c);
    if (a->audit_failed)
        return FV_EIO;
    int r;
    if (a->sess_conn != c && (r = session_open(a, c)) != 0)
        return r;
    if (m->type == FV_MSG_VEC_CHUNK && m->u.vec_chunk.seq == 0 && a->up_unacked &&
        strcmp(a->tx_name, "masked") == 0)
        fv__agent_kill_point("mid-masked", a->tx_round);
    switch (m->type) {
    case FV_MSG_PING:
        a->pings++;
        a->ping_bytes += len;
        return 0;
    case FV_MSG_PONG:
        a->pongs++;
        a->ping_bytes += len;
        return 0;
    case FV_MSG_VEC_BEGIN:
        a->vtx_on = true;
        a->vtx_id = m->u.vec_begin.id;
        a->vtx_dtype = (uint32_t)m->u.vec_begin.dtype;
        a->vtx_elems = m->u.vec_begin.n_elems;
        fv__agent_text_clean(m->u.vec_begin.name.ptr, m->u.vec_begin.name.len, a->vtx_name,
                             sizeof a->vtx_name);
        snprintf(a->vtx_job, sizeof a->vtx_job, "%s", a->tx_job != NULL ? a->tx_job->hex : "");
        a->vtx_round = a->tx_round;
        a->vtx_frames = 1;
        a->vtx_bytes = len;
        return 0;
    case FV_MSG_VEC_CHUNK:
        a->vtx_frames++;
        a->vtx_bytes += len;
        return 0;
    case FV_MSG_VEC_END: {
        a->vtx_frames++;
        a->vtx_bytes += len;
        a->vtx_on = false;
        json_t *o = session_details(a);
        if (o != NULL) {
            jset_str(o, "name", a->vtx_name);
            jset_u64(o, "id", m->u.vec_end.id);
            jset_str(o, "dtype", a->vtx_dtype == FV_VEC_F32 ? "f32" : "u32");
            jset_u64(o, "elems", a->vtx_elems);
            jset_u64(o, "bytes", a->vtx_bytes);
            jset_u64(o, "frames", a->vtx_frames);
            jset_hex32(o, "sha256", m->u.vec_end.sha256);
            if (a->vtx_job[0] != '\0') {
                jset_str(o, "job", a->vtx_job);
                jset_u64(o, "round", a->vtx_round);
            }
        }
        return fv__agent_audit_append(a, "vec.sent", o);
    }
    default:
        return audit_msg_sent(a, m, body, len);
    }
}

/* ---- RECEIPT ------------------------------------------------------------------------ */

/* RECEIPT: the coordinator's signed account of a round. Kept only if it is about a job
 * this agent accepted, says what the message says (job, round), is a JSON object and
 * verifies under the key of the certificate this TLS session authenticated. */
void fv__agent_on_receipt(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    const __typeof__(m->u.receipt) *rc = &m->u.receipt;
    const ajob_t *j = a->job != NULL && memcmp(a->job->digest, rc->job, 32) == 0 ? a->job : NULL;
    int64_t rn = rc->round > INT64_MAX ? -1 : (int64_t)rc->round;
    size_t slot = SIZE_MAX;
    for (size_t i = 0; i < a->n_accepted && i < FV_AGENT_ACCEPTED_JOBS_KEPT; i++)
        if (memcmp(a->accepted[i].digest, rc->job, 32) == 0)
            slot = i;
    /* a job receipt may come after a restart, for a job accepted by an earlier run (its
     * JOB_ACCEPT is in the audit log: agent_release.c) */
    if (slot == SIZE_MAX && !fv__agent_release_job_accepted(a, rc->job)) {
        fv__agent_violation(a, c, j, rn, FV_EROUND,
                            "RECEIPT for a job this agent has not accepted");
        return;
    }
    if (slot != SIZE_MAX && rc->round > a->accepted[slot].rounds) {
        fv__agent_violation(a, c, j, rn, FV_EROUND,
                            "RECEIPT for round %" PRIu64 " of a job whose last round is %" PRIu64,
                            rc->round, a->accepted[slot].rounds);
        return;
    }
    if (rc->body.len == 0 || rc->body.len > FV_WIRE_RECEIPT_MAX) {
        fv__agent_violation(a, c, j, rn, FV_ETOOBIG, "RECEIPT body of %zu bytes (1..%u allowed)",
                            rc->body.len, FV_WIRE_RECEIPT_MAX);
        return;
    }
    const fv_identity_t *peer = fv_conn_peer(c);
    if (peer == NULL || crypto_sign_verify_detached(rc->sig, (const unsigned char *)rc->body.ptr,
                                                    rc->body.len, peer->sign_pk) != 0) {
        fv__agent_violation(
            a, c, j, rn, FV_EAUTH,
            "RECEIPT signature does not verify under the coordinator's certificate key");
        return;
    }
    json_error_t je;
    json_t *body = json_loadb(rc->body.ptr, rc->body.len, JSON_REJECT_DUPLICATES, &je);
    char hex[65];
    fv__agent_hex32(rc->job, hex);
    const char *bad = NULL;
    json_t *bj = json_object_get(body, "job"), *br = json_object_get(body, "round");
    if (body == NULL || !json_is_object(body))
        bad = "the body is not a JSON object";
    else if (!json_is_string(bj) || strcmp(json_string_value(bj), hex) != 0)
        bad = "the body's \"job\" is not the message's job";
    else if (!json_is_integer(br) || json_integer_value(br) < 0 ||
             (uint64_t)json_integer_value(br) != rc->round)
        bad = "the body's \"round\" is not the message's round";
    json_decref(body);
    if (bad != NULL) {
        fv__agent_violation(a, c, j, rn, FV_EPROTO, "RECEIPT: %s", bad);
        return;
    }
    char sig[sodium_base64_ENCODED_LEN(FV_WIRE_SIG_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(sig, sizeof sig, rc->sig, FV_WIRE_SIG_BYTES, sodium_base64_VARIANT_ORIGINAL);
    json_t *o = json_object(), *text = json_stringn(rc->body.ptr, rc->body.len);
    if (o == NULL || text == NULL) { /* out of memory: fv__agent_audit_append(NULL) fails */
        json_decref(o);
        json_decref(text);
        o = NULL;
    } else {
        jset_str(o, "job", hex);
        jset_u64(o, "round", rc->round);
        json_object_set_new(o, "receipt", text);
        jset_str(o, "sig", sig);
        jset_hex32(o, "coordinator_pk", peer->sign_pk);
        jset_str(o, "coordinator", peer->name);
        jset_u64(o, "session", a->session);
    }
    int r = fv__agent_audit_append(a, "round.receipt", o);
    if (r != 0) {
        /* Not kept means not agreed: close; on_close stops the agent. */
        fv_conn_close(c, r, "the agent's audit log cannot be written");
        return;
    }
    fv__agent_release_receipt(a, rc->body.ptr, rc->body.len); /* its shas: releases */
    fv__agent_log_job("info", "receipt_kept", j, rn,
                      json_pack("{s:I}", "bytes", (json_int_t)rc->body.len));
}
