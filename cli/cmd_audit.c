/* cmd_audit.c - `fedvault audit`: check, read and export a signed audit log.
 *
 * A thin CLI over crypto/fv_audit.h (the record format is specified in crypto/audit.c):
 *   audit verify  every record's form, chain and signature, and the signed head
 *   audit show    records matching filters (the chain is checked, not the signatures)
 *   audit export  the records as JSON Lines (verbatim, still verifiable) or CSV
 *   audit append  one record signed with a kit's key: operators' manual notes, tests
 * The coordinator and agents append to their own logs themselves (the daemons hold the
 * key and the log open); `append` must not be used on a log a daemon is writing (it is
 * refused: the daemon holds the lock).
 *
 * The head file defaults to LOG.head (what the writer uses unless told otherwise).
 */
#include "cli-int.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "fv_audit.h"
#include "fv_tls.h"

#define CMD "audit"

static const char usage[] =
    "Usage: fedvault audit verify --log FILE --cert CERT.pem [--head FILE] [--json]\n"
    "       fedvault audit show   --log FILE [--since TS] [--until TS] [--actor A]\n"
    "                             [--event E] [--job J] [--json]\n"
    "       fedvault audit export --log FILE --format jsonl|csv [--out FILE]\n"
    "                             [same filters as show]\n"
    "       fedvault audit append --log FILE --key KEY.pem --actor A --event E\n"
    "                             [--details JSON] [--head FILE] [--json]\n"
    "\n"
    "A fedvault audit log is JSON Lines: one record per event, each with its sequence\n"
    "number, UTC time, actor, event, details, the previous record's SHA-256 hash, its own\n"
    "hash and an Ed25519 signature by the writer (the coordinator or an agent). A signed\n"
    "head file (LOG.head) records the last record, so a removed tail is detected.\n"
    "\n"
    "verify  checks every record (form, sequence, chain, hash, signature with the public\n"
    "        key of CERT.pem, the writer's certificate: e.g. the coordinator's kit\n"
    "        cert.pem) and the head; exit 1 names the first bad record. Without the head\n"
    "        (--head, default LOG.head if it exists) a removed tail goes unnoticed, and\n"
    "        the output says so.\n"
    "show    prints the records that match every filter given (the chain is checked as\n"
    "        it is read; signatures are not: run verify for that).\n"
    "export  writes the matching records as JSON Lines (the lines verbatim: still\n"
    "        verifiable) or CSV (seq,ts,actor,event,job,details,prev,hash,sig), to --out\n"
    "        or stdout.\n"
    "append  adds one record signed with KEY.pem (a kit's key.pem), creating the log and\n"
    "        its head if needed: for operators' notes and tests. The daemons append to\n"
    "        their own logs themselves; a log a daemon holds open is refused.\n"
    "\n"
    "  --log FILE        the audit log\n"
    "  --head FILE       its signed head (default LOG.head)\n"
    "  --cert CERT.pem   certificate of the log's writer (its Ed25519 public key)\n"
    "  --since TS        records at or after TS (UTC, a prefix of YYYY-MM-DDTHH:MM:SS)\n"
    "  --until TS        records up to TS, inclusive at its precision (--until\n"
    "                    2026-11-28 includes that whole day)\n"
    "  --actor A         records by actor A\n"
    "  --event E         records of event E\n"
    "  --job J           records whose details.job is J\n"
    "  --format F        export format: jsonl or csv\n"
    "  --out FILE        export to FILE (replaced atomically, through a symlink; - is\n"
    "                    standard output, as without --out)\n"
    "  --key KEY.pem     append: the writer's Ed25519 private key\n"
    "  --actor A, --event E, --details JSON   append: the record (details: an object)\n"
    "  --json            print one JSON object instead of the summary\n"
    "  -h, --help        this text\n"
    "\n"
    "The README section \"Checking an audit record with openssl\" shows how to check one\n"
    "record with the openssl command line alone.\n"
    "\n"
    "Exit status: 0 success (verify: the log is valid), 1 failure (verify: a bad record,\n"
    "named on stderr), 2 usage error.\n";

enum {
    OPT_LOG = 256,
    OPT_HEAD,
    OPT_CERT,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_ACTOR,
    OPT_EVENT,
    OPT_JOB,
    OPT_FORMAT,
    OPT_OUT,
    OPT_KEY,
    OPT_DETAILS,
    OPT_JSON
};

