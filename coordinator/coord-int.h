/* coord-int.h - the coordinator daemon's shared state, private to fedvault-coordinator.
 *
 * The daemon's files, one concern each: coord_main.c (options, config, start and stop,
 * signals, the housekeeping timer), coord_log.c (log lines, audit records, state
 * transactions, test faults), coord_outq.c (each agent's outgoing FIFO), coord_conn.c
 * (the agent port's connections), coord_job.c (the job scheduler), coord_round.c (the
 * round driver: the I/O shell of protocols' round machine, fv_cround_*), coord_finish.c
 * (the round's end and its work on the thread pool), coord_distill.c
 * (distillation and its report), coord_model.c (model files), coord_admin.c (the admin port, mutual
 * TLS with admin certificates only, and the metrics endpoint), coord_loopstat.c (the thread CPU
 * time of the loop's callbacks), coord_bench.c (benching members that stay silent), coord_release.c
 * (signed model releases: the admin command, RELEASE to the agents, FETCH served from the state),
 * coord_report.c (the job's report: its document, admin job.report, report.html at the end).
 * coord_cohort.c (each agent's status in the job: refusals, losses, the join deadline).
 * All run on the one libuv loop that owns everything below, so nothing here needs a lock.
 *
 * coord_t is grouped by concern: net (the loop and its handles), run (the job being run),
 * rnd (the round: its machine, fv_cround_*), model (the job machine, fv_cjob_* of
 * protocols/fv_round_job.h: the job's models, early stopping, round counters; and the
 * stored files of its models), distill (the teacher's file), metrics.
 *
 * Durable state (coordinator/fv_state.h) is written at the points where a restart must
 * find it: a job when it is submitted, a round's outcome together with the checkpoint to
 * resume from and the model version it produced (one SQLite transaction, after the model
 * file is on disk), and the audit records of those changes through the state's outbox,
 * so a record is never lost between the commit and the signed log (coord_audit_flush).
 */
#ifndef FV_COORD_INT_H
#define FV_COORD_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "fv_audit.h"
#include "fv_conn.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_latency.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_prom.h"
#include "fv_round.h"
#include "fv_round_job.h"
#include "fv_state.h"
#include "fv_tls.h"
#include "fv_wire.h"

/* The agent port's frame cap (coord_main.c), and what a frame's msgpack envelope
 * (message map, job digest, round) takes beside a SECAGG message's bytes. */
#define COORD_MAX_FRAME (1u << 20)
#define COORD_FRAME_OVERHEAD 256u
/* The agent port's low-water mark (fv_net_opts_t): a vector or a released file is sent
 * only while less than this is queued on the connection (coord_main.c). */
#define COORD_LOW_WATER ((size_t)256 << 10)

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* ---- per-agent outgoing FIFO --------------------------------------------------- */

typedef struct outitem {
    struct outitem *next;
    bool is_vec;
    fv_msg_t m;     /* pointers into owned */
    uint8_t *owned; /* copies of borrowed fields */
    uint32_t vec_id;
    fv_vec_dtype_t dtype;
    const void *vec; /* borrowed: coordinator-owned, alive until the queue drains */
    void *vec_owned; /* or owned */
    uint64_t n_elems;
    char name[16];
    /* a released model file being sent in FILE_CHUNKs (coord_release.c): it blocks the
     * queue like a vector, a chunk read from fp only while the connection is under
     * COORD_LOW_WATER */
    bool is_file;
    FILE *fp;
    uint64_t f_off, f_total;
    uint8_t f_sha[32];
} outitem_t;

