/* fv_round.h - the round engine: round kinds in one table, and a round's two sides as
 * transport-free state machines (the coordinator's, fv_cround_*; an agent's, fv_around_*).
 *
 * Like fv_secagg.h, nothing here does I/O, reads a clock or draws its own randomness:
 * decoded messages (fv_wire.h's fv_msg_t) and vectors go in, with the time (`now_ms`, any
 * monotonic milliseconds) and an injected fv_rand_t; actions come out (fv_round_out_t):
 * a message to send, a vector to upload, a peer to drop, a computation to run, a line
 * worth logging, the round's end. The daemons (coordinator/, agent/) are the shells that
 * carry them over fv_net; the simulator (fv_round_sim_*) carries them in one process.
 *
 * ROUND KINDS
 * A round kind is one row of a table (fv_round_kinds_t): its wire id (ROUND_START's kind,
 * the state's kind), its name, how many of a job's round numbers it owns, its vector's
 * shape (SecAgg words, plain elements and their type), what an agent must hold before it
 * computes, what an agent computes (`compute`, run on a worker thread), how the
 * coordinator checks one plain vector (`plain_check`), decodes the cohort's sum
 * (`decode`) and applies it to the job (`apply`, through the job machine). The daemons and the
 * simulator take the table as a parameter (fv_round_kinds_default(): stats, train, distill,
 * explain); a new kind is a row and its handlers (tests/unit/test_round.c adds a test-only kind
 * in that one file; explain lives in round_explain.c, its vector in fv_round_explain.h).
 *
 * Round numbers: kinds own consecutive numbers in table order (`n_rounds` each): with the
 * default table, round 0 is stats, 1..rounds train, then rounds+1..rounds+distill.rounds
 * distill (a job with "distill"), then fv_job_last_round explain (a job with "explain").
 * fv_round_kind_of is the one place that maps a number to
 * its kind; both sides call it (the agent refuses a ROUND_START whose kind is not the
 * number's).
 *
 * A ROUND, the coordinator's side (fv_cround_t; the message sequence is fv_wire.h's
 * "ROUNDS"):
 *   start     ROUND_START to every member (index, cohort keys, t, k, graph seed, model
 *             hash, n_ref). Without SecAgg, UPLOAD_GO to the first max_uploads members
 *             and the upload's deadline is now + train_ms (model transfer, local work).
 *   SecAgg    phases 0 advertise, 1 shares, 2 masked input, 3 consistency, 4 unmask
 *             (fv_secagg.h): each phase closes when every live member answered or at its
 *             deadline: train_ms for phase 2 (local training), phase_ms for the others
 *             (an agent advertises on ROUND_START, before training). Phase 0 counts per
 *             member from when its ROUND_START reached its connection
 *             (cfg.await_delivery, fv_cround_delivered: the models it lacks go first, so
 *             a slow transfer does not cost an honest member the phase), bounded by
 *             train_ms from the start. The next phase's messages go to
 *             the live members; in phase 2, UPLOAD_GO admits max_uploads uploads at a
 *             time (memory: O(max_uploads * dim) whatever the cohort).
 *   uploads   VEC "masked" (SecAgg, u32, 8 + words elements: the MASKED message) or
 *             "update" (plain, the kind's dtype, plain_n elements), id = the round number
 *             (low 32 bits): name, dtype and length are checked at VEC_BEGIN, before any
 *             buffer is allocated; a plain vector is checked element by element
 *             (`plain_check`) before it is summed (u32 mod 2^32, f32 in double).
 *   end       DONE (the last action of the call that produces it): status 0 and the sum
 *             (fv_cround_sum), or the failure. The caller commits the outcome, then
 *             fv_cround_end queues ROUND_END to every member still on the session that
 *             started the round.
 *   Violations (FV_ROUND_ACT_DROP: close that member's connection with err and why): a
 *   SECAGG message for another job, naming another sender, or carrying the masked input;
 *   an upload of the wrong name, type or length (FV_EPOLICY); a masked input that SecAgg
 *   refuses or that names another sender, a plain vector that fails its checks (FV_EPROTO).
 *   A dropped member then goes through fv_cround_lost like any disconnect. Stale answers
 *   (a round no longer run, a member no longer live) are logged, never errors.
 *   Dropouts: a member lost or silent at a deadline is out of the round; SecAgg closes a
 *   phase with the survivors when at least t answered, else the round fails.
 *
 * A ROUND, an agent's side (fv_around_t):
 *   fv_around_check   ROUND_START against what the agent holds (fv_around_held_t): the
 *                     job, the round number's kind, no round older than the last one,
 *                     our key at our index, the model hash equal to the model the kind
 *                     trains (explain: the final training model, FV_ROUND_NEEDS_FINAL),
 *                     the stats vector, n_ref >= our training rows. A failure is
 *                     a violation (the caller closes the connection).
 *   fv_around_new     the agent's own policy (min_cohort; t and k exactly as the job
 *                     prescribes for n; SecAgg's min_threshold): a round it refuses is
 *                     sat out (SIT_OUT, nothing sent). Then the SecAgg client starts
 *                     (ADVERTISE goes out at once: key agreement overlaps training) and
 *                     COMPUTE asks the caller to run the kind's compute.
 *   SECAGG            handed to the client; SHARES_FWD needs our input, so before the
 *                     compute returns it is kept and handled after (a second one is a
 *                     violation). The client's MASKED message is kept for UPLOAD_GO.
 *   UPLOAD_GO         (a second one is a violation) the upload (UPLOAD) goes out once both
 *                     UPLOAD_GO and our vector are there.
 *   A client that aborts on its own rules (policy, signatures, threshold, both shares
 *   asked) sits the round out; a message SecAgg cannot parse is a violation.
 *
 * Reproducibility: an agent's training seed and its stochastic-rounding key depend on the
 * job, the round number and the agent only (fv_around_new), so a round run again after a
 * coordinator restart sends the same vector, and a resumed job ends with the same model.
 *
 * Ownership: actions borrow the machine's memory until the next call into the machine
 * that produced them or fv_round_out_clear, except UPLOAD's vector, which the caller takes
 * (set act->vec to NULL; what is left is freed by fv_round_out_clear). Threads: a machine
 * belongs to one thread; a kind's `compute` runs on any thread, reading only its
 * fv_round_data_t (read-only while it runs) and its fv_round_work_t.
 */
