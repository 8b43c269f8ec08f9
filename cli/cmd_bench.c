/* cmd_bench.c - in-process benchmarks: `fedvault bench secagg` and `fedvault bench predict`
 * (`fedvault bench rounds` is cmd_bench_rounds.c, `fedvault bench secagg --validate`
 * cmd_bench_valid.c).
 *
 * bench secagg: one SecAgg round, all parties in this process.
 *
 * Runs fv_secagg_sim_run (clients and server as pure state machines, no network), checks
 * the unmasked sum equals the plaintext sum of the survivors' inputs exactly, and reports
 * CPU time per phase per party (CLOCK_THREAD_CPUTIME_ID around each step, through the
 * simulator's step hook, so routing and input generation are not counted) and bytes per
 * client.
 *
 * The bound printed next to it is measured in the same run on the same thread:
 *   prg_bound_s = keystream words the round must generate x 4 bytes / raw keystream
 *                 throughput of the chosen PRG (fv_prg_expand_u32 over 64 MiB, best of 3)
 *   ka_bound_s  = key agreements the round must do x time of one fv_kx_agree (best of 3
 *                 batches of 200)
 * The counts are those the state machines performed (fv_secagg_stats_t); for classic
 * SecAgg they are also recomputed here in closed form from |U1|..|U3| and must agree:
 *   PRG words: clients |U3| (1 + |U2| - 1) d, server |U3| d + |U2 \ U3| |U3| d
 *   key agreements: clients |U2| (|U1| - 1) (share encryption; the same symmetric keys
 *                   decrypt, so decryption adds none)
 *                   + |U3| (|U2| - 1) (masks), server |U2 \ U3| |U3|
 * Not in the bound: signatures (Ed25519 sign/verify), Shamir, AEAD, the consistency MACs,
 * X25519 key generation, the accumulator adds. Their counts are printed ("work:" line,
 * and *_clients / *_server in --json) so the gap to the bound can be attributed: at n = 50
 * it is mostly the 49 Ed25519 verifications per client in share keys (each peer's
 * ADVERTISE signature, which authenticates the keys the shares are encrypted to).
 *
 * Threads (--threads N): the simulator's per-client steps of each phase run on a pool of N
 * threads (this thread plus N-1 started once per run, before the timed run starts; each
 * parallel-for hands out client indices through an atomic counter, so uneven clients
 * balance). The server and the routing stay on this thread, and the simulator makes the
 * result and every counter identical to --threads 1. wall_s is what the threads shorten;
 * the CPU figures are per-thread CPU times summed over all threads, so they do not.
 * The step hook runs on worker threads: it keeps the start time per party and adds each
 * step into that client's own (client, phase) slot; the totals are summed afterwards.
 * The server's unmasking (closing phase 4) also runs on the pool
 * (fv_secagg_server_set_par_for, through the simulator): the helpers' thread CPU spent in
 * jobs during a server step is added to that server step, so the CPU totals still count
 * every thread; "server unmask" prints that CPU and the step's wall time.
 *
 * Exit status 0 only when the sum is exact.
 *
 * bench predict: scoring latency and throughput of fv_model_predict_ws, which is exactly
 * what `fedvault predict` scores with (preprocessing of the decoded cells + the network; the
 * CSV decoding is not timed: the file is decoded once, with fv_dataset_load, before the
 * clock starts). Each call scores B rows taken in order from the data, wrapping around at
 * the end, so consecutive calls see different rows (a ring of row indices of length
 * n_rows + B is built once; call i passes a window of it). clock_gettime(CLOCK_MONOTONIC)
 * is read around every call; the per-call times give the median and p90 latency, and
 * rows/s = B x calls / the sum of the per-call times (the loop's own overhead is not
 * counted). A few untimed warm-up calls come first (page faults, OpenBLAS start-up).
 * One OpenBLAS thread unless --threads says otherwise, as in `fedvault predict`, so the
 * figures compare with a single-threaded runtime. The scoring workspace (fv_model_ws_t:
 * encoded rows, row numbers, activations) is made once before timing, as a server or
 * `fedvault predict` keeps one, so the timed calls allocate nothing. It holds
 * min(B, FV_MODEL_PREDICT_CHUNK = 1024) rows: a batch of more rows is scored in chunks of
 * 1024, the chunks `fedvault predict` and fv_model_predict score in.
 */
#include "cli-int.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv-config.h"
#include "fv_blas.h"
#include "fv_crypto.h"
#include "fv_dataset.h"
#include "fv_model.h"
#include "fv_secagg.h"

#define CMD "bench"

/* The options every benchmark takes (the last entries of its option table: --threads 'T',
 * --json 'j', --help 'h'), and the unknown ones: c as getopt_long returned it, for the
 * benchmark `name` whose usage text is `help`. -h prints help, --threads N (1..256) sets
 * *threads, --json sets *json. Returns -1 when parsing goes on, else the exit status
 * to return now (FV_EXIT_OK after --help, FV_EXIT_USAGE on a bad or unknown option). */
static int bench_common_opt(int c, const char *name, const char *help, size_t *threads, bool *json)
{
    switch (c) {
    case 'h':
        fputs(help, stdout);
        return FV_EXIT_OK;
    case 'T':
        return fv_cli_parse_size(CMD, "--threads", optarg, 1, 256, threads) ? -1 : FV_EXIT_USAGE;
    case 'j':
        *json = true;
        return -1;
    default:
        fprintf(stderr, "Try 'fedvault %s %s --help'.\n", CMD, name);
        return FV_EXIT_USAGE;
    }
}