typedef struct agent {
    struct agent *next;
    char name[FV_NAME_MAX + 1];
    fv_conn_t *conn; /* NULL when disconnected */
    uint8_t sign_pk[32];
    char serial[41];
    uint8_t *cert_der; /* its certificate (DER) from the live or last session: ROUND_START
                          "certs" of a SecAgg job; NULL if unknown */
    size_t cert_der_len;
    char addr[64];
    bool accepted;
    uint64_t rows;
    uint8_t dsha[32];
    bool has_model;
    uint8_t model[32];
    bool has_teacher; /* distill phase: holds the teacher (sent once per session) */
    bool has_stats;
    /* the last job this agent accepted (across its sessions): its end is told on every
     * connection until the agent accepts another job (coord_job.c "End of a job") */
    bool took_part; /* accepted the running job (the digest below) */
    uint8_t part_job[32];
    bool done_pending; /* that job has ended: JOB_DONE goes out on each connection */
    uint64_t done_rounds;
    uint8_t done_model[32]; /* hash of the final model's parameters (zeros: none) */
    bool done_sent;         /* JOB_DONE queued on the live connection */
    bool done_told;         /* ... and handed to the socket, or the agent then said BYE */
    char *done_receipt;     /* the signed job receipt sent before JOB_DONE, or NULL */
    uint8_t done_sig[64];
    uint64_t done_receipt_round;
    unsigned fetches; /* FILE transfers queued for this agent (coord_release.c caps them) */
    /* outgoing */
    outitem_t *oq_head, *oq_tail;
    bool vec_busy;
    /* round (its per-round flags are the round machine's: fv_cround_*) */
    int idx;               /* cohort index, -1 if not in the round's cohort */
    fv_conn_t *round_conn; /* the session that got ROUND_START (a reconnect is another) */
    /* an upload buffer still being written by orphan_conn when its round ended (a
     * straggler's): freed at that connection's on_vec or close */
    void *orphan;
    fv_conn_t *orphan_conn;
    /* traffic of past sessions (the live one is read from its connection) */
    uint64_t bytes_in, bytes_out;
    /* benching (coord_bench.c): consecutive rounds it was silent in, benches since it last
     * contributed, and the round (c->bench.seq) its bench runs to */
    uint32_t misses, benched_times;
    uint64_t bench_until;
    /* validated rounds (coord_valid.c): failed proofs in job valid_job, the last one's
     * round and check, and whether the job excluded the agent for them */
    uint64_t valid_job;
    uint32_t proof_failures;
    uint64_t fail_round;
    char fail_check[48];
    bool excluded;
    /* its status in the running job, for the operator (coord_cohort.c): COORD_JS_*, the
     * wall-clock time it began, the refusal's category and sentence, the round a member
     * was lost in; lost: gone and not back with an answer (on_member_lost "wait" holds
     * the next round for it) */
    uint8_t js;
    uint8_t js_cat; /* fv_refuse_category_t */
    bool js_lost;
    int64_t js_at_ms;
    uint64_t js_round;
    char js_reason[FV_WIRE_TEXT_MAX + 1];
} agent_t;

/* An agent's status in the running job (agent_t.js). */
enum { COORD_JS_NONE, COORD_JS_WAITING, COORD_JS_ACCEPTED, COORD_JS_REFUSED, COORD_JS_GONE };

/* Benching's policy (coord_bench.c; the daemon's --bench-* flags). */
typedef struct coord_bench_opts {
    uint64_t after;       /* consecutive misses that bench an agent (0: never) */
    uint64_t base_rounds; /* the first bench, in rounds; doubles on each new one */
    uint64_t max_rounds;  /* ... up to this */
} coord_bench_opts_t;
#define COORD_BENCH_DEFAULTS                                                                       \
    {                                                                                              \
        3, 2, 32                                                                                   \
    }

/* ST_REPORT: the last distill round is committed and the compression report's latency
 * is being measured on the thread pool; the job then ends (ST_DONE). */
typedef enum { ST_IDLE, ST_WAITING, ST_ROUND, ST_REPORT, ST_DONE } cstate_t;

