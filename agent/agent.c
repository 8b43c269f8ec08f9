/* agent.c - the fedvault agent daemon: one libuv loop, one outbound TLS connection to the
 * coordinator, local training on the thread pool, the SecAgg client.
 *
 * Protocol (protocols/fv_wire.h, "ROUNDS"), as this side plays it:
 *   JOB_OFFER {job, spec}     parse the spec, check its digest is `job`, check the local
 *                             policy (accept_jobs); then, on the thread pool, load the
 *                             data file against the job's schema, fingerprint it
 *                             (SHA-256, streamed), split it (stratified; seed = job seed
 *                             ^ H(agent name)); reply JOB_ACCEPT {job, data, rows, model}
 *                             or JOB_REFUSE {reason} on the connection that offered it.
 *                             The same job offered again (after a reconnect) reuses the
 *                             loaded data and answers with the hash of the model it holds.
 *                             Anything for the job before the accept is a violation.
 *   VEC "model" (f32, P)      the global parameters; kept with their hash (SHA-256 of the
 *                             little-endian bytes).
 *   VEC "stats" (u32)         after ROUND_END of round 0: the summed stats vector; builds
 *                             the global preprocessing and the feature matrices (once).
 *   VEC "teacher" / "student" (f32)  distill phase (a job with a "distill" section): the
 *                             teacher (the training phase's result, id 0, the job's model
 *                             size) and the student's global parameters (id = the distill
 *                             round, the student's size); each kept with its hash. A job
 *                             without a distill section gets neither (a violation).
 *   ROUND_START               checks (our key at pks[index], policy, t and k as the job
 *                             prescribes, model hash, round kind: 1 stats for round 0, 2
 *                             train for 1..rounds, 3 distill for the rounds after them,
 *                             fv_job_last_round), then queues the work (stats words;
 *                             evaluate + train + encode; or, distill, evaluate student,
 *                             teacher and int8 student + distill + encode) on the thread
 *                             pool and, with SecAgg, starts the client (ADVERTISE goes out
 *                             at once: key agreement overlaps training).
 *   SECAGG                    handed to the client; SHARES_FWD needs our input, so if the
 *                             work has not finished it is copied and handled when it does.
 *                             The client's MASKED message is never sent as SECAGG: it is
 *                             kept until UPLOAD_GO and sent as VEC "masked" (u32 words).
 *   UPLOAD_GO                 may arrive before or after our vector is ready; the upload
 *                             goes out when both happened (VEC "masked" with SecAgg,
 *                             VEC "update" without).
 *   ROUND_END                 frees the round (a work item still running is orphaned and
 *                             its result dropped when it returns).
 *   RECEIPT                   the coordinator's signed account of a round: checked
 *                             (a job we accepted, round within it, body a JSON object
 *                             whose "job" and "round" are the message's, signature by
 *                             the key of the coordinator's certificate) and kept in the
 *                             audit log (round.receipt); a bad one is a violation.
 *   JOB_DONE                  logs; with --once the daemon stops and exits 0. Also the
 *                             job being loaded (a job's end may reach us while a re-offer
 *                             of it loads). The end of a job we do not hold is a repeat
 *                             (the coordinator says it on every connection): noted.
 *
 * Trust: every message from the coordinator is hostile. Wrong job or round, a vector of
 * the wrong name, type or size, a model whose hash is not the announced one, a cohort
 * key list that does not hold our key at our index: logged ("violation") and the
 * connection is closed with an error; the client reconnects (jittered backoff) and the
 * coordinator may re-offer the job. A round our own policy refuses (cohort or threshold
 * too small, SecAgg parameters other than the job's) is sat out: logged as
 * policy_refusal, nothing is sent for it.
 *
 * Threads: everything here runs on the loop thread except job_load_run and work_run
 * (uv_queue_work). job_load_run fills a job nobody else reads until it returns (the job
 * is marked loading); work_run touches only its work item and the job's read-only data
 * (dataset, splits, feature matrices: written once before any training work is queued;
 * a different stats vector may replace the features only while no work runs). Building
 * the feature matrices from the stats vector runs on the loop (once per job, a pass over
 * the rows: milliseconds for the shipped data).
 * A job or round that goes away while its work runs is detached (job->n_busy,
 * round->work) and freed by the after-work callback.
 *
 * Log events (one JSON line each on stderr, with job = the 64-hex job id, job_name and
 * round where they apply): starting, connected, disconnected {why, err, reconnecting},
 * job_accepted {data_sha256, rows, train_rows, val_rows, params, model, secagg},
 * job_refused {reason}, job_id_mismatch {offered, canonical}, policy_refusal {why},
 * model_received {model, params}, stats_received, stats_replaced, round_start {kind,
 * index, n, t, k, secagg}, stats_ready, trained {epochs, train_loss, train_rows,
 * val_rows}, uploaded {vector, bytes}, round_end {status, err, reason, uploaded},
 * round_failed / secagg_abort / round_abandoned {why}, stale_message, violation {why,
 * err, peer}, upload_failed, send_failed, job_dropped, job_done {rounds, model,
 * holds_final_model}, receipt_kept {bytes}, audit_failed {path, record, err, why, action},
 * stopping, stopped {exit, audit_log, audit_records, audit_append_ms_mean,
 * audit_append_ms_max}; agent_main.c adds startup_failed.
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
 *                   (if held)}; job_refuse {job, reason}; secagg {job, round, secagg (the
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
 * Ownership: the agent owns the job, the job owns the round; vectors being received
 * belong to the agent until on_vec/on_close; a vector being sent is handed to the agent
 * (tx_buf) and freed at on_vec_sent/on_close, so a round may end while its upload drains.
 * Secrets: the identity key lives in sodium_malloc'd memory, wiped and freed at exit; it
 * is never logged. Logs never hold data rows, labels or update values.
 */
#include "agent-int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv-config.h"
#include "fv_audit.h"
#include "fv_blas.h"
#include "fv_conn.h"
#include "fv_crypto.h"
#include "fv_dataset.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_metrics.h"
#include "fv_mlp.h"
#include "fv_optim.h"
#include "fv_preproc.h"
#include "fv_schema.h"
#include "fv_secagg.h"
#include "fv_tls.h"
#include "fv_train.h"
#include "fv_wire.h"

#define EVAL_CHUNK_ROWS 1024
#define ACCEPTED_JOBS_KEPT 16

typedef struct agent agent_t;
typedef struct ajob ajob_t;
typedef struct around around_t;
typedef struct awork awork_t;

/* One job: data, splits, the global model and preprocessing. Lives across reconnects. */
struct ajob {
    agent_t *a;
    fv_job_t *job;
    uint8_t digest[32];
    char hex[65];
    fv_dataset_t *ds;
    uint8_t data_sha[32];
    size_t *tr, n_tr, *va, n_va;
    fv_fed_stats_layout_t sl;
    fv_mlp_arch_t arch;
    size_t n_feat, n_params;
    /* global model */
    float *global;
    bool has_global;
    uint8_t global_hash[32];
    /* distillation (job->distill.on): the teacher (the training phase's result) and the
     * student's global parameters, each kept with its hash */
    fv_mlp_arch_t s_arch;
    size_t s_n_params;
    float *teacher, *student;
    bool has_teacher, has_student;
    uint8_t teacher_hash[32], student_hash[32];
    /* global preprocessing (from the stats round's sum) */
    uint32_t *stats_sum; /* sl.dim words, as received */
    bool has_features;
    float *x_tr, *x_va;
    int32_t *y_tr, *y_va;
    around_t *round;     /* the round in progress, or NULL */
    uint64_t last_round; /* highest round started (valid when started) */
    bool started;
    bool loading;          /* data being loaded on the thread pool */
    uint64_t offered_conn; /* connection (a->conn_gen) that offered it last */
    uv_work_t load_req;
    int load_rc;
    char load_reason[FV_DIAG_MAX + 256];
    unsigned n_busy; /* work items reading this job */
    bool detached;   /* no longer the agent's job: freed when n_busy drops to 0 */
};

/* One round in progress. */
struct around {
    uint64_t round;
    uint32_t kind, index, n, t, k;
    uint64_t n_ref;
    bool secagg;
    bool sat_out; /* refused by policy or aborted: ignore its messages */
    fv_secagg_client_t *sa;
    fv_rand_t rng;
    fv_secagg_outbox_t ob;
    awork_t *work;   /* in flight, or NULL */
    bool ready;      /* the vector below is built */
    uint32_t *words; /* SecAgg input, or the plain u32 update (stats round) */
    float *fvec;     /* the plain f32 update (training round without SecAgg) */
    size_t dim;
    uint8_t *fwd; /* deferred SHARES_FWD */
    size_t fwd_len;
    uint32_t *masked; /* MASKED message as native words, waiting for UPLOAD_GO */
    size_t masked_words;
    bool go, uploaded;
};

/* Work on the thread pool: touches only itself and the job's read-only data. */
struct awork {
    uv_work_t req;
    agent_t *a;
    ajob_t *j;
    around_t *r; /* NULL once the round is gone */
    uint32_t kind;
    uint64_t round;
    uint64_t n_ref;
    bool secagg;
    uint64_t seed;
    /* Key of the stochastic rounding of this round's update (fv_fed_encode): BLAKE2b-256
     * keyed with this agent's secret key over (job, round). Secret, so nobody else can
     * predict the rounding noise; deterministic, so a round run again (after a coordinator
     * restart) sends the same quantized update and a resumed job ends with the same model
     * as an uninterrupted one. Wiped when the work item is freed. */
    uint8_t qkey[32];
    float *global;  /* own copy of the global parameters (the student's in a distill round) */
    float *teacher; /* distill round: own copy of the teacher's parameters */
    /* results */
    int rc;
    fv_diag_t d;
    uint32_t *words;
    float *fvec;
    size_t dim;
    double train_loss;
    size_t epochs;
    double val_loss_sum;
};

