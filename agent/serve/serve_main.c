/* serve_main.c - fedvault-serve: the bank's scoring daemon. The command line (flags, and
 * the same keys in --config FILE, a JSON object; flags win), start and stop, the log.
 *
 * --config: each member "key": value becomes "--key value" placed before the real
 * arguments (so the real flags, parsed later, win); true becomes a bare "--key" (for
 * --shadow), false is skipped; numbers print as integers or %.17g; keys may use '_' or
 * '-'. Unknown keys are refused like unknown flags.
 *
 * Start: the trust store (--ca, --crl), the route (fv_route_new: clock and events,
 * serve_models.c), the registry, the pool, the optional audit log (--audit with the
 * agent key named in --identity, an agent.json whose "key" is relative to its
 * directory), the HTTP listener, the admin socket, the first scan and the poll timer.
 * Stop (SIGINT, SIGTERM): listener, connections, admin socket, timer closed; the loop runs
 * until the running scan is done; the pool is drained and joined; the jobs it gave back
 * are freed (their connections are closed); the route and its models freed; the audit
 * log closed; uv_loop_close() == 0.
 *
 * TLS: --tls-cert/--tls-key serve HTTPS on the listener, --tls-client-ca requires client
 * certificates from that CA (serve_tls.c).
 */
#include "serve-int.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "fv_blas.h"
#include "fv_tls.h"
#include "fv_trust.h"

static const char usage[] =
    "Usage: " SERVE_PROG " --model-dir DIR --ca FILE [options]\n"
    "\n"
    "Scores rows over HTTP with the verified model releases in DIR (stable, canary and\n"
    "backup at once): POST /v1/score, GET /v1/models, /healthz, /readyz, /metrics.\n"
    "\n"
    "  --config FILE            a JSON object with any of the keys below (flags win)\n"
    "  --listen HOST:PORT       default 127.0.0.1:8080; port 0 picks one (logged)\n"
    "  --model-dir DIR          the releases (<sha>.fvm + <sha>.release.json) (required)\n"
    "  --ca FILE                the federation CA (required)\n"
    "  --crl FILE               the federation's CRL (default DIR/crl.pem, which the agent\n"
    "                           keeps; without one no release verifies)\n"
    "  --admin-socket PATH      default DIR/serve.sock (mode 0600)\n"
    "  --threads N              scoring worker threads (default 1)\n"
    "  --poll-ms N              model directory poll (default 1000)\n"
    "  --max-body BYTES         request body cap (default 1048576; over: 413)\n"
    "  --max-rows N             rows per request (default 1024)\n"
    "  --header-timeout-ms N    request head deadline (default 10000; 408)\n"
    "  --body-timeout-ms N      request body deadline (default 10000; 408)\n"
    "  --idle-timeout-ms N      keep-alive connections idle longer are closed (default 60000)\n"
    "  --max-conns N            connections at once (default 1024)\n"
    "  --max-conns-per-source N from one address (default max(4, max-conns/4))\n"
    "  --reasons N              reason codes per row with \"explain\": true (default 3)\n"
    "  --canary-percent P       share routed to the canary (0..100, default 0)\n"
    "  --shadow                 score the canary in the shadow of stable\n"
    "  --window-ms N --min-requests N --p99-budget-us N --deadline-us N\n"
    "  --consecutive-misses N --cooldown-ms N --probes N\n"
    "  --canary-max-error-rate X --canary-max-p99-us N\n"
    "                           the breaker and canary guard (fv_route.h)\n"
    "  --tls-cert FILE --tls-key FILE\n"
    "                           serve HTTPS (TLS 1.2+) with this certificate and key\n"
    "  --tls-client-ca FILE     and require client certificates issued by this CA (mTLS)\n"
    "  --audit FILE --identity AGENT_JSON\n"
    "                           a signed audit log of every route change, signed with the\n"
    "                           bank's agent key (head: FILE.head)\n"
    "  --log-level L            debug, info (default), warn, error\n"
    "  -h, --help               this text\n";

