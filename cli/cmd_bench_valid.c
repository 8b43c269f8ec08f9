/* cmd_bench_valid.c - `fedvault bench secagg --validate`: one validated round of input
 * validation (protocols/fv_valid.h) with every party in this process, on one thread.
 *
 * The round input of each of N agents is synthetic but shaped like a training round's: a
 * norm block of D words (the quantized update, |z_j| <= a with a = floor(B / sqrt(D)), so
 * sum z^2 <= D a^2 <= B^2) and METRIC_WORDS metric words: n_val, n_train, a loss sum and
 * two 48-bin score histograms (positive, negative class), with the ranges a round's spec
 * has (counts in [0, 2^20), n_train at most the declared rows, loss <= 17 n_val in the
 * loss's fixed-point units) and one equality (the 96 bins sum to n_val). The norm bound B
 * is the largest power of two fv_valid_layout_init accepts for D (the wraparound argument
 * needs D 2^(2 bp) + 2^bs < p); it is printed (norm_sq).
 *
 * What is timed (CLOCK_THREAD_CPUTIME_ID, so input generation and the reference are not
 * counted):
 *   prove         fv_valid_prove of each agent (mean and max over agents);
 *   holder check  fv_valid_holder_check of every proof by every holder (N x N): the mean
 *                 per check, and per agent (one holder checking all N proofs);
 *   decide        fv_valid_decide of each proof from all N vshares (mean per proof);
 *   aggshare      each holder's fv_valid_aggshare over the N accepted inputs (mean);
 *   aggregate     the decider's fv_valid_aggregate from N aggshares.
 * The primitive, measured in the same run on the same thread: one field multiplication
 * (a chain of dependent fv_gf_mul, best of 3), times the counts the library reports
 * (fv_valid_last_stats: prover_mul, holder_mul) = prover_floor_s, verifier_floor_s; the
 * ratios are the measured CPU over the floor. The holder check's multiplications are
 * few (about 4S); most of its time is hashing its payload and adding its z shares into
 * the 128 projections, so verifier_floor_with_hash_proj_s adds those: payload bytes /
 * SHA-256 throughput (fv_sha256 of 4 MiB) + 128 d additions (a dependent fv_gf_add chain;
 * on average half the trits are 0 and each nonzero one is one addition).
 * A dependent chain measures the latency of
 * a multiplication; independent ones overlap in the pipeline, so a ratio under 1 is
 * possible and means the library keeps several multiplications in flight.
 * Bytes (from the layout): payload_bytes_per_holder (one holder's share of one proof),
 * traffic_bytes_per_agent = what one agent sends in the round, the mean over agents: a
 * share of its input to each of the N - 1 others (holders 1..T-1 get a 32-byte seed,
 * the others a full payload: fv_valid.h's seed compression; agent i is holder i + 1),
 * its header, one vshare per proof it checks (N) and its aggshare; masked_vector_bytes =
 * 4 x words, what the same agent's SecAgg masked vector would be.
 *
 * Exit status 0 when every proof was accepted and the aggregate is the exact sum.
 */
#include "cli-int.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_crypto.h"
#include "fv_gf61.h"
#include "fv_valid.h"

#define CMD "bench secagg --validate"
#define HIST_BINS 48
#define METRIC_WORDS (3 + 2 * HIST_BINS) /* n_val, n_train, loss, bins */
#define DECLARED_ROWS 1000000
#define LOSS_UNIT 1024 /* loss in 1/1024 */
#define N_RANGES (5 + 2 * HIST_BINS)

static const char usage[] =
    "Usage: fedvault bench secagg --validate --clients N --dim D [--threshold T] [--seed S]\n"
    "                             [--json]\n"
    "\n"
    "Run one round of input validation (fv_valid.h) with N agents in this process: each\n"
    "agent proves its input (D words of update with an L2 bound, plus 99 metric words:\n"
    "n_val, n_train, a loss sum, 2 x 48 histogram bins summing to n_val), every holder\n"
    "checks every proof, the decider decides each and aggregates the accepted inputs.\n"
    "Reports CPU per prover, per holder check and per agent, bytes per agent, and one\n"
    "field multiplication measured in the same run times the library's counts.\n"
    "\n"
    "  --clients N         cohort size (3..1024)\n"
    "  --dim D             update words (the norm block), 1..16777000\n"
    "  --threshold T       Shamir threshold; default floor(2N/3)+1 (2T > N, T <= N)\n"
    "  --seed S            seed of the inputs and the proofs' randomness (default 1)\n"
    "  --json              one JSON object on stdout\n"
    "  -h, --help          this text\n"
    "\n"
    "Exit status: 0 all accepted and the sum exact, 1 failure, 2 usage error.\n";

