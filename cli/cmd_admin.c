/* cmd_admin.c - the admin commands: `fedvault status | agents | job | model | crl`.
 *
 * A client of a running coordinator's admin port (protocols/fv_wire.h, "ADMIN"): one
 * mutually authenticated TLS connection made with the admin kit of `fedvault provision`
 * (admin.json: federation, name, role, coordinator, ca, cert, key; optional "admin" (the
 * admin port's HOST:PORT) and "crl"; paths relative to admin.json; the kit's crl.pem is
 * used when "crl" is absent and the file exists). Each command sends ADMIN_REQ {id, cmd,
 * args} and waits for the ADMIN_RESP carrying the same id; `job watch` and `model export`
 * send several requests over the same connection. `job template` and `job check` are
 * local (cmd_job_spec.c, which also reads the spec file `job submit` sends).
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
 * frees with resp_free.
 *
 * Hostile input: the response is checked by the wire decoder (sizes, JSON-text bytes);
 * the body is then parsed with jansson (which checks UTF-8) and every field is read
 * with a type check: a missing or mistyped field prints as "-", it never crashes the
 * CLI. Strings from the coordinator are printed with control bytes replaced, so they
 * cannot drive the terminal. `model export` writes its file only after the SHA-256 of
 * everything received equals the digest the coordinator announced, never more than
 * EXPORT_MAX_BYTES, through a temporary file, fsync and rename.
 *
 * Exit codes: 0 success; 1 the coordinator refused (status < 0: its sentence is printed)
 * or the command failed locally (config, kit, output file); 2 usage; 3 the coordinator
 * could not be reached, the TLS handshake or authentication failed, the connection was
 * lost or no answer came within --timeout.
 */
#include "cli-int.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv_conn.h"
#include "fv_file.h"
#include "fv_tls.h"
#include "fv_wire.h"

#define CONFIG_MAX_BYTES (1u << 20)   /* admin.json */
#define EXPORT_MAX_BYTES (2ull << 30) /* model export: 2 GiB */
#define TIMEOUT_DEFAULT_S 30.0
#define INTERVAL_DEFAULT_S 1.0
#define HOST_MAX 256

/* ---- usage texts ------------------------------------------------------------------- */

#define COMMON_OPTS                                                                                \
    "Common options:\n"                                                                            \
    "  --config FILE      the admin kit's admin.json (default $FEDVAULT_ADMIN_CONFIG,\n"           \
    "                     else ./admin.json)\n"                                                    \
    "  --admin HOST:PORT  the coordinator's admin port (default: the config's \"admin\"\n"         \
    "                     field, else its \"coordinator\" field)\n"                                \
    "  --timeout SECONDS  give up when connecting or an answer takes longer (default 30)\n"        \
    "  --json             print the coordinator's JSON answer as is\n"                             \
    "  -h, --help         this text\n"                                                             \
    "\n"                                                                                           \
    "Exit status: 0 success, 1 the coordinator refused or the command failed, 2 usage\n"           \
    "error, 3 the coordinator could not be reached or the TLS handshake/authentication\n"          \
    "failed.\n"

static const char usage_status[] =
    "Usage: fedvault status [options]\n"
    "\n"
    "Shows the coordinator's state: federation, version, uptime, connected and known\n"
    "agents, the running job (round, phase, answers) and job counts.\n"
    "\n" COMMON_OPTS;

static const char usage_agents[] =
    "Usage: fedvault agents list [options]\n"
    "\n"
    "Lists the agents the coordinator knows: name, connected, address, certificate\n"
    "serial, first and last seen, whether it is in the running job, its consecutive\n"
    "silent rounds (MISSES) and, when benched for them, the rounds it still sits out\n"
    "(BENCHED; see fedvault-coordinator --bench-after).\n"
    "\n" COMMON_OPTS;

static const char usage_job[] =
    "Usage: fedvault job submit SPEC [--schema FILE] [options]\n"
    "       fedvault job list [options]\n"
    "       fedvault job show ID [options]\n"
    "       fedvault job watch ID [--interval SECONDS] [options]\n"
    "       fedvault job abort ID [options]\n"
    "       fedvault job report ID --out FILE [options]\n"
    "       fedvault job template [--model M] [--secagg on|off] [--distill]  (local)\n"
    "       fedvault job check SPEC [--schema FILE]                          (local)\n"
    "\n"
    "submit  sends the job spec in the JSON file SPEC (- for standard input) and prints\n"
    "        the new job's id. SPEC may hold full-line // comments and give \"schema\" as\n"
    "        a path relative to its directory; --schema FILE replaces the spec's schema\n"
    "        with FILE's. The spec sent, schema inlined, may hold at most 1 MiB.\n"
    "list    lists the jobs (ids longer than 16 characters are shortened to 12 in the\n"
    "        table: any unique prefix names a job; --json gives them whole).\n"
    "show    shows one job: its fields, spec, rounds with their metrics, agents and live\n"
    "        progress. ID may be a unique prefix of the job id.\n"
    "watch   asks for the job every --interval seconds (default 1) and redraws a progress\n"
    "        display (on a terminal; otherwise prints one line whenever the progress\n"
    "        changes). Exits 0 when the job is done, 1 when it failed or was aborted.\n"
    "abort   asks the coordinator to abort the job.\n"
    "report  writes the job's report, a self-contained HTML page (job report --help).\n"
    "template prints a commented starting spec; check parses a spec as the coordinator\n"
    "        will and prints its canonical form and id (see 'fedvault job template --help',\n"
    "        'fedvault job check --help'; the reference: docs/job.schema.json).\n"
    "\n"
    "  --schema FILE       submit: the job's schema, instead of the spec's own\n"
    "  --interval SECONDS  watch: seconds between polls, 0.1..3600\n"
    "\n" COMMON_OPTS;

static const char usage_model[] =
    "Usage: fedvault model list [options]\n"
    "       fedvault model show VERSION [options]\n"
    "       fedvault model export VERSION --out FILE [options]\n"
    "       fedvault model release VERSION --label stable|canary|backup [options]\n"
    "       fedvault model releases [options]\n"
    "\n"
    "list    lists the global models the coordinator holds (version, hash, job, round).\n"
    "show    shows one model version with its lineage.\n"
    "export  downloads the model file in chunks of 1 MiB, checks the SHA-256 of the whole\n"
    "        file against the coordinator's, then writes FILE: a temporary file beside it\n"
    "        (or beside the file a symlink FILE points to), fsync and rename, so FILE is\n"
    "        replaced only by a complete, verified file; - or /dev/stdout: standard\n"
    "        output, written once verified. Refuses models above 2 GiB. Prints the path\n"
    "        and the SHA-256.\n"
    "release signs a release manifest for model version VERSION under the label (the\n"
    "        model file's SHA-256 and size, job, lineage summary, compression report;\n"
    "        the next release counter) with the coordinator's key, stores and audits it\n"
    "        (model.released) and sends it to the connected agents; each bank's agent\n"
    "        (--model-dir) installs it only if its own receipts record that model or its\n"
    "        operator pinned it. Prints the release counter and the SHA-256.\n"
    "releases lists the releases made (counter, label, version, SHA-256, time).\n"
    "\n"
    "  --out FILE  export: where to write the model file\n"
    "  --label L   release: stable, canary or backup\n"
    "\n" COMMON_OPTS;

static const char usage_crl[] =
    "Usage: fedvault crl reload [options]\n"
    "\n"
    "Makes the coordinator re-read its certificate revocation list (after `fedvault\n"
    "provision revoke` and copying crl.pem to the coordinator's kit): new connections\n"
    "are checked against it, and the live sessions (agents' and admins') whose certificate\n"
    "it revokes are closed before the command returns (a revoked agent in a round is a\n"
    "dropout). Prints the number of revoked certificates and of sessions closed.\n"
    "\n" COMMON_OPTS;

/* ---- options ------------------------------------------------------------------------ */

enum {
    OPT_CONFIG = 256,
    OPT_ADMIN,
    OPT_TIMEOUT,
    OPT_JSON,
    OPT_INTERVAL,
    OPT_OUT,
    OPT_LABEL,
    OPT_SCHEMA
};

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

typedef struct args {
    const char *cmd;   /* "job show", for messages */
    const char *usage; /* the group's --help text */
    const char *config, *admin, *out, *label, *schema;
    double timeout_s, interval_s;
    bool json;
    const char *pos[2]; /* positional arguments */
    int n_pos;
} args_t;

static const int opts_common[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON};
static const int opts_submit[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON, OPT_SCHEMA};
static const int opts_watch[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON, OPT_INTERVAL};
static const int opts_export[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_OUT};
static const int opts_release[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON, OPT_LABEL};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Returns -1 to go on, or an exit code (help, usage error). argv[0] is the subcommand
 * word ("show"); n_pos positional arguments are required, named by pos_names. */
