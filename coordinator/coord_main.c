/* coord_main.c - fedvault-coordinator: runs the federation's jobs, round by round.
 *
 * One libuv loop owns everything: the TLS server (protocols/fv_conn.h), the registry of
 * connected agents (by certificate name, coord_conn.c), the job runner (coord_job.c, the
 * rounds in coord_round.c and coord_finish.c, distillation in coord_distill.c), and (coord_admin.c)
 * the admin port and the metrics endpoint. This file parses the options and the config, opens the
 * state and the audit log, starts the servers, the housekeeping timer and the signal handlers, and
 * stops them all (coord__shutdown_all) so the loop runs empty.
 *
 * Output (--out DIR): model-rNNNN.fvm for every global model version (round N's model),
 * final.fvm, with distillation student-rNNNN.fvm and student.fvm (the distilled one),
 * rounds.jsonl (one line per round). Logs: JSON lines on stderr. With --job,
 * the final summary: one JSON object on stdout.
 *
 * Stopping: SIGINT/SIGTERM, a state that cannot be written (coord__state_fatal) and the
 * end of the --job job all go through coord__shutdown_all; a job in flight stays
 * "running" in the state and resumes at the next start. SIGHUP reloads the CRL (into the
 * TLS context, and as DER into every later JOB_OFFER, for the agents to verify) and closes
 * the live sessions it revokes (coord_crl.c).
 *
 * Threading: the loop thread only; CPU work goes to the thread pool (coord_distill.c).
 * Every callback the loop runs into the daemon is measured (coord_loopstat.c): the agent
 * port's are registered through the small wrappers below.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "coord-int.h"
#include "fv-config.h"
#include "fv_conn.h"
#include "fv_crypto.h"
#include "fv_file.h"
#include "fv_job.h"
#include "fv_tls.h"
#include "fv_trust.h"
#include "fv_wire.h"

/* ---- start and stop -------------------------------------------------------------- */

void coord__shutdown_all(coord_t *c)
{
    c->stopping = true;
    if (c->net.server != NULL) {
        fv_server_stop(c->net.server);
        c->net.server = NULL;
    }
    if (c->net.admin != NULL) {
        fv_server_stop(c->net.admin);
        c->net.admin = NULL;
    }
    if (c->net.prom_srv != NULL) {
        fv_prom_server_stop(c->net.prom_srv);
        c->net.prom_srv = NULL;
    }
    uv_timer_stop(&c->net.timer);
    uv_timer_stop(&c->net.next_round);
    coord__oq_stop();
    if (!uv_is_closing((uv_handle_t *)&c->net.timer)) {
        uv_close((uv_handle_t *)&c->net.timer, NULL);
        uv_close((uv_handle_t *)&c->net.next_round, NULL);
        uv_close((uv_handle_t *)&c->net.sigint, NULL);
        uv_close((uv_handle_t *)&c->net.sigterm, NULL);
        uv_close((uv_handle_t *)&c->net.sighup, NULL);
    }
}

/* A fatal state error: the daemon cannot record what it does, so it stops; a restart
 * resumes from the last commit. */
void coord__state_fatal(coord_t *c, const char *what, int r, const fv_diag_t *d)
{
    coord_logj("error", "state_failed",
               json_pack("{s:s,s:s,s:s,s:s}", "what", what, "err", fv_err_name(r), "why",
                         d != NULL ? d->msg : "", "state", fv_state_dir(c->st)));
    snprintf(c->run.fail_why, sizeof c->run.fail_why,
             "the state directory cannot be written (%s: %s); stopping, a restart resumes "
             "from the last completed round",
             what, fv_err_name(r));
    c->run.exit_code = EXIT_FAIL;
    if (c->run.state == ST_ROUND)
        coord__round_cleanup(c);
    c->run.state = ST_DONE;
    coord__shutdown_all(c);
}

/* ---- housekeeping and signals ---------------------------------------------------- */

