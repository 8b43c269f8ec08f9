/* cmd_bench_rounds.c - `fedvault bench rounds`: the round engine (protocols/fv_round.h) in
 * one process, one coordinator and N agents, through fv_round_sim_run.
 *
 * Each round runs the engine's bench kind (a vector of D u32 words an agent draws from its
 * seed: no training, so what is measured is the engine: the round machines, the wire
 * encoding of every message, the checks, SecAgg). Figures per round, the median over
 * --rounds rounds: the coordinator's CPU time and the agents' (summed; thread CPU time,
 * CLOCK_THREAD_CPUTIME_ID, read by the simulator around each machine call and compute),
 * messages, bytes, simulated milliseconds.
 *
 * The reference, measured in the same run on the same thread:
 *   SecAgg on:  the same round (n, d, t, k) of SecAgg's own state machines routed by
 *               fv_secagg_sim_run, without the engine, the wire or the checks; the ratio
 *               is the engine's cost over bare SecAgg.
 *   SecAgg off: copying every agent's vector once (memcpy of N x D words), the least a
 *               plain round must do.
 * --dropouts K: K agents drop before their masked input (or plain upload), so the
 * coordinator reconstructs their masks: the costly path.
 *
 * Exit status 0 when every round ended with a sum of the agents that were meant to
 * contribute.
 */
#include "cli-int.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fv_blas.h"
#include "fv_crypto.h"
#include "fv_job.h"
#include "fv_round.h"
#include "fv_round_sim.h"
#include "fv_secagg.h"

#define CMD "bench rounds"

static const char usage[] =
    "Usage: fedvault bench rounds [--agents N] [--dim D] [--rounds R] [--secagg on|off]\n"
    "                             [--dropouts K] [--seed S] [--json]\n"
    "\n"
    "Runs R rounds of the round engine in this process: one coordinator and N agents,\n"
    "every message encoded and decoded as on the wire, each agent adding D words.\n"
    "Prints per round (median of R) the coordinator's and the agents' CPU time, and the\n"
    "same round of bare SecAgg (or, without SecAgg, a copy of every vector) measured in\n"
    "the same run, with the ratio.\n"
    "\n"
    "  --agents N      agents in the cohort, 3..1000 (default 20)\n"
    "  --dim D         words per agent, 1..16777216 (default 100000)\n"
    "  --rounds R      rounds to run, 1..100 (default 3)\n"
    "  --secagg on|off secure aggregation (default on)\n"
    "  --dropouts K    agents that drop before their input (default 0)\n"
    "  --seed S        seed of keys and vectors (default 1)\n"
    "  --json          one JSON object on standard output\n"
    "  -h, --help      this help\n";

static const struct option opts[] = {{"agents", required_argument, NULL, 'n'},
                                     {"dim", required_argument, NULL, 'd'},
                                     {"rounds", required_argument, NULL, 'r'},
                                     {"secagg", required_argument, NULL, 's'},
                                     {"dropouts", required_argument, NULL, 'k'},
                                     {"seed", required_argument, NULL, 'S'},
                                     {"json", no_argument, NULL, 'j'},
                                     {"help", no_argument, NULL, 'h'},
                                     {NULL, 0, NULL, 0}};

static uint64_t thread_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *ret)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || s[0] == '-' || v < lo || v > hi)
        return -1;
    *ret = v;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The reference of one round: bare SecAgg, or a copy of every vector. */