#ifndef FV_ROUND_H
#define FV_ROUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_crypto.h"
#include "fv_dataset.h"
#include "fv_error.h"
#include "fv_fed.h"
#include "fv_job.h"
#include "fv_mlp.h"
#include "fv_preproc.h"
#include "fv_secagg.h"
#include "fv_vagg.h"
#include "fv_wire.h"

/* ---- round kinds ---------------------------------------------------------------------- */

typedef struct fv_round_kind fv_round_kind_t;
struct fv_cjob; /* the coordinator's job machine (fv_round_job.h) */

/* What both sides know when they size a round of a job. */
typedef struct fv_round_sizes {
    const fv_job_t *job;
    const fv_fed_stats_layout_t *sl; /* the stats vector's layout (the job's schema) */
    size_t n_params;                 /* the job's model */
    size_t s_n_params;               /* the student's (a job with "distill"; else 0) */
} fv_round_sizes_t;

/* A round's vector. */
typedef struct fv_round_shape {
    fv_fed_layout_t lay;        /* kinds with a round vector (fv_fed.h); zeros otherwise */
    uint32_t words;             /* SecAgg input words */
    uint64_t plain_n;           /* elements of the plain upload */
    fv_vec_dtype_t plain_dtype; /* FV_VEC_U32: summed mod 2^32; FV_VEC_F32: in double */
} fv_round_shape_t;