static void tick(coord_t *c)
{
    static unsigned ticks;
    coord__linger_check(c);
    if (c->stopping)
        return;
    if (++ticks % 10 == 0) {
        coord_metrics_refresh(c);           /* traffic counters, once a second */
        coord_audit_refusal(c, NULL, NULL); /* a minute of suppressed refusals summed up */
    }
    coord__round_tick(c);
    coord__cohort_tick(c); /* the join deadline (coord_cohort.c) */
    coord__schema_tick(c);
}

static void on_tick(uv_timer_t *t)
{
    coord_t *c = t->data;
    coord__loopstat_begin(c, "tick");
    tick(c);
    coord__loopstat_end(c);
}

static void handle_signal(coord_t *c, int signum)
{
    if (signum == SIGHUP) {
        fv_diag_t d;
        coord_reload_crl(c, "signal SIGHUP", NULL, NULL, &d);
        return;
    }
    coord_logj("warn", "stopping", json_pack("{s:i}", "signal", signum));
    coord_audit(c, NULL, "coordinator.stopped",
                json_pack("{s:i,s:s}", "signal", signum, "job", c->run.job_id));
    if (c->only_job != NULL) {
        snprintf(c->run.fail_why, sizeof c->run.fail_why, "stopped by signal %d", signum);
        c->run.exit_code = EXIT_FAIL;
    }
    /* the job stays "running" in the state: a restart resumes it */
    if (c->run.state == ST_ROUND)
        coord__round_cleanup(c);
    c->run.state = ST_DONE;
    coord__shutdown_all(c);
}

static void on_signal(uv_signal_t *h, int signum)
{
    coord_t *c = h->data;
    coord__loopstat_begin(c, "signal");
    handle_signal(c, signum);
    coord__loopstat_end(c);
}

/* ---- the agent port's callbacks, measured (coord_loopstat.c) ----------------------- */

/* Each runs the handler of coord_conn.c (coord_outq.c for on_vec_sent) between the two
 * clock readings; c is read before the handler runs, since on_close's connection is
 * freed when it returns. */
static coord_t *coord_of(fv_conn_t *conn)
{
    return fv_server_get_data(fv_conn_server(conn));
}

static void agent_on_open(fv_conn_t *conn, const fv_identity_t *peer)
{
    coord_t *c = coord_of(conn);
    coord__loopstat_begin(c, "agent.on_open");
    coord__on_open(conn, peer);
    coord__loopstat_end(c);
}

static void agent_on_msg(fv_conn_t *conn, const fv_msg_t *m)
{
    coord_t *c = coord_of(conn);
    coord__loopstat_begin(c, "agent.on_msg");
    coord__on_msg(conn, m);
    coord__loopstat_end(c);
}

static void *agent_on_vec_begin(fv_conn_t *conn, const fv_msg_t *b)
{
    coord_t *c = coord_of(conn);
    coord__loopstat_begin(c, "agent.on_vec_begin");
    void *buf = coord__on_vec_begin(conn, b);
    coord__loopstat_end(c);
    return buf;
}

static void agent_on_vec(fv_conn_t *conn, uint32_t id, void *vec, uint64_t n)
{
    coord_t *c = coord_of(conn);
    coord__loopstat_begin(c, "agent.on_vec");
    coord__on_vec(conn, id, vec, n);
    coord__loopstat_end(c);
}

static void agent_on_vec_sent(fv_conn_t *conn, uint32_t id)
{
    coord_t *c = coord_of(conn);
    coord__loopstat_begin(c, "agent.on_vec_sent");
    coord__on_vec_sent(conn, id);
    coord__loopstat_end(c);
}

static void agent_on_drain(fv_conn_t *conn)
{
    coord_t *c = coord_of(conn);
    coord__loopstat_begin(c, "agent.on_drain");
    coord__on_drain(conn);
    coord__loopstat_end(c);
}

static void agent_on_close(fv_conn_t *conn, int err, const char *why)
{
    coord_t *c = coord_of(conn);
    coord__loopstat_begin(c, "agent.on_close");
    coord__on_close(conn, err, why);
    coord__loopstat_end(c);
}

/* ---- main ------------------------------------------------------------------------ */

