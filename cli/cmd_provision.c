/* cmd_provision.c - `fedvault provision`: the federation's CA and startup kits.
 *
 * A thin CLI over crypto/fv_pki.h:
 *   provision --federation ... --coordinator HOST:PORT ...   CA + every kit at once
 *   provision add-agent NAME / add-admin NAME                one more kit, nothing else touched
 *   provision revoke NAME                                    registry + CRL (+ kit copies)
 *   provision crl                                            re-sign the CRL before it expires
 * Everything that can be checked before the first file is written is checked first
 * (names, duplicates, the address, dates): a usage error never leaves a half-made
 * federation behind. A failure halfway (disk full) reports the kits already written.
 *
 * Dates are UTC days: --not-before D starts at D 00:00:00, --not-after D ends at
 * D 23:59:59. A --not-after in the past is allowed (tests need expired certificates) and
 * warned about; with no --not-before, such a certificate starts --days before it ends.
 */
#define _GNU_SOURCE /* timegm */
#include "cli-int.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "fv_pki.h"

#define CMD "provision"

static const char usage[] =
    "Usage: fedvault provision --federation NAME --coordinator HOST:PORT --out DIR\n"
    "                          [--agents A,B,...] [--admins X,Y,...]\n"
    "                          [--admin-address HOST:PORT] [--coordinator-name NAME]\n"
    "                          [--days N] [--json]\n"
    "       fedvault provision add-agent NAME --out DIR [--days N]\n"
    "                          [--not-before YYYY-MM-DD] [--not-after YYYY-MM-DD] [--json]\n"
    "       fedvault provision add-admin NAME --out DIR [...same options]\n"
    "       fedvault provision revoke NAME --out DIR [--json]\n"
    "       fedvault provision crl --out DIR [--json]\n"
    "\n"
    "Create a federation's certificate authority (DIR/ca) and one startup kit per\n"
    "participant (DIR/<name>: key.pem, cert.pem, ca.pem, <role>.json; the coordinator's\n"
    "and admins' kits also crl.pem). Keys are Ed25519, private keys mode 0600, kits 0700.\n"
    "Existing kits are never overwritten; names are never reused.\n"
    "\n"
    "  --federation NAME        federation name (certificate O=)\n"
    "  --coordinator HOST:PORT  the coordinator's address ([IPV6]:PORT for IPv6); its\n"
    "                           certificate carries HOST as a subjectAltName\n"
    "  --admin-address HOST:PORT  the coordinator's admin port (fedvault status, job ...):\n"
    "                           written as admin_listen in coordinator.json and as admin\n"
    "                           in every admin kit's admin.json\n"
    "  --coordinator-name NAME  name of the coordinator's kit (default coordinator)\n"
    "  --agents LIST            comma-separated agent (bank) names\n"
    "  --admins LIST            comma-separated admin names\n"
    "  --out DIR                federation directory (created; its parent must exist)\n"
    "  --days N                 validity of participants' certificates (default 825);\n"
    "                           the CA's is the larger of N and 3650 days\n"
    "  --not-before DATE        add-*: valid from DATE 00:00:00 UTC\n"
    "  --not-after DATE         add-*: valid until DATE 23:59:59 UTC (may be in the past)\n"
    "  --json                   print one JSON object instead of the summary\n"
    "  -h, --help               this text\n"
    "\n"
    "Names: 1..64 of [a-z0-9._-], starting with a letter or digit; 'ca' is reserved.\n"
    "'revoke' marks NAME revoked and re-signs DIR/ca/crl.pem (copied into the\n"
    "coordinator's and admins' kits): ship the new CRL to the coordinator. The CRL is\n"
    "valid for 365 days; 'crl' re-signs it.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

enum {
    OPT_FED = 256,
    OPT_COORD,
    OPT_COORD_NAME,
    OPT_ADMIN_ADDR,
    OPT_AGENTS,
    OPT_ADMINS,
    OPT_OUT,
    OPT_DAYS,
    OPT_NB,
    OPT_NA,
    OPT_JSON
};

