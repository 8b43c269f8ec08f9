/* agent_main.c - `fedvault-agent`: command line, kit configuration, JSON-lines logging.
 *
 * The daemon itself lives in agent.c and its parts (agent-int.h); this file turns argv
 * and the kit's agent.json into an fv_agent_cfg_t. Precedence: command-line flags
 * override the config file. Paths in the config are relative to the config file's
 * directory (that is how `fedvault provision` writes kits); paths on the command line are
 * relative to the working directory. The config is input like any other: unknown keys,
 * wrong types and bad values are refused with a sentence naming the file and the key.
 *
 * The config's keys: federation, name, role ("agent"), coordinator ("HOST:PORT"), ca,
 * cert, key, crl (optional), data (optional: --data), policy {accept_jobs, min_cohort,
 * min_threshold, require_secure_aggregation, disclose_rows, max_crl_age_s,
 * schema_discovery {allow, min_count}, privacy {epsilon_max, delta, required,
 * allow_outside_budget} (agent_privacy.c)} (optional), privacy_ledger (optional: default
 * "privacy/ledger.jsonl" beside the config),
 * audit_log (optional: the agent's signed audit log, default "audit/agent-audit.log" beside
 * the config, its head "<audit_log>.head"; missing directories are created with mode 0700;
 * --audit-log overrides it). What goes into the log: agent_audit.c, "AUDIT".
 *
 * Exit status: 0 ok, 1 failure (the last stderr line says what and where), 2 usage.
 * Every line on stderr is one JSON object (see fv__agent_log), except usage errors,
 * which are for a person at a terminal.
 */
#include "fv_log.h"
#include "agent-int.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "fv-config.h"

#define PROG "fedvault-agent"
#define EXIT_USAGE 2
#define DEFAULT_AUDIT_LOG "audit/agent-audit.log"     /* relative to the config's directory */
#define DEFAULT_PRIVACY_LEDGER "privacy/ledger.jsonl" /* likewise */

static const char usage[] =
    "Usage: " PROG " --config agent.json [options]\n"
    "\n"
    "The bank-side daemon of a fedvault federation: connects out to the coordinator over\n"
    "mutual TLS, accepts jobs its policy allows, trains on the local data file and sends\n"
    "only securely aggregated (masked) updates. No row, label or individual update leaves.\n"
    "\n"
    "  --config FILE          the kit's agent.json (required): federation, name, role,\n"
    "                         coordinator, ca, cert, key; optional data, policy\n"
    "                         {accept_jobs, min_cohort, min_threshold,\n"
    "                         require_secure_aggregation, disclose_rows, max_crl_age_s,\n"
    "                         schema_discovery, privacy}, audit_log, privacy_ledger,\n"
    "                         crl. Paths in it are relative to its directory.\n"
    "                         policy.schema_discovery {\"allow\": false, \"min_count\": 10}:\n"
    "                         allow true sends an open job's category values held by >=\n"
    "                         min_count rows (the rest suppressed); audited\n"
    "                         policy.privacy {\"epsilon_max\": 10.0, \"delta\": 1e-5,\n"
    "                         \"required\": false, \"allow_outside_budget\": [\"stats\",\n"
    "                         \"metrics\", \"explain\"]}: a job with differential privacy\n"
    "                         is accepted only while the epsilon all jobs spent on this\n"
    "                         data file stays <= epsilon_max (none: no limit), charged to\n"
    "                         the ledger (\"privacy_ledger\", default\n"
    "                         privacy/ledger.jsonl beside agent.json) before accepting;\n"
    "                         required true refuses jobs without privacy; a job declaring\n"
    "                         a release outside its budget the list lacks is refused\n"
    "  --privacy-ledger [--json]\n"
    "                         print the privacy ledger (spends per data file, each job's\n"
    "                         epsilon) and exit; no coordinator or data file needed\n"
    "  --data FILE            local CSV file (overrides \"data\")\n";