struct agent {
    const fv_agent_cfg_t *cfg;
    uv_loop_t *loop;
    fv_tls_ctx_t *ctx;
    fv_client_t *client;
    fv_conn_t *conn; /* open connection, or NULL */
    uint8_t *sk;     /* sodium_malloc'd identity key (64 bytes) */
    uint8_t pk[32];
    uint64_t name_hash;
    uv_signal_t sigint, sigterm;
    ajob_t *job;
    uint64_t conn_gen; /* incremented at every on_open */
    /* vector being received */
    void *rx_buf;
    enum { RX_NONE, RX_MODEL, RX_STATS, RX_TEACHER, RX_STUDENT } rx_kind;
    ajob_t *rx_job;
    /* vector being sent */
    void *tx_buf;
    size_t tx_bytes;
    uint64_t tx_round;
    char tx_name[16];
    ajob_t *tx_job;
    bool up_unacked; /* the last upload (tx_*) is not acknowledged (VEC_ACK) yet */
    bool stopping;
    int exit_code;
    /* the audit log ("AUDIT" above) */
    fv_audit_t *audit;
    bool audit_failed; /* an append failed: nothing more is sent, the agent stops */
    uint64_t audit_n;  /* appends made by this process, and their time */
    uint64_t audit_ns_sum, audit_ns_max;
    fv_conn_t *sess_conn; /* the connection the current session record is about */
    uint64_t session;     /* seq of its session.opened record */
    char sess_peer[FV_NAME_MAX + 1];
    uint64_t pings, pongs, ping_bytes;
    bool vtx_on; /* a vector being sent: summed into one vec.sent record */
    uint32_t vtx_id, vtx_dtype, vtx_frames;
    uint64_t vtx_elems, vtx_bytes;
    char vtx_name[FV_WIRE_TEXT_MAX + 1];
    char vtx_job[65]; /* "" if the vector's job is gone */
    uint64_t vtx_round;
    /* jobs this agent sent JOB_ACCEPT for (a receipt must name one); a ring */
    struct {
        uint8_t digest[32];
        uint64_t rounds; /* the job's last round number (fv_job_last_round) */
    } accepted[ACCEPTED_JOBS_KEPT];
    size_t n_accepted;
};

/* ---- helpers ------------------------------------------------------------------------- */

static void hex32(const uint8_t b[32], char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[64] = '\0';
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t hash_u64(const void *buf, size_t len)
{
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, buf, len);
    return le64(h);
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

/* Streams a file through SHA-256. 0 or a negated errno. */
static int file_sha256(const char *path, uint8_t out[32])
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return UV_EIO;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    uint8_t buf[1 << 16];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_hash_sha256_update(&st, buf, r);
    int err = ferror(f) ? UV_EIO : 0;
    fclose(f);
    if (err == 0)
        crypto_hash_sha256_final(&st, out);
    return err;
}

/* Copies s into out[cap] as valid, printable UTF-8 (control bytes and invalid
 * sequences become '?'), cut at a character boundary to at most cap - 1 bytes. Safe for
 * JSON logs and for the wire's text fields. */
static void text_clean(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < cap;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        bool ok = n > 0 && i + n <= len && !(n == 2 && c < 0xc2) && !(n == 4 && c > 0xf4);
        for (size_t k = 1; ok && k < n; k++)
            ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
        if (!ok || (n == 1 && (c < 0x20 || c == 0x7f))) {
            out[o++] = '?';
            i++;
            continue;
        }
        if (o + n + 1 > cap)
            break;
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
}

static void jlog(const char *level, const char *event, const ajob_t *j, int64_t round,
                 json_t *extra)
{
    fv__agent_log(level, event, j != NULL ? j->hex : NULL, j != NULL ? j->job->name : NULL, round,
                  extra);
}

/* A hostile or broken message from the coordinator: log, close (the client reconnects). */
static void violation(agent_t *a, fv_conn_t *c, const ajob_t *j, int64_t round, int err,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void violation(agent_t *a, fv_conn_t *c, const ajob_t *j, int64_t round, int err,
                      const char *fmt, ...)
{
    char why[512], clean[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    text_clean(why, strlen(why), clean, sizeof clean);
    jlog("error", "violation", j, round,
         json_pack("{s:s,s:s,s:s}", "why", clean, "err", fv_err_name(err), "peer",
                   c != NULL ? fv_conn_peer_addr(c) : ""));
    (void)a;
    if (c != NULL) {
        char wire[FV_WIRE_TEXT_MAX + 1];
        text_clean(clean, strlen(clean), wire, sizeof wire);
        /* fv_conn reserves FV_EPEER for "the peer sent ERROR" (it sends none back). */
        fv_conn_close(c, err == FV_EPEER ? FV_EPROTO : err, wire);
    }
}

static int send_msg(agent_t *a, const fv_msg_t *m)
{
    if (a->conn == NULL)
        return UV_ENOTCONN;
    int r = fv_conn_send(a->conn, m);
    if (r != 0)
        jlog("warn", "send_failed", a->job, -1,
             json_pack("{s:s,s:s}", "msg", fv_msg_type_name(m->type), "err", fv_err_name(r)));
    return r;
}

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
static int audit_append(agent_t *a, const char *event, json_t *details)
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

/* Sets key to a JSON string of s (valid UTF-8 by construction: text_clean'd or hex). */
static void jset_str(json_t *o, const char *key, const char *s)
{
    json_object_set_new(o, key, json_string(s));
}

static void jset_text(json_t *o, const char *key, const char *s, size_t len)
{
    char clean[FV_WIRE_TEXT_MAX * 4 + 1];
    text_clean(s, len, clean, sizeof clean);
    jset_str(o, key, clean);
}

static void jset_hex32(json_t *o, const char *key, const uint8_t b[32])
{
    char h[65];
    hex32(b, h);
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
    return audit_append(a, "session.opened", o);
}

static void session_close(agent_t *a, fv_conn_t *c, int err, const char *why)
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
    audit_append(a, "session.closed", o);
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
        return audit_append(a, "msg.sent", NULL);
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
        break;
    case FV_MSG_SECAGG:
        jset_hex32(o, "job", m->u.secagg.job);
        jset_u64(o, "round", m->u.secagg.round);
        jset_str(o, "secagg", secagg_msg_name(m->u.secagg.data, m->u.secagg.len));
        break;
    default:
        break;
    }
    return audit_append(a, "msg.sent", o);
}

/* Fault injection for the dropout tests (tests/integration/fed_dropout.py): with
 * FV_TEST_KILL_AT=POINT:ROUND in the environment the agent SIGKILLs itself when it
 * reaches POINT in round ROUND, so a dropout lands at the same protocol point on every
 * machine and build, not at a time. Points: round-start (ROUND_START received: nothing
 * sent for the round), before-masked (SecAgg keys advertised and shares sent, the masked
 * input about to be uploaded), mid-masked (the masked upload's VEC_BEGIN queued, its
 * first chunk about to be), after-masked (the coordinator acknowledged the whole masked
 * input: the agent is in the sum, its mask seeds must be recovered from the others). */
static const char *g_kill_point;
static uint64_t g_kill_round;

static void test_hooks_init(void)
{
    static char buf[32];
    const char *e = getenv("FV_TEST_KILL_AT");
    char *colon;
    if (e == NULL || strlen(e) >= sizeof buf)
        return;
    snprintf(buf, sizeof buf, "%s", e);
    if ((colon = strchr(buf, ':')) == NULL)
        return;
    *colon = '\0';
    g_kill_round = strtoull(colon + 1, NULL, 10);
    g_kill_point = buf;
}

static void kill_point(const char *point, uint64_t round)
{
    if (g_kill_point == NULL || round != g_kill_round || strcmp(point, g_kill_point) != 0)
        return;
    fv__agent_log("warn", "test_kill", NULL, NULL, (int64_t)round,
                  json_pack("{s:s}", "point", point));
    raise(SIGKILL);
}

/* The send tap (fv_conn_cbs_t.on_send): every frame is recorded before it is queued;
 * a frame that cannot be recorded is withheld and the connection closes (on_close then
 * stops the agent). PING/PONG are counted into session.closed, a vector's frames into
 * one vec.sent record written when its VEC_END is about to go. */
static int on_send(fv_conn_t *c, const fv_msg_t *m, const uint8_t *body, size_t len)
{
    agent_t *a = fv_conn_get_data(c);
    if (a->audit_failed)
        return FV_EIO;
    int r;
    if (a->sess_conn != c && (r = session_open(a, c)) != 0)
        return r;
    if (m->type == FV_MSG_VEC_CHUNK && m->u.vec_chunk.seq == 0 && a->up_unacked &&
        strcmp(a->tx_name, "masked") == 0)
        kill_point("mid-masked", a->tx_round);
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
        text_clean(m->u.vec_begin.name.ptr, m->u.vec_begin.name.len, a->vtx_name,
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
        return audit_append(a, "vec.sent", o);
    }
    default:
        return audit_msg_sent(a, m, body, len);
    }
}

/* Creates the missing directories above path (mode 0700; existing ones untouched). */
static int mkdir_parents(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return FV_ETOOBIG;
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return 0;
}

/* ---- job and round lifetime -------------------------------------------------------- */

static void round_free(around_t *r)
{
    if (r == NULL)
        return;
    if (r->work != NULL)
        r->work->r = NULL; /* orphaned: the after-work callback drops its result */
    fv_secagg_client_free(r->sa);
    fv_secagg_outbox_close(&r->ob);
    if (r->words != NULL)
        sodium_memzero(r->words, r->dim * sizeof *r->words);
    free(r->words);
    free(r->fvec);
    free(r->fwd);
    free(r->masked);
    free(r);
}

static void job_destroy(ajob_t *j)
{
    round_free(j->round);
    fv_dataset_free(j->ds);
    fv_job_free(j->job);
    free(j->tr), free(j->va);
    free(j->global);
    free(j->teacher), free(j->student);
    free(j->stats_sum);
    free(j->x_tr), free(j->x_va), free(j->y_tr), free(j->y_va);
    free(j);
}

/* Detaches the job from the agent; freed now or when its last work item returns. */
static void job_release(agent_t *a, ajob_t *j)
{
    if (j == NULL)
        return;
    if (a->job == j)
        a->job = NULL;
    if (a->rx_job == j)
        a->rx_job = NULL; /* the buffer itself stays the agent's until on_vec/on_close */
    if (a->tx_job == j)
        a->tx_job = NULL;
    round_free(j->round);
    j->round = NULL;
    j->detached = true;
    if (j->n_busy == 0)
        job_destroy(j);
}

/* ---- JOB_OFFER ---------------------------------------------------------------------- */

/* reason goes to the local log; wire_reason (NULL: the same) to the coordinator. A
 * sentence about the local data names a local path and may quote a cell: it stays here,
 * and the coordinator gets one without either (no byte of a row leaves the bank). */
static void refuse(agent_t *a, const uint8_t job[32], const char *job_hex, const char *job_name,
                   const char *reason, const char *wire_reason)
{
    char wire[FV_WIRE_TEXT_MAX + 1];
    if (wire_reason == NULL)
        wire_reason = reason;
    text_clean(wire_reason, strlen(wire_reason), wire, sizeof wire);
    char full[FV_DIAG_MAX + 128];
    text_clean(reason, strlen(reason), full, sizeof full);
    fv__agent_log("warn", "job_refused", job_hex, job_name, -1, json_pack("{s:s}", "reason", full));
    fv_msg_t m = {.type = FV_MSG_JOB_REFUSE};
    memcpy(m.u.job_refuse.job, job, 32);
    m.u.job_refuse.reason.ptr = wire;
    m.u.job_refuse.reason.len = strlen(wire);
    send_msg(a, &m);
}

