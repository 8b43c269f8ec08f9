/* agent.c - the fedvault agent daemon: one libuv loop, one outbound TLS connection to the
 * coordinator, local training on the thread pool, the SecAgg client. This file starts it
 * (libsodium, the TLS identity, the audit log, signals, the client and its callbacks
 * table), stops it, and holds what every part uses: hex, text cleaning, the job's log
 * line, and the dropout tests' kill points.
 *
 * The parts, one concern each; agent-int.h holds the state they share and the calls
 * between them. Each file's note says how this side plays the messages it handles
 * (protocols/fv_wire.h, "ROUNDS"):
 *   agent_conn.c   the connection: on_open, on_msg (one case per message type, handed to
 *                  the files below), on_close; the vectors the coordinator sends
 *                  ("model", "stats", "teacher", "student"); violations.
 *   agent_job.c    JOB_OFFER (policy; the data loaded on the thread pool; JOB_ACCEPT or
 *                  JOB_REFUSE), JOB_DONE, a job's lifetime.
 *   agent_round.c  ROUND_START, SECAGG, UPLOAD_GO and the upload, ROUND_END: the shell
 *                  around the round machine (protocols/round_agent.c, which holds the
 *                  checks, the policy and the SecAgg client); the kind's compute
 *                  (protocols/round_kinds.c: stats, evaluation, training, distillation,
 *                  the encoded update) queued on the thread pool and handed back.
 *   agent_cohort.c the agent's own trust in its cohort: the CRL a JOB_OFFER carries
 *                  (verified against the kit's CA) and the certificates of a SecAgg
 *                  ROUND_START (every member verified before anything is masked); a
 *                  violation refuses the whole job.
 *   agent_audit.c  the agent's signed audit log ("AUDIT"): the send tap, sessions,
 *                  RECEIPT.
 *   agent_release.c signed model releases: RELEASE checked (CA, then the bank's own
 *                  receipts or pins), FETCH, FILE_CHUNK, the local model directory,
 *                  --fetch-releases.
 *   agent_privacy.c differential privacy: policy.privacy, the privacy ledger, the budget
 *                  checked and charged at JOB_OFFER (after the load), --privacy-ledger.
 *
 * Threads: everything runs on the loop thread except job_load_run (agent_job.c) and
 * work_run (agent_round.c: a round kind's compute), both through uv_queue_work; their
 * notes say what each may touch. A job or round that goes away while its work runs is detached
 * (job->n_busy, round->work) and freed by the after-work callback.
 *
 * Log events (one JSON line each on stderr, with job = the 64-hex job id, job_name and
 * round where they apply): starting, connected, disconnected {why, err, reconnecting},
 * job_accepted {data_sha256, rows, train_rows, val_rows, params, model (the job's
 *   architecture), secagg, global_sha256 (the global model already held, if any)},
 * job_refused {category, reason, sent (what the coordinator got)}, cohort_refused {rule,
 * member, member_name, reason}, crl_taken {issued, revoked}, job_id_mismatch {offered, canonical},
 * policy_refusal {why}, model_received {model, params}, stats_received, stats_replaced, round_start
 * {kind, index, n, t, k, secagg}, stats_ready, trained / distilled {epochs, train_loss, train_rows,
 * val_rows, update_norm (||w delta||_2 before the max_update_norm clip), clipped}, uploaded
 * {vector, bytes}, round_end {status, err, reason, uploaded}, round_failed / secagg_abort /
 * round_abandoned {why}, stale_message, violation {why, err, peer}, upload_failed, send_failed,
 * job_dropped, job_done {rounds, model, holds_final_model}, receipt_kept {bytes}, audit_failed
 * {path, record, err, why, action}, stopping, stopped {exit, audit_log, audit_records,
 * audit_append_ms_mean, audit_append_ms_max}; agent_release.c adds release_sync, release_accepted,
 * release_refused {sha256, label, release, why}, release_present, release_installed,
 * release_ignored, releases_synced; agent_privacy.c adds privacy_spent {epsilon, delta,
 * total_epsilon, epsilon_max}, privacy_already_charged {epsilon, total_epsilon} and
 * policy_refusal {rule, why}; agent_main.c adds startup_failed.
 *
 * Stop: a signal, JOB_DONE with --once, the end of the sync with --fetch-releases, or a failed
 * audit append (exit 1, no reconnect) calls fv__agent_stop, which closes the signal handles and the
 * client; the loop then runs empty and fv__agent_run frees what is left and, unless the log failed,
 * writes agent.stopped.
 *
 * Ownership: the agent (a stack object here) owns the job, the job owns the round
 * (agent-int.h). Secrets: the identity key lives in sodium_malloc'd memory, wiped and
 * freed at exit; it is never logged. Logs never hold data rows, labels or update values.
 */