/* An agent's data for a job, read-only while a compute runs. */
typedef struct fv_round_data {
    const fv_job_t *job;
    const fv_dataset_t *ds;
    const size_t *tr, *va; /* training / validation row indices into ds */
    size_t n_tr, n_va;
    const fv_fed_stats_layout_t *sl;
    const fv_mlp_arch_t *arch;   /* the job's model */
    const fv_mlp_arch_t *s_arch; /* the student's (distill) */
    size_t n_feat, n_params, s_n_params;
    /* standardized features, once the stats round's sum is known */
    const float *x_tr, *x_va;
    const int32_t *y_tr, *y_va;
    const fv_preproc_t *pp; /* the global preprocessing they came from (explain), or NULL */
    /* the privacy plan the agent accepted the job with (fv_privacy.h), or NULL: a DP
     * round reuses its noise multiplier (no calibration per round) and recomputes the
     * rest (distributed mode's noise depends on n_ref, known after the stats round) */
    const struct fv_privacy_plan *priv;
} fv_round_data_t;

/* One compute of one agent's round vector. */
typedef struct fv_round_work {
    /* in (fv_around fills all but the parameters, which the caller copies) */
    const fv_round_kind_t *kind;
    uint64_t round;
    uint64_t n_ref;
    bool secagg;
    uint64_t seed;    /* local training's seed */
    uint8_t qkey[32]; /* stochastic rounding's key (secret; wiped by fv_round_work_close) */
    float *global;    /* owned copy of the parameters the kind starts from (or NULL) */
    float *teacher;   /* owned copy of the teacher's (distill) */
    /* local training's fv_train_cfg_t.threads (0 = 1): the agent's --threads, set by the
     * caller (fv_around leaves it 0) */
    size_t train_threads;
    /* out */
    int rc;
    fv_diag_t d;
    bool validated;  /* a validated round (fv_vagg.h): the input goes in iwords */
    int64_t *iwords; /* validated input (fv_fed_valid.h's w; malloc'd, wiped on close) */
    uint32_t *words; /* SecAgg input, or a u32 plain vector (malloc'd) */
    float *fvec;     /* an f32 plain vector (malloc'd) */
    size_t dim;
    double train_loss, val_loss_sum;
    size_t epochs;
    double update_norm;  /* train/distill: ||w delta||_2 before the norm clip (fv_fed.h) */
    bool update_clipped; /* it exceeded the job's max_update_norm and was scaled to it */
} fv_round_work_t;
/* Wipes and frees the work's buffers (not the struct). */
void fv_round_work_close(fv_round_work_t *w);

/* The cohort's sum, as the coordinator holds it when the round is done. */
typedef struct fv_round_sum {
    bool secagg;
    const uint32_t *words; /* SecAgg's sum, or the u32 plain sum (shape.words / plain_n) */
    const int64_t *isum;   /* a validated round's sum (fv_fed_valid.h's w summed), or NULL */
    const double *fsum;    /* the f32 plain sum, element by element in double */
    uint32_t n_summands;
} fv_round_sum_t;

/* An explain round's read-out (fv_round_explain.h): per explained column (numeric and
 * categorical columns, schema order) the cohort's mean |reason-code contribution|. */
typedef struct fv_round_explanation {
    uint64_t rows;         /* validation rows explained, over the contributors */
    uint64_t clipped_rows; /* ... with at least one column clipped at FV_ROUND_EXPLAIN_CAP */
    size_t n_columns;
    size_t *column;   /* n_columns: schema column indices */
    double *mean_abs; /* n_columns: sum of clipped |contribution| / rows (logit units) */
} fv_round_explanation_t;

/* What the coordinator reads out of a sum. */
typedef struct fv_round_outcome {
    bool has_stats;
    fv_fed_stats_t stats; /* stats-like kinds */
    bool has_result;
    fv_fed_result_t res; /* kinds with a round vector: the update and the metrics */
    bool has_explanation;
    fv_round_explanation_t expl; /* explain */
} fv_round_outcome_t;
void fv_round_outcome_close(fv_round_outcome_t *o);