static const struct option long_opts[] = {
    {"federation", required_argument, NULL, OPT_FED},
    {"coordinator", required_argument, NULL, OPT_COORD},
    {"coordinator-name", required_argument, NULL, OPT_COORD_NAME},
    {"admin-address", required_argument, NULL, OPT_ADMIN_ADDR},
    {"agents", required_argument, NULL, OPT_AGENTS},
    {"admins", required_argument, NULL, OPT_ADMINS},
    {"out", required_argument, NULL, OPT_OUT},
    {"days", required_argument, NULL, OPT_DAYS},
    {"not-before", required_argument, NULL, OPT_NB},
    {"not-after", required_argument, NULL, OPT_NA},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct args {
    const char *federation, *coordinator, *coord_name, *agents, *admins, *out, *admin_addr;
    const char *not_before, *not_after;
    size_t days; /* 0: default */
    bool json;
    const char *name; /* the positional NAME of add-*, revoke */
} args_t;

/* Parses options for subcommand `cmd`; `allowed` lists the long options it accepts.
 * Returns -1 to go on, or an exit code (help, usage error). */
static int parse(const char *cmd, int argc, char **argv, const int *allowed, size_t n_allowed,
                 bool want_name, args_t *a)
{
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return FV_EXIT_OK;
        }
        bool ok = fv_cli_option_allowed(c, allowed, n_allowed);
        if (!ok && c != '?')
            return fv_cli_option_misplaced(cmd, c, long_opts);
        switch (ok ? c : '?') {
        case OPT_FED:
            a->federation = optarg;
            break;
        case OPT_COORD:
            a->coordinator = optarg;
            break;
        case OPT_COORD_NAME:
            a->coord_name = optarg;
            break;
        case OPT_ADMIN_ADDR:
            a->admin_addr = optarg;
            break;
        case OPT_AGENTS:
            a->agents = optarg;
            break;
        case OPT_ADMINS:
            a->admins = optarg;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_NB:
            a->not_before = optarg;
            break;
        case OPT_NA:
            a->not_after = optarg;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_DAYS:
            if (!fv_cli_parse_size(cmd, "--days", optarg, 1, 36500, &a->days))
                return FV_EXIT_USAGE;
            break;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", cmd);
            return FV_EXIT_USAGE;
        }
    }
    if (want_name) {
        if (optind >= argc)
            return fv_cli_usage_error(cmd, "expected a participant NAME");
        a->name = argv[optind++];
    }
    if (optind < argc)
        return fv_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (a->out == NULL)
        return fv_cli_usage_error(cmd, "--out DIR is required");
    return -1;
}

static bool check_name(const char *cmd, const char *what, const char *name)
{
    if (!fv_name_valid(name)) {
        fv_cli_usage_error(cmd,
                           "%s '%s' is invalid: use 1..64 of [a-z0-9._-], starting "
                           "with a letter or digit",
                           what, name);
        return false;
    }
    if (strcmp(name, "ca") == 0) {
        fv_cli_usage_error(cmd, "%s 'ca' is reserved (DIR/ca holds the CA)", what);
        return false;
    }
    return true;
}

/* YYYY-MM-DD (a real calendar day) -> unix seconds of its 00:00:00 UTC. */
static bool parse_date(const char *cmd, const char *opt, const char *s, int64_t *ret)
{
    int y, m, dd, n = 0;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &dd, &n) != 3 || n != 10 ||
        y < 1970 || m < 1 || m > 12 || dd < 1 || dd > 31) {
        fv_cli_usage_error(cmd, "%s: expected a date YYYY-MM-DD, got '%s'", opt, s);
        return false;
    }
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = dd};
    time_t t = timegm(&tm);
    struct tm back;
    if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_mday != dd ||
        back.tm_mon != m - 1) {
        fv_cli_usage_error(cmd, "%s: '%s' is not a calendar day", opt, s);
        return false;
    }
    *ret = (int64_t)t;
    return true;
}

typedef struct kit {
    const char *name;
    fv_role_t role;
} kit_t;

static void print_kits(const args_t *a, const char *federation, bool with_ca, const kit_t *kits,
                       size_t n)
{
    if (a->json) {
        json_t *o = json_object(), *arr = json_array();
        if (federation != NULL)
            json_object_set_new(o, "federation", json_string(federation));
        json_object_set_new(o, "dir", json_string(a->out));
        if (with_ca) {
            char ca[4096];
            snprintf(ca, sizeof ca, "%s/ca", a->out);
            json_object_set_new(o, "ca", json_string(ca));
        }
        for (size_t i = 0; i < n; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", a->out, kits[i].name);
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "name", kits[i].name, "role",
                                                 fv_role_name(kits[i].role), "path", p));
        }
        json_object_set_new(o, "kits", arr);
        char *s = json_dumps(o, JSON_COMPACT);
        if (s != NULL)
            puts(s);
        free(s);
        json_decref(o);
        return;
    }
    if (with_ca)
        printf("federation %s: CA in %s/ca (keep ca.key offline)\n", federation, a->out);
    for (size_t i = 0; i < n; i++)
        printf("kit %-12s %-20s %s/%s/\n", fv_role_name(kits[i].role), kits[i].name, a->out,
               kits[i].name);
}