/* in two parts: ISO C caps a string literal at 4095 bytes */
static const char usage2[] =
    "  --data FILE            local CSV file (overrides \"data\")\n"
    "  --audit-log FILE       the agent's signed audit log (overrides \"audit_log\"; default\n"
    "                         audit/agent-audit.log beside agent.json; head: FILE.head).\n"
    "                         Every message sent is recorded there first; if the log cannot\n"
    "                         be written the agent stops (exit 1). Check it with\n"
    "                         `fedvault audit verify --log FILE --head FILE.head --cert\n"
    "                         cert.pem`\n"
    "  --coordinator HOST:PORT  coordinator address (overrides \"coordinator\")\n"
    "  --accept-jobs NAME,... take part only in jobs with these names (default: any)\n"
    "  --min-cohort N         refuse rounds with fewer than N agents\n"
    "  --min-threshold T      refuse SecAgg rounds whose threshold is below T\n"
    "  --require-secure-aggregation on|off\n"
    "                         on (the default): refuse every job that would send the\n"
    "                         statistics, an update or a metric without secure\n"
    "                         aggregation (\"secagg\": \"off\"); the refusal is logged and\n"
    "                         audited and nothing else is sent. off: plain jobs too (the\n"
    "                         coordinator then sees this bank's update in the clear)\n"
    "  --disclose-rows on|off tell the coordinator the data file's row count when\n"
    "                         accepting a job (default off: 0 is sent, meaning withheld)\n"
    "  --max-crl-age-s N      refuse SecAgg jobs when the newest federation CRL held (the\n"
    "                         coordinator relays it; the agent checks the CA signed it)\n"
    "                         was issued more than N seconds ago (default 2592000, 30\n"
    "                         days; overrides \"policy.max_crl_age_s\")\n"
    "  --once                 exit 0 after the first job is done\n"
    "  --model-dir DIR        take signed model releases into DIR (fedvault-serve reads\n"
    "                         them there): a release is installed only when its manifest\n"
    "                         verifies against the federation CA and its model's SHA-256\n"
    "                         is one this bank's own kept receipts record (a job it took\n"
    "                         part in) or one given with --pin; refusals are logged and\n"
    "                         audited (release.refused). Without it releases are ignored\n"
    "  --pin SHA256           also accept releases of this model (64 hex; repeatable, at\n"
    "                         most 64): the operator's word for an air-gapped release\n"
    "  --fetch-releases       connect, install or refuse every current release (needs\n"
    "                         --model-dir), take no job, and exit 0; no data file needed\n"
    "  --threads N            local training threads, each on a slice of every batch\n"
    "                         (default 1; OpenBLAS itself runs single-threaded)\n"
    "  -h, --help             this text\n"
    "\n"
    "Logs: one JSON object per line on stderr (ts, level, event, job, round, ...).\n"
    "Exit status: 0 ok, 1 failure, 2 usage error.\n";

/* ---- logging ---------------------------------------------------------------------- */

void fv__agent_log(const char *level, const char *event, const char *job_hex, const char *job_name,
                   int64_t round, json_t *extra)
{
    int lv = fv_log_level_parse(level);
    if (!fv_log_enabled(lv < 0 ? FV_LOG_ERROR : (fv_log_level_t)lv)) {
        json_decref(extra);
        return;
    }
    json_t *o = json_object();
    if (o == NULL) {
        json_decref(extra);
        return;
    }
    if (job_hex != NULL)
        json_object_set_new(o, "job", json_string(job_hex));
    if (job_name != NULL)
        json_object_set_new(o, "job_name", json_string(job_name));
    if (round >= 0)
        json_object_set_new(o, "round", json_integer(round));
    if (extra != NULL) {
        json_object_update(o, extra);
        json_decref(extra);
    }
    fv_log_json(lv < 0 ? FV_LOG_ERROR : (fv_log_level_t)lv, event, o);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fv__agent_log("error", "startup_failed", NULL, NULL, -1, json_pack("{s:s}", "why", why));
    return 1;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry '" PROG " --help'.\n", stderr);
    return EXIT_USAGE;
}

