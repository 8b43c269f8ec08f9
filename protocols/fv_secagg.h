/* fv_secagg.h - SecAgg / SecAgg+ secure aggregation as transport-free state machines.
 *
 * The protocol of Bonawitz et al., CCS 2017 ("Practical Secure Aggregation for
 * Privacy-Preserving Machine Learning"), with the sparse neighbour graph of Bell et al.,
 * CCS 2020 (SecAgg+). A server (the coordinator) learns sum_{u in U3} x_u mod 2^32 of the
 * clients' uint32 vectors and nothing else about any single x_u, even when clients drop
 * out, and even when it lies (it cannot obtain both secrets of one client).
 *
 * Parties: clients 0..n-1 of a cohort, each with an Ed25519 identity key whose public
 * half is known to every party (params.identity_pks, from the federation certificates);
 * one server (id FV_SECAGG_SERVER). The state machines do no I/O, read no clock and take
 * their randomness from an injected fv_rand_t: bytes in, bytes out (fv_secagg_outbox_t).
 * The server ends each collection phase when its caller says so
 * (fv_secagg_server_close_phase: the caller owns the deadline).
 *
 * Neighbour graph N(u) (public, computed by every party from the params):
 *   k = n-1 (classic SecAgg): N(u) = every other client.
 *   k < n-1 (SecAgg+): k even, 2 <= k <= n-2. A permutation pi of 0..n-1 is drawn by
 *     Fisher-Yates from fv_rand_seeded(params.graph_seed) (each swap index uniform by
 *     rejection sampling of little-endian uint32 draws); client pi[j] sits at ring
 *     position j. N(u) = { pi[(pos(u) + s) mod n] : s = +-1..+-k/2 }. The graph is
 *     k-regular and symmetric (v in N(u) <=> u in N(v)); neighbours are distinct since
 *     k < n.
 *   Share holders H(u) = N(u) + {u} (k+1 clients, sorted by id); the holder at rank r in
 *   H(u) gets the Shamir share with x = r + 1. A client keeps its own share.
 *
 * Threshold t (what is enforced, by every party):
 *   2t > k+1 and t <= k+1, i.e. a strict majority of every holder set (for
 *   classic SecAgg, t > n/2). Two disjoint sets of t holders cannot exist, so even a
 *   server that tells different holders different stories cannot collect t shares of
 *   b_v AND t shares of s_sk_v from honest holders (each honest holder reveals one kind).
 *   That argument counts honest holders only: against a server colluding with c of the
 *   holders, 2(t - c) > k+1 is needed, which is why Bonawitz et al. take t > 2n/3 for an
 *   active adversary and why `fedvault bench` defaults to t = floor(2(k+1)/3) + 1. The
 *   library enforces only the majority rule; the 2/3 choice is the caller's (and the
 *   client's min_threshold policy). For SecAgg+ the guarantees are per neighbourhood
 *   (Bell et al.): k must be large enough that dropouts and corruptions stay below the
 *   margin in every H(u) with high probability; that choice is the caller's too.
 *   Every list the server announces (U1..U4) must hold >= t clients; the server also needs
 *   >= t shares of each secret it reconstructs, and a client needs >= t of its holders
 *   in U1 and U2 (otherwise its own secrets could not be recovered): FV_ETHRESHOLD.
 *   Local policy (fv_secagg_policy_t, a client's own configuration, never the server's):
 *   n >= min_cohort, t >= min_threshold, |U3| >= min_cohort (the number of inputs its own
 *   input is summed with): FV_EPOLICY.
 *
 * Phases (what each party sends; message types in fv_secagg_msg_type_t):
 *   0 advertise  client u: ADVERTISE (c_pk, s_pk, sig_u over "fv-secagg adv v1" || job ||
 *                round || u || c_pk || s_pk). c_* encrypts shares, s_* derives masks;
 *                both X25519, fresh every round. Server verifies and collects -> U1.
 *   1 share keys server -> u: KEYLIST, the signed entries of U1 (classic: all of U1;
 *                SecAgg+: U1 n H(u)). u verifies every entry (FV_EAUTH), its own entry
 *                must be its own keys, then draws b_u (32-byte mask seed), splits b_u and
 *                s_sk_u into k+1 shares (threshold t) and sends SHARES: for each v in
 *                N(u) n U1, AEAD(key = kx(c_sk_u, c_pk_v, "fv-secagg enc v1"||job||
 *                round), nonce = SHA-256("fv-secagg nonce v1"||job||round||u||v)[0..24),
 *                AD = job||round||u||v, pt = b-share || s-share). Server -> U2.
 *   2 masked     server -> u: SHARES_FWD, the ciphertexts addressed to u by members of
 *                U2 (this also tells u which neighbours are in U2). u decrypts and keeps
 *                them, then sends MASKED: y_u = x_u + PRG(b_u) + sum_{v in U2 n N(u)}
 *                (u < v ? + : -) PRG(s_uv) mod 2^32, s_uv = kx(s_sk_u, s_pk_v,
 *                "fv-secagg mask v1"||job||round). The server adds each y_u into one
 *                accumulator on arrival -> U3.
 *   3 consistency server -> u: U3LIST (all of U3). u checks |U3| >= t, U3 n N(u) within
 *                its U2 view, and sends CONSIST: for each neighbour w in its U3, the tag
 *                tag_{u->w} = BLAKE2b-512(key = m_uw, u || w || D), D = SHA-256("fv-secagg u3
 *                v2" || job || round || |U3| || ids), m_uw = BLAKE2b-256(key = the pair's
 *                share-encryption key, "fv-secagg u3mac v2") (derived in phase 1 next to the
 *                encryption key, kept to phase 4). The server checks the shape (one tag per
 *                neighbour of u in U3, in id order) -> U4; it cannot check the tags.
 *   4 unmask     server -> u: SIGLIST, the tags addressed to u by U4 n N(u) (classic: all of
 *                U4 but u) and the list of u's dropped neighbours (U2 \ U3) whose s_sk
 *                shares it asks for. u checks every tag against its own U3 digest; u
 *                itself plus the neighbours with a valid tag must number >= t
 *                (FV_ETHRESHOLD otherwise: nothing is revealed); invalid tags count for
 *                nothing and do not abort (the server cannot filter them, so a broken
 *                client must not be able to stop its neighbours). u then refuses any
 *                requested v that is in U3 (FV_EBOTHSHARES), and sends UNMASK:
 *                the b-share of each v in U3 n H(u), the s-share of each requested v.
 *                Server: for u in U3 reconstructs b_u and subtracts PRG(b_u); for each
 *                dropped v reconstructs s_sk_v (checked against s_pk_v) and removes
 *                PRG(s_vw) for each w in U3 n N(v). Fewer than t shares: FV_ETHRESHOLD,
 *                nothing is released. Every secret is reconstructed from all the shares
 *                received, each beyond the first t checked to lie on the polynomial of
 *                the first t: a wrong share (a cheating or broken holder) makes
 *                fv_secagg_server_close_phase return FV_EAUTH naming the client whose
 *                secret it was; the server aborts (phase -1), wipes the shares, and no
 *                sum is released (fv_secagg_server_result: FV_EPHASE). The cheater is
 *                detected, not located (any holder of that secret may be it); with
 *                exactly t answers there is nothing to check against. Result:
 *                sum_{u in U3} x_u mod 2^32.
 *
 * Why tags instead of signatures in phases 3-4 (wire version 2; version 1 signed the U3
 * statement with Ed25519 and every client verified t signatures, ~45 us each). What u must
 * know before it answers UNMASK is that at least t holders of H(u) (itself included)
 * committed to the same U3 it did: honest clients commit to one U3 each, so a server that
 * showed another honest holder a U3' (to ask it for the s-share of some v in u's U3) cannot
 * collect t commitments for both, which is what the threshold argument above needs. A
 * tag_{v->u} proves v's commitment to u exactly as v's signature did, because only v and u
 * hold m_uv: it is derived from the X25519 agreement of c_sk_v/c_pk_u, and u verified v's
 * identity signature on c_pk_v in phase 1 (the one Ed25519 check per peer that remains; v
 * verified u's likewise, so both derive the same key and a server that substituted a key
 * would have been caught then). The tag binds sender, recipient and the U3 digest (job,
 * round, the sorted ids), so the server can neither reflect u's own tag, nor move a tag
 * between recipients or senders, nor reuse one over another U3, job or round. A corrupted
 * v can tag anything, exactly as it could sign anything. What is lost is transferability
 * (the server cannot verify tags, so it cannot drop bad ones), hence invalid tags are
 * skipped rather than fatal. m_uv is a PRF output of the pair key, independent of the
 * AEAD key in use; it lives in the client's secret buffer and is wiped with the rest.
 *
 * Invariants: a client reveals, per peer v and per round, the b-share or the s-share,
 * never both (it answers one UNMASK, computed from the U3 it tagged); every public key it
 * uses came with a valid identity signature; secrets (identity sk copy, c_sk, s_sk, b_u,
 * shares, pairwise keys) live in fv_secret buffers, wiped on free and on abort.
 *
 * Errors. A message that is malformed (FV_EPROTO), for another job/round (FV_EROUND),
 * another phase (FV_EPHASE), from/to the wrong party (FV_EPEER) or a duplicate at the
 * server (FV_EDUP) is rejected and the state is unchanged: the caller drops it. A message
 * of the expected phase whose content is unacceptable (bad signature or AEAD tag
 * FV_EAUTH, unknown or duplicate peer in a list FV_EPEER/FV_EDUP, FV_ETHRESHOLD,
 * FV_EPOLICY, FV_EBOTHSHARES) aborts the client: secrets are wiped and every later call
 * returns FV_EPHASE. The server drops bad client messages one by one and aborts only when
 * a phase closes below t. Wire format: see the top of secagg_wire.c (length-prefixed
 * little-endian binary; version 2).
 */