/* What an agent must hold before ROUND_START of a kind. */
enum {
    FV_ROUND_NEEDS_GLOBAL = 1u << 0,   /* the global model; ROUND_START names its hash */
    FV_ROUND_NEEDS_STUDENT = 1u << 1,  /* the student; ROUND_START names its hash */
    FV_ROUND_NEEDS_TEACHER = 1u << 2,  /* the teacher */
    FV_ROUND_NEEDS_FEATURES = 1u << 3, /* the stats round's sum; n_ref >= its training rows */
    /* The job's final training model (the training phase's result, never the student):
     * in a job with "distill" the teacher (ROUND_START names the teacher's hash), else the
     * global model the coordinator sent last (ROUND_START names its hash). The compute gets
     * it in work->global. */
    FV_ROUND_NEEDS_FINAL = 1u << 4,
};

struct fv_round_kind {
    uint32_t id;      /* wire id, 1..255, unique in a table */
    const char *name; /* logs, state, receipts */
    uint32_t needs;   /* FV_ROUND_NEEDS_* */
    /* Round numbers of a job this kind owns (consecutive, after the kinds before it). */
    uint64_t (*n_rounds)(const fv_job_t *job);
    /* The vector of a round of this kind. */
    int (*shape)(const fv_round_sizes_t *z, fv_round_shape_t *ret, fv_diag_t *d);
    /* Agent: w->words (SecAgg, or a u32 plain vector) or w->fvec, w->dim; w->rc too. */
    int (*compute)(const fv_round_data_t *data, fv_round_work_t *w);
    /* Coordinator: one member's plain vector as received (plain_n elements). */
    int (*plain_check)(const fv_round_sizes_t *z, const fv_round_shape_t *s, const void *vec,
                       fv_diag_t *d);
    /* Coordinator: the cohort's sum read out. */
    int (*decode)(const fv_round_sizes_t *z, const fv_round_shape_t *s, const fv_round_sum_t *sum,
                  double n_ref, fv_round_outcome_t *ret, fv_diag_t *d);
    /* Coordinator: what the read-out sum does to the job (the job machine): stats set the
     * job up, a training or distill round steps its model (*ret_improved: the round's
     * model is the new best). NULL: nothing (the outcome is only reported). */
    int (*apply)(struct fv_cjob *jm, const fv_round_sum_t *sum, const fv_round_outcome_t *oc,
                 bool *ret_improved, fv_diag_t *d);
};

typedef struct fv_round_kinds {
    const fv_round_kind_t *const *kinds;
    size_t n;
} fv_round_kinds_t;

/* stats (1), train (2), distill (3), explain (4). */
const fv_round_kinds_t *fv_round_kinds_default(void);
/* NULL when the table has no kind of that id. */
const fv_round_kind_t *fv_round_kind_by_id(const fv_round_kinds_t *t, uint32_t id);
/* The kind that owns round number `round` of job (NULL past the job's last round);
 * *ret_first (may be NULL): the kind's first round number. */
const fv_round_kind_t *fv_round_kind_of(const fv_round_kinds_t *t, const fv_job_t *job,
                                        uint64_t round, uint64_t *ret_first);
/* The job's last round number (the number of rounds of all kinds, minus one). */
uint64_t fv_round_last(const fv_round_kinds_t *t, const fv_job_t *job);

/* ---- actions out ---------------------------------------------------------------------- */

typedef enum fv_round_act_type {
    FV_ROUND_ACT_SEND = 1,  /* msg to `member` (coordinator) / to the coordinator (agent) */
    FV_ROUND_ACT_DROP,      /* coordinator: `member` broke the protocol: close with err, why */
    FV_ROUND_ACT_LOG,       /* a line worth logging: level, event, member, why */
    FV_ROUND_ACT_PHASE,     /* coordinator: SecAgg phase `phase` closed, `count` answered */
    FV_ROUND_ACT_DONE,      /* coordinator: the round ended: err (0: the sum is ready), why */
    FV_ROUND_ACT_COMPUTE,   /* agent: run work->kind->compute, then fv_around_computed */
    FV_ROUND_ACT_UPLOAD,    /* agent: send the vector (vec_id, dtype, vec, n, name) */
    FV_ROUND_ACT_SIT_OUT,   /* agent: the round is sat out (event, why); nothing more is sent */
    FV_ROUND_ACT_VIOLATION, /* agent: the coordinator broke the protocol: err, why; close */
    FV_ROUND_ACT_CLOSE      /* coordinator (cfg.defer_close): run fv_cround_close, on any
                               thread, before any other call into the machine */
} fv_round_act_type_t;