#include "agent-int.h"

#include <errno.h>
#include <signal.h>
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
#include "fv_tls.h"

/* ---- helpers ------------------------------------------------------------------------ */

void fv__agent_hex32(const uint8_t b[32], char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[64] = '\0';
}

uint64_t fv__agent_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t fv__agent_hash_u64(const void *buf, size_t len)
{
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, buf, len);
    return fv__agent_le64(h);
}

/* Copies s into out[cap] as valid, printable UTF-8 (control bytes and invalid
 * sequences become '?'), cut at a character boundary to at most cap - 1 bytes. Safe for
 * JSON logs and for the wire's text fields. */
void fv__agent_text_clean(const char *s, size_t len, char *out, size_t cap)
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

void fv__agent_log_job(const char *level, const char *event, const ajob_t *j, int64_t round,
                       json_t *extra)
{
    fv__agent_log(level, event, j != NULL ? j->hex : NULL, j != NULL ? j->job->name : NULL, round,
                  extra);
}

/* ---- test hooks --------------------------------------------------------------------- */

/* Fault injection for the dropout tests (tests/integration/fed_dropout.py): with
 * FV_TEST_KILL_AT=POINT:ROUND in the environment the agent SIGKILLs itself when it
 * reaches POINT in round ROUND, so a dropout lands at the same protocol point on every
 * machine and build, not at a time. Points: round-start (ROUND_START received: nothing
 * sent for the round), before-masked (SecAgg keys advertised and shares sent, the masked
 * input about to be uploaded), mid-masked (the masked upload's VEC_BEGIN queued, its
 * first chunk about to be), after-masked (the coordinator acknowledged the whole masked
 * input: the agent is in the sum, its mask seeds must be recovered from the others);
 * privacy-audited (round 0: a job's privacy spend audited, the ledger not yet written:
 * agent_privacy.c, tests/integration/fed_privacy.py). */
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

void fv__agent_kill_point(const char *point, uint64_t round)
{
    if (g_kill_point == NULL || round != g_kill_round || strcmp(point, g_kill_point) != 0)
        return;
    fv__agent_log("warn", "test_kill", NULL, NULL, (int64_t)round,
                  json_pack("{s:s}", "point", point));
    raise(SIGKILL);
}

/* ---- start and stop ----------------------------------------------------------------- */

/* Creates the missing directories above path (mode 0700; existing ones untouched): the
 * audit log's and the privacy ledger's (agent_privacy.c). */
int fv__agent_mkdir_parents(const char *path)
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

void fv__agent_stop(agent_t *a, int code)
{
    if (a->stopping)
        return;
    a->stopping = true;
    a->exit_code = code;
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    fv_client_stop(a->client);
}

static void on_signal(uv_signal_t *h, int signum)
{
    agent_t *a = h->data;
    fv__agent_log_job("info", "stopping", NULL, -1, json_pack("{s:i}", "signal", signum));
    fv__agent_stop(a, 0);
}