/* `out` on stdout, indented, reals to 6 significant digits; FV_ENOMEM when it cannot be
 * formatted (nothing printed then). */
static int bench_json_print(const json_t *out)
{
    char *s = json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (s == NULL)
        return FV_ENOMEM;
    puts(s);
    free(s);
    return 0;
}

static const char usage[] =
    "Usage: fedvault bench secagg --clients N --dim D [--neighbors K] [--threshold T]\n"
    "                             [--dropout F] [--dropout-phase P] [--seed S]\n"
    "                             [--prg chacha20|aes256ctr|aes128ctr] [--threads N] [--json]\n"
    "\n"
    "Run one secure-aggregation round (SecAgg, or SecAgg+ when K < N-1) with N clients\n"
    "and the server in this process, check the unmasked sum is exact, and report CPU\n"
    "time and bytes per phase against the PRG and key-agreement bound of the run.\n"
    "\n"
    "  --clients N         cohort size (3..65535)\n"
    "  --dim D             vector length in uint32 words\n"
    "  --neighbors K       neighbours per client: N-1 (default, classic) or even 2..N-2\n"
    "  --threshold T       Shamir threshold; default floor(2(K+1)/3)+1 (> (K+1)/2 as\n"
    "                      required, 2/3 of the share holders)\n"
    "  --dropout F         fraction of clients that drop out (default 0)\n"
    "  --dropout-phase P   phase they stop at: 0 advertise, 1 share keys, 2 masked input\n"
    "                      (default: right after share keys, the costliest for the\n"
    "                      server), 3 consistency, 4 unmask\n"
    "  --seed S            seed of keys, inputs and dropouts (default 1)\n"
    "  --prg NAME          mask generator (default: the library's FV_PRG_DEFAULT)\n"
    "  --threads N         threads running the clients' steps (default 1; the server\n"
    "                      stays on one thread; CPU times are summed over threads)\n"
    "  --json              one JSON object on stdout\n"
    "  -h, --help          this text\n"
    "  --validate          a round of input validation instead (fv_valid.h): see\n"
    "                      'fedvault bench secagg --validate --help'\n"
    "\n"
    "Exit status: 0 exact sum, 1 failure or inexact, 2 usage error.\n";

static const struct option long_opts[] = {
    {"clients", required_argument, NULL, 'n'},
    {"dim", required_argument, NULL, 'd'},
    {"neighbors", required_argument, NULL, 'k'},
    {"threshold", required_argument, NULL, 't'},
    {"dropout", required_argument, NULL, 'f'},
    {"dropout-phase", required_argument, NULL, 'p'},
    {"seed", required_argument, NULL, 's'},
    {"prg", required_argument, NULL, 'g'},
    {"threads", required_argument, NULL, 'T'},
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char *const phase_names[FV_SECAGG_N_PHASES] = {
    "advertise", "share_keys", "masked_input", "consistency", "unmask"};

/* Written by the step hook: server_* on the caller's thread only; client_t0[u] and
 * client_step[u * FV_SECAGG_N_PHASES + p] only by the thread running client u's step. */
struct pool;
static double pool_helper_cpu(const struct pool *p);

typedef struct timing {
    uint32_t n;
    const struct pool *pool; /* the server's par_for work on helper threads is added */
    double server_t0, server_wall_t0, server_helper0;
    double server_cpu[FV_SECAGG_N_PHASES];
    double server_wall[FV_SECAGG_N_PHASES];
    double *client_t0;   /* per client */
    double *client_step; /* n x phases: CPU of that client's step(s) in that phase */
    /* summed after the run */
    double client_cpu[FV_SECAGG_N_PHASES];
    double *client_total; /* per client, all phases */
    double *client_phase_max;
} timing_t;

/* A fixed pool for the simulator's par_for: the caller's thread works too, so n_threads
 * = 1 starts nothing. One job at a time (par_for is only called from the caller). */
typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    pthread_t *helpers;
    unsigned n_helpers, n_started;
    uint64_t gen; /* bumped per job */
    bool stop;
    unsigned busy; /* helpers still in the current job */
    void (*fn)(void *arg, size_t i);
    void *arg;
    size_t n;
    atomic_size_t next;
    double helper_cpu; /* thread CPU the helpers spent in jobs, summed (under mu) */
} pool_t;

static double thread_cpu_s(void);

static double pool_helper_cpu(const struct pool *p)
{
    return p ? p->helper_cpu : 0;
}

static void pool_drain(pool_t *p)
{
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n)
            return;
        p->fn(p->arg, i);
    }
}

static void *pool_main(void *arg)
{
    pool_t *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop)
            break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        double t0 = thread_cpu_s();
        pool_drain(p);
        double dt = thread_cpu_s() - t0;
        pthread_mutex_lock(&p->mu);
        p->helper_cpu += dt;
        if (--p->busy == 0)
            pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_par_for(void *ctx, size_t n, void (*fn)(void *arg, size_t i), void *arg)
{
    pool_t *p = ctx;
    if (p->n_started == 0 || n < 2) {
        for (size_t i = 0; i < n; i++)
            fn(arg, i);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->busy = p->n_started;
    p->gen++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    pool_drain(p);
    pthread_mutex_lock(&p->mu); /* the helpers' writes are visible once busy is 0 */
    while (p->busy > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void pool_stop(pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_started; i++)
        pthread_join(p->helpers[i], NULL);
    free(p->helpers);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
}

/* n_threads - 1 helpers; FV_ENOMEM or the pthread_create error (already stopped then). */
static int pool_start(pool_t *p, unsigned n_threads)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next, 0);
    p->n_helpers = n_threads - 1;
    if (p->n_helpers == 0)
        return 0;
    if ((p->helpers = calloc(p->n_helpers, sizeof(*p->helpers))) == NULL) {
        pool_stop(p);
        return FV_ENOMEM;
    }
    for (; p->n_started < p->n_helpers; p->n_started++) {
        int err = pthread_create(&p->helpers[p->n_started], NULL, pool_main, p);
        if (err != 0) {
            pool_stop(p);
            return -err;
        }
    }
    return 0;
}

