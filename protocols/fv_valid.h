/* fv_valid.h - input validation under secure aggregation: each agent's input is Shamir-
 * shared among the cohort with a secret-shared, fully linear proof that it is well formed;
 * the holders check the proof on their shares, the server sums the shares of the inputs
 * whose proofs passed. The server learns the sum and which proofs failed; nobody learns a
 * single input.
 *
 * Transport-free: bytes in, bytes out, randomness injected (fv_rand_t), no clock.
 *
 * WHY THIS CONSTRUCTION (issue 16). Share-based, after EIFFeL (Chowdhury et al., CCS 2022)
 * and the fully linear proofs of Boneh, Boyle, Corrigan-Gibbs, Gilboa and Ishai (CRYPTO
 * 2019; Prio's SNIPs, Corrigan-Gibbs and Boneh, NSDI 2017, and Prio3's ParallelSum
 * gadget), with the wraparound check of PINE (Rothblum, Omri, Chen, Nissim 2023) for the
 * L2 bound. Everything is field arithmetic over GF(p), p = 2^61 - 1 (the field of
 * crypto/shamir.c, crypto/fv_gf61.h) and SHA-256 (libsodium); no group operation. The
 * group-based alternative (Pedersen commitments over ristretto255) costs one 70 us scalar
 * multiplication per coordinate here (Debian's libsodium 1.0.18 has no multi-scalar
 * multiplication): 1.75 s at d = 25K before any proof. The price of shares is traffic,
 * stated below; for the 5-50 banks of a federation it is the better trade.
 * Binding is by construction: the vector that is summed IS the vector that is proved
 * (the server sums the holders' shares of it), so no agent can prove one vector and
 * submit another. The mod-2^32 masked sum of fv_secagg.h is not used in a validated
 * round; validation replaces it (same threshold t, same cohort, same one-answer rule).
 *
 * PARTIES. A prover (the agent whose input it is); n holders with Shamir x-coordinates
 * 1..n (the cohort, prover included: it keeps its own share); a decider (the coordinator,
 * trusted for nothing but availability). Threshold t: 2t > n, t <= n, as in SecAgg.
 *
 * WHAT IS PROVED (fv_valid_spec_t, public, the same for every prover of a round). The
 * input w is a vector of D integers.
 *   norm block   w[norm_off .. norm_off + d) = z, centred integers: sum z_j^2 <= norm_sq.
 *   ranges       for each range i: e_i(w) = c_i + sum_k a_ik w_k lies in [0, 2^b_i).
 *                (a count in [0, R]: e = w; an upper bound w <= y: e = y - w; the loss
 *                sum within [0, 17 n_val]: two ranges.)
 *   equalities   for each equality i: e_i(w) = 0 (histogram bins summing to n_val).
 *   non-negative for each listed word: w_i >= 0 (and below 2^(2 bpw + 2); see
 *                nonneg_sum below for what is not proved).
 *   Every word outside the norm block must appear in some range or in the non-negative
 *   list (fv_valid_layout_init).
 *
 * ENCODING OF THE STATEMENT. Values are field elements; an integer v is v mod p.
 *   bits         each range i: b_i bits beta_i,k with e_i(w) = sum_k 2^k beta_i,k.
 *   norm slack   bs = bit length of norm_sq; bits with norm_sq - sum z_j^2 = slack.
 *   wraparound   lambda = FV_VALID_PROJ projections. Projection l has r_l in {-1,0,1}^d
 *                (0 w.p. 1/2, +-1 w.p. 1/4 each, from challenge 1); y_l = <r_l, z> + 2^(bp-1)
 *                is given as bp bits, bp = 1 + bit length of (8B - 1), B = ceil(sqrt(norm_sq)),
 *                so 2^(bp-1) >= 8B.
 *                Completeness: |<r_l, z>| <= 8B except with probability 2e^-32 (Hoeffding,
 *                B = sqrt(norm_sq)); an honest prover that draws an out-of-range
 *                projection starts over with fresh randomness (FV_VALID_PROVE_TRIES).
 *                Soundness (PINE): if some |z_j| > 2^bp (centred representative), then
 *                for any fixed other coordinates at most two of <r,z>, <r,z> +- z_j lie in
 *                the range and they are reached with total probability <= 1/2; lambda
 *                projections all pass with probability <= 2^-lambda. With every |z_j| <=
 *                2^bp, sum z_j^2 + slack < d 2^(2bp) + 2^bs < p (fv_valid_spec_check
 *                refuses a spec where this fails), so the field identity is the integer
 *                identity: sum z_j^2 <= norm_sq.
 *   four squares each non-negative word w_i is given with four witness integers (stage 1,
 *                after the bits) with w_i = a^2 + b^2 + c^2 + d^2 (Lagrange: every
 *                n >= 0 has them): 4 field values where a 17-bit range costs 17. The
 *                witnesses get their own wraparound projections (bound sqrt(nonneg_sum),
 *                bpw bits): then every |witness| <= 2^bpw, the sum of squares is an
 *                integer below 2^(2 bpw + 2) and the identity holds over the integers, so
 *                w_i >= 0; layout_init refuses a spec where n_nonneg 2^(2 bpw + 2) >= 2^60.
 *                sigma_sq = Q_wit - sum_i rho2_i w_i, with the witness chunks of the gadget
 *                (u = rho2_i o witnesses of i, v = the witnesses) giving Q_wit.
 *   linear links L: range links e_i(w) - sum 2^k beta_i,k; equalities e_i(w); projection
 *                links <r_l, z> + 2^(bp-1) - sum 2^k beta_l,k. All zero for an honest w.
 *   quadratic    one inner product <u, v> of length N = d + K (K = all bits):
 *                u = (z, rho o beta), v = (z, beta), rho from challenge 2. Laid out in
 *                chunks of m (the norm part and the bit part start at chunk boundaries):
 *                Q_norm = sum over norm chunks, Q_bits = sum over bit chunks.
 *                sigma_norm = Q_norm + slack - norm_sq, sigma_bits = Q_bits - sum rho_k beta_k.
 *                Both zero iff (w.p. >= 1 - 1/p over rho) every beta is a bit and the norm
 *                identity holds.
 *   gadget       (ParallelSum of m products, L calls, FLP): wire polynomials f_j, g_j
 *                (j < m) of degree L: f_j(0) = a_j, g_j(0) = b_j (random blinds of the
 *                prover), f_j(c) = u[(c-1)m + j], g_j(c) = v[(c-1)m + j] for c = 1..L (0
 *                past N). P = sum_j f_j g_j, degree 2L, shared as its values P(0..2L).
 *                Then Q over chunks c is sum_c P(c), linear in the shares of P.
 *
 * MESSAGES (all integers little-endian; every field element 8 bytes, canonical < p).
 *   The shared values, in order (S of them): stage 1: w[D], range and slack bits, the witnesses;
 *   stage 2: projection bits[lambda*bp]; stage 3: a[m], b[m], P(0..2L)[2L+1], psi (a
 *   uniform blind for the consistency opening). Holder x gets payload_x = its share of
 *   each value, stage after stage (S*8 bytes), each share f(x) of a fresh polynomial of
 *   degree t-1 with f(0) = the value. Seed compression (as Prio3 sends a helper's share
 *   as a seed): holders x = 1..t-1 get 32-byte seeds, their S shares the ChaCha20
 *   expansion of the seed (fv_valid_expand_seed); for the others each value's polynomial
 *   is the one through (0, value) and those t-1 points, so it is still uniform of degree
 *   t-1 given the value. A payload on the wire is then a seed for t-1 holders and S*8
 *   bytes for n-t+1 (the prover among them when its x >= t).
 *   header (public; the prover signs it, the caller carries the signature):
 *     "FVV1" | u32 n | u32 t | u32 S | ctx[32] | for x = 1..n: H1_x[32] H2_x[32] H3_x[32]
 *     H{k}_x = SHA-256("fv-valid share v1" | ctx | u32 x | u32 k | stage k of payload_x).
 *     (Every label string in this file is hashed with its terminating NUL byte.)
 *   Challenges (Fiat-Shamir; ctx binds federation, job, round, prover index and the
 *   prover's identity key, fv_valid_context):
 *     seed1 = SHA-256("fv-valid c1 v1" | ctx | H1_1..H1_n)          -> r_l
 *     seed2 = SHA-256("fv-valid c2 v1" | seed1 | H2_1..H2_n)        -> rho
 *     seed3 = SHA-256("fv-valid c3 v1" | seed2 | H3_1..H3_n)        -> r, kappa
 *     each expanded by ChaCha20 (fv_rand_seeded); field elements by rejection of 61-bit
 *     draws; r is redrawn while r <= 2L.
 *   vshare (holder x -> decider): "FVV2" | hdr_hash[32] | u32 x | f_j(r)[m] | g_j(r)[m] |
 *     P(r) | sigma_norm | sigma_bits | L_proj | xi | sigma_sq | L_range[n_ranges] |
 *     L_eq[n_eq]:
 *     the holder's shares of those openings (all linear in its payload: no interaction).
 *     L_proj = sum_l eta_l L_l (eta from seed3); xi = psi + sum_i kappa_i s_i over every
 *     shared value (the consistency opening).
 *   aggshare (holder x -> decider): "FVV3" | sum_hash[32] | u32 x | u32 count | D elements:
 *     the sum of its input shares w over the accepted provers.
 *
 * THE DECISION (fv_valid_decide). The decider interpolates every opening from the
 * vshares of t holders and checks every further vshare against them (a holder whose
 * vshare is off while all others agree is named the outlier and dropped: it lied, or the
 * prover sent it an inconsistent share; with two or more off, the proof fails
 * "consistency"). Accept iff P(r) = sum_j f_j(r) g_j(r) ("gadget"), sigma_norm = 0
 * ("norm"), sigma_sq = 0 ("nonneg"), sigma_bits = 0 ("bits"), L_proj = 0
 * ("wraparound"), each L_range = 0
 * (the range's name), each L_eq = 0 (the equality's name).
 *
 * SOUNDNESS. A prover that is not well formed passes with probability at most
 * 2^-lambda (wraparound, lambda = 64) + 2L/(p - 2L) (gadget: P != sum f_j g_j,
 * Schwartz-Zippel) + 3/p (rho, rho2, eta, kappa combinations), about 2^-50 at N = 250K.
 * Grinding Fiat-Shamir: the projections follow from the stage-1 commitments, so each try
 * costs new stage-1 shares and their hashes (n * s1 * 8 bytes of SHA-256: 1.6 MB, about
 * 4 ms, for the Lending Club teacher at six banks), and ctx fixes the round, which exists
 * only until its deadline: 2^64 tries would take 2^64 * 4 ms (10^9 years); a 10-minute
 * deadline allows about 2^17 tries, for a success chance under 2^-47. lambda was 128 at
 * first; at 64 the holders' projections (their largest cost) take half the time.
 * ZERO KNOWLEDGE. The decider sees, per prover, f_j(r) and g_j(r) (uniform: each wire
 * polynomial has its own uniform blind at 0 and r is outside 0..L), P(r) (their
 * function), zeros, and xi (uniform by psi); every vshare's sharing polynomial has
 * uniform higher coefficients. Fewer than t holders see nothing (Shamir). The sum is
 * released only over >= min_cohort accepted provers (the holders enforce it).
 *
 * COSTS (the bench measures them: fedvault bench secagg --validate). Prover: the gadget
 * is 2*m*L*(L+1) multiply-adds, sharing is S*(n-t+1)*t multiply-adds plus the expansion
 * of t-1 seeds, S = D + K + 2m + 2L + 2 values. Holder: lambda*d additions for the
 * projections plus about 3S multiplies. Traffic per prover: (n-t)*S*8 bytes of payloads
 * (n-t+1 full payloads, one of them possibly its own) plus 32 bytes per seeded holder and
 * the header (48 + 96n bytes); per holder per prover one vshare of (2m + 5 + ranges +
 * equalities)*8 + 40 bytes.
 */