#ifndef FV_SECAGG_H
#define FV_SECAGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_crypto.h"
#include "fv_error.h"

#define FV_SECAGG_SERVER 0xffffffffu
#define FV_SECAGG_MAX_CLIENTS 65535u /* Shamir x fits; caps every list count */
#define FV_SECAGG_MAX_DIM (1u << 28) /* 1 GiB of uint32: caps a MASKED vector */
#define FV_SECAGG_N_PHASES 5
#define FV_SECAGG_GRAPH_SEED_BYTES 32

typedef struct fv_secagg_params {
    uint64_t job_id;
    uint64_t round;
    uint32_t n_clients;                             /* cohort; ids 0..n-1 */
    uint32_t threshold;                             /* t: 2t > k+1, t <= k+1 */
    uint32_t n_neighbors;                           /* k: n-1 (classic) or even, 2..n-2 (SecAgg+) */
    uint32_t dim;                                   /* words per vector, 1..FV_SECAGG_MAX_DIM */
    fv_prg_kind_t prg;                              /* mask generator (FV_PRG_DEFAULT) */
    uint8_t graph_seed[FV_SECAGG_GRAPH_SEED_BYTES]; /* public; only used when k < n-1 */
    /* Fixed-point encoding of float updates (kernels/fv_fixed.h). quant_bits = 0: the
     * inputs are raw uint32 words and keeping their sum below 2^32 is the caller's
     * business. 1..31: params_check refuses (FV_EOVERFLOW) unless n * (2^bits - 1) < 2^32,
     * so the sum of any U3 cannot wrap; clip (> 0, finite) is the clipping range [-c, c]. */
    uint32_t quant_bits;
    float clip;
    /* n * FV_SIGN_PK_BYTES: identity key of client i at i*32. Borrowed during _new (the
     * state machines copy what they need). */
    const uint8_t *identity_pks;
} fv_secagg_params_t;

