/* cmd_admin_model.c - `fedvault model list | show | export | release | releases`, admin
 * commands (admin_client.c, admin-int.h), with the group's --help text and subcommand
 * table, and the compression report `model show` prints for a distilled model.
 *
 * Hostile input: `model export` writes its file only after the SHA-256 of everything
 * received equals the digest the coordinator announced, never more than
 * EXPORT_MAX_BYTES, through a temporary file, fsync and rename.
 */
#include "admin-int.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "fv_file.h"
#include "fv_wire.h"

#define EXPORT_MAX_BYTES (2ull << 30) /* model export: 2 GiB */

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

static const int opts_export[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_OUT};
static const int opts_release[] = {OPT_CONFIG, OPT_ADMIN, OPT_TIMEOUT, OPT_JSON, OPT_LABEL};

/* ---- model ---------------------------------------------------------------------------- */

static bool parse_version(const args_t *a, const char *s, uint64_t *ret)
{
    char b[80];
    if (s[0] < '0' || s[0] > '9') {
        fv_cli_usage_error(a->cmd, "VERSION: expected a model version number, got '%s'",
                           fv__cli_safe(s, b, sizeof b));
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
    return fv__cli_admin_list_run(argc, argv, &l);
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
        return json_is_string(v) ? fv__cli_safe(json_string_value(v), buf, cap) : "-";
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
    int rc = fv__cli_admin_parse(argc, argv, fv__cli_admin_opts_common,
                                 N_OF(fv__cli_admin_opts_common), 1, "VERSION", &a);
    if (rc >= 0)
        return rc;
    uint64_t v;
    if (!parse_version(&a, a.pos[0], &v))
        return FV_EXIT_USAGE;
    char *args = fv__cli_admin_args_dump(json_pack("{s:I}", "version", (json_int_t)v));
    json_t *b = NULL;
    if ((rc = fv__cli_admin_call_owned(&a, "model.show", args, &b)) >= 0)
        return rc;
    static const char *const keys[] = {"version", "sha256",  "job",   "round",   "kind",
                                       "parent",  "created", "bytes", "producer"};
    fv__cli_print_fields(b, keys, N_OF(keys), 9);
    const json_t *report = json_object_get(b, "report");
    if (json_is_object(report))
        print_report(report);
    const json_t *lin = json_object_get(b, "lineage");
    printf("lineage:\n");
    if (lin == NULL || json_is_null(lin))
        printf("  -\n");
    else
        fv__cli_print_json_indented(lin, 2);
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
    const char *hex = fv__cli_fstr(b, "sha256");
    if (!fv__cli_fnum(b, "version", &v) || !fv__cli_fnum(b, "bytes", &bytes) ||
        !fv__cli_fnum(b, "offset", &off) || hex == NULL) {
        fv__cli_admin_errorf(
            "the coordinator's answer to 'model.read' lacks version, sha256, bytes or "
            "offset");
        return FV_EXIT_FAIL;
    }
    json_t *jb = json_object_get(b, "bytes");
    if (!json_is_integer(jb) || json_integer_value(jb) < 0 ||
        !json_is_integer(json_object_get(b, "offset")) ||
        !json_is_integer(json_object_get(b, "version"))) {
        fv__cli_admin_errorf(
            "the coordinator's answer to 'model.read': version, bytes and offset must be "
            "non-negative integers");
        return FV_EXIT_FAIL;
    }
    uint64_t total = (uint64_t)json_integer_value(jb);
    if ((uint64_t)json_integer_value(json_object_get(b, "version")) != e->version) {
        fv__cli_admin_errorf("the coordinator answered 'model.read' with another model version");
        return FV_EXIT_FAIL;
    }
    if (json_integer_value(json_object_get(b, "offset")) < 0 ||
        (uint64_t)json_integer_value(json_object_get(b, "offset")) != e->offset) {
        fv__cli_admin_errorf("the coordinator answered 'model.read' at offset %" JSON_INTEGER_FORMAT
                             ", asked for %" PRIu64,
                             json_integer_value(json_object_get(b, "offset")), e->offset);
        return FV_EXIT_FAIL;
    }
    if (total > EXPORT_MAX_BYTES) {
        fv__cli_admin_errorf("model version %" PRIu64 " is %" PRIu64
                             " bytes: above the 2 GiB export limit",
                             e->version, total);
        return FV_EXIT_FAIL;
    }
    uint8_t d[32];
    size_t n = 0;
    if (strlen(hex) != 64 || sodium_hex2bin(d, sizeof d, hex, 64, NULL, &n, NULL) != 0 || n != 32) {
        fv__cli_admin_errorf(
            "the coordinator's answer to 'model.read': sha256 is not 64 hex digits");
        return FV_EXIT_FAIL;
    }
    if (e->have_total && (total != e->total || memcmp(d, e->sha, 32) != 0)) {
        fv__cli_admin_errorf("model version %" PRIu64
                             " changed during the export (size or sha256 differ "
                             "between chunks)",
                             e->version);
        return FV_EXIT_FAIL;
    }
    if (data_len > FV_WIRE_ADMIN_DATA_MAX || data_len > total - e->offset ||
        (data_len == 0 && e->offset < total)) {
        fv__cli_admin_errorf("the coordinator's answer to 'model.read' at offset %" PRIu64
                             " holds %zu "
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
    int rc = fv__cli_admin_parse(argc, argv, opts_export, N_OF(opts_export), 1, "VERSION", &a);
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
    if ((rc = fv__cli_admin_session_open(&a, &k, &s)) != 0)
        goto out;

    /* fv_file_out (cli-int.h): a file gets a temporary file beside it (beside the file a
     * symlink points to), renamed over it only once complete and verified. A direct
     * target ("-", /dev/stdout, a pipe, a device) cannot take bytes back, so there the
     * model is held in memory (at most EXPORT_MAX_BYTES) and written once its SHA-256
     * matches: on every target, only a verified model is ever written. */
    int fr = fv_file_out_open(a.out, 0644, &fo, &dg);
    if (fr != 0) {
        fv__cli_admin_errorf("%s", dg.msg[0] ? dg.msg : uv_strerror(fr));
        rc = FV_EXIT_FAIL;
        goto out;
    }
    direct = fv_file_out_is_direct(fo);
    for (;;) {
        char *args = fv__cli_admin_args_dump(
            json_pack("{s:I,s:I,s:I}", "version", (json_int_t)e.version, "offset",
                      (json_int_t)e.offset, "len", (json_int_t)FV_WIRE_ADMIN_DATA_MAX));
        if (args == NULL) {
            rc = FV_EXIT_FAIL;
            goto out;
        }
        admin_resp_t r = {0};
        json_t *b = NULL;
        rc = fv__cli_admin_request(&s, "model.read", args, &r, &b);
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
                    fv__cli_admin_errorf("out of memory for a %" PRIu64 "-byte model", total);
                    rc = FV_EXIT_FAIL;
                }
                if (rc == 0) {
                    memcpy(held + held_len, r.data, r.data_len);
                    held_len += r.data_len;
                }
            } else {
                int w = fv_file_write_all(fv_file_out_fd(fo), r.data, r.data_len);
                if (w < 0) {
                    fv__cli_admin_errorf("%s: write failed: %s", a.out, uv_strerror(w));
                    rc = FV_EXIT_FAIL;
                }
            }
        }
        size_t got = r.data_len;
        fv__cli_admin_resp_free(&r);
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
        fv__cli_admin_errorf("model version %" PRIu64 ": the %" PRIu64
                             " bytes received hash to %s, the "
                             "coordinator announced %s: nothing written",
                             e.version, e.total, got_hex, hex);
        rc = FV_EXIT_FAIL;
        goto out;
    }
    if (direct && held_len > 0) {
        int w = fv_file_write_all(fv_file_out_fd(fo), held, held_len);
        if (w < 0) {
            fv__cli_admin_errorf("%s: write failed: %s", fv_cli_out_name(a.out), uv_strerror(w));
            rc = FV_EXIT_FAIL;
            goto out;
        }
    }
    fr = fv_file_out_commit(fo, &dg);
    fo = NULL; /* freed by the commit, also on failure */
    if (fr != 0) {
        fv__cli_admin_errorf("%s", dg.msg[0] ? dg.msg : uv_strerror(fr));
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
    fv__cli_admin_session_close(&s, &k);
    return rc;
}

/* ---- model release, model releases ---------------------------------------------------- */

static int model_release(int argc, char **argv)
{
    args_t a = {.cmd = "model release", .usage = usage_model};
    int rc = fv__cli_admin_parse(argc, argv, opts_release, N_OF(opts_release), 1, "VERSION", &a);
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
    char *args =
        fv__cli_admin_args_dump(json_pack("{s:I,s:s}", "version", (json_int_t)v, "label", a.label));
    json_t *b = NULL;
    if ((rc = fv__cli_admin_call_owned(&a, "model.release", args, &b)) >= 0)
        return rc;
    static const char *const keys[] = {"release", "label", "version",  "sha256", "bytes",
                                       "job",     "kind",  "released", "agents"};
    fv__cli_print_fields(b, keys, N_OF(keys), 8);
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
    return fv__cli_admin_list_run(argc, argv, &l);
}

int fv_cmd_model(int argc, char **argv)
{
    static const sub_t subs[] = {{"list", model_list},
                                 {"show", model_show},
                                 {"export", model_export},
                                 {"release", model_release},
                                 {"releases", model_releases}};
    return fv__cli_admin_group_run(argc, argv, "model", usage_model, subs, N_OF(subs));
}