static int cmd_create(int argc, char **argv)
{
    static const int allowed[] = {OPT_FED,    OPT_COORD, OPT_COORD_NAME, OPT_ADMIN_ADDR, OPT_AGENTS,
                                  OPT_ADMINS, OPT_OUT,   OPT_DAYS,       OPT_JSON};
    args_t a = {.coord_name = "coordinator"};
    int rc = parse(CMD, argc, argv, allowed, sizeof allowed / sizeof allowed[0], false, &a);
    if (rc >= 0)
        return rc;
    if (a.federation == NULL || a.coordinator == NULL)
        return fv_cli_usage_error(CMD, "--federation, --coordinator and --out are required");

    fv_diag_t d = {""};
    char **agents = NULL, **admins = NULL;
    size_t n_agents = 0, n_admins = 0, n_kits = 0, n_done = 0;
    kit_t *kits = NULL;
    rc = FV_EXIT_USAGE;

    if (!fv_name_valid(a.federation)) {
        fv_cli_usage_error(CMD,
                           "--federation '%s' is invalid: use 1..64 of [a-z0-9._-], "
                           "starting with a letter or digit",
                           a.federation);
        goto out;
    }
    if (fv_pki_addr_check(a.coordinator, &d) != 0) {
        fv_cli_usage_error(CMD, "--coordinator: %s", d.msg);
        goto out;
    }
    if (a.admin_addr != NULL && fv_pki_addr_check(a.admin_addr, &d) != 0) {
        fv_cli_usage_error(CMD, "--admin-address: %s", d.msg);
        goto out;
    }
    if ((a.agents && (agents = fv_cli_split_list(a.agents, &n_agents)) == NULL) ||
        (a.admins && (admins = fv_cli_split_list(a.admins, &n_admins)) == NULL)) {
        fv_cli_error(CMD, "out of memory");
        rc = FV_EXIT_FAIL;
        goto out;
    }
    kits = calloc(1 + n_agents + n_admins, sizeof *kits);
    if (kits == NULL) {
        fv_cli_error(CMD, "out of memory");
        rc = FV_EXIT_FAIL;
        goto out;
    }
    kits[n_kits++] = (kit_t){a.coord_name, FV_ROLE_COORDINATOR};
    for (size_t i = 0; i < n_agents; i++)
        kits[n_kits++] = (kit_t){agents[i], FV_ROLE_AGENT};
    for (size_t i = 0; i < n_admins; i++)
        kits[n_kits++] = (kit_t){admins[i], FV_ROLE_ADMIN};
    for (size_t i = 0; i < n_kits; i++) {
        const char *what = kits[i].role == FV_ROLE_COORDINATOR ? "--coordinator-name"
                           : kits[i].role == FV_ROLE_AGENT     ? "--agents: name"
                                                               : "--admins: name";
        if (!check_name(CMD, what, kits[i].name))
            goto out;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(kits[i].name, kits[j].name) == 0) {
                fv_cli_usage_error(CMD,
                                   "'%s' is named twice: every participant needs its "
                                   "own name",
                                   kits[i].name);
                goto out;
            }
        }
    }

    rc = FV_EXIT_FAIL;
    fv_pki_opts_t ca_opts = {.days = a.days > FV_PKI_CA_DAYS ? (int)a.days : FV_PKI_CA_DAYS};
    if (fv_pki_ca_create(a.out, a.federation, &ca_opts, &d) != 0) {
        fv_cli_error(CMD, "%s", d.msg);
        goto out;
    }
    fv_pki_opts_t opts = {.days = (int)a.days, .admin_addr = a.admin_addr};
    for (; n_done < n_kits; n_done++) {
        const kit_t *k = &kits[n_done];
        if (fv_pki_issue(a.out, k->name, k->role,
                         k->role == FV_ROLE_COORDINATOR ? a.coordinator : NULL, &opts, &d) != 0) {
            fv_cli_error(CMD, "%s", d.msg);
            fprintf(stderr,
                    "fedvault %s: the CA and %zu kit(s) were written to %s; add the "
                    "rest with 'fedvault provision add-agent/add-admin'\n",
                    CMD, n_done, a.out);
            goto out;
        }
    }
    print_kits(&a, a.federation, true, kits, n_kits);
    rc = FV_EXIT_OK;
out:
    free(kits);
    fv_cli_strv_free(agents, n_agents);
    fv_cli_strv_free(admins, n_admins);
    return rc;
}