#ifndef FV_VALID_H
#define FV_VALID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fv_crypto.h"
#include "fv_error.h"

#define FV_VALID_PROJ 64            /* lambda: wraparound projections per bounded block */
#define FV_VALID_PROVE_TRIES 8      /* fresh draws before an honest prover gives up */
#define FV_VALID_MAX_DIM (1u << 24) /* D, caps every peer-derived count */
#define FV_VALID_MAX_RANGES 65536u  /* ranges and equalities, each */
#define FV_VALID_MAX_RANGE_BITS 60u /* b_i */
#define FV_VALID_MAX_HOLDERS 1024u  /* n */
#define FV_VALID_ELEM_BYTES 8
#define FV_VALID_HEADER_FIXED 48u /* magic, n, t, S, ctx */
#define FV_VALID_NAME_MAX 48

/* One term a * w[index] of an affine expression. */
typedef struct fv_valid_term {
    uint32_t index;
    int64_t coef;
} fv_valid_term_t;

/* c + sum terms; named for the decision ("hist_pos[3]", "n_val - right[1]"). */
typedef struct fv_valid_affine {
    const fv_valid_term_t *terms;
    uint32_t n_terms;
    int64_t constant;
    uint32_t bits; /* ranges: 1..FV_VALID_MAX_RANGE_BITS; equalities: 0 */
    char name[FV_VALID_NAME_MAX];
} fv_valid_affine_t;