static void accept_job(agent_t *a, ajob_t *j)
{
    fv_msg_t m = {.type = FV_MSG_JOB_ACCEPT};
    memcpy(m.u.job_accept.job, j->digest, 32);
    memcpy(m.u.job_accept.data_sha256, j->data_sha, 32);
    m.u.job_accept.rows = j->ds->n_rows;
    m.u.job_accept.has_model = j->has_global;
    if (j->has_global)
        memcpy(m.u.job_accept.model, j->global_hash, 32);
    char dh[65], mh[65];
    hex32(j->data_sha, dh);
    hex32(j->global_hash, mh);
    bool known = false;
    for (size_t i = 0; i < a->n_accepted && i < ACCEPTED_JOBS_KEPT; i++)
        known = known || memcmp(a->accepted[i].digest, j->digest, 32) == 0;
    if (!known) {
        size_t slot = a->n_accepted++ % ACCEPTED_JOBS_KEPT;
        memcpy(a->accepted[slot].digest, j->digest, 32);
        a->accepted[slot].rounds = fv_job_last_round(j->job);
    }
    jlog("info", "job_accepted", j, -1,
         json_pack("{s:s,s:I,s:I,s:I,s:I,s:s?,s:b}", "data_sha256", dh, "rows",
                   (json_int_t)j->ds->n_rows, "train_rows", (json_int_t)j->n_tr, "val_rows",
                   (json_int_t)j->n_va, "params", (json_int_t)j->n_params, "model",
                   j->has_global ? mh : NULL, "secagg", j->job->secagg.on));
    send_msg(a, &m);
}

/* Loads and checks everything a job needs from the local side. On failure, *reason
 * holds the sentence for JOB_REFUSE. */
static int job_prepare(agent_t *a, ajob_t *j, char *reason, size_t cap)
{
    fv_diag_t d = {""};
    const fv_job_t *job = j->job;
    int r = fv_dataset_load(a->cfg->data, job->schema, &j->ds, &d);
    if (r != 0) {
        snprintf(reason, cap, "%s", d.msg[0] ? d.msg : fv_strerror(r));
        return r;
    }
    if ((r = file_sha256(a->cfg->data, j->data_sha)) != 0) {
        snprintf(reason, cap, "%s: cannot read to fingerprint it", a->cfg->data);
        return r;
    }
    uint64_t split_seed = job->seed ^ a->name_hash;
    r = fv_dataset_split(j->ds, NULL, j->ds->n_rows, job->validation_fraction, split_seed, &j->tr,
                         &j->n_tr, &j->va, &j->n_va);
    if (r != 0) {
        snprintf(reason, cap, "%s: cannot split the rows: %s", a->cfg->data, fv_strerror(r));
        return r;
    }
    if (j->n_tr == 0) {
        snprintf(reason, cap, "%s: no training rows left after the validation split", a->cfg->data);
        return FV_EEMPTY;
    }
    if (j->n_tr > FV_FED_RAW_MAX || j->ds->n_rows > FV_FED_RAW_MAX) {
        snprintf(reason, cap,
                 "%s: %zu rows is more than the %u one agent may contribute to a round's "
                 "counts",
                 a->cfg->data, j->ds->n_rows, FV_FED_RAW_MAX);
        return FV_EOVERFLOW;
    }
    if ((r = fv_fed_stats_layout_init(job->schema, &j->sl)) != 0) {
        snprintf(reason, cap, "job '%s': cannot lay out the stats vector: %s", job->name,
                 fv_strerror(r));
        return r;
    }
    /* The feature count depends on the schema only: a placeholder preprocessing from
     * zero moments gives it, so the model size is known before the stats round. */
    size_t nc = fv_schema_n_columns(job->schema);
    double *zero = calloc(nc ? nc : 1, sizeof *zero);
    fv_preproc_t *pp = NULL;
    if (zero == NULL || (r = fv_preproc_from_moments(job->schema, zero, zero, zero, &pp)) != 0) {
        free(zero);
        snprintf(reason, cap, "job '%s': cannot build the preprocessing", job->name);
        return r != 0 ? r : FV_ENOMEM;
    }
    free(zero);
    j->n_feat = fv_preproc_n_features(pp);
    fv_preproc_free(pp);
    r = fv_mlp_parse_arch(job->model, j->n_feat, fv_schema_n_classes(job->schema), &j->arch, &d);
    if (r != 0) {
        snprintf(reason, cap, "job '%s': model: %s", job->name, d.msg);
        return r;
    }
    fv_mlp_t *m = NULL;
    if ((r = fv_mlp_new(&j->arch, &m)) != 0) {
        snprintf(reason, cap, "job '%s': cannot build the model: %s", job->name, fv_strerror(r));
        return r;
    }
    j->n_params = fv_mlp_n_params(m);
    fv_mlp_free(m);
    m = NULL;
    if (j->n_params > FV_SECAGG_MAX_DIM / 2) {
        snprintf(reason, cap, "job '%s': %zu parameters is too large", job->name, j->n_params);
        return FV_ETOOBIG;
    }
    if (job->distill.on) {
        r = fv_mlp_parse_arch(job->distill.student, j->n_feat, fv_schema_n_classes(job->schema),
                              &j->s_arch, &d);
        if (r == 0)
            r = fv_mlp_new(&j->s_arch, &m);
        if (r != 0) {
            snprintf(reason, cap, "job '%s': distill.student: %s", job->name,
                     d.msg[0] ? d.msg : fv_strerror(r));
            return r;
        }
        j->s_n_params = fv_mlp_n_params(m);
        fv_mlp_free(m);
        if (j->s_n_params > FV_SECAGG_MAX_DIM / 2) {
            snprintf(reason, cap, "job '%s': distill.student: %zu parameters is too large",
                     job->name, j->s_n_params);
            return FV_ETOOBIG;
        }
    }
    return 0;
}

static bool policy_allows(const agent_t *a, const char *name)
{
    if (a->cfg->n_accept_jobs == 0)
        return true;
    for (size_t i = 0; i < a->cfg->n_accept_jobs; i++)
        if (strcmp(a->cfg->accept_jobs[i], name) == 0)
            return true;
    return false;
}

/* Loading the CSV and hashing the file may take seconds: on the thread pool, so the
 * connection keeps answering heartbeats. The work touches only j and the read-only
 * configuration. */
static void job_load_run(uv_work_t *req)
{
    ajob_t *j = req->data;
    j->load_rc = job_prepare(j->a, j, j->load_reason, sizeof j->load_reason);
}

static void job_loaded(uv_work_t *req, int status)
{
    ajob_t *j = req->data;
    agent_t *a = j->a;
    j->n_busy--;
    j->loading = false;
    if (j->detached) {
        if (j->n_busy == 0)
            job_destroy(j);
        return;
    }
    /* Answer only the connection that (re-)offered the job; after a reconnect without
     * a new offer yet, the re-offer is answered from what was loaded. */
    bool answer = a->conn != NULL && j->offered_conn == a->conn_gen;
    if (status != 0 || j->load_rc != 0) {
        if (answer) {
            char wire[160];
            snprintf(wire, sizeof wire,
                     "the local data does not fit the job (%s); details in the agent's log",
                     fv_err_name(j->load_rc));
            refuse(a, j->digest, j->hex, j->job->name,
                   status != 0 ? "the data load was cancelled" : j->load_reason,
                   status != 0 ? NULL : wire);
        } else
            jlog("warn", "job_refused", j, -1, json_pack("{s:s}", "reason", j->load_reason));
        job_release(a, j);
        return;
    }
    if (answer)
        accept_job(a, j);
}

static void on_job_offer(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    char hex[65], reason[FV_DIAG_MAX + 256];
    hex32(m->u.job_offer.job, hex);
    /* The same job again (we reconnected): keep everything, answer with what we hold. */
    if (a->job != NULL && memcmp(a->job->digest, m->u.job_offer.job, 32) == 0) {
        a->job->offered_conn = a->conn_gen;
        if (a->job->loading)
            return; /* job_loaded answers on this connection */
        round_free(a->job->round);
        a->job->round = NULL;
        a->job->started = false; /* a restarted coordinator may resume at any round */
        accept_job(a, a->job);
        return;
    }
    if (a->job != NULL) {
        jlog("warn", "job_dropped", a->job, -1,
             json_pack("{s:s}", "why", "the coordinator offered another job"));
        job_release(a, a->job);
    }
    fv_diag_t d = {""};
    fv_job_t *job = NULL;
    int r = fv_job_from_json("job", (const char *)m->u.job_offer.spec, m->u.job_offer.spec_len,
                             &job, &d);
    if (r != 0) {
        refuse(a, m->u.job_offer.job, hex, NULL, d.msg[0] ? d.msg : fv_strerror(r), NULL);
        return;
    }
    uint8_t dig[32];
    if ((r = fv_job_digest(job, dig)) != 0 || memcmp(dig, m->u.job_offer.job, 32) != 0) {
        char want[65];
        hex32(dig, want);
        if (r == 0) /* what the id should have been: public, and it helps debugging */
            jlog("warn", "job_id_mismatch", NULL, -1,
                 json_pack("{s:s,s:s}", "offered", hex, "canonical", want));
        refuse(a, m->u.job_offer.job, hex, job->name,
               "the job id is not the SHA-256 of the spec's canonical JSON", NULL);
        fv_job_free(job);
        return;
    }
    if (!policy_allows(a, job->name)) {
        snprintf(reason, sizeof reason, "job '%s' is not in this agent's accept_jobs policy",
                 job->name);
        fv__agent_log("warn", "policy_refusal", hex, job->name, -1,
                      json_pack("{s:s}", "why", reason));
        refuse(a, m->u.job_offer.job, hex, job->name, reason, NULL);
        fv_job_free(job);
        return;
    }
    ajob_t *j = calloc(1, sizeof *j);
    if (j == NULL) {
        refuse(a, m->u.job_offer.job, hex, job->name, "out of memory", NULL);
        fv_job_free(job);
        return;
    }
    j->a = a;
    j->job = job;
    memcpy(j->digest, dig, 32);
    memcpy(j->hex, hex, sizeof hex);
    j->offered_conn = a->conn_gen;
    j->loading = true;
    j->load_req.data = j;
    (void)c;
    if ((r = uv_queue_work(a->loop, &j->load_req, job_load_run, job_loaded)) != 0) {
        refuse(a, dig, hex, job->name, "cannot queue the data load", NULL);
        job_destroy(j);
        return;
    }
    j->n_busy++;
    a->job = j;
}

/* ---- the work: stats, or evaluate + train + encode -------------------------------- */

static int on_epoch_cb(void *user, const fv_epoch_report_t *r)
{
    awork_t *w = user;
    w->train_loss = r->train_loss;
    w->epochs = r->epoch;
    return 0;
}

/* What an agent measures of the models it evaluates in a round, in the layout's blocks
 * (fv_fed.h): histograms of the positive class's score (binary), rows per class and rows
 * classified right per model (multi-class), model 0's log loss sum. */