static const struct option long_opts[] = {
    {"validate", no_argument, NULL, 'V'},   {"clients", required_argument, NULL, 'n'},
    {"dim", required_argument, NULL, 'd'},  {"threshold", required_argument, NULL, 't'},
    {"seed", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
};

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds per fv_gf_mul in a dependent chain (best of 3 runs of 2^24). */
static double measure_gf_mul(void)
{
    const uint64_t iters = (uint64_t)1 << 24;
    double best = 1e9;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        uint64_t x = 0x123456789abcdefull % FV_GF_P, y = 0x0fedcba987654321ull % FV_GF_P;
        double t0 = thread_cpu_s();
        for (uint64_t i = 0; i < iters; i++)
            x = fv_gf_mul(x, y);
        double s = (thread_cpu_s() - t0) / (double)iters;
        sink += x;
        if (s < best)
            best = s;
    }
    (void)sink;
    return best;
}

/* Seconds per fv_gf_add in a dependent chain (best of 3 runs of 2^24). */
static double measure_gf_add(void)
{
    const uint64_t iters = (uint64_t)1 << 24;
    double best = 1e9;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        uint64_t x = 0x123456789abcdefull % FV_GF_P, y = 0x0fedcba987654321ull % FV_GF_P;
        double t0 = thread_cpu_s();
        for (uint64_t i = 0; i < iters; i++)
            x = fv_gf_add(x, y);
        double s = (thread_cpu_s() - t0) / (double)iters;
        sink += x;
        if (s < best)
            best = s;
    }
    (void)sink;
    return best;
}

/* SHA-256 bytes per second (fv_sha256 of 4 MiB, best of 3); 0 when out of memory. */
static double measure_sha256(void)
{
    const size_t len = (size_t)4 << 20;
    uint8_t *buf = calloc(len, 1), h[FV_HASH_BYTES];
    double best = 0;
    if (buf == NULL)
        return 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = thread_cpu_s();
        fv_sha256(h, buf, len);
        double bps = (double)len / (thread_cpu_s() - t0);
        buf[0] ^= h[0];
        if (bps > best)
            best = bps;
    }
    free(buf);
    return best;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The round's statement: words [0, d) the update, then the metrics. */
typedef struct bspec {
    fv_valid_spec_t spec;
    fv_valid_affine_t ranges[N_RANGES];
    fv_valid_affine_t equal[1];
    fv_valid_term_t terms[N_RANGES + 4 + 2 * HIST_BINS + 1];
    uint32_t d, words;
    int64_t zmax;
} bspec_t;

enum { M_NVAL, M_NTRAIN, M_LOSS, M_BINS };

static void bspec_range(bspec_t *b, uint32_t *ri, uint32_t *ti, uint32_t idx, int64_t coef,
                        int64_t constant, uint32_t bits, const char *name)
{
    fv_valid_affine_t *a = &b->ranges[(*ri)++];
    b->terms[*ti] = (fv_valid_term_t){idx, coef};
    a->terms = &b->terms[(*ti)++];
    a->n_terms = 1;
    a->constant = constant;
    a->bits = bits;
    snprintf(a->name, sizeof a->name, "%s", name);
}

