/* cmd_job_spec.c - job specs people can write: `fedvault job template`, `fedvault job check`,
 * and the reading of a spec file that `job submit` shares with them.
 *
 * A spec FILE (protocols/fv_job.h, "Spec files") may hold full-line // comments and name its
 * schema by path; fv_job_expand turns it into the plain JSON the coordinator and the agents
 * take (the schema inlined), which is what `job submit` sends and what `job check` parses.
 * These are local commands: they need no admin kit and reach no coordinator, though they
 * sit under `job` beside the admin subcommands (cmd_admin_job.c's table routes to them).
 *
 * template prints a commented starting spec, every key at its default with its unit and
 * range in a comment; keys whose default depends on the schema (early_stopping.metric,
 * hist_bins) or that are optional sections are printed as commented-out lines, so the
 * template parses for a binary and a multi-class schema alike. Its "schema" is the path
 * "schema.json", beside the spec. tests/integration/job_schema.py checks that the template
 * passes `job check` once that file exists, and that every key it prints is in
 * docs/job.schema.json, the reference that documents each field in full.
 *
 * check reads SPEC (or standard input for "-", a schema path then relative to the working
 * directory), expands it, parses it with fv_job_from_json and prints the canonical JSON
 * (fv_job_to_json: the bytes whose SHA-256 is the job id the coordinator will give it) on
 * stdout, the name and id on stderr; an invalid spec: the parser's sentence, exit 1.
 *
 * Ownership: everything read is freed before return; no globals beyond getopt's.
 */
#include "cli-int.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fv_job.h"
#include "fv_mlp.h"

/* A spec from standard input: the job cap of protocols/job.c (a 16 MiB schema inline plus
 * 64 KiB), and one byte more so fv_job_expand sees an oversized spec and names the cap. */
#define STDIN_MAX_BYTES (((size_t)16 << 20) + ((size_t)64 << 10) + 1)

static const char usage_template[] =
    "Usage: fedvault job template [--model logreg|mlp:H1,H2,...] [--secagg on|off]\n"
    "                             [--distill]\n"
    "\n"
    "Prints a starting job spec on standard output: JSON with // comment lines that give\n"
    "each field's meaning, unit, default and range. Save it, put the schema beside it as\n"
    "schema.json (`fedvault schema infer ... --out schema.json`), edit, then check it with\n"
    "`fedvault job check SPEC` and submit it with `fedvault job submit SPEC`.\n"
    "The full reference of every field is docs/job.schema.json (a JSON Schema).\n"
    "\n"
    "  --model M        \"logreg\" (default) or \"mlp:H1,H2,...\" (hidden layer widths)\n"
    "  --secagg on|off  secure aggregation (default on; off sends plain updates over TLS,\n"
    "                   which agents refuse unless their policy allows it)\n"
    "  --distill        add a distillation stage (a logreg student)\n"
    "  -h, --help       this text\n"
    "\n"
    "Exit status: 0 success, 2 usage error.\n";

static const char usage_check[] =
    "Usage: fedvault job check SPEC [--schema FILE]\n"
    "\n"
    "Parses the job spec file SPEC (- for standard input) as the coordinator will: full-line\n"
    "// comments are skipped, a \"schema\" given as a path is read relative to SPEC's\n"
    "directory (the working directory for -), and every field is checked. Prints the\n"
    "canonical spec (one line of JSON, every default filled in) on standard output and the\n"
    "job's name and id (the SHA-256 of that line: the id `job submit` will get) on\n"
    "standard error; an invalid spec: the reason, naming the field, and exit status 1.\n"
    "\n"
    "  --schema FILE  use the schema in FILE instead of the spec's own\n"
    "  -h, --help     this text\n"
    "\n"
    "Exit status: 0 a valid spec, 1 an invalid one (or an unreadable file), 2 usage error.\n";

/* ---- reading a spec file (job check, job submit) ----------------------------------- */

static int read_stdin(const char *cmd, char **ret, size_t *ret_len)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        fv_cli_error(cmd, "out of memory");
        return -1;
    }
    for (;;) {
        if (len == cap) {
            size_t ncap = cap * 2 > STDIN_MAX_BYTES ? STDIN_MAX_BYTES : cap * 2;
            char *nb = len < STDIN_MAX_BYTES ? realloc(buf, ncap) : NULL;
            if (nb == NULL) {
                if (len >= STDIN_MAX_BYTES)
                    break; /* fv_job_expand refuses it, naming the cap */
                free(buf);
                fv_cli_error(cmd, "out of memory");
                return -1;
            }
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                free(buf);
                fv_cli_error(cmd, "standard input: read error");
                return -1;
            }
            break;
        }
    }
    *ret = buf;
    *ret_len = len;
    return 0;
}