typedef struct fv_valid_spec {
    uint32_t dim;      /* D */
    uint32_t norm_off; /* norm block w[norm_off .. norm_off + norm_len) */
    uint32_t norm_len; /* d; 0: no norm block */
    uint64_t norm_sq;  /* bound on sum z_j^2; >= 1 when norm_len > 0 */
    const fv_valid_affine_t *ranges;
    uint32_t n_ranges;
    const fv_valid_affine_t *equal;
    uint32_t n_equal;
    /* Non-negative words: each w[nonneg[i]] >= 0, proved as the sum of four squares of
     * witness integers. nonneg_sum is the most the honest words can sum to: it sets the
     * witnesses' projection range (completeness), and the proof bounds each word only
     * below 2^(2 bpw + 2); it does NOT prove the words' sum <= nonneg_sum (an honest
     * prover refuses such a w, fv_valid_spec_eval). The upper bound a statement needs
     * comes from an equality (bins summing to n_val, itself a range). */
    const uint32_t *nonneg;
    uint32_t n_nonneg;
    uint64_t nonneg_sum;
} fv_valid_spec_t;

/* The derived sizes (what every party computes from the spec and n). */
typedef struct fv_valid_layout {
    uint32_t n, t;
    uint32_t d, n_range_bits, bs, bp, n_proj_bits;
    uint32_t n_wit, bpw, n_wproj_bits; /* four-square witnesses, their projections' bits */
    uint32_t K;                        /* bits: n_range_bits + bs + n_proj_bits + n_wproj_bits */
    uint32_t n_norm_chunks, n_wit_chunks, n_bit_chunks;
    uint32_t m, L;          /* gadget: m products per call, L calls */
    uint32_t s1, s2, s3, S; /* shared values per stage, total */
    size_t header_bytes, payload_bytes, vshare_bytes, aggshare_bytes;
} fv_valid_layout_t;