static int parse(int argc, char **argv, const int *allowed, size_t n_allowed, int n_pos,
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

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errorf(const char *fmt, ...)
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
static const char *safe(const char *s, char *buf, size_t cap)
{
    size_t o = 0;
    for (; *s != '\0' && o + 1 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        buf[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    buf[o] = '\0';
    return buf;
}

static void put_safe(const char *s, FILE *f)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        fputc((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f ? '?' : ch, f);
    }
}

/* ---- the admin kit -------------------------------------------------------------------- */

typedef struct kit {
    char *root_text; /* the config file's bytes */
    json_t *root;
    const char *path;            /* the config file */
    char *ca, *cert, *key, *crl; /* resolved paths (malloc'd); crl may be NULL */
    const char *federation, *name;
    char host[HOST_MAX];
    int port;
    char addr[HOST_MAX + 16]; /* HOST:PORT as given, for messages */
} kit_t;

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
            errorf("%s: missing field \"%s\" (an admin kit's admin.json has federation, "
                   "name, role, coordinator, ca, cert, key)",
                   k->path, key);
            *err = true;
        }
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        if (!*err)
            errorf("%s: field \"%s\" must be a non-empty string", k->path, key);
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
        errorf("admin config (%s): %s%s", from, d.msg,
               a->config == NULL ? " (pass --config FILE or set FEDVAULT_ADMIN_CONFIG to the "
                                   "admin kit's admin.json)"
                                 : "");
        return FV_EXIT_FAIL;
    }
    json_error_t je;
    k->root = json_loadb(k->root_text, len, JSON_REJECT_DUPLICATES, &je);
    if (k->root == NULL) {
        errorf("%s:%d:%d: %s", k->path, je.line, je.column, je.text);
        return FV_EXIT_FAIL;
    }
    if (!json_is_object(k->root)) {
        errorf("%s: expected a JSON object (an admin kit's admin.json)", k->path);
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
            errorf("%s: unknown field \"%s\" (known: federation, name, role, coordinator, "
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
                k->path, safe(role, (char[80]){0}, 80));

    const char *slash = strrchr(k->path, '/');
    char *dir = slash == NULL ? strdup("") : strndup(k->path, (size_t)(slash - k->path));
    if (dir == NULL) {
        errorf("out of memory");
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
        errorf("out of memory");
        return FV_EXIT_FAIL;
    }

    const char *addr = a->admin != NULL ? a->admin : admin != NULL ? admin : coord;
    const char *addr_from = a->admin != NULL ? "--admin"
                            : admin != NULL  ? "field \"admin\""
                                             : "field \"coordinator\"";
    if (addr == NULL) {
        errorf("%s: no address: set field \"admin\" (or \"coordinator\") to the coordinator's "
               "admin port HOST:PORT, or pass --admin HOST:PORT",
               k->path);
        return FV_EXIT_FAIL;
    }
    if (!parse_hostport(addr, k->host, sizeof k->host, &k->port)) {
        char b[300];
        if (a->admin != NULL)
            return fv_cli_usage_error(a->cmd,
                                      "--admin: expected HOST:PORT (port 1..65535), got '%s'",
                                      safe(addr, b, sizeof b));
        errorf("%s: %s \"%s\": expected HOST:PORT with a port 1..65535 (pass --admin "
               "HOST:PORT to override)",
               k->path, addr_from, safe(addr, b, sizeof b));
        return FV_EXIT_FAIL;
    }
    snprintf(k->addr, sizeof k->addr, "%s", addr);
    return 0;
}

/* ---- one connection, requests in turn ----------------------------------------------- */

typedef struct admin_resp {
    int32_t status;
    char *body; /* NUL-terminated copy */
    size_t body_len;
    uint8_t *data;
    size_t data_len;
} admin_resp_t;

static void resp_free(admin_resp_t *r)
{
    free(r->body);
    free(r->data);
    memset(r, 0, sizeof *r);
}