/* A client's own rules; 0 means "no minimum beyond the protocol's". */
typedef struct fv_secagg_policy {
    uint32_t min_cohort;    /* n and |U3| must reach it */
    uint32_t min_threshold; /* t must reach it */
} fv_secagg_policy_t;

/* 0, FV_EINVAL (params impossible: n < 3, bad k, bad dim, t outside (k+1)/2 < t <= k+1,
 * NULL keys, unknown prg) or FV_EPOLICY (below the policy; policy may be NULL). */
int fv_secagg_params_check(const fv_secagg_params_t *p, const fv_secagg_policy_t *policy,
                           fv_diag_t *d);

/* Quantization for rounds with quant_bits > 0: x (dim floats) -> q (dim words), with the
 * stochastic-rounding variates drawn from rng (24-bit uniform per element). FV_EINVAL when
 * quant_bits is 0, FV_ENUMERIC on NaN. Dequantize the sum of n_summands = |U3| inputs:
 * out (dim floats). */
int fv_secagg_quantize(const fv_secagg_params_t *p, fv_rand_t *rng, const float *x,
                       uint32_t *ret_q);
int fv_secagg_dequantize(const fv_secagg_params_t *p, const uint32_t *sum, uint32_t n_summands,
                         float *out);

/* The neighbours of client u, sorted ascending, into out[k] (k = p->n_neighbors). For
 * tests and tooling; the state machines use the same code. */