typedef struct fv_round_act {
    fv_round_act_type_t type;
    uint32_t member;   /* coordinator side: the member's cohort index */
    fv_msg_t msg;      /* SEND */
    int err;           /* DROP, DONE, VIOLATION; SIT_OUT: the SecAgg client's code, or 0 */
    const char *level; /* LOG: "info", "warn" (static) */
    const char *event; /* LOG, SIT_OUT: "deadline", "policy_refusal", ... (static) */
    char why[256];
    int phase;      /* PHASE, LOG */
    uint32_t count; /* PHASE: answers; LOG: a count the event names (bytes, missing) */
    /* UPLOAD */
    uint32_t vec_id;
    fv_vec_dtype_t dtype;
    void *vec; /* the caller takes it (and sets vec to NULL) */
    uint64_t n;
    const char *name; /* "masked" or "update" (static) */
    /* COMPUTE: the work is the caller's from then on: it copies the parameters in, runs
     * work->kind->compute, and hands it back with fv_around_computed, or closes and frees
     * it (fv_round_work_close, free) if the round is gone by then */
    fv_round_work_t *work;
} fv_round_act_t;

typedef struct fv_round_out {
    fv_round_act_t *acts;
    size_t n, cap;
} fv_round_out_t;
void fv_round_out_init(fv_round_out_t *o);
/* Frees what the actions still own (an UPLOAD vector not taken) and empties the list. */
void fv_round_out_clear(fv_round_out_t *o);
void fv_round_out_close(fv_round_out_t *o);

/* ---- the coordinator's side ----------------------------------------------------------- */

typedef struct fv_cround fv_cround_t;

typedef struct fv_cround_cfg {
    const fv_round_kind_t *kind;
    fv_round_sizes_t sizes;
    uint8_t job[32]; /* the job's digest (messages name it) */
    uint64_t job_id64;
    uint64_t round;
    uint32_t n;         /* cohort size */
    const uint8_t *pks; /* n * 32 bytes: the members' Ed25519 keys, by index (copied) */
    /* ROUND_START "certs" (fv_wire.h): the members' certificates in index order, each a
     * 2-byte big-endian length and DER; NULL/0 for none (copied) */
    const uint8_t *certs;
    size_t certs_len;
    bool secagg;
    uint32_t t, k;     /* SecAgg threshold and neighbours (fv_job_secagg_for) */
    uint8_t gseed[32]; /* SecAgg's graph seed */
    bool has_model;    /* ROUND_START's model hash */
    uint8_t model[32];
    uint64_t n_ref;
    uint32_t max_uploads; /* uploads admitted at once (>= 1) */
    uint64_t train_ms, phase_ms;
    /* Phase 0's deadline per member from the delivery of its ROUND_START
     * (fv_cround_delivered), train_ms from the start before it; false: phase_ms from the
     * start for everyone (the simulator, where delivery is instant). */
    bool await_delivery;
    /* Closing SecAgg's last phase (unmask: the masks of the dropped and every survivor's
     * own mask expanded and removed, O(n d) PRG work) is handed to the caller: CLOSE is the
     * last action of the call that completes the phase, and the machine takes no input
     * until fv_cround_close ran (the daemon runs it on a worker thread). false: inline. */
    bool defer_close;
    /* Validated rounds (the job's "validation", kinds with a round vector, SecAgg on):
     * fv_vagg.h replaces the SecAgg server. federation: the name bound into every proof's
     * context (copied pointer: must outlive the machine). max_msg: the largest message the
     * transport carries (0: unchecked); a round whose messages would not fit fails at
     * fv_cround_new. */
    const char *federation;
    size_t max_msg;
} fv_cround_cfg_t;

/* Whether rounds of this shape are validated in job (fv_vagg.h). */
bool fv_round_validated(const fv_job_t *job, const fv_round_shape_t *shape);