static int reference_ns(const fv_job_t *job, uint32_t n, uint32_t dim, uint32_t dropouts,
                        uint64_t seed, uint64_t *ret, fv_diag_t *d)
{
    if (!job->secagg.on) {
        uint32_t *src = malloc((size_t)dim * 4), *dst = malloc((size_t)dim * 4);
        if (src == NULL || dst == NULL) {
            free(src), free(dst);
            return fv_diag_set(d, FV_ENOMEM, "out of memory");
        }
        memset(src, 1, (size_t)dim * 4);
        uint64_t t0 = thread_ns();
        for (uint32_t i = 0; i < n; i++) {
            memcpy(dst, src, (size_t)dim * 4);
            src[i % dim] ^= dst[(i * 7u) % dim]; /* keeps the copies from being elided */
        }
        *ret = thread_ns() - t0;
        free(src), free(dst);
        return 0;
    }
    fv_secagg_sim_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    uint32_t t, k;
    int r = fv_job_secagg_for(job, n, &t, &k, d);
    if (r != 0)
        return r;
    cfg.params.job_id = 1;
    cfg.params.round = 1;
    cfg.params.n_clients = n;
    cfg.params.threshold = t;
    cfg.params.n_neighbors = k;
    cfg.params.dim = dim;
    cfg.params.prg = FV_PRG_DEFAULT;
    uint8_t pk[32] = {0};
    cfg.params.identity_pks = pk;
    cfg.seed = seed;
    cfg.dropout_fraction = (double)dropouts / n + 1e-9;
    cfg.dropout_phase = 2;
    fv_secagg_sim_result_t res;
    memset(&res, 0, sizeof res);
    uint64_t t0 = thread_ns();
    r = fv_secagg_sim_run(&cfg, &res, d);
    *ret = thread_ns() - t0;
    free(res.sum);
    if (r == 0 && !res.exact)
        r = fv_diag_set(d, FV_ECORRUPT, "the reference SecAgg sum is not exact");
    return r;
}

