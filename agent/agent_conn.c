/* agent_conn.c - the agent's side of its one connection to the coordinator: on_open,
 * on_msg (one case per message type, handed to agent_job.c, agent_round.c,
 * agent_schema.c and agent_audit.c), on_close; the vectors the coordinator sends; violations.
 *
 * Protocol (protocols/fv_wire.h, "ROUNDS"), the vectors, as this side plays them:
 *   VEC "model" (f32, P)      the global parameters; kept with their hash (SHA-256 of the
 *                             little-endian bytes). Id: a training round's, or (a job
 *                             with "explain" and no distill section) the explain round's:
 *                             the final training model the explain round explains.
 *   VEC "stats" (u32)         after ROUND_END of round 0: the summed stats vector; builds
 *                             the global preprocessing (kept for the explain round) and
 *                             the feature matrices (once).
 *   VEC "teacher" / "student" (f32)  distill phase (a job with a "distill" section): the
 *                             teacher (the training phase's result, id 0, the job's model
 *                             size) and the student's global parameters (id = the distill
 *                             round, the student's size); each kept with its hash. A job
 *                             without a distill section gets neither (a violation).
 *
 * Trust: every message from the coordinator is hostile. Wrong job or round, a vector of
 * the wrong name, type or size, a model whose hash is not the announced one, a cohort
 * key list that does not hold our key at our index: logged ("violation") and the
 * connection is closed with an error; the client reconnects (jittered backoff) and the
 * coordinator may re-offer the job.
 *
 * Threads: the loop thread only. Building the feature matrices from the stats vector
 * runs on the loop (once per job, a pass over the rows: milliseconds for the shipped
 * data); a different stats vector may replace them only while no work item reads them.
 *
 * Ownership: vectors being received belong to the agent (rx_buf) until on_vec/on_close;
 * a vector being sent is handed to the agent (tx_buf) and freed at on_vec_sent/on_close,
 * so a round may end while its upload drains. A round cannot survive the connection
 * (on_close frees it); the job stays for the re-offer.
 */
#include "agent-int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "fv_conn.h"
#include "fv_dataset.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_preproc.h"
#include "fv_wire.h"

/* ---- violations and sending --------------------------------------------------------- */

/* A hostile or broken message from the coordinator: log, close (the client reconnects). */
void fv__agent_violation(agent_t *a, fv_conn_t *c, const ajob_t *j, int64_t round, int err,
                         const char *fmt, ...)
{
    char why[512], clean[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fv__agent_text_clean(why, strlen(why), clean, sizeof clean);
    fv__agent_log_job("error", "violation", j, round,
                      json_pack("{s:s,s:s,s:s}", "why", clean, "err", fv_err_name(err), "peer",
                                c != NULL ? fv_conn_peer_addr(c) : ""));
    (void)a;
    if (c != NULL) {
        char wire[FV_WIRE_TEXT_MAX + 1];
        fv__agent_text_clean(clean, strlen(clean), wire, sizeof wire);
        /* fv_conn reserves FV_EPEER for "the peer sent ERROR" (it sends none back). */
        fv_conn_close(c, err == FV_EPEER ? FV_EPROTO : err, wire);
    }
}

int fv__agent_send_msg(agent_t *a, const fv_msg_t *m)
{
    if (a->conn == NULL)
        return UV_ENOTCONN;
    int r = fv_conn_send(a->conn, m);
    if (r != 0)
        fv__agent_log_job(
            "warn", "send_failed", a->job, -1,
            json_pack("{s:s,s:s}", "msg", fv_msg_type_name(m->type), "err", fv_err_name(r)));
    return r;
}

/* ---- vectors from the coordinator --------------------------------------------------- */

static bool name_is(const fv_wire_str_t *s, const char *want)
{
    return s->len == strlen(want) && memcmp(s->ptr, want, s->len) == 0;
}

/* SHA-256 of the little-endian bytes of n floats (the model hash of the wire). */
static void params_hash(const float *p, size_t n, uint8_t out[32])
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    uint8_t buf[4096];
    size_t fill = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &p[i], 4);
        buf[fill++] = (uint8_t)w;
        buf[fill++] = (uint8_t)(w >> 8);
        buf[fill++] = (uint8_t)(w >> 16);
        buf[fill++] = (uint8_t)(w >> 24);
        if (fill == sizeof buf) {
            crypto_hash_sha256_update(&st, buf, fill);
            fill = 0;
        }
    }
    crypto_hash_sha256_update(&st, buf, fill);
    crypto_hash_sha256_final(&st, out);
}

