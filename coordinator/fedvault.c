/* fedvault.c - the `fedvault` command-line tool: a thin dispatcher over subcommands.
 *
 * Local work: training, evaluation and scoring (train, eval, predict), schema inference
 * and data splits, provisioning and audit logs. The federation's admin commands (status,
 * agents, job, model, crl) are clients of a running coordinator's admin port (cmd_admin.c).
 */
#include "cli-int.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "fv-config.h"

static const char usage[] =
    "Usage: fedvault COMMAND [options]\n"
    "\n"
    "fedvault - federated learning for banks.\n"
    "\n"
    "Commands:\n"
    "  train     train a model on a local CSV file and save it\n"
    "  eval      score a CSV file with a saved model and report metrics\n"
    "  distill   train a small student model from a teacher model (compression report)\n"
    "  export    write a saved model as ONNX, preprocessing included\n"
    "  predict   score CSV rows with a saved model, with per-row reason codes\n"
    "  schema    infer the dataset schema a federation shares (schema infer ...)\n"
    "  split     split a CSV file into stratified train and test files\n"
    "  bench     run a benchmark in-process (bench secagg|predict ...)\n"
    "  provision create a federation's CA and startup kits (add-agent, revoke ...)\n"
    "  audit     verify, show or export a signed audit log (audit verify ...)\n"
    "  version   print the version\n"
    "\n"
    "Admin commands (to a running coordinator's admin port, with an admin kit):\n"
    "  status    the coordinator's state: agents, running job, job counts\n"
    "  agents    list the agents (agents list)\n"
    "  job       submit, list, show, watch or abort jobs (job submit SPEC ...)\n"
    "  model     list, show or export global models (model export VERSION --out FILE)\n"
    "  crl       make the coordinator re-read its revocation list (crl reload)\n"
    "\n"
    "'fedvault COMMAND --help' describes each command.\n"
    "Exit status: 0 success, 1 failure (or the coordinator refused), 2 usage error,\n"
    "3 the coordinator could not be reached or the TLS handshake/authentication failed.\n";

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fputs("fedvault: error: libsodium failed to initialize\n", stderr);
        return FV_EXIT_FAIL;
    }
    if (argc < 2) {
        fputs(usage, stderr);
        return FV_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return FV_EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("fedvault %s (%s)\n", FV_VERSION, FV_COMMIT);
        return FV_EXIT_OK;
    }
    if (strcmp(cmd, "train") == 0)
        return fv_cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0)
        return fv_cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "distill") == 0)
        return fv_cmd_distill(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0)
        return fv_cmd_export(argc - 1, argv + 1);
    if (strcmp(cmd, "predict") == 0)
        return fv_cmd_predict(argc - 1, argv + 1);
    if (strcmp(cmd, "schema") == 0)
        return fv_cmd_schema(argc - 1, argv + 1);
    if (strcmp(cmd, "split") == 0)
        return fv_cmd_split(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return fv_cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "provision") == 0)
        return fv_cmd_provision(argc - 1, argv + 1);
    if (strcmp(cmd, "audit") == 0)
        return fv_cmd_audit(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return fv_cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "agents") == 0)
        return fv_cmd_agents(argc - 1, argv + 1);
    if (strcmp(cmd, "job") == 0)
        return fv_cmd_job(argc - 1, argv + 1);
    if (strcmp(cmd, "model") == 0)
        return fv_cmd_model(argc - 1, argv + 1);
    if (strcmp(cmd, "crl") == 0)
        return fv_cmd_crl(argc - 1, argv + 1);
    fprintf(stderr, "fedvault: unknown command '%s'\n%s", cmd, usage);
    return FV_EXIT_USAGE;
}