enum {
    O_CONFIG = 256,
    O_LISTEN,
    O_MODEL_DIR,
    O_CA,
    O_CRL,
    O_ADMIN,
    O_THREADS,
    O_POLL,
    O_MAX_BODY,
    O_MAX_ROWS,
    O_HDR_TO,
    O_BODY_TO,
    O_IDLE_TO,
    O_MAX_CONNS,
    O_MAX_SRC,
    O_REASONS,
    O_CANARY,
    O_SHADOW,
    O_WINDOW,
    O_MIN_REQ,
    O_P99,
    O_DEADLINE,
    O_MISSES,
    O_COOLDOWN,
    O_PROBES,
    O_C_ERR,
    O_C_P99,
    O_AUDIT,
    O_IDENTITY,
    O_TLS_CERT,
    O_TLS_KEY,
    O_TLS_CA,
    O_LOG_LEVEL
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, O_CONFIG},
    {"listen", required_argument, NULL, O_LISTEN},
    {"model-dir", required_argument, NULL, O_MODEL_DIR},
    {"ca", required_argument, NULL, O_CA},
    {"crl", required_argument, NULL, O_CRL},
    {"admin-socket", required_argument, NULL, O_ADMIN},
    {"threads", required_argument, NULL, O_THREADS},
    {"poll-ms", required_argument, NULL, O_POLL},
    {"max-body", required_argument, NULL, O_MAX_BODY},
    {"max-rows", required_argument, NULL, O_MAX_ROWS},
    {"header-timeout-ms", required_argument, NULL, O_HDR_TO},
    {"body-timeout-ms", required_argument, NULL, O_BODY_TO},
    {"idle-timeout-ms", required_argument, NULL, O_IDLE_TO},
    {"max-conns", required_argument, NULL, O_MAX_CONNS},
    {"max-conns-per-source", required_argument, NULL, O_MAX_SRC},
    {"reasons", required_argument, NULL, O_REASONS},
    {"canary-percent", required_argument, NULL, O_CANARY},
    {"shadow", no_argument, NULL, O_SHADOW},
    {"window-ms", required_argument, NULL, O_WINDOW},
    {"min-requests", required_argument, NULL, O_MIN_REQ},
    {"p99-budget-us", required_argument, NULL, O_P99},
    {"deadline-us", required_argument, NULL, O_DEADLINE},
    {"consecutive-misses", required_argument, NULL, O_MISSES},
    {"cooldown-ms", required_argument, NULL, O_COOLDOWN},
    {"probes", required_argument, NULL, O_PROBES},
    {"canary-max-error-rate", required_argument, NULL, O_C_ERR},
    {"canary-max-p99-us", required_argument, NULL, O_C_P99},
    {"audit", required_argument, NULL, O_AUDIT},
    {"identity", required_argument, NULL, O_IDENTITY},
    {"tls-cert", required_argument, NULL, O_TLS_CERT},
    {"tls-key", required_argument, NULL, O_TLS_KEY},
    {"tls-client-ca", required_argument, NULL, O_TLS_CA},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

void fv__serve_log(fv_log_level_t lv, const char *event, json_t *fields)
{
    if (!fv_log_enabled(lv)) {
        json_decref(fields);
        return;
    }
    fv_log_json(lv, event, fields);
}

static int fail(const char *why)
{
    fv__serve_log(FV_LOG_ERROR, "startup_failed", json_pack("{s:s}", "why", why));
    return 1;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, SERVE_PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" SERVE_PROG " --help'.\n");
    return 2;
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *ret)
{
    char *end;
    errno = 0;
    if (s[0] == '-' || s[0] == '\0')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *ret = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *ret)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || end == s || !isfinite(v) || v < lo || v > hi)
        return false;
    *ret = v;
    return true;
}

/* ---- --config --------------------------------------------------------------------- */

/* Frees the config's strings av[1..n_conf) and av. */
static void argv_free(char **av, int n_conf)
{
    for (int i = 1; i < n_conf; i++)
        free(av[i]);
    free(av);
}