int fv_secagg_neighbors(const fv_secagg_params_t *p, uint32_t u, uint32_t *out);

/* ---- outgoing messages -------------------------------------------------------------- */
typedef struct fv_secagg_outmsg {
    uint32_t to;   /* client id, or FV_SECAGG_SERVER */
    uint8_t *data; /* malloc'd, owned by the outbox */
    size_t len;
} fv_secagg_outmsg_t;
typedef struct fv_secagg_outbox {
    fv_secagg_outmsg_t *msgs;
    size_t n, cap;
} fv_secagg_outbox_t;
void fv_secagg_outbox_init(fv_secagg_outbox_t *o);
void fv_secagg_outbox_clear(fv_secagg_outbox_t *o); /* frees the messages, keeps the array */
void fv_secagg_outbox_close(fv_secagg_outbox_t *o);

/* Work counters (what the bounds are computed from). */
typedef struct fv_secagg_stats {
    uint64_t prg_words; /* keystream words expanded into masks */
    uint64_t n_kx;      /* fv_kx_agree calls */
    uint64_t n_keygen;  /* X25519 key pairs drawn, plus s_pk checks by the server */
    uint64_t n_sign;
    uint64_t n_verify;
    uint64_t n_aead; /* seals + opens */
    uint64_t n_mac;  /* consistency tags made + checked (keyed BLAKE2b) */
} fv_secagg_stats_t;

/* ---- client --------------------------------------------------------------------------- */
typedef struct fv_secagg_client fv_secagg_client_t;

/* id < n; identity_sk (64 bytes) is copied into a secret buffer; rng is borrowed and
 * must outlive the client. Checks params and policy first. */
int fv_secagg_client_new(const fv_secagg_params_t *p, const fv_secagg_policy_t *policy, uint32_t id,
                         const uint8_t identity_sk[FV_SIGN_SK_BYTES], fv_rand_t *rng,
                         fv_secagg_client_t **ret, fv_diag_t *d);
void fv_secagg_client_free(fv_secagg_client_t *c); /* NULL-safe; wipes secrets */

/* Phase 0: draws the round keys, appends ADVERTISE to out. Once. */
int fv_secagg_client_start(fv_secagg_client_t *c, fv_secagg_outbox_t *out, fv_diag_t *d);
/* The input vector (dim words), borrowed until the call that handles SHARES_FWD returns
 * (the masked vector is built there). Must be set before that message arrives. */
