/* admin_client.c - the admin commands' client: their options, the admin kit, one
 * connection to the coordinator's admin port with requests in turn, and the answer
 * helpers and printers the commands share (admin-int.h; the commands are in cmd_admin.c,
 * cmd_admin_job.c and cmd_admin_model.c).
 *
 * A client of a running coordinator's admin port (protocols/fv_wire.h, "ADMIN"): one
 * mutually authenticated TLS connection made with the admin kit of `fedvault provision`
 * (admin.json: federation, name, role, coordinator, ca, cert, key; optional "admin" (the
 * admin port's HOST:PORT) and "crl"; paths relative to admin.json; the kit's crl.pem is
 * used when "crl" is absent and the file exists). Each command sends ADMIN_REQ {id, cmd,
 * args} and waits for the ADMIN_RESP carrying the same id; `job watch` and `model export`
 * send several requests over the same connection.
 *
 * Loop: a private uv loop per command, run by the calling thread in short bursts
 * (run_until: UV_RUN_ONCE until the awaited event, the connection's close, or the
 * deadline), so the CLI stays a plain sequential program while fv_conn answers PINGs
 * between requests. Shutdown: fv_client_stop (if the client still lives), close the
 * timer, run the loop empty, uv_loop_close() == 0.
 *
 * Ownership: the fv_client_t belongs to fv_conn (it frees itself once its connection
 * closed, since reconnect is off), so admin_t forgets it in on_close. The host is
 * resolved here, synchronously, before fv_client_start: fv_client_start with a host name
 * that does not resolve frees the client without an on_close (reconnect off), which
 * would leave us a dangling pointer and no reason to print. A response's body and data
 * are copied out of the frame (fv_msg_t borrows) into admin_resp_t, which the caller
 * frees with fv__cli_admin_resp_free.
 *
 * Hostile input: the response is checked by the wire decoder (sizes, JSON-text bytes);
 * the body is then parsed with jansson (which checks UTF-8) and every field is read
 * with a type check: a missing or mistyped field prints as "-", it never crashes the
 * CLI. Strings from the coordinator are printed with control bytes replaced, so they
 * cannot drive the terminal.
 */
#include "admin-int.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv_conn.h"
#include "fv_file.h"
#include "fv_tls.h"
#include "fv_wire.h"

#define CONFIG_MAX_BYTES (1u << 20) /* admin.json */
#define TIMEOUT_DEFAULT_S 30.0
#define INTERVAL_DEFAULT_S 1.0

/* ---- options ------------------------------------------------------------------------ */

static const struct option long_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"admin", required_argument, NULL, OPT_ADMIN},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"interval", required_argument, NULL, OPT_INTERVAL},
    {"out", required_argument, NULL, OPT_OUT},
    {"label", required_argument, NULL, OPT_LABEL},
    {"schema", required_argument, NULL, OPT_SCHEMA},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

const int fv__cli_admin_opts_common[4] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON};

/* Returns -1 to go on, or an exit code (help, usage error). argv[0] is the subcommand
 * word ("show"); n_pos positional arguments are required, named by pos_names. */
int fv__cli_admin_parse(int argc, char **argv, const int *allowed, size_t n_allowed, int n_pos,
                        const char *pos_names, args_t *a)
{
    a->timeout_s = TIMEOUT_DEFAULT_S;
    a->interval_s = INTERVAL_DEFAULT_S;
    int c;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(a->usage, stdout);
            return FV_EXIT_OK;
        }
        bool ok = fv_cli_option_allowed(c, allowed, n_allowed);
        if (!ok && c != '?')
            return fv_cli_option_misplaced(a->cmd, c, long_opts);
        switch (ok ? c : '?') {
        case OPT_CONFIG:
            a->config = optarg;
            break;
        case OPT_ADMIN:
            a->admin = optarg;
            break;
        case OPT_TIMEOUT:
            if (!fv_cli_parse_double(a->cmd, "--timeout", optarg, 0.1, 86400.0, &a->timeout_s))
                return FV_EXIT_USAGE;
            break;
        case OPT_INTERVAL:
            if (!fv_cli_parse_double(a->cmd, "--interval", optarg, 0.1, 3600.0, &a->interval_s))
                return FV_EXIT_USAGE;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_LABEL:
            a->label = optarg;
            break;
        case OPT_SCHEMA:
            a->schema = optarg;
            break;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", a->cmd);
            return FV_EXIT_USAGE;
        }
    }
    int have = argc - optind;
    if (have < n_pos)
        return fv_cli_usage_error(a->cmd, "missing argument: %s", pos_names);
    if (have > n_pos)
        return fv_cli_usage_error(a->cmd, "unexpected argument '%s'", argv[optind + n_pos]);
    for (int i = 0; i < n_pos; i++)
        a->pos[i] = argv[optind + i];
    a->n_pos = n_pos;
    return -1;
}