typedef struct evals {
    fv_fed_layout_t lay;
    uint64_t *hpos, *hneg;      /* n_models * hist_bins */
    uint64_t *class_n;          /* n_classes */
    uint64_t *class_right;      /* n_models * n_classes */
    double loss_sum;            /* model 0's */
} evals_t;

static int evals_init(evals_t *e, const fv_job_t *job, uint32_t kind, size_t n_params)
{
    memset(e, 0, sizeof *e);
    if (fv_fed_round_layout(job, kind, n_params, &e->lay) != 0)
        return FV_EINVAL;
    size_t mb = e->lay.n_models * e->lay.hist_bins, mk = e->lay.n_models * e->lay.n_classes;
    e->hpos = calloc(mb ? mb : 1, sizeof *e->hpos);
    e->hneg = calloc(mb ? mb : 1, sizeof *e->hneg);
    e->class_n = calloc(e->lay.n_classes ? e->lay.n_classes : 1, sizeof *e->class_n);
    e->class_right = calloc(mk ? mk : 1, sizeof *e->class_right);
    return e->hpos && e->hneg && e->class_n && e->class_right ? 0 : FV_ENOMEM;
}

static void evals_close(evals_t *e)
{
    free(e->hpos), free(e->hneg), free(e->class_n), free(e->class_right);
    memset(e, 0, sizeof *e);
}

/* Evaluates model `model` of the round (g) on the validation rows into e: its histograms
 * or per-class counts and, for model 0, the sum of per-row log loss (probabilities
 * clipped to [1e-7, 1 - 1e-7], as fv_metrics_log_loss). */
static int eval_model(const ajob_t *j, const fv_mlp_t *g, size_t model, evals_t *e)
{
    size_t B = e->lay.hist_bins, K = e->lay.n_classes, n_out = fv_mlp_arch(g)->n_out;
    bool binary = n_out == 1;
    double loss = 0;
    if (j->n_va == 0)
        return 0;
    fv_mlp_ws_t *ws = NULL;
    size_t chunk = j->n_va < EVAL_CHUNK_ROWS ? j->n_va : EVAL_CHUNK_ROWS;
    float *prob = malloc(chunk * n_out * sizeof *prob);
    int r = prob == NULL ? FV_ENOMEM : fv_mlp_ws_new(g, chunk, &ws);
    for (size_t i = 0; r == 0 && i < j->n_va; i += chunk) {
        size_t n = j->n_va - i < chunk ? j->n_va - i : chunk;
        if ((r = fv_mlp_predict(g, ws, j->x_va + i * j->n_feat, n, prob)) != 0)
            break;
        const int32_t *y = j->y_va + i;
        for (size_t k = 0; k < n; k++) {
            double p =
                binary ? (y[k] == 1 ? prob[k] : 1.0 - prob[k]) : prob[k * n_out + (size_t)y[k]];
            if (!(p >= 1e-7))
                p = 1e-7;
            if (p > 1 - 1e-7)
                p = 1 - 1e-7;
            loss -= log(p);
            if (!binary && K == n_out) {
                const float *pk = prob + k * n_out;
                size_t best = 0; /* argmax; a tie goes to the lowest class */
                for (size_t c = 1; c < n_out; c++)
                    if (pk[c] > pk[best])
                        best = c;
                if (model == 0)
                    e->class_n[y[k]]++;
                if (best == (size_t)y[k])
                    e->class_right[model * K + best]++;
            }
        }
        if (binary && B > 0)
            fv_metrics_hist_add(prob, y, n, B, e->hpos + model * B, e->hneg + model * B);
    }
    fv_mlp_ws_free(ws);
    free(prob);
    if (r == 0 && !isfinite(loss))
        r = FV_ENUMERIC;
    if (r == 0 && model == 0)
        e->loss_sum = loss;
    return r;
}

/* The local training settings of a round: the job's batch size and optimizer, no proximal
 * term, no local early stopping, the work item's seed. */
static void local_cfg(awork_t *w, uint32_t epochs, fv_train_cfg_t *cfg)
{
    fv_train_cfg_default(cfg);
    cfg->epochs = epochs;
    cfg->batch_size = w->j->job->batch_size;
    cfg->optim = w->j->job->optim;
    cfg->optim.prox_ref = NULL;
    cfg->optim.prox_mu = 0;
    cfg->patience = 0;
    cfg->seed = w->seed;
    cfg->on_epoch = on_epoch_cb;
    cfg->user = w;
}

/* The round vector of this agent (fv_fed.h, the layout in e): delta = local - w->global
 * (written into delta, P floats) and what e measured, encoded for SecAgg, or as the plain
 * float32 vector without it. */
static int encode_update(awork_t *w, const fv_mlp_t *local, float *delta, const evals_t *e)
{
    const ajob_t *j = w->j;
    const fv_job_t *job = j->job;
    size_t P = fv_mlp_n_params(local);
    const float *lp = fv_mlp_params_const(local);
    for (size_t i = 0; i < P; i++)
        delta[i] = lp[i] - w->global[i];
    fv_fed_local_t in = {.delta = delta,
                         .n_train = (uint32_t)j->n_tr,
                         .n_ref = (double)w->n_ref,
                         .hist_pos = e->lay.hist_bins ? e->hpos : NULL,
                         .hist_neg = e->lay.hist_bins ? e->hneg : NULL,
                         .loss_sum = e->loss_sum,
                         .n_val = (uint32_t)j->n_va,
                         .class_n = e->lay.n_classes ? e->class_n : NULL,
                         .class_right = e->lay.n_classes ? e->class_right : NULL};
    int r;
    if (w->secagg) {
        w->dim = e->lay.dim;
        w->words = malloc(e->lay.dim * sizeof *w->words);
        if (w->words == NULL)
            return FV_ENOMEM;
        fv_rand_t rng;
        fv_rand_seeded(&rng, w->qkey);
        r = fv_fed_encode(&e->lay, &in, job->secagg.clip, job->secagg.bits, &rng, w->words, &w->d);
        sodium_memzero(&rng, sizeof rng);
    } else {
        w->dim = e->lay.plain_dim;
        w->fvec = malloc(w->dim * sizeof *w->fvec);
        if (w->fvec == NULL)
            return FV_ENOMEM;
        r = fv_fed_plain_encode(&e->lay, &in, w->fvec, &w->d);
    }
    return r;
}

static int work_train(awork_t *w)
{
    const ajob_t *j = w->j;
    const fv_job_t *job = j->job;
    size_t P = j->n_params;
    fv_mlp_t *g = NULL, *local = NULL;
    evals_t e;
    float *delta = malloc(P * sizeof *delta);
    int r = evals_init(&e, job, FV_FED_KIND_TRAIN, P);
    if (r == 0)
        r = delta != NULL ? fv_mlp_new(&j->arch, &g) : FV_ENOMEM;
    if (r != 0)
        goto out;
    memcpy(fv_mlp_params(g), w->global, P * sizeof(float));
    if ((r = eval_model(j, g, 0, &e)) != 0) {
        fv_diag_set(&w->d, r, "evaluating the global model: %s", fv_strerror(r));
        goto out;
    }
    w->val_loss_sum = e.loss_sum;
    if ((r = fv_mlp_clone(g, &local)) != 0)
        goto out;
    fv_train_cfg_t cfg;
    local_cfg(w, job->local_epochs, &cfg);
    if (job->strategy.kind == FV_STRATEGY_FEDPROX) {
        cfg.optim.prox_ref = w->global;
        cfg.optim.prox_mu = (float)job->strategy.mu;
    }
    fv_train_result_t tr;
    r = fv_train(local, j->x_tr, j->y_tr, j->n_tr, NULL, NULL, 0, &cfg, &tr, &w->d);
    if (r == 0)
        r = encode_update(w, local, delta, &e);
out:
    if (r != 0 && w->d.msg[0] == '\0')
        fv_diag_set(&w->d, r, "local training: %s", fv_strerror(r));
    fv_mlp_free(g);
    fv_mlp_free(local);
    evals_close(&e);
    free(delta);
    return r;
}

/* A distill round: evaluate on the validation rows the student's global parameters, the
 * teacher and, with quantize_int8, the student's int8 quantization (fv_mlp_quantize_int8,
 * what the coordinator ships): histograms [student B][teacher B][int8 B], so the
 * coordinator compares them on the same rows; compute the teacher's logits on the
 * training rows; train the student locally on the labels and those logits
 * (fv_train_distill: alpha * BCE + (1 - alpha) * T^2 * KL); encode the student's update
 * like a training round's (the loss sum is the student's). */
static int work_distill(awork_t *w)
{
    const ajob_t *j = w->j;
    const fv_job_t *job = j->job;
    size_t P = j->s_n_params, n_out = j->arch.n_out;
    fv_mlp_t *teacher = NULL, *g = NULL, *q = NULL, *local = NULL;
    fv_mlp_ws_t *ws = NULL;
    evals_t e;
    float *delta = malloc(P * sizeof *delta);
    float *tl = malloc(j->n_tr * n_out * sizeof *tl);
    int r = evals_init(&e, job, FV_FED_KIND_DISTILL, P);
    if (r == 0)
        r = (delta && tl) ? fv_mlp_new(&j->arch, &teacher) : FV_ENOMEM;
    if (r == 0)
        r = fv_mlp_new(&j->s_arch, &g);
    if (r != 0)
        goto out;
    memcpy(fv_mlp_params(teacher), w->teacher, j->n_params * sizeof(float));
    memcpy(fv_mlp_params(g), w->global, P * sizeof(float));
    if ((r = eval_model(j, g, 0, &e)) != 0) {
        fv_diag_set(&w->d, r, "evaluating the student: %s", fv_strerror(r));
        goto out;
    }
    w->val_loss_sum = e.loss_sum;
    if ((r = eval_model(j, teacher, 1, &e)) != 0) {
        fv_diag_set(&w->d, r, "evaluating the teacher: %s", fv_strerror(r));
        goto out;
    }
    if (job->distill.quantize_int8) {
        if ((r = fv_mlp_quantize_int8(g, &q)) != 0 || (r = eval_model(j, q, 2, &e)) != 0) {
            fv_diag_set(&w->d, r, "evaluating the int8 student: %s", fv_strerror(r));
            goto out;
        }
    }
    size_t chunk = j->n_tr < EVAL_CHUNK_ROWS ? j->n_tr : EVAL_CHUNK_ROWS;
    if ((r = fv_mlp_ws_new(teacher, chunk, &ws)) != 0)
        goto out;
    for (size_t i = 0; i < j->n_tr; i += chunk) {
        size_t n = j->n_tr - i < chunk ? j->n_tr - i : chunk;
        if ((r = fv_mlp_logits(teacher, ws, j->x_tr + i * j->n_feat, n, tl + i * n_out)) != 0) {
            fv_diag_set(&w->d, r, "the teacher's logits: %s", fv_strerror(r));
            goto out;
        }
    }
    if ((r = fv_mlp_clone(g, &local)) != 0)
        goto out;
    fv_train_cfg_t cfg;
    local_cfg(w, job->distill.local_epochs, &cfg);
    fv_distill_cfg_t dc = {.alpha = job->distill.alpha, .temperature = job->distill.temperature};
    fv_train_result_t tr;
    r = fv_train_distill(local, j->x_tr, j->y_tr, tl, j->n_tr, NULL, NULL, 0, &cfg, &dc, &tr,
                         &w->d);
    if (r == 0)
        r = encode_update(w, local, delta, &e);
out:
    if (r != 0 && w->d.msg[0] == '\0')
        fv_diag_set(&w->d, r, "local distillation: %s", fv_strerror(r));
    fv_mlp_ws_free(ws);
    fv_mlp_free(teacher);
    fv_mlp_free(g);
    fv_mlp_free(q);
    fv_mlp_free(local);
    evals_close(&e);
    free(delta), free(tl);
    return r;
}