static const struct option long_opts[] = {
    {"log", required_argument, NULL, OPT_LOG},
    {"head", required_argument, NULL, OPT_HEAD},
    {"cert", required_argument, NULL, OPT_CERT},
    {"since", required_argument, NULL, OPT_SINCE},
    {"until", required_argument, NULL, OPT_UNTIL},
    {"actor", required_argument, NULL, OPT_ACTOR},
    {"event", required_argument, NULL, OPT_EVENT},
    {"job", required_argument, NULL, OPT_JOB},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"out", required_argument, NULL, OPT_OUT},
    {"key", required_argument, NULL, OPT_KEY},
    {"details", required_argument, NULL, OPT_DETAILS},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct args {
    const char *log, *head, *cert, *format, *out, *key, *details;
    fv_audit_filter_t f; /* actor/event double as append's record fields */
    bool json;
} args_t;

/* Returns -1 to go on, or an exit code (help, usage error). */
static int parse(const char *cmd, int argc, char **argv, const int *allowed, size_t n_allowed,
                 args_t *a)
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
        case OPT_LOG:
            a->log = optarg;
            break;
        case OPT_HEAD:
            a->head = optarg;
            break;
        case OPT_CERT:
            a->cert = optarg;
            break;
        case OPT_SINCE:
        case OPT_UNTIL:
            if (!fv_audit_ts_prefix_valid(optarg))
                return fv_cli_usage_error(cmd,
                                          "--%s: expected a UTC time such as 2026-11-28 or "
                                          "2026-11-28T14:30:00, got '%s'",
                                          c == OPT_SINCE ? "since" : "until", optarg);
            *(c == OPT_SINCE ? &a->f.since : &a->f.until) = optarg;
            break;
        case OPT_ACTOR:
            a->f.actor = optarg;
            break;
        case OPT_EVENT:
            a->f.event = optarg;
            break;
        case OPT_JOB:
            a->f.job = optarg;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "jsonl") != 0 && strcmp(optarg, "csv") != 0)
                return fv_cli_usage_error(cmd, "--format: jsonl or csv, got '%s'", optarg);
            a->format = optarg;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_KEY:
            a->key = optarg;
            break;
        case OPT_DETAILS:
            a->details = optarg;
            break;
        case OPT_JSON:
            a->json = true;
            break;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", CMD);
            return FV_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return fv_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (a->log == NULL)
        return fv_cli_usage_error(cmd, "--log FILE is required");
    return -1;
}

static void print_json(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (s != NULL)
        puts(s);
    free(s);
    json_decref(o);
}

/* LOG.head, into buf. */
static const char *default_head(const char *log, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s.head", log);
    return n > 0 && (size_t)n < len ? buf : NULL;
}

static int cmd_verify(int argc, char **argv)
{
    static const int allowed[] = {OPT_LOG, OPT_HEAD, OPT_CERT, OPT_JSON};
    const char *cmd = CMD " verify";
    args_t a = {0};
    int rc = parse(cmd, argc, argv, allowed, sizeof allowed / sizeof allowed[0], &a);
    if (rc >= 0)
        return rc;
    if (a.cert == NULL)
        return fv_cli_usage_error(cmd,
                                  "--cert CERT.pem (the log writer's certificate) is required");
    char hbuf[4096];
    if (a.head == NULL) {
        const char *h = default_head(a.log, hbuf, sizeof hbuf);
        if (h != NULL && access(h, F_OK) == 0)
            a.head = h;
    }
    fv_diag_t d = {""};
    uint8_t pk[32];
    if (fv_audit_cert_pk(a.cert, pk, &d) != 0) {
        fv_cli_error(cmd, "%s", d.msg);
        return FV_EXIT_FAIL;
    }
    fv_audit_report_t rep;
    int r = fv_audit_verify(a.log, a.head, pk, &rep, &d);
    if (r != 0 && r != FV_ECORRUPT) {
        fv_cli_error(cmd, "%s", d.msg);
        return FV_EXIT_FAIL;
    }
    if (a.json) {
        json_t *o = json_pack("{s:s, s:b, s:I, s:b}", "log", a.log, "ok", rep.ok, "records",
                              (json_int_t)rep.n_records, "head_checked", rep.head_checked);
        if (o != NULL && a.head != NULL)
            json_object_set_new(o, "head", json_string(a.head));
        if (o != NULL && rep.head_checked)
            json_object_set_new(o, "head_seq", json_integer((json_int_t)rep.head_seq));
        if (o != NULL && !rep.ok) {
            json_object_set_new(o, "bad_record", json_integer((json_int_t)rep.bad_record));
            json_object_set_new(o, "bad_line", json_integer((json_int_t)rep.bad_line));
            json_object_set_new(o, "reason", json_string(rep.reason));
        }
        if (o != NULL && rep.ok)
            json_object_set_new(o, "last_hash", json_string(rep.last_hash));
        print_json(o);
    }
    if (!rep.ok) {
        if (rep.n_records > 0)
            fv_cli_error(cmd, "%s: %s (records 1..%llu verified)", a.log, rep.reason,
                         (unsigned long long)rep.n_records);
        else
            fv_cli_error(cmd, "%s: %s (no record verified)", a.log, rep.reason);
        return FV_EXIT_FAIL;
    }
    if (!a.json) {
        printf("%s: valid, %llu record(s), last hash %s\n", a.log,
               (unsigned long long)rep.n_records, rep.last_hash);
        if (rep.head_checked)
            printf("head %s: signed, at record %llu: the log is complete\n", a.head,
                   (unsigned long long)rep.head_seq);
        else
            printf("no head checked (--head): a removed tail would not be detected\n");
    }
    return FV_EXIT_OK;
}