int fv__cli_job_spec_read(const char *cmd, const char *path, const char *schema_path,
                          char **ret_json, size_t *ret_len)
{
    fv_diag_t d = {""};
    int r;
    if (strcmp(path, "-") == 0) {
        char *text = NULL;
        size_t len = 0;
        if (read_stdin(cmd, &text, &len) < 0)
            return -1;
        r = fv_job_expand("standard input", text, len, ".", schema_path, ret_json, ret_len, &d);
        free(text);
    } else {
        r = fv_job_file_expand(path, schema_path, ret_json, ret_len, &d);
    }
    if (r < 0) {
        fv_cli_diag_error(cmd, &d, r);
        return -1;
    }
    return 0;
}

/* ---- job check ---------------------------------------------------------------------- */

int fv__cmd_job_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"schema", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "job check", *schema = NULL;
    char *json = NULL, *canon = NULL, hex[65];
    size_t len = 0, clen = 0;
    fv_job_t *job = NULL;
    fv_diag_t d = {""};
    uint8_t dg[32];
    int c, r;

    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            schema = optarg;
            break;
        case 'h':
            fputs(usage_check, stdout);
            return FV_EXIT_OK;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", cmd);
            return FV_EXIT_USAGE;
        }
    }
    if (argc - optind < 1)
        return fv_cli_usage_error(cmd, "missing argument: SPEC (a job spec JSON file, or -)");
    if (argc - optind > 1)
        return fv_cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];
    if (schema != NULL && schema[0] == '\0')
        return fv_cli_usage_error(cmd, "--schema: expected a schema JSON file");

    if (fv__cli_job_spec_read(cmd, path, schema, &json, &len) < 0)
        return FV_EXIT_FAIL;
    r = fv_job_from_json(strcmp(path, "-") == 0 ? "standard input" : path, json, len, &job, &d);
    free(json);
    if (r < 0) {
        fv_cli_diag_error(cmd, &d, r);
        return FV_EXIT_FAIL;
    }
    if (fv_job_to_json(job, &canon, &clen) != 0 || fv_job_digest(job, dg) != 0) {
        fv_cli_error(cmd, "out of memory");
        fv_job_free(job);
        free(canon);
        return FV_EXIT_FAIL;
    }
    sodium_bin2hex(hex, sizeof hex, dg, sizeof dg);
    fwrite(canon, 1, clen, stdout);
    fputc('\n', stdout);
    fprintf(stderr, "%s: a valid job spec: name '%s', id %s\n",
            strcmp(path, "-") == 0 ? "standard input" : path, job->name, hex);
    free(canon);
    fv_job_free(job);
    return fflush(stdout) == 0 ? FV_EXIT_OK : FV_EXIT_FAIL;
}

/* ---- job template ------------------------------------------------------------------- */

/* The template, in pieces around the choices. Every active line must parse (the template
 * is tested with `job check`); commented-out keys are valid once uncommented. */
static const char tpl_head[] =
    "// A fedvault job spec, from `fedvault job template`. Lines whose first non-blank\n"
    "// characters are // are comments: `fedvault job check`, `job submit` and the\n"
    "// coordinator's --job skip them. Every field is documented in docs/job.schema.json.\n"
    "// Check this file with `fedvault job check job.json`.\n"
    "{\n"
    "  // The job's name: 1..64 characters of a-z 0-9 . _ -, starting with a letter or digit.\n"
    "  \"name\": \"my-job\",\n"
    "\n"
    "  // The dataset schema every bank shares (`fedvault schema infer --data FILE --target\n"
    "  // COLUMN [--positive LABEL] --out schema.json`): a path relative to this file's\n"
    "  // directory, or the schema object itself. `job submit --schema FILE` replaces it.\n"
    "  \"schema\": \"schema.json\",\n"
    "\n"
    "  // The model: \"logreg\" (logistic regression) or \"mlp:H1,H2,...\" (1..8 hidden\n"
    "  // layers of 1..65536 units each).\n";

