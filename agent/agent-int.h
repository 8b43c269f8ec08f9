/* agent-int.h - the agent's folder-private header: what agent_main.c (command line,
 * configuration) hands to the daemon, the state the daemon's files share, and the calls
 * between them (agent.c's note has the map of the files).
 *
 * Ownership: the agent owns the job, the job owns the round; vectors being received
 * belong to the agent until on_vec/on_close; a vector being sent is handed to the agent
 * (tx_buf) and freed at on_vec_sent/on_close, so a round may end while its upload drains.
 * Threads: all of it belongs to the loop thread, except what the thread pool's work may
 * read while it runs (agent_job.c's job_load_run, agent_round.c's work_run).
 */
#ifndef FV_AGENT_INT_H
#define FV_AGENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "fv_audit.h"
#include "fv_conn.h"
#include "fv_dataset.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_mlp.h"
#include "fv_privacy.h"
#include "fv_round.h"
#include "fv_secagg.h"
#include "fv_tls.h"
#include "fv_trust.h"
#include "fv_wire.h"

#define FV_AGENT_MAX_ACCEPT_JOBS 256
#define FV_AGENT_ACCEPTED_JOBS_KEPT 16
#define FV_AGENT_MAX_CRL_AGE_S 2592000 /* policy.max_crl_age_s default: 30 days */
#define FV_AGENT_MAX_PINS 64           /* --pin SHA256, repeatable */

/* Every path is absolute or relative to the working directory (agent_main.c resolves
 * the config's paths against the config file's directory). Strings are owned by the
 * caller and outlive fv__agent_run. */
typedef struct fv_agent_cfg {
    const char *config_path;
    const char *federation; /* from the config: checked against our certificate */
    const char *name;
    const char *host;
    int port;
    const char *ca, *cert, *key, *crl; /* crl may be NULL */
    const char *data;
    const char *audit_log;  /* the agent's signed audit log (agent_audit.c, "AUDIT") */
    const char *audit_head; /* its head file: audit_log + ".head" */
    const char *accept_jobs[FV_AGENT_MAX_ACCEPT_JOBS]; /* empty: any job name */
    size_t n_accept_jobs;
    uint32_t min_cohort;    /* 0: no minimum beyond the protocol's */
    uint32_t min_threshold; /* 0: no minimum beyond the protocol's */
    /* policy.require_secure_aggregation (default true): a job without SecAgg is refused,
     * so statistics, updates and metrics leave only as masked inputs to a sum. */
    bool require_secagg;
    /* policy.disclose_rows (default false): JOB_ACCEPT's row count is the data file's
     * (else 0: withheld). */
    bool disclose_rows;
    /* policy.schema_discovery {allow (default false), min_count (default 10)}: answer a
     * SCHEMA_QUERY with this bank's vocabulary of the open columns, values held by fewer
     * than min_count rows suppressed (agent_schema.c) */
    bool schema_allow;
    uint32_t schema_min_count;
    int64_t max_crl_age_s; /* SecAgg jobs: the newest CRL held is at most this old */
    bool once;
    size_t threads; /* local training threads (fv_train_cfg_t.threads); OpenBLAS runs at 1 */
    /* releases (agent_release.c): the local model directory (NULL: releases ignored),
     * the operator's pinned model SHA-256s (64 lowercase hex), --fetch-releases */
    const char *model_dir;
    const char *pins[FV_AGENT_MAX_PINS];
    size_t n_pins;
    bool fetch_releases;
    /* differential privacy (agent_privacy.c): policy.privacy {epsilon_max (0: no limit),
     * delta, required, allow_outside_budget (FV_PRIV_REL_* bits)} and the ledger file */
    double priv_epsilon_max, priv_delta;
    bool priv_required;
    uint32_t priv_allow_outside;
    const char *privacy_ledger;
} fv_agent_cfg_t;

/* Runs the daemon until --once is satisfied or a signal stops it. Returns the process
 * exit status (0 ok, 1 failure). */
int fv__agent_run(const fv_agent_cfg_t *cfg);

/* In agent_main.c. One JSON line on stderr: {"ts","level","event",...extra}. extra (an
 * object, may be NULL) is consumed. job_hex / job_name may be NULL; round < 0 means none. */
void fv__agent_log(const char *level, const char *event, const char *job_hex, const char *job_name,
                   int64_t round, json_t *extra);

