/* fedvault.c - the `fedvault` command-line tool: a thin dispatcher over subcommands.
 *
 * One table (cmds[] below, as WireGuard-tools' wg.c) names every command, its handler and
 * its one-line help; `fedvault --help` is printed from it. Each handler gets argv from its
 * command's name on and owns everything after it (options, --help, exit codes: cli-int.h).
 *
 * Local work: training, evaluation and scoring (train, eval, predict), schema inference
 * and data splits, provisioning and audit logs. The federation's admin commands (status,
 * agents, job, model, crl) are clients of a running coordinator's admin port (cmd_admin*.c).
 */
#include "cli-int.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "fv-config.h"

/* Every command, in the order `fedvault --help` lists them: the local ones first, then
 * the admin ones (admin: a client of the coordinator's admin port, cmd_admin*.c), each
 * under its own heading. The usage text is generated from this table, so a command
 * cannot be added without its help line. Names are looked up linearly: the table is
 * short. */
static int cmd_version(int argc, char **argv);

static const struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv); /* argv[0] is the command's name */
    const char *help;                 /* one line, lower case, no full stop */
    bool admin;
} cmds[] = {
    {"train", fv_cmd_train, "train a model on a local CSV file and save it", false},
    {"eval", fv_cmd_eval, "score a CSV file with a saved model and report metrics", false},
    {"distill", fv_cmd_distill,
     "train a small student model from a teacher model (compression report)", false},
    {"export", fv_cmd_export, "write a saved model as ONNX, preprocessing included", false},
    {"predict", fv_cmd_predict, "score CSV rows with a saved model, with per-row reason codes",
     false},
    {"schema", fv_cmd_schema,
     "infer or merge the dataset schema a federation shares (schema infer|merge ...)", false},
    {"split", fv_cmd_split, "split a CSV file into stratified train and test files", false},
    {"bench", fv_cmd_bench, "run a benchmark in-process (bench secagg|predict|rounds ...)", false},
    {"provision", fv_cmd_provision,
     "create a federation's CA and startup kits (add-agent, revoke ...)", false},
    {"audit", fv_cmd_audit, "verify, show or export a signed audit log (audit verify ...)", false},
    {"serve", fv_cmd_serve,
     "drive a running fedvault-serve: status, promote, rollback, canary, shadow, reload", false},
    {"version", cmd_version, "print the version", false},
    {"status", fv_cmd_status, "the coordinator's state: agents, running job, job counts", true},
    {"agents", fv_cmd_agents, "list the agents (agents list)", true},
    {"job", fv_cmd_job,
     "submit, list, show, watch or abort jobs (job submit SPEC ...); job template, job check",
     true},
    {"model", fv_cmd_model,
     "list, show, export or release models (model release VERSION --label stable|canary|backup)",
     true},
    {"crl", fv_cmd_crl, "make the coordinator re-read its revocation list (crl reload)", true},
};

#define N_CMDS (sizeof cmds / sizeof cmds[0])

static int cmd_version(int argc, char **argv)
{
    printf("fedvault %s (%s)\n", FV_VERSION, FV_COMMIT);
    return FV_EXIT_OK;
}

/* One group of the table (admin or not), names padded to the longest name in the table. */
static void usage_group(FILE *f, bool admin)
{
    int width = 0;
    for (size_t i = 0; i < N_CMDS; i++) {
        int n = (int)strlen(cmds[i].name);
        if (n > width)
            width = n;
    }
    for (size_t i = 0; i < N_CMDS; i++)
        if (cmds[i].admin == admin)
            fprintf(f, "  %-*s %s\n", width, cmds[i].name, cmds[i].help);
}

static void usage(FILE *f)
{
    fputs("Usage: fedvault COMMAND [options]\n"
          "\n"
          "fedvault - federated learning for banks.\n"
          "\n"
          "Commands:\n",
          f);
    usage_group(f, false);
    fputs("\n"
          "Admin commands (to a running coordinator's admin port, with an admin kit):\n",
          f);
    usage_group(f, true);
    fputs("\n"
          "'fedvault COMMAND --help' describes each command.\n"
          "Exit status: 0 success, 1 failure (or the coordinator refused), 2 usage error,\n"
          "3 the coordinator could not be reached or the TLS handshake/authentication failed.\n",
          f);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fputs("fedvault: error: libsodium failed to initialize\n", stderr);
        return FV_EXIT_FAIL;
    }
    if (argc < 2) {
        usage(stderr);
        return FV_EXIT_USAGE;
    }
    const char *name = argv[1];
    /* fedvault's own options (and the word help), not commands: not in the table. */
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return FV_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) /* the usual spelling of the version command */
        name = "version";
    for (size_t i = 0; i < N_CMDS; i++)
        if (strcmp(name, cmds[i].name) == 0) {
            if (!cmds[i].admin && fv_cli_stdin_data(argc, argv) != 0)
                return FV_EXIT_FAIL;
            return cmds[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "fedvault: unknown command '%s'\n", name);
    usage(stderr);
    return FV_EXIT_USAGE;
}