static int cmd_add(const char *cmd, fv_role_t role, int argc, char **argv)
{
    static const int allowed[] = {OPT_OUT, OPT_DAYS, OPT_NB, OPT_NA, OPT_JSON};
    args_t a = {0};
    int rc = parse(cmd, argc, argv, allowed, sizeof allowed / sizeof allowed[0], true, &a);
    if (rc >= 0)
        return rc;
    if (!check_name(cmd, "NAME", a.name))
        return FV_EXIT_USAGE;
    fv_pki_opts_t opts = {.days = (int)a.days};
    if (a.not_before && !parse_date(cmd, "--not-before", a.not_before, &opts.not_before))
        return FV_EXIT_USAGE;
    if (a.not_after) {
        if (!parse_date(cmd, "--not-after", a.not_after, &opts.not_after))
            return FV_EXIT_USAGE;
        opts.not_after += 86400 - 1; /* through the end of that day */
        int64_t now = (int64_t)time(NULL);
        if (opts.not_before == 0 && opts.not_after <= now - 3600) {
            /* Expired on purpose: keep the usual length, ending on that day. */
            int64_t days = a.days ? (int64_t)a.days : FV_PKI_DAYS;
            opts.not_before = opts.not_after - days * 86400 > 0 ? opts.not_after - days * 86400 : 1;
        }
        if (opts.not_after <= now)
            fprintf(stderr,
                    "fedvault %s: warning: --not-after %s is in the past: the "
                    "certificate of '%s' is issued already expired, and peers will refuse "
                    "it\n",
                    cmd, a.not_after, a.name);
    }
    if (opts.not_before != 0 && opts.not_after != 0 && opts.not_after <= opts.not_before)
        return fv_cli_usage_error(cmd, "--not-after must not be before --not-before");

    fv_diag_t d = {""};
    if (fv_pki_issue(a.out, a.name, role, NULL, &opts, &d) != 0) {
        fv_cli_error(cmd, "%s", d.msg);
        return FV_EXIT_FAIL;
    }
    kit_t k = {a.name, role};
    print_kits(&a, NULL, false, &k, 1);
    return FV_EXIT_OK;
}

static int cmd_revoke(const char *cmd, int argc, char **argv, bool refresh_only)
{
    static const int allowed[] = {OPT_OUT, OPT_JSON};
    args_t a = {0};
    int rc = parse(cmd, argc, argv, allowed, sizeof allowed / sizeof allowed[0], !refresh_only, &a);
    if (rc >= 0)
        return rc;
    if (!refresh_only && !fv_name_valid(a.name))
        return fv_cli_usage_error(cmd, "NAME '%s' is invalid", a.name);
    fv_diag_t d = {""};
    int r = refresh_only ? fv_pki_crl_refresh(a.out, &d) : fv_pki_revoke(a.out, a.name, &d);
    if (r != 0) {
        fv_cli_error(cmd, "%s", d.msg);
        return FV_EXIT_FAIL;
    }
    if (a.json) {
        json_t *o = json_pack("{s:s, s:s+}", "dir", a.out, "crl", a.out, "/ca/crl.pem");
        if (o != NULL && !refresh_only)
            json_object_set_new(o, "revoked", json_string(a.name));
        char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s != NULL)
            puts(s);
        free(s);
        json_decref(o);
    } else if (refresh_only) {
        printf("re-signed %s/ca/crl.pem (valid %d days); ship it to the coordinator\n", a.out,
               FV_PKI_CRL_DAYS);
    } else {
        printf("revoked %s; re-signed %s/ca/crl.pem: ship it to the coordinator\n", a.name, a.out);
    }
    return FV_EXIT_OK;
}

int fv_cmd_provision(int argc, char **argv)
{
    const char *sub = argc >= 2 ? argv[1] : "";
    if (strcmp(sub, "add-agent") == 0)
        return cmd_add(CMD " add-agent", FV_ROLE_AGENT, argc - 1, argv + 1);
    if (strcmp(sub, "add-admin") == 0)
        return cmd_add(CMD " add-admin", FV_ROLE_ADMIN, argc - 1, argv + 1);
    if (strcmp(sub, "revoke") == 0)
        return cmd_revoke(CMD " revoke", argc - 1, argv + 1, false);
    if (strcmp(sub, "crl") == 0)
        return cmd_revoke(CMD " crl", argc - 1, argv + 1, true);
    if (sub[0] != '-' && sub[0] != '\0')
        return fv_cli_usage_error(CMD,
                                  "unknown subcommand '%s' (add-agent, add-admin, "
                                  "revoke, crl, or options to create a federation)",
                                  sub);
    return cmd_create(argc, argv);
}