int fv_secagg_client_set_input(fv_secagg_client_t *c, const uint32_t *x);
/* One message from the server (msg borrowed for the call); replies are appended to out
 * (the outbox owns them until the caller clears it). See "Errors" above. */
int fv_secagg_client_handle(fv_secagg_client_t *c, const uint8_t *msg, size_t len,
                            fv_secagg_outbox_t *out, fv_diag_t *d);
/* Phase the client waits for (0..4), 5 when done, -1 when aborted. */
int fv_secagg_client_phase(const fv_secagg_client_t *c);
void fv_secagg_client_stats(const fv_secagg_client_t *c, fv_secagg_stats_t *ret);

/* ---- server --------------------------------------------------------------------------- */
typedef struct fv_secagg_server fv_secagg_server_t;

int fv_secagg_server_new(const fv_secagg_params_t *p, fv_secagg_server_t **ret, fv_diag_t *d);
void fv_secagg_server_free(fv_secagg_server_t *s); /* NULL-safe */
/* One client message of the current phase (msg borrowed for the call; nothing of it is
 * kept but copies). Nothing is sent back directly. */
int fv_secagg_server_handle(fv_secagg_server_t *s, const uint8_t *msg, size_t len, fv_diag_t *d);
/* Ends the current phase (the caller's deadline, or everyone answered): below t ->
 * FV_ETHRESHOLD and the server aborts; otherwise appends the next phase's messages (one
 * per client of the new list) to out. Closing phase 4 computes the sum. */
int fv_secagg_server_close_phase(fv_secagg_server_t *s, fv_secagg_outbox_t *out, fv_diag_t *d);
/* Phase being collected (0..4), 5 when the sum is ready, -1 when aborted. */
int fv_secagg_server_phase(const fv_secagg_server_t *s);
/* Optional parallel for (the contract of fv_secagg_sim_config_t.par_for: fn(arg, i) once
 * for each i < n, on any threads, returning when all have) for the unmasking done when
 * phase 4 closes: the pairwise keys of dropped clients are agreed one task per pair and
 * the accumulator is cut into 16 Ki-word ranges, each task taking every mask out of its
 * range at the keystream offset. Secrets are reconstructed and checked first on the
 * caller's thread. The sum, the counters and every diagnostic are identical to a run
 * without it (NULL: everything on the caller's thread). */
void fv_secagg_server_set_par_for(fv_secagg_server_t *s,
                                  void (*par_for)(void *par_ctx, size_t n,
                                                  void (*fn)(void *arg, size_t i), void *arg),
                                  void *par_ctx);
/* Touches every page of the server's accumulator (first-touch page faults paid up front,
 * e.g. on a worker thread before the round's uploads); touches nothing else. */
void fv_secagg_server_prefault(fv_secagg_server_t *s);
/* Size of U1..U4 (i = 1..4) and of the set that sent UNMASK (i = 5); 0 before known. */
uint32_t fv_secagg_server_set_size(const fv_secagg_server_t *s, int i);
/* Whether client u is in U_i (i = 1..5). */
bool fv_secagg_server_in_set(const fv_secagg_server_t *s, int i, uint32_t u);
/* The sum (dim words), borrowed from the server, valid until free. FV_EPHASE before. */
int fv_secagg_server_result(const fv_secagg_server_t *s, const uint32_t **ret_sum);
void fv_secagg_server_stats(const fv_secagg_server_t *s, fv_secagg_stats_t *ret);