/* then "model", then: */
static const char tpl_train[] =
    "\n"
    "  // Training rounds, 1..10000 (default 20). Round 0, the statistics round, comes first.\n"
    "  \"rounds\": 20,\n"
    "  // Epochs each agent trains on its own rows per round, 1..1000 (default 1).\n"
    "  \"local_epochs\": 1,\n"
    "  // Rows per mini-batch, 1..65536 (default 128).\n"
    "  \"batch_size\": 128,\n"
    "\n"
    "  // Each agent's local optimizer. kind \"adam\" (default) or \"sgd\"; lr > 0 (default\n"
    "  // 0.001); momentum (sgd), beta1, beta2 (adam) in [0, 1); eps > 0 (adam).\n"
    "  \"optimizer\": {\"kind\": \"adam\", \"lr\": 0.001, \"momentum\": 0.9, \"beta1\": 0.9,\n"
    "                \"beta2\": 0.999, \"eps\": 1e-08},\n"
    "  // L2 weight decay on the weights, >= 0 (default 0.01).\n"
    "  \"l2\": 0.01,\n"
    "\n"
    "  // How the coordinator applies the cohort's mean update. \"fedavg\" (default, no\n"
    "  // parameters); \"fedprox\" needs \"mu\" > 0 (the proximal term's weight);\n"
    "  // \"fedadam\" and \"fedyogi\" take server_lr > 0 (0.01), beta1 and beta2 in [0, 1)\n"
    "  // (0.9, 0.99) and tau > 0 (0.001). Only the chosen kind's keys are allowed, e.g.\n"
    "  //   \"strategy\": {\"kind\": \"fedadam\", \"server_lr\": 0.01, \"beta1\": 0.9,\n"
    "  //                \"beta2\": 0.99, \"tau\": 0.001},\n"
    "  \"strategy\": {\"kind\": \"fedavg\"},\n"
    "\n";

static const char tpl_secagg_on[] =
    "  // Secure aggregation (on by default): the coordinator sees only the cohort's sum.\n"
    "  // threshold: agents needed to unmask the sum, 0 = auto (floor(2(k+1)/3)+1, k the\n"
    "  // neighbour count); neighbors: each agent's masking neighbours, 0 = every other\n"
    "  // agent, else even and <= min_agents - 2; clip > 0: each element of an agent's\n"
    "  // weighted update is clipped to [-clip, clip] (the update's units); bits 1..31: the\n"
    "  // quantization, with min_agents * (2^bits - 1) < 2^32. \"secagg\": \"off\" sends\n"
    "  // plain updates over TLS.\n"
    "  \"secagg\": {\"threshold\": 0, \"neighbors\": 0, \"clip\": 1.0, \"bits\": 16},\n";

static const char tpl_secagg_off[] =
    "  // Secure aggregation is off: each agent sends its plain float32 update over TLS and\n"
    "  // the coordinator sees it. Agents refuse such a job unless their policy allows it\n"
    "  // (fedvault-agent --require-secure-aggregation off). For SecAgg write an object:\n"
    "  //   \"secagg\": {\"threshold\": 0, \"neighbors\": 0, \"clip\": 1.0, \"bits\": 16},\n"
    "  \"secagg\": \"off\",\n";

static const char tpl_middle[] =
    "  // The fewest agents a round may run with, 3..65535 (default 3; SecAgg needs 3).\n"
    "  \"min_agents\": 3,\n"
    "\n"
    "  // Deadlines in milliseconds, each 1..2592000000 (30 days): join (agents accept the\n"
    "  // job; default 60000), train (an agent's local training per round; 600000),\n"
    "  // secagg_phase (each SecAgg message phase; 60000).\n"
    "  \"deadlines_ms\": {\"join\": 60000, \"train\": 600000, \"secagg_phase\": 60000},\n"
    "\n"
    "  // Early stopping on the global validation metric. metric: \"roc_auc\" or \"pr_auc\"\n"
    "  // (binary schema; default roc_auc), \"accuracy\" (multi-class), \"log_loss\" (either;\n"
    "  // the multi-class default). patience 0..10000 rounds without improvement (default 3;\n"
    "  // 0 = off). min_delta >= 0 (default 0.0001), in the metric's own absolute units: a\n"
    "  // round improves only if it beats the best by MORE than min_delta (log_loss: lower,\n"
    "  // the others: higher), so a log loss of 0.43358 does not beat 0.43364 at 0.0001.\n"
    "  // \"metric\" is left to its default here; set it, e.g. \"metric\": \"log_loss\",\n"
    "  \"early_stopping\": {\"patience\": 3, \"min_delta\": 0.0001},\n"
    "\n"
    "  // Fraction of each agent's rows kept for validation, in (0, 0.5] (default 0.1).\n"
    "  \"validation_fraction\": 0.1,\n"
    "\n"
    "  // Score histogram bins for a binary job's ROC/PR AUC, 10..100000 (default 1000 for\n"
    "  // a binary schema). A multi-class schema: leave it out (or 0).\n"
    "  // \"hist_bins\": 1000,\n"
    "\n"
    "  // Optional: the L2 bound (> 0, in the update's own units) of the weighted update an\n"
    "  // agent adds to a training or distill round; absent = no bound.\n"
    "  // \"max_update_norm\": 5.0,\n"
    "  // Optional: validated rounds, each agent proves its input well formed; an agent\n"
    "  // whose proofs fail max_failures times (1..1000) is excluded. Needs SecAgg on with\n"
    "  // neighbors 0, and max_update_norm.\n"
    "  // \"validation\": {\"max_failures\": 1},\n"
    "  // Optional: when fewer than min_agents accepted by the join deadline, \"fail\"\n"
    "  // (default) or \"wait\"; when a member disappears, \"continue\" (default) without it\n"
    "  // or \"wait\" for it.\n"
    "  // \"cohort\": {\"on_join_deadline\": \"fail\", \"on_member_lost\": \"continue\"},\n"
    "  // Optional: true runs one explanation round after the last round: the mean absolute\n"
    "  // reason-code contribution of every column over the agents' validation rows,\n"
    "  // summed securely (default false).\n"
    "  // \"explain\": true,\n"
    "  // Optional: differential privacy per record of each bank's data (README, \"Differential\n"
    "  // privacy\"): mode \"local\" (DP-SGD at every agent) or \"distributed\"; exactly one\n"
    "  // of epsilon, in (0, 100], and noise_multiplier; delta in (0, 0.1]; outside_budget: the\n"
    "  // releases without noise (\"stats\", \"metrics\", and \"explain\" with explain true).\n"
    "  // \"privacy\": {\"mode\": \"local\", \"epsilon\": 8.0, \"delta\": 1e-5, "
    "\"outside_budget\": [\"stats\", \"metrics\", \"explain\"]},\n"
    "\n";