typedef struct agent agent_t;
typedef struct ajob ajob_t;
typedef struct around around_t;
typedef struct awork awork_t;
typedef struct arel arel_t;

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
    fv_preproc_t *pp;    /* the preprocessing x_tr, x_va came from (the explain round) */
    around_t *round;     /* the round in progress, or NULL */
    uint64_t last_round; /* highest round started (valid when started) */
    bool started;
    bool loading;          /* data being loaded on the thread pool */
    uint64_t offered_conn; /* connection (a->conn_gen) that offered it last */
    uv_work_t load_req;
    int load_rc;
    char load_reason[FV_DIAG_MAX + 256];
    char load_wire[FV_WIRE_TEXT_MAX + 1]; /* the refusal's sentence for the coordinator */
    fv_refuse_category_t load_cat;        /* and its category (agent_refuse.c) */
    unsigned n_busy;                      /* work items reading this job */
    bool detached; /* no longer the agent's job: freed when n_busy drops to 0 */
    /* the job's privacy plan for this agent's training rows (n_ref 0: what it charged;
     * plan.on false without a "privacy" section), computed by the load */
    fv_privacy_plan_t priv;
};

/* One round in progress: the machine (protocols/fv_round.h, fv_around_t) and the compute
 * it handed out, if one runs (agent_round.c). */
struct around {
    fv_around_t *m;
    awork_t *work; /* in flight, or NULL */
};

/* A round's compute on the thread pool: touches only its fv_round_work_t and the job's
 * read-only data. */
struct awork {
    uv_work_t req;
    agent_t *a;
    ajob_t *j;
    around_t *r;        /* NULL once the round is gone */
    fv_round_work_t *w; /* the machine's work item, ours until handed back */
    const char *hold;   /* tests (FV_TEST_HOLD_COMPUTE): wait for this file first, or NULL */
    char hold_path[512];
};

struct agent {
    const fv_agent_cfg_t *cfg;
    const fv_round_kinds_t *kinds; /* the round kinds (fv_round_kinds_default) */
    uv_loop_t *loop;
    fv_tls_ctx_t *ctx;
    fv_client_t *client;
    fv_conn_t *conn;   /* open connection, or NULL */
    uint8_t *sk;       /* sodium_malloc'd identity key (64 bytes) */
    fv_trust_t *trust; /* the CA and the newest CRL held: cohort checks (agent_cohort.c) */
    bool refused_on;   /* the job below was refused for its cohort: its messages are ignored */
    uint8_t refused_job[32];
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
    /* the audit log ("AUDIT" in agent_audit.c) */
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
    } accepted[FV_AGENT_ACCEPTED_JOBS_KEPT];
    size_t n_accepted;
    arel_t *rel; /* releases (agent_release.c) */
};

/* ---- agent.c ------------------------------------------------------------------------ */

void fv__agent_hex32(const uint8_t b[32], char out[65]);
/* Creates the missing directories above path, mode 0700 (agent.c). 0 or -errno. */
int fv__agent_mkdir_parents(const char *path);
uint64_t fv__agent_le64(const uint8_t *p);
uint64_t fv__agent_hash_u64(const void *buf, size_t len);
void fv__agent_text_clean(const char *s, size_t len, char *out, size_t cap);
/* fv__agent_log with the job's id and name (j may be NULL). */
void fv__agent_log_job(const char *level, const char *event, const ajob_t *j, int64_t round,
                       json_t *extra);
void fv__agent_kill_point(const char *point, uint64_t round);
void fv__agent_stop(agent_t *a, int code);

/* ---- agent_conn.c: the connection, vectors from the coordinator, violations -------- */

void fv__agent_violation(agent_t *a, fv_conn_t *c, const ajob_t *j, int64_t round, int err,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));
int fv__agent_send_msg(agent_t *a, const fv_msg_t *m);
void fv__agent_on_open(fv_conn_t *c, const fv_identity_t *peer);
void fv__agent_on_msg(fv_conn_t *c, const fv_msg_t *m);
void fv__agent_on_close(fv_conn_t *c, int err, const char *why);
void *fv__agent_on_vec_begin(fv_conn_t *c, const fv_msg_t *b);
void fv__agent_on_vec(fv_conn_t *c, uint32_t id, void *vec, uint64_t n);
void fv__agent_on_vec_sent(fv_conn_t *c, uint32_t id);

/* ---- agent_job.c: JOB_OFFER, JOB_DONE, a job's lifetime ---------------------------- */