/* ---- messages (wire format) ------------------------------------------------------------ */
typedef enum {
    FV_SECAGG_MSG_ADVERTISE = 1,  /* phase 0, client -> server */
    FV_SECAGG_MSG_KEYLIST = 2,    /* phase 1, server -> client */
    FV_SECAGG_MSG_SHARES = 3,     /* phase 1, client -> server */
    FV_SECAGG_MSG_SHARES_FWD = 4, /* phase 2, server -> client */
    FV_SECAGG_MSG_MASKED = 5,     /* phase 2, client -> server */
    FV_SECAGG_MSG_U3LIST = 6,     /* phase 3, server -> client */
    FV_SECAGG_MSG_CONSIST = 7,    /* phase 3, client -> server */
    FV_SECAGG_MSG_SIGLIST = 8,    /* phase 4, server -> client */
    FV_SECAGG_MSG_UNMASK = 9,     /* phase 4, client -> server */
} fv_secagg_msg_type_t;

#define FV_SECAGG_SHARE_WIRE_BYTES (4 + FV_SHAMIR_SHARE_BYTES)      /* 44 */
#define FV_SECAGG_PT_BYTES (2 * FV_SECAGG_SHARE_WIRE_BYTES)         /* 88 */
#define FV_SECAGG_CT_BYTES (FV_SECAGG_PT_BYTES + FV_AEAD_TAG_BYTES) /* 104 */

typedef struct fv_secagg_key_entry {
    uint32_t id;
    uint8_t c_pk[FV_KX_PK_BYTES];
    uint8_t s_pk[FV_KX_PK_BYTES];
    uint8_t sig[FV_SIGN_BYTES];
} fv_secagg_key_entry_t;
typedef struct fv_secagg_ct_entry {
    uint32_t peer; /* recipient in SHARES, sender in SHARES_FWD */
    uint8_t ct[FV_SECAGG_CT_BYTES];
} fv_secagg_ct_entry_t;
typedef struct fv_secagg_sig_entry {
    uint32_t id;
    uint8_t sig[FV_SIGN_BYTES];
} fv_secagg_sig_entry_t;
typedef enum { FV_SECAGG_SHARE_B = 0, FV_SECAGG_SHARE_S = 1 } fv_secagg_share_kind_t;
typedef struct fv_secagg_share_entry {
    uint32_t peer; /* whose secret */
    uint8_t kind;  /* fv_secagg_share_kind_t */
    uint8_t share[FV_SECAGG_SHARE_WIRE_BYTES];
} fv_secagg_share_entry_t;

/* A decoded message. Exactly one item array is used, by type: keys (ADVERTISE: 1,
 * KEYLIST), cts (SHARES, SHARES_FWD), ids (U3LIST), sigs (CONSIST: 1, SIGLIST; SIGLIST
 * also fills ids with the requested dropped peers), shares (UNMASK), words_le (MASKED:
 * n_items little-endian words, BORROWED from the decoded buffer). */
typedef struct fv_secagg_msg {
    uint8_t type;
    uint8_t phase;
    uint64_t job_id;
    uint64_t round;
    uint32_t from, to;
    uint32_t n_items;
    fv_secagg_key_entry_t *keys;
    fv_secagg_ct_entry_t *cts;
    fv_secagg_sig_entry_t *sigs;
    fv_secagg_share_entry_t *shares;
    uint32_t *ids;
    uint32_t n_ids;
    const uint8_t *words_le;
} fv_secagg_msg_t;

/* Phase a message type belongs to, or -1. */
int fv_secagg_msg_phase(uint8_t type);
/* Decodes untrusted bytes: every count is checked against its cap and the exact length
 * before anything is allocated. FV_EPROTO on any malformation (nothing allocated). The
 * msg must be released with fv_secagg_msg_close (which wipes the item arrays). */
int fv_secagg_msg_decode(const uint8_t *buf, size_t len, fv_secagg_msg_t *ret, fv_diag_t *d);
void fv_secagg_msg_close(fv_secagg_msg_t *m);
/* Encodes into a malloc'd buffer (caller frees). The phase byte is written as m->phase,
 * so a test can craft a wrong one. FV_EINVAL if inconsistent. */