/* FV_EINVAL from the layout when no norm bound fits d. */
static int bspec_init(bspec_t *b, uint32_t d, uint32_t n, uint32_t t, fv_valid_layout_t *ret_l,
                      fv_diag_t *dg)
{
    memset(b, 0, sizeof *b);
    b->d = d;
    b->words = d + METRIC_WORDS;
    uint32_t ri = 0, ti = 0, m = d;
    bspec_range(b, &ri, &ti, m + M_NVAL, 1, 0, 20, "n_val");
    bspec_range(b, &ri, &ti, m + M_NTRAIN, 1, 0, 20, "n_train");
    bspec_range(b, &ri, &ti, m + M_NTRAIN, -1, DECLARED_ROWS, 20, "rows - n_train");
    /* loss <= 17 n_val (in LOSS_UNIT): 17 LOSS_UNIT n_val - loss in [0, 2^36) */
    fv_valid_affine_t *lm = &b->ranges[ri++];
    b->terms[ti] = (fv_valid_term_t){m + M_NVAL, 17 * LOSS_UNIT};
    b->terms[ti + 1] = (fv_valid_term_t){m + M_LOSS, -1};
    *lm = (fv_valid_affine_t){.terms = &b->terms[ti], .n_terms = 2, .bits = 36};
    snprintf(lm->name, sizeof lm->name, "17 n_val - loss");
    ti += 2;
    for (uint32_t k = 0; k < 2 * HIST_BINS; k++) {
        char name[FV_VALID_NAME_MAX];
        snprintf(name, sizeof name, "hist_%s[%u]", k < HIST_BINS ? "pos" : "neg", k % HIST_BINS);
        bspec_range(b, &ri, &ti, m + M_BINS + k, 1, 0, 20, name);
    }
    fv_valid_term_t *eq = &b->terms[ti];
    for (uint32_t k = 0; k < 2 * HIST_BINS; k++)
        b->terms[ti++] = (fv_valid_term_t){m + M_BINS + k, 1};
    b->terms[ti++] = (fv_valid_term_t){m + M_NVAL, -1};
    b->equal[0] = (fv_valid_affine_t){.terms = eq, .n_terms = 2 * HIST_BINS + 1, .bits = 0};
    snprintf(b->equal[0].name, sizeof b->equal[0].name, "bins sum to n_val");
    bspec_range(b, &ri, &ti, m + M_LOSS, 1, 0, 36, "loss"); /* loss >= 0 */

    b->spec.dim = b->words;
    b->spec.norm_off = 0;
    b->spec.norm_len = d;
    b->spec.ranges = b->ranges;
    b->spec.n_ranges = ri;
    b->spec.equal = b->equal;
    b->spec.n_equal = 1;
    /* the largest B = 2^k the wraparound argument allows at this d */
    int rc = FV_EINVAL;
    for (int k = 30; k >= 0; k--) {
        b->spec.norm_sq = (uint64_t)1 << (2 * k);
        if ((rc = fv_valid_layout_init(&b->spec, n, t, ret_l, dg)) == 0) {
            b->zmax = (int64_t)floor((double)((uint64_t)1 << k) / sqrt((double)d));
            while (b->zmax > 0 && (uint64_t)b->zmax * (uint64_t)b->zmax * d > b->spec.norm_sq)
                b->zmax--; /* floor() of a double: never above, but be exact */
            return 0;
        }
    }
    return rc;
}

static void bspec_input(const bspec_t *b, uint64_t seed, int64_t *w)
{
    uint64_t s = seed;
    uint64_t span = 2 * (uint64_t)b->zmax + 1;
    for (uint32_t j = 0; j < b->d; j++)
        w[j] = (int64_t)(splitmix(&s) % span) - b->zmax;
    int64_t *m = w + b->d;
    int64_t n_val = 1000 + (int64_t)(splitmix(&s) % 9000);
    m[M_NVAL] = n_val;
    m[M_NTRAIN] = 4 * n_val;
    m[M_LOSS] = (int64_t)(splitmix(&s) % (uint64_t)(LOSS_UNIT * n_val)); /* mean loss < 1 */
    for (uint32_t k = 0; k < 2 * HIST_BINS; k++)
        m[M_BINS + k] = 0;
    for (int64_t r = 0; r < n_val; r++)
        m[M_BINS + splitmix(&s) % (2 * HIST_BINS)]++;
}

typedef struct agent {
    fv_valid_held_t **held; /* held[x-1]: holder x's shares of this agent's input */
    uint8_t **vs;           /* vs[x-1]: holder x's vshare of this agent's proof */
    size_t *vlen;
} agent_t;