void *fv__agent_on_vec_begin(fv_conn_t *c, const fv_msg_t *b)
{
    agent_t *a = fv_conn_get_data(c);
    ajob_t *j = a->job;
    const __typeof__(b->u.vec_begin) *vb = &b->u.vec_begin;
    char name[FV_WIRE_TEXT_MAX + 1];
    fv__agent_text_clean(vb->name.ptr, vb->name.len, name, sizeof name);
    if (j == NULL || j->loading) {
        fv__agent_violation(a, c, NULL, -1, FV_EPROTO, "vector '%s' before any job was accepted",
                            name);
        return NULL;
    }
    free(a->rx_buf);
    a->rx_buf = NULL;
    if (name_is(&vb->name, "model")) {
        /* ids: a training round's, or (explain) the explain round's: the final model */
        bool id_ok = vb->id <= j->job->rounds || (j->job->explain && !j->job->distill.on &&
                                                  vb->id == fv_job_last_round(j->job));
        if (vb->dtype != FV_VEC_F32 || vb->n_elems != j->n_params || !id_ok) {
            fv__agent_violation(a, c, j, (int64_t)vb->id, FV_EPROTO,
                                "vector 'model': %" PRIu64 " elements of type %d with id %" PRIu32
                                ", expected %zu float32 with a round id",
                                vb->n_elems, (int)vb->dtype, vb->id, j->n_params);
            return NULL;
        }
        a->rx_kind = RX_MODEL;
    } else if (name_is(&vb->name, "stats")) {
        if (vb->dtype != FV_VEC_U32 || vb->n_elems != j->sl.dim || vb->id != 0) {
            fv__agent_violation(a, c, j, (int64_t)vb->id, FV_EPROTO,
                                "vector 'stats': %" PRIu64 " elements of type %d with id %" PRIu32
                                ", expected %zu uint32 with id 0",
                                vb->n_elems, (int)vb->dtype, vb->id, j->sl.dim);
            return NULL;
        }
        a->rx_kind = RX_STATS;
    } else if (name_is(&vb->name, "teacher") || name_is(&vb->name, "student")) {
        bool t = name_is(&vb->name, "teacher");
        size_t want = t ? j->n_params : j->s_n_params;
        bool id_ok =
            t ? vb->id == 0
              : vb->id > j->job->rounds && vb->id <= j->job->rounds + j->job->distill.rounds;
        if (!j->job->distill.on) {
            fv__agent_violation(a, c, j, (int64_t)vb->id, FV_EPROTO,
                                "vector '%s' for a job without a distill section", name);
            return NULL;
        }
        if (vb->dtype != FV_VEC_F32 || vb->n_elems != want || !id_ok) {
            fv__agent_violation(a, c, j, (int64_t)vb->id, FV_EPROTO,
                                "vector '%s': %" PRIu64 " elements of type %d with id %" PRIu32
                                ", expected %zu float32 with %s",
                                name, vb->n_elems, (int)vb->dtype, vb->id, want,
                                t ? "id 0" : "a distill round's id");
            return NULL;
        }
        a->rx_kind = t ? RX_TEACHER : RX_STUDENT;
    } else {
        fv__agent_violation(a, c, j, -1, FV_EPROTO, "unexpected vector '%s'", name);
        return NULL;
    }
    a->rx_buf = malloc(vb->n_elems * FV_VEC_ELEM_BYTES);
    a->rx_job = j;
    if (a->rx_buf == NULL)
        fv__agent_violation(a, c, j, -1, FV_ENOMEM, "no memory for vector '%s'", name);
    return a->rx_buf;
}

/* Builds the global preprocessing from the summed stats and encodes the train and
 * validation rows with it; swaps the result in only on success. */
static int build_features(ajob_t *j, const uint32_t *sum, char *why, size_t cap)
{
    fv_fed_stats_t st;
    fv_diag_t d = {""};
    fv_preproc_t *pp = NULL;
    int r = fv_fed_stats_decode(&j->sl, sum, &st, &d);
    if (r != 0) {
        snprintf(why, cap, "stats vector: %s", d.msg);
        return r;
    }
    r = fv_preproc_from_moments(j->job->schema, st.count, st.sum, st.sumsq, &pp);
    fv_fed_stats_close(&st);
    if (r != 0) {
        snprintf(why, cap, "stats vector: cannot build the preprocessing: %s", fv_strerror(r));
        return r;
    }
    size_t nf = fv_preproc_n_features(pp);
    /* (huge-page hinted: a large bank's encoded rows are first touched here) */
    float *x_tr = fv_preproc_matrix_alloc(pp, j->n_tr);
    float *x_va = fv_preproc_matrix_alloc(pp, j->n_va);
    int32_t *y_tr = malloc(j->n_tr * sizeof *y_tr);
    int32_t *y_va = malloc((j->n_va ? j->n_va : 1) * sizeof *y_va);
    if (nf != j->n_feat || !x_tr || !x_va || !y_tr || !y_va) {
        r = nf != j->n_feat ? FV_EINVAL : FV_ENOMEM;
    } else if ((r = fv_preproc_transform(pp, j->ds, j->tr, j->n_tr, x_tr)) == 0 &&
               (r = fv_preproc_transform(pp, j->ds, j->va, j->n_va, x_va)) == 0) {
        fv_dataset_labels(j->ds, j->tr, j->n_tr, y_tr);
        fv_dataset_labels(j->ds, j->va, j->n_va, y_va);
    }
    if (r != 0) {
        fv_preproc_free(pp);
        free(x_tr), free(x_va), free(y_tr), free(y_va);
        snprintf(why, cap, "stats vector: cannot encode the features: %s", fv_strerror(r));
        return r;
    }
    free(j->x_tr), free(j->x_va), free(j->y_tr), free(j->y_va);
    fv_preproc_free(j->pp);
    j->x_tr = x_tr, j->x_va = x_va, j->y_tr = y_tr, j->y_va = y_va, j->pp = pp;
    return 0;
}

