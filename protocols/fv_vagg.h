/* fv_vagg.h - validated secure aggregation: the rounds of fv_valid.h as transport-free
 * state machines (a client per agent, one server: the coordinator), like fv_secagg.h.
 *
 * The server learns the sum of the inputs whose proofs passed and, per client, whether its
 * proof passed and which check failed; nothing else about any input. A client's privacy
 * rests on its own checks (identity signatures of every key it uses, the roster bound into
 * its proof's context, its policy on n, t and the summed set, one sum answer per round),
 * never on what the server claims.
 *
 * Parties: clients 0..n-1 of a cohort (each with an Ed25519 identity key known to all:
 * params.identity_pks, from the certificates the agent verified), the server
 * (FV_SECAGG_SERVER). Holders of a round are the clients of U1 (below); the holder of
 * rank r in U1 (sorted by id) has Shamir x = r + 1. Threshold t: 2t > |U1|, t <= |U1|.
 *
 * Phases (message types fv_vagg_msg_type_t):
 *   0 advertise  client u: ADVERTISE (c_pk, sig_u over "fv-vagg adv v1" | job | round |
 *                u | c_pk); c_pk a fresh X25519 key for this round. Server -> U1.
 *   1 proof      server -> u: KEYLIST, the signed entries of U1 (sorted, at least t, at
 *                most n). u checks every signature, that its own entry is its own key, that
 *                |U1| >= policy.min_cohort and t >= policy.min_threshold, and that 2t >
 *                |U1|; then, once its input is set, proves it (fv_valid_prove, ctx below)
 *                and sends PROOF: the header and sig_u over "fv-vagg proof v1" | job |
 *                round | u | SHA-256(header), then one PROOF_CT per other holder v of U1:
 *                the AEAD of v's payload (key = kx(c_sk_u, c_pk_v, "fv-vagg enc v1" | job | round),
 * nonce = SHA-256("fv-vagg nonce v1" | job | round | u | v)[0..24), AD = job | round | u | v; the
 * round's keys are fresh, so a (key, nonce) never repeats). Server -> U2 (the provers). 2 check
 * server -> holder v: FWD, for every prover u in U2 other than v: u's header, signature and the
 * ciphertext addressed to v. v verifies the signature, decrypts, runs fv_valid_holder_check (the
 * expected ctx is its own computation: a proof for another job, round, prover or roster is refused)
 * and keeps its input shares; it answers one VSHARE per prover (its own proof first, checked like
 * the others once the first FWD arrives): its vshare or a complaint (the error code: bad signature,
 *                undecryptable, payload not the committed one). Server -> U3 (the
 *                holders that answered for all of U2).
 *   3 sum        the server decides every prover of U2 from the vshares of U3
 *                (fv_valid_decide; fewer than t vshares: failed "complaints"), V = the
 *                accepted provers, and sends SUMREQ (sum_id, V) to U3. sum_id =
 *                SHA-256("fv-vagg sum v1" | job | round | |V| | V). A holder answers at
 *                most one SUMREQ per round and only if |V| >= max(policy.min_cohort, 1) and
 *                it holds a verified share of every member of V: AGGSHARE
 *                (fv_valid_aggshare). Server -> U4; at least t: fv_valid_aggregate, the
 *                result (D centred integers). A single holder whose sum share disagrees
 *                is named and left out; two or more: FV_EAUTH, no sum.
 *
 * The proof's context: ctx = SHA-256("fv-vagg ctx v1" | fv_valid_context(federation,
 * job, round, u, pk_u) | roster), roster = SHA-256 of the U1 ids (u32 each) and c_pks in
 * order. A server that shows different clients different U1 lists makes their ctx differ:
 * the holders refuse the proofs (FV_EROUND), nothing leaks.
 *
 * What the server learns: U1..U4, the verdicts (fv_vagg_server_verdict) and the sum over
 * V. What a coalition of fewer than t holders learns: nothing about an honest input
 * (Shamir). A client never reveals a share of anyone's input except inside its one sum
 * answer, aggregated over V.
 *
 * Errors as in fv_secagg.h: a malformed message (FV_EPROTO), for another job/round
 * (FV_EROUND), phase (FV_EPHASE) or from/to the wrong party (FV_EPEER) is rejected and
 * the state unchanged. A client whose own rules fail (bad KEYLIST signature FV_EAUTH,
 * policy FV_EPOLICY, threshold FV_ETHRESHOLD, a SUMREQ it must refuse) aborts: secrets
 * wiped, later calls FV_EPHASE. The server drops bad client messages one by one and
 * aborts only when a phase closes below t.
 *
 * Wire format (little-endian): "FVA1" | type u8 | 3 zero bytes | job u64 | round u64 |
 * from u32 | to u32 | body:
 *   ADVERTISE  c_pk[32] sig[64]
 *   KEYLIST    count u32, count x (id u32, c_pk[32], sig[64])
 *   PROOF      header (layout.header_bytes) sig[64]
 *   PROOF_CT   to u32, ct: payload_bytes + 16, or 48 for a seeded holder (its 32-byte
 *              seed, fv_valid.h; any holder may also get its full payload)
 *   FWD        k u32, prover u32, header, sig[64], ct (either size)
 *   VSHARE     prover u32, status i32, and when status is 0: vshare (layout.vshare_bytes)
 *   SUMREQ     sum_id[32] count u32, count x id u32
 *   AGGSHARE   aggshare (layout.aggshare_bytes)
 * Every length is implied by the layout both sides compute from the spec and |U1|: the
 * decoder checks counts (<= n) and the exact length before it allocates anything. KEYLIST
 * is decoded against n; the others against the layout of the round's U1. One message
 * carries at most one payload, so a round fits frames of fv_vagg_max_message(l) bytes
 * (the daemons check it against their frame cap before the round starts).
 */