/* ---- messages ----------------------------------------------------------------------- */

void fv__cli_admin_errorf(const char *fmt, ...)
{
    va_list ap;
    fputs("fedvault: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A string from the coordinator made safe for the terminal: control bytes (and DEL)
 * become '?'; at most cap-1 bytes. */
const char *fv__cli_safe(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s != '\0' && o + 1 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        buf[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    buf[o] = '\0';
    return buf;
}

void fv__cli_put_safe(const char *s, FILE *f)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        fputc((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f ? '?' : ch, f);
    }
}

/* ---- the admin kit -------------------------------------------------------------------- */

static void kit_free(kit_t *k)
{
    free(k->ca);
    free(k->cert);
    free(k->key);
    free(k->crl);
    json_decref(k->root);
    free(k->root_text);
}

static char *resolve(const char *dir, const char *path)
{
    if (path[0] == '/' || dir[0] == '\0')
        return strdup(path);
    size_t n = strlen(dir) + 1 + strlen(path) + 1;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "%s/%s", dir, path);
    return s;
}

/* "HOST:PORT" or "[IPV6]:PORT", port 1..65535 (0 is what provision writes when the port
 * is not known yet: it cannot be dialled). */
static bool parse_hostport(const char *s, char *host, size_t cap, int *ret_port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return false;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']')
            return false;
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= cap)
        return false;
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5)
        return false;
    long port = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *ret_port = (int)port;
    return true;
}

/* A string field: NULL when absent; *err set for a present field that is not a
 * non-empty string without NUL. */
static const char *cfg_str(const kit_t *k, const char *key, bool required, bool *err)
{
    json_t *v = json_object_get(k->root, key);
    if (v == NULL) {
        if (required && !*err) {
            fv__cli_admin_errorf(
                "%s: missing field \"%s\" (an admin kit's admin.json has federation, "
                "name, role, coordinator, ca, cert, key)",
                k->path, key);
            *err = true;
        }
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        if (!*err)
            fv__cli_admin_errorf("%s: field \"%s\" must be a non-empty string", k->path, key);
        *err = true;
        return NULL;
    }
    return json_string_value(v);
}

/* Loads the config named by --config, $FEDVAULT_ADMIN_CONFIG or ./admin.json. Prints
 * the error; returns 0 or an exit code. */