/* argv with the config's members as flags first (av[1..*ret_n_conf) are strdup'd). */
static int config_argv(const char *path, int argc, char **argv, int *ret_n_conf, char ***ret_argv,
                       int *ret_argc)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL || !json_is_object(root)) {
        fprintf(stderr, SERVE_PROG ": --config %s: %s\n", path,
                root == NULL ? je.text : "not a JSON object");
        json_decref(root);
        return 2;
    }
    size_t n = json_object_size(root);
    char **av = calloc(2 * n + (size_t)argc + 1, sizeof *av);
    if (av == NULL) {
        json_decref(root);
        return 1;
    }
    int k = 0;
    av[k++] = argv[0];
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        char flag[128];
        int fl = snprintf(flag, sizeof flag, "--%s", key);
        for (char *p = flag; *p; p++)
            if (*p == '_')
                *p = '-';
        char val[64];
        const char *vs = NULL;
        if (json_is_false(v))
            continue;
        if (json_is_string(v))
            vs = json_string_value(v);
        else if (json_is_integer(v))
            snprintf(val, sizeof val, "%" JSON_INTEGER_FORMAT, json_integer_value(v)), vs = val;
        else if (json_is_real(v))
            snprintf(val, sizeof val, "%.17g", json_real_value(v)), vs = val;
        else if (!json_is_true(v)) {
            fprintf(stderr,
                    SERVE_PROG ": --config %s: \"%s\" must be a string, number or boolean\n", path,
                    key);
            argv_free(av, k);
            json_decref(root);
            return 2;
        }
        if (fl >= (int)sizeof flag)
            continue;
        if ((av[k++] = strdup(flag)) == NULL || (vs != NULL && (av[k++] = strdup(vs)) == NULL)) {
            argv_free(av, k);
            json_decref(root);
            return 1;
        }
    }
    *ret_n_conf = k;
    for (int i = 1; i < argc; i++)
        av[k++] = argv[i];
    json_decref(root);
    *ret_argv = av;
    *ret_argc = k;
    return 0;
}