typedef struct coord {
    /* the daemon: its ports, timer and signals, all on the one loop */
    struct coord_net {
        uv_loop_t *loop;
        fv_tls_ctx_t *ctx;
        fv_server_t *server; /* agent port */
        fv_server_t *admin;  /* admin port (NULL when not configured) */
        fv_prom_server_t *prom_srv;
        uv_timer_t timer;
        uv_timer_t next_round; /* the next round starts in a callback of its own */
        uv_signal_t sigint, sigterm, sighup;
    } net;
    fv_state_t *st;
    fv_audit_t *audit;
    int64_t audit_max_eid; /* highest outbox id in the signed log (coord_log.c) */
    bool in_txn;           /* a state transaction is open: audit records wait for it */
    char federation[FV_NAME_MAX + 1];
    char self_name[FV_NAME_MAX + 1];
    uint8_t sign_sk[64];  /* the coordinator's Ed25519 key: receipts (wiped at exit) */
    char *cert_pem;       /* its certificate (PEM): release envelopes (coord_release.c) */
    const char *crl_file; /* the CRL the TLS context uses (NULL: none) */
    uint8_t *crl_der;     /* its DER, relayed in JOB_OFFER (read at start and each reload) */
    size_t crl_der_len;
    uint64_t t_start_ms;
    bool stopping;
    const char *only_job; /* --job mode: exit when this job (64 hex) has ended */
    const char *out_dir;  /* --out: jobs/<id>/ per job, and latest -> it (may be NULL) */
    unsigned max_uploads;
    agent_t *agents;
    struct coord_bench {
        coord_bench_opts_t opts;
        uint64_t seq; /* rounds started, over all jobs (attempts included) */
    } bench;
    /* deterministic faults for the tests, from the environment (coord_log.c) */
    struct coord_test {
        bool fail_rounds, drop_at_job_end;
        char hold_finish[256]; /* FV_TEST_HOLD_FINISH's file prefix, or "" */
    } test;
    /* the job being run (ST_WAITING / ST_ROUND); ST_IDLE when none */
    fv_job_t *job;
    /* schema discovery in progress for it (coord_schema.c), or NULL */
    struct coord_schema *schema;
    struct coord_run {
        char *spec;
        size_t spec_len;
        uint8_t digest[32];
        char job_id[65];   /* 64 hex: the state's id (the submitted spec's digest) */
        char wire_id[65];  /* 64 hex of digest: job_id, or the resolved spec's (receipts) */
        bool schema_fixed; /* runs with a spec resolved by schema discovery */
        char job_hex[17];  /* its first 16 hex, for logs */
        uint64_t job_id64;
        /* --out/jobs/<job_id>: the job's own files (rounds.jsonl, final.fvm, student.fvm,
         * <kind>-rNNNN.fvm, report.html, schema.json); "" without --out */
        char dir[3072];
        cstate_t state;
        double last_auc, last_pr, last_loss, last_acc;
        double avg_round_s; /* mean duration of completed training rounds */
        FILE *rounds_log;
        int exit_code;
        char fail_why[512];
        bool abort_requested;
        uint64_t linger_until; /* --job: the job ended; wait for the agents until then */
        char abort_by[FV_NAME_MAX + 16];
        /* the job's result stored and saved on the thread pool (coord__job_finish) */
        bool final_stored;
        char final_sha[65];
        uint8_t final_hash[32]; /* of its parameters (JOB_DONE) */
        bool files_busy;        /* a model's files are being written on the pool */
        /* the job has waited for its cohort since (uv_now ms; 0: not waiting), and the
         * join deadline's "wait" was logged for this wait (coord_cohort.c) */
        uint64_t wait_since;
        bool wait_logged;
        bool explain_given_up; /* the explain round aborted ROUND_ATTEMPTS times */
    } run;
    /* the round: the job-level facts here; the round itself (members' flags, SecAgg,
     * uploads, deadlines, sums) is the machine cr (protocols/fv_round.h), whose actions
     * coord__round_exec carries out */
    struct coord_round {
        uint64_t round;   /* 0 = stats */
        uint32_t attempt; /* attempts of this round number so far (aborted ones included) */
        const fv_round_kind_t *kind; /* of fv_round_kinds_default(); NULL before any round */
        agent_t **cohort;            /* by member index */
        uint32_t n, t, k;
        fv_cround_t *cr;        /* ST_ROUND: the round machine (NULL if it could not start) */
        struct rwork *work;     /* the close or the finish on the thread pool, or NULL */
        bool *lost_later;       /* n: members whose session went while work ran */
        uint64_t t_phase_start; /* the SecAgg phase being collected began (phase_s) */
        uint32_t n_summands;
        uint64_t t_round_start;
        int64_t wall_round_start_ms;
    } rnd;
    /* the job's models (protocols/fv_round_job.h: the stats round's setup, early stopping,
     * the server step, the distill hand-over, checkpoints) and their stored files */
    struct coord_model {
        fv_cjob_t *jm;       /* the job machine (NULL when no job is loaded) */
        uint8_t hash[32];    /* of the global parameters (what agents hold) */
        char global_sha[65]; /* its model file in the state directory */
        int64_t global_version;
        char best_sha[65]; /* the best model's file */
        int64_t best_version;
        const fv_mlp_t *final; /* best or global, once the job is done */
    } model;
    /* distillation (job->distill.on): after the training rounds, distill rounds train a
     * student (the job machine's global model then), and the training phase's result is
     * the teacher: its stored file and hash here */
    struct coord_distill {
        char teacher_sha[65]; /* its model file (the job's final version) */
        bool teacher_stored;  /* stored and saved on the pool, not yet handed over */
        char stored_sha[65];
        int64_t teacher_version;
        uint8_t teacher_hash[32]; /* of its parameters (what agents hold) */
        bool lat_ready;           /* lat[] measured (teacher, student, int8 student) */
        fv_latency_t lat[3];
    } distill;
    /* metrics */
    struct coord_metrics {
        fv_prom_t *prom;
        fv_prom_metric_t *agents, *rounds_ok, *rounds_failed, *phase_s, *bytes_in, *bytes_out,
            *refusals, *jobs, *admin, *loop_max;
    } metrics;
    /* the loop's callbacks into the daemon, in thread CPU time (coord_loopstat.c) */
    struct coord_loopstat {
        unsigned depth;  /* measured callbacks running, one inside the other */
        const char *cb;  /* the outermost one's name (static), NULL between callbacks */
        uint64_t t0_ns;  /* the thread's CPU time when it began (or at the last take) */
        uint64_t max_ns; /* the window (since the last take): the longest callback, */
        const char *max_cb;
        uint64_t total_ns, n_cb; /* and all of them */
    } loopstat;
} coord_t;