static int kit_load(const args_t *a, kit_t *k)
{
    memset(k, 0, sizeof *k);
    const char *env = getenv("FEDVAULT_ADMIN_CONFIG");
    k->path = a->config != NULL ? a->config : env != NULL && env[0] != '\0' ? env : "admin.json";
    const char *from = a->config != NULL               ? "--config"
                       : env != NULL && env[0] != '\0' ? "$FEDVAULT_ADMIN_CONFIG"
                                                       : "the default ./admin.json";
    fv_diag_t d = {""};
    size_t len = 0;
    int r = fv_file_read_all(k->path, CONFIG_MAX_BYTES, &k->root_text, &len, NULL, &d);
    if (r < 0) {
        fv__cli_admin_errorf("admin config (%s): %s%s", from, d.msg,
                             a->config == NULL
                                 ? " (pass --config FILE or set FEDVAULT_ADMIN_CONFIG to the "
                                   "admin kit's admin.json)"
                                 : "");
        return FV_EXIT_FAIL;
    }
    json_error_t je;
    k->root = json_loadb(k->root_text, len, JSON_REJECT_DUPLICATES, &je);
    if (k->root == NULL) {
        fv__cli_admin_errorf("%s:%d:%d: %s", k->path, je.line, je.column, je.text);
        return FV_EXIT_FAIL;
    }
    if (!json_is_object(k->root)) {
        fv__cli_admin_errorf("%s: expected a JSON object (an admin kit's admin.json)", k->path);
        return FV_EXIT_FAIL;
    }
    static const char *const known[] = {"federation", "name", "role", "coordinator", "admin",
                                        "ca",         "cert", "key",  "crl"};
    const char *key;
    json_t *v;
    json_object_foreach(k->root, key, v)
    {
        bool ok = false;
        for (size_t i = 0; i < N_OF(known); i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok) {
            fv__cli_admin_errorf(
                "%s: unknown field \"%s\" (known: federation, name, role, coordinator, "
                "admin, ca, cert, key, crl)",
                k->path, key);
            return FV_EXIT_FAIL;
        }
    }
    bool err = false;
    k->federation = cfg_str(k, "federation", true, &err);
    k->name = cfg_str(k, "name", true, &err);
    const char *role = cfg_str(k, "role", false, &err);
    const char *coord = cfg_str(k, "coordinator", false, &err);
    const char *admin = cfg_str(k, "admin", false, &err);
    const char *ca = cfg_str(k, "ca", true, &err);
    const char *cert = cfg_str(k, "cert", true, &err);
    const char *kkey = cfg_str(k, "key", true, &err);
    const char *crl = cfg_str(k, "crl", false, &err);
    if (err)
        return FV_EXIT_FAIL;
    /* Another role's kit is tried anyway: the admin port refuses it and says why (exit
     * 3), which is the authority on what it accepts; we only warn. */
    if (role != NULL && strcmp(role, "admin") != 0)
        fprintf(stderr,
                "fedvault: warning: %s: field \"role\" is \"%s\": not an admin kit (make one "
                "with `fedvault provision add-admin`); the admin port will refuse it\n",
                k->path, fv__cli_safe(role, (char[80]){0}, 80));

    const char *slash = strrchr(k->path, '/');
    char *dir = slash == NULL ? strdup("") : strndup(k->path, (size_t)(slash - k->path));
    if (dir == NULL) {
        fv__cli_admin_errorf("out of memory");
        return FV_EXIT_FAIL;
    }
    if (slash != NULL && dir[0] == '\0') {
        free(dir);
        dir = strdup("/");
    }
    k->ca = dir ? resolve(dir, ca) : NULL;
    k->cert = dir ? resolve(dir, cert) : NULL;
    k->key = dir ? resolve(dir, kkey) : NULL;
    if (crl != NULL) {
        k->crl = dir ? resolve(dir, crl) : NULL;
    } else if (dir != NULL) {
        /* provision copies the CRL into admin kits without naming it in admin.json */
        char *def = resolve(dir, "crl.pem");
        struct stat st;
        if (def != NULL && stat(def, &st) == 0 && S_ISREG(st.st_mode))
            k->crl = def;
        else
            free(def);
    }
    bool oom = dir == NULL || k->ca == NULL || k->cert == NULL || k->key == NULL ||
               (crl != NULL && k->crl == NULL);
    free(dir);
    if (oom) {
        fv__cli_admin_errorf("out of memory");
        return FV_EXIT_FAIL;
    }

    const char *addr = a->admin != NULL ? a->admin : admin != NULL ? admin : coord;
    const char *addr_from = a->admin != NULL ? "--admin"
                            : admin != NULL  ? "field \"admin\""
                                             : "field \"coordinator\"";
    if (addr == NULL) {
        fv__cli_admin_errorf(
            "%s: no address: set field \"admin\" (or \"coordinator\") to the coordinator's "
            "admin port HOST:PORT, or pass --admin HOST:PORT",
            k->path);
        return FV_EXIT_FAIL;
    }
    if (!parse_hostport(addr, k->host, sizeof k->host, &k->port)) {
        char b[300];
        if (a->admin != NULL)
            return fv_cli_usage_error(a->cmd,
                                      "--admin: expected HOST:PORT (port 1..65535), got '%s'",
                                      fv__cli_safe(addr, b, sizeof b));
        fv__cli_admin_errorf("%s: %s \"%s\": expected HOST:PORT with a port 1..65535 (pass --admin "
                             "HOST:PORT to override)",
                             k->path, addr_from, fv__cli_safe(addr, b, sizeof b));
        return FV_EXIT_FAIL;
    }
    snprintf(k->addr, sizeof k->addr, "%s", addr);
    return 0;
}

/* ---- one connection, requests in turn ----------------------------------------------- */

void fv__cli_admin_resp_free(admin_resp_t *r)
{
    free(r->body);
    free(r->data);
    memset(r, 0, sizeof *r);
}