/* Parses argv into cfg: 0, or an exit code (2 usage, 1 other). */
static int parse_args(int argc, char **argv, serve_cfg_t *c, char *sock_buf, size_t sock_len,
                      char *crl_buf, size_t crl_len)
{
    const char *listen = "127.0.0.1:8080";
    uint64_t v;
    double x;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        const char *a = optarg;
        const char *name = NULL;
        bool okv = true;
        switch (o) {
        case 'h':
            fputs(usage, stdout);
            return -1;
        case O_CONFIG:
            break; /* handled before */
        case O_LISTEN:
            listen = a;
            break;
        case O_MODEL_DIR:
            c->model_dir = a;
            break;
        case O_CA:
            c->ca = a;
            break;
        case O_CRL:
            c->crl = a;
            break;
        case O_ADMIN:
            c->admin_socket = a;
            break;
        case O_AUDIT:
            c->audit = a;
            break;
        case O_IDENTITY:
            c->identity = a;
            break;
        case O_TLS_CERT:
            c->tls_cert = a;
            break;
        case O_TLS_KEY:
            c->tls_key = a;
            break;
        case O_TLS_CA:
            c->tls_client_ca = a;
            break;

        case O_LOG_LEVEL: {
            int lv = fv_log_level_parse(a);
            if (lv < 0)
                return usage_error("--log-level: '%s': debug, info, warn or error", a);
            fv_log_set_level((fv_log_level_t)lv);
            break;
        }
        case O_SHADOW:
            c->route.shadow = true;
            break;
#define U64(OPT, FIELD, LO, HI)                                                                    \
    case OPT:                                                                                      \
        name = #FIELD;                                                                             \
        okv = parse_u64(a, LO, HI, &v);                                                            \
        if (okv)                                                                                   \
            FIELD = v;                                                                             \
        break;
            U64(O_THREADS, c->threads, 1, 256)
            U64(O_POLL, c->poll_ms, 10, 86400000)
            U64(O_MAX_BODY, c->max_body, 64, (uint64_t)1 << 30)
            U64(O_MAX_ROWS, c->max_rows, 1, FV_MODEL_WS_MAX_BATCH)
            U64(O_HDR_TO, c->header_timeout_ms, 1, 3600000)
            U64(O_BODY_TO, c->body_timeout_ms, 1, 3600000)
            U64(O_IDLE_TO, c->idle_timeout_ms, 1, 3600000)
            U64(O_MAX_CONNS, c->max_conns, 1, 1000000)
            U64(O_MAX_SRC, c->max_conns_per_source, 1, 1000000)
            U64(O_REASONS, c->reasons, 0, SERVE_MAX_REASONS)
            U64(O_WINDOW, c->route.window_ms, 10, 86400000)
            U64(O_MIN_REQ, c->route.min_requests, 1, 1000000000)
            U64(O_P99, c->route.p99_budget_us, 0, 3600000000ULL)
            U64(O_DEADLINE, c->route.deadline_us, 0, 3600000000ULL)
            U64(O_MISSES, c->route.consecutive_misses, 0, 1000000)
            U64(O_COOLDOWN, c->route.cooldown_ms, 1, 86400000)
            U64(O_PROBES, c->route.probes, 1, 1000000)
            U64(O_C_P99, c->route.canary_max_p99_us, 0, 3600000000ULL)
#undef U64
        case O_CANARY:
            name = "canary-percent";
            okv = parse_double(a, 0, 100, &x);
            if (okv)
                c->route.canary_percent = x;
            break;
        case O_C_ERR:
            name = "canary-max-error-rate";
            okv = parse_double(a, 0, 1, &x);
            if (okv)
                c->route.canary_max_error_rate = x;
            break;
        default:
            return usage_error("unknown option or missing value: %s", argv[optind - 1]);
        }
        if (!okv)
            return usage_error("bad value '%s' for %s (see --help for the range)", a, name);
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (c->model_dir == NULL || c->ca == NULL)
        return usage_error("--model-dir and --ca are required");
    if ((c->tls_cert == NULL) != (c->tls_key == NULL) ||
        (c->tls_client_ca != NULL && c->tls_cert == NULL))
        return usage_error("--tls-cert and --tls-key go together (and --tls-client-ca needs them)");
    if ((c->audit == NULL) != (c->identity == NULL))
        return usage_error("--audit and --identity go together");
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof c->host ||
        !parse_u64(colon + 1, 0, 65535, &v))
        return usage_error("--listen '%s': HOST:PORT", listen);
    c->port = (int)v;
    memcpy(c->host, listen, (size_t)(colon - listen));
    c->host[colon - listen] = '\0';
    if (c->host[0] == '[') { /* [::1]:8080 */
        size_t n = strlen(c->host);
        if (n < 2 || c->host[n - 1] != ']')
            return usage_error("--listen '%s': HOST:PORT", listen);
        memmove(c->host, c->host + 1, n - 2);
        c->host[n - 2] = '\0';
    }
    if (c->admin_socket == NULL) {
        if (snprintf(sock_buf, sock_len, "%s/serve.sock", c->model_dir) >= (int)sock_len)
            return usage_error("--model-dir '%s': path too long", c->model_dir);
        c->admin_socket = sock_buf;
    }
    if (c->crl == NULL) { /* the agent keeps the federation's CRL beside the releases */
        if (snprintf(crl_buf, crl_len, "%s/crl.pem", c->model_dir) < (int)crl_len &&
            access(crl_buf, R_OK) == 0)
            c->crl = crl_buf;
    }
    if (c->max_conns_per_source == 0)
        c->max_conns_per_source = c->max_conns / 4 > 4 ? c->max_conns / 4 : 4;
    return 0;
}

/* ---- audit ------------------------------------------------------------------------ */