int fv__cmd_bench_rounds(int argc, char **argv)
{
    uint64_t n = 20, dim = 100000, rounds = 3, dropouts = 0, seed = 1;
    bool secagg = true, json = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (parse_u64(optarg, 3, 1000, &n) != 0)
                return fv_cli_usage_error(CMD, "--agents must be 3..1000, not '%s'", optarg);
            break;
        case 'd':
            if (parse_u64(optarg, 1, 1u << 24, &dim) != 0)
                return fv_cli_usage_error(CMD, "--dim must be 1..16777216, not '%s'", optarg);
            break;
        case 'r':
            if (parse_u64(optarg, 1, 100, &rounds) != 0)
                return fv_cli_usage_error(CMD, "--rounds must be 1..100, not '%s'", optarg);
            break;
        case 's':
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
                return fv_cli_usage_error(CMD, "--secagg must be on or off, not '%s'", optarg);
            secagg = strcmp(optarg, "on") == 0;
            break;
        case 'k':
            if (parse_u64(optarg, 0, 1000, &dropouts) != 0)
                return fv_cli_usage_error(CMD, "--dropouts must be 0..1000, not '%s'", optarg);
            break;
        case 'S':
            if (parse_u64(optarg, 0, UINT64_MAX, &seed) != 0)
                return fv_cli_usage_error(CMD, "--seed must be a number, not '%s'", optarg);
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return FV_EXIT_OK;
        default:
            return fv_cli_usage_error(CMD, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (dropouts >= n)
        return fv_cli_usage_error(CMD, "--dropouts must be below --agents");
    if (fv_crypto_init() < 0) {
        fv_cli_error(CMD, "crypto initialization failed");
        return FV_EXIT_FAIL;
    }
    char spec[640];
    snprintf(spec, sizeof spec,
             "{\"name\":\"bench\",\"schema\":{\"fedvault_schema\":1,\"target\":\"y\","
             "\"positive\":\"1\",\"classes\":[\"0\",\"1\"],\"unknown_category\":\"error\","
             "\"columns\":[{\"name\":\"x\",\"type\":\"numeric\"},{\"name\":\"y\","
             "\"type\":\"target\"}]},\"model\":\"logreg\",\"rounds\":%llu,\"min_agents\":3%s}",
             (unsigned long long)rounds, secagg ? "" : ",\"secagg\":\"off\"");
    fv_diag_t d = {""};
    fv_job_t *job = NULL;
    if (fv_job_from_json("bench job", spec, strlen(spec), &job, &d) != 0) {
        fv_cli_error(CMD, "%s", d.msg);
        return FV_EXIT_FAIL;
    }
    const fv_round_kind_t *kinds[] = {fv_round_sim_bench_kind()};
    fv_round_kinds_t table = {kinds, 1};
    fv_round_sim_agent_t *ag = calloc(n, sizeof *ag);
    uint64_t *coord = calloc(rounds, sizeof *coord), *agents = calloc(rounds, sizeof *agents);
    uint64_t *ref = calloc(rounds, sizeof *ref);
    int rc = FV_EXIT_FAIL;
    fv_round_sim_result_t last;
    memset(&last, 0, sizeof last);
    if (ag == NULL || coord == NULL || agents == NULL || ref == NULL) {
        fv_cli_error(CMD, "out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < dropouts; i++) {
        ag[n - 1 - i].fault = FV_RSIM_DROP;
        ag[n - 1 - i].phase = 2;
    }
    for (uint64_t r = 0; r < rounds; r++) {
        fv_round_sim_cfg_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.kinds = &table;
        cfg.job = job;
        cfg.sizes.n_params = (size_t)dim;
        cfg.round = r;
        cfg.n_agents = (uint32_t)n;
        cfg.agents = ag;
        cfg.n_ref = 1;
        cfg.seed = seed + r;
        cfg.restart_at = -1;
        cfg.cpu_ns = thread_ns;
        fv_round_sim_result_close(&last);
        memset(&last, 0, sizeof last);
        if (fv_round_sim_run(&cfg, &last, &d) != 0) {
            fv_cli_error(CMD, "round %llu: %s", (unsigned long long)r, d.msg);
            goto out;
        }
        if (last.status != 0 || last.n_summands != n - dropouts) {
            fv_cli_error(CMD, "round %llu ended with status %s and %u contributors (%s)",
                         (unsigned long long)r, fv_err_name(last.status), last.n_summands,
                         last.why);
            goto out;
        }
        coord[r] = last.coord_cpu_ns;
        agents[r] = last.agents_cpu_ns;
        if (reference_ns(job, (uint32_t)n, (uint32_t)dim, (uint32_t)dropouts, seed + r, &ref[r],
                         &d) != 0) {
            fv_cli_error(CMD, "reference: %s", d.msg);
            goto out;
        }
    }
    double cs = (double)median(coord, rounds) / 1e9, as = (double)median(agents, rounds) / 1e9;
    double rs = (double)median(ref, rounds) / 1e9;
    const char *ref_name = secagg ? "bare SecAgg round (fv_secagg_sim_run)" : "memcpy of N x D";
    if (json) {
        json_t *o = json_pack(
            "{s:s,s:I,s:I,s:I,s:b,s:I,s:f,s:f,s:f,s:s,s:f,s:I,s:I,s:I}", "bench", "rounds",
            "agents", (json_int_t)n, "dim", (json_int_t)dim, "rounds", (json_int_t)rounds, "secagg",
            secagg, "dropouts", (json_int_t)dropouts, "coord_cpu_s", cs, "agents_cpu_s", as,
            "reference_s", rs, "reference", ref_name, "ratio", rs > 0 ? (cs + as) / rs : 0.0,
            "msgs", (json_int_t)last.msgs, "msg_bytes", (json_int_t)last.msg_bytes, "vec_bytes",
            (json_int_t)last.vec_bytes);
        char *s = json_dumps(o, JSON_COMPACT);
        if (s != NULL)
            printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        char machine[384];
        printf("machine: %s\n", fv_machine_line(machine, sizeof machine));
        printf("rounds: %llu agents, %llu words each, secagg %s, %llu dropouts; median of %llu "
               "rounds\n",
               (unsigned long long)n, (unsigned long long)dim, secagg ? "on" : "off",
               (unsigned long long)dropouts, (unsigned long long)rounds);
        printf("  coordinator CPU %.4f s, agents CPU %.4f s (%.4f s per agent)\n", cs, as,
               as / (double)n);
        printf("  messages %llu (%llu bytes), vectors %llu bytes\n", (unsigned long long)last.msgs,
               (unsigned long long)last.msg_bytes, (unsigned long long)last.vec_bytes);
        printf("  reference: %s %.4f s; engine (coordinator + agents) / reference = %.2f\n",
               ref_name, rs, rs > 0 ? (cs + as) / rs : 0.0);
    }
    rc = FV_EXIT_OK;
out:
    fv_round_sim_result_close(&last);
    free(ag), free(coord), free(agents), free(ref);
    fv_job_free(job);
    return rc;
}