static void on_open(fv_conn_t *c, const fv_identity_t *peer)
{
    admin_t *s = fv_conn_get_data(c);
    (void)peer; /* fv_tls checked: the coordinator role (allowed_roles), our federation */
    s->opened = true;
    s->conn = c;
}

static void on_msg(fv_conn_t *c, const fv_msg_t *m)
{
    admin_t *s = fv_conn_get_data(c);
    if (m->type != FV_MSG_ADMIN_RESP || !s->waiting || m->u.admin_resp.id != s->want_id)
        return; /* not the answer we wait for (a late answer to an abandoned request) */
    admin_resp_t r = {.status = m->u.admin_resp.status};
    r.body = malloc(m->u.admin_resp.body.len + 1);
    r.data = malloc(m->u.admin_resp.data_len > 0 ? m->u.admin_resp.data_len : 1);
    if (r.body == NULL || r.data == NULL) {
        fv__cli_admin_resp_free(&r);
        s->fail = FV_ENOMEM;
    } else {
        if (m->u.admin_resp.body.len > 0)
            memcpy(r.body, m->u.admin_resp.body.ptr, m->u.admin_resp.body.len);
        r.body[m->u.admin_resp.body.len] = '\0';
        r.body_len = m->u.admin_resp.body.len;
        if (m->u.admin_resp.data_len > 0)
            memcpy(r.data, m->u.admin_resp.data, m->u.admin_resp.data_len);
        r.data_len = m->u.admin_resp.data_len;
        s->resp = r;
    }
    s->waiting = false;
    s->got = true;
}

static void on_close(fv_conn_t *c, int err, const char *why)
{
    admin_t *s = fv_conn_get_data(c);
    s->closed = true;
    s->conn = NULL;
    s->client = NULL; /* reconnect is off: fv_conn frees the client after this */
    if (s->close_err == 0 && s->close_why[0] == '\0') {
        s->close_err = err;
        snprintf(s->close_why, sizeof s->close_why, "%s", why != NULL ? why : "");
    }
}

static void on_timer(uv_timer_t *t)
{
    admin_t *s = t->data;
    s->fired = true;
}

/* Runs the loop until *flag, the connection's close or the timer (armed for ms). */
static void run_until(admin_t *s, const bool *flag, uint64_t ms)
{
    s->fired = false;
    uv_timer_start(&s->timer, on_timer, ms, 0);
    while (!*flag && !s->closed && !s->fired)
        uv_run(&s->loop, UV_RUN_ONCE);
    uv_timer_stop(&s->timer);
}

static uint64_t timeout_ms(const admin_t *s)
{
    return (uint64_t)llround(s->timeout_s * 1000.0);
}

/* Prints why the connection is gone (or never came) and returns FV_EXIT_UNREACHABLE.
 * what: "'job.show'" (the request waited for) or "" (connecting). */
int fv__cli_admin_unreachable(admin_t *s, const char *what)
{
    if (s->closed) {
        const char *why = s->close_why[0] != '\0' ? s->close_why : fv_strerror(s->close_err);
        if (!s->opened)
            fv__cli_admin_errorf("cannot reach the coordinator's admin port at %s: %s",
                                 s->kit->addr, why);
        else
            fv__cli_admin_errorf(
                "lost the connection to the coordinator's admin port at %s (waiting for "
                "%s): %s",
                s->kit->addr, what, why);
    } else if (!s->opened) {
        fv__cli_admin_errorf(
            "cannot reach the coordinator's admin port at %s: no TLS session within %g s "
            "(is it the admin port? --timeout sets the limit)",
            s->kit->addr, s->timeout_s);
    } else {
        fv__cli_admin_errorf("no answer to %s from the coordinator's admin port at %s within %g s "
                             "(--timeout sets the limit)",
                             what, s->kit->addr, s->timeout_s);
    }
    return FV_EXIT_UNREACHABLE;
}

/* Resolves the host now (the loop is idle, so a synchronous uv_getaddrinfo is fine) and
 * writes a numeric address for fv_client_start into num. */
