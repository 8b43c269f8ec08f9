/* fv_round_sim.h - the round engine in one process: a coordinator's round machine and n
 * agents' machines (fv_round.h) exchanging real messages, for unit tests and
 * `fedvault bench rounds`.
 *
 * Every message the machines emit is encoded with fv_wire_encode and decoded with
 * fv_wire_decode on the other side (the bytes a daemon would send, framing aside), so
 * the engine is tested with what a peer can actually put on the wire. Vectors (model
 * uploads) are copied whole into the buffer the coordinator's machine hands out at
 * VEC_BEGIN (fv_conn's chunking is fv_net's, tested there).
 *
 * Time is the simulator's: it starts at 0 and moves only when nothing is left to deliver
 * and the round is not over: then it jumps to the next deadline and ticks the
 * coordinator. Randomness is seeded (cfg.seed): identity keys, the graph seed and the
 * SecAgg clients' draws, so a run is reproducible.
 *
 * Faults (per agent, fv_rsim_fault_t) are applied at protocol points, never at times:
 * a dropout before it answers a phase, a straggler that goes silent, and each violation
 * the coordinator must catch. A coordinator restart (cfg.restart_at) throws the round's
 * machine away at a protocol point, as a crash before the round's commit does, and runs
 * the round again (the next attempt: a new machine, new SecAgg keys); agents abandon the
 * old round on the new ROUND_START, and, computing the same vector again (fv_round.h,
 * "Reproducibility"), give the same sum.
 *
 * Ownership: the result's sum and outcome belong to the caller (fv_round_sim_result_close).
 * Threads: one (computes run inline, after the messages queued before them).
 */
#ifndef FV_ROUND_SIM_H
#define FV_ROUND_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "fv_round.h"

typedef enum fv_rsim_fault {
    FV_RSIM_NONE = 0,
    FV_RSIM_DROP,          /* disconnects before answering phase `phase` (below) */
    FV_RSIM_SILENT,        /* answers nothing from phase `phase` on: a straggler */
    FV_RSIM_SLOW,          /* its compute returns only after its SHARES_FWD arrived */
    FV_RSIM_BAD_SENDER,    /* its ADVERTISE names another sender */
    FV_RSIM_OTHER_JOB,     /* its ADVERTISE names another job */
    FV_RSIM_MASKED_SECAGG, /* its masked input comes as a SECAGG message */
    FV_RSIM_UPLOAD_LEN,    /* its upload announces one element too many */
    FV_RSIM_UPLOAD_NAME,   /* its upload is named "model" */
    FV_RSIM_MASKED_FORGED, /* its masked input names another sender */
    FV_RSIM_PLAIN_NAN,     /* its plain vector's first element is NaN (f32 kinds) */
    FV_RSIM_PLAIN_HUGE,    /* its plain vector's last element is 2^31 (u32 kinds) */
} fv_rsim_fault_t;

typedef struct fv_round_sim_agent {
    const fv_round_data_t *data; /* what its compute reads (NULL for kinds that read none) */
    fv_rsim_fault_t fault;
    int phase; /* DROP, SILENT: the SecAgg phase of the answer (fv_secagg.h: 0 advertise,
                  1 shares, 2 masked input, 3 consistency, 4 unmask); a plain round's
                  upload is phase 2 too */
} fv_round_sim_agent_t;

#define FV_RSIM_AT_DONE 99 /* restart_at: when the round is DONE, before it is committed */
typedef struct fv_round_sim_cfg {
    const fv_round_kinds_t *kinds;      /* NULL: fv_round_kinds_default() */
    const fv_job_t *job;                /* secagg on/off, t and k, deadlines */
    fv_round_sizes_t sizes;             /* .job is set from job */
    uint64_t round;                     /* its kind: fv_round_kind_of */
    uint32_t n_agents;                  /* 3..1000 */
    const fv_round_sim_agent_t *agents; /* n_agents, or NULL: no faults, no data */
    const float *global;                /* the parameters the agents hold (kinds that need a model;
                                           explain: the final training model, held as global and teacher) */
    const float *teacher;               /* distill */
    uint64_t n_ref;
    uint32_t max_uploads; /* 0: 4 */
    uint64_t seed;
    int restart_at;   /* -1: none; p: at the PHASE action of phase p (before the next phase's
                         messages go out); FV_RSIM_AT_DONE */
    bool defer_close; /* the coordinator's machine hands SecAgg's last close out (CLOSE) */
    /* Thread CPU time in ns (NULL: not measured): the engine never reads a clock itself. */
    uint64_t (*cpu_ns)(void);
} fv_round_sim_cfg_t;

typedef struct fv_round_sim_result {
    int status; /* the round's DONE status (0: the sum is ready) */
    char why[256];
    uint32_t attempts;   /* machines run (1 + restarts) */
    uint32_t n_summands; /* contributors */
    bool *contributed;   /* n_agents */
    fv_round_shape_t shape;
    uint32_t *sum;              /* shape.words (SecAgg / u32 plain) words, or NULL */
    double *fsum;               /* shape.plain_n (f32 plain), or NULL */
    fv_round_outcome_t outcome; /* kind->decode's, when status is 0 */
    int decode_status;
    /* what happened */
    uint32_t drops;      /* violations the coordinator acted on */
    uint32_t violations; /* violations agents acted on */
    uint32_t sit_outs;
    uint32_t deadlines; /* deadline ticks that closed a phase */
    uint64_t msgs, msg_bytes, vec_bytes;
    uint64_t coord_cpu_ns, agents_cpu_ns; /* with cfg.cpu_ns */
    uint64_t sim_ms;                      /* simulated time at the end */
} fv_round_sim_result_t;

int fv_round_sim_run(const fv_round_sim_cfg_t *cfg, fv_round_sim_result_t *ret, fv_diag_t *d);
void fv_round_sim_result_close(fv_round_sim_result_t *r);

/* A kind for benchmarks and tests of the engine alone: its vector is `words` u32 words
 * (plain: u32 too), an agent's word i is fv_rand_seeded_u64(work seed) draws, the sum is
 * not decoded (decode checks only that a sum is there). One round number per job. */
const fv_round_kind_t *fv_round_sim_bench_kind(void);
/* The bench kind's vector length (fv_round_sizes_t.n_params carries it). */

#endif