static int open_audit(serve_t *s, fv_diag_t *d)
{
    json_error_t je;
    json_t *id = json_load_file(s->cfg->identity, 0, &je);
    const char *key = json_string_value(json_object_get(id, "key"));
    const char *name = json_string_value(json_object_get(id, "name"));
    int r = 0;
    uint8_t *sk = NULL;
    if (key == NULL || name == NULL) {
        r = fv_diag_set(d, FV_EINVAL, "--identity %s: %s", s->cfg->identity,
                        id == NULL ? je.text : "an agent.json with \"name\" and \"key\" is needed");
        goto out;
    }
    char kpath[PATH_MAX], dirb[PATH_MAX], head[PATH_MAX];
    snprintf(dirb, sizeof dirb, "%s", s->cfg->identity);
    if (key[0] == '/')
        snprintf(kpath, sizeof kpath, "%s", key);
    else
        snprintf(kpath, sizeof kpath, "%s/%s", dirname(dirb), key);
    sk = sodium_malloc(64);
    if (sk == NULL) {
        r = fv_diag_set(d, FV_ENOMEM, "out of memory");
        goto out;
    }
    if ((r = fv_tls_load_sign_key(kpath, sk, d)) != 0)
        goto out;
    snprintf(head, sizeof head, "%s.head", s->cfg->audit);
    r = fv_audit_open(s->cfg->audit, head, sk, name, &s->audit, d);
out:
    if (sk != NULL)
        sodium_free(sk);
    json_decref(id);
    return r;
}

/* ---- start and stop ----------------------------------------------------------------- */

static uv_signal_t g_sigint, g_sigterm;

void fv__serve_stop(serve_t *s, int code)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->exit_code = code;
    uv_close((uv_handle_t *)&g_sigint, NULL);
    uv_close((uv_handle_t *)&g_sigterm, NULL);
    fv__serve_http_stop(s);
    fv__serve_admin_stop(s);
    fv__serve_models_stop(s);
    /* the workers finish the queue; their jobs are given back (connections closing) */
    fv__serve_pool_stop(s);
    if (s->async_open) {
        pthread_mutex_lock(&s->mu);
        s->events_closed = true;
        pthread_mutex_unlock(&s->mu);
        fv__serve_on_async(&s->async);
        uv_close((uv_handle_t *)&s->async, NULL);
        s->async_open = false;
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    serve_t *s = h->data;
    fv__serve_log(FV_LOG_INFO, "stopping", json_pack("{s:i}", "signal", signum));
    fv__serve_stop(s, 0);
}