#ifndef FV_VAGG_H
#define FV_VAGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_crypto.h"
#include "fv_error.h"
#include "fv_secagg.h"
#include "fv_valid.h"

#define FV_VAGG_N_PHASES 4
#define FV_VAGG_MAX_CLIENTS FV_VALID_MAX_HOLDERS

typedef enum {
    FV_VAGG_MSG_ADVERTISE = 1, /* phase 0, client -> server */
    FV_VAGG_MSG_KEYLIST = 2,   /* phase 1, server -> client */
    FV_VAGG_MSG_PROOF = 3,     /* phase 1, client -> server: header and signature */
    FV_VAGG_MSG_PROOF_CT = 4,  /* phase 1, client -> server: one holder's ciphertext */
    FV_VAGG_MSG_FWD = 5,       /* phase 2, server -> client: one prover's proof for it */
    FV_VAGG_MSG_VSHARE = 6,    /* phase 2, client -> server: its check of one prover */
    FV_VAGG_MSG_SUMREQ = 7,    /* phase 3, server -> client */
    FV_VAGG_MSG_AGGSHARE = 8,  /* phase 3, client -> server */
} fv_vagg_msg_type_t;

typedef struct fv_vagg_params {
    const char *federation; /* the federation's name (ctx); borrowed */
    uint64_t job_id, round;
    uint32_t n_clients; /* cohort; ids 0..n-1 */
    uint32_t threshold; /* t for the full cohort; a smaller U1 uses fv_vagg_threshold_for */
    const fv_valid_spec_t *spec; /* the round's statement; borrowed, outlives the machine */
    const uint8_t *identity_pks; /* n * 32; borrowed during _new */
} fv_vagg_params_t;

/* t for a U1 of size m: the params' threshold scaled as floor(2m/3) + 1 when params
 * asked for a 2/3 threshold on n, else max(params.threshold, floor(m/2) + 1) capped at m.
 * Concretely: t_m = min(m, max(floor(m/2) + 1, ceil(threshold * m / n))). Every party
 * computes the same value from the same U1. */
uint32_t fv_vagg_threshold_for(const fv_vagg_params_t *p, uint32_t m);