static void work_run(uv_work_t *req)
{
    awork_t *w = req->data;
    if (w->kind == FV_FED_KIND_STATS) {
        w->dim = w->j->sl.dim;
        w->words = malloc(w->dim * sizeof *w->words);
        w->rc = w->words == NULL ? FV_ENOMEM
                                 : fv_fed_stats_encode(&w->j->sl, w->j->ds, w->j->tr, w->j->n_tr,
                                                       w->words, &w->d);
    } else if (w->kind == FV_FED_KIND_DISTILL) {
        w->rc = work_distill(w);
    } else {
        w->rc = work_train(w);
    }
}

static void work_free(awork_t *w)
{
    if (w->words != NULL)
        sodium_memzero(w->words, w->dim * sizeof *w->words);
    free(w->words);
    free(w->fvec);
    free(w->global);
    free(w->teacher);
    sodium_memzero(w->qkey, sizeof w->qkey);
    free(w);
}

static void try_upload(agent_t *a, ajob_t *j, around_t *r);
static void pump_secagg(agent_t *a, ajob_t *j, around_t *r, const uint8_t *msg, size_t len);

static void round_sit_out(ajob_t *j, around_t *r, const char *event, const char *why)
{
    jlog("warn", event, j, (int64_t)r->round, json_pack("{s:s}", "why", why));
    r->sat_out = true;
    fv_secagg_client_free(r->sa);
    r->sa = NULL;
}

static void work_done(uv_work_t *req, int status)
{
    awork_t *w = req->data;
    agent_t *a = w->a;
    ajob_t *j = w->j;
    around_t *r = w->r;
    j->n_busy--;
    if (j->detached || r == NULL || status != 0) {
        if (j->detached && j->n_busy == 0)
            job_destroy(j);
        work_free(w);
        return;
    }
    r->work = NULL;
    if (w->rc != 0) {
        char clean[FV_DIAG_MAX];
        text_clean(w->d.msg, strlen(w->d.msg), clean, sizeof clean);
        round_sit_out(j, r, "round_failed", clean);
        work_free(w);
        return;
    }
    if (w->kind == FV_FED_KIND_TRAIN || w->kind == FV_FED_KIND_DISTILL)
        jlog("info", w->kind == FV_FED_KIND_TRAIN ? "trained" : "distilled", j, (int64_t)r->round,
             json_pack("{s:I,s:o,s:I,s:I}", "epochs", (json_int_t)w->epochs, "train_loss",
                       isfinite(w->train_loss) ? json_real(w->train_loss) : json_null(),
                       "train_rows", (json_int_t)j->n_tr, "val_rows", (json_int_t)j->n_va));
    else
        jlog(
            "info", "stats_ready", j, (int64_t)r->round,
            json_pack("{s:I,s:I}", "train_rows", (json_int_t)j->n_tr, "words", (json_int_t)w->dim));
    r->words = w->words, w->words = NULL;
    r->fvec = w->fvec, w->fvec = NULL;
    r->dim = w->dim;
    r->ready = true;
    work_free(w);
    if (r->sat_out)
        return;
    if (r->secagg) {
        if (r->sa == NULL || fv_secagg_client_set_input(r->sa, r->words) != 0) {
            round_sit_out(j, r, "round_failed", "the SecAgg client refused the input");
            return;
        }
        if (r->fwd != NULL) {
            uint8_t *fwd = r->fwd;
            size_t len = r->fwd_len;
            r->fwd = NULL;
            pump_secagg(a, j, r, fwd, len);
            free(fwd);
            return; /* pump_secagg tried the upload */
        }
    }
    try_upload(a, j, r);
}

/* ---- SecAgg ------------------------------------------------------------------------- */

static bool round_msg_ok(agent_t *a, fv_conn_t *c, const uint8_t job[32], uint64_t round,
                         const char *what, around_t **ret)
{
    ajob_t *j = a->job;
    if (j == NULL || j->loading || memcmp(job, j->digest, 32) != 0) {
        violation(a, c, j, (int64_t)round, FV_EROUND, "%s for a job this agent has not accepted",
                  what);
        return false;
    }
    if (j->round == NULL || j->round->round != round) {
        /* A round we no longer hold (we reconnected, or it ended): stale, not hostile,
         * as long as it is not from the future. */
        if (j->started && round <= j->last_round) {
            jlog("info", "stale_message", j, (int64_t)round, json_pack("{s:s}", "msg", what));
            *ret = NULL;
            return true;
        }
        violation(a, c, j, (int64_t)round, FV_EROUND,
                  "%s for round %" PRIu64 " which has not started", what, round);
        return false;
    }
    *ret = j->round;
    return true;
}

/* Sends every outbox message as SECAGG, except MASKED, which is kept for UPLOAD_GO. */
static void flush_outbox(agent_t *a, ajob_t *j, around_t *r)
{
    for (size_t i = 0; i < r->ob.n; i++) {
        const fv_secagg_outmsg_t *om = &r->ob.msgs[i];
        if (om->len >= 2 && om->data[1] == FV_SECAGG_MSG_MASKED) {
            if (om->len % 4 != 0) {
                round_sit_out(j, r, "round_failed", "masked message length is not whole words");
                break;
            }
            free(r->masked);
            r->masked_words = om->len / 4;
            r->masked = malloc(r->masked_words * sizeof *r->masked);
            if (r->masked == NULL) {
                round_sit_out(j, r, "round_failed", "out of memory");
                break;
            }
            for (size_t k = 0; k < r->masked_words; k++) {
                const uint8_t *p = om->data + 4 * k;
                r->masked[k] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                               (uint32_t)p[3] << 24;
            }
            continue;
        }
        fv_msg_t m = {.type = FV_MSG_SECAGG};
        memcpy(m.u.secagg.job, j->digest, 32);
        m.u.secagg.round = r->round;
        m.u.secagg.data = om->data;
        m.u.secagg.len = om->len;
        if (send_msg(a, &m) != 0)
            break;
    }
    fv_secagg_outbox_clear(&r->ob);
}

/* Hands one coordinator SecAgg message to the client. */
static void pump_secagg(agent_t *a, ajob_t *j, around_t *r, const uint8_t *msg, size_t len)
{
    fv_diag_t d = {""};
    int rc = fv_secagg_client_handle(r->sa, msg, len, &r->ob, &d);
    if (rc != 0) {
        char clean[FV_DIAG_MAX];
        text_clean(d.msg, strlen(d.msg), clean, sizeof clean);
        if (fv_secagg_client_phase(r->sa) < 0) {
            /* The client aborted: our own rules (policy, signatures, threshold, never
             * both shares) said no. Sit the round out; the connection stays. */
            const char *ev = (rc == FV_EPOLICY || rc == FV_EBOTHSHARES || rc == FV_ETHRESHOLD)
                                 ? "policy_refusal"
                                 : "secagg_abort";
            jlog("warn", ev, j, (int64_t)r->round,
                 json_pack("{s:s,s:s}", "why", clean, "err", fv_err_name(rc)));
            r->sat_out = true;
            fv_secagg_client_free(r->sa);
            r->sa = NULL;
            fv_secagg_outbox_clear(&r->ob);
            return;
        }
        violation(a, a->conn, j, (int64_t)r->round, rc, "SecAgg message rejected: %s", clean);
        return;
    }
    flush_outbox(a, j, r);
    try_upload(a, j, r);
}

static void on_secagg(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    around_t *r;
    if (!round_msg_ok(a, c, m->u.secagg.job, m->u.secagg.round, "SECAGG", &r) || r == NULL)
        return;
    ajob_t *j = a->job;
    if (!r->secagg) {
        violation(a, c, j, (int64_t)r->round, FV_EPROTO, "SECAGG in a job without SecAgg");
        return;
    }
    if (r->sat_out || r->sa == NULL)
        return;
    const uint8_t *p = m->u.secagg.data;
    size_t len = m->u.secagg.len;
    if (len >= 2 && p[1] == FV_SECAGG_MSG_SHARES_FWD && !r->ready) {
        /* The masked input needs our vector: keep the message until the work is done. */
        if (r->fwd != NULL) {
            violation(a, c, j, (int64_t)r->round, FV_EDUP, "a second SHARES_FWD");
            return;
        }
        r->fwd = malloc(len);
        if (r->fwd == NULL) {
            round_sit_out(j, r, "round_failed", "out of memory");
            return;
        }
        memcpy(r->fwd, p, len);
        r->fwd_len = len;
        return;
    }
    pump_secagg(a, j, r, p, len);
}

/* ---- uploads ------------------------------------------------------------------------ */

static void try_upload(agent_t *a, ajob_t *j, around_t *r)
{
    if (r->sat_out || !r->go || r->uploaded || !r->ready || a->conn == NULL)
        return;
    void *vec;
    uint64_t n;
    fv_vec_dtype_t dt;
    const char *name;
    if (r->secagg) {
        if (r->masked == NULL)
            return;
        kill_point("before-masked", r->round);
        vec = r->masked, n = r->masked_words, dt = FV_VEC_U32, name = "masked";
        r->masked = NULL;
    } else if (r->fvec != NULL) {
        vec = r->fvec, n = r->dim, dt = FV_VEC_F32, name = "update";
        r->fvec = NULL;
    } else {
        vec = r->words, n = r->dim, dt = FV_VEC_U32, name = "update";
        r->words = NULL;
    }
    if (a->tx_buf != NULL) {
        jlog("error", "upload_failed", j, (int64_t)r->round,
             json_pack("{s:s}", "why", "a previous vector is still being sent"));
        free(vec);
        r->sat_out = true;
        return;
    }
    r->uploaded = true;
    a->tx_buf = vec;
    a->tx_bytes = n * FV_VEC_ELEM_BYTES;
    a->tx_round = r->round;
    a->tx_job = j;
    snprintf(a->tx_name, sizeof a->tx_name, "%s", name);
    a->up_unacked = true;
    int rc = fv_conn_send_vec(a->conn, (uint32_t)r->round, dt, vec, n, name);
    if (rc != 0) {
        jlog("error", "upload_failed", j, (int64_t)r->round,
             json_pack("{s:s,s:s}", "why", fv_strerror(rc), "err", fv_err_name(rc)));
        free(a->tx_buf);
        a->tx_buf = NULL;
    }
}