/* FV_EINVAL naming the field: a term out of [0, D), bits out of range, a word neither in
 * the norm block nor in a range, wraparound bound d 2^(2bp) + 2^bs >= p, sizes over the
 * caps; n, t outside 2t > n, t <= n <= FV_VALID_MAX_HOLDERS. */
int fv_valid_layout_init(const fv_valid_spec_t *spec, uint32_t n, uint32_t t,
                         fv_valid_layout_t *ret, fv_diag_t *d);

/* The statement in the clear, for an honest prover's own check and for tests: 0, or
 * FV_ERANGE with d naming the first failed check ("norm", a range's or equality's name). */
int fv_valid_spec_eval(const fv_valid_spec_t *spec, const int64_t *w, fv_diag_t *d);

/* ctx = SHA-256("fv-valid ctx v1" | u32 len | federation | u64 job | u64 round | u32
 * prover index | identity pk[32]). */
void fv_valid_context(const char *federation, uint64_t job_id, uint64_t round, uint32_t prover,
                      const uint8_t identity_pk[FV_SIGN_PK_BYTES], uint8_t ctx[FV_HASH_BYTES]);

/* ---- prover ------------------------------------------------------------------------ */
typedef struct fv_valid_proof {
    uint8_t *header; /* layout.header_bytes */
    size_t header_len;
    uint8_t **payloads; /* n; payloads[x-1] for holder x, layout.payload_bytes each (the
                           prover's own share too); wiped on free */
    uint32_t n;
    size_t payload_len;
    uint32_t tries; /* draws used (1 unless a projection fell out of range) */
    /* Holders 1..n_seeded (= t - 1) have seed-compressed shares: their payload is the
     * expansion of seeds[(x-1)*32 ..] (fv_valid_expand_seed); a transport may send the
     * 32-byte seed instead of the payload. Wiped on free. */
    uint8_t *seeds;
    uint32_t n_seeded;
} fv_valid_proof_t;

#define FV_VALID_SEED_BYTES 32
/* A seeded holder's payload (layout.payload_bytes) from its seed. */
int fv_valid_expand_seed(const fv_valid_layout_t *l, const uint8_t seed[FV_VALID_SEED_BYTES],
                         uint8_t *payload);

/* w: D integers satisfying the spec (FV_ERANGE naming the check otherwise: an honest
 * agent never proves a false statement). */