/* The proof's ctx (see the top). roster_ids/roster_cpks: U1 in order (m entries). */
void fv_vagg_ctx(const fv_vagg_params_t *p, uint32_t prover, const uint32_t *roster_ids,
                 const uint8_t *roster_cpks, uint32_t m, uint8_t ctx[FV_HASH_BYTES]);

/* ---- messages ---------------------------------------------------------------------------- */
typedef struct fv_vagg_key {
    uint32_t id;
    uint8_t c_pk[FV_KX_PK_BYTES];
    uint8_t sig[FV_SIGN_BYTES];
} fv_vagg_key_t;
typedef struct fv_vagg_item {
    uint32_t peer;         /* PROOF_CT: recipient; FWD, VSHARE: prover; SUMREQ: id */
    int32_t status;        /* VSHARE: 0 or the complaint's code */
    const uint8_t *header; /* FWD: borrowed from the buffer */
    const uint8_t *sig;    /* FWD */
    const uint8_t *data;   /* PROOF_CT, FWD: ct; VSHARE: vshare (status 0); borrowed */
    size_t len;
} fv_vagg_item_t;
typedef struct fv_vagg_msg {
    uint8_t type;
    uint64_t job_id, round;
    uint32_t from, to;
    fv_vagg_key_t key;             /* ADVERTISE */
    fv_vagg_key_t *keys;           /* KEYLIST */
    const uint8_t *header, *sig;   /* PROOF; borrowed */
    uint8_t sum_id[FV_HASH_BYTES]; /* SUMREQ */
    const uint8_t *data;           /* AGGSHARE; borrowed */
    size_t len;
    fv_vagg_item_t item;   /* PROOF_CT, FWD, VSHARE */
    uint32_t k;            /* FWD: how many FWDs this holder gets */
    fv_vagg_item_t *items; /* SUMREQ */
    uint32_t count;
} fv_vagg_msg_t;

/* The largest message of a round of layout l (an FWD). */
size_t fv_vagg_max_message(const fv_valid_layout_t *l);

/* Phase of a type, or -1. */
int fv_vagg_msg_phase(uint8_t type);
/* The 32-byte header's type and sender, without decoding the rest; FV_EPROTO if short. */
int fv_vagg_msg_peek(const uint8_t *buf, size_t len, uint8_t *ret_type, uint32_t *ret_from);
/* Untrusted bytes. l: the layout of the round's U1 (NULL only for ADVERTISE and KEYLIST);
 * n caps counts. FV_EPROTO on any malformation; release with fv_vagg_msg_close. */
int fv_vagg_msg_decode(const uint8_t *buf, size_t len, const fv_valid_layout_t *l, uint32_t n,
                       fv_vagg_msg_t *ret, fv_diag_t *d);
void fv_vagg_msg_close(fv_vagg_msg_t *m);
/* malloc'd bytes; FV_EINVAL if inconsistent with l. */
int fv_vagg_msg_encode(const fv_vagg_msg_t *m, const fv_valid_layout_t *l, uint8_t **ret,
                       size_t *ret_len);

/* The AEAD of a payload from prover u to holder v (ct: payload_len + 16 bytes) and its
 * opening, with key = the kx of the round's c keys (see the top). */
int fv_vagg_seal(const fv_vagg_params_t *p, uint32_t u, uint32_t v,
                 const uint8_t key[FV_KX_KEY_BYTES], const uint8_t *payload, size_t len,
                 uint8_t *ct);
int fv_vagg_open(const fv_vagg_params_t *p, uint32_t u, uint32_t v,
                 const uint8_t key[FV_KX_KEY_BYTES], const uint8_t *ct, size_t ct_len,
                 uint8_t *payload);
/* The signed bytes of ADVERTISE and of PROOF. */
int fv_vagg_sign_adv(const fv_vagg_params_t *p, uint32_t u, const uint8_t c_pk[FV_KX_PK_BYTES],
                     const uint8_t sk[FV_SIGN_SK_BYTES], uint8_t sig[FV_SIGN_BYTES]);