static void on_upload_go(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    around_t *r;
    if (!round_msg_ok(a, c, m->u.upload_go.job, m->u.upload_go.round, "UPLOAD_GO", &r) || r == NULL)
        return;
    if (r->go) {
        violation(a, c, a->job, (int64_t)r->round, FV_EDUP, "a second UPLOAD_GO");
        return;
    }
    r->go = true;
    try_upload(a, a->job, r);
}

/* ---- ROUND_START / ROUND_END -------------------------------------------------------- */

static void on_round_start(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    const __typeof__(m->u.round_start) *rs = &m->u.round_start;
    ajob_t *j = a->job;
    int64_t rn = (int64_t)rs->round;
    kill_point("round-start", rs->round);
    if (j == NULL || j->loading || memcmp(rs->job, j->digest, 32) != 0) {
        violation(a, c, j, rn, FV_EROUND, "ROUND_START for a job this agent has not accepted");
        return;
    }
    const fv_job_t *job = j->job;
    if (j->round != NULL) {
        /* A new round means the coordinator gave up on the previous one. */
        jlog("warn", "round_abandoned", j, (int64_t)j->round->round,
             json_pack("{s:s}", "why", "the next round started"));
        round_free(j->round);
        j->round = NULL;
    }
    bool kind_ok = rs->kind == FV_FED_KIND_STATS   ? rs->round == 0
                   : rs->kind == FV_FED_KIND_TRAIN ? rs->round >= 1 && rs->round <= job->rounds
                   : rs->kind == FV_FED_KIND_DISTILL ? job->distill.on && rs->round > job->rounds &&
                                         rs->round <= fv_job_last_round(job)
                                   : false;
    if (!kind_ok) {
        violation(a, c, j, rn, FV_EPROTO,
                  "ROUND_START round %" PRIu64 " kind %" PRIu32 " (the job has %" PRIu32
                  " training rounds and %" PRIu32 " distill rounds; round 0 is the stats "
                  "round, kind 1; then kind 2, then kind 3)",
                  rs->round, rs->kind, job->rounds, job->distill.on ? job->distill.rounds : 0);
        return;
    }
    if (j->started && rs->round < j->last_round) {
        violation(a, c, j, rn, FV_EROUND, "ROUND_START for round %" PRIu64 " after round %" PRIu64,
                  rs->round, j->last_round);
        return;
    }
    if (rs->index >= rs->n || rs->pks_len != (size_t)rs->n * 32 ||
        memcmp(rs->pks + (size_t)rs->index * 32, a->pk, 32) != 0) {
        violation(a, c, j, rn, FV_EPROTO,
                  "ROUND_START: the cohort key at index %" PRIu32 " is not this agent's key",
                  rs->index);
        return;
    }
    if (rs->kind == FV_FED_KIND_DISTILL) {
        if (!j->has_teacher || !j->has_student || !rs->has_model ||
            memcmp(rs->model, j->student_hash, 32) != 0) {
            violation(a, c, j, rn, FV_EPROTO, "ROUND_START: %s",
                      !j->has_teacher   ? "no teacher model was sent before the distill round"
                      : !j->has_student ? "no student model was sent before the distill round"
                                        : "the announced model hash is not the student this "
                                          "agent holds");
            return;
        }
    }
    if (rs->kind == FV_FED_KIND_TRAIN || rs->kind == FV_FED_KIND_DISTILL) {
        if (rs->kind == FV_FED_KIND_TRAIN &&
            (!j->has_global || !rs->has_model || memcmp(rs->model, j->global_hash, 32) != 0)) {
            violation(a, c, j, rn, FV_EPROTO, "ROUND_START: %s",
                      !j->has_global
                          ? "no global model was sent before the round"
                          : "the announced model hash is not the model this agent holds");
            return;
        }
        if (!j->has_features) {
            violation(a, c, j, rn, FV_EPROTO,
                      "ROUND_START: training round before the stats vector was sent");
            return;
        }
        if (rs->n_ref < j->n_tr || rs->n_ref == 0) {
            violation(a, c, j, rn, FV_EPROTO,
                      "ROUND_START: nref %" PRIu64 " is below this agent's %zu training rows",
                      rs->n_ref, j->n_tr);
            return;
        }
    }
    j->started = true;
    j->last_round = rs->round;

    around_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return;
    j->round = r;
    r->round = rs->round;
    r->kind = rs->kind;
    r->index = rs->index;
    r->n = rs->n;
    r->t = rs->t;
    r->k = rs->k;
    r->n_ref = rs->n_ref;
    r->secagg = job->secagg.on;
    fv_secagg_outbox_init(&r->ob);
    jlog("info", "round_start", j, rn,
         json_pack("{s:s,s:I,s:I,s:I,s:I,s:b}", "kind",
                   rs->kind == FV_FED_KIND_STATS ? "stats" : rs->kind == FV_FED_KIND_TRAIN ? "train" : "distill", "index",
                   (json_int_t)rs->index, "n", (json_int_t)rs->n, "t", (json_int_t)rs->t, "k",
                   (json_int_t)rs->k, "secagg", r->secagg));

    /* Local policy first: it is ours, not the coordinator's. */
    char why[512];
    if (a->cfg->min_cohort > 0 && rs->n < a->cfg->min_cohort) {
        snprintf(why, sizeof why, "cohort of %" PRIu32 " agents is below min_cohort %" PRIu32,
                 rs->n, a->cfg->min_cohort);
        round_sit_out(j, r, "policy_refusal", why);
        return;
    }
    if (r->secagg) {
        uint32_t t, k;
        fv_diag_t d = {""};
        int rc = fv_job_secagg_for(job, rs->n, &t, &k, &d);
        if (rc != 0 || t != rs->t || k != rs->k) {
            snprintf(why, sizeof why,
                     "SecAgg t=%" PRIu32 " k=%" PRIu32 " for %" PRIu32 " agents is not what the "
                     "job prescribes%s%s",
                     rs->t, rs->k, rs->n, rc != 0 ? ": " : "", rc != 0 ? d.msg : "");
            round_sit_out(j, r, "policy_refusal", why);
            return;
        }
        fv_fed_layout_t lay = {0};
        if (rs->kind != FV_FED_KIND_STATS)
            fv_fed_round_layout(job, rs->kind,
                                rs->kind == FV_FED_KIND_DISTILL ? j->s_n_params : j->n_params,
                                &lay);
        fv_secagg_params_t p = {.job_id = le64(j->digest),
                                .round = rs->round,
                                .n_clients = rs->n,
                                .threshold = rs->t,
                                .n_neighbors = rs->k,
                                .dim = (uint32_t)(rs->kind == FV_FED_KIND_STATS ? j->sl.dim : lay.dim),
                                .prg = FV_PRG_DEFAULT,
                                .quant_bits = 0,
                                .clip = 0,
                                .identity_pks = rs->pks};
        memcpy(p.graph_seed, rs->gseed, sizeof p.graph_seed);
        fv_secagg_policy_t pol = {.min_cohort = a->cfg->min_cohort,
                                  .min_threshold = a->cfg->min_threshold};
        fv_rand_system(&r->rng);
        rc = fv_secagg_client_new(&p, &pol, rs->index, a->sk, &r->rng, &r->sa, &d);
        if (rc == 0)
            rc = fv_secagg_client_start(r->sa, &r->ob, &d);
        if (rc != 0) {
            char clean[FV_DIAG_MAX];
            text_clean(d.msg, strlen(d.msg), clean, sizeof clean);
            round_sit_out(j, r, rc == FV_EPOLICY ? "policy_refusal" : "round_failed", clean);
            return;
        }
        flush_outbox(a, j, r);
    }

    awork_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        round_sit_out(j, r, "round_failed", "out of memory");
        return;
    }
    w->a = a;
    w->j = j;
    w->r = r;
    w->kind = rs->kind;
    w->round = rs->round;
    w->n_ref = rs->n_ref;
    w->secagg = r->secagg;
    uint8_t seedbuf[16 + FV_NAME_MAX];
    size_t nl = strlen(a->cfg->name);
    for (int i = 0; i < 8; i++) {
        seedbuf[i] = (uint8_t)(job->seed >> (8 * i));
        seedbuf[8 + i] = (uint8_t)(rs->round >> (8 * i));
    }
    memcpy(seedbuf + 16, a->cfg->name, nl > FV_NAME_MAX ? FV_NAME_MAX : nl);
    w->seed = hash_u64(seedbuf, 16 + (nl > FV_NAME_MAX ? FV_NAME_MAX : nl));
    {
        static const char label[] = "fedvault quantize";
        uint8_t msg[sizeof label - 1 + 32 + 8];
        memcpy(msg, label, sizeof label - 1);
        memcpy(msg + sizeof label - 1, rs->job, 32);
        for (int i = 0; i < 8; i++)
            msg[sizeof label - 1 + 32 + i] = (uint8_t)(rs->round >> (8 * i));
        crypto_generichash(w->qkey, sizeof w->qkey, msg, sizeof msg, a->sk, 32);
    }
    if (rs->kind == FV_FED_KIND_TRAIN) {
        w->global = malloc(j->n_params * sizeof *w->global);
        if (w->global != NULL)
            memcpy(w->global, j->global, j->n_params * sizeof *w->global);
    } else if (rs->kind == FV_FED_KIND_DISTILL) {
        w->global = malloc(j->s_n_params * sizeof *w->global);
        w->teacher = malloc(j->n_params * sizeof *w->teacher);
        if (w->global != NULL && w->teacher != NULL) {
            memcpy(w->global, j->student, j->s_n_params * sizeof *w->global);
            memcpy(w->teacher, j->teacher, j->n_params * sizeof *w->teacher);
        }
    }
    if (rs->kind != FV_FED_KIND_STATS && (w->global == NULL || (rs->kind == FV_FED_KIND_DISTILL && w->teacher == NULL))) {
        work_free(w);
        round_sit_out(j, r, "round_failed", "out of memory");
        return;
    }
    w->req.data = w;
    int rc = uv_queue_work(a->loop, &w->req, work_run, work_done);
    if (rc != 0) {
        work_free(w);
        round_sit_out(j, r, "round_failed", "cannot queue the local work");
        return;
    }
    j->n_busy++;
    r->work = w;
}