/* Whether the job being run is in its distill phase. */
static inline bool coord__distilling(const coord_t *c)
{
    return c->model.jm != NULL && fv_cjob_distilling(c->model.jm);
}
static inline uint64_t coord__rounds_done(const coord_t *c)
{
    return c->model.jm != NULL ? fv_cjob_rounds_done(c->model.jm) : 0;
}
static inline uint64_t coord__rounds_failed(const coord_t *c)
{
    return c->model.jm != NULL ? fv_cjob_rounds_failed(c->model.jm) : 0;
}

/* ---- the coordinator's functions, by file ---------------------------------------- */
/* Those named coord_* are the daemon's internal API (the admin port uses them too); those
 * named coord__* are internals one file shares with the others (STYLE.md's fv__ rule). */

/* coord_log.c: log lines, audit records, clocks, faults for the tests */
void coord_logj(const char *level, const char *event, json_t *fields); /* takes fields */
int64_t coord_wall_ms(void);
/* Queues an audit record in the state's outbox (inside or outside a transaction) and, when
 * no transaction is open, appends the pending records to the signed log. details: taken. */
int coord_audit(coord_t *c, const char *actor, const char *event, json_t *details);
/* coord_audit for a refused connection, rate-limited (see coord_log.c); event NULL only
 * closes a finished window. */
int coord_audit_refusal(coord_t *c, const char *event, json_t *details);
/* coord_logj for a line a peer can repeat: rate-limited per (peer, event), with the
 * count of dropped ones in the next line ("suppressed"). peer: the agent's name, or a
 * stranger's address without its port (coord__peer_host). Takes fields. */
void coord_logj_peer(coord_t *c, const char *level, const char *peer, const char *event,
                     json_t *fields);
void coord__peer_host(const char *addr, char *out, size_t cap); /* "1.2.3.4:5" -> "1.2.3.4" */
uint64_t coord__log_suppressed(void);
void coord__log_close(void);
/* The strangers' metrics (listener caps, log limiter, metrics evictions): families
 * registered at init, refreshed before each render (a fv_prom_server before_render). */
int coord__guard_metrics_init(coord_t *c);
void coord__guard_metrics_refresh(void *ctx);
/* Appends every pending outbox record to the signed audit log. */
int coord_audit_flush(coord_t *c);
int coord__audit_open(coord_t *c, const char *state_dir, fv_diag_t *d);
/* A state transaction: audit records queue until the commit; a failure stops the daemon
 * (coord__state_fatal). */
int coord__txn_begin(coord_t *c);
int coord__txn_commit(coord_t *c);
/* A log line's fields: the job and, during a round, the round (caller takes them). */
json_t *coord__jf(coord_t *c);
json_t *coord__jnum(double v); /* a number, or null when not finite */
void coord__hexn(const uint8_t *p, size_t n, char *out);
uint64_t coord__now_ms(coord_t *c); /* the loop's time, updated: deadlines, durations */
void coord__crash_points_init(void);
void coord__crash_point(const char *name);
void coord__test_hooks_init(coord_t *c);