int fv_secagg_msg_encode(const fv_secagg_msg_t *m, uint8_t **ret_buf, size_t *ret_len);

/* ---- in-process simulator ------------------------------------------------------------- */
/* n clients and the server in one process, routed in order, from one seed: identity
 * keys, each client's fv_rand_seeded source and inputs x_u (uniform in [0, 2^16)) are
 * derived from it. Clients picked (seeded) as dropouts send nothing from dropout_phase on
 * (phase 2 = right after share keys, the costliest case for the server).
 * Parallel clients: the library starts no threads. With par_for set, the clients' steps
 * of a phase (each handling its message and filling its own outbox) are run through it,
 * up to 256 MiB of inputs and masked vectors at once; the server steps and all shared
 * bookkeeping stay sequential on the caller's thread, except the server's unmasking when
 * phase 4 closes, which is given par_for too (fv_secagg_server_set_par_for). The result, every
 * message byte, the statistics and the msg_hook sequence are identical to a run without par_for
 * (the tests check it). */
typedef enum { FV_SECAGG_HOOK_BEFORE = 0, FV_SECAGG_HOOK_AFTER = 1 } fv_secagg_hook_when_t;
typedef struct fv_secagg_sim_config {
    fv_secagg_params_t params; /* identity_pks ignored: the simulator makes the keys */
    fv_secagg_policy_t policy; /* every client's policy */
    uint64_t seed;
    double dropout_fraction; /* [0, 1): floor(fraction * n) clients drop */
    uint32_t dropout_phase;  /* 0..4 */
    /* Optional: around every step of a party (client id or FV_SECAGG_SERVER). With
     * par_for, a client's BEFORE and AFTER run on the thread doing its step, concurrently
     * with other clients' steps (never two of the same client at once): the hook must be
     * thread-safe across clients (e.g. per-client slots, CLOCK_THREAD_CPUTIME_ID). Server
     * steps always run on the caller's thread, while no client step runs. */
    void (*step_hook)(void *ud, uint32_t phase, uint32_t party, fv_secagg_hook_when_t when);
    /* Optional: every message routed, in order, on the caller's thread. */
    void (*msg_hook)(void *ud, uint32_t phase, uint32_t from, uint32_t to, const uint8_t *msg,
                     size_t len);
    void *hook_ud;
    /* Optional parallel for: must call fn(arg, i) exactly once for each i in [0, n), on
     * any threads, and return only when all calls have returned (their writes visible to
     * the caller). NULL: one client at a time on the caller's thread. */
    void (*par_for)(void *par_ctx, size_t n, void (*fn)(void *arg, size_t i), void *arg);
    void *par_ctx;
} fv_secagg_sim_config_t;

typedef struct fv_secagg_sim_result {
    bool exact;           /* sum == plaintext sum of the inputs of U3 */
    uint32_t *sum;        /* dim words, malloc'd (caller frees), NULL on abort */
    uint32_t set_size[6]; /* [i] = |U_i|, i = 1..5 (as fv_secagg_server_set_size) */
    uint32_t n_dropped;
    uint32_t n_active[FV_SECAGG_N_PHASES]; /* clients that did work in each phase */
    uint64_t bytes_up[FV_SECAGG_N_PHASES]; /* sums over clients */
    uint64_t bytes_down[FV_SECAGG_N_PHASES];
    uint64_t max_bytes_up[FV_SECAGG_N_PHASES]; /* largest single client */
    uint64_t max_bytes_down[FV_SECAGG_N_PHASES];
    fv_secagg_stats_t clients; /* summed over clients */
    fv_secagg_stats_t server;
} fv_secagg_sim_result_t;

/* 0 with the result; a protocol abort (FV_ETHRESHOLD...) is returned as such, with the
 * partial counters filled. result->sum must be freed by the caller in both cases. */
int fv_secagg_sim_run(const fv_secagg_sim_config_t *cfg, fv_secagg_sim_result_t *ret, fv_diag_t *d);

#endif