static void on_round_end(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    ajob_t *j = a->job;
    const __typeof__(m->u.round_end) *re = &m->u.round_end;
    if (j == NULL || j->loading || memcmp(re->job, j->digest, 32) != 0) {
        violation(a, c, j, (int64_t)re->round, FV_EROUND,
                  "ROUND_END for a job this agent has not accepted");
        return;
    }
    if (!j->started || re->round > j->last_round) {
        violation(a, c, j, (int64_t)re->round, FV_EROUND,
                  "ROUND_END for round %" PRIu64 " which has not started", re->round);
        return;
    }
    char reason[FV_WIRE_TEXT_MAX + 1];
    text_clean(re->reason.ptr, re->reason.len, reason, sizeof reason);
    bool took_part = j->round != NULL && j->round->round == re->round && j->round->uploaded;
    if (re->status != 0)
        jlog("warn", "round_end", j, (int64_t)re->round,
             json_pack("{s:i,s:s,s:s,s:b}", "status", (int)re->status, "err",
                       fv_err_name(re->status), "reason", reason, "uploaded", took_part));
    else
        jlog("info", "round_end", j, (int64_t)re->round,
             json_pack("{s:i,s:b}", "status", 0, "uploaded", took_part));
    if (j->round != NULL && j->round->round == re->round) {
        round_free(j->round);
        j->round = NULL;
    }
}

/* ---- vectors from the coordinator --------------------------------------------------- */

static bool name_is(const fv_wire_str_t *s, const char *want)
{
    return s->len == strlen(want) && memcmp(s->ptr, want, s->len) == 0;
}

static void *on_vec_begin(fv_conn_t *c, const fv_msg_t *b)
{
    agent_t *a = fv_conn_get_data(c);
    ajob_t *j = a->job;
    const __typeof__(b->u.vec_begin) *vb = &b->u.vec_begin;
    char name[FV_WIRE_TEXT_MAX + 1];
    text_clean(vb->name.ptr, vb->name.len, name, sizeof name);
    if (j == NULL || j->loading) {
        violation(a, c, NULL, -1, FV_EPROTO, "vector '%s' before any job was accepted", name);
        return NULL;
    }
    free(a->rx_buf);
    a->rx_buf = NULL;
    if (name_is(&vb->name, "model")) {
        if (vb->dtype != FV_VEC_F32 || vb->n_elems != j->n_params || vb->id > j->job->rounds) {
            violation(a, c, j, (int64_t)vb->id, FV_EPROTO,
                      "vector 'model': %" PRIu64 " elements of type %d with id %" PRIu32
                      ", expected %zu float32 with a round id",
                      vb->n_elems, (int)vb->dtype, vb->id, j->n_params);
            return NULL;
        }
        a->rx_kind = RX_MODEL;
    } else if (name_is(&vb->name, "stats")) {
        if (vb->dtype != FV_VEC_U32 || vb->n_elems != j->sl.dim || vb->id != 0) {
            violation(a, c, j, (int64_t)vb->id, FV_EPROTO,
                      "vector 'stats': %" PRIu64 " elements of type %d with id %" PRIu32
                      ", expected %zu uint32 with id 0",
                      vb->n_elems, (int)vb->dtype, vb->id, j->sl.dim);
            return NULL;
        }
        a->rx_kind = RX_STATS;
    } else if (name_is(&vb->name, "teacher") || name_is(&vb->name, "student")) {
        bool t = name_is(&vb->name, "teacher");
        size_t want = t ? j->n_params : j->s_n_params;
        bool id_ok = t ? vb->id == 0
                       : vb->id > j->job->rounds && vb->id <= fv_job_last_round(j->job);
        if (!j->job->distill.on) {
            violation(a, c, j, (int64_t)vb->id, FV_EPROTO,
                      "vector '%s' for a job without a distill section", name);
            return NULL;
        }
        if (vb->dtype != FV_VEC_F32 || vb->n_elems != want || !id_ok) {
            violation(a, c, j, (int64_t)vb->id, FV_EPROTO,
                      "vector '%s': %" PRIu64 " elements of type %d with id %" PRIu32
                      ", expected %zu float32 with %s",
                      name, vb->n_elems, (int)vb->dtype, vb->id, want,
                      t ? "id 0" : "a distill round's id");
            return NULL;
        }
        a->rx_kind = t ? RX_TEACHER : RX_STUDENT;
    } else {
        violation(a, c, j, -1, FV_EPROTO, "unexpected vector '%s'", name);
        return NULL;
    }
    a->rx_buf = malloc(vb->n_elems * FV_VEC_ELEM_BYTES);
    a->rx_job = j;
    if (a->rx_buf == NULL)
        violation(a, c, j, -1, FV_ENOMEM, "no memory for vector '%s'", name);
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
    float *x_tr = malloc(j->n_tr * nf * sizeof *x_tr);
    float *x_va = malloc((j->n_va ? j->n_va : 1) * nf * sizeof *x_va);
    int32_t *y_tr = malloc(j->n_tr * sizeof *y_tr);
    int32_t *y_va = malloc((j->n_va ? j->n_va : 1) * sizeof *y_va);
    if (nf != j->n_feat || !x_tr || !x_va || !y_tr || !y_va) {
        r = nf != j->n_feat ? FV_EINVAL : FV_ENOMEM;
    } else if ((r = fv_preproc_transform(pp, j->ds, j->tr, j->n_tr, x_tr)) == 0 &&
               (r = fv_preproc_transform(pp, j->ds, j->va, j->n_va, x_va)) == 0) {
        fv_dataset_labels(j->ds, j->tr, j->n_tr, y_tr);
        fv_dataset_labels(j->ds, j->va, j->n_va, y_va);
    }
    fv_preproc_free(pp);
    if (r != 0) {
        free(x_tr), free(x_va), free(y_tr), free(y_va);
        snprintf(why, cap, "stats vector: cannot encode the features: %s", fv_strerror(r));
        return r;
    }
    free(j->x_tr), free(j->x_va), free(j->y_tr), free(j->y_va);
    j->x_tr = x_tr, j->x_va = x_va, j->y_tr = y_tr, j->y_va = y_va;
    return 0;
}

static void on_vec(fv_conn_t *c, uint32_t id, void *vec, uint64_t n)
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
        hex32(hash, h);
        jlog("info", t ? "teacher_received" : "student_received", j, id,
             json_pack("{s:s,s:I}", "model", h, "params", (json_int_t)n));
        return;
    }
    if (kind == RX_MODEL) {
        free(j->global);
        j->global = vec;
        j->has_global = true;
        params_hash(j->global, n, j->global_hash);
        char h[65];
        hex32(j->global_hash, h);
        jlog("info", "model_received", j, id,
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
            violation(a, c, j, 0, FV_EPROTO, "a different stats vector while a round runs");
            return;
        }
        jlog("warn", "stats_replaced", j, 0, NULL);
    }
    char why[FV_DIAG_MAX + 64];
    int r = build_features(j, vec, why, sizeof why);
    if (r != 0) {
        free(vec);
        violation(a, c, j, 0, r, "%s", why);
        return;
    }
    free(j->stats_sum);
    j->stats_sum = vec;
    j->has_features = true;
    jlog("info", "stats_received", j, 0,
         json_pack("{s:I,s:I}", "features", (json_int_t)j->n_feat, "words", (json_int_t)n));
}

static void on_vec_sent(fv_conn_t *c, uint32_t id)
{
    agent_t *a = fv_conn_get_data(c);
    if (a->tx_buf == NULL)
        return;
    jlog("info", "uploaded", a->tx_job, (int64_t)a->tx_round,
         json_pack("{s:s,s:I}", "vector", a->tx_name, "bytes", (json_int_t)a->tx_bytes));
    (void)id;
    free(a->tx_buf);
    a->tx_buf = NULL;
    a->tx_job = NULL;
}

/* ---- connection --------------------------------------------------------------------- */

static void agent_stop(agent_t *a, int code)
{
    if (a->stopping)
        return;
    a->stopping = true;
    a->exit_code = code;
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    fv_client_stop(a->client);
}

static void on_job_done(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    ajob_t *j = a->job;
    if (j == NULL || memcmp(m->u.job_done.job, j->digest, 32) != 0) {
        /* The coordinator repeats the end of the last job an agent took part in on each of
         * its connections (it cannot know whether one reached us before a reconnect): the
         * end of a job this agent no longer holds (heard before, or accepted by an earlier
         * run of this daemon) changes nothing here, so it is noted, not a violation. */
        char jh[65];
        hex32(m->u.job_done.job, jh);
        jlog("info", "stale_message", j, -1,
             json_pack("{s:s,s:s}", "type", "job_done", "of_job", jh));
        return;
    }
    char h[65];
    hex32(m->u.job_done.model, h);
    jlog("info", "job_done", j, -1,
         json_pack("{s:I,s:s,s:b}", "rounds", (json_int_t)m->u.job_done.rounds, "model", h,
                   "holds_final_model",
                   j->has_global && memcmp(j->global_hash, m->u.job_done.model, 32) == 0));
    job_release(a, j);
    if (a->cfg->once)
        agent_stop(a, 0);
}

/* RECEIPT: the coordinator's signed account of a round. Kept only if it is about a job
 * this agent accepted, says what the message says (job, round), is a JSON object and
 * verifies under the key of the certificate this TLS session authenticated. */