int fv_valid_prove(const fv_valid_spec_t *spec, uint32_t n, uint32_t t,
                   const uint8_t ctx[FV_HASH_BYTES], const int64_t *w, fv_rand_t *rng,
                   fv_valid_proof_t **ret, fv_diag_t *d);
/* For tests and the test tree's malicious agent only: fv_valid_prove without the check of
 * the statement (a false w gets a proof built exactly as an honest one would be; the
 * holders' checks then reject it) and with a single draw. The installed agent never calls
 * it. */
int fv_valid_prove_unchecked(const fv_valid_spec_t *spec, uint32_t n, uint32_t t,
                             const uint8_t ctx[FV_HASH_BYTES], const int64_t *w, fv_rand_t *rng,
                             fv_valid_proof_t **ret, fv_diag_t *d);
void fv_valid_proof_free(fv_valid_proof_t *p); /* NULL-safe; wipes */

/* ---- holder ------------------------------------------------------------------------ */
/* What a holder keeps of one prover's input: its D shares of w (secret: wiped on free). */
typedef struct fv_valid_held fv_valid_held_t;

/* Holder x (1..n) checks payload against header (ctx, n, t, S as expected; H1..H3 of
 * its own payload), computes its vshare (malloc'd, *ret_vshare_len bytes) and keeps its
 * input shares in *ret_held. FV_EPROTO (sizes, non-canonical element), FV_EROUND (ctx is
 * not the expected one), FV_EAUTH (payload does not match the header: the prover sent
 * this holder something else than it committed to). */
int fv_valid_holder_check(const fv_valid_spec_t *spec, uint32_t n, uint32_t t, uint32_t x,
                          const uint8_t ctx[FV_HASH_BYTES], const uint8_t *header,
                          size_t header_len, const uint8_t *payload, size_t payload_len,
                          fv_valid_held_t **ret_held, uint8_t **ret_vshare, size_t *ret_vshare_len,
                          fv_diag_t *d);
void fv_valid_held_free(fv_valid_held_t *h); /* NULL-safe; wipes */
uint32_t fv_valid_held_x(const fv_valid_held_t *h);

/* ---- decider ----------------------------------------------------------------------- */
typedef struct fv_valid_verdict {
    bool ok;
    char check[FV_VALID_NAME_MAX]; /* the first failed check when !ok */
    uint32_t outlier;              /* holder x whose vshare disagreed, 0: none */
    uint32_t n_used;               /* vshares the decision was made from */
} fv_valid_verdict_t;

/* vshares[i] (lens[i] bytes) from distinct holders, all for this header. Returns 0 with
 * the verdict filled (a failed proof is a verdict, not an error); FV_EPROTO for a
 * malformed vshare (naming its index), FV_EROUND for one about another header,
 * FV_EDUP for a holder's second vshare, FV_ETHRESHOLD with fewer than t usable vshares. */
int fv_valid_decide(const fv_valid_spec_t *spec, uint32_t n, uint32_t t, const uint8_t *header,
                    size_t header_len, const uint8_t *const *vshares, const size_t *lens,
                    uint32_t count, fv_valid_verdict_t *ret, fv_diag_t *d);

/* ---- aggregation ------------------------------------------------------------------- */
/* sum_id: 32 bytes naming the accepted set (the caller hashes job, round and the sorted
 * prover ids into it; holders answer one sum_id per round). held[0..count) are this
 * holder's shares of the accepted provers' inputs. */
int fv_valid_aggshare(const fv_valid_layout_t *l, const uint8_t sum_id[FV_HASH_BYTES],
                      const fv_valid_held_t *const *held, uint32_t count, uint8_t **ret,
                      size_t *ret_len, fv_diag_t *d);
/* The sum of the accepted inputs from count >= t aggshares (extras checked; a single
 * disagreeing holder is named in *ret_outlier and dropped, two or more: FV_EAUTH):
 * out[D] as centred integers (|value| < p/2). */
int fv_valid_aggregate(const fv_valid_layout_t *l, const uint8_t sum_id[FV_HASH_BYTES],
                       const uint8_t *const *shares, const size_t *lens, uint32_t count,
                       int64_t *out, uint32_t *ret_outlier, fv_diag_t *d);

/* ---- work counters (the bench's primitive count) ----------------------------------- */
typedef struct fv_valid_stats {
    uint64_t prover_mul; /* field multiplications by the last prove */
    uint64_t holder_mul; /* by the last holder check */
} fv_valid_stats_t;
void fv_valid_last_stats(fv_valid_stats_t *ret); /* thread-local */

#endif