/* coord_loopstat.c: the thread CPU time of each loop callback into the daemon. begin/end
 * bracket a callback (name: a static string, "agent.on_msg"; c NULL: nothing measured);
 * nested ones count once, as the outermost. take returns the window's figures as log
 * fields {loop_max_cpu_ms, loop_max_cb, loop_cb_count, loop_cpu_ms} (caller owns them) and
 * starts the next window. */
void coord__loopstat_begin(coord_t *c, const char *name);
void coord__loopstat_end(coord_t *c);
json_t *coord__loopstat_take(coord_t *c);

/* coord_outq.c: each agent's outgoing FIFO and the control messages put on it */
void coord__oq_init(coord_t *c, agent_t **agents, unsigned vec_sends_max);
/* The handles that pace vector sends (one start per turn of the loop); stop closes them. */
int coord__oq_start(uv_loop_t *loop);
void coord__oq_stop(void);
void coord__oq_close(void);
void coord__oq_push_msg(agent_t *a, const fv_msg_t *m, const void *owned_src, size_t owned_len,
                        const void **field);
/* The same for a message that borrows two buffers (either may be empty). */
void coord__oq_push_msg2(agent_t *a, const fv_msg_t *m, const void *src1, size_t len1,
                         const void **field1, const void *src2, size_t len2, const void **field2);
void coord__oq_push_vec(agent_t *a, uint32_t id, fv_vec_dtype_t dtype, const void *vec, void *owned,
                        uint64_t n, const char *name);
void coord__oq_clear(agent_t *a);
void coord__on_vec_sent(fv_conn_t *conn, uint32_t id);
/* The connection fell under its low-water mark: a file transfer goes on. */
void coord__on_drain(fv_conn_t *conn);
void coord__send_ctl(coord_t *c, agent_t *a, fv_msg_type_t type, int32_t status,
                     const char *reason);
void coord__send_offer(coord_t *c, agent_t *a);
void coord__send_stats(coord_t *c, agent_t *a);

/* coord_schema.c: federated schema discovery (the round before an open job's offer) */
/* c->job's schema is open: 0 when the state holds its resolved spec (c->job, c->run.spec,
 * c->run.digest now the resolved job's); 1 when the schema round began (ST_WAITING,
 * collecting); negative with why on failure. */
int coord__schema_begin(coord_t *c, char *why, size_t why_len);
bool coord__schema_collecting(const coord_t *c);
void coord__schema_query(coord_t *c, agent_t *a); /* instead of JOB_OFFER while collecting */
/* An agent's message: true when the schema round took it (SCHEMA_VOCAB; anything while
 * collecting). */
bool coord__schema_on_msg(coord_t *c, agent_t *a, const fv_msg_t *m);
void coord__schema_tick(coord_t *c);
void coord__schema_reset(coord_t *c);
void coord__schema_write_file(coord_t *c); /* schema.json into c->run.dir */
json_t *coord__schema_live(coord_t *c);    /* {vocabularies, refused, elapsed_s} while collecting */
/* The schema round's cohort view, in coord__cohort_live's shape ("round": "schema"; each
 * agent "disclosed", "refused" (category), "waiting" or "not connected"); its answers. */
json_t *coord__schema_cohort(coord_t *c);
size_t coord__schema_answered(coord_t *c);
/* coord_job.c: the job runs with its resolved spec (after the schema round) */
void coord__job_resolved(coord_t *c);
/* coord_job.c: the job cannot run: marked failed with why, the next one goes on */
void coord__job_unrunnable(coord_t *c, int err, const char *why);

/* coord_model.c: model files */
void coord__params_hash(const fv_mlp_t *m, uint8_t out[32]);
int coord__store_model_as(coord_t *c, const fv_mlp_t *mlp, uint64_t round, bool int8, char sha[65],
                          size_t *ret_len);
int coord__store_model(coord_t *c, const fv_mlp_t *mlp, uint64_t round, char sha[65]);
int coord__save_model(coord_t *c, const fv_mlp_t *mlp, const char *path, uint64_t round);
/* The job machine applied the stats round (fv_cjob_apply_stats): the log line. */
void coord__stats_ready(coord_t *c);
/* The model file of mlp written into the state directory (content-addressed, fsynced), or
 * saved at path (--out): no log line, no loop state, so a worker may call them while the
 * loop leaves the job machine alone. */