static const char usage[] =
    "Usage: fedvault-coordinator --config FILE [--state DIR] [--job SPEC] [--out DIR]\n"
    "                            [--listen HOST:PORT] [--admin-listen HOST:PORT]\n"
    "                            [--metrics-listen [HOST]:PORT] [--max-uploads N]\n"
    "                            [--max-unauth N] [--max-unauth-per-source N]\n"
    "                            [--max-handshakes N] [--max-handshakes-per-source N]\n"
    "                            [--handshake-timeout-ms MS] [--bench-after N]\n"
    "                            [--bench-base-rounds N] [--bench-max-rounds N]\n"
    "\n"
    "Runs the federation's jobs: each agent connects to the agent port, the operator's\n"
    "`fedvault` CLI to the admin port (admin certificates only). Jobs, rounds, model\n"
    "versions and lineage live in the state directory; after a crash, a restart resumes\n"
    "every running job from its last completed round.\n"
    "\n"
    "  --config FILE       the coordinator kit's coordinator.json (from fedvault provision):\n"
    "                      listen, ca, cert, key, crl, and optionally state_dir,\n"
    "                      admin_listen, metrics_listen, and the caps below as\n"
    "                      max_unauth, ... handshake_timeout_ms (paths relative to it)\n"
    "  --state DIR         the state directory (default: the config's state_dir, else\n"
    "                      OUT/state with --out, else state/ beside the config)\n"
    "  --job SPEC          submit this job spec (JSON; docs/job.schema.json) unless the\n"
    "                      state already has it, run it, and exit when it has ended\n"
    "                      (jobs already running or queued in the state go first;\n"
    "                      without --job the daemon runs submitted jobs until stopped)\n"
    "  --out DIR           also write final.fvm, model-rNNNN.fvm and rounds.jsonl here\n"
    "  --listen HOST:PORT  agent port; overrides the config (port 0: any; it is logged)\n"
    "  --admin-listen HOST:PORT   admin port (mutual TLS, admin role only)\n"
    "  --metrics-listen [HOST]:PORT Prometheus text metrics at http://HOST:PORT/metrics\n"
    "                      (plain HTTP: a loopback or management address; PORT or :PORT\n"
    "                      alone means 127.0.0.1:PORT)\n"
    "Strangers (connections not yet past TLS and HELLO) on the agent port (the admin\n"
    "port has the defaults):\n"
    "  --max-unauth N      at once, all sources (default 512; 0: no cap)\n"
    "  --max-unauth-per-source N  from one address (IPv6: one /64) (default 32)\n"
    "  --max-handshakes N  TLS handshakes in progress, all sources (default 128)\n"
    "  --max-handshakes-per-source N  (default 8)\n"
    "  --handshake-timeout-ms MS  from accept to HELLO (default 5000)\n"
    "                      Over a cap a connection is closed at once and counted\n"
    "                      (fedvault_net_refused_total; a net_refused line every 10 s)\n"
    "  --max-uploads N     masked/plain uploads received at once (default 2)\n"
    "  --bench-after N     an agent silent at a round's deadline N rounds in a row sits\n"
    "                      the next rounds out (default 3; 0: never)\n"
    "  --bench-base-rounds N  rounds of its first bench (default 2); each new bench\n"
    "                      before it contributes again doubles it, up to\n"
    "  --bench-max-rounds N   (default 32)\n"
    "  -h, --help          this text\n"
    "\n"
    "Files in the state directory: state.db (SQLite), models/<sha256>.fvm, audit.log and\n"
    "audit.log.head (the signed audit log: `fedvault audit verify --log DIR/audit.log\n"
    "--head DIR/audit.log.head --cert cert.pem`).\n"
    "Logs: JSON lines on stderr. With --job, the result is one JSON object on stdout.\n"
    "SIGHUP (or `fedvault crl reload`) reloads the CRL. SIGTERM stops; running jobs resume\n"
    "at the next start.\n"
    "Exit status: 0 job finished (or the daemon stopped), 1 failure, 2 usage error.\n";