static int resolve_host(admin_t *s, char *num, size_t cap)
{
    uv_getaddrinfo_t req;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int r = uv_getaddrinfo(&s->loop, &req, NULL, s->kit->host, NULL, &hints);
    if (r != 0) {
        fv__cli_admin_errorf(
            "cannot reach the coordinator's admin port at %s: cannot resolve '%s': %s",
            s->kit->addr, s->kit->host, uv_strerror(r));
        return FV_EXIT_UNREACHABLE;
    }
    r = UV_EAI_FAMILY;
    for (struct addrinfo *ai = req.addrinfo; ai != NULL && r != 0; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET)
            r = uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, num, cap);
        else if (ai->ai_family == AF_INET6)
            r = uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, num, cap);
    }
    uv_freeaddrinfo(req.addrinfo);
    if (r != 0) {
        fv__cli_admin_errorf(
            "cannot reach the coordinator's admin port at %s: '%s' has no IPv4 or IPv6 "
            "address",
            s->kit->addr, s->kit->host);
        return FV_EXIT_UNREACHABLE;
    }
    return 0;
}

/* Loads the kit's TLS context and connects; returns 0 once the session is open (HELLO
 * exchanged), else an exit code (the error printed). admin_close is needed either way. */
static int admin_open(admin_t *s, const kit_t *k, double timeout_s)
{
    memset(s, 0, sizeof *s);
    s->kit = k;
    s->timeout_s = timeout_s;
    s->next_id = randombytes_random();
    /* a peer that vanishes must surface as a write error on_close reports, not kill us */
    signal(SIGPIPE, SIG_IGN);
    int r = uv_loop_init(&s->loop);
    if (r != 0) {
        fv__cli_admin_errorf("cannot start an event loop: %s", uv_strerror(r));
        return FV_EXIT_FAIL;
    }
    s->loop_ready = true;
    uv_timer_init(&s->loop, &s->timer);
    s->timer.data = s;
    s->timer_ready = true;

    fv_tls_opts_t to = {
        .ca_file = k->ca, .cert_file = k->cert, .key_file = k->key, .crl_file = k->crl};
    fv_diag_t d = {""};
    if ((r = fv_tls_ctx_new(false, &to, &s->ctx, &d)) != 0) {
        fv__cli_admin_errorf("%s: the admin kit cannot be used: %s", k->path, d.msg);
        return r == FV_EAUTH ? FV_EXIT_UNREACHABLE : FV_EXIT_FAIL;
    }
    const fv_identity_t *me = fv_tls_ctx_identity(s->ctx);
    const json_t *role = json_object_get(k->root, "role");
    if (me->role != FV_ROLE_ADMIN &&
        !(json_is_string(role) && strcmp(json_string_value(role), "admin") != 0))
        fprintf(stderr,
                "fedvault: warning: %s: %s is a certificate for the %s role, not an admin's; "
                "the admin port will refuse it\n",
                k->path, k->cert, fv_role_name(me->role));
    if (strcmp(me->federation, k->federation) != 0 || strcmp(me->name, k->name) != 0) {
        char b1[80], b2[80];
        fv__cli_admin_errorf("%s: fields \"federation\"/\"name\" say %s/%s but %s is for %s/%s",
                             k->path, fv__cli_safe(k->federation, b1, sizeof b1),
                             fv__cli_safe(k->name, b2, sizeof b2), k->cert, me->federation,
                             me->name);
        return FV_EXIT_FAIL;
    }

    char num[64];
    if ((r = resolve_host(s, num, sizeof num)) != 0)
        return r;
    fv_net_opts_t net;
    fv_net_opts_default(&net);
    net.lim.max_frame_bytes = FV_WIRE_ADMIN_FRAME_BYTES;
    net.allowed_roles = FV_ROLE_BIT(FV_ROLE_COORDINATOR);
    uint64_t ms = timeout_ms(s);
    net.handshake_timeout_ms = ms;
    if (net.dead_ms < ms)
        net.dead_ms = ms; /* a slow answer is --timeout's to judge */
    fv_client_opts_t copts;
    fv_client_opts_default(&copts);
    copts.reconnect = false;
    fv_conn_cbs_t cbs = {.on_open = on_open, .on_msg = on_msg, .on_close = on_close};
    r = fv_client_start(&s->loop, s->ctx, num, k->port, &net, &copts, &cbs, s, &s->client);
    if (r != 0) {
        fv__cli_admin_errorf("cannot reach the coordinator's admin port at %s: %s", k->addr,
                             fv_strerror(r));
        return FV_EXIT_UNREACHABLE;
    }
    run_until(s, &s->opened, ms);
    if (!s->opened || s->closed)
        return fv__cli_admin_unreachable(s, "");
    return 0;
}