int fv_vagg_sign_proof(const fv_vagg_params_t *p, uint32_t u, const uint8_t *header, size_t len,
                       const uint8_t sk[FV_SIGN_SK_BYTES], uint8_t sig[FV_SIGN_BYTES]);

/* ---- client ------------------------------------------------------------------------------ */
typedef struct fv_vagg_client fv_vagg_client_t;

int fv_vagg_client_new(const fv_vagg_params_t *p, const fv_secagg_policy_t *policy, uint32_t id,
                       const uint8_t identity_sk[FV_SIGN_SK_BYTES], fv_rand_t *rng,
                       fv_vagg_client_t **ret, fv_diag_t *d);
void fv_vagg_client_free(fv_vagg_client_t *c); /* NULL-safe; wipes */
/* Phase 0: ADVERTISE into out. */
int fv_vagg_client_start(fv_vagg_client_t *c, fv_secagg_outbox_t *out, fv_diag_t *d);
/* The input (spec->dim integers), copied. Before or after KEYLIST: the PROOF and its
 * PROOF_CTs go out at whichever of the two comes second (from that call, into out). */
int fv_vagg_client_set_input(fv_vagg_client_t *c, const int64_t *w, fv_secagg_outbox_t *out,
                             fv_diag_t *d);
int fv_vagg_client_handle(fv_vagg_client_t *c, const uint8_t *msg, size_t len,
                          fv_secagg_outbox_t *out, fv_diag_t *d);
/* 0..3 the phase awaited, 4 done, -1 aborted. */
int fv_vagg_client_phase(const fv_vagg_client_t *c);
/* Whether the client waits for its input to answer KEYLIST. */
bool fv_vagg_client_needs_input(const fv_vagg_client_t *c);

/* ---- server ------------------------------------------------------------------------------ */
typedef struct fv_vagg_server fv_vagg_server_t;

int fv_vagg_server_new(const fv_vagg_params_t *p, fv_vagg_server_t **ret, fv_diag_t *d);
void fv_vagg_server_free(fv_vagg_server_t *s);
int fv_vagg_server_handle(fv_vagg_server_t *s, const uint8_t *msg, size_t len, fv_diag_t *d);
/* Ends the phase being collected (below t: FV_ETHRESHOLD, aborted); appends the next
 * phase's messages to out. Closing phase 2 decides the proofs; closing phase 3 sums. */
int fv_vagg_server_close_phase(fv_vagg_server_t *s, fv_secagg_outbox_t *out, fv_diag_t *d);
/* 0..3 collecting, 4 done, -1 aborted. */
int fv_vagg_server_phase(const fv_vagg_server_t *s);
/* Whether client u has given everything the phase being collected asks of it (0: its
 * ADVERTISE; 1: its PROOF and every PROOF_CT; 2: a VSHARE for every prover; 3: its
 * AGGSHARE), and whether it is asked anything in that phase at all. */
bool fv_vagg_server_answered(const fv_vagg_server_t *s, uint32_t u);
bool fv_vagg_server_expects(const fv_vagg_server_t *s, uint32_t u);
/* After phase 2 closed: the holder named as the outlier of prover u's decision (its id),
 * or UINT32_MAX. */
uint32_t fv_vagg_server_outlier(const fv_vagg_server_t *s, uint32_t u);
/* |U_i|, i = 1..4, and |V| for i = 5. */
uint32_t fv_vagg_server_set_size(const fv_vagg_server_t *s, int i);
bool fv_vagg_server_in_set(const fv_vagg_server_t *s, int i, uint32_t u);
/* After phase 2 closed: prover u's verdict (false when u was not a prover), and how many
 * holders complained about its payload. */
bool fv_vagg_server_verdict(const fv_vagg_server_t *s, uint32_t u, fv_valid_verdict_t *ret,
                            uint32_t *ret_complaints);
/* After phase 3 closed: the sum (spec->dim centred integers, borrowed) and the holder
 * left out of it (0: none; else its id + 1). */
int fv_vagg_server_result(const fv_vagg_server_t *s, const int64_t **ret_sum,
                          uint32_t *ret_outlier);

#endif