/* ---- small parsers ------------------------------------------------------------------ */

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *ret)
{
    char *end;
    errno = 0;
    if (s[0] == '\0' || s[0] == '-' || s[0] == '+')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *ret = (uint32_t)v;
    return true;
}

/* "HOST:PORT" or "[V6]:PORT", PORT in min_port..65535; host copied into host[cap]. */
static bool parse_hostport(const char *s, uint32_t min_port, char *host, size_t cap, int *ret_port)
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
    uint32_t port;
    if (!parse_u32(colon + 1, min_port, 65535, &port))
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *ret_port = (int)port;
    return true;
}

/* Owned strings made while reading the config, freed at exit. */
typedef struct strpool {
    char *s[FV_AGENT_MAX_ACCEPT_JOBS + 16];
    size_t n;
} strpool_t;

static char *pool_add(strpool_t *p, char *s)
{
    if (s == NULL || p->n == sizeof p->s / sizeof p->s[0]) {
        free(s);
        return NULL;
    }
    p->s[p->n++] = s;
    return s;
}

static char *resolve(strpool_t *p, const char *dir, const char *path)
{
    if (path[0] == '/' || dir[0] == '\0')
        return pool_add(p, strdup(path));
    size_t n = strlen(dir) + 1 + strlen(path) + 1;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "%s/%s", dir, path);
    return pool_add(p, s);
}

static int add_accept_job(fv_agent_cfg_t *c, strpool_t *p, const char *name, size_t len,
                          const char *origin)
{
    if (len == 0 || len > 64)
        return fail("%s: accept_jobs: empty or over-long job name", origin);
    if (c->n_accept_jobs == FV_AGENT_MAX_ACCEPT_JOBS)
        return fail("%s: accept_jobs: more than %d names", origin, FV_AGENT_MAX_ACCEPT_JOBS);
    char *s = pool_add(p, strndup(name, len));
    if (s == NULL)
        return fail("out of memory");
    c->accept_jobs[c->n_accept_jobs++] = s;
    return 0;
}

/* ---- the config file ---------------------------------------------------------------- */

static const char *cfg_str(json_t *root, const char *path, const char *key, bool required, int *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL) {
        if (required && *err == 0)
            *err = fail("%s: missing key \"%s\"", path, key);
        return NULL;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        if (*err == 0)
            *err = fail("%s: \"%s\" must be a non-empty string", path, key);
        return NULL;
    }
    return json_string_value(v);
}

static int cfg_u32(json_t *obj, const char *path, const char *key, uint32_t *ret)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
        return fail("%s: policy.%s must be an integer in 0..65535", path, key);
    *ret = (uint32_t)json_integer_value(v);
    return 0;
}

static int cfg_bool(json_t *obj, const char *path, const char *key, bool *ret)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return 0;
    if (!json_is_boolean(v))
        return fail("%s: policy.%s must be true or false", path, key);
    *ret = json_is_true(v);
    return 0;
}

/* policy.schema_discovery {allow: bool (false), min_count: 1..2^31-1 (10)}. */
static int cfg_schema_discovery(json_t *sd, const char *path, fv_agent_cfg_t *c)
{
    if (sd == NULL)
        return 0;
    if (!json_is_object(sd))
        return fail("%s: policy.schema_discovery must be an object {\"allow\": true|false, "
                    "\"min_count\": N}",
                    path);
    const char *k;
    json_t *v;
    json_object_foreach(sd, k, v)
    {
        if (strcmp(k, "allow") != 0 && strcmp(k, "min_count") != 0)
            return fail("%s: unknown key \"policy.schema_discovery.%s\" (known: allow, "
                        "min_count)",
                        path, k);
    }
    json_t *al = json_object_get(sd, "allow"), *mc = json_object_get(sd, "min_count");
    if (al != NULL && !json_is_boolean(al))
        return fail("%s: policy.schema_discovery.allow must be true or false", path);
    if (al != NULL)
        c->schema_allow = json_is_true(al);
    if (mc != NULL) {
        if (!json_is_integer(mc) || json_integer_value(mc) < 1 ||
            json_integer_value(mc) > INT32_MAX)
            return fail("%s: policy.schema_discovery.min_count must be an integer in 1..%d "
                        "(rows: a value held by fewer is suppressed)",
                        path, INT32_MAX);
        c->schema_min_count = (uint32_t)json_integer_value(mc);
    }
    return 0;
}