/* Sends one request (args: JSON text) and waits for its answer. 0 with *ret filled (the
 * caller frees it; status may be negative), or an exit code (the error printed). */
static int admin_call(admin_t *s, const char *cmd, const char *args, admin_resp_t *ret)
{
    char what[96];
    snprintf(what, sizeof what, "'%s'", cmd);
    if (s->conn == NULL || s->closed)
        return fv__cli_admin_unreachable(s, what);
    fv_msg_t m = {.type = FV_MSG_ADMIN_REQ};
    m.u.admin_req.id = s->want_id = s->next_id++;
    m.u.admin_req.cmd.ptr = cmd;
    m.u.admin_req.cmd.len = strlen(cmd);
    m.u.admin_req.args.ptr = args;
    m.u.admin_req.args.len = strlen(args);
    int r = fv_conn_send(s->conn, &m);
    if (r != 0) {
        if (s->closed || r == UV_ENOTCONN || r == UV_ENOBUFS)
            return fv__cli_admin_unreachable(s, what);
        fv__cli_admin_errorf("the '%s' request cannot be sent: %s", cmd, fv_strerror(r));
        return FV_EXIT_FAIL;
    }
    s->waiting = true;
    s->got = false;
    run_until(s, &s->got, timeout_ms(s));
    s->waiting = false;
    if (s->fail != 0) {
        fv__cli_admin_errorf("out of memory for the answer to '%s'", cmd);
        return FV_EXIT_FAIL;
    }
    if (!s->got)
        return fv__cli_admin_unreachable(s, what);
    *ret = s->resp;
    memset(&s->resp, 0, sizeof s->resp);
    return 0;
}

/* Waits ms with the connection serviced; false if it closed meanwhile. */
bool fv__cli_admin_sleep(admin_t *s, uint64_t ms)
{
    static const bool never = false;
    run_until(s, &never, ms);
    return !s->closed;
}

static void admin_close(admin_t *s)
{
    if (!s->loop_ready)
        return;
    if (s->client != NULL)
        fv_client_stop(s->client); /* BYE, close_notify; on_close follows */
    if (s->timer_ready)
        uv_close((uv_handle_t *)&s->timer, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s->loop) != 0)
        fprintf(stderr, "fedvault: warning: handles left open at exit\n");
    fv_tls_ctx_free(s->ctx);
    fv__cli_admin_resp_free(&s->resp);
    s->loop_ready = false;
}

/* ---- answers ------------------------------------------------------------------------- */

/* The coordinator's refusal: its sentence, else the code's. Returns FV_EXIT_FAIL. */
static int refused(const char *cmd, const admin_resp_t *r)
{
    json_t *b = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *e = json_is_object(b) ? json_object_get(b, "error") : NULL;
    if (json_is_string(e)) {
        fputs("fedvault: error: ", stderr);
        fv__cli_put_safe(json_string_value(e), stderr);
        fputc('\n', stderr);
    } else {
        fv__cli_admin_errorf("the coordinator refused '%s': %s (%s)", cmd, fv_strerror(r->status),
                             fv_err_name(r->status));
    }
    json_decref(b);
    return FV_EXIT_FAIL;
}

/* Parses a success answer's body as a JSON object; NULL (error printed) otherwise. */
static json_t *parse_body(const char *cmd, const admin_resp_t *r)
{
    json_error_t je;
    json_t *b = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (b == NULL) {
        fv__cli_admin_errorf(
            "the coordinator's answer to '%s' is not JSON (line %d, column %d: %s)", cmd, je.line,
            je.column, je.text);
        return NULL;
    }
    if (!json_is_object(b)) {
        fv__cli_admin_errorf("the coordinator's answer to '%s' is not a JSON object", cmd);
        json_decref(b);
        return NULL;
    }
    return b;
}

static void print_body_raw(const admin_resp_t *r)
{
    fwrite(r->body, 1, r->body_len, stdout);
    if (r->body_len == 0 || r->body[r->body_len - 1] != '\n')
        fputc('\n', stdout);
}

/* A field as text for a table: "-" when missing or null; numbers as numbers; booleans
 * yes/no; an array as its length; an object as compact JSON. Borrowed or in buf. */