static double cpu_s(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double thread_cpu_s(void)
{
    return cpu_s(CLOCK_THREAD_CPUTIME_ID);
}

static void step_hook(void *ud, uint32_t phase, uint32_t party, fv_secagg_hook_when_t when)
{
    timing_t *t = ud;
    double now = thread_cpu_s();
    if (party == FV_SECAGG_SERVER) {
        /* Server steps run on this thread while no client step runs, so the helpers'
         * CPU between BEFORE and AFTER is the server's pooled work (phase 4's unmasking). */
        if (when == FV_SECAGG_HOOK_BEFORE) {
            t->server_t0 = now;
            t->server_wall_t0 = fv_cli_now_s();
            t->server_helper0 = pool_helper_cpu(t->pool);
        } else {
            t->server_cpu[phase] +=
                now - t->server_t0 + pool_helper_cpu(t->pool) - t->server_helper0;
            t->server_wall[phase] += fv_cli_now_s() - t->server_wall_t0;
        }
    } else if (when == FV_SECAGG_HOOK_BEFORE) {
        t->client_t0[party] = now;
    } else {
        t->client_step[(size_t)party * FV_SECAGG_N_PHASES + phase] += now - t->client_t0[party];
    }
}

/* The per-client slots into the totals, in id order. */
static void timing_sum(timing_t *t)
{
    for (uint32_t u = 0; u < t->n; u++)
        for (int p = 0; p < FV_SECAGG_N_PHASES; p++) {
            double dt = t->client_step[(size_t)u * FV_SECAGG_N_PHASES + p];
            t->client_cpu[p] += dt;
            t->client_total[u] += dt;
            if (dt > t->client_phase_max[p])
                t->client_phase_max[p] = dt;
        }
}

/* Raw keystream throughput of the PRG, bytes per second (best of 3 over 64 MiB). */
static int measure_prg(fv_prg_kind_t kind, double *ret_Bps)
{
    const size_t words = (size_t)16 << 20;
    uint32_t *buf = malloc(words * sizeof(uint32_t));
    uint8_t seed[FV_PRG_SEED_BYTES] = {1};
    double best = 1e30;
    if (buf == NULL)
        return FV_ENOMEM;
    for (int r = 0; r < 3; r++) {
        double t0 = thread_cpu_s();
        int rc = fv_prg_expand_u32(kind, seed, buf, words);
        double dt = thread_cpu_s() - t0;
        if (rc < 0) {
            free(buf);
            return rc;
        }
        if (dt < best)
            best = dt;
    }
    free(buf);
    *ret_Bps = (double)words * 4 / best;
    return 0;
}

/* Seconds per fv_kx_agree (best of 3 batches of 200). */
static int measure_kx(double *ret_s)
{
    fv_rand_t r;
    uint8_t pk1[32], sk1[32], pk2[32], sk2[32], key[32];
    fv_rand_seeded_u64(&r, 7);
    int rc;
    if ((rc = fv_kx_keypair(&r, pk1, sk1)) < 0 || (rc = fv_kx_keypair(&r, pk2, sk2)) < 0)
        return rc;
    double best = 1e30;
    for (int b = 0; b < 3; b++) {
        double t0 = thread_cpu_s();
        for (int i = 0; i < 200; i++)
            if ((rc = fv_kx_agree(key, sk1, pk1, pk2, "bench", 5)) < 0)
                return rc;
        double dt = (thread_cpu_s() - t0) / 200;
        if (dt < best)
            best = dt;
    }
    fv_crypto_wipe(sk1, sizeof(sk1));
    fv_crypto_wipe(sk2, sizeof(sk2));
    fv_crypto_wipe(key, sizeof(key));
    *ret_s = best;
    return 0;
}

static const char *prg_name(fv_prg_kind_t k)
{
    return k == FV_PRG_CHACHA20 ? "chacha20" : k == FV_PRG_AES128CTR ? "aes128ctr" : "aes256ctr";
}

static int bench_secagg(int argc, char **argv)
{
    size_t n = 0, dim = 0, k = 0, t = 0, phase = 2, threads = 1;
    double frac = 0;
    uint64_t seed = 1;
    bool json = false, have_k = false, have_t = false;
    fv_prg_kind_t prg = FV_PRG_DEFAULT;
    int c, r, rc = FV_EXIT_FAIL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (!fv_cli_parse_size(CMD, "--clients", optarg, 3, FV_SECAGG_MAX_CLIENTS, &n))
                return FV_EXIT_USAGE;
            break;
        case 'd':
            if (!fv_cli_parse_size(CMD, "--dim", optarg, 1, FV_SECAGG_MAX_DIM, &dim))
                return FV_EXIT_USAGE;
            break;
        case 'k':
            if (!fv_cli_parse_size(CMD, "--neighbors", optarg, 2, FV_SECAGG_MAX_CLIENTS, &k))
                return FV_EXIT_USAGE;
            have_k = true;
            break;
        case 't':
            if (!fv_cli_parse_size(CMD, "--threshold", optarg, 1, FV_SECAGG_MAX_CLIENTS, &t))
                return FV_EXIT_USAGE;
            have_t = true;
            break;
        case 'f':
            if (!fv_cli_parse_double(CMD, "--dropout", optarg, 0, 0.99, &frac))
                return FV_EXIT_USAGE;
            break;
        case 'p':
            if (!fv_cli_parse_size(CMD, "--dropout-phase", optarg, 0, 4, &phase))
                return FV_EXIT_USAGE;
            break;
        case 's':
            if (!fv_cli_parse_u64(CMD, "--seed", optarg, &seed))
                return FV_EXIT_USAGE;
            break;
        case 'g':
            if (strcmp(optarg, "chacha20") == 0)
                prg = FV_PRG_CHACHA20;
            else if (strcmp(optarg, "aes256ctr") == 0 || strcmp(optarg, "aes") == 0)
                prg = FV_PRG_AES256CTR;
            else if (strcmp(optarg, "aes128ctr") == 0)
                prg = FV_PRG_AES128CTR;
            else
                return fv_cli_usage_error(
                    CMD, "--prg: '%s' is not chacha20, aes256ctr or aes128ctr", optarg);
            break;
        default:
            if ((r = bench_common_opt(c, "secagg", usage, &threads, &json)) >= 0)
                return r;
            break;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (n == 0 || dim == 0)
        return fv_cli_usage_error(CMD, "--clients and --dim are required");
    if (!have_k)
        k = n - 1;
    if (!have_t)
        t = 2 * (k + 1) / 3 + 1;
    if (t > k + 1)
        t = k + 1;

    fv_secagg_sim_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.params.job_id = 1;
    cfg.params.round = 1;
    cfg.params.n_clients = (uint32_t)n;
    cfg.params.threshold = (uint32_t)t;
    cfg.params.n_neighbors = (uint32_t)k;
    cfg.params.dim = (uint32_t)dim;
    cfg.params.prg = prg;
    for (int i = 0; i < FV_SECAGG_GRAPH_SEED_BYTES; i++)
        cfg.params.graph_seed[i] = (uint8_t)(seed >> (8 * (i % 8)));
    cfg.seed = seed;
    cfg.dropout_fraction = frac;
    cfg.dropout_phase = (uint32_t)phase;
    uint8_t dummy_pk[32] = {0};
    cfg.params.identity_pks = dummy_pk; /* the simulator makes the real ones */
    fv_diag_t d = {""};
    if (fv_secagg_params_check(&cfg.params, NULL, &d) < 0)
        return fv_cli_usage_error(CMD, "%s", d.msg);
    if (fv_crypto_init() < 0) {
        fv_cli_error(CMD, "crypto initialization failed");
        return FV_EXIT_FAIL;
    }

    timing_t tm;
    memset(&tm, 0, sizeof(tm));
    tm.n = (uint32_t)n;
    tm.client_total = calloc(n, sizeof(double));
    tm.client_phase_max = calloc(FV_SECAGG_N_PHASES, sizeof(double));
    tm.client_t0 = calloc(n, sizeof(double));
    tm.client_step = calloc(n * FV_SECAGG_N_PHASES, sizeof(double));
    fv_secagg_sim_result_t res;
    memset(&res, 0, sizeof(res));
    json_t *out = NULL;
    if (tm.client_total == NULL || tm.client_phase_max == NULL || tm.client_t0 == NULL ||
        tm.client_step == NULL) {
        fv_cli_error(CMD, "out of memory");
        goto out;
    }
    cfg.step_hook = step_hook;
    cfg.hook_ud = &tm;

    double prg_Bps, kx_s;
    if ((r = measure_prg(prg, &prg_Bps)) < 0 || (r = measure_kx(&kx_s)) < 0) {
        fv_cli_error(CMD, "measuring the PRG/key agreement failed: %s", fv_strerror(r));
        goto out;
    }

    char machine[384];
    fv_machine_line(machine, sizeof machine);
    fprintf(stderr,
            "fedvault bench: secagg n=%zu d=%zu k=%zu t=%zu dropout %.0f%% at phase %zu, "
            "%zu thread%s\nmachine: %s\n",
            n, dim, k, t, frac * 100, phase, threads, threads == 1 ? "" : "s", machine);
    /* The pool's start is inside the timed run (it is part of what --threads costs). */
    pool_t pool;
    double proc0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    double wall0 = fv_cli_now_s();
    if ((r = pool_start(&pool, (unsigned)threads)) < 0) {
        fv_cli_error(CMD, "starting %zu threads failed: %s", threads, fv_strerror(r));
        goto out;
    }
    double pool_start_s = fv_cli_now_s() - wall0;
    if (threads > 1) {
        cfg.par_for = pool_par_for;
        cfg.par_ctx = &pool;
        tm.pool = &pool;
    }
    r = fv_secagg_sim_run(&cfg, &res, &d);
    double wall_s = fv_cli_now_s() - wall0;
    double process_cpu_s = cpu_s(CLOCK_PROCESS_CPUTIME_ID) - proc0;
    pool_stop(&pool);
    timing_sum(&tm);
    if (r < 0) {
        fv_cli_error(CMD, "round aborted (%s): %s%s", fv_err_name(r), d.msg,
                     r == FV_ETHRESHOLD ? " (fewer survivors than the threshold: lower --dropout "
                                          "or --threshold, or raise --neighbors)"
                                        : "");
        goto out;
    }

    double client_cpu = 0, server_cpu = 0, per_client_max = 0;
    for (int p = 0; p < FV_SECAGG_N_PHASES; p++) {
        client_cpu += tm.client_cpu[p];
        server_cpu += tm.server_cpu[p];
    }
    for (size_t u = 0; u < n; u++)
        if (tm.client_total[u] > per_client_max)
            per_client_max = tm.client_total[u];
    double total_cpu = client_cpu + server_cpu;
    uint64_t prg_words = res.clients.prg_words + res.server.prg_words;
    uint64_t n_kx = res.clients.n_kx + res.server.n_kx;
    double prg_bound = (double)prg_words * 4 / prg_Bps;
    double ka_bound = (double)n_kx * kx_s;
    double bound = prg_bound + ka_bound;

    /* closed-form counts for classic SecAgg (the sparse graph needs the sets themselves) */
    bool counts_checked = false, counts_ok = true;
    if (k == n - 1) {
        uint64_t u1 = res.set_size[1], u2 = res.set_size[2], u3 = res.set_size[3];
        uint64_t w = (uint64_t)dim;
        counts_checked = true;
        counts_ok = res.clients.prg_words == u3 * u2 * w &&
                    res.server.prg_words == u3 * w + (u2 - u3) * u3 * w &&
                    res.clients.n_kx == u2 * (u1 - 1) + u3 * (u2 - 1) &&
                    res.server.n_kx == (u2 - u3) * u3;
        if (!counts_ok)
            fv_cli_error(CMD, "work counters disagree with the closed form (a bug)");
    }

    if (json) {
        out = json_object();
        json_object_set_new(out, "exact", json_boolean(res.exact));
        json_object_set_new(out, "clients", json_integer((json_int_t)n));
        json_object_set_new(out, "dim", json_integer((json_int_t)dim));
        json_object_set_new(out, "neighbors", json_integer((json_int_t)k));
        json_object_set_new(out, "threshold", json_integer((json_int_t)t));
        json_object_set_new(out, "dropout", json_real(frac));
        json_object_set_new(out, "dropout_phase", json_integer((json_int_t)phase));
        json_object_set_new(out, "dropped", json_integer(res.n_dropped));
        json_object_set_new(out, "seed", json_integer((json_int_t)seed));
        json_object_set_new(out, "prg", json_string(prg_name(prg)));
        json_t *sets = json_array();
        for (int i = 1; i <= 5; i++)
            json_array_append_new(sets, json_integer(res.set_size[i]));
        json_object_set_new(out, "set_sizes_U1_U5", sets);
        json_object_set_new(out, "total_cpu_s", json_real(total_cpu));
        json_object_set_new(out, "client_cpu_s", json_real(client_cpu));
        json_object_set_new(out, "server_cpu_s", json_real(server_cpu));
        json_object_set_new(out, "per_client_cpu_mean_s", json_real(client_cpu / (double)n));
        json_object_set_new(out, "per_client_cpu_max_s", json_real(per_client_max));
        json_object_set_new(out, "threads", json_integer((json_int_t)threads));
        json_object_set_new(out, "machine", json_string(machine));
        json_object_set_new(out, "wall_s", json_real(wall_s));
        json_object_set_new(out, "pool_start_s", json_real(pool_start_s));
        /* all threads, including the simulator's own work (keys, inputs, routing) */
        json_object_set_new(out, "process_cpu_s", json_real(process_cpu_s));
        json_object_set_new(out, "prg_bound_s", json_real(prg_bound));
        json_object_set_new(out, "ka_bound_s", json_real(ka_bound));
        json_object_set_new(out, "total_over_bound", json_real(total_cpu / bound));
        json_object_set_new(out, "prg_bytes_per_s", json_real(prg_Bps));
        json_object_set_new(out, "kx_us", json_real(kx_s * 1e6));
        json_object_set_new(out, "prg_words_clients",
                            json_integer((json_int_t)res.clients.prg_words));
        json_object_set_new(out, "prg_words_server",
                            json_integer((json_int_t)res.server.prg_words));
        json_object_set_new(out, "kx_clients", json_integer((json_int_t)res.clients.n_kx));
        json_object_set_new(out, "kx_server", json_integer((json_int_t)res.server.n_kx));
        json_object_set_new(out, "verify_clients", json_integer((json_int_t)res.clients.n_verify));
        json_object_set_new(out, "verify_server", json_integer((json_int_t)res.server.n_verify));
        json_object_set_new(out, "sign_clients", json_integer((json_int_t)res.clients.n_sign));
        json_object_set_new(out, "mac_clients", json_integer((json_int_t)res.clients.n_mac));
        json_object_set_new(out, "aead_clients", json_integer((json_int_t)res.clients.n_aead));
        json_object_set_new(out, "keygen_clients", json_integer((json_int_t)res.clients.n_keygen));
        json_object_set_new(out, "keygen_server", json_integer((json_int_t)res.server.n_keygen));
        json_object_set_new(out, "server_unmask_cpu_s", json_real(tm.server_cpu[4]));
        json_object_set_new(out, "server_unmask_wall_s", json_real(tm.server_wall[4]));
        json_object_set_new(out, "counts_match_closed_form",
                            counts_checked ? json_boolean(counts_ok) : json_null());
        json_t *phases = json_array();
        for (int p = 0; p < FV_SECAGG_N_PHASES; p++) {
            json_t *o = json_object();
            json_object_set_new(o, "phase", json_integer(p));
            json_object_set_new(o, "name", json_string(phase_names[p]));
            json_object_set_new(o, "clients_active", json_integer(res.n_active[p]));
            json_object_set_new(o, "client_cpu_s", json_real(tm.client_cpu[p]));
            json_object_set_new(
                o, "client_cpu_mean_s",
                json_real(res.n_active[p] ? tm.client_cpu[p] / res.n_active[p] : 0));
            json_object_set_new(o, "client_cpu_max_s", json_real(tm.client_phase_max[p]));
            json_object_set_new(o, "server_cpu_s", json_real(tm.server_cpu[p]));
            json_object_set_new(o, "bytes_up_max_per_client",
                                json_integer((json_int_t)res.max_bytes_up[p]));
            json_object_set_new(o, "bytes_down_max_per_client",
                                json_integer((json_int_t)res.max_bytes_down[p]));
            json_object_set_new(o, "bytes_up_total", json_integer((json_int_t)res.bytes_up[p]));
            json_object_set_new(o, "bytes_down_total", json_integer((json_int_t)res.bytes_down[p]));
            json_array_append_new(phases, o);
        }
        json_object_set_new(out, "phases", phases);
        (void)bench_json_print(out); /* as before: the exit status is the sum's */
    } else {
        printf("machine: %s\n", machine);
        printf("secagg: n=%zu d=%zu k=%zu t=%zu prg=%s; dropout %u clients at phase %zu\n", n, dim,
               k, t, prg_name(prg), res.n_dropped, phase);
        printf("sets: |U1|=%u |U2|=%u |U3|=%u |U4|=%u unmask answers=%u\n", res.set_size[1],
               res.set_size[2], res.set_size[3], res.set_size[4], res.set_size[5]);
        printf("%-14s %6s %12s %12s %12s %11s %11s\n", "phase", "active", "client cpu",
               "mean/client", "server cpu", "up/client", "down/client");
        for (int p = 0; p < FV_SECAGG_N_PHASES; p++)
            printf("%d %-12s %6u %11.4fs %11.6fs %11.4fs %10lluB %10lluB\n", p, phase_names[p],
                   res.n_active[p], tm.client_cpu[p],
                   res.n_active[p] ? tm.client_cpu[p] / res.n_active[p] : 0.0, tm.server_cpu[p],
                   (unsigned long long)res.max_bytes_up[p],
                   (unsigned long long)res.max_bytes_down[p]);
        printf("cpu: clients %.4f s (mean %.6f s, max %.6f s per client), server %.4f s, "
               "total %.4f s; wall %.3f s on %zu thread%s\n",
               client_cpu, client_cpu / (double)n, per_client_max, server_cpu, total_cpu, wall_s,
               threads, threads == 1 ? "" : "s");
        printf("bound: prg %.4f s (%llu words at %.2f GB/s) + ka %.4f s (%llu x %.1f us) = "
               "%.4f s; total cpu / bound = %.2f\n",
               prg_bound, (unsigned long long)prg_words, prg_Bps / 1e9, ka_bound,
               (unsigned long long)n_kx, kx_s * 1e6, bound, total_cpu / bound);
        printf("work: clients sign %llu, verify %llu, mac %llu, aead %llu, kx %llu, keygen %llu; "
               "server verify %llu, kx %llu, keygen %llu\n",
               (unsigned long long)res.clients.n_sign, (unsigned long long)res.clients.n_verify,
               (unsigned long long)res.clients.n_mac, (unsigned long long)res.clients.n_aead,
               (unsigned long long)res.clients.n_kx, (unsigned long long)res.clients.n_keygen,
               (unsigned long long)res.server.n_verify, (unsigned long long)res.server.n_kx,
               (unsigned long long)res.server.n_keygen);
        printf("server unmask: cpu %.4f s, wall %.4f s (%zu thread%s)\n", tm.server_cpu[4],
               tm.server_wall[4], threads, threads == 1 ? "" : "s");
        printf("exact: %s\n", res.exact ? "yes" : "NO");
    }
    rc = res.exact && counts_ok ? FV_EXIT_OK : FV_EXIT_FAIL;
    if (!res.exact)
        fv_cli_error(CMD, "the unmasked sum differs from the plaintext sum of the survivors");
out:
    json_decref(out);
    free(res.sum);
    free(tm.client_total);
    free(tm.client_phase_max);
    free(tm.client_t0);
    free(tm.client_step);
    return rc;
}

/* ---- bench predict ------------------------------------------------------------------- */

#define PREDICT_MAX_BATCH ((size_t)1 << 20)
#define PREDICT_MAX_ITERS ((size_t)100000000)
#define PREDICT_WARMUP 5

static const char predict_usage[] =
    "Usage: fedvault bench predict --model MODEL --data FILE --batch B\n"
    "                              [--seconds S | --iters N] [--threads N] [--json]\n"
    "\n"
    "Time fv_model_predict_ws -- what 'fedvault predict' scores with: preprocessing and\n"
    "the network -- on batches of B rows of FILE, over many calls. FILE is decoded once,\n"
    "and the scoring workspace made once, before timing, so the calls allocate nothing; the\n"
    "batches take FILE's rows in order and wrap around. Each call is timed with the\n"
    "monotonic clock; prints the median and p90 latency per call and rows/s (B x calls /\n"
    "time spent in the calls). A few untimed warm-up calls come first. A batch of more\n"
    "than 1024 rows is scored in chunks of 1024, as 'fedvault predict' scores.\n"
    "\n"
    "  --model MODEL       model file written by 'fedvault train' or 'fedvault distill'\n"
    "  --data FILE         CSV file with the columns of the model's schema and its target\n"
    "  --batch B           rows per call (1..1048576; more than FILE holds repeats rows)\n"
    "  --seconds S         keep calling for S seconds of timed calls (default 2)\n"
    "  --iters N           exactly N timed calls instead\n"
    "  --threads N         OpenBLAS threads (default 1)\n"
    "  --json              one JSON object on stdout\n"
    "  -h, --help          this text\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

static const struct option predict_opts[] = {
    {"model", required_argument, NULL, 'm'},
    {"data", required_argument, NULL, 'd'},
    {"batch", required_argument, NULL, 'b'},
    {"seconds", required_argument, NULL, 'S'},
    {"iters", required_argument, NULL, 'i'},
    {"threads", required_argument, NULL, 'T'},
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q-quantile of sorted v[0..n), n >= 1: the nearest-rank value v[ceil(q n) - 1]. */
static double quantile(const double *v, size_t n, double q)
{
    size_t k = (size_t)ceil(q * (double)n);
    return v[k == 0 ? 0 : (k > n ? n - 1 : k - 1)];
}

static int bench_predict(int argc, char **argv)
{
    const char *model_path = NULL, *data = NULL;
    size_t batch = 0, iters = 0, threads = FV_DEFAULT_BLAS_THREADS;
    double seconds = 2;
    bool json = false, have_seconds = false;
    int c, r, rc = FV_EXIT_FAIL;
    fv_diag_t d = {""};
    fv_model_t *model = NULL;
    fv_model_ws_t *ws = NULL;
    fv_dataset_t *ds = NULL;
    size_t *ring = NULL;
    float *prob = NULL;
    double *lat = NULL;
    size_t n_lat = 0, cap = 0;
    json_t *out = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", predict_opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model_path = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'b':
            if (!fv_cli_parse_size(CMD, "--batch", optarg, 1, PREDICT_MAX_BATCH, &batch))
                return FV_EXIT_USAGE;
            break;
        case 'S':
            if (!fv_cli_parse_double(CMD, "--seconds", optarg, 0.001, 86400, &seconds))
                return FV_EXIT_USAGE;
            have_seconds = true;
            break;
        case 'i':
            if (!fv_cli_parse_size(CMD, "--iters", optarg, 1, PREDICT_MAX_ITERS, &iters))
                return FV_EXIT_USAGE;
            break;
        default:
            if ((r = bench_common_opt(c, "predict", predict_usage, &threads, &json)) >= 0)
                return r;
            break;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (model_path == NULL || data == NULL || batch == 0)
        return fv_cli_usage_error(CMD, "--model MODEL, --data FILE and --batch B are required");
    if (have_seconds && iters > 0)
        return fv_cli_usage_error(CMD, "--seconds and --iters exclude each other");
    fv_cli_set_threads(threads);

    if ((r = fv_model_load(model_path, &model, &d)) != 0 ||
        (r = fv_dataset_load(data, model->schema, &ds, &d)) != 0) {
        fv_cli_error(CMD, "%s", d.msg[0] ? d.msg : fv_strerror(r));
        goto out;
    }
    size_t n_rows = ds->n_rows, n_out = fv_mlp_arch(model->mlp)->n_out;
    /* batch <= 2^20, n_rows < 2^32 (line numbers are u32), n_out <= FV_MLP_MAX_WIDTH */
    ring = malloc((n_rows + batch) * sizeof *ring);
    prob = malloc(batch * n_out * sizeof *prob);
    cap = iters > 0 ? iters : 4096;
    lat = malloc(cap * sizeof *lat);
    if (ring == NULL || prob == NULL || lat == NULL)
        goto oom;
    /* 1 <= batch, and 1024 <= FV_MODEL_WS_MAX_BATCH: only FV_ENOMEM can fail */
    if (fv_model_ws_new(model, batch < FV_MODEL_PREDICT_CHUNK ? batch : FV_MODEL_PREDICT_CHUNK,
                        &ws) != 0)
        goto oom;
    for (size_t i = 0; i < n_rows + batch; i++)
        ring[i] = i % n_rows;

    char machine[384];
    fv_machine_line(machine, sizeof machine);
    fprintf(stderr,
            "fedvault bench: predict %s, %zu rows of %s, batch %zu, %zu thread%s\nmachine: %s\n",
            model_path, n_rows, data, batch, threads, threads == 1 ? "" : "s", machine);
    size_t at = 0;
    for (int w = 0; w < PREDICT_WARMUP; w++) {
        if ((r = fv_model_predict_ws(model, ws, ds, ring + at, batch, prob)) != 0)
            goto fail;
        at = (at + batch) % n_rows;
    }
    double busy_s = 0, wall0 = fv_cli_now_s();
    for (;;) {
        if (iters > 0 ? n_lat == iters : busy_s >= seconds || n_lat == PREDICT_MAX_ITERS)
            break;
        if (n_lat == cap) {
            double *g = realloc(lat, 2 * cap * sizeof *lat);
            if (g == NULL)
                goto oom;
            lat = g;
            cap *= 2;
        }
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = fv_model_predict_ws(model, ws, ds, ring + at, batch, prob);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r != 0)
            goto fail;
        double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        lat[n_lat++] = dt;
        busy_s += dt;
        at = (at + batch) % n_rows;
    }
    double wall_s = fv_cli_now_s() - wall0;
    qsort(lat, n_lat, sizeof *lat, cmp_double);
    double med = quantile(lat, n_lat, 0.5), p90 = quantile(lat, n_lat, 0.9);
    double rows_per_s = (double)batch * (double)n_lat / busy_s;
    const fv_mlp_arch_t *a = fv_mlp_arch(model->mlp);

    if (json) {
        out = json_object();
        json_object_set_new(out, "runtime", json_string("fedvault"));
        json_object_set_new(out, "model", json_string(model_path));
        json_object_set_new(out, "features", json_integer((json_int_t)a->n_in));
        json_object_set_new(out, "outputs", json_integer((json_int_t)a->n_out));
        json_object_set_new(out, "data_rows", json_integer((json_int_t)n_rows));
        json_object_set_new(out, "batch", json_integer((json_int_t)batch));
        json_object_set_new(out, "threads", json_integer((json_int_t)threads));
        json_object_set_new(out, "machine", json_string(machine));
        json_object_set_new(out, "calls", json_integer((json_int_t)n_lat));
        json_object_set_new(out, "median_s", json_real(med));
        json_object_set_new(out, "p90_s", json_real(p90));
        json_object_set_new(out, "min_s", json_real(lat[0]));
        json_object_set_new(out, "mean_s", json_real(busy_s / (double)n_lat));
        json_object_set_new(out, "busy_s", json_real(busy_s));
        json_object_set_new(out, "wall_s", json_real(wall_s));
        json_object_set_new(out, "rows_per_s", json_real(rows_per_s));
        if (bench_json_print(out) < 0)
            goto oom;
    } else {
        printf("predict: %s (%zu features, %zu output%s), batch %zu, %zu thread%s\n", model_path,
               a->n_in, a->n_out, a->n_out == 1 ? "" : "s", batch, threads,
               threads == 1 ? "" : "s");
        printf("%zu calls in %.3f s: median %.3f us, p90 %.3f us, min %.3f us per call; "
               "%.0f rows/s\n",
               n_lat, busy_s, med * 1e6, p90 * 1e6, lat[0] * 1e6, rows_per_s);
    }
    rc = FV_EXIT_OK;
    goto out;
fail:
    fv_cli_error(CMD, "%s: scoring %zu rows of %s failed: %s", model_path, batch, data,
                 fv_strerror(r));
    goto out;
oom:
    fv_cli_error(CMD, "out of memory");
out:
    json_decref(out);
    free(lat);
    free(prob);
    free(ring);
    fv_model_ws_free(ws);
    fv_dataset_free(ds);
    fv_model_free(model);
    return rc;
}

static const char machine_usage[] =
    "Usage: fedvault bench machine [--threads N] [--json]\n"
    "\n"
    "Prints the line every benchmark report starts with: the CPU model, CPUs online, the\n"
    "AES/AVX extensions present, OpenBLAS' version, the core it picked and its thread count\n"
    "(after --threads N, default 1). --json: {\"machine\": ..., \"blas_core\": ...,\n"
    "\"blas_threads\": ...}.\n";

static int bench_machine(int argc, char **argv)
{
    size_t threads = 1;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(machine_usage, stdout);
            return FV_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (!fv_cli_parse_size(CMD, "--threads", argv[++i], 1, 256, &threads))
                return FV_EXIT_USAGE;
        } else {
            return fv_cli_usage_error(CMD, "machine: unexpected argument '%s'", argv[i]);
        }
    }
    fv_cli_set_threads(threads);
    char machine[384];
    fv_machine_line(machine, sizeof machine);
    if (!json) {
        printf("%s\n", machine);
        return FV_EXIT_OK;
    }
    json_t *out = json_object();
    if (out == NULL)
        return FV_EXIT_FAIL;
    json_object_set_new(out, "machine", json_string(machine));
    json_object_set_new(out, "blas_core", json_string(fv_blas_core_name()));
    json_object_set_new(out, "blas_threads", json_integer(fv_blas_get_threads()));
    int rc = bench_json_print(out) == 0 ? FV_EXIT_OK : FV_EXIT_FAIL;
    json_decref(out);
    return rc;
}

static const char bench_usage[] =
    "Usage: fedvault bench secagg ...   one secure-aggregation round, in process\n"
    "       fedvault bench predict ...  scoring latency and throughput of a model\n"
    "       fedvault bench rounds ...   rounds of the round engine, in process\n"
    "       fedvault bench machine      the machine line every benchmark prints\n"
    "\n"
    "'fedvault bench NAME --help' describes each.\n";

int fv_cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "secagg") == 0) {
        for (int i = 2; i < argc; i++)
            if (strcmp(argv[i], "--validate") == 0)
                return fv__cmd_bench_valid(argc - 1, argv + 1); /* cmd_bench_valid.c */
        return bench_secagg(argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "predict") == 0)
        return bench_predict(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "rounds") == 0)
        return fv__cmd_bench_rounds(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "machine") == 0)
        return bench_machine(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(bench_usage, stdout);
        fputc('\n', stdout);
        fputs(usage, stdout);
        fputc('\n', stdout);
        fputs(predict_usage, stdout);
        return FV_EXIT_OK;
    }
    return fv_cli_usage_error(CMD, "expected a benchmark name: secagg, predict, rounds or machine");
}