static const char tpl_distill[] =
    "  // Distillation after the last training round: a small student trained on the\n"
    "  // global model's outputs. student: like \"model\"; temperature > 0 (default 2);\n"
    "  // alpha in [0, 1], the label loss's weight (0.5); rounds 1..10000 (10);\n"
    "  // local_epochs 1..1000 (1); early_stopping: like the job's, absent keys take the\n"
    "  // job's values; quantize_int8: also ship an int8 student (false).\n"
    "  \"distill\": {\"student\": \"logreg\", \"temperature\": 2.0, \"alpha\": 0.5, \"rounds\": "
    "10,\n"
    "              \"local_epochs\": 1, \"quantize_int8\": false},\n"
    "\n";

static const char tpl_tail[] =
    "  // The seed of the model's initial weights and of every agent's shuffles and splits,\n"
    "  // 0..9223372036854775807 (default 0). The same spec and data give the same model.\n"
    "  \"seed\": 0\n"
    "}\n";

int fv__cmd_job_template(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"secagg", required_argument, NULL, 's'},
        {"distill", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "job template", *model = "logreg";
    bool secagg = true, distill = false;
    int c;

    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 's':
            if (strcmp(optarg, "on") == 0)
                secagg = true;
            else if (strcmp(optarg, "off") == 0)
                secagg = false;
            else
                return fv_cli_usage_error(cmd, "--secagg: expected on or off, got '%.60s'", optarg);
            break;
        case 'd':
            distill = true;
            break;
        case 'h':
            fputs(usage_template, stdout);
            return FV_EXIT_OK;
        default:
            fprintf(stderr, "Try 'fedvault %s --help'.\n", cmd);
            return FV_EXIT_USAGE;
        }
    }
    if (argc > optind)
        return fv_cli_usage_error(cmd, "unexpected argument '%.60s'", argv[optind]);
    {
        /* the architecture's syntax (the schema's sizes come later, at check) */
        fv_mlp_arch_t arch;
        fv_diag_t d = {""};
        if (strlen(model) > 127 || fv_mlp_parse_arch(model, 1, 2, &arch, &d) != 0)
            return fv_cli_usage_error(cmd, "--model: %s",
                                      d.msg[0] != '\0' ? d.msg
                                                       : "at most 127 characters, "
                                                         "\"logreg\" or \"mlp:H1,H2,...\"");
    }
    fputs(tpl_head, stdout);
    /* parse_arch let through only "logreg" or "mlp:" digits and commas: no JSON escapes */
    printf("  \"model\": \"%s\",\n", model);
    fputs(tpl_train, stdout);
    fputs(secagg ? tpl_secagg_on : tpl_secagg_off, stdout);
    fputs(tpl_middle, stdout);
    if (distill)
        fputs(tpl_distill, stdout);
    fputs(tpl_tail, stdout);
    return fflush(stdout) == 0 ? FV_EXIT_OK : FV_EXIT_FAIL;
}