static bool parse_onoff(const char *s, bool *ret)
{
    if (strcmp(s, "on") == 0 || strcmp(s, "true") == 0)
        *ret = true;
    else if (strcmp(s, "off") == 0 || strcmp(s, "false") == 0)
        *ret = false;
    else
        return false;
    return true;
}

static int load_config(const char *path, fv_agent_cfg_t *c, strpool_t *p, json_t **ret_root,
                       char *host, size_t host_cap)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return fail("%s:%d:%d: %s", path, je.line, je.column, je.text);
    *ret_root = root;
    if (!json_is_object(root))
        return fail("%s: expected a JSON object", path);
    static const char *const known[] = {"federation", "name",   "role",      "coordinator",
                                        "ca",         "cert",   "key",       "crl",
                                        "data",       "policy", "audit_log", "privacy_ledger"};
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok = ok || strcmp(k, known[i]) == 0;
        if (!ok)
            return fail("%s: unknown key \"%s\" (known: federation, name, role, coordinator, "
                        "ca, cert, key, crl, data, policy, audit_log, privacy_ledger)",
                        path, k);
    }
    int err = 0;
    c->federation = cfg_str(root, path, "federation", true, &err);
    c->name = cfg_str(root, path, "name", true, &err);
    const char *role = cfg_str(root, path, "role", true, &err);
    const char *coord = cfg_str(root, path, "coordinator", false, &err);
    const char *ca = cfg_str(root, path, "ca", true, &err);
    const char *cert = cfg_str(root, path, "cert", true, &err);
    const char *key = cfg_str(root, path, "key", true, &err);
    const char *crl = cfg_str(root, path, "crl", false, &err);
    const char *data = cfg_str(root, path, "data", false, &err);
    const char *audit_log = cfg_str(root, path, "audit_log", false, &err);
    const char *ledger = cfg_str(root, path, "privacy_ledger", false, &err);
    if (err != 0)
        return err;
    if (strcmp(role, "agent") != 0)
        return fail("%s: role is \"%s\": this is not an agent's kit", path, role);

    char *slash = strrchr(path, '/');
    char *dir = pool_add(p, slash == NULL ? strdup("") : strndup(path, (size_t)(slash - path)));
    if (dir == NULL)
        return fail("out of memory");
    if (slash != NULL && dir[0] == '\0')
        dir = (char *)"/"; /* config in the root directory */
    c->ca = resolve(p, dir, ca);
    c->cert = resolve(p, dir, cert);
    c->key = resolve(p, dir, key);
    c->crl = crl != NULL ? resolve(p, dir, crl) : NULL;
    c->data = data != NULL ? resolve(p, dir, data) : NULL;
    c->audit_log = resolve(p, dir, audit_log != NULL ? audit_log : DEFAULT_AUDIT_LOG);
    c->privacy_ledger = resolve(p, dir, ledger != NULL ? ledger : DEFAULT_PRIVACY_LEDGER);
    if (c->ca == NULL || c->cert == NULL || c->key == NULL || (crl && !c->crl) ||
        (data && !c->data) || c->audit_log == NULL || c->privacy_ledger == NULL)
        return fail("out of memory");
    if (coord != NULL) {
        /* Port 0 is what `fedvault provision` writes when the coordinator's port is not
         * known yet (tests listen on an ephemeral port): then --coordinator must say. */
        if (!parse_hostport(coord, 0, host, host_cap, &c->port))
            return fail("%s: coordinator \"%s\": expected HOST:PORT", path, coord);
        c->host = host;
    }

    json_t *pol = json_object_get(root, "policy");
    if (pol != NULL) {
        if (!json_is_object(pol))
            return fail("%s: policy must be an object", path);
        json_object_foreach(pol, k, v)
        {
            if (strcmp(k, "accept_jobs") != 0 && strcmp(k, "min_cohort") != 0 &&
                strcmp(k, "min_threshold") != 0 && strcmp(k, "require_secure_aggregation") != 0 &&
                strcmp(k, "disclose_rows") != 0 && strcmp(k, "max_crl_age_s") != 0 &&
                strcmp(k, "schema_discovery") != 0 && strcmp(k, "privacy") != 0)
                return fail("%s: unknown key \"policy.%s\" (known: accept_jobs, min_cohort, "
                            "min_threshold, require_secure_aggregation, disclose_rows, "
                            "max_crl_age_s, schema_discovery, privacy)",
                            path, k);
        }
        if ((err = cfg_schema_discovery(json_object_get(pol, "schema_discovery"), path, c)) != 0)
            return err;
        char msg[512];
        if (fv__agent_cfg_privacy(json_object_get(pol, "privacy"), path, c, msg, sizeof msg) != 0)
            return fail("%s", msg);
        json_t *age = json_object_get(pol, "max_crl_age_s");
        if (age != NULL) {
            if (!json_is_integer(age) || json_integer_value(age) < 1 ||
                json_integer_value(age) > INT32_MAX)
                return fail("%s: policy.max_crl_age_s must be an integer in 1..%d (seconds)", path,
                            INT32_MAX);
            c->max_crl_age_s = json_integer_value(age);
        }
        if ((err = cfg_u32(pol, path, "min_cohort", &c->min_cohort)) != 0 ||
            (err = cfg_u32(pol, path, "min_threshold", &c->min_threshold)) != 0 ||
            (err = cfg_bool(pol, path, "require_secure_aggregation", &c->require_secagg)) != 0 ||
            (err = cfg_bool(pol, path, "disclose_rows", &c->disclose_rows)) != 0)
            return err;
        json_t *aj = json_object_get(pol, "accept_jobs");
        if (aj != NULL) {
            if (!json_is_array(aj))
                return fail("%s: policy.accept_jobs must be an array of job names", path);
            size_t i;
            json_array_foreach(aj, i, v)
            {
                if (!json_is_string(v))
                    return fail("%s: policy.accept_jobs[%zu] must be a string", path, i);
                if ((err = add_accept_job(c, p, json_string_value(v), json_string_length(v),
                                          path)) != 0)
                    return err;
            }
        }
    }
    return 0;
}