void fv__agent_on_vec(fv_conn_t *c, uint32_t id, void *vec, uint64_t n)
{
    agent_t *a = fv_conn_get_data(c);
    ajob_t *j = a->rx_job;
    int kind = a->rx_kind;
    a->rx_buf = NULL;
    a->rx_job = NULL;
    a->rx_kind = RX_NONE;
    if (j == NULL || j != a->job) { /* the job went away meanwhile */
        free(vec);
        return;
    }
    if (kind == RX_TEACHER || kind == RX_STUDENT) {
        bool t = kind == RX_TEACHER;
        float **slot = t ? &j->teacher : &j->student;
        uint8_t *hash = t ? j->teacher_hash : j->student_hash;
        free(*slot);
        *slot = vec;
        *(t ? &j->has_teacher : &j->has_student) = true;
        params_hash(vec, n, hash);
        char h[65];
        fv__agent_hex32(hash, h);
        fv__agent_log_job("info", t ? "teacher_received" : "student_received", j, id,
                          json_pack("{s:s,s:I}", "model", h, "params", (json_int_t)n));
        return;
    }
    if (kind == RX_MODEL) {
        free(j->global);
        j->global = vec;
        j->has_global = true;
        params_hash(j->global, n, j->global_hash);
        char h[65];
        fv__agent_hex32(j->global_hash, h);
        fv__agent_log_job("info", "model_received", j, id,
                          json_pack("{s:s,s:I}", "model", h, "params", (json_int_t)n));
        return;
    }
    /* stats: the same sum again (after a reconnect) changes nothing; a different one
     * (the coordinator restarted the job with another cohort) replaces the features,
     * which is safe only while no work item reads them. */
    if (j->has_features) {
        if (memcmp(j->stats_sum, vec, n * sizeof(uint32_t)) == 0) {
            free(vec);
            return;
        }
        if (j->n_busy > 0) {
            free(vec);
            fv__agent_violation(a, c, j, 0, FV_EPROTO,
                                "a different stats vector while a round runs");
            return;
        }
        fv__agent_log_job("warn", "stats_replaced", j, 0, NULL);
    }
    char why[FV_DIAG_MAX + 64];
    int r = build_features(j, vec, why, sizeof why);
    if (r != 0) {
        free(vec);
        fv__agent_violation(a, c, j, 0, r, "%s", why);
        return;
    }
    free(j->stats_sum);
    j->stats_sum = vec;
    j->has_features = true;
    fv__agent_log_job(
        "info", "stats_received", j, 0,
        json_pack("{s:I,s:I}", "features", (json_int_t)j->n_feat, "words", (json_int_t)n));
}

void fv__agent_on_vec_sent(fv_conn_t *c, uint32_t id)
{
    agent_t *a = fv_conn_get_data(c);
    if (a->tx_buf == NULL)
        return;
    fv__agent_log_job(
        "info", "uploaded", a->tx_job, (int64_t)a->tx_round,
        json_pack("{s:s,s:I}", "vector", a->tx_name, "bytes", (json_int_t)a->tx_bytes));
    (void)id;
    free(a->tx_buf);
    a->tx_buf = NULL;
    a->tx_job = NULL;
}

/* ---- connection --------------------------------------------------------------------- */

void fv__agent_on_open(fv_conn_t *c, const fv_identity_t *peer)
{
    agent_t *a = fv_conn_get_data(c);
    a->conn = c;
    a->conn_gen++;
    fv__agent_log_job("info", "connected", NULL, -1,
                      json_pack("{s:s,s:s,s:s}", "peer", peer->name, "federation", peer->federation,
                                "addr", fv_conn_peer_addr(c)));
}