void fv__agent_job_destroy(ajob_t *j);
void fv__agent_job_release(agent_t *a, ajob_t *j);
void fv__agent_on_job_offer(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
void fv__agent_on_job_done(agent_t *a, fv_conn_t *c, const fv_msg_t *m);

/* ---- agent_round.c: ROUND_START, SECAGG, UPLOAD_GO, ROUND_END; the compute ------------ */

void fv__agent_round_free(around_t *r);
void fv__agent_on_round_start(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
void fv__agent_on_secagg(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
void fv__agent_on_upload_go(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
void fv__agent_on_round_end(agent_t *a, fv_conn_t *c, const fv_msg_t *m);

/* ---- agent_cohort.c: the CRL of JOB_OFFER, the certified cohort of ROUND_START ----- */

/* JOB_OFFER: takes the offer's CRL; for a SecAgg job (job: the parsed spec) the newest
 * CRL held must be fresh. Non-zero: the job was refused (JOB_REFUSE sent, logged,
 * audited); the caller drops it. */
int fv__agent_cohort_offer(agent_t *a, const fv_msg_t *m, const fv_job_t *job);
/* ROUND_START of a SecAgg job, before fv_around_check: every member certified. Non-zero:
 * the job was refused and released (a->job is NULL). */
int fv__agent_cohort_check(agent_t *a, fv_conn_t *c, ajob_t *j, const fv_msg_t *m);
/* A round message for the job refused for its cohort: ignored (logged stale). */
bool fv__agent_cohort_refused(agent_t *a, const fv_msg_t *m);

/* ---- agent_refuse.c: a refusal's category and the sentence the coordinator gets ------ */

/* The spec of a JOB_OFFER did not parse (err, the parser's sentence). */
fv_refuse_category_t fv__agent_spec_category(int err, const char *msg);
/* A cohort rule of agent_cohort.c ("crl_stale", "member_role", ...). */
fv_refuse_category_t fv__agent_cohort_rule_category(const char *rule);
/* Loading the data against the job's schema failed (err, msg: the full local sentence):
 * the category, and in wire (cap bytes) a sentence naming at most a schema column. */
fv_refuse_category_t fv__agent_load_refusal(const fv_schema_t *schema, int err, const char *msg,
                                            char *wire, size_t cap);

/* ---- agent_audit.c: the audit log, the send tap, RECEIPT --------------------------- */

int fv__agent_audit_append(agent_t *a, const char *event, json_t *details);
void fv__agent_session_close(agent_t *a, fv_conn_t *c, int err, const char *why);
int fv__agent_on_send(fv_conn_t *c, const fv_msg_t *m, const uint8_t *body, size_t len);
void fv__agent_on_receipt(agent_t *a, fv_conn_t *c, const fv_msg_t *m);

/* ---- agent_schema.c: SCHEMA_QUERY (federated schema discovery) ------------------ */

void fv__agent_on_schema_query(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
/* Whether an offered job's schema is still open (the offer is then refused). */
bool fv__agent_schema_offer_open(const fv_job_t *job);

/* ---- agent_privacy.c: policy.privacy, the ledger, the budget at JOB_OFFER ---------- */

/* policy.privacy (pol may be NULL: the defaults) into c; nonzero with msg on a bad value. */
int fv__agent_cfg_privacy(json_t *pol, const char *path, fv_agent_cfg_t *c, char *msg, size_t cap);
/* The policy's words on an offered job (before its data is loaded): 0 go on, 1 refused
 * (reason: the sentence, for the log and the coordinator; audited), -1 the audit failed
 * (stop the agent). */
int fv__agent_privacy_offer(agent_t *a, const fv_job_t *job, const char *hex, char *reason,
                            size_t cap);
/* The ledger after the load (j->priv computed): 0 accept (charged now, fsynced and
 * audited, or charged before), 1 refuse (reason for the log, wire for the coordinator;
 * category POLICY), -1 the audit failed (stop the agent). */
int fv__agent_privacy_charge(agent_t *a, ajob_t *j, char *reason, size_t cap, char *wire,
                             size_t wire_cap);
/* --privacy-ledger [--json]: prints the ledger on stdout; the exit status. */
int fv__agent_privacy_print(const fv_agent_cfg_t *c, bool as_json);

/* ---- agent_release.c: RELEASE, FILE_CHUNK, the model directory ------------------- */

/* The shas of the kept receipts and the jobs accepted before, from the audit log. */
int fv__agent_release_init(agent_t *a, fv_diag_t *d);
void fv__agent_release_close(agent_t *a);
/* A receipt was kept: its model shas join the set. */
void fv__agent_release_receipt(agent_t *a, const char *body, size_t len);
/* Whether the audit log shows a JOB_ACCEPT for job (an earlier run of this agent). */
bool fv__agent_release_job_accepted(const agent_t *a, const uint8_t job[32]);
void fv__agent_on_release(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
void fv__agent_on_release_sync(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
void fv__agent_on_file_chunk(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
void fv__agent_on_fetch_fail(agent_t *a, fv_conn_t *c, const fv_msg_t *m);
/* The connection closed: pending releases and a partial transfer are dropped. */
void fv__agent_release_session_end(agent_t *a);

#endif