/* ---- show / export ---- */

typedef struct out_ctx {
    FILE *f;
    enum { OUT_TEXT, OUT_JSON, OUT_JSONL, OUT_CSV } kind;
    json_t *arr;
    int err;
} out_ctx_t;

static void csv_field(FILE *f, const char *s, bool last)
{
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    if (!quote) {
        fputs(s, f);
    } else {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    }
    fputc(last ? '\n' : ',', f);
}

static int emit(const fv_audit_record_t *rec, void *vctx)
{
    out_ctx_t *c = vctx;
    char *details = json_dumps(rec->details, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (details == NULL)
        return FV_ENOMEM;
    const json_t *jj = json_object_get(rec->details, "job");
    char job[64] = "";
    if (json_is_string(jj))
        snprintf(job, sizeof job, "%s", json_string_value(jj));
    else if (json_is_integer(jj))
        snprintf(job, sizeof job, "%" JSON_INTEGER_FORMAT, json_integer_value(jj));
    switch (c->kind) {
    case OUT_TEXT:
        fprintf(c->f, "%6llu  %s  %-20s %-20s %s\n", (unsigned long long)rec->seq, rec->ts,
                rec->actor, rec->event, details);
        break;
    case OUT_JSON: {
        json_error_t e;
        json_t *o = json_loadb(rec->text, rec->text_len, 0, &e);
        if (o == NULL || json_array_append_new(c->arr, o) != 0) {
            free(details);
            return FV_ENOMEM;
        }
        break;
    }
    case OUT_JSONL:
        fwrite(rec->text, 1, rec->text_len, c->f);
        fputc('\n', c->f);
        break;
    case OUT_CSV: {
        char seq[32];
        snprintf(seq, sizeof seq, "%llu", (unsigned long long)rec->seq);
        csv_field(c->f, seq, false);
        csv_field(c->f, rec->ts, false);
        csv_field(c->f, rec->actor, false);
        csv_field(c->f, rec->event, false);
        csv_field(c->f, job, false);
        csv_field(c->f, details, false);
        csv_field(c->f, rec->prev, false);
        csv_field(c->f, rec->hash, false);
        csv_field(c->f, rec->sig, true);
        break;
    }
    }
    free(details);
    return ferror(c->f) ? -EIO : 0;
}

static int cmd_show(int argc, char **argv, bool export)
{
    static const int allowed_show[] = {OPT_LOG,   OPT_SINCE, OPT_UNTIL, OPT_ACTOR,
                                       OPT_EVENT, OPT_JOB,   OPT_JSON};
    static const int allowed_export[] = {OPT_LOG,   OPT_SINCE, OPT_UNTIL,  OPT_ACTOR,
                                         OPT_EVENT, OPT_JOB,   OPT_FORMAT, OPT_OUT};
    const char *cmd = export ? CMD " export" : CMD " show";
    args_t a = {0};
    int rc = export ? parse(cmd, argc, argv, allowed_export,
                            sizeof allowed_export / sizeof allowed_export[0], &a)
                    : parse(cmd, argc, argv, allowed_show,
                            sizeof allowed_show / sizeof allowed_show[0], &a);
    if (rc >= 0)
        return rc;
    if (export && a.format == NULL)
        return fv_cli_usage_error(cmd, "--format jsonl|csv is required");

    out_ctx_t c = {.f = stdout, .kind = OUT_TEXT};
    fv_cli_out_t file = {0}; /* export --out: fv_file_out (cli-int.h), 0666 through umask */
    if (export) {
        c.kind = strcmp(a.format, "csv") == 0 ? OUT_CSV : OUT_JSONL;
        if ((rc = fv_cli_out_check(cmd, "--out", a.out, false)) != 0)
            return rc;
        if (a.out != NULL) {
            if (fv_cli_out_open(cmd, a.out, 0666, &file) != 0)
                return FV_EXIT_FAIL;
            c.f = file.f;
        }
        if (c.kind == OUT_CSV)
            fputs("seq,ts,actor,event,job,details,prev,hash,sig\n", c.f);
    } else if (a.json) {
        c.kind = OUT_JSON;
        c.arr = json_array();
        if (c.arr == NULL) {
            fv_cli_error(cmd, "out of memory");
            return FV_EXIT_FAIL;
        }
    }
    fv_diag_t d = {""};
    uint64_t seen = 0;
    int r = fv_audit_scan(a.log, &a.f, emit, &c, &seen, &d);
    rc = FV_EXIT_OK;
    if (r != 0) {
        fv_cli_error(cmd, "%s", d.msg[0] ? d.msg : fv_strerror(r));
        rc = FV_EXIT_FAIL;
    }
    /* committed only after a clean scan; otherwise the temporary file is removed */
    if (fv_cli_out_close(&file, rc == FV_EXIT_OK) != 0)
        rc = FV_EXIT_FAIL;
    if (c.kind == OUT_JSON) {
        if (rc == FV_EXIT_OK) {
            json_t *o =
                json_pack("{s:s, s:I, s:I, s:O}", "log", a.log, "records_read", (json_int_t)seen,
                          "matched", (json_int_t)json_array_size(c.arr), "records", c.arr);
            print_json(o);
        }
        json_decref(c.arr);
    }
    return rc;
}

static int cmd_append(int argc, char **argv)
{
    static const int allowed[] = {OPT_LOG,   OPT_HEAD,    OPT_KEY, OPT_ACTOR,
                                  OPT_EVENT, OPT_DETAILS, OPT_JSON};
    const char *cmd = CMD " append";
    args_t a = {0};
    int rc = parse(cmd, argc, argv, allowed, sizeof allowed / sizeof allowed[0], &a);
    if (rc >= 0)
        return rc;
    if (a.key == NULL || a.f.actor == NULL || a.f.event == NULL)
        return fv_cli_usage_error(cmd, "--key, --actor and --event are required");
    char hbuf[4096];
    if (a.head == NULL && (a.head = default_head(a.log, hbuf, sizeof hbuf)) == NULL)
        return fv_cli_usage_error(cmd, "--log: path too long");
    if (a.details != NULL) {
        json_error_t e;
        json_t *o = json_loads(a.details, JSON_REJECT_DUPLICATES, &e);
        bool obj = json_is_object(o);
        json_decref(o);
        if (!obj)
            return fv_cli_usage_error(cmd, "--details: a JSON object expected (%s)",
                                      o == NULL ? e.text : "not an object");
    }
    fv_diag_t d = {""};
    uint8_t sk[64];
    fv_audit_t *log = NULL;
    rc = FV_EXIT_FAIL;
    if (fv_tls_load_sign_key(a.key, sk, &d) != 0) {
        fv_cli_error(cmd, "%s", d.msg);
        goto out;
    }
    if (fv_audit_open(a.log, a.head, sk, NULL, &log, &d) != 0 ||
        fv_audit_append(log, a.f.actor, a.f.event, a.details, &d) != 0) {
        fv_cli_error(cmd, "%s", d.msg);
        goto out;
    }
    if (a.json) {
        print_json(json_pack("{s:s, s:s, s:I}", "log", a.log, "head", a.head, "seq",
                             (json_int_t)fv_audit_last_seq(log)));
    } else {
        printf("%s: appended record %llu\n", a.log, (unsigned long long)fv_audit_last_seq(log));
    }
    rc = FV_EXIT_OK;
out:
    fv_audit_close(log);
    sodium_memzero(sk, sizeof sk);
    return rc;
}

int fv_cmd_audit(int argc, char **argv)
{
    const char *sub = argc >= 2 ? argv[1] : "";
    if (strcmp(sub, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(sub, "show") == 0)
        return cmd_show(argc - 1, argv + 1, false);
    if (strcmp(sub, "export") == 0)
        return cmd_show(argc - 1, argv + 1, true);
    if (strcmp(sub, "append") == 0)
        return cmd_append(argc - 1, argv + 1);
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fputs(usage, stdout);
        return FV_EXIT_OK;
    }
    if (sub[0] == '\0')
        return fv_cli_usage_error(CMD, "expected a subcommand: verify, show, export or append");
    return fv_cli_usage_error(CMD, "unknown subcommand '%s' (verify, show, export, append)", sub);
}