void fv__agent_on_msg(fv_conn_t *c, const fv_msg_t *m)
{
    agent_t *a = fv_conn_get_data(c);
    if (a->stopping || fv__agent_cohort_refused(a, m))
        return; /* (a round message for a job refused for its cohort: stale) */
    if (a->cfg->fetch_releases && m->type != FV_MSG_RELEASE && m->type != FV_MSG_RELEASE_SYNC &&
        m->type != FV_MSG_FILE_CHUNK && m->type != FV_MSG_FETCH_FAIL && m->type != FV_MSG_RECEIPT) {
        /* --fetch-releases takes no job: a job's messages are not for this run (but a job
         * receipt this agent missed, sent again before the releases, is kept) */
        fv__agent_log_job(
            "info", "stale_message", NULL, -1,
            json_pack("{s:s,s:s}", "type", fv_msg_type_name(m->type), "why", "--fetch-releases"));
        return;
    }
    switch (m->type) {
    case FV_MSG_JOB_OFFER:
        fv__agent_on_job_offer(a, c, m);
        break;
    case FV_MSG_ROUND_START:
        fv__agent_on_round_start(a, c, m);
        break;
    case FV_MSG_SECAGG:
        fv__agent_on_secagg(a, c, m);
        break;
    case FV_MSG_UPLOAD_GO:
        fv__agent_on_upload_go(a, c, m);
        break;
    case FV_MSG_ROUND_END:
        fv__agent_on_round_end(a, c, m);
        break;
    case FV_MSG_JOB_DONE:
        fv__agent_on_job_done(a, c, m);
        break;
    case FV_MSG_RECEIPT:
        fv__agent_on_receipt(a, c, m);
        break;
    case FV_MSG_RELEASE:
        fv__agent_on_release(a, c, m);
        break;
    case FV_MSG_RELEASE_SYNC:
        fv__agent_on_release_sync(a, c, m);
        break;
    case FV_MSG_FILE_CHUNK:
        fv__agent_on_file_chunk(a, c, m);
        break;
    case FV_MSG_FETCH_FAIL:
        fv__agent_on_fetch_fail(a, c, m);
        break;
    case FV_MSG_SCHEMA_QUERY:
        fv__agent_on_schema_query(a, c, m);
        break;
    case FV_MSG_VEC_ACK:
        if (a->up_unacked && strcmp(a->tx_name, "masked") == 0)
            fv__agent_kill_point("after-masked", a->tx_round);
        a->up_unacked = false; /* our upload arrived whole */
        break;
    default:
        fv__agent_violation(a, c, a->job, -1, FV_EPROTO,
                            "unexpected message '%s' from the coordinator",
                            fv_msg_type_name(m->type));
        break;
    }
}

void fv__agent_on_close(fv_conn_t *c, int err, const char *why)
{
    agent_t *a = fv_conn_get_data(c);
    if (a->conn == c)
        a->conn = NULL;
    free(a->rx_buf);
    a->rx_buf = NULL;
    a->rx_job = NULL;
    a->rx_kind = RX_NONE;
    char clean[512];
    fv__agent_text_clean(why, strlen(why), clean, sizeof clean);
    if (a->up_unacked && !a->stopping)
        /* Cut off before the coordinator acknowledged our upload: say which, so "broken
         * pipe" is not all the operator sees (the coordinator's own reason, when its
         * ERROR frame arrived first, is `why`; else its log has it as upload_refused). */
        fv__agent_log_job("warn", "upload_interrupted", a->tx_job, (int64_t)a->tx_round,
                          json_pack("{s:s,s:I,s:s}", "vector", a->tx_name, "bytes",
                                    (json_int_t)a->tx_bytes, "why", clean));
    a->up_unacked = false;
    free(a->tx_buf);
    a->tx_buf = NULL;
    a->tx_job = NULL;
    fv__agent_release_session_end(a);
    fv__agent_session_close(a, c, err, why);
    fv__agent_log_job(a->audit_failed           ? "error"
                      : err == 0 || a->stopping ? "info"
                                                : "warn",
                      "disconnected", a->job, -1,
                      json_pack("{s:s,s:s,s:b}", "why", clean, "err", fv_err_name(err),
                                "reconnecting", !a->stopping && !a->audit_failed));
    if (a->audit_failed) {
        /* A bank's rule: nothing leaves unrecorded. Stop rather than reconnect. */
        fv__agent_stop(a, 1);
        a->exit_code = 1;
    }
    /* A round cannot survive the connection: the coordinator counts us as dropped. The
     * job (data, model, preprocessing) stays for the re-offer. */
    if (a->job != NULL) {
        fv__agent_round_free(a->job->round);
        a->job->round = NULL;
    }
}