int coord__model_put(coord_t *c, const fv_mlp_t *mlp, uint64_t round, bool int8, char sha[65],
                     size_t *ret_len, fv_diag_t *d);
int coord__model_save(coord_t *c, const fv_mlp_t *mlp, const char *path, uint64_t round,
                      fv_diag_t *d);
/* A model's file stored in the state directory and (path not "") saved at path, on the
 * thread pool; then done(c, w) on the loop (w freed after it). The model is borrowed:
 * nothing may change it until done runs. Non-zero: not queued (the caller stores it at
 * once). */
typedef struct coord_mfwork {
    uv_work_t req;
    coord_t *c;
    const fv_mlp_t *mlp;
    uint64_t round;
    char path[4096];
    int put_rc, save_rc;
    fv_diag_t put_d, save_d;
    char sha[65];     /* the file's content address */
    uint8_t hash[32]; /* the parameters' (coord__params_hash) */
    void (*done)(coord_t *c, struct coord_mfwork *w);
} coord_mfwork_t;
int coord__model_files_async(coord_t *c, const fv_mlp_t *mlp, uint64_t round, const char *path,
                             void (*done)(coord_t *c, coord_mfwork_t *w));

/* coord_round.c: the round driver (the I/O shell of the round machine) */
extern const char *coord__phase_names[5];
void coord__round_start(coord_t *c);
/* coord__round_start on the loop's next turn: after a round's end (its commit, its
 * ROUND_END) the next one's setup is a callback of its own (the loop's callbacks stay
 * short). */
void coord__round_start_soon(coord_t *c);
void coord__round_tick(coord_t *c);
void coord__round_cleanup(coord_t *c);
/* Carries out the round machine's actions (out is emptied); a DONE ends the round
 * (round_finish), after which c->rnd.cr is another round's or NULL. */
void coord__round_exec(coord_t *c, fv_round_out_t *out);
/* coord_round.c: ROUND_START once the accumulator is ready (after coord__round_prep). */
void coord__round_go(coord_t *c);
/* coord_round.c: the member's ROUND_START of that round went to its connection (the
 * queue, coord_outq.c): its phase 0 deadline starts (fv_cround_delivered). */
void coord__round_delivered(coord_t *c, agent_t *a, uint64_t round);

/* coord_finish.c: the round's end and the round's work on the thread pool */
/* DONE: the finish (on the pool when there is a sum), then the commit and ROUND_END. */
void coord__round_finish(coord_t *c, int status, const char *why);
/* CLOSE: SecAgg's last close (the unmasking) on the pool. */
void coord__round_close(coord_t *c);
/* The accumulator's first touch on the pool, then coord__round_go; non-zero: not queued
 * (the caller goes on at once). */
int coord__round_prep(coord_t *c);
/* The round is cleaned up while a worker holds its machine: the work frees it. */
void coord__round_work_orphan(coord_t *c);
/* A worker holds the round's machine and the job machine (the unmasking, or the finish):
 * the loop makes no call into either; a member's loss waits (coord__round_lost). */
bool coord__round_busy(const coord_t *c);
/* The work a worker does for the round ("starting", "unmask", "finishing"), or NULL. */
const char *coord__round_work(const coord_t *c);
void coord__round_lost(coord_t *c, uint32_t member);
/* The job's checkpoint in the state, inside the caller's transaction (coord_round.c). */
int coord__ckpt_save(coord_t *c, const char *global_sha, int64_t global_version, fv_diag_t *d);
/* The kind's name for logs and progress ("unknown" before any round). */
const char *coord__kind_name(const coord_t *c);

/* coord_job.c: the job scheduler */
/* Submits a job spec (JSON text): validated, stored "queued", audited. ret_id: 64 hex. */
int coord_job_submit(coord_t *c, const char *spec, size_t len, const char *by, char ret_id[65],
                     fv_diag_t *d);
/* Aborts the job id (queued or running). */
int coord_job_abort(coord_t *c, const char *id, const char *by, fv_diag_t *d);
/* Live progress of the running job (NULL when none). */
json_t *coord_job_live(coord_t *c);
void coord__job_try_next(coord_t *c);
void coord__job_finish(coord_t *c);
void coord__job_reset(coord_t *c);
void coord__phase_end(coord_t *c);
void coord__linger_check(coord_t *c);