const char *fv__cli_ftxt(const json_t *o, const char *key, char *buf, size_t cap)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    if (v == NULL || json_is_null(v))
        return "-";
    if (json_is_string(v))
        return fv__cli_safe(json_string_value(v), buf, cap);
    if (json_is_integer(v))
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, cap, "%.4g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, cap, "%s", json_is_true(v) ? "yes" : "no");
    else if (json_is_array(v))
        snprintf(buf, cap, "%zu", json_array_size(v));
    else {
        char *s = json_dumps(v, JSON_COMPACT);
        fv__cli_safe(s != NULL ? s : "?", buf, cap);
        free(s);
    }
    return buf;
}

bool fv__cli_fnum(const json_t *o, const char *key, double *ret)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    if (!json_is_number(v))
        return false;
    *ret = json_number_value(v);
    return true;
}

const char *fv__cli_fstr(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* "1d 02:03:04", "02:03:04" or "-". */
const char *fv__cli_dur(double s, bool have, char *buf, size_t cap)
{
    if (!have || !isfinite(s) || s < 0 || s > 1e9)
        return "-";
    uint64_t t = (uint64_t)s;
    if (t >= 86400)
        snprintf(buf, cap, "%" PRIu64 "d %02u:%02u:%02u", t / 86400, (unsigned)(t % 86400 / 3600),
                 (unsigned)(t % 3600 / 60), (unsigned)(t % 60));
    else
        snprintf(buf, cap, "%02u:%02u:%02u", (unsigned)(t / 3600), (unsigned)(t % 3600 / 60),
                 (unsigned)(t % 60));
    return buf;
}

static void cell(const json_t *row, const col_t *c, char *buf)
{
    const char *t = fv__cli_ftxt(row, c->key, buf, CELL_MAX);
    if (t != buf)
        snprintf(buf, CELL_MAX, "%s", t);
    if (c->shorten > 0 && strlen(buf) > 16)
        buf[c->shorten] = '\0';
}

/* A table of the objects in arr (non-objects print as rows of "-"). */
void fv__cli_print_table(const json_t *arr, const col_t *cols, size_t n_cols)
{
    size_t w[16] = {0};
    char buf[CELL_MAX];
    size_t i;
    const json_t *row;
    for (size_t c = 0; c < n_cols && c < 16; c++)
        w[c] = strlen(cols[c].head);
    json_array_foreach(arr, i, row)
    {
        for (size_t c = 0; c < n_cols && c < 16; c++) {
            cell(row, &cols[c], buf);
            if (strlen(buf) > w[c])
                w[c] = strlen(buf);
        }
    }
    for (size_t c = 0; c < n_cols && c < 16; c++)
        printf("%-*s%s", c + 1 < n_cols ? (int)w[c] : 0, cols[c].head,
               c + 1 < n_cols ? "  " : "\n");
    json_array_foreach(arr, i, row)
    {
        for (size_t c = 0; c < n_cols && c < 16; c++) {
            cell(row, &cols[c], buf);
            printf("%-*s%s", c + 1 < n_cols ? (int)w[c] : 0, buf, c + 1 < n_cols ? "  " : "\n");
        }
    }
}

/* "key  value" lines for the given fields of o. */
void fv__cli_print_fields(const json_t *o, const char *const *keys, size_t n, int width)
{
    char buf[512];
    for (size_t i = 0; i < n; i++)
        printf("%-*s  %s\n", width, keys[i], fv__cli_ftxt(o, keys[i], buf, sizeof buf));
}

/* JSON printed indented by `indent` spaces (control bytes cannot occur: json_dumps
 * escapes them). */
void fv__cli_print_json_indented(const json_t *v, int indent)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (s == NULL) {
        printf("%*s-\n", indent, "");
        return;
    }
    for (char *line = s, *nl; line != NULL; line = nl != NULL ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        printf("%*s", indent, "");
        fv__cli_put_safe(line, stdout);
        fputc('\n', stdout);
    }
    free(s);
}

/* ---- what the commands share: a session, requests, list and group commands -------- */

/* Loads the kit and connects (kit_load, admin_open). Returns 0 or an exit code (the
 * error printed); fv__cli_admin_session_close is needed either way. */
int fv__cli_admin_session_open(const args_t *a, kit_t *k, admin_t *s)
{
    memset(s, 0, sizeof *s);
    int rc = kit_load(a, k);
    return rc != 0 ? rc : admin_open(s, k, a->timeout_s);
}