typedef struct admin {
    uv_loop_t loop;
    uv_timer_t timer; /* the deadline of what we wait for; also watch's interval */
    fv_tls_ctx_t *ctx;
    fv_client_t *client; /* NULL once its connection closed (fv_conn freed it) */
    fv_conn_t *conn;     /* the open connection, NULL before on_open and after close */
    const kit_t *kit;
    double timeout_s;
    bool loop_ready, timer_ready;
    bool opened, closed, fired;
    int close_err;
    char close_why[512];
    uint32_t next_id, want_id;
    bool waiting, got;
    admin_resp_t resp;
    int fail; /* a local failure while handling a message (FV_ENOMEM) */
} admin_t;

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
        resp_free(&r);
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
static int unreachable(admin_t *s, const char *what)
{
    if (s->closed) {
        const char *why = s->close_why[0] != '\0' ? s->close_why : fv_strerror(s->close_err);
        if (!s->opened)
            errorf("cannot reach the coordinator's admin port at %s: %s", s->kit->addr, why);
        else
            errorf("lost the connection to the coordinator's admin port at %s (waiting for "
                   "%s): %s",
                   s->kit->addr, what, why);
    } else if (!s->opened) {
        errorf("cannot reach the coordinator's admin port at %s: no TLS session within %g s "
               "(is it the admin port? --timeout sets the limit)",
               s->kit->addr, s->timeout_s);
    } else {
        errorf("no answer to %s from the coordinator's admin port at %s within %g s "
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
        errorf("cannot reach the coordinator's admin port at %s: cannot resolve '%s': %s",
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
        errorf("cannot reach the coordinator's admin port at %s: '%s' has no IPv4 or IPv6 "
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
        errorf("cannot start an event loop: %s", uv_strerror(r));
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
        errorf("%s: the admin kit cannot be used: %s", k->path, d.msg);
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
        errorf("%s: fields \"federation\"/\"name\" say %s/%s but %s is for %s/%s", k->path,
               safe(k->federation, b1, sizeof b1), safe(k->name, b2, sizeof b2), k->cert,
               me->federation, me->name);
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
        errorf("cannot reach the coordinator's admin port at %s: %s", k->addr, fv_strerror(r));
        return FV_EXIT_UNREACHABLE;
    }
    run_until(s, &s->opened, ms);
    if (!s->opened || s->closed)
        return unreachable(s, "");
    return 0;
}

/* Sends one request (args: JSON text) and waits for its answer. 0 with *ret filled (the
 * caller frees it; status may be negative), or an exit code (the error printed). */
static int admin_call(admin_t *s, const char *cmd, const char *args, admin_resp_t *ret)
{
    char what[96];
    snprintf(what, sizeof what, "'%s'", cmd);
    if (s->conn == NULL || s->closed)
        return unreachable(s, what);
    fv_msg_t m = {.type = FV_MSG_ADMIN_REQ};
    m.u.admin_req.id = s->want_id = s->next_id++;
    m.u.admin_req.cmd.ptr = cmd;
    m.u.admin_req.cmd.len = strlen(cmd);
    m.u.admin_req.args.ptr = args;
    m.u.admin_req.args.len = strlen(args);
    int r = fv_conn_send(s->conn, &m);
    if (r != 0) {
        if (s->closed || r == UV_ENOTCONN || r == UV_ENOBUFS)
            return unreachable(s, what);
        errorf("the '%s' request cannot be sent: %s", cmd, fv_strerror(r));
        return FV_EXIT_FAIL;
    }
    s->waiting = true;
    s->got = false;
    run_until(s, &s->got, timeout_ms(s));
    s->waiting = false;
    if (s->fail != 0) {
        errorf("out of memory for the answer to '%s'", cmd);
        return FV_EXIT_FAIL;
    }
    if (!s->got)
        return unreachable(s, what);
    *ret = s->resp;
    memset(&s->resp, 0, sizeof s->resp);
    return 0;
}

/* Waits ms with the connection serviced; false if it closed meanwhile. */
static bool admin_sleep(admin_t *s, uint64_t ms)
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
    resp_free(&s->resp);
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
        put_safe(json_string_value(e), stderr);
        fputc('\n', stderr);
    } else {
        errorf("the coordinator refused '%s': %s (%s)", cmd, fv_strerror(r->status),
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
        errorf("the coordinator's answer to '%s' is not JSON (line %d, column %d: %s)", cmd,
               je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(b)) {
        errorf("the coordinator's answer to '%s' is not a JSON object", cmd);
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
static const char *ftxt(const json_t *o, const char *key, char *buf, size_t cap)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    if (v == NULL || json_is_null(v))
        return "-";
    if (json_is_string(v))
        return safe(json_string_value(v), buf, cap);
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
        safe(s != NULL ? s : "?", buf, cap);
        free(s);
    }
    return buf;
}

/* A live job's benched agents as "bank-x (2 rounds left), ..." or "-". */
static const char *benched_txt(const json_t *live, char *buf, size_t cap)
{
    const json_t *arr = json_is_object(live) ? json_object_get(live, "benched") : NULL;
    size_t i, used = 0;
    const json_t *e;
    buf[0] = '\0';
    json_array_foreach(arr, i, e)
    {
        char name[FV_NAME_MAX + 1], left[32];
        int n = snprintf(buf + used, cap - used, "%s%s (%s rounds left)", used > 0 ? ", " : "",
                         ftxt(e, "agent", name, sizeof name),
                         ftxt(e, "bench_rounds_left", left, sizeof left));
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
    return used > 0 ? buf : "-";
}

/* A validated job's failed proofs as "bank-x (2 failed, last round 3 'norm', excluded), ..."
 * or "-". */
static const char *proofs_txt(const json_t *live, char *buf, size_t cap)
{
    const json_t *arr = json_is_object(live) ? json_object_get(live, "proof_failures") : NULL;
    size_t i, used = 0;
    const json_t *e;
    buf[0] = '\0';
    json_array_foreach(arr, i, e)
    {
        char name[FV_NAME_MAX + 1], nf[32], rd[32], chk[64];
        const json_t *ex = json_object_get(e, "excluded");
        int n = snprintf(buf + used, cap - used, "%s%s (%s failed, last round %s '%s'%s)",
                         used > 0 ? ", " : "", ftxt(e, "agent", name, sizeof name),
                         ftxt(e, "failures", nf, sizeof nf), ftxt(e, "round", rd, sizeof rd),
                         ftxt(e, "check", chk, sizeof chk), json_is_true(ex) ? ", excluded" : "");
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
    return used > 0 ? buf : "-";
}

static bool fnum(const json_t *o, const char *key, double *ret)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    if (!json_is_number(v))
        return false;
    *ret = json_number_value(v);
    return true;
}

static const char *fstr(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* "1d 02:03:04", "02:03:04" or "-". */
static const char *dur(double s, bool have, char *buf, size_t cap)
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

typedef struct col {
    const char *head, *key;
    int shorten; /* >0: strings longer than 16 cut to this many characters */
} col_t;

#define CELL_MAX 96

static void cell(const json_t *row, const col_t *c, char *buf)
{
    const char *t = ftxt(row, c->key, buf, CELL_MAX);
    if (t != buf)
        snprintf(buf, CELL_MAX, "%s", t);
    if (c->shorten > 0 && strlen(buf) > 16)
        buf[c->shorten] = '\0';
}

/* A table of the objects in arr (non-objects print as rows of "-"). */
static void print_table(const json_t *arr, const col_t *cols, size_t n_cols)
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
static void print_fields(const json_t *o, const char *const *keys, size_t n, int width)
{
    char buf[512];
    for (size_t i = 0; i < n; i++)
        printf("%-*s  %s\n", width, keys[i], ftxt(o, keys[i], buf, sizeof buf));
}

/* JSON printed indented by `indent` spaces (control bytes cannot occur: json_dumps
 * escapes them). */
static void print_json_indented(const json_t *v, int indent)
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
        put_safe(line, stdout);
        fputc('\n', stdout);
    }
    free(s);
}

/* ---- the commands --------------------------------------------------------------------- */

/* Loads the kit and connects (kit_load, admin_open). Returns 0 or an exit code (the
 * error printed); session_close is needed either way. */
static int session_open(const args_t *a, kit_t *k, admin_t *s)
{
    memset(s, 0, sizeof *s);
    int rc = kit_load(a, k);
    return rc != 0 ? rc : admin_open(s, k, a->timeout_s);
}

static void session_close(admin_t *s, kit_t *k)
{
    admin_close(s);
    kit_free(k);
}

/* Sends one request and handles a refusal; 0 with *r and *ret_body (the parsed object)
 * filled, both the caller's to free, or an exit code (the error printed, nothing to
 * free). */
static int request(admin_t *s, const char *cmd, const char *args, admin_resp_t *r,
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
        resp_free(r);
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
    int rc = session_open(a, &k, &s);
    if (rc == 0)
        rc = admin_call(&s, cmd, args, &r);
    session_close(&s, &k);
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
    resp_free(&r);
    return rc;
}

/* args JSON text from a jansson object (stolen). NULL on out of memory (printed). */
static char *args_dump(json_t *o)
{
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL)
        errorf("out of memory");
    return s;
}

/* simple_call with args from args_dump, taken (freed here; NULL: out of memory, which
 * args_dump printed). */
static int call_owned(const args_t *a, const char *cmd, char *args, json_t **ret_body)
{
    if (args == NULL)
        return FV_EXIT_FAIL;
    int rc = simple_call(a, cmd, args, ret_body);
    free(args);
    return rc;
}

/* A command without positional arguments whose request takes no args: the common
 * options, then simple_call. */
static int noarg_call(int argc, char **argv, args_t *a, const char *cmd, json_t **ret_body)
{
    int rc = parse(argc, argv, opts_common, N_OF(opts_common), 0, "", a);
    return rc >= 0 ? rc : simple_call(a, cmd, "{}", ret_body);
}

/* A `... list` command: the array `key` of the answer as a table, or the line `none`. */
typedef struct list_cmd {
    const char *cmd, *usage; /* "job list", the group's --help text */
    const char *req, *key, *none;
    const col_t *cols;
    size_t n_cols;
} list_cmd_t;

static int list_run(int argc, char **argv, const list_cmd_t *l)
{
    args_t a = {.cmd = l->cmd, .usage = l->usage};
    json_t *b = NULL;
    int rc = noarg_call(argc, argv, &a, l->req, &b);
    if (rc >= 0)
        return rc;
    const json_t *arr = json_object_get(b, l->key);
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        printf("%s\n", l->none);
    else
        print_table(arr, l->cols, l->n_cols);
    json_decref(b);
    return FV_EXIT_OK;
}

/* A group's subcommand: run gets argv from the subcommand word on. */
typedef struct sub {
    const char *name;
    int (*run)(int argc, char **argv);
} sub_t;

/* Runs the group's subcommand named by argv[1]; --help for the group. */
static int group_run(int argc, char **argv, const char *group, const char *usage, const sub_t *subs,
                     size_t n_subs)
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
    return fv_cli_usage_error(group, "unknown subcommand '%s'", safe(w, b, sizeof b));
}

static int show_status(const json_t *b)
{
    char buf[512], d[64];
    double up = 0;
    bool have_up = fnum(b, "uptime_s", &up);
    printf("federation   %s\n", ftxt(b, "federation", buf, sizeof buf));
    printf("coordinator  %s\n", ftxt(b, "coordinator", buf, sizeof buf));
    printf("version      %s\n", ftxt(b, "version", buf, sizeof buf));
    printf("uptime       %s\n", dur(up, have_up, d, sizeof d));
    printf("agents       %s connected", ftxt(b, "agents_connected", buf, sizeof buf));
    printf(" / %s known\n", ftxt(b, "agents_known", buf, sizeof buf));
    const json_t *job = json_object_get(b, "job");
    if (!json_is_object(job)) {
        printf("job          none running\n");
    } else {
        char id[80]; /* 64 hex and the NUL */
        printf("job          %s", ftxt(job, "name", buf, sizeof buf));
        printf(" (%s): ", ftxt(job, "id", id, sizeof id));
        printf("%s, ", ftxt(job, "status", buf, sizeof buf));
        printf("round %s", ftxt(job, "round", buf, sizeof buf));
        printf("/%s, ", ftxt(job, "rounds", buf, sizeof buf));
        printf("phase %s, ", ftxt(job, "phase", buf, sizeof buf));
        if (fv__cli_cohort_summary(job, buf, sizeof buf) != NULL) {
            printf("%s\n", buf); /* waiting: on whom, and who refused (cmd_job_status.c) */
        } else {
            printf("%s", ftxt(job, "answered", buf, sizeof buf));
            printf("/%s agents answered\n", ftxt(job, "expected", buf, sizeof buf));
        }
    }
    const json_t *jobs = json_object_get(b, "jobs");
    static const char *const kinds[] = {"queued", "running", "done", "failed", "aborted"};
    printf("jobs        ");
    for (size_t i = 0; i < N_OF(kinds); i++)
        printf(" %s %s%s", kinds[i], ftxt(jobs, kinds[i], buf, sizeof buf),
               i + 1 < N_OF(kinds) ? "," : "\n");
    return FV_EXIT_OK;
}

int fv_cmd_status(int argc, char **argv)
{
    args_t a = {.cmd = "status", .usage = usage_status};
    json_t *b = NULL;
    int rc = noarg_call(argc, argv, &a, "status", &b);
    if (rc >= 0)
        return rc;
    rc = show_status(b);
    json_decref(b);
    return rc;
}

static int agents_list(int argc, char **argv)
{
    static const col_t cols[] = {
        {"NAME", "name", 0},
        {"CONNECTED", "connected", 0},
        {"ADDR", "addr", 0},
        {"SERIAL", "serial", 12},
        {"FIRST_SEEN", "first_seen", 0},
        {"LAST_SEEN", "last_seen", 0},
        {"IN_JOB", "in_job", 0},
        {"MISSES", "misses", 0},
        {"BENCHED", "bench_rounds_left", 0},
    };
    static const list_cmd_t l = {.cmd = "agents list",
                                 .usage = usage_agents,
                                 .req = "agents.list",
                                 .key = "agents",
                                 .none = "no agents known",
                                 .cols = cols,
                                 .n_cols = N_OF(cols)};
    return list_run(argc, argv, &l);
}

int fv_cmd_agents(int argc, char **argv)
{
    static const sub_t subs[] = {{"list", agents_list}};
    return group_run(argc, argv, "agents", usage_agents, subs, N_OF(subs));
}

static int crl_reload(int argc, char **argv)
{
    args_t a = {.cmd = "crl reload", .usage = usage_crl};
    json_t *b = NULL;
    int rc = noarg_call(argc, argv, &a, "crl.reload", &b);
    if (rc >= 0)
        return rc;
    char buf[64], buf2[64];
    printf("CRL reloaded: %s revoked certificate(s), %s live session(s) closed\n",
           ftxt(b, "revoked", buf, sizeof buf), ftxt(b, "sessions_closed", buf2, sizeof buf2));
    json_decref(b);
    return FV_EXIT_OK;
}

int fv_cmd_crl(int argc, char **argv)
{
    static const sub_t subs[] = {{"reload", crl_reload}};
    return group_run(argc, argv, "crl", usage_crl, subs, N_OF(subs));
}

/* ---- job ------------------------------------------------------------------------------ */

static int job_submit(int argc, char **argv)
{
    args_t a = {.cmd = "job submit", .usage = usage_job};
    int rc =
        parse(argc, argv, opts_submit, N_OF(opts_submit), 1, "SPEC (a job spec JSON file)", &a);
    if (rc >= 0)
        return rc;
    /* comments blanked, the schema inlined (cmd_job_spec.c): the coordinator gets JSON */
    char *text = NULL;
    size_t len = 0;
    if (fv__cli_job_spec_read(a.cmd, a.pos[0], a.schema, &text, &len) < 0)
        return FV_EXIT_FAIL;
    json_t *spec = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    if (spec == NULL) { /* not reached: fv_job_expand wrote this text */
        errorf("%s: out of memory", a.pos[0]);
        return FV_EXIT_FAIL;
    }
    char *args = args_dump(json_pack("{s:o}", "spec", spec));
    if (args != NULL && strlen(args) > FV_WIRE_SPEC_MAX) {
        errorf("%s: the job spec is too large (the request may hold %u bytes)", a.pos[0],
               FV_WIRE_SPEC_MAX);
        free(args);
        return FV_EXIT_FAIL;
    }
    json_t *b = NULL;
    if ((rc = call_owned(&a, "job.submit", args, &b)) >= 0)
        return rc;
    const char *id = fstr(b, "id");
    char buf[256], n[128], st[64];
    if (id == NULL) {
        errorf("the coordinator's answer to 'job.submit' has no job id");
        json_decref(b);
        return FV_EXIT_FAIL;
    }
    printf("%s\n", safe(id, buf, sizeof buf));
    fprintf(stderr, "submitted job %s: %s\n", ftxt(b, "name", n, sizeof n),
            ftxt(b, "status", st, sizeof st));
    json_decref(b);
    return FV_EXIT_OK;
}

static const col_t job_cols[] = {
    {"ID", "id", 12},
    {"NAME", "name", 0},
    {"STATUS", "status", 0},
    {"BY", "submitted_by", 0},
    {"SUBMITTED", "submitted", 0},
    {"STARTED", "started", 0},
    {"FINISHED", "finished", 0},
    {"ROUNDS", "rounds_done", 0},
    {"FAILED", "rounds_failed", 0},
    {"MODEL", "final_version", 0},
    {"STUDENT", "student_version", 0},
    {"WHY", "why", 0},
};

static int job_list(int argc, char **argv)
{
    static const list_cmd_t l = {.cmd = "job list",
                                 .usage = usage_job,
                                 .req = "job.list",
                                 .key = "jobs",
                                 .none = "no jobs",
                                 .cols = job_cols,
                                 .n_cols = N_OF(job_cols)};
    return list_run(argc, argv, &l);
}

#define ID_ARG "ID (a job id or a prefix)"

static char *id_args(const char *id)
{
    return args_dump(json_pack("{s:s}", "id", id));
}

/* job show, job abort: the common options and ID, sent as {"id": ID}. */
static int id_call(int argc, char **argv, args_t *a, const char *cmd, json_t **ret_body)
{
    int rc = parse(argc, argv, opts_common, N_OF(opts_common), 1, ID_ARG, a);
    return rc >= 0 ? rc : call_owned(a, cmd, id_args(a->pos[0]), ret_body);
}

/* The job's explanation (the last explain round's metrics.explanation): its largest
 * columns by mean |contribution|, at most 10. */
static void show_explanation(const json_t *rounds)
{
    const json_t *ex = NULL, *r;
    size_t i;
    json_array_foreach(rounds, i, r)
    {
        const json_t *e = json_object_get(json_object_get(r, "metrics"), "explanation");
        if (json_is_object(e))
            ex = e;
    }
    const json_t *cols = json_object_get(ex, "columns");
    size_t n = json_array_size(cols), top[10], n_top = 0;
    for (i = 0; i < n; i++) { /* insertion into the top 10, largest first */
        double v = 0, w = 0;
        if (!fnum(json_array_get(cols, i), "mean_abs", &v))
            continue;
        size_t at = n_top < 10 ? n_top++ : 10;
        while (at > 0 && fnum(json_array_get(cols, top[at - 1]), "mean_abs", &w) && v > w) {
            if (at < 10)
                top[at] = top[at - 1];
            at--;
        }
        if (at < 10)
            top[at] = i;
    }
    if (n_top == 0)
        return;
    char b1[64], b2[64], b3[256];
    printf("\nexplanation (%s rows, %s; mean |contribution| to the logit per column, top %zu "
           "of %zu):\n",
           ftxt(ex, "rows", b1, sizeof b1), ftxt(ex, "method", b2, sizeof b2), n_top, n);
    for (i = 0; i < n_top; i++) {
        const json_t *c = json_array_get(cols, top[i]);
        double v = 0;
        fnum(c, "mean_abs", &v);
        const char *name = fstr(c, "name");
        printf("  %-24s  %.4f\n", safe(name != NULL ? name : "-", b3, sizeof b3), v);
    }
}

/* A job's schema object (job.show): the one schema discovery fixed, or "open" while it
 * is not fixed yet; nothing for a job whose schema was closed when submitted. */
static void show_job_schema(const json_t *sch)
{
    char buf[512];
    const json_t *sha = json_object_get(sch, "sha256");
    if (!json_is_string(sha)) {
        if (json_is_true(json_object_get(sch, "open")))
            printf("\nschema:\n  %-13s  %s\n", "status", "open (not fixed yet)");
        return;
    }
    printf("\nschema:\n  %-13s  %s\n", "sha256", ftxt(sch, "sha256", buf, sizeof buf));
    printf("  %-13s  %s\n", "version", ftxt(sch, "version", buf, sizeof buf));
    static const char *const lists[] = {"contributors", "refused"};
    for (size_t l = 0; l < N_OF(lists); l++) {
        const json_t *arr = json_object_get(sch, lists[l]), *e;
        size_t i;
        printf("  %-13s  ", lists[l]);
        if (json_array_size(arr) == 0)
            printf("-");
        json_array_foreach(arr, i, e)
        {
            char cat[64];
            printf("%s%s", i > 0 ? ", " : "",
                   json_is_string(e) ? safe(json_string_value(e), buf, sizeof buf)
                                     : ftxt(e, "agent", buf, sizeof buf));
            if (json_is_object(e))
                printf(" (%s)", ftxt(e, "category", cat, sizeof cat));
        }
        printf("\n");
    }
}

/* The job's differential privacy (job.show's "privacy": the spec's section, unset keys
 * null); nothing without it. */
static void show_job_privacy(const json_t *p)
{
    static const char *const keys[] = {"mode", "epsilon",     "noise_multiplier", "delta",
                                       "clip", "sample_rate", "min_honest"};
    char buf[256];
    if (!json_is_object(p))
        return;
    printf("\nprivacy:\n");
    for (size_t i = 0; i < N_OF(keys); i++) {
        const json_t *v = json_object_get(p, keys[i]);
        if (v == NULL || json_is_null(v)) {
            if (strcmp(keys[i], "sample_rate") == 0)
                printf("  %-16s  %s\n", keys[i], "batch_size / each agent's training rows");
            continue; /* the other of epsilon / noise_multiplier; min_honest in local mode */
        }
        printf("  %-16s  %s\n", keys[i], ftxt(p, keys[i], buf, sizeof buf));
    }
    const json_t *ob = json_object_get(p, "outside_budget"), *e;
    size_t i;
    printf("  %-16s  ", "outside_budget");
    if (json_array_size(ob) == 0)
        printf("-");
    json_array_foreach(ob, i, e)
    {
        printf("%s%s", i > 0 ? ", " : "",
               json_is_string(e) ? safe(json_string_value(e), buf, sizeof buf) : "?");
    }
    printf("\n");
}

static void show_job(const json_t *b)
{
    static const char *const keys[] = {
        "id",       "name",        "status",        "submitted_by",  "submitted", "started",
        "finished", "rounds_done", "rounds_failed", "final_version", "why"};
    /* A distilled job also shows its distill rounds and its student (after the counts
     * and the final version); other jobs print as they always did. */
    static const char *const dkeys[] = {"id",
                                        "name",
                                        "status",
                                        "submitted_by",
                                        "submitted",
                                        "started",
                                        "finished",
                                        "rounds_done",
                                        "distill_rounds_done",
                                        "rounds_failed",
                                        "final_version",
                                        "student_version",
                                        "why"};
    double n_distill = 0;
    const json_t *student = json_object_get(b, "student_version");
    if ((student != NULL && !json_is_null(student)) ||
        (fnum(b, "distill_rounds_done", &n_distill) && n_distill > 0))
        print_fields(b, dkeys, N_OF(dkeys), 19);
    else
        print_fields(b, keys, N_OF(keys), 13);
    if (json_is_object(json_object_get(b, "schema")))
        show_job_schema(json_object_get(b, "schema"));
    show_job_privacy(json_object_get(b, "privacy"));
    const json_t *live = json_object_get(b, "live");
    if (json_is_object(live)) {
        static const char *const lk[] = {"round",        "rounds",      "kind",        "phase",
                                         "answered",     "expected",    "val_roc_auc", "val_pr_auc",
                                         "val_accuracy", "val_log_loss"};
        char d1[64], d2[64];
        double e = 0, eta = 0;
        bool he = fnum(live, "elapsed_s", &e), heta = fnum(live, "eta_s", &eta);
        printf("\nlive:\n");
        for (size_t i = 0; i < N_OF(lk); i++) {
            char buf[256];
            printf("  %-13s  %s\n", lk[i], ftxt(live, lk[i], buf, sizeof buf));
        }
        char bt[1024];
        printf("  %-13s  %s\n", "benched", benched_txt(live, bt, sizeof bt));
        printf("  %-13s  %s\n", "proofs failed", proofs_txt(live, bt, sizeof bt));
        printf("  %-13s  %s\n  %-13s  %s\n", "elapsed", dur(e, he, d1, sizeof d1), "eta",
               dur(eta, heta, d2, sizeof d2));
    }
    fv__cli_cohort_show(b, stdout); /* each agent's status (cmd_job_status.c) */
    const json_t *rounds = json_object_get(b, "rounds");
    if (json_is_array(rounds) && json_array_size(rounds) > 0) {
        /* the metrics live one level down: flatten them into a copy of each row */
        json_t *flat = json_array();
        size_t i;
        const json_t *r;
        bool multiclass = false; /* accuracy instead of the AUCs */
        json_array_foreach(rounds, i, r)
        {
            json_t *row = json_is_object(r) ? json_deep_copy(r) : json_object();
            const json_t *m = json_object_get(r, "metrics");
            if (row != NULL && json_is_object(m)) {
                json_object_set(row, "roc", json_object_get(m, "val_roc_auc"));
                json_object_set(row, "pr", json_object_get(m, "val_pr_auc"));
                json_object_set(row, "acc", json_object_get(m, "val_accuracy"));
                json_object_set(row, "ll", json_object_get(m, "val_log_loss"));
                multiclass = multiclass || json_object_get(m, "val_accuracy") != NULL;
            }
            if (row != NULL)
                json_array_append_new(flat, row);
        }
        static const col_t rc[] = {
            {"ROUND", "round", 0},     {"TRY", "attempt", 0},       {"KIND", "kind", 0},
            {"STATUS", "status", 0},   {"COHORT", "cohort", 0},     {"CONTRIB", "contributors", 0},
            {"ROC_AUC", "roc", 0},     {"PR_AUC", "pr", 0},         {"LOG_LOSS", "ll", 0},
            {"STARTED", "started", 0}, {"FINISHED", "finished", 0}, {"WHY", "why", 0},
        };
        static const col_t rcm[] = {
            {"ROUND", "round", 0},       {"TRY", "attempt", 0},   {"KIND", "kind", 0},
            {"STATUS", "status", 0},     {"COHORT", "cohort", 0}, {"CONTRIB", "contributors", 0},
            {"ACCURACY", "acc", 0},      {"LOG_LOSS", "ll", 0},   {"STARTED", "started", 0},
            {"FINISHED", "finished", 0}, {"WHY", "why", 0},
        };
        printf("\nrounds:\n");
        if (multiclass)
            print_table(flat, rcm, N_OF(rcm));
        else
            print_table(flat, rc, N_OF(rc));
        json_decref(flat);
        show_explanation(rounds);
    }
    const json_t *agents = json_object_get(b, "agents");
    if (json_is_array(agents) && json_array_size(agents) > 0) {
        printf("\nagents:\n");
        size_t i;
        const json_t *ag;
        json_array_foreach(agents, i, ag)
        {
            char buf[512];
            if (json_is_string(ag)) {
                printf("  %s\n", safe(json_string_value(ag), buf, sizeof buf));
            } else {
                char *s = json_dumps(ag, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
                printf("  %s\n", safe(s != NULL ? s : "-", buf, sizeof buf));
                free(s);
            }
        }
    }
    const json_t *spec = json_object_get(b, "spec");
    if (spec != NULL && !json_is_null(spec)) {
        printf("\nspec:\n");
        print_json_indented(spec, 2);
    }
}

static int job_show(int argc, char **argv)
{
    args_t a = {.cmd = "job show", .usage = usage_job};
    json_t *b = NULL;
    int rc = id_call(argc, argv, &a, "job.show", &b);
    if (rc >= 0)
        return rc;
    show_job(b);
    json_decref(b);
    return FV_EXIT_OK;
}

static int job_abort(int argc, char **argv)
{
    args_t a = {.cmd = "job abort", .usage = usage_job};
    json_t *b = NULL;
    int rc = id_call(argc, argv, &a, "job.abort", &b);
    if (rc >= 0)
        return rc;
    char id[256], st[64];
    printf("job %s: %s\n", ftxt(b, "id", id, sizeof id), ftxt(b, "status", st, sizeof st));
    json_decref(b);
    return FV_EXIT_OK;
}

/* A metrics object that holds a global metric (binary: ROC AUC; multi-class: accuracy;
 * both: log loss). */
static bool has_metric(const json_t *m)
{
    return json_is_object(m) && (json_is_number(json_object_get(m, "val_roc_auc")) ||
                                 json_is_number(json_object_get(m, "val_accuracy")) ||
                                 json_is_number(json_object_get(m, "val_log_loss")));
}

/* The metrics of b's final model: the training round "final_round" names (a finished
 * job's final model is its best round's, not its last round's), else the last round in
 * b's "rounds" with metrics, or NULL. */
static const json_t *last_metrics(const json_t *b)
{
    const json_t *rounds = json_object_get(b, "rounds"), *best = NULL;
    const json_t *fr = json_object_get(b, "final_round");
    size_t i;
    const json_t *r;
    json_array_foreach(rounds, i, r)
    {
        const json_t *m = json_object_get(r, "metrics");
        const char *kind = fstr(r, "kind");
        if (json_is_integer(fr) && kind != NULL && strcmp(kind, "train") == 0 &&
            json_integer_value(json_object_get(r, "round")) == json_integer_value(fr) &&
            has_metric(m))
            return m;
        if (has_metric(m))
            best = m;
    }
    return best;
}

/* One progress display of a job.show body into out (lines; the first is the title). The
 * `stable` part (without elapsed and eta) goes to key, to print a plain line only when it
 * changed. */
static void watch_render(const json_t *b, char *out, size_t cap, char *key, size_t key_cap)
{
    const json_t *live = json_object_get(b, "live");
    if (!json_is_object(live))
        live = NULL;
    const json_t *m = live != NULL && has_metric(live) ? live : last_metrics(b);
    /* a multi-class job shows its accuracy where a binary one shows ROC and PR AUC */
    bool multiclass = m != NULL && json_object_get(m, "val_accuracy") != NULL;
    char name[128], id[80], st[64], r[32], rr[32], kd[32], ph[64], an[32], ex[32], roc[32], pr[32],
        ll[32], el[64], eta[64], bt[256], pf[256];
    double e = 0, t = 0;
    bool he = live != NULL && fnum(live, "elapsed_s", &e);
    bool ht = live != NULL && fnum(live, "eta_s", &t);
    ftxt(b, "name", name, sizeof name);
    ftxt(b, "id", id, sizeof id);
    ftxt(b, "status", st, sizeof st);
    if (live != NULL) {
        snprintf(r, sizeof r, "%s", ftxt(live, "round", (char[32]){0}, 32));
        snprintf(rr, sizeof rr, "%s", ftxt(live, "rounds", (char[32]){0}, 32));
        snprintf(kd, sizeof kd, "%s", ftxt(live, "kind", (char[32]){0}, 32));
        snprintf(ph, sizeof ph, "%s", ftxt(live, "phase", (char[64]){0}, 64));
        snprintf(an, sizeof an, "%s", ftxt(live, "answered", (char[32]){0}, 32));
        snprintf(ex, sizeof ex, "%s", ftxt(live, "expected", (char[32]){0}, 32));
    } else {
        snprintf(r, sizeof r, "%s", ftxt(b, "rounds_done", (char[32]){0}, 32));
        snprintf(rr, sizeof rr, "-");
        snprintf(kd, sizeof kd, "-");
        snprintf(ph, sizeof ph, "-");
        snprintf(an, sizeof an, "-");
        snprintf(ex, sizeof ex, "-");
    }
    snprintf(roc, sizeof roc, "%s", ftxt(m, "val_roc_auc", (char[32]){0}, 32));
    snprintf(pr, sizeof pr, "%s", ftxt(m, "val_pr_auc", (char[32]){0}, 32));
    snprintf(ll, sizeof ll, "%s", ftxt(m, "val_log_loss", (char[32]){0}, 32));
    snprintf(el, sizeof el, "%s", dur(e, he, (char[64]){0}, 64));
    snprintf(eta, sizeof eta, "%s", dur(t, ht, (char[64]){0}, 64));
    benched_txt(live, bt, sizeof bt);
    const char *bench = bt[0] != '\0' ? bt : "-";
    const char *proofs = proofs_txt(live, pf, sizeof pf);
    if (multiclass) {
        char acc[32];
        snprintf(acc, sizeof acc, "%s", ftxt(m, "val_accuracy", (char[32]){0}, 32));
        snprintf(key, key_cap,
                 "job %s (%s) status=%s round=%s/%s kind=%s phase=%s answered=%s/%s accuracy=%s "
                 "log_loss=%s benched=%s proofs_failed=%s",
                 name, id, st, r, rr, kd, ph, an, ex, acc, ll, bench, proofs);
        snprintf(out, cap,
                 "job       %s (%s)\n"
                 "status    %s\n"
                 "round     %s/%s (%s)\n"
                 "phase     %s\n"
                 "agents    %s/%s answered\n"
                 "benched   %s\n"
                 "proofs    %s\n"
                 "accuracy  %s\n"
                 "log loss  %s\n"
                 "elapsed   %s\n"
                 "eta       %s\n",
                 name, id, st, r, rr, kd, ph, an, ex, bench, proofs, acc, ll, el, eta);
        return;
    }
    snprintf(key, key_cap,
             "job %s (%s) status=%s round=%s/%s kind=%s phase=%s answered=%s/%s roc_auc=%s "
             "pr_auc=%s log_loss=%s benched=%s proofs_failed=%s",
             name, id, st, r, rr, kd, ph, an, ex, roc, pr, ll, bench, proofs);
    snprintf(out, cap,
             "job       %s (%s)\n"
             "status    %s\n"
             "round     %s/%s (%s)\n"
             "phase     %s\n"
             "agents    %s/%s answered\n"
             "benched   %s\n"
             "proofs    %s\n"
             "ROC AUC   %s\n"
             "PR AUC    %s\n"
             "log loss  %s\n"
             "elapsed   %s\n"
             "eta       %s\n",
             name, id, st, r, rr, kd, ph, an, ex, bench, proofs, roc, pr, ll, el, eta);
}

static int job_watch(int argc, char **argv)
{
    args_t a = {.cmd = "job watch", .usage = usage_job};
    int rc = parse(argc, argv, opts_watch, N_OF(opts_watch), 1, ID_ARG, &a);
    if (rc >= 0)
        return rc;
    char *args = id_args(a.pos[0]);
    if (args == NULL)
        return FV_EXIT_FAIL;
    json_t *seen = json_object(); /* refusals and losses printed (cmd_job_status.c) */
    kit_t k;
    admin_t s;
    if ((rc = session_open(&a, &k, &s)) != 0)
        goto out;
    bool tty = isatty(STDOUT_FILENO) == 1;
    char last_key[2048] = "";
    for (;;) {
        admin_resp_t r = {0};
        json_t *b = NULL;
        if ((rc = request(&s, "job.show", args, &r, &b)) != 0)
            break;
        char text[4096], key[2048], sum[700];
        watch_render(b, text, sizeof text, key, sizeof key);
        if (fv__cli_cohort_summary(b, sum, sizeof sum) != NULL) {
            /* waiting for agents: on whom, and who refused, instead of an eta */
            size_t kl = strlen(key), tl = strlen(text);
            snprintf(key + kl, sizeof key - kl, " cohort=\"%s\"", sum);
            snprintf(text + tl, sizeof text - tl, "cohort    %s\n", sum);
        }
        if (a.json) {
            if (strcmp(key, last_key) != 0) {
                char *line = json_dumps(b, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (line != NULL)
                    puts(line);
                free(line);
            }
        } else if (tty) {
            fputs("\033[H\033[2J", stdout); /* home, clear: one screen, redrawn */
            put_safe(text, stdout);
            printf("\n(every %g s; Ctrl-C stops watching, the job goes on)\n", a.interval_s);
        } else if (fv__cli_cohort_events(b, seen, stdout) >= 0 && strcmp(key, last_key) != 0) {
            time_t now = time(NULL);
            struct tm tmv;
            char ts[32] = "-";
            if (gmtime_r(&now, &tmv) != NULL)
                strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
            printf("%s ", ts);
            put_safe(key, stdout);
            /* time left, from the coordinator's mean round time (an upper bound: early
             * stopping may end the job sooner); not part of the change test */
            const json_t *live = json_object_get(b, "live");
            const json_t *eta = json_is_object(live) ? json_object_get(live, "eta_s") : NULL;
            if (json_is_number(eta))
                printf(" eta=%.0fs", json_number_value(eta));
            fputc('\n', stdout);
        }
        fflush(stdout);
        snprintf(last_key, sizeof last_key, "%s", key);
        const char *st = fstr(b, "status");
        int end = st == NULL                                                ? -1
                  : strcmp(st, "done") == 0                                 ? FV_EXIT_OK
                  : strcmp(st, "failed") == 0 || strcmp(st, "aborted") == 0 ? FV_EXIT_FAIL
                                                                            : -1;
        if (end > 0) {
            char b1[128], b2[64], b3[1024];
            const char *why = fstr(b, "why");
            fprintf(stderr, "fedvault: job %s %s%s%s\n", safe(a.pos[0], b1, sizeof b1),
                    safe(st, b2, sizeof b2), why != NULL ? ": " : "",
                    why != NULL ? safe(why, b3, sizeof b3) : "");
            if (!a.json)
                fv__cli_job_why(b, stdout); /* the final reason, on the watched stream too */
        }
        json_decref(b); /* st pointed into it */
        resp_free(&r);
        if (end >= 0) {
            rc = end;
            break;
        }
        if (!admin_sleep(&s, (uint64_t)llround(a.interval_s * 1000.0))) {
            rc = unreachable(&s, "the next poll of 'job.show'");
            break;
        }
    }
out:
    json_decref(seen);
    session_close(&s, &k);
    free(args);
    return rc;
}

/* job report: the coordinator's job.report document, rendered by cmd_job_report.c. */
static int job_report(int argc, char **argv)
{
    static const int opts[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON, OPT_OUT};
    args_t a = {.cmd = "job report", .usage = fv__cli_usage_job_report};
    json_t *b = NULL;
    int rc = parse(argc, argv, opts, N_OF(opts), 1, ID_ARG, &a);
    if (rc >= 0)
        return rc;
    if (!a.json && a.out == NULL)
        return fv_cli_usage_error(a.cmd, "--out FILE is required: where to write the page "
                                         "(\"-\" for standard output)");
    if (!a.json && (rc = fv_cli_out_check(a.cmd, "--out", a.out, false)) != 0)
        return rc;
    rc = call_owned(&a, "job.report", id_args(a.pos[0]), &b);
    if (rc >= 0)
        return rc;
    rc = fv__cli_job_report_write(a.cmd, a.out, b);
    json_decref(b);
    return rc;
}

int fv_cmd_job(int argc, char **argv)
{
    static const sub_t subs[] = {
        {"submit", job_submit},
        {"list", job_list},
        {"show", job_show},
        {"watch", job_watch},
        {"abort", job_abort},
        {"report", job_report},
        {"template", fv__cmd_job_template},
        {"check", fv__cmd_job_check},
    };
    return group_run(argc, argv, "job", usage_job, subs, N_OF(subs));
}

/* ---- model ---------------------------------------------------------------------------- */

static bool parse_version(const args_t *a, const char *s, uint64_t *ret)
{
    char b[80];
    if (s[0] < '0' || s[0] > '9') {
        fv_cli_usage_error(a->cmd, "VERSION: expected a model version number, got '%s'",
                           safe(s, b, sizeof b));
        return false;
    }
    if (!fv_cli_parse_u64(a->cmd, "VERSION", s, ret))
        return false;
    if (*ret > (uint64_t)INT64_MAX) {
        fv_cli_usage_error(a->cmd, "VERSION: %s is too large", s);
        return false;
    }
    return true;
}

static const col_t model_cols[] = {
    {"VERSION", "version", 0}, {"SHA256", "sha256", 12}, {"JOB", "job", 12},
    {"ROUND", "round", 0},     {"KIND", "kind", 0},      {"PARENT", "parent", 0},
    {"CREATED", "created", 0}, {"BYTES", "bytes", 0},    {"PRODUCER", "producer", 0},
};

static int model_list(int argc, char **argv)
{
    static const list_cmd_t l = {.cmd = "model list",
                                 .usage = usage_model,
                                 .req = "model.list",
                                 .key = "models",
                                 .none = "no models",
                                 .cols = model_cols,
                                 .n_cols = N_OF(model_cols)};
    return list_run(argc, argv, &l);
}

/* ---- model show: a distilled model's compression report ------------------------------ */

typedef enum { RF_INT, RF_TEXT, RF_US, RF_METRIC, RF_RATIO, RF_PLAIN } rfmt_t;

/* A value of the report as text in buf (cap >= 32): "-" when absent, null or not of the
 * expected type. Integers as integers; latencies in microseconds with 3 significant
 * figures or more; AUCs and losses with 4 decimals; ratios as "48.8x"; settings (RF_PLAIN)
 * as %g ("2", "0.5"). */
static const char *report_txt(const json_t *v, rfmt_t f, char *buf, size_t cap)
{
    if (f == RF_TEXT)
        return json_is_string(v) ? safe(json_string_value(v), buf, cap) : "-";
    if (!json_is_number(v))
        return "-";
    double x = json_number_value(v);
    if (!isfinite(x))
        return "-";
    switch (f) {
    case RF_INT:
        if (json_is_integer(v))
            snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else
            snprintf(buf, cap, "%.0f", x);
        break;
    case RF_US:
        if (x >= 100)
            snprintf(buf, cap, "%.0f us", x);
        else if (x >= 10)
            snprintf(buf, cap, "%.1f us", x);
        else if (x >= 1)
            snprintf(buf, cap, "%.2f us", x);
        else
            snprintf(buf, cap, "%.3f us", x);
        break;
    case RF_METRIC:
        snprintf(buf, cap, "%.4f", x);
        break;
    case RF_PLAIN:
        snprintf(buf, cap, "%g", x);
        break;
    default: /* RF_RATIO */
        snprintf(buf, cap, x >= 10 ? "%.1fx" : "%.2fx", x);
        break;
    }
    return buf;
}

/* The "compression report" section of model show: a table whose columns are the teacher,
 * the student, the int8 student and the teacher/student ratio (each only if the report
 * has it) and whose rows are the measures any of them has; then the settings. Members
 * this code does not know are left to --json. */
static void print_report(const json_t *rep)
{
    static const struct {
        const char *label, *key, *sub, *ratio; /* sub: a member of key; ratio: of "ratios" */
        rfmt_t f;
    } rows[] = {
        {"version", "version", NULL, NULL, RF_INT},
        {"arch", "arch", NULL, NULL, RF_TEXT},
        {"params", "params", NULL, "params", RF_INT},
        {"bytes", "bytes", NULL, "bytes", RF_INT},
        {"latency b1", "latency_us", "batch_1", "latency_batch_1", RF_US},
        {"latency b1024", "latency_us", "batch_1024", "latency_batch_1024", RF_US},
        {"ROC AUC", "roc_auc", NULL, NULL, RF_METRIC},
        {"PR AUC", "pr_auc", NULL, NULL, RF_METRIC},
        {"log loss", "log_loss", NULL, NULL, RF_METRIC},
        {"round", "round", NULL, NULL, RF_INT},
    };
    static const char *const side_keys[] = {"teacher", "student", "student_int8"};
    static const char *const side_heads[] = {"teacher", "student", "int8"};
    enum { N_ROWS = N_OF(rows), MAX_COLS = N_OF(side_keys) + 1, LABEL_W = 15 };
    const json_t *cols[MAX_COLS]; /* the sides present, then "ratios" */
    const char *heads[MAX_COLS];
    char cell[N_ROWS][MAX_COLS][CELL_MAX];
    bool row_on[N_ROWS] = {false}, any_row = false;
    size_t n_cols = 0, n_lines = 0, w[MAX_COLS + 1] = {0};

    for (size_t i = 0; i < N_OF(side_keys); i++) {
        const json_t *side = json_object_get(rep, side_keys[i]);
        if (json_is_object(side)) {
            cols[n_cols] = side;
            heads[n_cols++] = side_heads[i];
        }
    }
    const json_t *ratios = json_object_get(rep, "ratios");
    size_t n_sides = n_cols;
    if (json_is_object(ratios)) {
        cols[n_cols] = ratios;
        heads[n_cols++] = "ratio";
    }
    for (size_t r = 0; r < N_ROWS; r++) {
        for (size_t c = 0; c < n_cols; c++) {
            const json_t *v;
            if (c < n_sides) {
                v = json_object_get(cols[c], rows[r].key);
                if (rows[r].sub != NULL)
                    v = json_object_get(v, rows[r].sub);
            } else {
                v = rows[r].ratio != NULL ? json_object_get(cols[c], rows[r].ratio) : NULL;
            }
            const char *t = report_txt(v, c < n_sides ? rows[r].f : RF_RATIO, cell[r][c], CELL_MAX);
            if (t != cell[r][c])
                snprintf(cell[r][c], CELL_MAX, "%s", t);
            if (strcmp(cell[r][c], "-") != 0)
                row_on[r] = any_row = true;
        }
    }

    printf("compression report:\n");
    if (any_row) {
        w[0] = LABEL_W;
        for (size_t c = 0; c < n_cols; c++) {
            w[c + 1] = strlen(heads[c]);
            for (size_t r = 0; r < N_ROWS; r++)
                if (row_on[r] && strlen(cell[r][c]) > w[c + 1])
                    w[c + 1] = strlen(cell[r][c]);
        }
        printf("  %-*s", (int)w[0], "");
        for (size_t c = 0; c < n_cols; c++)
            printf("  %-*s", c + 1 < n_cols ? (int)w[c + 1] : 0, heads[c]);
        printf("\n");
        for (size_t r = 0; r < N_ROWS; r++) {
            if (!row_on[r])
                continue;
            printf("  %-*s", (int)w[0], rows[r].label);
            n_lines++;
            for (size_t c = 0; c < n_cols; c++)
                printf("  %-*s", c + 1 < n_cols ? (int)w[c + 1] : 0, cell[r][c]);
            printf("\n");
        }
    }
    static const struct {
        const char *label, *key;
        rfmt_t f;
    } settings[] = {
        {"ROC AUC gap", "roc_auc_gap", RF_METRIC},
        {"temperature", "temperature", RF_PLAIN},
        {"alpha", "alpha", RF_PLAIN},
        {"distill rounds", "distill_rounds", RF_INT},
        {"best round", "round", RF_INT},
        {"validation rows", "n_val", RF_INT},
        {"latency method", "latency_method", RF_TEXT},
    };
    for (size_t i = 0; i < N_OF(settings); i++) {
        char buf[512];
        const json_t *v = json_object_get(rep, settings[i].key);
        if (v == NULL || json_is_null(v))
            continue;
        printf("  %-*s  %s\n", (int)LABEL_W, settings[i].label,
               report_txt(v, settings[i].f, buf, sizeof buf));
        n_lines++;
    }
    if (n_lines == 0)
        printf("  -\n");
}

static int model_show(int argc, char **argv)
{
    args_t a = {.cmd = "model show", .usage = usage_model};
    int rc = parse(argc, argv, opts_common, N_OF(opts_common), 1, "VERSION", &a);
    if (rc >= 0)
        return rc;
    uint64_t v;
    if (!parse_version(&a, a.pos[0], &v))
        return FV_EXIT_USAGE;
    char *args = args_dump(json_pack("{s:I}", "version", (json_int_t)v));
    json_t *b = NULL;
    if ((rc = call_owned(&a, "model.show", args, &b)) >= 0)
        return rc;
    static const char *const keys[] = {"version", "sha256",  "job",   "round",   "kind",
                                       "parent",  "created", "bytes", "producer"};
    print_fields(b, keys, N_OF(keys), 9);
    const json_t *report = json_object_get(b, "report");
    if (json_is_object(report))
        print_report(report);
    const json_t *lin = json_object_get(b, "lineage");
    printf("lineage:\n");
    if (lin == NULL || json_is_null(lin))
        printf("  -\n");
    else
        print_json_indented(lin, 2);
    json_decref(b);
    return FV_EXIT_OK;
}

/* One model.read answer checked against what was asked and what earlier chunks said. */
typedef struct export_state {
    uint64_t version, offset, total;
    bool have_total;
    uint8_t sha[32];
} export_state_t;

static int export_check(const export_state_t *e, const json_t *b, size_t data_len,
                        uint64_t *ret_total, uint8_t sha[32])
{
    double v = 0, bytes = 0, off = 0;
    const char *hex = fstr(b, "sha256");
    if (!fnum(b, "version", &v) || !fnum(b, "bytes", &bytes) || !fnum(b, "offset", &off) ||
        hex == NULL) {
        errorf("the coordinator's answer to 'model.read' lacks version, sha256, bytes or "
               "offset");
        return FV_EXIT_FAIL;
    }
    json_t *jb = json_object_get(b, "bytes");
    if (!json_is_integer(jb) || json_integer_value(jb) < 0 ||
        !json_is_integer(json_object_get(b, "offset")) ||
        !json_is_integer(json_object_get(b, "version"))) {
        errorf("the coordinator's answer to 'model.read': version, bytes and offset must be "
               "non-negative integers");
        return FV_EXIT_FAIL;
    }
    uint64_t total = (uint64_t)json_integer_value(jb);
    if ((uint64_t)json_integer_value(json_object_get(b, "version")) != e->version) {
        errorf("the coordinator answered 'model.read' with another model version");
        return FV_EXIT_FAIL;
    }
    if (json_integer_value(json_object_get(b, "offset")) < 0 ||
        (uint64_t)json_integer_value(json_object_get(b, "offset")) != e->offset) {
        errorf("the coordinator answered 'model.read' at offset %" JSON_INTEGER_FORMAT
               ", asked for %" PRIu64,
               json_integer_value(json_object_get(b, "offset")), e->offset);
        return FV_EXIT_FAIL;
    }
    if (total > EXPORT_MAX_BYTES) {
        errorf("model version %" PRIu64 " is %" PRIu64 " bytes: above the 2 GiB export limit",
               e->version, total);
        return FV_EXIT_FAIL;
    }
    uint8_t d[32];
    size_t n = 0;
    if (strlen(hex) != 64 || sodium_hex2bin(d, sizeof d, hex, 64, NULL, &n, NULL) != 0 || n != 32) {
        errorf("the coordinator's answer to 'model.read': sha256 is not 64 hex digits");
        return FV_EXIT_FAIL;
    }
    if (e->have_total && (total != e->total || memcmp(d, e->sha, 32) != 0)) {
        errorf("model version %" PRIu64 " changed during the export (size or sha256 differ "
               "between chunks)",
               e->version);
        return FV_EXIT_FAIL;
    }
    if (data_len > FV_WIRE_ADMIN_DATA_MAX || data_len > total - e->offset ||
        (data_len == 0 && e->offset < total)) {
        errorf("the coordinator's answer to 'model.read' at offset %" PRIu64 " holds %zu "
               "bytes of a %" PRIu64 "-byte file",
               e->offset, data_len, total);
        return FV_EXIT_FAIL;
    }
    *ret_total = total;
    memcpy(sha, d, 32);
    return 0;
}

static int model_export(int argc, char **argv)
{
    args_t a = {.cmd = "model export", .usage = usage_model};
    int rc = parse(argc, argv, opts_export, N_OF(opts_export), 1, "VERSION", &a);
    if (rc >= 0)
        return rc;
    export_state_t e = {0};
    if (!parse_version(&a, a.pos[0], &e.version))
        return FV_EXIT_USAGE;
    if (a.out == NULL)
        return fv_cli_usage_error(a.cmd, "--out FILE is required");
    if ((rc = fv_cli_out_check(a.cmd, "--out", a.out, true)) != 0)
        return rc;

    kit_t k;
    admin_t s;
    fv_diag_t dg = {""};
    fv_file_out_t *fo = NULL;
    uint8_t *held = NULL; /* a direct target's whole file, written once verified */
    size_t held_len = 0;
    bool direct = false;
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    if ((rc = session_open(&a, &k, &s)) != 0)
        goto out;

    /* fv_file_out (cli-int.h): a file gets a temporary file beside it (beside the file a
     * symlink points to), renamed over it only once complete and verified. A direct
     * target ("-", /dev/stdout, a pipe, a device) cannot take bytes back, so there the
     * model is held in memory (at most EXPORT_MAX_BYTES) and written once its SHA-256
     * matches: on every target, only a verified model is ever written. */
    int fr = fv_file_out_open(a.out, 0644, &fo, &dg);
    if (fr != 0) {
        errorf("%s", dg.msg[0] ? dg.msg : uv_strerror(fr));
        rc = FV_EXIT_FAIL;
        goto out;
    }
    direct = fv_file_out_is_direct(fo);
    for (;;) {
        char *args =
            args_dump(json_pack("{s:I,s:I,s:I}", "version", (json_int_t)e.version, "offset",
                                (json_int_t)e.offset, "len", (json_int_t)FV_WIRE_ADMIN_DATA_MAX));
        if (args == NULL) {
            rc = FV_EXIT_FAIL;
            goto out;
        }
        admin_resp_t r = {0};
        json_t *b = NULL;
        rc = request(&s, "model.read", args, &r, &b);
        free(args);
        if (rc != 0)
            goto out;
        uint64_t total = 0;
        uint8_t sha[32];
        rc = export_check(&e, b, r.data_len, &total, sha);
        json_decref(b);
        if (rc == 0 && r.data_len > 0) {
            crypto_hash_sha256_update(&hs, r.data, r.data_len);
            if (direct) {
                /* total is the same in every chunk and at most EXPORT_MAX_BYTES, and
                 * held_len + data_len <= total (export_check) */
                if (held == NULL && (held = malloc((size_t)total)) == NULL) {
                    errorf("out of memory for a %" PRIu64 "-byte model", total);
                    rc = FV_EXIT_FAIL;
                }
                if (rc == 0) {
                    memcpy(held + held_len, r.data, r.data_len);
                    held_len += r.data_len;
                }
            } else {
                int w = fv_file_write_all(fv_file_out_fd(fo), r.data, r.data_len);
                if (w < 0) {
                    errorf("%s: write failed: %s", a.out, uv_strerror(w));
                    rc = FV_EXIT_FAIL;
                }
            }
        }
        size_t got = r.data_len;
        resp_free(&r);
        if (rc != 0)
            goto out;
        e.total = total;
        memcpy(e.sha, sha, 32);
        e.have_total = true;
        e.offset += got;
        if (e.offset == e.total)
            break;
    }
    uint8_t digest[32];
    crypto_hash_sha256_final(&hs, digest);
    char hex[65];
    sodium_bin2hex(hex, sizeof hex, e.sha, 32);
    if (sodium_memcmp(digest, e.sha, 32) != 0) {
        char got_hex[65];
        sodium_bin2hex(got_hex, sizeof got_hex, digest, 32);
        errorf("model version %" PRIu64 ": the %" PRIu64 " bytes received hash to %s, the "
               "coordinator announced %s: nothing written",
               e.version, e.total, got_hex, hex);
        rc = FV_EXIT_FAIL;
        goto out;
    }
    if (direct && held_len > 0) {
        int w = fv_file_write_all(fv_file_out_fd(fo), held, held_len);
        if (w < 0) {
            errorf("%s: write failed: %s", fv_cli_out_name(a.out), uv_strerror(w));
            rc = FV_EXIT_FAIL;
            goto out;
        }
    }
    fr = fv_file_out_commit(fo, &dg);
    fo = NULL; /* freed by the commit, also on failure */
    if (fr != 0) {
        errorf("%s", dg.msg[0] ? dg.msg : uv_strerror(fr));
        rc = FV_EXIT_FAIL;
        goto out;
    }
    /* the summary: on stderr when the model went to stdout */
    fprintf(fv_cli_out_report(a.out, NULL),
            "%s  sha256 %s  (%" PRIu64 " bytes, model version %" PRIu64 ")\n",
            fv_cli_out_name(a.out), hex, e.total, e.version);
    rc = FV_EXIT_OK;
out:
    fv_file_out_abort(fo); /* an unfinished temporary file is removed */
    free(held);
    session_close(&s, &k);
    return rc;
}

/* ---- model release, model releases ---------------------------------------------------- */

static int model_release(int argc, char **argv)
{
    args_t a = {.cmd = "model release", .usage = usage_model};
    int rc = parse(argc, argv, opts_release, N_OF(opts_release), 1, "VERSION", &a);
    if (rc >= 0)
        return rc;
    uint64_t v;
    if (!parse_version(&a, a.pos[0], &v))
        return FV_EXIT_USAGE;
    if (a.label == NULL)
        return fv_cli_usage_error(a.cmd, "--label stable|canary|backup is required");
    if (strcmp(a.label, "stable") != 0 && strcmp(a.label, "canary") != 0 &&
        strcmp(a.label, "backup") != 0)
        return fv_cli_usage_error(a.cmd, "--label: expected stable, canary or backup, got '%s'",
                                  a.label);
    char *args = args_dump(json_pack("{s:I,s:s}", "version", (json_int_t)v, "label", a.label));
    json_t *b = NULL;
    if ((rc = call_owned(&a, "model.release", args, &b)) >= 0)
        return rc;
    static const char *const keys[] = {"release", "label", "version",  "sha256", "bytes",
                                       "job",     "kind",  "released", "agents"};
    print_fields(b, keys, N_OF(keys), 8);
    json_decref(b);
    return FV_EXIT_OK;
}

static const col_t release_cols[] = {
    {"RELEASE", "release", 0}, {"LABEL", "label", 0}, {"VERSION", "version", 0},
    {"SHA256", "sha256", 12},  {"TS", "ts", 0},
};

static int model_releases(int argc, char **argv)
{
    static const list_cmd_t l = {.cmd = "model releases",
                                 .usage = usage_model,
                                 .req = "model.releases",
                                 .key = "releases",
                                 .none = "no releases",
                                 .cols = release_cols,
                                 .n_cols = N_OF(release_cols)};
    return list_run(argc, argv, &l);
}

int fv_cmd_model(int argc, char **argv)
{
    static const sub_t subs[] = {{"list", model_list},
                                 {"show", model_show},
                                 {"export", model_export},
                                 {"release", model_release},
                                 {"releases", model_releases}};
    return group_run(argc, argv, "model", usage_model, subs, N_OF(subs));
}