/* coord_bench.c: benching silent members */
/* A --bench-* option: 1 taken (into o), 0 not one of them, -1 a bad value (printed). */
/* coord_valid.c: after a validated round, count each member's failed proof (audit
 * proof.failed) and exclude it from the job's later cohorts at the job's max_failures
 * (log member_excluded, audit agent.excluded). */
void coord__valid_round_end(coord_t *c);
bool coord__valid_excluded(const coord_t *c, const agent_t *a);
/* [{agent, failures, round, check, excluded}] of the current job (caller owns it). */
json_t *coord__valid_live(const coord_t *c);

int coord__bench_option(coord_bench_opts_t *o, const char *opt, const char *val);
bool coord__benched(const coord_t *c, const agent_t *a);
/* Connected, accepted the job, not benched: may be in the next cohort. */
bool coord__bench_eligible(const coord_t *c, const agent_t *a);
/* Before a cohort is picked: lifts benches (soonest-ending first) when the unbenched
 * accepted agents are fewer than min_agents and the benched ones make it up. */
void coord__bench_fill(coord_t *c, uint32_t min_agents);
/* A round starts (its cohort picked): the round count benches are measured in. */
void coord__bench_round_started(coord_t *c);
/* The round ended (its machine still there): members late at a deadline miss, members in
 * the sum start over; the misses that reach --bench-after bench the agent. */
void coord__bench_round_end(coord_t *c);
/* {misses, benched, bench_rounds_left, benched_times} of an agent (caller owns it). */
json_t *coord__bench_json(const coord_t *c, const agent_t *a);
/* The connected agents benched now: [{agent, misses, ...}] (caller owns it). */
json_t *coord__bench_live(const coord_t *c);

/* coord_distill.c: distillation */
/* The job machine has entered its distill phase (fv_cjob_distill_begin, or a restore in
 * it): the teacher's stored file and hash, the student's first parent, agents to be sent
 * the teacher again. */
void coord__distill_entered(coord_t *c, const char *teacher_sha, int64_t teacher_version);
int coord__distill_begin(coord_t *c);
int coord__lat_start(coord_t *c);
int coord__store_distilled(coord_t *c, int64_t *ret_version, fv_diag_t *d);

/* coord_explain.c: the explain round's record */
/* The stored file (sha) of the parameters the explain round explains: the teacher's (the
 * job's final version) when distilling, else the model version the job's result is made
 * from (the final version's own file, written at the job's end, holds the same
 * parameters; its metadata names its round). */
const char *coord__explain_model_sha(const coord_t *c);
/* The decoded explanation as the round's metrics {"explanation": {...}} (stored with the
 * round) and its rounds.jsonl line; both owned by the caller. */
void coord__explain_record(coord_t *c, const fv_round_explanation_t *e, json_t **ret_metrics,
                           json_t **ret_line);

/* coord_conn.c: the agent port's callbacks */
void coord__on_open(fv_conn_t *conn, const fv_identity_t *peer);
void coord__on_msg(fv_conn_t *conn, const fv_msg_t *m);
void *coord__on_vec_begin(fv_conn_t *conn, const fv_msg_t *b);
void coord__on_vec(fv_conn_t *conn, uint32_t id, void *vec, uint64_t n);
void coord__on_close(fv_conn_t *conn, int err, const char *why);
void coord_agent_traffic(const agent_t *a, uint64_t *in, uint64_t *out);
/* Closes the agent's live session now (err, why to the peer): it is disconnected at once
 * and, in a round, a dropout (a revoked certificate, coord_reload_crl). */
void coord__agent_close(coord_t *c, agent_t *a, int err, const char *why);

/* coord_cohort.c: each agent's status in the running job (waiting, accepted, refused with
 * its category, gone), in memory and in the state; the join deadline and the job's
 * "cohort" policies (fv_job.h). */
void coord__cohort_offered(coord_t *c, agent_t *a); /* JOB_OFFER queued for it */
void coord__cohort_accepted(coord_t *c, agent_t *a);
/* JOB_REFUSE: logged and audited; recorded when it names the running job (current; left:
 * the agent had accepted it). */
void coord__cohort_refused(coord_t *c, agent_t *a, const fv_msg_t *m, bool current, bool left);
/* Its live session is closing (before accepted is cleared): a member is gone. */
void coord__cohort_closed(coord_t *c, agent_t *a);
/* A refusal in the schema round (coord_schema.c): its category word and a sentence, shown
 * and stored as a JOB_REFUSE's; the offer after the schema is fixed supersedes it. */