/* The machine of one round; the SecAgg server (when cfg->secagg) is made here. */
int fv_cround_new(const fv_cround_cfg_t *cfg, fv_cround_t **ret, fv_diag_t *d);
void fv_cround_free(fv_cround_t *r); /* NULL-safe */
/* ROUND_START to every member (and UPLOAD_GO without SecAgg). */
int fv_cround_start(fv_cround_t *r, uint64_t now_ms, fv_round_out_t *out);
/* A message from a member (SECAGG; other types are not the round's: ignored). */
void fv_cround_on_msg(fv_cround_t *r, uint32_t member, const fv_msg_t *m, uint64_t now_ms,
                      fv_round_out_t *out);
/* VEC_BEGIN from a member: the buffer to receive it into (the machine's), or NULL to
 * ignore it (a stale one) or with a DROP in out (a violation). */
void *fv_cround_vec_begin(fv_cround_t *r, uint32_t member, const fv_msg_t *b, fv_round_out_t *out);
/* The vector received whole into the buffer vec_begin gave. */
void fv_cround_vec_end(fv_cround_t *r, uint32_t member, void *vec, uint64_t n, uint64_t now_ms,
                       fv_round_out_t *out);
/* The member's connection is gone (or was dropped): it is out of the round. */
void fv_cround_lost(fv_cround_t *r, uint32_t member, uint64_t now_ms, fv_round_out_t *out);
/* cfg.await_delivery: the member's ROUND_START reached its connection now (its phase 0
 * deadline is now + phase_ms). Emits nothing, so it may be called while the caller carries
 * out this machine's actions. */
void fv_cround_delivered(fv_cround_t *r, uint32_t member, uint64_t now_ms);
/* Deadlines: call at least every few hundred ms. */
void fv_cround_tick(fv_cround_t *r, uint64_t now_ms, fv_round_out_t *out);
/* The round was abandoned (the job aborted): DONE with err. */
void fv_cround_fail(fv_cround_t *r, int err, const char *why, fv_round_out_t *out);
/* After CLOSE: closes the phase (its PHASE, LOG and DONE actions into out). Touches only
 * the machine: may run on another thread while the caller makes no other call into it. */
void fv_cround_close(fv_cround_t *r, fv_round_out_t *out);
/* Optional parallel for (fv_secagg_server_set_par_for's contract) for SecAgg's unmasking
 * in the last close: the sum is bit-identical with or without it. No effect on a round
 * without SecAgg. NULL: the closing thread alone. */
void fv_cround_set_par_for(fv_cround_t *r,
                           void (*par_for)(void *par_ctx, size_t n, void (*fn)(void *arg, size_t i),
                                           void *arg),
                           void *par_ctx);
/* Touches every page of the memory the round's sum goes into (SecAgg's accumulator or the
 * plain one), so the first upload's add does not pay the page faults (an 8 MB accumulator
 * costs about 20 ms of them here). Before fv_cround_start; touches only that memory, so it
 * may run on another thread while the caller makes no other call into the machine. */
void fv_cround_prefault(fv_cround_t *r);
/* A CLOSE is pending (fv_cround_close not run yet). */
bool fv_cround_closing(const fv_cround_t *r);

bool fv_cround_done(const fv_cround_t *r);
/* After DONE with status 0: the sum (borrowed from the machine). */
int fv_cround_sum(const fv_cround_t *r, fv_round_sum_t *ret);
/* Whether the member's input is in the sum (after DONE). */
bool fv_cround_contributed(const fv_cround_t *r, uint32_t member);
/* A validated round, after its check phase: the member's proof verdict (false: it was no
 * prover, or the round is not validated) and how many holders complained about it. */
bool fv_cround_verdict(const fv_cround_t *r, uint32_t member, fv_valid_verdict_t *ret,
                       uint32_t *ret_complaints);
/* Whether the member left the round at a deadline without answering (silent). */
bool fv_cround_late(const fv_cround_t *r, uint32_t member);
/* Whether the member is still in the round (neither lost, dropped nor late). */
bool fv_cround_alive(const fv_cround_t *r, uint32_t member);
/* The SecAgg phase being collected (the server's 0..4: advertise, share keys, masked
 * input, consistency, unmask), 2 while plain uploads are collected, 5 once done. */