int fv__agent_run(const fv_agent_cfg_t *cfg)
{
    agent_t a;
    memset(&a, 0, sizeof a);
    a.cfg = cfg;
    a.kinds = fv_round_kinds_default();
    int rc = 1;
    fv_diag_t d = {""};
    if (sodium_init() < 0 || fv_crypto_init() != 0) {
        fv__agent_log("error", "startup_failed", NULL, NULL, -1,
                      json_pack("{s:s}", "why", "cannot initialise libsodium"));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    test_hooks_init();
    /* --threads is data-parallel training (fv_train.h's threads, through the round work);
     * OpenBLAS' own threads busy-wait, which on shared busy cores slows training down. */
    fv_blas_set_threads(1);
    fv_tls_opts_t to = {
        .ca_file = cfg->ca, .cert_file = cfg->cert, .key_file = cfg->key, .crl_file = cfg->crl};
    if (fv_tls_ctx_new(false, &to, &a.ctx, &d) != 0) {
        fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", d.msg));
        return 1;
    }
    const fv_identity_t *me = fv_tls_ctx_identity(a.ctx);
    /* our own check of the cohorts we mask with (agent_cohort.c): the kit's CA and, if
     * configured, a first CRL; newer ones come with the job offers */
    if (fv_trust_new(cfg->ca, cfg->crl, &a.trust, &d) != 0) {
        fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", d.msg));
        goto out;
    }
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
    a.name_hash = fv__agent_hash_u64(cfg->name, strlen(cfg->name));
    d.msg[0] = '\0';
    int r = fv__agent_mkdir_parents(cfg->audit_log);
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
    if (fv__agent_release_init(&a, &d) != 0) {
        fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", d.msg));
        goto out;
    }
    {
        char coord[300], pkh[65];
        snprintf(coord, sizeof coord, "%s:%d", cfg->host, cfg->port);
        fv__agent_hex32(a.pk, pkh);
        if (fv__agent_audit_append(&a, "agent.started",
                                   json_pack("{s:s,s:s,s:s,s:s,s:s}", "version", FV_VERSION,
                                             "federation", cfg->federation, "coordinator", coord,
                                             "pk", pkh, "serial", me->serial_hex)) != 0)
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
    fv_conn_cbs_t cbs = {.on_open = fv__agent_on_open,
                         .on_msg = fv__agent_on_msg,
                         .on_vec_begin = fv__agent_on_vec_begin,
                         .on_vec = fv__agent_on_vec,
                         .on_vec_sent = fv__agent_on_vec_sent,
                         .on_send = fv__agent_on_send,
                         .on_close = fv__agent_on_close};
    fv__agent_log(
        "info", "starting", NULL, NULL, -1,
        json_pack("{s:s,s:s,s:s,s:i,s:s,s:I,s:I,s:b,s:b,s:b}", "name", cfg->name, "federation",
                  cfg->federation, "coordinator", cfg->host, "port", cfg->port, "data",
                  cfg->data != NULL ? cfg->data : "", "min_cohort", (json_int_t)cfg->min_cohort,
                  "min_threshold", (json_int_t)cfg->min_threshold, "require_secure_aggregation",
                  cfg->require_secagg, "disclose_rows", cfg->disclose_rows, "once", cfg->once));
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
    fv__agent_job_release(&a, a.job);
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
    else if (fv__agent_audit_append(&a, "agent.stopped", json_pack("{s:i}", "exit", rc)) != 0)
        rc = 1;
    fv__agent_log("info", "stopped", NULL, NULL, -1,
                  json_pack("{s:i,s:s,s:I,s:f,s:f}", "exit", rc, "audit_log", cfg->audit_log,
                            "audit_records", (json_int_t)a.audit_n, "audit_append_ms_mean",
                            a.audit_n ? (double)a.audit_ns_sum / (double)a.audit_n / 1e6 : 0.0,
                            "audit_append_ms_max", (double)a.audit_ns_max / 1e6));
out:
    fv__agent_release_close(&a);
    fv_audit_close(a.audit);
    if (a.sk != NULL) {
        sodium_memzero(a.sk, FV_SIGN_SK_BYTES);
        sodium_free(a.sk);
    }
    fv_tls_ctx_free(a.ctx);
    fv_trust_free(a.trust);
    return rc;
}