void coord__cohort_schema_refused(coord_t *c, agent_t *a, const char *category, const char *reason);
void coord__clock_txt(int64_t ms, char out[16]); /* "HH:MM:SSZ" of a wall-clock time */
void coord__cohort_reset(coord_t *c);            /* the job's end: every status cleared */
/* On every tick: the join deadline of a job waiting for its cohort (fails it, or logs
 * that it waits on). */
void coord__cohort_tick(coord_t *c);
/* Whether the next round must wait: on_member_lost "wait" and a lost member not back. */
bool coord__cohort_hold(const coord_t *c);
/* live.cohort of job.show and status (caller owns it). */
json_t *coord__cohort_live(coord_t *c);
/* The number of agents that accepted the running job and are connected. */
size_t coord__cohort_n_accepted(const coord_t *c);

/* coord_crl.c: revocation. The CRL file as DER for JOB_OFFER (c->crl_der); on failure
 * the DER in force stays. */
int coord__crl_der_load(coord_t *c, fv_diag_t *d);
/* Reloads the CRL and, before returning, closes every live session (agents and admins)
 * whose certificate it revokes, except `keep` (the admin session asking: the caller closes
 * it after its answer; may be NULL); *ret_closed (may be NULL): the sessions closed, keep
 * included when revoked. */
int coord_reload_crl(coord_t *c, const char *by, fv_conn_t *keep, unsigned *ret_closed,
                     fv_diag_t *d);

/* coord_release.c: signed model releases (protocols/fv_release.h) */
/* Reads the coordinator's certificate (PEM) for the envelopes. */
int coord__release_init(coord_t *c, const char *cert_path, fv_diag_t *d);
void coord__release_close(coord_t *c);
/* admin model.release {version, label}: signs, stores, audits, pushes RELEASE. */
int coord_model_release(coord_t *c, const char *actor, json_t *args, json_t *audit, json_t **body);
/* admin model.releases: {"releases": [...]}. */
int coord_model_releases(coord_t *c, json_t **body);
/* After an agent's HELLO: the latest release per label, then RELEASE_SYNC. */
void coord__release_on_open(coord_t *c, agent_t *a);
/* FETCH: the released file queued in FILE_CHUNKs, or FETCH_FAIL. */
void coord__release_on_fetch(coord_t *c, agent_t *a, const fv_msg_t *m);
/* The file item at the head of a's queue: sends chunks while the connection is under the
 * low-water mark; 1 when the item is finished (sent or failed), 0 to wait for on_drain. */
int coord__release_pump(agent_t *a, outitem_t *it);
/* The job ended (done): a signed job receipt {kind "job", final, student} for every agent
 * that took part, sent before its JOB_DONE (coord__send_ctl). */
void coord__job_receipt(coord_t *c, const char *status, int64_t final_version,
                        int64_t student_version);

/* coord_report.c: the job's report (protocols/fv_report.h) */
/* The report's document of job id (64 hex), from the state, the job's directory and the
 * audit log (verified in full): admin job.report. *ret: the caller's. */
int coord_report_doc(coord_t *c, const char *id, json_t **ret, fv_diag_t *d);
/* The job being run has ended (its status committed): report.html written into its
 * directory on the thread pool; a failure is logged (report_failed), never the job's. */
void coord__report_job_end(coord_t *c);

/* coord_main.c: start and stop */
void coord__shutdown_all(coord_t *c);
/* A fatal state error: the daemon cannot record what it does, so it stops. */
void coord__state_fatal(coord_t *c, const char *what, int r, const fv_diag_t *d);

/* coord_admin.c */
int coord_admin_start(coord_t *c, const char *host, int port, fv_diag_t *d);
/* Closes the live admin sessions whose certificate the CRL in force revokes, except keep
 * (logged session_revoked, audited admin.session_revoked by `by`); returns how many,
 * keep included when revoked. */
unsigned coord__admin_close_revoked(coord_t *c, const char *by, fv_conn_t *keep);
int coord_metrics_start(coord_t *c, const char *host, int port, fv_diag_t *d);
int coord_metrics_init(coord_t *c);
void coord_metrics_refresh(coord_t *c);

#endif