static char *kit_path(const char *config, const char *rel)
{
    if (rel == NULL)
        return NULL;
    if (rel[0] == '/')
        return strdup(rel);
    const char *slash = strrchr(config, '/');
    size_t dl = slash != NULL ? (size_t)(slash - config) : 1;
    const char *dir = slash != NULL ? config : ".";
    size_t n = dl + 1 + strlen(rel) + 1;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%.*s/%s", (int)dl, dir, rel);
    return p;
}

static int split_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= cap)
        return -1;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

/* The caps on strangers: a flag or a config key each (the flag wins). */
typedef struct guard_opt {
    const char *flag, *key;
    uint64_t min, max;
    const char *arg; /* the flag's value, if given */
} guard_opt_t;
enum { G_UNAUTH, G_UNAUTH_SRC, G_HS, G_HS_SRC, G_HS_TIMEOUT, G_N };
static guard_opt_t g_guard_opts[G_N] = {
    [G_UNAUTH] = {"--max-unauth", "max_unauth", 0, 1000000, NULL},
    [G_UNAUTH_SRC] = {"--max-unauth-per-source", "max_unauth_per_source", 0, 1000000, NULL},
    [G_HS] = {"--max-handshakes", "max_handshakes", 0, 1000000, NULL},
    [G_HS_SRC] = {"--max-handshakes-per-source", "max_handshakes_per_source", 0, 1000000, NULL},
    [G_HS_TIMEOUT] = {"--handshake-timeout-ms", "handshake_timeout_ms", 100, 600000, NULL},
};

static int guard_flag(const char *a)
{
    for (int k = 0; k < G_N; k++)
        if (strcmp(a, g_guard_opts[k].flag) == 0)
            return k;
    return -1;
}

/* Fills o's caps from the flags and cfg; -1 (said on stderr) for a bad value. */
static int guard_opts_apply(json_t *cfg, const char *config, fv_net_opts_t *o)
{
    uint64_t v[G_N] = {o->max_unauth, o->max_unauth_per_source, o->max_handshakes,
                       o->max_handshakes_per_source, o->handshake_timeout_ms};
    for (int i = 0; i < G_N; i++) {
        const guard_opt_t *g = &g_guard_opts[i];
        json_t *j = json_object_get(cfg, g->key);
        bool ok = true;
        if (g->arg != NULL) {
            char *end;
            errno = 0;
            unsigned long long u = strtoull(g->arg, &end, 10);
            ok = errno == 0 && end != g->arg && *end == '\0' && g->arg[0] != '-';
            v[i] = u;
        } else if (j != NULL) {
            ok = json_is_integer(j) && json_integer_value(j) >= 0;
            v[i] = ok ? (uint64_t)json_integer_value(j) : 0;
        }
        if (!ok || v[i] < g->min || v[i] > g->max) {
            fprintf(stderr,
                    "fedvault-coordinator: error: %s%s%s: expected %" PRIu64 "..%" PRIu64 "\n",
                    g->arg != NULL ? g->flag : config, g->arg != NULL ? "" : ": ",
                    g->arg != NULL ? "" : g->key, g->min, g->max);
            return -1;
        }
    }
    o->max_unauth = (uint32_t)v[G_UNAUTH];
    o->max_unauth_per_source = (uint32_t)v[G_UNAUTH_SRC];
    o->max_handshakes = (uint32_t)v[G_HS];
    o->max_handshakes_per_source = (uint32_t)v[G_HS_SRC];
    o->handshake_timeout_ms = v[G_HS_TIMEOUT];
    return 0;
}