int fv_cround_phase(const fv_cround_t *r);
/* Answers in SecAgg phase p (0..4) when it closed. */
uint32_t fv_cround_phase_count(const fv_cround_t *r, int p);
const fv_round_shape_t *fv_cround_shape(const fv_cround_t *r);
uint32_t fv_cround_n(const fv_cround_t *r);
uint32_t fv_cround_threshold(const fv_cround_t *r);
uint32_t fv_cround_uploads_in_flight(const fv_cround_t *r);
/* ROUND_END {status, why} to every member not lost. */
void fv_cround_end(fv_cround_t *r, int status, const char *why, fv_round_out_t *out);
/* Live members that answered the phase being collected (0 once done). */
uint32_t fv_cround_answered(const fv_cround_t *r);
/* The buffer vec_begin gave the member and no vec_end or lost took back (a straggler's
 * upload still arriving): the caller takes it (its connection may still write into it;
 * free it at on_vec or on_close), or NULL. Call before fv_cround_free for each member. */
void *fv_cround_vec_take(fv_cround_t *r, uint32_t member);

/* ---- an agent's side ------------------------------------------------------------------ */

typedef struct fv_around fv_around_t;

/* What the agent holds for the job a ROUND_START names. */
typedef struct fv_around_held {
    const fv_round_kinds_t *kinds;
    const fv_job_t *job;
    uint8_t digest[32];
    const char *name;  /* the agent's name (the training seed) */
    const uint8_t *pk; /* 32: our Ed25519 public key */
    const uint8_t *sk; /* 64: our Ed25519 secret key (SecAgg, the rounding key) */
    fv_round_sizes_t sizes;
    bool started;        /* a round of this job was started before */
    uint64_t last_round; /* ... the highest one */
    bool has_global, has_student, has_teacher, has_features;
    uint8_t global_hash[32], student_hash[32], teacher_hash[32];
    size_t n_tr;
    uint32_t min_cohort, min_threshold; /* the agent's policy (0: the protocol's) */
    const char *federation;             /* bound into a validated round's proofs */
} fv_around_held_t;

/* ROUND_START's checks; 0, or the violation's code with why. */
int fv_around_check(const fv_around_held_t *h, const fv_msg_t *rs, char *why, size_t why_len);
/* A round that passed fv_around_check: its policy, SecAgg client, COMPUTE (or SIT_OUT).
 * rng: the SecAgg client's randomness (copied). */
int fv_around_new(const fv_around_held_t *h, const fv_msg_t *rs, const fv_rand_t *rng,
                  fv_around_t **ret, fv_round_out_t *out);
void fv_around_free(fv_around_t *r); /* NULL-safe; a COMPUTE still running is orphaned */
/* SECAGG for this round. */
void fv_around_on_secagg(fv_around_t *r, const fv_msg_t *m, fv_round_out_t *out);
/* UPLOAD_GO for this round. */
void fv_around_on_go(fv_around_t *r, fv_round_out_t *out);
/* The COMPUTE's work back (taken: its vector moves into the round, the rest is closed
 * and freed here). */
void fv_around_computed(fv_around_t *r, fv_round_work_t *w, fv_round_out_t *out);
/* The caller could not send the UPLOAD it was given (another vector still being sent):
 * the round is sat out and counts as not uploaded. */
void fv_around_upload_failed(fv_around_t *r);
/* ROUND_END's checks against the job's started rounds; 0 or the violation's code. */
int fv_around_check_end(const fv_around_held_t *h, const fv_msg_t *re, char *why, size_t why_len);

uint64_t fv_around_round(const fv_around_t *r);
const fv_round_kind_t *fv_around_kind(const fv_around_t *r);
bool fv_around_sat_out(const fv_around_t *r);
bool fv_around_uploaded(const fv_around_t *r);
/* The compute handed out and not yet back (the caller must not free the round's work). */
bool fv_around_computing(const fv_around_t *r);

#endif