void fv__cli_admin_session_close(admin_t *s, kit_t *k)
{
    admin_close(s);
    kit_free(k);
}

/* Sends one request and handles a refusal; 0 with *r and *ret_body (the parsed object)
 * filled, both the caller's to free, or an exit code (the error printed, nothing to
 * free). */
int fv__cli_admin_request(admin_t *s, const char *cmd, const char *args, admin_resp_t *r,
                          json_t **ret_body)
{
    json_t *b = NULL;
    int rc = admin_call(s, cmd, args, r);
    if (rc != 0)
        return rc;
    if (r->status < 0)
        rc = refused(cmd, r);
    else if ((b = parse_body(cmd, r)) == NULL)
        rc = FV_EXIT_FAIL;
    if (rc != 0) {
        fv__cli_admin_resp_free(r);
        return rc;
    }
    *ret_body = b;
    return 0;
}

/* Connects, sends one request, handles refusal and --json; on success with a readable
 * format wanted, returns -1 with *ret_body (the parsed object, caller decrefs). */
static int simple_call(const args_t *a, const char *cmd, const char *args, json_t **ret_body)
{
    kit_t k;
    admin_t s;
    admin_resp_t r = {0};
    int rc = fv__cli_admin_session_open(a, &k, &s);
    if (rc == 0)
        rc = admin_call(&s, cmd, args, &r);
    fv__cli_admin_session_close(&s, &k);
    if (rc != 0)
        goto out;
    if (r.status < 0) {
        rc = refused(cmd, &r);
        goto out;
    }
    if (a->json) {
        print_body_raw(&r);
        rc = FV_EXIT_OK;
        goto out;
    }
    *ret_body = parse_body(cmd, &r);
    rc = *ret_body != NULL ? -1 : FV_EXIT_FAIL;
out:
    fv__cli_admin_resp_free(&r);
    return rc;
}

/* args JSON text from a jansson object (stolen). NULL on out of memory (printed). */
char *fv__cli_admin_args_dump(json_t *o)
{
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL)
        fv__cli_admin_errorf("out of memory");
    return s;
}

/* simple_call with args from fv__cli_admin_args_dump, taken (freed here; NULL: out of memory, which
 * fv__cli_admin_args_dump printed). */
int fv__cli_admin_call_owned(const args_t *a, const char *cmd, char *args, json_t **ret_body)
{
    if (args == NULL)
        return FV_EXIT_FAIL;
    int rc = simple_call(a, cmd, args, ret_body);
    free(args);
    return rc;
}

/* A command without positional arguments whose request takes no args: the common
 * options, then simple_call. */
int fv__cli_admin_noarg_call(int argc, char **argv, args_t *a, const char *cmd, json_t **ret_body)
{
    int rc = fv__cli_admin_parse(argc, argv, fv__cli_admin_opts_common,
                                 N_OF(fv__cli_admin_opts_common), 0, "", a);
    return rc >= 0 ? rc : simple_call(a, cmd, "{}", ret_body);
}

int fv__cli_admin_list_run(int argc, char **argv, const list_cmd_t *l)
{
    args_t a = {.cmd = l->cmd, .usage = l->usage};
    json_t *b = NULL;
    int rc = fv__cli_admin_noarg_call(argc, argv, &a, l->req, &b);
    if (rc >= 0)
        return rc;
    const json_t *arr = json_object_get(b, l->key);
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        printf("%s\n", l->none);
    else
        fv__cli_print_table(arr, l->cols, l->n_cols);
    json_decref(b);
    return FV_EXIT_OK;
}

/* Runs the group's subcommand named by argv[1]; --help for the group. */
int fv__cli_admin_group_run(int argc, char **argv, const char *group, const char *usage,
                            const sub_t *subs, size_t n_subs)
{
    if (argc < 2)
        return fv_cli_usage_error(group, "missing subcommand");
    const char *w = argv[1];
    if (strcmp(w, "--help") == 0 || strcmp(w, "-h") == 0 || strcmp(w, "help") == 0) {
        fputs(usage, stdout);
        return FV_EXIT_OK;
    }
    for (size_t i = 0; i < n_subs; i++)
        if (strcmp(w, subs[i].name) == 0)
            return subs[i].run(argc - 1, argv + 1);
    char b[80];
    return fv_cli_usage_error(group, "unknown subcommand '%s'", fv__cli_safe(w, b, sizeof b));
}