static int listen_start(coord_t *c, const char *what, const char *addr,
                        int (*start)(coord_t *, const char *, int, fv_diag_t *))
{
    char host[256];
    int port;
    fv_diag_t d;
    if (split_hostport(addr, host, sizeof host, &port) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s address '%s': expected HOST:PORT\n", what,
                addr);
        return FV_EINVAL;
    }
    int r = start(c, host, port, &d);
    if (r != 0)
        fprintf(stderr, "fedvault-coordinator: error: %s on %s: %s\n", what, addr, d.msg);
    return r;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *job_path = NULL, *out = NULL, *listen = NULL;
    const char *state_arg = NULL, *admin_arg = NULL, *metrics_arg = NULL;
    unsigned max_uploads = 2;
    coord_bench_opts_t bench = COORD_BENCH_DEFAULTS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fedvault-coordinator: %s needs a value (see --help)\n", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int r_opt;
        if (strcmp(a, "--config") == 0)
            config = v;
        else if (strcmp(a, "--job") == 0)
            job_path = v;
        else if (strcmp(a, "--out") == 0)
            out = v;
        else if (strcmp(a, "--state") == 0)
            state_arg = v;
        else if (strcmp(a, "--listen") == 0)
            listen = v;
        else if (strcmp(a, "--admin-listen") == 0)
            admin_arg = v;
        else if (strcmp(a, "--metrics-listen") == 0)
            metrics_arg = v;
        else if (guard_flag(a) >= 0)
            g_guard_opts[guard_flag(a)].arg = v;
        else if (strcmp(a, "--max-uploads") == 0) {
            char *end;
            unsigned long u = strtoul(v, &end, 10);
            if (*end != '\0' || u < 1 || u > 1024) {
                fprintf(stderr, "fedvault-coordinator: --max-uploads %s: expected 1..1024\n", v);
                return EXIT_USAGE;
            }
            max_uploads = (unsigned)u;
        } else if ((r_opt = coord__bench_option(&bench, a, v)) != 0) {
            if (r_opt < 0)
                return EXIT_USAGE;
        } else {
            fprintf(stderr, "fedvault-coordinator: unknown option %s (see --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (config == NULL) {
        fprintf(stderr, "fedvault-coordinator: --config is required (see --help)\n");
        return EXIT_USAGE;
    }
    if (sodium_init() < 0 || fv_crypto_init() != 0)
        return EXIT_FAIL;
    signal(SIGPIPE, SIG_IGN);
    coord__crash_points_init();

    coord_t c;
    memset(&c, 0, sizeof c);
    coord__test_hooks_init(&c);
    c.max_uploads = max_uploads;
    c.bench.opts = bench;
    coord__oq_init(&c, &c.agents, max_uploads);
    c.out_dir = out;
    c.run.last_auc = c.run.last_pr = c.run.last_loss = c.run.last_acc = NAN;
    c.run.state = ST_IDLE;
    fv_diag_t d;
    int rc = EXIT_FAIL;
    char *ca = NULL, *cert = NULL, *key = NULL, *crl = NULL, *cfg_listen = NULL;
    char *state_dir = NULL, *cfg_admin = NULL, *cfg_metrics = NULL;
    char only_job[65];
    json_error_t je;
    json_t *cfg = json_load_file(config, 0, &je);
    if (cfg == NULL) {
        fprintf(stderr, "fedvault-coordinator: error: %s:%d: %s\n", config, je.line, je.text);
        return EXIT_FAIL;
    }
    const char *s_ca = json_string_value(json_object_get(cfg, "ca"));
    const char *s_cert = json_string_value(json_object_get(cfg, "cert"));
    const char *s_key = json_string_value(json_object_get(cfg, "key"));
    const char *s_crl = json_string_value(json_object_get(cfg, "crl"));
    const char *s_listen = json_string_value(json_object_get(cfg, "listen"));
    const char *s_state = json_string_value(json_object_get(cfg, "state_dir"));
    const char *s_admin = json_string_value(json_object_get(cfg, "admin_listen"));
    const char *s_metrics = json_string_value(json_object_get(cfg, "metrics_listen"));
    const char *s_fed = json_string_value(json_object_get(cfg, "federation"));
    const char *s_name = json_string_value(json_object_get(cfg, "name"));
    if (s_ca == NULL || s_cert == NULL || s_key == NULL || (listen == NULL && s_listen == NULL)) {
        fprintf(stderr,
                "fedvault-coordinator: error: %s: needs string fields ca, cert, key "
                "and listen\n",
                config);
        json_decref(cfg);
        return EXIT_FAIL;
    }
    snprintf(c.federation, sizeof c.federation, "%s", s_fed != NULL ? s_fed : "");
    snprintf(c.self_name, sizeof c.self_name, "%s", s_name != NULL ? s_name : "coordinator");
    ca = kit_path(config, s_ca);
    cert = kit_path(config, s_cert);
    key = kit_path(config, s_key);
    crl = kit_path(config, s_crl);
    cfg_listen = strdup(listen != NULL ? listen : s_listen);
    if (state_arg != NULL)
        state_dir = strdup(state_arg);
    else if (s_state != NULL)
        state_dir = kit_path(config, s_state);
    else if (out != NULL) {
        size_t n = strlen(out) + 8;
        state_dir = malloc(n);
        if (state_dir != NULL)
            snprintf(state_dir, n, "%s/state", out);
    } else
        state_dir = kit_path(config, "state");
    cfg_admin = admin_arg != NULL ? strdup(admin_arg) : s_admin != NULL ? strdup(s_admin) : NULL;
    const char *m = metrics_arg != NULL ? metrics_arg : s_metrics;
    if (m != NULL && (strchr(m, ':') == NULL || m[0] == ':')) {
        /* PORT or :PORT: loopback, never all addresses */
        size_t n = strlen(m) + 16;
        if ((cfg_metrics = malloc(n)) != NULL)
            snprintf(cfg_metrics, n, "127.0.0.1%s%s", m[0] == ':' ? "" : ":", m);
    } else
        cfg_metrics = m != NULL ? strdup(m) : NULL;
    fv_net_opts_t guard;
    fv_net_opts_default(&guard);
    if (guard_opts_apply(cfg, config, &guard) != 0) {
        json_decref(cfg);
        rc = EXIT_USAGE;
        goto out;
    }
    json_decref(cfg);
    if (state_dir == NULL || cfg_listen == NULL || (m != NULL && cfg_metrics == NULL))
        goto out;
    {
        /* a flood should meet the caps on strangers, not EMFILE */
        uint64_t before = 0, soft = 0, hard = 0;
        int nr = fv_net_raise_nofile(&before, &soft, &hard);
        coord_logj(nr == 0 ? "info" : "warn", "nofile_limit",
                   json_pack("{s:I,s:I,s:I,s:s}", "soft_before", (json_int_t)before, "soft",
                             (json_int_t)soft, "hard", (json_int_t)hard, "error",
                             nr == 0 ? "" : strerror(-nr)));
    }

    if (out != NULL && mkdir(out, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fedvault-coordinator: error: cannot create %s: %s\n", out,
                strerror(errno));
        goto out;
    }
    if (fv_state_open(state_dir, &c.st, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    fv_tls_opts_t to = {.ca_file = ca, .cert_file = cert, .key_file = key, .crl_file = crl};
    if (fv_tls_ctx_new(true, &to, &c.net.ctx, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    c.crl_file = crl;
    if (coord__crl_der_load(&c, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    if (fv_tls_load_sign_key(key, c.sign_sk, &d) != 0 || coord__release_init(&c, cert, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    if (coord__audit_open(&c, state_dir, &d) != 0) {
        fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
        goto out;
    }
    /* records left in the outbox by a crash after their commit */
    if (coord_audit_flush(&c) != 0)
        goto out;
    c.net.loop = uv_default_loop();
    c.t_start_ms = coord__now_ms(&c);
    /* The timer and signal handles exist before any listener can fail: the shutdown path
     * closes them (closing a handle never initialised aborted libuv when the admin or
     * metrics port could not bind). Started once everything listens. */
    uv_timer_init(c.net.loop, &c.net.timer);
    c.net.timer.data = &c;
    uv_timer_init(c.net.loop, &c.net.next_round);
    c.net.next_round.data = &c;
    coord__oq_start(c.net.loop); /* (if it fails, sends start at once, unpaced) */
    uv_signal_init(c.net.loop, &c.net.sigint);
    uv_signal_init(c.net.loop, &c.net.sigterm);
    uv_signal_init(c.net.loop, &c.net.sighup);
    c.net.sigint.data = c.net.sigterm.data = c.net.sighup.data = &c;
    if (coord_metrics_init(&c) != 0)
        goto out_servers;
    {
        char host[256];
        int port;
        if (split_hostport(cfg_listen, host, sizeof host, &port) != 0) {
            fprintf(stderr,
                    "fedvault-coordinator: error: listen address '%s': expected HOST:PORT\n",
                    cfg_listen);
            goto out_servers;
        }
        fv_net_opts_t net;
        fv_net_opts_default(&net);
        net.allowed_roles = FV_ROLE_BIT(FV_ROLE_AGENT);
        /* Memory that grows with the number of agents is per-connection buffering: the
         * TLS output buffer and the encode buffer keep the size of the largest frame sent,
         * and a vector being sent queues up to low_water_bytes. Smaller chunks and a lower
         * mark keep that to a few hundred KiB per agent; uploads come in the agents'
         * chunks (frames up to our max_frame_bytes, freed one by one). One frame under the
         * mark also bounds the loop's work per callback: a vector send encodes (hashes and
         * encrypts) at most one 256 KiB frame each time the socket drains, about 1-2 ms
         * here, where 1 MiB at a time made a round's start take 12-17 ms. */
        net.chunk_elems = 64u << 10; /* 256 KiB frames */
        net.low_water_bytes = COORD_LOW_WATER;
        net.lim.max_frame_bytes = COORD_MAX_FRAME;
        net.max_unauth = guard.max_unauth;
        net.max_unauth_per_source = guard.max_unauth_per_source;
        net.max_handshakes = guard.max_handshakes;
        net.max_handshakes_per_source = guard.max_handshakes_per_source;
        net.handshake_timeout_ms = guard.handshake_timeout_ms;
        fv_conn_cbs_t cbs = {.on_open = agent_on_open,
                             .on_msg = agent_on_msg,
                             .on_vec_begin = agent_on_vec_begin,
                             .on_vec = agent_on_vec,
                             .on_vec_sent = agent_on_vec_sent,
                             .on_drain = agent_on_drain,
                             .on_close = agent_on_close};
        int r = fv_server_start(c.net.loop, c.net.ctx, host, port, &net, &cbs, &c, &c.net.server);
        if (r != 0) {
            fprintf(stderr, "fedvault-coordinator: error: listen on %s: %s\n", cfg_listen,
                    fv_strerror(r));
            goto out_servers;
        }
    }
    if (cfg_admin != NULL && listen_start(&c, "admin", cfg_admin, coord_admin_start) != 0)
        goto out_servers;
    if (cfg_metrics != NULL && listen_start(&c, "metrics", cfg_metrics, coord_metrics_start) != 0)
        goto out_servers;
    uv_timer_start(&c.net.timer, on_tick, 100, 100);
    uv_signal_start(&c.net.sigint, on_signal, SIGINT);
    uv_signal_start(&c.net.sigterm, on_signal, SIGTERM);
    uv_signal_start(&c.net.sighup, on_signal, SIGHUP);
    {
        json_t *f = json_pack("{s:i,s:s,s:s}", "port", fv_server_port(c.net.server), "state",
                              state_dir, "federation", c.federation);
        if (c.net.admin != NULL)
            json_object_set_new(f, "admin_port", json_integer(fv_server_port(c.net.admin)));
        if (c.net.prom_srv != NULL)
            json_object_set_new(f, "metrics_port",
                                json_integer(fv_prom_server_port(c.net.prom_srv)));
        coord_audit(&c, NULL, "coordinator.started",
                    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I}", "version", FV_VERSION, "commit",
                              FV_COMMIT, "listen", cfg_listen, "admin",
                              cfg_admin != NULL ? cfg_admin : "", "metrics",
                              cfg_metrics != NULL ? cfg_metrics : "", "state", state_dir,
                              "crl_revoked", (json_int_t)fv_tls_ctx_crl_count(c.net.ctx)));
        coord_logj("info", "listening", f);
    }
    if (job_path != NULL) {
        /* --job: submit it unless the state already has it (a restart after a crash);
         * the file's comments blanked and a schema path inlined, as fv_job_load does */
        fv_job_t *job = NULL;
        uint8_t dg[32];
        char *spec = NULL;
        size_t sl = 0;
        int r = fv_job_file_expand(job_path, NULL, &spec, &sl, &d);
        if (r == 0 && sl > FV_WIRE_SPEC_MAX) /* what a job offer carries */
            r = fv_diag_set(&d, FV_ETOOBIG,
                            "%s: %zu bytes with its schema; a job offer holds "
                            "at most %u",
                            job_path, sl, FV_WIRE_SPEC_MAX);
        if (r == 0)
            r = fv_job_from_json(job_path, spec, sl, &job, &d);
        if (r == 0)
            r = fv_job_digest(job, dg);
        fv_job_free(job);
        if (r != 0) {
            free(spec);
            fprintf(stderr, "fedvault-coordinator: error: %s\n", d.msg);
            c.run.exit_code = EXIT_FAIL;
            coord__shutdown_all(&c);
            uv_run(c.net.loop, UV_RUN_DEFAULT);
            goto out_loop;
        }
        coord__hexn(dg, 32, only_job);
        c.only_job = only_job;
        char st[16];
        r = fv_state_job_status(c.st, only_job, st, &d);
        bool fresh = r == UV_ENOENT;
        if (fresh) {
            char id[65];
            r = coord_job_submit(&c, spec, sl, "operator (--job)", id, &d);
            if (r != 0)
                fprintf(stderr, "fedvault-coordinator: error: %s: %s\n", job_path,
                        r == FV_EDUP ? "already submitted" : d.msg);
        }
        free(spec);
        if (!fresh && r == 0 && strcmp(st, "queued") != 0 && strcmp(st, "running") != 0) {
            fprintf(stderr,
                    "fedvault-coordinator: job %.16s has already ended (%s) in %s; "
                    "see `fedvault job show %.16s`\n",
                    only_job, st, state_dir, only_job);
            r = strcmp(st, "done") == 0 ? 0 : FV_EPHASE;
            c.run.exit_code = r == 0 ? EXIT_OK : EXIT_FAIL;
            coord__shutdown_all(&c);
            uv_run(c.net.loop, UV_RUN_DEFAULT);
            goto out_loop;
        }
        if (r != 0) {
            c.run.exit_code = EXIT_FAIL;
            coord__shutdown_all(&c);
            uv_run(c.net.loop, UV_RUN_DEFAULT);
            goto out_loop;
        }
    }
    coord__job_try_next(&c);
    uv_run(c.net.loop, UV_RUN_DEFAULT);
out_loop:
    rc = c.run.exit_code;
    if (uv_loop_close(c.net.loop) != 0) {
        fprintf(stderr, "fedvault-coordinator: warning: handles left open at exit\n");
        rc = EXIT_FAIL;
    }
    goto out;
out_servers:
    coord__shutdown_all(&c);
    uv_run(c.net.loop, UV_RUN_DEFAULT);
    uv_loop_close(c.net.loop);
out:
    coord__oq_close();
    coord__job_reset(&c);
    while (c.agents != NULL) {
        agent_t *a = c.agents;
        c.agents = a->next;
        coord__oq_clear(a);
        free(a->orphan);
        free(a->cert_der);
        free(a->done_receipt);
        free(a);
    }
    fv_prom_free(c.metrics.prom);
    coord__log_close();
    fv_audit_close(c.audit);
    fv_state_close(c.st);
    sodium_memzero(c.sign_sk, sizeof c.sign_sk);
    coord__release_close(&c);
    fv_tls_ctx_free(c.net.ctx);
    free(c.crl_der);
    free(ca);
    free(cert);
    free(key);
    free(crl);
    free(cfg_listen);
    free(state_dir);
    free(cfg_admin);
    free(cfg_metrics);
    return rc;
}