enum {
    OPT_CONFIG = 256,
    OPT_DATA,
    OPT_COORDINATOR,
    OPT_ACCEPT_JOBS,
    OPT_MIN_COHORT,
    OPT_MIN_THRESHOLD,
    OPT_ONCE,
    OPT_THREADS,
    OPT_AUDIT_LOG,
    OPT_REQUIRE_SECAGG,
    OPT_DISCLOSE_ROWS,
    OPT_MAX_CRL_AGE,
    OPT_MODEL_DIR,
    OPT_PIN,
    OPT_FETCH_RELEASES,
    OPT_PRIVACY_LEDGER,
    OPT_JSON,
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"data", required_argument, NULL, OPT_DATA},
    {"coordinator", required_argument, NULL, OPT_COORDINATOR},
    {"accept-jobs", required_argument, NULL, OPT_ACCEPT_JOBS},
    {"min-cohort", required_argument, NULL, OPT_MIN_COHORT},
    {"min-threshold", required_argument, NULL, OPT_MIN_THRESHOLD},
    {"once", no_argument, NULL, OPT_ONCE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"audit-log", required_argument, NULL, OPT_AUDIT_LOG},
    {"require-secure-aggregation", required_argument, NULL, OPT_REQUIRE_SECAGG},
    {"disclose-rows", required_argument, NULL, OPT_DISCLOSE_ROWS},
    {"max-crl-age-s", required_argument, NULL, OPT_MAX_CRL_AGE},
    {"model-dir", required_argument, NULL, OPT_MODEL_DIR},
    {"pin", required_argument, NULL, OPT_PIN},
    {"fetch-releases", no_argument, NULL, OPT_FETCH_RELEASES},
    {"privacy-ledger", no_argument, NULL, OPT_PRIVACY_LEDGER},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    const char *config = NULL, *data = NULL, *coordinator = NULL, *accept = NULL, *audit_log = NULL;
    uint32_t min_cohort = 0, min_threshold = 0, threads = 0, max_crl_age_s = 0;
    bool have_min_cohort = false, have_min_threshold = false, once = false;
    bool require_secagg = true, have_require_secagg = false;
    bool disclose_rows = false, have_disclose_rows = false;
    const char *model_dir = NULL, *pins[FV_AGENT_MAX_PINS];
    size_t n_pins = 0;
    bool fetch_releases = false, print_ledger = false, as_json = false;
    int c;
    /* A validated round allocates and frees buffers of the payload's size (0.5 MB for the
     * Lending Club teacher) many times per round: keep them in the heap instead of a fresh
     * mmap (and its page faults) each time. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            fputs(usage2, stdout);
            return 0;
        case OPT_CONFIG:
            config = optarg;
            break;
        case OPT_DATA:
            data = optarg;
            break;
        case OPT_COORDINATOR:
            coordinator = optarg;
            break;
        case OPT_AUDIT_LOG:
            if (optarg[0] == '\0')
                return usage_error("--audit-log: expected a file name");
            audit_log = optarg;
            break;
        case OPT_ACCEPT_JOBS:
            accept = optarg;
            break;
        case OPT_ONCE:
            once = true;
            break;
        case OPT_MIN_COHORT:
            if (!parse_u32(optarg, 0, 65535, &min_cohort))
                return usage_error("--min-cohort: expected an integer in 0..65535, got '%s'",
                                   optarg);
            have_min_cohort = true;
            break;
        case OPT_MIN_THRESHOLD:
            if (!parse_u32(optarg, 0, 65535, &min_threshold))
                return usage_error("--min-threshold: expected an integer in 0..65535, got '%s'",
                                   optarg);
            have_min_threshold = true;
            break;
        case OPT_REQUIRE_SECAGG:
            if (!parse_onoff(optarg, &require_secagg))
                return usage_error("--require-secure-aggregation: expected on or off, got '%s'",
                                   optarg);
            have_require_secagg = true;
            break;
        case OPT_DISCLOSE_ROWS:
            if (!parse_onoff(optarg, &disclose_rows))
                return usage_error("--disclose-rows: expected on or off, got '%s'", optarg);
            have_disclose_rows = true;
            break;
        case OPT_MAX_CRL_AGE:
            if (!parse_u32(optarg, 1, INT32_MAX, &max_crl_age_s))
                return usage_error("--max-crl-age-s: expected seconds in 1..%d, got '%s'",
                                   INT32_MAX, optarg);
            break;
        case OPT_MODEL_DIR:
            if (optarg[0] == '\0')
                return usage_error("--model-dir: expected a directory");
            model_dir = optarg;
            break;
        case OPT_PIN: {
            bool ok = strlen(optarg) == 64;
            for (size_t i = 0; ok && i < 64; i++)
                ok = (optarg[i] >= '0' && optarg[i] <= '9') ||
                     (optarg[i] >= 'a' && optarg[i] <= 'f');
            if (!ok)
                return usage_error("--pin: expected a model's SHA-256 (64 lowercase hex), got '%s'",
                                   optarg);
            if (n_pins == FV_AGENT_MAX_PINS)
                return usage_error("--pin: at most %d", FV_AGENT_MAX_PINS);
            pins[n_pins++] = optarg;
            break;
        }
        case OPT_FETCH_RELEASES:
            fetch_releases = true;
            break;
        case OPT_PRIVACY_LEDGER:
            print_ledger = true;
            break;
        case OPT_JSON:
            as_json = true;
            break;
        case OPT_THREADS:
            if (!parse_u32(optarg, 1, 256, &threads))
                return usage_error("--threads: expected an integer in 1..256, got '%s'", optarg);
            break;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (config == NULL)
        return usage_error("--config FILE is required (the kit's agent.json)");
    char host_flag[256];
    int port_flag = 0;
    if (coordinator != NULL &&
        !parse_hostport(coordinator, 1, host_flag, sizeof host_flag, &port_flag))
        return usage_error("--coordinator: expected HOST:PORT, got '%s'", coordinator);

    fv_agent_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.require_secagg = true; /* the policy's defaults: SecAgg required, rows withheld */
    cfg.schema_allow = false;  /* no schema disclosure unless the bank opts in */
    cfg.schema_min_count = 10;
    cfg.max_crl_age_s = FV_AGENT_MAX_CRL_AGE_S;
    fv__agent_cfg_privacy(NULL, config, &cfg, NULL, 0); /* the defaults */
    strpool_t pool;
    memset(&pool, 0, sizeof pool);
    json_t *root = NULL;
    char host_cfg[256];
    int rc = load_config(config, &cfg, &pool, &root, host_cfg, sizeof host_cfg);
    if (rc != 0)
        goto out;
    cfg.config_path = config;
    if (as_json && !print_ledger) {
        rc = usage_error("--json goes with --privacy-ledger");
        goto out;
    }
    if (print_ledger) {
        rc = fv__agent_privacy_print(&cfg, as_json);
        goto out;
    }
    if (data != NULL)
        cfg.data = data;
    if (audit_log != NULL)
        cfg.audit_log = audit_log;
    size_t hl = strlen(cfg.audit_log) + sizeof ".head";
    char *head = pool_add(&pool, malloc(hl));
    if (head == NULL) {
        rc = fail("out of memory");
        goto out;
    }
    snprintf(head, hl, "%s.head", cfg.audit_log);
    cfg.audit_head = head;
    if (coordinator != NULL) {
        cfg.host = host_flag;
        cfg.port = port_flag;
    }
    if (accept != NULL) {
        cfg.n_accept_jobs = 0;
        for (const char *s = accept; rc == 0;) {
            const char *comma = strchr(s, ',');
            size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
            rc = add_accept_job(&cfg, &pool, s, len, "--accept-jobs");
            if (comma == NULL)
                break;
            s = comma + 1;
        }
        if (rc != 0) {
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (have_min_cohort)
        cfg.min_cohort = min_cohort;
    if (have_min_threshold)
        cfg.min_threshold = min_threshold;
    if (have_require_secagg)
        cfg.require_secagg = require_secagg;
    if (have_disclose_rows)
        cfg.disclose_rows = disclose_rows;
    if (max_crl_age_s != 0)
        cfg.max_crl_age_s = max_crl_age_s;
    cfg.once = once;
    cfg.model_dir = model_dir;
    for (size_t i = 0; i < n_pins; i++)
        cfg.pins[i] = pins[i];
    cfg.n_pins = n_pins;
    cfg.fetch_releases = fetch_releases;
    if (fetch_releases && model_dir == NULL) {
        rc = usage_error("--fetch-releases needs --model-dir DIR");
        goto out;
    }
    cfg.threads = threads != 0 ? threads : FV_DEFAULT_BLAS_THREADS;
    if (cfg.host == NULL || cfg.port == 0) {
        rc = usage_error("no coordinator address%s: set \"coordinator\" in %s or pass "
                         "--coordinator HOST:PORT",
                         cfg.host != NULL ? " (port 0)" : "", config);
        goto out;
    }
    if (cfg.data == NULL && !fetch_releases) {
        rc = usage_error("no data file: set \"data\" in %s or pass --data FILE", config);
        goto out;
    }
    /* The data file is read for real when a job arrives; fail now if it cannot be. */
    FILE *f = fetch_releases ? NULL : fopen(cfg.data, "rb");
    if (f == NULL && !fetch_releases) {
        rc = fail("data file %s: %s (set \"data\" in %s or pass --data FILE)", cfg.data,
                  strerror(errno), config);
        goto out;
    }
    if (f != NULL)
        fclose(f);
    rc = fv__agent_run(&cfg);
out:
    json_decref(root);
    for (size_t i = 0; i < pool.n; i++)
        free(pool.s[i]);
    return rc;
}