int main(int argc, char **argv)
{
    serve_cfg_t cfg = {.port = 8080,
                       .threads = 1,
                       .poll_ms = 1000,
                       .max_body = 1048576,
                       .max_rows = 1024,
                       .max_conns = 1024,
                       .reasons = 3,
                       .header_timeout_ms = 10000,
                       .body_timeout_ms = 10000,
                       .idle_timeout_ms = 60000};
    fv_route_cfg_default(&cfg.route);
    const char *t = getenv("FV_TEST_SERVE");
    cfg.test_hooks = t != NULL && strcmp(t, "1") == 0;
    t = getenv("FV_TEST_SERVE_SLEEP");
    cfg.test_sleep = cfg.test_hooks && t != NULL && strcmp(t, "1") == 0;
    signal(SIGPIPE, SIG_IGN);
    /* --config first: its members go before the real flags */
    int n_conf = 0;
    char **av = argv;
    int ac = argc;
    for (int i = 1; i < argc; i++) {
        const char *cp = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            cp = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            cp = argv[i] + 9;
        if (cp != NULL) {
            int e = config_argv(cp, argc, argv, &n_conf, &av, &ac);
            if (e != 0)
                return e;
            break;
        }
    }
    char sock_buf[PATH_MAX], crl_buf[PATH_MAX];
    int e = parse_args(ac, av, &cfg, sock_buf, sizeof sock_buf, crl_buf, sizeof crl_buf);
    if (e != 0) {
        if (av != argv)
            argv_free(av, n_conf);
        return e < 0 ? 0 : e;
    }
    if (sodium_init() < 0)
        return fail("libsodium failed to initialize");
    fv_blas_set_threads(1); /* each worker scores on its own thread */
    uv_loop_t loop;
    serve_t s = {.loop = &loop, .cfg = &cfg, .exit_code = 0};
    fv_diag_t d = {""};
    int rc = 1;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &s.poll); /* the model directory's poll (serve_models.c) */
    s.poll.data = &s;
    if (fv_trust_new(cfg.ca, cfg.crl, &s.trust, &d) != 0 ||
        fv_route_new(&cfg.route, fv__serve_clock_us, &s, fv__serve_on_route_event, &s, &s.route,
                     &d) != 0) {
        fail(d.msg);
        goto out;
    }
    if (fv__serve_metrics_init(&s) != 0) {
        fail("out of memory");
        goto out;
    }
    if (cfg.tls_cert != NULL && fv__serve_tls_ctx_new(&cfg, &s.tls_ctx, &d) != 0) {
        fail(d.msg);
        goto out;
    }
    if (cfg.audit != NULL && open_audit(&s, &d) != 0) {
        char why[700];
        snprintf(why, sizeof why, "--audit %s: %s", cfg.audit, d.msg);
        fail(why);
        goto out;
    }
    uv_async_init(&loop, &s.async, fv__serve_on_async);
    s.async.data = &s;
    s.async_open = true;
    uv_signal_init(&loop, &g_sigint);
    uv_signal_init(&loop, &g_sigterm);
    g_sigint.data = g_sigterm.data = &s;
    uv_signal_start(&g_sigint, on_signal, SIGINT);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    if (fv__serve_pool_start(&s, &d) != 0 || fv__serve_http_start(&s, &d) != 0 ||
        fv__serve_admin_start(&s, &d) != 0 || fv__serve_models_start(&s, &d) != 0) {
        fail(d.msg);
        fv__serve_stop(&s, 1);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto out;
    }
    if (s.audit != NULL) {
        json_t *o =
            json_pack("{s:s,s:i}", "model_dir", cfg.model_dir, "port", fv__serve_http_port(&s));
        (void)fv_audit_append_obj(s.audit, NULL, "serve.started", o, &d);
        json_decref(o);
    }
    if (cfg.crl == NULL)
        fv__serve_log(FV_LOG_WARN, "no_crl",
                      json_pack("{s:s}", "why",
                                "no --crl: revocation cannot be checked, so every release is "
                                "refused until the server runs with the federation's CRL"));
    fv__serve_log(FV_LOG_INFO, "listening",
                  json_pack("{s:s,s:i,s:s,s:s,s:i,s:b}", "host", cfg.host, "port",
                            fv__serve_http_port(&s), "admin_socket", cfg.admin_socket, "model_dir",
                            cfg.model_dir, "threads", (int)cfg.threads, "test_hooks",
                            cfg.test_hooks));
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = s.exit_code;
out:
    pthread_mutex_lock(&s.mu);
    s.events_closed = true; /* fv_route_free's events, if any, are not reported */
    pthread_mutex_unlock(&s.mu);
    if (s.async_open) { /* failed before the signals were set */
        uv_close((uv_handle_t *)&s.async, NULL);
        s.async_open = false;
    }
    if (!uv_is_closing((uv_handle_t *)&s.poll))
        uv_close((uv_handle_t *)&s.poll, NULL); /* failed before the models started */
    fv_route_free(s.route);
    s.route = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
    /* events the route's last changes queued */
    for (serve_event_t *ev = s.events, *n; ev != NULL; ev = n) {
        n = ev->next;
        free(ev);
    }
    if (uv_loop_close(&loop) != 0)
        fv__serve_log(FV_LOG_WARN, "loop_not_empty", NULL);
    if (s.audit != NULL) {
        json_t *o = json_pack("{s:i}", "exit", rc);
        (void)fv_audit_append_obj(s.audit, NULL, "serve.stopped", o, &d);
        json_decref(o);
    }
    fv_audit_close(s.audit);
    fv_prom_free(s.prom);
    fv__serve_tls_ctx_free(s.tls_ctx);
    fv_trust_free(s.trust);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    fv__serve_log(FV_LOG_INFO, "stopped", json_pack("{s:i}", "exit", rc));
    if (av != argv)
        argv_free(av, n_conf);
    return rc;
}