static void on_receipt(agent_t *a, fv_conn_t *c, const fv_msg_t *m)
{
    const __typeof__(m->u.receipt) *rc = &m->u.receipt;
    const ajob_t *j = a->job != NULL && memcmp(a->job->digest, rc->job, 32) == 0 ? a->job : NULL;
    int64_t rn = rc->round > INT64_MAX ? -1 : (int64_t)rc->round;
    size_t slot = SIZE_MAX;
    for (size_t i = 0; i < a->n_accepted && i < ACCEPTED_JOBS_KEPT; i++)
        if (memcmp(a->accepted[i].digest, rc->job, 32) == 0)
            slot = i;
    if (slot == SIZE_MAX) {
        violation(a, c, j, rn, FV_EROUND, "RECEIPT for a job this agent has not accepted");
        return;
    }
    if (rc->round > a->accepted[slot].rounds) {
        violation(a, c, j, rn, FV_EROUND,
                  "RECEIPT for round %" PRIu64 " of a job whose last round is %" PRIu64, rc->round,
                  a->accepted[slot].rounds);
        return;
    }
    if (rc->body.len == 0 || rc->body.len > FV_WIRE_RECEIPT_MAX) {
        violation(a, c, j, rn, FV_ETOOBIG, "RECEIPT body of %zu bytes (1..%u allowed)",
                  rc->body.len, FV_WIRE_RECEIPT_MAX);
        return;
    }
    const fv_identity_t *peer = fv_conn_peer(c);
    if (peer == NULL || crypto_sign_verify_detached(rc->sig, (const unsigned char *)rc->body.ptr,
                                                    rc->body.len, peer->sign_pk) != 0) {
        violation(a, c, j, rn, FV_EAUTH,
                  "RECEIPT signature does not verify under the coordinator's certificate key");
        return;
    }
    json_error_t je;
    json_t *body = json_loadb(rc->body.ptr, rc->body.len, JSON_REJECT_DUPLICATES, &je);
    char hex[65];
    hex32(rc->job, hex);
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
        violation(a, c, j, rn, FV_EPROTO, "RECEIPT: %s", bad);
        return;
    }
    char sig[sodium_base64_ENCODED_LEN(FV_WIRE_SIG_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(sig, sizeof sig, rc->sig, FV_WIRE_SIG_BYTES, sodium_base64_VARIANT_ORIGINAL);
    json_t *o = json_object(), *text = json_stringn(rc->body.ptr, rc->body.len);
    if (o == NULL || text == NULL) { /* out of memory: audit_append(NULL) fails */
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
    int r = audit_append(a, "round.receipt", o);
    if (r != 0) {
        /* Not kept means not agreed: close; on_close stops the agent. */
        fv_conn_close(c, r, "the agent's audit log cannot be written");
        return;
    }
    jlog("info", "receipt_kept", j, rn, json_pack("{s:I}", "bytes", (json_int_t)rc->body.len));
}

static void on_open(fv_conn_t *c, const fv_identity_t *peer)
{
    agent_t *a = fv_conn_get_data(c);
    a->conn = c;
    a->conn_gen++;
    jlog("info", "connected", NULL, -1,
         json_pack("{s:s,s:s,s:s}", "peer", peer->name, "federation", peer->federation, "addr",
                   fv_conn_peer_addr(c)));
}

static void on_msg(fv_conn_t *c, const fv_msg_t *m)
{
    agent_t *a = fv_conn_get_data(c);
    if (a->stopping)
        return;
    switch (m->type) {
    case FV_MSG_JOB_OFFER:
        on_job_offer(a, c, m);
        break;
    case FV_MSG_ROUND_START:
        on_round_start(a, c, m);
        break;
    case FV_MSG_SECAGG:
        on_secagg(a, c, m);
        break;
    case FV_MSG_UPLOAD_GO:
        on_upload_go(a, c, m);
        break;
    case FV_MSG_ROUND_END:
        on_round_end(a, c, m);
        break;
    case FV_MSG_JOB_DONE:
        on_job_done(a, c, m);
        break;
    case FV_MSG_RECEIPT:
        on_receipt(a, c, m);
        break;
    case FV_MSG_VEC_ACK:
        if (a->up_unacked && strcmp(a->tx_name, "masked") == 0)
            kill_point("after-masked", a->tx_round);
        a->up_unacked = false; /* our upload arrived whole */
        break;
    default:
        violation(a, c, a->job, -1, FV_EPROTO, "unexpected message '%s' from the coordinator",
                  fv_msg_type_name(m->type));
        break;
    }
}

static void on_close(fv_conn_t *c, int err, const char *why)
{
    agent_t *a = fv_conn_get_data(c);
    if (a->conn == c)
        a->conn = NULL;
    free(a->rx_buf);
    a->rx_buf = NULL;
    a->rx_job = NULL;
    a->rx_kind = RX_NONE;
    char clean[512];
    text_clean(why, strlen(why), clean, sizeof clean);
    if (a->up_unacked && !a->stopping)
        /* Cut off before the coordinator acknowledged our upload: say which, so "broken
         * pipe" is not all the operator sees (the coordinator's own reason, when its
         * ERROR frame arrived first, is `why`; else its log has it as upload_refused). */
        jlog("warn", "upload_interrupted", a->tx_job, (int64_t)a->tx_round,
             json_pack("{s:s,s:I,s:s}", "vector", a->tx_name, "bytes", (json_int_t)a->tx_bytes,
                       "why", clean));
    a->up_unacked = false;
    free(a->tx_buf);
    a->tx_buf = NULL;
    a->tx_job = NULL;
    session_close(a, c, err, why);
    jlog(a->audit_failed           ? "error"
         : err == 0 || a->stopping ? "info"
                                   : "warn",
         "disconnected", a->job, -1,
         json_pack("{s:s,s:s,s:b}", "why", clean, "err", fv_err_name(err), "reconnecting",
                   !a->stopping && !a->audit_failed));
    if (a->audit_failed) {
        /* A bank's rule: nothing leaves unrecorded. Stop rather than reconnect. */
        agent_stop(a, 1);
        a->exit_code = 1;
    }
    /* A round cannot survive the connection: the coordinator counts us as dropped. The
     * job (data, model, preprocessing) stays for the re-offer. */
    if (a->job != NULL) {
        round_free(a->job->round);
        a->job->round = NULL;
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    agent_t *a = h->data;
    jlog("info", "stopping", NULL, -1, json_pack("{s:i}", "signal", signum));
    agent_stop(a, 0);
}

int fv__agent_run(const fv_agent_cfg_t *cfg)
{
    agent_t a;
    memset(&a, 0, sizeof a);
    a.cfg = cfg;
    int rc = 1;
    fv_diag_t d = {""};
    if (sodium_init() < 0 || fv_crypto_init() != 0) {
        fv__agent_log("error", "startup_failed", NULL, NULL, -1,
                      json_pack("{s:s}", "why", "cannot initialise libsodium"));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    test_hooks_init();
    fv_blas_set_threads((int)cfg->threads);
    fv_tls_opts_t to = {
        .ca_file = cfg->ca, .cert_file = cfg->cert, .key_file = cfg->key, .crl_file = cfg->crl};
    if (fv_tls_ctx_new(false, &to, &a.ctx, &d) != 0) {
        fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", d.msg));
        return 1;
    }
    const fv_identity_t *me = fv_tls_ctx_identity(a.ctx);
    a.sk = sodium_malloc(FV_SIGN_SK_BYTES);
    if (a.sk == NULL) {
        fv__agent_log("error", "startup_failed", NULL, NULL, -1,
                      json_pack("{s:s}", "why", "out of memory"));
        goto out;
    }
    if (fv_tls_load_sign_key(cfg->key, a.sk, &d) != 0) {
        fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", d.msg));
        goto out;
    }
    memcpy(a.pk, a.sk + 32, 32); /* libsodium's sk is seed || public key */
    char why[1024];
    if (me->role != FV_ROLE_AGENT || strcmp(me->name, cfg->name) != 0 ||
        strcmp(me->federation, cfg->federation) != 0 || memcmp(me->sign_pk, a.pk, 32) != 0) {
        snprintf(why, sizeof why,
                 "%s: the certificate %s is for %s '%s' of federation '%s'; the config says "
                 "agent '%s' of '%s' (or the key does not match)",
                 cfg->config_path, cfg->cert, fv_role_name(me->role), me->name, me->federation,
                 cfg->name, cfg->federation);
        fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", why));
        goto out;
    }
    a.name_hash = hash_u64(cfg->name, strlen(cfg->name));
    d.msg[0] = '\0';
    int r = mkdir_parents(cfg->audit_log);
    if (r == 0)
        r = fv_audit_open(cfg->audit_log, cfg->audit_head, a.sk, cfg->name, &a.audit, &d);
    if (r != 0) {
        if (d.msg[0] != '\0')
            snprintf(why, sizeof why,
                     "%s (the agent's audit log: \"audit_log\" in %s or --audit-log)", d.msg,
                     cfg->config_path);
        else
            snprintf(why, sizeof why, "audit log %s: %s (\"audit_log\" in %s or --audit-log)",
                     cfg->audit_log, fv_strerror(r), cfg->config_path);
        fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", why));
        goto out;
    }
    {
        char coord[300], pkh[65];
        snprintf(coord, sizeof coord, "%s:%d", cfg->host, cfg->port);
        hex32(a.pk, pkh);
        if (audit_append(&a, "agent.started",
                         json_pack("{s:s,s:s,s:s,s:s,s:s}", "version", FV_VERSION, "federation",
                                   cfg->federation, "coordinator", coord, "pk", pkh, "serial",
                                   me->serial_hex)) != 0)
            goto out; /* audit_failed logged it */
    }

    a.loop = uv_default_loop();
    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sigterm);
    a.sigint.data = a.sigterm.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);

    fv_net_opts_t net;
    fv_net_opts_default(&net);
    net.allowed_roles = FV_ROLE_BIT(FV_ROLE_COORDINATOR);
    fv_client_opts_t copts;
    fv_client_opts_default(&copts);
    copts.reconnect = true;
    fv_conn_cbs_t cbs = {.on_open = on_open,
                         .on_msg = on_msg,
                         .on_vec_begin = on_vec_begin,
                         .on_vec = on_vec,
                         .on_vec_sent = on_vec_sent,
                         .on_send = on_send,
                         .on_close = on_close};
    fv__agent_log("info", "starting", NULL, NULL, -1,
                  json_pack("{s:s,s:s,s:s,s:i,s:s,s:I,s:I,s:b}", "name", cfg->name, "federation",
                            cfg->federation, "coordinator", cfg->host, "port", cfg->port, "data",
                            cfg->data, "min_cohort", (json_int_t)cfg->min_cohort, "min_threshold",
                            (json_int_t)cfg->min_threshold, "once", cfg->once));
    r = fv_client_start(a.loop, a.ctx, cfg->host, cfg->port, &net, &copts, &cbs, &a, &a.client);
    if (r != 0) {
        snprintf(why, sizeof why, "cannot connect to %s:%d: %s", cfg->host, cfg->port,
                 fv_strerror(r));
        fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", why));
        uv_close((uv_handle_t *)&a.sigint, NULL);
        uv_close((uv_handle_t *)&a.sigterm, NULL);
        uv_run(a.loop, UV_RUN_DEFAULT);
        uv_loop_close(a.loop);
        goto out;
    }
    uv_run(a.loop, UV_RUN_DEFAULT);
    job_release(&a, a.job);
    free(a.rx_buf);
    free(a.tx_buf);
    r = uv_loop_close(a.loop);
    if (r != 0) {
        fv__agent_log("error", "shutdown_unclean", NULL, NULL, -1,
                      json_pack("{s:s}", "why", "handles left open at exit"));
        rc = 1;
    } else {
        rc = a.exit_code;
    }
    if (a.audit_failed)
        rc = 1;
    else if (audit_append(&a, "agent.stopped", json_pack("{s:i}", "exit", rc)) != 0)
        rc = 1;
    fv__agent_log("info", "stopped", NULL, NULL, -1,
                  json_pack("{s:i,s:s,s:I,s:f,s:f}", "exit", rc, "audit_log", cfg->audit_log,
                            "audit_records", (json_int_t)a.audit_n, "audit_append_ms_mean",
                            a.audit_n ? (double)a.audit_ns_sum / (double)a.audit_n / 1e6 : 0.0,
                            "audit_append_ms_max", (double)a.audit_ns_max / 1e6));
out:
    fv_audit_close(a.audit);
    if (a.sk != NULL) {
        sodium_memzero(a.sk, FV_SIGN_SK_BYTES);
        sodium_free(a.sk);
    }
    fv_tls_ctx_free(a.ctx);
    return rc;
}