int fv__cmd_bench_valid(int argc, char **argv)
{
    size_t n = 0, dim = 0, t = 0;
    uint64_t seed = 1;
    bool json = false, have_t = false;
    int c, rc = FV_EXIT_FAIL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'V':
            break;
        case 'n':
            if (!fv_cli_parse_size(CMD, "--clients", optarg, 3, FV_VALID_MAX_HOLDERS, &n))
                return FV_EXIT_USAGE;
            break;
        case 'd':
            if (!fv_cli_parse_size(CMD, "--dim", optarg, 1, FV_VALID_MAX_DIM - METRIC_WORDS - 1,
                                   &dim))
                return FV_EXIT_USAGE;
            break;
        case 't':
            if (!fv_cli_parse_size(CMD, "--threshold", optarg, 1, FV_VALID_MAX_HOLDERS, &t))
                return FV_EXIT_USAGE;
            have_t = true;
            break;
        case 's':
            if (!fv_cli_parse_u64(CMD, "--seed", optarg, &seed))
                return FV_EXIT_USAGE;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return FV_EXIT_OK;
        default:
            fprintf(stderr, "Try 'fedvault bench secagg --validate --help'.\n");
            return FV_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (n == 0 || dim == 0)
        return fv_cli_usage_error(CMD, "--clients and --dim are required");
    if (!have_t)
        t = 2 * n / 3 + 1;
    if (t > n || 2 * t <= n)
        return fv_cli_usage_error(CMD, "--threshold %zu: need 2T > N and T <= N (N = %zu)", t, n);
    if (fv_crypto_init() < 0) {
        fv_cli_error(CMD, "crypto initialization failed");
        return FV_EXIT_FAIL;
    }

    bspec_t *bs = calloc(1, sizeof *bs);
    fv_valid_layout_t l;
    fv_diag_t dg = {""};
    if (bs == NULL) {
        fv_cli_error(CMD, "out of memory");
        return FV_EXIT_FAIL;
    }
    if (bspec_init(bs, (uint32_t)dim, (uint32_t)n, (uint32_t)t, &l, &dg) < 0) {
        fv_cli_error(CMD, "no norm bound fits d = %zu: %s", dim, dg.msg);
        free(bs);
        return FV_EXIT_FAIL;
    }
    uint32_t words = bs->words;
    agent_t *ag = calloc(n, sizeof *ag);
    int64_t *w = calloc(words, sizeof *w), *sum = calloc(words, sizeof *sum),
            *out = calloc(words, sizeof *out);
    double *prove_cpu = calloc(n, sizeof(double)), *holder_cpu = calloc(n, sizeof(double));
    uint8_t **aggs = calloc(n, sizeof *aggs);
    size_t *agglen = calloc(n, sizeof *agglen);
    const fv_valid_held_t **hl = calloc(n, sizeof *hl);
    json_t *jout = NULL;
    bool all_ok = true, exact = true;
    uint32_t tries_max = 0;
    fv_valid_stats_t st;
    uint64_t prover_mul = 0, holder_mul = 0; /* the means' sums */
    if (ag == NULL || w == NULL || sum == NULL || out == NULL || prove_cpu == NULL ||
        holder_cpu == NULL || aggs == NULL || agglen == NULL || hl == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        ag[i].held = calloc(n, sizeof *ag[i].held);
        ag[i].vs = calloc(n, sizeof *ag[i].vs);
        ag[i].vlen = calloc(n, sizeof *ag[i].vlen);
        if (ag[i].held == NULL || ag[i].vs == NULL || ag[i].vlen == NULL)
            goto oom;
    }

    double gf_mul_s = measure_gf_mul(), gf_add_s = measure_gf_add(), sha_Bps = measure_sha256();
    fprintf(stderr,
            "fedvault bench: secagg --validate n=%zu t=%zu d=%zu (+%d metric words), norm "
            "bound 2^%d\n",
            n, t, dim, METRIC_WORDS, (int)lround(log2((double)bs->spec.norm_sq) / 2));
    double wall0 = fv_cli_now_s(), decide_cpu = 0;
    int r;
    for (size_t i = 0; i < n; i++) {
        bspec_input(bs, seed * 1000003 + i, w);
        for (uint32_t j = 0; j < words; j++)
            sum[j] += w[j];
        uint8_t pk[FV_SIGN_PK_BYTES], ctx[FV_HASH_BYTES];
        memset(pk, (int)(i & 0xff), sizeof pk);
        fv_valid_context("bench", 1, seed, (uint32_t)i, pk, ctx);
        fv_rand_t rng;
        fv_rand_seeded_u64(&rng, seed * 7919 + i);
        fv_valid_proof_t *pf = NULL;
        double t0 = thread_cpu_s();
        r = fv_valid_prove(&bs->spec, (uint32_t)n, (uint32_t)t, ctx, w, &rng, &pf, &dg);
        prove_cpu[i] = thread_cpu_s() - t0;
        if (r < 0) {
            fv_cli_error(CMD, "agent %zu: prove failed (%s): %s", i, fv_err_name(r), dg.msg);
            goto out;
        }
        fv_valid_last_stats(&st);
        prover_mul += st.prover_mul;
        if (pf->tries > tries_max)
            tries_max = pf->tries;
        for (uint32_t x = 1; x <= n; x++) {
            t0 = thread_cpu_s();
            r = fv_valid_holder_check(&bs->spec, (uint32_t)n, (uint32_t)t, x, ctx, pf->header,
                                      pf->header_len, pf->payloads[x - 1], pf->payload_len,
                                      &ag[i].held[x - 1], &ag[i].vs[x - 1], &ag[i].vlen[x - 1],
                                      &dg);
            holder_cpu[x - 1] += thread_cpu_s() - t0;
            if (r < 0) {
                fv_cli_error(CMD, "holder %u refused agent %zu's proof (%s): %s", x, i,
                             fv_err_name(r), dg.msg);
                fv_valid_proof_free(pf);
                goto out;
            }
            fv_valid_last_stats(&st);
            holder_mul += st.holder_mul;
        }
        fv_valid_verdict_t v;
        t0 = thread_cpu_s();
        r = fv_valid_decide(&bs->spec, (uint32_t)n, (uint32_t)t, pf->header, pf->header_len,
                            (const uint8_t *const *)ag[i].vs, ag[i].vlen, (uint32_t)n, &v, &dg);
        decide_cpu += thread_cpu_s() - t0;
        fv_valid_proof_free(pf);
        if (r < 0) {
            fv_cli_error(CMD, "decide on agent %zu failed (%s): %s", i, fv_err_name(r), dg.msg);
            goto out;
        }
        if (!v.ok || v.outlier != 0) {
            fv_cli_error(CMD, "agent %zu's honest proof refused: check '%s', outlier %u", i,
                         v.check, v.outlier);
            all_ok = false;
        }
    }
    /* aggregation: every holder sums its shares of the N accepted inputs */
    uint8_t sum_id[FV_HASH_BYTES];
    memset(sum_id, 0x5a, sizeof sum_id);
    double aggshare_cpu = 0;
    for (uint32_t x = 1; x <= n; x++) {
        for (size_t i = 0; i < n; i++)
            hl[i] = ag[i].held[x - 1];
        double t0 = thread_cpu_s();
        r = fv_valid_aggshare(&l, sum_id, hl, (uint32_t)n, &aggs[x - 1], &agglen[x - 1], &dg);
        aggshare_cpu += thread_cpu_s() - t0;
        if (r < 0) {
            fv_cli_error(CMD, "holder %u: aggshare failed (%s): %s", x, fv_err_name(r), dg.msg);
            goto out;
        }
    }
    uint32_t outlier = 0;
    double t0 = thread_cpu_s();
    r = fv_valid_aggregate(&l, sum_id, (const uint8_t *const *)aggs, agglen, (uint32_t)n, out,
                           &outlier, &dg);
    double aggregate_cpu = thread_cpu_s() - t0;
    double wall_s = fv_cli_now_s() - wall0;
    if (r < 0) {
        fv_cli_error(CMD, "aggregate failed (%s): %s", fv_err_name(r), dg.msg);
        goto out;
    }
    for (uint32_t j = 0; j < words; j++)
        if (out[j] != sum[j])
            exact = false;
    if (outlier != 0)
        exact = false;

    double prove_mean = 0, prove_max = 0, holder_total = 0;
    for (size_t i = 0; i < n; i++) {
        prove_mean += prove_cpu[i] / (double)n;
        if (prove_cpu[i] > prove_max)
            prove_max = prove_cpu[i];
        holder_total += holder_cpu[i];
    }
    double verifier_per_check = holder_total / ((double)n * (double)n);
    double verifier_per_agent = holder_total / (double)n;
    double decide_mean = decide_cpu / (double)n;
    double prover_mul_mean = (double)prover_mul / (double)n;
    double holder_mul_mean = (double)holder_mul / ((double)n * (double)n);
    double prover_floor = prover_mul_mean * gf_mul_s;
    double verifier_floor = holder_mul_mean * gf_mul_s;
    /* what a holder check also must do: hash its payload, add each z share into the
     * 128 projections (one addition per coordinate per projection on average: half are 0) */
    double verifier_floor_full = verifier_floor +
                                 (sha_Bps > 0 ? (double)l.payload_bytes / sha_Bps : 0) +
                                 (double)FV_VALID_PROJ * (double)dim * gf_add_s;
    uint64_t shares_sent = 0; /* summed over agents */
    for (uint32_t self = 1; self <= n; self++)
        for (uint32_t x = 1; x <= n; x++)
            if (x != self)
                shares_sent += x < t ? FV_VALID_SEED_BYTES : l.payload_bytes;
    uint64_t traffic =
        shares_sent / n + l.header_bytes + (uint64_t)n * l.vshare_bytes + l.aggshare_bytes;
    uint64_t masked = 4 * (uint64_t)words;

    if (json) {
        jout = json_object();
        json_object_set_new(jout, "exact", json_boolean(exact));
        json_object_set_new(jout, "all_accepted", json_boolean(all_ok));
        json_object_set_new(jout, "clients", json_integer((json_int_t)n));
        json_object_set_new(jout, "threshold", json_integer((json_int_t)t));
        json_object_set_new(jout, "dim", json_integer((json_int_t)dim));
        json_object_set_new(jout, "metric_words", json_integer(METRIC_WORDS));
        json_object_set_new(jout, "words", json_integer(words));
        json_object_set_new(jout, "seed", json_integer((json_int_t)seed));
        json_object_set_new(jout, "norm_sq", json_integer((json_int_t)bs->spec.norm_sq));
        json_object_set_new(jout, "bp", json_integer(l.bp));
        json_object_set_new(jout, "shared_values", json_integer(l.S));
        json_object_set_new(jout, "gadget_m", json_integer(l.m));
        json_object_set_new(jout, "gadget_L", json_integer(l.L));
        json_object_set_new(jout, "prove_tries_max", json_integer(tries_max));
        json_object_set_new(jout, "prover_cpu_mean_s", json_real(prove_mean));
        json_object_set_new(jout, "prover_cpu_max_s", json_real(prove_max));
        json_object_set_new(jout, "verifier_cpu_mean_s", json_real(verifier_per_check));
        json_object_set_new(jout, "verifier_cpu_per_agent_s", json_real(verifier_per_agent));
        json_object_set_new(jout, "decide_cpu_mean_s", json_real(decide_mean));
        json_object_set_new(jout, "aggshare_cpu_mean_s", json_real(aggshare_cpu / (double)n));
        json_object_set_new(jout, "aggregate_cpu_s", json_real(aggregate_cpu));
        json_object_set_new(jout, "wall_s", json_real(wall_s));
        json_object_set_new(jout, "header_bytes", json_integer((json_int_t)l.header_bytes));
        json_object_set_new(jout, "payload_bytes_per_holder",
                            json_integer((json_int_t)l.payload_bytes));
        json_object_set_new(jout, "vshare_bytes", json_integer((json_int_t)l.vshare_bytes));
        json_object_set_new(jout, "aggshare_bytes", json_integer((json_int_t)l.aggshare_bytes));
        json_object_set_new(jout, "traffic_bytes_per_agent", json_integer((json_int_t)traffic));
        json_object_set_new(jout, "masked_vector_bytes", json_integer((json_int_t)masked));
        json_object_set_new(jout, "traffic_over_masked",
                            json_real((double)traffic / (double)masked));
        json_object_set_new(jout, "gf_mul_ns", json_real(gf_mul_s * 1e9));
        json_object_set_new(jout, "prover_mul", json_real(prover_mul_mean));
        json_object_set_new(jout, "holder_mul", json_real(holder_mul_mean));
        json_object_set_new(jout, "prover_floor_s", json_real(prover_floor));
        json_object_set_new(jout, "verifier_floor_s", json_real(verifier_floor));
        json_object_set_new(jout, "gf_add_ns", json_real(gf_add_s * 1e9));
        json_object_set_new(jout, "sha256_bytes_per_s", json_real(sha_Bps));
        json_object_set_new(jout, "verifier_floor_with_hash_proj_s",
                            json_real(verifier_floor_full));
        json_object_set_new(jout, "verifier_over_floor_with_hash_proj",
                            verifier_floor_full > 0
                                ? json_real(verifier_per_check / verifier_floor_full)
                                : json_null());
        json_object_set_new(jout, "prover_over_floor",
                            prover_floor > 0 ? json_real(prove_mean / prover_floor) : json_null());
        json_object_set_new(jout, "verifier_over_floor",
                            verifier_floor > 0 ? json_real(verifier_per_check / verifier_floor)
                                               : json_null());
        char *js = json_dumps(jout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        if (js == NULL)
            goto oom;
        puts(js);
        free(js);
    } else {
        printf("secagg --validate: n=%zu t=%zu d=%zu + %d metric words; norm_sq 2^%d (bp %u), "
               "S=%u shared values (gadget m=%u L=%u)\n",
               n, t, dim, METRIC_WORDS, (int)lround(log2((double)bs->spec.norm_sq)), l.bp, l.S, l.m,
               l.L);
        printf("cpu: prover %.4f s mean (max %.4f s, tries <= %u); holder check %.6f s per "
               "proof, %.4f s per agent (all %zu proofs)\n",
               prove_mean, prove_max, tries_max, verifier_per_check, verifier_per_agent, n);
        printf("cpu: decide %.6f s per proof; aggshare %.6f s per holder; aggregate %.6f s; "
               "wall %.3f s\n",
               decide_mean, aggshare_cpu / (double)n, aggregate_cpu, wall_s);
        printf("bytes: payload %zu per holder, header %zu, vshare %zu, aggshare %zu; per agent "
               "%llu sent vs masked vector %llu (%.2fx)\n",
               l.payload_bytes, l.header_bytes, l.vshare_bytes, l.aggshare_bytes,
               (unsigned long long)traffic, (unsigned long long)masked,
               (double)traffic / (double)masked);
        printf("floor: gf_mul %.2f ns; prover %.0f mul = %.4f s (cpu / floor %.2f), holder "
               "check %.0f mul = %.6f s (cpu / floor %.2f)\n",
               gf_mul_s * 1e9, prover_mul_mean, prover_floor,
               prover_floor > 0 ? prove_mean / prover_floor : 0.0, holder_mul_mean, verifier_floor,
               verifier_floor > 0 ? verifier_per_check / verifier_floor : 0.0);
        printf("floor with the payload's SHA-256 (%.0f MB/s) and the projections' %.0f additions "
               "(%.2f ns): %.6f s per holder check (cpu / floor %.2f)\n",
               sha_Bps / 1e6, (double)FV_VALID_PROJ * (double)dim, gf_add_s * 1e9,
               verifier_floor_full,
               verifier_floor_full > 0 ? verifier_per_check / verifier_floor_full : 0.0);
        printf("accepted: %s; exact: %s\n", all_ok ? "all" : "NOT ALL", exact ? "yes" : "NO");
    }
    if (!exact)
        fv_cli_error(CMD, "the aggregate differs from the plaintext sum of the inputs");
    rc = all_ok && exact ? FV_EXIT_OK : FV_EXIT_FAIL;
    goto out;
oom:
    fv_cli_error(CMD, "out of memory");
out:
    json_decref(jout);
    for (size_t i = 0; ag && i < n; i++) {
        for (size_t x = 0; x < n; x++) {
            if (ag[i].held)
                fv_valid_held_free(ag[i].held[x]);
            if (ag[i].vs)
                free(ag[i].vs[x]);
        }
        free(ag[i].held);
        free(ag[i].vs);
        free(ag[i].vlen);
    }
    for (size_t x = 0; aggs && x < n; x++)
        free(aggs[x]);
    free(ag);
    free(w);
    free(sum);
    free(out);
    free(prove_cpu);
    free(holder_cpu);
    free(aggs);
    free(agglen);
    free(hl);
    free(bs);
    return rc;
}
